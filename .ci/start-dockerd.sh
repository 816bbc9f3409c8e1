#!/usr/bin/env bash
# Start the Docker engine in the background (CI machines have no init system)
# and wait until it answers. Falls back to the vfs storage driver where
# overlayfs is not available (nested containers).
set -euo pipefail
if docker info >/dev/null 2>&1; then echo "docker engine already running"; exit 0; fi
start() {
  nohup dockerd "$@" >/tmp/dockerd.log 2>&1 &
  for _ in $(seq 1 60); do
    if docker info >/dev/null 2>&1; then return 0; fi
    if ! kill -0 $! 2>/dev/null; then return 1; fi
    sleep 1
  done
  return 1
}
if ! start; then
  echo "dockerd failed with the default storage driver; retrying with vfs" >&2
  pkill dockerd || true; sleep 2
  start --storage-driver vfs || { tail -30 /tmp/dockerd.log >&2; exit 1; }
fi
docker info --format 'docker {{.ServerVersion}}, storage driver {{.Driver}}'
