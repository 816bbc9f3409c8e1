"""`launch --help` and `launch --dry-run -b local` must not import torch, docker or a cloud SDK.

Each runs in a fresh interpreter (a subprocess), which then lists the heavy
top-level packages that appeared in sys.modules. Namespace stubs that site.py
creates from .pth files at start-up (google, google.cloud from the
google-cloud nspkg.pth) are there before our code runs and are not counted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("torch", "torchvision", "docker", "boto3", "botocore", "google", "azure", "numpy", "requests")

PROBE = """
import json, sys
baseline = set(sys.modules)  # .pth files (namespace packages such as google) load before any code of ours
from launcher.cli import main
try:
    main(sys.argv[1:], prog_name="launch")
except SystemExit as exc:
    code = exc.code
heavy = sorted({name.split(".")[0] for name in set(sys.modules) - baseline} & set(HEAVY))
print("\\nIMPORTED=" + json.dumps({"code": code, "heavy": heavy}))
"""


def _probe(*args: str) -> dict[str, object]:
    code = f"HEAVY = {HEAVY!r}\n{PROBE}"
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120, check=False)
    line = [x for x in done.stdout.splitlines() if x.startswith("IMPORTED=")]
    assert line, done.stdout + done.stderr
    return json.loads(line[-1].removeprefix("IMPORTED="))


@pytest.mark.parametrize("args", [["--help"], ["run", "--help"], ["image", "--help"]])
def test_help_imports_nothing_heavy(args: list[str]) -> None:
    assert _probe(*args) == {"code": 0, "heavy": []}


@pytest.mark.parametrize("runtime", ["auto", "docker", "process"])
def test_dry_run_local_imports_nothing_heavy(tmp_path: Path, runtime: str) -> None:
    job = tmp_path / "job.yaml"
    job.write_text(f"name: quick\nresources: {{gpus: 1}}\nlocal: {{runtime: {runtime}}}\n")
    assert _probe(str(job), "--dry-run", "-b", "local") == {"code": 0, "heavy": []}
