"""Push, pull and copy checkpoints; the background Syncer the container entrypoint runs.

    pull_latest(uri, run, dest)          newest complete checkpoint -> dest (verified), or nothing
    Syncer(uri, run, save_dir, keep=3)   node 0: upload each new checkpoint the trainer writes
    push(store, folder) / copy(src, dst) what `launch ckpt push|cp` and `--resume-from` use

Reads trust only manifests (launcher.storage.manifest) and verify every
file's size and sha256; a damaged manifest or file makes the reader fall
back to the previous complete checkpoint and say what it skipped. Writes
send only files that changed since the newest manifest (an unchanged file is
never re-sent), then the manifest.

`scratch` (optional everywhere) is where this module keeps its own files:
the sync state, staging copies and partial downloads. By default they live
in the checkpoint folder itself, as dot-files; the entrypoint puts them in a
hidden sibling folder instead, so a folder the platform mirrors (SageMaker's
/opt/ml/checkpoints) holds only the trainer's files.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

from launcher.errors import LauncherError
from launcher.storage import join_uri, open_store
from launcher.storage.base import MissingObjectError, Store, safe_local_path, sha256_file
from launcher.storage.lease import LEASE
from launcher.storage.local import LocalStore
from launcher.storage.manifest import (
    DATA_PROGRESS,
    FILES,
    RATE_FILE,
    FileEntry,
    Manifest,
    ManifestError,
    candidates,
    file_key,
    retain,
    versions_in_store,
    write_manifest,
    writer_info,
)

RUN_FILES = {LEASE, RATE_FILE, DATA_PROGRESS}  # a run folder's own files beside its checkpoints

__all__ = [
    "point",
    "named",
    "synced_line",
    "size_text",
    "Meter",
    "PullResult",
    "PushStats",
    "Pusher",
    "Syncer",
    "CorruptCheckpointError",
    "pull",
    "pull_latest",
    "finished_checkpoint",
    "push",
    "copy",
    "newest",
    "scan",
    "STATE_FILE",
]

STATE_FILE = ".launcher-sync.json"
TRIGGER = "last.pt"
STAGE_COPY_BELOW = 16 * 1024 * 1024  # files smaller than this are copied when staged, larger ones hard-linked
WORKERS = 4
# a rewritten file of the same size below this is hashed first, so identical bytes are not sent again; a larger one
# (a rewritten last.pt: new weights, the same size) is hashed while it goes up, so each byte is read once
HASH_FIRST_BELOW = 8 * 1024 * 1024

Log = Callable[[str], None]


def point(manifest: Any) -> str:
    """Where a checkpoint is, as a user reads it: `epoch 3`, `step 120` (a program of one's own that records
    steps), or `no epoch or step recorded` -- never `epoch None`."""
    if manifest.epoch is not None:
        return f"epoch {manifest.epoch}"
    return f"step {manifest.step}" if manifest.step is not None else "no epoch or step recorded"


def named(manifest: Any) -> str:
    """`checkpoint 2 (epoch 1)`, `checkpoint 3 (step 40)`; a checkpoint whose program records neither epoch nor
    step is named by its number alone (issue 34: `(no epoch or step recorded)` in every line told a user nothing)."""
    recorded = manifest.epoch is not None or manifest.step is not None
    return f"checkpoint {manifest.version}" + (f" ({point(manifest)})" if recorded else "")


def synced_line(manifest: Any, uri: str, sent: int, seconds: float) -> str:
    """`checkpoint 2 (epoch 1) synced to URI: 213.6 MiB sent in 0.7s`."""
    return f"{named(manifest)} synced to {uri}: {size_text(sent)} sent in {seconds:.1f}s"


def size_text(n: int) -> str:
    """Bytes as a person reads them: `88 bytes`, `4.6 KiB`, `213.6 MiB`, `1.2 GiB`."""
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} byte" if n == 1 else f"{n} bytes"


def _print(message: str) -> None:
    print(f"[launcher] {message}", flush=True)


class Meter(Protocol):
    """Progress for a transfer: the CLI draws a bar, the entrypoint draws nothing."""

    def begin(self, total: int, description: str) -> None: ...

    def advance(self, n: int) -> None: ...


class _NoMeter:
    def begin(self, total: int, description: str) -> None:
        pass

    def advance(self, n: int) -> None:
        pass


class CorruptCheckpointError(LauncherError):
    """A file whose size or sha256 does not match its manifest."""


# ------------------------------------------------------------------ local folder


def scan(folder: Path) -> dict[str, os.stat_result]:
    """The checkpoint files in `folder`: everything but dot-files and temp files (*.tmp, *.part)."""
    found = {}
    folder = Path(folder)
    if not folder.is_dir():
        return found
    for dirpath, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if name.startswith(".") or name.endswith((".tmp", ".part")):
                continue
            path = Path(dirpath) / name
            found[path.relative_to(folder).as_posix()] = path.stat()
    return dict(sorted(found.items()))


def read_progress(folder: Path) -> tuple[int | None, int | None]:
    """(epoch, step) of the checkpoint in `folder`, read cheaply from the trainer's results files."""
    epoch = step = None
    try:
        data = json.loads((folder / "results.json").read_text())
        epoch, step = data.get("epoch"), data.get("step")
    except (OSError, ValueError, AttributeError):
        pass
    if epoch is None:
        try:
            rows = (folder / "results.csv").read_text().strip().splitlines()
            header = rows[0].split(",")
            epoch = int(float(rows[-1].split(",")[header.index("epoch")])) if len(rows) > 1 else None
        except (OSError, ValueError, IndexError):
            pass
    return epoch, step


