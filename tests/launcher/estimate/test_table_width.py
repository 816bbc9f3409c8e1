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
