"""The backend registry: entry points, aliases, plugins that add but never hide."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from launcher.backends import registry
from launcher.errors import LauncherError

PLUGIN = """
from launcher.backend import Backend, BackendOptions
from launcher.plan import JobRef, JobState, JobStatus, Plan


class EchoOptions(BackendOptions):
    greeting: str = "hi"


class EchoBackend(Backend):
    name = "echo"
    options_model = EchoOptions

    def plan(self, spec, job_id=None):
        opts = self.options(spec)
        return Plan(self.name, job_id or spec.name, spec, {"say": opts.greeting})

    def submit(self, plan, secrets=None):
        return JobRef(plan.job_name, self.name, plan.job_name)

    def status(self, ref):
        return JobStatus(JobState.SUCCEEDED)

    def logs(self, ref, follow=False):
        yield "hello"

    def cancel(self, ref):
        pass


class FakeLocal(EchoBackend):
    name = "local"
"""


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Install a plugin distribution (module + entry-point metadata) on sys.path."""
    (tmp_path / "echo_plugin.py").write_text(PLUGIN)
    dist = tmp_path / "echo_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: echo-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        textwrap.dedent(
            """\
            [launcher.backends]
            echo = echo_plugin:EchoBackend
            local = echo_plugin:FakeLocal
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    registry.reload()
    yield
    sys.modules.pop("echo_plugin", None)
    registry.reload()


def test_builtins_and_aliases() -> None:
    assert {"local", "aws", "gcp", "azure"} <= set(registry.available())
    assert registry.get("sagemaker").name == "aws"
    assert registry.get("Vertex").name == "gcp"
    assert registry.get("azureml").name == "azure"


def test_unknown_backend_is_one_sentence_with_choices() -> None:
    with pytest.raises(LauncherError, match=r"Unknown backend 'kubernetes'\. Choose one of: .*aws"):
        registry.get("kubernetes")


def test_plugin_adds_a_backend_and_never_hides_a_builtin(plugin: None) -> None:
    assert "echo" in registry.available()
    assert registry.get("echo").__name__ == "EchoBackend"
    assert registry.get("local").__module__ == "launcher.backends.local"  # the built-in wins the name clash


def test_plugin_options_come_from_the_plugins_section(plugin: None, tmp_path: Path) -> None:
    from launcher.api import Launcher
    from launcher.errors import SpecError
    from launcher.spec import load_spec

    job = tmp_path / "job.yaml"
    job.write_text("name: a\nplugins:\n  echo: {greeting: hello}\n")
    plan = Launcher("echo").plan(load_spec(job))
    assert plan.payload["say"] == "hello"
    job.write_text("name: a\nplugins:\n  echo: {greting: hello}\n")
    with pytest.raises(SpecError, match=r"plugins.echo.greting: unknown key 'greting'; did you mean 'greeting'\?"):
        Launcher("local").plan(load_spec(job))  # any backend's plan checks every section


def test_missing_extra_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from launcher.errors import MissingExtraError
    from launcher.lazy import require

    monkeypatch.setitem(sys.modules, "boto3", None)  # makes `import boto3` fail like a missing package
    with pytest.raises(MissingExtraError, match=r"pip install 'torch-launcher\[aws\]'"):
        require("boto3", "aws")
