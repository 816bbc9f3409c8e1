"""The time and cost model: one row per backend offer.

    time  = startup + staging + training + validation (+ expected spot restarts)
    training   = train images x fraction x epochs / (images/s per GPU x GPUs x nodes x efficiency)
    validation = val images x epochs / (the same, x the forward-only speed-up)
    cost  = time x price per node-hour x nodes + storage

Each term is its own small function so that each can be tested on its own.
Offers come from each backend's `offers(spec)`; a backend that cannot list
offers (missing catalog, unsupported resources) is shown as a row with the
reason rather than aborting the whole estimate.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable, Sequence

from launcher.backend import Backend, Offer
from launcher.catalog import load_catalog
from launcher.errors import LauncherError
from launcher.estimate.throughput import Figure, canonical_device, gpu_table, throughput
from launcher.spec import JobSpec
from launcher.state.jobs import JobRegistry

__all__ = [
    "BUILTIN_DATASETS",
    "Dataset",
    "Row",
    "dataset_size",
    "scaling_efficiency",
    "training_seconds",
    "validation_seconds",
    "staging_seconds",
    "interruption_seconds",
    "estimate_offer",
    "estimate",
    "mark",
]

# Built-in datasets: (train images, validation images, bytes). digits is
# scikit-learn's 1,797 8x8 images; launcher.runtime.datasets holds out a stratified 20% (ceil: 360).
BUILTIN_DATASETS = {"digits": (1437, 360, 1797 * 300)}
_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
DEFAULT_STARTUP_S = 300.0  # a cloud backend whose catalog gives none
DEFAULT_STAGING_MB_S = 100.0
DEFAULT_SPOT_INTERRUPTIONS_PER_HOUR = 0.02  # assumption; a catalog's spot_interruptions_per_hour overrides it
STORAGE_USD_PER_GB_MONTH = 0.023  # S3 Standard, first 50 TB, us-east-1: https://aws.amazon.com/s3/pricing/
HOURS_PER_MONTH = 730.0


@dataclass(frozen=True)
class Dataset:
    train_images: int
    val_images: int
    bytes: int | None  # None: unknown (remote data given as --images N without --data-gb)
    local: bool  # True: the files are on this machine (a cloud job must upload them)
    files: int = 0  # remote: objects listed
    packed: bool = False  # a packed dataset (launch data pack): streamed, staging waits for the first shard only
    first_bytes: int = 0  # packed: the largest shard


@dataclass(frozen=True)
class Row:
    """One option: where, how long, how much, and how sure."""

    offer: Offer
    startup_s: float = 0.0
    staging_s: float = 0.0
    training_s: float = 0.0
    validation_s: float = 0.0
    interruption_s: float = 0.0
    total_s: float = 0.0
    cost: float = 0.0
    storage_cost: float = 0.0
    time_range: tuple[float, float] = (0.0, 0.0)
    cost_range: tuple[float, float] = (0.0, 0.0)
    images_per_s: float = 0.0  # per GPU (per process)
    source: str = ""
    source_detail: str = ""
    catalog_date: str = ""
    error: str = ""
    within_limits: bool = True
    marks: tuple[str, ...] = field(default=())
    staging_known: bool = True  # False: the data's size is unknown, staging_s (0) is not a figure to act on

    @property
    def ok(self) -> bool:
        return not self.error

    def to_dict(self) -> dict[str, object]:
        o = self.offer
        return {
            "backend": o.backend, "instance": o.instance, "gpu_type": o.gpu_type, "gpus": o.gpus, "nodes": o.nodes,
            "spot": o.spot, "region": o.region, "price_per_hour": o.price_per_hour,
            "price_per_hour_all_nodes": o.price_per_hour * o.nodes, "startup_s": round(self.startup_s, 1),
            "staging_s": round(self.staging_s, 1) if self.staging_known else None, "training_s": round(self.training_s, 1),
            "validation_s": round(self.validation_s, 1), "interruption_s": round(self.interruption_s, 1),
            "total_s": round(self.total_s, 1), "cost": round(self.cost, 4), "storage_cost": round(self.storage_cost, 6),
            "time_range_s": [round(t, 1) for t in self.time_range], "cost_range": [round(c, 4) for c in self.cost_range],
            "images_per_s": round(self.images_per_s, 2), "source": self.source, "source_detail": self.source_detail,
            "catalog_date": self.catalog_date, "error": self.error, "within_limits": self.within_limits,
            "marks": list(self.marks),
        }  # fmt: skip


# ---------------------------------------------------------------- dataset


def dataset_size(spec: JobSpec, train_images: int | None = None, data_bytes: int | None = None) -> Dataset | None:
    """How many images (and bytes) the job reads; None when that cannot be known without network access.

    For remote data the caller passes the counts (`launch estimate --images N --data-gb G`); the
    validation set is then taken as a tenth of the training set.
    """
    data = spec.train.data
    if data in BUILTIN_DATASETS:
        train, val, size = BUILTIN_DATASETS[data]
        return Dataset(train_images or train, val, size, local=True)
    if "://" not in data and Path(data).is_dir():  # an ImageFolder, or a YOLO dataset's images/{train,val}
        root = Path(data) / "images" if (Path(data) / "images" / "train").is_dir() else Path(data)
        return _folder_size(root, train_images)
    if train_images:
        return Dataset(train_images, max(1, train_images // 10), data_bytes, local=False)
    return None


def _folder_size(root: Path, train_images: int | None) -> Dataset:
    counts = {"train": 0, "val": 0}
    total = 0
    for split in counts:
        for dirpath, _, files in os.walk(root / split):
            for name in files:
                if Path(name).suffix.lower() in _IMAGE_SUFFIXES:
                    counts[split] += 1
                    total += (Path(dirpath) / name).stat().st_size
    return Dataset(train_images or counts["train"], counts["val"], total, local=True)


# ---------------------------------------------------------------- terms


def scaling_efficiency(gpus: int, nodes: int) -> float:
    """Data-parallel efficiency for `gpus` per node on `nodes` nodes (1.0 for one process)."""
    scaling = gpu_table()["scaling"]
    within = scaling["per_gpu_doubling"] ** math.log2(max(gpus, 1))
    across = scaling["per_node_doubling"] ** math.log2(max(nodes, 1))
    return within * across


def _processes(offer: Offer) -> int:
    return max(offer.gpus, 1) * offer.nodes


def training_seconds(spec: JobSpec, data: Dataset, ips: float, offer: Offer) -> float:
    images = data.train_images * spec.train.fraction * spec.train.epochs
    return images / (ips * _processes(offer) * scaling_efficiency(offer.gpus, offer.nodes))


def validation_seconds(spec: JobSpec, data: Dataset, ips: float, offer: Offer) -> float:
    speedup = gpu_table()["validation_speedup"]
    images = data.val_images * spec.train.epochs
    return images / (ips * speedup * _processes(offer) * scaling_efficiency(offer.gpus, offer.nodes))


def staging_seconds(data: Dataset, offer: Offer, catalog: dict[str, object]) -> float:
    """Moving the dataset to where it trains: none for local data on the local backend."""
    if offer.backend == "local" and data.local:
        return 0.0
    rate = float(offer.details.get("staging_mb_per_s") or catalog.get("staging_mb_per_s") or DEFAULT_STAGING_MB_S)
    # a packed dataset streams: training starts after the first shard, the rest arrives while it runs;
    # unknown: 0 here, and the row says "unknown" (Row.staging_known)
    return ((data.first_bytes if data.packed else data.bytes) or 0) / (rate * 1e6)


def interruption_seconds(
    spec: JobSpec, work_s: float, startup_s: float, offer: Offer, catalog: dict[str, object]
) -> float:
    """Expected time lost to spot interruptions: each costs a restart and half a checkpoint interval of work."""
    if not offer.spot:
        return 0.0
    rate = float(
        offer.details.get("spot_interruptions_per_hour")
        or catalog.get("spot_interruptions_per_hour")
        or DEFAULT_SPOT_INTERRUPTIONS_PER_HOUR
    )
    epoch_s = work_s / spec.train.epochs
    lost_per_interruption = startup_s + 0.5 * spec.checkpoint.every * epoch_s
    return rate * (work_s / 3600.0) * lost_per_interruption


def _startup(offer: Offer, figure: Figure, catalog: dict[str, object]) -> float:
    if offer.details.get("startup_from_profile") and figure.overhead_s is not None:
        return figure.overhead_s  # measured on this machine: process start, imports, data and model setup
    return float(
        offer.startup_s or catalog.get("startup_s") or (0.0 if offer.backend == "local" else DEFAULT_STARTUP_S)
    )


# ---------------------------------------------------------------- rows


def estimate_offer(spec: JobSpec, offer: Offer, figure: Figure, data: Dataset, catalog: dict[str, object]) -> Row:
    """All terms for one offer, with a range from the figure's uncertainty."""
    ips = figure.images_per_s
    startup = _startup(offer, figure, catalog)
    staging = staging_seconds(data, offer, catalog)
    training = training_seconds(spec, data, ips, offer) + spec.train.epochs * (figure.epoch_overhead_s or 0.0)
    validation = validation_seconds(spec, data, ips, offer)
    lost = interruption_seconds(spec, training + validation, startup, offer, catalog)
    total = startup + staging + training + validation + lost
    storage = _storage_cost(data, total, offer)
    cost = total / 3600.0 * offer.price_per_hour * offer.nodes + storage
    u = min(figure.uncertainty, 0.9)
    su = gpu_table()["uncertainty"]["startup"]
    work = training + validation + lost
    low = startup * (1 - su) + staging + work / (1 + u)
    high = startup * (1 + su) + staging + work / (1 - u)
    per_s = offer.price_per_hour * offer.nodes / 3600.0
    return Row(
        offer, startup, staging, training, validation, lost, total, cost, storage, (low, high),
        (low * per_s + storage, high * per_s + storage), ips, figure.source, figure.detail,
        str(catalog.get("date", "")),
    )  # fmt: skip


