#include "core/alloc.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

size_t asink_mul_size(size_t a, size_t b) {
  if (a != 0 && b > SIZE_MAX / a) return SIZE_MAX;
  return a * b;
}

/* Fault injection (tests only): every allocation of the library passes through
 * should_fail(), so a test can make exactly the n-th one fail and check that the
 * call reports ASINK_ERR_NOMEM, frees what it had and leaves its handle usable.
 * Relaxed atomics: allocations may happen on the library's worker threads. */
static _Atomic long alloc_seen;
static _Atomic long alloc_fail_at;

void asink_alloc_fail_at(long n) {
  atomic_store_explicit(&alloc_seen, 0, memory_order_relaxed);
  atomic_store_explicit(&alloc_fail_at, n > 0 ? n : 0, memory_order_relaxed);
}

long asink_alloc_count(void) { return atomic_load_explicit(&alloc_seen, memory_order_relaxed); }

static int should_fail(void) {
  long n = atomic_fetch_add_explicit(&alloc_seen, 1, memory_order_relaxed) + 1;
  return n == atomic_load_explicit(&alloc_fail_at, memory_order_relaxed);
}

void *asink_alloc(size_t n, size_t size) {
  size_t bytes = asink_mul_size(n, size);
  if (bytes == SIZE_MAX || bytes > SIZE_MAX - ASINK_ALIGN) return NULL;
  bytes = (bytes + ASINK_ALIGN - 1) / ASINK_ALIGN * ASINK_ALIGN;
  if (bytes == 0) bytes = ASINK_ALIGN;
  if (should_fail()) return NULL;
  return aligned_alloc(ASINK_ALIGN, bytes);
}

void *asink_calloc(size_t n, size_t size) {
  void *p = asink_alloc(n, size);
  if (p) memset(p, 0, asink_mul_size(n, size));
  return p;
}

void *asink_realloc(void *p, size_t n, size_t size) {
  size_t bytes = asink_mul_size(n, size);
  if (bytes == SIZE_MAX) return NULL;
  if (should_fail()) return NULL;
  return realloc(p, bytes ? bytes : 1);
}

void *asink_zeroed(size_t n, size_t size) {
  if (asink_mul_size(n, size) == SIZE_MAX || should_fail()) return NULL;
  return calloc(n, size);
}

char *asink_strdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *p = asink_realloc(NULL, n, 1);
  if (p) memcpy(p, s, n);
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
