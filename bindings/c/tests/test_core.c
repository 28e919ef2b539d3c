/*
 * The core's policy objects through the C API: the golden backoff vectors
 * of tests/vectors/backoff.json (the file the Rust and JS tests replay,
 * read here with a minimal JSON reader), and the sync cursor.
 *
 * The vectors' path comes from $RELINK_VECTORS (xtask sets it), else the
 * path relative to the workspace root.
 */
#define _GNU_SOURCE
#include <ctype.h>

#include "support.h"

/* ---- a minimal JSON reader: enough for the vector files ---------------- */

typedef enum { J_NULL, J_BOOL, J_NUMBER, J_STRING, J_ARRAY, J_OBJECT } json_type;

typedef struct json {
  json_type type;
  char *text;          /* J_STRING: the string; J_NUMBER: the literal */
  struct json *items;  /* J_ARRAY / J_OBJECT: the values */
  char **keys;         /* J_OBJECT: the keys */
  size_t len;
} json;

static const char *json_at;

static void json_space(void) {
  while (isspace((unsigned char)*json_at)) json_at++;
}

static char *json_string_body(void) {
  CHECK(*json_at == '"');
  json_at++;
  const char *start = json_at;
  while (*json_at != '"') {
    /* The vector files use no escapes; refuse rather than misread one. */
    CHECK(*json_at != '\0' && *json_at != '\\');
    json_at++;
  }
  size_t n = (size_t)(json_at - start);
  char *s = malloc(n + 1);
  CHECK(s != NULL);
  memcpy(s, start, n);
  s[n] = '\0';
  json_at++;
  return s;
}

static void json_value(json *out);

static void json_push(json *out, size_t *cap) {
  if (out->len == *cap) {
    *cap = *cap ? *cap * 2 : 4;
    out->items = realloc(out->items, *cap * sizeof *out->items);
    CHECK(out->items != NULL);
    if (out->type == J_OBJECT) {
      out->keys = realloc(out->keys, *cap * sizeof *out->keys);
      CHECK(out->keys != NULL);
    }
  }
}

static void json_value(json *out) {
  memset(out, 0, sizeof *out);
  json_space();
  char c = *json_at;
  if (c == '{' || c == '[') {
    out->type = c == '{' ? J_OBJECT : J_ARRAY;
    char close = c == '{' ? '}' : ']';
    size_t cap = 0;
    json_at++;
    json_space();
    if (*json_at == close) {
      json_at++;
      return;
    }
    for (;;) {
      json_push(out, &cap);
      if (out->type == J_OBJECT) {
        json_space();
        out->keys[out->len] = json_string_body();
        json_space();
        CHECK(*json_at == ':');
        json_at++;
      }
      json_value(&out->items[out->len]);
      out->len++;
      json_space();
      if (*json_at == ',') {
        json_at++;
        continue;
      }
      CHECK(*json_at == close);
      json_at++;
      return;
    }
  } else if (c == '"') {
    out->type = J_STRING;
    out->text = json_string_body();
  } else if (strncmp(json_at, "null", 4) == 0) {
    out->type = J_NULL;
    json_at += 4;
  } else if (strncmp(json_at, "true", 4) == 0 || strncmp(json_at, "false", 5) == 0) {
    out->type = J_BOOL;
    json_at += c == 't' ? 4 : 5;
  } else {
    const char *start = json_at;
    while (*json_at && strchr("+-0123456789.eE", *json_at)) json_at++;
    CHECK(json_at > start);
    out->type = J_NUMBER;
    size_t n = (size_t)(json_at - start);
    out->text = malloc(n + 1);
    CHECK(out->text != NULL);
    memcpy(out->text, start, n);
    out->text[n] = '\0';
  }
}

static void json_free(json *v) {
  for (size_t i = 0; i < v->len; i++) {
    json_free(&v->items[i]);
    if (v->keys) free(v->keys[i]);
  }
  free(v->items);
  free(v->keys);
  free(v->text);
}

static const json *json_get(const json *object, const char *key) {
  CHECK(object->type == J_OBJECT);
  for (size_t i = 0; i < object->len; i++) {
    if (strcmp(object->keys[i], key) == 0) return &object->items[i];
  }
  return NULL;
}

static uint64_t json_u64(const json *v) {
  CHECK(v != NULL && v->type == J_NUMBER);
  char *end = NULL;
  unsigned long long n = strtoull(v->text, &end, 10);
  CHECK(*end == '\0');
  return (uint64_t)n;
}

static double json_f64(const json *v) {
  CHECK(v != NULL && v->type == J_NUMBER);
  return strtod(v->text, NULL);
}

