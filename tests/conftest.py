"""Shared fixtures. Every test gets its own job registry and state dir."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests import pace

REPO = Path(__file__).resolve().parents[1]


def pytest_report_header(config: pytest.Config) -> str:
    return f"machine pace: {pace.factor():.2f}x a quiet reference; the slow and conformance tests' time limits are scaled by it"


_BASE_LIMIT = pytest.StashKey[float]()


@pytest.hookimpl(trylast=True)  # after tests/conformance/conftest.py marks its tests slow
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A loaded machine gets proportionally longer limits for the long tests (tests/pace.py), not a red run."""
    limit = float(config.getini("timeout") or 900)
    for item in items:
        if item.get_closest_marker("slow") and not item.get_closest_marker("timeout"):
            item.stash[_BASE_LIMIT] = limit


@pytest.hookimpl(hookwrapper=True, tryfirst=True)  # before pytest-timeout's wrapper reads the marker
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):  # type: ignore[no-untyped-def]
    """The limit follows the machine's pace when the test starts, not when the session was collected."""
    if _BASE_LIMIT in item.stash:
        item.add_marker(pytest.mark.timeout(pace.scaled(item.stash[_BASE_LIMIT])), append=False)
    yield


@pytest.fixture(autouse=True)
def _isolated_state(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    state = tmp_path_factory.mktemp("state")
    monkeypatch.setenv("LAUNCHER_STATE_DIR", str(state))
    return state


def stop_service(proc: subprocess.Popen, grace: float = 10.0) -> None:  # type: ignore[type-arg]
    """SIGTERM, then SIGKILL after `grace` seconds: a server that lingers in its own graceful
    shutdown (Azurite waiting on an idle keep-alive connection) must not fail the session's teardown."""
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(grace)


def require_service(name: str, available: bool, why: str) -> None:
    """Skip when a local service (Docker, Azurite, ...) is missing, except in CI.

    CI sets LAUNCHER_REQUIRE_SERVICES=1: there a missing service is a failure,
    so a broken CI setup can never turn into silently skipped tests.
    """
    if available:
        return
    if os.environ.get("LAUNCHER_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{name} is required in CI but unavailable: {why}")
    pytest.skip(f"{name} unavailable: {why}")


def ctrl_c_reaches_it() -> None:
    """preexec_fn for a child the test will Ctrl-C: SIGINT back to its default disposition.

    A suite started in the background by a non-interactive shell (`.ci/run &`)
    inherits SIGINT ignored, and Python then installs no KeyboardInterrupt
    handler at all: the child would never see the test's Ctrl-C.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)
