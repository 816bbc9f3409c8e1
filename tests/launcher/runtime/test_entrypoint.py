"""The image's entrypoint: command line, save folder, secrets, signals, exit codes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from launcher import contract
from launcher.errors import LauncherError
from launcher.runtime import entrypoint, rendezvous, secrets
from tests.launcher.storage.conftest import StoreKind, moto_endpoint, s3_kind  # noqa: F401 - fixtures

LOCAL = rendezvous.Rendezvous("local", 1, 0, "127.0.0.1", 29500)


def test_train_shorthand_runs_the_trainer_module_under_torchrun(tmp_path: Path) -> None:
    args = entrypoint.parse_args(["--run-name", "r", "--nproc", "2", "--", "train", "epochs=2"])
    cmd = entrypoint.build_command(args, LOCAL, entrypoint.processes_per_node(args), tmp_path)
    assert cmd[1:3] == ["-m", "launcher.runtime.torchrun"]
    assert cmd[3:9] == ["--standalone", "--nnodes", "1", "--nproc_per_node", "2", "-m"]
    assert cmd[9:] == ["launcher.runtime.train", "epochs=2", f"save_dir={tmp_path}"]


def test_the_ultralytics_engine_runs_as_one_process_without_torchrun(tmp_path: Path) -> None:
    """Ultralytics starts its own DDP from its device list, and reads torchrun's RANK as "a DDP worker"."""
    args = entrypoint.parse_args(["--run-name", "r", "--gpus", "4", "--", "train", "engine=ultralytics", "epochs=2"])
    cmd = entrypoint.build_command(args, LOCAL, entrypoint.processes_per_node(args), tmp_path)
    assert cmd == [sys.executable, "-m", "launcher.runtime.train.ultralytics_engine", "engine=ultralytics", "epochs=2",
                   f"save_dir={tmp_path}"]  # fmt: skip


def test_the_ultralytics_engine_maps_keys_by_name_and_rewrites_the_data_yaml_path(tmp_path: Path) -> None:
    from launcher.runtime.datasets import write_shapes
    from launcher.runtime.train.ultralytics_engine import train_kwargs, trim_results, yolo_data
    from launcher.spec import TrainConfig

    cfg = TrainConfig(engine="ultralytics", model="yolo11n.yaml", data="/d", imgsz=64, multi_scale=True, mosaic=0.5)
    assert train_kwargs(cfg, 0, False) == {"imgsz": 64, "multi_scale": 0.5, "mosaic": 0.5, "device": "cpu",
                                           "exist_ok": True, "verbose": True}  # fmt: skip
    assert train_kwargs(cfg, 4, True)["device"] == [0, 1, 2, 3] and train_kwargs(cfg, 1, True)["amp"] == "bf16"
    data = write_shapes(tmp_path / "shapes", train=4, val=2)
    moved = Path(shutil.move(str(data), tmp_path / "staged"))  # staged elsewhere: the yaml's path is stale
    import yaml

    written = yaml.safe_load(Path(yolo_data(str(moved), "detect", tmp_path / "work")).read_text())
    assert written["path"] == str(moved.resolve()) and written["names"] == {0: "rectangle", 1: "ellipse"}
    with pytest.raises(LauncherError, match="not a YOLO dataset folder"):
        yolo_data(str(tmp_path), "detect", tmp_path / "work2")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "results.csv").write_text("epoch,time\n1,5\n2,9\n")  # epoch 2 written, then killed
    trim_results(tmp_path / "run", 1)
    assert (tmp_path / "run" / "results.csv").read_text() == "epoch,time\n1,5\n"


