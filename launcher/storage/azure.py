"""`az://container/prefix` through azure-storage-blob.

The account comes from the standard environment: `AZURE_STORAGE_CONNECTION_STRING`
(also what Azurite uses), else `AZURE_STORAGE_ACCOUNT` with
DefaultAzureCredential (managed identity, Azure CLI login, environment
service principal). Large blobs are uploaded as blocks and downloaded as
ranges, `concurrency` at a time (the SDK's `max_concurrency`).
https://learn.microsoft.com/azure/storage/blobs/storage-blob-upload-python
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

from launcher.errors import LauncherError
from launcher.lazy import require
from launcher.storage.base import CloudStore, HashingFile, MissingObjectError, ObjectInfo, Progress

__all__ = ["AzureStore", "default_client"]

BLOCK = 16 * 1024 * 1024


def default_client(environ: Mapping[str, str] | None = None):  # type: ignore[no-untyped-def]
    """A BlobServiceClient from the connection string or the account name + the job's credential (launcher.azure_identity)."""
    environ = os.environ if environ is None else environ
    blob = require("azure.storage.blob", "azure")
    options = {"max_single_put_size": BLOCK, "max_block_size": BLOCK, "max_chunk_get_size": BLOCK}
    if environ.get("AZURE_STORAGE_CONNECTION_STRING"):
        return blob.BlobServiceClient.from_connection_string(environ["AZURE_STORAGE_CONNECTION_STRING"], **options)
    account = environ.get("AZURE_STORAGE_ACCOUNT")
    if not account:
        raise LauncherError(
            "An az:// checkpoint URI needs a storage account, and none is configured.",
            "Set AZURE_STORAGE_ACCOUNT (and log in with `az login` or a managed identity) "
            "or AZURE_STORAGE_CONNECTION_STRING.",
        )
    from launcher.azure_identity import job_credential  # noqa: PLC0415 - inside Azure ML: the job's identity

    credential = job_credential(environ)
    return blob.BlobServiceClient(f"https://{account}.blob.core.windows.net", credential=credential, **options)


def _progress_hook(progress: Progress | None):  # type: ignore[no-untyped-def]
    """Adapt our byte-delta callback to the SDK's (current, total) hook."""
    if progress is None:
        return None
    seen = [0]

    def hook(current: int, _total: int | None) -> None:
        progress(current - seen[0])
        seen[0] = current

    return hook


class AzureStore(CloudStore):
    scheme = "az"
    hashes_put = True
    default_client = staticmethod(default_client)

    def _blob(self, key: str) -> Any:
        return self.client.get_blob_client(self.bucket, self.name(key))

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        root = f"{self.prefix}/" if self.prefix else ""

        def run() -> list[ObjectInfo]:
            blobs = self.client.get_container_client(self.bucket).list_blobs(name_starts_with=root + prefix)
            return [ObjectInfo(b.name[len(root) :], b.size, b.etag) for b in blobs]

        return self.retry.call(run, f"list {self.url(prefix)}")

    def count(self, limit: int, prefix: str = "") -> int:
        root = f"{self.prefix}/" if self.prefix else ""

        def run() -> int:
            blobs = self.client.get_container_client(self.bucket).list_blobs(
                name_starts_with=root + prefix, results_per_page=min(limit, 5000)
            )
            return sum(1 for _ in itertools.islice(blobs, limit))  # the pager asks for no page past `limit`

        return self.retry.call(run, f"list {self.url(prefix)}")

    def put(self, key: str, src: Path, progress: Progress | None = None, sha256: str | None = None) -> ObjectInfo:
        """Blocks read once, in order (hashed on the way), sent `concurrency` at a time: sha256 in `checksum`."""
        size = Path(src).stat().st_size

        def run() -> str | None:
            with open(src, "rb") as f:
                reader = HashingFile(
                    f, seekable=False, hashing=sha256 is None
                )  # not seekable: read in order, sent in parallel
                self._blob(key).upload_blob(
                    reader, length=size, overwrite=True, max_concurrency=self.concurrency,
                    progress_hook=_progress_hook(progress),
                )  # fmt: skip
                return sha256 or reader.hexdigest(size)

        sha = self.retry.call(run, f"upload {self.url(key)}")
        return ObjectInfo(key, size, sha)

    def get(self, key: str, dest: Path, progress: Progress | None = None) -> str | None:
        """Ranges in parallel, hashed as they land (out-of-order ranges wait for the gap): returns the sha256."""

        def run() -> str | None:
            stream = self._blob(key).download_blob(
                max_concurrency=self.concurrency, progress_hook=_progress_hook(progress)
            )
            with open(dest, "wb") as f:
                writer = HashingFile(f)
                stream.readinto(writer)
                return writer.hexdigest(stream.size)

        try:
            return self.retry.call(run, f"download {self.url(key)}")
        except require("azure.core.exceptions", "azure").ResourceNotFoundError:
            raise MissingObjectError(self.url(key)) from None

    def put_bytes(self, key: str, data: bytes) -> None:
        self.retry.call(lambda: self._blob(key).upload_blob(data, overwrite=True), f"write {self.url(key)}")

    def put_bytes_new(self, key: str, data: bytes) -> bool:
        """overwrite=False sends If-None-Match: *; the service answers 409 BlobAlreadyExists."""
        exists = require("azure.core.exceptions", "azure").ResourceExistsError
        try:
            self.retry.call(lambda: self._blob(key).upload_blob(data, overwrite=False), f"create {self.url(key)}")
        except exists:
            return False
        return True

    def get_bytes(self, key: str) -> bytes | None:
        not_found = require("azure.core.exceptions", "azure").ResourceNotFoundError

        def run() -> bytes | None:
            try:
                return self._blob(key).download_blob().readall()
            except not_found:
                return None

        return self.retry.call(run, f"read {self.url(key)}")

    def delete(self, keys: Iterable[str]) -> None:
        not_found = require("azure.core.exceptions", "azure").ResourceNotFoundError
        self._delete_each(keys, lambda key: self._blob(key).delete_blob(), not_found)
