"""A user's own program on the local backend, as host processes (and in the image, with Docker): its folder
shipped by content, 2 DDP processes, SIGTERM, then the same spec again resumes from its own saved step."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from launcher.api import Launcher
from launcher.backends.local import LocalBackend
from launcher.spec import validate_spec
from tests.conformance.cluster import store_program_results
from tests.conformance.scenario import PROGRAM_COMMAND, program_folder, program_preempt_then_resume, program_spec
from tests.docker_base import TRAIN_IMAGE, engine_or_skip, remove_job_containers, train_image_or_skip


class LocalJob:
    """A job submitted through the Launcher, seen the way the scenario sees a platform's job."""

    def __init__(self, launcher: Launcher, spec: Any, cleanup: Any = None) -> None:
        self.job = launcher.submit(spec)
        self._cleanup = cleanup

    def logs(self) -> str:
        return "\n".join(self.job.logs())

    def terminate(self) -> None:
        self.job.cancel()

    def wait(self, timeout: float) -> list[int]:
        status = self.job.wait(poll=0.5, timeout=timeout)
        return [status.exit_code] if status.finished else []

    def cleanup(self) -> None:
        if self._cleanup is not None:
            self._cleanup([self.job.id])


def _spec(tmp_path: Path, folder: Path, runtime: str, **raw: Any) -> Any:
    local = {"runtime": runtime, "nproc": 2, **({"python": sys.executable} if runtime == "process" else {})}
    image = {"image": TRAIN_IMAGE} if runtime == "docker" else {}
    keys = program_spec(folder, name="my-program", train={"data": "digits"}, **image,
                        checkpoint={"uri": str(tmp_path / "store")}, local=local, **raw)  # fmt: skip
    return validate_spec(keys, None, tmp_path)


@pytest.mark.slow
def test_a_users_program_resumes_from_its_own_step_after_sigterm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LAUNCHER_DATA_DIR", str(tmp_path / "data"))
    folder = program_folder(tmp_path)
    launcher = Launcher(backend=LocalBackend(state_dir=tmp_path / "state"))
    spec = _spec(tmp_path, folder, "process")
    read = lambda dest: store_program_results(str(tmp_path / "store"), "my-program", {}, dest)  # noqa: E731
    program_preempt_then_resume(lambda: LocalJob(launcher, spec), read, tmp_path, nodes=1, world=2)
    archives = list((tmp_path / "store" / "_code").iterdir())
    assert len(archives) == 1, "the second job of the same code sent nothing"


@pytest.mark.slow
@pytest.mark.docker
def test_in_the_image_a_users_program_resumes_from_its_own_step_after_sigterm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same, in the training image built from images/Dockerfile: the archive unpacked in the container."""
    client = engine_or_skip()
    train_image_or_skip(client)
    monkeypatch.setenv("LAUNCHER_DATA_DIR", str(tmp_path / "data"))
    folder = program_folder(tmp_path)
    launcher = Launcher(backend=LocalBackend(docker_client=client, state_dir=tmp_path / "state"))
    spec = _spec(tmp_path, folder, "docker")
    read = lambda dest: store_program_results(str(tmp_path / "store"), "my-program", {}, dest)  # noqa: E731
    cleanup = lambda ids: remove_job_containers(client, ids)  # noqa: E731
    program_preempt_then_resume(lambda: LocalJob(launcher, spec, cleanup), read, tmp_path, nodes=1, world=2)
    assert (tmp_path / "data" / "code").is_dir(), "the container unpacked the code into this machine's data cache"


@pytest.mark.slow
def test_a_code_change_between_two_jobs_of_one_run_runs_the_new_code_on_the_same_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LAUNCHER_DATA_DIR", str(tmp_path / "data"))
    folder = program_folder(tmp_path)
    launcher = Launcher(backend=LocalBackend(state_dir=tmp_path / "state"))
    quick = ["python", "train.py", "--steps", "4", "--step-seconds", "0"]
    first = LocalJob(launcher, _spec(tmp_path, folder, "process", command=quick))
    assert first.wait(300) == [0], first.logs()[-3000:]
    helper = folder / "helper.py"
    helper.write_text(helper.read_text() + "\nprint('[program] helper version 2', flush=True)\n")
    second = LocalJob(launcher, _spec(tmp_path, folder, "process", command=[*quick[:3], "8", *quick[4:]]))
    assert second.wait(300) == [0], second.logs()[-3000:]
    logs = second.logs()
    assert "[program] helper version 2" in logs and "helper version 2" not in first.logs()
    assert "[program] rank 0 continues from saved step 4" in logs and "[program] done at step 8" in logs
    assert len(list((tmp_path / "store" / "_code").iterdir())) == 2, "a changed folder is a new archive"
    assert PROGRAM_COMMAND[:2] == ["python", "train.py"]
