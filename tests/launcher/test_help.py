"""Help, schema and typos a newcomer meets (issue 34 item 10)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from launcher.cli import main
from launcher.errors import SpecError
from launcher.spec import load_spec


def test_the_top_level_help_shows_the_options_of_launch_job_yaml() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    options = result.output.split("Options of `launch JOB.yaml`")[1]
    for flag in ("-b, --backend", "--set KEY=VALUE", "--dry-run", "--detach", "--yes", "--json"):
        assert flag in options, flag
    assert "alias docker" in options


@pytest.mark.parametrize("typo, command", [("stauts", "status"), ("lss", "ls"), ("estimte", "estimate")])
def test_a_misspelled_command_says_which_one_was_meant(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       typo: str, command: str) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, [typo])
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: no command or job file '{typo}'; did you mean `launch {command}`?"
    (tmp_path / typo).write_text("name: a\n")  # a file of that name is a job file, as before
    assert "did you mean" not in CliRunner().invoke(main, [typo, "--dry-run"]).output


def test_the_schema_names_its_draft_and_backends_list_their_aliases() -> None:
    import json

    schema = json.loads(CliRunner().invoke(main, ["schema"]).stdout)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    rows = json.loads(CliRunner().invoke(main, ["backends", "--json"]).stdout)
    assert {r["name"]: r["aliases"] for r in rows}["local"] == ["docker"]
    result = CliRunner().invoke(main, ["run", "x.yaml", "-b", "dockr", "--dry-run"])
    assert "docker = local" in result.output or "no such file" in result.output


def test_every_unknown_key_gets_its_did_you_mean(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text("name: a\ntrain: {epoch: 3, bach: 4}\n")
    with pytest.raises(SpecError) as err:
        load_spec(path)
    assert str(err.value).endswith(
        "train.epoch: unknown key 'epoch'; did you mean 'epochs'? (and 1 more: train.bach (did you mean 'batch'?))"
    )


def test_mosaic_that_a_short_yolo_run_never_uses_is_said(tmp_path: Path) -> None:
    (tmp_path / "shapes").mkdir()
    (tmp_path / "shapes" / "data.yaml").write_text("train: images/train\nval: images/val\nnames: [a]\n")
    path = tmp_path / "job.yaml"
    path.write_text(
        "name: y\ntrain: {engine: ultralytics, model: yolo11n.yaml, data: shapes, epochs: 2, mosaic: 1.0}\n"
    )
    result = CliRunner().invoke(main, ["run", str(path), "--dry-run"])
    assert result.exit_code == 0, result.output
    import yaml

    notes = yaml.safe_load(result.stdout)["notes"]
    assert (
        "train.mosaic 1 is never used: Ultralytics turns mosaic off for the last close_mosaic (10) epochs and "
        "this run has 2; set close_mosaic below 2 to use it, or remove mosaic"
    ) in notes
    assert load_spec(path, ["train.close_mosaic=1"]).train.unused() == []
    assert load_spec(path, ["train.epochs=11"]).train.unused() == []
