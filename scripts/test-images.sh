#!/usr/bin/env bash
# Builds the local test images (no registry can be reached here): each is imported from
# a root filesystem made on this machine. Existing images are kept.
set -euo pipefail

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

# tether-test/busybox: busybox-static and its applet links, nothing else.
build_busybox() {
  local root
  root=$(mktemp -d)
  chmod 755 "$root"
  mkdir -p "$root"/{bin,tmp,etc,root,proc,sys,dev}
  chmod 1777 "$root/tmp"
  cp /bin/busybox "$root/bin/busybox"
  # Relative links: `busybox --install -s` would point at /usr/bin/busybox, absent here.
  for applet in $(/bin/busybox --list); do
    [ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
  tar -C "$root" -c . | docker import -c 'ENV PATH=/bin' -c 'CMD ["/bin/sh"]' - tether-test/busybox >/dev/null
  rm -rf "$root"
}

if ! have_image tether-test/busybox; then
  echo "building tether-test/busybox"
  build_busybox
fi
docker image ls --filter reference='tether-test/*' --format '{{.Repository}}:{{.Tag}} {{.Size}}'
