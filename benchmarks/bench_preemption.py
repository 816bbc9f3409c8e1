"""Preemption budget: SIGTERM -> the final checkpoint's manifest in the store, through the real entrypoint.

    .venv/bin/python benchmarks/bench_preemption.py        # BENCH_PREEMPT_MB=100,1000 (checkpoint sizes)

Against a moto S3 server in its own process on loopback: the entrypoint runs a
job that writes last.pt (random bytes) and waits; once the periodic sync has
put that version in the store (the steady state during training: the store
at most one version behind), the job gets SIGTERM, replaces last.pt with a
new one of the same size (prepared beforehand: this measures the upload, not
torch.save) and exits. Timed: SIGTERM -> a manifest naming the new last.pt in
the store, and SIGTERM -> the entrypoint's exit, against each platform's grace
window (launcher.runtime.grace.GRACE_S).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_storage import S3  # noqa: E402

from launcher.runtime.grace import GRACE_S  # noqa: E402
from launcher.storage.sync import newest  # noqa: E402

__all__ = ["main"]

JOB = """
import os, signal, sys, time
save, size = sys.argv[1], int(sys.argv[2])
def blob(path):
    with open(path, "wb") as f:
        for start in range(0, size, 1 << 24):
            f.write(os.urandom(min(1 << 24, size - start)))
blob(os.path.join(save, "last.pt.tmp")); os.replace(os.path.join(save, "last.pt.tmp"), os.path.join(save, "last.pt"))
blob(os.path.join(save, ".next"))
def stop(signum, frame):
    os.replace(os.path.join(save, ".next"), os.path.join(save, "last.pt"))  # the save at SIGTERM: a rename
    sys.exit(143)
signal.signal(signal.SIGTERM, stop)
print("ready", flush=True)
time.sleep(3600)
"""


def measure(server: S3, tmp: Path, mb: int) -> dict[str, float]:
    save, script = tmp / f"save-{mb}" / "ckpt", tmp / "job.py"
    save.mkdir(parents=True)
    script.write_text(JOB)
    env = {**os.environ, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{server.port}", "AWS_ACCESS_KEY_ID": "x",
           "AWS_SECRET_ACCESS_KEY": "x", "AWS_DEFAULT_REGION": "us-east-1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}  # fmt: skip
    run = f"preempt-{mb}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "launcher.runtime.entrypoint", "--run-name", run, "--checkpoint-uri", "s3://bench/runs",
         "--save-dir", str(save), "--nproc", "1", "--", sys.executable, str(script), str(save), str(mb << 20)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    assert proc.stdout is not None
    while (line := proc.stdout.readline()) and line.strip() != "ready":
        pass
    store = server.store(f"runs/{run}")
    first = wait_for(lambda: newest(store)[0], 900)  # the version the periodic sync sent during "training"
    time.sleep(3)  # the sync loop is idle again, as between two epochs
    start = time.perf_counter()
    os.kill(proc.pid, signal.SIGTERM)
    wait_for(lambda: (m := newest(store)[0]) is not None and m.version > first.version, 900, poll=0.1)
    manifest_s = time.perf_counter() - start
    proc.communicate(timeout=900)
    return {"manifest_s": manifest_s, "exit_s": time.perf_counter() - start, "code": proc.returncode}


def wait_for(check, timeout: float, poll: float = 0.5):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(poll)
    raise SystemExit("timed out")


def main() -> None:
    sizes = [int(s) for s in os.environ.get("BENCH_PREEMPT_MB", "100,1000").split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-preempt-") as name:
        tmp = Path(name)
        server = S3(tmp)
        try:
            windows = ", ".join(f"{p} {s} s" for p, s in GRACE_S.items())
            print(f"moto S3 on loopback; grace windows: {windows}", flush=True)
            for mb in sizes:
                r = measure(server, tmp, mb)
                fits = ", ".join(
                    f"{p} {'fits' if r['manifest_s'] <= s else 'DOES NOT FIT'}" for p, s in GRACE_S.items()
                )
                print(f"{mb:5d} MB checkpoint: SIGTERM -> manifest in store {r['manifest_s']:6.1f} s "
                      f"({mb * 1.048576 / r['manifest_s']:.1f} MB/s), -> entrypoint exit {r['exit_s']:6.1f} s "
                      f"(exit {r['code']}); {fits}", flush=True)  # fmt: skip
        finally:
            server.stop()


if __name__ == "__main__":
    main()
