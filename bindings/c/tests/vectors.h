/*
 * Reading the golden vector files of tests/vectors/ (the files the Rust and
 * JS tests replay), for the C tests that replay them: a minimal JSON reader
 * and the shapes more than one file shares (a backoff policy).
 *
 * The reader knows enough of JSON for those files: objects, arrays, strings
 * without escapes (refused rather than misread), numbers kept as their
 * literal text, true, false and null. A malformed file fails the test
 * through CHECK.
 *
 * Include after support.h. Everything is `static inline`, so a test that
 * uses only part of it compiles cleanly under -Wall -Wextra -Werror.
 */
#ifndef RELINK_TEST_VECTORS_H
#define RELINK_TEST_VECTORS_H

#include <ctype.h>

#include "support.h"

typedef enum { J_NULL, J_BOOL, J_NUMBER, J_STRING, J_ARRAY, J_OBJECT } json_type;

typedef struct json {
  json_type type;
  char *text;          /* J_STRING: the string; J_NUMBER: the literal; J_BOOL: "true"/"false" */
  struct json *items;  /* J_ARRAY / J_OBJECT: the values */
  char **keys;         /* J_OBJECT: the keys */
  size_t len;
} json;

static inline char *json_copy(const char *start, size_t n) {
  char *s = malloc(n + 1);
  CHECK(s != NULL);
  memcpy(s, start, n);
  s[n] = '\0';
  return s;
}

static inline void json_space(const char **at) {
  while (isspace((unsigned char)**at)) (*at)++;
}

static inline char *json_string_body(const char **at) {
  CHECK(**at == '"');
  (*at)++;
  const char *start = *at;
  while (**at != '"') {
    /* The vector files use no escapes; refuse rather than misread one. */
    CHECK(**at != '\0' && **at != '\\');
    (*at)++;
  }
  char *s = json_copy(start, (size_t)(*at - start));
  (*at)++;
  return s;
}

