"""The ultralytics engine: `python -m launcher.runtime.train.ultralytics_engine key=value ... save_dir=DIR`.

The only module of the project that imports Ultralytics (AGPL-3.0, the `ultralytics` extra). The entrypoint
runs it instead of the built-in trainer when the spec says `train.engine: ultralytics`, as one process per
node and not under torchrun: with several GPUs Ultralytics starts its own DDP from its device list (and
Ultralytics reads torchrun's RANK as "a DDP worker").

- The `train:` keys a spec sets reach `YOLO(model).train(...)` under their own names (TrainConfig.to_args
  writes only those, so Ultralytics' defaults hold for the rest); `multi_scale: true` is Ultralytics'
  `multi_scale: 0.5` (the built-in trainer's +-50%), `amp: true` is bf16 where the GPU has it.
- Its run folder is LAUNCHER_CHECKPOINT_DIR itself: `last.pt` and `best.pt` at its top (written under a
  temporary name, then renamed: the checkpoint sync takes a version when last.pt is replaced), with
  results.csv, the plots and `results.json` (`{"epoch": N}`, for the manifest).
- A folder that holds a `last.pt` resumes with Ultralytics' own `resume`; rows of results.csv past that
  checkpoint's epoch (written before a SIGKILL) are dropped, so each epoch is in it once. A `last.pt` of a
  finished run (Ultralytics marks it epoch -1) says the run finished, and exits 0, unless train.epochs was
  raised past the epochs it trained for: then Ultralytics fine-tunes from that last.pt for the epochs
  missing (its `resume` cannot extend a finished run), and the new epochs are counted on from the old ones
  (results.csv, results.json, the summary line): `epochs: 3` after a finished 2-epoch run trains epoch 3.
- SIGTERM: the epoch in flight is given up (Ultralytics resumes at an epoch's start), except when the
  epoch's results are being written (results.csv through last.pt): that finishes first. Exit 143.
  With several GPUs this process only waits for Ultralytics' DDP launcher (torch.distributed.run, its
  child): the SIGTERM is passed to it, torchrun passes it to its workers, each worker handles it as above
  (the trainer class, signal handler included, is what Ultralytics pickles for them), and this process
  exits 143 once they have.
- Offline: nothing is downloaded at run time. YOLO_OFFLINE, no auto-install, its settings in a folder of
  the data cache with every integration, hub and telemetry off except the sinks below, and matplotlib's
  DejaVu Sans placed where Ultralytics looks for its Arial fonts.
- Sinks: Ultralytics' own, one each: TensorBoard (event files in the run folder), MLflow when
  MLFLOW_TRACKING_URI is set, W&B when WANDB_API_KEY or WANDB_PROJECT is; the launcher's own writers are
  not used with this engine, so nothing is logged twice.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from launcher.contract import data_dir, summary_line
from launcher.errors import LauncherError
from launcher.runtime.train.config import parse_args
from launcher.spec.names import url_file_name, yolo_task_of
from launcher.spec.train import TrainConfig

__all__ = [
    "main",
    "model_gflops",
    "train_kwargs",
    "yolo_data",
    "offline_environment",
    "trim_results",
    "epoch_offset",
    "finished_epochs",
    "clean_line",
    "measured",
    "LOOP_RATES",
]

_FONTS = ("Arial.ttf", "Arial.Unicode.ttf")
_INTEGRATIONS = ("clearml", "comet", "dvc", "hub", "mlflow", "neptune", "raytune", "tensorboard", "wandb")


def offline_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The variables Ultralytics reads at import: offline, no pip installs, its settings in our data cache."""
    return {"YOLO_OFFLINE": "true", "YOLO_AUTOINSTALL": "false",
            "YOLO_CONFIG_DIR": str(data_dir(environ) / "ultralytics-config")}  # fmt: skip


def _prepare_config_dir(folder: Path) -> None:
    """Ultralytics looks for Arial.ttf / Arial.Unicode.ttf here and downloads them when missing."""
    folder.mkdir(parents=True, exist_ok=True)
    from matplotlib import font_manager  # noqa: PLC0415 - an Ultralytics dependency

    font = Path(font_manager.findfont("DejaVu Sans", fallback_to_default=True))
    for name in _FONTS:
        if not (folder / name).is_file():
            tmp = folder / f".{name}.part"
            shutil.copyfile(font, tmp)
            os.replace(tmp, folder / name)


