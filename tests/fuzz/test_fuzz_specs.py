"""Fuzz: 200 malformed specs (800 dry runs) through every backend's dry run (issue 13).

Each example is one deliberately broken spec (a bad value at a key, a corrupt
file, a bad --set). For every backend, `launch -b BACKEND SPEC --dry-run` must
exit non-zero with exactly one line on stderr that names the file (or the
--set) and, where there is one, the key: no traceback, no hang. The deadline
and the timeouts are generous guards against hangs, not benchmarks.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from launcher.cli import main
from launcher.spec import JobSpec

BACKENDS = ("local", "aws", "gcp", "azure")
COMMON = {"name": "fuzz-job", "train": {"model": "resnet18", "data": "digits", "epochs": 2, "imgsz": 32, "batch": 16}}
BASES: dict[str, dict[str, Any]] = {
    "local": {**COMMON, "checkpoint": {"uri": "runs"}},
    "aws": {
        **COMMON,
        "resources": {"gpus": 1, "gpu_type": "T4"},
        "checkpoint": {"uri": "s3://bucket/ckpt"},
        "aws": {"region": "us-east-1", "role_arn": "arn:aws:iam::123456789012:role/SageMakerRole"},
    },
    "gcp": {
        **COMMON,
        "image": "us-central1-docker.pkg.dev/demo-project/launcher/torch-launcher-train:latest",
        "checkpoint": {"uri": "gs://bucket/ckpt"},
        "gcp": {"project": "demo-project", "region": "us-central1"},
    },
    "azure": {
        **COMMON,
        "image": "myacr.azurecr.io/torch-launcher-train:latest",
        "checkpoint": {"uri": "az://checkpoints/runs"},
        "azure": {
            "subscription_id": "00000000-0000-0000-0000-000000000000",
            "resource_group": "rg",
            "workspace": "vision-ws",
            "storage_account": "visiondata",
        },  # fmt: skip
    },
}
ENV = {"LAUNCHER_STATE_DIR": "", "AWS_REGION": "us-east-1"}  # LAUNCHER_STATE_DIR set per test

NUMBERS = [True, False, math.inf, -math.inf, math.nan, 1e30, -1e30, "abc", [1], {"a": 1}]
LOCATIONS = ["ftp://host/x", "s3://", "s3:///x", "gs://b/../x", "http://example.com/d", "az://c/./x", 5, [1]]
BOOLS = ["maybe", 2, [1], None]
BAD_VALUES: dict[tuple[str, ...], list[Any]] = {
    **{
        ("train", k): NUMBERS
        for k in ("epochs", "batch", "imgsz", "fraction", "lr0", "lrf", "momentum", "workers", "patience", "seed")
    },
    **{("resources", k): NUMBERS for k in ("gpus", "nodes", "cpus")},
    **{("checkpoint", k): NUMBERS for k in ("every", "keep")},
    ("limits", "max_cost"): NUMBERS,
    ("limits", "max_runtime"): [True, math.inf, math.nan, 1e300, "soon", -5, 0, [1], "99999999d"],
    ("resources", "memory"): [True, math.inf, "lots", -1, [1]],
    ("name",): ["", "Bad_Name", "a" * 60, 123, None, [1], {"a": 1}, True, "-x"],
    ("image",): [123, None, [1], {"a": 1}],
    ("train", "model"): [123, None, [1], {"a": 1}],
    ("train", "data"): LOCATIONS + [""],
    ("checkpoint", "uri"): LOCATIONS,
    ("train", "cache"): ["sometimes", 5, [1]],
    ("train", "optimizer"): ["adamw", 1, None],
    ("train", "pretrained"): [[1], {"a": 1}, 3.5],
    **{("train", k): BOOLS for k in ("amp", "cos_lr", "multi_scale")},
    ("resources", "spot"): BOOLS,
    ("env",): [{"A": None}, {"A": [1]}, {"A": {"b": 1}}, {"1A": "x"}, {"A": "x" * 40_000}, [1], "text"],
    ("secrets",): [[None], ["1BAD"], "WANDB", {"a": 1}],
    ("command",): ["", [], [""], {"a": 1}, 5],
    ("train",): [[1], "fast", 3],
    ("limits",): [[1], "none"],
    **{(b,): [[1], "x", {"no_such_option": 1}] for b in BACKENDS},
}
KEYS = sorted(BAD_VALUES)


def alias_bomb(levels: int) -> str:
    lines = ['x0: &x0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"x{i}: &x{i} [{', '.join([f'*x{i - 1}'] * 9)}]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


def dump(spec: dict[str, Any]) -> str:
    return yaml.safe_dump(spec, sort_keys=False)


# (bytes to write given the backend's base spec text, fragment the error must contain)
CORRUPTIONS: list[tuple[str, Any, str]] = [
    ("latin-1", lambda t: (t + "# café\n").encode("latin-1"), "not UTF-8"),
    ("utf-16", lambda t: t.encode("utf-16"), "UTF-16"),
    ("alias-bomb", lambda t: (t + alias_bomb(9)).encode(), "expands to more than"),
    (
        "self-alias",
        lambda t: (
            (t.replace("train:", "train: &t", 1) + "x: *t\n")
            .replace("train: &t", "train: &t\n  inner: *t\n  old:", 1)
            .encode()
        ),
        "job.yaml",
    ),
    ("deep-40", lambda t: (t + "x: " + "[" * 40 + "]" * 40 + "\n").encode(), "nested"),
    ("deep-3000", lambda t: (t + "x: " + "[" * 3000 + "]" * 3000 + "\n").encode(), "nested"),
    ("duplicate-name", lambda t: (t + "name: other\n").encode(), "appears twice"),
    ("tab", lambda t: (t + "train:\n\tepochs: 3\n").encode(), "YAML syntax error"),
    ("list", lambda t: b"- name: a\n", "top level is a list"),
    ("scalar", lambda t: b"just words\n", "top level is a str"),
    ("empty", lambda t: b"", "is empty"),
    ("nul", lambda t: (t + "x: a\x00b\n").encode(), "YAML syntax error"),
    (
        "missing-vars",
        lambda t: t.replace("fuzz-job", "${FUZZ_UNSET_A}", 1).replace("resnet18", "${FUZZ_UNSET_B}", 1).encode(),
        "environment variables are not set",
    ),
    ("huge-int", lambda t: (t + "x: " + "9" * 5000 + "\n").encode(), "cannot be read"),
    ("big-file", lambda t: (t + "#" * (2 << 20)).encode(), "larger than"),
]
SETS = [
    ("train.epochs=abc", "train.epochs"),
    ("train.epochs=" + "9" * 5000, "train.epochs"),
    ("train", "is not KEY=VALUE"),
    ("=3", "is not KEY=VALUE"),
    ("train..epochs=1", "is not KEY=VALUE"),
    ("name.x=1", "name is not a mapping"),
    ("train.epochs=.inf", "train.epochs"),
    ("limits.max_runtime=.inf", "limits.max_runtime"),
    ("checkpoint.uri=ftp://x/y", "checkpoint.uri"),
    ("train.epochs=true", "train.epochs"),
    ("env.A=[1, 2]", "env"),
]


def set_path(spec: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    spec = yaml.safe_load(dump(spec))  # a deep copy
    node = spec
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value
    return spec


@st.composite
def broken_specs(draw: st.DrawFn) -> tuple[str, Any, tuple[str, ...], str]:
    """(kind, payload, --set overrides, fragment the error line must contain)."""
    kind = draw(st.sampled_from(["value", "value", "value", "unknown-key", "corrupt", "set"]))
    if kind == "value":
        key = draw(st.sampled_from(KEYS))
        return kind, (key, draw(st.sampled_from(BAD_VALUES[key]))), (), ".".join(key)
    if kind == "unknown-key":
        section = draw(st.sampled_from(["", "train", "resources", "checkpoint", "limits"]))
        name = draw(st.from_regex(r"[a-z][a-z_]{0,11}", fullmatch=True))
        model = JobSpec if not section else JobSpec.model_fields[section].annotation
        if name in model.model_fields:  # type: ignore[union-attr]
            name += "_x"
        key = (section, name) if section else (name,)
        return kind, (key, draw(st.sampled_from([1, "x", None, [1]]))), (), f"unknown key '{name}'"
    if kind == "corrupt":
        index = draw(st.integers(0, len(CORRUPTIONS) - 1))
        return kind, index, (), CORRUPTIONS[index][2]
    item, fragment = draw(st.sampled_from(SETS))
    return kind, None, (item,), fragment


def render(backend: str, kind: str, payload: Any) -> bytes:
    base = BASES[backend]
    if kind in ("value", "unknown-key"):
        key, value = payload
        return dump(set_path(base, key, value)).encode()
    if kind == "corrupt":
        return CORRUPTIONS[payload][1](dump(base))
    return dump(base).encode()


def check_one_line_error(stderr: str, where: str, fragment: str) -> None:
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr[:2000]
    line = lines[0]
    assert line.startswith("error: ") and where in line and fragment in line, line[:2000]


@pytest.fixture(scope="module")
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("state"))


@pytest.mark.parametrize("backend", BACKENDS)
def test_base_specs_dry_run(backend: str, runner: CliRunner, tmp_path: Path, state_dir: str) -> None:
    """The unbroken spec plans on its backend, so every failure below is the mutation's."""
    path = tmp_path / "job.yaml"
    path.write_text(dump(BASES[backend]))
    result = runner.invoke(main, ["-b", backend, str(path), "--dry-run"], env={**ENV, "LAUNCHER_STATE_DIR": state_dir})
    assert result.exit_code == 0, (result.stderr, result.exception)


