"""The installed package: its list of packages is the tree, and it claims no generic top-level name."""

from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _setuptools() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_folder_of_code_or_data_is_a_listed_package_and_every_listed_package_a_folder() -> None:
    config = _setuptools()
    files = [p for root in ("launcher", "backends") for p in (REPO / root).rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    folders = {str(p.parent.relative_to(REPO)) for p in files}  # code and data-only folders alike
    listed = {config.get("package-dir", {}).get(name, name.replace(".", "/")) for name in config["packages"]}
    assert listed == folders, f"pyproject.toml's packages differ from the tree: missing {sorted(folders - listed)}, extra {sorted(listed - folders)}"


def test_only_the_launcher_name_is_installed_at_the_top_level() -> None:
    assert {name.split(".")[0] for name in _setuptools()["packages"]} == {"launcher"}


def test_the_backends_folder_is_imported_as_launcher_backends() -> None:
    import launcher.backends.local

    assert Path(launcher.backends.local.__file__).resolve() == REPO / "backends" / "local.py"
