"""The estimate table fits the terminal and never cuts an instance name (issue 34 item 6)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from launcher.cli import main

QUICKSTART = str(Path(__file__).resolve().parents[3] / "examples" / "quickstart.yaml")


@pytest.mark.parametrize("columns", [80, 120, 250])
def test_the_table_fits_the_terminal_and_keeps_every_instance_name(columns: int) -> None:
    args = ["estimate", QUICKSTART, "--set", "resources.gpus=1"]
    rows = json.loads(CliRunner().invoke(main, [*args, "--json"]).stdout)
    result = CliRunner().invoke(main, args, env={"COLUMNS": str(columns)})
    assert result.exit_code == 0, result.output
    table = result.stdout
    assert max(map(len, table.splitlines())) <= columns
    lines = [line.split() for line in table.splitlines()[1:]]
    shown = [words[1] for words in lines if words and words[0] in ("aws", "gcp", "azure")]
    assert shown and set(shown) <= {r["instance"] for r in rows}, shown  # whole names, none cut
    assert ("left out; a wider one or --json shows them" in " ".join(table.split())) == (columns < 250)
    assert all(r["price_per_hour_all_nodes"] == r["price_per_hour"] * r["nodes"] for r in rows)


def test_the_plot_shows_the_rows_the_table_shows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from launcher.estimate import plot

    drawn: list = []  # type: ignore[type-arg]
    monkeypatch.setattr(plot, "plot_rows", lambda rows, path, *a: drawn.extend(rows) or Path(path))
    args = ["estimate", QUICKSTART, "--set", "resources.gpus=1", "--plot", str(tmp_path / "p.png")]
    result = CliRunner().invoke(main, args, env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    lines = [line.split() for line in result.stdout.splitlines()[1:]]
    table = [(w[0], w[1]) for w in lines if len(w) > 1 and w[0] in ("aws", "gcp", "azure", "local") and w[1] != ":"]
    assert [(r.offer.backend, r.offer.instance) for r in drawn] == table
    every = json.loads(CliRunner().invoke(main, ["estimate", QUICKSTART, "--set", "resources.gpus=1", "--json"]).stdout)
    assert len(drawn) < len([r for r in every if not r["error"]])  # the table (and so the plot) leaves some out


def test_a_remote_datasets_unknown_size_is_unknown_not_0m00s(tmp_path: Path) -> None:
    job = tmp_path / "job.yaml"
    job.write_text("name: r\ntrain: {model: resnet50, data: s3://bucket/imagenet, imgsz: 224}\n"
                   "resources: {gpus: 1}\ncheckpoint: {uri: s3://bucket/ckpt}\n")  # fmt: skip
    result = CliRunner().invoke(
        main, ["estimate", str(job), "--images", "1281167", "-b", "aws"], env={"COLUMNS": "250"}
    )
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.stdout.splitlines() if line.startswith("aws ")]
    assert rows and all("unknown" in r for r in rows), result.stdout  # the staging column
    assert "staging: unknown (the size of s3://bucket/imagenet is not known)" in " ".join(result.stdout.split())
    data = json.loads(
        CliRunner().invoke(main, ["estimate", str(job), "--images", "1281167", "-b", "aws", "--json"]).stdout
    )
    assert all(r["staging_s"] is None for r in data)
    sized = json.loads(CliRunner().invoke(main, ["estimate", str(job), "--images", "1281167", "--data-gb", "150",
                                                 "-b", "aws", "--json"]).stdout)  # fmt: skip
    assert all(r["staging_s"] > 60 for r in sized)


def test_a_program_whose_data_holds_no_images_is_not_estimated_at_0_s(tmp_path: Path) -> None:
    (tmp_path / "data" / "train").mkdir(parents=True)
    (tmp_path / "data" / "train" / "part-0.parquet").write_bytes(b"x" * 100)
    (tmp_path / "train.py").write_text("")
    job = tmp_path / "job.yaml"
    job.write_text("name: p\ncode: .\ncommand: [python, train.py]\ntrain: {data: data}\ncheckpoint: {uri: runs}\n")
    result = CliRunner().invoke(main, ["estimate", str(job), "--images-per-s", "100"])
    assert result.exit_code == 2 and "holds no images it can count" in result.stderr and "--images N" in result.stderr
    ok = CliRunner().invoke(main, ["estimate", str(job), "--images-per-s", "100", "--images", "5000", "-b", "local"])
    assert ok.exit_code == 0, ok.output


def test_the_cloud_examples_are_priced_without_a_role_an_account_or_a_bucket(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 34 item 4: a role ARN or a subscription id had to be set just to estimate."""
    examples = Path(QUICKSTART).parent
    for name in ("LAUNCHER_BUCKET", "SAGEMAKER_ROLE_ARN", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    result = CliRunner().invoke(main, ["estimate", str(examples / "aws.yaml"), "-b", "aws"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "note: LAUNCHER_BUCKET, SAGEMAKER_ROLE_ARN not set: priced without them" in result.stderr
    assert "ml.p4d.24xlarge" in result.stdout
    region = CliRunner().invoke(main, ["estimate", str(examples / "ci" / "job.yaml"), "-b", "aws"])
    assert region.exit_code == 2 and "AWS_REGION (at aws.region)" in region.stderr  # a region sets the price
