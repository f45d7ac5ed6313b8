/* What the C tests run once per SIMD level (tests/meson.build sets ASINK_SIMD for each) share:
 * starting the library, where a level this CPU or build lacks exits 77 (meson: skipped), and
 * running one test case; and removing a checkpoint directory a test saved. */
#ifndef ASINK_TESTS_SIMD_SUITE_H
#define ASINK_TESTS_SIMD_SUITE_H

#include <check.h>
#include <stdio.h>
#include <unistd.h>

#include "attnsink.h"

/* Runs the tests add_tests puts in one case, each within timeout seconds: 0 when all pass,
 * 1 on a failure. */
static inline int run_test_case(const char *name, int timeout, void (*add_tests)(TCase *tc)) {
  Suite *s = suite_create(name);
  TCase *tc = tcase_create("core");
  tcase_set_timeout(tc, timeout);
  add_tests(tc);
  suite_add_tcase(s, tc);
  SRunner *r = srunner_create(s);
  srunner_run_all(r, CK_NORMAL);
  int failed = srunner_ntests_failed(r);
  srunner_free(r);
  return failed ? 1 : 0;
}

/* Runs the tests add_tests puts in a case: 0 when all pass, 1 on a failure, 77 to skip. */
static inline int run_simd_suite(const char *name, void (*add_tests)(TCase *tc)) {
  asink_status st = asink_init();
  if (st == ASINK_ERR_UNSUPPORTED) { /* ASINK_SIMD names a level this CPU (or build) lacks */
    printf("skipped: %s\n", asink_last_error());
    return 77;
  }
  if (st != ASINK_OK) {
    printf("asink_init: %s\n", asink_last_error());
    return 1;
  }
  return run_test_case(name, 120, add_tests);
}

/* dir's config.json and model.safetensors, then dir itself. */
static inline void remove_checkpoint(const char *dir) {
  char path[512];
  snprintf(path, sizeof path, "%s/config.json", dir), unlink(path);
  snprintf(path, sizeof path, "%s/model.safetensors", dir), unlink(path);
  rmdir(dir);
}

#endif
