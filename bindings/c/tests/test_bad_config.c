/*
 * Bad URLs and options, as a table: each row is what a C user might pass to
 * relink_client_connect, the code it must fail with and a piece of the
 * message it must carry. Every message must also be free of what a C user
 * cannot act on (a Cargo.toml, a cargo feature, redis-rs's internal error
 * kinds) and of the URL's password. No row may crash or leak (valgrind),
 * and no row may hand out a client. Needs no server.
 *
 * The same table, for Python, is in bindings/python/test_relink.py.
 */
#define _GNU_SOURCE
#include "support.h"

#include <math.h>

/* Changes one option of a row from relink's defaults. */
typedef void (*tweak_fn)(relink_options *);

static void heartbeat_interval_zero(relink_options *o) { o->heartbeat_interval_ms = 0; }
static void heartbeat_timeout_zero(relink_options *o) { o->heartbeat_timeout_ms = 0; }
static void connect_timeout_zero(relink_options *o) { o->connect_timeout_ms = 0; }
static void response_timeout_zero(relink_options *o) { o->response_timeout_ms = 0; }
static void queue_max_wait_zero(relink_options *o) { o->queue_max_wait_ms = 0; }
static void initial_delay_zero(relink_options *o) { o->backoff.initial_delay_ms = 0; }
/* A negative duration, as C lets one through an unsigned field: it wraps
 * to a huge one, which relink refuses as too long. */
static void heartbeat_interval_negative(relink_options *o) { o->heartbeat_interval_ms = (uint64_t)-1; }
static void connect_timeout_negative(relink_options *o) { o->connect_timeout_ms = (uint64_t)-250; }
static void response_timeout_negative(relink_options *o) { o->response_timeout_ms = (uint64_t)-1; }
static void deadline_negative(relink_options *o) { o->deadline_ms = (uint64_t)-1; }
static void max_retries_negative(relink_options *o) { o->max_retries = (uint32_t)-1; }
static void queue_capacity_zero(relink_options *o) { o->queue_capacity = 0; }
static void multiplier_nan(relink_options *o) { o->backoff.multiplier = NAN; }
static void multiplier_below_one(relink_options *o) { o->backoff.multiplier = 0.5; }
static void max_delay_below_initial(relink_options *o) { o->backoff.max_delay_ms = 1; }
static void outage_policy_unknown(relink_options *o) { o->outage_policy = 7; }
static void strategy_unknown(relink_options *o) { o->backoff.strategy = 99; }
static void jitter_unknown(relink_options *o) { o->backoff.jitter = UINT32_MAX; }
static void client_name_empty(relink_options *o) { o->client_name = ""; }
static void client_name_space(relink_options *o) { o->client_name = "has space"; }
static void client_name_not_utf8(relink_options *o) { o->client_name = "\xc3\x28"; }
static void tls_ca_on_a_plain_url(relink_options *o) { o->tls_ca_file = "/nonexistent/ca.pem"; }
static void tls_cert_without_key(relink_options *o) { o->tls_cert_file = "/nonexistent/client.pem"; }
static void tls_ca_missing(relink_options *o) { o->tls_ca_file = "/nonexistent/ca.pem"; }
static void tls_danger_unknown(relink_options *o) { o->tls_danger_accept_invalid_certs = 7; }
static void cache_unknown(relink_options *o) { o->cache = 9; }
static void cache_max_entries_zero(relink_options *o) { o->cache = RELINK_CACHE_ON; o->cache_max_entries = 0; }
static void cache_max_bytes_zero(relink_options *o) { o->cache = RELINK_CACHE_ON; o->cache_max_bytes = 0; }
static void cache_ttl_zero(relink_options *o) { o->cache = RELINK_CACHE_BROADCAST; o->cache_ttl_ms = 0; }
static const char *const one_prefix[] = {"user:"};
static const char *const overlapping_prefixes[] = {"user:", "user:1"};
static const char *const null_prefix[] = {NULL};
static void cache_prefixes_without_broadcast(relink_options *o) { o->cache = RELINK_CACHE_ON; o->cache_prefixes = one_prefix; o->cache_prefix_count = 1; }
static void cache_prefixes_overlapping(relink_options *o) { o->cache = RELINK_CACHE_BROADCAST; o->cache_prefixes = overlapping_prefixes; o->cache_prefix_count = 2; }
static void cache_prefixes_null(relink_options *o) { o->cache = RELINK_CACHE_BROADCAST; o->cache_prefix_count = 1; }
static void cache_prefix_null(relink_options *o) { o->cache = RELINK_CACHE_BROADCAST; o->cache_prefixes = null_prefix; o->cache_prefix_count = 1; }
static void cache_prefix_count_negative(relink_options *o) { o->cache = RELINK_CACHE_BROADCAST; o->cache_prefixes = one_prefix; o->cache_prefix_count = (size_t)-1; }
static void cache_on(relink_options *o) { o->cache = RELINK_CACHE_ON; }

