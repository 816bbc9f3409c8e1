from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import pytest

from launcher.errors import LauncherError
from launcher.estimate.model import estimate
from launcher.estimate.profile import profile, profile_synthetic
from launcher.jobs import JobRegistry
from launcher.spec import JobSpec

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
    assert (record.images_per_s, record.device, record.precision, record.source) == (pytest.approx(300 / 14), "cpu", "amp", "profile")
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
        profile(spec(data="s3://b/d"), steps=4, jobs=JobRegistry(tmp_path / "j.db"), synthetic=False, run=FakeTrainerRun())


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
        record = profile_synthetic(spec(model="mobilenet_v3_small", imgsz=32, batch=4, resources={"gpus": 0}), steps=2, warmup=1)
        assert record.details["threads"] == torch.get_num_threads() == 1  # OMP_NUM_THREADS wins, as in the trainer
        monkeypatch.delenv("OMP_NUM_THREADS")
        record = profile_synthetic(spec(model="mobilenet_v3_small", imgsz=32, batch=4, resources={"gpus": 0}), steps=2, warmup=1)
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
