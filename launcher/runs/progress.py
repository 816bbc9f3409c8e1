"""How far a job has got: epoch, best top-1 (or, for the ultralytics engine, mAP50-95) so far and an ETA, from
the run's own results.csv.

The run folder is `<checkpoint.uri>/<spec name>/`. A local folder is read
directly (a plain trainer folder, or a checkpoint store with manifests); a
cloud store is read through its newest complete manifest, fetching only the
small results.csv it lists, so what `launch status` shows is what the last
synced checkpoint holds. The ETA is the remaining epochs times the mean
training time of the epochs so far (validation and startup not included, so
it leans low); a finished job has none.

While a job stages its `train.data` or streams a packed dataset, `DataProgress`
is how far its node 0 has got: the trainer's streaming record (`.data-progress.json`
in a local run folder, or `data-progress.json` that the checkpoint syncer copies
to the run folder in a store), or the entrypoint's staging record, which node 0
writes to `data-progress.json` itself (phases listing, fetching, unpacking, staged:
launcher.storage.dataset). `launch status` shows it while the job runs, naming
the node when the job has several.
"""

from __future__ import annotations

import csv
import io
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from launcher.contract import ultralytics_epoch_seconds
from launcher.storage import join_uri, open_store
from launcher.storage.manifest import DATA_PROGRESS
from launcher.storage.retry import RetryPolicy

__all__ = [
    "RunProgress",
    "DataProgress",
    "data_from_json",
    "read_data_progress",
    "data_for_record",
    "from_csv",
    "read_progress",
    "for_record",
    "fmt_duration",
    "ultralytics_epoch_seconds",
]

RESULTS = "results.csv"


@dataclass(frozen=True)
class RunProgress:
    epoch: int
    epochs: int | None
    best_top1: float | None
    eta_s: float | None
    source: str
    best_map: float | None = None  # Ultralytics' results.csv: the best mAP50-95 (the mask one for segment)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if data["best_map"] is None:  # the built-in trainer's runs: the keys they always had
            del data["best_map"]
        return data

    def line(self) -> str:
        """`epoch 3/10  best top-1 0.912  ETA 5m  (where it was read)` (the `launch status` line)."""
        parts = [f"epoch {self.epoch}/{self.epochs}" if self.epochs else f"epoch {self.epoch}"]
        if self.best_top1 is not None:
            parts.append(f"best top-1 {self.best_top1:.4f}")
        if self.best_map is not None:
            parts.append(f"best mAP50-95 {self.best_map:.4f}")
        if self.eta_s is not None:
            parts.append(f"ETA {fmt_duration(self.eta_s)}")
        return "  ".join(parts) + f"  ({self.source})"

    def short(self) -> str:
        """`3/10 top1 0.912 ETA 5m` (the `launch ls` column)."""
        text = f"{self.epoch}/{self.epochs}" if self.epochs else f"{self.epoch}"
        if self.best_top1 is not None:
            text += f" top1 {self.best_top1:.3f}"
        if self.best_map is not None:
            text += f" mAP50-95 {self.best_map:.3f}"
        if self.eta_s is not None:
            text += f" ETA {fmt_duration(self.eta_s)}"
        return text


@dataclass(frozen=True)
class DataProgress:
    """Node 0's record of `train.data`: its staging (launcher.storage.dataset.StagingProgress, phase listing,
    fetching, unpacking or staged) or its streaming of a packed dataset's shards (launcher.runtime.train.stream.DataProgress,
    phase streaming; a record without a phase is one of those)."""

    phase: str
    shards: int
    shards_total: int
    bytes: int
    bytes_total: int
    time: float  # when it was written (epoch seconds)
    source: str
    uri: str = ""
    files: int = 0  # a plain folder being staged: objects on the node's disk (its shards stay 0)
    files_total: int = 0
    seconds: float | None = None  # staging: how long it has taken so far
    nodes: int = 1  # the job's nodes (the figures are node 0's)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self, now: float | None = None) -> str:
        """The `launch status` line: `data: 3/15 shards, 24.0 of 120.0 MB streamed from s3://b/cars (12s ago)`,
        `data: staging 1,200/20,000 files, 3.1 of 52.0 MB fetched from s3://b/d (4s ago)`, `data: staged 20,000
        files, 52.0 MB from s3://b/d in 41s (2m ago)`; `(node 0 of 2, 12s ago)` when the job has several nodes."""
        age = max(0.0, (time.time() if now is None else now) - self.time)
        whence = f" from {self.uri}" if self.uri else ""
        node = f"node 0 of {self.nodes}, " if self.nodes > 1 else ""
        unit, done, total = ("files", self.files, self.files_total)
        if not self.files_total:  # streaming, or a packed dataset unpacked
            unit, done, total = ("shards", self.shards, self.shards_total)
        mb = f"{self.bytes / 1e6:.1f} of {self.bytes_total / 1e6:.1f} MB"
        if self.phase == "listing":
            text = f"staging: listing the files of {self.uri or 'train.data'}"
        elif self.phase == "staged":
            took = f" in {fmt_duration(self.seconds)}" if self.seconds is not None else ""
            text = f"staged {total:,} {unit}, {self.bytes_total / 1e6:.1f} MB{whence}{took}"
        elif self.phase in _STAGED_BY:
            text = f"staging {done:,}/{total:,} {unit}, {mb} {_STAGED_BY[self.phase]}{whence}"
        else:
            text = f"{done:,}/{total:,} {unit}, {mb} {self.phase.replace('streaming', 'streamed')}{whence}"
        return f"data: {text} ({node}{fmt_duration(age)} ago)"


_STAGED_BY = {"fetching": "fetched", "unpacking": "fetched and unpacked"}  # a phase -> what its bytes went through


