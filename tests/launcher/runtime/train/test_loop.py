from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch

from launcher.errors import LauncherError
from launcher.runtime.train import checkpoint
from launcher.runtime.train.dist import Dist
from launcher.runtime.train.loop import SIGTERM_EXIT, Trainer, pick_precision
from launcher.spec import TrainConfig
from tests.launcher.runtime.train.conftest import TINY


def _cfg(data: Path, **kw: object) -> TrainConfig:
    base = dict(item.split("=", 1) for item in TINY)
    base.update(data=str(data), epochs=2)
    base.update({k: v for k, v in kw.items()})
    return TrainConfig.model_validate(base)


def _trainer(cfg: TrainConfig, save_dir: Path) -> tuple[Trainer, io.StringIO]:
    out = io.StringIO()
    return Trainer(cfg, save_dir, Dist(device=torch.device("cpu")), spec_hash="h1", out=out), out


def test_a_run_writes_every_output(tiny_data: Path, tmp_path: Path) -> None:
    trainer, out = _trainer(_cfg(tiny_data, save_period=1, cache="ram"), tmp_path)
    assert trainer.fit() == 0
    names = {p.name for p in tmp_path.iterdir()}
    assert {"last.pt", "best.pt", "epoch-1.pt", "epoch-2.pt", "results.csv", "results.png", "results.json"} <= names
    rows = (tmp_path / "results.csv").read_text().splitlines()
    assert rows[0] == "epoch,train_loss,val_loss,top1,top5,lr,time_s,images_per_s" and len(rows) == 3
    result = json.loads((tmp_path / "results.json").read_text())
    assert result["epochs_run"] == 2 and result["model"] == "shufflenet_v2_x0_5" and result["precision"] == "fp32"
    assert result["batch"] == 4 and result["imgsz"] == 16 and result["images_per_second"] > 0
    assert result["val_images"] == 9 and result["train_images"] == 24
    assert "done: best top-1" in out.getvalue() and f"weights: best.pt (last: last.pt) in {tmp_path}" in out.getvalue()
    assert (result["weights"], result["last"]) == ("best.pt", "last.pt")  # relative to the run folder (issue 23)
    best = checkpoint.load(tmp_path / "best.pt")
    assert "ema" in best and not {"model", "optimizer"} & set(best)  # only the validated weights: a third of last.pt
    last = checkpoint.load(tmp_path / "last.pt")
    assert last["finished"] and last["epoch"] == 2 and last["spec_hash"] == "h1"
    assert set(last) >= {"model", "ema", "optimizer", "scaler", "rng", "early_stop", "global_step"}


def test_a_job_folder_removed_once_synced_is_never_named_as_where_the_weights_are(
    tiny_data: Path, tmp_path: Path
) -> None:
    """Issue 23: the done line and results.json named /tmp/launcher-job-*/NAME/best.pt, gone after the sync."""
    job_folder = tmp_path / "launcher-job-abc" / "run"
    trainer, out = _trainer(_cfg(tiny_data, epochs=1), job_folder)
    assert trainer.fit() == 0
    done = [line for line in out.getvalue().splitlines() if "done: best top-1" in line][0]
    assert str(job_folder) not in done and "weights: best.pt (last: last.pt) in the run's checkpoint store" in done
    assert json.loads((job_folder / "results.json").read_text())["weights"] == "best.pt"


def test_save_period_off_writes_no_epoch_files(tiny_data: Path, tmp_path: Path) -> None:
    trainer, _ = _trainer(_cfg(tiny_data, epochs=1, save_period=-1), tmp_path)
    trainer.fit()
    assert not list(tmp_path.glob("epoch-*.pt"))


def test_patience_stops_without_strict_improvement(tiny_data: Path, tmp_path: Path) -> None:
    # a learning rate this small cannot change a prediction: top-1 stays flat after epoch 1
    trainer, out = _trainer(_cfg(tiny_data, epochs=6, patience=2, lr0=1e-12, optimizer="SGD"), tmp_path)
    assert trainer.fit() == 0
    assert json.loads((tmp_path / "results.json").read_text())["epochs_run"] == 3
    assert "early stop" in out.getvalue()


def _line(text: str, part: str) -> str:
    return next(line for line in text.splitlines() if part in line)


