#!/bin/sh
# Installs what `npm run bench`'s baselines need beyond Node.js and Docker (Debian/Ubuntu):
# sshd and ssh for the `ssh -L` tunnel row (the bench starts its own sshd on a loopback
# port with throw-away keys; the system's sshd is neither configured nor started here).
set -eu
if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
if [ ! -x /usr/sbin/sshd ] || ! command -v ssh >/dev/null 2>&1 || ! command -v ssh-keygen >/dev/null 2>&1; then
  $sudo apt-get update
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends openssh-server openssh-client
fi
echo "bench baselines ready: $(/usr/sbin/sshd -V 2>&1 | head -n 1)"
