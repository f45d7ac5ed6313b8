/* AdamW with decoupled weight decay, global-norm clipping and a warm-up schedule,
 * in torch.optim.AdamW's order of operations so runs compare closely with it. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/runtime.h"
#include "kernels/kernels.h"
#include "model/model_internal.h"

asink_status asink_adamw_create(asink_adamw **out, asink_model *m, float lr, float beta1, float beta2,
                                float eps, float weight_decay, float clip) {
  if (!out || !m) return asink_fail(ASINK_ERR_ARG, "asink_adamw_create: NULL argument");
  *out = NULL;
  if (m->w->bf16) return asink_refuse_bf16_training(m, "asink_adamw_create");
  if (!(lr > 0.f) || !isfinite(lr)) return asink_fail(ASINK_ERR_ARG, "lr=%g must be positive", lr);
  if (!(beta1 >= 0.f && beta1 < 1.f)) return asink_fail(ASINK_ERR_ARG, "beta1=%g must be in [0, 1)", beta1);
  if (!(beta2 >= 0.f && beta2 < 1.f)) return asink_fail(ASINK_ERR_ARG, "beta2=%g must be in [0, 1)", beta2);
  if (!(eps > 0.f)) return asink_fail(ASINK_ERR_ARG, "eps=%g must be positive", eps);
  if (!(weight_decay >= 0.f) || !isfinite(weight_decay))
    return asink_fail(ASINK_ERR_ARG, "weight_decay=%g must be >= 0", weight_decay);
  if (!isfinite(clip)) return asink_fail(ASINK_ERR_ARG, "clip=%g must be finite (<= 0 turns it off)", clip);
  asink_adamw *o = asink_calloc(1, sizeof *o);
  if (!o) return asink_fail(ASINK_ERR_NOMEM, "cannot allocate an optimizer");
  const size_t total = m->w->n_block;
  o->total = total;
  o->mom = asink_calloc(asink_mul_size(2, total) + 1, sizeof(float));
  if (!o->mom) {
    asink_free(o);
    return asink_fail(ASINK_ERR_NOMEM, "cannot allocate optimizer state for %zu parameters", total);
  }
  o->var = o->mom + o->total;
  o->m = m, o->lr = lr, o->b1 = beta1, o->b2 = beta2, o->eps = eps, o->wd = weight_decay, o->clip = clip;
  *out = o;
  return ASINK_OK;
}

void asink_adamw_free(asink_adamw *o) {
  if (!o) return;
  asink_free(o->mom);
  asink_free(o);
}

asink_status asink_adamw_schedule(asink_adamw *o, const char *schedule, int warmup, int total_steps,
                                  float min_lr) {
  if (!o || !schedule) return asink_fail(ASINK_ERR_ARG, "asink_adamw_schedule: NULL argument");
  bool cosine = !strcmp(schedule, "cosine");
  if (!cosine && strcmp(schedule, "constant"))
    return asink_fail(ASINK_ERR_ARG, "schedule '%s': expected constant or cosine", schedule);
  if (warmup < 0) return asink_fail(ASINK_ERR_ARG, "warmup=%d must be >= 0", warmup);
  if (cosine && total_steps <= warmup)
    return asink_fail(ASINK_ERR_ARG, "cosine schedule: total_steps=%d must exceed warmup=%d", total_steps, warmup);
  if (!(min_lr >= 0.f)) return asink_fail(ASINK_ERR_ARG, "min_lr=%g must be >= 0", min_lr);
  o->cosine = cosine, o->warmup = warmup, o->total_steps = total_steps, o->min_lr = min_lr;
  return ASINK_OK;
}

int64_t asink_adamw_steps(const asink_adamw *o) { return o ? o->step : 0; }

float asink_adamw_lr(const asink_adamw *o) {
  if (!o) return 0.f;
  double t = (double)o->step + 1;
  if (o->warmup > 0 && t <= o->warmup) return (float)(o->lr * t / o->warmup);
  if (!o->cosine) return o->lr;
  double p = (t - o->warmup) / (double)(o->total_steps - o->warmup);
  if (p > 1.0) p = 1.0;
  return (float)(o->min_lr + 0.5 * (o->lr - o->min_lr) * (1.0 + cos(M_PI * p)));
}

enum { NORM_BLOCK = 1 << 16 };

/* Sum of squares of n floats in a fixed order: eight interleaved double sums, so
 * the adds do not wait on each other's latency as one running sum would. */
