"""The SageMaker backend: golden plans checked by botocore, bad input, and moto for the rest.

Golden files live in tests/backends/golden/aws_*.json; regenerate them after
an intended change with UPDATE_GOLDEN=1 and review the diff.
"""

from __future__ import annotations

import base64
import json
import os
import re
import time
from pathlib import Path
from typing import Any

import boto3
import botocore.session
import pytest
from botocore.stub import Stubber
from botocore.validate import ParamValidator
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID

from launcher.api import Job
from launcher.backends import registry
from launcher.backends.aws import DATA_DIR, SageMakerBackend, map_status, sagemaker_job_name
from launcher.catalog import load_catalog
from launcher.errors import LauncherError, SpecError
from launcher.plan import JobRef, JobState
from launcher.runtime import rendezvous
from launcher.spec import JobSpec
from launcher.state.jobs import JobRegistry

GOLDEN = Path(__file__).parent / "golden"
REGION = "us-east-1"
ROLE = f"arn:aws:iam::{DEFAULT_ACCOUNT_ID}:role/SageMakerRole"
IMAGE = f"{DEFAULT_ACCOUNT_ID}.dkr.ecr.{REGION}.amazonaws.com/torch-launcher-train@sha256:" + "0" * 64
JOB_ID = "flowers-20261127-210501-ab12"
AWS = {"region": REGION, "role_arn": ROLE}


def make_spec(**over: Any) -> JobSpec:
    raw: dict[str, Any] = {"name": "flowers", "image": IMAGE, "train": {"epochs": 3, "imgsz": 32}, "aws": dict(AWS)}
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    return JobSpec.model_validate(raw)


def backend(**kwargs: Any) -> SageMakerBackend:
    return SageMakerBackend(catalog=load_catalog("aws"), sleep=lambda s: None, poll_s=0, **kwargs)


CASES = {
    "one_gpu": dict(resources={"gpus": 1}, limits={"max_runtime": "2h"}, aws={"output_uri": "s3://my-bucket/out"}),
    "multi_node_spot": dict(
        resources={"gpus": 8, "nodes": 2, "gpu_type": "A100", "spot": True},
        checkpoint={"uri": "s3://my-bucket/ckpts", "every": 2, "keep": 2},
        limits={"max_runtime": "12h", "max_cost": 200},
        env={"NCCL_DEBUG": "WARN"},
        secrets=["WANDB_API_KEY"],
        aws={
            "max_retries": 2,
            "subnets": ["subnet-0abc"],
            "security_group_ids": ["sg-0abc"],
            "tags": {"team": "vision"},
        },
    ),
    "cpu_only": dict(resources={"cpus": 4, "memory": 8}, aws={"keep_alive_s": 600, "volume_size_gb": 30}),
    "s3_data": dict(
        resources={"gpus": 1, "gpu_type": "A10G"}, train={"data": "s3://my-bucket/datasets/flowers", "imgsz": 64}
    ),
    "ultralytics_segment": dict(
        resources={"gpus": 1},
        train={
            "engine": "ultralytics",
            "model": "yolo11n-seg.yaml",
            "imgsz": 640,
            "data": "s3://my-bucket/datasets/coco8-seg",
            "epochs": 50,
        },
    ),
}


# ---------------------------------------------------------------- golden plans + botocore validation


def _input_shape() -> Any:
    return (
        botocore.session.get_session().get_service_model("sagemaker").operation_model("CreateTrainingJob").input_shape
    )


def _python_pattern(pattern: str) -> str:
    """The service model's Java regexes in Python's dialect (only the Unicode classes differ)."""
    return pattern.replace(r"\p{L}\p{Z}\p{N}", r"\w\s")


