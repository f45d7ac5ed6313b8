/* The library's one door to BLIS: row-major sgemm with explicit strides and an
 * explicit thread count, so calls inside our parallel regions stay single-threaded
 * and large projection GEMMs use every thread (DESIGN §7). */
#ifndef ASINK_CORE_BLAS_H
#define ASINK_CORE_BLAS_H

#include <stdbool.h>

/* C[m,n] = alpha * op(A)[m,k] * op(B)[k,n] + beta * C, row-major, lda/ldb/ldc the
 * row strides of the stored matrices (A is stored k x m when transa). */
void asink_sgemm(bool transa, bool transb, int m, int n, int k, float alpha, const float *A,
                 int lda, const float *B, int ldb, float beta, float *C, int ldc, int threads);

/* Tests and benchmarks: 1 = the library's packed driver, 0 = BLIS's bli_sgemm_ex,
 * -1 = the default (packed where the SIMD table packs, unless ASINK_GEMM=blis). */
void asink_sgemm_force_driver(int driver);

#endif
