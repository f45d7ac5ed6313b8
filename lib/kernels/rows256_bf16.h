/* The SIMD table's pack_panel_bf16 for the AVX2 and AVX-512 files alike (CPUs without
 * AVX-512 BF16 have no bf16 arithmetic: each value is widened exactly to a float, the upper
 * half of it, and the float code runs; rows256.h has the row products). Included after
 * rows256.h and after the file's own float packing v_pack_panel, which it reuses: its
 * panels are the float packing's of the widened matrix, bit for bit. */
#ifndef ASINK_KERNELS_ROWS256_BF16_H
#define ASINK_KERNELS_ROWS256_BF16_H

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "kernels/kernels.h"

/* dst[0, n) = widened src[0, n) */
static inline void bf16_widen(float *dst, const uint16_t *src, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, bf16x8_load(src + i));
  for (; i < n; i++) dst[i] = asink_bf16_to_f32(src[i]);
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

/* 8 floats rounded to bf16 (nearest even, NaN kept a quiet NaN) and widened back: the
 * lanes of asink_f32_to_bf16 then asink_bf16_to_f32, bit for bit. */
static inline __m256 bf16x8_round(__m256 x) {
  const __m256i u = _mm256_castps_si256(x);
  __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  __m256i r = _mm256_add_epi32(u, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff)));
  __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff)),
                                   _mm256_set1_epi32(0x7f800000));
  r = _mm256_blendv_epi8(r, _mm256_or_si256(u, _mm256_set1_epi32(0x400000)), nan);
  return _mm256_castsi256_ps(_mm256_and_si256(r, _mm256_set1_epi32((int)0xffff0000u)));
}

/* pack_panel_round: the file's float packing, then each value of the fresh panel (still in
 * L1) rounded in place, 8 at a time; zero padding stays zero. One pass of the panel more
 * than a plain pack, and no copy of the operand anywhere. A kernel with bf16 arithmetic
 * (vdpbf16ps) would pack bf16 pairs instead: its own entry and micro-kernel, chosen in
 * core/blas.c where the rounding mode picks this one. */
static void rows256_pack_panel_round(float *dst, const float *src, size_t W, size_t w, size_t k,
                                     size_t s_r, size_t s_p) {
  v_pack_panel(dst, src, W, w, k, s_r, s_p);
  size_t n = W * k, i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, bf16x8_round(_mm256_loadu_ps(dst + i)));
  for (; i < n; i++) dst[i] = asink_bf16_to_f32(asink_f32_to_bf16(dst[i]));
}

#endif
