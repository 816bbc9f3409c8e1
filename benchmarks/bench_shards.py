"""Large datasets: time to the first step and epoch-1 images/s, per-object fetch vs packed shards vs local disk.

    .venv/bin/python benchmarks/bench_shards.py [--images 20000] [--shard-size 8MB]
    .venv/bin/python benchmarks/bench_shards.py --cache-ram [--images 3000] [--side 160]

Generates an ImageFolder of N small PNGs (32 px, 10 classes, plus a val split of N/10), puts it
in moto S3 (ThreadedMotoServer on loopback, one object per image) and packs it into shards in
the same bucket (`launch data pack`'s code, timed: packing images/s). Then, side by side in one
run, each starting from an empty cache:

  (a) per-object: today's path for a remote train.data (launcher.storage.dataset.fetch: every
      object fetched to local disk, 8 threads), then the trainer's ImageFolder loader;
  (b) packed: the trainer's streaming path (launcher.runtime.train.stream: shards fetched into
      the node cache ahead of the batches), no prior download;
  (c) local: the trainer's ImageFolder loader on the generated folder on local disk (the ceiling);
  (b') in place: the same shards packed into a folder on local disk and read where they are (the trainer's
      path for a packed folder on the machine): the reader alone, without the download, to tell the
      reader's own cost from the fake store's and the download's.

(b)'s rows also give the store server's CPU (moto, its own process on the same cores) per 1k images.

Each reads the training split once through the trainer's own classes (ImageSet/PackedSet with
cache=false, its batch sampler, DataLoader with 0 workers, decode at 32 px) with a trivial
step (the batch to float and summed), so the numbers are the data path's, not a model's.
first step = seconds from the start (nothing local yet) to the first batch; images/s = the
epoch's images over the time from start to the epoch's end, and over the loop alone.

`--cache-ram`: the resident memory per rank of `cache: ram` with 2 processes on a node. Each
layout runs in 2 fresh (spawned) processes, as torchrun's ranks, on the generated ImageFolder:

  (d) one copy per node (what the trainer does with 2 or more local processes): local rank 0
      decodes the splits into the disk cache's array file in /dev/shm (ImageSet cache="disk"
      with cache_dir there), the other rank waits at a barrier, then maps the same file;
  (e) one copy per rank (what it did before): each rank decodes into its own shared-memory
      tensor (ImageSet cache="ram");
  (f) no cache, the control: each batch decoded as it is read; what a rank's memory grows by
      for reasons other than a cache (batches, decode buffers, allocator) is subtracted.

Each rank then reads every training batch (a gather from the cache, touching every row) and
reports Rss and Pss from /proc/self/smaps_rollup (Pss splits each shared page between the
processes mapping it, so the ranks' Pss add up to the node's memory), against its own figures
just before the cache was built.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

__all__ = ["main"]

BATCH = 64
SIZE = 32


def make_folder(root: Path, n: int, classes: int = 10) -> None:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (("train", n), ("val", max(classes, n // 10))):
        for i in range(count):
            folder = root / split / f"class{i % classes}"
            folder.mkdir(parents=True, exist_ok=True)
            pixels = rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{i:07d}.png")


def upload(client, bucket: str, prefix: str, root: Path) -> None:  # type: ignore[no-untyped-def]
    files = [p for p in sorted(root.rglob("*")) if p.is_file()]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda p: client.put_object(Bucket=bucket, Key=f"{prefix}/{p.relative_to(root).as_posix()}",
                                                  Body=p.read_bytes()), files))  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"moto did not open port {port} in {timeout:.0f} s")


CPU = [0.0]  # the CPU seconds (this process, every thread) of the last loop


def loop(dataset, batches) -> tuple[float, int, float]:  # type: ignore[no-untyped-def]
    """Read one epoch; (seconds to the first batch, images, seconds of the whole loop). The loop's CPU time
    goes to CPU[0]: on a machine others load, CPU per image is steadier than images per wall second."""
    from launcher.runtime.train import data

    loader = data.make_loader(dataset, batches, 0, False)
    start, cpu = time.monotonic(), time.process_time()
    first, images = None, 0
    for x, _y in loader:
        x.float().sum()
        images += len(x)
        first = first if first is not None else time.monotonic() - start
    CPU[0] = time.process_time() - cpu
    return first or 0.0, images, time.monotonic() - start


def per_object(uri: str, client, cache: Path) -> dict[str, float]:  # type: ignore[no-untyped-def]
    from launcher.runtime.train import data
    from launcher.storage import open_store
    from launcher.storage.dataset import fetch

    start = time.monotonic()
    root = fetch(uri, cache, store=open_store(uri, s3=client), log=lambda _m: None).root
    fetched = time.monotonic() - start
    dataset = data.ImageSet(data.scan(root / "train"), SIZE, False)
    first, images, took = loop(dataset, data.TrainBatches(len(dataset), BATCH, 0, 1, 0))
    return {"first": fetched + first, "images": images, "total": fetched + took, "loop": took, "cpu": CPU[0]}


def server_cpu(pid: int) -> float:
    """CPU seconds (user and system) process `pid` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def packed(uri: str, client, cache: Path, server: int | None = None) -> dict[str, float]:  # type: ignore[no-untyped-def]
    from launcher.runtime.train import stream
    from launcher.storage import open_store

    served = server_cpu(server) if server else 0.0
    start = time.monotonic()
    opened = stream.open_packed(uri, store=open_store(uri, s3=client) if client else None)
    split = stream.PackedSplit(opened.index, "train")
    shards = stream.ShardCache(opened.store, opened.index, cache, limit=10 << 30)
    dataset = stream.PackedSet(split, SIZE, False, shards)
    ready = time.monotonic() - start
    first, images, took = loop(dataset, stream.StreamBatches(split, BATCH, 0, 1, 0, shards))
    shards.close()
    store = server_cpu(server) - served if server else 0.0
    return {"first": ready + first, "images": images, "total": ready + took, "loop": took, "cpu": CPU[0],
            "store_cpu": store}  # fmt: skip


