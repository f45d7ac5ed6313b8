/* The bf16 pair micro-kernel (vdpbf16ps, lib/kernels/gemm_ukr_bf16.h) of bf16 mixed precision.
 *
 * `test_gemm_bf16 emulated` runs on any CPU with AVX2: the kernel's one source is
 * instantiated here with an exact AVX2 emulation of VDPBF16PS (per lane, the odd pair's
 * product added first then the even one's, each sum rounded to float, bf16 denormal inputs
 * read as zero, results below FLT_MIN flushed: Intel's pseudo-code) and checked on its own
 * (tiles, edges, k odd, alpha/beta), with both packings, in the whole driver
 * (asink_sgemm_bf16ops with the emulated entries forced in, every transpose, cache-block
 * edges) and in a precision=bf16 model's forward and backward against the float kernel on
 * rounded panels.
 *
 * `test_gemm_bf16 native` runs the same checks on the AVX-512 BF16 table's own entries, and
 * exits 77 (skipped) on a CPU without avx512bf16 or a build without the kernel. */
#include <check.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attnsink.h"
#include "core/blas.h"
#include "core/runtime.h"
#include "kernels/kernels.h"

#if !defined(__x86_64__) || !defined(__GNUC__)
int main(void) {
  printf("skipped: the emulation needs x86-64 AVX2\n");
  return 77;
}
#else

#include "gemm_pair256.h"
#include "simd_suite.h"

/* VDPBF16PS on 8 lanes: x and y hold 8 pairs each. A value whose exponent field is zero
 * (a denormal or zero) becomes a zero of its sign, on the way in and on the way out. */
static inline __m256 flush8(__m256 v) {
  __m256 expo = _mm256_and_ps(v, _mm256_castsi256_ps(_mm256_set1_epi32(0x7f800000)));
  __m256 tiny = _mm256_cmp_ps(expo, _mm256_setzero_ps(), _CMP_EQ_OQ);
  return _mm256_blendv_ps(v, _mm256_and_ps(v, _mm256_set1_ps(-0.f)), tiny);
}
static inline __m256 dp8(__m256 acc, __m256i x, __m256i y) {
  const __m256i high = _mm256_set1_epi32((int)0xffff0000u);
  __m256 xo = flush8(_mm256_castsi256_ps(_mm256_and_si256(x, high)));
  __m256 yo = flush8(_mm256_castsi256_ps(_mm256_and_si256(y, high)));
  __m256 xe = flush8(_mm256_castsi256_ps(_mm256_slli_epi32(x, 16)));
  __m256 ye = flush8(_mm256_castsi256_ps(_mm256_slli_epi32(y, 16)));
  acc = flush8(_mm256_fmadd_ps(xo, yo, acc)); /* the odd (2j + 1) product first */
  return flush8(_mm256_fmadd_ps(xe, ye, acc));
}
/* dp8 on arrays, for the tests outside the AVX2 code */
static void dp8_arrays(float *out, const float *acc, const uint32_t *x, const uint32_t *y) {
  _mm256_storeu_ps(out, dp8(_mm256_loadu_ps(acc), _mm256_loadu_si256((const __m256i *)x),
                            _mm256_loadu_si256((const __m256i *)y)));
}
typedef struct {
  __m256i lo, hi;
} pairs16;
static inline pairs16 pairs_load(const uint32_t *p) {
  return (pairs16){_mm256_loadu_si256((const __m256i *)p), _mm256_loadu_si256((const __m256i *)(p + 8))};
}
static inline pairs16 pairs_bcast(uint32_t w) {
  return (pairs16){_mm256_set1_epi32((int)w), _mm256_set1_epi32((int)w)};
}
static inline pair256 pairs_dp(pair256 acc, pairs16 x, pairs16 y) {
  return (pair256){dp8(acc.lo, x.lo, y.lo), dp8(acc.hi, x.hi, y.hi)};
}
#define GEMM_BF16_P pairs16
#define GEMM_BF16_LOAD(p) pairs_load(p)
#define GEMM_BF16_BCAST(p) pairs_bcast(*(p))
#define GEMM_BF16_DP(acc, x, y) pairs_dp(acc, x, y)
#define GEMM_BF16_PACK_FLOATS asink_kernels_scalar.pack_panel
#include "kernels/gemm_ukr_bf16.h"
GEMM_PAIR256_END

