"""`launch run` (the default command): plan, submit, stream logs, exit with the job's code."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Iterator

import click

from launcher.cli.base import echo_json, main, unfinished
from launcher.errors import SpecError

__all__ = ["run"]


@contextlib.contextmanager
def _in_file(job_file: str) -> Iterator[None]:
    """A spec value a backend refuses at plan time ('train.data: ...') is named with the file it is in."""
    try:
        yield
    except SpecError as exc:
        if exc.message.startswith((str(job_file), "--set")):
            raise
        raise SpecError(f"{job_file}: {exc.message}", exc.fix) from None


@main.command()
@click.argument("job_file", type=click.Path(dir_okay=False))
@click.option(
    "-b",
    "--backend",
    default="local",
    show_default=True,
    help="local (alias docker), aws (sagemaker), gcp (vertex), azure (azureml), or an installed plugin",
)
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="override a spec key, e.g. train.epochs=3")
@click.option("--dry-run", is_flag=True, help="print the request the backend would send, secrets redacted, and exit")
@click.option("--detach", is_flag=True, help="submit and return; follow later with `launch logs JOB -f`")
@click.option("--yes", "-y", is_flag=True, help="do not ask before starting a paid cloud job")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.option(
    "--resume-from",
    default=None,
    metavar="URI",
    help="copy this run's checkpoint into the job's checkpoint store first",
)
@click.option("--ignore-budget", is_flag=True, help="submit even when the estimate exceeds limits.max_cost")
@click.option(
    "--force",
    is_flag=True,
    help="take the run folder <checkpoint.uri>/<name> over from the job writing it (that job stops uploading), "
    "or submit when the folder cannot be checked from here",
)
def run(
    job_file: str, backend: str, overrides: tuple[str, ...], dry_run: bool, detach: bool, yes: bool,
    as_json: bool, resume_from: str | None, ignore_budget: bool, force: bool,
) -> None:  # fmt: skip
    """Run JOB_FILE on a backend (default: this machine)."""
    from launcher.api import Launcher
    from launcher.backends import registry
    from launcher.spec import load_spec
    from launcher.staging.weights import check_local_inputs
    from launcher.state.jobs import new_job_id

    spec = load_spec(job_file, overrides)
    registry.check_sections(spec, Path(job_file), overrides)
    with _in_file(job_file):
        check_local_inputs(spec)  # the dry run refuses what submit would
        launcher = Launcher(backend=backend)
        plan = launcher.plan(spec, None if dry_run else new_job_id(spec.name))
    if dry_run:
        shipped = None
        if spec.code is not None:  # what would ship, checked as submit checks it; stderr keeps the plan clean
            from launcher.staging.code import collect_for

            shipped = collect_for(spec).summary()
        click.echo(plan.to_json() if as_json else plan.to_yaml(), nl=not as_json)
        if shipped is not None:
            click.echo(shipped, err=True)
        _pack_hint(spec, listing=False)  # a dry run stays offline: only a count already made is used
        return
    _pack_hint(spec, listing=True)  # once, before the trials or attempts: not from each
    if spec.sweep is not None:  # many trials, each a supervised run: launch sweep
        from launcher.cli.sweep import start_sweep

        sys.exit(start_sweep(spec, backend, detach, ignore_budget, yes))
    if spec.recovery is not None:  # a supervised run: it submits (and budgets) each attempt itself
        if launcher.backend.name != "local" and not yes and sys.stdin.isatty():
            click.confirm(
                f"Start run {spec.name} on {launcher.backend.name} (with recovery)? This may cost money",
                abort=True,
                err=True,
            )
        sys.exit(_supervise(spec, backend, detach, ignore_budget))
    for note in spec.train.unused():  # said before the money is spent, not only in the dry run's notes
        click.echo(f"note: {note}", err=True)
    launcher.before_submit = _hooks(resume_from, ignore_budget)  # after --dry-run: it must not load the estimator
    if launcher.backend.name != "local" and not yes and sys.stdin.isatty():
        click.confirm(f"Start {plan.job_name} on {launcher.backend.name}? This may cost money", abort=True, err=True)
    job = launcher.submit(plan, force=force)
    click.echo(f"submitted {job.id} to {job.backend.name}", err=True)
    if detach:
        if as_json:
            echo_json({"id": job.id, "backend": job.backend.name, "native_id": job.ref.native_id})
        return
    sys.exit(_follow(job, as_json))


def _pack_hint(spec, listing: bool) -> None:  # type: ignore[no-untyped-def]
    """One line when a remote `train.data` is a plain folder of more than 10,000 files (issue 32): packed,
    it would start in seconds. Counted at submit (stopping at 10,001 objects) and kept for a day, so a dry
    run after a submit or `launch estimate` says it too; a store that cannot be listed only costs the hint."""
    from launcher.storage import is_remote

    data = spec.data()
    if data is None or not is_remote(data):
        return
    from launcher.estimate.remote_data import pack_hint
    from launcher.state.jobs import state_dir

    line = pack_hint(data, state_dir() / "dataset-sizes.json", listing=listing)
    if line:
        click.echo(line, err=True)


def _supervise(spec, backend: str, detach: bool, ignore_budget: bool) -> int:  # type: ignore[no-untyped-def]
    """`recovery:`: a new supervised run, or the unfinished run of this name whose supervisor is gone."""
    from launcher.api import Launcher
    from launcher.runs.supervisor import Supervisor
    from launcher.runs.supervisor import detach as detach_run
    from launcher.state.jobs import JobRegistry

    jobs = JobRegistry()
    make = lambda name: Launcher(backend=name, jobs=jobs)  # noqa: E731
    existing = unfinished(jobs.run, "run", spec.name, "launch status {id}")
    if existing is not None:
        supervisor = Supervisor(existing.id, jobs, make, check_budget=not ignore_budget)
    else:
        supervisor = Supervisor.start(spec, backend, jobs, make, check_budget=not ignore_budget)
    if not detach:
        return supervisor.run()
    if not jobs.attempts(supervisor.run_id):
        code = supervisor.step()  # the first attempt from here: its refusal (budget, lease) is this command's
        if code is not None:
            return code
    jobs.set_run(supervisor.run_id, pid=None)
    pid = detach_run(supervisor.run_id)
    jobs.set_run(supervisor.run_id, pid=pid)
    click.echo(f"run {supervisor.run_id} is supervised in the background by process {pid}; follow it with: "
               f"launch status {supervisor.run_id}", err=True)  # fmt: skip
    return 0


def _hooks(resume_from: str | None, ignore_budget: bool) -> tuple:  # type: ignore[type-arg]
    hooks = []
    if resume_from:
        from launcher.storage.resume import copy_for_resume_hook

        hooks.append(copy_for_resume_hook(resume_from))
    if not ignore_budget:
        from launcher.runs.budget import budget_hook

        hooks.append(budget_hook)
    return tuple(hooks)


def _follow(job, as_json: bool) -> int:  # type: ignore[no-untyped-def]
    """Stream logs until the job ends; Ctrl-C stops the job and keeps its record consistent."""
    try:
        for line in job.logs(follow=True):
            click.echo(line, err=as_json)
        status = job.wait(poll=2.0)
    except KeyboardInterrupt:
        click.echo(f"\ninterrupted: stopping {job.id} ...", err=True)
        job.cancel()
        status = job.wait(poll=1.0, timeout=60)
        click.echo(f"{job.id}: {status.state.value}", err=True)
        return 130
    summary = {"id": job.id, "backend": job.backend.name, "state": status.state.value,
               "message": status.message, "exit_code": status.result_code()}  # fmt: skip
    if as_json:
        echo_json(summary)
    else:
        tail = f" ({status.message})" if status.message else ""
        click.echo(f"{job.id}: {status.state.value}{tail}", err=True)
        _say_where_results_are(job)
    return status.result_code()


def _say_where_results_are(job) -> None:  # type: ignore[no-untyped-def]
    """The host paths of results.csv/results.png and of the weights, when the run folder is on this machine,
    and the command that copies them out (the job's own training folder is gone by now: issue 23)."""
    paths = [job.results_path(name=name) for name in ("results.csv", "results.png")]  # files of the newest checkpoint
    found = [str(path) for path in paths if path is not None and path.exists()]
    if found:
        click.echo(f"results: {' and '.join(found)}", err=True)
    weights = [job.results_path(name=name) for name in ("best.pt", "last.pt")]
    stored = [str(path) for path in weights if path is not None and path.exists()]
    if stored:
        click.echo(f"weights: {' and '.join(stored)}", err=True)
        click.echo(f"copy them out with: launch ckpt pull {_run_uri(job)} ./here", err=True)


def _run_uri(job) -> str:  # type: ignore[no-untyped-def]
    """The run folder `launch ckpt pull` takes, relative to here when it is below the current folder."""
    import os

    from launcher.storage import join_uri

    record = job.record()
    uri = join_uri(str((record.spec.get("checkpoint") or {}).get("uri")), record.name)
    if "://" not in uri and Path(uri).resolve().is_relative_to(Path.cwd().resolve()):
        return os.path.relpath(Path(uri).resolve(), Path.cwd().resolve())
    return uri
