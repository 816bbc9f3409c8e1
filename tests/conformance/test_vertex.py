"""Vertex AI: our CustomJob body, run as two replicas under Vertex's documented container contract.

The replicas get CLUSTER_SPEC / TF_CONFIG (workerpool0 = chief, workerpool1 = the
other node), MASTER_ADDR/MASTER_PORT/WORLD_SIZE/RANK and the AIP_* variables, and
see the bucket at /gcs/<bucket> as Cloud Storage FUSE shows it: the emulator's
own object folder, bind-mounted. The digits ImageFolder is written into that
folder (as a copy through the FUSE mount would; the emulator rewrites its whole
index on every API upload, minutes for 1,797 files) and read through the mount;
checkpoints go through the GCS API (the emulator, reached through
STORAGE_EMULATOR_HOST: the one thing the harness adds).
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Any

from launcher.api import Launcher
from launcher.spec import validate_spec
from launcher.staging.code import stage_code
from tests.conformance.cluster import Cluster, store_program_results, store_results
from tests.conformance.conftest import BUCKET
from tests.conformance.platforms import ContainerJob, vertex_nodes
from tests.conformance.scenario import (
    TRAIN,
    preempt_then_resume,
    program_folder,
    program_preempt_then_resume,
    program_spec,
)


def gcs_client(endpoint: str) -> Any:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    return storage.Client(
        project="conformance", credentials=AnonymousCredentials(), client_options={"api_endpoint": endpoint}
    )


def _bucket_with_digits(gcs_server: tuple[str, Path], digits: Path) -> Any:
    endpoint, buckets = gcs_server
    client = gcs_client(endpoint)
    if client.lookup_bucket(BUCKET) is None:
        client.create_bucket(BUCKET)
    shutil.copytree(digits, buckets / BUCKET / "data" / "digits", dirs_exist_ok=True)
    return client


def _spec(name: str, tmp_path: Path, **raw: Any) -> Any:
    return validate_spec({
        "name": name,
        "image": "us-central1-docker.pkg.dev/conformance/launcher/torch-launcher-train:latest",
        "resources": {"nodes": 2, "gpus": 0},
        "checkpoint": {"uri": f"gs://{BUCKET}/checkpoints"},
        "gcp": {"project": "conformance", "region": "us-central1"},
        **raw,
    }, None, tmp_path)  # fmt: skip


def _starter(body: dict, name: str, docker: Any, image: str, gcs_server: tuple[str, Path]) -> tuple[Any, dict]:
    """(start the CustomJob's replicas, the env that reads the store)."""
    endpoint, buckets = gcs_server
    pools = body["jobSpec"]["workerPoolSpecs"]
    assert [int(p["replicaCount"]) for p in pools] == [1, 1], "pool 0 must hold exactly the chief"
    harness = {"STORAGE_EMULATOR_HOST": endpoint, "GOOGLE_CLOUD_PROJECT": "conformance"}
    nodes = lambda: vertex_nodes(body, name, {BUCKET: buckets / BUCKET}, harness)  # noqa: E731
    return (lambda: ContainerJob(Cluster(docker, image, nodes(), "vertex"))), harness


def test_two_nodes_train_and_resume_after_sigterm(
    docker: Any, image: str, gcs_server: tuple[str, Path], digits: Path, tmp_path: Path
) -> None:
    _bucket_with_digits(gcs_server, digits)
    name = f"conf-vertex-{uuid.uuid4().hex[:6]}"
    spec = _spec(name, tmp_path, train={**TRAIN, "data": f"gs://{BUCKET}/data/digits"})
    start, harness = _starter(Launcher(backend="gcp").plan(spec).request(), name, docker, image, gcs_server)
    read = lambda dest: store_results(f"gs://{BUCKET}/checkpoints", name, harness, dest)  # noqa: E731
    preempt_then_resume(start, read, tmp_path)


def test_a_users_program_on_two_nodes_resumes_from_its_own_step(docker: Any, image: str, gcs_server: tuple[str, Path],
                                                                 digits: Path, tmp_path: Path) -> None:  # fmt: skip
    """Its folder shipped by submit's own code path (to the GCS emulator), its data read through the /gcs mount."""
    client = _bucket_with_digits(gcs_server, digits)
    name = f"conf-vx-prog-{uuid.uuid4().hex[:6]}"
    spec = _spec(name, tmp_path, **program_spec(program_folder(tmp_path), train={"data": f"gs://{BUCKET}/data/digits"}))
    body = stage_code(Launcher(backend="gcp").plan(spec), gcs=client).request()
    args = body["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]["args"]
    assert args[args.index("--data") + 1] == f"/gcs/{BUCKET}/data/digits"
    start, harness = _starter(body, name, docker, image, gcs_server)
    read = lambda dest: store_program_results(f"gs://{BUCKET}/checkpoints", name, harness, dest)  # noqa: E731
    program_preempt_then_resume(start, read, tmp_path, nodes=2)
