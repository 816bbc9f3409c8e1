"""Remote training data: fetched once into a node-local cache, verified, reused, repaired, its progress recorded
(launcher.storage.dataset)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from launcher.errors import LauncherError
from launcher.runtime import datasets
from launcher.storage.base import Store
from launcher.storage.dataset import COMPLETE, StagingProgress, cache_folder, fetch, run_folder_writer
from tests.launcher.storage.conftest import StoreKind

FILES = {
    "train/0/a.png": b"zero-a" * 50,
    "train/1/b.png": b"one-b" * 70,
    "val/0/c.png": b"zero-c" * 30,
    "val/1/d.png": b"one-d" * 20,
}


def upload(store: Store, tmp_path: Path, files: dict[str, bytes]) -> None:
    for key, body in files.items():
        src = tmp_path / "upload.bin"
        src.write_bytes(body)
        store.put(key, src)


def quiet(_message: str) -> None:
    pass


def test_fetch_copies_every_object_then_reuses_the_cache(remote_kind: StoreKind, tmp_path: Path) -> None:
    store = remote_kind.store()
    upload(store, tmp_path, FILES)
    first = fetch(store.uri, tmp_path / "cache", store=store, log=quiet)
    assert (first.files, first.downloaded, first.reused) == (4, 4, False)
    assert {p.relative_to(first.root).as_posix(): p.read_bytes() for p in first.root.rglob("*") if p.is_file()} == FILES
    marker = json.loads((cache_folder(store.uri, tmp_path / "cache") / COMPLETE).read_text())
    assert marker["uri"] == store.uri and sorted(marker["files"]) == sorted(FILES)

    again = fetch(store.uri, tmp_path / "cache", store=store, log=quiet)
    assert (again.root, again.downloaded, again.reused) == (first.root, 0, True)


def test_a_corrupted_or_missing_cached_file_is_fetched_again(s3_kind: StoreKind, tmp_path: Path) -> None:
    store = s3_kind.store()
    upload(store, tmp_path, FILES)
    root = fetch(store.uri, tmp_path / "cache", store=store, log=quiet).root
    (root / "train/0/a.png").write_bytes(b"garbage")
    (root / "val/1/d.png").unlink()
    repaired = fetch(store.uri, tmp_path / "cache", store=store, log=quiet)
    assert (repaired.downloaded, repaired.reused) == (2, False)
    assert (root / "train/0/a.png").read_bytes() == FILES["train/0/a.png"]
    assert (root / "val/1/d.png").read_bytes() == FILES["val/1/d.png"]


def test_an_interrupted_fetch_leaves_no_marker_and_is_completed_next_time(s3_kind: StoreKind, tmp_path: Path) -> None:
    store = s3_kind.store()
    upload(store, tmp_path, FILES)
    result = fetch(store.uri, tmp_path / "cache", store=store, log=quiet)
    (cache_folder(store.uri, tmp_path / "cache") / COMPLETE).unlink()  # as if killed before the marker
    (result.root / "val/0/c.png").unlink()
    (result.root / "val/0/.c.png.part").write_bytes(b"half")  # a temp file of the killed download
    again = fetch(store.uri, tmp_path / "cache", store=store, log=quiet)
    assert again.downloaded == 4 and not (result.root / "val/0/.c.png.part").exists()
    assert (result.root / "val/0/c.png").read_bytes() == FILES["val/0/c.png"]


def test_remote_changes_reach_the_cache(s3_kind: StoreKind, tmp_path: Path) -> None:
    store = s3_kind.store()
    upload(store, tmp_path, FILES)
    root = fetch(store.uri, tmp_path / "cache", store=store, log=quiet).root
    upload(store, tmp_path, {"train/1/b.png": b"replaced"})
    store.delete(["val/1/d.png"])
    result = fetch(store.uri, tmp_path / "cache", store=store, log=quiet)
    assert (result.downloaded, result.removed) == (1, 1)
    assert (root / "train/1/b.png").read_bytes() == b"replaced" and not (root / "val/1/d.png").exists()


def test_unreachable_store_uses_a_complete_cache_else_says_so(s3_kind: StoreKind, tmp_path: Path) -> None:
    store = s3_kind.store()
    upload(store, tmp_path, FILES)
    fetch(store.uri, tmp_path / "cache", store=store, log=quiet)
    from launcher.storage.s3 import S3Store

    broken = S3Store(store.uri.replace("s3://ckpts", "s3://no-such-bucket"), client=store.client)
    broken.uri = store.uri  # same URI, but every call fails: as if the network or credentials were gone
    messages: list[str] = []
    assert fetch(store.uri, tmp_path / "cache", store=broken, log=messages.append).reused
    assert "using the cached copy" in messages[0]
    with pytest.raises(LauncherError, match="Could not list the training data"):
        fetch(store.uri, tmp_path / "other-cache", store=broken, log=quiet)


def test_an_empty_uri_is_a_clear_error(s3_kind: StoreKind, tmp_path: Path) -> None:
    store = s3_kind.store()
    with pytest.raises(LauncherError, match="holds no files"):
        fetch(store.uri, tmp_path / "cache", store=store, log=quiet)


def test_train_command_data_uri_becomes_the_cached_folder(
    s3_kind: StoreKind, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the entrypoint does once per node: `data=s3://...` -> `data=<node-local cache>`, through the SDK's own chain."""
    for name, value in s3_kind.env.items():
        monkeypatch.setenv(name, value)
    store = s3_kind.store()
    upload(store, tmp_path, FILES)
    environ = {"LAUNCHER_DATA_DIR": str(tmp_path / "data")}
    staged = datasets.stage(["train", f"data={store.uri}", "epochs=1"], environ)
    local = Path(staged[1].removeprefix("data="))
    assert staged[0] == "train" and staged[2] == "epochs=1"
    assert (
        local.is_relative_to(tmp_path / "data" / "remote")
        and (local / "train/1/b.png").read_bytes() == FILES["train/1/b.png"]
    )
    with pytest.raises(LauncherError, match="not an ImageFolder"):
        datasets.resolve(store.uri + "/train", environ)


