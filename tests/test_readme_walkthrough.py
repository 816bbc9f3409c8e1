"""README's walkthrough from a folder other than the spec's and from the spec's folder: the same result (issue 34).

Quickstart and own program: `launch ... --dry-run` prints the exact request; the own-program pattern's archive is
written by submit's own code path (stage_code) and must hold only the program's files, its checkpoint store beside it.
Estimate: README's own commands, with the numbers README quotes. Recovery: a supervised run on the process runtime,
launched from another folder and then from the spec's, resumes from the one store beside the spec. Ultralytics:
README's YOLO spec at dry-run level only (a real run trains for minutes on this CPU; tests/backends/
test_local_ultralytics.py runs the engine).
"""

from __future__ import annotations

import json
import re
import shlex
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


README = (REPO / "README.md").read_text()


def _clone(tmp_path: Path) -> Path:
    """A fresh clone's examples, so nothing is written into this checkout; returns the clone's root."""
    shutil.copytree(
        REPO / "examples", tmp_path / "clone" / "examples", ignore=shutil.ignore_patterns("runs", "__pycache__")
    )
    return tmp_path / "clone"


def _invoke(monkeypatch: pytest.MonkeyPatch, cwd: Path, args: list[str], stdout: bool = True) -> str:
    monkeypatch.chdir(cwd)
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return result.stdout if stdout else result.output


def _hms(seconds: float) -> str:
    h, m = divmod(round(seconds) // 60, 60)
    return f"{h}h{m:02d}m"


def test_the_estimate_section_gives_readmes_numbers_from_any_folder(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """README "Cost and time before you spend": its ResNet-50 command, from the clone's root, the spec's folder and
    elsewhere: the same rows, README's quoted prices and times, and the plot where `--plot` says (the current folder)."""
    monkeypatch.setenv("LAUNCHER_CONFIG", str(tmp_path / "no-config.yaml"))
    command = re.search(r"```\n(launch estimate examples/aws\.yaml .+?)\n```", README, re.S).group(1)  # type: ignore[union-attr]
    argv = shlex.split(command.replace("\\\n", " "))[1:]
    clone = _clone(tmp_path)
    spec = clone / "examples" / "aws.yaml"
    outputs = []
    for cwd, name in ((clone, "examples/aws.yaml"), (spec.parent, "aws.yaml"), (tmp_path, str(spec))):
        outputs.append(json.loads(_invoke(monkeypatch, cwd, [name if a == "examples/aws.yaml" else a for a in argv]
                                                             + ["--json"])))  # fmt: skip
        assert (cwd / "cost.png").stat().st_size > 10_000  # a command-line path: read from the current folder
    assert outputs[0] == outputs[1] == outputs[2]
    rows = {(r["backend"], r["instance"], r["spot"]): r for r in outputs[0] if not r["error"]}
    said = re.search(r"Azure's\s+2x\s+ND96asr_v4\s+spot\s+\$([\d.]+)\s+in\s+(\w+),\s+SageMaker's\s+2x\s+"
                     r"ml\.p4d\.24xlarge\s+spot\s+\$([\d.]+)\s+in\s+(\w+)", README)  # fmt: skip
    assert said is not None
    azure, aws = rows[("azure", "Standard_ND96asr_v4", True)], rows[("aws", "ml.p4d.24xlarge", True)]
    assert (f"{azure['cost']:.2f}", _hms(azure["total_s"])) == said.group(1, 2)
    assert (f"{aws['cost']:.2f}", _hms(aws["total_s"])) == said.group(3, 4)
    assert azure["nodes"] == aws["nodes"] == 2


def test_the_quickstart_estimates_the_same_from_any_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAUNCHER_CONFIG", str(tmp_path / "no-config.yaml"))
    clone = _clone(tmp_path)
    spec = clone / "examples" / "quickstart.yaml"
    found = [_invoke(monkeypatch, cwd, ["estimate", name, "-b", "local", "--json"])
             for cwd, name in ((clone, "examples/quickstart.yaml"), (spec.parent, spec.name), (tmp_path, str(spec)))]  # fmt: skip
    assert found[0] == found[1] == found[2]
    (row,) = json.loads(found[0])
    assert row["source"] == "rough" and row["total_s"] > 0  # no `launch profile` needed (issue 34 item 4)


RECOVERY_SPEC = """name: walk-recovery
code: .
command: [python, step.py]
checkpoint: {uri: runs}
recovery: {max_attempts: 2}
local: {runtime: process}
"""
STEP = """import os
from pathlib import Path

folder = Path(os.environ["LAUNCHER_CHECKPOINT_DIR"])
count = int((folder / "count.txt").read_text()) + 1 if (folder / "count.txt").exists() else 1
(folder / "count.tmp").write_text(str(count))
os.replace(folder / "count.tmp", folder / "count.txt")
print(f"count {count} resumed {os.environ['LAUNCHER_RESUMED']}", flush=True)
"""


def test_the_recovery_section_supervises_one_store_from_any_folder(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """README "Automatic recovery": `launch -b local job.yaml` supervises the run; launched from another folder, then
    from the spec's, the second run resumes from the first one's checkpoint in the store beside the spec, and
    `launch status RUN` reads the same from both folders."""
    project = tmp_path / "mywork"
    project.mkdir()
    (project / "job.yaml").write_text(RECOVERY_SPEC)
    (project / "step.py").write_text(STEP)
    first = _invoke(monkeypatch, tmp_path, ["-b", "local", "mywork/job.yaml"], stdout=False)
    assert "count 1 resumed 0" in first and "[recovery] attempt 1" in first, first
    assert "training data" not in first  # a supervised program without train.data is given none (the digits were)
    second = _invoke(monkeypatch, project, ["-b", "local", "job.yaml"], stdout=False)
    assert "count 2 resumed 1" in second, second  # the same store: runs/ beside the spec
    assert sorted(p.name for p in (project / "runs").iterdir()) == ["_code", "walk-recovery"]
    status = [
        json.loads(_invoke(monkeypatch, cwd, ["status", "walk-recovery", "--json"])) for cwd in (tmp_path, project)
    ]
    assert status[0] == status[1] and "succeeded" in json.dumps(status[0])


def test_the_ultralytics_spec_plans_the_same_from_any_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """README "Detection and segmentation": its YOLO spec, with its data a folder beside the spec (dry run only)."""
    block = re.search(r"```yaml\n(name: shapes-yolo\n.+?)```", README, re.S).group(1)  # type: ignore[union-attr]
    project = tmp_path / "mywork"
    (project / "shapes" / "images" / "train").mkdir(parents=True)
    (project / "shapes" / "images" / "val").mkdir()
    (project / "shapes" / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val\nnames: {0: box}\n")
    (project / "job.yaml").write_text(block.replace("data: s3://bucket/datasets/shapes", "data: shapes"))
    from_elsewhere = _dry_run(monkeypatch, tmp_path, "mywork/job.yaml")
    from_its_folder = _dry_run(monkeypatch, project, "job.yaml")
    assert from_elsewhere == from_its_folder
    assert f"{project / 'shapes'}:" in from_elsewhere[0] and "engine=ultralytics" in from_elsewhere[0]
