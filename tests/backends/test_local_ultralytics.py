"""The ultralytics engine on the local backend (process runtime), issue 25: YOLO11n from its model YAML on the
rendered-shapes dataset, CPU, 3 epochs; SIGTERM after epoch 1, then the same spec again continues with
Ultralytics' own resume (epochs 2..3), results.csv holds each epoch once; a segment run; all offline.

Measured here (2 shared cores, 2026-12-03; 480 train / 60 val images of 64 px, batch 8, AdamW lr0 0.01,
no warmup, no mosaic): an untrained YOLO11n scores mAP50 0.000-0.002 on the val split (its first epoch's
row: 0.0017); after 3 epochs, 0.26-0.28 (detect) and a mask mAP50 of 0.22 (segment). The bars below sit
between the two. The detect test (3 jobs) took 92-139 s here, the segment test 118-125 s.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("ultralytics")

from launcher.api import Launcher  # noqa: E402
from launcher.backends.local import LocalBackend  # noqa: E402
from launcher.runtime.datasets import write_shapes  # noqa: E402
from launcher.spec import validate_spec  # noqa: E402
from launcher.storage.sync import pull_latest  # noqa: E402
from tests.conformance.cluster import wait_until  # noqa: E402

DETECT_MAP50_BAR = 0.10  # untrained 0.000-0.002, trained 3 epochs 0.28
SEGMENT_MAP50_BAR = 0.05  # mask mAP50: untrained 0.0000 (epoch 1's row), 0.0005 after epoch 2, 0.22 after epoch 3
TIMEOUT_S = 900
TRAIN = {"engine": "ultralytics", "epochs": 3, "imgsz": 64, "batch": 8, "workers": 0, "plots": False,
         "optimizer": "AdamW", "lr0": 0.01, "warmup_epochs": 0, "mosaic": 0.0}  # fmt: skip


ENGINE_IMAGE = "torch-launcher-train:ultralytics"  # launch image build --engine ultralytics


def _spec(tmp_path: Path, name: str, model: str, runtime: str = "process") -> Any:
    data = write_shapes(tmp_path / "shapes", train=480, val=60)
    local = {"runtime": runtime, **({"python": sys.executable} if runtime == "process" else {})}
    image = {"image": ENGINE_IMAGE} if runtime == "docker" else {}
    keys = {"name": name, "train": {**TRAIN, "model": model, "data": str(data)}, **image,
            "checkpoint": {"uri": str(tmp_path / "store")}, "env": {"OMP_NUM_THREADS": "2"}, "local": local}  # fmt: skip
    return validate_spec(keys, None, tmp_path)


def _rows(tmp_path: Path, run: str, dest: str) -> list[dict[str, str]]:
    pull_latest(str(tmp_path / "store"), run, tmp_path / dest)
    with open(tmp_path / dest / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


def _to_the_end(launcher: Launcher, spec: Any) -> tuple[int | None, str]:
    job = launcher.submit(spec)
    status = job.wait(poll=1.0, timeout=TIMEOUT_S)
    return status.exit_code, "\n".join(job.logs())


@pytest.mark.slow
def test_a_yolo_detector_resumes_after_sigterm_with_each_epoch_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LAUNCHER_DATA_DIR", str(tmp_path / "data"))
    launcher = Launcher(backend=LocalBackend(state_dir=tmp_path / "state"))
    _detector_scenario(tmp_path, launcher, _spec(tmp_path, "yolo-det", "yolo11n.yaml"))


@pytest.mark.slow
@pytest.mark.docker
def test_in_the_engine_image_a_yolo_detector_resumes_after_sigterm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same in the image `launch image build --engine ultralytics` makes (from this checkout's training image)."""
    from tests.docker_base import engine_or_skip, remove_job_containers, train_image_or_skip  # noqa: PLC0415

    client = engine_or_skip()
    train_image_or_skip(client, ENGINE_IMAGE)
    monkeypatch.setenv("LAUNCHER_DATA_DIR", str(tmp_path / "data"))
    launcher = Launcher(backend=LocalBackend(docker_client=client, state_dir=tmp_path / "state"))
    ids: list[str] = []
    submit = launcher.submit
    launcher.submit = lambda spec: ids.append((job := submit(spec)).id) or job  # type: ignore[method-assign]
    try:
        _detector_scenario(tmp_path, launcher, _spec(tmp_path, "yolo-det", "yolo11n.yaml", runtime="docker"))
    finally:
        remove_job_containers(client, ids)


