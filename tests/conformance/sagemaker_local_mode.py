"""Run one CreateTrainingJob request under SageMaker's own local mode.

    python sagemaker_local_mode.py REQUEST.json S3_ENDPOINT CONTAINER_ROOT

Runs with the interpreter of a virtual environment holding the `sagemaker` SDK v2
(.ci/run makes .venv-sagemaker: sagemaker 2.x pins protobuf<7, which the project's
Google libraries do not accept, so it cannot share the test venv). Local mode is
AWS's own implementation of the training container contract: it writes
/opt/ml/input/config/resourceconfig.json per host, downloads S3 channels to
/opt/ml/input/data/<channel>, names the hosts algo-1-xxxx, algo-2-xxxx on one
compose network, runs ContainerEntrypoint + ContainerArguments, and passes
S3_ENDPOINT to the containers as AWS_ENDPOINT_URL_S3 (which boto3 honours), so
the job's channel, checkpoints and model output all go to the same moto server.

The request is the one our backend's plan() produced; the test replaces only
TrainingImage (the locally built image) and ResourceConfig.InstanceType
("local": local mode's only instance type). Fields local mode does not use
(RoleArn, StoppingCondition, CheckpointConfig, EnableManagedSpotTraining, Tags,
RetryStrategy, VpcConfig) are accepted and ignored by its create_training_job.
Exit code: 0 when every container exited 0, else 1 (local mode raises).

One change to local mode, named here: its `docker-compose up --abort-on-container-exit`
stops the other hosts when the first one exits, with compose's default 10 s before
SIGKILL. SageMaker gives every host 120 s between SIGTERM and SIGKILL
(https://docs.aws.amazon.com/sagemaker/latest/dg/model-managed-spot-training.html), so the
driver passes `--timeout 120`: node 0 still flushing its final checkpoint when node 1 has
exited is then given the platform's window, not compose's (seen: node 0 killed mid-upload).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

SIGKILL_AFTER_S = 120  # SageMaker's window between SIGTERM and SIGKILL


def main(request_file: str, s3_endpoint: str, container_root: str) -> int:
    import boto3
    from sagemaker.local import LocalSession
    from sagemaker.local.image import _SageMakerContainer

    compose = _SageMakerContainer._compose
    _SageMakerContainer._compose = lambda self, detached=False: [
        *compose(self, detached),
        "--timeout",
        str(SIGKILL_AFTER_S),
    ]

    request = json.loads(Path(request_file).read_text())
    region = request.get("Environment", {}).get("AWS_DEFAULT_REGION", "us-east-1")
    boto_session = boto3.Session(region_name=region)
    no_telemetry = {"SchemaVersion": "1.0", "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}}}
    session = LocalSession(boto_session=boto_session, s3_endpoint_url=s3_endpoint, sagemaker_config=no_telemetry)
    session.config = {"local": {"local_code": True, "container_root": container_root}}
    try:
        session.sagemaker_client.create_training_job(**request)
    except RuntimeError as exc:  # a container exited non-zero; compose's output above says which
        print(f"[local mode] {exc}", flush=True)
        return 1
    print("[local mode] training job completed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
