/* AVX2+FMA kernels: 8 lanes, tails through maskload/maskstore (no scalar remainder
 * loops, so a short row costs one masked vector). The linear maps use the scalar
 * file's operation order (no FMA contraction) and so match it bit for bit; the
 * reductions keep four accumulators and differ from it by rounding order only. */
#include "kernels/kernels.h"

#ifdef ASINK_HAVE_ISA

#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "kernels/exp_poly.h"
#include "kernels/rows256.h"

static inline __m256 exp8(__m256 x) {
  const __m256 magic = _mm256_set1_ps(EXP_MAGIC);
  __m256 t = _mm256_fmadd_ps(x, _mm256_set1_ps(EXP_LOG2E), magic);
  __m256 n = _mm256_sub_ps(t, magic);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(EXP_LN2_HI), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(EXP_LN2_LO), r);
  __m256 p = _mm256_set1_ps(EXP_C6);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EXP_C5));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EXP_C4));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EXP_C3));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EXP_C2));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f));
  /* 2^n by adding n to p's exponent field: n sits in t's low bits. */
  __m256i e = _mm256_add_epi32(_mm256_castps_si256(p),
                               _mm256_slli_epi32(_mm256_castps_si256(t), 23));
  /* Ordered compare: false for NaN, so NaN lanes are zeroed here and rebuilt below. */
  __m256 y = _mm256_and_ps(_mm256_castsi256_ps(e), _mm256_cmp_ps(x, _mm256_set1_ps(EXP_LO), _CMP_GE_OQ));
  __m256 big = _mm256_cmp_ps(x, _mm256_set1_ps(EXP_HI), _CMP_NLE_UQ); /* x > HI or NaN */
  return _mm256_blendv_ps(y, _mm256_mul_ps(x, _mm256_set1_ps(INFINITY)), big);
}

static inline float hmax8(__m256 v) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

static float v_max(size_t n, const float *x) {
  const __m256 ninf = _mm256_set1_ps(-INFINITY);
  __m256 m0 = ninf, m1 = ninf, m2 = ninf, m3 = ninf;
  __m256 bad = _mm256_setzero_ps(); /* lanes that met a NaN */
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    __m256 a = _mm256_loadu_ps(x + i), b = _mm256_loadu_ps(x + i + 8);
    __m256 c = _mm256_loadu_ps(x + i + 16), d = _mm256_loadu_ps(x + i + 24);
    /* one unordered compare checks two vectors */
    bad = _mm256_or_ps(bad, _mm256_or_ps(_mm256_cmp_ps(a, b, _CMP_UNORD_Q), _mm256_cmp_ps(c, d, _CMP_UNORD_Q)));
    m0 = _mm256_max_ps(m0, a);
    m1 = _mm256_max_ps(m1, b);
    m2 = _mm256_max_ps(m2, c);
    m3 = _mm256_max_ps(m3, d);
  }
  for (; i + 8 <= n; i += 8) {
    __m256 a = _mm256_loadu_ps(x + i);
    bad = _mm256_or_ps(bad, _mm256_cmp_ps(a, a, _CMP_UNORD_Q));
    m0 = _mm256_max_ps(m0, a);
  }
  if (i < n) {
    __m256i k = rows256_mask(n - i);
    __m256 a = _mm256_blendv_ps(ninf, _mm256_maskload_ps(x + i, k), _mm256_castsi256_ps(k));
    bad = _mm256_or_ps(bad, _mm256_cmp_ps(a, a, _CMP_UNORD_Q));
    m0 = _mm256_max_ps(m0, a);
  }
  if (_mm256_movemask_ps(bad)) return NAN;
  return hmax8(_mm256_max_ps(_mm256_max_ps(m0, m1), _mm256_max_ps(m2, m3)));
}

/* Four-accumulator reduction: STEP(s, j, L) adds the terms at offset j to s, reading
 * through L, which is a plain load in the body and a zero-filling masked load (mask k)
 * in the tail. */
