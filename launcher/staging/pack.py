"""`launch data pack`: an ImageFolder or YOLO dataset (local or in a store) -> tar shards + index in any store.

    result = pack("./cars", "s3://bucket/datasets/cars", shard_size=256 << 20, workers=8)

1. List the source and recognise its layout (ImageFolder: train/<class>/..., val/, test/;
   YOLO: data.yaml, images/<split>/, labels/<split>/); refuse in one line what cannot be packed.
2. Plan: each split's samples in pack order, cut into shards of about `shard_size` bytes. The order
   is a fixed shuffle of each class, interleaved in proportion to the class sizes, so any prefix of
   a split is a stratified sample of it (what `fraction` reads) and every shard holds every class.
   The plan depends only on the listing (names and sizes), so it is the same on every run.
3. Write the shards in parallel (`launcher.storage.shards.write_shard`: deterministic bytes),
   upload each, then record it in `.pack/<shard>.json` (its plan digest, size, sha256, labels).
   A pack that stops midway and runs again keeps every shard whose record matches its plan and
   whose object has the recorded size: finished shards are never redone.
4. Write `index.json` last, then remove shards (and records) of an earlier pack that the index
   does not name. A reader trusts only the index, so it never sees a partial pack. Packing a
   changed source again rewrites only the shards whose files changed (names, sizes, mtimes/etags).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from launcher.errors import LauncherError
from launcher.storage import is_remote, open_store
from launcher.storage.base import MissingObjectError, Store
from launcher.storage.dataset import listing
from launcher.storage.shards import INDEX, Index, ShardInfo, member_size, parse_size, read_index, write_shard

__all__ = [
    "PackError",
    "PackPlan",
    "PackResult",
    "Source",
    "plan_pack",
    "pack",
    "Meter",
    "parse_size",
    "print_progress",
    "SHARD_SIZE",
]

SHARD_SIZE = 256 << 20
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")  # what the trainer reads
SPLITS = ("train", "val", "test")
JOURNAL = ".pack"
_ORDER_SEED = "launcher-pack/1"  # the fixed shuffle inside each class; changing it changes every packed order


class PackError(LauncherError):
    """A source that cannot be packed (no train split, mixed layouts, unreadable files)."""


# ---------------------------------------------------------------- the source


class Source:
    """The files of a dataset, local or in a store: key -> size, a change stamp, and their bytes."""

    def __init__(self, src: str, store: Store | None = None) -> None:
        self.src = src
        self.store = store if store is not None else open_store(src) if is_remote(src) else None
        self.root = None if self.store is not None else Path(src).expanduser()
        self.files, self.stamps = self._list()

    def _list(self) -> tuple[dict[str, int], dict[str, str]]:
        if self.store is not None:
            found = listing(self.store)
            return {k: o.size for k, o in found.items()}, {k: str(o.checksum or "") for k, o in found.items()}
        assert self.root is not None
        if not self.root.is_dir():
            raise PackError(
                f"{self.src} is not a folder.", "Give the dataset's root folder (or an s3://, gs://, az:// URI)."
            )
        files, stamps = {}, {}
        for folder, dirs, names in os.walk(self.root):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(names):
                if name.startswith("."):
                    continue
                path = Path(folder) / name
                key = path.relative_to(self.root).as_posix()
                try:
                    st = path.stat()
                except OSError as exc:
                    raise PackError(
                        f"Cannot read {path}: {exc.strerror}.", "Fix its permissions or remove it."
                    ) from None
                files[key], stamps[key] = st.st_size, str(st.st_mtime_ns)
        return files, stamps

    def read(self, key: str) -> bytes:
        try:
            if self.store is not None:
                data = self.store.get_bytes(key)
                if data is None:
                    raise MissingObjectError(self.store.url(key))
                return data
            assert self.root is not None
            return (self.root / key).read_bytes()
        except (OSError, MissingObjectError) as exc:
            raise PackError(
                f"Cannot read {self.where(key)}: {exc}.", "Fix or remove that file, then pack again."
            ) from None

    def where(self, key: str) -> str:
        return self.store.url(key) if self.store is not None else str(self.root / key)

    def digest(self) -> str:
        """sha256 of the sorted listing (names and sizes): the same data anywhere gives the same digest."""
        return hashlib.sha256("".join(f"{k}\t{s}\n" for k, s in sorted(self.files.items())).encode()).hexdigest()


# ---------------------------------------------------------------- the plan


@dataclass(frozen=True)
class Item:
    """One sample to pack: its image (and label file, YOLO), its key in the shards, its class (-1: none)."""

    image: str
    key: str
    ext: str
    label: int
    label_file: str | None = None
    size: int = 0


@dataclass
class ShardPlan:
    name: str
    items: list[Item] = field(default_factory=list)
    bytes: int = 0
    digest: str = ""


@dataclass
class PackPlan:
    layout: str
    classes: list[str]
    splits: dict[str, list[ShardPlan]]
    source: Source
    data_yaml: str = ""

    @property
    def shards(self) -> list[ShardPlan]:
        return [s for shards in self.splits.values() for s in shards]

    @property
    def files(self) -> int:
        return sum(1 + (i.label_file is not None) for s in self.shards for i in s.items)

    def describe(self) -> str:
        lines = [f"{self.source.src}: {self.layout}, {len(self.classes)} classes, "
                 f"{self.files} files ({sum(s.bytes for s in self.shards) / 1e6:.1f} MB in shards)"]  # fmt: skip
        for split, shards in self.splits.items():
            samples = sum(len(s.items) for s in shards)
            lines.append(
                f"  {split}: {samples} samples in {len(shards)} shards ({shards[0].name} .. {shards[-1].name})"
            )
        return "\n".join(lines)


def plan_pack(source: Source, shard_size: int = SHARD_SIZE) -> PackPlan:
    """Recognise the layout and cut each split into shards; pure: reads only the listing (and data.yaml)."""
    tops = {k.split("/", 1)[0] for k in source.files if "/" in k}
    yolo = "data.yaml" in source.files or "images" in tops or "labels" in tops
    folder = any(k.split("/", 1)[0] in SPLITS and k.lower().endswith(IMAGE_SUFFIXES) for k in source.files)
    if yolo and folder:
        splits = ", ".join(sorted(tops & set(SPLITS)))
        raise PackError(f"{source.src} mixes layouts: ImageFolder split folders ({splits}/) "
                        "beside YOLO's data.yaml, images/ or labels/.",
                        "Pack one dataset at a time: move one layout to its own folder.")  # fmt: skip
    if yolo:
        layout, classes, items, data_yaml = "yolo", *_yolo_items(source), source.read("data.yaml").decode()
    elif folder:
        layout, (classes, items), data_yaml = "imagefolder", _folder_items(source), ""
    else:
        raise PackError(f"{source.src} is neither an ImageFolder (train/<class>/*.jpg) nor a YOLO dataset "
                        "(data.yaml, images/train/, labels/train/).",
                        "Point at the dataset's root folder.")  # fmt: skip
    if not items.get("train"):
        raise PackError(f"{source.src} has no training images (no train split).",
                        "Put them in train/<class>/ (ImageFolder) or images/train/ (YOLO).")  # fmt: skip
    splits = {split: _cut(split, _ordered(items[split]), shard_size, source) for split in SPLITS if items.get(split)}
    return PackPlan(layout, classes, splits, source, data_yaml)


def _folder_items(source: Source) -> tuple[list[str], dict[str, list[Item]]]:
    by_split: dict[str, dict[str, list[str]]] = {}
    for key in source.files:
        split, _, rest = key.partition("/")
        if split not in SPLITS or not key.lower().endswith(IMAGE_SUFFIXES):
            continue
        if "/" not in rest:
            raise PackError(f"{source.where(key)} is not inside a class folder.", f"Move it to {split}/<class>/.")
        by_split.setdefault(split, {}).setdefault(rest.split("/", 1)[0], []).append(key)
    classes = sorted(by_split.get("train", {}))
    if not classes:
        raise PackError(f"{source.src} has no training images (no train split).",
                        "Put them in train/<class>/ (ImageFolder) or images/train/ (YOLO).")  # fmt: skip
    items: dict[str, list[Item]] = {}
    for split, by_class in by_split.items():
        unknown = sorted(set(by_class) - set(classes))
        if unknown:
            raise PackError(f"{source.src}: {split}/{unknown[0]}/ is a class that train/ does not have.",
                            "Give every class a folder in train/, or remove it from the other splits.")  # fmt: skip
        items[split] = [
            _item(source, k, k.partition("/")[2], classes.index(c)) for c, keys in by_class.items() for k in keys
        ]
    return classes, items


def _yolo_items(source: Source) -> tuple[list[str], dict[str, list[Item]]]:
    import yaml  # noqa: PLC0415

    try:
        config = yaml.safe_load(source.read("data.yaml")) if "data.yaml" in source.files else None
    except yaml.YAMLError as exc:
        raise PackError(f"{source.where('data.yaml')} is not valid YAML ({exc}).", "Fix data.yaml.") from None
    if not isinstance(config, dict) or not config.get("names"):
        raise PackError(
            f"{source.src} has no data.yaml with class names.", "Add data.yaml with `names:` (YOLO's layout)."
        )
    names = config["names"]
    classes = [str(names[i]) for i in sorted(names)] if isinstance(names, dict) else [str(n) for n in names]
    items: dict[str, list[Item]] = {}
    for key in source.files:
        top, _, rest = key.partition("/")
        split, _, within = rest.partition("/")
        if top != "images" or not within or not key.lower().endswith(IMAGE_SUFFIXES):
            continue
        label = f"labels/{split}/{within.rsplit('.', 1)[0]}.txt"
        item = _item(source, key, within, -1, label if label in source.files else None)
        items.setdefault(split, []).append(item)
    return classes, items


def _item(source: Source, image: str, within: str, label: int, label_file: str | None = None) -> Item:
    """The shard key of a file: its path under the dataset without extension, dots made `_` (WebDataset
    cuts the key at the first dot of the file name)."""
    folder, _, name = within.rpartition("/")
    stem, _, ext = name.rpartition(".")
    key = f"{folder}/{stem.replace('.', '_')}" if folder else stem.replace(".", "_")
    size = source.files[image] + (source.files[label_file] if label_file else 0)
    return Item(image, key, ext.lower(), label, label_file, size)


def _ordered(items: list[Item]) -> list[Item]:
    """A fixed shuffle within each class, the classes interleaved in proportion (a stratified order)."""
    by_class: dict[int, list[Item]] = {}
    for item in sorted(items, key=lambda i: i.image):
        by_class.setdefault(item.label, []).append(item)
    ranked = []
    for label, members in by_class.items():
        random.Random(f"{_ORDER_SEED}/{label}/{len(members)}").shuffle(members)
        ranked += [((j + 0.5) / len(members), label, item) for j, item in enumerate(members)]
    ranked.sort(key=lambda r: (r[0], r[1]))
    seen: set[str] = set()
    ordered = []
    for _, _, item in ranked:
        key, n = item.key, 1
        while key in seen:  # x.jpg beside x.png, or a.b.jpg beside a_b.jpg
            key, n = f"{item.key}_{n}", n + 1
        seen.add(key)
        ordered.append(
            item if key == item.key else Item(item.image, key, item.ext, item.label, item.label_file, item.size)
        )
    return ordered


def _members(split: str, item: Item) -> list[tuple[str, str]]:
    """(member name, source key or a label literal) of one sample, image first."""
    label = ("txt", item.label_file or "") if item.label < 0 else ("cls", f"={item.label}")
    return [(f"{split}/{item.key}.{item.ext}", item.image), (f"{split}/{item.key}.{label[0]}", label[1])]


def _cut(split: str, items: list[Item], shard_size: int, source: Source) -> list[ShardPlan]:
    shards = [ShardPlan(f"{split}-000000.tar")]
    for item in items:
        names = _members(split, item)
        size = member_size(names[0][0], source.files[item.image]) + member_size(names[1][0], 64)
        if shards[-1].items and shards[-1].bytes + size > shard_size:
            shards.append(ShardPlan(f"{split}-{len(shards):06d}.tar"))
        shards[-1].items.append(item)
        shards[-1].bytes += size
    for shard in shards:
        ident = [
            (m, src, source.files.get(src, 0), source.stamps.get(src, ""))
            for i in shard.items
            for m, src in _members(split, i)
        ]
        shard.digest = hashlib.sha256(json.dumps(ident).encode()).hexdigest()
    return shards


# ---------------------------------------------------------------- progress


class Meter:
    """Files and bytes packed so far; `line()` says files/s, MB/s and the time left."""

    def __init__(self, files: int, nbytes: int, write: Callable[[str], None] | None = None, every: float = 0.5) -> None:
        self.total_files, self.total_bytes = files, nbytes
        self.files = self.bytes = 0
        self.started = self._last = time.monotonic()
        self.write, self.every = write, every
        self._lock = threading.Lock()

    def add(self, files: int, nbytes: int) -> None:
        with self._lock:
            self.files += files
            self.bytes += nbytes
            now = time.monotonic()
            if self.write is not None and (now - self._last >= self.every or self.files >= self.total_files):
                self._last = now
                self.write(self.line())

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate, mb = self.files / elapsed, self.bytes / elapsed / 1e6
        eta = (self.total_files - self.files) / rate if rate > 0 else float("inf")
        left = f"{eta:.0f}s" if eta != float("inf") else "?"
        done = f"{self.bytes / 1e6:.1f}/{self.total_bytes / 1e6:.1f} MB"
        return (f"packed {self.files}/{self.total_files} files, {done}, "
                f"{rate:.0f} files/s, {mb:.1f} MB/s, ETA {left}")  # fmt: skip


# ---------------------------------------------------------------- packing


@dataclass
class PackResult:
    index: Index
    written: int  # shards packed this time
    reused: int  # shards a previous, interrupted pack had finished
    files: int
    seconds: float

    @property
    def files_per_s(self) -> float:
        return self.files / max(self.seconds, 1e-9)


def pack(src: str, dest: str, shard_size: int = SHARD_SIZE, workers: int = 8, *, source_store: Store | None = None,
         dest_store: Store | None = None, progress: Callable[[str], None] | None = None,
         log: Callable[[str], None] | None = None) -> PackResult:  # fmt: skip
    """Pack `src` into shards + index at `dest`; resumes an interrupted pack; returns what was done."""
    log = log or (lambda _m: None)
    started = time.monotonic()
    plan = plan_pack(Source(src, source_store), shard_size)
    store = dest_store if dest_store is not None else open_store(dest)
    present = {o.key: o.size for o in store.list("")}
    done = _finished(store, plan, present)
    todo = [s for s in plan.shards if s.name not in done]
    old = _old_index(store)
    if not todo and old is not None and old.to_bytes() == _index(plan, done).to_bytes():
        log(f"{store.uri} already holds this dataset, packed ({len(plan.shards)} shards); nothing to do")
        return PackResult(old, 0, len(plan.shards), 0, time.monotonic() - started)
    if old is not None:
        store.delete([INDEX])  # from here the destination is a pack in progress, which no reader uses
    if done:
        log(f"resuming: {len(done)} of {len(plan.shards)} shards were already packed")
    meter = Meter(sum(len(s.items) for s in todo), sum(s.bytes for s in todo), progress)
    with ThreadPoolExecutor(max(1, workers)) as reads, ThreadPoolExecutor(min(max(1, workers), 2)) as writes:
        for name, info in zip(
            [s.name for s in todo], writes.map(lambda s: _pack_shard(plan, s, store, reads, meter), todo)
        ):
            done[name] = info
    index = _index(plan, done)
    store.put_bytes(INDEX, index.to_bytes())
    _tidy(store, {s.name for s in index.shards()})
    return PackResult(index, len(todo), len(plan.shards) - len(todo), meter.files, time.monotonic() - started)


def _index(plan: PackPlan, done: dict[str, ShardInfo]) -> Index:
    source = {"files": len(plan.source.files), "bytes": sum(plan.source.files.values()), "digest": plan.source.digest()}
    splits = {split: tuple(done[s.name] for s in shards) for split, shards in plan.splits.items()}
    return Index(plan.layout, tuple(plan.classes), splits, source, plan.data_yaml)


def _old_index(store: Store) -> Index | None:
    try:
        return read_index(store)
    except LauncherError:
        return None  # a damaged index is replaced


def _finished(store: Store, plan: PackPlan, present: dict[str, int]) -> dict[str, ShardInfo]:
    """Shards an earlier run of this same plan uploaded (its record matches; the object has the recorded size)."""
    done = {}
    for shard in plan.shards:
        record_key = f"{JOURNAL}/{shard.name}.json"
        if shard.name not in present or record_key not in present:
            continue
        try:
            record = json.loads(store.get_bytes(record_key) or b"{}")
            info = ShardInfo(shard.name, int(record["samples"]), int(record["bytes"]), str(record["sha256"]),
                             tuple(int(v) for v in record["labels"]))  # fmt: skip
        except (ValueError, KeyError, TypeError):
            continue
        if record.get("plan") == shard.digest and present[shard.name] == info.bytes:
            done[shard.name] = info
    return done


def _pack_shard(plan: PackPlan, shard: ShardPlan, store: Store, reads: ThreadPoolExecutor, meter: Meter) -> ShardInfo:
    split = shard.name.rsplit("-", 1)[0]
    labels: list[int] = []
    fd, tmp_name = tempfile.mkstemp(prefix=".pack-", suffix=".tar")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            write_shard(out, _shard_members(plan, split, shard, reads, meter, labels))
        sha = hashlib.sha256(tmp.read_bytes()).hexdigest()
        size = tmp.stat().st_size
        store.put(shard.name, tmp, sha256=sha)
    finally:
        tmp.unlink(missing_ok=True)
    info = ShardInfo(shard.name, len(shard.items), size, sha, tuple(labels))
    record = {**info.to_json(), "plan": shard.digest}
    store.put_bytes(f"{JOURNAL}/{shard.name}.json", json.dumps(record).encode())
    return info


def _shard_members(plan: PackPlan, split: str, shard: ShardPlan, reads: ThreadPoolExecutor, meter: Meter,
                   labels: list[int]) -> Iterator[tuple[str, bytes]]:  # fmt: skip
    source = plan.source

    def load(item: Item) -> tuple[bytes, bytes]:
        image = source.read(item.image)
        _check_image(source, item.image, image)
        label = source.read(item.label_file) if item.label_file else b"" if item.label < 0 else str(item.label).encode()
        return image, label

    for item, (image, label) in zip(shard.items, reads.map(load, shard.items)):
        names = _members(split, item)
        labels.append(item.label if item.label >= 0 else _first_class(label))
        yield names[0][0], image
        yield names[1][0], label
        meter.add(1 + (item.label_file is not None), len(image) + len(label))


def _first_class(label: bytes) -> int:
    """A YOLO label file's first object class (-1 for none): what `fraction` stratifies by."""
    try:
        return int(label.split(None, 1)[0]) if label.strip() else -1
    except ValueError:
        return -1


