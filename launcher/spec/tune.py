"""`sweep.method: ultralytics`: Ultralytics' own tuner (ultralytics.engine.tuner.Tuner) over our spec's keys, seeded.

Ultralytics' `Tuner` trains one iteration after another: the first with the run's own values, each next one a
mutation of the best results so far (a parent picked among the best 9, weighted by fitness; about half its genes
moved by a normal step of sigma 0.2 x the key's gain x a decay that grows while no better result comes, clipped to the
key's bounds; after 30 results, sometimes a draw from the elite's covariance; never a set of values tried before).
Its `_mutate` draws from an unseeded generator and reads its own results file, so here the same method is written
again over a seeded `random.Random` (the sweep's seed and the trial's number) and the trials' results in the job
registry: the same spec and the same results so far give the same values.

The search space is Ultralytics' default one (the literal dict in `Tuner.__init__`), read from the installed package
without importing it, else the copy below (ultralytics 8.4.190); keys our spec has no field for (cls_pw, bgr,
cutmix) and keys the spec's task does not take (box for classify, copy_paste for detect, ...) are left out.
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import math
import random
from pathlib import Path
from typing import Any, Iterable, NamedTuple, Sequence

__all__ = [
    "DEFAULT_SPACE",
    "DEFAULT_VALUES",
    "Dim",
    "INT_KEYS",
    "SOURCE_VERSION",
    "base_values",
    "constrain",
    "installed_space",
    "mutate",
    "space_for",
]

SOURCE_VERSION = "8.4.190"  # the ultralytics release the two copies below were taken from
# ultralytics/engine/tuner.py, Tuner.__init__: key -> (min, max, gain); gain 1 when absent. cls_pw, bgr and cutmix
# are there too; our spec has no field for them.
DEFAULT_SPACE: dict[str, tuple[float, ...]] = {
    "lr0": (1e-5, 1e-2), "lrf": (0.01, 1.0), "momentum": (0.7, 0.98, 0.3), "weight_decay": (0.0, 0.001),
    "warmup_epochs": (0.0, 5.0), "warmup_momentum": (0.0, 0.95), "box": (1.0, 20.0), "cls": (0.1, 4.0),
    "dfl": (0.4, 12.0), "hsv_h": (0.0, 0.1), "hsv_s": (0.0, 0.9), "hsv_v": (0.0, 0.9), "degrees": (0.0, 45.0),
    "translate": (0.0, 0.9), "scale": (0.0, 0.95), "shear": (0.0, 10.0), "perspective": (0.0, 0.001),
    "flipud": (0.0, 1.0), "fliplr": (0.0, 1.0), "mosaic": (0.0, 1.0), "mixup": (0.0, 1.0), "copy_paste": (0.0, 1.0),
    "close_mosaic": (0.0, 10.0),
}  # fmt: skip
# ultralytics/cfg/default.yaml: the value a key has when the spec does not set it (the first trial's value)
DEFAULT_VALUES: dict[str, float] = {
    "lr0": 0.01, "lrf": 0.01, "momentum": 0.937, "weight_decay": 0.0005, "warmup_epochs": 3.0,
    "warmup_momentum": 0.8, "box": 7.5, "cls": 0.5, "dfl": 1.5, "hsv_h": 0.015, "hsv_s": 0.7, "hsv_v": 0.4,
    "degrees": 0.0, "translate": 0.1, "scale": 0.5, "shear": 0.0, "perspective": 0.0, "flipud": 0.0, "fliplr": 0.5,
    "mosaic": 1.0, "mixup": 0.0, "copy_paste": 0.0, "close_mosaic": 10,
}  # fmt: skip
INT_KEYS = frozenset({"epochs", "batch", "imgsz", "patience", "save_period", "workers", "seed", "close_mosaic",
                      "freeze", "nbs", "mask_ratio"})  # fmt: skip  # whole numbers in our spec (Ultralytics' CFG_INT_KEYS)
PARENTS, SIGMA, ELITE_FROM = 9, 0.2, 30  # Tuner._mutate(n=9, sigma=0.2); the covariance step from 30 results


class Dim(NamedTuple):
    """One key of the space: its bounds, Ultralytics' gain (the step's scale, 0-1) and whether it is a whole number."""

    low: float
    high: float
    gain: float = 1.0
    whole: bool = False


def installed_space() -> tuple[dict[str, tuple[float, ...]], str]:
    """Ultralytics' default space and where it came from: the installed package's tuner.py (read, not imported: no
    torch at plan time), else DEFAULT_SPACE."""
    found = importlib.util.find_spec("ultralytics")
    if found is not None and found.origin:
        try:
            space = _read_space(Path(found.origin).parent / "engine" / "tuner.py")
            return space, f"ultralytics {importlib.metadata.version('ultralytics')}"
        except (OSError, SyntaxError, ValueError, importlib.metadata.PackageNotFoundError):
            pass
    return dict(DEFAULT_SPACE), f"a copy of ultralytics {SOURCE_VERSION}'s"


def _read_space(path: Path) -> dict[str, tuple[float, ...]]:
    """The dict literal with an lr0 key in Tuner.__init__ (`args.pop("space", None) or {...}`)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Dict) and any(isinstance(k, ast.Constant) and k.value == "lr0" for k in node.keys):
            space = ast.literal_eval(node)
            if all(isinstance(v, tuple) and len(v) in (2, 3) for v in space.values()):
                return {str(k): tuple(float(b) for b in v) for k, v in space.items()}
    raise ValueError(f"no search space in {path}")