def strict_problems(shape: Any, value: Any, path: str = "") -> list[str]:
    """What ParamValidator does not check: max lengths, enums and patterns from the service model."""
    meta, found = shape.metadata, []
    if shape.type_name == "structure":
        for key, item in value.items():
            found += strict_problems(shape.members[key], item, f"{path}.{key}")
    elif shape.type_name == "list":
        found += [f"{path}: {len(value)} items > {meta['max']}"] if len(value) > meta.get("max", 1 << 30) else []
        for i, item in enumerate(value):
            found += strict_problems(shape.member, item, f"{path}[{i}]")
    elif shape.type_name == "map":
        found += [f"{path}: {len(value)} entries > {meta['max']}"] if len(value) > meta.get("max", 1 << 30) else []
        for key, item in value.items():
            found += strict_problems(shape.key, key, f"{path}<{key}>") + strict_problems(
                shape.value, item, f"{path}.{key}"
            )
    elif shape.type_name == "string":
        if len(value) > meta.get("max", 1 << 30):
            found.append(f"{path}: {len(value)} chars > {meta['max']}")
        if "enum" in meta and value not in meta["enum"]:
            found.append(f"{path}: {value!r} not in enum")
        if "pattern" in meta and not re.fullmatch(_python_pattern(meta["pattern"]), value):
            found.append(f"{path}: {value!r} !~ {meta['pattern']}")
    elif shape.type_name == "integer" and value > meta.get("max", 1 << 62):
        found.append(f"{path}: {value} > {meta['max']}")
    return found


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden_plan(case: str) -> None:
    plan = backend().plan(make_spec(**CASES[case]), JOB_ID)
    golden = GOLDEN / f"aws_{case}.json"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.write_text(plan.to_json() + "\n")
    assert json.loads(plan.to_json()) == json.loads(golden.read_text())


@pytest.mark.parametrize("case", sorted(CASES))
def test_plan_passes_botocore_validation(case: str) -> None:
    request = backend().plan(make_spec(**CASES[case]), JOB_ID).request()
    report = ParamValidator().validate(request, _input_shape())
    assert not report.has_errors(), report.generate_report()
    assert strict_problems(_input_shape(), request) == []