/* The emulated kernel with a count of its calls: proof that the driver ran it. */
static _Atomic long emulated_calls;
static void counted_ukr(size_t k2, const uint32_t *a, const uint32_t *b, float *c, size_t ldc,
                        size_t m, size_t n, float alpha, float beta) {
  emulated_calls++;
  gemm_bf16_ukr(k2, a, b, c, ldc, m, n, alpha, beta);
}
static const asink_gemm_bf16 emulated = {counted_ukr, gemm_bf16_pack_round, gemm_bf16_pack16,
                                         GEMM_MR, GEMM_NR, GEMM_BF16_MC, GEMM_BF16_KC,
                                         GEMM_BF16_NC};
/* Small blocks, so that small products cross every cache-block edge. */
static const asink_gemm_bf16 emulated_small = {counted_ukr, gemm_bf16_pack_round, gemm_bf16_pack16,
                                               GEMM_MR, GEMM_NR, 12, 10, 64};

/* What the checks run: the emulation, or the AVX-512 BF16 table's entries. */
static const asink_gemm_bf16 *under_test, *under_test_small;
static const char *mode;

static unsigned lcg = 12345u;
static float frand(void) {
  lcg = lcg * 1664525u + 1013904223u;
  return (float)((lcg >> 8) & 0xffff) / 32768.f - 1.f;
}
static float rounded(float x) { return asink_bf16_to_f32(asink_f32_to_bf16(x)); }
static float from_bits(uint32_t u) {
  union { uint32_t u; float f; } v = {u};
  return v.f;
}

/* One lane of VDPBF16PS in scalar code, the model the emulation is held to. */
static float flush(float x) { return fpclassify(x) == FP_SUBNORMAL ? copysignf(0.f, x) : x; }
static float dp_lane(float acc, uint32_t x, uint32_t y) {
  float xo = flush(from_bits(x & 0xffff0000u)), yo = flush(from_bits(y & 0xffff0000u));
  float xe = flush(from_bits(x << 16)), ye = flush(from_bits(y << 16));
  acc = flush(fmaf(xo, yo, acc));
  return flush(fmaf(xe, ye, acc));
}

START_TEST(emulated_dp_is_the_pseudo_code) {
  /* random pairs, denormals, zeros of both signs, infinities, huge and tiny products */
  const uint16_t special[] = {0x0001, 0x8001, 0x007f, 0x0000, 0x8000, 0x7f80, 0xff80, 0x7f00,
                              0x0080, 0x0100, 0x3f80, 0xbf80, 0x2000, 0x1f80};
  for (int round = 0; round < 2000; round++) {
    uint32_t x[8], y[8];
    float acc[8], got[8];
    for (int j = 0; j < 8; j++) {
      uint16_t h[4];
      for (int i = 0; i < 4; i++) {
        lcg = lcg * 1664525u + 1013904223u;
        h[i] = round % 3 ? (uint16_t)(lcg >> 16) : special[(lcg >> 16) % 14];
        if ((h[i] & 0x7f80) == 0x7f80 && (h[i] & 0x7f)) h[i] = 0x3f80; /* NaNs apart */
      }
      x[j] = gemm_bf16_pair(h[0], h[1]), y[j] = gemm_bf16_pair(h[2], h[3]);
      acc[j] = round % 5 ? frand() : 0.f;
    }
    dp8_arrays(got, acc, x, y);
    for (int j = 0; j < 8; j++) {
      float want = dp_lane(acc[j], x[j], y[j]);
      ck_assert_msg(!memcmp(&got[j], &want, 4) || (isnan(got[j]) && isnan(want)),
                    "x=%#x y=%#x acc=%a: %a, want %a", x[j], y[j], acc[j], got[j], want);
    }
  }
  /* the order: 2^24 + 1 rounds back to 2^24 (ties to even), then - 1 gives 2^24 - 1; the
   * even product first would give 2^24 */
  uint32_t one = gemm_bf16_pair(0x3f80, 0x3f80), mixed = gemm_bf16_pair(0xbf80, 0x3f80);
  ck_assert_float_eq(dp_lane(0x1p24f, one, mixed), 0x1p24f - 1.f);
  /* a denormal bf16 input is zero: 2^-133 x 2^100 would otherwise be 2^-33 */
  ck_assert_float_eq(dp_lane(0.f, gemm_bf16_pair(0x0001, 0), gemm_bf16_pair(0x7180, 0)), 0.f);
  /* a result below FLT_MIN is flushed: 2^-70 x 2^-70 */
  ck_assert_float_eq(dp_lane(0.f, gemm_bf16_pair(0x1c80, 0), gemm_bf16_pair(0x1c80, 0)), 0.f);
}
END_TEST

