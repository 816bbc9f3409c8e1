"""Every backend writes the entrypoint's command line through launcher.contract.

Each test plans one spec on all backends and reads the command back with the
entrypoint's own parser, so a backend that drifts from the contract fails here.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any, Callable

import pytest

from launcher.backends.aws import SageMakerBackend
from launcher.backends.azure import AzureMLBackend
from launcher.backends.gcp import VertexBackend
from launcher.backends.local import LocalBackend
from launcher.contract import SECRET_REFS_VARIABLE, EntrypointArgs
from launcher.plan import Plan
from launcher.spec import JobSpec, validate_spec

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")

OPTIONS: dict[str, dict[str, Any]] = {
    "aws": {"region": "us-east-1", "role_arn": "arn:aws:iam::123456789012:role/SageMakerRole", "secrets_prefix": "p"},
    "gcp": {"project": "demo-project", "region": "us-central1"},
    "azure": {"subscription_id": "00000000-1111-2222-3333-444444444444", "resource_group": "rg", "workspace": "vision-ws",
              "key_vault": "vision-kv", "storage_account": "visiondata"},
    "local": {"runtime": "docker"},
}  # fmt: skip
BACKENDS: dict[str, Callable[[], Any]] = {
    "aws": lambda: SageMakerBackend(pushed_image=""),
    "gcp": lambda: VertexBackend(pushed_image=""),
    "azure": lambda: AzureMLBackend(pushed_image=""),
    "local": LocalBackend,
}


def _argv(plan: Plan) -> list[str]:
    """The entrypoint's arguments inside each backend's native request."""
    request = plan.request()
    if plan.backend == "aws":
        return list(request["AlgorithmSpecification"]["ContainerArguments"])
    if plan.backend == "gcp":
        return list(request["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]["args"])
    if plan.backend == "azure":
        return shlex.split(request["command"])[3:]
    return list(plan.payload["docker"]["command"])


def _env(plan: Plan) -> dict[str, str]:
    request = plan.request()
    if plan.backend == "aws":
        return dict(request["Environment"])
    if plan.backend == "gcp":
        return {e["name"]: e["value"] for e in request["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]["env"]}
    return dict(request["environment_variables"])


def _plan(backend: str, **raw: Any) -> Plan:
    spec: dict[str, Any] = {"name": "digits", "image": "registry.example/train:1", **raw}
    spec[backend] = {**OPTIONS[backend], **raw.get(backend, {})}
    return BACKENDS[backend]().plan(validate_spec(spec, Path("job.yaml"), Path("/srv")))


def _parsed(backend: str, **raw: Any) -> EntrypointArgs:
    return EntrypointArgs.parse(_argv(_plan(backend, **raw)))


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_every_backend_passes_the_runtime_limit_to_the_entrypoint(backend: str) -> None:
    assert _parsed(backend, limits={"max_runtime": "2h"}).max_runtime == 7200


@pytest.mark.parametrize("backend", ["aws", "gcp", "azure"])
def test_the_budget_cap_is_the_entrypoints_runtime_limit_too(backend: str) -> None:
    plan = _plan(backend, resources={"gpus": 1}, limits={"max_runtime": "12h", "max_cost": 1})
    limit = EntrypointArgs.parse(_argv(plan)).max_runtime
    assert limit is not None and limit < 12 * 3600
    native = {"aws": lambda r: r["StoppingCondition"]["MaxRuntimeInSeconds"],
              "gcp": lambda r: int(r["jobSpec"]["scheduling"]["timeout"].removesuffix("s")),
              "azure": lambda r: r["limits"]["timeout"]}[backend]  # fmt: skip
    assert native(plan.request()) == limit


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_keep_and_every_travel_only_with_a_checkpoint_uri(backend: str) -> None:
    argv = _argv(_plan(backend, checkpoint={"keep": 5, "every": 2}))
    assert "--keep" not in argv and "--every" not in argv and "--checkpoint-uri" not in argv


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_the_run_folder_is_the_spec_name_and_the_spec_hash_travels(backend: str) -> None:
    plan = _plan(backend)
    parsed = EntrypointArgs.parse(_argv(plan))
    assert parsed.run_name == "digits" and parsed.spec_hash == plan.spec.spec_hash()


@pytest.mark.parametrize("backend", ["aws", "gcp", "azure"])
def test_secret_references_use_the_contracts_variable_and_form(backend: str) -> None:
    env = _env(_plan(backend, secrets=["WANDB_API_KEY", "A_TOKEN"]))
    value = env[SECRET_REFS_VARIABLE]
    refs = json.loads(value)
    assert list(refs) == ["A_TOKEN", "WANDB_API_KEY"] and ", " not in value  # compact, sorted: one form
    assert all(ref.split(":", 1)[0] in {"aws-sm", "gcp-sm", "azure-kv"} for ref in refs.values())


@pytest.mark.parametrize(
    ("backend", "data", "seen"),
    [("aws", "s3://my-bucket/digits", "/opt/ml/input/data/train"), ("azure", "az://datasets/digits", "${{inputs.data}}"),
     ("gcp", "gs://b/digits", "/gcs/b/digits"), ("local", "/srv/digits", "/data")],  # gcp: Cloud Storage FUSE
)  # fmt: skip
def test_data_is_rewritten_by_one_rule(backend: str, data: str, seen: str) -> None:
    """The trainer's data= is where the backend put the data, and nothing else of the command changes."""
    plan = _plan(backend, train={"data": data, "epochs": 2})
    expected = plan.spec.train.model_copy(update={"data": seen}).to_args()
    assert EntrypointArgs.parse(_argv(plan)).command == ("train", *expected)


def test_azure_named_cluster_without_a_size_runs_one_process_per_gpu() -> None:
    """The cluster decides the VM size: the entrypoint counts the GPUs rather than being told 0 (one process)."""
    parsed = _parsed("azure", azure={"compute": "gpu-cluster"})
    assert parsed.gpus is None
    assert _parsed("azure", resources={"gpus": 4}, azure={"compute": "gpu-cluster"}).gpus == 4
    sized = _parsed(
        "azure", resources={"gpus": 4}, azure={"compute": "gpu-cluster", "instance_type": "Standard_NC24s_v3"}
    )
    assert sized.gpus == 4


def test_a_spec_with_its_own_command_keeps_it_verbatim_after_the_separator() -> None:
    for backend in BACKENDS:
        command = ["python", "my_train.py", "--gpus", "3", "--", "x y"]
        assert _parsed(backend, command=command).command == tuple(command), backend


def test_every_backend_builds_the_same_contract_for_the_same_spec() -> None:
    """Only what the platform decides differs: gpus, where checkpoints and data are seen, the save dir."""
    spec = JobSpec.model_validate({"name": "digits", "train": {"data": "digits"}, "limits": {"max_runtime": 600}})
    parsed = {b: _parsed(b, train={"data": "digits"}, limits={"max_runtime": 600}) for b in BACKENDS}
    common = {(p.run_name, p.command, p.max_runtime, p.checkpoint_uri) for p in parsed.values()}
    assert common == {("digits", ("train", *spec.train.to_args()), 600, None)}
