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

A spec with `train.engine: ultralytics` is profiled the same way, through the
engine: three epochs of Ultralytics' own training on a `fraction` of the YOLO
dataset's images (its first round(n x fraction)), with the spec's model, imgsz
and batch (Ultralytics' batch: of all GPUs together), and mosaic on or off as in
most of the run's epochs. Its epoch time holds validation (the whole val split,
every epoch) and the checkpoint save, so the images/s is not taken from it: the
engine's epoch line reports the images/s of the training loop alone (timed from
Ultralytics' on_train_epoch_start to on_train_epoch_end), and what the epochs of
results.csv hold beyond that loop and modelled validation becomes the per-epoch
overhead, as above. The device is the one Ultralytics names in its banner
(every visible GPU: its own DDP); on a CPU the figure is fp32, since Ultralytics
turns AMP off there.

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

from launcher.contract import ENTRYPOINT, EntrypointArgs, ultralytics_epoch_seconds
from launcher.errors import LauncherError
from launcher.estimate.model import dataset_size
from launcher.estimate.record import device_of, per_process_images_per_s, read_results
from launcher.estimate.throughput import canonical_device, gpu_table, precision_of
from launcher.spec import JobSpec
from launcher.state.jobs import JobRegistry, Throughput

__all__ = [
    "profile",
    "trainer_available",
    "profile_with_trainer",
    "profile_synthetic",
    "PROFILE_EPOCHS",
    "PROFILE_STEPS",
]

PROFILE_EPOCHS = 3  # the first carries the warm-up; the others are the steady ones, averaged
# 20 steady steps (30 in all) left a 3 s window: quickstart estimates then missed by +38%, -22% and +6% on a shared
# machine; 40 (60 in all) missed by +8%, -4% and -1% for about 3 s more (benchmarks/bench_estimate.py)
PROFILE_STEPS = 60
Runner = Callable[[Sequence[str], dict[str, str], float], list[tuple[float, str]]]


def trainer_available() -> bool:
    return importlib.util.find_spec("launcher.runtime.train.__main__") is not None


def profile(
    spec: JobSpec,
    steps: int = PROFILE_STEPS,
    jobs: JobRegistry | None = None,
    synthetic: bool | None = None,
    run: Runner | None = None,
) -> Throughput:
    """Measure `spec` on this machine and record the figure in the job registry (`run` runs the trainer: tests)."""
    if steps < PROFILE_EPOCHS:
        raise LauncherError(
            f"--steps must be at least {PROFILE_EPOCHS} (one per profiled epoch).",
            "Pass --steps 60 or more for a stable figure.",
        )
    use_synthetic = _synthetic(spec, synthetic, run)
    record = profile_synthetic(spec, steps) if use_synthetic else profile_with_trainer(spec, steps, run)
    (jobs or JobRegistry()).add_throughput(record)
    return record


def _synthetic(spec: JobSpec, asked: bool | None, run: Runner | None) -> bool:
    """Whether to time the model alone: when asked, or without the trainer; never for the ultralytics engine."""
    if spec.train.engine != "ultralytics":
        return (not trainer_available()) if asked is None else asked
    if asked:
        raise LauncherError(f"--synthetic times a torchvision model alone, and {spec.train.model} is trained by the ultralytics engine.",
                            "Drop --synthetic: the profile runs the engine for a few real steps.")  # fmt: skip
    if run is None and importlib.util.find_spec("ultralytics") is None:
        raise LauncherError("Profiling the ultralytics engine runs it here, and Ultralytics is not installed.",
                            "pip install 'torch-launcher[ultralytics]'")  # fmt: skip
    return False


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
    proc = subprocess.Popen(
        list(cmd), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    reader = threading.Thread(target=_collect, args=(proc, start, lines), daemon=True)
    reader.start()
    while proc.poll() is None:
        now = time.monotonic() - start
        done = [t for t, text in list(lines) if "[train] done:" in text]
        if now > timeout or (done and now - done[0] > grace):
            os.killpg(proc.pid, signal.SIGKILL)  # our own child's session: entrypoint, torchrun, trainer, workers
            proc.wait()
            if not done:
                raise LauncherError(
                    f"The profiling run took longer than {timeout:.0f} s.", "Profile with fewer --steps."
                )
            return [*lines, (done[0], "")]
        time.sleep(0.2)
    reader.join(timeout=5)
    lines.append((time.monotonic() - start, ""))  # the exit: its time is the wall time
    if proc.returncode != 0:
        tail = [text for _, text in lines if text.strip()][-1:] or ["no output"]
        raise LauncherError(
            f"The profiling run failed (exit {proc.returncode}): {tail[0]}",
            "Run the job once with `launch JOB.yaml` to see the full error.",
        )
    return lines


def _collect(proc: subprocess.Popen, start: float, lines: list[tuple[float, str]]) -> None:  # type: ignore[type-arg]
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append((time.monotonic() - start, line.rstrip()))


def profile_with_trainer(spec: JobSpec, steps: int, run: Runner | None = None, timeout: float = 1800) -> Throughput:
    """Short epochs of the real trainer (or the ultralytics engine) under the container entrypoint, as `launch run`
    starts it locally."""
    data = dataset_size(spec)
    if data is None or data.train_images == 0:
        raise LauncherError(
            f"Cannot size a profile run: the size of {spec.train.data} is unknown.",
            "Profile with a local copy of the data.",
        )
    fraction = float(f"{min(1.0, (steps / PROFILE_EPOCHS) * _images_per_step(spec) / data.train_images):.6g}")
    with tempfile.TemporaryDirectory(prefix="launch-profile-") as tmp:
        save_dir = Path(tmp) / "save"
        cmd = _entrypoint_command(spec, fraction, save_dir)
        # the spec's env as `launch run` gives it (OMP_NUM_THREADS there sets the run's threads, so the profile's too)
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **spec.env, "LAUNCHER_SAVE_DIR": str(save_dir)}
        lines = (run or _run)(cmd, env, timeout)
        if spec.train.engine == "ultralytics":
            return _from_engine_output(
                spec, save_dir, lines, _fraction_images(data.train_images, fraction), data.val_images
            )
        return _from_trainer_output(spec, save_dir, lines)