@pytest.mark.timeout(600)
@settings(max_examples=200, deadline=timedelta(seconds=30), derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large])  # fmt: skip
@given(case=broken_specs())
def test_broken_specs_give_one_line_on_every_backend(
    case: tuple[str, Any, tuple[str, ...], str], runner: CliRunner, tmp_path: Path, state_dir: str
) -> None:
    kind, payload, overrides, fragment = case
    env = {**ENV, "LAUNCHER_STATE_DIR": state_dir, "FUZZ_UNSET_A": None, "FUZZ_UNSET_B": None}
    for backend in BACKENDS:
        path = tmp_path / "job.yaml"
        path.write_bytes(render(backend, kind, payload))
        args = ["-b", backend, str(path), "--dry-run", *(a for o in overrides for a in ("--set", o))]
        result = runner.invoke(main, args, env=env)
        assert result.exit_code not in (0, None), f"{backend} accepted {kind} {str(payload)[:200]} {overrides}"
        assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
        check_one_line_error(result.stderr, "--set" if kind == "set" else str(path), fragment)


# ---------------------------------------------------------------- through a real process


def _launch(args: list[str], state: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LAUNCHER_STATE_DIR": state, "PYTHONWARNINGS": "ignore"}
    code = "import sys; from launcher.cli import main; sys.exit(main())"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout, env=env)


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    ("backend", "make", "fragment"),
    [
        ("local", "fifo", "not a regular file"),
        ("aws", "dev-zero", "not a regular file"),
        ("gcp", "alias-bomb", "expands to more than"),
        ("azure", "deep-3000", "nested"),
        ("local", "huge-set", "--set train.epochs"),
    ],
)
def test_hostile_specs_in_a_real_process(
    backend: str, make: str, fragment: str, tmp_path: Path, state_dir: str
) -> None:
    path, extra = tmp_path / "job.yaml", []
    base = dump(BASES[backend])
    if make == "fifo":
        os.mkfifo(path)
    elif make == "dev-zero":
        path = Path("/dev/zero")
    elif make == "huge-set":
        path.write_text(base)
        extra = ["--set", "train.epochs=" + "9" * 5000]
    else:
        index = [c[0] for c in CORRUPTIONS].index(make)
        path.write_bytes(CORRUPTIONS[index][1](base))
    done = _launch(["-b", backend, str(path), "--dry-run", *extra], state_dir)
    assert done.returncode != 0
    check_one_line_error(done.stderr, "--set" if make == "huge-set" else str(path), fragment)