/* relink's duration text in whole units: "100ms", "5s", "2m", "1h". */
static uint64_t duration_ms(const json *v) {
  CHECK(v != NULL && v->type == J_STRING);
  char *unit = NULL;
  unsigned long long n = strtoull(v->text, &unit, 10);
  CHECK(unit != v->text);
  if (strcmp(unit, "ms") == 0) return n;
  if (strcmp(unit, "s") == 0) return n * 1000;
  if (strcmp(unit, "m") == 0) return n * 60 * 1000;
  if (strcmp(unit, "h") == 0) return n * 3600 * 1000;
  fprintf(stderr, "unsupported duration in the vectors: %s\n", v->text);
  exit(1);
}

static uint32_t named(const json *v, const char *const *names, size_t count) {
  CHECK(v != NULL && v->type == J_STRING);
  for (size_t i = 0; i < count; i++) {
    if (strcmp(v->text, names[i]) == 0) return (uint32_t)i;
  }
  fprintf(stderr, "unknown name in the vectors: %s\n", v->text);
  exit(1);
}

static char *read_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) {
    fprintf(stderr, "cannot open %s (set RELINK_VECTORS)\n", path);
    exit(1);
  }
  CHECK(fseek(f, 0, SEEK_END) == 0);
  long size = ftell(f);
  CHECK(size > 0 && fseek(f, 0, SEEK_SET) == 0);
  char *text = malloc((size_t)size + 1);
  CHECK(text != NULL && fread(text, 1, (size_t)size, f) == (size_t)size);
  text[size] = '\0';
  fclose(f);
  return text;
}

/* ---- the golden vectors ------------------------------------------------ */

static void policy_from_json(const json *p, relink_backoff_policy *out) {
  /* Indexes are the RELINK_BACKOFF_* and RELINK_JITTER_* values. */
  static const char *const strategies[] = {"constant", "linear", "exponential"};
  static const char *const jitters[] = {"none", "full", "equal", "decorrelated", "proportional"};
  CHECK_OK(relink_backoff_policy_default(out));
  out->strategy = named(json_get(p, "strategy"), strategies, 3);
  out->jitter = named(json_get(p, "jitter"), jitters, 5);
  out->initial_delay_ms = duration_ms(json_get(p, "initial_delay"));
  out->max_delay_ms = duration_ms(json_get(p, "max_delay"));
  const json *v;
  if ((v = json_get(p, "multiplier")) != NULL) out->multiplier = json_f64(v);
  if ((v = json_get(p, "step")) != NULL) out->step_ms = duration_ms(v);
  if ((v = json_get(p, "jitter_factor")) != NULL) out->jitter_factor = json_f64(v);
  v = json_get(p, "max_attempts");
  out->max_attempts = v == NULL || v->type == J_NULL ? 0 : (uint32_t)json_u64(v);
  v = json_get(p, "max_elapsed");
  out->max_elapsed_ms = v == NULL || v->type == J_NULL ? 0 : duration_ms(v);
}

static void golden_backoff_vectors(void) {
  const char *path = getenv("RELINK_VECTORS");
  if (path == NULL || path[0] == '\0') path = "tests/vectors/backoff.json";
  char *text = read_file(path);
  json_at = text;
  json root;
  json_value(&root);
  const json *cases = json_get(&root, "cases");
  CHECK(cases != NULL && cases->type == J_ARRAY && cases->len > 0);
  size_t delays_checked = 0;
  for (size_t c = 0; c < cases->len; c++) {
    const json *item = &cases->items[c];
    const json *name = json_get(item, "name");
    const json *expected = json_get(item, "delays_ms");
    CHECK(expected != NULL && expected->type == J_ARRAY);
    relink_backoff_policy policy;
    policy_from_json(json_get(item, "policy"), &policy);
    relink_backoff *backoff = NULL;
    CHECK_OK(relink_backoff_new(&policy, json_u64(json_get(item, "seed")), &backoff, errp_));
    /* As the vectors were made: elapsed = the sum of the delays so far;
     * at most 12 delays, fewer when the policy gave up. */
    uint64_t elapsed = 0;
    for (size_t i = 0; i < expected->len; i++) {
      uint64_t delay = 0;
      CHECK(relink_backoff_next_delay(backoff, elapsed, &delay));
      if (delay != json_u64(&expected->items[i])) {
        fprintf(stderr, "vector \"%s\", delay %zu: got %llu, want %s\n", name->text, i,
                (unsigned long long)delay, expected->items[i].text);
        exit(1);
      }
      elapsed += delay;
      delays_checked++;
    }
    if (expected->len < 12) {
      uint64_t delay = 0;
      CHECK(!relink_backoff_next_delay(backoff, elapsed, &delay));
    }
    CHECK(relink_backoff_attempts(backoff) == expected->len);
    /* After a reset the sequence starts from the initial delay again. */
    relink_backoff_reset(backoff);
    CHECK(relink_backoff_attempts(backoff) == 0);
    relink_backoff_free(backoff);
  }
  printf("golden backoff vectors: %zu cases, %zu delays match\n", cases->len, delays_checked);
  json_free(&root);
  free(text);
}

