/*
 * The few system calls Node has no API for: sending a datagram to a unix
 * socket (systemd's notify protocol), reaping a process libuv does not know
 * (an orphan handed to a PID 1), passing fds between unrelated processes
 * (SCM_RIGHTS), reading a peer's credentials (SO_PEERCRED) and flock. Plain Node-API, so one build serves every
 * Node version from 20 on.
 *
 * No call blocks the event loop: every socket is non-blocking, and the one wait (for a socket to
 * become readable) runs on a libuv worker thread, for at most a second, as a Promise. Every
 * argument is checked, and a wrong one throws a TypeError or RangeError naming the call and the
 * argument, never a silently truncated path or a wrapped fd number.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <node_api.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

/* The errno's symbolic name, as Node's errors carry it in `code`. A table of our own rather than
   glibc 2.32's strerrorname_np, so the prebuilt binary loads on any glibc since 2.14. */
static const char *errno_name(int error) {
  switch (error) {
    case ENOENT: return "ENOENT";
    case ECONNREFUSED: return "ECONNREFUSED";
    case EACCES: return "EACCES";
    case EPERM: return "EPERM";
    case EAGAIN: return "EAGAIN";
    case EINPROGRESS: return "EINPROGRESS";
    case EINTR: return "EINTR";
    case EMFILE: return "EMFILE";
    case ENFILE: return "ENFILE";
    case EPIPE: return "EPIPE";
    case ECONNRESET: return "ECONNRESET";
    case ETIMEDOUT: return "ETIMEDOUT";
    case ECHILD: return "ECHILD";
    case EBADF: return "EBADF";
    case EINVAL: return "EINVAL";
    case ENOTSOCK: return "ENOTSOCK";
    case EMSGSIZE: return "EMSGSIZE";
    case ENOMEM: return "ENOMEM";
    case ELOOP: return "ELOOP";
    case ENOTDIR: return "ENOTDIR";
    case ENAMETOOLONG: return "ENAMETOOLONG";
    case EADDRINUSE: return "EADDRINUSE";
    case ENOSPC: return "ENOSPC";
    case EROFS: return "EROFS";
    case EEXIST: return "EEXIST";
    case ENOBUFS: return "ENOBUFS";
    case ECANCELED: return "ECANCELED";
    case ETOOMANYREFS: return "ETOOMANYREFS";
    default: return NULL;
  }
}

static napi_value throw_errno(napi_env env, int error, const char *syscall) {
  char code[32];
  const char *name = errno_name(error);
  snprintf(code, sizeof code, "%s", name != NULL ? name : "EUNKNOWN");
  char message[256];
  snprintf(message, sizeof message, "%s: %s, %s", code, strerror(error), syscall);
  napi_throw_error(env, code, message);
  return NULL;
}


/* Throws `kind` (TypeError or RangeError) with Node's code for it and a message naming the call. */
static napi_value throw_argument(napi_env env, int range, const char *call, const char *what) {
  char message[512];
  snprintf(message, sizeof message, "%s: %s", call, what);
  if (range) napi_throw_range_error(env, "ERR_OUT_OF_RANGE", message);
  else napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", message);
  return NULL;
}

/* An integer argument in [min, max]; throws and returns 0 otherwise. */
static int get_integer(napi_env env, napi_value value, const char *call, const char *name, double min, double max,
                       int64_t *out) {
  napi_valuetype type;
  char what[256];
  if (napi_typeof(env, value, &type) != napi_ok || type != napi_number) {
    snprintf(what, sizeof what, "%s must be a number", name);
    throw_argument(env, 0, call, what);
    return 0;
  }
  double number = 0;
  napi_get_value_double(env, value, &number);
  /* NaN fails both comparisons; the range check comes first so that the cast is defined. */
  if (!(number >= min && number <= max) || (double)(int64_t)number != number) {
    snprintf(what, sizeof what, "%s must be an integer from %.0f to %.0f, got %.17g", name, min, max, number);
    throw_argument(env, 1, call, what);
    return 0;
  }
  *out = (int64_t)number;
  return 1;
}

/* An fd argument: an integer from 0 to INT_MAX (a larger number is never wrapped to a small fd). */
static int get_fd(napi_env env, napi_value value, const char *call, const char *name, int *out) {
  int64_t fd = 0;
  if (!get_integer(env, value, call, name, 0, INT_MAX, &fd)) return 0;
  *out = (int)fd;
  return 1;
}

