"""The local backend: train on this machine, in Docker or as host processes.

Both runtimes run the same container entrypoint (`python -m
launcher.runtime.entrypoint ... -- train key=value ...`), so a job behaves here as it
does on a cloud backend.

- `docker`: the payload is the keyword arguments of the docker SDK's
  `containers.create` (image, command, environment, volumes, device_requests,
  shm_size, labels, name). The data folder is mounted read-only at /data, the
  checkpoint folder read-write at /checkpoints.
- `process`: the payload is the argv, environment and working directory of
  the entrypoint on the host (argv[0] `python` means the interpreter running
  `launch`). A small supervisor (`python -m launcher.backends.local supervise DIR --
  ARGV`) runs it in its own process group, writes its output to
  `DIR/output.log` and its exit code to `DIR/exit_code`, so `launch logs` and
  `launch status` work after the CLI that started the job has exited; it also
  enforces limits.max_runtime. DIR is `<state dir>/local/<job id>`.

`runtime: auto` is resolved at SUBMIT time, because `plan` is pure and cannot
probe Docker: an `auto` plan holds both payloads, and submit uses the docker
one when the engine answers and the image is present, otherwise the process
one, saying why on stderr.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator, Literal, Mapping, TextIO

from pydantic import Field, field_validator

from launcher.backend import Backend, BackendCheck, BackendOptions, Feature, Offer
from launcher.contract import (
    DATA_DIR_VARIABLE,
    ENTRYPOINT,
    TIMEOUT_EXIT,
    EntrypointArgs,
    code_archive,
    data_dir,
    host_weights,
    staged_weights,
    weights_location,
)
from launcher.errors import LauncherError, MissingExtraError
from launcher.estimate.local import local_offers
from launcher.plan import Ending, JobRef, JobState, JobStatus, Plan
from launcher.runtime.cpu import explicit_threads, loader_workers
from launcher.spec import BUILTIN_DATASETS, JobSpec, host_system_path, refuse_azure_only
from launcher.staging.data import CONTENT
from launcher.staging.image import checked_client
from launcher.state.jobs import state_dir
from launcher.storage import is_remote

__all__ = [
    "LocalBackend", "LocalOptions", "Mount", "docker_payload", "process_payload", "shm_bytes", "loader_workers_of",
    "host_gpu_count", "supervise", "host_paths", "host_line",
]  # fmt: skip

DATA_TARGET = "/data"
CHECKPOINT_TARGET = "/checkpoints"
WEIGHTS_TARGET = "/weights"  # train.pretrained's file on this machine, mounted read-only (no copy in the store)
DATA_CACHE_TARGET = "/var/cache/launcher-data"  # the host's remote-data cache, for data: s3:// / gs:// / az://
STOP_GRACE_S = 30  # SIGTERM first, SIGKILL after this many seconds (docker stop's timeout)
LOG_FILE, EXIT_FILE, STOPPED_FILE, TIMEOUT_FILE = "output.log", "exit_code", "stopped", "timed_out"
OOM_FILE, OOM_MESSAGE = (
    "oom_killed",
    "oom-killed: the container ran out of memory",
)  # kept once the container is removed
# Secret values reach a container through a read-only file that a small shell shim sources
# before exec'ing the real entrypoint, never through its environment (`docker inspect` shows that).
SECRETS_FILE, SECRETS_TARGET = "secrets.env", "/run/launcher/secrets.env"
SECRETS_SHIM = f'set -a; . {SECRETS_TARGET}; set +a; exec "$@"'
_MIB = 1024 * 1024

# How a local job ended -> Ending, matched against the text _finished composes; first match wins.
# A job's exit code past 128 is 128 + the signal that ended it (bash(1), EXIT STATUS); docker reports
# the kernel's OOM kill as State.OOMKilled (https://docs.docker.com/engine/containers/resource_constraints/).
ENDINGS: tuple[tuple[str, Ending], ...] = (
    (r"^oom-killed", Ending.USER_ERROR),  # the job's own memory use: the next attempt would meet the same limit
    (r"^limits\.max_runtime", Ending.USER_ERROR),
    # SIGTERM, SIGKILL or SIGHUP from outside (`launch stop` writes its marker first and reads as stopped):
    # what a reclaim, a shutdown or a killed container does
    (r"^exit code (143|137|129)$", Ending.PREEMPTED),
    (r"^lost", Ending.NODE_FAILURE),  # the job and its supervisor vanished without an exit code (reboot, kill -9)
    (r"^exit code \d+$", Ending.USER_ERROR),
)


_USER_RE = re.compile(r"^(?:[a-z_][a-z0-9_-]{0,31}|[0-9]{1,10})(?::(?:[a-z_][a-z0-9_-]{0,31}|[0-9]{1,10}))?$")


class Mount(BackendOptions):
    """A host folder made visible to the container (docker runtime only)."""

    source: str = Field(description="host path (a relative one is read from the spec file's folder)")
    target: str = Field(description="absolute path inside the container")
    read_only: bool = Field(True, description="mount read-only (default)")

    @field_validator("source", "target")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"'{value}' is not an absolute path")
        if ":" in value or "," in value:  # docker reads them as the separators of source:target:mode
            raise ValueError(
                f"'{value}' has a ':' or ','; docker would read them as separators: mount a folder without them"
            )
        return value

    @field_validator("source")
    @classmethod
    def _not_the_hosts(cls, value: str) -> str:
        if (why := host_system_path(value)) is not None:
            raise ValueError(f"'{value[:80]}' {why}; mount a folder of your own")
        return value


class LocalOptions(BackendOptions):
    """The `local:` section of a job spec."""

    runtime: Literal["auto", "docker", "process"] = Field(
        "auto", description="docker, process (torchrun on the host) or auto: docker when an engine answers"
    )
    nproc: int | None = Field(None, ge=1, le=256, description="processes per node (default: GPUs, or 1 on CPU)")
    shm_size: str | None = Field(
        None, description="container shared memory, like '8g' (default: sized for DataLoader workers)"
    )
    gpus: list[str] | None = Field(
        None, description="GPU device ids to use, like ['0', '1'] (default: any resources.gpus GPUs)"
    )
    mounts: list[Mount] = Field(default_factory=list, description="extra host folders to mount into the container")
    entrypoint: list[str] | None = Field(None, description="override the image's ENTRYPOINT (docker runtime)")
    user: str | None = Field(
        None, description="run the container as this user, like '1000:1000' (default: the submitting user's uid:gid)"
    )
    network: str | None = Field(None, description="docker network mode, like 'host' (default: bridge)")
    python: str = Field("python", description="interpreter of the process runtime; 'python' = the one running launch")
    workdir: str | None = Field(
        None,
        description="working directory of the process runtime (default: the current one; "
        "a relative one is read from the spec file's folder)",
    )

    @field_validator("shm_size")
    @classmethod
    def _shm(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[1-9][0-9]{0,14}[bkmg]?", value.strip().lower()):
            raise ValueError(f"'{value[:40]}' is not a size; write it like '8g' or '512m'")  # ASCII, as docker reads
        return value

    @field_validator("user")
    @classmethod
    def _user(cls, value: str | None) -> str | None:
        if value is not None and not _USER_RE.match(value):
            raise ValueError(
                f"'{value[:40]}' is not a user; write it as NAME, UID, NAME:GROUP or UID:GID (like '1000:1000')"
            )
        return value

    @field_validator("workdir")
    @classmethod
    def _workdir(cls, value: str | None) -> str | None:
        if value is not None and "\0" not in value and not os.path.isdir(value):
            raise ValueError(f"'{value[:80]}' is not a folder here; the process runtime runs the job in it")
        return value

    @field_validator("gpus", mode="before")
    @classmethod
    def _gpu_ids(cls, value: Any) -> Any:
        if isinstance(value, (str, int)):
            value = str(value).split(",")
        if isinstance(value, list) and all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in value):
            return [str(v).strip() for v in value]
        return value  # anything else: pydantic names what is wrong


def loader_workers_of(spec: JobSpec, nproc: int, gpus: int) -> int:
    """The DataLoader workers per process the job's trainer will run at most, by the trainer's own rule
    (launcher.runtime.cpu.loader_workers), not the raw `train.workers`: a CPU job of the built-in trainer runs
    none unless OMP_NUM_THREADS leaves cores free. Ultralytics and a program of your own: `train.workers`."""
    if spec.command or spec.train.engine != "builtin":
        return spec.train.workers
    # torchrun sets OMP_NUM_THREADS=1 for its processes when it starts more than one and the env does not set it
    omp = explicit_threads(spec.env) or (1 if nproc > 1 else None)
    cached = spec.train.cache == "disk"  # cache=ram falls back to no cache when memory is short: not certain
    return loader_workers(spec.train.workers, processes=nproc, gpu=gpus > 0, cached=cached, cpus=None, omp=omp)


def shm_bytes(nproc: int, workers: int) -> int:
    """Shared memory for the DataLoader: each worker passes batches through /dev/shm.

    Docker's default of 64 MiB makes PyTorch DataLoader workers die with "bus
    error" (https://github.com/pytorch/pytorch#docker-image). We give each
    process 512 MiB plus 256 MiB per worker (the workers the trainer will run:
    loader_workers_of), and never less than 1 GiB.
    """
    return max(1024, nproc * (512 + 256 * workers)) * _MIB


def _shm_mib(spec: JobSpec, opts: "LocalOptions") -> int:
    nproc = _nproc(spec, opts)
    return shm_bytes(nproc, loader_workers_of(spec, nproc, _gpu_count(spec, opts))) // _MIB


def host_gpu_count() -> int:
    """NVIDIA GPUs the driver reports, without importing torch (one folder per GPU)."""
    gpus = Path("/proc/driver/nvidia/gpus")
    return len(list(gpus.iterdir())) if gpus.is_dir() else 0


# ---------------------------------------------------------------- plan (pure)


def _is_local_path(value: str | None) -> bool:
    return bool(value) and value not in BUILTIN_DATASETS and "://" not in str(value)


def _gpu_count(spec: JobSpec, opts: LocalOptions) -> int:
    if opts.gpus is None:
        return spec.resources.gpus
    if spec.resources.gpus not in (0, len(opts.gpus)):
        raise LauncherError(
            f"resources.gpus is {spec.resources.gpus} but local.gpus lists {len(opts.gpus)} device(s).",
            "Make them agree, or drop resources.gpus.",
        )
    return len(opts.gpus)


def _nproc(spec: JobSpec, opts: LocalOptions) -> int:
    return opts.nproc or max(_gpu_count(spec, opts), 1)


def _entrypoint_args(
    spec: JobSpec,
    opts: LocalOptions,
    checkpoint: str | None,
    data: str | None,
    max_runtime: int | None = None,
    code: str | None = None,
    weights: str | None = None,
) -> list[str]:
    """The entrypoint's arguments, per the container contract (launcher.contract)."""
    contract = EntrypointArgs.for_spec(
        spec,
        gpus=_gpu_count(spec, opts),
        checkpoint_uri=checkpoint,
        data=data,
        nproc=opts.nproc,
        max_runtime=max_runtime,
        code=code,
        weights=weights,
    )
    return contract.to_argv()


