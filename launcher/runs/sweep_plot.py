"""`launch sweep status NAME --plot sweep.png`: how each trial did against each swept value, and over epochs.

One panel per swept key (the trial's best metric against its value: a log axis for a log-uniform key, the listed
order for a choice), one panel of the metric per epoch (a line per trial, the early-stop epoch marked). Each point
is labelled with its trial (t003), no label over another or over another trial's point (the estimate plot's
placement); the best trial is a star. matplotlib is imported here only, with the Agg backend.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from launcher.estimate.plot import place_labels
from launcher.lazy import require

__all__ = ["plot_sweep", "draw_sweep", "shown_keys"]

DPI = 130
STYLE = {
    "succeeded": ("o", "tab:blue"),
    "stopped_early": ("X", "tab:orange"),
    "running": ("o", "tab:green"),
    "failed": ("s", "tab:red"),
    "stopped": ("s", "0.5"),
    "starting": ("o", "tab:green"),
}


def plot_sweep(found: dict[str, Any], path: str | Path) -> Path:
    """Draw the summary of a sweep (launcher.runs.sweep.summary) into a PNG."""
    import matplotlib.pyplot as plt  # noqa: PLC0415 - matplotlib only when a plot is asked for

    fig = draw_sweep(found)
    out = Path(path)
    fig.savefig(out, dpi=DPI)
    plt.close(fig)
    return out


def draw_sweep(found: dict[str, Any]):  # type: ignore[no-untyped-def]

    matplotlib = require("matplotlib", "train")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    keys, metric, rows = shown_keys(found), found["metric"], found["trials"]
    panels = len(keys) + 1
    columns = 1 if panels == 1 else 2 if panels <= 6 else 4  # an ultralytics sweep moves up to 22 keys
    lines = math.ceil(panels / columns)
    width, height = (6.2, 4.3) if columns <= 2 else (4.6, 3.4)
    fig, axes = plt.subplots(lines, columns, figsize=(width * columns, height * lines), dpi=DPI, squeeze=False)
    flat = list(axes.flat)
    for ax in flat[panels:]:
        ax.remove()
    best = (found.get("best") or {}).get("trial")
    done = [r for r in rows if r["best"] is not None]
    labelled: list[tuple[Any, list[tuple[tuple[float, float], str]], list[float]]] = []
    for ax, key in zip(flat, keys):
        dist = found.get("distributions", {}).get(key)
        choices = (
            dist
            if isinstance(dist, list)
            else sorted({str(r["values"].get(key)) for r in done})
            if _categorical(done, key)
            else None
        )
        items, marks = [], []
        for r in done:
            value = r["values"].get(key)
            x = (choices.index(value) if value in choices else choices.index(str(value))) if choices else float(value)
            marker, color = STYLE.get(r["state"], ("o", "k"))
            size = 160 if r["trial"] == best else 40  # points squared
            ax.scatter(
                [x],
                [r["best"]],
                marker="*" if r["trial"] == best else marker,
                s=size,
                color="gold" if r["trial"] == best else color,
                edgecolors="k",
                linewidths=0.5,
                zorder=3,
            )
            items.append(((x, r["best"]), f"t{r['trial']:03d}"))
            marks.append(_radius(size))
        if choices:
            ax.set_xticks(range(len(choices)), [str(c) for c in choices])
            ax.set_xlim(-0.5, len(choices) - 0.5)
        elif isinstance(dist, dict):  # the whole range searched, so that where the trials fell in it shows
            kind = next(k for k in dist if k != "gain")  # an ultralytics key: {uniform: [a, b], gain: 0.3}
            low, high = dist[kind]
            if kind == "log_uniform":
                ax.set_xscale("log")
                ax.set_xlim(low / 1.25, high * 1.25)
            else:
                pad = (high - low) * 0.05 or 0.5
                ax.set_xlim(low - pad, high + pad)
        ax.set_xlabel(key)
        ax.set_ylabel(f"best {metric}")
        ax.set_title(f"best {metric} against {key}", fontsize=10)
        ax.grid(True, alpha=0.3)
        _margins(ax)
        labelled.append((ax, items, marks))
    ax = flat[len(keys)]
    for r in rows:
        epochs = sorted((int(e), v) for e, v in r["metric_by_epoch"].items())
        if not epochs:
            continue
        marker, color = STYLE.get(r["state"], ("o", "k"))
        is_best = r["trial"] == best
        ax.plot(
            [e for e, _ in epochs],
            [v for _, v in epochs],
            marker=".",
            lw=2.2 if is_best else 1,
            ls="--" if r["state"] == "stopped_early" else "-",
            color="goldenrod" if is_best else color,
            alpha=1 if is_best else 0.7,
        )
    rungs = found.get("early_stop_epochs") or []
    for rung in rungs:
        ax.axvline(rung, color="tab:red", ls=":", lw=1)
    from matplotlib.lines import Line2D  # noqa: PLC0415

    states = {r["state"] for r in rows if r["metric_by_epoch"]}
    kinds = [("succeeded", "ran to the end", "-"), ("stopped_early", "stopped early", "--"),
             ("running", "running", "-"), ("failed", "failed", "-"), ("stopped", "stopped", "-")]  # fmt: skip
    legend = [Line2D([], [], color=STYLE[state][1], ls=ls, label=text) for state, text, ls in kinds if state in states]
    if best:
        legend.append(Line2D([], [], color="goldenrod", lw=2.2, label=f"best (t{best:03d})"))
    if rungs:
        at = ", ".join(str(r) for r in rungs)
        legend.append(Line2D([], [], color="tab:red", ls=":", label=f"early stop at epoch {at}"))
    ax.legend(handles=legend, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0)
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} per epoch, one line per trial", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.xaxis.get_major_locator().set_params(integer=True)
    fig.suptitle(
        f"sweep {found['name']}: {len(rows)} trial(s), {found['goal']} {metric}, {_money(found['cost'])}", fontsize=11
    )
    fig.tight_layout()
    fig.canvas.draw()  # the final layout first: labels are placed in screen space, then nothing moves
    fig.set_layout_engine("none")
    for ax, items, marks in labelled:
        place_labels(fig, ax, items, marks)
    return fig


def shown_keys(found: dict[str, Any]) -> list[str]:
    """The swept keys worth a panel or a column: all of them up to 6, else (an ultralytics sweep's 22) those whose
    value differs between the trials started so far."""
    keys, rows = found["space"], found["trials"]
    if len(keys) <= 6 or len(rows) < 2:
        return list(keys)
    return [k for k in keys if len({repr(r["values"].get(k)) for r in rows}) > 1]


def _radius(size: float) -> float:
    """A scatter marker's radius in points, from its area `s` (points squared), its edge and a point of air."""
    return math.sqrt(size) / 2 + 1


def _money(usd: float) -> str:
    return f"${usd:.2f}" if usd == 0 or usd >= 0.01 else f"${usd:.4f}"


def _categorical(rows: list[dict[str, Any]], key: str) -> bool:
    return any(isinstance(r["values"].get(key), (str, bool)) for r in rows)


def _margins(ax) -> None:  # type: ignore[no-untyped-def]
    """Room above and below the points for their labels."""
    low, high = ax.get_ylim()
    pad = (high - low) * 0.15 or 0.05
    ax.set_ylim(low - pad, high + pad)
