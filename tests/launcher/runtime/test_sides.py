"""The two sides stay apart: code in launcher/runtime (inside the image) never imports the code
that runs on the user's machine, and the user's side reaches the image only through the contract."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
RUNTIME = REPO / "launcher" / "runtime"
# what both sides share: the contract, the trainer's keys (spec.TrainConfig), the stores, and small helpers
SHARED = {"contract", "errors", "lazy", "spec", "storage", "azure_identity", "runtime"}
# the user-side modules that share the runtime's CPU policy (threads, loader workers) for jobs on this machine
USER_SIDE_RUNTIME_IMPORTS = {
    ("launcher/estimate/profile.py", "launcher.runtime.cpu"),
    # the local row's CPU offer counts the cores a job gets here by the same rule (the rough CPU figure is per core)
    ("launcher/estimate/local.py", "launcher.runtime.cpu"),
    # the local Docker job's /dev/shm is sized for the loader workers the trainer will run: the same rule
    ("launcher/backends/local.py", "launcher.runtime.cpu"),
    # a YOLO model's GFLOPs come from the one module that imports Ultralytics
    ("launcher/estimate/throughput.py", "launcher.runtime.train.ultralytics_engine"),
    # where Ultralytics' released weights are: asked of the adapter at submit (launcher.staging.weights)
    ("launcher/staging/weights.py", "launcher.runtime.train.ultralytics_engine"),
}


def _launcher_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names |= {node.module} | (
                {f"{node.module}.{a.name}" for a in node.names} if node.module == "launcher" else set()
            )
    return {name for name in names if name == "launcher" or name.startswith("launcher.")}


def test_runtime_code_imports_only_what_both_sides_share() -> None:
    found = {
        (str(path.relative_to(REPO)), name)
        for path in RUNTIME.rglob("*.py")
        for name in _launcher_imports(path)
        if name != "launcher" and name.split(".")[1] not in SHARED
    }
    assert found == set()


def test_user_side_code_reaches_the_image_only_through_the_contract() -> None:
    user_side = [p for p in (REPO / "launcher").rglob("*.py") if RUNTIME not in p.parents]
    found = {
        (str(path.relative_to(REPO)), name)
        for path in user_side
        for name in _launcher_imports(path)
        if name.startswith("launcher.runtime")
    }
    assert found == USER_SIDE_RUNTIME_IMPORTS


def test_the_entrypoint_and_the_trainer_load_no_user_side_module() -> None:
    code = (
        "import sys\n"
        "import launcher.runtime.entrypoint, launcher.runtime.train.loop, launcher.runtime.secrets\n"
        "user = ('api', 'cli', 'backend', 'backends', 'registry', 'estimate', 'catalog', 'jobs', 'images', 'pushed', 'plan')\n"
        "print(sorted(m for m in sys.modules if m.startswith('launcher.') and m.split('.')[1] in user))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_shared_side_imports_only_the_shared_side() -> None:
    """What the image installs is closed under imports: a shared module never reaches a host-only one."""
    shared = [
        p
        for p in (REPO / "launcher").rglob("*.py")
        if p.relative_to(REPO / "launcher").parts[0].removesuffix(".py") in SHARED
    ]
    found = {
        (str(path.relative_to(REPO)), name)
        for path in shared
        for name in _launcher_imports(path)
        if name != "launcher" and name.split(".")[1] not in SHARED
    }
    assert found == set()


def test_the_image_imports_the_trainers_part_of_the_spec_only() -> None:
    """TrainConfig (spec/train.py) is all the image needs of the spec: not the YAML reader, not the job models."""
    code = (
        "import sys\n"
        "import launcher.runtime.entrypoint, launcher.runtime.train.config, launcher.runtime.train.loop\n"
        "print(sorted(m for m in sys.modules if m.startswith('launcher.spec')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['launcher.spec', 'launcher.spec.messages', 'launcher.spec.names', 'launcher.spec.train']"
