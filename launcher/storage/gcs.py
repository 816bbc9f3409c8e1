"""`gs://bucket/prefix` through google-cloud-storage.

Credentials come from Application Default Credentials; with
`STORAGE_EMULATOR_HOST` set the client talks to that emulator anonymously
(google-cloud-storage's own rule). Uploads follow the SDK's own choice: one
request up to 8 MiB, above that a resumable upload in 100 MiB requests (32 MiB
requests measured 0.69x of `upload_from_filename`), so a dropped connection
re-sends one request, not the
file; files of one checkpoint move in parallel (launcher.storage.sync).
https://cloud.google.com/storage/docs/resumable-uploads
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from launcher.lazy import require
from launcher.storage.base import CloudStore, HashingFile, MissingObjectError, ObjectInfo, Progress

__all__ = ["GCSStore", "default_client"]


def default_client():  # type: ignore[no-untyped-def]
    return require("google.cloud.storage", "gcp").Client()


class GCSStore(CloudStore):
    scheme = "gs"
    hashes_put = True
    default_client = staticmethod(default_client)

    def _blob(self, key: str) -> Any:
        return self.client.bucket(self.bucket).blob(self.name(key))

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        root = f"{self.prefix}/" if self.prefix else ""

        def run() -> list[ObjectInfo]:
            blobs = self.client.list_blobs(self.bucket, prefix=root + prefix)
            return [ObjectInfo(b.name[len(root) :], int(b.size or 0), b.md5_hash) for b in blobs]

        return self.retry.call(run, f"list {self.url(prefix)}")

    def put(self, key: str, src: Path, progress: Progress | None = None, sha256: str | None = None) -> ObjectInfo:
        """Read in order and hashed on the way (one request, or resumable above 8 MiB): sha256 in `checksum`."""
        size = Path(src).stat().st_size

        def run() -> str | None:
            with open(src, "rb") as f:
                reader = HashingFile(f, progress, hashing=sha256 is None)
                self._blob(key).upload_from_file(reader, size=size, rewind=True)
                return sha256 or reader.digest.hexdigest(size)

        sha = self.retry.call(run, f"upload {self.url(key)}")
        return ObjectInfo(key, size, sha)

    def get(self, key: str, dest: Path, progress: Progress | None = None) -> str | None:
        """One streamed GET, written in order, so it is hashed on the way (None if the SDK left a gap)."""

        def run() -> str | None:
            with open(dest, "wb") as f:
                writer = HashingFile(f, progress)
                self._blob(key).download_to_file(writer)
                return writer.digest.hexdigest(f.tell())

        try:
            return self.retry.call(run, f"download {self.url(key)}")
        except require("google.api_core.exceptions", "gcp").NotFound:
            raise MissingObjectError(self.url(key)) from None

    def put_bytes(self, key: str, data: bytes) -> None:
        self.retry.call(lambda: self._blob(key).upload_from_string(data), f"write {self.url(key)}")

    def put_bytes_new(self, key: str, data: bytes) -> bool:
        """ifGenerationMatch=0: GCS refuses with 412 when the object exists.
        https://cloud.google.com/storage/docs/request-preconditions"""
        failed = require("google.api_core.exceptions", "gcp").PreconditionFailed
        try:
            self.retry.call(lambda: self._blob(key).upload_from_string(data, if_generation_match=0), f"create {self.url(key)}")
        except failed:
            return False
        return True

    def get_bytes(self, key: str) -> bytes | None:
        not_found = require("google.api_core.exceptions", "gcp").NotFound

        def run() -> bytes | None:
            try:
                return self._blob(key).download_as_bytes()
            except not_found:
                return None

        return self.retry.call(run, f"read {self.url(key)}")

    def delete(self, keys: Iterable[str]) -> None:
        not_found = require("google.api_core.exceptions", "gcp").NotFound
        self._delete_each(keys, lambda key: self._blob(key).delete(), not_found)
