/* The library's GEMM driver (core/blas.c: the SIMD table's packing and micro-kernel)
 * against a double-precision reference and against BLIS's own driver: every transpose
 * pair, edge sizes around the micro-tile and cache blocks, padded leading dimensions,
 * alpha/beta cases, 1, 2 and 3 threads, and called from inside a parallel region; and
 * each table's micro-kernel and pack kernel on their own. The driver runs the table
 * the runtime chose: meson runs this file once per level (ASINK_SIMD=scalar, avx2,
 * avx512; a level this CPU lacks is skipped). */
#include <check.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attnsink.h"
#include "core/blas.h"
#include "core/runtime.h"
#include "kernels/kernels.h"
#include "simd_suite.h"

static unsigned lcg = 12345u;
static float frand(void) {
  lcg = lcg * 1664525u + 1013904223u;
  return (float)((lcg >> 8) & 0xffff) / 32768.f - 1.f;
}

static float *rand_matrix(size_t n) {
  float *x = malloc(n * sizeof *x);
  for (size_t i = 0; i < n; i++) x[i] = frand();
  return x;
}

/* max |C - ref| / max(1, max |ref|) for one case under the current driver. */
static double gemm_error(bool ta, bool tb, int m, int n, int k, float alpha, float beta, int pad,
                         int threads) {
  int lda = (ta ? m : k) + pad, ldb = (tb ? k : n) + pad, ldc = n + pad;
  float *A = rand_matrix((size_t)(ta ? k : m) * lda), *B = rand_matrix((size_t)(tb ? n : k) * ldb);
  float *C = rand_matrix((size_t)m * ldc);
  double *ref = malloc((size_t)m * n * sizeof *ref), scale = 1.0, err = 0.0;
  for (int i = 0; i < m; i++)
    for (int j = 0; j < n; j++) {
      double s = 0.0;
      for (int p = 0; p < k; p++)
        s += (double)(ta ? A[(size_t)p * lda + i] : A[(size_t)i * lda + p]) *
             (tb ? B[(size_t)j * ldb + p] : B[(size_t)p * ldb + j]);
      double c0 = beta == 0.f ? 0.0 : beta * (double)C[(size_t)i * ldc + j];
      ref[(size_t)i * n + j] = alpha * s + c0;
      if (fabs(ref[(size_t)i * n + j]) > scale) scale = fabs(ref[(size_t)i * n + j]);
    }
  float *C0 = malloc((size_t)m * ldc * sizeof *C0);
  memcpy(C0, C, (size_t)m * ldc * sizeof *C0);
  if (beta == 0.f) /* beta 0 must overwrite, NaN included */
    for (int i = 0; i < m; i++) C[(size_t)i * ldc] = NAN;
  asink_sgemm(ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc, threads);
  for (int i = 0; i < m; i++)
    for (int j = 0; j < n; j++) {
      double e = fabs(C[(size_t)i * ldc + j] - ref[(size_t)i * n + j]);
      if (!(e <= err)) err = isnan(e) ? INFINITY : e;
    }
  for (int i = 0; i < m; i++) /* the padding columns must be untouched */
    for (int j = n; j < ldc; j++)
      if (C[(size_t)i * ldc + j] != C0[(size_t)i * ldc + j]) err = INFINITY;
  free(C0);
  free(A);
  free(B);
  free(C);
  free(ref);
  return err / scale;
}

/* Edges of every table's tiles (4 x 8, 6 x 16, 6 x 32: one short, exact, one over) and
 * cache blocks (mc 128/144/384, kc 192/256, nc 2048/3072/4080), odd sizes throughout. */
static const int sizes[][3] = {
    {1, 1, 1},     {1, 13, 7},     {13, 1, 7},    {31, 11, 5},    {32, 12, 64},
    {33, 13, 65},  {64, 24, 128},  {100, 37, 17}, {257, 129, 64}, {96, 500, 385},
    {481, 50, 30}, {130, 3100, 9}, {12, 32, 800}, {384, 384, 384},
    {5, 15, 3},    {6, 16, 4},     {7, 17, 5},    {11, 31, 191},  {12, 32, 192},
    {13, 33, 193}, {143, 47, 255}, {145, 49, 257}, {289, 95, 513}, {9, 4081, 3},
    {29, 2049, 2}, {385, 63, 11},
};