def _storage_cost(data: Dataset, total_s: float, offer: Offer) -> float:
    """Object storage for a local dataset uploaded for a cloud run, prorated (buckets bill per GB-month)."""
    if not data.local or offer.backend == "local":
        return 0.0
    return (data.bytes or 0) / 1e9 * STORAGE_USD_PER_GB_MONTH * (total_s / 3600.0) / HOURS_PER_MONTH


def _catalog_for(backend: str) -> dict[str, object]:
    if backend == "local":
        return {}
    try:
        return load_catalog(backend)
    except LauncherError:
        return {}


def _row_for(spec: JobSpec, offer: Offer, data: Dataset | None, jobs: JobRegistry | None,
             images_per_s: float | None = None) -> Row:  # fmt: skip
    catalog = _catalog_for(offer.backend)
    date = str(offer.details.get("catalog_date") or catalog.get("date", ""))
    if data is None:
        what = f"the size of {spec.train.data} is unknown offline" if spec.data() else "the job names no train.data"
        reason = f"{what}; pass --images N (training images per epoch)"
        return Row(offer, catalog_date=date, error=reason)
    cpus = offer.details.get("cpus") if offer.backend == "local" else None
    figure = throughput(spec, _device(offer), jobs, images_per_s, cpus=int(cpus) if isinstance(cpus, int) else None)
    if figure is None and spec.command:
        reason = ("the speed of a program of your own is unknown here; pass --images-per-s N (training images per "
                  "second per GPU, or on the CPU, read off a short run of it)")  # fmt: skip
        return Row(offer, catalog_date=date, error=reason)
    if figure is None:
        hint = (
            "run: launch profile JOB.yaml" if offer.backend == "local"
            else "the GPU table (launcher/estimate/data/gpus.json) has no figure for it"
        )  # fmt: skip
        reason = f"no throughput figure for {spec.train.model} on {canonical_device(_device(offer))}; {hint}"
        return Row(offer, catalog_date=date, error=reason)
    known = data.bytes is not None or (offer.backend == "local" and data.local)
    return replace(estimate_offer(spec, offer, figure, data, {**catalog, "date": date}), catalog_date=date,
                   staging_known=known)  # fmt: skip


