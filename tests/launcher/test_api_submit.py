"""Launcher.submit records the job BEFORE the backend's submit call, so nothing paid goes untracked."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Mapping

import pytest

from launcher.api import Launcher
from launcher.backend import Backend
from launcher.errors import LauncherError
from launcher.jobs import JobRegistry
from launcher.plan import JobRef, JobState, JobStatus, Plan
from launcher.spec import JobSpec


class Answer(Backend):
    """A backend whose submit does what the test says: answer, refuse, time out, or get a Ctrl-C."""

    name = "answer"

    def __init__(self, jobs: JobRegistry, outcome: BaseException | None = None) -> None:
        self.jobs, self.outcome = jobs, outcome
        self.seen_during_submit: Any = None
        self.asked: list[JobRef] = []

    def plan(self, spec: JobSpec, job_id: str | None = None) -> Plan:
        return Plan(self.name, job_id or spec.name, spec, {})

    def submit(self, plan: Plan, secrets: Mapping[str, str] | None = None) -> JobRef:
        self.seen_during_submit = self.jobs.get(plan.job_name)  # what a crash at this moment would leave
        if self.outcome is not None:
            raise self.outcome
        return JobRef(plan.job_name, self.name, "native-7", {"region": "x"})

    def status(self, ref: JobRef) -> JobStatus:
        self.asked.append(ref)
        return JobStatus(JobState.RUNNING)

    def logs(self, ref: JobRef, follow: bool = False) -> Iterator[str]:
        yield from ()

    def cancel(self, ref: JobRef) -> None:
        pass


def _launch(tmp_path: Path, outcome: BaseException | None = None) -> tuple[Answer, JobRegistry, Plan]:
    jobs = JobRegistry(tmp_path / "jobs.db")
    backend = Answer(jobs, outcome)
    launcher = Launcher(backend, jobs)
    plan = launcher.plan(JobSpec(name="paid"), "paid-1")
    return backend, jobs, plan


def test_the_record_exists_before_the_backend_is_called_and_is_completed_after(tmp_path: Path) -> None:
    backend, jobs, plan = _launch(tmp_path)
    job = Launcher(backend, jobs).submit(plan)
    during = backend.seen_during_submit
    assert during.state is JobState.SUBMITTING and during.native_id == "" and "paid-1" in during.message
    record = jobs.get("paid-1")
    assert (record.state, record.native_id, record.ref_extra, record.message) == (JobState.PENDING, "native-7", {"region": "x"}, "")
    assert job.status().state is JobState.RUNNING and backend.asked[-1].native_id == "native-7"


def test_ctrl_c_during_submit_leaves_a_submitting_record(tmp_path: Path) -> None:
    backend, jobs, plan = _launch(tmp_path, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        Launcher(backend, jobs).submit(plan)
    record = jobs.get("paid-1")
    assert record.state is JobState.SUBMITTING and "look for job paid-1" in record.message
    status = Launcher(backend, jobs).job("paid-1").status()  # never asks the backend about an empty id
    assert status.state is JobState.SUBMITTING and backend.asked == []
    with pytest.raises(LauncherError, match="never confirmed"):
        Launcher(backend, jobs).job("paid-1").cancel()


def test_a_refused_submit_is_recorded_as_failed(tmp_path: Path) -> None:
    backend, jobs, plan = _launch(tmp_path, LauncherError("No quota.", "Ask for more."))
    with pytest.raises(LauncherError):
        Launcher(backend, jobs).submit(plan)
    record = jobs.get("paid-1")
    assert record.state is JobState.FAILED and record.message == "submit refused: No quota. Ask for more."


def test_a_timeout_during_submit_stays_submitting(tmp_path: Path) -> None:
    backend, jobs, plan = _launch(tmp_path, TimeoutError("read timed out"))
    with pytest.raises(TimeoutError):
        Launcher(backend, jobs).submit(plan)
    record = jobs.get("paid-1")
    assert record.state is JobState.SUBMITTING and "TimeoutError: read timed out" in record.message
