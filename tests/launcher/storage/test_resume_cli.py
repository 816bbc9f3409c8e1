"""`--resume-from` (the pre-submit hook) and `launch ckpt ls|pull|push|cp`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from launcher.cli import main
from launcher.errors import LauncherError
from launcher.plan import Plan
from launcher.spec import JobSpec
from launcher.storage.resume import copy_for_resume_hook
from launcher.storage.sync import pull, push
from tests.launcher.storage.conftest import StoreKind
from tests.launcher.storage.helpers import fake_checkpoint, write_files


def plan_for(checkpoint_uri: str | None) -> Plan:
    spec = JobSpec(name="resumed", checkpoint={"uri": checkpoint_uri})
    return Plan(backend="aws", job_name="resumed-20260101-000000-abcd", spec=spec, payload={})


def test_resume_hook_copies_into_the_new_jobs_folder(kind: StoreKind, s3_kind: StoreKind, tmp_path: Path) -> None:
    src = kind.store("old-run")
    write_files(tmp_path / "src", fake_checkpoint(2))
    push(src, tmp_path / "src")
    hook = copy_for_resume_hook(src.uri, **{**kind.client_kwargs(), **s3_kind.client_kwargs()})
    plan = plan_for(s3_kind.uri(f"resume-target-{kind.name}"))
    target = s3_kind.store(f"resume-target-{kind.name}/resumed")  # <uri>/<spec.name>: every backend's --run-name
    write_files(tmp_path / "other", fake_checkpoint(5))
    push(target, tmp_path / "other")  # an earlier run of the same spec: --resume-from must win over it
    hook(None, plan)
    result = pull(target, tmp_path / "dest")
    assert result.manifest.epoch == 2 and (tmp_path / "dest" / "last.pt").read_bytes() == fake_checkpoint(2)["last.pt"]


def test_resume_into_a_local_uri_writes_the_store_layout(s3_kind: StoreKind, tmp_path: Path) -> None:
    """A local checkpoint URI is a store like a bucket: the entrypoint pulls from it the same way."""
    src = s3_kind.store()
    write_files(tmp_path / "src", fake_checkpoint(1))
    push(src, tmp_path / "src")
    plan = plan_for(str(tmp_path / "local-ckpts"))
    copy_for_resume_hook(src.uri, **s3_kind.client_kwargs())(None, plan)
    from launcher.storage import open_store

    result = pull(open_store(str(tmp_path / "local-ckpts" / plan.spec.name)), tmp_path / "dest")
    assert result.manifest is not None and result.manifest.version == 1
    assert (tmp_path / "dest" / "last.pt").read_bytes() == fake_checkpoint(1)["last.pt"]


def test_resume_from_a_plain_local_run_folder(s3_kind: StoreKind, tmp_path: Path) -> None:
    """A run trained on a local path (no manifest) can be resumed on a cloud backend."""
    write_files(tmp_path / "local-run", fake_checkpoint(4))
    plan = plan_for(s3_kind.uri("from-local"))
    copy_for_resume_hook(str(tmp_path / "local-run"), **s3_kind.client_kwargs())(None, plan)
    result = pull(s3_kind.store(f"from-local/{plan.spec.name}"), tmp_path / "dest")
    assert result.manifest.epoch == 4


def test_resume_without_a_checkpoint_uri_says_what_to_set(tmp_path: Path) -> None:
    with pytest.raises(LauncherError) as info:
        copy_for_resume_hook(str(tmp_path))(None, plan_for(None))
    assert "sets no checkpoint.uri" in str(info.value) and "--set checkpoint.uri=" in str(info.value)


def test_resume_from_an_empty_uri_fails_clearly(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(LauncherError, match="no complete checkpoint"):
        copy_for_resume_hook(str(tmp_path / "empty"))(None, plan_for(str(tmp_path / "ckpts")))


def test_cli_push_ls_pull_cp(s3_kind: StoreKind, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in s3_kind.env.items():
        monkeypatch.setenv(name, value)  # the CLI builds its client from the standard environment
    write_files(tmp_path / "src", fake_checkpoint(2))
    runner = CliRunner()
    local = str(tmp_path / "store" / "run-1")
    remote = s3_kind.uri("cli/run-1")
    assert runner.invoke(main, ["ckpt", "push", str(tmp_path / "src"), local]).exit_code == 0
    pushed = runner.invoke(main, ["ckpt", "push", str(tmp_path / "src"), local])
    assert "0 files (0 bytes) sent, 4 unchanged" in pushed.output
    copied = runner.invoke(main, ["ckpt", "cp", local, remote])
    assert copied.exit_code == 0, copied.output
    listed = runner.invoke(main, ["ckpt", "ls", s3_kind.uri("cli"), "--json"])
    rows = json.loads(listed.stdout)
    assert [(r["run"], r["epoch"], r["status"]) for r in rows] == [("run-1", 2, "ok")]
    versions = json.loads(runner.invoke(main, ["ckpt", "ls", remote, "--json"]).stdout)
    assert [r["version"] for r in versions] == [1]
    pulled = runner.invoke(main, ["ckpt", "pull", remote, str(tmp_path / "out")])
    assert pulled.exit_code == 0, pulled.output
    assert (tmp_path / "out" / "last.pt").read_bytes() == fake_checkpoint(2)["last.pt"]


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["ckpt", "ls", "no-such-job-or-path"])
    assert result.exit_code == 2 and "neither a checkpoint URI" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(main, ["ckpt", "pull", "ftp://x/y", str(tmp_path / "o")])
    assert result.exit_code == 2 and "Unsupported checkpoint URI" in result.output


def test_cli_ls_resolves_a_job_id(tmp_path: Path) -> None:
    from launcher.plan import JobRef
    from launcher.state.jobs import JobRegistry

    spec = {"name": "digits", "checkpoint": {"uri": str(tmp_path / "ckpts")}}
    JobRegistry().add(JobRef("digits-1", "local", "native-1", {}), "digits", spec, "hash")
    write_files(tmp_path / "src", fake_checkpoint(1))
    from launcher.storage import open_store

    push(open_store(str(tmp_path / "ckpts" / "digits-1")), tmp_path / "src")
    rows = json.loads(CliRunner().invoke(main, ["ckpt", "ls", "digits-1", "--json"]).stdout)
    assert rows[0]["epoch"] == 1 and os.sep + "digits-1" in rows[0]["where"]
