/*
 * The few system calls Node has no API for: sending a datagram to a unix
 * socket (systemd's notify protocol) and reaping a process libuv does not know
 * (an orphan handed to a PID 1). Plain Node-API, so one build serves every
 * Node version from 20 on.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <node_api.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

static napi_value throw_errno(napi_env env, int error, const char *syscall) {
  char code[32];
  const char *name = strerrorname_np(error);
  snprintf(code, sizeof code, "%s", name != NULL ? name : "EUNKNOWN");
  char message[256];
  snprintf(message, sizeof message, "%s: %s, %s", code, strerror(error), syscall);
  napi_throw_error(env, code, message);
  return NULL;
}

/* notify(path: string, message: string): void. A path starting with '@' is in the abstract namespace. */
static napi_value notify(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 2) {
    napi_throw_type_error(env, NULL, "notify(path, message)");
    return NULL;
  }
  struct sockaddr_un address;
  memset(&address, 0, sizeof address);
  address.sun_family = AF_UNIX;
  size_t path_length = 0;
  if (napi_get_value_string_utf8(env, argv[0], address.sun_path, sizeof address.sun_path, &path_length) != napi_ok) {
    napi_throw_type_error(env, NULL, "path must be a string");
    return NULL;
  }
  if (path_length == 0 || path_length >= sizeof address.sun_path - 1) {
    napi_throw_range_error(env, NULL, "the socket path is empty or too long");
    return NULL;
  }
  if (address.sun_path[0] == '@') address.sun_path[0] = '\0';
  socklen_t address_length = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + path_length);

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

NAPI_MODULE_INIT() {
  napi_property_descriptor properties[] = {
    {"notify", NULL, notify, NULL, NULL, NULL, napi_default, NULL},
    {"reap", NULL, reap, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof properties / sizeof properties[0], properties);
  return exports;
}
