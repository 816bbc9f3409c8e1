"""The size of a remote dataset for `launch estimate`: listed once with the user's credentials, then cached.

    found = remote_dataset("s3://bucket/imagenet", cache_file)   # Dataset, or a reason string

Listing a large bucket takes a while and the count rarely changes, so the
result is kept per URI in `cache_file` (JSON) for `MAX_AGE_S`. When the store
cannot be listed (no credentials, no network) the reason is returned, and the
CLI asks for `--images` as before.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Callable

from launcher.estimate.model import Dataset
from launcher.storage.base import Store

__all__ = ["remote_dataset", "MAX_AGE_S"]

MAX_AGE_S = 24 * 3600.0


def remote_dataset(
    uri: str, cache_file: Path, store: Store | None = None, now: Callable[[], float] = time.time
) -> Dataset | str:
    """The image counts of the ImageFolder at `uri` (train/, val/), from the cache or by listing it."""
    key = uri.rstrip("/")
    cached = _read(cache_file).get(key)
    if isinstance(cached, dict) and now() - float(cached.get("time", 0)) < MAX_AGE_S:
        return Dataset(int(cached["train"]), int(cached["val"]), int(cached["bytes"]), local=False,
                       files=int(cached.get("files", 0)), packed=bool(cached.get("packed")),
                       first_bytes=int(cached.get("first_bytes", 0)))  # fmt: skip
    try:
        count = _count(uri, store)
    except Exception as exc:  # noqa: BLE001 - any SDK or credential error: fall back to --images
        return f"could not list {uri} ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
    if not count.train:
        return f"{uri} holds no images under train/"
    _write(
        cache_file,
        key,
        {
            "train": count.train,
            "val": count.val,
            "bytes": count.bytes,
            "time": now(),
            "files": count.files,
            "packed": count.packed,
            "first_bytes": count.first_bytes,
        },
    )
    return Dataset(count.train, count.val, count.bytes, local=False, files=count.files, packed=count.packed,
                   first_bytes=count.first_bytes)  # fmt: skip


def _count(uri: str, store: Store | None):  # type: ignore[no-untyped-def]
    from launcher.storage import open_store  # noqa: PLC0415 - imports a cloud SDK
    from launcher.storage.dataset import count_images  # noqa: PLC0415

    return count_images(store or open_store(uri))


def _read(path: Path) -> dict[str, Any]:
    try:
        body = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return body if isinstance(body, dict) else {}


def _write(path: Path, key: str, entry: dict[str, Any]) -> None:
    """Best effort: a read-only state folder only costs a listing next time."""
    body = {**_read(path), key: entry}
    tmp = Path(path).with_name(Path(path).name + ".tmp")
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(body, indent=1))
        os.replace(tmp, path)
    except OSError:
        pass
