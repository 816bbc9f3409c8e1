from __future__ import annotations

from pathlib import Path

import pytest

from launcher.errors import LauncherError
from launcher.runtime.train.config import DEFAULT_SAVE_DIR, parse_args
from launcher.spec import TrainConfig


def test_to_args_round_trips_every_knob() -> None:
    cfg = TrainConfig(
        model="resnet18", batch=-1, cache="disk", pretrained="/w/00.pt", fraction=0.5, multi_scale=True, data="/d/1"
    )
    parsed, save_dir = parse_args([*cfg.to_args(), "save_dir=/tmp/out"], environ={})
    assert parsed == cfg
    assert save_dir == Path("/tmp/out")


def test_cache_false_and_save_dir_from_environment() -> None:
    cfg, save_dir = parse_args(["cache=false", "epochs=3"], environ={"LAUNCHER_SAVE_DIR": "/ckpt/run"})
    assert cfg.cache is False and cfg.epochs == 3 and save_dir == Path("/ckpt/run")
    assert parse_args([], environ={})[1] == Path(DEFAULT_SAVE_DIR)


def test_typo_is_one_clear_error_with_a_suggestion() -> None:
    with pytest.raises(LauncherError, match="train.epoch: unknown key 'epoch'; did you mean 'epochs'"):
        parse_args(["epoch=3"], environ={})
    with pytest.raises(LauncherError, match="is not key=value"):
        parse_args(["epochs"], environ={})
