/*
 * vfork-style process spawning for Node. libuv on Linux spawns with fork(), which copies
 * the page tables of the whole agent (~100 MB) and then takes copy-on-write faults in
 * the child before execve: ~1.5 ms per exec. clone(CLONE_VM | CLONE_VFORK), as glibc's
 * posix_spawn does, shares the address space instead, so a spawn costs the same however
 * big the agent is.
 *
 *   supported() -> null | reason       pidfd_open is usable here (Linux >= 5.3, no seccomp ban)
 *   spawn(file, argv, envp, cwd, options, onExit)
 *     -> { pid, stdin, stdout, stderr }  fds for JavaScript to wrap; -1 for /dev/null stdin or
 *                                       output inherited (options.inheritOutput)
 *     onExit(exitCode, signo)           once, when the child exited (code) or was killed (signo)
 *   A failed spawn throws an Error with errno (negative, as Node's) and syscall.
 *
 * The child runs on its own stack in the parent's memory while the parent thread waits,
 * so it may only make raw system calls: no malloc, no locks, and no glibc setuid/setgid
 * (they signal every thread of the address space, i.e. the agent's). Everything it needs
 * (PATH candidates, argv, envp) is prepared in the parent first.
 *
 * Exit is watched with a pidfd in a uv_poll_t on Node's loop, then reaped with waitid on
 * that pid: libuv's SIGCHLD handler waits only for pids it spawned, so it never reaps ours.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <node_api.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

/* fs-ids.c */
napi_value with_fs_ids(napi_env env, napi_callback_info info);

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

/* The child needs little: a few frames of syscall wrappers. */
#define CHILD_STACK_SIZE (64 * 1024)
/* Signals 1..64; the kernel's sigset for rt_sigaction / rt_sigprocmask is 8 bytes. */
#define KERNEL_NSIG 64
#define KERNEL_SIGSET_SIZE 8

typedef struct {
  /* Programs to try in order (PATH already applied), NULL-terminated. */
  char **candidates;
  char **argv;
  /* "/bin/sh", <slot for the script>, argv[1...]: execvp runs a file without #! with sh. */
  char **sh_argv;
  char **envp;
  const char *cwd;
  int setsid;
  int set_ids;
  uid_t uid;
  gid_t gid;
  /* Supplementary groups to set; without them (ngroups -1) all are dropped, as libuv does. */
  gid_t *groups;
  int ngroups;
  /* Fds (all >= 3, close-on-exec) to become the child's 0, 1, 2. */
  int stdio[3];
  /* Written by the child before it exits; shared memory, so no error pipe is needed. */
  volatile int err;
  volatile int step;
} child_args;

/* What a failed child step was, for the error message. */
enum { STEP_SETSID = 1, STEP_DUP, STEP_CHDIR, STEP_SETGROUPS, STEP_SETGID, STEP_SETUID, STEP_SIGNALS, STEP_EXEC };

/* The kernel's struct sigaction; all zeros is SIG_DFL with no flags and an empty mask. */
typedef struct {
  unsigned long handler, flags, restorer, mask;
} kernel_sigaction;

static int child_fail(child_args *a, int step, int err) {
  a->step = step;
  a->err = err;
  syscall(SYS_exit, 127);
  return 127;
}

