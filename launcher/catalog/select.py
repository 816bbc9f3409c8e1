"""Choosing and pricing a catalog instance: the one rule every cloud backend uses.

The rule, the same on AWS, GCP and Azure (each over its own dated catalog):

- FIT. An instance fits `resources` when it has exactly `gpus` GPUs per node,
  of `gpu_type` when one is asked for (a GPU type means nothing without GPUs),
  at least `cpus` vCPUs (default: 4 per GPU, so data loading keeps the GPUs
  busy) and at least `memory` GiB.
- PRICE. An instance's price is its catalog price per node-hour in the job's
  region, spot or on-demand as the job asks (on-demand when the catalog has
  no spot price). When the catalog has no price for that region it falls back
  to the catalog's default region, and says so in a note. An instance priced
  in neither has no price: it can still be named, but is never "cheapest" and
  cannot cap a budget.
- CHEAPEST. Without a named instance, the fitting instance with the lowest
  on-demand price in that sense wins (ties: by name). The choice does not
  depend on spot, so a spot job and its on-demand twin run on the same type.
- NAMED. A named instance must exist in the catalog (else the closest names
  are suggested) and match what `resources` asks for: its GPU count when
  `gpus` > 0 (with gpus: 0 the job uses the instance's own GPUs, with a note),
  its GPU type, and at least the vCPUs and memory asked for explicitly.
- NO FIT. One error that names what exists: the GPU counts the type comes in,
  or the GPU types the catalog has, else the cpus/memory asked for.

Per-cloud code keeps only what is its own: the option names in messages
(`Cloud`), and on GCP the expansion of a machine type and accelerator into
catalog instances.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from launcher.catalog.limits import budget_runtime
from launcher.errors import LauncherError

if TYPE_CHECKING:
    from launcher.spec import JobSpec, Resources

__all__ = [
    "Choice",
    "Cloud",
    "VCPUS_PER_GPU",
    "fits",
    "price",
    "choose",
    "ranked",
    "named",
    "no_fit",
    "offer_rows",
    "runtime_limit",
]

VCPUS_PER_GPU = 4


@dataclass(frozen=True)
class Cloud:
    """How one cloud names things in messages."""

    platform: str  # "SageMaker"
    what: str  # "instance type"
    option: str  # "aws.instance_type"


@dataclass(frozen=True)
class Choice:
    """A catalog instance for a job, priced the one way."""

    name: str
    row: Mapping[str, Any]
    price: float | None  # USD per node-hour, spot when the job is spot; None: not in the catalog
    on_demand: float | None
    region: str  # where the price comes from (the job's region, or the catalog's default)

    @property
    def gpus(self) -> int:
        return int(self.row["gpus"])


def fits(row: Mapping[str, Any], res: "Resources") -> bool:
    if row["gpus"] != res.gpus:
        return False
    if res.gpus and res.gpu_type and str(row.get("gpu_type") or "").upper() != res.gpu_type:
        return False
    return row["vcpus"] >= (res.cpus or VCPUS_PER_GPU * res.gpus) and row["memory_gib"] >= (res.memory or 0)


def _prices(row: Mapping[str, Any], region: str, catalog: Mapping[str, Any]) -> tuple[Mapping[str, float] | None, str]:
    default = str(catalog["default_region"])
    for where in (region, default):
        if row["prices"].get(where):
            return row["prices"][where], where
    return None, region


def price(name: str, catalog: Mapping[str, Any], region: str | None, spot: bool) -> Choice:
    """`name` priced in `region` (default: the catalog's), falling back to the default region."""
    row = catalog["instances"][name]
    prices, used = _prices(row, region or str(catalog["default_region"]), catalog)
    if prices is None:
        return Choice(name, row, None, None, used)
    on_demand = prices.get("on_demand")
    return Choice(name, row, prices.get("spot", on_demand) if spot else on_demand, on_demand, used)


def ranked(catalog: Mapping[str, Any], res: "Resources", region: str | None,
           candidates: Iterable[str] | None = None) -> list[Choice]:  # fmt: skip
    """Every fitting instance (among `candidates`, default all) in CHEAPEST's order: its choice first, then
    the next fits (what the supervisor tries after a capacity error, launcher.runs.supervisor)."""
    names = list(catalog["instances"]) if candidates is None else list(candidates)
    fitting = [price(n, catalog, region, res.spot) for n in names if fits(catalog["instances"][n], res)]
    return sorted(fitting, key=lambda c: (c.on_demand is None, c.on_demand or 0.0, c.name))


def choose(catalog: Mapping[str, Any], res: "Resources", region: str | None, cloud: Cloud,
           candidates: Iterable[str] | None = None) -> Choice:  # fmt: skip
    """The cheapest fitting instance (among `candidates`, default all), or the no-fit error."""
    fitting = ranked(catalog, res, region, candidates)
    if not fitting:
        raise no_fit(catalog, res, cloud)
    return fitting[0]


def named(catalog: Mapping[str, Any], name: str, res: "Resources", region: str | None, cloud: Cloud,
          notes: list[str] | None = None) -> Choice:  # fmt: skip
    """The named instance, checked against `resources` by the fit rule (gpus: 0 takes its GPUs)."""
    instances = catalog["instances"]
    if name not in instances:
        close = difflib.get_close_matches(name, list(instances), n=3)
        hint = f"did you mean {' or '.join(close)}?" if close else f"`launch estimate` lists the known {cloud.what}s."
        raise LauncherError(
            f"{cloud.option} '{name}' is not a {cloud.what} in the {cloud.platform} catalog.", f"Fix it; {hint}"
        )
    row = instances[name]
    if res.gpus and row["gpus"] != res.gpus:
        raise LauncherError(
            f"{name} has {row['gpus']} GPU(s) per node but resources.gpus asks for {res.gpus}.",
            f"Set resources.gpus to {row['gpus']}, or pick a {cloud.what} with {res.gpus} GPUs.",
        )
    if res.gpu_type and row["gpus"] and str(row.get("gpu_type") or "").upper() != res.gpu_type:
        raise LauncherError(
            f"{name} has {row.get('gpu_type')} GPUs, not {res.gpu_type}.", f"Fix resources.gpu_type or {cloud.option}."
        )
    if (res.cpus and row["vcpus"] < res.cpus) or (res.memory and row["memory_gib"] < res.memory):
        raise LauncherError(
            f"{name} has {row['vcpus']} vCPUs and {row['memory_gib']} GiB, less than resources asks for.",
            f"Lower resources.cpus / resources.memory, or pick a larger {cloud.option}.",
        )
    if row["gpus"] and not res.gpus and notes is not None:
        notes.append(f"resources.gpus is 0; the job uses all {row['gpus']} GPU(s) of {name}")
    return price(name, catalog, region, res.spot)


def no_fit(catalog: Mapping[str, Any], res: "Resources", cloud: Cloud) -> LauncherError:
    rows = list(catalog["instances"].values())
    kind = res.gpu_type or "any type"
    if res.gpus:
        types = sorted({str(r.get("gpu_type")) for r in rows if r["gpus"]})
        if res.gpu_type and res.gpu_type not in types:
            return LauncherError(
                f"{cloud.platform} has no {res.gpu_type} GPUs in the catalog.",
                f"Use resources.gpu_type: one of {', '.join(types)}.",
            )
        counts = sorted(
            {r["gpus"] for r in rows if r["gpus"] and (not res.gpu_type or r.get("gpu_type") == res.gpu_type)}
        )
        if res.gpus not in counts:
            return LauncherError(
                f"No {cloud.platform} {cloud.what} has exactly {res.gpus} {kind} GPUs per node; they come with {', '.join(map(str, counts))}.",
                f"Set resources.gpus to one of those (and resources.nodes for more), or name {cloud.option}.",
            )
    cpus = res.cpus or (f"{VCPUS_PER_GPU * res.gpus} (4 per GPU)" if res.gpus else "any")
    return LauncherError(
        f"No {cloud.platform} {cloud.what} in the catalog fits {res.gpus} {kind} GPU(s), {cpus} vCPUs and {res.memory or 'any'} GiB.",
        f"Lower resources.cpus / resources.memory, or name {cloud.option}.",
    )


def price_note(choice: Choice, region: str | None, notes: list[str]) -> None:
    """Say when the price comes from another region than the job's (or from nowhere)."""
    if choice.price is None:
        notes.append(f"no catalog price for {choice.name} in {region} or the default region")
    elif region and choice.region != region:
        notes.append(f"no catalog price for {choice.name} in {region}; {choice.region} prices used")


def offer_rows(
    catalog: Mapping[str, Any], res: "Resources", region: str | None, names: Iterable[str] | None = None
) -> list[Choice]:
    """Every fitting (or the given) instance that has a price, cheapest first: the estimator's offers."""
    chosen = [n for n in catalog["instances"] if fits(catalog["instances"][n], res)] if names is None else list(names)
    priced = [c for c in (price(n, catalog, region, res.spot) for n in chosen) if c.price is not None]
    return sorted(priced, key=lambda c: (c.price, c.name))


def runtime_limit(spec: "JobSpec", choice: Choice | None, notes: list[str]) -> int | None:
    """limits.max_runtime, capped by what limits.max_cost buys at the choice's price (launcher.catalog.limits)."""
    if spec.limits.max_cost is None:
        return spec.limits.max_runtime
    if choice is None or choice.price is None:
        what = choice.name if choice else "the machine"
        notes.append(f"max_cost cannot cap the runtime: no catalog price for {what}")
        return spec.limits.max_runtime
    return budget_runtime(spec, choice.price, choice.name, notes)