def local(root: Path) -> dict[str, float]:
    from launcher.runtime.train import data

    start = time.monotonic()
    dataset = data.ImageSet(data.scan(root / "train"), SIZE, False)
    ready = time.monotonic() - start
    first, images, took = loop(dataset, data.TrainBatches(len(dataset), BATCH, 0, 1, 0))
    return {"first": ready + first, "images": images, "total": ready + took, "loop": took, "cpu": CPU[0]}


def memory() -> dict[str, int]:
    """This process's Rss and Pss in bytes (/proc/self/smaps_rollup)."""
    found = {}
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("Rss", "Pss"):
            found[name] = int(rest.split()[0]) * 1024
    return found


def cache_rank(rank: int, root: str, side: int, shared: str | None, barrier, results) -> None:  # type: ignore[no-untyped-def]
    """One rank of the --cache-ram run (see the module's docstring): (d) with `shared`, else (e)."""
    import torch

    from launcher.runtime.train import data

    torch.set_num_threads(1)
    split = data.scan(Path(root) / "train")
    torch.zeros(1).sum()  # torch's own start-up memory goes in the baseline, not in the cache's share
    before = memory()
    mode = False if shared == "" else "disk" if shared else "ram"  # "": (f), the control
    dataset = data.ImageSet(split, side, mode, Path(shared) if shared else None)
    start = time.monotonic()
    if shared and rank != 0:
        barrier.wait()  # local rank 0 writes the array; this rank then only maps it
    dataset.prepare(threads=2)
    if shared and rank == 0:
        barrier.wait()
    ready = time.monotonic() - start
    for ids in data.TrainBatches(len(dataset), BATCH, rank, 2, 0):
        dataset.__getitems__(ids)[0].float().sum()
    barrier.wait()  # both ranks hold their cache now
    after = memory()
    results.put({"rank": rank, "before": before, "after": after, "ready": ready, "written": dataset.written,
                 "cache_bytes": len(dataset) * side * side * 3})  # fmt: skip
    barrier.wait()  # neither exits (unmapping its pages) before the other has measured


