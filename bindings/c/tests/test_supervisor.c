/*
 * The core's connectivity supervisor through the C API: every case of the
 * golden vectors in tests/vectors/supervisor.json (the file the Rust and JS
 * tests replay), to the millisecond: each step's input, every output of the
 * drain that follows it (up to and including the TIMEOUT or IDLE), and the
 * health after it. Then the argument checks.
 *
 * The vectors' directory comes from $RELINK_VECTORS_DIR (xtask sets it),
 * else tests/vectors relative to the workspace root.
 */
#define _GNU_SOURCE
#include "support.h"
#include "vectors.h"

/* Names as the vectors spell them, indexed by the C constants' values (NULL
 * where a value has no name: the _NONE constants). */
static const char *const STATES[] = {"idle", "connecting", "ready", "transient_failure",
                                     "shutdown"};
static const char *const FAILURES[] = {
    NULL, "io", "closed", "timeout", "auth", "protocol", "command",
    NULL, NULL, NULL, NULL, NULL, /* the server_busy ones: {"server_busy": reason} */
    "moved"};
static const char *const BUSY_REASONS[] = {"loading", "busy", "master_down", "read_only",
                                           "try_again"};
static const char *const INPUTS[] = {"start",           "connected",        "connect_failed",
                                     "pong",            "activity",         "command_failed",
                                     "connection_lost", "server_moved",     "shutdown",
                                     "ping_failed",     "work_outstanding", "aside_checked",
                                     "reconfigured"};
static const char *const VERDICTS[] = {NULL, "busy", "gone", "unreachable"};
static const char *const OUTPUTS[] = {"action", "event", "timeout", "idle"};
static const char *const ACTIONS[] = {NULL, "connect", "send_ping", "disconnect", "check_aside"};
static const char *const EVENTS[] = {NULL,
                                     "state_changed",
                                     "connected",
                                     "reconnected",
                                     "disconnected",
                                     "reconnect_scheduled",
                                     "heartbeat_missed",
                                     "gave_up",
                                     "busy_confirmed",
                                     "connect_attempt_failed",
                                     "server_moved",
                                     "failover_started",
                                     "failover_ended"};
static const char *const CAUSES[] = {
    NULL,        "refused", "timeout", "unknown_host", "dns",       "unreachable", "tls",
    "auth",      "no_perm", "denied",  "not_redis",    "server_full",
    NULL,        NULL,      NULL,      NULL,           NULL, /* {"server_busy": reason} */
    "rejected",  "closed",  "io",      "protocol", "not_master", "server_error"};
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* What a step is compared with, for messages. */
static const char *case_name;
static size_t step_index;
static uint64_t step_at;

static void mismatch(const char *what, unsigned long long got, unsigned long long want) {
  fprintf(stderr, "supervisor vector \"%s\", step %zu (at %llu): %s: got %llu, want %llu\n",
          case_name, step_index, (unsigned long long)step_at, what, got, want);
  exit(1);
}

#define SAME(what, got, want)                                              \
  do {                                                                     \
    unsigned long long got_ = (got), want_ = (want);                       \
    if (got_ != want_) mismatch(what, got_, want_);                        \
    checks_passed++;                                                       \
  } while (0)

/* An evidence array: NUL-terminated within its size, and the text wanted. */
static void same_text(const char *what, const char (*got)[RELINK_EVIDENCE_SIZE],
                      const char *want) {
  if (memchr(*got, '\0', RELINK_EVIDENCE_SIZE) == NULL || strcmp(*got, want) != 0) {
    fprintf(stderr, "supervisor vector \"%s\", step %zu (at %llu): %s: got \"%.*s\", want \"%s\"\n",
            case_name, step_index, (unsigned long long)step_at, what, RELINK_EVIDENCE_SIZE,
            *got, want);
    exit(1);
  }
  checks_passed++;
}

static int json_true(const json *v) {
  CHECK(v != NULL && v->type == J_BOOL);
  return strcmp(v->text, "true") == 0;
}

