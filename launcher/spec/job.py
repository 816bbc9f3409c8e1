"""JobSpec and its sections (resources, checkpoint, code, limits, recovery), and loading a spec file."""

from __future__ import annotations

import copy
import datetime
import difflib
import hashlib
import json
import math
import os
import random
import re
import shlex
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping

from pydantic import (
    BaseModel,
    BeforeValidator,
    Field,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from launcher.azure_identity import IDENTITY_VARIABLE
from launcher.contract import BUILTIN_DATASETS
from launcher.errors import SpecError
from launcher.spec import tune
from launcher.spec.load import (
    _RESERVED_ENV,
    _YAML12,
    _check_strings,
    _interpolate_all,
    _kind,
    _read_yaml,
    _set_path,
    _SpecLoader,
    parse_set,
)
from launcher.spec.messages import format_validation_error
from launcher.spec.sweep import TRIAL_VARIABLE, Sweep, describe, trial_name, trial_values
from launcher.spec.train import (
    _AZURE_BLOB_HTTPS,
    AZURE_URI_SCHEMES,
    ULTRALYTICS_KEYS,
    Float,
    Int,
    TrainConfig,
    _arg,
    _Model,
    _number,
    _unknown_home,
    check_location,
    engine_keys,
    host_system_path,
)

__all__ = [
    "trial_spec",
    "known_values",
    "next_values",
    "resolve_sweep",
    "check_trials",
    "DEFAULT_IMAGE",
    "Resources",
    "CheckpointConfig",
    "CodeConfig",
    "Limits",
    "Recovery",
    "JobSpec",
    "LAUNCHER_ENV",
    "load_spec",
    "parse_duration",
    "refuse_azure_only",
]

DEFAULT_IMAGE = "torch-launcher-train:latest"
BACKEND_SECTIONS = ("local", "aws", "gcp", "azure", "slurm")
_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,46}[a-z0-9])?$")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DURATION_RE = re.compile(
    r"^(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?$"
)  # ASCII digits: int() would read '٣'
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
MAX_ENV_VALUE = 32 * 1024  # a container's environment is no place for a blob; Linux caps one string at 128 KiB
MAX_ENV_TOTAL = 128 * 1024
MAX_ENV_NAME = 256


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
        {
            "type": "string",
            "maxLength": 64,
            "pattern": r"^\s*(?=[0-9])([0-9]+[dD])?([0-9]+[hH])?([0-9]+[mM])?([0-9]+[sS])?\s*$",
        },
        {"type": "null"},
    ]
}


