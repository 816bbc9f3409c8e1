"""The sweep scheduler with scripted backends (as the recovery tests' fakes): placement on the cheaper backend with
room, the budget that stops new trials (exit 3), a sweep supervisor killed between two submissions and started again
(no duplicate), successive halving on the metric read from each trial's results.csv in the store."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Iterator, Mapping

import pytest

from launcher.api import Launcher
from launcher.backend import Backend, BackendCheck, Offer
from launcher.estimate.model import estimate
from launcher.plan import JobRef, JobState, JobStatus, Plan
from launcher.runs.sweep import SweepSupervisor, summary
from launcher.spec import JobSpec, validate_spec
from launcher.state.jobs import JobRegistry

FLEETS: list["Fleet"] = []


@pytest.fixture(autouse=True)
def _end_every_job(tmp_path: Path) -> Iterator[None]:
    """After each test, every job ends, so that no trial's supervisor thread outlives its registry."""
    yield
    for fleet in FLEETS:
        fleet.finish("")
    FLEETS.clear()
    _until(lambda: not [t for t in threading.enumerate() if t.name.startswith("trial-")])


class Fleet(Backend):
    """A backend whose jobs run until the test ends them (`finish`), priced `price`/hour for one A10G; a finished job
    reports what it cost (as SageMaker reports billable time)."""

    def __init__(self, name: str, price: float, job_cost: float = 0.0) -> None:
        self.name, self.price, self.job_cost = name, price, job_cost  # type: ignore[misc]
        self.submitted: list[str] = []  # trial names, in submit order
        self.refs: list[str] = []  # job ids
        self.ended: dict[str, JobState] = {}
        self.lock = threading.Lock()
        FLEETS.append(self)

    def plan(self, spec: Any, job_id: str | None = None) -> Plan:
        return Plan(self.name, job_id or spec.name, spec, {"job": job_id})

    def submit(self, plan: Plan, secrets: Mapping[str, str] | None = None) -> JobRef:
        with self.lock:
            self.submitted.append(plan.spec.name)
            self.refs.append(plan.job_name)
        return JobRef(plan.job_name, self.name, f"native-{plan.job_name}")

    def finish(self, trial: str, state: JobState = JobState.SUCCEEDED) -> None:
        with self.lock:
            for job in [j for j in self.refs if j.startswith(trial + "-" if trial else "")]:
                self.ended.setdefault(job, state)

    def status(self, ref: JobRef) -> JobStatus:
        with self.lock:
            state = self.ended.get(ref.id)
        if state is None:
            return JobStatus(JobState.RUNNING)
        return JobStatus(state, details={"metrics": {"cost_usd": self.job_cost}})

    def offers(self, spec: Any) -> list[Offer]:
        return [Offer(self.name, f"{self.name}.gpu", "A10G", 1, 1, self.price)]

    def logs(self, ref: JobRef, follow: bool = False) -> Iterator[str]:
        return iter(())

    def cancel(self, ref: JobRef) -> None:
        with self.lock:
            self.ended.setdefault(ref.id, JobState.STOPPED)

    def check(self) -> BackendCheck:
        return BackendCheck(self.name, True, True, "ready")


def _spec(tmp_path: Path, sweep: dict[str, Any], **more: Any) -> JobSpec:
    raw = {
        "name": "sw",
        "resources": {"gpus": 1, "gpu_type": "A10G"},
        "train": {"epochs": 3},
        "checkpoint": {"uri": str(tmp_path / "store")},
        "sweep": {"method": "random", "metric": "top1", "space": {"train.lr0": {"log_uniform": [1e-4, 1e-1]}}, **sweep},
        **more,
    }
    return validate_spec(raw, None, tmp_path)


def _supervisor(spec: JobSpec, jobs: JobRegistry, fleet: dict[str, Backend], primary: str = "cheap") -> SweepSupervisor:
    make = lambda name: Launcher(backend=fleet[name], jobs=jobs)  # noqa: E731
    return SweepSupervisor.start(spec, primary, jobs, make, poll_s=0.01)


