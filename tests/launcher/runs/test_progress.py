"""`launch status` / `launch ls` progress: epoch, best top-1 so far and an ETA, from the run's results.csv."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from launcher.api import Launcher
from launcher.backends.local import LocalBackend
from launcher.cli import main
from launcher.runs.progress import for_record, from_csv
from launcher.runtime.train import report
from launcher.spec import validate_spec
from launcher.state.jobs import JobRegistry

HEADER = ",".join(report.COLUMNS) + "\n"


def _row(epoch: int, top1: float, time_s: float) -> dict[str, float]:
    return {
        "epoch": epoch,
        "train_loss": 1.0,
        "val_loss": 1.0,
        "top1": top1,
        "top5": 1.0,
        "lr": 0.01,
        "time_s": time_s,
        "images_per_s": 50.0,
    }


def test_eta_is_the_remaining_epochs_at_the_mean_epoch_time(tmp_path: Path) -> None:
    for e, (top1, t) in enumerate([(0.4, 20.0), (0.9, 40.0), (0.6, 30.0)], start=1):
        report.append_row(tmp_path / "results.csv", _row(e, top1, t))
    text = (tmp_path / "results.csv").read_text()
    running = from_csv(text, 10, finished=False, source="x")
    assert running is not None and (running.epoch, running.best_top1, running.eta_s) == (3, 0.9, 7 * 30.0)
    assert running.short() == "3/10 top1 0.900 ETA 3m"
    done = from_csv(text, 10, finished=True, source="x")
    assert done is not None and done.eta_s is None  # a finished (stopped) job has no ETA


@pytest.mark.parametrize("text", ["", HEADER, "step,loss\n1,0.5\n"])
def test_no_epoch_or_another_programs_csv_is_no_progress(text: str) -> None:
    assert from_csv(text, 10, finished=False, source="x") is None


@pytest.fixture
def running_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """A real local process job that keeps running (its 'python' sleeps), with a local checkpoint folder."""
    monkeypatch.setenv("LAUNCHER_STATE_DIR", str(tmp_path / "state"))
    sleeper = tmp_path / "sleepy-python"
    sleeper.write_text("#!/bin/sh\nexec sleep 60\n")
    sleeper.chmod(sleeper.stat().st_mode | stat.S_IEXEC)
    raw = {
        "name": "digits-run",
        "train": {"epochs": 8},
        "checkpoint": {"uri": str(tmp_path / "ckpt")},
        "local": {"runtime": "process", "python": str(sleeper)},
    }
    job = Launcher(LocalBackend(), JobRegistry()).submit(validate_spec(raw, None, tmp_path))
    yield job, tmp_path / "ckpt" / "digits-run"
    job.cancel()


def test_status_and_ls_show_progress_and_json_carries_it(running_job, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    job, run = running_job
    run.mkdir(parents=True, exist_ok=True)
    env = {"LAUNCHER_STATE_DIR": os.environ["LAUNCHER_STATE_DIR"]}
    before = CliRunner().invoke(main, ["status", job.id, "--json"], env=env)
    assert before.exit_code == 0, before.output
    assert json.loads(before.stdout)["progress"] is None  # no epoch finished yet
    report.append_row(run / "results.csv", _row(1, 0.5, 12.0))
    report.append_row(run / "results.csv", _row(2, 0.75, 18.0))

    shown = CliRunner().invoke(main, ["status", job.id], env=env)
    assert shown.exit_code == 0, shown.output
    assert "epoch 2/8  best top-1 0.7500  ETA 1m" in shown.stdout and str(run / "results.csv") in shown.stdout
    data = json.loads(CliRunner().invoke(main, ["status", job.id, "--json"], env=env).stdout)
    assert data["state"] == "running"
    assert data["progress"] == {
        "epoch": 2,
        "epochs": 8,
        "best_top1": 0.75,
        "eta_s": 90.0,
        "source": str(run / "results.csv"),
    }

    listed = CliRunner().invoke(main, ["ls"], env=env)
    assert listed.exit_code == 0 and "progress" in listed.stdout and "2/8 top1 0.750 ETA 1m" in listed.stdout
    rows = json.loads(CliRunner().invoke(main, ["ls", "--json"], env=env).stdout)
    assert [r["progress"]["epoch"] for r in rows if r["id"] == job.id] == [2]


def test_an_unreachable_store_reads_as_unknown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAUNCHER_STATE_DIR", str(tmp_path / "state"))
    from launcher.plan import JobRef

    jobs = JobRegistry()
    spec = {"name": "r", "checkpoint": {"uri": "s3://no-such-bucket-for-tests/x"}, "train": {"epochs": 3}}
    jobs.add(JobRef("r-1", "aws", "r-1"), "r", spec, "h")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")  # nothing listens: fails at once, offline
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    assert for_record(jobs.get("r-1")) is None
    assert for_record(jobs.get("r-1"), remote=False) is None


def test_an_ultralytics_results_csv_shows_epoch_map_and_eta() -> None:
    from launcher.runs.progress import from_csv

    text = (
        "epoch,time,train/box_loss,metrics/mAP50(B),metrics/mAP50-95(B),metrics/mAP50-95(M)\n"
        "1,10,5.1,0.01,0.004,0.003\n2,20,4.2,0.20,0.08,0.06\n3,8,3.9,0.25,0.07,0.05\n"
    )  # a resume restarts time
    progress = from_csv(text, 5, False, "here")
    assert progress is not None and progress.epoch == 3 and progress.best_top1 is None
    assert progress.best_map == 0.06  # segment: the mask mAP, the last mAP50-95 column
    assert progress.eta_s == pytest.approx(2 * (10 + 10 + 8) / 3)
    assert "best mAP50-95 0.0600" in progress.line() and "mAP50-95 0.060" in progress.short()


def test_a_job_records_the_epoch_it_ended_at(running_job) -> None:  # type: ignore[no-untyped-def]
    """What `launch status` of this job shows once a newer job of the run writes the folder (issue 34 item 9)."""
    job, run = running_job
    run.mkdir(parents=True, exist_ok=True)
    for epoch in (1, 2):
        report.append_row(run / "results.csv", _row(epoch, 0.5, 12.0))
    assert "epoch" not in job.record().metrics
    job.cancel()
    job.wait(poll=0.2, timeout=60)
    assert job.record().metrics["epoch"] == 2


def _data_record(shards: int, at: float) -> bytes:
    body = {"phase": "streaming", "uri": "s3://b/cars", "shards": shards, "shards_total": 15, "bytes": shards * 8_000_000,
            "bytes_total": 120_000_000, "time": at}  # fmt: skip
    return json.dumps(body).encode()


def test_status_shows_a_streaming_job_s_data_progress(running_job) -> None:  # type: ignore[no-untyped-def]
    import time

    job, run = running_job
    env = {"LAUNCHER_STATE_DIR": os.environ["LAUNCHER_STATE_DIR"]}
    before = json.loads(CliRunner().invoke(main, ["status", job.id, "--json"], env=env).stdout)
    assert before["data_progress"] is None  # no packed dataset streamed yet
    run.mkdir(parents=True, exist_ok=True)
    (run / ".data-progress.json").write_bytes(_data_record(3, time.time()))  # what the trainer's stream reader writes

    shown = CliRunner().invoke(main, ["status", job.id], env=env)
    assert shown.exit_code == 0, shown.output
    assert "data: 3/15 shards, 24.0 of 120.0 MB streamed from s3://b/cars (" in shown.stdout
    data = json.loads(CliRunner().invoke(main, ["status", job.id, "--json"], env=env).stdout)
    assert {k: v for k, v in data["data_progress"].items() if k != "time"} == {
        "phase": "streaming", "shards": 3, "shards_total": 15, "bytes": 24_000_000, "bytes_total": 120_000_000,
        "source": str(run / ".data-progress.json"), "uri": "s3://b/cars", "files": 0, "files_total": 0,
        "seconds": None, "nodes": 1,
    }  # fmt: skip


def _staging_record(phase: str, files: int, at: float, seconds: float) -> bytes:
    body = {"phase": phase, "uri": "s3://b/digits", "files": files, "files_total": 20_000, "shards": 0,
            "shards_total": 0, "bytes": files * 2_600, "bytes_total": 52_000_000, "seconds": seconds,
            "time": at}  # fmt: skip
    return json.dumps(body).encode()


def test_status_shows_the_data_staging_then_that_it_is_staged(running_job) -> None:  # type: ignore[no-untyped-def]
    """While the entrypoint fetches a plain remote folder, node 0 writes `data-progress.json` in the run folder."""
    import time

    job, run = running_job
    env = {"LAUNCHER_STATE_DIR": os.environ["LAUNCHER_STATE_DIR"]}
    run.mkdir(parents=True, exist_ok=True)
    (run / "data-progress.json").write_bytes(_staging_record("fetching", 1_200, time.time(), 7.0))
    shown = CliRunner().invoke(main, ["status", job.id], env=env)
    assert shown.exit_code == 0, shown.output
    assert "data: staging 1,200/20,000 files, 3.1 of 52.0 MB fetched from s3://b/digits (" in shown.stdout
    data = json.loads(CliRunner().invoke(main, ["status", job.id, "--json"], env=env).stdout)["data_progress"]
    assert (data["phase"], data["files"], data["files_total"], data["source"]) == (
        "fetching",
        1_200,
        20_000,
        str(run / "data-progress.json"),
    )
    (run / "data-progress.json").write_bytes(_staging_record("staged", 20_000, time.time(), 41.0))
    shown = CliRunner().invoke(main, ["status", job.id], env=env)
    assert "data: staged 20,000 files, 52.0 MB from s3://b/digits in 41s (" in shown.stdout


def test_the_data_line_of_each_phase_names_node_0_when_there_are_several() -> None:
    from launcher.runs.progress import data_from_json

    def line(body: bytes, nodes: int = 1) -> str:
        found = data_from_json(body, "x", nodes)
        assert found is not None
        return found.line(now=110.0)

    listing = line(_staging_record("listing", 0, 100.0, 3.0))
    assert listing == "data: staging: listing the files of s3://b/digits (10s ago)"
    assert line(_staging_record("fetching", 1_200, 100.0, 7.0), nodes=2) == (
        "data: staging 1,200/20,000 files, 3.1 of 52.0 MB fetched from s3://b/digits (node 0 of 2, 10s ago)"
    )
    unpacking = {"phase": "unpacking", "uri": "s3://b/shapes", "files": 0, "files_total": 0, "shards": 3,
                 "shards_total": 12, "bytes": 24_000_000, "bytes_total": 96_000_000, "seconds": 5.0,
                 "time": 100.0}  # fmt: skip
    assert line(json.dumps(unpacking).encode()) == (
        "data: staging 3/12 shards, 24.0 of 96.0 MB fetched and unpacked from s3://b/shapes (10s ago)"
    )
    staged = {**unpacking, "phase": "staged", "shards": 12, "bytes": 96_000_000, "seconds": 75.0}
    assert line(json.dumps(staged).encode(), nodes=4) == (
        "data: staged 12 shards, 96.0 MB from s3://b/shapes in 1m (node 0 of 4, 10s ago)"
    )
    assert line(_data_record(3, 100.0), nodes=2) == (
        "data: 3/15 shards, 24.0 of 120.0 MB streamed from s3://b/cars (node 0 of 2, 10s ago)"
    )


def test_a_record_written_before_staging_was_recorded_still_reads_as_streaming() -> None:
    """Records of earlier versions: the trainer's, with no phase at first, and no files, seconds or nodes."""
    from launcher.runs.progress import DataProgress, data_from_json

    old = {"uri": "s3://b/cars", "shards": 3, "shards_total": 15, "bytes": 24_000_000, "bytes_total": 120_000_000,
           "time": 100.0}  # fmt: skip
    found = data_from_json(json.dumps(old).encode(), "x")
    assert found == DataProgress("streaming", 3, 15, 24_000_000, 120_000_000, 100.0, "x", "s3://b/cars")
    assert found.line(now=100.0) == "data: 3/15 shards, 24.0 of 120.0 MB streamed from s3://b/cars (0s ago)"


