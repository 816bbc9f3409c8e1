from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import pytest

from launcher.errors import LauncherError
from launcher.estimate.model import estimate
from launcher.estimate.profile import profile, profile_synthetic
from launcher.estimate.throughput import gpu_table
from launcher.spec import JobSpec
from launcher.state.jobs import JobRegistry

from .fakes import spec


class FakeTrainerRun:
    """Stands in for the entrypoint subprocess: writes what the trainer writes, returns timed output lines."""

    def __init__(self, code_lines: list[tuple[float, str]] | None = None) -> None:
        self.cmd: list[str] = []
        self.env: dict[str, str] = {}
        self.lines = code_lines or [
            (4.0, "[launcher] local: node 0/1, 1 process(es) per node"),
            (20.0, "[train] epoch 1/3: train_loss 2.1 val_loss 1.9 top1 0.4 top5 0.9"),
            (30.0, "[train] epoch 2/3: train_loss 1.1 val_loss 1.0 top1 0.7 top5 0.99"),
            (42.0, "[train] epoch 3/3: train_loss 0.9 val_loss 0.8 top1 0.8 top5 0.99"),
            (45.0, ""),
        ]

    def __call__(self, cmd: Sequence[str], env: dict[str, str], timeout: float) -> list[tuple[float, str]]:
        self.cmd, self.env = list(cmd), env
        save = Path(cmd[cmd.index("--save-dir") + 1])
        save.mkdir(parents=True, exist_ok=True)
        (save / "results.csv").write_text("epoch,time_s,images_per_s\n1,9.0,16.7\n2,6.0,25.0\n3,8.0,18.75\n")
        results = {"images_per_second": 90.0, "images_per_second_per_process": 90.0, "world_size": 1, "device": "cpu",
                   "device_name": "x86_64", "precision": "bf16", "batch": 32, "imgsz": 224, "model": "resnet50",
                   "train_images": 150, "val_images": 360, "epochs_run": 3, "wall_time_s": 40.0}  # fmt: skip
        (save / "results.json").write_text(json.dumps(results))
        return self.lines


def test_profile_runs_the_trainer_and_records_overheads(tmp_path) -> None:
    jobs = JobRegistry(tmp_path / "j.db")
    run = FakeTrainerRun()
    record = profile(spec(resources={"gpus": 0}), steps=15, jobs=jobs, synthetic=False, run=run)
    assert run.cmd[1:3] == ["-m", "launcher.runtime.entrypoint"] and "--" in run.cmd
    train_args = run.cmd[run.cmd.index("train") + 1 :]
    assert "epochs=3" in train_args and "model=resnet50" in train_args and "epochs=10" not in train_args
    assert f"fraction={15 / 3 * 32 / 1437:.6g}" in train_args
    # the steady epochs together: (150 + 150) images in (6 + 8) s; the warm-up epoch does not count
    assert (record.images_per_s, record.device, record.precision, record.source) == (
        pytest.approx(300 / 14),
        "cpu",
        "amp",
        "profile",
    )
    # a steady epoch = 11 s between epoch lines on average: 7 s training + modelled validation (360 / (3 x 300 / 14)) + overhead
    assert record.details["epoch_overhead_s"] == pytest.approx(11.0 - 7.0 - 360 / (3 * 300 / 14), abs=1e-3)
    assert record.details["overhead_s"] == pytest.approx(45.0 - 3 * 11.0)
    (stored,) = jobs.throughputs(device="cpu")
    assert stored.images_per_s == pytest.approx(300 / 14)


def test_local_estimate_reproduces_the_profiled_run(tmp_path) -> None:
    """Estimating the profiled run itself must give back its wall time."""
    jobs = JobRegistry(tmp_path / "j.db")
    s = spec(resources={"gpus": 0}, epochs=3, fraction=150 / 1437)
    profile(s, steps=10, jobs=jobs, synthetic=False, run=FakeTrainerRun())
    from launcher.estimate.local import LocalCosts, local_offers

    class Local:
        name = "local"

        def offers(self, spec):  # type: ignore[no-untyped-def]
            return local_offers(spec, LocalCosts(), gpus=[])

    (row,) = estimate(s, [Local()], jobs=jobs)  # type: ignore[list-item]
    assert row.source == "measured"
    assert row.total_s == pytest.approx(45.0, rel=0.01)


