"""Checkpoint transfers: launcher.storage against each SDK's own best single call, on all three emulated stores.

    .venv/bin/python benchmarks/bench_storage.py [--stores s3,gcs,azure] [--rounds 1]
    BENCH_BIG_MB=500 BENCH_SMALL_FILES=50 BENCH_SMALL_KB=512 (environment; smaller on a short machine)

Starts each server in its own process on loopback (moto S3, gcp-storage-emulator
in memory, Azurite), then for two folders - one BENCH_BIG_MB file, and
BENCH_SMALL_FILES files of BENCH_SMALL_KB - times, side by side:
- up:   Pusher.push (upload, sha256 of every file, manifest last) vs the SDK's
        own call per file: boto3 `upload_file`, google-cloud-storage
        `upload_from_filename`, azure-storage-blob `upload_blob(max_concurrency=8)`;
- down: sync.pull (download, sha256 verification) vs `download_file`,
        `download_to_filename`, `download_blob(max_concurrency=8).readinto`.
Our side hashes every byte and the SDK calls do not; both share the CPU with
the server. Prints the ratio sdk_time / launcher_time per store, folder and
direction (>= 1.0: at least as fast as the SDK), best of --rounds. Rounds
alternate which side goes first and delete what they stored, so neither side
always meets a fuller or warmer server.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from launcher.storage import open_store  # noqa: E402
from launcher.storage.sync import Pusher, pull  # noqa: E402

__all__ = ["main"]

CONCURRENCY = 8  # the SDK side's max_concurrency (Azure); our stores use their defaults
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="  # Azurite's public dev key


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, what: str) -> None:  # type: ignore[type-arg]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"{what} did not start")


class Server:
    """One emulator process, the SDK client both sides use, and the SDK's own transfer calls."""

    name = ""
    scheme = ""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(self.command(tmp), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port, self.proc, self.name)
        self.client = self.make_client()
        self.create_bucket()

    def command(self, tmp: Path) -> list[str]:
        raise NotImplementedError

    def make_client(self) -> Any:
        raise NotImplementedError

    def create_bucket(self) -> None:
        raise NotImplementedError

    def sdk_up(self, path: Path, name: str) -> None:
        raise NotImplementedError

    def sdk_down(self, name: str, path: Path) -> None:
        raise NotImplementedError

    def store(self, prefix: str):  # type: ignore[no-untyped-def]
        return open_store(f"{self.scheme}://bench/{prefix}", **{self.name: self.client})

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


class S3(Server):
    name, scheme = "s3", "s3"

    def command(self, tmp: Path) -> list[str]:
        return [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]

    def make_client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=f"http://127.0.0.1:{self.port}", region_name="us-east-1",
                            aws_access_key_id="x", aws_secret_access_key="x", config=Config(max_pool_connections=32))  # fmt: skip

    def create_bucket(self) -> None:
        self.client.create_bucket(Bucket="bench")

    def sdk_up(self, path: Path, name: str) -> None:
        self.client.upload_file(str(path), "bench", name)

    def sdk_down(self, name: str, path: Path) -> None:
        self.client.download_file("bench", name, str(path))


class GCS(Server):
    name, scheme = "gcs", "gs"

    def command(self, tmp: Path) -> list[str]:
        return [str(Path(sys.executable).parent / "gcp-storage-emulator"), "start", "--host", "127.0.0.1",
                "--port", str(self.port), "--in-memory", "-q"]  # fmt: skip

    def make_client(self) -> Any:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        return storage.Client(project="bench", credentials=AnonymousCredentials(),
                              client_options={"api_endpoint": f"http://127.0.0.1:{self.port}"})  # fmt: skip

    def create_bucket(self) -> None:
        self.client.create_bucket("bench")

    def sdk_up(self, path: Path, name: str) -> None:
        self.client.bucket("bench").blob(name).upload_from_filename(str(path))

    def sdk_down(self, name: str, path: Path) -> None:
        self.client.bucket("bench").blob(name).download_to_filename(str(path))


class Azure(Server):
    name, scheme = "azure", "az"

    def command(self, tmp: Path) -> list[str]:
        binary = shutil.which("azurite-blob") or "azurite-blob"
        return [binary, "--blobHost", "127.0.0.1", "--blobPort", str(self.port), "--location", str(tmp / "azurite"),
                "--skipApiVersionCheck", "--silent"]  # fmt: skip

    def connection(self) -> str:
        return (f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={AZURITE_KEY};"
                f"BlobEndpoint=http://127.0.0.1:{self.port}/devstoreaccount1;")  # fmt: skip

    def make_client(self) -> Any:
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient.from_connection_string(self.connection())  # the SDK's own defaults

    def store(self, prefix: str):  # type: ignore[no-untyped-def]
        from launcher.storage.azure import default_client

        # ours as shipped: the client launcher.storage.azure builds (its block and chunk sizes)
        return open_store(
            f"az://bench/{prefix}", azure=default_client({"AZURE_STORAGE_CONNECTION_STRING": self.connection()})
        )

    def create_bucket(self) -> None:
        self.client.create_container("bench")

    def sdk_up(self, path: Path, name: str) -> None:
        with open(path, "rb") as f:
            self.client.get_blob_client("bench", name).upload_blob(f, overwrite=True, max_concurrency=CONCURRENCY)

    def sdk_down(self, name: str, path: Path) -> None:
        with open(path, "wb") as f:
            self.client.get_blob_client("bench", name).download_blob(max_concurrency=CONCURRENCY).readinto(f)


