"""Where the numbers go: TensorBoard events beside results.csv (read back with TensorBoard's own reader),
the syncer carrying them with the checkpoints, and a resumed run that reads each epoch once."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from launcher import contract
from launcher.runtime.train import metrics, report
from launcher.storage.local import LocalStore
from launcher.storage.sync import Syncer, pull
from tests.launcher.runtime.train.conftest import CSV_METRICS, fit_on_cpu, tiny_config


def _scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """What TensorBoard shows: its own reader, with its orphaned-data purge (the default)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _assert_events_equal_csv(folder: Path) -> None:
    rows = report.read_rows(folder / "results.csv")
    found = _scalars(folder)
    assert set(found) == set(CSV_METRICS)  # no GPU here: no gpu_mem_gib
    for name in CSV_METRICS:
        assert [step for step, _ in found[name]] == [int(r["epoch"]) for r in rows], name
        # events hold float32: equal to results.csv to float32 precision
        assert [v for _, v in found[name]] == pytest.approx([r[name] for r in rows], rel=1e-6), name


@pytest.fixture(autouse=True)
def _no_trackers(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("WANDB_API_KEY", "WANDB_PROJECT", "MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "AIP_TENSORBOARD_LOG_DIR"):
        monkeypatch.delenv(name, raising=False)


def test_tensorboard_events_equal_results_csv(tiny_data: Path, tmp_path: Path) -> None:
    out = fit_on_cpu(tiny_config(tiny_data), tmp_path)
    assert len(list(tmp_path.glob("events.out.tfevents.*"))) == 1
    _assert_events_equal_csv(tmp_path)
    assert "WARNING" not in out


def test_the_epoch_summary_line_carries_every_metric_and_sagemaker_regexes_read_it(
    tiny_data: Path, tmp_path: Path
) -> None:
    out = fit_on_cpu(tiny_config(tiny_data), tmp_path)
    rows = report.read_rows(tmp_path / "results.csv")
    for name, regex in contract.LOG_REGEXES.items():
        values = [float(m.group(1)) for line in out.splitlines() if (m := re.search(regex, line))]
        if name == "gpu_mem_gib":
            assert values == []  # CPU run
            continue
        expected = [r[name] for r in rows]
        assert values == pytest.approx(expected, rel=1e-3, abs=0.006), name  # as rounded in the log line


def test_a_resumed_run_reads_each_epoch_once(tiny_data: Path, tmp_path: Path) -> None:
    fit_on_cpu(tiny_config(tiny_data, epochs=3, save_period=1), tmp_path)
    # the last checkpoint is lost (as when its upload was cut short): the run resumes from epoch 2
    # and redoes epoch 3, whose events the folder already holds
    (tmp_path / "last.pt").unlink()
    (tmp_path / "epoch-3.pt").unlink()
    out = fit_on_cpu(tiny_config(tiny_data, epochs=3, save_period=1), tmp_path)
    assert "resuming from" in out and "epoch-2.pt" in out
    assert len(list(tmp_path.glob("events.out.tfevents.*"))) == 2  # appended in a new file, old file untouched
    _assert_events_equal_csv(tmp_path)


def test_the_syncer_uploads_the_events_with_the_checkpoints(tiny_data: Path, tmp_path: Path) -> None:
    run, store = tmp_path / "run", LocalStore(str(tmp_path / "store"))
    run.mkdir()
    syncer = Syncer("", "", run, store=store, interval=0.05, settle=0.05, log=lambda _m: None).start()
    fit_on_cpu(tiny_config(tiny_data), run)
    assert syncer.close(grace=60)
    elsewhere = tmp_path / "elsewhere"
    result = pull(store, elsewhere, log=lambda _m: None)
    assert result.manifest is not None and result.manifest.epoch == 2
    assert any(name.startswith("events.out.tfevents.") for name in result.manifest.files)
    _assert_events_equal_csv(elsewhere)
    # a new machine resumes from the store and trains on: one more event file, every epoch once
    fit_on_cpu(tiny_config(tiny_data, epochs=3), elsewhere)
    assert len(list(elsewhere.glob("events.out.tfevents.*"))) == 2
    _assert_events_equal_csv(elsewhere)


def test_vertex_tensorboard_dir_gets_the_same_events(
    tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIP_TENSORBOARD_LOG_DIR", str(tmp_path / "aip"))
    fit_on_cpu(tiny_config(tiny_data, epochs=1), tmp_path / "run")
    assert _scalars(tmp_path / "aip") == _scalars(tmp_path / "run")


def test_gs_tensorboard_dir_is_read_through_the_gcs_mount() -> None:
    dirs = metrics.tensorboard_dirs(Path("/r"), {"AIP_TENSORBOARD_LOG_DIR": "gs://b/out/logs/"})
    assert dirs == [Path("/r"), Path("/gcs/b/out/logs")]
    assert metrics.tensorboard_dirs(Path("/r"), {}) == [Path("/r")]


def test_the_readme_shows_the_real_summary_line() -> None:
    from tests.conftest import REPO

    line = re.search(r"\n(\[train\] epoch 3/10: .+)\n", (REPO / "README.md").read_text()).group(1)  # type: ignore[union-attr]
    values = {name: float(m.group(1)) for name, regex in contract.LOG_REGEXES.items() if (m := re.search(regex, line))}
    assert set(values) == set(contract.LOG_REGEXES)
    assert "[train] " + contract.summary_line(values, 10) == line
