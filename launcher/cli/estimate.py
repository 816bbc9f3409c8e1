"""`launch estimate`, `launch profile` and `launch catalog show|update`.

    launch estimate JOB.yaml [-b NAME ...] [--json] [--plot FILE.png] [--images N] [--data-gb G]
    launch profile JOB.yaml [--steps N]
    launch catalog show [-b NAME ...]
    launch catalog update -b aws|gcp|azure

The local row's electricity and hardware figures come from the user config
file ($LAUNCHER_CONFIG or ~/.config/launcher/config.yaml, section `local`):
electricity_usd_per_kwh (0.17), host_watts (150), gpu_watts (nvidia-smi's
power limit), hardware_usd (3000), lifetime_years (4), utilisation (0.5),
startup_s (10, until `launch profile` measures it).
"""

from __future__ import annotations

from pathlib import Path

import click

from launcher.cli.base import console, echo_json, fail, fit_columns, main
from launcher.storage import is_remote

__all__ = ["estimate_cmd", "profile_cmd", "catalog"]

BACKENDS_HELP = "backend to price (repeatable; default: every installed backend)"


@main.command("estimate")
@click.argument("job_file", type=click.Path(dir_okay=False))
@click.option("-b", "--backend", "backends", multiple=True, metavar="NAME", help=BACKENDS_HELP)
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="override a spec key, e.g. train.epochs=3")
@click.option(
    "--images",
    type=click.IntRange(min=1),
    default=None,
    help="number of training images (remote data is counted by listing it when credentials allow)",
)
@click.option(
    "--data-gb",
    type=click.FloatRange(min=0),
    default=None,
    help="dataset size in GB, for the staging time of remote data",
)
@click.option(
    "--images-per-s",
    "images_per_s",
    type=click.FloatRange(min=0, min_open=True, max=1e7),
    default=None,
    help="training images per second per GPU (or on the CPU), measured: needed for a program of your own",
)
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.option(
    "--plot", "plot_file", type=click.Path(dir_okay=False), default=None, help="also draw cost vs time to this PNG"
)
@click.option(
    "--all", "show_all", is_flag=True, help="show every option, not only the cheapest per backend and GPU type"
)
def estimate_cmd(
    job_file: str, backends: tuple[str, ...], overrides: tuple[str, ...], images: int | None, data_gb: float | None,
    images_per_s: float | None, as_json: bool, plot_file: str | None, show_all: bool,
) -> None:  # fmt: skip
    """Time and cost of JOB_FILE on each backend and instance option.

    Marks the cheapest, the fastest, and the best option within limits.max_cost / limits.max_runtime.
    Throughput comes from `launch profile` (measured), past runs, or a cited per-GPU table.

    \b
    The local row costs electricity and hardware wear, from $LAUNCHER_CONFIG or
    ~/.config/launcher/config.yaml (all keys optional, defaults shown):
      local:
        electricity_usd_per_kwh: 0.17
        host_watts: 150
        gpu_watts: null        # per GPU; null = nvidia-smi power limit
        hardware_usd: 3000
        lifetime_years: 4
        utilisation: 0.5
        startup_s: 10          # until `launch profile` measures it
    """
    from launcher.backends import registry
    from launcher.estimate.model import estimate
    from launcher.state.jobs import JobRegistry

    spec = _load_for_pricing(job_file, overrides)
    registry.check_sections(spec, Path(job_file), overrides)
    chosen = [registry.create(b) for b in backends] if backends else registry.installed()
    data_bytes = int(data_gb * 1e9) if data_gb is not None else None
    data = spec.data()
    dataset, unlisted = _listed_dataset(data) if images is None and data else (None, None)
    rows = estimate(spec, chosen, jobs=JobRegistry(), train_images=images, data_bytes=data_bytes, dataset=dataset,
                    images_per_s=images_per_s)  # fmt: skip
    if not any(r.ok for r in rows):  # nothing to show or plot: say why, and fail (CI runs `launch estimate` first)
        if as_json:
            echo_json([r.to_dict() for r in rows])
        fail(_no_estimate(rows, job_file, unlisted))
    warning = _absurd(rows, job_file)
    if plot_file:
        from launcher.estimate.plot import plot_rows

        # the options the table lists (--all: every one), so each point is a row the user can read
        plot_rows(_shown(rows, show_all), plot_file, f"{spec.name}: cost vs time", spec.limits.max_cost,
                  spec.limits.max_runtime)  # fmt: skip
    if as_json:
        echo_json([r.to_dict() for r in rows])
        if warning:
            click.echo(f"warning: {warning}", err=True)
        return
    _print_rows(rows, spec, show_all, job_file)
    if plot_file:
        click.echo(f"plot: {plot_file}", err=True)
    if warning:
        click.echo(f"warning: {warning}", err=True)


