"""`launch data pack|ls`: pack a dataset into streamable shards, and look at a packed one.

launch data pack ./cars s3://bucket/datasets/cars [--shard-size 256MB] [--workers 8] [--dry-run]
launch data ls s3://bucket/datasets/cars            splits, classes, images, shards, bytes
"""

from __future__ import annotations

import click

from launcher.cli.base import echo_json, fail, main

__all__ = ["data"]


@main.group()
def data() -> None:
    """Pack datasets into tar shards that training streams (local path, s3://, gs://, az://)."""


@data.command("pack")
@click.argument("src")
@click.argument("dest")
@click.option("--shard-size", default="256MB", show_default=True, help="target size of one shard (256MB, 1GB, bytes)")
@click.option("--workers", default=8, show_default=True, type=click.IntRange(1, 256), help="files read in parallel")
@click.option("--dry-run", is_flag=True, help="print the plan; write nothing")
def pack_command(src: str, dest: str, shard_size: str, workers: int, dry_run: bool) -> None:
    """Pack an ImageFolder (train/<class>/...) or YOLO dataset (data.yaml, images/, labels/) from SRC into DEST."""
    from launcher.staging.pack import Source, pack, parse_size, plan_pack, print_progress

    size = parse_size(shard_size)
    if dry_run:
        plan = plan_pack(Source(src), size)
        click.echo(plan.describe())
        click.echo(f"would write {len(plan.shards)} shards and index.json to {dest}")
        return
    result = pack(src, dest, size, workers, progress=print_progress, log=lambda m: click.echo(m, err=True))
    if result.files:
        click.echo("", err=True)  # end the progress line
    index = result.index
    samples = ", ".join(f"{split} {index.samples(split)}" for split in index.splits)
    click.echo(f"packed {dest}: {samples} samples in {len(index.shards())} shards ({index.bytes() / 1e6:.1f} MB); "
               f"{result.written} written, {result.reused} kept from an earlier run"
               + (f"; {result.files_per_s:.0f} files/s" if result.files else ""))  # fmt: skip


@data.command("ls")
@click.argument("uri")
@click.option("--json", "as_json", is_flag=True, help="print the index summary as JSON")
def ls_command(uri: str, as_json: bool) -> None:
    """Splits, classes, images, shards and bytes of a packed dataset."""
    from launcher.storage import open_store
    from launcher.storage.shards import read_index

    index = read_index(open_store(uri))
    if index is None:
        fail(f"{uri} holds no packed dataset (no index.json). Pack one with `launch data pack SRC {uri}`.")
    summary = {
        "layout": index.layout,
        "classes": list(index.classes),
        "splits": {
            s: {"samples": index.samples(s), "shards": len(v), "bytes": index.bytes(s)} for s, v in index.splits.items()
        },
        "source": index.source,
    }
    if as_json:
        echo_json(summary)
        return
    click.echo(f"{uri}: {index.layout}, {len(index.classes)} classes ({', '.join(index.classes[:8])}"
               f"{', ...' if len(index.classes) > 8 else ''})")  # fmt: skip
    for split, row in summary["splits"].items():
        click.echo(f"  {split:<6} {row['samples']:>9} images {row['shards']:>6} shards {row['bytes'] / 1e6:>10.1f} MB")
    click.echo(f"  source: {index.source.get('files')} files, {index.source.get('bytes', 0) / 1e6:.1f} MB, "
               f"listing sha256 {str(index.source.get('digest', ''))[:16]}")  # fmt: skip
