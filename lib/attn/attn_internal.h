/* The attention-op handle's internals, shared by attn.c (handle, parameters, API
 * checks) and blocked.c (the blocked forward/backward cores). */
#ifndef ASINK_ATTN_INTERNAL_H
#define ASINK_ATTN_INTERNAL_H

#include <stdbool.h>

#include "attn/spec.h"
#include "core/alloc.h"

struct asink_attn {
  asink_spec spec;
  char canon[320];
  int H, Hkv, D;
  float scale;

  /* learnable parameters and their gradients; n_kb/n_vb rows of D (0 = absent) */
  int n_kb, n_vb;
  float *k_bias, *v_bias, *sinks, *rel;
  float *g_k_bias, *g_v_bias, *g_sinks, *g_rel;

  /* state of the last forward */
  bool have_forward;
  int B, T;
  asink_ws row_stats; /* B*H*T x 2 floats: softmax lse | other bases 1/den, den'(r) */
  asink_ws feat;      /* elu-kernel: phi(q) then phi(k) */
  asink_ws thread_ws; /* per-thread scratch blocks */
  asink_ws accum;     /* backward: per-thread dk, dv and parameter-gradient accumulators */
  asink_ws buckets;   /* relbias: T5 bucket of each distance 0 .. T-1 */
};

/* Visible keys of query t: one contiguous interval [*lo, *hi] (DESIGN §4, docs/attention.md). */
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

asink_status asink_attn_forward_blocked(asink_attn *op, const float *q, const float *k,
                                        const float *v, float *out, float *importance,
                                        float *entropy);

/* asink_attn_forward that also writes entropy (B, H): per (sequence, head) the sum
 * over query rows of -sum_j p log p of the statistics map (DESIGN §5's A-hat). */
asink_status asink_attn_forward_stats(asink_attn *op, int B, int T, const float *q,
                                      const float *k, const float *v, float *out,
                                      float *importance, float *entropy);
asink_status asink_attn_backward_blocked(asink_attn *op, const float *q, const float *k,
                                         const float *v, const float *out, const float *dout,
                                         float *dq, float *dk, float *dv);

#endif
