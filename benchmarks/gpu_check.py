"""GPU check: the trainer on every visible NVIDIA GPU, as the training image runs it.

    python benchmarks/gpu_check.py                     # the installed package (needs the train extra)
    python benchmarks/gpu_check.py --image IMAGE       # inside the built image (docker --gpus all)

For each precision (AMP bf16, then fp16 with GradScaler, forced through
LAUNCHER_AMP_DTYPE=fp16) it runs `launcher.runtime.torchrun --standalone --nproc_per_node
<all GPUs> -m launcher.runtime.train` with batch=-1 (AutoBatch) on the built-in digits
data, and prints one row per run: the DDP backend the workers used (NCCL
expected), the batch AutoBatch chose, images/s per GPU, peak GPU memory, and the
final validation top-1. It exits 1 if a run fails or did not use what it was
asked to (the precision, NCCL, an AutoBatch batch), and 2 without a CUDA GPU.
Sized to finish in under 5 minutes on one node (2 epochs each, resnet50 at 96 px).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TRAIN = ["data=digits", "model=resnet50", "imgsz=96", "epochs=2", "batch=-1", "amp=true", "workers=4", "cache=ram"]


def gpus(image: str | None) -> int:
    probe = "import torch; print(torch.cuda.device_count())"
    cmd = _in_image(image, ["python", "-c", probe]) if image else [sys.executable, "-c", probe]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    return int(out.stdout.strip() or 0) if out.returncode == 0 else 0


def _in_image(image: str, cmd: list[str], env: dict[str, str] | None = None, mount: Path | None = None) -> list[str]:
    args = ["docker", "run", "--rm", "--gpus", "all", "--ipc", "host", "--entrypoint", cmd[0]]
    for key, value in (env or {}).items():
        args += ["-e", f"{key}={value}"]
    if mount:
        args += ["-v", f"{mount}:{mount}"]
    return [*args, image, *cmd[1:]]


def run(precision: str, n: int, image: str | None, out: Path) -> dict[str, object]:
    save = out / precision
    env = {"LAUNCHER_AMP_DTYPE": precision, "NCCL_DEBUG": "VERSION"}  # NCCL prints its version line when used
    cmd = ["python", "-m", "launcher.runtime.torchrun", "--standalone", "--nnodes", "1", "--nproc_per_node", str(n),
           "-m", "launcher.runtime.train", *TRAIN, f"save_dir={save}"]  # fmt: skip
    if image:
        cmd = _in_image(image, cmd, env, out)
    else:
        cmd[0] = sys.executable
    t0 = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **env}, check=False)
    log = done.stdout + done.stderr
    (out / f"{precision}.log").write_text(log)
    row: dict[str, object] = {
        "precision": precision,
        "gpus": n,
        "exit": done.returncode,
        "wall_s": round(time.monotonic() - t0, 1),
    }
    if done.returncode != 0:
        row["error"] = log.strip().splitlines()[-1] if log.strip() else "no output"
        return row
    summary = json.loads((save / "results.json").read_text())
    with open(save / "results.csv", newline="") as f:
        last = list(csv.DictReader(f))[-1]
    row.update(
        used=summary.get("precision"), batch=summary.get("batch"), top1=float(last["top1"]),
        img_s_per_gpu=round(float(last["images_per_s"]) / n, 1),
        peak_mem_gib=last.get("gpu_mem_gib") or _peak_from_log(log), backend="nccl" if re.search(r"\bnccl\b", log, re.I) else "?",
    )  # fmt: skip
    return row


def _peak_from_log(log: str) -> str:
    found = re.findall(r"gpu_mem_gib ([\d.]+)", log)
    return found[-1] if found else "?"


def check(row: dict[str, object]) -> list[str]:
    problems = []
    if row["exit"] != 0:
        problems.append(f"{row['precision']}: exit {row['exit']}: {row.get('error')}")
    elif row.get("used") != row["precision"]:
        problems.append(f"{row['precision']}: the trainer used {row.get('used')}")
    elif not isinstance(row.get("batch"), int) or int(row["batch"]) <= 0:  # type: ignore[call-overload]
        problems.append(f"{row['precision']}: AutoBatch chose no batch ({row.get('batch')})")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", help="run inside this image (docker --gpus all) instead of this Python")
    parser.add_argument("--out", type=Path, default=None, help="folder for logs and runs (default: a temp folder)")
    args = parser.parse_args()
    n = gpus(args.image)
    if n == 0:
        print("gpu_check: no CUDA GPU visible; nothing to check", file=sys.stderr)
        return 2
    out = args.out or Path(tempfile.mkdtemp(prefix="gpu-check-"))
    out.mkdir(parents=True, exist_ok=True)
    rows = [run(p, n, args.image, out) for p in ("bf16", "fp16")]
    keys = ["precision", "gpus", "backend", "batch", "img_s_per_gpu", "peak_mem_gib", "top1", "wall_s", "exit"]
    print(" ".join(f"{k:>13}" for k in keys))
    for row in rows:
        print(" ".join(f"{str(row.get(k, '-')):>13}" for k in keys))
    problems = [p for row in rows for p in check(row)]
    for problem in problems:
        print(f"gpu_check: {problem}", file=sys.stderr)
    print(f"gpu_check: logs in {out}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
