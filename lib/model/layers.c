/* Model layers: each forward next to its backward. Rows are independent, so
 * row loops are split across threads; parameter gradients are summed from
 * per-thread partials in thread order (same thread count -> same bits). */
#include "model/layers.h"

#include <math.h>
#include <omp.h>
#include <string.h>

#include "core/blas.h"
#include "kernels/kernels.h"

/* This file is compiled for baseline x86-64; its row loops and sums run through the
 * SIMD table (kernels/kernels.h), the one place the instruction set is chosen
 * (ASINK_SIMD): a float sum in a plain loop cannot be vectorised (the compiler may
 * not reorder it) and ran one add per 4 cycles. */

/* ------------------------------------------------------------------ RMSNorm */

void asink_rmsnorm_forward(float *y, float *rstd, const float *x, const float *w, int N, int C,
                           float eps, int nt) {
  const asink_kernels *kn = asink_kern();
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1 && N > 16)
  for (int n = 0; n < N; n++) {
    const float *xr = x + (size_t)n * C;
    float r = 1.f / sqrtf(kn->dot((size_t)C, xr, xr) / C + eps);
    rstd[n] = r;
    kn->rms_scale((size_t)C, y + (size_t)n * C, xr, w, r);
  }
}

/* s.buf holds, per thread, C floats of partial dw and C floats of row scratch. */
void asink_rmsnorm_backward(float *dx, float *dw, const float *dy, const float *x, const float *w,
                            const float *rstd, int N, int C, asink_norm_scratch s) {
  const asink_kernels *kn = asink_kern();
  int nt = s.nt;
  memset(s.buf, 0, sizeof(float) * (size_t)nt * 2 * C);
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    float *pdw = s.buf + (size_t)omp_get_thread_num() * 2 * C, *g = pdw + C;
#pragma omp for schedule(static)
    for (int n = 0; n < N; n++) {
      const float *xr = x + (size_t)n * C, *dyr = dy + (size_t)n * C;
      float r = rstd[n];
      kn->rms_bwd_terms((size_t)C, g, pdw, dyr, xr, w, r);
      float k = kn->dot((size_t)C, g, xr) * r * r * r / C;
      kn->rms_bwd_dx((size_t)C, dx + (size_t)n * C, g, xr, r, k);
    }
  }
  for (int t = 0; t < nt; t++) {
    const float *p = s.buf + (size_t)t * 2 * C;
    for (int j = 0; j < C; j++) dw[j] += p[j];
  }
}

/* ---------------------------------------------------------------- LayerNorm */

void asink_layernorm_forward(float *y, float *mean, float *rstd, const float *x, const float *w,
                             const float *b, int N, int C, float eps, int nt) {
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1 && N > 16)
  for (int n = 0; n < N; n++) {
    const float *xr = x + (size_t)n * C;
    float *yr = y + (size_t)n * C;
    float m = 0.f;
    for (int j = 0; j < C; j++) m += xr[j];
    m /= C;
    float v = 0.f;
    for (int j = 0; j < C; j++) v += (xr[j] - m) * (xr[j] - m);
    float r = 1.f / sqrtf(v / C + eps);
    mean[n] = m;
    rstd[n] = r;
    for (int j = 0; j < C; j++) yr[j] = (xr[j] - m) * r * w[j] + b[j];
  }
}

void asink_layernorm_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                              const float *w, const float *mean, const float *rstd, int N, int C,
                              asink_norm_scratch s) {
  int nt = s.nt;
  /* partials: dw then db, 2C per thread; s.buf must hold nt * 2C */
  memset(s.buf, 0, sizeof(float) * (size_t)nt * 2 * C);
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    float *pdw = s.buf + (size_t)omp_get_thread_num() * 2 * C, *pdb = pdw + C;
#pragma omp for schedule(static)
    for (int n = 0; n < N; n++) {
      const float *xr = x + (size_t)n * C, *dyr = dy + (size_t)n * C;
      float *dxr = dx + (size_t)n * C;
      float m = mean[n], r = rstd[n], sum_g = 0.f, sum_gx = 0.f;
      for (int j = 0; j < C; j++) {
        float xh = (xr[j] - m) * r, g = dyr[j] * w[j];
        sum_g += g;
        sum_gx += g * xh;
        pdw[j] += dyr[j] * xh;
        pdb[j] += dyr[j];
      }
      sum_g /= C;
      sum_gx /= C;
      for (int j = 0; j < C; j++) {
        float xh = (xr[j] - m) * r;
        dxr[j] += r * (dyr[j] * w[j] - sum_g - xh * sum_gx);
      }
    }
  }
  for (int t = 0; t < nt; t++) {
    const float *p = s.buf + (size_t)t * 2 * C;
    for (int j = 0; j < C; j++) dw[j] += p[j], db[j] += p[C + j];
  }
}

