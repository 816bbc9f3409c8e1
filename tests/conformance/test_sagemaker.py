"""SageMaker: our CreateTrainingJob request, run by AWS's own local mode (sagemaker SDK v2).

Local mode writes resourceconfig.json per host, names the hosts algo-1-xxxx and
algo-2-xxxx on one compose network, downloads the S3 channel to
/opt/ml/input/data/train (root-owned, as on SageMaker), and runs our
ContainerEntrypoint/ContainerArguments. Its S3 is moto: LocalSession's
s3_endpoint_url, which local mode itself hands to the containers as
AWS_ENDPOINT_URL_S3. Replaced in the request: TrainingImage (the local build) and
ResourceConfig.InstanceType ("local").
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from launcher.api import Launcher
from launcher.spec import validate_spec
from launcher.staging.code import stage_code
from tests.conformance.cluster import REPO, store_program_results, store_results
from tests.conformance.conftest import BUCKET
from tests.conformance.platforms import SageMakerLocalJob
from tests.conformance.scenario import (
    TRAIN,
    preempt_then_resume,
    program_folder,
    program_preempt_then_resume,
    program_spec,
)
from tests.conftest import require_service

SAGEMAKER_PYTHON = os.environ.get("LAUNCHER_SAGEMAKER_PYTHON", str(REPO / ".venv-sagemaker" / "bin" / "python"))
AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def s3(s3_endpoint: str, digits: Path) -> Any:
    """A client of the emulated S3, with the digits ImageFolder under s3://BUCKET/data/digits (uploaded once)."""
    require_service("sagemaker SDK v2", Path(SAGEMAKER_PYTHON).exists(),
                    f"{SAGEMAKER_PYTHON} is missing (python3 -m venv .venv-sagemaker && .venv-sagemaker/bin/pip install 'sagemaker<3')")  # fmt: skip
    client = s3_client(s3_endpoint)
    upload_folder(client, digits, "data/digits")
    return client


def s3_client(endpoint: str) -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                        aws_secret_access_key="testing")  # fmt: skip


def upload_folder(client: Any, folder: Path, prefix: str) -> str:
    """Every file of `folder` under s3://BUCKET/prefix/ (the bucket is made if missing); that URI."""
    if not any(b["Name"] == BUCKET for b in client.list_buckets().get("Buckets", [])):
        client.create_bucket(Bucket=BUCKET)
    files = [p for p in folder.rglob("*") if p.is_file()]
    with ThreadPoolExecutor(8) as pool:
        list(
            pool.map(
                lambda p: client.upload_file(str(p), BUCKET, f"{prefix}/{p.relative_to(folder).as_posix()}"), files
            )
        )
    return f"s3://{BUCKET}/{prefix}"


def _run(request: dict, s3_endpoint: str, docker: Any, image: str, tmp_path: Path) -> tuple[Any, dict]:
    """(start a local-mode job of `request`, the env that reads the run's store), with only TrainingImage and
    InstanceType replaced."""
    assert request["ResourceConfig"]["InstanceCount"] == 2
    request["AlgorithmSpecification"]["TrainingImage"] = image
    request["ResourceConfig"]["InstanceType"] = "local"
    env = {**os.environ, **AWS_ENV}
    runs = iter(range(1, 10))
    start = lambda: SageMakerLocalJob(
        SAGEMAKER_PYTHON, request, s3_endpoint, tmp_path / f"run{next(runs)}", env, docker, image
    )  # noqa: E731
    return start, {**AWS_ENV, "AWS_ENDPOINT_URL": s3_endpoint}


AWS_OPTIONS = {"region": "us-east-1", "role_arn": "arn:aws:iam::123456789012:role/SageMakerRole",
               "output_uri": f"s3://{BUCKET}/output", "instance_type": "ml.m5.xlarge"}  # fmt: skip


def _spec(name: str, tmp_path: Path, **raw: Any) -> Any:
    return validate_spec({
        "name": name,
        "resources": {"nodes": 2, "gpus": 0},
        "checkpoint": {"uri": f"s3://{BUCKET}/checkpoints"},
        "aws": AWS_OPTIONS,
        **raw,
    }, None, tmp_path)  # fmt: skip


@pytest.fixture(scope="module")
def packed_digits(s3: Any, s3_endpoint: str, digits: Path) -> str:
    """The digits ImageFolder packed by `launch data pack` into s3://BUCKET/data/digits-packed: 256 KB shards, so
    that the training split has several (12), which the two nodes share out."""
    dest = f"s3://{BUCKET}/data/digits-packed"
    env = {**os.environ, **AWS_ENV, "AWS_ENDPOINT_URL": s3_endpoint}
    launch = [sys.executable, "-c", "from launcher.cli import main; main()"]
    packed = subprocess.run([*launch, "data", "pack", str(digits), dest, "--shard-size", "256KB"], env=env,
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert packed.returncode == 0, packed.stdout + packed.stderr
    listed = subprocess.run(
        [*launch, "data", "ls", dest, "--json"], env=env, capture_output=True, text=True, timeout=60
    )
    assert listed.returncode == 0 and json.loads(listed.stdout)["splits"]["train"]["shards"] >= 4, listed.stdout
    return dest


def test_two_nodes_train_from_packed_shards_and_resume_mid_epoch_after_sigterm(
    docker: Any, image: str, s3_endpoint: str, packed_digits: str, tmp_path: Path
) -> None:
    """The trainer scenario from a packed dataset streamed from the store (aws.input_mode: stream: no channel, each
    node's trainer fetches its shards from S3 into its node cache); SIGTERM in epoch 3 saves the position in the epoch,
    and the resumed job continues from that step (scenario.preempt_then_resume checks the epoch and step)."""
    name = f"conf-sagemaker-{uuid.uuid4().hex[:6]}"
    spec = _spec(name, tmp_path, train={**TRAIN, "data": packed_digits}, aws={**AWS_OPTIONS, "input_mode": "stream"})
    request = Launcher(backend="aws").plan(spec).request()
    assert request.get("InputDataConfig", []) == [], request.get("InputDataConfig")
    start, store_env = _run(request, s3_endpoint, docker, image, tmp_path)
    read = lambda dest: store_results(f"s3://{BUCKET}/checkpoints", name, store_env, dest)  # noqa: E731
    streamed = rf"packed dataset {packed_digits}: \d+ of \d+ train shards \(\d+ samples\), .*streamed into"
    preempt_then_resume(start, read, tmp_path, logged=streamed)


def test_a_users_program_on_two_nodes_resumes_from_its_own_step(docker: Any, image: str, s3_endpoint: str, s3: Any,
                                                                 tmp_path: Path) -> None:  # fmt: skip
    """Its folder shipped by submit's own code path (to moto), its data through the S3 channel."""
    name = f"conf-sm-prog-{uuid.uuid4().hex[:6]}"
    spec = _spec(name, tmp_path, **program_spec(program_folder(tmp_path), train={"data": f"s3://{BUCKET}/data/digits"}))
    plan = stage_code(Launcher(backend="aws").plan(spec), s3=s3)
    assert "--data" in (args := plan.request()["AlgorithmSpecification"]["ContainerArguments"])
    assert args[args.index("--data") + 1] == "/opt/ml/input/data/train"
    start, store_env = _run(plan.request(), s3_endpoint, docker, image, tmp_path)
    read = lambda dest: store_program_results(f"s3://{BUCKET}/checkpoints", name, store_env, dest)  # noqa: E731
    program_preempt_then_resume(start, read, tmp_path, nodes=2)
