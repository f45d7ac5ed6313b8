/* Softmax attention's row math: A = alpha * softmax(s) over the visible keys, the
 * virtual key and the sink logit (docs/attention.md). The row statistic is the
 * log-sum-exp, from which backward recomputes P exactly as FlashAttention does. */
#include <math.h>

#include "attn/rows.h"

static float forward_row(const head_ctx *c, float *x, int n, float sv, float *pv, float *st,
                         float *sdot) {
  const asink_kernels *kn = c->kn;
  float m = kn->max(n, x);
  if (c->kstar && sv > m) m = sv;
  if (c->sink_logit > m) m = c->sink_logit;
  float l = sdot ? kn->exp_shift_sum_dot(n, x, m, sdot) : kn->exp_shift_sum(n, x, m);
  float ev = c->kstar ? expf(sv - m) : 0.f;
  l += ev;
  if (c->sink_logit != -INFINITY) l += expf(c->sink_logit - m);
  *pv = ev;
  st[0] = m + logf(l);
  st[1] = 0.f;
  return c->op->spec.alpha / l;
}

/* P itself (not yet times alpha). */
static void recompute_row(const head_ctx *c, float *x, int n, float sv, float *pv,
                          const float *st) {
  c->kn->exp_shift(n, x, st[0]);
  *pv = c->kstar ? expf(sv - st[0]) : 0.f;
}

static float map_mul(const head_ctx *c, const float *st) {
  (void)st;
  return c->op->spec.alpha;
}

static float backward_row(const head_ctx *c, float *dp, const float *x, int n, float pv,
                          float dpv, float Dt, const float *st, float *gsink) {
  const float alpha = c->op->spec.alpha, cshift = Dt / alpha;
  c->kn->softmax_bwd(n, dp, x, cshift, alpha);
  if (gsink) *gsink -= expf(c->sink_logit - st[0]) * Dt;
  return alpha * pv * (dpv - cshift);
}

/* The statistics map is P = A / alpha. */
static float stat_weight(const head_ctx *c, const float *x, int n, float pv, float mul) {
  (void)x, (void)n, (void)pv;
  return mul / c->op->spec.alpha;
}

/* Without a logarithm per entry: log P_j = s_j - lse, so -sum P log P = lse sum P -
 * sum P s, and sum P = 1 - P(sink logit). P = x / sum = mul x / alpha; xs = sum_j x_j
 * s_j over the row's scores s. */
static float row_entropy(const head_ctx *c, const float *x, int n, float pv, float sv, float xs,
                         const float *st, float mul, float w) {
  (void)x, (void)n, (void)w;
  const float lse = st[0];
  float psum = 1.f - (c->sink_logit != -INFINITY ? expf(c->sink_logit - lse) : 0.f);
  float ps = (xs + (c->kstar ? pv * sv : 0.f)) * mul / c->op->spec.alpha;
  return lse * psum - ps;
}

const attn_base asink_attn_softmax = {
    .forward_row = forward_row,
    .recompute_row = recompute_row,
    .map_mul = map_mul,
    .backward_row = backward_row,
    .stat_weight = stat_weight,
    .row_entropy = row_entropy,
    .uniform_map_mul = true,
    .nonnegative = true,
    .entropy_from_dot = true,
};
