"""How a job ended, per backend, from what its platform reports (each backend's ENDINGS table).

SageMaker through moto's DescribeTrainingJob, Vertex AI and Azure ML through their real client
libraries against the HTTP fakes, the local backend with real processes: every retryable ending
(preempted, capacity, node_failure) and the non-retryable ones (user_error, unknown) as the
platform documents them.
"""

from __future__ import annotations

import os
import signal
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from launcher.backends.local import EXIT_FILE, OOM_FILE, LocalBackend
from launcher.plan import Ending, JobRef, JobState
from launcher.spec import validate_spec
from tests.backends import test_aws, test_azure, test_gcp
from tests.backends.fake_azureml import FakeAzure
from tests.backends.fake_vertex import FakeGoogle
from tests.backends.test_aws import aws_env  # noqa: F401 - the moto fixture
from tests.backends.test_gcp import fake as vertex  # noqa: F401 - the Vertex HTTP fake

P, C, N, U, X = Ending.PREEMPTED, Ending.CAPACITY, Ending.NODE_FAILURE, Ending.USER_ERROR, Ending.UNKNOWN

# ---------------------------------------------------------------- SageMaker (moto)

INTERRUPTED = [
    {"Status": "Starting"},
    {"Status": "Training"},
    {"Status": "Interrupted"},
    {"Status": "MaxWaitTimeExceeded"},
]
NEVER_STARTED = [{"Status": "Starting"}, {"Status": "MaxWaitTimeExceeded"}]


@pytest.mark.parametrize(("native", "secondary", "reason", "transitions", "ending"), [
    ("Failed", "Failed", "CapacityError: Unable to provision requested ML compute capacity. Please retry using a different ML instance type.", None, C),
    ("Failed", "Failed", "InsufficientInstanceCapacity: no ml.p4d.24xlarge capacity in us-east-1a", None, C),
    ("Failed", "Failed", "ResourceLimitExceeded: The account-level service limit 'ml.p4d.24xlarge for spot training job usage' is 0", None, C),
    ("Failed", "Failed", "InternalServerError: We encountered an internal error. Please try again.", None, N),
    ("Stopped", "MaxWaitTimeExceeded", "", INTERRUPTED, P),
    ("Stopped", "MaxWaitTimeExceeded", "", NEVER_STARTED, C),
    ("Failed", "Failed", "AlgorithmError: ExecuteUserScriptError: Command python -m launcher.runtime.entrypoint exit code 1", None, U),
    ("Failed", "Failed", "ClientError: Please ensure the IAM role has access to s3://b/x", None, U),
    ("Stopped", "MaxRuntimeExceeded", "", None, U),
    ("Failed", "Failed", "Something SageMaker never documented", None, X),
    ("Completed", "Completed", "", None, None),
    ("Stopped", "Stopped", "", None, None),  # StopTrainingJob: the user's stop, never retried
])  # fmt: skip
def test_sagemaker_endings(
    aws_env: Any, native: str, secondary: str, reason: str, transitions: Any, ending: Ending | None
) -> None:  # noqa: F811
    be = test_aws.backend(session=aws_env)
    ref = be.submit(be.plan(test_aws.make_spec(aws={"output_uri": "s3://my-bucket/out"}), test_aws.JOB_ID))
    job = test_aws._moto_job(test_aws.JOB_ID)
    job.training_job_status, job.secondary_status, job.failure_reason = native, secondary, reason
    if transitions is not None:
        job.secondary_status_transitions = transitions
    status = be.status(ref)
    assert status.ending is ending
    assert status.ending is None or status.ending.retryable is (ending in (P, C, N))


def test_a_refused_sagemaker_submit_is_classified_by_the_same_table() -> None:
    be = test_aws.backend()
    assert be.ending_of("Could not create SageMaker job x: ResourceLimitExceeded: quota is 0.") is C
    assert be.ending_of("Could not create SageMaker job x: ValidationException: bad value.") is U


# ---------------------------------------------------------------- Vertex AI (HTTP fake)


