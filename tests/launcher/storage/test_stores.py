"""One suite, every store: local folder, S3 (moto server), GCS (gcp-storage-emulator), Azure Blob (Azurite)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from launcher.errors import LauncherError
from launcher.storage.base import sha256_file
from launcher.storage.manifest import FILES, HISTORY, MANIFEST, Manifest, versions_in_store
from launcher.storage.retry import RetryPolicy
from launcher.storage.sync import Pusher, copy, pull, push
from tests.launcher.storage.conftest import REPO_ROOT, StoreKind, subprocess_env
from tests.launcher.storage.helpers import FaultProxy, fake_checkpoint, write_files


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")}


def test_put_get_list_delete(kind: StoreKind, tmp_path: Path) -> None:
    store = kind.store()
    src = tmp_path / "blob"
    src.write_bytes(b"x" * 70_000)
    info = store.put("files/00000001/a/blob", src)
    store.put_bytes("manifest.json", b"{}")
    assert info.size == 70_000
    assert {(o.key, o.size) for o in store.list()} == {("files/00000001/a/blob", 70_000), ("manifest.json", 2)}
    assert [o.key for o in store.list(FILES)] == ["files/00000001/a/blob"]
    sha = store.get("files/00000001/a/blob", tmp_path / "back")
    assert (tmp_path / "back").read_bytes() == src.read_bytes()
    assert sha in (None, sha256_file(src))
    assert store.get_bytes("manifest.json") == b"{}" and store.get_bytes("missing.json") is None
    (tmp_path / "empty").write_bytes(b"")
    store.put("empty", tmp_path / "empty")
    assert store.get("empty", tmp_path / "empty-back") in (None, sha256_file(tmp_path / "empty"))
    assert (tmp_path / "empty-back").read_bytes() == b""
    store.delete(["files/00000001/a/blob", "manifest.json", "never-existed", "empty"])
    assert store.list() == []


def test_an_s3_object_of_one_part_comes_in_one_get_without_a_head(
    s3_kind: StoreKind, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first ranged GET says the object's size: a shard of a packed dataset is one request, not a HEAD and a
    GET; a bigger object's other parts follow it; a missing one is named."""
    from launcher.storage import s3
    from launcher.storage.base import MissingObjectError

    store = s3_kind.store()
    calls: list[str] = []
    for op in ("HeadObject", "GetObject"):
        store.client.meta.events.register(f"provide-client-params.s3.{op}", lambda params, op=op, **_: calls.append(op))
    src = tmp_path / "shard.tar"
    src.write_bytes(os.urandom(300_000))
    store.put("shard.tar", src)
    assert store.get("shard.tar", tmp_path / "back") == sha256_file(src) and calls == ["GetObject"]
    assert (tmp_path / "back").read_bytes() == src.read_bytes()
    calls.clear()
    monkeypatch.setattr(s3, "PART", 64 << 10)
    seen: list[int] = []
    assert store.get("shard.tar", tmp_path / "parts", seen.append) == sha256_file(src)
    assert calls == ["GetObject"] * 5 and sum(seen) == 300_000
    assert (tmp_path / "parts").read_bytes() == src.read_bytes()
    with pytest.raises(MissingObjectError):
        store.get("missing.tar", tmp_path / "missing")


def test_large_files_go_in_parts_and_come_back_whole(kind: StoreKind, tmp_path: Path) -> None:
    """34 MiB crosses every store's multipart / block / chunk size (16 or 32 MiB)."""
    store, src = kind.store(), tmp_path / "big"
    src.write_bytes(os.urandom(34 * 1024 * 1024 + 5))
    seen: list[int] = []
    store.put("big.pt", src, seen.append)
    assert sum(seen) == src.stat().st_size and store.list()[0].size == src.stat().st_size
    seen.clear()
    sha = store.get("big.pt", tmp_path / "back", seen.append)
    assert sum(seen) == src.stat().st_size and sha in (None, sha256_file(src))
    assert sha256_file(tmp_path / "back") == sha256_file(src)


