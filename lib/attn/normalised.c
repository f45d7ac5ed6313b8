/* What the similarity bases (sigmoid, elu, linear, elu-kernel) share once their
 * similarity is applied: the optional row normalisation A = a / den, den = sum + 1e-8
 * (norm=sum) or max(1, |sum|) (norm=clamp), its backward, and the statistics map's
 * proxy |A| / (sum |A| + 1e-8) (docs/attention.md). Row statistics: 1/den and den'. */
#include <math.h>

#include "attn/rows.h"

float asink_norm_forward(const head_ctx *c, const float *x, int n, float a_v, float *pv,
                         float *st) {
  const asink_norm norm = c->op->spec.norm;
  float r = norm != ASINK_NORM_NONE ? c->kn->sum(n, x) + a_v : 0.f; /* unused without a norm */
  float den = 1.f, dden = 0.f;
  if (norm == ASINK_NORM_SUM) {
    den = r + 1e-8f;
    dden = 1.f;
  } else if (norm == ASINK_NORM_CLAMP && fabsf(r) > 1.f) {
    den = fabsf(r);
    dden = r > 0.f ? 1.f : -1.f;
  }
  *pv = a_v;
  st[0] = 1.f / den;
  st[1] = dden;
  return st[0];
}

float asink_similarity_forward(const head_ctx *c, void (*row)(size_t, float *), float (*one)(float),
                               float *x, int n, float sv, float *pv, float *st) {
  row(n, x);
  return asink_norm_forward(c, x, n, c->kstar ? one(sv) : 0.f, pv, st);
}

void asink_similarity_recompute(const head_ctx *c, void (*row)(size_t, float *), float (*one)(float),
                                float *x, int n, float sv, float *pv) {
  row(n, x);
  *pv = c->kstar ? one(sv) : 0.f;
}

float asink_norm_map_mul(const head_ctx *c, const float *st) {
  (void)c;
  return st[0];
}

float asink_norm_backward_shift(const float *st, float dpv, float Dt, float *cshift) {
  *cshift = Dt * st[1];
  return st[0] * (dpv - *cshift);
}

float asink_norm_stat_weight(const head_ctx *c, const float *x, int n, float pv, float mul) {
  return mul / (mul * (c->kn->abs_sum(n, x) + fabsf(pv)) + 1e-8f);
}

float asink_norm_entropy(const head_ctx *c, const float *x, int n, float pv, float sv, float xs,
                         const float *st, float mul, float w) {
  (void)c, (void)sv, (void)xs, (void)st, (void)mul;
  float h = 0.f;
  for (int i = 0; i < n; i++) {
    float p = w * fabsf(x[i]);
    if (p > 0.f) h -= p * logf(p);
  }
  float p = w * fabsf(pv);
  if (p > 0.f) h -= p * logf(p);
  return h;
}