@pytest.mark.parametrize(("state", "code", "message", "ending"), [
    ("JOB_STATE_FAILED", 8, "The zone 'us-central1-a' does not have enough resources available to fulfill the request (ZONE_RESOURCE_POOL_EXHAUSTED).", C),
    ("JOB_STATE_FAILED", 8, "Quota exceeded for aiplatform.googleapis.com/custom_model_training_nvidia_t4_gpus.", C),
    ("JOB_STATE_FAILED", 9, "Job failed due to STOCKOUT of the requested Spot VMs.", C),
    ("JOB_STATE_FAILED", 10, "The replica workerpool0-0 was preempted.", P),
    ("JOB_STATE_FAILED", 3, "The replica workerpool0-0 exited with a non-zero status of 143.", P),
    ("JOB_STATE_FAILED", 13, "Internal error occurred for the current attempt.", N),
    ("JOB_STATE_FAILED", 14, "The service is currently unavailable.", N),
    ("JOB_STATE_FAILED", 3, "The replica workerpool0-0 exited with a non-zero status of 1.", U),
    ("JOB_STATE_FAILED", 7, "Permission 'storage.objects.get' denied on resource.", U),
    ("JOB_STATE_FAILED", 2, "Something Vertex never documented.", X),
    ("JOB_STATE_SUCCEEDED", 0, "", None),
    ("JOB_STATE_CANCELLED", 0, "", None),
])  # fmt: skip
def test_vertex_endings(vertex: FakeGoogle, state: str, code: int, message: str, ending: Ending | None) -> None:  # noqa: F811
    backend = test_gcp.VertexBackend(**test_gcp._clients(vertex))
    ref = backend.submit(backend.plan(test_gcp._spec(test_gcp.CASES["gcp_cpu"])))
    vertex.set_state(ref.native_id, state, message or None, code)
    assert backend.status(ref).ending is ending


# ---------------------------------------------------------------- Azure ML (HTTP fake)


@pytest.mark.parametrize(("code", "message", "ending"), [
    ("SystemError", "The low priority node was preempted; the job can be resubmitted.", P),
    ("UserError", "Compute nodes were evicted (spot eviction).", P),
    ("UserError", "Quota exceeded for Standard_NC24s_v3 in eastus: requested 24, available 0.", C),
    ("SystemError", "AllocationFailed: Allocation failed. We do not have sufficient capacity for the requested VM size in this region.", C),
    ("SystemError", "Execution failed: node became unusable during the job.", N),
    ("SystemError", "An internal service error occurred.", N),
    ("UserError", "Execution failed. User process 'python' exited with status code 143.", P),
    ("UserError", "Execution failed. User process 'python' exited with status code 1.", U),
    ("", "Something Azure ML never documented.", X),
])  # fmt: skip
def test_azure_endings(code: str, message: str, ending: Ending) -> None:
    fake = FakeAzure()
    backend = test_azure._backend(fake)
    ref = backend.submit(backend.plan(test_azure._spec(test_azure.CASES["azure_cpu_only"]), job_id="cpu-1"))
    fake.statuses["cpu-1"] = ["Failed"]
    fake.errors["cpu-1"], fake.error_codes["cpu-1"] = message, code
    status = backend.status(ref)
    assert (status.state, status.ending) == (JobState.FAILED, ending)


def test_azure_completed_and_canceled_have_no_ending() -> None:
    fake = FakeAzure()
    backend = test_azure._backend(fake)
    ref = backend.submit(backend.plan(test_azure._spec(test_azure.CASES["azure_cpu_only"]), job_id="cpu-2"))
    fake.statuses["cpu-2"] = ["Completed", "Canceled"]
    assert [backend.status(ref).ending for _ in range(2)] == [None, None]


# ---------------------------------------------------------------- local (real processes)

SLEEPER = textwrap.dedent(
    """
    import signal, sys, time
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))  # as the entrypoint exits on SIGTERM
    print("up", flush=True)
    time.sleep(60)
    """
)


