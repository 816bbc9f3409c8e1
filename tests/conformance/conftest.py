"""Fixtures of the conformance suite: the built training image, and each cloud's store
served by its emulator on the docker0 bridge address, where containers reach it.

- S3: moto's server (the SageMaker job's channel, checkpoints and model output)
- GCS: gcp-storage-emulator with its objects on disk, so the bucket folder can be
  bind-mounted at /gcs/<bucket> the way Vertex AI's Cloud Storage FUSE shows it
- Azure Blob: Azurite

Servers bind the bridge address only, never 0.0.0.0 (DESIGN.md: "Containers reach a
service on the host through the docker0 bridge address").
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.conformance.cluster import bridge_address, free_port, wait_port
from tests.conftest import require_service, stop_service
from tests.docker_base import docker_client, train_image_or_skip

AZURITE_ACCOUNT = "devstoreaccount1"
# Azurite's documented well-known development key, not a secret:
# https://learn.microsoft.com/azure/storage/common/storage-use-azurite#http-connection-strings
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
BUCKET = "conformance"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/conformance/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.conformance)
            item.add_marker(pytest.mark.docker)
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def docker() -> Any:
    client, why = docker_client()
    require_service("docker", client is not None, why)
    return client


@pytest.fixture(scope="session")
def image(docker: Any) -> str:
    return train_image_or_skip(docker)


@pytest.fixture(scope="session")
def addr(docker: Any) -> str:
    found = bridge_address()
    require_service("docker0 bridge", bool(found), "no docker0 address (is dockerd running?)")
    return found


@pytest.fixture(scope="session")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The digits ImageFolder, written on the host: the jobs read it from the platform's store."""
    from launcher.runtime.datasets import write_digits

    return write_digits(tmp_path_factory.mktemp("datasets"))


@pytest.fixture(scope="session")
def s3_endpoint(addr: str) -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = free_port(addr)
    server = ThreadedMotoServer(ip_address=addr, port=port, verbose=False)
    server.start()
    yield f"http://{addr}:{port}"
    server.stop()


@pytest.fixture(scope="session")
def gcs_server(addr: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """(endpoint, folder holding one sub-folder per bucket with the objects as plain files)."""
    from gcp_storage_emulator.server import create_server
    from gcp_storage_emulator.storage import STORAGE_DIR

    data = tmp_path_factory.mktemp("gcs")
    port = free_port(addr)
    server = create_server(addr, port, in_memory=False, data_dir=str(data))
    server.start()
    yield f"http://{addr}:{port}", data / STORAGE_DIR
    server.stop()


@pytest.fixture(scope="session")
def azurite_endpoint(addr: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = shutil.which("azurite-blob")
    require_service("Azurite", binary is not None, "`azurite-blob` is not on PATH (npm install -g azurite)")
    port = free_port(addr)
    proc = subprocess.Popen(
        [binary, "--blobHost", addr, "--blobPort", str(port), "--location", str(tmp_path_factory.mktemp("azurite")),
         "--skipApiVersionCheck", "--silent", "--loose"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        require_service("Azurite", wait_port(addr, port), "azurite-blob did not open its port within 30 s")
        yield f"http://{addr}:{port}/{AZURITE_ACCOUNT}"
    finally:
        stop_service(proc)
