"""Each platform's container contract, applied to the request our backend planned.

- SageMaker: AWS's own local mode runs the CreateTrainingJob request
  (tests/conformance/sagemaker_local_mode.py, in the sagemaker SDK's venv).
- Vertex AI: one container per replica of each worker pool, with the environment
  Vertex documents for custom containers: CLUSTER_SPEC and TF_CONFIG (pool 0 is
  the chief), MASTER_ADDR/MASTER_PORT/WORLD_SIZE/RANK, the AIP_* variables of
  baseOutputDirectory, and each bucket under /gcs/<bucket> (Cloud Storage FUSE).
  https://cloud.google.com/vertex-ai/docs/training/distributed-training
  https://cloud.google.com/vertex-ai/docs/training/code-requirements#environment-variables
- Azure ML: one container per instance with what the PyTorch distribution sets
  with process_count_per_instance=1: MASTER_ADDR, MASTER_PORT, NODE_RANK,
  WORLD_SIZE (= processes = instances), RANK, LOCAL_RANK, plus the AZUREML_*
  run variables; `${{inputs.X}}` / `${{outputs.X}}` in the command are replaced
  by the folders Azure ML mounts them at.
  https://learn.microsoft.com/azure/machine-learning/how-to-train-distributed-gpu#pytorch

What only the test harness adds is named where it is added: the emulator's
address in each SDK's standard variable (the job's identity on the real cloud).
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import threading
from pathlib import Path
from typing import Any, Callable, Mapping

from tests.conformance.cluster import Cluster, Node

__all__ = ["ContainerJob", "SageMakerLocalJob", "vertex_nodes", "azureml_nodes", "VERTEX_PORT", "AZUREML_PORT"]

VERTEX_PORT = 2222  # the port Vertex AI gives every replica in CLUSTER_SPEC
AZUREML_PORT = 6105  # the MASTER_PORT Azure ML's PyTorch distribution sets


class ContainerJob:
    """A job whose nodes the test starts itself (Vertex AI, Azure ML)."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster.start()

    def logs(self) -> str:
        return self.cluster.logs()

    def terminate(self) -> None:
        self.cluster.signal("SIGTERM")

    def wait(self, timeout: float) -> list[int]:
        return self.cluster.wait(timeout)

    def cleanup(self) -> None:
        self.cluster.remove()


