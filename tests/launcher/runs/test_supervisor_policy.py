"""The supervisor's policy with scripted backends: which endings are retried, when the run moves to
the next backend, the printed bounded backoff, max_attempts, and the dry run of every fallback."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Mapping

import pytest

from launcher.api import Launcher
from launcher.backend import Backend, BackendCheck
from launcher.errors import LauncherError
from launcher.plan import Ending, JobRef, JobState, JobStatus, Plan
from launcher.runs.supervisor import Supervisor, transfer_note
from launcher.spec import validate_spec
from launcher.state.jobs import JobRegistry

P, C, U = Ending.PREEMPTED, Ending.CAPACITY, Ending.USER_ERROR


class Scripted(Backend):
    """Each submitted job ends as the next entry of `script` says (None: succeeds)."""

    def __init__(self, name: str, script: list[Ending | None], ready: bool = True) -> None:
        self.name, self.script, self.ready, self.submitted = name, list(script), ready, []  # type: ignore[misc]
        self.ends: dict[str, Ending | None] = {}

    def plan(self, spec: Any, job_id: str | None = None) -> Plan:
        return Plan(self.name, job_id or spec.name, spec, {"job": job_id})

    def submit(self, plan: Plan, secrets: Mapping[str, str] | None = None) -> JobRef:
        self.submitted.append(plan.job_name)
        self.ends[plan.job_name] = self.script.pop(0)
        return JobRef(plan.job_name, self.name, f"native-{plan.job_name}")

    def status(self, ref: JobRef) -> JobStatus:
        ending = self.ends[ref.id]
        return (
            JobStatus(JobState.SUCCEEDED)
            if ending is None
            else JobStatus(JobState.FAILED, f"ended {ending.value}", 1, ending=ending)
        )

    def logs(self, ref: JobRef, follow: bool = False) -> Iterator[str]:
        return iter(())

    def cancel(self, ref: JobRef) -> None: ...

    def check(self) -> BackendCheck:
        return BackendCheck(self.name, True, self.ready, "ready" if self.ready else "no credentials")


def _run(
    tmp_path: Path, backends: dict[str, Scripted], recovery: dict[str, Any]
) -> tuple[int, list[float], JobRegistry]:
    spec = validate_spec({"name": "pol", "command": ["true"], "recovery": recovery}, None, tmp_path)
    jobs = JobRegistry(tmp_path / "jobs.db")
    waits: list[float] = []
    sup = Supervisor.start(spec, "aws", jobs, lambda name: Launcher(backend=backends[name], jobs=jobs),
                           stream_logs=False, poll_s=0, sleep=waits.append)  # fmt: skip
    return sup.run(), waits, jobs


def _tried(jobs: JobRegistry) -> list[tuple[str, str | None]]:
    run = jobs.runs()[0]
    return [(a.backend, a.ending) for a in jobs.attempts(run.id)]


def test_capacity_backs_off_then_moves_to_the_fallback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    backends = {"aws": Scripted("aws", [C, C]), "gcp": Scripted("gcp", [None])}
    recovery = {
        "max_attempts": 4,
        "fallback": ["gcp"],
        "after_failures": 2,
        "backoff": {"initial": 10, "max": 15, "factor": 2},
    }
    code, waits, jobs = _run(tmp_path, backends, recovery)
    assert code == 0 and waits == [10]  # one capacity retry on aws, then the move needs no wait
    assert _tried(jobs) == [("aws", "capacity"), ("aws", "capacity"), ("gcp", None)]
    assert jobs.runs()[0].state == "succeeded"
    err = capsys.readouterr().err
    assert "waiting 10 s before attempt 2" in err and "moving the run to gcp" in err


def test_backoff_is_exponential_and_bounded(tmp_path: Path) -> None:
    backends = {"aws": Scripted("aws", [C, C, C, None])}
    code, waits, _ = _run(
        tmp_path, backends, {"max_attempts": 4, "after_failures": 9, "backoff": {"initial": 10, "max": 25}}
    )
    assert code == 0 and waits == [10, 20, 25]


def test_a_user_error_is_never_retried_and_max_attempts_ends_the_run(tmp_path: Path) -> None:
    code, _, jobs = _run(tmp_path, {"aws": Scripted("aws", [P, U])}, {"max_attempts": 3})
    assert code == 1 and _tried(jobs) == [("aws", "preempted"), ("aws", "user_error")]
    assert "not retried" in jobs.runs()[0].message
    code, _, jobs = _run(tmp_path / "b", {"aws": Scripted("aws", [P, P, P])}, {"max_attempts": 2})
    assert code == 1 and len(_tried(jobs)) == 2 and "max_attempts" in jobs.runs()[0].message


def test_an_ending_not_in_on_is_not_retried(tmp_path: Path) -> None:
    code, _, jobs = _run(tmp_path, {"aws": Scripted("aws", [C])}, {"on": ["preempted"]})
    assert code == 1 and len(_tried(jobs)) == 1


def test_a_fallback_that_cannot_run_is_found_at_the_first_submit(tmp_path: Path) -> None:
    backends = {"aws": Scripted("aws", [None]), "gcp": Scripted("gcp", [], ready=False)}
    with pytest.raises(LauncherError, match="recovery: the gcp backend cannot take this run: no credentials"):
        _run(tmp_path, backends, {"fallback": ["gcp"]})
    assert backends["aws"].submitted == []  # nothing was submitted


def test_the_plan_notes_say_what_a_fallback_pays_to_read_another_clouds_store() -> None:
    assert "about $0.09/GB" in (transfer_note("gcp", "s3://b/ckpts") or "")
    assert transfer_note("aws", "s3://b/ckpts") is None and transfer_note("local", "/srv/ckpts") is None


def test_the_python_api_supervises_with_the_same_supervisor(tmp_path: Path) -> None:
    spec = validate_spec({"name": "api", "command": ["true"], "recovery": {"max_attempts": 2}}, None, tmp_path)
    jobs = JobRegistry(tmp_path / "jobs.db")
    aws = Scripted("aws", [P, None])
    assert Launcher(backend=aws, jobs=jobs).supervise(spec) == 0
    assert _tried(jobs) == [("aws", "preempted"), ("aws", None)]


class Priced(Scripted):
    """$10/hour for one A10G; each failed job reports that it cost $1 (as SageMaker reports billable time)."""

    def offers(self, spec: Any) -> list[Any]:
        from launcher.backend import Offer  # noqa: PLC0415

        return [Offer(self.name, "ml.g5.xlarge", "A10G", 1, 1, 10.0)]

    def status(self, ref: JobRef) -> JobStatus:
        status = super().status(ref)
        return JobStatus(
            status.state, status.message, status.exit_code, details={"metrics": {"cost_usd": 1.0}}, ending=status.ending
        )


def test_the_budget_counts_every_attempt_and_stops_the_run_with_exit_3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    from click.testing import CliRunner  # noqa: PLC0415

    from launcher.cli import main  # noqa: PLC0415

    spec = validate_spec({"name": "bud", "resources": {"gpus": 1, "gpu_type": "A10G"}, "limits": {"max_cost": 1.5},
                          "recovery": {"max_attempts": 3}}, None, tmp_path)  # fmt: skip
    jobs = JobRegistry(tmp_path / "jobs.db")
    aws = Priced("aws", [P, None])
    assert Launcher(backend=aws, jobs=jobs).supervise(spec) == 3  # the estimate (~$0.86) exceeds the $0.50 left
    assert len(aws.submitted) == 1 and _tried(jobs) == [("aws", "preempted")]
    assert (
        "more than what is left of limits.max_cost ($0.50 of $1.50, $1.00 spent by 1 attempt(s))"
        in jobs.runs()[0].message
    )
    assert "cost $1.00 over 1 attempt(s)" in capsys.readouterr().err
    monkeypatch.setenv("LAUNCHER_STATE_DIR", str(tmp_path))
    result = CliRunner().invoke(main, ["ls", "--json"])
    assert result.exit_code == 0, result.output
    import json  # noqa: PLC0415

    listed = json.loads(result.output)
    assert [row["id"] for row in listed] == [jobs.runs()[0].id]  # one row for the run, not one per attempt
    assert listed[0]["state"] == "failed" and "1 attempt(s), $1.00" in listed[0]["message"]