/* Runs in the child, in the parent's memory: raw system calls only. */
static int child_main(void *arg) {
  child_args *a = arg;
  if (a->setsid && syscall(SYS_setsid) < 0) return child_fail(a, STEP_SETSID, errno);
  /* The parent moved every fd to >= 3, so these dups never clobber one another. */
  for (int fd = 0; fd < 3; fd++) {
    if (syscall(SYS_dup3, a->stdio[fd], fd, 0) < 0) return child_fail(a, STEP_DUP, errno);
  }
  if (syscall(SYS_chdir, a->cwd) < 0) return child_fail(a, STEP_CHDIR, errno);
  if (a->set_ids) {
    if (a->ngroups >= 0) {
      if (syscall(SYS_setgroups, a->ngroups, a->groups) < 0) return child_fail(a, STEP_SETGROUPS, errno);
    } else {
      /* As libuv: drop supplementary groups, which fails harmlessly when not root. */
      syscall(SYS_setgroups, 0, NULL);
    }
    if (syscall(SYS_setgid, a->gid) < 0) return child_fail(a, STEP_SETGID, errno);
    if (syscall(SYS_setuid, a->uid) < 0) return child_fail(a, STEP_SETUID, errno);
  }
  /* Handlers point into the parent and ignored signals (SIGPIPE) would be inherited. */
  kernel_sigaction dfl;
  memset(&dfl, 0, sizeof dfl);
  for (int sig = 1; sig <= KERNEL_NSIG; sig++) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    syscall(SYS_rt_sigaction, sig, &dfl, NULL, KERNEL_SIGSET_SIZE);
  }
  unsigned long none = 0;
  if (syscall(SYS_rt_sigprocmask, SIG_SETMASK, &none, NULL, KERNEL_SIGSET_SIZE) < 0) {
    return child_fail(a, STEP_SIGNALS, errno);
  }
  /* execvp's rules: go on past missing entries, remember EACCES, stop at anything else. */
  int seen_eacces = 0;
  for (char **c = a->candidates; *c; c++) {
    syscall(SYS_execve, *c, a->argv, a->envp);
    int err = errno;
    if (err == ENOEXEC) {
      a->sh_argv[1] = *c;
      syscall(SYS_execve, "/bin/sh", a->sh_argv, a->envp);
      err = errno;
    }
    if (err == EACCES) {
      seen_eacces = 1;
    } else if (err != ENOENT && err != ENOTDIR && err != ESTALE && err != ENODEV && err != ETIMEDOUT) {
      return child_fail(a, STEP_EXEC, err);
    }
  }
  return child_fail(a, STEP_EXEC, seen_eacces ? EACCES : ENOENT);
}

/* ---- JavaScript side ---- */

typedef struct {
  uv_poll_t poll;
  int pidfd;
  pid_t pid;
  napi_env env;
  napi_ref callback;
  napi_async_context context;
} exit_watch;

static napi_value throw_errno(napi_env env, const char *syscall_name, int err) {
  napi_value msg, error, errno_value, syscall_value;
  napi_create_string_utf8(env, strerror(err), NAPI_AUTO_LENGTH, &msg);
  napi_create_error(env, NULL, msg, &error);
  napi_create_int32(env, -err, &errno_value);
  napi_set_named_property(env, error, "errno", errno_value);
  napi_create_string_utf8(env, syscall_name, NAPI_AUTO_LENGTH, &syscall_value);
  napi_set_named_property(env, error, "syscall", syscall_value);
  napi_throw(env, error);
  return NULL;
}

/* -1: unknown yet, 0: usable, else the errno that makes it unusable. */
static int pidfd_support = -1;

static int check_support(void) {
  if (pidfd_support < 0) {
    int fd = (int)syscall(SYS_pidfd_open, getpid(), 0);
    pidfd_support = fd >= 0 ? 0 : errno;
    if (fd >= 0) close(fd);
  }
  return pidfd_support;
}

static napi_value spawn_supported(napi_env env, napi_callback_info info) {
  napi_value result;
  int err = check_support();
  if (err == 0) {
    napi_get_null(env, &result);
  } else {
    napi_create_string_utf8(env, strerror(err), NAPI_AUTO_LENGTH, &result);
  }
  return result;
}

/* A JS string as a malloc'd C string; NULL (with a pending TypeError) if it is not one. */
static char *get_string(napi_env env, napi_value value, const char *what) {
  size_t len;
  if (napi_get_value_string_utf8(env, value, NULL, 0, &len) != napi_ok) {
    napi_throw_type_error(env, NULL, what);
    return NULL;
  }
  char *s = malloc(len + 1);
  if (!s) return NULL;
  napi_get_value_string_utf8(env, value, s, len + 1, &len);
  return s;
}

/* A JS array of strings as a malloc'd NULL-terminated vector. */
static char **get_string_array(napi_env env, napi_value value, const char *what) {
  uint32_t n;
  if (napi_get_array_length(env, value, &n) != napi_ok) {
    napi_throw_type_error(env, NULL, what);
    return NULL;
  }
  char **v = calloc(n + 1, sizeof *v);
  if (!v) return NULL;
  for (uint32_t i = 0; i < n; i++) {
    napi_value item;
    napi_get_element(env, value, i, &item);
    if (!(v[i] = get_string(env, item, what))) {
      for (uint32_t j = 0; j < i; j++) free(v[j]);
      free(v);
      return NULL;
    }
  }
  return v;
}

