"""The slurm backend: the contract kit, golden sbatch scripts per container kind, the readers of squeue/sacct
output across Slurm versions, and submit/status/logs/cancel over a recording command runner.

The real cluster (slurmctld + two slurmd) runs in tests/conformance/test_slurm.py.
"""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path
from typing import Any, Sequence

import pytest

from launcher.backends.slurm import (
    JOB_DIR_PLACEHOLDER,
    Completed,
    SlurmBackend,
    parse_sacct,
    parse_squeue_json,
    parse_squeue_text,
    parse_state_file,
    pyxis_image,
    script_of,
    slurm_time,
)
from launcher.contract import ENTRYPOINT, EntrypointArgs
from launcher.errors import LauncherError, SpecError
from launcher.plan import Ending, JobRef, JobState, Plan
from launcher.spec import validate_spec
from launcher.testing import check_backend

GOLDEN = Path(__file__).parent / "golden"
BASE: dict[str, Any] = {
    "name": "digits",
    "image": "registry.example/train:1",
    "resources": {"gpus": 8, "nodes": 2, "cpus": 16, "memory": 64, "gpu_type": "A100"},
    "checkpoint": {"uri": "/shared/ckpts"},
    "limits": {"max_runtime": "4h"},
}
KINDS = {
    "pyxis": {
        "partition": "gpu",
        "account": "vision",
        "qos": "high",
        "constraint": "ib",
        "container": "pyxis",
        "job_root": "/shared/jobs",
    },
    "apptainer": {
        "partition": "gpu",
        "container": "apptainer",
        "image": "/shared/images/train.sif",
        "job_root": "/shared/jobs",
    },
    "oci": {"container": "oci", "bundle": "/shared/bundles/train", "job_root": "/shared/jobs"},
    "none": {"container": "none", "python": "/opt/venv/bin/python", "job_root": "/shared/jobs"},
}


def _spec(**raw: Any) -> Any:
    return validate_spec({**BASE, **raw}, Path("job.yaml"), Path("/srv"))


def srun_argv(plan: Plan) -> list[str]:
    """The srun line of the batch script, split as bash splits it."""
    line = next(line for line in plan.payload["script"] if line.startswith("srun "))
    return shlex.split(line)


def argv_of(plan: Plan) -> list[str]:
    """The entrypoint's arguments inside the srun line (for the contract kit)."""
    argv = srun_argv(plan)
    return argv[argv.index(ENTRYPOINT[-1]) + 1 :]


def test_the_slurm_backend_keeps_the_launcher_contract(tmp_path: Path) -> None:
    raw = {**BASE, "slurm": KINDS["pyxis"]}
    examples = [GOLDEN.parents[2] / "examples" / "slurm.yaml"]
    plan = check_backend(
        SlurmBackend, raw, tmp_path, argv_of=argv_of, golden=GOLDEN / "slurm_contract.yaml", examples=examples
    )
    assert EntrypointArgs.parse(argv_of(plan)).checkpoint_uri == "/shared/ckpts"


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_the_sbatch_script_is_the_reviewed_one_for_each_container_kind(kind: str) -> None:
    script = script_of(SlurmBackend().plan(_spec(slurm=KINDS[kind], secrets=["WANDB_API_KEY"], env={"FOO": "a,b c"})))
    path = GOLDEN / f"slurm_{kind}.sbatch"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_text(script)
    assert script == path.read_text(), (
        f"the script differs from {path}; if intended, rerun with UPDATE_GOLDEN=1 and review"
    )


def test_the_script_asks_for_the_allocation_and_never_an_unlimited_time() -> None:
    plan = SlurmBackend().plan(_spec(slurm=KINDS["pyxis"]))
    head = [line.removeprefix("#SBATCH ") for line in plan.payload["script"] if line.startswith("#SBATCH ")]
    assert {
        "--nodes=2",
        "--ntasks-per-node=1",
        "--cpus-per-task=16",
        "--mem=64G",
        "--gpus-per-node=a100:8",
        "--partition=gpu",
        "--account=vision",
        "--qos=high",
        "--constraint=ib",
        "--time=0-04:06:00",
        "--output=/shared/jobs/digits/output.log",
        "--signal=TERM@30",
        "--no-requeue",
    } <= set(head)
    unlimited = SlurmBackend().plan(_spec(slurm=KINDS["pyxis"], limits={}))
    assert "#SBATCH --time=1-00:00:00" in unlimited.payload["script"]
    assert any("never unlimited" in note for note in unlimited.notes)


