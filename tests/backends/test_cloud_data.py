"""Data on the cloud backends: a local train.data folder is uploaded once at submit (content-keyed);
remote URIs reach the container natively (SageMaker channel, Vertex /gcs mount, Azure ML input) or by URI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from launcher.backends.aws import DATA_DIR
from launcher.errors import LauncherError
from launcher.staging.data import CONTENT, MARKER, content_hash
from tests.backends.test_aws import JOB_ID, aws_env, backend, make_spec  # noqa: F401 - aws_env is a fixture


def data_folder(root: Path) -> Path:
    for key, body in {
        "train/cat/1.png": b"c1" * 50,
        "train/dog/2.png": b"d2" * 40,
        "val/cat/3.png": b"c3" * 30,
    }.items():
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).write_bytes(body)
    return root


def test_aws_plan_names_the_upload_target_with_a_placeholder(tmp_path: Path) -> None:
    spec = make_spec(train={"data": str(data_folder(tmp_path / "flowers"))}, checkpoint={"uri": "s3://my-bucket/ckpts"})
    plan = backend().plan(spec, JOB_ID)
    channel = plan.request()["InputDataConfig"][0]["DataSource"]["S3DataSource"]
    assert channel["S3Uri"] == f"s3://my-bucket/ckpts/_data/{CONTENT}"
    assert f"data={DATA_DIR}" in plan.request()["AlgorithmSpecification"]["ContainerArguments"]
    assert any("uploaded at submit" in note for note in plan.notes)


def test_aws_local_data_without_a_remote_store_is_refused(tmp_path: Path) -> None:
    spec = make_spec(train={"data": str(data_folder(tmp_path / "flowers"))}, aws={"output_uri": "s3://my-bucket/out"})
    with pytest.raises(LauncherError, match="no remote store to upload it to"):
        backend().plan(spec, JOB_ID)


def test_aws_submit_uploads_once_and_the_job_reads_the_upload(
    aws_env: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:  # noqa: F811
    aws_env.client("s3").create_bucket(Bucket="my-bucket")
    folder = data_folder(tmp_path / "flowers")
    spec = make_spec(
        train={"data": str(folder)},
        checkpoint={"uri": "s3://my-bucket/ckpts"},
        aws={"output_uri": "s3://my-bucket/out"},
    )
    be = backend(session=aws_env)
    be.submit(be.plan(spec, JOB_ID))
    digest = content_hash(folder)[0]
    desc = aws_env.client("sagemaker").describe_training_job(TrainingJobName=JOB_ID)
    assert desc["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] == f"s3://my-bucket/ckpts/_data/{digest}"
    keys = {
        o["Key"] for o in aws_env.client("s3").list_objects_v2(Bucket="my-bucket", Prefix="ckpts/_data/")["Contents"]
    }
    prefix = f"ckpts/_data/{digest}/"
    assert keys == {prefix + k for k in ("train/cat/1.png", "train/dog/2.png", "val/cat/3.png", MARKER)}
    assert "uploading 3 files" in capsys.readouterr().err

    be.submit(be.plan(spec, JOB_ID + "-2"))  # the same data again: nothing is sent
    assert "already uploaded" in capsys.readouterr().err


# ---------------------------------------------------------------- Vertex AI

from launcher.backends.gcp import VertexBackend  # noqa: E402
from tests.backends.test_gcp import _with as gcp_spec  # noqa: E402


def _vertex_args(spec: Any) -> list[str]:
    return VertexBackend().plan(spec).request()["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]["args"]


def test_vertex_reads_gs_data_through_its_cloud_storage_fuse_mount() -> None:
    args = _vertex_args(gcp_spec("gcp_1x1_gpu", train__data="gs://demo-data/sets/flowers"))
    assert "data=/gcs/demo-data/sets/flowers" in args
    assert "data=s3://bucket/flowers" in _vertex_args(
        gcp_spec("gcp_1x1_gpu", train__data="s3://bucket/flowers")
    )  # fetched


def test_vertex_plans_a_local_folder_from_its_upload_under_the_mount(tmp_path: Path) -> None:
    folder = data_folder(tmp_path / "flowers")
    plan = VertexBackend().plan(gcp_spec("gcp_1x1_gpu", train__data=str(folder)))
    assert (
        f"data=/gcs/demo-ckpt/runs/_data/{CONTENT}"
        in plan.request()["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]["args"]
    )
    assert any("uploaded at submit" in note for note in plan.notes)


# ---------------------------------------------------------------- Azure ML

from launcher.backends.azure import AzureMLBackend  # noqa: E402
from tests.backends.fake_azureml import FakeAzure  # noqa: E402
from tests.backends.test_azure import _backend as azure_backend  # noqa: E402
from tests.backends.test_azure import _with as azure_spec  # noqa: E402


@pytest.fixture
def fake() -> FakeAzure:
    return FakeAzure()


def test_azure_az_checkpoints_go_through_the_entrypoints_sync() -> None:
    payload = AzureMLBackend().plan(azure_spec("azure_1x1_gpu")).request()
    assert "outputs" not in payload  # no flat rw_mount: the manifest layout, keep and every apply
    assert "--checkpoint-uri az://checkpoints/runs" in payload["command"]
    assert payload["environment_variables"]["AZURE_STORAGE_ACCOUNT"] == "visiondata"


def test_azure_passes_the_jobs_identity_to_the_container() -> None:
    user = AzureMLBackend().plan(azure_spec("azure_1x1_gpu", azure__identity="user_identity")).request()
    assert user["environment_variables"]["LAUNCHER_AZURE_IDENTITY"] == "user_identity"
    client_id = "0b9f5c4e-1a2b-4c3d-8e9f-001122334455"
    assigned = AzureMLBackend().plan(azure_spec("azure_1x1_gpu", azure__identity=client_id)).request()
    assert assigned["environment_variables"]["AZURE_CLIENT_ID"] == client_id
    assert assigned["identity"] == {"type": "managed", "client_id": client_id}


def test_azure_refuses_an_unpushed_local_image_at_submit(fake: FakeAzure) -> None:
    backend = azure_backend(fake, {"WANDB_API_KEY": "x"})
    plan = backend.plan(
        azure_spec("azure_1x1_gpu", image="torch-launcher-train:latest"), job_id="digits-1"
    )  # a dry run works
    with pytest.raises(LauncherError, match="exists only on this machine") as info:
        backend.submit(plan)
    assert "launch image build --push -b azure" in (info.value.fix or "")
    assert not fake.requests_to(r"/jobs/", "PUT")


def test_azure_secrets_without_key_vault_go_to_the_workspaces_vault(fake: FakeAzure) -> None:
    backend = azure_backend(fake, {"WANDB_API_KEY": "s3cret"})
    plan = backend.plan(azure_spec("azure_1x1_gpu", azure__key_vault=None), job_id="digits-2")
    assert "{workspace-key-vault}" in plan.request()["environment_variables"]["LAUNCHER_SECRET_REFS"]
    backend.submit(plan)
    stored = [c for c in fake.calls if "vault.azure.net" in c.url and c.method == "PUT"]
    assert stored and all(
        c.url.startswith("https://wskv123.vault.azure.net/secrets/digits-WANDB-API-KEY") for c in stored
    )
    (put,) = fake.requests_to(r"/jobs/digits-2$", "PUT")
    refs = put.body["properties"]["environmentVariables"]["LAUNCHER_SECRET_REFS"]
    assert "https://wskv123.vault.azure.net/secrets/digits-WANDB-API-KEY" in refs and "{workspace" not in refs


def test_azure_uploads_a_local_folder_to_the_jobs_store(fake: FakeAzure, aws_env: Any, tmp_path: Path) -> None:  # noqa: F811
    aws_env.client("s3").create_bucket(Bucket="shared-ckpt")
    folder = data_folder(tmp_path / "flowers")
    spec = azure_spec("azure_cpu_only", command=None, train={"data": str(folder)})
    backend = azure_backend(fake)
    backend.submit(backend.plan(spec, job_id="digits-3"))
    (put,) = fake.requests_to(r"/jobs/digits-3$", "PUT")
    digest = content_hash(folder)[0]
    assert (
        f"data=s3://shared-ckpt/runs/_data/{digest}" in put.body["properties"]["command"]
    )  # fetched by the entrypoint
    keys = {o["Key"] for o in aws_env.client("s3").list_objects_v2(Bucket="shared-ckpt")["Contents"]}
    assert f"runs/_data/{digest}/{MARKER}" in keys
