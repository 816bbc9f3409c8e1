"""The sync's own files (state, staging, partial downloads) can live outside the checkpoint folder.

SageMaker mirrors /opt/ml/checkpoints to S3 and back, so anything the sync
leaves there would be uploaded beside the trainer's files and restored into
every restart; with `scratch` the folder holds only the trainer's files.
"""

from __future__ import annotations

from pathlib import Path

from launcher.storage.sync import STATE_FILE, Syncer, pull
from tests.launcher.storage.conftest import StoreKind
from tests.launcher.storage.helpers import fake_checkpoint, write_files


def quiet(_message: str) -> None:
    pass


def test_push_and_pull_leave_only_the_trainers_files_in_the_folder(s3_kind: StoreKind, tmp_path: Path) -> None:
    store, folder, scratch = s3_kind.store(), tmp_path / "checkpoints", tmp_path / ".checkpoints.launcher"
    syncer = Syncer("", "", folder, store=store, log=quiet, scratch=scratch)
    write_files(folder, fake_checkpoint(1))
    assert syncer.sync_now() is not None and syncer.close(grace=60)
    assert sorted(p.name for p in folder.iterdir()) == sorted(fake_checkpoint(1))
    assert (scratch / STATE_FILE).is_file()

    dest, dest_scratch = tmp_path / "restart" / "checkpoints", tmp_path / "restart" / ".scratch"
    result = pull(store, dest, log=quiet, scratch=dest_scratch)
    assert result.manifest is not None and result.manifest.epoch == 1
    assert sorted(p.name for p in dest.iterdir()) == sorted(fake_checkpoint(1))  # no .launcher-pull-*, no state file
    assert [p.name for p in dest_scratch.iterdir()] == [STATE_FILE]
