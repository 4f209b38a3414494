/*
 * The few system calls Node has no API for: sending a datagram to a unix
 * socket (systemd's notify protocol), reaping a process libuv does not know
 * (an orphan handed to a PID 1), passing fds between unrelated processes
 * (SCM_RIGHTS), reading a peer's credentials (SO_PEERCRED) and flock. Plain Node-API, so one build serves every
 * Node version from 20 on.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
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

/*
 * Fills a unix socket address from a JS string; a path starting with '@' is in
 * the abstract namespace. Returns its length, or 0 after throwing.
 */
static socklen_t unix_address(napi_env env, napi_value value, struct sockaddr_un *address) {
  memset(address, 0, sizeof *address);
  address->sun_family = AF_UNIX;
  size_t length = 0;
  if (napi_get_value_string_utf8(env, value, address->sun_path, sizeof address->sun_path, &length) != napi_ok) {
    napi_throw_type_error(env, NULL, "the socket path must be a string");
    return 0;
  }
  if (length == 0 || length >= sizeof address->sun_path - 1) {
    napi_throw_range_error(env, NULL, "the socket path is empty or longer than 106 bytes");
    return 0;
  }
  if (address->sun_path[0] == '@') address->sun_path[0] = '\0';
  return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + length);
}

/* notify(path: string, message: string): void. */
static napi_value notify(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 2) {
    napi_throw_type_error(env, NULL, "notify(path, message)");
    return NULL;
  }
  struct sockaddr_un address;
  socklen_t address_length = unix_address(env, argv[0], &address);
  if (address_length == 0) return NULL;

  size_t message_length = 0;
  if (napi_get_value_string_utf8(env, argv[1], NULL, 0, &message_length) != napi_ok) {
    napi_throw_type_error(env, NULL, "message must be a string");
    return NULL;
  }
  char message[4096];
  if (message_length >= sizeof message) {
    napi_throw_range_error(env, NULL, "the message is longer than 4095 bytes");
    return NULL;
  }
  napi_get_value_string_utf8(env, argv[1], message, sizeof message, &message_length);

  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, errno, "socket");
  ssize_t sent = sendto(fd, message, message_length, MSG_NOSIGNAL, (struct sockaddr *)&address, address_length);
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
  int32_t pid = 0;
  if (argc < 1 || napi_get_value_int32(env, argv[0], &pid) != napi_ok || pid <= 0) {
    napi_throw_type_error(env, NULL, "reap(pid) needs a positive pid");
    return NULL;
  }
  int status = 0;
  pid_t done = waitpid(pid, &status, WNOHANG);
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

#define MAX_FDS 253

static int get_int(napi_env env, napi_value value, int32_t *out) {
  return napi_get_value_int32(env, value, out) == napi_ok;
}

/*
 * sendFds(socket: number, fds: number[], data: string): void. One sendmsg with
 * the fds as SCM_RIGHTS and `data` as its payload, on a connected unix stream
 * socket. The socket is non-blocking (libuv's); the payload is small enough to
 * go in one call or fail with EAGAIN, which is reported.
 */
static napi_value send_fds(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t sock = -1;
  uint32_t count = 0;
  if (argc < 3 || !get_int(env, argv[0], &sock) || napi_get_array_length(env, argv[1], &count) != napi_ok ||
      count > MAX_FDS) {
    napi_throw_type_error(env, NULL, "sendFds(socket, fds, data) with at most 253 fds");
    return NULL;
  }
  int fds[MAX_FDS];
  for (uint32_t i = 0; i < count; i++) {
    napi_value item;
    napi_get_element(env, argv[1], i, &item);
    if (!get_int(env, item, &fds[i])) {
      napi_throw_type_error(env, NULL, "fds must be integers");
      return NULL;
    }
  }
  size_t length = 0;
  napi_get_value_string_utf8(env, argv[2], NULL, 0, &length);
  char *data = malloc(length + 1);
  if (data == NULL) return throw_errno(env, ENOMEM, "malloc");
  napi_get_value_string_utf8(env, argv[2], data, length + 1, &length);

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
  do sent = sendmsg(sock, &message, MSG_NOSIGNAL);
  while (sent < 0 && errno == EINTR);
  int error = errno;
  free(data);
  if (sent < 0) return throw_errno(env, error, "sendmsg");
  if ((size_t)sent != length) return throw_errno(env, EMSGSIZE, "sendmsg (short write)");
  return NULL;
}