def _environment(spec: JobSpec) -> dict[str, str | None]:
    """Spec env plus secret NAMES (value None): submit reads the values from its own environment."""
    env: dict[str, str | None] = {"PYTHONUNBUFFERED": "1", **spec.env}
    env.update({name: None for name in spec.secrets})
    return env


def _labels(spec: JobSpec, job_name: str) -> dict[str, str]:
    return {
        "launcher.job": job_name,
        "launcher.name": spec.name,
        "launcher.backend": "local",
        "launcher.spec-hash": spec.spec_hash(),
    }


def _volumes(spec: JobSpec, opts: LocalOptions) -> dict[str, dict[str, str]]:
    volumes: dict[str, dict[str, str]] = {}
    if _is_local_path(spec.data()):
        volumes[str(spec.data())] = {"bind": DATA_TARGET, "mode": "ro"}
    if _is_local_path(spec.checkpoint.uri):
        volumes[str(spec.checkpoint.uri)] = {"bind": CHECKPOINT_TARGET, "mode": "rw"}
    if (weights := host_weights(spec)) is not None:
        volumes[weights] = {"bind": _mounted_weights(weights), "mode": "ro"}
    for mount in opts.mounts:
        volumes[mount.source] = {"bind": mount.target, "mode": "ro" if mount.read_only else "rw"}
    return volumes


