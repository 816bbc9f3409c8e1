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
# 5. With ENGINES=ultralytics, also the engine variant on top (`launch image build --engine ultralytics`,
#    tagged torch-launcher-train:ultralytics), from the same wheelhouse: PYTHON's environment must hold
#    the engine's extra (pip install '.[ultralytics]'), so its wheels are downloaded.
#
# Environment: LAUNCHER_BASE_IMAGE, LAUNCHER_WHEELHOUSE, EXTRAS (train,aws,gcp,azure), ENGINES (none),
# PYTHON (the python whose pip downloads the wheels, ideally the project's own venv with the
# extras installed: its pinned versions are downloaded; default python3),
# LAUNCH (the `launch` command; default: the one on PATH).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TAG="${1:-torch-launcher-train:latest}"
BASE="${LAUNCHER_BASE_IMAGE:-torch-launcher-base:bookworm}"
WHEELS="${LAUNCHER_WHEELHOUSE:-$ROOT/.ci/cache/wheels}"
EXTRAS="${EXTRAS:-train,aws,gcp,azure}"
ENGINES="${ENGINES:-}"
PYTHON="${PYTHON:-python3}"
LAUNCH="${LAUNCH:-launch}"
log() { printf 'build-offline: %s (%ss)\n' "$*" "$SECONDS"; }

"$ROOT/.ci/docker-base.sh" "$BASE"

log "wheels for [$EXTRAS] into $WHEELS"
mkdir -p "$WHEELS"
# The exact versions PYTHON's environment already resolved, when it holds the extras (CI's test venv
# does): downloading those pins with --no-deps never re-resolves against an index that moved since
# (a fresh resolution has failed here on a half-published release). Otherwise resolve the extras.
# The project itself is not downloaded: the image installs it from the build context.
if "$PYTHON" -c "import torch, torchvision, boto3, google.cloud.storage, azure.storage.blob" 2>/dev/null; then
    "$PYTHON" -m pip freeze --exclude-editable 2>/dev/null | grep -v -e '^torch-launcher' -e '^#' -e ' @ ' >"$WHEELS/requirements.txt"
    WANT=(--no-deps -r "$WHEELS/requirements.txt")
else
    WANT=("$ROOT[$EXTRAS]")
fi
"$PYTHON" -m pip download -q --disable-pip-version-check -d "$WHEELS" "${WANT[@]}" 'setuptools>=68' wheel 2>&1 \
    | { grep -v '^WARNING: Location' || true; }  # pip's notes about find-links folders this machine lacks
rm -f "$WHEELS"/torch_launcher-*
# Ultralytics asks for opencv-python, which the engine image installs and then replaces by the headless
# build; a headless machine's environment (CI's) holds only opencv-python-headless, so pip freeze leaves
# opencv-python out and the image's resolution found none. Take the release the headless build has.
if [[ ",$ENGINES," == *",ultralytics,"* && -f "$WHEELS/requirements.txt" ]] \
        && ! grep -qi '^opencv-python==' "$WHEELS/requirements.txt"; then
    CV="$(grep -i '^opencv-python-headless==' "$WHEELS/requirements.txt" | cut -d= -f3)"
    "$PYTHON" -m pip download -q --disable-pip-version-check --no-deps -d "$WHEELS" "opencv-python${CV:+==$CV}" 2>&1 \
        | { grep -v '^WARNING: Location' || true; }
fi

ADDR="$(ip -4 -o addr show docker0 | awk '{print $4}' | cut -d/ -f1)"
[ -n "$ADDR" ] || { echo "build-offline: no docker0 bridge address (is dockerd running?)" >&2; exit 1; }
# A fixed port: PIP_ARGS names it, and a changed build argument would invalidate the cached
# dependency layer (gigabytes) on every build.
PORT="${LAUNCHER_WHEELHOUSE_PORT:-38765}"
if "$PYTHON" -c "import socket, sys; s = socket.socket(); sys.exit(s.connect_ex(('$ADDR', $PORT)) != 0)"; then
    echo "build-offline: port $PORT on $ADDR is taken; set LAUNCHER_WHEELHOUSE_PORT to a free one" >&2
    exit 1
fi
"$PYTHON" -m http.server "$PORT" --bind "$ADDR" --directory "$WHEELS" >/dev/null 2>&1 &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null || true' EXIT
for _ in $(seq 1 50); do
    "$PYTHON" -c "import urllib.request; urllib.request.urlopen('http://$ADDR:$PORT/', timeout=1)" 2>/dev/null && break
    sleep 0.2
done
log "wheelhouse served at http://$ADDR:$PORT/"

PIP_ARGS="--no-index --find-links http://$ADDR:$PORT/ --trusted-host $ADDR"
size() {
    docker image inspect "$1" --format 'build-offline: {{.Id}} {{.Size}} bytes' \
        | awk '{printf "%s %s %.2f GB\n", $1, substr($2, 1, 19), $3 / 1e9}'
}
log "building $TAG from images/Dockerfile on $BASE"
"$LAUNCH" image build --tag "$TAG" --context "$ROOT" \
    --build-arg "BASE_IMAGE=$BASE" \
    --build-arg "EXTRAS=$EXTRAS" \
    --build-arg "PIP_ARGS=$PIP_ARGS"
size "$TAG"
for engine in ${ENGINES//,/ }; do
    log "building the $engine engine image on $TAG"
    "$LAUNCH" image build --engine "$engine" --from "$TAG" --tag "${TAG%%:*}:$engine" --build-arg "PIP_ARGS=$PIP_ARGS"
    size "${TAG%%:*}:$engine"
done
log "done"
