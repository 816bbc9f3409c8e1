"""The container contract: the one command line every backend gives the training image.

    python -m launcher.runtime.entrypoint --run-name NAME [--checkpoint-uri URI] [--keep K]
        [--every E] [--gpus N] [--nproc N] [--save-dir DIR] [--spec-hash H]
        [--max-runtime S] -- train key=value ...
    python -m launcher.runtime.entrypoint --run-name NAME [...] [--code URI] [--requirements FILE]
        [--data URI] -- PROGRAM ARGS               (a program of the user's own)

`EntrypointArgs` is that command line as a value. Backends (and the profiler)
build it with `EntrypointArgs.for_spec` and write it with `to_argv()`; the entrypoint reads
it back with `parse()`, so the two sides cannot drift. One field is one flag:
a new flag is one more field with its `_flag(...)` metadata, nothing else.
A flag is written only when its value differs from the field's default,
which is also the parser's default, so `parse(x.to_argv()) == x`.

Secret references travel in one environment variable, SECRET_REFS_VARIABLE,
as compact JSON {"NAME": "<scheme>:<reference>"}; the schemes are named here
and resolved inside the image by launcher.runtime.secrets.

The rest of what crosses the line between the user's machine and the image
is here too: the exit code of a job stopped by --max-runtime, where the
image keeps its datasets ($LAUNCHER_DATA_DIR, which the local backend mounts),
and the epoch summary line the trainer prints, with the regexes that
SageMaker's metric definitions apply to it, kept beside the format so the
two cannot drift apart.

This module runs on both sides (the user's machine and the image), so it
imports nothing beyond the standard library and launcher.errors.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from launcher.errors import LauncherError

if TYPE_CHECKING:  # the spec side only types these functions' argument; nothing here imports it
    from typing import Any as JobSpec

__all__ = [
    "EntrypointArgs",
    "ENTRYPOINT",
    "TIMEOUT_EXIT",
    "DATA_DIR_VARIABLE",
    "data_dir",
    "METRICS",
    "LOG_REGEXES",
    "log_regexes",
    "summary_line",
    "SECRET_REFS_VARIABLE",
    "SECRET_SCHEMES",
    "secret_ref",
    "secret_refs_value",
    "train_command",
    "CODE_FOLDER",
    "code_archive",
    "code_target",
    "ultralytics_epoch_seconds",
    "CONTENT",
    "BUILTIN_DATASETS",
    "code_sha256",
    "WEIGHTS_FOLDER",
    "WEIGHTS_SUFFIXES",
    "staged_weights",
    "host_weights",
    "shown_url",
    "weights_location",
    "weights_target",
    "weights_sha256",
    "PROGRAM_VARIABLES",
    "ENTRYPOINT_VARIABLES",
]

ENTRYPOINT = ("python", "-m", "launcher.runtime.entrypoint")
TIMEOUT_EXIT = 124  # a job stopped by --max-runtime, like coreutils `timeout`
DATA_DIR_VARIABLE = "LAUNCHER_DATA_DIR"
SECRET_REFS_VARIABLE = "LAUNCHER_SECRET_REFS"
# scheme -> where the value lives; resolved by launcher.runtime.secrets.RESOLVERS inside the image
SECRET_SCHEMES = {
    "aws-sm": "AWS Secrets Manager secret id or ARN",
    "aws-ssm": "AWS SSM Parameter Store name (SecureString)",
    "gcp-sm": "GCP Secret Manager version: projects/P/secrets/S/versions/V",
    "azure-kv": "Azure Key Vault secret URL: https://VAULT.vault.azure.net/secrets/NAME",
    "env": "a variable already in the container's environment",
}


# `code:` travels as one archive named by its content: <checkpoint.uri>/_code/<sha256>.tar.gz. The entrypoint
# checks the bytes it downloads against the name, so a damaged or swapped archive never runs.
CODE_FOLDER = "_code"
# Stands for the sha256 of what is shipped (code archive, data folder) in a plan until submit computes it.
CONTENT = "{content-sha256}"
# Pretrained weights named by a URL, an Ultralytics asset name or a store URI are fetched on the submitting machine
# and stored by content: <checkpoint.uri>/_weights/<sha256><suffix>. The train command names that location and the
# entrypoint (launcher.runtime.weights) reads it, checking the bytes against the name, so a job never downloads.
WEIGHTS_FOLDER = "_weights"
WEIGHTS_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")  # what torch.load reads; any other name is stored as .pt
_WEIGHTS_SOURCES = ("https://", "http://", "s3://", "gs://", "az://")
# Datasets the image makes itself (launcher.runtime.datasets); any other train.data is a folder or a URI.
BUILTIN_DATASETS = ("digits",)
_SHA256_HEX = frozenset("0123456789abcdef")

# What a program of the user's own finds in its environment (README "Your own training program"), besides
# torchrun's RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT.
PROGRAM_VARIABLES = {
    "LAUNCHER_CHECKPOINT_DIR": "the newest complete checkpoint of the run, restored before start; what the program "
    "writes there reaches the store with a manifest",
    "LAUNCHER_DATA": "where train.data was staged (a local folder), when the spec sets train.data",
    "LAUNCHER_RUN_NAME": "the run's name (the spec's name): its folder under checkpoint.uri",
    "LAUNCHER_RESUMED": "1 when LAUNCHER_CHECKPOINT_DIR was restored from an earlier job of the run, else 0",
    "LAUNCHER_GRACE_S": "seconds between the platform's SIGTERM and its SIGKILL: the time to save",
}


# Every variable the entrypoint sets for the job: a spec's env: or secrets: may not set them.
ENTRYPOINT_VARIABLES = frozenset({*PROGRAM_VARIABLES, "LAUNCHER_SAVE_DIR", "LAUNCHER_SPEC_HASH", "LAUNCHER_PLATFORM",
                                  SECRET_REFS_VARIABLE})  # fmt: skip


def code_archive(store_uri: str, sha256: str) -> str:
    """Where the code archive of this content lives under a store (`sha256` may be a placeholder)."""
    return f"{store_uri.rstrip('/')}/{CODE_FOLDER}/{sha256}.tar.gz"


def code_target(spec: "JobSpec") -> str:
    """Where the archive goes, with the CONTENT placeholder: <checkpoint.uri>/_code/{content-sha256}.tar.gz (pure)."""
    if not spec.checkpoint.uri:
        raise LauncherError(
            "code: is shipped to the run's checkpoint store, and this job has none.",
            "Set checkpoint.uri (a folder like runs, or an s3://, gs:// or az:// URI); the archive goes to <uri>/_code/.",
        )
    return code_archive(spec.checkpoint.uri, CONTENT)


def code_sha256(uri: str) -> str:
    """The sha256 a code archive's name promises; ValueError when the name is not `<64 hex>.tar.gz`."""
    name = uri.rstrip("/").rsplit("/", 1)[-1]
    sha = name.removesuffix(".tar.gz")
    if not name.endswith(".tar.gz") or len(sha) != 64 or not set(sha) <= _SHA256_HEX:
        raise ValueError(f"{uri!r} is not a code archive name (<sha256>.tar.gz)")
    return sha


