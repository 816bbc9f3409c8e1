"""Shipping a code folder: `code:` (one archive, uploaded once per content) vs per-file uploads as `aws s3 sync` does.

    .venv/bin/python benchmarks/bench_code.py [--rounds 3] [--files 2000] [--mb 50]

Makes a folder of --files files holding --mb MB in all (source-like text and a few
binary blobs, sizes spread like a repository's), starts moto's S3 server on loopback
in its own process, then per round, side by side:
- ours:  launcher.staging.code.collect + ship: the ignore rules, a reproducible tar.gz, its
         sha256, one upload to s3://bench/ckpts/_code/<sha256>.tar.gz;
- sync:  what `aws s3 sync DIR s3://...` does: list the prefix, then one boto3
         `upload_file` per file, 10 at a time (the CLI's default max_concurrent_requests);
- again: ours a second time on the unchanged folder: the listing is the one remembered, the archive
         is in the store, so nothing is archived or sent.
Each round uploads to a fresh prefix and alternates which side goes first. Prints each
round's seconds, the ratio sync/ours (target >= 2) and the PUT requests of the second
submit (target 0), counted by a botocore event hook on the client.
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from launcher.spec import CodeConfig  # noqa: E402
from launcher.staging.code import collect, ship  # noqa: E402

__all__ = ["main"]

SYNC_CONCURRENCY = 10  # aws-cli's s3 max_concurrent_requests default


def make_folder(root: Path, files: int, total_mb: float, seed: int = 0) -> None:
    """`files` files, `total_mb` in all: 95% small text files in nested packages, the rest larger binaries."""
    rng = random.Random(seed)
    total = int(total_mb * 1e6)
    big = max(1, files // 20)
    small_each = total // 4 // (files - big)  # a quarter of the bytes in small files
    big_each = (total - small_each * (files - big)) // big
    words = [f"name_{i}" for i in range(500)]
    for i in range(files):
        folder = root / f"pkg{i % 20}" / f"sub{i % 7}"
        folder.mkdir(parents=True, exist_ok=True)
        if i < big:
            (folder / f"blob{i}.bin").write_bytes(rng.randbytes(big_each))
        else:
            text = " ".join(rng.choice(words) for _ in range(small_each // 7 + 1))[:small_each]
            (folder / f"mod{i}.py").write_text(text)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_moto() -> tuple[subprocess.Popen, str]:  # type: ignore[type-arg]
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("moto's server did not start")


def client(endpoint: str) -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="bench",
                        aws_secret_access_key="bench")  # fmt: skip


def sync_like(s3: Any, folder: Path, bucket: str, prefix: str) -> None:
    """`aws s3 sync`: list what is there, upload every file that is missing or of another size."""
    there = {o["Key"]: o["Size"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
             for o in page.get("Contents", [])}  # fmt: skip
    files = [p for p in folder.rglob("*") if p.is_file()]
    todo = [p for p in files if there.get(f"{prefix}/{p.relative_to(folder).as_posix()}") != p.stat().st_size]
    with ThreadPoolExecutor(SYNC_CONCURRENCY) as pool:
        list(pool.map(lambda p: s3.upload_file(str(p), bucket, f"{prefix}/{p.relative_to(folder).as_posix()}"), todo))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--mb", type=float, default=50.0)
    args = parser.parse_args()
    proc, endpoint = start_moto()
    try:
        s3 = client(endpoint)
        s3.create_bucket(Bucket="bench")
        puts: list[str] = []
        s3.meta.events.register("before-call.s3.*", lambda model, **_: puts.append(model.name) if model.name in (
            "PutObject", "UploadPart", "CreateMultipartUpload") else None)  # fmt: skip
        with tempfile.TemporaryDirectory(prefix="bench-code-") as tmp:
            folder = Path(tmp) / "repo"
            make_folder(folder, args.files, args.mb)
            size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
            print(f"folder: {args.files} files, {size / 1e6:.1f} MB; moto S3 at {endpoint}; {os.cpu_count()} CPUs")
            ratios, again = [], []
            for r in range(args.rounds):
                target = f"s3://bench/r{r}/_code/{{content-sha256}}.tar.gz"

                def ours() -> float:
                    start = time.perf_counter()
                    ship(
                        collect(CodeConfig(dir=str(folder), max_size="1GiB")),
                        target,
                        lambda _m: None,
                        known=Path(tmp) / f"known-{r}.json",
                        s3=s3,
                    )  # as submit does: <state dir>/code-archives.json
                    return time.perf_counter() - start

                def sync() -> float:
                    start = time.perf_counter()
                    sync_like(s3, folder, "bench", f"r{r}/sync")
                    return time.perf_counter() - start

                first, second = (ours, sync) if r % 2 == 0 else (sync, ours)
                t = {first.__name__: first(), second.__name__: second()}
                puts.clear()
                t_again = ours()
                again.append((t_again, len(puts)))
                ratios.append(t["sync"] / t["ours"])
                print(f"round {r + 1}: ours {t['ours']:.2f} s, sync-like {t['sync']:.2f} s, ratio {ratios[-1]:.2f}; "
                      f"second submit {t_again:.2f} s with {len(puts)} PUT requests")  # fmt: skip
            print(f"median ratio sync-like / ours: {statistics.median(ratios):.2f} (target >= 2); "
                  f"second submit PUTs: {max(n for _t, n in again)} (target 0)")  # fmt: skip
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
