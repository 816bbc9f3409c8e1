"""Remote training data (s3://, gs://, az://) pulled into a node-local cache, verified, reused.

    root = fetch("s3://bucket/digits", cache)   # -> <cache>/<id>/data, an ImageFolder on local disk

The trainer reads a local folder; when `train.data` is a URI the platform
does not mount, the entrypoint (once per node, before torchrun) calls
`fetch`. The cache for one URI is `<cache>/<sha256(uri)[:16]>/`:

    data/        the objects, keys as relative paths (each written to a temp file, then renamed)
    .complete    JSON: the URI and, per file, [size, etag, mtime_ns] -- written LAST

A later run (a restart on the same node, a second job) lists the URI again
and reuses the cache when the listing still matches `.complete` (same keys,
sizes, etags) and every local file still has its recorded size and mtime; a
file that changed on either side is fetched again, files no longer listed
are removed, and only then is `.complete` rewritten. A crash mid-fetch
leaves no `.complete`, so the next run checks and completes the folder. When
the store cannot be listed (no network, no credentials), a complete cache is
used as it is, with a warning. A file lock keeps two processes on one node
from fetching the same URI at once.

While data is staged, node 0 tells `launch status` how far it got
(`StagingProgress`): the record the trainer writes while it streams a packed
dataset (launcher.runtime.train.stream.DataProgress), with `phase` listing, then fetching
(this module, object by object), unpacking (a packed dataset's shards, unpacked
for the ultralytics engine) or staged (done). The entrypoint stages the data
before it pulls the checkpoint and starts the checkpoint syncer (which copies
the trainer's record to the run folder later), so the staging record is written
straight to `data-progress.json` in the run folder of the checkpoint store
(`run_folder_writer`: a local store writes a temp file and renames it, an object
PUT is whole): one small write at the start, at most one every few seconds, one
at the end; a failed write is skipped, never an error.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from launcher.errors import LauncherError
from launcher.storage import RetryPolicy, open_store
from launcher.storage.base import ObjectInfo, Store, UnsafeKeyError, check_key, safe_local_path
from launcher.storage.manifest import DATA_PROGRESS

__all__ = ["FetchResult", "ImageCount", "StagingProgress", "run_folder_writer", "fetch", "count_images", "cache_folder",
           "listing", "unreadable", "COMPLETE"]  # fmt: skip

IMAGE_SUFFIXES = (
    ".jpg",
    ".jpeg",
    ".png",
    ".ppm",
    ".bmp",
    ".pgm",
    ".tif",
    ".tiff",
    ".webp",
)  # as launcher.runtime.train.data reads
COMPLETE = ".complete"
WORKERS = 8

Log = Callable[[str], None]


def _print(message: str) -> None:
    print(f"[launcher] {message}", flush=True)


@dataclass
class FetchResult:
    root: Path
    files: int = 0
    downloaded: int = 0  # files fetched this time
    bytes_received: int = 0
    removed: int = 0
    reused: bool = False  # the whole cache was valid: nothing fetched


class StagingProgress:
    """How far node 0 has got staging `train.data`, as `{"phase", "uri", "files", "files_total", "shards",
    "shards_total", "bytes", "bytes_total", "seconds", "time"}` (whole JSON) passed to `write`: at `start`, after
    an item when `every` seconds have passed since the last write, and at `finish` (phase `staged`). `seconds`
    counts from when staging began (this object made), listing included. Three failed writes in a row end the
    record: progress must not slow the staging down."""

    UNITS = ("files", "shards")

    def __init__(self, write: Callable[[bytes], None], every: float = 5.0, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:  # fmt: skip
        self.write, self.every, self.clock, self.wall = write, every, clock, wall
        self.began = clock()
        self.record: dict[str, Any] = {}
        self.unit = "files"
        self._last: float | None = None
        self._failures = 0

    def start(self, phase: str, uri: str, unit: str, total: int, bytes_total: int, done: int = 0,
              done_bytes: int = 0) -> None:  # fmt: skip
        """A phase begins: `total` items (`unit`: files or shards) of `bytes_total` bytes, `done` of them here."""
        self.unit = unit
        self.record = {"phase": phase, "uri": uri.rstrip("/"), **{u: 0 for u in self.UNITS},
                       **{f"{u}_total": 0 for u in self.UNITS}, unit: done, f"{unit}_total": total,
                       "bytes": done_bytes, "bytes_total": bytes_total}  # fmt: skip
        self._save(force=True)

    def advance(self, size: int) -> None:
        """One more item (of `size` bytes) is on the node's disk."""
        self.record[self.unit] += 1
        self.record["bytes"] += size
        self._save()

    def finish(self) -> None:
        """Staging is done: every item is here."""
        if not self.record:
            return  # nothing was staged (no phase started)
        self.record.update({"phase": "staged", self.unit: self.record[f"{self.unit}_total"]},
                           bytes=self.record["bytes_total"])  # fmt: skip
        self._save(force=True)

    def _save(self, force: bool = False) -> None:
        now = self.clock()
        if self._failures >= 3 or (not force and self._last is not None and now - self._last < self.every):
            return
        self._last = now
        body = {**self.record, "seconds": round(now - self.began, 3), "time": round(self.wall(), 3)}
        try:
            self.write(json.dumps(body).encode())
            self._failures = 0
        except Exception:  # noqa: BLE001 - a nicety: an unreachable store must not stop the staging
            self._failures += 1


