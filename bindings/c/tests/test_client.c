/*
 * The blocking client against a real redis-server: commands and reply
 * types, binary values with NUL bytes, the state callback, and a server
 * restart in the middle that the client rides out on its own.
 */
#define _GNU_SOURCE
#include <stdatomic.h>

#include "support.h"

/* What the state callback saw; written on relink's thread. */
static atomic_int left_ready;    /* transitions out of READY */
static atomic_int entered_ready; /* transitions into READY */
static atomic_uint last_to;
static atomic_uint reentrant_code; /* what a call back into the client returned */

static void on_state(void *user_data, uint32_t from, uint32_t to) {
  relink_client *client = *(relink_client **)user_data;
  if (from == RELINK_STATE_READY) atomic_fetch_add(&left_ready, 1);
  if (to == RELINK_STATE_READY) atomic_fetch_add(&entered_ready, 1);
  atomic_store(&last_to, to);
  /* Not allowed in a callback: relink refuses instead of deadlocking. */
  if (atomic_load(&reentrant_code) == 0) {
    atomic_store(&reentrant_code, relink_client_wait_ready(client, 0, NULL));
  }
}

static void commands(relink_client *client) {
  const char *ping[] = {"PING"};
  relink_reply *r = command(client, 1, ping);
  CHECK(reply_is(r, RELINK_REPLY_STATUS, "PONG"));
  relink_reply_free(r);

  const char *set[] = {"SET", "c:greeting", "hello"};
  r = command(client, 3, set);
  CHECK(reply_is(r, RELINK_REPLY_STATUS, "OK"));
  relink_reply_free(r);

  const char *get[] = {"GET", "c:greeting"};
  r = command(client, 2, get);
  CHECK(reply_is(r, RELINK_REPLY_STRING, "hello"));
  relink_reply_free(r);

  const char *del[] = {"DEL", "c:counter", "c:list", "c:hash"};
  relink_reply_free(command(client, 4, del));
  const char *incr[] = {"INCRBY", "c:counter", "41"};
  relink_reply_free(command(client, 3, incr));
  const char *incr1[] = {"INCR", "c:counter"};
  r = command(client, 2, incr1);
  CHECK(relink_reply_type(r) == RELINK_REPLY_INTEGER);
  CHECK(relink_reply_integer(r) == 42);
  relink_reply_free(r);

  const char *missing[] = {"GET", "c:missing"};
  r = command(client, 2, missing);
  CHECK(relink_reply_type(r) == RELINK_REPLY_NIL);
  size_t len = 7;
  CHECK(relink_reply_bytes(r, &len) == NULL && len == 0);
  relink_reply_free(r);

  const char *push[] = {"RPUSH", "c:list", "a", "", "c"};
  relink_reply_free(command(client, 5, push));
  const char *range[] = {"LRANGE", "c:list", "0", "-1"};
  r = command(client, 4, range);
  CHECK(relink_reply_type(r) == RELINK_REPLY_ARRAY);
  CHECK(relink_reply_len(r) == 3);
  CHECK(reply_is(relink_reply_element(r, 0), RELINK_REPLY_STRING, "a"));
  CHECK(reply_is(relink_reply_element(r, 1), RELINK_REPLY_STRING, ""));
  CHECK(reply_is(relink_reply_element(r, 2), RELINK_REPLY_STRING, "c"));
  CHECK(relink_reply_element(r, 3) == NULL);
  relink_reply_free(r);

  /* RESP3 (relink's default protocol): a map and a double. */
  const char *hset[] = {"HSET", "c:hash", "field", "value"};
  relink_reply_free(command(client, 4, hset));
  const char *hgetall[] = {"HGETALL", "c:hash"};
  r = command(client, 2, hgetall);
  CHECK(relink_reply_type(r) == RELINK_REPLY_MAP);
  CHECK(relink_reply_len(r) == 2);
  CHECK(reply_is(relink_reply_element(r, 0), RELINK_REPLY_STRING, "field"));
  CHECK(reply_is(relink_reply_element(r, 1), RELINK_REPLY_STRING, "value"));
  relink_reply_free(r);
  const char *zadd[] = {"ZADD", "c:zset", "1.5", "m"};
  relink_reply_free(command(client, 4, zadd));
  const char *zscore[] = {"ZSCORE", "c:zset", "m"};
  r = command(client, 3, zscore);
  CHECK(relink_reply_type(r) == RELINK_REPLY_DOUBLE);
  CHECK(relink_reply_double(r) == 1.5);
  relink_reply_free(r);

  /* A server error reply is a reply, not a relink error. */
  const char *bogus[] = {"NOSUCHCOMMAND", "x"};
  r = command(client, 2, bogus);
  CHECK(relink_reply_type(r) == RELINK_REPLY_ERROR);
  const char *text = relink_reply_bytes(r, &len);
  CHECK(text != NULL && strncmp(text, "ERR", 3) == 0);
  relink_reply_free(r);
  const char *wrongtype[] = {"INCR", "c:list"};
  r = command(client, 2, wrongtype);
  CHECK(relink_reply_type(r) == RELINK_REPLY_ERROR);
  text = relink_reply_bytes(r, &len);
  CHECK(text != NULL && strncmp(text, "WRONGTYPE", 9) == 0);
  relink_reply_free(r);
}

