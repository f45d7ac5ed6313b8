/*
 * runtime_info: print the loaded library's version and the runtime it chose
 * (SIMD level, BLIS kernel set, thread count). `make study` runs it until the
 * `attnsink` program exists.
 *
 * SPDX-License-Identifier: MIT
 */
#include <stdio.h>

#include "attnsink.h"

int main(void) {
  asink_status s = asink_init();
  if (s != ASINK_OK) {
    fprintf(stderr, "runtime_info: asink_init: %s: %s\n", asink_status_string(s),
            asink_last_error());
    return 1;
  }
  printf("version: %s\n", asink_version());
  printf("runtime: %s\n", asink_runtime_info());
  return 0;
}