def _settings(environ: Mapping[str, str]) -> dict[str, Any]:
    """Ultralytics' settings: no telemetry, no hub, its own TensorBoard/MLflow/W&B writers as the only sinks."""
    wanted = {"tensorboard": True, "mlflow": bool(environ.get("MLFLOW_TRACKING_URI")),
              "wandb": bool(environ.get("WANDB_API_KEY") or environ.get("WANDB_PROJECT"))}  # fmt: skip
    return {"sync": False, **{key: wanted.get(key, False) for key in _INTEGRATIONS}}  # those of this version: below


def yolo_data(data: str, task: str, work: Path) -> str:
    """The dataset as Ultralytics takes it: a classification folder as is; for the other tasks a copy of the
    folder's data.yaml with `path` set to where the folder was staged (the yaml's own `path` named the
    machine it was made on)."""
    import yaml  # noqa: PLC0415

    root = Path(data)
    if task == "classify":
        if not (root / "train").is_dir():
            raise LauncherError(
                f"train.data {data} is not a classification dataset (it needs train/ and val/ folders).",
                "Lay it out as <root>/train/<class>/*.jpg and <root>/val/<class>/*.jpg.",
            )
        return str(root)
    if root.is_file() and root.suffix in (".yaml", ".yml"):
        file, root = root, root.parent
    else:
        found = [root / n for n in ("data.yaml", "data.yml") if (root / n).is_file()] or sorted(root.glob("*.yaml"))
        if not root.is_dir() or len(found) != 1:
            raise LauncherError(
                f"train.data {data} is not a YOLO dataset folder with one data.yaml.",
                "Point train.data at the folder holding data.yaml, images/ and labels/.",
            )
        file = found[0]
    try:
        described = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise LauncherError(
            f"{file} cannot be read as YAML: {exc}".splitlines()[0], "Fix the dataset's data.yaml."
        ) from None
    if not isinstance(described, dict) or "names" not in described or "train" not in described:
        raise LauncherError(
            f"{file} is not a YOLO data.yaml (it needs train:, val: and names:).", "Fix the dataset's data.yaml."
        )
    described["path"] = str(root.resolve())
    work.mkdir(parents=True, exist_ok=True)
    target = work / "data.yaml"
    target.write_text(yaml.safe_dump(described, sort_keys=False), encoding="utf-8")
    return str(target)


def model_gflops(model: str, imgsz: int) -> float | None:
    """GFLOPs of one forward pass of a YOLO model at `imgsz`, built from its model YAML (a .pt name: the YAML
    of the same name; a URL's file name too), offline; None when Ultralytics does not know the model."""
    os.environ.update({k: v for k, v in offline_environment(os.environ).items() if k not in os.environ})
    from ultralytics.nn.tasks import DetectionModel, guess_model_task, yaml_model_load  # noqa: PLC0415
    from ultralytics.utils.torch_utils import get_flops  # noqa: PLC0415

    try:
        cfg = yaml_model_load(str(Path(url_file_name(model)).with_suffix(".yaml")))  # a URL: its file's name
    except (FileNotFoundError, OSError):
        return None
    from ultralytics.nn import tasks  # noqa: PLC0415

    kind = {"segment": tasks.SegmentationModel, "classify": tasks.ClassificationModel, "pose": tasks.PoseModel,
            "obb": tasks.OBBModel}.get(yolo_task_of(model) or guess_model_task(cfg), DetectionModel)  # fmt: skip
    flops = get_flops(kind(cfg, verbose=False), imgsz)
    return float(flops) or None


def released_weights_url(name: str) -> str | None:
    """The download URL of Ultralytics' released weights `name` (`yolo11n.pt`) at the release this Ultralytics pins;
    None when it releases no such file. Used on the host at submit (launcher.staging.weights); ImportError without
    Ultralytics."""
    import inspect  # noqa: PLC0415

    from ultralytics.utils import downloads  # noqa: PLC0415

    if name not in downloads.GITHUB_ASSETS_NAMES:
        return None
    release = inspect.signature(downloads.attempt_download_asset).parameters["release"].default
    return f"https://github.com/{downloads.GITHUB_ASSETS_REPO}/releases/download/{release}/{name}"