def test_the_ultralytics_ddp_launcher_passes_sigterm_to_its_children_and_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    """With several GPUs the adapter's process only waits for Ultralytics' torch.distributed.run: a SIGTERM is
    handed to that child (which hands it to the workers), and the adapter goes on waiting instead of exiting."""
    from launcher.runtime.train import ultralytics_engine as engine

    monkeypatch.setattr(engine, "STOP", engine._Stop())
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert child.pid in engine.children(os.getpid())
        engine.STOP.ddp_launcher = True
        engine.STOP.handle(signal.SIGTERM, None)  # returns: the launcher itself keeps waiting for its child
        assert child.wait(10) == -signal.SIGTERM and engine.STOP.received == signal.SIGTERM
        assert child.pid not in engine.children(os.getpid())
    finally:
        child.kill()
        child.wait()


def test_custom_commands_run_without_python_and_multi_node_uses_the_rendezvous(tmp_path: Path) -> None:
    args = entrypoint.parse_args(["--run-name", "r", "--gpus", "4", "--", "bash", "train.sh"])
    node = rendezvous.Rendezvous("sagemaker", 3, 2, "algo-1", 29500)
    cmd = entrypoint.build_command(args, node, entrypoint.processes_per_node(args), tmp_path)
    assert cmd[3:] == ["--nnodes", "3", "--node_rank", "2", "--master_addr", "algo-1", "--master_port", "29500",
                       "--nproc_per_node", "4", "--no-python", "bash", "train.sh"]  # fmt: skip


def test_save_dir_is_a_folder_of_this_jobs_own_never_the_store_nor_another_jobs(tmp_path: Path) -> None:
    local = entrypoint.parse_args(["--run-name", "r", "--checkpoint-uri", str(tmp_path)])
    remote = entrypoint.parse_args(["--run-name", "r", "--checkpoint-uri", "s3://b/ck"])
    folders = [entrypoint.save_dir_for(args, {}) for args in (local, remote, remote)]
    assert all(f.name == "r" and f.parent.name.startswith(entrypoint.JOB_FOLDER_PREFIX) for f in folders)
    assert len({f.parent for f in folders}) == 3 and not any(f.is_relative_to(tmp_path) for f in folders)
    for f in folders:
        f.parent.rmdir()
    explicit = entrypoint.parse_args(["--run-name", "r", "--save-dir", "/opt/ml/checkpoints"])
    assert entrypoint.save_dir_for(explicit, {}) == Path("/opt/ml/checkpoints")


def test_secret_references_resolve_into_values_and_unknown_schemes_fail() -> None:
    environ = {"LAUNCHER_SECRET_REFS": json.dumps({"TOKEN": "env:HOST_TOKEN"}), "HOST_TOKEN": "s3cr3t"}
    assert secrets.resolve_environment(environ) == {"TOKEN": "s3cr3t"}
    with pytest.raises(LauncherError, match="Unknown secret reference 'vault:x'"):
        secrets.resolve("vault:x", {})
    with pytest.raises(LauncherError, match="Export MISSING"):
        secrets.resolve("env:MISSING", {})


def test_local_rendezvous_is_the_default() -> None:
    rdzv = rendezvous.detect({}, resource_config=Path("/nonexistent"))
    assert (rdzv.platform, rdzv.nnodes, rdzv.node_rank) == ("local", 1, 0)


SLEEPER = """
import signal, sys, time
def stop(signum, frame):
    print("worker got SIGTERM", flush=True)
    sys.exit(143)
signal.signal(signal.SIGTERM, stop)
print("ready", flush=True)
time.sleep(60)
"""


