"""launcher.runtime.cpu.loader_workers: the one rule for the trainer's DataLoader workers and the local backend's
/dev/shm (issue 33). The trainer applies it (tests/launcher/runtime/train/test_loop.py); here, that a plan's figure,
made without knowing the machine, is never below what the trainer will run on any machine."""

from __future__ import annotations

import itertools

from launcher.runtime.cpu import cpu_threads, explicit_threads, loader_workers


def test_without_the_machine_the_rule_gives_the_most_any_machine_runs() -> None:
    for asked, processes, gpu, cached, omp in itertools.product((0, 1, 2, 8), (1, 2, 4), (False, True),
                                                                (False, True), (None, 1, 3)):  # fmt: skip
        bound = loader_workers(asked, processes=processes, gpu=gpu, cached=cached, cpus=None, omp=omp)
        assert bound <= asked
        for cpus in range(1, 33):
            run = loader_workers(asked, processes=processes, gpu=gpu, cached=cached, cpus=cpus, omp=omp)
            assert 0 <= run <= bound, (asked, processes, gpu, cached, omp, cpus)


def test_cpu_rule_matches_the_thread_policy() -> None:
    # without OMP_NUM_THREADS the compute threads take the process's share of the cores: no room for a worker
    assert cpu_threads({}, 8, 2) == 4 and explicit_threads({}) is None
    assert loader_workers(8, processes=2, gpu=False, cached=False, cpus=8, omp=None) == 0
    assert (
        loader_workers(8, processes=2, gpu=False, cached=False, cpus=8, omp=explicit_threads({"OMP_NUM_THREADS": "1"}))
        == 3
    )
    assert loader_workers(8, processes=1, gpu=True, cached=False, cpus=4, omp=None) == 4
    assert loader_workers(8, processes=1, gpu=True, cached=True, cpus=16, omp=None) == 2
    assert explicit_threads({"OMP_NUM_THREADS": "0"}) is None and explicit_threads({"OMP_NUM_THREADS": "x"}) is None