/* --------------------------------------------------------------------- RoPE */

void asink_rope_angles(float *cs, float *sn, int64_t pos, int R, float theta) {
  for (int i = 0; i < R / 2; i++) {
    /* HF: inv_freq = 1 / theta^(2i/R) in float32, then pos * inv_freq in float32 */
    float inv = 1.f / powf(theta, (float)(2 * i) / (float)R);
    float ang = (float)pos * inv;
    cs[i] = cosf(ang);
    sn[i] = sinf(ang);
  }
}

void asink_rope_table(float *tab, int maxT, int R, float theta) {
  int h = R / 2;
  float *cs = tab, *sn = tab + (size_t)maxT * h;
  for (int p = 0; p < maxT; p++) asink_rope_angles(cs + (size_t)p * h, sn + (size_t)p * h, p, R, theta);
}

void asink_rope_rows(float *x, size_t rows, int nh, int D, int R, const float *cs, const float *sn,
                     size_t ld_angles, float sign) {
  const asink_kernels *kn = asink_kern();
  for (size_t r = 0; r < rows; r++)
    for (int hd = 0; hd < nh; hd++)
      kn->rope_rotate((size_t)(R / 2), x + (r * nh + hd) * D, cs + r * ld_angles,
                      sn + r * ld_angles, sign);
}

static void rope_apply(float *x, const float *tab, int maxT, int N, int T, int nh, int D, int R,
                       int nt, float sign) {
  const asink_kernels *kn = asink_kern();
  int h = R / 2;
  const float *cs = tab, *sn = tab + (size_t)maxT * h;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1 && N > 16)
  for (int n = 0; n < N; n++) {
    int p = n % T;
    const float *c = cs + (size_t)p * h, *s = sn + (size_t)p * h;
    for (int hd = 0; hd < nh; hd++)
      kn->rope_rotate((size_t)h, x + ((size_t)n * nh + hd) * D, c, s, sign);
  }
}

void asink_rope_forward(float *x, const float *tab, int maxT, int N, int T, int nh, int D, int R, int nt) {
  rope_apply(x, tab, maxT, N, T, nh, D, R, nt, 1.f);
}

/* The rotation is orthogonal: its backward is the rotation by the opposite angle. */
void asink_rope_backward(float *dx, const float *tab, int maxT, int N, int T, int nh, int D, int R,
                         int nt) {
  rope_apply(dx, tab, maxT, N, T, nh, D, R, nt, -1.f);
}

/* -------------------------------------------------------------- activations */

static inline float gelu_tanh(float x, float *deriv) {
  const float k = 0.7978845608028654f; /* sqrt(2/pi) */
  float u = k * (x + 0.044715f * x * x * x);
  float t = tanhf(u);
  if (deriv) *deriv = 0.5f * (1.f + t) + 0.5f * x * (1.f - t * t) * k * (1.f + 3.f * 0.044715f * x * x);
  return 0.5f * x * (1.f + t);
}

static inline float act1(float g, asink_act k, float *deriv) {
  switch (k) {
  case ASINK_ACT_SILU: {
    float sg = 1.f / (1.f + expf(-g));
    if (deriv) *deriv = sg * (1.f + g * (1.f - sg));
    return g * sg;
  }
  case ASINK_ACT_GELU: return gelu_tanh(g, deriv);
  case ASINK_ACT_GELU_ERF: {
    float cdf = 0.5f * (1.f + erff(g * 0.70710678118654752f));
    if (deriv) *deriv = cdf + g * 0.39894228040143268f * expf(-0.5f * g * g); /* + x phi(x) */
    return g * cdf;
  }
  default:
    if (deriv) *deriv = g > 0.f ? 1.f : 0.f;
    return g > 0.f ? g : 0.f;
  }
}

/* SiLU runs through the SIMD sigmoid kernel (the FFN's activations are a visible
 * share of a small model's step); the others are plain loops. Work is split into
 * contiguous chunks, one per thread. */
