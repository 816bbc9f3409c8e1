"""Validation errors as one line each: the file, the key path, the reason, and the closest valid key."""

from __future__ import annotations

import difflib
import re
import typing
from pathlib import Path
from typing import Any, Mapping

from pydantic import (
    BaseModel,
    ValidationError,
)

__all__ = ["format_validation_error"]
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f]")


# ---------------------------------------------------------------- errors


def format_validation_error(
    exc: ValidationError,
    file: Path | None,
    model: type[BaseModel],
    prefix: tuple[str, ...] = (),
    sets: Mapping[tuple[str, ...], str] | None = None,
) -> str:
    """One line: the first problem's source (file or --set), key path, reason, a suggestion for typos.

    Further problems are counted and their keys named, so the line stays one line.
    """
    problems: list[tuple[str, str, str]] = []
    for err in exc.errors():
        loc = tuple(str(part) for part in err["loc"])
        full = (*prefix, *loc)
        where = ".".join(full)[:200] or "(top level)"
        source = _source(full, file, sets or {})
        reason = _reason(err, model, loc).replace("\n", " ")[:300]
        hint = re.search(r"; (did you mean '[^']*'\?)$", reason)  # every typo gets its suggestion, not the first only
        problems.append((where, f"{source}: {where}: {reason}" if source else f"{where}: {reason}",
                         f" ({hint.group(1)})" if hint else ""))  # fmt: skip
    first = problems[0][1]
    if len(problems) == 1:
        return first
    others = ", ".join(where + hint for where, _, hint in problems[1:4]) + (", ..." if len(problems) > 4 else "")
    return f"{first} (and {len(problems) - 1} more: {others})"


def _source(loc: tuple[str, ...], file: Path | None, sets: Mapping[tuple[str, ...], str]) -> str | None:
    """Where a value came from: the --set that wrote it (or a key above it), else the file."""
    for n in range(len(loc), 0, -1):
        if loc[:n] in sets:  # credentials typed into a URI are never repeated
            item = sets[loc[:n]]
            if loc[0] == "secrets":  # a value typed into secrets: (NAME=value) is never repeated
                item = item.split("=", 1)[0] + "=..."
            shown = _CONTROL.sub(lambda m: repr(m.group())[1:-1], f"--set {item}")  # one line, whatever was typed
            return re.sub(r"://[^/?#\s]*@", "://***@", shown)[:200]
    return str(file) if file else None


def _reason(err: Mapping[str, Any], model: type[BaseModel], loc: tuple[str, ...]) -> str:
    if err["type"] == "extra_forbidden":
        known = _fields_at(model, loc[:-1])
        close = difflib.get_close_matches(loc[-1], known, n=1, cutoff=0.6)
        hint = f"did you mean '{close[0]}'?" if close else f"valid keys: {', '.join(known)}"
        return f"unknown key '{loc[-1]}'; {hint}"
    if err["type"] == "missing":
        return "this key is required"
    message = str(err["msg"])
    return message.removeprefix("Value error, ")


def _fields_at(model: type[BaseModel], loc: tuple[str, ...]) -> list[str]:
    for part in loc:
        field = model.model_fields.get(part)
        annotation = getattr(field, "annotation", None)
        options = [
            a for a in (annotation, *typing.get_args(annotation)) if isinstance(a, type) and issubclass(a, BaseModel)
        ]
        if not options:  # a model, or an optional one (code: CodeConfig | None)
            return []
        model = options[0]
    return list(model.model_fields)
