from __future__ import annotations

import torch

from launcher.runtime.train.autobatch import CPU_DEFAULT_BATCH, auto_batch, choose_batch

GIB = 1 << 30


def test_fits_a_line_and_takes_the_largest_batch_within_the_memory_fraction() -> None:
    measured: list[int] = []

    def measure(b: int) -> float:  # 1 GiB of weights + optimizer state, 0.25 GiB per image
        measured.append(b)
        return 1 * GIB + 0.25 * GIB * b

    assert choose_batch(measure, free_bytes=20 * GIB, fraction=0.6) == 44  # (12 - 1) / 0.25
    assert measured == [1, 2, 4, 8, 16]
    assert choose_batch(measure, free_bytes=40 * GIB, fraction=0.6) == 92


def test_never_chooses_a_batch_that_already_ran_out_of_memory() -> None:
    def measure(b: int) -> float | None:
        return None if b >= 8 else 1 * GIB + 0.01 * GIB * b  # the fit says hundreds, the device said no

    assert choose_batch(measure, free_bytes=80 * GIB) == 7


def test_falls_back_to_the_default_when_nothing_can_be_fitted() -> None:
    assert choose_batch(lambda b: None, free_bytes=GIB, default=16) == 16
    assert choose_batch(lambda b: 5 * GIB, free_bytes=GIB, default=16) == 16  # flat line: no signal


def test_cpu_uses_the_stated_default() -> None:
    batch, why = auto_batch(torch.device("cpu"), None, lambda b: b)
    assert batch == CPU_DEFAULT_BATCH and "needs a CUDA GPU" in why
