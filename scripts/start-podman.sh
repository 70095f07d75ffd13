#!/usr/bin/env bash
# Starts Podman's Docker-compatible API service on unix:///tmp/podman.sock (log in
# /tmp/podman-service.log) unless it already answers, and copies the local test images
# from Docker into Podman's own storage (they are kept apart). Needs podman and catatonit
# (Podman's init for HostConfig.Init).
set -euo pipefail
SOCKET=${PODMAN_SOCKET:-/tmp/podman.sock}

if ! command -v podman >/dev/null; then
  echo "podman is not installed (apt-get install podman catatonit)" >&2
  exit 1
fi
answers() { curl -fsS --unix-socket "$SOCKET" http://d/_ping >/dev/null 2>&1; }
if ! answers; then
  # From /: conmon fails ("Failed to get working directory") once the service's cwd is deleted.
  (cd / && nohup podman system service --time=0 "unix://$SOCKET" >/tmp/podman-service.log 2>&1 &)
  for _ in $(seq 1 30); do
    answers && break
    sleep 1
  done
  answers || { echo "podman service did not come up; log:" >&2; tail -n 20 /tmp/podman-service.log >&2; exit 1; }
  echo "podman service is up on $SOCKET"
fi
for image in tether-test/busybox tether-test/noshell; do
  if ! podman image exists "$image" && docker image inspect "$image" >/dev/null 2>&1; then
    docker save "$image" | podman load -q >/dev/null
    echo "copied $image into podman"
  fi
done
