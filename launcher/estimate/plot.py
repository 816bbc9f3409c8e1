"""`launch estimate --plot FILE.png`: cost against time for every option, Pareto front marked.

An option is on the Pareto front when no other option is both cheaper and
faster; those are the only ones worth choosing between. matplotlib is
imported here only, with the Agg backend (no display needed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from launcher.estimate.model import Row

__all__ = ["pareto_front", "label", "plot_rows"]


def pareto_front(rows: Sequence[Row]) -> list[Row]:
    """Rows not dominated by any other row (cheaper-or-equal and faster-or-equal, one strictly), fastest first."""
    ok = [r for r in rows if r.ok]
    front = []
    for r in ok:
        dominated = any(
            (o.cost <= r.cost and o.total_s <= r.total_s) and (o.cost < r.cost or o.total_s < r.total_s) for o in ok
        )
        if not dominated:
            front.append(r)
    return sorted(front, key=lambda r: (r.total_s, r.cost))


def label(row: Row) -> str:
    o = row.offer
    nodes = f"{o.nodes}x " if o.nodes > 1 else ""
    region = f" {o.region}" if o.region else ""
    return f"{o.backend}: {nodes}{o.instance}{' spot' if o.spot else ''}{region}"


def plot_rows(
    rows: Sequence[Row], path: str | Path, title: str = "", max_cost: float | None = None, max_runtime_s: float | None = None
) -> Path:
    """Draw every usable row, the Pareto front and the spec's limits (red lines) into a PNG."""
    from launcher.lazy import require

    matplotlib = require("matplotlib", "train")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if r.ok]
    front = pareto_front(ok)
    fig, ax = plt.subplots(figsize=(10, 6.5), tight_layout=True)
    for backend in sorted({r.offer.backend for r in ok}):
        mine = [r for r in ok if r.offer.backend == backend]
        ax.scatter([r.total_s / 3600 for r in mine], [r.cost for r in mine], label=backend, s=30, alpha=0.8)
    ax.plot([r.total_s / 3600 for r in front], [r.cost for r in front], "k--", lw=1, label="Pareto front")
    ax.scatter([r.total_s / 3600 for r in front], [r.cost for r in front], s=120, facecolors="none", edgecolors="k")
    for r in ok:
        ax.annotate(label(r), (r.total_s / 3600, r.cost), fontsize=6, xytext=(3, 3), textcoords="offset points")
    if max_cost:
        ax.axhline(max_cost, color="tab:red", ls=":", lw=1, label=f"max_cost ${max_cost:g}")
    if max_runtime_s:
        ax.axvline(max_runtime_s / 3600, color="tab:red", ls="-.", lw=1, label=f"max_runtime {max_runtime_s / 3600:.2g} h")
    _axes(ax, ok, title)
    out = Path(path)
    fig.savefig(out, dpi=130)
    plt.close(fig)
    return out


def _axes(ax, rows: Sequence[Row], title: str) -> None:  # type: ignore[no-untyped-def]
    times = [r.total_s for r in rows]
    costs = [r.cost for r in rows if r.cost > 0]
    if times and max(times) / max(min(times), 1e-9) > 20:
        ax.set_xscale("log")
    if costs and max(costs) / min(costs) > 20:
        ax.set_yscale("log")
    ax.set_xlabel("total time (hours)")
    ax.set_ylabel("total cost (USD)")
    ax.set_title(title or "cost vs time per option")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
