"""Picking up an unfinished run or sweep (launcher.cli.base.unfinished): one rule for `launch JOB.yaml` with
`recovery:` and for `launch sweep JOB.yaml`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from launcher.cli.base import unfinished
from launcher.errors import LauncherError
from launcher.state.jobs import JobRegistry


@pytest.mark.parametrize("kind", ["run", "sweep"])
def test_a_running_record_is_picked_up_only_when_its_supervisor_is_gone(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    jobs = JobRegistry(tmp_path / "jobs.db")
    add, find, set_state = (
        (jobs.add_run, jobs.run, jobs.set_run) if kind == "run" else (jobs.add_sweep, jobs.sweep, jobs.set_sweep)
    )
    assert unfinished(find, kind, "cars", "launch status {id}") is None, "nothing on record"
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        add(f"{kind}-1", "cars", {"name": "cars"}, ["local"], alive.pid)
        with pytest.raises(LauncherError, match=rf"{kind.capitalize()} {kind}-1 of cars is supervised already, by "
                           rf"process {alive.pid}\. Follow it with: launch status {kind}-1"):  # fmt: skip
            unfinished(find, kind, "cars", "launch status {id}")
    finally:
        alive.kill()
        alive.wait()
    found = unfinished(find, kind, "cars", "launch status {id}")
    assert found is not None and found.id == f"{kind}-1"
    assert f"picking up {kind} {kind}-1 from the job registry (its supervisor is gone)" in capsys.readouterr().err
    set_state(f"{kind}-1", state="finished" if kind == "sweep" else "succeeded")
    assert unfinished(find, kind, "cars", "launch status {id}") is None, "a finished one is not picked up"
