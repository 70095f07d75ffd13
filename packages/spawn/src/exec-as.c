/*
 * tether-exec-as UID GID GROUPS PROGRAM [ARG...]
 *
 * Sets the supplementary groups (GROUPS: comma-separated gids, may be empty), the gid and
 * the uid, then execs PROGRAM (searched in PATH as execvp does) with argv PROGRAM ARG...
 * For children the agent does not spawn itself: node-pty forks its PTY children, and sets
 * only uid and gid there (root's groups would stay). Linked statically, so it runs in any
 * image (busybox, musl, no shell) without the image's own setpriv or su.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_GROUPS 65536

static int fail(const char *what, const char *detail) {
  fprintf(stderr, "tether-exec-as: %s: %s\n", what, detail);
  return 127;
}

/* An id from 0 to 2^32-2 (2^32-1 is "no change" to the kernel), or -1. */
static long long parse_id(const char *text, const char **end) {
  char *stop;
  errno = 0;
  if (*text < '0' || *text > '9') return -1;
  unsigned long long id = strtoull(text, &stop, 10);
  if (errno || id > 0xfffffffeULL) return -1;
  *end = stop;
  return (long long)id;
}

int main(int argc, char **argv) {
  if (argc < 5) return fail("usage", "tether-exec-as UID GID GROUPS PROGRAM [ARG...]");
  const char *end;
  long long uid = parse_id(argv[1], &end);
  if (uid < 0 || *end) return fail("bad uid", argv[1]);
  long long gid = parse_id(argv[2], &end);
  if (gid < 0 || *end) return fail("bad gid", argv[2]);
  static gid_t groups[MAX_GROUPS];
  size_t ngroups = 0;
  for (const char *p = argv[3]; *p;) {
    long long group = parse_id(p, &end);
    if (group < 0 || (*end && *end != ',') || ngroups == MAX_GROUPS) return fail("bad groups", argv[3]);
    groups[ngroups++] = (gid_t)group;
    p = *end ? end + 1 : end;
  }
  if (setgroups(ngroups, groups) < 0) return fail("setgroups", strerror(errno));
  if (setgid((gid_t)gid) < 0) return fail("setgid", strerror(errno));
  if (setuid((uid_t)uid) < 0) return fail("setuid", strerror(errno));
  execvp(argv[4], argv + 4);
  int err = errno;
  fprintf(stderr, "tether-exec-as: %s: %s\n", argv[4], strerror(err));
  return err == ENOENT ? 127 : 126;
}
