"""`launch estimate` / `launch catalog show` through click, with a fake backend installed as a real plugin."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import pytest
from click.testing import CliRunner

from launcher.backends import registry
from launcher.cli import main


@pytest.fixture
def fake_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A dist-info on sys.path declaring tests' PluginBackend in the launcher.backends group."""
    dist = tmp_path / "site" / "fake_launcher_plugin-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-launcher-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[launcher.backends]\nfakecloud = tests.launcher.estimate.fakes:PluginBackend\n"
    )
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


def _hms_s(text: str) -> int:
    """'1h02m' or '8m20s' (the table's format) in seconds."""
    if "h" in text:
        h, m = text.rstrip("m").split("h")
        return int(h) * 3600 + int(m) * 60
    m, s = text.rstrip("s").split("m")
    return int(m) * 60 + int(s)


def test_the_table_shows_staging(fake_plugin: str, tmp_path: Path) -> None:
    path = tmp_path / "remote.yaml"
    path.write_text(
        "name: remote\ntrain: {model: resnet50, data: 's3://bucket/data', epochs: 5}\nresources: {gpus: 1, gpu_type: A10G}\n"
    )
    result = CliRunner().invoke(main, ["estimate", str(path), "-b", fake_plugin, "--images", "20000", "--data-gb", "50"],
                                env={"COLUMNS": "300"})  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "staging" in result.output and "8m20s" in result.output  # 50 GB at the default 100 MB/s


def test_the_table_total_is_the_sum_of_its_columns(fake_plugin: str, tmp_path: Path) -> None:
    from launcher.cli.estimate import COLUMNS, _cells
    from launcher.estimate.model import estimate
    from launcher.spec import load_spec

    path = tmp_path / "remote.yaml"
    path.write_text(
        "name: remote\ntrain: {model: resnet50, data: 's3://bucket/data', epochs: 5}\nresources: {gpus: 1, gpu_type: A10G}\n"
    )
    rows = estimate(load_spec(str(path)), [registry.create(fake_plugin)], train_images=20000, data_bytes=50 * 10**9)
    for row in rows:
        cells = dict(zip(COLUMNS, _cells(row)))
        parts = sum(_hms_s(cells[c]) for c in ("startup", "staging", "training"))
        assert abs(parts - _hms_s(cells["total time"].split()[0])) <= 2, cells  # rounding of each shown value


def test_a_dataset_that_cannot_be_listed_fails_in_one_line_without_a_table_or_plot(
    fake_plugin: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AZURE_STORAGE_ACCOUNT", "AZURE_STORAGE_CONNECTION_STRING"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "az.yaml"
    path.write_text(
        "name: az\ntrain: {model: resnet50, data: 'az://container/imagenet', epochs: 5}\nresources: {gpus: 1, gpu_type: A10G}\n"
    )
    png = tmp_path / "plot.png"
    result = CliRunner().invoke(main, ["estimate", str(path), "-b", fake_plugin, "--plot", str(png)])
    assert result.exit_code != 0
    assert result.stdout == "" and len(result.stderr.strip().splitlines()) == 1, result.output
    assert result.stderr.startswith("error: ") and "could not list az://container/imagenet" in result.stderr
    assert "--images N" in result.stderr and "Traceback" not in result.output
    assert not png.exists()


def test_an_option_of_weeks_is_warned_about(fake_plugin: str, tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    path.write_text(
        "name: huge\ntrain: {model: resnet50, data: 's3://bucket/data', epochs: 90}\nresources: {gpus: 1, gpu_type: A10G}\n"
    )
    for flags in ([], ["--json"]):
        result = CliRunner().invoke(main, ["estimate", str(path), "-b", fake_plugin, "--images", "100000000", *flags])
        assert result.exit_code == 0, result.output
        warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
        assert len(warnings) == 1 and "the fastest option (fakecloud fc.large)" in warnings[0] and "days" in warnings[0]


def test_a_plausible_estimate_has_no_warning(fake_plugin: str, job: Path) -> None:
    result = CliRunner().invoke(main, ["estimate", str(job), "-b", fake_plugin])
    assert result.exit_code == 0 and "warning" not in result.output


def test_the_readme_quickstart_estimates_on_this_cpu_without_a_profile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 34 item 4: `launch estimate examples/quickstart.yaml` said `Cannot estimate ... on any backend` until
    `launch profile`; its local row now comes from the recorded CPU figure, said to be rough."""
    from launcher.estimate.throughput import gpu_table
    from launcher.runtime.cpu import usable_cpus
    from tests.conftest import REPO

    monkeypatch.setenv("LAUNCHER_STATE_DIR", str(tmp_path / "state"))  # no profile, no past run
    monkeypatch.setenv("LAUNCHER_CONFIG", str(tmp_path / "none.yaml"))
    spec = str(REPO / "examples" / "quickstart.yaml")
    result = CliRunner().invoke(main, ["estimate", spec, "-b", "local", "--json"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)
    cpu = gpu_table()["cpu"]  # the quickstart is the figure's own workload: resnet18 at 32 px, amp
    assert (row["source"], row["images_per_s"]) == ("rough", pytest.approx(cpu["amp"] * usable_cpus(), abs=0.01))
    assert row["total_s"] > 0 and cpu["cpu"] in row["source_detail"]
    table = CliRunner(env={"COLUMNS": "200"}).invoke(main, ["estimate", spec, "-b", "local"])
    assert table.exit_code == 0 and "rough" in table.stdout and "is a rough figure" in table.stdout, table.output
    assert f"launch profile {spec}" in table.stdout
