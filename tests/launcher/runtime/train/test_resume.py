"""Real interruptions: SIGKILL and SIGTERM mid-epoch, then resume, against an uninterrupted run.

Each run is a separate `python -m launcher.runtime.train` process with the same seed;
the interrupted one is stopped while epoch 2 is in progress (seen on its
progress output), restarted with the same arguments, and must end with the
same weights and the same metrics as the run that was never interrupted.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
import torch

from launcher.runtime.train import checkpoint
from tests.launcher.runtime.train.conftest import TINY, run_trainer, start_trainer

pytestmark = pytest.mark.slow


def _args(data: Path, save_dir: Path, workers: int = 0, cache: str = "ram") -> list[str]:
    args = [a for a in TINY if not a.startswith("workers=")]
    return [*args, f"workers={workers}", f"data={data}", "epochs=3", "seed=7", f"cache={cache}", f"save_dir={save_dir}"]


def _interrupt_in_epoch_2(args: list[str], sig: int) -> tuple[int, str]:
    proc = start_trainer(args)
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("epoch 2/3") and " 2/6 " in line:  # two of six steps of epoch 2 done
            os.killpg(proc.pid, sig)  # what torchrun does: the rank and its DataLoader workers
            break
    rest, _ = proc.communicate(timeout=120)
    return proc.returncode, "".join(lines) + rest


def _assert_same_result(a: Path, b: Path) -> None:
    sa, sb = checkpoint.load(a / "last.pt"), checkpoint.load(b / "last.pt")
    for part in ("model", "ema"):
        da = sa[part] if part == "model" else sa[part]["module"]
        db = sb[part] if part == "model" else sb[part]["module"]
        assert da.keys() == db.keys()
        for k in da:
            assert torch.equal(da[k], db[k]), f"{part}.{k} differs"
    assert sa["global_step"] == sb["global_step"] == 18
    cols = lambda p: [line.split(",")[:6] for line in (p / "results.csv").read_text().splitlines()]  # noqa: E731
    assert cols(a) == cols(b)  # losses, top-1, top-5 and lr of every epoch


@pytest.fixture(scope="module")
def reference(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("reference")
    done = run_trainer(_args(tiny_data, out))
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def test_sigkill_mid_epoch_loses_only_the_unfinished_epoch(tiny_data: Path, tmp_path: Path, reference: Path) -> None:
    code, output = _interrupt_in_epoch_2(_args(tiny_data, tmp_path), signal.SIGKILL)
    assert code == -signal.SIGKILL, output
    state = checkpoint.load(tmp_path / "last.pt")
    assert (state["epoch"], state["step_in_epoch"]) == (1, 0)  # epoch 1 kept; epoch 2 redone
    resumed = run_trainer(_args(tiny_data, tmp_path))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resuming from" in resumed.stdout and "epoch 2, step 0 of 6" in resumed.stdout
    _assert_same_result(reference, tmp_path)


def test_sigterm_mid_epoch_saves_at_once_and_loses_nothing(tiny_data: Path, tmp_path: Path, reference: Path) -> None:
    # a DataLoader worker (cache=false: workers decode the files) also gets the signal, as under torchrun;
    # the reference run read a RAM cache: the same pixels must give the same weights
    args = _args(tiny_data, tmp_path, workers=1, cache="false")
    code, output = _interrupt_in_epoch_2(args, signal.SIGTERM)
    assert code == 143, output
    assert "stopped by SIGTERM" in output and "1 workers" in output
    state = checkpoint.load(tmp_path / "last.pt")
    assert state["epoch"] == 1 and state["step_in_epoch"] >= 2  # saved mid-epoch, at the step it stopped
    resumed = run_trainer(args)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"epoch 2, step {state['step_in_epoch']} of 6" in resumed.stdout
    _assert_same_result(reference, tmp_path)


def test_bad_arguments_exit_2_with_one_line(tmp_path: Path) -> None:
    done = run_trainer(["epoch=3", f"save_dir={tmp_path}"])
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "[train] error: train.epoch: unknown key 'epoch'; did you mean 'epochs'?"
    ]
    assert not isinstance(done, subprocess.TimeoutExpired)