def test_srun_kills_the_job_when_a_node_fails_and_runs_the_whole_entrypoint_in_pyxis() -> None:
    argv = srun_argv(SlurmBackend().plan(_spec(slurm=KINDS["pyxis"])))
    assert argv[:2] == ["srun", "--kill-on-bad-exit=1"]
    assert "--container-image=registry.example#train:1" in argv  # enroot's form of a registry
    assert "--container-mounts=/shared/ckpts:/shared/ckpts:rw" in argv
    assert (
        list(ENTRYPOINT) == argv[argv.index("python") : argv.index("python") + 3]
    )  # pyxis does not run the ENTRYPOINT


def test_srun_exports_only_what_the_job_needs_and_secrets_only_by_name() -> None:
    plan = SlurmBackend().plan(_spec(slurm=KINDS["oci"], secrets=["TOKEN"], env={"FOO": "1"}))
    exported = next(a for a in srun_argv(plan) if a.startswith("--export=")).removeprefix("--export=").split(",")
    assert exported == [
        "PYTHONUNBUFFERED",
        "LAUNCHER_JOB_ID",
        "LAUNCHER_DATA_DIR",
        "FOO",
        "LAUNCHER_SECRET_REFS",
        "TOKEN",
    ]
    assert (
        "export LAUNCHER_DATA_DIR=/tmp/launcher-data" in plan.payload["script"]
    )  # the container's root may be read-only
    assert "ALL" not in exported  # 22.05: ALL puts the submitter's PATH over the image's
    assert not any(line.startswith("export TOKEN") for line in plan.payload["script"])
    none = next(a for a in srun_argv(SlurmBackend().plan(_spec(slurm=KINDS["none"]))) if a.startswith("--export="))
    assert none.startswith("--export=ALL,")  # no container: the submitter's environment, as TorchX runs


def test_apptainer_runs_the_entrypoint_with_gpus_and_binds() -> None:
    argv = srun_argv(SlurmBackend().plan(_spec(slurm=KINDS["apptainer"])))
    at = argv.index("apptainer")
    assert argv[at : at + 5] == ["apptainer", "exec", "--nv", "--bind", "/shared/ckpts:/shared/ckpts:rw"]
    assert argv[at + 5 : at + 9] == ["/shared/images/train.sif", *ENTRYPOINT]


def test_bad_slurm_options_are_refused_in_one_sentence() -> None:
    with pytest.raises(LauncherError, match="slurm.bundle is not set"):
        SlurmBackend().plan(_spec(slurm={"container": "oci"}))
    for bad in ({"container": "docker"}, {"partition": "gpu;rm"}, {"job_root": "relative"}, {"job_root": "/a b"}):
        with pytest.raises(SpecError, match="slurm"):
            SlurmBackend().plan(_spec(slurm=bad))


def test_slurm_time_and_pyxis_image() -> None:
    assert slurm_time(60) == "0-00:01:00" and slurm_time(61) == "0-00:02:00" and slurm_time(90000) == "1-01:00:00"
    assert pyxis_image("nvcr.io/nvidia/pytorch:24.01") == "nvcr.io#nvidia/pytorch:24.01"
    assert pyxis_image("localhost:5000/train") == "localhost:5000#train"
    assert pyxis_image("team/train:1") == "team/train:1" and pyxis_image("train") == "train"


# ---------------------------------------------------------------- squeue / sacct across versions

