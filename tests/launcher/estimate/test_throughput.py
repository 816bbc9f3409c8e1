from __future__ import annotations

import pytest

from launcher.estimate.throughput import SOURCES, canonical_device, gpu_table, model_gflops, throughput
from launcher.state.jobs import JobRegistry, Throughput

from .fakes import spec


@pytest.fixture
def jobs(tmp_path) -> JobRegistry:
    return JobRegistry(tmp_path / "jobs.db")


def _t(
    source: str, ips: float, imgsz: int = 224, batch: int = 32, device: str = "A10G", **details: object
) -> Throughput:
    return Throughput("resnet50", imgsz, batch, "amp", device, ips, source, details=details)


@pytest.mark.parametrize(
    ("name", "want"),
    [("NVIDIA A10G", "A10G"), ("NVIDIA A10", "A10"), ("Tesla T4", "T4"), ("NVIDIA L4", "L4"),
     ("NVIDIA A100-SXM4-80GB", "A100-80GB"), ("NVIDIA A100-SXM4-40GB", "A100"), ("NVIDIA H100 80GB HBM3", "H100"),
     ("Tesla V100-SXM2-16GB", "V100"), ("", "cpu"), ("cpu", "cpu"), ("Some New GPU", "Some New GPU")],
)  # fmt: skip
def test_canonical_device(name: str, want: str) -> None:
    assert canonical_device(name) == want


def test_model_gflops_scales_with_image_area() -> None:
    assert model_gflops("resnet50", 224) == pytest.approx(4.089)
    assert model_gflops("resnet50", 112) == pytest.approx(4.089 / 4)
    # inception_v3's metadata is measured at 299 px
    assert model_gflops("inception_v3", 299) == pytest.approx(5.713)
    assert model_gflops("no_such_model", 224) is None


def test_every_gpu_figure_cites_a_known_source() -> None:
    table = gpu_table()
    for name, entry in table["gpus"].items():
        assert entry["cite"], name
        assert all(c in table["sources"] for c in entry["cite"]), name
        assert entry["amp"] > entry["fp32"] > 0, name


def test_source_order_is_measured_then_past_runs() -> None:
    assert [label for _, label in SOURCES] == ["measured", "past runs"]


def test_table_is_scaled_by_model_flops(jobs: JobRegistry) -> None:
    fig = throughput(spec(model="resnet18"), "A10G", jobs)
    assert fig is not None and fig.source == "table"
    assert fig.images_per_s == pytest.approx(638 * 4.089 / 1.814)
    fp32 = throughput(spec(model="resnet50", amp=False), "A10G", jobs)
    assert fp32 is not None and fp32.images_per_s == pytest.approx(349)


def test_no_table_figure_for_a_cloud_cpu(jobs: JobRegistry) -> None:
    assert throughput(spec(), "ml.m5.xlarge CPU", jobs) is None  # another CPU than the one measured


def test_this_machines_cpu_gets_the_rough_per_core_figure_scaled_by_cores_and_flops(jobs: JobRegistry) -> None:
    """Issue 34 item 4: the CPU quickstart could not be estimated before `launch profile`."""
    cpu = gpu_table()["cpu"]
    assert {"amp", "fp32", "cpu", "date", "how", "model", "imgsz"} <= set(cpu)  # the figure says how, where, when
    same = throughput(spec(model=cpu["model"], imgsz=cpu["imgsz"]), "cpu", jobs, cpus=4)
    assert same is not None and same.source == "rough" and same.images_per_s == pytest.approx(cpu["amp"] * 4)
    assert same.uncertainty == gpu_table()["uncertainty"]["rough"] and cpu["date"] in same.detail
    bigger = throughput(spec(model="resnet50", imgsz=32, amp=False), "cpu", jobs, cpus=2)
    ratio = model_gflops(cpu["model"], cpu["imgsz"]) / model_gflops("resnet50", 32)
    assert bigger is not None and bigger.images_per_s == pytest.approx(cpu["fp32"] * 2 * ratio)
    assert (
        throughput(spec(engine="ultralytics", model="yolo11n.yaml", data="s3://b/shapes"), "cpu", jobs, cpus=2) is None
    )  # not its figure
    jobs.add_throughput(Throughput(cpu["model"], cpu["imgsz"], 32, "amp", "cpu", 99.0, "profile"))
    measured = throughput(spec(model=cpu["model"], imgsz=cpu["imgsz"]), "cpu", jobs, cpus=4)
    assert measured is not None and (measured.source, measured.images_per_s) == ("measured", 99.0)


def test_past_runs_beat_table_and_profile_beats_past_runs(jobs: JobRegistry) -> None:
    s = spec()
    jobs.add_throughput(_t("job", 500.0, overhead_s=12.0))
    fig = throughput(s, "NVIDIA A10G", jobs)
    assert (fig.source, fig.images_per_s, fig.overhead_s) == ("past runs", 500.0, 12.0)
    jobs.add_throughput(_t("profile", 450.0, overhead_s=7.0, epoch_overhead_s=0.5))
    fig = throughput(s, "A10G", jobs)
    assert (fig.source, fig.images_per_s, fig.overhead_s, fig.epoch_overhead_s) == ("measured", 450.0, 7.0, 0.5)
    assert fig.uncertainty < gpu_table()["uncertainty"]["table"]


def test_exact_match_beats_scaled_record_of_better_source(jobs: JobRegistry) -> None:
    jobs.add_throughput(_t("profile", 1000.0, imgsz=112))
    jobs.add_throughput(_t("job", 300.0))
    assert throughput(spec(), "A10G", jobs).source == "past runs"


def test_other_image_size_is_scaled_by_flops(jobs: JobRegistry) -> None:
    jobs.add_throughput(_t("profile", 1000.0, imgsz=112))
    fig = throughput(spec(imgsz=224), "A10G", jobs)
    assert fig.source == "measured" and "scaled" in fig.detail
    assert fig.images_per_s == pytest.approx(250.0)


def test_records_of_other_precision_or_device_are_ignored(jobs: JobRegistry) -> None:
    jobs.add_throughput(Throughput("resnet50", 224, 32, "fp32", "A10G", 999.0, "profile"))
    jobs.add_throughput(_t("profile", 999.0, device="T4"))
    assert throughput(spec(), "A10G", jobs).source == "table"


def test_a_cpu_run_measures_an_amp_job_even_in_fp32(jobs: JobRegistry) -> None:
    """amp: true trains in fp32 on a CPU without native bf16, and records say fp32: still the right figure."""
    jobs.add_throughput(Throughput("resnet50", 224, 32, "fp32", "cpu", 41.0, "job"))
    figure = throughput(spec(), "cpu", jobs)
    assert figure is not None and figure.images_per_s == pytest.approx(41.0)


def test_shipped_model_table_matches_installed_torchvision() -> None:
    pytest.importorskip("torchvision")
    from launcher.estimate.throughput import _torchvision_entry, model_table

    for name in ("resnet18", "efficientnet_b3", "vit_b_16"):
        entry = _torchvision_entry(name)
        shipped = model_table()["models"][name]
        assert (entry["gflops"], entry["at_px"]) == (shipped["gflops"], shipped["at_px"]), name
    assert _torchvision_entry("no_such_model") is None


def test_autobatch_matches_whatever_batch_was_chosen(jobs: JobRegistry) -> None:
    jobs.add_throughput(_t("profile", 700.0, batch=96))
    fig = throughput(spec(batch=-1), "A10G", jobs)
    assert (fig.source, fig.images_per_s) == ("measured", 700.0) and "scaled" not in fig.detail