def space_for(keys: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Ultralytics' default space as `sweep.space` entries, for the train keys given (those the spec's task takes)."""
    space, _where = installed_space()
    wanted = set(keys)
    out: dict[str, dict[str, Any]] = {}
    for key, bounds in space.items():
        if key not in wanted:
            continue
        kind = "int" if key in INT_KEYS else "uniform"
        low, high = (int(b) for b in bounds[:2]) if kind == "int" else bounds[:2]
        entry: dict[str, Any] = {kind: [low, high]}
        if len(bounds) == 3:
            entry["gain"] = bounds[2]
        out[f"train.{key}"] = entry
    return out


def dims(space: dict[str, Any]) -> dict[str, Dim]:
    """`sweep.space` entries ({uniform: [a, b], gain: g} or {int: [a, b]}) as Dims, in the space's order."""
    found = {}
    for key, entry in space.items():
        kind = "int" if "int" in entry else "uniform"
        low, high = entry[kind]
        found[key] = Dim(float(low), float(high), float(entry.get("gain", 1.0)), kind == "int")
    return found


def base_values(space: dict[str, Dim], given: dict[str, Any]) -> dict[str, Any]:
    """The first trial's values (Ultralytics' first iteration: the run's own values): the spec's value where it sets
    the key (`given`, by train key), else Ultralytics' default, within the bounds."""
    values = {}
    for key, dim in space.items():
        name = key.split(".", 1)[1]
        value = given.get(name)
        if value is None:
            value = DEFAULT_VALUES.get(name, (dim.low + dim.high) / 2)
        values[key] = value
    return constrain(space, values)


def constrain(space: dict[str, Dim], values: dict[str, Any]) -> dict[str, Any]:
    """Tuner._constrain: whole numbers rounded, the rest to 5 decimals, each within its bounds."""
    out: dict[str, Any] = {}
    for key, dim in space.items():
        if dim.whole:
            out[key] = min(max(round(values[key]), math.ceil(dim.low)), math.floor(dim.high))
        else:
            out[key] = min(max(round(float(values[key]), 5), dim.low), dim.high)
    return out