def _check_image(source: Source, key: str, data: bytes) -> None:
    """Refuse a file the trainer could not decode (header only; Pillow comes with the train extra)."""
    try:
        from PIL import Image, UnidentifiedImageError  # noqa: PLC0415
    except ImportError:  # a host without Pillow: the trainer would name it; here at least refuse an empty file
        if not data:
            raise PackError(f"{source.where(key)} is empty.", "Remove it or replace it with the image.") from None
        return
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.size  # noqa: B018 - parsing the header is the check
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise PackError(
            f"{source.where(key)} is not a readable image ({exc}).", "Fix or remove it, then pack again."
        ) from None
    except ImportError:  # Ultralytics, once imported, retries an unidentified image with a plugin it may not have
        raise PackError(
            f"{source.where(key)} is not a readable image (Pillow cannot identify it).",
            "Fix or remove it, then pack again.",
        ) from None


def _tidy(store: Store, keep: set[str]) -> None:
    """After the index: shards of an earlier pack that it does not name, and their progress records (the
    records of this pack stay: a later pack of a changed source repacks only the shards whose files changed)."""
    stale = []
    for o in store.list(""):
        name = o.key.removeprefix(f"{JOURNAL}/").removesuffix(".json")
        if name.endswith(".tar") and "/" not in name and name.rsplit("-", 1)[0] in SPLITS and name not in keep:
            stale.append(o.key)
    if stale:
        store.delete(stale)


def print_progress(line: str) -> None:  # the CLI's progress line: one line, rewritten in place
    sys.stderr.write(f"\r{line}\x1b[K")
    sys.stderr.flush()
