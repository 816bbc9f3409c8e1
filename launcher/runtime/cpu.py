"""How many compute threads a CPU training process uses: one rule for `launch profile` and the run.

Threads follow the cores this process may run on (its affinity mask, which
`docker --cpuset-cpus` and `taskset` narrow) shared among the training
processes on this machine. They do not follow the momentary load: a rule
that did made the same job's speed, and the local estimate measured by
`launch profile`, swing with whatever else happened to run. An explicit
OMP_NUM_THREADS always wins.
"""

from __future__ import annotations

import os
from typing import Mapping

__all__ = ["cpu_threads", "usable_cpus"]


def usable_cpus() -> int:
    """The cores this process may run on (its affinity mask), not every core of the machine."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def cpu_threads(environ: Mapping[str, str], cpus: int, processes: int = 1) -> int:
    """Intra-op threads of one of `processes` training processes sharing `cpus` cores."""
    explicit = environ.get("OMP_NUM_THREADS", "").strip()
    if explicit.isdigit() and int(explicit) > 0:
        return int(explicit)
    return max(1, cpus // max(1, processes))