def refuse_azure_only(spec: "JobSpec", backend: str) -> None:
    """Azure ML's own kinds of location (azureml://, wasbs://, abfss://, https://ACCOUNT.blob...) on a backend
    that cannot mount them: one SpecError naming the key (else they read as a folder, or a 'local path')."""
    for key, value in (("train.data", spec.data()), ("checkpoint.uri", spec.checkpoint.uri)):
        if value and (value.startswith(AZURE_URI_SCHEMES) or _AZURE_BLOB_HTTPS.match(value)):
            raise SpecError(
                f"{key}: {value[:100]!r} is an Azure ML location, which only the azure backend mounts; "
                f"the {backend} backend cannot read it.",
                "Use az://CONTAINER/prefix (the account in AZURE_STORAGE_ACCOUNT), or run on -b azure.",
            )


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
    cpus: Annotated[int, Field(ge=1, le=4096), BeforeValidator(_number)] | None = Field(
        None, description="minimum vCPUs per node"
    )
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
    uri: str | None = Field(
        None,
        description="local path (a relative one is read from the spec file's folder), "
        "s3://, gs:// or az://container/prefix",
    )
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
        {"type": "string", "maxLength": 64, "pattern": r"^\s*[0-9]+(\.[0-9]+)?\s*([bB]|[kKmMgG]([bB]|[iI][bB])?)?\s*$"},
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
    exclude: list[str] = Field(
        default_factory=list,
        description="more gitignore-style patterns to leave out (beside .gitignore and .launcherignore)",
    )
    allow: list[str] = Field(
        default_factory=list,
        description="gitignore-style patterns of files that look like credentials but are meant to ship",
    )
    max_size: Annotated[int, WithJsonSchema(SIZE_SCHEMA)] = Field(
        MAX_CODE_BYTES, ge=1, le=10 * 1024**3, description="refuse a larger folder ('100MiB', '1GiB' or bytes)"
    )
    requirements: str | None = Field(
        None, description="a requirements file in the folder: packages the image lacks, installed at container start"
    )

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
                raise ValueError(
                    f"{pattern!r} is not a pattern; write gitignore-style patterns like 'data/' or '*.ckpt'"
                )
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

    initial: Annotated[int, WithJsonSchema(DURATION_SCHEMA)] = Field(
        30, description="first wait: '30s', '2m' or seconds"
    )
    max: Annotated[int, WithJsonSchema(DURATION_SCHEMA)] = Field(900, description="longest wait: '15m' or seconds")
    factor: Float = Field(
        2.0, ge=1.0, le=10.0, description="each further capacity error in a row multiplies the wait by this"
    )

    @field_validator("initial", "max", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return parse_duration(value)

    @model_validator(mode="after")
    def _order(self) -> "Backoff":
        if self.max < self.initial:
            raise ValueError(
                f"max ({self.max} s) is shorter than initial ({self.initial} s); raise max or lower initial"
            )
        return self

    def delay(self, failures: int) -> int:
        """Seconds to wait after `failures` capacity errors in a row (1, 2, ...)."""
        return int(min(self.max, self.initial * self.factor ** max(0, failures - 1)))


class Recovery(_Model):
    """`recovery:`: resubmit the run when a job ends for a reason worth retrying (launcher.runs.supervisor)."""

    max_attempts: Int = Field(3, ge=1, le=100, description="total submissions of this run, the first included")
    on: list[Literal["preempted", "capacity", "node_failure"]] = Field(
        default_factory=lambda: list(RETRYABLE_ENDINGS),
        description="endings that are retried; a user error (the program's exit code, a bad spec) never is",
    )
    fallback: list[str] = Field(
        default_factory=list, description="backends to move to, in order, when one keeps failing (default: only -b's)"
    )
    after_failures: Int = Field(
        2, ge=1, le=100, description="move to the next backend after this many retryable failures in a row"
    )
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

    name: str = Field(
        description="lowercase letters, digits and dashes; names cloud jobs and the checkpoint run folder"
    )
    image: str = Field(DEFAULT_IMAGE, description="training image; defaults to this project's image")
    command: list[str] | None = Field(None, description="command to run under torchrun; default: the built-in trainer")
    code: CodeConfig | None = Field(None, description="a folder to ship with the job ('.' = the spec file's folder); command runs in it",
                                    json_schema_extra=_or_a_folder)  # fmt: skip
    train: TrainConfig = Field(default_factory=TrainConfig)
    resources: Resources = Field(default_factory=Resources)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    env: dict[str, EnvValue] = Field(default_factory=dict)
    secrets: list[str] = Field(
        default_factory=list, description="names of environment variables passed at submit time, never stored"
    )
    limits: Limits = Field(default_factory=Limits)
    recovery: Recovery | None = Field(
        None, description="resubmit on preemption or capacity errors, and fail over to other backends"
    )
    local: dict[str, Any] = Field(default_factory=dict, description="options of the local backend")
    aws: dict[str, Any] = Field(default_factory=dict, description="options of the aws (SageMaker) backend")
    gcp: dict[str, Any] = Field(default_factory=dict, description="options of the gcp (Vertex AI) backend")
    azure: dict[str, Any] = Field(default_factory=dict, description="options of the azure (Azure ML) backend")
    slurm: dict[str, Any] = Field(default_factory=dict, description="options of the slurm backend (a Slurm cluster)")
    plugins: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="options of third-party backends, by backend name"
    )
    sweep: Sweep | None = Field(None, description="trials of this spec with other values of its keys (launch sweep)")

    @field_validator("image")
    @classmethod
    def _image(cls, value: str) -> str:
        if len(value) > MAX_IMAGE or not _IMAGE_RE.match(value):
            shown = value[:60] + ("..." if len(value) > 60 else "")
            raise ValueError(
                f"{shown!r} is not an image reference; write it like registry.example.com/team/train:tag, "
                f"in lowercase, without spaces, at most {MAX_IMAGE} characters"
            )
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
                raise ValueError(
                    f"cannot be split into arguments ({exc}); write it as a list: [python, -c, 'print(1)']"
                ) from None
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
        if (
            sum(n for n in sizes if n <= MAX_ENV_VALUE) > MAX_ENV_TOTAL
        ):  # a single oversized value is named by _env_value
            raise ValueError(
                f"the environment is larger than {MAX_ENV_TOTAL // 1024} KiB; pass large data as a file or through train.data"
            )
        return env

    @field_validator("env", "secrets")
    @classmethod
    def _env_names(cls, value: Any, info: ValidationInfo) -> Any:
        for key in value:
            if info.field_name == "secrets" and "=" in key:  # never repeat what follows '=': it is the secret's value
                raise ValueError(
                    f"'{key.split('=', 1)[0][:60]}=...' holds a value; list only the name, and "
                    "set the value in the environment of launch"
                )
            if len(key) > MAX_ENV_NAME:  # SageMaker takes 512; no program reads a longer one
                raise ValueError(
                    f"'{key[:40]}...' is {len(key)} characters; a variable name may have at most {MAX_ENV_NAME}"
                )
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
            raise ValueError(
                "a sweep reads each trial's metric from its results.csv in the checkpoint store: "
                "set checkpoint.uri (a folder, s3://, gs:// or az://)"
            )
        for key in value.space if value else ():
            section, field = key.split(".", 1)
            known = list((TrainConfig if section == "train" else Resources).model_fields)
            if field not in known:
                close = difflib.get_close_matches(field, known, n=1, cutoff=0.6)
                hint = f"did you mean '{section}.{close[0]}'?" if close else f"keys of {section}: {', '.join(known)}"
                raise ValueError(f"space: '{key}' is not a key of the spec; {hint}")
        train = info.data.get("train")
        if value is not None and value.method == "ultralytics" and train is not None and train.engine != "ultralytics":
            raise ValueError(
                "method: ultralytics mutates Ultralytics' hyperparameters and runs the ultralytics engine only; "
                "set train.engine: ultralytics, or use method: random"
            )
        return value

    @model_validator(mode="after")
    def _names(self) -> "JobSpec":
        for key in [*self.env, *self.secrets]:
            if _RESERVED_ENV.match(key):
                raise ValueError(
                    f"{key} is set by the image (its entrypoint relies on it); overriding it would hijack "
                    "the job's start: remove it, and install packages with code.requirements instead"
                )
        if len(set(self.secrets)) != len(self.secrets):
            twice = next(k for k in self.secrets if self.secrets.count(k) > 1)
            raise ValueError(f"{twice} is listed twice in secrets; keep one")
        both = sorted(set(self.env) & set(self.secrets))
        if both:
            raise ValueError(f"{both[0]} is listed in both env and secrets; keep it only in secrets")
        if self.code and not self.command:
            raise ValueError(
                "code: ships a program of yours, so name it in command: (like [python, train.py]); "
                "remove code: to run the built-in trainer"
            )
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


