"""The SQLite job registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from launcher.errors import JobNotFoundError
from launcher.jobs import JobRegistry, Throughput, state_dir
from launcher.plan import JobRef, JobState, JobStatus


def test_records_survive_a_new_connection(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    JobRegistry(path).add(JobRef("j1", "local", "c0ffee", {"runtime": "process"}), "a", {"name": "a"}, "h")
    again = JobRegistry(path)  # e.g. a new CLI process after a crash
    record = again.get("j1")
    assert record.state is JobState.PENDING and record.ref.extra["runtime"] == "process"
    again.update("j1", JobStatus(JobState.FAILED, "boom", exit_code=2))
    record = JobRegistry(path).get("c0ffee")  # native ids work too
    assert (record.state, record.message, record.exit_code) == (JobState.FAILED, "boom", 2)
    assert record.finished_at is not None


def test_unknown_job_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(JobNotFoundError, match="No job 'nope'.*launch ls"):
        JobRegistry(tmp_path / "jobs.db").get("nope")


def test_throughput_and_metrics(tmp_path: Path) -> None:
    jobs = JobRegistry(tmp_path / "jobs.db")
    jobs.add(JobRef("j1", "local", "n1"), "a", {}, "h")
    jobs.add_metrics("j1", {"billable_s": 10})
    jobs.add_metrics("j1", {"images_per_s": 99.5})
    assert jobs.get("j1").metrics == {"billable_s": 10, "images_per_s": 99.5}
    jobs.add_throughput(Throughput("resnet18", 32, 64, "bf16", "cpu", 812.0, "profile"))
    assert jobs.throughputs(model="resnet18")[0].images_per_s == 812.0
    assert jobs.throughputs(model="vit_b_16") == []


def test_state_dir_precedence() -> None:
    assert state_dir({"LAUNCHER_STATE_DIR": "/x"}) == Path("/x")
    assert state_dir({"XDG_STATE_HOME": "/s"}) == Path("/s/launcher")
