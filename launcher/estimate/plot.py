"""`launch estimate --plot FILE.png`: cost against time for every option, Pareto front marked.

An option is on the Pareto front when no other option is both cheaper and
faster; those are the only ones worth choosing between. matplotlib is
imported here only, with the Agg backend (no display needed).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from launcher.estimate.model import Row

__all__ = ["pareto_front", "label", "plot_rows", "draw", "place_labels"]


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
    rows: Sequence[Row],
    path: str | Path,
    title: str = "",
    max_cost: float | None = None,
    max_runtime_s: float | None = None,
) -> Path:
    """Draw every usable row, the Pareto front and the spec's limits (red lines) into a PNG."""
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig = draw(rows, title, max_cost, max_runtime_s)
    out = Path(path)
    fig.savefig(out, dpi=DPI)
    plt.close(fig)
    return out


DPI = 130


def draw(rows: Sequence[Row], title: str = "", max_cost: float | None = None,
         max_runtime_s: float | None = None):  # type: ignore[no-untyped-def]  # fmt: skip
    """The figure plot_rows saves: the options given (the table's rows), the Pareto front, one label per point,
    no two overlapping; the axes fit the points (log where they span more than a decade), and a limit is a red
    line where it falls near them, else said in the legend (never stretching the axes into empty space)."""
    from launcher.lazy import require  # noqa: PLC0415 - matplotlib only when a plot is asked for

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
    xlim = _fit([r.total_s / 3600 for r in ok], max_runtime_s / 3600 if max_runtime_s else None)
    ylim = _fit([r.cost for r in ok], max_cost)
    _limit(ax.axhline, max_cost, ylim, f"max_cost ${max_cost:g}" if max_cost else "", ":")
    _limit(ax.axvline, max_runtime_s / 3600 if max_runtime_s else None, xlim,
           f"max_runtime {max_runtime_s / 3600:.2g} h" if max_runtime_s else "", "-.")  # fmt: skip
    _axes(ax, xlim, ylim, title)
    fig.canvas.draw()  # the final layout first: labels are placed in screen space, then nothing moves
    fig.set_layout_engine("none")
    place_labels(fig, ax, [((r.total_s / 3600, r.cost), label(r)) for r in ok])
    return fig


DECADE = 10.0  # values spanning more than this ratio get a log axis
NEAR = 1.5  # a limit within this factor of the points' range is drawn, the axis stretched to it


@dataclass(frozen=True)
class _Range:
    lo: float
    hi: float
    log: bool
    limit_shown: bool


def _fit(values: Sequence[float], limit: float | None) -> _Range:
    """The axis range of `values` with a margin; a limit near them (within NEAR of the top) is brought in.
    A free option ($0: a Slurm cluster without `gpu_hour_price`) keeps the axis linear from below 0, where
    a log axis could not show it."""
    positive = [v for v in values if v > 0] or [1e-3]
    lo, hi = min(positive), max(positive)
    shown = bool(limit) and limit <= hi * NEAR  # type: ignore[operator]
    if shown:
        lo, hi = min(lo, limit), max(hi, limit)  # type: ignore[type-var]
    if any(v <= 0 for v in values):
        pad = hi * 0.06
        return _Range(-pad, hi + pad, False, shown)
    log = hi / lo > DECADE
    if log:
        return _Range(lo / 1.6, hi * 1.6, True, shown)
    pad = (hi - lo) * 0.12 or hi * 0.12
    return _Range(max(0.0, lo - pad), hi + pad, False, shown)


def _limit(line, value: float | None, where: _Range, text: str, style: str) -> None:  # type: ignore[no-untyped-def]
    """A limit as a red line when it is near the points; else a legend entry saying where it lies."""
    if not value:
        return
    if where.limit_shown:
        line(value, color="tab:red", ls=style, lw=1.2, label=text)
    else:
        line(value, color="tab:red", ls=style, lw=1.2, label=f"{text} (far off the chart)")


# label positions tried around a point, in points: near first, then further out on wider rings
_DIRECTIONS = [(1, 1), (1, -1), (-1, 1), (-1, -1), (1, 0), (-1, 0), (0, 1), (0, -1)]
_RINGS = 40


def place_labels(fig, ax, items, marks: Sequence[float] = ()) -> list:  # type: ignore[no-untyped-def]
    """Greedy placement: each label at the first offset (nearest first) where its box meets no label placed
    before it, no other item's marker (`marks`: each item's marker radius in points, when given) and stays in
    the axes; a label moved away from its point gets a thin line to it."""
    from matplotlib.transforms import Bbox  # noqa: PLC0415

    renderer = fig.canvas.get_renderer()
    inside = ax.bbox  # inside the axes: never over the tick labels or the legend
    scale = fig.dpi / 72  # points to pixels
    centres = [ax.transData.transform(xy) for xy, _ in items] if marks else []
    markers = [Bbox.from_extents(x - r * scale, y - r * scale, x + r * scale, y + r * scale)
               for (x, y), r in zip(centres, marks)]  # fmt: skip
    placed: list = []
    labels = []
    for i, (xy, text) in enumerate(items):
        others = [m for j, m in enumerate(markers) if j != i]
        ann = ax.annotate(text, xy, fontsize=6, xytext=(3, 3), textcoords="offset points", annotation_clip=False)
        best = None
        for ring in range(_RINGS):
            for dx, dy in _DIRECTIONS:
                step = 3 + 7 * ring
                offset = (dx * step, dy * (3 + 4 * ring) if dy else -3)
                ann.set_position(offset)
                ann.set_horizontalalignment("left" if dx > 0 else "right" if dx < 0 else "center")
                box = _text_box(ann, renderer)
                if (
                    inside.contains(box.x0, box.y0)
                    and inside.contains(box.x1, box.y1)
                    and not any(box.overlaps(b) for b in placed)
                    and not any(box.overlaps(m) for m in others)
                ):
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
            ann = ax.annotate(
                text,
                xy,
                fontsize=6,
                xytext=offset,
                textcoords="offset points",
                annotation_clip=False,
                ha=ann.get_horizontalalignment(),
                va="baseline",
                arrowprops={"arrowstyle": "-", "lw": 0.4, "color": "0.5", "shrinkA": 0, "shrinkB": 2},
            )
        placed.append(box)
        labels.append(ann)
    return labels


def _text_box(ann, renderer):  # type: ignore[no-untyped-def]
    """The screen box of an annotation's text alone (not its line), a point of margin around it."""
    from matplotlib.text import Text  # noqa: PLC0415

    ann.update_positions(renderer)  # an annotation's offset is applied here, not by set_position
    return Text.get_window_extent(ann, renderer).padded(1)


def _axes(ax, x: _Range, y: _Range, title: str) -> None:  # type: ignore[no-untyped-def]
    if x.log:
        ax.set_xscale("log")
    if y.log:
        ax.set_yscale("log")
    ax.set_xlim(x.lo, x.hi)
    ax.set_ylim(y.lo, y.hi)
    ax.set_xlabel("total time (hours)" + (", log scale" if x.log else ""))
    ax.set_ylabel("total cost (USD)" + (", log scale" if y.log else ""))
    ax.set_title(title or "cost vs time per option")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0)  # outside: never over a label
