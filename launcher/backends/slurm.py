"""The slurm backend: one sbatch script on a cluster the user already has.

The plan is the batch script itself (as lines, so `--dry-run` shows it line by line): `#SBATCH` lines
for the allocation (one task per node; torchrun starts the processes), then one
`srun --kill-on-bad-exit=1` of the container entrypoint, with its normal flags, in the container the
cluster offers:

- `pyxis`: `srun --container-image=IMAGE --container-mounts=...` and the entrypoint's whole command,
  since pyxis does not run the image's ENTRYPOINT (https://github.com/NVIDIA/pyxis/issues/22);
- `apptainer`: `srun apptainer exec [--nv] --bind ... IMAGE python -m launcher.runtime.entrypoint ...`;
- `oci`: Slurm's own OCI support, `srun --container=BUNDLE` (https://slurm.schedmd.com/containers.html);
  the bundle's config.json binds the checkpoint folder and the node's /etc/hosts;
- `none`: the submitter's environment on the nodes, where the launcher must be installed (as TorchX does).

srun exports only the variables the job needs (`--export=NAME,...`, never ALL for a container: on Slurm
22.05 ALL replaces the image's PATH with the submitter's). Their values are set in the batch script, except
secrets: those reach the batch script from sbatch's own environment at submit (a secret is never written
into the script) and the entrypoint reads them by reference (`env:`), as on the other backends.

Slurm forgets a finished job (squeue after MinJobAge) and a bare cluster has no accounting (no sacct), so
the batch script also writes the job's state and exit code into the job's folder, read when both are silent.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator, Literal, Mapping, Sequence

from pydantic import Field, field_validator

from launcher.backend import Backend, BackendCheck, BackendOptions, Feature, Offer, follow_lines
from launcher.contract import (
    DATA_DIR_VARIABLE,
    ENTRYPOINT,
    SECRET_REFS_VARIABLE,
    TIMEOUT_EXIT,
    EntrypointArgs,
    secret_ref,
    secret_refs_value,
)
from launcher.errors import LauncherError
from launcher.estimate.throughput import canonical_device
from launcher.plan import Ending, JobRef, JobState, JobStatus, Plan
from launcher.spec import BUILTIN_DATASETS, JobSpec
from launcher.state.jobs import state_dir

__all__ = [
    "SlurmBackend",
    "SlurmOptions",
    "SlurmJob",
    "Completed",
    "ENDINGS",
    "JOB_DIR_PLACEHOLDER",
    "script_of",
    "parse_squeue_json",
    "parse_squeue_text",
    "parse_sacct",
    "parse_state_file",
    "parse_test_only",
    "slurm_time",
    "pyxis_image",
]

JOB_DIR_PLACEHOLDER = "@LAUNCHER_JOB_DIR@"  # filled at submit when slurm.job_root is not set
LOG_FILE, STATE_FILE, STOPPED_FILE = "output.log", "state", "stopped"
CONTAINER_START_S = 60.0  # the estimate's start-up besides the queue: the image's container on each node, the data
GRACE_S = 30  # Slurm's default KillWait: SIGTERM, then SIGKILL 30 s later (scancel, time limit)
STARTUP_S = 300  # the time limit's margin over limits.max_runtime: the container's start, the data, the checkpoint pull
DEFAULT_TIME_S = 24 * 3600  # the time limit without limits.max_runtime: never unlimited
SUBMIT_ROOT = ".launcher/slurm"
NODE_DATA_DIR = "/tmp/launcher-data"  # $LAUNCHER_DATA_DIR in a container: written by the job, kept per node
_UNSAFE_PATH = re.compile(r"[\s'\"%\\$`]")  # under the login host's home, for a remote submit without slurm.job_root

# Slurm job states (squeue(1) JOB STATE CODES, sacct(1) JOB STATE CODES) -> where a job stands.
_PENDING = {
    "PENDING",
    "CONFIGURING",
    "REQUEUED",
    "REQUEUE_FED",
    "REQUEUE_HOLD",
    "RESV_DEL_HOLD",
    "SUSPENDED",
    "STOPPED",
    "POWER_UP_NODE",
    "SPECIAL_EXIT",
}
_RUNNING = {"RUNNING", "COMPLETING", "SIGNALING", "STAGE_OUT", "RESIZING", "UPDATE_DB"}
_FAILED = {"FAILED", "TIMEOUT", "DEADLINE", "OUT_OF_MEMORY", "PREEMPTED", "NODE_FAIL", "BOOT_FAIL", "REVOKED"}
# How a Slurm job ended -> Ending, matched against "STATE [reason]" (status) or sbatch's refusal (submit).
ENDINGS: tuple[tuple[str, Ending], ...] = (
    (r"^PREEMPTED", Ending.PREEMPTED),
    (r"^(NODE_FAIL|BOOT_FAIL)", Ending.NODE_FAILURE),
    (r"^lost", Ending.NODE_FAILURE),  # the job started, then vanished from Slurm without an exit code
    (r"^(TIMEOUT|DEADLINE)", Ending.USER_ERROR),  # the time limit the spec asked for: the next attempt meets it too
    (r"^OUT_OF_MEMORY", Ending.USER_ERROR),
    (r"^limits\.max_runtime", Ending.USER_ERROR),
    (r"^FAILED", Ending.USER_ERROR),
    # sbatch's refusals (slurm/src/common/slurm_errno.c): busy controller, or nothing free right now
    (r"temporarily unable to accept job|Socket timed out|Unable to contact slurm controller", Ending.CAPACITY),
    (
        r"Requested node configuration is not available|Invalid (partition|account|qos)|violates accounting/QOS policy",
        Ending.USER_ERROR,
    ),
)


class SlurmOptions(BackendOptions):
    """The `slurm:` section of a job spec."""

    partition: str | None = Field(None, description="the partition (default: the cluster's default partition)")
    container: Literal["pyxis", "apptainer", "oci", "none"] = Field(
        "pyxis",
        description="pyxis (srun --container-image), apptainer, oci (Slurm's own, srun --container=BUNDLE), "
        "or none: the submitter's environment on the nodes",
    )
    account: str | None = Field(None, description="the account the job is charged to")
    qos: str | None = Field(None, description="the quality of service")
    constraint: str | None = Field(None, description="node features, like 'a100&ib'")
    gpu_type: str | None = Field(
        None, description="the cluster's GRES name of the GPU, like 'a100' (default: resources.gpu_type in lowercase)"
    )
    login: str | None = Field(
        None,
        description="run sbatch/squeue over ssh on this host, like me@login.cluster "
        "(default: this machine is a submit host)",
    )
    image: str | None = Field(
        None,
        description="pyxis: the image (default: the spec's, REGISTRY/IMAGE written "
        "REGISTRY#IMAGE); apptainer: a .sif file or docker:// URI",
    )
    bundle: str | None = Field(None, description="oci: the OCI bundle's folder on the nodes (config.json + rootfs)")
    job_root: str | None = Field(
        None,
        description="shared folder for the jobs' folders (output, state), seen by "
        "the nodes and the submit host (default: <state dir>/slurm, or "
        "~/.launcher/slurm on the login host)",
    )
    python: str = Field("python", description="container none: the interpreter on the nodes that has the launcher")
    gpu_hour_price: float = Field(
        0.0,
        ge=0,
        le=1000,
        description="the cluster's internal price per GPU-hour, USD, for `launch estimate` (default 0)",
    )

    @field_validator("bundle", "job_root")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError(f"'{value}' is not an absolute path (the nodes see it from another working folder)")
        if value is not None and _UNSAFE_PATH.search(value):
            raise ValueError(
                f"'{value}' holds a space, quote or '%': sbatch's --output cannot take it; choose another folder"
            )
        return value

    @field_validator("partition", "account", "qos", "gpu_type")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9_.-]+", value):
            raise ValueError(f"'{value}' is not a Slurm name (letters, digits, '_', '.', '-')")
        return value

    @field_validator("constraint")
    @classmethod
    def _constraint(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9_.&|!()\[\]*:-]+", value):
            raise ValueError(f"'{value}' is not a Slurm constraint expression (features joined by & | *)")
        return value


# ---------------------------------------------------------------- plan (pure)


def slurm_time(seconds: int) -> str:
    """sbatch's --time as D-HH:MM:SS, rounded up to the minute."""
    minutes = math.ceil(seconds / 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    return f"{days}-{hours:02d}:{minutes:02d}:00"


def pyxis_image(image: str) -> str:
    """A Docker reference in enroot's form: the registry host is followed by '#', not '/' (pyxis --container-image)."""
    first, _, rest = image.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return f"{first}#{rest}"
    return image


def _is_local_path(value: str | None) -> bool:
    return bool(value) and value not in BUILTIN_DATASETS and "://" not in str(value)


def _mounts(spec: JobSpec) -> list[tuple[str, str]]:
    """(host folder, mode) the container must see at the same path: the checkpoint store and local data."""
    mounts = []
    if _is_local_path(spec.checkpoint.uri):
        mounts.append((str(spec.checkpoint.uri), "rw"))
    if _is_local_path(spec.data()):
        mounts.append((str(spec.data()), "ro"))
    return mounts


def _environment(spec: JobSpec, opts: SlurmOptions, job_name: str) -> dict[str, str]:
    """The values the batch script sets and srun exports (secrets are exported by name only). A container's root
    may be read-only (Apptainer's SIF, an OCI bundle): the datasets and code unpack into the node's /tmp instead."""
    node_cache = {DATA_DIR_VARIABLE: NODE_DATA_DIR} if opts.container != "none" else {}
    env = {"PYTHONUNBUFFERED": "1", "LAUNCHER_JOB_ID": job_name, **node_cache, **spec.env}
    if spec.secrets:
        env[SECRET_REFS_VARIABLE] = secret_refs_value({name: secret_ref("env", name) for name in spec.secrets})
    return env


def _container(opts: SlurmOptions, spec: JobSpec, exported: str) -> tuple[list[str], list[str]]:
    """(srun's own flags, the command before the entrypoint's arguments) for the container kind."""
    binds = _mounts(spec)
    if opts.container == "pyxis":
        flags = [f"--export={exported}", f"--container-image={opts.image or pyxis_image(spec.image)}"]
        if binds:
            flags.append("--container-mounts=" + ",".join(f"{path}:{path}:{mode}" for path, mode in binds))
        return flags, list(ENTRYPOINT)
    if opts.container == "apptainer":
        command = ["apptainer", "exec", *(["--nv"] if spec.resources.gpus else [])]
        command += [arg for path, mode in binds for arg in ("--bind", f"{path}:{path}:{mode}")]
        return [f"--export={exported}"], [*command, opts.image or f"docker://{spec.image}", *ENTRYPOINT]
    if opts.container == "oci":
        return [f"--export={exported}", f"--container={opts.bundle}"], list(ENTRYPOINT)
    return [f"--export=ALL,{exported}"], [opts.python, *ENTRYPOINT[1:]]


def _time_limit(spec: JobSpec) -> int:
    if spec.limits.max_runtime:
        return spec.limits.max_runtime + STARTUP_S + GRACE_S
    return DEFAULT_TIME_S


def script_of(plan: Plan) -> str:
    """The batch script a plan holds, as sbatch reads it."""
    return "\n".join(plan.payload["script"]) + "\n"


def _sbatch_lines(spec: JobSpec, opts: SlurmOptions, job_name: str, job_dir: str) -> list[str]:
    res = spec.resources
    lines = [f"--job-name={job_name}", f"--nodes={res.nodes}", "--ntasks-per-node=1"]
    if res.cpus:
        lines.append(f"--cpus-per-task={res.cpus}")
    if res.memory:
        lines.append(
            f"--mem={int(res.memory)}G" if float(res.memory).is_integer() else f"--mem={math.ceil(res.memory * 1024)}M"
        )
    if res.gpus:
        kind = opts.gpu_type or (res.gpu_type.lower() if res.gpu_type else None)
        lines.append(f"--gpus-per-node={kind + ':' if kind else ''}{res.gpus}")
    lines += [
        f"--{key}={getattr(opts, key)}" for key in ("partition", "account", "qos", "constraint") if getattr(opts, key)
    ]
    lines += [
        f"--time={slurm_time(_time_limit(spec))}",
        f"--output={job_dir}/{LOG_FILE}",
        "--open-mode=append",
        f"--signal=TERM@{GRACE_S}",  # the steps get SIGTERM before the time limit: the trainer saves
        "--no-requeue",  # a failed node ends the job; recovery: decides what comes next, on Slurm or elsewhere
    ]
    return [f"#SBATCH {line}" for line in lines]


def _script(spec: JobSpec, opts: SlurmOptions, job_name: str, job_dir: str, argv: Sequence[str]) -> list[str]:
    env = _environment(spec, opts, job_name)
    exported = ",".join([*env, *spec.secrets])
    flags, command = _container(opts, spec, exported)
    srun = [
        "srun",
        "--kill-on-bad-exit=1",
        f"--nodes={spec.resources.nodes}",
        "--ntasks-per-node=1",
        *flags,
        *command,
        *argv,
    ]
    state = f'"$JOB_DIR/{STATE_FILE}"'
    return [
        "#!/bin/bash",
        *_sbatch_lines(spec, opts, job_name, job_dir),
        f"# launch: run {spec.name}, spec {spec.spec_hash()}; state and exit code in $JOB_DIR/{STATE_FILE}",
        "set -u",
        f"JOB_DIR='{job_dir}'",
        *(f"export {name}={shlex.quote(value)}" for name, value in env.items()),
        # scancel and the time limit signal the batch shell too: it waits for srun, whose tasks save and exit
        "trap 'echo \"[launcher] slurm: SIGTERM, waiting for the job to save\"' TERM",
        f'echo "RUNNING" > {state}.tmp && mv -f {state}.tmp {state}',
        shlex.join(srun),
        "code=$?",
        'if [ "$code" = 0 ]; then s=COMPLETED; else s=FAILED; fi',
        f'echo "$s $code" > {state}.tmp && mv -f {state}.tmp {state}',
        'exit "$code"',
    ]


def _notes(spec: JobSpec, opts: SlurmOptions) -> list[str]:
    notes = []
    if not spec.limits.max_runtime:
        notes.append(
            f"limits.max_runtime is not set: the job's Slurm time limit is {DEFAULT_TIME_S // 3600} h (never unlimited)"
        )
    if not opts.job_root:
        notes.append(
            f"slurm.job_root is not set: the job's folder ({JOB_DIR_PLACEHOLDER}) is chosen at submit: "
            f"<state dir>/slurm/<job>, or ~/{SUBMIT_ROOT}/<job> on the login host"
        )
    if spec.checkpoint.uri and _is_local_path(spec.checkpoint.uri):
        notes.append(f"checkpoint.uri {spec.checkpoint.uri} must be a folder every node shares (NFS, Lustre, ...)")
    if opts.container == "oci":
        notes.append("container oci: the bundle's config.json must bind the checkpoint folder and /etc/hosts")
    return notes


# ---------------------------------------------------------------- reading Slurm


@dataclass(frozen=True)
class SlurmJob:
    """What Slurm (or the job's own state file) says of one job."""

    state: str  # Slurm's state code: RUNNING, COMPLETED, NODE_FAIL, ...
    reason: str = ""
    exit_code: int | None = None
    source: str = ""  # squeue, sacct or the state file


@dataclass(frozen=True)
class Completed:
    """A finished command: what `run` returns (subprocess.CompletedProcess's fields that matter)."""

    returncode: int
    stdout: str
    stderr: str = ""


def _first(value: Any) -> Any:
    """23.02+ JSON wraps states (and flags) in lists; 22.05 writes a string."""
    if isinstance(value, list):
        return value[0] if value else ""
    return value


def _number(value: Any) -> int | None:
    """An int in any shape: 5, "5", {"set": true, "number": 5} (23.02+), or None when unset."""
    if isinstance(value, dict):
        if value.get("set") is False or value.get("infinite"):
            return None
        value = value.get("number")
    if isinstance(value, bool) or value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _exit_code(value: Any) -> int | None:
    """squeue JSON exit_code: a wait status (22.05) or {"status": ..., "return_code": ..., "signal": ...} (23.02+)."""
    if isinstance(value, dict):
        code = _number(value.get("return_code"))
        signal = value.get("signal")
        signal_id = _number(signal.get("id") if isinstance(signal, dict) else signal)
        if signal_id:
            return 128 + signal_id
        return code
    return _wait_status(value)


def _wait_status(value: Any) -> int | None:
    """22.05's squeue JSON exit_code: the raw wait status (36608 is exit 143; 15 is SIGTERM)."""
    raw = _number(value)
    if raw is None:
        return None
    return 128 + (raw & 0x7F) if raw & 0x7F else raw >> 8


def parse_squeue_json(text: str, job_id: str) -> SlurmJob | None:
    """The job in `squeue --json` output (22.05: job_state a string, exit_code an int holding the wait status;
    23.02+: lists and objects)."""
    try:
        jobs = json.loads(text).get("jobs") or []
    except (ValueError, AttributeError):
        raise ValueError("not squeue JSON") from None
    for job in jobs:
        if str(_number(job.get("job_id"))) != str(job_id).split(";")[0]:
            continue
        state = str(_first(job.get("job_state")) or "UNKNOWN").upper()
        return SlurmJob(state, str(job.get("state_reason") or ""), _exit_code(job.get("exit_code")), "squeue")
    return None


def parse_squeue_text(text: str, job_id: str) -> SlurmJob | None:
    """The job in `squeue -h -t all -o '%i|%T|%r'` output."""
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) >= 2 and parts[0] == str(job_id):
            return SlurmJob(parts[1].strip().upper(), parts[2].strip() if len(parts) > 2 else "", None, "squeue")
    return None