static void free_string_array(char **v) {
  if (!v) return;
  for (char **p = v; *p; p++) free(*p);
  free(v);
}

/*
 * The programs execvp would try for `file`: itself when it has a slash, else each PATH
 * entry (from the child's environment; an empty entry is the working directory).
 */
static char **path_candidates(const char *file, char **envp) {
  if (strchr(file, '/') || *file == '\0') {
    char **v = calloc(2, sizeof *v);
    if (v && !(v[0] = strdup(file))) {
      free(v);
      return NULL;
    }
    return v;
  }
  const char *path = "/usr/local/bin:/usr/bin:/bin";
  for (char **e = envp; *e; e++) {
    if (strncmp(*e, "PATH=", 5) == 0) path = *e + 5;
  }
  size_t count = 1;
  for (const char *p = path; *p; p++) count += *p == ':';
  char **v = calloc(count + 1, sizeof *v);
  if (!v) return NULL;
  size_t flen = strlen(file), i = 0;
  for (const char *p = path;; i++) {
    const char *end = strchrnul(p, ':');
    size_t dlen = (size_t)(end - p);
    char *c = malloc(dlen + flen + 2);
    if (!c) {
      free_string_array(v);
      return NULL;
    }
    if (dlen) {
      memcpy(c, p, dlen);
      c[dlen] = '/';
      memcpy(c + dlen + 1, file, flen + 1);
    } else {
      memcpy(c, file, flen + 1);
    }
    v[i] = c;
    if (!*end) break;
    p = end + 1;
  }
  return v;
}

/* Moves an fd to >= 3 (close-on-exec) so the child's dup3 onto 0..2 cannot clobber another. */
static int lift_fd(int fd) {
  if (fd >= 3) return fd;
  int lifted = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  int err = errno;
  close(fd);
  errno = err;
  return lifted;
}

static const char *STEP_NAMES[] = {"spawn",  "setsid", "dup2",        "chdir", "setgroups",
                                   "setgid", "setuid", "sigprocmask", "execve"};

static void close_watch(uv_handle_t *handle) {
  exit_watch *w = handle->data;
  close(w->pidfd);
  free(w);
}

static void on_pidfd(uv_poll_t *poll, int status, int events) {
  exit_watch *w = poll->data;
  siginfo_t info;
  memset(&info, 0, sizeof info);
  int r;
  do r = waitid(P_PID, (id_t)w->pid, &info, WEXITED | WNOHANG);
  while (r < 0 && errno == EINTR);
  /* Readable before the child is reapable (or a spurious wake): wait for the next event. */
  if (r == 0 && info.si_pid == 0) return;
  uv_poll_stop(poll);
  napi_env env = w->env;
  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);
  napi_value args[2], callback, resource;
  napi_get_null(env, &args[0]);
  napi_get_null(env, &args[1]);
  if (r < 0) {
    /* Someone else reaped it: nothing left to know; report a generic failure exit. */
    napi_create_int32(env, 127, &args[0]);
  } else if (info.si_code == CLD_EXITED) {
    napi_create_int32(env, info.si_status, &args[0]);
  } else {
    napi_create_int32(env, info.si_status, &args[1]);
  }
  napi_get_reference_value(env, w->callback, &callback);
  napi_create_object(env, &resource);
  napi_status s = napi_make_callback(env, w->context, resource, callback, 2, args, NULL);
  if (s == napi_pending_exception) {
    napi_value err;
    napi_get_and_clear_last_exception(env, &err);
    napi_fatal_exception(env, err);
  }
  napi_delete_reference(env, w->callback);
  napi_async_destroy(env, w->context);
  napi_close_handle_scope(env, scope);
  uv_close((uv_handle_t *)poll, close_watch);
}

static int get_bool(napi_env env, napi_value obj, const char *name) {
  napi_value v;
  bool b = false;
  if (napi_get_named_property(env, obj, name, &v) == napi_ok) napi_get_value_bool(env, v, &b);
  return b;
}

/* -1 when absent (undefined or null). */
static int64_t get_id(napi_env env, napi_value obj, const char *name) {
  napi_value v;
  napi_valuetype type;
  int64_t id = -1;
  if (napi_get_named_property(env, obj, name, &v) != napi_ok) return -1;
  napi_typeof(env, v, &type);
  if (type == napi_number) napi_get_value_int64(env, v, &id);
  return id;
}