void asink_act_forward(float *h, const float *g, const float *u, asink_act k, size_t n, int nt) {
  const asink_kernels *kn = asink_kern();
#pragma omp parallel num_threads(nt) if (nt > 1 && n > 16384)
  {
    int parts = omp_get_num_threads(), me = omp_get_thread_num();
    size_t lo = n * me / parts, hi = n * (me + 1) / parts;
    if (k == ASINK_ACT_SILU && h != g) { /* in place, the sigmoid would overwrite g */
      memcpy(h + lo, g + lo, (hi - lo) * sizeof(float));
      kn->sigmoid(hi - lo, h + lo);
      kn->silu_gate(hi - lo, h + lo, g + lo, u ? u + lo : NULL);
    } else {
      for (size_t i = lo; i < hi; i++) h[i] = act1(g[i], k, NULL) * (u ? u[i] : 1.f);
    }
  }
}

void asink_act_backward(float *dg, float *du, const float *dh, const float *g, const float *u,
                        asink_act k, size_t n, int nt) {
  const asink_kernels *kn = asink_kern();
#pragma omp parallel num_threads(nt) if (nt > 1 && n > 16384)
  {
    int parts = omp_get_num_threads(), me = omp_get_thread_num();
    size_t lo = n * me / parts, hi = n * (me + 1) / parts;
    if (k == ASINK_ACT_SILU) {
      /* s = sigmoid(g) into dg first */
      memcpy(dg + lo, g + lo, (hi - lo) * sizeof(float));
      kn->sigmoid(hi - lo, dg + lo);
      kn->silu_bwd(hi - lo, dg + lo, du ? du + lo : NULL, dh + lo, g + lo, u ? u + lo : NULL);
    } else {
      for (size_t i = lo; i < hi; i++) {
        float d, a = act1(g[i], k, &d);
        if (u) {
          du[i] = dh[i] * a;
          dg[i] = dh[i] * d * u[i];
        } else {
          dg[i] = dh[i] * d;
        }
      }
    }
  }
}

void asink_residual_add(float *y, const float *x, size_t n, int nt) {
  const asink_kernels *kn = asink_kern();
#pragma omp parallel num_threads(nt) if (nt > 1 && n > 16384)
  {
    int parts = omp_get_num_threads(), me = omp_get_thread_num();
    size_t lo = n * me / parts, hi = n * (me + 1) / parts;
    kn->axpy(hi - lo, 1.f, x + lo, y + lo);
  }
}

/* ------------------------------------------------------------------- linear */

void asink_matmul_wt(float *y, int ldy, const float *x, int ldx, const float *W, const uint16_t *W16,
                     bool bf16ops, int N, int n, int k, int nt) {
  if (bf16ops) asink_sgemm_bf16ops(false, true, N, n, k, 1.f, x, ldx, NULL, W16, k, 0.f, y, ldy, nt);
  else if (W16) asink_sgemm_bf16(true, N, n, k, 1.f, x, ldx, W16, k, 0.f, y, ldy, nt);
  else asink_sgemm(false, true, N, n, k, 1.f, x, ldx, W, k, 0.f, y, ldy, nt);
}

void asink_linear_forward(float *y, int ldy, const float *x, int ldx, const asink_linear *L, int N, int nt) {
  if (L->bf16ops)
    asink_sgemm_bf16ops(false, !L->in_out, N, L->out, L->in, 1.f, x, ldx, NULL, L->w16, L->ldw, 0.f,
                        y, ldy, nt);
  else if (L->w16)
    asink_sgemm_bf16(!L->in_out, N, L->out, L->in, 1.f, x, ldx, L->w16, L->ldw, 0.f, y, ldy, nt);
  else
    asink_sgemm(false, !L->in_out, N, L->out, L->in, 1.f, x, ldx, L->w, L->ldw, 0.f, y, ldy, nt);
  if (L->b) {
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1 && N > 16)
    for (int n = 0; n < N; n++)
      for (int j = 0; j < L->out; j++) y[(size_t)n * ldy + j] += L->b[j];
  }
}

/* C = op(A) op(B) + beta C: in float, or with bf16ops on operands rounded to bf16 (B16, when
 * given, is B's bf16 copy and is read instead of B). */
static void gemm(bool bf16ops, bool ta, bool tb, int m, int n, int k, const float *A, int lda,
                 const float *B, const uint16_t *B16, int ldb, float beta, float *C, int ldc, int nt) {
  if (bf16ops)
    asink_sgemm_bf16ops(ta, tb, m, n, k, 1.f, A, lda, B16 ? NULL : B, B16, ldb, beta, C, ldc, nt);
  else
    asink_sgemm(ta, tb, m, n, k, 1.f, A, lda, B, ldb, beta, C, ldc, nt);
}

