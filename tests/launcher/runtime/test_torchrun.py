"""launcher.runtime.torchrun: torchrun with the workers' own exit codes, and a save that a repeated stop signal
cannot cut short."""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from launcher.runtime import torchrun

# A worker that, on SIGTERM, "saves" until the test lets it finish, then exits 143 like the trainer.
SAVER = """
import pathlib, signal, sys, time
here = pathlib.Path(sys.argv[1])
stop = []
signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
(here / "started").touch()
while not stop:
    time.sleep(0.05)
(here / "saving").touch()
deadline = time.monotonic() + 120
while not (here / "release").exists() and time.monotonic() < deadline:
    time.sleep(0.05)
(here / "saved").touch()
sys.exit(143)
"""


def _wait_for(path: Path, proc: subprocess.Popen[str], what: str) -> None:
    deadline = time.monotonic() + 120
    while not path.exists():
        assert proc.poll() is None, f"torchrun ended before {what}:\n{proc.communicate()[0]}"
        assert time.monotonic() < deadline, f"no {what} in 120 s"
        time.sleep(0.05)


@pytest.mark.parametrize("again", ["SIGTERM", "SIGINT"])
def test_a_second_stop_signal_while_the_worker_saves_does_not_end_torchrun_before_it(
    tmp_path: Path, again: str
) -> None:
    """On Slurm torchrun gets SIGTERM more than once (the step's cancel, the job's, the entrypoint's forward): torch's
    own handler raised on each, torchrun left its wait for the workers, and the step ended while rank 0 was saving
    (CI, 2026-12-08: no checkpoint from the stopped job)."""
    script = tmp_path / "saver.py"
    script.write_text(SAVER)
    proc = subprocess.Popen(
        [sys.executable, "-m", "launcher.runtime.torchrun", "--nproc-per-node", "1", str(script), str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        _wait_for(tmp_path / "started", proc, "worker start")
        proc.send_signal(signal.SIGTERM)
        _wait_for(tmp_path / "saving", proc, "worker save")  # torchrun has passed the signal on and waits
        for _ in range(
            2
        ):  # torch's own handler: the 1st repeat ends its wait, its `finally` waits again, the 2nd ends that
            proc.send_signal(getattr(signal, again))
            time.sleep(0.5)  # one at a time: two pending signals run a Python handler once
        deadline = time.monotonic() + 3  # time for a torchrun that reacts to the repeats to end (it must not)
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, (
            f"torchrun ended on a repeated signal while the worker saved:\n{proc.communicate()[0]}"
        )
        (tmp_path / "release").touch()
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (tmp_path / "saved").exists(), out
    assert proc.returncode == 143, out
    assert f"torchrun: {again} again while the workers stop" in out


def test_stop_signals_are_left_to_the_wrapper_and_other_signals_to_torch() -> None:
    class Stop(Exception):
        def __init__(self, msg: str, sigval: signal.Signals) -> None:
            super().__init__(msg)
            self.sigval = sigval

    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        args = argparse.Namespace(signals_to_handle="SIGTERM, SIGHUP,SIGINT,SIGUSR1")
        torchrun._stop_signals_once(args, Stop)
        assert args.signals_to_handle == "SIGHUP,SIGUSR1"
        handler = signal.getsignal(signal.SIGTERM)
        assert callable(handler) and signal.getsignal(signal.SIGINT) is handler
        with pytest.raises(Stop) as raised:
            handler(signal.SIGTERM, None)
        assert raised.value.sigval is signal.SIGTERM
        handler(signal.SIGINT, None)  # a repeat, of either kind: no raise
        args = argparse.Namespace(signals_to_handle="SIGTERM")
        torchrun._stop_signals_once(args, Stop)
        assert args.signals_to_handle == "SIGHUP"  # never empty: torch warns about a signal named ""
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def test_a_workers_exit_code_is_a_shell_status() -> None:
    assert torchrun.exit_code(-15) == 143 and torchrun.exit_code(2) == 2 and torchrun.exit_code(0) == 0