def test_a_local_checkpoint_store_is_profiled_into_scratch(tmp_path) -> None:
    run = FakeTrainerRun()
    raw = spec(resources={"gpus": 0}).model_dump()
    s = JobSpec.model_validate({**raw, "checkpoint": {"uri": str(tmp_path / "runs")}})
    profile(s, steps=4, jobs=JobRegistry(tmp_path / "j.db"), synthetic=False, run=run)
    store = run.cmd[run.cmd.index("--checkpoint-uri") + 1]
    assert store.endswith("store") and not store.startswith(str(tmp_path))


def test_the_profile_runs_with_the_specs_environment(tmp_path, monkeypatch) -> None:
    """`launch run` gives the trainer the spec's env: OMP_NUM_THREADS there sets the run's threads, so the profile's too."""
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    run = FakeTrainerRun()
    raw = spec(resources={"gpus": 0}).model_dump()
    s = JobSpec.model_validate({**raw, "env": {"OMP_NUM_THREADS": "1", "MY_FLAG": "x"}})
    profile(s, steps=4, jobs=JobRegistry(tmp_path / "j.db"), synthetic=False, run=run)
    assert run.env["OMP_NUM_THREADS"] == "1" and run.env["MY_FLAG"] == "x"
    assert run.env["LAUNCHER_SAVE_DIR"] == run.cmd[run.cmd.index("--save-dir") + 1]


def test_a_failing_trainer_is_one_clear_error(tmp_path) -> None:
    def run(cmd, env, timeout):  # type: ignore[no-untyped-def]
        raise LauncherError("The profiling run failed (exit 1): boom")

    with pytest.raises(LauncherError, match="boom"):
        profile(spec(resources={"gpus": 0}), steps=4, jobs=JobRegistry(tmp_path / "j.db"), synthetic=False, run=run)


def test_remote_data_cannot_be_profiled(tmp_path) -> None:
    with pytest.raises(LauncherError, match="unknown"):
        profile(
            spec(data="s3://b/d"), steps=4, jobs=JobRegistry(tmp_path / "j.db"), synthetic=False, run=FakeTrainerRun()
        )


def test_synthetic_profile_times_real_steps(tmp_path) -> None:
    pytest.importorskip("torchvision")
    s = spec(model="mobilenet_v3_small", imgsz=32, batch=4, resources={"gpus": 0})
    record = profile_synthetic(s, steps=2, warmup=1)
    assert record.images_per_s > 0 and record.details["method"] == "synthetic"
    assert (record.model, record.imgsz, record.batch) == ("mobilenet_v3_small", 32, 4)


def test_synthetic_profile_uses_the_runs_thread_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("torchvision")
    from launcher.runtime.cpu import cpu_threads, usable_cpus

    if torch.cuda.is_available():
        pytest.skip("the thread policy is for CPU runs")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(3)
        record = profile_synthetic(
            spec(model="mobilenet_v3_small", imgsz=32, batch=4, resources={"gpus": 0}), steps=2, warmup=1
        )
        assert record.details["threads"] == torch.get_num_threads() == 1  # OMP_NUM_THREADS wins, as in the trainer
        monkeypatch.delenv("OMP_NUM_THREADS")
        record = profile_synthetic(
            spec(model="mobilenet_v3_small", imgsz=32, batch=4, resources={"gpus": 0}), steps=2, warmup=1
        )
        assert record.details["threads"] == torch.get_num_threads() == cpu_threads({}, usable_cpus(), 1)
    finally:
        torch.set_num_threads(before)


def _py(code: str) -> list[str]:
    import sys

    return [sys.executable, "-c", code]


def test_run_times_each_output_line_and_the_exit() -> None:
    from launcher.estimate.profile import _run

    lines = _run(_py("import time; print('a', flush=True); time.sleep(0.3); print('b')"), {}, timeout=60)
    assert [text for _, text in lines] == ["a", "b", ""]
    assert lines[0][0] <= lines[1][0] <= lines[2][0] and lines[1][0] - lines[0][0] >= 0.25


def test_run_stops_a_job_stuck_after_the_done_line() -> None:
    import time

    from launcher.estimate.profile import _run

    start = time.monotonic()
    lines = _run(_py("import time; print('[train] done: ok', flush=True); time.sleep(60)"), {}, timeout=120, grace=0.5)
    assert time.monotonic() - start < 30
    assert lines[-1] == (lines[0][0], "")  # the done line's time stands for the exit