def parse_sacct(text: str, job_id: str) -> SlurmJob | None:
    """The job's own line in `sacct -X -n -P -o JobIDRaw,State,ExitCode -j ID`; State may read 'CANCELLED by 1000',
    ExitCode is 'code:signal'."""
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) < 3 or parts[0] != str(job_id):
            continue
        state = parts[1].split()[0].upper() if parts[1].strip() else "UNKNOWN"
        code, _, signal = parts[2].partition(":")
        # a real signal number; Slurm writes others there too (0:125 for OUT_OF_MEMORY), which the state says better
        killed = signal.isdigit() and 0 < int(signal) < 65
        exit_code = 128 + int(signal) if killed else int(code) if code.isdigit() else None
        return SlurmJob(state, parts[1].strip(), exit_code, "sacct")
    return None


def parse_state_file(text: str) -> SlurmJob | None:
    """The state file the batch script writes: `RUNNING`, then `COMPLETED 0` or `FAILED <code>`."""
    parts = text.split()
    if not parts:
        return None
    code = int(parts[1]) if len(parts) > 1 and parts[1].lstrip("-").isdigit() else None
    return SlurmJob(parts[0].upper(), "", code, "state file")


# ---------------------------------------------------------------- the backend


def _run_local(argv: Sequence[str], input: str | None = None, env: Mapping[str, str] | None = None) -> Completed:
    try:
        out = subprocess.run(
            list(argv),
            input=input,
            capture_output=True,
            text=True,
            env=dict(env) if env else None,
            timeout=120,
            check=False,
        )
    except FileNotFoundError:
        return Completed(127, "", f"{argv[0]}: command not found")
    except subprocess.TimeoutExpired:
        return Completed(124, "", f"{argv[0]} did not answer in 120 s")
    return Completed(out.returncode, out.stdout, out.stderr)