#define REDUCE4(n, STEP)                                                       \
  __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;                  \
  size_t i = 0;                                                                \
  for (; i + 32 <= (n); i += 32) {                                             \
    s0 = STEP(s0, i, LOAD);                                                    \
    s1 = STEP(s1, i + 8, LOAD);                                                \
    s2 = STEP(s2, i + 16, LOAD);                                               \
    s3 = STEP(s3, i + 24, LOAD);                                               \
  }                                                                            \
  for (; i + 8 <= (n); i += 8) s0 = STEP(s0, i, LOAD);                         \
  if (i < (n)) {                                                               \
    __m256i k = rows256_mask((n) - i);                                            \
    s1 = STEP(s1, i, TAIL);                                                    \
  }                                                                            \
  return rows256_hsum(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)))

#define LOAD(p) _mm256_loadu_ps(p)
#define TAIL(p) _mm256_maskload_ps(p, k)
#define ABS_MASK _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff))

#define SUM_STEP(s, j, L) _mm256_add_ps(s, L(x + (j)))
static float v_sum(size_t n, const float *x) { REDUCE4(n, SUM_STEP); }

#define ABS_STEP(s, j, L) _mm256_add_ps(s, _mm256_and_ps(ABS_MASK, L(x + (j))))
static float v_abs_sum(size_t n, const float *x) { REDUCE4(n, ABS_STEP); }

#define DOT_STEP(s, j, L) _mm256_fmadd_ps(L(x + (j)), L(y + (j)), s)
static float v_dot(size_t n, const float *x, const float *y) { REDUCE4(n, DOT_STEP); }

#undef LOAD
#undef TAIL

/* In-place elementwise map: V is the new value of the 8 lanes v at offset j. */
#define MAP(n, x, V)                                                           \
  do {                                                                         \
    size_t i = 0;                                                              \
    for (; i + 8 <= (n); i += 8) {                                             \
      const size_t j = i;                                                      \
      __m256 v = _mm256_loadu_ps((x) + j);                                     \
      _mm256_storeu_ps((x) + j, V);                                            \
    }                                                                          \
    if (i < (n)) {                                                             \
      const size_t j = i;                                                      \
      __m256i k = rows256_mask((n) - j);                                          \
      __m256 v = _mm256_maskload_ps((x) + j, k);                               \
      _mm256_maskstore_ps((x) + j, k, V);                                      \
    }                                                                          \
  } while (0)

/* Second operand of a map at offset j: a plain load in the body, a masked one in the
 * tail (the test folds away once inlined into MAP). */
static inline __m256 ld2(const float *p, size_t j, size_t n) {
  if (j + 8 <= n) return _mm256_loadu_ps(p + j);
  return _mm256_maskload_ps(p + j, rows256_mask(n - j));
}

static void v_scale(size_t n, float *x, float a) {
  const __m256 va = _mm256_set1_ps(a);
  MAP(n, x, _mm256_mul_ps(v, va));
}

static void v_axpy(size_t n, float a, const float *x, float *y) {
  const __m256 va = _mm256_set1_ps(a);
  MAP(n, y, _mm256_add_ps(v, _mm256_mul_ps(va, ld2(x, j, n))));
}

static void v_add_ramp(size_t n, float *x, float a, float offset) {
  /* (float)i through a 32-bit lane index; the rare rest past 2^30 goes scalar. */
  const size_t nv = n < ((size_t)1 << 30) ? n : ((size_t)1 << 30);
  const __m256 va = _mm256_set1_ps(a), vo = _mm256_set1_ps(offset);
  const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  MAP(nv, x,
      _mm256_add_ps(v, _mm256_mul_ps(va, _mm256_add_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(
                                                            _mm256_set1_epi32((int)j), lanes)),
                                                        vo))));
  for (size_t i = nv; i < n; i++) x[i] += a * ((float)i + offset);
}

static void v_add_const(size_t n, float *x, float c) {
  const __m256 vc = _mm256_set1_ps(c);
  MAP(n, x, _mm256_add_ps(v, vc));
}

/* exp_shift_sum with or without the dot of the results with the inputs; inlined
 * into both entry points, so the sum takes the same path in each. */
