/* Library-wide runtime: lazy one-time initialisation, thread count, CPU level, and
 * the settings read from the environment once, at initialisation. */
#ifndef ASINK_CORE_RUNTIME_H
#define ASINK_CORE_RUNTIME_H

#include <stdbool.h>

#include "attnsink.h"

/* asink_init() under another name for internal entry points: returns its status. */
asink_status asink_runtime_ready(void);

/* CPU feature levels. */
typedef enum { ASINK_ISA_SCALAR = 0, ASINK_ISA_AVX2 = 1, ASINK_ISA_AVX512 = 2 } asink_isa;

/* Highest level this CPU (and OS) supports. */
asink_isa asink_cpu_best_isa(void);

/* Whether this CPU (and OS) runs AVX-512 BF16 (vdpbf16ps). */
bool asink_cpu_has_avx512bf16(void);

/* Threads for a new parallel region: the library's count, 1 inside a parallel region
 * (nested regions run on one thread; a batch slice's passes, for one). */
int asink_region_threads(void);

/* Settings from the environment, read once by asink_init (docs/api.md); the passes
 * read them here, never from getenv. */
/* ASINK_GEMM: which driver runs GEMMs (core/blas.c). */
typedef enum {
  ASINK_GEMM_AUTO = 0, /* unset or "auto": the library's kernels, BLIS at the scalar level */
  ASINK_GEMM_BLIS,     /* "blis": bli_sgemm_ex, BLIS's kernels from its own CPU detection */
  ASINK_GEMM_PACKED,   /* "packed": the library's kernels, the scalar ones included */
} asink_gemm_driver;

typedef struct {
  int slice_tokens; /* ASINK_SLICE_TOKENS: tokens per batch slice of a small model (256) */
  bool slices;      /* ASINK_REPLICAS=0 turns batch slices off */
  asink_gemm_driver gemm; /* never AUTO once initialised: resolved from the SIMD level */
  bool bf16_kernel; /* ASINK_BF16_KERNEL=0 turns the bf16 pair kernel (vdpbf16ps) off */
} asink_settings;

const asink_settings *asink_get_settings(void);

#endif
