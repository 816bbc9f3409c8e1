"""`launch --dry-run -b local` and the CLI's answers to bad input, through click's CliRunner."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from launcher.cli import main


def _launch(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def _job(tmp_path: Path, text: str) -> str:
    path = tmp_path / "job.yaml"
    path.write_text(text)
    return str(path)


def test_dry_run_prints_the_local_plan_as_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # relative data paths resolve against the spec file's folder (here, too)
    for part in ("train", "val"):  # a dry run refuses a data folder that is not a dataset (issue 33)
        (tmp_path / "data" / part).mkdir(parents=True)
    job = _job(tmp_path, "name: quick\ntrain: {epochs: 2, data: data}\nlocal: {runtime: docker}\n")
    result = _launch(job, "--dry-run", "-b", "local")
    assert result.exit_code == 0, result.output
    plan = yaml.safe_load(result.output)
    docker = plan["payload"]["docker"]
    assert plan["backend"] == "local" and docker["name"] == "quick"
    assert docker["volumes"] == {str(tmp_path.resolve() / "data"): {"bind": "/data", "mode": "ro"}}
    assert "epochs=2" in docker["command"]


def test_dry_run_json_and_the_docker_alias(tmp_path: Path) -> None:
    job = _job(tmp_path, "name: quick\nlocal: {runtime: process}\n")
    result = _launch("run", job, "--dry-run", "-b", "docker", "--json")
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(result.output)["payload"]["process"]["argv"][:3] == [
        "python",
        "-m",
        "launcher.runtime.entrypoint",
    ]


def test_set_overrides_reach_the_plan(tmp_path: Path) -> None:
    job = _job(tmp_path, "name: quick\nlocal: {runtime: process}\n")
    result = _launch(job, "--dry-run", "--set", "train.epochs=5", "--set", "local.nproc=3")
    argv = yaml.safe_load(result.output)["payload"]["process"]["argv"]
    assert "epochs=5" in argv and argv[argv.index("--nproc") + 1] == "3"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, "no such file"),
        ("", "is empty"),
        ("- name: a\n- name: b\n", "the top level is a list"),
        ("name: quick\ntrain: {epocs: 3}\n", "train.epocs: unknown key 'epocs'; did you mean 'epochs'?"),
        ("name: quick\ntrain: {epochs: -1}\n", "train.epochs: Input should be greater than or equal to 1"),
        ("name: quick\nlocal: {runtme: docker}\n", "local.runtme: unknown key 'runtme'; did you mean 'runtime'?"),
        ("name: quick\nresources: {nodes: 2}\n", "does not support multi_node"),
    ],
)
def test_bad_job_files_get_one_line_and_exit_2(tmp_path: Path, text: str | None, expected: str) -> None:
    job = str(tmp_path / "missing.yaml") if text is None else _job(tmp_path, text)
    result = _launch(job, "--dry-run", "-b", "local")
    assert result.exit_code == 2
    assert expected in result.output
    assert "Traceback" not in result.output


def test_unknown_backend_lists_the_installed_ones(tmp_path: Path) -> None:
    result = _launch(_job(tmp_path, "name: quick\n"), "--dry-run", "-b", "nimbus")
    assert result.exit_code == 2
    assert "Unknown backend 'nimbus'" in result.output and "local" in result.output


@pytest.mark.parametrize("command", [["status", "nope-123"], ["logs", "nope-123"], ["stop", "nope-123"]])
def test_a_job_id_that_does_not_exist(command: list[str]) -> None:
    result = _launch(*command)
    assert result.exit_code == 2
    assert "No job with the id or name 'nope-123'" in result.output and "launch ls" in result.output


def test_image_build_push_without_backend_is_refused() -> None:
    result = _launch("image", "build", "--push")
    assert result.exit_code == 2
    assert "--push needs at least one backend" in result.output