def _detector_scenario(tmp_path: Path, launcher: Launcher, spec: Any) -> None:

    job = launcher.submit(spec)
    assert wait_until(lambda: "[train] epoch 1/3:" in "\n".join(job.logs()), TIMEOUT_S, 0.5), "\n".join(job.logs())[
        -4000:
    ]
    job.cancel()
    status = job.wait(poll=0.5, timeout=300)
    first = "\n".join(job.logs())
    assert status.exit_code == 143, first[-4000:]
    for bad in ("Downloading", "https://", "AMP: running"):  # nothing fetched: no weights, fonts, AMP check
        assert bad not in first.replace("https://docs.ultralytics.com", ""), first[-4000:]
    after = _rows(tmp_path, "yolo-det", "after-sigterm")
    assert [r["epoch"] for r in after] == ["1"], after
    import torch  # noqa: PLC0415

    saved = torch.load(tmp_path / "after-sigterm" / "last.pt", map_location="cpu", weights_only=False)
    assert saved["epoch"] == 0 and saved["ema"] is not None, "the store's last.pt is epoch 1's, loadable"

    code, logs = _to_the_end(launcher, spec)
    assert code == 0, logs[-4000:]
    assert "[train] resuming from" in logs and "[train] epoch 1/3:" not in logs, logs[-4000:]
    assert "[train] epoch 2/3:" in logs and "[train] epoch 3/3:" in logs, logs[-4000:]
    rows = _rows(tmp_path, "yolo-det", "final")
    assert [r["epoch"] for r in rows] == ["1", "2", "3"], rows
    print(f"detect final mAP50(B) {rows[-1]['metrics/mAP50(B)']}")
    assert float(rows[-1]["metrics/mAP50(B)"]) > DETECT_MAP50_BAR, rows[-1]
    assert (tmp_path / "final" / "best.pt").is_file()

    code, logs = _to_the_end(launcher, spec)
    assert code == 0 and "this run already finished" in logs, logs[-4000:]


@pytest.mark.slow
def test_a_yolo_segmenter_trains_on_the_masks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAUNCHER_DATA_DIR", str(tmp_path / "data"))
    launcher = Launcher(backend=LocalBackend(state_dir=tmp_path / "state"))
    code, logs = _to_the_end(launcher, _spec(tmp_path, "yolo-seg", "yolo11n-seg.yaml"))
    assert code == 0, logs[-4000:]
    rows = _rows(tmp_path, "yolo-seg", "final")
    assert [r["epoch"] for r in rows] == ["1", "2", "3"], rows
    print(f"segment final mAP50(M) {rows[-1]['metrics/mAP50(M)']}")
    assert float(rows[-1]["metrics/mAP50(M)"]) > SEGMENT_MAP50_BAR, rows[-1]


