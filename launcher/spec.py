"""The job spec: one YAML file that every backend translates.

`JobSpec` is a tree of pydantic v2 models with `extra="forbid"`, so a typo is
an error with a suggestion rather than a silently ignored key. Loading a file
(`load_spec`) does, in order: YAML parse (syntax errors give the line), a
mapping check, `${VAR}` / `${VAR:-default}` interpolation from the
environment, `--set a.b=c` overrides, validation, resolution of relative local
paths against the working directory, and validation of each backend's options
section by the model that backend owns (found through the registry).

All environment and filesystem reads happen here, at load time, so that
`Backend.plan(spec)` can stay pure.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Literal, Mapping

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from launcher.errors import SpecError

__all__ = [
    "DEFAULT_IMAGE",
    "BUILTIN_DATASETS",
    "TrainConfig",
    "Resources",
    "CheckpointConfig",
    "Limits",
    "JobSpec",
    "load_spec",
    "parse_duration",
    "parse_set",
    "format_validation_error",
]

DEFAULT_IMAGE = "torch-launcher-train:latest"
BUILTIN_DATASETS = ("digits",)
BACKEND_SECTIONS = ("local", "aws", "gcp", "azure")
_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,46}[a-z0-9])?$")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DURATION_RE = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_VAR_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def parse_duration(value: str | int | float) -> int:
    """'4h', '1h30m', '90s', '2d' or a number of seconds -> seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like '4h', '90m' or a number of seconds")
    if isinstance(value, (int, float)):
        if value <= 0:
            raise ValueError("a duration must be positive")
        return int(value)
    match = _DURATION_RE.match(str(value).strip().lower())
    if not value or not match or not any(match.groups()):
        raise ValueError(f"'{value}' is not a duration; write it like '4h', '1h30m', '90m' or '3600s'")
    d, h, m, s = (int(g or 0) for g in match.groups())
    seconds = ((d * 24 + h) * 60 + m) * 60 + s
    if seconds <= 0:
        raise ValueError("a duration must be positive")
    return seconds


class TrainConfig(_Model):
    """The trainer's knobs, named as in the Ultralytics training guide."""

    model: str = Field("resnet18", description="torchvision classification model name")
    data: str = Field("digits", description="ImageFolder root (train/, val/), s3://, gs://, az:// URI or a built-in dataset: digits")
    epochs: int = Field(10, ge=1, description="number of epochs to train")
    batch: int = Field(32, description="batch size per GPU (per process); -1 = AutoBatch")
    imgsz: int = Field(224, ge=8, le=4096, description="training and validation image size (pixels)")
    fraction: float = Field(1.0, gt=0.0, le=1.0, description="fraction of the training set to use (class-stratified)")
    scale: float = Field(0.5, ge=0.0, lt=1.0, description="random-resized-crop scale gain: crops cover 1-scale..1 of the image")
    multi_scale: bool = Field(False, description="pick a random image size in [0.5, 1.5] x imgsz per batch")
    cache: Literal["ram", "disk", False] = Field(False, description="cache decoded images: ram, disk or false")
    amp: bool = Field(True, description="automatic mixed precision (bf16 where supported, else fp16)")
    pretrained: bool | str = Field(False, description="true: torchvision weights; a path: a local state dict")
    optimizer: Literal["SGD", "Adam", "AdamW", "NAdam", "RAdam", "RMSProp", "auto"] = "auto"
    lr0: float = Field(0.01, gt=0.0, description="initial learning rate")
    lrf: float = Field(0.01, gt=0.0, le=1.0, description="final learning rate = lr0 * lrf")
    momentum: float = Field(0.937, ge=0.0, lt=1.0)
    weight_decay: float = Field(0.0005, ge=0.0)
    warmup_epochs: float = Field(3.0, ge=0.0)
    cos_lr: bool = Field(False, description="cosine instead of linear learning-rate decay")
    patience: int = Field(100, ge=0, description="epochs without improvement before stopping (0 = never)")
    save_period: int = Field(-1, description="also save epoch-N.pt every N epochs (-1 = off)")
    workers: int = Field(8, ge=0, description="DataLoader workers per process")
    seed: int = 0

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

    def to_args(self) -> list[str]:
        """The trainer's command-line form: short `key=value` arguments."""
        return [f"{k}={_arg(v)}" for k, v in self.model_dump().items()]