def staged_weights(spec: "JobSpec") -> tuple[str, str] | None:
    """(the train key, its value) of weights fetched at submit (pure): the ultralytics engine's `.pt` model (an
    Ultralytics asset name or an http(s) URL: the job, offline, has no other way to get it; not an absolute path),
    the built-in trainer's `pretrained` URL, store URI or file on this machine (absolute: the job may run
    elsewhere, so it gets a copy; `host_weights`). None when the job reads no such weights (a model YAML,
    `true`)."""
    if spec.command:
        return None
    train = spec.train
    if train.engine == "ultralytics":
        name = train.model.split("?", 1)[0].split("#", 1)[0]
        by_name = "/" not in name  # an Ultralytics asset name; an absolute path is a file the job reads as it is
        return ("model", train.model) if name.lower().endswith(".pt") and ("://" in name or by_name) else None
    if isinstance(train.pretrained, str) and train.pretrained.lower().startswith(_WEIGHTS_SOURCES):
        return "pretrained", train.pretrained
    if isinstance(train.pretrained, str):
        return "pretrained", os.path.abspath(train.pretrained)  # the spec made it absolute; the Python API may not
    return None


def host_weights(spec: "JobSpec") -> str | None:
    """The staged weights' file on this machine (an absolute path), when that is where they come from (pure): a
    job on this machine reads it where it is (the local backend mounts it), any other gets a copy in its store."""
    staged = staged_weights(spec)
    return staged[1] if staged is not None and os.path.isabs(staged[1]) else None


