"""`launch estimate` counts a remote dataset by listing it (cached), and asks for --images only when it cannot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from launcher.cli import main
from launcher.estimate.model import Dataset
from launcher.estimate.remote_data import remote_dataset
from launcher.state.jobs import state_dir
from tests.launcher.estimate.test_cli import fake_plugin  # noqa: F401 - the fixture
from tests.launcher.storage.conftest import StoreKind


def upload(kind: StoreKind, tmp_path: Path, train: int, val: int) -> str:
    store = kind.store()
    image = tmp_path / "x.png"
    image.write_bytes(b"\x89PNG" + b"0" * 96)
    for i in range(train):
        store.put(f"train/{i % 3}/{i}.png", image)
    for i in range(val):
        store.put(f"val/{i % 3}/{i}.png", image)
    store.put("README.txt", image)  # not an image: counted in bytes only
    return store.uri


def job(tmp_path: Path, data: str) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(
        f"name: remote-est\ntrain: {{model: resnet50, data: '{data}', epochs: 5}}\nresources: {{gpus: 1, gpu_type: A10G}}\n"
    )
    return path


def test_remote_images_are_counted_by_listing_and_cached(remote_kind: StoreKind, tmp_path: Path) -> None:
    uri = upload(remote_kind, tmp_path, train=9, val=3)
    store = remote_kind.store(uri.split("/", 3)[3])
    cache = tmp_path / "sizes.json"
    assert remote_dataset(uri, cache, store=store) == Dataset(9, 3, 13 * 100, local=False, files=13)
    store.delete([o.key for o in store.list()])
    assert remote_dataset(uri, cache, store=store) == Dataset(9, 3, 1300, local=False, files=13)  # the cached count
    assert remote_dataset(uri, cache, store=store, now=lambda: 4e12) == f"{uri} holds no images under train/"  # expired


def test_estimate_lists_remote_data_instead_of_asking_for_images(
    fake_plugin: str,
    s3_kind: StoreKind,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,  # noqa: F811
) -> None:
    for name, value in s3_kind.env.items():
        monkeypatch.setenv(name, value)
    uri = upload(s3_kind, tmp_path, train=30, val=6)
    listed = CliRunner().invoke(main, ["estimate", str(job(tmp_path, uri)), "-b", fake_plugin, "--json"])
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.stdout)
    assert rows and all(not r.get("error") for r in rows)
    given = CliRunner().invoke(
        main, ["estimate", str(job(tmp_path, uri)), "-b", fake_plugin, "--json", "--images", "30"]
    )
    assert [r["training_s"] for r in rows] == [r["training_s"] for r in json.loads(given.stdout)]
    assert uri in json.loads((state_dir() / "dataset-sizes.json").read_text())


def test_estimate_without_credentials_asks_for_images(fake_plugin: str, s3_kind: StoreKind, tmp_path: Path,  # noqa: F811
                                                       monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    for name, value in s3_kind.env.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(
        main, ["estimate", str(job(tmp_path, "s3://no-such-bucket/data")), "-b", fake_plugin, "--json"]
    )
    assert result.exit_code != 0, result.output  # nothing could be estimated: a failure, in one line
    assert "could not list s3://no-such-bucket/data" in result.stderr and "pass --images N" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert all("pass --images N" in r["error"] for r in json.loads(result.stdout))


def test_a_packed_dataset_is_counted_from_its_index_and_a_large_folder_gets_the_pack_hint(
    fake_plugin: str,
    s3_kind: StoreKind,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,  # noqa: F811
) -> None:
    from launcher.cli import estimate as estimate_cli
    from launcher.estimate.model import staging_seconds
    from launcher.staging.pack import pack
    from tests.launcher.storage.test_shards import imagefolder

    for name, value in s3_kind.env.items():
        monkeypatch.setenv(name, value)
    store = s3_kind.store()
    index = pack(
        str(imagefolder(tmp_path / "src")), store.uri, shard_size=2500, dest_store=store, log=lambda _m: None
    ).index
    found = remote_dataset(store.uri, tmp_path / "sizes.json", store=store)
    biggest = max(s.bytes for s in index.shards())
    assert (found.train_images, found.val_images, found.bytes, found.packed, found.first_bytes) == (
        18,
        6,
        index.bytes(),
        True,
        biggest,
    )
    assert (
        staging_seconds(found, type("O", (), {"backend": "aws", "details": {}})(), {"staging_mb_per_s": 1.0})
        == biggest / 1e6
    )

    monkeypatch.setattr(estimate_cli, "PACK_HINT_FILES", 10)
    plain = upload(s3_kind, tmp_path, train=9, val=3)
    hinted = CliRunner().invoke(main, ["estimate", str(job(tmp_path, plain)), "-b", fake_plugin, "--json"])
    assert (
        f"hint: {plain} holds 13 files" in hinted.stderr and f"launch data pack {plain} {plain}-packed" in hinted.stderr
    )
    packed = CliRunner().invoke(main, ["estimate", str(job(tmp_path, store.uri)), "-b", fake_plugin, "--json"])
    assert packed.exit_code == 0 and "hint:" not in packed.stderr
