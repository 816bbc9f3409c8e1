"""The slurm backend on a real Slurm: slurmctld and two slurmd (node1, node2) on this machine (.ci/slurm-cluster.sh),
the built training image in Slurm's own OCI containers (srun --container=BUNDLE; the bundle made from the image's
layers, tests/conformance/slurm_cluster.py), the jobs submitted, followed and stopped by the backend itself.

1. The trainer, 2 nodes x 1 process: world size 2 from its own output; `launch stop` (scancel) mid-epoch 2 ends the
   job STOPPED, every node saved and exited 143, the checkpoint with its manifest is in the shared store; the same
   spec again resumes from the store's last.pt at the saved epoch and step and finishes both epochs.
2. A user's own program (`code:`), 2 nodes: node2 is set down (`scontrol update ... state=down`) mid-run; the job ends
   NODE_FAIL, read as the retryable node_failure ending; with the node back, the same spec resumes from the
   program's saved step and finishes.

Run it as root, under the machine's heavy-work lock: `flock /tmp/heavy.lock pytest tests/conformance/test_slurm.py`.
The image must hold this checkout's sources (as every conformance test asks); before it is rebuilt,
LAUNCHER_SLURM_SOURCE_BIND=1 binds this checkout's launcher/ read-only over the image's installed package instead.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from launcher.api import Job, Launcher
from launcher.backends.slurm import SlurmBackend
from launcher.plan import Ending, JobState
from launcher.spec import validate_spec
from launcher.state.jobs import JobRegistry
from tests import pace
from tests.conformance.cluster import store_program_results, store_results, wait_until
from tests.conformance.scenario import PROGRAM_COMMAND, PROGRAM_STEPS, SIGTERM_EXIT, program_folder
from tests.conformance.slurm_cluster import (
    cluster_available,
    make_bundle,
    remove_bundle,
    scontrol,
    start_cluster,
    stop_cluster,
)
from tests.conftest import require_service
from tests.docker_base import TRAIN_IMAGE, docker_client, train_image_or_skip

REPO = Path(__file__).resolve().parents[2]
EPOCHS = 2
TRAIN = {
    "model": "resnet18",
    "epochs": EPOCHS,
    "imgsz": 32,
    "batch": 32,
    "optimizer": "AdamW",
    "lr0": 0.002,
    "lrf": 0.01,
    "cos_lr": True,
    "warmup_epochs": 1,
    "scale": 0.3,
    "cache": "ram",
    "workers": 1,
    "data": "digits",
}
PHASE_S = 900


@pytest.fixture(scope="module")
def slurm_image() -> str:
    why = cluster_available()
    require_service("slurm cluster", why is None, why or "")
    if os.environ.get("LAUNCHER_SLURM_SOURCE_BIND") == "1":
        client, why = docker_client()
        require_service("docker", client is not None, why)
        client.images.get(TRAIN_IMAGE)
        return TRAIN_IMAGE
    client, why = docker_client()
    require_service("docker", client is not None, why)
    return train_image_or_skip(client)


@pytest.fixture(scope="module")
def shared(slurm_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """The cluster up, and the folders every node shares: the checkpoint store, the jobs' folders, the bundle."""
    root = tmp_path_factory.mktemp("slurm-shared")
    root.chmod(0o755)
    folders = {name: root / name for name in ("ckpts", "jobs", "bundle", "state")}
    for folder in folders.values():
        folder.mkdir()
    source = REPO / "launcher" if os.environ.get("LAUNCHER_SLURM_SOURCE_BIND") == "1" else None
    make_bundle(slurm_image, folders["bundle"], [folders["ckpts"]], source=source)
    start_cluster()
    try:
        yield folders
    finally:
        stop_cluster()
        remove_bundle(folders["bundle"])


