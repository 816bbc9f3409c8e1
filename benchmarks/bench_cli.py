"""Cold-start time of the CLI: `launch --help` and `launch --dry-run -b local`.

    .venv/bin/python benchmarks/bench_cli.py [--runs N]

Each command runs N times in a fresh interpreter; we report the median and
the best wall time, and the ratio to `python -c pass` (the floor any Python
CLI pays). Heavy SDKs (torch, docker, cloud SDKs) are imported lazily, so
these should stay within a small multiple of the floor.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["measure", "main"]

SPEC = "name: bench\ntrain: {epochs: 1, imgsz: 32}\nlocal: {runtime: auto}\n"


def measure(argv: list[str], runs: int) -> list[float]:
    """Wall seconds of `argv` run `runs` times (after one warm-up run for the OS file cache)."""
    subprocess.run(argv, capture_output=True, check=True)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    launch = [sys.executable, "-c", "import sys; from launcher.cli import main; sys.argv[0] = 'launch'; main()"]
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "job.yaml"
        spec.write_text(SPEC)
        cases = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "launch --help": [*launch, "--help"],
            "launch --dry-run -b local": [*launch, str(spec), "--dry-run", "-b", "local"],
        }
        results = {name: measure(argv, args.runs) for name, argv in cases.items()}
    floor = statistics.median(results["python -c pass"])
    print(f"{'command':<28}{'median ms':>10}{'best ms':>10}{'x python':>10}")
    for name, times in results.items():
        median = statistics.median(times)
        print(f"{name:<28}{median * 1000:>10.0f}{min(times) * 1000:>10.0f}{median / floor:>10.1f}")


if __name__ == "__main__":
    main()