static uint32_t pair_of(const float *src, size_t r, size_t p, size_t w, size_t k, size_t s_r,
                        size_t s_p) {
  uint16_t e = r < w && p < k ? asink_f32_to_bf16(src[r * s_r + p * s_p]) : 0;
  uint16_t o = r < w && p + 1 < k ? asink_f32_to_bf16(src[r * s_r + (p + 1) * s_p]) : 0;
  return gemm_bf16_pair(e, o);
}

/* Both packings against the contract: every width up to 40 (mr and nr among them, and past
 * the buffered path's 32), w from 0 to W, k odd and even across the 64-step blocks, straight,
 * transposed and neither stride 1; values that round up, ties, NaN and infinities; the
 * canary after the panel must survive. */
START_TEST(pair_packing_matches_the_contract) {
  enum { LD = 150 };
  float *src = malloc(sizeof(float) * LD * 300);
  uint16_t *src16 = malloc(sizeof(uint16_t) * LD * 300);
  for (size_t i = 0; i < (size_t)LD * 300; i++) src[i] = frand() * (i % 11 ? 1.f : 3e5f);
  const uint32_t special[] = {0x3f808000u, 0x3f818000u, 0x7fc00001u, 0xff800000u, 0x7f7fffffu};
  for (int i = 0; i < 5; i++) src[3 * LD + 2 + i] = src[(7 + i) * LD + 4] = from_bits(special[i]);
  for (size_t i = 0; i < (size_t)LD * 300; i++) src16[i] = asink_f32_to_bf16(src[i]);
  uint32_t *got = malloc(4 * (40 * 70 + 1)), *got16 = malloc(4 * (40 * 70 + 1));
  for (size_t W = 1; W <= 40; W += W < 8 ? 1 : W < 32 ? 6 : 1)
    for (size_t w = 0; w <= W; w += W <= 8 ? 1 : (w + 5 < W ? 5 : 1))
      for (size_t k = 0; k <= 133; k += k < 6 ? 1 : 31)
        for (int trans = 0; trans < 3; trans++) {
          size_t s_r = trans == 0 ? 1 : LD, s_p = trans == 0 ? LD : trans == 1 ? 1 : 2;
          size_t k2 = (k + 1) / 2;
          memset(got, 0x7f, 4 * (W * k2 + 1));
          memset(got16, 0x7f, 4 * (W * k2 + 1));
          under_test->pack_round(got, src, W, w, k, s_r, s_p);
          under_test->pack16(got16, src16, W, w, k, s_r, s_p);
          for (size_t q = 0; q < k2; q++)
            for (size_t r = 0; r < W; r++) {
              uint32_t want = pair_of(src, r, 2 * q, w, k, s_r, s_p);
              ck_assert_msg(got[q * W + r] == want, "%s pack_round W=%zu w=%zu k=%zu trans=%d at (%zu, %zu): %#x, want %#x",
                            mode, W, w, k, trans, r, q, got[q * W + r], want);
              ck_assert_msg(got16[q * W + r] == want, "%s pack16 W=%zu w=%zu k=%zu trans=%d at (%zu, %zu): %#x, want %#x",
                            mode, W, w, k, trans, r, q, got16[q * W + r], want);
            }
          ck_assert_msg(got[W * k2] == 0x7f7f7f7fu && got16[W * k2] == 0x7f7f7f7fu,
                        "%s W=%zu w=%zu k=%zu trans=%d: wrote past the panel", mode, W, w, k, trans);
        }
  free(src), free(src16), free(got), free(got16);
}
END_TEST

