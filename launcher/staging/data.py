"""A local `train.data` folder, uploaded once at submit to the job's store, keyed by its content.

    target = data_target(spec)          # in plan(): "<checkpoint.uri>/_data/{content-sha256}" (pure)
    plan = stage_local_data(plan)       # in submit(): hash, upload if new, fill in the placeholder

A cloud job cannot read the user's disk, so the folder goes to the store the
job already writes checkpoints to, under `_data/<sha256 of the content>/`.
The content hash covers every file's relative path, size and sha256, so
unchanged data maps to the same prefix and is never sent twice; a changed
file gives a new prefix, and a running job never sees its data change. The
upload is complete when `.launcher-upload.json` (the file list) exists: it is
written last, and an interrupted upload resumes by skipping files already
there with the right size. Per-file hashes are cached by (size, mtime) so a
second submit of a large dataset does not re-read it.

`plan()` must stay pure, so it cannot hash the folder: it writes the target
with the placeholder CONTENT, which `stage_local_data` replaces everywhere in
the request once the hash is known.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from launcher.contract import BUILTIN_DATASETS, CONTENT
from launcher.errors import LauncherError, SpecError
from launcher.state.jobs import state_dir
from launcher.storage import is_remote, open_store
from launcher.storage.base import Store, sha256_file

if TYPE_CHECKING:
    from launcher.plan import Plan
    from launcher.spec import JobSpec

__all__ = [
    "CONTENT", "DATA_FOLDER", "MARKER", "TransferProgress", "check_local_data", "content_hash", "data_target",
    "fill_placeholder", "mentions", "stage_local_data", "upload_folder",
]  # fmt: skip

DATA_FOLDER = "_data"
MARKER = ".launcher-upload.json"
WORKERS = 8

Log = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def is_local_folder(data: str) -> bool:
    return data not in BUILTIN_DATASETS and "://" not in data and not data.startswith("/gcs/")


def check_local_data(spec: "JobSpec") -> None:
    """A local `train.data` exists and looks like what reads it, before a job mounts it or anything is uploaded:
    the built-in trainer's ImageFolder (train/ and val/), the ultralytics engine's data.yaml (or a classify
    ImageFolder), any folder for a program of the user's own. A dry run checks it too."""
    data = spec.data()
    if data is None or not is_local_folder(data):
        return
    root = Path(data)
    if not root.exists():
        raise SpecError(
            f"train.data {data} does not exist.",
            "Fix the path (a relative one is read from the spec file's folder), or give an s3://, gs:// or az:// URI.",
        )
    yolo = spec.train.engine == "ultralytics"
    if yolo and root.is_file() and root.suffix in (".yaml", ".yml"):
        return
    if not root.is_dir():
        raise SpecError(f"train.data: {data} is not a folder.", "Point train.data at the dataset's folder.")
    if spec.command or ((root / "train").is_dir() and (root / "val").is_dir()):
        return
    if yolo and any(root.glob("*.yaml")):
        return
    shape = "a YOLO dataset (a data.yaml) or an ImageFolder" if yolo else "an ImageFolder dataset"
    raise SpecError(
        f"train.data: {data} is not {shape} (train/ and val/ folders); nothing was uploaded.",
        "Point train.data at the dataset's root folder, laid out as <root>/train/<class>/*.jpg and "
        "<root>/val/<class>/*.jpg.",
    )


def data_target(spec: "JobSpec") -> str | None:
    """Where a local data folder goes (with the CONTENT placeholder), or None when the data is not local.

    Pure: reads only the spec. Raises when the data is local but the job has no remote store.
    """
    data = spec.data()
    if data is None or not is_local_folder(data):
        return None
    uri = spec.checkpoint.uri or ""
    if not is_remote(uri):
        raise LauncherError(
            f"train.data {data} is a folder on this machine, and the job has no remote store to upload it to.",
            "Set checkpoint.uri to an s3://, gs:// or az:// URI (the data goes to <uri>/_data/), or upload the data "
            "yourself and set train.data to its URI.",
        )
    return f"{uri.rstrip('/')}/{DATA_FOLDER}/{CONTENT}"


def files_of(folder: Path) -> dict[str, Path]:
    """Every file under `folder` by relative key; dot-files and dot-folders are skipped (.DS_Store, .git)."""
    found = {}
    for dirpath, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in names:
            if not name.startswith("."):
                path = Path(dirpath) / name
                found[path.relative_to(folder).as_posix()] = path
    return dict(sorted(found.items()))


