"""Supervised runs (`recovery:` in the spec): a run that finishes without a person.

A run is one spec submitted as several jobs (attempts), all with the same run name and checkpoint
store, so each attempt's entrypoint resumes from the newest complete checkpoint. The supervisor
follows the current attempt; when it ends for a retryable reason (its backend's ENDINGS table says
preempted, capacity or node_failure, and `recovery.on` lists it) it submits the next attempt, on the
same backend or, after `recovery.after_failures` retryable failures in a row there, on the next one
of `[-b backend, *recovery.fallback]` (wrapping round). An attempt runs on the catalog instance the last
attempt on its backend ran on; after a capacity error there, on the next fitting instance type of the catalog
not tried yet in this run (Backend.alternatives; none where the spec names its instance), without a wait:
another type is another pool. With none left it retries the same type after `recovery.backoff`
(exponential, bounded, printed). The region never changes: buckets, role, image and data are regional.

Everything it knows is in the job registry (launcher.state.jobs: the run, and each attempt as a job with
its run id and number), and an attempt is recorded (`submitting`) before its backend is called, so a
supervisor killed at any point and started again (`launch supervise RUN`) reads where the run stands
and submits no duplicate: an unfinished attempt is followed, not replaced; an attempt whose submit
was never answered stops the run with a line saying where to look. The run's lease on its store
(launcher.storage.lease) still admits one job at a time.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, TextIO

from launcher.backend import Alternative
from launcher.backends import registry
from launcher.errors import LauncherError
from launcher.estimate.model import estimate
from launcher.plan import Ending, JobState, JobStatus
from launcher.runs.budget import BudgetExceededError, chosen_row
from launcher.runs.job import Job
from launcher.runs.progress import for_record
from launcher.spec import BACKEND_SECTIONS, JobSpec
from launcher.state.jobs import JobRecord, JobRegistry, RunRecord, new_job_id, state_dir

__all__ = [
    "Supervisor",
    "background",
    "backends_of",
    "check_backends",
    "detach",
    "new_run_id",
    "spec_record",
    "supervisor_alive",
    "transfer_note",
]

ATTENTION = 1  # the run stopped for a person to look (an unanswered submit, max_attempts)


def spec_record(spec: JobSpec) -> dict[str, Any]:
    """The spec as a run keeps it (its record, each attempt's spec): every value, so the registry's readers find
    the store and the epochs, but not a program's unset train.data, which read back would be set, and a program
    that asked for no data would be given the digits (JobSpec.data)."""
    data = spec.model_dump(mode="json")
    if spec.command and spec.data() is None:
        data["train"].pop("data", None)
    return data


def new_run_id(name: str) -> str:
    return "run-" + new_job_id(name)


def backends_of(spec: JobSpec, primary: str) -> list[str]:
    """The backends a run may use, in order: the one given with -b, then recovery.fallback."""
    first = registry.canonical(primary)
    fallback = [registry.canonical(name) for name in (spec.recovery.fallback if spec.recovery else [])]
    return [first, *[name for name in fallback if name != first]]


# Where each backend's jobs run, and what reading a store of another cloud costs per GB from there: internet
# egress of the store's cloud, first tier, list prices (https://aws.amazon.com/s3/pricing/ "Data Transfer",
# https://cloud.google.com/storage/pricing#network-egress, https://azure.microsoft.com/pricing/details/bandwidth/).
_NATIVE = {"aws": "s3://", "gcp": "gs://", "azure": "az://"}
_EGRESS_PER_GB = {"s3://": 0.09, "gs://": 0.12, "az://": 0.087}


def transfer_note(backend: str, uri: str | None) -> str | None:
    """What a fallback pays to resume from a checkpoint store its platform does not hold natively."""
    scheme = next((s for s in _EGRESS_PER_GB if (uri or "").startswith(s)), None)
    if scheme is None or _NATIVE.get(backend) == scheme:
        return None
    return (f"{backend}: the checkpoint store {uri} stays where it is; each attempt there downloads the newest checkpoint "
            f"(and the data, unless it is in its own cloud) across clouds, billed as egress by the store's cloud at about "
            f"${_EGRESS_PER_GB[scheme]}/GB, and uploads its checkpoints back")  # fmt: skip


def check_backends(spec: JobSpec, names: list[str], make_launcher: Callable[[str], Any]) -> list[str]:
    """A dry run of every backend the run may move to, at its first submit: a fallback whose SDK,
    credentials or options are missing is found now, not hours later. Returns each plan's notes."""
    notes = []
    for name in names:
        try:
            launcher = make_launcher(name)
            plan = launcher.plan(spec)
            check = launcher.backend.check()
        except LauncherError as exc:
            raise LauncherError(f"recovery: the {name} backend cannot take this run: {exc.message.rstrip('.')}.",
                                exc.fix or f"Fix that, or remove {name} from recovery.fallback.") from None  # fmt: skip
        if not check.sdk or check.credentials is False:
            raise LauncherError(f"recovery: the {name} backend cannot take this run: {check.message.rstrip('.')}.",
                                f"Fix that, or remove {name} from recovery.fallback.")  # fmt: skip
        notes += [f"{name}: {note}" for note in plan.notes]
        transfer = transfer_note(name, spec.checkpoint.uri) if name != names[0] else None
        notes += [transfer] if transfer else []
    return notes


def supervisor_alive(run: RunRecord) -> bool:
    if not run.supervisor_pid or run.supervisor_pid == os.getpid():
        return False
    try:
        os.kill(run.supervisor_pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return (
        Path(f"/proc/{run.supervisor_pid}/stat").exists()
        and " Z " not in Path(f"/proc/{run.supervisor_pid}/stat").read_text()
    )


class Supervisor:
    """Follows one run to its end. `make_launcher(backend_name)` gives a Launcher on that backend."""

    def __init__(self, run_id: str, jobs: JobRegistry, make_launcher: Callable[[str], Any], *, check_budget: bool = True,
                 stream_logs: bool = True, poll_s: float = 2.0, sleep: Callable[[float], None] = time.sleep,
                 out: TextIO | None = None) -> None:  # fmt: skip
        self.run_id, self.jobs = run_id, jobs
        self._make, self._launchers = make_launcher, {}  # type: ignore[var-annotated]
        self.check_budget, self.stream_logs, self.poll_s, self._sleep = check_budget, stream_logs, poll_s, sleep
        self._out = out

    @classmethod
    def start(
        cls, spec: JobSpec, primary: str, jobs: JobRegistry, make_launcher: Callable[[str], Any], **kwargs: Any
    ) -> "Supervisor":
        """A new run of `spec`, after a dry run of every backend it may use."""
        names = backends_of(spec, primary)
        for note in check_backends(spec, names, make_launcher):
            if "the checkpoint store" in note:
                print(f"[recovery] note: {note}", file=sys.stderr, flush=True)
        run_id = new_run_id(spec.name)
        jobs.add_run(run_id, spec.name, spec_record(spec), names, os.getpid())
        return cls(run_id, jobs, make_launcher, **kwargs)

    # ------------------------------------------------------------ the loop

    @property
    def run_record(self) -> RunRecord:
        return self.jobs.run(self.run_id)

    def run(self) -> int:
        """Supervise until the run ends; its exit status (0 only when an attempt succeeded)."""
        run = self.run_record
        if run.state != "running":
            self.say(f"run {run.id} already ended: {run.state}" + (f" ({run.message})" if run.message else ""))
            return 0 if run.state == "succeeded" else ATTENTION
        if supervisor_alive(run):
            raise LauncherError(f"Run {run.id} is supervised already, by process {run.supervisor_pid}.",
                                f"Follow it with: launch status {run.id}")  # fmt: skip
        self.jobs.set_run(run.id, pid=os.getpid())
        try:
            while True:
                code = self.step()
                if code is not None:
                    return code
        except KeyboardInterrupt:
            return self._interrupted()

    def step(self) -> int | None:
        """One move: follow the unfinished attempt, end the run, or submit the next attempt. None: go on."""
        spec = self.spec
        attempts = self.jobs.attempts(self.run_id)
        last = attempts[-1] if attempts else None
        if last is not None and not last.state.finished:
            if last.state is JobState.SUBMITTING and not last.native_id:
                return self._end("failed", ATTENTION, f"attempt {last.attempt}'s submit to {last.backend} was never answered "
                                 f"(supervisor killed during it?): look for job {last.id} there, then `launch supervise {self.run_id}`")  # fmt: skip
            self._follow(last)
            return None
        if last is None:
            first = self.run_record.backends[0]
            return self._submit(1, first, self._instance(attempts, first))
        if last.state is JobState.SUCCEEDED:
            return self._end("succeeded", 0, f"attempt {last.attempt} on {last.backend} succeeded")
        code = last.exit_code if last.exit_code not in (None, 0) else 1
        if last.state is JobState.STOPPED:
            return self._end("stopped", code, f"attempt {last.attempt} was stopped")
        assert spec.recovery is not None
        ending = last.ending or Ending.UNKNOWN.value
        if ending not in spec.recovery.on:
            return self._end(
                "failed",
                code,
                f"attempt {last.attempt} on {last.backend} ended: {ending} ({last.message}); not retried",
            )
        if len(attempts) >= spec.recovery.max_attempts:
            return self._end(
                "failed", code, f"recovery.max_attempts ({spec.recovery.max_attempts}) used; the last ended: {ending}"
            )
        backend = self._next_backend(attempts)
        instance = self._instance(attempts, backend)
        self._back_off(attempts, backend, instance)
        return self._submit(len(attempts) + 1, backend, instance)

    # ------------------------------------------------------------ steps

    @property
    def spec(self) -> JobSpec:
        return JobSpec.model_validate(self.run_record.spec)

    def _launcher(self, name: str) -> Any:
        if name not in self._launchers:
            self._launchers[name] = self._make(name)
        return self._launchers[name]

    def _next_backend(self, attempts: list[JobRecord]) -> str:
        """The last attempt's backend, or the next one once it failed `after_failures` times in a row."""
        names, current = self.run_record.backends, attempts[-1].backend
        streak = _streak(attempts, lambda a: a.backend == current)
        index = names.index(current) if current in names else 0
        assert self.spec.recovery is not None
        if streak >= self.spec.recovery.after_failures and len(names) > 1:
            nxt = names[(index + 1) % len(names)]
            self.say(f"[recovery] {current} failed {streak} time(s) in a row: moving the run to {nxt}")
            return nxt
        return names[index]

    def _instance(self, attempts: list[JobRecord], backend: str) -> Alternative | None:
        """The catalog instance of the next attempt on `backend` (None: the spec or the backend leaves no choice): the
        one the last attempt there ran on, else the catalog's choice; after a capacity error there, the next fit not
        tried on it in this run (read from the attempts' records, so a restarted supervisor goes on the same way)."""
        alternatives = self._launcher(backend).backend.alternatives(self.spec)
        there = [a for a in attempts if a.backend == backend]
        last = next((alt for alt in alternatives if there and alt.instance == there[-1].instance), None)
        if last is None or there[-1].ending != Ending.CAPACITY.value:
            return last or (alternatives[0] if alternatives else None)
        tried = {a.instance for a in there}
        number = len(attempts) + 1
        fresh = (alt for alt in alternatives if alt.instance not in tried)
        untried = next((alt for alt in fresh if self._affordable(number, backend, alt)), None)
        if untried is None:
            return last  # every fitting type tried (or beyond the budget): the same one, after the backoff
        price = f", ${untried.price_per_hour:.2f}/h" if untried.price_per_hour is not None else ""
        self.say(f"[recovery] no capacity for {last.instance} on {backend}: attempt {number} tries {untried.instance}"
                 f" (the catalog's next fit{price})")  # fmt: skip
        return untried

    def _affordable(self, number: int, backend: str, instance: Alternative) -> bool:
        """Whether an attempt on `instance` passes the budget check (a pricier next fit that does not is skipped,
        said in one line, rather than ending the run: the same type after the backoff may still fit)."""
        if self.spec.limits.max_cost is None or not self.check_budget:
            return True
        try:
            self._price(
                self._launcher(backend).plan(self._spec_on(backend, instance), new_job_id(self.spec.name)), number
            )
        except LauncherError as exc:  # the budget, or a plan that cannot be made on it
            self.say(f"[recovery] skipping {instance.instance} on {backend}, the catalog's next fit: {exc.message}")
            return False
        return True

    def _back_off(self, attempts: list[JobRecord], backend: str, instance: Alternative | None) -> None:
        """Wait before retrying a capacity error on the same backend and instance type: backoff.initial x
        factor**(n-1), bounded. Another instance type is another pool: no wait."""
        name, last = instance.instance if instance else None, attempts[-1]
        if last.ending != Ending.CAPACITY.value or last.backend != backend or last.instance != name:
            return
        assert self.spec.recovery is not None
        failures = _streak(
            attempts, lambda a: a.backend == backend and a.instance == name and a.ending == Ending.CAPACITY.value
        )
        delay = self.spec.recovery.backoff.delay(failures)
        where = (f"for {name} on {backend} ({failures} in a row, no other fitting type to try)" if name
                 else f"on {backend} ({failures} in a row)")  # fmt: skip
        self.say(f"[recovery] no capacity {where}: waiting {delay} s before attempt {len(attempts) + 1}")
        self._sleep(delay)

    def _spec_on(self, backend: str, instance: Alternative | None) -> JobSpec:
        """The run's spec for an attempt on `instance`: itself on the catalog's own choice, else with the options that
        name the instance. That spec is the attempt's job record's; the run's stays as the user wrote it."""
        spec = self.spec
        data, left = spec_record(spec), self._budget_left()
        if left is not None and left < (spec.limits.max_cost or 0):
            # what is left of the run's budget is the attempt's: the platforms turn it into their hard runtime limit
            # (SageMaker's MaxRuntimeInSeconds, ...), so the run's total stays within max_cost whatever the estimate said
            data["limits"]["max_cost"] = round(left, 4)
        own = self._launcher(backend).backend.alternatives(spec)[:1] if instance is not None else []
        if instance is not None and [alt.instance for alt in own] != [instance.instance]:
            section = {**spec.options_section(backend), **instance.options}
            if backend in BACKEND_SECTIONS:
                data[backend] = section
            else:
                data["plugins"] = {**data.get("plugins", {}), backend: section}
        return JobSpec.model_validate(data)

    def _budget_left(self) -> float | None:
        limit = self.spec.limits.max_cost
        return None if limit is None else limit - self.spent()

    def _submit(self, number: int, backend: str, instance: Alternative | None) -> int | None:
        left = self._budget_left()
        if left is not None and left <= 0:
            return self._end("failed", BudgetExceededError.exit_code, f"limits.max_cost (${self.spec.limits.max_cost:.2f}) is "
                             f"spent (${self.spent():.2f} over {number - 1} attempt(s)): attempt {number} is not submitted")  # fmt: skip
        launcher = self._launcher(backend)
        try:
            spec = self._spec_on(backend, instance)
            plan = launcher.plan(spec, new_job_id(spec.name))
        except LauncherError as exc:  # e.g. what is left of max_cost buys too little time there
            return self._end("failed", exc.exit_code, f"attempt {number} on {backend} cannot be planned: {exc.message}")
        try:
            price = self._price(plan, number)
        except BudgetExceededError as exc:
            return self._end(
                "failed", exc.exit_code, f"{exc.message}: the run stops." + (f" {exc.fix}" if exc.fix else "")
            )
        on = f" on {instance.instance}" if instance else ""
        self.say(f"[recovery] attempt {number}/{spec.recovery.max_attempts if spec.recovery else 1} of run {self.run_id}:"
                 f" submitting {plan.job_name} to {backend}{on}")  # fmt: skip
        try:
            launcher.submit(plan, attempt=(self.run_id, number, price, instance.instance if instance else None))
        except LauncherError as exc:
            ending = launcher.backend.ending_of(
                exc.message
            )  # a refusal (quota, capacity) read by the backend's own table
            if not ending.retryable:
                return self._end("failed", exc.exit_code, f"attempt {number}: {exc}")
            self.jobs.update(plan.job_name, JobStatus(JobState.FAILED, f"submit refused: {exc.message}", ending=ending))
        return None

    def _price(self, plan: Any, number: int) -> float | None:
        """$/hour of the attempt's machines; refuses an attempt whose estimate exceeds what is left of max_cost."""
        spec, limit = plan.spec, self.spec.limits.max_cost  # the run's budget (the attempt's spec holds what is left)
        remaining, left = self._epochs_left(spec)
        try:
            rows = estimate(remaining, [self._launcher(plan.backend).backend], jobs=self.jobs)
            row, why = chosen_row(plan, rows), "; ".join(r.error for r in rows if r.error) or "no offers"
        except LauncherError as exc:
            row, why = None, exc.message.rstrip(".")
        if limit is None or not self.check_budget:
            return row.offer.price_per_hour * row.offer.nodes if row else None
        spent = self.spent()
        if row is None:
            raise BudgetExceededError(f"Cannot estimate attempt {number} on {plan.backend} to keep limits.max_cost "
                                      f"(${limit:.2f}, ${spent:.2f} spent): {why}",
                                      "Give the estimate a figure (launch estimate JOB.yaml says what it lacks), or "
                                      "pass --ignore-budget: a cloud attempt's runtime is still capped at what is left of "
                                      "max_cost at its price.")  # fmt: skip
        if row.cost > limit - spent:
            raise BudgetExceededError(f"Attempt {number} on {plan.backend} is estimated at ${row.cost:.2f}{left}, more than what is "
                                      f"left of limits.max_cost (${limit - spent:.2f} of ${limit:.2f}, ${spent:.2f} spent by "
                                      f"{number - 1} attempt(s))")  # fmt: skip
        return row.offer.price_per_hour * row.offer.nodes

    def _epochs_left(self, spec: JobSpec) -> tuple[JobSpec, str]:
        """`spec` with only the epochs the earlier attempts left (the furthest `epoch` they recorded: the run folder,
        and so the resumed checkpoint, is shared), for the estimate; and the words that say so."""
        done = [a.metrics.get("epoch") for a in self.jobs.attempts(self.run_id)]
        furthest = max((int(e) for e in done if isinstance(e, (int, float)) and not isinstance(e, bool)), default=0)
        left = max(spec.train.epochs - furthest, 1)  # a resumed run that had ended still starts, loads and saves
        if furthest <= 0 or left >= spec.train.epochs:
            return spec, ""
        return spec.model_copy(
            update={"train": spec.train.model_copy(update={"epochs": left})}
        ), f" for the {left} epoch(s) left"

    def spent(self) -> float:
        return sum(a.cost() or 0.0 for a in self.jobs.attempts(self.run_id))

    def _follow(self, record: JobRecord) -> None:
        job = Job(record.ref, self._launcher(record.backend).backend, self.jobs)
        if self.stream_logs and record.native_id:
            for line in job.logs(follow=True):
                print(line, file=self._out or sys.stdout, flush=True)
        status = job.wait(poll=self.poll_s)
        progress = for_record(self.jobs.get(record.id))
        if progress is not None:
            self.jobs.add_metrics(record.id, {"epoch": progress.epoch})
        ending = f" ({status.ending.value})" if status.ending else ""
        self.say(f"[recovery] attempt {record.attempt} ({record.id} on {record.backend}): {status.state.value}{ending}"
                 + (f": {status.message}" if status.message else ""))  # fmt: skip

    def _interrupted(self) -> int:
        """Ctrl-C: stop the current attempt, and the run with it."""
        attempts = self.jobs.attempts(self.run_id)
        if attempts and not attempts[-1].state.finished and attempts[-1].native_id:
            job = Job(attempts[-1].ref, self._launcher(attempts[-1].backend).backend, self.jobs)
            self.say(f"\ninterrupted: stopping {job.id} and run {self.run_id} ...")
            job.cancel()
            job.wait(poll=1.0, timeout=60)
        return self._end("stopped", 130, "interrupted (Ctrl-C)")

    def _end(self, state: str, code: int, message: str) -> int:
        self.jobs.set_run(self.run_id, state, message, pid=None)
        self.say(
            f"run {self.run_id}: {state}: {message.rstrip('.')}; cost ${self.spent():.2f} over {len(self.jobs.attempts(self.run_id))} attempt(s)"
        )
        return code

    def say(self, line: str) -> None:
        print(line, file=sys.stderr, flush=True)


def _streak(attempts: list[JobRecord], same: Callable[[JobRecord], bool]) -> int:
    """How many of the last attempts, newest first, are retryable failures for which `same` holds."""
    count = 0
    for attempt in reversed(attempts):
        if not (same(attempt) and attempt.ending and Ending(attempt.ending).retryable):
            break
        count += 1
    return count


def background(cli_args: list[str], log_file: Path) -> int:
    """`python -m launcher.cli *cli_args` in its own session (it outlives this process), its output appended to
    `log_file`; its pid. The detached run and sweep supervisors are the same code as their CLI commands."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "launcher.cli", *cli_args], stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    return proc.pid


def detach(run_id: str) -> int:
    """Hand the run to a background supervisor (`launch supervise RUN`), output in <state dir>/runs/RUN.log; its pid."""
    return background(["supervise", run_id], state_dir() / "runs" / f"{run_id}.log")
