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

import dataclasses
import os
import sys
from typing import Any, Callable, Mapping

from launcher import storage
from launcher.backend import Backend, check_features, secret_values
from launcher.backends import registry
from launcher.errors import LauncherError, MissingExtraError, first_line
from launcher.plan import JobRef, JobState, JobStatus, Plan
from launcher.runs.job import Job, attach
from launcher.runs.supervisor import Supervisor
from launcher.spec import JobSpec
from launcher.staging.code import code_target, stage_code
from launcher.staging.weights import check_local_inputs, stage_weights, weights_notes
from launcher.state.jobs import Attempt, JobRegistry, new_job_id
from launcher.storage import join_uri
from launcher.storage.lease import RunBusyError, acquire, release

__all__ = ["Launcher", Job]

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
        registry.check_sections(spec)  # every backend section, not only this backend's
        notes = (*check_features(self.backend, spec), *spec.train.unused())
        if spec.code is not None:
            notes = (
                *notes,
                f"code: {spec.code.dir} is archived at submit and sent once per content to {code_target(spec)}",
            )
        plan = self.backend.plan(spec, job_id)
        notes = (*notes, *weights_notes(plan))
        return dataclasses.replace(plan, notes=plan.notes + notes) if notes else plan

    def submit(self, spec_or_plan: JobSpec | Plan, force: bool = False, attempt: Attempt | None = None) -> Job:
        """Submit a job. Its run folder `<checkpoint.uri>/<name>` gets one writer: a job that holds it makes
        this raise RunBusyError naming that job, unless `force` (take it over; that job stops uploading).
        `attempt`: the supervised run (launcher.runs.supervisor) this job is an attempt of, recorded with it."""
        plan = (
            spec_or_plan if isinstance(spec_or_plan, Plan) else self.plan(spec_or_plan, new_job_id(spec_or_plan.name))
        )
        check_local_inputs(plan.spec)  # before anything is claimed or uploaded: a missing file is a typo, not a job
        # read once, here, before anything is claimed or recorded; the values never enter the plan
        secrets = secret_values(plan.secrets, os.environ if self._environ is None else self._environ)
        run = self._claim_run(plan, force)  # before the hooks: --resume-from writes into the run folder
        try:
            plan = stage_weights(self._ship_code(plan))  # pretrained weights by URL or name: fetched here, once
            for hook in self.before_submit:
                hook(self, plan)
        except BaseException:
            self._free_run(run, plan)
            raise
        return self._submit_recorded(plan, run, secrets, attempt)

    @staticmethod
    def _ship_code(plan: Plan) -> Plan:
        """The spec's code folder, archived and sent to the run's store once per content (launcher.staging.code);
        the plan then names the archive by its sha256. One place for every backend, plugins included."""
        if plan.spec.code is None:
            return plan

        return stage_code(plan)

    def _claim_run(self, plan: Plan, force: bool) -> Any:
        """The run folder's store with this job's lease in it; None without a checkpoint store.

        A store that cannot be checked from here (its SDK missing, no credentials, no network) refuses the
        submit, since two jobs would then write one run folder unseen; with `force` the job is submitted
        without the check (said on stderr: the entrypoint still takes the lease)."""
        if not plan.spec.checkpoint.uri:
            return None

        where = join_uri(plan.spec.checkpoint.uri, plan.spec.name)
        try:
            store = storage.open_store(where)  # looked up when called: tests put an unreachable store there
            acquire(store, plan.job_name, self.backend.name, force=force, finished=self._finished)
        except RunBusyError:
            raise
        except Exception as exc:  # noqa: BLE001 - any SDK, credential or network error: unchecked
            if not force:
                raise _unchecked_run(where, exc) from None
            print(f"[launcher] could not check that no other job writes to {where} ({first_line(exc, typed=True)});"
                  " submitting anyway (--force)", file=sys.stderr, flush=True)  # fmt: skip
            return None
        return store

    def _finished(self, job_id: str) -> bool:
        """Whether a job that holds a run folder is known to have ended (asks its backend when it can)."""
        try:
            record = self.jobs.get(job_id)
            return record.state.finished or (
                bool(record.native_id) and Launcher.attach(job_id, self.jobs).status().finished
            )
        except Exception:  # noqa: BLE001 - unknown here, or its backend cannot be asked: not known to be finished
            return False

    @staticmethod
    def _free_run(run: Any, plan: Plan) -> None:
        if run is not None:
            release(run, plan.job_name)

    def _submit_recorded(
        self, plan: Plan, run: Any = None, secrets: Mapping[str, str] | None = None, attempt: Attempt | None = None
    ) -> Job:
        """Record first, then submit: a failed call marks the record failed; an interrupted one leaves it
        `submitting`, with a message saying where to look."""
        pending = JobRef(plan.job_name, self.backend.name, "")
        note = f"submit to {self.backend.name} did not answer (interrupted?): look for job {plan.job_name} there"
        self.jobs.add(
            pending, plan.spec.name, plan.spec.model_dump(mode="json"), plan.hash(), JobState.SUBMITTING, note, attempt
        )
        try:
            ref = self.backend.submit(plan, secrets=secrets)
        except LauncherError as exc:  # the backend refused before starting anything
            self.jobs.update(plan.job_name, JobStatus(JobState.FAILED, f"submit refused: {exc}"))
            self._free_run(run, plan)
            raise
        except Exception as exc:  # e.g. a timeout after the request went out: the job may exist
            self.jobs.update(plan.job_name, JobStatus(JobState.SUBMITTING, f"{note} ({type(exc).__name__}: {exc})"))
            raise
        self.jobs.submitted(ref)
        return Job(ref, self.backend, self.jobs)

    def supervise(self, spec: JobSpec) -> int:
        """Run `spec` under its `recovery:` policy until the run ends (launcher.runs.supervisor: resubmits on
        preemption and capacity errors, fails over to recovery.fallback); the run's exit status."""

        def make(name: str) -> "Launcher":
            if name == self.backend.name:
                return self
            return Launcher(backend=name, jobs=self.jobs, before_submit=self.before_submit, environ=self._environ)

        return Supervisor.start(spec, self.backend.name, self.jobs, make).run()

    def sweep(self, spec: JobSpec, check_budget: bool = True) -> int:
        """Run the trials of `spec`'s `sweep:` section (launcher.runs.sweep: each a supervised run, placed on the
        cheapest of sweep.backends with room, under limits.max_cost for all of them) until the sweep ends; its exit
        status (3: the budget is spent). `launch sweep status NAME` and launcher.runs.sweep.summary read the result."""
        from launcher.runs.sweep import SweepSupervisor  # noqa: PLC0415

        def make(name: str) -> "Launcher":
            if name == self.backend.name:
                return self
            return Launcher(backend=name, jobs=self.jobs, before_submit=self.before_submit, environ=self._environ)

        return SweepSupervisor.start(spec, self.backend.name, self.jobs, make, check_budget=check_budget).run()

    def job(self, job_id: str) -> Job:
        record = self.jobs.get(job_id)
        return Job(record.ref, self.backend, self.jobs)

    @classmethod
    def attach(cls, job_id: str, jobs: JobRegistry | None = None) -> Job:
        """A handle on a recorded job, on whatever backend it ran."""
        return attach(job_id, jobs)


def _unchecked_run(where: str, exc: BaseException) -> LauncherError:
    """The refusal when the single-writer check of the run folder `where` cannot be made from here."""
    force = "or pass --force to submit without the check (the job still takes the lease when it starts)."
    if isinstance(exc, MissingExtraError):
        return LauncherError(f"Cannot check that no other job writes to {where}: {exc.message.rstrip('.')}.",
                             f"{(exc.fix or 'Install the missing package').rstrip('.')}, {force}")  # fmt: skip
    return LauncherError(f"Cannot check that no other job writes to {where} ({first_line(exc, typed=True).rstrip('.')}).",
                         f"Make the store reachable from here (credentials, network), {force}")  # fmt: skip
