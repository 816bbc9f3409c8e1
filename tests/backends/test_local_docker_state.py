"""Docker runtime hygiene (issue 13): secret values stay out of the container's configuration,
and a finished container is removed once its log and exit code are kept.

Only /bin/sh and the image's own ENTRYPOINT are used, so any build of the training image
will do (the shim under test does not depend on the launcher code inside the image).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from launcher.backends.local import LocalBackend
from launcher.plan import JobState
from launcher.spec import validate_spec
from tests.conftest import require_service
from tests.docker_base import TRAIN_IMAGE, engine_or_skip, remove_job_containers

pytestmark = pytest.mark.docker
SECRET = "tok-'quoted' $HOME `x` 123"


@pytest.fixture(scope="module")
def client() -> Any:
    import docker

    found = engine_or_skip()
    try:
        found.images.get(TRAIN_IMAGE)
    except docker.errors.ImageNotFound:  # any build will do (see above), but one must exist: CI fails without it
        require_service("training image", False, f"{TRAIN_IMAGE} is not built here (images/build-offline.sh)")
    return found


@pytest.fixture
def started(client: Any) -> Iterator[list[str]]:
    names: list[str] = []
    yield names
    remove_job_containers(client, names)


def _backend(client: Any, tmp_path: Path) -> LocalBackend:
    return LocalBackend(docker_client=client, state_dir=tmp_path / "state")


def _submit(client: Any, tmp_path: Path, started: list[str], **raw: Any) -> tuple[LocalBackend, Any]:
    local = {"runtime": "docker", **raw.pop("local", {})}
    spec = validate_spec({"name": "hyg", "image": TRAIN_IMAGE, **raw, "local": local}, None, tmp_path)
    backend = _backend(client, tmp_path)
    plan = backend.plan(spec, f"hyg-{time.time_ns()}")
    started.append(plan.job_name)
    return backend, backend.submit(plan)


@pytest.mark.timeout(300)
def test_secret_reaches_a_custom_entrypoint_but_not_the_container_config(
    client: Any, started: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HYG_TOKEN", SECRET)
    script = 'printf "%s\\n" "$HYG_TOKEN"'  # quotes, $ and backticks arrive verbatim
    backend, ref = _submit(
        client, tmp_path, started, secrets=["HYG_TOKEN"], local={"entrypoint": ["/bin/sh", "-c", script, "sh"]}
    )
    assert list(backend.logs(ref, follow=True)) == [SECRET]
    attrs = client.containers.get(ref.native_id).attrs  # still there: nobody asked its status yet
    assert not any(item.startswith("HYG_TOKEN") for item in attrs["Config"]["Env"])
    assert "quoted" not in json.dumps(attrs)
    assert not (backend.job_dir(ref.id) / "secrets.env").exists()  # the host copy is gone once the container started


@pytest.mark.timeout(300)
def test_secret_reaches_the_images_own_entrypoint(
    client: Any, started: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HYG_TOKEN", "abc-42")
    backend, ref = _submit(client, tmp_path, started, secrets=["HYG_TOKEN"],
                           command=["sh", "-c", 'echo "len=${#HYG_TOKEN}"'])  # fmt: skip
    logs = list(backend.logs(ref, follow=True))
    assert "len=6" in logs, logs
    attrs = client.containers.get(ref.native_id).attrs
    assert "abc-42" not in json.dumps(attrs)
    assert attrs["Config"]["Entrypoint"][:2] == ["/bin/sh", "-c"]


@pytest.mark.timeout(300)
def test_finished_container_is_removed_once_its_log_is_kept(client: Any, started: list[str], tmp_path: Path) -> None:
    import docker

    backend, ref = _submit(
        client, tmp_path, started, local={"entrypoint": ["/bin/sh", "-c", "echo one; echo two; exit 3", "sh"]}
    )
    assert list(backend.logs(ref, follow=True)) == ["one", "two"]
    status = backend.status(ref)
    assert (status.state, status.exit_code) == (JobState.FAILED, 3)
    with pytest.raises(docker.errors.NotFound):
        client.containers.get(ref.native_id)
    fresh = _backend(client, tmp_path)  # like `launch status` / `launch logs` later
    again = fresh.status(ref)
    assert (again.state, again.exit_code) == (JobState.FAILED, 3)
    assert list(fresh.logs(ref)) == ["one", "two"]
    fresh.cancel(ref)  # a finished job keeps its outcome
    assert fresh.status(ref).state == JobState.FAILED


@pytest.mark.timeout(300)
def test_a_stopped_container_is_removed_by_the_stop_itself(client: Any, started: list[str], tmp_path: Path) -> None:
    """Issue 34: `launch stop` of a detached job left an `Exited (143)` container until `launch status` ran."""
    import docker

    backend, ref = _submit(
        client, tmp_path, started, local={"entrypoint": ["/bin/sh", "-c", "echo up; sleep 300", "sh"]}
    )
    deadline = time.time() + 60
    while client.containers.get(ref.native_id).status != "running" and time.time() < deadline:
        time.sleep(0.2)
    _backend(client, tmp_path).cancel(ref)  # a fresh backend: as `launch stop` in another process
    with pytest.raises(docker.errors.NotFound):
        client.containers.get(ref.native_id)
    assert _backend(client, tmp_path).status(ref).state == JobState.STOPPED


@pytest.mark.timeout(300)
def test_the_entrypoints_lines_name_the_folders_on_this_machine(
    client: Any, started: list[str], tmp_path: Path
) -> None:
    """Issue 34 item 8: `[launcher] checkpoint 1 synced to /checkpoints/...` named a folder only the container has."""
    store = tmp_path / "store"
    said = "echo '[launcher] checkpoint 1 (epoch 1) synced to /checkpoints/hyg: 1 byte sent'; echo 'mine: /checkpoints'"
    backend, ref = _submit(client, tmp_path, started, checkpoint={"uri": str(store)},
                           local={"entrypoint": ["/bin/sh", "-c", said, "sh"]})  # fmt: skip
    want = [f"[launcher] checkpoint 1 (epoch 1) synced to {store}/hyg: 1 byte sent", "mine: /checkpoints"]
    assert list(backend.logs(ref, follow=True)) == want  # the program's own lines stay as printed
    backend.status(ref)  # finished: the log is kept and the container removed
    assert list(_backend(client, tmp_path).logs(ref)) == want
