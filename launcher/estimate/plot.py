"""`launch estimate --plot FILE.png`: cost against time for every option, Pareto front marked.

An option is on the Pareto front when no other option is both cheaper and
faster; those are the only ones worth choosing between. matplotlib is
imported here only, with the Agg backend (no display needed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from launcher.estimate.model import Row

__all__ = ["pareto_front", "label", "plot_rows", "draw"]


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
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig = draw(rows, title, max_cost, max_runtime_s)
    out = Path(path)
    fig.savefig(out, dpi=DPI)
    plt.close(fig)
    return out


DPI = 130


def draw(rows: Sequence[Row], title: str = "", max_cost: float | None = None, max_runtime_s: float | None = None):  # type: ignore[no-untyped-def]
    """The figure plot_rows saves: points, Pareto front, limits, and one label per point, no two overlapping."""
    from launcher.lazy import require  # noqa: PLC0415

    matplotlib = require("matplotlib", "train")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    ok = [r for r in rows if r.ok]
    front = pareto_front(ok)
    fig, ax = plt.subplots(figsize=(10, 6.5), dpi=DPI, tight_layout=True)
    for backend in sorted({r.offer.backend for r in ok}):
        mine = [r for r in ok if r.offer.backend == backend]
        ax.scatter([r.total_s / 3600 for r in mine], [r.cost for r in mine], label=backend, s=30, alpha=0.8)
    ax.plot([r.total_s / 3600 for r in front], [r.cost for r in front], "k--", lw=1, label="Pareto front")
    ax.scatter([r.total_s / 3600 for r in front], [r.cost for r in front], s=120, facecolors="none", edgecolors="k")
    if max_cost:
        ax.axhline(max_cost, color="tab:red", ls=":", lw=1, label=f"max_cost ${max_cost:g}")
    if max_runtime_s:
        ax.axvline(max_runtime_s / 3600, color="tab:red", ls="-.", lw=1, label=f"max_runtime {max_runtime_s / 3600:.2g} h")
    _axes(ax, ok, title)
    fig.canvas.draw()  # the final layout first: labels are placed in screen space, then nothing moves
    fig.set_layout_engine("none")
    _place_labels(fig, ax, [((r.total_s / 3600, r.cost), label(r)) for r in ok])
    return fig


# label positions tried around a point, in points: near first, then further out on wider rings
_DIRECTIONS = [(1, 1), (1, -1), (-1, 1), (-1, -1), (1, 0), (-1, 0), (0, 1), (0, -1)]
_RINGS = 40


def _place_labels(fig, ax, items) -> list:  # type: ignore[no-untyped-def]
    """Greedy placement: each label at the first offset (nearest first) where its box meets no label placed
    before it and stays in the figure; a label moved away from its point gets a thin line to it."""
    renderer = fig.canvas.get_renderer()
    inside = ax.bbox  # inside the axes: never over the tick labels or the legend
    placed: list = []
    labels = []
    for xy, text in items:
        ann = ax.annotate(text, xy, fontsize=6, xytext=(3, 3), textcoords="offset points", annotation_clip=False)
        best = None
        for ring in range(_RINGS):
            for dx, dy in _DIRECTIONS:
                step = 3 + 7 * ring
                offset = (dx * step, dy * (3 + 4 * ring) if dy else -3)
                ann.set_position(offset)
                ann.set_horizontalalignment("left" if dx > 0 else "right" if dx < 0 else "center")
                box = _text_box(ann, renderer)
                if inside.contains(box.x0, box.y0) and inside.contains(box.x1, box.y1) and not any(box.overlaps(b) for b in placed):
                    best = (offset, box, ring)
                    break
            if best:
                break
        if best is None:  # nowhere free: leave it at the first position (never expected with _RINGS rings)
            ann.set_position((3, 3))
            ann.set_horizontalalignment("left")
            best = ((3, 3), _text_box(ann, renderer), 0)
        offset, box, ring = best
        if ring > 0:
            ann.remove()
            ann = ax.annotate(text, xy, fontsize=6, xytext=offset, textcoords="offset points", annotation_clip=False,
                              ha=ann.get_horizontalalignment(), va="baseline",
                              arrowprops={"arrowstyle": "-", "lw": 0.4, "color": "0.5", "shrinkA": 0, "shrinkB": 2})
        placed.append(box)
        labels.append(ann)
    return labels


def _text_box(ann, renderer):  # type: ignore[no-untyped-def]
    """The screen box of an annotation's text alone (not its line), a point of margin around it."""
    from matplotlib.text import Text  # noqa: PLC0415

    ann.update_positions(renderer)  # an annotation's offset is applied here, not by set_position
    return Text.get_window_extent(ann, renderer).padded(1)


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
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0)  # outside: never over a label
