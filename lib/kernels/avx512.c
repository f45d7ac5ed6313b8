/* AVX-512 kernels (F, DQ, BW, VL): 16 lanes, tails through masked loads and stores.
 * Same numerics as avx2.c: the linear maps use the scalar file's operation order (no
 * FMA contraction) and match it bit for bit; reductions keep four accumulators. */
#include "kernels/kernels.h"

#ifdef ASINK_HAVE_ISA

#include <immintrin.h>
#include <math.h>

#include "kernels/exp_poly.h"
#include "kernels/rows256.h"

static inline __m512 exp16(__m512 x) {
  const __m512 magic = _mm512_set1_ps(EXP_MAGIC);
  __m512 t = _mm512_fmadd_ps(x, _mm512_set1_ps(EXP_LOG2E), magic);
  __m512 n = _mm512_sub_ps(t, magic);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(EXP_LN2_HI), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(EXP_LN2_LO), r);
  __m512 p = _mm512_set1_ps(EXP_C6);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(EXP_C5));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(EXP_C4));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(EXP_C3));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(EXP_C2));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
  /* Ordered compares: NaN lanes fail both and are rebuilt by the masked multiply. */
  __mmask16 fin = _mm512_cmp_ps_mask(x, _mm512_set1_ps(EXP_HI), _CMP_LE_OQ);
  __mmask16 ok = _mm512_mask_cmp_ps_mask(fin, x, _mm512_set1_ps(EXP_LO), _CMP_GE_OQ);
  /* 2^n by adding n to p's exponent field: n sits in t's low bits. */
  __m512i e = _mm512_maskz_add_epi32(ok, _mm512_castps_si512(p),
                                     _mm512_slli_epi32(_mm512_castps_si512(t), 23));
  return _mm512_mask_mul_ps(_mm512_castsi512_ps(e), (__mmask16)~fin, x, _mm512_set1_ps(INFINITY));
}

/* Lanes [0, r) set, for 0 < r < 16. */
static inline __mmask16 tail_mask(size_t r) { return (__mmask16)((1u << r) - 1u); }

static float v_max(size_t n, const float *x) {
  const __m512 ninf = _mm512_set1_ps(-INFINITY);
  __m512 m0 = ninf, m1 = ninf, m2 = ninf, m3 = ninf;
  __mmask16 bad = 0; /* lanes that met a NaN */
  size_t i = 0;
  for (; i + 64 <= n; i += 64) {
    __m512 a = _mm512_loadu_ps(x + i), b = _mm512_loadu_ps(x + i + 16);
    __m512 c = _mm512_loadu_ps(x + i + 32), d = _mm512_loadu_ps(x + i + 48);
    /* one unordered compare checks two vectors */
    bad |= _mm512_cmp_ps_mask(a, b, _CMP_UNORD_Q) | _mm512_cmp_ps_mask(c, d, _CMP_UNORD_Q);
    m0 = _mm512_max_ps(m0, a);
    m1 = _mm512_max_ps(m1, b);
    m2 = _mm512_max_ps(m2, c);
    m3 = _mm512_max_ps(m3, d);
  }
  for (; i + 16 <= n; i += 16) {
    __m512 a = _mm512_loadu_ps(x + i);
    bad |= _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q);
    m0 = _mm512_max_ps(m0, a);
  }
  if (i < n) {
    __m512 a = _mm512_mask_loadu_ps(ninf, tail_mask(n - i), x + i);
    bad |= _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q);
    m0 = _mm512_max_ps(m0, a);
  }
  if (bad) return NAN;
  return _mm512_reduce_max_ps(_mm512_max_ps(_mm512_max_ps(m0, m1), _mm512_max_ps(m2, m3)));
}

/* Four-accumulator reduction: STEP(s, j, L) adds the terms at offset j to s, reading
 * through L, which is a plain load in the body and a zero-filling masked load (mask k)
 * in the tail. */
