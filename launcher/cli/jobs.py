"""`launch status|logs|stop|ls`: follow jobs recorded in the local job registry."""

from __future__ import annotations

import sys
import time

import click

from launcher.cli.base import console, echo_json, main

__all__ = ["status", "logs", "stop", "ls"]


def _job(job_id: str | None):  # type: ignore[no-untyped-def]
    """The job a command names: a job id, a backend's native id, or a run name (its newest job)."""
    from launcher.api import Launcher
    from launcher.errors import JobNotFoundError
    from launcher.jobs import JobRegistry

    jobs = JobRegistry()
    if job_id is None:
        latest = jobs.latest()
        if latest is None:
            raise JobNotFoundError("No jobs recorded yet.", "Start one with: launch examples/quickstart.yaml")
        job_id = latest.id
    return Launcher.attach(jobs.find(job_id).id, jobs)


@main.command()
@click.argument("job_id", required=False, metavar="[JOB]")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def status(job_id: str | None, as_json: bool) -> None:
    """Show a job's status (default: the newest job). JOB: a job id, or a run name for its newest job."""
    job = _job(job_id)
    st = job.status()
    record = job.record()
    from launcher.progress import for_record

    progress = for_record(record)
    if as_json:
        echo_json({"id": job.id, "backend": record.backend, "native_id": record.native_id, "state": st.state.value,
                   "message": st.message, "exit_code": st.exit_code, "details": dict(st.details),
                   "progress": progress.to_dict() if progress else None})  # fmt: skip
        return
    click.echo(f"{job.id}  {record.backend}  {st.state.value}" + (f"  {st.message}" if st.message else ""))
    if progress:
        click.echo(progress.line())


@main.command()
@click.argument("job_id", metavar="JOB")
@click.option("-f", "--follow", is_flag=True, help="keep streaming until the job ends")
def logs(job_id: str, follow: bool) -> None:
    """Print a job's logs. JOB: a job id, or a run name for its newest job."""
    job = _job(job_id)
    try:
        for line in job.logs(follow=follow):
            click.echo(line)
    except KeyboardInterrupt:
        click.echo("", err=True)  # the job keeps running: only the log stream stopped
        sys.exit(130)


@main.command()
@click.argument("job_id", metavar="JOB")
def stop(job_id: str) -> None:
    """Stop (cancel) a running job. JOB: a job id, or a run name for its newest job."""
    job = _job(job_id)
    if not job.cancel():
        click.echo(f"{job.id} already finished ({job.record().state.value}); nothing to stop", err=True)
        return
    click.echo(f"stop requested for {job.id}", err=True)


@main.command(name="ls")
@click.option("-n", "--limit", default=20, show_default=True, help="how many jobs to show")
@click.option("-b", "--backend", default=None, help="only jobs of this backend")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def ls(limit: int, backend: str | None, as_json: bool) -> None:
    """List recent jobs (newest first)."""
    from launcher.jobs import JobRegistry
    from launcher.refresh import refresh_unfinished

    jobs = JobRegistry()
    records = refresh_unfinished(jobs.list(limit=limit, backend=backend), jobs)
    from launcher.progress import for_record

    # cloud stores are read for unfinished jobs only: one manifest read per row is fine, twenty old ones are not
    progress = {r.id: for_record(r, remote=not r.state.finished) for r in records}
    if as_json:
        echo_json([{"id": r.id, "backend": r.backend, "native_id": r.native_id, "state": r.state.value,
                    "submitted_at": r.submitted_at, "message": r.message,
                    "progress": p.to_dict() if (p := progress[r.id]) else None} for r in records])  # fmt: skip
        return
    from rich.table import Column, Table

    table = Table("job", "backend", "state", Column("progress", no_wrap=True), "submitted", "message", box=None)
    for r in records:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.submitted_at))
        table.add_row(r.id, r.backend, r.state.value, p.short() if (p := progress[r.id]) else "-", when, r.message[:60])
    console().print(table)
