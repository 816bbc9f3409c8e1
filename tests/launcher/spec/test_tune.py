"""`sweep.method: ultralytics`: Ultralytics' own search space (read from the installed package, else our copy), the
first trial the spec's own values, later trials seeded mutations of the best results so far (the same spec and the
same results give the same values), and one-line refusals at load time."""

from __future__ import annotations

import copy
import random
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from launcher.cli import main
from launcher.spec import load_spec, tune
from launcher.spec.job import known_values, next_values, resolve_sweep

BASE: dict[str, Any] = {
    "name": "ysweep",
    "train": {"engine": "ultralytics", "model": "yolo11n.yaml", "data": "shapes", "epochs": 2, "lr0": 0.002},
    "checkpoint": {"uri": "ckpts"},
    "sweep": {"method": "ultralytics", "trials": 5, "metric": "mAP50-95(B)", "seed": 3},
}


def _load(tmp_path: Path, raw: dict[str, Any]) -> Any:
    (tmp_path / "shapes").mkdir(exist_ok=True)
    raw = {**copy.deepcopy(raw), "checkpoint": {"uri": str(tmp_path / "ckpts")}}
    raw["train"]["data"] = str(tmp_path / "shapes")
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return load_spec(path)


def test_the_copy_of_ultralytics_space_and_defaults_matches_the_installed_package() -> None:
    """The copy serves hosts without ultralytics; this fails when an upgrade of ultralytics changes its space."""
    ultralytics = pytest.importorskip("ultralytics")
    space, where = tune.installed_space()
    assert where == f"ultralytics {ultralytics.__version__}"
    assert {k: v for k, v in space.items() if k in tune.DEFAULT_SPACE} == tune.DEFAULT_SPACE
    assert set(space) - set(tune.DEFAULT_SPACE) == {"cls_pw", "bgr", "cutmix"}  # no field of our spec
    defaults = yaml.safe_load((Path(ultralytics.__file__).parent / "cfg" / "default.yaml").read_text())
    assert {k: defaults[k] for k in tune.DEFAULT_VALUES} == tune.DEFAULT_VALUES


def test_without_space_the_sweep_takes_ultralytics_space_for_the_task(tmp_path: Path) -> None:
    spec = resolve_sweep(_load(tmp_path, BASE))
    space = spec.sweep.space
    assert space["train.lr0"] == {"uniform": [1e-5, 1e-2]} and space["train.momentum"]["gain"] == 0.3
    assert space["train.close_mosaic"] == {"int": [0, 10]}
    assert "train.copy_paste" not in space and "train.box" in space  # detect: no copy-paste; boxes
    raw = copy.deepcopy(BASE)
    raw["train"]["model"] = "yolo11n-cls.yaml"
    classify = resolve_sweep(_load(tmp_path, raw)).sweep.space
    assert "train.box" not in classify and "train.mosaic" not in classify and "train.lr0" in classify


def test_the_first_trial_is_the_specs_own_values_and_later_ones_mutations(tmp_path: Path) -> None:
    spec = _load(tmp_path, BASE)
    first = next_values(spec, 1, [], [])
    assert first["train.lr0"] == 0.002 and first["train.momentum"] == 0.937  # the spec's, else Ultralytics' default
    assert first["train.close_mosaic"] == 10 and isinstance(first["train.close_mosaic"], int)
    # no result yet (trials 1 and 2 running): mutations of the first trial's values, each new
    second = next_values(spec, 2, [], [first])
    third = next_values(spec, 3, [], [first, second])
    assert len({tuple(v.values()) for v in (first, second, third)}) == 3
    changed = [k for k in first if first[k] != second[k]]
    assert 0 < len(changed) < len(first)  # about half the genes move, the rest are the parent's
    space = tune.dims(resolve_sweep(spec).sweep.space)
    for values in (second, third):
        assert all(space[k].low <= v <= space[k].high for k, v in values.items())


def test_the_same_spec_and_results_give_the_same_values(tmp_path: Path) -> None:
    spec, again = _load(tmp_path, BASE), _load(tmp_path, BASE)
    first = next_values(spec, 1, [], [])
    second = next_values(spec, 2, [], [first])
    results = [(0.31, first), (0.42, second)]
    third = next_values(spec, 3, results, [first, second])
    assert third == next_values(again, 3, results, [first, second])  # a restarted supervisor: the same values
    assert third != next_values(spec, 3, [(0.42, first), (0.31, second)], [first, second])  # other results
    reseeded = copy.deepcopy(BASE)
    reseeded["sweep"]["seed"] = 4
    assert third != next_values(_load(tmp_path, reseeded), 3, results, [first, second])


