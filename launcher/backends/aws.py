"""AWS SageMaker: one job spec -> one CreateTrainingJob request.

`plan(spec)` is pure: it reads only the spec and the shipped price catalog and
returns the exact CreateTrainingJob request. Everything with side effects
(storing secrets, creating the default output bucket, creating the job,
reading CloudWatch, stopping, pushing the image) goes through boto3 clients
that are injected through the constructor or made lazily from a session.

Decisions worth knowing:

- The container runs `python -m launcher.runtime.entrypoint ...` through
  `ContainerEntrypoint` / `ContainerArguments` (each argument at most 256
  characters, at most 100 of them), so the same image works on every backend.
  SageMaker passes no SM_* variables to a plain image; the entrypoint reads
  /opt/ml/input/config/resourceconfig.json for the rendezvous.
- Checkpoints on S3 use BOTH the entrypoint's manifest sync
  (`--checkpoint-uri <uri> --save-dir /opt/ml/checkpoints`), which writes the
  unified layout `<uri>/<job>/{manifest.json, manifests/, files/N/...}`, and
  SageMaker's CheckpointConfig (LocalPath /opt/ml/checkpoints), but
  CheckpointConfig.S3Uri is `<uri>/<job>/sagemaker`, NOT the run folder
  itself. Pointed at the run folder the two would fight: SageMaker mirrors
  the trainer's flat folder next to our layout, and on every (spot) restart it
  downloads the WHOLE prefix into LocalPath, so our `files/`, `manifests/` and
  `manifest.json` would land in the trainer's folder and the syncer would
  upload them again, nested one level deeper, at each restart. With the
  mirror in its own sub-prefix SageMaker restores only the trainer's own
  files; the entrypoint's pull then overwrites them with the newest complete,
  verified checkpoint, and readers that trust only manifests (`launch ckpt`,
  other backends) never look in `sagemaker/`. The cost is a second upload of
  each checkpoint; the gain is SageMaker's own restore and its upload of what
  the trainer writes in the 120 s after SIGTERM, should our flush not finish.
  https://docs.aws.amazon.com/sagemaker/latest/dg/model-checkpoints.html
- A `gs://` or `az://` checkpoint URI gets no CheckpointConfig: node 0's
  entrypoint syncs it itself (the job then needs credentials for that store,
  e.g. through `secrets`). A local path is refused: a SageMaker job cannot
  reach it.
- Secrets are never in the request: `submit` stores each value from the local
  environment in Secrets Manager as `<secrets_prefix>/<NAME>` and the request
  carries only `LAUNCHER_SECRET_REFS` = {"NAME": "aws-sm:<prefix>/<NAME>"},
  resolved inside the container. The job's role needs
  secretsmanager:GetSecretValue on those secrets.
- Region and role are validated in `plan`, from the spec only (a pure plan
  may not read ~/.aws or the environment); `${AWS_REGION}` in the YAML is the
  way to take them from the environment, at load time.
"""

from __future__ import annotations

import base64
import difflib
import hashlib
import json
import re
import time
from dataclasses import replace
from typing import Any, Callable, Iterator, Literal, Mapping

from pydantic import Field, field_validator, model_validator

from launcher.backend import BackendCheck, BackendOptions, Offer, follow_lines
from launcher.backends.cloud import CloudBackend
from launcher.catalog import select
from launcher.contract import (
    ENTRYPOINT,
    SECRET_REFS_VARIABLE,
    EntrypointArgs,
    log_regexes,
    secret_ref,
    secret_refs_value,
)
from launcher.errors import LauncherError, SpecError
from launcher.plan import Ending, JobRef, JobState, JobStatus, Plan, classify
from launcher.spec import BUILTIN_DATASETS, JobSpec, refuse_azure_only
from launcher.staging.data import data_target, stage_local_data
from launcher.state.pushed import push, split_tag

__all__ = [
    "SageMakerBackend",
    "AwsOptions",
    "sagemaker_job_name",
    "map_status",
    "LOG_GROUP",
    "CHECKPOINT_DIR",
    "CHECKPOINT_MIRROR",
    "DATA_DIR",
    "ENTRYPOINT",
]

LOG_GROUP = "/aws/sagemaker/TrainingJobs"
CHECKPOINT_DIR = "/opt/ml/checkpoints"
CHECKPOINT_MIRROR = "sagemaker"  # CheckpointConfig sub-prefix of the run folder; see the module docstring
DATA_CHANNEL = "train"
DATA_DIR = f"/opt/ml/input/data/{DATA_CHANNEL}"
DEFAULT_RUNTIME_S = 86_400  # SageMaker's own default MaxRuntimeInSeconds (1 day)
MAX_RUNTIME_S = 28 * 86_400  # SageMaker's upper limit for MaxRuntimeInSeconds
ARG_MAX, ARGS_MAX = 256, 100  # TrainingContainerArgument length / list size (service model)
ENV_VALUE_MAX, ENV_MAX = 512, 100  # TrainingEnvironmentMap
REGION_VARIABLES = ("AWS_DEFAULT_REGION", "AWS_REGION")
NAME_MAX = 63
TAG_PREFIX = "torch-launcher"

