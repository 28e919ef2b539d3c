/*
 * Pub/Sub from C against a real redis-server: a channel and a pattern, a
 * binary payload, a restart with one RESTORED item, unsubscribe (the server
 * counts no subscriber after it), a subscription that outlives its client,
 * and bad arguments.
 */
#define _GNU_SOURCE

#include "support.h"

/* PUBLISH `channel` `payload` through the client; returns the receivers. */
static long long publish(relink_client *client, const char *channel, const char *payload) {
  const char *argv[] = {"PUBLISH", channel, payload};
  relink_reply *r = command(client, 3, argv);
  CHECK(relink_reply_type(r) == RELINK_REPLY_INTEGER);
  long long n = relink_reply_integer(r);
  relink_reply_free(r);
  return n;
}

/* The next item within 10 s (valgrind is slow). */
static relink_pubsub_item next_item(relink_subscription *sub) {
  relink_pubsub_item item;
  CHECK_OK(relink_subscription_next(sub, 10000, &item, errp_));
  return item;
}

static int is_message(const relink_pubsub_item *item, const char *channel, const char *payload) {
  return item->kind == RELINK_ITEM_MESSAGE && item->channel_len == strlen(channel) &&
         strcmp(item->channel, channel) == 0 && item->payload_len == strlen(payload) &&
         memcmp(item->payload, payload, item->payload_len) == 0;
}

static void messages_and_patterns(relink_client *client) {
  const char *channels[] = {"c:news"};
  relink_subscription *news = NULL;
  CHECK_OK(relink_client_subscribe(client, RELINK_SUBSCRIBE_CHANNELS, channels, 1, &news, errp_));
  const char *patterns[] = {"c:alerts.*"};
  relink_subscription *alerts = NULL;
  CHECK_OK(relink_client_subscribe(client, RELINK_SUBSCRIBE_PATTERNS, patterns, 1, &alerts, errp_));

  /* Confirmed before subscribe returned: heard at once. */
  CHECK(publish(client, "c:news", "one") == 1);
  relink_pubsub_item item = next_item(news);
  CHECK(is_message(&item, "c:news", "one"));
  CHECK(item.pattern == NULL && item.pattern_len == 0);

  CHECK(publish(client, "c:alerts.disk", "full") == 1);
  item = next_item(alerts);
  CHECK(is_message(&item, "c:alerts.disk", "full"));
  CHECK(item.pattern != NULL && strcmp(item.pattern, "c:alerts.*") == 0);

  /* Binary payloads, NUL bytes included. */
  const char binary[] = {'a', '\0', 'b'};
  const char *argv[] = {"PUBLISH", "c:news", binary};
  const size_t lens[] = {7, 6, sizeof binary};
  relink_reply *r = NULL;
  CHECK_OK(relink_client_command(client, 3, argv, lens, &r, errp_));
  relink_reply_free(r);
  item = next_item(news);
  CHECK(item.kind == RELINK_ITEM_MESSAGE && item.payload_len == 3);
  CHECK(memcmp(item.payload, binary, 3) == 0);

  /* Nothing more: a bounded wait that times out, and nothing is lost. */
  relink_error *err = NULL;
  CHECK(relink_subscription_next(news, 50, &item, &err) == RELINK_TIMEOUT);
  relink_error_free(err);

  /* Unsubscribe: the server has no subscriber left, and the stream ends. */
  CHECK_OK(relink_subscription_unsubscribe(alerts, errp_));
  CHECK(publish(client, "c:alerts.disk", "again") == 0);
  err = NULL;
  CHECK(relink_subscription_next(alerts, 50, &item, &err) == RELINK_SHUTDOWN);
  relink_error_free(err);
  relink_subscription_free(alerts);
  relink_subscription_free(news);
}

