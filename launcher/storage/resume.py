"""`launch run --resume-from URI`: seed a new job's checkpoint folder from another run.

The hook runs just before submit (launcher.api.Launcher.before_submit). It
copies the newest complete, verified checkpoint from `URI` (any store, or a
plain local run folder) into `<spec.checkpoint.uri>/<spec.name>/`, the run
folder every backend passes to the entrypoint (`--run-name <spec.name>`), where
the new job's entrypoint pulls it before training, so a run stopped on the local
machine or GCP continues on AWS. A local checkpoint URI has the same layout
as a bucket (the entrypoint syncs to it like to any store).
"""

from __future__ import annotations

from typing import Any, Callable

from launcher.errors import LauncherError
from launcher.storage import join_uri, open_store
from launcher.storage.sync import copy

__all__ = ["copy_for_resume_hook", "copy_for_resume", "run_folder"]


def run_folder(plan: Any) -> str:
    """The run folder the job's entrypoint reads: the spec's name, on every backend (not the job id)."""
    return plan.spec.name


def copy_for_resume(src_uri: str, dst_uri: str, run_name: str, keep: int = 3, **clients: Any) -> str:
    """Copy the newest checkpoint of `src_uri` to `<dst_uri>/<run_name>`; returns the destination URI."""
    src = open_store(src_uri, **clients)
    dst = open_store(join_uri(dst_uri, run_name), **clients)
    result = copy(src, dst, keep=keep)
    if result.manifest is None:
        raise LauncherError(
            f"--resume-from {src_uri}: no complete checkpoint there.",
            "Point it at a run folder (one holding manifest.json); list them with `launch ckpt ls URI`.",
        )
    return dst.uri


def copy_for_resume_hook(src_uri: str, **clients: Any) -> Callable[[Any, Any], None]:
    """A pre-submit hook `hook(launcher, plan)` that seeds the plan's checkpoint folder from `src_uri`."""

    def hook(_launcher: Any, plan: Any) -> None:
        target = plan.spec.checkpoint.uri
        if not target:
            raise LauncherError(
                f"--resume-from needs a checkpoint store to copy into, but job {plan.spec.name!r} sets no checkpoint.uri.",
                "Add `checkpoint: {uri: s3://bucket/ckpts}` (a store the backend can reach) to the spec, "
                "or pass --set checkpoint.uri=URI.",
            )
        where = copy_for_resume(src_uri, target, run_folder(plan), keep=plan.spec.checkpoint.keep, **clients)
        print(f"[launcher] copied the newest checkpoint of {src_uri} to {where}", flush=True)

    return hook
