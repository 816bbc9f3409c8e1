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
