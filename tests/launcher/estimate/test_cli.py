"""`launch estimate` / `launch catalog show` through click, with a fake backend installed as a real plugin."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import pytest
from click.testing import CliRunner

from launcher import registry
from launcher.cli import main


@pytest.fixture
def fake_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A dist-info on sys.path declaring tests' PluginBackend in the launcher.backends group."""
    dist = tmp_path / "site" / "fake_launcher_plugin-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-launcher-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[launcher.backends]\nfakecloud = tests.launcher.estimate.fakes:PluginBackend\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    registry.reload()
    yield "fakecloud"
    registry.reload()


@pytest.fixture
def job(tmp_path: Path) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(
        "name: cli-est\ntrain: {model: resnet50, data: digits, epochs: 5}\n"
        "resources: {gpus: 1, gpu_type: A10G}\nlimits: {max_cost: 0.05}\n"
    )
    return path


def test_estimate_json_marks_options(fake_plugin: str, job: Path) -> None:
    result = CliRunner().invoke(main, ["estimate", str(job), "-b", fake_plugin, "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["instance"]: r for r in json.loads(result.output)}
    assert set(rows) == {"fc.small", "fc.large"}
    assert "cheapest" in rows["fc.small"]["marks"] and "fastest" in rows["fc.large"]["marks"]
    assert rows["fc.small"]["source"] == "table"
    assert rows["fc.small"]["within_limits"] and not rows["fc.large"]["within_limits"]


def test_estimate_table_and_plot(fake_plugin: str, job: Path, tmp_path: Path) -> None:
    png = tmp_path / "plot.png"
    result = CliRunner().invoke(main, ["estimate", str(job), "-b", fake_plugin, "--plot", str(png)])
    assert result.exit_code == 0, result.output
    assert "fc.small" in result.output and "cheapest" in result.output and "limits: max_cost $0.05" in result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_catalog_show_prints_the_date(tmp_path: Path) -> None:
    from launcher.catalog import user_catalog_path

    path = user_catalog_path("aws")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"backend": "aws", "date": "2031-02-03", "sources": ["https://example.test/prices"],
                                "instances": {"ml.x": {"gpus": 1, "gpu_type": "T4", "vcpus": 4,
                                                       "prices": {"us-east-1": {"on_demand": 1.25, "spot": 0.5}}}}}))  # fmt: skip
    result = CliRunner().invoke(main, ["catalog", "show", "-b", "aws"])
    assert result.exit_code == 0, result.output
    assert "2031-02-03" in result.output and "ml.x" in result.output and "1.2500" in result.output


def test_run_refuses_over_budget_and_the_flag_overrides(fake_plugin: str, tmp_path: Path) -> None:
    job = tmp_path / "dear.yaml"
    job.write_text("name: dear\ntrain: {model: resnet50, data: digits, epochs: 50}\n"
                   "resources: {gpus: 1, gpu_type: A10G}\nlimits: {max_cost: 0.01}\n")  # fmt: skip
    refused = CliRunner().invoke(main, ["run", str(job), "-b", fake_plugin, "--yes", "--detach"])
    assert refused.exit_code == 3
    assert "exceeds limits.max_cost $0.01" in refused.output and "--ignore-budget" in refused.output
    forced = CliRunner().invoke(main, ["run", str(job), "-b", fake_plugin, "--yes", "--detach", "--ignore-budget"])
    assert forced.exit_code == 0, forced.output
    assert "submitted dear-" in forced.output
