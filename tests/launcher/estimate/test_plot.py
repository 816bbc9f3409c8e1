from __future__ import annotations

from launcher.estimate.model import Row
from launcher.estimate.plot import label, pareto_front, plot_rows

from .fakes import offer


def _row(name: str, cost: float, total: float, error: str = "") -> Row:
    return Row(offer(name), total_s=total, cost=cost, error=error)


def test_pareto_front_drops_dominated_and_failed_rows() -> None:
    rows = [_row("a", 1.0, 100), _row("b", 2.0, 50), _row("c", 3.0, 100), _row("d", 1.0, 200), _row("e", 0.1, 1, "broken")]
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
    clashes = [(labels[i].get_text(), labels[j].get_text()) for i in range(len(boxes)) for j in range(i + 1, len(boxes))
               if boxes[i].overlaps(boxes[j])]
    assert clashes == []
    assert all(fig.axes[0].bbox.contains(b.x0, b.y0) and fig.axes[0].bbox.contains(b.x1, b.y1) for b in boxes)
    fig.savefig(tmp_path / "crowded.png")  # what is saved is what was checked: the layout no longer moves
    after = [_box(t, fig.canvas.get_renderer()) for t in labels]
    assert [tuple(b.bounds) for b in after] == [tuple(b.bounds) for b in boxes]


def _box(annotation, renderer):  # type: ignore[no-untyped-def]
    from matplotlib.text import Text

    annotation.update_positions(renderer)
    return Text.get_window_extent(annotation, renderer)
