"""Run the training image as several nodes on one Docker network, the way a platform does.

A `Node` is what the platform gives one machine of a job: a hostname its peers
resolve, the environment the platform documents, the command from our plan and
the folders it mounts. `Cluster` starts them, waits, signals them (a spot reclaim
is a SIGTERM to every container) and keeps their logs. `store_results` reads a
run back from its checkpoint store through `launch ckpt pull`, as a user would.
"""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

__all__ = [
    "Node", "Cluster", "RunResult", "bridge_address", "free_port", "wait_port", "wait_until", "store_results",
    "MIN_TOP1", "store_program_results",
]  # fmt: skip

MIN_TOP1 = 0.97  # digits, resnet18 at 32 px: ~0.99 after 8 epochs (DESIGN.md)
REPO = Path(__file__).resolve().parents[2]


def bridge_address() -> str:
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "docker0"], capture_output=True, text=True, check=False)
    fields = out.stdout.split()
    return fields[fields.index("inet") + 1].split("/")[0] if "inet" in fields else ""


def free_port(addr: str) -> int:
    with socket.socket() as s:
        s.bind((addr, 0))
        return int(s.getsockname()[1])


def wait_port(addr: str, port: int, timeout: float = 30.0) -> bool:
    return wait_until(lambda: _connects(addr, port), timeout, 0.1)


def _connects(addr: str, port: int) -> bool:
    try:
        with socket.create_connection((addr, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_until(condition: Callable[[], Any], timeout: float, every: float = 1.0) -> Any:
    """The first truthy value of `condition()`, or None after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    return None


@dataclass
class Node:
    hostname: str
    command: list[str]  # entrypoint + arguments, as the platform runs them
    env: dict[str, str]
    volumes: dict[str, dict[str, str]] = field(default_factory=dict)  # docker-py form: host -> {bind, mode}


class Cluster:
    """Containers of one job on a private network; peers resolve each other by hostname."""

    def __init__(self, docker: Any, image: str, nodes: list[Node], label: str) -> None:
        self.docker, self.image, self.nodes, self.label = docker, image, nodes, label
        self.network = docker.networks.create(f"conf-{label}-{uuid.uuid4().hex[:6]}", driver="bridge")
        self.containers: list[Any] = []

    def start(self) -> "Cluster":
        try:
            return self._start()
        except BaseException:  # a half-started cluster (the engine timed out under load) is not left running
            self.remove()
            raise

    def _start(self) -> "Cluster":
        for node in self.nodes:
            container = self.docker.containers.create(
                self.image, node.command[1:], entrypoint=node.command[:1], environment=node.env,
                hostname=node.hostname, name=f"{self.network.name}-{node.hostname}", volumes=node.volumes,
                labels={"launcher.conformance": self.label}, shm_size="1g",
            )  # fmt: skip
            self.network.connect(container, aliases=[node.hostname])
            self.containers.append(container)
        for container in self.containers:
            container.start()
        return self

    def wait(self, timeout: float) -> list[int]:
        codes = []
        for container in self.containers:
            codes.append(int(container.wait(timeout=timeout)["StatusCode"]))
        return codes

    def signal(self, sig: str = "SIGTERM") -> None:
        for container in self.containers:
            container.reload()
            if container.status == "running":
                container.kill(signal=sig)

    def logs(self) -> str:
        parts = []
        for node, container in zip(self.nodes, self.containers):
            text = container.logs().decode(errors="replace")
            parts.append("".join(f"[{node.hostname}] {line}\n" for line in text.splitlines()))
        return "".join(parts)

    def remove(self) -> None:
        for container in self.containers:
            try:
                container.remove(force=True)
            except Exception:  # noqa: BLE001 - already gone; the network must still go
                pass
        self.network.remove()


@dataclass
class RunResult:
    manifest: dict[str, Any]
    rows: list[dict[str, str]]  # results.csv

    @property
    def epochs(self) -> list[int]:
        return [int(row["epoch"]) for row in self.rows]

    @property
    def best_top1(self) -> float:
        return max(float(row["top1"]) for row in self.rows)


def _pull(uri: str, run: str, env: Mapping[str, str], dest: Path) -> dict[str, str]:
    """`launch ckpt pull` of the run's newest complete checkpoint into dest, as a user would; the env it used."""
    launch = [sys.executable, "-c", "from launcher.cli import main; main()"]
    full_env = {**os.environ, **env, "PYTHONPATH": str(REPO)}
    pulled = subprocess.run(
        [*launch, "ckpt", "pull", f"{uri.rstrip('/')}/{run}", str(dest)],
        capture_output=True, text=True, env=full_env, timeout=300, check=False,
    )  # fmt: skip
    assert pulled.returncode == 0, f"launch ckpt pull failed:\n{pulled.stdout}\n{pulled.stderr}"
    return full_env


def store_program_results(uri: str, run: str, env: Mapping[str, str], dest: Path) -> dict[str, Any]:
    """The results.json a user program wrote, from the run's newest complete checkpoint in its store."""
    _pull(uri, run, env, dest)
    return json.loads((dest / "results.json").read_text())


def store_results(uri: str, run: str, env: Mapping[str, str], dest: Path) -> RunResult:
    """Pull the newest complete checkpoint with `launch ckpt pull` and read its manifest and results.csv."""
    launch = [sys.executable, "-c", "from launcher.cli import main; main()"]
    full_env = _pull(uri, run, env, dest)
    listed = subprocess.run(
        [*launch, "ckpt", "ls", f"{uri.rstrip('/')}/{run}", "--json"],
        capture_output=True, text=True, env=full_env, timeout=300, check=False,
    )  # fmt: skip
    assert listed.returncode == 0, f"launch ckpt ls failed:\n{listed.stdout}\n{listed.stderr}"
    with open(dest / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return RunResult(_newest(json.loads(listed.stdout)), rows)


def _newest(listing: Any) -> dict[str, Any]:
    """The newest checkpoint's entry of `launch ckpt ls --json`."""
    entries = (
        listing if isinstance(listing, list) else listing.get("versions") or listing.get("checkpoints") or [listing]
    )
    return max(entries, key=lambda e: int(e.get("version", 0)))
