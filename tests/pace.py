"""How slow this machine is right now, so the long tests' limits follow it (a loaded CI machine is not a failure).

`factor()` times a fixed piece of work (sha256 over 32 MiB, on both cores at once, best of 3) once per
session, against REFERENCE_S measured on a quiet 2-core machine of CI's kind, and returns the ratio
clamped to [1, MAX_FACTOR]. The conformance and slow tests' time limits are multiplied by it
(tests/conftest.py) and `pytest` prints it in its header. Two threads, because what slows the two-node
runs is other work competing for the two cores, which one thread on an idle core would not see.
"""

from __future__ import annotations

import hashlib
import os
import time
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

__all__ = ["factor", "scaled", "REFERENCE_S", "MAX_FACTOR"]

REFERENCE_S = 0.050  # best of 3 on a quiet 2-core CI-kind machine, 2026-12-03 (0.045-0.052 s; 0.136 s beside 4 busy processes)
MAX_FACTOR = 4.0
_BLOCK = b"\0" * (32 << 20)


def _work() -> float:
    start = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:  # hashlib releases the GIL: two cores' worth of work
        list(pool.map(lambda _i: hashlib.sha256(_BLOCK).digest(), range(2)))
    return time.perf_counter() - start


@lru_cache(maxsize=1)
def factor() -> float:
    """The slowdown against the quiet reference, in [1, MAX_FACTOR]; LAUNCHER_TEST_PACE overrides it."""
    if os.environ.get("LAUNCHER_TEST_PACE"):
        return max(1.0, min(MAX_FACTOR, float(os.environ["LAUNCHER_TEST_PACE"])))
    best = min(_work() for _ in range(3))
    return max(1.0, min(MAX_FACTOR, best / REFERENCE_S))


def scaled(seconds: float) -> float:
    return seconds * factor()
