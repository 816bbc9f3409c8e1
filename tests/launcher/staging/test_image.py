"""Image build (real Docker engine, tiny Dockerfile on the offline base image) and push records."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
from click.testing import CliRunner

from launcher.backends import registry
from launcher.cli import main
from launcher.errors import LauncherError
from launcher.staging import image as images
from launcher.state.jobs import state_dir
from tests.docker_base import BASE_IMAGE, engine_or_skip


def test_push_records_are_kept_per_backend_and_found_by_alias() -> None:
    images.record_push("aws", "torch-launcher-train:latest", "123.dkr.ecr.us-east-1.amazonaws.com/t@sha256:aa")
    images.record_push("gcp", "torch-launcher-train:latest", "us-docker.pkg.dev/p/r/t@sha256:bb")
    assert images.pushed_image("sagemaker") == "123.dkr.ecr.us-east-1.amazonaws.com/t@sha256:aa"
    assert images.pushed_image("gcp") == "us-docker.pkg.dev/p/r/t@sha256:bb"
    assert images.pushed_image("azure") is None
    assert set(json.loads((state_dir() / "images.json").read_text())) == {"aws", "gcp"}


def test_a_damaged_record_file_is_treated_as_empty() -> None:
    state_dir().mkdir(parents=True, exist_ok=True)
    (state_dir() / "images.json").write_text("{not json")
    assert images.pushed_images() == {}


def test_image_ls_shows_pushes() -> None:
    images.record_push("aws", "t:1", "ecr/t@sha256:cc")
    result = CliRunner().invoke(main, ["image", "ls"])
    assert result.exit_code == 0 and "aws\tecr/t@sha256:cc\t(from t:1)" in result.output


def test_progress_lines_turn_a_build_error_into_one_sentence() -> None:
    events = [
        {"stream": "Step 1/2 : FROM x\n"},
        {"error": "boom", "errorDetail": {"message": "returned a non-zero code: 3"}},
    ]
    lines = images.progress_lines(iter(events))
    assert next(lines) == "Step 1/2 : FROM x"
    with pytest.raises(LauncherError, match="The image build failed: returned a non-zero code: 3"):
        next(lines)


def test_ignore_patterns_prefer_the_contexts_dockerignore(tmp_path: Path) -> None:
    assert ".venv" in images.ignore_patterns(tmp_path)
    (tmp_path / ".dockerignore").write_text("# comment\nsecret.txt\n\n")
    assert images.ignore_patterns(tmp_path) == ["secret.txt"]


def test_missing_dockerfile_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(LauncherError, match="There is no images/Dockerfile"):
        images.build("t:1", context=tmp_path, client=object())


# ---------------------------------------------------------------- real engine


@pytest.fixture(scope="module")
def client() -> Any:
    return engine_or_skip()


@pytest.fixture
def tag(client: Any) -> Iterator[str]:
    name = "launcher-test/image-build:tmp"
    yield name
    try:
        client.images.remove(name, force=True)
    except Exception:  # noqa: BLE001 - the image may never have been built
        pass


@pytest.mark.docker
def test_build_streams_progress_and_returns_the_image_id(client: Any, tag: str, tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "Dockerfile").write_text(
        f"FROM {BASE_IMAGE}\nRUN echo built-by-test > /built.txt\nCOPY . /src\n"
    )
    (tmp_path / "keep.txt").write_text("kept")
    (tmp_path / ".venv").mkdir()  # no .dockerignore here: the default one must leave the venv out
    (tmp_path / ".venv" / "huge.bin").write_bytes(b"0" * 1024)
    lines: list[str] = []
    image_id = images.build(tag, context=tmp_path, client=client, progress=lines.append)
    assert image_id == client.images.get(tag).id
    assert any("RUN echo built-by-test" in line for line in lines)
    assert client.containers.run(tag, ["cat", "/built.txt"], remove=True).decode().strip() == "built-by-test"
    listing = client.containers.run(tag, ["ls", "-A", "/src"], remove=True).decode().split()
    assert "keep.txt" in listing and ".venv" not in listing


@pytest.mark.docker
def test_cli_build_reports_a_failing_step(client: Any, tag: str, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile.bad").write_text(f"FROM {BASE_IMAGE}\nRUN exit 3\n")
    result = CliRunner().invoke(
        main, ["image", "build", "-t", tag, "--context", str(tmp_path), "--file", "Dockerfile.bad"]
    )
    assert result.exit_code == 2
    assert "The image build failed" in result.output and "Traceback" not in result.output


@pytest.mark.docker
def test_cli_build_then_push_to_a_backend_without_a_registry(client: Any, tag: str, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(f"FROM {BASE_IMAGE}\nARG GREETING\nRUN echo $GREETING > /greeting\n")
    args = ["image", "build", "-t", tag, "--context", str(tmp_path), "--file", "Dockerfile", "--json", "-q",
            "--build-arg", "GREETING=hi-there"]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert f"built {tag}" in result.output
    assert client.containers.run(tag, ["cat", "/greeting"], remove=True).decode().strip() == "hi-there"
    pushed = CliRunner().invoke(main, [*args, "--push", "-b", "local"])
    assert pushed.exit_code == 2 and "does not support image_push" in pushed.output
    assert images.pushed_images() == {}


PUSHY = """
from launcher.backend import Backend


class PushyBackend(Backend):
    \"\"\"A registry that lives in the local engine: push = tag under its name.\"\"\"

    name = "pushy"

    def push_image(self, local_image, docker_client):
        image = docker_client.images.get(local_image)
        image.tag("registry.invalid/pushy/train", tag="v1")
        return "registry.invalid/pushy/train@" + image.id

    plan = submit = status = logs = cancel = None
"""


@pytest.fixture
def pushy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, client: Any) -> Iterator[str]:
    """A backend plugin (module + entry-point metadata) whose push tags the image locally."""
    (tmp_path / "pushy_plugin.py").write_text(PUSHY)
    dist = tmp_path / "pushy_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: pushy-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[launcher.backends]\npushy = pushy_plugin:PushyBackend\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry.reload()
    yield "pushy"
    sys.modules.pop("pushy_plugin", None)
    registry.reload()
    try:
        client.images.remove("registry.invalid/pushy/train:v1")
    except Exception:  # noqa: BLE001 - nothing was tagged when the test failed early
        pass


@pytest.mark.docker
def test_build_and_push_records_the_pushed_reference(client: Any, tag: str, pushy: str, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(f"FROM {BASE_IMAGE}\n")
    args = ["image", "build", "-t", tag, "--context", str(tmp_path), "--file", "Dockerfile", "--push", "-b", pushy]
    result = CliRunner().invoke(main, [*args, "--json", "-q"])
    assert result.exit_code == 0, result.output
    image_id = client.images.get(tag).id
    assert images.pushed_image("pushy") == f"registry.invalid/pushy/train@{image_id}"
    assert images.pushed_images()["pushy"]["local"] == tag
    assert client.images.get("registry.invalid/pushy/train:v1").id == image_id