def _device(offer: Offer) -> str:
    """The device a figure must match: a GPU type; 'cpu' only for this machine (a cloud vCPU is another CPU)."""
    if offer.gpus:
        return offer.gpu_type or "unknown GPU"
    if offer.backend == "local":
        return str(offer.details.get("device", "cpu"))
    return f"{offer.instance} CPU"


def _offers(backend: Backend, spec: JobSpec) -> list[Offer] | str:
    try:
        return list(backend.offers(spec))
    except LauncherError as exc:
        return str(exc)


def estimate(
    spec: JobSpec,
    backends: Iterable[Backend],
    jobs: JobRegistry | None = None,
    train_images: int | None = None,
    data_bytes: int | None = None,
    dataset: Dataset | None = None,
    images_per_s: float | None = None,
) -> list[Row]:
    """Rows for every offer of every backend given (launcher.backends.registry.installed(): all of them), marked.

    `dataset`: the data's size when the caller found it (a remote dataset, listed).
    `images_per_s`: the job's throughput per GPU (or CPU) as the user measured it; wins over every other figure.
    """
    no_data = spec.data() is None and not train_images  # a program of the user's own that names no data
    data = None if no_data else dataset or dataset_size(spec, train_images, data_bytes)
    if data is not None and data.train_images == 0 and not train_images:  # nothing to count: 0 s is no estimate
        reason = (f"train.data {spec.train.data} holds no images it can count (train/ with .jpg, .png, ...); "
                  "pass --images N (training samples per epoch)")  # fmt: skip
        return [Row(Offer(b.name, "-", spec.resources.gpu_type, spec.resources.gpus, spec.resources.nodes, 0.0),
                    error=reason) for b in backends]  # fmt: skip
    rows: list[Row] = []
    for backend in backends:
        offers = _offers(backend, spec)
        if isinstance(offers, str):
            rows.append(
                Row(
                    Offer(backend.name, "-", spec.resources.gpu_type, spec.resources.gpus, spec.resources.nodes, 0.0),
                    error=offers,
                )
            )
            continue
        rows.extend(_row_for(spec, offer, data, jobs, images_per_s) for offer in offers)
    return mark(rows, spec)


