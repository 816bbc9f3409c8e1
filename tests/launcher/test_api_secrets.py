"""The Launcher reads a spec's secret values once and hands them to the backend; one wording when one is missing."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Mapping

import pytest

from launcher.api import Launcher
from launcher.backend import Backend
from launcher.errors import LauncherError
from launcher.plan import JobRef, JobState, JobStatus, Plan
from launcher.spec import JobSpec
from launcher.state.jobs import JobRegistry
from tests.backends.test_contract import BACKENDS, _plan

MISSING = "The secret WANDB_API_KEY is listed in the spec but not set in your environment. Export WANDB_API_KEY before launching."


class Counting(dict):  # type: ignore[type-arg]
    """An environment that counts how often each variable is read."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.reads: dict[str, int] = {}

    def __getitem__(self, key: str) -> str:
        self.reads[key] = self.reads.get(key, 0) + 1
        return str(super().__getitem__(key))


class Keeper(Backend):
    """A backend that keeps what it is handed."""

    name = "keeper"
    takes_secrets = True

    def __init__(self) -> None:
        self.handed: Mapping[str, str] | None = None

    def plan(self, spec: JobSpec, job_id: str | None = None) -> Plan:
        return Plan(self.name, job_id or spec.name, spec, {}, secrets=tuple(spec.secrets))

    def submit(self, plan: Plan, secrets: Mapping[str, str] | None = None) -> JobRef:  # type: ignore[override]
        self.handed = secrets
        return JobRef(plan.job_name, self.name, "n-1")

    def status(self, ref: JobRef) -> JobStatus:
        return JobStatus(JobState.RUNNING)

    def logs(self, ref: JobRef, follow: bool = False) -> Iterator[str]:
        yield from ()

    def cancel(self, ref: JobRef) -> None:
        pass


def test_the_launcher_reads_each_secret_once_and_hands_the_values_over(tmp_path: Path) -> None:
    environ = Counting({"WANDB_API_KEY": "s3cr3t", "HF_TOKEN": "hf", "OTHER": "x"})
    backend = Keeper()
    job = Launcher(backend, JobRegistry(tmp_path / "jobs.db"), environ=environ).submit(
        JobSpec(name="paid", secrets=["WANDB_API_KEY", "HF_TOKEN"])
    )
    assert backend.handed == {"WANDB_API_KEY": "s3cr3t", "HF_TOKEN": "hf"}
    assert environ.reads == {"WANDB_API_KEY": 1, "HF_TOKEN": 1}
    assert "s3cr3t" not in str(job.record())  # nothing of the value is recorded


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_a_missing_secret_is_one_sentence_on_every_backend_and_nothing_is_recorded(
    backend: str, tmp_path: Path
) -> None:
    plan = _plan(backend, secrets=["WANDB_API_KEY"])
    jobs = JobRegistry(tmp_path / "jobs.db")
    with pytest.raises(LauncherError) as info:
        Launcher(BACKENDS[backend](), jobs, environ={}).submit(plan)
    assert str(info.value) == MISSING
    assert jobs.list() == []
