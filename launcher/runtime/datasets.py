"""Built-in datasets, materialised once as an ImageFolder on local disk.

`digits` is scikit-learn's copy of the UCI handwritten digits (1,797 real 8x8
grayscale images, shipped inside the scikit-learn package, so no download).
It is written as PNGs into `<cache>/digits/{train,val}/<class>/*.png` with a
deterministic, class-stratified 80/20 split, so the trainer reads it through
the same ImageFolder code path as any user dataset. The cache folder is
`$LAUNCHER_DATA_DIR` or `~/.cache/launcher/datasets`.

A remote `train.data` (s3://, gs://, az://) that holds a packed dataset (index.json and tar
shards, `launch data pack`) is left as it is: the trainer streams its shards. Any other one
resolves to a local folder too:
a gs:// URI whose bucket is mounted at /gcs/<bucket> (Vertex AI's Cloud
Storage FUSE) is read through the mount; anything else is pulled once into
`<cache>/remote/` by launcher.storage.dataset (verified, reused on restart).
On node 0 the entrypoint passes a `progress` (launcher.storage.dataset.StagingProgress)
that records the fetch or the unpacking for `launch status`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

from launcher.contract import BUILTIN_DATASETS, data_dir
from launcher.errors import LauncherError
from launcher.storage import is_remote

if TYPE_CHECKING:
    from launcher.storage.dataset import StagingProgress

__all__ = ["BUILTINS", "GCS_MOUNT", "SHAPES", "mounted_path", "resolve", "stage", "write_digits", "write_shapes"]

BUILTINS = BUILTIN_DATASETS
_VAL_FRACTION = 0.2
_SPLIT_SEED = 0
_DONE = ".complete"
# Vertex AI mounts every bucket the job can read at /gcs/<bucket> (Cloud Storage FUSE):
# https://cloud.google.com/vertex-ai/docs/training/cloud-storage-file-system
GCS_MOUNT = Path("/gcs")


def mounted_path(uri: str, gcs_mount: Path = GCS_MOUNT) -> Path | None:
    """The Cloud Storage FUSE path of a gs:// URI when its bucket is mounted here, else None."""
    if not uri.startswith("gs://") or not gcs_mount.is_dir():
        return None
    path = gcs_mount / uri.removeprefix("gs://").strip("/")
    return path if path.is_dir() else None


def resolve(
    data: str,
    environ: Mapping[str, str] | None = None,
    gcs_mount: Path = GCS_MOUNT,
    layout: bool = True,
    progress: StagingProgress | None = None,
) -> Path:
    """A `train.data` value -> a local ImageFolder root (writing a built-in, or fetching a URI, on first use).

    `layout=False` (a program of the user's own, which reads any layout): any folder will do."""
    if data == "digits":
        return write_digits(data_dir(environ))
    if is_remote(data):
        root = mounted_path(data, gcs_mount) or _fetch(data, environ, progress)
    elif "://" in data:
        raise LauncherError(
            f"train.data {data!r} is not a URI the trainer can read.", "Use s3://, gs://, az:// or a local folder."
        )
    else:
        root = Path(data).expanduser()
    if not layout:
        if not root.is_dir():
            raise LauncherError(
                f"train.data {data} is not a folder here.", "Point train.data at the folder your program reads."
            )
        return root
    if not (root / "train").is_dir() or not (root / "val").is_dir():
        where = data if str(root) == data else f"{data} (read from {root})"
        raise LauncherError(
            f"train.data {where} is not an ImageFolder dataset (it needs train/ and val/ folders).",
            "Lay it out as <root>/train/<class>/*.jpg and <root>/val/<class>/*.jpg, or use data: digits.",
        )
    return root


def stage(
    command: Sequence[str],
    environ: Mapping[str, str] | None = None,
    gcs_mount: Path = GCS_MOUNT,
    progress: StagingProgress | None = None,
) -> tuple[str, ...]:
    """A train command with its remote `data=` URI replaced by the local folder `resolve` makes of it.

    The entrypoint calls this once per node, before torchrun, so every process
    on the node reads one verified copy. Other commands are returned unchanged.
    """
    if list(command[:1]) != ["train"]:
        return tuple(command)
    staged = []
    layout = "engine=ultralytics" not in command  # a YOLO dataset (data.yaml) is checked by that engine
    for arg in command:
        key, sep, value = arg.partition("=")
        if key == "data" and sep and not layout and not is_remote(value) and (Path(value) / "index.json").is_file():
            # a packed dataset in a channel or folder here, for an engine that reads files
            local = _unpack(value, environ, progress)
            print(f"[launcher] training data {value}: a packed dataset, unpacked to {local}", flush=True)
            staged.append(f"data={local}")
            continue
        if key == "data" and sep and is_remote(value):
            mounted = mounted_path(value, gcs_mount)
            packed_here = mounted is not None and (mounted / "index.json").is_file()
            if not layout and (packed_here or (mounted is None and _packed(value))):
                local = _unpack(str(mounted) if packed_here else value, environ, progress)
                print(f"[launcher] training data {value}: a packed dataset, unpacked to {local}", flush=True)
                staged.append(f"data={local}")
                continue
            if layout and packed_here:
                # a packed dataset in a mounted bucket: its shards are read in place, in large sequential reads
                print(f"[launcher] training data {value}: a packed dataset, read through {mounted}", flush=True)
                staged.append(f"data={mounted}")
                continue
            if layout and mounted is None and _packed(value):
                print(f"[launcher] training data {value}: a packed dataset, streamed by the trainer", flush=True)
                staged.append(arg)
                continue
            local = resolve(value, environ, gcs_mount, layout=layout, progress=progress)
            print(f"[launcher] training data {value} -> {local}", flush=True)
            arg = f"data={local}"
        staged.append(arg)
    return tuple(staged)


