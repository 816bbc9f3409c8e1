"""Where a training-speed figure comes from, best source first.

1. measured: `launch profile` ran real steps of this model, image size, batch
   and precision on this device type and stored images/s in the job registry;
2. past runs: finished jobs of the same model on the same device type recorded
   their images/s (scaled by FLOPs when the image size differs);
3. table: the shipped per-GPU figure for a reference model (data/gpus.json,
   every number cited there), scaled by reference GFLOPs / the model's GFLOPs.

Devices are named by GPU type ("A10G", "H100", from data/gpus.json patterns)
so that a profile taken on a local A10G informs the cloud rows with A10G too;
"cpu" is this machine's CPU. The precedence is one ordered tuple (`SOURCES`),
tested on its own.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import re
import statistics
from dataclasses import dataclass
from importlib import resources
from typing import Any, Iterable

from launcher.spec import JobSpec
from launcher.state.jobs import JobRegistry, Throughput

__all__ = [
    "SOURCES",
    "Figure",
    "gpu_table",
    "model_table",
    "canonical_device",
    "precision_of",
    "model_gflops",
    "throughput",
]

# registry source tag -> what the estimate calls it, best first
SOURCES = (("profile", "measured"), ("job", "past runs"))


@dataclass(frozen=True)
class Figure:
    """Training images/s of ONE process (one GPU, or the CPU), and how sure we are."""

    images_per_s: float
    source: str  # "measured", "past runs" or "table"
    detail: str
    uncertainty: float  # relative half-width of the range
    overhead_s: float | None = None  # measured fixed cost of a run on this device (start-up, setup)
    epoch_overhead_s: float | None = None  # measured per-epoch cost beyond the images (loader start, checkpoint)


@functools.lru_cache(maxsize=1)
def gpu_table() -> dict[str, Any]:
    return json.loads(resources.files("launcher.estimate").joinpath("data/gpus.json").read_text())


@functools.lru_cache(maxsize=1)
def model_table() -> dict[str, Any]:
    return json.loads(resources.files("launcher.estimate").joinpath("data/models.json").read_text())


def canonical_device(name: str | None) -> str:
    """'NVIDIA A10G' -> 'A10G', 'Tesla T4' -> 'T4', '' or 'cpu' -> 'cpu'; unknown names are kept."""
    if not name or name.strip().lower() == "cpu":
        return "cpu"
    text = name.strip().upper()
    gpus = gpu_table()["gpus"]
    if text in gpus:
        return text
    # most specific first: 'A100-80GB' before 'A100', 'A10G' before 'A10'
    for key in sorted(gpus, key=lambda k: (-len(k), k)):
        if any(re.search(p, text, re.IGNORECASE) for p in gpus[key]["patterns"]):
            return key
    return name.strip()


def precision_of(spec: JobSpec) -> str:
    return "amp" if spec.train.amp else "fp32"


def model_gflops(model: str, imgsz: int) -> float | None:
    """Forward GFLOPs of a torchvision model at `imgsz` px, or None when unknown.

    The shipped table (generated from torchvision's weight metadata) is read
    first so that `launch estimate` and the budget check do not pay for
    importing torch; torchvision itself is asked only for models missing there.
    """
    if re.match(r"^(yolo|rtdetr).*\.(ya?ml|pt)$", model, re.IGNORECASE):
        return _yolo_gflops(model, imgsz)
    entry = model_table()["models"].get(model) or _torchvision_entry(model)
    if entry is None:
        return None
    return entry["gflops"] * (imgsz / entry["at_px"]) ** 2


@functools.lru_cache(maxsize=64)
def _yolo_gflops(model: str, imgsz: int) -> float | None:
    """A YOLO model's GFLOPs at `imgsz`, built from its model YAML by Ultralytics (the `ultralytics` extra;
    None without it). Through the engine adapter, the one module that imports Ultralytics."""
    if importlib.util.find_spec("ultralytics") is None:
        return None
    from launcher.runtime.train.ultralytics_engine import model_gflops as yolo  # noqa: PLC0415

    return yolo(model, imgsz)


@functools.lru_cache(maxsize=64)
def _torchvision_entry(model: str) -> dict[str, Any] | None:
    if importlib.util.find_spec("torchvision") is None:
        return None
    from torchvision.models import get_model_weights  # noqa: PLC0415

    try:
        weights = get_model_weights(model).DEFAULT
    except (ValueError, KeyError, AttributeError):
        return None
    ops = weights.meta.get("_ops")
    crop = getattr(weights.transforms(), "crop_size", [224])
    return {"gflops": float(ops), "at_px": int(crop[0])} if ops else None


GIVEN_UNCERTAINTY = 0.25  # a figure the user read off a run of their own program (`--images-per-s`)


def throughput(
    spec: JobSpec, device: str, jobs: JobRegistry | None = None, given: float | None = None, cpus: int | None = None
) -> Figure | None:
    """The best figure for `spec` on `device` (a GPU type or 'cpu'), or None when there is none.

    `given` (`launch estimate --images-per-s`) wins. A program of the user's own (`command:`) has no
    other figure: the profile, past runs and the tables all measure the built-in trainers. On this machine's
    CPU (`cpus`: the usable cores the local offer counted) the last resort is the rough per-core figure."""
    if given:
        return Figure(given, "given", "--images-per-s", GIVEN_UNCERTAINTY)
    if spec.command:
        return None
    device = canonical_device(device)
    records = jobs.throughputs(model=spec.train.model, device=device) if jobs is not None else []
    if device == "cpu":
        return _from_records(spec, records) or _from_cpu_table(spec, cpus)
    return _from_records(spec, records) or _from_table(spec, device)


def _from_records(spec: JobSpec, records: Iterable[Throughput]) -> Figure | None:
    measured = [r for r in records if r.images_per_s > 0]
    records = [r for r in measured if r.precision == precision_of(spec)]
    if not records and measured and all(r.device == "cpu" for r in measured):
        # On a CPU without native bf16 the trainer runs `amp: true` in fp32 (launcher.runtime.train.loop.pick_precision),
        # so a CPU record's precision is what really ran: it still measures this job.
        records = measured
    for tag, label in SOURCES:
        mine = [r for r in records if r.source == tag]
        exact = [
            r for r in mine if r.imgsz == spec.train.image_size and spec.train.batch_size in (r.batch, -1)
        ]  # -1: AutoBatch
        if exact:
            return _figure(exact, label, spec, scaled=False)
    for tag, label in SOURCES:  # same model and device, other image size or batch: scale by FLOPs
        mine = [r for r in records if r.source == tag]
        if mine:
            return _figure(mine, label, spec, scaled=True)
    return None


def _figure(records: list[Throughput], label: str, spec: JobSpec, scaled: bool) -> Figure:
    base = gpu_table()["uncertainty"][label]
    if label == "measured":
        chosen = [records[0]]  # the latest profile: the machine may have changed since older ones
    else:
        chosen = records[:5]
    values = [_scaled(r, spec) if scaled else r.images_per_s for r in chosen]
    ips = statistics.median(values)
    spread = (max(values) - min(values)) / (2 * ips) if len(values) > 1 else 0.0
    overheads = _details(chosen, "overhead_s")
    per_epoch = _details(chosen, "epoch_overhead_s")
    what = "profile" if label == "measured" else f"{len(chosen)} past run(s)"
    detail = f"{what} of {spec.train.model} on {chosen[0].device}" + (
        f" at {chosen[0].imgsz}px/batch {chosen[0].batch}, scaled by FLOPs" if scaled else ""
    )
    uncertainty = max(base, spread) + (0.1 if scaled else 0.0)
    return Figure(
        ips, label, detail, uncertainty,
        statistics.median(overheads) if overheads else None, statistics.median(per_epoch) if per_epoch else None,
    )  # fmt: skip


def _details(records: list[Throughput], key: str) -> list[float]:
    return [float(r.details[key]) for r in records if r.details and r.details.get(key) is not None]


def _scaled(record: Throughput, spec: JobSpec) -> float:
    have = model_gflops(record.model, record.imgsz)
    want = model_gflops(spec.train.model, spec.train.image_size)
    return record.images_per_s * (have / want) if have and want else record.images_per_s


def _from_table(spec: JobSpec, device: str) -> Figure | None:
    table = gpu_table()
    entry = table["gpus"].get(device)
    gflops = model_gflops(spec.train.model, spec.train.image_size)
    if entry is None or gflops is None:
        return None
    ref = table["reference"]
    ips = entry[precision_of(spec)] * ref["gflops"] / gflops
    kind = "derived" if entry["source"] == "derived" else "table"
    detail = (
        f"{ref['model']} {entry[precision_of(spec)]} img/s on {device} ({entry['source']}: {', '.join(entry['cite'])}),"
        f" x {ref['gflops']:.2f}/{gflops:.2f} GFLOPs"
    )
    return Figure(ips, "table", detail, table["uncertainty"][kind])


def _from_cpu_table(spec: JobSpec, cpus: int | None) -> Figure | None:
    """The built-in trainer on this machine's CPU, before `launch profile`: the figure per core measured on one
    CPU (data/gpus.json `cpu`, with how, where and when), times the cores here, scaled by FLOPs. Rough, and said so."""
    entry = gpu_table().get("cpu")
    if entry is None or spec.train.engine != "builtin":
        return None  # the figure is the built-in trainer's; a YOLO model on a CPU is another workload
    have, want = model_gflops(entry["model"], entry["imgsz"]), model_gflops(spec.train.model, spec.train.image_size)
    if not have or not want:
        return None
    if not cpus:
        return None  # the local offer says how many cores the job gets here (estimate/local.py)
    cores = cpus
    per_core = entry[precision_of(spec)]
    scaled = (
        f", x {have / want:.3g} by GFLOPs ({spec.train.model} at {spec.train.image_size}px)" if have != want else ""
    )
    detail = (
        f"rough: {entry['model']} at {entry['imgsz']}px ran {per_core} img/s per core on {entry['cpu']} "
        f"({entry['date']}), x {cores} core(s) here{scaled}"
    )
    return Figure(per_core * cores * have / want, "rough", detail, gpu_table()["uncertainty"]["rough"])