/*
 * A string argument copied into `buffer` (capacity bytes, NUL included). Throws if it is not a
 * string, is empty, does not fit (never truncated) or, unless `nul_ok`, holds a NUL byte, which
 * would cut the path short in the kernel. Returns its length in bytes, or -1 after throwing.
 */
static ssize_t get_string(napi_env env, napi_value value, const char *call, const char *name, char *buffer,
                          size_t capacity, int nul_ok) {
  char what[256];
  size_t length = 0;
  napi_valuetype type;
  if (napi_typeof(env, value, &type) != napi_ok || type != napi_string ||
      napi_get_value_string_utf8(env, value, NULL, 0, &length) != napi_ok) {
    snprintf(what, sizeof what, "%s must be a string", name);
    throw_argument(env, 0, call, what);
    return -1;
  }
  if (length == 0 || length >= capacity) {
    snprintf(what, sizeof what, "%s must be 1 to %zu bytes long (UTF-8), got %zu", name, capacity - 1, length);
    throw_argument(env, 1, call, what);
    return -1;
  }
  napi_get_value_string_utf8(env, value, buffer, capacity, &length);
  if (!nul_ok && strlen(buffer) != length) {
    snprintf(what, sizeof what, "%s must not contain a NUL byte", name);
    throw_argument(env, 0, call, what);
    return -1;
  }
  return (ssize_t)length;
}

/* Checks that a call got at least `needed` arguments. */
static int has_args(napi_env env, size_t argc, size_t needed, const char *call) {
  if (argc >= needed) return 1;
  throw_argument(env, 0, call, "missing arguments");
  return 0;
}

/*
 * Fills a unix socket address from a JS string; a path starting with '@' is in
 * the abstract namespace. Returns its length, or 0 after throwing.
 */
static socklen_t unix_address(napi_env env, napi_value value, const char *call, struct sockaddr_un *address) {
  memset(address, 0, sizeof *address);
  address->sun_family = AF_UNIX;
  /* 107 bytes and the NUL: what every unix socket API accepts. An abstract name may hold NULs. */
  char path[sizeof address->sun_path];
  size_t length_limit = sizeof path;
  napi_valuetype type;
  int abstract = 0;
  if (napi_typeof(env, value, &type) == napi_ok && type == napi_string) {
    char first[2] = {0};
    size_t got = 0;
    napi_get_value_string_utf8(env, value, first, sizeof first, &got);
    abstract = first[0] == '@';
  }
  ssize_t length = get_string(env, value, call, "the socket path", path, length_limit, abstract);
  if (length < 0) return 0;
  memcpy(address->sun_path, path, (size_t)length);
  if (abstract) address->sun_path[0] = '\0';
  return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + (size_t)length);
}

/*
 * notify(path: string, message: string): void. One datagram, sent without waiting
 * (MSG_DONTWAIT): a receiver that does not read (a full queue) is EAGAIN, thrown, never a
 * process frozen in sendto.
 */
static napi_value notify(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (!has_args(env, argc, 2, "notify(path, message)")) return NULL;
  struct sockaddr_un address;
  socklen_t address_length = unix_address(env, argv[0], "notify", &address);
  if (address_length == 0) return NULL;
  char message[4096];
  ssize_t message_length = get_string(env, argv[1], "notify", "the message", message, sizeof message, 0);
  if (message_length < 0) return NULL;

  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return throw_errno(env, errno, "socket");
  ssize_t sent;
  do sent = sendto(fd, message, (size_t)message_length, MSG_NOSIGNAL | MSG_DONTWAIT, (struct sockaddr *)&address,
                   address_length);
  while (sent < 0 && errno == EINTR);
  int error = errno;
  close(fd);
  if (sent < 0) return throw_errno(env, error, "sendto");
  return NULL;
}

/*
 * reap(pid: number): { code, signal } | null. WNOHANG: null while the
 * process runs. Only for processes libuv did not spawn: reaping one of its
 * children would take the status its 'exit' event needs.
 */