def test_resuming_a_finished_run_is_a_message_and_epochs_can_be_extended(tiny_data: Path, tmp_path: Path) -> None:
    first, _ = _trainer(_cfg(tiny_data, epochs=1), tmp_path)
    first.fit()
    again, out = _trainer(_cfg(tiny_data, epochs=1), tmp_path)
    assert again.fit() == 0 and "already finished" in out.getvalue()
    assert str(tmp_path) not in _line(out.getvalue(), "already finished")  # a job's folder is no path to open
    assert "resuming from" not in out.getvalue()  # only the one line that matters
    longer, out = _trainer(_cfg(tiny_data, epochs=2), tmp_path)
    assert longer.fit() == 0
    assert "resuming from last.pt (sha256 " in out.getvalue() and "epoch 2/2" in out.getvalue()
    assert str(tmp_path) not in _line(out.getvalue(), "resuming from")  # issue 34 item 8
    assert len((tmp_path / "results.csv").read_text().splitlines()) == 3


def test_resuming_with_another_model_is_a_clear_error(tiny_data: Path, tmp_path: Path) -> None:
    _trainer(_cfg(tiny_data, epochs=1), tmp_path)[0].fit()
    other, _ = _trainer(_cfg(tiny_data, epochs=2, model="mobilenet_v3_small"), tmp_path)
    with pytest.raises(LauncherError, match="was trained as shufflenet_v2_x0_5 on 3 classes"):
        other.fit()


def test_a_non_finite_loss_skips_the_step(tiny_data: Path, tmp_path: Path) -> None:
    trainer, out = _trainer(_cfg(tiny_data), tmp_path)
    trainer.setup()
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    x = torch.full((4, 3, 16, 16), float("nan"))
    loss, stop = trainer.train_step(x, torch.tensor([0, 1, 2, 0]))
    assert loss != loss and not stop  # NaN
    assert "non-finite loss" in out.getvalue() and "step skipped" in out.getvalue()
    after = trainer.model.state_dict()
    assert all(
        torch.equal(before[k], after[k]) for k in before if before[k].dtype.is_floating_point and "running" not in k
    )
    trainer.train_step(torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 0]))
    assert not torch.equal(before["fc.weight"], trainer.model.state_dict()["fc.weight"])


def test_validation_uses_the_ema_weights(tiny_data: Path, tmp_path: Path) -> None:
    trainer, _ = _trainer(_cfg(tiny_data), tmp_path)
    trainer.setup()
    with torch.no_grad():
        trainer.ema.module.fc.weight.zero_()
        trainer.ema.module.fc.bias.copy_(torch.tensor([0.0, 0.0, 5.0]))  # the EMA model always says class 2
    metrics = trainer.validate()
    assert metrics["top1"] == pytest.approx(1 / 3) and metrics["val_samples"] == 9


def test_sigterm_flag_saves_mid_epoch_and_exits_143(tiny_data: Path, tmp_path: Path) -> None:
    trainer, out = _trainer(_cfg(tiny_data), tmp_path)
    trainer.setup()
    trainer.request_stop()
    assert trainer._epochs() == SIGTERM_EXIT
    state = checkpoint.load(tmp_path / "last.pt")
    assert (state["epoch"], state["step_in_epoch"], state["finished"]) == (0, 1, False)
    assert "stopped by SIGTERM: saved last.pt at epoch 1, step 1" in out.getvalue()
    assert str(tmp_path) not in out.getvalue()  # the job's own training folder is no path a user can open (issue 34)


def test_precision_choice() -> None:
    assert pick_precision(True, "cuda", bf16_ok=True) == "bf16"
    assert pick_precision(True, "cuda", bf16_ok=False) == "fp16"
    assert pick_precision(True, "cpu", bf16_ok=False) == "fp32"
    assert pick_precision(False, "cuda", bf16_ok=True) == "fp32"


def test_amp_true_uses_bf16_autocast_when_the_device_has_it(tiny_data: Path, tmp_path: Path) -> None:
    trainer, _ = _trainer(_cfg(tiny_data, amp=True), tmp_path)
    trainer.setup()
    trainer.precision = pick_precision(True, "cpu", bf16_ok=True)  # what a bf16-capable CPU picks
    with trainer._autocast():
        out = trainer.model(torch.randn(2, 3, 16, 16))
    assert out.dtype == torch.bfloat16
    trainer.precision = "fp32"
    with trainer._autocast():
        assert trainer.model(torch.randn(2, 3, 16, 16)).dtype == torch.float32


