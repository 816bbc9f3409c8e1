"""torchrun that exits with the workers' own exit code.

`python -m torch.distributed.run` exits 1 whenever a worker fails, whatever
the worker's code, and 1 again after a SIGTERM. CI and the job registry need
the real code (a trainer error is 2, a preempted rank 143), so the entrypoint
runs torchrun through this module: the same argument parser and launcher
(`torch.distributed.run.run`), with the first failure's exit code kept.

    python -m launcher.runtime.torchrun [torchrun options] -m launcher.runtime.train key=value ...
"""

from __future__ import annotations

import sys
from typing import Sequence

__all__ = ["main", "exit_code"]


def exit_code(returncode: int) -> int:
    """A worker's return code as a shell exit status (killed by signal N -> 128 + N)."""
    return 128 - returncode if returncode < 0 else returncode


def main(argv: Sequence[str] | None = None) -> int:
    from torch.distributed.elastic.multiprocessing.api import SignalException  # noqa: PLC0415
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError  # noqa: PLC0415
    from torch.distributed.run import get_args_parser, run  # noqa: PLC0415

    args = get_args_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        run(args)
    except ChildFailedError as exc:
        _rank, failure = exc.get_first_failure()
        return exit_code(failure.exitcode) or 1
    except SignalException as exc:
        return 128 + int(exc.sigval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