def _until(what: Any, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := what():
            return found
        time.sleep(0.01)
    raise AssertionError("timed out waiting")


def _ended(jobs: JobRegistry, sup: SweepSupervisor, number: int) -> bool:
    trial = next(t for t in jobs.trials(sup.sweep_id) if t.number == number)
    return jobs.run(trial.run_id).state != "running"


def test_trials_fill_the_cheaper_backend_first_then_the_next(tmp_path: Path) -> None:
    fleet = {"dear": Fleet("dear", 5.0), "cheap": Fleet("cheap", 1.0)}
    spec = _spec(tmp_path, {"trials": 5, "parallel": 3, "backends": ["dear", "cheap"], "capacity": {"cheap": 2}})
    jobs = JobRegistry(tmp_path / "jobs.db")
    sup = _supervisor(spec, jobs, fleet)
    assert sup.step() is None
    # listed second, but cheaper: trials 1 and 2 go there (its room: 2), trial 3 to the dearer one; parallel 3 reached
    assert fleet["cheap"].submitted == ["sw-t001", "sw-t002"] and fleet["dear"].submitted == ["sw-t003"]
    assert [(t.number, t.backend, t.state) for t in jobs.trials(sup.sweep_id)] == [
        (1, "cheap", "running"),
        (2, "cheap", "running"),
        (3, "dear", "running"),
    ]
    assert sup.step() is None and len(jobs.list()) == 3  # full: nothing more
    fleet["cheap"].finish("sw-t001")
    _until(lambda: _ended(jobs, sup, 1))
    assert sup.step() is None
    assert fleet["cheap"].submitted == ["sw-t001", "sw-t002", "sw-t004"]  # room on the cheaper one again
    for name in ("sw-t002", "sw-t003", "sw-t004"):
        for backend in fleet.values():
            backend.finish(name)
    _until(lambda: all(_ended(jobs, sup, n) for n in (2, 3, 4)))
    assert sup.step() is None and fleet["cheap"].submitted[-1] == "sw-t005"
    fleet["cheap"].finish("sw-t005")
    _until(lambda: _ended(jobs, sup, 5))
    # no trial reported top1 (these fakes write no results.csv): the sweep ends with no best trial
    assert sup.step() == 1 and jobs.sweep(sup.sweep_id).state == "failed"
    assert [t.state for t in jobs.trials(sup.sweep_id)] == ["succeeded"] * 5
    assert all(r.attempt == 1 for r in jobs.list()) and len(jobs.list()) == 5


def _one_trial_estimate(tmp_path: Path, backend: Backend) -> float:
    spec = _spec(tmp_path, {"trials": 2})
    from launcher.spec import trial_spec  # noqa: PLC0415

    rows = estimate(trial_spec(spec, 1, {"train.lr0": 0.01}), [backend])
    assert rows[0].ok, rows[0].error
    return rows[0].cost


def test_the_budget_stops_new_trials_and_the_sweep_exits_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cost = _one_trial_estimate(tmp_path, Fleet("cheap", 1.0))
    fleet = {"cheap": Fleet("cheap", 1.0, job_cost=cost)}  # each trial costs what it was estimated at
    spec = _spec(tmp_path, {"trials": 4, "parallel": 1}, limits={"max_cost": round(2.5 * cost, 4)})
    jobs = JobRegistry(tmp_path / "jobs.db")
    sup = _supervisor(spec, jobs, fleet)
    codes = []
    for name in ("sw-t001", "sw-t002"):
        codes.append(sup.step())
        fleet["cheap"].finish(name)
        _until(lambda: _ended(jobs, sup, len(codes)))
    assert codes == [None, None]
    assert sup.step() == 3  # trial 3's estimate is more than the half trial left; nothing runs: the sweep ends
    assert fleet["cheap"].submitted == ["sw-t001", "sw-t002"]
    record = jobs.sweep(sup.sweep_id)
    assert (
        record.state == "failed"
        and "trial 3" in record.message
        and "more than what is left of limits.max_cost" in record.message
    )
    err = capsys.readouterr().err
    assert f"cost ${2 * cost:.2f} over 2 attempt(s) of 2 trial(s)" in err
    # each trial's run got what was left of the budget as its own max_cost (the platforms' hard limit)
    limits = [jobs.run(t.run_id).spec["limits"]["max_cost"] for t in jobs.trials(sup.sweep_id)]
    assert limits == [pytest.approx(2.5 * cost, abs=1e-3), pytest.approx(1.5 * cost, abs=1e-3)]


def test_the_budget_spent_while_trials_run_stops_them_with_exit_3(tmp_path: Path) -> None:
    cost = _one_trial_estimate(tmp_path, Fleet("cheap", 1.0))
    fleet = {"cheap": Fleet("cheap", 1.0, job_cost=3 * cost)}  # far above its estimate
    spec = _spec(
        tmp_path, {"trials": 3, "parallel": 2, "capacity": {"cheap": 2}}, limits={"max_cost": round(2.5 * cost, 4)}
    )
    jobs = JobRegistry(tmp_path / "jobs.db")
    sup = _supervisor(spec, jobs, fleet)
    assert sup.step() is None and fleet["cheap"].submitted == ["sw-t001", "sw-t002"]
    fleet["cheap"].finish("sw-t001")
    _until(lambda: _ended(jobs, sup, 1))
    assert sup.step() == 3
    assert fleet["cheap"].ended[next(j for j in fleet["cheap"].refs if j.startswith("sw-t002-"))] is JobState.STOPPED
    assert "is spent" in jobs.sweep(sup.sweep_id).message and len(jobs.list()) == 2


class Killed(BaseException):
    """The sweep supervisor's process dies here (SIGKILL): nothing after this line runs."""


def test_a_supervisor_killed_between_two_submissions_submits_no_duplicate(tmp_path: Path) -> None:
    fleet = {"cheap": Fleet("cheap", 1.0)}
    spec = _spec(tmp_path, {"trials": 4, "parallel": 2, "capacity": {"cheap": 2}})
    jobs = JobRegistry(tmp_path / "jobs.db")
    first = _supervisor(spec, jobs, fleet)
    first._follow = lambda trial, supervisor=None: None  # type: ignore[method-assign]  # the dead process follows nothing
    original, calls = jobs.add_trial, []

    def add_trial(*args: Any, **kwargs: Any) -> None:
        calls.append(args[1])
        if len(calls) == 2:
            raise Killed  # after trial 1 was submitted, before trial 2 was recorded
        original(*args, **kwargs)

    jobs.add_trial = add_trial  # type: ignore[method-assign]
    with pytest.raises(Killed):
        first.step()
    jobs.add_trial = original  # type: ignore[method-assign]
    assert fleet["cheap"].submitted == ["sw-t001"]
    jobs.set_sweep(first.sweep_id, pid=None)  # what a dead pid reads as
    again = SweepSupervisor(first.sweep_id, jobs, lambda name: Launcher(backend=fleet[name], jobs=jobs), poll_s=0.01)
    done = threading.Thread(
        target=lambda: [
            fleet["cheap"].finish(f"sw-t00{n}") or time.sleep(0.05) for n in (1, 2, 3, 4) for _ in range(40)
        ],
        daemon=True,
    )
    done.start()
    again.run()
    assert sorted(fleet["cheap"].submitted) == [
        "sw-t001",
        "sw-t002",
        "sw-t003",
        "sw-t004",
    ]  # trial 1 followed, not resubmitted
    assert len(jobs.list()) == 4 and len(jobs.runs()) == 4


def test_a_trial_recorded_but_never_started_is_started_once_after_a_restart(tmp_path: Path) -> None:
    fleet = {"cheap": Fleet("cheap", 1.0)}
    spec = _spec(tmp_path, {"trials": 2, "parallel": 1})
    jobs = JobRegistry(tmp_path / "jobs.db")
    first = _supervisor(spec, jobs, fleet)

    def killed(trial: Any, budget: Any) -> None:
        raise Killed  # the trial is recorded; its run is not created

    first._create_run = killed  # type: ignore[method-assign]
    with pytest.raises(Killed):
        first.step()
    assert [t.state for t in jobs.trials(first.sweep_id)] == ["starting"] and jobs.list() == []
    again = SweepSupervisor(first.sweep_id, jobs, lambda name: Launcher(backend=fleet[name], jobs=jobs), poll_s=0.01)
    assert again.step() is None
    assert fleet["cheap"].submitted == ["sw-t001"] and len(jobs.runs()) == 1


def test_successive_halving_stops_the_worst_half_reading_results_csv(tmp_path: Path) -> None:
    fleet = {"cheap": Fleet("cheap", 1.0)}
    spec = _spec(
        tmp_path,
        {"trials": 4, "parallel": 4, "capacity": {"cheap": 4}, "early_stop": {"after_epochs": 1, "keep_best": 0.5}},
    )
    jobs = JobRegistry(tmp_path / "jobs.db")
    sup = _supervisor(spec, jobs, fleet)
    assert sup.step() is None and len(fleet["cheap"].submitted) == 4
    top1 = {1: 0.5, 2: 0.9, 3: 0.7, 4: 0.3}
    for number, value in top1.items():  # each trial's first epoch, as the trainer writes it to its run folder
        folder = tmp_path / "store" / f"sw-t00{number}"
        folder.mkdir(parents=True, exist_ok=True)  # the run's lease is there already
        (folder / "results.csv").write_text(f"epoch,train_loss,val_loss,top1\n1,1.0,1.0,{value}\n")
    assert sup.step() is None
    trials = {t.number: t for t in jobs.trials(sup.sweep_id)}
    # all four known at once: ranked together, the worse half stops
    assert {n: t.decision for n, t in trials.items()} == {1: "stopped", 2: "kept", 3: "kept", 4: "stopped"}
    assert (
        trials[1].state == "stopped_early" and "stopped early at epoch 1: top1 0.5, 3 of 4 there" in trials[1].message
    )
    _until(lambda: _ended(jobs, sup, 1) and _ended(jobs, sup, 4))
    assert (
        jobs.run(trials[1].run_id).state == "stopped" and jobs.attempts(trials[1].run_id)[0].state is JobState.STOPPED
    )
    for n in (2, 3):
        fleet["cheap"].finish(f"sw-t00{n}")
    _until(lambda: _ended(jobs, sup, 2) and _ended(jobs, sup, 3))
    assert sup.step() == 0
    assert [t.state for t in jobs.trials(sup.sweep_id)] == ["stopped_early", "succeeded", "succeeded", "stopped_early"]
    found = summary(jobs, sup.sweep_id)
    assert [r["trial"] for r in found["trials"]] == [2, 3, 1, 4]  # by best top1
    assert found["best"]["trial"] == 2 and found["best"]["value"] == 0.9
    assert found["best"]["pull"] == f"launch ckpt pull {tmp_path / 'store' / 'sw-t002'} ./sw-t002"
    assert "best trial 2" in jobs.sweep(sup.sweep_id).message


def test_halving_one_trial_at_a_time_keeps_exactly_the_quota(tmp_path: Path) -> None:
    """Trials reaching the rung one by one: each is ranked among those seen so far, and no more than round(keep_best x
    trials) are kept nor more than the rest stopped: 6 trials keeping half stop exactly 3."""
    fleet = {"cheap": Fleet("cheap", 1.0)}
    spec = _spec(tmp_path, {"trials": 6, "parallel": 1, "early_stop": {"after_epochs": 2, "keep_best": 0.5}})
    jobs = JobRegistry(tmp_path / "jobs.db")
    sup = _supervisor(spec, jobs, fleet)
    top1 = [0.6, 0.7, 0.8, 0.9, 0.5, 0.95]  # rising: each new trial looks good against those before
    for number, value in enumerate(top1, 1):
        assert sup.step() is None and len(fleet["cheap"].submitted) == number
        folder = tmp_path / "store" / f"sw-t00{number}"
        (folder / "results.csv").write_text(f"epoch,top1\n1,0.1\n2,{value}\n")
        sup.step()
        fleet["cheap"].finish(f"sw-t00{number}")
        _until(lambda n=number: _ended(jobs, sup, n))
    assert sup.step() == 0
    decisions = [t.decision for t in jobs.trials(sup.sweep_id)]
    assert decisions.count("stopped") == 3 and decisions.count("kept") == 3
    assert decisions == ["kept", "kept", "kept", "stopped", "stopped", "stopped"]  # the quota of 3 kept was used first


class Instant(Fleet):
    """Each job succeeds at once, having written its results.csv (top1 = 10 x lr0) into its run folder."""

    def submit(self, plan: Plan, secrets: Mapping[str, str] | None = None) -> JobRef:
        ref = super().submit(plan, secrets)
        folder = Path(plan.spec.checkpoint.uri) / plan.spec.name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "results.csv").write_text(f"epoch,top1\n1,{plan.spec.train.lr0 * 10:.4f}\n")
        self.ended[plan.job_name] = JobState.SUCCEEDED
        return ref


