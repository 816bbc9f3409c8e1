"""Checkpoint storage: one layout and one manifest on S3, GCS, Azure Blob and local disk.

    store = open_store("s3://bucket/ckpts/my-run")           # or gs://, az://, /path
    store = open_store("gs://b/ckpts", gcs=storage.Client())  # inject a client (tests, custom auth)

Modules: `base` (the Store interface), `local`/`s3`/`gcs`/`azure` (one per
store), `manifest` (layout, versions, retention), `sync` (push, pull, the
background Syncer the entrypoint runs), `resume` (`--resume-from`), `retry`.
Cloud SDKs are imported only when a store of that kind is used.
"""

from __future__ import annotations

from typing import Any

from launcher.errors import LauncherError
from launcher.storage.base import ObjectInfo, Store, UnsafeKeyError
from launcher.storage.retry import RetryPolicy

__all__ = ["open_store", "join_uri", "is_remote", "REMOTE_SCHEMES", "Store", "ObjectInfo", "UnsafeKeyError"]

REMOTE_SCHEMES = ("s3://", "gs://", "az://")


def is_remote(uri: str | None) -> bool:
    """An s3://, gs:// or az:// URI (not a local path)."""
    return bool(uri) and str(uri).startswith(REMOTE_SCHEMES)


def join_uri(uri: str, *parts: str) -> str:
    return "/".join([uri.rstrip("/"), *(p.strip("/") for p in parts if p)])


def open_store(
    uri: str, *, s3: Any = None, gcs: Any = None, azure: Any = None, retry: RetryPolicy | None = None
) -> Store:
    """The store for `uri`; `s3`/`gcs`/`azure` inject an SDK client, else each SDK's standard chain is used."""
    if not uri:
        raise LauncherError("The checkpoint URI is empty.", "Set checkpoint.uri to s3://, gs://, az:// or a folder.")
    if uri.startswith("s3://"):
        from launcher.storage.s3 import S3Store  # noqa: PLC0415

        return S3Store(_with_bucket(uri), client=s3, retry=retry)
    if uri.startswith("gs://"):
        from launcher.storage.gcs import GCSStore  # noqa: PLC0415

        return GCSStore(_with_bucket(uri), client=gcs, retry=retry)
    if uri.startswith("az://"):
        from launcher.storage.azure import AzureStore  # noqa: PLC0415

        return AzureStore(_with_bucket(uri), client=azure, retry=retry)
    if "://" in uri and not uri.startswith("file://"):
        raise LauncherError(f"Unsupported checkpoint URI {uri!r}.", "Use s3://, gs://, az://container/... or a path.")
    from launcher.storage.local import LocalStore  # noqa: PLC0415

    return LocalStore(uri)


def _with_bucket(uri: str) -> str:
    if not uri.split("://", 1)[1].split("/", 1)[0]:
        raise LauncherError(f"The URI {uri!r} names no bucket or container.", "Write it as s3://BUCKET/prefix.")
    return uri
