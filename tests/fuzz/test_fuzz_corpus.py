"""Fuzz: a generated corpus of hostile input through the real CLI (issue 23).

Systematic generation (every hostile value at every key of every section, each backend's options
included) plus hypothesis-built URIs, names and strings (derandomized, bounded). Each spec goes through
`launch -b BACKEND SPEC --dry-run` for every backend; hostile checkpoint manifests go through
`launch ckpt ls` and `launch ckpt pull`; hostile job ids through `launch status|logs|stop`.
The properties: a non-zero exit, one line of error naming the file (or the --set) and the key, no
traceback, nothing written outside the destination folder, and a secret planted in the environment
and in URI credentials never in any output.
"""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parent))
from test_fuzz_specs import BACKENDS, BASES, dump, set_path  # noqa: E402

from launcher.cli import main  # noqa: E402
from launcher.storage.manifest import _digest  # noqa: E402

SECRET = "planted-s3cr3t-Zq8"
ENV = {"AWS_REGION": "us-east-1", "FUZZ_SECRET": SECRET}
SETTINGS = dict(deadline=timedelta(seconds=30), derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # fmt: skip

# ---------------------------------------------------------------- the corpus

ZERO_WIDTH = ["\u200b", "\u200d", "\ufeff", "\u2060"]
BIDI = ["\u202e", "\u202d", "\u2066", "\u200f", "\u061c"]
CONTROLS = ["\n", "\r", "\x1b[2J", "\x7f", "\x85"]
TYPE_CONFUSION = [True, False, None, [], [1], {}, {"a": 1}, 1e400, -1e400, 3.5, -1, 0, "", " "]
BAD_NUMBERS = [True, False, "abc", [1], {"a": 1}, "1e400", 1e30, -1e30]


def hostile_strings(good: str) -> list[str]:
    """A valid value made hostile: invisible and control characters inside it, an absurd length."""
    mid = len(good) // 2
    return ([good[:mid] + c + good[mid:] for c in ZERO_WIDTH + BIDI + CONTROLS]
            + [good + "\x00", "x" * 70_000])  # fmt: skip


CREDENTIAL_URIS = [
    "s3://AKIAEXAMPLE:${FUZZ_SECRET}@bucket/x", "s3://${FUZZ_SECRET}@bucket/x", "gs://user:${FUZZ_SECRET}@bucket/x",
    "az://acct:${FUZZ_SECRET}@container/x", "s3://:${FUZZ_SECRET}@bucket/x", "s3://user:pass@bucket/x",
]  # fmt: skip
BAD_URIS = [
    *CREDENTIAL_URIS, "s3://bucket/x?versionId=1", "s3://bucket/x?", "gs://bucket/x#frag", "s3://bucket/%2e%2e/x",
    "s3://bucket/x%00", "s3://[::1]/x", "s3://[2001:db8::1]:9000/x", "s3://BUCKET/x", "s3://bucket/a//b", "s3://bucket\\x",
    "s3://bucket/ x", "s3:// /x", "gs://bu\u202ecket/x", "gs://buc\u200bket/x", "s3://bucket/x\n", "s3://b\u0430cket/x",
    "ftp://bucket/x", "file:///etc/passwd", "s3://", "s3:///x", "gs://bucket/../x", "az://c/./x", "http://10.0.0.1/x",
]  # fmt: skip
BAD_IMAGES = ["UPPER:latest", "repo/Name:tag", "a b", "", ":tag", "a:b:c", "-x", "ex@mple", "img:" + "t" * 200,
              "r/" + "x" * 300, "im\u0430ge", "image\u200b", "img\nx", "img\x00", "a//b", "a/:tag", "x@sha256:zz",
              "registry:99999999999999999999/x", "img:tag\t"]  # fmt: skip
BAD_DURATIONS = ["1e9h", "-5m", "0s", "0", "soon", "1h-30m", "\u0663h", "3\u0663h", "99999999d", "1.5.5h", "h", "1 h 1",
                 True, [1], {"h": 1}, 1e300, -1, ".inf", "4h\x00"]  # fmt: skip
BAD_ENV_NAMES = ["LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PATH",
                 "LAUNCHER_CHECKPOINT_DIR", "LAUNCHER_DATA", "LAUNCHER_SECRET_REFS", "LAUNCHER_RESUMED",
                 "A=B", "A\nB", "A\x00B", "", "1A", "A B", "A-B", "\u0410", "A\u200b", "A\u202e"]  # fmt: skip

# (section path, [bad values]) for the spec's own sections
SPEC_VALUES: dict[tuple[str, ...], list[Any]] = {
    ("name",): ["Bad_Name", "a" * 49, "-x", "x-", "n\u0430me", *hostile_strings("my-job"), *TYPE_CONFUSION],
    ("image",): [*BAD_IMAGES, 5, None, [1], {"a": 1}],
    ("command",): [[], [""], ["python", "a\x00b"], ["py\u202ethon"], [1, {"a": 1}], {"a": 1}, 5, ["x" * 70_000]],
    ("train",): [[1], "fast", 3, True],
    ("train", "model"): ["resnet18\x00", "resnet\u200b18", "RESNET18\n", "r\u0435snet18", 5, None, [1]],
    ("train", "data"): [*BAD_URIS, "", 5, [1], {"a": 1}],
    ("train", "pretrained"): ["\x00", "w\u202e.pt", [1], {"a": 1}, 3.5],
    ("train", "optimizer"): ["SGD\n", "S\u200bGD", "sgd", 1, None],
    **{("train", k): BAD_NUMBERS for k in ("epochs", "batch", "imgsz", "fraction", "lr0", "workers", "seed")},
    ("resources",): [[1], "big", 1],
    **{("resources", k): BAD_NUMBERS for k in ("gpus", "nodes", "cpus")},
    ("resources", "gpu_type"): ["", " ", "a\nb", "x" * 100, "T4; rm -rf /", "\u0422", [1], {"a": 1}],
    ("resources", "memory"): ["1e400", "-1Gi", "0", "nan", "\u0661Gi", "1.2.3Gi", True, [1]],
    ("resources", "spot"): ["maybe", 2, [1], None],
    ("checkpoint",): [[1], "s3://b/x", 5],
    ("checkpoint", "uri"): [*BAD_URIS, 5, [1]],
    **{("checkpoint", k): BAD_NUMBERS for k in ("every", "keep")},
    ("limits",): [[1], "none", 5],
    ("limits", "max_runtime"): BAD_DURATIONS,
    ("limits", "max_cost"): [*BAD_NUMBERS, 0, -5, ".nan"],
    ("env",): [
        [1],
        "text",
        5,
        {"A": None},
        {"A": [1]},
        {"A": {"b": 1}},
        {"A": "x\x00y"},
        {"A": "x" * 40_000},
        *({n: "x"} for n in BAD_ENV_NAMES),
    ],  # fmt: skip
    ("secrets",): ["WANDB", {"a": 1}, [None], [1], ["A", "A"], *([n] for n in BAD_ENV_NAMES)],
    ("code",): [5, [1], True],
    ("code", "dir"): ["\x00", "a\x00b", "d\u202e", 5, [1]],
    ("code", "max_size"): ["1e100", "-1", "0", "5 XB", "\u0661MiB", True, [1], 10**30],
    ("code", "requirements"): ["../x.txt", "/etc/passwd", "a\x00", "", 5],
    ("code", "exclude"): [[""], ["a\x00"], ["a\nb"], "x", [1]],
    ("plugins",): [[1], "x", {"p": [1]}],
}

# each backend's options section: (backend, option) -> bad values
OPTION_VALUES: dict[tuple[str, str], list[Any]] = {
    **{
        ("local", k): v
        for k, v in {
            "runtime": ["Docker", "", 5],
            "nproc": [True, 0, 1.5, "x", 1000],
            "shm_size": ["-1g", "", "g", "1e9g", " "],
            "gpus": ["", [" "], ["0\n"], [[1]]],
            "mounts": [
                [{"source": "/a:/b", "target": "/c"}],
                [{"source": "/a", "target": "/c:ro,z"}],
                [{"source": "/a", "target": "rel"}],
                [{"source": "/a\x00", "target": "/b"}],
                [{"source": "/a"}],
                "x",
                [1],
            ],
            "entrypoint": [[""], ["a\x00"], [" "], "x\u202e"],
            "user": ["", "\n", "root\x00"],
            "network": ["", "host\n"],
            "python": ["", "\x00", "py\u200bthon"],
            "workdir": ["", "\x00"],
        }.items()
    },  # fmt: skip
    **{
        ("aws", k): v
        for k, v in {
            "region": ["", "us-east-1\n", "US-EAST-1", 5],
            "role_arn": ["", "arn:aws:iam::1:role/x\n", "root"],
            "instance_type": ["", " ", "ml.p3\n"],
            "image_uri": ["", "UPPER", "a b", "x" * 600],
            "output_uri": ["s3://k:${FUZZ_SECRET}@bucket/x", "gs://b/x", ""],
            "subnets": [[""], ["a\nb"], "x"],
            "security_group_ids": [[""], [" "]],
            "volume_size_gb": [True, 0, 1e30, "x"],
            "max_wait_s": [True, 0],
            "keep_alive_s": [True, -1, 10**9],
            "max_retries": [True, 0, 100],
            "secrets_prefix": ["", "a b", "a\x00"],
            "tags": [{"": "x"}, {"a": "b\n"}, {"k": [1]}, {"a": " "}, "x"],
        }.items()
    },  # fmt: skip
    **{
        ("gcp", k): v
        for k, v in {
            "project": ["", "p\n", " "],
            "region": ["", " ", "us\u200bcentral1"],
            "staging_bucket": ["gs://k:${FUZZ_SECRET}@b/x", "s3://b/x", ""],
            "machine_type": ["", " "],
            "accelerator_type": ["", "NVIDIA\n"],
            "service_account": ["", "a b"],
            "network": ["", "x\n"],
            "labels": [{"A": "b"}, {"": ""}, {"a": "b c"}],
            "boot_disk_size_gb": [True, 10, 1.5],
            "boot_disk_type": ["ssd", "", 5],
            "secrets_project": ["", " "],
            "tensorboard": ["", "x\n"],
        }.items()
    },  # fmt: skip
    **{
        ("azure", k): v
        for k, v in {
            "subscription_id": ["", " ", "x\n"],
            "resource_group": ["", "a\nb"],
            "workspace": ["", "w\u202es"],
            "compute": ["", " "],
            "instance_type": ["", "x\n"],
            "region": ["", " "],
            "identity": ["", "x\n", "bogus"],
            "key_vault": ["", "a b", "https://k:${FUZZ_SECRET}@v.vault.azure.net"],
            "storage_account": ["", "UPPER", "a b", "x" * 30],
            "experiment": ["", "a\nb"],
            "tags": [{"": ""}, {"a": "b\n"}],
            "shm_size": ["", "-1g", "1e9g", "x"],
        }.items()
    },  # fmt: skip
}

# raw YAML documents appended to (or replacing) the base spec: (label, text, fragment of the error)
RAW: list[tuple[str, str, str]] = [
    ("python-object", "x: !!python/object/apply:os.system ['echo pwned']\n", "YAML"),
    ("python-name", "x: !!python/name:os.system\n", "YAML"),
    ("python-module", "x: !!python/module:os\n", "YAML"),
    ("python-top", "!!python/object/new:os.system [echo pwned]\n", "YAML"),
    ("custom-tag", "x: !custom value\n", "YAML"),
    ("custom-tag-uri", "x: !<tag:example.com,2000:app/foo> value\n", "YAML"),
    ("binary-plugin", "plugins: {p: {x: !!binary aGVsbG8=}}\n", "binary"),
    ("binary-env", "env: {A: !!binary aGVsbG8=}\n", "binary"),
    ("set-tag", "secrets: !!set {A, B}\n", "secrets"),
    ("bool-key", "env: {true: a}\n", "not a string"),
    ("null-key", "env: {~: a}\n", "not a string"),
    ("float-key", "env: {1.5: a}\n", "not a string"),
    ("int-key", "1: 2\n", "not a string"),
    ("list-key", "? [a]\n: 1\n", "YAML"),
    ("merge-unknown", "base: &b {epochs: 2}\nx:\n  <<: *b\n", "unknown key"),
    ("merge-scalar", "train:\n  <<: 5\n", "YAML"),
    ("merge-top-bad", "extra: &c {nope: 1}\n<<: *c\n", "unknown key"),
    ("merge-into-env", "env:\n  <<: {LD_PRELOAD: /x.so}\n", "LD_PRELOAD"),
    ("key-control", 'env: {"A\\u202eB": x}\n', "env"),
    ("omap", "train: !!omap [{epochs: 1}]\n", "train"),
    ("int-tag-bad", "train: {epochs: !!int abc}\n", "YAML"),
]
SETS: list[tuple[str, str]] = [
    ("train.epochs=!!python/object/apply:os.system [x]", "--set"),
    ("name=!!binary aGVsbG8=", "binary"),
    ("env.LD_PRELOAD=/x.so", "LD_PRELOAD"),
    ("env.PATH=/evil", "PATH"),
    ("env.PYTHONPATH=/evil", "PYTHONPATH"),
    ("env.LAUNCHER_DATA=/x", "LAUNCHER_DATA"),
    ("env.A\x00B=1", "--set"),
    ("env.A\nB=1", "--set"),
    ("aws.max_wait_s=100000000000000000000", "aws.max_wait_s"),
    ("checkpoint.uri=s3://k:${FUZZ_SECRET}@b/x", "credentials"),
    ("checkpoint.uri=s3://k:" + SECRET + "@b/x", "credentials"),
    ("train.data=gs://bucket/x?a=1", "train.data"),
    ("image=UPPER:x", "image"),
    ("limits.max_runtime=-5m", "limits.max_runtime"),
    ("limits.max_runtime=1e9h", "limits.max_runtime"),
    ("local.nproc=true", "local.nproc"),
    ("aws.volume_size_gb=true", "aws.volume_size_gb"),
    ("resources.memory=1e400", "resources.memory"),
    ("train=null", "train"),
    ("env=null", "env"),
    ("train.epochs", "is not KEY=VALUE"),
    ("=3", "is not KEY=VALUE"),
    (".=3", "is not KEY=VALUE"),
    ("train..x=1", "is not KEY=VALUE"),
    ("name.x=1", "not a mapping"),
    ("a." * 40 + "b=1", "levels deep"),
    ("train.epochs=" + "9" * 5000, "train.epochs"),
    ("train.\u202eepochs=1", "--set"),
    ("name=a\u200bb", "name"),
    ("gcp.staging_bucket=s3://b/x", "gcp.staging_bucket"),
]


def spec_cases() -> list[tuple[str, Any, str]]:
    """(kind, payload, fragment): systematic; every hostile value at every key."""
    cases: list[tuple[str, Any, str]] = []
    for path, values in SPEC_VALUES.items():
        cases += [
            ("value", (path, v), ".".join(path) if path != ("env",) and path != ("secrets",) else "") for v in values
        ]
    for (backend, option), values in OPTION_VALUES.items():
        cases += [("value", ((backend, option), v), f"{backend}.") for v in values]
    cases += [("value", ((b,), v), b) for b in BACKENDS for v in ([1], "x", 5, {"no_such_option": 1})]
    cases += [("raw", (text, label), fragment) for label, text, fragment in RAW]
    cases += [("set", item, fragment) for item, fragment in SETS]
    return cases


CASES = spec_cases()

# ---------------------------------------------------------------- checks


@pytest.fixture(scope="module")
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return {**ENV, "LAUNCHER_STATE_DIR": str(tmp_path_factory.mktemp("state"))}


def no_secret(*texts: str) -> None:
    for text in texts:
        assert SECRET not in (text or ""), "the planted secret leaked: " + (text or "")[:500]


def one_line_error(result: Any, *fragments: str) -> str:
    out, err = result.stdout or "", result.stderr or ""
    no_secret(out, err)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in out + err, err[-2000:]
    assert result.exit_code not in (0, None), f"accepted: {out[:300]}"
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err[:2000]
    assert lines[0].startswith("error: "), lines[0][:500]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0][:1000])
    return lines[0]


