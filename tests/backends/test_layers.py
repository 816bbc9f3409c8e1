"""Layers point one way: the core backend class stays below the image builder, and plan() reads
nothing but its arguments and what the constructor read."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from launcher.catalog import load_catalog
from launcher.spec import validate_spec
from tests.backends.test_contract import OPTIONS
from tests.backends.test_selection import CLOUDS, _instance

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")
REPO = Path(__file__).resolve().parents[2]


def _printed_by(code: str) -> str:
    """What `code` prints in a fresh interpreter (a fresh sys.modules) run from the repository."""
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()


def test_making_a_cloud_backend_imports_neither_the_image_builder_nor_the_local_backend() -> None:
    code = (
        "import sys\n"
        "from launcher.backends.aws import SageMakerBackend\n"
        "SageMakerBackend().plan\n"
        "print(sorted(m for m in sys.modules if m in ('launcher.staging.image', 'launcher.backends.local', 'launcher.estimate.local')))\n"
    )
    assert _printed_by(code) == "[]"


def test_loading_a_spec_imports_no_backend_module() -> None:
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from launcher.spec import load_spec\n"
        "load_spec(Path('examples/gcp.yaml'), environ={'GOOGLE_CLOUD_PROJECT': 'demo-project'})\n"
        "print(sorted(m for m in sys.modules if m == 'launcher.backends' or m.startswith('launcher.backends.') or m == 'launcher.backends.registry'))\n"
    )
    assert _printed_by(code) == "[]"


def test_a_typo_in_any_backend_section_is_still_found_before_planning(tmp_path: Path) -> None:
    from launcher.api import Launcher
    from launcher.errors import SpecError

    spec = validate_spec({"name": "d", "aws": {"regoin": "us-east-1"}}, Path("job.yaml"), Path("/srv"))
    with pytest.raises(SpecError, match="aws.regoin: unknown key 'regoin'; did you mean 'region'"):
        Launcher("local").plan(spec)  # the local backend runs it; the aws section is checked all the same


@pytest.mark.parametrize("cloud", sorted(CLOUDS))
def test_plan_reads_no_environment_or_files(cloud: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A refreshed catalog appearing in the state dir after the backend was made does not change its plans."""
    backend = CLOUDS[cloud](pushed_image="")
    raw: dict[str, Any] = {
        "name": "digits",
        "image": "registry.example/train:1",
        "resources": {"gpus": 1},
        cloud: OPTIONS[cloud],
    }
    spec = validate_spec(raw, Path("job.yaml"), Path("/srv"))
    before = _instance(CLOUDS[cloud](pushed_image="").plan(spec))
    refreshed = json.loads(json.dumps(load_catalog(cloud)))
    for name, row in refreshed["instances"].items():  # make another fitting instance the cheapest
        if name != before:
            for prices in row["prices"].values():
                prices.update(on_demand=0.001, spot=0.001)
    (tmp_path / "catalog").mkdir()
    (tmp_path / "catalog" / f"{cloud}.json").write_text(json.dumps(refreshed))
    monkeypatch.setenv("LAUNCHER_STATE_DIR", str(tmp_path))
    assert _instance(backend.plan(spec)) == before
    assert _instance(CLOUDS[cloud](pushed_image="").plan(spec)) != before  # a new backend reads the refreshed copy
