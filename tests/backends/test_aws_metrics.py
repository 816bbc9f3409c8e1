"""SageMaker's MetricDefinitions against the real trainer's output.

SageMaker applies each definition's regex to every line the container prints
and plots the first group (https://docs.aws.amazon.com/sagemaker/latest/dg/training-metrics.html).
Here the trainer really runs (digits, a tenth of it, 16 px, 2 epochs) and
each regex of the planned request must find one value per epoch, equal to
results.csv (as rounded in the log line), and nothing in the progress lines.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from launcher.backends.aws import SageMakerBackend
from launcher.catalog import load_catalog
from launcher.runtime.train import report
from launcher.spec import JobSpec
from tests.conftest import REPO

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/torch-launcher-train@sha256:" + "0" * 64
TRAIN = [
    "data=digits",
    "fraction=0.1",
    "epochs=2",
    "imgsz=16",
    "model=shufflenet_v2_x0_5",
    "batch=16",
    "workers=0",
    "amp=false",
    "warmup_epochs=0.5",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], Path]:
    tmp = tmp_path_factory.mktemp("sm-metrics")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("RANK", "WORLD_SIZE", "LOCAL_", "MASTER_", "WANDB_", "MLFLOW_"))
    }
    env.update(
        PYTHONUNBUFFERED="1",
        OMP_NUM_THREADS="1",
        PYTHONPATH=str(REPO),
        LAUNCHER_DATA_DIR=str(tmp / "data"),
        LAUNCHER_CACHE_DIR=str(tmp / "cache"),
    )
    done = subprocess.run(
        [sys.executable, "-m", "launcher.runtime.train", *TRAIN, f"save_dir={tmp / 'run'}"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return (done.stdout + done.stderr).splitlines(), tmp / "run"


def _definitions() -> list[dict[str, str]]:
    spec = JobSpec.model_validate(
        {
            "name": "digits",
            "image": IMAGE,
            "train": {"data": "digits"},
            "aws": {"region": "us-east-1", "role_arn": "arn:aws:iam::123456789012:role/R"},
        }
    )
    request = SageMakerBackend(catalog=load_catalog("aws")).plan(spec, "digits-1").request()
    return request["AlgorithmSpecification"]["MetricDefinitions"]


def test_every_metric_definition_reads_the_trainers_epoch_lines(trained: tuple[list[str], Path]) -> None:
    lines, run = trained
    rows = report.read_rows(run / "results.csv")
    assert len(rows) == 2
    definitions = _definitions()
    names = {d["Name"] for d in definitions}
    assert names == {"epoch", "train_loss", "val_loss", "top1", "top5", "lr", "time_s", "images_per_s", "gpu_mem_gib"}
    for d in definitions:
        values = [float(m.group(1)) for line in lines if (m := re.search(d["Regex"], line))]
        if d["Name"] == "gpu_mem_gib":
            assert values == []  # a CPU run prints no GPU memory
            continue
        expected = [r[d["Name"]] for r in rows]
        # the log line keeps 4 decimals (6 significant digits for lr, 2 decimals for time and speed)
        assert values == pytest.approx(expected, rel=1e-4, abs=0.006), d["Name"]


def test_progress_lines_match_no_definition(trained: tuple[list[str], Path]) -> None:
    lines, _ = trained
    progress = [line for line in lines if line.startswith("epoch ") and " img/s" in line]
    assert progress  # the per-step lines exist, and they carry loss and lr too
    for d in _definitions():
        assert not [line for line in progress if re.search(d["Regex"], line)], d["Name"]
