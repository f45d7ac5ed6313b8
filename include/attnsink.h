/*
 * libattnsink — attention sinks in transformer language models, as a C library.
 *
 * One public header. Everything public is prefixed asink_. Handles are opaque and
 * owned by the library; configuration goes through functions and spec strings, so
 * no public struct can change size (ABI stability, as in zstd).
 *
 * Conventions for every function below:
 *  - fallible functions return asink_status: ASINK_OK (0) or a negative error kind;
 *    asink_last_error() then holds a thread-local message naming the bad value;
 *  - buffers passed in belong to the caller: the library reads or writes them during
 *    the call only and never keeps the pointer;
 *  - tensors are row-major float32; activations are (B, T, H, D).
 *  - the library never prints, never aborts and never exits.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef ATTNSINK_H
#define ATTNSINK_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(ASINK_BUILDING_LIBRARY) && defined(__GNUC__)
#define ASINK_API __attribute__((visibility("default")))
#else
#define ASINK_API
#endif

/* ===================================================================== version */

#define ASINK_VERSION_MAJOR 0
#define ASINK_VERSION_MINOR 1
#define ASINK_VERSION_PATCH 0
#define ASINK_VERSION_NUMBER \
  (ASINK_VERSION_MAJOR * 10000 + ASINK_VERSION_MINOR * 100 + ASINK_VERSION_PATCH)

/* The version of the library actually loaded, "MAJOR.MINOR.PATCH". Static string. */
ASINK_API const char *asink_version(void);
/* The loaded library's version as MAJOR*10000 + MINOR*100 + PATCH. */
ASINK_API int asink_version_number(void);

/* ====================================================================== status */

typedef enum {
  ASINK_OK = 0,
  ASINK_ERR_ARG = -1,         /* a bad argument: NULL pointer, size out of range */
  ASINK_ERR_SPEC = -2,        /* an attention spec that does not parse or is inconsistent */
  ASINK_ERR_SHAPE = -3,       /* shapes that do not fit together */
  ASINK_ERR_NOMEM = -4,       /* an allocation failed */
  ASINK_ERR_STATE = -5,       /* a call out of order (backward before forward, ...) */
  ASINK_ERR_IO = -6,          /* a file could not be read or written */
  ASINK_ERR_FORMAT = -7,      /* a file's content is malformed */
  ASINK_ERR_UNSUPPORTED = -8  /* valid request this build or this CPU cannot serve */
} asink_status;

/* A short static name for a status ("ok", "bad argument", ...). Never NULL. */
ASINK_API const char *asink_status_string(asink_status s);

/* The message of the last error raised on the calling thread, naming the offending
 * value ("spec 'softmax,window=0': window=0 must be a positive integer").
 * Empty string if none. Valid until the next failing call on the same thread. */
ASINK_API const char *asink_last_error(void);

/* ===================================================================== runtime */

/* Initialises the runtime explicitly: picks the SIMD kernels from CPUID (or
 * ASINK_SIMD=scalar|avx2|avx512) and the BLIS kernel set (setting BLIS_ARCH_TYPE
 * for this CPU unless the user set it) before BLIS first runs. Every other entry
 * point does this lazily; call it early if your program uses BLIS itself.
 * Returns ASINK_ERR_UNSUPPORTED if ASINK_SIMD names a level this CPU lacks,
 * ASINK_ERR_ARG if it names no level. Idempotent and thread-safe. */
ASINK_API asink_status asink_init(void);

/* One line describing the runtime: version, SIMD level, BLIS kernel set and how it
 * was chosen, thread count. Static storage; valid until the next call. */
ASINK_API const char *asink_runtime_info(void);

/* The SIMD level in use: "scalar", "avx2" or "avx512". */
ASINK_API const char *asink_simd_level(void);

/* Threads used by the library's parallel regions (and BLIS calls made outside
 * them). Default: ASINK_NUM_THREADS if set, else the online cores.
 * ASINK_ERR_ARG unless 1 <= n <= 1024. */