_SpecLoader.add_constructor("tag:yaml.org,2002:map", _SpecLoader.construct_yaml_map)
for _tag, _regexp, _first in _YAML12:
    _SpecLoader.add_implicit_resolver(_tag, re.compile(_regexp), list(_first))


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


# ---------------------------------------------------------------- a sweep's trials, each a JobSpec


def trial_spec(spec: "JobSpec", number: int, values: dict[str, Any], max_cost: float | None = None) -> "JobSpec":
    """The spec of trial `number`: the sweep's spec with the trial's values, its own name (and so its own checkpoint
    folder), no sweep: section, `recovery:` as written (the defaults when absent: every trial survives a reclaim),
    and `max_cost` when given (what the sweep's budget leaves it). Raises pydantic's ValidationError."""
    data = copy.deepcopy(spec.model_dump(mode="json", exclude={"sweep"}))
    for key, value in values.items():
        section, field = key.split(".", 1)
        data[section][field] = value
    data["name"] = trial_name(spec.name, number)
    data["env"] = {
        **data.get("env", {}),
        TRIAL_VARIABLE: json.dumps(values),
    }  # a program of the user's reads its values
    data["recovery"] = data.get("recovery") or {}
    if max_cost is not None:
        data["limits"]["max_cost"] = round(max_cost, 4)
    return JobSpec.model_validate(data)


