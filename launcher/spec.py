"""The job spec: one YAML file that every backend translates.

`JobSpec` is a tree of pydantic v2 models with `extra="forbid"`, so a typo is
an error with a suggestion rather than a silently ignored key. Loading a file
(`load_spec`) does, in order: YAML parse (syntax errors give the line), a
mapping check, `${VAR}` / `${VAR:-default}` interpolation from the
environment, `--set a.b=c` overrides, validation, resolution of relative local
paths against the working directory. Each backend's options section is
validated by the model that backend owns in `launcher.backends.registry.check_sections`
(the CLI and `Launcher.plan` call it), so loading a spec imports no backend.

All environment and filesystem reads happen here, at load time, so that
`Backend.plan(spec)` can stay pure.
"""

from __future__ import annotations

import datetime
import difflib
import hashlib
import json
import math
import os
import re
import shlex
import stat
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from launcher.azure_identity import IDENTITY_VARIABLE
from launcher.contract import BUILTIN_DATASETS, ENTRYPOINT_VARIABLES
from launcher.errors import SpecError
from launcher.model_names import check_model, check_yolo_model, yolo_task_of
from launcher.spec_sweep import Sweep, check_trials
from launcher.storage import REMOTE_SCHEMES

__all__ = [
    "DEFAULT_IMAGE",
    "BUILTIN_DATASETS",
    "TrainConfig",
    "ENGINES",
    "TASKS",
    "ULTRALYTICS_KEYS",
    "Resources",
    "CheckpointConfig",
    "CodeConfig",
    "Limits",
    "Recovery",
    "Sweep",
    "JobSpec",
    "LAUNCHER_ENV",
    "load_spec",
    "parse_duration",
    "parse_set",
    "format_validation_error",
    "refuse_azure_only",
    "host_system_path",
]

DEFAULT_IMAGE = "torch-launcher-train:latest"
BACKEND_SECTIONS = ("local", "aws", "gcp", "azure", "slurm")
_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,46}[a-z0-9])?$")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DURATION_RE = re.compile(r"^(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?$")  # ASCII digits: int() would read '٣'
# Names the image's entrypoint relies on: overriding them would hijack what runs before (or instead of) the job.
# The LAUNCHER_* ones are those the entrypoint sets for the job (launcher.contract); others (a secret named
# LAUNCHER_KIT_TOKEN, LAUNCHER_DATA_DIR for the cache) are the user's to set.
_RESERVED_ENV = re.compile(r"^(LD_[A-Z_]*|PATH|PYTHONPATH|PYTHONHOME|PYTHONSTARTUP|PYTHONSAFEPATH|PYTHONINSPECT|"
                           + "|".join(sorted(ENTRYPOINT_VARIABLES)) + r")$")
# Names the launcher itself gives a job, its identity: the lease a job renews (a job that renews another's stops
# uploading checkpoints), the Azure identity it runs as. (The aws backend refuses a region other than its own.)
LAUNCHER_ENV = {
    "LAUNCHER_JOB_ID": "the job's lease identity, set by the launcher",
    IDENTITY_VARIABLE: "set by the launcher from azure.identity",
}
# Docker's reference grammar (distribution/reference): lowercase path components, an optional host[:port], :tag, @digest.
_IMAGE_RE = re.compile(
    r"^(?:(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?))*(?::[0-9]{1,5})?/)?"
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$"
)
MAX_IMAGE = 255
_GPU_TYPE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,254}$")
# https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html, and GCS's alike
_IP_RE = re.compile(r"^[0-9]{1,3}(\.[0-9]{1,3}){3}$")
# Characters no spec value needs and that hide what a value says: controls (newline, NUL, ESC) and
# invisible or direction-changing format characters (zero-width space, right-to-left override).
_INVISIBLE = re.compile("[\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff]")
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f]")
_SURROGATE = re.compile("[\ud800-\udfff]")  # half of a UTF-16 pair ("\udc80" in YAML): no text encodes it
_CREDENTIALS = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*@")
_VAR_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

# Bounds on what a spec file may be, so that hostile input fails fast instead of
# hanging or exhausting memory: a spec is a few hundred bytes of a few levels.
MAX_SPEC_BYTES = 1 << 20
MAX_DEPTH = 32
MAX_NODES = 100_000  # values after expanding YAML aliases (a "billion laughs" file stops here)
MAX_STRING = 64 * 1024  # any one value, after ${VAR} interpolation and --set
MAX_ENV_VALUE = 32 * 1024  # a container's environment is no place for a blob; Linux caps one string at 128 KiB
MAX_ENV_TOTAL = 128 * 1024
MAX_ENV_NAME = 256
URI_SCHEMES = REMOTE_SCHEMES
# Azure ML also mounts its own kinds of location (see launcher/backends/azure.py); other backends refuse them at plan time.
AZURE_URI_SCHEMES = ("azureml://", "wasbs://", "abfss://")
_AZURE_BLOB_HTTPS = re.compile(r"^https://[a-z0-9]+\.(blob|dfs)\.core\.windows\.net/")


def _number(value: Any) -> Any:
    """Refuse booleans and non-finite floats where a number is expected (pydantic would take true as 1)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a number, not {str(value).lower()}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"expected a finite number, not {value}")
    return value


def _env_value(value: Any) -> str:
    if value is None:
        raise ValueError("has no value; write '' for an empty string, or remove the key")
    if not isinstance(value, (str, int, float, datetime.date)):
        raise ValueError(f"is a {_kind(value)}; an environment value must be a string or a number")
    text = _arg(value)
    if len(text) > MAX_ENV_VALUE:
        raise ValueError(f"is {len(text)} characters; an environment value may have at most {MAX_ENV_VALUE}")
    return text


EnvValue = Annotated[str, BeforeValidator(_env_value)]
Int = Annotated[int, BeforeValidator(_number)]
Float = Annotated[float, BeforeValidator(_number)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


MAX_DURATION = 365 * 86400


def parse_duration(value: str | int | float) -> int:
    """'4h', '1h30m', '90s', '2d' or a number of seconds -> seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like '4h', '90m' or a number of seconds")
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or value <= 0:
            raise ValueError("a duration must be a positive number of seconds, like '4h' or 3600")
        if value < 1 or value != int(value):  # int() would make 0.5 no limit at all, and 90.5 90
            raise ValueError(f"{value} is not a whole number of seconds; write it like 90 or '90s'")
        if value > MAX_DURATION:
            raise ValueError(f"a duration must be at most {MAX_DURATION // 86400} days")
        return int(value)
    if len(str(value)) > 64:
        raise ValueError("this is not a duration; write it like '4h', '1h30m', '90m' or '3600s'")
    match = _DURATION_RE.match(str(value).strip().lower())
    if not value or not match or not any(match.groups()):
        raise ValueError(f"'{value}' is not a duration; write it like '4h', '1h30m', '90m' or '3600s'")
    d, h, m, s = (int(g or 0) for g in match.groups())
    seconds = ((d * 24 + h) * 60 + m) * 60 + s
    if seconds <= 0:
        raise ValueError("a duration must be positive")
    if seconds > MAX_DURATION:
        raise ValueError(f"a duration must be at most {MAX_DURATION // 86400} days")
    return seconds


# What parse_duration accepts, for `launch schema`: seconds, or a string _DURATION_RE matches after strip().lower()
DURATION_SCHEMA = {
    "anyOf": [
        {"type": "integer", "exclusiveMinimum": 0, "maximum": MAX_DURATION},
        {"type": "string", "maxLength": 64, "pattern": r"^\s*(?=[0-9])([0-9]+[dD])?([0-9]+[hH])?([0-9]+[mM])?([0-9]+[sS])?\s*$"},
        {"type": "null"},
    ]
}


ENGINES = ("builtin", "ultralytics")
TASKS = ("detect", "segment", "classify", "pose", "obb")
_ALL_TASKS = frozenset(TASKS)
_NOT_CLASSIFY = _ALL_TASKS - {"classify"}
# The keys only the ultralytics engine takes, with the tasks they mean something for (Ultralytics' cfg/default.yaml).
ULTRALYTICS_KEYS: dict[str, frozenset[str]] = {
    "time": _ALL_TASKS, "single_cls": _NOT_CLASSIFY, "rect": _NOT_CLASSIFY, "close_mosaic": _NOT_CLASSIFY,
    "freeze": _ALL_TASKS, "nbs": _ALL_TASKS, "warmup_momentum": _ALL_TASKS, "warmup_bias_lr": _ALL_TASKS,
    "box": _NOT_CLASSIFY, "cls": _NOT_CLASSIFY, "dfl": _NOT_CLASSIFY, "pose": frozenset({"pose"}),
    "kobj": frozenset({"pose"}), "overlap_mask": frozenset({"segment"}), "mask_ratio": frozenset({"segment"}),
    "dropout": frozenset({"classify"}), "hsv_h": _ALL_TASKS, "hsv_s": _ALL_TASKS, "hsv_v": _ALL_TASKS,
    "degrees": _NOT_CLASSIFY, "translate": _NOT_CLASSIFY, "shear": _NOT_CLASSIFY, "perspective": _NOT_CLASSIFY,
    "flipud": _NOT_CLASSIFY, "fliplr": _ALL_TASKS, "mosaic": _NOT_CLASSIFY, "mixup": _NOT_CLASSIFY,
    "copy_paste": frozenset({"segment", "obb"}), "plots": _ALL_TASKS,
}  # fmt: skip


