"""The training image's ENTRYPOINT: the same program on every backend.

    python -m launcher.runtime.entrypoint --run-name NAME [--checkpoint-uri URI] ... -- train key=value ...
    python -m launcher.runtime.entrypoint ... -- python my_script.py --flag

The flags are the container contract, defined once in launcher.contract
(EntrypointArgs), which also writes them for every backend.

It detects the platform (launcher.runtime.rendezvous), resolves secret references
into environment variables (launcher.runtime.secrets), pulls the newest complete
checkpoint from the checkpoint store (a local path too) into a training
folder of this job's own (after staging the data: meanwhile node 0 writes how
far it got to the run folder itself, `staging_progress`), starts torchrun with
the right nnodes / node_rank / nproc_per_node, forwards SIGTERM and SIGINT (spot preemption, `launch stop`,
Ctrl-C) to it, keeps the store synced from node 0 while holding the run's
lease (launcher.storage.lease), flushes that sync at the end, releases the
lease and exits with the job's code.

`train ...` is shorthand for `-m launcher.runtime.train ...`; any other command is
run with `torchrun --no-python` (`python`/`python3` as its first word is this
interpreter, the image's environment). A program of the user's own gets its
code (`--code`: unpacked, its working folder and first on PYTHONPATH, after
the `--requirements` layer), its data (`--data`, staged once per node) and
the variables of launcher.contract.PROGRAM_VARIABLES.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Sequence

from launcher.contract import TIMEOUT_EXIT, EntrypointArgs
from launcher.errors import LauncherError
from launcher.runtime import grace, rendezvous
from launcher.storage.base import Store

if TYPE_CHECKING:
    from launcher.storage.dataset import StagingProgress

__all__ = [
    "main",
    "run",
    "build_command",
    "parse_args",
    "node_save_dir",
    "scratch_for",
    "uses_ultralytics",
    "compute_threads",
    "staging_progress",
]

SAGEMAKER_CHECKPOINTS = Path("/opt/ml/checkpoints")  # CheckpointConfig.LocalPath: mirrored to S3 by SageMaker
JOB_FOLDER_PREFIX = "launcher-job-"  # the training folder of one job (save_dir_for), removed once synced
STOP_GRACE_S = 120  # after SIGTERM, as long as SageMaker waits before its SIGKILL
LOCAL_GRACE_S = (
    30  # the local backend's stop: SIGTERM, then SIGKILL after 30 s (launcher/backends/local.py STOP_GRACE_S)
)


def parse_args(argv: Sequence[str]) -> EntrypointArgs:
    """The command line, as the container contract (launcher.contract) defines it."""
    return EntrypointArgs.parse(argv)


def visible_gpus() -> int:
    try:
        import torch  # noqa: PLC0415 - only inside the image, where torch is installed
    except ImportError:
        return 0
    return torch.cuda.device_count()


def processes_per_node(args: EntrypointArgs) -> int:
    if args.nproc:
        return args.nproc
    gpus = args.gpus if args.gpus is not None else visible_gpus()
    return max(gpus, 1)


def save_dir_for(args: EntrypointArgs, environ: dict[str, str]) -> Path:
    """Where the trainer writes: `--save-dir`, else a folder of this job's own, synced to the checkpoint store.

    Never the store itself (a local store has the same manifest layout as a
    bucket) and never a folder another job used: a shared
    $TMPDIR/launcher-checkpoints/<name> let a new job with an empty store
    resume from an old job's leftovers and upload them as its own.
    """
    if args.save_dir:
        return Path(args.save_dir)
    # Vertex sets AIP_CHECKPOINT_DIR=gs://B/P (<baseOutputDirectory>/checkpoints) and mounts
    # bucket B at /gcs/B: https://cloud.google.com/vertex-ai/docs/training/cloud-storage-file-system
    # With a remote checkpoint URI the sync owns checkpoint I/O, so the mount is used only without one.
    aip = environ.get("AIP_CHECKPOINT_DIR", "")
    if aip.startswith(("gs://", "/gcs/")) and not args.checkpoint_uri:
        return Path("/gcs/" + aip.removeprefix("gs://").removeprefix("/gcs/")) / args.run_name
    return Path(tempfile.mkdtemp(prefix=JOB_FOLDER_PREFIX)) / args.run_name


def node_save_dir(save_dir: Path, rdzv: rendezvous.Rendezvous, run_name: str) -> Path:
    """SageMaker uploads every node's /opt/ml/checkpoints to the SAME S3 prefix, so only node 0 writes there;
    the other nodes keep (and resume from) a folder of their own."""
    if rdzv.platform == "sagemaker" and not rdzv.is_chief and save_dir.is_relative_to(SAGEMAKER_CHECKPOINTS):
        return Path(tempfile.gettempdir()) / "launcher-checkpoints" / run_name
    return save_dir


def scratch_for(save_dir: Path) -> Path:
    """Where the checkpoint sync keeps its state and partial files: a hidden sibling of the save folder
    (same file system, so renames stay atomic), never the folder itself, which a platform may mirror."""
    scratch = save_dir.parent / f".{save_dir.name}.launcher"
    try:
        scratch.mkdir(parents=True, exist_ok=True)
    except OSError:  # a read-only parent: any private folder will do
        scratch = Path(tempfile.mkdtemp(prefix="launcher-sync-"))
    return scratch


def build_command(args: EntrypointArgs, rdzv: rendezvous.Rendezvous, nproc: int, save_dir: Path) -> list[str]:
    torchrun = [sys.executable, "-m", "launcher.runtime.torchrun", *rdzv.torchrun_args(nproc)]
    if args.command[0] == "train" and uses_ultralytics(args.command):
        # one process per node, not under torchrun: Ultralytics runs its own DDP over its device list
        return [
            sys.executable,
            "-m",
            "launcher.runtime.train.ultralytics_engine",
            *args.command[1:],
            f"save_dir={save_dir}",
        ]
    if args.command[0] == "train":
        return [*torchrun, "-m", "launcher.runtime.train", *args.command[1:], f"save_dir={save_dir}"]
    program = list(args.command)
    if program[0] in ("python", "python3"):  # the environment launcher runs in (the image's), not a system python
        program[0] = sys.executable
    return [*torchrun, "--no-python", *program]


def compute_threads(environ: dict[str, str], nproc: int) -> dict[str, str]:
    """OMP_NUM_THREADS for `nproc` training processes on this node, when more than one and the job sets none.

    torchrun sets it to 1 in that case and prints a five-line banner about it; one thread per process leaves
    cores idle (CPU training, the batches a GPU process decodes itself). The processes share the usable cores
    instead: the rule the trainer and `launch profile` follow (launcher.runtime.cpu), so their figures agree.
    """
    if nproc <= 1 or environ.get("OMP_NUM_THREADS", "").strip():
        return {}
    from launcher.runtime.cpu import cpu_threads, usable_cpus  # noqa: PLC0415

    return {"OMP_NUM_THREADS": str(cpu_threads({}, usable_cpus(), nproc))}


def uses_ultralytics(command: Sequence[str]) -> bool:
    """Whether a train command is for the ultralytics engine (TrainConfig.to_args writes engine=ultralytics)."""
    return "engine=ultralytics" in command[1:]


def program_environment(
    args: EntrypointArgs, environ: dict[str, str], progress: StagingProgress | None = None
) -> tuple[dict[str, str], Path | None]:
    """(the variables a program of the user's own gets, its working folder): the code unpacked, the
    requirements installed, the data staged. Empty for the built-in trainer."""
    if args.command[0] == "train":
        return {}, None
    from launcher.runtime import code, datasets  # noqa: PLC0415

    extra: dict[str, str] = {}
    folder = code.prepare(args.code, environ) if args.code else None
    paths = [str(folder)] if folder else []
    if folder and args.requirements:
        paths.insert(0, str(code.install_requirements(folder / args.requirements, environ) / "site"))
    if paths:
        extra["PYTHONPATH"] = os.pathsep.join([*paths, *filter(None, [environ.get("PYTHONPATH")])])
    if args.data:
        local = datasets.resolve(args.data, environ, layout=False, progress=progress)
        print(f"[launcher] training data {args.data} -> {local} (LAUNCHER_DATA)", flush=True)
        extra["LAUNCHER_DATA"] = str(local)
    return extra, folder


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    environ = dict(os.environ)
    rdzv = rendezvous.detect(environ)
    environ = {**rdzv.environment, **environ}  # the platform's NCCL/EFA settings; the job's own env wins
    from launcher.runtime import secrets  # noqa: PLC0415 - imports a cloud SDK only when a reference needs it

    resolved = secrets.resolve_environment(environ)
    environ.update(resolved)
    os.environ.update(resolved)  # the store SDKs below (data fetch, checkpoint sync) read credentials from here
    if _already_finished(args, rdzv):
        print("[launcher] exit code 0", flush=True)
        return 0
    progress = staging_progress(args, rdzv)
    args = _stage_data(args, environ, progress)
    program, workdir = program_environment(args, environ, progress)
    environ.update(program)
    save_dir = node_save_dir(save_dir_for(args, environ), rdzv, args.run_name)
    save_dir.mkdir(parents=True, exist_ok=True)
    nproc = processes_per_node(args)
    environ.update(compute_threads(environ, nproc))
    grace_s = grace.GRACE_S.get(rdzv.platform, LOCAL_GRACE_S)
    environ.update(
        LAUNCHER_RUN_NAME=args.run_name,
        LAUNCHER_SAVE_DIR=str(save_dir),
        LAUNCHER_CHECKPOINT_DIR=str(save_dir),
        LAUNCHER_SPEC_HASH=args.spec_hash,
        LAUNCHER_PLATFORM=rdzv.platform,
        LAUNCHER_GRACE_S=str(grace_s),
    )
    syncer = _start_sync(args, rdzv, save_dir)
    if syncer is not None:
        _say_if_too_slow(rdzv.platform, save_dir, syncer.store)
    environ["LAUNCHER_RESUMED"] = "1" if _restored(save_dir) else "0"
    cmd = build_command(args, rdzv, nproc, save_dir)
    print(f"[launcher] {rdzv.platform}: node {rdzv.node_rank}/{rdzv.nnodes}, {nproc} process(es) per node; "
          f"after SIGTERM the job has {grace_s} s to save", flush=True)  # fmt: skip
    code = _run_forwarding_signals(cmd, environ, args.max_runtime, cwd=workdir)
    if syncer is not None:
        _flush_despite_signals(syncer)
        if not syncer.holder.lost:  # the run folder is still this job's: the next start's figure
            grace.remember_rate(syncer.store, syncer.stats.bytes_sent, syncer.stats.seconds)
        _remove_job_folder(save_dir, synced=not syncer.errors and not syncer.holder.lost)
    print(f"[launcher] exit code {code}", flush=True)
    return code


def _restored(save_dir: Path) -> bool:
    """Whether the checkpoint folder holds files from an earlier job of the run (pulled, or kept on this machine)."""
    from launcher.storage.sync import scan  # noqa: PLC0415

    return bool(scan(save_dir))


def _say_if_too_slow(platform: str, save_dir: Path, run_store: Store) -> None:
    """At start: will the checkpoint (the one resumed from) upload within the platform's preemption grace window?"""
    note = grace.fit_warning(platform, grace.checkpoint_bytes(save_dir), grace.remembered_rate(run_store))
    if note:
        print(f"[launcher] {note}", flush=True)


def _flush_despite_signals(syncer) -> None:  # type: ignore[no-untyped-def]
    """Upload the final checkpoint even if a SIGTERM arrives meanwhile.

    The training processes are gone; a SIGTERM now (the platform stopping the
    job, or docker-compose stopping this node because a peer finished first,
    as SageMaker's local mode does) must not kill the upload of the newest
    checkpoint: it is noted and the flush goes on (the platform's SIGKILL
    after its grace window is the limit).
    """
    received: list[int] = []
    previous = {
        sig: signal.signal(sig, lambda signum, _f: received.append(signum)) for sig in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        syncer.close()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if received:
        print(
            f"[launcher] signal {received[0]} during the final checkpoint upload: finished the upload first", flush=True
        )


def _stage_data(
    args: EntrypointArgs, environ: dict[str, str], progress: StagingProgress | None = None
) -> EntrypointArgs:
    """A remote `data=` fetched (or found mounted) once per node, before torchrun starts the ranks, and the
    pretrained weights the submit stored by content (launcher.runtime.weights)."""
    from dataclasses import replace  # noqa: PLC0415

    from launcher.runtime import datasets, weights  # noqa: PLC0415

    staged = datasets.stage(args.command, environ, progress=progress)
    return replace(args, command=weights.stage(staged, environ))


def staging_progress(args: EntrypointArgs, rdzv: rendezvous.Rendezvous) -> StagingProgress | None:
    """Node 0's record of the data staging, for `launch status`: written straight to the run folder of the
    checkpoint store, as the syncer (which copies the trainer's own record there) starts only after staging.
    None on the other nodes (`launch status` shows node 0's figures) and without a checkpoint URI."""
    if not args.checkpoint_uri or not rdzv.is_chief:
        return None
    from launcher.storage import join_uri  # noqa: PLC0415
    from launcher.storage.dataset import StagingProgress, run_folder_writer  # noqa: PLC0415

    return StagingProgress(run_folder_writer(join_uri(args.checkpoint_uri, args.run_name)))


def _remove_job_folder(save_dir: Path, synced: bool) -> None:
    """This job's own training folder goes once the store has everything (nobody else will read it)."""
    if save_dir.parent.name.startswith(JOB_FOLDER_PREFIX) and synced:
        shutil.rmtree(save_dir.parent, ignore_errors=True)
    elif save_dir.parent.name.startswith(JOB_FOLDER_PREFIX):
        print(f"[launcher] the last checkpoint may not be in the store: it stays in {save_dir}", flush=True)


def _total_epochs(command: Sequence[str]) -> int | None:
    """The trainer's `epochs=N`, when the command is the trainer and names it."""
    if list(command[:1]) != ["train"]:  # a tuple in EntrypointArgs: a tuple never equals a list
        return None
    values = [arg.removeprefix("epochs=") for arg in command[1:] if arg.startswith("epochs=")]
    return int(values[-1]) if values and values[-1].isdigit() else None


def _already_finished(args: EntrypointArgs, rdzv: rendezvous.Rendezvous) -> bool:
    """A trainer run whose newest stored checkpoint holds all its epochs: say so and stop, before the data is
    staged, the checkpoint pulled or torchrun started (the trainer would load it only to say the same)."""
    epochs = _total_epochs(args.command)
    if not args.checkpoint_uri or epochs is None:
        return False
    from launcher.storage import sync  # noqa: PLC0415

    found = sync.finished_checkpoint(args.checkpoint_uri, args.run_name, epochs)
    if found is None:
        return False
    store, manifest = found
    print(f"[launcher] this run already finished: checkpoint {manifest.version} in {store.uri} holds epoch "
          f"{manifest.epoch} of {epochs}; nothing to do, nothing downloaded. Raise train.epochs to train longer, "
          "or use a new run name to start over.", flush=True)  # fmt: skip
    if rdzv.is_chief:  # the lease the submit took is this job's to give back
        from launcher.storage.lease import Holder  # noqa: PLC0415

        holder = Holder(store, log=lambda m: print(f"[launcher] {m}", flush=True))
        holder.claim()
        holder.release()
    return True


def _start_sync(args: EntrypointArgs, rdzv: rendezvous.Rendezvous, save_dir: Path):  # type: ignore[no-untyped-def]
    """Pull the newest complete checkpoint (any store, local folders too); node 0 then keeps the store in sync
    and holds the run's lease (launcher.storage.lease) until the job ends."""
    if not args.checkpoint_uri:
        return None
    from launcher.storage import sync  # noqa: PLC0415

    scratch = scratch_for(save_dir)
    sync.pull_latest(args.checkpoint_uri, args.run_name, save_dir, scratch=scratch, epochs=_total_epochs(args.command))
    if not rdzv.is_chief:
        return None
    from launcher.storage.lease import Holder  # noqa: PLC0415

    syncer = sync.Syncer(
        args.checkpoint_uri,
        args.run_name,
        save_dir,
        keep=args.keep,
        spec_hash=args.spec_hash,
        every=args.every,
        scratch=scratch,
        wait_for=sync.TRIGGER if args.command[0] == "train" else None,  # both engines save last.pt
    )
    syncer.holder = Holder(syncer.store, log=lambda m: print(f"[launcher] {m}", flush=True))
    syncer.holder.claim()
    syncer.start()
    return syncer


def _run_forwarding_signals(
    cmd: list[str], environ: dict[str, str], max_runtime: float | None = None, cwd: Path | None = None
) -> int:
    """Run torchrun, forwarding SIGTERM/SIGINT; a signalled job exits 128 + signal.

    torchrun itself exits 1 (with a SignalException) after forwarding a signal
    to its workers; reporting 143 for SIGTERM tells a preempted job from a crash.
    Past `max_runtime` seconds the job gets the same SIGTERM (so the trainer
    saves its checkpoint) and the entrypoint exits 124.
    """
    proc = subprocess.Popen(cmd, env=environ, cwd=cwd)
    received: list[int] = []

    def forward(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)
        if proc.poll() is None:
            proc.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        try:
            code = proc.wait(timeout=max_runtime)
        except subprocess.TimeoutExpired:
            return _time_out(proc, max_runtime or 0)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if code < 0:
        return 128 - code
    return 128 + received[0] if received and code != 0 else code


def _time_out(proc: subprocess.Popen[bytes], max_runtime: float) -> int:
    print(f"[launcher] limits.max_runtime ({max_runtime:.0f}s) reached: stopping the job (it saves first)", flush=True)
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return TIMEOUT_EXIT


def run(argv: Sequence[str] | None = None) -> int:
    """`main` as the image runs it: an error the user can act on (data that cannot be listed, a damaged code
    archive) is one line and its exit code, never a traceback."""
    try:
        return main(argv)
    except LauncherError as exc:
        print(f"[launcher] error: {exc}".replace("\n", " "), file=sys.stderr, flush=True)
        print(f"[launcher] exit code {exc.exit_code}", flush=True)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(run())
