"""The folders are the architecture: each top-level part of `launcher` imports only the parts listed before it
in LAYERS, and no module imports its way back to itself. Every import counts: at module level, inside
functions (where a cycle would hide), and under TYPE_CHECKING (README "Architecture")."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "launcher"

# Lowest first: what the image shares with the host (up to runtime), then the host, lowest layer first.
LAYERS = (
    "errors", "lazy", "azure_identity", "contract", "storage", "spec", "runtime",
    "plan", "backend", "state", "catalog", "staging", "estimate", "backends", "runs", "api", "testing", "cli",
)  # fmt: skip


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(REPO).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = _modules()


def _target(name: str) -> str:
    """The module an imported name lives in: itself when it is a module, else the package or module above it."""
    while name not in MODULES and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def imports_of(module: str) -> set[str]:
    """Every launcher module `module` imports, wherever the import statement stands."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {_target(alias.name) for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found |= {_target(f"{base}.{alias.name}") for alias in node.names}
    return {name for name in found if name in MODULES and name != module}


def layer_of(module: str) -> str | None:
    """The top-level part a module belongs to; None for `launcher/__init__.py` (the lazy public API)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


GRAPH = {module: imports_of(module) for module in MODULES}


def test_every_part_of_the_package_has_a_place_in_the_layers() -> None:
    parts = {layer_of(m) for m in MODULES} - {None}
    assert parts - set(LAYERS) == set(), "add the new part to LAYERS where it belongs (and README's Architecture)"
    assert set(LAYERS) - parts == set(), "LAYERS names a part that no longer exists"


def test_no_part_imports_a_part_listed_after_it() -> None:
    rank = {name: i for i, name in enumerate(LAYERS)}
    upward = sorted(
        f"{module} -> {target}"
        for module, targets in GRAPH.items()
        for target in targets
        if layer_of(module) is not None and layer_of(target) is not None
        and rank[layer_of(target)] > rank[layer_of(module)]  # type: ignore[index]
    )  # fmt: skip
    assert upward == []


def _cycle() -> list[str] | None:
    """One import cycle among the modules, as the path that closes it; None when there is none."""
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> list[str] | None:
        if module in path:
            return path[path.index(module) :] + [module]
        if module in done:
            return None
        for target in sorted(GRAPH[module]):
            if found := visit(target, [*path, module]):
                return found
        done.add(module)
        return None

    for module in sorted(GRAPH):
        if found := visit(module, []):
            return found
    return None


def test_no_module_imports_its_way_back_to_itself() -> None:
    cycle = _cycle()
    assert cycle is None, " -> ".join(cycle or [])


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from launcher.api import Launcher\n", {"launcher.api"}),
        ("def f():\n    from launcher.runs import supervisor\n", {"launcher.runs.supervisor"}),
        (
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from launcher.spec import JobSpec\n",
            {"launcher.spec"},
        ),
        ("import launcher.storage.s3\n", {"launcher.storage.s3"}),
    ],
)
def test_the_scan_sees_imports_wherever_they_stand(source: str, expected: set[str], tmp_path: Path) -> None:
    """The circles this test keeps out closed through imports inside functions and type-only imports."""
    module = "launcher.errors"
    saved = MODULES[module]
    try:
        MODULES[module] = tmp_path / "errors.py"
        MODULES[module].write_text(source)
        assert imports_of(module) == expected
    finally:
        MODULES[module] = saved