# Unset variables a price does not depend on (a role, an account, a bucket's name) get a stand-in of the right
# shape for the estimate alone, chosen by the key that names them; said on stderr (issue 34: the cloud examples
# could not be estimated without a role ARN or a subscription id).
_STAND_INS = (("role_arn", "arn:aws:iam::000000000000:role/estimate-only"),
              ("subscription_id", "00000000-0000-0000-0000-000000000000"),
              ("service_account", "estimate-only@estimate-only.iam.gserviceaccount.com"),
              ("", "estimate-only"))  # fmt: skip


def _load_for_pricing(job_file: str, overrides: tuple[str, ...]):  # type: ignore[no-untyped-def]
    """The spec as `launch` loads it; where it names unset variables, loaded again with stand-ins for them."""
    import os
    import re

    from launcher.errors import SpecError
    from launcher.spec import load_spec

    try:
        return load_spec(job_file, overrides)
    except SpecError as exc:
        text = str(
            exc
        )  # spec.py's one line: "NAME (at key.path), ..." or "key.path: environment variable NAME is not set"
        where = (
            dict(re.findall(r"([A-Za-z_][A-Za-z0-9_]*) \(at ([\w.]+)\)", text))
            if "variables are not set" in text
            else {}
        )
        single = re.search(r": ([\w.]+): environment variable ([A-Za-z_][A-Za-z0-9_]*) is not set\.", text)
        if single:
            where = {single.group(2): single.group(1)}
        if not where or any(at.endswith(("region", "location")) for at in where.values()):
            raise  # nothing to stand in for, or a region: prices depend on it
    stand_ins = {name: next(v for key, v in _STAND_INS if at.endswith(key)) for name, at in where.items()}
    spec = load_spec(job_file, overrides, environ={**os.environ, **stand_ins})
    them = "them" if len(stand_ins) > 1 else "it"
    click.echo(
        f"note: {', '.join(sorted(stand_ins))} not set: priced without {them} (no price depends on a role, "
        f"an account or a bucket's name); `launch` itself needs {them}",
        err=True,
    )
    return spec


def _listed_dataset(data: str):  # type: ignore[no-untyped-def]
    """A remote dataset's size, by listing it (cached), and None; (None, why) when it cannot be listed."""
    if not is_remote(data):
        return None, None
    from launcher.estimate.remote_data import remote_dataset
    from launcher.state.jobs import state_dir

    found = remote_dataset(data, state_dir() / "dataset-sizes.json")
    if isinstance(found, str):
        return None, found
    from launcher.estimate import remote_data

    if found.files > remote_data.PACK_HINT_FILES and not found.packed:
        click.echo(remote_data.pack_hint_line(data.rstrip("/"), found.files), err=True)
    return found, None