class LocalState:
    """What the folder's files were when last synced (size, mtime, sha256), so unchanged ones are not re-hashed."""

    def __init__(self, folder: Path, scratch: Path | None = None) -> None:
        self.path = Path(scratch or folder) / STATE_FILE
        try:
            self.files: dict[str, list[Any]] = json.loads(self.path.read_text())["files"]
        except (OSError, ValueError, KeyError, TypeError):
            self.files = {}

    def known_sha(self, name: str, st: os.stat_result) -> str | None:
        entry = self.files.get(name)
        return entry[2] if entry and entry[:2] == [st.st_size, st.st_mtime_ns] else None

    def remember(self, name: str, st: os.stat_result, sha: str) -> None:
        self.files[name] = [st.st_size, st.st_mtime_ns, sha]

    def save(self) -> None:
        """Best effort: a read-only folder only costs a re-hash next time."""
        tmp = self.path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps({"files": self.files}))
            os.replace(tmp, self.path)
        except OSError:
            pass


@contextmanager
def staged(folder: Path, names: list[str], scratch: Path | None = None) -> Iterator[Path]:
    """A frozen view of `names`: big files hard-linked (the trainer replaces them by rename, so the link keeps
    the old bytes), small ones copied (results.csv is appended in place)."""
    try:
        stage = Path(tempfile.mkdtemp(prefix=".launcher-stage-", dir=_made(scratch) or folder))
    except OSError:  # a read-only folder: stage copies elsewhere
        stage = Path(tempfile.mkdtemp(prefix="launcher-stage-"))
    try:
        for name in names:
            src, dst = folder / name, safe_local_path(stage, name)
            dst.parent.mkdir(parents=True, exist_ok=True)
            if src.stat().st_size < STAGE_COPY_BELOW or not _try_link(src, dst):
                shutil.copy2(src, dst)
        yield stage
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _try_link(src: Path, dst: Path) -> bool:
    try:
        os.link(src, dst)
        return True
    except OSError:
        return False


# ------------------------------------------------------------------ reading


def newest(store: Store, log: Log | None = None) -> tuple[Manifest | None, list[str]]:
    """The newest manifest that parses, and what was skipped on the way (files are not checked here)."""
    skipped = []
    for where, found in candidates(store):
        if isinstance(found, Manifest):
            return found, skipped
        skipped.append(f"skipped {found}")
        if log:
            log(skipped[-1])
    return None, skipped


@dataclass
class PullResult:
    manifest: Manifest | None
    skipped: list[str] = field(default_factory=list)
    bytes_received: int = 0
    files_reused: int = 0


def pull(
    store: Store, dest: Path, meter: Meter | None = None, log: Log = _print, scratch: Path | None = None
) -> PullResult:
    """Download the newest complete, verified checkpoint into `dest`; fall back past damaged ones."""
    dest = Path(dest)
    result = PullResult(None)
    tried: set[int] = set()
    for where, found in _sources(store):
        if isinstance(found, ManifestError):
            tried.add(found.version if found.version is not None else -1)
            result.skipped.append(f"skipped {found.message}")
            log(result.skipped[-1])
            continue
        tried.add(found.version)
        try:
            _download(store, found, dest, meter or _NoMeter(), result, scratch)
        except CorruptCheckpointError as exc:
            result.skipped.append(f"skipped checkpoint {found.version} ({where}): {exc.message}")
            log(result.skipped[-1])
            continue
        result.manifest = found
        _note_unfinished(store, found, tried, result, log)
        return result
    return result