ASINK_API asink_status asink_set_num_threads(int n);
ASINK_API int asink_get_num_threads(void);

/* ============================================================ attention-op */
/*
 * An attention operation selected by a spec string (docs/api.md, DESIGN §4):
 *   base[,key=value...]   base: softmax sigmoid elu linear elu-kernel
 *   options: norm=none|sum|clamp  scale=F  bias=F  causal=0|1  window=W  prefix=P
 *            alibi=0|1  kbias=shared|head  vbias=shared|head  sink=head|zero  alpha=F
 * q is (B,T,H,D); k and v are (B,T,Hkv,D) with H a multiple of Hkv (GQA / MQA);
 * out is (B,T,H,D). The handle keeps per-row statistics of its last forward for
 * backward; it never holds a T x T map.
 */
typedef struct asink_attn asink_attn;

/* Creates an op. Errors: ASINK_ERR_SPEC for an unknown base or option, an option
 * not valid for the base or a bad number (message names the text);
 * ASINK_ERR_SHAPE for heads not a multiple of kv heads or a size <= 0.
 * Learnable parameters start at zero; set them with asink_attn_param(). */
ASINK_API asink_status asink_attn_create(asink_attn **op, const char *spec, int n_head,
                                         int n_kv_head, int head_dim);
/* Frees the op and its workspaces. NULL is a no-op. */
ASINK_API void asink_attn_free(asink_attn *op);

/* The spec in canonical form (every option spelled out). Owned by the op. */
ASINK_API const char *asink_attn_spec(const asink_attn *op);

/* Number of key columns the op's maps have for T tokens: T, or T+1 with kbias
 * (column 0 is then the learnable virtual key). */
ASINK_API int asink_attn_key_count(const asink_attn *op, int T);

/* Learnable parameters: "k_bias" and "v_bias" (n, head_dim) with n = 1 (shared) or
 * n_head (head); "sinks" (n_head). Index i runs over 0 .. count-1 in that order. */
ASINK_API int asink_attn_param_count(const asink_attn *op);
/* Name and shape of parameter i. shape has room for 2 entries; *ndim is 1 or 2. */
ASINK_API asink_status asink_attn_param_info(const asink_attn *op, int i, const char **name,
                                             int *ndim, int64_t shape[2]);
/* Pointer to the op's own storage of a parameter (writing changes it) or of its
 * gradient. *numel receives the element count. ASINK_ERR_ARG for an unknown name. */
ASINK_API asink_status asink_attn_param(asink_attn *op, const char *name, float **data,
                                        size_t *numel);
ASINK_API asink_status asink_attn_grad(asink_attn *op, const char *name, float **data,
                                       size_t *numel);
/* Sets every parameter gradient to zero. backward accumulates into them. */
ASINK_API void asink_attn_zero_grad(asink_attn *op);

/* out = attention(q, k, v). importance, if not NULL, receives (B, H, Tk) with the
 * per-key importance of DESIGN §5 computed in the same pass. Saves row statistics
 * for asink_attn_backward. ASINK_ERR_ARG for NULL buffers or B, T < 1. */
ASINK_API asink_status asink_attn_forward(asink_attn *op, int B, int T, const float *q,
                                          const float *k, const float *v, float *out,
                                          float *importance);

/* Gradients of sum(out * dout) for the last forward: writes dq, dk, dv (same shapes
 * as q, k, v) and adds the parameter gradients into the op's grad buffers. q, k, v
 * and out must be the buffers (values) of that forward. ASINK_ERR_STATE if there
 * was no forward. */
ASINK_API asink_status asink_attn_backward(asink_attn *op, const float *q, const float *k,
                                           const float *v, const float *out,
                                           const float *dout, float *dq, float *dk,
                                           float *dv);

#ifdef __cplusplus
}
#endif
#endif /* ATTNSINK_H */
