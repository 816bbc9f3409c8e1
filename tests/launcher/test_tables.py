"""Tables never cut what a user must type, and --json holds everything the table shows (issue 34 item 6)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from launcher.cli import main
from launcher.plan import JobRef, JobState
from launcher.state.jobs import JobRegistry

LONG = "a-fairly-long-run-name-for-a-detector-20261207-120000-abcd"


@pytest.mark.parametrize("columns", ["80", "120", "200"])
def test_ls_never_cuts_a_job_id_at_any_width(columns: str) -> None:
    jobs = JobRegistry()
    jobs.add(JobRef(LONG, "local", "n1"), "a-fairly-long", {}, "h", state=JobState.SUCCEEDED,
             message="a long message " * 10)  # fmt: skip
    jobs.add(JobRef("short-20261207-120000-abcd", "local", "n2"), "short", {}, "h", state=JobState.FAILED)
    result = CliRunner().invoke(main, ["ls"], env={"COLUMNS": columns})
    assert result.exit_code == 0, result.output
    assert LONG in result.output and "short-20261207-120000-abcd" in result.output
    assert max(map(len, result.output.splitlines())) <= int(columns)


def test_status_json_of_a_run_holds_its_attempts() -> None:
    jobs = JobRegistry()
    jobs.add_run("run-20261207-1", "det", {"name": "det", "limits": {"max_cost": 5}}, ["local"], None)
    jobs.set_run("run-20261207-1", state="succeeded")
    for n, state in ((1, JobState.FAILED), (2, JobState.SUCCEEDED)):
        jobs.add(
            JobRef(f"det-{n}", "local", f"99999{n}"),
            "det",
            {},
            "h",
            state=state,
            attempt=("run-20261207-1", n, None, None),
        )  # type: ignore[arg-type]
    plain = CliRunner().invoke(main, ["status", "run-20261207-1"], env={"COLUMNS": "80"})
    assert plain.exit_code == 0, plain.output
    assert "det-1" in plain.output and "det-2" in plain.output and "total cost" in plain.output
    data = json.loads(CliRunner().invoke(main, ["status", "run-20261207-1", "--json"]).stdout)
    run = data["run"]
    assert run["id"] == "run-20261207-1" and run["state"] == "succeeded" and run["max_cost"] == 5
    assert [(a["attempt"], a["job"]) for a in run["attempts"]] == [(1, "det-1"), (2, "det-2")]
    assert all(f"  {a['state']}  " in plain.output.replace(a["job"], "") or a["state"] in plain.output
               for a in run["attempts"])  # fmt: skip
    assert {"backend", "instance", "ending", "epochs_from", "epochs_to", "seconds", "cost"} <= set(run["attempts"][0])
    assert "total_cost" in run


def test_status_of_an_older_job_never_shows_a_newer_jobs_progress(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Issue 34 item 9: a job stopped in epoch 2 showed `epoch 4/4`, the newer job's, read from the shared run folder."""
    store = tmp_path / "runs"
    (store / "r").mkdir(parents=True)
    (store / "r" / "results.csv").write_text("epoch,top1,time_s\n1,0.5,1\n2,0.6,1\n3,0.7,1\n4,0.8,1\n")
    spec = {"name": "r", "train": {"epochs": 4}, "checkpoint": {"uri": str(store)}}
    jobs = JobRegistry()
    jobs.add(JobRef("r-1", "local", "999991"), "r", spec, "h", state=JobState.STOPPED)
    jobs.add_metrics("r-1", {"epoch": 2})  # what Job.status recorded when it ended
    jobs.add(JobRef("r-2", "local", "999992"), "r", spec, "h", state=JobState.SUCCEEDED)
    old = CliRunner().invoke(main, ["status", "r-1"])
    assert old.exit_code == 0, old.output
    assert "epoch 2/4" in old.output and "epoch 4/4" not in old.output and "now holds r-2's" in old.output
    assert json.loads(CliRunner().invoke(main, ["status", "r-1", "--json"]).stdout)["progress"]["epoch"] == 2
    assert "epoch 4/4" in CliRunner().invoke(main, ["status", "r-2"]).output