def devices(gpus: int) -> Any:
    """Ultralytics' `device`: every visible GPU (a list: its own DDP), else the CPU."""
    if gpus > 1:
        return list(range(gpus))
    return 0 if gpus == 1 else "cpu"


def train_kwargs(cfg: TrainConfig, gpus: int, bf16: bool) -> dict[str, Any]:
    """The keys the spec set, for Ultralytics' train(): the same names, two translated values."""
    kwargs = cfg.model_dump(include=cfg.model_fields_set - {"engine", "model", "data", "task"}, exclude_none=True)
    if "multi_scale" in kwargs:
        kwargs["multi_scale"] = 0.5 if kwargs["multi_scale"] else 0.0
    if kwargs.get("amp", True) and gpus and bf16:
        kwargs["amp"] = "bf16"  # as the built-in trainer; also skips Ultralytics' AMP check, which downloads weights
    return {**kwargs, "device": devices(gpus), "exist_ok": True, "verbose": True}


def trim_results(save_dir: Path, epochs_done: int) -> None:
    """Drop results.csv rows past the checkpoint's epoch (an epoch written, then killed before last.pt)."""
    path = save_dir / "results.csv"
    if not path.is_file():
        return
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    rows = list(csv.reader(io.StringIO("".join(lines))))
    if not rows or "epoch" not in rows[0]:
        return
    col = rows[0].index("epoch")
    kept = [lines[0]] + [line for line, row in zip(lines[1:], rows[1:]) if row and float(row[col]) <= epochs_done]
    if len(kept) != len(lines):
        tmp = path.with_name(".results.csv.part")
        tmp.write_text("".join(kept), encoding="utf-8")
        os.replace(tmp, path)


EARLIER_RESULTS = ".results.earlier.csv"  # a hidden name: the checkpoint sync never uploads it


def epoch_offset(save_dir: Path) -> int:
    """Epochs a finished run had trained before this fine-tune continued it (results.json's `offset`), else 0."""
    try:
        offset = json.loads((save_dir / "results.json").read_text(encoding="utf-8")).get("offset", 0)
    except (OSError, ValueError, AttributeError):
        return 0
    return offset if isinstance(offset, int) and offset >= 0 else 0