def run_folder_writer(run_uri: str) -> Callable[[bytes], None]:
    """Writes a data progress record to `data-progress.json` in a run folder (opened at the first write, with
    few retries: `launch status` reads it there)."""
    opened: list[Store] = []

    def write(body: bytes) -> None:
        if not opened:
            opened.append(open_store(run_uri, retry=RetryPolicy(attempts=2)))
        opened[0].put_bytes(DATA_PROGRESS, body)

    return write


def cache_folder(uri: str, cache: Path) -> Path:
    """The cache folder of one URI (a hash, so any URI makes a safe, short folder name)."""
    return Path(cache) / hashlib.sha256(uri.rstrip("/").encode()).hexdigest()[:16]


def listing(store: Store) -> dict[str, ObjectInfo]:
    """The dataset's files: every object under the URI except folder markers and unsafe keys."""
    found = {}
    for obj in store.list(""):
        if obj.key.endswith("/") or not obj.key:
            continue  # "folder" placeholder objects some tools create
        try:
            found[check_key(obj.key)] = obj
        except UnsafeKeyError:
            continue  # never written outside the cache folder
    return dict(sorted(found.items()))


@dataclass(frozen=True)
class ImageCount:
    """What `launch estimate` needs of a remote ImageFolder: images per split and total bytes."""

    train: int
    val: int
    bytes: int
    files: int = 0  # objects listed (a plain folder: one per image)
    packed: bool = False  # a packed dataset (index.json + shards): counted from its index
    first_bytes: int = 0  # packed: the largest shard, what the first step waits for


def count_images(store: Store) -> ImageCount:
    """Count the images under `train/` and `val/` by listing the store (no object is read); a packed
    dataset's counts come from its index (one small GET)."""
    counts = {"train": 0, "val": 0}
    total = 0
    found = listing(store)
    if "index.json" in found:
        from launcher.storage.shards import read_index  # noqa: PLC0415

        index = read_index(store)
        if index is not None:
            first = max((s.bytes for s in index.shards()), default=0)
            return ImageCount(index.samples("train"), index.samples("val"), index.bytes(), len(found), True, first)
    for key, obj in found.items():
        total += obj.size
        split = key.split("/", 1)[0]
        if split in counts and key.lower().endswith(IMAGE_SUFFIXES):
            counts[split] += 1
    return ImageCount(counts["train"], counts["val"], total, len(found))


def fetch(
    uri: str, cache: Path, store: Store | None = None, log: Log = _print, progress: StagingProgress | None = None
) -> FetchResult:
    """Make `<cache>/<id>/data` an exact, verified copy of the objects under `uri`; returns where it is.
    `progress`: node 0's record for `launch status` (phase fetching, then staged)."""
    store = store or open_store(uri)
    folder = cache_folder(uri, cache)
    folder.mkdir(parents=True, exist_ok=True)
    with _locked(folder / ".lock"):
        result = _fetch_locked(uri, store, folder, log, progress)
    if progress is not None:
        progress.finish()
    return result


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def unreadable(uri: str, exc: BaseException) -> LauncherError:
    """The one line for training data this machine (or the job) cannot list or read: no credentials, no network."""
    return LauncherError(
        f"Could not list the training data at {uri}: {type(exc).__name__}: {str(exc).rstrip('.')}.",
        "Check the URI and that this machine (or the job) has credentials to read it.",
    )


