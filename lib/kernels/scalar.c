/* Reference kernels: plain loops, libm. The SIMD tables are tested against these. */
#include <math.h>

#include "kernels/kernels.h"

static float s_max(size_t n, const float *x) {
  float m = -INFINITY;
  for (size_t i = 0; i < n; i++) {
    if (isnan(x[i])) return x[i];
    if (x[i] > m) m = x[i];
  }
  return m;
}

static float s_sum(size_t n, const float *x) {
  float s = 0.f;
  for (size_t i = 0; i < n; i++) s += x[i];
  return s;
}

static float s_abs_sum(size_t n, const float *x) {
  float s = 0.f;
  for (size_t i = 0; i < n; i++) s += fabsf(x[i]);
  return s;
}

static float s_dot(size_t n, const float *x, const float *y) {
  float s = 0.f;
  for (size_t i = 0; i < n; i++) s += x[i] * y[i];
  return s;
}

static void s_scale(size_t n, float *x, float a) {
  for (size_t i = 0; i < n; i++) x[i] *= a;
}

static void s_axpy(size_t n, float a, const float *x, float *y) {
  for (size_t i = 0; i < n; i++) y[i] += a * x[i];
}

static void s_add_ramp(size_t n, float *x, float a, float offset) {
  for (size_t i = 0; i < n; i++) x[i] += a * ((float)i + offset);
}

static void s_add_const(size_t n, float *x, float c) {
  for (size_t i = 0; i < n; i++) x[i] += c;
}

static float s_exp_shift_sum_dot(size_t n, float *x, float shift, float *xdot) {
  float s = 0.f, d = 0.f;
  for (size_t i = 0; i < n; i++) {
    float in = x[i];
    x[i] = expf(in - shift);
    s += x[i];
    d += x[i] * in;
  }
  if (xdot) *xdot = d;
  return s;
}

static float s_exp_shift_sum(size_t n, float *x, float shift) {
  return s_exp_shift_sum_dot(n, x, shift, NULL);
}

static void s_exp_shift(size_t n, float *x, float shift) {
  for (size_t i = 0; i < n; i++) x[i] = expf(x[i] - shift);
}

static void s_sigmoid(size_t n, float *x) {
  for (size_t i = 0; i < n; i++) x[i] = 1.f / (1.f + expf(-x[i]));
}

static void s_elu1(size_t n, float *x) {
  for (size_t i = 0; i < n; i++) x[i] = x[i] > 0.f ? x[i] + 1.f : expf(x[i]);
}

static void s_softmax_bwd(size_t n, float *dp, const float *a, float c, float m) {
  for (size_t i = 0; i < n; i++) dp[i] = m * a[i] * (dp[i] - c);
}

static void s_sigmoid_bwd(size_t n, float *dp, const float *a, float c, float m) {
  for (size_t i = 0; i < n; i++) dp[i] = m * (dp[i] - c) * a[i] * (1.f - a[i]);
}

static void s_elu1_bwd(size_t n, float *dp, const float *a, float c, float m) {
  for (size_t i = 0; i < n; i++) dp[i] = m * (dp[i] - c) * (a[i] > 1.f ? 1.f : a[i]);
}

static void s_shift_scale(size_t n, float *dp, float c, float m) {
  for (size_t i = 0; i < n; i++) dp[i] = m * (dp[i] - c);
}

static void s_rms_scale(size_t n, float *y, const float *x, const float *w, float r) {
  for (size_t j = 0; j < n; j++) y[j] = x[j] * r * w[j];
}

static void s_rms_bwd_terms(size_t n, float *g, float *pdw, const float *dy, const float *x,
                            const float *w, float r) {
  for (size_t j = 0; j < n; j++) {
    g[j] = dy[j] * w[j];
    pdw[j] += dy[j] * x[j] * r;
  }
}

static void s_rms_bwd_dx(size_t n, float *dx, const float *g, const float *x, float r, float k) {
  for (size_t j = 0; j < n; j++) dx[j] += g[j] * r - x[j] * k;
}

static void s_rope_rotate(size_t h, float *v, const float *c, const float *s, float sign) {
  for (size_t i = 0; i < h; i++) {
    float a = v[i], b = v[i + h], si = sign * s[i];
    v[i] = a * c[i] - b * si;
    v[i + h] = b * c[i] + a * si;
  }
}

static void s_silu_gate(size_t n, float *h, const float *g, const float *u) {
  if (u)
    for (size_t i = 0; i < n; i++) h[i] *= g[i] * u[i];
  else
    for (size_t i = 0; i < n; i++) h[i] *= g[i];
}

static void s_silu_bwd(size_t n, float *dg, float *du, const float *dh, const float *g,
                       const float *u) {
  for (size_t i = 0; i < n; i++) {
    float sg = dg[i], d = sg * (1.f + g[i] * (1.f - sg));
    if (u) {
      du[i] = dh[i] * g[i] * sg;
      dg[i] = dh[i] * d * u[i];
    } else {
      dg[i] = dh[i] * d;
    }
  }
}

