"""The supervised run of tests/launcher/test_recovery.py in the training image (local Docker runtime):
the first attempt's container is sent SIGTERM mid-run (`docker kill --signal TERM`, as a reclaim does),
the supervisor resubmits, the next container resumes from the store and results.csv holds each epoch once.

Run it where the engine and the image built from this checkout are (the lead's machine, .ci/run):
    python -m pytest -q -m docker tests/backends/test_local_docker_recovery.py
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from launcher.plan import JobState
from tests.docker_base import TRAIN_IMAGE, engine_or_skip, remove_job_containers, train_image_or_skip
from tests.launcher.runs import test_supervisor as rec
from tests.launcher.runs.test_supervisor import run_env  # noqa: F401 - the run's folder, registry and program

pytestmark = pytest.mark.docker


def test_a_reclaimed_container_is_resubmitted_and_resumes(run_env: dict[str, Any]) -> None:  # noqa: F811
    client = engine_or_skip()
    train_image_or_skip(client)
    job = Path(run_env["dir"] / "job.yaml")
    spec = yaml.safe_load(job.read_text())
    spec.update(image=TRAIN_IMAGE, local={"runtime": "docker"})
    job.write_text(yaml.safe_dump(spec))
    supervisor = rec._launch(run_env, "job.yaml")
    started: list[str] = []
    try:
        first = rec._attempt_running(run_env, 1, 2)
        started.append(first.id)
        client.containers.get(first.native_id).kill(signal="SIGTERM")  # a reclaim, not `launch stop`
        out, _ = supervisor.communicate(timeout=600)
        assert supervisor.returncode == 0, out
        jobs = run_env["jobs"]()
        attempts = jobs.attempts(jobs.runs()[0].id)
        started += [a.id for a in attempts]
        assert [(a.state, a.ending) for a in attempts] == [(JobState.FAILED, "preempted"), (JobState.SUCCEEDED, None)]
        assert rec._epochs_in_store(run_env) == list(range(1, rec.EPOCHS + 1))
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
        remove_job_containers(client, started)
