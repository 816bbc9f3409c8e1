"""The spec's YAML (issue 33): YAML 1.2 numbers and booleans, env values as written, malformed explicit tags,
lone surrogates, unknown ~user paths and `command:` strings give one line, never a traceback or a silent change."""

from __future__ import annotations

from pathlib import Path

import pytest

from launcher.errors import SpecError
from launcher.spec import load_spec, parse_set


def load(tmp_path: Path, text: str, overrides: tuple[str, ...] = ()):  # type: ignore[no-untyped-def]
    path = tmp_path / "job.yaml"
    path.write_text("name: a\n" + text)
    return load_spec(path, overrides, environ={}, cwd=tmp_path)


def refused(tmp_path: Path, text: str, overrides: tuple[str, ...] = ()) -> str:
    with pytest.raises(SpecError) as info:
        load(tmp_path, text, overrides)
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message, message
    return message


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("train: {epochs: !!bool maybe}\n", "train.epochs"),
        ("limits: {max_runtime: !!int ''}\n", "limits.max_runtime"),
        ("limits: {max_runtime: !!int -}\n", "limits.max_runtime"),
        ("limits: {max_cost: !!float ''}\n", "limits.max_cost"),
        ("secrets: !!set [A, B]\n", "secrets"),
        ("train: {data: !!timestamp garbage}\n", "train.data"),
        ("train: {epochs: !!int 010}\n", "train.epochs"),  # PyYAML's !!int reads it as octal 8
        ("train: !!str {epochs: 1}\n", "train"),
        ("train: {epochs: !!omap 5}\n", "train.epochs"),
    ],
)
def test_malformed_explicit_tags_are_one_line(tmp_path: Path, text: str, key: str) -> None:
    message = refused(tmp_path, text)
    assert str(tmp_path / "job.yaml") in message and f" {key}: " in message, message


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("limits: {max_runtime: 1:30}\n", "'1:30'"),  # YAML 1.1: 90 seconds
        ("train: {epochs: 010}\n", "'010'"),  # YAML 1.1: 8
        ("train: {seed: 0022}\n", "'0022'"),  # YAML 1.1: 18
        ("train: {epochs: 1_0}\n", "'1_0'"),
        ("train: {amp: no}\n", "'no'"),  # YAML 1.1: false
        ("train: {cos_lr: On}\n", "'On'"),
        ("train: {data: 22:22}\n", "'22:22'"),  # YAML 1.1: 1342
        ("train: {seed: 0o17}\n", "'0o17'"),  # YAML 1.2: 15, YAML 1.1: the text
    ],
)
def test_scalars_yaml_1_1_reads_otherwise_are_refused_with_quote_it(tmp_path: Path, text: str, shown: str) -> None:
    message = refused(tmp_path, text)
    assert shown in message and "Quote it" in message, message


def test_env_values_are_kept_exactly_as_written(tmp_path: Path) -> None:
    text = "env: {A: no, B: 1.10, C: 0xff, D: 0022, E: '22:22', F: 22:22, G: 2026-01-01, H: true, I: 010}\n"
    spec = load(tmp_path, text)
    assert spec.env == {"A": "no", "B": "1.10", "C": "0xff", "D": "0022", "E": "22:22", "F": "22:22", "G": "2026-01-01",
                        "H": "true", "I": "010"}  # fmt: skip


def test_env_values_from_set_are_kept_as_written(tmp_path: Path) -> None:
    spec = load(tmp_path, "", ("env.A=no", "env.B=1.10", "env.C=0022"))
    assert spec.env == {"A": "no", "B": "1.10", "C": "0022"}


def test_yaml_1_2_numbers_and_keys(tmp_path: Path) -> None:
    spec = load(tmp_path, "train: {epochs: 0x10, lr0: 1e-3, momentum: .5}\nrecovery: {on: [preempted]}\n")
    assert (spec.train.epochs, spec.train.lr0, spec.train.momentum) == (16, 0.001, 0.5)
    assert spec.recovery is not None and spec.recovery.on == ["preempted"]


def test_set_refuses_an_ambiguous_scalar_naming_the_set(tmp_path: Path) -> None:
    message = refused(tmp_path, "", ("train.epochs=010",))
    assert message.startswith("--set train.epochs") and "'010'" in message, message
    assert parse_set("train.epochs=10") == (["train", "epochs"], 10)


def test_a_lone_surrogate_is_one_line(tmp_path: Path) -> None:
    message = refused(tmp_path, 'env: {A: "x\\udc80"}\n')
    assert "env.A" in message and "U+DC80" in message
    message = refused(tmp_path, 'train: {model: "\\ud800"}\n')
    assert "train.model" in message
    message = refused(tmp_path, 'env: {"\\udc80": x}\n')
    message.encode("utf-8")  # printable


@pytest.mark.parametrize("key", ["checkpoint.uri", "train.data", "code"])
def test_an_unknown_home_folder_is_one_line(tmp_path: Path, key: str) -> None:
    extra = "command: [python, x.py]\n" if key == "code" else ""
    section, _, field = key.partition(".")
    text = f"{section}: {{{field}: ~nosuchuser33/x}}\n" if field else f"{section}: ~nosuchuser33/x\n"
    message = refused(tmp_path, text + extra)
    assert "~nosuchuser33" in message and "full path" in message, message


def test_a_command_string_is_split_like_a_shell(tmp_path: Path) -> None:
    spec = load(tmp_path, "command: \"python -c 'print(1)'\"\n")
    assert spec.command == ["python", "-c", "print(1)"]
    message = refused(tmp_path, 'command: "python -c \'print(1)"\n')
    assert "command" in message and "list" in message
