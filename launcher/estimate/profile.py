"""`launch profile`: measure this machine's training speed for a job, then remember it.

With the project's trainer installed (`launcher.runtime.train`), the profile runs the
real trainer under the container entrypoint (torchrun), as `launch run` starts
it on this machine, for three short epochs (a class-stratified
`fraction` of the data sized to about N steps in all) with the spec's model, batch,
image size and AMP, so that data loading, augmentation and the optimizer are
all in the figure. From the trainer's results.json and results.csv it keeps:

- images/s of the steady epochs (all but the first, together: one short
  epoch alone swung the figure by 15% on a shared machine),
- the per-epoch overhead beyond the images (loader start, validation setup,
  checkpoint save),
- the per-run overhead (process start, imports, data and model setup, first
  epoch warm-up), which becomes the local row's start-up time.

Without the trainer it times N optimizer steps of the torchvision model on
synthetic tensors of the right shape, which measures the model alone.
Either way the result goes to the job registry with source "profile".
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from launcher.contract import ENTRYPOINT, EntrypointArgs
from launcher.errors import LauncherError
from launcher.estimate.throughput import canonical_device, gpu_table, precision_of
from launcher.jobs import JobRegistry, Throughput
from launcher.spec import JobSpec

__all__ = ["profile", "trainer_available", "profile_with_trainer", "profile_synthetic", "PROFILE_EPOCHS", "PROFILE_STEPS"]

PROFILE_EPOCHS = 3  # the first carries the warm-up; the others are the steady ones, averaged
# 20 steady steps (30 in all) left a 3 s window: quickstart estimates then missed by +38%, -22% and +6% on a shared
# machine; 40 (60 in all) missed by +8%, -4% and -1% for about 3 s more (benchmarks/bench_estimate.py)
PROFILE_STEPS = 60
Runner = Callable[[Sequence[str], dict[str, str], float], list[tuple[float, str]]]


def trainer_available() -> bool:
    return importlib.util.find_spec("launcher.runtime.train.__main__") is not None


def profile(
    spec: JobSpec, steps: int = PROFILE_STEPS, jobs: JobRegistry | None = None, synthetic: bool | None = None, run: Runner | None = None
) -> Throughput:
    """Measure `spec` on this machine and record the figure in the job registry (`run` runs the trainer: tests)."""
    if steps < PROFILE_EPOCHS:
        raise LauncherError(f"--steps must be at least {PROFILE_EPOCHS} (one per profiled epoch).", "Pass --steps 60 or more for a stable figure.")
    use_synthetic = (not trainer_available()) if synthetic is None else synthetic
    record = profile_synthetic(spec, steps) if use_synthetic else profile_with_trainer(spec, steps, run)
    (jobs or JobRegistry()).add_throughput(record)
    return record


# ---------------------------------------------------------------- the real trainer

# the trainer's end-of-epoch line: "[train] epoch 2/2: train_loss ..."
_EPOCH_LINE = re.compile(r"epoch (\d+)/(\d+): train_loss")


def _run(cmd: Sequence[str], env: dict[str, str], timeout: float, grace: float = 60.0) -> list[tuple[float, str]]:
    """Run `cmd`, returning each output line with the seconds since start at which it arrived.

    The last entry marks the exit. A run that printed the trainer's final
    "[train] done" line but has not exited `grace` seconds later is stuck at
    interpreter exit (DataLoader workers that ignore SIGTERM): its process
    group is killed and the done line's time stands for the exit.
    """
    start = time.monotonic()
    lines: list[tuple[float, str]] = []
    proc = subprocess.Popen(list(cmd), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    reader = threading.Thread(target=_collect, args=(proc, start, lines), daemon=True)
    reader.start()
    while proc.poll() is None:
        now = time.monotonic() - start
        done = [t for t, text in list(lines) if "[train] done:" in text]
        if now > timeout or (done and now - done[0] > grace):
            os.killpg(proc.pid, signal.SIGKILL)  # our own child's session: entrypoint, torchrun, trainer, workers
            proc.wait()
            if not done:
                raise LauncherError(f"The profiling run took longer than {timeout:.0f} s.", "Profile with fewer --steps.")
            return [*lines, (done[0], "")]
        time.sleep(0.2)
    reader.join(timeout=5)
    lines.append((time.monotonic() - start, ""))  # the exit: its time is the wall time
    if proc.returncode != 0:
        tail = [text for _, text in lines if text.strip()][-1:] or ["no output"]
        raise LauncherError(
            f"The profiling run failed (exit {proc.returncode}): {tail[0]}", "Run the job once with `launch JOB.yaml` to see the full error."
        )
    return lines


def _collect(proc: subprocess.Popen, start: float, lines: list[tuple[float, str]]) -> None:  # type: ignore[type-arg]
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append((time.monotonic() - start, line.rstrip()))


def profile_with_trainer(spec: JobSpec, steps: int, run: Runner | None = None, timeout: float = 1800) -> Throughput:
    """Short epochs of the real trainer under the container entrypoint, as `launch run` starts it locally."""
    from launcher.estimate.model import dataset_size

    data = dataset_size(spec)
    if data is None or data.train_images == 0:
        raise LauncherError(f"Cannot size a profile run: the size of {spec.train.data} is unknown.", "Profile with a local copy of the data.")
    batch = spec.train.batch if spec.train.batch > 0 else 32
    processes = max(spec.resources.gpus, 1)
    fraction = min(1.0, (steps / PROFILE_EPOCHS) * batch * processes / data.train_images)
    with tempfile.TemporaryDirectory(prefix="launch-profile-") as tmp:
        save_dir = Path(tmp) / "save"
        cmd = _entrypoint_command(spec, fraction, save_dir)
        # the spec's env as `launch run` gives it (OMP_NUM_THREADS there sets the run's threads, so the profile's too)
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **spec.env, "LAUNCHER_SAVE_DIR": str(save_dir)}
        lines = (run or _run)(cmd, env, timeout)
        return _from_trainer_output(spec, save_dir, lines)


def _entrypoint_command(spec: JobSpec, fraction: float, save_dir: Path) -> list[str]:
    override = {"epochs": str(PROFILE_EPOCHS), "fraction": f"{fraction:.6g}", "patience": "0", "save_period": "-1"}
    args = [a for a in spec.train.to_args() if a.split("=", 1)[0] not in override]
    args += [f"{k}={v}" for k, v in override.items()]
    uri = spec.checkpoint.uri
    # a local checkpoint store costs a copy per checkpoint: profile the same copy into a scratch store
    # (a cloud store is never written by a profile)
    store = str(save_dir.parent / "store") if uri and "://" not in uri else None
    contract = EntrypointArgs.for_spec(spec, gpus=spec.resources.gpus, checkpoint_uri=store, save_dir=str(save_dir))
    contract = dataclasses.replace(contract, run_name=f"profile-{spec.name}", command=("train", *args))
    return [sys.executable, *ENTRYPOINT[1:], *contract.to_argv()]


def _from_trainer_output(spec: JobSpec, save_dir: Path, lines: list[tuple[float, str]]) -> Throughput:
    from launcher.estimate.record import device_of, per_process_images_per_s, read_results

    results = read_results(save_dir / "results.json")
    world = max(int(results.get("world_size") or 1), 1)
    rows = _epoch_rows(save_dir / "results.csv")
    ips = _steady_images_per_s(rows) / world if rows else per_process_images_per_s(results)
    if not ips:
        raise LauncherError("The profiling run reported no throughput.", "Check the trainer's results.json.")
    details: dict[str, Any] = {"method": "trainer", "wall_time_s": round(lines[-1][0], 3), "fraction_images": results.get("train_images")}
    details.update(_overheads(lines, rows, results, ips))
    return Throughput(
        model=spec.train.model, imgsz=spec.train.imgsz, batch=int(results.get("batch") or spec.train.batch),
        precision=precision_of(spec), device=device_of(results), images_per_s=ips, source="profile",
        details={**details, "device_name": results.get("device_name")},
    )  # fmt: skip


def _overheads(lines: list[tuple[float, str]], rows: list[dict[str, float]], results: dict[str, Any], ips: float) -> dict[str, float]:
    """Per-run and per-epoch costs beyond the modelled image work, from when the epoch lines arrived.

    The interval between two epoch lines is one steady epoch: its checkpoint
    save, training and validation. What the steady intervals hold on average
    beyond training (the CSV's time_s) and modelled validation is the
    per-epoch overhead; the wall time minus PROFILE_EPOCHS such intervals is
    the per-run overhead.
    """
    marks = [t for t, text in lines if _EPOCH_LINE.search(text)]
    steady = rows[1:]
    if len(marks) < 2 or not steady or any("time_s" not in row for row in steady):
        return {}
    interval = (marks[-1] - marks[0]) / (len(marks) - 1)
    train_s = sum(float(row["time_s"]) for row in steady) / len(steady)
    world = max(int(results.get("world_size") or 1), 1)
    val = float(results.get("val_images") or 0) / world / (ips * gpu_table()["validation_speedup"])
    return {
        "epoch_overhead_s": round(interval - train_s - val, 3),
        "overhead_s": round(max(0.0, lines[-1][0] - PROFILE_EPOCHS * interval), 3),
    }


def _steady_images_per_s(rows: list[dict[str, float]]) -> float:
    """Images over seconds of the epochs after the first (the only one, if it is all there is)."""
    steady = rows[1:] or rows
    seconds = [float(row.get("time_s", 0.0)) for row in steady]
    if sum(seconds) <= 0:
        return float(steady[-1]["images_per_s"])
    return sum(float(row["images_per_s"]) * s for row, s in zip(steady, seconds)) / sum(seconds)


def _epoch_rows(path: Path) -> list[dict[str, float]]:
    if not path.exists():
        return []
    import csv

    with path.open(newline="", encoding="utf-8") as f:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(f)]


# ---------------------------------------------------------------- synthetic fallback


def profile_synthetic(spec: JobSpec, steps: int, warmup: int = 3) -> Throughput:
    """Time `steps` training steps of the model alone on random tensors of the spec's shape."""
    from launcher.lazy import require

    torch = require("torch", "train")
    models = require("torchvision.models", "train")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    threads = _cpu_threads(torch) if device.type == "cpu" else None
    batch = spec.train.batch if spec.train.batch > 0 else 32
    model = models.get_model(spec.train.model, num_classes=10).to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, 3, spec.train.imgsz, spec.train.imgsz, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    dtype = torch.bfloat16 if device.type == "cpu" or torch.cuda.is_bf16_supported() else torch.float16
    step = _step_fn(torch, model, opt, x, y, device, dtype, spec.train.amp)
    for _ in range(warmup):
        step()
    _sync(torch, device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(torch, device)
    ips = steps * batch / (time.perf_counter() - start)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return Throughput(
        model=spec.train.model, imgsz=spec.train.imgsz, batch=batch, precision=precision_of(spec),
        device=canonical_device(name), images_per_s=ips, source="profile",
        details={"method": "synthetic", "steps": steps, "device_name": name, "threads": threads},
    )  # fmt: skip


def _cpu_threads(torch) -> int:  # type: ignore[no-untyped-def]
    """The run's own thread policy (a trainer profile gets it inside the trainer)."""
    from launcher.runtime.cpu import cpu_threads, usable_cpus

    threads = cpu_threads(os.environ, usable_cpus(), 1)
    torch.set_num_threads(threads)
    return threads


def _step_fn(torch, model, opt, x, y, device, dtype, amp: bool):  # type: ignore[no-untyped-def]
    loss_fn = torch.nn.CrossEntropyLoss()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype, enabled=amp):
            loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()

    return step


def _sync(torch, device) -> None:  # type: ignore[no-untyped-def]
    if device.type == "cuda":
        torch.cuda.synchronize(device)