def test_fp16_uses_a_grad_scaler(tiny_data: Path, tmp_path: Path) -> None:
    trainer, _ = _trainer(_cfg(tiny_data), tmp_path)
    trainer.precision = "fp16"
    trainer._data()
    trainer._model()
    assert trainer.scaler.is_enabled()


def test_pretrained_path_loads_a_local_state_dict(tiny_data: Path, tmp_path: Path) -> None:
    import torchvision

    source = torchvision.models.shufflenet_v2_x0_5(num_classes=1000)
    torch.save(source.state_dict(), tmp_path / "w.pt")
    trainer, _ = _trainer(_cfg(tiny_data, pretrained=str(tmp_path / "w.pt")), tmp_path / "run")
    trainer.setup()
    got = trainer.model.state_dict()
    assert torch.equal(got["conv1.0.weight"], source.state_dict()["conv1.0.weight"])
    assert got["fc.weight"].shape == (3, 1024)  # the head was sized for this dataset


def test_pretrained_true_reads_torchvision_weights_from_the_hub_cache(
    tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torchvision

    weights = torchvision.models.ShuffleNet_V2_X0_5_Weights.DEFAULT
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    source = torchvision.models.shufflenet_v2_x0_5()
    torch.save(source.state_dict(), hub / weights.url.rsplit("/", 1)[-1])
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    trainer, _ = _trainer(_cfg(tiny_data, pretrained=True), tmp_path / "run")
    trainer.setup()
    assert torch.equal(trainer.model.state_dict()["conv1.0.weight"], source.state_dict()["conv1.0.weight"])
    assert trainer.model.fc.out_features == 3


def test_pretrained_true_offline_is_a_clear_error(
    tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    for var in ("HTTPS_PROXY", "https_proxy"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")  # nothing listens there: the download fails at once
    trainer, _ = _trainer(_cfg(tiny_data, pretrained=True), tmp_path / "run")
    with pytest.raises(
        LauncherError, match=r"could not get the pretrained weights of shufflenet_v2_x0_5.*hub/checkpoints"
    ):
        trainer.setup()


def test_unknown_model_names_the_closest(tiny_data: Path, tmp_path: Path) -> None:
    # the spec refuses it at load time (tests/launcher/test_model_names.py); build_model checks again,
    # against the image's torchvision, for a config made without validation
    trainer, _ = _trainer(_cfg(tiny_data).model_copy(update={"model": "resnet19"}), tmp_path)
    with pytest.raises(LauncherError, match="Did you mean resnet18"):
        trainer.setup()


def test_cpu_threads_follow_the_cores_and_the_local_processes_not_the_load() -> None:
    from launcher.runtime.cpu import cpu_threads

    assert cpu_threads({}, cpus=2) == 2  # the old rule gave 1 on a loaded 2-core machine: speed followed the neighbours
    assert cpu_threads({}, cpus=8, processes=2) == 4
    assert cpu_threads({}, cpus=2, processes=4) == 1
    assert cpu_threads({"OMP_NUM_THREADS": "3"}, cpus=8, processes=2) == 3  # an explicit setting wins
    assert cpu_threads({"OMP_NUM_THREADS": "x"}, cpus=4) == 4
    assert cpu_threads({}, cpus=0) == 1


def test_the_trainer_uses_the_thread_policy(tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from launcher.runtime.cpu import cpu_threads, usable_cpus

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    try:
        trainer, out = _trainer(_cfg(tiny_data), tmp_path)
        trainer.setup()
        assert torch.get_num_threads() == cpu_threads({}, usable_cpus(), 1)
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize(
    ("omp", "cache", "workers"), [(None, False, 0), ("2", False, 2), ("3", False, 1), ("2", "ram", 0)]
)
def test_cpu_loader_workers_get_only_the_cores_the_compute_threads_leave(
    tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, omp: str | None, cache: str | bool, workers: int
) -> None:
    """Beside compute threads on every core, worker processes preempt them mid-step (bench_trainer: slower epochs)."""
    import torch

    from launcher.runtime.train import loop

    monkeypatch.setattr(loop, "usable_cpus", lambda: 4)
    if omp is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", omp)
    before = torch.get_num_threads()
    try:
        trainer, out = _trainer(_cfg(tiny_data, workers=2, cache=cache), tmp_path)
        trainer.setup()
        assert trainer.workers == workers and trainer.train_loader.num_workers == workers
        assert f"{workers} loader workers" in out.getvalue()
    finally:
        torch.set_num_threads(before)
