"""One writer per run: the lease object on every store, its heartbeat, takeover and release."""

from __future__ import annotations

from pathlib import Path

import pytest

from launcher.storage.lease import LEASE, STALE_AFTER_S, START_GRACE_S, Holder, RunBusyError, acquire, read, release
from launcher.storage.manifest import versions_in_store
from launcher.storage.sync import Syncer
from tests.launcher.storage.conftest import StoreKind
from tests.launcher.storage.helpers import fake_checkpoint, write_files


def test_a_second_job_is_refused_naming_the_holder(kind: StoreKind) -> None:
    store = kind.store()
    acquire(store, "job-a", "aws")
    with pytest.raises(RunBusyError) as info:
        acquire(store, "job-b", "local")
    assert "job job-a on aws" in str(info.value) and "--force" in str(info.value) and store.uri in str(info.value)
    assert read(store).job == "job-a"  # type: ignore[union-attr]
    assert release(store, "job-b") is False and release(store, "job-a") is True
    acquire(store, "job-b")  # released: free
    assert read(store).job == "job-b"  # type: ignore[union-attr]


def test_create_if_absent_is_atomic_on_s3(s3_kind: StoreKind) -> None:
    """moto honours If-None-Match: *, as S3 does: the second create of the lease is refused by the store."""
    store = s3_kind.store()
    assert store.put_bytes_new(LEASE, b'{"job": "a"}') is True
    assert store.put_bytes_new(LEASE, b'{"job": "b"}') is False
    assert store.get_bytes(LEASE) == b'{"job": "a"}'


@pytest.mark.parametrize("name", ["local", "azure"])
def test_create_if_absent_is_atomic(name: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    store = (
        StoreKind("local", str(tmp_path / "s"), None, None)
        if name == "local"
        else request.getfixturevalue("azure_kind")
    ).store()
    assert store.put_bytes_new("x.json", b"1") and not store.put_bytes_new("x.json", b"2")
    assert store.get_bytes("x.json") == b"1"


def test_s3_lease_heartbeat_staleness_and_takeover(s3_kind: StoreKind) -> None:
    store = s3_kind.store()
    clock = [1000.0]
    acquire(store, "job-a", "aws", now=lambda: clock[0])
    clock[0] += START_GRACE_S - 1  # not started yet, but within the start grace: still held
    with pytest.raises(RunBusyError, match="job-a"):
        acquire(store, "job-b", now=lambda: clock[0])
    holder = Holder(store, "job-a", log=lambda _m: None)
    holder.claim()  # the entrypoint started: state running, heartbeat now
    assert read(store).state == "running"  # type: ignore[union-attr]
    beat = read(store).heartbeat  # type: ignore[union-attr]
    with pytest.raises(RunBusyError):
        acquire(store, "job-b", now=lambda: beat + STALE_AFTER_S - 1)
    acquire(store, "job-b", now=lambda: beat + STALE_AFTER_S + 1)  # no heartbeat for too long: taken over
    assert read(store).job == "job-b" and holder.renew(force=True) is False and holder.lost  # type: ignore[union-attr]
    holder.release()
    assert read(store).job == "job-b"  # type: ignore[union-attr]  # the loser never deletes the winner's lease


def test_force_and_a_finished_holder_take_over(kind: StoreKind) -> None:
    store = kind.store()
    acquire(store, "job-a")
    acquire(store, "job-b", force=True)
    assert read(store).job == "job-b"  # type: ignore[union-attr]
    acquire(store, "job-c", finished=lambda job: job == "job-b")
    assert read(store).job == "job-c"  # type: ignore[union-attr]


def _held_by_job_a(kind: StoreKind, work: Path):  # type: ignore[no-untyped-def]
    """A store whose lease job-a holds (claimed, as its entrypoint does), and a first checkpoint in `work`."""
    store = kind.store()
    acquire(store, "job-a")
    holder = Holder(store, "job-a", log=lambda _m: None)
    holder.claim()
    write_files(work, fake_checkpoint(1))
    return store, holder


def test_the_syncer_renews_and_stops_uploading_once_taken_over(kind: StoreKind, tmp_path: Path) -> None:
    store, holder = _held_by_job_a(kind, tmp_path / "work")
    syncer = Syncer("", "", tmp_path / "work", store=store, log=lambda _m: None, holder=holder)
    assert syncer.sync_now() is not None and versions_in_store(store) == [1]
    acquire(store, "job-b", force=True)
    write_files(tmp_path / "work", fake_checkpoint(2))
    assert syncer.sync_now() is None and versions_in_store(store) == [1]  # never writes beside job-b
    assert syncer.close(grace=30) is True and read(store).job == "job-b"  # type: ignore[union-attr]


def test_close_releases_the_lease(kind: StoreKind, tmp_path: Path) -> None:
    store, holder = _held_by_job_a(kind, tmp_path / "work")
    syncer = Syncer("", "", tmp_path / "work", store=store, log=lambda _m: None, holder=holder, interval=0.05)
    syncer.start()
    assert syncer.close(grace=60) is True
    assert read(store) is None and versions_in_store(store) == [1]


def test_an_entrypoint_without_a_job_id_adopts_the_submitted_lease(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from launcher.storage import open_store

    monkeypatch.delenv("LAUNCHER_JOB_ID", raising=False)
    store = open_store(str(tmp_path / "run"))
    acquire(store, "job-a", "gcp")
    holder = Holder(store, log=lambda _m: None)
    holder.claim()
    lease = read(store)
    assert holder.job == "job-a" and lease.state == "running" and lease.backend == "gcp"  # type: ignore[union-attr]
