"""Optional reporters with their real SDKs: MLflow on a local file store (also as Azure ML hands it a run),
W&B in offline mode (its run log read back), and the failure path: warn once, never stop training."""

from __future__ import annotations

import json
import socket
import struct
from pathlib import Path
from typing import Iterator, Mapping

import pytest

from launcher.runtime.train import metrics, report
from tests.launcher.runtime.train.conftest import CSV_METRICS, fit_on_cpu, tiny_config


def _csv(save_dir: Path) -> dict[str, list[tuple[int, float]]]:
    rows = report.read_rows(save_dir / "results.csv")
    return {name: [(int(r["epoch"]), r[name]) for r in rows] for name in CSV_METRICS}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "WANDB_API_KEY",
        "WANDB_PROJECT",
        "WANDB_MODE",
        "MLFLOW_TRACKING_URI",
        "MLFLOW_RUN_ID",
        "MLFLOW_EXPERIMENT_NAME",
        "AZUREML_RUN_ID",
        "AIP_TENSORBOARD_LOG_DIR",
    ):
        monkeypatch.delenv(name, raising=False)


# ------------------------------------------------------------------ MLflow


@pytest.fixture
def mlflow_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    uri = (tmp_path / "mlruns").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps the file store behind this switch
    return uri


def _mlflow_history(uri: str, run_id: str) -> dict[str, list[tuple[int, float]]]:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=uri)
    return {
        name: [(m.step, m.value) for m in sorted(client.get_metric_history(run_id, name), key=lambda m: m.step)]
        for name in CSV_METRICS
    }


def test_an_mlflow_store_receives_the_same_metrics_and_a_resume_continues_the_run(
    tiny_data: Path, tmp_path: Path, mlflow_store: str
) -> None:
    import mlflow

    run = tmp_path / "run"
    out = fit_on_cpu(tiny_config(tiny_data), run)
    assert "WARNING" not in out
    run_id = json.loads((run / metrics.TRACKERS_FILE).read_text())["mlflow_run_id"]
    assert _mlflow_history(mlflow_store, run_id) == _csv(run)
    params = mlflow.MlflowClient(tracking_uri=mlflow_store).get_run(run_id).data.params
    assert params["model"] == "shufflenet_v2_x0_5" and params["imgsz"] == "16"
    assert mlflow.MlflowClient(tracking_uri=mlflow_store).get_run(run_id).info.status == "FINISHED"
    fit_on_cpu(tiny_config(tiny_data, epochs=3), run)  # resumed: the same MLflow run, epoch 3 added, nothing twice
    assert _mlflow_history(mlflow_store, run_id) == _csv(run)
    assert len(_csv(run)["top1"]) == 3