def test_run_reports_a_failure_with_its_last_line() -> None:
    from launcher.estimate.profile import _run

    with pytest.raises(LauncherError, match=r"exit 3\): bad input"):
        _run(_py("import sys; print('bad input'); sys.exit(3)"), {}, timeout=60)


def test_the_cli_and_the_api_profile_the_same_number_of_steps() -> None:
    from launcher.cli.estimate import profile_cmd
    from launcher.estimate.profile import PROFILE_STEPS

    (steps,) = [p for p in profile_cmd.params if p.name == "steps"]
    assert steps.default == PROFILE_STEPS


# ---------------------------------------------------------------- the ultralytics engine

YOLO_CSV_HEAD = ("epoch,time,train/box_loss,train/cls_loss,train/dfl_loss,metrics/precision(B),metrics/recall(B),"
                 "metrics/mAP50(B),metrics/mAP50-95(B),val/box_loss,val/cls_loss,val/dfl_loss,lr/pg0,lr/pg1,lr/pg2")  # fmt: skip


def _engine_line(epoch: int, epoch_s: float, rate: float) -> str:
    return (f"[train] epoch {epoch}/3: train_loss 5.4 val_loss 13.1 lr 0.000625 time_s {epoch_s:.2f} "
            f"images_per_s {rate:.2f} mAP50(B) 0.0000 mAP50-95(B) 0.0000")  # fmt: skip


CPU_BANNER = "Ultralytics 8.4.190 🚀 Python-3.11.7 torch-2.14.1 CPU (AMD EPYC)"
GPU_BANNER = ["Ultralytics 8.4.190 🚀 Python-3.11.7 torch-2.14.1 CUDA:0 (NVIDIA A10G, 22592MiB)",
              "                                               CUDA:1 (NVIDIA A10G, 22592MiB)"]  # fmt: skip


class FakeEngineRun:
    """Stands in for the entrypoint running the ultralytics engine: Ultralytics' results.csv (`time`: seconds
    since training started, validation and checkpoint included) and the engine's epoch lines (images/s of the
    training loop alone)."""

    def __init__(self, banner: Sequence[str] = (CPU_BANNER,), rates: Sequence[float] = (20.0, 40.0, 32.0)) -> None:
        self.cmd: list[str] = []
        self.banner, self.rates = list(banner), list(rates)

    def __call__(self, cmd: Sequence[str], env: dict[str, str], timeout: float) -> list[tuple[float, str]]:
        self.cmd = list(cmd)
        save = Path(cmd[cmd.index("--save-dir") + 1])
        save.mkdir(parents=True, exist_ok=True)
        rows = "".join(
            f"{e},{t},1.2,3.4,1.1,0,0,0,0,2.1,6.5,1.4,0.0006,0.0006,0.0006\n"
            for e, t in ((1, 9.0), (2, 14.0), (3, 20.0))
        )
        (save / "results.csv").write_text(f"{YOLO_CSV_HEAD}\n{rows}")
        (save / "results.json").write_text(
            json.dumps({"epoch": 3, "epochs": 3, "finished": True})
        )  # what the engine writes
        epochs = [(14.0, _engine_line(1, 9.0, self.rates[0])), (19.0, _engine_line(2, 5.0, self.rates[1])),
                  (25.0, _engine_line(3, 6.0, self.rates[2]))]  # fmt: skip
        return [
            (0.2, "[launcher] local: node 0/1, 1 process(es) per node"),
            *((3.0, b) for b in self.banner),
            *epochs,
            (30.0, ""),
        ]


def _yolo_spec(tmp_path: Path, train_images: int = 480, val_images: int = 60, **keys: object) -> JobSpec:
    """An ultralytics-engine spec on a YOLO folder of empty image files (the profile only counts them)."""
    for split, count in (("train", train_images), ("val", val_images)):
        folder = tmp_path / "yolo" / "images" / split
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            (folder / f"{i:04d}.png").touch()
    resources = keys.pop("resources", {"gpus": 0})
    train = {"engine": "ultralytics", "model": "yolo11n.yaml", "data": str(tmp_path / "yolo"), "epochs": 50, **keys}
    return JobSpec.model_validate({"name": "yolo", "train": train, "resources": resources})


def _train_args(cmd: list[str]) -> list[str]:
    return cmd[cmd.index("train") + 1 :]


