"""Will the final checkpoint leave the machine inside the platform's preemption grace window?

Between SIGTERM and the kill a platform gives a job a fixed time: SageMaker
120 s (stop, managed spot), Vertex AI / GCE spot 30 s, Azure spot eviction
30 s. The final checkpoint must be in the store by then. The entrypoint
remembers the bandwidth of its uploads in the sync's scratch folder and, at
start, says when the checkpoint it resumes from would likely not fit
(benchmarks/bench_preemption.py measures SIGTERM -> manifest in the store).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["GRACE_S", "RATE_FILE", "remember_rate", "remembered_rate", "checkpoint_bytes", "fit_warning"]

GRACE_S = {"sagemaker": 120, "vertex": 30, "azureml": 30}  # SIGTERM -> SIGKILL, seconds
RATE_FILE = "upload-rate.json"
MIN_SAMPLE = 8 << 20  # smaller uploads time the requests' latency, not the bandwidth


def remember_rate(scratch: Path, bytes_sent: int, seconds: float) -> None:
    """Keep the bandwidth of an upload big enough to measure it (best effort: a read-only folder keeps nothing)."""
    if bytes_sent < MIN_SAMPLE or seconds <= 0:
        return
    try:
        tmp = scratch / f"{RATE_FILE}.tmp"
        tmp.write_text(json.dumps({"bytes": bytes_sent, "seconds": round(seconds, 3)}))
        os.replace(tmp, scratch / RATE_FILE)
    except OSError:
        pass


def remembered_rate(scratch: Path) -> float | None:
    """Bytes per second of the last measured upload, or None."""
    try:
        data = json.loads((scratch / RATE_FILE).read_text())
        rate = float(data["bytes"]) / float(data["seconds"])
    except (OSError, ValueError, KeyError, TypeError, ZeroDivisionError):
        return None
    return rate if rate > 0 else None


def checkpoint_bytes(save_dir: Path) -> int:
    """What a final flush sends at most: the checkpoint files (*.pt) the trainer rewrites."""
    try:
        return sum(p.stat().st_size for p in save_dir.glob("*.pt") if p.is_file())
    except OSError:
        return 0


def fit_warning(platform: str, size: int, rate: float | None) -> str | None:
    """One line when `size` bytes at `rate` bytes/s will likely not fit in `platform`'s grace window."""
    grace = GRACE_S.get(platform)
    if grace is None or not rate or size <= 0:
        return None
    need = size / rate
    if need <= grace:
        return None
    return (f"WARNING: the final checkpoint ({size / 1e6:.0f} MB) needs about {need:.0f} s to upload at the "
            f"{rate / 1e6:.1f} MB/s measured before, more than the {grace} s {platform} gives between SIGTERM and "
            "the kill: a preemption would keep only the previous checkpoint (save less often, or a smaller model state)")
