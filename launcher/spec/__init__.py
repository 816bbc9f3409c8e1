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

The package: messages.py, train.py, load.py, job.py and names.py; every name is importable from
launcher.spec as before, loaded on first use, so the image importing TrainConfig (launcher.spec.train)
does not import the YAML reader or the job models.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "BUILTIN_DATASETS",
    "CheckpointConfig",
    "CodeConfig",
    "DEFAULT_IMAGE",
    "ENGINES",
    "JobSpec",
    "LAUNCHER_ENV",
    "Limits",
    "Recovery",
    "Resources",
    "Sweep",
    "TASKS",
    "TrainConfig",
    "ULTRALYTICS_KEYS",
    "format_validation_error",
    "host_system_path",
    "load_spec",
    "parse_duration",
    "parse_set",
    "refuse_azure_only",
]

_WHERE = {
    "AZURE_URI_SCHEMES": "launcher.spec.train",
    "BACKEND_SECTIONS": "launcher.spec.job",
    "BUILTIN_DATASETS": "launcher.contract",
    "Backoff": "launcher.spec.job",
    "CheckpointConfig": "launcher.spec.job",
    "CodeConfig": "launcher.spec.job",
    "DEFAULT_IMAGE": "launcher.spec.job",
    "DURATION_SCHEMA": "launcher.spec.job",
    "ENGINES": "launcher.spec.train",
    "ENTRYPOINT_VARIABLES": "launcher.contract",
    "EnvValue": "launcher.spec.job",
    "Float": "launcher.spec.train",
    "IDENTITY_VARIABLE": "launcher.azure_identity",
    "Int": "launcher.spec.train",
    "JobSpec": "launcher.spec.job",
    "LAUNCHER_ENV": "launcher.spec.job",
    "Limits": "launcher.spec.job",
    "MAX_CODE_BYTES": "launcher.spec.job",
    "MAX_DEPTH": "launcher.spec.load",
    "MAX_DURATION": "launcher.spec.job",
    "MAX_ENV_NAME": "launcher.spec.job",
    "MAX_ENV_TOTAL": "launcher.spec.job",
    "MAX_ENV_VALUE": "launcher.spec.job",
    "MAX_IMAGE": "launcher.spec.job",
    "MAX_NODES": "launcher.spec.load",
    "MAX_SPEC_BYTES": "launcher.spec.load",
    "MAX_STRING": "launcher.spec.load",
    "MEMORY_SCHEMA": "launcher.spec.job",
    "REMOTE_SCHEMES": "launcher.storage",
    "RETRYABLE_ENDINGS": "launcher.spec.job",
    "Recovery": "launcher.spec.job",
    "Resources": "launcher.spec.job",
    "SIZE_SCHEMA": "launcher.spec.job",
    "SYSTEM_FOLDERS": "launcher.spec.train",
    "SpecError": "launcher.errors",
    "Sweep": "launcher.spec.sweep",
    "TASKS": "launcher.spec.train",
    "TrainConfig": "launcher.spec.train",
    "ULTRALYTICS_KEYS": "launcher.spec.train",
    "URI_SCHEMES": "launcher.spec.train",
    "_ALL_TASKS": "launcher.spec.train",
    "_AZURE_BLOB_HTTPS": "launcher.spec.train",
    "_BUCKET_RE": "launcher.spec.train",
    "_COLLECTION_TAGS": "launcher.spec.load",
    "_CONTROL": "launcher.spec.messages",
    "_CREDENTIALS": "launcher.spec.train",
    "_DURATION_RE": "launcher.spec.job",
    "_ENV_NAME_RE": "launcher.spec.job",
    "_EXPLICIT": "launcher.spec.load",
    "_GPU_TYPE_RE": "launcher.spec.job",
    "_Gain": "launcher.spec.train",
    "_IMAGE_RE": "launcher.spec.job",
    "_INVISIBLE": "launcher.spec.load",
    "_IP_RE": "launcher.spec.train",
    "_LEADING_ZERO": "launcher.spec.load",
    "_Model": "launcher.spec.train",
    "_NAME_RE": "launcher.spec.job",
    "_NOT_CLASSIFY": "launcher.spec.train",
    "_PATH_KEYS": "launcher.spec.job",
    "_RESERVED_ENV": "launcher.spec.load",
    "_SAME_MEANING": "launcher.spec.load",
    "_SCALAR_TAGS": "launcher.spec.load",
    "_SCHEME_TYPO": "launcher.spec.train",
    "_SIZE_RE": "launcher.spec.job",
    "_SIZE_UNITS": "launcher.spec.job",
    "_SURROGATE": "launcher.spec.load",
    "_SpecLoader": "launcher.spec.load",
    "_TAG": "launcher.spec.load",
    "_Unit": "launcher.spec.train",
    "_VAR_RE": "launcher.spec.load",
    "_YAML11": "launcher.spec.load",
    "_YAML12": "launcher.spec.load",
    "_absolute": "launcher.spec.job",
    "_ambiguous": "launcher.spec.load",
    "_arg": "launcher.spec.train",
    "_check_collection": "launcher.spec.load",
    "_check_nodes": "launcher.spec.load",
    "_check_scalar": "launcher.spec.load",
    "_check_size": "launcher.spec.load",
    "_check_strings": "launcher.spec.load",
    "_copy": "launcher.spec.job",
    "_env_value": "launcher.spec.job",
    "_fields_at": "launcher.spec.messages",
    "_interpolate": "launcher.spec.load",
    "_interpolate_all": "launcher.spec.load",
    "_kind": "launcher.spec.load",
    "_load_yaml": "launcher.spec.load",
    "_node_error": "launcher.spec.load",
    "_number": "launcher.spec.train",
    "_or_a_folder": "launcher.spec.job",
    "_read_at_most": "launcher.spec.load",
    "_read_text": "launcher.spec.load",
    "_read_yaml": "launcher.spec.load",
    "_reason": "launcher.spec.messages",
    "_resolve_key": "launcher.spec.job",
    "_resolve_paths": "launcher.spec.job",
    "_set_path": "launcher.spec.load",
    "_shown_key": "launcher.spec.load",
    "_source": "launcher.spec.messages",
    "_unknown_home": "launcher.spec.train",
    "check_location": "launcher.spec.train",
    "check_model": "launcher.spec.names",
    "check_trials": "launcher.spec.job",
    "trial_spec": "launcher.spec.job",
    "trial_values": "launcher.spec.sweep",
    "check_yolo_model": "launcher.spec.names",
    "engine_keys": "launcher.spec.train",
    "format_validation_error": "launcher.spec.messages",
    "host_system_path": "launcher.spec.train",
    "load_spec": "launcher.spec.job",
    "parse_duration": "launcher.spec.job",
    "parse_set": "launcher.spec.load",
    "parse_size": "launcher.spec.job",
    "refuse_azure_only": "launcher.spec.job",
    "validate_spec": "launcher.spec.job",
    "yolo_task_of": "launcher.spec.names",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(_WHERE)