def resolve_sweep(spec: "JobSpec") -> "JobSpec":
    """The spec with an ultralytics sweep's space written out: Ultralytics' own space (launcher.spec.tune) for the
    keys the spec's task takes when sweep.space is empty. A sweep records this spec, so that its supervisor, restarted
    on a host with another ultralytics (or none), mutates over the same space."""
    if spec.sweep is None or spec.sweep.method != "ultralytics" or spec.sweep.space:
        return spec
    keys = engine_keys()["ultralytics"][spec.train.yolo_task()]
    data = spec.model_dump(mode="json")
    data["sweep"]["space"] = tune.space_for(keys)
    return JobSpec.model_validate(data)


def _base_values(spec: "JobSpec") -> dict[str, Any]:
    """An ultralytics sweep's first trial: the spec's own values of the space's keys (Ultralytics' defaults where
    it sets none), within the bounds."""
    assert spec.sweep is not None
    train = spec.train
    given = {key: getattr(train, key) for key in train.model_fields_set if getattr(train, key) is not None}
    return tune.base_values(tune.dims(resolve_sweep(spec).sweep.space), given)  # type: ignore[union-attr]


def next_values(
    spec: "JobSpec", number: int, results: list[tuple[float, dict[str, Any]]], tried: list[dict[str, Any]]
) -> dict[str, Any]:
    """Trial `number`'s values. grid and random: drawn from the sweep's seed alone. ultralytics: trial 1 the spec's
    own values; a later one Ultralytics' mutation (launcher.spec.tune) of `results` (each finished trial's metric,
    higher is better, and its values, oldest first; the first trial's values with fitness 0 while none has
    finished, as Ultralytics' distributed tuner does), none of `tried`, from a generator seeded with the sweep's
    seed and `number`: the same spec and the same results so far give the same values."""
    sweep = spec.sweep
    assert sweep is not None
    if sweep.method != "ultralytics":
        return trial_values(sweep)[number - 1]
    base = _base_values(spec)
    if number == 1:
        return base
    space = tune.dims(resolve_sweep(spec).sweep.space)  # type: ignore[union-attr]
    rng = random.Random(f"ultralytics-{sweep.seed}-{number}")
    return tune.mutate(space, results or [(0.0, base)], [base, *tried], rng)


def known_values(spec: "JobSpec") -> list[tuple[str, dict[str, Any]]]:
    """What can be checked before a sweep starts, labelled: every trial of grid and random; for ultralytics the first
    trial, the space's lower and its upper bounds (mutations stay within them, so each later trial is valid too)."""
    sweep = spec.sweep
    assert sweep is not None
    if sweep.method != "ultralytics":
        return [(f"trial {n}", values) for n, values in enumerate(trial_values(sweep), 1)]
    space = tune.dims(resolve_sweep(spec).sweep.space)  # type: ignore[union-attr]
    low = tune.constrain(space, {k: d.low for k, d in space.items()})
    high = tune.constrain(space, {k: d.high for k, d in space.items()})
    return [("trial 1", _base_values(spec)), ("the space's lower bounds", low), ("the space's upper bounds", high)]


def check_trials(spec: "JobSpec", file: "Path | None" = None) -> None:
    """Refuse, in one line, a sweep one of whose trials would not be a valid spec (before anything is submitted)."""
    if spec.sweep is None:
        return
    for label, values in known_values(spec):
        try:
            trial_spec(spec, 1, values)
        except ValidationError as exc:
            where = f"{file}: " if file else ""
            raise SpecError(
                f"{where}sweep: {label} ({describe(values)}) is not a valid spec: "
                f"{format_validation_error(exc, None, JobSpec)}",
                "Narrow sweep.space to values the key takes (launch schema shows each key's range).",
            ) from None