#define REDUCE4(n, STEP)                                                       \
  __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;                  \
  size_t i = 0;                                                                \
  for (; i + 64 <= (n); i += 64) {                                             \
    s0 = STEP(s0, i, LOAD);                                                    \
    s1 = STEP(s1, i + 16, LOAD);                                               \
    s2 = STEP(s2, i + 32, LOAD);                                               \
    s3 = STEP(s3, i + 48, LOAD);                                               \
  }                                                                            \
  for (; i + 16 <= (n); i += 16) s0 = STEP(s0, i, LOAD);                       \
  if (i < (n)) {                                                               \
    __mmask16 k = tail_mask((n) - i);                                          \
    s1 = STEP(s1, i, TAIL);                                                    \
  }                                                                            \
  return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)))

#define LOAD(p) _mm512_loadu_ps(p)
#define TAIL(p) _mm512_maskz_loadu_ps(k, p)

#define SUM_STEP(s, j, L) _mm512_add_ps(s, L(x + (j)))
static float v_sum(size_t n, const float *x) { REDUCE4(n, SUM_STEP); }

#define ABS_STEP(s, j, L) _mm512_add_ps(s, _mm512_abs_ps(L(x + (j))))
static float v_abs_sum(size_t n, const float *x) { REDUCE4(n, ABS_STEP); }

#define DOT_STEP(s, j, L) _mm512_fmadd_ps(L(x + (j)), L(y + (j)), s)
static float v_dot(size_t n, const float *x, const float *y) { REDUCE4(n, DOT_STEP); }

#undef LOAD
#undef TAIL

/* In-place elementwise map: V is the new value of the 16 lanes v at offset j. */
#define MAP(n, x, V)                                                           \
  do {                                                                         \
    size_t i = 0;                                                              \
    for (; i + 16 <= (n); i += 16) {                                           \
      const size_t j = i;                                                      \
      __m512 v = _mm512_loadu_ps((x) + j);                                     \
      _mm512_storeu_ps((x) + j, V);                                            \
    }                                                                          \
    if (i < (n)) {                                                             \
      const size_t j = i;                                                      \
      __mmask16 k = tail_mask((n) - j);                                        \
      __m512 v = _mm512_maskz_loadu_ps(k, (x) + j);                            \
      _mm512_mask_storeu_ps((x) + j, k, V);                                    \
    }                                                                          \
  } while (0)

/* Second operand of a map at offset j: a plain load in the body, a masked one in the
 * tail (the test folds away once inlined into MAP). */
static inline __m512 ld2(const float *p, size_t j, size_t n) {
  if (j + 16 <= n) return _mm512_loadu_ps(p + j);
  return _mm512_maskz_loadu_ps(tail_mask(n - j), p + j);
}

static void v_scale(size_t n, float *x, float a) {
  const __m512 va = _mm512_set1_ps(a);
  MAP(n, x, _mm512_mul_ps(v, va));
}

static void v_axpy(size_t n, float a, const float *x, float *y) {
  const __m512 va = _mm512_set1_ps(a);
  MAP(n, y, _mm512_add_ps(v, _mm512_mul_ps(va, ld2(x, j, n))));
}

static void v_add_ramp(size_t n, float *x, float a, float offset) {
  /* (float)i through a 32-bit lane index; the rare rest past 2^30 goes scalar. */
  const size_t nv = n < ((size_t)1 << 30) ? n : ((size_t)1 << 30);
  const __m512 va = _mm512_set1_ps(a), vo = _mm512_set1_ps(offset);
  const __m512i lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  MAP(nv, x,
      _mm512_add_ps(v, _mm512_mul_ps(va, _mm512_add_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(
                                                            _mm512_set1_epi32((int)j), lanes)),
                                                        vo))));
  for (size_t i = nv; i < n; i++) x[i] += a * ((float)i + offset);
}

