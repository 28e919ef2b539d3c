/*
 * Nulls, garbage and out-of-range values everywhere: every call answers
 * with RELINK_INVALID_ARGUMENT (or a neutral value) and a message, never
 * undefined behaviour. Needs no server: a client pointed at a closed port
 * is enough, and shows the fail-fast outage policy and wait timeouts.
 */
#define _GNU_SOURCE
#include "support.h"

static void frees_and_accessors_take_null(void) {
  relink_error_free(NULL);
  relink_reply_free(NULL);
  relink_client_free(NULL);
  relink_backoff_free(NULL);
  relink_sync_cursor_free(NULL);
  relink_backoff_reset(NULL);
  relink_sync_cursor_reset_to(NULL, 1, 2);

  CHECK(relink_error_code(NULL) == RELINK_OK);
  CHECK(relink_error_outcome(NULL) == RELINK_OUTCOME_NONE);
  CHECK(strcmp(relink_error_message(NULL), "") == 0);
  CHECK(strcmp(relink_code_name(RELINK_TIMEOUT), "RELINK_TIMEOUT") == 0);
  CHECK(strcmp(relink_code_name(12345), "RELINK_UNKNOWN_CODE") == 0);
  CHECK(strlen(relink_version()) > 0);

  size_t len = 99;
  CHECK(relink_reply_type(NULL) == RELINK_REPLY_NIL);
  CHECK(relink_reply_integer(NULL) == 0);
  CHECK(relink_reply_double(NULL) == 0.0);
  CHECK(relink_reply_bytes(NULL, &len) == NULL && len == 0);
  CHECK(relink_reply_bytes(NULL, NULL) == NULL);
  CHECK(relink_reply_len(NULL) == 0);
  CHECK(relink_reply_element(NULL, 0) == NULL);
  CHECK(relink_reply_element(NULL, (size_t)-1) == NULL);

  CHECK(relink_client_state(NULL) == RELINK_STATE_SHUTDOWN);
  CHECK(relink_backoff_attempts(NULL) == 0);
  uint64_t value = 77;
  CHECK(!relink_backoff_next_delay(NULL, 0, &value) && value == 77);
  CHECK(relink_sync_cursor_seq(NULL) == 0);
  CHECK(!relink_sync_cursor_epoch(NULL, &value) && value == 77);
}

static void connect_rejects_bad_input(void) {
  relink_client *client = NULL;
  relink_options options;
  CHECK_OK(relink_options_default(&options, sizeof options));
  CHECK(relink_options_default(NULL, sizeof(relink_options)) == RELINK_INVALID_ARGUMENT);

  CHECK_FAILS(RELINK_INVALID_ARGUMENT, "url",
              relink_client_connect(NULL, &options, &client, errp_));
  CHECK_FAILS(RELINK_INVALID_ARGUMENT, "UTF-8",
              relink_client_connect("redis://127.0.0.1:1/\xff\xfe", &options, &client, errp_));
  /* A URL relink cannot use is a rejected setting; test_bad_config.c has the table. */
  CHECK_FAILS(RELINK_INVALID_CONFIG, "url",
              relink_client_connect("no such scheme", &options, &client, errp_));
  CHECK_FAILS(RELINK_INVALID_ARGUMENT, "out",
              relink_client_connect("redis://127.0.0.1:1", &options, NULL, errp_));
  /* A NULL `err` is allowed: the code alone tells. */
  CHECK(relink_client_connect(NULL, NULL, &client, NULL) == RELINK_INVALID_ARGUMENT);
  CHECK(client == NULL); /* outputs are written only on success */

  relink_options bad = options;
  bad.outage_policy = 7;
  CHECK_FAILS(RELINK_INVALID_ARGUMENT, "outage_policy",
              relink_client_connect("redis://127.0.0.1:1", &bad, &client, errp_));
  bad = options;
  bad.backoff.strategy = 99;
  CHECK_FAILS(RELINK_INVALID_ARGUMENT, "strategy",
              relink_client_connect("redis://127.0.0.1:1", &bad, &client, errp_));
  bad = options;
  bad.backoff.jitter = UINT32_MAX;
  CHECK_FAILS(RELINK_INVALID_ARGUMENT, "jitter",
              relink_client_connect("redis://127.0.0.1:1", &bad, &client, errp_));
  bad = options;
  bad.backoff.initial_delay_ms = 0;
  CHECK_FAILS(RELINK_INVALID_CONFIG, "initial_delay",
              relink_client_connect("redis://127.0.0.1:1", &bad, &client, errp_));
  bad = options;
  bad.backoff.multiplier = 0.5;
  CHECK_FAILS(RELINK_INVALID_CONFIG, "multiplier",
              relink_client_connect("redis://127.0.0.1:1", &bad, &client, errp_));
  bad = options;
  bad.heartbeat_interval_ms = 0;
  CHECK_FAILS(RELINK_INVALID_CONFIG, "heartbeat_interval_ms",
              relink_client_connect("redis://127.0.0.1:1", &bad, &client, errp_));
  bad = options;
  bad.queue_capacity = 0;
  CHECK_FAILS(RELINK_INVALID_CONFIG, "queue_capacity",
              relink_client_connect("redis://127.0.0.1:1", &bad, &client, errp_));
  bad = options;
  bad.client_name = "has space";
  CHECK_FAILS(RELINK_INVALID_CONFIG, "client_name",
              relink_client_connect("redis://127.0.0.1:1", &bad, &client, errp_));
  bad = options;
  bad.client_name = "\xc3\x28";
  CHECK_FAILS(RELINK_INVALID_ARGUMENT, "client_name",
              relink_client_connect("redis://127.0.0.1:1", &bad, &client, errp_));
  CHECK(client == NULL);
}

