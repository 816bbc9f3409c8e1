"""The one interface every checkpoint store implements: list, put, get, delete.

A store is rooted at a URI (`s3://bucket/prefix`, `gs://...`, `az://container/prefix`
or a local folder); keys are relative, `/`-separated paths under that root.
Stores move whole files between a local path and a key; everything above
that (manifests, versions, retention, verification) lives in
`launcher.storage.manifest` and `launcher.storage.sync`, written once for all
stores.

Keys are checked by `check_key` on every call: a key with `..`, an absolute
path, a backslash or an empty segment is refused, so a hostile listing or
manifest can never make a pull write outside its destination folder.
"""

from __future__ import annotations

import hashlib
import io
import threading
from abc import ABC, abstractmethod
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterable

from launcher.errors import LauncherError
from launcher.storage.retry import RetryPolicy

__all__ = [
    "Store",
    "CloudStore",
    "ObjectInfo",
    "Progress",
    "UnsafeKeyError",
    "MissingObjectError",
    "check_key",
    "safe_local_path",
    "sha256_file",
    "CHUNK",
    "OrderedDigest",
    "HashingFile",
]

# Called with the number of bytes moved since the last call.
Progress = Callable[[int], None]

CHUNK = 8 * 1024 * 1024


class UnsafeKeyError(LauncherError):
    """A key that could escape its folder (`..`, absolute, drive letter, backslash)."""


class MissingObjectError(LauncherError):
    """`get` of a key that is not in the store (every store raises this, whatever its SDK says)."""

    def __init__(self, url: str) -> None:
        super().__init__(
            f"{url} is missing from the store.", "Something deleted it; readers fall back to an older checkpoint."
        )
        self.url = url


@dataclass(frozen=True)
class ObjectInfo:
    """One stored object: its key relative to the store root, size, and the store's own checksum if any."""

    key: str
    size: int
    checksum: str | None = None


def check_key(key: str) -> str:
    """Return `key` if it is a safe relative path, else raise UnsafeKeyError."""
    bad = (
        not key
        or key.startswith("/")
        or "\\" in key
        or "\x00" in key
        or (len(key) > 1 and key[1] == ":")
        or any(part in ("", ".", "..") for part in key.split("/"))
    )
    if bad:
        raise UnsafeKeyError(
            f"Refusing the checkpoint key {key!r}: keys must be relative paths without '..', '.', or empty parts.",
            "The manifest or listing was written by something other than this launcher; check the store.",
        )
    return key


def safe_local_path(root: Path, key: str) -> Path:
    """`root/key`, guaranteed to stay inside `root` (symlinks included)."""
    check_key(key)
    root = Path(root).resolve()
    target = (root / PurePosixPath(key)).resolve()
    if root != target and root not in target.parents:
        raise UnsafeKeyError(f"Refusing to write {key!r} outside {root}.", "Remove symlinks in the destination folder.")
    return target


