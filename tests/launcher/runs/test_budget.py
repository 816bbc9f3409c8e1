from __future__ import annotations

import pytest

from launcher.api import Launcher
from launcher.runs.budget import BudgetExceededError, budget_hook
from launcher.state.jobs import JobRegistry
from tests.launcher.estimate.fakes import FakeBackend, offer, spec


def _launcher(tmp_path, backend: FakeBackend) -> Launcher:
    return Launcher(backend=backend, jobs=JobRegistry(tmp_path / "j.db"), before_submit=(budget_hook,))


def test_refuses_over_budget_with_numbers_and_the_flag(tmp_path) -> None:
    backend = FakeBackend([offer("fake.big", price=100.0)])
    with pytest.raises(BudgetExceededError) as err:
        _launcher(tmp_path, backend).submit(spec(limits={"max_cost": 0.5}))
    text = str(err.value)
    assert "exceeds limits.max_cost $0.50" in text and "fake.big" in text and "--ignore-budget" in text
    assert err.value.exit_code != 0
    assert backend.submitted == []


def test_submits_within_budget(tmp_path) -> None:
    backend = FakeBackend([offer("fake.small", price=0.5)])
    _launcher(tmp_path, backend).submit(spec(limits={"max_cost": 5.0}))
    assert len(backend.submitted) == 1


def test_no_budget_no_check(tmp_path) -> None:
    backend = FakeBackend(error="offers are broken")
    _launcher(tmp_path, backend).submit(spec())
    assert len(backend.submitted) == 1


def test_a_budget_that_cannot_be_checked_refuses(tmp_path) -> None:
    backend = FakeBackend(error="no price catalog")
    with pytest.raises(BudgetExceededError, match="Cannot check limits.max_cost.*no price catalog"):
        _launcher(tmp_path, backend).submit(spec(limits={"max_cost": 5.0}))


def test_the_planned_instance_is_priced_not_the_cheapest(tmp_path) -> None:
    # the fake plans its first offer; a cheaper second offer must not hide the overspend
    backend = FakeBackend([offer("fake.planned", price=50.0), offer("fake.cheap", price=0.01)])
    with pytest.raises(BudgetExceededError, match="fake.planned"):
        _launcher(tmp_path, backend).submit(spec(limits={"max_cost": 1.0}))


def test_a_cost_exactly_at_the_budget_is_within_it_and_a_cent_above_is_not(tmp_path) -> None:
    """max_cost is "at most": the boundary itself is allowed (the estimate's own rounding decides nothing)."""
    from launcher.estimate.model import estimate

    backend = FakeBackend([offer("fake.exact", price=3.0)])
    (row,) = [r for r in estimate(spec(), [backend], jobs=JobRegistry(tmp_path / "e.db")) if r.ok]
    _launcher(tmp_path, backend).submit(spec(limits={"max_cost": row.cost}))
    assert len(backend.submitted) == 1
    with pytest.raises(BudgetExceededError, match="exceeds limits.max_cost"):
        _launcher(tmp_path, FakeBackend([offer("fake.exact", price=3.0)])).submit(
            spec(limits={"max_cost": row.cost - 0.01})
        )
