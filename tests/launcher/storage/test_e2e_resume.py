"""End to end: train 2 epochs through the container entrypoint with checkpoints on an S3 server,
then start a fresh run (new local folder, as on another machine) for epochs=4: it pulls the
checkpoint and continues from epoch 2.

Runs the real trainer as a process (no Docker) on digits at 16 px with torchvision's smallest
classifier (shufflenet_v2_x0_5: 6 MB checkpoints, where resnet18's are 179 MB and this test
wrote 3 GB); under a minute on a laptop CPU, so it is marked slow.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from launcher.storage.sync import pull
from tests.launcher.storage.conftest import REPO_ROOT, StoreKind, subprocess_env

pytestmark = pytest.mark.slow

TRAIN = ["model=shufflenet_v2_x0_5", "data=digits", "imgsz=16", "batch=64", "fraction=0.1", "workers=0", "amp=false",
         "warmup_epochs=0", "save_period=1"]  # fmt: skip


def run_entrypoint(kind: StoreKind, uri: str, save_dir: Path, epochs: int, tmp_path: Path) -> str:
    cmd = [sys.executable, "-m", "launcher.runtime.entrypoint", "--run-name", "e2e", "--checkpoint-uri", uri,
           "--save-dir", str(save_dir), "--keep", "2", "--spec-hash", "e2e-hash", "--",
           "train", *TRAIN, f"epochs={epochs}"]  # fmt: skip
    env = {**subprocess_env(kind), "LAUNCHER_DATA_DIR": str(tmp_path / "data"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    return out


def test_train_two_epochs_then_resume_elsewhere_to_four(s3_kind: StoreKind, tmp_path: Path) -> None:
    pytest.importorskip("torchvision")
    uri = s3_kind.uri("e2e-ckpts")
    first = run_entrypoint(s3_kind, uri, tmp_path / "machine-a", 2, tmp_path)
    assert "no complete checkpoint" in first
    store = s3_kind.store("e2e-ckpts/e2e")
    after_two = pull(store, tmp_path / "check-2").manifest
    assert after_two.epoch == 2 and after_two.spec_hash == "e2e-hash" and "last.pt" in after_two.files

    second = run_entrypoint(s3_kind, uri, tmp_path / "machine-b", 4, tmp_path)
    assert f"resuming from checkpoint {after_two.version} (epoch 2)" in second
    assert "resuming from" in second and "epoch 3," in second  # the trainer continues with its 3rd epoch
    assert "epoch 1/4" not in second and "epoch 3/4" in second
    final = pull(store, tmp_path / "check-4").manifest
    assert final.epoch == 4 and final.version > after_two.version
    rows = (tmp_path / "check-4" / "results.csv").read_text().strip().splitlines()
    assert [row.split(",")[0] for row in rows[1:]] == ["1", "2", "3", "4"]
    assert final.files["epoch-1.pt"] == after_two.files["epoch-1.pt"]  # unchanged files were not re-sent