def test_the_python_api_runs_a_sweep_to_its_best_trial(tmp_path: Path) -> None:
    spec = _spec(tmp_path, {"method": "grid", "parallel": 2, "space": {"train.lr0": [0.01, 0.05, 0.02]}})
    jobs = JobRegistry(tmp_path / "jobs.db")
    assert Launcher(backend=Instant("cheap", 1.0), jobs=jobs).sweep(spec) == 0
    record = jobs.sweeps()[0]
    assert record.state == "finished" and record.message == "best trial 2 (lr0=0.05): top1 0.5"
    assert [t.state for t in jobs.trials(record.id)] == ["succeeded"] * 3 and len(jobs.list()) == 3


def test_an_ultralytics_sweep_mutates_the_results_known_when_each_trial_starts(tmp_path: Path) -> None:
    """Each trial's values are made as it starts, from the finished trials' metrics then, and recorded: a restarted
    sweep supervisor follows the recorded values and makes the next trial's from the same results."""
    from launcher.spec.job import next_values  # noqa: PLC0415

    (tmp_path / "shapes").mkdir()
    (tmp_path / "shapes" / "data.yaml").write_text("train: images/train\nval: images/val\nnames: {0: square}\n")
    train = {"engine": "ultralytics", "model": "yolo11n.yaml", "data": str(tmp_path / "shapes"), "epochs": 2}
    spec = _spec(tmp_path, {"method": "ultralytics", "trials": 4, "seed": 5, "space": {}}, train=train)
    jobs = JobRegistry(tmp_path / "jobs.db")
    fleet = {"cheap": Instant("cheap", 1.0)}  # top1 = 10 x lr0, at once
    first = _supervisor(spec, jobs, fleet)
    while len(jobs.trials(first.sweep_id)) < 2:
        assert first.step() is None
        _until(lambda: all(_ended(jobs, first, t.number) for t in jobs.trials(first.sweep_id)))
    jobs.set_sweep(first.sweep_id, pid=None)  # the first supervisor is gone after trial 2 started
    again = SweepSupervisor(first.sweep_id, jobs, lambda name: Launcher(backend=fleet[name], jobs=jobs), poll_s=0.01)
    assert again.run() == 0
    trials = jobs.trials(first.sweep_id)
    assert len(trials) == 4 and len(jobs.list()) == 4  # trials 1 and 2 followed, not redone
    recorded = JobSpec.model_validate(jobs.sweep(first.sweep_id).spec)
    assert "train.momentum" in recorded.sweep.space  # Ultralytics' space, recorded with the sweep
    assert trials[0].params == next_values(recorded, 1, [], [])  # the spec's own values (Ultralytics' defaults)
    for n in (2, 3, 4):  # each from the results of the trials before it (each ended before the next started)
        before = trials[: n - 1]
        results = [(max(t.metrics.values()), t.params) for t in before]
        assert trials[n - 1].params == next_values(recorded, n, results, [t.params for t in before])
        assert trials[n - 1].params not in [t.params for t in before]
    assert [float(t.metrics["1"]) for t in trials] == [round(t.params["train.lr0"] * 10, 4) for t in trials]


