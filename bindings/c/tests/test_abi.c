/*
 * The ABI rule of the options structs (see the top of relink.h): each
 * begins with `size_t struct_size`; a struct of a released layout is
 * accepted, the 0.1 layout included, and its missing fields keep their
 * defaults; any other size is refused with RELINK_STRUCT_SIZE, and nothing
 * past struct_size is read or written. Needs no server.
 */
#define _GNU_SOURCE
#include <stdalign.h>
#include <stddef.h>

#include "support.h"

/* The size of a layout whose last field ends at `end`, padded as C pads it. */
#define LAYOUT_SIZE(type, end) ((((end) + alignof(type) - 1) / alignof(type)) * alignof(type))

/* sizeof(relink_options) in a 0.1 header: its fields end with wait_for_connection. */
#define OPTIONS_0_1                                                             \
  LAYOUT_SIZE(relink_options,                                                   \
              offsetof(relink_options, wait_for_connection) + sizeof(uint32_t))

static void options_of_this_header_are_accepted(void) {
  relink_options options;
  memset(&options, 0xAA, sizeof options);
  CHECK_OK(relink_options_default(&options, sizeof options));
  CHECK(options.struct_size == sizeof options);
  options.outage_policy = RELINK_OUTAGE_FAIL_FAST;
  relink_client *client = NULL;
  /* A closed port: the client connects in the background; the options are what is tested. */
  CHECK_OK(relink_client_connect("redis://127.0.0.1:1", &options, &client, errp_));
  relink_client_free(client);
}

static void options_of_an_older_header_are_accepted(void) {
  /* An older program's struct, with the bytes after it its own: _default
   * writes only OPTIONS_0_1 bytes, and connect reads only those. */
  union {
    relink_options options;
    unsigned char bytes[sizeof(relink_options) + 16];
  } old;
  memset(&old, 0xAA, sizeof old);
  CHECK_OK(relink_options_default(&old.options, OPTIONS_0_1));
  CHECK(old.options.struct_size == OPTIONS_0_1);
  for (size_t i = OPTIONS_0_1; i < sizeof old.bytes; i++) {
    CHECK(old.bytes[i] == 0xAA);
  }
  old.options.heartbeat_interval_ms = 250;
  relink_client *client = NULL;
  CHECK_OK(relink_client_connect("redis://127.0.0.1:1", &old.options, &client, errp_));
  relink_client_free(client);
}

static void other_sizes_are_refused(void) {
  relink_options options;
  relink_client *client = NULL;
  CHECK_OK(relink_options_default(&options, sizeof options));

  /* Not filled by relink_options_default: a zeroed struct. */
  relink_options zeroed;
  memset(&zeroed, 0, sizeof zeroed);
  CHECK_FAILS(RELINK_STRUCT_SIZE, "relink_options_default",
              relink_client_connect("redis://127.0.0.1:1", &zeroed, &client, errp_));
  /* A header newer than the library. */
  relink_options newer = options;
  newer.struct_size = sizeof options + 8;
  CHECK_FAILS(RELINK_STRUCT_SIZE, "newer",
              relink_client_connect("redis://127.0.0.1:1", &newer, &client, errp_));
  /* Neither a release's size nor anything sensible. */
  relink_options odd = options;
  odd.struct_size = 3;
  CHECK_FAILS(RELINK_STRUCT_SIZE, "struct_size",
              relink_client_connect("redis://127.0.0.1:1", &odd, &client, errp_));
  odd.struct_size = (size_t)-1;
  CHECK_FAILS(RELINK_STRUCT_SIZE, "struct_size",
              relink_client_connect("redis://127.0.0.1:1", &odd, &client, errp_));
  CHECK(client == NULL);

  /* _default refuses a size it does not know, and writes nothing. */
  relink_options untouched;
  memset(&untouched, 0x5C, sizeof untouched);
  CHECK(relink_options_default(&untouched, 3) == RELINK_STRUCT_SIZE);
  CHECK(relink_options_default(&untouched, sizeof untouched + 8) == RELINK_STRUCT_SIZE);
  CHECK(((unsigned char *)&untouched)[0] == 0x5C);
  CHECK(relink_options_default(NULL, sizeof untouched) == RELINK_INVALID_ARGUMENT);
  CHECK(strcmp(relink_code_name(RELINK_STRUCT_SIZE), "RELINK_STRUCT_SIZE") == 0);
}

static void the_core_policy_structs_follow_the_same_rule(void) {
  relink_supervisor_config config;
  CHECK_OK(relink_supervisor_config_default(&config, sizeof config));
  CHECK(config.struct_size == sizeof config);
  relink_supervisor *supervisor = NULL;
  CHECK_OK(relink_supervisor_new(&config, 1, &supervisor, errp_));
  relink_supervisor_free(supervisor);
  supervisor = NULL;
  config.struct_size = 0;
  CHECK_FAILS(RELINK_STRUCT_SIZE, "relink_supervisor_config_default",
              relink_supervisor_new(&config, 1, &supervisor, errp_));
  CHECK(supervisor == NULL);

  relink_call_policy policy;
  CHECK_OK(relink_call_policy_default(&policy, sizeof policy));
  CHECK(policy.struct_size == sizeof policy);
  relink_call *call = NULL;
  CHECK_OK(relink_call_new(&policy, 0, false, 1, &call, errp_));
  relink_call_free(call);
  call = NULL;
  policy.struct_size = sizeof policy + 8;
  CHECK_FAILS(RELINK_STRUCT_SIZE, "relink_call_policy",
              relink_call_new(&policy, 0, false, 1, &call, errp_));
  CHECK(call == NULL);
}

int main(void) {
  options_of_this_header_are_accepted();
  options_of_an_older_header_are_accepted();
  other_sizes_are_refused();
  the_core_policy_structs_follow_the_same_rule();
  printf("test_abi: %d passed, 0 failed\n", checks_passed);
  return 0;
}