static void run_all(int driver, int threads) {
  asink_sgemm_force_driver(driver);
  for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
    for (int t = 0; t < 4; t++) {
      bool ta = t & 1, tb = t & 2;
      int m = sizes[s][0], n = sizes[s][1], k = sizes[s][2];
      float alpha = (s % 3 == 0) ? 1.f : 0.37f, beta = (s % 2 == 0) ? 0.f : (s % 4 == 1 ? 1.f : -0.5f);
      double e = gemm_error(ta, tb, m, n, k, alpha, beta, (int)(s % 3) * 5, threads);
      ck_assert_msg(e < 1e-5, "driver %d threads %d: m=%d n=%d k=%d ta=%d tb=%d: error %g", driver,
                    threads, m, n, k, ta, tb, e);
    }
  asink_sgemm_force_driver(-1);
}

START_TEST(packed_one_thread) { run_all(1, 1); }
END_TEST

START_TEST(packed_two_threads) { run_all(1, 2); }
END_TEST

START_TEST(packed_three_threads) { run_all(1, 3); }
END_TEST

START_TEST(blis_driver_agrees) { run_all(0, 2); }
END_TEST

START_TEST(packed_inside_parallel_region) {
  asink_sgemm_force_driver(1);
  double worst = 0.0;
#pragma omp parallel num_threads(2) reduction(max : worst)
  {
    double e = gemm_error(omp_get_thread_num(), true, 70, 90, 66, 1.f, 0.f, 3, 2);
    if (e > worst) worst = e;
  }
  asink_sgemm_force_driver(-1);
  ck_assert_msg(worst < 1e-5, "error %g", worst);
}
END_TEST

/* A few rows against a large B (decoding): the skinny path, every m up to 8 and past it,
 * both layouts of B, beta 0 (NaN overwritten), 1 and -0.5, 1 and 2 threads. */
START_TEST(few_rows_against_a_large_matrix) {
  const float betas[] = {0.f, 1.f, -0.5f};
  for (int m = 1; m <= 9; m++)
    for (int tb = 0; tb < 2; tb++)
      for (int bi = 0; bi < 3; bi++)
        for (int threads = 1; threads <= 2; threads++) {
          double e = gemm_error(false, tb, m, 700, 300, 0.7f, betas[bi], m % 2 ? 3 : 0, threads);
          ck_assert_msg(e < 1e-5, "m=%d tb=%d beta=%g threads=%d: error %g", m, tb, betas[bi], threads, e);
        }
}
END_TEST

START_TEST(alpha_zero_and_k_zero_scale_c) {
  asink_sgemm_force_driver(1);
  float A[4] = {NAN, NAN, NAN, NAN}, B[4] = {1, 2, 3, 4}, C[4] = {1, 2, 3, 4};
  asink_sgemm(false, false, 2, 2, 2, 0.f, A, 2, B, 2, 2.f, C, 2, 1);
  ck_assert(C[0] == 2.f && C[3] == 8.f);
  asink_sgemm(false, false, 2, 2, 0, 1.f, A, 2, B, 2, 0.f, C, 2, 1);
  ck_assert(C[0] == 0.f && C[3] == 0.f);
  asink_sgemm_force_driver(-1);
}
END_TEST

/* Band tests: op(A) is zero outside a random band of each row; krange reports, by
 * brute force, the k holding nonzeros of rows r0..r1; wanted marks a random band of
 * C. The banded product must equal the plain one (the skipped products are zero)
 * on every wanted entry. */
typedef struct {
  const float *A;
  int lda, k;
  bool ta;
  const int *clo, *chi; /* wanted columns of each C row */
} band_ctx;

static float opa(const band_ctx *b, int i, int p) {
  return b->ta ? b->A[(size_t)p * b->lda + i] : b->A[(size_t)i * b->lda + p];
}

static void test_krange(const void *ctx, int r0, int r1, int *k0, int *k1) {
  const band_ctx *b = ctx;
  *k0 = b->k, *k1 = 0;
  for (int i = r0; i <= r1; i++)
    for (int p = 0; p < b->k; p++)
      if (opa(b, i, p) != 0.f) {
        if (p < *k0) *k0 = p;
        if (p + 1 > *k1) *k1 = p + 1;
      }
}

static bool test_wanted(const void *ctx, int r0, int r1, int c0, int c1) {
  const band_ctx *b = ctx;
  for (int i = r0; i <= r1; i++)
    if (b->clo[i] <= c1 && b->chi[i] >= c0) return true;
  return false;
}

