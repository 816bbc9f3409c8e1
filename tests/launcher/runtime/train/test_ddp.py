"""A real 2-process DDP run on CPU (gloo) under torchrun."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from launcher.runtime.train import checkpoint
from tests.conftest import REPO
from tests.launcher.runtime.train.conftest import TINY, trainer_env

pytestmark = pytest.mark.slow


def test_two_process_gloo_run(tiny_data: Path, tmp_path: Path) -> None:
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "launcher.runtime.train",
        *TINY,
        f"data={tiny_data}",
        "epochs=2",
        "cache=disk",
        f"save_dir={tmp_path}",
    ]
    done = subprocess.run(
        cmd, cwd=REPO, env=trainer_env(LAUNCHER_SPEC_HASH="ddp"), capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((tmp_path / "results.json").read_text())
    assert result["world_size"] == 2 and result["epochs_run"] == 2
    # 9 validation images over 2 ranks (5 + 4): a padding sampler would count 10
    assert result["val_samples_counted"] == result["val_images"] == 9
    state = checkpoint.load(tmp_path / "last.pt")
    assert state["global_step"] == 2 * 3  # 24 images / 2 ranks / batch 4 = 3 steps per epoch
    assert done.stdout.count("done: best top-1") == 1  # rank 0 alone reports
    assert "2 process(es)" in done.stdout


def test_two_processes_stream_a_packed_dataset_with_one_ram_copy_per_node(tiny_data: Path, tmp_path: Path) -> None:
    """Issue 32: both ranks read one shard cache and one shared `cache: ram` copy, freed at the end."""
    import os

    from launcher.staging.pack import pack

    pack(str(tiny_data), str(tmp_path / "packed"), shard_size=3000)
    shared = Path("/dev/shm") / f"launcher-cache-{os.getuid()}"
    before = set(shared.glob("*")) if shared.is_dir() else set()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "launcher.runtime.train",
           *TINY, f"data={tmp_path / 'packed'}", "epochs=2", "cache=ram", f"save_dir={tmp_path / 'run'}"]  # fmt: skip
    done = subprocess.run(cmd, cwd=REPO, env=trainer_env(LAUNCHER_DATA_DIR=str(tmp_path / "data")), capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "cache=ram: one copy for the node's 2 processes" in done.stdout and "packed dataset" in done.stdout
    result = json.loads((tmp_path / "run" / "results.json").read_text())
    assert result["world_size"] == 2 and result["val_samples_counted"] == result["val_images"] == 9
    assert checkpoint.load(tmp_path / "run" / "last.pt")["global_step"] == 2 * 3  # 24 images / 2 ranks / batch 4
    assert (set(shared.glob("*")) if shared.is_dir() else set()) == before  # the node's copy was freed
