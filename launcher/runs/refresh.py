"""Bring recorded jobs up to date before listing them (`launch ls`).

The registry only learns a job's state when something asks its backend, so a
job that ended while no CLI was watching would stay `pending` forever. `ls`
asks the backends of the unfinished jobs it shows: concurrently, with at most
MAX_WORKERS requests at a time, a deadline for the whole refresh, and a short
cache (a job whose state was learnt in the last CACHE_S seconds is not asked again).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor, wait

from launcher.runs.job import attach
from launcher.state.jobs import JobRecord, JobRegistry

__all__ = ["refresh_unfinished", "CACHE_S", "MAX_WORKERS", "DEADLINE_S"]

CACHE_S = 10.0
MAX_WORKERS = 8
DEADLINE_S = 20.0


def refresh_unfinished(records: list[JobRecord], jobs: JobRegistry, now: float | None = None) -> list[JobRecord]:
    """`records` with each stale unfinished job's state asked of its backend; failures keep the stored state."""
    now = time.time() if now is None else now
    stale = [
        r for r in records if not r.state.finished and (r.updated_at == r.submitted_at or now - r.updated_at >= CACHE_S)
    ]
    if not stale:
        return records
    pool = ThreadPoolExecutor(max_workers=min(MAX_WORKERS, len(stale)), thread_name_prefix="launch-ls")
    try:
        futures = [pool.submit(_refresh, r.id, jobs) for r in stale]
        wait(futures, timeout=DEADLINE_S)  # a backend that does not answer in time keeps its stored state
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    fresh = {r.id: r for r in stale}
    for record in stale:
        try:
            fresh[record.id] = jobs.get(record.id)
        except Exception:  # noqa: BLE001 - a record removed meanwhile: show what we had
            pass
    return [fresh.get(r.id, r) for r in records]


def _refresh(job_id: str, jobs: JobRegistry) -> None:
    try:
        attach(job_id, jobs).status()
    except Exception:  # noqa: BLE001 - a missing SDK, no credentials, a gone job: ls still lists it
        pass
