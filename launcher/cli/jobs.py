"""`launch status|logs|stop|ls`: follow jobs recorded in the local job registry."""

from __future__ import annotations

import sys
import time
from typing import Any

import click

from launcher.cli.base import console, echo_json, fit_columns, main

__all__ = ["status", "logs", "stop", "ls", "supervise"]


def _job(job_id: str | None):  # type: ignore[no-untyped-def]
    """The job a command names: a job id, a backend's native id, or a run name (its newest job)."""
    from launcher.api import Launcher
    from launcher.errors import JobNotFoundError
    from launcher.state.jobs import JobRegistry

    jobs = JobRegistry()
    if job_id is None:
        latest = jobs.latest()
        if latest is None:
            raise JobNotFoundError("No jobs recorded yet.", "Start one with: launch examples/quickstart.yaml")
        job_id = latest.id
    try:
        record = jobs.find(job_id)
    except JobNotFoundError:
        try:
            attempts = jobs.attempts(jobs.run(job_id).id)  # a run id: its newest attempt
        except JobNotFoundError:
            attempts = []
        if not attempts:
            raise
        record = attempts[-1]
    return Launcher.attach(record.id, jobs)


@main.command()
@click.argument("job_id", required=False, metavar="[JOB]")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def status(job_id: str | None, as_json: bool) -> None:
    """Show a job's status (default: the newest job). JOB: a job id, or a run name for its newest job."""
    job = _job(job_id)
    st = job.status()
    record = job.record()
    from launcher.runs.progress import data_for_record, for_record

    newer = _newer_of_the_run(job.jobs, record)
    progress = for_record(record, newer=newer)
    fed = data_for_record(record) if newer is None else None  # a packed dataset's shards, while the job runs
    if as_json:  # everything the plain output shows, and more: a supervised run's attempts and total
        out = {"id": job.id, "backend": record.backend, "native_id": record.native_id, "state": st.state.value,
               "message": st.message, "exit_code": st.exit_code, "details": dict(st.details),
               "progress": progress.to_dict() if progress else None,
               "data_progress": fed.to_dict() if fed else None}  # fmt: skip
        if record.run_id:
            out["run"] = _run_dict(job.jobs, record.run_id)
        echo_json(out)
        return
    if record.run_id:
        _run_status(job.jobs, record.run_id)
    else:
        click.echo(f"{job.id}  {record.backend}  {st.state.value}" + (f"  {st.message}" if st.message else ""))
    if progress:
        click.echo(progress.line())
    if fed:
        click.echo(fed.line())


def _newer_of_the_run(jobs, record) -> str | None:  # type: ignore[no-untyped-def]
    """The newest later job writing the same run folder (same name and checkpoint.uri), if any."""
    uri = (record.spec.get("checkpoint") or {}).get("uri")
    if not uri:
        return None
    later = [r for r in jobs.list(limit=200) if r.name == record.name and r.submitted_at > record.submitted_at
             and (r.spec.get("checkpoint") or {}).get("uri") == uri]  # fmt: skip
    return max(later, key=lambda r: r.submitted_at).id if later else None


def _run_dict(jobs, run_id: str) -> dict:  # type: ignore[no-untyped-def, type-arg]
    """A supervised run as `launch status RUN` shows it: its state, each attempt's row, the total cost."""
    run, attempts = jobs.run(run_id), jobs.attempts(run_id)
    rows, before = [], 0
    for a in attempts:
        epoch = a.metrics.get("epoch")
        rows.append({"attempt": a.attempt, "backend": a.backend, "instance": a.instance, "job": a.id,
                     "native_id": a.native_id, "state": a.state.value, "ending": a.ending,
                     "epochs_from": before if epoch is not None else None, "epochs_to": epoch,
                     "seconds": ((a.finished_at or time.time()) - a.submitted_at) if a.native_id else None,
                     "cost": a.cost()})  # fmt: skip
        before = epoch if epoch is not None else before
    return {"id": run.id, "state": run.state, "message": run.message, "attempts": rows,
            "total_cost": sum(a.cost() or 0.0 for a in attempts),
            "max_cost": (run.spec.get("limits") or {}).get("max_cost")}  # fmt: skip


