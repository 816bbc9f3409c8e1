"""Packed datasets: WebDataset-compatible tar shards and the index that makes them one dataset.

A packed dataset is a folder (local or in any store) holding

    train-000000.tar, train-000001.tar, ..., val-000000.tar, ...
    index.json      written LAST: splits, classes, per shard samples, bytes, sha256, labels

Each shard is a plain, uncompressed POSIX tar in WebDataset's layout: the
members of one sample share a key and differ by extension, image first,
then its label (`train/cat/img_01.jpg` beside `train/cat/img_01.cls`, the
class index in ASCII; a YOLO sample's label is its `.txt`). Any WebDataset
reader can read the shards; this launcher reads them through the index.

Writing is deterministic: members in the given order, mtime 0, uid/gid 0,
no user names, mode 0644, so the same input gives the same bytes and the
same sha256. The index is the only thing a reader trusts, as the checkpoint
manifest is: a shard is used only when its size and sha256 match the
index, and its members are checked before any byte is used (regular files
only, relative names without `..`, no duplicate keys, sizes within bounds).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Iterable, Iterator, NamedTuple, Sequence

from launcher.errors import LauncherError
from launcher.storage.base import MissingObjectError, Store, UnsafeKeyError, check_key

__all__ = [
    "INDEX",
    "FORMAT",
    "MAX_MEMBER",
    "ShardError",
    "ShardInfo",
    "Index",
    "Member",
    "Sample",
    "member_size",
    "write_shard",
    "read_members",
    "read_images",
    "read_samples",
    "read_index",
    "fetch_shard",
    "stratified_take",
    "parse_size",
]

INDEX = "index.json"
FORMAT = "launcher-shards/1"
MAX_MEMBER = 256 << 20  # no image or label is this large; a header that says so is hostile or damaged
_BLOCK = 512


class ShardError(LauncherError):
    """A packed dataset that cannot be trusted: a missing, damaged or hostile shard or index."""


@dataclass(frozen=True)
class ShardInfo:
    """One shard as the index records it; `labels[i]` is the class of its i-th sample (-1: none)."""

    name: str
    samples: int
    bytes: int
    sha256: str
    labels: tuple[int, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "samples": self.samples, "bytes": self.bytes, "sha256": self.sha256,
                "labels": list(self.labels)}  # fmt: skip


@dataclass(frozen=True)
class Index:
    """What `index.json` holds: the layout, classes, each split's shards, and where the data came from."""

    layout: str  # "imagefolder" or "yolo"
    classes: tuple[str, ...]
    splits: dict[str, tuple[ShardInfo, ...]]
    source: dict[str, Any] = field(default_factory=dict)  # files, bytes, digest (sha256 of the sorted listing)
    data_yaml: str = ""  # YOLO: the source's data.yaml, so an unpacked copy reads as the original

    def samples(self, split: str) -> int:
        return sum(s.samples for s in self.splits.get(split, ()))

    def bytes(self, split: str | None = None) -> int:
        splits = [split] if split else list(self.splits)
        return sum(s.bytes for name in splits for s in self.splits.get(name, ()))

    def shards(self) -> list[ShardInfo]:
        return [s for shards in self.splits.values() for s in shards]

    def to_bytes(self) -> bytes:
        body = {"format": FORMAT, "layout": self.layout, "classes": list(self.classes),
                "splits": {k: [s.to_json() for s in v] for k, v in self.splits.items()},
                "source": self.source, "data_yaml": self.data_yaml}  # fmt: skip
        return (json.dumps(body, sort_keys=True, separators=(",", ":")) + "\n").encode()

    @classmethod
    def from_bytes(cls, data: bytes, where: str) -> "Index":
        try:
            body = json.loads(data)
            if body.get("format") != FORMAT:
                raise ValueError(f"format {body.get('format')!r}, expected {FORMAT!r}")
            splits = {str(k): tuple(_shard_info(s) for s in v) for k, v in body["splits"].items()}
            index = cls(str(body["layout"]), tuple(str(c) for c in body["classes"]), splits,
                        dict(body.get("source") or {}), str(body.get("data_yaml") or ""))  # fmt: skip
        except (ValueError, KeyError, TypeError, AttributeError, UnsafeKeyError) as exc:
            raise ShardError(f"The dataset index {where} is damaged ({exc}).",
                             "Pack the dataset again with `launch data pack`.") from None  # fmt: skip
        return index


