"""`launch ckpt ls|pull|push|cp`: look at and move checkpoints between any stores.

launch ckpt ls s3://bucket/ckpts            runs under a prefix
launch ckpt ls s3://bucket/ckpts/my-run     that run's checkpoints (or: launch ckpt ls JOB_ID)
launch ckpt pull gs://b/ckpts/run ./here    newest complete checkpoint -> plain files, verified
launch ckpt push ./here az://c/ckpts/run    a folder -> a new checkpoint (changed files only)
launch ckpt cp gs://b/ckpts/run s3://b/ckpts/run   any store to any store, verified
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click

from launcher.cli.base import console, echo_json, fail, main

__all__ = ["ckpt"]


@main.group()
def ckpt() -> None:
    """List, pull, push and copy checkpoints (local path, s3://, gs://, az://)."""


class RichMeter:
    """A byte progress bar on stderr (rich is imported lazily, like everything in the CLI)."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

        self.progress = Progress("{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                                 console=console(stderr=True), transient=False)  # fmt: skip
        self.task = None

    def __enter__(self) -> "RichMeter":
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def begin(self, total: int, description: str) -> None:
        if self.task is not None:
            self.progress.remove_task(self.task)
        self.task = self.progress.add_task(description, total=total)

    def advance(self, n: int) -> None:
        if self.task is not None:
            self.progress.advance(self.task, n)


def resolve(target: str) -> str:
    """A URI or local path as given; a job id becomes `<its checkpoint.uri>/<run folder>`."""
    try:
        exists = Path(target).exists()
    except (OSError, ValueError):  # a name too long for a path, a NUL
        exists = False
    if "://" in target or exists:
        return target
    from launcher.errors import JobNotFoundError
    from launcher.state.jobs import JobRegistry

    try:
        record = JobRegistry().get(target)
    except JobNotFoundError:
        fail(f"{target!r} is neither a checkpoint URI, an existing folder nor a known job id.")
    uri = (record.spec.get("checkpoint") or {}).get("uri")
    if not uri:
        fail(f"Job {target} has no checkpoint.uri in its spec, so it stored no checkpoints.")
    return _run_folder(uri, [record.name, record.id, record.native_id])


def _run_folder(uri: str, names: list[str]) -> str:
    """The run folder is named after the spec (older runs: the job id): take the one that exists."""
    from launcher.storage import join_uri, open_store
    from launcher.storage.manifest import MANIFEST

    for name in names:
        folder = join_uri(uri, name)
        if open_store(folder).get_bytes(MANIFEST) is not None or ("://" not in uri and Path(folder).is_dir()):
            return folder
    return join_uri(uri, names[0])


@ckpt.command("ls")
@click.argument("target")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.option(
    "--verify", is_flag=True, help="also check every file's sha256 (reads all of them; sizes are always checked)"
)
def ls(target: str, as_json: bool, verify: bool) -> None:
    """List a run's checkpoints (URI of a run, or JOB_ID), or the runs under a prefix."""
    from launcher.storage import open_store
    from launcher.storage.manifest import candidates

    store = open_store(resolve(target))
    rows = [_row(where, found) for where, found in candidates(store)]
    if rows:
        _check_files(store, rows, verify)
    rows = rows or _runs(store) or _plain(store)
    if not as_json:  # keys relative to what the user typed; the table stays readable
        rows = [{**r, "where": r["where"][len(store.uri) + 1 :] or r["where"]} for r in rows]
    if as_json:
        echo_json(rows)
    elif not rows:
        click.echo(f"no checkpoints under {store.uri}", err=True)
    else:
        _table(rows)
    if rows and not any(r["status"].startswith(("ok", "plain")) for r in rows):
        fail(f"No usable checkpoint under {store.uri}: every version listed above is damaged or refused, so a resume "
             "would start from scratch. Push a good copy with `launch ckpt push`, or pull an older one from another store.",
             code=1)  # fmt: skip


def _row(where: str, found) -> dict:  # type: ignore[no-untyped-def]
    from launcher.storage.manifest import Manifest

    if not isinstance(found, Manifest):
        kind = "stale" if type(found).__name__ == "StaleHead" else "damaged"
        return {"where": where, "status": f"{kind}: {found.message}"}
    when = dt.datetime.fromtimestamp(found.time, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    return {"where": where, "version": found.version, "epoch": found.epoch, "step": found.step, "time": when,
            "files": len(found.files), "bytes": found.size, "status": "ok", "_manifest": found}  # fmt: skip


def _check_files(store, rows: list[dict], verify: bool) -> None:  # type: ignore[no-untyped-def]
    """Mark each version whose files are missing or the wrong size (one listing), or, with --verify, whose
    bytes do not match their sha256 (each distinct file is read once)."""
    from launcher.storage.manifest import FILES

    sizes = {obj.key: obj.size for obj in store.list(FILES)}
    hashes: dict[str, str | None] = {}
    for row in rows:
        manifest = row.pop("_manifest", None)
        if manifest is None:
            continue
        problems = [
            p for e in manifest.files.values() if (p := _file_problem(store, e, sizes, hashes if verify else None))
        ]
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            row["status"] = f"damaged: {problems[0]}{more}"
        elif verify:
            row["status"] = "ok (sha256 verified)"


def _file_problem(store, entry, sizes: dict[str, int], hashes: dict[str, str | None] | None) -> str:  # type: ignore[no-untyped-def]
    """What is wrong with one listed file, or ''."""
    if entry.key not in sizes:
        return f"{entry.key} is missing"
    if sizes[entry.key] != entry.size:
        return f"{entry.key} has {sizes[entry.key]} bytes, the manifest says {entry.size}"
    if hashes is None:
        return ""
    if entry.key not in hashes:
        hashes[entry.key] = _sha256(store, entry.key)
    return "" if hashes[entry.key] == entry.sha256 else f"{entry.key} does not match its sha256"


def _sha256(store, key: str) -> str | None:  # type: ignore[no-untyped-def]
    import tempfile

    from launcher.errors import LauncherError
    from launcher.storage.base import safe_local_path, sha256_file
    from launcher.storage.local import LocalStore

    if isinstance(store, LocalStore):
        return sha256_file(safe_local_path(store.root, key))
    with tempfile.TemporaryDirectory(prefix="launcher-verify-") as tmp:
        path = Path(tmp) / "object"
        try:
            return store.get(key, path) or sha256_file(path)
        except LauncherError:  # deleted since the listing
            return None


def _plain(store) -> list[dict]:  # type: ignore[no-untyped-def]
    """A local run folder the trainer wrote in place (no manifest): its files are one checkpoint."""
    from launcher.storage.local import LocalStore
    from launcher.storage.sync import plain_manifest

    if not isinstance(store, LocalStore) or not store.root.is_dir():
        return []
    if not any(p.is_file() and not p.name.startswith(".") for p in store.root.iterdir()):
        return []  # only folders: a store root or a parent of runs, not a run the trainer wrote in
    found = plain_manifest(store.root)
    if not found:
        return []
    row = _row(store.uri, found)
    row.pop("_manifest")
    return [{**row, "status": "plain (no manifest)"}]


def _runs(store) -> list[dict]:  # type: ignore[no-untyped-def]
    """Runs below a prefix: folders that hold a manifest.json, each with its newest usable checkpoint.

    A key that could escape its folder (written by another tool) gets its own row; it never hides the others.
    """
    from launcher.errors import LauncherError
    from launcher.storage.manifest import MANIFEST

    rows = []
    for obj in store.list(""):
        if not (obj.key.endswith("/" + MANIFEST) and obj.key.count("/") == 1):
            continue
        run = obj.key.rsplit("/", 1)[0]
        try:
            rows.append({"run": run, **_newest_row(store.sub(run))})
        except LauncherError as exc:
            rows.append({"run": run, "where": f"{store.uri}/{run}", "status": f"refused: {exc.message}"})
    return rows


def _newest_row(run) -> dict:  # type: ignore[no-untyped-def]
    """The newest checkpoint that parses (a damaged head falls back, like a reader), or the head's damage."""
    from launcher.storage.manifest import Manifest, candidates

    first = None
    for where, found in candidates(run):
        if type(found).__name__ == "StaleHead":
            continue  # not damage: the newer version that follows is what a reader uses
        if isinstance(found, Manifest):
            row = _row(run.uri, found)
            row.pop("_manifest")
            if first is not None:
                row["status"] = f"ok (newest readable; {first['status']})"
            return row
        first = first or _row(run.uri, found)
    return first or {"where": run.uri, "status": "damaged: no manifest readable"}


def _table(rows: list[dict]) -> None:
    from rich.table import Table

    table = Table(box=None)
    columns = [
        c
        for c in ("run", "version", "epoch", "step", "time", "files", "bytes", "status", "where")
        if any(c in r for r in rows)
    ]
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(str(row.get(c, "")) for c in columns))
    console().print(table)


def _report(result) -> None:  # type: ignore[no-untyped-def]
    for line in result.skipped:
        click.echo(line, err=True)


@ckpt.command()
@click.argument("src")
@click.argument("dest", type=click.Path(file_okay=False))
def pull(src: str, dest: str) -> None:
    """Download SRC's newest complete checkpoint into the folder DEST, verified."""
    from launcher.storage import open_store
    from launcher.storage.sync import named, size_text
    from launcher.storage.sync import pull as pull_

    with RichMeter() as meter:
        result = pull_(open_store(resolve(src)), Path(dest), meter, log=lambda _m: None)
    _report(result)
    if result.manifest is None:
        fail(f"No complete checkpoint at {src}.", code=1)
    click.echo(f"{named(result.manifest)} -> {dest}: "
               f"{size_text(result.bytes_received)} downloaded, {result.files_reused} files already there", err=True)  # fmt: skip


@ckpt.command()
@click.argument("src", type=click.Path(exists=True, file_okay=False))
@click.argument("dest")
@click.option("--keep", default=3, show_default=True, help="checkpoints to keep in DEST")
def push(src: str, dest: str, keep: int) -> None:
    """Upload the folder SRC as DEST's newest checkpoint (only changed files are sent)."""
    from launcher.storage import open_store
    from launcher.storage.sync import Pusher

    pusher = Pusher(open_store(dest), Path(src), keep=keep, log=lambda _m: None)
    with RichMeter() as meter:
        manifest = pusher.push(meter)
    if manifest is None:
        fail(f"{src} holds no files to push.", code=1)
    s = pusher.stats
    click.echo(f"checkpoint {manifest.version} at {dest}: {s.files_sent} files ({s.bytes_sent} bytes) sent, "
               f"{s.files_unchanged} unchanged", err=True)  # fmt: skip


@ckpt.command()
@click.argument("src")
@click.argument("dest")
@click.option("--keep", default=3, show_default=True, help="checkpoints to keep in DEST")
def cp(src: str, dest: str, keep: int) -> None:
    """Copy SRC's newest complete checkpoint to DEST (any store to any store), verified."""
    from launcher.storage import open_store
    from launcher.storage.sync import copy, named

    with RichMeter() as meter:
        result = copy(open_store(resolve(src)), open_store(dest), keep=keep, meter=meter, log=lambda _m: None)
    _report(result)
    click.echo(f"copied {named(result.manifest)} to {dest}", err=True)
