"""The sweep: section: one-line refusals at load time (keys, distributions, a trial that makes an invalid spec),
seeded reproducible trial values for grid and random, and `launch sweep status` (table, JSON, CSV, the plot)."""

from __future__ import annotations

import copy
import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from launcher.cli import main
from launcher.plan import JobRef, JobState, JobStatus
from launcher.spec import load_spec, trial_spec, trial_values
from launcher.state.jobs import JobRegistry

BASE: dict[str, Any] = {
    "name": "cars-sweep",
    "train": {"model": "resnet18", "epochs": 3},
    "checkpoint": {"uri": "ckpts"},
    "sweep": {
        "method": "random",
        "trials": 6,
        "parallel": 2,
        "metric": "top1",
        "space": {
            "train.lr0": {"log_uniform": ["1e-4", "1e-1"]},
            "train.optimizer": ["SGD", "AdamW"],
            "train.scale": {"uniform": [0.2, 0.9]},
            "train.batch": {"int": [16, 64]},
        },
        "early_stop": {"after_epochs": 1, "keep_best": 0.5},
        "seed": 7,
    },
}


def _write(tmp_path: Path, raw: dict[str, Any]) -> Path:
    if "checkpoint" in raw:  # never a folder of the working directory
        raw = {**raw, "checkpoint": {"uri": str(tmp_path / "ckpts")}}
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))  # the order of space: is the order of the draws
    return path


def test_random_values_are_seeded_typed_and_within_their_bounds(tmp_path: Path) -> None:
    spec = load_spec(_write(tmp_path, BASE))
    first, again = trial_values(spec.sweep), trial_values(load_spec(_write(tmp_path, BASE)).sweep)  # type: ignore[arg-type]
    assert first == again and len(first) == 6
    assert all(
        1e-4 <= v["train.lr0"] <= 0.1
        and 0.2 <= v["train.scale"] <= 0.9
        and 16 <= v["train.batch"] <= 64
        and isinstance(v["train.batch"], int)
        and v["train.optimizer"] in ("SGD", "AdamW")
        for v in first
    )
    assert len({v["train.lr0"] for v in first}) == 6  # drawn, not repeated
    other = copy.deepcopy(BASE)
    other["sweep"]["seed"] = 8
    assert trial_values(load_spec(_write(tmp_path, other)).sweep) != first  # type: ignore[arg-type]
    trial = trial_spec(spec, 3, first[2])
    assert trial.name == "cars-sweep-t003" and trial.train.lr0 == first[2]["train.lr0"] and trial.sweep is None
    assert trial.recovery is not None and trial.recovery.max_attempts == 3  # every trial survives a reclaim


