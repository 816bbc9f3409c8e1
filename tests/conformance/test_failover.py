"""A spot run started once, as from CI, finishes on another platform (issues 24 and 25).

`launch -b aws job.yaml --yes` with `recovery: {fallback: [local], after_failures: 2}` and the
ultralytics engine (a YOLO11n detector, data in S3). Its CreateTrainingJob requests go through
boto3 to moto, and each one runs under SageMaker's own local mode, as in test_sagemaker.py.
SageMaker "reclaims" the first two jobs: their containers get SIGTERM once an epoch is saved
(after epoch 1, then after epoch 2), and the job reads as SageMaker reports a managed-spot job
whose capacity did not come back (Stopped, MaxWaitTimeExceeded, an Interrupted transition). The
supervisor resubmits once to SageMaker, then moves the run to the local backend's Docker runtime,
which resumes from the same S3 checkpoint with Ultralytics' own resume and finishes epoch 3 above
the detector's mAP bar. `launch status RUN` then lists the three attempts.

What the harness plays, named here (the rest is the product's own code path and AWS's local mode):
- SageMaker's compute plane behind moto's control plane. Moto accepts CreateTrainingJob but runs
  nothing and calls every job Completed at once; here a job starts InProgress, the harness runs the
  request body boto3 sent (TrainingImage mapped from its ECR name to the local build,
  InstanceType "local") and sets the job's status, transitions and billable seconds when its
  containers exit, and copies their output to CloudWatch Logs (moto), where `launch` reads it.
- The local fallback reaches the same moto S3 through AWS_ENDPOINT_URL and a mounted credentials
  file, as a user's Docker job reaches S3 with a mounted ~/.aws.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from tests import pace
from tests.conformance.cluster import REPO, wait_until
from tests.conformance.conftest import BUCKET
from tests.conformance.platforms import SageMakerLocalJob
from tests.conformance.test_sagemaker import AWS_ENV, SAGEMAKER_PYTHON, s3_client, upload_folder

pytest.importorskip("ultralytics")

from tests.backends.test_local_ultralytics import DETECT_MAP50_BAR, ENGINE_IMAGE  # noqa: E402

ECR_IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/torch-launcher-train:ultralytics"
EPOCHS = 3
TRAIN = {
    "engine": "ultralytics",
    "model": "yolo11n.yaml",
    "epochs": EPOCHS,
    "imgsz": 64,
    "batch": 8,
    "workers": 0,
    "plots": False,
    "optimizer": "AdamW",
    "lr0": 0.01,
    "warmup_epochs": 0,
    "mosaic": 0.0,
}  # as test_local_ultralytics
RECLAIM_AFTER = ("[train] epoch 1/3:", "[train] epoch 2/3:")  # SageMaker reclaims its first two jobs there
RUN_S = 1500  # the whole run on a quiet machine (three attempts: about 5 minutes); scaled by the pace


@pytest.fixture(scope="module")
def engine_image(docker: Any) -> str:
    from tests.docker_base import train_image_or_skip

    return train_image_or_skip(docker, ENGINE_IMAGE)


@pytest.fixture(scope="module")
def shapes_in_s3(s3_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    from launcher.runtime.datasets import write_shapes
    from tests.conftest import require_service

    require_service(
        "sagemaker SDK v2", Path(SAGEMAKER_PYTHON).exists(), f"{SAGEMAKER_PYTHON} is missing (.ci/run makes it)"
    )
    root = write_shapes(tmp_path_factory.mktemp("shapes"), train=480, val=60)
    return upload_folder(s3_client(s3_endpoint), root, "data/shapes")


class SageMakerComputePlane:
    """Runs the training jobs moto accepts under SageMaker's local mode (module docstring)."""

    def __init__(
        self, monkeypatch: pytest.MonkeyPatch, s3_endpoint: str, docker: Any, image: str, workdir: Path
    ) -> None:
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.sagemaker import models, responses

        self.requests: dict[str, dict[str, Any]] = {}
        self.endings: list[tuple[str, list[int], str]] = []  # (job, exit codes, how SageMaker reports it)
        self.errors: list[str] = []  # what went wrong in the harness itself (the job then reads Failed)
        self.s3_endpoint, self.docker, self.image, self.workdir = s3_endpoint, docker, image, workdir
        self._jobs = lambda: models.sagemaker_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].training_jobs
        self._stop = threading.Event()
        create, init = responses.SageMakerResponse.create_training_job, models.FakeTrainingJob.__init__

        def keep_request(response: Any) -> Any:  # the body boto3 sent, before moto keeps only some of it
            body = json.loads(response.body)
            self.requests[body["TrainingJobName"]] = body
            return create(response)

        def starts_in_progress(job: Any, *args: Any, **kwargs: Any) -> None:
            init(job, *args, **kwargs)
            job.training_job_status, job.secondary_status, job.training_end_time = "InProgress", "Starting", None

        monkeypatch.setattr(responses.SageMakerResponse, "create_training_job", keep_request)
        monkeypatch.setattr(models.FakeTrainingJob, "__init__", starts_in_progress)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(pace.scaled(300))

    def _serve(self) -> None:
        started: set[str] = set()
        while not self._stop.wait(0.5):
            for name in [n for n in list(self.requests) if n not in started and n in self._jobs()]:
                started.add(name)
                try:
                    self._run(name, RECLAIM_AFTER[len(started) - 1] if len(started) <= len(RECLAIM_AFTER) else None)
                except Exception as exc:  # noqa: BLE001 - reported by the test, and the job must not hang InProgress
                    self.errors.append(f"{name}: {exc!r}")
                    job = self._jobs()[name]
                    job.training_job_status = job.secondary_status = "Failed"
                    job.failure_reason = f"the test harness failed: {exc!r}"

    def _run(self, name: str, reclaim_after: str | None) -> None:
        job, request = self._jobs()[name], dict(self.requests[name])
        keys = ("TrainingJobName", "AlgorithmSpecification", "OutputDataConfig", "ResourceConfig", "InputDataConfig",
                "Environment", "HyperParameters", "StoppingCondition", "RoleArn", "CheckpointConfig")  # fmt: skip
        request = {k: request[k] for k in keys if k in request}
        assert request["AlgorithmSpecification"]["TrainingImage"] == ECR_IMAGE, request["AlgorithmSpecification"]
        request["AlgorithmSpecification"] = {**request["AlgorithmSpecification"], "TrainingImage": self.image}
        request["ResourceConfig"] = {**request["ResourceConfig"], "InstanceType": "local"}
        began = time.time()
        transitions = [{"Status": "Starting", "StartTime": began}, {"Status": "Training", "StartTime": began}]
        job.secondary_status, job.secondary_status_transitions = "Training", transitions
        local = SageMakerLocalJob(SAGEMAKER_PYTHON, request, self.s3_endpoint, self.workdir / name, {**os.environ, **AWS_ENV},
                                  self.docker, self.image)  # fmt: skip
        logs = _CloudWatch(self.s3_endpoint, name, began)
        try:
            if reclaim_after is not None:
                found = wait_until(lambda: logs.copy(local.logs()) or reclaim_after in local.logs() or local.proc.poll() is not None,
                                   pace.scaled(900), 0.5)  # fmt: skip
                assert found and reclaim_after in local.logs(), f"no {reclaim_after!r}:\n{local.logs()[-4000:]}"
                local.terminate()
            codes = local.wait(pace.scaled(900))
            logs.copy(local.logs())
        finally:
            local.cleanup()
        ran = int(time.time() - began)
        job.training_time_in_seconds = job.billable_time_in_seconds = ran
        if reclaim_after is not None:  # managed spot: interrupted, and no capacity before MaxWaitTimeInSeconds
            job.training_job_status, job.secondary_status = "Stopped", "MaxWaitTimeExceeded"
            transitions += [
                {"Status": "Interrupted", "StartTime": time.time()},
                {"Status": "MaxWaitTimeExceeded", "StartTime": time.time()},
            ]
        elif codes and all(code == 0 for code in codes):
            job.training_job_status = job.secondary_status = "Completed"
        else:
            job.training_job_status = job.secondary_status = "Failed"
            job.failure_reason = f"AlgorithmError: the training container exited with codes {codes}"
        self.endings.append((name, codes, job.secondary_status))


