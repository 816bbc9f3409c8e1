"""The checkpoint layout and its manifests, the same on every store.

    <uri>/<run>/manifest.json                 newest complete checkpoint (written last)
    <uri>/<run>/manifests/00000007.json       every kept checkpoint's manifest (written just before)
    <uri>/<run>/files/00000007/last.pt        files first uploaded by checkpoint 7
    <uri>/<run>/upload-rate.json              the run's measured upload bandwidth (launcher.runtime.grace)

A checkpoint ("version") is the set of files in the trainer's folder when
`last.pt` changed. Its manifest lists, per file, the key holding it, its size
and sha256, plus epoch, step, time, spec hash and writer. A file unchanged
since an earlier version is not uploaded again: the new manifest points at
the earlier key. Files go up first, then `manifests/N.json`, then
`manifest.json`, so a reader that trusts only manifests never sees a
partial checkpoint; an interrupted upload leaves only unreferenced files
under `files/N/`, which the next writer deletes.

Each manifest carries a sha256 `digest` of its own content, so a truncated or
edited manifest is detected and the reader falls back to the previous one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
from dataclasses import dataclass, field
from typing import Any, Iterator

from launcher.errors import LauncherError
from launcher.storage.base import Store, UnsafeKeyError, check_key

__all__ = [
    "Manifest",
    "FileEntry",
    "ManifestError",
    "StaleHead",
    "MANIFEST",
    "HISTORY",
    "FILES",
    "FORMAT",
    "file_key",
    "candidates",
    "write_manifest",
    "retain",
    "RATE_FILE",
    "DATA_PROGRESS",
    "versions_in_store",
    "writer_info",
]

MANIFEST = "manifest.json"
HISTORY = "manifests/"
FILES = "files/"
RATE_FILE = "upload-rate.json"
# the trainer's data progress (shards fetched/total, bytes): `.data-progress.json` in the training folder (a dot-file:
# never part of a checkpoint), copied by the checkpoint syncer to `data-progress.json` in the run folder; before the
# syncer starts, node 0 writes its data staging record there itself (launcher.storage.dataset.StagingProgress)
DATA_PROGRESS = "data-progress.json"
FORMAT = 1


class ManifestError(LauncherError):
    """A manifest that cannot be trusted: unreadable, truncated, or with unsafe keys.

    `version` is the checkpoint it belonged to, when its file name says so.
    """

    def __init__(self, message: str, fix: str | None = None, version: int | None = None) -> None:
        super().__init__(message, fix)
        self.version = version


class StaleHead(ManifestError):
    """Not damage: manifest.json names an older checkpoint than the newest complete one under manifests/."""


@dataclass(frozen=True)
class FileEntry:
    key: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    version: int
    files: dict[str, FileEntry]
    epoch: int | None = None
    step: int | None = None
    time: float = 0.0
    spec_hash: str = ""
    writer: dict[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files.values())

    def body(self) -> dict[str, Any]:
        files = {name: {"key": f.key, "size": f.size, "sha256": f.sha256} for name, f in sorted(self.files.items())}
        return {"format": FORMAT, "version": self.version, "epoch": self.epoch, "step": self.step,
                "time": self.time, "spec_hash": self.spec_hash, "writer": self.writer, "files": files}  # fmt: skip

    def to_bytes(self) -> bytes:
        body = self.body()
        body["digest"] = _digest(body)
        return json.dumps(body, indent=1, sort_keys=True).encode()

    @classmethod
    def parse(cls, data: bytes, where: str = "manifest") -> "Manifest":
        """Parse and check a manifest; any doubt raises ManifestError (the caller falls back)."""
        if len(data) > MAX_MANIFEST_BYTES:
            raise ManifestError(f"{where} is damaged (larger than {MAX_MANIFEST_BYTES // 2**20} MiB).")
        try:
            body = json.loads(data, object_pairs_hook=_unique)
            digest = body.pop("digest")
        except RecursionError:
            raise ManifestError(f"{where} is damaged (JSON nested too deeply).") from None
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ManifestError(f"{where} is damaged ({type(exc).__name__}: {str(exc)[:200]}).") from None
        if digest != _digest(body):
            raise ManifestError(f"{where} does not match its digest (truncated or edited).")
        try:  # an intact manifest may still be wrong (written by another tool, or by a bug): check every field
            files = _files(body["files"])
            return cls(version=_int(body, "version"), files=files, epoch=_int(body, "epoch", None),
                       step=_int(body, "step", None), time=_number(body, "time"), spec_hash=_str(body, "spec_hash"),
                       writer=_dict(body, "writer"))  # fmt: skip
        except UnsafeKeyError as exc:
            raise ManifestError(f"{where} is refused: {exc.message}") from None
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ManifestError(f"{where} is intact but invalid ({_why(exc)}).") from None


MAX_NAME_BYTES = 1024  # S3 and GCS object names; Azure allows 1024 characters
MAX_MANIFEST_BYTES = 64 * 2**20  # a manifest lists a folder of checkpoint files: kilobytes, not a data set
MAX_NUMBER = 2**63 - 1  # sizes, versions, epochs and steps fit a signed 64-bit integer; anything larger is a lie
# Control characters (newline, ESC) and invisible or right-to-left format characters in a file name would
# make `ckpt ls` print something other than what gets written.
_HIDDEN_CHARS = re.compile("[\x00-\x1f\x7f-\x9f\u00ad\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff]")


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object with no key given twice (json.loads would keep the last one silently)."""
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise ValueError(f"the key {key[:40]!r} appears twice in one object")
        found[key] = value
    return found