/* A URL that is fine, for the rows about options. */
#define GOOD_URL "redis://127.0.0.1:6379"

struct row {
  const char *url;  /* may be NULL */
  tweak_fn tweak;   /* NULL: the defaults */
  relink_code code; /* what relink_client_connect returns */
  const char *needle;
};

static const struct row table[] = {
    /* Not a string relink can read. */
    {NULL, NULL, RELINK_INVALID_ARGUMENT, "`url` must not be NULL"},
    {"redis://127.0.0.1:6379/\xff\xfe", NULL, RELINK_INVALID_ARGUMENT, "`url` is not valid UTF-8"},
    /* Not a URL, or not one of ours: the accepted schemes are named. */
    {"", NULL, RELINK_INVALID_CONFIG, "not a URL (no `scheme://`)"},
    {"127.0.0.1:6379", NULL, RELINK_INVALID_CONFIG, "not a URL (no `scheme://`)"},
    {"http://127.0.0.1:6379", NULL, RELINK_INVALID_CONFIG, "unknown scheme `http://`; relink accepts"},
    {"tcp://127.0.0.1:6379", NULL, RELINK_INVALID_CONFIG, "`valkey://`, `valkeys://`"},
    /* Ports. */
    {"redis://127.0.0.1:0", NULL, RELINK_INVALID_CONFIG, "port 0 is not a port"},
    {"valkey://127.0.0.1:0", NULL, RELINK_INVALID_CONFIG, "port 0 is not a port"},
    {"redis://127.0.0.1:65536", NULL, RELINK_INVALID_CONFIG, "port 65536 is out of range (1 to 65535)"},
    {"redis://127.0.0.1:99999", NULL, RELINK_INVALID_CONFIG, "port 99999 is out of range"},
    {"redis://127.0.0.1:-1", NULL, RELINK_INVALID_CONFIG, "port `-1` is not a number"},
    {"redis://127.0.0.1:port", NULL, RELINK_INVALID_CONFIG, "port `port` is not a number"},
    /* Hosts. */
    {"redis://", NULL, RELINK_INVALID_CONFIG, "has no host"},
    {"redis://:s3cret@:6379", NULL, RELINK_INVALID_CONFIG, "has no host"},
    {"redis://0.0.0.0:6379", NULL, RELINK_INVALID_CONFIG, "wildcard address"},
    /* Databases. */
    {"redis://127.0.0.1:6379/abc", NULL, RELINK_INVALID_CONFIG, "database `abc` is not a number"},
    {"redis://127.0.0.1:6379/-1", NULL, RELINK_INVALID_CONFIG, "database -1 is negative"},
    {"redis://127.0.0.1:6379/99999999999", NULL, RELINK_INVALID_CONFIG, "database 99999999999 is out of range"},
    {"redis+unix:///tmp/redis.sock?db=abc", NULL, RELINK_INVALID_CONFIG, "database `abc` is not a number"},
    /* Credentials: the password is never quoted. */
    {"redis://:s3cr%zzet@127.0.0.1:6379", NULL, RELINK_INVALID_CONFIG, "not a percent-escape"},
    {"redis://us%4@127.0.0.1:6379", NULL, RELINK_INVALID_CONFIG, "not a percent-escape"},
    /* Query and Unix forms. */
    {"redis://127.0.0.1:6379?protocol=s3cret", NULL, RELINK_INVALID_CONFIG, "`protocol=resp2` or `protocol=resp3`"},
    {"unix://", NULL, RELINK_INVALID_CONFIG, "needs the socket's path"},
    {"redis+unix://host/tmp/redis.sock", NULL, RELINK_INVALID_CONFIG, "needs the socket's path"},
    /* TLS options (the library is built with TLS here; a build without it
     * says so in a C user's words, which relink-ffi's unit tests check). */
    {"redis://127.0.0.1:6379", tls_ca_on_a_plain_url, RELINK_INVALID_CONFIG, "invalid option `tls_*`: applies to a TLS URL"},
    {"rediss://127.0.0.1:6379", tls_cert_without_key, RELINK_INVALID_CONFIG, "invalid option `tls_key_file`: is required with `tls_cert_file`"},
    {"valkeys://:s3cret@127.0.0.1:6379", tls_ca_missing, RELINK_INVALID_CONFIG, "invalid option `tls_ca_file`: cannot read `/nonexistent/ca.pem`"},
    {"rediss://127.0.0.1:6379", tls_danger_unknown, RELINK_INVALID_ARGUMENT, "`tls_danger_accept_invalid_certs` is 7"},
    /* Options: zero durations. */
    {GOOD_URL, heartbeat_interval_zero, RELINK_INVALID_CONFIG, "invalid option `heartbeat_interval_ms`: must be at least 1ms"},
    {GOOD_URL, heartbeat_timeout_zero, RELINK_INVALID_CONFIG, "invalid option `heartbeat_timeout_ms`: must be at least 1ms"},
    {GOOD_URL, connect_timeout_zero, RELINK_INVALID_CONFIG, "invalid option `connect_timeout_ms`: must be at least 1ms"},
    {GOOD_URL, response_timeout_zero, RELINK_INVALID_CONFIG, "invalid option `response_timeout_ms`: must be at least 1ms"},
    {GOOD_URL, queue_max_wait_zero, RELINK_INVALID_CONFIG, "invalid option `queue_max_wait_ms`: must be at least 1ms"},
    {GOOD_URL, initial_delay_zero, RELINK_INVALID_CONFIG, "`initial_delay`: must be at least 1ms"},
    /* Options: negative durations and counts (wrapped by C). */
    {GOOD_URL, heartbeat_interval_negative, RELINK_INVALID_CONFIG, "invalid option `heartbeat_interval_ms`: must be at most"},
    {GOOD_URL, connect_timeout_negative, RELINK_INVALID_CONFIG, "invalid option `connect_timeout_ms`: must be at most"},
    {GOOD_URL, response_timeout_negative, RELINK_INVALID_CONFIG, "invalid option `response_timeout_ms`: must be at most"},
    {GOOD_URL, deadline_negative, RELINK_INVALID_CONFIG, "invalid option `deadline_ms`: must be at most"},
    {GOOD_URL, max_retries_negative, RELINK_INVALID_CONFIG, "invalid option `max_retries`: must be at most 100"},
    /* Options: other values out of range. */
    {GOOD_URL, queue_capacity_zero, RELINK_INVALID_CONFIG, "invalid option `queue_capacity`: must be between 1 and"},
    {GOOD_URL, multiplier_nan, RELINK_INVALID_CONFIG, "`multiplier`: must be a finite number"},
    {GOOD_URL, multiplier_below_one, RELINK_INVALID_CONFIG, "`multiplier`"},
    {GOOD_URL, max_delay_below_initial, RELINK_INVALID_CONFIG, "`max_delay`: must be at least `initial_delay`"},
    {GOOD_URL, client_name_empty, RELINK_INVALID_CONFIG, "`client_name`: must not be empty"},
    {GOOD_URL, client_name_space, RELINK_INVALID_CONFIG, "`client_name`"},
    /* Options: enumeration values and strings C can get wrong. */
    {GOOD_URL, outage_policy_unknown, RELINK_INVALID_ARGUMENT, "`outage_policy` is 7"},
    {GOOD_URL, strategy_unknown, RELINK_INVALID_ARGUMENT, "strategy"},
    {GOOD_URL, jitter_unknown, RELINK_INVALID_ARGUMENT, "jitter"},
    {GOOD_URL, client_name_not_utf8, RELINK_INVALID_ARGUMENT, "`client_name` is not valid UTF-8"},
    /* Client-side caching. */
    {GOOD_URL, cache_unknown, RELINK_INVALID_ARGUMENT, "`cache` is 9"},
    {GOOD_URL, cache_max_entries_zero, RELINK_INVALID_CONFIG, "invalid option `cache_max_entries`: must be at least 1"},
    {GOOD_URL, cache_max_bytes_zero, RELINK_INVALID_CONFIG, "invalid option `cache_max_bytes`: must be at least 1"},
    {GOOD_URL, cache_ttl_zero, RELINK_INVALID_CONFIG, "invalid option `cache_ttl_ms`: must be at least 1ms"},
    {GOOD_URL, cache_prefixes_without_broadcast, RELINK_INVALID_CONFIG, "invalid option `cache_prefixes`: prefixes need"},
    {GOOD_URL, cache_prefixes_overlapping, RELINK_INVALID_CONFIG, "invalid option `cache_prefixes`: prefixes overlap"},
    {GOOD_URL, cache_prefixes_null, RELINK_INVALID_ARGUMENT, "`cache_prefixes` must not be NULL when `cache_prefix_count` is 1"},
    {GOOD_URL, cache_prefix_null, RELINK_INVALID_ARGUMENT, "`cache_prefixes[0]` must not be NULL"},
    {GOOD_URL, cache_prefix_count_negative, RELINK_INVALID_CONFIG, "invalid option `cache_prefix_count`"},
    {"redis://127.0.0.1:6379?protocol=resp2", cache_on, RELINK_INVALID_CONFIG, "invalid option `cache`: client-side caching needs RESP3"},
};