Run = Callable[..., Completed]


class SlurmBackend(Backend):
    """Submits to Slurm with its own commands (sbatch, squeue, sacct, scancel), here or over ssh on `login`.

    `run(argv, input=None, env=None) -> Completed` runs one command on this machine; tests inject it."""

    name: ClassVar[str] = "slurm"
    options_model: ClassVar[type[SlurmOptions]] = SlurmOptions
    unsupported: ClassVar[Mapping[Feature, str]] = {
        Feature.IMAGE_PUSH: "the cluster pulls the image from a registry (pyxis, apptainer) or reads a bundle (oci)",
    }
    ignored: ClassVar[Mapping[Feature, str]] = {
        Feature.SPOT: "a Slurm cluster has no spot capacity; a preemptible partition or QOS is slurm.partition/qos",
    }
    endings = ENDINGS

    def __init__(
        self,
        run: Run | None = None,
        state_dir: Path | None = None,
        sleep: Callable[[float], None] = time.sleep,
        environ: Mapping[str, str] | None = None,
        poll_s: float = 2.0,
        now: Callable[[], datetime] = datetime.now,
    ) -> None:
        self._now = now
        self._run_local = run or _run_local
        self._state_dir = state_dir
        self._sleep = sleep
        self._environ = environ
        self._poll_s = poll_s

    # ------------------------------------------------------------ plan

    def plan(self, spec: JobSpec, job_id: str | None = None) -> Plan:
        opts: SlurmOptions = self.options(spec)  # type: ignore[assignment]
        if opts.container == "oci" and not opts.bundle:
            raise LauncherError(
                "slurm.container is oci but slurm.bundle is not set.",
                "Set slurm.bundle to the OCI bundle's folder on the nodes (config.json + rootfs).",
            )
        job_name = job_id or spec.name
        job_dir = f"{opts.job_root.rstrip('/')}/{job_name}" if opts.job_root else JOB_DIR_PLACEHOLDER
        contract = EntrypointArgs.for_spec(
            spec, gpus=spec.resources.gpus, checkpoint_uri=spec.checkpoint.uri, max_runtime=spec.limits.max_runtime
        )
        payload: dict[str, Any] = {
            "script": _script(spec, opts, job_name, job_dir, contract.to_argv()),
            "job_dir": job_dir,
            "container": opts.container,
        }
        checks = {key: getattr(opts, key) for key in ("partition", "account", "bundle", "login") if getattr(opts, key)}
        payload.update(checks)
        return Plan(self.name, job_name, spec, payload, tuple(spec.secrets), tuple(_notes(spec, opts)))

    # ------------------------------------------------------------ commands, here or on the login host

    def _run(
        self, argv: Sequence[str], login: str | None, input: str | None = None, env: Mapping[str, str] | None = None
    ) -> Completed:
        if not login:
            return self._run_local(list(argv), input=input, env=env)
        return self._run_local(["ssh", "-o", "BatchMode=yes", login, "--", shlex.join(argv)], input=input, env=env)

    def _job_root(self, login: str | None) -> str:
        if login:
            return SUBMIT_ROOT  # relative: ssh starts the command in the login host's home

        return str((self._state_dir or state_dir()) / "slurm")

    # ------------------------------------------------------------ submit

    def submit(self, plan: Plan, secrets: Mapping[str, str] | None = None) -> JobRef:
        request = plan.request()
        login = request.get("login")
        values = self.secrets_for(plan, secrets)
        job_dir = request["job_dir"]
        if job_dir == JOB_DIR_PLACEHOLDER:
            job_dir = f"{self._job_root(login)}/{plan.job_name}"
            if _UNSAFE_PATH.search(job_dir):
                raise LauncherError(
                    f"The job's folder {job_dir} holds a space, quote or '%', which sbatch's --output cannot take.",
                    "Set slurm.job_root to a folder without them.",
                )
        script = script_of(plan).replace(JOB_DIR_PLACEHOLDER, job_dir)
        self._refuse_unknown(request, login)
        made = self._run(["mkdir", "-p", job_dir], login)
        if made.returncode != 0:
            raise LauncherError(
                f"Cannot make the job's folder {job_dir}: {_first_line(made.stderr)}.",
                "Set slurm.job_root to a folder you can write that the nodes share.",
            )
        if login:
            # the values travel on ssh's stdin ahead of the script, never on a command line or in the script
            lines = "".join(f"{name} {_b64(value)}\n" for name, value in values.items())
            remote = (
                'while read -r n v && [ -n "$n" ]; do export "$n=$(printf %s "$v" | base64 -d)"; done; '
                "exec sbatch --parsable"
            )
            out = self._run_local(["ssh", "-o", "BatchMode=yes", login, "--", remote], input=lines + "\n" + script)
        else:
            env = {**(os.environ if self._environ is None else self._environ), **values}
            out = self._run(["sbatch", "--parsable"], None, input=script, env=env)
        if out.returncode != 0:
            reason = _first_line(out.stderr or out.stdout) or f"sbatch exited {out.returncode}"
            raise LauncherError(
                f"Slurm refused the job: {reason}.", "Fix the slurm: options or the spec, then launch again."
            )
        native = out.stdout.strip().splitlines()[-1].split(";")[0].strip() if out.stdout.strip() else ""
        if not native.isdigit():
            raise LauncherError(
                f"sbatch answered {out.stdout.strip()[:80]!r}, not a job id.", "Check the cluster's sbatch."
            )
        extra = {"dir": job_dir, **({"login": login} if login else {})}
        return JobRef(plan.job_name, self.name, native, extra)

    def _refuse_unknown(self, request: Mapping[str, Any], login: str | None) -> None:
        """A partition, account or OCI bundle the cluster does not have, refused in one line before anything runs
        (sinfo always; sacctmgr only where accounting answers)."""
        partition = request.get("partition")
        if partition:
            out = self._run(["sinfo", "-h", "-o", "%R"], login)
            if out.returncode == 127 or "command not found" in out.stderr:
                raise LauncherError(
                    "sinfo is not on this machine: it is not a Slurm submit host.",
                    "Run launch on the cluster's login node, or set slurm.login to it.",
                )
            known = {line.strip() for line in out.stdout.splitlines() if line.strip()}
            if out.returncode == 0 and known and partition not in known:
                raise LauncherError(
                    f"The cluster has no partition {partition}.",
                    f"Set slurm.partition to one of: {', '.join(sorted(known))}.",
                )
        account = request.get("account")
        if account:
            out = self._run(["sacctmgr", "-n", "-P", "show", "account", "format=account"], login)
            known = {line.strip().lower() for line in out.stdout.splitlines() if line.strip()}
            if out.returncode == 0 and known and account.lower() not in known:
                raise LauncherError(
                    f"The cluster has no account {account}.", "Set slurm.account to one `sacctmgr show account` lists."
                )
        bundle = request.get("bundle")
        if bundle and request.get("container") == "oci":
            out = self._run(["test", "-f", f"{bundle}/config.json"], login)
            if out.returncode != 0:
                raise LauncherError(
                    f"The OCI bundle {bundle} has no config.json.",
                    "Make the bundle (config.json + rootfs) on the shared file system, or fix slurm.bundle.",
                )

    # ------------------------------------------------------------ follow

    def query(self, ref: JobRef) -> SlurmJob | None:
        """What Slurm says of the job: squeue (JSON, else text), then sacct, then the job's state file."""
        login, job = ref.extra.get("login"), ref.native_id
        out = self._run(["squeue", "--json", "-t", "all", "-j", job], login)
        found: SlurmJob | None = None
        if out.returncode == 0:
            try:
                found = parse_squeue_json(out.stdout, job)
            except ValueError:
                found = None
        if found is None:
            out = self._run(["squeue", "-h", "-t", "all", "-j", job, "-o", "%i|%T|%r"], login)
            found = parse_squeue_text(out.stdout, job) if out.returncode == 0 else None
            if out.returncode != 0 and "invalid job id" not in out.stderr.lower():  # the controller did not answer
                raise LauncherError(
                    f"squeue did not answer: {_first_line(out.stderr) or out.returncode}.",
                    "Check the cluster (or slurm.login's ssh), then ask again.",
                )
        if found is not None and (
            found.state not in _FAILED | {"COMPLETED", "CANCELLED"} or found.exit_code is not None
        ):
            return found
        acct = self._run(["sacct", "-X", "-n", "-P", "-o", "JobIDRaw,State,ExitCode", "-j", job], login)
        if acct.returncode == 0:
            found = parse_sacct(acct.stdout, job) or found
        if found is not None and found.exit_code is not None:
            return found
        own = self._state_file(ref)
        if found is not None:  # finished, but neither squeue nor sacct gave its code: the state file may
            code = own.exit_code if own is not None and own.state != "RUNNING" else None
            return SlurmJob(found.state, found.reason, code, found.source)
        return own

    def _state_file(self, ref: JobRef) -> SlurmJob | None:
        out = self._run(["cat", f"{ref.extra['dir']}/{STATE_FILE}"], ref.extra.get("login"))
        return parse_state_file(out.stdout) if out.returncode == 0 else None

    def _stopped(self, ref: JobRef) -> bool:
        return self._run(["test", "-f", f"{ref.extra['dir']}/{STOPPED_FILE}"], ref.extra.get("login")).returncode == 0

    def status(self, ref: JobRef) -> JobStatus:
        try:
            job = self.query(ref)
        except LauncherError as exc:
            return JobStatus(JobState.UNKNOWN, exc.message)
        if job is None:
            if self._stopped(ref):  # cancelled before it started, and forgotten since
                return JobStatus(JobState.STOPPED, "stopped (scancel)")
            return JobStatus(JobState.UNKNOWN, f"Slurm does not know job {ref.native_id} and it left no state file")
        return self._status_of(ref, job)

    def _status_of(self, ref: JobRef, job: SlurmJob) -> JobStatus:
        details = {"slurm_job_id": ref.native_id, "source": job.source}
        native = job.state
        if native == "RUNNING" and job.source == "state file":  # Slurm forgot a job that never wrote its end
            return self._failed(
                "lost", "the job vanished from Slurm without an exit code (node lost?)", None, native, details
            )
        if native in _PENDING:
            return JobStatus(
                JobState.PENDING,
                job.reason if job.reason not in ("None", "") else "",
                native_state=native,
                details=details,
            )
        if native in _RUNNING:
            return JobStatus(JobState.RUNNING, native_state=native, details=details)
        if native == "COMPLETED" and job.exit_code in (0, None):
            return JobStatus(JobState.SUCCEEDED, "", 0, native, details)
        if native == "CANCELLED" or self._stopped(ref):
            return JobStatus(JobState.STOPPED, "stopped (scancel)", job.exit_code, native, details)
        if job.exit_code == TIMEOUT_EXIT:
            return self._failed(
                "limits.max_runtime", "stopped: limits.max_runtime reached", job.exit_code, native, details
            )
        if native in ("PREEMPTED", "NODE_FAIL", "BOOT_FAIL", "TIMEOUT", "DEADLINE", "OUT_OF_MEMORY"):
            code = job.exit_code or None  # a failed job's exit status is never 0 (`launch` returns it)
            reason = f" ({job.reason})" if job.reason not in ("", "None") else ""
            return self._failed(native, f"{native}{reason}", code, native, details)
        code = job.exit_code or 1
        return self._failed("FAILED", f"exit code {code}", code, native, details)

    def _failed(
        self, reported: str, message: str, code: int | None, native: str, details: Mapping[str, Any]
    ) -> JobStatus:
        return JobStatus(JobState.FAILED, message, code, native, details, ending=self.ending_of(reported))

    def logs(self, ref: JobRef, follow: bool = False) -> Iterator[str]:
        """The output file, read from where the last pass stopped (`tail -c +N`, here or on the login host)."""
        path, login = f"{ref.extra['dir']}/{LOG_FILE}", ref.extra.get("login")
        offset = 0
        pending = ""

        def new_lines() -> Iterator[str]:
            nonlocal offset, pending
            out = self._run(["tail", "-c", f"+{offset + 1}", path], login)
            if out.returncode != 0:
                return
            offset += len(out.stdout.encode())
            *complete, pending = (pending + out.stdout).split("\n")
            yield from complete

        yield from follow_lines(new_lines, lambda: self.status(ref).finished, follow, self._sleep, self._poll_s)
        if pending:
            yield pending

    def cancel(self, ref: JobRef) -> None:
        """scancel: SIGTERM to every step (the trainer saves and exits 143), SIGKILL after the cluster's KillWait."""
        if self.status(ref).finished:
            return
        login = ref.extra.get("login")
        self._run(["touch", f"{ref.extra['dir']}/{STOPPED_FILE}"], login)
        out = self._run(["scancel", ref.native_id], login)
        if out.returncode != 0:
            raise LauncherError(
                f"scancel refused to stop job {ref.native_id}: {_first_line(out.stderr)}.",
                "Stop it with `scancel` on the cluster.",
            )

    def offers(self, spec: JobSpec) -> list[Offer]:
        """The on-prem row: the cluster's own $/GPU-hour (slurm.gpu_hour_price, default 0) and the queue wait that
        Slurm's scheduler predicts for this very job (`sbatch --test-only`, the estimate `squeue --start` shows for
        pending jobs), when it answers."""

        opts: SlurmOptions = self.options(spec)  # type: ignore[assignment]
        res = spec.resources
        gpu_type = (
            canonical_device(res.gpu_type or opts.gpu_type) if res.gpus and (res.gpu_type or opts.gpu_type) else None
        )
        details: dict[str, Any] = {"device": gpu_type or "cpu", "gpu_hour_price": opts.gpu_hour_price}
        wait = self.queue_wait(spec)
        if wait is not None:
            details["queue_wait_s"] = round(wait)
        where = f"partition {opts.partition}" if opts.partition else "default partition"
        name = f"{where} ({res.nodes}x {res.gpus}x {gpu_type or 'GPU'})" if res.gpus else f"{where} ({res.nodes}x CPU)"
        price = opts.gpu_hour_price * res.gpus
        return [
            Offer(
                self.name,
                name,
                gpu_type,
                res.gpus,
                res.nodes,
                price,
                startup_s=CONTAINER_START_S + (wait or 0.0),
                details=details,
            )
        ]

    def queue_wait(self, spec: JobSpec) -> float | None:
        """Seconds until Slurm would start `spec` now (sbatch --test-only), or None when it does not say."""
        plan = self.plan(spec)
        opts: SlurmOptions = self.options(spec)  # type: ignore[assignment]
        script = script_of(plan).replace(JOB_DIR_PLACEHOLDER, "/tmp")
        out = self._run(["sbatch", "--test-only"], opts.login, input=script)
        return parse_test_only(out.stderr + out.stdout, self._now())

    def check(self) -> BackendCheck:
        """Is sbatch reachable (here, or on the login host of SLURM_LOGIN), and which containers can srun run?"""
        login = (os.environ if self._environ is None else self._environ).get("LAUNCHER_SLURM_LOGIN")
        out = self._run(["sbatch", "--version"], login)
        if out.returncode != 0:
            where = f"on {login}" if login else "on this machine"
            return BackendCheck(
                self.name, False, None, f"sbatch is not reachable {where} ({_first_line(out.stderr) or out.returncode})"
            )
        kinds = ["none"]
        srun_help = self._run(["srun", "--help"], login).stdout
        if "--container-image" in srun_help:
            kinds.append("pyxis")
        if "--container" in srun_help.replace("--container-", ""):
            kinds.append("oci")
        if self._run(["sh", "-c", "command -v apptainer"], login).returncode == 0:
            kinds.append("apptainer")
        return BackendCheck(self.name, True, None, f"{out.stdout.strip()}; containers: {', '.join(kinds)}")


def parse_test_only(text: str, now: datetime) -> float | None:
    """`sbatch: Job 3 to start at 2026-12-07T17:20:00 using 2 processors on nodes node[1-2] in partition debug`
    -> seconds from `now` (Slurm writes the controller's local time)."""
    found = re.search(r"to start at (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)", text)
    if not found:
        return None
    return max(0.0, (datetime.fromisoformat(found.group(1)) - now).total_seconds())


def _first_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").strip().splitlines() if line.strip()]
    return lines[0][:300].removeprefix("sbatch: error: ").rstrip(".") if lines else ""


def _b64(value: str) -> str:
    import base64  # noqa: PLC0415

    return base64.b64encode(value.encode()).decode()