def _weights_suffix(source: str) -> str:
    name = source.split("?", 1)[0].split("#", 1)[0].rstrip("/").rsplit("/", 1)[-1].lower()
    return next((s for s in WEIGHTS_SUFFIXES if name.endswith(s)), ".pt")


def weights_location(store_uri: str, source: str, sha256: str = CONTENT) -> str:
    """Where the weights of `source` live under a store, named by content (`sha256` may be the placeholder)."""
    return f"{store_uri.rstrip('/')}/{WEIGHTS_FOLDER}/{sha256}{_weights_suffix(source)}"


def weights_target(spec: "JobSpec") -> str | None:
    """Where the spec's staged weights go, with the CONTENT placeholder (pure); None when it stages none."""
    staged = staged_weights(spec)
    if staged is None:
        return None
    if not spec.checkpoint.uri:
        key, source = staged
        raise LauncherError(
            f"train.{key} {shown_url(source)} is {'copied' if os.path.isabs(source) else 'fetched'} at submit and "
            "stored in the run's checkpoint store, and this job has none.",
            "Set checkpoint.uri (a folder like runs, or an s3://, gs:// or az:// URI); the weights go to <uri>/_weights/.",
        )
    return weights_location(spec.checkpoint.uri, staged[1])


def weights_sha256(uri: str) -> str | None:
    """The sha256 a stored weights file's name promises (`.../_weights/<64 hex><suffix>`), else None."""
    folder, _, name = uri.rstrip("/").rpartition("/")
    sha, dot, suffix = name.partition(".")
    if not folder.endswith(WEIGHTS_FOLDER) or len(sha) != 64 or not set(sha) <= _SHA256_HEX:
        return None
    return sha if dot and f".{suffix}" in WEIGHTS_SUFFIXES else None


def shown_url(url: str) -> str:
    """A URL for a message: without its query or fragment, which may hold a token (a presigned URL's signature)."""
    base = url.split("?", 1)[0].split("#", 1)[0]
    return base + ("?..." if len(base) < len(url) else "")


def data_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The dataset cache: $LAUNCHER_DATA_DIR, else ~/.cache/launcher/datasets."""
    environ = os.environ if environ is None else environ
    if environ.get(DATA_DIR_VARIABLE):
        return Path(environ[DATA_DIR_VARIABLE])
    return Path.home() / ".cache" / "launcher" / "datasets"


# results.csv's columns after `epoch`, plus peak GPU memory (CUDA only; not a results.csv column)
METRICS = ["train_loss", "val_loss", "top1", "top5", "lr", "time_s", "images_per_s", "gpu_mem_gib"]
_NUM = r"([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"
_HEAD = r"\[train\] epoch [0-9]+/[0-9]+:"
# SageMaker applies each regex to every log line and plots group 1
# (https://docs.aws.amazon.com/sagemaker/latest/dg/training-metrics.html); anchoring on the summary's
# head keeps the per-step progress lines ("epoch 1/3 step 20/200 loss ... lr 0.01") from matching
LOG_REGEXES = {
    "epoch": r"\[train\] epoch ([0-9]+)/[0-9]+:",
    **{name: _HEAD + r".* " + name + " " + _NUM for name in METRICS},
}
# The ultralytics engine's epoch line ends with Ultralytics' own mAPs, named as in its results.csv without
# "metrics/": box (B) for every task but classify, mask (M) for segment, keypoints (P) for pose
_YOLO_MAP_SUFFIXES = {"detect": "B", "segment": "BM", "pose": "BP", "obb": "B", "classify": ""}


def log_regexes(engine: str = "builtin", task: str = "classify") -> dict[str, str]:
    """The metric name -> regex table for a job's logs: LOG_REGEXES, and the YOLO mAPs of the ultralytics engine."""
    if engine != "ultralytics":
        return dict(LOG_REGEXES)
    maps = [f"mAP{iou}({kind})" for kind in _YOLO_MAP_SUFFIXES[task] for iou in ("50", "50-95")]
    return {**LOG_REGEXES, **{name: _HEAD + r".* " + re.escape(name) + " " + _NUM for name in maps}}


