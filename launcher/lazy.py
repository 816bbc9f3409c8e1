"""Lazy imports of heavy optional dependencies.

Cloud SDKs, docker and torch are imported inside the functions that need
them, through `require`, so that `launch --help` and `launch --dry-run` never
pay for them (google-cloud-aiplatform alone takes about 3 s to import) and a
missing extra gives a one-line fix instead of an ImportError traceback.

`EXTRA_MODULES` lists, per extra, every module the code imports lazily through
`require(module, extra)` (a test keeps it complete), so that `launch backends`
checks what a submit really imports, not just a top-level package.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Iterable

from launcher.errors import MissingExtraError

__all__ = ["DIST", "EXTRA_MODULES", "install_hint", "missing_modules", "require"]

DIST = "torch-launcher"

EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "aws": ("boto3", "botocore.config", "boto3.s3.transfer"),
    "gcp": (
        "google.auth",
        "google.auth.exceptions",
        "google.auth.transport.requests",
        "google.api_core.exceptions",
        "google.cloud.aiplatform_v1",
        "google.cloud.storage",
        "google.cloud.logging",
        "google.cloud.secretmanager",
        "google_crc32c",
    ),  # fmt: skip
    "azure": (
        "azure.core",
        "azure.core.exceptions",
        "azure.core.rest",
        "azure.identity",
        "azure.ai.ml",
        "azure.ai.ml.identity",
        "azure.ai.ml._utils.utils",
        "azure.storage.blob",
        "azure.keyvault.secrets",
    ),  # fmt: skip
    "docker": ("docker", "docker.errors"),
    "train": ("torch", "torchvision.models", "matplotlib"),
}


def install_hint(extra: str | None) -> str:
    """The pip command that installs `extra` (always naming it)."""
    return f"pip install '{DIST}[{extra}]'" if extra else "install the package that provides it"


def missing_modules(modules: Iterable[str]) -> list[str]:
    """The modules of `modules` that cannot be imported (each is imported for real, submodules included)."""
    missing = []
    for module in dict.fromkeys(modules):
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(module)
    return missing


def require(module: str, extra: str) -> ModuleType:
    """Import `module`, or raise a MissingExtraError naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(
            f"This needs the Python package '{module.split('.')[0]}' of the '{extra}' extra, which is not installed ({exc}).",
            f"Install it with: {install_hint(extra)}",
        ) from None
