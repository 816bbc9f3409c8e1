"""`launch status` progress from a cloud store: the newest complete manifest's results.csv, on every store kind."""

from __future__ import annotations

from pathlib import Path

import pytest

from launcher.runs.progress import read_progress
from launcher.runtime.train import report
from launcher.storage import open_store
from launcher.storage.sync import push
from tests.launcher.storage.conftest import StoreKind


def _results(folder: Path, epochs: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "last.pt").write_bytes(b"weights")
    for e in range(1, epochs + 1):
        report.append_row(
            folder / "results.csv",
            {
                "epoch": e,
                "train_loss": 1 / e,
                "val_loss": 1 / e,
                "top1": [0.5, 0.8, 0.7][e - 1],
                "top5": 1.0,
                "lr": 0.01,
                "time_s": 10.0 * e,
                "images_per_s": 100.0,
            },
        )


def test_progress_is_read_from_the_newest_manifest(kind: StoreKind, tmp_path: Path) -> None:
    spec = {"checkpoint": {"uri": kind.uri("runs")}, "train": {"epochs": 10}}
    opener = lambda uri: open_store(uri, **kind.client_kwargs())  # noqa: E731
    assert read_progress(spec, "r1", finished=False, open_store_fn=opener) is None  # nothing synced yet
    folder = tmp_path / "run"
    _results(folder, 2)
    push(opener(kind.uri("runs/r1")), folder)
    _results(folder, 3)  # epoch 3 is in the folder but not synced yet: the store still says 2
    progress = read_progress(spec, "r1", finished=False, open_store_fn=opener)
    assert progress is not None
    assert (progress.epoch, progress.epochs, progress.best_top1) == (2, 10, 0.8)
    assert progress.eta_s == pytest.approx(8 * 15.0)  # 8 epochs left at the mean 15 s per epoch
    assert "checkpoint 1" in progress.source
