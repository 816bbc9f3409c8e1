"""Built-in datasets, materialised once as an ImageFolder on local disk.

`digits` is scikit-learn's copy of the UCI handwritten digits (1,797 real 8x8
grayscale images, shipped inside the scikit-learn package, so no download).
It is written as PNGs into `<cache>/digits/{train,val}/<class>/*.png` with a
deterministic, class-stratified 80/20 split, so the trainer reads it through
the same ImageFolder code path as any user dataset. The cache folder is
`$LAUNCHER_DATA_DIR` or `~/.cache/launcher/datasets`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Mapping

from launcher.errors import LauncherError

__all__ = ["BUILTINS", "data_dir", "resolve", "write_digits"]

BUILTINS = ("digits",)
_VAL_FRACTION = 0.2
_SPLIT_SEED = 0
_DONE = ".complete"


def data_dir(environ: Mapping[str, str] | None = None) -> Path:
    environ = os.environ if environ is None else environ
    if environ.get("LAUNCHER_DATA_DIR"):
        return Path(environ["LAUNCHER_DATA_DIR"])
    return Path.home() / ".cache" / "launcher" / "datasets"


def resolve(data: str, environ: Mapping[str, str] | None = None) -> Path:
    """A `train.data` value -> a local ImageFolder root (writing a built-in on first use)."""
    if data == "digits":
        return write_digits(data_dir(environ))
    if "://" in data:
        raise LauncherError(
            f"train.data {data!r} is a remote URI, but the trainer reads a local folder.",
            "Stage it first (the backends mount or copy data to a local path) and pass that path.",
        )
    root = Path(data).expanduser()
    if not (root / "train").is_dir() or not (root / "val").is_dir():
        raise LauncherError(
            f"train.data {str(root)!r} is not an ImageFolder dataset (it needs train/ and val/ folders).",
            "Lay it out as <root>/train/<class>/*.jpg and <root>/val/<class>/*.jpg, or use data: digits.",
        )
    return root


def write_digits(cache: Path) -> Path:
    """Write the digits ImageFolder once; later calls return the existing folder."""
    root = cache / "digits"
    if (root / _DONE).exists():
        return root
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".digits-", dir=cache))
    try:
        _write_split(staging)
        (staging / _DONE).write_text("sklearn.datasets.load_digits, stratified 80/20 split, seed 0\n")
        if root.exists():  # an incomplete earlier attempt (no marker): replace it
            shutil.rmtree(root)
        os.replace(staging, root)  # rename: a concurrent reader never sees half a dataset
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not (root / _DONE).exists():
            raise
        # another process (another rank) finished first: its copy is complete
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return root


def _write_split(root: Path) -> None:
    import numpy as np  # noqa: PLC0415 - train extra
    from PIL import Image  # noqa: PLC0415
    from sklearn.datasets import load_digits  # noqa: PLC0415
    from sklearn.model_selection import train_test_split  # noqa: PLC0415

    digits = load_digits()
    index = np.arange(len(digits.target))
    train, val = train_test_split(
        index, test_size=_VAL_FRACTION, stratify=digits.target, random_state=_SPLIT_SEED
    )
    for split, ids in (("train", train), ("val", val)):
        for i in sorted(ids):
            folder = root / split / str(digits.target[i])
            folder.mkdir(parents=True, exist_ok=True)
            # pixel values are 0..16; scale to the full 0..255 range of an 8-bit image
            pixels = (digits.images[i] * (255.0 / 16.0)).round().astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{i:04d}.png")
