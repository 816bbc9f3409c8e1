"""Security of a job spec (issue 33): no secret value in a message, the launcher's own identity not overridable
from the spec, no host system folder or device mounted or uploaded, a local data folder that is a dataset."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from launcher.backends import registry
from launcher.backends.aws import SageMakerBackend
from launcher.backends.gcp import VertexBackend
from launcher.cli import main
from launcher.errors import LauncherError, SpecError
from launcher.spec import load_spec, validate_spec
from launcher.staging.data import check_local_data


def load(tmp_path: Path, text: str, overrides: tuple[str, ...] = ()):  # type: ignore[no-untyped-def]
    path = tmp_path / "job.yaml"
    path.write_text("name: a\n" + text)
    spec = load_spec(path, overrides, environ={}, cwd=tmp_path)
    registry.check_sections(spec, path, overrides)
    return spec


def refused(tmp_path: Path, text: str, overrides: tuple[str, ...] = ()) -> str:
    with pytest.raises(SpecError) as info:
        load(tmp_path, text, overrides)
    message = str(info.value)
    assert "\n" not in message, message
    return message


def test_a_secret_with_a_value_is_refused_without_repeating_the_value(tmp_path: Path) -> None:
    message = refused(tmp_path, 'secrets: ["MY_TOKEN=s3cr3t"]\n')
    assert "s3cr3t" not in message and "MY_TOKEN" in message and "secrets" in message
    message = refused(tmp_path, "", ("secrets=[MY_TOKEN=s3cr3t]",))
    assert "s3cr3t" not in message


@pytest.mark.parametrize("name", ["LAUNCHER_JOB_ID", "LAUNCHER_AZURE_IDENTITY"])
@pytest.mark.parametrize("where", ["env", "secrets"])
def test_the_launchers_own_variables_are_refused(tmp_path: Path, name: str, where: str) -> None:
    text = f"env: {{{name}: other-job}}\n" if where == "env" else f"secrets: [{name}]\n"
    message = refused(tmp_path, text)
    assert name in message and f" {where}: " in message, message


AWS = {"region": "us-east-1", "role_arn": "arn:aws:iam::123456789012:role/SageMakerRole"}


def _aws(tmp_path: Path, **changes: Any) -> Any:
    raw = {"name": "a", "image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/t:1", "aws": AWS, **changes}
    return SageMakerBackend(catalog=None).plan(validate_spec(raw, tmp_path / "job.yaml", tmp_path))


@pytest.mark.parametrize(("changes", "fragment"), [
    ({"env": {"AWS_DEFAULT_REGION": "eu-west-1"}}, "env.AWS_DEFAULT_REGION"),
    ({"env": {"AWS_REGION": "eu-west-1"}}, "env.AWS_REGION"),
    ({"secrets": ["AWS_DEFAULT_REGION"]}, "secrets"),
    ({"env": {"A" * 600: "x"}}, "at most 256"),
])  # fmt: skip
def test_aws_refuses_another_region_and_long_names(tmp_path: Path, changes: dict[str, Any], fragment: str) -> None:
    with pytest.raises(LauncherError, match=fragment):
        _aws(tmp_path, **changes)


def test_aws_keeps_a_region_variable_equal_to_its_own(tmp_path: Path) -> None:
    plan = _aws(tmp_path, env={"AWS_DEFAULT_REGION": "us-east-1"})
    assert plan.request()["Environment"]["AWS_DEFAULT_REGION"] == "us-east-1"


def test_the_launchers_own_tags_and_labels_are_refused(tmp_path: Path) -> None:
    message = refused(tmp_path, "aws: {tags: {'torch-launcher:name': other}}\n")
    assert "aws.tags" in message and "torch-launcher:name" in message
    message = refused(tmp_path, "gcp: {labels: {launcher-job: other}}\n")
    assert "gcp.labels" in message and "launcher-job" in message
    labels = ", ".join(f"k{i}: v" for i in range(63))
    message = refused(tmp_path, f"gcp: {{labels: {{{labels}}}}}\n")
    assert "gcp.labels" in message and "64" in message
    spec = validate_spec({"name": "a", "gcp": {"project": "my-project", "region": "us-central1",
                                                "labels": {f"k{i}": "v" for i in range(62)}}}, None, tmp_path)  # fmt: skip
    assert len(VertexBackend().plan(spec).request()["labels"]) == 64


@pytest.mark.parametrize(("text", "fragment"), [
    ("local: {mounts: [{source: /, target: /host, read_only: false}]}\n", "local.mounts.0.source"),
    ("local: {mounts: [{source: /etc, target: /host}]}\n", "local.mounts.0.source"),
    ("local: {mounts: [{source: /var/run/docker.sock, target: /s}]}\n", "local.mounts.0.source"),
    ("checkpoint: {uri: /}\n", "checkpoint.uri"),
    ("checkpoint: {uri: /etc}\n", "checkpoint.uri"),
    ("checkpoint: {uri: /proc}\n", "checkpoint.uri"),
    ("checkpoint: {uri: /sys/fs}\n", "checkpoint.uri"),
    ("train: {data: /}\n", "train.data"),
    ("train: {data: /etc}\n", "train.data"),
    ("train: {data: /proc}\n", "train.data"),
    ("train: {data: /dev/zero}\n", "train.data"),
    ("train: {pretrained: /etc/shadow}\n", "train.pretrained"),
    ("code: /usr\ncommand: [python, x.py]\n", "code.dir"),
    ("checkpoint: {uri: 's3:/bucket/ckpt'}\n", "checkpoint.uri"),
])  # fmt: skip
def test_host_system_folders_and_devices_are_refused(tmp_path: Path, text: str, fragment: str) -> None:
    message = refused(tmp_path, text)
    assert f" {fragment}: " in message, message


def test_a_link_to_a_system_folder_and_a_fifo_are_refused(tmp_path: Path) -> None:
    (tmp_path / "etc-link").symlink_to("/etc")
    assert "system folder" in refused(tmp_path, f"checkpoint: {{uri: {tmp_path / 'etc-link'}}}\n")
    os.mkfifo(tmp_path / "fifo")
    assert "device, pipe or socket" in refused(tmp_path, f"train: {{data: {tmp_path / 'fifo'}}}\n")


def test_a_local_data_folder_must_exist_and_look_like_a_dataset(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    spec = load(tmp_path, f"train: {{data: {home}}}\ncheckpoint: {{uri: s3://bucket/ck}}\n")
    with pytest.raises(LauncherError, match="is not an ImageFolder dataset"):
        check_local_data(spec)
    spec = load(tmp_path, f"train: {{data: {tmp_path / 'missing'}}}\n")
    with pytest.raises(LauncherError, match="does not exist"):
        check_local_data(spec)
    for part in ("train", "val"):
        (home / part).mkdir()
    check_local_data(load(tmp_path, f"train: {{data: {home}}}\n"))
    yolo = tmp_path / "yolo"
    yolo.mkdir()
    (yolo / "data.yaml").write_text("train: images/train\nval: images/val\nnames: [a]\n")
    check_local_data(load(tmp_path, f"train: {{engine: ultralytics, model: yolo11n.pt, data: {yolo}}}\n"))


def test_the_dry_run_refuses_a_missing_data_folder(tmp_path: Path) -> None:
    job = tmp_path / "job.yaml"
    job.write_text(f"name: a\ntrain: {{data: {tmp_path / 'missing'}}}\n")
    result = CliRunner().invoke(main, ["-b", "local", str(job), "--dry-run"], env={"LAUNCHER_STATE_DIR": str(tmp_path)})
    assert result.exit_code == 2 and "does not exist" in result.stderr and "Traceback" not in result.stderr
