"""Supervised runs end to end with real processes (the local backend's process runtime, no Docker).

A run killed mid-epoch by SIGTERM to its process group (what a reclaim does) is resubmitted by the
supervisor, the next attempt resumes from the store and results.csv holds each epoch once; a
supervisor SIGKILLed between two attempts and started again submits exactly one more job.
"""

from __future__ import annotations

import csv
import io
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from launcher.plan import JobState
from launcher.runs.progress import read_progress
from launcher.state.jobs import JobRegistry
from tests.backends.test_endings import _subreaper

LAUNCH = [sys.executable, "-c", "from launcher.cli import main; main()"]
EPOCHS = 5
# A program of the user's: one epoch every 2.5 s, its state (results.csv, last.pt) in LAUNCHER_CHECKPOINT_DIR,
# each file written under a temporary name and renamed; on SIGTERM it exits 143 after the epoch it is in.
PROGRAM = textwrap.dedent(
    f"""
    import os, signal, sys, time
    out = os.environ["LAUNCHER_CHECKPOINT_DIR"]
    path = os.path.join(out, "results.csv")
    rows = open(path).read().splitlines()[1:] if os.path.exists(path) else []
    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    for epoch in range(len(rows) + 1, {EPOCHS} + 1):
        time.sleep(2.5)  # the sync takes a version once the folder has been quiet for a second
        rows.append(f"{{epoch}},0.5,1.0")
        for name, text in (("results.csv", "epoch,top1,time_s\\n" + "\\n".join(rows) + "\\n"), ("last.pt", str(epoch))):
            with open(os.path.join(out, name + ".tmp"), "w") as f:
                f.write(text)
            os.replace(os.path.join(out, name + ".tmp"), os.path.join(out, name))
        print(f"epoch {{epoch}} done", flush=True)
        if stop:
            sys.exit(143)
    """
)


@pytest.fixture
def run_env(tmp_path: Path) -> dict[str, Any]:
    code = tmp_path / "prog"
    code.mkdir()
    (code / "train.py").write_text(PROGRAM)
    spec = {"name": "rec", "code": str(code), "command": ["python", "train.py"], "train": {"epochs": EPOCHS},
            "checkpoint": {"uri": str(tmp_path / "store")}, "local": {"runtime": "process"},
            "recovery": {"max_attempts": 3, "backoff": {"initial": 1, "max": 1}}}  # fmt: skip
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(spec))
    env = {**os.environ, "LAUNCHER_STATE_DIR": str(tmp_path / "state"), "PYTHONUNBUFFERED": "1"}
    return {"dir": tmp_path, "env": env, "jobs": lambda: JobRegistry(tmp_path / "state" / "jobs.db")}


def _launch(run_env: dict[str, Any], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([*LAUNCH, *args], env=run_env["env"], cwd=run_env["dir"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip


def _until(what: Callable[[], Any], timeout: float = 240) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = what()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError("timed out waiting")


def _attempt_running(run_env: dict[str, Any], number: int, epoch: int) -> Any:
    """The attempt `number` once the store shows `epoch` epochs done (it is then mid-way through the next)."""

    def ready() -> Any:
        jobs = run_env["jobs"]()
        attempts = jobs.runs() and jobs.attempts(jobs.runs()[0].id)
        if not attempts or len(attempts) < number or not attempts[number - 1].native_id:
            return None
        progress = read_progress(attempts[0].spec, "rec", False)
        return attempts[number - 1] if progress and progress.epoch >= epoch else None

    return _until(ready)


def _epochs_in_store(run_env: dict[str, Any]) -> list[int]:
    from launcher.storage.local import LocalStore
    from launcher.storage.sync import newest

    store = LocalStore(str(run_env["dir"] / "store" / "rec"))
    manifest, _ = newest(store)
    text = (store.root / manifest.files["results.csv"].key).read_text()
    return [int(row["epoch"]) for row in csv.DictReader(io.StringIO(text))]


def test_a_reclaimed_attempt_is_resubmitted_and_resumes(run_env: dict[str, Any]) -> None:
    supervisor = _launch(run_env, "job.yaml")
    first = _attempt_running(run_env, 1, 2)
    os.killpg(int(first.native_id), signal.SIGTERM)  # a reclaim: the whole job, not `launch stop`
    out, _ = supervisor.communicate(timeout=300)
    assert supervisor.returncode == 0, out
    jobs = run_env["jobs"]()
    run = jobs.runs()[0]
    attempts = jobs.attempts(run.id)
    assert run.state == "succeeded" and [a.state for a in attempts] == [JobState.FAILED, JobState.SUCCEEDED]
    assert (attempts[0].ending, attempts[0].exit_code) == ("preempted", 143)
    assert _epochs_in_store(run_env) == list(range(1, EPOCHS + 1))  # each epoch once, none repeated
    assert 2 <= attempts[0].metrics["epoch"] < EPOCHS and attempts[1].metrics["epoch"] == EPOCHS, out
    status = subprocess.run([*LAUNCH, "status", run.id], env=run_env["env"],
                            capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert f"run {run.id}  succeeded" in status and "preempted" in status and "total cost" in status


def test_a_supervisor_killed_between_attempts_submits_exactly_one_more(run_env: dict[str, Any]) -> None:
    _subreaper()  # the killed supervisor's job is reaped here, as init would on a real machine
    supervisor = _launch(run_env, "job.yaml")
    first = _attempt_running(run_env, 1, 1)
    supervisor.send_signal(signal.SIGKILL)  # the supervisor dies; its job runs on in its own session
    supervisor.wait(timeout=30)
    os.killpg(int(first.native_id), signal.SIGTERM)  # ... and is reclaimed while nobody watches
    _until(lambda: not _alive(int(first.native_id)))
    again = _launch(run_env, "job.yaml")  # the same command again picks the run up from the registry
    out, _ = again.communicate(timeout=300)
    assert again.returncode == 0, out
    assert "picking up run" in out
    jobs = run_env["jobs"]()
    assert len(jobs.runs()) == 1
    attempts = jobs.attempts(jobs.runs()[0].id)
    assert [(a.attempt, a.state) for a in attempts] == [(1, JobState.FAILED), (2, JobState.SUCCEEDED)]
    assert len(jobs.list()) == 2  # exactly one more job, no duplicate
    assert _epochs_in_store(run_env) == list(range(1, EPOCHS + 1))


def _alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    try:
        os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        pass
    return True


def test_detach_hands_the_run_to_a_background_supervisor(run_env: dict[str, Any]) -> None:
    _subreaper()  # the background supervisor outlives `launch`: its children are reaped here, as init would
    out, _ = _launch(run_env, "job.yaml", "--detach").communicate(timeout=120)
    assert "is supervised in the background by process" in out, out
    first = _attempt_running(run_env, 1, 1)
    os.killpg(int(first.native_id), signal.SIGTERM)
    jobs = run_env["jobs"]
    _until(lambda: jobs().runs()[0].state != "running", timeout=300)
    run = jobs().runs()[0]
    assert run.state == "succeeded", (run.message, (run_env["dir"] / "state" / "runs" / f"{run.id}.log").read_text())
    assert [a.ending for a in jobs().attempts(run.id)] == ["preempted", None]
    assert _epochs_in_store(run_env) == list(range(1, EPOCHS + 1))
