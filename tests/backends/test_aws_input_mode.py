"""aws.input_mode (issue 32): how an s3:// train.data reaches a SageMaker job; the default plan is unchanged."""

from __future__ import annotations

import pytest
from botocore.validate import ParamValidator

from launcher.backends.aws import DATA_DIR
from launcher.errors import SpecError
from tests.backends.test_aws import _input_shape, backend, make_spec, strict_problems

DATA = "s3://my-bucket/datasets/cars"


@pytest.mark.parametrize("mode", ["File", "FastFile"])
def test_a_channel_in_the_chosen_mode(mode: str) -> None:
    spec = make_spec(resources={"gpus": 1}, train={"data": DATA}, aws={"input_mode": mode})
    request = backend().plan(spec, "cars").request()
    (channel,) = request["InputDataConfig"]
    assert channel["InputMode"] == mode and channel["DataSource"]["S3DataSource"]["S3Uri"] == DATA
    assert any(DATA_DIR in a for a in request["AlgorithmSpecification"]["ContainerArguments"])
    assert not ParamValidator().validate(request, _input_shape()).has_errors()
    assert strict_problems(_input_shape(), request) == []


def test_stream_sends_no_channel_and_passes_the_uri_to_the_trainer() -> None:
    spec = make_spec(resources={"gpus": 1}, train={"data": DATA}, aws={"input_mode": "stream"})
    plan = backend().plan(spec, "cars")
    request = plan.request()
    assert "InputDataConfig" not in request
    assert any(DATA in a for a in request["AlgorithmSpecification"]["ContainerArguments"])
    assert any("aws.input_mode: stream" in n for n in plan.notes)
    assert not ParamValidator().validate(request, _input_shape()).has_errors()


def test_an_unknown_mode_is_refused() -> None:
    with pytest.raises(SpecError, match="input_mode"):
        backend().plan(make_spec(aws={"input_mode": "Pipe"}), "cars")
