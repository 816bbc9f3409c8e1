"""The ultralytics engine through the launcher vs plain `yolo detect train` with the same arguments (issue 25).

    python benchmarks/bench_ultralytics.py [--epochs 3] [--rounds 1]

Both train YOLO11n from its model YAML on the same rendered-shapes dataset (launcher.runtime.datasets.
write_shapes: 480 train / 60 val images of 64 px) on this machine's CPU with the same Ultralytics
arguments and the same offline settings; the launcher's run goes through `Launcher` and the local backend
(process runtime: entrypoint, checkpoint sync to a local store). Epoch time is read from each run's own
results.csv (Ultralytics' `time` column), without the first epoch (warm-up); the ratio printed is plain
epoch time / launcher epoch time (1.0 = the launcher adds nothing; the target is >= 0.95).
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ARGS = {"imgsz": 64, "batch": 8, "workers": 0, "plots": False, "optimizer": "AdamW", "lr0": 0.01,
        "warmup_epochs": 0, "mosaic": 0.0}  # fmt: skip


def epoch_times(results: Path) -> list[float]:
    with open(results, newline="") as f:
        total = [float(r["time"]) for r in csv.DictReader(f)]
    return [t - p for p, t in zip([0.0, *total], total)]


def through_launcher(work: Path, data: Path, epochs: int) -> list[float]:
    from launcher.api import Launcher
    from launcher.backends.local import LocalBackend
    from launcher.spec import validate_spec
    from launcher.storage.sync import pull_latest

    name = f"bench-yolo-{int(time.time())}"
    keys = {"name": name, "train": {"engine": "ultralytics", "model": "yolo11n.yaml", "data": str(data), "epochs": epochs, **ARGS},
            "checkpoint": {"uri": str(work / "store")}, "local": {"runtime": "process", "python": sys.executable}}  # fmt: skip
    job = Launcher(backend=LocalBackend(state_dir=work / "state")).submit(validate_spec(keys, None, work))
    status = job.wait(poll=1.0)
    if status.exit_code != 0:
        sys.exit("the launcher's run failed:\n" + "\n".join(job.logs())[-3000:])
    pull_latest(str(work / "store"), name, work / "pulled")
    return epoch_times(work / "pulled" / "results.csv")


def plain(work: Path, data: Path, epochs: int) -> list[float]:
    from launcher.runtime.train.ultralytics_engine import offline_environment, yolo_data

    yaml_file = yolo_data(str(data), "detect", work / "plain-data")
    args = [f"{k}={v}" for k, v in {**ARGS, "epochs": epochs}.items()]
    env = {**os.environ, **offline_environment(os.environ)}
    cli = Path(sys.executable).with_name("yolo")
    subprocess.run([str(cli), "detect", "train", "model=yolo11n.yaml", f"data={yaml_file}", *args, "device=cpu",
                    f"project={work}", "name=plain", "exist_ok=True"], env=env, check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    return epoch_times(work / "plain" / "results.csv")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=1)
    opts = parser.parse_args()
    from launcher.runtime.datasets import write_shapes

    with tempfile.TemporaryDirectory(prefix="bench-yolo-") as tmp:
        work = Path(tmp)
        os.environ.setdefault("LAUNCHER_DATA_DIR", str(work / "cache"))
        data = write_shapes(work / "shapes", train=480, val=60)
        ratios = []
        for i in range(opts.rounds):
            ours = statistics.mean(through_launcher(work / f"l{i}", data, opts.epochs)[1:])
            theirs = statistics.mean(plain(work / f"p{i}", data, opts.epochs)[1:])
            ratios.append(theirs / ours)
            print(
                f"round {i + 1}: launcher {ours:.2f} s/epoch, plain yolo {theirs:.2f} s/epoch, ratio {theirs / ours:.3f}"
            )
        print(f"epoch time ratio (plain / launcher): median {statistics.median(ratios):.3f} of {len(ratios)} round(s)")


if __name__ == "__main__":
    main()