SQUEUE_22_05 = {
    "meta": {"Slurm": {"version": {"major": 22, "micro": 8, "minor": 5}}},
    "errors": [],
    "jobs": [
        {"job_id": 7, "job_state": "RUNNING", "state_reason": "None", "exit_code": 0, "nodes": "node[1-2]"},
        {"job_id": 8, "job_state": "NODE_FAIL", "state_reason": "None", "exit_code": 15},
        {"job_id": 6, "job_state": "FAILED", "state_reason": "NonZeroExitCode", "exit_code": 36608},
    ],
}
SQUEUE_23_02 = {
    "jobs": [
        {
            "job_id": 9,
            "job_state": ["PENDING"],
            "state_reason": "Resources",
            "exit_code": {"status": "PENDING", "return_code": 0},
        }
    ]
}
SQUEUE_23_11 = {
    "jobs": [
        {
            "job_id": 10,
            "job_state": ["FAILED"],
            "state_reason": "NonZeroExitCode",
            "exit_code": {
                "status": ["EXIT_CODE"],
                "return_code": {"set": True, "infinite": False, "number": 3},
                "signal": {"id": {"set": False, "infinite": False, "number": 0}, "name": ""},
            },
        },
        {
            "job_id": 11,
            "job_state": ["CANCELLED", "REQUEUED"],
            "state_reason": "None",
            "exit_code": {
                "status": ["SIGNALED"],
                "return_code": {"set": True, "infinite": False, "number": 0},
                "signal": {"id": {"set": True, "infinite": False, "number": 15}, "name": "TERM"},
            },
        },
    ]
}


def test_squeue_json_of_each_version() -> None:
    running = parse_squeue_json(json.dumps(SQUEUE_22_05), "7")
    assert running is not None and (running.state, running.exit_code) == ("RUNNING", 0)
    node_fail = parse_squeue_json(json.dumps(SQUEUE_22_05), "8")
    assert node_fail is not None and (node_fail.state, node_fail.exit_code) == ("NODE_FAIL", 143)  # killed by SIGTERM
    failed_22 = parse_squeue_json(json.dumps(SQUEUE_22_05), "6")  # 22.05 writes the wait status: 143 << 8
    assert failed_22 is not None and failed_22.exit_code == 143
    pending = parse_squeue_json(json.dumps(SQUEUE_23_02), "9")
    assert pending is not None and (pending.state, pending.reason) == ("PENDING", "Resources")
    failed = parse_squeue_json(json.dumps(SQUEUE_23_11), "10")
    assert failed is not None and (failed.state, failed.exit_code) == ("FAILED", 3)
    signaled = parse_squeue_json(json.dumps(SQUEUE_23_11), "11")
    assert signaled is not None and (signaled.state, signaled.exit_code) == ("CANCELLED", 143)
    assert parse_squeue_json(json.dumps(SQUEUE_22_05), "99") is None
    with pytest.raises(ValueError):
        parse_squeue_json("squeue: error: unrecognized option '--json'", "7")


def test_squeue_text_sacct_and_the_state_file() -> None:
    text = "12|RUNNING|None\n13|PENDING|Priority\n"
    pending = parse_squeue_text(text, "13")
    assert pending is not None and (pending.state, pending.reason) == ("PENDING", "Priority")
    assert parse_squeue_text(text, "1") is None
    sacct = "21|CANCELLED by 1000|0:15\n22|OUT_OF_MEMORY|0:125\n23|COMPLETED|0:0\n24|FAILED|2:0\n"
    jobs = {job: parse_sacct(sacct, job) for job in ("21", "22", "23", "24")}
    assert [(j.state, j.exit_code) for j in jobs.values() if j is not None] == [
        ("CANCELLED", 143),
        ("OUT_OF_MEMORY", 0),
        ("COMPLETED", 0),
        ("FAILED", 2),
    ]
    assert parse_state_file("FAILED 143\n").exit_code == 143  # type: ignore[union-attr]
    assert parse_state_file("RUNNING\n").state == "RUNNING" and parse_state_file("") is None  # type: ignore[union-attr]


# ---------------------------------------------------------------- submit / status / logs / cancel


