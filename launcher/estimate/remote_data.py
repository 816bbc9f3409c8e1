"""The size of a remote dataset for `launch estimate`: listed once with the user's credentials, then cached.

    found = remote_dataset("s3://bucket/imagenet", cache_file)   # Dataset, or a reason string

Listing a large bucket takes a while and the count rarely changes, so the
result is kept per URI in `cache_file` (JSON) for `MAX_AGE_S`. When the store
cannot be listed (no credentials, no network) the reason is returned, and the
CLI asks for `--images` as before.

    line = pack_hint(uri, cache_file)   # "hint: ... launch data pack URI URI-packed", or None

`launch` (submit, and the dry run from what is cached) says in one line when a
remote folder holds more than `PACK_HINT_FILES` files: each is fetched on its
own before training starts, and packed shards would start in seconds. The
count stops listing at `PACK_HINT_FILES + 1`, is kept in the same cache, and
a store that cannot be listed gives no hint rather than an error.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Callable

from launcher.estimate.model import Dataset
from launcher.storage.base import Store

__all__ = ["remote_dataset", "pack_hint", "pack_hint_line", "MAX_AGE_S", "PACK_HINT_FILES"]

MAX_AGE_S = 24 * 3600.0
PACK_HINT_FILES = 10_000  # above this many objects, per-object fetching dominates a job's start (issue 32)


def remote_dataset(
    uri: str, cache_file: Path, store: Store | None = None, now: Callable[[], float] = time.time
) -> Dataset | str:
    """The image counts of the ImageFolder at `uri` (train/, val/), from the cache or by listing it."""
    key = uri.rstrip("/")
    cached = _read(cache_file).get(key)
    if isinstance(cached, dict) and "train" in cached and now() - float(cached.get("time", 0)) < MAX_AGE_S:
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


def pack_hint_line(uri: str, files: int, more: bool = False) -> str:
    """The one line saying that a plain remote folder of `files` objects (`more`: at least) would start faster packed."""
    held = f"more than {files - 1:,}" if more else f"{files:,}"
    return (
        f"hint: {uri} holds {held} files, each fetched on its own before training starts; "
        f"packed into shards it starts in seconds: launch data pack {uri} {uri.rstrip('/')}-packed"
    )


def pack_hint(
    uri: str, cache_file: Path, store: Store | None = None, listing: bool = True, now: Callable[[], float] = time.time
) -> str | None:
    """The pack hint for the remote folder `uri`, or None (few files, a packed dataset, or not known).

    A fresh count in `cache_file` (from `launch estimate` or an earlier call) is used as it is; otherwise, with
    `listing`, the store is listed up to `PACK_HINT_FILES + 1` objects and the count kept. Never raises: a store
    that cannot be listed, or any error on the way, only costs the hint."""
    try:
        key = uri.rstrip("/")
        cached = _read(cache_file).get(key)
        if isinstance(cached, dict) and now() - float(cached.get("time", 0)) < MAX_AGE_S:
            files, packed = int(cached.get("files", 0)), bool(cached.get("packed"))
            more = "train" not in cached  # a capped count: "more than"
        elif listing:
            files, packed, more = _count_files(uri, store)
            _write(cache_file, key, {"files": files, "packed": packed, "time": now()})
        else:
            return None
    except Exception:  # noqa: BLE001 - a hint must never fail a submit (no credentials, no network, a bad cache)
        return None
    return pack_hint_line(key, files, more) if files > PACK_HINT_FILES and not packed else None


def _count_files(uri: str, store: Store | None) -> tuple[int, bool, bool]:
    """(objects, at most PACK_HINT_FILES + 1; packed; counting stopped at the cap)."""
    if store is None:
        from launcher.storage import open_store  # noqa: PLC0415 - imports a cloud SDK

        store = open_store(uri)
    files = store.count(PACK_HINT_FILES + 1)
    packed = files > PACK_HINT_FILES and store.get_bytes("index.json") is not None  # a packed dataset of many shards
    return files, packed, files > PACK_HINT_FILES


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