static void v_add_const(size_t n, float *x, float c) {
  const __m512 vc = _mm512_set1_ps(c);
  MAP(n, x, _mm512_add_ps(v, vc));
}

/* exp_shift_sum with or without the dot of the results with the inputs; inlined
 * into both entry points, so the sum takes the same path in each. */
static inline __attribute__((always_inline)) float exp_sum_core(size_t n, float *x, float shift,
                                                                float *xdot) {
  const __m512 vs = _mm512_set1_ps(shift);
  __m512 s0 = _mm512_setzero_ps(), s1 = s0, d0 = s0, d1 = s0;
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    __m512 x0 = _mm512_loadu_ps(x + i), x1 = _mm512_loadu_ps(x + i + 16);
    __m512 e0 = exp16(_mm512_sub_ps(x0, vs));
    __m512 e1 = exp16(_mm512_sub_ps(x1, vs));
    _mm512_storeu_ps(x + i, e0);
    _mm512_storeu_ps(x + i + 16, e1);
    s0 = _mm512_add_ps(s0, e0);
    s1 = _mm512_add_ps(s1, e1);
    if (xdot) d0 = _mm512_fmadd_ps(e0, x0, d0), d1 = _mm512_fmadd_ps(e1, x1, d1);
  }
  for (; i + 16 <= n; i += 16) {
    __m512 x0 = _mm512_loadu_ps(x + i);
    __m512 e = exp16(_mm512_sub_ps(x0, vs));
    _mm512_storeu_ps(x + i, e);
    s0 = _mm512_add_ps(s0, e);
    if (xdot) d0 = _mm512_fmadd_ps(e, x0, d0);
  }
  if (i < n) {
    __mmask16 k = tail_mask(n - i);
    __m512 x0 = _mm512_maskz_loadu_ps(k, x + i);
    __m512 e = exp16(_mm512_sub_ps(x0, vs));
    _mm512_mask_storeu_ps(x + i, k, e);
    s1 = _mm512_mask_add_ps(s1, k, s1, e);
    if (xdot) d1 = _mm512_mask3_fmadd_ps(e, x0, d1, k);
  }
  if (xdot) *xdot = _mm512_reduce_add_ps(_mm512_add_ps(d0, d1));
  return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

static float v_exp_shift_sum(size_t n, float *x, float shift) { return exp_sum_core(n, x, shift, NULL); }

static float v_exp_shift_sum_dot(size_t n, float *x, float shift, float *xdot) {
  return exp_sum_core(n, x, shift, xdot);
}

static void v_exp_shift(size_t n, float *x, float shift) {
  const __m512 vs = _mm512_set1_ps(shift);
  MAP(n, x, exp16(_mm512_sub_ps(v, vs)));
}

/* With e = exp(-|x|) in [0, 1], 1/(1+e) for x >= 0 and e/(1+e) for x < 0: exp never
 * overflows, so sigmoid(+-100) is 1 and ~0 with no inf/inf, and the divisor lies in
 * [1, 2], where rcp14 plus one Newton step on the quotient is as good as a division
 * at a fraction of vdivps's cost. */
/* e = exp(-|x|) with the argument clamped at -86 (e stays a normal float, so nothing
 * below meets a denormal; sigmoid(x < -86) comes out ~4e-38 instead of smaller) and
 * 2^n applied by vscalefps, which passes NaN through: no range masks. Then
 * sigmoid = (x < 0 ? e : 1) / (1 + e) by rcp14 and one Newton step. */