def sha256_file(path: Path, progress: Progress | None = None) -> str:
    """The file's sha256, read in 8 MiB chunks (hashlib releases the GIL on big buffers)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
            if progress:
                progress(len(chunk))
    return digest.hexdigest()


class OrderedDigest:
    """The sha256 (and any `also` hashers, like GCS's crc32c) of bytes that arrive at offsets, in any order, perhaps twice.

    SDKs that move chunks in parallel read or write them out of order, and a
    retried transfer reads or writes them again; bytes that continue the
    hashed prefix are hashed at once, bytes already hashed are skipped, later
    ones wait in memory (a few chunks at most) until the gap before them fills.
    """

    def __init__(self, sha256: bool = True, also: tuple[Any, ...] = ()) -> None:
        self._sha = hashlib.sha256() if sha256 else None
        self.also = also
        self.done = 0
        self._waiting: dict[int, bytes] = {}
        self._lock = threading.Lock()

    def feed(self, offset: int, data: Any) -> None:
        with self._lock:
            if offset > self.done:
                self._waiting[offset] = bytes(data)
                return
            self._take(offset, data)
            while self._waiting and min(self._waiting) <= self.done:
                start = min(self._waiting)
                self._take(start, self._waiting.pop(start))

    def _take(self, offset: int, data: Any) -> None:
        skip = self.done - offset  # bytes already hashed (a chunk sent or written again)
        if skip < len(data):
            view = memoryview(data)[skip:]
            if self._sha is not None:
                self._sha.update(view)
            for hasher in self.also:  # crc32c takes bytes only
                hasher.update(data if skip == 0 and isinstance(data, bytes) else bytes(view))
            self.done += len(data) - skip

    def complete(self, size: int) -> bool:
        """True when exactly `size` bytes were seen without a gap."""
        return self.done == size and not self._waiting

    def hexdigest(self, size: int) -> str | None:
        """The sha256 when exactly `size` bytes were seen without a gap, else None."""
        return self._sha.hexdigest() if self._sha is not None and self.complete(size) else None


class HashingFile(io.RawIOBase):
    """A file wrapper for SDK calls: hashes what is read or written (at its offset) and reports progress.

    `seekable=False` makes SDKs that read blocks in parallel from a seekable
    file read it once, in order, and only send in parallel. Chunks of at
    least `BEHIND` bytes are hashed on a helper thread while the SDK sends
    or the next one arrives (hashlib releases the GIL), so the transfer does
    not wait for the hash; `hexdigest` waits for it. `also`: more hashers fed
    the same bytes in order (GCS's crc32c).
    """

    BEHIND = 1 << 20

    def __init__(self, raw: Any, progress: Progress | None = None, seekable: bool = True, hashing: bool = True,
                 also: tuple[Any, ...] = ()) -> None:  # fmt: skip
        self.raw, self.progress, self._seekable, self._hashing = raw, progress, seekable, hashing or bool(also)
        self.digest = OrderedDigest(sha256=hashing, also=also)
        self._pos = raw.tell()  # kept here: a buffered file's tell() is a system call per 8 KiB chunk
        self._helper: ThreadPoolExecutor | None = None
        self._pending: list[Future[None]] = []

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return self._seekable

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self._feed(data)
        self._pos += len(data)
        self._report(len(data))
        return data

    def write(self, data: Any) -> int:
        self._feed(data)
        written = self.raw.write(data)
        self._pos += written
        self._report(len(data))
        return written

    def _feed(self, data: Any) -> None:
        if not self._hashing:
            return
        if not isinstance(data, bytes) or len(data) < self.BEHIND:  # small, or a buffer the caller may reuse
            self.digest.feed(self._pos, data)
            return
        if self._helper is None:
            self._helper = ThreadPoolExecutor(1, thread_name_prefix="sha256")
        if len(self._pending) >= 2:  # at most two chunks held for hashing
            self._pending.pop(0).result()
        self._pending.append(self._helper.submit(self.digest.feed, self._pos, data))

    def wait(self) -> None:
        """Until the helper has hashed every chunk handed to it."""
        for pending in self._pending:
            pending.result()
        self._pending.clear()
        if self._helper is not None:
            self._helper.shutdown()
            self._helper = None

    def hexdigest(self, size: int) -> str | None:
        """The sha256 of the `size` bytes moved (None if there was a gap), once the helper has hashed them all."""
        self.wait()
        return self.digest.hexdigest(size)

    def _report(self, n: int) -> None:
        if self.progress and n:
            self.progress(n)

    def seek(self, offset: int, whence: int = 0) -> int:
        self._pos = self.raw.seek(offset, whence)
        return self._pos

    def tell(self) -> int:
        return self._pos


class Store(ABC):
    """A place that holds objects under keys. Implementations only move bytes."""

    scheme: str = ""
    hashes_put = False  # True: `put` returns the sha256 of the bytes it read in `checksum` (one read, not two)

    def __init__(self, uri: str) -> None:
        self.uri = uri.rstrip("/")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r})"

    def url(self, key: str) -> str:
        """The full URI of a key, for messages."""
        return f"{self.uri}/{key}" if key else self.uri

    @abstractmethod
    def list(self, prefix: str = "") -> list[ObjectInfo]:
        """Every object whose key starts with `prefix` (a folder, like `files/`)."""

    def count(self, limit: int, prefix: str = "") -> int:
        """How many objects `list(prefix)` would give, counting no further than `limit` (a cloud store stops
        asking for pages there: a cheap "more than N?" on a bucket of millions)."""
        return min(len(self.list(prefix)), limit)

    @abstractmethod
    def put(self, key: str, src: Path, progress: Progress | None = None, sha256: str | None = None) -> ObjectInfo:
        """Upload the file `src` to `key`, replacing any object there (`hashes_put`: with its sha256).

        `sha256`: the file's hash when the caller has already read it; the store
        does not hash the bytes again and returns it as is.
        """

    @abstractmethod
    def get(self, key: str, dest: Path, progress: Progress | None = None) -> str | None:
        """Download `key` into the file `dest` (the caller makes it atomic and verifies it).

        Returns the sha256 of the bytes written when the store computed it on
        the way (saves the caller a second read), else None. Raises
        MissingObjectError when the key does not exist.
        """

    @abstractmethod
    def put_bytes(self, key: str, data: bytes) -> None:
        """Write a small object (a manifest) in one request, so readers see all of it or none."""

    @abstractmethod
    def get_bytes(self, key: str) -> bytes | None:
        """A small object's content, or None when it does not exist."""

    def put_bytes_new(self, key: str, data: bytes) -> bool:
        """Write a small object only if `key` does not exist yet; False when it does (the lease of a run).

        Each store overrides this with its own atomic create (S3 If-None-Match, GCS
        ifGenerationMatch=0, Azure If-None-Match: *, a hard link locally); this
        fallback checks then writes, which is racy.
        """
        if self.get_bytes(key) is not None:
            return False
        self.put_bytes(key, data)
        return True

    @abstractmethod
    def delete(self, keys: Iterable[str]) -> None:
        """Delete these keys; missing ones are ignored."""

    @abstractmethod
    def sub(self, folder: str) -> "Store":
        """The same store, same client, rooted one folder deeper (`<uri>/<folder>`)."""


class CloudStore(Store):
    """What the bucket stores share: a lazily created SDK client, retries, a prefix.

    `uri` is `<scheme>://<bucket or container>/<prefix>`; subclasses set
    `scheme` and `default_concurrency` and implement `default_client()`.
    """

    default_concurrency = 8

    def __init__(
        self, uri: str, client: Any = None, retry: RetryPolicy | None = None, concurrency: int | None = None
    ) -> None:
        super().__init__(uri)
        self.bucket, _, prefix = self.uri[len(self.scheme) + 3 :].partition("/")
        self.prefix = prefix.strip("/")
        self._client = client
        self.retry = retry or RetryPolicy()
        self.concurrency = concurrency or self.default_concurrency

    @staticmethod
    @abstractmethod
    def default_client() -> Any:
        """The SDK client from the SDK's standard credential chain."""

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self.default_client()
        return self._client

    def sub(self, folder: str) -> "CloudStore":
        return type(self)(f"{self.uri}/{check_key(folder)}", self._client, self.retry, self.concurrency)

    def name(self, key: str) -> str:
        """The object name of a (checked) key under this store's prefix."""
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _delete_each(
        self, keys: Iterable[str], delete: Callable[[str], object], not_found: type[BaseException]
    ) -> None:
        for key in keys:
            try:
                self.retry.call(lambda k=key: delete(k), f"delete {self.url(key)}")
            except not_found:
                pass