def data_from_json(text: str | bytes, source: str, nodes: int = 1) -> DataProgress | None:
    """A data progress record, or None when it is not one (a damaged or foreign file reads as unknown)."""
    try:
        body = json.loads(text)
        seconds = body.get("seconds")
        return DataProgress(
            str(body.get("phase", "streaming")), int(body.get("shards", 0)), int(body.get("shards_total", 0)),
            int(body["bytes"]), int(body["bytes_total"]), float(body["time"]), source, str(body.get("uri", "")),
            int(body.get("files", 0)), int(body.get("files_total", 0)),
            None if seconds is None else float(seconds), max(1, int(nodes)),
        )  # fmt: skip
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def read_data_progress(
    record_spec: Mapping[str, Any], name: str, open_store_fn: Callable[[str], Any] | None = None
) -> DataProgress | None:
    """The data progress of the run a job spec writes: the newer of the trainer's own file in a local run folder
    and the copy in the run folder of the store (the checkpoint syncer's, or node 0's staging record); None when
    there is none."""
    uri = (record_spec.get("checkpoint") or {}).get("uri")
    if not uri:
        return None
    nodes = (record_spec.get("resources") or {}).get("nodes") or 1
    run_uri = join_uri(uri, name)
    found = []
    if "://" not in uri:
        own = Path(run_uri) / f".{DATA_PROGRESS}"
        if own.is_file():
            found.append(data_from_json(own.read_bytes(), str(own), nodes))
    store = (open_store_fn or _glance)(run_uri)
    body = store.get_bytes(DATA_PROGRESS)
    if body is not None:
        found.append(data_from_json(body, store.url(DATA_PROGRESS), nodes))
    return max((f for f in found if f is not None), key=lambda f: f.time, default=None)


def data_for_record(record: Any, open_store_fn: Callable[[str], Any] | None = None) -> DataProgress | None:
    """A running job's data progress, never an error (a finished job's, or an unreachable store's, is None)."""
    if record.state.finished:
        return None
    try:
        return read_data_progress(record.spec, record.name, open_store_fn or _glance)
    except Exception:  # noqa: BLE001 - progress is a nicety; `status` must still answer
        return None


def fmt_duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def from_csv(text: str, epochs: int | None, finished: bool, source: str) -> RunProgress | None:
    """Progress from results.csv's text; None when it holds no epoch yet (or is not the trainer's)."""
    rows = list(csv.DictReader(io.StringIO(text)))
    try:
        done = [int(float(r["epoch"])) for r in rows]
        top1 = [float(r["top1"]) for r in rows if r.get("top1") not in (None, "")]
        times = [float(r["time_s"]) for r in rows if r.get("time_s") not in (None, "")] or ultralytics_epoch_seconds(
            rows
        )
        maps = [c for c in (rows[0] if rows else {}) if c.startswith("metrics/mAP50-95")]
        best_map = max(float(r[maps[-1]]) for r in rows) if maps else None  # (B), then (M) or (P): the task's own
    except (KeyError, ValueError):
        return None
    if not done:
        return None
    epoch = max(done)
    eta = None
    if not finished and epochs and times and epoch < epochs:
        eta = (epochs - epoch) * sum(times) / len(times)
    return RunProgress(epoch, epochs, max(top1) if top1 else None, eta, source, best_map)


def _glance(uri: str) -> Any:
    """The store, read with few retries: progress is a nicety, and `launch status`/`ls` must answer at once when
    a store is unreachable (the checkpoint sync's own 8 tries, with backoff, took 25 s per run there)."""
    return open_store(uri, retry=RetryPolicy(attempts=3))


def read_progress(
    record_spec: Mapping[str, Any], name: str, finished: bool, open_store_fn: Callable[[str], Any] = _glance
) -> RunProgress | None:
    """The progress of the run a job spec (as recorded) writes; None when it has no reachable results."""
    uri = (record_spec.get("checkpoint") or {}).get("uri")
    if not uri:
        return None
    epochs = (record_spec.get("train") or {}).get("epochs")
    run_uri = join_uri(uri, name)
    if "://" not in uri and (Path(run_uri) / RESULTS).is_file():
        path = Path(run_uri) / RESULTS
        return from_csv(path.read_text(encoding="utf-8"), epochs, finished, str(path))
    return _from_store(open_store_fn(run_uri), epochs, finished)


def _from_store(store: Any, epochs: int | None, finished: bool) -> RunProgress | None:
    from launcher.storage.sync import newest  # noqa: PLC0415 - keeps `launch --help` light

    manifest, _skipped = newest(store)
    entry = manifest.files.get(RESULTS) if manifest else None
    if entry is None:
        return None
    data = store.get_bytes(entry.key)
    if data is None:
        return None
    return from_csv(data.decode("utf-8"), epochs, finished, f"{store.uri} (checkpoint {manifest.version})")


def for_record(record: Any, remote: bool = True, newer: str | None = None) -> RunProgress | None:
    """A job record's progress, never an error: an unreachable store or no credentials reads as unknown.

    `newer`: a later job of the same run, which now writes the run folder: a finished job's progress is then
    the epoch recorded when it ended (None if none was), never the newer job's."""
    uri = (record.spec.get("checkpoint") or {}).get("uri") or ""
    if newer and record.state.finished:
        epoch = record.metrics.get("epoch")
        epochs = (record.spec.get("train") or {}).get("epochs")
        source = f"when it ended; the run folder now holds {newer}'s"
        return RunProgress(int(epoch), epochs, None, None, source) if isinstance(epoch, (int, float)) else None
    if "://" in uri and not remote:
        return None
    try:
        return read_progress(record.spec, record.name, record.state.finished)
    except Exception:  # noqa: BLE001 - progress is a nicety; `status` must still answer
        return None
