"""torch-launcher: one job spec, many places to train.

    from launcher import Launcher, JobSpec

Imports are lazy so that `import launcher` (and `launch --help`) stays fast
and pulls in no cloud SDK, docker or torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["Launcher", "Job", "JobSpec", "Plan", "LauncherError", "__version__"]
__version__ = "0.1.0"

if TYPE_CHECKING:
    from launcher.api import Job, Launcher
    from launcher.errors import LauncherError
    from launcher.plan import Plan
    from launcher.spec import JobSpec

_WHERE = {"Launcher": "launcher.api", "Job": "launcher.api", "JobSpec": "launcher.spec",
          "Plan": "launcher.plan", "LauncherError": "launcher.errors"}  # fmt: skip


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib  # noqa: PLC0415

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'launcher' has no attribute {name!r}")
