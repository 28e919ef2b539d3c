/*
 * Shared by the C tests: checks that stop the test, and redis-server
 * processes of the test's own.
 *
 * A server is spawned from $REDIS_SERVER (default `redis-server`) on a free
 * loopback port with `--save ""`, and killed by its PID: by stop_server, and
 * at exit by an atexit handler (a failed CHECK exits through it). If the test
 * dies without running atexit handlers (a crash), the kernel kills the
 * server anyway: each one is spawned with PR_SET_PDEATHSIG (Linux).
 * Every wait is bounded.
 *
 * Each test file defines _GNU_SOURCE before including this.
 */
#ifndef RELINK_TEST_SUPPORT_H
#define RELINK_TEST_SUPPORT_H

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "relink.h"

static int checks_passed;

#define CHECK(cond)                                                          \
  do {                                                                       \
    if (!(cond)) {                                                           \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      exit(1);                                                               \
    }                                                                        \
    checks_passed++;                                                         \
  } while (0)

/* Checks a relink call: on failure prints the code and message, and exits. */
#define CHECK_OK(call)                                                       \
  do {                                                                       \
    relink_error *check_err_ = NULL;                                         \
    relink_error **errp_ = &check_err_;                                      \
    relink_code check_code_ = (call);                                        \
    if (check_code_ != RELINK_OK) {                                          \
      fprintf(stderr, "%s:%d: %s failed: %s: %s\n", __FILE__, __LINE__, #call, \
              relink_code_name(check_code_), relink_error_message(check_err_)); \
      relink_error_free(check_err_);                                         \
      exit(1);                                                               \
    }                                                                        \
    (void)errp_;                                                             \
    checks_passed++;                                                         \
  } while (0)

/* Expects `call` to fail with `expected`, with a non-empty message that
 * mentions `needle` (may be NULL), then frees the error. */
#define CHECK_FAILS(expected, needle, call)                                   \
  do {                                                                        \
    relink_error *check_err_ = NULL;                                          \
    relink_error **errp_ = &check_err_;                                       \
    relink_code check_code_ = (call);                                         \
    (void)errp_;                                                              \
    if (check_code_ != (expected) || relink_error_code(check_err_) != (expected) || \
        relink_error_message(check_err_)[0] == '\0' ||                        \
        ((needle) != NULL && strstr(relink_error_message(check_err_), (needle)) == NULL)) { \
      fprintf(stderr, "%s:%d: %s: expected %s, got %s: %s\n", __FILE__, __LINE__, #call, \
              relink_code_name(expected), relink_code_name(check_code_),      \
              relink_error_message(check_err_));                              \
      relink_error_free(check_err_);                                          \
      exit(1);                                                                \
    }                                                                         \
    relink_error_free(check_err_);                                            \
    checks_passed++;                                                          \
  } while (0)

static inline void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

#define MAX_SERVERS 8
static pid_t servers[MAX_SERVERS];

static inline void kill_all_servers(void) {
  for (int i = 0; i < MAX_SERVERS; i++) {
    if (servers[i] > 0) {
      kill(servers[i], SIGKILL);
      waitpid(servers[i], NULL, 0);
      servers[i] = 0;
    }
  }
}

static inline int free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  CHECK(fd >= 0);
  struct sockaddr_in addr;
  memset(&addr, 0, sizeof addr);
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  CHECK(bind(fd, (struct sockaddr *)&addr, sizeof addr) == 0);
  socklen_t len = sizeof addr;
  CHECK(getsockname(fd, (struct sockaddr *)&addr, &len) == 0);
  close(fd);
  return ntohs(addr.sin_port);
}

static inline int port_accepts(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return 0;
  struct sockaddr_in addr;
  memset(&addr, 0, sizeof addr);
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons((uint16_t)port);
  int ok = connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0;
  close(fd);
  return ok;
}

/* Starts redis-server with `args` (after the program name, NULL-terminated);
 * returns once `port` accepts connections (at most 10 s). */
static inline pid_t start_server_with(int port, char *const args[]) {
  static int registered;
  if (!registered) {
    atexit(kill_all_servers);
    registered = 1;
  }
  const char *program = getenv("REDIS_SERVER");
  if (program == NULL || program[0] == '\0') program = "redis-server";
  char *argv[32];
  argv[0] = (char *)program;
  size_t n = 1;
  for (; args[n - 1] != NULL; n++) {
    CHECK(n < sizeof argv / sizeof argv[0] - 1);
    argv[n] = args[n - 1];
  }
  argv[n] = NULL;
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    int devnull = open("/dev/null", O_WRONLY);
    if (devnull >= 0) {
      dup2(devnull, STDOUT_FILENO);
      dup2(devnull, STDERR_FILENO);
    }
    execvp(program, argv);
    _exit(127);
  }
  int slot = -1;
  for (int i = 0; i < MAX_SERVERS; i++) {
    if (servers[i] == 0) {
      servers[i] = pid;
      slot = i;
      break;
    }
  }
  CHECK(slot >= 0);
  for (int i = 0; i < 400 && !port_accepts(port); i++) {
    int status;
    CHECK(waitpid(pid, &status, WNOHANG) == 0); /* it must not have exited */
    sleep_ms(25);
  }
  CHECK(port_accepts(port));
  return pid;
}

/* Starts redis-server on `port`; returns once it accepts connections (at most 10 s). */
static inline pid_t start_server(int port) {
  char port_text[16];
  snprintf(port_text, sizeof port_text, "%d", port);
  char *const args[] = {"--port", port_text, "--bind", "127.0.0.1", "--save", "",
                        "--appendonly", "no", "--dir", "/tmp", NULL};
  return start_server_with(port, args);
}

/* Kills one server (SIGKILL) and reaps it. */
static inline void stop_server(pid_t pid) {
  for (int i = 0; i < MAX_SERVERS; i++) {
    if (servers[i] == pid) servers[i] = 0;
  }
  kill(pid, SIGKILL);
  waitpid(pid, NULL, 0);
}

/* The defaults, with a fast heartbeat and backoff and waits long enough
 * for valgrind: what the tests that restart servers use. */
static inline relink_options test_options(void) {
  relink_options options;
  CHECK_OK(relink_options_default(&options, sizeof options));
  options.heartbeat_interval_ms = 200;
  options.heartbeat_timeout_ms = 500;
  options.backoff.initial_delay_ms = 20;
  options.backoff.max_delay_ms = 200;
  options.queue_max_wait_ms = 10000;
  options.response_timeout_ms = 5000; /* valgrind is slow */
  return options;
}

/* Sends a command of C strings; returns the reply (the test owns it). */
static inline relink_reply *command(relink_client *client, size_t argc, const char *const *argv) {
  relink_reply *reply = NULL;
  CHECK_OK(relink_client_command(client, argc, argv, NULL, &reply, errp_));
  return reply;
}

/* The reply's bytes equal `text`. */
static inline int reply_is(const relink_reply *reply, uint32_t type, const char *text) {
  size_t len = 0;
  const char *bytes = relink_reply_bytes(reply, &len);
  return relink_reply_type(reply) == type && bytes != NULL && len == strlen(text) &&
         memcmp(bytes, text, len) == 0;
}

#endif
