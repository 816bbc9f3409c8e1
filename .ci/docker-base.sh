#!/usr/bin/env bash
# Make the Docker base image offline: no image registry is reachable from CI,
# so we debootstrap a minimal Debian bookworm rootfs (Python 3.11, the same
# glibc as the host) and `docker import` it. debootstrap picks its own default
# mirror; set DEBIAN_MIRROR to use another one.
#
#   .ci/docker-base.sh [IMAGE]        default IMAGE: torch-launcher-base:bookworm
#
# IMAGE is the rootfs plus a virtual environment at /opt/venv on PATH, so
# `python -m pip` works as in the usual Python base images (images/Dockerfile
# needs that); the bare rootfs stays tagged IMAGE-rootfs.
#
# Cache-friendly: an existing image is kept; otherwise the rootfs tarball in
# .ci/cache/ (keyed by the package list) is imported without re-running
# debootstrap. Needs root, debootstrap and a running Docker engine.
set -euo pipefail

IMAGE="${1:-${LAUNCHER_BASE_IMAGE:-torch-launcher-base:bookworm}}"
SUITE=bookworm
MIRROR="${DEBIAN_MIRROR:-}"  # empty: debootstrap's own default
# python3.11 (python3-venv brings ensurepip, for installing wheels into an image)
# + the shared libraries a host-built CPython and torch wheels load.
PACKAGES="ca-certificates,python3.11,python3-venv,libssl3,libffi8,libsqlite3-0,libbz2-1.0,liblzma5,libreadline8,libgomp1,procps"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="${LAUNCHER_CI_CACHE:-$ROOT/.ci/cache}"
KEY="$(printf '%s %s %s' "$SUITE" "$MIRROR" "$PACKAGES" | sha256sum | cut -c1-12)"
TARBALL="$CACHE/debian-$SUITE-$KEY.tar"

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
    echo "docker-base: $IMAGE already exists"
    exit 0
fi

if [ ! -s "$TARBALL" ]; then
    mkdir -p "$CACHE"
    WORK="$(mktemp -d)"
    trap 'rm -rf "$WORK"' EXIT
    echo "docker-base: debootstrap $SUITE into $WORK/rootfs (a few minutes)"
    debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$WORK/rootfs" ${MIRROR:+"$MIRROR"} >"$WORK/debootstrap.log" 2>&1 \
        || { tail -30 "$WORK/debootstrap.log"; tail -30 "$WORK/rootfs/debootstrap/debootstrap.log" 2>/dev/null; exit 1; }
    # Keep the image small: apt lists and downloaded .debs are not needed at run time.
    rm -rf "$WORK/rootfs/var/cache/apt/archives/"*.deb "$WORK/rootfs/var/lib/apt/lists/"*
    tar -C "$WORK/rootfs" -cf "$TARBALL.tmp" .
    mv "$TARBALL.tmp" "$TARBALL"
fi

echo "docker-base: importing $TARBALL as $IMAGE-rootfs"
docker import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/bin/bash"]' \
    "$TARBALL" "$IMAGE-rootfs" >/dev/null
printf 'FROM %s\nRUN python3 -m venv /opt/venv\nENV PATH=/opt/venv/bin:$PATH VIRTUAL_ENV=/opt/venv\n' "$IMAGE-rootfs" \
    | docker build -q -t "$IMAGE" - >/dev/null
echo "docker-base: $IMAGE ready"
