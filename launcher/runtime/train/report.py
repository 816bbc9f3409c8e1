"""What people look at: a progress bar, results.csv, results.png, a summary line.

Only rank 0 calls anything here. The progress bar redraws one line on a
terminal; in logs (cloud consoles, `launch logs`) it prints a line every
tenth of the epoch instead of thousands of carriage returns.
"""

from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

__all__ = ["StepProgress", "COLUMNS", "append_row", "read_rows", "truncate_rows", "plot", "write_json"]

COLUMNS = ["epoch", "train_loss", "val_loss", "top1", "top5", "lr", "time_s", "images_per_s"]


class StepProgress:
    def __init__(self, epoch: int, epochs: int, steps: int, stream: TextIO | None = None) -> None:
        self.epoch, self.epochs, self.steps = epoch, epochs, steps
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty()
        self.every = max(1, steps // 10)
        self.last_draw = 0.0

    def update(self, step: int, loss: float, lr: float, images_per_s: float) -> None:
        done = step + 1
        line = (
            f"epoch {self.epoch + 1}/{self.epochs} {_bar(done, self.steps)} {done}/{self.steps} "
            f"loss {loss:.4f} lr {lr:.3g} {images_per_s:.0f} img/s"
        )
        if self.tty:
            now = time.monotonic()
            if now - self.last_draw > 0.1 or done == self.steps:
                self.stream.write("\r" + line + (" " * 4))
                self.last_draw = now
            if done == self.steps:
                self.stream.write("\n")
        elif done % self.every == 0 or done == self.steps:  # a log file: a plain line a tenth of an epoch, no bar
            self.stream.write(
                f"epoch {self.epoch + 1}/{self.epochs} step {done}/{self.steps} loss {loss:.4f} "
                f"lr {lr:.3g} {images_per_s:.0f} img/s\n"
            )
        self.stream.flush()


def _bar(done: int, total: int, width: int = 20) -> str:
    fill = int(width * done / max(total, 1))
    return "[" + "#" * fill + "." * (width - fill) + "]"


def append_row(path: Path, row: dict[str, Any]) -> None:
    new = not path.exists()
    with path.open("a", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        if new:
            writer.writeheader()
        writer.writerow({k: row[k] for k in COLUMNS})


def read_rows(path: Path) -> list[dict[str, float]]:
    if not path.exists():
        return []
    with path.open(newline="", encoding="utf-8") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def truncate_rows(path: Path, epochs: int) -> None:
    """Drop rows after `epochs` (a resumed run redoes the epochs after its checkpoint)."""
    rows = [r for r in read_rows(path) if r["epoch"] <= epochs]
    path.unlink(missing_ok=True)
    for r in rows:
        append_row(path, {**r, "epoch": int(r["epoch"])})


def plot(csv_path: Path, png_path: Path) -> None:
    """Loss, top-1/top-5 and learning-rate curves per epoch."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")  # no display in containers
    import matplotlib.pyplot as plt  # noqa: PLC0415

    rows = read_rows(csv_path)
    if not rows:
        return
    x = [r["epoch"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.5), tight_layout=True)
    for key in ("train_loss", "val_loss"):
        axes[0].plot(x, [r[key] for r in rows], marker=".", label=key)
    for key in ("top1", "top5"):
        axes[1].plot(x, [r[key] for r in rows], marker=".", label=key)
    axes[2].plot(x, [r["lr"] for r in rows], marker=".", label="lr")
    for ax, title in zip(axes, ("loss", "accuracy", "learning rate")):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.legend()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)


def write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
