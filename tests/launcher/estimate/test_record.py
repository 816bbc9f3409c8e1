from __future__ import annotations

import json

import pytest

from launcher.errors import LauncherError
from launcher.estimate.record import record_results
from launcher.plan import JobRef
from launcher.state.jobs import JobRegistry

from .fakes import spec

RESULTS = {"images_per_s": 250.0, "wall_time_s": 90.0, "device": "NVIDIA A10G", "precision": "bf16",
           "batch": 32, "imgsz": 224, "model": "resnet50", "epochs": 10}  # fmt: skip


def test_records_throughput_metrics_and_overhead(tmp_path) -> None:
    jobs = JobRegistry(tmp_path / "j.db")
    s = spec(epochs=10)
    jobs.add(JobRef("job-1", "local", "job-1"), s.name, s.model_dump(mode="json"), "h")
    (tmp_path / "results.json").write_text(json.dumps(RESULTS))
    record = record_results(jobs, "job-1", tmp_path)
    assert (record.device, record.precision, record.source) == ("A10G", "amp", "job")
    (stored,) = jobs.throughputs(model="resnet50", device="A10G")
    assert stored.images_per_s == 250.0 and stored.job_id == "job-1"
    work = 1437 * 10 / 250 + 360 * 10 / (250 * 3)
    assert stored.details["overhead_s"] == pytest.approx(90.0 - work, abs=1e-3)
    assert jobs.get("job-1").metrics == {"images_per_s": 250.0, "wall_time_s": 90.0}


def test_reads_the_trainers_own_field_names(tmp_path) -> None:
    jobs = JobRegistry(tmp_path / "j.db")
    trainer = {"images_per_second": 800.0, "images_per_second_per_process": 400.0, "world_size": 2, "device": "cuda",
               "device_name": "NVIDIA L4", "precision": "bf16", "batch": 64, "imgsz": 32, "model": "resnet18",
               "epochs_run": 2, "train_images": 1600, "val_images": 400, "wall_time_s": 20.0}  # fmt: skip
    record = record_results(jobs, None, trainer)
    assert (record.images_per_s, record.device, record.precision) == (400.0, "L4", "amp")
    # per process: 800 train and 200 val images per epoch, 2 epochs
    work = 2 * (800 / 400 + 200 / (400 * 3))
    assert record.details["overhead_s"] == pytest.approx(20.0 - work, abs=1e-3)


def test_results_of_an_unregistered_run_still_count(tmp_path) -> None:
    jobs = JobRegistry(tmp_path / "j.db")
    record_results(jobs, "not-registered", {**RESULTS, "device": "cpu", "precision": "fp32"})
    (stored,) = jobs.throughputs(device="cpu")
    assert stored.precision == "fp32" and "overhead_s" not in stored.details


def test_incomplete_results_are_refused(tmp_path) -> None:
    jobs = JobRegistry(tmp_path / "j.db")
    with pytest.raises(LauncherError, match="images_per_s"):
        record_results(jobs, None, {k: v for k, v in RESULTS.items() if k != "images_per_s"})
    with pytest.raises(LauncherError, match="No training results"):
        record_results(jobs, None, tmp_path / "nowhere")
