"""Lazy imports of heavy optional dependencies.

Cloud SDKs, docker and torch are imported inside the functions that need
them, through `require`, so that `launch --help` and `launch --dry-run` never
pay for them (google-cloud-aiplatform alone takes about 3 s to import) and a
missing extra gives a one-line fix instead of an ImportError traceback.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from launcher.errors import MissingExtraError

__all__ = ["DIST", "require"]

DIST = "torch-launcher"


def require(module: str, extra: str) -> ModuleType:
    """Import `module`, or raise a MissingExtraError naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(
            f"This needs the Python package '{module.split('.')[0]}', which is not installed ({exc}).",
            f"Install it with: pip install '{DIST}[{extra}]'",
        ) from None