MAX_PART_BYTES = 255  # one path component on ext4, xfs, NTFS, APFS


def _files(raw: Any) -> dict[str, FileEntry]:
    if not isinstance(raw, dict):
        raise TypeError(f"'files' is {type(raw).__name__}, not an object")
    files = {_name(name): _entry(name, entry) for name, entry in raw.items()}
    _check_clashes(files)
    return files


def _entry(name: str, raw: Any) -> FileEntry:
    if not isinstance(raw, dict):
        raise TypeError(f"the entry of {name!r} is {type(raw).__name__}, not an object")
    key, size, sha = _name(raw["key"]), _int(raw, "size"), raw["sha256"]
    if not isinstance(sha, str) or len(sha) != 64:
        raise ValueError(f"the sha256 of {name!r} is not 64 hex digits")
    return FileEntry(key, size, sha)


def _name(name: Any) -> str:
    """A file name or key that is safe and that every file system and store can hold."""
    if not isinstance(name, str):
        raise TypeError(f"the name {name!r} is not a string")
    check_key(name)
    if _HIDDEN_CHARS.search(name):
        raise ValueError(f"the name {name[:40]!r} holds a control or invisible character")
    encoded = name.encode("utf-8", "surrogatepass")
    if len(encoded) > MAX_NAME_BYTES or any(
        len(p.encode("utf-8", "surrogatepass")) > MAX_PART_BYTES for p in name.split("/")
    ):
        raise ValueError(f"the name {name[:40]!r}... is too long for a file system ({len(encoded)} bytes)")
    if any(part.startswith(".") for part in name.split("/")):
        raise ValueError(f"the name {name!r} is hidden; the launcher never stores dot-files")
    return name


def _check_clashes(files: dict[str, FileEntry]) -> None:
    """Two names that cannot both exist in one folder: `a` and `a/b`, or `A.pt` and `a.pt` (macOS, Windows)."""
    folded: dict[str, str] = {}
    for name in files:
        other = folded.setdefault(name.casefold(), name)
        if other != name:
            raise ValueError(f"file-name clash: {other!r} and {name!r} differ only in case")
    for name in files:
        parts = name.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in files:
                raise ValueError(f"file-name clash: {'/'.join(parts[:i])!r} is a file and a folder of {name!r}")


def _int(body: dict[str, Any], key: str, default: Any = ...) -> Any:
    value = body.get(key, default) if default is not ... else body[key]
    if value is None and default is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_NUMBER:
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:40] + "..."
        raise TypeError(f"{key!r} is {shown}, not a whole number below 2**63")
    return value


def _number(body: dict[str, Any], key: str) -> float:
    value = body[key]
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value < 1e11:
        raise TypeError(f"{key!r} is {value!r}, not a time in seconds since 1970")
    return float(value)


def _str(body: dict[str, Any], key: str) -> str:
    value = body.get(key) or ""
    if not isinstance(value, str):
        raise TypeError(f"{key!r} is {value!r}, not a string")
    return value


def _dict(body: dict[str, Any], key: str) -> dict[str, Any]:
    value = body.get(key) or {}
    if not isinstance(value, dict):
        raise TypeError(f"{key!r} is {value!r}, not an object")
    return value