static inline __attribute__((always_inline)) float exp_sum_core(size_t n, float *x, float shift,
                                                                float *xdot) {
  const __m256 vs = _mm256_set1_ps(shift);
  __m256 s0 = _mm256_setzero_ps(), s1 = s0, d0 = s0, d1 = s0;
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m256 x0 = _mm256_loadu_ps(x + i), x1 = _mm256_loadu_ps(x + i + 8);
    __m256 e0 = exp8(_mm256_sub_ps(x0, vs));
    __m256 e1 = exp8(_mm256_sub_ps(x1, vs));
    _mm256_storeu_ps(x + i, e0);
    _mm256_storeu_ps(x + i + 8, e1);
    s0 = _mm256_add_ps(s0, e0);
    s1 = _mm256_add_ps(s1, e1);
    if (xdot) d0 = _mm256_fmadd_ps(e0, x0, d0), d1 = _mm256_fmadd_ps(e1, x1, d1);
  }
  for (; i + 8 <= n; i += 8) {
    __m256 x0 = _mm256_loadu_ps(x + i);
    __m256 e = exp8(_mm256_sub_ps(x0, vs));
    _mm256_storeu_ps(x + i, e);
    s0 = _mm256_add_ps(s0, e);
    if (xdot) d0 = _mm256_fmadd_ps(e, x0, d0);
  }
  if (i < n) {
    __m256i k = rows256_mask(n - i);
    __m256 x0 = _mm256_maskload_ps(x + i, k);
    __m256 e = exp8(_mm256_sub_ps(x0, vs));
    _mm256_maskstore_ps(x + i, k, e);
    __m256 em = _mm256_and_ps(e, _mm256_castsi256_ps(k));
    s1 = _mm256_add_ps(s1, em);
    if (xdot) d1 = _mm256_fmadd_ps(em, x0, d1);
  }
  if (xdot) *xdot = rows256_hsum(_mm256_add_ps(d0, d1));
  return rows256_hsum(_mm256_add_ps(s0, s1));
}

static float v_exp_shift_sum(size_t n, float *x, float shift) { return exp_sum_core(n, x, shift, NULL); }

static float v_exp_shift_sum_dot(size_t n, float *x, float shift, float *xdot) {
  return exp_sum_core(n, x, shift, xdot);
}

static void v_exp_shift(size_t n, float *x, float shift) {
  const __m256 vs = _mm256_set1_ps(shift);
  MAP(n, x, exp8(_mm256_sub_ps(v, vs)));
}

/* With e = exp(-|x|) in [0, 1], 1/(1+e) for x >= 0 and e/(1+e) for x < 0: exp never
 * overflows, so sigmoid(+-100) is 1 and ~0 with no inf/inf. */
static inline __m256 sigmoid8(__m256 x) {
  const __m256 one = _mm256_set1_ps(1.f);
  __m256 e = exp8(_mm256_or_ps(x, _mm256_set1_ps(-0.f)));
  return _mm256_div_ps(_mm256_blendv_ps(one, e, x), _mm256_add_ps(one, e));
}

static void v_sigmoid(size_t n, float *x) { MAP(n, x, sigmoid8(v)); }

static inline __m256 elu1_8(__m256 x) {
  __m256 pos = _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_GT_OQ);
  return _mm256_blendv_ps(exp8(x), _mm256_add_ps(x, _mm256_set1_ps(1.f)), pos);
}

static void v_elu1(size_t n, float *x) { MAP(n, x, elu1_8(v)); }

static void v_softmax_bwd(size_t n, float *dp, const float *a, float c, float m) {
  const __m256 vc = _mm256_set1_ps(c), vm = _mm256_set1_ps(m);
  MAP(n, dp, _mm256_mul_ps(_mm256_mul_ps(vm, ld2(a, j, n)), _mm256_sub_ps(v, vc)));
}

static inline __m256 sigmoid_bwd8(__m256 g, __m256 a, __m256 vc, __m256 vm) {
  __m256 t = _mm256_mul_ps(_mm256_mul_ps(vm, _mm256_sub_ps(g, vc)), a);
  return _mm256_mul_ps(t, _mm256_sub_ps(_mm256_set1_ps(1.f), a));
}

static void v_sigmoid_bwd(size_t n, float *dp, const float *a, float c, float m) {
  const __m256 vc = _mm256_set1_ps(c), vm = _mm256_set1_ps(m);
  MAP(n, dp, sigmoid_bwd8(v, ld2(a, j, n), vc, vm));
}

static inline __m256 elu1_bwd8(__m256 g, __m256 a, __m256 vc, __m256 vm) {
  const __m256 one = _mm256_set1_ps(1.f);
  __m256 d = _mm256_blendv_ps(a, one, _mm256_cmp_ps(a, one, _CMP_GT_OQ));
  return _mm256_mul_ps(_mm256_mul_ps(vm, _mm256_sub_ps(g, vc)), d);
}