static void binary_values(relink_client *client) {
  static const char key[] = {'b', 'i', 'n', '\0', 'k'};
  static const char value[] = {'a', '\0', 'b', '\0', (char)0xff, '\r', '\n'};
  const char *set[] = {"SET", key, value};
  const size_t set_len[] = {3, sizeof key, sizeof value};
  relink_reply *r = NULL;
  CHECK_OK(relink_client_command(client, 3, set, set_len, &r, errp_));
  CHECK(reply_is(r, RELINK_REPLY_STATUS, "OK"));
  relink_reply_free(r);

  const char *get[] = {"GET", key};
  const size_t get_len[] = {3, sizeof key};
  CHECK_OK(relink_client_command(client, 2, get, get_len, &r, errp_));
  size_t len = 0;
  const char *bytes = relink_reply_bytes(r, &len);
  CHECK(relink_reply_type(r) == RELINK_REPLY_STRING);
  CHECK(len == sizeof value && memcmp(bytes, value, len) == 0);
  CHECK(bytes[len] == '\0'); /* the terminator after the counted bytes */
  relink_reply_free(r);

  /* The key with its NUL is one key, not "bin". */
  const char *exists[] = {"EXISTS", "bin"};
  r = command(client, 2, exists);
  CHECK(relink_reply_integer(r) == 0);
  relink_reply_free(r);
}

static void restart_in_the_middle(relink_client *client, pid_t *server, int port) {
  int left_before = atomic_load(&left_ready);
  int entered_before = atomic_load(&entered_ready);
  stop_server(*server);
  sleep_ms(300);
  *server = start_server(port);

  /* The queue outage policy holds commands until the client is back. A SET
   * that met the dying connection may come back "maybe applied": relink
   * does not retry a write whose fate is unknown, so the caller decides. */
  const char *set[] = {"SET", "c:after", "restart"};
  relink_code code = RELINK_MAYBE_APPLIED;
  for (int attempt = 0; attempt < 20 && code != RELINK_OK; attempt++) {
    relink_reply *r = NULL;
    relink_error *err = NULL;
    code = relink_client_command(client, 3, set, NULL, &r, &err);
    if (code == RELINK_OK) {
      CHECK(reply_is(r, RELINK_REPLY_STATUS, "OK"));
      relink_reply_free(r);
    } else {
      CHECK(code == RELINK_MAYBE_APPLIED || code == RELINK_NOT_APPLIED ||
            code == RELINK_QUEUE_TIMEOUT);
      CHECK(relink_error_outcome(err) != RELINK_OUTCOME_NONE);
      fprintf(stderr, "  (during restart: %s: %s)\n", relink_code_name(code),
              relink_error_message(err));
      relink_error_free(err);
      sleep_ms(100);
    }
  }
  CHECK(code == RELINK_OK);
  CHECK_OK(relink_client_wait_ready(client, 10000, errp_));
  CHECK(relink_client_state(client) == RELINK_STATE_READY);

  const char *get[] = {"GET", "c:after"};
  relink_reply *r = command(client, 2, get);
  CHECK(reply_is(r, RELINK_REPLY_STRING, "restart"));
  relink_reply_free(r);

  /* The callback saw the connection go and come back. */
  for (int i = 0; i < 100 && atomic_load(&entered_ready) <= entered_before; i++) sleep_ms(20);
  CHECK(atomic_load(&left_ready) > left_before);
  CHECK(atomic_load(&entered_ready) > entered_before);
  CHECK(atomic_load(&last_to) == RELINK_STATE_READY);
  CHECK(atomic_load(&reentrant_code) == RELINK_REENTRANT_CALL);
}

/* A wrong password: told as RELINK_MISCONFIGURED with the server's words,
 * at once when asked to wait for the connection, and fixed on a live client
 * with relink_client_update_credentials. `admin` is logged in already. */