static void band_case(bool ta, bool tb, int m, int n, int k, float beta, int threads) {
  int lda = ta ? m : k, ldb = tb ? k : n;
  float *A = rand_matrix((size_t)(ta ? k : m) * lda), *B = rand_matrix((size_t)(tb ? n : k) * ldb);
  int *klo = malloc(sizeof(int) * m), *khi = malloc(sizeof(int) * m);
  int *clo = malloc(sizeof(int) * m), *chi = malloc(sizeof(int) * m);
  for (int i = 0; i < m; i++) { /* monotone bands, as attention's, some rows empty */
    klo[i] = (int)((double)i * k / m / 2), khi[i] = klo[i] + (int)((frand() + 1.f) * k / 3);
    clo[i] = (int)((double)i * n / m / 2), chi[i] = clo[i] + (int)((frand() + 1.f) * n / 3);
    if (i % 7 == 3) khi[i] = klo[i] - 1;
  }
  for (int i = 0; i < m; i++)
    for (int p = 0; p < k; p++)
      if (p < klo[i] || p > khi[i]) {
        if (ta) A[(size_t)p * lda + i] = 0.f;
        else A[(size_t)i * lda + p] = 0.f;
      }
  float *C0 = rand_matrix((size_t)m * n), *C1 = malloc(sizeof(float) * m * n);
  memcpy(C1, C0, sizeof(float) * m * n);
  band_ctx bc = {A, lda, k, ta, clo, chi};
  asink_gemm_band band = {test_krange, test_wanted, &bc};
  asink_sgemm(ta, tb, m, n, k, 0.75f, A, lda, B, ldb, beta, C0, n, threads);
  asink_sgemm_band(ta, tb, m, n, k, 0.75f, A, lda, B, ldb, beta, C1, n, threads, &band);
  for (int i = 0; i < m; i++)
    for (int j = clo[i]; j <= chi[i] && j < n; j++)
      ck_assert_msg(fabsf(C0[(size_t)i * n + j] - C1[(size_t)i * n + j]) <= 1e-5f,
                    "ta=%d tb=%d m=%d n=%d k=%d beta=%g threads=%d: C[%d][%d] %g vs %g", ta, tb,
                    m, n, k, beta, threads, i, j, C1[(size_t)i * n + j], C0[(size_t)i * n + j]);
  free(A), free(B), free(C0), free(C1), free(klo), free(khi), free(clo), free(chi);
}

START_TEST(band_skips_only_zero_or_unwanted_work) {
  asink_sgemm_force_driver(1);
  const int shapes[][3] = {{100, 90, 70}, {64, 33, 900}, {257, 129, 64}, {40, 500, 45}};
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
    for (int t = 0; t < 4; t++)
      for (int threads = 1; threads <= 2; threads++) {
        band_case(t & 1, t & 2, shapes[s][0], shapes[s][1], shapes[s][2], 0.f, threads);
        band_case(t & 1, t & 2, shapes[s][0], shapes[s][1], shapes[s][2], 0.5f, threads);
      }
  asink_sgemm_force_driver(-1);
}
END_TEST

/* A B packed once (asink_sgemm_pack_b) and read at a column or k offset gives the bits
 * of packing it at each product: the attention reads its keys and values so, a block of
 * queries at a time. Offsets at and off panel boundaries, partial last panels, k across
 * the kc blocks, with a band and without, 1 and 2 threads. */
typedef struct {
  const int *klo, *khi, *clo, *chi; /* per C row: k range [klo, khi), wanted columns */
} stair;

static void stair_krange(const void *ctx, int r0, int r1, int *k0, int *k1) {
  const stair *s = ctx;
  *k0 = s->klo[r0], *k1 = s->khi[r1];
}

static bool stair_wanted(const void *ctx, int r0, int r1, int c0, int c1) {
  const stair *s = ctx;
  return s->clo[r0] <= c1 && s->chi[r1] >= c0;
}

