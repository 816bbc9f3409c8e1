"""Plans are frozen values that never show secrets."""

from __future__ import annotations

import pytest

from launcher.plan import REDACTED, JobState, JobStatus, Plan
from launcher.spec import JobSpec


def make_plan() -> Plan:
    spec = JobSpec(name="a", secrets=["API_TOKEN"])
    payload = {"Environment": {"API_TOKEN": "leaked", "MODE": "x"}, "env": ["API_TOKEN=leaked", "B=1"],
               "containerSpec": {"env": [{"name": "API_TOKEN", "value": "leaked"}]}}  # fmt: skip
    return Plan("test", "a", spec, payload, secrets=("API_TOKEN",))


def test_plan_is_deeply_frozen() -> None:
    plan = make_plan()
    with pytest.raises(TypeError):
        plan.payload["Environment"]["MODE"] = "y"  # type: ignore[index]
    request = plan.request()
    request["Environment"]["MODE"] = "y"  # a copy: the plan is unchanged
    assert plan.payload["Environment"]["MODE"] == "x"


def test_yaml_and_json_redact_every_secret_shape() -> None:
    plan = make_plan()
    for text in (plan.to_yaml(), plan.to_json()):
        assert "leaked" not in text
        assert REDACTED in text
    assert plan.hash() == make_plan().hash()


def test_status_codes() -> None:
    assert JobStatus(JobState.SUCCEEDED).result_code() == 0
    assert JobStatus(JobState.STOPPED).result_code() == 1
    assert JobStatus(JobState.FAILED, exit_code=3).result_code() == 3
    assert not JobStatus(JobState.RUNNING).finished
