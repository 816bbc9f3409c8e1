"""Fuzz, round three (issue 33): a generated corpus of every theme of the issue through every backend's dry run.

Themes: YAML that crashed PyYAML's constructors (malformed explicit tags), lone surrogates, unknown ~user
paths; scalars YAML 1.1 reads otherwise than YAML 1.2 (`no`, `010`, `22:22`); secrets with their value; the
launcher's own environment names, tags and labels; host system folders and devices as mounts, stores, data,
weights and code; a data folder that is not a dataset; platform naming rules (buckets, GCP, Azure, SageMaker,
local docker options); values that used to be silently changed; Azure ML locations on other backends.

Each case is one spec (or one --set) run as `launch -b BACKEND SPEC --dry-run` on every backend it concerns
(spec-level themes and every backend section: all four backends). The properties: a non-zero exit, exactly one
line `error: ...` that names the file (or the --set) and the key, no traceback, no secret value in any output,
and nothing written next to the spec.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
from test_fuzz_specs import BACKENDS, BASES, dump, set_path  # noqa: E402

from launcher.cli import main  # noqa: E402

SECRET = "planted-r3-s3cr3t-Vx2"
ENV = {"AWS_REGION": "us-east-1", "FUZZ_SECRET": SECRET}
ALL = BACKENDS

# (label, mutation, key fragment the line must hold, backends). A mutation is ("value", path, value),
# ("raw", yaml text appended to the spec) or ("set", "key=value").
Case = tuple[str, tuple[Any, ...], str, tuple[str, ...]]
CASES: list[Case] = []


def add(label: str, mutation: tuple[Any, ...], key: str, backends: tuple[str, ...] = ALL) -> None:
    CASES.append((label, mutation, key, backends))


# ---------------------------------------------------------------- crashes

TAGS = ["!!bool maybe", "!!int ''", "!!int '-'", "!!int 0x", "!!int 1.5", "!!float ''", "!!float '-'", "!!float abc",
        "!!timestamp garbage", "!!timestamp 2026-13-45", "!!set [a, b]", "!!omap 5", "!!pairs {a: 1}", "!!str {a: 1}",
        "!!int [1]", "!!bool {a: 1}", "!!null [1]", "!!seq {a: 1}", "!!map [1]", "!!binary [1]"]  # fmt: skip
TAG_KEYS = [("train", "epochs"), ("train", "lr0"), ("limits", "max_runtime"), ("limits", "max_cost"), ("name",),
            ("train", "data"), ("checkpoint", "uri"), ("env", "A"), ("resources", "gpus"), ("train", "amp")]  # fmt: skip


RAW = "__raw_yaml_here__"


def raw(path: tuple[str, ...], text: str, extra: str = "") -> tuple[Any, ...]:
    """A mutation that sets `path` to the YAML `text` as written (a tag and its value, unquoted)."""
    return ("raw", path, text, extra)


for i, tag in enumerate(TAGS):
    for path in TAG_KEYS[i % 3 :: 3] if i % 2 else TAG_KEYS:
        add(f"tag-{tag}-{'.'.join(path)}", raw(path, tag), ".".join(path))
for where in [("checkpoint", "uri"), ("train", "data"), ("train", "pretrained"), ("code",)]:
    for home in ["~nosuchuser33/x", "~no.such-user/ckpt", "~nosuchuser33"]:
        extra = "command: [python, x.py]\n" if where == ("code",) else ""
        add(f"home-{home}-{where}", raw(where, home, extra), ".".join(where))
for path in [("env", "A"), ("name",), ("train", "model"), ("image",), ("checkpoint", "uri"), ("local", "network"),
             ("aws", "instance_type"), ("gcp", "machine_type"), ("azure", "compute"), ("command",)]:  # fmt: skip
    for escape in ["\\udc80", "\\ud800", "x\\udfffy"]:
        value = f'["{escape}"]' if path == ("command",) else f'"{escape}"'
        add(f"surrogate-{escape}-{'.'.join(path)}", raw(path, value), ".".join(path))
add("surrogate-key", raw(("env",), '{"\\udc80": x}'), "env")

# ---------------------------------------------------------------- YAML 1.1 readings

AMBIGUOUS = ["no", "yes", "on", "off", "No", "OFF", "010", "0022", "-010", "22:22", "1:30", "1_000", "0o17", "0b11",
             "+0x1f", "1:30.5", "1_0.5"]  # fmt: skip
for i, text in enumerate(AMBIGUOUS):
    for path in [("train", "epochs"), ("train", "seed"), ("limits", "max_runtime"), ("checkpoint", "every"),
                 ("resources", "gpus"), ("train", "amp"), ("name",), ("train", "data")][i % 2 :: 2]:  # fmt: skip
        add(f"yaml11-{text}-{'.'.join(path)}", raw(path, text), "Quote it")
    add(f"yaml11-set-{text}", ("set", f"train.epochs={text}"), "train.epochs")
add("command-unclosed-quote", ("value", ("command",), "python -c 'print(1)"), "command")

# ---------------------------------------------------------------- security

for secrets in (["MY_TOKEN=${FUZZ_SECRET}"], ["A", "B=" + SECRET], ["X=" + SECRET + "=y"]):
    add(f"secret-value-{secrets[-1][:5]}", ("value", ("secrets",), secrets), "secrets")
add("secret-value-set", ("set", f"secrets=[MY_TOKEN={SECRET}]"), "secrets")
for name in ["LAUNCHER_JOB_ID", "LAUNCHER_AZURE_IDENTITY"]:
    add(f"own-env-{name}", ("value", ("env",), {name: "other-job"}), "env")
    add(f"own-secret-{name}", ("value", ("secrets",), [name]), "secrets")
for name in ["AWS_DEFAULT_REGION", "AWS_REGION"]:
    add(f"region-env-{name}", ("value", ("env",), {name: "eu-west-1"}), f"env.{name}", ("aws",))
    add(f"region-secret-{name}", ("value", ("secrets",), [name]), "secrets", ("aws",))
add(
    "azure-storage-account-env",
    ("value", ("env",), {"AZURE_STORAGE_ACCOUNT": "attacker"}),
    "AZURE_STORAGE_ACCOUNT",
    ("azure",),
)
for key in ["torch-launcher:name", "torch-launcher:spec-hash", "TORCH-LAUNCHER:x"]:
    add(f"own-tag-aws-{key}", ("value", ("aws", "tags"), {key: "x"}), "aws.tags")
for key in ["launcher-job", "launcher-spec", "launcher-spec-hash"]:
    add(f"own-tag-azure-{key}", ("value", ("azure", "tags"), {key: "x"}), "azure.tags")
    add(f"own-label-gcp-{key}", ("value", ("gcp", "labels"), {key: "x"}), "gcp.labels")
add("gcp-63-labels", ("value", ("gcp", "labels"), {f"k{i}": "v" for i in range(63)}), "gcp.labels")
for vault in ["https://attacker.example.com", "https://kv1.vault.azure.net.attacker.com", "http://kv1.vault.azure.net",
              "https://kv1.vault.azure.net/secrets", "https://x@kv1.vault.azure.net", "kv1.vault.azure.net",
              "https://kv1.blob.core.windows.net", "https://kv1.vault.azure.net:8443"]:  # fmt: skip
    add(f"key-vault-{vault}", ("value", ("azure", "key_vault"), vault), "azure.key_vault")
for arg in ["${{inputs.other}}", "${{inputs.data}}${{outputs.x}}", "x; ${{ inputs.data }}", "${{jobs.x}}"]:
    add(f"azure-expression-{arg}", ("value", ("command",), ["echo", arg]), "command", ("azure",))

SYSTEM = ["/", "/etc", "/etc/", "/proc", "/proc/self", "/sys", "/dev", "/dev/zero", "/dev/shm/x", "/usr/lib", "/boot",
          "/run", "/var/run/docker.sock", "/bin", "/lib64", "//etc", "/etc/../etc", "/tmp/../etc"]  # fmt: skip
for path in SYSTEM:
    add(
        f"system-mount-{path}",
        ("value", ("local", "mounts"), [{"source": path, "target": "/host", "read_only": False}]),
        "local.mounts.0.source",
    )
    add(f"system-data-{path}", ("value", ("train", "data"), path), "train.data")
    add(f"system-ckpt-{path}", ("value", ("checkpoint", "uri"), path), "checkpoint.uri", ("local",))
for path in ["/etc/shadow", "/etc/passwd", "/proc/self/environ", "/dev/zero", "/dev/stdin"]:
    add(f"system-weights-{path}", ("value", ("train", "pretrained"), path), "train.pretrained")
for path in ["/", "/etc", "/usr"]:
    add(f"system-code-{path}", raw(("code",), path, "command: [python, x.py]\n"), "code.dir")

# ---------------------------------------------------------------- platform rules

for uri in ["s3://my..bucket/x", "s3://192.168.0.1/x", "s3://bucket//key", "s3://bucket-/x", "s3://bu.-cket/x",
            "gs://10.0.0.1/x", "gs://b..c/x", "s3:/bucket/ckpt", "gs:/bucket/ckpt", "az:/c/x"]:  # fmt: skip
    add(f"bucket-ckpt-{uri}", ("value", ("checkpoint", "uri"), uri), "checkpoint.uri")
    add(f"bucket-data-{uri}", ("value", ("train", "data"), uri), "train.data")
OPTIONS: dict[tuple[str, str], list[Any]] = {
    ("gcp", "project"): ["proj", "p", "PROJ-123", "1project", "my-project-", "a" * 31, "my_project", "pr\u0456ject"],
    ("gcp", "secrets_project"): ["proj", "x/y"],
    ("gcp", "region"): [
        "../",
        "us-central1/..",
        "US-CENTRAL1",
        "europe_west4",
        "us-central-1",
        "global",
        "us central1",
    ],
    ("gcp", "service_account"): [
        "a@b",
        "x@evil.com",
        "root; id@x.iam.gserviceaccount.com",
        "@x.iam.gserviceaccount.com",
    ],
    ("gcp", "tensorboard"): ["\u0663", "12\u0663", "\u00b9"],
    ("azure", "subscription_id"): [
        "x",
        "0000",
        "00000000-0000-0000-0000-00000000000g",
        "{00000000-0000-0000-0000-000000000000}",
    ],
    ("azure", "resource_group"): ["rg/x", "rg?x", "rg.", "a" * 91, "r#g"],
    ("azure", "workspace"): ["w", "ws", "w s", "ws/", "-ws", "a" * 40],
    ("azure", "experiment"): ["exp/1", "\u00e9t\u00e9", "a b", "-x"],
    ("azure", "compute"): ["c", "1cluster", "a" * 20, "gpu_cluster", "gpu-"],
    ("azure", "shm_size"): ["0g", "0", "gggg", "\u00b2g", "16G"],
    ("local", "shm_size"): ["gggg", "\u00b9g", "0", "0g", "1\u0663g"],
    ("local", "user"): ["root; id", "a b", "\u00fc", "1000:", ":1000", "$(id)"],
    ("local", "workdir"): ["/nonexistent-issue33", "/tmp/nonexistent-issue33/x"],
    ("aws", "secrets_prefix"): ["/", "//"],
}
for (section, option), values in OPTIONS.items():
    for value in values:
        add(f"option-{section}.{option}-{value!r}"[:80], ("value", (section, option), value), f"{section}.{option}")
add("sagemaker-env-name", ("value", ("env",), {"A" * 600: "x"}), "env", ("aws",))
for length in (257, 600, 40_000):
    add(f"env-name-{length}", ("value", ("env",), {"A" * length: "x"}), "env")
    add(f"secret-name-{length}", ("value", ("secrets",), ["S" * length]), "secrets")
add("max-wait-without-spot", ("value", ("aws", "max_wait_s"), 3600), "aws.max_wait_s", ("aws",))
for name in ["aws", "sagemaker", "gcp", "vertex", "azure", "local"]:
    add(f"plugins-builtin-{name}", ("value", ("plugins",), {name: {"region": "us-east-1"}}), f"plugins.{name}")
for value in [0.5, 90.5, 0.999]:
    add(f"runtime-fraction-{value}", ("value", ("limits", "max_runtime"), value), "limits.max_runtime")
for value in [5e-324, 1e-9, 1e-5]:
    add(f"tiny-fraction-{value}", ("value", ("train", "fraction"), value), "train.fraction")
for uri in ["azureml://datastores/d/paths/x", "wasbs://c@acct.blob.core.windows.net/x", "abfss://c@acct.dfs.core.windows.net/x",
            "https://acct.blob.core.windows.net/c/x"]:  # fmt: skip
    add(f"azure-only-data-{uri}", ("value", ("train", "data"), uri), "train.data", ("local", "aws", "gcp"))
    add(f"azure-only-ckpt-{uri}", ("value", ("checkpoint", "uri"), uri), "checkpoint.uri", ("local", "aws", "gcp"))


# ---------------------------------------------------------------- checks


@pytest.fixture(scope="module")
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return {**ENV, "LAUNCHER_STATE_DIR": str(tmp_path_factory.mktemp("state"))}


def render(backend: str, mutation: tuple[Any, ...]) -> tuple[str, tuple[str, ...]]:
    base = BASES[backend]
    if mutation[0] == "value":
        return dump(set_path(base, mutation[1], mutation[2])), ()
    if mutation[0] == "raw":
        _, path, text, extra = mutation
        return dump(set_path(base, path, RAW)).replace(RAW, text) + extra, ()
    return dump(base), (mutation[1],)


def check(result: Any, where: str, key: str) -> str:
    out, err = result.stdout or "", result.stderr or ""
    assert SECRET not in out + err, "a secret value leaked: " + (out + err)[:500]
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in out + err, err[-2000:]
    assert result.exit_code not in (0, None), f"accepted: {out[-300:]} {err[-300:]}"
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err[:2000]
    line = lines[0]
    assert line.startswith("error: ") and where in line and key in line, (where, key, line[:1000])
    return line


@pytest.mark.timeout(300)
@pytest.mark.parametrize(("label", "mutation", "key", "backends"), CASES, ids=[c[0] for c in CASES])
def test_round_three_corpus(label: str, mutation: tuple[Any, ...], key: str, backends: tuple[str, ...],
                            runner: CliRunner, env: dict[str, str], tmp_path: Path) -> None:  # fmt: skip
    for backend in backends:
        text, sets = render(backend, mutation)
        path = tmp_path / "job.yaml"
        path.write_bytes(text.encode("utf-8", "surrogatepass"))
        args = ["-b", backend, str(path), "--dry-run", *(a for s in sets for a in ("--set", s))]
        result = runner.invoke(main, args, env=env)
        check(result, "--set" if sets else str(path), key)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["job.yaml"], f"{backend} wrote next to the spec"


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_data_folder_that_is_not_a_dataset_is_refused_before_upload(backend: str, runner: CliRunner,
                                                                       env: dict[str, str], tmp_path: Path) -> None:  # fmt: skip
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_rsa").write_text("not a dataset")
    for data, fragment in ((home, "is not an ImageFolder dataset"), (tmp_path / "missing", "does not exist"),
                           (home / ".ssh" / "id_rsa", "is not a folder")):  # fmt: skip
        path = tmp_path / "job.yaml"
        path.write_text(dump(set_path(BASES[backend], ("train", "data"), str(data))))
        result = runner.invoke(main, ["-b", backend, str(path), "--dry-run"], env=env)
        assert fragment in check(result, str(path), "train.data")


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_control_specs_still_plan(backend: str, runner: CliRunner, env: dict[str, str], tmp_path: Path) -> None:
    """Values near each refused one plan: quoted YAML 1.1 words, env values as written, Key Vault hosts."""
    spec = set_path(BASES[backend], ("env",), {"A": "no", "B": "010"})
    spec["secrets"] = ["FUZZ_SECRET"]
    text = dump(spec) + "limits: {max_runtime: '1:30'}\n".replace("'1:30'", "90")
    path = tmp_path / "job.yaml"
    path.write_text(text)
    result = runner.invoke(main, ["-b", backend, str(path), "--dry-run"], env=env)
    assert result.exit_code == 0, result.stderr
    assert SECRET not in result.stdout + result.stderr


def test_corpus_size() -> None:
    """Every theme, on every backend it concerns: the corpus stays large."""
    runs = sum(len(c[3]) for c in CASES)
    assert len(CASES) >= 350 and runs >= 1200, (len(CASES), runs)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_pretrained_file_of_this_machine_is_checked_and_never_handed_to_a_job_elsewhere(
    backend: str, runner: CliRunner, env: dict[str, str], tmp_path: Path
) -> None:
    """A local train.pretrained is refused at the dry run when it is missing or not weights; else the local
    backend mounts it read-only and every other backend names the copy submit puts in the run's store: a job
    on a cloud never gets a path of this machine (it would fail there, after a paid start-up)."""
    folder = tmp_path / "w"
    folder.mkdir()
    (folder / "best.pt").write_bytes(b"PK\x03\x04" + bytes(60))  # a zip archive's start: what torch.save writes
    (folder / "notes.pt").write_text("hello")
    path = tmp_path / "job.yaml"
    for value, fragment in ((folder / "missing.pt", "does not exist"), (folder / "notes.pt", "is not a PyTorch weights"),
                            (folder, "is not a file")):  # fmt: skip
        path.write_text(dump(set_path(BASES[backend], ("train", "pretrained"), str(value))))
        result = runner.invoke(main, ["-b", backend, str(path), "--dry-run"], env=env)
        assert fragment in check(result, str(path), "train.pretrained")
    path.write_text(dump(set_path(BASES[backend], ("train", "pretrained"), "w/best.pt")))  # from the spec's folder
    result = runner.invoke(main, ["-b", backend, str(path), "--dry-run"], env=env)
    assert result.exit_code == 0, result.stderr
    if backend == "local":  # the container mounts it; the process runtime, on this machine, reads it where it is
        docker, process = result.stdout.split("process:", 1)
        assert "pretrained=/weights/best.pt" in docker and "bind: /weights/best.pt" in docker
        assert "mode: ro" in docker.split("bind: /weights/best.pt", 1)[1][:40]
        assert f"pretrained={folder / 'best.pt'}" in process
    else:
        assert f"pretrained={folder / 'best.pt'}" not in result.stdout, "a path of this machine in the job"
        assert "_weights/{content-sha256}.pt" in result.stdout
        words = " ".join(result.stdout.split())  # the plan's YAML wraps long notes
        assert f"train.pretrained {folder / 'best.pt'} is copied at submit from this machine" in words
