"""The background Syncer the entrypoint runs on node 0, against every store."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from launcher.storage.manifest import versions_in_store
from launcher.storage.sync import Syncer, pull, pull_latest
from tests.launcher.storage.conftest import StoreKind
from tests.launcher.storage.helpers import fake_checkpoint, write_files


def wait_for(predicate, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_syncer_uploads_each_checkpoint_and_flushes_on_close(kind: StoreKind, tmp_path: Path) -> None:
    store, folder = kind.store(), tmp_path / "save"
    syncer = Syncer(
        "", "", folder, keep=5, spec_hash="h1", interval=0.05, settle=0.05, store=store, log=lambda _m: None
    )
    syncer.start()
    for epoch in (1, 2):
        write_files(folder, fake_checkpoint(epoch))
        wait_for(lambda e=epoch: versions_in_store(store)[-1:] == [e])
    write_files(folder, fake_checkpoint(3))  # the trainer's final save, right before it exits
    assert syncer.close(grace=60)
    result = pull(store, tmp_path / "dest")
    assert (result.manifest.version, result.manifest.epoch, result.manifest.spec_hash) == (3, 3, "h1")
    assert (tmp_path / "dest" / "last.pt").read_bytes() == fake_checkpoint(3)["last.pt"]
    assert syncer.stats.files_unchanged >= 2  # best.pt and epoch-1.pt were never re-sent
    sent_best = [v for v in result.manifest.files.values() if v.key.endswith("best.pt")]
    assert sent_best[0].key == "files/00000001/best.pt"


def test_syncer_every_n_uploads_less_but_close_sends_the_last(kind: StoreKind, tmp_path: Path) -> None:
    store, folder = kind.store(), tmp_path / "save"
    syncer = Syncer("", "", folder, every=2, interval=0.05, settle=0.05, store=store, log=lambda _m: None).start()
    write_files(folder, fake_checkpoint(1))
    time.sleep(0.5)
    assert versions_in_store(store) == []
    write_files(folder, fake_checkpoint(2))
    wait_for(lambda: versions_in_store(store) == [1])
    write_files(folder, fake_checkpoint(3))
    assert syncer.close(grace=60)
    assert pull(store, tmp_path / "dest").manifest.epoch == 3


def test_resumed_node_pulls_then_syncs_without_resending(kind: StoreKind, tmp_path: Path) -> None:
    root = kind.uri("")
    first = tmp_path / "job1"
    syncer = Syncer(root, "run-a", first, interval=0.05, settle=0.05, store=kind.store("run-a"), log=lambda _m: None)
    write_files(first, fake_checkpoint(2))
    syncer.start()
    assert syncer.close(grace=60)
    second = tmp_path / "job2"
    result = pull_latest(root, "run-a", second, **kind.client_kwargs())
    assert result.manifest.epoch == 2
    resumed = Syncer(root, "run-a", second, interval=0.05, settle=0.05, store=kind.store("run-a"), log=lambda _m: None)
    resumed.start()
    write_files(second, {"last.pt": b"epoch 3"})
    assert resumed.close(grace=60)
    assert resumed.stats.bytes_sent == len(b"epoch 3") and resumed.stats.files_sent == 1


def test_pull_latest_with_nothing_there_starts_fresh(kind: StoreKind, tmp_path: Path) -> None:
    result = pull_latest(kind.uri(""), "nothing-yet", tmp_path / "dest", **kind.client_kwargs())
    assert result.manifest is None and result.skipped == []


def test_pull_latest_keeps_a_newer_local_checkpoint(kind: StoreKind, tmp_path: Path) -> None:
    """Restarted on the same machine after an upload was cut short: never roll the folder back."""
    write_files(tmp_path / "src", fake_checkpoint(2))
    Syncer("", "", tmp_path / "src", store=kind.store("run-b"), log=lambda _m: None).close(grace=60)
    write_files(tmp_path / "here", fake_checkpoint(3))
    result = pull_latest(kind.uri(""), "run-b", tmp_path / "here", **kind.client_kwargs())
    assert result.manifest is None and "kept the local checkpoint" in result.skipped[-1]
    assert (tmp_path / "here" / "last.pt").read_bytes() == fake_checkpoint(3)["last.pt"]
    assert pull_latest(kind.uri(""), "run-b", tmp_path / "older", **kind.client_kwargs()).manifest.epoch == 2


def test_pulling_a_finished_run_does_not_announce_a_resume(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The trainer says "this run already finished"; a "resuming from ..." line before it would contradict it."""
    store = tmp_path / "store"
    syncer = Syncer(str(store), "done", tmp_path / "job1", interval=0.05, settle=0.05, log=lambda _m: None)
    write_files(tmp_path / "job1", fake_checkpoint(3))
    syncer.start()
    assert syncer.close(grace=60)
    capsys.readouterr()
    assert pull_latest(str(store), "done", tmp_path / "job2", epochs=3).manifest.epoch == 3
    assert "resuming" not in capsys.readouterr().out
    assert pull_latest(str(store), "done", tmp_path / "job3", epochs=5).manifest.epoch == 3
    assert "resuming from checkpoint" in capsys.readouterr().out


