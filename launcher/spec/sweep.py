"""`sweep:` in the job spec: many trials of one spec, each a run of its own (launcher.runs.sweep schedules them).

    sweep:
      method: random            # grid | random | ultralytics (Ultralytics' tuner: launcher.spec.tune)
      trials: 24
      parallel: 4
      metric: top1              # a column of the trial's results.csv; goal: max | min
      space:
        train.lr0: {log_uniform: [1e-4, 1e-1]}
        train.optimizer: [SGD, AdamW]     # a list: one of these
        train.scale: {uniform: [0.2, 0.9]}
        train.batch: {int: [16, 64]}
      early_stop: {after_epochs: 5, keep_best: 0.5}
      backends: [local, aws]
      seed: 0

The trials' values of grid and random are drawn here, from `seed` alone, so the same sweep spec always gives the
same trials (and a restarted sweep supervisor the same ones it recorded). Those of `ultralytics` are mutations of the
best results so far (launcher.spec.tune), made as each trial starts and recorded then. Each swept key is a key of `train:` or `resources:`; the
key names are checked by JobSpec, and every trial's spec as a whole by `check_trials` (spec/job.py) when the
spec loads.
"""

from __future__ import annotations

import itertools
import math
import random
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BeforeValidator, Field, ValidationInfo, field_validator, model_validator

from launcher.spec.train import Int, _Model, _number

if TYPE_CHECKING:
    pass

__all__ = [
    "EarlyStop",
    "Sweep",
    "SWEPT_SECTIONS",
    "TRIAL_VARIABLE",
    "trial_values",
    "trial_name",
    "describe",
    "MAX_TRIALS",
]

SWEPT_SECTIONS = ("train", "resources")
TRIAL_VARIABLE = "LAUNCHER_TRIAL"  # the trial's values as JSON ({"train.lr0": 0.003}) in the job's environment
MAX_TRIALS = 10_000
DISTRIBUTIONS = ("uniform", "log_uniform", "int")


class EarlyStop(_Model):
    """Successive halving: at each epoch of `after_epochs` (a rung), the trials still running outside the best
    `keep_best` fraction of those that reached it are stopped."""

    after_epochs: int | list[int] = Field(
        description="the epoch at which trials are compared, or a list of them (rungs), like [2, 4]"
    )
    keep_best: Annotated[float, Field(gt=0.0, lt=1.0), BeforeValidator(_number)] = Field(
        0.5, description="the fraction of trials that go on past each rung (0.5: the best half)"
    )

    @field_validator("after_epochs", mode="before")
    @classmethod
    def _rungs(cls, value: Any) -> Any:
        epochs = value if isinstance(value, list) else [value]
        if not epochs:
            raise ValueError("the list of epochs is empty; give one or more, like [2, 4]")
        for epoch in epochs:
            if isinstance(epoch, bool) or not isinstance(epoch, int) or not 1 <= epoch <= 100_000:
                raise ValueError(f"{epoch!r} is not an epoch: give a whole number from 1 to 100000, like 5 or [2, 4]")
        if any(b <= a for a, b in zip(epochs, epochs[1:])):
            raise ValueError(f"{value}: list the epochs in rising order, each once, like [2, 4]")
        return value

    @property
    def rungs(self) -> list[int]:
        """The epochs at which trials are compared, first to last."""
        return list(self.after_epochs) if isinstance(self.after_epochs, list) else [self.after_epochs]

    def quotas(self, trials: int) -> list[tuple[int, int]]:
        """For each rung: (how many trials may reach it, how many of those go on): keep_best of the trials kept at
        the rung before (all trials at the first), rounded, at least one."""
        out, reaching = [], trials
        for _ in self.rungs:
            keep = max(1, round(self.keep_best * reaching))
            out.append((reaching, keep))
            reaching = keep
        return out


