from __future__ import annotations

import pytest

from launcher.estimate.model import (
    Dataset,
    Row,
    dataset_size,
    estimate,
    estimate_offer,
    interruption_seconds,
    mark,
    scaling_efficiency,
    staging_seconds,
    training_seconds,
    validation_seconds,
)  # fmt: skip
from launcher.estimate.throughput import Figure
from launcher.state.jobs import JobRegistry, Throughput

from .fakes import FakeBackend, offer, spec

DATA = Dataset(train_images=10_000, val_images=1_000, bytes=2_000_000_000, local=True)
FIG = Figure(images_per_s=100.0, source="table", detail="test", uncertainty=0.2)


def test_scaling_efficiency() -> None:
    assert scaling_efficiency(1, 1) == 1.0
    assert scaling_efficiency(8, 1) == pytest.approx(0.967**3)
    assert scaling_efficiency(8, 4) == pytest.approx(0.967**3 * 0.98**2)
    assert scaling_efficiency(0, 1) == 1.0  # CPU: one process


def test_training_time_counts_fraction_epochs_and_gpus() -> None:
    s = spec(epochs=3, fraction=0.5)
    assert training_seconds(s, DATA, 100.0, offer(gpus=1)) == pytest.approx(10_000 * 0.5 * 3 / 100)
    two_nodes = offer(gpus=4, nodes=2)
    expected = 10_000 * 0.5 * 3 / (100 * 8 * scaling_efficiency(4, 2))
    assert training_seconds(s, DATA, 100.0, two_nodes) == pytest.approx(expected)


def test_validation_runs_forward_only_on_every_epoch() -> None:
    assert validation_seconds(spec(epochs=2), DATA, 100.0, offer()) == pytest.approx(1_000 * 2 / 300)


def test_staging_moves_local_data_to_the_cloud_only() -> None:
    assert staging_seconds(DATA, offer(), {"staging_mb_per_s": 200}) == pytest.approx(10.0)
    assert staging_seconds(DATA, offer(staging_mb_per_s=100), {"staging_mb_per_s": 200}) == pytest.approx(20.0)
    local = offer()
    local = type(local)("local", "here", None, 0, 1, 0.1)
    assert staging_seconds(DATA, local, {}) == 0.0


def test_spot_interruption_overhead() -> None:
    s = spec(epochs=10)
    assert interruption_seconds(s, 36_000.0, 300.0, offer(spot=False), {}) == 0.0
    # 10 h of work, 0.1 interruptions/h -> 1 interruption: a restart (300 s) + half an epoch (1800 s)
    lost = interruption_seconds(s, 36_000.0, 300.0, offer(spot=True), {"spot_interruptions_per_hour": 0.1})
    assert lost == pytest.approx(1 * (300 + 1800))


def test_row_total_and_cost_are_the_sum_of_terms() -> None:
    s = spec(epochs=2)
    o = offer(price=3.0, nodes=2, gpus=1, startup_s=120)
    row = estimate_offer(s, o, FIG, DATA, {"staging_mb_per_s": 100, "date": "2026-01-01"})
    assert row.startup_s == 120
    assert row.staging_s == pytest.approx(20.0)
    assert row.total_s == pytest.approx(row.startup_s + row.staging_s + row.training_s + row.validation_s)
    assert row.cost == pytest.approx(row.total_s / 3600 * 3.0 * 2 + row.storage_cost)
    assert row.storage_cost > 0
    assert row.time_range[0] < row.total_s < row.time_range[1]
    assert row.cost_range[0] < row.cost < row.cost_range[1]
    assert row.catalog_date == "2026-01-01"


def test_measured_overheads_replace_the_default_startup_on_local() -> None:
    fig = Figure(100.0, "measured", "p", 0.1, overhead_s=7.5, epoch_overhead_s=1.0)
    local = type(offer())("local", "here", None, 0, 1, 0.1, startup_s=10, details={"startup_from_profile": True})
    row = estimate_offer(spec(epochs=4), local, fig, DATA, {})
    assert row.startup_s == 7.5
    assert row.training_s == pytest.approx(10_000 * 4 / 100 + 4 * 1.0)
    assert estimate_offer(spec(epochs=4), offer(startup_s=99), fig, DATA, {}).startup_s == 99


