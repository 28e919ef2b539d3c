/*
 * The core's policy objects through the C API: the golden backoff vectors
 * of tests/vectors/backoff.json (the file the Rust and JS tests replay,
 * read with vectors.h), and the sync cursor. The supervisor's vectors are
 * test_supervisor.c's.
 *
 * The vectors' directory comes from $RELINK_VECTORS_DIR (xtask sets it),
 * else tests/vectors relative to the workspace root.
 */
#define _GNU_SOURCE
#include "support.h"
#include "vectors.h"

/* ---- the golden vectors ------------------------------------------------ */

static void golden_backoff_vectors(void) {
  json root;
  json_read_vectors("backoff.json", &root);
  const json *cases = json_get(&root, "cases");
  CHECK(cases != NULL && cases->type == J_ARRAY && cases->len > 0);
  size_t delays_checked = 0;
  for (size_t c = 0; c < cases->len; c++) {
    const json *item = &cases->items[c];
    const json *name = json_get(item, "name");
    const json *expected = json_get(item, "delays_ms");
    CHECK(expected != NULL && expected->type == J_ARRAY);
    relink_backoff_policy policy;
    vectors_backoff_policy(json_get(item, "policy"), &policy);
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