def cache_ram(images: int, side: int) -> None:
    import multiprocessing

    work = Path(tempfile.mkdtemp(prefix="bench-cache-ram-"))
    shm = Path("/dev/shm") / f"bench-cache-ram-{work.name}"
    rows = {}
    try:
        t = time.monotonic()
        make_folder(work / "src", images)
        print(f"generated {images} train images in {time.monotonic() - t:.1f}s", flush=True)
        context = multiprocessing.get_context("spawn")  # fresh processes, as torchrun starts them
        layouts = (("(d) one copy per node (/dev/shm)", str(shm)), ("(e) one copy per rank", None),
                   ("(f) no cache (control)", ""))  # fmt: skip
        for name, shared in layouts:
            barrier, results = context.Barrier(2), context.Queue()
            procs = [context.Process(target=cache_rank, args=(r, str(work / "src"), side, shared, barrier, results))
                     for r in range(2)]  # fmt: skip
            for proc in procs:
                proc.start()
            got = sorted((results.get(timeout=600) for _ in procs), key=lambda r: r["rank"])
            for proc in procs:
                proc.join()
            rows[name] = got
            shutil.rmtree(shm, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(shm, ignore_errors=True)
    mb = 1e6
    copy = next(iter(rows.values()))[0]["cache_bytes"]
    out = io.StringIO()
    out.write(
        f"\ncache: ram, 2 processes, {images} train images decoded at {side} px: one copy is {copy / mb:.0f} MB\n"
    )
    out.write("| layout | rank | Rss (MB) | Pss (MB) | Pss over its start (MB) | cache built in (s) |\n"
              "|---|---:|---:|---:|---:|---:|\n")  # fmt: skip
    for name, ranks in rows.items():
        for r in ranks:
            grown = r["after"]["Pss"] - r["before"]["Pss"]
            out.write(f"| {name} | {r['rank']} | {r['after']['Rss'] / mb:.0f} | {r['after']['Pss'] / mb:.0f} | "
                      f"{grown / mb:.0f} | {r['ready']:.1f} |\n")  # fmt: skip
    node = {name: sum(r["after"]["Pss"] - r["before"]["Pss"] for r in ranks) for name, ranks in rows.items()}
    control = node.pop("(f) no cache (control)")
    said = "; ".join(f"{name}: {(grown - control) / mb:.0f} MB = {(grown - control) / copy:.2f} copies"
                     for name, grown in node.items())  # fmt: skip
    out.write(f"\nthe node's cache memory (both ranks' Pss growth less the control's {control / mb:.0f} MB): {said}\n")
    print(out.getvalue(), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=None, help="train images (default 20000; --cache-ram: 3000)")
    parser.add_argument("--cache-ram", action="store_true", help="measure memory per rank of cache: ram, 2 processes")
    parser.add_argument("--without-a", action="store_true", help="skip (a), the per-object fetch (minutes at 20k)")
    parser.add_argument("--side", type=int, default=160, help="--cache-ram: the decoded side in px (default 160)")
    parser.add_argument("--shard-size", default="8MB", help="shard size for the packed copy (default 8MB)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of (b) and (c), alternating; the median is shown")
    args = parser.parse_args()
    if args.cache_ram:
        cache_ram(args.images or 3000, args.side)
        return
    args.images = args.images or 20_000

    import boto3
    from botocore.config import Config

    from launcher.staging.pack import pack
    from launcher.storage import open_store
    from launcher.storage.shards import parse_size

    work = Path(tempfile.mkdtemp(prefix="bench-shards-"))
    port = free_port()
    # its own process, as a real store is another machine: serving bytes must not take the trainer's GIL
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        wait_port(port)
        endpoint = f"http://127.0.0.1:{port}"
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="x",
                              aws_secret_access_key="x", config=Config(max_pool_connections=32))  # fmt: skip
        client.create_bucket(Bucket="bench")
        t = time.monotonic()
        make_folder(work / "src", args.images)
        print(f"generated {args.images} train images in {time.monotonic() - t:.1f}s", flush=True)
        if not args.without_a:  # one object per image: minutes at 200k, and only (a) reads them
            upload(client, "bench", "folder", work / "src")
        dest = "s3://bench/packed"
        t = time.monotonic()
        result = pack(str(work / "src"), dest, parse_size(args.shard_size), 8, dest_store=open_store(dest, s3=client))
        pack_s = time.monotonic() - t
        n_files = result.files
        pack(str(work / "src"), str(work / "packed"), parse_size(args.shard_size), 8)  # (b'): the same shards, here
        print(
            f"packed {n_files} images into {len(result.index.shards())} shards in {pack_s:.1f}s "
            f"({n_files / pack_s:.0f} images/s)",
            flush=True,
        )
        rows = (
            {}
            if args.without_a
            else {"(a) per-object fetch": per_object("s3://bench/folder", client, work / "cache-a")}
        )
        in_place = "(b') packed, read in place (no download)"
        rounds: dict[str, list[dict[str, float]]] = {"(b) packed, streamed": [], "(c) local disk": [], in_place: []}
        for n in range(args.rounds):  # (b) and (c) alternate, each (b) from an empty cache: the machine's drift
            first = ["b", "c"] if n % 2 == 0 else ["c", "b"]  # hits both alike
            for which in first:
                if which == "b":
                    rounds["(b) packed, streamed"].append(packed(dest, client, work / f"cache-b{n}", server.pid))
                else:
                    rounds["(c) local disk"].append(local(work / "src"))
            rounds[in_place].append(packed(str(work / "packed"), None, work / f"cache-p{n}"))
        for name, runs in rounds.items():  # the median round by loop speed
            runs.sort(key=lambda r: r["images"] / r["loop"])
            rows[name] = runs[len(runs) // 2]
            spread = ", ".join(f"{r['images'] / r['loop']:.0f}" for r in runs)
            cpu = ", ".join(f"{1e6 * r['cpu'] / r['images']:.1f}" for r in sorted(runs, key=lambda r: r["cpu"]))
            served = ", ".join(f"{1e6 * r['store_cpu'] / r['images']:.1f}" for r in runs if r.get("store_cpu"))
            served = f"; store server CPU ms per 1k images: {served}" if served else ""
            print(f"{name}: loop images/s of the {len(runs)} rounds: {spread}; CPU ms per 1k images: {cpu}{served}",
                  flush=True)  # fmt: skip
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(work, ignore_errors=True)
    ceiling = rows["(c) local disk"]
    out = io.StringIO()
    out.write(f"\n{args.images} images of {SIZE} px, batch {BATCH}, shards {args.shard_size}, moto S3 on loopback; "
              f"(b), (c), (b'): median of {args.rounds} rounds, (b) and (c) alternating\n")  # fmt: skip
    out.write(
        "| path | first step (s) | epoch 1 images/s (from start) | vs (c) from start | loop images/s | vs (c) loop "
        "| loop CPU ms per 1k images | vs (c) CPU | store server CPU ms per 1k images |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    cpu_c = ceiling["cpu"] / ceiling["images"]
    for name, r in rows.items():
        store = f"{1e6 * r['store_cpu'] / r['images']:.1f}" if r.get("store_cpu") else "-"
        out.write(
            f"| {name} | {r['first']:.2f} | {r['images'] / r['total']:.0f} | "
            f"{(r['images'] / r['total']) / (ceiling['images'] / ceiling['total']):.2f}x | {r['images'] / r['loop']:.0f} | "
            f"{(r['images'] / r['loop']) / (ceiling['images'] / ceiling['loop']):.2f}x | "
            f"{1e6 * r['cpu'] / r['images']:.1f} | {cpu_c / (r['cpu'] / r['images']):.2f}x | "
            f"{store} |\n"
        )
    b = rows["(b) packed, streamed"]
    a = rows.get("(a) per-object fetch")
    versus = (f"first step: (a)/(b) = {a['first'] / b['first']:.1f}x; epoch 1 from start: "
              f"(b)/(a) = {(b['images'] / b['total']) / (a['images'] / a['total']):.1f}x; ") if a else ""  # fmt: skip
    out.write(f"\n{versus}packing {n_files / pack_s:.0f} images/s\n")
    print(out.getvalue(), flush=True)


if __name__ == "__main__":
    main()