# bounds before the BeforeValidator, so that an Optional's JSON Schema has minimum/maximum (see Resources.cpus)
_Unit = Annotated[float, Field(ge=0.0, le=1.0), BeforeValidator(_number)]
_Gain = Annotated[float, Field(ge=0.0, le=1000.0), BeforeValidator(_number)]


def engine_keys() -> dict[str, dict[str, list[str]]]:
    """Which train: keys each engine takes, per task (`launch schema` shows it as x-engine-keys)."""
    common = [k for k in TrainConfig.model_fields if k not in ULTRALYTICS_KEYS]
    ultra = {task: sorted([*common, *(k for k, tasks in ULTRALYTICS_KEYS.items() if task in tasks)]) for task in TASKS}
    return {"builtin": {"classify": sorted(common)}, "ultralytics": ultra}


class TrainConfig(_Model):
    """The trainer's knobs, named as in the Ultralytics training guide.

    `engine` picks the trainer: `builtin` (torchvision classifiers, launcher.runtime.train) or `ultralytics`
    (YOLO, launcher.runtime.train.ultralytics_engine), which gets the keys a spec sets under the same names,
    Ultralytics' own defaults for the rest. A key the chosen engine or task has no use for is refused.
    """

    model_config = ConfigDict(**_Model.model_config, json_schema_extra=lambda schema, _cls: schema.update(
        description=schema.get("description", "") + "\n\nKeys by engine and task: " + json.dumps(engine_keys())))

    engine: Literal["builtin", "ultralytics"] = Field("builtin", description="the trainer: builtin (torchvision classifiers) or ultralytics (YOLO; the 'ultralytics' extra, AGPL-3.0)")
    task: Literal["detect", "segment", "classify", "pose", "obb"] | None = Field(
        None, description="ultralytics: the YOLO task (default: from the model name, -seg/-cls/-pose/-obb, else detect); builtin: classify only")
    model: str = Field("resnet18", description="builtin: a torchvision classification model name; ultralytics: a YOLO model YAML (from scratch) or .pt weights, like yolo11n.yaml (checked when the spec loads)")
    data: str = Field("digits", description="ImageFolder root (train/, val/; a relative path is read from the spec "
                                         "file's folder), s3://, gs://, az:// URI or a built-in dataset: digits")
    epochs: Int = Field(10, ge=1, le=100_000, description="number of epochs to train")
    batch: Int = Field(32, le=65_536, description="batch size per GPU (per process); -1 = AutoBatch")
    imgsz: Int = Field(224, ge=8, le=4096, description="training and validation image size (pixels)")
    fraction: Float = Field(1.0, ge=1e-4, le=1.0,
                            description="fraction of the training set to use (class-stratified, at least 0.0001)")
    scale: Float = Field(0.5, ge=0.0, lt=1.0, description="random-resized-crop scale gain: crops cover 1-scale..1 of the image")
    multi_scale: bool = Field(False, description="pick a random image size in [0.5, 1.5] x imgsz per batch")
    cache: Literal["ram", "disk", False] = Field(False, description="cache decoded images: ram, disk or false")
    amp: bool = Field(True, description="automatic mixed precision (bf16 where supported, else fp16)")
    pretrained: bool | str = Field(False, description="true: torchvision weights; a path: a local state dict "
                                                      "(a relative one is read from the spec file's folder)")
    optimizer: Literal["SGD", "Adam", "AdamW", "NAdam", "RAdam", "RMSProp", "auto"] = "auto"
    lr0: Float = Field(0.01, gt=0.0, le=100.0, description="initial learning rate")
    lrf: Float = Field(0.01, gt=0.0, le=1.0, description="final learning rate = lr0 * lrf")
    momentum: Float = Field(0.937, ge=0.0, lt=1.0)
    weight_decay: Float = Field(0.0005, ge=0.0, le=100.0)
    warmup_epochs: Float = Field(3.0, ge=0.0, le=100_000)
    cos_lr: bool = Field(False, description="cosine instead of linear learning-rate decay")
    patience: Int = Field(100, ge=0, le=100_000, description="epochs without improvement before stopping (0 = never)")
    save_period: Int = Field(-1, ge=-1, le=100_000, description="also save epoch-N.pt every N epochs (-1 = off)")
    workers: Int = Field(8, ge=0, le=1024, description="DataLoader workers per process, at most its share of the cores; on CPU only the cores its compute threads leave free")
    seed: Int = Field(0, ge=0, le=2**32 - 1, description="random seed (numpy takes 0 .. 2**32-1)")
    # ultralytics engine only (None: Ultralytics' default); the task each one serves is in ULTRALYTICS_KEYS
    time: Annotated[float, Field(gt=0.0, le=100_000), BeforeValidator(_number)] | None = Field(None, description="ultralytics: hours to train; overrides epochs")
    single_cls: bool | None = Field(None, description="ultralytics: train every class as one")
    rect: bool | None = Field(None, description="ultralytics: rectangular batches")
    close_mosaic: Annotated[int, Field(ge=0, le=100_000), BeforeValidator(_number)] | None = Field(None, description="ultralytics: no mosaic in the last N epochs")
    freeze: Annotated[int, Field(ge=0, le=1000), BeforeValidator(_number)] | None = Field(None, description="ultralytics: freeze the first N layers")
    nbs: Annotated[int, Field(ge=1, le=65_536), BeforeValidator(_number)] | None = Field(None, description="ultralytics: nominal batch size (gradient accumulation)")
    warmup_momentum: _Unit | None = None
    warmup_bias_lr: _Gain | None = None
    box: _Gain | None = Field(None, description="ultralytics: box loss gain")
    cls: _Gain | None = Field(None, description="ultralytics: class loss gain")
    dfl: _Gain | None = Field(None, description="ultralytics: distribution focal loss gain")
    pose: _Gain | None = Field(None, description="ultralytics pose: keypoint loss gain")
    kobj: _Gain | None = Field(None, description="ultralytics pose: keypoint objectness loss gain")
    overlap_mask: bool | None = Field(None, description="ultralytics segment: merge instance masks while training")
    mask_ratio: Annotated[int, Field(ge=1, le=64), BeforeValidator(_number)] | None = Field(None, description="ultralytics segment: mask downsample ratio")
    dropout: _Unit | None = Field(None, description="ultralytics classify: head dropout")
    hsv_h: _Unit | None = None
    hsv_s: _Unit | None = None
    hsv_v: _Unit | None = None
    degrees: Annotated[float, Field(ge=0.0, le=180.0), BeforeValidator(_number)] | None = None
    translate: _Unit | None = None
    shear: Annotated[float, Field(ge=0.0, le=180.0), BeforeValidator(_number)] | None = None
    perspective: Annotated[float, Field(ge=0.0, le=0.001), BeforeValidator(_number)] | None = None
    flipud: _Unit | None = None
    fliplr: _Unit | None = None
    mosaic: _Unit | None = None
    mixup: _Unit | None = None
    copy_paste: _Unit | None = Field(None, description="ultralytics segment, obb: copy-paste augmentation")
    plots: bool | None = Field(None, description="ultralytics: write plots into the run folder")

    @field_validator("model")
    @classmethod
    def _model(cls, value: str, info: ValidationInfo) -> str:
        if info.data.get("engine") == "ultralytics":
            return check_yolo_model(value, info.data.get("task"))
        return check_model(value)  # shipped names (launcher.model_names): no torchvision import at load time

    @field_validator("pretrained")
    @classmethod
    def _pretrained(cls, value: bool | str) -> bool | str:
        if isinstance(value, str) and (why := host_system_path(value)) is not None:
            raise ValueError(f"{value[:80]!r} {why}; name a weights file of your own")
        if isinstance(value, str) and _unknown_home(value):
            check_location(value, "weights")
        return value

    @field_validator("data")
    @classmethod
    def _data(cls, value: str) -> str:
        if value in BUILTIN_DATASETS:
            return value
        return check_location(value, "a dataset")

    @field_validator("cache", mode="before")
    @classmethod
    def _cache(cls, value: Any) -> Any:
        if value in (None, "false", "False", "off", "none", False):
            return False
        if value is True or value == "true":
            return "ram"
        return value

    @field_validator("batch")
    @classmethod
    def _batch(cls, value: int) -> int:
        if value == 0 or value < -1:
            raise ValueError("batch must be a positive number of images, or -1 for AutoBatch")
        return value

    @model_validator(mode="after")
    def _engine_keys(self) -> "TrainConfig":
        """Keys the chosen engine or task has no use for are refused, not passed through and ignored."""
        # a key is given when the spec sets it; None is every engine-only key's "not set" (model_dump writes it)
        given = {key for key in self.model_fields_set if getattr(self, key) is not None}
        if self.engine == "builtin":
            if self.task not in (None, "classify"):
                raise ValueError(f"the builtin engine trains classifiers only, not '{self.task}'; "
                                 "set train.engine: ultralytics for YOLO detection, segmentation, pose or obb")
            extra = sorted(given & ULTRALYTICS_KEYS.keys())
            if extra:
                raise ValueError(f"the builtin engine takes no '{extra[0]}' (an Ultralytics key); "
                                 "set train.engine: ultralytics, or remove it")
            return self
        if "model" not in given:
            raise ValueError("the ultralytics engine needs train.model, like yolo11n.yaml (from scratch) "
                             "or yolo11n.pt (weights)")
        if "data" not in given or self.data in BUILTIN_DATASETS:
            raise ValueError("the ultralytics engine needs train.data: a YOLO dataset folder with its data.yaml "
                             "(local, s3://, gs:// or az://)")
        task = self.yolo_task()
        for key in sorted(given & ULTRALYTICS_KEYS.keys()):
            if task not in ULTRALYTICS_KEYS[key]:
                raise ValueError(f"the ultralytics engine takes '{key}' for "
                                 f"{'/'.join(sorted(ULTRALYTICS_KEYS[key]))} only, not for task {task}; remove it")
        return self

    @property
    def image_size(self) -> int:
        """The image size the engine trains at: imgsz, or for the ultralytics engine Ultralytics' 640 unless set."""
        if self.engine == "ultralytics" and "imgsz" not in self.model_fields_set:
            return 640
        return self.imgsz

    @property
    def batch_size(self) -> int:
        """The batch the engine trains with: batch, or for the ultralytics engine Ultralytics' 16 unless set
        (there it is the batch of all GPUs together, split among them)."""
        if self.engine == "ultralytics" and "batch" not in self.model_fields_set:
            return 16
        return self.batch

    def unused(self) -> list[str]:
        """Keys the spec sets that this run will never use, each in one line with the fix (no error: the run
        is valid). Ultralytics turns mosaic off for the last `close_mosaic` epochs (default 10), so a run of
        that many epochs or fewer never uses `mosaic`."""
        if self.engine != "ultralytics" or not self.mosaic:
            return []
        closing = 10 if self.close_mosaic is None else self.close_mosaic
        if self.epochs > closing:
            return []
        return [f"train.mosaic {self.mosaic:g} is never used: Ultralytics turns mosaic off for the last close_mosaic "
                f"({closing}) epochs and this run has {self.epochs}; set close_mosaic below {self.epochs} to use it, "
                "or remove mosaic"]

    def yolo_task(self) -> str:
        """The Ultralytics task: train.task, else the model name's suffix (-seg, -cls, -pose, -obb), else detect."""
        return self.task or yolo_task_of(self.model)

    def to_args(self) -> list[str]:
        """The trainer's command-line form: short `key=value` arguments. The ultralytics engine gets the keys
        the spec sets (Ultralytics' defaults for the others), with the task, model, data and epochs always."""
        if self.engine == "ultralytics":
            keys = {k for k in self.model_fields_set if getattr(self, k) is not None} | {"engine", "model", "data", "epochs"}
            values = {**self.model_dump(include=keys), "task": self.yolo_task()}
            return [f"{k}={_arg(v)}" for k, v in values.items() if v is not None]
        return [f"{k}={_arg(v)}" for k, v in self.model_dump(exclude={"engine", "task", *ULTRALYTICS_KEYS}).items()]


