/* The library's one GEMM: row-major sgemm with explicit strides and an explicit
 * thread count, so calls inside our parallel regions stay single-threaded and large
 * projection GEMMs use every thread (docs/performance.md). It runs the SIMD table's
 * micro-kernel and packing, or BLIS's bli_sgemm_ex (the scalar level, ASINK_GEMM=blis). */
#ifndef ASINK_CORE_BLAS_H
#define ASINK_CORE_BLAS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* C[m,n] = alpha * op(A)[m,k] * op(B)[k,n] + beta * C, row-major, lda/ldb/ldc the
 * row strides of the stored matrices (A is stored k x m when transa). */
void asink_sgemm(bool transa, bool transb, int m, int n, int k, float alpha, const float *A,
                 int lda, const float *B, int ldb, float beta, float *C, int ldc, int threads);

/* asink_sgemm (op(A) = A) with B stored in bf16, each value widened exactly to a float:
 * the result is asink_sgemm's on the widened B computed by the same kernels. */
void asink_sgemm_bf16(bool transb, int m, int n, int k, float alpha, const float *A, int lda,
                      const uint16_t *B, int ldb, float beta, float *C, int ldc, int threads);

/* bf16 mixed precision: C = alpha op(A) op(B) + beta C with every value of A and B rounded
 * to bf16 (nearest even) before it is multiplied, products and sums in float. B16 non-NULL
 * gives B in bf16 instead of B (then only widened). The result is asink_sgemm's on the
 * rounded operands computed by the same kernels (bit for bit with the packed driver), at
 * every SIMD level; with the bf16 pair kernel (AVX-512 BF16) the same exact products summed
 * two at a time, bf16 denormals read as zero. */
void asink_sgemm_bf16ops(bool transa, bool transb, int m, int n, int k, float alpha,
                         const float *A, int lda, const float *B, const uint16_t *B16, int ldb,
                         float beta, float *C, int ldc, int threads);

/* Where a product is known to be zero or unwanted (attention tiles, whose maps are
 * zero outside each query's visible keys). Row/column numbers are those of the
 * row-major C; ranges are inclusive [r0, r1], half-open k ranges [*k0, *k1).
 *   krange: the k over which rows r0..r1 of C can have nonzero products; NULL: all.
 *   wanted: false when no entry of C rows r0..r1 x columns c0..c1 is needed; such
 *           entries may then be left unwritten. NULL: all wanted.
 * Work is skipped per micro-tile of the kernel; outside the band the result is
 * what the full product would give only where the skipped products are zero. */
typedef struct asink_gemm_band {
  void (*krange)(const void *ctx, int r0, int r1, int *k0, int *k1);
  bool (*wanted)(const void *ctx, int r0, int r1, int c0, int c1);
  const void *ctx;
} asink_gemm_band;

/* asink_sgemm with a band (NULL: plain). Without the packed driver the band is
 * ignored (everything computed); asink_sgemm_band_skips() says whether it is used. */
void asink_sgemm_band(bool transa, bool transb, int m, int n, int k, float alpha, const float *A,
                      int lda, const float *B, int ldb, float beta, float *C, int ldc, int threads,
                      const asink_gemm_band *band);
bool asink_sgemm_band_skips(void);

/* A B operand packed once for several products that read parts of it: the attention's
 * keys and values, which every block of queries of a head multiplies again (packed once
 * per head instead of once per block: docs/performance.md). Panels in the packed
 * driver's layout, each over the whole k; only that driver reads them, and only in float
 * products (the bf16 ones pack their own). */
typedef struct {
  const float *panels; /* asink_sgemm_pack_b's output */
  int k;               /* the k it was packed over */
  int j0, p0;          /* this product's B starts at column j0 and k step p0 of it; a j0
                          off a panel boundary (the micro-kernel's nr) is not read:
                          the driver packs B as usual */
} asink_gemm_prepacked;

/* Floats asink_sgemm_pack_b writes for n columns over k. */
size_t asink_sgemm_packed_floats(int n, int k);
/* op(B) (k x n; transb as in asink_sgemm) into dst, asink_sgemm_packed_floats(n, k) floats.
 * Only for the packed driver (asink_sgemm_band_skips()). */
void asink_sgemm_pack_b(bool transb, int n, int k, const float *B, int ldb, float *dst);
/* asink_sgemm_band whose B is also given packed (pre, NULL: none): the packed driver reads
 * pre's panels instead of packing B; the other paths read B. Results are the same bits. */
void asink_sgemm_band_pre(bool transa, bool transb, int m, int n, int k, float alpha,
                          const float *A, int lda, const float *B, int ldb, float beta, float *C,
                          int ldc, int threads, const asink_gemm_band *band,
                          const asink_gemm_prepacked *pre);

/* Tests and benchmarks: 1 = the library's packed driver (with the SIMD table in use,
 * scalar included), 0 = BLIS's bli_sgemm_ex, -1 = the default (ASINK_GEMM; auto:
 * packed unless the SIMD level is scalar). */
void asink_sgemm_force_driver(int driver);

/* Tests: the bf16 pair kernel the packed products of asink_sgemm_bf16ops run. use -1: the
 * SIMD table's (kernels.h gemm_bf16; NULL on CPUs without AVX-512 BF16), 0: none (the float
 * kernel on rounded panels), 1: k (an unusable k, e.g. an odd kc, counts as none). */
struct asink_gemm_bf16;
void asink_sgemm_force_bf16_kernel(int use, const struct asink_gemm_bf16 *k);

#endif
