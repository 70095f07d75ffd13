/*
 * AF_VSOCK for Node: Node has no vsock support and libuv cannot wrap a vsock socket
 * (uv_guess_handle calls it unknown), so this addon does the socket calls and hands
 * file descriptors to JavaScript, which wraps them in a libuv pipe handle.
 *
 *   listen(port) -> { fd, port }       socket + bind(VMADDR_CID_ANY, port) + listen
 *   accept(fd, callback)               a thread polls and accepts; each connection is
 *                                      reported as callback(fd, cid, port) or callback(-errno)
 *   stop(fd)                           wake + join the accept thread, close the fd
 *   connect(cid, port) -> fd           a blocking connect, for the command-line client
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/vm_sockets.h>
#include <node_api.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_ACCEPTORS 16

typedef struct {
  int fd;
  /* stop() writes here: shutdown() does not wake a vsock accept(), so the thread polls both. */
  int wake;
  int active;
  pthread_t thread;
  napi_threadsafe_function callback;
} acceptor;

typedef struct {
  int fd;
  unsigned int cid;
  unsigned int port;
} accepted;

static acceptor acceptors[MAX_ACCEPTORS];

static napi_value throw_errno(napi_env env, const char *what, int err) {
  char message[256];
  snprintf(message, sizeof message, "%s: %s", what, strerror(err));
  napi_value code, msg, error;
  const char *name = "EIO";
  switch (err) {
    case EAFNOSUPPORT: name = "EAFNOSUPPORT"; break;
    case EADDRINUSE: name = "EADDRINUSE"; break;
    case EACCES: name = "EACCES"; break;
    case EPERM: name = "EPERM"; break;
    case ECONNREFUSED: name = "ECONNREFUSED"; break;
    case ECONNRESET: name = "ECONNRESET"; break;
    case ENODEV: name = "ENODEV"; break;
    case ETIMEDOUT: name = "ETIMEDOUT"; break;
    case EADDRNOTAVAIL: name = "EADDRNOTAVAIL"; break;
    case EINVAL: name = "EINVAL"; break;
    case EMFILE: name = "EMFILE"; break;
    case ENOTCONN: name = "ENOTCONN"; break;
    case EHOSTUNREACH: name = "EHOSTUNREACH"; break;
    case ENETUNREACH: name = "ENETUNREACH"; break;
  }
  napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &code);
  napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &msg);
  napi_create_error(env, code, msg, &error);
  napi_value errno_value;
  napi_create_int32(env, -err, &errno_value);
  napi_set_named_property(env, error, "errno", errno_value);
  napi_throw(env, error);
  return NULL;
}

static int arg_uint32(napi_env env, napi_callback_info info, size_t count, uint32_t *out) {
  size_t argc = count;
  napi_value argv[4];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  for (size_t i = 0; i < count; i++) {
    if (i >= argc || napi_get_value_uint32(env, argv[i], &out[i]) != napi_ok) {
      napi_throw_type_error(env, NULL, "expected unsigned integer arguments");
      return 0;
    }
  }
  return 1;
}

static napi_value vsock_listen(napi_env env, napi_callback_info info) {
  uint32_t port;
  if (!arg_uint32(env, info, 1, &port)) return NULL;
  int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, "socket(AF_VSOCK)", errno);
  struct sockaddr_vm addr;
  memset(&addr, 0, sizeof addr);
  addr.svm_family = AF_VSOCK;
  addr.svm_cid = VMADDR_CID_ANY;
  addr.svm_port = port == 0 ? VMADDR_PORT_ANY : port;
  if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
    int err = errno;
    close(fd);
    return throw_errno(env, "bind(AF_VSOCK)", err);
  }
  if (listen(fd, 128) < 0) {
    int err = errno;
    close(fd);
    return throw_errno(env, "listen(AF_VSOCK)", err);
  }
  socklen_t len = sizeof addr;
  getsockname(fd, (struct sockaddr *)&addr, &len);
  napi_value result, fd_value, port_value;
  napi_create_object(env, &result);
  napi_create_int32(env, fd, &fd_value);
  napi_create_uint32(env, addr.svm_port, &port_value);
  napi_set_named_property(env, result, "fd", fd_value);
  napi_set_named_property(env, result, "port", port_value);
  return result;
}

/* Runs on the JS thread: callback(fd, cid, port), or callback(-errno) for a failed accept. */
static void deliver(napi_env env, napi_value js_callback, void *context, void *data) {
  accepted *conn = data;
  if (env == NULL) {
    if (conn->fd >= 0) close(conn->fd);
    free(conn);
    return;
  }
  napi_value argv[3], undefined;
  napi_create_int32(env, conn->fd, &argv[0]);
  napi_create_uint32(env, conn->cid, &argv[1]);
  napi_create_uint32(env, conn->port, &argv[2]);
  napi_get_undefined(env, &undefined);
  free(conn);
  napi_call_function(env, undefined, js_callback, 3, argv, NULL);
}

