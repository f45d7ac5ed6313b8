/* elu attention's row math: a = elu(s) + 1 (positive, so a map without a softmax). */
#include <math.h>

#include "attn/rows.h"

static float elu1(float s) { return s > 0.f ? s + 1.f : expf(s); }

static float forward_row(const head_ctx *c, float *x, int n, float sv, float *pv, float *st,
                         float *sdot) {
  (void)sdot;
  return asink_similarity_forward(c, c->kn->elu1, elu1, x, n, sv, pv, st);
}

static void recompute_row(const head_ctx *c, float *x, int n, float sv, float *pv,
                          const float *st) {
  (void)st;
  asink_similarity_recompute(c, c->kn->elu1, elu1, x, n, sv, pv);
}

/* (elu + 1)' = 1 for s > 0 (a > 1), exp(s) = a otherwise */
static float backward_row(const head_ctx *c, float *dp, const float *x, int n, float pv,
                          float dpv, float Dt, const float *st, float *gsink) {
  (void)gsink;
  float cshift, dsv = asink_norm_backward_shift(st, dpv, Dt, &cshift);
  c->kn->elu1_bwd(n, dp, x, cshift, st[0]);
  return dsv * (pv > 1.f ? 1.f : pv);
}

const attn_base asink_attn_elu = {
    .forward_row = forward_row,
    .recompute_row = recompute_row,
    .map_mul = asink_norm_map_mul,
    .backward_row = backward_row,
    .stat_weight = asink_norm_stat_weight,
    .row_entropy = asink_norm_entropy,
    .nonnegative = true,
};
