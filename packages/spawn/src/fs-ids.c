/*
 * withFsIds(uid, gid, groups, fn): calls fn() with the calling thread's filesystem ids and
 * supplementary groups set to a user's, then restores them, also when fn throws.
 *
 * A root agent acting for a user must reach files with that user's rights: a link the user
 * planted in their home must not make root replace, chown or remove what it points to.
 * setfsuid/setfsgid change the ids the kernel checks file access with, for this thread
 * only, and leaving fsuid 0 drops the thread's file capabilities (CAP_DAC_OVERRIDE,
 * CAP_FOWNER, CAP_CHOWN...) until it is back; files it creates belong to the user.
 * Node's synchronous fs calls run on the calling thread, so fn uses those; its async ones
 * run on libuv's pool and would not see the ids.
 *
 * Raw system calls: glibc's setgroups (and setresuid) signal every thread of the process to
 * change all of them, and other threads of the agent must keep their rights. gVisor has no
 * setfsuid: there the thread's effective ids are switched instead (see ids_mode).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <node_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

gid_t *get_id_array(napi_env env, napi_value value, int *count);

static napi_value throw_ids_error(napi_env env, const char *what, int err) {
  napi_value msg, error, errno_value, syscall_value;
  char text[160];
  snprintf(text, sizeof text, "cannot act with the user's file rights (%s: %s)", what, strerror(err));
  napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &msg);
  napi_create_error(env, NULL, msg, &error);
  napi_create_int32(env, -err, &errno_value);
  napi_set_named_property(env, error, "errno", errno_value);
  napi_create_string_utf8(env, what, NAPI_AUTO_LENGTH, &syscall_value);
  napi_set_named_property(env, error, "syscall", syscall_value);
  napi_throw(env, error);
  return NULL;
}

/*
 * How this kernel lets one thread take a user's ids: fsuid/fsgid, or where there is no
 * setfsuid (gVisor) the thread's effective ids, set with the real and saved ones left at
 * root's so it can come back (which also drops, then restores, its capabilities).
 */
static enum { IDS_UNKNOWN, IDS_FS, IDS_EFFECTIVE } ids_mode = IDS_UNKNOWN;

/* setfsuid/setfsgid answer the previous id and never fail visibly: an invalid id reads it back. */
static uid_t current_fsuid(void) { return (uid_t)syscall(SYS_setfsuid, (uid_t)-1); }
static gid_t current_fsgid(void) { return (gid_t)syscall(SYS_setfsgid, (gid_t)-1); }

static uid_t current_euid(void) {
  uid_t r, e, s;
  return syscall(SYS_getresuid, &r, &e, &s) < 0 ? (uid_t)-1 : e;
}

static gid_t current_egid(void) {
  gid_t r, e, s;
  return syscall(SYS_getresgid, &r, &e, &s) < 0 ? (gid_t)-1 : e;
}

/* This thread's ids for file access now: what `restore` goes back to. */
static void current_ids(uid_t *uid, gid_t *gid) {
  *uid = ids_mode == IDS_EFFECTIVE ? current_euid() : current_fsuid();
  *gid = ids_mode == IDS_EFFECTIVE ? current_egid() : current_fsgid();
}

/* Sets ids (groups already set); true when the kernel took them. */
static int take_ids(uid_t uid, gid_t gid) {
  if (ids_mode == IDS_EFFECTIVE) {
    if (syscall(SYS_setresgid, (gid_t)-1, gid, (gid_t)-1) < 0) return 0;
    if (syscall(SYS_setresuid, (uid_t)-1, uid, (uid_t)-1) < 0) return 0;
    return current_euid() == uid && current_egid() == gid;
  }
  syscall(SYS_setfsgid, gid);
  syscall(SYS_setfsuid, uid);
  return current_fsuid() == uid && current_fsgid() == gid;
}

/* Back to the agent's own rights; a thread left with a user's must not go on running. */
static void restore(uid_t uid, gid_t gid, gid_t *groups, int ngroups) {
  uid_t now_uid;
  gid_t now_gid;
  /* The uid first: it brings back the capabilities that setting the gid and groups needs. */
  if (ids_mode == IDS_EFFECTIVE) {
    syscall(SYS_setresuid, (uid_t)-1, uid, (uid_t)-1);
    syscall(SYS_setresgid, (gid_t)-1, gid, (gid_t)-1);
  } else {
    syscall(SYS_setfsuid, uid);
    syscall(SYS_setfsgid, gid);
  }
  current_ids(&now_uid, &now_gid);
  if (syscall(SYS_setgroups, ngroups, groups) < 0 || now_uid != uid || now_gid != gid) abort();
}

napi_value with_fs_ids(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  napi_valuetype fn_type = napi_undefined;
  if (argc == 4) napi_typeof(env, argv[3], &fn_type);
  if (fn_type != napi_function) {
    napi_throw_type_error(env, NULL, "withFsIds(uid, gid, groups, fn) expects four arguments");
    return NULL;
  }
  int64_t uid = -1, gid = -1;
  napi_get_value_int64(env, argv[0], &uid);
  napi_get_value_int64(env, argv[1], &gid);
  if (uid < 0 || uid > 0xfffffffe || gid < 0 || gid > 0xfffffffe) {
    napi_throw_type_error(env, NULL, "uid and gid must be ids from 0 to 2^32-2");
    return NULL;
  }
  int ngroups = 0;
  gid_t *groups = get_id_array(env, argv[2], &ngroups);
  if (!groups) return NULL;

  napi_value result = NULL;
  int nsaved = (int)syscall(SYS_getgroups, 0, NULL);
  gid_t *saved = malloc((nsaved > 0 ? nsaved : 1) * sizeof *saved);
  if (nsaved < 0 || !saved || syscall(SYS_getgroups, nsaved, saved) != nsaved) {
    throw_ids_error(env, "getgroups", nsaved < 0 ? errno : ENOMEM);
    goto done;
  }
  /* Linux answers the fsuid (never -1); gVisor fails the call. */
  if (ids_mode == IDS_UNKNOWN) ids_mode = syscall(SYS_setfsuid, (uid_t)-1) < 0 ? IDS_EFFECTIVE : IDS_FS;
  uid_t own_uid;
  gid_t own_gid;
  current_ids(&own_uid, &own_gid);
  if (syscall(SYS_setgroups, ngroups, groups) < 0) {
    throw_ids_error(env, "setgroups", errno);
    goto done;
  }
  if (!take_ids((uid_t)uid, (gid_t)gid)) {
    /* An id the kernel will not take (one a user namespace does not map). */
    restore(own_uid, own_gid, saved, nsaved);
    throw_ids_error(env, ids_mode == IDS_EFFECTIVE ? "setresuid" : "setfsuid", EPERM);
    goto done;
  }
  napi_value global;
  napi_get_global(env, &global);
  /* An exception fn threw stays pending and reaches the caller once we return. */
  if (napi_call_function(env, global, argv[3], 0, NULL, &result) != napi_ok) result = NULL;
  restore(own_uid, own_gid, saved, nsaved);
done:
  free(groups);
  free(saved);
  return result;
}