/* The micro-kernel on panels packed from pre-rounded values: every tile size up to 6 x 32,
 * k from 0 to past an unrolled step, odd and even; with alpha 1 and beta 0 it must give, bit
 * for bit, the pair sums in the pseudo-code's order (dp_lane over the pairs); with alpha 0.3
 * or beta 1, -0.5 or 0 over NaN, the double sum within the bound of a float sum of k + 3
 * terms; C around the tile untouched. */
START_TEST(pair_kernel_matches_reference) {
  const size_t MR = under_test->mr, NR = under_test->nr, ldc = NR + 3;
  ck_assert_uint_eq(MR, 6);
  ck_assert_uint_eq(NR, 32);
  const size_t ks[] = {0, 1, 2, 3, 4, 5, 8, 9, 17, 64, 65};
  const float betas[] = {0.f, 1.f, -0.5f}, alphas[] = {1.f, 0.3f};
  for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++) {
    size_t k = ks[ki], k2 = (k + 1) / 2;
    float *A = malloc(sizeof(float) * (MR * k + 1)), *B = malloc(sizeof(float) * (NR * k + 1));
    for (size_t i = 0; i < MR * k; i++) A[i] = rounded(frand());
    for (size_t i = 0; i < NR * k; i++) B[i] = rounded(frand() * 4.f);
    /* A as rows (i, p) at i k + p, B as (j, p) at p NR + j: both layouts of a panel */
    uint32_t *a = malloc(4 * (MR * k2 + 1)), *b = malloc(4 * (NR * k2 + 1));
    under_test->pack_round(a, A, MR, MR, k, k, 1);
    under_test->pack_round(b, B, NR, NR, k, 1, NR);
    for (size_t m = 1; m <= MR; m++)
      for (size_t n = 1; n <= NR; n += n < 4 || n > 28 ? 1 : 5)
        for (int ai = 0; ai < 2; ai++)
          for (int bi = 0; bi < 3; bi++) {
            float alpha = alphas[ai], beta = betas[bi];
            float *c = malloc(sizeof(float) * (MR + 1) * ldc), *c0 = malloc(sizeof(float) * (MR + 1) * ldc);
            for (size_t i = 0; i < (MR + 1) * ldc; i++) c[i] = frand();
            if (beta == 0.f) c[0] = NAN;
            memcpy(c0, c, sizeof(float) * (MR + 1) * ldc);
            under_test->ukr(k2, a, b, c, ldc, m, n, alpha, beta);
            for (size_t i = 0; i <= MR; i++)
              for (size_t j = 0; j < ldc; j++) {
                float got = c[i * ldc + j];
                if (i >= m || j >= n) {
                  ck_assert_msg(!memcmp(&got, &c0[i * ldc + j], 4),
                                "%s k=%zu m=%zu n=%zu: C[%zu][%zu] outside the tile changed", mode, k, m, n, i, j);
                  continue;
                }
                double s = 0.0, mag = 1.0;
                float ordered = 0.f;
                for (size_t q = 0; q < k2; q++)
                  ordered = dp_lane(ordered, a[q * MR + i], b[q * NR + j]);
                for (size_t p = 0; p < k; p++) {
                  s += (double)A[i * k + p] * B[p * NR + j];
                  mag += fabs((double)A[i * k + p] * B[p * NR + j]);
                }
                if (alpha == 1.f && beta == 0.f)
                  ck_assert_msg(!memcmp(&got, &ordered, 4), "%s k=%zu m=%zu n=%zu: C[%zu][%zu] = %a, the pair order gives %a",
                                mode, k, m, n, i, j, got, ordered);
                double old = beta == 0.f ? 0.0 : beta * (double)c0[i * ldc + j];
                double want = alpha * s + old, tol = (double)(k + 3) * 0x1p-24 * (mag + fabs(old) + 1.0);
                ck_assert_msg(fabs(got - want) <= tol, "%s k=%zu m=%zu n=%zu alpha=%g beta=%g: C[%zu][%zu] = %g, want %g",
                              mode, k, m, n, alpha, beta, i, j, got, want);
              }
            free(c), free(c0);
          }
    free(A), free(B), free(a), free(b);
  }
}
END_TEST

