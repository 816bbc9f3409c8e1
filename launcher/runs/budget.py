"""The budget check run before every submit: `limits.max_cost` is a promise.

`launch run` installs `budget_hook` unless `--ignore-budget` is given. It
estimates the job on the backend it is about to be sent to and refuses, with
the numbers, when the estimate exceeds `limits.max_cost`. An estimate that
cannot be made while a budget is set is also a refusal: a promise we cannot
check is not kept. (The cloud backends separately turn max_cost into the
platform's hard runtime limit at the chosen price.)
"""

from __future__ import annotations

import json
from typing import Protocol, Sequence

from launcher.backend import Backend
from launcher.errors import LauncherError
from launcher.estimate.model import Row, estimate
from launcher.plan import Plan
from launcher.state.jobs import JobRegistry


class Submitter(Protocol):
    """What the hook reads of the Launcher that runs it (launcher.api.PreSubmitHook)."""

    backend: Backend
    jobs: JobRegistry


__all__ = ["BudgetExceededError", "budget_hook", "check_budget", "chosen_row"]

OVERRIDE = "--ignore-budget"


class BudgetExceededError(LauncherError):
    """The estimate is above limits.max_cost (or cannot be checked against it)."""

    exit_code = 3


def budget_hook(launcher: Submitter, plan: Plan) -> None:
    """Pre-submit hook (see launcher.api.PreSubmitHook)."""
    spec = plan.spec
    if spec.limits.max_cost is None:
        return
    rows = estimate(spec, [launcher.backend], jobs=launcher.jobs)
    check_budget(plan, rows)


def chosen_row(plan: Plan, rows: Sequence[Row]) -> Row | None:
    """The row of the instance the plan asks for; the priciest one when the plan names none of them."""
    usable = [r for r in rows if r.ok]
    if not usable:
        return None
    text = json.dumps(plan.to_dict(), default=str)
    named = [r for r in usable if r.offer.instance and r.offer.instance in text]
    return max(named or usable, key=lambda r: r.cost)


def check_budget(plan: Plan, rows: Sequence[Row]) -> None:
    limit = plan.spec.limits.max_cost
    if limit is None:
        return
    row = chosen_row(plan, rows)
    if row is None:
        reasons = "; ".join(r.error for r in rows if r.error) or "no offers"
        raise BudgetExceededError(
            f"Cannot check limits.max_cost (${limit:.2f}) on {plan.backend}: {reasons}.",
            f"Fix that, or pass {OVERRIDE} to submit anyway.",
        )
    if row.cost > limit:
        o = row.offer
        raise BudgetExceededError(
            f"Estimated cost ${row.cost:.2f} (range ${row.cost_range[0]:.2f}-${row.cost_range[1]:.2f}) for "
            f"{o.nodes}x {o.instance} at ${o.price_per_hour:.2f}/h for {row.total_s / 3600:.2f} h exceeds "
            f"limits.max_cost ${limit:.2f}.",
            f"Raise limits.max_cost, pick a cheaper option (launch estimate JOB.yaml), or pass {OVERRIDE}.",
        )
