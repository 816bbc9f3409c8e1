"""The program's own helper module, imported from beside it (the code folder is the working folder)."""

import json
import os
from pathlib import Path

import torch


def save_state(folder, model, optimizer, step):
    """Write state.pt under a temporary name, then rename: a reader never sees half a file."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / "state.pt.tmp"
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step}, tmp)
    os.replace(tmp, folder / "state.pt")
    progress = folder / "results.json.tmp"  # {"step": N}: the launcher records it in the manifest
    progress.write_text(json.dumps({"step": step}))
    os.replace(progress, folder / "results.json")


def load_state(folder):
    path = Path(folder) / "state.pt"
    return torch.load(path, weights_only=True) if path.exists() else None
