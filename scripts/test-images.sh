#!/usr/bin/env bash
# Builds the local test images (no registry can be reached here): each is imported from
# a root filesystem made on this machine. Existing images are kept.
#   tether-test/busybox  busybox-static and its applet links
#   tether-test/musl     busybox-static plus Debian's musl (the musl loader), no glibc at all
#   tether-test/debian   Debian bookworm minbase from debootstrap (rootfs cached in .ci/cache/)
#   tether-test/noshell  one static binary, /hello, and /etc/passwd: no shell, no libc
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE=.ci/cache
have_image() { docker image inspect "$1" >/dev/null 2>&1; }

# An empty root filesystem dir: mode 755 (mktemp makes 0700), /tmp sticky, root and nobody users.
new_root() {
  local root
  root=$(mktemp -d)
  chmod 755 "$root"
  mkdir -p "$root"/{tmp,etc,root,proc,sys,dev}
  chmod 1777 "$root/tmp"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
  echo "$root"
}

add_busybox() {
  local root=$1
  mkdir -p "$root/bin"
  cp /bin/busybox "$root/bin/busybox"
  # Relative links: `busybox --install -s` would point at /usr/bin/busybox, absent here.
  for applet in $(/bin/busybox --list); do
    [ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"
  done
}

# hello: prints "hello" and its arguments; the one program of the shell-less image.
hello_c() {
  cat <<'C'
#include <stdio.h>
int main(int argc, char **argv) {
  printf("hello");
  for (int i = 1; i < argc; i++) printf(" %s", argv[i]);
  printf("\n");
  return 0;
}
C
}

# tether-test/busybox: busybox-static and its applet links, nothing else.
build_busybox() {
  local root
  root=$(new_root)
  add_busybox "$root"
  tar -C "$root" -c . | docker import -c 'ENV PATH=/bin' -c 'CMD ["/bin/sh"]' - tether-test/busybox >/dev/null
  rm -rf "$root"
}

# tether-test/musl: busybox plus every file of Debian's musl package; nothing of glibc.
build_musl() {
  local root file
  root=$(new_root)
  add_busybox "$root"
  dpkg -L musl >/dev/null || { echo "the musl package is not installed (apt-get install musl)" >&2; return 1; }
  while IFS= read -r file; do
    # Directories (also /lib, a link to usr/lib on a merged-/usr host) are made as needed.
    [ -d "$file" ] && continue
    mkdir -p "$root$(dirname "$file")"
    cp -a "$file" "$root$file"
  done < <(dpkg -L musl)
  # A program linked against musl (not static), so the image runs musl-dynamic code as real Alpine-like
  # images do: the agent's children must find the image's musl loader, not the bundle's glibc.
  command -v musl-gcc >/dev/null || { echo "musl-gcc is not installed (apt-get install musl-tools)" >&2; return 1; }
  hello_c >"$root/tmp/hello.c"
  musl-gcc -O2 -o "$root/bin/hello-musl" "$root/tmp/hello.c"
  rm "$root/tmp/hello.c"
  if [ ! -e "$root/lib/ld-musl-x86_64.so.1" ]; then
    echo "musl image: /lib/ld-musl-x86_64.so.1 is missing" >&2
    return 1
  fi
  if find "$root" \( -name 'ld-linux*' -o -name 'libc.so.6' \) | grep -q .; then
    echo "musl image: glibc files found" >&2
    return 1
  fi
  tar -C "$root" -c . | docker import -c 'ENV PATH=/bin' -c 'CMD ["/bin/sh"]' - tether-test/musl >/dev/null
  rm -rf "$root"
}

# The Debian mirror apt uses here (deb822 .sources or one-line .list), else deb.debian.org.
debian_mirror() {
  local mirror
  mirror=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null |
    awk '/^URIs:/ {uri=$2} /^Suites:/ && / bookworm( |$)/ && uri !~ /security/ {print uri; exit}')
  if [ -z "$mirror" ]; then
    mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
      awk '$1 == "deb" && $3 == "bookworm" {print $2; exit}')
  fi
  echo "${mirror:-http://deb.debian.org/debian}"
}

# tether-test/debian: debootstrap minbase bookworm; the rootfs tarball is cached.
build_debian() {
  local tarball=$CACHE/debian-bookworm-minbase.tar root mirror
  if [ ! -s "$tarball" ]; then
    command -v debootstrap >/dev/null || { echo "debootstrap is not installed (apt-get install debootstrap)" >&2; return 1; }
    mirror=$(debian_mirror)
    echo "debootstrap bookworm minbase from $mirror"
    root=$(mktemp -d)
    chmod 755 "$root"
    if ! debootstrap --variant=minbase bookworm "$root" "$mirror" >"$root.log" 2>&1; then
      echo "debootstrap failed; last lines of its log:" >&2
      tail -n 30 "$root.log" >&2
      tail -n 30 "$root/debootstrap/debootstrap.log" >&2 2>/dev/null || true
      rm -rf "$root" "$root.log"
      return 1
    fi
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    mkdir -p "$CACHE"
    tar -C "$root" -cf "$tarball.partial" .
    mv "$tarball.partial" "$tarball"
    rm -rf "$root" "$root.log"
  fi
  docker import -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' -c 'CMD ["/bin/bash"]' \
    "$tarball" tether-test/debian >/dev/null
}

# tether-test/noshell: a static C program as /hello and /etc/passwd; nothing that could be a shell.
build_noshell() {
  local root src
  root=$(new_root)
  src=$(mktemp -d)
  hello_c >"$src/hello.c"
  gcc -static -O2 -o "$root/hello" "$src/hello.c"
  rm -rf "$src"
  # No shell: the passwd entries must not name one.
  printf 'root:x:0:0:root:/root:/hello\nnobody:x:65534:65534:nobody:/:/hello\n' >"$root/etc/passwd"
  tar -C "$root" -c . | docker import -c 'CMD ["/hello"]' - tether-test/noshell >/dev/null
  rm -rf "$root"
}

for name in busybox musl debian noshell; do
  if ! have_image "tether-test/$name"; then
    echo "building tether-test/$name"
    SECONDS=0
    "build_$name"
    echo "built tether-test/$name in ${SECONDS}s"
  fi
done
docker image ls --filter reference='tether-test/*' --format '{{.Repository}}:{{.Tag}} {{.Size}}'