def test_the_ultralytics_engine_is_profiled_from_its_loop_images_per_s_and_results_csv(tmp_path) -> None:
    jobs = JobRegistry(tmp_path / "j.db")
    run = FakeEngineRun()
    record = profile(_yolo_spec(tmp_path), steps=30, jobs=jobs, run=run)
    args = _train_args(run.cmd)
    # 30 steps over 3 epochs of Ultralytics' default batch 16: 160 of the 480 images; mosaic on, as in 40 of the 50 epochs
    assert {"engine=ultralytics", "epochs=3", "fraction=0.333333", "patience=0", "close_mosaic=0"} <= set(args)
    assert "epochs=50" not in args
    # the steady epochs' loops together: (160 + 160) images in (160/40 + 160/32) s; the warm-up epoch does not count
    ips = 320 / (160 / 40 + 160 / 32)
    assert (record.images_per_s, record.model, record.imgsz, record.batch) == (
        pytest.approx(ips),
        "yolo11n.yaml",
        640,
        16,
    )
    assert (record.device, record.precision, record.source) == (
        "cpu",
        "fp32",
        "profile",
    )  # Ultralytics: no AMP on a CPU
    # results.csv's steady epochs take 5 and 6 s: beyond their loops (4.5 s) and modelled validation, the per-epoch overhead
    val_s = 60 / (ips * gpu_table()["validation_speedup"])
    assert record.details["epoch_overhead_s"] == pytest.approx(5.5 - 4.5 - val_s, abs=1e-3)
    assert record.details["overhead_s"] == pytest.approx(30.0 - 3 * 5.5)
    assert (record.details["fraction_images"], record.details["method"]) == (160, "ultralytics")
    (stored,) = jobs.throughputs(model="yolo11n.yaml", device="cpu")
    assert stored.images_per_s == pytest.approx(ips)


def test_the_estimate_of_the_profiled_yolo_run_gives_back_its_wall_time(tmp_path) -> None:
    """The record is found for the same YOLO model, imgsz and batch (Ultralytics' 640 and 16, unset in the spec)
    on this CPU, unscaled, and estimating the profiled run itself returns its wall time."""
    from launcher.estimate.local import LocalCosts, local_offers

    jobs = JobRegistry(tmp_path / "j.db")
    s = _yolo_spec(tmp_path, epochs=3, fraction=160 / 480)
    profile(s, steps=30, jobs=jobs, run=FakeEngineRun())

    class Local:
        name = "local"

        def offers(self, spec):  # type: ignore[no-untyped-def]
            return local_offers(spec, LocalCosts(), gpus=[])

    (row,) = estimate(s, [Local()], jobs=jobs)  # type: ignore[list-item]
    assert (row.source, row.images_per_s) == ("measured", pytest.approx(320 / 9))
    assert "scaled" not in row.source_detail
    assert row.total_s == pytest.approx(30.0, rel=0.01)


def test_a_yolo_profile_on_gpus_is_per_gpu_and_informs_the_same_gpu_in_the_cloud(tmp_path) -> None:
    from .fakes import FakeBackend, offer

    jobs = JobRegistry(tmp_path / "j.db")
    run = FakeEngineRun(banner=GPU_BANNER)
    s = _yolo_spec(tmp_path, imgsz=320, batch=32, resources={"gpus": 2, "gpu_type": "A10G"})
    record = profile(s, steps=30, jobs=jobs, run=run)
    # Ultralytics' batch is of both GPUs together: 10 steps of 32 images per epoch
    assert f"fraction={10 * 32 / 480:.6g}" in _train_args(run.cmd)
    # the epoch line's images/s is both GPUs'; the record is one GPU's, in the spec's precision
    assert (record.device, record.precision, record.details["gpus"]) == ("A10G", "amp", 2)
    assert record.images_per_s == pytest.approx(320 / (160 / 40 + 160 / 32) / 2, rel=1e-3)
    (row,) = estimate(s, [FakeBackend([offer(gpus=2)])], jobs=jobs)
    assert (row.source, row.images_per_s) == ("measured", pytest.approx(record.images_per_s))


@pytest.mark.parametrize(("keys", "expected"), [
    ({"epochs": 5}, "close_mosaic=3"),  # 5 epochs: Ultralytics' close_mosaic 10 closes mosaic in all of them
    ({"epochs": 50, "close_mosaic": 40}, "close_mosaic=3"),
    ({"epochs": 50, "mosaic": 0.5}, "close_mosaic=0"),
    ({"epochs": 50, "model": "yolo11n-cls.yaml"}, None),  # classify: no mosaic
])  # fmt: skip
def test_a_yolo_profile_loads_images_as_most_of_the_runs_epochs_do(
    tmp_path, keys: dict[str, object], expected: str | None
) -> None:
    run = FakeEngineRun()
    profile(_yolo_spec(tmp_path, **keys), steps=30, jobs=JobRegistry(tmp_path / "j.db"), run=run)
    closing = [a for a in _train_args(run.cmd) if a.startswith("close_mosaic=")]
    assert closing == ([expected] if expected else [])


