/*
 * The core's per-call policy through the C API: every case of the golden
 * vectors in tests/vectors/call.json (the file the Rust and JS tests
 * replay), to the millisecond: each step's input and the decision it gets,
 * and the call's deadline. Then the argument checks.
 *
 * The vectors' directory comes from $RELINK_VECTORS_DIR (xtask sets it),
 * else tests/vectors relative to the workspace root.
 */
#define _GNU_SOURCE
#include "support.h"
#include "vectors.h"

/* Names as the vectors spell them, indexed by the C constants' values (NULL
 * where a value has no name: the _NONE constants). */
static const char *const INPUTS[] = {"connected",  "not_connected", "backlog_full", "failed",
                                     "redirected", "shutdown",      "misconfigured"};
static const char *const DELIVERIES[] = {"not_sent", "maybe_sent", "answered"};
static const char *const DECISIONS[] = {"send", "redirect", "queue", "retry_at", "fail"};
static const char *const OUTCOMES[] = {NULL, "not_applied", "unknown", "rejected"};
static const char *const REASONS[] = {NULL,
                                      "not_connected",
                                      "backlog_full",
                                      "queue_timeout",
                                      "deadline_exceeded",
                                      "shutdown",
                                      "rejected",
                                      "not_retry_safe",
                                      "retries_exhausted",
                                      "budget_exhausted",
                                      "misconfigured"};
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* What a step is compared with, for messages. */
static const char *case_name;
static size_t step_index;
static uint64_t step_at;

static void mismatch(const char *what, unsigned long long got, unsigned long long want) {
  fprintf(stderr, "call vector \"%s\", step %zu (at %llu): %s: got %llu, want %llu\n", case_name,
          step_index, (unsigned long long)step_at, what, got, want);
  exit(1);
}

#define SAME(what, got, want)                                              \
  do {                                                                     \
    unsigned long long got_ = (got), want_ = (want);                       \
    if (got_ != want_) mismatch(what, got_, want_);                        \
    checks_passed++;                                                       \
  } while (0)

/* Reads the fields of an object; counts them, so that a field the C form
 * does not carry fails the test instead of being skipped. */
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
    fprintf(stderr, "call vector \"%s\", step %zu: a field the C form lacks\n", case_name,
            step_index);
    exit(1);
  }
}

static int json_true(const json *v) {
  CHECK(v != NULL && v->type == J_BOOL);
  return strcmp(v->text, "true") == 0;
}

static void policy_from_json(const json *p, relink_call_policy *out) {
  CHECK_OK(relink_call_policy_default(out, sizeof *out));
  fields f = {p, 0};
  const json *v = field(&f, "queue_wait");
  out->queue_wait_ms = json_is_null(v) ? 0 : json_duration_ms(v);
  out->max_retries = (uint32_t)json_u64(field(&f, "max_retries"));
  out->max_redirects = (uint32_t)json_u64(field(&f, "max_redirects"));
  out->response_timeout_ms = json_duration_ms(field(&f, "response_timeout"));
  v = field(&f, "deadline");
  out->deadline_ms = json_is_null(v) ? 0 : json_duration_ms(v);
  vectors_backoff_policy(field(&f, "busy_backoff"), &out->busy_backoff);
  all_fields_read(&f);
}

static relink_call_input input_from_json(const json *v) {
  relink_call_input in;
  memset(&in, 0, sizeof in);
  fields f = {v, 0};
  in.input = json_named(field(&f, "type"), INPUTS, COUNT(INPUTS));
  if (in.input == RELINK_CALL_INPUT_FAILED) {
    in.failure = vectors_failure(field(&f, "kind"));
    in.delivery = json_named(field(&f, "delivery"), DELIVERIES, COUNT(DELIVERIES));
    in.budget_allows = json_true(field(&f, "budget_allows"));
  }
  all_fields_read(&f);
  return in;
}

static relink_decision decision_from_json(const json *v) {
  relink_decision d;
  memset(&d, 0, sizeof d);
  fields f = {v, 0};
  d.decision = json_named(field(&f, "type"), DECISIONS, COUNT(DECISIONS));
  switch (d.decision) {
    case RELINK_DECISION_SEND:
    case RELINK_DECISION_REDIRECT:
      d.timeout_ms = json_u64(field(&f, "timeout"));
      break;
    case RELINK_DECISION_QUEUE:
      d.at_ms = json_u64(field(&f, "until"));
      break;
    case RELINK_DECISION_RETRY_AT:
      d.at_ms = json_u64(field(&f, "at"));
      break;
    default: {
      fields failure = {field(&f, "failure"), 0};
      d.outcome = json_named(field(&failure, "outcome"), OUTCOMES, COUNT(OUTCOMES));
      d.reason = json_named(field(&failure, "reason"), REASONS, COUNT(REASONS));
      const json *kind = field(&failure, "kind");
      d.failure = json_is_null(kind) ? RELINK_FAILURE_NONE : vectors_failure(kind);
      all_fields_read(&failure);
      break;
    }
  }
  all_fields_read(&f);
  return d;
}

