/* The bf16 pair micro-kernel (kernels.h, asink_gemm_bf16) and its packing: the `vdpbf16ps`
 * kernel of bf16 mixed precision. Each k step pair (2q, 2q+1) of an operand is one 32-bit
 * word, the even step's bf16 in the low half and the odd one's in the high half, so one
 * instruction does two multiply-adds per fp32 lane:
 *   acc += a.odd b.odd, rounded to float, then += a.even b.even, rounded again
 * (the order of Intel's pseudo-code for VDPBF16PS; bf16 denormal inputs count as zero and
 * results below FLT_MIN are flushed to zero). The tile is gemm_ukr.h's: 6 rows x 2 vectors
 * of fp32 accumulators, whose epilogue (gemm_out) it shares, so gemm_ukr.h must be included
 * first with the same GEMM_V. Panels:
 *   a: [ceil(k/2)][GEMM_MR] pairs      b: [ceil(k/2)][GEMM_NR] pairs
 * The includer defines, besides gemm_ukr.h's fp32 operations:
 *   GEMM_BF16_P               a vector of GEMM_VL pairs (2 GEMM_VL bf16 values)
 *   GEMM_BF16_LOAD(p)         GEMM_VL pairs from p (uint32_t *), unaligned
 *   GEMM_BF16_BCAST(p)        the pair *p in every lane
 *   GEMM_BF16_DP(acc, x, y)   the dot product of pairs above, per lane
 *   GEMM_BF16_PACK_FLOATS     the file's float pack_panel (kernels.h contract)
 * avx512.c instantiates it with vdpbf16ps; tests/test_gemm_bf16.c with an exact AVX2
 * emulation, which is how the kernel's logic is tested on CPUs without AVX-512 BF16. */
#ifndef ASINK_KERNELS_GEMM_UKR_BF16_H
#define ASINK_KERNELS_GEMM_UKR_BF16_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/kernels.h"

/* Cache blocks in k steps: a bf16 pair is one float's bytes, so kc = 384 steps keeps the
 * kc x nr block of b at the fp32 kernel's 24 KiB of L1 (kc 192) and mc x kc of a at its
 * 288 KiB of L2. kc is even: a block never splits a pair. */
#define GEMM_BF16_MC 384
#define GEMM_BF16_KC 384
#define GEMM_BF16_NC 3072

static inline uint32_t gemm_bf16_pair(uint16_t even, uint16_t odd) {
  return (uint32_t)even | (uint32_t)odd << 16;
}

#define GEMM_BF16_ROW(i)                        \
  x = GEMM_BF16_BCAST(a + (i));                 \
  c##i##0 = GEMM_BF16_DP(c##i##0, x, b0);       \
  c##i##1 = GEMM_BF16_DP(c##i##1, x, b1)

/* C[i ldc + j] = alpha sum_q (a.b pair products) + beta C, i < m, j < n; k2 pairs. */
static void gemm_bf16_ukr(size_t k2, const uint32_t *a, const uint32_t *b, float *c, size_t ldc,
                          size_t m, size_t n, float alpha, float beta) {
  GEMM_TILE_ZERO;
  gemm_prefetch_c(c, ldc, m);
#pragma GCC unroll 4
  for (size_t q = 0; q < k2; q++, a += GEMM_MR, b += GEMM_NR) {
    GEMM_BF16_P b0 = GEMM_BF16_LOAD(b), b1 = GEMM_BF16_LOAD(b + GEMM_VL), x;
    __builtin_prefetch(a + 64, 0, 3);
    GEMM_BF16_ROW(0);
    GEMM_BF16_ROW(1);
    GEMM_BF16_ROW(2);
    GEMM_BF16_ROW(3);
    GEMM_BF16_ROW(4);
    GEMM_BF16_ROW(5);
  }
  GEMM_TILE_OUT(c, ldc, m, n, alpha, beta);
}

#undef GEMM_BF16_ROW

/* Pairs from floats rounded to bf16 (nearest even, asink_f32_to_bf16): a block of k is
 * packed as floats into a buffer in L1 by the file's float packing (which turns a
 * transposed operand in registers), then each two of its rows become one row of pairs. */
static void gemm_bf16_pack_round(uint32_t *dst, const float *src, size_t W, size_t w, size_t k,
                                 size_t s_r, size_t s_p) {
  enum { KB = 64, MAXW = 32 }; /* KB even: a block starts on a pair */
  if (W > MAXW) {
    for (size_t q = 0; q < (k + 1) / 2; q++)
      for (size_t r = 0; r < W; r++) {
        const float *x = src + r * s_r + 2 * q * s_p;
        uint16_t e = r < w ? asink_f32_to_bf16(x[0]) : 0;
        uint16_t o = r < w && 2 * q + 1 < k ? asink_f32_to_bf16(x[s_p]) : 0;
        dst[q * W + r] = gemm_bf16_pair(e, o);
      }
    return;
  }
  float buf[KB * MAXW];
  for (size_t p0 = 0; p0 < k; p0 += KB) {
    size_t kp = k - p0 < KB ? k - p0 : KB;
    GEMM_BF16_PACK_FLOATS(buf, src + p0 * s_p, W, w, kp, s_r, s_p);
    uint32_t *d = dst + p0 / 2 * W;
    for (size_t p = 0; p + 1 < kp; p += 2)
      for (size_t r = 0; r < W; r++)
        d[p / 2 * W + r] = gemm_bf16_pair(asink_f32_to_bf16(buf[p * W + r]),
                                          asink_f32_to_bf16(buf[(p + 1) * W + r]));
    if (kp % 2) /* an odd k: the last pair's odd step is zero */
      for (size_t r = 0; r < W; r++)
        d[kp / 2 * W + r] = gemm_bf16_pair(asink_f32_to_bf16(buf[(kp - 1) * W + r]), 0);
  }
}

/* Pairs from bf16 values (the weights' copies), copied. The loop runs along whichever of
 * r and k is contiguous in src. */
static void gemm_bf16_pack16(uint32_t *dst, const uint16_t *src, size_t W, size_t w, size_t k,
                             size_t s_r, size_t s_p) {
  const size_t k2 = (k + 1) / 2;
  if (s_r == 1) {
    for (size_t q = 0; q < k2; q++) {
      const uint16_t *e = src + 2 * q * s_p, *o = e + s_p;
      bool odd = 2 * q + 1 < k;
      for (size_t r = 0; r < W; r++)
        dst[q * W + r] = r < w ? gemm_bf16_pair(e[r], odd ? o[r] : 0) : 0;
    }
    return;
  }
  for (size_t r = 0; r < W; r++) {
    const uint16_t *x = src + r * s_r;
    for (size_t q = 0; q < k2; q++)
      dst[q * W + r] = r < w ? gemm_bf16_pair(x[2 * q * s_p], 2 * q + 1 < k ? x[(2 * q + 1) * s_p] : 0) : 0;
  }
}

#endif