def _no_estimate(rows, job_file: str, unlisted: str | None) -> str:  # type: ignore[no-untyped-def]
    """One line on why no option could be estimated, with the fix."""
    if unlisted:
        return f"Cannot estimate {job_file}: {unlisted.rstrip('.')}; pass --images N (training images) to estimate without listing it."
    reasons: dict[str, list[str]] = {}
    for r in rows:
        named = r.offer.instance != "-"  # "-": no instance (a backend-wide reason); never replace the dashes of a flag
        reason = (_cpu_hint(job_file) if _cloud_cpu_without_figure(r)
                  else str(r.error).replace(r.offer.instance, "these instances") if named else str(r.error))  # fmt: skip
        reasons.setdefault(reason, []).append(r.offer.backend)
    said = "; ".join(f"{', '.join(dict.fromkeys(names))}: {reason.rstrip('.')}" for reason, names in reasons.items())
    return f"Cannot estimate {job_file} on any backend ({said or 'no backend installed'})."


def _cpu_hint(job_file: str) -> str:
    return f"no CPU throughput figures (the table is per GPU); for cloud GPU rows run: launch estimate {job_file} --set resources.gpus=1"


ABSURD_S = 7 * 24 * 3600.0  # a job whose fastest option takes over a week is more likely a mistake than a plan


def _absurd(rows, job_file: str) -> str | None:  # type: ignore[no-untyped-def]
    """A warning when even the fastest option is implausibly long (e.g. thousands of CPU hours)."""
    ok = [r for r in rows if r.ok]
    fastest = min(ok, key=lambda r: r.total_s)
    if fastest.total_s <= ABSURD_S:
        return None
    only = "the only option" if len(ok) == 1 else "the fastest option"
    fix = (f"for a GPU run: launch estimate {job_file} --set resources.gpus=1" if not fastest.offer.gpus
           else "check train.epochs, train.fraction and train.imgsz, or add GPUs or nodes")  # fmt: skip
    return (f"{only} ({fastest.offer.backend} {fastest.offer.instance}) takes {fastest.total_s / 3600:,.0f} hours "
            f"({fastest.total_s / 86400:,.0f} days): its cheapest/fastest marks mean little; {fix}")  # fmt: skip


