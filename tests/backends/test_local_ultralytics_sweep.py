"""An ultralytics-engine sweep through the local backend (process runtime), issue 36: 3 trials of YOLO11n from its
model YAML on the rendered-shapes dataset at 64 px with `method: ultralytics` (Ultralytics' tuner space and mutation,
seeded): trial 1 the spec's own values, trials 2 and 3 mutations of the trials before them. The metric is
Ultralytics' mAP50(B) read from each trial's results.csv in the store (the column `metrics/mAP50(B)`). 2 epochs on
160 images scored 0 in every trial here (untrained); 3 epochs on 480 images score above 0
(tests/backends/test_local_ultralytics.py: 0.26-0.28 mAP50)."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest

pytest.importorskip("ultralytics")

from launcher.api import Launcher  # noqa: E402
from launcher.backends.local import LocalBackend  # noqa: E402
from launcher.runtime.datasets import write_shapes  # noqa: E402
from launcher.spec import JobSpec, validate_spec  # noqa: E402
from launcher.spec.job import next_values  # noqa: E402
from launcher.spec.sweep import describe  # noqa: E402
from launcher.state.jobs import JobRegistry  # noqa: E402
from launcher.storage.sync import pull_latest  # noqa: E402


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_three_trial_yolo_sweep_ends_with_the_best_map(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAUNCHER_DATA_DIR", str(tmp_path / "data"))
    data = write_shapes(tmp_path / "shapes", train=480, val=60)
    train = {"engine": "ultralytics", "model": "yolo11n.yaml", "data": str(data), "epochs": 3, "imgsz": 64, "batch": 8,
             "workers": 0, "plots": False, "optimizer": "AdamW", "lr0": 0.005, "warmup_epochs": 0, "mosaic": 0.0}  # fmt: skip
    sweep = {"method": "ultralytics", "trials": 3, "parallel": 1, "metric": "mAP50(B)", "seed": 1}
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
    recorded = JobSpec.model_validate(record.spec)  # Ultralytics' space, as recorded with the sweep
    assert "train.momentum" in recorded.sweep.space and "train.copy_paste" not in recorded.sweep.space  # detect
    assert trials[0].params["train.lr0"] == 0.005 and trials[0].params["train.mosaic"] == 0.0  # the spec's own
    for n in (2, 3):  # parallel 1: each from every trial before it
        before = trials[: n - 1]
        results = [(max(t.metrics.values()), t.params) for t in before]
        assert trials[n - 1].params == next_values(recorded, n, results, [t.params for t in before])
    for t in trials:
        print(t.number, t.metrics, describe(t.params))
    print(record.message)