def test_a_grid_runs_every_combination_in_order(tmp_path: Path) -> None:
    raw = copy.deepcopy(BASE)
    raw["sweep"] = {"method": "grid", "space": {"train.optimizer": ["SGD", "AdamW"], "train.epochs": {"int": [1, 3]}}}
    values = trial_values(load_spec(_write(tmp_path, raw)).sweep)  # type: ignore[arg-type]
    assert values == [{"train.optimizer": o, "train.epochs": e} for o in ("SGD", "AdamW") for e in (1, 2, 3)]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"train.lr": [0.1]}, "sweep: space: 'train.lr' is not a key of the spec; did you mean"),
        (
            {"model.lr0": [0.1]},
            "sweep.space: 'model.lr0' is not a spec key to sweep; write train.<key> or resources.<key>",
        ),
        ({"train.lr0": {"log_uniform": [0, 1]}}, "sweep.space: train.lr0: log_uniform needs low above 0"),
        ({"train.lr0": {"normal": [0, 1]}}, "sweep.space: train.lr0: give a list of values, or one of"),
        (
            {"train.scale": {"uniform": [0.9, 0.2]}},
            "sweep.space: train.scale: uniform [0.9, 0.2]: low must be below high",
        ),
        ({"train.batch": {"int": [0, 4]}}, "is not a valid spec: train.batch: batch must be a positive number"),
        ({"train.optimizer": ["SGD", "Adamw"]}, "is not a valid spec: train.optimizer: Input should be"),
        ({"resources.gpus": [1, 99]}, "is not a valid spec: resources.gpus:"),
    ],
)
def test_a_bad_space_is_refused_in_one_line_before_anything(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    raw = copy.deepcopy(BASE)
    raw["sweep"]["space"].update(change)
    if "is not a valid spec" in message:  # a grid: every value is tried, the bad one certainly
        raw["sweep"]["method"], raw["sweep"]["space"] = "grid", change
        raw["sweep"].pop("trials")
    state = tmp_path / "state"
    result = CliRunner().invoke(main, ["sweep", str(_write(tmp_path, raw))], env={"LAUNCHER_STATE_DIR": str(state)})
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert message in lines[0] and str(tmp_path / "job.yaml") in lines[0] and "Traceback" not in result.output
    assert not (state / "jobs.db").exists()  # nothing recorded, nothing submitted


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"method": "grid", "space": {"train.lr0": {"uniform": [0.1, 0.2]}}}, "a grid takes lists and int ranges only"),
        ({"trials": None}, "a random sweep needs trials"),
        ({"metrc": "top1"}, "sweep.metrc: unknown key 'metrc'; did you mean 'metric'?"),
        ({"early_stop": {"after_epochs": 0}}, "sweep.early_stop.after_epochs:"),
        ({"early_stop": {"after_epochs": [4, 2]}}, "[4, 2]: list the epochs in rising order, each once"),
        ({"early_stop": {"after_epochs": []}}, "the list of epochs is empty"),
        (
            {"method": "grid", "trials": None, "space": {"train.epochs": {"int": [1, 10**12]}}},
            "train.epochs has more than 10000 values for a grid",
        ),  # refused before a list of them is made
        (
            {
                "method": "grid",
                "trials": None,
                "space": {"train.epochs": {"int": [1, 50]}, "train.batch": {"int": [1, 500]}},
            },
            "the grid has 25000 combinations, more than 10000",
        ),
    ],
)
def test_the_sweep_section_itself_is_checked(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    raw = copy.deepcopy(BASE)
    raw["sweep"].update(change)
    raw["sweep"] = {k: v for k, v in raw["sweep"].items() if v is not None}
    result = CliRunner().invoke(main, ["sweep", str(_write(tmp_path, raw))], env={"LAUNCHER_STATE_DIR": str(tmp_path)})
    assert result.exit_code == 2 and message in result.output.splitlines()[0], result.output


def test_a_sweep_needs_a_checkpoint_store_and_a_short_name(tmp_path: Path) -> None:
    raw = {k: v for k, v in copy.deepcopy(BASE).items() if k != "checkpoint"}
    result = CliRunner().invoke(main, ["sweep", str(_write(tmp_path, raw))], env={"LAUNCHER_STATE_DIR": str(tmp_path)})
    assert result.exit_code == 2 and "set checkpoint.uri" in result.output
    raw = {**copy.deepcopy(BASE), "name": "a" * 44}
    result = CliRunner().invoke(main, ["sweep", str(_write(tmp_path, raw))], env={"LAUNCHER_STATE_DIR": str(tmp_path)})
    assert result.exit_code == 2 and "a sweep's name may have at most 43 characters" in result.output


# ---------------------------------------------------------------- launch sweep status


def _recorded_sweep(tmp_path: Path) -> JobRegistry:
    """A finished sweep of 4 trials as the scheduler records it: two ran to the end, two were stopped early."""
    spec = load_spec(_write(tmp_path, {**BASE, "checkpoint": {"uri": str(tmp_path / "ckpts")}}))
    jobs = JobRegistry(tmp_path / "jobs.db")
    jobs.add_sweep("sweep-1", spec.name, spec.model_dump(mode="json"), ["local"], None)
    curves = {1: [0.5, 0.8, 0.9], 2: [0.3], 3: [0.6, 0.85, 0.95], 4: [0.2]}
    for number, values in zip(curves, trial_values(spec.sweep)):  # type: ignore[arg-type]
        trial = trial_spec(spec, number, values)
        run_id = f"run-{number}"
        jobs.add_trial("sweep-1", number, run_id, values, "local", 0.1)
        jobs.add_run(run_id, trial.name, trial.model_dump(mode="json"), ["local"], None)
        job = f"{trial.name}-job"
        jobs.add(
            JobRef(job, "local", "1"), trial.name, trial.model_dump(mode="json"), "h", attempt=(run_id, 1, None, None)
        )
        jobs.update(job, JobStatus(JobState.SUCCEEDED))
        jobs.add_metrics(job, {"cost_usd": 0.25 * number})
        state = "succeeded" if len(curves[number]) == 3 else "stopped_early"
        jobs.set_trial("sweep-1", number, state, metrics={e: v for e, v in enumerate(curves[number], 1)})
    jobs.set_sweep("sweep-1", "finished", "best trial 3")
    return jobs


def test_status_lists_trials_by_metric_with_the_best_and_its_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _recorded_sweep(tmp_path)
    monkeypatch.setenv("LAUNCHER_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("COLUMNS", "200")
    result = CliRunner().invoke(main, ["sweep", "status", "cars-sweep"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "sweep sweep-1  finished  best trial 3"
    assert lines[1].split() == [
        "trial",
        "lr0",
        "optimizer",
        "scale",
        "batch",
        "backend",
        "state",
        "epochs",
        "best",
        "top1",
        "cost",
    ]
    assert [line.split()[0] for line in lines[2:6]] == ["t003", "t001", "t002", "t004"]
    assert "stopped early" in lines[4] and lines[2].split()[-2:] == ["0.95", "$0.75"]
    assert "4 of 6 trial(s) started; total cost $2.50 over 4 attempt(s)" in result.output
    assert f"launch ckpt pull {tmp_path / 'ckpts' / 'cars-sweep-t003'} ./cars-sweep-t003" in result.output
    data = json.loads(CliRunner().invoke(main, ["sweep", "status", "cars-sweep", "--json"]).output)
    assert data["best"]["trial"] == 3 and data["cost"] == 2.5 and [r["trial"] for r in data["trials"]] == [3, 1, 2, 4]
    table = list(
        csv.DictReader(io.StringIO(CliRunner().invoke(main, ["sweep", "status", "cars-sweep", "--csv"]).output))
    )
    assert (
        [r["trial"] for r in table] == ["3", "1", "2", "4"]
        and table[0]["best_top1"] == "0.95"
        and "train.lr0" in table[0]
    )
    missing = CliRunner().invoke(main, ["sweep", "status", "nope"])
    assert missing.exit_code != 0 and "No sweep 'nope'" in missing.output and "Traceback" not in missing.output


def test_the_plot_labels_every_trial_without_overlaps(tmp_path: Path) -> None:
    from launcher.runs.sweep import summary  # noqa: PLC0415
    from launcher.runs.sweep_plot import draw_sweep, plot_sweep  # noqa: PLC0415

    found = summary(_recorded_sweep(tmp_path), "sweep-1")
    fig = draw_sweep(found)
    renderer = fig.canvas.get_renderer()
    texts = [t for ax in fig.axes for t in ax.texts]
    assert sorted(t.get_text() for t in texts) == sorted(
        [f"t00{n}" for n in (1, 2, 3, 4)] * 4
    )  # each trial, each key's panel
    for ax in fig.axes:
        boxes = [_box(t, renderer) for t in ax.texts]
        assert not [(i, j) for i in range(len(boxes)) for j in range(i + 1, len(boxes)) if boxes[i].overlaps(boxes[j])]
        assert all(ax.bbox.contains(b.x0, b.y0) and ax.bbox.contains(b.x1, b.y1) for b in boxes)
    # the axes' own texts (titles, axis labels, tick labels) of one panel stay clear of every other panel
    own = [[a.title, a.xaxis.label, a.yaxis.label, *a.get_xticklabels(), *a.get_yticklabels()] for a in fig.axes]
    extents = [[t.get_window_extent(renderer) for t in group if t.get_text()] for group in own]
    for i, group in enumerate(extents):
        for j, other in enumerate(fig.axes):
            if i != j:
                assert not any(b.overlaps(other.bbox) for b in group), (i, j)
    out = plot_sweep(found, tmp_path / "sweep.png")
    assert out.stat().st_size > 10_000


def _box(annotation, renderer):  # type: ignore[no-untyped-def]
    from matplotlib.text import Text  # noqa: PLC0415

    annotation.update_positions(renderer)
    return Text.get_window_extent(annotation, renderer)