def test_dataset_size_of_builtin_and_folder(tmp_path) -> None:
    assert dataset_size(spec(data="digits")).train_images == 1437
    for split, n in (("train", 3), ("val", 2)):
        folder = tmp_path / split / "cat"
        folder.mkdir(parents=True)
        for i in range(n):
            (folder / f"{i}.png").write_bytes(b"x" * 10)
        (folder / "notes.txt").write_text("not an image")
    size = dataset_size(spec(data=str(tmp_path)))
    assert (size.train_images, size.val_images, size.bytes, size.local) == (3, 2, 50, True)
    assert dataset_size(spec(data="s3://bucket/data")) is None
    remote = dataset_size(spec(data="s3://bucket/data"), train_images=500, data_bytes=4_000_000_000)
    assert (remote.train_images, remote.val_images, remote.bytes, remote.local) == (500, 50, 4_000_000_000, False)
    assert staging_seconds(remote, offer(), {"staging_mb_per_s": 400}) == pytest.approx(10.0)


def test_estimate_rows_per_offer_and_error_rows(tmp_path) -> None:
    good = FakeBackend([offer("a", price=1.0), offer("b", price=4.0, gpus=4)])
    broken = FakeBackend(error="no catalog for this region")
    rows = estimate(spec(), [good, broken], jobs=JobRegistry(tmp_path / "j.db"))
    assert [r.offer.instance for r in rows] == ["a", "b", "-"]
    assert rows[2].error == "no catalog for this region" and not rows[2].ok
    assert rows[0].source == "table"
    assert rows[1].training_s < rows[0].training_s


def test_estimate_uses_a_recorded_profile(tmp_path) -> None:
    jobs = JobRegistry(tmp_path / "j.db")
    jobs.add_throughput(Throughput("resnet50", 224, 32, "amp", "A10G", 123.0, "profile"))
    (row,) = estimate(spec(), [FakeBackend([offer()])], jobs=jobs)
    assert (row.source, row.images_per_s) == ("measured", 123.0)


def test_missing_throughput_is_an_error_row(tmp_path) -> None:
    jobs = JobRegistry(tmp_path / "j.db")
    (row,) = estimate(spec(model="resnet18"), [FakeBackend([offer(gpu_type="X9")])], jobs=jobs)
    assert "no throughput figure for resnet18 on X9" in row.error
    cloud_cpu = offer("fake.cpu", gpus=0, gpu_type=None)
    (row,) = estimate(spec(resources={"gpus": 0}), [FakeBackend([cloud_cpu])], jobs=jobs)
    assert "fake.cpu CPU" in row.error  # this machine's CPU profile says nothing about a cloud vCPU


def _row(name: str, cost: float, total: float) -> Row:
    return Row(offer(name), total_s=total, cost=cost)


def test_marks_cheapest_fastest_and_best_within_budget() -> None:
    rows = [_row("slow-cheap", 1.0, 1000), _row("mid", 2.0, 500), _row("fast-dear", 9.0, 100)]
    marked = {r.offer.instance: r for r in mark(rows, spec(limits={"max_cost": 5.0}))}
    assert marked["slow-cheap"].marks == ("cheapest",)
    assert marked["fast-dear"].marks == ("fastest",) and not marked["fast-dear"].within_limits
    assert marked["mid"].marks == ("best",)  # the fastest within the budget


def test_best_with_a_deadline_is_the_cheapest_that_meets_it() -> None:
    rows = [_row("slow-cheap", 1.0, 1000), _row("mid", 2.0, 500), _row("fast-dear", 9.0, 100)]
    marked = {r.offer.instance: r for r in mark(rows, spec(limits={"max_runtime": 600}))}
    assert "best" in marked["mid"].marks
    assert not any("best" in r.marks for r in mark(rows, spec()))


def test_a_tie_is_marked_as_one_never_given_to_one_row_at_random() -> None:
    rows = [_row("a", 2.0, 500), _row("b", 2.0, 500), _row("dear", 9.0, 500.5)]  # 0.1% apart: the same to a user
    marked = {r.offer.instance: r.marks for r in mark(rows, spec())}
    assert marked == {"a": ("cheapest (tie)", "fastest (tie)"), "b": ("cheapest (tie)", "fastest (tie)"), "dear": ()}


def test_equally_fast_options_make_the_cheaper_one_the_fastest() -> None:
    rows = [_row("g5.2xlarge", 3.0, 500), _row("g5.xlarge", 2.0, 500), _row("slow", 1.0, 900)]
    marked = {r.offer.instance: r.marks for r in mark(rows, spec())}
    assert marked == {"g5.2xlarge": (), "g5.xlarge": ("fastest",), "slow": ("cheapest",)}
