"""max_cost becomes a hard runtime limit at the chosen price."""

from __future__ import annotations

import pytest

from launcher.catalog.limits import budget_runtime
from launcher.errors import LauncherError
from launcher.spec import JobSpec


def spec(max_cost: float | None, max_runtime: str | None = None, nodes: int = 1) -> JobSpec:
    return JobSpec(name="a", limits={"max_cost": max_cost, "max_runtime": max_runtime}, resources={"nodes": nodes})


def test_budget_caps_the_runtime_and_says_so() -> None:
    notes: list[str] = []
    assert budget_runtime(spec(10, "10h", nodes=2), 2.5, "ml.g5.xlarge", notes) == 7200  # $10 / ($2.5 x 2) = 2 h
    assert notes and "max_cost $10" in notes[0]


def test_runtime_wins_when_shorter_and_nothing_set_means_no_limit() -> None:
    notes: list[str] = []
    assert budget_runtime(spec(100, "1h"), 1.0, "vm", notes) == 3600 and notes == []
    assert budget_runtime(spec(None, None), 1.0, "vm", notes) is None


def test_a_budget_under_a_minute_is_refused() -> None:
    with pytest.raises(LauncherError, match=r"buys only 36 s .*Raise limits.max_cost"):
        budget_runtime(spec(0.01), 1.0, "vm", [])
