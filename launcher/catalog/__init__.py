"""Dated catalogs of cloud instances and prices, shipped in the package.

One JSON file per cloud backend (`aws.json`, `gcp.json`, `azure.json`) in this
folder, each owned by its backend: what instances exist, their GPUs, and their
prices per region (on-demand and spot), with the date the prices were taken
and where they came from. A refreshed copy written by `launch catalog update`
goes to the user's state dir and takes precedence over the shipped file.

Shape shared by all files (a backend may add its own keys):

    {"backend": "aws", "date": "YYYY-MM-DD", "currency": "USD",
     "sources": ["https://..."], "default_region": "us-east-1",
     "startup_s": 420, "staging_mb_per_s": 200,
     "instances": {"ml.g5.xlarge": {"gpus": 1, "gpu_type": "A10G", "vcpus": 4,
                   "memory_gib": 16, "prices": {"us-east-1": {"on_demand": 1.408, "spot": 0.4224}}}}}
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from pathlib import Path
from typing import Any

from launcher.errors import LauncherError
from launcher.state.jobs import state_dir

__all__ = ["load_catalog", "catalog_path", "user_catalog_path"]


def user_catalog_path(backend: str) -> Path:
    return state_dir() / "catalog" / f"{backend}.json"


def catalog_path(backend: str) -> Path:
    """The refreshed copy in the state dir if present, else the shipped file."""
    user = user_catalog_path(backend)
    if user.exists():
        return user
    return Path(str(resources.files("launcher.catalog").joinpath(f"{backend}.json")))


@functools.lru_cache(maxsize=16)
def _load(path: Path, mtime: float) -> dict[str, Any]:
    return json.loads(path.read_text())


def load_catalog(backend: str, path: Path | None = None) -> dict[str, Any]:
    """The catalog of `backend` (a shared, read-only dict: do not mutate it)."""
    path = path or catalog_path(backend)
    if not path.exists():
        raise LauncherError(f"No price catalog for backend '{backend}' ({path}).", "Reinstall the package.")
    try:
        return _load(path, path.stat().st_mtime)
    except json.JSONDecodeError as exc:
        raise LauncherError(
            f"The price catalog {path} is damaged ({exc}).", "Delete it to use the shipped one."
        ) from None
