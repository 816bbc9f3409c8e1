"""One writer per run: the lease object `<uri>/<run>/lease.json`.

Two jobs writing the same run folder interleave their results and, on a
bucket, silently replace each other's checkpoints. So a run has at most one
writer, recorded in a small object next to its manifest:

    {"job": "digits-20261201-101500-ab12", "backend": "aws", "state": "submitted" | "running",
     "heartbeat": 1764584100.0, "host": "...", "taken_over_from": "..."}

- At submit (launcher.api.Launcher.submit) the launcher creates it with an
  atomic create-if-absent (`Store.put_bytes_new`: S3 If-None-Match, GCS
  ifGenerationMatch=0, Azure If-None-Match, a hard link on local disk). A
  second job is refused, naming the job that holds the run.
- While the job runs, the entrypoint's Syncer renews the heartbeat every
  HEARTBEAT_S seconds, and stops uploading if another job took the run over.
- When the job ends, the entrypoint deletes it.
- A lease may be taken over when its job is known (in the local job
  registry) to have finished, when its heartbeat is older than STALE_AFTER_S
  (START_GRACE_S while the job has not started yet: queues and provisioning
  are slow), or with an explicit `--force` (`Launcher.submit(..., force=True)`).

The entrypoint learns its job id from LAUNCHER_JOB_ID when the backend sets
it (the local backend does); otherwise it adopts the lease it finds at start,
which the submit-time check gave to its job.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import asdict, dataclass, replace
from typing import Callable

from launcher.errors import LauncherError
from launcher.storage.base import Store

__all__ = ["LEASE", "HEARTBEAT_S", "STALE_AFTER_S", "START_GRACE_S", "LeaseInfo", "RunBusyError", "acquire",
           "release", "read", "Holder"]  # fmt: skip

LEASE = "lease.json"
HEARTBEAT_S = 60.0
STALE_AFTER_S = 15 * 60.0  # a running job that has not renewed its lease for this long is presumed dead
START_GRACE_S = 6 * 3600.0  # from submit to the entrypoint's first heartbeat


class RunBusyError(LauncherError):
    """Another job holds the run folder."""


@dataclass(frozen=True)
class LeaseInfo:
    job: str
    backend: str = ""
    state: str = "submitted"
    heartbeat: float = 0.0
    host: str = ""
    taken_over_from: str = ""

    def age(self, now: float) -> float:
        return max(0.0, now - self.heartbeat)

    def stale(self, now: float) -> bool:
        return self.age(now) > (START_GRACE_S if self.state == "submitted" else STALE_AFTER_S)

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()


def read(store: Store) -> LeaseInfo | None:
    """The lease, or None; an unreadable one reads as a stale lease of an unknown job (it may be taken over)."""
    data = store.get_bytes(LEASE)
    if data is None:
        return None
    try:
        raw = json.loads(data)
        return LeaseInfo(str(raw["job"]), str(raw.get("backend", "")), str(raw.get("state", "running")),
                         float(raw.get("heartbeat", 0.0)), str(raw.get("host", "")))  # fmt: skip
    except (ValueError, KeyError, TypeError, AttributeError):
        return LeaseInfo("(unreadable lease)", state="running")


def acquire(store: Store, job: str, backend: str = "", *, force: bool = False,
            finished: Callable[[str], bool] = lambda _job: False, now: Callable[[], float] = time.time) -> LeaseInfo:  # fmt: skip
    """Make `job` the run's only writer, or raise RunBusyError naming the holder.

    `finished(job_id)` says whether a holder is known to have ended (the job registry asks its backend).
    """
    for _attempt in range(3):  # another submitter may create or release it between our steps
        mine = LeaseInfo(job, backend, "submitted", now(), socket.gethostname())
        current = read(store)
        if current is None:
            if store.put_bytes_new(LEASE, mine.to_bytes()):
                return mine
            continue
        if current.job == job:
            store.put_bytes(LEASE, mine.to_bytes())
            return mine
        if not (force or current.stale(now()) or finished(current.job)):
            raise _busy(store, current, now())
        store.delete([LEASE])  # taken over: the old holder's Syncer sees another job and stops uploading
        if store.put_bytes_new(LEASE, replace(mine, taken_over_from=current.job).to_bytes()):
            return mine
    current = read(store)
    raise _busy(store, current or LeaseInfo("(another submitter)", heartbeat=now()), now())


def _busy(store: Store, holder: LeaseInfo, now: float) -> RunBusyError:
    on = f" on {holder.backend}" if holder.backend else ""
    return RunBusyError(
        f"{store.uri} is being written by job {holder.job}{on} ({holder.state}, last heartbeat {holder.age(now):.0f}s ago).",
        f"Wait for it to end or stop it (`launch stop {holder.job}`), change `name`, or pass --force to take the run "
        f"over (that job then stops uploading; a lease without a heartbeat for {STALE_AFTER_S / 60:.0f} min is free).",
    )


def release(store: Store, job: str) -> bool:
    """Delete the lease if `job` still holds it; returns whether it did."""
    current = read(store)
    if current is None or current.job != job:
        return False
    store.delete([LEASE])
    return True


class Holder:
    """The entrypoint's side: claims the lease at start, renews it, notices a takeover, releases it at the end."""

    def __init__(self, store: Store, job: str | None = None, log: Callable[[str], None] = print) -> None:
        self.store, self.job, self.log = store, job or os.environ.get("LAUNCHER_JOB_ID") or None, log
        self.lost = False
        self.renewed = 0.0

    def claim(self) -> None:
        """Mark the lease running; without a known job id, adopt the job that holds it (or start one)."""
        current = read(self.store)
        if self.job is None:
            self.job = current.job if current else f"entrypoint-{socket.gethostname()}-{os.getpid()}"
        if current is not None and current.job != self.job:
            self._lose(current)
            return
        self._write(current)

    def renew(self, now: float | None = None, force: bool = False) -> bool:
        """Refresh the heartbeat (at most every HEARTBEAT_S unless `force`); False once another job holds the run."""
        now = time.time() if now is None else now
        if self.lost:
            return False
        if now - self.renewed < HEARTBEAT_S and not force:
            return True
        current = read(self.store)
        if current is not None and current.job != self.job:
            self._lose(current)
            return False
        self._write(current, now)
        return True

    def release(self) -> None:
        if not self.lost and self.job is not None:
            release(self.store, self.job)

    def _write(self, current: LeaseInfo | None, now: float | None = None) -> None:
        now = time.time() if now is None else now
        base = current or LeaseInfo(str(self.job))
        self.store.put_bytes(LEASE, replace(base, state="running", heartbeat=now, host=socket.gethostname()).to_bytes())
        self.renewed = now

    def _lose(self, holder: LeaseInfo) -> None:
        self.lost = True
        self.log(
            f"job {holder.job} now holds {self.store.uri} (taken over); this job stops uploading checkpoints there"
        )