static napi_value reap(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int64_t pid = 0;
  if (!has_args(env, argc, 1, "reap(pid)") || !get_integer(env, argv[0], "reap", "pid", 1, INT_MAX, &pid)) {
    return NULL;
  }
  int status = 0;
  pid_t done = waitpid((pid_t)pid, &status, WNOHANG);
  if (done < 0) return throw_errno(env, errno, "waitpid");
  napi_value result;
  if (done == 0) {
    napi_get_null(env, &result);
    return result;
  }
  napi_create_object(env, &result);
  napi_value code, signal;
  if (WIFEXITED(status)) {
    napi_create_int32(env, WEXITSTATUS(status), &code);
    napi_get_null(env, &signal);
  } else {
    napi_get_null(env, &code);
    napi_create_int32(env, WIFSIGNALED(status) ? WTERMSIG(status) : 0, &signal);
  }
  napi_set_named_property(env, result, "code", code);
  napi_set_named_property(env, result, "signal", signal);
  return result;
}

/* The kernel's limit of fds in one SCM_RIGHTS message (SCM_MAX_FD). */
#define MAX_FDS 253
/* The most one recvFds call reads. */
#define MAX_READ (16 << 20)

/*
 * sendFds(socket: number, fds: number[], data: Buffer | string): number. One sendmsg, without
 * waiting, of `data` with the fds as SCM_RIGHTS, on a connected unix stream socket. Returns the
 * bytes sent, which may be fewer than data's (the fds went with the first of them): the caller
 * sends the rest. EAGAIN (nothing sent) is thrown.
 */
static napi_value send_fds(napi_env env, napi_callback_info info) {
  const char *call = "sendFds";
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int sock = -1;
  if (!has_args(env, argc, 3, "sendFds(socket, fds, data)") || !get_fd(env, argv[0], call, "socket", &sock)) {
    return NULL;
  }
  bool is_array = false;
  uint32_t count = 0;
  if (napi_is_array(env, argv[1], &is_array) != napi_ok || !is_array) {
    return throw_argument(env, 0, call, "fds must be an array of fd numbers");
  }
  napi_get_array_length(env, argv[1], &count);
  if (count > MAX_FDS) return throw_argument(env, 1, call, "fds: at most 253 in one message (SCM_MAX_FD)");
  int fds[MAX_FDS];
  for (uint32_t i = 0; i < count; i++) {
    napi_value item;
    napi_get_element(env, argv[1], i, &item);
    if (!get_fd(env, item, call, "every element of fds", &fds[i])) return NULL;
  }
  bool is_buffer = false;
  napi_valuetype type;
  char *data = NULL;
  char *owned = NULL;
  size_t length = 0;
  napi_is_buffer(env, argv[2], &is_buffer);
  if (is_buffer) {
    void *bytes = NULL;
    if (napi_get_buffer_info(env, argv[2], &bytes, &length) != napi_ok) {
      return throw_argument(env, 0, call, "data must be a Buffer or a string");
    }
    data = bytes;
  } else if (napi_typeof(env, argv[2], &type) == napi_ok && type == napi_string &&
             napi_get_value_string_utf8(env, argv[2], NULL, 0, &length) == napi_ok) {
    owned = malloc(length + 1);
    if (owned == NULL) return throw_errno(env, ENOMEM, "malloc");
    napi_get_value_string_utf8(env, argv[2], owned, length + 1, &length);
    data = owned;
  } else {
    return throw_argument(env, 0, call, "data must be a Buffer or a string");
  }
  if (length == 0) {
    free(owned);
    return throw_argument(env, 1, call, "data must hold at least one byte (the fds travel with it)");
  }

  struct iovec iov = {.iov_base = data, .iov_len = length};
  union {
    char buffer[CMSG_SPACE(sizeof(int) * MAX_FDS)];
    struct cmsghdr align;
  } control;
  memset(&control, 0, sizeof control);
  struct msghdr message = {.msg_iov = &iov, .msg_iovlen = 1};
  if (count > 0) {
    message.msg_control = control.buffer;
    message.msg_controllen = CMSG_SPACE(sizeof(int) * count);
    struct cmsghdr *header = CMSG_FIRSTHDR(&message);
    header->cmsg_level = SOL_SOCKET;
    header->cmsg_type = SCM_RIGHTS;
    header->cmsg_len = CMSG_LEN(sizeof(int) * count);
    memcpy(CMSG_DATA(header), fds, sizeof(int) * count);
  }
  ssize_t sent;
  do sent = sendmsg(sock, &message, MSG_NOSIGNAL | MSG_DONTWAIT);
  while (sent < 0 && errno == EINTR);
  int error = errno;
  free(owned);
  if (sent < 0) return throw_errno(env, error, "sendmsg");
  napi_value result;
  napi_create_double(env, (double)sent, &result);
  return result;
}