class HashCache:
    """sha256 per file, remembered by (path, size, mtime) in a JSON file, so unchanged files are not re-read."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        try:
            self.known: dict[str, list[Any]] = json.loads(Path(path).read_text()) if path else {}
        except (OSError, ValueError):
            self.known = {}

    def sha256(self, file: Path) -> str:
        st = file.stat()
        entry = self.known.get(str(file.resolve()))
        if entry and entry[:2] == [st.st_size, st.st_mtime_ns]:
            return str(entry[2])
        sha = sha256_file(file)
        self.known[str(file.resolve())] = [st.st_size, st.st_mtime_ns, sha]
        return sha

    def save(self) -> None:
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text(json.dumps(self.known))
            os.replace(tmp, self.path)
        except OSError:
            pass  # best effort: the next submit hashes again


def content_hash(folder: Path, cache: HashCache | None = None) -> tuple[str, dict[str, list[Any]]]:
    """(sha256 of the folder's content, {key: [size, sha256]})."""
    cache = cache or HashCache(None)
    files = files_of(folder)
    if not files:
        raise LauncherError(
            f"train.data {folder} holds no files.", "Point train.data at an ImageFolder (train/, val/)."
        )
    with ThreadPoolExecutor(WORKERS) as pool:
        shas = dict(zip(files, pool.map(cache.sha256, files.values())))
    listing = {key: [files[key].stat().st_size, shas[key]] for key in files}
    digest = hashlib.sha256()
    for key, (size, sha) in listing.items():
        digest.update(f"{key}\0{size}\0{sha}\n".encode())
    return digest.hexdigest(), listing


def upload_folder(folder: Path, store: Store, listing: dict[str, list[Any]], log: Log = _stderr) -> int:
    """Upload `folder` into `store` unless it is already complete there; returns the bytes sent."""
    if store.get_bytes(MARKER) is not None:
        log(f"train.data {folder}: already uploaded to {store.uri} (same content), nothing to send")
        return 0
    there = {o.key: o.size for o in store.list("")}
    todo = [k for k, (size, _sha) in listing.items() if there.get(k) != size]
    total = sum(listing[k][0] for k in todo)
    log(f"train.data {folder}: uploading {len(todo)} files ({total / 1e6:.1f} MB) to {store.uri}")
    progress = TransferProgress(total, log)
    with ThreadPoolExecutor(WORKERS) as pool:
        for _ in pool.map(lambda k: store.put(k, folder / k, progress.advance), todo):
            pass
    store.put_bytes(MARKER, json.dumps({"files": listing}, sort_keys=True).encode())  # last: the upload is complete
    log(f"train.data {folder}: upload complete")
    return total


class TransferProgress:
    """A line every 10% of the bytes: enough to see an upload move, quiet enough for CI logs."""

    def __init__(self, total: int, log: Log) -> None:
        self.total, self.log, self.sent, self.shown = max(total, 1), log, 0, 0
        self._lock = threading.Lock()  # the SDKs report from their transfer threads

    def advance(self, n: int) -> None:
        with self._lock:
            self.sent += n
            tenth = min(10, self.sent * 10 // self.total)
            if tenth <= self.shown:
                return
            self.shown = tenth
        self.log(f"  {tenth * 10}% ({self.sent / 1e6:.1f} MB)")


def stage_local_data(plan: "Plan", log: Log = _stderr, state: Path | None = None, **clients: Any) -> "Plan":
    """Upload the plan's local data folder (if its request holds the CONTENT placeholder) and fill it in."""
    target = data_target(plan.spec)
    marker = f"{DATA_FOLDER}/{CONTENT}"
    if target is None or not mentions(plan.payload, marker):
        return plan
    check_local_data(plan.spec)

    if state is None:
        state = state_dir()
    cache = HashCache(state / "data-hashes.json")
    folder = Path(plan.spec.train.data)
    digest, listing = content_hash(folder, cache)
    cache.save()
    final = target.replace(CONTENT, digest)
    upload_folder(folder, open_store(final, **clients), listing, log)
    return replace(plan, payload=fill_placeholder(plan.request(), marker, f"{DATA_FOLDER}/{digest}"))


def mentions(value: Any, text: str) -> bool:
    """Whether any string in a request (nested dicts and lists) contains `text`."""
    if isinstance(value, str):
        return text in value
    if isinstance(value, dict) or hasattr(value, "items"):
        return any(mentions(v, text) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(mentions(v, text) for v in value)
    return False


def fill_placeholder(value: Any, old: str, new: str) -> Any:
    """The request with `old` replaced by `new` in every string (the content hash, once submit knows it)."""
    if isinstance(value, str):
        return value.replace(old, new)
    if isinstance(value, dict):
        return {k: fill_placeholder(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [fill_placeholder(v, old, new) for v in value]
    return value