class SageMakerLocalJob:
    """A CreateTrainingJob request run by SageMaker's local mode in a subprocess."""

    def __init__(self, python: str, request: Mapping[str, Any], s3_endpoint: str, workdir: Path, env: Mapping[str, str],
                 docker: Any, image: str) -> None:  # fmt: skip
        self.docker, self.image = docker, image
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "request.json").write_text(json.dumps(request))
        (workdir / "root").mkdir(exist_ok=True)
        driver = Path(__file__).with_name("sagemaker_local_mode.py")
        self.proc = subprocess.Popen(
            [python, str(driver), str(workdir / "request.json"), s3_endpoint, str(workdir / "root")],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=dict(env), cwd=workdir,
        )  # fmt: skip
        self._out: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self._out.append(raw.decode(errors="replace"))

    def logs(self) -> str:
        return "".join(self._out)

    def containers(self) -> list[Any]:
        found = self.docker.containers.list(all=True, filters={"ancestor": self.image})
        return [c for c in found if re.search(r"(^|-)algo-\d+-\w+$", c.name)]  # <random>-algo-N-<suffix>

    def terminate(self) -> None:
        for container in self.containers():
            container.reload()
            if container.status == "running":
                container.kill(signal="SIGTERM")

    def wait(self, timeout: float) -> list[int]:
        """Each host's exit code, one per host: the entrypoint's own last line (`[launcher] exit code N`),
        else the engine's record of the host's container.

        docker-compose runs local mode with --abort-on-container-exit, so it reports
        (`algo-2-xxxx exited with code N`) only the host that ended first, stops the
        others and shows no more of their output; where it does report a host, it must
        agree with that host's own line.
        """
        self.proc.wait(timeout)
        self._reader.join(30)
        logs = self.logs()
        own = dict(re.findall(r"(algo-\d+)-\w+ *\|(?:\x1b\[[0-9;]*m)? *\[launcher\] exit code (\d+)", logs))
        compose = dict(re.findall(r"(algo-\d+)-\w+ exited with code (\d+)", logs))
        assert all(own.get(host, code) == code for host, code in compose.items()), (
            f"compose {compose} vs the hosts' own {own}"
        )
        for container in self.containers():  # compose stops showing the others' output once it aborts: ask the engine
            container.reload()
            host = re.search(r"(algo-\d+)-\w+$", container.name)
            if host and container.status == "exited":
                own.setdefault(host.group(1), str(container.attrs["State"]["ExitCode"]))
        return [int(code) for _, code in sorted(own.items())]

    def cleanup(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for container in self.containers():
            container.remove(force=True)


# ---------------------------------------------------------------- Vertex AI


def vertex_nodes(
    body: Mapping[str, Any], job_id: str, gcs_folders: Mapping[str, Path], harness_env: Mapping[str, str]
) -> list[Node]:
    """One Node per replica of the CustomJob body's worker pools."""
    pools = body["jobSpec"]["workerPoolSpecs"]
    hosts = [[f"workerpool{i}-{r}" for r in range(int(p.get("replicaCount", 1)))] for i, p in enumerate(pools)]
    cluster = {f"workerpool{i}": [f"{h}:{VERTEX_PORT}" for h in names] for i, names in enumerate(hosts)}
    world = sum(len(names) for names in hosts)
    volumes = {str(folder): {"bind": f"/gcs/{bucket}", "mode": "rw"} for bucket, folder in gcs_folders.items()}
    nodes, rank = [], 0
    for i, pool in enumerate(pools):
        container = pool["containerSpec"]
        for index, host in enumerate(hosts[i]):
            task = {"type": f"workerpool{i}", "index": index, "trial": ""}
            env = {e["name"]: e["value"] for e in container.get("env", [])}
            env.update(_vertex_env(body, job_id, cluster, task, hosts[0][0], world, rank))
            env.update(harness_env)
            command = [*container.get("command", []), *container.get("args", [])]
            nodes.append(Node(host, command, env, volumes))
            rank += 1
    return nodes


def _vertex_env(body: Mapping[str, Any], job_id: str, cluster: Mapping[str, Any], task: Mapping[str, Any],
                chief: str, world: int, rank: int) -> dict[str, str]:  # fmt: skip
    spec = {"cluster": cluster, "environment": "cloud", "task": task, "job": json.dumps(body["jobSpec"])}
    env = {
        "CLUSTER_SPEC": json.dumps(spec),
        "TF_CONFIG": json.dumps({"cluster": cluster, "task": task, "environment": "cloud"}),
        "MASTER_ADDR": chief,
        "MASTER_PORT": str(VERTEX_PORT),
        "WORLD_SIZE": str(world),
        "RANK": str(rank),
        "CLOUD_ML_JOB_ID": job_id,
        "AIP_TRAINING_DATA_URI": "",
    }
    base = (body["jobSpec"].get("baseOutputDirectory") or {}).get("outputUriPrefix")
    if base:
        base = base.rstrip("/")
        env.update(AIP_MODEL_DIR=f"{base}/model/", AIP_CHECKPOINT_DIR=f"{base}/checkpoints/",
                   AIP_TENSORBOARD_LOG_DIR=f"{base}/logs/")  # fmt: skip
    return {k: v for k, v in env.items() if v}


# ---------------------------------------------------------------- Azure ML

AZUREML_MOUNTS = "/mnt/azureml/cr/j/{job}/cap/data-capability/wd"


def azureml_nodes(job: Mapping[str, Any], job_id: str, mount: Callable[[str, Mapping[str, Any]], Path],
                  harness_env: Mapping[str, str]) -> list[Node]:  # fmt: skip
    """One Node per instance of the command job; `mount(name, io)` gives the host folder of an input/output."""
    dist = job.get("distribution") or {}
    assert dist.get("type") == "pytorch", f"expected the PyTorch distribution, got {dist}"
    per_node = int(dist.get("process_count_per_instance", 1))
    assert per_node == 1, "the entrypoint runs torchrun itself: process_count_per_instance must be 1"
    count = int((job.get("resources") or {}).get("instance_count", 1))
    base = AZUREML_MOUNTS.format(job=job_id)
    command, volumes = job["command"], {}
    for kind in ("inputs", "outputs"):
        for name, io in (job.get(kind) or {}).items():
            if not isinstance(io, Mapping) or "type" not in io:
                command = command.replace("${{%s.%s}}" % (kind, name), shlex.quote(str(io)))  # a literal input
                continue
            target = f"{base}/{kind.upper()}_{name}"
            mode = "ro" if io.get("mode", "ro_mount") in ("ro_mount", "download") else "rw"
            volumes[str(mount(name, io))] = {"bind": target, "mode": mode}
            command = command.replace("${{%s.%s}}" % (kind, name), target)
    assert "${{" not in command, f"unresolved Azure ML expression in {command}"
    nodes = []
    for rank in range(count):
        env = {str(k): str(v) for k, v in (job.get("environment_variables") or {}).items()}
        env.update(
            MASTER_ADDR="node-0", MASTER_PORT=str(AZUREML_PORT), NODE_RANK=str(rank), WORLD_SIZE=str(count * per_node),
            RANK=str(rank), LOCAL_RANK="0", LOCAL_WORLD_SIZE=str(per_node),
            AZUREML_RUN_ID=job_id, AZUREML_ARM_PROJECT_NAME=str(job.get("experiment_name", "")),
            AZUREML_CR_NODE_RANK=str(rank), AZ_BATCHAI_CLUSTER_NAME="conformance",
        )  # fmt: skip
        env.update(harness_env)
        nodes.append(Node(f"node-{rank}", ["/bin/bash", "-c", command], env, dict(volumes)))
    return nodes
