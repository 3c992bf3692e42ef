#!/usr/bin/env bash
# A Docker engine for the container tests (tests/deploy/test_containers.py): Debian's
# docker.io, started by hand (no init system here) and left running. Idempotent: does
# nothing when `docker info` already answers.
# Debian has no buildx plugin, so builds use the legacy builder: export DOCKER_BUILDKIT=0.
# NICE (default 19): the daemon, and so every build and container, runs at low priority,
# beside whatever else the machine is doing (a training run on a developer's machine).
set -euo pipefail
log=${FER_DOCKERD_LOG:-/var/log/fer-dockerd.log}
if docker info >/dev/null 2>&1; then
  echo "engine: running ($(docker version -f '{{.Server.Version}}'))"
  exit 0
fi
if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io debootstrap >/dev/null
fi
# setsid: the daemon outlives this script (CI ends it with the machine's other processes).
nice -n "${NICE:-19}" setsid dockerd >>"$log" 2>&1 </dev/null &
for _ in $(seq 60); do
  if docker info >/dev/null 2>&1; then
    echo "engine: started ($(docker version -f '{{.Server.Version}}'), log $log)"
    exit 0
  fi
  sleep 1
done
echo "engine: dockerd did not answer within 60 s; last lines of $log:" >&2
tail -n 30 "$log" >&2
exit 1
