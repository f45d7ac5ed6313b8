/* Linear attention's row math: a = s itself. elu-kernel is the same map on feature-
 * mapped queries and keys, phi(x) = elu(x) + 1, which the drivers apply first
 * (features). Either map may be negative, so importance takes |a|. */
#include "attn/rows.h"

static float forward_row(const head_ctx *c, float *x, int n, float sv, float *pv, float *st,
                         float *sdot) {
  (void)sdot;
  return asink_norm_forward(c, x, n, c->kstar ? sv : 0.f, pv, st);
}

static void recompute_row(const head_ctx *c, float *x, int n, float sv, float *pv,
                          const float *st) {
  (void)x, (void)n, (void)st;
  *pv = c->kstar ? sv : 0.f;
}

static float backward_row(const head_ctx *c, float *dp, const float *x, int n, float pv,
                          float dpv, float Dt, const float *st, float *gsink) {
  (void)x, (void)pv, (void)gsink;
  float cshift, dsv = asink_norm_backward_shift(st, dpv, Dt, &cshift);
  c->kn->shift_scale(n, dp, cshift, st[0]);
  return dsv;
}

#define LINEAR_ROWS                          \
  .forward_row = forward_row,                \
  .recompute_row = recompute_row,            \
  .map_mul = asink_norm_map_mul,             \
  .backward_row = backward_row,              \
  .stat_weight = asink_norm_stat_weight,     \
  .row_entropy = asink_norm_entropy

const attn_base asink_attn_linear = {LINEAR_ROWS};
const attn_base asink_attn_elu_kernel = {LINEAR_ROWS, .features = true};