static void restored_after_restart(relink_client *client, pid_t *server, int port) {
  const char *channels[] = {"c:restart"};
  relink_subscription *sub = NULL;
  CHECK_OK(relink_client_subscribe(client, RELINK_SUBSCRIBE_CHANNELS, channels, 1, &sub, errp_));
  stop_server(*server);
  *server = start_server(port);
  /* Publish until the restored subscription hears it (bounded: 20 s). */
  int heard = 0;
  for (int i = 0; i < 400 && !heard; i++) {
    const char *argv[] = {"PUBLISH", "c:restart", "back"};
    relink_reply *r = NULL;
    relink_error *err = NULL;
    if (relink_client_command(client, 3, argv, NULL, &r, &err) == RELINK_OK) {
      heard = relink_reply_integer(r) > 0;
      relink_reply_free(r);
    }
    relink_error_free(err);
    if (!heard) sleep_ms(50);
  }
  CHECK(heard);
  relink_pubsub_item item = next_item(sub);
  CHECK(item.kind == RELINK_ITEM_RESTORED);
  CHECK(item.channel == NULL && item.payload == NULL);
  /* Messages before "back" may have been missed: that is the marker's point. */
  do {
    item = next_item(sub);
    CHECK(item.kind == RELINK_ITEM_MESSAGE);
  } while (!is_message(&item, "c:restart", "back"));
  relink_subscription_free(sub);
}

static void bad_arguments(relink_client *client) {
  relink_subscription *sub = NULL;
  relink_error *err = NULL;
  const char *channels[] = {"c:x"};
  CHECK(relink_client_subscribe(NULL, 0, channels, 1, &sub, &err) == RELINK_INVALID_ARGUMENT);
  CHECK(strstr(relink_error_message(err), "client") != NULL);
  relink_error_free(err);
  err = NULL;
  CHECK(relink_client_subscribe(client, 7, channels, 1, &sub, &err) == RELINK_INVALID_ARGUMENT);
  CHECK(strstr(relink_error_message(err), "kind") != NULL);
  relink_error_free(err);
  err = NULL;
  CHECK(relink_client_subscribe(client, 0, channels, 0, &sub, &err) == RELINK_INVALID_ARGUMENT);
  relink_error_free(err);
  err = NULL;
  const char *null_name[] = {NULL};
  CHECK(relink_client_subscribe(client, 0, null_name, 1, &sub, &err) == RELINK_INVALID_ARGUMENT);
  CHECK(strstr(relink_error_message(err), "names") != NULL);
  relink_error_free(err);
  err = NULL;
  CHECK(relink_client_subscribe(client, 0, channels, 1, NULL, &err) == RELINK_INVALID_ARGUMENT);
  relink_error_free(err);
  err = NULL;
  relink_pubsub_item item;
  CHECK(relink_subscription_next(NULL, 0, &item, &err) == RELINK_INVALID_ARGUMENT);
  relink_error_free(err);
  CHECK(sub == NULL);
  relink_subscription_free(NULL);
}

/* A subscription freed after its client: its stream has ended, nothing leaks. */
static void outlives_its_client(const char *url, const relink_options *options) {
  relink_client *client = NULL;
  CHECK_OK(relink_client_connect(url, options, &client, errp_));
  CHECK_OK(relink_client_wait_ready(client, 10000, errp_));
  const char *channels[] = {"c:orphan"};
  relink_subscription *sub = NULL;
  CHECK_OK(relink_client_subscribe(client, RELINK_SUBSCRIBE_CHANNELS, channels, 1, &sub, errp_));
  relink_client_free(client);
  relink_pubsub_item item;
  relink_error *err = NULL;
  CHECK(relink_subscription_next(sub, 10000, &item, &err) == RELINK_SHUTDOWN);
  relink_error_free(err);
  relink_subscription_free(sub);
}

int main(void) {
  int port = free_port();
  pid_t server = start_server(port);
  char url[64];
  snprintf(url, sizeof url, "redis://127.0.0.1:%d/0", port);

  relink_options options = test_options();

  relink_client *client = NULL;
  CHECK_OK(relink_client_connect(url, &options, &client, errp_));
  CHECK_OK(relink_client_wait_ready(client, 10000, errp_));
  messages_and_patterns(client);
  restored_after_restart(client, &server, port);
  bad_arguments(client);
  relink_client_free(client);
  outlives_its_client(url, &options);
  stop_server(server);
  printf("test_pubsub: %d passed, 0 failed\n", checks_passed);
  return 0;
}
