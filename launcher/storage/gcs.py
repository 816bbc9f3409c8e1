"""`gs://bucket/prefix` through google-cloud-storage.

Credentials come from Application Default Credentials; with
`STORAGE_EMULATOR_HOST` set the client talks to that emulator anonymously
(google-cloud-storage's own rule). A file up to 8 MiB goes up in one
multipart request; a larger one is a resumable upload sent as one streamed
request, and a download is one streamed GET, both through the client's own
authorized session, read 1 MiB at a time and hashed on the way (the SDK's
calls read 100 MiB upload chunks into memory and download bodies 8 KiB at a
time). Files of one checkpoint move in parallel (launcher.storage.sync).
https://cloud.google.com/storage/docs/performing-resumable-uploads
"""

from __future__ import annotations

import base64
import itertools
from pathlib import Path
from typing import Any, Iterable, Iterator

from launcher.lazy import require
from launcher.storage.base import CloudStore, HashingFile, MissingObjectError, ObjectInfo, Progress

__all__ = ["GCSStore", "default_client"]

MULTIPART_MAX = 8 << 20  # up to this size a file goes up in one multipart request (the SDK's own limit)
READ = 1 << 20  # bytes per read of a streamed body, up or down (8 MiB reads measured slower: urllib3 joins its buffers)
TIMEOUT = (60, 60)  # seconds to connect and between bytes: the SDK's default


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

    def count(self, limit: int, prefix: str = "") -> int:
        root = f"{self.prefix}/" if self.prefix else ""

        def run() -> int:  # max_results: no page past `limit` is asked for; islice: a server that sends more anyway
            blobs = self.client.list_blobs(self.bucket, prefix=root + prefix, max_results=limit)
            return sum(1 for _ in itertools.islice(blobs, limit))

        return self.retry.call(run, f"list {self.url(prefix)}")

    def put(self, key: str, src: Path, progress: Progress | None = None, sha256: str | None = None) -> ObjectInfo:
        """Read once, in order, hashed on the way: sha256 in `checksum`.

        Up to 8 MiB one multipart request (the SDK's `upload_from_file`); larger
        files are a resumable upload sent as one streamed request, as Google
        advises ("avoid breaking a transfer into smaller chunks" - each chunk is
        a request and a round trip). The SDK's `upload_from_filename` sends
        100 MiB chunks, each read into memory first: half the speed of this on a
        500 MB file (benchmarks/bench_storage.py). A failed request starts the file
        again, as the SDK's upload does without a generation precondition.
        https://cloud.google.com/storage/docs/performing-resumable-uploads
        """
        size = Path(src).stat().st_size
        if size > MULTIPART_MAX:
            return ObjectInfo(key, size, self._put_streamed(key, src, size, progress, sha256))

        def run() -> str | None:
            with open(src, "rb") as f:
                reader = HashingFile(f, progress, hashing=sha256 is None)
                self._blob(key).upload_from_file(reader, size=size, rewind=True)
                return sha256 or reader.hexdigest(size)

        return ObjectInfo(key, size, self.retry.call(run, f"upload {self.url(key)}"))

    def _put_streamed(
        self, key: str, src: Path, size: int, progress: Progress | None, sha256: str | None
    ) -> str | None:
        """One resumable session, the whole file in one PUT read 1 MiB at a time; the crc32c GCS computed must match ours."""
        exceptions = require("google.api_core.exceptions", "gcp")
        crc = require("google_crc32c", "gcp").Checksum()
        blob = self._blob(key)
        with open(src, "rb") as f:
            reader = HashingFile(f, progress, hashing=sha256 is None, also=(crc,))

            def run() -> None:
                session = blob.create_resumable_upload_session(size=size, checksum=None)
                reader.seek(0)
                response = self.client._http.put(session, data=_Body(reader, size), timeout=TIMEOUT,
                                                 headers={"Content-Type": "application/octet-stream"})  # fmt: skip
                if response.status_code >= 400:
                    raise exceptions.from_http_response(response)
                reader.wait()
                stored = response.json() if response.status_code in (200, 201) else {}
                if not reader.digest.complete(size) or stored.get("crc32c") != base64.b64encode(crc.digest()).decode():
                    raise UploadMismatch(f"{self.url(key)}: GCS answered {response.status_code} and crc32c "
                                         f"{stored.get('crc32c')} for the {size} bytes sent")  # fmt: skip

            self.retry.call(run, f"upload {self.url(key)}")
            return sha256 or reader.hexdigest(size)

    def get(self, key: str, dest: Path, progress: Progress | None = None) -> str | None:
        """One streamed GET of the object's media, read 1 MiB at a time, written in order and hashed on the way.

        The request is the JSON API's media download (`/download/storage/v1/b/B/o/O?alt=media`,
        the URL `Blob.download_to_file` builds) sent through the client's own
        authorized session, so credentials, the emulator and the endpoint are the
        SDK's. Its `download_to_file` reads the body 8 KiB at a time: a third to
        0.4x the speed of this on a 500 MB object (benchmarks/bench_storage.py). The pull checks the
        sha256 against the manifest, so the SDK's own crc32c would be a second
        hash of the same bytes.
        """
        exceptions = require("google.api_core.exceptions", "gcp")
        url = f"{self.client.api_endpoint}/download/storage/v1{self._blob(key).path}?alt=media"

        def run() -> str | None:
            with self.client._http.get(url, stream=True, timeout=TIMEOUT) as response:
                if response.status_code >= 400:
                    raise exceptions.from_http_response(response)
                with open(dest, "wb") as f:
                    writer = HashingFile(f, progress)
                    while chunk := response.raw.read(READ, decode_content=False):
                        writer.write(chunk)
                    return writer.hexdigest(writer.tell())

        try:
            return self.retry.call(run, f"download {self.url(key)}")
        except exceptions.NotFound:
            raise MissingObjectError(self.url(key)) from None

    def put_bytes(self, key: str, data: bytes) -> None:
        self.retry.call(lambda: self._blob(key).upload_from_string(data), f"write {self.url(key)}")

    def put_bytes_new(self, key: str, data: bytes) -> bool:
        """ifGenerationMatch=0: GCS refuses with 412 when the object exists.
        https://cloud.google.com/storage/docs/request-preconditions"""
        failed = require("google.api_core.exceptions", "gcp").PreconditionFailed
        try:
            self.retry.call(
                lambda: self._blob(key).upload_from_string(data, if_generation_match=0), f"create {self.url(key)}"
            )
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


class UploadMismatch(ConnectionError):
    """GCS kept something other than the bytes sent (a cut request, a different crc32c): retried like a dropped connection."""


class _Body:
    """A request body of known length, read `READ` bytes at a time (requests sends an iterable with len() as is)."""

    def __init__(self, reader: HashingFile, size: int) -> None:
        self.reader, self.size = reader, size

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.reader.read(READ):
            yield chunk