def test_a_checkpoint_without_epoch_or_step_never_reads_epoch_none() -> None:
    """Issue 34 item 8: a program of one's own that records neither showed `(epoch None)`."""
    from types import SimpleNamespace

    from launcher.storage.sync import point

    assert point(SimpleNamespace(epoch=3, step=None)) == "epoch 3"
    assert point(SimpleNamespace(epoch=None, step=120)) == "step 120"
    assert point(SimpleNamespace(epoch=None, step=None)) == "no epoch or step recorded"


def test_the_final_flush_of_a_version_already_synced_is_not_said_again(tmp_path: Path) -> None:
    """Issue 34 item 8: `checkpoint 2 (epoch 1) synced ... 0 bytes sent` followed the real line at every exit."""
    from launcher.storage.local import LocalStore

    store, folder, said = LocalStore(str(tmp_path / "store")), tmp_path / "save", []
    syncer = Syncer("", "", folder, keep=5, interval=0.05, settle=0.05, store=store, log=said.append)
    write_files(folder, fake_checkpoint(1))
    syncer.sync_now()
    syncer.sync_now()  # what the exit's flush does when the periodic sync already sent this version
    assert [line for line in said if "synced to" in line] == [said[0]] and "(epoch 1)" in said[0], said


def test_a_trainer_run_has_no_checkpoint_before_its_first_last_pt(tmp_path: Path) -> None:
    """Issue 34 item 8: the trainer's first TensorBoard event file (88 bytes) was synced and said as
    `checkpoint 1 (no epoch or step recorded)` before any epoch; with wait_for the first checkpoint is the first save."""
    from launcher.storage.local import LocalStore

    store, folder, said = LocalStore(str(tmp_path / "store")), tmp_path / "save", []
    syncer = Syncer("", "", folder, interval=0.05, settle=0.05, store=store, log=said.append, wait_for="last.pt")
    syncer.start()
    write_files(folder, {"events.out.tfevents.1.host": b"x" * 88, "trackers.json": b"{}"})
    time.sleep(0.5)  # several polls: none may take a version
    assert syncer.sync_now() is None and versions_in_store(store) == [] and said == []
    write_files(folder, fake_checkpoint(1))
    wait_for(lambda: versions_in_store(store) == [1])
    assert syncer.close(grace=60)
    assert [line for line in said if "synced to" in line] == [said[0]] and "checkpoint 1 (epoch 1)" in said[0], said


def test_the_sync_line_names_sizes_and_says_nothing_of_an_unrecorded_epoch() -> None:
    from types import SimpleNamespace

    from launcher.storage.sync import synced_line

    line = synced_line(SimpleNamespace(version=2, epoch=1, step=None), "runs/q", 223985646, 0.71)
    assert line == "checkpoint 2 (epoch 1) synced to runs/q: 213.6 MiB sent in 0.7s"
    line = synced_line(SimpleNamespace(version=3, epoch=None, step=None), "runs/p", 4729, 0.0)
    assert line == "checkpoint 3 synced to runs/p: 4.6 KiB sent in 0.0s"
    assert synced_line(SimpleNamespace(version=1, epoch=None, step=40), "s", 88, 0.0).endswith(
        "(step 40) synced to s: 88 bytes sent in 0.0s"
    )


def test_a_resume_from_a_checkpoint_without_epoch_or_step_names_it_by_number(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 34 item 8: `resuming from checkpoint 1 (no epoch or step recorded) of ...: 1 bytes downloaded`."""
    store = tmp_path / "store"
    syncer = Syncer(str(store), "prog", tmp_path / "job1", interval=0.05, settle=0.05, log=lambda _m: None)
    write_files(tmp_path / "job1", {"count.txt": b"1" * 3000})
    assert syncer.close(grace=60)
    capsys.readouterr()
    assert pull_latest(str(store), "prog", tmp_path / "job2").manifest.version == 1
    said = capsys.readouterr().out
    assert f"resuming from checkpoint 1 of {store}" in said and "2.9 KiB downloaded" in said, said
    assert "no epoch or step" not in said


def test_a_folder_that_never_goes_quiet_is_synced_after_a_few_settle_periods(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A trainer whose epochs are shorter than `settle` changes its folder at every look: the sync waits at most
    QUIET_SETTLES settle periods (it waited 30 s, longer than a short sweep trial runs, so the sweep saw no epoch)."""
    from launcher.storage import sync
    from launcher.storage.local import LocalStore

    syncer = Syncer("", "", tmp_path, interval=0.01, settle=0.01, store=LocalStore(str(tmp_path / "store")))
    looks = iter(range(10**6))
    monkeypatch.setattr(sync, "scan", lambda folder: {"last.pt": next(looks)})  # a new last.pt at every look
    syncer._wait_quiet(sync.QUIET_SETTLES * syncer.settle)
    assert sync.QUIET_SETTLES <= next(looks) <= sync.QUIET_SETTLES + 3  # the scans it made: bounded by settles