/* A connect cause in the core's serde shape: "auth", ... or {"server_busy": "loading"}. */
static uint32_t cause_from_json(const json *v) {
  CHECK(v != NULL);
  if (v->type == J_OBJECT) {
    CHECK(v->len == 1);
    return RELINK_CAUSE_SERVER_BUSY_LOADING +
           json_named(json_need(v, "server_busy"), BUSY_REASONS, COUNT(BUSY_REASONS));
  }
  return json_named(v, CAUSES, COUNT(CAUSES));
}

/* Copies the vectors' evidence into an output's array (it fits: the core
 * keeps at most 120 bytes). */
static void evidence_from_json(const json *v, char (*out)[RELINK_EVIDENCE_SIZE]) {
  CHECK(v != NULL && v->type == J_STRING && strlen(v->text) < RELINK_EVIDENCE_SIZE);
  memset(*out, 0, RELINK_EVIDENCE_SIZE);
  memcpy(*out, v->text, strlen(v->text));
}

/* A failure kind in the core's serde shape: "io", ... or {"server_busy": "loading"}. */
static uint32_t failure_from_json(const json *v) {
  CHECK(v != NULL);
  if (v->type == J_OBJECT) {
    CHECK(v->len == 1);
    return RELINK_FAILURE_SERVER_BUSY_LOADING +
           json_named(json_need(v, "server_busy"), BUSY_REASONS, COUNT(BUSY_REASONS));
  }
  return json_named(v, FAILURES, COUNT(FAILURES));
}

/* Reads the fields of a tagged value; counts them, so that a field the C
 * form does not carry fails the test instead of being skipped. */
typedef struct {
  const json *value;
  size_t used;
} fields;

static const json *field(fields *f, const char *key) {
  f->used++;
  return json_need(f->value, key);
}

static void all_fields_read(const fields *f) {
  if (f->used != f->value->len) {
    fprintf(stderr, "supervisor vector \"%s\", step %zu: a field the C form lacks\n", case_name,
            step_index);
    exit(1);
  }
}

static relink_supervisor_input input_from_json(const json *v) {
  relink_supervisor_input in;
  memset(&in, 0, sizeof in);
  fields f = {v, 0};
  in.input = json_named(field(&f, "type"), INPUTS, COUNT(INPUTS));
  switch (in.input) {
    case RELINK_INPUT_CONNECTED:
      in.attempt = (uint32_t)json_u64(field(&f, "attempt"));
      break;
    case RELINK_INPUT_CONNECT_FAILED:
      in.attempt = (uint32_t)json_u64(field(&f, "attempt"));
      in.cause = cause_from_json(field(&f, "cause"));
      /* Borrowed from the parsed vectors, which outlive the call. */
      in.evidence = field(&f, "evidence")->text;
      break;
    case RELINK_INPUT_PONG:
      in.ping_id = json_u64(field(&f, "id"));
      break;
    case RELINK_INPUT_PING_FAILED:
      in.ping_id = json_u64(field(&f, "id"));
      in.failure = failure_from_json(field(&f, "kind"));
      break;
    case RELINK_INPUT_WORK_OUTSTANDING:
      in.ping_id = json_u64(field(&f, "id"));
      break;
    case RELINK_INPUT_ASIDE_CHECKED: {
      in.ping_id = json_u64(field(&f, "id"));
      /* The verdict: {"type": "busy"}, or {"type": "unreachable", "kind": ...}. */
      fields v = {field(&f, "verdict"), 0};
      in.verdict = json_named(field(&v, "type"), VERDICTS, COUNT(VERDICTS));
      if (in.verdict == RELINK_ASIDE_UNREACHABLE) in.failure = failure_from_json(field(&v, "kind"));
      all_fields_read(&v);
      break;
    }
    case RELINK_INPUT_COMMAND_FAILED:
    case RELINK_INPUT_CONNECTION_LOST:
      in.failure = failure_from_json(field(&f, "kind"));
      break;
    default:
      break;
  }
  all_fields_read(&f);
  return in;
}

