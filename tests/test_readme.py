"""The README's commands and Python snippet are what the project really does."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tests.conftest import REPO

README = (REPO / "README.md").read_text()


def test_ci_runs_the_readme_test_command() -> None:
    command = re.search(r"## Tests \(one command\)\s+```bash\n(.+?)\n```", README, re.S).group(1)  # type: ignore[union-attr]
    assert "python -m pytest" in command
    assert "python -m pytest" in (REPO / ".ci" / "run").read_text()


def test_quickstart_command_names_a_real_spec() -> None:
    block = re.search(r"## Quickstart.*?```bash\n(.+?)\n```", README, re.S).group(1)  # type: ignore[union-attr]
    spec = re.search(r"launch (\S+\.yaml)", block).group(1)  # type: ignore[union-attr]
    assert (REPO / spec).exists()


@pytest.mark.slow
def test_python_api_snippet_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Run the README's Python block as written (local backend, a one-epoch job)."""
    code = re.search(r"```python\n(.+?)\n```", README, re.S).group(1)  # type: ignore[union-attr]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "examples").mkdir()  # a copy: the store (checkpoint.uri: runs) is beside the spec, not in this checkout
    shutil.copy(REPO / "examples" / "quickstart.yaml", tmp_path / "examples" / "quickstart.yaml")
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "JobState.SUCCEEDED api-try-" in out
    assert (tmp_path / "examples" / "runs" / "api-try" / "manifest.json").exists()  # the same layout as a bucket


def test_readme_and_the_dockerfile_agree_on_the_images_user() -> None:
    """README once promised a non-root user the Dockerfile never set (issue 23)."""
    dockerfile = (REPO / "images" / "Dockerfile").read_text()
    readme = (REPO / "README.md").read_text()
    has_user = any(line.strip().upper().startswith("USER ") for line in dockerfile.splitlines())
    assert ("non-root user" in readme) == has_user
    assert has_user or "no `USER`" in readme
