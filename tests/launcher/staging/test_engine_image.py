"""`launch image build --engine ultralytics` (issue 25): the training image plus Ultralytics, rendered here
without a Docker engine (the build itself: see the README's command); the default image stays without it."""

from __future__ import annotations

import re
import tarfile
import tomllib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from click.testing import CliRunner

from launcher.cli import main
from launcher.staging import image as images

REPO = Path(__file__).resolve().parents[3]


class RecordingEngine:
    """Docker's low-level build call, recorded: the context it was sent and the arguments."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.files: dict[str, str] = {}
        self.api = SimpleNamespace(build=self._build)
        self.images = SimpleNamespace(get=lambda tag: SimpleNamespace(id="sha256:" + "0" * 64))

    def _build(self, fileobj: Any, **kwargs: Any) -> list[dict[str, str]]:
        with tarfile.open(fileobj=fileobj) as tar:
            self.files = {m.name: tar.extractfile(m).read().decode() for m in tar.getmembers() if m.isfile()}
        self.calls.append(kwargs)
        return [{"stream": "Step 1/5 : ARG BASE_IMAGE"}]


def test_the_engine_image_adds_ultralytics_to_the_training_image_with_headless_opencv() -> None:
    engine = RecordingEngine()
    tag, image_id = images.build_engine("ultralytics", client=engine, buildargs={"PIP_ARGS": "--no-index"})
    assert tag == "torch-launcher-train:ultralytics" and image_id.startswith("sha256:")
    (call,) = engine.calls
    assert call["buildargs"] == {"BASE_IMAGE": "torch-launcher-train:latest", "PIP_ARGS": "--no-index"}
    assert call["tag"] == tag and call["dockerfile"] == "Dockerfile"
    assert set(engine.files) == {"Dockerfile", "requirements.txt"}
    dockerfile = engine.files["Dockerfile"]
    assert "FROM ${BASE_IMAGE}" in dockerfile and "pip uninstall -y opencv-python" in dockerfile
    assert "import cv2, ultralytics, launcher.runtime.train.ultralytics_engine" in dockerfile
    assert "ultralytics>=8.4,<8.5" in engine.files["requirements.txt"]


def test_the_image_installs_what_the_extra_names_and_the_default_image_has_none_of_it() -> None:
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    wanted = {r for r in extras["ultralytics"] if not r.startswith("torch-launcher")}
    assert set(images.ENGINE_REQUIREMENTS["ultralytics"].split()) == wanted
    assert not any("ultralytics" in r for r in extras["all"] + extras["train"])
    assert not re.search(r"ultralytics", (REPO / "images" / "Dockerfile").read_text(), re.IGNORECASE)


def test_the_engine_and_requirements_routes_are_one_image_each() -> None:
    result = CliRunner().invoke(main, ["image", "build", "--engine", "ultralytics", "--requirements", "pyproject.toml"])
    assert result.exit_code != 0 and "two images" in result.output
    result = CliRunner().invoke(main, ["image", "build", "--engine", "yolo"])
    assert result.exit_code != 0 and "'ultralytics'" in result.output


def test_only_the_adapter_imports_ultralytics() -> None:
    importers = [p.relative_to(REPO).as_posix() for p in (REPO / "launcher").rglob("*.py")
                 if re.search(r"^\s*(from|import) ultralytics", p.read_text(), re.MULTILINE)]  # fmt: skip
    assert importers == ["launcher/runtime/train/ultralytics_engine.py"]
