"""The root click group and what every command shares: error handling and output."""

from __future__ import annotations

import difflib
import json
import sys
from pathlib import Path
from typing import Any, Callable

import click

from launcher import __version__
from launcher.errors import LauncherError

__all__ = ["main", "DefaultGroup", "echo_json", "fail", "console", "fit_columns"]


class DefaultGroup(click.Group):
    """A group whose first argument may be a job file: `launch job.yaml` = `launch run job.yaml`."""

    default_command = "run"

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h", "--version"):
            _refuse_a_typo(ctx, args[0], list(self.commands))
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The group's help, then the options of `launch JOB.yaml` (the default command), which the group's
        own options list would hide."""
        super().format_help(ctx, formatter)
        command = self.commands.get(self.default_command)
        if command is None:
            return
        records = [
            r
            for p in command.get_params(ctx)
            if isinstance(p, click.Option) and (r := p.get_help_record(ctx)) and "--help" not in r[0]
        ]
        with formatter.section(f"Options of `launch JOB.yaml` (`launch {self.default_command} --help`)"):
            formatter.write_dl(records)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LauncherError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)


def _refuse_a_typo(ctx: click.Context, word: str, commands: list[str]) -> None:
    """`launch stauts`: a word that is no file and close to a command is a typo of the command, said so;
    anything else goes on as a job file (whose own check says when it is missing)."""
    if word.startswith("-") or "/" in word or word.endswith((".yaml", ".yml")) or Path(word).exists():
        return
    close = difflib.get_close_matches(word, commands, n=1, cutoff=0.6)
    if close:
        click.echo(f"error: no command or job file '{word}'; did you mean `launch {close[0]}`?", err=True)
        ctx.exit(2)


@click.group(cls=DefaultGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="launch")
def main() -> None:
    """Run one PyTorch training job spec locally or on AWS SageMaker, GCP Vertex AI or Azure ML.

    \b
    launch examples/quickstart.yaml              train on this machine
    launch -b aws job.yaml --dry-run             print the SageMaker request
    launch estimate job.yaml                     cost and time on every backend
    launch sweep job.yaml                        many trials of it (its sweep: section), one budget
    launch status | logs JOB | stop JOB | ls     follow jobs
    """


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


def fail(message: str, code: int = 2) -> None:
    """Stop the command with one line on stderr and exit `code`."""
    raise _Exit(message, code)


class _Exit(LauncherError):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.exit_code = code


def console(stderr: bool = False):  # type: ignore[no-untyped-def]
    """A rich console; imported lazily because rich costs ~50 ms."""
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, file=sys.stderr if stderr else None)


def fit_columns(names: tuple[str, ...], cells: list[tuple[str, ...]], width: int, optional: tuple[str, ...],
                ranges: tuple[str, ...] = ()) -> tuple[list[str], list[list[str]], list[str]]:  # fmt: skip
    """The columns of a table that fit `width` (each as wide as its widest cell, 2 columns of padding; the
    header-less marks column counts 12): `optional` ones are dropped in order, then the `(low-high)` ranges of
    the `ranges` columns (their header loses its first word). Returns (names, cells, what was left out)."""
    keep, rows, dropped = list(names), [list(c) for c in cells], []

    def needed() -> int:
        return sum(min(max([len(n), *(len(r[i]) for r in rows)]), 12 if n == "" else 999) + 2
                   for i, n in enumerate(keep))  # fmt: skip

    for name in optional:
        if needed() <= width:
            break
        if name not in keep:
            continue
        i = keep.index(name)
        keep.pop(i)
        for r in rows:
            r.pop(i)
        dropped.append(name)
    if ranges and needed() > width:
        for name in ranges:
            i = keep.index(name)
            keep[i] = name.split(" ", 1)[-1]
            for r in rows:
                r[i] = r[i].split(" (")[0]
        dropped.append("the totals' ranges")
    return keep, rows, dropped


def unfinished(find: Callable[[str], Any], what: str, name: str, follow: str) -> Any | None:
    """The running record of `name` that `find` returns (a run or a sweep) when its supervisor is gone, to be
    picked up; None when there is none; refused when its supervisor still runs (`follow`: the command that
    follows it, `{id}` the record's id)."""
    from launcher.errors import JobNotFoundError  # noqa: PLC0415
    from launcher.runs.supervisor import supervisor_alive  # noqa: PLC0415

    try:
        existing = find(name)
    except JobNotFoundError:
        return None
    if existing is None or existing.state != "running":
        return None
    if supervisor_alive(existing):
        raise LauncherError(
            f"{what.capitalize()} {existing.id} of {name} is supervised already, by process {existing.supervisor_pid}.",
            f"Follow it with: {follow.format(id=existing.id)}",
        )
    click.echo(f"picking up {what} {existing.id} from the job registry (its supervisor is gone)", err=True)
    return existing
