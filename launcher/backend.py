"""The narrow contract every backend implements.

`plan(spec)` is PURE: no network, no SDK client, no environment reads, no
mutation of the spec; it returns a frozen `Plan` holding the native request.
`submit(plan)` is the only step with side effects. Clients (boto3, docker,
Vertex, Azure ML) are injected through each backend's constructor and created
lazily on first use otherwise, so tests pass fakes without monkeypatching.

What a backend cannot do is declared as data (`unsupported`: refused;
`ignored`: accepted with a note), and `check_features` holds it against the
spec once, centrally, when the Launcher plans; no backend checks it itself.
"""

from __future__ import annotations

import abc
import enum
import os
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterable, Iterator, Mapping, Sequence

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

from launcher.errors import LauncherError
from launcher.plan import Ending, JobRef, JobStatus, Plan, classify
from launcher.spec import JobSpec

__all__ = [
    "ALIASES",
    "Alternative",
    "Backend",
    "BackendCheck",
    "BackendOptions",
    "Feature",
    "Offer",
    "check_features",
    "canonical",
    "features_of",
    "follow_lines",
    "secret_values",
]


# Other names users know the built-in backends by.
ALIASES = {"sagemaker": "aws", "vertex": "gcp", "azureml": "azure", "docker": "local"}


def canonical(name: str) -> str:
    """A backend's name as registered: lower case, aliases resolved."""
    name = name.strip().lower()
    return ALIASES.get(name, name)


def secret_values(names: Sequence[str], environ: Mapping[str, str]) -> dict[str, str]:
    """The values of a spec's secrets from the submitting environment; the one error for a missing one."""
    missing = [name for name in names if name not in environ]
    if missing:
        raise LauncherError(
            f"The secret {missing[0]} is listed in the spec but not set in your environment.",
            f"Export {missing[0]} before launching.",
        )
    return {name: environ[name] for name in names}


def follow_lines(
    new_lines: Callable[[], Iterable[str]],
    finished: Callable[[], bool],
    follow: bool,
    sleep: Callable[[float], None],
    poll_s: float,
) -> Iterator[str]:
    """A job's log lines, pass after pass; with `follow`, until it has finished.

    The state is read BEFORE each pass, so the pass after the job ended still
    runs and its last lines are never lost.
    """
    while True:
        done = not follow or finished()
        yield from new_lines()
        if done:
            return
        sleep(poll_s)


