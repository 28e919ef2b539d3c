/*
 * Rides out a Redis restart: INCR once every 100 ms for N seconds while you
 * restart the server. Commands issued during the outage wait in relink's
 * backlog and go through once it reconnects; the state callback shows the
 * outage. Exits 0 when the last command succeeded.
 *
 *   ride_out_restart [redis://127.0.0.1:6379] [seconds]
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "relink.h"

static const char *const STATES[] = {"idle", "connecting", "ready", "transient_failure",
                                     "shutdown"};

/* Runs on relink's thread: print and return, never block. */
static void on_state(void *user_data, uint32_t from, uint32_t to) {
  (void)user_data;
  fprintf(stderr, "state: %s -> %s\n", STATES[from], STATES[to]);
}

int main(int argc, char **argv) {
  const char *url = argc > 1 ? argv[1] : "redis://127.0.0.1:6379";
  int rounds = (argc > 2 ? atoi(argv[2]) : 10) * 10;
  struct timespec tick = {0, 100 * 1000 * 1000};
  setvbuf(stdout, NULL, _IOLBF, 0); /* one line per command, even into a pipe */

  relink_options options;
  relink_options_default(&options, sizeof options); /* reconnect, heartbeat, backlog: all on */
  options.heartbeat_interval_ms = 250;
  relink_client *client = NULL;
  relink_error *err = NULL;
  if (relink_client_connect(url, &options, &client, &err) != RELINK_OK) {
    fprintf(stderr, "connect: %s\n", relink_error_message(err));
    relink_error_free(err);
    return 1;
  }
  relink_client_on_state_change(client, on_state, NULL, NULL);

  int ok = 0;
  for (int i = 0; i < rounds; i++, nanosleep(&tick, NULL)) {
    const char *incr[] = {"INCR", "ride_out_restart:visits"};
    relink_reply *reply = NULL;
    ok = relink_client_command(client, 2, incr, NULL, &reply, &err) == RELINK_OK;
    if (ok) {
      printf("visits: %lld\n", (long long)relink_reply_integer(reply));
      relink_reply_free(reply);
    } else { /* e.g. RELINK_MAYBE_APPLIED: it may have run; relink never retries an INCR */
      printf("%s: %s\n", relink_code_name(relink_error_code(err)), relink_error_message(err));
      relink_error_free(err);
      err = NULL;
    }
  }
  relink_client_free(client);
  return ok ? 0 : 1;
}
