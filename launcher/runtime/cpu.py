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

__all__ = ["cpu_threads", "usable_cpus", "explicit_threads", "loader_workers"]


def usable_cpus() -> int:
    """The cores this process may run on (its affinity mask), not every core of the machine."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def explicit_threads(environ: Mapping[str, str]) -> int | None:
    """OMP_NUM_THREADS when it is set to a positive number, else None."""
    explicit = environ.get("OMP_NUM_THREADS", "").strip()
    return int(explicit) if explicit.isdigit() and int(explicit) > 0 else None


def cpu_threads(environ: Mapping[str, str], cpus: int, processes: int = 1) -> int:
    """Intra-op threads of one of `processes` training processes sharing `cpus` cores."""
    return explicit_threads(environ) or max(1, cpus // max(1, processes))


def loader_workers(asked: int, *, processes: int, gpu: bool, cached: bool, cpus: int | None,
                   omp: int | None) -> int:  # fmt: skip
    """The DataLoader workers of one of the built-in trainer's `processes` on a node: `train.workers` capped.

    The one rule for the trainer (launcher.runtime.train.loop) and the local backend's /dev/shm, which each
    worker passes its batches through. At most this process's share of the cores. On a CPU the compute
    threads take that share (cpu_threads), so a worker gets only what an explicit OMP_NUM_THREADS (`omp`)
    leaves free, and none when the images are cached (a batch is then one gather, which a worker would only
    hand over through shared memory); on a GPU, two at most for a cached set. `cpus` None (a plan made before
    the job runs, wherever that is): the most the rule allows on any machine.
    """
    cores = None if cpus is None else max(1, cpus // max(1, processes))
    workers = asked if cores is None else min(asked, cores)
    if gpu:
        return min(workers, 2) if cached else workers
    if cached or omp is None:
        return 0
    return workers if cores is None else min(workers, max(0, cores - omp))
