"""Pushing the training image: the tag and digest steps every cloud shares, and which image
`launch image build --push -b <backend>` last pushed, per backend.

Kept apart from launcher.staging.image (which builds with Docker and knows the local
backend) so that the core backend class can read it without importing either.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Mapping

from launcher.errors import LauncherError
from launcher.state.jobs import state_dir

__all__ = ["STATE_FILE", "pushed_images", "pushed_ref", "record_push", "split_tag", "push"]

STATE_FILE = "images.json"


def _state_path() -> Path:
    return state_dir() / STATE_FILE


def pushed_images() -> dict[str, dict[str, Any]]:
    """backend -> {"local": tag, "ref": pushed reference, "pushed_at": time}."""
    path = _state_path()
    if not path.exists():
        return {}
    try:
        return dict(json.loads(path.read_text()))
    except (ValueError, TypeError):
        return {}  # a damaged file only loses the memory of pushes, which a new push restores


def pushed_ref(backend: str) -> str | None:
    """The reference (with digest) last pushed for `backend` (its canonical name), if any."""
    entry = pushed_images().get(backend)
    return str(entry["ref"]) if entry else None


def record_push(backend: str, local_tag: str, ref: str) -> None:
    """Remember a push; written atomically so a crash never leaves half a file."""
    path = _state_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    images = pushed_images()
    images[backend] = {"local": local_tag, "ref": ref, "pushed_at": time.time()}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(images, indent=2))
    os.replace(tmp, path)


def split_tag(image: str) -> tuple[str, str]:
    """'host:port/repo/name:tag' -> ('host:port/repo/name', 'tag'); no tag means 'latest' (a port is not a tag)."""
    if ":" in image.rsplit("/", 1)[-1]:
        base, tag = image.rsplit(":", 1)
        return base, tag
    return image, "latest"


def push(docker_client: Any, repository: str, tag: str, auth: Mapping[str, str], fix: str) -> str:
    """Push `repository:tag` with the docker SDK; the digest the registry reported, or one error with `fix`."""
    digest = ""
    for event in docker_client.images.push(repository, tag=tag, auth_config=dict(auth), stream=True, decode=True):
        if event.get("error"):
            raise LauncherError(f"Pushing {repository}:{tag} failed: {event['error']}.", fix)
        digest = (event.get("aux") or {}).get("Digest", digest)
    if not digest:
        raise LauncherError(f"Pushing {repository}:{tag} returned no digest.", fix)
    return str(digest)
