"""Pretrained weights fetched on the submitting machine and stored by content in the run's store.

    plan = stage_weights(plan)     # submit: fetch once, <checkpoint.uri>/_weights/<sha256>.pt, fill in the placeholder

The ultralytics engine runs offline in the job (nothing is downloaded there),
so `train.model: yolo11n.pt` or a weights URL would fail on every cloud; and
the built-in trainer's `train.pretrained` may name weights the job has no
credentials for. So the machine that submits, which has the network and the
user's credentials, fetches them once:

- an Ultralytics asset name (`yolo11n.pt`): Ultralytics' own list and release
  (ultralytics.utils.downloads, imported here only then; without Ultralytics
  on this machine, give the URL), or `$LAUNCHER_WEIGHTS_MIRROR/<name>`;
- an https URL (plain http only from this machine: a local mirror);
- an s3://, gs:// or az:// URI, read with this machine's credentials. Copied
  at submit rather than read by the job: the job may have no credentials for
  that bucket (another account, another cloud, local Docker), and the copy
  pins the content, so a resumed or retried job trains from the same bytes;
- a file on this machine (the built-in trainer's `train.pretrained: ./best.pt`),
  for a job that runs elsewhere (a cloud, Slurm). The local backend reads it
  where it is instead (mounted read-only into the container).

They are stored under `<checkpoint.uri>/_weights/<sha256><suffix>`, the store
the job already reads its code and writes its checkpoints to; the entrypoint
reads them there and checks the sha256 (launcher.runtime.weights). What was
fetched is remembered in the state folder (`weights.json`: source, sha256,
size and the server's validator), so a second submit of the same weights
downloads nothing (an asset name is a pinned release; a URL is asked only
for its headers, a store URI only for its listing, a file only for its size
and modification time) and uploads nothing (the
object of that name and size is there). `plan()` stays pure: the request
names the location with the CONTENT placeholder until this fills it in.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import socket
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from launcher.contract import CONTENT, WEIGHTS_FOLDER, host_weights, shown_url, staged_weights, weights_target
from launcher.errors import LauncherError, SpecError
from launcher.staging.data import TransferProgress, check_local_data, fill_placeholder, mentions
from launcher.state.jobs import state_dir
from launcher.storage import is_remote, open_store
from launcher.storage.base import MissingObjectError, sha256_file
from launcher.storage.sync import size_text

if TYPE_CHECKING:
    from launcher.plan import Plan
    from launcher.spec import JobSpec

__all__ = [
    "stage_weights",
    "store_weights",
    "weights_notes",
    "check_local_inputs",
    "check_local_weights",
    "asset_url",
    "MAX_GB_VARIABLE",
    "MIRROR_VARIABLE",
    "DEFAULT_MAX_GB",
]

MAX_GB_VARIABLE = "LAUNCHER_WEIGHTS_MAX_GB"  # the largest download accepted, in GiB
MIRROR_VARIABLE = "LAUNCHER_WEIGHTS_MIRROR"  # a base URL that serves Ultralytics assets by name
DEFAULT_MAX_GB = 4.0  # yolo11x.pt is 110 MB and vit_h_14's weights 2.5 GB: a file above this is likely not weights
TIMEOUT_S = 30.0  # per connection attempt and per read: a server that says nothing for that long is not answering
PROGRESS_ABOVE = 8 << 20
_CHUNK = 1 << 20

Log = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


_MARKER = f"{WEIGHTS_FOLDER}/{CONTENT}"


def _stored_by_submit(plan: "Plan") -> tuple[str, str] | None:
    """The plan's staged weights (`staged_weights`) when submit stores them: its request names the placeholder
    (the local backend reads a file of this machine where it is instead)."""
    staged = staged_weights(plan.spec)
    return staged if staged is not None and mentions(plan.payload, _MARKER) else None


def stage_weights(plan: "Plan", log: Log = _stderr, environ: Mapping[str, str] | None = None, **clients: Any) -> "Plan":
    """Fetch and store the plan's pretrained weights (if its request names them with the placeholder); fill it in."""
    staged = _stored_by_submit(plan)
    if staged is None:
        return plan
    target = weights_target(plan.spec)
    assert target is not None  # staged weights always have a target, or plan() refused the spec
    sha = store_weights(f"train.{staged[0]}", staged[1], target, log, environ, **clients)
    return replace(plan, payload=fill_placeholder(plan.request(), _MARKER, f"{WEIGHTS_FOLDER}/{sha}"))


