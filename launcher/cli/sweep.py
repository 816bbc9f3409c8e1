"""`launch sweep JOB.yaml` and `launch sweep status NAME`: many trials of one spec (launcher.runs.sweep).

    launch sweep job.yaml [-b local] [--detach] [--ignore-budget]   run the spec's sweep: section
    launch sweep status NAME [--json] [--csv] [--plot sweep.png]   trials by their metric, the best one, its weights

`launch -b aws job.yaml` runs the sweep too when the spec has a sweep: section.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from launcher.cli.base import DefaultGroup, console, echo_json, main, unfinished

__all__ = ["sweep", "start_sweep", "money", "supervise"]


class _SweepGroup(DefaultGroup):
    default_command = "start"


@main.group(cls=_SweepGroup)
def sweep() -> None:
    """Run many trials of one spec (its sweep: section) across backends under one budget; show how they did.

    \b
    launch sweep job.yaml                  run the trials (launch sweep start job.yaml)
    launch sweep status NAME --plot s.png  trials by metric, the best one and how to pull its weights
    """


@sweep.command(name="supervise")
@click.argument("sweep_id", metavar="SWEEP")
def supervise(sweep_id: str) -> None:
    """Supervise a recorded sweep whose supervisor is gone (the --detach process, a restart): no trial twice."""
    from launcher.api import Launcher
    from launcher.runs.sweep import SweepSupervisor
    from launcher.state.jobs import JobRegistry

    jobs = JobRegistry()
    found = jobs.sweep(sweep_id)
    sys.exit(SweepSupervisor(found.id, jobs, lambda name: Launcher(backend=name, jobs=jobs)).run())


@sweep.command()
@click.argument("job_file", type=click.Path(dir_okay=False))
@click.option(
    "-b", "--backend", default="local", show_default=True, help="where trials run when sweep.backends is not set"
)
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="override a spec key, e.g. sweep.trials=4")
@click.option(
    "--detach", is_flag=True, help="supervise the sweep in the background (its log: <state dir>/sweeps/SWEEP.log)"
)
@click.option("--yes", "-y", is_flag=True, help="do not ask before starting paid cloud jobs")
@click.option("--ignore-budget", is_flag=True, help="start trials without estimating them against limits.max_cost")
def start(
    job_file: str, backend: str, overrides: tuple[str, ...], detach: bool, yes: bool, ignore_budget: bool
) -> None:
    """Run the sweep of JOB_FILE (a spec with a sweep: section)."""
    from launcher.backends import registry
    from launcher.errors import SpecError
    from launcher.spec import load_spec

    spec = load_spec(job_file, overrides)
    registry.check_sections(spec, Path(job_file), overrides)
    if spec.sweep is None:
        raise SpecError(
            f"{job_file}: there is no sweep: section to run.",
            "Add one (README, Sweeps), or run the spec with: launch JOB.yaml",
        )
    sys.exit(start_sweep(spec, backend, detach, ignore_budget, yes))


def start_sweep(spec: Any, backend: str, detach: bool, ignore_budget: bool, yes: bool) -> int:
    """A new sweep of `spec`, or the unfinished sweep of this name whose supervisor is gone (picked up)."""
    from launcher.api import Launcher
    from launcher.runs.sweep import SweepSupervisor, sweep_backends
    from launcher.runs.sweep import detach as detach_sweep
    from launcher.state.jobs import JobRegistry

    jobs = JobRegistry()
    make = lambda name: Launcher(backend=name, jobs=jobs)  # noqa: E731
    existing = unfinished(jobs.sweep, "sweep", spec.name, f"launch sweep status {spec.name}")
    if existing is not None:
        supervisor = SweepSupervisor(existing.id, jobs, make, check_budget=not ignore_budget)
    else:
        paid = [name for name in sweep_backends(spec, backend) if name != "local"]
        if paid and not yes and sys.stdin.isatty():
            click.confirm(
                f"Start sweep {spec.name} ({spec.sweep.count()} trials) on {', '.join(paid)}? This may cost money",
                abort=True,
                err=True,
            )
        supervisor = SweepSupervisor.start(spec, backend, jobs, make, check_budget=not ignore_budget)
    if not detach:
        return supervisor.run()
    jobs.set_sweep(supervisor.sweep_id, pid=None)
    pid = detach_sweep(supervisor.sweep_id)
    jobs.set_sweep(supervisor.sweep_id, pid=pid)
    click.echo(
        f"sweep {supervisor.sweep_id} is supervised in the background by process {pid}; follow it with: "
        f"launch sweep status {spec.name}",
        err=True,
    )
    return 0


@sweep.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="the sweep and its trials as JSON")
@click.option("--csv", "as_csv", is_flag=True, help="one CSV row per trial (for notebooks)")
@click.option(
    "--plot",
    "plot_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="draw the metric against each swept value and over epochs to this PNG",
)
def status(name: str, as_json: bool, as_csv: bool, plot_file: str | None) -> None:
    """The trials of sweep NAME (its name or id), best first: values, backend, state, epochs, best metric, cost."""
    from launcher.runs.sweep import summary
    from launcher.state.jobs import JobRegistry

    jobs = JobRegistry()
    found = summary(jobs, jobs.sweep(name).id)
    if plot_file:
        from launcher.runs.sweep_plot import plot_sweep

        plot_sweep(found, plot_file)
    if as_json:
        echo_json(found)
    elif as_csv:
        click.echo(to_csv(found), nl=False)
    else:
        _show(found)
    if plot_file:
        click.echo(f"plot: {plot_file}", err=True)


def to_csv(found: dict[str, Any]) -> str:
    import csv
    import io

    out = io.StringIO()
    columns = [
        "trial",
        "name",
        *found["space"],
        "backend",
        "state",
        "epochs",
        f"best_{found['metric']}",
        "cost",
        "attempts",
        "run",
    ]
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for r in found["trials"]:
        writer.writerow(
            [
                r["trial"],
                r["name"],
                *(r["values"].get(k) for k in found["space"]),
                r["backend"],
                r["state"],
                r["epochs"],
                "" if r["best"] is None else r["best"],
                r["cost"],
                r["attempts"],
                r["run"],
            ]
        )
    return out.getvalue()


def _show(found: dict[str, Any]) -> None:
    from rich.table import Table

    from launcher.runs.sweep_plot import shown_keys

    click.echo(f"sweep {found['id']}  {found['state']}" + (f"  {found['message']}" if found["message"] else ""))
    keys = shown_keys(found)
    table = Table(
        "trial",
        *(k.split(".", 1)[1] for k in keys),
        "backend",
        "state",
        "epochs",
        f"best {found['metric']}",
        "cost",
        box=None,
    )
    for r in found["trials"]:
        values = [_value(r["values"].get(k)) for k in keys]
        best = "-" if r["best"] is None else f"{r['best']:.4g}"
        table.add_row(
            f"t{r['trial']:03d}",
            *values,
            r["backend"],
            r["state"].replace("_", " "),
            str(r["epochs"]),
            best,
            money(r["cost"]),
        )
    out = console()
    if not out.is_terminal:  # piped or captured: whole values, not cells cut to 80 columns
        out.width = max(out.width, 200)
    out.print(table)
    same = [k for k in found["space"] if k not in keys]
    if same and found["trials"]:
        values = found["trials"][0]["values"]
        shown = " ".join(f"{key.split('.', 1)[1]}={_value(values.get(key))}" for key in same)
        click.echo(f"the same in every trial: {shown}")
    limit = found["max_cost"]
    click.echo(
        f"{len(found['trials'])} of {found['trials_planned']} trial(s) started; total cost {money(found['cost'])}"
        + (f" of limits.max_cost ${limit:.2f}" if limit else "")
        + f" over {found['attempts']} attempt(s)"
    )
    best = found["best"]
    if best:
        values = " ".join(f"{k}={_value(v)}" for k, v in best["values"].items())
        click.echo(f"best: {best['name']} ({values}): {found['metric']} {best['value']:.4g}")
        click.echo(f"pull its weights with: {best['pull']}")


def money(usd: float) -> str:
    """$1.25; a cost under a cent (this machine's electricity) to four places, not shown as $0.00."""
    return f"${usd:.2f}" if usd == 0 or usd >= 0.01 else f"${usd:.4f}"


def _value(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
