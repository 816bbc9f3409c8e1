"""Launcher.submit records the job BEFORE the backend's submit call, so nothing paid goes untracked."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Iterator, Mapping

import pytest

from launcher import storage
from launcher.api import Launcher
from launcher.backend import Backend
from launcher.errors import LauncherError
from launcher.plan import JobRef, JobState, JobStatus, Plan
from launcher.spec import JobSpec
from launcher.state.jobs import JobRegistry


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
    assert (record.state, record.native_id, record.ref_extra, record.message) == (
        JobState.PENDING,
        "native-7",
        {"region": "x"},
        "",
    )
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


def _with_store(tmp_path: Path, uri: str) -> tuple[Answer, JobRegistry, Plan]:
    jobs = JobRegistry(tmp_path / "jobs.db")
    backend = Answer(jobs)
    plan = Launcher(backend, jobs).plan(JobSpec(name="paid", checkpoint={"uri": uri}), "paid-1")
    return backend, jobs, plan


def test_a_store_whose_sdk_is_missing_refuses_naming_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    monkeypatch.setitem(sys.modules, "boto3", None)  # as if the aws extra were not installed
    backend, jobs, plan = _with_store(tmp_path, "s3://bucket/ckpts")
    with pytest.raises(LauncherError) as info:
        Launcher(backend, jobs).submit(plan)
    text = str(info.value)
    assert "s3://bucket/ckpts/paid" in text and "pip install 'torch-launcher[aws]'" in text and "--force" in text
    assert "\n" not in text and "submitting anyway" not in capsys.readouterr().err
    assert backend.seen_during_submit is None and jobs.list() == []  # nothing submitted, nothing recorded


def test_an_unreachable_store_refuses_and_force_submits_without_the_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    def unreachable(uri: str, **_: Any) -> Any:
        raise ConnectionError("Could not connect to the endpoint URL\nsecond line")

    monkeypatch.setattr(storage, "open_store", unreachable)
    backend, jobs, plan = _with_store(tmp_path, "gs://bucket/ckpts")
    with pytest.raises(LauncherError, match=r"Cannot check that no other job writes to gs://bucket/ckpts/paid "
                                            r"\(ConnectionError: Could not connect to the endpoint URL\)\. .*--force") as info:  # fmt: skip
        Launcher(backend, jobs).submit(plan)
    assert "second line" not in str(info.value) and jobs.list() == []
    job = Launcher(backend, jobs).submit(plan, force=True)
    assert job.record().native_id == "native-7"
    assert "submitting anyway (--force)" in capsys.readouterr().err


def test_a_reachable_store_still_takes_the_lease_and_refuses_a_second_writer(tmp_path: Path) -> None:
    from launcher.storage.lease import RunBusyError

    backend, jobs, plan = _with_store(tmp_path, str(tmp_path / "ckpts"))
    Launcher(backend, jobs).submit(plan)
    assert (tmp_path / "ckpts" / "paid" / "lease.json").exists()
    second = Launcher(backend, jobs).plan(plan.spec, "paid-2")
    with pytest.raises(RunBusyError, match="paid-1"):
        Launcher(backend, jobs).submit(second)
