"""Job state commands tell the truth (issue 13): `launch ls` refreshes, `launch stop` leaves finished jobs alone."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from launcher.api import Launcher
from launcher.backends.local import LocalBackend
from launcher.cli import main
from launcher.plan import JobState, JobStatus
from launcher.runs.refresh import CACHE_S, refresh_unfinished
from launcher.spec import validate_spec
from launcher.state.jobs import JobRegistry


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LAUNCHER_STATE_DIR", str(tmp_path / "state"))
    return tmp_path / "state"


def _finished_jobs(tmp_path: Path, count: int, tool: str = "/bin/true") -> list[str]:
    """Submit `count` local process jobs whose 'python' is a shell tool, and let them end unobserved."""
    launcher = Launcher(LocalBackend(), JobRegistry())
    ids = []
    for i in range(count):
        spec = validate_spec({"name": f"quick-{i}", "local": {"runtime": "process", "python": tool}}, None, tmp_path)
        job = launcher.submit(spec)
        list(job.logs(follow=True))  # until the process ends; the registry is not told
        ids.append(job.id)
    return ids


@pytest.mark.timeout(120)
def test_ls_shows_real_states_of_jobs_that_ended_unobserved(state: Path, tmp_path: Path) -> None:
    ids = _finished_jobs(tmp_path, 3)
    jobs = JobRegistry()
    assert {jobs.get(i).state for i in ids} == {JobState.PENDING}
    listed = CliRunner().invoke(main, ["ls", "--json"], env={"LAUNCHER_STATE_DIR": str(state)})
    assert listed.exit_code == 0, listed.output
    assert {row["id"]: row["state"] for row in json.loads(listed.stdout)} == dict.fromkeys(ids, "succeeded")
    assert {jobs.get(i).state for i in ids} == {JobState.SUCCEEDED}  # and recorded


@pytest.mark.timeout(120)
def test_refresh_skips_recently_updated_and_finished_jobs(state: Path, tmp_path: Path) -> None:
    (job_id,) = _finished_jobs(tmp_path, 1, tool="/bin/false")
    jobs = JobRegistry()
    jobs.update(job_id, JobStatus(JobState.RUNNING))  # as an earlier `ls` learnt it, just before the job ended
    record = jobs.get(job_id)
    cached = refresh_unfinished([record], jobs, now=record.updated_at + CACHE_S / 2)
    assert cached[0].state == JobState.RUNNING and jobs.get(job_id).state == JobState.RUNNING
    (fresh,) = refresh_unfinished([record], jobs, now=record.updated_at + CACHE_S)
    assert (fresh.state, fresh.exit_code) == (JobState.FAILED, 1)
    before = jobs.get(job_id).updated_at
    refresh_unfinished([fresh], jobs, now=time.time() + 3600)
    assert jobs.get(job_id).updated_at == before  # a finished job is never asked again


def test_refresh_keeps_the_stored_state_when_the_backend_cannot_answer(state: Path) -> None:
    jobs = JobRegistry()
    from launcher.plan import JobRef

    jobs.add(JobRef("ghost-1", "no-such-backend", "ghost"), "ghost", {"name": "ghost"}, "h")
    record = jobs.get("ghost-1")
    (same,) = refresh_unfinished([record], jobs, now=record.updated_at + 3600)
    assert same.state == JobState.PENDING


@pytest.mark.timeout(120)
@pytest.mark.parametrize("observed", [True, False])
def test_stop_on_a_finished_job_says_so_and_changes_nothing(state: Path, tmp_path: Path, observed: bool) -> None:
    (job_id,) = _finished_jobs(tmp_path, 1)
    jobs = JobRegistry()
    if observed:
        Launcher.attach(job_id, jobs).status()
    result = CliRunner().invoke(main, ["stop", job_id], env={"LAUNCHER_STATE_DIR": str(state)})
    assert result.exit_code == 0
    assert "already finished (succeeded); nothing to stop" in result.stderr
    record = jobs.get(job_id)
    assert (record.state, record.exit_code) == (JobState.SUCCEEDED, 0)
    assert not (Path(record.ref_extra["dir"]) / "stopped").exists()
