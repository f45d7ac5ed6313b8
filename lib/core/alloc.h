/* Aligned allocation and grow-only workspaces: a handle allocates its buffers once
 * and reuses them every call, because first touches of fresh pages cost ~12 us per
 * 4 KiB on the machines this runs on (docs/performance.md). */
#ifndef ASINK_CORE_ALLOC_H
#define ASINK_CORE_ALLOC_H

#include <stddef.h>
#include <stdint.h>

#include "attnsink.h"

#define ASINK_ALIGN 64

/* 64-byte aligned allocation; NULL on failure or overflow of n * size. */
void *asink_alloc(size_t n, size_t size);
void *asink_calloc(size_t n, size_t size);
/* Unaligned n * size bytes (NULL on failure or overflow; p kept then), resizable;
 * realloc(NULL, ...) allocates. asink_strdup copies a string. Both are freed by asink_free. */
void *asink_realloc(void *p, size_t n, size_t size);
/* calloc itself (unaligned): a large block is the kernel's zero pages until written. */
void *asink_zeroed(size_t n, size_t size);
char *asink_strdup(const char *s);
void asink_free(void *p);

/* Tests only (hidden from the shared library): make the n-th allocation from now fail
 * (n <= 0: none), and count the allocations made since. Allocations by jansson, BLIS and
 * OpenMP are not counted; they are outside the library's control. */
void asink_alloc_fail_at(long n);
long asink_alloc_count(void);

/* A buffer that only grows. */
typedef struct asink_ws {
  void *ptr;
  size_t bytes;
} asink_ws;

/* Makes w hold at least bytes bytes (contents are not kept when it grows). Returns
 * ASINK_ERR_NOMEM with a message naming what when it cannot. */
asink_status asink_ws_reserve(asink_ws *w, size_t bytes, const char *what);
void asink_ws_release(asink_ws *w);

/* Buffers carved from one workspace. A layout function runs twice: first with no base, to
 * count the floats it needs (so no size is written down twice), then on the reserved
 * workspace, to hand out the pointers, each 64-byte aligned. */
typedef struct asink_carver {
  float *base; /* NULL: only count */
  size_t used; /* floats */
} asink_carver;

/* The count saturates at ASINK_CARVE_MAX, past any allocation, so that sizes from a
 * config too large to address fail to allocate instead of wrapping round to a small
 * buffer (the caller multiplies used by sizeof(float)). */
#define ASINK_CARVE_MAX (SIZE_MAX / 16)
static inline void *asink_take(asink_carver *c, size_t floats) {
  float *p = c->base ? c->base + c->used : NULL;
  if (floats > ASINK_CARVE_MAX - 15 || c->used > ASINK_CARVE_MAX - (floats + 15) / 16 * 16)
    c->used = ASINK_CARVE_MAX;
  else
    c->used += (floats + 15) / 16 * 16;
  return p;
}

/* a * b, or SIZE_MAX if it overflows (so a following allocation fails cleanly). */
size_t asink_mul_size(size_t a, size_t b);

#endif