static void *accept_loop(void *arg) {
  acceptor *a = arg;
  for (;;) {
    struct pollfd fds[2] = {{a->fd, POLLIN, 0}, {a->wake, POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (fds[1].revents) break;
    if (!(fds[0].revents & POLLIN)) {
      if (fds[0].revents & (POLLERR | POLLHUP | POLLNVAL)) break;
      continue;
    }
    struct sockaddr_vm peer;
    socklen_t len = sizeof peer;
    int fd = accept4(a->fd, (struct sockaddr *)&peer, &len, SOCK_CLOEXEC);
    int err = errno;
    if (fd < 0 && (err == EINTR || err == ECONNABORTED || err == EAGAIN || err == EWOULDBLOCK)) continue;
    if (fd < 0 && (err == EINVAL || err == EBADF)) break;
    accepted *conn = malloc(sizeof *conn);
    if (!conn) {
      if (fd >= 0) close(fd);
      continue;
    }
    conn->fd = fd >= 0 ? fd : -err;
    conn->cid = fd >= 0 ? peer.svm_cid : 0;
    conn->port = fd >= 0 ? peer.svm_port : 0;
    if (napi_call_threadsafe_function(a->callback, conn, napi_tsfn_nonblocking) != napi_ok) {
      if (fd >= 0) close(fd);
      free(conn);
      break;
    }
    /* Out of descriptors: do not spin. */
    if (fd < 0) usleep(100000);
  }
  return NULL;
}

static napi_value vsock_accept(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t fd;
  if (argc < 2 || napi_get_value_int32(env, argv[0], &fd) != napi_ok) {
    napi_throw_type_error(env, NULL, "accept(fd, callback)");
    return NULL;
  }
  acceptor *a = NULL;
  for (int i = 0; i < MAX_ACCEPTORS; i++) {
    if (!acceptors[i].active) {
      a = &acceptors[i];
      break;
    }
  }
  if (!a) {
    napi_throw_error(env, NULL, "too many vsock listeners");
    return NULL;
  }
  napi_value name;
  napi_create_string_utf8(env, "vsock accept", NAPI_AUTO_LENGTH, &name);
  if (napi_create_threadsafe_function(env, argv[1], NULL, name, 0, 1, NULL, NULL, NULL, deliver, &a->callback) !=
      napi_ok) {
    napi_throw_error(env, NULL, "cannot create the accept callback");
    return NULL;
  }
  a->fd = fd;
  a->wake = eventfd(0, EFD_CLOEXEC);
  if (a->wake < 0) {
    int err = errno;
    napi_release_threadsafe_function(a->callback, napi_tsfn_abort);
    return throw_errno(env, "eventfd", err);
  }
  a->active = 1;
  int err = pthread_create(&a->thread, NULL, accept_loop, a);
  if (err != 0) {
    a->active = 0;
    close(a->wake);
    napi_release_threadsafe_function(a->callback, napi_tsfn_abort);
    return throw_errno(env, "pthread_create", err);
  }
  return NULL;
}

static napi_value vsock_stop(napi_env env, napi_callback_info info) {
  uint32_t fd;
  if (!arg_uint32(env, info, 1, &fd)) return NULL;
  for (int i = 0; i < MAX_ACCEPTORS; i++) {
    if (acceptors[i].active && acceptors[i].fd == (int)fd) {
      uint64_t one = 1;
      if (write(acceptors[i].wake, &one, sizeof one) < 0) { /* the eventfd cannot be full */ }
      pthread_join(acceptors[i].thread, NULL);
      close(acceptors[i].wake);
      napi_release_threadsafe_function(acceptors[i].callback, napi_tsfn_release);
      acceptors[i].active = 0;
    }
  }
  close((int)fd);
  return NULL;
}

static napi_value vsock_connect(napi_env env, napi_callback_info info) {
  uint32_t args[2];
  if (!arg_uint32(env, info, 2, args)) return NULL;
  int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, "socket(AF_VSOCK)", errno);
  struct sockaddr_vm addr;
  memset(&addr, 0, sizeof addr);
  addr.svm_family = AF_VSOCK;
  addr.svm_cid = args[0];
  addr.svm_port = args[1];
  int rc;
  do {
    rc = connect(fd, (struct sockaddr *)&addr, sizeof addr);
  } while (rc < 0 && errno == EINTR);
  if (rc < 0) {
    int err = errno;
    close(fd);
    char what[64];
    snprintf(what, sizeof what, "connect(vsock %u:%u)", args[0], args[1]);
    return throw_errno(env, what, err);
  }
  napi_value result;
  napi_create_int32(env, fd, &result);
  return result;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"listen", NULL, vsock_listen, NULL, NULL, NULL, napi_default, NULL},
      {"accept", NULL, vsock_accept, NULL, NULL, NULL, napi_default, NULL},
      {"stop", NULL, vsock_stop, NULL, NULL, NULL, napi_default, NULL},
      {"connect", NULL, vsock_connect, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  napi_value host_cid;
  napi_create_uint32(env, VMADDR_CID_HOST, &host_cid);
  napi_set_named_property(env, exports, "HOST_CID", host_cid);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