def test_mutations_pick_the_better_parent_more_often() -> None:
    space = {"train.lr0": tune.Dim(0.0, 1.0), "train.lrf": tune.Dim(0.0, 1.0)}
    good, bad = {"train.lr0": 0.9, "train.lrf": 0.9}, {"train.lr0": 0.1, "train.lrf": 0.1}
    children = [tune.mutate(space, [(0.0, bad), (1.0, good)], [good, bad], random.Random(n)) for n in range(200)]
    # a gene not moved keeps its parent's value: the worse parent (weight 1e-6 against 1) is never picked
    assert not [c for c in children if 0.1 in c.values()]
    assert len([c for c in children if 0.9 in c.values()]) > 100  # each gene moves with a chance of one half


def test_thirty_results_add_the_elite_covariance_and_stay_within_bounds() -> None:
    space = {f"train.k{i}": tune.Dim(0.0, 10.0, 0.5) for i in range(4)}
    rng = random.Random(0)
    results = [(rng.random(), {k: round(rng.uniform(0, 10), 5) for k in space}) for _ in range(40)]
    tried = [v for _, v in results]
    children = [tune.mutate(space, results, tried, random.Random(n)) for n in range(50)]
    assert children == [tune.mutate(space, results, tried, random.Random(n)) for n in range(50)]
    assert all(0.0 <= v <= 10.0 for c in children for v in c.values())
    assert not {tuple(c.values()) for c in children} & {tuple(v.values()) for v in tried}


def test_a_space_with_nothing_to_move_is_refused() -> None:
    with pytest.raises(ValueError, match="no key with room to move"):
        tune.mutate({"train.lr0": tune.Dim(0.01, 0.01)}, [(0.0, {"train.lr0": 0.01})], [], random.Random(0))


def test_a_restricted_space_and_its_bounds_are_checked_before_anything(tmp_path: Path) -> None:
    raw = copy.deepcopy(BASE)
    raw["sweep"]["space"] = {
        "train.lr0": {"uniform": ["1e-5", "1e-1"]},
        "train.momentum": {"uniform": [0.6, 0.9], "gain": 0.3},
    }
    spec = _load(tmp_path, raw)
    assert list(resolve_sweep(spec).sweep.space) == ["train.lr0", "train.momentum"]  # that space, not Ultralytics'
    labels = [label for label, _ in known_values(spec)]
    assert labels == ["trial 1", "the space's lower bounds", "the space's upper bounds"]
    assert known_values(spec)[0][1] == {"train.lr0": 0.002, "train.momentum": 0.9}  # 0.937 within the bounds


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"train": {**BASE["train"], "engine": "builtin", "model": "resnet18", "data": "digits"}},
         "method: ultralytics mutates Ultralytics' hyperparameters and runs the ultralytics engine only; "
         "set train.engine: ultralytics, or use method: random"),
        ({"sweep": {**BASE["sweep"], "space": {"train.optimizer": ["SGD", "AdamW"]}}},
         "train.optimizer: an ultralytics sweep mutates within bounds"),
        ({"sweep": {**BASE["sweep"], "space": {"train.lr0": {"log_uniform": [1e-4, 1e-1]}}}},
         "train.lr0: an ultralytics sweep mutates within bounds"),
        ({"sweep": {**BASE["sweep"], "space": {"resources.gpus": {"int": [1, 2]}}}},
         "an ultralytics sweep mutates train keys only"),
        ({"sweep": {**BASE["sweep"], "space": {"train.lr0": {"uniform": [0.001, 0.01], "gain": 2}}}},
         "gain scales the mutation step"),
        ({"sweep": {**BASE["sweep"], "space": {"train.copy_paste": {"uniform": [0.0, 1.0]}}}},
         "sweep: trial 1 (copy_paste=0.0) is not a valid spec"),
        ({"sweep": {**BASE["sweep"], "space": {"train.lr0": {"uniform": [0.0, 0.01]}}}},
         "sweep: the space's lower bounds (lr0=0.0) is not a valid spec"),
        ({"sweep": {k: v for k, v in BASE["sweep"].items() if k != "trials"}}, "an ultralytics sweep needs trials"),
    ],
)  # fmt: skip
def test_bad_ultralytics_sweeps_are_refused_in_one_line(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    (tmp_path / "shapes").mkdir()
    raw = {**copy.deepcopy(BASE), **change, "checkpoint": {"uri": str(tmp_path / "ckpts")}}
    raw["train"] = {
        **raw["train"],
        "data": raw["train"]["data"] if raw["train"]["data"] == "digits" else str(tmp_path / "shapes"),
    }
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    result = CliRunner().invoke(main, ["sweep", str(path)], env={"LAUNCHER_STATE_DIR": str(tmp_path / "state")})
    assert result.exit_code == 2, result.output
    assert message in result.output.splitlines()[0] and "Traceback" not in result.output
    assert not (tmp_path / "state" / "jobs.db").exists()
