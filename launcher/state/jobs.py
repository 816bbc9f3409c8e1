"""The local job registry: one SQLite file that remembers every submitted job.

Stored in `$LAUNCHER_STATE_DIR/jobs.db` (default `$XDG_STATE_HOME/launcher`,
i.e. `~/.local/state/launcher`). Each write is its own committed transaction
in WAL mode, so a record survives a crash of the CLI mid-job: the job is
inserted as `submitting` BEFORE the backend's submit call (a crash or Ctrl-C
during that call leaves a record to look for, never an untracked paid job),
completed with the native id when the call returns, and its status is
updated whenever the CLI learns something new.

Besides jobs, the registry keeps throughput measurements (images/s by model,
image size, batch, precision and device) for the estimator.
"""

from __future__ import annotations

import json
import os
import secrets as _random
import sqlite3
import time
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

from launcher.errors import JobNotFoundError
from launcher.plan import JobRef, JobState, JobStatus, thaw

__all__ = [
    "JobRecord",
    "JobRegistry",
    "RunRecord",
    "SweepRecord",
    "TrialRecord",
    "Throughput",
    "state_dir",
    "new_job_id",
]

# Columns added after the first release: a registry file written by an older version gains them.
# A job that is one attempt of a supervised run (launcher.runs.supervisor) names its run and its number;
# `ending` is how it ended (launcher.plan.Ending), `price_per_hour` what its machines cost (all nodes), `instance`
# the catalog instance the supervisor ran it on (after a capacity error, the next fit: launcher.runs.supervisor).
_ADDED = {"run_id": "TEXT", "attempt": "INTEGER", "ending": "TEXT", "price_per_hour": "REAL", "instance": "TEXT"}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    backend TEXT NOT NULL,
    native_id TEXT NOT NULL,
    name TEXT NOT NULL,
    spec TEXT NOT NULL,
    plan_hash TEXT NOT NULL,
    ref_extra TEXT NOT NULL DEFAULT '{}',
    state TEXT NOT NULL,
    message TEXT NOT NULL DEFAULT '',
    exit_code INTEGER,
    submitted_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    finished_at REAL,
    metrics TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    spec TEXT NOT NULL,
    backends TEXT NOT NULL,
    state TEXT NOT NULL,
    message TEXT NOT NULL DEFAULT '',
    supervisor_pid INTEGER,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS sweeps (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    spec TEXT NOT NULL,
    backends TEXT NOT NULL,
    state TEXT NOT NULL,
    message TEXT NOT NULL DEFAULT '',
    supervisor_pid INTEGER,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS trials (
    sweep_id TEXT NOT NULL,
    number INTEGER NOT NULL,
    run_id TEXT NOT NULL,
    params TEXT NOT NULL,
    backend TEXT NOT NULL,
    estimate REAL,
    state TEXT NOT NULL,
    message TEXT NOT NULL DEFAULT '',
    metrics TEXT NOT NULL DEFAULT '{}',
    decision TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (sweep_id, number)
);
CREATE TABLE IF NOT EXISTS throughput (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    model TEXT NOT NULL,
    imgsz INTEGER NOT NULL,
    batch INTEGER NOT NULL,
    precision TEXT NOT NULL,
    device TEXT NOT NULL,
    images_per_s REAL NOT NULL,
    source TEXT NOT NULL,
    job_id TEXT,
    recorded_at REAL NOT NULL,
    details TEXT NOT NULL DEFAULT '{}'
);
"""


# (run id, attempt number, price per hour of all its machines, catalog instance or None where there is no choice)
Attempt = tuple[str, int, "float | None", "str | None"]


def state_dir(environ: Mapping[str, str] | None = None) -> Path:
    environ = os.environ if environ is None else environ
    if environ.get("LAUNCHER_STATE_DIR"):
        return Path(environ["LAUNCHER_STATE_DIR"])
    base = environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "launcher"


def new_job_id(name: str) -> str:
    return f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-{_random.token_hex(2)}"


@dataclass(frozen=True)
class JobRecord:
    id: str
    backend: str
    native_id: str
    name: str
    spec: dict[str, Any]
    plan_hash: str
    ref_extra: dict[str, Any]
    state: JobState
    message: str
    exit_code: int | None
    submitted_at: float
    updated_at: float
    finished_at: float | None
    metrics: dict[str, Any]
    run_id: str | None = None
    attempt: int | None = None
    ending: str | None = None
    price_per_hour: float | None = None
    instance: str | None = None

    @property
    def ref(self) -> JobRef:
        return JobRef(self.id, self.backend, self.native_id, self.ref_extra)

    def cost(self, now: float | None = None) -> float | None:
        """USD: what the platform reported (SageMaker's billable time), else the time it ran at its price."""
        if "cost_usd" in self.metrics:
            return float(self.metrics["cost_usd"])
        if self.price_per_hour is None or not self.native_id:
            return None
        end = self.finished_at or (time.time() if now is None else now)
        return max(0.0, end - self.submitted_at) / 3600 * self.price_per_hour


@dataclass(frozen=True)
class RunRecord:
    """One supervised run: the spec it resubmits, the backends it may use (in order), where it stands."""

    id: str
    name: str
    spec: dict[str, Any]
    backends: list[str]
    state: str  # running | succeeded | failed | stopped
    message: str
    supervisor_pid: int | None
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class SweepRecord(RunRecord):
    """One sweep (launcher.runs.sweep): its spec (with `sweep:`), the backends its trials may use, where it stands
    (state: running | finished | failed | stopped). Supervised as a run is, so the same fields."""


@dataclass(frozen=True)
class TrialRecord:
    """One trial of a sweep: a supervised run (`run_id`) of the spec with `params` applied. Recorded before its run
    is created, so a restarted sweep supervisor starts no trial twice. `metrics`: the sweep's metric by epoch."""

    sweep_id: str
    number: int
    run_id: str
    params: dict[str, Any]
    backend: str
    estimate: float | None
    state: str  # starting | running | succeeded | failed | stopped | stopped_early
    message: str
    metrics: dict[str, float]
    decision: str | None  # early stop: kept | stopped (None: not compared yet)
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class Throughput:
    model: str
    imgsz: int
    batch: int
    precision: str
    device: str
    images_per_s: float
    source: str
    job_id: str | None = None
    recorded_at: float = 0.0
    details: Mapping[str, Any] | None = None


class JobRegistry:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path or state_dir() / "jobs.db"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.executescript(_SCHEMA)
            have = {row["name"] for row in db.execute("PRAGMA table_info(jobs)")}
            for column, kind in _ADDED.items():
                if column not in have:
                    db.execute(f"ALTER TABLE jobs ADD COLUMN {column} {kind}")

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        with closing(sqlite3.connect(self.path, timeout=30)) as db:
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            with db:  # one committed transaction per call
                yield db

    # ------------------------------------------------------------ jobs

    def add(self, ref: JobRef, name: str, spec: Mapping[str, Any], plan_hash: str,
            state: JobState = JobState.PENDING, message: str = "", attempt: "Attempt | None" = None) -> None:  # fmt: skip
        now = time.time()
        run_id, number, price, instance = attempt or (None, None, None, None)
        with self._connect() as db:
            db.execute(
                "INSERT INTO jobs (id, backend, native_id, name, spec, plan_hash, ref_extra, state, message, submitted_at,"
                " updated_at, run_id, attempt, price_per_hour, instance) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (ref.id, ref.backend, ref.native_id, name, json.dumps(spec), plan_hash,
                 json.dumps(thaw(ref.extra)), state.value, message, now, now, run_id, number, price, instance),
            )  # fmt: skip

    def submitted(self, ref: JobRef) -> None:
        """Complete a `submitting` record with what the backend answered: its native id and details."""
        now = time.time()
        with self._connect() as db:
            db.execute(
                "UPDATE jobs SET native_id = ?, ref_extra = ?, state = ?, message = '', submitted_at = ?, updated_at = ?"
                " WHERE id = ?",  # updated_at = submitted_at: no state learnt from the backend yet (launcher.runs.refresh)
                (ref.native_id, json.dumps(thaw(ref.extra)), JobState.PENDING.value, now, now, ref.id),
            )

    def update(self, job_id: str, status: JobStatus) -> None:
        """Record what the backend said; an unfinished state never replaces a finished one (a stop request written
        after the job's supervisor already saw it stopped stays "stopped")."""
        now = time.time()
        finished = now if status.finished else None
        with self._connect() as db:
            db.execute(
                "UPDATE jobs SET state = ?, message = ?, exit_code = ?, updated_at = ?, ending = ?,"
                " finished_at = COALESCE(finished_at, ?) WHERE id = ? AND (? OR finished_at IS NULL)",
                (status.state.value, status.message, status.exit_code, now, status.ending.value if status.ending else None,
                 finished, job_id, status.finished),
            )  # fmt: skip

    def add_metrics(self, job_id: str, metrics: Mapping[str, Any]) -> None:
        record = self.get(job_id)
        merged = {**record.metrics, **metrics}
        with self._connect() as db:
            db.execute("UPDATE jobs SET metrics = ? WHERE id = ?", (json.dumps(merged), job_id))

    def get(self, job_id: str) -> JobRecord:
        """The job with this id (or the backend's native id)."""
        _check_key(job_id)
        with self._connect() as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                row = db.execute("SELECT * FROM jobs WHERE native_id = ?", (job_id,)).fetchone()
        if row is None:
            raise JobNotFoundError(
                f"No job '{_shown(job_id)}' in the job registry ({self.path}).", "List jobs with: launch ls"
            )
        return _record(row)

    def find(self, id_or_name: str) -> JobRecord:
        """The job with this id or native id, else the newest job of this run name (the spec's `name`)."""
        _check_key(id_or_name)
        try:
            return self.get(id_or_name)
        except JobNotFoundError:
            with self._connect() as db:
                row = db.execute(
                    "SELECT * FROM jobs WHERE name = ? ORDER BY submitted_at DESC LIMIT 1", (id_or_name,)
                ).fetchone()
            if row is None:
                raise JobNotFoundError(
                    f"No job with the id or name '{_shown(id_or_name)}' in the job registry ({self.path}).",
                    "List jobs with: launch ls",
                ) from None
            return _record(row)

    def list(self, limit: int = 50, backend: str | None = None) -> list[JobRecord]:
        query, params = "SELECT * FROM jobs", []
        if backend:
            query, params = query + " WHERE backend = ?", [backend]
        with self._connect() as db:
            rows = db.execute(query + " ORDER BY submitted_at DESC LIMIT ?", (*params, limit)).fetchall()
        return [_record(r) for r in rows]

    # ------------------------------------------------------------ runs (launcher.runs.supervisor)

    def add_run(self, run_id: str, name: str, spec: Mapping[str, Any], backends: list[str], pid: int | None) -> None:
        now = time.time()
        with self._connect() as db:
            db.execute("INSERT INTO runs (id, name, spec, backends, state, supervisor_pid, created_at, updated_at)"
                       " VALUES (?, ?, ?, ?, 'running', ?, ?, ?)", (run_id, name, json.dumps(spec), json.dumps(backends), pid, now, now))  # fmt: skip

    def set_run(self, run_id: str, state: str | None = None, message: str | None = None, pid: int | None = -1) -> None:
        """Change what is given; `pid` -1 keeps the supervisor's pid, None clears it."""
        run = self.run(run_id)
        with self._connect() as db:
            db.execute("UPDATE runs SET state = ?, message = ?, supervisor_pid = ?, updated_at = ? WHERE id = ?",
                       (state or run.state, run.message if message is None else message,
                        run.supervisor_pid if pid == -1 else pid, time.time(), run_id))  # fmt: skip

    def run(self, run_id: str) -> RunRecord:
        """The run with this id, else the newest run of this name."""
        _check_key(run_id)
        with self._connect() as db:
            row = db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone() or db.execute(
                "SELECT * FROM runs WHERE name = ? ORDER BY created_at DESC LIMIT 1", (run_id,)).fetchone()  # fmt: skip
        if row is None:
            raise JobNotFoundError(
                f"No run '{_shown(run_id)}' in the job registry ({self.path}).", "List runs and jobs with: launch ls"
            )
        return RunRecord(row["id"], row["name"], json.loads(row["spec"]), json.loads(row["backends"]), row["state"],
                         row["message"], row["supervisor_pid"], row["created_at"], row["updated_at"])  # fmt: skip

    def runs(self, limit: int = 50) -> list[RunRecord]:
        with self._connect() as db:
            ids = [
                r["id"] for r in db.execute("SELECT id FROM runs ORDER BY created_at DESC LIMIT ?", (limit,)).fetchall()
            ]
        return [self.run(run_id) for run_id in ids]

    def attempts(self, run_id: str) -> list[JobRecord]:
        """The jobs of a run, first attempt first."""
        with self._connect() as db:
            rows = db.execute("SELECT * FROM jobs WHERE run_id = ? ORDER BY attempt", (run_id,)).fetchall()
        return [_record(r) for r in rows]

    def latest(self) -> JobRecord | None:
        found = self.list(limit=1)
        return found[0] if found else None

    # ------------------------------------------------------------ sweeps (launcher.runs.sweep)

    def add_sweep(self, sweep_id: str, name: str, spec: Mapping[str, Any], backends: list[str],
                  pid: int | None) -> None:  # fmt: skip
        now = time.time()
        with self._connect() as db:
            db.execute("INSERT INTO sweeps (id, name, spec, backends, state, supervisor_pid, created_at, updated_at)"
                       " VALUES (?, ?, ?, ?, 'running', ?, ?, ?)",
                       (sweep_id, name, json.dumps(spec), json.dumps(backends), pid, now, now))  # fmt: skip

    def set_sweep(self, sweep_id: str, state: str | None = None, message: str | None = None,
                  pid: int | None = -1) -> None:  # fmt: skip
        """Change what is given; `pid` -1 keeps the supervisor's pid, None clears it."""
        sweep = self.sweep(sweep_id)
        with self._connect() as db:
            db.execute("UPDATE sweeps SET state = ?, message = ?, supervisor_pid = ?, updated_at = ? WHERE id = ?",
                       (state or sweep.state, sweep.message if message is None else message,
                        sweep.supervisor_pid if pid == -1 else pid, time.time(), sweep.id))  # fmt: skip

    def sweep(self, sweep_id: str) -> SweepRecord:
        """The sweep with this id, else the newest sweep of this name."""
        _check_key(sweep_id)
        with self._connect() as db:
            row = (
                db.execute("SELECT * FROM sweeps WHERE id = ?", (sweep_id,)).fetchone()
                or db.execute(
                    "SELECT * FROM sweeps WHERE name = ? ORDER BY created_at DESC LIMIT 1", (sweep_id,)
                ).fetchone()
            )
        if row is None:
            raise JobNotFoundError(f"No sweep '{_shown(sweep_id)}' in the job registry ({self.path}).",
                                   "Start one with: launch sweep JOB.yaml (a spec with a sweep: section)")  # fmt: skip
        return SweepRecord(row["id"], row["name"], json.loads(row["spec"]), json.loads(row["backends"]), row["state"],
                           row["message"], row["supervisor_pid"], row["created_at"], row["updated_at"])  # fmt: skip

    def sweeps(self, limit: int = 50) -> list[SweepRecord]:
        with self._connect() as db:
            rows = db.execute("SELECT id FROM sweeps ORDER BY created_at DESC LIMIT ?", (limit,)).fetchall()
        ids = [r["id"] for r in rows]
        return [self.sweep(sweep_id) for sweep_id in ids]

    def add_trial(self, sweep_id: str, number: int, run_id: str, params: Mapping[str, Any], backend: str,
                  estimate: float | None) -> None:  # fmt: skip
        now = time.time()
        with self._connect() as db:
            db.execute("INSERT INTO trials (sweep_id, number, run_id, params, backend, estimate, state, created_at,"
                       " updated_at) VALUES (?, ?, ?, ?, ?, ?, 'starting', ?, ?)",
                       (sweep_id, number, run_id, json.dumps(dict(params)), backend, estimate, now, now))  # fmt: skip

    def set_trial(self, sweep_id: str, number: int, state: str | None = None, message: str | None = None,
                  metrics: Mapping[str, float] | None = None, decision: str | None = None) -> None:  # fmt: skip
        """Change what is given; `metrics` (epoch -> value) are merged into those recorded."""
        trial = next(t for t in self.trials(sweep_id) if t.number == number)
        merged = {**trial.metrics, **{str(k): float(v) for k, v in (metrics or {}).items()}}
        with self._connect() as db:
            db.execute("UPDATE trials SET state = ?, message = ?, metrics = ?, decision = ?, updated_at = ?"
                       " WHERE sweep_id = ? AND number = ?",
                       (state or trial.state, trial.message if message is None else message, json.dumps(merged),
                        decision or trial.decision, time.time(), sweep_id, number))  # fmt: skip

    def trials(self, sweep_id: str) -> list[TrialRecord]:
        """The trials of a sweep recorded so far, trial 1 first."""
        with self._connect() as db:
            rows = db.execute("SELECT * FROM trials WHERE sweep_id = ? ORDER BY number", (sweep_id,)).fetchall()
        return [TrialRecord(r["sweep_id"], r["number"], r["run_id"], json.loads(r["params"]), r["backend"],
                            r["estimate"], r["state"], r["message"], json.loads(r["metrics"]), r["decision"],
                            r["created_at"], r["updated_at"]) for r in rows]  # fmt: skip  # fmt: skip

    # ------------------------------------------------------------ throughput

    def add_throughput(self, t: Throughput) -> None:
        with self._connect() as db:
            db.execute(
                "INSERT INTO throughput (model, imgsz, batch, precision, device, images_per_s, source, job_id, recorded_at, details)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (t.model, t.imgsz, t.batch, t.precision, t.device, t.images_per_s, t.source, t.job_id,
                 t.recorded_at or time.time(), json.dumps(dict(t.details or {}))),
            )  # fmt: skip

    def throughputs(self, model: str | None = None, device: str | None = None) -> list[Throughput]:
        query, params = "SELECT * FROM throughput WHERE 1=1", []
        if model:
            query, params = query + " AND model = ?", [*params, model]
        if device:
            query, params = query + " AND device = ?", [*params, device]
        with self._connect() as db:
            rows = db.execute(query + " ORDER BY recorded_at DESC", params).fetchall()
        return [
            Throughput(r["model"], r["imgsz"], r["batch"], r["precision"], r["device"], r["images_per_s"],
                       r["source"], r["job_id"], r["recorded_at"], json.loads(r["details"]))
            for r in rows
        ]  # fmt: skip