def test_node_0_records_how_far_the_fetch_got_then_that_it_is_staged(s3_kind: StoreKind, tmp_path: Path) -> None:
    """What `launch status` shows while a plain remote folder is staged: at the start, at most every `every`
    seconds as files arrive (a clock injected: each reading 2 s later), and at the end."""
    store = s3_kind.store()
    upload(store, tmp_path, FILES)
    written: list[dict] = []
    ticks = iter(range(0, 1000, 2))
    progress = StagingProgress(lambda body: written.append(json.loads(body)), every=5.0, clock=lambda: next(ticks),
                               wall=lambda: 1000.0)  # fmt: skip
    fetch(store.uri, tmp_path / "cache", store=store, log=quiet, progress=progress)
    sizes = [len(FILES[k]) for k in sorted(FILES)]  # fetched in key order
    base = {"uri": store.uri, "shards": 0, "shards_total": 0, "files_total": 4, "bytes_total": sum(sizes),
            "time": 1000.0}  # fmt: skip
    nothing = {**base, "files": 0, "files_total": 0, "bytes": 0, "bytes_total": 0}
    assert written == [
        {**nothing, "phase": "listing", "seconds": 2},  # clock 0 when made, 2 here
        {**base, "phase": "fetching", "files": 0, "bytes": 0, "seconds": 4},  # a phase starts: written at once
        {**base, "phase": "fetching", "files": 3, "bytes": sum(sizes[:3]), "seconds": 10},  # 6 s after: due again
        {**base, "phase": "staged", "files": 4, "bytes": sum(sizes), "seconds": 14},
    ]  # fmt: skip

    written.clear()
    again = StagingProgress(lambda body: written.append(json.loads(body)), clock=lambda: 0.0, wall=lambda: 1.0)
    (tmp_path / "cache" / next(p.name for p in (tmp_path / "cache").iterdir()) / "data/val/1/d.png").unlink()
    fetch(store.uri, tmp_path / "cache", store=store, log=quiet, progress=again)  # one file missing: fetched again
    assert [(r["phase"], r["files"], r["bytes"]) for r in written] == [
        ("listing", 0, 0),
        ("fetching", 3, sum(len(FILES[k]) for k in FILES if k != "val/1/d.png")),  # the cached ones count at once
        ("staged", 4, sum(sizes)),
    ]
    written.clear()
    fetch(store.uri, tmp_path / "cache", store=store, log=quiet, progress=again)  # all cached: staged at once
    assert [(r["phase"], r["files"], r["bytes"]) for r in written] == [
        ("listing", 0, 0),
        ("fetching", 4, sum(sizes)),
        ("staged", 4, sum(sizes)),
    ]


def test_a_failing_progress_write_never_stops_the_staging_and_three_in_a_row_end_the_record(tmp_path: Path) -> None:
    calls: list[bytes] = []

    def broken(body: bytes) -> None:
        calls.append(body)
        raise OSError("the checkpoint store is unreachable")

    progress = StagingProgress(broken, every=0.0)
    progress.start("fetching", "s3://b/d", "files", 10, 100)
    for _ in range(5):
        progress.advance(10)
    progress.finish()
    assert len(calls) == 3 and progress.record["phase"] == "staged"  # tried 3 times, then no more


def test_the_staging_record_lands_in_the_run_folder_of_a_store(tmp_path: Path) -> None:
    write = run_folder_writer(str(tmp_path / "ckpt" / "r"))
    write(b'{"phase": "staged"}')
    assert (tmp_path / "ckpt" / "r" / "data-progress.json").read_bytes() == b'{"phase": "staged"}'
    assert [p.name for p in (tmp_path / "ckpt" / "r").iterdir()] == ["data-progress.json"]  # no temp file left