static inline __m512 sigmoid16(__m512 x) {
  const __m512 one = _mm512_set1_ps(1.f), magic = _mm512_set1_ps(EXP_MAGIC);
  __m512 a = _mm512_max_ps(_mm512_set1_ps(-86.f), _mm512_or_ps(x, _mm512_set1_ps(-0.f)));
  __m512 n = _mm512_sub_ps(_mm512_fmadd_ps(a, _mm512_set1_ps(EXP_LOG2E), magic), magic);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(EXP_LN2_HI), a);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(EXP_LN2_LO), r);
  __m512 p = _mm512_set1_ps(EXP_C6);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(EXP_C5));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(EXP_C4));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(EXP_C3));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(EXP_C2));
  p = _mm512_fmadd_ps(p, r, one);
  p = _mm512_fmadd_ps(p, r, one);
  __m512 e = _mm512_scalef_ps(p, n);
  __m512 num = _mm512_mask_blend_ps(_mm512_movepi32_mask(_mm512_castps_si512(x)), one, e);
  __m512 d = _mm512_add_ps(one, e);
  __m512 q0 = _mm512_rcp14_ps(d);
  __m512 q = _mm512_mul_ps(num, q0);
  return _mm512_fmadd_ps(_mm512_fnmadd_ps(d, q, num), q0, q);
}

static void v_sigmoid(size_t n, float *x) { MAP(n, x, sigmoid16(v)); }

static inline __m512 elu1_16(__m512 x) {
  __mmask16 pos = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_GT_OQ);
  return _mm512_mask_add_ps(exp16(x), pos, x, _mm512_set1_ps(1.f));
}

static void v_elu1(size_t n, float *x) { MAP(n, x, elu1_16(v)); }

static void v_softmax_bwd(size_t n, float *dp, const float *a, float c, float m) {
  const __m512 vc = _mm512_set1_ps(c), vm = _mm512_set1_ps(m);
  MAP(n, dp, _mm512_mul_ps(_mm512_mul_ps(vm, ld2(a, j, n)), _mm512_sub_ps(v, vc)));
}

static inline __m512 sigmoid_bwd16(__m512 g, __m512 a, __m512 vc, __m512 vm) {
  __m512 t = _mm512_mul_ps(_mm512_mul_ps(vm, _mm512_sub_ps(g, vc)), a);
  return _mm512_mul_ps(t, _mm512_sub_ps(_mm512_set1_ps(1.f), a));
}

static void v_sigmoid_bwd(size_t n, float *dp, const float *a, float c, float m) {
  const __m512 vc = _mm512_set1_ps(c), vm = _mm512_set1_ps(m);
  MAP(n, dp, sigmoid_bwd16(v, ld2(a, j, n), vc, vm));
}

static inline __m512 elu1_bwd16(__m512 g, __m512 a, __m512 vc, __m512 vm) {
  const __m512 one = _mm512_set1_ps(1.f);
  __m512 d = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a, one, _CMP_GT_OQ), a, one);
  return _mm512_mul_ps(_mm512_mul_ps(vm, _mm512_sub_ps(g, vc)), d);
}

static void v_elu1_bwd(size_t n, float *dp, const float *a, float c, float m) {
  const __m512 vc = _mm512_set1_ps(c), vm = _mm512_set1_ps(m);
  MAP(n, dp, elu1_bwd16(v, ld2(a, j, n), vc, vm));
}

static void v_shift_scale(size_t n, float *dp, float c, float m) {
  const __m512 vc = _mm512_set1_ps(c), vm = _mm512_set1_ps(m);
  MAP(n, dp, _mm512_mul_ps(vm, _mm512_sub_ps(v, vc)));
}

/* The model's row loops. ROW runs its body on the 16 lanes at offset j, reading
 * through ld2 and writing through st2: plain in the loop, masked in the tail (the
 * tests fold away once inlined). Separate mul and add, no FMA: the scalar rounding,
 * bit for bit. */
#define ROW(n, ...)                                                            \
  do {                                                                         \
    size_t j = 0;                                                              \
    for (; j + 16 <= (n); j += 16) { __VA_ARGS__; }                            \
    if (j < (n)) { __VA_ARGS__; }                                              \
  } while (0)

