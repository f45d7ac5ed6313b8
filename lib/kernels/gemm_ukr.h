/* The GEMM micro-kernel of the SIMD tables (kernels.h, gemm.ukr): a 6 x 2VL tile of C
 * held in 12 vector registers; each step of k broadcasts a's six entries against two
 * vectors of b (the register shape of BLIS's haswell/zen kernels, whose place this takes:
 * Debian's BLIS reaches them only through its own CPU detection or BLIS_ARCH_TYPE).
 * avx2.c and avx512.c include this file once, under their own compiler flags, after
 * defining the vector operations:
 *   GEMM_V               the vector type, GEMM_VL floats wide
 *   GEMM_LOAD(p)         unaligned load        GEMM_STORE(p, x)  unaligned store
 *   GEMM_BCAST(p)        *p in every lane      GEMM_SET1(x)      x in every lane
 *   GEMM_FMA(a, b, c)    a b + c, one rounding GEMM_MUL(a, b)    GEMM_ZERO()
 * One source for both widths keeps the AVX-512 kernel the AVX2 one, which this
 * machine's tests run, with wider registers. */
#ifndef ASINK_KERNELS_GEMM_UKR_H
#define ASINK_KERNELS_GEMM_UKR_H

#include <stddef.h>

#define GEMM_MR 6
#define GEMM_NR (2 * GEMM_VL)

#define GEMM_ROW(i)                        \
  x = GEMM_BCAST(a + (i));                 \
  c##i##0 = GEMM_FMA(x, b0, c##i##0);      \
  c##i##1 = GEMM_FMA(x, b1, c##i##1)

/* C row c[0, n) = alpha (r0, r1) + beta c; beta 0 must not read c: it may hold NaN. */
static inline void gemm_out(float *c, GEMM_V r0, GEMM_V r1, size_t n, GEMM_V va, GEMM_V vb,
                            float beta) {
  r0 = GEMM_MUL(va, r0), r1 = GEMM_MUL(va, r1);
  if (n == GEMM_NR) {
    if (beta != 0.f) {
      r0 = GEMM_FMA(vb, GEMM_LOAD(c), r0);
      r1 = GEMM_FMA(vb, GEMM_LOAD(c + GEMM_VL), r1);
    }
    GEMM_STORE(c, r0);
    GEMM_STORE(c + GEMM_VL, r1);
    return;
  }
  float t[GEMM_NR]; /* an edge tile: only its n columns are C's */
  GEMM_STORE(t, r0);
  GEMM_STORE(t + GEMM_VL, r1);
  for (size_t j = 0; j < n; j++) c[j] = beta == 0.f ? t[j] : beta * c[j] + t[j];
}

/* C's m tile rows, fetched while the products are summed: a tile row can span two lines. */
static inline void gemm_prefetch_c(float *c, size_t ldc, size_t m) {
  for (size_t i = 0; i < m; i++) {
    __builtin_prefetch(c + i * ldc, 1, 3);
    __builtin_prefetch(c + i * ldc + GEMM_NR - 1, 1, 3);
  }
}

/* The tile's accumulators c00 ... c51, two vectors per row of 6, declared zero: the names
 * GEMM_TILE_OUT reads. */
#define GEMM_TILE_ZERO                                                                   \
  GEMM_V c00 = GEMM_ZERO(), c01 = GEMM_ZERO(), c10 = GEMM_ZERO(), c11 = GEMM_ZERO(),   \
         c20 = GEMM_ZERO(), c21 = GEMM_ZERO(), c30 = GEMM_ZERO(), c31 = GEMM_ZERO(),   \
         c40 = GEMM_ZERO(), c41 = GEMM_ZERO(), c50 = GEMM_ZERO(), c51 = GEMM_ZERO()

/* The tile's accumulators c00 ... c51 (in scope where it is used) into C's first m rows,
 * row by row from the registers: an array of them would go through the stack. */
#define GEMM_TILE_OUT(c, ldc, m, n, alpha, beta)                          \
  do {                                                                    \
    const GEMM_V va_ = GEMM_SET1(alpha), vb_ = GEMM_SET1(beta);           \
    if ((m) > 0) gemm_out((c), c00, c01, (n), va_, vb_, (beta));          \
    if ((m) > 1) gemm_out((c) + (ldc), c10, c11, (n), va_, vb_, (beta));  \
    if ((m) > 2) gemm_out((c) + 2 * (ldc), c20, c21, (n), va_, vb_, (beta)); \
    if ((m) > 3) gemm_out((c) + 3 * (ldc), c30, c31, (n), va_, vb_, (beta)); \
    if ((m) > 4) gemm_out((c) + 4 * (ldc), c40, c41, (n), va_, vb_, (beta)); \
    if ((m) > 5) gemm_out((c) + 5 * (ldc), c50, c51, (n), va_, vb_, (beta)); \
  } while (0)

static void gemm_ukr(size_t k, const float *a, const float *b, float *c, size_t ldc, size_t m,
                     size_t n, float alpha, float beta) {
  GEMM_TILE_ZERO;
  gemm_prefetch_c(c, ldc, m);
#pragma GCC unroll 4
  for (size_t p = 0; p < k; p++, a += GEMM_MR, b += GEMM_NR) {
    GEMM_V b0 = GEMM_LOAD(b), b1 = GEMM_LOAD(b + GEMM_VL), x;
    __builtin_prefetch(a + 64, 0, 3); /* a streams from L2; b stays in L1 */
    GEMM_ROW(0);
    GEMM_ROW(1);
    GEMM_ROW(2);
    GEMM_ROW(3);
    GEMM_ROW(4);
    GEMM_ROW(5);
  }
  GEMM_TILE_OUT(c, ldc, m, n, alpha, beta);
}

/* gemm_ukr with a read where it lies, a row-major block of A: a(i, p) = a[i lda + p]. The
 * driver runs it where packing A would cost more than it saves (an A panel used with only
 * a few B panels: the attention's map times its values). Rows past m are not read (row 0
 * is read in their place; their sums are never written). */
#define GEMM_ROW_AT(i, ai)                 \
  x = GEMM_BCAST(ai + p);                  \
  c##i##0 = GEMM_FMA(x, b0, c##i##0);      \
  c##i##1 = GEMM_FMA(x, b1, c##i##1)

static inline void gemm_ukr_rows(size_t k, const float *a, size_t lda, const float *b, float *c,
                                 size_t ldc, size_t m, size_t n, float alpha, float beta) {
  const float *a0 = a, *a1 = m > 1 ? a + lda : a, *a2 = m > 2 ? a + 2 * lda : a,
              *a3 = m > 3 ? a + 3 * lda : a, *a4 = m > 4 ? a + 4 * lda : a,
              *a5 = m > 5 ? a + 5 * lda : a;
  GEMM_TILE_ZERO;
  gemm_prefetch_c(c, ldc, m);
#pragma GCC unroll 4
  for (size_t p = 0; p < k; p++, b += GEMM_NR) {
    GEMM_V b0 = GEMM_LOAD(b), b1 = GEMM_LOAD(b + GEMM_VL), x;
    GEMM_ROW_AT(0, a0);
    GEMM_ROW_AT(1, a1);
    GEMM_ROW_AT(2, a2);
    GEMM_ROW_AT(3, a3);
    GEMM_ROW_AT(4, a4);
    GEMM_ROW_AT(5, a5);
  }
  GEMM_TILE_OUT(c, ldc, m, n, alpha, beta);
}

#undef GEMM_ROW
#undef GEMM_ROW_AT

#endif