START_TEST(prepacked_b_gives_the_same_bits) {
  asink_sgemm_force_driver(1);
  const int NR = (int)asink_kern()->gemm.nr; /* the driver's panel width */
  /* full B: nfull columns x kfull; the product reads n columns from j0, k steps from p0 */
  const int cases[][6] = {
      /* m, n, k, j0, p0, transb */
      {37, 50, 64, 0, 0, 1},    {37, 50, 64, NR, 0, 1},   {6, 3 * NR + 5, 20, 2 * NR, 0, 1},
      {100, 20, 300, 0, 0, 0},  {100, 20, 300, 0, 77, 0}, {13, 64, 513, 0, 190, 0},
      {256, 64, 1024, 0, 0, 0}, {200, 33, 9, NR, 3, 1},
      /* columns from off a panel boundary: the driver packs B itself */
      {37, 50, 64, 5, 0, 1},    {20, NR + 3, 40, NR + 1, 7, 1},
  };
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
    for (int banded = 0; banded < 2; banded++)
      for (int threads = 1; threads <= 2; threads++) {
        int m = cases[c][0], n = cases[c][1], k = cases[c][2], j0 = cases[c][3], p0 = cases[c][4];
        bool tb = cases[c][5];
        int nfull = j0 + n + 7, kfull = p0 + k + 5, ldb = tb ? kfull + 3 : nfull + 3;
        float *A = rand_matrix((size_t)m * k), *B = rand_matrix((size_t)(tb ? nfull : kfull) * ldb);
        float *C0 = rand_matrix((size_t)m * n), *C1 = malloc((size_t)m * n * sizeof *C1);
        memcpy(C1, C0, (size_t)m * n * sizeof *C1);
        float *packed = malloc(asink_sgemm_packed_floats(nfull, kfull) * sizeof *packed);
        asink_sgemm_pack_b(tb, nfull, kfull, B, ldb, packed);
        const float *Bsub = tb ? B + (size_t)j0 * ldb + p0 : B + (size_t)p0 * ldb + j0;
        int *klo = malloc(sizeof(int) * (size_t)m), *khi = malloc(sizeof(int) * (size_t)m);
        int *clo = malloc(sizeof(int) * (size_t)m), *chi = malloc(sizeof(int) * (size_t)m);
        for (int i = 0; i < m; i++) { /* a causal-like staircase */
          klo[i] = i * k / (2 * m), khi[i] = k / 2 + i * k / (2 * m);
          clo[i] = i * n / (2 * m), chi[i] = n / 2 + i * n / (2 * m);
        }
        stair st = {klo, khi, clo, chi};
        asink_gemm_band band = {stair_krange, stair_wanted, &st};
        const asink_gemm_band *bp = banded ? &band : NULL;
        asink_gemm_prepacked pre = {packed, kfull, j0, p0};
        asink_sgemm_band(false, tb, m, n, k, 0.5f, A, k, Bsub, ldb, 0.25f, C0, n, threads, bp);
        asink_sgemm_band_pre(false, tb, m, n, k, 0.5f, A, k, Bsub, ldb, 0.25f, C1, n, threads, bp,
                             &pre);
        ck_assert_msg(!memcmp(C0, C1, (size_t)m * n * sizeof *C0),
                      "case %zu banded %d threads %d: prepacked B differs", c, banded, threads);
        free(A), free(B), free(C0), free(C1), free(packed), free(klo), free(khi), free(clo),
            free(chi);
      }
  asink_sgemm_force_driver(-1);
}
END_TEST

/* The tables this build has and this CPU runs (another would stop on SIGILL). */
static int runnable_tables(const asink_kernels *out[3]) {
  int n = 0;
  out[n++] = &asink_kernels_scalar;
  if (asink_kernels_avx2_table && asink_cpu_best_isa() >= ASINK_ISA_AVX2)
    out[n++] = asink_kernels_avx2_table;
  if (asink_kernels_avx512_table && asink_cpu_best_isa() >= ASINK_ISA_AVX512)
    out[n++] = asink_kernels_avx512_table;
  return n;
}

static void pack_reference(float *dst, const float *src, size_t W, size_t w, size_t k,
                           size_t s_r, size_t s_p) {
  for (size_t p = 0; p < k; p++)
    for (size_t r = 0; r < W; r++) dst[p * W + r] = r < w ? src[r * s_r + p * s_p] : 0.f;
}

/* Every width up to 40 (the kernels' mr and nr among them), full and partial panels,
 * k across whole and partial 8- and 16-blocks, both strides; the canary after the
 * panel must survive (a panel abuts the next, which another thread may be packing). */