class Cluster:
    """Records each command and answers from a table: argv[0] -> Completed (or a function of the argv)."""

    def __init__(self, tmp: Path, answers: dict[str, Any]) -> None:
        self.calls: list[tuple[list[str], str | None, dict[str, str] | None]] = []
        self.answers = answers
        self.tmp = tmp

    def __call__(self, argv: Sequence[str], input: str | None = None, env: Any = None) -> Completed:
        self.calls.append((list(argv), input, dict(env) if env else None))
        answer = self.answers.get(argv[0])
        if callable(answer):
            return answer(list(argv))
        if answer is not None:
            return answer
        from launcher.backends.slurm import _run_local  # mkdir, cat, test, touch, tail run for real

        return _run_local(argv, input=input, env=env)

    def ran(self, name: str) -> list[list[str]]:
        return [argv for argv, _, _ in self.calls if argv[0] == name]


def _backend(tmp_path: Path, **answers: Any) -> tuple[SlurmBackend, Cluster]:
    cluster = Cluster(tmp_path, {"sbatch": Completed(0, "4242\n"), **answers})
    return SlurmBackend(
        run=cluster, state_dir=tmp_path / "state", sleep=lambda s: None, environ={"TOKEN": "s3cr3t"}
    ), cluster


def test_submit_fills_the_job_folder_and_passes_secrets_in_sbatchs_environment_only(tmp_path: Path) -> None:
    backend, cluster = _backend(tmp_path)
    plan = backend.plan(_spec(name="d", slurm={"container": "oci", "bundle": "/b"}, secrets=["TOKEN"]), "d-1")
    assert JOB_DIR_PLACEHOLDER in script_of(plan)
    cluster.answers["test"] = Completed(0, "")  # the bundle is there
    ref = backend.submit(plan)
    job_dir = tmp_path / "state" / "slurm" / "d-1"
    assert (ref.native_id, ref.extra["dir"]) == ("4242", str(job_dir)) and job_dir.is_dir()
    argv, script, env = next(c for c in cluster.calls if c[0][0] == "sbatch")
    assert argv == ["sbatch", "--parsable"] and env is not None and env["TOKEN"] == "s3cr3t"
    assert script is not None and "s3cr3t" not in script and f"--output={job_dir}/output.log" in script
    assert JOB_DIR_PLACEHOLDER not in script


def test_a_partition_the_cluster_lacks_is_refused_before_sbatch(tmp_path: Path) -> None:
    backend, cluster = _backend(tmp_path, sinfo=Completed(0, "debug\ngpu\n"))
    with pytest.raises(LauncherError, match="no partition a100") as exc:
        backend.submit(backend.plan(_spec(slurm={"partition": "a100", "container": "none"})))
    assert "debug, gpu" in exc.value.fix and not cluster.ran("sbatch")
    bad_bundle, cluster = _backend(tmp_path, test=Completed(1, ""))
    with pytest.raises(LauncherError, match="no config.json"):
        bad_bundle.submit(bad_bundle.plan(_spec(slurm={"container": "oci", "bundle": "/nowhere"})))
    no_account, _ = _backend(tmp_path, sacctmgr=Completed(0, "physics\n"))
    with pytest.raises(LauncherError, match="no account vision"):
        no_account.submit(no_account.plan(_spec(slurm={"account": "vision", "container": "none"})))
    no_dbd, cluster = _backend(tmp_path, sacctmgr=Completed(1, "", "sacctmgr: error: Problem talking to the database"))
    no_dbd.submit(no_dbd.plan(_spec(slurm={"account": "vision", "container": "none"})))  # no accounting: sbatch decides
    assert cluster.ran("sbatch")


def test_sbatch_refusals_read_as_one_sentence_and_classify(tmp_path: Path) -> None:
    backend, _ = _backend(
        tmp_path,
        sbatch=Completed(
            1,
            "",
            "sbatch: error: Batch job submission failed: Invalid account or account/partition combination specified\n",
        ),
    )
    with pytest.raises(
        LauncherError, match="^Slurm refused the job: Batch job submission failed: Invalid account"
    ) as exc:
        backend.submit(backend.plan(_spec(slurm={"container": "none"})))
    assert backend.ending_of(exc.value.message) is Ending.USER_ERROR
    assert backend.ending_of("Slurm refused the job: Slurm temporarily unable to accept job") is Ending.CAPACITY


