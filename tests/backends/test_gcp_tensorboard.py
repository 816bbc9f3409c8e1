"""gcp.tensorboard: the CustomJob names a Vertex AI TensorBoard instance (checked by aiplatform_v1's own types),
with the service account and output directory Vertex requires for it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from launcher.backends.gcp import VertexBackend
from launcher.errors import LauncherError
from launcher.spec import validate_spec

TB = "projects/demo-project/locations/us-central1/tensorboards/1234567890"
ACCOUNT = "trainer@demo-project.iam.gserviceaccount.com"


def _plan_body(**gcp: Any) -> dict[str, Any]:
    raw = {
        "name": "digits",
        "image": "us-central1-docker.pkg.dev/demo-project/launcher/train:1",
        "checkpoint": {"uri": "gs://demo-ckpt/runs"},
        "env": {"LOG_LEVEL": "info"},
        "gcp": {"project": "demo-project", "region": "us-central1", **gcp},
    }
    return VertexBackend().plan(validate_spec(raw, Path("job.yaml"), Path("/srv"))).request()


@pytest.mark.parametrize("given", ["1234567890", TB])
def test_the_custom_job_names_the_tensorboard_instance(given: str) -> None:
    from google.cloud.aiplatform_v1.types import CustomJob
    from google.protobuf import json_format

    body = _plan_body(tensorboard=given, service_account=ACCOUNT)
    job = CustomJob.from_json(json.dumps(body))  # unknown or misspelled fields raise here
    assert json_format.MessageToDict(CustomJob.pb(job)) == body
    assert job.job_spec.tensorboard == TB and job.job_spec.service_account == ACCOUNT
    # Vertex sets AIP_TENSORBOARD_LOG_DIR under this, and the trainer writes its events there
    assert job.job_spec.base_output_directory.output_uri_prefix == "gs://demo-ckpt/runs/digits"


def test_no_tensorboard_no_field() -> None:
    assert "tensorboard" not in _plan_body(service_account=ACCOUNT)["jobSpec"]


def test_tensorboard_without_a_service_account_is_one_sentence_with_a_fix() -> None:
    with pytest.raises(LauncherError, match="gcp.tensorboard needs gcp.service_account") as err:
        _plan_body(tensorboard="123")
    assert "Set gcp.service_account" in str(err.value.fix)


def test_tensorboard_without_an_output_directory_is_refused() -> None:
    raw = {
        "name": "digits",
        "image": "us-central1-docker.pkg.dev/demo-project/launcher/train:1",
        "gcp": {"project": "demo-project", "region": "us-central1", "tensorboard": "123", "service_account": ACCOUNT},
    }
    with pytest.raises(LauncherError, match="needs an output directory"):
        VertexBackend().plan(validate_spec(raw, Path("job.yaml"), Path("/srv")))


def test_a_malformed_tensorboard_name_names_the_key() -> None:
    with pytest.raises(LauncherError, match="gcp.tensorboard"):
        _plan_body(tensorboard="projects/p/tensorboards/x", service_account=ACCOUNT)