def _sources(store: Store) -> Iterator[tuple[str, Manifest | ManifestError]]:
    """Manifests newest first; a local folder without any (a plain trainer folder) reads as one checkpoint."""
    any_found = False
    for item in candidates(store):
        any_found = True
        yield item
    if not any_found and isinstance(store, LocalStore) and (plain := plain_manifest(store.root)):
        yield str(store.root), plain


def plain_manifest(folder: Path) -> Manifest | None:
    """A manifest describing a plain folder of checkpoint files (what runs on a local path wrote before
    local stores got the manifest layout); the run's own files (lease, upload rate) are not among them."""
    files = {name: st for name, st in scan(folder).items() if name not in RUN_FILES}
    if not files:
        return None
    entries = {name: FileEntry(name, st.st_size, sha256_file(folder / name)) for name, st in files.items()}
    epoch, step = read_progress(folder)
    mtime = max(st.st_mtime for st in files.values())
    return Manifest(0, entries, epoch, step, mtime, "", {"plain_folder": str(folder)})


def _note_unfinished(store: Store, manifest: Manifest, tried: set[int], result: PullResult, log: Log) -> None:
    """Say so when files of a newer upload that never got a manifest exist (a writer was killed before it).

    Versions whose manifest was there but skipped were already reported with their reason.
    """
    if isinstance(store, LocalStore) and manifest.version == 0:
        return
    newer = sorted({int(v) for o in store.list(FILES) if (v := o.key[len(FILES) :].split("/")[0]).isdigit()
                    and int(v) > manifest.version and int(v) not in tried})  # fmt: skip
    if newer:
        result.skipped.append(f"ignored files of unfinished checkpoint(s) {newer}: no complete manifest lists them")
        log(result.skipped[-1])