/* What no message may say to a C user: they cannot act on it (a Cargo.toml,
 * a cargo feature, redis-rs's error kinds), or it is a secret. */
static const char *const never_said[] = {
    "Cargo", "cargo", "feature", "tls-rustls", "InvalidClientConfig", "s3cr",
};

static int row_failures;

static void check_row(size_t i, const struct row *r) {
  relink_options options;
  CHECK_OK(relink_options_default(&options, sizeof options));
  if (r->tweak != NULL) {
    r->tweak(&options);
  }
  relink_client *client = NULL;
  relink_error *err = NULL;
  relink_code code = relink_client_connect(r->url, &options, &client, &err);
  const char *message = relink_error_message(err);
  const char *url = r->url != NULL ? r->url : "(NULL)";
  int ok = code == r->code && relink_error_code(err) == r->code &&
           relink_error_outcome(err) == RELINK_OUTCOME_NONE && client == NULL &&
           strstr(message, r->needle) != NULL;
  for (size_t j = 0; j < sizeof never_said / sizeof never_said[0]; j++) {
    if (strstr(message, never_said[j]) != NULL) {
      fprintf(stderr, "row %zu (%s): the message says `%s`\n", i, url, never_said[j]);
      ok = 0;
    }
  }
  if (!ok) {
    fprintf(stderr, "row %zu (%s): expected %s with \"%s\", got %s: %s\n", i, url,
            relink_code_name(r->code), r->needle, relink_code_name(code), message);
    row_failures++;
  }
  relink_error_free(err);
  relink_client_free(client); /* NULL unless the row failed */

  /* Without `err`, the code alone tells; still nothing is handed out. */
  client = NULL;
  code = relink_client_connect(r->url, &options, &client, NULL);
  if (code != r->code || client != NULL) {
    fprintf(stderr, "row %zu (%s), err NULL: expected %s, got %s\n", i, url,
            relink_code_name(r->code), relink_code_name(code));
    relink_client_free(client);
    row_failures++;
  }
  checks_passed++;
}