class BackendOptions(BaseModel):
    """Base of each backend's options model (the `local:`/`aws:`/... section).

    Every option is checked for what no option means: an empty string (say nothing: remove the key),
    true/false where a number goes (pydantic would read true as 1), and a list or mapping holding them.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _plain(cls, value: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields.get(info.field_name or "")
        wants = repr(field.annotation) if field else ""
        if isinstance(value, bool) and "int" in wants and "bool" not in wants:
            raise ValueError(f"expected a number, not {str(value).lower()}")
        items = (
            value
            if isinstance(value, list)
            else list(value.keys()) + list(value.values())
            if isinstance(value, dict)
            else [value]
        )
        if any(isinstance(v, str) and not v.strip() for v in items):
            raise ValueError("is empty; give a value, or remove the key for the default")
        return value


class Feature(str, enum.Enum):
    SPOT = "spot"
    MULTI_NODE = "multi_node"
    IMAGE_PUSH = "image_push"
    OFFERS = "offers"


def features_of(spec: JobSpec) -> list[Feature]:
    """The features a spec asks of its backend."""
    wanted = {Feature.SPOT: spec.resources.spot, Feature.MULTI_NODE: spec.resources.nodes > 1}
    return [feature for feature, asked in wanted.items() if asked]


# What a trainer engine cannot do, declared like a backend's `unsupported` and refused the same way.
ENGINE_UNSUPPORTED: Mapping[str, Mapping[Feature, str]] = {
    "ultralytics": {
        Feature.MULTI_NODE: "Ultralytics trains on one node (its DDP spans that node's GPUs); "
        "set resources.nodes: 1 and raise resources.gpus"
    },
}


def check_features(backend: "Backend", spec: JobSpec) -> tuple[str, ...]:
    """Refuse a spec asking for what `backend` (or the spec's trainer engine) declares unsupported; the notes
    for what it ignores."""
    asked = features_of(spec)
    engine = ENGINE_UNSUPPORTED.get(spec.train.engine, {}) if not spec.command else {}
    for feature in asked:
        if feature in engine:
            raise LauncherError(f"The {spec.train.engine} engine does not support {feature.value}: {engine[feature]}")
    for feature in asked:
        backend.require(feature)
    return tuple(
        f"{feature.value} is ignored: {backend.ignored[feature]}" for feature in asked if feature in backend.ignored
    )


@dataclass(frozen=True)
class Offer:
    """One way to run a spec on a backend: an instance choice and its price."""

    backend: str
    instance: str
    gpu_type: str | None
    gpus: int  # per node
    nodes: int
    price_per_hour: float  # USD per node-hour, spot price when spot
    spot: bool = False
    region: str = ""
    startup_s: float = 0.0
    details: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Alternative:
    """A catalog instance a spec may run on (launcher.runs.supervisor tries the next one after a capacity error),
    with the options of the backend's section that put the spec on it (`{"instance_type": "ml.g5.2xlarge"}`)."""

    instance: str
    price_per_hour: float | None  # USD per node-hour, spot when the job is spot; None: not priced
    options: Mapping[str, Any]


@dataclass(frozen=True)
class BackendCheck:
    """What `launch backends` shows: is the SDK installed, are credentials usable."""

    name: str
    sdk: bool
    credentials: bool | None  # None: not checked / not applicable
    message: str = ""


class Backend(abc.ABC):
    name: ClassVar[str]
    extra: ClassVar[str | None] = None  # the pip extra holding the SDK
    sdk_modules: ClassVar[tuple[str, ...]] = ()
    options_model: ClassVar[type[BaseModel]] = BackendOptions
    unsupported: ClassVar[Mapping[Feature, str]] = {}  # refused, with the reason
    ignored: ClassVar[Mapping[Feature, str]] = {}  # accepted; the plan notes the reason
    # How a job ended, as data: (regex on what the platform reports, Ending); the first match wins.
    # status() classifies a failed job with it; the supervisor (launcher.runs.supervisor) a refused submit.
    endings: ClassVar[tuple[tuple[str, Ending], ...]] = ()

    def ending_of(self, reported: str) -> Ending:
        """What `reported` (a failure reason, an error message) says of how a job ended; UNKNOWN when no row matches."""
        return classify(reported, self.endings)

    def options(self, spec: JobSpec) -> BaseModel:
        """This backend's validated options section of `spec`."""
        return spec.options_for(self.name, self.options_model)

    def require(self, feature: Feature) -> None:
        """Raise the uniform error when this backend lacks `feature`."""
        if feature in self.unsupported:
            raise LauncherError(
                f"The {self.name} backend does not support {feature.value}: {self.unsupported[feature]}"
            )

    @abc.abstractmethod
    def plan(self, spec: JobSpec, job_id: str | None = None) -> Plan:
        """Build the native request. Pure: no I/O, no clients, no environment.

        `job_id` names the job (unique per submission, chosen by the Launcher);
        without it the plan is named after `spec.name`, so plans are
        deterministic and golden files stay stable. The returned plan's
        `job_name` becomes the JobRef id.
        """

    @abc.abstractmethod
    def submit(self, plan: Plan, secrets: Mapping[str, str] | None = None) -> JobRef:
        """Send the plan's request. The only step with side effects.

        `secrets`: the values of `plan.secrets`, read once by the Launcher; None (a plan
        submitted without it) reads them with `secrets_for`.
        """

    def secrets_for(self, plan: Plan, secrets: Mapping[str, str] | None) -> dict[str, str]:
        """The values the Launcher read (the normal path), else read here from the injected environment."""
        environ = getattr(self, "_environ", None)
        source = secrets if secrets is not None else os.environ if environ is None else environ
        return secret_values(plan.secrets, source)

    @abc.abstractmethod
    def status(self, ref: JobRef) -> JobStatus: ...

    @abc.abstractmethod
    def logs(self, ref: JobRef, follow: bool = False) -> Iterator[str]:
        """Log lines of the job; with follow, until the job finishes."""

    @abc.abstractmethod
    def cancel(self, ref: JobRef) -> None: ...

    def offers(self, spec: JobSpec) -> list[Offer]:
        """Instance choices with prices for the estimator."""
        self.require(Feature.OFFERS)
        raise LauncherError(f"The {self.name} backend lists no offers yet.")

    def alternatives(self, spec: JobSpec) -> list[Alternative]:
        """The instances `spec` may run on, the plan's own choice first, then the next fits in the order the
        backend would choose them; [] when there is nothing to choose (the default: local runs here)."""
        return []

    def push_image(self, local_image: str, docker_client: object) -> str:
        """Push a locally built image to this backend's registry; return the pushed reference with digest."""
        self.require(Feature.IMAGE_PUSH)
        raise LauncherError(f"The {self.name} backend cannot push images.")

    def check(self) -> BackendCheck:
        """Is every SDK module a submit imports importable? Backends override to also probe credentials."""
        from launcher.lazy import EXTRA_MODULES, install_hint, missing_modules  # noqa: PLC0415

        # every module a submit imports, each for real: `google` being there says nothing of google.api_core
        missing = missing_modules((*self.sdk_modules, *EXTRA_MODULES.get(self.extra or "", ())))
        if missing:
            return BackendCheck(self.name, False, None, f"missing {', '.join(missing)}: {install_hint(self.extra)}")
        return BackendCheck(self.name, True, None, "ready")
