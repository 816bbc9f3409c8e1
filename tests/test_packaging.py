"""The installed package: the repository path is the import path, and it claims no generic top-level name."""

from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _setuptools() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_folder_of_code_is_a_package_that_packages_find_includes() -> None:
    include = _setuptools()["packages"]["find"]["include"]
    assert include == ["launcher*"]
    folders = {p.parent for p in (REPO / "launcher").rglob("*.py") if "__pycache__" not in p.parts}
    missing = sorted(str(f.relative_to(REPO)) for f in folders if not (f / "__init__.py").is_file())
    assert missing == [], f"these folders of code have no __init__.py, so packages.find leaves them out: {missing}"


def test_only_the_launcher_name_is_installed_at_the_top_level() -> None:
    assert not (REPO / "backends").exists()
    assert [p.name for p in REPO.iterdir() if (p / "__init__.py").is_file() and p.name not in {"tests"}] == ["launcher"]


def test_the_backends_are_a_plain_subpackage_of_launcher() -> None:
    import launcher.backends.local

    assert Path(launcher.backends.local.__file__).resolve() == REPO / "launcher" / "backends" / "local.py"