def _download(
    store: Store, manifest: Manifest, dest: Path, meter: Meter, result: PullResult, scratch: Path | None = None
) -> None:
    """Fetch every file into a staging folder, verify all, then move them into `dest` together."""
    dest.mkdir(parents=True, exist_ok=True)
    state = LocalState(dest, scratch)
    meter.begin(manifest.size, f"pull checkpoint {manifest.version}")
    stage = Path(tempfile.mkdtemp(prefix=".launcher-pull-", dir=_made(scratch) or dest))
    try:
        with ThreadPoolExecutor(WORKERS) as pool:
            jobs = {n: pool.submit(_fetch, store, n, e, dest, stage, state, meter) for n, e in manifest.files.items()}
            fetched = {name: job.result() for name, job in jobs.items()}
        for name, (path, reused) in fetched.items():
            if not reused:
                target = safe_local_path(dest, name)
                target.parent.mkdir(parents=True, exist_ok=True)
                _move(path, target)
                result.bytes_received += manifest.files[name].size
            else:
                result.files_reused += 1
            state.remember(name, (dest / name).stat(), manifest.files[name].sha256)
        state.save()
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _fetch(store: Store, name: str, entry: FileEntry, dest: Path, stage: Path, state: LocalState, meter: Meter):  # type: ignore[no-untyped-def]
    """Download one file into `stage` and verify it; reuse the copy already in `dest` when it matches."""
    have = safe_local_path(dest, name)
    if have.is_file() and have.stat().st_size == entry.size:
        sha = state.known_sha(name, have.stat()) or sha256_file(have)
        if sha == entry.sha256:
            meter.advance(entry.size)
            return have, True
    path = safe_local_path(stage, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        sha = store.get(entry.key, path, meter.advance)
    except MissingObjectError as exc:
        raise CorruptCheckpointError(f"{exc.url}, which it lists, is missing") from None
    size = path.stat().st_size
    if size != entry.size:
        raise CorruptCheckpointError(f"{store.url(entry.key)} has {size} bytes, the manifest says {entry.size}")
    if (sha or sha256_file(path)) != entry.sha256:
        raise CorruptCheckpointError(f"{store.url(entry.key)} does not match its sha256")
    return path, False


def pull_latest(uri: str, run_name: str, dest_dir: Path, scratch: Path | None = None, epochs: int | None = None,
                **clients: Any) -> PullResult:  # fmt: skip
    """What the entrypoint calls on every node before training: resume from the newest complete checkpoint.

    With `epochs` (the run's total), a checkpoint that already holds them all is pulled without a
    "resuming" line: the trainer then says the run already finished, and that is all the user reads.
    """
    store = open_store(join_uri(uri, run_name), **clients)
    if (kept := _local_is_newer(store, Path(dest_dir))) is not None:
        return kept
    result = pull(store, Path(dest_dir), scratch=scratch)
    if result.manifest is None:
        _print(f"no complete checkpoint at {store.uri}; starting fresh")
    elif not (epochs and result.manifest.epoch is not None and result.manifest.epoch >= epochs):
        m = result.manifest
        _print(f"resuming from {named(m)} of {store.uri}: {len(m.files)} files, "
               f"{size_text(result.bytes_received)} downloaded, {result.files_reused} already here")  # fmt: skip
    return result


def finished_checkpoint(uri: str, run_name: str, epochs: int, **clients: Any) -> tuple[Store, Manifest] | None:
    """(the run's store, its newest checkpoint) when that checkpoint already holds all `epochs`, decided from
    the manifest and one listing (every file it names is there at its size), nothing downloaded; else None.

    The entrypoint asks this first, so a run started again after it finished says so without copying the
    checkpoint or building the data cache (issue 23: 268 MB copied to say "already finished").
    """
    store = open_store(join_uri(uri, run_name), **clients)
    manifest, _skipped = newest(store)
    if manifest is None or manifest.epoch is None or manifest.epoch < epochs:
        return None
    sizes = {o.key: o.size for o in store.list(FILES)}
    if any(sizes.get(entry.key) != entry.size for entry in manifest.files.values()):
        return None  # damaged: pull_latest falls back to an older checkpoint and says why
    return store, manifest


def _made(scratch: Path | None) -> Path | None:
    if scratch is not None:
        Path(scratch).mkdir(parents=True, exist_ok=True)
    return scratch


def _move(src: Path, dst: Path) -> None:
    """Rename into place; across file systems (a scratch folder elsewhere), copy next to `dst` first."""
    try:
        os.replace(src, dst)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        part = dst.with_name(f".{dst.name}.part")
        shutil.copy2(src, part)
        os.replace(part, dst)


def _local_is_newer(store: Store, dest: Path) -> PullResult | None:
    """A restart on the same machine may hold a later epoch than the store (its last upload was cut short):
    keep it rather than roll back. It is uploaded by the Syncer as usual."""
    local_epoch, _ = read_progress(dest)
    if local_epoch is None:
        return None
    manifest, skipped = newest(store)
    if manifest is None or manifest.epoch is None or manifest.epoch >= local_epoch:
        return None
    skipped.append(
        f"kept the local checkpoint in {dest} (epoch {local_epoch}), newer than {store.uri} (epoch {manifest.epoch})"
    )
    _print(skipped[-1])
    return PullResult(None, skipped)


# ------------------------------------------------------------------ writing


@dataclass
class PushStats:
    bytes_sent: int = 0
    files_sent: int = 0
    files_unchanged: int = 0
    versions: int = 0
    seconds: float = 0.0  # time spent in pushes that sent bytes: bytes_sent / seconds is the upload rate


class Pusher:
    """Uploads successive versions of one folder to one run store; remembers what the store already has."""

    def __init__(self, store: Store, folder: Path, keep: int = 3, spec_hash: str = "", log: Log = _print,
                 scratch: Path | None = None) -> None:  # fmt: skip
        self.store, self.folder, self.keep, self.spec_hash, self.log = store, Path(folder), keep, spec_hash, log
        self.scratch = scratch
        self.base, _skipped = newest(store, log)
        self.next_version = max([0, *versions_in_store(store), self.base.version if self.base else 0]) + 1
        self.state = LocalState(self.folder, scratch)
        self.stats = PushStats()
        self._lock = threading.Lock()
        self._mirrored: dict[str, str] = {}  # event file -> the sha256 last copied to tensorboard/

    def push(self, meter: Meter | None = None, meta: Manifest | None = None) -> Manifest | None:
        """Upload a new version if anything changed; returns the newest manifest (None: empty folder)."""
        files = scan(self.folder)
        if not files:
            return self.base
        meter = meter or _NoMeter()
        meter.begin(sum(st.st_size for st in files.values()), f"push checkpoint {self.next_version}")
        epoch, step = (meta.epoch, meta.step) if meta else read_progress(self.folder)
        with staged(self.folder, list(files), self.scratch) as stage:
            with ThreadPoolExecutor(WORKERS) as pool:
                jobs = {name: pool.submit(self._entry, name, stage, meter) for name in files}
                entries = {name: job.result() for name, job in jobs.items()}
        self.state.save()
        if self.base and entries == self.base.files and meta is None:
            return self.base  # nothing changed: no new version, nothing sent
        return self._commit(entries, epoch, step, meta)

    def _commit(
        self, entries: dict[str, FileEntry], epoch: int | None, step: int | None, meta: Manifest | None
    ) -> Manifest:
        writer = {**writer_info(), **({"copied_from": meta.writer} if meta else {})}
        manifest = Manifest(self.next_version, entries, epoch, step, time.time(),
                            meta.spec_hash if meta else self.spec_hash, writer)  # fmt: skip
        write_manifest(self.store, manifest)
        self.base, self.next_version = manifest, manifest.version + 1
        self._mirror_events(manifest)
        self.stats.versions += 1
        retain(self.store, self.keep, manifest)
        return manifest

    def _entry(self, name: str, stage: Path, meter: Meter) -> FileEntry:
        """Reuse the stored file when the content is unchanged; otherwise upload it, hashing while it goes up."""
        path = stage / name
        st = path.stat()
        previous = self.base.files.get(name) if self.base else None
        sha = self.state.known_sha(name, st)
        if sha is None and previous and previous.size == st.st_size and st.st_size < HASH_FIRST_BELOW:
            sha = sha256_file(path)  # small and the same size: a hash is cheaper than sending it again
        if previous and sha == previous.sha256:
            with self._lock:
                self.state.remember(name, st, sha)
                self.stats.files_unchanged += 1
            meter.advance(st.st_size)
            return previous
        entry = self._upload(name, path, st, sha, meter)
        if previous and entry.sha256 == previous.sha256:  # a big file rewritten with the same bytes: sent, but the
            self.store.delete([entry.key])  # version keeps pointing at the stored copy (nothing new to keep)
            return previous
        return entry

    def _upload(self, name: str, path: Path, st: os.stat_result, sha: str | None, meter: Meter) -> FileEntry:
        key = _stored_key(self.next_version, name)
        with ThreadPoolExecutor(1) as hasher:  # a store that hashes while it sends saves this second read
            digest = hasher.submit(sha256_file, path) if sha is None and not self.store.hashes_put else None
            sent = self.store.put(key, path, meter.advance, sha256=sha)  # a hash known already is not computed again
            sha = sha or (digest.result() if digest else sent.checksum)
        if path.stat().st_mtime_ns != st.st_mtime_ns or path.stat().st_size != st.st_size:
            raise LauncherError(
                f"{name} changed while it was uploaded.", "It is uploaded again with the next checkpoint."
            )
        with self._lock:
            self.state.remember(name, st, sha)
            self.stats.bytes_sent += st.st_size
            self.stats.files_sent += 1
        return FileEntry(key, st.st_size, sha)

    def _mirror_events(self, manifest: Manifest) -> None:
        """The newest version's TensorBoard event files, once, in `tensorboard/` (see _stored_key); best effort."""
        for name, entry in manifest.files.items():
            if not _is_events(name) or (self._mirrored.get(name) == entry.sha256):
                continue
            try:
                self.store.put(f"{TENSORBOARD}{name}", safe_local_path(self.folder, name))  # as it is now: a view
                self._mirrored[name] = entry.sha256
            except (OSError, LauncherError) as exc:  # a view only: the checkpoint itself is complete
                self.log(f"could not copy {name} to {self.store.url(TENSORBOARD)} ({type(exc).__name__}: {exc})")


# TensorBoard reads every file whose name holds "tfevents" under --logdir, recursively, and shows each folder as a
# run: a version's copy of the (growing) event file in files/N/ made `tensorboard --logdir runs/NAME` show one copy
# of the curves per kept version (issue 23). So versions store event files under a name TensorBoard skips, and the
# newest version's are copied to <run>/tensorboard/, outside the manifests: one run in TensorBoard. A pull restores
# each file under its own name (the manifest maps names to keys), so the trainer resumes its event file as before.
TENSORBOARD = "tensorboard/"
_EVENTS, _STORED_EVENTS = "tfevents", "tb-events"


def _is_events(name: str) -> bool:
    return _EVENTS in name.rpartition("/")[2]


def _stored_key(version: int, name: str) -> str:
    key = file_key(version, name)
    if not _is_events(name):
        return key
    folder, _, base = key.rpartition("/")
    return f"{folder}/{base.replace(_EVENTS, _STORED_EVENTS)}"


def push(store: Store, folder: Path, keep: int = 3, spec_hash: str = "", meter: Meter | None = None) -> Manifest | None:
    """Upload `folder` as the run's newest checkpoint (only changed files)."""
    return Pusher(store, folder, keep, spec_hash).push(meter)


def copy(src: Store, dst: Store, keep: int = 3, meter: Meter | None = None, log: Log = _print) -> PullResult:
    """Copy the newest complete checkpoint from one store to another, verified on the way."""
    with tempfile.TemporaryDirectory(prefix="launcher-copy-") as tmp:
        result = pull(src, Path(tmp), meter, log)
        if result.manifest is None:
            raise LauncherError(
                f"There is no complete checkpoint at {src.uri}.", "Check the URI with `launch ckpt ls`."
            )
        if isinstance(dst, LocalStore) and not any(True for _ in candidates(dst)) and set(scan(dst.root)) - RUN_FILES:
            raise LauncherError(f"{dst.uri} already holds files that are not a checkpoint store.",
                                "Copy into an empty folder, or use `launch ckpt pull` to get plain files.")  # fmt: skip
        Pusher(dst, Path(tmp), keep, log=log).push(meter, meta=result.manifest)
    return result


# ------------------------------------------------------------------ background sync


QUIET_SETTLES = 5  # the longest wait for a quiet folder before a sync, in settle periods (5 s by default)


class Syncer:
    """Node 0's background uploader: a new checkpoint each time the trainer replaces last.pt.

    Polls the folder (no inotify: it must work on every platform's file
    system), waits until the folder has been quiet for `settle` seconds so
    best.pt / epoch-N.pt / results.* of the same epoch go in the same version,
    then pushes. `close()` does a final push within `grace` seconds, because
    SageMaker kills the container 120 s after SIGTERM
    (https://docs.aws.amazon.com/sagemaker/latest/dg/model-managed-spot-training.html).
    """

    def __init__(self, uri: str, run_name: str, save_dir: Path, keep: int = 3, spec_hash: str = "",
                 every: int = 1, interval: float = 2.0, settle: float = 1.0, store: Store | None = None,
                 log: Log = _print, scratch: Path | None = None, holder: Any = None,
                 wait_for: str | None = None) -> None:  # fmt: skip
        self.store = store or open_store(join_uri(uri, run_name))
        # a program known to write `wait_for` (the trainers' last.pt): nothing is a checkpoint before it is there,
        # so the first event file or plot is not taken as `checkpoint 1` of a run that has not saved yet
        self.wait_for = wait_for
        self.holder = holder  # launcher.storage.lease.Holder: heartbeats the run's lease, notices a takeover
        self.folder, self.every, self.interval, self.settle, self.log = (
            Path(save_dir),
            max(every, 1),
            interval,
            settle,
            log,
        )
        self.keep, self.spec_hash, self.scratch = keep, spec_hash, scratch
        self._pusher: Pusher | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._seen_sig: Any = self._signature()  # what is there at start was just pulled
        self._changes = 0
        self.errors: list[str] = []
        self._said: int | None = None  # the version whose sync was last said
        self._progress_seen: Any = None  # the trainer's data progress file as last copied

    @property
    def stats(self) -> PushStats:
        return self.pusher.stats

    @property
    def pusher(self) -> Pusher:
        if self._pusher is None:
            self._pusher = Pusher(self.store, self.folder, self.keep, self.spec_hash, self.log, self.scratch)
        return self._pusher

    def _signature(self) -> Any:
        """What marks a new checkpoint: last.pt's identity, or any file change if the program writes no last.pt."""
        files = scan(self.folder)
        if TRIGGER in files:
            st = files[TRIGGER]
            return (st.st_ino, st.st_size, st.st_mtime_ns)
        return tuple((n, st.st_size, st.st_mtime_ns) for n, st in files.items())

    def start(self) -> "Syncer":
        self._thread = threading.Thread(target=self._loop, name="checkpoint-sync", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._still_holder()
            self.mirror_data_progress()
            sig = self._signature()
            if sig == self._seen_sig or not self._ready():
                continue
            self._seen_sig = sig
            self._changes += 1
            if self._changes % self.every == 0:
                self._wait_quiet(QUIET_SETTLES * self.settle)
                self.sync_now()

    def _ready(self) -> bool:
        return self.wait_for is None or (self.folder / self.wait_for).is_file()

    def _wait_quiet(self, limit: float) -> None:
        """Until the folder has not changed for `settle` seconds, or `limit` seconds: a program that never pauses
        (epochs shorter than `settle`) still gets a checkpoint every few seconds, not only when it stops."""
        deadline = time.monotonic() + limit
        before = scan(self.folder)
        while time.monotonic() < deadline and not self._stop.wait(self.settle):
            after = scan(self.folder)
            if after == before:
                return
            before = after

    def sync_now(self) -> Manifest | None:
        """Push the folder as it is now; errors are logged (the next checkpoint retries), never raised."""
        started = time.monotonic()
        sent_before = self.pusher.stats.bytes_sent
        try:
            if not self._still_holder(force=True):
                return None  # another job took the run over: never write beside it
            if not self._ready():
                return None  # the program has saved nothing yet: no checkpoint to take
            manifest = self.pusher.push()
        except Exception as exc:  # noqa: BLE001 - a failed upload must not kill training
            self.errors.append(f"{type(exc).__name__}: {exc}")
            self.log(f"checkpoint upload to {self.store.uri} failed ({self.errors[-1]}); retrying at the next one")
            return None
        if manifest is not None:
            sent = self.pusher.stats.bytes_sent - sent_before
            self.pusher.stats.seconds += (time.monotonic() - started) if sent else 0.0
            if sent or manifest.version != self._said:  # the final flush of a version already synced: said once
                self.log(synced_line(manifest, self.store.uri, sent, time.monotonic() - started))
            self._said = manifest.version
        return manifest

    def mirror_data_progress(self) -> bool:
        """Copy the trainer's `.data-progress.json` (a dot-file: in no checkpoint) to `data-progress.json` in the
        run folder when it changed, for `launch status`; best effort. True when it copied it."""
        path = self.folder / f".{DATA_PROGRESS}"
        try:
            st = path.stat()
            if (st.st_mtime_ns, st.st_size) == self._progress_seen:
                return False
            self.store.put_bytes(DATA_PROGRESS, path.read_bytes())
        except Exception:  # noqa: BLE001 - no record yet, or the store unreachable: the next round tries again
            return False
        self._progress_seen = (st.st_mtime_ns, st.st_size)
        return True

    def _still_holder(self, force: bool = False) -> bool:
        """Renew the run's lease (at most once a heartbeat period unless `force`); False once it was taken over."""
        if self.holder is None:
            return True
        try:
            return bool(self.holder.renew(force=force))
        except Exception as exc:  # noqa: BLE001 - an unreachable store must not kill training; uploads retry too
            self.log(f"could not renew the lease on {self.store.uri} ({type(exc).__name__}: {exc})")
            return True

    def close(self, grace: float = 100.0) -> bool:
        """Flush the last checkpoint (within `grace` seconds, else False), then release the run's lease."""
        try:
            return self._close(grace)
        finally:
            if self.holder is not None:
                try:
                    self.holder.release()
                except Exception as exc:  # noqa: BLE001 - it goes stale and is taken over later
                    self.log(f"could not release the lease on {self.store.uri}: {type(exc).__name__}: {exc}")

    def _close(self, grace: float) -> bool:
        self._stop.set()
        deadline = time.monotonic() + grace
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()))
            if self._thread.is_alive():  # an upload is still running: never start a second writer beside it
                self.log(f"checkpoint upload still running after {grace:.0f}s; the store keeps the previous one")
                return False
        self.mirror_data_progress()
        final = threading.Thread(target=self.sync_now, name="checkpoint-flush", daemon=True)
        final.start()
        final.join(max(0.0, deadline - time.monotonic()))
        if final.is_alive():
            self.log(f"final checkpoint upload did not finish within {grace:.0f}s; the store keeps the previous one")
            return False
        return not self.errors