def test_a_yolo_profile_without_the_engines_images_per_s_is_one_clear_error(tmp_path) -> None:
    def run(cmd, env, timeout):  # type: ignore[no-untyped-def]
        lines = FakeEngineRun()(cmd, env, timeout)
        return [(t, text.split(" images_per_s")[0]) for t, text in lines]

    with pytest.raises(LauncherError, match="no \\[train\\] epoch line with images_per_s"):
        profile(_yolo_spec(tmp_path), steps=30, jobs=JobRegistry(tmp_path / "j.db"), run=run)


def test_synthetic_is_refused_for_the_ultralytics_engine(tmp_path) -> None:
    with pytest.raises(LauncherError, match="ultralytics engine"):
        profile(
            _yolo_spec(tmp_path), steps=30, jobs=JobRegistry(tmp_path / "j.db"), synthetic=True, run=FakeEngineRun()
        )


def test_the_engines_epoch_line_reports_its_training_loops_images_per_s(capsys: pytest.CaptureFixture[str]) -> None:
    """time_s stays the whole epoch (validation and checkpoint included); images_per_s is of the loop alone."""
    from types import SimpleNamespace

    from launcher.runtime.train import ultralytics_engine as engine

    trainer = SimpleNamespace(tloss={"box": 1.0}, epoch=1, epochs=3, metrics={}, lr={"pg0": 0.01}, epoch_time=12.5,
                              train_loader=SimpleNamespace(dataset=[None] * 160))  # fmt: skip
    engine._loop_started(trainer)
    trainer.launcher_loop_s += 4.0  # as if it had started 4 s earlier
    engine._loop_ended(trainer)
    engine._summary(trainer)
    line = capsys.readouterr().out
    assert "time_s 12.50 " in line and float(line.split("images_per_s ")[1].split()[0]) == pytest.approx(40.0, rel=0.01)


@pytest.mark.slow
def test_launch_profile_measures_the_ultralytics_engine_and_estimate_uses_it(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real engine: YOLO11n from its YAML on the rendered shapes (tests/backends/test_local_ultralytics.py's
    small settings), 12 steps over 3 epochs on this CPU. Took 21-25 s here (2 shared cores)."""
    pytest.importorskip("ultralytics")
    from click.testing import CliRunner

    from launcher.cli import main
    from launcher.runtime.datasets import write_shapes

    monkeypatch.setenv("LAUNCHER_DATA_DIR", str(tmp_path / "data"))
    data = write_shapes(tmp_path / "shapes", train=160, val=16)
    job = tmp_path / "job.yaml"
    job.write_text(f"name: yolo-profile\ntrain: {{engine: ultralytics, model: yolo11n.yaml, data: {data}, epochs: 30, imgsz: 64, "
                   "batch: 8, workers: 0, plots: false}\nresources: {gpus: 0}\nenv: {OMP_NUM_THREADS: '2'}\n")  # fmt: skip
    result = CliRunner().invoke(main, ["profile", str(job), "--steps", "12", "--json"])
    assert result.exit_code == 0, result.output
    measured = json.loads(result.output)
    # 12 steps of 8 images over 3 epochs: 32 of the 160 images per epoch
    assert (measured["method"], measured["fraction_images"], measured["device"], measured["precision"]) == (
        "ultralytics",
        32,
        "cpu",
        "fp32",
    )
    assert 1 < measured["images_per_s"] < 10_000 and measured["overhead_s"] > 0
    (record,) = JobRegistry().throughputs(model="yolo11n.yaml", device="cpu")
    assert (record.source, record.imgsz, record.batch, record.images_per_s) == (
        "profile",
        64,
        8,
        measured["images_per_s"],
    )
    result = CliRunner().invoke(main, ["estimate", str(job), "-b", "local", "--json"])
    assert result.exit_code == 0, result.output
    (row,) = [r for r in json.loads(result.output) if r["gpus"] == 0]
    assert (row["source"], row["images_per_s"]) == ("measured", round(measured["images_per_s"], 2))
    assert "scaled" not in row["source_detail"]
