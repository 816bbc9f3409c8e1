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
from tests.conformance.cluster import Cluster, store_results
from tests.conformance.conftest import BUCKET
from tests.conformance.platforms import ContainerJob, vertex_nodes
from tests.conformance.scenario import TRAIN, preempt_then_resume


def gcs_client(endpoint: str) -> Any:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    return storage.Client(project="conformance", credentials=AnonymousCredentials(), client_options={"api_endpoint": endpoint})


def test_two_nodes_train_and_resume_after_sigterm(docker: Any, image: str, gcs_server: tuple[str, Path], digits: Path, tmp_path: Path) -> None:
    endpoint, buckets = gcs_server
    client = gcs_client(endpoint)
    if client.lookup_bucket(BUCKET) is None:
        client.create_bucket(BUCKET)
    shutil.copytree(digits, buckets / BUCKET / "data" / "digits", dirs_exist_ok=True)
    name = f"conf-vertex-{uuid.uuid4().hex[:6]}"
    spec = validate_spec({
        "name": name,
        "image": "us-central1-docker.pkg.dev/conformance/launcher/torch-launcher-train:latest",
        "train": {**TRAIN, "data": f"gs://{BUCKET}/data/digits"},
        "resources": {"nodes": 2, "gpus": 0},
        "checkpoint": {"uri": f"gs://{BUCKET}/checkpoints"},
        "gcp": {"project": "conformance", "region": "us-central1"},
    }, None, tmp_path)  # fmt: skip
    body = Launcher(backend="gcp").plan(spec).request()
    pools = body["jobSpec"]["workerPoolSpecs"]
    assert [int(p["replicaCount"]) for p in pools] == [1, 1], "pool 0 must hold exactly the chief"

    harness = {"STORAGE_EMULATOR_HOST": endpoint, "GOOGLE_CLOUD_PROJECT": "conformance"}
    nodes = lambda: vertex_nodes(body, name, {BUCKET: buckets / BUCKET}, harness)  # noqa: E731
    start = lambda: ContainerJob(Cluster(docker, image, nodes(), "vertex"))  # noqa: E731
    read = lambda dest: store_results(f"gs://{BUCKET}/checkpoints", name, harness, dest)  # noqa: E731
    preempt_then_resume(start, read, tmp_path)