@pytest.mark.parametrize(("task", "model", "maps"), [
    ("segment", "yolo11n-seg.yaml", ["mAP50(B)", "mAP50-95(B)", "mAP50(M)", "mAP50-95(M)"]),
    ("detect", "yolo11n.yaml", ["mAP50(B)", "mAP50-95(B)"]),
    ("classify", "yolo11n-cls.yaml", []),
])  # fmt: skip
def test_metric_definitions_read_the_engines_epoch_line(
    task: str, model: str, maps: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """SageMaker plots what the ultralytics engine prints: the regexes run on the adapter's own line."""
    from types import SimpleNamespace

    from launcher.runtime.train.ultralytics_engine import _summary

    metrics = {"val/box_loss": 1.5, "metrics/mAP50(B)": 0.61, "metrics/mAP50-95(B)": 0.42, "metrics/mAP50(M)": 0.55,
               "metrics/mAP50-95(M)": 0.33, "metrics/accuracy_top1": 0.9, "metrics/accuracy_top5": 1.0}  # fmt: skip
    if task != "segment":
        metrics = {k: v for k, v in metrics.items() if "(M)" not in k}
    # Ultralytics reports mAPs for the box tasks, top-1/top-5 accuracy for classify
    metrics = {k: v for k, v in metrics.items() if ("mAP" in k) != (task == "classify") or k.startswith("val/")}
    trainer = SimpleNamespace(
        tloss={"box": 1.0, "cls": 0.5}, epoch=2, epochs=50, metrics=metrics, lr={"pg0": 0.01}, epoch_time=12.5
    )
    _summary(trainer)
    line = capsys.readouterr().out.strip()
    spec = make_spec(
        train={"engine": "ultralytics", "model": model, "task": task, "data": "s3://my-bucket/datasets/shapes"}
    )
    definitions = backend().plan(spec, JOB_ID).request()["AlgorithmSpecification"]["MetricDefinitions"]
    read = {d["Name"]: float(m.group(1)) for d in definitions if (m := re.search(d["Regex"], line))}
    expected = {"epoch": 3.0, "train_loss": 1.5, "val_loss": 1.5, "lr": 0.01, "time_s": 12.5,
                **{name: metrics[f"metrics/{name}"] for name in maps}}  # fmt: skip
    if task == "classify":
        expected.update(top1=0.9, top5=1.0)
    assert read == expected, line
    assert {d["Name"] for d in definitions} - set(read) == {
        "images_per_s",
        "gpu_mem_gib",
        *(() if task == "classify" else ("top1", "top5")),
    }


def test_strict_check_catches_a_long_argument() -> None:
    request = backend().plan(make_spec(), JOB_ID).request()
    request["AlgorithmSpecification"]["ContainerArguments"].append("x" * 257)
    assert strict_problems(_input_shape(), request)


def test_golden_cases_cover_the_issue() -> None:
    plans = {c: backend().plan(make_spec(**CASES[c]), JOB_ID).request() for c in CASES}
    assert plans["one_gpu"]["ResourceConfig"] == {
        "InstanceType": "ml.g4dn.xlarge",
        "InstanceCount": 1,
        "VolumeSizeInGB": 50,
    }
    spot = plans["multi_node_spot"]
    assert spot["ResourceConfig"]["InstanceType"] == "ml.p4d.24xlarge" and spot["ResourceConfig"]["InstanceCount"] == 2
    assert spot["EnableManagedSpotTraining"] is True
    stop = spot["StoppingCondition"]
    assert stop["MaxWaitTimeInSeconds"] >= stop["MaxRuntimeInSeconds"]
    # SageMaker mirrors the trainer's folder inside the run folder, apart from the manifest layout (see backends/aws.py)
    assert spot["CheckpointConfig"] == {
        "S3Uri": "s3://my-bucket/ckpts/flowers/sagemaker",
        "LocalPath": "/opt/ml/checkpoints",
    }
    args = spot["AlgorithmSpecification"]["ContainerArguments"]
    assert args[args.index("--save-dir") + 1] == "/opt/ml/checkpoints" and "--checkpoint-uri" in args
    assert plans["cpu_only"]["ResourceConfig"]["InstanceType"] == "ml.c5.xlarge"
    data = plans["s3_data"]
    assert data["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] == "s3://my-bucket/datasets/flowers"
    assert f"data={DATA_DIR}" in data["AlgorithmSpecification"]["ContainerArguments"]


def test_budget_caps_runtime_at_the_spot_price() -> None:
    spec = make_spec(**CASES["multi_node_spot"])
    row = load_catalog("aws")["instances"]["ml.p4d.24xlarge"]["prices"][REGION]
    expected = int(200 / (row["spot"] * 2) * 3600)
    assert backend().plan(spec, JOB_ID).request()["StoppingCondition"]["MaxRuntimeInSeconds"] == expected < 12 * 3600
    on_demand = make_spec(**{**CASES["multi_node_spot"], "resources": {"gpus": 8, "nodes": 2, "gpu_type": "A100"}})
    expected = int(200 / (row["on_demand"] * 2) * 3600)
    assert backend().plan(on_demand, JOB_ID).request()["StoppingCondition"] == {"MaxRuntimeInSeconds": expected}


def test_secrets_are_references_only() -> None:
    plan = backend().plan(make_spec(**CASES["multi_node_spot"]), JOB_ID)
    env = plan.request()["Environment"]
    assert json.loads(env["LAUNCHER_SECRET_REFS"]) == {"WANDB_API_KEY": "aws-sm:torch-launcher/flowers/WANDB_API_KEY"}
    assert "WANDB_API_KEY" not in env


def test_plan_is_pure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    spec = make_spec(aws={"region": None})
    before = spec.model_dump()
    with pytest.raises(LauncherError, match="region"):
        backend().plan(spec)  # the environment's region is not read by plan
    assert spec.model_dump() == before
    a, b = backend().plan(make_spec(), JOB_ID), backend().plan(make_spec(), JOB_ID)
    assert a.to_dict() == b.to_dict()


def test_plan_imports_no_sdk() -> None:
    """`launch --dry-run` must not pay for boto3: plan runs without importing it."""
    import subprocess
    import sys

    code = (
        "import sys, json; from launcher.backends.aws import SageMakerBackend; from launcher.spec import JobSpec;"
        f"spec = JobSpec.model_validate(json.loads({json.dumps(json.dumps(make_spec(**CASES['multi_node_spot']).model_dump(mode='json')))}));"
        "SageMakerBackend().plan(spec, 'x'); print('boto3' in sys.modules, 'botocore' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=os.environ.copy()
    )
    assert out.stdout.split() == ["False", "False"]


@pytest.mark.parametrize("example", ["examples/aws.yaml", "examples/ci/job.yaml"])
def test_examples_plan(example: str) -> None:
    from launcher.spec import load_spec

    environ = {"AWS_REGION": REGION, "SAGEMAKER_ROLE_ARN": ROLE, "LAUNCHER_BUCKET": "my-bucket", "WANDB_API_KEY": "x"}
    spec = load_spec(Path(__file__).parents[2] / example, environ=environ)
    request = backend(pushed_image=IMAGE).plan(spec, JOB_ID).request()
    assert ParamValidator().validate(request, _input_shape()).has_errors() is False
    assert strict_problems(_input_shape(), request) == []


# ---------------------------------------------------------------- names and instance choice


def test_job_names_are_valid_and_unique() -> None:
    long_a = "a" * 48 + "-20261127-210501-ab12"
    long_b = "a" * 48 + "-20261127-210501-cd34"
    names = [sagemaker_job_name(x) for x in (long_a, long_b, "my_job.v2", JOB_ID)]
    for name in names:
        assert len(name) <= 63 and re.fullmatch(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}", name), name
    assert names[0] != names[1]
    assert names[2] == "my-job-v2" and names[3] == JOB_ID
    assert backend().plan(make_spec()).job_name == "flowers"


@pytest.mark.parametrize(
    "resources, expected",
    [
        ({"gpus": 1}, "ml.g4dn.xlarge"),
        ({"gpus": 1, "gpu_type": "l4"}, "ml.g6.xlarge"),
        ({"gpus": 1, "gpu_type": "A10G", "cpus": 16}, "ml.g5.4xlarge"),
        ({"gpus": 8, "gpu_type": "H100"}, "ml.p5.48xlarge"),
        ({"gpus": 8, "gpu_type": "A100-80GB"}, "ml.p4de.24xlarge"),
        ({"gpus": 4, "gpu_type": "V100"}, "ml.p3.8xlarge"),
        ({}, "ml.m5.large"),
        ({"memory": 100}, "ml.m5.12xlarge"),
    ],
)
def test_instance_choice(resources: dict[str, Any], expected: str) -> None:
    plan = backend().plan(make_spec(resources=resources), JOB_ID)
    assert plan.request()["ResourceConfig"]["InstanceType"] == expected


def test_named_instance_sets_gpus_for_entrypoint() -> None:
    plan = backend().plan(make_spec(aws={"instance_type": "ml.g5.12xlarge"}), JOB_ID)
    args = plan.request()["AlgorithmSpecification"]["ContainerArguments"]
    assert args[args.index("--gpus") + 1] == "4"
    assert any("uses all 4 GPU(s) of ml.g5.12xlarge" in note for note in plan.notes)


def test_offers_from_catalog() -> None:
    offers = backend().offers(make_spec(resources={"gpus": 1, "spot": True}, aws={"role_arn": None}))
    assert offers[0].instance == "ml.g4dn.xlarge" and offers[0].spot
    assert offers[0].price_per_hour == load_catalog("aws")["instances"]["ml.g4dn.xlarge"]["prices"][REGION]["spot"]
    assert [o.price_per_hour for o in offers] == sorted(o.price_per_hour for o in offers)
    assert all(o.gpus == 1 for o in offers)


def test_registry_finds_the_backend_by_alias() -> None:
    assert registry.get("sagemaker") is SageMakerBackend
    assert registry.get("aws") is SageMakerBackend


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "over, message",
    [
        (
            dict(aws={"instance_type": "ml.g5.xlrge"}),
            r"not a training instance type in the SageMaker catalog.*did you mean ml\.g5\.xlarge",
        ),
        (
            dict(resources={"gpus": 2}, aws={"instance_type": "ml.g5.xlarge"}),
            r"ml\.g5\.xlarge has 1 GPU\(s\) per node but resources\.gpus asks for 2",
        ),
        (dict(resources={"cpus": 16}, aws={"instance_type": "ml.g5.xlarge"}), r"ml\.g5\.xlarge has 4 vCPUs"),
        (dict(resources={"gpus": 3}), r"exactly 3 any type GPUs per node; they come with 1, 4, 8"),
        (dict(resources={"gpus": 1, "gpu_type": "B200"}), r"no B200 GPUs"),
        (dict(aws={"role_arn": None}), r"needs the IAM role.*aws\.role_arn"),
        (dict(aws={"region": None}), r"needs a region.*aws\.region"),
        (dict(aws={"region": "us-east-9"}), r"not offered in region 'us-east-9'.*did you mean us-east-"),
        (dict(checkpoint={"uri": "/tmp/ckpts"}), r"local path.*s3://"),
        (dict(train={"data": "/data/flowers"}), r"folder on this machine.*no remote store"),
        (dict(checkpoint={"uri": "s3://my-bucket/" + "x" * 300}), r"256"),
        (dict(resources={"spot": True}, aws={"keep_alive_s": 60}), r"warm pools.*spot"),
        (dict(resources={"gpus": 8, "gpu_type": "H100"}, limits={"max_cost": 1}), r"buys only"),
        (dict(limits={"max_runtime": "30d"}), r"28 days"),
        (dict(resources={"spot": True}, limits={"max_runtime": "2h"}, aws={"max_wait_s": 60}), r"max_wait_s"),
    ],
)
def test_bad_input_is_one_sentence_with_a_fix(over: dict[str, Any], message: str) -> None:
    with pytest.raises(LauncherError, match=message) as info:
        backend().plan(make_spec(**over), JOB_ID)
    assert info.value.fix and "\n" not in str(info.value)


def test_an_image_not_in_ecr_plans_for_dry_run_but_cannot_be_submitted() -> None:
    plan = backend().plan(make_spec(image="torch-launcher-train:latest"), JOB_ID)
    assert any("not in Amazon ECR" in note for note in plan.notes)
    with pytest.raises(LauncherError, match=r"not in Amazon ECR.*launch image build --push -b aws"):
        backend().submit(plan)


@pytest.mark.parametrize(
    "aws, message",
    [
        ({"region": "useast1"}, "not an AWS region"),
        ({"role_arn": "SageMakerRole"}, "not an IAM role ARN"),
        ({"subnets": ["subnet-1"]}, "subnets and security_group_ids go together"),
        ({"instance_typ": "ml.g5.xlarge"}, "did you mean 'instance_type'"),
        ({"output_uri": "gs://bucket"}, "not an s3:// URI"),
    ],
)
def test_bad_options_name_the_key(aws: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        backend().plan(make_spec(aws=aws), JOB_ID)


def test_non_s3_checkpoint_is_synced_by_the_entrypoint() -> None:
    plan = backend().plan(make_spec(checkpoint={"uri": "gs://bucket/ckpts"}), JOB_ID)
    request = plan.request()
    assert "CheckpointConfig" not in request
    args = request["AlgorithmSpecification"]["ContainerArguments"]
    assert "--checkpoint-uri" in args and "--save-dir" not in args
    assert any("entrypoint uploads" in note for note in plan.notes)


# ---------------------------------------------------------------- submit / status / logs against moto


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> Any:
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        yield boto3.Session(region_name=REGION)


def _moto_job(name: str) -> Any:
    from moto.sagemaker.models import sagemaker_backends

    return sagemaker_backends[DEFAULT_ACCOUNT_ID][REGION].training_jobs[name]


def test_submit_creates_job_and_stores_secrets(aws_env: Any) -> None:
    spec = make_spec(**CASES["multi_node_spot"])
    be = backend(session=aws_env, environ={"WANDB_API_KEY": "s3cret-1"})
    plan = be.plan(spec, JOB_ID)
    ref = be.submit(plan)
    assert (ref.id, ref.native_id, ref.extra["region"], ref.extra["instance_count"]) == (JOB_ID, JOB_ID, REGION, 2)
    desc = aws_env.client("sagemaker").describe_training_job(TrainingJobName=JOB_ID)
    assert desc["ResourceConfig"]["InstanceType"] == "ml.p4d.24xlarge"
    assert desc["CheckpointConfig"]["S3Uri"] == "s3://my-bucket/ckpts/flowers/sagemaker"
    assert desc["AlgorithmSpecification"]["ContainerEntrypoint"] == ["python", "-m", "launcher.runtime.entrypoint"]
    sm = aws_env.client("secretsmanager")
    assert sm.get_secret_value(SecretId="torch-launcher/flowers/WANDB_API_KEY")["SecretString"] == "s3cret-1"
    assert "s3cret-1" not in plan.to_json()
    # a second submission adds a new version instead of failing on the existing secret
    be2 = backend(session=aws_env, environ={"WANDB_API_KEY": "s3cret-2"})
    be2.submit(be2.plan(spec, JOB_ID + "-2"))
    assert sm.get_secret_value(SecretId="torch-launcher/flowers/WANDB_API_KEY")["SecretString"] == "s3cret-2"
    # the default output bucket was created (no aws.output_uri in this case)
    aws_env.client("s3").head_bucket(Bucket=f"sagemaker-{REGION}-{DEFAULT_ACCOUNT_ID}")


def test_submit_refuses_a_missing_secret(aws_env: Any) -> None:
    be = backend(session=aws_env, environ={})
    with pytest.raises(LauncherError, match="WANDB_API_KEY.*not set"):
        be.submit(be.plan(make_spec(secrets=["WANDB_API_KEY"], aws={"output_uri": "s3://my-bucket/out"}), JOB_ID))


@pytest.mark.parametrize(
    "native, secondary, reason, state, message",
    [
        ("InProgress", "Starting", None, JobState.PENDING, "Starting"),
        ("InProgress", "Training", None, JobState.RUNNING, "Training"),
        ("InProgress", "Interrupted", None, JobState.PENDING, "spot capacity"),
        ("Stopping", "Stopping", None, JobState.STOPPING, "stop"),
        ("Stopped", "MaxRuntimeExceeded", None, JobState.FAILED, "MaxRuntimeExceeded: the job hit its runtime limit"),
        ("Stopped", "Stopped", None, JobState.STOPPED, "stopped"),
        ("Failed", "Failed", "AlgorithmError: CUDA out of memory", JobState.FAILED, "CUDA out of memory"),
        ("Completed", "Completed", None, JobState.SUCCEEDED, ""),
    ],
)
def test_status_mapping_through_moto(
    aws_env: Any, native: str, secondary: str, reason: str | None, state: JobState, message: str
) -> None:
    be = backend(session=aws_env)
    ref = be.submit(be.plan(make_spec(aws={"output_uri": "s3://my-bucket/out"}), JOB_ID))
    job = _moto_job(JOB_ID)
    job.training_job_status, job.secondary_status = native, secondary
    if reason:
        job.failure_reason = reason
    status = be.status(ref)
    assert status.state is state and message in status.message
    assert status.ok is (state is JobState.SUCCEEDED)
    assert status.result_code() == (0 if state is JobState.SUCCEEDED else 1) or not status.finished


def test_billable_time_and_spot_savings_are_reported_and_the_launcher_records_them(aws_env: Any) -> None:
    """The backend returns them in JobStatus.details; only the Launcher writes the job registry."""
    jobs = JobRegistry(Path(os.environ["LAUNCHER_STATE_DIR"]) / "jobs.db")
    be = backend(session=aws_env)
    plan = be.plan(make_spec(resources={"gpus": 1, "spot": True}, aws={"output_uri": "s3://my-bucket/out"}), JOB_ID)
    ref = be.submit(plan)
    jobs.add(ref, "flowers", plan.spec.model_dump(mode="json"), plan.hash())
    job = _moto_job(JOB_ID)
    job.billable_time_in_seconds, job.training_time_in_seconds = 1200, 4000
    assert be.status(ref).details["metrics"]["billable_seconds"] == 1200
    assert jobs.get(JOB_ID).metrics == {}  # status() wrote nothing
    assert Job(ref, be, jobs).status().ok
    metrics = jobs.get(JOB_ID).metrics
    price = load_catalog("aws")["instances"]["ml.g4dn.xlarge"]["prices"][REGION]["on_demand"]
    assert metrics["billable_seconds"] == 1200 and metrics["training_seconds"] == 4000
    assert metrics["spot_savings_pct"] == 70.0
    assert metrics["cost_usd"] == round(1200 * price / 3600, 4)


def _put_events(logs: Any, stream: str, lines: list[str]) -> None:
    """Write CloudWatch events as the SageMaker agent would (recent timestamps: older ones are rejected)."""
    try:
        logs.create_log_group(logGroupName="/aws/sagemaker/TrainingJobs")
    except logs.exceptions.ResourceAlreadyExistsException:
        pass
    try:
        logs.create_log_stream(logGroupName="/aws/sagemaker/TrainingJobs", logStreamName=stream)
    except logs.exceptions.ResourceAlreadyExistsException:
        pass
    now_ms = int(time.time() * 1000)
    events = [{"timestamp": now_ms + i, "message": line} for i, line in enumerate(lines)]
    logs.put_log_events(logGroupName="/aws/sagemaker/TrainingJobs", logStreamName=stream, logEvents=events)


def test_logs_read_every_host_stream(aws_env: Any) -> None:
    be = backend(session=aws_env)
    ref = be.submit(
        be.plan(make_spec(resources={"gpus": 8, "nodes": 2}, aws={"output_uri": "s3://my-bucket/out"}), JOB_ID)
    )
    logs = aws_env.client("logs")
    _put_events(logs, f"{JOB_ID}/algo-1-1700000000", ["[launcher] node 0/2", "epoch 1"])
    _put_events(logs, f"{JOB_ID}/algo-2-1700000000", ["[launcher] node 1/2"])
    _put_events(logs, f"{JOB_ID}-2/algo-1-1700000000", ["another job"])
    assert list(be.logs(ref)) == ["[algo-1] [launcher] node 0/2", "[algo-1] epoch 1", "[algo-2] [launcher] node 1/2"]


def test_logs_follow_waits_for_the_group_and_stops_when_the_job_ends(aws_env: Any) -> None:
    logs = aws_env.client("logs")
    stream = f"{JOB_ID}/algo-1-1700000000"
    polls: list[int] = []

    def sleep(_seconds: float) -> None:  # the job makes progress between polls
        polls.append(1)
        job = _moto_job(JOB_ID)
        if len(polls) == 1:  # still no log group: the follower must keep waiting
            job.training_job_status, job.secondary_status = "InProgress", "Downloading"
        elif len(polls) == 2:
            _put_events(logs, stream, ["epoch 1"])
        else:
            _put_events(logs, stream, ["epoch 2", "[launcher] exit code 0"])
            job.training_job_status, job.secondary_status = "Completed", "Completed"

    be = SageMakerBackend(session=aws_env, catalog=load_catalog("aws"), sleep=sleep, poll_s=0)
    ref = be.submit(be.plan(make_spec(aws={"output_uri": "s3://my-bucket/out"}), JOB_ID))
    _moto_job(JOB_ID).training_job_status = "InProgress"
    _moto_job(JOB_ID).secondary_status = "Starting"
    assert list(be.logs(ref, follow=True)) == ["epoch 1", "epoch 2", "[launcher] exit code 0"]
    assert len(polls) == 3


def test_cancel_stops_the_job_with_stubber() -> None:
    client = boto3.client("sagemaker", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(client) as stub:
        stub.add_response("stop_training_job", {}, {"TrainingJobName": JOB_ID})
        backend(clients={"sagemaker": client}).cancel(JobRef(JOB_ID, "aws", JOB_ID, {"region": REGION}))
        stub.assert_no_pending_responses()
    with Stubber(client) as stub:
        stub.add_client_error("stop_training_job", "ValidationException", "The job has already completed.")
        with pytest.raises(LauncherError, match="ValidationException: The job has already completed"):
            backend(clients={"sagemaker": client}).cancel(JobRef(JOB_ID, "aws", JOB_ID, {"region": REGION}))


def test_submit_maps_quota_errors_with_stubber() -> None:
    client = boto3.client("sagemaker", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    plan = backend().plan(make_spec(aws={"output_uri": "s3://my-bucket/out"}), JOB_ID)
    with Stubber(client) as stub:
        stub.add_client_error(
            "create_training_job", "ResourceLimitExceeded", "The account-level service limit is 0 Instances"
        )
        with pytest.raises(LauncherError, match="ResourceLimitExceeded.*Service Quotas"):
            backend(clients={"sagemaker": client}).submit(plan)


def test_map_status_without_reason_is_still_a_failure() -> None:
    status = map_status({"TrainingJobStatus": "Failed", "SecondaryStatus": "Failed"})
    assert status.state is JobState.FAILED and status.result_code() == 1


# ---------------------------------------------------------------- image push and credentials


class FakeImage:
    def __init__(self, log: list[Any]) -> None:
        self.log = log

    def tag(self, repository: str, tag: str) -> bool:
        self.log.append(("tag", repository, tag))
        return True


class FakeImages:
    """The part of docker.DockerClient.images that push_image uses, recording the calls."""

    def __init__(self, error: str | None = None) -> None:
        self.log: list[Any] = []
        self.error = error

    def get(self, name: str) -> FakeImage:
        self.log.append(("get", name))
        return FakeImage(self.log)

    def push(self, repository: str, tag: str, auth_config: dict[str, str], stream: bool, decode: bool) -> Any:
        self.log.append(("push", repository, tag, auth_config))
        yield {"status": "Pushing"}
        if self.error:
            yield {"error": self.error}
        yield {"aux": {"Tag": tag, "Digest": "sha256:" + "1" * 64, "Size": 1234}}


class FakeDocker:
    def __init__(self, error: str | None = None) -> None:
        self.images = FakeImages(error)


def test_push_image_creates_the_repository_and_returns_the_digest(aws_env: Any) -> None:
    docker = FakeDocker()
    ref = backend(session=aws_env).push_image("torch-launcher-train:v1", docker)
    repo = f"{DEFAULT_ACCOUNT_ID}.dkr.ecr.{REGION}.amazonaws.com/torch-launcher-train"
    assert ref == f"{repo}@sha256:" + "1" * 64
    assert aws_env.client("ecr").describe_repositories()["repositories"][0]["repositoryName"] == "torch-launcher-train"
    push = [e for e in docker.images.log if e[0] == "push"][0]
    token = base64.b64decode(
        aws_env.client("ecr").get_authorization_token()["authorizationData"][0]["authorizationToken"]
    ).decode()
    assert push[1:3] == (repo, "v1") and push[3]["username"] == token.split(":")[0] == "AWS"
    # the pushed reference is accepted by plan as the image
    assert (
        backend().plan(make_spec(aws={"image_uri": ref}), JOB_ID).request()["AlgorithmSpecification"]["TrainingImage"]
        == ref
    )
    # a second push reuses the repository
    assert backend(session=aws_env).push_image("torch-launcher-train:v1", FakeDocker()) == ref


def test_plan_uses_the_recorded_push_for_the_default_image() -> None:
    from launcher.spec import DEFAULT_IMAGE
    from launcher.staging.image import record_push

    pushed = IMAGE.replace("0" * 64, "2" * 64)
    record_push("aws", DEFAULT_IMAGE, pushed)
    spec = make_spec(image=DEFAULT_IMAGE)
    assert backend().plan(spec, JOB_ID).request()["AlgorithmSpecification"]["TrainingImage"] == pushed
    explicit = backend(pushed_image=IMAGE).plan(spec, JOB_ID).request()["AlgorithmSpecification"]["TrainingImage"]
    assert explicit == IMAGE
    # an image named in the spec is never replaced
    assert backend().plan(make_spec(), JOB_ID).request()["AlgorithmSpecification"]["TrainingImage"] == IMAGE


def test_push_image_reports_docker_errors(aws_env: Any) -> None:
    with pytest.raises(LauncherError, match="denied: not authorized"):
        backend(session=aws_env).push_image("torch-launcher-train:v1", FakeDocker(error="denied: not authorized"))


def test_check_probes_credentials(aws_env: Any) -> None:
    check = backend(session=aws_env).check()
    assert check.sdk and check.credentials and DEFAULT_ACCOUNT_ID in check.message


def test_check_reports_missing_credentials() -> None:
    client = boto3.client("sts", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(client) as stub:
        stub.add_client_error(
            "get_caller_identity", "ExpiredTokenException", "The security token included in the request is expired"
        )
        check = backend(clients={"sts": client}).check()
    assert check.credentials is False and "ExpiredTokenException" in check.message


# ---------------------------------------------------------------- rendezvous inside the container


@pytest.mark.parametrize("host, rank", [("algo-1", 0), ("algo-2", 1), ("algo-3", 2)])
def test_rendezvous_from_resourceconfig(tmp_path: Path, host: str, rank: int) -> None:
    config = tmp_path / "resourceconfig.json"
    config.write_text(
        json.dumps({"current_host": host, "hosts": ["algo-2", "algo-1", "algo-3"], "network_interface_name": "eth0"})
    )
    rdzv = rendezvous.detect({}, resource_config=config)
    assert (rdzv.platform, rdzv.nnodes, rdzv.node_rank, rdzv.master_addr, rdzv.is_chief) == (
        "sagemaker",
        3,
        rank,
        "algo-1",
        rank == 0,
    )
    assert rdzv.torchrun_args(8) == [
        "--nnodes", "3", "--node_rank", str(rank), "--master_addr", "algo-1", "--master_port", "29500", "--nproc_per_node", "8",
    ]  # fmt: skip


def test_rendezvous_ranks_are_unique_with_many_hosts() -> None:
    hosts = [f"algo-{i}" for i in range(1, 13)]
    found = [rendezvous.sagemaker({"current_host": h, "hosts": hosts}, {}) for h in hosts]
    assert sorted(r.node_rank for r in found) == list(range(12))
    assert {r.master_addr for r in found} == {"algo-1"} and found[0].is_chief
