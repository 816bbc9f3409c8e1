"""Sweeps with real processes on the local backend's process runtime (no Docker): a program of the user's reports its
metric in results.csv in LAUNCHER_CHECKPOINT_DIR and reads its values from LAUNCHER_TRIAL; a sweep supervisor
SIGKILLed between two submissions and started again submits no duplicate (jobs counted)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from launcher.jobs import JobRegistry
from tests.backends.test_endings import _subreaper
from tests.launcher.test_recovery import _until

LAUNCH = [sys.executable, "-c", "from launcher.cli import main; main()"]
# 2 epochs of 1.5 s; top1 grows with train.lr0 read from LAUNCHER_TRIAL; state written by rename, as a trainer would
PROGRAM = textwrap.dedent(
    """
    import json, os, time
    out = os.environ["LAUNCHER_CHECKPOINT_DIR"]
    lr0 = json.loads(os.environ["LAUNCHER_TRIAL"])["train.lr0"]
    path = os.path.join(out, "results.csv")
    rows = open(path).read().splitlines()[1:] if os.path.exists(path) else []
    for epoch in range(len(rows) + 1, 3):
        time.sleep(1.5)
        rows.append(f"{epoch},{lr0 * epoch:.4f}")
        with open(path + ".tmp", "w") as f:
            f.write("epoch,top1\\n" + "\\n".join(rows) + "\\n")
        os.replace(path + ".tmp", path)
    """
)


@pytest.fixture
def sweep_env(tmp_path: Path) -> dict[str, Any]:
    code = tmp_path / "prog"
    code.mkdir()
    (code / "train.py").write_text(PROGRAM)
    spec = {"name": "psw", "code": str(code), "command": ["python", "train.py"], "train": {"epochs": 2},
            "checkpoint": {"uri": str(tmp_path / "store")}, "local": {"runtime": "process"},
            "sweep": {"method": "grid", "parallel": 1, "metric": "top1", "space": {"train.lr0": [0.1, 0.3, 0.2]}}}  # fmt: skip
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    env = {**os.environ, "LAUNCHER_STATE_DIR": str(tmp_path / "state"), "PYTHONUNBUFFERED": "1"}
    return {"dir": tmp_path, "env": env, "jobs": lambda: JobRegistry(tmp_path / "state" / "jobs.db")}


def _launch(env: dict[str, Any], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([*LAUNCH, *args], env=env["env"], cwd=env["dir"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip


def test_a_sweep_supervisor_killed_between_two_submissions_submits_no_duplicate(sweep_env: dict[str, Any]) -> None:
    _subreaper()  # the killed supervisor's job is reaped here, as init would on a real machine
    first = _launch(sweep_env, "sweep", "job.yaml")
    jobs = sweep_env["jobs"]
    _until(lambda: (listed := jobs().list()) and listed[0].native_id, timeout=120)  # trial 1 submitted, running 3 s
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    assert len(jobs().list()) == 1 and len(jobs().trials(jobs().sweeps()[0].id)) == 1
    again = _launch(sweep_env, "job.yaml")  # `launch job.yaml` runs the sweep too, and picks up the unfinished one
    out, _ = again.communicate(timeout=300)
    assert again.returncode == 0, out
    assert "picking up sweep" in out
    registry = jobs()
    sweep = registry.sweeps()[0]
    trials = registry.trials(sweep.id)
    assert len(registry.sweeps()) == 1 and len(trials) == 3 and len(registry.list()) == 3  # no duplicate job
    assert [t.state for t in trials] == ["succeeded"] * 3
    assert [len(registry.attempts(t.run_id)) for t in trials] == [1, 1, 1]  # trial 1 was followed, not resubmitted
    assert sweep.state == "finished" and "best trial 2 (lr0=0.3): top1 0.6" in sweep.message
    assert trials[0].metrics == {"1": 0.1, "2": 0.2}
    status = subprocess.run([*LAUNCH, "sweep", "status", "psw", "--json"], env=sweep_env["env"], capture_output=True,
                            text=True, check=True).stdout  # fmt: skip
    found = json.loads(status)
    assert [r["trial"] for r in found["trials"]] == [2, 3, 1] and found["best"]["name"] == "psw-t002"
