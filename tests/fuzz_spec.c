/* libFuzzer target for the attention spec (asink_spec_parse): any string must either parse,
 * and then its canonical spelling (asink_spec_format) parse to the same canonical spelling,
 * or fail with ASINK_ERR_SPEC and a message, without crashing or undefined behaviour.
 * Build: see docs/fuzzing.md. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "attn/spec.h"
#include "attnsink.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > 4096) return 0; /* a spec is one short line */
  char text[4097];
  memcpy(text, data, size);
  text[size] = 0;
  asink_spec s;
  asink_status st = asink_spec_parse(text, &s);
  if (st != ASINK_OK) {
    if (st != ASINK_ERR_SPEC || !asink_last_error()[0]) abort();
    return 0;
  }
  char canon[1024], again[1024];
  asink_spec_format(&s, 1.f, canon, sizeof canon);
  asink_spec t;
  if (asink_spec_parse(canon, &t) != ASINK_OK) abort();
  asink_spec_format(&t, 1.f, again, sizeof again);
  if (strcmp(canon, again)) abort();
  return 0;
}