def _why(exc: BaseException) -> str:
    return f"missing {exc}" if isinstance(exc, KeyError) else str(exc)


def _digest(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def history_key(version: int) -> str:
    return f"{HISTORY}{version:08d}.json"


def file_key(version: int, name: str) -> str:
    return f"{FILES}{version:08d}/{check_key(name)}"


def writer_info(platform: str = "") -> dict[str, Any]:
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "platform": platform or os.environ.get("LAUNCHER_PLATFORM", ""),
    }


def versions_in_store(store: Store) -> list[int]:
    """Version numbers that have a manifest in `manifests/`, oldest first."""
    found = []
    for obj in store.list(HISTORY):
        stem = obj.key[len(HISTORY) :].removesuffix(".json")
        if stem.isdigit():
            found.append(int(stem))
    return sorted(found)


def candidates(store: Store) -> Iterator[tuple[str, Manifest | ManifestError]]:
    """Every manifest a reader may use, newest version first; yields (where, manifest) or (where, error).

    The newest is decided by version number, not by which file is the head:
    a writer that died between `manifests/N.json` and `manifest.json` leaves
    a stale head, and version N is still complete. A damaged head is
    reported first (errors carry `.version` when the file name tells it).
    """
    history = versions_in_store(store)
    head = store.get_bytes(MANIFEST)
    found = None if head is None else _parse(head, store.url(MANIFEST))
    if isinstance(found, ManifestError):
        yield store.url(MANIFEST), found
    elif isinstance(found, Manifest) and found.version not in history:
        history = sorted({*history, found.version})
    elif isinstance(found, Manifest) and found.version < history[-1]:
        yield (
            store.url(MANIFEST),
            StaleHead(
                f"{store.url(MANIFEST)} names checkpoint {found.version}, but checkpoint {history[-1]} under {HISTORY} "
                "is newer (its writer stopped between the two writes); the newer one is tried first."
            ),
        )
    for version in reversed(history):
        if isinstance(found, Manifest) and version == found.version:
            yield store.url(MANIFEST), found
            continue
        key = history_key(version)
        yield store.url(key), _history(store, key, version)


def _history(store: Store, key: str, version: int) -> Manifest | ManifestError:
    data = store.get_bytes(key)
    if data is None:
        return ManifestError(f"{store.url(key)} vanished while it was read (deleted by retention?).", version=version)
    found = _parse(data, store.url(key))
    if isinstance(found, Manifest) and found.version != version:
        return ManifestError(f"{store.url(key)} says it is version {found.version}; refused.", version=version)
    if isinstance(found, ManifestError):
        found.version = version
    return found


def _parse(data: bytes, where: str) -> Manifest | ManifestError:
    try:
        return Manifest.parse(data, where)
    except ManifestError as exc:
        return exc


def write_manifest(store: Store, manifest: Manifest) -> None:
    """History copy first, then the head: a crash between the two leaves a readable history."""
    data = manifest.to_bytes()
    store.put_bytes(history_key(manifest.version), data)
    store.put_bytes(MANIFEST, data)


def retain(store: Store, keep: int, newest: Manifest) -> list[str]:
    """Keep the newest `keep` versions; delete older manifests and files nothing kept refers to.

    Never deletes a file the newest manifest uses, nor files of versions
    newer than it (another upload may be in progress). Returns deleted keys.
    """
    versions = versions_in_store(store)
    kept = set(versions[-max(keep, 1) :]) | {newest.version}
    drop_manifests = [history_key(v) for v in versions if v not in kept]
    used = {f.key for f in newest.files.values()}
    for version in kept - {newest.version}:
        data = store.get_bytes(history_key(version))
        found = _parse(data, history_key(version)) if data else None
        if isinstance(found, Manifest):
            used |= {f.key for f in found.files.values()}
    drop_files = [o.key for o in store.list(FILES)
                  if o.key not in used and _is_safe(o.key) and _version_of(o.key) <= newest.version]  # fmt: skip
    store.delete(drop_manifests + drop_files)
    return drop_manifests + drop_files


def _is_safe(key: str) -> bool:
    """Listings may hold keys written by other tools; never act on one that could escape its folder."""
    try:
        check_key(key)
    except LauncherError:
        return False
    return True


def _version_of(key: str) -> int:
    folder = key[len(FILES) :].split("/", 1)[0]
    return int(folder) if folder.isdigit() else 0