def _arg(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _kind(value: Any) -> str:
    return {dict: "mapping", list: "list"}.get(type(value), type(value).__name__)


# The host's own folders: mounted into a job (read-write for a checkpoint store) or uploaded as its data, they
# would expose or damage the machine. /root, /home, /tmp, /srv, /mnt, /data and the like stay the user's.
SYSTEM_FOLDERS = ("/etc", "/proc", "/sys", "/dev", "/boot", "/run", "/var/run", "/usr", "/bin", "/sbin", "/lib",
                  "/lib32", "/lib64", "/libx32")  # fmt: skip


def host_system_path(value: str) -> str | None:
    """Why a local path is the host's own (its root, a system folder, a device, pipe or socket), or None."""
    if "://" in value or not value.strip() or "\0" in value:
        return None
    for path in dict.fromkeys((os.path.normpath(os.path.abspath(value)), os.path.realpath(value))):
        if path == "/":
            return "is the host's root folder"
        folder = next((f for f in SYSTEM_FOLDERS if path == f or path.startswith(f + "/")), None)
        if folder is not None:
            return f"is in {folder}, a system folder of the host"
    try:
        mode = os.stat(value).st_mode
    except (OSError, ValueError):
        return None
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
        return "is a device, pipe or socket, not a file or folder"
    return None


_SCHEME_TYPO = re.compile(r"(?:^|/)(s3|gs|az|azureml|wasbs|abfss|https?):/(?!/)")


def refuse_azure_only(spec: "JobSpec", backend: str) -> None:
    """Azure ML's own kinds of location (azureml://, wasbs://, abfss://, https://ACCOUNT.blob...) on a backend
    that cannot mount them: one SpecError naming the key (else they read as a folder, or a 'local path')."""
    for key, value in (("train.data", spec.data()), ("checkpoint.uri", spec.checkpoint.uri)):
        if value and (value.startswith(AZURE_URI_SCHEMES) or _AZURE_BLOB_HTTPS.match(value)):
            raise SpecError(f"{key}: {value[:100]!r} is an Azure ML location, which only the azure backend mounts; "
                            f"the {backend} backend cannot read it.",
                            "Use az://CONTAINER/prefix (the account in AZURE_STORAGE_ACCOUNT), or run on -b azure.")


def _unknown_home(value: str) -> bool:
    """`~name/...` of a user this machine does not know (Path.expanduser would raise RuntimeError)."""
    return value.startswith("~") and os.path.expanduser(value) == value


def check_location(value: str, what: str) -> str:
    """A local path or an s3://, gs://, az:// URI with a bucket and no '..' segment; else ValueError."""
    if "\0" in value:
        raise ValueError("contains a NUL character")
    if _unknown_home(value):
        user = value[1:].split("/", 1)[0][:40]
        raise ValueError(f"starts with ~{user}, but there is no home folder for {user or 'the current user'} here; "
                         "write the full path")
    if _CREDENTIALS.match(value):  # the message never repeats the value: it holds a secret
        raise ValueError("the URI has credentials in it (user:password@); put credentials in secrets:, not in the URI")
    if "://" not in value:
        if not value.strip():
            raise ValueError(f"is empty; name {what}: a folder, or an s3://, gs:// or az:// URI")
        if (typo := _SCHEME_TYPO.search(value)) is not None:  # 's3:/bucket/x' would be read as a relative folder
            raise ValueError(f"{typo.group(1)}:/ is missing a '/'; write it as {typo.group(1)}://BUCKET/prefix")
        if (why := host_system_path(value)) is not None:
            raise ValueError(f"{value[:80]!r} {why}; name a folder of your own for {what}")
        return value
    scheme = value.split("://", 1)[0] + "://"
    if _AZURE_BLOB_HTTPS.match(value):
        scheme = "https://"
    elif scheme not in URI_SCHEMES + AZURE_URI_SCHEMES:
        raise ValueError(f"{value!r} has scheme {scheme!r}, which is not supported; use s3://, gs://, az:// or a local folder")
    bucket, _, key = value[len(scheme):].partition("/")
    if not bucket:
        raise ValueError(f"{value!r} names no bucket; write it as {scheme}BUCKET/prefix")
    if ".." in key.split("/") or "." in key.split("/"):
        raise ValueError(f"{value!r} has a '.' or '..' segment; write the prefix without them")
    odd = next((c for c in "?#%\\ \t" if c in value), None)
    if odd is not None:
        raise ValueError(f"{value!r} has a {odd!r}: a store URI takes no query, fragment, percent-encoding, "
                         "backslash or space; write it as " + scheme + "BUCKET/prefix")
    if scheme in ("s3://", "gs://") and (".." in bucket or _IP_RE.match(bucket) or not bucket[-1:].isalnum()
                                         or ".-" in bucket or "-." in bucket):
        raise ValueError(f"{value[:100]!r}: the bucket {bucket[:63]!r} breaks the bucket naming rules (no two adjacent "
                         "periods, not an IP address, ending with a letter or digit); name the bucket as it is named")
    bad_bucket = (scheme in URI_SCHEMES and not _BUCKET_RE.match(bucket)) or not bucket.isascii()
    if "//" in key or key.startswith("/") or bad_bucket:
        raise ValueError(f"{value!r} is not a bucket and prefix; write it as {scheme}BUCKET/prefix, "
                         "the bucket in lowercase letters, digits, '.', '-', and no empty segment")
    return value


# What Resources._memory accepts, for `launch schema`: GiB, or a string like '64Gi' (its regex, on value.lower())
MEMORY_SCHEMA = {
    "anyOf": [
        {"type": "number", "exclusiveMinimum": 0, "maximum": 65_536},
        {"type": "string", "pattern": r"^\s*[0-9.]+\s*([gG]([iI][bB]?|[bB])?)?\s*$"},
        {"type": "null"},
    ]
}


class Resources(_Model):
    gpus: Int = Field(0, ge=0, le=16, description="GPUs per node (0 = CPU only)")
    nodes: Int = Field(1, ge=1, le=512, description="number of machines")
    gpu_type: str | None = Field(None, description="T4, A10G, L4, V100, A100, A100-80GB, H100, ...")
    spot: bool = Field(False, description="use spot / preemptible / low-priority capacity")
    # An Optional's bounds go before the BeforeValidator: on Field (or after it) pydantic writes them into
    # the JSON Schema as raw gt/le keys, which JSON Schema does not know (tests/launcher/test_schema.py)
    cpus: Annotated[int, Field(ge=1, le=4096), BeforeValidator(_number)] | None = Field(None, description="minimum vCPUs per node")
    memory: Annotated[
        Annotated[float, Field(gt=0, le=65_536), BeforeValidator(_number)] | None, WithJsonSchema(MEMORY_SCHEMA)
    ] = Field(None, description="minimum memory per node in GiB ('64Gi' or 64)")

    @field_validator("memory", mode="before")
    @classmethod
    def _memory(cls, value: Any) -> Any:
        if isinstance(value, str):
            match = re.fullmatch(r"\s*([0-9.]+)\s*(gi|gib|g|gb)?\s*", value.lower())
            if not match:
                raise ValueError(f"'{value}' is not a memory size; write it like '64Gi' or 64")
            return float(match.group(1))
        return value

    @field_validator("gpu_type")
    @classmethod
    def _gpu_type(cls, value: str | None) -> str | None:
        if value is not None and not _GPU_TYPE_RE.match(value):
            raise ValueError(f"{value[:40]!r} is not a GPU type; write it like T4, A100 or A100-80GB")
        return value.upper() if value else value


class CheckpointConfig(_Model):
    uri: str | None = Field(None, description="local path (a relative one is read from the spec file's folder), "
                                              "s3://, gs:// or az://container/prefix")
    every: Int = Field(1, ge=1, le=100_000, description="epochs between checkpoint uploads")
    keep: Int = Field(3, ge=1, le=10_000, description="how many checkpoints to keep in the store")

    @field_validator("uri")
    @classmethod
    def _uri(cls, value: str | None) -> str | None:
        return None if value is None else check_location(value, "a checkpoint store")


MAX_CODE_BYTES = 100 * 1024 * 1024  # code.max_size's default: a source folder, not a dataset
_SIZE_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(b|k|kb|kib|m|mb|mib|g|gb|gib)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1000, "kib": 1024, "m": 1024**2, "mb": 1000**2, "mib": 1024**2,
               "g": 1024**3, "gb": 1000**3, "gib": 1024**3}  # fmt: skip