def _hms(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def _money(value: float) -> str:
    return f"${value:,.2f}" if value >= 0.1 else f"${value:.4f}"


def _shown(rows, show_all: bool) -> list:  # type: ignore[no-untyped-def, type-arg]
    """The cheapest option per (backend, GPU type, spot), plus every marked one; all with --all."""
    ranked = sorted((r for r in rows if r.ok), key=lambda r: (r.cost, r.total_s))
    if show_all:
        return ranked
    seen: set[tuple[object, ...]] = set()
    shown = []
    for r in ranked:
        key = (r.offer.backend, r.offer.gpu_type, r.offer.gpus, r.offer.nodes, r.offer.spot)
        if key not in seen or r.marks:
            shown.append(r)
        seen.add(key)
    return shown


def _cloud_cpu_without_figure(r) -> bool:  # type: ignore[no-untyped-def]
    return r.offer.backend != "local" and not r.offer.gpus and "no throughput figure" in str(r.error or "")


def _print_rows(rows, spec, show_all: bool = False, job_file: str = "JOB.yaml") -> None:  # type: ignore[no-untyped-def]
    from rich.table import Column, Table

    shown = _shown(rows, show_all)
    out = console()
    names, cells, dropped = fit_columns(COLUMNS, [_cells(r) for r in shown], out.width, _OPTIONAL, _RANGES)
    # names a user types (backend, instance) are never cut; what is left of the width goes to the others
    table = Table(*(Column(n, min_width=9) if n in ("", "GPUs") else Column(n, no_wrap=True) for n in names),
                  box=None, pad_edge=False)  # fmt: skip
    for row in cells:
        table.add_row(*row)
    out.print(table)
    if dropped:
        out.print(f"(a {out.width}-column terminal: {', '.join(dropped)} left out; a wider one or --json shows them)")
    if any(not r.staging_known for r in shown):
        out.print(
            f"staging: unknown (the size of {spec.train.data} is not known), left out of the totals; "
            "pass --data-gb G to count it"
        )
    for r in shown:
        if r.source == "rough":  # the shipped per-core CPU figure: say what it is and how to replace it
            out.print(f"{r.offer.backend} {r.offer.instance}: {r.images_per_s:.0f} img/s is a rough figure "
                      f"({r.source_detail.removeprefix('rough: ')}); `launch profile {job_file}` measures this "
                      "machine", soft_wrap=True)  # fmt: skip
    hidden = sum(1 for r in rows if r.ok) - len(shown)
    if hidden:
        out.print(f"{hidden} more options (larger instances of the same GPU type): --all shows them")
    reasons: dict[tuple[str, str], list[str]] = {}
    # The per-GPU table has no CPU figures: one line on how to see cloud rows beats one error per backend.
    cpu_only = [r for r in rows if _cloud_cpu_without_figure(r)]
    for r in rows:
        if not r.ok and not _cloud_cpu_without_figure(r):
            error = str(r.error).replace(r.offer.instance, "{instance}") if r.offer.instance != "-" else str(r.error)
            reasons.setdefault((r.offer.backend, error), []).append("" if r.offer.instance == "-" else r.offer.instance)
    for (backend, error), instances in reasons.items():
        names = ", ".join(dict.fromkeys(i for i in instances if i))
        out.print(f"[yellow]{backend} {names}[/yellow]: {error.replace('{instance}', 'these instances')}")
    if cpu_only:
        backends = ", ".join(dict.fromkeys(r.offer.backend for r in cpu_only))
        out.print(f"[yellow]{backends}[/yellow]: {_cpu_hint(job_file)}", soft_wrap=True)
    limits = spec.limits
    if limits.max_cost or limits.max_runtime:
        budget = f"max_cost ${limits.max_cost:.2f}" if limits.max_cost else ""
        runtime = f"max_runtime {_hms(limits.max_runtime)}" if limits.max_runtime else ""
        out.print(f"limits: {' '.join(x for x in (budget, runtime) if x)}")


# total time = startup + staging + training (training here includes validation and expected spot restarts)
COLUMNS = ("backend", "instance", "region", "GPUs", "$/h all nodes", "startup", "staging", "training", "total time",
           "total cost", "throughput",
           "catalog", "")  # fmt: skip


# The columns a narrow terminal leaves out first, then the ranges of the totals; the rest always shows.
_OPTIONAL = ("catalog", "throughput", "region", "staging", "startup", "training", "$/h all nodes")
_RANGES = ("total time", "total cost")  # then "5m00s (3m30s-6m31s)" becomes "5m00s", under "time"


def _cells(r) -> tuple[str, ...]:  # type: ignore[no-untyped-def]
    o = r.offer
    gpus = (
        f"{o.nodes}x{o.gpus} {o.gpu_type or ''}".strip() if o.gpus else ("CPU" if o.nodes == 1 else f"{o.nodes}x CPU")
    )
    inst = f"{o.instance}{' spot' if o.spot else ''}"
    total = f"{_hms(r.total_s)} ({_hms(r.time_range[0])}-{_hms(r.time_range[1])})"
    cost = f"{_money(r.cost)} ({_money(r.cost_range[0])}-{_money(r.cost_range[1])})"
    source = f"{r.source} {r.images_per_s:.0f} img/s" + ("/GPU" if o.gpus else "")
    marks = ", ".join([*r.marks, *([] if r.within_limits else ["over limits"])])
    training = _hms(r.training_s + r.validation_s + r.interruption_s)
    price = _money(o.price_per_hour * o.nodes)
    staging = _hms(r.staging_s) if r.staging_known else "unknown"
    return (o.backend, inst, o.region or "-", gpus, price, _hms(r.startup_s), staging, training, total, cost, source,
            r.catalog_date or "-", marks.strip())  # fmt: skip


@main.command("profile")
@click.argument("job_file", type=click.Path(dir_okay=False))
@click.option(
    "--steps",
    type=click.IntRange(min=3),
    default=60,
    show_default=True,
    help="training steps (batches) to run, over 3 short epochs",
)
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="override a spec key, e.g. train.batch=64")
@click.option(
    "--synthetic",
    is_flag=True,
    help="time the model alone on random tensors instead of running the trainer (torchvision models only)",
)
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def profile_cmd(job_file: str, steps: int, overrides: tuple[str, ...], synthetic: bool, as_json: bool) -> None:
    """Run a few real training steps of JOB_FILE here and record images/s for estimates.

    Three short epochs of the job's trainer on a fraction of its data (about --steps
    batches in all), with its model, image size, batch and precision: the built-in
    trainer, or with train.engine: ultralytics, Ultralytics' own training through the
    engine. The figure is the images/s of the training loop in the epochs after the
    first; validation and checkpoint saves are measured apart, as per-epoch overhead.
    `launch estimate` then uses it for this model, image size, batch, precision and
    device (a GPU type here informs the cloud rows with the same GPU).

    The profile and the run pick CPU threads by the same rule (the usable cores
    shared among the local processes; OMP_NUM_THREADS wins), whatever the load.
    """
    from launcher.backends import registry
    from launcher.estimate.profile import profile
    from launcher.spec import load_spec
    from launcher.state.jobs import JobRegistry

    spec = load_spec(job_file, overrides)
    registry.check_sections(spec, Path(job_file), overrides)
    if spec.command:
        fail(f"launch profile measures the built-in trainer, and {job_file} runs a program of your own. Read its "
             f"images/s off a short run (the images_per_s of its summary lines, if it prints them) and pass "
             f"launch estimate {job_file} --images-per-s N.")  # fmt: skip
    record = profile(spec, steps, JobRegistry(), synthetic=True if synthetic else None)
    if as_json:
        echo_json({"model": record.model, "imgsz": record.imgsz, "batch": record.batch, "precision": record.precision,
                   "device": record.device, "images_per_s": record.images_per_s, **dict(record.details or {})})  # fmt: skip
        return
    click.echo(
        f"{record.model} {record.imgsz}px batch {record.batch} {record.precision} on {record.device}: "
        f"{record.images_per_s:.1f} images/s (recorded for estimates)"
    )