int main(void) {
  size_t rows = sizeof table / sizeof table[0];
  for (size_t i = 0; i < rows; i++) {
    check_row(i, &table[i]);
  }
  CHECK(row_failures == 0);

  /* NULL out-parameter and NULL options (the defaults) with a bad URL. */
  relink_error *err = NULL;
  CHECK(relink_client_connect(GOOD_URL, NULL, NULL, &err) == RELINK_INVALID_ARGUMENT);
  CHECK(strstr(relink_error_message(err), "`out` must not be NULL") != NULL);
  relink_error_free(err);
  relink_client *client = NULL;
  err = NULL;
  CHECK(relink_client_connect("redis://127.0.0.1:0", NULL, &client, &err) == RELINK_INVALID_CONFIG);
  CHECK(strstr(relink_error_message(err), "port 0") != NULL && client == NULL);
  relink_error_free(err);

  /* The accepted forms still make a client (nothing need listen there). */
  const char *good[] = {"redis://127.0.0.1:1", "valkey://127.0.0.1:1/2",
                        "redis://:p%40ss@127.0.0.1:1?protocol=resp2",
                        "redis+unix:///tmp/no-such-relink.sock?db=1"};
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
    CHECK_OK(relink_client_connect(good[i], NULL, &client, errp_));
    relink_client_free(client);
    client = NULL;
  }
  printf("test_bad_config: %zu rows, %d passed, 0 failed\n", rows, checks_passed);
  return 0;
}
