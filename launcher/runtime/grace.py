"""Will the final checkpoint leave the machine inside the platform's preemption grace window?

Between SIGTERM and the kill a platform gives a job a fixed time: SageMaker
120 s (stop, managed spot), Vertex AI / GCE spot 30 s, Azure spot eviction
30 s, Slurm its KillWait (30 s by default). The final checkpoint must be in the store by then. The entrypoint
remembers the bandwidth of its uploads in the run folder of the store
(`<uri>/<run>/upload-rate.json`, beside the manifest), so the next job of
the run, on any machine, says at start when the checkpoint it resumes from
would likely not fit (benchmarks/bench_preemption.py measures SIGTERM ->
manifest in the store).
"""

from __future__ import annotations

import json
from pathlib import Path

from launcher.storage.base import Store
from launcher.storage.manifest import RATE_FILE

__all__ = ["GRACE_S", "RATE_FILE", "remember_rate", "remembered_rate", "checkpoint_bytes", "fit_warning"]

GRACE_S = {
    "sagemaker": 120,
    "vertex": 30,
    "azureml": 30,
    "slurm": 30,
}  # SIGTERM -> SIGKILL, seconds (Slurm: KillWait's default)
MIN_SAMPLE = 8 << 20  # smaller uploads time the requests' latency, not the bandwidth


def remember_rate(store: Store, bytes_sent: int, seconds: float) -> None:
    """Keep the bandwidth of an upload big enough to measure it in the run folder `store`
    (best effort: a store that refuses the write keeps nothing, and the job goes on)."""
    if bytes_sent < MIN_SAMPLE or seconds <= 0:
        return
    try:
        store.put_bytes(RATE_FILE, json.dumps({"bytes": bytes_sent, "seconds": round(seconds, 3)}).encode())
    except Exception:  # noqa: BLE001 - a figure for a warning is never worth failing the job
        pass


def remembered_rate(store: Store) -> float | None:
    """Bytes per second of the run's last measured upload, or None."""
    try:
        data = json.loads(store.get_bytes(RATE_FILE) or b"null")
        rate = float(data["bytes"]) / float(data["seconds"])
    except Exception:  # noqa: BLE001 - unreadable, damaged or absent: no figure
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
    return (
        f"WARNING: the final checkpoint ({size / 1e6:.0f} MB) needs about {need:.0f} s to upload at the "
        f"{rate / 1e6:.1f} MB/s measured before, more than the {grace} s {platform} gives between SIGTERM and "
        "the kill: a preemption would keep only the previous checkpoint (save less often, or a smaller model state)"
    )
