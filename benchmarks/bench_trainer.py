"""Trainer throughput, measured side by side in one run on this machine.

    python benchmarks/bench_trainer.py [--images 768] [--model resnet18] [--imgsz 32] [--batch 32]

(1) ceiling: the trainer's images/s (cache=ram) over a bare loop on the same
    model, batch, precision and optimizer with every batch pre-loaded as a
    ready tensor (no data loading, no augmentation, no EMA): target >= 0.95.
(2) data pipeline: the trainer's epoch time (cache off / ram / disk) against
    a plain torchvision ImageFolder + DataLoader loop (PIL decode,
    RandomResizedCrop, ToTensor, Normalize in workers) on the same JPEGs.

Every figure is the second (steady) epoch; the dataset is scikit-learn's
digits upscaled to --source px JPEGs, so decoding costs what real photos do.
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

__all__ = ["main"]


def make_jpegs(root: Path, images: int, source: int) -> Path:
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    n_val = max(10, images // 4)
    for i in range(images + n_val):
        split = "train" if i < images else "val"
        label = digits.target[i % len(digits.target)]
        folder = root / split / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        gray = (digits.images[i % len(digits.target)] * 15.9).astype(np.uint8)
        rgb = Image.fromarray(np.stack([gray] * 3, axis=-1)).resize((source, source), Image.BICUBIC)
        rgb.save(folder / f"{i:05d}.jpg", quality=90)
    return root


def _model_and_optimizer(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    import torch

    from launcher.runtime.train.model import build_model
    from launcher.runtime.train.optim import build_optimizer

    torch.manual_seed(0)
    model = build_model(args.model, 10, False).to(memory_format=torch.channels_last)
    return model, build_optimizer("AdamW", model, 1e-3, 0.9, 5e-4)


def bare_loop(args: argparse.Namespace, precision: str) -> float:
    """Images/s of forward+backward+step on pre-loaded, pre-normalised tensors."""
    import torch

    model, opt = _model_and_optimizer(args)
    model.train()
    steps = args.images // args.batch
    xs = [torch.randn(args.batch, 3, args.imgsz, args.imgsz).contiguous(memory_format=torch.channels_last) for _ in range(steps)]
    ys = [torch.randint(0, 10, (args.batch,)) for _ in range(steps)]
    dtype = {"bf16": torch.bfloat16}.get(precision)
    ips = 0.0
    for _epoch in range(2):
        t0 = time.perf_counter()
        for x, y in zip(xs, ys):
            with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
                loss = torch.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            loss.item()
        ips = steps * args.batch / (time.perf_counter() - t0)
    return ips


def plain_loop(args: argparse.Namespace, root: Path) -> float:
    """Epoch time of the textbook torchvision pipeline."""
    import torch
    from torchvision import datasets, transforms

    tf = transforms.Compose([
        transforms.RandomResizedCrop(args.imgsz, scale=(0.7, 1.0)),
        transforms.ToTensor(),
        transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    ])
    loader = torch.utils.data.DataLoader(
        datasets.ImageFolder(str(root / "train"), tf), batch_size=args.batch, shuffle=True,
        num_workers=args.workers, drop_last=True, persistent_workers=args.workers > 0,
    )
    model, opt = _model_and_optimizer(args)
    model.train()
    seconds = 0.0
    for _epoch in range(2):
        t0 = time.perf_counter()
        for x, y in loader:
            loss = torch.nn.functional.cross_entropy(model(x.contiguous(memory_format=torch.channels_last)), y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            loss.item()
        seconds = time.perf_counter() - t0
    return seconds


def trainer(args: argparse.Namespace, root: Path, cache: str | bool, work: Path) -> dict[str, float | str]:
    """The real trainer, in process, for two epochs; figures of the second epoch."""
    import os

    import torch

    from launcher.runtime.train import report
    from launcher.runtime.train.dist import Dist
    from launcher.runtime.train.loop import Trainer
    from launcher.spec import TrainConfig

    os.environ["LAUNCHER_CACHE_DIR"] = str(work / "disk-cache")
    cfg = TrainConfig(model=args.model, data=str(root), imgsz=args.imgsz, batch=args.batch, epochs=2, cache=cache,
                      optimizer="AdamW", lr0=1e-3, scale=0.3, workers=args.workers, amp=True, warmup_epochs=0.5)
    save_dir = work / f"run-{cache}"
    if save_dir.exists():
        import shutil

        shutil.rmtree(save_dir)
    t = Trainer(cfg, save_dir, Dist(device=torch.device("cpu")), out=io.StringIO())
    assert t.fit() == 0
    row = report.read_rows(save_dir / "results.csv")[-1]
    return {"epoch_s": row["time_s"], "images_per_s": row["images_per_s"], "precision": t.precision}


def _pin_threads() -> int:
    """One thread count for every loop here: the trainer's own rule, then fixed via OMP_NUM_THREADS."""
    import os

    import torch

    from launcher.runtime.cpu import cpu_threads, usable_cpus

    threads = cpu_threads(os.environ, usable_cpus(), 1)
    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)  # the trainer keeps an explicit setting
    return threads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=768, help="training images (plus a quarter for validation); 384 gave 1 s epochs, too short to be steady")
    parser.add_argument("--source", type=int, default=160, help="side of the JPEG files in pixels")
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--imgsz", type=int, default=32)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repetitions; the best of each is kept")
    args = parser.parse_args()
    threads = _pin_threads()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        root = make_jpegs(work / "jpegs", args.images, args.source)
        print(f"{args.images} train JPEGs at {args.source}px, {args.model} at {args.imgsz}px, batch {args.batch}, "
              f"{args.workers} workers, {threads} thread(s); second-epoch figures, best of {args.rounds} interleaved rounds",
              flush=True)
        best: dict[str, float] = {}
        precision = "fp32"
        for _round in range(args.rounds):
            for cache in ("ram", False, "disk"):
                run = trainer(args, root, cache, work)
                precision = str(run["precision"])
                _keep(best, f"ips-{cache}", float(run["images_per_s"]), max)
                _keep(best, f"epoch-{cache}", float(run["epoch_s"]), min)
            _keep(best, "bare", bare_loop(args, precision), max)
            _keep(best, "plain", plain_loop(args, root), min)
        print(f"(1) trainer cache=ram {best['ips-ram']:.1f} img/s vs bare loop {best['bare']:.1f} img/s ({precision}): "
              f"ratio {best['ips-ram'] / best['bare']:.3f} (target >= 0.95)")
        print(f"(2) plain torchvision ImageFolder + DataLoader epoch: {best['plain']:.2f} s")
        for cache in (False, "ram", "disk"):
            epoch = best[f"epoch-{cache}"]
            print(f"    trainer cache={str(cache).lower():5s} epoch: {epoch:.2f} s  speed-up over plain: {best['plain'] / epoch:.2f}x")


def _keep(best: dict[str, float], key: str, value: float, pick) -> None:  # type: ignore[no-untyped-def]
    best[key] = pick(best[key], value) if key in best else value


if __name__ == "__main__":
    main()