_NAME_OK = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
_REGION_RE = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d{1,2}$")
_ROLE_RE = re.compile(r"^arn:aws[a-z\-]*:iam::(\d{12}):role/?[a-zA-Z_0-9+=,.@\-_/]+$")
_ECR_RE = re.compile(
    r"^\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/[a-z0-9][a-z0-9._/-]*(:[\w.-]+|@sha256:[0-9a-f]{64})?$"
)
_S3_RE = re.compile(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$")
_SECRET_PREFIX_RE = re.compile(r"^[A-Za-z0-9/_+=.@-]{1,256}$")
_TAG_RE = re.compile(r"^[\w\s.:/=+\-@]*$")


class AwsOptions(BackendOptions):
    """The `aws:` section of a job spec."""

    region: str | None = Field(
        None, description="AWS region of the job, e.g. us-east-1 (use ${AWS_REGION} to take it from the environment)"
    )
    role_arn: str | None = Field(None, description="IAM role SageMaker assumes: arn:aws:iam::ACCOUNT:role/NAME")
    instance_type: str | None = Field(
        None, description="ml.* training instance; default: the cheapest that fits resources"
    )
    image_uri: str | None = Field(
        None, description="training image in ECR (overrides `image`); from `launch image build --push -b aws`"
    )
    output_uri: str | None = Field(
        None, description="s3:// prefix for /opt/ml/model output; default s3://sagemaker-REGION-ACCOUNT/torch-launcher"
    )
    subnets: list[str] = Field(default_factory=list, description="VPC subnet ids (with security_group_ids)")
    security_group_ids: list[str] = Field(default_factory=list, description="VPC security group ids (with subnets)")
    volume_size_gb: int = Field(50, ge=1, le=16384, description="EBS volume per instance, GB")
    keep_alive_s: int | None = Field(
        None, ge=0, le=21600, description="warm pool: keep instances this long after the job for the next one"
    )
    max_retries: int | None = Field(
        None, ge=1, le=30, description="SageMaker RetryStrategy: retries on internal errors"
    )
    max_wait_s: int | None = Field(
        None, ge=1, le=28 * 86400, description="spot: total time to wait for capacity plus run (default 2 x runtime)"
    )
    secrets_prefix: str | None = Field(
        None, description="Secrets Manager name prefix; default torch-launcher/<job name>"
    )
    tags: dict[str, str] = Field(default_factory=dict, description="extra tags on the training job")
    input_mode: Literal["File", "FastFile", "stream"] = Field(
        "File",
        description="how an s3:// train.data reaches the job: File (all downloaded before the container starts), "
        "FastFile (read on demand through a mount; suits a packed dataset's large shards), stream (no channel: the trainer "
        "reads the store itself and streams a packed dataset; the role needs s3:GetObject and s3:ListBucket)",
    )

    @field_validator("region")
    @classmethod
    def _region(cls, value: str | None) -> str | None:
        if value is not None and not _REGION_RE.match(value):
            raise ValueError(f"'{value}' is not an AWS region; write it like us-east-1")
        return value

    @field_validator("role_arn")
    @classmethod
    def _role(cls, value: str | None) -> str | None:
        if value is not None and not _ROLE_RE.match(value):
            raise ValueError(
                f"'{value}' is not an IAM role ARN; write it like arn:aws:iam::123456789012:role/SageMakerRole"
            )
        return value

    @field_validator("image_uri")
    @classmethod
    def _image_uri(cls, value: str | None) -> str | None:
        from launcher.spec import JobSpec  # noqa: PLC0415

        return None if value is None else JobSpec._image(value)  # the same reference grammar as `image:`

    @field_validator("output_uri")
    @classmethod
    def _output(cls, value: str | None) -> str | None:
        if value is not None and not _S3_RE.match(value):
            raise ValueError(f"'{value}' is not an s3:// URI; write it like s3://my-bucket/prefix")
        return value.rstrip("/") if value else value

    @field_validator("secrets_prefix")
    @classmethod
    def _prefix(cls, value: str | None) -> str | None:
        if value is not None and not _SECRET_PREFIX_RE.match(value):
            raise ValueError("secrets_prefix may use only letters, digits and /_+=.@-")
        if value is not None and not value.strip("/"):  # it would fall back to the default, torch-launcher/<name>
            raise ValueError(f"'{value}' names no prefix; write one like team/vision, or remove secrets_prefix")
        return value.strip("/") if value else value

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: dict[str, str]) -> dict[str, str]:
        for key, val in value.items():
            if not key or len(key) > 128 or len(str(val)) > 256 or key.lower().startswith("aws:"):
                raise ValueError(
                    f"tag '{key[:60]}': keys are 1-128 characters not starting with 'aws:', values at most 256"
                )
            if key.lower().startswith(f"{TAG_PREFIX}:"):
                raise ValueError(
                    f"tag '{key}': {TAG_PREFIX}: tags are the launcher's own (the job's name and "
                    "spec hash); choose another key"
                )
            if not (_TAG_RE.match(key) and _TAG_RE.match(str(val))):
                raise ValueError(f"tag '{key}': use only letters, digits, spaces and _.:/=+-@")
        return value

    @model_validator(mode="after")
    def _vpc(self) -> "AwsOptions":
        if bool(self.subnets) != bool(self.security_group_ids):
            raise ValueError("subnets and security_group_ids go together; set both or neither")
        return self


def metric_definitions(spec: JobSpec) -> list[dict[str, str]]:
    """The trainer's epoch summary lines, so the SageMaker console and CloudWatch plot each metric
    (https://docs.aws.amazon.com/sagemaker/latest/dg/training-metrics.html); with the ultralytics
    engine, the task's mAPs too."""
    regexes = log_regexes(spec.train.engine, spec.train.yolo_task())
    return [{"Name": name, "Regex": regex} for name, regex in regexes.items()]