MAX_KEY_CHARS = 512  # ids are a name (at most 63 characters) and a timestamp; native ids are resource paths


def _shown(key: str, limit: int = 80) -> str:
    """`key` safe to print on one line: control and unencodable characters escaped, long ones cut."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in key[:limit])
    return text + ("..." if len(key) > limit else "")


def _check_key(key: str) -> None:
    """Refuse, in one line, a job id that no job can have (NUL, control characters, undecodable bytes, huge)."""
    if len(key) > MAX_KEY_CHARS or not key.strip() or not key.isprintable():
        raise JobNotFoundError(f"'{_shown(key)}' is not a job id or name.", "List jobs with: launch ls")


def _record(row: sqlite3.Row) -> JobRecord:
    return JobRecord(
        id=row["id"],
        backend=row["backend"],
        native_id=row["native_id"],
        name=row["name"],
        spec=json.loads(row["spec"]),
        plan_hash=row["plan_hash"],
        ref_extra=json.loads(row["ref_extra"]),
        state=JobState(row["state"]),
        message=row["message"],
        exit_code=row["exit_code"],
        submitted_at=row["submitted_at"],
        updated_at=row["updated_at"],
        finished_at=row["finished_at"],
        metrics=json.loads(row["metrics"]),
        run_id=row["run_id"],
        attempt=row["attempt"],
        ending=row["ending"],
        price_per_hour=row["price_per_hour"],
        instance=row["instance"],
    )
