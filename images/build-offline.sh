#!/usr/bin/env bash
# Build images/Dockerfile on a machine that reaches no image registry and whose
# containers reach no package index (CI, air-gapped workstations):
#
#   images/build-offline.sh [TAG]          default TAG: torch-launcher-train:latest
#
# 1. Base: .ci/docker-base.sh (a debootstrapped Debian bookworm with Python 3.11
#    and a venv at /opt/venv; made once, then cached).
# 2. Wheels: this machine's pip downloads every wheel the image needs into a
#    wheelhouse (default .ci/cache/wheels; pip takes what its own configuration
#    allows, e.g. torch from a local wheel folder). Kept between runs.
# 3. The wheelhouse is served over HTTP on the docker0 bridge address only (never
#    0.0.0.0), for the duration of the build, and the build installs from it with
#    `--no-index --find-links`.
# 4. `launch image build` builds images/Dockerfile unchanged, with BASE_IMAGE and
#    PIP_ARGS as build arguments.
#
# Environment: LAUNCHER_BASE_IMAGE, LAUNCHER_WHEELHOUSE, EXTRAS (train,aws,gcp,azure),
# PYTHON (the python whose pip downloads the wheels; default python3),
# LAUNCH (the `launch` command; default: the one on PATH).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TAG="${1:-torch-launcher-train:latest}"
BASE="${LAUNCHER_BASE_IMAGE:-torch-launcher-base:bookworm}"
WHEELS="${LAUNCHER_WHEELHOUSE:-$ROOT/.ci/cache/wheels}"
EXTRAS="${EXTRAS:-train,aws,gcp,azure}"
PYTHON="${PYTHON:-python3}"
LAUNCH="${LAUNCH:-launch}"
log() { printf 'build-offline: %s (%ss)\n' "$*" "$SECONDS"; }

"$ROOT/.ci/docker-base.sh" "$BASE"

log "wheels for [$EXTRAS] into $WHEELS"
mkdir -p "$WHEELS"
# the project's own dependencies only: the project itself is installed from the build context
"$PYTHON" -m pip download -q --disable-pip-version-check -d "$WHEELS" "$ROOT[$EXTRAS]" 'setuptools>=68' wheel 2>&1 \
    | { grep -v '^WARNING: Location' || true; }  # pip's notes about find-links folders this machine lacks
rm -f "$WHEELS"/torch_launcher-*  # pip download also packs the project; the image takes it from source

ADDR="$(ip -4 -o addr show docker0 | awk '{print $4}' | cut -d/ -f1)"
[ -n "$ADDR" ] || { echo "build-offline: no docker0 bridge address (is dockerd running?)" >&2; exit 1; }
PORT="$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("", 0)); print(s.getsockname()[1])')"
"$PYTHON" -m http.server "$PORT" --bind "$ADDR" --directory "$WHEELS" >/dev/null 2>&1 &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null || true' EXIT
for _ in $(seq 1 50); do
    "$PYTHON" -c "import urllib.request; urllib.request.urlopen('http://$ADDR:$PORT/', timeout=1)" 2>/dev/null && break
    sleep 0.2
done
log "wheelhouse served at http://$ADDR:$PORT/"

log "building $TAG from images/Dockerfile on $BASE"
"$LAUNCH" image build --tag "$TAG" --context "$ROOT" \
    --build-arg "BASE_IMAGE=$BASE" \
    --build-arg "EXTRAS=$EXTRAS" \
    --build-arg "PIP_ARGS=--no-index --find-links http://$ADDR:$PORT/ --trusted-host $ADDR"
docker image inspect "$TAG" --format 'build-offline: {{.Id}} {{.Size}} bytes' \
    | awk '{printf "%s %s %.2f GB\n", $1, substr($2, 1, 19), $3 / 1e9}'
log "done"
