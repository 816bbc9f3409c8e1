from __future__ import annotations

import pickle
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from launcher.runtime.train import checkpoint


class Thing:
    pass


def test_save_is_atomic_and_loads_with_weights_only(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    checkpoint.save({"epoch": 1, "w": torch.ones(2)}, path)
    checkpoint.save({"epoch": 2, "w": torch.zeros(2)}, path)
    assert checkpoint.load(path)["epoch"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temp files left behind


def test_weights_only_refuses_arbitrary_objects(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"obj": Thing()}, path)  # an arbitrary class: unpickling it could run code
    with pytest.raises(pickle.UnpicklingError):
        checkpoint.load(path)


def test_find_resume_skips_a_damaged_last_pt(tmp_path: Path) -> None:
    checkpoint.save({"epoch": 2}, tmp_path / "epoch-2.pt")
    checkpoint.save({"epoch": 4}, tmp_path / "epoch-4.pt")
    (tmp_path / "last.pt").write_bytes(b"torn")
    path, state = checkpoint.find_resume(tmp_path)
    assert path.name == "epoch-4.pt" and state["epoch"] == 4
    assert checkpoint.find_resume(tmp_path / "none") is None


def test_rng_states_round_trip_through_a_weights_only_file(tmp_path: Path) -> None:
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    checkpoint.save({"rng": checkpoint.rng_state()}, tmp_path / "r.pt")
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    checkpoint.set_rng_state(checkpoint.load(tmp_path / "r.pt")["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
