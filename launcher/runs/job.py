"""A submitted job as a handle: its status (recorded as it changes), logs, wait and cancel.

`attach` finds the backend a recorded job ran on, through the registry of backends.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator

from launcher.backend import Backend
from launcher.backends import registry
from launcher.errors import LauncherError
from launcher.estimate.record import record_results
from launcher.plan import JobRef, JobState, JobStatus
from launcher.runs.progress import for_record
from launcher.state.jobs import JobRecord, JobRegistry
from launcher.storage.local import LocalStore
from launcher.storage.sync import newest

__all__ = ["Job", "attach"]


def attach(job_id: str, jobs: JobRegistry | None = None) -> "Job":
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
        was_finished = self.record().state.finished
        self.jobs.update(self.ref.id, status)
        if status.finished and not was_finished:
            self._record_final_epoch()
        if status.details.get("metrics"):  # e.g. SageMaker's billable time: backends report, the Launcher records
            self.jobs.add_metrics(self.ref.id, dict(status.details["metrics"]))
        if status.ok:
            self._record_results()
        return status

    def _record_final_epoch(self) -> None:
        """The epoch the run's folder holds as this job ends: its own progress once a newer job of the run
        writes that folder (launch status of this job then reads this, not the newer job's epochs)."""
        progress = for_record(self.record())
        if progress is not None:
            self.jobs.add_metrics(self.ref.id, {"epoch": progress.epoch})

    def results_path(self, record: JobRecord | None = None, name: str = "results.json") -> Path | None:
        """Where the newest checkpoint's `name` (the trainer's results.json, results.csv, ...) lies, when
        the run's store is a folder on this machine; None otherwise."""
        record = record or self.record()
        uri = (record.spec.get("checkpoint") or {}).get("uri")
        if not uri or "://" in uri:
            return None
        store = LocalStore(str(Path(uri) / record.name))
        manifest, _skipped = newest(store)
        entry = manifest.files.get(name) if manifest else None
        return store.root / entry.key if entry else None

    def _record_results(self) -> None:
        """Once per job: feed the measured throughput to the estimator (launch estimate)."""
        record = self.record()
        path = self.results_path(record)
        if path is None or not path.exists() or "images_per_s" in record.metrics:
            return
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
