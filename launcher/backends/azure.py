"""Azure ML backend: one command job per spec, PyTorch distribution, one process per node.

`plan(spec)` is pure and imports no Azure library: its payload is the command
job in the azure-ai-ml YAML shape (https://learn.microsoft.com/azure/machine-learning/reference-yaml-job-command),
which `submit` loads with `azure.ai.ml.load_job` and sends with
`MLClient.jobs.create_or_update`. Decisions recorded here:

- `distribution: {type: pytorch, process_count_per_instance: 1}`: Azure ML
  then sets MASTER_ADDR, MASTER_PORT, WORLD_SIZE (= nodes) and NODE_RANK on
  each node, and our entrypoint starts torchrun with nproc = GPUs itself. A
  count above 1 would make Azure start one entrypoint per GPU, each of which
  would start its own torchrun.
  https://learn.microsoft.com/azure/machine-learning/how-to-train-distributed-gpu#pytorch
- Compute: a named cluster (`azure.compute`), or serverless compute with
  `resources.instance_type` chosen from the dated catalog. Spot is
  `queue_settings.job_tier: spot` on serverless; on a cluster, low priority
  is the cluster's own `tier`, set when the cluster is created, so submit
  checks the cluster instead of asking for it per job.
  https://learn.microsoft.com/azure/machine-learning/how-to-use-serverless-compute
- Data on Azure storage (azureml://, az://, https blob URLs) is an input,
  mounted read-only (`ro_mount`); the trainer reads `${{inputs.data}}`. A
  local data folder is uploaded at submit to `<checkpoint.uri>/_data/<hash>/`
  and mounted the same way. s3:// and gs:// data is fetched by the entrypoint.
- az:// checkpoints are synced by the entrypoint like every other store
  (manifest layout, keep, every; `ckpt ls` and resume see them), with the
  job's identity (launcher.azure_identity). azureml:// and https checkpoint
  URIs, which our stores cannot open, stay a read-write mounted output.
- Secrets: submit stores each value in Key Vault (azure.key_vault, else the
  workspace's own, looked up at submit) and the job gets only `azure-kv:`
  references in LAUNCHER_SECRET_REFS, read with the job's identity.
- The image must be in a registry: a local-only tag is refused at submit.
"""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import time
from dataclasses import replace
from typing import Any, Callable, Iterator, Mapping

import yaml
from pydantic import Field, ValidationInfo, field_validator

from launcher.azure_identity import IDENTITY_VARIABLE, USER_IDENTITY
from launcher.backend import BackendCheck, BackendOptions, Offer, follow_lines
from launcher.backends.cloud import CloudBackend
from launcher.catalog import select
from launcher.contract import ENTRYPOINT, SECRET_REFS_VARIABLE, EntrypointArgs, secret_ref, secret_refs_value
from launcher.errors import LauncherError, SpecError, first_line
from launcher.lazy import require
from launcher.plan import Ending, JobRef, JobState, JobStatus, Plan
from launcher.spec import BUILTIN_DATASETS, JobSpec
from launcher.staging.data import data_target, stage_local_data
from launcher.state.pushed import push, split_tag

__all__ = [
    "AzureMLBackend",
    "AzureOptions",
    "ENDINGS",
    "STATES",
    "acr_refresh_token",
    "job_from_payload",
    "log_files",
    "secret_name",
    "storage_path",
]

EXTRA = "azure"
DEFAULT_SHM = "16g"
CHECKPOINT_OUTPUT = "checkpoints"
DATA_INPUT = "data"
LAUNCHER_TAG_PREFIX = "launcher-"  # the job's own tags: launcher-job, launcher-spec, launcher-spec-hash
# Without azure.key_vault the plan names the workspace's own Key Vault by this placeholder; submit
# reads the workspace and puts in the vault's URL (plan() may not call Azure).
WORKSPACE_VAULT = "{workspace-key-vault}"
LOG_PATTERNS = (re.compile(r"user_logs/std_log.*\.txt$"), re.compile(r"azureml-logs/70_driver_log.*\.txt$"))
_IDENTITIES = ("user_identity", "managed", "aml_token")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
# Azure's naming rules (https://learn.microsoft.com/azure/azure-resource-manager/management/resource-name-rules),
# in ASCII: a name outside them is refused by the service only after the job's image and data are staged
_NAMES = {
    "resource_group": (
        re.compile(r"^[A-Za-z0-9._()-]{0,89}[A-Za-z0-9_()-]$"),
        "1-90 letters, digits, '.', '_', '-', '(' and ')', not ending with '.'",
    ),
    "workspace": (
        re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{2,32}$"),
        "3-33 letters, digits, '_' and '-', starting with a letter or digit",
    ),
    "compute": (
        re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,14}[A-Za-z0-9]$"),
        "2-16 letters, digits and '-', starting with a letter, not ending with '-'",
    ),
    "experiment": (
        re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,254}$"),
        "1-255 letters, digits, '_' and '-', starting with a letter or digit",
    ),
}
_AZURE_SCHEMES = ("azureml://", "wasbs://", "abfss://")
_BLOB_HTTPS = re.compile(r"^https://[a-z0-9]+\.(blob|dfs)\.core\.windows\.net/")
# The only expressions in the command text: the input and output the plan itself declares
_PLACEHOLDER = re.compile(r"(\$\{\{(?:inputs\.%s|outputs\.%s)\}\})" % (DATA_INPUT, CHECKPOINT_OUTPUT))
# Key Vault's DNS suffixes, public and sovereign clouds (https://learn.microsoft.com/azure/key-vault/general/about-keys-secrets-certificates)
_VAULT_URL = re.compile(
    r"^https://[A-Za-z][A-Za-z0-9-]{1,22}[A-Za-z0-9]"
    r"\.vault\.(?:azure\.net|azure\.cn|usgovcloudapi\.net|microsoftazure\.de)/?$"
)

