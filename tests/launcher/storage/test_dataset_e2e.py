"""`launch -b local` with `train.data: s3://...` (moto): the entrypoint fetches the data once per node,
the trainer trains on it (node 0 leaves its staging record in the run folder), and a second run reuses the
node-local cache without downloading again."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from launcher.cli import main
from launcher.runtime import datasets
from tests.launcher.storage.conftest import StoreKind


def upload_small_digits(kind: StoreKind, tmp_path: Path, per_class: int = 6) -> str:
    """A few images per class of the shipped digits, as an ImageFolder under a fresh prefix."""
    source = datasets.write_digits(tmp_path / "source")
    store = kind.store()
    for split in ("train", "val"):
        for folder in sorted((source / split).iterdir()):
            for image in sorted(folder.iterdir())[:per_class]:
                store.put(f"{split}/{folder.name}/{image.name}", image)
    return store.uri


@pytest.mark.slow
def test_local_run_trains_on_s3_data_and_reuses_the_cache(
    s3_kind: StoreKind, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in s3_kind.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("LAUNCHER_DATA_DIR", str(tmp_path / "node-cache"))
    uri = upload_small_digits(s3_kind, tmp_path)
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump({
        "name": "s3-data",
        "train": {"model": "shufflenet_v2_x0_5", "data": uri, "epochs": 1, "imgsz": 16, "batch": 16, "workers": 0, "amp": False},
        "checkpoint": {"uri": str(tmp_path / "ckpt")},
        "local": {"runtime": "process", "nproc": 1},
    }))  # fmt: skip
    first = CliRunner().invoke(main, ["run", str(job), "--ignore-budget"], catch_exceptions=False)
    assert first.exit_code == 0, first.output[-3000:]
    assert "training data: fetching 120 of 120 files" in first.output
    assert [p.stat().st_size > 0 for p in (tmp_path / "ckpt" / "s3-data").rglob("last.pt")][:1] == [True]  # it trained
    staged = json.loads((tmp_path / "ckpt" / "s3-data" / "data-progress.json").read_text())  # for `launch status`
    assert (staged["phase"], staged["files"], staged["files_total"], staged["uri"]) == ("staged", 120, 120, uri)

    second = CliRunner().invoke(
        main, ["run", str(job), "--ignore-budget", "--set", "name=s3-data-2"], catch_exceptions=False
    )
    assert second.exit_code == 0, second.output[-3000:]
    assert "training data: reusing 120 cached files" in second.output and "fetching" not in second.output