static inline void st2(float *p, size_t j, size_t n, __m512 v) {
  if (j + 16 <= n) _mm512_storeu_ps(p + j, v);
  else _mm512_mask_storeu_ps(p + j, tail_mask(n - j), v);
}

static void v_rms_scale(size_t n, float *y, const float *x, const float *w, float r) {
  const __m512 vr = _mm512_set1_ps(r);
  ROW(n, st2(y, j, n, _mm512_mul_ps(_mm512_mul_ps(ld2(x, j, n), vr), ld2(w, j, n))));
}

static void v_rms_bwd_terms(size_t n, float *g, float *pdw, const float *dy, const float *x,
                            const float *w, float r) {
  const __m512 vr = _mm512_set1_ps(r);
  ROW(n, {
    __m512 d = ld2(dy, j, n);
    st2(g, j, n, _mm512_mul_ps(d, ld2(w, j, n)));
    st2(pdw, j, n, _mm512_add_ps(ld2(pdw, j, n), _mm512_mul_ps(_mm512_mul_ps(d, ld2(x, j, n)), vr)));
  });
}

static void v_rms_bwd_dx(size_t n, float *dx, const float *g, const float *x, float r, float k) {
  const __m512 vr = _mm512_set1_ps(r), vk = _mm512_set1_ps(k);
  MAP(n, dx, _mm512_add_ps(v, _mm512_sub_ps(_mm512_mul_ps(ld2(g, j, n), vr),
                                            _mm512_mul_ps(ld2(x, j, n), vk))));
}

static void v_rope_rotate(size_t h, float *v, const float *c, const float *s, float sign) {
  const __m512 vs = _mm512_set1_ps(sign);
  float *v2 = v + h;
  ROW(h, {
    __m512 a = ld2(v, j, h), b = ld2(v2, j, h), cj = ld2(c, j, h);
    __m512 si = _mm512_mul_ps(vs, ld2(s, j, h));
    st2(v, j, h, _mm512_sub_ps(_mm512_mul_ps(a, cj), _mm512_mul_ps(b, si)));
    st2(v2, j, h, _mm512_add_ps(_mm512_mul_ps(b, cj), _mm512_mul_ps(a, si)));
  });
}

static void v_silu_gate(size_t n, float *h, const float *g, const float *u) {
  if (u) MAP(n, h, _mm512_mul_ps(v, _mm512_mul_ps(ld2(g, j, n), ld2(u, j, n))));
  else MAP(n, h, _mm512_mul_ps(v, ld2(g, j, n)));
}

/* d = s * (1 + g * (1 - s)) for s = sigmoid(g) */
static inline __m512 silu_d16(__m512 s, __m512 g) {
  const __m512 one = _mm512_set1_ps(1.f);
  return _mm512_mul_ps(s, _mm512_add_ps(one, _mm512_mul_ps(g, _mm512_sub_ps(one, s))));
}

static void v_silu_bwd(size_t n, float *dg, float *du, const float *dh, const float *g,
                       const float *u) {
  if (u)
    ROW(n, {
      __m512 s = ld2(dg, j, n), gj = ld2(g, j, n), d = ld2(dh, j, n);
      st2(du, j, n, _mm512_mul_ps(_mm512_mul_ps(d, gj), s));
      st2(dg, j, n, _mm512_mul_ps(_mm512_mul_ps(d, silu_d16(s, gj)), ld2(u, j, n)));
    });
  else
    MAP(n, dg, _mm512_mul_ps(ld2(dh, j, n), silu_d16(v, ld2(g, j, n))));
}

/* Lanes [0, r) set, for 0 <= r <= 16. */
static inline __mmask16 lanes(size_t r) { return (__mmask16)((1u << (r < 16 ? r : 16)) - 1u); }

static inline size_t min16(size_t a) { return a < 16 ? a : 16; }

