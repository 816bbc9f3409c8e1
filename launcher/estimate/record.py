"""Recording what a finished job measured, so later estimates use it.

The trainer writes `<save_dir>/results.json` with images_per_s, wall_time_s,
device, precision, batch, imgsz, model and epochs. `record_results` stores the
throughput in the job registry (source "job", read back as "past runs") and
the figures as the job's metrics. When the job's spec is known it also stores
the run's fixed overhead (wall time minus the modelled training and
validation time), which calibrates the local row's start-up term.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

from launcher.errors import JobNotFoundError, LauncherError
from launcher.estimate.model import dataset_size
from launcher.estimate.throughput import canonical_device, gpu_table
from launcher.spec import JobSpec
from launcher.state.jobs import JobRegistry, Throughput

__all__ = ["record_results", "read_results", "REQUIRED"]

REQUIRED = ("device", "batch", "imgsz", "model")


def read_results(source: str | os.PathLike[str] | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(source, Mapping):
        return dict(source)
    path = Path(source)
    if path.is_dir():
        path = path / "results.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise LauncherError(f"No training results at {path}.", "Check the job's save_dir.") from None
    except json.JSONDecodeError as exc:
        raise LauncherError(f"{path} is not valid JSON ({exc}).", "Re-run the job to rewrite it.") from None


def per_process_images_per_s(data: Mapping[str, Any]) -> float | None:
    """Images/s of one process: the trainer reports the global rate and the per-process one."""
    for key in ("images_per_second_per_process", "images_per_s"):
        if data.get(key):
            return float(data[key])
    if data.get("images_per_second"):
        return float(data["images_per_second"]) / max(int(data.get("world_size") or 1), 1)
    return None


def device_of(data: Mapping[str, Any]) -> str:
    """'cuda' says nothing about the GPU: the trainer's device_name does ('NVIDIA A10G')."""
    device = str(data.get("device") or "cpu")
    if device.lower().startswith("cuda") and data.get("device_name"):
        return canonical_device(str(data["device_name"]))
    return canonical_device(device)


def record_results(
    jobs: JobRegistry, job_id: str | None, results: str | os.PathLike[str] | Mapping[str, Any]
) -> Throughput:
    """Store a finished job's measured throughput (and metrics, when the job is registered)."""
    data = read_results(results)
    ips = per_process_images_per_s(data)
    missing = [k for k in REQUIRED if data.get(k) in (None, "")] + (["images_per_s"] if ips is None else [])
    if missing:
        raise LauncherError(
            f"The training results lack {', '.join(missing)}.", "Use a trainer that writes them to results.json."
        )
    details: dict[str, Any] = {k: data[k] for k in ("wall_time_s", "epochs", "epochs_run", "device_name") if k in data}
    overhead = _overhead(jobs, job_id, data, ips)
    if overhead is not None:
        details["overhead_s"] = round(overhead, 3)
    record = Throughput(
        model=str(data["model"]), imgsz=int(data["imgsz"]), batch=int(data["batch"]),
        precision=_precision(data.get("precision")), device=device_of(data),
        images_per_s=ips, source="job", job_id=job_id, details=details,
    )  # fmt: skip
    jobs.add_throughput(record)
    if job_id:
        try:
            jobs.add_metrics(job_id, {"images_per_s": ips, **{k: data[k] for k in ("wall_time_s",) if k in data}})
        except JobNotFoundError:
            pass  # results of a run the registry never saw (e.g. the trainer run by hand): keep the throughput only
    return record


def _precision(value: Any) -> str:
    """The registry keys precision as 'amp' or 'fp32'; trainers may say bf16, fp16, mixed ..."""
    text = str(value or "fp32").lower()
    return "fp32" if text in ("fp32", "float32", "32", "false", "none", "tf32") else "amp"


def _overhead(jobs: JobRegistry, job_id: str | None, data: Mapping[str, Any], ips: float) -> float | None:
    """Wall time minus modelled training and validation: start-up, setup and per-epoch costs.

    The trainer's wall_time_s starts once it is imported, so this misses the
    interpreter and torchrun start; a `launch profile` figure includes them.
    """
    if "wall_time_s" not in data:
        return None
    counts = _image_counts(jobs, job_id, data)
    if counts is None:
        return None
    train, val, epochs = counts

    work = epochs * (train / ips + val / (ips * gpu_table()["validation_speedup"]))
    return max(0.0, float(data["wall_time_s"]) - work)


def _image_counts(jobs: JobRegistry, job_id: str | None, data: Mapping[str, Any]) -> tuple[float, float, int] | None:
    """(train images per epoch per process, val images per process, epochs) from the results or the job's spec."""
    world = max(int(data.get("world_size") or 1), 1)
    epochs = int(data.get("epochs_run") or data.get("epochs") or 0)
    if data.get("train_images") is not None and epochs:
        return float(data["train_images"]) / world, float(data.get("val_images") or 0) / world, epochs
    if not job_id:
        return None

    try:
        spec = JobSpec.model_validate(jobs.get(job_id).spec)
    except (JobNotFoundError, ValueError):
        return None
    size = dataset_size(spec)
    if size is None:
        return None
    return size.train_images * spec.train.fraction / world, size.val_images / world, epochs or spec.train.epochs