static relink_supervisor_output output_from_json(const json *v) {
  relink_supervisor_output out;
  memset(&out, 0, sizeof out);
  fields top = {v, 0};
  out.output = json_named(field(&top, "kind"), OUTPUTS, COUNT(OUTPUTS));
  if (out.output == RELINK_OUTPUT_IDLE) {
    all_fields_read(&top);
    return out;
  }
  const json *value = field(&top, "value");
  all_fields_read(&top);
  if (out.output == RELINK_OUTPUT_TIMEOUT) {
    out.deadline_ms = json_u64(value);
    return out;
  }
  fields f = {value, 0};
  if (out.output == RELINK_OUTPUT_ACTION) {
    out.action = json_named(field(&f, "type"), ACTIONS, COUNT(ACTIONS));
    if (out.action == RELINK_ACTION_CONNECT) out.attempt = (uint32_t)json_u64(field(&f, "attempt"));
    if (out.action == RELINK_ACTION_SEND_PING || out.action == RELINK_ACTION_CHECK_ASIDE)
      out.ping_id = json_u64(field(&f, "id"));
    all_fields_read(&f);
    return out;
  }
  out.event = json_named(field(&f, "type"), EVENTS, COUNT(EVENTS));
  switch (out.event) {
    case RELINK_EVENT_STATE_CHANGED:
      out.from_state = json_named(field(&f, "from"), STATES, COUNT(STATES));
      out.to_state = json_named(field(&f, "to"), STATES, COUNT(STATES));
      break;
    case RELINK_EVENT_CONNECTED:
      out.attempt = (uint32_t)json_u64(field(&f, "attempts"));
      break;
    case RELINK_EVENT_RECONNECTED:
      out.attempt = (uint32_t)json_u64(field(&f, "attempts"));
      out.duration_ms = json_u64(field(&f, "downtime"));
      break;
    case RELINK_EVENT_DISCONNECTED:
      out.failure = failure_from_json(field(&f, "cause"));
      break;
    case RELINK_EVENT_RECONNECT_SCHEDULED:
      out.attempt = (uint32_t)json_u64(field(&f, "attempt"));
      out.duration_ms = json_u64(field(&f, "delay"));
      break;
    case RELINK_EVENT_HEARTBEAT_MISSED:
      out.misses = (uint32_t)json_u64(field(&f, "misses"));
      break;
    case RELINK_EVENT_GAVE_UP:
      out.attempt = (uint32_t)json_u64(field(&f, "attempts"));
      out.duration_ms = json_u64(field(&f, "elapsed"));
      break;
    case RELINK_EVENT_BUSY_CONFIRMED:
      out.duration_ms = json_u64(field(&f, "busy_for"));
      break;
    case RELINK_EVENT_FAILOVER_STARTED:
      (void)field(&f, "signal");
      break;
    case RELINK_EVENT_FAILOVER_ENDED:
      out.duration_ms = json_u64(field(&f, "held_for"));
      (void)field(&f, "expired");
      break;
    case RELINK_EVENT_CONNECT_ATTEMPT_FAILED: {
      fields failure = {field(&f, "failure"), 0};
      out.attempt = (uint32_t)json_u64(field(&failure, "attempt"));
      out.cause = cause_from_json(field(&failure, "cause"));
      evidence_from_json(field(&failure, "evidence"), &out.evidence);
      all_fields_read(&failure);
      out.misconfigured = json_true(field(&f, "misconfigured"));
      const json *retry_in = field(&f, "retry_in");
      out.has_retry_in = !json_is_null(retry_in);
      if (out.has_retry_in) out.duration_ms = json_u64(retry_in);
      break;
    }
    default:
      break;
  }
  all_fields_read(&f);
  return out;
}

