#!/usr/bin/env bash
# Starts dockerd in the background (log in /tmp/dockerd.log) unless one already answers.
set -euo pipefail
if docker info >/dev/null 2>&1; then
  echo "dockerd already running"
  exit 0
fi
if ! command -v dockerd >/dev/null; then
  echo "dockerd is not installed (apt-get install docker.io)" >&2
  exit 1
fi
nohup dockerd >/tmp/dockerd.log 2>&1 &
for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then
    echo "dockerd is up"
    exit 0
  fi
  sleep 1
done
echo "dockerd did not come up in 60 s; last log lines:" >&2
tail -n 30 /tmp/dockerd.log >&2
exit 1