def _shard_info(body: dict[str, Any]) -> ShardInfo:
    name = check_key(str(body["name"]))
    if "/" in name or not name.endswith(".tar"):
        raise ValueError(f"shard name {name!r}")
    labels = tuple(int(v) for v in body.get("labels") or ())
    samples, size, sha = int(body["samples"]), int(body["bytes"]), str(body["sha256"])
    if samples < 0 or size < 0 or len(sha) != 64 or (labels and len(labels) != samples):
        raise ValueError(f"shard {name}: inconsistent samples, bytes, sha256 or labels")
    return ShardInfo(name, samples, size, sha, labels)


# ---------------------------------------------------------------- writing


def parse_size(text: str) -> int:
    """'256MB', '1.5GB', '64KiB' or a byte count -> bytes."""
    units = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 1 << 10, "MIB": 1 << 20, "GIB": 1 << 30}
    raw = text.strip().upper().replace(" ", "")
    digits = raw.rstrip("KMGIB")
    try:
        value = int(float(digits) * units[raw[len(digits) :]])
    except (ValueError, KeyError):
        raise LauncherError(f"{text!r} is not a size.", "Write it as 256MB, 1GB or a number of bytes.") from None
    if value < 1:
        raise LauncherError(f"The shard size {text!r} is below one byte.", "Use a size such as 256MB.")
    return value


def member_size(name: str, size: int) -> int:
    """Bytes one member takes in a shard: its header (plus a PAX header for a long name) and padded data."""
    header = _BLOCK if len(name.encode()) <= 100 else 3 * _BLOCK + _BLOCK * (len(name.encode()) // _BLOCK)
    return header + -(-size // _BLOCK) * _BLOCK


def write_shard(out: IO[bytes], members: Iterable[tuple[str, bytes]]) -> None:
    """Write `(name, data)` members as one tar, byte for byte the same for the same members."""
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(check_key(name))
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))


# ---------------------------------------------------------------- reading


class Member(NamedTuple):
    """Where one member's bytes are in a shard file (a named tuple: a shard's table makes thousands of them, and a
    frozen dataclass took three times as long to build)."""

    ext: str
    offset: int
    size: int


class Sample(NamedTuple):
    """One sample of a shard: its key and its members by extension (image first, then the label)."""

    key: str
    members: tuple[Member, ...]

    def image(self) -> Member:
        return self.members[0]

    def label(self, ext: str) -> Member | None:
        return next((m for m in self.members if m.ext == ext), None)


def read_members(path: Path, name: str | None = None, max_member: int = MAX_MEMBER) -> list[Sample]:
    """The samples of a shard file, in order, without reading their data; refuses anything hostile.

    Only regular files with safe relative names (no `..`, not absolute), each at most `max_member`
    bytes and inside the file, grouped by key; a key that comes back after another one is refused.
    """
    name = name or Path(path).name
    total = os.path.getsize(path)
    table = _plain_table(path, total, max_member)
    if table is not None:
        names, stems = table.names, table.stems
        members = [
            Member(names[m][stems[m] + 1 :].decode(), table.offsets[m], table.sizes[m]) for m in range(len(names))
        ]
        return [Sample(names[a][: stems[a]].decode(), tuple(members[a:b]))
                for a, b in zip(table.first, table.first[1:] + [len(names)])]  # fmt: skip
    samples: list[Sample] = []
    current: list[Member] = []
    key = None
    seen: set[str] = set()
    try:
        with tarfile.open(path, mode="r:") as tar:
            for info in _plain_headers(path, total) or tar:
                member_key, member = _checked(info, name, total, max_member)
                if member_key != key:
                    if key is not None:
                        samples.append(Sample(key, tuple(current)))
                    if member_key in seen:
                        raise ShardError(f"The shard {name} repeats the key {member_key!r} apart from its members.",
                                         "Pack the dataset again with `launch data pack`.")  # fmt: skip
                    seen.add(member_key)
                    key, current = member_key, []
                current.append(member)
    except tarfile.TarError as exc:
        raise ShardError(
            f"The shard {name} is damaged ({exc}).", "Pack the dataset again with `launch data pack`."
        ) from None
    if key is not None:
        samples.append(Sample(key, tuple(current)))
    return samples