static void same_output(size_t i, const relink_supervisor_output *got,
                        const relink_supervisor_output *want) {
  char what[64];
#define SAME_FIELD(name)                                     \
  do {                                                       \
    snprintf(what, sizeof what, "output %zu: " #name, i);    \
    SAME(what, got->name, want->name);                       \
  } while (0)
  SAME_FIELD(output);
  SAME_FIELD(action);
  SAME_FIELD(event);
  SAME_FIELD(attempt);
  SAME_FIELD(ping_id);
  SAME_FIELD(from_state);
  SAME_FIELD(to_state);
  SAME_FIELD(failure);
  SAME_FIELD(misses);
  SAME_FIELD(duration_ms);
  SAME_FIELD(deadline_ms);
  SAME_FIELD(cause);
  SAME_FIELD(misconfigured);
  SAME_FIELD(has_retry_in);
  snprintf(what, sizeof what, "output %zu: evidence", i);
  same_text(what, &got->evidence, want->evidence);
#undef SAME_FIELD
}

static void same_health(const relink_health *got, const json *want) {
  fields f = {want, 0};
  SAME("health.state", got->state, json_named(field(&f, "state"), STATES, COUNT(STATES)));
  SAME("health.since", got->since_ms, json_u64(field(&f, "since")));
  SAME("health.attempt", got->attempt, json_u64(field(&f, "attempt")));
  const json *v = field(&f, "last_failure");
  SAME("health.last_failure", got->last_failure,
       json_is_null(v) ? RELINK_FAILURE_NONE : failure_from_json(v));
  SAME("health.heartbeat_misses", got->heartbeat_misses,
       json_u64(field(&f, "heartbeat_misses")));
  v = field(&f, "rtt");
  SAME("health.has_rtt", got->has_rtt, !json_is_null(v));
  if (!json_is_null(v)) SAME("health.rtt", got->rtt_ms, json_u64(v));
  v = field(&f, "next_attempt_at");
  SAME("health.has_next_attempt", got->has_next_attempt, !json_is_null(v));
  if (!json_is_null(v)) SAME("health.next_attempt_at", got->next_attempt_at_ms, json_u64(v));
  v = field(&f, "busy_since");
  SAME("health.busy", got->busy, !json_is_null(v));
  if (!json_is_null(v)) SAME("health.busy_since", got->busy_since_ms, json_u64(v));
  v = field(&f, "last_attempt_failure");
  if (json_is_null(v)) {
    SAME("health.last_attempt_failure.cause", got->last_attempt_failure.cause, RELINK_CAUSE_NONE);
    SAME("health.last_attempt_failure.attempt", got->last_attempt_failure.attempt, 0);
    same_text("health.last_attempt_failure.evidence", &got->last_attempt_failure.evidence, "");
  } else {
    fields failure = {v, 0};
    SAME("health.last_attempt_failure.attempt", got->last_attempt_failure.attempt,
         json_u64(field(&failure, "attempt")));
    SAME("health.last_attempt_failure.cause", got->last_attempt_failure.cause,
         cause_from_json(field(&failure, "cause")));
    const json *evidence = field(&failure, "evidence");
    CHECK(evidence->type == J_STRING);
    same_text("health.last_attempt_failure.evidence", &got->last_attempt_failure.evidence,
              evidence->text);
    all_fields_read(&failure);
  }
  SAME("health.misconfigured", got->misconfigured, json_true(field(&f, "misconfigured")));
  all_fields_read(&f);
}

static void config_from_json(const json *c, relink_supervisor_config *out) {
  CHECK_OK(relink_supervisor_config_default(out, sizeof *out));
  fields f = {c, 0};
  vectors_backoff_policy(field(&f, "backoff"), &out->backoff);
  const json *hb = field(&f, "heartbeat");
  fields h = {hb, 0};
  out->heartbeat_interval_ms = json_duration_ms(field(&h, "interval"));
  out->heartbeat_timeout_ms = json_duration_ms(field(&h, "timeout"));
  out->heartbeat_misses_allowed = (uint32_t)json_u64(field(&h, "misses_allowed"));
  all_fields_read(&h);
  out->connect_timeout_ms = json_duration_ms(field(&f, "connect_timeout"));
  out->backoff_reset_after_ms = json_duration_ms(field(&f, "backoff_reset_after"));
  vectors_backoff_policy(field(&f, "misconfigured_backoff"), &out->misconfigured_backoff);
  out->refused_max_delay_ms = json_duration_ms(field(&f, "refused_max_delay"));
  all_fields_read(&f);
}

/* A drain that has not ended after this many outputs is a bug (as in the
 * Rust replay). */
#define MAX_DRAIN 16

static void golden_supervisor_vectors(void) {
  json root;
  json_read_vectors("supervisor.json", &root);
  const json *cases = json_need(&root, "cases");
  CHECK(cases->type == J_ARRAY && cases->len >= 8);
  size_t steps = 0, outputs = 0;
  for (size_t c = 0; c < cases->len; c++) {
    const json *item = &cases->items[c];
    case_name = json_need(item, "name")->text;
    relink_supervisor_config config;
    config_from_json(json_need(item, "config"), &config);
    relink_supervisor *sup = NULL;
    CHECK_OK(relink_supervisor_new(&config, json_u64(json_need(item, "seed")), &sup, errp_));
    const json *case_steps = json_need(item, "steps");
    CHECK(case_steps->type == J_ARRAY && case_steps->len > 0);
    for (size_t s = 0; s < case_steps->len; s++) {
      const json *step = &case_steps->items[s];
      step_index = s;
      step_at = json_u64(json_need(step, "at"));
      const json *input = json_need(step, "input");
      if (!json_is_null(input)) {
        relink_supervisor_input in = input_from_json(input);
        CHECK_OK(relink_supervisor_handle_input(sup, step_at, &in, errp_));
      }
      const json *want = json_need(step, "outputs");
      CHECK(want->type == J_ARRAY && want->len > 0 && want->len <= MAX_DRAIN);
      size_t n = 0;
      for (;;) {
        relink_supervisor_output got;
        CHECK_OK(relink_supervisor_poll_output(sup, step_at, &got, errp_));
        if (n == want->len) mismatch("outputs in the drain", n + 1, want->len);
        relink_supervisor_output expected = output_from_json(&want->items[n]);
        same_output(n, &got, &expected);
        n++;
        if (got.output == RELINK_OUTPUT_TIMEOUT || got.output == RELINK_OUTPUT_IDLE) break;
      }
      SAME("outputs in the drain", n, want->len);
      relink_health health;
      CHECK_OK(relink_supervisor_health(sup, &health, errp_));
      same_health(&health, json_need(step, "health"));
      steps++;
      outputs += n;
    }
    relink_supervisor_free(sup);
  }
  printf("golden supervisor vectors: %zu cases, %zu steps, %zu outputs match\n", cases->len,
         steps, outputs);
  json_free(&root);
}

/* ---- the boundary: bad arguments are errors, never undefined behaviour -- */

static void expect_invalid(relink_code code, relink_code want, relink_error *err,
                           const char *naming) {
  CHECK(code == want);
  CHECK(relink_error_code(err) == want);
  if (strstr(relink_error_message(err), naming) == NULL) {
    fprintf(stderr, "error message does not name `%s`: %s\n", naming, relink_error_message(err));
    exit(1);
  }
  relink_error_free(err);
}

static void arguments_are_checked(void) {
  relink_supervisor_config config;
  CHECK_OK(relink_supervisor_config_default(&config, sizeof config));
  relink_supervisor *sup = NULL;
  relink_error *err = NULL;
  relink_code code;

  relink_supervisor_config bad = config;
  bad.heartbeat_interval_ms = 0;
  code = relink_supervisor_new(&bad, 1, &sup, &err);
  CHECK(sup == NULL);
  expect_invalid(code, RELINK_INVALID_CONFIG, err, "heartbeat.interval");
  bad = config;
  bad.backoff.jitter = 99;
  err = NULL;
  code = relink_supervisor_new(&bad, 1, &sup, &err);
  expect_invalid(code, RELINK_INVALID_ARGUMENT, err, "jitter");
  err = NULL;
  code = relink_supervisor_new(NULL, 1, &sup, &err);
  expect_invalid(code, RELINK_INVALID_ARGUMENT, err, "config");
  CHECK(sup == NULL);

  CHECK_OK(relink_supervisor_new(&config, 1, &sup, errp_));
  relink_supervisor_input in;
  memset(&in, 0, sizeof in);
  in.input = 42;
  err = NULL;
  code = relink_supervisor_handle_input(sup, 0, &in, &err);
  expect_invalid(code, RELINK_INVALID_ARGUMENT, err, "input.input");
  in.input = RELINK_INPUT_CONNECTION_LOST;
  in.failure = RELINK_FAILURE_NONE;
  err = NULL;
  code = relink_supervisor_handle_input(sup, 0, &in, &err);
  expect_invalid(code, RELINK_INVALID_ARGUMENT, err, "input.failure");
  in.input = RELINK_INPUT_ASIDE_CHECKED;
  in.verdict = RELINK_ASIDE_NONE;
  err = NULL;
  code = relink_supervisor_handle_input(sup, 0, &in, &err);
  expect_invalid(code, RELINK_INVALID_ARGUMENT, err, "input.verdict");
  in.verdict = RELINK_ASIDE_UNREACHABLE;
  in.failure = RELINK_FAILURE_NONE;
  err = NULL;
  code = relink_supervisor_handle_input(sup, 0, &in, &err);
  expect_invalid(code, RELINK_INVALID_ARGUMENT, err, "input.failure");
  memset(&in, 0, sizeof in);
  in.input = RELINK_INPUT_CONNECT_FAILED;
  in.attempt = 1;
  in.cause = RELINK_CAUSE_SERVER_ERROR + 1;
  err = NULL;
  code = relink_supervisor_handle_input(sup, 0, &in, &err);
  expect_invalid(code, RELINK_INVALID_ARGUMENT, err, "input.cause");
  /* Neither a cause nor a failure kind to fall back on. */
  in.cause = RELINK_CAUSE_NONE;
  in.failure = RELINK_FAILURE_NONE;
  err = NULL;
  code = relink_supervisor_handle_input(sup, 0, &in, &err);
  expect_invalid(code, RELINK_INVALID_ARGUMENT, err, "input.cause");
  in.failure = RELINK_FAILURE_MOVED + 1;
  err = NULL;
  code = relink_supervisor_handle_input(sup, 0, &in, &err);
  expect_invalid(code, RELINK_INVALID_ARGUMENT, err, "input.failure");
  memset(&in, 0, sizeof in);
  in.input = RELINK_INPUT_RECONFIGURED + 1;
  err = NULL;
  code = relink_supervisor_handle_input(sup, 0, &in, &err);
  expect_invalid(code, RELINK_INVALID_ARGUMENT, err, "input.input");
  uint32_t cause = 0;
  err = NULL;
  code = relink_cause_from_error(NULL, NULL, &cause, &err);
  expect_invalid(code, RELINK_INVALID_ARGUMENT, err, "code");
  err = NULL;
  code = relink_cause_from_error("WRONGPASS", "WRONGPASS x", NULL, &err);
  expect_invalid(code, RELINK_INVALID_ARGUMENT, err, "out");
  err = NULL;
  code = relink_cause_from_first_bytes(NULL, 4, &cause, &err);
  expect_invalid(code, RELINK_INVALID_ARGUMENT, err, "bytes");
  err = NULL;
  code = relink_supervisor_handle_input(sup, 0, NULL, &err);
  expect_invalid(code, RELINK_INVALID_ARGUMENT, err, "input");
  err = NULL;
  code = relink_supervisor_poll_output(sup, 0, NULL, &err);
  expect_invalid(code, RELINK_INVALID_ARGUMENT, err, "out");
  err = NULL;
  code = relink_supervisor_health(NULL, NULL, &err);
  expect_invalid(code, RELINK_INVALID_ARGUMENT, err, "supervisor");

  /* Refused inputs changed nothing: still IDLE, nothing scheduled. */
  relink_supervisor_output out;
  CHECK_OK(relink_supervisor_poll_output(sup, 0, &out, errp_));
  CHECK(out.output == RELINK_OUTPUT_IDLE && out.action == RELINK_ACTION_NONE &&
        out.event == RELINK_EVENT_NONE);
  relink_health health;
  CHECK_OK(relink_supervisor_health(sup, &health, errp_));
  CHECK(health.state == RELINK_STATE_IDLE && health.last_failure == RELINK_FAILURE_NONE);
  /* A NULL err is allowed: the code alone. */
  CHECK(relink_supervisor_handle_input(sup, 0, NULL, NULL) == RELINK_INVALID_ARGUMENT);
  relink_supervisor_free(sup);
  relink_supervisor_free(NULL);
}

/* ---- connect causes: the core's classifiers, the fallback to a failure kind,
 * evidence in and out --------------------------------------------------- */

static void connect_causes(void) {
  uint32_t cause = RELINK_CAUSE_NONE;
  CHECK_OK(relink_cause_from_error("WRONGPASS", "WRONGPASS invalid username-password pair",
                                   &cause, errp_));
  CHECK(cause == RELINK_CAUSE_AUTH && relink_cause_is_misconfiguration(cause));
  CHECK(strcmp(relink_cause_name(cause), "auth") == 0);
  CHECK_OK(relink_cause_from_error("ECONNREFUSED", NULL, &cause, errp_));
  CHECK(cause == RELINK_CAUSE_REFUSED && !relink_cause_is_misconfiguration(cause));
  CHECK_OK(relink_cause_from_error("ERR", "ERR max number of clients reached", &cause, errp_));
  CHECK(cause == RELINK_CAUSE_SERVER_FULL);
  CHECK_OK(relink_cause_from_error("LOADING", "LOADING Redis is loading", &cause, errp_));
  CHECK(cause == RELINK_CAUSE_SERVER_BUSY_LOADING);
  CHECK(strcmp(relink_cause_name(cause), "server_busy:loading") == 0);
  static const char http[] = "HTTP/1.1 400 Bad Request\r\n";
  CHECK_OK(relink_cause_from_first_bytes((const uint8_t *)http, sizeof http - 1, &cause, errp_));
  CHECK(cause == RELINK_CAUSE_NOT_REDIS);
  static const char pong[] = "+PONG\r\n";
  CHECK_OK(relink_cause_from_first_bytes((const uint8_t *)pong, sizeof pong - 1, &cause, errp_));
  CHECK(cause == RELINK_CAUSE_NONE);
  CHECK_OK(relink_cause_from_first_bytes(NULL, 0, &cause, errp_));
  CHECK(cause == RELINK_CAUSE_NONE);
  CHECK(strcmp(relink_cause_name(RELINK_CAUSE_NONE), "none") == 0);
  CHECK(strcmp(relink_cause_name(999), "unknown") == 0);

  relink_supervisor_config config;
  CHECK_OK(relink_supervisor_config_default(&config, sizeof config));
  CHECK(config.misconfigured_backoff.initial_delay_ms == 1000 &&
        config.misconfigured_backoff.max_delay_ms == 30000 &&
        config.misconfigured_backoff.jitter == RELINK_JITTER_EQUAL);
  config.backoff.jitter = RELINK_JITTER_NONE;
  config.backoff.strategy = RELINK_BACKOFF_CONSTANT;
  config.misconfigured_backoff.jitter = RELINK_JITTER_NONE;
  config.misconfigured_backoff.strategy = RELINK_BACKOFF_CONSTANT;
  config.misconfigured_backoff.max_delay_ms = 1000;
  relink_supervisor *sup = NULL;
  CHECK_OK(relink_supervisor_new(&config, 1, &sup, errp_));
  relink_supervisor_input in;
  memset(&in, 0, sizeof in);
  in.input = RELINK_INPUT_START;
  CHECK_OK(relink_supervisor_handle_input(sup, 0, &in, errp_));
  relink_supervisor_output out;
  do CHECK_OK(relink_supervisor_poll_output(sup, 0, &out, errp_));
  while (out.output != RELINK_OUTPUT_TIMEOUT);

  /* A driver that knows only the failure kind: the cause is the kind's, no evidence. */
  in.input = RELINK_INPUT_CONNECT_FAILED;
  in.attempt = 1;
  in.failure = RELINK_FAILURE_IO;
  CHECK_OK(relink_supervisor_handle_input(sup, 5, &in, errp_));
  CHECK_OK(relink_supervisor_poll_output(sup, 5, &out, errp_));
  CHECK(out.event == RELINK_EVENT_CONNECT_ATTEMPT_FAILED && out.attempt == 1 &&
        out.cause == RELINK_CAUSE_IO && !out.misconfigured && out.has_retry_in &&
        out.duration_ms == 100 && out.evidence[0] == '\0');
  do CHECK_OK(relink_supervisor_poll_output(sup, 5, &out, errp_));
  while (out.output != RELINK_OUTPUT_TIMEOUT);
  CHECK(out.deadline_ms == 105);
  do CHECK_OK(relink_supervisor_poll_output(sup, 105, &out, errp_));
  while (out.output != RELINK_OUTPUT_TIMEOUT);

  /* A wrong password, its evidence longer than kept, with control characters. */
  char long_reply[300];
  memset(long_reply, 'x', sizeof long_reply - 1);
  long_reply[sizeof long_reply - 1] = '\0';
  memcpy(long_reply, "WRONGPASS\r\n", 11);
  in.attempt = 2;
  in.cause = RELINK_CAUSE_AUTH;
  in.failure = 0;
  in.evidence = long_reply;
  CHECK_OK(relink_supervisor_handle_input(sup, 110, &in, errp_));
  CHECK_OK(relink_supervisor_poll_output(sup, 110, &out, errp_));
  CHECK(out.event == RELINK_EVENT_CONNECT_ATTEMPT_FAILED && out.attempt == 2 &&
        out.cause == RELINK_CAUSE_AUTH && out.misconfigured && out.has_retry_in &&
        out.duration_ms == 1000);
  CHECK(memchr(out.evidence, '\0', RELINK_EVIDENCE_SIZE) != NULL);
  CHECK(strncmp(out.evidence, "WRONGPASS  xxx", 14) == 0 && strlen(out.evidence) <= 120);
  /* The core cuts long text with an ellipsis (UTF-8 E2 80 A6). */
  CHECK(strcmp(out.evidence + strlen(out.evidence) - 3, "\xe2\x80\xa6") == 0);
  relink_health health;
  CHECK_OK(relink_supervisor_health(sup, &health, errp_));
  CHECK(health.misconfigured && health.last_attempt_failure.attempt == 2 &&
        health.last_attempt_failure.cause == RELINK_CAUSE_AUTH &&
        strcmp(health.last_attempt_failure.evidence, out.evidence) == 0);
  do CHECK_OK(relink_supervisor_poll_output(sup, 110, &out, errp_));
  while (out.output != RELINK_OUTPUT_TIMEOUT);
  CHECK(out.deadline_ms == 1110);

  /* New credentials: at once, and the flag is cleared. */
  memset(&in, 0, sizeof in);
  in.input = RELINK_INPUT_RECONFIGURED;
  CHECK_OK(relink_supervisor_handle_input(sup, 200, &in, errp_));
  int connect_asked = 0;
  do {
    CHECK_OK(relink_supervisor_poll_output(sup, 200, &out, errp_));
    if (out.action == RELINK_ACTION_CONNECT && out.attempt == 3) connect_asked = 1;
  } while (out.output != RELINK_OUTPUT_TIMEOUT);
  CHECK(connect_asked);
  CHECK_OK(relink_supervisor_health(sup, &health, errp_));
  CHECK(!health.misconfigured);
  relink_supervisor_free(sup);
}

int main(void) {
  golden_supervisor_vectors();
  arguments_are_checked();
  connect_causes();
  printf("test_supervisor: %d passed, 0 failed\n", checks_passed);
  return 0;
}