def _launcher(shared: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> Launcher:
    monkeypatch.setenv("LAUNCHER_STATE_DIR", str(shared["state"]))
    return Launcher(SlurmBackend(poll_s=1.0), jobs=JobRegistry())


def _spec(name: str, shared: dict[str, Path], **raw: Any) -> Any:
    body = {
        "name": name,
        "resources": {"nodes": 2, "gpus": 0},
        "checkpoint": {"uri": str(shared["ckpts"]), "every": 1},
        "limits": {"max_runtime": "30m"},
        "slurm": {
            "container": "oci",
            "bundle": str(shared["bundle"]),
            "job_root": str(shared["jobs"]),
            "partition": "debug",
        },
        **raw,
    }
    return validate_spec(body, REPO / "job.yaml", REPO)


def _logs(job: Job) -> str:
    return "\n".join(job.logs())


def _wait_for(job: Job, marker: str) -> str:
    limit = pace.scaled(PHASE_S)
    wait_until(lambda: marker in _logs(job) or job.status().finished, limit, 1.0)
    logs = _logs(job)
    assert marker in logs, f"no {marker!r} within {limit:.0f}s ({job.status()}):\n{logs[-6000:]}"
    return logs


def _finish(job: Job) -> Any:
    status = job.wait(poll=1.0, timeout=pace.scaled(PHASE_S))
    assert status.finished, f"job {job.id} did not finish: {status}\n{_logs(job)[-6000:]}"
    return status


def _resume(node: str) -> bool:
    try:
        scontrol("update", f"nodename={node}", "state=resume")
    except subprocess.CalledProcessError as exc:
        print(f"slurm conformance: resume {node}: {exc.stderr.strip()}")
        return "State=IDLE" in scontrol("show", "node", node)
    return True


def _exit_codes(logs: str) -> list[int]:
    return [int(code) for code in re.findall(r"^\[launcher\] exit code (\d+)$", logs, re.MULTILINE)]


def test_the_trainer_on_two_slurm_nodes_stops_mid_epoch_and_resumes(
    shared: dict[str, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    launcher = _launcher(shared, monkeypatch)
    spec = _spec("slurm-trainer", shared, train=TRAIN)
    job = launcher.submit(spec)
    assert job.ref.native_id.isdigit() and job.ref.extra["dir"] == f"{shared['jobs']}/{job.id}"
    _wait_for(job, f"epoch 1/{EPOCHS}:")
    time.sleep(3)  # into epoch 2
    stop_at = time.time()
    assert job.cancel()  # what `launch stop` does: scancel
    status = _finish(job)
    logs = _logs(job)
    assert status.state is JobState.STOPPED, f"{status}\n{logs[-6000:]}"
    assert "x 2 process(es)" in logs, f"the trainer did not run as one job of world size 2:\n{logs[-6000:]}"
    assert "[launcher] slurm: node 0/2" in logs and "[launcher] slurm: node 1/2" in logs, logs[-6000:]
    assert _exit_codes(logs) == [SIGTERM_EXIT, SIGTERM_EXIT], f"exit codes after scancel:\n{logs[-6000:]}"
    saved = re.findall(r"stopped by SIGTERM: saved \S+ at epoch (\d+), step (\d+)", logs)
    assert saved, logs[-6000:]
    stopped = store_results(spec.checkpoint.uri, spec.name, {}, tmp_path / "after-stop")
    assert stopped.manifest and (tmp_path / "after-stop" / "last.pt").exists()
    last_sha = hashlib.sha256((tmp_path / "after-stop" / "last.pt").read_bytes()).hexdigest()
    print(f"slurm conformance: stop -> STOPPED in {time.time() - stop_at:.0f} s, saved at epoch/step {saved[-1]}")

    again = launcher.submit(spec)
    status = _finish(again)
    logs = _logs(again)
    assert status.state is JobState.SUCCEEDED, f"{status}\n{logs[-6000:]}"
    resumed = re.findall(r"resuming from \S*last\.pt \(sha256 ([0-9a-f]{64})\): epoch (\d+), step (\d+) of", logs)
    assert resumed == [(last_sha, *saved[-1])], (
        f"expected a resume from the store's last.pt {last_sha[:12]} at {saved[-1]}; it said {resumed}:\n{logs[-6000:]}"
    )
    final = store_results(spec.checkpoint.uri, spec.name, {}, tmp_path / "final")
    assert final.epochs == list(range(1, EPOCHS + 1)), final.rows
    print(f"slurm conformance: final top-1 {final.rows[-1]['top1']} after {EPOCHS} epochs on 2 Slurm nodes")


def test_a_users_program_survives_a_node_failure_classified_as_retryable(
    shared: dict[str, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    launcher = _launcher(shared, monkeypatch)
    folder = program_folder(tmp_path)
    spec = _spec(
        "slurm-program",
        shared,
        code=str(folder),
        command=[*PROGRAM_COMMAND, "--step-seconds", "0.5"],
        train={"data": "digits"},
    )
    job = launcher.submit(spec)
    _wait_for(job, "[program] step 12/")
    scontrol("update", "nodename=node2", "state=down", "reason=conformance-node-failure")
    try:
        status = _finish(job)
    finally:
        resumed = wait_until(lambda: _resume("node2"), 120, 1.0)  # refused while the node is still completing the job
    assert resumed, scontrol("show", "node", "node2")
    logs = _logs(job)
    assert "[program] rank 1 world_size 2 resumed 0 cwd src" in logs, logs[-6000:]
    assert (status.state, status.native_state, status.ending) == (JobState.FAILED, "NODE_FAIL", Ending.NODE_FAILURE), (
        f"{status}\n{logs[-6000:]}"
    )
    assert status.ending is not None and status.ending.retryable
    saved = store_program_results(spec.checkpoint.uri, spec.name, {}, tmp_path / "after-failure")["step"]
    assert saved >= 5, saved
    assert wait_until(lambda: "State=IDLE" in scontrol("show", "node", "node2"), 60, 0.5), scontrol(
        "show", "node", "node2"
    )

    again = launcher.submit(spec)
    status = _finish(again)
    logs = _logs(again)
    assert status.state is JobState.SUCCEEDED, f"{status}\n{logs[-6000:]}"
    for rank in range(2):
        assert f"[program] rank {rank} world_size 2 resumed 1" in logs, logs[-6000:]
        assert f"[program] rank {rank} continues from saved step {saved}" in logs, logs[-6000:]
    assert f"[program] done at step {PROGRAM_STEPS} world_size 2" in logs, logs[-6000:]


def test_the_cluster_answers_estimate_backends_and_refuses_an_unknown_partition(
    shared: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from launcher.errors import LauncherError

    launcher = _launcher(shared, monkeypatch)
    (offer,) = launcher.backend.offers(_spec("slurm-estimate", shared, train=TRAIN))
    assert offer.details.get("queue_wait_s") == 0, offer  # sbatch --test-only on an idle cluster: it would start now
    check = launcher.backend.check()
    assert check.sdk and check.message.startswith("slurm-wlm 22.05") and "oci" in check.message, check
    spec = _spec("slurm-nowhere", shared, train=TRAIN)
    bad = spec.model_copy(update={"slurm": {**spec.slurm, "partition": "gpu"}})
    with pytest.raises(LauncherError, match="The cluster has no partition gpu") as exc:
        launcher.backend.submit(launcher.plan(bad))
    assert "debug" in (exc.value.fix or "")
