/* gemm_ukr.h at 16 floats a vector, built from pairs of AVX2 vectors: the AVX-512 table's
 * 6 x 32 micro-kernel source run on CPUs without AVX-512 (tests/test_gemm.c), and the fp32
 * half of the bf16 pair kernel's emulation (tests/test_gemm_bf16.c). Include only on
 * x86-64 with GCC-compatible compilers; the code is compiled for AVX2 and FMA, so call it
 * only where asink_cpu_best_isa() >= ASINK_ISA_AVX2. Leaves the AVX2 target on for the
 * includer's emulation code: close it with GEMM_PAIR256_END. */
#ifndef ASINK_TESTS_GEMM_PAIR256_H
#define ASINK_TESTS_GEMM_PAIR256_H

#pragma GCC push_options
#pragma GCC target("avx2,fma")
#include <immintrin.h>
typedef struct {
  __m256 lo, hi;
} pair256;
static inline pair256 pair_load(const float *p) {
  return (pair256){_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8)};
}
static inline void pair_store(float *p, pair256 x) {
  _mm256_storeu_ps(p, x.lo);
  _mm256_storeu_ps(p + 8, x.hi);
}
static inline pair256 pair_set1(float x) { return (pair256){_mm256_set1_ps(x), _mm256_set1_ps(x)}; }
static inline pair256 pair_fma(pair256 a, pair256 b, pair256 c) {
  return (pair256){_mm256_fmadd_ps(a.lo, b.lo, c.lo), _mm256_fmadd_ps(a.hi, b.hi, c.hi)};
}
static inline pair256 pair_mul(pair256 a, pair256 b) {
  return (pair256){_mm256_mul_ps(a.lo, b.lo), _mm256_mul_ps(a.hi, b.hi)};
}
#define GEMM_V pair256
#define GEMM_VL 16
#define GEMM_LOAD(p) pair_load(p)
#define GEMM_STORE(p, x) pair_store(p, x)
#define GEMM_BCAST(p) pair_set1(*(p))
#define GEMM_SET1(x) pair_set1(x)
#define GEMM_FMA(a, b, c) pair_fma(a, b, c)
#define GEMM_MUL(a, b) pair_mul(a, b)
#define GEMM_ZERO() pair_set1(0.f)
#include "kernels/gemm_ukr.h"

#define GEMM_PAIR256_END _Pragma("GCC pop_options")

#endif
