"""A separate writer process: `python -m tests.launcher.storage.writer URI FOLDER [--die-after-files N] [--die-before-manifest]`.

It reaches the store the way the training image does (each SDK's standard
environment variables, no injected client) and can kill itself mid-upload,
so tests see exactly what a killed uploader leaves behind.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from launcher.storage import open_store
from launcher.storage.sync import Pusher
from tests.launcher.storage.helpers import DyingStore

__all__ = ["main"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("uri")
    parser.add_argument("folder")
    parser.add_argument("--die-after-files", type=int, default=None)
    parser.add_argument("--die-before-manifest", action="store_true")
    args = parser.parse_args()
    store = DyingStore(open_store(args.uri), args.die_after_files, args.die_before_manifest)
    manifest = Pusher(store, Path(args.folder), keep=3).push()
    print(f"pushed version {manifest.version if manifest else None}")


if __name__ == "__main__":
    main()
