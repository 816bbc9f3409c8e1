"""Key safety, manifest integrity and retry classification: the pure parts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from launcher.errors import LauncherError
from launcher.storage import open_store
from launcher.storage.base import UnsafeKeyError, check_key, safe_local_path
from launcher.storage.manifest import FileEntry, Manifest, ManifestError
from launcher.storage.retry import RetryPolicy, is_retryable


@pytest.mark.parametrize("key", ["../x", "a/../../x", "/etc/passwd", "a//b", "./a", "C:/x", "a\\..\\x", "", "a/.."])
def test_unsafe_keys_are_refused(key: str) -> None:
    with pytest.raises(UnsafeKeyError):
        check_key(key)


@pytest.mark.parametrize("key", ["last.pt", "files/00000001/last.pt", "a/b..c/d", "..x"])
def test_safe_keys_pass(key: str) -> None:
    assert check_key(key) == key


def test_a_symlink_cannot_lead_a_pull_outside_its_folder(tmp_path: Path) -> None:
    (tmp_path / "dest").mkdir()
    os.symlink(tmp_path / "elsewhere", tmp_path / "dest" / "link")
    with pytest.raises(UnsafeKeyError):
        safe_local_path(tmp_path / "dest", "link/file.pt")
    assert safe_local_path(tmp_path / "dest", "sub/file.pt") == (tmp_path / "dest" / "sub" / "file.pt").resolve()


def test_local_store_refuses_unsafe_keys_on_every_call(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "store"))
    (tmp_path / "f").write_bytes(b"x")
    for call in (lambda: store.put("../f", tmp_path / "f"), lambda: store.get_bytes("/etc/passwd"),
                 lambda: store.put_bytes("a/../../b", b""), lambda: store.delete(["../f"])):  # fmt: skip
        with pytest.raises(UnsafeKeyError):
            call()
    assert (tmp_path / "f").exists()


def test_manifest_round_trip_and_digest() -> None:
    m = Manifest(3, {"last.pt": FileEntry("files/00000003/last.pt", 10, "ab" * 32)}, 2, 100, 1.5, "h", {"host": "x"})
    assert Manifest.parse(m.to_bytes()) == m
    with pytest.raises(ManifestError, match="digest"):
        Manifest.parse(m.to_bytes().replace(b'"epoch": 2', b'"epoch": 3'))
    with pytest.raises(ManifestError, match="damaged"):
        Manifest.parse(m.to_bytes()[:-20])


class _ClientError(Exception):
    def __init__(self, status: int, code: str = "") -> None:
        self.response = {"ResponseMetadata": {"HTTPStatusCode": status}, "Error": {"Code": code}}


class _HttpResponseError(Exception):
    def __init__(self, status_code: int) -> None:
        self.status_code = status_code


class _GoogleError(Exception):
    code = 429


@pytest.mark.parametrize(("exc", "retry"), [
    (_ClientError(503, "SlowDown"), True), (_ClientError(400, "Throttling"), True), (_ClientError(404, "NoSuchKey"), False),
    (_ClientError(403, "AccessDenied"), False), (_HttpResponseError(500), True), (_HttpResponseError(409), False),
    (_GoogleError(), True), (ConnectionResetError(), True), (ValueError("bug"), False),
    (LauncherError("ours"), False),
])  # fmt: skip
def test_what_is_retried(exc: Exception, retry: bool) -> None:
    assert is_retryable(exc) is retry


def test_retry_backs_off_then_gives_up() -> None:
    sleeps: list[float] = []
    policy = RetryPolicy(attempts=4, base=1.0, cap=3.0, sleep=sleeps.append)
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise _HttpResponseError(503)
        return "ok"

    assert policy.call(flaky) == "ok" and policy.retries == 2 and len(sleeps) == 2 and max(sleeps) <= 3.0
    with pytest.raises(_HttpResponseError):
        RetryPolicy(attempts=3, sleep=sleeps.append).call(lambda: (_ for _ in ()).throw(_HttpResponseError(500)))
    with pytest.raises(ValueError):
        RetryPolicy(sleep=lambda _s: pytest.fail("a 4xx-like error must not be retried")).call(
            lambda: (_ for _ in ()).throw(ValueError("x"))
        )