def render(backend: str, kind: str, payload: Any) -> tuple[str, tuple[str, ...]]:
    base = BASES[backend]
    if kind == "value":
        path, value = payload
        return dump(set_path(base, path, value)), ()
    if kind == "raw":
        text, label = payload
        return (text if label == "python-top" else dump(base) + text), ()
    return dump(base), (payload,)


def dry_run(
    runner: CliRunner, env: dict[str, str], folder: Path, backend: str, text: str, sets: tuple[str, ...] = ()
) -> Any:
    path = folder / "job.yaml"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    args = ["-b", backend, str(path), "--dry-run", *(a for s in sets for a in ("--set", s))]
    return runner.invoke(main, args, env=env), path


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_planted_secret_stays_out_of_a_valid_plan(
    backend: str, runner: CliRunner, env: dict[str, str], tmp_path: Path
) -> None:
    """The control: a spec that names the secret plans, and the plan holds its name, never its value."""
    spec = {**BASES[backend], "secrets": ["FUZZ_SECRET"]}
    result, _ = dry_run(runner, env, tmp_path, backend, dump(spec))
    assert result.exit_code == 0, result.stderr
    no_secret(result.stdout, result.stderr)


@pytest.mark.timeout(600)
@pytest.mark.parametrize(("kind", "payload", "fragment"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_generated_hostile_specs(
    kind: str, payload: Any, fragment: str, runner: CliRunner, env: dict[str, str], tmp_path: Path
) -> None:
    for backend in BACKENDS:
        text, sets = render(backend, kind, payload)
        result, path = dry_run(runner, env, tmp_path, backend, text, sets)
        where = "--set" if kind == "set" else str(path)
        line = one_line_error(result, where)
        assert fragment in line, (backend, fragment, line[:1000])


# ---------------------------------------------------------------- hypothesis: URIs and strings


@st.composite
def credential_uris(draw: st.DrawFn) -> str:
    scheme = draw(st.sampled_from(["s3", "gs", "az"]))
    user = draw(st.from_regex(r"[A-Za-z0-9_.~-]{0,12}", fullmatch=True))
    return f"{scheme}://{user}:${{FUZZ_SECRET}}@{draw(st.from_regex(r'[a-z0-9]{3,12}', fullmatch=True))}/x"


@st.composite
def tainted_uris(draw: st.DrawFn) -> str:
    """A valid URI with one hostile piece spliced in: query, fragment, %-escape, IPv6 host, odd unicode."""
    scheme = draw(st.sampled_from(["s3", "gs", "az"]))
    bucket = draw(st.from_regex(r"[a-z0-9]{3,12}", fullmatch=True))
    prefix = draw(st.from_regex(r"[a-z0-9]{1,8}(/[a-z0-9]{1,8}){0,2}", fullmatch=True))
    piece = draw(st.sampled_from(["?a=1", "#f", "%2e%2e", "%00", " ", "\\", "//", *ZERO_WIDTH, *BIDI, *CONTROLS]))
    where = draw(st.sampled_from(["bucket", "prefix", "end"]))
    if where == "bucket":
        return f"{scheme}://{bucket[:2]}{piece}{bucket[2:]}/{prefix}"
    if where == "prefix":
        return f"{scheme}://{bucket}/{prefix[:1]}{piece}{prefix[1:]}"
    return f"{scheme}://{bucket}/{prefix}{piece}"


@pytest.mark.timeout(300)
@settings(max_examples=60, **SETTINGS)
@given(
    uri=st.one_of(credential_uris(), tainted_uris()), key=st.sampled_from([("checkpoint", "uri"), ("train", "data")])
)
def test_generated_uris_are_refused(
    uri: str, key: tuple[str, str], runner: CliRunner, env: dict[str, str], tmp_path: Path
) -> None:
    for backend in BACKENDS:
        result, path = dry_run(runner, env, tmp_path, backend, dump(set_path(BASES[backend], key, uri)))
        line = one_line_error(result, str(path), ".".join(key))
        if "FUZZ_SECRET" in uri:
            assert "put credentials in secrets:, not in the URI" in line.replace("Put", "put"), line


@pytest.mark.timeout(300)
@settings(max_examples=60, **SETTINGS)
@given(
    key=st.sampled_from(
        [
            ("name",),
            ("image",),
            ("train", "model"),
            ("resources", "gpu_type"),
            ("aws", "instance_type"),
            ("gcp", "machine_type"),
            ("azure", "compute"),
            ("local", "network"),
        ]
    ),  # fmt: skip
    good=st.sampled_from(["resnet18", "my-job", "T4", "ml.g4dn.xlarge"]),
    char=st.sampled_from([*ZERO_WIDTH, *BIDI, *CONTROLS, "\x00"]),
    at=st.integers(0, 20),
)
def test_invisible_and_control_characters_are_refused(key: tuple[str, ...], good: str, char: str, at: int,
                                                      runner: CliRunner, env: dict[str, str], tmp_path: Path) -> None:  # fmt: skip
    value = good[:at] + char + good[at:]
    for backend in BACKENDS:
        result, path = dry_run(runner, env, tmp_path, backend, dump(set_path(BASES[backend], key, value)))
        one_line_error(result, str(path), ".".join(key))


# ---------------------------------------------------------------- job ids


JOB_IDS = ["../../etc/passwd", "", "\x00", "a" * 100_000, "x\ny", "%", "_", "' OR 1=1 --", "\u202e", "-", "a/b",
           "job\u200bid", "*", "..", "/", "C:\\x", "\x1b[2J"]  # fmt: skip


@pytest.mark.parametrize("job_id", JOB_IDS, ids=range(len(JOB_IDS)))
def test_hostile_job_ids(job_id: str, runner: CliRunner, env: dict[str, str]) -> None:
    for command in ("status", "logs", "stop"):
        result = runner.invoke(main, [command, job_id], env=env)
        line = one_line_error(result)
        assert len(line) < 1000, line[:200]
    result = runner.invoke(main, ["ckpt", "ls", job_id], env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)


# ---------------------------------------------------------------- checkpoint manifests

SHA = "0" * 64


def manifest(files: Any, **over: Any) -> bytes:
    body = {
        "format": 1,
        "version": 1,
        "epoch": 1,
        "step": 1,
        "time": 1.0,
        "spec_hash": "",
        "writer": {},
        "files": files,
        **over,
    }
    body["digest"] = _digest(body)
    return json.dumps(body).encode()


def entry(key: str = "files/00000001/x", size: Any = 1, sha: Any = SHA) -> dict[str, Any]:
    return {"key": key, "size": size, "sha256": sha}


MANIFESTS: dict[str, bytes] = {
    "name-dotdot": manifest({"../x": entry()}),
    "name-deep-dotdot": manifest({"a/../../x": entry()}),
    "name-absolute": manifest({"/tmp/escaped": entry()}),
    "name-windows": manifest({"C:x": entry()}),
    "name-backslash": manifest({"..\\x": entry()}),
    "name-empty": manifest({"": entry()}),
    "name-nul": manifest({"a\x00b": entry()}),
    "name-newline": manifest({"a\nb": entry()}),
    "name-rtl": manifest({"a\u202eb": entry()}),
    "name-zero-width": manifest({"a\u200bb": entry()}),
    "name-hidden": manifest({".bashrc": entry()}),
    "name-long": manifest({"x" * 300: entry()}),
    "key-dotdot": manifest({"x": entry(key="../../x")}),
    "key-absolute": manifest({"x": entry(key="/etc/passwd")}),
    "size-huge": manifest({"x": entry(size=10**30)}),
    "size-negative": manifest({"x": entry(size=-1)}),
    "size-string": manifest({"x": entry(size="1")}),
    "size-float": manifest({"x": entry(size=1.0)}),
    "size-bool": manifest({"x": entry(size=True)}),
    "sha-short": manifest({"x": entry(sha="ab")}),
    "sha-number": manifest({"x": entry(sha=5)}),
    "entry-list": manifest({"x": [1]}),
    "files-list": manifest([1]),
    "files-null": manifest(None),
    "version-string": manifest({}, version="1"),
    "version-huge": manifest({}, version=10**40),
    "epoch-float": manifest({}, epoch=1.5),
    "time-huge": manifest({}, time=1e300),
    "writer-list": manifest({}, writer=[1]),
    "case-clash": manifest({"A.pt": entry(), "a.pt": entry()}),
    "file-folder-clash": manifest({"a": entry(), "a/b": entry()}),
    "deep-array": b"[" * 200_000 + b"]" * 200_000,
    "deep-object": b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
    "duplicate-keys": b'{"files": {}, "files": {"../x": 1}, "digest": "x"}',
    "duplicate-digest": manifest({}).replace(b'"digest"', b'"digest": "x", "digest"', 1),
    "non-utf8": b'\xff\xfe{"files": {}}',
    "latin-1": '{"files": {"caf\u00e9": 1}}'.encode("latin-1"),
    "bigint": b'{"version": ' + b"9" * 5000 + b"}",
    "nan": b'{"time": NaN, "files": {}, "digest": ""}',
    "top-list": b"[]",
    "top-null": b"null",
    "empty": b"",
    "truncated": manifest({"x": entry()})[:-10],
}


def store_with(tmp_path: Path, data: bytes) -> tuple[Path, Path]:
    run = tmp_path / "store" / "run"
    (run / "manifests").mkdir(parents=True)
    (run / "files" / "00000001").mkdir(parents=True)
    (run / "files" / "00000001" / "x").write_bytes(b"a")
    (run / "manifest.json").write_bytes(data)
    (run / "manifests" / "00000001.json").write_bytes(data)
    return run, tmp_path / "dest"


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("label", sorted(MANIFESTS))
def test_hostile_manifests(label: str, runner: CliRunner, env: dict[str, str], tmp_path: Path) -> None:
    run, dest = store_with(tmp_path, MANIFESTS[label])
    before = tree(tmp_path)
    for args in (["ckpt", "ls", str(run)], ["ckpt", "ls", "--json", str(run)], ["ckpt", "ls", str(run.parent)]):
        result = runner.invoke(main, args, env=env)
        assert result.exception is None or isinstance(result.exception, SystemExit), (args, repr(result.exception))
        assert "Traceback" not in (result.stdout or "") + (result.stderr or "")
        assert not any(s in (result.stdout or "") for s in ("\x00", "\u202e", "\x1b")), result.stdout[:500]
    result = runner.invoke(main, ["ckpt", "pull", str(run), str(dest)], env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code != 0, f"{label} was pulled: {result.stderr[-500:]}"
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "No complete checkpoint" in lines[0], result.stderr[-1000:]
    assert all(line.count("\n") == 0 and len(line) < 2000 for line in result.stderr.splitlines()), result.stderr[-500:]
    written = {p for p in tree(tmp_path) - before if not p.startswith("dest")}
    assert not written, f"{label} wrote outside the destination: {sorted(written)[:5]}"
    assert not (tmp_path.parent / "escaped").exists() and not Path("/tmp/escaped").exists()


def test_a_valid_manifest_still_pulls(runner: CliRunner, env: dict[str, str], tmp_path: Path) -> None:
    """The control: the same store with an honest manifest pulls, so every refusal above is the damage's."""
    import hashlib

    run, dest = store_with(tmp_path, manifest({"x": entry(sha=hashlib.sha256(b"a").hexdigest())}))
    result = runner.invoke(main, ["ckpt", "pull", str(run), str(dest)], env=env)
    assert result.exit_code == 0, result.stderr
    assert (dest / "x").read_bytes() == b"a"


def test_corpus_size() -> None:
    """The corpus stays large: a trimmed table would quietly test less."""
    assert len(CASES) >= 400 and len(MANIFESTS) >= 40