def test_data_progress_is_read_from_the_store_and_damaged_or_finished_reads_as_unknown(tmp_path: Path) -> None:
    from launcher.runs.progress import DataProgress, data_for_record, data_from_json, read_data_progress
    from launcher.storage.local import LocalStore

    store = LocalStore(str(tmp_path / "store" / "r"))
    spec = {"name": "r", "checkpoint": {"uri": "s3://bucket/runs"}}
    opened: list[str] = []
    open_fn = lambda uri: opened.append(uri) or store  # noqa: E731
    assert read_data_progress(spec, "r", open_fn) is None  # nothing streamed yet
    store.put_bytes("data-progress.json", _data_record(15, 100.0))  # the syncer's copy in the run folder
    found = read_data_progress(spec, "r", open_fn)
    assert opened[-1] == "s3://bucket/runs/r" and found == DataProgress(
        "streaming", 15, 15, 120_000_000, 120_000_000, 100.0, store.url("data-progress.json"), "s3://b/cars"
    )
    assert found.line(now=130.0) == "data: 15/15 shards, 120.0 of 120.0 MB streamed from s3://b/cars (30s ago)"
    for bad in (b"", b"{}", b"[1]", b'{"phase": "x", "shards": "many"}'):
        assert data_from_json(bad, "x") is None

    def record(finished: bool):  # type: ignore[no-untyped-def]
        return SimpleNamespace(name="r", spec=spec, state=SimpleNamespace(finished=finished))

    assert data_for_record(record(False), open_fn) == found
    assert data_for_record(record(True), open_fn) is None
    assert data_for_record(record(False), lambda uri: 1 / 0) is None  # an unreachable store: unknown, never an error


def test_in_a_local_run_folder_the_newer_record_wins_and_the_spec_says_how_many_nodes(tmp_path: Path) -> None:
    from launcher.runs.progress import read_data_progress

    run = tmp_path / "ckpt" / "r"
    run.mkdir(parents=True)
    spec = {"name": "r", "checkpoint": {"uri": str(tmp_path / "ckpt")}, "resources": {"nodes": 2}}
    (run / ".data-progress.json").write_bytes(_data_record(3, 100.0))  # a trainer's own file, from before
    (run / "data-progress.json").write_bytes(_staging_record("staged", 20_000, 200.0, 41.0))  # node 0 staged since
    found = read_data_progress(spec, "r")
    assert found is not None and (found.phase, found.nodes) == ("staged", 2)
    (run / ".data-progress.json").write_bytes(_data_record(4, 300.0))  # then the trainer streams
    found = read_data_progress(spec, "r")
    assert found is not None and (found.phase, found.shards, found.source) == (
        "streaming",
        4,
        str(run / ".data-progress.json"),
    )
