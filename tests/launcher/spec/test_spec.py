"""Job spec loading: good files, bad files, typos, interpolation, --set."""

from __future__ import annotations

from pathlib import Path

import pytest

from launcher.errors import SpecError
from launcher.spec import JobSpec, load_spec, parse_duration

GOOD = """
name: digits-r18
train:
  model: resnet18
  epochs: 3
  batch: -1
  cache: ram
resources: {gpus: 2, nodes: 1, gpu_type: a10g, memory: 32Gi}
checkpoint: {uri: runs, keep: 2}
env: {LOG_LEVEL: info, WORKERS: 4}
secrets: [WANDB_API_KEY]
limits: {max_runtime: 1h30m, max_cost: 12.5}
"""


def write(tmp_path: Path, text: str, name: str = "job.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_good_file_loads_with_defaults_and_conversions(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, GOOD), cwd=tmp_path)
    assert spec.train.epochs == 3 and spec.train.batch == -1 and spec.train.cache == "ram"
    assert spec.train.lr0 == 0.01  # default kept
    assert spec.resources.gpu_type == "A10G" and spec.resources.memory == 32.0
    assert spec.limits.max_runtime == 5400
    assert spec.checkpoint.uri == str(tmp_path / "runs")  # relative paths resolved at load time
    assert spec.env == {"LOG_LEVEL": "info", "WORKERS": "4"}
    assert spec.train.data == "digits"  # built-in datasets are not paths


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "is empty"),
        ("- name: a\n", "top level is a list"),
        ("name: a\ntrain:\n  epoch: 3\n", "train.epoch: unknown key 'epoch'; did you mean 'epochs'?"),
        ("name: a\ntrain: {epochs: -1}\n", "train.epochs: Input should be greater than or equal to 1"),
        ("name: a\ntrain: {batch: 0}\n", "train.batch: batch must be a positive number"),
        ("name: Bad_Name\n", "'Bad_Name' is not a valid job name"),
        ("name: a\nresources: {gpus: 1}\nlimits: {max_runtime: soon}\n", "'soon' is not a duration"),
        ("name: a\nenv: {X: 1}\nsecrets: [X]\n", "X is listed in both env and secrets"),
        ("train: {}\n", "name: this key is required"),
        ("name: a\nresourcs: {}\n", "did you mean 'resources'?"),
        ("name: a\ntrain: {optimizer: adamw}\n", "train.optimizer"),
    ],
)
def test_bad_files_give_file_key_path_and_reason(tmp_path: Path, text: str, fragment: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(SpecError) as info:
        load_spec(path, cwd=tmp_path)
    assert fragment in str(info.value)
    assert str(path) in str(info.value)


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "name: a\ntrain:\n  epochs: [3\n  batch: 2\n")
    with pytest.raises(SpecError, match=r"line \d+, column \d+: YAML syntax error"):
        load_spec(path)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="no such file"):
        load_spec(tmp_path / "nope.yaml")
    with pytest.raises(SpecError, match="is a directory"):
        load_spec(tmp_path)


def test_interpolation_with_defaults_and_missing_variable(tmp_path: Path) -> None:
    text = (
        "name: a\ntrain: {epochs: '${EPOCHS}', model: '${MODEL:-resnet34}'}\ncheckpoint: {uri: 's3://${BUCKET}/ck'}\n"
    )
    spec = load_spec(write(tmp_path, text), environ={"EPOCHS": "7", "BUCKET": "b1"})
    assert spec.train.epochs == 7 and spec.train.model == "resnet34"
    assert spec.checkpoint.uri == "s3://b1/ck"
    with pytest.raises(SpecError, match=r"checkpoint.uri: environment variable BUCKET is not set"):
        load_spec(write(tmp_path, text), environ={"EPOCHS": "7"})


def test_set_overrides_are_typed_and_validated(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    spec = load_spec(path, ["train.epochs=9", "resources.spot=true", "aws.region=eu-west-1"], cwd=tmp_path)
    assert spec.train.epochs == 9 and spec.resources.spot is True and spec.aws == {"region": "eu-west-1"}
    with pytest.raises(SpecError, match="unknown key 'epoks'; did you mean 'epochs'"):
        load_spec(path, ["train.epoks=9"])
    with pytest.raises(SpecError, match="is not KEY=VALUE"):
        load_spec(path, ["train.epochs"])
    with pytest.raises(SpecError, match="name is not a mapping"):
        load_spec(path, ["name.x=1"])


def test_backend_sections_are_validated_by_the_backends_model(tmp_path: Path) -> None:
    """By the registry, where backends are loaded (the CLI and Launcher.plan call it), not by load_spec."""
    from launcher.backends import registry

    path = write(tmp_path, "name: a\nlocal: {runtim: process}\n")
    spec = load_spec(path)
    with pytest.raises(SpecError, match=r"job.yaml: local.runtim: unknown key 'runtim'; did you mean 'runtime'\?"):
        registry.check_sections(spec, path)


def test_spec_is_frozen_and_hash_ignores_where_it_runs(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, GOOD), cwd=tmp_path)
    with pytest.raises(Exception):
        spec.name = "other"  # type: ignore[misc]
    moved = spec.model_copy(update={"resources": spec.resources.model_copy(update={"nodes": 4})})
    assert moved.spec_hash() == spec.spec_hash()
    retrained = spec.model_copy(update={"train": spec.train.model_copy(update={"epochs": 4})})
    assert retrained.spec_hash() != spec.spec_hash()


