"""Sweeps (`sweep:` in the spec): many trials of one spec across backends, under one budget.

Each trial is a supervised run (launcher.runs.supervisor.Supervisor) of the spec with the trial's values applied, named
`<sweep>-t007` (so its checkpoint folder is its own), with `recovery:` as written (its defaults when absent): a
reclaimed trial resumes from its checkpoint, it does not restart. The sweep supervisor keeps `sweep.parallel`
trials running. It places each new trial on the cheapest of `sweep.backends` that has room (`sweep.capacity`;
the local backend one trial at a time unless told more, a cloud up to `parallel`) according to the estimate
(launcher.estimate), and never starts a trial whose estimate exceeds what is left of `limits.max_cost`: the
budget less what every attempt of every trial has cost and what the running trials are still estimated to
cost. The trial's run gets that remainder as its own max_cost (the platforms' hard runtime limit); once the
sweep's total reaches max_cost, the running trials are stopped and the sweep ends with exit 3.

Early stopping is successive halving: when a trial's results.csv in the store (the trial's metric at an epoch of
`early_stop.after_epochs`, a rung) is known, it is compared with the trials that reached that epoch so far; those
outside the best `keep_best` fraction are stopped (their checkpoints stay) and marked `stopped_early`, not failed. At
most round(keep_best x trials) trials are kept and the rest stopped, so a sweep of 6 keeping half stops 3; at each
later rung the same among the trials kept at the one before.

`method: ultralytics` makes a trial's values when it starts (launcher.spec.job.next_values: a seeded mutation of
the results of the trials ended by then, as Ultralytics' tuner does) and records them with the trial.

Everything is in the job registry (launcher.state.jobs: the sweep, each trial with its values, run, backend, estimate,
metric per epoch and early-stop decision; the run's attempts as jobs). A trial is recorded before its run is
created, and the run's attempt before its submit (the recovery supervisor's rule), so a sweep supervisor killed
at any point and started again (`launch sweep JOB.yaml` again, or `python -m launcher.runs.sweep SWEEP`) follows
the trials already started and submits no trial twice.
"""

from __future__ import annotations

import csv
import io
import math
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from launcher.backends import registry
from launcher.errors import JobNotFoundError, LauncherError
from launcher.estimate.model import estimate
from launcher.runs.job import Job
from launcher.runs.supervisor import Supervisor, backends_of, background, check_backends, new_run_id, supervisor_alive
from launcher.spec import JobSpec
from launcher.spec.job import check_trials, known_values, next_values, resolve_sweep, trial_spec
from launcher.spec.sweep import Sweep, describe, trial_name, trial_values
from launcher.state.jobs import JobRegistry, RunRecord, SweepRecord, TrialRecord, new_job_id, state_dir
from launcher.storage import join_uri, open_store
from launcher.storage.retry import RetryPolicy
from launcher.storage.sync import newest

__all__ = [
    "SweepSupervisor",
    "TrialRow",
    "best_trial",
    "detach",
    "metric_rows",
    "new_sweep_id",
    "summary",
    "sweep_backends",
]

BUDGET_EXIT = 3  # as launcher.runs.budget.BudgetExceededError
ACTIVE = ("starting", "running")
RUN_TO_TRIAL = {"succeeded": "succeeded", "failed": "failed", "stopped": "stopped"}


def new_sweep_id(name: str) -> str:
    return "sweep-" + new_job_id(name)


def sweep_backends(spec: JobSpec, primary: str) -> list[str]:
    """Where the sweep's trials may run: sweep.backends, else the -b backend."""
    assert spec.sweep is not None
    return [registry.canonical(name) for name in (spec.sweep.backends or [primary])]


