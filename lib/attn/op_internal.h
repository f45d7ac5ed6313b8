/* The attention op's internals, shared by the files of lib/attn only: attn.c (handle,
 * parameters, checks), blocked.c (drivers), plan.c (masks and GEMM tiling) and the
 * bases' row math (rows.h). */
#ifndef ASINK_ATTN_OP_INTERNAL_H
#define ASINK_ATTN_OP_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "attn/op.h"
#include "attn/spec.h"
#include "core/alloc.h"

/* Where a pass's queries and keys sit: Tq queries at increasing positions qpos (NULL:
 * p0 + r) against Tk keys at increasing positions kpos (NULL: j). A training pass has
 * Tq = Tk = T and p0 = 0; a cache's step has its new queries after its kept keys. */
typedef struct {
  int Tq, Tk;
  const int64_t *qpos, *kpos;
  int64_t p0;
} attn_geom;

static inline int64_t asink_qpos(const attn_geom *g, int r) { return g->qpos ? g->qpos[r] : g->p0 + r; }
static inline int64_t asink_kpos(const attn_geom *g, int j) { return g->kpos ? g->kpos[j] : j; }

/* first key index whose position is >= p (Tk if none) */
static inline int asink_key_at_or_after(const attn_geom *g, int64_t p) {
  if (!g->kpos) return p <= 0 ? 0 : p >= g->Tk ? g->Tk : (int)p;
  int a = 0, b = g->Tk;
  while (a < b) {
    int mid = (a + b) / 2;
    if (g->kpos[mid] >= p) b = mid;
    else a = mid + 1;
  }
  return a;
}

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
  int B;
  attn_geom g;        /* of the last forward; its positions point into pos */
  asink_ws pos;       /* copies of the caller's query and key positions */
  asink_ws row_stats; /* B*H*T x 2 floats: softmax lse | other bases 1/den, den'(r) */
  asink_ws feat;      /* elu-kernel: phi(q) then phi(k) */
  asink_ws thread_ws; /* per-thread scratch blocks */
  asink_ws accum;     /* backward: per-thread dk, dv and parameter-gradient accumulators */
  asink_ws buckets;   /* relbias: T5 bucket of each distance 0 .. T-1 */
  float *first_share; /* asink_attn_state_watch_first_key's buffer, or NULL */
};

/* The parameter views of an op laid over block (params or a gradient buffer). */
attn_param_views asink_attn_views(const asink_attn *op, float *block);

/* The keys query row r sees: one contiguous interval of key indices [*lo, *hi]
 * (empty when *lo > *hi), from the positions (docs/attention.md). */
static inline void asink_visible(const asink_spec *s, const attn_geom *g, int r, int *lo, int *hi) {
  const int64_t t = asink_qpos(g, r);
  int64_t plo = INT64_MIN / 2, phi = INT64_MAX / 2; /* visible positions, inclusive */
  if (s->causal) {
    if (s->prefix && t < s->prefix) {
      phi = s->prefix - 1;
    } else {
      phi = t;
      if (s->window) plo = t - s->window + 1;
    }
  }
  *lo = asink_key_at_or_after(g, plo);
  *hi = asink_key_at_or_after(g, phi + 1) - 1;
}

/* blocked.c: the passes over checked arguments; s->B and s->g already set. */
asink_status asink_attn_forward_blocked(const asink_attn *op, asink_attn_state *s, const float *q,
                                        const float *k, const float *v, float *out,
                                        float *importance, float *entropy);
asink_status asink_attn_backward_blocked(const asink_attn *op, asink_attn_state *s,
                                         const attn_param_views *g, const float *q,
                                         const float *k, const float *v, const float *out,
                                         const float *dout, float *dq, float *dk, float *dv);

#endif
