"""torchrun that exits with the workers' own exit code.

`python -m torch.distributed.run` exits 1 whenever a worker fails, whatever
the worker's code, and 1 again after a SIGTERM. CI and the job registry need
the real code (a trainer error is 2, a preempted rank 143), so the entrypoint
runs torchrun through this module: the same argument parser and launcher
(`torch.distributed.run.run`), with the first failure's exit code kept.

A stop signal reaches torchrun more than once: on Slurm, scancel signals every
process of the step (for the step, again for the job) and the entrypoint
forwards its own copy. torch's handler raises on each one, and the repeats cut
short the wait in which the workers save their checkpoint: torchrun exits and
the step's processes are killed mid-save. Here the first SIGTERM/SIGINT stops
the workers and the next ones are only reported.

    python -m launcher.runtime.torchrun [torchrun options] -m launcher.runtime.train key=value ...
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from types import FrameType
from typing import Callable, Sequence

__all__ = ["main", "exit_code"]


def exit_code(returncode: int) -> int:
    """A worker's return code as a shell exit status (killed by signal N -> 128 + N)."""
    return 128 - returncode if returncode < 0 else returncode


def main(argv: Sequence[str] | None = None) -> int:
    from torch.distributed.elastic.multiprocessing.api import SignalException  # noqa: PLC0415
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError  # noqa: PLC0415
    from torch.distributed.run import get_args_parser, run  # noqa: PLC0415

    args = get_args_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    _stop_signals_once(args, SignalException)
    try:
        run(args)
    except ChildFailedError as exc:
        _rank, failure = exc.get_first_failure()
        return exit_code(failure.exitcode) or 1
    except SignalException as exc:
        return 128 + int(exc.sigval)
    return 0


STOP_SIGNALS = ("SIGTERM", "SIGINT")


def _stop_signals_once(args: argparse.Namespace, signal_exception: Callable[..., Exception]) -> None:
    """SIGTERM/SIGINT are handled here, not by torch (torchrun's --signals-to-handle): the first raises torch's
    SignalException (the agent then signals its workers and waits for them); a repeat while they save is ignored."""
    args.signals_to_handle = (
        ",".join(
            name for name in (n.strip() for n in args.signals_to_handle.split(",")) if name and name not in STOP_SIGNALS
        )
        or "SIGHUP"
    )  # never empty: torch warns about a signal named ""
    received: list[int] = []

    def stop(signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if received:
            print(f"[launcher] torchrun: {name} again while the workers stop: they keep their time to save",
                  file=sys.stderr, flush=True)  # fmt: skip
            return
        received.append(signum)
        raise signal_exception(f"Process {os.getpid()} got signal: {name}", sigval=signal.Signals(signum))

    for name in STOP_SIGNALS:
        signal.signal(getattr(signal, name), stop)


if __name__ == "__main__":
    sys.exit(main())
