"""The `launch` command line.

    launch [-b local|aws|gcp|azure] JOB.yaml [--dry-run] [--detach] [--set K=V]... [--yes] [--json]
    launch sweep JOB.yaml | launch sweep status NAME
    launch status|logs|stop|ls|backends|schema|...

`launch JOB.yaml` is short for `launch run JOB.yaml`. Each group of commands
lives in its own module, listed in COMMAND_MODULES; a module registers its
commands on `main` when imported. Errors the user can act on are printed as
one line (no traceback) with a non-zero exit code.
"""

from __future__ import annotations

import importlib

from launcher.cli.base import main

__all__ = ["main"]

COMMAND_MODULES = ("run", "jobs", "info", "image", "ckpt", "estimate", "sweep", "data")

for _module in COMMAND_MODULES:
    importlib.import_module(f"launcher.cli.{_module}")
