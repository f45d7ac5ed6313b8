/* SIMD kernel families: one dispatch table, filled once at start-up from CPUID.
 * Each ISA file (scalar.c, avx2.c, avx512.c) holds only that ISA's code and fills
 * one table; the scalar table is the reference the others are tested against.
 *
 * Contracts shared by every ISA (tests/test_kernels.c checks them):
 *  - n may be any size >= 0 (odd tails handled); pointers need no alignment;
 *  - exp(-inf) = 0, exp(+inf) = +inf, NaN in gives NaN out; arguments below about
 *    -87.3 give 0 or a denormal (either is accepted), never garbage;
 *  - max: NaN if any element is NaN, -inf for n = 0;
 *  - relative error of exp/sigmoid/elu against libm is at most 4 ulp-ish (2e-7 rel).
 */
#ifndef ASINK_KERNELS_H
#define ASINK_KERNELS_H

#include <stddef.h>
#include <stdint.h>

/* The bf16 pair micro-kernel (vdpbf16ps, gemm_ukr_bf16.h) of bf16 mixed precision
 * (core/blas.c asink_sgemm_bf16ops). Its panels hold pairs of k steps, one 32-bit word
 * each: the even step's bf16 in the low half, the odd step's in the high half:
 *   pack_round: dst[q W + r] = bf16(x(r, 2q)) | bf16(x(r, 2q + 1)) << 16,
 *               x(r, p) = src[r s_r + p s_p] for r < w and p < k, else 0
 *               (rounded to nearest even, asink_f32_to_bf16), for q < ceil(k/2), r < W;
 *   pack16:     the same with src in bf16, copied;
 *   ukr:        C[i ldc + j] = alpha sum_{q<k2} (a.odd b.odd + a.even b.even) + beta C
 *               over a[q mr + i] and b[q nr + j], i < m <= mr, j < n <= nr; per pair the
 *               odd product is added first, each sum rounded to float, bf16 denormals
 *               read as zero and results below FLT_MIN flushed (VDPBF16PS). beta 0
 *               overwrites C, NaN included; k2 may be 0.
 * kc (in k steps) is even, so a cache block never splits a pair. Nothing outside dst[0,
 * W ceil(k/2)) is written. */
typedef struct asink_gemm_bf16 {
  void (*ukr)(size_t k2, const uint32_t *a, const uint32_t *b, float *c, size_t ldc, size_t m,
              size_t n, float alpha, float beta);
  void (*pack_round)(uint32_t *dst, const float *src, size_t W, size_t w, size_t k, size_t s_r,
                     size_t s_p);
  void (*pack16)(uint32_t *dst, const uint16_t *src, size_t W, size_t w, size_t k, size_t s_r,
                 size_t s_p);
  size_t mr, nr, mc, kc, nc;
} asink_gemm_bf16;

