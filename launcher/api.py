"""The Python API: `Launcher` and `Job`.

    from launcher import Launcher, JobSpec
    spec = JobSpec.from_yaml("examples/quickstart.yaml")
    launcher = Launcher(backend="local")
    print(launcher.plan(spec).to_yaml())
    job = launcher.submit(spec)
    for line in job.logs(follow=True):
        print(line)
    status = job.wait()

The CLI is a thin layer over this module. Every job is recorded in the local
job registry (state `submitting`) BEFORE the backend's submit call and
completed with the native id after it, so a crash or a Ctrl-C of the caller,
even in the middle of that call, never leaves a paid job untracked.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable, Iterator, Mapping

from launcher import registry
from launcher.backend import Backend, secret_values
from launcher.errors import LauncherError
from launcher.jobs import JobRecord, JobRegistry, new_job_id
from launcher.plan import JobRef, JobState, JobStatus, Plan
from launcher.spec import JobSpec

__all__ = ["Launcher", "Job"]

# Hooks run just before a plan is submitted (budget checks, --resume-from
# copies). Each takes (launcher, plan) and may raise a LauncherError to refuse.
PreSubmitHook = Callable[["Launcher", Plan], None]


class Launcher:
    def __init__(
        self,
        backend: str | Backend = "local",
        jobs: JobRegistry | None = None,
        before_submit: tuple[PreSubmitHook, ...] = (),
        environ: Mapping[str, str] | None = None,
    ) -> None:
        """`environ`: where submit reads the values of a spec's secrets (default os.environ)."""
        self.backend = registry.create(backend) if isinstance(backend, str) else backend
        self._jobs = jobs
        self.before_submit = before_submit
        self._environ = environ

    @property
    def jobs(self) -> JobRegistry:
        if self._jobs is None:
            self._jobs = JobRegistry()
        return self._jobs

    def plan(self, spec: JobSpec, job_id: str | None = None) -> Plan:
        return self.backend.plan(spec, job_id)

    def submit(self, spec_or_plan: JobSpec | Plan) -> "Job":
        plan = spec_or_plan if isinstance(spec_or_plan, Plan) else self.plan(spec_or_plan, new_job_id(spec_or_plan.name))
        # read once, here, before anything is claimed or recorded; the values never enter the plan
        secrets = secret_values(plan.secrets, os.environ if self._environ is None else self._environ)
        for hook in self.before_submit:
            hook(self, plan)
        return self._submit_recorded(plan, secrets)

    def _submit_recorded(self, plan: Plan, secrets: Mapping[str, str] | None = None) -> "Job":
        """Record first, then submit: a failed call marks the record failed; an interrupted one leaves it
        `submitting`, with a message saying where to look."""
        pending = JobRef(plan.job_name, self.backend.name, "")
        note = f"submit to {self.backend.name} did not answer (interrupted?): look for job {plan.job_name} there"
        self.jobs.add(pending, plan.spec.name, plan.spec.model_dump(mode="json"), plan.hash(), JobState.SUBMITTING, note)
        try:
            if self.backend.takes_secrets:
                ref = self.backend.submit(plan, secrets=secrets)  # type: ignore[call-arg]
            else:
                ref = self.backend.submit(plan)
        except LauncherError as exc:  # the backend refused before starting anything
            self.jobs.update(plan.job_name, JobStatus(JobState.FAILED, f"submit refused: {exc}"))
            raise
        except Exception as exc:  # e.g. a timeout after the request went out: the job may exist
            self.jobs.update(plan.job_name, JobStatus(JobState.SUBMITTING, f"{note} ({type(exc).__name__}: {exc})"))
            raise
        self.jobs.submitted(ref)
        return Job(ref, self.backend, self.jobs)

    def job(self, job_id: str) -> "Job":
        record = self.jobs.get(job_id)
        return Job(record.ref, self.backend, self.jobs)

    @classmethod
    def attach(cls, job_id: str, jobs: JobRegistry | None = None) -> "Job":
        """A handle on a recorded job, on whatever backend it ran."""
        jobs = jobs or JobRegistry()
        record = jobs.get(job_id)
        return Job(record.ref, registry.create(record.backend), jobs)


class Job:
    """A submitted job: ask its status, read its logs, wait for it, cancel it."""

    def __init__(self, ref: JobRef, backend: Backend, jobs: JobRegistry) -> None:
        self.ref = ref
        self.backend = backend
        self.jobs = jobs

    @property
    def id(self) -> str:
        return self.ref.id

    def record(self) -> JobRecord:
        return self.jobs.get(self.ref.id)

    def status(self) -> JobStatus:
        if not self.ref.native_id:  # still `submitting` (or interrupted there): the backend has no id to ask about
            record = self.record()
            if record.native_id:
                self.ref = record.ref
            else:
                return JobStatus(record.state, record.message, record.exit_code)
        status = self.backend.status(self.ref)
        self.jobs.update(self.ref.id, status)
        if status.details.get("metrics"):  # e.g. SageMaker's billable time: backends report, the Launcher records
            self.jobs.add_metrics(self.ref.id, dict(status.details["metrics"]))
        if status.ok:
            self._record_results()
        return status

    def results_path(self, record: JobRecord | None = None) -> Path | None:
        """The trainer's results.json, when the run folder is on this machine."""
        record = record or self.record()
        uri = (record.spec.get("checkpoint") or {}).get("uri")
        if not uri or "://" in uri:
            return None
        return Path(uri) / record.name / "results.json"

    def _record_results(self) -> None:
        """Once per job: feed the measured throughput to the estimator (launch estimate)."""
        record = self.record()
        path = self.results_path(record)
        if path is None or not path.exists() or "images_per_s" in record.metrics:
            return
        from launcher.estimate.record import record_results  # noqa: PLC0415

        try:
            record_results(self.jobs, self.id, path)
        except LauncherError:
            pass  # a custom command's results.json need not follow the trainer's format

    def logs(self, follow: bool = False) -> Iterator[str]:
        return self.backend.logs(self.ref, follow=follow)

    def wait(self, poll: float = 5.0, timeout: float | None = None) -> JobStatus:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            status = self.status()
            if status.finished:
                return status
            if deadline is not None and time.monotonic() > deadline:
                return status
            time.sleep(poll)

    def cancel(self) -> bool:
        """Ask the backend to stop the job; False, with nothing changed, when it had already finished."""
        if self.status().finished:  # the stored state may be stale: ask the backend first
            return False
        if not self.ref.native_id:
            raise LauncherError(f"Job {self.id} was never confirmed by {self.backend.name}, so it cannot be stopped from here.",
                                f"Look for {self.id} in the {self.backend.name} console and stop it there.")  # fmt: skip
        self.backend.cancel(self.ref)
        self.jobs.update(self.ref.id, JobStatus(JobState.STOPPING, "stop requested"))
        return True