static void s_dot_rows(size_t n, size_t k, const float *x, const float *M, size_t ld, float *y) {
  for (size_t j = 0; j < n; j++) {
    float s = 0.f;
    for (size_t p = 0; p < k; p++) s += x[p] * M[j * ld + p];
    y[j] = s;
  }
}

static void s_axpy_rows(size_t n, size_t k, const float *a, const float *M, size_t ld, float *y) {
  for (size_t j = 0; j < n; j++)
    for (size_t p = 0; p < k; p++) y[p] += a[j] * M[j * ld + p];
}

static void s_pack_panel(float *dst, const float *src, size_t W, size_t w, size_t k, size_t s_r,
                         size_t s_p) {
  for (size_t p = 0; p < k; p++)
    for (size_t r = 0; r < W; r++) dst[p * W + r] = r < w ? src[r * s_r + p * s_p] : 0.f;
}

static void s_dot_rows_bf16(size_t n, size_t k, const float *x, const uint16_t *M, size_t ld,
                            float *y) {
  for (size_t j = 0; j < n; j++) {
    float s = 0.f;
    for (size_t p = 0; p < k; p++) s += x[p] * asink_bf16_to_f32(M[j * ld + p]);
    y[j] = s;
  }
}

static void s_axpy_rows_bf16(size_t n, size_t k, const float *a, const uint16_t *M, size_t ld,
                             float *y) {
  for (size_t j = 0; j < n; j++)
    for (size_t p = 0; p < k; p++) y[p] += a[j] * asink_bf16_to_f32(M[j * ld + p]);
}

static void s_pack_panel_bf16(float *dst, const uint16_t *src, size_t W, size_t w, size_t k,
                              size_t s_r, size_t s_p) {
  for (size_t p = 0; p < k; p++)
    for (size_t r = 0; r < W; r++)
      dst[p * W + r] = r < w ? asink_bf16_to_f32(src[r * s_r + p * s_p]) : 0.f;
}

static void s_pack_panel_round(float *dst, const float *src, size_t W, size_t w, size_t k,
                               size_t s_r, size_t s_p) {
  for (size_t p = 0; p < k; p++)
    for (size_t r = 0; r < W; r++)
      dst[p * W + r] = r < w ? asink_bf16_to_f32(asink_f32_to_bf16(src[r * s_r + p * s_p])) : 0.f;
}

/* The reference micro-kernel: a 4 x 8 tile, each entry summed in k order. */
enum { S_MR = 4, S_NR = 8 };

static void s_gemm_ukr(size_t k, const float *a, const float *b, float *c, size_t ldc, size_t m,
                       size_t n, float alpha, float beta) {
  float acc[S_MR][S_NR] = {{0.f}};
  for (size_t p = 0; p < k; p++)
    for (size_t i = 0; i < S_MR; i++)
      for (size_t j = 0; j < S_NR; j++) acc[i][j] += a[p * S_MR + i] * b[p * S_NR + j];
  for (size_t i = 0; i < m; i++)
    for (size_t j = 0; j < n; j++)
      c[i * ldc + j] = beta == 0.f ? alpha * acc[i][j] : alpha * acc[i][j] + beta * c[i * ldc + j];
}

const asink_kernels asink_kernels_scalar = {
    .name = "scalar",
    .max = s_max,
    .sum = s_sum,
    .abs_sum = s_abs_sum,
    .dot = s_dot,
    .scale = s_scale,
    .axpy = s_axpy,
    .add_ramp = s_add_ramp,
    .add_const = s_add_const,
    .exp_shift_sum = s_exp_shift_sum,
    .exp_shift_sum_dot = s_exp_shift_sum_dot,
    .exp_shift = s_exp_shift,
    .sigmoid = s_sigmoid,
    .elu1 = s_elu1,
    .softmax_bwd = s_softmax_bwd,
    .sigmoid_bwd = s_sigmoid_bwd,
    .elu1_bwd = s_elu1_bwd,
    .shift_scale = s_shift_scale,
    .pack_panel = s_pack_panel,
    .gemm = {s_gemm_ukr, S_MR, S_NR, 128, 256, 2048},
    .rms_scale = s_rms_scale,
    .dot_rows = s_dot_rows,
    .axpy_rows = s_axpy_rows,
    .pack_panel_bf16 = s_pack_panel_bf16,
    .dot_rows_bf16 = s_dot_rows_bf16,
    .axpy_rows_bf16 = s_axpy_rows_bf16,
    .pack_panel_round = s_pack_panel_round,
    .rms_bwd_terms = s_rms_bwd_terms,
    .rms_bwd_dx = s_rms_bwd_dx,
    .rope_rotate = s_rope_rotate,
    .silu_gate = s_silu_gate,
    .silu_bwd = s_silu_bwd,
};
