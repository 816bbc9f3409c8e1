"""Real protocol servers on loopback, one per store kind, and a `kind` fixture that runs a test on each.

- local: a tmp folder
- s3: moto's ThreadedMotoServer
- gcs: gcp-storage-emulator (in memory)
- azure: Azurite's blob service, from the `azurite-blob` binary (npm install -g azurite)

`StoreKind.store(path)` opens a store under a fresh prefix with an injected
client; `StoreKind.client(endpoint)` builds a client for another endpoint (the
fault-injecting proxy) with the SDK's own retries off; `StoreKind.env` lets a
separate process reach the same server through each SDK's standard variables.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from launcher.storage import open_store
from launcher.storage.base import Store
from launcher.storage.retry import RetryPolicy
from tests.conftest import require_service, stop_service

REPO_ROOT = Path(__file__).resolve().parents[3]
AZURITE_ACCOUNT = "devstoreaccount1"
# Azurite's documented well-known development key, not a secret:
# https://learn.microsoft.com/azure/storage/common/storage-use-azurite#http-connection-strings
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


@dataclass
class StoreKind:
    name: str
    root: str  # URI of the bucket / container / folder
    endpoint: str | None
    make_client: Callable[[str | None], Any] | None
    env: dict[str, str] = field(default_factory=dict)

    def client_kwargs(self, endpoint: str | None = None) -> dict[str, Any]:
        if self.make_client is None:
            return {}
        return {{"s3": "s3", "gcs": "gcs", "azure": "azure"}[self.name]: self.make_client(endpoint)}

    def uri(self, path: str) -> str:
        return f"{self.root}/{path}"

    def store(self, path: str | None = None, endpoint: str | None = None, retry: RetryPolicy | None = None) -> Store:
        path = path or uuid.uuid4().hex[:12]
        fast = retry or RetryPolicy(sleep=lambda _s: None)
        return open_store(self.uri(path), retry=fast, **self.client_kwargs(endpoint))


# ---------------------------------------------------------------- servers


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def s3_client(endpoint: str, sdk_retries: bool = True):  # type: ignore[no-untyped-def]
    import boto3
    from botocore.config import Config

    retries = {"mode": "standard", "total_max_attempts": 5 if sdk_retries else 1}
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                        aws_secret_access_key="testing", config=Config(retries=retries, max_pool_connections=32))  # fmt: skip


@pytest.fixture(scope="session")
def s3_kind(moto_endpoint: str) -> StoreKind:
    s3_client(moto_endpoint).create_bucket(Bucket="ckpts")
    env = {**S3_ENV, "AWS_ENDPOINT_URL": moto_endpoint}
    return StoreKind("s3", "s3://ckpts", moto_endpoint, lambda ep: s3_client(ep or moto_endpoint, ep is None), env)


@pytest.fixture(scope="session")
def gcs_endpoint() -> Iterator[str]:
    from gcp_storage_emulator.server import create_server

    port = free_port()
    server = create_server("127.0.0.1", port, in_memory=True)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def gcs_client(endpoint: str):  # type: ignore[no-untyped-def]
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    return storage.Client(project="test", credentials=AnonymousCredentials(), client_options={"api_endpoint": endpoint})


@pytest.fixture(scope="session")
def gcs_kind(gcs_endpoint: str) -> StoreKind:
    gcs_client(gcs_endpoint).create_bucket("ckpts")
    env = {"STORAGE_EMULATOR_HOST": gcs_endpoint}
    return StoreKind("gcs", "gs://ckpts", gcs_endpoint, lambda ep: gcs_client(ep or gcs_endpoint), env)


@pytest.fixture(scope="session")
def azurite_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = shutil.which("azurite-blob")
    require_service("Azurite", binary is not None, "`azurite-blob` is not on PATH (npm install -g azurite)")
    port = free_port()
    location = tmp_path_factory.mktemp("azurite")
    proc = subprocess.Popen(
        [binary, "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location", str(location),
         "--skipApiVersionCheck", "--silent"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        require_service("Azurite", wait_port(port), "azurite-blob did not open its port within 30 s")
        yield f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}"
    finally:
        stop_service(proc)


def azure_connection_string(endpoint: str) -> str:
    return (f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
            f"BlobEndpoint={endpoint};")  # fmt: skip


def azure_client(endpoint: str, sdk_retries: bool = True):  # type: ignore[no-untyped-def]
    from azure.storage.blob import BlobServiceClient

    extra = {} if sdk_retries else {"retry_total": 0}
    return BlobServiceClient.from_connection_string(azure_connection_string(endpoint), **extra)


@pytest.fixture(scope="session")
def azure_kind(azurite_endpoint: str) -> StoreKind:
    azure_client(azurite_endpoint).create_container("ckpts")
    env = {"AZURE_STORAGE_CONNECTION_STRING": azure_connection_string(azurite_endpoint)}
    make = lambda ep: azure_client(ep or azurite_endpoint, ep is None)  # noqa: E731
    return StoreKind("azure", "az://ckpts", azurite_endpoint, make, env)


@pytest.fixture(params=["local", "s3", "gcs", "azure"])
def kind(request: pytest.FixtureRequest, tmp_path: Path) -> StoreKind:
    """The same test on every store; remote servers start once per session, on first use."""
    if request.param == "local":
        return StoreKind("local", str(tmp_path / "store"), None, None)
    return request.getfixturevalue(f"{request.param}_kind")


@pytest.fixture(params=["s3", "gcs", "azure"])
def remote_kind(request: pytest.FixtureRequest) -> StoreKind:
    return request.getfixturevalue(f"{request.param}_kind")


def subprocess_env(kind: StoreKind) -> dict[str, str]:
    """The environment a separate process needs to reach `kind` through the SDKs' standard variables."""
    return {**os.environ, **kind.env, "PYTHONPATH": str(REPO_ROOT)}
