#include "core/alloc.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

size_t asink_mul_size(size_t a, size_t b) {
  if (a != 0 && b > SIZE_MAX / a) return SIZE_MAX;
  return a * b;
}

void *asink_alloc(size_t n, size_t size) {
  size_t bytes = asink_mul_size(n, size);
  if (bytes == SIZE_MAX || bytes > SIZE_MAX - ASINK_ALIGN) return NULL;
  bytes = (bytes + ASINK_ALIGN - 1) / ASINK_ALIGN * ASINK_ALIGN;
  if (bytes == 0) bytes = ASINK_ALIGN;
  return aligned_alloc(ASINK_ALIGN, bytes);
}

void *asink_calloc(size_t n, size_t size) {
  void *p = asink_alloc(n, size);
  if (p) memset(p, 0, asink_mul_size(n, size));
  return p;
}

void asink_free(void *p) { free(p); }

asink_status asink_ws_reserve(asink_ws *w, size_t bytes, const char *what) {
  if (bytes <= w->bytes) return ASINK_OK;
  void *p = asink_alloc(bytes, 1);
  if (!p) return asink_fail(ASINK_ERR_NOMEM, "cannot allocate %zu bytes for %s", bytes, what);
  asink_free(w->ptr);
  w->ptr = p;
  w->bytes = bytes;
  return ASINK_OK;
}

void asink_ws_release(asink_ws *w) {
  asink_free(w->ptr);
  w->ptr = NULL;
  w->bytes = 0;
}