@pytest.mark.parametrize("size", [3, 34 * 1024 * 1024 + 5])
def test_cloud_stores_hash_what_they_send_in_the_same_read(remote_kind: StoreKind, tmp_path: Path, size: int) -> None:
    """put returns the sha256 of the bytes it read, so a push reads each file once (not once to hash, once to send)."""
    store, src = remote_kind.store(), tmp_path / "f"
    src.write_bytes(os.urandom(size))
    assert store.hashes_put
    assert store.put("f.pt", src).checksum == sha256_file(src)
    assert store.get("f.pt", tmp_path / "back") == sha256_file(src)  # and get hashes what it writes


@pytest.mark.parametrize("size", [3, 34 * 1024 * 1024 + 5])
def test_a_hash_the_caller_knows_is_not_computed_again(remote_kind: StoreKind, tmp_path: Path, size: int) -> None:
    store, src = remote_kind.store(), tmp_path / "f"
    src.write_bytes(os.urandom(size))
    told = "0" * 64  # not the file's hash: returned as is, so the store did not hash the bytes
    assert store.put("f.pt", src, sha256=told).checksum == told
    assert store.get("f.pt", tmp_path / "back") == sha256_file(src)  # the bytes themselves went up whole


def test_a_rewritten_file_of_the_same_size_is_hashed_once(tmp_path: Path) -> None:
    """Same size as before: hashed to see whether it changed; changed: sent with that hash, not hashed again."""
    from launcher.storage.local import LocalStore

    class Recording(LocalStore):
        told: list[str | None] = []

        def put(self, key, src, progress=None, sha256=None):  # type: ignore[no-untyped-def]
            self.told.append(sha256)
            return super().put(key, src, progress, sha256)

    store, src = Recording(str(tmp_path / "store")), tmp_path / "src"
    write_files(src, {"last.pt": b"epoch-1"})
    pusher = Pusher(store, src)
    pusher.push()
    write_files(src, {"last.pt": b"epoch-2"})
    second = pusher.push()
    assert store.told == [None, sha256_file(src / "last.pt")] and second.files["last.pt"].sha256 == store.told[1]