# What parse_size accepts, for `launch schema`: bytes, or a string like '100MiB' (_SIZE_RE, case-insensitive)
SIZE_SCHEMA = {
    "anyOf": [
        {"type": "integer", "minimum": 1, "maximum": 10 * 1024**3},
        {"type": "string", "maxLength": 64,
         "pattern": r"^\s*[0-9]+(\.[0-9]+)?\s*([bB]|[kKmMgG]([bB]|[iI][bB])?)?\s*$"},
    ]
}


def parse_size(value: Any) -> int:
    """'100MiB', '50MB', '1GiB', '2g' or a number of bytes -> bytes."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError("expected a size like '100MiB', '1GiB' or a number of bytes")
    match = _SIZE_RE.match(str(value)[:64])
    if not match:
        raise ValueError(f"'{str(value)[:64]}' is not a size; write it like '100MiB', '1GiB' or a number of bytes")
    return int(float(match.group(1)) * _SIZE_UNITS[(match.group(2) or "").lower()])


class CodeConfig(_Model):
    """`code:`: a folder of the user's, shipped with the job by content (launcher.staging.code)."""

    dir: str = Field(".", description="the folder to ship; a relative path is read from the spec file's folder")
    exclude: list[str] = Field(default_factory=list, description="more gitignore-style patterns to leave out (beside .gitignore and .launcherignore)")
    allow: list[str] = Field(default_factory=list, description="gitignore-style patterns of files that look like credentials but are meant to ship")
    max_size: Annotated[int, WithJsonSchema(SIZE_SCHEMA)] = Field(
        MAX_CODE_BYTES, ge=1, le=10 * 1024**3, description="refuse a larger folder ('100MiB', '1GiB' or bytes)"
    )
    requirements: str | None = Field(None, description="a requirements file in the folder: packages the image lacks, installed at container start")

    @field_validator("max_size", mode="before")
    @classmethod
    def _size(cls, value: Any) -> Any:
        return parse_size(value)

    @field_validator("dir")
    @classmethod
    def _dir(cls, value: str) -> str:
        return check_location(value, "code") if _unknown_home(value) or host_system_path(value) else value

    @field_validator("exclude", "allow")
    @classmethod
    def _patterns(cls, value: list[str]) -> list[str]:
        for pattern in value:
            if not pattern.strip() or "\0" in pattern or "\n" in pattern:
                raise ValueError(f"{pattern!r} is not a pattern; write gitignore-style patterns like 'data/' or '*.ckpt'")
        return value

    @field_validator("requirements")
    @classmethod
    def _requirements(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = value.replace("\\", "/").split("/")
        if not value.strip() or value.startswith("/") or ".." in parts or "\0" in value:
            raise ValueError(f"{value!r} must be a file inside the code folder, like requirements.txt")
        return value


class Limits(_Model):
    max_runtime: Annotated[int | None, WithJsonSchema(DURATION_SCHEMA)] = Field(
        None, description="hard runtime limit: '4h', '1h30m', '2d', '90s' or seconds (seconds once loaded)"
    )
    max_cost: Annotated[float, Field(gt=0, le=10_000_000), BeforeValidator(_number)] | None = Field(
        None, description="budget in USD; submit refuses estimates above it"
    )

    @field_validator("max_runtime", mode="before")
    @classmethod
    def _runtime(cls, value: Any) -> Any:
        return None if value is None else parse_duration(value)


RETRYABLE_ENDINGS = ("preempted", "capacity", "node_failure")


class Backoff(_Model):
    """The wait between attempts after a capacity error: initial x factor**(n-1), at most `max`."""

    initial: Annotated[int, WithJsonSchema(DURATION_SCHEMA)] = Field(30, description="first wait: '30s', '2m' or seconds")
    max: Annotated[int, WithJsonSchema(DURATION_SCHEMA)] = Field(900, description="longest wait: '15m' or seconds")
    factor: Float = Field(2.0, ge=1.0, le=10.0, description="each further capacity error in a row multiplies the wait by this")

    @field_validator("initial", "max", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return parse_duration(value)

    @model_validator(mode="after")
    def _order(self) -> "Backoff":
        if self.max < self.initial:
            raise ValueError(f"max ({self.max} s) is shorter than initial ({self.initial} s); raise max or lower initial")
        return self

    def delay(self, failures: int) -> int:
        """Seconds to wait after `failures` capacity errors in a row (1, 2, ...)."""
        return int(min(self.max, self.initial * self.factor ** max(0, failures - 1)))


class Recovery(_Model):
    """`recovery:`: resubmit the run when a job ends for a reason worth retrying (launcher.runs.supervisor)."""

    max_attempts: Int = Field(3, ge=1, le=100, description="total submissions of this run, the first included")
    on: list[Literal["preempted", "capacity", "node_failure"]] = Field(
        default_factory=lambda: list(RETRYABLE_ENDINGS),
        description="endings that are retried; a user error (the program's exit code, a bad spec) never is")
    fallback: list[str] = Field(default_factory=list, description="backends to move to, in order, when one keeps failing (default: only -b's)")
    after_failures: Int = Field(2, ge=1, le=100, description="move to the next backend after this many retryable failures in a row")
    backoff: Backoff = Field(default_factory=Backoff)

    @field_validator("fallback")
    @classmethod
    def _fallback(cls, value: list[str]) -> list[str]:
        names = [name.strip().lower() for name in value]
        twice = next((name for name in names if names.count(name) > 1), None)
        if twice:
            raise ValueError(f"{twice} is listed twice; keep one")
        return names  # whether each is an installed backend: launcher.backends.registry.check_sections


def _or_a_folder(schema: dict[str, Any]) -> None:
    """`launch schema`: code: also takes the short form, a folder (`code: .`)."""
    schema["anyOf"] = [{"type": "string", "minLength": 1}, *schema.get("anyOf", [])]


class JobSpec(_Model):
    """A training job, independent of where it runs. A relative path in it (code, train.data, train.pretrained,
    checkpoint.uri, local.mounts' sources, local.workdir) is read from the spec file's folder, wherever launch
    runs; one given with --set, from the current folder."""

    name: str = Field(description="lowercase letters, digits and dashes; names cloud jobs and the checkpoint run folder")
    image: str = Field(DEFAULT_IMAGE, description="training image; defaults to this project's image")
    command: list[str] | None = Field(None, description="command to run under torchrun; default: the built-in trainer")
    code: CodeConfig | None = Field(None, description="a folder to ship with the job ('.' = the spec file's folder); command runs in it",
                                    json_schema_extra=_or_a_folder)  # fmt: skip
    train: TrainConfig = Field(default_factory=TrainConfig)
    resources: Resources = Field(default_factory=Resources)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    env: dict[str, EnvValue] = Field(default_factory=dict)
    secrets: list[str] = Field(default_factory=list, description="names of environment variables passed at submit time, never stored")
    limits: Limits = Field(default_factory=Limits)
    recovery: Recovery | None = Field(None, description="resubmit on preemption or capacity errors, and fail over to other backends")
    local: dict[str, Any] = Field(default_factory=dict, description="options of the local backend")
    aws: dict[str, Any] = Field(default_factory=dict, description="options of the aws (SageMaker) backend")
    gcp: dict[str, Any] = Field(default_factory=dict, description="options of the gcp (Vertex AI) backend")
    azure: dict[str, Any] = Field(default_factory=dict, description="options of the azure (Azure ML) backend")
    slurm: dict[str, Any] = Field(default_factory=dict, description="options of the slurm backend (a Slurm cluster)")
    plugins: dict[str, dict[str, Any]] = Field(default_factory=dict, description="options of third-party backends, by backend name")
    sweep: Sweep | None = Field(None, description="trials of this spec with other values of its keys (launch sweep)")

    @field_validator("image")
    @classmethod
    def _image(cls, value: str) -> str:
        if len(value) > MAX_IMAGE or not _IMAGE_RE.match(value):
            shown = value[:60] + ("..." if len(value) > 60 else "")
            raise ValueError(f"{shown!r} is not an image reference; write it like registry.example.com/team/train:tag, "
                             f"in lowercase, without spaces, at most {MAX_IMAGE} characters")
        return value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME_RE.match(value):
            raise ValueError(
                f"'{value}' is not a valid job name; use 1-48 lowercase letters, digits and dashes, "
                "starting and ending with a letter or digit"
            )
        return value

    @field_validator("command", mode="before")
    @classmethod
    def _command(cls, value: Any) -> Any:
        if isinstance(value, str):  # a shell-like line: quotes group words, as in a terminal
            try:
                value = shlex.split(value)
            except ValueError as exc:
                raise ValueError(f"cannot be split into arguments ({exc}); "
                                 "write it as a list: [python, -c, 'print(1)']") from None
        if isinstance(value, list) and (not value or any(part == "" for part in value)):
            raise ValueError("the command is empty; remove 'command:' to run the built-in trainer, or name a program")
        return value

    @field_validator("code", mode="before")
    @classmethod
    def _code(cls, value: Any) -> Any:
        return {"dir": value} if isinstance(value, str) else value

    @field_validator("env", mode="before")
    @classmethod
    def _env(cls, value: Any) -> Any:
        if not isinstance(value, Mapping):
            return value
        env = {str(k): v for k, v in value.items()}  # each value is checked by _env_value, with its key in the error
        sizes = [len(k) + len(_arg(v)) for k, v in env.items() if isinstance(v, (str, int, float))]
        if sum(n for n in sizes if n <= MAX_ENV_VALUE) > MAX_ENV_TOTAL:  # a single oversized value is named by _env_value
            raise ValueError(f"the environment is larger than {MAX_ENV_TOTAL // 1024} KiB; pass large data as a file or through train.data")
        return env

    @field_validator("env", "secrets")
    @classmethod
    def _env_names(cls, value: Any, info: ValidationInfo) -> Any:
        for key in value:
            if info.field_name == "secrets" and "=" in key:  # never repeat what follows '=': it is the secret's value
                raise ValueError(f"'{key.split('=', 1)[0][:60]}=...' holds a value; list only the name, and "
                                 "set the value in the environment of launch")
            if len(key) > MAX_ENV_NAME:  # SageMaker takes 512; no program reads a longer one
                raise ValueError(f"'{key[:40]}...' is {len(key)} characters; a variable name may have at most {MAX_ENV_NAME}")
            if not _ENV_NAME_RE.match(key):
                raise ValueError(f"'{key[:100]}' is not a valid environment variable name")
            if key in LAUNCHER_ENV:
                raise ValueError(f"{key} is {LAUNCHER_ENV[key]}; remove it from the spec")
        return value

    @field_validator("sweep")
    @classmethod
    def _sweep(cls, value: Sweep | None, info: ValidationInfo) -> Sweep | None:
        """Each swept key is a key of train: or resources: (a typo gets the closest one); trial names fit."""
        name = info.data.get("name") or ""
        if value is not None and len(name) > 43:
            raise ValueError(f"the trials are named {name}-t001, ...: a sweep's name may have at most 43 characters")
        checkpoint = info.data.get("checkpoint")
        if value is not None and checkpoint is not None and not checkpoint.uri:
            raise ValueError("a sweep reads each trial's metric from its results.csv in the checkpoint store: "
                             "set checkpoint.uri (a folder, s3://, gs:// or az://)")
        for key in value.space if value else ():
            section, field = key.split(".", 1)
            known = list((TrainConfig if section == "train" else Resources).model_fields)
            if field not in known:
                close = difflib.get_close_matches(field, known, n=1, cutoff=0.6)
                hint = f"did you mean '{section}.{close[0]}'?" if close else f"keys of {section}: {', '.join(known)}"
                raise ValueError(f"space: '{key}' is not a key of the spec; {hint}")
        return value

    @model_validator(mode="after")
    def _names(self) -> "JobSpec":
        for key in [*self.env, *self.secrets]:
            if _RESERVED_ENV.match(key):
                raise ValueError(f"{key} is set by the image (its entrypoint relies on it); overriding it would hijack "
                                 "the job's start: remove it, and install packages with code.requirements instead")
        if len(set(self.secrets)) != len(self.secrets):
            twice = next(k for k in self.secrets if self.secrets.count(k) > 1)
            raise ValueError(f"{twice} is listed twice in secrets; keep one")
        both = sorted(set(self.env) & set(self.secrets))
        if both:
            raise ValueError(f"{both[0]} is listed in both env and secrets; keep it only in secrets")
        if self.code and not self.command:
            raise ValueError("code: ships a program of yours, so name it in command: (like [python, train.py]); "
                             "remove code: to run the built-in trainer")
        return self

    def data(self) -> str | None:
        """The data the job reads: the trainer's train.data, or for a program of the user's own
        (command:) train.data only when the spec sets it."""
        if self.command and "data" not in self.train.model_fields_set:
            return None
        return self.train.data

    def options_section(self, backend: str) -> dict[str, Any]:
        """The raw options a backend reads: its own top-level section or plugins.<name>."""
        if backend in BACKEND_SECTIONS:
            return dict(getattr(self, backend))
        return dict(self.plugins.get(backend, {}))

    def options_for(self, backend: str, model: type[BaseModel]) -> BaseModel:
        """Validate this spec's section for `backend` with the backend's options model."""
        try:
            return model.model_validate(self.options_section(backend))
        except ValidationError as exc:
            prefix = (backend,) if backend in BACKEND_SECTIONS else ("plugins", backend)
            raise SpecError(format_validation_error(exc, None, model, prefix)) from None

    def spec_hash(self) -> str:
        """A stable hash of what the job computes (not where it runs)."""
        core = self.model_dump(include={"image", "command", "train"}, mode="json")
        # the engine keys at their defaults are left out, so a builtin spec hashes as before they existed
        fields = TrainConfig.model_fields
        for key in ("engine", "task", *ULTRALYTICS_KEYS):
            if core["train"][key] == fields[key].default:
                del core["train"][key]
        return hashlib.sha256(json.dumps(core, sort_keys=True).encode()).hexdigest()[:16]

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str], overrides: list[str] | tuple[str, ...] = ()) -> "JobSpec":
        return load_spec(path, overrides)


