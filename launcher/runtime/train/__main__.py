"""`python -m launcher.runtime.train key=value ... [save_dir=DIR]` (directly or under torchrun)."""

from __future__ import annotations

import os
import sys
from typing import Sequence

from launcher.errors import LauncherError

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    from launcher.runtime.train.config import parse_args  # noqa: PLC0415

    dist = None
    try:
        cfg, save_dir = parse_args(sys.argv[1:] if argv is None else argv)
        from launcher.runtime.train import dist as dist_mod  # noqa: PLC0415
        from launcher.runtime.train.loop import Trainer  # noqa: PLC0415

        dist = dist_mod.setup()
        save_dir.mkdir(parents=True, exist_ok=True)
        return Trainer(cfg, save_dir, dist, spec_hash=os.environ.get("LAUNCHER_SPEC_HASH", "")).fit()
    except LauncherError as exc:
        print(f"[train] error: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    finally:
        if dist is not None:
            dist.close()


if __name__ == "__main__":
    sys.exit(main())