static void client_calls_reject_bad_input(void) {
  /* Nothing listens here: the client keeps trying in the background. */
  char url[64];
  snprintf(url, sizeof url, "redis://127.0.0.1:%d", free_port());
  relink_options options;
  CHECK_OK(relink_options_default(&options, sizeof options));
  options.outage_policy = RELINK_OUTAGE_FAIL_FAST;
  relink_client *client = NULL;
  CHECK_OK(relink_client_connect(url, &options, &client, errp_));

  const char *argv[] = {"GET", "key"};
  const char *holey[] = {"GET", NULL};
  const size_t lens[] = {3, 3};
  relink_reply *reply = NULL;
  CHECK_FAILS(RELINK_INVALID_ARGUMENT, "client",
              relink_client_command(NULL, 2, argv, lens, &reply, errp_));
  CHECK_FAILS(RELINK_INVALID_ARGUMENT, "argc",
              relink_client_command(client, 0, argv, lens, &reply, errp_));
  CHECK_FAILS(RELINK_INVALID_ARGUMENT, "argv",
              relink_client_command(client, 2, NULL, lens, &reply, errp_));
  CHECK_FAILS(RELINK_INVALID_ARGUMENT, "argv[1]",
              relink_client_command(client, 2, holey, lens, &reply, errp_));
  CHECK_FAILS(RELINK_INVALID_ARGUMENT, "out",
              relink_client_command(client, 2, argv, lens, NULL, errp_));
  CHECK(reply == NULL);

  /* Fail-fast while disconnected: not sent, and the error says so. */
  relink_error *err = NULL;
  CHECK(relink_client_command(client, 2, argv, lens, &reply, &err) == RELINK_NOT_CONNECTED);
  CHECK(relink_error_outcome(err) == RELINK_OUTCOME_NOT_APPLIED);
  CHECK(strstr(relink_error_message(err), "not sent") != NULL);
  relink_error_free(err);
  CHECK(reply == NULL);

  CHECK_FAILS(RELINK_TIMEOUT, "not ready", relink_client_wait_ready(client, 50, errp_));
  CHECK_FAILS(RELINK_INVALID_ARGUMENT, "client", relink_client_wait_ready(NULL, 50, errp_));
  CHECK_FAILS(RELINK_INVALID_ARGUMENT, "client",
              relink_client_on_state_change(NULL, NULL, NULL, errp_));
  uint32_t state = relink_client_state(client);
  CHECK(state == RELINK_STATE_CONNECTING || state == RELINK_STATE_TRANSIENT_FAILURE);
  relink_client_free(client);
}

static void core_objects_reject_bad_input(void) {
  relink_backoff_policy policy;
  CHECK_OK(relink_backoff_policy_default(&policy));
  CHECK(relink_backoff_policy_default(NULL) == RELINK_INVALID_ARGUMENT);
  CHECK(relink_backoff_policy_grpc(NULL) == RELINK_INVALID_ARGUMENT);
  relink_backoff *backoff = NULL;
  CHECK_FAILS(RELINK_INVALID_ARGUMENT, "policy", relink_backoff_new(NULL, 1, &backoff, errp_));
  CHECK_FAILS(RELINK_INVALID_ARGUMENT, "out", relink_backoff_new(&policy, 1, NULL, errp_));
  relink_backoff_policy bad = policy;
  bad.jitter = 5;
  CHECK_FAILS(RELINK_INVALID_ARGUMENT, "jitter", relink_backoff_new(&bad, 1, &backoff, errp_));
  bad = policy;
  bad.max_delay_ms = 1;
  CHECK_FAILS(RELINK_INVALID_CONFIG, "max_delay", relink_backoff_new(&bad, 1, &backoff, errp_));
  CHECK(backoff == NULL);
  CHECK_OK(relink_backoff_new(&policy, 1, &backoff, errp_));
  CHECK(!relink_backoff_next_delay(backoff, 0, NULL));
  relink_backoff_free(backoff);

  relink_sync_cursor *cursor = NULL;
  relink_offer offer;
  relink_resume_plan plan;
  relink_server_position position = {1, 1, 1};
  CHECK_FAILS(RELINK_INVALID_ARGUMENT, "out", relink_sync_cursor_new(NULL, errp_));
  CHECK_FAILS(RELINK_INVALID_ARGUMENT, "out", relink_sync_cursor_at(1, 2, NULL, errp_));
  CHECK_FAILS(RELINK_INVALID_ARGUMENT, "cursor",
              relink_sync_cursor_offer(NULL, 1, 1, &offer, errp_));
  CHECK_FAILS(RELINK_INVALID_ARGUMENT, "cursor",
              relink_sync_cursor_resume_plan(NULL, &position, &plan, errp_));
  CHECK_OK(relink_sync_cursor_new(&cursor, errp_));
  CHECK_FAILS(RELINK_INVALID_ARGUMENT, "out",
              relink_sync_cursor_offer(cursor, 1, 1, NULL, errp_));
  CHECK_FAILS(RELINK_INVALID_ARGUMENT, "server",
              relink_sync_cursor_resume_plan(cursor, NULL, &plan, errp_));
  CHECK_FAILS(RELINK_INVALID_ARGUMENT, "out",
              relink_sync_cursor_resume_plan(cursor, &position, NULL, errp_));
  relink_sync_cursor_free(cursor);
}

int main(void) {
  frees_and_accessors_take_null();
  connect_rejects_bad_input();
  client_calls_reject_bad_input();
  core_objects_reject_bad_input();
  printf("test_args: %d passed, 0 failed\n", checks_passed);
  return 0;
}
