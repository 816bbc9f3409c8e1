"""The SQLite job registry."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from launcher.errors import JobNotFoundError
from launcher.plan import JobRef, JobState, JobStatus
from launcher.state.jobs import JobRegistry, Throughput, state_dir


def test_records_survive_a_new_connection(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    JobRegistry(path).add(JobRef("j1", "local", "c0ffee", {"runtime": "process"}), "a", {"name": "a"}, "h")
    again = JobRegistry(path)  # e.g. a new CLI process after a crash
    record = again.get("j1")
    assert record.state is JobState.PENDING and record.ref.extra["runtime"] == "process"
    again.update("j1", JobStatus(JobState.FAILED, "boom", exit_code=2))
    record = JobRegistry(path).get("c0ffee")  # native ids work too
    assert (record.state, record.message, record.exit_code) == (JobState.FAILED, "boom", 2)
    assert record.finished_at is not None


def test_unknown_job_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(JobNotFoundError, match="No job 'nope'.*launch ls"):
        JobRegistry(tmp_path / "jobs.db").get("nope")


def test_throughput_and_metrics(tmp_path: Path) -> None:
    jobs = JobRegistry(tmp_path / "jobs.db")
    jobs.add(JobRef("j1", "local", "n1"), "a", {}, "h")
    jobs.add_metrics("j1", {"billable_s": 10})
    jobs.add_metrics("j1", {"images_per_s": 99.5})
    assert jobs.get("j1").metrics == {"billable_s": 10, "images_per_s": 99.5}
    jobs.add_throughput(Throughput("resnet18", 32, 64, "bf16", "cpu", 812.0, "profile"))
    assert jobs.throughputs(model="resnet18")[0].images_per_s == 812.0
    assert jobs.throughputs(model="vit_b_16") == []


def test_state_dir_precedence() -> None:
    assert state_dir({"LAUNCHER_STATE_DIR": "/x"}) == Path("/x")
    assert state_dir({"XDG_STATE_HOME": "/s"}) == Path("/s/launcher")


def test_find_takes_an_id_a_native_id_or_a_run_name(tmp_path: Path) -> None:
    jobs = JobRegistry(tmp_path / "jobs.db")
    jobs.add(JobRef("digits-20260101-000000-aaaa", "local", "n-old"), "digits", {}, "h")
    time.sleep(0.01)
    jobs.add(JobRef("digits-20260102-000000-bbbb", "local", "n-new"), "digits", {}, "h")
    jobs.add(JobRef("other-20260103-000000-cccc", "local", "n-3"), "other", {}, "h")
    assert jobs.find("digits").id == "digits-20260102-000000-bbbb"  # the newest job of that name
    assert jobs.find("digits-20260101-000000-aaaa").id == "digits-20260101-000000-aaaa"
    assert jobs.find("n-3").id == "other-20260103-000000-cccc"
    with pytest.raises(JobNotFoundError, match="No job with the id or name 'dig'.*launch ls"):
        jobs.find("dig")


HOSTILE = ["../../etc/passwd", "a/b\\c", "a\x00b", "\x1b[31mred", "x" * 100_000, "\udcff", "ジョブ", "", " "]


@pytest.mark.parametrize("key", HOSTILE, ids=range(len(HOSTILE)))
def test_a_hostile_key_is_one_error_never_a_crash(key: str, tmp_path: Path) -> None:
    jobs = JobRegistry(tmp_path / "jobs.db")
    for lookup in (jobs.get, jobs.find):
        with pytest.raises(JobNotFoundError) as info:
            lookup(key)
        text = str(info.value)
        assert (
            "\n" not in text and "\x00" not in text and "\x1b" not in text and len(text) < 400 and "launch ls" in text
        )


def _cli(*args: str):  # type: ignore[no-untyped-def]
    from click.testing import CliRunner

    from launcher.cli import main

    return CliRunner().invoke(main, list(args))


def test_cli_status_logs_and_stop_take_the_run_name(monkeypatch: pytest.MonkeyPatch) -> None:
    jobs = JobRegistry()  # the CLI's own registry ($LAUNCHER_STATE_DIR of this test)
    jobs.add(JobRef("digits-20260101-000000-aaaa", "local", ""), "digits", {}, "h", JobState.FAILED, "old one")
    time.sleep(0.01)
    jobs.add(JobRef("digits-20260102-000000-bbbb", "local", ""), "digits", {}, "h", JobState.SUBMITTING, "new one")
    status = _cli("status", "digits")
    assert status.exit_code == 0, status.output
    assert status.output.startswith("digits-20260102-000000-bbbb  local  submitting")
    assert _cli("status", "digits-20260101-000000-aaaa").output.startswith("digits-20260101-000000-aaaa  local  failed")
    from launcher.backends.local import LocalBackend

    monkeypatch.setattr(LocalBackend, "logs", lambda self, ref, follow=False: iter([f"log of {ref.id}"]))
    logs = _cli("logs", "digits")
    assert logs.exit_code == 0 and logs.output == "log of digits-20260102-000000-bbbb\n", logs.output
    stop = _cli("stop", "digits")  # resolved to the newest job, which its backend never confirmed
    assert stop.exit_code != 0 and "digits-20260102-000000-bbbb was never confirmed" in stop.output


@pytest.mark.parametrize("command", ["status", "logs", "stop"])
@pytest.mark.parametrize("key", ["nope", *HOSTILE[:6]], ids=range(7))
def test_cli_an_unknown_or_hostile_job_is_one_line_and_non_zero(command: str, key: str) -> None:
    JobRegistry().add(JobRef("digits-20260101-000000-aaaa", "local", ""), "digits", {}, "h")
    result = _cli(command, key)
    assert result.exit_code != 0
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.output.count("\n") == 1 and result.output.startswith("error: ") and "launch ls" in result.output
    assert "Traceback" not in result.output and len(result.output) < 400
    assert "\x00" not in result.output and "\x1b" not in result.output