def _ref(tmp_path: Path, state: str | None = None) -> JobRef:
    job_dir = tmp_path / "job"
    job_dir.mkdir(exist_ok=True)
    if state is not None:
        (job_dir / "state").write_text(state + "\n")
    return JobRef("d-1", "slurm", "77", {"dir": str(job_dir)})


def _squeue(state: str, code: Any = 0, reason: str = "None") -> Completed:
    """squeue --json as 23.02+ writes it."""
    job = {
        "job_id": 77,
        "job_state": [state],
        "state_reason": reason,
        "exit_code": {"status": "x", "return_code": code},
    }
    return Completed(0, json.dumps({"jobs": [job]}))


NO_ACCOUNTING = Completed(1, "", "sacct: error: Slurm accounting storage is disabled")
FORGOTTEN = Completed(1, "", "slurm_load_jobs error: Invalid job id specified")


@pytest.mark.parametrize(
    "state, expected, ending",
    [
        ("PENDING", JobState.PENDING, None),
        ("RUNNING", JobState.RUNNING, None),
        ("COMPLETING", JobState.RUNNING, None),
        ("PREEMPTED", JobState.FAILED, Ending.PREEMPTED),
        ("NODE_FAIL", JobState.FAILED, Ending.NODE_FAILURE),
        ("BOOT_FAIL", JobState.FAILED, Ending.NODE_FAILURE),
        ("TIMEOUT", JobState.FAILED, Ending.USER_ERROR),
        ("OUT_OF_MEMORY", JobState.FAILED, Ending.USER_ERROR),
        ("FAILED", JobState.FAILED, Ending.USER_ERROR),
        ("COMPLETED", JobState.SUCCEEDED, None),
        ("CANCELLED", JobState.STOPPED, None),
    ],
)
def test_slurm_states_map_to_job_states_and_endings(
    tmp_path: Path, state: str, expected: JobState, ending: Ending | None
) -> None:
    backend, _ = _backend(tmp_path, squeue=_squeue(state, 0 if state == "COMPLETED" else 1), sacct=NO_ACCOUNTING)
    status = backend.status(_ref(tmp_path))
    assert (status.state, status.ending) == (expected, ending)
    assert status.ending is None or status.ending.retryable == (state in ("PREEMPTED", "NODE_FAIL", "BOOT_FAIL"))


def test_squeue_text_then_the_state_file_when_slurm_is_silent(tmp_path: Path) -> None:
    def squeue(argv: list[str]) -> Completed:
        return Completed(1, "", "squeue: error: unrecognized option '--json'") if "--json" in argv else FORGOTTEN

    backend, _ = _backend(tmp_path, squeue=squeue, sacct=NO_ACCOUNTING)
    stopped = backend.status(_ref(tmp_path, "FAILED 143"))
    assert (stopped.state, stopped.exit_code, stopped.ending) == (JobState.FAILED, 143, Ending.USER_ERROR)
    (tmp_path / "job" / "stopped").write_text("")
    assert backend.status(_ref(tmp_path)).state is JobState.STOPPED
    (tmp_path / "job" / "stopped").unlink()
    assert backend.status(_ref(tmp_path, "COMPLETED 0")).state is JobState.SUCCEEDED
    lost = backend.status(_ref(tmp_path, "RUNNING"))  # the batch host died before the script could write its end
    assert (lost.state, lost.ending) == (JobState.FAILED, Ending.NODE_FAILURE)
    timed_out = backend.status(_ref(tmp_path, "FAILED 124"))
    assert timed_out.message == "stopped: limits.max_runtime reached" and timed_out.ending is Ending.USER_ERROR
    text, _ = _backend(
        tmp_path,
        squeue=lambda argv: Completed(1, "", "no --json") if "--json" in argv else Completed(0, "77|RUNNING|None\n"),
    )
    assert text.status(_ref(tmp_path)).state is JobState.RUNNING


