#!/usr/bin/env bash
# Start the Docker engine in the background (CI machines have no init system)
# and wait until it answers. Falls back to the vfs storage driver where
# overlayfs is not available (nested containers). Only the engine started
# here is ever stopped (by its PID, recorded in /tmp/dockerd.pid).
set -euo pipefail
if docker info >/dev/null 2>&1; then echo "docker engine already running"; exit 0; fi
PIDFILE=/tmp/dockerd.pid
start() {
  nohup dockerd "$@" >/tmp/dockerd.log 2>&1 &
  echo $! >"$PIDFILE"
  for _ in $(seq 1 60); do
    if docker info >/dev/null 2>&1; then return 0; fi
    if ! kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then return 1; fi
    sleep 1
  done
  return 1
}
stop_ours() {
  local pid; pid="$(cat "$PIDFILE" 2>/dev/null || true)"
  [ -n "$pid" ] || return 0
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.5; done
  kill -9 "$pid" 2>/dev/null || true
}
if ! start; then
  echo "dockerd failed with the default storage driver; retrying with vfs" >&2
  stop_ours
  start --storage-driver vfs || { tail -30 /tmp/dockerd.log >&2; exit 1; }
fi
docker info --format 'docker {{.ServerVersion}}, storage driver {{.Driver}}'