def weights_notes(plan: "Plan") -> tuple[str, ...]:
    """The plan's note on its weights, when submit stores them (its request names them with the placeholder)."""
    staged = _stored_by_submit(plan)
    if staged is None:
        return ()
    how = "copied at submit from this machine" if os.path.isabs(staged[1]) else "fetched at submit, on this machine,"
    return (f"train.{staged[0]} {shown_url(staged[1])} is {how} and stored once per content at "
            f"{weights_target(plan.spec)} (the job reads it there, offline)",)  # fmt: skip


def check_local_inputs(spec: "JobSpec") -> None:
    """What the spec reads from this machine (train.data, train.pretrained) is there and of the right kind,
    before anything is claimed, mounted or uploaded; the dry run checks it too."""
    check_local_data(spec)
    check_local_weights(spec)


def check_local_weights(spec: "JobSpec") -> None:
    """train.pretrained's file on this machine exists and is PyTorch weights, before a job mounts it or anything
    is uploaded (a dry run checks it too): a typo is refused here, not after a paid start-up."""
    file = host_weights(spec)
    if file is None:
        return
    path = Path(file)
    if not path.is_file():
        why = "does not exist" if not path.exists() else "is not a file"
        raise SpecError(f"train.pretrained {file} {why}.",
                        "Fix the path (a relative one is read from the spec file's folder), or give an https URL "
                        "or an s3://, gs:// or az:// URI.")  # fmt: skip
    try:
        _refuse_size("train.pretrained", file, path.stat().st_size, _max_bytes(os.environ))
        _check_weights("train.pretrained", file, path)
    except OSError as exc:
        raise SpecError(f"train.pretrained {file} cannot be read ({exc.strerror}).", "Fix its permissions.") from None
    except LauncherError as exc:
        raise SpecError(exc.message, exc.fix) from None  # a key of the spec file: the CLI names the file


# ------------------------------------------------------------------ where the weights come from