/* x16 (instead of x): only with bf16ops and W stored (out, in), where x is dW's B operand. */
static void linear_backward(float *dx, int lddx, bool acc, const float *dy, int ldy, const float *x,
                            const uint16_t *x16, int ldx, const asink_linear *L, int N, int nt) {
  const bool r = L->bf16ops;
  if (dx)
    gemm(r, false, L->in_out, N, L->in, L->out, dy, ldy, L->w, r ? L->w16 : NULL, L->ldw,
         acc ? 1.f : 0.f, dx, lddx, nt);
  if (L->in_out)
    gemm(r, true, false, L->in, L->out, N, x, ldx, dy, NULL, ldy, 1.f, L->dw, L->ldw, nt);
  else
    gemm(r, true, false, L->out, L->in, N, dy, ldy, x, x16, ldx, 1.f, L->dw, L->ldw, nt);
  if (L->db)
    for (int n = 0; n < N; n++)
      for (int j = 0; j < L->out; j++) L->db[j] += dy[(size_t)n * ldy + j];
}

void asink_linear_backward(float *dx, int lddx, bool acc, const float *dy, int ldy, const float *x,
                           int ldx, const asink_linear *L, int N, int nt) {
  linear_backward(dx, lddx, acc, dy, ldy, x, NULL, ldx, L, N, nt);
}

void asink_linear_backward_x16(float *dx, int lddx, bool acc, const float *dy, int ldy,
                               const uint16_t *x16, int ldx, const asink_linear *L, int N, int nt) {
  linear_backward(dx, lddx, acc, dy, ldy, NULL, x16, ldx, L, N, nt);
}

void asink_round_bf16(uint16_t *dst, const float *src, size_t n, int nt) {
  const long len = (long)n;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1 && len > 65536)
  for (long j = 0; j < len; j++) dst[j] = asink_f32_to_bf16(src[j]);
}

/* ------------------------------------------------------- head + cross-entropy */

double asink_head_xent(const float *x, const float *W, const uint16_t *W16, bool bf16ops,
                       const int32_t *targets, int N, int C, int V, int count, float *dx, float *dW,
                       bool dw_acc, float *logits, int rows, int nt) {
  const asink_kernels *kn = asink_kern();
  double total = 0.0;
  float inv_count = count > 0 ? 1.f / (float)count : 0.f;
  for (int r0 = 0; r0 < N; r0 += rows) {
    int nr = N - r0 < rows ? N - r0 : rows;
    const float *xb = x + (size_t)r0 * C;
    asink_matmul_wt(logits, V, xb, C, W, W16, bf16ops, nr, V, C, nt);
    double part = 0.0;
#pragma omp parallel for num_threads(nt) schedule(static) reduction(+ : part) if (nt > 1)
    for (int r = 0; r < nr; r++) {
      float *l = logits + (size_t)r * V;
      int32_t tgt = targets[r0 + r];
      if (tgt < 0) {
        if (dx) memset(l, 0, sizeof(float) * V);
        continue;
      }
      /* one SIMD exp pass: the exponentials become the softmax after one scale */
      float zt = l[tgt], m = kn->max(V, l);
      float s = kn->exp_shift_sum(V, l, m);
      part += (double)(m + logf(s) - zt);
      if (dx) {
        kn->scale(V, l, inv_count / s);
        l[tgt] -= inv_count;
      }
    }
    total += part;
    if (dx) {
      gemm(bf16ops, false, false, nr, C, V, logits, V, W, bf16ops ? W16 : NULL, C, 0.f,
           dx + (size_t)r0 * C, C, nt);
      gemm(bf16ops, true, false, V, C, nr, logits, V, xb, NULL, C, r0 || dw_acc ? 1.f : 0.f, dW, C, nt);
    }
  }
  return total;
}

void asink_sinusoid_table(float *pe, int maxT, int C) {
  for (int p = 0; p < maxT; p++)
    for (int i = 0; i < C; i += 2) {
      double ang = p / pow(10000.0, (double)i / C);
      pe[(size_t)p * C + i] = (float)sin(ang);
      if (i + 1 < C) pe[(size_t)p * C + i + 1] = (float)cos(ang);
    }
}