def summary_line(row: Mapping[str, float], epochs: int) -> str:
    """The epoch's one-line summary (rank 0 prints it with the `[train] ` prefix)."""
    parts = [f"epoch {int(row['epoch'])}/{epochs}:"]
    parts += [f"{name} {_fmt(name, row[name])}" for name in METRICS if name in row]
    return " ".join(parts)


def _fmt(name: str, value: float) -> str:
    if name in ("time_s", "images_per_s", "gpu_mem_gib"):
        return f"{value:.2f}"
    return f"{value:.6g}" if name == "lr" else f"{value:.4f}"


def _flag(help_text: str, kind: type = str) -> dict[str, Any]:
    return {"flag": True, "help": help_text, "type": kind}


@dataclass(frozen=True)
class EntrypointArgs:
    """The entrypoint's command line. Field `save_dir` is flag `--save-dir`, and so on."""

    run_name: str = field(metadata=_flag("the run's folder under the checkpoint URI"))
    command: tuple[str, ...] = ("train",)
    checkpoint_uri: str | None = field(default=None, metadata=_flag("local path, s3://, gs:// or az:// URI"))
    keep: int = field(default=3, metadata=_flag("checkpoints to keep in the store", int))
    every: int = field(default=1, metadata=_flag("epochs between checkpoint uploads", int))
    gpus: int | None = field(default=None, metadata=_flag("GPUs per node (default: all visible)", int))
    nproc: int | None = field(default=None, metadata=_flag("processes per node (default: GPUs, or 1 on CPU)", int))
    save_dir: str | None = field(default=None, metadata=_flag("local folder the trainer writes checkpoints to"))
    spec_hash: str = field(default="", metadata=_flag("hash of the job spec, stored in checkpoints"))
    max_runtime: int | None = field(
        default=None, metadata=_flag("seconds; then SIGTERM (the trainer saves last.pt) and exit 124", int)
    )
    code: str | None = field(
        default=None,
        metadata=_flag("the code archive <store>/_code/<sha256>.tar.gz: unpacked, then the command runs in it"),
    )
    requirements: str | None = field(
        default=None,
        metadata=_flag("a requirements file in the code folder, installed at start over the image's packages"),
    )
    data: str | None = field(
        default=None,
        metadata=_flag(
            "train.data for a program of the user's own: staged once per node, its local folder in LAUNCHER_DATA"
        ),
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "command", tuple(self.command) or ("train",))

    def to_argv(self) -> list[str]:
        """The arguments after `python -m launcher.runtime.entrypoint`: each flag whose value is not its default."""
        argv: list[str] = []
        for f in _flag_fields():
            value = getattr(self, f.name)
            if value != f.default:
                argv += [_option(f.name), str(value)]
        return [*argv, "--", *self.command]

    @classmethod
    def for_spec(cls, spec: "JobSpec", *, gpus: int | None, checkpoint_uri: str | None, data: str | None = None,
                 **flags: Any) -> "EntrypointArgs":  # fmt: skip
        """The contract for a job spec; the backend passes what only it knows.

        `gpus`: GPUs per node when the backend knows them (None: all the node has);
        `checkpoint_uri`: the store as the container sees it (None: no store);
        `data`: the trainer's data= as the container sees it (None: the spec's).
        `--keep` / `--every` travel only with a checkpoint URI, which they qualify.
        The run folder is the spec's name, not the job's, so a resubmitted or
        moved job finds its checkpoints under the same `<uri>/<name>/`.
        A program of the user's own (`command:`) gets `data` as `--data` instead,
        and with `code:` the archive `--code` (default: under the spec's own
        checkpoint.uri; a backend whose container sees the store elsewhere passes
        `code=`), with the content hash as a placeholder until submit. Weights fetched
        at submit go the same way (`weights=`: where the container sees them, default
        under the spec's checkpoint.uri; launcher.contract.staged_weights).
        """
        store = {"checkpoint_uri": checkpoint_uri, "keep": spec.checkpoint.keep, "every": spec.checkpoint.every}
        return cls(
            run_name=spec.name,
            command=train_command(spec, data, flags.pop("weights", None)),
            gpus=gpus,
            spec_hash=spec.spec_hash(),
            **(store if checkpoint_uri else {}),
            **_program_flags(spec, data, flags.pop("code", None)),
            **flags,
        )

    @classmethod
    def parser(cls) -> argparse.ArgumentParser:
        """The parser the entrypoint itself uses (`--help` shows the fields' help)."""
        parser = argparse.ArgumentParser(
            prog="launcher.runtime.entrypoint", description="The training image's entrypoint."
        )
        for f in _flag_fields():
            kind = f.metadata["type"]
            if f.default is dataclasses.MISSING:
                parser.add_argument(_option(f.name), type=kind, required=True, help=f.metadata["help"])
            else:
                parser.add_argument(_option(f.name), type=kind, default=f.default, help=f.metadata["help"])
        parser.add_argument("command", nargs=argparse.REMAINDER, help="-- train key=value ... | -- PROGRAM ARGS")
        return parser

    @classmethod
    def parse(cls, argv: Sequence[str]) -> "EntrypointArgs":
        """Read a command line written by `to_argv` (or by hand); no command means `train`."""
        namespace = vars(cls.parser().parse_args(list(argv)))
        command = namespace.pop("command")
        if command[:1] == ["--"]:
            command = command[1:]
        return cls(command=tuple(command), **namespace)