def test_a_finished_job_takes_its_exit_code_from_sacct_else_the_state_file(tmp_path: Path) -> None:
    backend, _ = _backend(
        tmp_path, squeue=Completed(0, "77|FAILED|NonZeroExitCode\n"), sacct=Completed(0, "77|FAILED|3:0\n")
    )
    backend_json = _backend(
        tmp_path,
        squeue=lambda a: Completed(1, "") if "--json" in a else Completed(0, "77|FAILED|x\n"),
        sacct=Completed(0, "77|FAILED|3:0\n"),
    )[0]
    assert backend_json.status(_ref(tmp_path)).exit_code == 3
    from_file = _backend(
        tmp_path,
        squeue=lambda a: Completed(1, "") if "--json" in a else Completed(0, "77|FAILED|x\n"),
        sacct=NO_ACCOUNTING,
    )[0]
    assert from_file.status(_ref(tmp_path, "FAILED 5")).exit_code == 5
    assert backend.status(_ref(tmp_path)).state is JobState.FAILED


def test_an_unreachable_controller_is_unknown_not_lost(tmp_path: Path) -> None:
    backend, _ = _backend(
        tmp_path, squeue=Completed(1, "", "slurm_load_jobs error: Unable to contact slurm controller")
    )
    status = backend.status(_ref(tmp_path, "RUNNING"))
    assert status.state is JobState.UNKNOWN and "Unable to contact" in status.message


def test_logs_tail_the_output_file_and_cancel_is_scancel(tmp_path: Path) -> None:
    states = iter(["RUNNING", "RUNNING", "COMPLETED"])
    ref = _ref(tmp_path)
    log = tmp_path / "job" / "output.log"
    log.write_text("first\nsec")

    def squeue(argv: list[str]) -> Completed:
        state = next(states, "COMPLETED")
        if state == "COMPLETED":
            with open(log, "a") as out:
                out.write("ond\nlast\n")
        return _squeue(state)

    backend, cluster = _backend(tmp_path, squeue=squeue, sacct=NO_ACCOUNTING, scancel=Completed(0, ""))
    assert list(backend.logs(ref, follow=True)) == ["first", "second", "last"]
    running, cluster = _backend(tmp_path, squeue=_squeue("RUNNING"), scancel=Completed(0, ""))
    running.cancel(ref)
    assert cluster.ran("scancel") == [["scancel", "77"]] and (tmp_path / "job" / "stopped").exists()


def test_a_login_host_runs_every_command_over_ssh_with_secrets_on_stdin(tmp_path: Path) -> None:
    backend, cluster = _backend(tmp_path, ssh=Completed(0, "55;tl\n"))
    ref = backend.submit(
        backend.plan(_spec(name="d", slurm={"container": "none", "login": "me@login"}, secrets=["TOKEN"]), "d-1")
    )
    assert (ref.native_id, ref.extra["login"], ref.extra["dir"]) == ("55", "me@login", ".launcher/slurm/d-1")
    mkdir, sbatch = cluster.ran("ssh")
    assert sbatch[-1].endswith("exec sbatch --parsable")  # the values are read from stdin first, then sbatch runs
    assert mkdir[:4] == ["ssh", "-o", "BatchMode=yes", "me@login"] and mkdir[-1] == "mkdir -p .launcher/slurm/d-1"
    argv, stdin, _ = cluster.calls[-1]
    assert "s3cr3t" not in " ".join(argv) and stdin is not None and "s3cr3t" not in stdin
    assert stdin.startswith("TOKEN czNjcjN0\n\n#!/bin/bash")  # base64 of the value, then the script