class _CloudWatch:
    """The job's container output in CloudWatch Logs, one stream per host, as SageMaker writes it."""

    def __init__(self, endpoint: str, job: str, began: float) -> None:
        import boto3

        self.client = boto3.client("logs", endpoint_url=endpoint, **{k.lower(): v for k, v in AWS_ENV.items() if k != "AWS_DEFAULT_REGION"},
                                   region_name="us-east-1")  # fmt: skip
        self.job, self.stamp, self.sent = job, int(began), 0
        self.streams: set[str] = set()
        try:
            self.client.create_log_group(logGroupName="/aws/sagemaker/TrainingJobs")
        except self.client.exceptions.ResourceAlreadyExistsException:
            pass

    def copy(self, output: str) -> None:
        lines = output.splitlines()[self.sent :]
        self.sent += len(lines)
        for line in lines:
            # compose prefixes each line with the container's name, `<random>-algo-N-<suffix>` (platforms.py)
            host = re.match(r"^\S*?(algo-\d+)-\w+\s*\| ?(.*)$", re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", line))
            if host is None:
                continue
            stream = f"{self.job}/{host.group(1)}-{self.stamp}"
            if stream not in self.streams:
                self.client.create_log_stream(logGroupName="/aws/sagemaker/TrainingJobs", logStreamName=stream)
                self.streams.add(stream)
            self.client.put_log_events(logGroupName="/aws/sagemaker/TrainingJobs", logStreamName=stream,
                                       logEvents=[{"timestamp": int(time.time() * 1000), "message": host.group(2) or " "}])  # fmt: skip


@pytest.fixture
def platform(monkeypatch: pytest.MonkeyPatch, s3_endpoint: str, docker: Any, engine_image: str,
             tmp_path: Path) -> Iterator[SageMakerComputePlane]:  # fmt: skip
    plane = SageMakerComputePlane(monkeypatch, s3_endpoint, docker, engine_image, tmp_path / "sagemaker")
    try:
        yield plane
    finally:
        plane.close()


def _launch(*args: str, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", "from launcher.cli import main; main()", *args], capture_output=True,
                          text=True, env=env, timeout=timeout, check=False)  # fmt: skip


def test_a_spot_run_reclaimed_twice_on_sagemaker_finishes_on_local_docker(platform: SageMakerComputePlane, shapes_in_s3: str,
                                                                       s3_endpoint: str, tmp_path: Path) -> None:  # fmt: skip
    name = f"conf-failover-{uuid.uuid4().hex[:6]}"
    creds = tmp_path / "aws"
    creds.mkdir()
    (creds / "credentials").write_text("[default]\naws_access_key_id = testing\naws_secret_access_key = testing\n")
    creds.chmod(0o755)
    (creds / "credentials").chmod(0o644)
    spec = {
        "name": name,
        "image": ENGINE_IMAGE,
        "train": {**TRAIN, "data": shapes_in_s3},
        "resources": {"nodes": 1, "gpus": 0, "spot": True},
        "checkpoint": {"uri": f"s3://{BUCKET}/checkpoints"},
        "env": {"OMP_NUM_THREADS": "2", "AWS_ENDPOINT_URL": s3_endpoint, "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_SHARED_CREDENTIALS_FILE": "/etc/launcher-aws/credentials"},  # fmt: skip
        "limits": {"max_cost": 5.0},
        "recovery": {"max_attempts": 4, "on": ["preempted", "capacity"], "fallback": ["local"], "after_failures": 2},
        "aws": {"region": "us-east-1", "role_arn": "arn:aws:iam::123456789012:role/SageMakerRole", "image_uri": ECR_IMAGE,
                "output_uri": f"s3://{BUCKET}/output", "instance_type": "ml.m5.xlarge"},
        "local": {"runtime": "docker", "mounts": [{"source": str(creds), "target": "/etc/launcher-aws"}]},
    }  # fmt: skip
    job_file = tmp_path / "job.yaml"
    job_file.write_text(yaml.safe_dump(spec, sort_keys=False))
    env = {**os.environ, **AWS_ENV, "AWS_ENDPOINT_URL": s3_endpoint, "PYTHONPATH": str(REPO),
           "LAUNCHER_STATE_DIR": str(tmp_path / "state"), "LAUNCHER_DATA_DIR": str(tmp_path / "data-cache")}  # fmt: skip

    # A CPU instance has no throughput figure to estimate an attempt by (the GPU table is per GPU): the budget is kept
    # by each attempt's hard runtime limit at what is left of max_cost (SageMaker's MaxRuntimeInSeconds), as
    # --ignore-budget's refusal message says
    ran = _launch("-b", "aws", str(job_file), "--yes", "--ignore-budget", env=env, timeout=pace.scaled(RUN_S))
    out = ran.stdout + ran.stderr
    assert not platform.errors, platform.errors
    assert ran.returncode == 0, f"launch exited {ran.returncode}:\n{out[-8000:]}"

    # SageMaker ran two jobs, each reclaimed after an epoch was saved: every container exited 143
    assert [(codes, how) for _, codes, how in platform.endings] == [([143], "MaxWaitTimeExceeded")] * 2, (
        platform.endings
    )
    assert "local: the checkpoint store s3://" in out, "no note of what the fallback pays to read the S3 store"
    assert out.count("(preempted)") == 2 and "aws failed 2 time(s) in a row: moving the run to local" in out, out[
        -8000:
    ]
    # the supervisor showed the SageMaker jobs' own output (CloudWatch) and the local one's
    assert "[train] epoch 1/3:" in out and "[train] epoch 3/3:" in out, out[-8000:]
    resumed = re.findall(r"\[train\] resuming from \S+: epoch (\d+) done", out)
    assert resumed == ["1", "2"], (
        f"each attempt after the first resumes from the store's last.pt: {resumed}\n{out[-8000:]}"
    )
    assert re.search(r"attempt 3 \(\S+ on local\): succeeded", out), out[-8000:]

    status = _launch("status", name, env={**env, "COLUMNS": "200"}, timeout=120)  # every column, none cut
    story = status.stdout
    assert status.returncode == 0 and re.search(r"run \S+\s+succeeded", story), status.stdout + status.stderr
    attempts = re.findall(r"^\s*(\d)\s+(aws|local)\s+\S+\s+(\w+)\s+(\S+)\s+(\S+)", story, re.M)
    assert [(a[0], a[1], a[2], a[3]) for a in attempts] == [("1", "aws", "failed", "preempted"), ("2", "aws", "failed", "preempted"),
                                                             ("3", "local", "succeeded", "-")], story  # fmt: skip
    assert "of limits.max_cost $5.00 over 3 attempt(s)" in story, story

    pulled = _launch("ckpt", "pull", f"s3://{BUCKET}/checkpoints/{name}", str(tmp_path / "final"), env=env, timeout=300)
    assert pulled.returncode == 0, pulled.stdout + pulled.stderr
    import csv

    with open(tmp_path / "final" / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"].strip() for r in rows] == ["1", "2", "3"], rows
    print(f"failover detect final mAP50(B) {rows[-1]['metrics/mAP50(B)']}")
    assert float(rows[-1]["metrics/mAP50(B)"]) > DETECT_MAP50_BAR, rows[-1]
