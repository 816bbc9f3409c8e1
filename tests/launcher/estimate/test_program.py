"""`launch estimate` of a program of the user's own: its speed is the user's to give (--images-per-s)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from launcher.cli import main


def _job(tmp_path: Path, data: bool = True) -> Path:
    (tmp_path / "train.py").write_text("print()\n")
    data_line = "train: {data: s3://bucket/images, epochs: 4}\n" if data else ""
    job = tmp_path / "job.yaml"
    job.write_text(f"name: prog\ncode: .\ncommand: [python, train.py]\n{data_line}resources: {{gpus: 1}}\n"
                   "checkpoint: {uri: s3://bucket/ckpt}\n")  # fmt: skip
    return job


def test_without_a_figure_it_says_in_one_line_how_to_give_one(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["estimate", str(_job(tmp_path)), "-b", "aws", "--images", "10000"])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "pass --images-per-s N" in lines[0], result.output


def test_the_built_in_trainers_figures_are_never_used_for_a_program(tmp_path: Path) -> None:
    """The GPU table knows resnet18 (train.model's default): a program must not be estimated as resnet18."""
    result = CliRunner().invoke(main, ["estimate", str(_job(tmp_path)), "-b", "aws", "--images", "10000", "--json"])
    assert result.exit_code == 2
    rows = json.loads(result.output[: result.output.rindex("]") + 1])
    assert rows and all("--images-per-s" in row["error"] for row in rows)


def test_with_a_figure_every_row_uses_it(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["estimate", str(_job(tmp_path)), "-b", "aws", "--images", "10000",
                                       "--images-per-s", "250", "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = [r for r in json.loads(result.output) if not r.get("error")]
    assert rows and {(r["source"], r["images_per_s"]) for r in rows} == {("given", 250.0)}
    one_gpu = [r for r in rows if r["gpus"] == 1 and r["nodes"] == 1][0]
    assert one_gpu["training_s"] == 10000 * 4 / 250  # images x train.epochs / images per second


def test_a_program_that_names_no_data_needs_the_image_count(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["estimate", str(_job(tmp_path, data=False)), "-b", "aws", "--images-per-s", "250"]
    )
    assert result.exit_code == 2 and "names no train.data; pass --images N" in result.output


def test_profile_refuses_a_program_with_the_way_to_a_figure(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["profile", str(_job(tmp_path))])
    assert (
        result.exit_code == 2 and "--images-per-s N" in result.output and len(result.output.strip().splitlines()) == 1
    )