/* asink_sgemm_bf16ops through the driver with the kernel under test forced in, against the
 * double sum of the rounded operands: every transpose, B in float or bf16, 1 to 3 threads,
 * beta 0 over NaN, padding columns of C untouched. Sizes cross the tile (6 x 32) and, with
 * the small blocks (mc 12, kc 10, nc 64), every cache-block edge; k odd and even. */
static void driver_case(const asink_gemm_bf16 *K, bool ta, bool tb, bool half, int m, int n, int k,
                        float alpha, float beta, int threads) {
  const int pad = 3, lda = (ta ? m : k) + pad, ldb = (tb ? k : n) + pad, ldc = n + pad;
  size_t na = (size_t)(ta ? k : m) * lda, nb = (size_t)(tb ? n : k) * ldb, nc = (size_t)m * ldc;
  float *A = malloc(na * 4), *B = malloc(nb * 4), *C = malloc(nc * 4), *C0 = malloc(nc * 4);
  uint16_t *B16 = malloc(nb * 2);
  for (size_t i = 0; i < na; i++) A[i] = frand();
  for (size_t i = 0; i < nb; i++) B16[i] = asink_f32_to_bf16(B[i] = frand());
  for (size_t i = 0; i < nc; i++) C[i] = C0[i] = frand();
  if (beta == 0.f) C[0] = C0[0] = NAN;
  long calls = emulated_calls;
  asink_sgemm_force_bf16_kernel(1, K);
  asink_sgemm_bf16ops(ta, tb, m, n, k, alpha, A, lda, half ? NULL : B, half ? B16 : NULL, ldb, beta,
                      C, ldc, threads);
  asink_sgemm_force_bf16_kernel(-1, NULL);
  if (K->ukr == counted_ukr && m > 8)
    ck_assert_msg(emulated_calls > calls, "m=%d n=%d k=%d: the pair kernel did not run", m, n, k);
  for (int i = 0; i < m; i++)
    for (int j = 0; j < ldc; j++) {
      float got = C[(size_t)i * ldc + j];
      if (j >= n) {
        ck_assert_msg(!memcmp(&got, &C0[(size_t)i * ldc + j], 4), "padding of C changed");
        continue;
      }
      double s = 0.0, mag = 0.0;
      for (int p = 0; p < k; p++) {
        double x = rounded(ta ? A[(size_t)p * lda + i] : A[(size_t)i * lda + p]);
        double y = rounded(tb ? B[(size_t)j * ldb + p] : B[(size_t)p * ldb + j]);
        s += x * y, mag += fabs(x * y);
      }
      double old = beta == 0.f ? 0.0 : beta * (double)C0[(size_t)i * ldc + j];
      double want = alpha * s + old;
      /* k adds of products, an add per cache block and the epilogue's two roundings */
      double tol = (double)(k + k / 10 + 4) * 0x1p-24 * (fabs(alpha) * mag + fabs(old) + 1e-30);
      ck_assert_msg(fabs(got - want) <= tol,
                    "%s ta=%d tb=%d half=%d m=%d n=%d k=%d alpha=%g beta=%g threads=%d: C[%d][%d] = %.9g, want %.9g",
                    mode, ta, tb, half, m, n, k, alpha, beta, threads, i, j, got, want);
    }
  free(A), free(B), free(C), free(C0), free(B16);
}

