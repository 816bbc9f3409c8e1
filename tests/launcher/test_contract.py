"""The container contract: what backends write is exactly what the entrypoint reads."""

from __future__ import annotations

import dataclasses
import itertools
import json

import pytest

from launcher.contract import SECRET_REFS_VARIABLE, EntrypointArgs, secret_ref, secret_refs_value
from launcher.runtime.entrypoint import parse_args
from launcher.runtime.secrets import RESOLVERS, resolve_environment

# A few values per field, including the awkward ones (0 GPUs, empty strings, spaces,
# a command with its own `--` and flags that look like ours).
VALUES: dict[str, list[object]] = {
    "run_name": ["digits", "run with space"],
    "command": [("train",), ("train", "data=s3://b/p", "epochs=3"), ("python", "x.py", "--", "--gpus", "4")],
    "checkpoint_uri": [None, "s3://bucket/ckpt", "${{outputs.checkpoints}}", ""],
    "keep": [3, 1],
    "every": [1, 5],
    "gpus": [None, 0, 8],
    "nproc": [None, 2],
    "save_dir": [None, "/opt/ml/checkpoints"],
    "spec_hash": ["", "8cbc4144e50b9637"],
    "max_runtime": [None, 60, 86_400],
}


def _cases() -> list[EntrypointArgs]:
    names = list(VALUES)
    # a spread of combinations that holds every value of every field (checked below)
    grid = itertools.islice(itertools.product(*VALUES.values()), 0, None, 37)
    return [EntrypointArgs(**dict(zip(names, combo))) for combo in grid]  # type: ignore[arg-type]


def test_every_field_is_one_flag_of_the_parser() -> None:
    flags = {a.dest for a in EntrypointArgs.parser()._actions if a.option_strings and a.dest != "help"}
    assert flags == {f.name for f in dataclasses.fields(EntrypointArgs)} - {"command"}


@pytest.mark.parametrize("args", _cases(), ids=lambda a: " ".join(a.to_argv()[:8]))
def test_round_trip(args: EntrypointArgs) -> None:
    assert EntrypointArgs.parse(args.to_argv()) == args
    assert parse_args(args.to_argv()) == args  # the entrypoint reads it with the same parser


def test_the_grid_covers_every_value() -> None:
    cases = _cases()
    for name, values in VALUES.items():
        seen = {getattr(c, name) for c in cases}
        assert set(values) <= seen, name


def test_defaults_are_not_written_and_a_missing_command_is_train() -> None:
    assert EntrypointArgs(run_name="r").to_argv() == ["--run-name", "r", "--", "train"]
    assert EntrypointArgs.parse(["--run-name", "r"]) == EntrypointArgs(run_name="r")


def test_a_run_name_is_required() -> None:
    with pytest.raises(SystemExit):
        EntrypointArgs.parse(["--gpus", "1"])


def test_secret_refs_round_trip_through_the_resolver() -> None:
    refs = {"B_TOKEN": secret_ref("env", "HOST_B"), "A_TOKEN": secret_ref("env", "HOST_A")}
    value = secret_refs_value(refs)
    assert value == '{"A_TOKEN":"env:HOST_A","B_TOKEN":"env:HOST_B"}'
    environ = {SECRET_REFS_VARIABLE: value, "HOST_A": "a", "HOST_B": "b"}
    assert resolve_environment(environ) == {"A_TOKEN": "a", "B_TOKEN": "b"}
    assert json.loads(value) == refs


def test_every_scheme_has_a_resolver_in_the_image() -> None:
    from launcher.contract import SECRET_SCHEMES

    assert set(SECRET_SCHEMES) == set(RESOLVERS)
    with pytest.raises(ValueError, match="unknown secret scheme"):
        secret_ref("vault", "x")