# Azure ML job statuses -> ours. https://learn.microsoft.com/python/api/azure-ai-ml/azure.ai.ml.entities.job
STATES: Mapping[str, JobState] = {
    "NotStarted": JobState.PENDING,
    "Queued": JobState.PENDING,
    "Preparing": JobState.PENDING,
    "Provisioning": JobState.PENDING,
    "Starting": JobState.PENDING,
    "Paused": JobState.PENDING,
    "Running": JobState.RUNNING,
    "Finalizing": JobState.RUNNING,
    "CancelRequested": JobState.STOPPING,
    "Completed": JobState.SUCCEEDED,
    "Failed": JobState.FAILED,
    "Canceled": JobState.STOPPED,
    "NotResponding": JobState.UNKNOWN,
    "Unknown": JobState.UNKNOWN,
}


# How a failed Azure ML job ended -> Ending, matched against "<error code>: <message>" of the run's error
# (run history; its top-level code is UserError or SystemError: https://learn.microsoft.com/azure/machine-learning/how-to-troubleshoot-job)
# First match wins. Low-priority / spot nodes can be preempted at any time
# (https://learn.microsoft.com/azure/machine-learning/how-to-use-low-priority-batch, "preempted"); a request
# for VMs that a region cannot allocate fails with an allocation error
# (https://learn.microsoft.com/troubleshoot/azure/virtual-machines/allocation-failure), a core quota with a quota error
# (https://learn.microsoft.com/azure/machine-learning/how-to-manage-quotas).
ENDINGS: tuple[tuple[str, Ending], ...] = (
    (r"preempt|evict|low.?priority node", Ending.PREEMPTED),
    (
        r"AllocationFailed|OverconstrainedAllocationRequest|ZonalAllocationFailed|SkuNotAvailable|not enough capacity"
        r"|quota|QuotaExceeded",
        Ending.CAPACITY,
    ),
    (r"exit(ed)?\b.*\b(code|status)[: ]+143\b", Ending.PREEMPTED),  # the entrypoint's exit on the platform's SIGTERM
    (
        r"^SystemError|NodeFailure|node .*(unusable|failed|unhealthy)|InternalServerError|ServiceError",
        Ending.NODE_FAILURE,
    ),
    (r"^UserError|^ValidationError|exit(ed)?\b.*\b(code|status)", Ending.USER_ERROR),
)


