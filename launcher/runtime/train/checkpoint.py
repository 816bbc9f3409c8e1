"""Checkpoint files: atomic writes, `weights_only` loads, newest-complete lookup.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts,
so `torch.load(weights_only=True)` can read it without unpickling arbitrary
objects (https://pytorch.org/docs/stable/generated/torch.load.html). RNG
states are stored as tensors for the same reason.

Writes go to a temp file in the same folder, are fsynced, then renamed over
the target, and the folder is fsynced: a crash leaves either the old file or
the new one, never a torn one (the checkpoint syncer relies on that too).
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

from launcher.storage.local import atomic_write

__all__ = ["save", "load", "find_resume", "rng_state", "set_rng_state", "LAST", "BEST", "epoch_name"]

LAST, BEST = "last.pt", "best.pt"
_EPOCH_RE = re.compile(r"^epoch-(\d+)\.pt$")


def epoch_name(epoch: int) -> str:
    return f"epoch-{epoch}.pt"


def save(state: dict[str, Any], path: Path) -> None:
    """Atomic: a temp file next to `path`, fsync, rename (a reader never sees half a checkpoint)."""
    import torch  # noqa: PLC0415

    atomic_write(path, lambda f: torch.save(state, f))


def load(path: Path) -> dict[str, Any]:
    import torch  # noqa: PLC0415

    return torch.load(path, map_location="cpu", weights_only=True)


def find_resume(folder: Path) -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint in `folder` that loads: last.pt, then epoch-N.pt from the highest N."""
    candidates = [folder / LAST]
    numbered = [(int(m.group(1)), p) for p in folder.glob("epoch-*.pt") if (m := _EPOCH_RE.match(p.name))]
    candidates += [p for _, p in sorted(numbered, reverse=True)]
    for path in candidates:
        if not path.is_file():
            continue
        try:
            return path, load(path)
        except Exception as exc:  # noqa: BLE001 - a damaged file: say so and try the next one
            print(f"[train] ignoring unreadable checkpoint {path}: {exc}", flush=True)
    return None


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch (CPU and CUDA) generator states, as tensors and ints."""
    import numpy as np  # noqa: PLC0415
    import torch  # noqa: PLC0415

    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": [list(random.getstate()[1]), random.getstate()[0], random.getstate()[2]],
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    import numpy as np  # noqa: PLC0415
    import torch  # noqa: PLC0415

    internal, version, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
