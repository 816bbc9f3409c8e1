"""The root click group and what every command shares: error handling and output."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from launcher import __version__
from launcher.errors import LauncherError

__all__ = ["main", "DefaultGroup", "echo_json", "fail", "console"]


class DefaultGroup(click.Group):
    """A group whose first argument may be a job file: `launch job.yaml` = `launch run job.yaml`."""

    default_command = "run"

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h", "--version"):
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LauncherError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)


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
