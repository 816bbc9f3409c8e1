"""`launch backends` and `launch schema`."""

from __future__ import annotations

import json

import click

from launcher.cli.base import console, echo_json, main

__all__ = ["backends", "schema"]


@main.command()
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def backends(as_json: bool) -> None:
    """List installed backends and whether their SDK and credentials are usable."""
    from launcher.backends import registry
    from launcher.errors import LauncherError

    rows = []
    for name in registry.available():
        try:
            check = registry.create(name).check()
            rows.append({"name": name, "sdk": check.sdk, "credentials": check.credentials, "message": check.message})
        except LauncherError as exc:
            rows.append({"name": name, "sdk": False, "credentials": None, "message": str(exc)})
        rows[-1]["aliases"] = sorted(alias for alias, backend in registry.ALIASES.items() if backend == name)
    if as_json:
        echo_json(rows)
        return
    from rich.markup import escape
    from rich.table import Table

    mark = {True: "yes", False: "no", None: "-"}
    table = Table("backend", "aliases", "sdk", "credentials", "notes", box=None)
    for row in rows:  # escaped: rich would read the `[aws]` of a pip hint as markup and drop it
        table.add_row(escape(row["name"]), ", ".join(row["aliases"]) or "-", mark[row["sdk"]], mark[row["credentials"]],
                      escape(row["message"]))  # fmt: skip
    console().print(table)


@main.command()
def schema() -> None:
    """Print the job spec's JSON Schema, backend options included (for editor completion)."""
    click.echo(json.dumps(full_schema(), indent=2))


def full_schema() -> dict:  # type: ignore[type-arg]
    from launcher.backends import registry
    from launcher.errors import LauncherError
    from launcher.spec import BACKEND_SECTIONS, JobSpec

    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **JobSpec.model_json_schema()}
    for name in BACKEND_SECTIONS:
        try:
            options = registry.get(name).options_model.model_json_schema()
        except LauncherError:
            continue
        defs = options.pop("$defs", {})
        schema.setdefault("$defs", {}).update(defs)
        schema["properties"][name] = {**options, "description": schema["properties"][name].get("description", "")}
    return schema