static void v_elu1_bwd(size_t n, float *dp, const float *a, float c, float m) {
  const __m256 vc = _mm256_set1_ps(c), vm = _mm256_set1_ps(m);
  MAP(n, dp, elu1_bwd8(v, ld2(a, j, n), vc, vm));
}

static void v_shift_scale(size_t n, float *dp, float c, float m) {
  const __m256 vc = _mm256_set1_ps(c), vm = _mm256_set1_ps(m);
  MAP(n, dp, _mm256_mul_ps(vm, _mm256_sub_ps(v, vc)));
}

/* The model's row loops. ROW runs its body on the 8 lanes at offset j, reading through
 * ld2 and writing through st2: plain in the loop, masked in the tail (the tests fold
 * away once inlined). Separate mul and add, no FMA: the scalar rounding, bit for bit. */
#define ROW(n, ...)                                                            \
  do {                                                                         \
    size_t j = 0;                                                              \
    for (; j + 8 <= (n); j += 8) { __VA_ARGS__; }                              \
    if (j < (n)) { __VA_ARGS__; }                                              \
  } while (0)

static inline void st2(float *p, size_t j, size_t n, __m256 v) {
  if (j + 8 <= n) _mm256_storeu_ps(p + j, v);
  else _mm256_maskstore_ps(p + j, rows256_mask(n - j), v);
}

static void v_rms_scale(size_t n, float *y, const float *x, const float *w, float r) {
  const __m256 vr = _mm256_set1_ps(r);
  ROW(n, st2(y, j, n, _mm256_mul_ps(_mm256_mul_ps(ld2(x, j, n), vr), ld2(w, j, n))));
}

static void v_rms_bwd_terms(size_t n, float *g, float *pdw, const float *dy, const float *x,
                            const float *w, float r) {
  const __m256 vr = _mm256_set1_ps(r);
  ROW(n, {
    __m256 d = ld2(dy, j, n);
    st2(g, j, n, _mm256_mul_ps(d, ld2(w, j, n)));
    st2(pdw, j, n, _mm256_add_ps(ld2(pdw, j, n), _mm256_mul_ps(_mm256_mul_ps(d, ld2(x, j, n)), vr)));
  });
}

static void v_rms_bwd_dx(size_t n, float *dx, const float *g, const float *x, float r, float k) {
  const __m256 vr = _mm256_set1_ps(r), vk = _mm256_set1_ps(k);
  MAP(n, dx, _mm256_add_ps(v, _mm256_sub_ps(_mm256_mul_ps(ld2(g, j, n), vr),
                                            _mm256_mul_ps(ld2(x, j, n), vk))));
}

static void v_rope_rotate(size_t h, float *v, const float *c, const float *s, float sign) {
  const __m256 vs = _mm256_set1_ps(sign);
  float *v2 = v + h;
  ROW(h, {
    __m256 a = ld2(v, j, h), b = ld2(v2, j, h), cj = ld2(c, j, h);
    __m256 si = _mm256_mul_ps(vs, ld2(s, j, h));
    st2(v, j, h, _mm256_sub_ps(_mm256_mul_ps(a, cj), _mm256_mul_ps(b, si)));
    st2(v2, j, h, _mm256_add_ps(_mm256_mul_ps(b, cj), _mm256_mul_ps(a, si)));
  });
}

static void v_silu_gate(size_t n, float *h, const float *g, const float *u) {
  if (u) MAP(n, h, _mm256_mul_ps(v, _mm256_mul_ps(ld2(g, j, n), ld2(u, j, n))));
  else MAP(n, h, _mm256_mul_ps(v, ld2(g, j, n)));
}

/* d = s * (1 + g * (1 - s)) for s = sigmoid(g) */
static inline __m256 silu_d8(__m256 s, __m256 g) {
  const __m256 one = _mm256_set1_ps(1.f);
  return _mm256_mul_ps(s, _mm256_add_ps(one, _mm256_mul_ps(g, _mm256_sub_ps(one, s))));
}