def _run_status(jobs, run_id: str) -> None:  # type: ignore[no-untyped-def]
    """A supervised run: its state, then one line per attempt, then its total cost."""
    from rich.table import Column, Table

    from launcher.runs.progress import fmt_duration

    run = _run_dict(jobs, run_id)
    attempts = run["attempts"]
    click.echo(f"run {run['id']}  {run['state']}" + (f"  {run['message']}" if run["message"] else ""))
    chosen = any(a["instance"] for a in attempts)  # the instance column only where the supervisor chose one
    names = (
        "attempt",
        "backend",
        *(["instance"] if chosen else []),
        "job",
        "state",
        "ending",
        "epochs",
        "time",
        "cost",
    )
    cells = []
    for a in attempts:
        done = f"{a['epochs_from']}->{a['epochs_to']}" if a["epochs_to"] is not None else "-"
        ran = fmt_duration(a["seconds"]) if a["seconds"] is not None else "-"
        cost = "-" if a["cost"] is None else f"${a['cost']:.2f}"
        cells.append((str(a["attempt"]), a["backend"], *([a["instance"] or "-"] if chosen else []), a["job"],
                      a["state"], a["ending"] or "-", done, ran, cost))  # fmt: skip
    out = console()
    keep, rows, dropped = fit_columns(names, cells, out.width, ("time", "epochs", "instance"))
    table = Table(*(Column(n, no_wrap=True) for n in keep), box=None, pad_edge=False)  # ids, states: never cut
    for row in rows:
        table.add_row(*row)
    out.print(table)
    if dropped:
        out.print(f"(a {out.width}-column terminal: {', '.join(dropped)} left out; a wider one or --json shows them)")
    limit = run["max_cost"]
    click.echo(f"total cost ${run['total_cost']:.2f}" + (f" of limits.max_cost ${limit:.2f}" if limit else "")
               + f" over {len(attempts)} attempt(s)")  # fmt: skip


def _id_column(header: str, ids: list[str]) -> Any:
    """A column of ids a user must type: never cut, never wrapped; other columns give way."""
    from rich.table import Column

    return Column(header, no_wrap=True, min_width=max([len(header), *map(len, ids)]))


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


def _one_row_per_run(records, jobs):  # type: ignore[no-untyped-def]
    """The jobs as listed, except that the attempts of a supervised run show as one row: the run's."""
    import dataclasses

    rows, seen = [], set()
    for r in records:
        if not r.run_id:
            rows.append(r)
        elif r.run_id not in seen:
            seen.add(r.run_id)
            run, attempts = jobs.run(r.run_id), jobs.attempts(r.run_id)
            cost = sum(a.cost() or 0.0 for a in attempts)
            note = f"run: {run.state}, {len(attempts)} attempt(s), ${cost:.2f}; newest {r.id}"
            state = (
                r.state
                if run.state == "running"
                else type(r.state)({"succeeded": "succeeded", "stopped": "stopped"}.get(run.state, "failed"))
            )
            rows.append(dataclasses.replace(r, id=run.id, state=state, message=note))
    return rows


@main.command()
@click.argument("run_id", metavar="RUN")
def supervise(run_id: str) -> None:
    """Supervise a recorded run whose supervisor is gone (killed, machine rebooted): follow its attempt, resubmit."""
    from launcher.api import Launcher
    from launcher.runs.supervisor import Supervisor
    from launcher.state.jobs import JobRegistry

    jobs = JobRegistry()
    run = jobs.run(run_id)
    sys.exit(Supervisor(run.id, jobs, lambda name: Launcher(backend=name, jobs=jobs)).run())


@main.command(name="ls")
@click.option("-n", "--limit", default=20, show_default=True, help="how many jobs to show")
@click.option("-b", "--backend", default=None, help="only jobs of this backend")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def ls(limit: int, backend: str | None, as_json: bool) -> None:
    """List recent jobs (newest first)."""
    from launcher.runs.refresh import refresh_unfinished
    from launcher.state.jobs import JobRegistry

    jobs = JobRegistry()
    records = _one_row_per_run(refresh_unfinished(jobs.list(limit=limit, backend=backend), jobs), jobs)
    from launcher.runs.progress import for_record

    # a run's row reads its newest attempt's progress: the run folder is the same for every attempt
    # cloud stores are read for unfinished jobs only: one manifest read per row is fine, twenty old ones are not
    progress = {r.id: for_record(r, remote=not r.state.finished) for r in records}
    if as_json:
        echo_json([{"id": r.id, "backend": r.backend, "native_id": r.native_id, "state": r.state.value,
                    "submitted_at": r.submitted_at, "message": r.message,
                    "progress": p.to_dict() if (p := progress[r.id]) else None} for r in records])  # fmt: skip
        return
    from rich.table import Column, Table

    table = Table(_id_column("job", [r.id for r in records]), "backend", "state", Column("progress", no_wrap=True),
                  Column("submitted", no_wrap=True), Column("message", overflow="fold", ratio=1), box=None)  # fmt: skip
    for r in records:  # the id is never cut; the message wraps within what the terminal's width leaves
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.submitted_at))
        table.add_row(r.id, r.backend, r.state.value, p.short() if (p := progress[r.id]) else "-", when, r.message)
    console().print(table)
