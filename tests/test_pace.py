"""The long tests' limits follow the machine's pace when each test starts (tests/pace.py, tests/conftest.py)."""

from __future__ import annotations

import pytest

from tests import pace


def test_the_pace_is_measured_again_once_the_last_measure_is_old(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LAUNCHER_TEST_PACE", raising=False)
    now = [1000.0]
    work = iter([0.050, 0.060, 0.070, 0.150, 0.160, 0.170, 9.0, 9.0, 9.0])
    monkeypatch.setattr(pace.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(pace, "_work", lambda: next(work))
    monkeypatch.setattr(pace, "_last", None)
    assert pace.factor() == 1.0  # quiet: the best of three is the reference
    now[0] += pace.MAX_AGE_S / 2
    assert pace.factor() == 1.0  # not measured again yet
    now[0] += pace.MAX_AGE_S
    assert pace.factor() == pytest.approx(3.0)  # loaded since: three times slower
    assert pace.scaled(900) == pytest.approx(2700)
    now[0] += pace.MAX_AGE_S + 1
    assert pace.factor() == pace.MAX_FACTOR  # clamped


def test_a_slow_tests_limit_is_set_from_the_pace_when_it_starts(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeconftest("from tests.conftest import pytest_collection_modifyitems, pytest_runtest_protocol")
    pytester.makeini("[pytest]\ntimeout = 100\nmarkers = slow: long")
    pytester.makepyfile("""
        import os, pytest

        def test_the_machine_gets_loaded():
            os.environ["LAUNCHER_TEST_PACE"] = "3"  # after collection, before the slow test starts

        @pytest.mark.slow
        def test_slow(request):
            assert request.node.get_closest_marker("timeout").args[0] == 300

        @pytest.mark.slow
        @pytest.mark.timeout(7)
        def test_own_limit(request):
            assert request.node.get_closest_marker("timeout").args[0] == 7

        def test_quick(request):
            assert request.node.get_closest_marker("timeout") is None
    """)
    monkeypatch.setenv("LAUNCHER_TEST_PACE", "2.5")
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=4)
