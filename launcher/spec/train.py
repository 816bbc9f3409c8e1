"""TrainConfig: the trainer's keys (train: in a spec), all that the training image needs of the spec."""

from __future__ import annotations

import json
import math
import os
import re
import stat
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from launcher.contract import BUILTIN_DATASETS
from launcher.spec.names import check_model, check_weights_url, check_yolo_model, yolo_task_of
from launcher.storage import REMOTE_SCHEMES

__all__ = ["TrainConfig", "ENGINES", "TASKS", "ULTRALYTICS_KEYS", "host_system_path"]
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,254}$")
# https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html, and GCS's alike
_IP_RE = re.compile(r"^[0-9]{1,3}(\.[0-9]{1,3}){3}$")
_CREDENTIALS = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*@")
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


Int = Annotated[int, BeforeValidator(_number)]
Float = Annotated[float, BeforeValidator(_number)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


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

    model_config = ConfigDict(
        **_Model.model_config,
        json_schema_extra=lambda schema, _cls: schema.update(
            description=schema.get("description", "") + "\n\nKeys by engine and task: " + json.dumps(engine_keys())
        ),
    )

    engine: Literal["builtin", "ultralytics"] = Field(
        "builtin",
        description="the trainer: builtin (torchvision classifiers) or ultralytics (YOLO; the 'ultralytics' extra, AGPL-3.0)",
    )
    task: Literal["detect", "segment", "classify", "pose", "obb"] | None = Field(
        None,
        description="ultralytics: the YOLO task (default: from the model name, -seg/-cls/-pose/-obb, else detect); builtin: classify only",
    )
    model: str = Field(
        "resnet18",
        description="builtin: a torchvision classification model name; ultralytics: a YOLO model YAML (from scratch) or .pt weights by Ultralytics asset name or https URL, fetched at submit, like yolo11n.yaml or yolo11n.pt (checked when the spec loads)",
    )
    data: str = Field(
        "digits",
        description="ImageFolder root (train/, val/; a relative path is read from the spec "
        "file's folder), s3://, gs://, az:// URI or a built-in dataset: digits",
    )
    epochs: Int = Field(10, ge=1, le=100_000, description="number of epochs to train")
    batch: Int = Field(32, le=65_536, description="batch size per GPU (per process); -1 = AutoBatch")
    imgsz: Int = Field(224, ge=8, le=4096, description="training and validation image size (pixels)")
    fraction: Float = Field(
        1.0, ge=1e-4, le=1.0, description="fraction of the training set to use (class-stratified, at least 0.0001)"
    )
    scale: Float = Field(
        0.5, ge=0.0, lt=1.0, description="random-resized-crop scale gain: crops cover 1-scale..1 of the image"
    )
    multi_scale: bool = Field(False, description="pick a random image size in [0.5, 1.5] x imgsz per batch")
    cache: Literal["ram", "disk", False] = Field(False, description="cache decoded images: ram, disk or false")
    amp: bool = Field(True, description="automatic mixed precision (bf16 where supported, else fp16)")
    pretrained: bool | str = Field(
        False,
        description="true: torchvision weights; a path: a local state dict "
        "(a relative one is read from the spec file's folder); an https URL or s3://, gs://, az:// URI: fetched at "
        "submit and stored by content in the checkpoint store",
    )
    optimizer: Literal["SGD", "Adam", "AdamW", "NAdam", "RAdam", "RMSProp", "auto"] = "auto"
    lr0: Float = Field(0.01, gt=0.0, le=100.0, description="initial learning rate")
    lrf: Float = Field(0.01, gt=0.0, le=1.0, description="final learning rate = lr0 * lrf")
    momentum: Float = Field(0.937, ge=0.0, lt=1.0)
    weight_decay: Float = Field(0.0005, ge=0.0, le=100.0)
    warmup_epochs: Float = Field(3.0, ge=0.0, le=100_000)
    cos_lr: bool = Field(False, description="cosine instead of linear learning-rate decay")
    patience: Int = Field(100, ge=0, le=100_000, description="epochs without improvement before stopping (0 = never)")
    save_period: Int = Field(-1, ge=-1, le=100_000, description="also save epoch-N.pt every N epochs (-1 = off)")
    workers: Int = Field(
        8,
        ge=0,
        le=1024,
        description="DataLoader workers per process, at most its share of the cores; on CPU only the cores its compute threads leave free",
    )
    seed: Int = Field(0, ge=0, le=2**32 - 1, description="random seed (numpy takes 0 .. 2**32-1)")
    # ultralytics engine only (None: Ultralytics' default); the task each one serves is in ULTRALYTICS_KEYS
    time: Annotated[float, Field(gt=0.0, le=100_000), BeforeValidator(_number)] | None = Field(
        None, description="ultralytics: hours to train; overrides epochs"
    )
    single_cls: bool | None = Field(None, description="ultralytics: train every class as one")
    rect: bool | None = Field(None, description="ultralytics: rectangular batches")
    close_mosaic: Annotated[int, Field(ge=0, le=100_000), BeforeValidator(_number)] | None = Field(
        None, description="ultralytics: no mosaic in the last N epochs"
    )
    freeze: Annotated[int, Field(ge=0, le=1000), BeforeValidator(_number)] | None = Field(
        None, description="ultralytics: freeze the first N layers"
    )
    nbs: Annotated[int, Field(ge=1, le=65_536), BeforeValidator(_number)] | None = Field(
        None, description="ultralytics: nominal batch size (gradient accumulation)"
    )
    warmup_momentum: _Unit | None = None
    warmup_bias_lr: _Gain | None = None
    box: _Gain | None = Field(None, description="ultralytics: box loss gain")
    cls: _Gain | None = Field(None, description="ultralytics: class loss gain")
    dfl: _Gain | None = Field(None, description="ultralytics: distribution focal loss gain")
    pose: _Gain | None = Field(None, description="ultralytics pose: keypoint loss gain")
    kobj: _Gain | None = Field(None, description="ultralytics pose: keypoint objectness loss gain")
    overlap_mask: bool | None = Field(None, description="ultralytics segment: merge instance masks while training")
    mask_ratio: Annotated[int, Field(ge=1, le=64), BeforeValidator(_number)] | None = Field(
        None, description="ultralytics segment: mask downsample ratio"
    )
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
            if value.startswith("/") and (why := host_system_path(value)) is not None:
                raise ValueError(f"{value[:80]!r} {why}; name a weights file of your own")
            return check_yolo_model(value, info.data.get("task"))
        return check_model(value)  # shipped names (launcher.spec.names): no torchvision import at load time

    @field_validator("pretrained")
    @classmethod
    def _pretrained(cls, value: bool | str) -> bool | str:
        if isinstance(value, str) and value.lower().startswith(("http://", "https://")):
            return check_weights_url(value)  # fetched at submit (launcher.staging.weights)
        if isinstance(value, str) and "://" in value:
            return check_location(value, "weights")
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
                raise ValueError(
                    f"the builtin engine trains classifiers only, not '{self.task}'; "
                    "set train.engine: ultralytics for YOLO detection, segmentation, pose or obb"
                )
            extra = sorted(given & ULTRALYTICS_KEYS.keys())
            if extra:
                raise ValueError(
                    f"the builtin engine takes no '{extra[0]}' (an Ultralytics key); "
                    "set train.engine: ultralytics, or remove it"
                )
            return self
        if "model" not in given:
            raise ValueError(
                "the ultralytics engine needs train.model, like yolo11n.yaml (from scratch) or yolo11n.pt (weights)"
            )
        if "data" not in given or self.data in BUILTIN_DATASETS:
            raise ValueError(
                "the ultralytics engine needs train.data: a YOLO dataset folder with its data.yaml "
                "(local, s3://, gs:// or az://)"
            )
        task = self.yolo_task()
        for key in sorted(given & ULTRALYTICS_KEYS.keys()):
            if task not in ULTRALYTICS_KEYS[key]:
                raise ValueError(
                    f"the ultralytics engine takes '{key}' for "
                    f"{'/'.join(sorted(ULTRALYTICS_KEYS[key]))} only, not for task {task}; remove it"
                )
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
        return [
            f"train.mosaic {self.mosaic:g} is never used: Ultralytics turns mosaic off for the last close_mosaic "
            f"({closing}) epochs and this run has {self.epochs}; set close_mosaic below {self.epochs} to use it, "
            "or remove mosaic"
        ]

    def yolo_task(self) -> str:
        """The Ultralytics task: train.task, else the model name's suffix (-seg, -cls, -pose, -obb), else detect."""
        return self.task or yolo_task_of(self.model)

    def to_args(self) -> list[str]:
        """The trainer's command-line form: short `key=value` arguments. The ultralytics engine gets the keys
        the spec sets (Ultralytics' defaults for the others), with the task, model, data and epochs always."""
        if self.engine == "ultralytics":
            keys = {k for k in self.model_fields_set if getattr(self, k) is not None} | {
                "engine",
                "model",
                "data",
                "epochs",
            }
            values = {**self.model_dump(include=keys), "task": self.yolo_task()}
            return [f"{k}={_arg(v)}" for k, v in values.items() if v is not None]
        return [f"{k}={_arg(v)}" for k, v in self.model_dump(exclude={"engine", "task", *ULTRALYTICS_KEYS}).items()]


def _arg(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


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


def _unknown_home(value: str) -> bool:
    """`~name/...` of a user this machine does not know (Path.expanduser would raise RuntimeError)."""
    return value.startswith("~") and os.path.expanduser(value) == value


def check_location(value: str, what: str) -> str:
    """A local path or an s3://, gs://, az:// URI with a bucket and no '..' segment; else ValueError."""
    if "\0" in value:
        raise ValueError("contains a NUL character")
    if _unknown_home(value):
        user = value[1:].split("/", 1)[0][:40]
        raise ValueError(
            f"starts with ~{user}, but there is no home folder for {user or 'the current user'} here; "
            "write the full path"
        )
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
        raise ValueError(
            f"{value!r} has scheme {scheme!r}, which is not supported; use s3://, gs://, az:// or a local folder"
        )
    bucket, _, key = value[len(scheme) :].partition("/")
    if not bucket:
        raise ValueError(f"{value!r} names no bucket; write it as {scheme}BUCKET/prefix")
    if ".." in key.split("/") or "." in key.split("/"):
        raise ValueError(f"{value!r} has a '.' or '..' segment; write the prefix without them")
    odd = next((c for c in "?#%\\ \t" if c in value), None)
    if odd is not None:
        raise ValueError(
            f"{value!r} has a {odd!r}: a store URI takes no query, fragment, percent-encoding, "
            "backslash or space; write it as " + scheme + "BUCKET/prefix"
        )
    if scheme in ("s3://", "gs://") and (
        ".." in bucket or _IP_RE.match(bucket) or not bucket[-1:].isalnum() or ".-" in bucket or "-." in bucket
    ):
        raise ValueError(
            f"{value[:100]!r}: the bucket {bucket[:63]!r} breaks the bucket naming rules (no two adjacent "
            "periods, not an IP address, ending with a letter or digit); name the bucket as it is named"
        )
    bad_bucket = (scheme in URI_SCHEMES and not _BUCKET_RE.match(bucket)) or not bucket.isascii()
    if "//" in key or key.startswith("/") or bad_bucket:
        raise ValueError(
            f"{value!r} is not a bucket and prefix; write it as {scheme}BUCKET/prefix, "
            "the bucket in lowercase letters, digits, '.', '-', and no empty segment"
        )
    return value