def read_images(path: Path, name: str | None = None, max_member: int = MAX_MEMBER) -> list[tuple[int, int]]:
    """(offset, size) of each sample's image (its first member) in a shard file, in order: what the trainer reads,
    checked as `read_members` checks it, without building each sample's key and members."""
    table = _plain_table(path, os.path.getsize(path), max_member)
    if table is None:
        return [(s.members[0].offset, s.members[0].size) for s in read_members(path, name, max_member)]
    return [(table.offsets[m], table.sizes[m]) for m in table.first]


_ZERO_BLOCK = bytes(_BLOCK)


def _plain_headers(path: Path, total: int) -> list[tarfile.TarInfo] | None:
    """The members of a tar made only of plain ustar headers of regular files (what `write_shard` writes), read
    with a few slices each: tarfile's parser costs about as much as decoding a small image. Anything else
    (PAX or GNU headers, links, a bad checksum, a base-256 size) returns None, and tarfile reads the file."""
    import mmap  # noqa: PLC0415

    if total < _BLOCK:
        return None
    infos = []
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        pos = 0
        while pos + _BLOCK <= total:
            header = buf[pos : pos + _BLOCK]
            if header == _ZERO_BLOCK:
                break
            if header[156:157] not in (b"0", b"\0") or header[257:263] != b"ustar\0" or header[124] & 0x80:
                return None
            try:
                checksum = int(header[148:156].strip(b" \0"), 8)
                size = int(header[124:136].strip(b" \0") or b"0", 8)
                base, prefix = header[:100].split(b"\0", 1)[0], header[345:500].split(b"\0", 1)[0]
                name = (prefix + b"/" + base if prefix else base).decode()
            except (ValueError, UnicodeDecodeError):
                return None
            if checksum != sum(header) - sum(header[148:156]) + 8 * 32:
                return None
            info = tarfile.TarInfo(name)
            info.size, info.offset_data = size, pos + _BLOCK
            infos.append(info)
            pos += _BLOCK + -(-size // _BLOCK) * _BLOCK
    return infos


class _Table(NamedTuple):
    """A shard's members as `_plain_table` reads them: names as bytes, where each sample starts."""

    names: list[bytes]
    stems: list[int]  # where each name's extension starts (its first `.` after the last `/`)
    offsets: list[int]
    sizes: list[int]
    first: list[int]  # the member each sample starts with (its image)


def _plain_table(path: Path, total: int, max_member: int) -> _Table | None:
    """The member table of a shard as `write_shard` writes it (plain ustar headers of regular files), with every
    check `_checked` makes done on all headers at once (numpy): a header at a time in Python, the table of a
    1,562-image shard took 10 ms, a tenth of what its images take to decode (benchmarks/bench_shards.py), and the
    trainer reads one per shard. It takes on only what passes every check: anything else (another header kind, a
    bad checksum, an unsafe or odd name, a size beyond the file or the limit, a key apart from its members; or no
    numpy) returns None, and the general path reads the file and names the fault."""
    import mmap  # noqa: PLC0415

    try:
        import numpy as np  # noqa: PLC0415 - in the training image; without it tarfile reads the shard
    except ImportError:
        return None
    if total < _BLOCK:
        return None
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        starts, pos, last = [], 0, total - _BLOCK
        while pos <= last:  # the one sequential part: each header says where the next one is
            try:
                size = int(buf[pos + 124 : pos + 135], 8)
            except ValueError:
                if buf[pos : pos + _BLOCK] == _ZERO_BLOCK:
                    break
                return None
            if size < 0:
                return None
            starts.append(pos)
            pos += _BLOCK + ((size + _BLOCK - 1) & -_BLOCK)
        joined = b"".join([buf[p : p + _BLOCK] for p in starts])
    n = len(starts)
    if not n:
        return _Table([], [], [], [], [])
    heads = np.frombuffer(joined, np.uint8).reshape(n, _BLOCK)
    sizes = (heads[:, 124:135].astype(np.int64) - 48) @ (8 ** np.arange(10, -1, -1, dtype=np.int64))
    checksum = heads[:, 148:154]
    if not (
        _octal(heads[:, 124:135]) and _octal(checksum)  # the size and checksum fields as tarfile writes them:
        and not heads[:, 135].any() and not heads[:, 154].any() and (heads[:, 155] == 32).all()  # digits, NUL
        and ((heads[:, 156] == 48) | (heads[:, 156] == 0)).all()  # regular files only
        and (heads[:, 257:263] == np.frombuffer(b"ustar\0", np.uint8)).all()
        and not heads[:, 345:500].any()  # no ustar prefix (write_shard writes a long name as a PAX header)
        and int(sizes.max()) <= max_member and starts[-1] + _BLOCK + int(sizes[-1]) <= total
    ):  # fmt: skip
        return None
    expected = (checksum.astype(np.int64) - 48) @ (8 ** np.arange(5, -1, -1, dtype=np.int64))
    if ((heads.sum(1, dtype=np.uint32) - heads[:, 148:156].sum(1, dtype=np.uint32) + 8 * 32) != expected).any():
        return None
    name = heads[:, :100]
    column = np.arange(100)
    nul = name == 0
    length = np.where(nul.any(1), nul.argmax(1), 100)
    slash = name == 47
    folder_end = np.where(slash.any(1), 99 - slash[:, ::-1].argmax(1), -1)  # the last `/`, -1: none
    dot = (name == 46) & (column > folder_end[:, None])
    stem_end = dot.argmax(1)  # the first `.` after it: a key is `<folder>/<stem>`, the rest its extension
    if not (
        (np.count_nonzero(name, 1) == length).all()  # nothing after the name's NUL
        and dot.any(1).all() and (stem_end > folder_end + 1).all() and (stem_end + 1 < length).all()
        and not (name == 92).any()  # no backslash
        and not ((folder_end == -1) & (name[:, 1] == 58)).any()  # check_key's `c:` on a name without a folder
        and (folder_end != 0).all()  # an absolute name (`/x.png`): its folder is empty
    ):  # fmt: skip
        return None
    keys = np.ascontiguousarray(np.where(column < stem_end[:, None], name, 0)).view("S100").ravel()
    first = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))
    if len(set(keys[first].tolist())) != len(first):  # a key that comes back after another one
        return None
    folders = np.ascontiguousarray(np.where(column < folder_end[:, None], name, 0)).view("S100").ravel()
    names = np.ascontiguousarray(name).view("S100").ravel().tolist()  # the trailing NULs dropped
    try:
        b"\n".join(names).decode()
        for folder in set(folders.tolist()):
            if folder:
                check_key(folder.decode() + "/x")
    except (UnicodeDecodeError, UnsafeKeyError):
        return None
    offsets = [p + _BLOCK for p in starts]
    return _Table(names, stem_end.tolist(), offsets, sizes.tolist(), first.tolist())