def _images_per_step(spec: JobSpec) -> int:
    """Images of one step on all processes: the builtin trainer's batch is per GPU, Ultralytics' is all GPUs'."""
    batch = spec.train.batch_size if spec.train.batch_size > 0 else 32
    return batch if spec.train.engine == "ultralytics" else batch * max(spec.resources.gpus, 1)


def _fraction_images(images: int, fraction: float) -> int:
    """The training images Ultralytics keeps for `fraction` (ultralytics/data/base.py: the first round(n x f))."""
    return max(1, round(images * fraction))


def _entrypoint_command(spec: JobSpec, fraction: float, save_dir: Path) -> list[str]:
    override = {"epochs": str(PROFILE_EPOCHS), "fraction": f"{fraction:.6g}", "patience": "0", "save_period": "-1",
                **_engine_override(spec)}  # fmt: skip
    args = [a for a in spec.train.to_args() if a.split("=", 1)[0] not in override]
    args += [f"{k}={v}" for k, v in override.items()]
    uri = spec.checkpoint.uri
    # a local checkpoint store costs a copy per checkpoint: profile the same copy into a scratch store
    # (a cloud store is never written by a profile)
    store = str(save_dir.parent / "store") if uri and "://" not in uri else None
    contract = EntrypointArgs.for_spec(spec, gpus=spec.resources.gpus, checkpoint_uri=store, save_dir=str(save_dir))
    contract = dataclasses.replace(contract, run_name=f"profile-{spec.name}", command=("train", *args))
    return [sys.executable, *ENTRYPOINT[1:], *contract.to_argv()]


_ULTRALYTICS_CLOSE_MOSAIC = 10  # Ultralytics' default close_mosaic (its cfg/default.yaml)


def _engine_override(spec: JobSpec) -> dict[str, str]:
    """Ultralytics turns mosaic off for the last close_mosaic epochs, which would be all of a 3-epoch profile:
    the profile keeps the loading of the phase that most of the run's epochs are in."""
    if spec.train.engine != "ultralytics" or spec.train.yolo_task() == "classify":
        return {}
    close = spec.train.close_mosaic if spec.train.close_mosaic is not None else _ULTRALYTICS_CLOSE_MOSAIC
    return {"close_mosaic": "0" if close < spec.train.epochs / 2 else str(PROFILE_EPOCHS)}


def _from_trainer_output(spec: JobSpec, save_dir: Path, lines: list[tuple[float, str]]) -> Throughput:
    results = read_results(save_dir / "results.json")
    world = max(int(results.get("world_size") or 1), 1)
    rows = _epoch_rows(save_dir / "results.csv")
    ips = _steady_images_per_s(rows) / world if rows else per_process_images_per_s(results)
    if not ips:
        raise LauncherError("The profiling run reported no throughput.", "Check the trainer's results.json.")
    val_s = float(results.get("val_images") or 0) / world / (ips * gpu_table()["validation_speedup"])
    details: dict[str, Any] = {"method": "trainer", "fraction_images": results.get("train_images"),
                               **_overheads(lines[-1][0], _line_interval(lines), _steady_train_s(rows), val_s)}  # fmt: skip
    batch = int(results.get("batch") or spec.train.batch)
    return _record(spec, batch, precision_of(spec), device_of(results), results.get("device_name"), ips, lines, details)