@pytest.mark.slow
def test_raising_epochs_on_a_finished_yolo_run_trains_the_new_epochs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 34: `--set train.epochs=3` on a finished 2-epoch run ended `succeeded` with 0 epochs trained. Now
    Ultralytics fine-tunes from the final last.pt for the missing epochs, counted on from the old ones."""
    monkeypatch.setenv("LAUNCHER_DATA_DIR", str(tmp_path / "data"))
    launcher = Launcher(backend=LocalBackend(state_dir=tmp_path / "state"))
    data = write_shapes(tmp_path / "small", train=32, val=8)
    raw = {"name": "yolo-more", "train": {**TRAIN, "epochs": 1, "model": "yolo11n.yaml", "data": str(data)},
           "checkpoint": {"uri": str(tmp_path / "store")}, "env": {"OMP_NUM_THREADS": "2"},
           "local": {"runtime": "process", "python": sys.executable}}  # fmt: skip
    code, logs = _to_the_end(launcher, validate_spec(raw, None, tmp_path))
    assert code == 0 and "[train] epoch 1/1:" in logs, logs[-4000:]
    from launcher.state.jobs import JobRegistry  # noqa: PLC0415

    past = JobRegistry().throughputs(model="yolo11n.yaml")  # a finished run is a past run for `launch estimate`
    assert [(t.source, t.imgsz, t.batch, t.device, t.precision) for t in past] == [("job", 64, 8, "cpu", "fp32")], past
    assert past[0].images_per_s > 0
    raw["train"]["epochs"] = 2
    code, logs = _to_the_end(launcher, validate_spec(raw, None, tmp_path))
    assert code == 0, logs[-4000:]
    assert "training epochs 2-2 from its last.pt" in logs and "[train] epoch 2/2:" in logs, logs[-4000:]
    assert "/tmp/" not in logs.split("training epochs")[1].split("\n")[0]
    rows = _rows(tmp_path, "yolo-more", "after")
    assert [r["epoch"] for r in rows] == ["1", "2"], rows
    import json  # noqa: PLC0415

    assert json.loads((tmp_path / "after" / "results.json").read_text())["epoch"] == 2
    assert not list((tmp_path / "after").glob(".results*")), "the aside copy never reaches the store"
    code, logs = _to_the_end(launcher, validate_spec(raw, None, tmp_path))
    assert code == 0 and "this run already finished" in logs and "[train] epoch" not in logs, logs[-4000:]


# ------------------------------------------------------------------ weights by URL (issue 33)


@pytest.fixture
def yolo_weights(tmp_path: Path) -> Path:
    """Untrained YOLO11n weights, made offline from its model YAML the way Ultralytics saves a model (no download)."""
    from ultralytics import YOLO  # noqa: PLC0415

    folder = tmp_path / "www" / "weights"
    folder.mkdir(parents=True)
    YOLO("yolo11n.yaml").save(str(folder / "yolo11n.pt"))
    return folder / "yolo11n.pt"


def _weights_by_url(tmp_path: Path, launcher: Launcher, weights: Path, runtime: str) -> None:
    """A spec naming YOLO weights by URL trains in the offline engine: the weights fetched at submit from a
    loopback HTTP server (the job never reaches it), stored by content, read and checked by the job."""
    import hashlib  # noqa: PLC0415

    from tests.http_files import serve_folder  # noqa: PLC0415

    sha = hashlib.sha256(weights.read_bytes()).hexdigest()
    with serve_folder(weights.parent.parent) as server:
        url = server.url("weights/yolo11n.pt") + "?token=s3cr3t"
        spec = _spec(tmp_path, "yolo-url", url, runtime=runtime)
        spec = spec.model_copy(update={"train": spec.train.model_copy(update={"epochs": 1})})
        code, logs = _to_the_end(launcher, spec)
        assert server.requests["GET /weights/yolo11n.pt?token=s3cr3t"] == 1, server.requests
    assert code == 0, logs[-4000:]
    stored = tmp_path / "store" / "_weights" / f"{sha}.pt"
    assert stored.read_bytes() == weights.read_bytes(), "stored by content in the run's store"
    assert f"[launcher] weights {sha[:12]}:" in logs and "(sha256 checked)" in logs, logs[-4000:]
    assert "[train] epoch 1/1:" in logs, logs[-4000:]
    for bad in ("Downloading", "s3cr3t", "127.0.0.1"):  # the job fetched nothing, and never saw the URL
        assert bad not in logs, logs[-4000:]


@pytest.mark.slow
def test_yolo_weights_by_url_are_fetched_at_submit_and_read_from_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, yolo_weights: Path
) -> None:
    monkeypatch.setenv("LAUNCHER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LAUNCHER_STATE_DIR", str(tmp_path / "state"))
    launcher = Launcher(backend=LocalBackend(state_dir=tmp_path / "state"))
    _weights_by_url(tmp_path, launcher, yolo_weights, "process")


@pytest.mark.slow
@pytest.mark.docker
def test_in_the_engine_image_yolo_weights_by_url_come_from_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, yolo_weights: Path
) -> None:
    """The same in the offline engine image, on the local Docker backend (the image must hold this checkout's
    launcher.runtime.weights: rebuild it with `launch image build --engine ultralytics`)."""
    from tests.docker_base import engine_or_skip, remove_job_containers, train_image_or_skip  # noqa: PLC0415

    client = engine_or_skip()
    train_image_or_skip(client, ENGINE_IMAGE)
    monkeypatch.setenv("LAUNCHER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LAUNCHER_STATE_DIR", str(tmp_path / "state"))
    launcher = Launcher(backend=LocalBackend(docker_client=client, state_dir=tmp_path / "state"))
    ids: list[str] = []
    submit = launcher.submit
    launcher.submit = lambda spec: ids.append((job := submit(spec)).id) or job  # type: ignore[method-assign]
    try:
        _weights_by_url(tmp_path, launcher, yolo_weights, "docker")
    finally:
        remove_job_containers(client, ids)