def _arg(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class Resources(_Model):
    gpus: int = Field(0, ge=0, le=16, description="GPUs per node (0 = CPU only)")
    nodes: int = Field(1, ge=1, le=512, description="number of machines")
    gpu_type: str | None = Field(None, description="T4, A10G, L4, V100, A100, A100-80GB, H100, ...")
    spot: bool = Field(False, description="use spot / preemptible / low-priority capacity")
    cpus: int | None = Field(None, ge=1, description="minimum vCPUs per node")
    memory: float | None = Field(None, gt=0, description="minimum memory per node in GiB ('64Gi' or 64)")

    @field_validator("memory", mode="before")
    @classmethod
    def _memory(cls, value: Any) -> Any:
        if isinstance(value, str):
            match = re.fullmatch(r"\s*([\d.]+)\s*(gi|gib|g|gb)?\s*", value.lower())
            if not match:
                raise ValueError(f"'{value}' is not a memory size; write it like '64Gi' or 64")
            return float(match.group(1))
        return value

    @field_validator("gpu_type")
    @classmethod
    def _gpu_type(cls, value: str | None) -> str | None:
        return value.upper() if value else value


class CheckpointConfig(_Model):
    uri: str | None = Field(None, description="local path, s3://, gs:// or az://container/prefix")
    every: int = Field(1, ge=1, description="epochs between checkpoint uploads")
    keep: int = Field(3, ge=1, description="how many checkpoints to keep in the store")


class Limits(_Model):
    max_runtime: int | None = Field(None, description="hard runtime limit, like '4h' (seconds once loaded)")
    max_cost: float | None = Field(None, gt=0, description="budget in USD; submit refuses estimates above it")

    @field_validator("max_runtime", mode="before")
    @classmethod
    def _runtime(cls, value: Any) -> Any:
        return None if value is None else parse_duration(value)


class JobSpec(_Model):
    """A training job, independent of where it runs."""

    name: str = Field(description="lowercase letters, digits and dashes; names cloud jobs and the checkpoint run folder")
    image: str = Field(DEFAULT_IMAGE, description="training image; defaults to this project's image")
    command: list[str] | None = Field(None, description="command to run under torchrun; default: the built-in trainer")
    train: TrainConfig = Field(default_factory=TrainConfig)
    resources: Resources = Field(default_factory=Resources)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    env: dict[str, str] = Field(default_factory=dict)
    secrets: list[str] = Field(default_factory=list, description="names of environment variables passed at submit time, never stored")
    limits: Limits = Field(default_factory=Limits)
    local: dict[str, Any] = Field(default_factory=dict, description="options of the local backend")
    aws: dict[str, Any] = Field(default_factory=dict, description="options of the aws (SageMaker) backend")
    gcp: dict[str, Any] = Field(default_factory=dict, description="options of the gcp (Vertex AI) backend")
    azure: dict[str, Any] = Field(default_factory=dict, description="options of the azure (Azure ML) backend")
    plugins: dict[str, dict[str, Any]] = Field(default_factory=dict, description="options of third-party backends, by backend name")

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
        return value.split() if isinstance(value, str) else value

    @field_validator("env", mode="before")
    @classmethod
    def _env(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            return {str(k): _arg(v) for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _names(self) -> "JobSpec":
        for key in [*self.env, *self.secrets]:
            if not _ENV_NAME_RE.match(key):
                raise ValueError(f"'{key}' is not a valid environment variable name")
        both = sorted(set(self.env) & set(self.secrets))
        if both:
            raise ValueError(f"{both[0]} is listed in both env and secrets; keep it only in secrets")
        return self

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
    raw = _interpolate(raw, environ, file, ())
    for item in overrides:
        key, value = parse_set(item)
        _set_path(raw, key, value, file)
    return validate_spec(raw, file, cwd or Path.cwd())


def validate_spec(raw: dict[str, Any], file: Path | None, cwd: Path) -> JobSpec:
    try:
        spec = JobSpec.model_validate(_resolve_paths(raw, cwd))
    except ValidationError as exc:
        raise SpecError(format_validation_error(exc, file, JobSpec)) from None
    _check_backend_sections(spec, file)
    return spec


def _read_yaml(file: Path) -> dict[str, Any]:
    if not file.exists():
        raise SpecError(f"{file}: no such file.", "Check the path, or start from examples/quickstart.yaml.")
    if file.is_dir():
        raise SpecError(f"{file} is a directory, not a job spec file.", "Pass the path of a .yaml file.")
    text = file.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(f"{file}:{where}: YAML syntax error: {problem}.", "Fix the YAML at that line.") from None
    if data is None:
        raise SpecError(f"{file} is empty.", "A job spec needs at least 'name:'; see examples/quickstart.yaml.")
    if not isinstance(data, dict):
        kind = type(data).__name__
        raise SpecError(
            f"{file}: the top level is a {kind}, but a job spec must be a mapping of keys to values.",
            "Write 'name: my-job' and the other keys at the top level, without a leading '-'.",
        )
    return data


def _interpolate(value: Any, environ: Mapping[str, str], file: Path, loc: tuple[str, ...]) -> Any:
    if isinstance(value, dict):
        return {k: _interpolate(v, environ, file, (*loc, str(k))) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, environ, file, (*loc, str(i))) for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in environ:
            return environ[name]
        if default is not None:
            return default
        raise SpecError(
            f"{file}: {'.'.join(loc)}: environment variable {name} is not set.",
            f"Set it, or give a default: ${{{name}:-value}}.",
        )

    return _VAR_RE.sub(substitute, value)


def parse_set(item: str) -> tuple[list[str], Any]:
    """'train.epochs=3' -> (['train', 'epochs'], 3); the value is parsed as YAML."""
    key, sep, text = item.partition("=")
    if not sep or not key.strip() or any(not part for part in key.strip().split(".")):
        raise SpecError(f"--set {item!r} is not KEY=VALUE.", "Write it like --set train.epochs=3.")
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        value = text
    return key.strip().split("."), value


def _set_path(raw: dict[str, Any], key: list[str], value: Any, file: Path) -> None:
    node = raw
    for i, part in enumerate(key[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            where = ".".join(key[: i + 1])
            raise SpecError(f"--set {'.'.join(key)}: {where} is not a mapping in {file}.", "Set a key that exists.")
        node = child
    node[key[-1]] = value


def _resolve_paths(raw: dict[str, Any], cwd: Path) -> dict[str, Any]:
    """Make local data and checkpoint paths absolute, so plans do not depend on the cwd."""
    raw = dict(raw)
    train = raw.get("train")
    if isinstance(train, dict) and isinstance(train.get("data"), str):
        train = dict(train)
        train["data"] = _absolute(train["data"], cwd, builtin=BUILTIN_DATASETS)
        raw["train"] = train
    ckpt = raw.get("checkpoint")
    if isinstance(ckpt, dict) and isinstance(ckpt.get("uri"), str):
        ckpt = dict(ckpt)
        ckpt["uri"] = _absolute(ckpt["uri"], cwd)
        raw["checkpoint"] = ckpt
    return raw


def _absolute(value: str, cwd: Path, builtin: tuple[str, ...] = ()) -> str:
    if value in builtin or "://" in value or not value:
        return value
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else (cwd / path).resolve())


def _check_backend_sections(spec: JobSpec, file: Path | None) -> None:
    """Validate every backend section present in the file with that backend's model."""
    from launcher import registry  # the registry imports backend modules, which import this one

    sections = [(name, getattr(spec, name)) for name in BACKEND_SECTIONS]
    sections += list(spec.plugins.items())
    for name, values in sections:
        if not values:
            continue
        backend = registry.find(name)
        if backend is None:
            continue  # a plugin section for a backend not installed here: nothing to check it against
        try:
            backend.options_model.model_validate(values)
        except ValidationError as exc:
            prefix = (name,) if name in BACKEND_SECTIONS else ("plugins", name)
            raise SpecError(format_validation_error(exc, file, backend.options_model, prefix)) from None


# ---------------------------------------------------------------- errors


def format_validation_error(
    exc: ValidationError, file: Path | None, model: type[BaseModel], prefix: tuple[str, ...] = ()
) -> str:
    """One line per problem: file, key path, reason, and a suggestion for typos."""
    lines = []
    for err in exc.errors():
        loc = tuple(str(part) for part in err["loc"])
        where = ".".join((*prefix, *loc)) or "(top level)"
        lines.append(f"{file}: {where}: {_reason(err, model, loc)}" if file else f"{where}: {_reason(err, model, loc)}")
    return "\n".join(lines)


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
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)