def _fetch_locked(uri: str, store: Store, folder: Path, log: Log, progress: StagingProgress | None) -> FetchResult:
    data = folder / "data"
    done = _read_complete(folder, uri)
    if progress is not None:  # listing 200,000 objects takes minutes: say so meanwhile
        progress.start("listing", uri, "files", 0, 0)
    try:
        remote = listing(store)
    except Exception as exc:  # noqa: BLE001 - any SDK error: fall back to a complete cache
        if done is not None and not _stale_files(data, done):
            log(f"could not list {uri} ({type(exc).__name__}: {exc}); using the cached copy in {data}")
            _all_cached(progress, uri, [entry[0] for entry in done.values()])
            return FetchResult(data, len(done), reused=True)
        raise unreadable(uri, exc) from None
    if not remote:
        raise LauncherError(
            f"The training data URI {uri} holds no files.", "Check the URI (bucket and prefix) in train.data."
        )
    if done is not None and _same_listing(done, remote) and not _stale_files(data, done):
        log(f"training data: reusing {len(remote)} cached files of {uri} in {data}")
        _all_cached(progress, uri, [o.size for o in remote.values()])
        return FetchResult(data, len(remote), reused=True)
    return _refresh(uri, store, folder, remote, done or {}, log, progress)


def _all_cached(progress: StagingProgress | None, uri: str, sizes: list[int]) -> None:
    if progress is not None:  # nothing to fetch: the record starts with every file here (`fetch` ends it)
        progress.start("fetching", uri, "files", len(sizes), sum(sizes), len(sizes), sum(sizes))


def _read_complete(folder: Path, uri: str) -> dict[str, list[Any]] | None:
    try:
        body = json.loads((folder / COMPLETE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(body, dict) or body.get("uri") != uri.rstrip("/") or not isinstance(body.get("files"), dict):
        return None
    return body["files"]


def _same_listing(done: dict[str, list[Any]], remote: dict[str, ObjectInfo]) -> bool:
    return done.keys() == remote.keys() and all(done[k][:2] == [o.size, o.checksum] for k, o in remote.items())


def _stale_files(data: Path, done: dict[str, list[Any]]) -> list[str]:
    """Cached files missing or changed since they were written (size or mtime differs)."""
    stale = []
    for key, (size, _etag, mtime_ns) in done.items():
        try:
            st = safe_local_path(data, key).stat()
        except (OSError, UnsafeKeyError):
            stale.append(key)
            continue
        if st.st_size != size or st.st_mtime_ns != mtime_ns:
            stale.append(key)
    return stale


def _refresh(uri: str, store: Store, folder: Path, remote: dict[str, ObjectInfo], done: dict[str, list[Any]], log: Log,
             progress: StagingProgress | None) -> FetchResult:  # fmt: skip
    """Fetch what is missing or changed, remove what is gone, then write `.complete`."""
    data = folder / "data"
    (folder / COMPLETE).unlink(missing_ok=True)  # from here until the end the cache is not trusted
    stale = set(_stale_files(data, done))
    keep = {k for k, o in remote.items() if k in done and k not in stale and done[k][:2] == [o.size, o.checksum]}
    todo = [k for k in remote if k not in keep]
    total = sum(remote[k].size for k in todo)
    log(f"training data: fetching {len(todo)} of {len(remote)} files ({total / 1e6:.1f} MB) from {uri} into {data}")
    if progress is not None:
        progress.start("fetching", uri, "files", len(remote), sum(o.size for o in remote.values()), len(keep),
                       sum(remote[k].size for k in keep))  # fmt: skip
    started = time.monotonic()
    with ThreadPoolExecutor(WORKERS) as pool:
        for key, _ in zip(todo, pool.map(lambda k: _get(store, k, remote[k], data), todo)):
            if progress is not None:
                progress.advance(remote[key].size)
    removed = _remove_extra(data, set(remote))
    files = {k: [o.size, o.checksum, safe_local_path(data, k).stat().st_mtime_ns] for k, o in remote.items()}
    _write_atomic(folder / COMPLETE, json.dumps({"uri": uri.rstrip("/"), "files": files}).encode())
    log(f"training data: {len(todo)} files fetched in {time.monotonic() - started:.1f}s, "
        f"{len(keep)} reused, {removed} removed")  # fmt: skip
    return FetchResult(data, len(remote), len(todo), total, removed)


def _get(store: Store, key: str, obj: ObjectInfo, data: Path) -> None:
    """Download one object next to its place, check its size, then rename it into place."""
    dest = safe_local_path(data, key)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.part")
    try:
        store.get(key, tmp)
        size = tmp.stat().st_size
        if size != obj.size:
            raise LauncherError(f"{store.url(key)} arrived with {size} bytes; the listing says {obj.size}.",
                                "Retry; if it persists the object is being rewritten while the job starts.")  # fmt: skip
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _remove_extra(data: Path, keys: set[str]) -> int:
    removed = 0
    if not data.is_dir():
        return 0
    for path in sorted(data.rglob("*"), reverse=True):
        if path.is_file() or path.is_symlink():
            if path.relative_to(data).as_posix() not in keys:
                path.unlink()
                removed += 1
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    return removed


def _write_atomic(path: Path, body: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(body)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