def asset_url(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The download URL of an Ultralytics asset name (`yolo11n.pt`): `$LAUNCHER_WEIGHTS_MIRROR/<name>`, else
    Ultralytics' own release of it when Ultralytics is installed here and lists the name; else None."""
    environ = os.environ if environ is None else environ
    if mirror := environ.get(MIRROR_VARIABLE, "").strip():
        return f"{mirror.rstrip('/')}/{name}"
    # Ultralytics (AGPL, optional; ~2 s to import) is imported only by its adapter, and only here at submit
    from launcher.runtime.train.ultralytics_engine import released_weights_url  # noqa: PLC0415

    try:
        return released_weights_url(name)
    except ImportError:
        return None


def _source_url(what: str, source: str, environ: Mapping[str, str] | None) -> str:
    """The URL, store URI or file to fetch `source` from (a URL, a store URI, a file, or an asset name)."""
    if "://" in source or os.path.isabs(source):
        return source
    url = asset_url(source, environ)
    if url is not None:
        return url
    if importlib.util.find_spec("ultralytics") is None:
        raise LauncherError(
            f"{what} {source} names Ultralytics weights, which are fetched at submit, and Ultralytics is not "
            "installed here to say where they are.",
            f"Install it (pip install 'torch-launcher[ultralytics]'), set {what} to the weights' https URL, "
            f"or set ${MIRROR_VARIABLE} to a server that has them.",
        )
    raise LauncherError(
        f"{what} {source} is not one of Ultralytics' released weights, so it cannot be fetched.",
        f"Name a released one (like yolo11n.pt), give its https URL, or start from a model YAML (like "
        f"{source.rsplit('.', 1)[0]}.yaml).",
    )


# ------------------------------------------------------------------ fetch once, store by content


@dataclass(frozen=True)
class _Fetched:
    sha: str
    size: int
    validator: str | None  # what says the source is unchanged: an ETag or Last-Modified, a store checksum, "" (a
    # pinned release); None: nothing does, so it is fetched every time


def store_weights(what: str, source: str, target: str, log: Log = _stderr,
                  environ: Mapping[str, str] | None = None, **clients: Any) -> str:  # fmt: skip
    """Fetch `source` once and store it at `target` (with the CONTENT placeholder) unless it is there; its sha256."""
    environ = os.environ if environ is None else environ
    url = _source_url(what, source, environ)
    known = _Known(state_dir(environ) / "weights.json")
    validator = _validator(what, url, clients)
    hit = known.get(source)
    if hit is not None and validator is not None and hit.validator == validator:
        store, name, there = _stored(target, hit.sha, hit.size, clients)
        if there:
            log(f"{what} {shown_url(source)}: already at {store.url(name)}, nothing to fetch or send")
            return hit.sha
    with tempfile.TemporaryDirectory(prefix="launcher-weights-") as tmp:
        if os.path.isabs(url):  # a file of this machine: read where it is
            file = Path(url)
            _refuse_size(what, url, file.stat().st_size, _max_bytes(environ))
            sha = sha256_file(file)
        else:
            file = Path(tmp) / "weights"
            log(f"{what} {shown_url(source)}: fetching {shown_url(url)}")
            sha = _download(what, url, file, _max_bytes(environ), log, clients)
        size = file.stat().st_size
        _check_weights(what, source, file)
        store, name, there = _stored(target, sha, size, clients)
        if there:
            log(f"{what}: already at {store.url(name)} (same content), nothing to send")
        else:
            log(f"{what}: {size_text(size)} -> {store.url(name)}")
            store.put(name, file, TransferProgress(size, log).advance if size > PROGRESS_ABOVE else None, sha256=sha)
    known.put(source, _Fetched(sha, size, validator))
    return sha


def _stored(target: str, sha: str, size: int, clients: dict[str, Any]) -> tuple[Any, str, bool]:
    folder, _, name = target.replace(CONTENT, sha).rpartition("/")
    store = open_store(folder, **clients)
    return store, name, {o.key: o.size for o in store.list(name)}.get(name) == size


def _max_bytes(environ: Mapping[str, str]) -> int:
    raw = environ.get(MAX_GB_VARIABLE, "").strip()
    try:
        gib = float(raw) if raw else DEFAULT_MAX_GB
    except ValueError:
        gib = -1.0
    if not 0 < gib < 1e6:
        raise LauncherError(f"${MAX_GB_VARIABLE} is {raw[:20]!r}, not a size in GiB.", "Set it to a number, like 8.")
    return int(gib * (1 << 30))


def _validator(what: str, url: str, clients: dict[str, Any]) -> str | None:
    """What tells, without downloading, that the source has not changed since it was fetched."""
    if os.path.isabs(url):
        try:
            info = os.stat(url)
        except OSError as exc:
            raise LauncherError(f"{what} {url} cannot be read ({exc.strerror}).", "Fix the path.") from None
        return f"{info.st_size}:{info.st_mtime_ns}"  # what make and rsync trust
    if is_remote(url):
        _, _, info = _stat(what, url, clients)
        return f"{info.size}:{info.checksum or ''}"
    if "/releases/download/" in url:
        return ""  # a pinned release never changes
    try:
        with _open(what, url, "HEAD") as response:
            headers = response.headers
            found = [headers.get(h) or "" for h in ("ETag", "Last-Modified", "Content-Length")]
    except LauncherError:
        return None  # no answer to HEAD: the download says why, or fetches it
    return "|".join(found) if any(found[:2]) else None  # a size alone does not say the content is the same


def _stat(what: str, uri: str, clients: dict[str, Any]) -> tuple[Any, str, Any]:
    """(the store of `uri`'s folder, the object's name, its listing entry); refused when it is not there."""
    folder, _, name = uri.rpartition("/")
    store = _store_call(what, uri, lambda: open_store(folder, **clients))
    info = {o.key: o for o in _store_call(what, uri, lambda: store.list(name))}.get(name)
    if info is None:
        raise LauncherError(f"{what} {uri} is not in that store.", "Check the URI (and this machine's credentials).")
    return store, name, info


def _store_call(what: str, url: str, call: Callable[[], Any]) -> Any:
    try:
        return call()
    except LauncherError:
        raise
    except Exception as exc:  # noqa: BLE001 - any SDK: credentials, network, permissions
        raise LauncherError(f"{what}: could not read {url} ({type(exc).__name__}: {str(exc)[:200]}).",
                            "Check the URI and this machine's credentials for that store.") from None  # fmt: skip


def _open(what: str, url: str, method: str = "GET") -> Any:
    request = urllib.request.Request(url, method=method, headers={"User-Agent": "torch-launcher"})
    try:
        return urllib.request.urlopen(request, timeout=TIMEOUT_S)  # noqa: S310 - the scheme is checked at load
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 404:
            raise LauncherError(f"{what}: {shown_url(url)} was not found (HTTP 404).",
                                "Check the URL (or the asset name).") from None  # fmt: skip
        raise LauncherError(f"{what}: {shown_url(url)} answered HTTP {exc.code} ({exc.reason}).",
                            "Check the URL and that this machine may read it.") from None  # fmt: skip
    except (urllib.error.URLError, OSError) as exc:  # refused, unknown host, TLS, timeout
        reason = getattr(exc, "reason", exc)
        why = "timed out" if isinstance(reason, (socket.timeout, TimeoutError)) else str(reason)[:160]
        raise LauncherError(f"{what}: could not reach {shown_url(url)} ({why}).",
                            "Check the URL and this machine's network; the job itself never downloads.") from None  # fmt: skip


def _download(what: str, url: str, dest: Path, limit: int, log: Log, clients: dict[str, Any]) -> str:
    """Write what `url` holds to `dest`; its sha256. Refuses more than `limit` bytes."""
    if is_remote(url):
        return _from_store(what, url, dest, limit, log, clients)
    digest = hashlib.sha256()
    with _open(what, url) as response:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        _refuse_size(what, url, total, limit)
        if (response.headers.get("Content-Type") or "").startswith("text/html"):
            raise LauncherError(f"{what}: {shown_url(url)} is a web page, not a weights file.",
                                "Give the URL of the file itself (a direct download link).")  # fmt: skip
        progress = _Progress(total, log)
        with open(dest, "wb") as out:
            try:
                while chunk := response.read(_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
                    progress.advance(len(chunk))
                    _refuse_size(what, url, progress.done, limit)
            except (OSError, ValueError) as exc:  # a reset or a timeout mid-way
                raise LauncherError(f"{what}: the download of {shown_url(url)} broke off ({str(exc)[:120]}).",
                                    "Submit again.") from None  # fmt: skip
    if total is not None and progress.done != total:
        raise LauncherError(f"{what}: the download of {shown_url(url)} ended after {progress.done} of {total} bytes.",
                            "Submit again.")  # fmt: skip
    return digest.hexdigest()


def _from_store(what: str, uri: str, dest: Path, limit: int, log: Log, clients: dict[str, Any]) -> str:
    store, name, info = _stat(what, uri, clients)
    _refuse_size(what, uri, info.size, limit)
    progress = _Progress(info.size, log)
    try:
        got = _store_call(what, uri, lambda: store.get(name, dest, progress.advance))
    except MissingObjectError:
        raise LauncherError(f"{what} {uri} is not in that store.", "Check the URI.") from None
    return got or sha256_file(dest)


def _refuse_size(what: str, url: str, size: int | None, limit: int) -> None:
    if size is not None and size > limit:
        raise LauncherError(
            f"{what}: {shown_url(url)} is {size_text(size)}, more than the {size_text(limit)} accepted for weights.",
            f"Check that it is the weights file; to take a larger one, set ${MAX_GB_VARIABLE} (GiB).",
        )


class _Progress:
    """TransferProgress's lines for a long download; a line every 100 MB when the server gives no size."""

    def __init__(self, total: int | None, log: Log) -> None:
        self.done, self.total, self.log = 0, total, log
        self.known = TransferProgress(total, log) if total is not None and total > PROGRESS_ABOVE else None

    def advance(self, n: int) -> None:
        before, self.done = self.done, self.done + n
        if self.known is not None:
            self.known.advance(n)
        elif self.total is None and before // 100_000_000 != self.done // 100_000_000:
            self.log(f"  {self.done / 1e6:.0f} MB")


def _check_weights(what: str, source: str, file: Path) -> None:
    """What torch.load reads: a zip archive (torch.save since 1.6, TorchScript) or a pickle (the legacy format)."""
    with open(file, "rb") as f:
        head = f.read(64)
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":
        return
    looks = "a web page" if head.lstrip()[:1] == b"<" else "empty" if not head else f"it starts with {head[:16]!r}"
    raise LauncherError(
        f"{what} {shown_url(source)} is not a PyTorch weights file ({looks}).",
        "Give weights saved with torch.save (a .pt file), or their direct download URL.",
    )


class _Known:
    """source -> what was fetched from it (sha256, size, validator), in a small JSON file (best effort)."""

    LIMIT = 200

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.known: dict[str, list[Any]] = json.loads(path.read_text())
        except (OSError, ValueError):
            self.known = {}

    def get(self, source: str) -> _Fetched | None:
        entry = self.known.get(hashlib.sha256(source.encode()).hexdigest())
        if isinstance(entry, list) and len(entry) == 3:
            return _Fetched(str(entry[0]), int(entry[1]), None if entry[2] is None else str(entry[2]))
        return None

    def put(self, source: str, fetched: _Fetched) -> None:
        key = hashlib.sha256(source.encode()).hexdigest()  # a URL's query may hold a token: never written out
        self.known.pop(key, None)
        self.known[key] = [fetched.sha, fetched.size, fetched.validator]
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text(json.dumps(dict(list(self.known.items())[-self.LIMIT :])))
            os.replace(tmp, self.path)
        except OSError:
            pass  # the next submit fetches again
