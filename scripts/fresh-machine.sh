#!/usr/bin/env bash
# Runs a command as on a fresh machine with only Node and npm, e.g.
#   bash scripts/fresh-machine.sh npm test
# In a private mount namespace (root needed), overlays hide docker, bwrap, podman, runsc, chromium, qemu,
# python3's grpc module and the engines' sockets, and DOCKER_HOST points at nothing.
# Nothing outside the namespace changes: what others run on this machine keeps them.
set -euo pipefail
ov=$(mktemp -d /var/tmp/fresh-machine.XXXXXX)
trap 'rm -rf "$ov"' EXIT
hide() { # DIR NAMES...: DIR without NAMES (overlay whiteouts), its own mode kept
  local dir=$1 key
  shift
  key=$(echo "$dir" | tr / _)
  mkdir -p "$ov/$key/upper" "$ov/$key/work"
  chmod --reference="$dir" "$ov/$key/upper"
  chown --reference="$dir" "$ov/$key/upper"
  for name in "$@"; do mknod "$ov/$key/upper/$name" c 0 0; done
  mount -t overlay overlay -o "lowerdir=$dir,upperdir=$ov/$key/upper,workdir=$ov/$key/work" "$dir"
}
export -f hide
export ov
unshare -m bash -c '
  set -euo pipefail
  mount --make-rprivate /
  hide /usr/bin bwrap podman runsc docker chromium qemu-system-x86_64 qemu-img
  [ -e /usr/local/bin/docker ] && hide /usr/local/bin docker
  [ -d /usr/lib/python3/dist-packages/grpc ] && hide /usr/lib/python3/dist-packages grpc
  hide /run docker.sock
  [ -e /tmp/podman.sock ] && hide /tmp podman.sock
  export DOCKER_HOST=unix:///nonexistent
  "$@"
' fresh-machine "$@"