static const int shapes[][3] = {
    {9, 1, 1},   {9, 31, 2},   {13, 33, 3},  {12, 32, 10}, {11, 31, 11}, {25, 65, 21},
    {37, 64, 19}, {40, 100, 9}, {70, 129, 77}, {13, 17, 5}, {100, 300, 385}, {30, 70, 384},
    {19, 97, 769}, {130, 200, 200},
};

START_TEST(driver_runs_the_pair_kernel) {
  const asink_gemm_bf16 *blocks[] = {under_test, under_test_small};
  for (int bl = 0; bl < 2; bl++)
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
      for (int t = 0; t < 8; t++) {
        float alpha = s % 3 ? 0.37f : 1.f, beta = s % 2 ? (s % 4 == 1 ? 1.f : -0.5f) : 0.f;
        driver_case(blocks[bl], t & 1, t & 2, t & 4, shapes[s][0], shapes[s][1], shapes[s][2], alpha,
                    beta, 1 + (int)((s + (size_t)t) % 3));
      }
}
END_TEST

/* A pair kernel the driver cannot run (an odd kc would split a pair) is not run: the product
 * is the float kernel's on rounded panels, bit for bit. */
START_TEST(unusable_pair_kernel_falls_back) {
  asink_gemm_bf16 odd = *under_test_small;
  odd.kc = 9;
  enum { M = 20, N = 40, K = 30 };
  float A[M * K], Ar[M * K], B[K * N], Br[K * N], C1[M * N], C2[M * N];
  for (int i = 0; i < M * K; i++) Ar[i] = rounded(A[i] = frand());
  for (int i = 0; i < K * N; i++) Br[i] = rounded(B[i] = frand());
  long calls = emulated_calls;
  asink_sgemm_force_bf16_kernel(1, &odd);
  asink_sgemm_bf16ops(false, false, M, N, K, 1.f, A, K, B, NULL, N, 0.f, C1, N, 1);
  asink_sgemm_force_bf16_kernel(-1, NULL);
  ck_assert_int_eq(emulated_calls, calls);
  asink_sgemm_force_driver(1);
  asink_sgemm(false, false, M, N, K, 1.f, Ar, K, Br, N, 0.f, C2, N, 1);
  asink_sgemm_force_driver(-1);
  ck_assert(!memcmp(C1, C2, sizeof C1));
}
END_TEST

/* A precision=bf16 model's loss, logits and gradients with the pair kernel against the float
 * kernel on rounded panels. Both multiply the same bf16 values; the pair kernel adds two
 * products at a time, so each GEMM's sums differ by float rounding (about k 2^-24 of the sum
 * of magnitudes), and through them an activation now and then rounds to the neighbouring
 * bf16 value (2^-8 of it) before the next GEMM. So: the loss within 1e-4 relative, logits
 * within 2e-3 of the largest, each gradient tensor within 2e-2 of its largest entry (a
 * gradient is a sum of many such products and the smallest tensors, norm weights, have few
 * terms); and not bit for bit equal, or the kernel did not run. */
static const char *const tiny_cfg =
    "{\"model_type\": \"llama\", \"vocab_size\": 61, \"hidden_size\": 48, \"intermediate_size\": 96,"
    " \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"num_key_value_heads\": 2,"
    " \"max_position_embeddings\": 64}";
enum { BATCH = 4, T = 24 };

