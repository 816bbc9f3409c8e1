"""`launch image build|ls`: build the training image, push it to cloud registries."""

from __future__ import annotations

import click

from launcher.cli.base import echo_json, main

__all__ = ["image", "build", "ls"]


@main.group()
def image() -> None:
    """Build the training image and push it where backends can pull it."""


@image.command()
@click.option("--tag", "-t", default=None, help="local image tag (default: the spec's default image)")
@click.option(
    "--file", "dockerfile", default=None, help="Dockerfile, relative to the context (default: images/Dockerfile)"
)
@click.option(
    "--context",
    type=click.Path(file_okay=False, exists=True),
    default=None,
    help="build context (default: the repository)",
)
@click.option("--push", is_flag=True, help="push the built image through each backend given with -b")
@click.option("-b", "--backend", "backends", multiple=True, metavar="NAME", help="backend to push to (aws, gcp, azure)")
@click.option("--build-arg", "build_args", multiple=True, metavar="KEY=VALUE", help="Dockerfile ARG value; repeatable")
@click.option(
    "--requirements",
    "requirements",
    type=click.Path(dir_okay=False, exists=True),
    default=None,
    help="instead: the training image (--from) plus these packages, for a program of your own",
)
@click.option(
    "--engine",
    "engine",
    type=click.Choice(["ultralytics"]),
    default=None,
    help="the training image plus a trainer engine (ultralytics: AGPL-3.0), tagged torch-launcher-train:ENGINE",
)
@click.option(
    "--from",
    "base",
    default=None,
    help="with --requirements or --engine: the image to add to (default: the training image)",
)
@click.option("--quiet", "-q", is_flag=True, help="do not print build progress")
@click.option("--json", "as_json", is_flag=True, help="machine-readable result")
def build(
    tag: str | None, dockerfile: str | None, context: str | None, push: bool, backends: tuple[str, ...],
    build_args: tuple[str, ...], requirements: str | None, engine: str | None, base: str | None, quiet: bool,
    as_json: bool,
) -> None:  # fmt: skip
    """Build images/Dockerfile with the local Docker engine (and optionally push it).

    With --requirements FILE: an image derived from the training image with FILE's packages installed,
    tagged torch-launcher-train:req-<hash of FILE> unless --tag names it. With --engine ultralytics: the
    training image plus Ultralytics (AGPL-3.0) for train.engine: ultralytics, tagged
    torch-launcher-train:ultralytics."""
    from pathlib import Path

    from launcher.backends import registry
    from launcher.cli.base import fail
    from launcher.spec import DEFAULT_IMAGE
    from launcher.staging import image as images

    if push and not backends:
        fail("--push needs at least one backend: add -b aws, -b gcp or -b azure.")
    bad = [arg for arg in build_args if "=" not in arg]
    if bad:
        fail(f"--build-arg {bad[0]!r} is not KEY=VALUE.")
    if (requirements or engine) and (dockerfile or context):
        fail(
            f"--{'requirements' if requirements else 'engine'} builds its own small Dockerfile: drop --file and --context."
        )
    if requirements and engine:
        fail("--requirements and --engine are two images: build the engine image, then --requirements --from it.")
    progress = (lambda line: None) if quiet else (lambda line: click.echo(line, err=True))
    args = dict(arg.split("=", 1) for arg in build_args)
    if engine:
        tag, image_id = images.build_engine(engine, tag, base or DEFAULT_IMAGE, progress=progress, buildargs=args)
    elif requirements:
        import hashlib

        tag = (
            tag
            or f"{DEFAULT_IMAGE.split(':')[0]}:req-{hashlib.sha256(Path(requirements).read_bytes()).hexdigest()[:12]}"
        )
        image_id = images.build_with_requirements(
            tag, Path(requirements), base or DEFAULT_IMAGE, progress=progress, buildargs=args
        )
    else:
        tag = tag or DEFAULT_IMAGE
        image_id = images.build(tag, Path(context) if context else images.REPO, dockerfile or images.DOCKERFILE,
                                progress=progress, buildargs=args)  # fmt: skip
    click.echo(f"built {tag} ({image_id[:19]})", err=True)
    pushed = {}
    for name in backends if push else ():
        click.echo(f"pushing {tag} to {name} ...", err=True)
        pushed[name] = images.push(registry.create(name), tag)
        click.echo(f"pushed {pushed[name]}", err=True)
    if as_json:
        echo_json({"tag": tag, "id": image_id, "pushed": pushed})


@image.command(name="ls")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def ls(as_json: bool) -> None:
    """Show the image references last pushed for each backend."""
    from launcher.staging import image as images

    pushed = images.pushed_images()
    if as_json:
        echo_json(pushed)
        return
    if not pushed:
        click.echo("no image pushed yet: launch image build --push -b aws|gcp|azure", err=True)
    for backend, entry in sorted(pushed.items()):
        click.echo(f"{backend}\t{entry['ref']}\t(from {entry['local']})")
