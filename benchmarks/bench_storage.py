"""Checkpoint transfer benchmark: launcher.storage vs plain boto3 calls, against a moto S3 server.

    .venv/bin/python benchmarks/bench_storage.py [--sizes 50,100,200] [--repeat 1]

Starts moto's S3 server in its own process on loopback, writes a folder of
random files (sizes in MB), then times
- upload: Pusher.push (sha256 + upload of every file, manifest last) vs
  boto3 `upload_file` per file with boto3's default TransferConfig;
- download: sync.pull (download + size/sha256 verification) vs boto3
  `download_file` per file;
- re-sync of the unchanged folder: counts the S3 upload calls made (must be 0).
Both sides run on the same CPU as the server: on a small machine the sha256
our side computes (and the SDK calls do not) competes with the server for CPU.
Prints seconds, MB/s and the ratio sdk_time / our_time (above 1: we are faster).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import boto3
from botocore.config import Config

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from launcher.storage import open_store  # noqa: E402
from launcher.storage.base import sha256_file  # noqa: E402
from launcher.storage.sync import STATE_FILE, Pusher, pull  # noqa: E402

__all__ = ["main"]

UPLOAD_OPS = {"PutObject", "UploadPart", "CreateMultipartUpload", "CompleteMultipartUpload"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    raise SystemExit("moto server did not start")


def client(endpoint: str):  # type: ignore[no-untyped-def]
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="x",
                        aws_secret_access_key="x", config=Config(max_pool_connections=32))  # fmt: skip


def make_folder(root: Path, sizes_mb: list[int]) -> Path:
    folder = root / "ckpt"
    folder.mkdir()
    for i, mb in enumerate(sizes_mb):
        with open(folder / f"part-{i}-{mb}MB.pt", "wb") as f:
            for _ in range(mb):
                f.write(os.urandom(1 << 20))
    return folder


def timed(fn) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def sdk_upload(s3, folder: Path, prefix: str) -> None:  # type: ignore[no-untyped-def]
    for path in sorted(p for p in folder.iterdir() if not p.name.startswith(".")):
        s3.upload_file(str(path), "bench", f"{prefix}/{path.name}")


def sdk_download(s3, folder: Path, prefix: str, dest: Path) -> None:  # type: ignore[no-untyped-def]
    dest.mkdir()
    for path in sorted(p for p in folder.iterdir() if not p.name.startswith(".")):
        s3.download_file("bench", f"{prefix}/{path.name}", str(dest / path.name))


def run_once(endpoint: str, folder: Path, tmp: Path, n: int) -> dict[str, float]:
    (folder / STATE_FILE).unlink(missing_ok=True)  # a first upload: nothing hashed yet
    s3 = client(endpoint)
    calls: Counter[str] = Counter()
    s3.meta.events.register("before-call.s3.*", lambda model, **_kw: calls.update([model.name]))
    store = open_store(f"s3://bench/ours-{n}", s3=s3)
    pusher = Pusher(store, folder, keep=3, log=lambda _m: None)
    result = {
        "sdk_up": timed(lambda: sdk_upload(s3, folder, f"sdk-{n}")),
        "ours_up": timed(pusher.push),
        "sdk_down": timed(lambda: sdk_download(s3, folder, f"sdk-{n}", tmp / f"sdk-dest-{n}")),
        "ours_down": timed(lambda: pull(store, tmp / f"ours-dest-{n}", log=lambda _m: None)),
    }
    result["sha256_only"] = timed(lambda: [sha256_file(p) for p in folder.iterdir() if not p.name.startswith(".")])
    calls.clear()
    sent_before = pusher.stats.bytes_sent
    result["resync"] = timed(pusher.push)
    result["resync_bytes"] = pusher.stats.bytes_sent - sent_before
    result["resync_upload_calls"] = sum(v for k, v in calls.items() if k in UPLOAD_OPS)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="50,100,200", help="file sizes in MB, comma-separated")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    total_mb = sum(sizes)
    proc, endpoint = start_moto()
    try:
        client(endpoint).create_bucket(Bucket="bench")
        with tempfile.TemporaryDirectory(prefix="bench-storage-") as tmp:
            folder = make_folder(Path(tmp), sizes)
            for n in range(args.repeat):
                report(run_once(endpoint, folder, Path(tmp), n), total_mb)
    finally:
        proc.terminate()
        proc.wait(10)


def report(r: dict[str, float], total_mb: int) -> None:
    print(f"folder: {total_mb} MB; moto S3 server in its own process on loopback")
    for what in ("up", "down"):
        sdk, ours = r[f"sdk_{what}"], r[f"ours_{what}"]
        print(f"{what:>5}load: boto3 {sdk:6.2f}s ({total_mb / sdk:6.1f} MB/s)  launcher {ours:6.2f}s "
              f"({total_mb / ours:6.1f} MB/s)  ratio sdk/launcher {sdk / ours:.2f}")  # fmt: skip
    print(f"(sha256 of the folder alone, which the plain SDK calls skip: {r['sha256_only']:.2f}s)")
    print(f"re-sync unchanged: {r['resync']:.2f}s, {r['resync_bytes']:.0f} bytes sent, "
          f"{r['resync_upload_calls']:.0f} upload calls")  # fmt: skip


if __name__ == "__main__":
    main()
