"""A user's own training program, as a user writes one: plain PyTorch DDP, no `launcher` import.

It follows the program contract of README "Your own training program":
- torchrun gives RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT (gloo on CPU);
- the data is read from LAUNCHER_DATA (the digits ImageFolder: train/<class>/*.png);
- the state is saved to LAUNCHER_CHECKPOINT_DIR by rank 0, written to a temporary
  name and renamed (the sync uploads only whole files), and restored from there on
  start: with LAUNCHER_RESUMED=1 it continues from its own saved step;
- SIGTERM: every rank stops at the next step, rank 0 saves first, exit 143.

Each line it prints starts with "[program]", so the tests can read what it did.
"""

import argparse
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from helper import load_state, save_state
from PIL import Image

stop = []
signal.signal(signal.SIGTERM, lambda signum, frame: stop.append(signum))


def images(root):
    files = sorted(Path(root, "train").glob("*/*.png"))
    x = np.stack([np.asarray(Image.open(f), dtype=np.float32).reshape(-1) / 255.0 for f in files])
    y = np.array([int(f.parent.name) for f in files])
    return torch.from_numpy(x), torch.from_numpy(y)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--save-every", type=int, default=5)
    parser.add_argument("--step-seconds", type=float, default=0.25)
    args = parser.parse_args()

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    ckpt = Path(os.environ["LAUNCHER_CHECKPOINT_DIR"])
    resumed = os.environ.get("LAUNCHER_RESUMED")
    print(f"[program] rank {rank} world_size {world} resumed {resumed} cwd {Path.cwd().name}", flush=True)

    x, y = images(os.environ["LAUNCHER_DATA"])
    print(f"[program] rank {rank} read {len(x)} images from LAUNCHER_DATA", flush=True)
    torch.manual_seed(0)
    model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(x.shape[1], 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    state = load_state(ckpt)
    step = 0
    if state is not None:
        model.module.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step = state["step"]
        print(f"[program] rank {rank} continues from saved step {step}", flush=True)

    generator = torch.Generator().manual_seed(rank)
    while step < args.steps:
        flag = torch.tensor([1.0 if stop else 0.0])
        dist.all_reduce(flag)  # every rank stops at the same step
        if flag.item() > 0:
            if rank == 0:
                save_state(ckpt, model.module, optimizer, step)
                print(f"[program] stopped by SIGTERM at step {step}, saved", flush=True)
            dist.destroy_process_group()
            sys.exit(143)
        batch = torch.randint(0, len(x), (64,), generator=generator)
        loss = torch.nn.functional.cross_entropy(model(x[batch]), y[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        step += 1
        if rank == 0:
            print(f"[program] step {step}/{args.steps} loss {loss.item():.4f}", flush=True)
            if step % args.save_every == 0:
                save_state(ckpt, model.module, optimizer, step)
        time.sleep(args.step_seconds)

    with torch.no_grad():
        accuracy = (model(x).argmax(1) == y).float().mean().item()
    if rank == 0:
        save_state(ckpt, model.module, optimizer, step)
        print(f"[program] done at step {step} world_size {world} train accuracy {accuracy:.3f}", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