def test_halving_at_two_rungs_keeps_half_of_those_still_running_at_each(tmp_path: Path) -> None:
    fleet = {"cheap": Fleet("cheap", 1.0)}
    spec = _spec(
        tmp_path,
        {
            "trials": 8,
            "parallel": 8,
            "capacity": {"cheap": 8},
            "early_stop": {"after_epochs": [1, 2], "keep_best": 0.5},
        },
    )
    jobs = JobRegistry(tmp_path / "jobs.db")
    sup = _supervisor(spec, jobs, fleet)
    assert sup.step() is None and len(fleet["cheap"].submitted) == 8
    first = {1: 0.1, 2: 0.8, 3: 0.3, 4: 0.7, 5: 0.2, 6: 0.6, 7: 0.4, 8: 0.5}  # 2, 4, 6 and 8 go on
    second = {2: 0.81, 4: 0.9, 6: 0.95, 8: 0.5}  # of those, 4 and 6 go on

    def write(epochs: int) -> None:
        for number, value in first.items():
            lines = [f"1,{value}"] + ([f"2,{second[number]}"] if epochs == 2 and number in second else [])
            (tmp_path / "store" / f"sw-t00{number}" / "results.csv").write_text(
                "epoch,top1\n" + "\n".join(lines) + "\n"
            )

    write(1)
    assert sup.step() is None
    decisions = {t.number: t.decision for t in jobs.trials(sup.sweep_id)}
    assert decisions == {
        1: "stopped",
        2: "kept",
        3: "stopped",
        4: "kept",
        5: "stopped",
        6: "kept",
        7: "stopped",
        8: "kept",
    }
    _until(lambda: all(_ended(jobs, sup, n) for n in (1, 3, 5, 7)))
    write(2)  # the stopped trials wrote no second epoch; the kept ones did
    assert sup.step() is None
    trials = {t.number: t for t in jobs.trials(sup.sweep_id)}
    assert {n: trials[n].decision for n in (2, 4, 6, 8)} == {2: "stopped@2", 4: "kept@2", 6: "kept@2", 8: "stopped@2"}
    assert (
        trials[8].state == "stopped_early" and "stopped early at epoch 2: top1 0.5, 4 of 4 there" in trials[8].message
    )
    _until(lambda: _ended(jobs, sup, 2) and _ended(jobs, sup, 8))
    for n in (4, 6):
        fleet["cheap"].finish(f"sw-t00{n}")
    _until(lambda: _ended(jobs, sup, 4) and _ended(jobs, sup, 6))
    assert sup.step() == 0
    states = [t.state for t in jobs.trials(sup.sweep_id)]
    assert states.count("stopped_early") == 6 and states.count("succeeded") == 2
    assert summary(jobs, sup.sweep_id)["early_stop_epochs"] == [1, 2]


