/* 256-bit AVX2+FMA helpers (tail masks, horizontal sums) and the row products over a
 * matrix read once: the SIMD table's dot_rows and axpy_rows for the AVX2 and AVX-512 files
 * alike (included by both, compiled under each file's flags; head rows of 16 or 64 fill
 * 256-bit registers as well as 512-bit ones). Sums differ from the scalar table's by
 * rounding order only. */
#ifndef ASINK_KERNELS_ROWS256_H
#define ASINK_KERNELS_ROWS256_H

#include <immintrin.h>
#include <stdbool.h>
#include <stddef.h>

/* Lanes [0, r) set, for 0 < r < 8. */
static inline __m256i rows256_mask(size_t r) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)r), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

static inline float rows256_hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

/* y[j] = sum_p x[p] M[j ld + p] */
static void rows256_dot_rows(size_t n, size_t k, const float *x, const float *M, size_t ld, float *y) {
  const size_t k16 = k & ~(size_t)15, k8 = k & ~(size_t)7;
  const __m256i tail = rows256_mask(k - k8);
  for (size_t j = 0; j < n; j++) {
    const float *m = M + j * ld;
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    size_t p = 0;
    for (; p < k16; p += 16) {
      a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + p), _mm256_loadu_ps(m + p), a0);
      a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + p + 8), _mm256_loadu_ps(m + p + 8), a1);
    }
    if (p < k8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + p), _mm256_loadu_ps(m + p), a0);
    if (k8 < k)
      a1 = _mm256_fmadd_ps(_mm256_maskload_ps(x + k8, tail), _mm256_maskload_ps(m + k8, tail), a1);
    y[j] = rows256_hsum(_mm256_add_ps(a0, a1));
  }
}

/* y[p] += sum_j a[j] M[j ld + p]: columns in tiles of 32, 8 and a masked rest, each tile
 * summed over every row in registers. */
static void rows256_axpy_rows(size_t n, size_t k, const float *a, const float *M, size_t ld, float *y) {
  size_t p = 0;
  for (; p + 32 <= k; p += 32) {
    __m256 y0 = _mm256_loadu_ps(y + p), y1 = _mm256_loadu_ps(y + p + 8);
    __m256 y2 = _mm256_loadu_ps(y + p + 16), y3 = _mm256_loadu_ps(y + p + 24);
    for (size_t j = 0; j < n; j++) {
      const __m256 s = _mm256_set1_ps(a[j]);
      const float *m = M + j * ld + p;
      y0 = _mm256_fmadd_ps(s, _mm256_loadu_ps(m), y0);
      y1 = _mm256_fmadd_ps(s, _mm256_loadu_ps(m + 8), y1);
      y2 = _mm256_fmadd_ps(s, _mm256_loadu_ps(m + 16), y2);
      y3 = _mm256_fmadd_ps(s, _mm256_loadu_ps(m + 24), y3);
    }
    _mm256_storeu_ps(y + p, y0);
    _mm256_storeu_ps(y + p + 8, y1);
    _mm256_storeu_ps(y + p + 16, y2);
    _mm256_storeu_ps(y + p + 24, y3);
  }
  for (; p + 16 <= k; p += 16) {
    __m256 y0 = _mm256_loadu_ps(y + p), y1 = _mm256_loadu_ps(y + p + 8);
    for (size_t j = 0; j < n; j++) {
      const __m256 s = _mm256_set1_ps(a[j]);
      y0 = _mm256_fmadd_ps(s, _mm256_loadu_ps(M + j * ld + p), y0);
      y1 = _mm256_fmadd_ps(s, _mm256_loadu_ps(M + j * ld + p + 8), y1);
    }
    _mm256_storeu_ps(y + p, y0);
    _mm256_storeu_ps(y + p + 8, y1);
  }
  for (; p < k; p += 8) {
    const __m256i mk = rows256_mask(k - p < 8 ? k - p : 8);
    const bool full = k - p >= 8;
    __m256 y0 = full ? _mm256_loadu_ps(y + p) : _mm256_maskload_ps(y + p, mk);
    for (size_t j = 0; j < n; j++) {
      const __m256 s = _mm256_set1_ps(a[j]);
      const float *m = M + j * ld + p;
      y0 = _mm256_fmadd_ps(s, full ? _mm256_loadu_ps(m) : _mm256_maskload_ps(m, mk), y0);
    }
    if (full) _mm256_storeu_ps(y + p, y0);
    else _mm256_maskstore_ps(y + p, mk, y0);
  }
}

#endif