def test_on_azure_ml_the_metrics_go_to_the_platforms_run(
    tiny_data: Path, tmp_path: Path, mlflow_store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    # what Azure ML sets in a job's container: its tracking URI and the job's own run
    client = mlflow.MlflowClient(tracking_uri=mlflow_store)
    job_run = client.create_run(client.create_experiment("azureml-experiment")).info.run_id
    monkeypatch.setenv("AZUREML_RUN_ID", "job-run-1")
    monkeypatch.setenv("MLFLOW_RUN_ID", job_run)
    run = tmp_path / "run"
    fit_on_cpu(tiny_config(tiny_data, epochs=1), run)
    assert _mlflow_history(mlflow_store, job_run) == _csv(run)
    assert client.get_run(job_run).info.status == "RUNNING"  # Azure ML ends its own run
    assert len(client.search_runs([e.experiment_id for e in client.search_experiments()])) == 1  # no run of our own


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_tracking_server_warns_once_and_training_finishes(
    tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    run = tmp_path / "run"
    out = fit_on_cpu(tiny_config(tiny_data), run)
    warnings = [line for line in out.splitlines() if "WARNING" in line]
    assert len(warnings) == 1 and "MLflow reporting is off" in warnings[0], out
    assert len(report.read_rows(run / "results.csv")) == 2 and list(run.glob("events.out.tfevents.*"))


class _Sink(metrics.Reporter):
    def __init__(self, name: str, fail_at: int | None = None) -> None:
        self.name, self.fail_at, self.seen = name, fail_at, []

    def log(self, epoch: int, values: Mapping[str, float]) -> None:
        if epoch == self.fail_at:
            raise ConnectionError("connection reset")
        self.seen.append(epoch)


def test_a_sink_that_fails_mid_run_is_dropped_after_one_warning() -> None:
    said: list[str] = []
    bad, good = _Sink("Flaky", fail_at=2), _Sink("Fine")
    sinks = metrics.Reporters([bad, good], said.append)
    for epoch in (1, 2, 3):
        sinks.log(epoch, {"top1": 0.5})
        sinks.flush()
    sinks.close()
    assert bad.seen == [1] and good.seen == [1, 2, 3]
    assert said == [
        "WARNING: Flaky reporting failed (ConnectionError: connection reset); training continues without it"
    ]


def test_nothing_configured_means_tensorboard_only(tmp_path: Path) -> None:
    sinks = metrics.from_env(tmp_path, 1, {}, environ={}, log=lambda m: pytest.fail(m))
    assert sinks.names == ["TensorBoard"]
    sinks.close()


# ------------------------------------------------------------------ Weights & Biases


def _wandb_records(path: Path) -> Iterator[object]:
    """W&B's run log (<run>/run-<id>.wandb): a ':W&B' header, then LevelDB-style log blocks of protobuf Records."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, block, pos, buf = path.read_bytes(), 32768, 7, b""
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        buf = chunk if kind in (1, 2) else buf + chunk  # 1 full, 2 first, 3 middle, 4 last
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(buf)
            yield record


def _wandb_history(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    found: dict[str, list[tuple[int, float]]] = {name: [] for name in CSV_METRICS}
    for record in _wandb_records(next(run_dir.glob("run-*.wandb"))):
        if record.WhichOneof("record_type") != "history":
            continue
        items = {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
        for name in CSV_METRICS:
            found[name].append((items["epoch"], items[name]))
    return found


def test_wandb_offline_run_logs_the_same_metrics(
    tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_PROJECT", "launcher-tests")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = tmp_path / "run"
    out = fit_on_cpu(tiny_config(tiny_data), run)
    assert "WARNING" not in out
    wandb_id = json.loads((run / metrics.TRACKERS_FILE).read_text())["wandb_id"]
    (run_dir,) = (tmp_path / "wandb").glob(f"offline-run-*-{wandb_id}")
    assert _wandb_history(run_dir) == _csv(run)


def test_sdks_are_imported_only_by_the_sinks_that_use_them(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.conftest import REPO

    code = (
        "import sys; from launcher.runtime.train import metrics; import launcher.backends.aws; "
        f"s = metrics.from_env(__import__('pathlib').Path({str(tmp_path)!r}), 1, {{}}, environ={{}}); s.close(); "
        "print(sorted(m for m in ('wandb', 'mlflow') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.split() == ["[]"]


def test_a_log_file_gets_plain_progress_lines_and_a_terminal_the_bar() -> None:
    """Issue 34 item 8: `epoch 1/1 [##########..........] 1/2 ...` bars were written into log files."""
    import io

    from launcher.runtime.train.report import StepProgress

    log = io.StringIO()
    bar = StepProgress(0, 3, 10, log)
    for step in range(10):
        bar.update(step, 0.5, 0.01, 100.0)
    lines = log.getvalue().splitlines()
    assert len(lines) == 10 and lines[-1] == "epoch 1/3 step 10/10 loss 0.5000 lr 0.01 100 img/s"
    assert "#" not in log.getvalue() and "\r" not in log.getvalue()

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    StepProgress(0, 3, 10, screen).update(9, 0.5, 0.01, 100.0)
    assert "[####################]" in screen.getvalue()