SERVERS: dict[str, Callable[[Path], Server]] = {"s3": S3, "gcs": GCS, "azure": Azure}


def make_folder(root: Path, sizes: list[int]) -> Path:
    root.mkdir(parents=True)
    for i, size in enumerate(sizes):
        with open(root / f"part-{i:03d}.pt", "wb") as f:
            for start in range(0, size, 1 << 20):
                f.write(os.urandom(min(1 << 20, size - start)))
    return root


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def files_of(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def one_round(server: Server, folder: Path, tmp: Path, tag: str, sdk_first: bool) -> dict[str, float]:
    """Both sides up, then both down, in the order given; then every object of the round is deleted,
    so a server that holds objects in memory (moto, the GCS emulator) is as full for each round."""
    sdk_prefix = f"sdk-{tag}"
    down_sdk, down_ours = tmp / f"sdk-down-{tag}", tmp / f"ours-down-{tag}"
    down_sdk.mkdir()
    pusher = Pusher(server.store(f"ours-{tag}"), folder, keep=3, log=lambda _m: None, scratch=tmp / f"scratch-{tag}")
    steps = {
        "sdk_up": lambda: [server.sdk_up(p, f"{sdk_prefix}/{p.name}") for p in files_of(folder)],
        "ours_up": pusher.push,
        "sdk_down": lambda: [server.sdk_down(f"{sdk_prefix}/{p.name}", down_sdk / p.name) for p in files_of(folder)],
        "ours_down": lambda: pull(server.store(f"ours-{tag}"), down_ours, log=lambda _m: None),
    }
    order = (
        ["sdk_up", "ours_up", "sdk_down", "ours_down"] if sdk_first else ["ours_up", "sdk_up", "ours_down", "sdk_down"]
    )
    result = {key: timed(steps[key]) for key in order}
    shutil.rmtree(down_sdk)
    shutil.rmtree(down_ours)
    for prefix in (sdk_prefix, f"ours-{tag}"):
        store = server.store(prefix)
        store.delete([info.key for info in store.list()])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stores", default="s3,gcs,azure")
    parser.add_argument("--rounds", type=int, default=1, help="repetitions; the best time of each side is kept")
    args = parser.parse_args()
    big_mb = int(os.environ.get("BENCH_BIG_MB", "500"))
    small_n, small_kb = int(os.environ.get("BENCH_SMALL_FILES", "50")), int(os.environ.get("BENCH_SMALL_KB", "512"))
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-storage-") as name:
        tmp = Path(name)
        folders = {
            f"1 x {big_mb} MB": make_folder(tmp / "big", [big_mb << 20]),
            f"{small_n} x {small_kb} KB": make_folder(tmp / "small", [small_kb << 10] * small_n),
        }
        print(
            f"folders: {', '.join(folders)}; best of {args.rounds} round(s); ratio = SDK time / launcher time",
            flush=True,
        )
        for store_name in args.stores.split(","):
            server = SERVERS[store_name](tmp)
            try:
                for label, folder in folders.items():
                    best: dict[str, float] = {}
                    for r in range(args.rounds):
                        tag = f"{label.split()[0]}-{label.split()[2]}-{r}"
                        for key, value in one_round(server, folder, tmp, tag, sdk_first=r % 2 == 0).items():
                            best[key] = min(best.get(key, value), value)
                    mb = sum(p.stat().st_size for p in files_of(folder)) / 1e6
                    rows.append((store_name, label, mb, best))
                    report(rows[-1])
            finally:
                server.stop()
    print("\nsummary (SDK time / launcher time; >= 1.00: at least as fast as the SDK)")
    for store_name, label, _mb, best in rows:
        print(
            f"  {store_name:6s} {label:14s} up {best['sdk_up'] / best['ours_up']:.2f}   down {best['sdk_down'] / best['ours_down']:.2f}"
        )


def report(row: tuple[str, str, float, dict[str, float]]) -> None:
    store_name, label, mb, best = row
    for what in ("up", "down"):
        sdk, ours = best[f"sdk_{what}"], best[f"ours_{what}"]
        print(f"{store_name:6s} {label:14s} {what:>4}: SDK {sdk:6.2f}s ({mb / sdk:6.1f} MB/s)  launcher {ours:6.2f}s "
              f"({mb / ours:6.1f} MB/s)  ratio {sdk / ours:.2f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