static void model_run(int use, const asink_gemm_bf16 *K, float *loss, float *logits, float *grad,
                      size_t *ngrad) {
  asink_model *m;
  ck_assert_int_eq(asink_model_create_opts(&m, tiny_cfg, 11, "precision=bf16"), ASINK_OK);
  int32_t tok[BATCH * T], tgt[BATCH * T];
  unsigned s = 99;
  for (int i = 0; i < BATCH * T; i++) {
    s = s * 1664525u + 1013904223u;
    tok[i] = (int32_t)((s >> 9) % 61u), tgt[i] = (int32_t)((s >> 3) % 61u);
  }
  asink_sgemm_force_bf16_kernel(use, K);
  ck_assert_int_eq(asink_model_forward(m, BATCH, T, tok, logits), ASINK_OK);
  ck_assert_int_eq(asink_model_loss(m, BATCH, T, tok, tgt, loss), ASINK_OK);
  ck_assert_int_eq(asink_model_backward(m), ASINK_OK);
  asink_sgemm_force_bf16_kernel(-1, NULL);
  float *g;
  ck_assert_int_eq(asink_model_grad_block(m, &g, ngrad), ASINK_OK);
  memcpy(grad, g, *ngrad * sizeof(float));
  asink_model_free(m);
}

static double max_abs(const float *x, size_t n) {
  double r = 0.0;
  for (size_t i = 0; i < n; i++) r = fmax(r, fabs(x[i]));
  return r;
}

START_TEST(model_with_pair_kernel_agrees_with_fallback) {
  const size_t nlog = (size_t)BATCH * T * 61, cap = 1u << 20;
  float l0, l1, *log0 = malloc(nlog * 4), *log1 = malloc(nlog * 4);
  float *g0 = malloc(cap * 4), *g1 = malloc(cap * 4);
  size_t n0, n1;
  model_run(0, NULL, &l0, log0, g0, &n0);
  long calls = emulated_calls;
  model_run(1, under_test, &l1, log1, g1, &n1);
  if (under_test->ukr == counted_ukr) ck_assert_int_gt(emulated_calls, calls);
  ck_assert_uint_eq(n0, n1);
  ck_assert_msg(fabs((double)l1 - l0) <= 1e-4 * fabs(l0), "%s loss %.9g vs %.9g", mode, l1, l0);
  double dl = 0.0;
  for (size_t i = 0; i < nlog; i++) dl = fmax(dl, fabs((double)log1[i] - log0[i]));
  ck_assert_msg(dl <= 2e-3 * max_abs(log0, nlog), "%s logits differ by %g of %g", mode, dl, max_abs(log0, nlog));
  /* gradient tensors: the registry's parameters, in the block's order */
  asink_model *m;
  ck_assert_int_eq(asink_model_create_opts(&m, tiny_cfg, 11, "precision=bf16"), ASINK_OK);
  int np = asink_model_param_count(m);
  double worst = 0.0;
  for (int p = 0; p < np; p++) {
    const char *name;
    int ndim;
    int64_t shape[4];
    size_t off, numel;
    ck_assert_int_eq(asink_model_param_info(m, p, &name, &ndim, shape), ASINK_OK);
    ck_assert_int_eq(asink_model_param_offset(m, p, &off, &numel), ASINK_OK);
    double big = max_abs(g0 + off, numel), d = 0.0;
    for (size_t i = 0; i < numel; i++) d = fmax(d, fabs((double)g1[off + i] - g0[off + i]));
    ck_assert_msg(d <= 2e-2 * big, "%s gradient of %s differs by %g of %g", mode, name, d, big);
    worst = fmax(worst, big > 0 ? d / big : 0.0);
  }
  printf("%s: loss %.9g vs %.9g, logits %.3g of the largest, gradients at worst %.3g of a tensor's largest\n",
         mode, l1, l0, dl / max_abs(log0, nlog), worst);
  ck_assert_msg(memcmp(log0, log1, nlog * 4) || memcmp(g0, g1, n0 * 4), "%s: the pair kernel changed nothing", mode);
  asink_model_free(m);
  free(log0), free(log1), free(g0), free(g1);
}
END_TEST

