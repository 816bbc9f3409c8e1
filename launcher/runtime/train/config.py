"""The trainer's command line: `key=value` arguments -> TrainConfig + save_dir.

The values are the ones `TrainConfig.to_args()` writes, parsed as YAML
scalars (so `batch=-1`, `cache=false`, `pretrained=/w.pt` all round-trip)
and validated by the same pydantic model as the job spec, so a typo gets the
same "did you mean" message as in a YAML file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import yaml
from pydantic import ValidationError

from launcher.errors import LauncherError
from launcher.spec.messages import format_validation_error
from launcher.spec.train import TrainConfig

__all__ = ["parse_args", "DEFAULT_SAVE_DIR"]

DEFAULT_SAVE_DIR = "runs/train"


def parse_args(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> tuple[TrainConfig, Path]:
    """Parse `key=value ... [save_dir=DIR]`; save_dir defaults to $LAUNCHER_SAVE_DIR."""
    environ = os.environ if environ is None else environ
    values: dict[str, object] = {}
    save_dir = environ.get("LAUNCHER_SAVE_DIR") or DEFAULT_SAVE_DIR
    for item in argv:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise LauncherError(f"trainer argument {item!r} is not key=value.", "Write it like epochs=10.")
        if key == "save_dir":
            save_dir = text
            continue
        values[key] = _scalar(key, text)
    try:
        config = TrainConfig.model_validate(values)
    except ValidationError as exc:
        raise LauncherError(format_validation_error(exc, None, TrainConfig, ("train",))) from None
    return config, Path(save_dir)


def _scalar(key: str, text: str) -> object:
    if key in ("data", "model") or (key == "pretrained" and text not in ("true", "false", "True", "False")):
        return text  # paths and names stay strings even when they look like numbers
    try:
        return yaml.safe_load(text) if text else ""
    except yaml.YAMLError:
        return text