static inline void json_push(json *out, size_t *cap) {
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

static inline void json_value(const char **at, json *out) {
  memset(out, 0, sizeof *out);
  json_space(at);
  char c = **at;
  if (c == '{' || c == '[') {
    out->type = c == '{' ? J_OBJECT : J_ARRAY;
    char close = c == '{' ? '}' : ']';
    size_t cap = 0;
    (*at)++;
    json_space(at);
    if (**at == close) {
      (*at)++;
      return;
    }
    for (;;) {
      json_push(out, &cap);
      if (out->type == J_OBJECT) {
        json_space(at);
        out->keys[out->len] = json_string_body(at);
        json_space(at);
        CHECK(**at == ':');
        (*at)++;
      }
      json_value(at, &out->items[out->len]);
      out->len++;
      json_space(at);
      if (**at == ',') {
        (*at)++;
        continue;
      }
      CHECK(**at == close);
      (*at)++;
      return;
    }
  } else if (c == '"') {
    out->type = J_STRING;
    out->text = json_string_body(at);
  } else if (strncmp(*at, "null", 4) == 0) {
    out->type = J_NULL;
    *at += 4;
  } else if (strncmp(*at, "true", 4) == 0 || strncmp(*at, "false", 5) == 0) {
    out->type = J_BOOL;
    out->text = json_copy(*at, c == 't' ? 4 : 5);
    *at += c == 't' ? 4 : 5;
  } else {
    const char *start = *at;
    while (**at && strchr("+-0123456789.eE", **at)) (*at)++;
    CHECK(*at > start);
    out->type = J_NUMBER;
    out->text = json_copy(start, (size_t)(*at - start));
  }
}

/* Parses all of `text` (nothing but space may follow the value). */
static inline void json_parse(const char *text, json *out) {
  const char *at = text;
  json_value(&at, out);
  json_space(&at);
  CHECK(*at == '\0');
}

static inline void json_free(json *v) {
  for (size_t i = 0; i < v->len; i++) {
    json_free(&v->items[i]);
    if (v->keys) free(v->keys[i]);
  }
  free(v->items);
  free(v->keys);
  free(v->text);
}

/* The value of `key` in `object`, or NULL. */
static inline const json *json_get(const json *object, const char *key) {
  CHECK(object != NULL && object->type == J_OBJECT);
  for (size_t i = 0; i < object->len; i++) {
    if (strcmp(object->keys[i], key) == 0) return &object->items[i];
  }
  return NULL;
}

/* The value of `key` in `object`, which must be there. */
static inline const json *json_need(const json *object, const char *key) {
  const json *v = json_get(object, key);
  if (v == NULL) {
    fprintf(stderr, "the vectors lack a \"%s\" field\n", key);
    exit(1);
  }
  return v;
}

static inline int json_is_null(const json *v) { return v == NULL || v->type == J_NULL; }

/* A non-negative integer, exactly (u64 values above 2^53 included). */
static inline uint64_t json_u64(const json *v) {
  CHECK(v != NULL && v->type == J_NUMBER);
  char *end = NULL;
  errno = 0;
  unsigned long long n = strtoull(v->text, &end, 10);
  CHECK(*end == '\0' && errno == 0 && v->text[0] != '-');
  return (uint64_t)n;
}

static inline double json_f64(const json *v) {
  CHECK(v != NULL && v->type == J_NUMBER);
  return strtod(v->text, NULL);
}

/* relink's duration text in whole units: "100ms", "5s", "2m", "1h". */
static inline uint64_t json_duration_ms(const json *v) {
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

/* The index of the string `v` in `names`, which must hold it. */
static inline uint32_t json_named(const json *v, const char *const *names, size_t count) {
  CHECK(v != NULL && v->type == J_STRING);
  for (size_t i = 0; i < count; i++) {
    if (names[i] != NULL && strcmp(v->text, names[i]) == 0) return (uint32_t)i;
  }
  fprintf(stderr, "unknown name in the vectors: %s\n", v->text);
  exit(1);
}

/* The whole file at `path`, NUL-terminated; the caller frees it. */
static inline char *json_read_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) {
    fprintf(stderr, "cannot open %s (set RELINK_VECTORS_DIR)\n", path);
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

/* Reads tests/vectors/<name>: from $RELINK_VECTORS_DIR (xtask sets it), else
 * relative to the workspace root. */
static inline void json_read_vectors(const char *name, json *out) {
  const char *dir = getenv("RELINK_VECTORS_DIR");
  if (dir == NULL || dir[0] == '\0') dir = "tests/vectors";
  size_t n = strlen(dir) + 1 + strlen(name) + 1;
  char *path = malloc(n);
  CHECK(path != NULL);
  snprintf(path, n, "%s/%s", dir, name);
  char *text = json_read_file(path);
  json_parse(text, out);
  free(text);
  free(path);
}

/* A backoff policy in the core's serde shape (backoff.json's "policy",
 * supervisor.json's "config.backoff"). */
static inline void vectors_backoff_policy(const json *p, relink_backoff_policy *out) {
  /* Indexes are the RELINK_BACKOFF_* and RELINK_JITTER_* values. */
  static const char *const strategies[] = {"constant", "linear", "exponential"};
  static const char *const jitters[] = {"none", "full", "equal", "decorrelated", "proportional"};
  CHECK_OK(relink_backoff_policy_default(out));
  out->strategy = json_named(json_get(p, "strategy"), strategies, 3);
  out->jitter = json_named(json_get(p, "jitter"), jitters, 5);
  out->initial_delay_ms = json_duration_ms(json_get(p, "initial_delay"));
  out->max_delay_ms = json_duration_ms(json_get(p, "max_delay"));
  const json *v;
  if ((v = json_get(p, "multiplier")) != NULL) out->multiplier = json_f64(v);
  if ((v = json_get(p, "step")) != NULL) out->step_ms = json_duration_ms(v);
  if ((v = json_get(p, "jitter_factor")) != NULL) out->jitter_factor = json_f64(v);
  v = json_get(p, "max_attempts");
  out->max_attempts = json_is_null(v) ? 0 : (uint32_t)json_u64(v);
  v = json_get(p, "max_elapsed");
  out->max_elapsed_ms = json_is_null(v) ? 0 : json_duration_ms(v);
}

/* A failure kind in the core's serde shape ("io", ..., "moved", or
 * {"server_busy": "loading"}) as its RELINK_FAILURE_* value (call.json's
 * inputs and failures; supervisor.json's kinds). */
static inline uint32_t vectors_failure(const json *v) {
  /* Indexes are the RELINK_FAILURE_* values; NULL where a value has no plain
   * name (_NONE, and the server_busy ones). */
  static const char *const kinds[] = {NULL,      "io",      "closed", "timeout", "auth",
                                      "protocol", "command", NULL,     NULL,      NULL,
                                      NULL,      NULL,      "moved"};
  static const char *const busy[] = {"loading", "busy", "master_down", "read_only", "try_again"};
  CHECK(v != NULL);
  if (v->type == J_OBJECT) {
    CHECK(v->len == 1);
    return RELINK_FAILURE_SERVER_BUSY_LOADING + json_named(json_need(v, "server_busy"), busy, 5);
  }
  return json_named(v, kinds, sizeof kinds / sizeof kinds[0]);
}

#endif
