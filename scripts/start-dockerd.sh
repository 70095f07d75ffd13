#!/usr/bin/env bash
# Starts dockerd in the background (log in /tmp/dockerd.log) unless one already answers.
# When gVisor's runsc is installed, registers it as the runtime "runsc" in
# /etc/docker/daemon.json first (merged into what is there) and makes a running dockerd
# reload its configuration (SIGHUP: runtimes are reloadable).
set -euo pipefail

DAEMON_JSON=/etc/docker/daemon.json

# Registers runsc; prints "changed" when daemon.json was rewritten. --host-uds=create lets
# the agent's unix socket in a bind-mounted directory be a real host socket: without it the
# socket lives inside gVisor only, and a sandbox with --network none could not be reached.
register_runsc() {
  local runsc
  runsc=$(command -v runsc) || return 0
  mkdir -p "$(dirname "$DAEMON_JSON")"
  node - "$DAEMON_JSON" "$runsc" <<'JS'
const fs = require("node:fs");
const [file, runsc] = process.argv.slice(2);
let config = {};
try { config = JSON.parse(fs.readFileSync(file, "utf8")); } catch (err) { if (err.code !== "ENOENT") throw err; }
const want = { path: runsc, runtimeArgs: ["--network=none", "--host-uds=create"] };
if (JSON.stringify(config.runtimes?.runsc) === JSON.stringify(want)) process.exit(0);
config.runtimes = { ...config.runtimes, runsc: want };
fs.writeFileSync(`${file}.tmp`, `${JSON.stringify(config, null, 2)}\n`);
fs.renameSync(`${file}.tmp`, file);
console.log("changed");
JS
}

changed=$(register_runsc)

if docker info >/dev/null 2>&1; then
  if [ "$changed" = changed ]; then
    pid=$(cat /var/run/docker.pid)
    kill -HUP "$pid"
    for _ in $(seq 1 30); do
      docker info --format '{{json .Runtimes}}' | grep -q '"runsc"' && break
      sleep 1
    done
    echo "dockerd already running; reloaded $DAEMON_JSON (runsc registered)"
  else
    echo "dockerd already running"
  fi
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
