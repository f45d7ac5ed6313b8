/* bf16 matrices on 256-bit AVX2+FMA registers: the SIMD table's pack_panel_bf16,
 * dot_rows_bf16 and axpy_rows_bf16 for the AVX2 and AVX-512 files alike (CPUs without
 * AVX-512 BF16 have no bf16 arithmetic: each value is widened exactly to a float, the
 * upper half of it, and the float code runs). Included after rows256.h and after the
 * file's own float packing v_pack_panel, which the bf16 packing reuses: each routine
 * gives the float routine's result on the widened matrix, bit for bit. */
#ifndef ASINK_KERNELS_ROWS256_BF16_H
#define ASINK_KERNELS_ROWS256_BF16_H

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "kernels/kernels.h"

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

/* dst[0, n) = widened src[0, n) */
static inline void bf16_widen(float *dst, const uint16_t *src, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, bf16x8_load(src + i));
  for (; i < n; i++) dst[i] = asink_bf16_to_f32(src[i]);
}

/* rows256_dot_rows with M in bf16 (the same sums in the same order) */
static void rows256_dot_rows_bf16(size_t n, size_t k, const float *x, const uint16_t *M, size_t ld,
                                  float *y) {
  const size_t k16 = k & ~(size_t)15, k8 = k & ~(size_t)7;
  const __m256i tail = rows256_mask(k - k8);
  for (size_t j = 0; j < n; j++) {
    const uint16_t *m = M + j * ld;
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    size_t p = 0;
    for (; p < k16; p += 16) {
      a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + p), bf16x8_load(m + p), a0);
      a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + p + 8), bf16x8_load(m + p + 8), a1);
    }
    if (p < k8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + p), bf16x8_load(m + p), a0);
    if (k8 < k)
      a1 = _mm256_fmadd_ps(_mm256_maskload_ps(x + k8, tail), bf16x8_load_first(m + k8, k - k8), a1);
    y[j] = rows256_hsum(_mm256_add_ps(a0, a1));
  }
}

/* rows256_axpy_rows with M in bf16 */
static void rows256_axpy_rows_bf16(size_t n, size_t k, const float *a, const uint16_t *M, size_t ld,
                                   float *y) {
  size_t p = 0;
  for (; p + 32 <= k; p += 32) {
    __m256 y0 = _mm256_loadu_ps(y + p), y1 = _mm256_loadu_ps(y + p + 8);
    __m256 y2 = _mm256_loadu_ps(y + p + 16), y3 = _mm256_loadu_ps(y + p + 24);
    for (size_t j = 0; j < n; j++) {
      const __m256 s = _mm256_set1_ps(a[j]);
      const uint16_t *m = M + j * ld + p;
      y0 = _mm256_fmadd_ps(s, bf16x8_load(m), y0);
      y1 = _mm256_fmadd_ps(s, bf16x8_load(m + 8), y1);
      y2 = _mm256_fmadd_ps(s, bf16x8_load(m + 16), y2);
      y3 = _mm256_fmadd_ps(s, bf16x8_load(m + 24), y3);
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
      y0 = _mm256_fmadd_ps(s, bf16x8_load(M + j * ld + p), y0);
      y1 = _mm256_fmadd_ps(s, bf16x8_load(M + j * ld + p + 8), y1);
    }
    _mm256_storeu_ps(y + p, y0);
    _mm256_storeu_ps(y + p + 8, y1);
  }
  for (; p < k; p += 8) {
    const size_t np = k - p < 8 ? k - p : 8;
    const __m256i mk = rows256_mask(np);
    const bool full = np == 8;
    __m256 y0 = full ? _mm256_loadu_ps(y + p) : _mm256_maskload_ps(y + p, mk);
    for (size_t j = 0; j < n; j++) {
      const __m256 s = _mm256_set1_ps(a[j]);
      const uint16_t *m = M + j * ld + p;
      y0 = _mm256_fmadd_ps(s, full ? bf16x8_load(m) : bf16x8_load_first(m, np), y0);
    }
    if (full) _mm256_storeu_ps(y + p, y0);
    else _mm256_maskstore_ps(y + p, mk, y0);
  }
}

/* pack_panel with src in bf16. An operand read along its panel width (GPT-2's (in, out)
 * weights) is widened straight into the panel; one read along k (nn.Linear's (out, in)
 * weights) is widened a block of k at a time into a small buffer that the float packing
 * then turns in registers. */
static void rows256_pack_panel_bf16(float *dst, const uint16_t *src, size_t W, size_t w, size_t k,
                                    size_t s_r, size_t s_p) {
  enum { KB = 64, MAXW = 32 };
  if (s_r == 1) {
    for (size_t p = 0; p < k; p++)
      for (size_t g = 0; g < W; g += 8) {
        size_t have = w > g ? (w - g < 8 ? w - g : 8) : 0, out = W - g < 8 ? W - g : 8;
        float v[8];
        _mm256_storeu_ps(v, have == 8 ? bf16x8_load(src + p * s_p + g)
                                      : bf16x8_load_first(src + p * s_p + g, have));
        memcpy(dst + p * W + g, v, out * sizeof(float));
      }
    return;
  }
  if (s_p != 1 || W > MAXW) {
    asink_kernels_scalar.pack_panel_bf16(dst, src, W, w, k, s_r, s_p);
    return;
  }
  float buf[MAXW * KB];
  for (size_t p0 = 0; p0 < k; p0 += KB) {
    size_t kp = k - p0 < KB ? k - p0 : KB;
    for (size_t r = 0; r < w; r++) bf16_widen(buf + r * KB, src + r * s_r + p0, kp);
    v_pack_panel(dst + p0 * W, buf, W, w, kp, KB, 1);
  }
}

#endif
