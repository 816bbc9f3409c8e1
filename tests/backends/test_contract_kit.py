"""launcher.testing over every registered backend, and over a sample plugin installed by entry point."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Any, Iterator

import pytest

from launcher.backends import registry
from launcher.testing import check_backend
from tests.backends.test_contract import BACKENDS, OPTIONS, _argv

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")
REPO = Path(__file__).resolve().parents[2]
EXAMPLES = {"aws": "aws.yaml", "gcp": "gcp.yaml", "azure": "azure.yaml", "local": "quickstart.yaml"}
EXAMPLE_ENV = {"LAUNCHER_BUCKET": "my-bucket", "SAGEMAKER_ROLE_ARN": "arn:aws:iam::123456789012:role/R", "GOOGLE_CLOUD_PROJECT": "demo-project",
               "AZURE_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000000", "AZURE_RESOURCE_GROUP": "rg",
               "AZUREML_WORKSPACE_NAME": "vision-ws"}  # fmt: skip


def _raw(name: str) -> dict[str, Any]:
    return {"name": "digits", "image": "registry.example/train:1", "resources": {"gpus": 1}, "limits": {"max_runtime": 600},
            "checkpoint": {"uri": {"aws": "s3://my-bucket/c", "gcp": "gs://my-bucket/c", "azure": "s3://my-bucket/c"}.get(name, "/srv/ckpt")},
            name: OPTIONS[name]}  # fmt: skip


def test_every_builtin_backend_is_registered() -> None:
    assert set(BACKENDS) <= set(registry.available())


@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_every_builtin_backend_keeps_the_contract(name: str, tmp_path: Path) -> None:
    cls = registry.get(name)
    check_backend(
        cls,
        _raw(name),
        tmp_path,
        argv_of=_argv,
        examples=[REPO / "examples" / EXAMPLES[name]],
        examples_env=EXAMPLE_ENV,
    )


@pytest.fixture
def sample_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[type]:
    """The sample plugin installed as a third party would: its module and one entry point, nothing else."""
    source = Path(__file__).parents[1] / "sample_plugin" / "slurmish.py"
    (tmp_path / "slurmish.py").write_text(source.read_text())
    dist = tmp_path / "slurmish-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: slurmish\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        textwrap.dedent("[launcher.backends]\nslurmish = slurmish:SlurmishBackend\n")
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    registry.reload()
    yield registry.get("slurmish")
    sys.modules.pop("slurmish", None)
    registry.reload()


def test_a_sample_plugin_is_one_module_and_one_entry_point_and_keeps_the_contract(
    sample_plugin: type, tmp_path: Path
) -> None:
    import slurmish  # type: ignore[import-not-found]  # installed by the fixture

    raw = {"name": "digits", "resources": {"gpus": 2, "nodes": 2}, "plugins": {"slurmish": {"partition": "a100"}}}
    golden = Path(__file__).parent / "golden" / "plugin_slurmish.yaml"
    plan = check_backend(sample_plugin, raw, tmp_path, argv_of=slurmish.argv_of, golden=golden)
    assert plan.request()["partition"] == "a100"


def test_the_kit_catches_a_backend_that_breaks_the_contract(tmp_path: Path) -> None:
    from launcher.plan import Plan
    from tests.sample_plugin.slurmish import SlurmishBackend, argv_of

    class Leaky(SlurmishBackend):
        def plan(self, spec, job_id=None):  # type: ignore[no-untyped-def]
            import os

            plan = super().plan(spec, job_id)
            env = {
                **plan.payload["env"],
                **{n: os.environ.get(n, "") for n in spec.secrets},
            }  # the value, not a reference
            return Plan(self.name, plan.job_name, spec, {**plan.payload, "env": env}, secrets=plan.secrets)

    with pytest.raises(AssertionError, match="secret's value is in the plan"):
        check_backend(Leaky, {"name": "digits", "plugins": {"slurmish": {}}}, tmp_path, argv_of=argv_of)


def test_the_kit_catches_a_plan_that_reads_the_environment(tmp_path: Path) -> None:
    from tests.sample_plugin.slurmish import SlurmishBackend

    class Impure(SlurmishBackend):
        def plan(self, spec, job_id=None):  # type: ignore[no-untyped-def]
            import os

            plan = super().plan(spec, job_id)
            return type(plan)(
                self.name, plan.job_name, spec, {**plan.payload, "cwd": os.getcwd()}, secrets=plan.secrets
            )

    with pytest.raises(AssertionError, match="read the environment, the cwd or the state dir"):
        check_backend(Impure, {"name": "digits", "plugins": {"slurmish": {}}}, tmp_path)