# ---------------------------------------------------------------- loading


def load_spec(
    path: str | os.PathLike[str],
    overrides: list[str] | tuple[str, ...] = (),
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> JobSpec:
    """Load, interpolate, override, validate and resolve a job spec file."""
    file = Path(path)
    raw = _read_yaml(file)
    environ = os.environ if environ is None else environ
    raw = _interpolate_all(raw, environ, file)
    sets: dict[tuple[str, ...], str] = {}
    for item in overrides:
        key, value = parse_set(item)
        _set_path(raw, key, value, file, item)
        sets[tuple(key)] = item
    _check_strings(raw, file, sets)
    return validate_spec(raw, file, cwd or Path.cwd(), sets)


def validate_spec(
    raw: dict[str, Any], file: Path | None, cwd: Path, sets: Mapping[tuple[str, ...], str] | None = None
) -> JobSpec:
    try:
        spec = JobSpec.model_validate(_resolve_paths(raw, cwd, (cwd / file).parent if file else cwd, sets))
    except ValidationError as exc:
        raise SpecError(format_validation_error(exc, file, JobSpec, sets=sets)) from None
    check_trials(spec, file)  # every trial of a sweep: a valid spec, refused here rather than at its submit
    # The backend sections (local:, aws:, plugins.<name>:) are checked by launcher.backends.registry.check_sections,
    # where backends are loaded: loading a spec imports no backend module.
    return spec


def _read_yaml(file: Path) -> dict[str, Any]:
    text = _read_text(file)
    try:
        data = _load_yaml(text, str(file))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(f"{file}:{where}: YAML syntax error: {problem}.", "Fix the YAML at that line.") from None
    except RecursionError:
        raise SpecError(f"{file}: the YAML is nested too deeply.", f"A job spec needs a few levels, at most {MAX_DEPTH}.") from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise SpecError(f"{file}: a value cannot be read: {str(exc).splitlines()[0]}.", "Fix that value.") from None
    except (KeyError, IndexError, TypeError, AttributeError):  # a PyYAML constructor on a tag _check_nodes let through
        raise SpecError(f"{file}: a value with an explicit tag (!!...) cannot be read.",
                        "Remove the tag or fix its value.") from None
    if data is None:
        raise SpecError(f"{file} is empty.", "A job spec needs at least 'name:'; see examples/quickstart.yaml.")
    if not isinstance(data, dict):
        kind = type(data).__name__
        raise SpecError(
            f"{file}: the top level is a {kind}, but a job spec must be a mapping of keys to values.",
            "Write 'name: my-job' and the other keys at the top level, without a leading '-'.",
        )
    _check_size(data, file)
    return data


def _load_yaml(text: str, source: str, at: tuple[str, ...] = ()) -> Any:
    """One YAML document, checked by `_check_nodes` before any value is built (`at`: where a --set puts it)."""
    loader = _SpecLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_nodes(node, source, at)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _read_text(file: Path) -> str:
    """The file's text: only a regular file, at most MAX_SPEC_BYTES, in UTF-8.

    Opened non-blocking and checked with fstat before reading, so a named pipe
    or a device (/dev/zero, /dev/stdin) is refused instead of hanging.
    """
    try:
        fd = os.open(file, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise SpecError(f"{file}: no such file.", "Check the path, or start from examples/quickstart.yaml.") from None
    except IsADirectoryError:
        raise SpecError(f"{file} is a directory, not a job spec file.", "Pass the path of a .yaml file.") from None
    except OSError as exc:
        raise SpecError(f"{file}: cannot be read ({exc.strerror}).", "Check the path and its permissions.") from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise SpecError(f"{file} is a directory, not a job spec file.", "Pass the path of a .yaml file.")
        if not stat.S_ISREG(mode):
            raise SpecError(f"{file} is not a regular file (a pipe or a device).", "Save the spec to a .yaml file and pass its path.")
        data = _read_at_most(fd, MAX_SPEC_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_SPEC_BYTES:
        raise SpecError(f"{file} is larger than {MAX_SPEC_BYTES // 1024} KiB; that is not a job spec.", "Pass the job's .yaml file.")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise SpecError(f"{file} is saved as UTF-16.", "Save it as UTF-8.")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise SpecError(f"{file}: line {line}: the file is not UTF-8 text.", "Save it as UTF-8.") from None


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks, size = [], 0
    while size < limit:
        chunk = os.read(fd, min(1 << 16, limit - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


class _SpecLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (the last would silently win), and resolves plain
    scalars with YAML 1.2's core schema instead of PyYAML's YAML 1.1 (see `_check_nodes`)."""

    yaml_implicit_resolvers: dict[Any, Any] = {}

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Any, Any]:
        seen: dict[tuple[str, str], yaml.Node] = {}
        for key_node, _ in node.value if isinstance(node, yaml.MappingNode) else ():
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = (key_node.tag, key_node.value)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key '{key_node.value}' appears twice in one mapping; keep one", key_node.start_mark
                )
            seen[key] = key_node
        return super().construct_mapping(node, deep=deep)  # type: ignore[arg-type]

    def compose_scalar_node(self, anchor: Any) -> yaml.ScalarNode:
        tag = self.peek_event().tag
        node = super().compose_scalar_node(anchor)
        node.explicit = tag not in (None, "!")  # type: ignore[attr-defined]  # `!!int 5`, not `5`
        return node


_SpecLoader.add_constructor("tag:yaml.org,2002:map", _SpecLoader.construct_yaml_map)
# YAML 1.2's core schema (https://yaml.org/spec/1.2.2/#1032-tag-resolution), and the merge key PyYAML knows
_TAG = "tag:yaml.org,2002:"
_YAML12 = [
    (_TAG + "bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    (_TAG + "null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    (_TAG + "int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
    (_TAG + "float",
     r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
     "-+.0123456789"),
    (_TAG + "merge", r"^<<$", "<"),
]
for _tag, _regexp, _first in _YAML12:
    _SpecLoader.add_implicit_resolver(_tag, re.compile(_regexp), list(_first))
_YAML11 = yaml.resolver.Resolver()
# A plain scalar YAML 1.2 reads as a string where YAML 1.1 read a date, or as a float where 1.1 read a string
# ('1e-3'), means what it says; any other difference ('no', '010', '22:22', '1_000', '0o17') is ambiguous.
_SAME_MEANING = {(_TAG + "timestamp", _TAG + "str"), (_TAG + "str", _TAG + "float"), (_TAG + "value", _TAG + "str")}
_LEADING_ZERO = re.compile(r"^[-+]?0[0-9]")
# What PyYAML's constructors parse without crashing, for a scalar tagged explicitly (`!!int`, `!!bool`)
_EXPLICIT = {
    _TAG + "int": re.compile(r"^[-+]?(?:0|[1-9][0-9]*|0x[0-9a-fA-F]+)$"),
    _TAG + "float": re.compile(_YAML12[3][1] + r"|^[-+]?[0-9]+$"),
    _TAG + "bool": re.compile(r"^(?:yes|no|true|false|on|off)$", re.IGNORECASE),
    _TAG + "timestamp": yaml.constructor.SafeConstructor.timestamp_regexp,
}
_SCALAR_TAGS = {_TAG + t for t in ("str", "int", "float", "bool", "null", "binary", "timestamp")}
_COLLECTION_TAGS = {_TAG + "map": yaml.MappingNode, _TAG + "set": yaml.MappingNode, _TAG + "seq": yaml.SequenceNode,
                    _TAG + "omap": yaml.SequenceNode, _TAG + "pairs": yaml.SequenceNode}  # fmt: skip


def _ambiguous(value: str, tag: str) -> str | None:
    """What YAML 1.1 would have made of a plain scalar that YAML 1.2 reads otherwise, or None."""
    old = _YAML11.resolve(yaml.ScalarNode, value, (True, False))
    if old == tag and not (tag == _TAG + "int" and _LEADING_ZERO.match(value)):
        return None
    if (old, tag) in _SAME_MEANING:
        return None
    kind = old.rsplit(":", 1)[-1]
    return {"bool": "a boolean", "int": "a number", "float": "a number", "str": "a string"}.get(kind, kind)


def _check_nodes(root: yaml.Node, source: str, at: tuple[str, ...] = ()) -> None:
    """Before any value is built: env values stay exactly as written (strings), a plain key like `on` is the
    string it looks like, and a scalar YAML 1.1 reads differently from 1.2 (`no`, `010`, `22:22`) or an explicit
    tag its constructor cannot parse (`!!bool maybe`, `!!set` on a list) is refused with its key and line."""
    seen: set[int] = set()
    stack: list[tuple[yaml.Node, tuple[str, ...], bool]] = [(root, at, False)]
    while stack:
        node, where, is_key = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.ScalarNode):
            _check_scalar(node, where, is_key, source)
            continue
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                label = str(key.value) if isinstance(key, yaml.ScalarNode) else "?"
                name = where if key.tag == _TAG + "merge" else (*where, label)
                stack += [(key, (*where, "?"), True), (value, name, False)]
        elif isinstance(node, yaml.SequenceNode):
            stack += [(item, (*where, str(i)), False) for i, item in enumerate(node.value)]
        _check_collection(node, where, source)


def _node_error(node: yaml.Node, where: tuple[str, ...], source: str, reason: str, fix: str) -> SpecError:
    line = "" if source.startswith("--set") else f" line {node.start_mark.line + 1}:"
    shown = ".".join(_shown_key(part) for part in where)[:200] or "(top level)"
    return SpecError(f"{source}:{line} {shown}: {reason}.", fix)


def _check_scalar(node: yaml.ScalarNode, where: tuple[str, ...], is_key: bool, file: str) -> None:
    text = node.value
    if node.style is None and not getattr(node, "explicit", False):
        if len(where) == 2 and where[0] == "env" and not is_key and node.tag != _TAG + "null":
            node.tag = _TAG + "str"  # 'VERSION: 1.10' is '1.10', 'DEBUG: no' is 'no'
            return
        elif (old := _ambiguous(text, node.tag)) is not None:
            if is_key:
                node.tag = _TAG + "str"  # `on:` is the key 'on' (YAML 1.1 read the boolean true)
                return
            shown = text if len(text) <= 40 else text[:40] + "..."
            raise _node_error(node, where, file, f"'{shown}' is read as {old} by YAML 1.1 and differently by YAML 1.2",
                              f"Quote it ('{shown}') to mean the text, or write the value plainly "
                              "(true/false, 10, 90).")
    if node.tag == _TAG + "timestamp" and _EXPLICIT[node.tag].match(text):
        try:
            yaml.constructor.SafeConstructor().construct_yaml_timestamp(node)
        except ValueError as exc:  # a date that does not exist: 2026-13-45
            raise _node_error(node, where, file, f"'{text[:40]}' is not a date ({exc})",
                              "Write a real date, or remove the tag.") from None
    pattern = _EXPLICIT.get(node.tag)
    if pattern is not None and not pattern.match(text.replace("_", "") if node.tag != _TAG + "timestamp" else text):
        kind = node.tag.rsplit(":", 1)[-1]
        article = "an" if kind[0] in "aeiou" else "a"
        raise _node_error(node, where, file, f"'{text[:40]}' is not a valid YAML !!{kind}",
                          f"Write {article} {kind} after !!{kind}, or remove the tag.")
    if node.tag in _COLLECTION_TAGS:
        kind = node.tag.rsplit(":", 1)[-1]
        raise _node_error(node, where, file, f"!!{kind} needs a collection, not a scalar", "Remove the tag.")


def _check_collection(node: yaml.Node, where: tuple[str, ...], file: str) -> None:
    expected = _COLLECTION_TAGS.get(node.tag)
    if node.tag in _SCALAR_TAGS or (expected is not None and not isinstance(node, expected)):
        kind = node.tag.rsplit(":", 1)[-1]
        shape = "mapping" if isinstance(node, yaml.MappingNode) else "list"
        raise _node_error(node, where, file, f"!!{kind} does not fit a {shape}", "Remove the tag.")


def _check_size(data: Any, file: Path) -> None:
    """Refuse trees deeper than MAX_DEPTH or larger than MAX_NODES once aliases are expanded.

    YAML aliases let 800 bytes stand for billions of values; counting with a
    memo per shared object is linear in the file, and the copies later on are
    then bounded too. A self-referencing alias never ends, so it fails the depth check.
    """
    memo: dict[int, int] = {}

    def count(value: Any, depth: int) -> int:
        if not isinstance(value, (dict, list)):
            return 1
        if depth > MAX_DEPTH:
            raise SpecError(f"{file}: the YAML is nested more than {MAX_DEPTH} levels deep, or refers to itself.", "Flatten it: a job spec needs a few levels.")
        if id(value) in memo:
            return memo[id(value)]
        items = value.values() if isinstance(value, dict) else value
        total = 1
        for item in items:
            total += count(item, depth + 1)
            if total > MAX_NODES:
                raise SpecError(f"{file}: the YAML expands to more than {MAX_NODES} values (aliases repeated).", "Write the spec without nested aliases.")
        memo[id(value)] = total
        return total

    count(data, 0)


def _check_strings(raw: Any, file: Path, sets: Mapping[tuple[str, ...], str], loc: tuple[str, ...] = ()) -> None:
    """Refuse any value longer than MAX_STRING (only ${VAR} or --set can make one, and no key needs it), and
    what no spec value needs: keys that are not strings, binary data, NUL, control and invisible characters
    (an env value or a command argument may hold a newline or a tab), credentials in a URI."""
    items = raw.items() if isinstance(raw, dict) else enumerate(raw) if isinstance(raw, list) else ()
    for key, value in items:
        where = (*loc, str(key))

        def refuse(reason: str, fix: str) -> None:
            shown = ".".join(_shown_key(part) for part in where)[:200]
            raise SpecError(f"{_source(where, file, sets)}: {shown}: {reason}.", fix)

        name = key if loc == ("env",) else value if loc == ("secrets",) else None
        if isinstance(name, str) and _RESERVED_ENV.match(name):  # here, where a --set that wrote it is known
            refuse(f"{name} is set by the image (its entrypoint relies on it); overriding it would hijack the job's start",
                   "Remove it; install packages with code.requirements instead.")
        if isinstance(raw, dict) and not isinstance(key, str):
            refuse(f"the key {key!r} is a {_kind(key)}, not a string", "Quote the key, like 'true': or '1':.")
        odd_key = isinstance(key, str) and any(p.search(key) for p in (_CONTROL, _INVISIBLE, _SURROGATE))
        if odd_key or (isinstance(key, str) and "\t" in key):
            refuse("the key holds a control or invisible character", "Retype the key in plain characters.")
        if isinstance(value, (bytes, bytearray)):
            refuse("is binary data (!!binary)", "Write the value as text.")
        if isinstance(value, (set, frozenset)):
            refuse("is a set (!!set)", "Write a list: [A, B].")
        if isinstance(value, str):
            if len(value) > MAX_STRING:
                refuse(f"is {len(value)} characters; a spec value may have at most {MAX_STRING}",
                       "Pass large data as a file (train.data, a mount) instead.")
            free_text = len(where) >= 2 and where[0] in ("env", "command")  # a value or argument may span lines
            control = _CONTROL.search(value.replace("\n", "").replace("\r", "") if free_text else value)
            if "\0" in value or control:
                char = "\0" if "\0" in value else control.group()  # type: ignore[union-attr]
                refuse(f"contains the control character {char!r}", "Remove it (a value is one line of plain text).")
            if (found := _SURROGATE.search(value)) is not None:
                refuse(f"contains the lone surrogate U+{ord(found.group()):04X}, which is not a character",
                       "Write the character itself, or remove the escape.")
            if (found := _INVISIBLE.search(value)) is not None:
                refuse(f"contains the invisible character U+{ord(found.group()):04X} (zero-width or right-to-left)",
                       "Retype the value in plain characters.")
            if _CREDENTIALS.match(value.strip()):  # never repeat the value: it holds a secret
                refuse("the URI has credentials in it (user:password@)", "Put credentials in secrets:, not in the URI.")
        _check_strings(value, file, sets, where)


def _shown_key(key: Any) -> str:
    text = str(key)
    if _SURROGATE.search(text):
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if not (_CONTROL.search(text) or _INVISIBLE.search(text)) else repr(text)[1:-1]


def _interpolate_all(raw: dict[str, Any], environ: Mapping[str, str], file: Path) -> dict[str, Any]:
    """Replace every ${VAR} and ${VAR:-default}; report all missing variables at once."""
    missing: dict[str, str] = {}
    result = _interpolate(raw, environ, (), missing)
    if len(missing) == 1:
        (name, loc), = missing.items()
        raise SpecError(f"{file}: {loc}: environment variable {name} is not set.", f"Set it, or give a default: ${{{name}:-value}}.")
    if missing:
        where = ", ".join(f"{name} (at {loc})" for name, loc in missing.items())
        raise SpecError(
            f"{file}: {len(missing)} environment variables are not set: {where}.",
            f"Set them, or give defaults like ${{{next(iter(missing))}:-value}}.",
        )
    return result


def _interpolate(value: Any, environ: Mapping[str, str], loc: tuple[str, ...], missing: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: _interpolate(v, environ, (*loc, str(k)), missing) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, environ, (*loc, str(i)), missing) for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if default is not None:
            return environ.get(name) or default  # as in shells, ':-' treats an empty variable as unset
        if name in environ:
            return environ[name]
        missing.setdefault(name, ".".join(loc))
        return ""

    return _VAR_RE.sub(substitute, value)


def parse_set(item: str) -> tuple[list[str], Any]:
    """'train.epochs=3' -> (['train', 'epochs'], 3); the value is parsed as YAML."""
    key, sep, text = item.partition("=")
    if not sep or not key.strip() or any(not part for part in key.strip().split(".")):
        raise SpecError(f"--set {item!r} is not KEY=VALUE.", "Write it like --set train.epochs=3.")
    if key.count(".") >= MAX_DEPTH:
        raise SpecError(f"--set {key.strip()[:100]}...: the key is more than {MAX_DEPTH} levels deep.", "Set a key of the job spec.")
    if len(item) > MAX_SPEC_BYTES:
        raise SpecError(f"--set {key.strip()}: the value is longer than {MAX_SPEC_BYTES // 1024} KiB.", "Shorten it.")
    parts = key.strip().split(".")
    try:
        value = _load_yaml(text, f"--set {key.strip()}", tuple(parts)) if text.strip() else ""
    except yaml.YAMLError:
        value = text
    except (KeyError, IndexError, TypeError, AttributeError):
        raise SpecError(f"--set {key.strip()}: the value's explicit tag (!!...) cannot be read.",
                        "Remove the tag.") from None
    except (ValueError, RecursionError) as exc:  # an integer of more than 4300 digits, deep nesting
        reason = str(exc).splitlines()[0] if isinstance(exc, ValueError) else "nested too deeply"
        raise SpecError(f"--set {key.strip()}: the value cannot be read ({reason}).", "Give a plain value, like --set train.epochs=3.") from None
    if isinstance(value, (dict, list)):
        _check_size(value, Path(f"--set {key.strip()}"))
    return key.strip().split("."), value


def _set_path(raw: dict[str, Any], key: list[str], value: Any, file: Path, item: str = "") -> None:
    node = raw
    for i, part in enumerate(key[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            where = ".".join(key[: i + 1])
            raise SpecError(f"--set {'.'.join(key)}: {where} is not a mapping in {file}.", "Set a key that exists.")
        node = child
    node[key[-1]] = value


# The keys that hold a local path, each made absolute when the spec loads. One base for all of them: the
# spec file's folder (`code: .` ships the folder the spec lives in, `checkpoint.uri: runs` is the runs/ beside
# it), wherever launch runs; a value given with --set is a command-line argument and is read from the current
# folder, as a shell user expects. `local.*` is the local backend's section: its mount sources and workdir are
# host paths like the others (the backend itself refuses a relative one it would otherwise meet).
_PATH_KEYS = (("code", "dir"), ("train", "data"), ("train", "pretrained"), ("checkpoint", "uri"),
             ("local", "workdir"), ("local", "mounts", "*", "source"))  # fmt: skip


def _resolve_paths(raw: dict[str, Any], cwd: Path, spec_folder: Path,
                   sets: Mapping[tuple[str, ...], str] | None = None) -> dict[str, Any]:  # fmt: skip
    """Make every local path of the spec (_PATH_KEYS) absolute, so plans depend neither on the cwd nor on the key."""
    raw = dict(raw)
    if isinstance(raw.get("code"), str):
        raw["code"] = {"dir": raw["code"]}
    if isinstance(raw.get("code"), dict) and "dir" not in raw["code"]:
        raw["code"] = {**raw["code"], "dir": "."}
    for key in _PATH_KEYS:
        _resolve_key(raw, key, (), spec_folder.resolve(), cwd, sets or {})
    return raw


def _resolve_key(node: Any, key: tuple[str, ...], at: tuple[str, ...], folder: Path, cwd: Path,
                 sets: Mapping[tuple[str, ...], str]) -> Any:  # fmt: skip
    """`node` with the path at `key` (`*`: each item of a list) resolved; containers are copied, never mutated."""
    if not key:
        if not isinstance(node, str) or not node.strip():
            return node
        given = any(at[:n] in sets for n in range(len(at), 0, -1))  # a --set of this key or of one above it
        return _absolute(node, cwd if given else folder, builtin=BUILTIN_DATASETS if at == ("train", "data") else ())
    head, rest = key[0], key[1:]
    if head == "*" and isinstance(node, list):
        node[:] = [_resolve_key(_copy(item), rest, (*at, str(i)), folder, cwd, sets) for i, item in enumerate(node)]
    elif isinstance(node, dict) and head in node:
        node[head] = _resolve_key(_copy(node[head]), rest, (*at, head), folder, cwd, sets)
    return node


def _copy(value: Any) -> Any:
    return dict(value) if isinstance(value, dict) else list(value) if isinstance(value, list) else value


def _absolute(value: str, base: Path, builtin: tuple[str, ...] = ()) -> str:
    if value in builtin or "://" in value or not value or value.lower() in ("true", "false") or _unknown_home(value):
        return value  # check_location refuses an unknown ~user
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())


# ---------------------------------------------------------------- errors


def format_validation_error(
    exc: ValidationError,
    file: Path | None,
    model: type[BaseModel],
    prefix: tuple[str, ...] = (),
    sets: Mapping[tuple[str, ...], str] | None = None,
) -> str:
    """One line: the first problem's source (file or --set), key path, reason, a suggestion for typos.

    Further problems are counted and their keys named, so the line stays one line.
    """
    problems: list[tuple[str, str, str]] = []
    for err in exc.errors():
        loc = tuple(str(part) for part in err["loc"])
        full = (*prefix, *loc)
        where = ".".join(full)[:200] or "(top level)"
        source = _source(full, file, sets or {})
        reason = _reason(err, model, loc).replace("\n", " ")[:300]
        hint = re.search(r"; (did you mean '[^']*'\?)$", reason)  # every typo gets its suggestion, not the first only
        problems.append((where, f"{source}: {where}: {reason}" if source else f"{where}: {reason}",
                         f" ({hint.group(1)})" if hint else ""))  # fmt: skip
    first = problems[0][1]
    if len(problems) == 1:
        return first
    others = ", ".join(where + hint for where, _, hint in problems[1:4]) + (", ..." if len(problems) > 4 else "")
    return f"{first} (and {len(problems) - 1} more: {others})"


def _source(loc: tuple[str, ...], file: Path | None, sets: Mapping[tuple[str, ...], str]) -> str | None:
    """Where a value came from: the --set that wrote it (or a key above it), else the file."""
    for n in range(len(loc), 0, -1):
        if loc[:n] in sets:  # credentials typed into a URI are never repeated
            item = sets[loc[:n]]
            if loc[0] == "secrets":  # a value typed into secrets: (NAME=value) is never repeated
                item = item.split("=", 1)[0] + "=..."
            shown = _CONTROL.sub(lambda m: repr(m.group())[1:-1], f"--set {item}")  # one line, whatever was typed
            return re.sub(r"://[^/?#\s]*@", "://***@", shown)[:200]
    return str(file) if file else None


def _reason(err: Mapping[str, Any], model: type[BaseModel], loc: tuple[str, ...]) -> str:
    if err["type"] == "extra_forbidden":
        known = _fields_at(model, loc[:-1])
        close = difflib.get_close_matches(loc[-1], known, n=1, cutoff=0.6)
        hint = f"did you mean '{close[0]}'?" if close else f"valid keys: {', '.join(known)}"
        return f"unknown key '{loc[-1]}'; {hint}"
    if err["type"] == "missing":
        return "this key is required"
    message = str(err["msg"])
    return message.removeprefix("Value error, ")


def _fields_at(model: type[BaseModel], loc: tuple[str, ...]) -> list[str]:
    for part in loc:
        field = model.model_fields.get(part)
        annotation = getattr(field, "annotation", None)
        options = [a for a in (annotation, *typing.get_args(annotation)) if isinstance(a, type) and issubclass(a, BaseModel)]
        if not options:  # a model, or an optional one (code: CodeConfig | None)
            return []
        model = options[0]
    return list(model.model_fields)
