"""GCP Vertex AI backend: one CustomJob per job spec.

`plan()` builds the CustomJob REST body (camelCase, int64 as strings,
durations like "3600s") without importing any Google library:
https://cloud.google.com/vertex-ai/docs/reference/rest/v1/projects.locations.customJobs

- Worker pool 0 holds exactly one replica, the chief; pool 1 holds the other
  nodes - 1 replicas with the same machine. Vertex gives every replica
  CLUSTER_SPEC, from which the entrypoint derives the torchrun rendezvous
  (launcher.runtime.rendezvous.vertex).
  https://cloud.google.com/vertex-ai/docs/training/distributed-training
- The machine type and accelerator come from `gcp.machine_type` /
  `gcp.accelerator_type` or are chosen from `resources` through the dated
  catalog (launcher/catalog/gcp.json), which also holds the allowed counts.
- A gs:// checkpoint URI also becomes `baseOutputDirectory`, so Vertex sets
  AIP_CHECKPOINT_DIR / AIP_MODEL_DIR under the run's folder; the entrypoint's
  unified sync does the checkpoint I/O itself.
- Secrets are stored by `submit` in Secret Manager; the body only carries
  `gcp-sm:` references in LAUNCHER_SECRET_REFS, resolved in the container.

`submit`, `status` and `cancel` use aiplatform_v1.JobServiceClient, `logs`
reads Cloud Logging (resource.type="ml_job"); all clients are injected through
the constructor or created lazily on first use.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import re
import time
from typing import Any, Iterator, Literal, Mapping

from pydantic import Field, field_validator

from launcher.backend import BackendCheck, BackendOptions, Offer, follow_lines
from launcher.backends.cloud import CloudBackend
from launcher.catalog import select
from launcher.contract import ENTRYPOINT, SECRET_REFS_VARIABLE, EntrypointArgs, secret_ref, secret_refs_value
from launcher.errors import LauncherError
from launcher.lazy import require
from launcher.plan import Ending, JobRef, JobState, JobStatus, Plan
from launcher.spec import BUILTIN_DATASETS, JobSpec, Resources, check_location, refuse_azure_only
from launcher.staging.data import data_target, stage_local_data
from launcher.state.pushed import push, split_tag

__all__ = ["ENDINGS", "GcpOptions", "VertexBackend", "JOB_STATES", "secret_id", "parent_of"]

CLOUD = select.Cloud("Vertex AI", "machine", "gcp.machine_type")
_LABEL_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
# https://cloud.google.com/resource-manager/docs/creating-managing-projects#before_you_begin
_PROJECT_RE = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_REGION_RE = re.compile(r"^[a-z]+-[a-z]+[0-9]{1,2}$")  # us-central1, europe-west4, northamerica-northeast1
_SERVICE_ACCOUNT_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}@[a-z0-9][a-z0-9.-]{0,62}\.gserviceaccount\.com$")
LAUNCHER_LABEL_PREFIX = "launcher-"  # the job's own labels: launcher-job, launcher-spec
MAX_LABELS = 64  # per resource (https://cloud.google.com/resource-manager/docs/labels-overview#requirements)
OWN_LABELS = 2
_LABEL_VALUE_RE = re.compile(r"^[a-z0-9_-]{0,63}$")
_TENSORBOARD_RE = re.compile(r"^projects/[^/]+/locations/[^/]+/tensorboards/[0-9]+$")
_NETWORK_RE = re.compile(r"^projects/[^/]+/global/networks/[^/]+$")
_EXIT_RE = re.compile(r"non-zero status of (\d+)")
_SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]

# JobState enum -> our state. PAUSED and UPDATING are transient; EXPIRED and
# PARTIALLY_SUCCEEDED did not run to completion. https://cloud.google.com/vertex-ai/docs/reference/rest/v1/JobState
JOB_STATES: Mapping[str, JobState] = {
    "JOB_STATE_UNSPECIFIED": JobState.UNKNOWN,
    "JOB_STATE_QUEUED": JobState.PENDING,
    "JOB_STATE_PENDING": JobState.PENDING,
    "JOB_STATE_PAUSED": JobState.PENDING,
    "JOB_STATE_RUNNING": JobState.RUNNING,
    "JOB_STATE_UPDATING": JobState.RUNNING,
    "JOB_STATE_SUCCEEDED": JobState.SUCCEEDED,
    "JOB_STATE_FAILED": JobState.FAILED,
    "JOB_STATE_EXPIRED": JobState.FAILED,
    "JOB_STATE_PARTIALLY_SUCCEEDED": JobState.FAILED,
    "JOB_STATE_CANCELLING": JobState.STOPPING,
    "JOB_STATE_CANCELLED": JobState.STOPPED,
}


# google.rpc.Code numbers of a CustomJob's `error` (https://cloud.google.com/apis/design/errors#error_codes),
# named so that ENDINGS can read them with the message as "<NAME>: <message>".
RPC_CODES: Mapping[int, str] = {1: "CANCELLED", 3: "INVALID_ARGUMENT", 4: "DEADLINE_EXCEEDED", 5: "NOT_FOUND", 7: "PERMISSION_DENIED",
                                8: "RESOURCE_EXHAUSTED", 9: "FAILED_PRECONDITION", 10: "ABORTED", 13: "INTERNAL", 14: "UNAVAILABLE"}  # fmt: skip

# How a failed CustomJob ended -> Ending, matched against "<rpc code name>: <error.message>"; first match wins.
# Spot VMs: a preempted worker's job fails with a stockout or preemption error, and Vertex does not retry it
# (https://cloud.google.com/vertex-ai/docs/training/use-spot-vms); workers that exit with a general error fail
# the job as permanent (https://cloud.google.com/vertex-ai/docs/training/understanding-training-service).
ENDINGS: tuple[tuple[str, Ending], ...] = (
    (r"preempt", Ending.PREEMPTED),
    # the entrypoint's exit on the platform's SIGTERM (128 + 15): only a reclaim sends one to a job not cancelled
    (r"non-zero status of 143\b", Ending.PREEMPTED),
    # a stockout: "ZONE_RESOURCE_POOL_EXHAUSTED", "does not have enough resources available", or a quota
    (
        r"STOCKOUT|RESOURCE_POOL_EXHAUSTED|not have enough resources|resources are insufficient"
        r"|(^|: )RESOURCE_EXHAUSTED|quota",
        Ending.CAPACITY,
    ),
    (r"^(INTERNAL|UNAVAILABLE|ABORTED):", Ending.NODE_FAILURE),
    (
        r"non-zero status of \d+|^(INVALID_ARGUMENT|FAILED_PRECONDITION|PERMISSION_DENIED|NOT_FOUND|DEADLINE_EXCEEDED):",
        Ending.USER_ERROR,
    ),
)


class GcpOptions(BackendOptions):
    """The `gcp:` section of a job spec."""

    project: str | None = Field(None, description="GCP project id (required), e.g. ${GOOGLE_CLOUD_PROJECT}")
    region: str | None = Field(None, description="Vertex AI region (required), e.g. us-central1")
    staging_bucket: str | None = Field(
        None, description="gs://bucket/prefix for Vertex outputs when the checkpoint URI is not gs://"
    )
    machine_type: str | None = Field(None, description="Vertex machine type; default: cheapest that fits resources")
    accelerator_type: str | None = Field(None, description="NVIDIA_TESLA_T4, NVIDIA_L4, ... or T4, L4, A100, H100")
    service_account: str | None = Field(None, description="service account email the job runs as")
    network: str | None = Field(None, description="peered VPC: projects/PROJECT_NUMBER/global/networks/NAME")
    labels: dict[str, str] = Field(default_factory=dict, description="labels on the CustomJob")
    boot_disk_size_gb: int = Field(100, ge=100, le=64000, description="boot disk per replica (GB)")
    boot_disk_type: Literal["pd-ssd", "pd-standard"] = Field("pd-ssd", description="pd-ssd or pd-standard")
    secrets_project: str | None = Field(None, description="project holding the job's secrets; default: project")
    tensorboard: str | None = Field(
        None,
        description="Vertex AI TensorBoard instance the job writes to: its ID or projects/P/locations/R/tensorboards/ID",
    )

    @field_validator("staging_bucket")
    @classmethod
    def _bucket(cls, value: str | None) -> str | None:
        if value and "://" in value and not value.startswith("gs://"):
            raise ValueError(
                f"'{value}' is not a gs:// bucket; Vertex AI stages outputs in Cloud Storage: write gs://BUCKET/prefix"
            )
        if value:
            check_location(value if value.startswith("gs://") else f"gs://{value}", "a staging bucket")
        if value and not value.startswith("gs://"):
            value = f"gs://{value}"
        return value.rstrip("/") if value else value

    @field_validator("network")
    @classmethod
    def _network(cls, value: str | None) -> str | None:
        if value and not _NETWORK_RE.match(value):
            raise ValueError(
                f"'{value}' is not a network name; write it as projects/PROJECT_NUMBER/global/networks/NAME"
            )
        return value

    @field_validator("tensorboard")
    @classmethod
    def _tensorboard(cls, value: str | None) -> str | None:
        if value and not (_TENSORBOARD_RE.match(value) or re.fullmatch(r"[0-9]{1,30}", value)):  # ASCII: not '٣'
            raise ValueError(
                f"'{value}' is not a TensorBoard instance; write its ID or projects/P/locations/R/tensorboards/ID"
            )
        return value

    @field_validator("service_account")
    @classmethod
    def _account(cls, value: str | None) -> str | None:
        if value and not _SERVICE_ACCOUNT_RE.match(value):
            raise ValueError(f"'{value[:80]}' is not a service account email (NAME@PROJECT.iam.gserviceaccount.com)")
        return value

    @field_validator("project", "secrets_project")
    @classmethod
    def _project(cls, value: str | None) -> str | None:
        if value is not None and not _PROJECT_RE.match(value):
            raise ValueError(
                f"'{value[:40]}' is not a GCP project id: 6-30 lowercase letters, digits and dashes, "
                "starting with a letter, not ending with a dash"
            )
        return value

    @field_validator("region")
    @classmethod
    def _region(cls, value: str | None) -> str | None:
        if value is not None and not _REGION_RE.match(value):
            raise ValueError(f"'{value[:40]}' is not a Vertex AI region; write it like us-central1 or europe-west4")
        return value

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > MAX_LABELS - OWN_LABELS:
            raise ValueError(
                f"{len(value)} labels; Vertex AI allows {MAX_LABELS} on a job, and the launcher adds "
                f"{OWN_LABELS} of its own: keep at most {MAX_LABELS - OWN_LABELS}"
            )
        for key, item in value.items():
            if key.startswith(LAUNCHER_LABEL_PREFIX):
                raise ValueError(
                    f"label {key}: {LAUNCHER_LABEL_PREFIX}* labels are the launcher's own (the job "
                    "and the spec); choose another key"
                )
            if not _LABEL_RE.match(key) or not _LABEL_VALUE_RE.match(str(item)):
                raise ValueError(
                    f"label {key}={item} is not valid; keys and values use lowercase letters, digits, '_' and '-' "
                    "(keys start with a letter, at most 63 characters)"
                )
        return value


# ---------------------------------------------------------------- pure helpers


def parent_of(options: GcpOptions) -> str:
    return f"projects/{options.project}/locations/{options.region}"


def secret_id(spec_name: str, name: str) -> str:
    """The Secret Manager secret holding `name` for this job spec (stable across submissions)."""
    return f"launcher-{spec_name}-{name}"


def _secret_ref(options: GcpOptions, spec_name: str, name: str) -> str:
    project = options.secrets_project or options.project
    return secret_ref("gcp-sm", f"projects/{project}/secrets/{secret_id(spec_name, name)}/versions/latest")


def _accelerator_enum(catalog: Mapping[str, Any], value: str) -> str:
    """'T4', 't4' or 'NVIDIA_TESLA_T4' -> 'NVIDIA_TESLA_T4'."""
    accelerators = catalog["accelerators"]
    wanted = value.strip().upper()
    if wanted in accelerators:
        return wanted
    for enum, info in accelerators.items():
        if info["gpu_type"] == wanted:
            return enum
    known = ", ".join(f"{info['gpu_type']} ({enum})" for enum, info in accelerators.items())
    raise LauncherError(f"Vertex AI has no accelerator '{value}' in the catalog.", f"Use one of: {known}.")


def _label_value(text: str) -> str:
    return re.sub(r"[^a-z0-9_-]", "-", text.lower())[:63]


class VertexBackend(CloudBackend):
    """Vertex AI custom jobs. Clients are injected or created lazily per region."""

    name = "gcp"
    extra = "gcp"
    sdk_modules = ("google.cloud.aiplatform",)
    options_model = GcpOptions
    endings = ENDINGS
    # a catalog instance is a machine type with its accelerator: the next fit after a capacity error (launcher.runs.supervisor)
    instance_options = {"machine_type": "machine_type", "accelerator_type": "accelerator_type"}

    def __init__(
        self,
        job_client: Any = None,
        logging_client: Any = None,
        secrets_client: Any = None,
        credentials: Any = None,
        catalog: Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
        project: str | None = None,
        region: str | None = None,
        repository: str = "launcher",
        poll_s: float = 10.0,
        pushed_image: str | None = None,
    ) -> None:
        """`pushed_image` replaces the spec's default local image tag; by default it is the
        reference `launch image build --push -b gcp` recorded, read here, once, so that
        `plan` stays free of I/O. `environ` is where submit reads secret values."""
        super().__init__(catalog, pushed_image)
        self._job_client = job_client  # injected: used for every region
        self._job_clients: dict[str | None, Any] = {}
        self._logging_client = logging_client
        self._secrets_client = secrets_client
        self._credentials = credentials
        self._environ = environ
        self._project = project
        self._region = region
        self._repository = repository  # Artifact Registry docker repository for push_image
        self.poll_s = poll_s

    # ------------------------------------------------------------ plan (pure)

    def options(self, spec: JobSpec) -> GcpOptions:  # type: ignore[override]
        return spec.options_for(self.name, GcpOptions)  # type: ignore[return-value]

    def plan(self, spec: JobSpec, job_id: str | None = None) -> Plan:
        options = self.options(spec)
        _require_location(options)
        refuse_azure_only(spec, self.name)
        job_name = job_id or spec.name
        notes = [f"parent: {parent_of(options)}"]
        machine = self.machine(spec, options, notes)
        notes.append(f"machine: {machine.name} x {spec.resources.nodes} node(s)")
        if _local_image(self.training_image(spec)):
            notes.append(f"image {spec.image} is a local name; push it first: launch image build --push -b gcp")
        select.price_note(machine, options.region, notes)
        timeout = select.runtime_limit(spec, machine, notes)
        job_spec: dict[str, Any] = {"workerPoolSpecs": self._pools(spec, options, machine, timeout)}
        output = _output_directory(spec, options, notes)
        if output:
            job_spec["baseOutputDirectory"] = {"outputUriPrefix": output}
        scheduling = _scheduling(spec, timeout)
        if scheduling:
            job_spec["scheduling"] = scheduling
        if options.service_account:
            job_spec["serviceAccount"] = options.service_account
        if options.tensorboard:
            job_spec["tensorboard"] = _tensorboard(options, output)
        if options.network:
            job_spec["network"] = options.network
        payload = {"displayName": job_name, "jobSpec": job_spec, "labels": _labels(spec, options, job_name)}
        return Plan(self.name, job_name, spec, payload, secrets=tuple(spec.secrets), notes=tuple(notes))

    def machine(self, spec: JobSpec, options: GcpOptions, notes: list[str] | None = None) -> select.Choice:
        """The catalog instance (machine type + accelerator + count) this spec runs on (launcher.catalog.select)."""
        res = self._resources(spec, options)
        if options.machine_type:
            return select.named(self.catalog, self._named_machine(spec, options), res, options.region, CLOUD, notes)
        return select.choose(self.catalog, res, options.region, CLOUD)

    def _resources(self, spec: JobSpec, options: GcpOptions) -> Resources:
        """spec.resources, with gcp.accelerator_type as the GPU type it stands for."""
        if not options.accelerator_type:
            return spec.resources
        enum = _accelerator_enum(self.catalog, options.accelerator_type)
        return spec.resources.model_copy(update={"gpu_type": self.catalog["accelerators"][enum]["gpu_type"]})

    def _named_machine(self, spec: JobSpec, options: GcpOptions) -> str:
        """Vertex's own part: a machine type and accelerator expand into one catalog instance."""
        machine_type = str(options.machine_type)
        info = self.catalog["machine_types"].get(machine_type)
        if info is None:
            raise LauncherError(
                f"Unknown Vertex AI machine type '{machine_type}'.",
                f"Use one of: {', '.join(self.catalog['machine_types'])}, or leave gcp.machine_type out to choose from resources.",
            )
        gpus = spec.resources.gpus
        options_for = [(a, n) for a, counts in info["accelerators"].items() for n in counts]
        if not gpus and info.get("gpu_required") and len(options_for) == 1:
            return self._instance_for(machine_type, *options_for[0], info)  # gpus: 0 takes the machine's own GPUs
        wanted = options.accelerator_type or spec.resources.gpu_type
        accel = _accelerator_enum(self.catalog, wanted) if wanted else None
        if gpus and accel is None and len(info["accelerators"]) == 1:
            accel = next(iter(info["accelerators"]))
        if gpus and accel is None:
            raise LauncherError(
                f"{machine_type} takes several accelerator types and none was given.",
                f"Set resources.gpu_type or gcp.accelerator_type to one of: {', '.join(info['accelerators'])}.",
            )
        return self._instance_for(machine_type, accel if gpus else None, gpus, info)

    def _instance_for(self, machine_type: str, accel: str | None, gpus: int, info: Mapping[str, Any]) -> str:
        for name, inst in self.catalog["instances"].items():
            if inst["machine_type"] == machine_type and inst["accelerator_type"] == accel and inst["gpus"] == gpus:
                return name
        allowed = "; ".join(f"{t}: {', '.join(map(str, counts))}" for t, counts in info["accelerators"].items())
        if accel and accel not in info["accelerators"]:
            raise LauncherError(f"{machine_type} cannot take {accel}.", f"It allows {allowed or 'no accelerators'}.")
        what = f"{gpus} x {accel}" if gpus else "no GPU"
        hint = (
            "set resources.gpus to an allowed count"
            if info.get("gpu_required") or gpus
            else "pick another machine type"
        )
        raise LauncherError(f"{machine_type} does not allow {what}.", f"It allows {allowed} GPUs per node: {hint}.")

    def _pools(
        self, spec: JobSpec, options: GcpOptions, machine: select.Choice, timeout: int | None
    ) -> list[dict[str, Any]]:
        row = machine.row
        machine_spec: dict[str, Any] = {"machineType": row["machine_type"]}
        if row["accelerator_type"]:
            machine_spec["acceleratorType"] = row["accelerator_type"]
            machine_spec["acceleratorCount"] = row["accelerator_count"]
        pool = {
            "machineSpec": machine_spec,
            "replicaCount": "1",  # int64 -> JSON string
            "diskSpec": {"bootDiskType": options.boot_disk_type, "bootDiskSizeGb": options.boot_disk_size_gb},
            "containerSpec": {
                "imageUri": self.training_image(spec),
                "command": list(ENTRYPOINT),
                "args": EntrypointArgs.for_spec(
                    spec,
                    gpus=machine.gpus,
                    checkpoint_uri=spec.checkpoint.uri,
                    data=_container_data(spec),
                    max_runtime=timeout,
                ).to_argv(),  # fmt: skip
                "env": _env(spec, options),
            },
        }
        pools = [pool]
        if spec.resources.nodes > 1:  # pool 0 must hold exactly one replica: the chief
            pools.append({**pool, "replicaCount": str(spec.resources.nodes - 1)})
        return pools

    # ------------------------------------------------------------ submit / follow

    def submit(self, plan: Plan, secrets: Mapping[str, str] | None = None) -> JobRef:
        """`secrets`: the values of plan.secrets, read once by the Launcher (else from `environ`)."""
        values = self.secrets_for(plan, secrets)
        options = self.options(plan.spec)
        _require_location(options)
        image = plan.payload["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]["imageUri"]
        if _local_image(image):
            raise LauncherError(
                f"The image {image} exists only on this machine; Vertex AI cannot pull it.",
                "Push it with: launch image build --push -b gcp, then set image: to the pushed reference.",
            )
        plan = stage_local_data(plan)  # a local data folder, uploaded once (content-keyed)
        if plan.secrets:
            with _vertex_errors("store the job's secrets in Secret Manager"):
                self._store_secrets(plan, options, values)
        aiplatform = require("google.cloud.aiplatform_v1", "gcp")
        job = aiplatform.CustomJob.from_json(json.dumps(plan.request()))
        with _vertex_errors(f"create Vertex AI job {plan.job_name}"):
            created = self._jobs(options.region).create_custom_job(parent=parent_of(options), custom_job=job)
        extra = {"project": options.project, "region": options.region}
        return JobRef(plan.job_name, self.name, created.name, extra)

    def status(self, ref: JobRef) -> JobStatus:
        with _vertex_errors(f"read the status of Vertex AI job {ref.id}"):
            job = self._jobs(_region_of(ref)).get_custom_job(name=ref.native_id)
        native = job.state.name if hasattr(job.state, "name") else str(job.state)
        state = JOB_STATES.get(native, JobState.UNKNOWN)
        message = job.error.message if job.error and job.error.message else ""
        exit_code, ending = None, None
        match = _EXIT_RE.search(message)
        if state is JobState.FAILED and match:
            exit_code = int(match.group(1))
        if state is JobState.FAILED:
            code = int(job.error.code) if job.error else 0
            ending = self.ending_of(f"{RPC_CODES.get(code, str(code))}: {message or native}")
        return JobStatus(state, message or native, exit_code, native, ending=ending)

    def cancel(self, ref: JobRef) -> None:
        with _vertex_errors(f"cancel Vertex AI job {ref.id}"):
            self._jobs(_region_of(ref)).cancel_custom_job(name=ref.native_id)

    def logs(self, ref: JobRef, follow: bool = False) -> Iterator[str]:
        """Container output from Cloud Logging; with follow, polls until the job finishes."""
        job_id = ref.native_id.rsplit("/", 1)[-1]
        base = f'resource.type="ml_job" AND resource.labels.job_id="{job_id}"'
        cursor = {"after": ""}

        def new_lines() -> Iterator[str]:
            for timestamp, line in self._log_entries(ref, base, cursor["after"]):
                cursor["after"] = timestamp or cursor["after"]
                yield line

        yield from follow_lines(new_lines, lambda: self.status(ref).finished, follow, time.sleep, self.poll_s)

    def _log_entries(self, ref: JobRef, base: str, after: str) -> Iterator[tuple[str, str]]:
        exceptions = require("google.api_core.exceptions", "gcp")
        query = f'{base} AND timestamp>"{after}"' if after else base
        client = self._logs_client(_location_of(ref)[0])
        try:
            for entry in client.list_entries(filter_=query, order_by="timestamp asc"):
                yield _timestamp(entry), _payload_text(entry.payload)
        except (exceptions.PermissionDenied, exceptions.Forbidden) as exc:
            raise LauncherError(
                f"Cannot read the logs of {ref.id}: Cloud Logging denied access ({exc.message}).",
                "Grant your account roles/logging.viewer on the project, or open the job in the Cloud Console.",
            ) from None

    # ------------------------------------------------------------ offers, image, check

    def offers(self, spec: JobSpec) -> list[Offer]:
        """Fitting machines priced in the spec's region, or in every catalog region when it names none."""
        options = self.options(spec)
        regions = [options.region] if options.region else list(self.catalog["regions"])
        names = [self.machine(spec, options).name] if options.machine_type else None
        res = self._resources(spec, options)
        rows = [
            self._offer(spec, c, region)
            for region in regions
            for c in select.offer_rows(self.catalog, res, region, names)
        ]
        return sorted(rows, key=lambda o: (o.price_per_hour, o.instance, o.region))

    def _offer(self, spec: JobSpec, choice: select.Choice, region: str) -> Offer:
        inst = choice.row
        details = {k: inst[k] for k in ("machine_type", "accelerator_type", "accelerator_count", "vcpus", "memory_gib")}
        details["price_region"] = choice.region
        return Offer(
            self.name, choice.name, inst["gpu_type"], inst["gpus"], spec.resources.nodes, float(choice.price or 0.0),
            spec.resources.spot, region, float(self.catalog.get("startup_s", 0)), details,
        )  # fmt: skip

    def push_image(self, local_image: str, docker_client: object) -> str:
        """Tag and push to Artifact Registry ({region}-docker.pkg.dev/{project}/{repo}/name:tag)."""
        credentials, project = self._google_credentials()
        project = self._project or project
        region = self._region or self._env().get("CLOUDSDK_COMPUTE_REGION") or str(self.catalog["default_region"])
        if not project:
            raise LauncherError(
                "No GCP project for the image push.",
                "Set GOOGLE_CLOUD_PROJECT or run: gcloud config set project PROJECT.",
            )
        base, tag = split_tag(local_image)
        host = f"{region}-docker.pkg.dev"
        repository = f"{host}/{project}/{self._repository}/{base.rsplit('/', 1)[-1]}"
        auth = {"username": "oauth2accesstoken", "password": _access_token(credentials)}
        docker_client.login(registry=f"https://{host}", **auth)  # type: ignore[attr-defined]
        docker_client.images.get(local_image).tag(repository, tag=tag)  # type: ignore[attr-defined]
        return f"{repository}@{push(docker_client, repository, tag, auth, _PUSH_FIX)}"

    def check(self) -> BackendCheck:
        base = super().check()
        if not base.sdk:
            return base
        try:
            _, project = self._google_credentials()
        except LauncherError as exc:
            return BackendCheck(self.name, True, False, str(exc))
        return BackendCheck(self.name, True, True, f"credentials found (project {project or 'not set'})")

    # ------------------------------------------------------------ clients

    def _env(self) -> Mapping[str, str]:
        return os.environ if self._environ is None else self._environ

    def _google_credentials(self) -> tuple[Any, str | None]:
        if self._credentials is not None:
            return self._credentials, self._project
        auth = require("google.auth", "gcp")
        errors = require("google.auth.exceptions", "gcp")
        try:
            return auth.default(scopes=_SCOPES)
        except errors.DefaultCredentialsError:
            raise LauncherError(
                "No Google Cloud credentials found.", "Run: gcloud auth application-default login"
            ) from None

    def _jobs(self, region: str | None) -> Any:
        """The job service client of `region`: Vertex serves each region at its own endpoint."""
        if self._job_client is not None:
            return self._job_client
        if region not in self._job_clients:
            aiplatform = require("google.cloud.aiplatform_v1", "gcp")
            endpoint = {"api_endpoint": f"{region}-aiplatform.googleapis.com"}
            self._job_clients[region] = aiplatform.JobServiceClient(
                credentials=self._credentials, client_options=endpoint
            )
        return self._job_clients[region]

    def _logs_client(self, project: str | None) -> Any:
        if self._logging_client is None:
            logging = require("google.cloud.logging", "gcp")
            self._logging_client = logging.Client(project=project, credentials=self._credentials)
        return self._logging_client

    def _secrets(self) -> Any:
        if self._secrets_client is None:
            secretmanager = require("google.cloud.secretmanager", "gcp")
            self._secrets_client = secretmanager.SecretManagerServiceClient(credentials=self._credentials)
        return self._secrets_client

    def _store_secrets(self, plan: Plan, options: GcpOptions, values: Mapping[str, str]) -> None:
        """Add each secret's current value as a new version of its Secret Manager secret."""
        exceptions = require("google.api_core.exceptions", "gcp")
        client = self._secrets()
        project = f"projects/{options.secrets_project or options.project}"
        for name in plan.secrets:
            sid = secret_id(plan.spec.name, name)
            try:
                client.create_secret(parent=project, secret_id=sid, secret={"replication": {"automatic": {}}})
            except exceptions.Conflict:  # AlreadyExists over gRPC, HTTP 409 over REST
                pass  # a later submission of the same spec adds a new version
            client.add_secret_version(parent=f"{project}/secrets/{sid}", payload={"data": values[name].encode()})


# ---------------------------------------------------------------- plan pieces


# google.rpc status -> the fix a user can apply (https://cloud.google.com/vertex-ai/docs/general/troubleshooting)
_FIXES = {
    "RESOURCE_EXHAUSTED": "Request more Vertex AI quota for that machine or GPU in the region (IAM & Admin > Quotas), "
    "or choose another gcp.machine_type, accelerator or gcp.region.",
    "PERMISSION_DENIED": "Grant your account roles/aiplatform.user on gcp.project (and enable the Vertex AI API).",
    "UNAUTHENTICATED": "Run `gcloud auth application-default login`, or set GOOGLE_APPLICATION_CREDENTIALS.",
    "NOT_FOUND": "Check gcp.project and gcp.region, and that the job still exists.",
    "INVALID_ARGUMENT": "Fix the request's value that the message names (launch --dry-run shows the request).",
    "FAILED_PRECONDITION": "Do what the message asks first (an API to enable, a resource to create).",
    "UNAVAILABLE": "Vertex AI is unavailable for now: try again in a minute.",
    "DEADLINE_EXCEEDED": "Vertex AI did not answer in time: try again in a minute.",
    "INTERNAL": "Vertex AI failed internally: try again in a minute.",
}
# the HTTP error classes google.api_core raises over REST, by the status gRPC would have named
_HTTP_STATUS = {"TooManyRequests": "RESOURCE_EXHAUSTED", "Forbidden": "PERMISSION_DENIED",
                "Unauthorized": "UNAUTHENTICATED", "BadRequest": "INVALID_ARGUMENT", "ServiceUnavailable": "UNAVAILABLE",
                "GatewayTimeout": "DEADLINE_EXCEEDED", "InternalServerError": "INTERNAL"}  # fmt: skip
_REST_PREFIX = re.compile(r"^[A-Z]+ https?://\S+: ")  # "POST https://...: " before the service's own message


@contextlib.contextmanager
def _vertex_errors(action: str) -> Iterator[None]:
    """Every Vertex AI and Secret Manager SDK error as one sentence and a fix (a LauncherError, which the CLI prints
    in one line and a supervised run reads with ENDINGS: a quota refusal is a capacity error, retried elsewhere)."""
    try:
        yield
    except LauncherError:
        raise
    except Exception as exc:  # noqa: BLE001 - translated here, in one place, for every SDK call
        raise _vertex_error(exc, action) from None


def _vertex_error(exc: Exception, action: str) -> LauncherError:
    first = (str(exc).splitlines() or [type(exc).__name__])[0][:300]
    if "google.auth" in type(exc).__module__:
        return LauncherError(f"Could not {action}: no usable GCP credentials ({first}).", _FIXES["UNAUTHENTICATED"])
    if not (hasattr(exc, "code") and hasattr(exc, "message")):  # not a google.api_core GoogleAPICallError
        return LauncherError(
            f"Could not {action}: {first}.", "Check your network and GCP configuration (gcloud config list)."
        )
    status = _status_of(exc)
    message = _REST_PREFIX.sub("", str(exc.message)).splitlines()[0][:300].rstrip(".") if exc.message else first  # type: ignore[attr-defined]
    fix = _FIXES.get(status, "See the Vertex AI message above.")
    return LauncherError(f"Could not {action}: {status}: {message}.", fix)


def _status_of(exc: Any) -> str:
    """The google.rpc status of an api_core error, over gRPC or REST (where the error body names it)."""
    if getattr(exc, "grpc_status_code", None) is not None:
        return str(exc.grpc_status_code.name)
    try:
        status = exc.response.json()["error"]["status"]
        if isinstance(status, str) and status:
            return status
    except Exception:  # noqa: BLE001 - no response, or not JSON: fall back to the class
        pass
    for cls in type(exc).__mro__:
        if cls.__name__ in _HTTP_STATUS:
            return _HTTP_STATUS[cls.__name__]
    return str(getattr(exc, "code", "") or type(exc).__name__)


def _require_location(options: GcpOptions) -> None:
    for key, example in (("project", "my-project  # or ${GOOGLE_CLOUD_PROJECT}"), ("region", "us-central1")):
        if not getattr(options, key):
            raise LauncherError(
                f"The gcp backend needs gcp.{key}.", f"Add it to the job spec: gcp: {{{key}: {example}}}."
            )


def _local_image(image: str) -> bool:
    """A bare name like 'torch-launcher-train:latest' names no registry Vertex can pull from."""
    return "/" not in image


def _scheduling(spec: JobSpec, timeout: int | None) -> dict[str, Any]:
    # A static torchrun rendezvous cannot absorb one worker leaving and coming back:
    # restart the whole job (it resumes from the checkpoint) when any worker restarts.
    scheduling: dict[str, Any] = {"restartJobOnWorkerRestart": True} if spec.resources.nodes > 1 else {}
    if timeout:
        scheduling["timeout"] = f"{timeout}s"
    if spec.resources.spot:
        scheduling["strategy"] = "SPOT"  # https://cloud.google.com/vertex-ai/docs/training/use-spot-vms
    return scheduling


def _env(spec: JobSpec, options: GcpOptions) -> list[dict[str, str]]:
    env = [{"name": k, "value": v} for k, v in spec.env.items()]
    if spec.secrets:
        refs = {name: _secret_ref(options, spec.name, name) for name in spec.secrets}
        env.append({"name": SECRET_REFS_VARIABLE, "value": secret_refs_value(refs)})
    return env


def _tensorboard(options: GcpOptions, output: str | None) -> str:
    """The instance's full name. Vertex writes TensorBoard logs only with a service account and an output directory
    (AIP_TENSORBOARD_LOG_DIR lies under it): https://cloud.google.com/vertex-ai/docs/experiments/tensorboard-training"""
    if not options.service_account:
        raise LauncherError(
            "gcp.tensorboard needs gcp.service_account: Vertex AI uploads TensorBoard logs as that account.",
            "Set gcp.service_account to an account with roles/storage.admin and roles/aiplatform.user.",
        )
    if not output:
        raise LauncherError(
            "gcp.tensorboard needs an output directory for AIP_TENSORBOARD_LOG_DIR.",
            "Use a gs:// checkpoint.uri, or set gcp.staging_bucket.",
        )
    name = str(options.tensorboard)
    if name.isdigit():
        name = f"projects/{options.project}/locations/{options.region}/tensorboards/{name}"
    return name


def _output_directory(spec: JobSpec, options: GcpOptions, notes: list[str]) -> str | None:
    """gs:// checkpoints: the run's folder, where Vertex points AIP_CHECKPOINT_DIR and AIP_MODEL_DIR."""
    uri = spec.checkpoint.uri
    _check_data(spec)
    if not spec.command and (target := data_target(spec)):
        notes.append(
            f"train.data {spec.train.data} is uploaded at submit to {target} (unchanged content is not sent again)"
        )
    if uri and uri.startswith("gs://"):
        return f"{uri.rstrip('/')}/{spec.name}"
    if uri and uri.startswith(("s3://", "az://")):
        notes.append(
            f"checkpoints: {uri} is synced from inside the container by the launcher's checkpoint sync, "
            "not by Vertex; give the container credentials for that store through secrets"
        )
    elif uri and not uri.startswith("/gcs/"):
        raise LauncherError(
            f"The checkpoint path {uri} is on this machine, which Vertex AI jobs cannot reach.",
            "Use a gs://bucket/prefix URI (Vertex mounts it as /gcs/bucket/prefix), or s3:// / az:// synced by the container.",
        )
    if options.staging_bucket:
        return f"{options.staging_bucket}/{spec.name}"
    return None


def _check_data(spec: JobSpec) -> None:
    data = spec.train.data
    if (
        spec.command
        or data in BUILTIN_DATASETS
        or "://" in data
        or data.startswith("/gcs/")
        or data_target(spec) is not None
    ):
        return  # data_target: a local folder with a remote store is uploaded at submit
    raise LauncherError(
        f"The training data {data} is on this machine, which Vertex AI jobs cannot reach.",
        "Upload it (gsutil -m cp -r DIR gs://bucket/data) and set train.data to the gs:// URI or its /gcs/bucket/data mount.",
    )


def _container_data(spec: JobSpec) -> str | None:
    """train.data as the container reads it, when it differs from the spec's: gs:// through the
    Cloud Storage FUSE mount Vertex gives every job at /gcs/<bucket>/ (no download, no credentials);
    a local folder from where submit uploads it. Other URIs (s3://, az://) the entrypoint fetches.
    https://cloud.google.com/vertex-ai/docs/training/cloud-storage-file-system"""
    data = data_target(spec) or spec.train.data
    if data.startswith("gs://"):
        return "/gcs/" + data.removeprefix("gs://")
    return data if data != spec.train.data else None


def _labels(spec: JobSpec, options: GcpOptions, job_name: str) -> dict[str, str]:
    return {"launcher-job": _label_value(job_name), "launcher-spec": _label_value(spec.name), **options.labels}


# ---------------------------------------------------------------- client helpers


def _location_of(ref: JobRef) -> tuple[str | None, str | None]:
    """(project, region) of a job, from its resource name projects/P/locations/R/customJobs/ID."""
    parts = ref.native_id.split("/")
    if len(parts) == 6:
        return parts[1], parts[3]
    return ref.extra.get("project"), ref.extra.get("region")


def _region_of(ref: JobRef) -> str | None:
    return _location_of(ref)[1]


def _timestamp(entry: Any) -> str:
    """RFC 3339 in UTC, as Cloud Logging filters compare timestamps."""
    stamp = getattr(entry, "timestamp", None)
    if stamp is None:
        return ""
    return stamp.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _payload_text(payload: Any) -> str:
    if isinstance(payload, Mapping):
        return str(payload.get("message", json.dumps(dict(payload), sort_keys=True)))
    return "" if payload is None else str(payload).rstrip("\n")


def _access_token(credentials: Any) -> str:
    transport = require("google.auth.transport.requests", "gcp")
    credentials.refresh(transport.Request())
    return str(credentials.token)


_PUSH_FIX = "Check that the Artifact Registry repository exists (gcloud artifacts repositories create launcher --repository-format=docker) and that you may write to it."