START_TEST(pack_panel_matches_reference) {
  const asink_kernels *tables[3];
  int nt = runnable_tables(tables);
  for (int t = 0; t < nt; t++)
    for (size_t W = 1; W <= 40; W += (W < 18 ? 1 : 7))
      for (size_t w = 0; w <= W; w += W <= 8 ? 1 : w + 3 < W || w == W ? 3 : W - w)
        for (size_t k = 1; k <= 37; k += 9)
          for (int trans = 0; trans < 3; trans++) {
            /* straight, transposed, and neither stride 1 (not a row-major operand) */
            size_t ld = 41, s_r = trans == 0 ? 1 : ld, s_p = trans == 0 ? ld : trans == 1 ? 1 : 2;
            float *src = rand_matrix(ld * 82), got[40 * 40 + 1], want[40 * 40];
            memset(got, 0x7f, sizeof got);
            tables[t]->pack_panel(got, src, W, w, k, s_r, s_p);
            pack_reference(want, src, W, w, k, s_r, s_p);
            ck_assert_msg(!memcmp(got, want, W * k * sizeof(float)),
                          "%s W=%zu w=%zu k=%zu trans=%d", tables[t]->name, W, w, k, trans);
            uint32_t canary;
            memcpy(&canary, got + W * k, sizeof canary);
            ck_assert_msg(canary == 0x7f7f7f7fu, "%s W=%zu w=%zu k=%zu trans=%d: wrote past the panel",
                          tables[t]->name, W, w, k, trans);
            free(src);
          }
}
END_TEST

typedef void (*ukr_fn)(size_t k, const float *a, const float *b, float *c, size_t ldc, size_t m,
                       size_t n, float alpha, float beta);

/* A micro-kernel on its own: every tile size up to MR x NR, k from 0 to past an unrolled
 * step, beta 0 over NaN, 1 and -0.5, alpha 1 and 0.3, C with padding whose entries (and
 * the rows and columns past the tile) must be left alone. */
static void check_micro_kernel(const char *name, ukr_fn ukr, size_t MR, size_t NR) {
  const size_t ks[] = {0, 1, 3, 4, 5, 17, 64}, ldc = NR + 3;
  const float betas[] = {0.f, 1.f, -0.5f}, alphas[] = {1.f, 0.3f};
  for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++) {
    size_t k = ks[ki];
    float *a = rand_matrix(MR * k + 1), *b = rand_matrix(NR * k + 1);
    for (size_t m = 1; m <= MR; m++)
      for (size_t n = 1; n <= NR; n++)
        for (int bi = 0; bi < 3; bi++) {
          float alpha = alphas[(m + n) % 2], beta = betas[bi];
          float *c = rand_matrix((MR + 1) * ldc), *c0 = malloc(sizeof(float) * (MR + 1) * ldc);
          if (beta == 0.f) c[0] = NAN;
          memcpy(c0, c, sizeof(float) * (MR + 1) * ldc);
          ukr(k, a, b, c, ldc, m, n, alpha, beta);
          for (size_t i = 0; i <= MR; i++)
            for (size_t j = 0; j < ldc; j++) {
              float got = c[i * ldc + j];
              if (i >= m || j >= n) {
                ck_assert_msg(memcmp(&got, &c0[i * ldc + j], sizeof got) == 0,
                              "%s k=%zu m=%zu n=%zu: C[%zu][%zu] outside the tile changed",
                              name, k, m, n, i, j);
                continue;
              }
              double s = 0.0, mag = 1.0;
              for (size_t p = 0; p < k; p++) {
                s += (double)a[p * MR + i] * b[p * NR + j];
                mag += fabs((double)a[p * MR + i] * b[p * NR + j]);
              }
              double old = beta == 0.f ? 0.0 : beta * (double)c0[i * ldc + j]; /* NaN or not */
              double want = alpha * s + old;
              /* the bound of a float sum of k + 2 terms */
              double tol = (double)(k + 3) * 1.2e-7 * (mag + fabs(old) + 1.0);
              ck_assert_msg(fabs(got - want) <= tol,
                            "%s k=%zu m=%zu n=%zu alpha=%g beta=%g: C[%zu][%zu] = %g, want %g",
                            name, k, m, n, alpha, beta, i, j, got, want);
            }
          free(c), free(c0);
        }
    free(a), free(b);
  }
}

/* The in-place kernel (gemm.ukr_rows) through check_micro_kernel: the packed a copied to a
 * row-major block of exactly m rows (a stride past k), which it must read and no more. */
typedef void (*ukr_rows_fn)(size_t k, const float *a, size_t lda, const float *b, float *c,
                            size_t ldc, size_t m, size_t n, float alpha, float beta);
static ukr_rows_fn rows_under_test;
static size_t rows_mr;

