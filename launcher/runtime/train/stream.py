"""A packed dataset (tar shards + index, `launch data pack`) streamed into training.

    packed = open_packed("s3://bucket/datasets/cars")          # None for a plain folder
    cache = ShardCache(packed.store, cache_folder(uri), limit)  # one per node, shared by its ranks
    train = PackedSplit(packed.index, "train", fraction)        # the samples, from the index alone
    dataset = PackedSet(train, size, cache)                     # an ImageSet that reads shards
    batches = StreamBatches(train, batch, rank, world, seed, cache)

Why it is shaped like this:

- The sample order of an epoch is a pure function of (seed, epoch, world size): the shards are
  shuffled by (seed, epoch), their samples laid end to end and cut into `world` equal spans, one
  per rank (no sample on two ranks; the N mod world left over wait for another epoch), and each
  span is shuffled in windows of one shard's worth of samples, so a rank has at most two shards
  open at once. A resumed run skips the batches already done and never touches their shards.
- The batch sampler runs in the training process a few batches ahead of the steps; as it hands
  out batch b it asks the cache for the shards of the next batches, which background threads (one
  per two cores, `prefetch_threads`) download in that order, verified against the index, while the
  step runs. The first step waits only for the first shard.
- The cache is a folder per dataset on the node's disk, shared by every rank on the node (a file
  lock per shard: one download each) and bounded: before a download it evicts the least recently
  wanted shards, never the ones wanted next. A retried attempt on the same node reuses it.
- `fraction` keeps, per class, the first samples in pack order (the packer interleaves classes,
  so that prefix is a stratified subset that lies in the first shards): only those are fetched.
- Rank 0 records the node's progress (shards fetched of those the run reads, and their bytes) in
  `.data-progress.json` in its training folder, at most every few seconds as batches are handed
  out: the checkpoint syncer copies it to the run folder, where `launch status` reads it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import random
import shutil
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from launcher.contract import data_dir
from launcher.errors import LauncherError
from launcher.runtime.cpu import usable_cpus
from launcher.runtime.train import data
from launcher.storage import is_remote, open_store
from launcher.storage.base import Store, safe_local_path
from launcher.storage.local import LocalStore
from launcher.storage.manifest import DATA_PROGRESS
from launcher.storage.shards import (
    Index,
    ShardError,
    ShardInfo,
    fetch_shard,
    parse_size,
    read_images,
    read_index,
    read_members,
    stratified_take,
)

__all__ = ["Packed", "open_packed", "cache_folder", "cache_limit", "ShardCache", "PackedSplit", "PackedSet",
           "StreamBatches", "SpanSampler", "DataProgress", "prefetch_threads", "progress_file", "epoch_order", "unpack",
           "CACHE_VARIABLE"]  # fmt: skip

CACHE_VARIABLE = "LAUNCHER_SHARD_CACHE"  # the node's shard cache limit: 20GB, 512MB, or bytes
_FREE_SHARE = 0.5  # by default the cache may take half the disk that is free when training starts


@dataclass(frozen=True)
class Packed:
    uri: str
    store: Store
    index: Index


def open_packed(uri: str, store: Store | None = None) -> Packed | None:
    """The packed dataset at `uri` (a store URI or a local folder holding index.json), else None."""
    if not is_remote(uri) and not (Path(uri).expanduser() / "index.json").is_file():
        return None  # a plain folder or a built-in: nothing to ask a store
    store = store or open_store(uri if is_remote(uri) else str(Path(uri).expanduser()))
    index = read_index(store)
    return None if index is None else Packed(uri, store, index)


def cache_folder(uri: str, environ: Mapping[str, str] | None = None) -> Path:
    return data_dir(environ) / "shards" / hashlib.sha256(uri.rstrip("/").encode()).hexdigest()[:16]


def cache_limit(folder: Path, index: Index, environ: Mapping[str, str] | None = None) -> int:
    """$LAUNCHER_SHARD_CACHE, else half the free disk (plus what the cache holds): at least two shards."""
    environ = os.environ if environ is None else environ
    biggest = max((s.bytes for s in index.shards()), default=0)
    if environ.get(CACHE_VARIABLE):
        return max(parse_size(environ[CACHE_VARIABLE]), biggest)
    folder.mkdir(parents=True, exist_ok=True)
    held = sum(p.stat().st_size for p in folder.glob("*.tar"))
    return max(int(shutil.disk_usage(folder).free * _FREE_SHARE) + held, 2 * biggest)


class ShardCache:
    """Shards of one dataset on this node's disk: fetched once, verified, bounded, shared by processes."""

    def __init__(self, store: Store, index: Index, folder: Path, limit: int, threads: int | None = None) -> None:
        self.store, self.folder, self.limit = store, Path(folder), limit
        self.threads = threads or prefetch_threads()
        self.by_name = {s.name: s for s in index.shards()}

        self.in_place = Path(store.uri) if isinstance(store, LocalStore) else None
        self.folder.mkdir(parents=True, exist_ok=True)
        self.fetched = 0  # shards this process downloaded
        self._wanted: list[str] = []
        self._pending: dict[str, Future[Path]] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.RLock()
        self._reserved = 0  # bytes of downloads under way in this process
        self.progress: DataProgress | None = None  # rank 0's record of the node's shards (set by the trainer)

    def __getstate__(self) -> dict[str, Any]:  # a DataLoader worker started by spawn: no threads cross
        state = dict(self.__dict__)
        state.update(_pool=None, _pending={}, _lock=None, _reserved=0, progress=None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()

    def path(self, name: str) -> Path:
        """The local file of shard `name`, downloaded first if this node does not have it."""
        shard = self.by_name[name]
        if self.in_place is not None:  # a packed folder on this machine's disk: read where it is
            dest = self.in_place / name
            if not _has(dest, shard.bytes):
                raise ShardError(f"The shard {dest} listed in the dataset's index is missing or has the wrong size.",
                                 "Pack the dataset again with `launch data pack`, or restore the shard.")  # fmt: skip
            return dest
        dest = self.folder / name
        if _has(dest, shard.bytes):
            return dest
        with _FileLock(self.folder / f".{name}.lock"):
            if not _has(dest, shard.bytes):  # another rank or worker may have fetched it meanwhile
                with self._lock:  # room for it and for the downloads already under way here
                    self._make_room(shard.bytes + self._reserved)
                    self._reserved += shard.bytes
                try:
                    fetch_shard(self.store, shard, dest)
                finally:
                    with self._lock:
                        self._reserved -= shard.bytes
                self.fetched += 1
        return dest

    def ahead(self) -> int:
        """How many shards may be wanted at once: as many as fit in the limit, less the one being read."""
        biggest = max((s.bytes for s in self.by_name.values()), default=1)
        return 8 if self.in_place is not None else max(1, min(8, self.limit // max(biggest, 1) - 1))

    def want(self, names: Sequence[str]) -> None:
        """Fetch these shards in the background, in this order; they are the last ones evicted.

        The samplers call this for every batch, and the list changes only when a shard is done with: the same
        list again costs nothing (no stat or touch of each shard). A shard evicted or failed meanwhile is then
        fetched by the reader itself, which needs it anyway."""
        if self.progress is not None:
            self.progress.update()
        with self._lock:
            if self._wanted == list(names):
                return
            self._wanted = list(names)
            now = time.time()
            for name in names if self.in_place is None else ():
                dest = self.folder / name
                if _has(dest, self.by_name[name].bytes):
                    try:
                        os.utime(dest, (now, now))  # recently wanted: evicted last
                    except OSError:
                        pass  # evicted just now by another rank: the reader fetches it again
                    continue
                if name not in self._pending or self._pending[name].done():
                    if self._pool is None:
                        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="shards")
                    self._pending[name] = self._pool.submit(self.path, name)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self.progress is not None:
            self.progress.update(force=True)

    def ready(self, name: str) -> bool:
        """Shard `name` is on this node, verified (or read in place)."""
        return self.in_place is not None or _has(self.folder / name, self.by_name[name].bytes)

    def _make_room(self, need: int) -> None:
        files = [(p.stat().st_mtime, p) for p in self.folder.glob("*.tar")]
        held = sum(p.stat().st_size for _, p in files)
        keep = set(self._wanted)
        for _, path in sorted(files):
            if held + need <= self.limit:
                break
            if path.name not in keep:
                held -= path.stat().st_size
                path.unlink(missing_ok=True)  # a reader that has it open keeps reading; a later one fetches it again


def prefetch_threads(cpus: int | None = None) -> int:
    """Shards downloaded at once: one per two cores, 1 to 4. Each download is itself parallel (a store's ranged
    GETs), and on a small machine more at once only take cores from decoding: with 4 on 2 cores the first shard
    arrived with the next three, not before them."""
    return max(1, min(4, (cpus or usable_cpus()) // 2))


class DataProgress:
    """How far this node has got with the shards a run reads: `{"phase", "uri", "shards", "shards_total", "bytes",
    "bytes_total", "time"}` in `path` (written whole, then renamed), at most every `every` seconds.

    A shard counts once it has been on the node's disk, verified (whichever process fetched it); an eviction
    later does not uncount it. `update` costs one stat per shard not yet seen, and only when a write is due."""

    def __init__(self, path: Path, cache: ShardCache, names: Sequence[str], uri: str, every: float = 5.0,
                 clock: Any = time.monotonic, wall: Any = time.time) -> None:  # fmt: skip
        self.path, self.cache, self.uri, self.every, self.clock, self.wall = Path(path), cache, uri, every, clock, wall
        self.names = list(dict.fromkeys(names))
        self.seen: set[str] = set()
        self._last: float | None = None

    def update(self, force: bool = False) -> dict[str, Any] | None:
        """Write the record when `every` seconds have passed since the last one (or `force`); returns what it wrote."""
        now = self.clock()
        if not force and self._last is not None and now - self._last < self.every:
            return None
        self._last = now
        self.seen.update(n for n in self.names if n not in self.seen and self.cache.ready(n))
        size = {n: self.cache.by_name[n].bytes for n in self.names}
        record = {"phase": "streaming", "uri": self.uri, "shards": len(self.seen), "shards_total": len(self.names),
                  "bytes": sum(size[n] for n in self.seen), "bytes_total": sum(size.values()),
                  "time": round(self.wall(), 3)}  # fmt: skip
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text(json.dumps(record))
            os.replace(tmp, self.path)
        except OSError:
            return None  # a nicety: a full or read-only disk must not stop training
        return record


def progress_file(save_dir: Path) -> Path:
    """Where the trainer keeps its data progress: a dot-file, so no checkpoint includes it."""
    return Path(save_dir) / f".{DATA_PROGRESS}"


def _has(path: Path, size: int) -> bool:
    try:
        return path.stat().st_size == size  # a file appears here only after its sha256 was checked
    except OSError:
        return False


class _FileLock:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> None:
        self.f = open(self.path, "a")  # noqa: SIM115
        fcntl.flock(self.f, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self.f, fcntl.LOCK_UN)
        self.f.close()


class PackedSplit:
    """One split of a packed dataset as the index describes it: sample i = (shard, position, label)."""

    def __init__(self, index: Index, split: str, fraction: float = 1.0) -> None:
        shards = index.splits.get(split, ())
        taken = stratified_take(shards, fraction)
        used = sorted({i for i, _ in taken})
        self.shards: list[ShardInfo] = [shards[i] for i in used]
        where = {old: new for new, old in enumerate(used)}
        self.entries = [(where[i], j, shards[i].labels[j] if shards[i].labels else -1) for i, j in taken]
        self.classes = list(index.classes)
        self.by_shard: list[list[int]] = [[] for _ in self.shards]
        for n, (s, _j, _label) in enumerate(self.entries):
            self.by_shard[s].append(n)
        self.window = max((len(ids) for ids in self.by_shard), default=1)

    def __len__(self) -> int:
        return len(self.entries)

    def split(self) -> data.Split:
        """The samples as the trainer's Split: an id `<shard>#<position>` and the class of each."""
        return data.Split([(f"{self.shards[s].name}#{j}", max(label, 0)) for s, j, label in self.entries], self.classes)


def epoch_order(split: PackedSplit, seed: int, epoch: int, world: int, rank: int) -> list[int]:
    """The sample ids rank `rank` reads in `epoch`, in order: a pure function of (seed, epoch, world, rank)."""
    shards = list(range(len(split.by_shard)))
    random.Random(f"shards/{seed}/{epoch}").shuffle(shards)
    sequence = [i for s in shards for i in split.by_shard[s]]
    per = len(sequence) // world
    mine = sequence[rank * per : (rank + 1) * per]
    rng = random.Random(f"samples/{seed}/{epoch}/{world}/{rank}")
    for start in range(0, len(mine), split.window):
        window = mine[start : start + split.window]
        rng.shuffle(window)
        mine[start : start + split.window] = window
    return mine


class StreamBatches:
    """Batches of one rank's share of an epoch (see `epoch_order`); skips the batches a resumed run did,
    and asks the cache for the next shards as it hands each batch out."""

    def __init__(self, split: PackedSplit, batch: int, rank: int, world: int, seed: int, cache: ShardCache | None,
                 ahead: int = 4) -> None:  # fmt: skip
        if len(split) < world:
            raise LauncherError(f"The training split has {len(split)} samples, fewer than the {world} processes.",
                                "Use fewer processes or a larger fraction.")  # fmt: skip
        self.split, self.batch, self.rank, self.world, self.seed, self.cache = split, batch, rank, world, seed, cache
        self.per = len(split) // world
        self.drop_last = self.per > batch  # a last batch of 1 breaks BatchNorm (as TrainBatches)
        self.ahead = max(1, min(ahead, cache.ahead()) if cache is not None else ahead)
        self.epoch = self.skip = 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    def __len__(self) -> int:
        return self.per // self.batch if self.drop_last else math.ceil(self.per / self.batch)

    def __iter__(self) -> Iterator[list[int]]:
        ids = epoch_order(self.split, self.seed, self.epoch, self.world, self.rank)
        ids = ids[: len(self) * self.batch] if self.drop_last else ids
        upcoming = self._first_use(ids)
        cursor = 0
        for b in range(self.skip, len(self)):
            while cursor < len(upcoming) and upcoming[cursor][0] < b:
                cursor += 1
            if self.cache is not None:
                self.cache.want([self.split.shards[s].name for _, s in upcoming[cursor : cursor + self.ahead]])
            yield ids[b * self.batch : (b + 1) * self.batch]

    def _first_use(self, ids: list[int]) -> list[tuple[int, int]]:
        """(last batch that reads it, shard) of each shard, in the order the epoch first reads them."""
        first: dict[int, int] = {}
        last: dict[int, int] = {}
        for n, i in enumerate(ids):
            s = self.split.entries[i][0]
            first.setdefault(s, n // self.batch)
            last[s] = n // self.batch
        return [(last[s], s) for s in sorted(first, key=first.__getitem__)]


class SpanSampler:
    """Validation: rank r reads one contiguous span (a few whole shards); every sample on exactly one rank.
    With a split and a cache, it asks for the next shards of its span as it goes, as StreamBatches does."""

    def __init__(self, n: int, rank: int, world: int, split: PackedSplit | None = None,
                 cache: ShardCache | None = None) -> None:  # fmt: skip
        self.ids = list(range(n * rank // world, n * (rank + 1) // world))
        self.split, self.cache = split, cache

    def __len__(self) -> int:
        return len(self.ids)

    def __iter__(self) -> Iterator[int]:
        if self.split is None or self.cache is None:
            yield from self.ids
            return
        order = list(dict.fromkeys(self.split.entries[i][0] for i in self.ids))  # shards in the order they are read
        ahead = self.cache.ahead()
        current = None
        for i in self.ids:
            shard = self.split.entries[i][0]
            if shard != current:
                current = shard
                at = order.index(shard)
                self.cache.want([self.split.shards[s].name for s in order[at : at + ahead]])
            yield i


class PackedSet(data.ImageSet):
    """The trainer's ImageSet over a packed split: each image is read from its shard in the node cache."""

    _OPEN_SHARDS = 16  # shards a process keeps open, with their images' places (16 bytes a sample)

    def __init__(self, packed: PackedSplit, size: int, cache_mode: str | bool, shards: ShardCache,
                 cache_dir: Path | None = None) -> None:  # fmt: skip
        super().__init__(packed.split(), size, cache_mode, cache_dir)
        self.packed, self.shards = packed, shards
        self._open: dict[str, tuple[int, list[tuple[int, int]]]] = {}

    def source(self, i: int) -> bytes:
        s, j, _label = self.packed.entries[i]
        fd, table = self._shard(self.packed.shards[s])
        offset, size = table[j]
        return os.pread(fd, size, offset)

    def _shard(self, shard: ShardInfo) -> tuple[int, list[tuple[int, int]]]:
        """An open file and where each image is in a shard: kept open, so a sample is one pread (a shard the
        cache evicts meanwhile stays readable through its open file)."""
        found = self._open.get(shard.name)
        if found is None:
            path = self.shards.path(shard.name)
            table = read_images(path, shard.name)
            if len(table) != shard.samples:
                raise ShardError(f"The shard {shard.name} holds {len(table)} samples; the index says {shard.samples}.",
                                 "Pack the dataset again with `launch data pack`.")  # fmt: skip
            if len(self._open) >= self._OPEN_SHARDS:
                os.close(self._open.pop(next(iter(self._open)))[0])
            found = self._open[shard.name] = (os.open(path, os.O_RDONLY), table)
        return found

    def __getstate__(self) -> dict[str, Any]:  # open files do not cross to a spawned worker
        return {**self.__dict__, "_open": {}}

    def row_key(self, i: int) -> str:
        s, j, _label = self.packed.entries[i]
        return hashlib.sha1(f"{self.packed.shards[s].sha256}|{j}|{self.size}|{data.CACHE_VERSION}".encode()).hexdigest()

    def pack_ident(self) -> str:
        return "|".join(f"{self.packed.shards[s].sha256}#{j}" for s, j, _l in self.packed.entries) + f"|{self.size}"


def unpack(packed: Packed, dest: Path, threads: int = 8, progress: Any = None) -> Path:
    """The packed dataset as plain files under `dest` (for a program that reads files: the ultralytics engine).

    Shards are fetched in parallel (a few large GETs, not one per image), verified, unpacked and
    deleted; `.complete` (the index's sha256) is written last, so a finished copy is reused and an
    interrupted one is redone. ImageFolder: `<split>/<class>/<name>.<ext>`; YOLO: `images/<split>/...`,
    `labels/<split>/...` and the source's data.yaml. `progress` (launcher.storage.dataset.StagingProgress,
    started by the caller) is told of each shard unpacked.
    """
    stamp = hashlib.sha256(packed.index.to_bytes()).hexdigest()
    marker = dest / ".complete"
    if marker.is_file() and marker.read_text().strip() == stamp:
        return dest
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    yolo = packed.index.layout == "yolo"

    def one(shard: ShardInfo) -> None:
        tar = fetch_shard(packed.store, shard, dest / ".shards" / shard.name)
        with open(tar, "rb") as f:
            for sample in read_members(tar, shard.name):
                for member in sample.members:
                    if member.ext == "cls":
                        continue
                    folder = ("labels" if member.ext == "txt" else "images") if yolo else ""
                    key = f"{folder}/{sample.key}.{member.ext}" if folder else f"{sample.key}.{member.ext}"
                    target = safe_local_path(dest, key)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(os.pread(f.fileno(), member.size, member.offset))
        tar.unlink()

    shards = packed.index.shards()
    with ThreadPoolExecutor(threads) as pool:
        for shard, _ in zip(shards, pool.map(one, shards)):
            if progress is not None:
                progress.advance(shard.bytes)
    shutil.rmtree(dest / ".shards", ignore_errors=True)
    if yolo and packed.index.data_yaml:
        (dest / "data.yaml").write_text(packed.index.data_yaml)
    marker.write_text(stamp + "\n")
    return dest
