"""Where am I running, and how does this node join the torchrun rendezvous?

The same image runs on every backend; each platform tells a node its rank and
its master differently:

- SageMaker (own image): /opt/ml/input/config/resourceconfig.json holds
  `hosts` (sorted) and `current_host`; SM_* variables are NOT set for a plain
  image. https://docs.aws.amazon.com/sagemaker/latest/dg/your-algorithms-training-algo-running-container.html
- Vertex AI: CLUSTER_SPEC (JSON) on every replica; workerpool0 is the chief.
  https://cloud.google.com/vertex-ai/docs/training/distributed-training
- Azure ML, PyTorch distribution with process_count_per_instance=1:
  MASTER_ADDR, MASTER_PORT, NODE_RANK (and WORLD_SIZE = nodes).
- Slurm (one task per node): the node list in SLURM_STEP_NODELIST (else SLURM_JOB_NODELIST), in Slurm's
  hostlist syntax (`node[1-2,5]`, `a[01-03],b1`), expanded here (no `scontrol` inside a container); the node
  rank is this host's index in it, the master the first host. SLURM_NODEID is not trusted: with Slurm
  22.05's OCI containers it is missing under srun and the batch step's value on every node under sbatch.
  The port comes from the job id, so two jobs sharing a node do not collide.
- local: one node; torchrun's own standalone rendezvous.

A Rendezvous also carries `environment`: variables the platform expects the
training processes to have and does not set itself. On SageMaker that is
what its own training toolkit sets for torchrun: NCCL_SOCKET_IFNAME from
resourceconfig.json's `network_interface_name`, and on EFA instance types
FI_PROVIDER=efa (plus FI_EFA_USE_DEVICE_RDMA=1, RDMAV_FORK_SAFE=1 where EFA
does RDMA). https://github.com/aws/sagemaker-training-toolkit (torch_distributed.py)

Every function here is pure over (environ, files) so tests feed sample values.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

__all__ = [
    "Rendezvous",
    "detect",
    "expand_hostlist",
    "slurm",
    "sagemaker_environment",
    "SAGEMAKER_RESOURCE_CONFIG",
    "DEFAULT_PORT",
    "EFA_INSTANCES",
    "EFA_RDMA_INSTANCES",
]

SAGEMAKER_RESOURCE_CONFIG = Path("/opt/ml/input/config/resourceconfig.json")
DEFAULT_PORT = 29500
# SageMaker instance types with EFA that NCCL uses, and those where EFA also does RDMA (the
# lists SageMaker's training toolkit keys its EFA settings on, plus the later p5/p6 types).
EFA_INSTANCES = frozenset({
    "ml.g4dn.8xlarge", "ml.g4dn.12xlarge", "ml.g4dn.16xlarge", "ml.g5.48xlarge", "ml.g6.48xlarge",
    "ml.g6e.48xlarge", "ml.p3dn.24xlarge", "ml.p4d.24xlarge", "ml.p4de.24xlarge", "ml.p5.48xlarge",
    "ml.p5e.48xlarge", "ml.p5en.48xlarge", "ml.p6-b200.48xlarge", "ml.trn1.32xlarge", "ml.trn1n.32xlarge",
})  # fmt: skip
EFA_RDMA_INSTANCES = frozenset({"ml.p4d.24xlarge", "ml.p4de.24xlarge", "ml.trn1.32xlarge", "ml.trn1n.32xlarge"})


@dataclass(frozen=True)
class Rendezvous:
    platform: str
    nnodes: int
    node_rank: int
    master_addr: str
    master_port: int
    environment: Mapping[str, str] = field(default_factory=dict)  # for the training processes (see above)

    @property
    def is_chief(self) -> bool:
        return self.node_rank == 0

    def torchrun_args(self, nproc: int) -> list[str]:
        if self.nnodes == 1:
            return ["--standalone", "--nnodes", "1", "--nproc_per_node", str(nproc)]
        return [
            "--nnodes", str(self.nnodes),
            "--node_rank", str(self.node_rank),
            "--master_addr", self.master_addr,
            "--master_port", str(self.master_port),
            "--nproc_per_node", str(nproc),
        ]  # fmt: skip


def detect(environ: Mapping[str, str] | None = None, resource_config: Path = SAGEMAKER_RESOURCE_CONFIG,
           hostname: str | None = None) -> Rendezvous:  # fmt: skip
    """The rendezvous for this node, from the first platform whose marker is present."""
    environ = os.environ if environ is None else environ
    if resource_config.exists():
        return sagemaker(json.loads(resource_config.read_text()), environ)
    if "CLUSTER_SPEC" in environ:
        return vertex(environ)
    if "AZUREML_RUN_ID" in environ:
        return azureml(environ)
    if "SLURM_JOB_ID" in environ and (environ.get("SLURM_STEP_NODELIST") or environ.get("SLURM_JOB_NODELIST")):
        return slurm(environ, socket.gethostname() if hostname is None else hostname)
    if "NODE_RANK" in environ and "MASTER_ADDR" in environ:
        return azureml(environ)
    return Rendezvous("local", 1, 0, "127.0.0.1", int(environ.get("MASTER_PORT", DEFAULT_PORT)))


def sagemaker(config: Mapping[str, object], environ: Mapping[str, str]) -> Rendezvous:
    hosts = sorted(str(h) for h in config["hosts"])  # type: ignore[union-attr]
    current = str(config["current_host"])
    port = int(environ.get("MASTER_PORT", DEFAULT_PORT))
    return Rendezvous("sagemaker", len(hosts), hosts.index(current), hosts[0], port, sagemaker_environment(config))


def sagemaker_environment(config: Mapping[str, object]) -> dict[str, str]:
    """NCCL's network interface and, on EFA instance types, libfabric's EFA provider."""
    env = {}
    if config.get("network_interface_name"):
        env["NCCL_SOCKET_IFNAME"] = str(config["network_interface_name"])
    instance = str(config.get("current_instance_type", ""))
    if instance in EFA_INSTANCES:
        env["FI_PROVIDER"] = "efa"
    if instance in EFA_RDMA_INSTANCES:
        env.update(FI_EFA_USE_DEVICE_RDMA="1", RDMAV_FORK_SAFE="1")
    return env


def vertex(environ: Mapping[str, str]) -> Rendezvous:
    spec = json.loads(environ["CLUSTER_SPEC"])
    cluster: dict[str, list[str]] = spec["cluster"]
    pools = sorted(cluster, key=lambda name: int(name.removeprefix("workerpool")))
    task = spec["task"]
    rank = 0
    for pool in pools:
        if pool == task["type"]:
            rank += int(task["index"])
            break
        rank += len(cluster[pool])
    chief_host, _, chief_port = cluster["workerpool0"][0].partition(":")
    addr = environ.get("MASTER_ADDR", chief_host)
    port = int(environ.get("MASTER_PORT", chief_port or DEFAULT_PORT))
    return Rendezvous("vertex", sum(len(cluster[p]) for p in pools), rank, addr, port)


def azureml(environ: Mapping[str, str]) -> Rendezvous:
    # With process_count_per_instance=1, WORLD_SIZE counts nodes, not processes.
    nnodes = int(environ.get("WORLD_SIZE", "1"))
    rank = int(environ.get("NODE_RANK", environ.get("RANK", "0")))
    addr = environ.get("MASTER_ADDR", "127.0.0.1")
    return Rendezvous("azureml", nnodes, rank, addr, int(environ.get("MASTER_PORT", DEFAULT_PORT)))


SLURM_PORT_SPAN = 1000  # MASTER_PORT = DEFAULT_PORT + job id % this, unless MASTER_PORT is set


def expand_hostlist(hostlist: str) -> list[str]:
    """Slurm's hostlist syntax, expanded in order: `node[1-2,5]`, `a[01-03],b1`, `r[1-2]n[1-2]` (zero padding kept)."""
    hosts: list[str] = []
    for item in _split_top(hostlist.strip()):
        parts = re.split(r"(\[[^\]]*\])", item)
        choices = [_expand_range(part[1:-1]) if part.startswith("[") else [part] for part in parts]
        hosts += ["".join(combo) for combo in itertools.product(*choices)]
    return hosts


