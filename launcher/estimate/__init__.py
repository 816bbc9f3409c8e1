"""Cost and time estimates for a job spec on every backend, the local machine included.

    from launcher.estimate import estimate
    rows = estimate(spec, registry.installed())  # every installed backend (launcher.backends.registry)
    rows = estimate(spec, backends=[backend])  # backend objects, e.g. fakes in tests

The model (model.py) adds start-up, data staging, training and validation
time; throughput (throughput.py) comes from a measured profile, past runs or
a cited table; prices come from each backend's offers (its dated catalog),
and the local row from electricity and hardware amortisation (local.py).
Nothing here imports torch, matplotlib or a cloud SDK at module level.
"""

from __future__ import annotations

from launcher.estimate.model import Row, estimate
from launcher.estimate.record import record_results

__all__ = ["Row", "estimate", "record_results"]