/* On the real hardware: the native kernel against the emulation, lane for lane (reported,
 * not required: the emulation follows Intel's pseudo-code, which a CPU might not to the
 * last bit) and the runtime's choice (the table in use has the kernel unless
 * ASINK_BF16_KERNEL=0). */
START_TEST(native_kernel_beside_the_emulation) {
  const char *env = getenv("ASINK_BF16_KERNEL");
  bool off = env && !strcmp(env, "0");
  if (asink_cpu_best_isa() == ASINK_ISA_AVX512 && !strcmp(asink_simd_level(), "avx512"))
    ck_assert_msg((asink_kern()->gemm_bf16 != NULL) == !off, "the runtime %s the bf16 kernel",
                  off ? "kept" : "did not pick");
  enum { MR = 6, NR = 32, K = 301 };
  float A[MR * K], B[K * NR], c0[MR * NR], c1[MR * NR];
  for (int i = 0; i < MR * K; i++) A[i] = frand();
  for (int i = 0; i < K * NR; i++) B[i] = frand();
  uint32_t a[MR * (K + 1) / 2], b[NR * (K + 1) / 2];
  gemm_bf16_pack_round(a, A, MR, MR, K, K, 1);
  gemm_bf16_pack_round(b, B, NR, NR, K, 1, NR);
  gemm_bf16_ukr((K + 1) / 2, a, b, c0, NR, MR, NR, 1.f, 0.f);
  under_test->ukr((K + 1) / 2, a, b, c1, NR, MR, NR, 1.f, 0.f);
  int differ = 0;
  for (int i = 0; i < MR * NR; i++) differ += memcmp(&c0[i], &c1[i], 4) != 0;
  printf("native vdpbf16ps vs the emulation: %d of %d sums differ in some bit\n", differ, MR * NR);
}
END_TEST

static bool native_run; /* the native kernel is under test: compare it with the emulation too */

static void add_tests(TCase *tc) {
  tcase_add_test(tc, emulated_dp_is_the_pseudo_code);
  tcase_add_test(tc, pair_packing_matches_the_contract);
  tcase_add_test(tc, pair_kernel_matches_reference);
  tcase_add_test(tc, driver_runs_the_pair_kernel);
  tcase_add_test(tc, unusable_pair_kernel_falls_back);
  tcase_add_test(tc, model_with_pair_kernel_agrees_with_fallback);
  if (native_run) tcase_add_test(tc, native_kernel_beside_the_emulation);
}

int main(int argc, char **argv) {
  (void)gemm_ukr; /* gemm_pair256.h's fp32 kernel: only its gemm_out is used here */
  mode = argc > 1 ? argv[1] : "emulated";
  asink_status st = asink_init();
  if (st != ASINK_OK) {
    printf("asink_init: %s\n", asink_last_error());
    return 1;
  }
  if (asink_cpu_best_isa() < ASINK_ISA_AVX2) {
    printf("skipped: the emulation needs AVX2\n");
    return 77;
  }
  bool native = !strcmp(mode, "native");
  if (native) {
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx512bf16") || !asink_kernels_avx512bf16_table) {
      printf("skipped: %s\n", asink_kernels_avx512bf16_table ? "this CPU lacks AVX-512 BF16"
                                                            : "this build has no AVX-512 BF16 kernel");
      return 77;
    }
    static asink_gemm_bf16 small;
    under_test = asink_kernels_avx512bf16_table->gemm_bf16;
    small = *under_test;
    small.mc = 12, small.kc = 10, small.nc = 64;
    under_test_small = &small;
  } else if (!strcmp(mode, "emulated")) {
    under_test = &emulated, under_test_small = &emulated_small;
  } else {
    printf("usage: test_gemm_bf16 emulated|native\n");
    return 2;
  }
  printf("%s; %s kernel\n", asink_runtime_info(), mode);
  native_run = native;
  return run_test_case("gemm_bf16", 300, add_tests);
}

#endif