class SweepSupervisor:
    """Runs one sweep to its end. `make_launcher(backend_name)` gives a Launcher on that backend."""

    def __init__(
        self,
        sweep_id: str,
        jobs: JobRegistry,
        make_launcher: Callable[[str], Any],
        *,
        check_budget: bool = True,
        poll_s: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.sweep_id, self.jobs = sweep_id, jobs
        self._make, self._launchers = make_launcher, {}  # type: ignore[var-annotated]
        self.check_budget, self.poll_s, self._sleep = check_budget, poll_s, sleep
        self._threads: dict[str, threading.Thread] = {}
        self._cancelled: set[str] = set()  # attempts this process asked to stop (early stop, budget)
        record = self.record
        self.spec = JobSpec.model_validate(record.spec)
        assert self.spec.sweep is not None
        self.sweep: Sweep = self.spec.sweep
        self._drawn = trial_values(self.sweep) if self.sweep.method != "ultralytics" else []  # grid, random: all now

    @classmethod
    def start(
        cls, spec: JobSpec, primary: str, jobs: JobRegistry, make_launcher: Callable[[str], Any], **kwargs: Any
    ) -> "SweepSupervisor":
        """A new sweep of `spec`, after every trial was checked and planned on every backend it may use."""
        if spec.sweep is None:
            raise LauncherError(
                f"The spec {spec.name} has no sweep: section.",
                "Add one (see README, Sweeps), or run it with: launch JOB.yaml",
            )
        check_trials(spec)  # the Python API's specs were not loaded from a file
        spec = resolve_sweep(spec)  # an ultralytics sweep's space, recorded as it is now
        assert spec.sweep is not None
        names = sweep_backends(spec, primary)
        known = known_values(spec)
        first = trial_spec(spec, 1, known[0][1])
        fallback = [name for name in backends_of(first, names[0]) if name not in names]
        for note in check_backends(first, [*names, *fallback], make_launcher):  # SDK, credentials, options: found now
            if "the checkpoint store" in note:
                print(f"[sweep] note: {note}", file=sys.stderr, flush=True)
        launchers = {name: make_launcher(name) for name in names}
        for number, (label, values) in enumerate(known, 1):
            tspec = trial_spec(spec, number, values)
            for name, launcher in launchers.items():
                try:
                    launcher.plan(tspec)  # every check a submit makes of the plan, for every trial, before any submit
                except LauncherError as exc:
                    raise LauncherError(
                        f"sweep: {label} ({describe(values)}) cannot run on {name}: {exc.message}",
                        exc.fix or "Narrow sweep.space, or remove that backend from sweep.backends.",
                    ) from None
        sweep_id = new_sweep_id(spec.name)
        jobs.add_sweep(sweep_id, spec.name, spec.model_dump(mode="json"), names, os.getpid())
        return cls(sweep_id, jobs, make_launcher, **kwargs)

    @property
    def record(self) -> SweepRecord:
        return self.jobs.sweep(self.sweep_id)

    # ------------------------------------------------------------ the loop

    def run(self) -> int:
        """Schedule and follow trials until the sweep ends; its exit status (3: the budget is spent)."""
        sweep = self.record
        if sweep.state != "running":
            self.say(
                f"sweep {sweep.id} already ended: {sweep.state}" + (f" ({sweep.message})" if sweep.message else "")
            )
            return 0 if sweep.state == "finished" else 1
        if supervisor_alive(sweep):  # the same pid rule as a run's
            raise LauncherError(
                f"Sweep {sweep.id} is supervised already, by process {sweep.supervisor_pid}.",
                f"Follow it with: launch sweep status {sweep.name}",
            )
        self.jobs.set_sweep(sweep.id, pid=os.getpid())
        try:
            while True:
                code = self.step()
                if code is not None:
                    return code
                self._sleep(self.poll_s)
        except KeyboardInterrupt:
            self.say(f"\ninterrupted: stopping the running trials of sweep {self.sweep_id} ...")
            self._stop_running(self.jobs.trials(self.sweep_id))
            code = self._end("stopped", 130, "interrupted (Ctrl-C): the running trials were stopped")
            again = (
                "launch sweep JOB.yaml starts it again: its trials resume from their checkpoints (the same values)"
                if self.sweep.method != "ultralytics"
                else "a new sweep's mutations may differ from these: give it another name: so that its trials do "
                "not resume these checkpoints"
            )
            self.say(
                f"the trials' checkpoints are kept (launch sweep status {self.spec.name}); {again}; "
                "launch sweep --detach runs a sweep that outlives the terminal"
            )
            return code

    def step(self) -> int | None:
        """One pass: follow the trials, stop the worst at the rung, start trials while there is room and budget."""
        trials = self._refresh()
        limit, spent = self.spec.limits.max_cost, self.spent()
        if limit is not None and self.check_budget and spent >= limit:
            self._stop_running(trials)
            left = self.sweep.count() - len(trials)
            return self._end(
                "failed",
                BUDGET_EXIT,
                f"limits.max_cost (${limit:.2f}) is spent (${spent:.2f}): the running "
                f"trials were stopped, {left} trial(s) not started",
            )
        started = {t.number for t in trials}
        waiting = [n for n in range(1, self.sweep.count() + 1) if n not in started]
        while waiting and sum(t.state in ACTIVE for t in trials) < self.sweep.parallel:
            number = waiting[0]
            try:
                values = self._values(number, trials)
            except ValueError as exc:  # an ultralytics space with no new values left
                return self._end("failed", 1, f"trial {number}: {exc}")
            placed = self._place(number, values, trials)
            if isinstance(placed, str):  # no backend may take it now
                if any(t.state in ACTIVE for t in trials):
                    break  # a running trial ends, or costs less than estimated: then again
                return self._end("failed", BUDGET_EXIT, placed)
            if placed is None:
                break  # every backend is full
            self._start(number, values, *placed)
            waiting.pop(0)
            trials = self.jobs.trials(self.sweep_id)
        if not waiting and not any(t.state in ACTIVE or self._stopping(t) for t in trials):
            return self._finish(trials)
        return None

    def _stopping(self, trial: TrialRecord) -> bool:
        """A trial stopped early whose run has not ended yet (its job is being stopped)."""
        return trial.state == "stopped_early" and self.jobs.run(trial.run_id).state == "running"

    # ------------------------------------------------------------ placement and budget

    def _launcher(self, name: str) -> Any:
        if name not in self._launchers:
            self._launchers[name] = self._make(name)
        return self._launchers[name]

    def capacity(self, name: str) -> int:
        """Trials at once on a backend: sweep.capacity, else one for this machine, `parallel` for a cloud."""
        if name in self.sweep.capacity:
            return self.sweep.capacity[name]
        return 1 if name == "local" else self.sweep.parallel

    def _estimate(self, name: str, spec: JobSpec) -> tuple[float | None, str]:
        """The cheapest estimate of `spec` on backend `name` (None and why where there is none)."""

        try:
            rows = estimate(spec, [self._launcher(name).backend], jobs=self.jobs)
        except LauncherError as exc:
            return None, exc.message.rstrip(".")
        usable = [r for r in rows if r.ok]
        if not usable:
            return None, "; ".join(r.error.rstrip(".") for r in rows if r.error) or "no offers"
        return min(r.cost for r in usable), ""

    def left(self, trials: list[TrialRecord]) -> float | None:
        """What is left of max_cost: less what every attempt cost and what the running trials are still estimated at."""
        limit = self.spec.limits.max_cost
        if limit is None:
            return None
        reserved = sum(max(0.0, (t.estimate or 0.0) - self._trial_cost(t)) for t in trials if t.state in ACTIVE)
        return limit - self.spent() - reserved

    def _place(
        self, number: int, values: dict[str, Any], trials: list[TrialRecord]
    ) -> tuple[str, float | None, float | None] | str | None:
        """(backend, estimate, budget it gets) for trial `number`: the cheapest backend with room whose estimate fits
        what is left of the budget; None when every backend is full; a sentence when the budget (or a missing
        estimate while a budget is set) leaves no backend."""
        spec = trial_spec(self.spec, number, values)
        options = []
        for name in self.record.backends:
            if sum(t.state in ACTIVE and t.backend == name for t in trials) < self.capacity(name):
                options.append((name, *self._estimate(name, spec)))
        if not options:
            return None
        options.sort(
            key=lambda o: (o[1] is None, o[1] or 0.0)
        )  # cheapest first; unknown cost last; listed order on ties
        left = self.left(trials)
        if left is None or not self.check_budget:
            name, cost, _why = options[0]
            return name, cost, None
        for name, cost, _why in options:
            if cost is not None and cost <= left:
                return name, cost, left
        limit = self.spec.limits.max_cost
        priced = [o for o in options if o[1] is not None]
        shown = describe(values)
        if not priced:
            why = "; ".join(f"{name}: {why}" for name, _c, why in options)
            return (
                f"cannot estimate trial {number} ({shown}) to keep limits.max_cost (${limit:.2f}): {why}; "
                f"give the estimate a figure (launch estimate JOB.yaml) or pass --ignore-budget"
            )
        name, cost, _why = priced[0]
        return (
            f"trial {number} ({shown}) is estimated at ${cost:.2f} on {name}, more than what is left of "
            f"limits.max_cost (${max(left, 0.0):.2f} of ${limit:.2f}, ${self.spent():.2f} spent): "
            f"{number - 1} trial(s) started, {self.sweep.count() - number + 1} not"
        )

    def spent(self) -> float:
        """What every attempt of every trial has cost."""
        return sum(self._trial_cost(t) for t in self.jobs.trials(self.sweep_id))

    def _trial_cost(self, trial: TrialRecord) -> float:
        return sum(a.cost() or 0.0 for a in self.jobs.attempts(trial.run_id))

    # ------------------------------------------------------------ trials

    def _values(self, number: int, trials: list[TrialRecord]) -> dict[str, Any]:
        """Trial `number`'s values: grid and random from the seed; ultralytics a mutation of the finished trials'
        results now (each trial's best metric, trial order), made as the trial starts and recorded with it."""
        if self._drawn:
            return self._drawn[number - 1]
        sign = 1.0 if self.sweep.goal_() == "max" else -1.0  # Ultralytics' fitness: higher is better
        results = []
        for trial in trials:
            value = _best_value(trial, self.sweep)
            if value is not None and trial.state not in ACTIVE:  # ended: succeeded, stopped (early), failed
                results.append((sign * value, trial.params))
        return next_values(self.spec, number, results, [t.params for t in trials])

    def _start(
        self, number: int, values: dict[str, Any], backend: str, estimate: float | None, budget: float | None
    ) -> None:
        run_id = new_run_id(trial_name(self.spec.name, number))
        self.jobs.add_trial(self.sweep_id, number, run_id, values, backend, estimate)  # first: a restart sees it
        cost = f" (estimated ${estimate:.2f})" if estimate is not None else ""
        self.say(f"[sweep] trial {number}/{self.sweep.count()} ({describe(values)}) on {backend}{cost}: run {run_id}")
        self._create_run(next(t for t in self.jobs.trials(self.sweep_id) if t.number == number), budget)

    def _create_run(self, trial: TrialRecord, budget: float | None) -> None:
        """The trial's run (recorded), its first attempt submitted from here, then followed in a thread."""
        spec = trial_spec(self.spec, trial.number, trial.params, max_cost=budget)
        self.jobs.add_run(
            trial.run_id, spec.name, spec.model_dump(mode="json"), backends_of(spec, trial.backend), os.getpid()
        )
        self.jobs.set_trial(self.sweep_id, trial.number, "running")
        supervisor = self._supervisor(trial)
        if supervisor.step() is None:  # the first submit, here: one trial at a time, in order
            self._follow(trial, supervisor)

    def _supervisor(self, trial: TrialRecord) -> Supervisor:
        return Supervisor(
            trial.run_id,
            self.jobs,
            self._make,
            check_budget=self.check_budget,
            stream_logs=False,
            poll_s=self.poll_s,
            sleep=self._sleep,
        )

    def _follow(self, trial: TrialRecord, supervisor: Supervisor | None = None) -> None:
        supervisor = supervisor or self._supervisor(trial)

        def follow() -> None:
            try:
                supervisor.run()
            except Exception as exc:  # noqa: BLE001 - said, recorded; the trial is not left running unseen
                self.say(f"[sweep] trial {trial.number}: its supervisor stopped: {exc}")
                self.jobs.set_run(trial.run_id, "failed", f"supervisor error: {exc}", pid=None)

        thread = threading.Thread(target=follow, name=f"trial-{trial.number}", daemon=True)
        self._threads[trial.run_id] = thread
        thread.start()

    def _refresh(self) -> list[TrialRecord]:
        """Each recorded trial's state, metric per epoch and early-stop decision, from its run and its store; a trial
        whose run is unfinished and followed by no one here (a restarted sweep supervisor) is followed again."""
        for trial in self.jobs.trials(self.sweep_id):
            if trial.state == "starting":  # recorded, its run never created (killed in between): nothing was submitted
                try:
                    self.jobs.run(trial.run_id)
                except JobNotFoundError:
                    others = [t for t in self.jobs.trials(self.sweep_id) if t.number != trial.number]
                    self._create_run(trial, self.left(others) if self.check_budget else None)
                    continue
                self.jobs.set_trial(self.sweep_id, trial.number, "running")
            if trial.state not in (*ACTIVE, "stopped_early"):
                continue
            run = self.jobs.run(trial.run_id)
            if trial.state == "stopped_early" and run.state != "running" and trial.metrics:
                continue  # its end is recorded; a run stopped early keeps that name, not "stopped"
            self._read_metric(trial, run)
            if run.state == "running":
                thread = self._threads.get(run.id)
                if thread is None or not thread.is_alive():
                    self._follow(trial)  # a restarted sweep supervisor: the run's own supervisor picks it up
                if (trial.decision or "").startswith("stopped"):
                    self._cancel(run)
                continue
            if trial.state == "stopped_early" and run.state != "succeeded":
                continue
            state = RUN_TO_TRIAL.get(run.state, run.state)
            self.jobs.set_trial(self.sweep_id, trial.number, state, run.message if trial.decision is None else None)
            self.say(f"[sweep] trial {trial.number} ({describe(trial.params)}): {state}")
        self._early_stop()
        return self.jobs.trials(self.sweep_id)

    def _read_metric(self, trial: TrialRecord, run: RunRecord) -> None:
        rows = metric_rows(run.spec, run.name, self.sweep.metric)
        new = {str(epoch): value for epoch, value in rows.items() if trial.metrics.get(str(epoch)) != value}
        if new:
            self.jobs.set_trial(self.sweep_id, trial.number, metrics=new)

    def _early_stop(self) -> None:
        """Successive halving at each rung of early_stop.after_epochs (see the module's docstring), trial order on
        ties; a trial is compared at a rung once the one before kept it."""
        stop = self.sweep.early_stop
        if stop is None:
            return
        for index, (reaching, keep) in enumerate(stop.quotas(self.sweep.count())):
            for trial in self.jobs.trials(self.sweep_id):
                if _decided(trial, stop.rungs) == ("kept", index - 1) and str(stop.rungs[index]) in trial.metrics:
                    self._rank(trial, index, reaching, keep)

    def _rank(self, trial: TrialRecord, index: int, reaching: int, keep: int) -> None:
        """Keep or stop `trial` at rung `index`: ranked among the trials that reached the rung so far, within the
        rung's quota (at most `keep` kept, at most `reaching - keep` stopped)."""
        stop = self.sweep.early_stop
        assert stop is not None
        rung = str(stop.rungs[index])
        trials = self.jobs.trials(self.sweep_id)
        decided = [_decided(t, stop.rungs) for t in trials]
        here = [t for t, d in zip(trials, decided) if d[1] == index]
        seen = sorted([*here, *(t for t, d in zip(trials, decided) if d == ("kept", index - 1) and rung in t.metrics)],
                      key=lambda t: t.number)  # fmt: skip
        ranked = sorted(seen, key=lambda t: -t.metrics[rung] if self.sweep.goal_() == "max" else t.metrics[rung])
        place = [t.number for t in ranked].index(trial.number) + 1
        kept = sum(_decided(t, stop.rungs) == ("kept", index) for t in here)
        if len(here) - kept >= reaching - keep:
            verb = "kept"
        elif kept >= keep:
            verb = "stopped"
        else:
            verb = "kept" if place <= math.ceil(stop.keep_best * len(seen)) else "stopped"
        decision = verb if index == 0 else f"{verb}@{rung}"  # the first rung's without its epoch (one-rung sweeps)
        value = f"{self.sweep.metric} {trial.metrics[rung]:.4g}"
        if verb == "kept":
            message = f"kept at epoch {rung}: {value}, {place} of {len(seen)} there"
            self.jobs.set_trial(self.sweep_id, trial.number, decision=decision, message=message)
            return
        finished = trial.state not in ACTIVE
        message = f"stopped early at epoch {rung}: {value}, {place} of {len(seen)} there"
        self.jobs.set_trial(
            self.sweep_id, trial.number, None if finished else "stopped_early", message, decision=decision
        )
        self.say(f"[sweep] trial {trial.number} ({describe(trial.params)}): {message}")
        if not finished:
            self._cancel(self.jobs.run(trial.run_id))

    def _cancel(self, run: RunRecord) -> None:
        """Stop a run's current attempt (once per attempt): its supervisor then ends the run as stopped."""
        attempts = self.jobs.attempts(run.id)
        last = attempts[-1] if attempts else None
        if last is None or last.state.finished or not last.native_id or last.id in self._cancelled:
            return
        self._cancelled.add(last.id)
        job = Job(last.ref, self._launcher(last.backend).backend, self.jobs)

        def stop() -> None:  # a backend's stop may wait out the job's grace period: not in the scheduling loop
            try:
                job.cancel()
            except LauncherError as exc:
                self.say(f"[sweep] could not stop {last.id} on {last.backend}: {exc.message}")

        thread = threading.Thread(target=stop, name=f"trial-stop-{last.id}", daemon=True)
        self._threads[f"stop-{last.id}"] = thread
        thread.start()

    def _stop_running(self, trials: list[TrialRecord]) -> None:
        for trial in trials:
            if trial.state in ACTIVE:
                try:
                    run = self.jobs.run(trial.run_id)
                except JobNotFoundError:
                    continue
                self._cancel(run)
                self.jobs.set_trial(self.sweep_id, trial.number, "stopped", "stopped with the sweep")
        for thread in list(self._threads.values()):
            thread.join(timeout=90)

    # ------------------------------------------------------------ the end

    def _finish(self, trials: list[TrialRecord]) -> int:
        best = best_trial(trials, self.sweep)
        if best is None:
            return self._end("failed", 1, f"no trial reported {self.sweep.metric} in its results.csv")
        trial, value = best
        return self._end(
            "finished", 0, f"best trial {trial.number} ({describe(trial.params)}): {self.sweep.metric} {value:.4g}"
        )

    def _end(self, state: str, code: int, message: str) -> int:
        self.jobs.set_sweep(self.sweep_id, state, message, pid=None)
        trials = self.jobs.trials(self.sweep_id)
        attempts = sum(len(self.jobs.attempts(t.run_id)) for t in trials)
        self.say(
            f"sweep {self.sweep_id}: {state}: {message.rstrip('.')}; cost ${self.spent():.2f} over {attempts} "
            f"attempt(s) of {len(trials)} trial(s)"
        )
        return code

    def say(self, line: str) -> None:
        print(line, file=sys.stderr, flush=True)


def _decided(trial: TrialRecord, rungs: list[int]) -> tuple[str, int]:
    """A trial's last early-stop decision as (kept | stopped, the rung's index); ("kept", -1) when none yet (every
    trial goes to the first rung). Recorded as `kept`/`stopped` at the first rung, `kept@4`/`stopped@4` at a later one."""
    if not trial.decision:
        return ("kept", -1)
    verb, _, epoch = trial.decision.partition("@")
    return (verb, rungs.index(int(epoch)) if epoch and int(epoch) in rungs else 0)


# ---------------------------------------------------------------- reading results


def _column(header: list[str], metric: str) -> str | None:
    """The results.csv column of `metric`: its own name, or Ultralytics' metrics/<name>."""
    clean = {c.strip(): c for c in header}
    for name in (metric, f"metrics/{metric}"):
        if name in clean:
            return clean[name]
    return None


def metric_rows(record_spec: dict[str, Any], name: str, metric: str) -> dict[int, float]:
    """epoch -> the metric, from the run folder's results.csv (its newest complete checkpoint in a store); {} when
    there is none yet, or the store cannot be read now (the next pass tries again)."""

    uri = (record_spec.get("checkpoint") or {}).get("uri")
    if not uri:
        return {}
    run_uri = join_uri(uri, name)
    try:
        if "://" not in uri and (Path(run_uri) / "results.csv").is_file():
            text = (Path(run_uri) / "results.csv").read_text(encoding="utf-8")
        else:
            store = open_store(run_uri, retry=RetryPolicy(attempts=3))
            manifest, _skipped = newest(store)
            entry = manifest.files.get("results.csv") if manifest else None
            data = store.get_bytes(entry.key) if entry else None
            if data is None:
                return {}
            text = data.decode("utf-8")
        rows = list(csv.DictReader(io.StringIO(text)))
    except Exception:  # noqa: BLE001 - a store unreachable for now, a file being written: not known yet
        return {}
    column = _column(list(rows[0]) if rows else [], metric)
    found: dict[int, float] = {}
    for row in rows if column else ():
        try:
            epoch = int(float(row.get("epoch") or row.get("  epoch") or ""))
            found[epoch] = float(row[column])  # type: ignore[index]
        except (TypeError, ValueError):
            continue
    return {epoch: value for epoch, value in found.items() if math.isfinite(value)}


def best_trial(trials: list[TrialRecord], sweep: Sweep) -> tuple[TrialRecord, float] | None:
    """The trial with the best metric at any epoch, and that value (trial order on ties)."""
    best: tuple[TrialRecord, float] | None = None
    for trial in trials:
        value = _best_value(trial, sweep)
        if value is not None and (best is None or sweep.better(value, best[1])):
            best = (trial, value)
    return best


def _best_value(trial: TrialRecord, sweep: Sweep) -> float | None:
    values = list(trial.metrics.values())
    if not values:
        return None
    return max(values) if sweep.goal_() == "max" else min(values)


class TrialRow(dict):  # type: ignore[type-arg]
    """One line of `launch sweep status`: trial, name, values, backend, state, epochs, best, cost, ... (JSON-able)."""


def summary(jobs: JobRegistry, sweep_id: str) -> dict[str, Any]:
    """The sweep as `launch sweep status` shows it: trials sorted by their best metric (best first, the others after),
    the total cost of every attempt, the best trial and the command that copies its weights out."""

    record = jobs.sweep(sweep_id)
    spec = JobSpec.model_validate(record.spec)
    assert spec.sweep is not None
    rows = []
    for trial in jobs.trials(record.id):
        attempts = jobs.attempts(trial.run_id)
        epochs = [int(e) for e in trial.metrics]
        rows.append(
            TrialRow(
                trial=trial.number,
                name=trial_name(spec.name, trial.number),
                values=trial.params,
                backend=trial.backend,
                state=trial.state,
                epochs=max(epochs, default=0),
                best=_best_value(trial, spec.sweep),
                metric_by_epoch={int(k): v for k, v in trial.metrics.items()},
                cost=round(sum(a.cost() or 0.0 for a in attempts), 6),
                attempts=len(attempts),
                estimate=trial.estimate,
                run=trial.run_id,
                message=trial.message,
            )
        )
    sign = -1 if spec.sweep.goal_() == "max" else 1
    rows.sort(key=lambda r: (r["best"] is None, sign * (r["best"] or 0.0), r["trial"]))
    best = best_trial(jobs.trials(record.id), spec.sweep)
    found = None
    if best is not None:
        where = join_uri(str(spec.checkpoint.uri), trial_name(spec.name, best[0].number))
        found = {
            "trial": best[0].number,
            "name": trial_name(spec.name, best[0].number),
            "values": best[0].params,
            "value": best[1],
            "checkpoint": where,
            "pull": f"launch ckpt pull {where} ./{trial_name(spec.name, best[0].number)}",
        }
    return {
        "id": record.id,
        "name": record.name,
        "state": record.state,
        "message": record.message,
        "metric": spec.sweep.metric,
        "goal": spec.sweep.goal_(),
        "trials_planned": spec.sweep.count(),
        "space": list(spec.sweep.space),
        "distributions": spec.sweep.space,
        "max_cost": spec.limits.max_cost,
        "early_stop_epochs": spec.sweep.early_stop.rungs if spec.sweep.early_stop else [],
        "cost": round(sum(a.cost() or 0.0 for t in jobs.trials(record.id) for a in jobs.attempts(t.run_id)), 6),
        "attempts": sum(r["attempts"] for r in rows),
        "trials": rows,
        "best": found,
    }


# ---------------------------------------------------------------- the background process


def detach(sweep_id: str) -> int:
    """Hand the sweep to a background supervisor (`launch sweep supervise SWEEP`), output in
    <state dir>/sweeps/SWEEP.log; its pid."""
    return background(["sweep", "supervise", sweep_id], state_dir() / "sweeps" / f"{sweep_id}.log")
