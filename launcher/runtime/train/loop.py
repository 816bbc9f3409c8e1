"""The training loop: AMP, DDP, EMA validation, checkpoints, exact resume.

One `Trainer` per process. Rank 0 alone prints and writes files. The state
needed to continue a run bit-for-bit (weights, EMA, optimizer, scaler, step,
early-stopping counters, RNG states, the position inside the epoch) goes into
every `last.pt`; the schedule and the augmentation randomness are pure
functions of (seed, epoch, step), so nothing else has to be saved.

SIGTERM (spot preemption, `launch stop`) sets a flag; at the next step all
ranks agree to stop, rank 0 writes `last.pt` at the current step and the
process exits with 143 (128 + SIGTERM). A resumed run skips the batches that
were already done and continues as if it had never stopped.
"""

from __future__ import annotations

import hashlib
import math
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from launcher import contract
from launcher.errors import LauncherError
from launcher.runtime import datasets
from launcher.runtime.cpu import cpu_threads, explicit_threads, loader_workers, usable_cpus
from launcher.runtime.train import autobatch, checkpoint, data, report
from launcher.runtime.train import metrics as sinks
from launcher.runtime.train.dist import Dist
from launcher.runtime.train.model import build_model
from launcher.runtime.train.optim import ModelEMA, Schedule, build_optimizer, resolve_auto
from launcher.spec.train import TrainConfig

__all__ = ["Trainer", "pick_precision", "cpu_threads", "SIGTERM_EXIT", "batch_seed"]

SIGTERM_EXIT = 128 + signal.SIGTERM
SHARED_RAM = Path("/dev/shm")  # tmpfs: files here are memory, mapped by every process that opens them
OOM_RETRY_STEPS = 10  # AutoBatch: an out-of-memory error within this many steps halves the batch


def pick_precision(amp: bool, device_type: str, bf16_ok: bool) -> str:
    """bf16 where the device does it natively, else fp16 (+GradScaler) on CUDA; fp32 otherwise."""
    if not amp:
        return "fp32"
    if bf16_ok:
        return "bf16"
    return "fp16" if device_type == "cuda" else "fp32"


def _bf16_supported(device) -> bool:  # type: ignore[no-untyped-def]
    import torch  # noqa: PLC0415

    # LAUNCHER_AMP_DTYPE=fp16 picks fp16 + GradScaler on a bf16-capable GPU (benchmarks/gpu_check.py checks both)
    if os.environ.get("LAUNCHER_AMP_DTYPE") == "fp16":
        return False
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    # only native bf16 (AVX512-BF16 or AMX): oneDNN's emulation on plain AVX512 is slower than
    # fp32 (measured on this project's AVX512 build machine: about 1.5x slower for resnet18)
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


# On CPU the EMA's pass over every weight costs about 5% of a resnet18 step (benchmarks/bench_trainer.py),
# so it folds the weights in every 4th step (and at each epoch's end); on CUDA it is noise: every step.
EMA_EVERY_CPU = 4


def batch_seed(seed: int, epoch: int, batch: int, rank: int) -> int:
    """The seed of one batch's augmentation: the same whether or not the run was resumed."""
    return ((seed * 10_007 + epoch) * 1_000_003 + batch) * 1_031 + rank


def _ignore_sigterm(_worker_id: int) -> None:
    # torchrun signals the whole process group; the rank saves and then ends its workers itself
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


