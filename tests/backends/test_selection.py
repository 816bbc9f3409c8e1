"""The three clouds choose and price instances by one rule (launcher.catalog.select).

The same small catalog is given to every cloud backend, so a cloud that
chooses by a rule of its own fails here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from launcher.backends.aws import SageMakerBackend
from launcher.backends.azure import AzureMLBackend
from launcher.backends.gcp import VertexBackend
from launcher.catalog import select
from launcher.contract import EntrypointArgs
from launcher.errors import LauncherError
from launcher.plan import Plan
from launcher.spec import JobSpec, Resources, validate_spec
from tests.backends.test_contract import OPTIONS, _argv

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")
CLOUDS = {"aws": SageMakerBackend, "gcp": VertexBackend, "azure": AzureMLBackend}
DEFAULT, OTHER = "us-east-1", "us-west-2"


def _row(gpus: int, vcpus: int, prices: dict[str, float], gpu_type: str | None = "T4") -> dict[str, Any]:
    accel = "NVIDIA_TESLA_T4" if gpus else None
    return {"gpus": gpus, "gpu_type": gpu_type if gpus else None, "vcpus": vcpus, "memory_gib": 32,
            "machine_type": "m", "accelerator_type": accel, "accelerator_count": gpus,
            "prices": {r: {"on_demand": p, "spot": p / 3} for r, p in prices.items()}}  # fmt: skip


CATALOG: dict[str, Any] = {
    "date": "2026-12-01", "default_region": DEFAULT, "regions": [DEFAULT, OTHER], "startup_s": 60,
    "accelerators": {"NVIDIA_TESLA_T4": {"gpu_type": "T4"}}, "machine_types": {},
    "instances": {
        "cpu": _row(0, 4, {DEFAULT: 0.2, OTHER: 0.2}),
        "thin-gpu": _row(1, 2, {DEFAULT: 0.5, OTHER: 0.5}),  # cheapest, but 2 vCPUs for its GPU
        "default-only": _row(1, 8, {DEFAULT: 1.0}),  # no price in OTHER
        "everywhere": _row(1, 8, {DEFAULT: 2.0, OTHER: 3.0}),
    },
}  # fmt: skip


def _plan(cloud: str, catalog: dict[str, Any] | None = None, **raw: Any) -> Plan:
    spec: dict[str, Any] = {"name": "digits", "image": "registry.example/train:1", **raw}
    spec[cloud] = {**OPTIONS[cloud], **raw.get(cloud, {})}
    backend = CLOUDS[cloud](catalog=catalog, pushed_image="")
    return backend.plan(validate_spec(spec, Path("job.yaml"), Path("/srv")))


def _instance(plan: Plan) -> str:
    request = plan.request()
    if plan.backend == "aws":
        return str(request["ResourceConfig"]["InstanceType"])
    if plan.backend == "azure":
        return str(request["resources"]["instance_type"])
    return next(n.split()[1] for n in plan.notes if n.startswith("machine: "))


@pytest.mark.parametrize("cloud", sorted(CLOUDS))
def test_a_gpu_job_gets_four_vcpus_per_gpu_unless_it_asks_for_fewer(cloud: str) -> None:
    assert _instance(_plan(cloud, CATALOG, resources={"gpus": 1})) == "default-only"
    assert _instance(_plan(cloud, CATALOG, resources={"gpus": 1, "cpus": 2})) == "thin-gpu"


@pytest.mark.parametrize("cloud", sorted(CLOUDS))
def test_a_region_without_a_price_falls_back_to_the_default_regions_price(cloud: str) -> None:
    default, other = (DEFAULT, OTHER) if cloud != "gcp" else ("us-east1", "us-west2")  # Vertex names its regions so
    catalog = json.loads(json.dumps(CATALOG).replace(DEFAULT, default).replace(OTHER, other))
    plan = _plan(cloud, catalog, resources={"gpus": 1}, limits={"max_cost": 2}, **{cloud: {"region": other}})
    assert _instance(plan) == "default-only"  # priced at its us-east-1 1.0/h, cheaper than 3.0/h here
    assert any(f"no catalog price for default-only in {other}; {default} prices used" in n for n in plan.notes)
    assert EntrypointArgs.parse(_argv(plan)).max_runtime == 2 * 3600  # $2 at $1.0 per node-hour


@pytest.mark.parametrize(
    ("cloud", "option", "instance"),
    [("aws", "instance_type", "ml.p3.2xlarge"), ("azure", "instance_type", "Standard_NC6s_v3"),
     ("gcp", "machine_type", "a2-highgpu-1g")],
)  # fmt: skip
def test_a_job_without_gpus_naming_a_gpu_instance_uses_its_gpus_everywhere(
    cloud: str, option: str, instance: str
) -> None:
    plan = _plan(cloud, resources={"gpus": 0}, **{cloud: {option: instance}})
    assert EntrypointArgs.parse(_argv(plan)).gpus == 1
    assert any(f"resources.gpus is 0; the job uses all 1 GPU(s) of {instance}" in n for n in plan.notes)


@pytest.mark.parametrize("cloud", sorted(CLOUDS))
def test_no_fit_is_one_error_naming_what_exists(cloud: str) -> None:
    with pytest.raises(LauncherError, match="exactly 3 T4 GPUs per node; they come with 1"):
        _plan(cloud, CATALOG, resources={"gpus": 3, "gpu_type": "T4"})


def test_the_rule_itself() -> None:
    cloud = select.Cloud("Test", "type", "test.type")
    res = Resources(gpus=1)
    assert [c.name for c in select.offer_rows(CATALOG, res, OTHER)] == ["default-only", "everywhere"]
    assert select.choose(CATALOG, Resources(gpus=1, spot=True), OTHER, cloud).price == pytest.approx(1.0 / 3)
    assert select.fits(
        CATALOG["instances"]["cpu"], Resources(gpu_type="A100")
    )  # a GPU type needs GPUs to mean anything
    unpriced = {**CATALOG, "instances": {"x": {**_row(1, 8, {}), "prices": {}}}}
    choice = select.choose(unpriced, res, OTHER, cloud)
    assert choice.price is None
    spec = JobSpec.model_validate({"name": "d", "limits": {"max_cost": 5, "max_runtime": 600}})
    notes: list[str] = []
    assert select.runtime_limit(spec, choice, notes) == 600 and "no catalog price for x" in notes[0]
    with pytest.raises(LauncherError, match="is not a type in the Test catalog.*did you mean everywhere"):
        select.named(CATALOG, "everywher", res, None, cloud)
