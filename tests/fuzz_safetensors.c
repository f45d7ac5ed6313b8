/* libFuzzer target for the safetensors parser: any byte string must either parse or
 * fail with ASINK_ERR_FORMAT, without crashing, leaking or touching memory outside
 * the input. Build: see docs/fuzzing.md. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  asink_tensors *set = NULL;
  asink_status s = asink_st_parse(data, size, &set);
  if (s == ASINK_OK) {
    /* Touch what the parser promises so ASan sees any short allocation. */
    volatile float sink = 0;
    for (int i = 0; i < asink_st_count(set); i++) {
      const char *name;
      int ndim;
      int64_t shape[ASINK_ST_MAX_DIMS];
      const float *d;
      if (asink_st_get(set, i, &name, &ndim, shape, &d) != ASINK_OK) abort();
      int64_t numel = 1;
      for (int k = 0; k < ndim; k++) numel *= shape[k];
      if (numel != asink_st_numel(set, i) || asink_st_find(set, name) != i) abort();
      if (numel) sink += d[0] + d[numel - 1];
    }
    for (int i = 0; i < asink_st_meta_count(set); i++) {
      const char *k, *v;
      if (asink_st_meta_at(set, i, &k, &v) != ASINK_OK || asink_st_meta_get(set, k) != v) abort();
    }
    (void)sink;
  } else if (s != ASINK_ERR_FORMAT && s != ASINK_ERR_NOMEM) {
    abort();
  } else if (set != NULL) {
    abort();
  }
  asink_st_free(set);
  return 0;
}