def _packed(uri: str) -> bool:
    """True when `uri` holds a packed dataset (index.json): the built-in trainer streams its shards."""
    from launcher.storage import open_store  # noqa: PLC0415 - imports a cloud SDK
    from launcher.storage.dataset import unreadable  # noqa: PLC0415
    from launcher.storage.shards import read_index  # noqa: PLC0415

    try:
        return read_index(open_store(uri)) is not None
    except LauncherError:
        raise
    except Exception as exc:  # noqa: BLE001 - any SDK error (no credentials, no network): one line, as a listing's
        raise unreadable(uri, exc) from None


def _unpack(uri: str, environ: Mapping[str, str] | None, progress: StagingProgress | None = None) -> Path:
    """A packed dataset as plain files for the ultralytics engine (which reads files): shards fetched in parallel."""
    import hashlib  # noqa: PLC0415

    from launcher.runtime.train import stream  # noqa: PLC0415

    packed = stream.open_packed(uri)
    assert packed is not None
    if progress is not None:
        progress.start("unpacking", uri, "shards", len(packed.index.shards()), packed.index.bytes())
    local = stream.unpack(
        packed,
        data_dir(environ) / "unpacked" / hashlib.sha256(uri.rstrip("/").encode()).hexdigest()[:16],
        progress=progress,
    )
    if progress is not None:
        progress.finish()
    return local


def _fetch(uri: str, environ: Mapping[str, str] | None, progress: StagingProgress | None = None) -> Path:
    from launcher.storage.dataset import fetch  # noqa: PLC0415 - imports a cloud SDK

    return fetch(uri, data_dir(environ) / "remote", progress=progress).root


def write_digits(cache: Path) -> Path:
    """Write the digits ImageFolder once; later calls return the existing folder."""
    root = cache / "digits"
    if (root / _DONE).exists():
        return root
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".digits-", dir=cache))
    # mkdtemp makes a 0700 folder; the dataset is shared (the image writes it as root at build
    # time and the local backend reads it as the submitting user), so it is readable by all
    staging.chmod(0o755)
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
    train, val = train_test_split(index, test_size=_VAL_FRACTION, stratify=digits.target, random_state=_SPLIT_SEED)
    for split, ids in (("train", train), ("val", val)):
        for i in sorted(ids):
            folder = root / split / str(digits.target[i])
            folder.mkdir(parents=True, exist_ok=True)
            # pixel values are 0..16; scale to the full 0..255 range of an 8-bit image
            pixels = (digits.images[i] * (255.0 / 16.0)).round().astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{i:04d}.png")


SHAPES = ("rectangle", "ellipse")


def write_shapes(root: Path, train: int = 240, val: int = 60, size: int = 64, seed: int = 0) -> Path:
    """A small real YOLO dataset made offline: rendered rectangles and ellipses on noise, each labelled with
    its class and outline polygon (YOLO segment labels; Ultralytics takes each one's box for detect), and a
    data.yaml. Deterministic for a seed; written once (a `.complete` marker), as `digits` is."""
    if (root / _DONE).exists():
        return root
    import numpy as np  # noqa: PLC0415 - train extra
    from PIL import Image, ImageDraw  # noqa: PLC0415

    rng = np.random.default_rng(seed)
    for split, count in (("train", train), ("val", val)):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            pixels = rng.integers(0, 80, (size, size, 3), dtype=np.uint8)
            image = Image.fromarray(pixels)
            draw = ImageDraw.Draw(image)
            lines = [_draw_shape(draw, rng, size) for _ in range(int(rng.integers(1, 4)))]
            image.save(root / "images" / split / f"{i:04d}.png")
            (root / "labels" / split / f"{i:04d}.txt").write_text("\n".join(lines) + "\n")
    names = "".join(f"  {i}: {name}\n" for i, name in enumerate(SHAPES))
    (root / "data.yaml").write_text(f"path: {root}\ntrain: images/train\nval: images/val\nnames:\n{names}")
    (root / _DONE).write_text(f"rendered shapes, seed {seed}, {train}+{val} images of {size} px\n")
    return root


def _draw_shape(draw, rng, size: int) -> str:  # type: ignore[no-untyped-def]
    """Draw one shape; its label line: class, then the outline polygon normalised to 0..1."""
    import numpy as np  # noqa: PLC0415

    kind = int(rng.integers(0, len(SHAPES)))
    w, h = (int(v) for v in rng.integers(size // 6, size // 2, 2))
    x0, y0 = int(rng.integers(0, size - w)), int(rng.integers(0, size - h))
    color = tuple(int(c) for c in rng.integers(120, 256, 3))
    if kind == 0:
        draw.rectangle((x0, y0, x0 + w, y0 + h), fill=color)
        points = [(x0, y0), (x0 + w, y0), (x0 + w, y0 + h), (x0, y0 + h)]
    else:
        draw.ellipse((x0, y0, x0 + w, y0 + h), fill=color)
        angles = np.linspace(0, 2 * np.pi, 16, endpoint=False)
        points = [(x0 + w / 2 * (1 + np.cos(a)), y0 + h / 2 * (1 + np.sin(a))) for a in angles]
    return " ".join([str(kind), *(f"{min(max(v / size, 0.0), 1.0):.5f}" for p in points for v in p)])
