"""An ultralytics-engine sweep through the local backend (process runtime), issue 36: 3 random trials of YOLO11n
from its model YAML on the rendered-shapes dataset at 64 px, the metric Ultralytics' mAP50(B) read from each trial's
results.csv in the store (the column `metrics/mAP50(B)`). 2 epochs on 160 images scored 0 in every trial here
(untrained); 3 epochs on 480 images score above 0 (tests/backends/test_local_ultralytics.py: 0.26-0.28 mAP50)."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest

pytest.importorskip("ultralytics")

from launcher.api import Launcher  # noqa: E402
from launcher.backends.local import LocalBackend  # noqa: E402
from launcher.runtime.datasets import write_shapes  # noqa: E402
from launcher.spec import validate_spec  # noqa: E402
from launcher.state.jobs import JobRegistry  # noqa: E402
from launcher.storage.sync import pull_latest  # noqa: E402


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_three_trial_yolo_sweep_ends_with_the_best_map(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAUNCHER_DATA_DIR", str(tmp_path / "data"))
    data = write_shapes(tmp_path / "shapes", train=480, val=60)
    train = {"engine": "ultralytics", "model": "yolo11n.yaml", "data": str(data), "epochs": 3, "imgsz": 64, "batch": 8,
             "workers": 0, "plots": False, "optimizer": "AdamW", "warmup_epochs": 0, "mosaic": 0.0}  # fmt: skip
    sweep = {"trials": 3, "parallel": 1, "metric": "mAP50(B)", "seed": 1,
             "space": {"train.lr0": {"log_uniform": [3e-3, 2e-2]}}}  # fmt: skip
    spec = validate_spec({"name": "ysw", "train": train, "checkpoint": {"uri": str(tmp_path / "store")},
                          "env": {"OMP_NUM_THREADS": "2"}, "local": {"runtime": "process", "python": sys.executable},
                          "sweep": sweep}, None, tmp_path)  # fmt: skip
    jobs = JobRegistry(tmp_path / "jobs.db")
    launcher = Launcher(backend=LocalBackend(state_dir=tmp_path / "state"), jobs=jobs)
    assert launcher.sweep(spec) == 0
    record = jobs.sweeps()[0]
    trials = jobs.trials(record.id)
    assert record.state == "finished" and [t.state for t in trials] == ["succeeded"] * 3
    assert all(sorted(t.metrics) == ["1", "2", "3"] for t in trials)  # the metric of each epoch, read from the store
    stored = []
    for t in trials:
        pull_latest(str(tmp_path / "store"), f"ysw-t{t.number:03d}", tmp_path / f"t{t.number}")
        with open(tmp_path / f"t{t.number}" / "results.csv", newline="") as f:
            rows = [{k.strip(): v for k, v in row.items()} for row in csv.DictReader(f)]
        assert [float(r["metrics/mAP50(B)"]) for r in rows] == [t.metrics[e] for e in ("1", "2", "3")]
        stored += [float(r["metrics/mAP50(B)"]) for r in rows]
    from launcher.runs.sweep import summary  # noqa: PLC0415

    assert summary(jobs, record.id)["best"]["value"] == max(stored) > 0
    print(record.message)