def _mounted_weights(file: str) -> str:
    return f"{WEIGHTS_TARGET}/{Path(file).name}"


def _device_requests(spec: JobSpec, opts: LocalOptions) -> list[dict[str, Any]]:
    """GPUs through an NVIDIA device request (what `docker run --gpus` sends)."""
    if _gpu_count(spec, opts) == 0:
        return []
    request: dict[str, Any] = {"driver": "nvidia", "capabilities": [["gpu"]]}
    if opts.gpus is not None:
        request["device_ids"] = list(opts.gpus)
    else:
        request["count"] = spec.resources.gpus
    return [request]


def docker_payload(spec: JobSpec, opts: LocalOptions, job_name: str) -> dict[str, Any]:
    """Keyword arguments of docker SDK `containers.create`."""
    checkpoint = CHECKPOINT_TARGET if _is_local_path(spec.checkpoint.uri) else spec.checkpoint.uri
    data = DATA_TARGET if _is_local_path(spec.data()) else None
    # the code archive, submitted into the checkpoint folder (launcher.staging.code), as the container sees that folder
    code = code_archive(CHECKPOINT_TARGET, CONTENT) if spec.code and _is_local_path(spec.checkpoint.uri) else None
    # a weights file of this machine is mounted; weights fetched at submit (launcher.staging.weights) are stored
    # in the checkpoint folder too
    staged = staged_weights(spec)
    weights = None
    if (file := host_weights(spec)) is not None:
        weights = _mounted_weights(file)
    elif staged is not None and _is_local_path(spec.checkpoint.uri):
        weights = weights_location(CHECKPOINT_TARGET, staged[1])
    payload: dict[str, Any] = {
        "image": spec.image,
        "name": job_name,
        "command": _entrypoint_args(
            spec, opts, checkpoint, data, spec.limits.max_runtime, code, weights
        ),  # the entrypoint enforces it
        "environment": _environment(spec),
        "labels": _labels(spec, job_name),
        "shm_size": opts.shm_size or f"{_shm_mib(spec, opts)}m",
        "volumes": _volumes(spec, opts),
    }
    extras = {"entrypoint": opts.entrypoint, "user": opts.user, "network_mode": opts.network}
    payload.update({k: v for k, v in extras.items() if v is not None})
    if requests := _device_requests(spec, opts):
        payload["device_requests"] = requests
    return payload


def process_payload(spec: JobSpec, opts: LocalOptions) -> dict[str, Any]:
    """argv, extra environment and working directory of the entrypoint on the host."""
    env = _environment(spec)
    if opts.gpus is not None:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(opts.gpus)
    payload: dict[str, Any] = {
        "argv": [
            opts.python,
            *ENTRYPOINT[1:],
            *_entrypoint_args(spec, opts, spec.checkpoint.uri, None, weights=host_weights(spec)),  # read where it is
        ],
        "env": env,
        "gpus": _gpu_count(spec, opts),
    }
    if opts.workdir:
        payload["cwd"] = opts.workdir
    if spec.limits.max_runtime:
        payload["max_runtime_s"] = spec.limits.max_runtime  # enforced by the supervisor
    return payload