def _submit(tmp_path: Path, argv: list[str]) -> tuple[LocalBackend, JobRef]:
    backend = LocalBackend(state_dir=tmp_path / "state")
    spec = validate_spec({"name": "ends", "local": {"runtime": "process", "python": sys.executable}}, None, tmp_path)
    plan = backend.plan(spec, "ends-1")
    plan = type(plan)(
        plan.backend, plan.job_name, plan.spec, {"runtime": "process", "process": {"argv": argv, "env": {}}}
    )
    ref = backend.submit(plan)
    return backend, ref


def _wait_up(backend: LocalBackend, ref: JobRef) -> None:
    assert next(iter(backend.logs(ref, follow=True))) == "up"


def _ended(backend: LocalBackend, ref: JobRef) -> Any:
    list(backend.logs(ref, follow=True))
    return LocalBackend(state_dir=backend._state_dir).status(ref)


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGKILL, 137)])
def test_local_job_killed_from_outside_is_preempted(tmp_path: Path, sig: int, code: int) -> None:
    backend, ref = _submit(tmp_path, [sys.executable, "-c", SLEEPER])
    _wait_up(backend, ref)
    if sig == signal.SIGTERM:
        os.killpg(int(ref.native_id), sig)  # the whole group, as a reclaim or a shutdown does
    else:
        os.kill(_child_of(int(ref.native_id)), sig)  # the job, not its supervisor
    status = _ended(backend, ref)
    assert (status.state, status.exit_code, status.ending) == (JobState.FAILED, code, P)


def test_local_job_stopped_by_the_user_has_no_ending(tmp_path: Path) -> None:
    backend, ref = _submit(tmp_path, [sys.executable, "-c", SLEEPER])
    _wait_up(backend, ref)
    backend.cancel(ref)
    status = _ended(backend, ref)
    assert (status.state, status.ending) == (JobState.STOPPED, None)


def test_local_exit_code_is_a_user_error_and_a_lost_job_a_node_failure(tmp_path: Path) -> None:
    backend, ref = _submit(tmp_path, [sys.executable, "-c", "import sys; sys.exit(3)"])
    assert _ended(backend, ref).ending is U
    _subreaper()
    backend, ref = _submit(tmp_path / "lost", [sys.executable, "-c", SLEEPER])
    _wait_up(backend, ref)
    os.killpg(int(ref.native_id), signal.SIGKILL)  # supervisor and job: no exit code is ever written
    _reap(backend, ref)
    status = LocalBackend(state_dir=tmp_path / "lost" / "state").status(ref)
    assert (status.state, status.native_state, status.ending) == (JobState.FAILED, "lost", N)


def test_docker_oom_kill_is_a_user_error_after_its_container_is_removed(tmp_path: Path) -> None:
    backend = LocalBackend(state_dir=tmp_path / "state")
    job_dir = tmp_path / "state" / "local" / "oom-1"
    job_dir.mkdir(parents=True)
    (job_dir / OOM_FILE).write_text("1")
    (job_dir / EXIT_FILE).write_text("137")
    status = backend.status(JobRef("oom-1", "local", "c0ffee", {"runtime": "docker", "dir": str(job_dir)}))
    assert (status.exit_code, status.ending) == (137, U) and "out of memory" in status.message


def _child_of(pid: int) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        if children:
            return int(children[0])
        time.sleep(0.05)
    raise AssertionError("the supervisor started no job")


def _reap(backend: LocalBackend, ref: JobRef) -> None:
    """Wait for the supervisor and for its orphaned job (this process is their subreaper): a zombie
    left in the group would keep it looking alive, which on a real machine init would reap."""
    backend._procs.pop(ref.id).wait(timeout=30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.killpg(int(ref.native_id), 0)
        except ProcessLookupError:
            return
        try:
            os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.05)


def _subreaper() -> None:
    import ctypes  # noqa: PLC0415

    PR_SET_CHILD_SUBREAPER = 36  # prctl(2)
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