/*
 * recvFds(socket: number, timeoutMs: number): { fds: number[], data: string }.
 * Waits (poll) up to timeoutMs for one message, then recvmsg with
 * MSG_CMSG_CLOEXEC, so the fds never leak into processes spawned later.
 * Blocks the calling thread: meant for a process that is still starting.
 */
static napi_value recv_fds(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t sock = -1, timeout = 0;
  if (argc < 2 || !get_int(env, argv[0], &sock) || !get_int(env, argv[1], &timeout)) {
    napi_throw_type_error(env, NULL, "recvFds(socket, timeoutMs)");
    return NULL;
  }
  struct pollfd waiting = {.fd = sock, .events = POLLIN};
  int ready;
  do ready = poll(&waiting, 1, timeout); /* a signal restarts the whole wait: bounded by the caller's timeout */
  while (ready < 0 && errno == EINTR);
  if (ready < 0) return throw_errno(env, errno, "poll");
  if (ready == 0) return throw_errno(env, ETIMEDOUT, "poll");
  size_t capacity = 1 << 20;
  char *data = malloc(capacity);
  if (data == NULL) return throw_errno(env, ENOMEM, "malloc");
  struct iovec iov = {.iov_base = data, .iov_len = capacity};
  union {
    char buffer[CMSG_SPACE(sizeof(int) * MAX_FDS)];
    struct cmsghdr align;
  } control;
  struct msghdr message = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buffer,
                           .msg_controllen = sizeof control.buffer};
  ssize_t got;
  do got = recvmsg(sock, &message, MSG_CMSG_CLOEXEC);
  while (got < 0 && errno == EINTR);
  if (got < 0) {
    int error = errno;
    free(data);
    return throw_errno(env, error, "recvmsg");
  }
  napi_value result, fds, text;
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
  napi_create_string_utf8(env, data, (size_t)got, &text);
  free(data);
  napi_set_named_property(env, result, "fds", fds);
  napi_set_named_property(env, result, "data", text);
  napi_value truncated;
  napi_get_boolean(env, (message.msg_flags & (MSG_CTRUNC | MSG_TRUNC)) != 0, &truncated);
  napi_set_named_property(env, result, "truncated", truncated);
  return result;
}

/* peerCred(socket: number): { pid, uid, gid } of the process at the other end (SO_PEERCRED). */
static napi_value peer_cred(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t sock = -1;
  if (argc < 1 || !get_int(env, argv[0], &sock)) {
    napi_throw_type_error(env, NULL, "peerCred(socket)");
    return NULL;
  }
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
  char path[4096];
  size_t length = 0;
  if (argc < 1 || napi_get_value_string_utf8(env, argv[0], path, sizeof path, &length) != napi_ok) {
    napi_throw_type_error(env, NULL, "lock(path)");
    return NULL;
  }
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
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
 * connect(path: string): number. A blocking, close-on-exec unix stream socket
 * connected to path: the new process's end of the handover, read and written
 * with plain system calls so that libuv never reads (and drops) the fds.
 */
static napi_value connect_unix(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1) {
    napi_throw_type_error(env, NULL, "connect(path)");
    return NULL;
  }
  struct sockaddr_un address;
  socklen_t address_length = unix_address(env, argv[0], &address);
  if (address_length == 0) return NULL;
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, errno, "socket");
  int connected;
  do connected = connect(fd, (struct sockaddr *)&address, address_length);
  while (connected < 0 && errno == EINTR);
  if (connected < 0) {
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
  int32_t fd = -1;
  if (argc < 1 || !get_int(env, argv[0], &fd) || fd < 0) {
    napi_throw_type_error(env, NULL, "listening(fd) with a non-negative integer fd");
    return NULL;
  }
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
    {"peerCred", NULL, peer_cred, NULL, NULL, NULL, napi_default, NULL},
    {"lock", NULL, lock_file, NULL, NULL, NULL, napi_default, NULL},
    {"connect", NULL, connect_unix, NULL, NULL, NULL, napi_default, NULL},
    {"listening", NULL, listening, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof properties / sizeof properties[0], properties);
  return exports;
}
