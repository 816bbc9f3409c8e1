"""A local run folder (the trainer writes there in place, no manifest) is a checkpoint too."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from launcher.cli import main
from launcher.plan import JobRef
from launcher.state.jobs import JobRegistry


def _plain_run(root: Path) -> Path:
    run = root / "ckpts" / "digits"
    run.mkdir(parents=True)
    (run / "last.pt").write_bytes(b"weights" * 100)
    (run / "results.csv").write_text("epoch,top1\n1,0.5\n")
    return run


def test_ls_shows_a_plain_folder_and_finds_it_by_job_id(tmp_path: Path) -> None:
    run = _plain_run(tmp_path)
    spec = {"name": "digits", "checkpoint": {"uri": str(tmp_path / "ckpts")}}
    JobRegistry().add(JobRef("digits-20261127-1", "local", "digits-20261127-1"), "digits", spec, "h")
    for target in (str(run), "digits-20261127-1"):
        result = CliRunner().invoke(main, ["ckpt", "ls", target, "--json"])
        assert result.exit_code == 0, result.output
        rows = json.loads(result.output)
        assert rows[0]["files"] == 2 and rows[0]["status"] == "plain (no manifest)"


def test_cp_publishes_a_plain_folder_as_a_manifest_checkpoint(tmp_path: Path) -> None:
    run = _plain_run(tmp_path)
    result = CliRunner().invoke(main, ["ckpt", "cp", str(run), str(tmp_path / "store" / "digits")])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "store" / "digits" / "manifest.json").read_text())
    assert set(manifest["files"]) == {"last.pt", "results.csv"}
