/* The attention op's internals, shared by the files of lib/attn only: attn.c (handle,
 * parameters, checks), blocked.c (drivers), plan.c (masks and GEMM tiling) and the
 * bases' row math (rows.h). */
#ifndef ASINK_ATTN_OP_INTERNAL_H
#define ASINK_ATTN_OP_INTERNAL_H

#include <stdbool.h>

#include "attn/op.h"
#include "attn/spec.h"
#include "core/alloc.h"

/* Learnable parameters, as views into one block; NULL when absent. */
typedef struct {
  float *k_bias, *v_bias, *sinks, *rel;
} attn_param_views;

struct asink_attn {
  asink_spec spec;
  char canon[320];
  int H, Hkv, D;
  float scale;
  int n_kb, n_vb; /* rows of D in k_bias / v_bias (0 = absent) */

  float *params, *grads; /* param_floats each, in parameter order; grads the public API's */
  bool owns_storage;     /* of params: false once a model holds them (use_storage) */
  attn_param_views p;    /* views of params */

  asink_attn_state *own; /* the state of the public forward/backward */
};

struct asink_attn_state {
  const asink_attn *op; /* of the last forward; NULL: none to differentiate */
  int B, T;
  asink_ws row_stats; /* B*H*T x 2 floats: softmax lse | other bases 1/den, den'(r) */
  asink_ws feat;      /* elu-kernel: phi(q) then phi(k) */
  asink_ws thread_ws; /* per-thread scratch blocks */
  asink_ws accum;     /* backward: per-thread dk, dv and parameter-gradient accumulators */
  asink_ws buckets;   /* relbias: T5 bucket of each distance 0 .. T-1 */
};

/* The parameter views of an op laid over block (params or a gradient buffer). */
attn_param_views asink_attn_views(const asink_attn *op, float *block);

/* Visible keys of query t: one contiguous interval [*lo, *hi] (docs/attention.md). */
static inline void asink_visible(const asink_spec *s, int T, int t, int *lo, int *hi) {
  if (!s->causal) {
    *lo = 0;
    *hi = T - 1;
  } else if (s->prefix && t < s->prefix) {
    *lo = 0;
    *hi = (s->prefix < T ? s->prefix : T) - 1;
  } else {
    *hi = t;
    *lo = (s->window && t - s->window + 1 > 0) ? t - s->window + 1 : 0;
  }
}

/* blocked.c: the passes over checked arguments; s->B, s->T already set. */
asink_status asink_attn_forward_blocked(const asink_attn *op, asink_attn_state *s, const float *q,
                                        const float *k, const float *v, float *out,
                                        float *importance, float *entropy);
asink_status asink_attn_backward_blocked(const asink_attn *op, asink_attn_state *s,
                                         const attn_param_views *g, const float *q,
                                         const float *k, const float *v, const float *out,
                                         const float *dout, float *dq, float *dk, float *dv);

#endif
