"""The training image: build it with the docker SDK, push it, remember where it went.

`build()` builds `images/Dockerfile` with the repository root as context (the
image needs the launcher's own source). `push()` hands a built image to a
backend (`Backend.push_image`: ECR, Artifact Registry, ACR) and records the
pushed reference, digest included, in `<state dir>/images.json`, so a later
`launch -b aws job.yaml` can use exactly the image that was pushed
(`pushed_image("aws")`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

from launcher.backend import Backend, canonical
from launcher.errors import LauncherError, first_line
from launcher.lazy import require
from launcher.spec import DEFAULT_IMAGE
from launcher.state.pushed import pushed_images, pushed_ref, record_push

__all__ = [
    "REPO", "DOCKERFILE", "DEFAULT_IGNORE", "build", "push", "pushed_image", "pushed_images", "record_push",
    "progress_lines", "ignore_patterns", "build_with_requirements", "REQUIREMENTS_DOCKERFILE", "ENGINE_DOCKERFILE",
    "ENGINE_REQUIREMENTS", "engine_image", "build_engine",
]  # fmt: skip

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = "images/Dockerfile"
DEFAULT_IGNORE = (
    ".git", ".venv", "venv", ".ci/cache", "runs", "data", "benchmarks/out", ".pytest_cache",
    "**/__pycache__", "**/*.pyc", "*.egg-info", "build", "dist",
)  # fmt: skip

BuildLog = Callable[[str], None]

# `launch image build --requirements FILE`: the training image plus the packages a program of the user's own
# needs, so nothing is installed at container start (code.requirements does that instead). PIP_ARGS as for
# images/Dockerfile (an offline wheelhouse: images/build-offline.sh).
REQUIREMENTS_DOCKERFILE = """\
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
ARG PIP_ARGS=""
COPY requirements.txt /opt/launcher/requirements.txt
RUN python -m pip install --no-cache-dir ${PIP_ARGS} -r /opt/launcher/requirements.txt \\
    && python -c "import launcher.runtime.entrypoint"
"""


def checked_client(client: Any = None) -> Any:
    """`client`, or the engine's client from the environment, answering a ping: the one place that turns "no
    engine" into a clear error (the local backend asks here too)."""
    docker = require("docker", "docker")
    try:
        client = client if client is not None else docker.from_env()
        client.ping()
    except (docker.errors.DockerException, OSError) as exc:  # requests' errors are OSErrors
        raise LauncherError(
            f"The Docker engine is not answering ({first_line(exc, 200)}).",
            "Start it (`sudo systemctl start docker`, or `dockerd &` as root), or set local.runtime: process.",
        ) from None
    return client


def docker_client(client: Any = None) -> Any:
    """`client` as given (tests inject one), else a checked client from the environment."""
    return client if client is not None else checked_client()


def progress_lines(events: Iterator[dict[str, Any]]) -> Iterator[str]:
    """Readable lines from the engine's JSON build stream; a build error becomes a LauncherError."""
    for event in events:
        if "error" in event:
            detail = str(event.get("errorDetail", {}).get("message") or event["error"]).strip()
            raise LauncherError(f"The image build failed: {detail}.", "Fix the Dockerfile step above and build again.")
        text = str(event.get("stream") or event.get("status") or "").rstrip()
        if text:
            yield text


def build(
    tag: str = DEFAULT_IMAGE,
    context: Path = REPO,
    dockerfile: str = DOCKERFILE,
    client: Any = None,
    progress: BuildLog = lambda line: None,
    buildargs: dict[str, str] | None = None,
) -> str:
    """Build the image and return its id; each step of the build goes to `progress`."""
    if not (context / dockerfile).is_file():
        raise LauncherError(
            f"There is no {dockerfile} under {context}.",
            "Run this from a checkout of the torch-launcher repository, or pass --context and --file.",
        )
    api = docker_client(client).api
    with _context_tar(context, dockerfile) as tar:
        # forcerm: also remove the intermediate container of a failed step
        events = api.build(
            fileobj=tar, custom_context=True, dockerfile=dockerfile, tag=tag,
            rm=True, forcerm=True, decode=True, buildargs=buildargs or {},
        )  # fmt: skip
        for line in progress_lines(events):
            progress(line)
    return str(docker_client(client).images.get(tag).id)


