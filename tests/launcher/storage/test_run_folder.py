"""A run folder has one writer and one layout: what the entrypoint and `launch run` do with it.

- the training folder belongs to one job: a job relaunched under the same name
  with a new, empty store trains from scratch;
- a local checkpoint URI gets the same manifest layout as a bucket;
- two launches of one spec: the second is refused, naming the first.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from launcher.cli import main
from launcher.state.jobs import JobRegistry
from launcher.storage import open_store
from launcher.storage.lease import read
from launcher.storage.sync import newest
from tests.launcher.storage.conftest import REPO_ROOT, StoreKind, subprocess_env

# A stand-in trainer: says whether it found a checkpoint, then writes the next one.
TRAINER = """
import os, pathlib
folder = pathlib.Path(os.environ["LAUNCHER_SAVE_DIR"])
last = folder / "last.pt"
epoch = int(last.read_text()) + 1 if last.exists() else 1
print(f"found={'yes' if last.exists() else 'no'} epoch={epoch}", flush=True)
last.write_text(str(epoch))
(folder / "results.csv").write_text(f"epoch,top1\\n{epoch},0.9\\n")
"""


def entrypoint(uri: str, env: dict[str, str], cwd: Path) -> str:
    argv = [sys.executable, "-m", "launcher.runtime.entrypoint", "--run-name", "same-name", "--checkpoint-uri", uri,
            "--nproc", "1", "--", sys.executable, "-c", TRAINER]  # fmt: skip
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_a_relaunch_with_a_new_empty_store_trains_from_scratch(s3_kind: StoreKind, tmp_path: Path) -> None:
    env = {**subprocess_env(s3_kind), "TMPDIR": str(tmp_path / "tmp")}
    (tmp_path / "tmp").mkdir()
    first = s3_kind.store()
    assert "found=no epoch=1" in entrypoint(first.uri, env, tmp_path)
    assert "found=yes epoch=2" in entrypoint(first.uri, env, tmp_path)  # the same store resumes
    second = s3_kind.store()  # same run name, new empty store
    assert "found=no epoch=1" in entrypoint(second.uri, env, tmp_path)
    manifest, _ = newest(second.sub("same-name"))
    assert manifest is not None and manifest.epoch == 1
    assert list((tmp_path / "tmp").glob("launcher-job-*")) == []  # each job's folder is removed once synced


def test_a_local_store_gets_the_manifest_layout(tmp_path: Path) -> None:
    env = {**subprocess_env(StoreKind("local", "", None, None)), "TMPDIR": str(tmp_path)}
    runs = tmp_path / "runs"
    entrypoint(str(runs), env, tmp_path)
    assert "found=yes epoch=2" in entrypoint(str(runs), env, tmp_path)
    run = open_store(str(runs / "same-name"))
    assert (run.root / "manifest.json").is_file() and read(run) is None  # lease released at the end
    listed = CliRunner().invoke(main, ["ckpt", "ls", str(runs / "same-name"), "--json"])
    assert [(r["version"], r["epoch"], r["status"]) for r in json.loads(listed.stdout)] == [(2, 2, "ok"), (1, 1, "ok")]
    runs_listed = CliRunner().invoke(main, ["ckpt", "ls", str(runs), "--json"])
    assert [(r["run"], r["epoch"]) for r in json.loads(runs_listed.stdout)] == [("same-name", 2)]


SLEEPER = "import time; print('holding', flush=True); time.sleep(120)"


def _spec(tmp_path: Path) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump({
        "name": "one-writer",
        "command": [sys.executable, "-c", SLEEPER],
        "checkpoint": {"uri": str(tmp_path / "ckpts")},
        "local": {"runtime": "process", "workdir": str(REPO_ROOT)},
    }))  # fmt: skip
    return path


def _launch(spec: Path, *flags: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["run", str(spec), "--detach", "--ignore-budget", *flags])
    return result.exit_code, result.output


def _wait_running(job_id: str) -> None:
    from launcher.api import Launcher

    job = Launcher.attach(job_id)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and "holding" not in "".join(job.logs()):
        time.sleep(0.2)


@pytest.mark.timeout(300)
def test_two_launches_of_one_spec_the_second_is_refused(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    code, out = _launch(spec)
    assert code == 0, out
    first = JobRegistry().latest().id  # type: ignore[union-attr]
    _wait_running(first)
    try:
        code, out = _launch(spec)
        assert code != 0 and f"being written by job {first}" in out and "Traceback" not in out, out
        assert JobRegistry().latest().id == first  # type: ignore[union-attr]  # nothing recorded, nothing started
        code, out = _launch(spec, "--force")
        assert code == 0, out
        second = JobRegistry().latest().id  # type: ignore[union-attr]
        _wait_running(second)
        assert second != first and read(open_store(str(tmp_path / "ckpts" / "one-writer"))).job == second  # type: ignore[union-attr]
    finally:
        for job in JobRegistry().list():
            CliRunner().invoke(main, ["stop", job.id])
    code, out = _launch(spec)  # both ended (stopped; the holder released its lease): the run folder is free again
    assert code == 0, out
    CliRunner().invoke(main, ["stop", JobRegistry().latest().id])  # type: ignore[union-attr]
