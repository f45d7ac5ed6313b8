/* 256-bit AVX2+FMA helpers (tail masks, horizontal sums) and the row products over a
 * matrix read once: the SIMD table's dot_rows and axpy_rows, and their bf16 twins (each
 * value widened exactly, the same sums), for the AVX2 and AVX-512 files alike (included by both, compiled under each file's flags; head rows of 16 or 64 fill
 * 256-bit registers as well as 512-bit ones). Sums differ from the scalar table's by
 * rounding order only. */
#ifndef ASINK_KERNELS_ROWS256_H
#define ASINK_KERNELS_ROWS256_H

#include <immintrin.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

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

/* 8 bf16 widened to floats: the 16 bits go to the top of each 32-bit lane. */
static inline __m256 bf16x8_load(const uint16_t *p) {
  __m128i h = _mm_loadu_si128((const __m128i *)p);
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

/* The first n < 8 of them, the other lanes 0 (as a masked float load gives). */
static inline __m256 bf16x8_load_first(const uint16_t *p, size_t n) {
  uint16_t t[8] = {0};
  memcpy(t, p, n * sizeof *t);
  return bf16x8_load(t);
}

/* Entries [i, i + 8) of a matrix row M of floats, or of bf16 widened (half); _part: the
 * first r < 8 of them (mask: rows256_mask(r)), the other lanes 0. */
static inline __m256 rows256_load(const void *M, size_t i, bool half) {
  return half ? bf16x8_load((const uint16_t *)M + i) : _mm256_loadu_ps((const float *)M + i);
}
static inline __m256 rows256_load_part(const void *M, size_t i, size_t r, __m256i mask, bool half) {
  return half ? bf16x8_load_first((const uint16_t *)M + i, r) : _mm256_maskload_ps((const float *)M + i, mask);
}

/* The matrix's entry size: bf16 (half) or float. */
static inline size_t rows256_size(bool half) { return half ? sizeof(uint16_t) : sizeof(float); }

/* y[j] = sum_p x[p] M[j ld + p]; M of floats, or of bf16 (half: the same sums of the widened
 * values, in the same order). Inlined into each entry with half a constant. */
static inline __attribute__((always_inline)) void rows256_dot_rows_of(size_t n, size_t k, const float *x,
                                                                      const void *M, size_t ld, float *y,
                                                                      bool half) {
  const size_t k16 = k & ~(size_t)15, k8 = k & ~(size_t)7;
  const __m256i tail = rows256_mask(k - k8);
  for (size_t j = 0; j < n; j++) {
    const void *m = (const char *)M + j * ld * rows256_size(half);
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    size_t p = 0;
    for (; p < k16; p += 16) {
      a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + p), rows256_load(m, p, half), a0);
      a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + p + 8), rows256_load(m, p + 8, half), a1);
    }
    if (p < k8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + p), rows256_load(m, p, half), a0);
    if (k8 < k)
      a1 = _mm256_fmadd_ps(_mm256_maskload_ps(x + k8, tail), rows256_load_part(m, k8, k - k8, tail, half), a1);
    y[j] = rows256_hsum(_mm256_add_ps(a0, a1));
  }
}

/* y[p] += sum_j a[j] M[j ld + p]: columns in tiles of 32, 8 and a masked rest, each tile
 * summed over every row in registers. M of floats or bf16 (half), as rows256_dot_rows_of. */
static inline __attribute__((always_inline)) void rows256_axpy_rows_of(size_t n, size_t k, const float *a,
                                                                       const void *M, size_t ld, float *y,
                                                                       bool half) {
  const size_t row = ld * rows256_size(half);
  size_t p = 0;
  for (; p + 32 <= k; p += 32) {
    __m256 y0 = _mm256_loadu_ps(y + p), y1 = _mm256_loadu_ps(y + p + 8);
    __m256 y2 = _mm256_loadu_ps(y + p + 16), y3 = _mm256_loadu_ps(y + p + 24);
    for (size_t j = 0; j < n; j++) {
      const __m256 s = _mm256_set1_ps(a[j]);
      const void *m = (const char *)M + j * row;
      y0 = _mm256_fmadd_ps(s, rows256_load(m, p, half), y0);
      y1 = _mm256_fmadd_ps(s, rows256_load(m, p + 8, half), y1);
      y2 = _mm256_fmadd_ps(s, rows256_load(m, p + 16, half), y2);
      y3 = _mm256_fmadd_ps(s, rows256_load(m, p + 24, half), y3);
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
      const void *m = (const char *)M + j * row;
      y0 = _mm256_fmadd_ps(s, rows256_load(m, p, half), y0);
      y1 = _mm256_fmadd_ps(s, rows256_load(m, p + 8, half), y1);
    }
    _mm256_storeu_ps(y + p, y0);
    _mm256_storeu_ps(y + p + 8, y1);
  }
  for (; p < k; p += 8) {
    const size_t r = k - p < 8 ? k - p : 8;
    const __m256i mk = rows256_mask(r);
    const bool full = r == 8;
    __m256 y0 = full ? _mm256_loadu_ps(y + p) : _mm256_maskload_ps(y + p, mk);
    for (size_t j = 0; j < n; j++) {
      const __m256 s = _mm256_set1_ps(a[j]);
      const void *m = (const char *)M + j * row;
      y0 = _mm256_fmadd_ps(s, full ? rows256_load(m, p, half) : rows256_load_part(m, p, r, mk, half), y0);
    }
    if (full) _mm256_storeu_ps(y + p, y0);
    else _mm256_maskstore_ps(y + p, mk, y0);
  }
}

static void rows256_dot_rows(size_t n, size_t k, const float *x, const float *M, size_t ld, float *y) {
  rows256_dot_rows_of(n, k, x, M, ld, y, false);
}
static void rows256_axpy_rows(size_t n, size_t k, const float *a, const float *M, size_t ld, float *y) {
  rows256_axpy_rows_of(n, k, a, M, ld, y, false);
}
static void rows256_dot_rows_bf16(size_t n, size_t k, const float *x, const uint16_t *M, size_t ld,
                                  float *y) {
  rows256_dot_rows_of(n, k, x, M, ld, y, true);
}
static void rows256_axpy_rows_bf16(size_t n, size_t k, const float *a, const uint16_t *M, size_t ld,
                                   float *y) {
  rows256_axpy_rows_of(n, k, a, M, ld, y, true);
}

#endif
