"""How slow this machine is right now, so the long tests' limits follow it (a loaded CI machine is not a failure).

`factor()` times a fixed piece of work (sha256 over 32 MiB, on both cores at once, best of 3) against
REFERENCE_S measured on a quiet 2-core machine of CI's kind, and returns the ratio clamped to
[1, MAX_FACTOR]. It is measured again when the last measure is over MAX_AGE_S old, because load comes and
goes during a session: the slow and conformance tests' limits are set from it when each test STARTS
(tests/conftest.py), and each phase of a conformance scenario from it when the phase starts. A session
that began on a quiet machine and was then loaded (load average 6-7 on 2 cores) once hit a limit set at
collection; `pytest` prints the factor in its header. Two threads, because what slows the two-node
runs is other work competing for the two cores, which one thread on an idle core would not see.
"""

from __future__ import annotations

import hashlib
import os
import time
from concurrent.futures import ThreadPoolExecutor

__all__ = ["factor", "scaled", "REFERENCE_S", "MAX_FACTOR", "MAX_AGE_S"]

REFERENCE_S = (
    0.050  # best of 3 on a quiet 2-core CI-kind machine, 2026-12-03 (0.045-0.052 s; 0.136 s beside 4 busy processes)
)
MAX_FACTOR = 4.0
MAX_AGE_S = 30.0
_BLOCK = b"\0" * (32 << 20)


def _work() -> float:
    start = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:  # hashlib releases the GIL: two cores' worth of work
        list(pool.map(lambda _i: hashlib.sha256(_BLOCK).digest(), range(2)))
    return time.perf_counter() - start


_last: tuple[float, float] | None = None  # (when measured, factor)


def factor() -> float:
    """The slowdown against the quiet reference now, in [1, MAX_FACTOR]; LAUNCHER_TEST_PACE overrides it."""
    global _last
    if os.environ.get("LAUNCHER_TEST_PACE"):
        return max(1.0, min(MAX_FACTOR, float(os.environ["LAUNCHER_TEST_PACE"])))
    if _last is None or time.monotonic() - _last[0] > MAX_AGE_S:
        best = min(_work() for _ in range(3))
        _last = (time.monotonic(), max(1.0, min(MAX_FACTOR, best / REFERENCE_S)))
    return _last[1]


def scaled(seconds: float) -> float:
    return seconds * factor()
