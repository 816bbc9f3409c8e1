"""A tiny pure-Python wheel built here (pip wheel of a one-module project), for tests that need an offline index."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

__all__ = ["tiny_wheel"]


def tiny_wheel(folder: Path, name: str, version: str) -> Path:
    """Build `name`-`version` (one module whose VERSION is `version`) into folder/wheels; returns that folder."""
    project = folder / f"src-{name}"
    (project / name).mkdir(parents=True)
    (project / name / "__init__.py").write_text(f"VERSION = {version!r}\n")
    (project / "pyproject.toml").write_text(
        f'[build-system]\nrequires = ["setuptools>=68"]\nbuild-backend = "setuptools.build_meta"\n'
        f'[project]\nname = "{name}"\nversion = "{version}"\n[tool.setuptools]\npackages = ["{name}"]\n'
    )
    wheels = folder / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheels),
                    str(project)], check=True, capture_output=True)  # fmt: skip
    return wheels