def test_train_args_round_trip_as_key_value() -> None:
    spec = JobSpec(name="a", train={"cache": "disk", "amp": False, "epochs": 2})
    args = spec.train.to_args()
    assert "cache=disk" in args and "amp=false" in args and "epochs=2" in args


@pytest.mark.parametrize(("text", "seconds"), [("4h", 14400), ("1h30m", 5400), ("90s", 90), ("2d", 172800), (600, 600)])
def test_durations(text: str | int, seconds: int) -> None:
    assert parse_duration(text) == seconds


EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
EXAMPLE_BACKENDS = {
    "quickstart.yaml": "local",
    "aws.yaml": "aws",
    "gcp.yaml": "gcp",
    "azure.yaml": "azure",
    "job.yaml": "aws",
    "slurm.yaml": "slurm",
}


@pytest.mark.parametrize(
    "path",
    sorted([*EXAMPLES.glob("*.yaml"), *EXAMPLES.glob("ci/*.yaml"), *EXAMPLES.glob("own_program/*.yaml")]),
    ids=lambda p: p.name,
)
def test_examples_load_and_plan(path: Path) -> None:
    """Every example spec validates and plans (pure, offline) on the backend it is written for."""
    import re

    from launcher.api import Launcher

    needed = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", path.read_text()))
    realistic = {
        "AWS_REGION": "us-east-1",
        "SAGEMAKER_ROLE_ARN": "arn:aws:iam::123456789012:role/SageMakerRole",
        "AZURE_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000000",
    }  # checked as a GUID (issue 33)
    environ = {name: realistic.get(name, f"example-{name.lower().replace('_', '-')}") for name in needed}
    spec = load_spec(path, environ=environ)
    backend = "local" if path.parent.name == "own_program" else EXAMPLE_BACKENDS[path.name]
    plan = Launcher(backend).plan(spec, "example-job-1")
    assert plan.job_name and plan.payload


def test_every_relative_path_is_read_from_the_spec_files_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One base for every path in a spec (issue 34): `launch mywork/job.yaml` from elsewhere finds the same data
    and writes the same store as `launch job.yaml` from mywork/; a --set value is read from the current folder."""
    project = tmp_path / "mywork"
    project.mkdir()
    (project / "job.yaml").write_text(
        "name: rel\ncode: .\ncommand: [python, train.py]\n"
        "train: {data: data, pretrained: weights/w.pt}\ncheckpoint: {uri: runs}\n"
        "local: {workdir: work, mounts: [{source: shared, target: /shared}, {source: /abs, target: /abs}]}\n"
    )
    expected = {"code": str(project), "data": str(project / "data"), "pretrained": str(project / "weights" / "w.pt"),
                "uri": str(project / "runs"), "workdir": str(project / "work"),
                "mounts": [str(project / "shared"), "/abs"]}  # fmt: skip

    def paths(spec: JobSpec) -> dict:  # type: ignore[type-arg]
        return {"code": spec.code.dir, "data": spec.train.data, "pretrained": spec.train.pretrained,  # type: ignore[union-attr]
                "uri": spec.checkpoint.uri, "workdir": spec.local["workdir"],
                "mounts": [m["source"] for m in spec.local["mounts"]]}  # fmt: skip

    monkeypatch.chdir(tmp_path)
    assert paths(load_spec("mywork/job.yaml")) == expected
    monkeypatch.chdir(project)
    assert paths(load_spec("job.yaml")) == expected
    monkeypatch.chdir(tmp_path)
    given = load_spec("mywork/job.yaml", ["checkpoint.uri=elsewhere", "train.data=d2"])
    assert (given.checkpoint.uri, given.train.data) == (str(tmp_path / "elsewhere"), str(tmp_path / "d2"))
    assert load_spec("mywork/job.yaml", ["train.data=digits"]).train.data == "digits"


def test_the_schema_states_the_rule_for_relative_paths() -> None:
    from launcher.cli.info import full_schema

    schema = full_schema()
    assert "read from the spec file's folder" in schema["description"]
    assert "spec file's folder" in schema["$defs"]["CheckpointConfig"]["properties"]["uri"]["description"]