def _split_top(text: str) -> list[str]:
    """Split on the commas outside brackets."""
    items, depth, start = [], 0, 0
    for i, char in enumerate(text):
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
    if depth != 0:
        raise ValueError(f"unbalanced brackets in the Slurm node list {text!r}")
    items.append(text[start:])
    return [item for item in items if item]


def _expand_range(body: str) -> list[str]:
    out = []
    for piece in body.split(","):
        low, dash, high = piece.partition("-")
        if not low.isdigit() or (dash and not high.isdigit()):
            raise ValueError(f"{piece!r} is not a Slurm node range (like 1-4 or 07)")
        width = len(low)
        out += [f"{n:0{width}d}" for n in range(int(low), int(high or low) + 1)]
    return out


def slurm(environ: Mapping[str, str], hostname: str) -> Rendezvous:
    """One task per node: the node rank is the hostname's index in the step's (else the job's) node list."""
    hosts = expand_hostlist(environ.get("SLURM_STEP_NODELIST") or environ["SLURM_JOB_NODELIST"])
    short = hostname.split(".")[0]
    names = [host.split(".")[0] for host in hosts]
    if short not in names:
        raise RuntimeError(
            f"this node's hostname {hostname!r} is not in the Slurm node list {hosts}: cannot tell its rank"
        )
    job = environ.get("SLURM_JOB_ID", "0").split("_")[0]
    port = int(environ.get("MASTER_PORT") or DEFAULT_PORT + (int(job) if job.isdigit() else 0) % SLURM_PORT_SPAN)
    return Rendezvous("slurm", len(hosts), names.index(short), hosts[0], port)
