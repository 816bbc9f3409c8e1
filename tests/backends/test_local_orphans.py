"""A local process job whose entrypoint is SIGKILLed takes its whole process tree with it (issue 33): torchrun and
the trainer (in its own process group, as torchrun starts it) do not live on as orphans nobody syncs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from launcher.backends.local import LocalBackend

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="/proc and PR_SET_CHILD_SUBREAPER are Linux's"
)

# the "entrypoint": starts a "torchrun" that starts a "trainer" in a session of its own, then waits
ENTRYPOINT = textwrap.dedent("""
    import os, subprocess, sys, time
    folder = sys.argv[1]
    trainer = "import os, time; open(os.path.join(%r, 'trainer'), 'w').write(str(os.getpid())); time.sleep(600)" % folder
    torchrun = ("import os, subprocess, sys, time; "
                "subprocess.Popen([sys.executable, '-c', %r], start_new_session=True); "
                "open(os.path.join(%r, 'torchrun'), 'w').write(str(os.getpid())); time.sleep(600)") % (trainer, folder)
    subprocess.Popen([sys.executable, "-c", torchrun])
    open(os.path.join(folder, "entrypoint"), "w").write(str(os.getpid()))
    time.sleep(600)
""")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _wait_for(path: Path, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text():
            return int(path.read_text())
        time.sleep(0.05)
    raise AssertionError(f"{path.name} never started")


@pytest.mark.timeout(120)
def test_sigkill_of_the_entrypoint_ends_torchrun_and_the_trainer(tmp_path: Path) -> None:
    script = tmp_path / "entrypoint.py"
    script.write_text(ENTRYPOINT)
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    repo = Path(__file__).resolve().parents[2]
    supervisor = subprocess.Popen(
        [sys.executable, "-m", "launcher.backends.local", "supervise", str(job_dir), "--", sys.executable, str(script), str(tmp_path)],
        env={**os.environ, "PYTHONPATH": str(repo)}, start_new_session=True,
    )  # fmt: skip
    pids = {}
    try:
        pids = {name: _wait_for(tmp_path / name) for name in ("entrypoint", "torchrun", "trainer")}
        assert os.getpgid(pids["trainer"]) != supervisor.pid  # out of the job's group: killpg would miss it
        os.kill(pids["entrypoint"], signal.SIGKILL)
        assert supervisor.wait(timeout=60) == 137
        survivors = [name for name, pid in pids.items() if _alive(pid)]
        assert not survivors, f"{survivors} outlived the entrypoint"
        assert (job_dir / "exit_code").read_text() == "137"
        assert LocalBackend().ending_of("exit code 137").retryable  # read as a reclaim: a supervised run retries
    finally:
        for pid in pids.values():
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        if supervisor.poll() is None:
            os.killpg(supervisor.pid, signal.SIGKILL)
