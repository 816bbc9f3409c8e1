"""User-facing errors: one clear sentence and a fix, never a traceback.

Everything the CLI catches and prints as a single line derives from
`LauncherError`. Code that raises one states what went wrong and, in `fix`,
what the user should do about it.
"""

from __future__ import annotations

__all__ = ["LauncherError", "SpecError", "MissingExtraError", "JobNotFoundError", "first_line"]


class LauncherError(Exception):
    """An error the user can act on. `str()` gives the sentence and the fix."""

    exit_code = 2

    def __init__(self, message: str, fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.message} {self.fix}".strip() if self.fix else self.message


class SpecError(LauncherError):
    """A job spec that cannot be loaded: names the file and the key path."""


class MissingExtraError(LauncherError):
    """An optional dependency (a cloud SDK, docker, torch) is not installed."""


class JobNotFoundError(LauncherError):
    """A job id that the local job registry does not know."""


def first_line(exc: BaseException, limit: int = 300, typed: bool = False) -> str:
    """An exception as one short line: its message (an SDK error's `message` attribute first), first line only,
    cut to `limit`; `typed` puts the exception's type in front (not for a LauncherError, written for people)."""
    message = exc.message if isinstance(exc, LauncherError) else getattr(exc, "message", None) or str(exc)
    lines = str(message or "").strip().splitlines()
    text = lines[0].strip() if lines else ""
    if typed and not isinstance(exc, LauncherError):
        text = f"{type(exc).__name__}: {text}".rstrip(": ")
    text = text or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
