"""README's walkthrough from a folder other than the spec's and from the spec's folder: the same plan (issue 34).

Dry-run level: `launch ... --dry-run` prints the exact request; the own-program pattern's archive is written by
submit's own code path (stage_code) and must hold only the program's files, its checkpoint store beside it.
"""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from launcher.cli import main
from tests.conftest import REPO


def _dry_run(monkeypatch: pytest.MonkeyPatch, cwd: Path, spec: str, *extra: str) -> tuple[str, str]:
    monkeypatch.chdir(cwd)
    result = CliRunner().invoke(main, ["run", spec, "--dry-run", *extra])
    assert result.exit_code == 0, result.output
    return result.stdout, result.stderr


@pytest.mark.parametrize("example", ["quickstart.yaml", "own_program/job.yaml"])
def test_an_example_plans_the_same_from_any_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   example: str) -> None:  # fmt: skip
    examples = tmp_path / "clone" / "examples"  # a fresh clone's examples, so nothing is written into this checkout
    shutil.copytree(REPO / "examples", examples, ignore=shutil.ignore_patterns("runs", "__pycache__"))
    spec = examples / example
    from_root = _dry_run(monkeypatch, tmp_path / "clone", str(spec.relative_to(tmp_path / "clone")))
    from_elsewhere = _dry_run(monkeypatch, tmp_path, str(spec))
    from_its_folder = _dry_run(monkeypatch, spec.parent, spec.name)
    assert from_root == from_elsewhere == from_its_folder
    assert str(spec.parent / "runs") in from_root[0]  # the store beside the spec, as README says


def test_the_own_program_pattern_ships_only_the_programs_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """README "Your own training program": `code: .` and `checkpoint.uri: runs`, without the example's .gitignore."""
    from launcher.api import Launcher
    from launcher.spec import load_spec
    from launcher.staging.code import stage_code

    project = tmp_path / "mywork"
    project.mkdir()
    for name in ("train.py", "helper.py"):
        shutil.copy(REPO / "examples" / "own_program" / name, project / name)
    (project / "job.yaml").write_text("name: my-detector\ncode: .\ncommand: [python, train.py]\n"
                                      "train: {data: digits}\ncheckpoint: {uri: runs}\n")  # fmt: skip
    names = []
    for cwd, spec in ((project, "job.yaml"), (tmp_path, "mywork/job.yaml"), (project, "job.yaml")):
        monkeypatch.chdir(cwd)
        plan = stage_code(Launcher(backend="local").plan(load_spec(spec)), log=lambda _m: None)
        argv = plan.request()["process"]["argv"]
        archive = Path(argv[argv.index("--code") + 1])
        assert archive.parent == project / "runs" / "_code"
        with tarfile.open(archive) as tar:
            names.append(sorted(tar.getnames()))
        (project / "runs" / "my-detector").mkdir(exist_ok=True)
        (project / "runs" / "my-detector" / "lease.json").write_text("{}")  # what a run leaves beside the archives
    assert names == [["helper.py", "job.yaml", "train.py"]] * 3
    _out, err = _dry_run(monkeypatch, tmp_path, "mywork/job.yaml")
    assert "3 files" in err and "left out: runs/ (the checkpoint store" in err