# `launch image build --engine ultralytics`: the training image plus Ultralytics (AGPL-3.0) for train.engine:
# ultralytics; the default image stays without it. Ultralytics depends on opencv-python, whose cv2 needs
# libGL, which a headless image lacks: the headless build of the same cv2 replaces it.
ENGINE_DOCKERFILE = """\
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
ARG PIP_ARGS=""
COPY requirements.txt /opt/launcher/engine-requirements.txt
RUN python -m pip install --no-cache-dir ${PIP_ARGS} -r /opt/launcher/engine-requirements.txt \\
    && python -m pip uninstall -y opencv-python \\
    && python -m pip install --no-cache-dir ${PIP_ARGS} --force-reinstall --no-deps "opencv-python-headless>=4.8,<5" \\
    && python -c "import cv2, ultralytics, launcher.runtime.train.ultralytics_engine"
"""
# What the `ultralytics` extra of pyproject.toml installs (tests/launcher/test_engine_image.py keeps them equal).
ENGINE_REQUIREMENTS = {"ultralytics": "ultralytics>=8.4,<8.5\ncloudpickle>=3.1.1\nopencv-python-headless>=4.8,<5\n"}


def engine_image(engine: str, base: str = DEFAULT_IMAGE) -> tuple[str, dict[str, str], str]:
    """(tag, build arguments, Dockerfile) of the image variant for a trainer engine."""
    if engine not in ENGINE_REQUIREMENTS:
        raise LauncherError(
            f"--engine {engine}: no such engine image.", f"Use one of: {', '.join(ENGINE_REQUIREMENTS)}."
        )
    return f"{DEFAULT_IMAGE.split(':')[0]}:{engine}", {"BASE_IMAGE": base}, ENGINE_DOCKERFILE


def build_engine(
    engine: str,
    tag: str | None = None,
    base: str = DEFAULT_IMAGE,
    client: Any = None,
    progress: BuildLog = lambda line: None,
    buildargs: dict[str, str] | None = None,
) -> tuple[str, str]:
    """Build the engine variant of `base`; returns (tag, image id)."""
    default_tag, args, dockerfile = engine_image(engine, base)
    tag = tag or default_tag
    return tag, _build_derived(
        tag, dockerfile, ENGINE_REQUIREMENTS[engine].encode(), client, progress, {**args, **(buildargs or {})}
    )


def _build_derived(
    tag: str, dockerfile: str, requirements: bytes, client: Any, progress: BuildLog, buildargs: dict[str, str]
) -> str:
    """Build a small Dockerfile with one requirements.txt beside it as the whole context."""
    import tempfile  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix="launcher-req-image-") as tmp:
        context = Path(tmp)
        (context / "requirements.txt").write_bytes(requirements)
        (context / "Dockerfile").write_text(dockerfile)
        return build(tag, context, "Dockerfile", client, progress, buildargs)


def build_with_requirements(
    tag: str,
    requirements: Path,
    base: str = DEFAULT_IMAGE,
    client: Any = None,
    progress: BuildLog = lambda line: None,
    buildargs: dict[str, str] | None = None,
) -> str:
    """Build `base` plus `requirements` (REQUIREMENTS_DOCKERFILE) as `tag`; returns the image id."""
    if not requirements.is_file():
        raise LauncherError(f"--requirements {requirements}: no such file.", "Name your program's requirements.txt.")
    return _build_derived(
        tag,
        REQUIREMENTS_DOCKERFILE,
        requirements.read_bytes(),
        client,
        progress,
        {"BASE_IMAGE": base, **(buildargs or {})},
    )


def ignore_patterns(context: Path) -> list[str]:
    """The context's .dockerignore, or DEFAULT_IGNORE when it has none.

    Without it the context of a checkout would include the virtual
    environment (gigabytes of torch) and the CI cache.
    """
    file = context / ".dockerignore"
    if not file.is_file():
        return list(DEFAULT_IGNORE)
    lines = (line.strip() for line in file.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def _context_tar(context: Path, dockerfile: str) -> Any:
    """The build context as a tar file, made by the docker SDK's own packer (same rules as `docker build`)."""
    from docker.utils import tar  # noqa: PLC0415

    return tar(str(context), exclude=ignore_patterns(context), dockerfile=(dockerfile, None))


def push(target: Backend, local_tag: str = DEFAULT_IMAGE, client: Any = None) -> str:
    """Push `local_tag` through the backend `target` and record the reference it returns."""
    ref = target.push_image(local_tag, docker_client(client))
    record_push(target.name, local_tag, ref)
    return ref


def pushed_image(backend: str) -> str | None:
    """The reference (with digest) last pushed for `backend` or an alias of it, if any."""
    return pushed_ref(canonical(backend))
