/*
 * Client-side caching through the C ABI, against a real redis-server: a
 * cached client's second read of a key is a hit (relink_client_cache_stats
 * says so), a write by another client reaches it as an invalidation (its
 * next reads see the new value, polled with a bound), broadcast mode
 * caches only the keys under its prefixes, a client without a cache says
 * so, and the stats call checks its pointers. Bad cache options are rows
 * of test_bad_config.c.
 */
#define _GNU_SOURCE
#include "support.h"

static relink_cache_stats cache_stats(relink_client *client) {
  relink_cache_stats stats;
  memset(&stats, 0xAA, sizeof stats);
  CHECK_OK(relink_client_cache_stats(client, &stats, errp_));
  return stats;
}

static relink_client *connect_to(const char *url, uint32_t cache, const char *const *prefixes,
                                 size_t prefix_count) {
  relink_options options = test_options();
  options.wait_for_connection = 1;
  options.cache = cache;
  options.cache_prefixes = prefixes;
  options.cache_prefix_count = prefix_count;
  relink_client *client = NULL;
  CHECK_OK(relink_client_connect(url, &options, &client, errp_));
  CHECK(client != NULL);
  return client;
}

/* GET `key` on `client` is a string equal to `value`. */
static int get_is(relink_client *client, const char *key, const char *value) {
  const char *get[] = {"GET", key};
  relink_reply *r = command(client, 2, get);
  int same = reply_is(r, RELINK_REPLY_STRING, value);
  relink_reply_free(r);
  return same;
}

static void set(relink_client *client, const char *key, const char *value) {
  const char *cmd[] = {"SET", key, value};
  relink_reply *r = command(client, 3, cmd);
  CHECK(reply_is(r, RELINK_REPLY_STATUS, "OK"));
  relink_reply_free(r);
}

/* Waits (at most 10 s, polling) until the cache serves. */
static void wait_serving(relink_client *client) {
  for (int i = 0; i < 400 && cache_stats(client).state != RELINK_CACHE_STATE_SERVING; i++) {
    sleep_ms(25);
  }
  CHECK(cache_stats(client).state == RELINK_CACHE_STATE_SERVING);
}

static void a_write_elsewhere_invalidates(const char *url) {
  relink_client *writer = connect_to(url, RELINK_CACHE_OFF, NULL, 0);
  relink_client *cached = connect_to(url, RELINK_CACHE_ON, NULL, 0);
  set(writer, "c:cached", "v1");
  wait_serving(cached);

  relink_cache_stats before = cache_stats(cached);
  CHECK(before.hits == 0 && before.entries == 0);
  CHECK(get_is(cached, "c:cached", "v1"));
  CHECK(get_is(cached, "c:cached", "v1"));
  relink_cache_stats after = cache_stats(cached);
  CHECK(after.state == RELINK_CACHE_STATE_SERVING);
  CHECK(after.misses == before.misses + 1);
  CHECK(after.hits == before.hits + 1);
  CHECK(after.entries == 1 && after.bytes > 0);

  /* Another connection writes the key: the server's invalidation reaches
   * the cached client, whose reads then see the new value. */
  set(writer, "c:cached", "v2");
  int fresh = 0;
  for (int i = 0; i < 400 && !fresh; i++) {
    fresh = get_is(cached, "c:cached", "v2");
    if (!fresh) sleep_ms(25);
  }
  CHECK(fresh);
  relink_cache_stats later = cache_stats(cached);
  CHECK(later.invalidations >= 1);
  CHECK(later.gap_flushes == 0);

  /* The writer has no cache. */
  relink_cache_stats off = cache_stats(writer);
  CHECK(off.state == RELINK_CACHE_STATE_OFF);
  CHECK(off.hits == 0 && off.misses == 0 && off.entries == 0 && off.bytes == 0);

  relink_client_free(cached);
  relink_client_free(writer);
}

static void broadcast_caches_its_prefixes_only(const char *url) {
  const char *prefixes[] = {"user:", "item:"};
  relink_client *cached = connect_to(url, RELINK_CACHE_BROADCAST, prefixes, 2);
  set(cached, "user:1", "ada");
  set(cached, "other:1", "x");
  wait_serving(cached);
  relink_cache_stats before = cache_stats(cached);
  for (int i = 0; i < 2; i++) {
    CHECK(get_is(cached, "user:1", "ada"));
    CHECK(get_is(cached, "other:1", "x"));
  }
  relink_cache_stats after = cache_stats(cached);
  CHECK(after.hits == before.hits + 1); /* user:1's second read */
  CHECK(after.entries == 1);
  relink_client_free(cached);
}

static void the_stats_call_checks_its_pointers(const char *url) {
  relink_cache_stats stats;
  CHECK_FAILS(RELINK_INVALID_ARGUMENT, "`client` must not be NULL",
              relink_client_cache_stats(NULL, &stats, errp_));
  relink_client *client = connect_to(url, RELINK_CACHE_ON, NULL, 0);
  CHECK_FAILS(RELINK_INVALID_ARGUMENT, "`out` must not be NULL",
              relink_client_cache_stats(client, NULL, errp_));
  relink_client_free(client);
}

int main(void) {
  int port = free_port();
  pid_t server = start_server(port);
  char url[64];
  snprintf(url, sizeof url, "redis://127.0.0.1:%d", port);

  a_write_elsewhere_invalidates(url);
  broadcast_caches_its_prefixes_only(url);
  the_stats_call_checks_its_pointers(url);

  stop_server(server);
  printf("test_cache: %d passed, 0 failed\n", checks_passed);
  return 0;
}
