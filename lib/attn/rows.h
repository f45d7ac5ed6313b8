/* The row math of the attention bases behind one small table: each base (softmax.c,
 * sigmoid.c, elu.c, linear.c; the non-softmax ones share normalised.c) says how a row
 * of scores becomes its map, how the map is recomputed for backward, and how the
 * gradient flows back through it. The drivers (blocked.c) do the tiling, masks,
 * GEMMs and importance around these calls and never ask which base runs. */
#ifndef ASINK_ATTN_ROWS_H
#define ASINK_ATTN_ROWS_H

#include <stdbool.h>

#include "attn/op_internal.h"
#include "kernels/kernels.h"

/* Per-(sequence, head) view of the operands and the head's constants. */
typedef struct {
  const asink_attn *op;
  const asink_kernels *kn;
  const attn_geom *g; /* the queries' and keys' positions */
  int h, bq;
  const float *q, *k, *v; /* rows of this head; strides ldq (q, out) and ldk (k, v) */
  int ldq, ldk;
  float slope;                 /* ALiBi slope, 0 if off */
  const float *kstar, *vstar;  /* virtual key and its value (vstar NULL = zero value) */
  const float *vadd;           /* vbias without kbias: added to every output row */
  float sink_logit;            /* softmax sink logit; -INFINITY if none */
  const float *rel;            /* relbias: this head's 32 bucket values, or NULL */
  const unsigned char *bucket; /* relbias: bucket of each distance < ASINK_REL_TABLE */
} head_ctx;

/* Distances with a tabulated T5 bucket; every longer one is in the last bucket. */
enum { ASINK_REL_TABLE = 1024 };

typedef struct attn_base {
  /* Turns the visible scores x[0..n) of a row into its unnormalised map and returns
   * the row's multiplier: the map applied to the values is mul * x (applied to the
   * D-wide output row after the GEMM, saving a pass over every score). sv is the
   * virtual key's score, *pv receives its unnormalised entry; st[0..1] receives the
   * row statistics backward needs. With sdot (entropy_from_dot bases), *sdot =
   * sum_j x_j s_j of the result and the scores, taken in the same pass. */
  float (*forward_row)(const head_ctx *c, float *x, int n, float sv, float *pv, float *st,
                       float *sdot);
  /* The row's map again from its scores and statistics (the same x forward made
   * before its multiplier); *pv the virtual entry. */
  void (*recompute_row)(const head_ctx *c, float *x, int n, float sv, float *pv,
                        const float *st);
  /* The row's map multiplier from its statistics: A = map_mul * x. */
  float (*map_mul)(const head_ctx *c, const float *st);
  /* In place on dp (= dout . v_j): the score gradient dS of the row whose recomputed
   * map is x; returns the virtual key's. Dt = dout . out without the vbias-alone
   * term. gsink, if not NULL, accumulates the sink logit's gradient. */
  float (*backward_row)(const head_ctx *c, float *dp, const float *x, int n, float pv,
                        float dpv, float Dt, const float *st, float *gsink);
  /* The weight w of the row's statistics map w * |x| (importance, entropy). */
  float (*stat_weight)(const head_ctx *c, const float *x, int n, float pv, float mul);
  /* -sum p log p of the row's statistics map; xs = *sdot of forward_row, sv and st
   * those of the row (entropy_from_dot bases), w its stat_weight. */
  float (*row_entropy)(const head_ctx *c, const float *x, int n, float pv, float sv, float xs,
                       const float *st, float mul, float w);
  bool uniform_map_mul;  /* map_mul is the same for every row (alpha): dV is one GEMM */
  bool nonnegative;      /* maps are never negative: importance is a plain axpy */
  bool entropy_from_dot; /* row_entropy reads xs, not x */
  bool features;         /* q and k go through elu + 1 first (elu-kernel) */
} attn_base;

extern const attn_base asink_attn_softmax, asink_attn_sigmoid, asink_attn_elu,
    asink_attn_linear, asink_attn_elu_kernel;

/* The row math of a spec's base. */
const attn_base *asink_attn_base_of(asink_base b);

/* normalised.c: what sigmoid, elu and linear share after their similarity: the row
 * normalisation (norm=none|sum|clamp), its backward, the proxy statistics map. */
float asink_norm_forward(const head_ctx *c, const float *x, int n, float a_v, float *pv,
                         float *st);
float asink_norm_map_mul(const head_ctx *c, const float *st);
float asink_norm_stat_weight(const head_ctx *c, const float *x, int n, float pv, float mul);
float asink_norm_entropy(const head_ctx *c, const float *x, int n, float pv, float sv, float xs,
                         const float *st, float mul, float w);
/* forward_row and recompute_row of a similarity base: the row kernel row (from the
 * SIMD table) on the visible scores, one on the virtual key's, then the normalisation. */
float asink_similarity_forward(const head_ctx *c, void (*row)(size_t, float *), float (*one)(float),
                               float *x, int n, float sv, float *pv, float *st);
void asink_similarity_recompute(const head_ctx *c, void (*row)(size_t, float *), float (*one)(float),
                                float *x, int n, float sv, float *pv);
/* The normalisation's part of backward: dp[i] <- inv * (dp[i] - Dt * den') before the
 * similarity's derivative; returns the virtual key's gradient before its derivative. */
float asink_norm_backward_shift(const float *st, float dpv, float Dt, float *cshift);

#endif