/* In-register 16x16 transpose: on return x[q] lane r holds what x[r] lane q held. */
static inline void transpose16(__m512 x[16]) {
  __m512 a[16];
  for (int i = 0; i < 8; i++) {
    a[2 * i] = _mm512_unpacklo_ps(x[2 * i], x[2 * i + 1]);
    a[2 * i + 1] = _mm512_unpackhi_ps(x[2 * i], x[2 * i + 1]);
  }
  /* b[4g + c], 128-bit lane L: column 4L + c of rows 4g .. 4g+3. */
  __m512 b[16];
  for (int g = 0; g < 4; g++) {
    __m512d a0 = _mm512_castps_pd(a[4 * g]), a1 = _mm512_castps_pd(a[4 * g + 1]);
    __m512d a2 = _mm512_castps_pd(a[4 * g + 2]), a3 = _mm512_castps_pd(a[4 * g + 3]);
    b[4 * g + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(a0, a2));
    b[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a0, a2));
    b[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(a1, a3));
    b[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(a1, a3));
  }
  /* A 4x4 transpose of 128-bit lanes across b[c], b[4+c], b[8+c], b[12+c]. */
  for (int c = 0; c < 4; c++) {
    __m512 t0 = _mm512_shuffle_f32x4(b[c], b[4 + c], 0x44);
    __m512 t1 = _mm512_shuffle_f32x4(b[c], b[4 + c], 0xEE);
    __m512 t2 = _mm512_shuffle_f32x4(b[8 + c], b[12 + c], 0x44);
    __m512 t3 = _mm512_shuffle_f32x4(b[8 + c], b[12 + c], 0xEE);
    x[c] = _mm512_shuffle_f32x4(t0, t2, 0x88);
    x[4 + c] = _mm512_shuffle_f32x4(t0, t2, 0xDD);
    x[8 + c] = _mm512_shuffle_f32x4(t1, t3, 0x88);
    x[12 + c] = _mm512_shuffle_f32x4(t1, t3, 0xDD);
  }
}

/* BLIS 0.9's own packing of a row-major operand read across its rows is a scalar
 * gather (vmovss/vinsertps); here 16 rows are read along k and turned in registers. */
static void v_pack_panel(float *dst, const float *src, size_t W, size_t w, size_t k, size_t s_r,
                         size_t s_p) {
  if (s_r == 1) {
    for (size_t p = 0; p < k; p++)
      for (size_t g = 0; g < W; g += 16) {
        _mm_prefetch((const char *)(src + (p + 16) * s_p + g), _MM_HINT_T0);
        __m512 x = _mm512_maskz_loadu_ps(lanes(w > g ? w - g : 0), src + p * s_p + g);
        _mm512_mask_storeu_ps(dst + p * W + g, lanes(W - g), x);
      }
    return;
  }
  if (s_p != 1) { /* neither stride is 1: not a row-major operand */
    asink_kernels_scalar.pack_panel(dst, src, W, w, k, s_r, s_p);
    return;
  }
  for (size_t g = 0; g < W; g += 16) {
    size_t rows = w > g ? min16(w - g) : 0;
    __mmask16 out = lanes(W - g);
    for (size_t p = 0; p < k; p += 16) {
      size_t kp = min16(k - p);
      __m512 x[16];
      for (size_t r = 0; r < 16; r++)
        x[r] = r < rows ? _mm512_maskz_loadu_ps(lanes(kp), src + (g + r) * s_r + p)
                        : _mm512_setzero_ps();
      transpose16(x);
      for (size_t q = 0; q < kp; q++) _mm512_mask_storeu_ps(dst + (p + q) * W + g, out, x[q]);
    }
  }
}

#include "kernels/rows256_bf16.h"

