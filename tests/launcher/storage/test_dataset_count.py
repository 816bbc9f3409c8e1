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
    from launcher.estimate import remote_data
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

    monkeypatch.setattr(remote_data, "PACK_HINT_FILES", 10)
    plain = upload(s3_kind, tmp_path, train=9, val=3)
    hinted = CliRunner().invoke(main, ["estimate", str(job(tmp_path, plain)), "-b", fake_plugin, "--json"])
    assert (
        f"hint: {plain} holds 13 files" in hinted.stderr and f"launch data pack {plain} {plain}-packed" in hinted.stderr
    )
    packed = CliRunner().invoke(main, ["estimate", str(job(tmp_path, store.uri)), "-b", fake_plugin, "--json"])
    assert packed.exit_code == 0 and "hint:" not in packed.stderr


def test_count_stops_listing_at_its_limit(remote_kind: StoreKind, tmp_path: Path) -> None:
    uri = upload(remote_kind, tmp_path, train=9, val=3)
    store = remote_kind.store(uri.split("/", 3)[3])
    assert (store.count(5), store.count(13), store.count(100), store.count(100, prefix="val/")) == (5, 13, 13, 3)
    if remote_kind.name == "s3":  # one page of 5 asked for, not the whole listing
        calls: list[str] = []
        store.client.meta.events.register("before-call.s3.ListObjectsV2", lambda **_kw: calls.append("list"))
        assert store.count(5) == 5 and calls == ["list"]


def test_launch_says_once_that_packing_would_start_faster(
    fake_plugin: str,
    s3_kind: StoreKind,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,  # noqa: F811
) -> None:
    from launcher.estimate import remote_data
    from launcher.staging.pack import pack
    from tests.launcher.storage.test_shards import imagefolder

    for name, value in s3_kind.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(remote_data, "PACK_HINT_FILES", 10)
    plain = upload(s3_kind, tmp_path, train=9, val=3)  # 13 objects
    submit = ["-b", fake_plugin, "--detach", "--yes", "--ignore-budget"]
    hint = f"hint: {plain} holds more than 10 files, each fetched on its own before training starts; " \
           f"packed into shards it starts in seconds: launch data pack {plain} {plain}-packed"  # fmt: skip

    dry = CliRunner().invoke(main, ["run", str(job(tmp_path, plain)), "-b", fake_plugin, "--dry-run"])
    assert dry.exit_code == 0 and "hint:" not in dry.stderr  # offline: nothing counted yet, nothing listed
    submitted = CliRunner().invoke(main, ["run", str(job(tmp_path, plain)), *submit])
    assert submitted.exit_code == 0, submitted.output
    assert [line for line in submitted.stderr.splitlines() if "hint" in line] == [hint]
    dry = CliRunner().invoke(main, ["run", str(job(tmp_path, plain)), "-b", fake_plugin, "--dry-run"])
    assert dry.exit_code == 0 and [line for line in dry.stderr.splitlines() if "hint" in line] == [hint]

    store = s3_kind.store()
    pack(str(imagefolder(tmp_path / "src")), store.uri, shard_size=2500, dest_store=store, log=lambda _m: None)
    monkeypatch.setattr(remote_data, "PACK_HINT_FILES", 2)  # the packed dataset's few shards are many here
    packed = CliRunner().invoke(main, ["run", str(job(tmp_path, store.uri)), *submit])
    assert packed.exit_code == 0 and "hint:" not in packed.stderr, packed.output

    few = upload(s3_kind, tmp_path, train=1, val=0)  # 2 objects: no hint
    small = CliRunner().invoke(main, ["run", str(job(tmp_path, few)), *submit])
    assert small.exit_code == 0 and "hint:" not in small.stderr, small.output


def test_a_store_that_cannot_be_listed_costs_only_the_hint(
    fake_plugin: str,
    s3_kind: StoreKind,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,  # noqa: F811
) -> None:
    from launcher.estimate import remote_data

    for name, value in s3_kind.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(remote_data, "PACK_HINT_FILES", 0)
    result = CliRunner().invoke(
        main,
        [
            "run",
            str(job(tmp_path, "s3://no-such-bucket/data")),
            "-b",
            fake_plugin,
            "--detach",
            "--yes",
            "--ignore-budget",
        ],
    )
    assert result.exit_code == 0 and "hint:" not in result.stderr, result.output
    assert remote_data.pack_hint("s3://no-such-bucket/data", tmp_path / "c.json", store=_Broken()) is None


class _Broken:
    def count(self, limit: int, prefix: str = "") -> int:
        raise RuntimeError("no network")