/*
 * recvFds(socket: number, maxBytes: number): { fds: number[], data: Buffer, truncated } | null.
 * One recvmsg of at most maxBytes, without waiting (null: nothing to read yet), with
 * MSG_CMSG_CLOEXEC so the fds never leak into processes spawned later. An empty `data` is the
 * end of the stream. `truncated`: fds were dropped (MSG_CTRUNC: no room, or this process's fd
 * limit).
 */
static napi_value recv_fds(napi_env env, napi_callback_info info) {
  const char *call = "recvFds";
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int sock = -1;
  int64_t capacity = 0;
  if (!has_args(env, argc, 2, "recvFds(socket, maxBytes)") || !get_fd(env, argv[0], call, "socket", &sock) ||
      !get_integer(env, argv[1], call, "maxBytes", 1, MAX_READ, &capacity)) {
    return NULL;
  }
  char *data = malloc((size_t)capacity);
  if (data == NULL) return throw_errno(env, ENOMEM, "malloc");
  struct iovec iov = {.iov_base = data, .iov_len = (size_t)capacity};
  union {
    char buffer[CMSG_SPACE(sizeof(int) * MAX_FDS)];
    struct cmsghdr align;
  } control;
  struct msghdr message = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buffer,
                           .msg_controllen = sizeof control.buffer};
  ssize_t got;
  do got = recvmsg(sock, &message, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
  while (got < 0 && errno == EINTR);
  if (got < 0) {
    int error = errno;
    free(data);
    if (error == EAGAIN || error == EWOULDBLOCK) {
      napi_value none;
      napi_get_null(env, &none);
      return none;
    }
    return throw_errno(env, error, "recvmsg");
  }
  napi_value result, fds, bytes;
  napi_create_object(env, &result);
  napi_create_array(env, &fds);
  uint32_t index = 0;
  for (struct cmsghdr *header = CMSG_FIRSTHDR(&message); header != NULL; header = CMSG_NXTHDR(&message, header)) {
    if (header->cmsg_level != SOL_SOCKET || header->cmsg_type != SCM_RIGHTS) continue;
    size_t n = (header->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    int *received = (int *)CMSG_DATA(header);
    for (size_t i = 0; i < n; i++) {
      napi_value fd;
      napi_create_int32(env, received[i], &fd);
      napi_set_element(env, fds, index++, fd);
    }
  }
  napi_create_buffer_copy(env, (size_t)got, data, NULL, &bytes);
  free(data);
  napi_set_named_property(env, result, "fds", fds);
  napi_set_named_property(env, result, "data", bytes);
  napi_value truncated;
  napi_get_boolean(env, (message.msg_flags & MSG_CTRUNC) != 0, &truncated);
  napi_set_named_property(env, result, "truncated", truncated);
  return result;
}

/* The longest one waitReadable may wait: a caller that gives up meanwhile waits no longer than this. */
#define MAX_WAIT_MS 1000

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  int fd;
  int timeout;
  int readable;
  int error;
} readable_wait;

/* On a libuv worker thread: one poll, with no retry (EINTR reads as "not yet"; the caller's loop keeps its deadline). */
static void wait_execute(napi_env env, void *data) {
  (void)env;
  readable_wait *wait = data;
  struct pollfd waiting = {.fd = wait->fd, .events = POLLIN};
  int ready = poll(&waiting, 1, wait->timeout);
  if (ready < 0) wait->error = errno == EINTR ? 0 : errno;
  else if (ready > 0 && (waiting.revents & POLLNVAL) != 0) wait->error = EBADF;
  else wait->readable = ready > 0;
}

static void wait_complete(napi_env env, napi_status status, void *data) {
  readable_wait *wait = data;
  napi_value result;
  if (status != napi_ok || wait->error != 0) {
    int error = status != napi_ok ? ECANCELED : wait->error;
    char message[128];
    const char *name = errno_name(error);
    snprintf(message, sizeof message, "%s: %s, poll", name != NULL ? name : "EUNKNOWN", strerror(error));
    napi_value text, code;
    napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &text);
    napi_create_string_utf8(env, name != NULL ? name : "EUNKNOWN", NAPI_AUTO_LENGTH, &code);
    napi_create_error(env, code, text, &result);
    napi_reject_deferred(env, wait->deferred, result);
  } else {
    napi_get_boolean(env, wait->readable, &result);
    napi_resolve_deferred(env, wait->deferred, result);
  }
  napi_delete_async_work(env, wait->work);
  free(wait);
}