static void rows_adapter(size_t k, const float *a, const float *b, float *c, size_t ldc, size_t m,
                         size_t n, float alpha, float beta) {
  size_t lda = k + 3;
  float *rows = malloc(sizeof(float) * (m * lda + 1));
  for (size_t i = 0; i < m; i++)
    for (size_t p = 0; p < k; p++) rows[i * lda + p] = a[p * rows_mr + i];
  rows_under_test(k, rows, lda, b, c, ldc, m, n, alpha, beta);
  free(rows);
}

static void check_micro_kernel_rows(const char *name, ukr_rows_fn ukr, size_t MR, size_t NR) {
  rows_under_test = ukr, rows_mr = MR;
  check_micro_kernel(name, rows_adapter, MR, NR);
}

START_TEST(micro_kernel_matches_reference) {
  const asink_kernels *tables[3];
  int nt = runnable_tables(tables);
  for (int t = 0; t < nt; t++) {
    const asink_kernels *K = tables[t];
    ck_assert(K->gemm.ukr && K->gemm.mr >= 1 && K->gemm.nr >= 1 && K->gemm.mc % K->gemm.mr == 0 &&
              K->gemm.nc % K->gemm.nr == 0 && K->gemm.kc >= 1);
    check_micro_kernel(K->name, K->gemm.ukr, K->gemm.mr, K->gemm.nr);
    if (K->gemm.ukr_rows) check_micro_kernel_rows(K->name, K->gemm.ukr_rows, K->gemm.mr, K->gemm.nr);
  }
}
END_TEST

/* The AVX-512 table's micro-kernel is gemm_ukr.h at 16 floats a vector (6 x 32 tiles). Built
 * here from pairs of AVX2 vectors, the same source runs its 32-wide tile, edges included, on
 * CPUs without AVX-512, which cannot run that table itself. */
#if defined(__x86_64__) && defined(__GNUC__)
#include "gemm_pair256.h"
GEMM_PAIR256_END

START_TEST(wide_micro_kernel_source_matches_reference) {
  if (asink_cpu_best_isa() < ASINK_ISA_AVX2) return;
  check_micro_kernel("gemm_ukr.h at 16 lanes", gemm_ukr, GEMM_MR, GEMM_NR);
  check_micro_kernel_rows("gemm_ukr.h at 16 lanes, A in place", gemm_ukr_rows, GEMM_MR, GEMM_NR);
  ck_assert_int_eq(GEMM_NR, 32);
}
END_TEST
#endif

/* The driver the default picks for the level in use: the library's kernels wherever the
 * table has SIMD, BLIS at the scalar level, as asink_runtime_info() reports. */
START_TEST(default_driver_follows_the_level) {
  bool scalar = !strcmp(asink_simd_level(), "scalar");
  const char *env = getenv("ASINK_GEMM");
  if (env && *env && strcmp(env, "auto")) return; /* the user chose */
  ck_assert_int_eq(asink_sgemm_band_skips(), !scalar);
  ck_assert_int_eq(asink_get_settings()->gemm, scalar ? ASINK_GEMM_BLIS : ASINK_GEMM_PACKED);
  ck_assert_ptr_nonnull(strstr(asink_runtime_info(), scalar ? "gemm=blis" : "gemm="));
  if (!scalar) ck_assert_ptr_nonnull(strstr(asink_runtime_info(), asink_simd_level()));
}
END_TEST

static void add_tests(TCase *tc) {
  printf("%s\n", asink_runtime_info());
  tcase_add_test(tc, pack_panel_matches_reference);
  tcase_add_test(tc, micro_kernel_matches_reference);
#if defined(__x86_64__) && defined(__GNUC__)
  tcase_add_test(tc, wide_micro_kernel_source_matches_reference);
#endif
  tcase_add_test(tc, default_driver_follows_the_level);
  tcase_add_test(tc, packed_one_thread);
  tcase_add_test(tc, packed_two_threads);
  tcase_add_test(tc, packed_three_threads);
  tcase_add_test(tc, blis_driver_agrees);
  tcase_add_test(tc, packed_inside_parallel_region);
  tcase_add_test(tc, alpha_zero_and_k_zero_scale_c);
  tcase_add_test(tc, few_rows_against_a_large_matrix);
  tcase_add_test(tc, band_skips_only_zero_or_unwanted_work);
  tcase_add_test(tc, prepacked_b_gives_the_same_bits);
}

int main(void) { return run_simd_suite("gemm", add_tests); }