#define GEMM_V __m512
#define GEMM_VL 16
#define GEMM_LOAD(p) _mm512_loadu_ps(p)
#define GEMM_STORE(p, x) _mm512_storeu_ps(p, x)
#define GEMM_BCAST(p) _mm512_set1_ps(*(p))
#define GEMM_SET1(x) _mm512_set1_ps(x)
#define GEMM_FMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define GEMM_MUL(a, b) _mm512_mul_ps(a, b)
#define GEMM_ZERO() _mm512_setzero_ps()
#include "kernels/gemm_ukr.h"

/* Both AVX-512 tables: the plain one and the one with the bf16 pair kernel. */
#define AVX512_ENTRIES \
    .name = "avx512", \
    .max = v_max, \
    .sum = v_sum, \
    .abs_sum = v_abs_sum, \
    .dot = v_dot, \
    .scale = v_scale, \
    .axpy = v_axpy, \
    .add_ramp = v_add_ramp, \
    .add_const = v_add_const, \
    .exp_shift_sum = v_exp_shift_sum, \
    .exp_shift_sum_dot = v_exp_shift_sum_dot, \
    .exp_shift = v_exp_shift, \
    .sigmoid = v_sigmoid, \
    .elu1 = v_elu1, \
    .softmax_bwd = v_softmax_bwd, \
    .sigmoid_bwd = v_sigmoid_bwd, \
    .elu1_bwd = v_elu1_bwd, \
    .shift_scale = v_shift_scale, \
    .pack_panel = v_pack_panel, \
    /* 6 x 32 tiles; kc x nr of b = 24 KiB in L1, mc x kc of a = 288 KiB in L2 */ \
    .gemm = {gemm_ukr, GEMM_MR, GEMM_NR, 384, 192, 3072, gemm_ukr_rows}, \
    .rms_scale = v_rms_scale, \
    .dot_rows = rows256_dot_rows, \
    .axpy_rows = rows256_axpy_rows, \
    .pack_panel_bf16 = rows256_pack_panel_bf16, \
    .dot_rows_bf16 = rows256_dot_rows_bf16, \
    .axpy_rows_bf16 = rows256_axpy_rows_bf16, \
    .pack_panel_round = rows256_pack_panel_round, \
    .rms_bwd_terms = v_rms_bwd_terms, \
    .rms_bwd_dx = v_rms_bwd_dx, \
    .rope_rotate = v_rope_rotate, \
    .silu_gate = v_silu_gate, \
    .silu_bwd = v_silu_bwd

static const asink_kernels avx512_table = {AVX512_ENTRIES};

#ifdef ASINK_HAVE_AVX512BF16
/* vdpbf16ps, under its own target: the rest of the file stays runnable without AVX-512 BF16 */
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512bf16"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512bf16")
#endif
#define GEMM_BF16_P __m512bh
#define GEMM_BF16_LOAD(p) ((__m512bh)_mm512_loadu_si512(p))
#define GEMM_BF16_BCAST(p) ((__m512bh)_mm512_set1_epi32((int)*(p)))
#define GEMM_BF16_DP(acc, x, y) _mm512_dpbf16_ps(acc, x, y)
#define GEMM_BF16_PACK_FLOATS v_pack_panel
#include "kernels/gemm_ukr_bf16.h"
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

static const asink_gemm_bf16 avx512_gemm_bf16 = {gemm_bf16_ukr, gemm_bf16_pack_round,
                                                 gemm_bf16_pack16, GEMM_MR, GEMM_NR,
                                                 GEMM_BF16_MC, GEMM_BF16_KC, GEMM_BF16_NC};
static const asink_kernels avx512bf16_table = {AVX512_ENTRIES, .gemm_bf16 = &avx512_gemm_bf16};
const asink_kernels *const asink_kernels_avx512bf16_table = &avx512bf16_table;
#else
const asink_kernels *const asink_kernels_avx512bf16_table = 0;
#endif

const asink_kernels *const asink_kernels_avx512_table = &avx512_table;

#else

const asink_kernels *const asink_kernels_avx512_table = 0;
const asink_kernels *const asink_kernels_avx512bf16_table = 0;

#endif
