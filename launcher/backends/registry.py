"""Backends, found through the entry-point group `launcher.backends`.

Built-in backends are registered in pyproject.toml exactly as third-party
ones are; all entries are merged, and a third-party entry never hides a
built-in one (a clash of names is reported, the built-in kept). Loading an
entry imports only the backend module, which must not import its SDK at
module level.
"""

from __future__ import annotations

import difflib
import functools
from importlib import metadata
from pathlib import Path
from typing import Callable, Sequence

from pydantic import ValidationError

from launcher.backend import ALIASES, Backend, canonical
from launcher.errors import LauncherError, MissingExtraError, SpecError
from launcher.spec import BACKEND_SECTIONS, JobSpec, format_validation_error, parse_set

__all__ = [
    "GROUP",
    "ALIASES",
    "BUILTIN",
    "available",
    "installed",
    "find",
    "get",
    "create",
    "canonical",
    "check_sections",
]

GROUP = "launcher.backends"
BUILTIN = {"local", "aws", "gcp", "azure", "slurm"}
BUILTIN_DIST = "torch-launcher"


def _entry_points() -> list[metadata.EntryPoint]:
    return list(metadata.entry_points(group=GROUP))


@functools.lru_cache(maxsize=1)
def _index() -> dict[str, metadata.EntryPoint]:
    """name -> entry point; built-ins first, and never replaced by a plugin."""
    found: dict[str, metadata.EntryPoint] = {}
    for ep in sorted(_entry_points(), key=lambda e: e.dist is None or e.dist.name != BUILTIN_DIST):
        if ep.name in found:
            continue
        found[ep.name] = ep
    return found


def reload() -> None:
    """Forget cached entry points (tests that add a plugin call this)."""
    _index.cache_clear()


def available() -> list[str]:
    return sorted(_index())


def installed() -> list[Backend]:
    """A backend of every available name whose extra is installed (the others cannot be priced or run)."""
    found = []
    for name in available():
        try:
            found.append(create(name))
        except LauncherError:
            continue
    return found


def find(name: str) -> type[Backend] | None:
    """The backend class for `name` or an alias, or None when no such backend is installed."""
    ep = _index().get(canonical(name))
    if ep is None:
        return None
    return _load(ep)


def get(name: str) -> type[Backend]:
    cls = find(name)
    if cls is None:
        names = ", ".join(available())
        aliases = ", ".join(f"{alias} = {backend}" for alias, backend in ALIASES.items())
        raise LauncherError(f"Unknown backend '{name}'.", f"Choose one of: {names} (aliases: {aliases}).")
    return cls


def create(name: str, factory: Callable[[type[Backend]], Backend] | None = None) -> Backend:
    cls = get(name)
    return factory(cls) if factory else cls()


def check_sections(spec: JobSpec, file: Path | None = None, overrides: Sequence[str] = ()) -> None:
    """Validate every backend section the spec holds (local:, aws:, ..., plugins.<name>:) with that
    backend's options model, so a typo in any section is found, whichever backend runs the job.

    `file` and the `--set` overrides only make the message name where a value came from.
    """
    sets = {tuple(parse_set(item)[0]): item for item in overrides}
    _check_fallback(spec, file, sets)
    for name in spec.plugins:  # validated there, its options would never be used: the backend reads its own section
        if canonical(name) in BACKEND_SECTIONS:
            source = sets.get(("plugins", name)) or sets.get(("plugins",))
            where = f"--set {source}" if source else str(file or "the spec")
            raise SpecError(
                f"{where}: plugins.{name}: {name} is a built-in backend, which reads only its own "
                f"{canonical(name)}: section.",
                f"Move these options to the top-level {canonical(name)}: section.",
            )
    sections = [(name, getattr(spec, name)) for name in BACKEND_SECTIONS] + list(spec.plugins.items())
    for name, values in sections:
        backend = find(name) if values else None
        if backend is None:
            continue  # an empty section, or one for a plugin not installed here: nothing to check it against
        try:
            backend.options_model.model_validate(values)
        except ValidationError as exc:
            prefix = (name,) if name in BACKEND_SECTIONS else ("plugins", name)
            raise SpecError(format_validation_error(exc, file, backend.options_model, prefix, sets)) from None


def _check_fallback(spec: JobSpec, file: Path | None, sets: dict[tuple[str, ...], str]) -> None:
    """recovery.fallback names installed backends (aliases allowed), each once."""
    if spec.recovery is None:
        return
    names = [canonical(name) for name in spec.recovery.fallback]
    for i, name in enumerate(spec.recovery.fallback):
        source = next(
            (f"--set {sets[key]}" for key in (("recovery", "fallback"), ("recovery",)) if key in sets),
            str(file or "the spec"),
        )
        if canonical(name) not in _index():
            close = difflib.get_close_matches(canonical(name), available(), n=1, cutoff=0.5)
            hint = f"did you mean '{close[0]}'?" if close else f"installed backends: {', '.join(available())}"
            raise SpecError(f"{source}: recovery.fallback.{i}: unknown backend '{name}'; {hint}")
        if canonical(name) in names[:i]:
            raise SpecError(
                f"{source}: recovery.fallback.{i}: '{name}' is the backend {canonical(name)}, listed twice; keep one"
            )


def _load(ep: metadata.EntryPoint) -> type[Backend]:
    try:
        cls = ep.load()
    except ImportError as exc:
        raise MissingExtraError(
            f"The backend '{ep.name}' could not be imported ({exc}).",
            f"Install its extra: pip install '{BUILTIN_DIST}[{ep.name}]'"
            if ep.name in BUILTIN
            else "Reinstall the plugin that provides it.",
        ) from None
    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        raise LauncherError(f"The entry point '{ep.name}' ({ep.value}) is not a launcher Backend class.")
    return cls
