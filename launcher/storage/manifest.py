"""The checkpoint layout and its manifests, the same on every store.

    <uri>/<run>/manifest.json                 newest complete checkpoint (written last)
    <uri>/<run>/manifests/00000007.json       every kept checkpoint's manifest (written just before)
    <uri>/<run>/files/00000007/last.pt        files first uploaded by checkpoint 7

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
import socket
from dataclasses import dataclass, field, replace
from typing import Any, Iterator

from launcher.errors import LauncherError
from launcher.storage.base import Store, UnsafeKeyError, check_key

__all__ = [
    "Manifest",
    "FileEntry",
    "ManifestError",
    "MANIFEST",
    "HISTORY",
    "FILES",
    "FORMAT",
    "file_key",
    "candidates",
    "write_manifest",
    "retain",
    "versions_in_store",
    "writer_info",
]

MANIFEST = "manifest.json"
HISTORY = "manifests/"
FILES = "files/"
FORMAT = 1


class ManifestError(LauncherError):
    """A manifest that cannot be trusted: unreadable, truncated, or with unsafe keys."""


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
        try:
            body = json.loads(data)
            digest = body.pop("digest")
            files = {check_key(name): _entry(raw) for name, raw in body["files"].items()}
        except UnsafeKeyError as exc:
            raise ManifestError(f"{where} is refused: {exc.message}") from None
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ManifestError(f"{where} is damaged ({type(exc).__name__}: {exc}).") from None
        if digest != _digest(body):
            raise ManifestError(f"{where} does not match its digest (truncated or edited).")
        return cls(version=int(body["version"]), files=files, epoch=body.get("epoch"), step=body.get("step"),
                   time=float(body.get("time") or 0), spec_hash=body.get("spec_hash") or "",
                   writer=body.get("writer") or {})  # fmt: skip

    def renumbered(self, version: int) -> "Manifest":
        return replace(self, version=version)


def _entry(raw: dict[str, Any]) -> FileEntry:
    return FileEntry(check_key(raw["key"]), int(raw["size"]), str(raw["sha256"]))


def _digest(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def history_key(version: int) -> str:
    return f"{HISTORY}{version:08d}.json"


def file_key(version: int, name: str) -> str:
    return f"{FILES}{version:08d}/{check_key(name)}"


def writer_info(platform: str = "") -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "platform": platform or os.environ.get("LAUNCHER_PLATFORM", "")}


def versions_in_store(store: Store) -> list[int]:
    """Version numbers that have a manifest in `manifests/`, oldest first."""
    found = []
    for obj in store.list(HISTORY):
        stem = obj.key[len(HISTORY) :].removesuffix(".json")
        if stem.isdigit():
            found.append(int(stem))
    return sorted(found)


def candidates(store: Store) -> Iterator[tuple[str, Manifest | ManifestError]]:
    """Every manifest a reader may use, newest first: manifest.json, then the history.

    Yields (where, manifest) or (where, error) so the caller can say what it skipped.
    """
    tried: set[int] = set()
    head = store.get_bytes(MANIFEST)
    if head is not None:
        found = _parse(head, store.url(MANIFEST))
        if isinstance(found, Manifest):
            tried.add(found.version)
        yield store.url(MANIFEST), found
    for version in reversed(versions_in_store(store)):
        if version in tried:
            continue
        key = history_key(version)
        data = store.get_bytes(key)
        yield store.url(key), ManifestError(f"{store.url(key)} vanished.") if data is None else _parse(data, store.url(key))


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