static double sumsq_block(const float *g, size_t n) {
  double a[8] = {0};
  size_t j = 0;
  for (; j + 8 <= n; j += 8)
    for (int u = 0; u < 8; u++) a[u] += (double)g[j + u] * g[j + u];
  for (; j < n; j++) a[0] += (double)g[j] * g[j];
  return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
}

/* Squared global gradient norm. Blocks of NORM_BLOCK elements are summed in
 * parallel and their sums added in block order: the result does not depend on the
 * thread count, so runs stay bit-identical. */
static double grad_sumsq(const asink_model *m) {
  double total = 0.0;
  const int nt = asink_region_threads();
  for (int i = 0; i < m->w->n_params; i++) {
    const asink_param *p = &m->w->params[i];
    const float *g = asink_model_grad_of(m, p);
    long n = (long)p->numel, nb = (n + NORM_BLOCK - 1) / NORM_BLOCK;
    if (nb <= 1) {
      total += sumsq_block(g, (size_t)n);
      continue;
    }
    double part[64];
    for (long b0 = 0; b0 < nb; b0 += 64) {
      long cnt = nb - b0 < 64 ? nb - b0 : 64;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
      for (long b = 0; b < cnt; b++) {
        long lo = (b0 + b) * NORM_BLOCK, hi = lo + NORM_BLOCK < n ? lo + NORM_BLOCK : n;
        part[b] = sumsq_block(g + lo, (size_t)(hi - lo));
      }
      for (long b = 0; b < cnt; b++) total += part[b];
    }
  }
  return total;
}

/* Names the first parameter whose gradient holds NaN or infinity. A norm can also
 * overflow from finite gradients (squares past FLT_MAX): that is reported as such. */
static asink_status nonfinite_gradient(const asink_adamw *o, float norm) {
  const asink_model *m = o->m;
  for (int i = 0; i < m->w->n_params; i++) {
    const asink_param *p = &m->w->params[i];
    const float *g = asink_model_grad_of(m, p);
    for (size_t j = 0; j < p->numel; j++)
      if (!isfinite(g[j]))
        return asink_fail(ASINK_ERR_NONFINITE,
                          "gradient of '%s' is %g at element %zu: step %lld skipped, weights "
                          "unchanged", p->name, g[j], j, (long long)o->step + 1);
  }
  return asink_fail(ASINK_ERR_NONFINITE,
                    "gradient norm is %g (finite gradients too large to square): step %lld "
                    "skipped, weights unchanged", norm, (long long)o->step + 1);
}

asink_status asink_adamw_step(asink_adamw *o, float *grad_norm) {
  if (!o) return asink_fail(ASINK_ERR_ARG, "asink_adamw_step: NULL optimizer");
  asink_model *m = o->m;
  float norm = (float)sqrt(grad_sumsq(m));
  if (grad_norm) *grad_norm = norm;
  if (!isfinite(norm)) return nonfinite_gradient(o, norm);
  float gscale = 1.f;
  if (o->clip > 0.f) {
    float c = o->clip / (norm + 1e-6f);
    gscale = c < 1.f ? c : 1.f;
  }
  float lr = asink_adamw_lr(o);
  o->step++;
  double bc1 = 1.0 - pow(o->b1, (double)o->step), bc2 = 1.0 - pow(o->b2, (double)o->step);
  float step_size = (float)(lr / bc1), bc2s = (float)sqrt(bc2);
  const float b1 = o->b1, b2 = o->b2, eps = o->eps;
  size_t off = 0;
  const int nt = asink_region_threads();
  for (int i = 0; i < m->w->n_params; i++) {
    asink_param *p = &m->w->params[i];
    float *w = p->data, *g = asink_model_grad_of(m, p), *mo = o->mom + off, *va = o->var + off;
    uint16_t *w16 = p->copy16; /* precision=bf16: the copy follows in the same sweep */
    float decay = p->decay ? 1.f - lr * o->wd : 1.f;
    long n = (long)p->numel;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1 && n > 65536)
    for (long j = 0; j < n; j++) {
      float gj = g[j] * gscale;
      w[j] *= decay;
      mo[j] += (1.f - b1) * (gj - mo[j]);
      va[j] = va[j] * b2 + (1.f - b2) * gj * gj;
      float denom = sqrtf(va[j]) / bc2s + eps;
      w[j] -= step_size * mo[j] / denom;
      if (w16) w16[j] = asink_f32_to_bf16(w[j]);
      g[j] = 0.f;
    }
    off += p->numel;
  }
  m->copies_stale = false;
  return ASINK_OK;
}