static void wrong_password(relink_client *admin, int port, const relink_options *base) {
  const char *protect[] = {"CONFIG", "SET", "requirepass", "right"};
  relink_reply *r = command(admin, 4, protect);
  CHECK(reply_is(r, RELINK_REPLY_STATUS, "OK"));
  relink_reply_free(r);
  char url[96];
  snprintf(url, sizeof url, "redis://:wrong@127.0.0.1:%d/0", port);

  relink_options options = *base;
  options.client_name = NULL;
  options.wait_for_connection = 1;
  relink_client *client = NULL;
  relink_error *err = NULL;
  CHECK(relink_client_connect(url, &options, &client, &err) == RELINK_MISCONFIGURED);
  CHECK(client == NULL);
  CHECK(strstr(relink_error_message(err), "WRONGPASS") != NULL);
  CHECK(strstr(relink_error_message(err), "wrong") == NULL); /* the password is not shown */
  relink_error_free(err);
  options.wait_for_connection = 7;
  CHECK(relink_client_connect(url, &options, &client, &err) == RELINK_INVALID_ARGUMENT);
  CHECK(strstr(relink_error_message(err), "wait_for_connection") != NULL);
  relink_error_free(err);

  /* In the background: commands fail at once with the cause. */
  options.wait_for_connection = 0;
  CHECK_OK(relink_client_connect(url, &options, &client, errp_));
  const char *ping[] = {"PING"};
  relink_code code = RELINK_OK;
  for (int i = 0; i < 200 && code != RELINK_MISCONFIGURED; i++) {
    r = NULL;
    code = relink_client_command(client, 1, ping, NULL, &r, &err);
    if (code != RELINK_OK) {
      if (code == RELINK_MISCONFIGURED) {
        CHECK(strstr(relink_error_message(err), "authentication failed") != NULL);
        CHECK(relink_error_outcome(err) == RELINK_OUTCOME_NOT_APPLIED);
      }
      relink_error_free(err);
    }
    relink_reply_free(r);
    if (code != RELINK_MISCONFIGURED) sleep_ms(20);
  }
  CHECK(code == RELINK_MISCONFIGURED);

  /* Bad arguments are errors, not crashes. */
  CHECK(relink_client_update_credentials(NULL, NULL, "right", &err) == RELINK_INVALID_ARGUMENT);
  relink_error_free(err);
  CHECK(relink_client_update_credentials(client, NULL, NULL, &err) == RELINK_INVALID_ARGUMENT);
  CHECK(strstr(relink_error_message(err), "password") != NULL);
  relink_error_free(err);

  /* The fix, live: connected at once, no restart. */
  CHECK_OK(relink_client_update_credentials(client, NULL, "right", errp_));
  CHECK_OK(relink_client_wait_ready(client, 10000, errp_));
  r = command(client, 1, ping);
  CHECK(reply_is(r, RELINK_REPLY_STATUS, "PONG"));
  relink_reply_free(r);
  /* A refused new password changes nothing. */
  CHECK(relink_client_update_credentials(client, NULL, "nope", &err) == RELINK_REDIS_ERROR);
  CHECK(strstr(relink_error_message(err), "WRONGPASS") != NULL);
  relink_error_free(err);
  r = command(client, 1, ping);
  CHECK(reply_is(r, RELINK_REPLY_STATUS, "PONG"));
  relink_reply_free(r);
  relink_client_free(client);
}

int main(void) {
  int port = free_port();
  pid_t server = start_server(port);
  char url[64];
  snprintf(url, sizeof url, "redis://127.0.0.1:%d/0", port);

  relink_options options = test_options();
  options.client_name = "relink-c-test";

  relink_client *client = NULL;
  CHECK_OK(relink_client_connect(url, &options, &client, errp_));
  CHECK_OK(relink_client_on_state_change(client, on_state, &client, errp_));
  CHECK_OK(relink_client_wait_ready(client, 10000, errp_));
  CHECK(relink_client_state(client) == RELINK_STATE_READY);

  const char *name[] = {"CLIENT", "GETNAME"};
  relink_reply *r = command(client, 2, name);
  CHECK(reply_is(r, RELINK_REPLY_STRING, "relink-c-test"));
  relink_reply_free(r);

  commands(client);
  binary_values(client);
  restart_in_the_middle(client, &server, port);

  /* Unregister, then free: no callback runs after this. */
  CHECK_OK(relink_client_on_state_change(client, NULL, NULL, errp_));
  wrong_password(client, port, &options);
  relink_client_free(client);
  stop_server(server);
  printf("test_client: %d passed, 0 failed\n", checks_passed);
  return 0;
}
