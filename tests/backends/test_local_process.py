"""The process runtime for real: a 2-process gloo DDP job under torchrun, through the CLI.

Also the supervisor's bookkeeping (log file, exit code file) with cheap
commands, stop (SIGTERM to the process group), and a GPU request on a host
without GPUs.
"""

from __future__ import annotations

import io
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from launcher.api import Launcher
from launcher.backends.local import EXIT_FILE, LOG_FILE, LocalBackend, supervise
from launcher.cli import main
from launcher.errors import LauncherError
from launcher.plan import JobState
from launcher.spec import validate_spec
from tests.conftest import ctrl_c_reaches_it

DDP_SCRIPT = textwrap.dedent(
    """
    import os, torch, torch.distributed as dist
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    value = torch.tensor([float(rank + 1)])
    dist.all_reduce(value)
    print(f"rank {rank}/{world} all_reduce={value.item():.0f} secret_len={len(os.environ.get('DDP_SECRET', ''))}", flush=True)
    if rank == 0:
        open(os.path.join(os.environ["LAUNCHER_SAVE_DIR"], "done.txt"), "w").write("ok")
    dist.destroy_process_group()
    """
)


def _write_job(tmp_path: Path, raw: dict[str, Any]) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_two_process_gloo_ddp_job_runs_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DDP_SECRET", "hunter2")
    job = _write_job(tmp_path, {
        "name": "ddp-smoke",
        "command": [sys.executable, "-c", DDP_SCRIPT],
        "checkpoint": {"uri": str(tmp_path / "ckpt")},
        "secrets": ["DDP_SECRET"],
        "local": {"runtime": "process", "nproc": 2},
    })  # fmt: skip
    runner = CliRunner()
    result = runner.invoke(main, ["run", str(job), "--ignore-budget"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    for rank in (0, 1):
        assert f"rank {rank}/2 all_reduce=3 secret_len=7" in result.output
    pulled = runner.invoke(main, ["ckpt", "pull", str(tmp_path / "ckpt" / "ddp-smoke"), str(tmp_path / "out")])
    assert pulled.exit_code == 0 and (tmp_path / "out" / "done.txt").read_text() == "ok"  # synced to the store

    job_id = Launcher().jobs.latest().id  # type: ignore[union-attr]
    status = runner.invoke(main, ["status", job_id, "--json"])
    assert yaml.safe_load(status.output)["state"] == "succeeded"
    logs = runner.invoke(main, ["logs", job_id])
    assert "rank 1/2 all_reduce=3" in logs.output
    assert "hunter2" not in logs.output + Path(Launcher().jobs.path).read_bytes().decode("latin-1")


def _cheap_plan(tmp_path: Path, python: str, command: list[str] | None = None) -> Any:
    """A plan whose 'interpreter' is a shell tool, so no torch starts: tests the supervisor only."""
    spec = validate_spec({"name": "cheap", "command": command, "local": {"runtime": "process", "python": python}},
                         None, tmp_path)  # fmt: skip
    return LocalBackend(state_dir=tmp_path / "state").plan(spec, "cheap-1")


def test_log_and_exit_code_survive_the_backend_object(tmp_path: Path) -> None:
    backend = LocalBackend(state_dir=tmp_path / "state")
    ref = backend.submit(_cheap_plan(tmp_path, "/bin/echo"))
    assert list(backend.logs(ref, follow=True))[0].startswith("-m launcher.runtime.entrypoint --run-name cheap")
    fresh = LocalBackend(state_dir=tmp_path / "state")  # like `launch status` after the CLI exited
    status = fresh.status(ref)
    assert (status.state, status.exit_code) == (JobState.SUCCEEDED, 0)
    assert (Path(ref.extra["dir"]) / LOG_FILE).exists()


def test_failing_job_passes_its_exit_code_through(tmp_path: Path) -> None:
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    code = supervise(job_dir, [sys.executable, "-c", "import sys; print('bye'); sys.exit(7)"])
    assert code == 7
    assert (job_dir / EXIT_FILE).read_text() == "7"


def test_exit_code_reaches_status(tmp_path: Path) -> None:
    backend = LocalBackend(state_dir=tmp_path / "state")
    ref = backend.submit(_cheap_plan(tmp_path, "/bin/false"))
    list(backend.logs(ref, follow=True))
    backend.cancel(ref)  # too late: the job already ended, and keeps its own outcome
    status = LocalBackend(state_dir=tmp_path / "state").status(ref)
    assert (status.state, status.exit_code, status.result_code()) == (JobState.FAILED, 1, 1)


def test_stop_terminates_the_process_group_and_records_stopped(tmp_path: Path) -> None:
    backend = LocalBackend(state_dir=tmp_path / "state")
    script = textwrap.dedent(
        """
        import signal, sys, time
        signal.signal(signal.SIGTERM, lambda *a: (print("got SIGTERM", flush=True), sys.exit(143)))
        print("up", flush=True)
        time.sleep(60)
        """
    )
    spec = validate_spec({"name": "sleepy", "local": {"runtime": "process", "python": sys.executable}}, None, tmp_path)
    plan = backend.plan(spec, "sleepy-1")
    argv = [sys.executable, "-c", script]
    plan = type(plan)(
        plan.backend, plan.job_name, plan.spec, {"runtime": "process", "process": {"argv": argv, "env": {}}}
    )
    ref = backend.submit(plan)
    logs = backend.logs(ref, follow=True)
    assert next(logs) == "up"
    started = time.monotonic()
    backend.cancel(ref)
    assert time.monotonic() - started < 10
    assert "got SIGTERM" in list(logs)
    status = LocalBackend(state_dir=tmp_path / "state").status(ref)
    assert (status.state, status.exit_code) == (JobState.STOPPED, 143)


def test_gpus_on_a_host_without_gpus_is_a_clear_error(tmp_path: Path) -> None:
    spec = validate_spec({"name": "big", "resources": {"gpus": 2}, "local": {"runtime": "process"}}, None, tmp_path)
    backend = LocalBackend(state_dir=tmp_path / "state", gpu_count=lambda: 0)
    with pytest.raises(LauncherError, match="asks for 2 GPU\\(s\\) but this machine has 0") as err:
        backend.submit(backend.plan(spec, "big-1"))
    assert "resources.gpus: 0" in str(err.value)


def test_missing_secret_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    spec = validate_spec(
        {"name": "s", "secrets": ["NOT_SET_ANYWHERE"], "local": {"runtime": "process"}}, None, tmp_path
    )
    backend = LocalBackend(state_dir=tmp_path / "state")
    with pytest.raises(LauncherError, match="Export NOT_SET_ANYWHERE"):
        backend.submit(backend.plan(spec, "s-1"))


def test_auto_falls_back_to_process_and_says_why(tmp_path: Path) -> None:
    import docker

    dead = docker.DockerClient(base_url=f"unix://{tmp_path}/no-docker.sock", version="1.41")
    err = io.StringIO()
    backend = LocalBackend(docker_client=dead, state_dir=tmp_path / "state", stderr=err)
    spec = validate_spec({"name": "auto", "local": {"runtime": "auto", "python": "/bin/true"}}, None, tmp_path)
    ref = backend.submit(backend.plan(spec, "auto-1"))
    assert ref.extra["runtime"] == "process"
    assert "Docker engine is not answering" in err.getvalue()
    assert "running the job as host processes" in err.getvalue()


def test_ctrl_c_in_the_cli_stops_the_job_and_keeps_the_record_consistent(tmp_path: Path) -> None:
    fake_python = tmp_path / "fake-python"  # stands in for the entrypoint: no torch to start
    fake_python.write_text("#!/bin/sh\ntrap 'echo got TERM; exit 143' TERM\necho up\nwhile :; do sleep 0.1; done\n")
    fake_python.chmod(0o755)
    job = _write_job(tmp_path, {"name": "ctrl-c", "local": {"runtime": "process", "python": str(fake_python)}})
    cli = subprocess.Popen(
        [sys.executable, "-c", "from launcher.cli import main; main()", "run", str(job), "--ignore-budget"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=ctrl_c_reaches_it,
    )  # fmt: skip
    assert cli.stdout is not None and cli.stdout.readline().strip() == "up"
    cli.send_signal(signal.SIGINT)
    out, err = cli.communicate(timeout=90)
    assert cli.returncode == 130, err
    assert "interrupted: stopping" in err and "stopped" in err and "Traceback" not in err
    record = Launcher().jobs.latest()
    assert record is not None and record.state is JobState.STOPPED and record.finished_at is not None
    assert "got TERM" in (Path(record.ref_extra["dir"]) / LOG_FILE).read_text()


def test_max_runtime_stops_the_job_and_says_why(tmp_path: Path) -> None:
    fake_python = tmp_path / "fake-python"
    fake_python.write_text("#!/bin/sh\ntrap 'echo got TERM; exit 143' TERM\necho up\nwhile :; do sleep 0.1; done\n")
    fake_python.chmod(0o755)
    raw = {"name": "slow", "limits": {"max_runtime": 2}, "local": {"runtime": "process", "python": str(fake_python)}}
    backend = LocalBackend(state_dir=tmp_path / "state")
    plan = backend.plan(validate_spec(raw, None, tmp_path), "slow-1")
    assert plan.payload["process"]["max_runtime_s"] == 2
    started = time.monotonic()
    ref = backend.submit(plan)
    lines = list(backend.logs(ref, follow=True))
    assert 2 <= time.monotonic() - started < 20
    assert "got TERM" in lines and any("limits.max_runtime (2s) reached" in line for line in lines)
    status = LocalBackend(state_dir=tmp_path / "state").status(ref)
    assert (status.state, status.exit_code, status.message) == (
        JobState.FAILED,
        124,
        "stopped: limits.max_runtime reached",
    )


@pytest.mark.slow
def test_the_real_trainer_runs_as_two_processes(tmp_path: Path) -> None:
    """The built-in trainer on the shipped digits dataset, tiny: 1 epoch, 16 px, a fifth of the images."""
    job = _write_job(tmp_path, {
        "name": "tiny-train",
        "train": {"model": "shufflenet_v2_x0_5", "data": "digits", "epochs": 1, "imgsz": 16, "batch": 32,
                  "fraction": 0.2, "workers": 0, "amp": False},
        "checkpoint": {"uri": str(tmp_path / "ckpt")},
        "local": {"runtime": "process", "nproc": 2},
    })  # fmt: skip
    result = CliRunner().invoke(main, ["run", str(job), "--ignore-budget"], catch_exceptions=False)
    assert result.exit_code == 0, result.output[-3000:]
    assert "batch 32 x 2 process(es)" in result.output and "[launcher] exit code 0" in result.output
    from launcher.storage import open_store
    from launcher.storage.sync import newest

    manifest, _ = newest(open_store(str(tmp_path / "ckpt" / "tiny-train")))  # the same manifest layout as a bucket
    assert manifest is not None and manifest.epoch == 1 and manifest.files["last.pt"].size > 0


def test_a_group_whose_only_process_is_an_unreaped_zombie_is_not_alive() -> None:
    """A job's supervisor that exited stays a zombie while the process that submitted the job has not reaped it:
    `stop` must not wait out its grace period for it (it did: 30 s a job)."""
    import os

    from launcher.backends.local import _group_alive

    ended = subprocess.Popen([sys.executable, "-c", "pass"], start_new_session=True)
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and ") Z " not in Path(f"/proc/{ended.pid}/stat").read_text():
            time.sleep(0.05)
        os.killpg(ended.pid, 0)  # the signal still finds the zombie's group...
        assert _group_alive(ended.pid) is False  # ...which runs nothing
        assert _group_alive(running.pid) is True
    finally:
        running.kill()
        running.wait()
        ended.wait()
    assert _group_alive(ended.pid) is False
