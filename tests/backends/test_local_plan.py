"""Golden plans of the local backend, and what a plan must never do.

Regenerate the golden files after an intended change with
`UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/backends/test_local_plan.py`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from launcher.api import Launcher
from launcher.backends.local import LocalBackend, LocalOptions, shm_bytes
from launcher.contract import EntrypointArgs
from launcher.errors import LauncherError, SpecError
from launcher.plan import REDACTED
from launcher.spec import JobSpec, validate_spec

GOLDEN = Path(__file__).parent / "golden"

BASE: dict[str, Any] = {
    "name": "digits",
    "train": {"data": "/srv/data/digits", "epochs": 3, "imgsz": 32, "batch": 64, "workers": 4},
    "checkpoint": {"uri": "/srv/checkpoints", "every": 1, "keep": 2},
    "env": {"LOG_LEVEL": "info"},
    "secrets": ["WANDB_API_KEY"],
}

CASES: dict[str, dict[str, Any]] = {
    "local_docker_gpu": {**BASE, "resources": {"gpus": 2}, "local": {"runtime": "docker"}},
    "local_docker_cpu": {
        **BASE,
        "local": {
            "runtime": "docker",
            "nproc": 2,
            "shm_size": "4g",
            "user": "1000:1000",
            "network": "host",
            "mounts": [{"source": "/srv/cache", "target": "/cache"}],
        },
    },  # fmt: skip
    "local_process": {
        **BASE,
        "command": ["python", "ddp.py", "--steps", "3"],
        "local": {"runtime": "process", "nproc": 2},
    },
    "local_auto": {**BASE, "local": {"runtime": "auto"}},
}


def _spec(raw: dict[str, Any]) -> JobSpec:
    return validate_spec(raw, Path("job.yaml"), Path("/srv"))


@pytest.mark.parametrize("case", sorted(CASES))
def test_plan_matches_golden_file(case: str) -> None:
    text = LocalBackend().plan(_spec(CASES[case])).to_yaml()
    golden = GOLDEN / f"{case}.yaml"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.write_text(text)
    assert text == golden.read_text()


def test_docker_payload_parses_into_the_sdks_own_types() -> None:
    from docker.models.containers import _create_container_args
    from docker.types import ContainerConfig

    payload = LocalBackend().plan(_spec(CASES["local_docker_gpu"])).request()["docker"]
    args = _create_container_args({**payload, "version": "1.43"})
    name = args.pop("name")
    config = ContainerConfig("1.43", **args)
    assert name == "digits"
    assert config["HostConfig"]["DeviceRequests"][0]["Count"] == 2
    assert config["HostConfig"]["DeviceRequests"][0]["Driver"] == "nvidia"
    assert sorted(config["HostConfig"]["Binds"]) == ["/srv/checkpoints:/checkpoints:rw", "/srv/data/digits:/data:ro"]
    assert config["HostConfig"]["ShmSize"] == shm_bytes(2, 4)


def test_job_id_names_the_container_and_labels_it() -> None:
    plan = LocalBackend().plan(_spec(CASES["local_docker_gpu"]), job_id="digits-20260101-000000-abcd")
    docker = plan.payload["docker"]
    assert plan.job_name == docker["name"] == "digits-20260101-000000-abcd"
    assert docker["labels"]["launcher.job"] == "digits-20260101-000000-abcd"
    assert docker["command"][:2] == ("--run-name", "digits")  # the checkpoint run folder stays the spec name


def test_max_runtime_is_enforced_by_the_entrypoint_in_docker_and_the_supervisor_for_processes() -> None:
    limited = {**CASES["local_docker_cpu"], "limits": {"max_runtime": "2h"}}
    docker = LocalBackend().plan(_spec(limited)).payload["docker"]
    assert EntrypointArgs.parse(docker["command"]).max_runtime == 7200
    process = LocalBackend().plan(_spec({**CASES["local_process"], "limits": {"max_runtime": "2h"}})).payload["process"]
    assert process["max_runtime_s"] == 7200 and "--max-runtime" not in process["argv"]


def test_plan_is_pure_and_deterministic(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = _spec(CASES["local_auto"])
    before = spec.model_dump()
    first = LocalBackend().plan(spec)
    monkeypatch.setenv("WANDB_API_KEY", "s3cr3t-value")
    monkeypatch.chdir("/")
    second = LocalBackend().plan(spec)
    assert spec.model_dump() == before
    assert first.to_yaml() == second.to_yaml()
    assert "s3cr3t-value" not in second.to_yaml()


def test_secret_values_never_reach_the_printed_plan() -> None:
    spec = _spec({**CASES["local_process"], "env": {"LOG_LEVEL": "info"}})
    plan = LocalBackend().plan(spec)
    assert plan.secrets == ("WANDB_API_KEY",)
    assert yaml.safe_load(plan.to_yaml())["payload"]["process"]["env"]["WANDB_API_KEY"] in (None, REDACTED)


def test_cpu_job_has_no_device_request_and_docker_default_shm_is_never_used() -> None:
    payload = LocalBackend().plan(_spec({**BASE, "local": {"runtime": "docker"}})).payload["docker"]
    assert "device_requests" not in payload
    assert payload["shm_size"] == f"{shm_bytes(1, 0) // 1024 // 1024}m", "the CPU trainer runs no loader workers"
    assert shm_bytes(1, 0) >= 1024 * 1024 * 1024


def _shm(raw: dict[str, Any]) -> str:
    return str(
        LocalBackend()
        .plan(_spec({**raw, "local": {"runtime": "docker", **raw.get("local", {})}}))
        .payload["docker"]["shm_size"]
    )


@pytest.mark.parametrize(
    ("change", "nproc", "workers"),
    [
        ({}, 1, 0),  # CPU: the compute threads take every core, the batches are made between steps
        ({"env": {"OMP_NUM_THREADS": "1"}}, 1, 4),  # cores left free: up to train.workers, as many as the cores allow
        ({"local": {"nproc": 2}}, 2, 4),  # torchrun sets OMP_NUM_THREADS=1 for two processes: the same
        ({"env": {"OMP_NUM_THREADS": "1"}, "train": {**BASE["train"], "cache": "disk"}}, 1, 0),  # cached: none on CPU
        ({"resources": {"gpus": 2}}, 2, 4),
        ({"resources": {"gpus": 1}, "train": {**BASE["train"], "cache": "disk"}}, 1, 2),  # cached on a GPU: two
        ({"resources": {"gpus": 1}, "train": {**BASE["train"], "cache": "ram"}}, 1, 4),  # ram may fall back: all
        ({"command": ["python", "train.py"], "code": "/srv"}, 1, 8),  # a program of your own: train.workers as is
    ],
)
def test_dev_shm_is_sized_for_the_loader_workers_the_trainer_will_run(
    change: dict[str, Any], nproc: int, workers: int
) -> None:
    """Issue 33: /dev/shm followed the raw train.workers although the trainer caps it (launcher.runtime.cpu)."""
    raw = {**BASE, **change}
    if "command" in raw:
        raw["train"] = {k: v for k, v in raw["train"].items() if k not in ("workers",)}
    assert _shm(raw) == f"{shm_bytes(nproc, workers) // 1024 // 1024}m"


def test_gpu_device_ids_select_devices() -> None:
    spec = _spec({**BASE, "local": {"runtime": "auto", "gpus": "0,3"}})
    plan = LocalBackend().plan(spec)
    assert plan.payload["docker"]["device_requests"][0]["device_ids"] == ("0", "3")
    assert plan.payload["process"]["env"]["CUDA_VISIBLE_DEVICES"] == "0,3"
    assert "--gpus" in plan.payload["process"]["argv"]


def test_gpu_ids_disagreeing_with_resources_is_an_error() -> None:
    spec = _spec({**BASE, "resources": {"gpus": 4}, "local": {"gpus": ["0"]}})
    with pytest.raises(LauncherError, match="local.gpus lists 1"):
        LocalBackend().plan(spec)


def test_multi_node_is_refused_with_the_uniform_error() -> None:
    with pytest.raises(LauncherError, match="The local backend does not support multi_node: it runs one node"):
        Launcher(LocalBackend()).plan(_spec({**BASE, "resources": {"nodes": 2}}))


def test_spot_is_planned_with_a_note_that_it_is_ignored() -> None:
    plan = Launcher(LocalBackend()).plan(_spec({**BASE, "resources": {"spot": True}}))
    assert "spot is ignored: this machine has no spot capacity" in plan.notes


def test_builtin_dataset_is_not_mounted() -> None:
    spec = _spec({**BASE, "train": {"data": "digits"}, "checkpoint": {"uri": "s3://bucket/runs"}})
    docker = LocalBackend().plan(spec).payload["docker"]
    assert docker["volumes"] == {}
    assert "data=digits" in docker["command"]
    assert docker["command"][docker["command"].index("--checkpoint-uri") + 1] == "s3://bucket/runs"


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"runtim": "docker"}, "local.runtim: unknown key 'runtim'; did you mean 'runtime'?"),
        ({"runtime": "podman"}, "local.runtime"),
        ({"shm_size": "lots"}, "'lots' is not a size"),
        ({"mounts": [{"source": "/data", "target": "data"}]}, "'data' is not an absolute path"),
    ],
)
def test_bad_local_options_name_the_key(section: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match=message.replace("?", r"\?").replace(".", r"\.")):
        LocalBackend().plan(_spec({**BASE, "local": section}))


def test_options_model_defaults() -> None:
    opts = LocalOptions()
    assert opts.runtime == "auto"
    assert opts.python == "python"


def test_a_launcher_line_names_the_host_folder_a_mount_target_comes_from() -> None:
    """Issue 34 item 8, without a container: only `[launcher]` lines, only whole path segments."""
    from types import SimpleNamespace

    from launcher.backends.local import host_line, host_paths

    container = SimpleNamespace(attrs={"Mounts": [
        {"Source": "/home/me/runs", "Destination": "/checkpoints"},
        {"Source": "/home/me/digits", "Destination": "/data"},
        {"Source": "/home/me/elsewhere", "Destination": "/mnt/other"},  # a mount of the spec's own: left alone
    ]})  # fmt: skip
    mounts = host_paths(container)
    assert mounts == {"/checkpoints": "/home/me/runs", "/data": "/home/me/digits"}
    assert host_line("[launcher] no complete checkpoint at /checkpoints/q; starting fresh", mounts) == (
        "[launcher] no complete checkpoint at /home/me/runs/q; starting fresh"
    )
    assert host_line("[launcher] training data /data -> /data (LAUNCHER_DATA)", mounts) == (
        "[launcher] training data /home/me/digits -> /home/me/digits (LAUNCHER_DATA)"
    )
    assert host_line("[launcher] /checkpointsx /tmp/checkpoints /data.old", mounts) == (
        "[launcher] /checkpointsx /tmp/checkpoints /data.old"
    )  # fmt: skip
    assert host_line("[train] saved /checkpoints/q", mounts) == "[train] saved /checkpoints/q"