def mark(rows: Sequence[Row], spec: JobSpec) -> list[Row]:
    """Flag rows within limits and mark the cheapest, the fastest and the best within limits."""
    limits = spec.limits
    checked = [replace(r, within_limits=r.ok and _within(r, limits.max_cost, limits.max_runtime)) for r in rows]
    ok = [r for r in checked if r.ok]
    if not ok:
        return checked
    tags: dict[int, list[str]] = {}
    for name, first, then in (("cheapest", _cost, _time), ("fastest", _time, _cost)):
        winners = _best(_best(ok, first), then)  # equally cheap: the faster wins; equally fast: the cheaper
        for r in winners:  # still more than one: a tie, said as one, never one of them picked at random
            tags.setdefault(id(r), []).append(name if len(winners) == 1 else f"{name} (tie)")
    fitting = [r for r in ok if r.within_limits]
    if fitting and (limits.max_cost or limits.max_runtime):
        # a budget alone buys speed; a deadline alone (or both) is met as cheaply as possible
        key = (lambda r: (r.total_s, r.cost)) if not limits.max_runtime else (lambda r: (r.cost, r.total_s))
        tags.setdefault(id(min(fitting, key=key)), []).append("best")
    return [replace(r, marks=tuple(tags.get(id(r), ()))) for r in checked]


def _cost(row: Row) -> float:
    return row.cost


def _time(row: Row) -> float:
    return row.total_s


TIE = 0.005  # rows closer than 0.5% (the table shows no finer difference, the ranges are far wider) tie


def _best(rows: Sequence[Row], key: Callable[[Row], float]) -> list[Row]:
    """The rows whose `key` is the lowest, within TIE of it."""
    low = min(key(r) for r in rows)
    return [r for r in rows if key(r) <= low + max(abs(low) * TIE, 1e-9)]


def _within(row: Row, max_cost: float | None, max_runtime: int | None) -> bool:
    return (max_cost is None or row.cost <= max_cost) and (max_runtime is None or row.total_s <= max_runtime)