/* A JS array of ids (uid_t/gid_t range) as a malloc'd array; NULL with a pending TypeError if not. */
gid_t *get_id_array(napi_env env, napi_value value, int *count) {
  uint32_t n;
  bool is_array = false;
  napi_is_array(env, value, &is_array);
  if (!is_array || napi_get_array_length(env, value, &n) != napi_ok || n > 65536) {
    napi_throw_type_error(env, NULL, "groups must be an array of at most 65536 ids");
    return NULL;
  }
  gid_t *ids = malloc((n ? n : 1) * sizeof *ids);
  if (!ids) return NULL;
  for (uint32_t i = 0; i < n; i++) {
    napi_value item;
    int64_t id = -1;
    napi_get_element(env, value, i, &item);
    if (napi_get_value_int64(env, item, &id) != napi_ok || id < 0 || id > 0xfffffffe) {
      free(ids);
      napi_throw_type_error(env, NULL, "each group must be an id from 0 to 2^32-2");
      return NULL;
    }
    ids[i] = (gid_t)id;
  }
  *count = (int)n;
  return ids;
}

static napi_value spawn_child(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  napi_valuetype cb_type = napi_undefined;
  if (argc == 6) napi_typeof(env, argv[5], &cb_type);
  if (cb_type != napi_function) {
    napi_throw_type_error(env, NULL, "spawn(file, argv, envp, cwd, options, onExit) expects six arguments");
    return NULL;
  }
  int err = check_support();
  if (err) return throw_errno(env, "pidfd_open", err);

  child_args a;
  memset(&a, 0, sizeof a);
  a.stdio[0] = a.stdio[1] = a.stdio[2] = -1;
  int parent_fds[3] = {-1, -1, -1};
  char *file = NULL, *cwd = NULL;
  void *stack = MAP_FAILED;
  napi_value result = NULL;
  const char *failed = "spawn";

  if (!(file = get_string(env, argv[0], "file must be a string"))) goto done;
  if (!(a.argv = get_string_array(env, argv[1], "argv must be an array of strings"))) goto done;
  if (!(a.envp = get_string_array(env, argv[2], "envp must be an array of strings"))) goto done;
  if (!(cwd = get_string(env, argv[3], "cwd must be a string"))) goto done;
  a.cwd = cwd;
  a.setsid = get_bool(env, argv[4], "setsid");
  int64_t uid = get_id(env, argv[4], "uid"), gid = get_id(env, argv[4], "gid");
  if ((uid < 0) != (gid < 0)) {
    napi_throw_type_error(env, NULL, "uid and gid go together");
    goto done;
  }
  if (uid > 0xfffffffe || gid > 0xfffffffe) {
    napi_throw_type_error(env, NULL, "uid and gid must be ids from 0 to 2^32-2");
    goto done;
  }
  a.set_ids = uid >= 0;
  a.uid = (uid_t)uid;
  a.gid = (gid_t)gid;
  a.ngroups = -1;
  napi_value groups_value;
  napi_valuetype groups_type = napi_undefined;
  if (napi_get_named_property(env, argv[4], "groups", &groups_value) == napi_ok) {
    napi_typeof(env, groups_value, &groups_type);
  }
  if (groups_type != napi_undefined && groups_type != napi_null) {
    if (!a.set_ids) {
      napi_throw_type_error(env, NULL, "groups go with uid and gid");
      goto done;
    }
    if (!(a.groups = get_id_array(env, groups_value, &a.ngroups))) goto done;
  }
  if (!(a.candidates = path_candidates(file, a.envp))) {
    err = ENOMEM;
    goto fail;
  }
  size_t argc_count = 0;
  while (a.argv[argc_count]) argc_count++;
  if (!(a.sh_argv = calloc(argc_count + 3, sizeof *a.sh_argv))) {
    err = ENOMEM;
    goto fail;
  }
  a.sh_argv[0] = "/bin/sh";
  for (size_t i = 1; i < argc_count; i++) a.sh_argv[i + 1] = a.argv[i];

  /* stdio: socketpairs as libuv makes them (children see what they saw before), /dev/null for no stdin. */
  failed = "socketpair";
  if (get_bool(env, argv[4], "stdin")) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) goto fail_errno;
    parent_fds[0] = sv[0];
    a.stdio[0] = sv[1];
  } else {
    failed = "open /dev/null";
    if ((a.stdio[0] = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0) goto fail_errno;
    failed = "socketpair";
  }
  int inherit_output = get_bool(env, argv[4], "inheritOutput");
  for (int fd = 1; fd < 3; fd++) {
    if (inherit_output) {
      /* The child writes where we do (a sandbox's own command, to `docker logs`). Node keeps 0-2 open. */
      failed = "fcntl";
      if ((a.stdio[fd] = fcntl(fd, F_DUPFD_CLOEXEC, 3)) < 0) goto fail_errno;
      failed = "socketpair";
      continue;
    }
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) goto fail_errno;
    parent_fds[fd] = sv[0];
    a.stdio[fd] = sv[1];
  }
  failed = "fcntl";
  for (int fd = 0; fd < 3; fd++) {
    if ((a.stdio[fd] = lift_fd(a.stdio[fd])) < 0) goto fail_errno;
  }

  failed = "mmap";
  stack = mmap(NULL, CHILD_STACK_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (stack == MAP_FAILED) goto fail_errno;

  /*
   * No signal handler may run in the child before it resets them: block all across clone,
   * with the raw call, since pthread_sigmask leaves glibc's own two signals unblocked.
   */
  unsigned long all = ~0UL, old;
  syscall(SYS_rt_sigprocmask, SIG_SETMASK, &all, &old, KERNEL_SIGSET_SIZE);
  pid_t pid = clone(child_main, (char *)stack + CHILD_STACK_SIZE, CLONE_VM | CLONE_VFORK | SIGCHLD, &a);
  int clone_err = errno;
  syscall(SYS_rt_sigprocmask, SIG_SETMASK, &old, NULL, KERNEL_SIGSET_SIZE);
  if (pid < 0) {
    failed = "clone";
    err = clone_err;
    goto fail;
  }
  if (a.err) {
    /* The child exited with 127 after the failed step: reap it now. */
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
    }
    failed = STEP_NAMES[a.step];
    err = a.err;
    goto fail;
  }

  /* Our unreaped child: its pid cannot be reused, so pidfd_open after the fact is safe. */
  int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
  if (pidfd < 0) {
    err = errno;
    kill(pid, SIGKILL);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
    }
    failed = "pidfd_open";
    goto fail;
  }
  exit_watch *w = calloc(1, sizeof *w);
  uv_loop_t *loop;
  napi_get_uv_event_loop(env, &loop);
  w->pidfd = pidfd;
  w->pid = pid;
  w->env = env;
  w->poll.data = w;
  napi_create_reference(env, argv[5], 1, &w->callback);
  napi_value resource_name;
  napi_create_string_utf8(env, "tether:spawn", NAPI_AUTO_LENGTH, &resource_name);
  napi_async_init(env, NULL, resource_name, &w->context);
  uv_poll_init(loop, &w->poll, pidfd);
  uv_poll_start(&w->poll, UV_READABLE, on_pidfd);

  napi_value pid_value, fd_values[3];
  napi_create_object(env, &result);
  napi_create_int32(env, pid, &pid_value);
  napi_set_named_property(env, result, "pid", pid_value);
  static const char *names[] = {"stdin", "stdout", "stderr"};
  for (int fd = 0; fd < 3; fd++) {
    napi_create_int32(env, parent_fds[fd], &fd_values[fd]);
    napi_set_named_property(env, result, names[fd], fd_values[fd]);
    parent_fds[fd] = -1;
  }
  goto done;

fail_errno:
  err = errno;
fail:
  throw_errno(env, failed, err);
done:
  for (int fd = 0; fd < 3; fd++) {
    if (a.stdio[fd] >= 0) close(a.stdio[fd]);
    if (parent_fds[fd] >= 0) close(parent_fds[fd]);
  }
  if (stack != MAP_FAILED) munmap(stack, CHILD_STACK_SIZE);
  free(file);
  free(cwd);
  free_string_array(a.argv);
  free_string_array(a.envp);
  free_string_array(a.candidates);
  free(a.sh_argv);
  free(a.groups);
  return result;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"spawn", NULL, spawn_child, NULL, NULL, NULL, napi_default, NULL},
      {"supported", NULL, spawn_supported, NULL, NULL, NULL, napi_default, NULL},
      {"withFsIds", NULL, with_fs_ids, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
