from __future__ import annotations

from launcher.estimate.model import Row
from launcher.estimate.plot import label, pareto_front, plot_rows

from .fakes import offer


def _row(name: str, cost: float, total: float, error: str = "") -> Row:
    return Row(offer(name), total_s=total, cost=cost, error=error)


def test_pareto_front_drops_dominated_and_failed_rows() -> None:
    rows = [
        _row("a", 1.0, 100),
        _row("b", 2.0, 50),
        _row("c", 3.0, 100),
        _row("d", 1.0, 200),
        _row("e", 0.1, 1, "broken"),
    ]
    assert [r.offer.instance for r in pareto_front(rows)] == ["b", "a"]


def test_plot_writes_a_png_with_every_option(tmp_path) -> None:
    rows = [_row("a", 1.0, 100), _row("b", 2.0, 50), _row("c", 3.0, 100)]
    out = plot_rows(rows, tmp_path / "p.png")
    assert out.stat().st_size > 1000
    assert label(rows[0]) == "fake: a r1"


def test_labels_of_a_crowded_plot_do_not_overlap(tmp_path) -> None:
    """Many options at nearly the same cost and time (issue 23): every label's box is clear of every other."""
    from launcher.estimate.plot import draw

    rows = [_row(f"instance-type-{i}.xlarge", 1.0 + 0.01 * (i % 4), 3600 + 30 * (i // 4)) for i in range(16)]
    rows += [_row("far", 5.0, 7200)]
    fig = draw(rows)
    renderer = fig.canvas.get_renderer()
    labels = [t for t in fig.axes[0].texts if t.get_text().startswith("fake:")]
    assert len(labels) == len(rows)
    boxes = [_box(t, renderer) for t in labels]
    clashes = [
        (labels[i].get_text(), labels[j].get_text())
        for i in range(len(boxes))
        for j in range(i + 1, len(boxes))
        if boxes[i].overlaps(boxes[j])
    ]
    assert clashes == []
    assert all(fig.axes[0].bbox.contains(b.x0, b.y0) and fig.axes[0].bbox.contains(b.x1, b.y1) for b in boxes)
    fig.savefig(tmp_path / "crowded.png")  # what is saved is what was checked: the layout no longer moves
    after = [_box(t, fig.canvas.get_renderer()) for t in labels]
    assert [tuple(b.bounds) for b in after] == [tuple(b.bounds) for b in boxes]


def _box(annotation, renderer):  # type: ignore[no-untyped-def]
    from matplotlib.text import Text

    annotation.update_positions(renderer)
    return Text.get_window_extent(annotation, renderer)


def test_the_axes_fit_the_options_and_far_limits_do_not_stretch_them(tmp_path) -> None:
    """Issue 34: limits of $300 x 4 h stretched the axes, every point sat in one corner."""
    from launcher.estimate.plot import draw

    rows = [_row("a", 1.9, 300), _row("b", 1.45, 480), _row("c", 2.6, 360)]
    fig = draw(rows, max_cost=300, max_runtime_s=4 * 3600)
    ax = fig.axes[0]
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    assert x0 <= 300 / 3600 and x1 >= 480 / 3600 and x1 < 0.2, (x0, x1)  # hours: the points, a margin, no 4 h
    assert y0 <= 1.45 and y1 >= 2.6 and y1 < 3.5, (y0, y1)
    assert ax.get_xscale() == "linear" and ax.get_yscale() == "linear"
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "max_cost $300 (far off the chart)" in legend and "max_runtime 4 h (far off the chart)" in legend
    fig.savefig(tmp_path / "fit.png")


def test_a_near_limit_is_a_line_and_decades_get_a_log_axis() -> None:
    from launcher.estimate.plot import draw

    rows = [_row("a", 0.5, 600), _row("b", 40.0, 3600 * 3), _row("c", 4.0, 3600)]
    fig = draw(rows, max_cost=50.0)
    ax = fig.axes[0]
    assert ax.get_yscale() == "log" and ax.get_xscale() == "log"  # $0.5 to $40, 10 min to 3 h: decades
    assert ax.get_ylim()[1] >= 50.0  # the limit is near: drawn as a line inside the chart
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "max_cost $50" in legend
    assert "log scale" in ax.get_ylabel()
    assert len([t for t in ax.texts if t.get_text().startswith("fake:")]) == 3  # one label per option given


def test_a_free_option_is_on_the_chart(tmp_path) -> None:
    """Seen in README's ResNet-50 estimate (issue 34 item 5): the Slurm row at $0 lay below the y axis, its Pareto
    front line running off the bottom edge to a point nobody could see."""
    from launcher.estimate.plot import draw

    rows = [_row("slurm", 0.0, 7560), _row("azure", 22.72, 7500), _row("aws", 44.48, 7080), _row("gcp", 50.94, 7140)]
    fig = draw(rows, max_cost=300, max_runtime_s=4 * 3600)
    ax = fig.axes[0]
    y0, y1 = ax.get_ylim()
    assert y0 < 0 < 50.94 < y1 < 60 and ax.get_yscale() == "linear", (y0, y1)
    cheap = draw([_row("slurm", 0.0, 600), _row("aws", 0.5, 600), _row("gcp", 40.0, 3600)])
    assert cheap.axes[0].get_ylim()[0] < 0 and cheap.axes[0].get_yscale() == "linear"  # decades, but $0 shows
    fig.savefig(tmp_path / "free.png")