@main.group("catalog")
def catalog() -> None:
    """Show or refresh the dated price catalogs."""


@catalog.command("show")
@click.option("-b", "--backend", "backends", multiple=True, metavar="NAME", help="aws, gcp or azure (default: all)")
@click.option("--region", default=None, help="only this region")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def catalog_show(backends: tuple[str, ...], region: str | None, as_json: bool) -> None:
    """Print instances, GPUs and prices with the catalog's date and sources."""
    from launcher.backends.registry import canonical
    from launcher.catalog import catalog_path, load_catalog

    names = [canonical(b) for b in backends] or ["aws", "gcp", "azure"]
    if as_json:
        echo_json({n: load_catalog(n) for n in names})
        return
    from rich.table import Table

    out = console()
    for name in names:
        data = load_catalog(name)
        out.print(f"[bold]{name}[/bold]: prices of {data.get('date')} ({catalog_path(name)})")
        table = Table("instance", "GPUs", "vCPUs", "region", "on-demand $/h", "spot $/h", box=None)
        for inst, entry in sorted(data.get("instances", {}).items(), key=lambda kv: (kv[1].get("gpus", 0), kv[0])):
            for reg, prices in entry.get("prices", {}).items():
                if region and reg != region:
                    continue
                gpus = f"{entry.get('gpus', 0)}x {entry.get('gpu_type')}" if entry.get("gpus") else "-"
                table.add_row(
                    inst,
                    gpus,
                    str(entry.get("vcpus", "")),
                    reg,
                    _price(prices.get("on_demand")),
                    _price(prices.get("spot")),
                )
        out.print(table)
        for source in data.get("sources", []):
            out.print(f"  source: {source}")


def _price(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


@catalog.command("update")
@click.option(
    "-b", "--backend", required=True, type=click.Choice(["aws", "gcp", "azure"]), help="which catalog to refresh"
)
def catalog_update(backend: str) -> None:
    """Refresh a catalog from the provider's public price API (the old file is kept if this fails)."""
    from launcher.catalog.update import update_catalog

    path = update_catalog(backend)
    click.echo(f"updated {backend} prices: {path}")
