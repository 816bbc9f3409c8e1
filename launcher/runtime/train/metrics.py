"""Where an epoch's numbers go besides results.csv: the log line, TensorBoard, W&B, MLflow.

- The epoch summary line (`summary_line`) is what cloud consoles read:
  SageMaker's MetricDefinitions are the regexes of `LOG_REGEXES`; both are
  part of the container contract (launcher.contract), beside each other.
- TensorBoard event files are written beside results.csv (always, when the
  `tensorboard` package is installed) and, on Vertex AI, also to
  AIP_TENSORBOARD_LOG_DIR so the job's Vertex AI TensorBoard shows them.
- Weights & Biases (WANDB_API_KEY or WANDB_PROJECT) and MLflow
  (MLFLOW_TRACKING_URI; Azure ML sets it, with MLFLOW_RUN_ID, in every job)
  are on when configured and silent otherwise.

Every sink imports its SDK lazily. A sink that fails (package missing, no
network, bad key) warns once and is dropped: training never stops for it.
Only rank 0 reports. Each metric is logged with step = epoch (1-based, as in
results.csv). A resumed run continues the same W&B/MLflow run (their ids are
kept in `trackers.json` in the run folder, which syncs with the checkpoints)
and tells TensorBoard to drop any events at or after the epoch it restarts
from, so every epoch is read once.
"""

from __future__ import annotations

import abc
import json
import os
from pathlib import Path
from typing import Any, Callable, Mapping

__all__ = [
    "Reporter",
    "Reporters",
    "TensorBoardReporter",
    "WandbReporter",
    "MlflowReporter",
    "from_env",
    "tensorboard_dirs",
    "TRACKERS_FILE",
]

TRACKERS_FILE = "trackers.json"

Log = Callable[[str], None]


class Reporter(abc.ABC):
    """One sink. `log` gets {metric: value} for one epoch; `flush` runs before each checkpoint is saved."""

    name = "reporter"

    @abc.abstractmethod
    def log(self, epoch: int, values: Mapping[str, float]) -> None: ...

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class Reporters:
    """All configured sinks; a sink that raises is dropped after one warning."""

    def __init__(self, sinks: list[Reporter], log: Log) -> None:
        self.sinks, self._log = list(sinks), log

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.sinks]

    def log(self, epoch: int, values: Mapping[str, float]) -> None:
        self._each("log", epoch, dict(values))

    def flush(self) -> None:
        self._each("flush")

    def close(self) -> None:
        self._each("close")
        self.sinks = []

    def _each(self, method: str, *args: Any) -> None:
        for sink in list(self.sinks):
            try:
                getattr(sink, method)(*args)
            except Exception as exc:  # noqa: BLE001 - reporting must never stop training
                self.sinks.remove(sink)
                self._log(
                    f"WARNING: {sink.name} reporting failed ({type(exc).__name__}: {exc}); training continues without it"
                )


# ------------------------------------------------------------------ TensorBoard


def tensorboard_dirs(save_dir: Path, environ: Mapping[str, str]) -> list[Path]:
    """The run folder, plus Vertex AI's AIP_TENSORBOARD_LOG_DIR (gs://B/P read through the /gcs/B/P mount)."""
    dirs = [Path(save_dir)]
    vertex = environ.get("AIP_TENSORBOARD_LOG_DIR", "")
    if vertex:
        # Vertex mounts every bucket at /gcs/<bucket> (Cloud Storage FUSE), and the TensorBoard writer
        # only writes local files without TensorFlow
        dirs.append(Path("/gcs", vertex[len("gs://") :]) if vertex.startswith("gs://") else Path(vertex))
    return dirs


def _has_events(folder: Path) -> bool:
    return folder.is_dir() and any(folder.glob("events.out.tfevents.*"))


class TensorBoardReporter(Reporter):
    name = "TensorBoard"

    def __init__(self, log_dir: Path, first_epoch: int) -> None:
        from torch.utils.tensorboard import SummaryWriter  # noqa: PLC0415 - needs the `tensorboard` package

        # a resumed run starts a new event file; purge_step makes TensorBoard's readers drop the old
        # file's events from `first_epoch` on (they were redone), so no epoch is read twice
        purge = first_epoch if _has_events(log_dir) else None
        self.writer = SummaryWriter(str(log_dir), purge_step=purge, flush_secs=3600)

    def log(self, epoch: int, values: Mapping[str, float]) -> None:
        for key, value in values.items():
            self.writer.add_scalar(key, value, epoch)

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


# ------------------------------------------------------------------ W&B and MLflow


