"""Issue 23: `tensorboard --logdir runs/NAME` showed one copy of the curves per kept checkpoint version."""

from __future__ import annotations

from pathlib import Path

from launcher.storage import sync
from launcher.storage.local import LocalStore
from tests.launcher.storage.helpers import fake_checkpoint, write_files

EVENTS = "events.out.tfevents.1796301895.host.15.0"


def _event_files(root: Path) -> list[Path]:
    """What TensorBoard reads under --logdir: every file whose name holds "tfevents", in any folder."""
    return sorted(p for p in root.rglob("*") if p.is_file() and "tfevents" in p.name)


def test_tensorboard_sees_one_run_with_the_newest_events(tmp_path: Path) -> None:
    store = LocalStore(str(tmp_path / "runs" / "q"))
    work = tmp_path / "job"
    pusher = sync.Pusher(store, work, keep=3, log=lambda _m: None)
    events = b""
    for epoch in (1, 2, 3):
        events += f"epoch {epoch} scalars;".encode()  # the trainer appends to one event file
        write_files(work, {**fake_checkpoint(epoch), EVENTS: events})
        assert pusher.push().version == epoch
    found = _event_files(store.root)
    assert [p.relative_to(store.root).as_posix() for p in found] == [f"tensorboard/{EVENTS}"]  # one run
    assert found[0].read_bytes() == events  # the newest epoch's
    # each kept version still restores the event file under its own name, complete and verified
    result = sync.pull(store, tmp_path / "restored", log=lambda _m: None)
    assert result.manifest.version == 3 and (tmp_path / "restored" / EVENTS).read_bytes() == events
    assert "tb-events" in result.manifest.files[EVENTS].key


def test_a_copied_run_gets_the_same_layout(tmp_path: Path) -> None:
    src = LocalStore(str(tmp_path / "a"))
    write_files(tmp_path / "job", {**fake_checkpoint(2), EVENTS: b"two epochs"})
    sync.push(src, tmp_path / "job")
    dst = LocalStore(str(tmp_path / "b"))
    sync.copy(src, dst, log=lambda _m: None)
    assert [p.relative_to(dst.root).as_posix() for p in _event_files(dst.root)] == [f"tensorboard/{EVENTS}"]
