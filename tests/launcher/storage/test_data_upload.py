"""A local train.data folder is uploaded once at submit, keyed by content (launcher.staging.data)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from launcher.errors import LauncherError
from launcher.plan import Plan
from launcher.spec import validate_spec
from launcher.staging.data import CONTENT, MARKER, HashCache, content_hash, data_target, stage_local_data, upload_folder
from launcher.storage import open_store
from tests.launcher.storage.conftest import StoreKind


def make_folder(root: Path) -> Path:
    for key, body in {"train/a/1.png": b"a1" * 100, "train/b/2.png": b"b2" * 80, "val/a/3.png": b"a3" * 60}.items():
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).write_bytes(body)
    (root / ".DS_Store").write_bytes(b"finder noise")  # dot-files are not data
    return root


def spec_for(tmp_path: Path, data: Path, uri: str | None):  # type: ignore[no-untyped-def]
    raw = {"name": "up", "train": {"data": str(data)}, "checkpoint": {"uri": uri}}
    return validate_spec(raw, None, tmp_path)


def test_the_target_comes_from_the_spec_alone(tmp_path: Path) -> None:
    data = make_folder(tmp_path / "data")
    assert data_target(spec_for(tmp_path, data, "s3://b/ckpts/")) == f"s3://b/ckpts/_data/{CONTENT}"
    assert (
        data_target(validate_spec({"name": "d", "checkpoint": {"uri": "s3://b/c"}}, None, tmp_path)) is None
    )  # digits
    assert data_target(validate_spec({"name": "r", "train": {"data": "gs://b/set"}}, None, tmp_path)) is None
    with pytest.raises(LauncherError, match="no remote store to upload it to"):
        data_target(spec_for(tmp_path, data, None))


def test_content_hash_ignores_dot_files_and_changes_with_any_byte(tmp_path: Path) -> None:
    data = make_folder(tmp_path / "data")
    first, listing = content_hash(data)
    assert sorted(listing) == ["train/a/1.png", "train/b/2.png", "val/a/3.png"]
    (data / ".DS_Store").write_bytes(b"other noise")
    assert content_hash(data)[0] == first
    (data / "val/a/3.png").write_bytes(b"A3" * 60)  # same size, other bytes
    assert content_hash(data)[0] != first


def test_hash_cache_skips_unchanged_files(tmp_path: Path) -> None:
    data = make_folder(tmp_path / "data")
    cache = HashCache(tmp_path / "hashes.json")
    digest, _ = content_hash(data, cache)
    cache.save()
    again = HashCache(tmp_path / "hashes.json")
    assert len(again.known) == 3 and content_hash(data, again)[0] == digest


def test_upload_once_resume_and_skip(s3_kind: StoreKind, tmp_path: Path) -> None:
    data = make_folder(tmp_path / "data")
    digest, listing = content_hash(data)
    store = s3_kind.store(f"{s3_kind.store().uri.rsplit('/', 1)[1]}/_data/{digest}")
    store.put("train/a/1.png", data / "train/a/1.png")  # an earlier, interrupted upload
    messages: list[str] = []
    sent = upload_folder(data, store, listing, messages.append)
    assert sent == 160 + 120  # the two files not there yet
    assert "uploading 2 files" in messages[0] and messages[-1].endswith("upload complete")
    assert json.loads(store.get_bytes(MARKER) or b"{}")["files"] == listing
    assert upload_folder(data, store, listing, messages.append) == 0 and "already uploaded" in messages[-1]


def test_submit_fills_the_placeholder_after_uploading(
    s3_kind: StoreKind, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in s3_kind.env.items():
        monkeypatch.setenv(name, value)
    data = make_folder(tmp_path / "data")
    root = s3_kind.store().uri
    spec = spec_for(tmp_path, data, root)
    target = data_target(spec)
    plan = Plan("test", "job-1", spec, {"Channels": [{"S3Uri": target}], "Args": ["--", "train", f"data={target}"]})
    staged = stage_local_data(plan, log=lambda _m: None, state=tmp_path / "state")
    digest = content_hash(data)[0]
    assert staged.request() == {
        "Channels": [{"S3Uri": f"{root}/_data/{digest}"}],
        "Args": ["--", "train", f"data={root}/_data/{digest}"],
    }
    uploaded = open_store(f"{root}/_data/{digest}")
    assert sorted(o.key for o in uploaded.list()) == sorted([MARKER, "train/a/1.png", "train/b/2.png", "val/a/3.png"])
    messages: list[str] = []
    stage_local_data(plan, log=messages.append, state=tmp_path / "state")
    assert any("already uploaded" in m for m in messages)  # unchanged data is not sent again