def _program_flags(spec: "JobSpec", data: str | None, code: str | None) -> dict[str, Any]:
    """--data, --code and --requirements of a program of the user's own (none for the built-in trainer)."""
    if not spec.command:
        return {}
    flags: dict[str, Any] = {"data": (data or spec.data()) if spec.data() is not None else None}
    if spec.code is not None:
        flags.update(code=code or code_target(spec), requirements=spec.code.requirements)
    return flags


def _flag_fields() -> list[dataclasses.Field]:  # type: ignore[type-arg]
    return [f for f in dataclasses.fields(EntrypointArgs) if f.metadata.get("flag")]


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def train_command(spec: "JobSpec", data: str | None = None, weights: str | None = None) -> tuple[str, ...]:
    """The command after `--`: the spec's own command, else `train` with the trainer's key=value
    arguments, `data=` replaced by `data` when the backend mounts or stages the data elsewhere, and the
    weights fetched at submit (`staged_weights`) named by where they are stored (`weights`, default
    `weights_target`: under the spec's own checkpoint.uri)."""
    if spec.command:
        return tuple(spec.command)
    args = (spec.train.model_copy(update={"data": data}) if data else spec.train).to_args()
    staged = staged_weights(spec)
    if staged is not None:
        where = weights or weights_target(spec)
        args = [f"{staged[0]}={where}" if arg.partition("=")[0] == staged[0] else arg for arg in args]
    return ("train", *args)


def secret_ref(scheme: str, reference: str) -> str:
    """'<scheme>:<reference>', for a scheme the image can resolve."""
    if scheme not in SECRET_SCHEMES:
        raise ValueError(f"unknown secret scheme '{scheme}'; use one of {', '.join(SECRET_SCHEMES)}")
    return f"{scheme}:{reference}"


def secret_refs_value(refs: Mapping[str, str]) -> str:
    """The value of SECRET_REFS_VARIABLE: compact JSON, names sorted (plans stay byte-stable)."""
    return json.dumps(dict(sorted(refs.items())), separators=(",", ":"))


def ultralytics_epoch_seconds(rows: Sequence[Mapping[str, Any]]) -> list[float]:
    """Each epoch's seconds from the rows of Ultralytics' results.csv, whose `time` column is seconds since its
    (re)start: the step from the row before (a resumed run's first row is its own)."""
    total = [float(r["time"]) for r in rows if r.get("time") not in (None, "")]
    return [t - p if t >= p else t for p, t in zip([0.0, *total], total)]