class Scored(Fleet):
    """Each job succeeds at once with two epochs in its results.csv, top1 a smooth function of the trial's values."""

    def submit(self, plan: Plan, secrets: Mapping[str, str] | None = None) -> JobRef:
        ref = super().submit(plan, secrets)
        t = plan.spec.train
        top1 = 0.9 - 20 * abs(t.lr0 - 0.006) - abs((t.momentum or 0.9) - 0.9) - 0.01 * abs((t.box or 7.5) - 9)
        folder = Path(plan.spec.checkpoint.uri) / plan.spec.name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "results.csv").write_text(f"epoch,top1\n1,{top1 - 0.1:.4f}\n2,{top1:.4f}\n")
        self.ended[plan.job_name] = JobState.SUCCEEDED
        return ref


def test_an_ultralytics_sweeps_status_and_plot_show_the_keys_that_moved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner  # noqa: PLC0415
    from matplotlib.text import Text  # noqa: PLC0415

    from launcher.cli import main  # noqa: PLC0415
    from launcher.runs.sweep_plot import draw_sweep, plot_sweep  # noqa: PLC0415

    (tmp_path / "shapes").mkdir()
    (tmp_path / "shapes" / "data.yaml").write_text("train: images/train\nval: images/val\nnames: {0: square}\n")
    train = {"engine": "ultralytics", "model": "yolo11n.yaml", "data": str(tmp_path / "shapes"), "epochs": 2}
    space = {
        "train.lr0": {"uniform": [1e-4, 1e-2]},
        "train.momentum": {"uniform": [0.7, 0.98], "gain": 0.3},
        "train.box": {"uniform": [1.0, 20.0]},
        **{f"train.{k}": {"uniform": [0.0, 0.9]} for k in ("hsv_s", "hsv_v", "translate", "scale")},
        "train.close_mosaic": {"int": [0, 10]},
    }
    spec = _spec(tmp_path, {"method": "ultralytics", "trials": 8, "seed": 2, "space": space}, train=train)
    jobs = JobRegistry(tmp_path / "jobs.db")
    assert Launcher(backend=Scored("cheap", 1.0), jobs=jobs).sweep(spec) == 0
    sweep_id = jobs.sweeps()[0].id
    found = summary(jobs, sweep_id)
    fig = draw_sweep(found)
    renderer = fig.canvas.get_renderer()
    moved = [k for k in space if len({repr(t.params[k]) for t in jobs.trials(sweep_id)}) > 1]
    assert [ax.get_xlabel() for ax in fig.axes[:-1]] == moved and len(fig.axes) == len(moved) + 1
    for ax in fig.axes:
        boxes = []
        for text in ax.texts:
            text.update_positions(renderer)
            boxes.append(Text.get_window_extent(text, renderer))
        assert not [(i, j) for i in range(len(boxes)) for j in range(i + 1, len(boxes)) if boxes[i].overlaps(boxes[j])]
    own = [[a.title, a.xaxis.label, a.yaxis.label, *a.get_xticklabels(), *a.get_yticklabels()] for a in fig.axes]
    for i, group in enumerate(own):
        extents = [t.get_window_extent(renderer) for t in group if t.get_text()]
        assert not [j for j, other in enumerate(fig.axes) if j != i and any(b.overlaps(other.bbox) for b in extents)]
    for ax in fig.axes[:-1]:  # no label over another trial's point: its marker's centre, in screen space
        centres = [ax.transData.transform(xy) for xy in ax.collections and [c.get_offsets()[0] for c in ax.collections]]
        for text in ax.texts:
            box = Text.get_window_extent(text, renderer)
            mine = ax.transData.transform(text.xy)
            assert not [c for c in centres if box.contains(*c) and tuple(c) != tuple(mine)], (ax.get_xlabel(), text)
    legend = [t.get_text() for t in fig.axes[-1].get_legend().get_texts()]
    assert legend[0] == "ran to the end" and legend[1].startswith("best (t") and len(legend) == 2, legend
    plot_sweep(found, tmp_path / "sweep.png")
    monkeypatch.setenv("LAUNCHER_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("COLUMNS", "200")
    shown = CliRunner().invoke(main, ["sweep", "status", "sw"])
    assert shown.exit_code == 0, shown.output
    header = shown.output.splitlines()[1].split()
    assert header[1 : 1 + len(moved)] == [k.split(".")[1] for k in moved]
    same = [k.split(".")[1] for k in space if k not in moved]
    if same:
        assert "the same in every trial: " + same[0] in shown.output
    print(shown.output)