def mutate(
    space: dict[str, Dim],
    results: Sequence[tuple[float, dict[str, Any]]],
    tried: Iterable[dict[str, Any]],
    rng: random.Random,
) -> dict[str, Any]:
    """Tuner._mutate over `results` (fitness, higher is better, and the values; oldest first) with `rng`: values none
    of `tried` has. Raises ValueError when the space has nothing to move or no new values are found."""
    keys = list(space)
    lows = [space[k].low for k in keys]
    spans = [space[k].high - space[k].low for k in keys]
    movable = [s > 0 for s in spans]
    if not any(movable):
        raise ValueError("the search space has no key with room to move (every low equals its high)")
    fitness = [round(f, 5) for f, _ in results]
    stale = len(results) - 1 - fitness.index(max(fitness))  # results since the best one
    order = sorted(range(len(results)), key=lambda i: -results[i][0])  # best first; stable on ties
    scaled = [[_unit(results[i][1][k], lows[j], spans[j]) for j, k in enumerate(keys)] for i in order]
    parents, weights = scaled[:PARENTS], _weights([results[i][0] for i in order[:PARENTS]])
    decay = 1 - 0.2 * min(stale / 25, 1)
    scale = [
        max(SIGMA * decay * space[k].gain, (1 if space[k].whole else 1e-5) / spans[j] if movable[j] else 0.0)
        for j, k in enumerate(keys)
    ]
    elite = _elite(results, order, keys, lows, spans, movable, decay, scale)
    seen = {tuple(v[k] for k in keys) for v in tried}
    for attempt in range(200):
        genes = list(rng.choices(parents, weights=weights)[0])
        if attempt >= 100:  # Ultralytics' last resort: a parent with every movable key drawn anew
            genes = [rng.random() if movable[j] else g for j, g in enumerate(genes)]
        else:
            genes = _step(genes, movable, scale, elite, rng)
        values = constrain(space, {k: lows[j] + genes[j] * spans[j] for j, k in enumerate(keys)})
        if tuple(values[k] for k in keys) not in seen:
            return values
    raise ValueError("no new values found in 200 mutations; widen sweep.space or lower sweep.trials")


def _unit(value: Any, low: float, span: float) -> float:
    return (float(value) - low) / span if span > 0 else 0.0


def _weights(fitness: list[float]) -> list[float]:
    weights = [f - min(fitness) + 1e-6 for f in fitness]
    return weights if all(math.isfinite(w) for w in weights) and sum(weights) else [1.0] * len(weights)


def _step(
    genes: list[float], movable: list[bool], scale: list[float], elite: tuple[Any, float] | None, rng: random.Random
) -> list[float]:
    """About half the movable genes moved: a normal step of `scale` clipped to [0, 1], or (from 30 results, with a
    chance of 0.4 x confidence) a draw from the elite's covariance, reflected into [0, 1]."""
    mask = [rng.random() < 0.5 and m for m in movable]
    if elite is not None and rng.random() < 0.4 * elite[1]:
        drawn = _normal(genes, elite[0], rng)
        return [1 - abs(d % 2 - 1) if on else g for g, d, on in zip(genes, drawn, mask)]
    return [min(max(g + (rng.gauss(0.0, 1.0) * s if on else 0.0), 0.0), 1.0) for g, s, on in zip(genes, scale, mask)]


def _elite(
    results: Sequence[tuple[float, dict[str, Any]]],
    order: list[int],
    keys: list[str],
    lows: list[float],
    spans: list[float],
    movable: list[bool],
    decay: float,
    scale: list[float],
) -> tuple[list[list[float]], float] | None:
    """From 30 results: the Cholesky factor of the best fifth's covariance (at most 30 of them) shrunk by the decay
    and the confidence, plus the step's own variance, and that confidence; else None."""
    if len(results) < ELITE_FROM:
        return None
    count = min(math.ceil(len(results) * 0.2), 30)
    confidence = min(count / sum(movable), 1)
    rows = [[_unit(results[i][1][k], lows[j], spans[j]) for j, k in enumerate(keys)] for i in order[:count]]
    n = len(keys)
    means = [sum(r[j] for r in rows) / count for j in range(n)]
    cov = [
        [
            sum((r[a] - means[a]) * (r[b] - means[b]) for r in rows) / (count - 1) * decay**2 * confidence
            for b in range(n)
        ]
        for a in range(n)
    ]
    for j in range(n):
        cov[j][j] += scale[j] ** 2 / sum(movable)
    return _cholesky(cov), confidence


def _cholesky(matrix: list[list[float]]) -> list[list[float]]:
    """The lower factor L of a symmetric positive definite matrix (L L^T = matrix)."""
    n = len(matrix)
    low = [[0.0] * n for _ in range(n)]
    for i in range(n):
        for j in range(i + 1):
            total = matrix[i][j] - sum(low[i][k] * low[j][k] for k in range(j))
            low[i][j] = math.sqrt(max(total, 1e-12)) if i == j else total / low[j][j]
    return low


def _normal(mean: list[float], factor: list[list[float]], rng: random.Random) -> list[float]:
    """A draw from N(mean, L L^T)."""
    z = [rng.gauss(0.0, 1.0) for _ in mean]
    return [m + sum(factor[i][k] * z[k] for k in range(i + 1)) for i, m in enumerate(mean)]
