"""Process-group plumbing: one object that answers the DDP questions.

Single-process runs (plain `python -m launcher.runtime.train`, or torchrun with one
process) get the same interface with no collectives, so the training loop
has one code path. Every decision that ends or changes the loop (stop on
SIGTERM, skip a non-finite step, early stopping) goes through `agree` so no
rank waits for a peer that already left.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping

__all__ = ["Dist", "setup"]


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1
    device: object = None

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def any(self, *flags: float) -> list[float]:
        """Element-wise max of `flags` over ranks (one small collective)."""
        if not self.active:
            return list(flags)
        import torch  # noqa: PLC0415
        import torch.distributed as td  # noqa: PLC0415

        t = torch.tensor(flags, dtype=torch.float64, device=self._comm_device())
        td.all_reduce(t, op=td.ReduceOp.MAX)
        return t.tolist()

    def sum(self, values: list[float]) -> list[float]:
        if not self.active:
            return values
        import torch  # noqa: PLC0415
        import torch.distributed as td  # noqa: PLC0415

        t = torch.tensor(values, dtype=torch.float64, device=self._comm_device())
        td.all_reduce(t)
        return t.tolist()

    def min_int(self, value: int) -> int:
        return -int(self.any(-float(value))[0])

    def barrier(self) -> None:
        if self.active:
            import torch.distributed as td  # noqa: PLC0415

            td.barrier()

    def _comm_device(self):  # type: ignore[no-untyped-def]
        return self.device if getattr(self.device, "type", "cpu") == "cuda" else "cpu"

    def close(self) -> None:
        if self.active:
            import torch.distributed as td  # noqa: PLC0415

            if td.is_initialized():
                td.destroy_process_group()


def setup(environ: Mapping[str, str] | None = None) -> Dist:
    """Read torchrun's variables; start NCCL on GPUs, gloo on CPU."""
    import torch  # noqa: PLC0415

    environ = os.environ if environ is None else environ
    world = int(environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(environ.get("RANK", "0")), int(environ.get("LOCAL_RANK", "0"))
    local_world = int(environ.get("LOCAL_WORLD_SIZE", str(world)))
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world > 1:
        import torch.distributed as td  # noqa: PLC0415

        td.init_process_group(
            backend="nccl" if device.type == "cuda" else "gloo", device_id=device if device.type == "cuda" else None
        )
    return Dist(rank, world, local_rank, local_world, device)
