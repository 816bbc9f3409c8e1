"""The `recovery:` section: defaults, YAML's `on:`, and one-line refusals at load time."""

from __future__ import annotations

from pathlib import Path

import pytest

from launcher.backends import registry
from launcher.errors import SpecError
from launcher.spec import load_spec

SPEC = """
name: r1
recovery:
  max_attempts: 4
  on: [preempted, capacity]
  fallback: [aws, vertex, local]
  after_failures: 2
  backoff: {initial: 10s, max: 2m, factor: 3}
"""


def load(tmp_path: Path, text: str, overrides: tuple[str, ...] = ()):  # type: ignore[no-untyped-def]
    path = tmp_path / "job.yaml"
    path.write_text(text)
    spec = load_spec(path, overrides, cwd=tmp_path)
    registry.check_sections(spec, path, overrides)
    return spec


def test_recovery_loads_with_yaml_on_key_and_canonical_backends(tmp_path: Path) -> None:
    rec = load(tmp_path, SPEC).recovery
    assert rec.max_attempts == 4 and rec.on == ["preempted", "capacity"] and rec.after_failures == 2
    assert rec.fallback == ["aws", "vertex", "local"]
    assert [rec.backoff.delay(n) for n in (1, 2, 3, 4)] == [10, 30, 90, 120]  # bounded by max


def test_recovery_defaults(tmp_path: Path) -> None:
    rec = load(tmp_path, "name: r1\nrecovery: {}\n").recovery
    assert rec.max_attempts == 3 and rec.on == ["preempted", "capacity", "node_failure"] and rec.fallback == []
    assert rec.backoff.initial == 30 and rec.backoff.max == 900
    assert load(tmp_path, "name: r1\n").recovery is None


@pytest.mark.parametrize(("text", "overrides", "expected"), [
    (SPEC.replace("vertex", "gpc"), (), "job.yaml: recovery.fallback.1: unknown backend 'gpc'; did you mean 'gcp'?"),
    (SPEC, ("recovery.fallback=[aws, sagemaker]",), "--set recovery.fallback=[aws, sagemaker]: recovery.fallback.1: 'sagemaker' is the backend aws, listed twice"),
    (SPEC, ("recovery.max_attempts=0",), "--set recovery.max_attempts=0: recovery.max_attempts: Input should be greater than or equal to 1"),
    (SPEC.replace("[preempted, capacity]", "[preempted, user_error]"), (), "recovery.on.1: Input should be 'preempted', 'capacity' or 'node_failure'"),
    (SPEC.replace("after_failures: 2", "after_failures: 0"), (), "recovery.after_failures: Input should be greater than or equal to 1"),
    (SPEC.replace("max: 2m", "max: 5s"), (), "recovery.backoff: max (5 s) is shorter than initial (10 s)"),
    (SPEC.replace("[aws, vertex, local]", "[aws, aws]"), (), "recovery.fallback: Value error, aws is listed twice; keep one"),
])  # fmt: skip
def test_bad_recovery_is_one_line_naming_the_key(
    tmp_path: Path, text: str, overrides: tuple[str, ...], expected: str
) -> None:
    with pytest.raises(SpecError) as caught:
        load(tmp_path, text, overrides)
    message = str(caught.value)
    assert "\n" not in message
    assert expected.replace("Value error, ", "") in message
