"""A checkpoint store on a local (or mounted: NFS, /gcs/ FUSE) folder.

Every write is atomic: the bytes go to a temporary file in the target
folder, are fsynced, then renamed over the key, and the folder is fsynced so
the rename survives a power cut. A reader therefore sees the old object or
the new one, never half of one.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable

from launcher.storage.base import CHUNK, MissingObjectError, ObjectInfo, Progress, Store, check_key, safe_local_path

__all__ = ["LocalStore", "atomic_write", "copy_file"]


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def copy_file(src, dst, progress: Progress | None = None) -> None:  # type: ignore[no-untyped-def]
    """Copy an open binary stream to another, reporting bytes as they move."""
    while chunk := src.read(CHUNK):
        dst.write(chunk)
        if progress:
            progress(len(chunk))


def atomic_write(dest: Path, write) -> None:  # type: ignore[no-untyped-def]
    """Call write(file) on a temp file next to `dest`, fsync it, then rename it over `dest`."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(dest.parent)


class LocalStore(Store):
    scheme = "file"

    def __init__(self, uri: str) -> None:
        path = uri[len("file://") :] if uri.startswith("file://") else uri
        super().__init__(str(Path(path).expanduser()))
        self.root = Path(self.uri)

    def sub(self, folder: str) -> "LocalStore":
        return LocalStore(str(self.root / check_key(folder)))

    def _path(self, key: str) -> Path:
        return safe_local_path(self.root, key)

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        if not self.root.is_dir():
            return []
        found = []
        for dirpath, _dirs, files in os.walk(self.root):
            for name in files:
                if name.startswith(".") and name.endswith(".part"):
                    continue  # an atomic write in progress, not an object yet
                path = Path(dirpath) / name
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    found.append(ObjectInfo(key, path.stat().st_size))
        return sorted(found, key=lambda o: o.key)

    def put(self, key: str, src: Path, progress: Progress | None = None, sha256: str | None = None) -> ObjectInfo:
        dest = self._path(key)
        with open(src, "rb") as f:
            atomic_write(dest, lambda out: copy_file(f, out, progress))
        return ObjectInfo(key, dest.stat().st_size)

    def get(self, key: str, dest: Path, progress: Progress | None = None) -> str:
        digest = hashlib.sha256()
        try:
            src = open(self._path(key), "rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise MissingObjectError(self.url(key)) from None
        with src as f, open(dest, "wb") as out:
            while chunk := f.read(CHUNK):
                out.write(chunk)
                digest.update(chunk)
                if progress:
                    progress(len(chunk))
        return digest.hexdigest()

    def put_bytes(self, key: str, data: bytes) -> None:
        atomic_write(self._path(key), lambda out: out.write(data))

    def put_bytes_new(self, key: str, data: bytes) -> bool:
        """Write a temp file, then hard-link it to the key: the link fails if the key exists, and a
        reader never sees a half-written object."""
        dest = self._path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.link(tmp, dest)
        except FileExistsError:
            return False
        finally:
            Path(tmp).unlink(missing_ok=True)
        _fsync_dir(dest.parent)
        return True

    def get_bytes(self, key: str) -> bytes | None:
        path = self._path(key)
        return path.read_bytes() if path.is_file() else None

    def delete(self, keys: Iterable[str]) -> None:
        for key in keys:
            self._path(key).unlink(missing_ok=True)
        self._prune_empty_dirs()

    def _prune_empty_dirs(self) -> None:
        for dirpath, _dirs, _files in sorted(os.walk(self.root), key=lambda t: -len(t[0])):
            if Path(dirpath) != self.root and not os.listdir(dirpath):
                shutil.rmtree(dirpath, ignore_errors=True)