def _notes(spec: JobSpec, opts: LocalOptions) -> list[str]:
    notes = []
    if opts.runtime == "auto":
        notes.append("runtime auto: docker if the engine answers and the image exists at submit, else process")
    if spec.resources.gpu_type:
        notes.append(f"resources.gpu_type {spec.resources.gpu_type} is ignored locally: the host's GPUs are used")
    if spec.resources.cpus or spec.resources.memory:
        notes.append(
            "resources.cpus and resources.memory choose a cloud machine; locally the job shares the "
            "host's CPUs and memory (no limit is set)"
        )
    if not spec.checkpoint.uri:
        notes.append("checkpoint.uri is not set: checkpoints stay in a temporary folder (in the container for docker)")
    return notes


# ---------------------------------------------------------------- the backend


class LocalBackend(Backend):
    """Runs jobs on this machine. Clients and host probes are injected for tests."""

    name: ClassVar[str] = "local"
    extra: ClassVar[str | None] = "docker"
    options_model: ClassVar[type[LocalOptions]] = LocalOptions
    unsupported: ClassVar[Mapping[Feature, str]] = {
        Feature.MULTI_NODE: "it runs one node, this machine",
        Feature.IMAGE_PUSH: "images built here are already local",
    }
    ignored: ClassVar[Mapping[Feature, str]] = {Feature.SPOT: "this machine has no spot capacity"}
    endings = ENDINGS

    def __init__(
        self,
        docker_client: Any = None,
        state_dir: Path | None = None,
        gpu_count: Callable[[], int] = host_gpu_count,
        stderr: TextIO | None = None,
    ) -> None:
        self._docker = docker_client
        self._state_dir = state_dir
        self._gpu_count = gpu_count
        self._stderr = stderr
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    # ------------------------------------------------------------ plan

    def plan(self, spec: JobSpec, job_id: str | None = None) -> Plan:
        opts: LocalOptions = self.options(spec)  # type: ignore[assignment]
        refuse_azure_only(spec, self.name)
        job_name = job_id or spec.name
        payload: dict[str, Any] = {"runtime": opts.runtime}
        if opts.runtime in ("auto", "docker"):
            payload["docker"] = docker_payload(spec, opts, job_name)
        if opts.runtime in ("auto", "process"):
            payload["process"] = process_payload(spec, opts)
        return Plan("local", job_name, spec, payload, tuple(spec.secrets), tuple(_notes(spec, opts)))

    # ------------------------------------------------------------ submit

    def submit(self, plan: Plan, secrets: Mapping[str, str] | None = None) -> JobRef:
        request = plan.request()
        runtime = self._runtime(request)
        values = self.secrets_for(plan, secrets)
        if runtime == "docker":
            return self._submit_docker(plan.job_name, request["docker"], values)
        return self._submit_process(plan.job_name, request["process"], values)

    def _runtime(self, request: dict[str, Any]) -> str:
        if request["runtime"] != "auto":
            return str(request["runtime"])
        why = self._docker_unusable(request["docker"]["image"])
        if why is None:
            return "docker"
        self._say(f"local: {why}; running the job as host processes (set local.runtime to choose).")
        return "process"

    def _docker_unusable(self, image: str) -> str | None:
        """Why `auto` cannot use Docker, or None when it can."""
        try:
            client = self.docker()
        except MissingExtraError:
            from launcher.lazy import DIST  # noqa: PLC0415

            return f"Docker support is not installed (pip install '{DIST}[docker]')"
        except LauncherError as exc:
            return exc.message.rstrip(".")
        errors = _docker_errors()
        try:
            client.images.get(image)
        except errors.ImageNotFound:
            return f"the image {image} is not on this machine"
        return None

    def _submit_docker(self, job_name: str, payload: dict[str, Any], secrets: dict[str, str]) -> JobRef:
        client = self.docker()
        _require_image(client, payload["image"])
        if payload.get("device_requests"):
            _require_nvidia_runtime(client)
        _prepare_mounts(payload.get("volumes", {}))
        payload = _with_data_cache(payload)
        # The image runs as root (the clouds mount their folders root-owned); here the container
        # runs as the submitting user instead, so what it writes into bind-mounted folders
        # (checkpoints, results) belongs to that user, as the process runtime's files do.
        payload.setdefault("user", f"{os.getuid()}:{os.getgid()}")
        payload["environment"] = {k: v for k, v in payload["environment"].items() if v is not None}
        payload["environment"]["LAUNCHER_JOB_ID"] = job_name  # whose lease the entrypoint renews (storage.lease)
        secrets_file = self._secrets_file(job_name, secrets) if secrets else None
        if secrets_file is not None:
            payload = _with_secrets_file(client, payload, secrets_file)
        try:
            container = _start_container(client, payload)
        finally:
            if secrets_file is not None:
                secrets_file.unlink(missing_ok=True)  # the started container keeps its mount of the file
        return JobRef(job_name, self.name, container.id, {"runtime": "docker", "container": payload["name"]})

    def _secrets_file(self, job_name: str, secrets: Mapping[str, str]) -> Path:
        """A sourceable NAME='value' file in the job's folder, which only this user may enter."""
        job_dir = self.job_dir(job_name)
        job_dir.mkdir(parents=True, exist_ok=True)
        job_dir.chmod(0o700)
        path = job_dir / SECRETS_FILE
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)  # 0644: the container may run as another uid
        with os.fdopen(fd, "w") as out:
            out.writelines(
                f"{name}='{value.replace(chr(39), chr(39) + chr(92) + chr(39) + chr(39))}'\n"
                for name, value in secrets.items()
            )
        return path

    def _submit_process(self, job_name: str, payload: dict[str, Any], secrets: dict[str, str]) -> JobRef:
        gpus = int(payload.get("gpus", 0))
        if gpus and self._gpu_count() < gpus:
            raise LauncherError(
                f"The job asks for {gpus} GPU(s) but this machine has {self._gpu_count()}.",
                "Set resources.gpus: 0 to train on the CPU, or run it on a cloud backend (-b aws|gcp|azure).",
            )
        job_dir = self.job_dir(job_name)
        job_dir.mkdir(parents=True, exist_ok=True)
        argv = list(payload["argv"])
        if argv[0] == "python":
            argv[0] = sys.executable  # the interpreter (and venv) running launch
        env = {**os.environ, **{k: v for k, v in payload["env"].items() if v is not None}, **secrets}
        env["LAUNCHER_JOB_ID"] = job_name  # whose lease the entrypoint renews (launcher.storage.lease)
        limit = ["--max-runtime", str(payload["max_runtime_s"])] if payload.get("max_runtime_s") else []
        supervisor = [sys.executable, "-m", "launcher.backends.local", "supervise", str(job_dir), *limit, "--", *argv]
        with open(job_dir / LOG_FILE, "ab") as log:
            proc = subprocess.Popen(
                supervisor, cwd=payload.get("cwd"), env=env, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        self._procs[job_name] = proc
        return JobRef(job_name, self.name, str(proc.pid), {"runtime": "process", "dir": str(job_dir)})

    # ------------------------------------------------------------ follow

    def status(self, ref: JobRef) -> JobStatus:
        if ref.extra.get("runtime") == "docker":
            return self._docker_status(ref)
        return self._process_status(ref)

    def logs(self, ref: JobRef, follow: bool = False) -> Iterator[str]:
        if ref.extra.get("runtime") == "docker":
            return self._docker_logs(ref, follow)
        return self._process_logs(ref, follow)

    def cancel(self, ref: JobRef) -> None:
        """SIGTERM, then SIGKILL after STOP_GRACE_S; a job that already ended keeps its own outcome."""
        if self.status(ref).finished:
            return
        self._dir(ref).mkdir(parents=True, exist_ok=True)
        (self._dir(ref) / STOPPED_FILE).write_text(str(time.time()))
        if ref.extra.get("runtime") == "docker":
            self._docker_container(ref).stop(timeout=STOP_GRACE_S)
            self.status(ref)  # keeps its log and exit code in the job's folder and removes the exited container now,
            # not when someone next asks (`launch stop` of a detached job left an `Exited (143)` container behind)
        else:
            self._stop_process(ref)

    def offers(self, spec: JobSpec) -> list[Offer]:
        """This machine as an option: electricity and hardware wear (launcher.estimate.local)."""
        return local_offers(spec)

    def check(self) -> BackendCheck:
        try:
            self.docker()
        except LauncherError as exc:
            return BackendCheck(self.name, True, None, f"process runtime only: {exc.message}")
        return BackendCheck(self.name, True, None, "docker and process runtimes ready")

    # ------------------------------------------------------------ docker

    def docker(self) -> Any:
        """The docker client: the injected one, or one from the environment, checked with a ping."""
        try:
            self._docker = checked_client(self._docker)
        except LauncherError:
            self._docker = None
            raise
        return self._docker

    def _docker_container(self, ref: JobRef) -> Any:
        errors = _docker_errors()
        try:
            return self.docker().containers.get(ref.native_id)
        except errors.NotFound:
            raise LauncherError(
                f"The container of job {ref.id} no longer exists.", "It was removed; its record is all that is left."
            ) from None

    def _docker_status(self, ref: JobRef) -> JobStatus:
        code = _read_exit_code(self._dir(ref))
        if code is not None:  # its container was removed once its logs were kept
            return self._finished(ref, code, "exited")
        try:
            container = self._docker_container(ref)
        except LauncherError as exc:
            return JobStatus(JobState.UNKNOWN, exc.message)
        state = container.attrs["State"]
        native = str(state.get("Status", ""))
        if native in ("created", "restarting"):
            return JobStatus(JobState.PENDING, native_state=native)
        if native in ("running", "paused"):
            return JobStatus(JobState.RUNNING, native_state=native)
        if state.get("OOMKilled"):
            self._dir(ref).mkdir(parents=True, exist_ok=True)
            (self._dir(ref) / OOM_FILE).write_text("1")
        status = self._finished(ref, int(state.get("ExitCode", 1)), native, str(state.get("Error") or ""))
        self._keep_and_remove(ref, container, int(state.get("ExitCode", 1)))
        return status

    def _keep_and_remove(self, ref: JobRef, container: Any, code: int) -> None:
        """Copy a finished container's log and exit code into the job's folder, then remove the container."""
        job_dir = self._dir(ref)
        job_dir.mkdir(parents=True, exist_ok=True)
        part = job_dir / f"{LOG_FILE}.part"
        mounts = host_paths(container)
        with open(part, "w", encoding="utf-8") as out:
            for line in _lines(container.logs(stream=True, follow=False)):
                out.write(host_line(line, mounts) + "\n")
        part.replace(job_dir / LOG_FILE)
        (job_dir / EXIT_FILE).write_text(str(code))  # written last: its presence says the log is complete
        try:
            container.remove()
        except _docker_errors().APIError:
            pass  # removed meanwhile by another `launch` process, or by the user

    def _docker_logs(self, ref: JobRef, follow: bool) -> Iterator[str]:
        if _read_exit_code(self._dir(ref)) is not None and (self._dir(ref) / LOG_FILE).exists():
            yield from (self._dir(ref) / LOG_FILE).read_text(encoding="utf-8", errors="replace").splitlines()
            return
        container = self._docker_container(ref)
        mounts = host_paths(container)
        if not follow:
            yield from (host_line(line, mounts) for line in container.logs().decode("utf-8", "replace").splitlines())
            return
        yield from (host_line(line, mounts) for line in _lines(container.logs(stream=True, follow=True)))

    # ------------------------------------------------------------ process

    def job_dir(self, job_name: str) -> Path:
        return (self._state_dir or state_dir()) / "local" / job_name

    def _dir(self, ref: JobRef) -> Path:
        return Path(ref.extra["dir"]) if "dir" in ref.extra else self.job_dir(ref.id)

    def _process_status(self, ref: JobRef) -> JobStatus:
        code = _read_exit_code(self._dir(ref))
        if code is not None:
            return self._finished(ref, code, "exited")
        if self._alive(ref):
            return JobStatus(JobState.RUNNING, native_state="running")
        if (self._dir(ref) / STOPPED_FILE).exists():
            return JobStatus(JobState.STOPPED, "stopped by the user", native_state="killed")
        return JobStatus(
            JobState.FAILED,
            "the job's processes ended without an exit code",
            native_state="lost",
            ending=self.ending_of("lost"),
        )

    def _finished(self, ref: JobRef, code: int, native: str, error: str = "") -> JobStatus:
        if (self._dir(ref) / STOPPED_FILE).exists():
            return JobStatus(JobState.STOPPED, "stopped by the user", code, native)
        if (self._dir(ref) / TIMEOUT_FILE).exists() or (code == TIMEOUT_EXIT and ref.extra.get("runtime") == "docker"):
            return JobStatus(
                JobState.FAILED,
                "stopped: limits.max_runtime reached",
                code,
                native,
                ending=self.ending_of("limits.max_runtime"),
            )
        if code == 0:
            return JobStatus(JobState.SUCCEEDED, "", 0, native)
        if (self._dir(ref) / OOM_FILE).exists():
            error = OOM_MESSAGE
        ending = self.ending_of(error if error == OOM_MESSAGE else f"exit code {code}")
        return JobStatus(JobState.FAILED, error or f"exit code {code}", code, native, ending=ending)

    def _alive(self, ref: JobRef) -> bool:
        proc = self._procs.get(ref.id)
        if proc is not None:
            return proc.poll() is None  # also reaps our own child, which would otherwise linger as a zombie
        return _group_alive(int(ref.native_id))

    def _process_logs(self, ref: JobRef, follow: bool) -> Iterator[str]:
        path = self._dir(ref) / LOG_FILE
        if not path.exists():
            return
        with open(path, "rb") as log:
            yield from _tail(log, lambda: follow and self._alive(ref) and _read_exit_code(self._dir(ref)) is None)

    def _stop_process(self, ref: JobRef) -> None:
        """SIGTERM the job's process group, then SIGKILL it after the grace period."""
        pgid = int(ref.native_id)
        if not self._alive(ref):
            return
        os.killpg(pgid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        while time.monotonic() < deadline and self._alive(ref):
            time.sleep(0.2)
        if self._alive(ref):
            os.killpg(pgid, signal.SIGKILL)

    def _say(self, message: str) -> None:
        print(message, file=self._stderr or sys.stderr, flush=True)


# ---------------------------------------------------------------- helpers


def _group_alive(pgid: int) -> bool:
    """Whether a process of the group still runs. A zombie does not: the job's supervisor, once it has exited, stays
    one until its parent reaps it, and that parent is the process that submitted the job when it still runs (a
    notebook, a test), which made `stop` wait out the whole grace period for a job that had ended."""
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    if not Path("/proc/self/stat").exists():
        return True  # no /proc (macOS): the signal's answer is all there is
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, _ppid, group = (
                stat.read_text().rsplit(")", 1)[1].split()[:3]
            )  # after "(comm)", which may hold spaces
        except (OSError, IndexError, ValueError):
            continue  # it ended meanwhile
        if int(group) == pgid and state != "Z":
            return True
    return False


def _docker_module() -> Any:
    from launcher.lazy import require  # noqa: PLC0415

    require("docker.errors", "docker")
    return require("docker", "docker")


def _docker_errors() -> Any:
    return _docker_module().errors


def _require_image(client: Any, image: str) -> None:
    try:
        client.images.get(image)
    except _docker_errors().ImageNotFound:
        raise LauncherError(
            f"The image {image} is not on this machine.",
            "Build it with `launch image build`, or set `image:` to one that `docker images` lists.",
        ) from None


def _require_nvidia_runtime(client: Any) -> None:
    """GPU device requests need the NVIDIA container toolkit, which registers the `nvidia` runtime.

    https://docs.nvidia.com/datacenter/cloud-native/container-toolkit/latest/install-guide.html
    """
    runtimes = client.info().get("Runtimes") or {}
    if "nvidia" not in runtimes:
        raise LauncherError(
            "The job asks for GPUs but Docker on this machine has no NVIDIA runtime.",
            "Install the NVIDIA Container Toolkit, or set resources.gpus: 0 to train on the CPU.",
        )


def _start_container(client: Any, payload: dict[str, Any]) -> Any:
    """Create and start; the engine's refusal (bad mount, name taken, ...) becomes one sentence."""
    errors = _docker_errors()
    container = None
    try:
        container = client.containers.create(**payload)
        container.start()
    except errors.APIError as exc:
        if container is not None:
            container.remove(force=True)
        reason = str(getattr(exc, "explanation", None) or exc).strip()
        raise LauncherError(
            f"Docker refused to start the job: {reason}.", "Fix the local: options or the spec."
        ) from None
    return container


def _with_secrets_file(client: Any, payload: dict[str, Any], path: Path) -> dict[str, Any]:
    """The payload with `path` mounted read-only and the entrypoint wrapped by SECRETS_SHIM."""
    entrypoint = (
        payload.get("entrypoint") or client.images.get(payload["image"]).attrs["Config"].get("Entrypoint") or []
    )
    if isinstance(entrypoint, str):
        entrypoint = ["/bin/sh", "-c", entrypoint]
    volumes = {**payload.get("volumes", {}), str(path): {"bind": SECRETS_TARGET, "mode": "ro"}}
    return {
        **payload,
        "entrypoint": ["/bin/sh", "-c", SECRETS_SHIM, "launcher-secrets", *entrypoint],
        "volumes": volumes,
    }


def _with_data_cache(payload: dict[str, Any]) -> dict[str, Any]:
    """The payload with this machine's data cache mounted when train.data is a remote URI or code ships.

    The entrypoint fetches remote data into $LAUNCHER_DATA_DIR (launcher.storage.dataset); pointed
    at the host's cache, a restarted container or the next job reuses the verified copy instead of
    downloading it again, and a container running as the submitting user can write there.
    """
    command = [str(a) for a in payload.get("command") or []]
    remote_data = any(a.startswith("data=") and is_remote(a[5:]) for a in command)
    flagged = {flag: value for flag, value in zip(command, command[1:]) if flag in ("--data", "--code")}
    if not remote_data and not is_remote(flagged.get("--data")) and "--code" not in flagged:
        return payload  # the code archive is unpacked into the cache too: a restarted container reuses it
    cache = data_dir()
    cache.mkdir(parents=True, exist_ok=True)
    volumes = {**payload.get("volumes", {}), str(cache): {"bind": DATA_CACHE_TARGET, "mode": "rw"}}
    return {
        **payload,
        "volumes": volumes,
        "environment": {**payload["environment"], DATA_DIR_VARIABLE: DATA_CACHE_TARGET},
    }


def _prepare_mounts(volumes: Mapping[str, Mapping[str, str]]) -> None:
    """Read-only sources must exist; read-write ones are created now, by this user.

    Docker silently creates a missing bind source as an empty, root-owned
    folder, which would turn a typo in train.data into a confusing trainer error.
    """
    for source, bind in volumes.items():
        if bind.get("mode") != "rw" and not Path(source).exists():
            raise LauncherError(
                f"{source} (mounted at {bind['bind']}) does not exist on this machine.",
                "Fix the path in train.data, train.pretrained or local.mounts.",
            )
    for source, bind in volumes.items():
        if bind.get("mode") == "rw":
            Path(source).mkdir(parents=True, exist_ok=True)


def _read_exit_code(job_dir: Path) -> int | None:
    try:
        return int((job_dir / EXIT_FILE).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def host_paths(container: Any) -> dict[str, str]:
    """The launcher's own mounts of a job's container: target inside it -> the folder on this machine."""
    ours = (CHECKPOINT_TARGET, DATA_TARGET, DATA_CACHE_TARGET)
    mounts = (container.attrs or {}).get("Mounts") or []
    return {m["Destination"]: m["Source"] for m in mounts if m.get("Destination") in ours and m.get("Source")}


def host_line(line: str, mounts: Mapping[str, str]) -> str:
    """A `[launcher]` line of the entrypoint as the user can act on it: the folders it names inside the container
    (`synced to /checkpoints/quickstart`) are the ones on this machine they are mounted from (issue 34 item 8).
    The program's own lines are left as they are."""
    if not line.startswith("[launcher]"):
        return line
    for target, source in mounts.items():
        line = re.sub(rf"(?<![\w./-]){re.escape(target)}(?![\w.-])", lambda _m, s=source: s, line)
    return line


def _lines(chunks: Iterator[bytes]) -> Iterator[str]:
    """Whole lines from a stream of byte chunks."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        *complete, pending = pending.split(b"\n")
        yield from (line.decode("utf-8", "replace") for line in complete)
    if pending:
        yield pending.decode("utf-8", "replace")


def _tail(log: Any, more: Callable[[], bool], poll: float = 0.2) -> Iterator[str]:
    """Lines of an open log file; while `more()` holds, wait for new ones (like `tail -f`)."""

    def chunks() -> Iterator[bytes]:
        while True:
            data = log.read()
            if data:
                yield data
                continue
            if not more():
                yield log.read()  # what was written between the last read and the end
                return
            time.sleep(poll)

    return _lines(chunks())


# ---------------------------------------------------------------- supervisor


def supervise(job_dir: Path, argv: list[str], max_runtime: float | None = None) -> int:
    """Run `argv`, then record its exit code atomically so `status` can read it later.

    The supervisor leads the job's process group: `cancel` signals the whole
    group, so the entrypoint gets SIGTERM directly and forwards it to torchrun;
    the supervisor itself only waits. A no-op handler (not SIG_IGN, which
    children would inherit) keeps it alive to write the code. Past
    `max_runtime` seconds it stops the group the same way and exits 124, as
    coreutils' `timeout` does.
    """
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    _become_subreaper()
    try:
        proc = subprocess.Popen(argv)
    except OSError as exc:
        print(f"[launcher] cannot start {argv[0]}: {exc}", flush=True)
        return _record_exit(job_dir, 127)
    try:
        code = proc.wait(timeout=max_runtime)
    except subprocess.TimeoutExpired:
        code = _time_out(job_dir, proc, max_runtime or 0)
    if _end_descendants():  # the entrypoint died (SIGKILL, the OOM killer) and left torchrun and the trainer
        ended = 128 - code if code < 0 else code
        print(f"[launcher] the entrypoint ended ({ended}); its processes were stopped with it", flush=True)
    return _record_exit(job_dir, 128 - code if code < 0 else code)


_PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h


def _become_subreaper() -> None:
    """Orphans of the job (torchrun, and the trainer in its own process group, once the entrypoint is SIGKILLed)
    are re-parented to this supervisor instead of init, so that it can find and stop them (Linux)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes  # noqa: PLC0415

    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # no prctl: the process-group signal still reaches what stayed in the group


def _descendants(root: int) -> list[int]:
    """The live processes below `root`, from /proc (empty where there is none)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, ppid = stat.read_text().rsplit(")", 1)[1].split()[:2]
        except (OSError, IndexError, ValueError):
            continue  # it ended meanwhile
        if state != "Z":
            children.setdefault(int(ppid), []).append(int(stat.parent.name))
    found, todo = [], [root]
    while todo:
        for pid in children.get(todo.pop(), []):
            found.append(pid)
            todo.append(pid)
    return found


def _end_descendants(grace: float = STOP_GRACE_S) -> bool:
    """SIGTERM what the job left running below this supervisor, SIGKILL it after `grace`; reap it. Whether any was."""
    left = _descendants(os.getpid())
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in left:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + (grace if sig == signal.SIGTERM else 5.0)
        while _descendants(os.getpid()) and time.monotonic() < deadline:
            _reap()
            time.sleep(0.1)
        if not _descendants(os.getpid()):
            break
    _reap()
    return bool(left)


def _reap() -> None:
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass


def _time_out(job_dir: Path, proc: subprocess.Popen[bytes], max_runtime: float) -> int:
    print(f"[launcher] limits.max_runtime ({max_runtime:.0f}s) reached: stopping the job", flush=True)
    (job_dir / TIMEOUT_FILE).write_text(str(max_runtime))
    os.killpg(os.getpgrp(), signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        _record_exit(job_dir, 124)
        os.killpg(os.getpgrp(), signal.SIGKILL)  # ends this supervisor too, after the code is written
    return 124


def _record_exit(job_dir: Path, code: int) -> int:
    tmp = job_dir / (EXIT_FILE + ".tmp")
    tmp.write_text(str(code))
    os.replace(tmp, job_dir / EXIT_FILE)
    return code


def _main(argv: list[str]) -> int:
    """`supervise JOB_DIR [--max-runtime SECONDS] -- ARGV...`"""
    max_runtime = None
    if argv[2:3] == ["--max-runtime"] and len(argv) > 3:
        max_runtime, argv = float(argv[3]), [*argv[:2], *argv[4:]]
    if len(argv) < 4 or argv[0] != "supervise" or argv[2] != "--":
        print(
            "usage: python -m launcher.backends.local supervise JOB_DIR [--max-runtime S] -- ARGV...", file=sys.stderr
        )
        return 2
    return supervise(Path(argv[1]), argv[3:], max_runtime)


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