class Trainer:
    def __init__(
        self, cfg: TrainConfig, save_dir: Path, dist: Dist, spec_hash: str = "", out: TextIO | None = None
    ) -> None:
        import torch  # noqa: PLC0415

        self.cfg, self.save_dir, self.dist, self.spec_hash = cfg, save_dir, dist, spec_hash
        self.out = out or sys.stdout
        self.device = dist.device or torch.device("cpu")
        self.stop_requested = False
        self.started = time.monotonic()
        self.totals = {"train_time": 0.0, "images": 0.0}
        self.best_fitness, self.best_epoch, self.bad_epochs, self.stopped_early = -1.0, -1, 0, False
        self.epoch, self.step_in_epoch, self.global_step = 0, 0, 0
        self.packed = None  # a packed dataset (launcher.runtime.train.stream) instead of a folder
        self.shared_ram: Path | None = None  # cache=ram shared by the node's processes: its folder in /dev/shm
        self.epoch_acc = {"loss_sum": 0.0, "steps": 0.0, "time": 0.0, "images": 0.0}
        self.reporters = sinks.Reporters([], self.log)

    # ------------------------------------------------------------ helpers

    def log(self, message: str) -> None:
        if self.dist.main:
            print(f"[train] {message}", file=self.out, flush=True)

    def request_stop(self, *_args: Any) -> None:
        self.stop_requested = True

    # ------------------------------------------------------------ setup

    def setup(self) -> dict[str, Any] | None:
        """Data, model, optimizer; returns the checkpoint to resume from, if any."""
        import torch  # noqa: PLC0415

        torch.manual_seed(self.cfg.seed)
        if self.device.type == "cpu":
            # tiny optimizer statistics (Adam's second moments) turn denormal late in training, and
            # x86 arithmetic on denormals is ~100x slower: flush them to zero as GPUs do
            torch.set_flush_denormal(True)
        self._data()
        resumed = checkpoint.find_resume(self.save_dir)
        state = resumed[1] if resumed else None
        if state is not None:
            self._check_compatible(state, resumed[0])
        self.precision = pick_precision(self.cfg.amp, self.device.type, _bf16_supported(self.device))
        self._model()
        self.batch = self._choose_batch(state)
        self._loaders()
        self._optimizer()
        if state is not None:
            self._restore(state)
        if state is not None and not self.already_finished(state):  # a finished run says only that, in fit()
            sha = hashlib.sha256(
                resumed[0].read_bytes()
            ).hexdigest()  # names exactly what was loaded (proof of a resume)
            self.log(f"resuming from {resumed[0].name} (sha256 {sha}): epoch {self.epoch + 1}, "
                     f"step {self.step_in_epoch} of {self.steps_per_epoch}")  # fmt: skip
        return state

    def _cpu_threads(self, cpus: int) -> int:
        import torch  # noqa: PLC0415

        threads = cpu_threads(os.environ, cpus, self.dist.local_world)  # the same rule as `launch profile`
        if threads != torch.get_num_threads():
            torch.set_num_threads(threads)
        return threads

    def _data(self) -> None:
        from launcher.runtime.train import stream  # noqa: PLC0415

        self.packed = stream.open_packed(self.cfg.data)
        if self.packed is not None:
            self._packed_data(self.packed)
            return
        root = datasets.resolve(self.cfg.data)
        full = data.scan(root / "train")
        if not full.samples:
            raise LauncherError(f"{root / 'train'} holds no images.", "Put images in <root>/train/<class>/.")
        self.train_split = data.stratified_subset(full, self.cfg.fraction, self.cfg.seed)
        self.val_split = data.scan(root / "val", full.classes)
        self.classes = full.classes
        self.size = data.cache_size(self.cfg.imgsz, self.cfg.multi_scale)
        cache = self._cache_mode(len(self.train_split.samples) + len(self.val_split.samples))
        mode, where = self._cache_place(cache)
        self.train_set = data.ImageSet(self.train_split, self.size, mode, where)
        self.val_set = data.ImageSet(self.val_split, self.size, mode, where)
        t0 = time.monotonic()
        self._prepare_caches(cache)
        if cache:
            self.log(
                f"cache={cache}: {len(self.train_set) + len(self.val_set)} images at {self.size}px in {time.monotonic() - t0:.1f}s"
            )

    def _packed_data(self, packed) -> None:  # type: ignore[no-untyped-def]
        """A packed dataset (index.json + shards): read from a node-local shard cache, fetched as training goes."""
        from launcher.runtime.train import stream  # noqa: PLC0415

        index = packed.index
        if index.layout != "imagefolder" or not index.samples("train") or "val" not in index.splits:
            raise LauncherError(f"train.data {packed.uri} is a packed {index.layout} dataset "
                                f"with splits {', '.join(index.splits)}; the built-in trainer needs an ImageFolder with train and val.",
                                "Pack an ImageFolder (train/, val/), or train a YOLO pack with engine: ultralytics.")  # fmt: skip
        folder = stream.cache_folder(packed.uri)
        self.shard_cache = stream.ShardCache(packed.store, index, folder, stream.cache_limit(folder, index))
        self.packed_train = stream.PackedSplit(index, "train", self.cfg.fraction)
        self.packed_val = stream.PackedSplit(index, "val")
        if self.dist.rank == 0 and self.shard_cache.in_place is None:  # `launch status` shows how far streaming got
            used = [s.name for s in (*self.packed_train.shards, *self.packed_val.shards)]
            self.shard_cache.progress = stream.DataProgress(
                stream.progress_file(self.save_dir), self.shard_cache, used, packed.uri
            )
        self.classes = list(index.classes)
        self.size = data.cache_size(self.cfg.imgsz, self.cfg.multi_scale)
        self.train_split, self.val_split = self.packed_train.split(), self.packed_val.split()
        cache = self._cache_mode(len(self.packed_train) + len(self.packed_val))
        mode, where = self._cache_place(cache)
        self.train_set = stream.PackedSet(self.packed_train, self.size, mode, self.shard_cache, where)
        self.val_set = stream.PackedSet(self.packed_val, self.size, mode, self.shard_cache, where)
        how = ("read in place" if self.shard_cache.in_place is not None
                 else f"streamed into {folder} (limit {self.shard_cache.limit / 1e9:.1f} GB)")  # fmt: skip
        self.log(f"packed dataset {packed.uri}: {len(self.packed_train.shards)} of {len(index.splits['train'])} "
                 f"train shards ({len(self.packed_train)} samples), {how}")  # fmt: skip
        t0 = time.monotonic()
        self._prepare_caches(cache)
        if cache:
            self.log(
                f"cache={cache}: {len(self.train_set) + len(self.val_set)} images at {self.size}px in {time.monotonic() - t0:.1f}s"
            )

    def _shared_ram(self) -> Path | None:
        """Where several processes on one node keep ONE copy of a `cache: ram` (shared memory), else None."""
        if self.dist.local_world < 2 or not SHARED_RAM.is_dir() or not os.access(SHARED_RAM, os.W_OK):
            return None
        return SHARED_RAM / f"launcher-cache-{os.getuid()}"

    def _cache_mode(self, n_images: int) -> str | bool:
        cache = self.cfg.cache
        copies = 1 if self._shared_ram() is not None else self.dist.local_world
        if cache == "ram" and not data.ram_fits(n_images, self.size, copies, data.available_memory()):
            gib = n_images * self.size**2 * 3 * copies / (1 << 30)
            self.log(
                f"WARNING: cache=ram needs {gib:.1f} GiB ({copies} cop{'y' if copies == 1 else 'ies'}), more than memory allows; not caching"
            )
            return False
        return cache

    def _cache_place(self, cache: str | bool) -> tuple[str | bool, Path | None]:
        """cache=ram with several processes on the node: the disk cache's one array file, in shared memory
        (/dev/shm), written by local rank 0 and mapped by every rank: one decoded copy per node, not one per rank."""
        shared = self._shared_ram() if cache == "ram" else None
        if shared is None:
            return cache, None
        self.shared_ram = shared
        self.log(f"cache=ram: one copy for the node's {self.dist.local_world} processes in {shared}")
        return "disk", shared

    def _prepare_caches(self, cache: str | bool) -> None:
        cache = self.train_set.cache  # cache=ram shared by the node's processes is the disk cache in shared memory
        threads = max(1, min(8, self.cfg.workers or 1))
        if cache == "disk" and self.dist.local_rank != 0:
            self.dist.barrier()  # local rank 0 writes the arrays; the others then only read them
        self.train_set.prepare(threads)
        self.val_set.prepare(threads)
        if cache == "disk" and self.dist.local_rank == 0:
            self.dist.barrier()
        if cache == "disk":
            self.log(
                f"disk cache: {self.train_set.written + self.val_set.written} arrays written, "
                f"{self.train_set.reused + self.val_set.reused} reused"
            )

    def _check_compatible(self, state: dict[str, Any], path: Path) -> None:
        if state.get("model_name") != self.cfg.model or state.get("classes") != self.classes:
            raise LauncherError(
                f"{path} was trained as {state.get('model_name')} on {len(state.get('classes', []))} classes, "
                f"but this run asks for {self.cfg.model} on {len(self.classes)} classes.",
                "Use another checkpoint folder (a new run name), or the same model and dataset.",
            )
        if self.spec_hash and state.get("spec_hash") and state["spec_hash"] != self.spec_hash:
            self.log(
                f"note: the job spec changed since {path.name} was written (spec hash {state['spec_hash']} -> {self.spec_hash})"
            )

    def _model(self) -> None:
        import torch  # noqa: PLC0415

        model = build_model(self.cfg.model, len(self.classes), self.cfg.pretrained).to(self.device)
        model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.ema = ModelEMA(model, every=1 if self.device.type == "cuda" else EMA_EVERY_CPU)
        self.net = model
        if self.dist.active:
            from torch.nn.parallel import DistributedDataParallel  # noqa: PLC0415

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = DistributedDataParallel(model, device_ids=ids)
        self.criterion = torch.nn.CrossEntropyLoss()
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")

    def _choose_batch(self, state: dict[str, Any] | None) -> int:
        if self.cfg.batch != -1:
            return self.cfg.batch
        if state is not None:
            return int(state["batch"])
        step = self._profile_step if self.device.type == "cuda" else None
        batch, why = autobatch.auto_batch(self.device, step, self.dist.min_int)
        self.log(why)
        return batch

    def _profile_step(self, batch: int) -> None:
        """CUDA only (AutoBatch): one full step on scratch copies of the model and optimizer."""
        import copy  # noqa: PLC0415

        import torch  # noqa: PLC0415

        model = copy.deepcopy(self.model).train()
        opt = build_optimizer("AdamW", model, 1e-3, 0.9, 0.0)  # the optimizer with the most state
        ema = ModelEMA(model)
        x = torch.randn(batch, 3, self.size, self.size, device=self.device).contiguous(
            memory_format=torch.channels_last
        )
        y = torch.randint(0, len(self.classes), (batch,), device=self.device)
        with self._autocast():
            loss = self.criterion(model(x), y)
        loss.backward()
        opt.step()
        ema.update(model)
        del model, opt, ema, x, y, loss

    def _loaders(self) -> None:
        d = self.dist
        cpus = usable_cpus()
        # On a CPU the compute threads take this process's cores; a worker process beside them preempts one mid-step
        # and the others wait for it. So a batch is made here, between steps, unless OMP_NUM_THREADS leaves cores free
        # (benchmarks/bench_trainer.py, cache=false on 2 cores: epoch 2.06-2.44 s with no workers, 2.49-2.70 s with 2).
        # On CUDA two workers keep a cached set's gather and pinning off the step's critical path. One rule with the
        # local backend's /dev/shm size: launcher.runtime.cpu.loader_workers.
        threads = self._cpu_threads(cpus) if self.device.type == "cpu" else 0
        workers = loader_workers(self.cfg.workers, processes=d.local_world, gpu=self.device.type != "cpu",
                                 cached=self.train_set.buffer is not None, cpus=cpus, omp=explicit_threads(os.environ))  # fmt: skip
        self.workers = workers
        pin = self.device.type == "cuda"
        from torch.utils.data import BatchSampler  # noqa: PLC0415

        if self.packed is not None:
            from launcher.runtime.train import stream  # noqa: PLC0415

            self.train_batches = stream.StreamBatches(self.packed_train, self.batch, d.rank, d.world, self.cfg.seed,
                                                      self.shard_cache)  # fmt: skip
            val_sampler = stream.SpanSampler(len(self.val_set), d.rank, d.world, self.packed_val, self.shard_cache)
        else:
            self.train_batches = data.TrainBatches(len(self.train_set), self.batch, d.rank, d.world, self.cfg.seed)
            val_sampler = data.ShardSampler(len(self.val_set), d.rank, d.world)
        self.train_loader = data.make_loader(self.train_set, self.train_batches, workers, pin, _ignore_sigterm)
        val_batches = BatchSampler(val_sampler, self.batch * 2, drop_last=False)
        self.val_loader = data.make_loader(self.val_set, val_batches, min(workers, 2), pin, _ignore_sigterm)
        self.steps_per_epoch = len(self.train_batches)
        if threads:
            self.log(
                f"{threads} compute thread(s) ({cpus} CPUs, {d.local_world} process(es), {workers} loader workers"
                f"{'' if workers == self.cfg.workers else f' of {self.cfg.workers} asked'}); set OMP_NUM_THREADS to choose"
            )

    def _optimizer(self) -> None:
        iterations = self.cfg.epochs * self.steps_per_epoch
        name, lr0 = resolve_auto(self.cfg.optimizer, self.cfg.lr0, iterations, len(self.classes))
        if self.cfg.optimizer == "auto":
            self.log(f"optimizer auto -> {name} lr0={lr0:g} ({iterations} iterations; SGD above {10_000})")
        self.optimizer_name, self.lr0 = name, lr0
        self.optimizer = build_optimizer(name, self.model, lr0, self.cfg.momentum, self.cfg.weight_decay)
        self.schedule = Schedule.for_run(
            lr0, self.cfg.lrf, self.cfg.epochs, self.steps_per_epoch, self.cfg.warmup_epochs, self.cfg.cos_lr
        )

    # ------------------------------------------------------------ state

    def state(self, finished: bool = False) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "global_step": self.global_step,
            "epoch_acc": dict(self.epoch_acc),
            "totals": dict(self.totals),
            "early_stop": {
                "best_fitness": self.best_fitness,
                "best_epoch": self.best_epoch,
                "bad_epochs": self.bad_epochs,
                "stopped_early": self.stopped_early,
            },
            "finished": finished,
            "epochs": self.cfg.epochs,
            "batch": self.batch,
            "optimizer_name": self.optimizer_name,
            "classes": list(self.classes),
            "model_name": self.cfg.model,
            "imgsz": self.cfg.imgsz,
            "precision": self.precision,
            "spec_hash": self.spec_hash,
            "train_args": self.cfg.model_dump(mode="json"),
            "rng": checkpoint.rng_state(),
            # a packed dataset's order depends on the world size: the position is valid only for the same one
            "data_position": {"world": self.dist.world, "samples": self.step_in_epoch * self.batch * self.dist.world},
        }

    def _restore(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        if state.get("optimizer_name") == self.optimizer_name:
            self.optimizer.load_state_dict(state["optimizer"])
        else:
            self.log(
                f"optimizer changed ({state.get('optimizer_name')} -> {self.optimizer_name}): starting its state fresh"
            )
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.global_step = int(state["epoch"]), int(state["global_step"])
        same_batches = int(state["batch"]) == self.batch
        saved_world = int(state.get("data_position", {}).get("world", self.dist.world))
        if self.packed is not None and saved_world != self.dist.world and int(state["step_in_epoch"]):
            self.log(
                f"the world size changed ({saved_world} -> {self.dist.world}): epoch {int(state['epoch']) + 1} "
                "starts again (a packed dataset's order depends on it)"
            )
            same_batches = False
        self.step_in_epoch = int(state["step_in_epoch"]) if same_batches else 0
        self.epoch_acc = dict(state["epoch_acc"]) if same_batches else {k: 0.0 for k in self.epoch_acc}
        self.totals = dict(state["totals"])
        es = state["early_stop"]
        self.best_fitness, self.best_epoch = float(es["best_fitness"]), int(es["best_epoch"])
        self.bad_epochs, self.stopped_early = int(es["bad_epochs"]), bool(es["stopped_early"])
        checkpoint.set_rng_state(state["rng"])

    def already_finished(self, state: dict[str, Any] | None) -> bool:
        if state is None:
            return False
        if int(state["epoch"]) >= self.cfg.epochs:
            return True
        return bool(state["early_stop"]["stopped_early"]) and self.cfg.epochs <= int(state["epochs"])

    def save(self, finished: bool = False, end_of_epoch: bool = False) -> None:
        if not self.dist.main:
            return
        state = self.state(finished)
        checkpoint.save(state, self.save_dir / checkpoint.LAST)
        if end_of_epoch and self.best_epoch == self.epoch - 1:
            # weights to use, not to resume from: the EMA weights (the ones validated, what train.pretrained
            # loads); the raw weights and the optimizer state would triple the file (issue 23: run folder size)
            best = {k: v for k, v in state.items() if k not in ("optimizer", "model")}
            checkpoint.save(best, self.save_dir / checkpoint.BEST)
        period = self.cfg.save_period
        if end_of_epoch and period > 0 and self.epoch % period == 0:
            checkpoint.save(state, self.save_dir / checkpoint.epoch_name(self.epoch))

    # ------------------------------------------------------------ steps

    def _autocast(self):  # type: ignore[no-untyped-def]
        import torch  # noqa: PLC0415

        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
        return torch.autocast(self.device.type, dtype=dtype or torch.float32, enabled=dtype is not None)

    def train_step(self, x, y) -> tuple[float, bool]:  # type: ignore[no-untyped-def]
        """One optimizer step on a prepared batch; returns (loss, stop).

        One small collective per step carries both decisions every rank must
        share: "some rank saw a non-finite loss" (all skip the step) and "some
        rank got SIGTERM" (all stop after this step)."""
        lr = self.schedule(self.global_step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        with self._autocast():
            loss = self.criterion(self.net(x), y)
        value = loss.detach().float().item()
        bad, stop = self.dist.any(float(not math.isfinite(value)), float(self.stop_requested))
        if bad:
            self.log(f"WARNING: non-finite loss at step {self.global_step} (this rank: {value}): step skipped")
        else:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.ema.step(self.model)
        self.optimizer.zero_grad(set_to_none=True)
        self.global_step += 1
        return value, bool(stop)

    def _batch_input(self, images, labels, b: int):  # type: ignore[no-untyped-def]
        import torch  # noqa: PLC0415

        gen = torch.Generator().manual_seed(batch_seed(self.cfg.seed, self.epoch, b, self.dist.rank))
        size = self.cfg.imgsz
        if self.cfg.multi_scale:
            size = data.multi_scale_size(self.cfg.imgsz, 0.5 + torch.rand(1, generator=gen).item())
        images = images.to(self.device, non_blocking=True)
        labels = labels.to(self.device, non_blocking=True)
        return data.augment(images, size, self.cfg.scale, gen), labels

    # ------------------------------------------------------------ epochs

    def train_epoch(self) -> bool:
        """Train the rest of the current epoch; False when stopped by SIGTERM."""
        self.net.train()
        self.train_batches.set_epoch(self.epoch, skip=self.step_in_epoch)
        progress = (
            report.StepProgress(self.epoch, self.cfg.epochs, self.steps_per_epoch, self.out) if self.dist.main else None
        )
        acc = self.epoch_acc
        tick = time.monotonic()
        for b, (images, labels) in enumerate(self.train_loader, start=self.step_in_epoch):
            x, y = self._batch_input(images, labels, b)
            loss, stop = self.train_step(x, y)
            now = time.monotonic()
            acc["time"] += now - tick
            tick = now
            acc["images"] += len(labels) * self.dist.world
            if math.isfinite(loss):
                acc["loss_sum"] += loss
                acc["steps"] += 1
            self.step_in_epoch = b + 1
            if progress is not None:
                progress.update(
                    b,
                    acc["loss_sum"] / max(acc["steps"], 1),
                    self.schedule(self.global_step - 1),
                    acc["images"] / max(acc["time"], 1e-9),
                )
            if stop:
                return False
        self.ema.flush(self.model)  # validation and the epoch's checkpoint see every step of the epoch
        return True

    def validate(self) -> dict[str, float]:
        """EMA weights on the whole validation set; every sample counted once across ranks."""
        import torch  # noqa: PLC0415

        model = self.ema.module
        model.eval()
        k = min(5, len(self.classes))
        sums = [0.0, 0.0, 0.0, 0.0]  # loss, top-1 hits, top-k hits, samples
        with torch.no_grad(), self._autocast():
            for images, labels in self.val_loader:
                x = data.to_model_input(images.to(self.device), self.cfg.imgsz)
                y = labels.to(self.device)
                logits = model(x).float()
                top = logits.topk(k, dim=1).indices
                hits = top == y[:, None]
                sums[0] += torch.nn.functional.cross_entropy(logits, y, reduction="sum").item()
                sums[1] += hits[:, 0].sum().item()
                sums[2] += hits.any(dim=1).sum().item()
                sums[3] += len(y)
        loss, top1, topk, n = self.dist.sum(sums)
        self.val_samples_counted = int(n)
        n = max(n, 1.0)
        return {"val_loss": loss / n, "top1": top1 / n, "top5": topk / n, "val_samples": n}

    def end_epoch(self, metrics: dict[str, float]) -> bool:
        """Record the epoch, update early stopping, save; True when training should stop early."""
        acc = self.epoch_acc
        fitness = metrics["top1"]
        if fitness > self.best_fitness:  # strict improvement only
            self.best_fitness, self.best_epoch, self.bad_epochs = fitness, self.epoch, 0
        else:
            self.bad_epochs += 1
        stop = self.cfg.patience > 0 and self.bad_epochs >= self.cfg.patience
        stop = bool(self.dist.any(float(stop))[0])  # rank 0 decides the same, but never risk a split
        self.totals["train_time"] += acc["time"]
        self.totals["images"] += acc["images"]
        row = {
            "epoch": self.epoch + 1,
            "train_loss": acc["loss_sum"] / max(acc["steps"], 1),
            **metrics,
            "lr": self.schedule(self.global_step - 1),
            "time_s": acc["time"],
            "images_per_s": acc["images"] / max(acc["time"], 1e-9),
        }
        self.epoch += 1
        self.step_in_epoch = 0
        self.epoch_acc = {k: 0.0 for k in acc}
        self.stopped_early = stop
        finished = stop or self.epoch >= self.cfg.epochs
        if self.dist.main:
            values = {**row, **self._peak_memory()}
            self.log(contract.summary_line(values, self.cfg.epochs))
            report.append_row(self.save_dir / "results.csv", row)
            self.reporters.log(row["epoch"], {k: values[k] for k in contract.METRICS if k in values})
            self.reporters.flush()  # before last.pt: the syncer uploads the events with this checkpoint
        self.save(finished=finished, end_of_epoch=True)
        if stop:
            self.log(
                f"early stop: no improvement of top-1 for {self.cfg.patience} epochs (best {self.best_fitness:.4f} "
                f"at epoch {self.best_epoch + 1})"
            )
        return stop

    # ------------------------------------------------------------ run

    def fit(self) -> int:
        """Train to the end (or an early stop); returns the process exit code."""
        self.save_dir.mkdir(parents=True, exist_ok=True)
        state = self.setup()
        if self.already_finished(state):
            self.log(
                f"this run already finished ({state['epoch']} of {state['epochs']} epochs); "
                "nothing to do. Raise train.epochs to train longer, or use a new run name to start over."
            )
            return 0
        if self.dist.main:
            report.truncate_rows(self.save_dir / "results.csv", self.epoch)
            self.reporters = sinks.from_env(
                self.save_dir, self.epoch + 1, self.cfg.model_dump(mode="json"), log=self.log
            )
        self.log(
            f"{self.cfg.model} on {len(self.train_set)} train / {len(self.val_set)} val images, "
            f"{len(self.classes)} classes, batch {self.batch} x {self.dist.world} process(es), "
            f"{self.precision}, {self.device}, {self.workers} workers"
        )
        previous = signal.signal(signal.SIGTERM, self.request_stop)
        try:
            code = self._epochs()
        finally:
            signal.signal(signal.SIGTERM, previous)
            self.close_loaders()
            self.reporters.close()
            if self.packed is not None:
                self.shard_cache.close()
            self._drop_shared_ram()
        if code == 0:
            self.finish()
        return code

    def _drop_shared_ram(self) -> None:
        """The node's shared `cache: ram` arrays are memory: local rank 0 frees them when the run ends
        (a process still mapping them keeps its pages until it exits)."""
        if self.shared_ram is None or self.dist.local_rank != 0:
            return
        for dataset in (getattr(self, "train_set", None), getattr(self, "val_set", None)):
            if dataset is not None and dataset.pack is not None:
                dataset.pack.unlink(missing_ok=True)
                dataset.pack.with_suffix(".json").unlink(missing_ok=True)

    def close_loaders(self) -> None:
        """Stop persistent DataLoader workers now, not at interpreter exit.

        The workers ignore SIGTERM (so a preemption signal sent to the whole
        process group cannot kill them before the rank saves). Left alive until
        exit, multiprocessing's atexit hook would SIGTERM them and then join
        forever; shutting them down here sends them the normal end-of-data sentinel.
        """
        for name in ("train_loader", "val_loader"):
            iterator = getattr(getattr(self, name, None), "_iterator", None)
            if iterator is not None and hasattr(iterator, "_shutdown_workers"):
                iterator._shutdown_workers()

    def _peak_memory(self) -> dict[str, float]:
        """This epoch's peak GPU memory held by PyTorch's allocator (what nvidia-smi shows, less the context)."""
        import torch  # noqa: PLC0415

        if self.device.type != "cuda":
            return {}
        return {"gpu_mem_gib": torch.cuda.max_memory_reserved(self.device) / (1 << 30)}

    def _reset_peak_memory(self) -> None:
        import torch  # noqa: PLC0415

        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

    def _epochs(self) -> int:
        while self.epoch < self.cfg.epochs:
            self._reset_peak_memory()
            if not self._epoch_with_oom_retry():
                self.save()
                self.log(
                    f"stopped by SIGTERM: saved {checkpoint.LAST} at epoch {self.epoch + 1}, "
                    f"step {self.step_in_epoch}; run again to resume"
                )
                return SIGTERM_EXIT
            if self.end_epoch(self.validate()):
                break
            if self.epoch < self.cfg.epochs and self.dist.any(float(self.stop_requested))[0]:
                self.log(f"stopped by SIGTERM after epoch {self.epoch}: last.pt saved; the checkpoint sync takes it to "
                         "the run's store")  # fmt: skip
                return SIGTERM_EXIT
        return 0

    def _epoch_with_oom_retry(self) -> bool:
        """AutoBatch safety net (CUDA): out of memory in the first steps halves the batch."""
        while True:
            try:
                return self.train_epoch()
            except RuntimeError as exc:
                if not (
                    self.cfg.batch == -1
                    and self.global_step < OOM_RETRY_STEPS
                    and self.batch > 1
                    and autobatch.is_oom(exc)
                    and not self.dist.active
                ):
                    raise
            self._halve_batch()

    def _halve_batch(self) -> None:
        import torch  # noqa: PLC0415

        torch.cuda.empty_cache()
        self.batch //= 2
        self.log(f"out of memory in the first steps: batch halved to {self.batch}")
        self.epoch_acc = {k: 0.0 for k in self.epoch_acc}
        self.step_in_epoch = self.global_step = 0
        self._loaders()
        self._optimizer()

    def finish(self) -> None:
        if not self.dist.main:
            return
        csv_path = self.save_dir / "results.csv"
        report.plot(csv_path, self.save_dir / "results.png")
        rows = report.read_rows(csv_path)
        summary = {
            "best_top1": self.best_fitness,
            "best_epoch": self.best_epoch + 1,
            "epochs_run": self.epoch,
            "stopped_early": self.stopped_early,
            "images_per_second": self.totals["images"] / max(self.totals["train_time"], 1e-9),
            "images_per_second_per_process": self.totals["images"]
            / max(self.totals["train_time"], 1e-9)
            / self.dist.world,
            "train_time_s": self.totals["train_time"],
            "wall_time_s": time.monotonic() - self.started,
            "device": self.device.type,
            "device_name": _device_name(self.device),
            "world_size": self.dist.world,
            "precision": self.precision,
            "batch": self.batch,
            "imgsz": self.cfg.imgsz,
            "model": self.cfg.model,
            "optimizer": self.optimizer_name,
            "train_images": len(self.train_set),
            "val_images": len(self.val_set),
            "val_samples_counted": getattr(self, "val_samples_counted", 0),
            "final_top1": rows[-1]["top1"] if rows else None,
            "weights": checkpoint.BEST,  # relative to the run folder: a job's own training folder is removed once
            "last": checkpoint.LAST,  # synced, so an absolute path would name nothing (issue 23)
            "spec_hash": self.spec_hash,
        }
        report.write_json(self.save_dir / "results.json", summary)
        print(
            f"[train] done: best top-1 {self.best_fitness:.4f} at epoch {self.best_epoch + 1} of {self.epoch}; "
            f"{summary['images_per_second']:.0f} images/s; weights: {checkpoint.BEST} (last: {checkpoint.LAST}) "
            f"in {self._where_weights_stay()}",
            file=self.out,
            flush=True,
        )

    def _where_weights_stay(self) -> str:
        """The run folder, or, for a job's own training folder (removed once synced), the run's checkpoint store."""
        from launcher.runtime.entrypoint import JOB_FOLDER_PREFIX  # noqa: PLC0415

        if self.save_dir.parent.name.startswith(JOB_FOLDER_PREFIX):
            return "the run's checkpoint store (`launch ckpt pull` fetches them)"
        return str(self.save_dir)


def _device_name(device) -> str:  # type: ignore[no-untyped-def]
    import platform  # noqa: PLC0415

    import torch  # noqa: PLC0415

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()