def test_the_estimate_row_is_the_clusters_own_price_and_the_queue_wait_slurm_predicts(tmp_path: Path) -> None:
    from datetime import datetime

    said = "sbatch: Job 3 to start at 2026-12-07T17:20:00 using 2 processors on nodes node[1-2] in partition gpu\n"
    cluster = Cluster(tmp_path, {"sbatch": Completed(0, "", said)})
    backend = SlurmBackend(run=cluster, now=lambda: datetime(2026, 12, 7, 17, 0, 0))
    (offer,) = backend.offers(_spec(slurm={"partition": "gpu", "container": "none", "gpu_hour_price": 0.5}))
    assert (offer.backend, offer.gpu_type, offer.gpus, offer.nodes, offer.price_per_hour) == (
        "slurm",
        "A100",
        8,
        2,
        4.0,
    )
    assert offer.details["queue_wait_s"] == 1200 and offer.startup_s == 1260
    argv, script, _ = cluster.calls[-1]
    assert argv == ["sbatch", "--test-only"] and script is not None and "#SBATCH --partition=gpu" in script
    silent = SlurmBackend(run=Cluster(tmp_path, {"sbatch": Completed(127, "", "sbatch: command not found")}))
    (offer,) = silent.offers(_spec(slurm={"container": "none"}))
    assert offer.price_per_hour == 0.0 and "queue_wait_s" not in offer.details  # default: the cluster is free to use


def test_launch_backends_says_whether_sbatch_answers_and_which_containers_srun_runs(tmp_path: Path) -> None:
    ready = SlurmBackend(
        run=Cluster(
            tmp_path,
            {
                "sbatch": Completed(0, "slurm 23.11.4\n"),
                "srun": Completed(0, "  --container-image=[USER@][REGISTRY#]IMAGE\n"),
                "sh": Completed(0, "/usr/bin/apptainer\n"),
            },
        )
    )
    check = ready.check()
    assert check.sdk and check.message == "slurm 23.11.4; containers: none, pyxis, apptainer"
    away = SlurmBackend(
        run=Cluster(tmp_path, {"ssh": Completed(255, "", "ssh: connect to host login port 22: No route to host")}),
        environ={"LAUNCHER_SLURM_LOGIN": "me@login"},
    )
    check = away.check()
    assert not check.sdk and check.message.startswith("sbatch is not reachable on me@login (ssh: connect to host login")


def test_the_supervisor_resubmits_a_slurm_job_whose_node_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from launcher.api import Launcher
    from launcher.runs.supervisor import Supervisor
    from launcher.state.jobs import JobRegistry

    monkeypatch.setenv("LAUNCHER_STATE_DIR", str(tmp_path / "state"))
    ids = iter(["101", "102"])
    ended = {"101": "NODE_FAIL", "102": "COMPLETED"}

    def squeue(argv: list[str]) -> Completed:
        job = argv[argv.index("-j") + 1]
        return Completed(0, _squeue(ended[job], 0 if ended[job] == "COMPLETED" else 1).stdout.replace("77", job))

    def sbatch(argv: list[str]) -> Completed:
        return Completed(0, next(ids) + "\n") if "--parsable" in argv else Completed(0, "slurm 22.05.8\n")

    cluster = Cluster(tmp_path, {"sbatch": sbatch, "squeue": squeue, "sacct": NO_ACCOUNTING})
    backend = SlurmBackend(run=cluster, state_dir=tmp_path / "state", sleep=lambda s: None)
    spec = _spec(
        name="rec",
        slurm={"container": "none", "job_root": str(tmp_path / "jobs")},
        checkpoint={"uri": str(tmp_path / "store")},
        recovery={"max_attempts": 3, "backoff": {"initial": 1, "max": 1}},
    )
    jobs = JobRegistry()
    supervisor = Supervisor.start(
        spec,
        "slurm",
        jobs,
        lambda name: Launcher(backend, jobs=jobs),
        check_budget=False,
        stream_logs=False,
        poll_s=0,
        sleep=lambda s: None,
    )
    assert supervisor.run() == 0
    attempts = jobs.attempts(supervisor.run_id)
    assert [a.native_id for a in attempts] == ["101", "102"]
    assert [a.state for a in attempts] == [JobState.FAILED, JobState.SUCCEEDED]
