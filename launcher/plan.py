"""Plans, job references and job status: the values that flow between layers.

A `Plan` is what `Backend.plan(spec)` returns: a frozen value holding the
exact payload the backend will send, in the API's own JSON shape (a SageMaker
CreateTrainingJob request, a Vertex CustomJob REST body, Azure ML command job
fields, docker run arguments). It never holds secret values: secrets are
listed by name and resolved by `submit` (or inside the container), and
`to_yaml()` still redacts any key that names a secret, as a second guard.
"""

from __future__ import annotations

import enum
import hashlib
import json
import re
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

import yaml

from launcher.spec import JobSpec

__all__ = ["Plan", "JobRef", "JobState", "JobStatus", "Ending", "classify", "freeze", "thaw", "REDACTED"]

REDACTED = "***"


def freeze(value: Any) -> Any:
    """Deep-freeze JSON-like data: dicts become read-only mappings, lists tuples."""
    if isinstance(value, Mapping):
        return MappingProxyType({str(k): freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """The inverse of `freeze`: plain dicts and lists, ready for an SDK or json.dumps."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [thaw(v) for v in value]
    return value


@dataclass(frozen=True)
class Plan:
    """The exact request a backend will send, plus what submit needs to send it."""

    backend: str
    job_name: str
    spec: JobSpec
    payload: Mapping[str, Any]
    secrets: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "payload", freeze(self.payload))
        object.__setattr__(self, "secrets", tuple(self.secrets))
        object.__setattr__(self, "notes", tuple(self.notes))

    def request(self) -> dict[str, Any]:
        """A fresh, mutable copy of the payload, for the SDK call."""
        return thaw(self.payload)

    def redacted(self) -> dict[str, Any]:
        return _redact(thaw(self.payload), set(self.secrets))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"backend": self.backend, "job_name": self.job_name, "payload": self.redacted()}
        if self.secrets:
            out["secrets"] = list(self.secrets)
        if self.notes:
            out["notes"] = list(self.notes)
        return out

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=False, width=100)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def hash(self) -> str:
        body = json.dumps(self.redacted(), sort_keys=True, default=str)
        return hashlib.sha256(f"{self.backend}\n{body}".encode()).hexdigest()[:16]


def _redact(value: Any, secrets: set[str]) -> Any:
    if isinstance(value, dict):
        return {k: REDACTED if k in secrets and isinstance(v, str) else _redact(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_env_pair(v, secrets) for v in value]
    return value


def _redact_env_pair(value: Any, secrets: set[str]) -> Any:
    # docker/Vertex style env lists: "NAME=value" strings and {"name": .., "value": ..} pairs
    if isinstance(value, str) and "=" in value and value.split("=", 1)[0] in secrets:
        return value.split("=", 1)[0] + "=" + REDACTED
    if isinstance(value, dict) and value.get("name") in secrets and "value" in value:
        return {**value, "value": REDACTED}
    return _redact(value, secrets)


@dataclass(frozen=True)
class JobRef:
    """Names a submitted job: our id, the backend, and the backend's own id."""

    id: str
    backend: str
    native_id: str
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "extra", freeze(self.extra))


class JobState(str, enum.Enum):
    SUBMITTING = "submitting"  # recorded, the backend's submit call not yet answered (see launcher.api)
    PENDING = "pending"
    RUNNING = "running"
    STOPPING = "stopping"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    STOPPED = "stopped"
    UNKNOWN = "unknown"

    @property
    def finished(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.STOPPED)


class Ending(str, enum.Enum):
    """Why a failed job ended, read from what its platform reports (each backend's ENDINGS table).

    The first three are worth a new attempt (launcher.runs.supervisor); a user error (the program's own exit
    code, a bad spec, a limit it reached) never is, and neither is an ending no table knows.
    """

    PREEMPTED = "preempted"  # spot/low-priority capacity reclaimed, or the process killed from outside
    CAPACITY = "capacity"  # no capacity or quota for the machines asked for
    NODE_FAILURE = "node_failure"  # the platform's machine or service failed under the job
    USER_ERROR = "user_error"
    UNKNOWN = "unknown"

    @property
    def retryable(self) -> bool:
        return self in (Ending.PREEMPTED, Ending.CAPACITY, Ending.NODE_FAILURE)


def classify(text: str, table: tuple[tuple[str, Ending], ...], default: Ending = Ending.UNKNOWN) -> Ending:
    """The ending of the first (regex, ending) row of `table` whose regex is found in `text` (case-insensitive)."""
    return next((ending for pattern, ending in table if re.search(pattern, text, re.IGNORECASE)), default)


@dataclass(frozen=True)
class JobStatus:
    """Where a job stands. Only SUCCEEDED is success: a stopped job failed to finish.

    `ending` says why a FAILED job ended (None otherwise: running, succeeded, or stopped by the user)."""

    state: JobState
    message: str = ""
    exit_code: int | None = None
    native_state: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)
    ending: Ending | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "details", freeze(self.details))

    @property
    def finished(self) -> bool:
        return self.state.finished

    @property
    def ok(self) -> bool:
        return self.state is JobState.SUCCEEDED

    def result_code(self) -> int:
        """The exit status `launch` returns: the job's own code, else 0 only on success."""
        if self.exit_code is not None:
            return self.exit_code
        return 0 if self.ok else 1