/*
 * waitReadable(socket: number, timeoutMs: number): Promise<boolean>. Waits on a worker thread,
 * never on the event loop, until the socket can be read (or is closed at the other end): true;
 * false after timeoutMs (at most 1000) or a signal. Only polls, never reads: a caller that gave
 * up and closed the fd meanwhile loses nothing.
 */
static napi_value wait_readable(napi_env env, napi_callback_info info) {
  const char *call = "waitReadable";
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int sock = -1;
  int64_t timeout = 0;
  if (!has_args(env, argc, 2, "waitReadable(socket, timeoutMs)") || !get_fd(env, argv[0], call, "socket", &sock) ||
      !get_integer(env, argv[1], call, "timeoutMs", 0, MAX_WAIT_MS, &timeout)) {
    return NULL;
  }
  readable_wait *wait = calloc(1, sizeof *wait);
  if (wait == NULL) return throw_errno(env, ENOMEM, "calloc");
  wait->fd = sock;
  wait->timeout = (int)timeout;
  napi_value promise, name;
  napi_create_promise(env, &wait->deferred, &promise);
  napi_create_string_utf8(env, "effect-tableflip:waitReadable", NAPI_AUTO_LENGTH, &name);
  if (napi_create_async_work(env, NULL, name, wait_execute, wait_complete, wait, &wait->work) != napi_ok ||
      napi_queue_async_work(env, wait->work) != napi_ok) {
    free(wait);
    return throw_errno(env, ENOMEM, "napi_queue_async_work");
  }
  return promise;
}

/* peerCred(socket: number): { pid, uid, gid } of the process at the other end (SO_PEERCRED). */
static napi_value peer_cred(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int sock = -1;
  if (!has_args(env, argc, 1, "peerCred(socket)") || !get_fd(env, argv[0], "peerCred", "socket", &sock)) return NULL;
  struct ucred credentials;
  socklen_t length = sizeof credentials;
  if (getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &credentials, &length) < 0) {
    return throw_errno(env, errno, "getsockopt(SO_PEERCRED)");
  }
  napi_value result, pid, uid, gid;
  napi_create_object(env, &result);
  napi_create_int32(env, credentials.pid, &pid);
  napi_create_uint32(env, credentials.uid, &uid);
  napi_create_uint32(env, credentials.gid, &gid);
  napi_set_named_property(env, result, "pid", pid);
  napi_set_named_property(env, result, "uid", uid);
  napi_set_named_property(env, result, "gid", gid);
  return result;
}

/*
 * lock(path: string): number | null. Opens (creating, 0600) and flock()s the
 * file exclusively without blocking; returns the fd holding the lock, or null
 * if another process holds it. The kernel drops the lock when the holder dies.
 */
static napi_value lock_file(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char path[PATH_MAX];
  if (!has_args(env, argc, 1, "lock(path)") || get_string(env, argv[0], "lock", "path", path, sizeof path, 0) < 0) {
    return NULL;
  }
  /* O_NONBLOCK: a FIFO planted at the path must not hang the open. */
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0600);
  if (fd < 0) return throw_errno(env, errno, "open");
  if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
    int error = errno;
    close(fd);
    if (error == EWOULDBLOCK) {
      napi_value none;
      napi_get_null(env, &none);
      return none;
    }
    return throw_errno(env, error, "flock");
  }
  napi_value result;
  napi_create_int32(env, fd, &result);
  return result;
}

/*
 * connect(path: string): number. A non-blocking, close-on-exec unix stream socket connected to
 * path: the new process's end of the handover, read and written with plain system calls so that
 * libuv never reads (and drops) the fds. A unix connect completes at once or fails; an owner
 * whose queue of pending connections is full is EAGAIN, thrown, for the caller to retry within
 * its own deadline.
 */
static napi_value connect_unix(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (!has_args(env, argc, 1, "connect(path)")) return NULL;
  struct sockaddr_un address;
  socklen_t address_length = unix_address(env, argv[0], "connect", &address);
  if (address_length == 0) return NULL;
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return throw_errno(env, errno, "socket");
  /* Non-blocking: never interrupted (EINTR) and never waits. */
  if (connect(fd, (struct sockaddr *)&address, address_length) < 0) {
    int error = errno;
    close(fd);
    return throw_errno(env, error, "connect");
  }
  napi_value result;
  napi_create_int32(env, fd, &result);
  return result;
}