def _octal(digits) -> bool:  # type: ignore[no-untyped-def]
    return bool(((digits >= 48) & (digits <= 55)).all())


def _checked(info: tarfile.TarInfo, shard: str, total: int, max_member: int) -> tuple[str, Member]:
    fix = "Only shards written by `launch data pack` (or WebDataset's plain tar files) are read; pack the data again."
    if not info.isreg() or info.issparse():
        kind = "link" if info.issym() or info.islnk() else "device" if info.isdev() else "non-file"
        raise ShardError(f"The shard {shard} holds a {kind} member {info.name!r}.", fix)
    try:
        check_key(info.name)
    except UnsafeKeyError:
        raise ShardError(f"The shard {shard} holds a member with an unsafe name {info.name!r}.", fix) from None
    if info.size > max_member or info.offset_data + info.size > total:
        raise ShardError(
            f"The shard {shard} says its member {info.name!r} holds {info.size} bytes, more than it can.", fix
        )
    folder, _, base = info.name.rpartition("/")
    stem, dot, ext = base.partition(".")
    if not dot or not stem or not ext:
        raise ShardError(f"The shard {shard} holds a member without a key and extension: {info.name!r}.", fix)
    return (f"{folder}/{stem}" if folder else stem), Member(ext, info.offset_data, info.size)