class AzureOptions(BackendOptions):
    """The `azure:` section of a job spec."""

    subscription_id: str | None = Field(None, description="Azure subscription id of the workspace")
    resource_group: str | None = Field(None, description="resource group of the workspace")
    workspace: str | None = Field(None, description="Azure ML workspace name")
    compute: str | None = Field(None, description="compute cluster name; absent = serverless compute")
    instance_type: str | None = Field(
        None, description="VM size, like Standard_NC24ads_A100_v4; default: cheapest fit from the catalog"
    )
    region: str | None = Field(None, description="region used for prices (default: the catalog's default region)")
    identity: str | None = Field(
        None, description="user_identity, managed, aml_token, or a user-assigned managed identity client id"
    )
    key_vault: str | None = Field(None, description="Key Vault name or URL that holds the spec's secrets")
    storage_account: str | None = Field(None, description="storage account of az://container/prefix URIs")
    experiment: str | None = Field(None, description="experiment name (default: the spec's name)")
    tags: dict[str, str] = Field(default_factory=dict, description="job tags")
    shm_size: str = Field(
        DEFAULT_SHM, description="shared memory of the container, like '16g' (DataLoader workers need it)"
    )

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if key.startswith(LAUNCHER_TAG_PREFIX):
                raise ValueError(
                    f"tag '{key[:60]}': {LAUNCHER_TAG_PREFIX}* tags are the launcher's own (the job, "
                    "the spec and its hash); choose another key"
                )
        return value

    @field_validator("identity")
    @classmethod
    def _identity(cls, value: str | None) -> str | None:
        if value is None or value in _IDENTITIES or _UUID.match(value):
            return value
        raise ValueError(
            f"'{value}' is not an identity; use one of {', '.join(_IDENTITIES)} or a managed identity client id"
        )

    @field_validator("shm_size")
    @classmethod
    def _shm(cls, value: str) -> str:
        if not re.fullmatch(r"[1-9][0-9]{0,14}[bkmg]", value):  # ASCII digits; 0 would leave no shared memory
            raise ValueError(f"'{value[:40]}' is not a size; write it like '16g' or '512m'")
        return value

    @field_validator("subscription_id")
    @classmethod
    def _subscription(cls, value: str | None) -> str | None:
        if value is not None and not _UUID.match(value):
            raise ValueError(
                f"'{value[:40]}' is not a subscription id; Azure's are GUIDs like 00000000-0000-0000-0000-000000000000"
            )
        return value

    @field_validator("resource_group", "workspace", "compute", "experiment")
    @classmethod
    def _names(cls, value: str | None, info: ValidationInfo) -> str | None:
        pattern, rule = _NAMES[str(info.field_name)]
        if value is not None and not pattern.match(value):
            what = str(info.field_name).replace("_", " ")
            raise ValueError(f"'{value[:60]}' is not a valid {what}; Azure's are {rule}")
        return value

    @field_validator("storage_account")
    @classmethod
    def _account(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[a-z0-9]{3,24}", value):
            raise ValueError(
                f"'{value[:40]}' is not a storage account name; Azure's are 3-24 lowercase letters and digits"
            )
        return value

    @field_validator("key_vault")
    @classmethod
    def _vault(cls, value: str | None) -> str | None:
        if value is None or re.fullmatch(r"[A-Za-z][A-Za-z0-9-]{1,22}[A-Za-z0-9]", value) or _VAULT_URL.match(value):
            return value  # the secrets' values are sent to this host at submit: only a Key Vault's, over https
        shown = re.sub(r"://[^/?#]*@", "://***@", value)[:100]
        raise ValueError(
            f"'{shown}' is not a Key Vault name (3-24 letters, digits, dashes) or a Key Vault URL; "
            "write it like https://NAME.vault.azure.net (or .vault.azure.cn, .vault.usgovcloudapi.net, "
            ".vault.microsoftazure.de)"
        )

    def vault_url(self) -> str | None:
        if not self.key_vault:
            return None
        return self.key_vault.rstrip("/") if "://" in self.key_vault else f"https://{self.key_vault}.vault.azure.net"

    def workspace_missing(self) -> list[str]:
        return [f"azure.{k}" for k in ("subscription_id", "resource_group", "workspace") if not getattr(self, k)]


# ---------------------------------------------------------------- pure helpers


def secret_name(spec_name: str, env_name: str) -> str:
    """The Key Vault secret holding `env_name` for this spec (Key Vault names allow letters, digits, dashes)."""
    return f"{spec_name}-{env_name.replace('_', '-')}"


def storage_path(uri: str, opts: AzureOptions) -> str | None:
    """An Azure ML path for `uri` when it is on Azure storage, else None."""
    if uri.startswith(_AZURE_SCHEMES) or _BLOB_HTTPS.match(uri):
        return uri
    if not uri.startswith("az://"):
        return None
    if not opts.storage_account:
        raise LauncherError(
            f"'{uri}' is an az:// URI, but the azure section names no storage account.",
            "Set azure.storage_account to the account that holds the container.",
        )
    return f"https://{opts.storage_account}.blob.core.windows.net/{uri.removeprefix('az://')}"


CLOUD = select.Cloud("Azure ML", "VM size", "azure.instance_type")


def _checkpoint(spec: JobSpec, opts: AzureOptions) -> tuple[dict[str, Any], str | None, list[str]]:
    """(outputs, --checkpoint-uri value, notes) for the spec's checkpoint URI."""
    uri = spec.checkpoint.uri
    if uri is None:
        return {}, None, ["no checkpoint.uri: checkpoints stay on the node and are lost when the job ends"]
    if uri.startswith("az://"):
        storage_path(uri, opts)  # the account must be named: the entrypoint's store needs it
        return (
            {},
            uri,
            [f"checkpoints: {uri} is synced by the entrypoint (manifest, keep, every), with the job's identity"],
        )
    path = storage_path(uri, opts)
    if path is not None:
        output = {"type": "uri_folder", "path": path, "mode": "rw_mount"}
        return {CHECKPOINT_OUTPUT: output}, "${{outputs.%s}}" % CHECKPOINT_OUTPUT, []
    if "://" not in uri:
        raise LauncherError(
            f"checkpoint.uri '{uri}' is a local path, which Azure ML nodes cannot reach.",
            "Use az://container/prefix (with azure.storage_account) or azureml://datastores/NAME/paths/PREFIX.",
        )
    note = (
        f"checkpoint.uri {uri} is not Azure storage: nothing is mounted; the entrypoint syncs checkpoints "
        "to it with the unified sync, so give the job that store's credentials through secrets"
    )
    return {}, uri, [note]


def _data(spec: JobSpec, opts: AzureOptions) -> tuple[dict[str, Any], str | None, list[str]]:
    """(inputs, value of the trainer's data= argument, notes)."""
    data = spec.train.data
    upload = data_target(spec)  # a local folder: uploaded at submit to the checkpoint store
    notes = (
        [f"train.data {data} is uploaded at submit to {upload} (unchanged content is not sent again)"] if upload else []
    )
    data = upload or data
    path = storage_path(data, opts)
    if path is not None:
        return (
            {DATA_INPUT: {"type": "uri_folder", "path": path, "mode": "ro_mount"}},
            "${{inputs.%s}}" % DATA_INPUT,
            notes,
        )
    if upload:
        return {}, upload, notes  # s3:// or gs://: the entrypoint fetches it
    if "://" not in data and data not in BUILTIN_DATASETS:
        raise LauncherError(
            f"train.data '{data}' is a local folder, which Azure ML nodes cannot reach.",
            "Upload it (az storage blob upload-batch) and set train.data to az://container/prefix or an azureml:// path.",
        )
    notes = [f"train.data {data} is read by the trainer itself (not mounted)"] if "://" in data else []
    return {}, None, notes


def _command(contract: EntrypointArgs) -> str:
    """The container command contract as Azure ML's command text: every argument shell-quoted.

    Azure ML replaces `${{inputs.x}}` / `${{outputs.x}}` in the command text before a shell runs it, so the
    placeholders the launcher itself writes stay outside the quotes ('--data='${{inputs.data}}); any other
    `${{` would be an expression of the user's in the node's shell command, and is refused."""
    return " ".join(_quote(arg) for arg in [*ENTRYPOINT, *contract.to_argv()])


def _quote(arg: str) -> str:
    parts = _PLACEHOLDER.split(arg)  # literal text at even indexes, the placeholders at odd ones
    for literal in parts[::2]:
        if "${{" in literal:
            raise SpecError(
                f"command: the argument {arg[:80]!r} holds an Azure ML expression ('${{{{...}}}}') the launcher "
                "does not write.",
                "Remove it: only ${{inputs.data}} and ${{outputs.checkpoints}} are replaced, by their mount folders.",
            )
    quoted = [part if i % 2 else shlex.quote(part) for i, part in enumerate(parts) if part or i % 2]
    return "".join(quoted) or "''"


def _environment(spec: JobSpec, opts: AzureOptions) -> dict[str, str]:
    env = dict(spec.env)
    if opts.storage_account and "AZURE_STORAGE_ACCOUNT" in [*env, *spec.secrets]:
        raise SpecError(
            "env: AZURE_STORAGE_ACCOUNT is set by the launcher from azure.storage_account.",
            "Remove it from env and secrets; set azure.storage_account.",
        )
    if opts.storage_account:
        env["AZURE_STORAGE_ACCOUNT"] = opts.storage_account
    env.update(_identity_environment(opts))
    if spec.secrets:
        vault = opts.vault_url() or WORKSPACE_VAULT  # submit looks the workspace's Key Vault up
        refs = {
            name: secret_ref("azure-kv", f"{vault}/secrets/{secret_name(spec.name, name)}") for name in spec.secrets
        }
        env[SECRET_REFS_VARIABLE] = secret_refs_value(refs)
    return env


def _refuse_local_image(image: str) -> None:
    """A bare name like 'torch-launcher-train:latest' names no registry Azure ML can pull from."""
    if "/" not in image:
        raise LauncherError(
            f"The image {image} exists only on this machine; Azure ML cannot pull it.",
            "Push it with: launch image build --push -b azure (later plans use the pushed reference), "
            "or set image: to a registry reference.",
        )


def _substitute(request: dict[str, Any], old: str, new: str) -> dict[str, Any]:
    return json.loads(json.dumps(request).replace(old, new))


def _identity_environment(opts: AzureOptions) -> dict[str, str]:
    """Tell the container which identity the job runs as, so Key Vault and az:// stores use it
    (launcher.azure_identity): on-behalf-of for user_identity, the client id of a user-assigned identity."""
    if opts.identity == USER_IDENTITY:
        return {IDENTITY_VARIABLE: USER_IDENTITY}
    if opts.identity and _UUID.match(opts.identity):
        return {"AZURE_CLIENT_ID": opts.identity}
    return {}


def _identity(opts: AzureOptions) -> dict[str, str] | None:
    if opts.identity is None:
        return None
    if _UUID.match(opts.identity):
        return {"type": "managed", "client_id": opts.identity}
    return {"type": opts.identity}


def _compute(spec: JobSpec, opts: AzureOptions, instance: str) -> tuple[dict[str, Any], list[str]]:
    """compute / resources / queue_settings fields, and notes about spot."""
    res = spec.resources
    resources: dict[str, Any] = {"instance_count": res.nodes, "shm_size": opts.shm_size}
    if opts.compute:
        notes = []
        if res.spot:
            notes.append(
                f"resources.spot: low priority is the tier of cluster {opts.compute}; submit checks it is low_priority"
            )
        return {"compute": f"azureml:{opts.compute}", "resources": resources}, notes
    resources["instance_type"] = instance
    tier = "spot" if res.spot else "standard"
    return {"resources": resources, "queue_settings": {"job_tier": tier}}, []


# ---------------------------------------------------------------- the backend


class AzureMLBackend(CloudBackend):
    """Azure ML command jobs. Clients are injected; otherwise made on first use."""

    name = "azure"
    extra = EXTRA
    sdk_modules = ("azure.ai.ml",)
    options_model = AzureOptions
    endings = ENDINGS
    instance_options = {"instance_type": "name"}  # the next fit after a capacity error (launcher.runs.supervisor)
    fixed_by = ("compute",)  # a named cluster has its own VM size

    def __init__(
        self,
        ml_client: Any = None,
        *,
        credential: Any = None,
        client_kwargs: Mapping[str, Any] | None = None,
        workspace: AzureOptions | None = None,
        environ: Mapping[str, str] | None = None,
        poll_s: float = 15.0,
        catalog: Mapping[str, Any] | None = None,
        pushed_image: str | None = None,
    ) -> None:
        """`ml_client`: an azure.ai.ml.MLClient for every call; `credential` and `client_kwargs`
        (e.g. `transport=`) build MLClient, Key Vault and registry clients when needed; `workspace`
        names the workspace for calls without a spec (image push, check)."""
        super().__init__(catalog, pushed_image)
        self._ml_client = ml_client
        self._credential = credential
        self._client_kwargs = dict(client_kwargs or {})
        self._workspace = workspace
        self._environ = environ
        self._poll_s = poll_s

    # ------------------------------------------------------------ plan (pure)

    def plan(self, spec: JobSpec, job_id: str | None = None) -> Plan:
        opts: AzureOptions = self.options(spec)  # type: ignore[assignment]
        missing = opts.workspace_missing()
        if missing:
            raise LauncherError(
                f"The Azure ML workspace is not fully named: {', '.join(missing)} missing.",
                "Add them to the spec's azure section, e.g. subscription_id: ${AZURE_SUBSCRIPTION_ID}.",
            )
        job_name = job_id or spec.name
        size_notes: list[str] = []
        choice = self._instance(spec, opts, size_notes)
        if choice:
            select.price_note(choice, opts.region, size_notes)
        elif spec.limits.max_cost:
            size_notes.append(
                "max_cost cannot cap the runtime: the cluster's VM price is unknown; set azure.instance_type to its VM size"
            )
        timeout = select.runtime_limit(spec, choice, size_notes) if choice else spec.limits.max_runtime
        # One process per GPU: the VM size's GPUs when known; on a cluster that decides the size,
        # the GPUs asked for, else all the node has (the entrypoint counts them).
        gpus = choice.gpus if choice else (spec.resources.gpus or None)
        payload, notes = self._payload(spec, opts, job_name, choice.name if choice else "", gpus, timeout)
        if timeout:
            payload["limits"] = {"timeout": timeout}
        return Plan(self.name, job_name, spec, payload, secrets=tuple(spec.secrets), notes=(*notes, *size_notes))

    def _instance(self, spec: JobSpec, opts: AzureOptions, notes: list[str]) -> select.Choice | None:
        """The named VM size, else the cheapest that fits (launcher.catalog.select); None: the cluster decides."""
        if opts.instance_type:
            return select.named(self.catalog, opts.instance_type, spec.resources, opts.region, CLOUD, notes)
        if opts.compute:
            return None
        return select.choose(self.catalog, spec.resources, opts.region, CLOUD)

    def _payload(
        self, spec: JobSpec, opts: AzureOptions, job_name: str, instance: str, gpus: int | None, timeout: int | None
    ) -> tuple[dict[str, Any], list[str]]:
        outputs, ckpt_arg, ckpt_notes = _checkpoint(spec, opts)
        inputs, data_arg, data_notes = _data(spec, opts)
        compute, compute_notes = _compute(spec, opts, instance)
        payload: dict[str, Any] = {
            "type": "command",
            "name": job_name,
            "display_name": spec.name,
            "experiment_name": opts.experiment or spec.name,
            "command": _command(
                EntrypointArgs.for_spec(spec, gpus=gpus, checkpoint_uri=ckpt_arg, data=data_arg, max_runtime=timeout)
            ),
            "environment": {"image": self.training_image(spec)},
            **compute,
            "distribution": {"type": "pytorch", "process_count_per_instance": 1},
            "environment_variables": _environment(spec, opts),
            "tags": {
                **opts.tags,
                "launcher-job": job_name,
                "launcher-spec": spec.name,
                "launcher-spec-hash": spec.spec_hash(),
            },
        }
        if inputs:
            payload["inputs"] = inputs
        if outputs:
            payload["outputs"] = outputs
        identity = _identity(opts)
        if identity:
            payload["identity"] = identity
        return payload, [*compute_notes, *ckpt_notes, *data_notes]

    # ------------------------------------------------------------ clients

    def _credential_or_default(self) -> Any:
        if self._credential is None:
            self._credential = require("azure.identity", EXTRA).DefaultAzureCredential()
        return self._credential

    def client(self, subscription_id: str, resource_group: str, workspace: str) -> Any:
        """The injected MLClient, else one for this workspace."""
        if self._ml_client is not None:
            return self._ml_client
        ml = require("azure.ai.ml", EXTRA)
        self._ml_client = ml.MLClient(
            self._credential_or_default(), subscription_id, resource_group, workspace, **self._client_kwargs
        )
        return self._ml_client

    def _client_for(self, ref: JobRef) -> Any:
        extra = ref.extra
        return self.client(
            extra.get("subscription_id", ""), extra.get("resource_group", ""), extra.get("workspace", "")
        )

    def _default_workspace(self) -> AzureOptions:
        """The workspace for calls without a spec: the constructor's, else the usual environment variables."""
        if self._workspace is not None:
            return self._workspace
        env = os.environ if self._environ is None else self._environ
        return AzureOptions(
            subscription_id=env.get("AZURE_SUBSCRIPTION_ID"),
            resource_group=env.get("AZURE_RESOURCE_GROUP"),
            workspace=env.get("AZUREML_WORKSPACE_NAME"),
        )

    def _default_client(self) -> Any:
        ws = self._default_workspace()
        if self._ml_client is None and ws.workspace_missing():
            raise LauncherError(
                "No Azure ML workspace is named.",
                "Set AZURE_SUBSCRIPTION_ID, AZURE_RESOURCE_GROUP and AZUREML_WORKSPACE_NAME.",
            )
        return self.client(str(ws.subscription_id), str(ws.resource_group), str(ws.workspace))

    # ------------------------------------------------------------ submit

    def submit(self, plan: Plan, secrets: Mapping[str, str] | None = None) -> JobRef:
        """`secrets`: the values of plan.secrets, read once by the Launcher (else from `environ`)."""
        values = self.secrets_for(plan, secrets)
        opts: AzureOptions = self.options(plan.spec)  # type: ignore[assignment]
        _refuse_local_image(plan.payload["environment"]["image"])
        client = self.client(str(opts.subscription_id), str(opts.resource_group), str(opts.workspace))
        if opts.compute:
            self._check_cluster(client, opts, plan.spec)
        vault = opts.vault_url() or (self._workspace_vault(client, opts) if plan.secrets else None)
        if vault and not opts.vault_url():
            plan = replace(plan, payload=_substitute(plan.request(), WORKSPACE_VAULT, vault))
        self._store_secrets(plan, vault, values)
        plan = stage_local_data(plan)  # a local data folder, uploaded once (content-keyed)
        job = job_from_payload(plan.request())
        created = _call(lambda: client.jobs.create_or_update(job), f"submitting job {plan.job_name}")
        studio = getattr(created, "studio_url", None) or ""
        extra = {"subscription_id": opts.subscription_id, "resource_group": opts.resource_group,
                 "workspace": opts.workspace, "studio_url": studio}  # fmt: skip
        return JobRef(plan.job_name, self.name, created.name, extra)

    def _check_cluster(self, client: Any, opts: AzureOptions, spec: JobSpec) -> None:
        """Fail before submitting when the cluster is missing, too small or of the wrong tier."""
        errors = require("azure.core.exceptions", EXTRA)
        try:
            cluster = client.compute.get(opts.compute)
        except errors.ResourceNotFoundError:
            raise LauncherError(
                f"Compute target '{opts.compute}' was not found in workspace {opts.workspace}.",
                "Create it (az ml compute create --type AmlCompute ...), fix azure.compute, or remove it to use serverless compute.",
            ) from None
        except errors.HttpResponseError as exc:
            raise LauncherError(
                f"Could not read compute target '{opts.compute}': {first_line(exc)}.",
                "Check the workspace settings and your access.",
            ) from None
        _check_cluster_fits(cluster, opts.compute or "", spec, opts.instance_type)

    def _workspace_vault(self, client: Any, opts: AzureOptions) -> str:
        """The URL of the workspace's own Key Vault (its ARM id ends in /vaults/<name>)."""
        ws = _call(lambda: client.workspaces.get(opts.workspace), "reading the workspace")
        arm_id = str(getattr(ws, "key_vault", "") or "")
        if "/vaults/" not in arm_id:
            raise LauncherError(
                f"Workspace {opts.workspace} names no Key Vault, and the spec lists secrets.",
                "Set azure.key_vault to the Key Vault that should hold the job's secrets.",
            )
        return f"https://{arm_id.rsplit('/vaults/', 1)[1].strip('/')}.vault.azure.net"

    def _store_secrets(self, plan: Plan, vault: str | None, values: Mapping[str, str]) -> None:
        """Store each secret's value in Key Vault; the job only holds references."""
        if not plan.secrets:
            return
        keyvault = require("azure.keyvault.secrets", EXTRA)
        client = keyvault.SecretClient(str(vault), self._credential_or_default(), **self._client_kwargs)
        for name in plan.secrets:
            kv_name = secret_name(plan.spec.name, name)
            _call(
                lambda: client.set_secret(kv_name, values[name], tags={"launcher-spec": plan.spec.name}),
                f"storing secret {name} in Key Vault",
            )

    # ------------------------------------------------------------ follow

    def status(self, ref: JobRef) -> JobStatus:
        client = self._client_for(ref)
        job = _call(lambda: client.jobs.get(ref.native_id), f"reading job {ref.native_id}")
        native = _status_name(job.status)
        state = STATES.get(native, JobState.UNKNOWN)
        code, message = self._error(client, ref.native_id) if state is JobState.FAILED else ("", "")
        details = {"studio_url": getattr(job, "studio_url", None) or ""}
        ending = self.ending_of(f"{code}: {message}") if state is JobState.FAILED else None
        return JobStatus(state, message or native, native_state=native, details=details, ending=ending)

    def _error(self, client: Any, name: str) -> tuple[str, str]:
        """The run's error code and message; the job resource itself carries none (run history does)."""
        details = client.jobs._runs_operations.get_run_details(name)  # the same call jobs.stream makes
        error = getattr(getattr(details, "error", None), "error", None)
        message = str(getattr(error, "message", "") or "") or "the job failed without an error message"
        return str(getattr(error, "code", "") or ""), message

    def logs(self, ref: JobRef, follow: bool = False) -> Iterator[str]:
        """The user logs (one file per node/process), downloaded from the run's log file URLs."""
        client = self._client_for(ref)
        seen: dict[str, int] = {}
        latest: list[Any] = []  # the run details read for the state, reused for that pass's files

        def finished() -> bool:
            latest.append(client.jobs._runs_operations.get_run_details(ref.native_id))
            return STATES.get(_status_name(latest[-1].status), JobState.UNKNOWN).finished

        def new_lines() -> Iterator[str]:
            details = latest.pop() if latest else client.jobs._runs_operations.get_run_details(ref.native_id)
            return self._new_lines(client, details.log_files or {}, seen)

        yield from follow_lines(new_lines, finished, follow, time.sleep, self._poll_s)

    def _new_lines(self, client: Any, files: Mapping[str, str], seen: dict[str, int]) -> Iterator[str]:
        names = log_files(files)
        for name in names:
            text = _download(client, files[name])
            lines = text.splitlines()
            prefix = f"[{name.rsplit('/', 1)[-1].removesuffix('.txt')}] " if len(names) > 1 else ""
            for line in lines[seen.get(name, 0) :]:
                yield prefix + line
            seen[name] = len(lines)

    def cancel(self, ref: JobRef) -> None:
        client = self._client_for(ref)
        _call(lambda: client.jobs.begin_cancel(ref.native_id), f"cancelling job {ref.native_id}")

    # ------------------------------------------------------------ estimator, image, check

    def offers(self, spec: JobSpec) -> list[Offer]:
        opts: AzureOptions = self.options(spec)  # type: ignore[assignment]
        named = self._instance(spec, opts, []) if opts.instance_type else None
        rows = []
        for choice in select.offer_rows(self.catalog, spec.resources, opts.region, [named.name] if named else None):
            row = choice.row
            details = {"vcpus": row["vcpus"], "memory_gib": row["memory_gib"], "catalog_date": self.catalog["date"]}
            rows.append(Offer(self.name, choice.name, row.get("gpu_type"), row["gpus"], spec.resources.nodes, float(choice.price or 0.0),
                              spot=spec.resources.spot, region=choice.region, startup_s=float(self.catalog["startup_s"]), details=details))  # fmt: skip
        return rows

    def push_image(self, local_image: str, docker_client: object) -> str:
        """Tag and push to the workspace's Azure Container Registry, logging in with an ACR token."""
        client = self._default_client()
        ws = _call(lambda: client.workspaces.get(client.workspace_name), "reading the workspace")
        registry = _registry_server(getattr(ws, "container_registry", None))
        password = acr_refresh_token(registry, self._ml_credential(client), self._client_kwargs)
        repo, tag = _target(registry, local_image)
        docker_client.images.get(local_image).tag(repo, tag)  # type: ignore[attr-defined]
        auth = {"username": "00000000-0000-0000-0000-000000000000", "password": password}
        return f"{repo}@{push(docker_client, repo, tag, auth, 'Check the registry login and your AcrPush role, then retry.')}"

    def _ml_credential(self, client: Any) -> Any:
        return self._credential or getattr(client, "_credential", None) or self._credential_or_default()

    def check(self) -> BackendCheck:
        base = super().check()
        if not base.sdk:
            return base
        try:
            client = self._default_client()
            _call(lambda: client.workspaces.get(client.workspace_name), "reading the workspace")
        except LauncherError as exc:
            return BackendCheck(self.name, True, False, str(exc))
        return BackendCheck(self.name, True, True, f"workspace {client.workspace_name} reachable")


# ---------------------------------------------------------------- SDK-side helpers


def job_from_payload(payload: Mapping[str, Any]) -> Any:
    """The azure-ai-ml Command job for a plan payload, through the SDK's own YAML schema."""
    ml = require("azure.ai.ml", EXTRA)
    return ml.load_job(source=io.StringIO(yaml.safe_dump(dict(payload))))


def log_files(files: Mapping[str, str]) -> list[str]:
    """The user log files, sorted: common runtime std_log*.txt, else the legacy driver logs."""
    for pattern in LOG_PATTERNS:
        found = sorted(name for name in files if pattern.search(name))
        if found:
            return found
    return []


def _download(client: Any, url: str) -> str:
    utils = require("azure.ai.ml._utils.utils", EXTRA)
    return utils.download_text_from_url(url, client.jobs._requests_pipeline)


def _check_cluster_fits(cluster: Any, name: str, spec: JobSpec, instance_type: str | None) -> None:
    size = str(getattr(cluster, "size", "") or "")
    if instance_type and size and size.lower() != instance_type.lower():
        raise LauncherError(
            f"Cluster '{name}' runs {size}, but azure.instance_type says {instance_type} (used for prices and the budget).",
            f"Set azure.instance_type to {size}, or drop it.",
        )
    tier = str(getattr(cluster, "tier", "") or "").lower().replace("lowpriority", "low_priority")
    if spec.resources.spot and tier and tier != "low_priority":
        raise LauncherError(
            f"resources.spot is true but cluster '{name}' is {tier}; Azure ML sets low priority per cluster.",
            "Use a cluster created with --tier low_priority, remove azure.compute for serverless spot, or set resources.spot: false.",
        )
    most = getattr(cluster, "max_instances", None)
    if most is not None and spec.resources.nodes > int(most):
        raise LauncherError(
            f"Cluster '{name}' scales to {most} node(s) but resources.nodes is {spec.resources.nodes}.",
            f"Raise its max instances (az ml compute update --name {name} --max-instances {spec.resources.nodes}) or use fewer nodes.",
        )


def _status_name(status: Any) -> str:
    """'Running' from the SDK's status enum member or plain string."""
    return str(getattr(status, "value", status) or "NotStarted")


def _call(fn: Callable[[], Any], doing: str) -> Any:
    """Run one SDK call; turn the service's errors into one sentence and a fix."""
    errors = require("azure.core.exceptions", EXTRA)
    try:
        return fn()
    except errors.ClientAuthenticationError as exc:
        raise LauncherError(
            f"Azure refused the credentials while {doing}: {first_line(exc)}.",
            "Run `az login` or set AZURE_CLIENT_ID/AZURE_TENANT_ID/AZURE_CLIENT_SECRET.",
        ) from None
    except errors.ResourceNotFoundError as exc:
        raise LauncherError(
            f"Not found while {doing}: {first_line(exc)}.",
            "Check the subscription, resource group and workspace names.",
        ) from None
    except errors.HttpResponseError as exc:
        raise LauncherError(
            f"Azure ML rejected {doing}: {first_line(exc)}.", "Fix the field the message names and submit again."
        ) from None
    except errors.AzureError as exc:  # the SDK's own validation errors and network failures
        raise LauncherError(
            f"Azure ML failed while {doing}: {first_line(exc)}.", "Check the message; retry if it was a network error."
        ) from None


def _registry_server(container_registry: str | None) -> str:
    if not container_registry:
        raise LauncherError(
            "The workspace has no container registry yet.",
            "Attach one: az ml workspace update --container-registry ...",
        )
    return f"{container_registry.rstrip('/').rsplit('/', 1)[-1].lower()}.azurecr.io"


def _target(registry: str, local_image: str) -> tuple[str, str]:
    """registry/repo and tag for a local image name like 'name:tag' or 'host/name:tag'."""
    name, tag = split_tag(local_image)
    return f"{registry}/{name.rsplit('/', 1)[-1]}", tag


def acr_refresh_token(registry: str, credential: Any, client_kwargs: Mapping[str, Any]) -> str:
    """Exchange an Entra ID token for an ACR refresh token (the `az acr login --expose-token` flow).

    https://github.com/Azure/acr/blob/main/docs/AAD-OAuth.md
    """
    core = require("azure.core", EXTRA)
    rest = require("azure.core.rest", EXTRA)
    token = credential.get_token("https://management.azure.com/.default").token
    form = {"grant_type": "access_token", "service": registry, "access_token": token}
    with core.PipelineClient(f"https://{registry}", **client_kwargs) as http:
        response = http.send_request(rest.HttpRequest("POST", f"https://{registry}/oauth2/exchange", data=form))
    if response.status_code != 200:
        raise LauncherError(
            f"{registry} refused the token exchange (HTTP {response.status_code}).",
            "Grant your identity the AcrPush role on the registry.",
        )
    return str(response.json()["refresh_token"])