static void v_silu_bwd(size_t n, float *dg, float *du, const float *dh, const float *g,
                       const float *u) {
  if (u)
    ROW(n, {
      __m256 s = ld2(dg, j, n), gj = ld2(g, j, n), d = ld2(dh, j, n);
      st2(du, j, n, _mm256_mul_ps(_mm256_mul_ps(d, gj), s));
      st2(dg, j, n, _mm256_mul_ps(_mm256_mul_ps(d, silu_d8(s, gj)), ld2(u, j, n)));
    });
  else
    MAP(n, dg, _mm256_mul_ps(ld2(dh, j, n), silu_d8(v, ld2(g, j, n))));
}

/* The first n lanes of x to d[0, n), 0 <= n <= 8, writing nothing past them (a
 * panel's last row abuts memory another thread may be packing). */
static inline void store_first(float *d, __m256 x, size_t n) {
  if (n == 8) {
    _mm256_storeu_ps(d, x);
    return;
  }
  __m128 h = _mm256_castps256_ps128(x);
  if (n >= 4) {
    _mm_storeu_ps(d, h);
    d += 4, n -= 4;
    h = _mm256_extractf128_ps(x, 1);
  }
  if (n >= 2) {
    _mm_storel_pi((__m64 *)d, h);
    d += 2, n -= 2;
    h = _mm_movehl_ps(h, h);
  }
  if (n) _mm_store_ss(d, h);
}

/* x[0, n) with zeros past it, 0 <= n <= 8. */
static inline __m256 load_first(const float *s, size_t n) {
  if (n >= 8) return _mm256_loadu_ps(s);
  return n ? _mm256_maskload_ps(s, rows256_mask(n)) : _mm256_setzero_ps();
}

/* In-register 8x8 transpose: on return x[q] lane r holds what x[r] lane q held. */
static inline void transpose8(__m256 x[8]) {
  __m256 t[8], u[8];
  for (int i = 0; i < 4; i++) {
    t[2 * i] = _mm256_unpacklo_ps(x[2 * i], x[2 * i + 1]);     /* 0 of each 64-bit pair */
    t[2 * i + 1] = _mm256_unpackhi_ps(x[2 * i], x[2 * i + 1]); /* 1 */
  }
  for (int h = 0; h < 2; h++) { /* rows 4h .. 4h+3, per 128-bit lane */
    u[4 * h + 0] = _mm256_shuffle_ps(t[4 * h], t[4 * h + 2], 0x44);
    u[4 * h + 1] = _mm256_shuffle_ps(t[4 * h], t[4 * h + 2], 0xEE);
    u[4 * h + 2] = _mm256_shuffle_ps(t[4 * h + 1], t[4 * h + 3], 0x44);
    u[4 * h + 3] = _mm256_shuffle_ps(t[4 * h + 1], t[4 * h + 3], 0xEE);
  }
  for (int c = 0; c < 4; c++) {
    x[c] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x20);
    x[4 + c] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x31);
  }
}

/* Rows [0, n) of src (stride s_r) over k [0, 8 floor(k / 8)) to dst, transposed 8 x 8,
 * n a constant at each call (6 or 8) so the loads and stores are straight-line code.
 * Returns the k reached. */
static inline __attribute__((always_inline)) size_t pack_blocks(float *dst, const float *src,
                                                                 size_t W, size_t k, size_t s_r,
                                                                 size_t n) {
  size_t p = 0;
  for (; p + 8 <= k; p += 8) {
    __m256 x[8];
    for (size_t r = 0; r < 8; r++) x[r] = r < n ? _mm256_loadu_ps(src + r * s_r + p) : _mm256_setzero_ps();
    transpose8(x);
    for (size_t q = 0; q < 8; q++) store_first(dst + (p + q) * W, x[q], n);
  }
  return p;
}

/* An operand read across its rows (activations, or weights stored n x k) is turned 8 x 8
 * in registers; BLIS 0.9's reference packing gathers it one float at a time. */
