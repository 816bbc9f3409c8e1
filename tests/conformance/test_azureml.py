"""Azure ML: our command job, run as two instances the way its PyTorch distribution runs them.

Each instance gets MASTER_ADDR, MASTER_PORT, NODE_RANK, WORLD_SIZE, RANK,
LOCAL_RANK (process_count_per_instance=1: the entrypoint runs torchrun itself) and
the AZUREML_* run variables; the command's ${{inputs.X}} / ${{outputs.X}} become
the folders Azure ML mounts (a ro_mount input is the blobs of its path, copied out
of Azurite into the mounted folder). The store is Azurite, reached through
AZURE_STORAGE_CONNECTION_STRING: the one thing the harness adds (the job's
identity on Azure).
"""

from __future__ import annotations

import re
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Mapping

from launcher.api import Launcher
from launcher.spec import validate_spec
from launcher.staging.code import stage_code
from tests.conformance.cluster import Cluster, store_program_results, store_results
from tests.conformance.conftest import AZURITE_ACCOUNT, AZURITE_KEY
from tests.conformance.platforms import ContainerJob, azureml_nodes
from tests.conformance.scenario import (
    TRAIN,
    preempt_then_resume,
    program_folder,
    program_preempt_then_resume,
    program_spec,
)

ACCOUNT_URL = re.compile(r"^https://[a-z0-9]+\.blob\.core\.windows\.net/([^/]+)/?(.*)$")


def connection_string(endpoint: str) -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};BlobEndpoint={endpoint};"
    )


def upload(service: Any, container: str, folder: Path, prefix: str) -> None:
    client = service.get_container_client(container)
    if not client.exists():
        client.create_container()

    def put(path: Path) -> None:
        client.upload_blob(f"{prefix}/{path.relative_to(folder).as_posix()}", path.read_bytes(), overwrite=True)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, [p for p in folder.rglob("*") if p.is_file()]))


def download(service: Any, container: str, prefix: str, dest: Path) -> Path:
    """What a ro_mount input shows: the blobs under the input's path, as files."""
    client = service.get_container_client(container)

    def get(name: str) -> None:
        target = dest / name[len(prefix) :].lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(client.download_blob(name).readall())

    names = [b.name for b in client.list_blobs(name_starts_with=prefix.rstrip("/") + "/" if prefix else None)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(get, names))
    return dest


def _service(azurite_endpoint: str, digits: Path) -> Any:
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(connection_string(azurite_endpoint))
    upload(service, "datasets", digits, "digits")
    for container in ("checkpoints",):
        if not service.get_container_client(container).exists():
            service.create_container(container)
    return service


def _spec(name: str, tmp_path: Path, **raw: Any) -> Any:
    return validate_spec({
        "name": name,
        "image": "conformance.azurecr.io/torch-launcher-train:latest",
        "resources": {"nodes": 2, "gpus": 0},
        "checkpoint": {"uri": "az://checkpoints/runs"},
        "azure": {"subscription_id": "00000000-0000-0000-0000-000000000000", "resource_group": "rg",
                  "workspace": "conf-ws", "compute": "cpu-cluster", "storage_account": AZURITE_ACCOUNT},
        **raw,
    }, None, tmp_path)  # fmt: skip


def _starter(job: Mapping[str, Any], name: str, service: Any, azurite_endpoint: str, docker: Any, image: str,
             tmp_path: Path) -> tuple[Any, dict]:  # fmt: skip
    """(start the command job's instances, the env that reads the store)."""

    def mount(name: str, io: Mapping[str, Any]) -> Path:
        folder = tmp_path / "mounts" / name
        folder.mkdir(parents=True, exist_ok=True)
        found = ACCOUNT_URL.match(str(io.get("path", "")))
        if io.get("mode", "ro_mount") in ("ro_mount", "download") and found:
            download(service, found.group(1), found.group(2), folder)
        folder.chmod(0o777)
        return folder

    harness = {"AZURE_STORAGE_CONNECTION_STRING": connection_string(azurite_endpoint)}
    return (lambda: ContainerJob(Cluster(docker, image, azureml_nodes(job, name, mount, harness), "azureml"))), harness


def test_two_nodes_train_and_resume_after_sigterm(
    docker: Any, image: str, azurite_endpoint: str, digits: Path, tmp_path: Path
) -> None:
    service = _service(azurite_endpoint, digits)
    name = f"conf-azure-{uuid.uuid4().hex[:6]}"
    job = (
        Launcher(backend="azure").plan(_spec(name, tmp_path, train={**TRAIN, "data": "az://datasets/digits"})).request()
    )
    start, harness = _starter(job, name, service, azurite_endpoint, docker, image, tmp_path)
    read = lambda dest: store_results("az://checkpoints/runs", name, harness, dest)  # noqa: E731
    preempt_then_resume(start, read, tmp_path)


def test_a_users_program_on_two_nodes_resumes_from_its_own_step(docker: Any, image: str, azurite_endpoint: str,
                                                                 digits: Path, tmp_path: Path) -> None:  # fmt: skip
    """Its folder shipped by submit's own code path (to Azurite), its data through the ro_mount input."""
    service = _service(azurite_endpoint, digits)
    name = f"conf-az-prog-{uuid.uuid4().hex[:6]}"
    spec = _spec(name, tmp_path, **program_spec(program_folder(tmp_path), train={"data": "az://datasets/digits"}))
    job = stage_code(Launcher(backend="azure").plan(spec), azure=service).request()
    assert "--data '${{inputs.data}}'" in job["command"] or "--data ${{inputs.data}}" in job["command"], job["command"]
    start, harness = _starter(job, name, service, azurite_endpoint, docker, image, tmp_path)
    read = lambda dest: store_program_results("az://checkpoints/runs", name, harness, dest)  # noqa: E731
    program_preempt_then_resume(start, read, tmp_path, nodes=2)