def test_a_big_rewritten_file_of_the_same_size_is_read_once(
    remote_kind: StoreKind, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rewritten last.pt (new weights, the same size) goes up hashed while it streams: no hash pass before it."""
    from launcher.storage import sync

    monkeypatch.setattr(sync, "HASH_FIRST_BELOW", 4)
    store, src = remote_kind.store(), tmp_path / "src"
    write_files(src, {"last.pt": b"epoch-1" * 1000})
    pusher = Pusher(store, src)
    first = pusher.push()
    sent = pusher.stats.files_sent

    def no_second_pass(path):  # type: ignore[no-untyped-def]
        raise AssertionError(f"{path} was read once more to hash it")

    monkeypatch.setattr(sync, "sha256_file", no_second_pass)
    write_files(src, {"last.pt": b"epoch-2" * 1000})
    second = pusher.push()
    assert second.version == first.version + 1 and pusher.stats.files_sent == sent + 1
    assert second.files["last.pt"].sha256 == hashlib.sha256(b"epoch-2" * 1000).hexdigest()

    # the same bytes written again (a new mtime): sent, found identical, and the version keeps the stored copy
    os.utime(src / "last.pt", ns=(1, 1))
    assert pusher.push() == second
    assert [o.key for o in store.list(FILES) if o.key.startswith(f"{FILES}{second.version + 1:08d}")] == []
    pulled = pull(store, tmp_path / "back")
    assert pulled.manifest == second and (tmp_path / "back" / "last.pt").read_bytes() == b"epoch-2" * 1000


def test_ordered_digest_hashes_chunks_in_any_order_and_repeats() -> None:
    import hashlib

    from launcher.storage.base import OrderedDigest

    digest = OrderedDigest()
    for offset, chunk in [(4, b"efgh"), (0, b"ab"), (0, b"abcd"), (8, b"ij"), (4, b"efgh")]:
        digest.feed(offset, chunk)
    assert digest.hexdigest(10) == hashlib.sha256(b"abcdefghij").hexdigest()
    assert digest.hexdigest(11) is None  # a short transfer has no digest


def test_hashing_file_hashes_big_chunks_on_a_helper_and_waits_for_them(tmp_path: Path) -> None:
    """Chunks of BEHIND bytes or more are hashed behind the transfer; small ones and reused buffers at once."""
    import hashlib

    from launcher.storage.base import HashingFile

    big = HashingFile.BEHIND
    data = bytes(range(256)) * (3 * big // 256) + b"tail"
    src = tmp_path / "src"
    src.write_bytes(data)
    with open(src, "rb") as f:
        reader = HashingFile(f)
        while reader.read(big):
            pass
        assert reader._pending  # the last chunks are still queued for the helper
        assert reader.hexdigest(len(data)) == hashlib.sha256(data).hexdigest()
    with open(tmp_path / "dest", "wb") as f:
        writer = HashingFile(f)
        writer.write(bytearray(data[:10]))  # a buffer the caller may reuse: hashed before write returns
        writer.write(data[10 : 10 + 2 * big])
        writer.write(memoryview(data)[10 + 2 * big :])
        assert writer.hexdigest(len(data)) == hashlib.sha256(data).hexdigest()
    assert (tmp_path / "dest").read_bytes() == data


def test_push_pull_sends_only_changes(kind: StoreKind, tmp_path: Path) -> None:
    store, src = kind.store(), tmp_path / "src"
    write_files(src, fake_checkpoint(1))
    pusher = Pusher(store, src, keep=3)
    first = pusher.push()
    assert first is not None and first.version == 1 and first.epoch == 1
    assert pusher.stats.files_sent == 4
    sent = pusher.stats.bytes_sent
    assert pusher.push() == first and pusher.stats.bytes_sent == sent  # unchanged folder: 0 bytes, no version
    write_files(src, {"last.pt": b"new last", "results.csv": b"epoch,train_loss\n1,0.1\n2,0.05\n"})
    second = pusher.push()
    assert second.version == 2 and second.epoch == 2
    assert pusher.stats.bytes_sent - sent == len(b"new last") + len(b"epoch,train_loss\n1,0.1\n2,0.05\n")
    assert second.files["best.pt"] == first.files["best.pt"]  # points at version 1's copy
    result = pull(store, tmp_path / "dest")
    assert result.manifest == second and result.skipped == []
    assert files_of(tmp_path / "dest") == files_of(src)
    again = pull(store, tmp_path / "dest")
    assert again.bytes_received == 0 and again.files_reused == 4


def test_a_fresh_writer_does_not_resend_pulled_files(kind: StoreKind, tmp_path: Path) -> None:
    store = kind.store()
    write_files(tmp_path / "a", fake_checkpoint(2))
    push(store, tmp_path / "a")
    pull(store, tmp_path / "b")  # a resumed job: pulls, then its own writer starts
    pusher = Pusher(store, tmp_path / "b")
    assert pusher.push().version == 1 and pusher.stats.bytes_sent == 0


def test_keep_retains_the_newest_versions_only(kind: StoreKind, tmp_path: Path) -> None:
    store, src = kind.store(), tmp_path / "src"
    pusher = Pusher(store, src, keep=2)
    for epoch in range(1, 6):
        write_files(src, fake_checkpoint(epoch, size=1000))
        newest = pusher.push()
    assert versions_in_store(store) == [4, 5]
    used = {e.key for v in (4, 5) for e in Manifest.parse(store.get_bytes(f"{HISTORY}{v:08d}.json")).files.values()}
    listed = {o.key for o in store.list(FILES)}
    assert listed == used and {e.key for e in newest.files.values()} <= listed
    assert f"{FILES}00000003/last.pt" not in listed and f"{FILES}00000001/epoch-1.pt" in listed  # still in the folder
    assert pull(store, tmp_path / "dest").manifest == newest


@pytest.mark.parametrize("where", ["between files", "before manifest"])
def test_killed_writer_process_leaves_previous_checkpoint(kind: StoreKind, tmp_path: Path, where: str) -> None:
    store, src = kind.store(), tmp_path / "src"
    write_files(src, fake_checkpoint(1))
    push(store, src)
    write_files(src, fake_checkpoint(2))
    flag = ["--die-after-files", "1"] if where == "between files" else ["--die-before-manifest"]
    proc = subprocess.run([sys.executable, "-m", "tests.launcher.storage.writer", store.uri, str(src), *flag],
                          env=subprocess_env(kind), cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 9, proc.stderr
    assert any(o.key.startswith(f"{FILES}00000002/") for o in store.list(FILES))  # it did upload something
    result = pull(store, tmp_path / "dest")
    assert result.manifest.version == 1 and files_of(tmp_path / "dest")["last.pt"] == fake_checkpoint(1)["last.pt"]
    assert result.skipped == ["ignored files of unfinished checkpoint(s) [2]: no complete manifest lists them"]
    resumed = Pusher(store, src).push()  # the restarted writer finishes the job and cleans up
    assert resumed.version == 2 and pull(store, tmp_path / "dest2").skipped == []
    assert {o.key.split("/")[1] for o in store.list(FILES)} <= {"00000001", "00000002"}


def test_corrupt_file_falls_back_to_previous_checkpoint(kind: StoreKind, tmp_path: Path) -> None:
    store, src = kind.store(), tmp_path / "src"
    write_files(src, fake_checkpoint(1))
    push(store, src)
    write_files(src, fake_checkpoint(2))
    second = push(store, src)
    bad = tmp_path / "bad"
    bad.write_bytes(b"\0" * second.files["last.pt"].size)  # same size, wrong bytes
    store.put(second.files["last.pt"].key, bad)
    result = pull(store, tmp_path / "dest")
    assert result.manifest.version == 1
    assert "skipped checkpoint 2" in result.skipped[0] and "sha256" in result.skipped[0]
    assert files_of(tmp_path / "dest") == fake_checkpoint(1)


def test_truncated_manifest_uses_the_history_copy(kind: StoreKind, tmp_path: Path) -> None:
    store, src = kind.store(), tmp_path / "src"
    write_files(src, fake_checkpoint(1))
    push(store, src)
    write_files(src, fake_checkpoint(2))
    push(store, src)
    data = store.get_bytes(MANIFEST)
    store.put_bytes(MANIFEST, data[: len(data) // 2])
    result = pull(store, tmp_path / "dest")
    assert result.manifest.version == 2 and "manifest.json is damaged" in result.skipped[0]
    store.put_bytes(f"{HISTORY}00000002.json", data.replace(b'"epoch": 2', b'"epoch": 9'))  # edited: digest fails
    result = pull(store, tmp_path / "dest2")
    assert (
        result.manifest.version == 1 and "digest" in result.skipped[1] and len(result.skipped) == 2
    )  # not "unfinished"


def test_unsafe_keys_in_a_manifest_are_refused(kind: StoreKind, tmp_path: Path) -> None:
    store, src = kind.store(), tmp_path / "src"
    write_files(src, fake_checkpoint(1))
    good = push(store, src)
    for name, key in (("../escape.pt", good.files["last.pt"].key), ("/etc/evil", "x"), ("ok.pt", "../../x")):
        body = {**good.body(), "version": 2, "files": {name: {"key": key, "size": 1, "sha256": "0"}}}
        store.put_bytes(MANIFEST, _with_digest(body))
        result = pull(store, tmp_path / "dest" / "inner")
        assert result.manifest == good and "Refusing the checkpoint key" in result.skipped[0]
    assert not (tmp_path / "dest" / "escape.pt").exists() and sorted(p.name for p in (tmp_path / "dest").iterdir()) == [
        "inner"
    ]


def _with_digest(body: dict) -> bytes:
    from launcher.storage.manifest import _digest

    return json.dumps({**body, "digest": _digest(body)}).encode()


@pytest.mark.parametrize("target", ["local", "s3", "gcs", "azure"])
def test_copy_between_any_two_stores(
    kind: StoreKind, target: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    dst_kind = (
        StoreKind("local", str(tmp_path / "other"), None, None)
        if target == "local"
        else request.getfixturevalue(f"{target}_kind")
    )
    src_store, dst_store = kind.store(), dst_kind.store()
    write_files(tmp_path / "src", fake_checkpoint(3))
    original = push(src_store, tmp_path / "src", spec_hash="abc")
    result = copy(src_store, dst_store)
    copied = pull(dst_store, tmp_path / "dest").manifest
    assert result.manifest == original
    assert (copied.epoch, copied.spec_hash, copied.size) == (3, "abc", original.size)
    assert files_of(tmp_path / "dest") == fake_checkpoint(3)


def test_throttling_and_5xx_are_retried(remote_kind: StoreKind, tmp_path: Path) -> None:
    write_files(tmp_path / "src", fake_checkpoint(1))
    with FaultProxy(remote_kind.endpoint, fail=4) as proxy:
        retry = RetryPolicy(sleep=lambda _s: None)
        store = remote_kind.store(endpoint=proxy.endpoint, retry=retry)
        manifest = push(store, tmp_path / "src")
        assert pull(store, tmp_path / "dest").manifest == manifest
    assert proxy.failed == 4 and proxy.forwarded > 0
    assert files_of(tmp_path / "dest") == fake_checkpoint(1)


def test_gcs_large_files_stream_in_one_request_and_a_corrupted_one_is_sent_again(
    gcs_kind: StoreKind, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Above MULTIPART_MAX a file is one resumable session and one streamed PUT; the crc32c GCS
    computes is checked against ours, so a body damaged on the way is detected and uploaded again."""
    from launcher.storage import gcs

    monkeypatch.setattr(gcs, "MULTIPART_MAX", 64 << 10)
    monkeypatch.setattr(gcs, "READ", 16 << 10)
    files = {"last.pt": os.urandom(300 << 10), "results.csv": b"epoch\n1\n"}
    write_files(tmp_path / "src", files)
    with FaultProxy(gcs_kind.endpoint, fail=0, corrupt=1, corrupt_min=64 << 10) as proxy:
        retry = RetryPolicy(sleep=lambda _s: None)
        manifest = push(gcs_kind.store("run", endpoint=proxy.endpoint, retry=retry), tmp_path / "src")
    assert proxy.corrupted == 1 and retry.retries == 1  # the damaged body, sent again
    assert manifest.files["last.pt"].sha256 == hashlib.sha256(files["last.pt"]).hexdigest()
    assert pull(gcs_kind.store("run"), tmp_path / "dest").manifest == manifest
    assert files_of(tmp_path / "dest") == files


def test_gcs_a_corrupted_upload_is_an_error_when_not_retried(
    gcs_kind: StoreKind, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The control for the test above: without retries the mismatch surfaces; nothing is reported as sent."""
    from launcher.storage import gcs

    monkeypatch.setattr(gcs, "MULTIPART_MAX", 64 << 10)
    (tmp_path / "big.pt").write_bytes(os.urandom(200 << 10))
    with FaultProxy(gcs_kind.endpoint, fail=0, corrupt=1, corrupt_min=64 << 10) as proxy:
        store = gcs_kind.store(endpoint=proxy.endpoint, retry=RetryPolicy(attempts=1))
        with pytest.raises(gcs.UploadMismatch, match="crc32c"):
            store.put("big.pt", tmp_path / "big.pt")
    assert proxy.corrupted == 1


@pytest.mark.parametrize("name", ["s3", "azure"])
def test_without_retries_the_injected_faults_surface(name: str, request: pytest.FixtureRequest) -> None:
    """The control for the test above: the proxy's errors do reach our layer (SDK retries are off)."""
    remote = request.getfixturevalue(f"{name}_kind")
    with FaultProxy(remote.endpoint, fail=1) as proxy:
        store = remote.store(endpoint=proxy.endpoint, retry=RetryPolicy(attempts=1))
        with pytest.raises(Exception) as info:
            store.get_bytes(MANIFEST)
    assert not isinstance(info.value, LauncherError)
    assert proxy.failed == 1
