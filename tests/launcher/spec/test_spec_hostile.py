"""Hostile and malformed job specs (issue 13): refused quickly with one line naming the file and key."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from launcher.errors import SpecError
from launcher.spec import MAX_NODES, load_spec

BASE = "name: a\n"


def write(tmp_path: Path, text: str | bytes, name: str = "job.yaml") -> Path:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def refused(path: Path | str, overrides: tuple[str, ...] = (), environ: dict[str, str] | None = None) -> str:
    with pytest.raises(SpecError) as info:
        load_spec(path, overrides, environ=environ or {}, cwd=Path("/tmp"))
    message = str(info.value)
    assert "\n" not in message, message
    return message


def alias_bomb(levels: int) -> str:
    lines = ["name: a", 'x0: &x0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels + 1):
        refs = ", ".join([f"*x{i - 1}"] * 9)
        lines.append(f"x{i}: &x{i} [{refs}]")
    return "\n".join(lines) + "\n"


@pytest.mark.timeout(20)
def test_alias_bomb_is_refused_before_expanding(tmp_path: Path) -> None:
    message = refused(write(tmp_path, alias_bomb(9)))
    assert f"more than {MAX_NODES} values" in message and "job.yaml" in message


@pytest.mark.timeout(20)
def test_self_referencing_alias_is_refused(tmp_path: Path) -> None:
    assert "refers to itself" in refused(write(tmp_path, "name: a\nenv: &e {A: *e}\n"))


@pytest.mark.timeout(20)
def test_named_pipe_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "job.yaml"
    os.mkfifo(fifo)
    assert "not a regular file" in refused(fifo)


@pytest.mark.timeout(20)
def test_dev_zero_is_refused() -> None:
    assert "not a regular file" in refused("/dev/zero")


def test_oversized_file_is_refused(tmp_path: Path) -> None:
    assert "larger than" in refused(write(tmp_path, BASE + "#" * (2 << 20) + "\n"))


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ("name: café\n".encode("latin-1"), "line 1: the file is not UTF-8"),
        ("name: a\n".encode("utf-16"), "UTF-16"),
    ],
)
def test_encodings_other_than_utf8_are_refused(tmp_path: Path, data: bytes, fragment: str) -> None:
    assert fragment in refused(write(tmp_path, data))


def test_utf8_with_bom_loads(tmp_path: Path) -> None:
    assert load_spec(write(tmp_path, b"\xef\xbb\xbfname: a\n"), environ={}).name == "a"


@pytest.mark.timeout(30)
@pytest.mark.parametrize("depth", [40, 3000, 20000])
def test_deep_nesting_is_refused(tmp_path: Path, depth: int) -> None:
    assert "nested" in refused(write(tmp_path, BASE + "env: " + "[" * depth + "]" * depth + "\n"))


def test_huge_integer_in_the_file_is_refused(tmp_path: Path) -> None:
    assert "job.yaml" in refused(write(tmp_path, BASE + "train: {epochs: " + "9" * 5000 + "}\n"))


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("limits: {max_runtime: .inf}", "limits.max_runtime"),
        ("limits: {max_runtime: .nan}", "limits.max_runtime"),
        ("limits: {max_runtime: 1e300}", "limits.max_runtime"),
        ("limits: {max_runtime: 99999999d}", "limits.max_runtime"),
        ("limits: {max_cost: .inf}", "limits.max_cost"),
        ("train: {epochs: true}", "train.epochs: expected a number, not true"),
        ("train: {epochs: 1e30}", "train.epochs"),
        ("train: {batch: 1e20}", "train.batch"),
        ("train: {lr0: .inf}", "train.lr0"),
        ("train: {seed: -1}", "train.seed"),
        ("resources: {gpus: false}", "resources.gpus"),
        ("resources: {memory: .inf}", "resources.memory"),
        ("checkpoint: {uri: 'ftp://host/x'}", "checkpoint.uri: 'ftp://host/x' has scheme 'ftp://'"),
        ("checkpoint: {uri: 'file:///tmp/x'}", "checkpoint.uri"),
        ("checkpoint: {uri: 's3://'}", "checkpoint.uri: 's3://' names no bucket"),
        ("checkpoint: {uri: 's3:///ckpts'}", "names no bucket"),
        ("checkpoint: {uri: 'gs://b/a/../../other'}", "'..' segment"),
        ("train: {data: 'az://c/x/../y'}", "train.data"),
        ("train: {data: 'http://example.com/d.zip'}", "train.data: 'http://example.com/d.zip' has scheme"),
        ("train: {data: ''}", "train.data"),
        ("env: {A: null}", "env.A: has no value"),
        ("env: {A: [1, 2]}", "env.A: is a list"),
        ("env: {A: {b: 1}}", "env.A: is a mapping"),
        ("command: ''", "command: the command is empty"),
        ("command: []", "command: the command is empty"),
        ("command: ['']", "command: the command is empty"),
        ("name: b", "the key 'name' appears twice"),
        ("train: {epochs: 1, epochs: 2}", "the key 'epochs' appears twice"),
    ],
)
def test_wrong_values_are_refused_naming_the_key(tmp_path: Path, text: str, fragment: str) -> None:
    path = write(tmp_path, BASE + text + "\n")
    message = refused(path)
    assert fragment in message and str(path) in message


def test_huge_env_value_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + "env: {BLOB: '${BLOB}'}\n")
    assert "env.BLOB: is 5000000 characters" in refused(path, environ={"BLOB": "x" * 5_000_000})


def test_merge_keys_may_override_without_a_duplicate_error(tmp_path: Path) -> None:
    text = "name: a\nbase: &b {epochs: 2, batch: 4}\n"
    spec_text = text.replace("base: &b", "x-base: &b") + "train: {<<: *b, epochs: 3}\n"
    # x-base is an unknown key: the point is that the merge itself is not a duplicate
    assert "x-base: unknown key" in refused(write(tmp_path, spec_text))


def test_several_problems_stay_on_one_line(tmp_path: Path) -> None:
    message = refused(write(tmp_path, BASE + "train: {epochs: 0, batch: 0, lr0: -1}\n"))
    assert "train.epochs" in message and "(and 2 more: train.batch, train.lr0)" in message


# ---------------------------------------------------------------- --set and ${VAR}


def test_set_errors_name_the_set_not_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, BASE)
    message = refused(path, ("train.epochs=abc",))
    assert message.startswith("--set train.epochs=abc: train.epochs:") and str(path) not in message
    assert refused(path, ("train={epochs: 0}",)).startswith("--set train={epochs: 0}: train.epochs")
    file_error = refused(write(tmp_path, BASE + "train: {batch: 0}\n"), ("train.epochs=3",))
    assert file_error.startswith(str(path) + ": train.batch")


@pytest.mark.timeout(20)
def test_huge_set_integer_is_refused(tmp_path: Path) -> None:
    message = refused(write(tmp_path, BASE), ("train.epochs=" + "7" * 5000,))
    assert message.startswith("--set train.epochs:") and "cannot be read" in message


def test_all_missing_variables_are_reported_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, "name: ${NAME}\nimage: ${IMAGE}\ncheckpoint: {uri: 's3://${BUCKET}/c'}\n")
    message = refused(path)
    assert "3 environment variables are not set" in message
    assert "NAME (at name)" in message and "IMAGE (at image)" in message and "BUCKET (at checkpoint.uri)" in message


def test_default_applies_to_an_empty_variable_as_in_shells(tmp_path: Path) -> None:
    path = write(tmp_path, "name: a\nimage: ${TRAINING_IMAGE:-torch-launcher-train:latest}\n")
    assert load_spec(path, environ={"TRAINING_IMAGE": ""}).image == "torch-launcher-train:latest"
    assert load_spec(path, environ={"TRAINING_IMAGE": "x:1"}).image == "x:1"
    empty = write(tmp_path, "name: a\nimage: '${EMPTY}x'\n", "plain.yaml")
    assert load_spec(empty, environ={"EMPTY": ""}).image == "x"  # without ':-' an empty value is a value


def test_good_values_still_load(tmp_path: Path) -> None:
    text = (
        "name: a\ntrain: {data: s3://bucket/data, epochs: 3, lr0: 0.1}\ncheckpoint: {uri: ../runs}\n"
        "env: {A: 1, B: 2.5, C: true, D: ''}\nlimits: {max_runtime: 3600, max_cost: 5}\ncommand: python x.py\n"
    )
    spec = load_spec(write(tmp_path, text), environ={}, cwd=tmp_path / "sub")
    assert spec.env == {"A": "1", "B": "2.5", "C": "true", "D": ""}
    assert spec.checkpoint.uri == str(tmp_path.parent / "runs") and spec.command == [
        "python",
        "x.py",
    ]  # the spec's folder


def test_huge_interpolated_or_set_values_are_refused_naming_their_source(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + "image: ${BIG}\n")
    message = refused(path, environ={"BIG": "x" * 1_000_000})
    assert message.startswith(f"{path}: image: is 1000000 characters")
    assert refused(write(tmp_path, BASE), ("image=" + "y" * 100_000,)).startswith("--set image=yyy")


def test_set_keys_deeper_than_any_spec_are_refused(tmp_path: Path) -> None:
    assert "levels deep" in refused(write(tmp_path, BASE), ("plugins." + ".".join(["a"] * 5000) + "=1",))


def test_a_huge_unknown_key_stays_a_short_line(tmp_path: Path) -> None:
    assert len(refused(write(tmp_path, BASE + "k" * 100_000 + ": 1\n"))) < 1000


# ---------------------------------------------------------------- issue 23: what the generated corpus found


@pytest.mark.parametrize("uri", ["s3://AKIA:topsecret@bucket/x", "gs://topsecret@bucket/x", "az://a:topsecret@c/x"])
def test_credentials_in_a_uri_are_refused_without_repeating_them(tmp_path: Path, uri: str) -> None:
    for text, sets in ((BASE + f"checkpoint: {{uri: '{uri}'}}\n", ()), (BASE, (f"train.data={uri}",))):
        message = refused(write(tmp_path, text), sets)
        assert "put credentials in secrets:, not in the URI" in message.replace("Put", "put")
        assert "topsecret" not in message


@pytest.mark.parametrize("uri", ["s3://b/x?versionId=1", "gs://b/x#f", "s3://bucket/%2e%2e/x", "s3://[::1]/x",
                                 "s3://BUCKET/x", "s3://bucket/a//b", "s3://bucket/ x"])  # fmt: skip
def test_uris_with_query_fragment_escapes_or_odd_hosts_are_refused(tmp_path: Path, uri: str) -> None:
    assert "checkpoint.uri" in refused(write(tmp_path, BASE + f"checkpoint: {{uri: '{uri}'}}\n"))


@pytest.mark.parametrize("name", ["LD_PRELOAD", "LD_LIBRARY_PATH", "PATH", "PYTHONPATH", "LAUNCHER_DATA"])
def test_names_the_image_entrypoint_relies_on_are_refused(tmp_path: Path, name: str) -> None:
    assert f"env.{name}: {name} is set by the image" in refused(write(tmp_path, BASE + f"env: {{{name}: x}}\n"))
    assert refused(write(tmp_path, BASE), (f"env.{name}=x",)).startswith(f"--set env.{name}=x")
    assert "hijack" in refused(write(tmp_path, BASE + f"secrets: [{name}]\n"))


@pytest.mark.parametrize("value", ["a\u200bb", "a\u202eb", "a\x1bb", "a\rb"])
def test_invisible_and_control_characters_are_refused(tmp_path: Path, value: str) -> None:
    assert "image" in refused(write(tmp_path, BASE), (f"image={value}",))


def test_binary_sets_and_non_string_keys_are_refused(tmp_path: Path) -> None:
    assert "binary data" in refused(write(tmp_path, BASE + "plugins: {p: {x: !!binary aGVsbG8=}}\n"))
    assert "is a set" in refused(write(tmp_path, BASE + "secrets: !!set {A, B}\n"))
    assert "not a string" in refused(write(tmp_path, BASE + "env: {true: a}\n"))


@pytest.mark.parametrize("image", ["UPPER:latest", "a b", "", "x" * 300, "registry:999999/x", "im\u0430ge"])
def test_bad_image_references_are_refused(tmp_path: Path, image: str) -> None:
    assert "is not an image reference" in refused(write(tmp_path, BASE), (f"image='{image}'",))


def test_good_image_references_load(tmp_path: Path) -> None:
    for image in ("torch-launcher-train:latest", "us-central1-docker.pkg.dev/p/launcher/train:v1",
                  "localhost:5000/x", "r.io/a/b@sha256:" + "a" * 64):  # fmt: skip
        assert load_spec(write(tmp_path, BASE + f"image: '{image}'\n"), environ={}).image == image


def test_non_ascii_digits_are_not_durations(tmp_path: Path) -> None:
    assert "limits.max_runtime" in refused(write(tmp_path, BASE + "limits: {max_runtime: \u0663h}\n"))
    assert "resources.memory" in refused(write(tmp_path, BASE + "resources: {memory: \u0661Gi}\n"))


def test_launcher_names_the_entrypoint_does_not_set_are_the_users(tmp_path: Path) -> None:
    """Only what the entrypoint sets is reserved: a secret named LAUNCHER_KIT_TOKEN is a user's name."""
    from launcher.spec import validate_spec

    spec = validate_spec(
        {"name": "x", "env": {"LAUNCHER_DATA_DIR": "/cache"}, "secrets": ["LAUNCHER_KIT_TOKEN"]}, None, tmp_path
    )
    assert spec.env["LAUNCHER_DATA_DIR"] == "/cache" and spec.secrets == ["LAUNCHER_KIT_TOKEN"]
