"""Docker for tests: a client, the offline base image, and the host-Python mounts.

No image registry is reachable here, so the base image is a debootstrapped
Debian bookworm (Python 3.11, the host's glibc) made by `.ci/docker-base.sh`.
Tests do not copy gigabytes of torch into an image: the container runs the
host's interpreter and virtual environment, bind-mounted read-only at the
same paths (`host_python_mounts`), so `import torch` works inside.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = [
    "BASE_IMAGE", "TRAIN_IMAGE", "REPO", "docker_client", "ensure_base_image", "engine_or_skip", "train_image_or_skip",
    "source_digest", "remove_job_containers",
]  # fmt: skip

REPO = Path(__file__).resolve().parents[1]
SYSTEM_PREFIXES = ("/", "/usr")
BASE_IMAGE = os.environ.get("LAUNCHER_BASE_IMAGE", "torch-launcher-base:bookworm")
# The image built from images/Dockerfile (images/build-offline.sh; .ci/run builds it once).
TRAIN_IMAGE = os.environ.get("LAUNCHER_TEST_IMAGE", "torch-launcher-train:latest")
# The same digest, computed inside the image over the installed package `launcher`
# (the repository's backends/ folder is installed in it, as launcher/backends).
_DIGEST_IN_IMAGE = """
import hashlib, importlib.util, pathlib
root = pathlib.Path(importlib.util.find_spec("launcher").origin).parent
h = hashlib.sha256()
for key, f in sorted((f.relative_to(root).as_posix(), f) for f in root.rglob("*.py")):
    h.update(key.encode()); h.update(f.read_bytes())
print(h.hexdigest())
"""


def docker_client() -> tuple[Any, str]:
    """(client, "") when an engine answers, else (None, why)."""
    try:
        import docker
    except ImportError:
        return None, "the docker Python package is not installed"
    try:
        client = docker.from_env(timeout=30)
        client.ping()
    except Exception as exc:  # noqa: BLE001 - any failure means: no usable engine
        return None, f"no Docker engine answers ({str(exc).splitlines()[0][:120]}); start it with `dockerd &`"
    return client, ""


def ensure_base_image(client: Any, image: str = BASE_IMAGE) -> str:
    """Build the base image with .ci/docker-base.sh when missing; "" on success, else why not."""
    import docker

    try:
        client.images.get(image)
        return ""
    except docker.errors.ImageNotFound:
        pass
    done = subprocess.run(
        [str(REPO / ".ci" / "docker-base.sh"), image], capture_output=True, text=True, timeout=1800, check=False
    )
    if done.returncode != 0:
        return f".ci/docker-base.sh failed: {(done.stdout + done.stderr).strip()[-300:]}"
    return ""


def host_python() -> str:
    """The interpreter running the tests (the venv's), usable inside the container at the same path."""
    return sys.executable


def host_python_mounts() -> list[dict[str, Any]]:
    """`local.mounts` entries exposing this interpreter, its venv and the repository read-only."""
    sources = {str(REPO)}
    for prefix in (sys.prefix, sys.base_prefix, str(Path(os.path.realpath(sys.executable)).parents[1])):
        if prefix in SYSTEM_PREFIXES:
            continue  # Debian's own python3.11: the base image has the same one at the same path
        if not prefix.startswith(str(REPO) + os.sep):
            sources.add(prefix)
    nested = {s for s in sources for t in sources if s != t and s.startswith(t + os.sep)}
    return [{"source": s, "target": s, "read_only": True} for s in sorted(sources - nested)]


def engine_or_skip() -> Any:
    """A docker client with the base image ready; skips (fails in CI) when there is no engine."""
    from tests.conftest import require_service  # noqa: PLC0415 - conftest imports nothing from here

    found, why = docker_client()
    require_service("docker", found is not None, why)
    problem = ensure_base_image(found)
    require_service("docker base image", not problem, problem)
    return found


def source_digest(root: Path = REPO) -> str:
    """sha256 over the .py files the image installs, keyed by their path in the installed package."""
    files = {f.relative_to(root / "launcher").as_posix(): f for f in (root / "launcher").rglob("*.py")}
    h = hashlib.sha256()
    for key, f in sorted(files.items()):
        h.update(key.encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def remove_job_containers(client: Any, job_ids: list[str]) -> None:
    """Remove every container labelled with one of `job_ids` (what a test started), running or not."""
    for job_id in job_ids:
        for container in client.containers.list(all=True, filters={"label": f"launcher.job={job_id}"}):
            container.remove(force=True)


def train_image_or_skip(client: Any, image: str = TRAIN_IMAGE) -> str:
    """The training image, built from THIS checkout's source; skips (fails in CI) otherwise.

    A stale image would test yesterday's code, so the packages installed in the
    image are compared with the working tree.
    """
    import docker

    from tests.conftest import require_service  # noqa: PLC0415

    build = "build it with images/build-offline.sh (offline) or `launch image build`"
    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        require_service("training image", False, f"{image} does not exist; {build}")
    out = client.containers.run(image, ["-c", _DIGEST_IN_IMAGE], entrypoint="python", remove=True)
    fresh = out.decode().strip() == source_digest()
    require_service("training image", fresh, f"{image} holds other sources than this checkout; {build}")
    return image