def finished_epochs(save_dir: Path, saved: Mapping[str, Any]) -> tuple[int, int]:
    """(epochs trained, epochs aimed at) of a finished run: results.json's `epoch` and `epochs` (the launcher's
    count), else its final checkpoint's target (Ultralytics' `train_args`) for both. Fewer trained than aimed
    at: early stopping (`patience`) ended it."""
    try:
        written = json.loads((save_dir / "results.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        written = {}
    target = int((saved.get("train_args") or {}).get("epochs") or 0)
    epoch = written.get("epoch") if isinstance(written, dict) else None
    if isinstance(epoch, int) and epoch > 0:
        aimed = written.get("epochs")
        return epoch, aimed if isinstance(aimed, int) and aimed >= epoch else epoch
    return target, target


def _extend(save_dir: Path, done: int, aimed: int) -> None:
    """Prepare a finished run's folder for a fine-tune past its `aimed` epochs: the offset its new epochs count
    on from, and a copy of its results.csv (Ultralytics removes results.csv when a new training starts; the
    trainer puts the copy back). results.json keeps the old target until the first new epoch is saved, so a
    job stopped before that starts the fine-tune again."""
    trim_results(save_dir, done)
    if (save_dir / "results.csv").is_file():
        _copy_atomic(save_dir / "results.csv", save_dir / EARLIER_RESULTS)
    _write_json(save_dir / "results.json", {"epoch": done, "epochs": aimed, "offset": done})


def _copy_atomic(src: Path, dst: Path) -> None:
    tmp = dst.with_name(f".{dst.name}.part")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def clean_line(message: str, save_dir: Path, seen: set[str]) -> str | None:
    """An Ultralytics log line as the user should read it, or None to drop it: no container paths (its run
    folder is a temporary one of the job's: the files reach the checkpoint store, `launch ckpt pull` copies
    them out), no offline GitHub checks, and a repeated "not writable" warning once."""
    if "GitHub assets check failure" in message:
        return None  # offline by design (YOLO_OFFLINE): nothing to act on
    if "not writable" in message or "not writeable" in message:
        if "not writable" in seen:
            return None
        seen.add("not writable")
    if "tensorboard --logdir" in message:
        return (
            "TensorBoard: its event files reach the run's checkpoint store with each checkpoint; "
            "`launch ckpt pull` the run folder, then `tensorboard --logdir` on it"
        )
    return message.replace(str(save_dir), "the run's checkpoint store") if str(save_dir) in message else message


class _CleanLines:
    """A filter on Ultralytics' logger that applies clean_line to each record."""

    def __init__(self, save_dir: Path) -> None:
        self.save_dir, self.seen = save_dir, set()  # type: ignore[var-annotated]

    def filter(self, record: Any) -> bool:
        text = clean_line(record.getMessage(), self.save_dir, self.seen)
        if text is None:
            return False
        record.msg, record.args = text, ()
        return True


class _Stop:
    """SIGTERM: leave at once, unless the epoch's results are being written; then right after last.pt.
    In the process that launched Ultralytics' DDP workers: pass it on to them and wait (module docstring)."""

    def __init__(self) -> None:
        self.writing = False
        self.pending = False
        self.ddp_launcher = False  # this process only waits for torch.distributed.run
        self.received: int | None = None

    def handle(self, signum: int, _frame: Any) -> None:
        self.received = signum
        if self.ddp_launcher:
            for pid in children(os.getpid()):
                os.kill(pid, signum)
            return
        if self.writing:
            self.pending = True
            return
        raise SystemExit(128 + signum)

    def done_writing(self) -> None:
        self.writing = False
        if self.pending:
            print("[train] SIGTERM: last.pt of this epoch is saved; exiting", flush=True)
            raise SystemExit(128 + signal.SIGTERM)


STOP = _Stop()


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after "(comm)", which may hold spaces
        except (OSError, IndexError):
            continue  # it ended meanwhile
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _trainer_class(base: type) -> type:
    """Ultralytics' trainer for a task, writing at the run folder's top, atomically, SIGTERM-safe."""

    class Trainer(base):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            # Ultralytics' own test for "launch DDP workers from here" (several devices, no LOCAL_RANK yet);
            # in a worker this runs again, from the pickled class, and installs the handler there
            STOP.ddp_launcher = bool(getattr(self, "ddp", False))
            signal.signal(signal.SIGTERM, STOP.handle)
            if self.wdir.is_dir() and not any(self.wdir.iterdir()):
                self.wdir.rmdir()  # Ultralytics' weights/ folder: the checkpoints go to the run folder's top
            self.wdir = self.save_dir
            self.last, self.best = self.save_dir / "last.pt", self.save_dir / "best.pt"
            # epochs trained before this fine-tune of a finished run (0 otherwise); read from the folder, so a
            # resumed fine-tune and Ultralytics' DDP workers count on from the same epoch
            self.launcher_offset = epoch_offset(self.save_dir)
            earlier = self.save_dir / EARLIER_RESULTS
            if self.launcher_offset and earlier.is_file() and not self.csv.exists():
                _copy_atomic(earlier, self.csv)  # Ultralytics removes it when a new training starts: put it back

        def save_metrics(self, metrics: Any) -> None:
            STOP.writing = True  # from here through last.pt, one epoch's results
            self.epoch += self.launcher_offset  # results.csv counts on from the earlier epochs
            try:
                super().save_metrics(metrics)
            finally:
                self.epoch -= self.launcher_offset

        def save_model(self) -> Any:
            last, best = self.last, self.best
            self.last, self.best = last.with_name(".last.pt.part"), best.with_name(".best.pt.part")
            try:
                saved = super().save_model()
                if self.best.exists():
                    os.replace(self.best, best)
                os.replace(self.last, last)
            finally:
                self.last, self.best = last, best
            offset = self.launcher_offset
            _write_json(
                self.save_dir / "results.json",
                {"epoch": self.epoch + 1 + offset, "epochs": self.epochs + offset, "offset": offset},
            )
            STOP.done_writing()
            return saved

    Trainer.__name__ = Trainer.__qualname__ = f"Launcher{base.__name__}"
    return Trainer


def _write_json(path: Path, value: Mapping[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_text(json.dumps(value), encoding="utf-8")
    os.replace(tmp, path)


def _loop_started(trainer: Any) -> None:
    trainer.launcher_loop_s = -time.monotonic()


def _loop_ended(trainer: Any) -> None:
    """The seconds of the epoch's training loop alone: Ultralytics' epoch_time also holds its validation and save."""
    trainer.launcher_loop_s += time.monotonic()


LOOP_RATES: list[float] = []  # each epoch's training-loop images/s (all GPUs together), in this process


def measured(cfg: TrainConfig, gpus: int, device_name: str | None, wall_s: float, bf16: bool) -> dict[str, Any]:
    """What a finished run measured, in the trainer's results.json keys, so `launch estimate` takes it as a
    past run (launcher.estimate.record, keyed as `launch profile` keys the engine: model, imgsz, Ultralytics'
    batch, device, precision): the steady epochs' loop images/s per GPU. Empty when no epoch was timed here
    (Ultralytics' DDP workers time theirs in their own processes)."""
    steady = LOOP_RATES[1:] or LOOP_RATES
    if not steady:
        return {}
    world = max(gpus, 1)
    return {"model": cfg.model, "imgsz": cfg.image_size, "batch": cfg.batch_size, "world_size": world,
            "device": "cuda" if gpus else "cpu", "device_name": device_name,
            "precision": ("bf16" if bf16 else "amp") if gpus and cfg.amp else "fp32",
            "images_per_s": sum(steady) / len(steady) / world, "wall_time_s": round(wall_s, 3)}  # fmt: skip


def _summary(trainer: Any) -> None:
    """The launcher's epoch line (SageMaker's metric regexes read it), with the mAPs after it. time_s is the
    whole epoch (validation and checkpoint included); images_per_s is of its training loop alone, as the
    builtin trainer's (all GPUs together; `launch profile` reads it)."""
    if getattr(trainer, "tloss", None) is None or trainer.epoch >= trainer.epochs:
        return  # before the first epoch, or the final validation of best.pt
    metrics = dict(trainer.metrics or {})
    loss = trainer.tloss
    loss = sum(float(v) for v in loss.values()) if isinstance(loss, dict) else float(loss.sum())
    offset = getattr(trainer, "launcher_offset", 0)
    row = {"epoch": trainer.epoch + 1 + offset, "train_loss": loss,
           "val_loss": sum(v for k, v in metrics.items() if k.startswith("val/")),
           "lr": next(iter(trainer.lr.values()), 0.0), "time_s": trainer.epoch_time or 0.0}  # fmt: skip
    for name in ("top1", "top5"):  # classify: its accuracies are the builtin trainer's columns
        if f"metrics/accuracy_{name}" in metrics:
            row[name] = float(metrics[f"metrics/accuracy_{name}"])
    if getattr(trainer, "launcher_loop_s", 0) > 0:
        row["images_per_s"] = len(trainer.train_loader.dataset) / trainer.launcher_loop_s
        LOOP_RATES.append(row["images_per_s"])
    maps = " ".join(f"{k.removeprefix('metrics/')} {v:.4f}" for k, v in metrics.items() if k.startswith("metrics/mAP"))
    print(f"[train] {summary_line(row, trainer.epochs + offset)} {maps}".rstrip(), flush=True)


def _run(cfg: TrainConfig, save_dir: Path, environ: Mapping[str, str]) -> int:
    import torch  # noqa: PLC0415
    from ultralytics import YOLO  # noqa: PLC0415
    from ultralytics.utils import SETTINGS, USER_CONFIG_DIR  # noqa: PLC0415

    SETTINGS.update({key: value for key, value in _settings(environ).items() if key in SETTINGS})
    from ultralytics.utils import LOGGER  # noqa: PLC0415

    LOGGER.addFilter(_CleanLines(save_dir))
    _prepare_config_dir(Path(USER_CONFIG_DIR))
    os.environ.setdefault("MLFLOW_EXPERIMENT_NAME", "launcher")
    os.environ.setdefault("MLFLOW_RUN", environ.get("LAUNCHER_RUN_NAME", save_dir.name))
    started = time.monotonic()
    task = cfg.yolo_task()
    gpus = torch.cuda.device_count()
    kwargs = train_kwargs(cfg, gpus, bool(gpus) and torch.cuda.is_bf16_supported())
    data = yolo_data(cfg.data, task, Path(tempfile.mkdtemp(prefix="launcher-yolo-data-")))
    last = save_dir / "last.pt"
    model = YOLO(str(last) if last.is_file() else cfg.model, task=task)
    if last.is_file():
        saved = torch.load(last, map_location="cpu", weights_only=False)
        if saved.get("epoch", -1) < 0:  # Ultralytics' final checkpoint: the run finished
            done, aimed = finished_epochs(save_dir, saved)
            if cfg.epochs <= aimed:
                early = f" (early stopping ended it after {done} of {aimed})" if done < aimed else ""
                print(f"[train] this run already finished: {done} epochs trained{early}; nothing to do. Raise "
                      "train.epochs to train longer, or use a new run name to start over.", flush=True)  # fmt: skip
                return 0
            _extend(save_dir, done, aimed)
            kwargs["epochs"] = cfg.epochs - done
            print(f"[train] this run finished {done} epochs; train.epochs is {cfg.epochs}: training epochs "
                  f"{done + 1}-{cfg.epochs} from its last.pt (Ultralytics fine-tunes from it: a new optimizer and "
                  "warmup; its resume cannot extend a finished run)", flush=True)  # fmt: skip
        else:
            offset = epoch_offset(save_dir)
            trim_results(save_dir, saved["epoch"] + 1 + offset)
            print(
                f"[train] resuming from last.pt: epoch {saved['epoch'] + 1 + offset} done, Ultralytics' resume",
                flush=True,
            )
            kwargs["resume"] = str(last)
    model.add_callback("on_train_epoch_start", _loop_started)
    model.add_callback("on_train_epoch_end", _loop_ended)
    model.add_callback("on_fit_epoch_end", _summary)
    trainer = _trainer_class(model.task_map[task]["trainer"])
    previous = signal.signal(signal.SIGTERM, STOP.handle)
    try:
        model.train(trainer=trainer, data=data, save_dir=str(save_dir), **kwargs)
    except subprocess.CalledProcessError:  # Ultralytics' DDP workers ended non-zero
        if STOP.received is None:
            raise
        print("[train] SIGTERM: Ultralytics' DDP workers have stopped; exiting", flush=True)
        return 128 + STOP.received
    finally:
        signal.signal(signal.SIGTERM, previous)
    (save_dir / EARLIER_RESULTS).unlink(missing_ok=True)
    done = json.loads((save_dir / "results.json").read_text()) if (save_dir / "results.json").is_file() else {}
    name = torch.cuda.get_device_name(0) if gpus else None
    bf16 = bool(gpus) and torch.cuda.is_bf16_supported()
    _write_json(
        save_dir / "results.json",
        {**done, **measured(cfg, gpus, name, time.monotonic() - started, bf16), "finished": True},
    )
    print("[train] finished: last.pt and best.pt are in the run's checkpoint store", flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        cfg, save_dir = parse_args(sys.argv[1:] if argv is None else argv)
        os.environ.update(offline_environment(os.environ))
        save_dir.mkdir(parents=True, exist_ok=True)
        return _run(cfg, save_dir.resolve(), dict(os.environ))
    except LauncherError as exc:
        print(f"[train] error: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    except ImportError as exc:
        if "ultralytics" not in str(exc):
            raise
        print("[train] error: the ultralytics engine needs Ultralytics in the image: pip install "
              "'torch-launcher[ultralytics]', or build the image with `launch image build --engine ultralytics`.",
              file=sys.stderr, flush=True)  # fmt: skip
        return 2


if __name__ == "__main__":
    sys.exit(main())