def _record(spec: JobSpec, batch: int, precision: str, device: str, device_name: Any, ips: float,
            lines: list[tuple[float, str]], details: dict[str, Any]) -> Throughput:  # fmt: skip
    return Throughput(
        model=spec.train.model, imgsz=spec.train.image_size, batch=batch, precision=precision, device=device,
        images_per_s=ips, source="profile",
        details={**details, "wall_time_s": round(lines[-1][0], 3), "device_name": device_name},
    )  # fmt: skip


# ---------------------------------------------------------------- the ultralytics engine

# the engine's epoch line: "[train] epoch 2/3: train_loss ... time_s 9.10 images_per_s 41.20 mAP50(B) ..."
_ENGINE_LINE = re.compile(r"epoch (\d+)/\d+: train_loss .* images_per_s ([0-9.]+)")
# Ultralytics' device banner: "Ultralytics 8.4 ... torch-2.14.1 CUDA:0 (NVIDIA A10G, 22592MiB)" (a line per GPU) or "CPU (...)"
_ENGINE_GPU = re.compile(r"CUDA:(\d+) \(([^,)]+)")


def _from_engine_output(
    spec: JobSpec, save_dir: Path, lines: list[tuple[float, str]], images: int, val_images: int
) -> Throughput:
    """The steady epochs' images/s from the engine's epoch lines (the training loops alone); the epochs' full
    seconds, validation and checkpoint included, from Ultralytics' results.csv, for the overheads."""
    rates = {int(m[1]): float(m[2]) for _, text in lines if (m := _ENGINE_LINE.search(text))}
    if not rates or min(rates.values()) <= 0:
        raise LauncherError("The profiling run printed no [train] epoch line with images_per_s.",
                            "Run the job once with `launch JOB.yaml` and check its epoch lines.")  # fmt: skip
    rows = [{"time_s": images / rate, "images_per_s": rate} for _, rate in sorted(rates.items())]
    gpus = {
        int(m[1]): m[2].strip() for _, text in lines if (m := _ENGINE_GPU.search(text))
    }  # Ultralytics' own DDP: all
    world = max(len(gpus), 1)
    ips = _steady_images_per_s(rows) / world
    val_s = val_images / world / (ips * gpu_table()["validation_speedup"])
    epoch_s = _steady_mean(ultralytics_epoch_seconds(_epoch_rows(save_dir / "results.csv")))
    details = {"method": "ultralytics", "fraction_images": images, "gpus": world,
               **_overheads(lines[-1][0], epoch_s, _steady_train_s(rows), val_s)}  # fmt: skip
    name = gpus.get(min(gpus)) if gpus else "cpu"
    # Ultralytics trains in fp32 on a CPU whatever `amp` says (its trainer turns AMP off there)
    device = canonical_device(name)
    precision = "fp32" if device == "cpu" else precision_of(spec)
    return _record(spec, spec.train.batch_size, precision, device, name, ips, lines, details)


# ---------------------------------------------------------------- shared


def _line_interval(lines: list[tuple[float, str]]) -> float | None:
    """The mean seconds between the trainer's epoch lines: one steady epoch, checkpoint and validation included."""
    marks = [t for t, text in lines if _EPOCH_LINE.search(text)]
    return (marks[-1] - marks[0]) / (len(marks) - 1) if len(marks) >= 2 else None


def _steady_mean(values: list[float]) -> float | None:
    steady = values[1:]
    return sum(steady) / len(steady) if steady else None


def _steady_train_s(rows: list[dict[str, float]]) -> float | None:
    """The mean training seconds of the epochs after the first (None without them)."""
    if any("time_s" not in row for row in rows[1:]):
        return None
    return _steady_mean([float(row.get("time_s", 0.0)) for row in rows])


def _overheads(wall_s: float, epoch_s: float | None, train_s: float | None, val_s: float) -> dict[str, float]:
    """Per-run and per-epoch costs beyond the modelled image work.

    `epoch_s` is one steady epoch: its training, validation and checkpoint save. What it holds beyond
    training (`train_s`) and modelled validation (`val_s`) is the per-epoch overhead; the wall time minus
    PROFILE_EPOCHS such epochs is the per-run overhead (start-up, setup, the first epoch's warm-up, and what
    follows the last epoch: Ultralytics validates best.pt once more).
    """
    if epoch_s is None or train_s is None:
        return {}
    return {
        "epoch_overhead_s": round(epoch_s - train_s - val_s, 3),
        "overhead_s": round(max(0.0, wall_s - PROFILE_EPOCHS * epoch_s), 3),
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
    import csv  # noqa: PLC0415

    with path.open(newline="", encoding="utf-8") as f:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(f)]


# ---------------------------------------------------------------- synthetic fallback


def profile_synthetic(spec: JobSpec, steps: int, warmup: int = 3) -> Throughput:
    """Time `steps` training steps of the model alone on random tensors of the spec's shape."""
    from launcher.lazy import require  # noqa: PLC0415

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
    from launcher.runtime.cpu import cpu_threads, usable_cpus  # noqa: PLC0415

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
