"""Pretrained weights inside the image: read from the run's store, checked against their name, cached by content.

    command = stage(command, environ)     # model=/pretrained=<store>/_weights/<sha256>.pt -> a verified local file

The submitting machine fetched the weights (a URL, an Ultralytics asset name,
a store URI) and stored them under `<checkpoint.uri>/_weights/<sha256><suffix>`
(launcher.staging.weights); the train command names that location
(launcher.contract.staged_weights). The job itself downloads nothing from the
internet: it reads the store it already reads its code and checkpoints from,
once per node, and refuses bytes whose sha256 is not the one in the name.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Mapping, Sequence

from launcher.contract import data_dir, weights_sha256
from launcher.errors import LauncherError

__all__ = ["stage", "fetch"]

_KEYS = ("model", "pretrained")


def stage(command: Sequence[str], environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """A train command with its stored weights (`model=` or `pretrained=` naming `_weights/<sha256>...`) replaced
    by a verified local copy; any other command unchanged."""
    if list(command[:1]) != ["train"]:
        return tuple(command)
    staged = []
    for arg in command:
        key, sep, value = arg.partition("=")
        if sep and key in _KEYS and weights_sha256(value) is not None:
            arg = f"{key}={fetch(value, environ)}"
        staged.append(arg)
    return tuple(staged)


def fetch(uri: str, environ: Mapping[str, str] | None = None) -> Path:
    """The local copy of the stored weights at `uri`: <data dir>/weights/<sha256><suffix>, downloaded on first use."""
    from launcher.storage import open_store  # noqa: PLC0415 - a cloud SDK, only for a remote store
    from launcher.storage.base import MissingObjectError, sha256_file  # noqa: PLC0415

    sha = weights_sha256(uri)
    assert sha is not None  # stage() passes only such names
    folder, _, name = uri.rstrip("/").rpartition("/")
    local = data_dir(environ) / "weights" / name
    if local.is_file():
        print(f"[launcher] weights {sha[:12]}: fetched before, {local}", flush=True)
        return local
    local.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{sha[:12]}-", suffix=".part", dir=local.parent)
    os.close(fd)
    try:
        try:
            got = open_store(folder).get(name, Path(tmp))
        except MissingObjectError:
            raise LauncherError(f"The pretrained weights {uri} are not in the store.",
                                "Submit the job again with `launch`: it stores them first.") from None  # fmt: skip
        got = got or sha256_file(Path(tmp))
        if got != sha:
            raise LauncherError(f"The pretrained weights {uri} do not match their name (their sha256 is {got[:12]}...).",
                                "Submit the job again: the weights are then stored anew.")  # fmt: skip
        os.replace(tmp, local)  # complete and checked: a second rank or restart reuses it
    finally:
        Path(tmp).unlink(missing_ok=True)
    print(f"[launcher] weights {sha[:12]}: {uri} -> {local} (sha256 checked)", flush=True)
    return local
