"""Messages a newcomer meets (issue 13): the no-Docker notice, where the results are, estimate's cloud rows."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from launcher.backends.local import LocalBackend
from launcher.cli import main
from launcher.spec import validate_spec

REPO = Path(__file__).resolve().parents[3]


def test_no_docker_notice_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "docker", None)  # as if the docker extra were not installed
    monkeypatch.setitem(sys.modules, "docker.errors", None)
    err = io.StringIO()
    backend = LocalBackend(state_dir=tmp_path / "state", stderr=err)
    spec = validate_spec({"name": "auto", "local": {"runtime": "auto", "python": "/bin/true"}}, None, tmp_path)
    ref = backend.submit(backend.plan(spec, "auto-1"))
    assert ref.extra["runtime"] == "process"
    notice = err.getvalue()
    assert "pip install 'torch-launcher[docker]'" in notice and "running the job as host processes" in notice
    assert "Python package" not in notice and len(notice.strip().splitlines()) == 1


@pytest.mark.timeout(120)
def test_a_finished_run_says_where_its_results_are(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAUNCHER_STATE_DIR", str(tmp_path / "state"))
    run_dir = tmp_path / "ckpt" / "res"
    # stands in for the entrypoint: the trainer's files, stored as the entrypoint stores a local run (manifest layout)
    fake = tmp_path / "fake-python"
    fake.write_text(
        f"#!{sys.executable}\n"
        "import pathlib, tempfile\n"
        "from launcher.storage.local import LocalStore\n"
        "from launcher.storage.sync import push\n"
        "work = pathlib.Path(tempfile.mkdtemp())\n"
        "for name in ('last.pt', 'best.pt', 'results.csv', 'results.png'):\n"
        "    (work / name).write_text(name)\n"
        f"push(LocalStore({str(run_dir)!r}), work)\n"
        "print('trained')\n"
    )
    fake.chmod(0o755)
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump({"name": "res", "checkpoint": {"uri": str(tmp_path / "ckpt")},
                                   "local": {"runtime": "process", "python": str(fake)}}))  # fmt: skip
    result = CliRunner().invoke(main, ["run", str(job), "--ignore-budget"])
    assert result.exit_code == 0, result.output
    last = [line for line in result.stderr.strip().splitlines() if line.startswith("results: ")][-1]
    assert " and " in last, result.stderr
    csv, png = (Path(p) for p in last.removeprefix("results: ").split(" and "))
    assert (csv.name, png.name) == ("results.csv", "results.png")
    assert csv.read_text() == "results.csv" and png.read_text() == "results.png"
    assert csv.is_relative_to(run_dir) and png.is_relative_to(run_dir)
    # issue 23: the weights, where they are in the store (not the job's removed training folder), and how to get them
    weights = [line for line in result.stderr.splitlines() if line.startswith("weights: ")]
    assert len(weights) == 1, result.stderr
    best, last_pt = (Path(p) for p in weights[0].removeprefix("weights: ").split(" and "))
    assert (
        (best.name, last_pt.name) == ("best.pt", "last.pt")
        and best.is_relative_to(run_dir)
        and best.read_text() == "best.pt"
    )
    assert f"copy them out with: launch ckpt pull {run_dir} ./here" in result.stderr


def test_estimate_of_a_cpu_job_says_in_one_line_how_to_get_cloud_rows(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["estimate", str(REPO / "examples" / "quickstart.yaml")],
                                env={"LAUNCHER_STATE_DIR": str(tmp_path), "COLUMNS": "400"})  # fmt: skip
    assert result.exit_code == 0, result.output  # the local CPU row, from the recorded rough figure
    hints = [line for line in result.output.splitlines() if "--set resources.gpus=1" in line]
    assert len(hints) == 1 and "aws, azure, gcp" in hints[0]
    assert "on these instances CPU" not in result.output
    gpu = CliRunner().invoke(main, ["estimate", str(REPO / "examples" / "quickstart.yaml"), "--set", "resources.gpus=1"],
                             env={"LAUNCHER_STATE_DIR": str(tmp_path), "COLUMNS": "400"})  # fmt: skip
    assert "ml.g4dn.xlarge" in gpu.output  # the cloud rows the hint promises