class Sweep(_Model):
    """`sweep:`: trials of this spec with other values of its own keys, under one budget (limits.max_cost)."""

    method: Literal["grid", "random", "ultralytics"] = Field(
        "random",
        description="grid: every combination; random: seeded draws; ultralytics: Ultralytics' tuner "
        "(mutations of the best trials so far, the ultralytics engine only)",
    )
    trials: Annotated[int, Field(ge=1, le=MAX_TRIALS), BeforeValidator(_number)] | None = Field(
        None, description="how many trials (random: required; grid: at most the grid)"
    )
    parallel: Int = Field(1, ge=1, le=1000, description="trials running at once, across backends")
    metric: str = Field(
        "top1", min_length=1, max_length=100, description="a column of results.csv, like top1, val_loss or mAP50-95(B)"
    )
    goal: Literal["max", "min"] | None = Field(None, description="max or min; default: min for a loss, else max")
    space: dict[str, Any] = Field(
        default_factory=dict,
        description="spec key -> a list (one of), {uniform: [a, b]}, {log_uniform: [a, b]} or {int: [a, b]}; "
        "ultralytics: {uniform: [a, b], gain: 0.3} or {int: [a, b]}, default Ultralytics' own space",
    )
    early_stop: EarlyStop | None = Field(None, description="stop the worst trials at an epoch (successive halving)")
    backends: list[str] = Field(default_factory=list, description="where trials may run (default: the -b backend)")
    capacity: dict[str, Int] = Field(
        default_factory=dict,
        description="trials at once per backend (default: local fits "
        "its GPUs, one for a CPU job; a cloud: up to parallel)",
    )
    seed: Int = Field(0, ge=0, le=2**32 - 1, description="the seed of random draws")

    @field_validator("space")
    @classmethod
    def _space(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        method = info.data.get("method")
        if not value and method != "ultralytics":
            raise ValueError("is empty; name at least one key to sweep, like train.lr0: {log_uniform: [1e-4, 1e-1]}")
        space = {str(key): _numbers(dist) for key, dist in value.items()}
        for key, dist in space.items():
            if method == "ultralytics":
                _check_mutable(key, dist)
            else:
                _check_dimension(key, dist)
        return space

    @field_validator("backends")
    @classmethod
    def _backends(cls, value: list[str]) -> list[str]:
        names = [name.strip().lower() for name in value]
        twice = next((name for name in names if names.count(name) > 1), None)
        if twice:
            raise ValueError(f"{twice} is listed twice; keep one")
        return names

    @field_validator("capacity")
    @classmethod
    def _capacity(cls, value: dict[str, int]) -> dict[str, int]:
        bad = next((name for name, n in value.items() if n < 1 or n > 1000), None)
        if bad:
            raise ValueError(f"{bad}: {value[bad]} is not a number of trials from 1 to 1000")
        return {name.strip().lower(): n for name, n in value.items()}

    @model_validator(mode="after")
    def _method(self) -> "Sweep":
        if self.method != "grid" and self.trials is None:
            article = "an" if self.method == "ultralytics" else "a"
            raise ValueError(f"{article} {self.method} sweep needs trials: how many to run, like trials: 12")
        if self.method == "grid":
            continuous = next((k for k, d in self.space.items() if isinstance(d, dict) and "int" not in d), None)
            if continuous:
                raise ValueError(
                    f"a grid takes lists and int ranges only; {continuous} is continuous: "
                    "list the values to try, or use method: random"
                )
            wide = next((k for k, d in self.space.items() if _grid_count(d) > MAX_TRIALS), None)
            if wide:
                raise ValueError(
                    f"{wide} has more than {MAX_TRIALS} values for a grid; list fewer, or use method: random"
                )
            size = grid_size(self)
            if self.trials is not None and self.trials > size:
                raise ValueError(
                    f"trials is {self.trials} but the grid has {size} combinations; "
                    "lower trials or remove it (a grid runs every combination)"
                )
            if size > MAX_TRIALS and (self.trials is None):
                raise ValueError(
                    f"the grid has {size} combinations, more than {MAX_TRIALS}; set trials or narrow space"
                )
        if self.early_stop is not None and self.count() < 2:
            raise ValueError("early_stop compares trials: it needs at least 2")
        return self

    def count(self) -> int:
        """How many trials the sweep has."""
        return self.trials if self.trials is not None else grid_size(self)

    def goal_(self) -> str:
        """max or min: the given goal, else min for a loss and max for anything else."""
        return self.goal or ("min" if "loss" in self.metric.lower() else "max")

    def better(self, a: float, b: float) -> bool:
        return a > b if self.goal_() == "max" else a < b


def _numbers(dist: Any) -> Any:
    """{log_uniform: [1e-4, 1e-1]}: YAML reads 1e-4 (no dot) as a string; a bound (and a gain) is a number."""
    if not isinstance(dist, dict):
        return dist

    def number(value: Any) -> Any:
        try:
            return float(value) if isinstance(value, str) else value
        except ValueError:
            return value

    return {kind: [number(b) for b in v] if isinstance(v, list) else number(v) for kind, v in dist.items()}


def _check_mutable(key: str, dist: Any) -> None:
    """A key of an ultralytics sweep: a train key with bounds to mutate within, as Ultralytics' (min, max, gain)."""
    if not key.startswith("train."):
        raise ValueError(f"'{key}': an ultralytics sweep mutates train keys only (like train.lr0); remove it")
    kinds = dist.keys() - {"gain"} if isinstance(dist, dict) else set()
    if len(kinds) != 1 or not kinds <= {"uniform", "int"} or ("gain" in dist and "int" in kinds):
        raise ValueError(
            f"{key}: an ultralytics sweep mutates within bounds: give {{uniform: [a, b]}} (optionally gain: 0.3, "
            "the step's scale) or {int: [a, b]}"
        )
    kind = next(iter(kinds))
    _check_dimension(key, {kind: dist[kind]})
    gain = dist.get("gain", 1.0)
    if isinstance(gain, bool) or not isinstance(gain, (int, float)) or not 0 < gain <= 1:
        raise ValueError(f"{key}: gain scales the mutation step: a number above 0 and at most 1, not {gain!r}")


def _check_dimension(key: str, dist: Any) -> None:
    parts = key.split(".")
    if len(parts) != 2 or parts[0] not in SWEPT_SECTIONS or not parts[1]:
        raise ValueError(f"'{key}' is not a spec key to sweep; write train.<key> or resources.<key>, like train.lr0")
    if isinstance(dist, list):
        if not dist:
            raise ValueError(f"{key}: the list of values is empty; give at least one")
        if any(isinstance(v, (dict, list)) for v in dist):
            raise ValueError(f"{key}: a list holds plain values to try, like [SGD, AdamW]")
        return
    if not isinstance(dist, dict) or len(dist) != 1 or next(iter(dist)) not in DISTRIBUTIONS:
        raise ValueError(
            f"{key}: give a list of values, or one of {{uniform: [a, b]}}, {{log_uniform: [a, b]}}, {{int: [a, b]}}"
        )
    kind, bounds = next(iter(dist.items()))
    if (
        not isinstance(bounds, list)
        or len(bounds) != 2
        or any(isinstance(b, bool) or not isinstance(b, (int, float)) or not math.isfinite(b) for b in bounds)
    ):
        raise ValueError(f"{key}: {kind} takes two numbers [low, high], like {{{kind}: [1, 10]}}")
    low, high = bounds
    if kind == "int" and not all(isinstance(b, int) for b in bounds):
        raise ValueError(f"{key}: int takes two whole numbers [low, high]")
    if low > high or (kind != "int" and low == high):
        raise ValueError(f"{key}: {kind} [{low}, {high}]: low must be below high")
    if kind == "log_uniform" and low <= 0:
        raise ValueError(f"{key}: log_uniform needs low above 0 (a logarithm), not {low}")


def _grid_values(dist: Any) -> list[Any]:
    if isinstance(dist, list):
        return list(dist)
    low, high = dist["int"]
    return list(range(low, high + 1))


def _grid_count(dist: Any) -> int:
    return len(dist) if isinstance(dist, list) else dist["int"][1] - dist["int"][0] + 1


def grid_size(sweep: Sweep) -> int:
    return math.prod(_grid_count(d) for d in sweep.space.values())


def _round(value: float) -> float:
    """Four significant digits: a value a person can read and type again (and the same one after JSON)."""
    return float(f"{value:.4g}")


def _draw(rng: random.Random, dist: Any) -> Any:
    if isinstance(dist, list):
        return dist[rng.randrange(len(dist))]
    kind, (low, high) = next(iter(dist.items()))
    if kind == "int":
        return rng.randint(low, high)
    if kind == "uniform":
        return min(max(_round(rng.uniform(low, high)), low), high)
    return min(max(_round(math.exp(rng.uniform(math.log(low), math.log(high)))), low), high)


def trial_values(sweep: Sweep) -> list[dict[str, Any]]:
    """Each trial's values (trial 1 first), from the sweep's own settings alone: the same sweep, the same trials."""
    if sweep.method == "ultralytics":
        raise ValueError("an ultralytics sweep's values are made as its trials start (launcher.spec.job.next_values)")
    if sweep.method == "grid":
        keys = list(sweep.space)
        combos = itertools.islice(itertools.product(*(_grid_values(sweep.space[k]) for k in keys)), sweep.count())
        return [dict(zip(keys, combo)) for combo in combos]
    rng = random.Random(sweep.seed)
    return [{key: _draw(rng, dist) for key, dist in sweep.space.items()} for _ in range(sweep.count())]


def trial_name(sweep_name: str, number: int) -> str:
    return f"{sweep_name}-t{number:03d}"


def describe(values: dict[str, Any]) -> str:
    """`lr0=0.0031 optimizer=AdamW`: a trial's values on one line."""
    return " ".join(f"{key.split('.', 1)[1]}={value}" for key, value in values.items())