class _Ids:
    """trackers.json in the run folder: the W&B/MLflow run ids, so a resumed run continues the same run."""

    def __init__(self, save_dir: Path) -> None:
        self.path = Path(save_dir) / TRACKERS_FILE
        try:
            self.ids: dict[str, str] = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.ids = {}

    def get(self, key: str) -> str | None:
        return self.ids.get(key)

    def put(self, key: str, value: str) -> None:
        self.ids[key] = value
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.ids, indent=2) + "\n", encoding="utf-8")
        tmp.replace(self.path)


class WandbReporter(Reporter):
    name = "Weights & Biases"

    def __init__(self, run_name: str, config: dict[str, Any], ids: _Ids, environ: Mapping[str, str]) -> None:
        import wandb  # noqa: PLC0415

        self.wandb = wandb
        self.run = wandb.init(
            project=environ.get("WANDB_PROJECT") or "launcher",
            name=run_name,
            config=config,
            id=ids.get("wandb_id"),
            resume="allow",
            reinit="create_new",
            settings=wandb.Settings(init_timeout=60, console="off"),
        )
        ids.put("wandb_id", self.run.id)

    def log(self, epoch: int, values: Mapping[str, float]) -> None:
        self.run.log({"epoch": epoch, **values}, step=epoch)

    def close(self) -> None:
        self.run.finish()


class MlflowReporter(Reporter):
    name = "MLflow"

    def __init__(self, run_name: str, config: dict[str, Any], ids: _Ids, environ: Mapping[str, str]) -> None:
        import mlflow  # noqa: PLC0415
        from mlflow.entities import Param  # noqa: PLC0415

        self.client = mlflow.MlflowClient(tracking_uri=environ["MLFLOW_TRACKING_URI"])
        # Azure ML (and `mlflow run`) hand the job its run in MLFLOW_RUN_ID; otherwise continue ours, or start one
        run_id = environ.get("MLFLOW_RUN_ID") or ids.get("mlflow_run_id")
        self.own = not environ.get("MLFLOW_RUN_ID")  # the platform's run is the platform's to end
        if run_id is not None and self.own:
            self.client.update_run(run_id, status="RUNNING")  # resumed: it was marked finished when it stopped
        if run_id is None:
            experiment = environ.get("MLFLOW_EXPERIMENT_NAME") or "launcher"
            found = self.client.get_experiment_by_name(experiment)
            exp_id = found.experiment_id if found else self.client.create_experiment(experiment)
            run_id = self.client.create_run(exp_id, run_name=run_name).info.run_id
            ids.put("mlflow_run_id", run_id)
            params = {k: str(v)[:500] for k, v in config.items()}
            self.client.log_batch(run_id, params=[Param(k, v) for k, v in params.items()])
        self.run_id = run_id

    def log(self, epoch: int, values: Mapping[str, float]) -> None:
        import time  # noqa: PLC0415

        from mlflow.entities import Metric  # noqa: PLC0415

        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, epoch) for k, v in values.items()]
        self.client.log_batch(self.run_id, metrics=metrics)

    def close(self) -> None:
        if self.own:
            self.client.set_terminated(self.run_id)


# ------------------------------------------------------------------ assembly


def from_env(
    save_dir: Path, first_epoch: int, config: dict[str, Any], environ: Mapping[str, str] | None = None, log: Log = print
) -> Reporters:
    """The sinks this environment asks for, each started (a sink that cannot start warns and is left out)."""
    environ = os.environ if environ is None else environ
    ids = _Ids(save_dir)
    run_name = environ.get("LAUNCHER_RUN_NAME") or Path(save_dir).resolve().name
    makers: list[tuple[str, Callable[[], Reporter]]] = [
        (TensorBoardReporter.name, lambda d=d: TensorBoardReporter(d, first_epoch))
        for d in tensorboard_dirs(save_dir, environ)
    ]
    if environ.get("WANDB_API_KEY") or environ.get("WANDB_PROJECT"):
        makers.append((WandbReporter.name, lambda: WandbReporter(run_name, config, ids, environ)))
    if environ.get("MLFLOW_TRACKING_URI"):
        makers.append((MlflowReporter.name, lambda: MlflowReporter(run_name, config, ids, environ)))
    sinks = []
    for name, make in makers:
        try:
            sinks.append(make())
        except Exception as exc:  # noqa: BLE001 - a missing package or a dead server must not stop training
            log(f"WARNING: {name} reporting is off ({type(exc).__name__}: {exc}); training continues without it")
    return Reporters(sinks, log)