static void golden_call_vectors(void) {
  json root;
  json_read_vectors("call.json", &root);
  const json *cases = json_need(&root, "cases");
  CHECK(cases->type == J_ARRAY && cases->len >= 12);
  size_t steps = 0;
  for (size_t c = 0; c < cases->len; c++) {
    const json *item = &cases->items[c];
    case_name = json_need(item, "name")->text;
    step_index = 0;
    relink_call_policy policy;
    policy_from_json(json_need(item, "policy"), &policy);
    int idempotent = json_true(json_need(item, "idempotent"));
    uint64_t seed = json_u64(json_need(item, "seed"));
    uint64_t start = json_u64(json_need(item, "start_ms"));
    const json *own = json_need(item, "own_deadline_ms");
    relink_call *call = NULL;
    uint64_t want_deadline = 0;
    if (json_is_null(own)) {
      CHECK_OK(relink_call_new(&policy, start, idempotent, seed, &call, errp_));
      want_deadline = policy.deadline_ms == 0 ? 0 : start + policy.deadline_ms;
    } else {
      uint64_t own_ms = json_u64(own);
      CHECK(own_ms > 0); /* 0 means "no deadline" in C */
      CHECK_OK(relink_call_new_with_deadline(&policy, start, idempotent, own_ms, seed, &call,
                                             errp_));
      want_deadline = start + own_ms;
    }
    uint64_t deadline = 0;
    SAME("has a deadline", relink_call_deadline(call, &deadline), want_deadline != 0);
    SAME("deadline", deadline, want_deadline);

    const json *case_steps = json_need(item, "steps");
    CHECK(case_steps->type == J_ARRAY && case_steps->len > 0);
    for (size_t s = 0; s < case_steps->len; s++) {
      fields step = {&case_steps->items[s], 0};
      step_index = s;
      step_at = json_u64(field(&step, "at_ms"));
      relink_call_input in = input_from_json(field(&step, "input"));
      relink_decision want = decision_from_json(field(&step, "decision"));
      all_fields_read(&step);
      relink_decision got;
      memset(&got, 0xA5, sizeof got);
      CHECK_OK(relink_call_decide(call, step_at, &in, &got, errp_));
      SAME("decision", got.decision, want.decision);
      SAME("timeout_ms", got.timeout_ms, want.timeout_ms);
      SAME("at_ms", got.at_ms, want.at_ms);
      SAME("outcome", got.outcome, want.outcome);
      SAME("reason", got.reason, want.reason);
      SAME("failure", got.failure, want.failure);
      SAME("is_done", relink_call_is_done(call), want.decision == RELINK_DECISION_FAIL);
      steps++;
    }
    relink_call_free(call);
  }
  printf("golden call vectors: %zu cases, %zu decisions match\n", cases->len, steps);
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
  relink_call_policy policy;
  CHECK_OK(relink_call_policy_default(&policy, sizeof policy));
  CHECK(policy.queue_wait_ms == 5000 && policy.max_retries == 3 && policy.max_redirects == 5 &&
        policy.response_timeout_ms == 3000 && policy.deadline_ms == 10000);
  relink_call *call = NULL;
  relink_error *err = NULL;
  relink_code code;

  relink_call_policy bad = policy;
  bad.response_timeout_ms = 0;
  code = relink_call_new(&bad, 0, false, 1, &call, &err);
  CHECK(call == NULL);
  expect_invalid(code, RELINK_INVALID_CONFIG, err, "response_timeout");
  bad = policy;
  bad.max_retries = 101;
  err = NULL;
  code = relink_call_new_with_deadline(&bad, 0, false, 100, 1, &call, &err);
  expect_invalid(code, RELINK_INVALID_CONFIG, err, "max_retries");
  bad = policy;
  bad.busy_backoff.max_delay_ms = 1;
  err = NULL;
  code = relink_call_new(&bad, 0, false, 1, &call, &err);
  expect_invalid(code, RELINK_INVALID_CONFIG, err, "busy_backoff");
  bad = policy;
  bad.busy_backoff.jitter = 99;
  err = NULL;
  code = relink_call_new(&bad, 0, false, 1, &call, &err);
  expect_invalid(code, RELINK_INVALID_ARGUMENT, err, "jitter");
  err = NULL;
  code = relink_call_new(NULL, 0, false, 1, &call, &err);
  expect_invalid(code, RELINK_INVALID_ARGUMENT, err, "policy");
  err = NULL;
  code = relink_call_new(&policy, 0, false, 1, NULL, &err);
  expect_invalid(code, RELINK_INVALID_ARGUMENT, err, "out");
  CHECK(call == NULL);

  CHECK_OK(relink_call_new(&policy, 0, false, 1, &call, errp_));
  relink_call_input in;
  relink_decision d;
  memset(&in, 0, sizeof in);
  in.input = 42;
  err = NULL;
  code = relink_call_decide(call, 0, &in, &d, &err);
  expect_invalid(code, RELINK_INVALID_ARGUMENT, err, "input.input");
  in.input = RELINK_CALL_INPUT_FAILED;
  in.failure = RELINK_FAILURE_NONE;
  err = NULL;
  code = relink_call_decide(call, 0, &in, &d, &err);
  expect_invalid(code, RELINK_INVALID_ARGUMENT, err, "input.failure");
  in.failure = RELINK_FAILURE_CLOSED;
  in.delivery = 7;
  err = NULL;
  code = relink_call_decide(call, 0, &in, &d, &err);
  expect_invalid(code, RELINK_INVALID_ARGUMENT, err, "input.delivery");
  err = NULL;
  code = relink_call_decide(call, 0, NULL, &d, &err);
  expect_invalid(code, RELINK_INVALID_ARGUMENT, err, "input");
  in.input = RELINK_CALL_INPUT_CONNECTED;
  err = NULL;
  code = relink_call_decide(call, 0, &in, NULL, &err);
  expect_invalid(code, RELINK_INVALID_ARGUMENT, err, "out");
  err = NULL;
  code = relink_call_decide(NULL, 0, &in, &d, &err);
  expect_invalid(code, RELINK_INVALID_ARGUMENT, err, "call");
  /* A NULL err is allowed: the code alone. */
  CHECK(relink_call_decide(call, 0, NULL, &d, NULL) == RELINK_INVALID_ARGUMENT);

  /* Refused inputs changed nothing: the call is fresh. */
  CHECK(!relink_call_is_done(call) && relink_call_retries(call) == 0);
  CHECK_OK(relink_call_decide(call, 0, &in, &d, errp_));
  CHECK(d.decision == RELINK_DECISION_SEND && d.timeout_ms == 3000 && d.at_ms == 0 &&
        d.outcome == RELINK_OUTCOME_NONE && d.reason == RELINK_FAIL_NONE &&
        d.failure == RELINK_FAILURE_NONE);
  /* The write's fate is unknown: it is not sent again. */
  in.input = RELINK_CALL_INPUT_FAILED;
  in.failure = RELINK_FAILURE_CLOSED;
  in.delivery = RELINK_DELIVERY_MAYBE_SENT;
  in.budget_allows = true;
  CHECK_OK(relink_call_decide(call, 5, &in, &d, errp_));
  CHECK(d.decision == RELINK_DECISION_FAIL && d.outcome == RELINK_OUTCOME_UNKNOWN &&
        d.reason == RELINK_FAIL_NOT_RETRY_SAFE && d.failure == RELINK_FAILURE_CLOSED);
  CHECK(strcmp(relink_fail_reason_name(d.reason), "not_retry_safe") == 0);
  CHECK(relink_call_is_done(call));
  relink_call_free(call);

  /* An own deadline of 0 is none. */
  CHECK_OK(relink_call_new_with_deadline(&policy, 7, true, 0, 1, &call, errp_));
  uint64_t deadline = 42;
  CHECK(!relink_call_deadline(call, &deadline) && deadline == 42);
  CHECK(!relink_call_deadline(call, NULL));
  relink_call_free(call);

  CHECK(relink_call_retries(NULL) == 0 && relink_call_redirects(NULL) == 0);
  CHECK(!relink_call_is_done(NULL) && !relink_call_deadline(NULL, &deadline));
  CHECK(strcmp(relink_fail_reason_name(RELINK_FAIL_DEADLINE_EXCEEDED), "deadline_exceeded") == 0);
  CHECK(strcmp(relink_fail_reason_name(RELINK_FAIL_MISCONFIGURED), "misconfigured") == 0);
  CHECK(strcmp(relink_fail_reason_name(999), "unknown") == 0);
  in.input = RELINK_CALL_INPUT_MISCONFIGURED + 1;
  CHECK_OK(relink_call_new(&policy, 0, false, 1, &call, errp_));
  err = NULL;
  code = relink_call_decide(call, 0, &in, &d, &err);
  expect_invalid(code, RELINK_INVALID_ARGUMENT, err, "input.input");
  relink_call_free(call);
  relink_call_free(NULL);
}

int main(void) {
  golden_call_vectors();
  arguments_are_checked();
  printf("test_call: %d passed, 0 failed\n", checks_passed);
  return 0;
}
