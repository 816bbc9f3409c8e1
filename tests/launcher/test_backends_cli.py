"""`launch backends`: the SDK check imports what a submit imports, and its hint always names the extra."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from launcher.backends import registry
from launcher.cli import main

REPO = Path(__file__).resolve().parents[2]


def _backends_output(monkeypatch: pytest.MonkeyPatch, *names: str) -> str:
    monkeypatch.setattr(registry, "available", lambda: list(names))  # no credential probes of the other clouds
    result = CliRunner().invoke(main, ["backends"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    return result.output


def test_a_missing_boto3_names_the_aws_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "boto3", None)  # `import boto3` fails as if the package were not installed
    out = _backends_output(monkeypatch, "aws")
    line = next(line for line in out.splitlines() if line.strip().startswith("aws"))
    assert " no " in line and "pip install 'torch-launcher[aws]'" in line, out


@pytest.mark.parametrize("module", ["google.api_core", "google.cloud.storage", "google.cloud.aiplatform_v1"])
def test_a_missing_gcp_submodule_is_not_reported_as_present(module: str, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("google.cloud.aiplatform_v1")  # the gcp extra is installed, but one module of it is not
    for loaded in [m for m in sys.modules if m == module or m.startswith(module + ".")]:
        monkeypatch.delitem(sys.modules, loaded)
    monkeypatch.setitem(sys.modules, module, None)
    out = _backends_output(monkeypatch, "gcp")
    line = next(line for line in out.splitlines() if line.strip().startswith("gcp"))
    assert " no " in line and "pip install 'torch-launcher[gcp]'" in line and "missing" in line, out


def test_the_json_output_names_the_extra_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "boto3", None)
    monkeypatch.setattr(registry, "available", lambda: ["aws"])
    result = CliRunner().invoke(main, ["backends", "--json"])
    assert result.exit_code == 0, result.output
    assert '"sdk": false' in result.output and "torch-launcher[aws]" in result.output


def _requires(path: Path) -> list[tuple[str, str]]:
    """(module, extra) of every `require("module", extra)` call in `path`, module-level string constants resolved."""
    tree = ast.parse(path.read_text())
    consts = {t.id: n.value.value for n in tree.body if isinstance(n, ast.Assign) and isinstance(n.value, ast.Constant)
              for t in n.targets if isinstance(t, ast.Name)}  # fmt: skip
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "require" and len(node.args) == 2:
            module, extra = node.args
            if isinstance(module, ast.Constant):
                value = extra.value if isinstance(extra, ast.Constant) else consts.get(getattr(extra, "id", ""))
                found.append((module.value, str(value)))
    return found


def test_extra_modules_lists_every_lazily_required_module() -> None:
    from launcher.lazy import EXTRA_MODULES

    calls = [call for path in sorted((REPO / "launcher").rglob("*.py"))
             for call in _requires(path)]  # fmt: skip
    assert len(calls) > 20  # the scan sees the backends' and the stores' imports
    missing = sorted({(m, e) for m, e in calls if m not in EXTRA_MODULES.get(e, ())})
    assert missing == [], "add these to launcher.lazy.EXTRA_MODULES so `launch backends` checks them"