typedef struct asink_kernels {
  const char *name; /* "scalar", "avx2", "avx512" */

  /* max_i x[i] */
  float (*max)(size_t n, const float *x);
  /* sum_i x[i] */
  float (*sum)(size_t n, const float *x);
  /* sum_i |x[i]| */
  float (*abs_sum)(size_t n, const float *x);
  /* sum_i x[i] * y[i] */
  float (*dot)(size_t n, const float *x, const float *y);
  /* x[i] *= a */
  void (*scale)(size_t n, float *x, float a);
  /* y[i] += a * x[i] */
  void (*axpy)(size_t n, float a, const float *x, float *y);
  /* x[i] += a * (i + offset): the ALiBi ramp, slope a, key index relative to query */
  void (*add_ramp)(size_t n, float *x, float a, float offset);
  /* x[i] += c */
  void (*add_const)(size_t n, float *x, float c);

  /* x[i] = exp(x[i] - shift); returns sum of the results (softmax numerator) */
  float (*exp_shift_sum)(size_t n, float *x, float shift);
  /* exp_shift_sum (the same x and sum, bit for bit) that also sets *xdot to
   * sum_i exp(x[i] - shift) * x[i] of the inputs (a softmax row's entropy term) */
  float (*exp_shift_sum_dot)(size_t n, float *x, float shift, float *xdot);
  /* x[i] = exp(x[i] - shift) (backward recompute of probabilities) */
  void (*exp_shift)(size_t n, float *x, float shift);
  /* x[i] = 1 / (1 + exp(-x[i])) */
  void (*sigmoid)(size_t n, float *x);
  /* x[i] = elu(x[i]) + 1, i.e. x+1 for x > 0, exp(x) otherwise */
  void (*elu1)(size_t n, float *x);

  /* Backward of the row similarities, in place on dp (dp = dout . v_j, the gradient
   * w.r.t. the map entries), a = the map entries (before any row normalisation),
   * c = a per-row shift, m = a per-row multiplier:
   *   softmax_bwd:  dp[i] = m * a[i] * (dp[i] - c)
   *   sigmoid_bwd:  dp[i] = m * (dp[i] - c) * a[i] * (1 - a[i])
   *   elu1_bwd:     dp[i] = m * (dp[i] - c) * (a[i] > 1 ? 1 : a[i])  (elu'(s)+0: a > 1 iff s > 0)
   *   shift_scale:  dp[i] = m * (dp[i] - c)                           (linear maps) */
  void (*softmax_bwd)(size_t n, float *dp, const float *a, float c, float m);
  void (*sigmoid_bwd)(size_t n, float *dp, const float *a, float c, float m);
  void (*elu1_bwd)(size_t n, float *dp, const float *a, float c, float m);
  void (*shift_scale)(size_t n, float *dp, float c, float m);

  /* Packs one micro-panel for the GEMM micro-kernel below (core/blas.c):
   *   dst[p * W + r] = src[r * s_r + p * s_p]   for r < w, p < k,
   *   dst[p * W + r] = 0                        for w <= r < W.
   * One of s_r, s_p is 1 (a row-major matrix read straight or transposed); dst
   * needs no alignment, and nothing outside dst[0, W k) is written. */
  void (*pack_panel)(float *dst, const float *src, size_t W, size_t w, size_t k, size_t s_r,
                     size_t s_p);

  /* The GEMM micro-kernel and its block sizes (core/blas.c runs the loops around it):
   *   C[i ldc + j] = alpha sum_{p<k} a[p mr + i] b[p nr + j] + beta C[i ldc + j]
   * for i < m <= mr, j < n <= nr; a and b are panels from pack_panel with W = mr and
   * W = nr (zero-padded, so a partial tile costs a full one). beta 0 overwrites C,
   * NaN included; k may be 0. kc x nr floats of b are meant to stay in L1 while the
   * mc x kc block of a stays in L2. */
  struct {
    void (*ukr)(size_t k, const float *a, const float *b, float *c, size_t ldc, size_t m,
                size_t n, float alpha, float beta);
    size_t mr, nr, mc, kc, nc;
    /* ukr with a read in place from a row-major A (a(i, p) = a[i lda + p], rows past m
     * unread); NULL: the driver always packs A */
    void (*ukr_rows)(size_t k, const float *a, size_t lda, const float *b, float *c, size_t ldc,
                     size_t m, size_t n, float alpha, float beta);
  } gemm;

  /* Row loops of the model's layers (model/layers.c). Each is evaluated in the
   * order written, left to right, with no FMA contraction, so every table gives the
   * scalar table's results bit for bit. Arrays do not overlap, except that an output
   * may be the very array of an input it replaces (y == x in rms_scale). */
  /* RMSNorm forward row: y[j] = x[j] * r * w[j] */
  void (*rms_scale)(size_t n, float *y, const float *x, const float *w, float r);
  /* RMSNorm backward terms: g[j] = dy[j] * w[j];  pdw[j] += dy[j] * x[j] * r */
  void (*rms_bwd_terms)(size_t n, float *g, float *pdw, const float *dy, const float *x,
                        const float *w, float r);
  /* RMSNorm backward dx row: dx[j] += g[j] * r - x[j] * k */
  void (*rms_bwd_dx)(size_t n, float *dx, const float *g, const float *x, float r, float k);
  /* Rotate-half RoPE on one head vector v of 2h floats, in place: for i < h, with
   * a = v[i], b = v[i+h], si = sign * s[i]:
   *   v[i] = a * c[i] - b * si;  v[i+h] = b * c[i] + a * si */
  void (*rope_rotate)(size_t h, float *v, const float *c, const float *s, float sign);
  /* SiLU gate given h = sigmoid(g): h[i] *= g[i] * u[i]  (u NULL: h[i] *= g[i]) */
  void (*silu_gate)(size_t n, float *h, const float *g, const float *u);
  /* SiLU backward given dg = s = sigmoid(g) on entry: d = s * (1 + g[i] * (1 - s));
   *   with u: du[i] = dh[i] * g[i] * s, dg[i] = dh[i] * d * u[i];
   *   u NULL: dg[i] = dh[i] * d (du unused) */
  void (*silu_bwd)(size_t n, float *dg, float *du, const float *dh, const float *g,
                   const float *u);

  /* Products of a few vectors with a matrix M (rows of length k, stride ld) read once,
   * for decoding's one-row GEMMs:
   *   dot_rows:   y[j] = sum_p x[p] M[j ld + p]      for j < n  (n dot products)
   *   axpy_rows:  y[p] += sum_j a[j] M[j ld + p]     for p < k  (a combination of n rows) */
  void (*dot_rows)(size_t n, size_t k, const float *x, const float *M, size_t ld, float *y);
  void (*axpy_rows)(size_t n, size_t k, const float *a, const float *M, size_t ld, float *y);

  /* The same three with the matrix in bf16 (the upper halves of floats: weights kept in
   * bf16), each value widened exactly to float as it is read; every result equals that of
   * the float entry on the widened matrix, bit for bit. */
  void (*pack_panel_bf16)(float *dst, const uint16_t *src, size_t W, size_t w, size_t k,
                          size_t s_r, size_t s_p);
  void (*dot_rows_bf16)(size_t n, size_t k, const float *x, const uint16_t *M, size_t ld, float *y);
  void (*axpy_rows_bf16)(size_t n, size_t k, const float *a, const uint16_t *M, size_t ld, float *y);

  /* pack_panel with every value rounded to bf16 (nearest even, asink_f32_to_bf16) and
   * widened back: dst[p * W + r] = bf16(src[r * s_r + p * s_p]) as a float. The panels
   * of bf16 mixed precision (core/blas.c asink_sgemm_bf16ops): the float micro-kernel then
   * multiplies bf16 values, whose products are exact in float, and sums in float. Equal to
   * the scalar table's bit for bit in every table. */
  void (*pack_panel_round)(float *dst, const float *src, size_t W, size_t w, size_t k, size_t s_r,
                           size_t s_p);

  /* The bf16 pair kernel, which bf16 mixed precision's GEMMs run in place of pack_panel_round
   * and the float micro-kernel; NULL in every table but the one the runtime picks on a CPU
   * with AVX-512 BF16 (asink_kernels_avx512bf16_table). */
  const asink_gemm_bf16 *gemm_bf16;
} asink_kernels;

/* bf16 <-> float: widening is exact; narrowing rounds to nearest even, NaN kept a NaN. */
static inline float asink_bf16_to_f32(uint16_t h) {
  union { uint32_t u; float f; } v = {(uint32_t)h << 16};
  return v.f;
}
static inline uint16_t asink_f32_to_bf16(float f) {
  union { float f; uint32_t u; } v = {f};
  if ((v.u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((v.u >> 16) | 0x40u); /* quiet NaN */
  return (uint16_t)((v.u + 0x7fffu + ((v.u >> 16) & 1u)) >> 16);
}

/* The tables; asink_kernels_avx2/avx512 are NULL when the build lacks that ISA. */
extern const asink_kernels asink_kernels_scalar;
extern const asink_kernels *const asink_kernels_avx2_table;
extern const asink_kernels *const asink_kernels_avx512_table;
/* The AVX-512 table with gemm_bf16 set (name "avx512" too): NULL when the compiler lacks
 * AVX-512 BF16. It runs only on a CPU with avx512bf16 (core/runtime.c checks). */
extern const asink_kernels *const asink_kernels_avx512bf16_table;

/* The table chosen at start-up (core/runtime.c fills it via asink_init()). */
const asink_kernels *asink_kern(void);

#endif