def sagemaker_job_name(job_id: str) -> str:
    """A valid TrainingJobName (<= 63 chars, [a-zA-Z0-9](-*[a-zA-Z0-9])*) derived from our job id.

    Long ids keep their head and get a hash of the whole id, so two ids that
    differ only in their (timestamp, random) tail still get different names.
    """
    name = re.sub(r"[^A-Za-z0-9-]+", "-", job_id).strip("-")
    if not name:
        raise LauncherError(
            f"'{job_id}' cannot name a SageMaker job.", "Use letters, digits and dashes in the job name."
        )
    if len(name) > NAME_MAX:
        digest = hashlib.sha256(job_id.encode()).hexdigest()[:8]
        name = f"{name[: NAME_MAX - 9].rstrip('-')}-{digest}"
    return name


# ---------------------------------------------------------------- catalog


CLOUD = select.Cloud("SageMaker", "training instance type", "aws.instance_type")


# ---------------------------------------------------------------- status


_RUNNING_SECONDARY = {"Training", "Uploading"}

# How a failed SageMaker job ended, read from its FailureReason, which starts with the error's kind
# (DescribeTrainingJob: https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_DescribeTrainingJob.html).
# The same rows read a refused CreateTrainingJob (its error code and message). First match wins.
ENDINGS: tuple[tuple[str, Ending], ...] = (
    # "CapacityError: Unable to provision requested ML compute capacity": AWS Batch reads SageMaker's capacity
    # failures the same way (https://docs.aws.amazon.com/batch/latest/userguide/sm_job_stuck_in_runnable_capacity.html)
    (r"^CapacityError|InsufficientInstanceCapacity|InsufficientCapacity|ML compute capacity", Ending.CAPACITY),
    # an account quota for the instance type (https://docs.aws.amazon.com/sagemaker/latest/dg/regions-quotas.html)
    (r"ResourceLimitExceeded", Ending.CAPACITY),
    # managed spot: the instance was reclaimed (https://docs.aws.amazon.com/sagemaker/latest/dg/model-managed-spot-training.html)
    (r"spot (instance|capacity).*(interrupt|reclaim)|interrupted", Ending.PREEMPTED),
    # SageMaker's own failure: "InternalServerError: We encountered an internal error. Please try again."
    (r"^InternalServerError|InternalFailure|ServiceUnavailable|ThrottlingException", Ending.NODE_FAILURE),
    # the container's own exit code, or a request SageMaker refused
    (r"^AlgorithmError|^ClientError|ValidationException|AccessDenied", Ending.USER_ERROR),
)


def _ending(native: str, secondary: str, reason: str, desc: Mapping[str, Any]) -> Ending | None:
    """Why a job that did not succeed ended (None while it runs, on success and on a user's stop)."""
    if native == "Failed":
        return classify(reason, ENDINGS)
    if native == "Stopped" and secondary == "MaxWaitTimeExceeded":
        # spot capacity never came (back) within MaxWaitTimeInSeconds: reclaimed once (an Interrupted
        # transition) is a preemption, never started is a capacity shortage (the AWS Batch page above)
        transitions = [t.get("Status") for t in desc.get("SecondaryStatusTransitions") or ()]
        return Ending.PREEMPTED if "Interrupted" in transitions else Ending.CAPACITY
    if native == "Stopped" and secondary == "MaxRuntimeExceeded":
        return Ending.USER_ERROR  # the spec's own limit: a new attempt would hit it again
    return None


def map_status(desc: Mapping[str, Any]) -> JobStatus:
    """DescribeTrainingJob -> JobStatus. Stopped and MaxRuntimeExceeded are failures, never success."""
    native, secondary = desc.get("TrainingJobStatus", ""), desc.get("SecondaryStatus", "")
    reason = desc.get("FailureReason", "")
    details = {k: desc[k] for k in ("SecondaryStatus", "BillableTimeInSeconds", "TrainingTimeInSeconds") if k in desc}
    if native == "InProgress":
        state = JobState.RUNNING if secondary in _RUNNING_SECONDARY else JobState.PENDING
        message = (
            "spot capacity was interrupted; waiting to restart"
            if secondary in ("Interrupted", "Restarting")
            else secondary
        )
    elif native == "Completed":
        state, message = JobState.SUCCEEDED, ""
    elif native == "Stopping":
        state, message = JobState.STOPPING, "stop requested"
    elif native == "Stopped" and secondary in ("MaxRuntimeExceeded", "MaxWaitTimeExceeded"):
        limit = {"MaxRuntimeExceeded": "runtime limit (StoppingCondition.MaxRuntimeInSeconds)",
                 "MaxWaitTimeExceeded": "spot wait limit (MaxWaitTimeInSeconds)"}[secondary]  # fmt: skip
        state, message = JobState.FAILED, f"{secondary}: the job hit its {limit}" + (f"; {reason}" if reason else "")
    elif native == "Stopped":
        state, message = JobState.STOPPED, reason or "the job was stopped before it finished"
    elif native == "Failed":
        state, message = JobState.FAILED, reason or f"failed ({secondary})"
    else:
        state, message = JobState.UNKNOWN, f"SageMaker status {native or 'missing'}"
    return JobStatus(state, message, None, native, details, _ending(native, secondary, reason, desc))


# ---------------------------------------------------------------- backend