/*
 * listening(fd: number): null | { family: "IPv4" | "IPv6", address, port } | { family: "unix", path } |
 * { family: "other" }. Whether an fd of this process is a listening stream socket (SO_ACCEPTCONN), and
 * where it listens: the stray-listener check asks this of its own socket fds only, which costs the same
 * however many sockets the machine has (reading /proc/net/tcp grows with every TIME_WAIT).
 * A unix path in the abstract namespace comes back with its leading NUL as "\0".
 */
static napi_value listening(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int fd = -1;
  if (!has_args(env, argc, 1, "listening") || !get_fd(env, argv[0], "listening", "fd", &fd)) return NULL;
  napi_value result;
  int accepting = 0;
  socklen_t length = sizeof accepting;
  if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &length) < 0) {
    if (errno == ENOTSOCK || errno == EBADF || errno == ENOPROTOOPT) {
      napi_get_null(env, &result);
      return result;
    }
    return throw_errno(env, errno, "getsockopt");
  }
  if (!accepting) {
    napi_get_null(env, &result);
    return result;
  }
  struct sockaddr_storage address;
  socklen_t address_length = sizeof address;
  memset(&address, 0, sizeof address);
  if (getsockname(fd, (struct sockaddr *)&address, &address_length) < 0) return throw_errno(env, errno, "getsockname");
  napi_create_object(env, &result);
  napi_value family, text, port;
  char buffer[INET6_ADDRSTRLEN];
  if (address.ss_family == AF_INET || address.ss_family == AF_INET6) {
    int v6 = address.ss_family == AF_INET6;
    const void *raw = v6 ? (const void *)&((struct sockaddr_in6 *)&address)->sin6_addr
                         : (const void *)&((struct sockaddr_in *)&address)->sin_addr;
    inet_ntop(address.ss_family, raw, buffer, sizeof buffer);
    napi_create_string_utf8(env, v6 ? "IPv6" : "IPv4", NAPI_AUTO_LENGTH, &family);
    napi_create_string_utf8(env, buffer, NAPI_AUTO_LENGTH, &text);
    napi_create_int32(env, ntohs(v6 ? ((struct sockaddr_in6 *)&address)->sin6_port
                                     : ((struct sockaddr_in *)&address)->sin_port), &port);
    napi_set_named_property(env, result, "address", text);
    napi_set_named_property(env, result, "port", port);
  } else if (address.ss_family == AF_UNIX) {
    struct sockaddr_un *unix_address = (struct sockaddr_un *)&address;
    size_t path_length = address_length > offsetof(struct sockaddr_un, sun_path)
      ? address_length - offsetof(struct sockaddr_un, sun_path) : 0;
    /* A pathname is NUL-terminated within the length; an abstract name starts with NUL and is not. */
    if (path_length > 0 && unix_address->sun_path[0] != '\0') path_length = strnlen(unix_address->sun_path, path_length);
    napi_create_string_utf8(env, "unix", NAPI_AUTO_LENGTH, &family);
    napi_create_string_utf8(env, unix_address->sun_path, path_length, &text);
    napi_set_named_property(env, result, "path", text);
  } else {
    napi_create_string_utf8(env, "other", NAPI_AUTO_LENGTH, &family);
  }
  napi_set_named_property(env, result, "family", family);
  return result;
}

NAPI_MODULE_INIT() {
  napi_property_descriptor properties[] = {
    {"notify", NULL, notify, NULL, NULL, NULL, napi_default, NULL},
    {"reap", NULL, reap, NULL, NULL, NULL, napi_default, NULL},
    {"sendFds", NULL, send_fds, NULL, NULL, NULL, napi_default, NULL},
    {"recvFds", NULL, recv_fds, NULL, NULL, NULL, napi_default, NULL},
    {"waitReadable", NULL, wait_readable, NULL, NULL, NULL, napi_default, NULL},
    {"peerCred", NULL, peer_cred, NULL, NULL, NULL, napi_default, NULL},
    {"lock", NULL, lock_file, NULL, NULL, NULL, napi_default, NULL},
    {"connect", NULL, connect_unix, NULL, NULL, NULL, napi_default, NULL},
    {"listening", NULL, listening, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof properties / sizeof properties[0], properties);
  return exports;
}
