"""Tiny real ImageFolder datasets and helpers to run the trainer in and out of process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from tests.conftest import REPO

# a small model with BatchNorm; 16 px images keep a step well under a second on 2 shared cores
TINY = ["model=shufflenet_v2_x0_5", "imgsz=16", "batch=4", "workers=0", "warmup_epochs=0.5", "amp=false"]


def make_imagefolder(
    root: Path, classes: int = 3, train: int = 8, val: int = 3, size: int = 12, ext: str = ".png"
) -> Path:
    """Class k is a noisy image whose brightness and stripe direction depend on k: learnable, not trivial."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", train), ("val", val)):
        for k in range(classes):
            folder = root / split / f"class{k}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                base = np.full((size, size + 2, 3), 40 + 70 * k, dtype=np.float64)
                base[:, :: 2 + k] += 60
                pixels = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i:03d}{ext}")
    return root


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_imagefolder(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(autouse=True)
def _caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("LAUNCHER_CACHE_DIR", str(tmp_path / "image-cache"))
    monkeypatch.setenv("LAUNCHER_DATA_DIR", str(tmp_path / "datasets"))
    monkeypatch.delenv("LAUNCHER_SAVE_DIR", raising=False)
    monkeypatch.delenv("LAUNCHER_SPEC_HASH", raising=False)
    yield


def trainer_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RANK", "WORLD_SIZE", "LOCAL_", "MASTER_"))}
    env.update(PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", PYTHONPATH=str(REPO), **extra)
    return env


def start_trainer(args: list[str], **extra_env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "launcher.runtime.train", *args],
        cwd=REPO,
        env=trainer_env(**extra_env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, as torchrun starts each rank
    )


def run_trainer(args: list[str], timeout: float = 300, **extra_env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "launcher.runtime.train", *args],
        cwd=REPO,
        env=trainer_env(**extra_env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


CSV_METRICS = ["train_loss", "val_loss", "top1", "top5", "lr", "time_s", "images_per_s"]


def tiny_config(data: Path, **kw: object):  # type: ignore[no-untyped-def]
    """A TrainConfig for TINY on `data` (2 epochs unless told otherwise)."""
    from launcher.spec import TrainConfig

    base: dict[str, object] = dict(item.split("=", 1) for item in TINY)
    base.update(data=str(data), epochs=2)
    base.update(kw)
    return TrainConfig.model_validate(base)


def fit_on_cpu(cfg, save_dir: Path) -> str:  # type: ignore[no-untyped-def]
    """Train in this process on the CPU; the trainer's output. Fails the test on a non-zero exit."""
    import io

    import torch

    from launcher.runtime.train.dist import Dist
    from launcher.runtime.train.loop import Trainer

    out = io.StringIO()
    assert Trainer(cfg, save_dir, Dist(device=torch.device("cpu")), out=out).fit() == 0, out.getvalue()
    return out.getvalue()
