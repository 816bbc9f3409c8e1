"""The Docker runtime against the real engine.

The container is the training image built from images/Dockerfile
(tests/docker_base.py: TRAIN_IMAGE, built by images/build-offline.sh), so the
real entrypoint, torch and torchrun run inside it, as the submitting user. GPU device requests cannot run here (no GPU
runtime); they are checked as payloads in test_local_plan.py and refused with
a clear error below.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml
from click.testing import CliRunner

from launcher.api import Launcher
from launcher.backends.local import LocalBackend
from launcher.cli import main
from launcher.errors import LauncherError
from launcher.plan import JobState
from launcher.spec import validate_spec
from tests.conftest import ctrl_c_reaches_it
from tests.docker_base import TRAIN_IMAGE, engine_or_skip, remove_job_containers, train_image_or_skip

pytestmark = pytest.mark.docker
REPO = Path(__file__).resolve().parents[2]

DDP_SCRIPT = textwrap.dedent(
    """
    import os, torch, torch.distributed as dist
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    value = torch.tensor([float(rank + 1)])
    dist.all_reduce(value)
    print(f"rank {rank} all_reduce={value.item():.0f}", flush=True)
    if rank == 0:
        try:
            open("/data/probe", "w")
            print("data writable", flush=True)
        except OSError:
            print("data read-only", flush=True)
        print("data files", sorted(os.listdir("/data")), flush=True)
        open(os.path.join(os.environ["LAUNCHER_SAVE_DIR"], "done.txt"), "w").write("ok")
    dist.destroy_process_group()
    """
)


@pytest.fixture(scope="module")
def client() -> Any:
    found = engine_or_skip()
    train_image_or_skip(found)
    return found


@pytest.fixture
def jobs(client: Any) -> Iterator[list[str]]:
    """Job ids a test starts; their containers are removed afterwards."""
    started: list[str] = []
    yield started
    remove_job_containers(client, started)


def _spec(tmp_path: Path, **raw: Any) -> Any:
    local = {"runtime": "docker", **raw.pop("local", {})}
    return validate_spec({"name": "dock", "image": TRAIN_IMAGE, **raw, "local": local}, None, tmp_path)


def _shell(script: str) -> dict[str, Any]:
    """local options that replace the image entrypoint with a shell script (no torch: fast)."""
    return {"entrypoint": ["/bin/sh", "-c", script, "sh"]}


def test_ddp_job_runs_in_a_container_through_the_cli(client: Any, jobs: list[str], tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "sample.txt").write_text("x")
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump({
        "name": "dock-ddp",
        "image": TRAIN_IMAGE,
        "command": ["python", "-c", DDP_SCRIPT],
        "train": {"data": str(tmp_path / "data"), "workers": 0},
        "checkpoint": {"uri": str(tmp_path / "ckpt")},
        "local": {"runtime": "docker", "nproc": 2},
    }))  # fmt: skip
    result = CliRunner().invoke(main, ["run", str(job), "--ignore-budget"], catch_exceptions=False)
    record = Launcher().jobs.latest()
    assert record is not None
    jobs.append(record.id)
    assert result.exit_code == 0, result.output
    assert "rank 0 all_reduce=3" in result.output and "rank 1 all_reduce=3" in result.output
    assert "data read-only" in result.output and "['sample.txt']" in result.output
    pulled = CliRunner().invoke(main, ["ckpt", "pull", str(tmp_path / "ckpt" / "dock-ddp"), str(tmp_path / "out")])
    assert pulled.exit_code == 0 and (tmp_path / "out" / "done.txt").read_text() == "ok"  # synced to the store
    # the run ended: its container is gone (found by its label), its log kept for `launch logs`
    assert client.containers.list(all=True, filters={"label": f"launcher.job={record.id}"}) == []
    assert "rank 0 all_reduce=3" in CliRunner().invoke(main, ["logs", record.id]).output


def test_exit_code_is_passed_through(client: Any, jobs: list[str], tmp_path: Path) -> None:
    backend = LocalBackend(docker_client=client)
    spec = _spec(tmp_path, local=_shell("echo hello from $LAUNCH_GREETING; exit 7"), env={"LAUNCH_GREETING": "docker"})
    plan = backend.plan(spec, f"dock-exit-{time.time_ns()}")
    jobs.append(plan.job_name)
    ref = backend.submit(plan)
    assert list(backend.logs(ref, follow=True)) == ["hello from docker"]
    status = LocalBackend(docker_client=client).status(ref)
    assert (status.state, status.exit_code, status.result_code()) == (JobState.FAILED, 7, 7)


def test_cancel_sends_sigterm_then_records_stopped(client: Any, jobs: list[str], tmp_path: Path) -> None:
    backend = LocalBackend(docker_client=client)
    script = "trap 'echo got TERM; exit 143' TERM; echo up; while true; do sleep 0.1; done"
    plan = backend.plan(_spec(tmp_path, local=_shell(script)), f"dock-stop-{time.time_ns()}")
    jobs.append(plan.job_name)
    ref = backend.submit(plan)
    logs = backend.logs(ref, follow=True)
    assert next(logs) == "up"
    backend.cancel(ref)
    assert "got TERM" in list(logs)
    status = backend.status(ref)
    assert (status.state, status.exit_code) == (JobState.STOPPED, 143)


def test_secret_values_reach_the_container_but_not_the_plan(
    client: Any, jobs: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCK_TOKEN", "tok-123")
    backend = LocalBackend(docker_client=client)
    spec = _spec(tmp_path, secrets=["DOCK_TOKEN"], local=_shell("echo len=${#DOCK_TOKEN}"))
    plan = backend.plan(spec, f"dock-sec-{time.time_ns()}")
    jobs.append(plan.job_name)
    assert "tok-123" not in plan.to_yaml()
    ref = backend.submit(plan)
    assert list(backend.logs(ref, follow=True)) == ["len=7"]


def test_missing_image_is_one_sentence_and_a_fix(client: Any, tmp_path: Path) -> None:
    spec = validate_spec(
        {"name": "noimg", "image": "launcher-test/absent:nope", "local": {"runtime": "docker"}}, None, tmp_path
    )
    backend = LocalBackend(docker_client=client)
    with pytest.raises(LauncherError, match="not on this machine") as err:
        backend.submit(backend.plan(spec, "noimg-1"))
    assert "launch image build" in str(err.value)


def test_gpus_without_an_nvidia_runtime_are_refused(client: Any, tmp_path: Path) -> None:
    if "nvidia" in (client.info().get("Runtimes") or {}):
        pytest.skip("this engine has an NVIDIA runtime")
    backend = LocalBackend(docker_client=client)
    spec = _spec(tmp_path, resources={"gpus": 1})
    with pytest.raises(LauncherError, match="no NVIDIA runtime") as err:
        backend.submit(backend.plan(spec, "gpu-1"))
    assert "resources.gpus: 0" in str(err.value)


def test_engine_not_running_is_one_sentence_and_a_fix(tmp_path: Path) -> None:
    import docker

    dead = docker.DockerClient(base_url=f"unix://{tmp_path}/none.sock", version="1.41")
    backend = LocalBackend(docker_client=dead)
    with pytest.raises(LauncherError, match="Docker engine is not answering") as err:
        backend.submit(backend.plan(_spec(tmp_path), "dead-1"))
    assert "local.runtime: process" in str(err.value)


def test_ctrl_c_in_the_cli_stops_the_container(client: Any, jobs: list[str], tmp_path: Path) -> None:
    script = "trap 'echo got TERM; exit 143' TERM; echo up; while true; do sleep 0.1; done"
    job = tmp_path / "job.yaml"
    job.write_text(
        yaml.safe_dump({"name": "dock-ctrl-c", "image": TRAIN_IMAGE, "local": {"runtime": "docker", **_shell(script)}})
    )
    cli = subprocess.Popen(
        [sys.executable, "-c", "from launcher.cli import main; main()", "run", str(job), "--ignore-budget"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=ctrl_c_reaches_it,
    )  # fmt: skip
    try:
        assert cli.stdout is not None and cli.stdout.readline().strip() == "up"
    finally:
        record = Launcher().jobs.latest()
        jobs.extend([record.id] if record else [])
    cli.send_signal(signal.SIGINT)
    out, err = cli.communicate(timeout=90)
    assert cli.returncode == 130, err
    assert "interrupted: stopping" in err and "Traceback" not in err
    record = Launcher().jobs.get(jobs[0])
    assert record.state is JobState.STOPPED
    assert client.containers.list(all=True, filters={"label": f"launcher.job={record.id}"}) == []  # removed, log kept
    assert "got TERM" in list(Launcher.attach(record.id).logs())  # SIGTERM first: the job could clean up


def test_a_missing_data_folder_is_refused_and_the_checkpoint_folder_is_created(
    client: Any, jobs: list[str], tmp_path: Path
) -> None:
    backend = LocalBackend(docker_client=client)
    spec = _spec(tmp_path, train={"data": str(tmp_path / "no-such-data")}, checkpoint={"uri": str(tmp_path / "ckpt")})
    with pytest.raises(LauncherError, match="no-such-data \\(mounted at /data\\) does not exist") as err:
        backend.submit(backend.plan(spec, "nodata-1"))
    assert "train.data" in str(err.value)
    (tmp_path / "data").mkdir()
    script = _shell("test -d /checkpoints && echo ckpt-mounted")
    spec = _spec(
        tmp_path, train={"data": str(tmp_path / "data")}, checkpoint={"uri": str(tmp_path / "ckpt")}, local=script
    )
    plan = backend.plan(spec, f"ckpt-{time.time_ns()}")
    jobs.append(plan.job_name)
    ref = backend.submit(plan)
    assert list(backend.logs(ref, follow=True)) == ["ckpt-mounted"]
    assert (tmp_path / "ckpt").is_dir()


def test_an_engine_refusal_is_one_sentence_and_leaves_no_container(client: Any, tmp_path: Path) -> None:
    backend = LocalBackend(docker_client=client)
    plan = backend.plan(_spec(tmp_path, local={"network": "no-such-network-xyz"}), f"refused-{time.time_ns()}")
    with pytest.raises(LauncherError, match="Docker refused to start the job: .*no-such-network-xyz"):
        backend.submit(plan)
    assert client.containers.list(all=True, filters={"label": f"launcher.job={plan.job_name}"}) == []


def test_cancel_after_the_end_keeps_the_outcome(client: Any, jobs: list[str], tmp_path: Path) -> None:
    backend = LocalBackend(docker_client=client)
    plan = backend.plan(_spec(tmp_path, local=_shell("exit 0")), f"done-{time.time_ns()}")
    jobs.append(plan.job_name)
    ref = backend.submit(plan)
    list(backend.logs(ref, follow=True))
    backend.cancel(ref)
    assert backend.status(ref).state is JobState.SUCCEEDED


QUICKSTART = REPO / "examples" / "quickstart.yaml"
SHORT = ["--set", "local.runtime=docker", "--set", f"image={TRAIN_IMAGE}", "--set", "train.epochs=1", "--set", "train.fraction=0.25",
         "--ignore-budget"]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("uid", [0, 4242], ids=["as-root", "as-an-ordinary-user"])
def test_quickstart_in_the_image_leaves_files_owned_by_the_submitting_user(client: Any, uid: int) -> None:
    """The image runs as root on the clouds; locally it runs as whoever submits, so the run folder is theirs.

    The ordinary user is a real uid with no home, in the docker group only (setpriv), running
    `launch` from a folder of its own, as a workstation user would. It starts from weights of its own, a file
    only it may read: mounted read-only into the container, read there as that user (issue 33).
    """
    import grp
    import shutil
    import tempfile

    import torch
    import torchvision

    work = Path(tempfile.mkdtemp(prefix="launcher-user-"))
    try:
        shutil.copy(QUICKSTART, work / "quickstart.yaml")
        (work / "state").mkdir()
        os.chown(work, uid, uid)
        os.chown(work / "state", uid, uid)
        work.chmod(0o755)
        torch.save(torchvision.models.resnet18(num_classes=10).state_dict(), work / "mine.pt")
        os.chown(work / "mine.pt", uid, uid)
        (work / "mine.pt").chmod(0o600)
        cmd = [sys.executable, "-c", "from launcher.cli import main; main()", "-b", "local", "quickstart.yaml", *SHORT,
               "--set", "train.pretrained=mine.pt"]  # fmt: skip
        if uid:
            cmd = ["setpriv", f"--reuid={uid}", f"--regid={uid}", f"--groups={grp.getgrnam('docker').gr_gid}", *cmd]
        env = {**os.environ, "HOME": str(work), "LAUNCHER_STATE_DIR": str(work / "state"), "PYTHONPATH": str(REPO)}
        done = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=900, check=False)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert "tensors from /weights/mine.pt (0 skipped" in done.stdout + done.stderr, "the weights were read"
        run = work / "runs" / "quickstart"  # a checkpoint store: manifest.json, manifests/, files/N/last.pt, ...
        stored = [p for p in run.rglob("*") if p.is_file()]
        assert any(p.name == "last.pt" for p in stored) and (run / "manifest.json").is_file()
        for path in stored:
            assert path.stat().st_uid == uid, f"{path} belongs to uid {path.stat().st_uid}, not {uid}"
        assert "PermissionError" not in done.stdout + done.stderr
    finally:
        subprocess.run(["rm", "-rf", str(work)], check=False)