static void v_pack_panel(float *dst, const float *src, size_t W, size_t w, size_t k, size_t s_r,
                         size_t s_p) {
  if (s_r == 1 && w == W && W % 8 == 0) { /* whole vectors along src's lines: copies */
    for (size_t p = 0; p < k; p++)
      for (size_t g = 0; g < W; g += 8) {
        if (g % 16 == 0) _mm_prefetch((const char *)(src + (p + 16) * s_p + g), _MM_HINT_T0);
        _mm256_storeu_ps(dst + p * W + g, _mm256_loadu_ps(src + p * s_p + g));
      }
    return;
  }
  if (s_r == 1 && w == W && W == 6) { /* the micro-kernel's a panel: 4 + 2 floats */
    for (size_t p = 0; p < k; p++) memcpy(dst + p * 6, src + p * s_p, 6 * sizeof(float));
    return;
  }
  if (s_r == 1) { /* the same with partial vectors */
    for (size_t p = 0; p < k; p++)
      for (size_t g = 0; g < W; g += 8)
        store_first(dst + p * W + g, load_first(src + p * s_p + g, w > g ? w - g : 0),
                    W - g < 8 ? W - g : 8);
    return;
  }
  if (s_p != 1) { /* neither stride is 1: not a row-major operand */
    asink_kernels_scalar.pack_panel(dst, src, W, w, k, s_r, s_p);
    return;
  }
  for (size_t g = 0; g < W; g += 8) {
    size_t rows = w > g ? (w - g < 8 ? w - g : 8) : 0, out = W - g < 8 ? W - g : 8;
    size_t p = 0;
    __m256 x[8];
    /* whole blocks of k, the widths of the micro-kernel's panels spelt out (6: a's) */
    if (rows == 8 && out == 8) p = pack_blocks(dst + g, src + g * s_r, W, k, s_r, 8);
    else if (rows == 6 && out == 6) p = pack_blocks(dst + g, src + g * s_r, W, k, s_r, 6);
    for (; p < k; p += 8) {
      size_t kp = k - p < 8 ? k - p : 8;
      for (size_t r = 0; r < 8; r++)
        x[r] = r < rows ? load_first(src + (g + r) * s_r + p, kp) : _mm256_setzero_ps();
      transpose8(x);
      for (size_t q = 0; q < kp; q++) store_first(dst + (p + q) * W + g, x[q], out);
    }
  }
}

#include "kernels/rows256_bf16.h"

#define GEMM_V __m256
#define GEMM_VL 8
#define GEMM_LOAD(p) _mm256_loadu_ps(p)
#define GEMM_STORE(p, x) _mm256_storeu_ps(p, x)
#define GEMM_BCAST(p) _mm256_broadcast_ss(p)
#define GEMM_SET1(x) _mm256_set1_ps(x)
#define GEMM_FMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define GEMM_MUL(a, b) _mm256_mul_ps(a, b)
#define GEMM_ZERO() _mm256_setzero_ps()
#include "kernels/gemm_ukr.h"

static const asink_kernels avx2_table = {
    .name = "avx2",
    .max = v_max,
    .sum = v_sum,
    .abs_sum = v_abs_sum,
    .dot = v_dot,
    .scale = v_scale,
    .axpy = v_axpy,
    .add_ramp = v_add_ramp,
    .add_const = v_add_const,
    .exp_shift_sum = v_exp_shift_sum,
    .exp_shift_sum_dot = v_exp_shift_sum_dot,
    .exp_shift = v_exp_shift,
    .sigmoid = v_sigmoid,
    .elu1 = v_elu1,
    .softmax_bwd = v_softmax_bwd,
    .sigmoid_bwd = v_sigmoid_bwd,
    .elu1_bwd = v_elu1_bwd,
    .shift_scale = v_shift_scale,
    .pack_panel = v_pack_panel,
    /* 6 x 16 tiles; kc x nr of b = 16 KiB in L1, mc x kc of a = 144 KiB in L2 (BLIS's zen3
     * blocking) */
    .gemm = {gemm_ukr, GEMM_MR, GEMM_NR, 144, 256, 4080, gemm_ukr_rows},
    .rms_scale = v_rms_scale,
    .dot_rows = rows256_dot_rows,
    .axpy_rows = rows256_axpy_rows,
    .pack_panel_bf16 = rows256_pack_panel_bf16,
    .dot_rows_bf16 = rows256_dot_rows_bf16,
    .axpy_rows_bf16 = rows256_axpy_rows_bf16,
    .pack_panel_round = rows256_pack_panel_round,
    .rms_bwd_terms = v_rms_bwd_terms,
    .rms_bwd_dx = v_rms_bwd_dx,
    .rope_rotate = v_rope_rotate,
    .silu_gate = v_silu_gate,
    .silu_bwd = v_silu_bwd,
};

const asink_kernels *const asink_kernels_avx2_table = &avx2_table;

#else

const asink_kernels *const asink_kernels_avx2_table = 0;

#endif
