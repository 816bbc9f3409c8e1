"""AutoBatch: the largest batch whose FULL training step fits in GPU memory.

How (CUDA): for a few batch sizes, run one real step (forward, loss,
backward, optimizer step, EMA update) on a copy of the model at the real
image size and AMP dtype, and read `torch.cuda.max_memory_allocated`. Fit
memory = a * batch + b by least squares, then take the largest batch with
a * batch + b <= fraction * free memory. The remaining share of free memory
is the room left for validation (a no-grad forward at the same batch needs
far less than a training step: no stored activations, no gradients) and for
allocator fragmentation. Under DDP every rank measures its own GPU and all
take the minimum, so the smallest card decides. On CPU there is no memory
to profile against: a stated default is used.

`choose_batch` holds the fitting logic, fed by any `measure(batch) -> bytes`
function, so it is tested with injected measurements on machines without a
GPU; `cuda_measure` is the real measurement and only runs on CUDA.
"""

from __future__ import annotations

from typing import Callable

__all__ = [
    "CPU_DEFAULT_BATCH",
    "PROFILE_SIZES",
    "DEFAULT_FRACTION",
    "choose_batch",
    "cuda_measure",
    "auto_batch",
    "is_oom",
]

CPU_DEFAULT_BATCH = 32
PROFILE_SIZES = (1, 2, 4, 8, 16)
DEFAULT_FRACTION = 0.60
MAX_BATCH = 1024


def choose_batch(
    measure: Callable[[int], float | None],
    free_bytes: float,
    fraction: float = DEFAULT_FRACTION,
    sizes: tuple[int, ...] = PROFILE_SIZES,
    default: int = CPU_DEFAULT_BATCH,
) -> int:
    """Fit memory(batch) on the measured sizes; None from `measure` means out of memory."""
    points, first_fail = [], None
    for b in sizes:
        used = measure(b)
        if used is None:
            first_fail = b
            break
        points.append((b, float(used)))
    if len(points) < 2:
        return max(1, points[0][0]) if points else default
    a, c = _linear_fit(points)
    if a <= 0:
        return default
    best = int((free_bytes * fraction - c) / a)
    if first_fail is not None:
        best = min(best, first_fail - 1)
    return max(points[0][0], min(best, MAX_BATCH))


def _linear_fit(points: list[tuple[int, float]]) -> tuple[float, float]:
    n = len(points)
    mx = sum(b for b, _ in points) / n
    my = sum(m for _, m in points) / n
    var = sum((b - mx) ** 2 for b, _ in points)
    slope = sum((b - mx) * (m - my) for b, m in points) / var
    return slope, my - slope * mx


def is_oom(exc: BaseException) -> bool:
    import torch  # noqa: PLC0415

    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


def cuda_measure(step: Callable[[int], None], device) -> Callable[[int], float | None]:  # type: ignore[no-untyped-def]
    """CUDA only (cannot run on the CPU-only development machine): peak bytes of
    `step(batch)`, which must run one full training step on scratch copies."""
    import torch  # noqa: PLC0415

    def measure(batch: int) -> float | None:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        try:
            step(batch)
            torch.cuda.synchronize(device)
        except Exception as exc:  # noqa: BLE001
            if not is_oom(exc):
                raise
            torch.cuda.empty_cache()
            return None
        return float(torch.cuda.max_memory_allocated(device))

    return measure


def auto_batch(device, step: Callable[[int], None] | None, reduce_min: Callable[[int], int]) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    """(batch, explanation). `reduce_min` takes the minimum across DDP ranks."""
    import torch  # noqa: PLC0415

    if device.type != "cuda" or step is None:
        return (
            CPU_DEFAULT_BATCH,
            f"AutoBatch needs a CUDA GPU to measure memory; using batch={CPU_DEFAULT_BATCH} on {device.type}",
        )
    free, total = torch.cuda.mem_get_info(device)  # CUDA only
    batch = reduce_min(choose_batch(cuda_measure(step, device), free))
    gib = 1 << 30
    return (
        batch,
        f"AutoBatch: batch={batch} for {DEFAULT_FRACTION:.0%} of {free / gib:.1f} of {total / gib:.1f} GiB free",
    )