/* ---- the sync cursor --------------------------------------------------- */

static void sync_cursor(void) {
  relink_sync_cursor *cursor = NULL;
  relink_offer offer;
  uint64_t epoch = 0;
  CHECK_OK(relink_sync_cursor_new(&cursor, errp_));
  CHECK(!relink_sync_cursor_epoch(cursor, &epoch));

  CHECK_OK(relink_sync_cursor_offer(cursor, 7, 1, &offer, errp_));
  CHECK(offer.verdict == RELINK_OFFER_APPLY);
  CHECK(relink_sync_cursor_epoch(cursor, &epoch) && epoch == 7);
  CHECK_OK(relink_sync_cursor_offer(cursor, 7, 1, &offer, errp_));
  CHECK(offer.verdict == RELINK_OFFER_DUPLICATE);
  CHECK_OK(relink_sync_cursor_offer(cursor, 7, 3, &offer, errp_));
  CHECK(offer.verdict == RELINK_OFFER_GAP && offer.expected == 2 && offer.got == 3);
  CHECK_OK(relink_sync_cursor_offer(cursor, 7, 2, &offer, errp_));
  CHECK(offer.verdict == RELINK_OFFER_APPLY);
  CHECK_OK(relink_sync_cursor_offer(cursor, 8, 3, &offer, errp_));
  CHECK(offer.verdict == RELINK_OFFER_WRONG_EPOCH && offer.expected == 7 && offer.got == 8);
  CHECK(relink_sync_cursor_seq(cursor) == 2);
  relink_sync_cursor_free(cursor);

  relink_resume_plan plan;
  CHECK_OK(relink_sync_cursor_at(7, 10, &cursor, errp_));
  relink_server_position same = {7, 1, 10};
  CHECK_OK(relink_sync_cursor_resume_plan(cursor, &same, &plan, errp_));
  CHECK(plan.plan == RELINK_PLAN_UP_TO_DATE);
  relink_server_position ahead = {7, 5, 20};
  CHECK_OK(relink_sync_cursor_resume_plan(cursor, &ahead, &plan, errp_));
  CHECK(plan.plan == RELINK_PLAN_INCREMENTAL && plan.after == 10);
  relink_server_position trimmed = {7, 12, 20};
  CHECK_OK(relink_sync_cursor_resume_plan(cursor, &trimmed, &plan, errp_));
  CHECK(plan.plan == RELINK_PLAN_FULL_RESYNC && plan.reason == RELINK_RESYNC_TRIMMED);
  relink_server_position empty_log = {7, 0, 20};
  CHECK_OK(relink_sync_cursor_resume_plan(cursor, &empty_log, &plan, errp_));
  CHECK(plan.plan == RELINK_PLAN_FULL_RESYNC && plan.reason == RELINK_RESYNC_TRIMMED);
  relink_server_position behind = {7, 1, 9};
  CHECK_OK(relink_sync_cursor_resume_plan(cursor, &behind, &plan, errp_));
  CHECK(plan.plan == RELINK_PLAN_FULL_RESYNC && plan.reason == RELINK_RESYNC_SERVER_BEHIND);
  relink_server_position other = {9, 1, 10};
  CHECK_OK(relink_sync_cursor_resume_plan(cursor, &other, &plan, errp_));
  CHECK(plan.plan == RELINK_PLAN_FULL_RESYNC && plan.reason == RELINK_RESYNC_EPOCH_CHANGED);
  relink_sync_cursor_reset_to(cursor, 9, 10);
  CHECK_OK(relink_sync_cursor_resume_plan(cursor, &other, &plan, errp_));
  CHECK(plan.plan == RELINK_PLAN_UP_TO_DATE);
  relink_sync_cursor_free(cursor);

  CHECK_OK(relink_sync_cursor_new(&cursor, errp_));
  CHECK_OK(relink_sync_cursor_resume_plan(cursor, &same, &plan, errp_));
  CHECK(plan.plan == RELINK_PLAN_FULL_RESYNC && plan.reason == RELINK_RESYNC_INITIAL);
  relink_sync_cursor_free(cursor);
}

int main(void) {
  golden_backoff_vectors();
  sync_cursor();
  printf("test_core: %d passed, 0 failed\n", checks_passed);
  return 0;
}
