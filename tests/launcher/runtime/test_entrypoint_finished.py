"""Issue 23: starting a run again after it finished says so from the store's manifest, before anything is
pulled, any data staged or cached, or torchrun started (it copied 268 MB and built the data cache first)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from launcher.runtime import entrypoint
from launcher.storage import lease, sync
from launcher.storage.local import LocalStore
from tests.launcher.storage.helpers import fake_checkpoint, write_files


def _finished_run(tmp_path: Path, epochs: int = 3) -> Path:
    store = tmp_path / "store"
    write_files(tmp_path / "job1", fake_checkpoint(epochs))
    assert sync.push(LocalStore(str(store / "done")), tmp_path / "job1").epoch == epochs
    return store


def _nothing_else(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_a: object, **_k: object) -> None:
        raise AssertionError("a finished run must not get this far")

    monkeypatch.setattr(entrypoint, "_stage_data", refuse)
    monkeypatch.setattr(entrypoint, "_run_forwarding_signals", refuse)
    monkeypatch.setattr(sync, "pull", refuse)


def test_a_finished_run_stops_before_pulling_staging_or_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    store = _finished_run(tmp_path)
    lease.acquire(LocalStore(str(store / "done")), "done-job-2")  # what submit took for this job
    monkeypatch.setenv("LAUNCHER_JOB_ID", "done-job-2")
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    _nothing_else(monkeypatch)
    code = entrypoint.main(["--run-name", "done", "--checkpoint-uri", str(store), "--nproc", "1", "--",
                            "train", "data=digits", "epochs=3"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert (
        "this run already finished: checkpoint 1" in out and "holds epoch 3 of 3" in out and "nothing downloaded" in out
    )
    assert not (store / "done" / lease.LEASE).exists()  # the lease is given back
    assert not any((tmp_path / "tmp").rglob("*.pt"))  # nothing copied anywhere


def test_more_epochs_or_a_damaged_checkpoint_take_the_usual_path(tmp_path: Path) -> None:
    store = _finished_run(tmp_path)
    assert sync.finished_checkpoint(str(store), "done", 3) is not None
    assert sync.finished_checkpoint(str(store), "done", 4) is None  # train.epochs raised: train on
    assert sync.finished_checkpoint(str(store), "missing", 3) is None  # nothing stored: start fresh
    manifest = json.loads((store / "done" / "manifest.json").read_text())
    (store / "done" / manifest["files"]["last.pt"]["key"]).write_bytes(b"short")  # pull falls back and says why
    assert sync.finished_checkpoint(str(store), "done", 3) is None


def test_a_program_of_the_users_own_is_never_judged_finished(tmp_path: Path) -> None:
    """Only the built-in trainer's epochs=N says how many epochs the run has."""
    store = _finished_run(tmp_path)
    args = entrypoint.parse_args(
        ["--run-name", "done", "--checkpoint-uri", str(store), "--", "python", "train.py", "epochs=3"]
    )
    assert entrypoint._already_finished(args, entrypoint.rendezvous.detect({})) is False
