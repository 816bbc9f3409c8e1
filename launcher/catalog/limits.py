"""`limits.max_cost` as a hard runtime limit: the one rule every cloud backend applies.

A budget is a promise, not a hint: each cloud backend turns `max_cost` into
the platform's own hard runtime limit (SageMaker MaxRuntimeInSeconds, Vertex
scheduling.timeout, Azure ML limits.timeout) at the chosen instance's catalog
price, so a job cannot overspend even if the estimate was wrong.
"""

from __future__ import annotations

from launcher.errors import LauncherError
from launcher.spec import JobSpec

__all__ = ["MIN_BUDGET_RUNTIME_S", "budget_runtime"]

MIN_BUDGET_RUNTIME_S = 60


def budget_runtime(spec: JobSpec, price_per_node_hour: float, what: str, notes: list[str]) -> int | None:
    """min(max_runtime, seconds that max_cost buys at this price x nodes); None when neither is set.

    `what` names the priced machine for messages; a note is added when the
    budget is what limits the runtime.
    """
    runtime, max_cost = spec.limits.max_runtime, spec.limits.max_cost
    if max_cost is None:
        return runtime
    nodes = spec.resources.nodes
    budget_s = int(max_cost / (price_per_node_hour * nodes) * 3600)
    if budget_s < MIN_BUDGET_RUNTIME_S:
        raise LauncherError(
            f"limits.max_cost ${max_cost:g} buys only {budget_s} s of {nodes} x {what} at ${price_per_node_hour:g}/node-hour.",
            "Raise limits.max_cost or choose fewer or cheaper machines.",
        )
    if runtime is None or budget_s < runtime:
        notes.append(
            f"runtime limit {budget_s} s = max_cost ${max_cost:g} / (${price_per_node_hour:g}/h x {nodes} node(s))"
        )
        return budget_s
    return runtime