def read_samples(path: Path, name: str | None = None) -> Iterator[tuple[str, dict[str, bytes]]]:
    """Each sample of a shard file as (key, {extension: bytes}), checked as `read_members` does."""
    with open(path, "rb") as f:
        for sample in read_members(path, name):
            yield sample.key, {m.ext: os.pread(f.fileno(), m.size, m.offset) for m in sample.members}


# ---------------------------------------------------------------- the index and the store


def read_index(store: Store) -> Index | None:
    """The index of a packed dataset at `store`, or None when there is none (a plain folder)."""
    try:
        data = store.get_bytes(INDEX)
    except MissingObjectError:
        return None
    return None if data is None else Index.from_bytes(data, store.url(INDEX))


def fetch_shard(store: Store, shard: ShardInfo, dest: Path) -> Path:
    """Download one shard to `dest` (a temp file, checked, renamed); refuse it unless it matches the index."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.part")
    try:
        try:
            sha = store.get(shard.name, tmp)
        except MissingObjectError:
            raise ShardError(f"The shard {store.url(shard.name)} listed in the dataset's index is missing.",
                             "Pack the dataset again with `launch data pack`, or restore it.") from None  # fmt: skip
        size = tmp.stat().st_size
        sha = sha or _sha256(tmp)
        if size != shard.bytes or sha != shard.sha256:
            raise ShardError(f"The shard {store.url(shard.name)} is damaged: {size} bytes, sha256 {sha[:12]}..., "
                             f"but the index says {shard.bytes} bytes, {shard.sha256[:12]}....",
                             "Pack the dataset again with `launch data pack`, or restore the shard.")  # fmt: skip
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def stratified_take(shards: Sequence[ShardInfo], fraction: float) -> list[tuple[int, int]]:
    """(shard number, position) of the samples a `fraction` keeps: the first of each class in pack order.

    The packer interleaves classes in proportion, so this prefix of each class is a stratified subset
    that lies in the first shards: a fraction fetches only those. At least one sample per class.
    """
    totals: dict[int, int] = {}
    for shard in shards:
        for label in shard.labels or (-1,) * shard.samples:
            totals[label] = totals.get(label, 0) + 1
    if fraction >= 1.0:
        return [(i, j) for i, shard in enumerate(shards) for j in range(shard.samples)]
    quota = {label: max(1, round(n * fraction)) for label, n in totals.items()}
    taken: dict[int, int] = dict.fromkeys(quota, 0)
    keep = []
    for i, shard in enumerate(shards):
        for j, label in enumerate(shard.labels or (-1,) * shard.samples):
            if taken[label] < quota[label]:
                taken[label] += 1
                keep.append((i, j))
        if taken == quota:
            break
    return keep