def test_sigterm_reaches_the_workers_and_the_exit_code_says_so(tmp_path: Path) -> None:
    script = tmp_path / "sleeper.py"
    script.write_text(SLEEPER)
    proc = subprocess.Popen(
        [sys.executable, "-m", "launcher.runtime.entrypoint", "--run-name", "r", "--save-dir", str(tmp_path / "out"),
         "--nproc", "1", "--", sys.executable, str(script)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    deadline = time.monotonic() + 120
    lines = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        lines.append(line)
        if line.strip() == "ready":
            break
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    text = "".join(lines) + out
    assert "worker got SIGTERM" in text
    assert proc.returncode == 143, text


def test_the_job_exit_code_passes_through(tmp_path: Path) -> None:
    code = entrypoint.main(["--run-name", "r", "--save-dir", str(tmp_path), "--nproc", "1", "--",
                            sys.executable, "-c", "import sys; sys.exit(7)"])  # fmt: skip
    assert code == 7


def test_max_runtime_stops_the_job_so_it_saves_and_exits_124(tmp_path: Path) -> None:
    script = tmp_path / "sleeper.py"
    script.write_text(SLEEPER)
    result = subprocess.run(
        [sys.executable, "-m", "launcher.runtime.entrypoint", "--run-name", "r", "--save-dir", str(tmp_path / "out"),
         "--nproc", "1", "--max-runtime", "20", "--", sys.executable, str(script)],  # 20 s: time for torchrun to start
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    text = result.stdout + result.stderr
    assert "limits.max_runtime (20s) reached" in text and "worker got SIGTERM" in text
    assert result.returncode == contract.TIMEOUT_EXIT


def test_a_sigterm_during_the_final_checkpoint_upload_does_not_cut_it_short() -> None:
    """docker-compose (SageMaker local mode) stops node 0 when a peer exits first: the flush must finish."""
    import os
    import signal as signals

    from launcher.runtime.entrypoint import _flush_despite_signals

    class Syncer:
        uploaded = False

        def close(self) -> None:
            os.kill(os.getpid(), signals.SIGTERM)  # arrives in the middle of the upload
            time.sleep(0.2)
            self.uploaded = True

    syncer = Syncer()
    before = signals.getsignal(signals.SIGTERM)
    _flush_despite_signals(syncer)
    assert syncer.uploaded
    assert signals.getsignal(signals.SIGTERM) is before


def test_the_runs_total_epochs_come_from_the_trainers_arguments() -> None:
    from launcher.runtime.entrypoint import _total_epochs

    assert _total_epochs(["train", "model=resnet18", "epochs=8"]) == 8
    assert _total_epochs(["train", "model=resnet18"]) is None
    assert _total_epochs(["python", "my.py", "epochs=8"]) is None


def test_python_as_the_programs_first_word_is_the_entrypoints_own_interpreter(tmp_path: Path) -> None:
    """`command: [python, train.py]` must run the image's (or launch's) environment, never a system python."""
    for word in ("python", "python3"):
        args = entrypoint.parse_args(["--run-name", "r", "--", word, "train.py", "--steps", "3"])
        cmd = entrypoint.build_command(args, LOCAL, 1, tmp_path)
        assert cmd[cmd.index("--no-python") + 1 :] == [sys.executable, "train.py", "--steps", "3"]
    args = entrypoint.parse_args(["--run-name", "r", "--", "/usr/bin/python3", "x.py"])
    assert entrypoint.build_command(args, LOCAL, 1, tmp_path)[-2:] == ["/usr/bin/python3", "x.py"]  # a path is kept


@pytest.mark.parametrize("node_rank", [0, 1])
def test_every_node_restores_the_checkpoint_but_only_node_0_syncs_and_holds_the_lease(
    tmp_path: Path, node_rank: int
) -> None:
    from launcher.storage.lease import LEASE
    from launcher.storage.local import LocalStore
    from launcher.storage.sync import push

    store_root = tmp_path / "store"
    previous = tmp_path / "previous"
    previous.mkdir()
    (previous / "last.pt").write_bytes(b"weights")
    push(LocalStore(str(store_root / "r")), previous)
    args = entrypoint.parse_args(["--run-name", "r", "--checkpoint-uri", str(store_root), "--", "python", "x.py"])
    save_dir = tmp_path / f"node{node_rank}" / "r"
    save_dir.mkdir(parents=True)
    node = rendezvous.Rendezvous("vertex", 2, node_rank, "workerpool0-0", 2222)
    syncer = entrypoint._start_sync(args, node, save_dir)
    try:
        assert (save_dir / "last.pt").read_bytes() == b"weights", "every node starts from the run's checkpoint"
        lease = store_root / "r" / LEASE
        if node_rank == 0:
            assert syncer is not None and lease.exists()
        else:
            assert syncer is None and not lease.exists(), "a second writer of the run folder"
    finally:
        if syncer is not None:
            syncer.close(grace=10)
    assert not (store_root / "r" / LEASE).exists(), "the lease is released when the job ends"


def test_data_it_cannot_list_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    """Issue 34: `s3://` data without credentials gave a 25-line traceback from the image's entrypoint."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"), AWS_CONFIG_FILE=str(tmp_path / "none"),
               AWS_EC2_METADATA_DISABLED="true", LAUNCHER_DATA_DIR=str(tmp_path / "data"))  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "launcher.runtime.entrypoint", "--run-name", "r", "--save-dir", str(tmp_path / "out"),
         "--nproc", "1", "--", "train", "data=s3://my-bucket/data", "epochs=1"],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().splitlines() == [
        "[launcher] error: Could not list the training data at s3://my-bucket/data: NoCredentialsError: Unable to "
        "locate credentials. Check the URI and that this machine (or the job) has credentials to read it."
    ]


def test_ultralytics_lines_name_no_container_path_and_drop_offline_noise(tmp_path: Path) -> None:
    """Issue 34 item 8: `tensorboard --logdir /tmp/launcher-job-...`, GitHub checks and repeated warnings."""
    from launcher.runtime.train.ultralytics_engine import clean_line

    run = tmp_path / "launcher-job-x" / "run"
    seen: set[str] = set()
    board = clean_line(
        f"TensorBoard: Start with 'tensorboard --logdir {run}', view at http://localhost:6006/", run, seen
    )
    assert board is not None and str(run) not in board and "launch ckpt pull" in board
    assert (
        clean_line(f"Results saved to \x1b[1m{run}\x1b[0m", run, seen)
        == "Results saved to \x1b[1mthe run's checkpoint store\x1b[0m"
    )
    assert clean_line("GitHub assets check failure for https://api.github.com/x: offline", run, seen) is None
    first = clean_line("train: Skipping caching images to disk, directory not writable", run, seen)
    assert (
        first is not None
        and clean_line("val: Skipping caching images to disk, directory not writable", run, seen) is None
    )
    assert clean_line("      Epoch    GPU_mem   box_loss", run, seen) == "      Epoch    GPU_mem   box_loss"


def test_a_finished_yolo_run_reports_what_launch_estimate_reads_as_a_past_run(monkeypatch: pytest.MonkeyPatch) -> None:
    from launcher.estimate.record import device_of, per_process_images_per_s
    from launcher.runtime.train import ultralytics_engine as engine
    from launcher.spec import TrainConfig

    cfg = TrainConfig(engine="ultralytics", model="yolo11n.yaml", data="/d", imgsz=64, batch=8, epochs=3)
    monkeypatch.setattr(engine, "LOOP_RATES", [10.0, 40.0, 44.0])
    data = engine.measured(cfg, 2, "NVIDIA A10G", 100.0, bf16=True)
    assert (data["model"], data["imgsz"], data["batch"], data["precision"]) == ("yolo11n.yaml", 64, 8, "bf16")
    assert per_process_images_per_s(data) == 21.0 and device_of(data) == "A10G"  # the steady epochs, per GPU
    monkeypatch.setattr(engine, "LOOP_RATES", [])
    assert engine.measured(cfg, 0, None, 1.0, bf16=False) == {}


def test_several_processes_share_the_cores_without_torchruns_omp_banner(tmp_path: Path) -> None:
    """torchrun sets OMP_NUM_THREADS=1 for nproc > 1 and prints a banner about it (issue 34 item 8): the entrypoint
    sets the cores per process first, the trainer's own rule; a value the job sets is kept."""
    from launcher.runtime.cpu import usable_cpus

    script = tmp_path / "threads.py"
    script.write_text(
        "import os\nos.write(1, f\"threads {os.environ['RANK']} {os.environ['OMP_NUM_THREADS']}\\n\".encode())\n"
    )
    command = [sys.executable, "-m", "launcher.runtime.entrypoint", "--run-name", "r", "--save-dir",
               str(tmp_path / "out"), "--nproc", "2", "--", sys.executable, str(script)]  # fmt: skip
    environ = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=180, env=environ)
    text = result.stdout + result.stderr
    assert result.returncode == 0, text
    share = max(1, usable_cpus() // 2)
    assert sorted(line for line in text.splitlines() if line.startswith("threads")) == [
        f"threads 0 {share}", f"threads 1 {share}"
    ], text  # fmt: skip
    assert "OMP_NUM_THREADS environment variable" not in text and "*****" not in text
    kept = subprocess.run(command, capture_output=True, text=True, timeout=180, env={**environ, "OMP_NUM_THREADS": "3"})
    assert sorted(line for line in kept.stdout.splitlines() if line.startswith("threads")) == [
        "threads 0 3", "threads 1 3"
    ], kept.stdout + kept.stderr  # fmt: skip


def test_one_process_leaves_the_threads_to_torch() -> None:
    assert entrypoint.compute_threads({}, 1) == {}
    assert entrypoint.compute_threads({"OMP_NUM_THREADS": "4"}, 2) == {}
    assert entrypoint.compute_threads({}, 2)["OMP_NUM_THREADS"].isdigit()


def test_node_0_records_the_data_staging_in_the_run_folder_before_the_syncer_starts(
    s3_kind: StoreKind,  # noqa: F811 - the fixture
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`launch status` during staging: the syncer (which copies the trainer's record) is not running yet, so
    node 0 writes the record to the run folder of the checkpoint store itself; the other nodes write nothing."""
    from launcher.runs.progress import read_data_progress

    for name, value in s3_kind.env.items():
        monkeypatch.setenv(name, value)
    data = s3_kind.store()
    for key in ("train/0/a.png", "train/1/b.png", "val/0/c.png", "val/1/d.png"):
        data.put_bytes(key, key.encode() * 100)
    ckpt = tmp_path / "ckpt"
    args = entrypoint.parse_args(["--run-name", "r", "--checkpoint-uri", str(ckpt), "--", "train", f"data={data.uri}"])
    node = lambda rank: rendezvous.Rendezvous("vertex", 2, rank, "workerpool0-0", 2222)  # noqa: E731
    assert entrypoint.staging_progress(args, node(1)) is None
    assert entrypoint.staging_progress(entrypoint.parse_args(["--run-name", "r", "--", "train"]), LOCAL) is None
    environ = {"LAUNCHER_DATA_DIR": str(tmp_path / "data")}
    staged = entrypoint._stage_data(args, environ, entrypoint.staging_progress(args, node(0)))
    assert staged.command[1] != f"data={data.uri}"  # fetched to this node's disk
    assert [p.name for p in (ckpt / "r").iterdir()] == ["data-progress.json"]  # no lease, no checkpoint: no syncer
    record = json.loads((ckpt / "r" / "data-progress.json").read_text())
    assert (record["phase"], record["files"], record["files_total"], record["uri"]) == ("staged", 4, 4, data.uri)
    found = read_data_progress({"checkpoint": {"uri": str(ckpt)}, "resources": {"nodes": 2}}, "r")
    line = found.line(now=found.time) if found else ""
    assert line.startswith(f"data: staged 4 files, 0.0 MB from {data.uri} in ") and line.endswith(
        "(node 0 of 2, 0s ago)"
    ), line
