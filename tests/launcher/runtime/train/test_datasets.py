from __future__ import annotations

from pathlib import Path

import pytest

from launcher.errors import LauncherError
from launcher.runtime import datasets
from launcher.runtime.train.data import scan


def test_digits_is_written_once_as_a_stratified_imagefolder(tmp_path: Path) -> None:
    root = datasets.resolve("digits", environ={"LAUNCHER_DATA_DIR": str(tmp_path)})
    assert root == tmp_path / "digits"
    train, val = scan(root / "train"), scan(root / "val")
    assert train.classes == [str(d) for d in range(10)] == val.classes
    assert len(train.samples) + len(val.samples) == 1797
    assert len(val.samples) == 360
    for n_train, n_val in zip(train.counts(), val.counts()):
        assert 0.17 < n_val / (n_train + n_val) < 0.23  # each class split about 80/20
    first = (root / "train" / "0").stat().st_mtime_ns
    assert datasets.write_digits(tmp_path) == root  # second call: reused, not rewritten
    assert (root / "train" / "0").stat().st_mtime_ns == first


def test_digits_images_are_real_8x8_pictures(tmp_path: Path) -> None:
    from PIL import Image

    root = datasets.write_digits(tmp_path)
    with Image.open(next((root / "val" / "3").iterdir())) as im:
        assert im.size == (8, 8) and im.getextrema()[1] > 200


def test_bad_data_values_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(LauncherError, match="not an ImageFolder dataset"):
        datasets.resolve(str(tmp_path), environ={})
    with pytest.raises(LauncherError, match="not a URI the trainer can read"):
        datasets.resolve("ftp://host/data", environ={})


def test_a_gs_uri_is_read_through_its_cloud_storage_fuse_mount(tmp_path: Path) -> None:
    """Vertex AI mounts buckets at /gcs/<bucket>: the trainer reads there, nothing is downloaded."""
    mount = tmp_path / "gcs"
    datasets.write_digits(mount / "bucket" / "sets")
    root = datasets.resolve(
        "gs://bucket/sets/digits", environ={"LAUNCHER_DATA_DIR": str(tmp_path / "cache")}, gcs_mount=mount
    )
    assert root == mount / "bucket" / "sets" / "digits"
    assert not (tmp_path / "cache").exists()
    staged = datasets.stage(["train", "epochs=1", "data=gs://bucket/sets/digits"], {}, gcs_mount=mount)
    assert staged == ("train", "epochs=1", f"data={root}")
    assert datasets.stage(["python", "x.py", "data=gs://bucket/sets/digits"], {}) == (
        "python",
        "x.py",
        "data=gs://bucket/sets/digits",
    )


def test_the_digits_folder_is_readable_by_every_user(tmp_path: Path) -> None:
    """The image writes it as root at build time; the local backend reads it as the submitting user."""
    root = datasets.write_digits(tmp_path)
    assert root.stat().st_mode & 0o005 == 0o005  # others may list and enter it
    assert (root / "train").stat().st_mode & 0o005 == 0o005
