"""The entrypoint's per-platform choices: where a node saves, where the sync keeps its files, remote data."""

from __future__ import annotations

from pathlib import Path

from launcher.runtime import entrypoint, rendezvous


def test_scratch_is_a_hidden_sibling_of_the_save_folder(tmp_path: Path) -> None:
    assert entrypoint.scratch_for(tmp_path / "checkpoints") == tmp_path / ".checkpoints.launcher"
    assert (tmp_path / ".checkpoints.launcher").is_dir()


def test_only_node_0_writes_in_sagemakers_mirrored_checkpoint_folder() -> None:
    mirrored = Path("/opt/ml/checkpoints")
    chief = rendezvous.Rendezvous("sagemaker", 2, 0, "algo-1", 29500)
    worker = rendezvous.Rendezvous("sagemaker", 2, 1, "algo-1", 29500)
    assert entrypoint.node_save_dir(mirrored, chief, "run") == mirrored
    private = entrypoint.node_save_dir(mirrored, worker, "run")
    assert private.name == "run" and not private.is_relative_to(mirrored)
    vertex_worker = rendezvous.Rendezvous("vertex", 2, 1, "h0", 2222)
    assert entrypoint.node_save_dir(Path("/tmp/x/run"), vertex_worker, "run") == Path("/tmp/x/run")