class SageMakerBackend(CloudBackend):
    """Training jobs on AWS SageMaker, with the project's own image and entrypoint."""

    name = "aws"
    extra = "aws"
    sdk_modules = ("boto3",)
    options_model = AwsOptions
    endings = ENDINGS
    instance_options = {"instance_type": "name"}  # the next fit after a capacity error (launcher.runs.supervisor)

    def __init__(
        self,
        session: Any = None,
        *,
        clients: Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
        catalog: Mapping[str, Any] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        poll_s: float = 10.0,
        pushed_image: str | None = None,
    ) -> None:
        """`session` is a boto3.Session; `clients` maps service names to ready clients (tests, Stubber).

        `environ` is where `submit` reads secret values (default os.environ).
        `pushed_image` replaces the spec's default local image tag; by default
        it is the reference `launch image build --push -b aws` recorded, read
        here, once, so that `plan` itself stays free of I/O.
        """
        super().__init__(catalog, pushed_image)
        self._session = session
        self._clients: dict[Any, Any] = dict(clients or {})
        self._environ = environ
        self._sleep = sleep
        self.poll_s = poll_s

    # ------------------------------------------------------------ helpers

    def _client(self, service: str, region: str | None = None) -> Any:
        if service in self._clients:
            return self._clients[service]
        key = (service, region)
        if key not in self._clients:
            if self._session is None:
                from launcher.lazy import require  # noqa: PLC0415

                self._session = require("boto3", "aws").Session()
            self._clients[key] = self._session.client(service, region_name=region)
        return self._clients[key]

    # ------------------------------------------------------------ plan (pure)

    def plan(self, spec: JobSpec, job_id: str | None = None) -> Plan:
        opts: AwsOptions = self.options(spec)  # type: ignore[assignment]
        refuse_azure_only(spec, self.name)
        region, role = self._region(opts), self._role(opts)
        job = sagemaker_job_name(job_id or spec.name)
        notes: list[str] = []
        choice = self._instance(spec, opts, notes)
        instance, gpus = choice.name, choice.gpus
        data_arg, channels = self._data(spec, notes, opts.input_mode)
        stopping = self._stopping(spec, opts, choice, notes)
        limited = spec.limits.max_runtime or spec.limits.max_cost
        max_runtime = stopping["MaxRuntimeInSeconds"] if limited else None
        request: dict[str, Any] = {
            "TrainingJobName": job,
            "RoleArn": role,
            "AlgorithmSpecification": {
                "TrainingImage": self._image(spec, opts, notes),
                "TrainingInputMode": "File",
                "MetricDefinitions": metric_definitions(spec),
                "ContainerEntrypoint": list(ENTRYPOINT),
                "ContainerArguments": self._arguments(spec, gpus, data_arg, max_runtime),
            },
            "ResourceConfig": self._resources(spec, opts, instance),
            "StoppingCondition": stopping,
            "OutputDataConfig": {"S3OutputPath": self._output(opts, region, role, notes)},
            "Environment": self._environment(spec, opts, region),
            "Tags": self._tags(spec, opts),
        }
        if channels:
            request["InputDataConfig"] = channels
        request.update(self._checkpoint(spec, notes))
        if spec.resources.spot:
            request["EnableManagedSpotTraining"] = True
            if not spec.checkpoint.uri:
                notes.append(
                    "spot without checkpoint.uri: after an interruption SageMaker restarts training from scratch"
                )
        if opts.subnets:
            request["VpcConfig"] = {"Subnets": list(opts.subnets), "SecurityGroupIds": list(opts.security_group_ids)}
        if opts.max_retries:
            request["RetryStrategy"] = {"MaximumRetryAttempts": opts.max_retries}
        return Plan(self.name, job, spec, request, secrets=tuple(spec.secrets), notes=tuple(notes))

    def _region(self, opts: AwsOptions) -> str:
        if not opts.region:
            raise LauncherError(
                "The aws backend needs a region and the job spec sets none.",
                "Add `aws: {region: us-east-1}` to the job spec (or `region: ${AWS_REGION}`), or pass --set aws.region=us-east-1.",
            )
        known = self.catalog.get("regions", [])
        if known and opts.region not in known:
            close = difflib.get_close_matches(opts.region, known, n=1)
            hint = f"did you mean {close[0]}?" if close else f"use one of {', '.join(known[:6])}, ..."
            raise LauncherError(
                f"SageMaker is not offered in region '{opts.region}'.", f"Set aws.region to a SageMaker region; {hint}"
            )
        return opts.region

    def _role(self, opts: AwsOptions) -> str:
        if not opts.role_arn:
            raise LauncherError(
                "The aws backend needs the IAM role SageMaker runs the job as, and the job spec sets none.",
                "Add `aws: {role_arn: arn:aws:iam::ACCOUNT:role/NAME}` (a role with AmazonSageMakerFullAccess or narrower), "
                "or pass --set aws.role_arn=...",
            )
        return opts.role_arn

    def _instance(self, spec: JobSpec, opts: AwsOptions, notes: list[str]) -> select.Choice:
        """The named instance type, else the cheapest that fits (launcher.catalog.select)."""
        if opts.instance_type:
            return select.named(self.catalog, opts.instance_type, spec.resources, opts.region, CLOUD, notes)
        return select.choose(self.catalog, spec.resources, opts.region, CLOUD)

    def _image(self, spec: JobSpec, opts: AwsOptions, notes: list[str]) -> str:
        """The ECR image; a non-ECR image still plans (so --dry-run works) but cannot be submitted."""
        image = opts.image_uri or self.training_image(spec)
        if not _is_ecr(image):
            notes.append(f"image {image} is not in Amazon ECR yet: submit will refuse until it is pushed")
        return image

    def _data(self, spec: JobSpec, notes: list[str], mode: str = "File") -> tuple[str, list[dict[str, Any]]]:
        """The trainer's data= value and the S3 input channel, if any.

        A local folder is uploaded at submit to `<checkpoint.uri>/_data/<content hash>/`
        (launcher.staging.data); the plan names it with the hash as a placeholder.
        """
        data = spec.train.data
        if (target := data_target(spec)) is not None:
            notes.append(f"train.data {data} is uploaded at submit to {target} (unchanged content is not sent again)")
            data = target
        if data.startswith("s3://"):
            if not _S3_RE.match(data):
                raise LauncherError(
                    f"train.data '{data}' is not a valid s3:// URI.", "Write it like s3://bucket/prefix."
                )
            if mode == "stream":
                notes.append(
                    f"train.data {data} is read by the trainer from S3 (aws.input_mode: stream), with no input channel"
                )
                return data, []
            source = {"S3DataType": "S3Prefix", "S3Uri": data, "S3DataDistributionType": "FullyReplicated"}
            return DATA_DIR, [{"ChannelName": DATA_CHANNEL, "DataSource": {"S3DataSource": source}, "InputMode": mode}]
        if data in BUILTIN_DATASETS:
            return data, []
        if data.startswith(("gs://", "az://")):
            notes.append(
                f"train.data {data} is read by the trainer from inside the job; it needs credentials for that store."
            )
            return data, []
        raise LauncherError(
            f"train.data '{data}' is a local folder, which a SageMaker job cannot read.",
            "Upload it (aws s3 sync DIR s3://BUCKET/PREFIX) and set train.data to that s3:// URI.",
        )

    def _arguments(self, spec: JobSpec, gpus: int, data_arg: str, max_runtime: int | None) -> list[str]:
        """ContainerArguments per the container contract; each at most 256 characters."""
        uri = spec.checkpoint.uri
        save_dir = CHECKPOINT_DIR if uri and uri.startswith("s3://") else None
        contract = EntrypointArgs.for_spec(
            spec, gpus=gpus, checkpoint_uri=uri, data=data_arg, save_dir=save_dir, max_runtime=max_runtime
        )
        args = contract.to_argv()
        for arg in args:
            if len(arg) > ARG_MAX:
                raise LauncherError(
                    f"The container argument '{arg[:40]}...' is {len(arg)} characters; SageMaker allows {ARG_MAX}.",
                    "Shorten that value (a shorter URI or command argument).",
                )
        if len(args) > ARGS_MAX:
            raise LauncherError(
                f"The container command has {len(args)} arguments; SageMaker allows {ARGS_MAX}.", "Shorten `command`."
            )
        return args

    def _resources(self, spec: JobSpec, opts: AwsOptions, instance: str) -> dict[str, Any]:
        config: dict[str, Any] = {
            "InstanceType": instance,
            "InstanceCount": spec.resources.nodes,
            "VolumeSizeInGB": opts.volume_size_gb,
        }
        if opts.keep_alive_s:
            # Warm pools are not available with managed spot training:
            # https://docs.aws.amazon.com/sagemaker/latest/dg/train-warm-pools.html#train-warm-pools-considerations
            if spec.resources.spot:
                raise LauncherError(
                    "aws.keep_alive_s (warm pools) cannot be combined with spot training.", "Remove one of them."
                )
            config["KeepAlivePeriodInSeconds"] = opts.keep_alive_s
        return config

    def _stopping(self, spec: JobSpec, opts: AwsOptions, choice: select.Choice, notes: list[str]) -> dict[str, int]:
        # Limits: https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_StoppingCondition.html
        asked = spec.limits.max_runtime
        if asked and asked > MAX_RUNTIME_S:
            raise LauncherError(
                f"limits.max_runtime is {asked} s; SageMaker allows at most 28 days.",
                "Lower limits.max_runtime to 28d or less.",
            )
        select.price_note(choice, opts.region, notes)
        limit = select.runtime_limit(spec, choice, notes)
        # without limits.max_runtime, SageMaker's own default still bounds a budget-capped runtime
        runtime = limit if asked else min(limit or DEFAULT_RUNTIME_S, DEFAULT_RUNTIME_S)
        condition = {"MaxRuntimeInSeconds": runtime}
        if opts.max_wait_s and not spec.resources.spot:  # SageMaker takes MaxWaitTimeInSeconds only for spot
            raise SpecError(
                "aws.max_wait_s: a wait for spot capacity, but resources.spot is false.",
                "Remove aws.max_wait_s, or set resources.spot: true.",
            )
        if spec.resources.spot:
            wait = opts.max_wait_s or 2 * runtime
            if wait < runtime:
                raise LauncherError(
                    f"aws.max_wait_s ({wait}) is shorter than the runtime limit ({runtime} s).",
                    f"Set aws.max_wait_s to at least {runtime}.",
                )
            condition["MaxWaitTimeInSeconds"] = wait
        return condition

    def _output(self, opts: AwsOptions, region: str, role: str, notes: list[str]) -> str:
        if opts.output_uri:
            return opts.output_uri
        account = _ROLE_RE.match(role).group(1)  # type: ignore[union-attr]
        notes.append(
            "output goes to the SageMaker default bucket, created at submit if missing (set aws.output_uri to choose)"
        )
        return f"s3://sagemaker-{region}-{account}/{TAG_PREFIX}"

    def _environment(self, spec: JobSpec, opts: AwsOptions, region: str) -> dict[str, str]:
        for name in REGION_VARIABLES:  # the region secrets are looked up in, in the container: the launcher's
            if name in spec.secrets or spec.env.get(name, region) != region:
                where = "secrets" if name in spec.secrets else f"env.{name}"
                raise SpecError(
                    f"{where}: {name} is the job's region, which the launcher sets to {region} "
                    "(aws.region); another would send the job's secret lookups elsewhere.",
                    f"Remove {name}, or set aws.region.",
                )
        env = {"AWS_DEFAULT_REGION": region, "PYTHONUNBUFFERED": "1", **spec.env}
        if spec.secrets:
            prefix = opts.secrets_prefix or f"{TAG_PREFIX}/{spec.name}"
            refs = {name: secret_ref("aws-sm", f"{prefix}/{name}") for name in spec.secrets}
            env[SECRET_REFS_VARIABLE] = secret_refs_value(refs)
        for key, value in env.items():
            if len(key) > ENV_VALUE_MAX:
                raise SpecError(
                    f"env: a variable name is {len(key)} characters; SageMaker allows {ENV_VALUE_MAX}.", "Shorten it."
                )
            if len(value) > ENV_VALUE_MAX:
                raise LauncherError(
                    f"Environment value {key} is {len(value)} characters; SageMaker allows {ENV_VALUE_MAX}.",
                    "Shorten it.",
                )
        if len(env) > ENV_MAX:
            raise LauncherError(
                f"The job has {len(env)} environment variables; SageMaker allows {ENV_MAX}.", "Remove some from env."
            )
        return env

    def _tags(self, spec: JobSpec, opts: AwsOptions) -> list[dict[str, str]]:
        tags = {f"{TAG_PREFIX}:name": spec.name, f"{TAG_PREFIX}:spec-hash": spec.spec_hash(), **opts.tags}
        if len(tags) > 50:
            raise LauncherError(f"The job has {len(tags)} tags; SageMaker allows 50.", "Remove some of aws.tags.")
        return [{"Key": k, "Value": v} for k, v in tags.items()]

    def _checkpoint(self, spec: JobSpec, notes: list[str]) -> dict[str, Any]:
        uri = spec.checkpoint.uri
        if not uri:
            return {}
        if uri.startswith("s3://"):
            if not _S3_RE.match(uri):
                raise LauncherError(
                    f"checkpoint.uri '{uri}' is not a valid s3:// URI.", "Write it like s3://bucket/prefix."
                )
            mirror = f"{uri.rstrip('/')}/{spec.name}/{CHECKPOINT_MIRROR}"
            return {"CheckpointConfig": {"S3Uri": mirror, "LocalPath": CHECKPOINT_DIR}}
        if uri.startswith(("gs://", "az://")):
            notes.append(
                f"checkpoint.uri {uri} is not S3, so SageMaker does not sync it: node 0's entrypoint uploads each "
                "checkpoint and its manifest itself, which needs credentials for that store inside the job (see `secrets`)"
            )
            return {}
        raise LauncherError(
            f"checkpoint.uri '{uri}' is a local path, which a SageMaker job cannot write to.",
            "Use an s3:// URI (SageMaker and the entrypoint sync checkpoints there), or gs:// / az:// (synced by the entrypoint).",
        )

    # ------------------------------------------------------------ submit

    def submit(self, plan: Plan, secrets: Mapping[str, str] | None = None) -> JobRef:
        """`secrets`: the values of plan.secrets, read once by the Launcher (else from `environ`)."""
        values = self.secrets_for(plan, secrets)
        request = plan.request()
        image = request["AlgorithmSpecification"]["TrainingImage"]
        if not _is_ecr(image):
            raise LauncherError(
                f"The image '{image}' is not in Amazon ECR, and SageMaker pulls training images only from ECR.",
                "Run `launch image build --push -b aws` (later plans use the pushed digest), or set aws.image_uri to an ECR reference.",
            )
        opts: AwsOptions = self.options(plan.spec)  # type: ignore[assignment]
        region = opts.region
        plan = stage_local_data(plan, s3=self._client("s3", region))  # a local data folder, uploaded once
        request = plan.request()
        self._store_secrets(request.get("Environment", {}), region, values)
        if not opts.output_uri:
            self._ensure_bucket(request["OutputDataConfig"]["S3OutputPath"], region)
        try:
            response = self._client("sagemaker", region).create_training_job(**request)
        except Exception as exc:  # botocore errors, mapped to one sentence and a fix
            raise _aws_error(exc, f"create SageMaker job {plan.job_name}") from None
        instance = request["ResourceConfig"]["InstanceType"]
        on_demand = select.price(instance, self.catalog, region, spot=False).on_demand
        extra = {
            "region": region,
            "arn": response.get("TrainingJobArn", ""),
            "instance_type": instance,
            "instance_count": request["ResourceConfig"]["InstanceCount"],
            "spot": bool(request.get("EnableManagedSpotTraining")),
            "on_demand_per_hour": on_demand,
        }
        return JobRef(plan.job_name, self.name, plan.job_name, extra)

    def _store_secrets(self, environment: Mapping[str, str], region: str | None, values: Mapping[str, str]) -> None:
        """Put each referenced secret's value into Secrets Manager (create, or add a new version)."""
        refs = json.loads(environment.get(SECRET_REFS_VARIABLE) or "{}")
        if not refs:
            return
        client = self._client("secretsmanager", region)
        for name, ref in refs.items():
            secret_id = ref.removeprefix("aws-sm:")
            try:
                client.create_secret(
                    Name=secret_id, SecretString=values[name], Tags=[{"Key": f"{TAG_PREFIX}:managed", "Value": "true"}]
                )
            except client.exceptions.ResourceExistsException:
                client.put_secret_value(SecretId=secret_id, SecretString=values[name])
            except Exception as exc:
                raise _aws_error(exc, f"store secret {name} in Secrets Manager") from None

    def _ensure_bucket(self, uri: str, region: str | None) -> None:
        """Create the SageMaker default bucket when it does not exist yet, as the SageMaker SDK does."""
        bucket = uri.removeprefix("s3://").split("/", 1)[0]
        s3 = self._client("s3", region)
        try:
            s3.head_bucket(Bucket=bucket)
            return
        except Exception as exc:
            if _error_code(exc) not in ("404", "NoSuchBucket", "NotFound"):
                raise _aws_error(exc, f"check bucket {bucket}") from None
        kwargs: dict[str, Any] = {"Bucket": bucket}
        if region and region != "us-east-1":  # us-east-1 rejects an explicit LocationConstraint
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        try:
            s3.create_bucket(**kwargs)
        except Exception as exc:
            raise _aws_error(exc, f"create bucket {bucket}") from None

    # ------------------------------------------------------------ status, logs, cancel

    def status(self, ref: JobRef) -> JobStatus:
        try:
            desc = self._client("sagemaker", ref.extra.get("region")).describe_training_job(
                TrainingJobName=ref.native_id
            )
        except Exception as exc:
            raise _aws_error(exc, f"describe SageMaker job {ref.native_id}") from None
        status = map_status(desc)
        metrics = self._metrics(ref, desc) if status.finished else {}
        return replace(status, details={**status.details, "metrics": metrics}) if metrics else status

    @staticmethod
    def _metrics(ref: JobRef, desc: Mapping[str, Any]) -> dict[str, Any]:
        """Billable time and managed-spot savings, as SageMaker reports them (the Launcher records them)."""
        billable, training = desc.get("BillableTimeInSeconds"), desc.get("TrainingTimeInSeconds")
        if billable is None:
            return {}
        count = int(ref.extra.get("instance_count") or desc.get("ResourceConfig", {}).get("InstanceCount", 1))
        metrics: dict[str, Any] = {"billable_seconds": billable, "training_seconds": training, "instance_count": count}
        if desc.get("EnableManagedSpotTraining") and training:
            metrics["spot_savings_pct"] = round(100.0 * (1 - billable / training), 1)
        price = ref.extra.get("on_demand_per_hour")
        if price:
            # SageMaker bills BillableTimeInSeconds per instance at the listed price
            # https://docs.aws.amazon.com/sagemaker/latest/dg/model-managed-spot-training.html
            metrics["cost_usd"] = round(billable * count * float(price) / 3600, 4)
        return metrics

    def logs(self, ref: JobRef, follow: bool = False) -> Iterator[str]:
        """Lines from the job's CloudWatch streams `<job>/algo-N-<ts>`, oldest first per host.

        The log group and the streams appear only once a container prints, so
        a missing group means "nothing yet", never an error. With `follow`,
        the job's status is read before each pass, and one last pass runs after
        it has finished, so the final lines are not lost.
        """
        client = self._client("logs", ref.extra.get("region"))
        tokens: dict[str, str | None] = {}
        many = int(ref.extra.get("instance_count") or 1) > 1
        passes = follow_lines(lambda: self._new_lines(client, ref.native_id, tokens, many), lambda: self.status(ref).finished,
                              follow, self._sleep, self.poll_s)  # fmt: skip
        yield from passes

    def _new_lines(self, client: Any, job: str, tokens: dict[str, str | None], many: bool) -> Iterator[str]:
        for stream in self._streams(client, job):
            host = stream.split("/", 1)[1].rsplit("-", 1)[0]
            token = tokens.get(stream)
            while True:
                kwargs: dict[str, Any] = {"logGroupName": LOG_GROUP, "logStreamName": stream, "startFromHead": True}
                if token:
                    kwargs["nextToken"] = token
                page = client.get_log_events(**kwargs)
                for event in page["events"]:
                    yield f"[{host}] {event['message'].rstrip()}" if many else event["message"].rstrip()
                done = not page["events"] or page.get("nextForwardToken") == token
                token = page.get("nextForwardToken", token)
                if done:
                    break
            tokens[stream] = token

    def _streams(self, client: Any, job: str) -> list[str]:
        names: list[str] = []
        kwargs: dict[str, Any] = {"logGroupName": LOG_GROUP, "logStreamNamePrefix": f"{job}/"}
        while True:
            try:
                page = client.describe_log_streams(**kwargs)
            except client.exceptions.ResourceNotFoundException:
                return []  # the group is created with the first log line of any job in the account/region
            names += [s["logStreamName"] for s in page.get("logStreams", [])]
            if not page.get("nextToken"):
                return sorted(names)
            kwargs["nextToken"] = page["nextToken"]

    def cancel(self, ref: JobRef) -> None:
        """StopTrainingJob: SageMaker sends SIGTERM, waits 120 s, then kills; the entrypoint saves and flushes."""
        try:
            self._client("sagemaker", ref.extra.get("region")).stop_training_job(TrainingJobName=ref.native_id)
        except Exception as exc:
            raise _aws_error(exc, f"stop SageMaker job {ref.native_id}") from None

    # ------------------------------------------------------------ estimator, image, check

    def offers(self, spec: JobSpec) -> list[Offer]:
        """One row per catalog instance that fits, priced in the spec's region (or the catalog's default)."""
        opts: AwsOptions = self.options(spec)  # type: ignore[assignment]
        names = [self._instance(spec, opts, []).name] if opts.instance_type else None
        return [
            self._offer(spec, choice) for choice in select.offer_rows(self.catalog, spec.resources, opts.region, names)
        ]

    def _offer(self, spec: JobSpec, choice: select.Choice) -> Offer:
        row, spot = choice.row, spec.resources.spot
        return Offer(
            backend=self.name,
            instance=choice.name,
            gpu_type=row.get("gpu_type"),
            gpus=row["gpus"],
            nodes=spec.resources.nodes,
            price_per_hour=float(choice.price or 0.0),
            spot=spot,
            region=choice.region,
            startup_s=float(self.catalog.get("startup_s", 0)),
            details={"vcpus": row["vcpus"], "memory_gib": row["memory_gib"], "on_demand": choice.on_demand,
                     "spot_estimate": row["prices"][choice.region].get("spot"), "catalog_date": self.catalog.get("date", "")},
        )  # fmt: skip

    def push_image(self, local_image: str, docker_client: object) -> str:
        """Tag and push a local image to ECR (repository created if missing); return `<repo>@sha256:...`."""
        repo, tag = split_tag(local_image)
        repo_name = repo.split("/")[-1]
        ecr = self._client("ecr", self._default_region())
        uri = self._ecr_repository(ecr, repo_name)
        username, password, registry = self._ecr_login(ecr)
        image = docker_client.images.get(local_image)  # type: ignore[attr-defined]
        image.tag(uri, tag=tag)
        auth = {"username": username, "password": password}
        fix = f"Check the repository policy and your ECR permissions, then retry (registry {registry})."
        return f"{uri}@{push(docker_client, uri, tag, auth, fix)}"

    def _default_region(self) -> str:
        """The region of an injected ECR client, else of the session (AWS_REGION, ~/.aws/config)."""
        region = getattr(getattr(self._clients.get("ecr"), "meta", None), "region_name", None)
        if region is None:
            if self._session is None:
                from launcher.lazy import require  # noqa: PLC0415

                self._session = require("boto3", "aws").Session()
            region = self._session.region_name
        if not region:
            raise LauncherError(
                "No AWS region is configured for the image push.",
                "Set AWS_REGION (or run `aws configure set region us-east-1`).",
            )
        return region

    @staticmethod
    def _ecr_repository(ecr: Any, name: str) -> str:
        try:
            return ecr.describe_repositories(repositoryNames=[name])["repositories"][0]["repositoryUri"]
        except ecr.exceptions.RepositoryNotFoundException:
            pass
        try:
            created = ecr.create_repository(repositoryName=name, imageScanningConfiguration={"scanOnPush": True})
        except Exception as exc:
            raise _aws_error(exc, f"create ECR repository {name}") from None
        return created["repository"]["repositoryUri"]

    @staticmethod
    def _ecr_login(ecr: Any) -> tuple[str, str, str]:
        try:
            data = ecr.get_authorization_token()["authorizationData"][0]
        except Exception as exc:
            raise _aws_error(exc, "get an ECR login token") from None
        username, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
        return username, password, data.get("proxyEndpoint", "")

    def check(self) -> BackendCheck:
        """SDK importable, and credentials usable (STS GetCallerIdentity, which needs no permissions)."""
        base = super().check()
        if not base.sdk:
            return base
        try:
            who = self._client("sts", None).get_caller_identity()
        except Exception as exc:
            return BackendCheck(
                self.name, True, False, f"no usable AWS credentials ({_aws_error(exc, 'identify').message})"
            )
        return BackendCheck(self.name, True, True, f"account {who['Account']} as {who['Arn']}")


# ---------------------------------------------------------------- errors


def _is_ecr(image: str) -> bool:
    return bool(_ECR_RE.match(image)) and len(image) <= 255


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


_FIXES = {
    "ResourceLimitExceeded": "Request a higher 'training job usage' quota for that instance type in Service Quotas, or pick another type.",
    "AccessDeniedException": "Grant your identity the SageMaker permissions it needs (and iam:PassRole on the job's role).",
    "AccessDenied": "Grant your identity the permissions this step needs.",
    "ValidationException": "Fix the value the message names; `launch -b aws JOB.yaml --dry-run` shows the request.",
    "ResourceInUse": "A job with this name exists already; submit again for a new name.",
    "ExpiredTokenException": "Refresh your AWS credentials (aws sso login, or new session keys).",
    "UnrecognizedClientException": "Check your AWS credentials (aws sts get-caller-identity).",
}


def _aws_error(exc: Exception, action: str) -> LauncherError:
    """A botocore error as one sentence and a fix."""
    name = type(exc).__name__
    if name in ("NoCredentialsError", "PartialCredentialsError"):
        return LauncherError(
            f"Could not {action}: no AWS credentials were found.",
            "Run `aws configure` or `aws sso login`, or set AWS_PROFILE.",
        )
    if name == "NoRegionError":
        return LauncherError(
            f"Could not {action}: no AWS region is configured.", "Set aws.region in the job spec or AWS_REGION."
        )
    code = _error_code(exc)
    if code:
        message = getattr(exc, "response", {}).get("Error", {}).get("Message", "") or str(exc)
        return LauncherError(
            f"Could not {action}: {code}: {message.rstrip('.')}.", _FIXES.get(code, "See the AWS message above.")
        )
    if isinstance(exc, LauncherError):
        return exc
    return LauncherError(f"Could not {action}: {exc}.", "Check your network and AWS configuration.")
