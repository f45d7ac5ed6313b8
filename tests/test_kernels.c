/* SIMD kernel tables against the scalar reference, and exact values against libm.
 *
 * Every SIMD table this build has and this CPU runs is compared with
 * asink_kernels_scalar on odd sizes (tails), unaligned pointers, several input ranges
 * and arrays with inf, NaN, -0 and denormals inside; writes past n are caught by
 * canaries. The special-value and accuracy tests also run on the scalar table, so a
 * -Dsimd=scalar build still checks the reference against libm. */
#include <check.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/runtime.h"
#include "kernels/kernels.h"

static const asink_kernels *simd_tables[2]; /* SIMD tables built and runnable here */
static int n_simd;
static const asink_kernels *all_tables[3]; /* scalar first, then simd_tables */
static int n_all;

static void find_tables(void) {
  asink_isa best = asink_cpu_best_isa();
  all_tables[n_all++] = &asink_kernels_scalar;
  if (asink_kernels_avx2_table && best >= ASINK_ISA_AVX2) simd_tables[n_simd++] = asink_kernels_avx2_table;
  if (asink_kernels_avx512_table && best >= ASINK_ISA_AVX512)
    simd_tables[n_simd++] = asink_kernels_avx512_table;
  for (int i = 0; i < n_simd; i++) all_tables[n_all++] = simd_tables[i];
}

/* ---- inputs ---- */

static uint64_t rng;

static uint64_t next_u64(void) { /* splitmix64 */
  uint64_t z = (rng += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static float uniform(double lo, double hi) {
  return (float)(lo + (hi - lo) * (double)(next_u64() >> 11) * 0x1p-53);
}

enum { R_SMALL, R_WIDE, R_DENORM, R_HUGE_NEG, R_SPECIAL, R_COUNT };
static const char *const range_names[R_COUNT] = {"[-1,1]", "[-80,80]", "[-104,-87]", "[-1e4,-100]",
                                                 "specials"};

static float special_value(void) {
  static const float v[] = {INFINITY, -INFINITY, NAN,     -0.0f, 0.0f, 1e-40f, -1e-40f,
                            0x1p-149f, FLT_MIN,  -3e-39f, 1e30f, -88.f, 89.f};
  return v[next_u64() % (sizeof v / sizeof *v)];
}

static void fill(float *x, size_t n, int range) {
  for (size_t i = 0; i < n; i++) {
    switch (range) {
    case R_SMALL: x[i] = uniform(-1, 1); break;
    case R_WIDE: x[i] = uniform(-80, 80); break;
    case R_DENORM: x[i] = uniform(-104, -87); break;
    case R_HUGE_NEG: x[i] = uniform(-1e4, -100); break;
    default: x[i] = next_u64() % 4 == 0 ? special_value() : uniform(-5, 5); break;
    }
  }
}

/* Second operands (the map entries a of the backward kernels, y of dot/axpy): [0, 2]
 * covers both branches of elu1_bwd; the special range mixes in the specials. */
static void fill_second(float *y, size_t n, int range) {
  if (range == R_SPECIAL) fill(y, n, range);
  else for (size_t i = 0; i < n; i++) y[i] = uniform(0, 2);
}

/* ---- buffers: in-place arrays sit between canaries, read-only ones end exactly at
 * the end of their allocation so the sanitizer sees any over-read ---- */

#define FRONT 16
#define BACK 40
#define CANARY 1234.5f

static float *guarded_alloc(size_t n, size_t off) {
  size_t bytes = (FRONT + off + n + BACK) * sizeof(float);
  bytes = (bytes + 63) / 64 * 64;
  float *b = aligned_alloc(64, bytes);
  ck_assert_ptr_nonnull(b);
  for (size_t i = 0; i < bytes / sizeof(float); i++) b[i] = CANARY;
  return b;
}

static float *data_of(float *b, size_t off) { return b + FRONT + off; }

static int guards_intact(const float *b, size_t n, size_t off) {
  for (size_t i = 0; i < FRONT + off; i++)
    if (b[i] != CANARY) return 0;
  for (size_t i = FRONT + off + n; i < FRONT + off + n + BACK; i++)
    if (b[i] != CANARY) return 0;
  return 1;
}

static float *exact_alloc(size_t n, size_t off, const float *src) {
  float *b = malloc((n + off) * sizeof(float) + (n + off == 0));
  ck_assert_ptr_nonnull(b);
  if (n) memcpy(b + off, src, n * sizeof(float));
  return b;
}

/* ---- comparison ---- */

/* Elementwise: NaN and inf must match exactly; otherwise relative 2e-6 of the larger of
 * |want| and mag (the size of the terms, for maps that may cancel), or 1e-30 absolute. */
static int close_elem(float got, float want, double mag) {
  if (isnan(want)) return isnan(got);
  if (isinf(want)) return got == want;
  if (!isfinite(got)) return 0;
  double tol = 2e-6 * fmax(fabs((double)want), mag);
  if (tol < 1e-30) tol = 1e-30;
  return fabs((double)got - (double)want) <= tol;
}

/* Reductions: relative 1e-5 of the sum of |terms|, the rounding-order bound. */
static int close_sum(float got, float want, double abs_terms, size_t n) {
  if (isnan(want)) return isnan(got);
  if (isinf(want)) return got == want;
  if (!isfinite(got)) return 0;
  return fabs((double)got - (double)want) <= 1e-5 * abs_terms + 1e-30 * (double)(n + 1);
}

/* ---- one case: an op of table K against scalar on one input ---- */

typedef enum {
  OP_MAX, OP_SUM, OP_ABS_SUM, OP_DOT,
  OP_SCALE, OP_AXPY, OP_ADD_RAMP, OP_ADD_CONST, OP_SOFTMAX_BWD, OP_SIGMOID_BWD, OP_ELU1_BWD,
  OP_SHIFT_SCALE,
  OP_EXP_SHIFT_SUM, OP_EXP_SHIFT, OP_SIGMOID, OP_ELU1,
  OP_COUNT
} op_t;

static const char *const op_names[OP_COUNT] = {
    "max", "sum", "abs_sum", "dot", "scale", "axpy", "add_ramp", "add_const", "softmax_bwd",
    "sigmoid_bwd", "elu1_bwd", "shift_scale", "exp_shift_sum", "exp_shift", "sigmoid", "elu1"};

typedef struct {
  float a, c, m, shift, offset;
  int shift_is_max; /* the softmax case: shift = max(x) */
} params;

static const params param_sets[] = {
    {0.5f, 0.25f, 1.f, 0.f, 0.f, 0},
    {-1.75f, -3.f, 0.125f, 0.f, -37.f, 1},
    {3e-3f, 10.f, -2.f, 3.5f, 5.5f, 0},
    {-0.f, 1e-38f, 7.f, -20.f, -1e6f, 0},
    {1e30f, -INFINITY, 0.f, -INFINITY, 1e7f, 0},
};
#define N_PARAMS (sizeof param_sets / sizeof *param_sets)

static const size_t sizes[] = {0, 1, 3, 7, 15, 16, 17, 31, 33, 63, 64, 65, 100, 129, 1000, 1023};
#define N_SIZES (sizeof sizes / sizeof *sizes)
static const size_t offsets[] = {0, 1, 3}; /* in floats: 64-byte aligned, then not */
#define N_OFFSETS (sizeof offsets / sizeof *offsets)

static float call_reduction(const asink_kernels *K, op_t op, size_t n, const float *x, const float *y) {
  switch (op) {
  case OP_MAX: return K->max(n, x);
  case OP_SUM: return K->sum(n, x);
  case OP_ABS_SUM: return K->abs_sum(n, x);
  default: return K->dot(n, x, y);
  }
}

/* Runs an in-place op on x (y is the read-only second operand); returns
 * exp_shift_sum's result, 0 for the others. */
static float call_map(const asink_kernels *K, op_t op, size_t n, float *x, const float *y,
                      const params *p, float shift) {
  switch (op) {
  case OP_SCALE: K->scale(n, x, p->a); break;
  case OP_AXPY: K->axpy(n, p->a, y, x); break;
  case OP_ADD_RAMP: K->add_ramp(n, x, p->a, p->offset); break;
  case OP_ADD_CONST: K->add_const(n, x, p->c); break;
  case OP_SOFTMAX_BWD: K->softmax_bwd(n, x, y, p->c, p->m); break;
  case OP_SIGMOID_BWD: K->sigmoid_bwd(n, x, y, p->c, p->m); break;
  case OP_ELU1_BWD: K->elu1_bwd(n, x, y, p->c, p->m); break;
  case OP_SHIFT_SCALE: K->shift_scale(n, x, p->c, p->m); break;
  case OP_EXP_SHIFT_SUM: return K->exp_shift_sum(n, x, shift);
  case OP_EXP_SHIFT: K->exp_shift(n, x, shift); break;
  case OP_SIGMOID: K->sigmoid(n, x); break;
  case OP_ELU1: K->elu1(n, x); break;
  default: break;
  }
  return 0.f;
}

/* Size of the terms behind element i of op's result, for the cancellation allowance. */
static double term_size(op_t op, size_t i, float x, float y, const params *p) {
  double ax = fabs((double)x), ay = fabs((double)y), c = fabs((double)p->c), m = fabs((double)p->m);
  switch (op) {
  case OP_AXPY: return fabs((double)x) + fabs((double)p->a * y);
  case OP_ADD_RAMP: return ax + fabs((double)p->a * ((double)i + p->offset));
  case OP_ADD_CONST: return ax + c;
  case OP_SOFTMAX_BWD: return m * ay * (ax + c);
  case OP_SIGMOID_BWD: return m * (ax + c) * fabs((double)y * (1.0 - y));
  case OP_ELU1_BWD: return m * (ax + c) * (y > 1.f ? 1.0 : ay);
  case OP_SHIFT_SCALE: return m * (ax + c);
  default: return 0.0;
  }
}

static void run_case(const asink_kernels *K, op_t op, size_t n, int range, size_t pi, size_t off) {
  const params *p = &param_sets[pi];
  rng = 0x5eed0000ull + (uint64_t)op * 1000003u + n * 7919u + (uint64_t)range * 104729u + pi * 31u + off;
  float *x = malloc((n + 1) * sizeof(float)), *y = malloc((n + 1) * sizeof(float));
  ck_assert_ptr_nonnull(x);
  ck_assert_ptr_nonnull(y);
  fill(x, n, range);
  fill_second(y, n, range);
  float shift = p->shift_is_max ? asink_kernels_scalar.max(n, x) : p->shift;
  const char *where_fmt = "%s %s n=%zu range=%s params=%zu offset=%zu";
  char where[160];
  snprintf(where, sizeof where, where_fmt, K->name, op_names[op], n, range_names[range], pi, off);

  if (op <= OP_DOT) {
    float *xs = exact_alloc(n, off, x), *ys = exact_alloc(n, off, y);
    float got = call_reduction(K, op, n, xs + off, ys + off);
    float want = call_reduction(&asink_kernels_scalar, op, n, x, y);
    double terms = 0;
    for (size_t i = 0; i < n; i++) terms += op == OP_DOT ? fabs((double)x[i] * y[i]) : fabs((double)x[i]);
    int ok = op == OP_MAX ? (isnan(want) ? isnan(got) : got == want) : close_sum(got, want, terms, n);
    if (!ok) ck_abort_msg("%s: got %.9g, scalar %.9g", where, (double)got, (double)want);
    free(xs);
    free(ys);
  } else {
    float *gb = guarded_alloc(n, off), *got = data_of(gb, off);
    float *want = malloc((n + 1) * sizeof(float));
    float *ys = exact_alloc(n, off, y);
    ck_assert_ptr_nonnull(want);
    if (n) memcpy(got, x, n * sizeof(float));
    if (n) memcpy(want, x, n * sizeof(float));
    float rg = call_map(K, op, n, got, ys + off, p, shift);
    float rw = call_map(&asink_kernels_scalar, op, n, want, y, p, shift);
    if (!guards_intact(gb, n, off)) ck_abort_msg("%s: wrote outside [0, n)", where);
    for (size_t i = 0; i < n; i++)
      if (!close_elem(got[i], want[i], term_size(op, i, x[i], y[i], p)))
        ck_abort_msg("%s: element %zu of input %.9g (second %.9g, shift %g): got %.9g, scalar %.9g",
                     where, i, (double)x[i], (double)y[i], (double)shift, (double)got[i], (double)want[i]);
    if (op == OP_EXP_SHIFT_SUM) {
      double terms = 0;
      for (size_t i = 0; i < n; i++) terms += fabs((double)want[i]);
      if (!close_sum(rg, rw, terms, n))
        ck_abort_msg("%s: returned sum %.9g, scalar %.9g", where, (double)rg, (double)rw);
    }
    free(gb);
    free(want);
    free(ys);
  }
  free(x);
  free(y);
}

static void run_ops(const asink_kernels *K, op_t first, op_t last) {
  for (int op = first; op <= (int)last; op++)
    for (size_t s = 0; s < N_SIZES; s++)
      for (int r = 0; r < R_COUNT; r++)
        for (size_t pi = 0; pi < N_PARAMS; pi++)
          for (size_t o = 0; o < N_OFFSETS; o++) run_case(K, (op_t)op, sizes[s], r, pi, offsets[o]);
}

START_TEST(reductions_match_scalar) { run_ops(simd_tables[_i], OP_MAX, OP_DOT); }
END_TEST

START_TEST(linear_maps_match_scalar) { run_ops(simd_tables[_i], OP_SCALE, OP_SHIFT_SCALE); }
END_TEST

START_TEST(exp_maps_match_scalar) { run_ops(simd_tables[_i], OP_EXP_SHIFT_SUM, OP_ELU1); }
END_TEST

/* The linear maps use the scalar operation order, so they should agree to the bit
 * on finite inputs; a lapse here is a contraction or reordering someone added. */
START_TEST(linear_maps_are_bit_exact) {
  const asink_kernels *K = simd_tables[_i];
  for (op_t op = OP_SCALE; op <= OP_SHIFT_SCALE; op++)
    for (size_t pi = 0; pi < 3; pi++) {
      size_t n = 1023;
      rng = 77 + op * 5u + pi;
      float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y), *g = malloc(n * sizeof *g);
      ck_assert_ptr_nonnull(x);
      ck_assert_ptr_nonnull(y);
      ck_assert_ptr_nonnull(g);
      fill(x, n, R_WIDE);
      fill_second(y, n, R_WIDE);
      memcpy(g, x, n * sizeof *g);
      call_map(K, op, n, g, y, &param_sets[pi], 0.f);
      call_map(&asink_kernels_scalar, op, n, x, y, &param_sets[pi], 0.f);
      for (size_t i = 0; i < n; i++)
        if (memcmp(&g[i], &x[i], sizeof(float)) != 0)
          ck_abort_msg("%s %s params=%zu element %zu: %.9g vs scalar %.9g", K->name, op_names[op], pi,
                       i, (double)g[i], (double)x[i]);
      free(x);
      free(y);
      free(g);
    }
}
END_TEST

/* ---- the model's row loops: bit for bit against scalar, which is checked against
 * the formulas of kernels.h ---- */

typedef enum {
  ROW_RMS_SCALE, ROW_RMS_BWD_TERMS, ROW_RMS_BWD_DX, ROW_ROPE, ROW_SILU_GATE, ROW_SILU_GATE_NOU,
  ROW_SILU_BWD, ROW_SILU_BWD_NOU, ROW_COUNT
} row_op;

static const char *const row_names[ROW_COUNT] = {"rms_scale", "rms_bwd_terms", "rms_bwd_dx",
                                                 "rope_rotate", "silu_gate", "silu_gate(u=NULL)",
                                                 "silu_bwd", "silu_bwd(u=NULL)"};

typedef struct {
  float r, k, sign;
} row_params;

static const row_params row_param_sets[] = {
    {0.5f, 0.25f, 1.f}, {1.7f, -3.f, -1.f}, {3e-3f, 10.f, 1.f}, {-0.f, 1e-38f, -1.f}, {1e30f, -INFINITY, 0.5f},
};
#define N_ROW_PARAMS (sizeof row_param_sets / sizeof *row_param_sets)

/* Outputs o0 (2n floats for rope_rotate, n otherwise) and o1 (rms_bwd_terms' pdw,
 * silu_bwd's du; n floats), read-only inputs in[0..2] of n floats each. */
static int row_has_o1(row_op op) { return op == ROW_RMS_BWD_TERMS || op == ROW_SILU_BWD; }
static size_t row_o0_len(row_op op, size_t n) { return op == ROW_ROPE ? 2 * n : n; }

static void call_row(const asink_kernels *K, row_op op, size_t n, float *o0, float *o1,
                     float *const in[3], const row_params *p) {
  switch (op) {
  case ROW_RMS_SCALE: K->rms_scale(n, o0, in[0], in[1], p->r); break;
  case ROW_RMS_BWD_TERMS: K->rms_bwd_terms(n, o0, o1, in[0], in[1], in[2], p->r); break;
  case ROW_RMS_BWD_DX: K->rms_bwd_dx(n, o0, in[0], in[1], p->r, p->k); break;
  case ROW_ROPE: K->rope_rotate(n, o0, in[0], in[1], p->sign); break;
  case ROW_SILU_GATE: K->silu_gate(n, o0, in[0], in[1]); break;
  case ROW_SILU_GATE_NOU: K->silu_gate(n, o0, in[0], NULL); break;
  case ROW_SILU_BWD: K->silu_bwd(n, o0, o1, in[0], in[1], in[2]); break;
  default: K->silu_bwd(n, o0, NULL, in[0], in[1], NULL); break;
  }
}

/* The same bits, or NaN for NaN (the payload may follow the operand order a compiler
 * picks for a commutative multiply). */
static int same_bits(float a, float b) { return isnan(a) ? isnan(b) : !memcmp(&a, &b, sizeof a); }

/* Random inputs for op: sigmoid outputs (silu's h and dg on entry) in [0, 1]. */
static void fill_row(row_op op, float *o0, float *o1, float *in[3], size_t n, int range) {
  int sig = op >= ROW_SILU_GATE;
  if (sig && range != R_SPECIAL)
    for (size_t i = 0; i < n; i++) o0[i] = uniform(0, 1);
  else
    fill(o0, row_o0_len(op, n), range);
  fill(o1, n, range);
  for (int a = 0; a < 3; a++) fill(in[a], n, range);
}

static void run_row_case(const asink_kernels *K, row_op op, size_t n, int range, size_t pi, size_t off) {
  const row_params *p = &row_param_sets[pi];
  rng = 0x120e0000ull + (uint64_t)op * 1000003u + n * 7919u + (uint64_t)range * 104729u + pi * 31u + off;
  size_t n0 = row_o0_len(op, n);
  float *w0 = malloc((n0 + 1) * sizeof(float)), *w1 = malloc((n + 1) * sizeof(float));
  float *in[3], *ins[3];
  ck_assert_ptr_nonnull(w0);
  ck_assert_ptr_nonnull(w1);
  for (int a = 0; a < 3; a++) {
    in[a] = malloc((n + 1) * sizeof(float));
    ck_assert_ptr_nonnull(in[a]);
  }
  fill_row(op, w0, w1, in, n, range);
  float *x0 = malloc((n0 + 1) * sizeof(float)), *x1 = malloc((n + 1) * sizeof(float));
  ck_assert_ptr_nonnull(x0);
  ck_assert_ptr_nonnull(x1);
  memcpy(x0, w0, n0 * sizeof(float)); /* the inputs, for messages */
  memcpy(x1, w1, n * sizeof(float));
  float *b0 = guarded_alloc(n0, off), *g0 = data_of(b0, off);
  float *b1 = guarded_alloc(n, off), *g1 = data_of(b1, off);
  if (n0) memcpy(g0, w0, n0 * sizeof(float));
  if (n) memcpy(g1, w1, n * sizeof(float));
  for (int a = 0; a < 3; a++) ins[a] = exact_alloc(n, off, in[a]);
  float *insd[3] = {ins[0] + off, ins[1] + off, ins[2] + off};

  call_row(K, op, n, g0, g1, insd, p);
  call_row(&asink_kernels_scalar, op, n, w0, w1, in, p);

  char where[160];
  snprintf(where, sizeof where, "%s %s n=%zu range=%s params=%zu offset=%zu", K->name, row_names[op], n,
           range_names[range], pi, off);
  if (!guards_intact(b0, n0, off) || !guards_intact(b1, n, off)) ck_abort_msg("%s: wrote outside [0, n)", where);
  for (size_t i = 0; i < n0; i++)
    if (!same_bits(g0[i], w0[i]))
      ck_abort_msg("%s: first output %zu (was %.9g; inputs %.9g %.9g %.9g): got %.9g, scalar %.9g", where, i,
                   (double)x0[i], (double)in[0][i % n], (double)in[1][i % n], (double)in[2][i % n],
                   (double)g0[i], (double)w0[i]);
  for (size_t i = 0; i < n; i++)
    if (row_has_o1(op) ? !same_bits(g1[i], w1[i]) : memcmp(&g1[i], &x1[i], sizeof(float)) != 0)
      ck_abort_msg("%s: second output %zu (was %.9g): got %.9g, scalar %.9g", where, i, (double)x1[i],
                   (double)g1[i], (double)w1[i]);
  free(b0);
  free(b1);
  for (int a = 0; a < 3; a++) free(in[a]), free(ins[a]);
  free(w0), free(w1), free(x0), free(x1);
}

START_TEST(row_loops_match_scalar_bitwise) {
  const asink_kernels *K = simd_tables[_i];
  for (int op = 0; op < ROW_COUNT; op++)
    for (size_t s = 0; s < N_SIZES; s++)
      for (int r = 0; r < R_COUNT; r++)
        for (size_t pi = 0; pi < N_ROW_PARAMS; pi++)
          for (size_t o = 0; o < N_OFFSETS; o++) run_row_case(K, (row_op)op, sizes[s], r, pi, offsets[o]);
}
END_TEST

/* Every table against kernels.h's formulas, written out here in their order (this file
 * is C11 too, so nothing is contracted): pins the order layers.c's results depend on. */
START_TEST(row_loops_follow_formulas) {
  const asink_kernels *K = all_tables[_i];
  enum { N = 37 };
  for (size_t pi = 0; pi < N_ROW_PARAMS; pi++)
    for (int op = 0; op < ROW_COUNT; op++) {
      const row_params *p = &row_param_sets[pi];
      rng = 4242 + pi * 17 + (uint64_t)op;
      float o0[2 * N] = {0}, o1[N] = {0}, a[N], b[N], c[N], e0[2 * N], e1[N];
      float *in[3] = {a, b, c};
      fill_row(op, o0, o1, in, N, R_WIDE);
      memcpy(e0, o0, sizeof o0);
      memcpy(e1, o1, sizeof o1);
      for (size_t i = 0; i < N; i++) {
        switch (op) {
        case ROW_RMS_SCALE: e0[i] = a[i] * p->r * b[i]; break;
        case ROW_RMS_BWD_TERMS: e0[i] = a[i] * c[i], e1[i] += a[i] * b[i] * p->r; break;
        case ROW_RMS_BWD_DX: e0[i] += a[i] * p->r - b[i] * p->k; break;
        case ROW_ROPE: {
          float va = o0[i], vb = o0[i + N], si = p->sign * b[i];
          e0[i] = va * a[i] - vb * si;
          e0[i + N] = vb * a[i] + va * si;
          break;
        }
        case ROW_SILU_GATE: e0[i] *= a[i] * b[i]; break;
        case ROW_SILU_GATE_NOU: e0[i] *= a[i]; break;
        default: {
          float sg = o0[i], d = sg * (1.f + b[i] * (1.f - sg));
          if (op == ROW_SILU_BWD) e1[i] = a[i] * b[i] * sg, e0[i] = a[i] * d * c[i];
          else e0[i] = a[i] * d;
        }
        }
      }
      call_row(K, op, N, o0, o1, in, p);
      for (size_t i = 0; i < row_o0_len(op, N); i++)
        if (!same_bits(o0[i], e0[i]))
          ck_abort_msg("%s %s params=%zu: first output %zu is %.9g, formula %.9g", K->name, row_names[op], pi,
                       i, (double)o0[i], (double)e0[i]);
      for (size_t i = 0; i < N; i++)
        if (!same_bits(o1[i], e1[i]))
          ck_abort_msg("%s %s params=%zu: second output %zu is %.9g, formula %.9g", K->name, row_names[op], pi,
                       i, (double)o1[i], (double)e1[i]);
    }
}
END_TEST

/* ---- exact values, every table including scalar ---- */

static float exp1(const asink_kernels *K, float v, size_t n, size_t pos) {
  float x[40] = {0};
  x[pos] = v;
  K->exp_shift(n, x, 0.f);
  for (size_t i = 0; i < n; i++)
    if (i != pos && x[i] != 1.f) ck_abort_msg("%s exp: neighbour %zu of %g became %g", K->name, i, (double)v, (double)x[i]);
  return x[pos];
}

/* Each special value at every position of rows of 1..40, so it goes through both the
 * vector body and the masked tail. */
/* dot_rows and axpy_rows of every table against a double-precision reference: row
 * lengths across the 8/16/32-lane tiles and their tails, strided rows, y accumulated. */
START_TEST(row_products_match_double_reference) {
  const asink_kernels *kn = all_tables[_i];
  const size_t ns[] = {1, 3, 17}, ks[] = {1, 7, 8, 9, 15, 16, 17, 31, 32, 33, 64, 65, 100};
  for (size_t a = 0; a < sizeof ns / sizeof *ns; a++)
    for (size_t b = 0; b < sizeof ks / sizeof *ks; b++) {
      size_t n = ns[a], k = ks[b], ld = k + 5;
      float *M = malloc(n * ld * sizeof(float)), *x = malloc(k * sizeof(float)), *c = malloc(n * sizeof(float));
      float *y = malloc(n * sizeof(float)), *z = malloc(k * sizeof(float));
      for (size_t i = 0; i < n * ld; i++) M[i] = (float)(next_u64() % 2001) / 1000.f - 1.f;
      for (size_t i = 0; i < k; i++) x[i] = (float)(next_u64() % 2001) / 1000.f - 1.f, z[i] = 0.5f;
      for (size_t i = 0; i < n; i++) c[i] = (float)(next_u64() % 2001) / 1000.f - 1.f;
      kn->dot_rows(n, k, x, M, ld, y);
      for (size_t j = 0; j < n; j++) {
        double want = 0.0;
        for (size_t p = 0; p < k; p++) want += (double)x[p] * M[j * ld + p];
        ck_assert_msg(fabs(y[j] - want) <= 1e-5 * (1.0 + fabs(want)), "%s dot_rows n=%zu k=%zu row %zu: %g vs %g",
                      kn->name, n, k, j, y[j], want);
      }
      kn->axpy_rows(n, k, c, M, ld, z);
      for (size_t p = 0; p < k; p++) {
        double want = 0.5;
        for (size_t j = 0; j < n; j++) want += (double)c[j] * M[j * ld + p];
        ck_assert_msg(fabs(z[p] - want) <= 1e-5 * (1.0 + fabs(want)), "%s axpy_rows n=%zu k=%zu col %zu: %g vs %g",
                      kn->name, n, k, p, z[p], want);
      }
      free(M), free(x), free(c), free(y), free(z);
    }
}
END_TEST

START_TEST(exp_special_values) {
  const asink_kernels *K = all_tables[_i];
  for (size_t n = 1; n <= 40; n++)
    for (size_t pos = 0; pos < n; pos++) {
      ck_assert_float_eq(exp1(K, 0.f, n, pos), 1.f);
      ck_assert_float_eq(exp1(K, -0.f, n, pos), 1.f);
      ck_assert_float_eq(exp1(K, 1e-40f, n, pos), 1.f);
      ck_assert_float_eq(exp1(K, -INFINITY, n, pos), 0.f);
      ck_assert_float_eq(exp1(K, -1e4f, n, pos), 0.f);
      ck_assert_float_eq(exp1(K, -FLT_MAX, n, pos), 0.f);
      ck_assert(isinf(exp1(K, INFINITY, n, pos)) && exp1(K, INFINITY, n, pos) > 0);
      ck_assert(isinf(exp1(K, 88.8f, n, pos)));
      ck_assert(isinf(exp1(K, FLT_MAX, n, pos)));
      ck_assert(isnan(exp1(K, NAN, n, pos)));
      ck_assert(isnan(exp1(K, -NAN, n, pos)));
      float t = exp1(K, -100.f, n, pos); /* 0 or a denormal, never garbage */
      ck_assert(t >= 0.f && t < FLT_MIN);
      t = exp1(K, -87.5f, n, pos);
      ck_assert(t >= 0.f && t < FLT_MIN);
      t = exp1(K, 0x1.62e42ep+6f, n, pos); /* largest x with a finite expf */
      ck_assert(isfinite(t) && fabsf(t - expf(0x1.62e42ep+6f)) <= 2e-7f * expf(0x1.62e42ep+6f));
      t = exp1(K, -87.f, n, pos); /* smallest normal results */
      ck_assert(fabsf(t - expf(-87.f)) <= 2e-7f * expf(-87.f));
    }
}
END_TEST

START_TEST(sigmoid_elu1_special_values) {
  const asink_kernels *K = all_tables[_i];
  static const float in[] = {0.f, -0.f, 100.f, -100.f, INFINITY, -INFINITY, NAN, 2.f, 1e-40f, -1e-40f, 1e4f, -1e4f, 88.8f, -88.8f};
  enum { N = sizeof in / sizeof *in };
  float s[N], e[N];
  memcpy(s, in, sizeof in);
  memcpy(e, in, sizeof in);
  K->sigmoid(N, s);
  K->elu1(N, e);
  for (int i = 0; i < N; i++) {
    if (isnan(in[i])) {
      ck_assert_msg(isnan(s[i]) && isnan(e[i]), "%s: NaN in, sigmoid %g elu1 %g", K->name, (double)s[i], (double)e[i]);
      continue;
    }
    ck_assert_msg(s[i] >= 0.f && s[i] <= 1.f, "%s: sigmoid(%g) = %g", K->name, (double)in[i], (double)s[i]);
    if (in[i] >= 100.f) ck_assert_float_eq(s[i], 1.f);
    if (in[i] <= -100.f) ck_assert_msg(s[i] <= 1e-30f, "%s: sigmoid(%g) = %g", K->name, (double)in[i], (double)s[i]);
    if (in[i] == 0.f) ck_assert_float_eq(s[i], 0.5f);
    if (in[i] > 0.f) ck_assert_float_eq(e[i], in[i] + 1.f);
    else if (in[i] < -87.34f) ck_assert(e[i] >= 0.f && e[i] < FLT_MIN);
    else ck_assert_msg(fabsf(e[i] - expf(in[i])) <= 2e-7f * expf(in[i]), "%s: elu1(%g) = %g", K->name, (double)in[i], (double)e[i]);
  }
  ck_assert_float_eq(s[1], 0.5f);
  ck_assert_float_eq(e[0], 1.f);
  ck_assert_float_eq(e[1], 1.f);
  ck_assert_float_eq(e[5], 0.f);
  ck_assert(isinf(e[4]));
}
END_TEST

START_TEST(max_nan_anywhere_and_empty) {
  const asink_kernels *K = all_tables[_i];
  ck_assert(K->max(0, NULL) == -INFINITY);
  float x[300];
  for (size_t n = 1; n <= 300; n += (n < 70 ? 1 : 37)) {
    for (size_t i = 0; i < n; i++) x[i] = -INFINITY;
    ck_assert_msg(K->max(n, x) == -INFINITY, "%s n=%zu all -inf", K->name, n);
    for (size_t pos = 0; pos < n; pos++) {
      for (size_t i = 0; i < n; i++) x[i] = (float)i - 1e3f;
      x[pos] = INFINITY;
      if (K->max(n, x) != INFINITY) ck_abort_msg("%s n=%zu +inf at %zu", K->name, n, pos);
      x[pos] = NAN;
      if (!isnan(K->max(n, x))) ck_abort_msg("%s n=%zu NaN at %zu", K->name, n, pos);
      x[(pos + 1) % n] = INFINITY; /* NaN beside inf still wins */
      if (n > 1 && !isnan(K->max(n, x))) ck_abort_msg("%s n=%zu NaN at %zu beside inf", K->name, n, pos);
    }
  }
}
END_TEST

/* exp_shift_sum returns the sum of what it wrote, and writes what exp_shift writes. */
START_TEST(exp_shift_sum_is_sum_of_outputs) {
  const asink_kernels *K = all_tables[_i];
  for (size_t s = 0; s < N_SIZES; s++)
    for (int r = 0; r < R_COUNT; r++) {
      size_t n = sizes[s];
      rng = 99 + n * 13 + (uint64_t)r;
      float *x = malloc((n + 1) * sizeof *x), *y = malloc((n + 1) * sizeof *y);
      ck_assert_ptr_nonnull(x);
      ck_assert_ptr_nonnull(y);
      fill(x, n, r == R_SPECIAL ? R_WIDE : r);
      float shift = r == R_DENORM ? 0.f : K->max(n, x); /* R_DENORM: results 0 or denormal */
      if (n) memcpy(y, x, n * sizeof *x);
      float got = K->exp_shift_sum(n, x, shift);
      K->exp_shift(n, y, shift);
      double sum = 0;
      for (size_t i = 0; i < n; i++) {
        if (memcmp(&x[i], &y[i], sizeof(float)) != 0)
          ck_abort_msg("%s n=%zu: exp_shift_sum wrote %.9g, exp_shift %.9g at %zu", K->name, n, (double)x[i], (double)y[i], i);
        sum += x[i];
      }
      if (!(fabs(got - sum) <= 1e-5 * sum + 1e-30))
        ck_abort_msg("%s n=%zu range=%s: returned %.9g, outputs sum to %.9g", K->name, n, range_names[r], (double)got, sum);
      free(x);
      free(y);
    }
}
END_TEST

/* exp_shift_sum_dot writes the same outputs and returns the same sum as exp_shift_sum,
 * bit for bit, and its dot matches sum_i out_i * in_i (double) over every range. */
START_TEST(exp_shift_sum_dot_matches_exp_shift_sum) {
  const asink_kernels *K = all_tables[_i];
  for (size_t s = 0; s < N_SIZES; s++)
    for (int r = 0; r < R_COUNT; r++) {
      size_t n = sizes[s];
      rng = 7 + n * 31 + (uint64_t)r;
      float *in = malloc((n + 1) * sizeof *in), *x = malloc((n + 1) * sizeof *x),
            *y = malloc((n + 1) * sizeof *y);
      fill(in, n, r == R_SPECIAL ? R_WIDE : r);
      float shift = r == R_DENORM ? 0.f : K->max(n, in);
      if (n) memcpy(x, in, n * sizeof *x), memcpy(y, in, n * sizeof *y);
      float dot = -1.f, got = K->exp_shift_sum_dot(n, x, shift, &dot);
      float want = K->exp_shift_sum(n, y, shift);
      ck_assert_msg(!memcmp(&got, &want, sizeof got), "%s n=%zu: sum %.9g vs %.9g", K->name, n,
                    (double)got, (double)want);
      double ref = 0, mag = 0;
      for (size_t i = 0; i < n; i++) {
        ck_assert_msg(!memcmp(&x[i], &y[i], sizeof(float)), "%s n=%zu: output %zu differs", K->name, n, i);
        ref += (double)x[i] * in[i];
        mag += fabs((double)x[i] * in[i]);
      }
      if (isnan(ref)) ck_assert_msg(isnan(dot), "%s n=%zu: dot %g, want NaN", K->name, n, (double)dot);
      else ck_assert_msg(fabs(dot - ref) <= 1e-5 * mag + 1e-30, "%s n=%zu range=%s: dot %.9g vs %.9g",
                         K->name, n, range_names[r], (double)dot, ref);
      free(in), free(x), free(y);
    }
}
END_TEST

/* Dense sweep of exp, sigmoid and elu1 over the normal-result range against the exact
 * value (double), which libm's expf matches to 0.5 ulp; libm's own sigmoid formula is
 * not that close (1 + e and the division round too), so it is no yardstick. The
 * contract's bound is ~2e-7 relative; results near 1 have an ulp of 1.2e-7, so the
 * limit is 2 ulp of the result or 2e-7 relative, whichever is larger. */
static double ulp_of(float v) { return (double)nextafterf(fabsf(v), INFINITY) - fabsf(v); }

START_TEST(accuracy_against_libm) {
  const asink_kernels *K = all_tables[_i];
  enum { N = 1 << 16 };
  static float x[N], e[N], s[N], u[N];
  const double lo = -87.33f, hi = 88.72f;
  double worst_ulp[3] = {0, 0, 0}, worst_rel[3] = {0, 0, 0};
  for (int chunk = 0; chunk < 32; chunk++) {
    for (int i = 0; i < N; i++) {
      double t = (double)(chunk * N + i) / (32.0 * N);
      x[i] = (float)(lo + (hi - lo) * t);
    }
    memcpy(e, x, sizeof x);
    memcpy(s, x, sizeof x);
    memcpy(u, x, sizeof x);
    K->exp_shift(N, e, 0.f);
    K->sigmoid(N, s);
    K->elu1(N, u);
    for (int i = 0; i < N; i++) {
      double xd = x[i];
      double ref[3] = {exp(xd), 1.0 / (1.0 + exp(-xd)), x[i] > 0 ? (double)(x[i] + 1.f) : exp(xd)};
      float got[3] = {e[i], s[i], u[i]};
      for (int f = 0; f < 3; f++) {
        if (ref[f] < 1e-30) continue; /* sigmoid's tail: covered by the absolute test above */
        double err = fabs((double)got[f] - ref[f]);
        double lim = fmax(2e-7 * ref[f], 2 * ulp_of((float)ref[f]));
        worst_ulp[f] = fmax(worst_ulp[f], err / ulp_of((float)ref[f]));
        worst_rel[f] = fmax(worst_rel[f], err / ref[f]);
        if (err > lim)
          ck_abort_msg("%s f=%d x=%.9g: got %.9g, libm %.9g (%.2f ulp)", K->name, f, (double)x[i],
                       (double)got[f], ref[f], err / ulp_of((float)ref[f]));
      }
    }
  }
  printf("%s: worst error: exp %.2f ulp %.2g rel, sigmoid %.2f ulp %.2g rel, elu1 %.2f ulp %.2g rel\n",
         K->name, worst_ulp[0], worst_rel[0], worst_ulp[1], worst_rel[1], worst_ulp[2], worst_rel[2]);
}
END_TEST

Suite *kernels_suite(void) {
  Suite *su = suite_create("kernels");
  TCase *tc = tcase_create("simd_vs_scalar");
  tcase_set_timeout(tc, 300);
  tcase_add_loop_test(tc, reductions_match_scalar, 0, n_simd);
  tcase_add_loop_test(tc, linear_maps_match_scalar, 0, n_simd);
  tcase_add_loop_test(tc, exp_maps_match_scalar, 0, n_simd);
  tcase_add_loop_test(tc, linear_maps_are_bit_exact, 0, n_simd);
  tcase_add_loop_test(tc, row_loops_match_scalar_bitwise, 0, n_simd);
  suite_add_tcase(su, tc);
  TCase *tv = tcase_create("exact_values");
  tcase_set_timeout(tv, 300);
  tcase_add_loop_test(tv, exp_special_values, 0, n_all);
  tcase_add_loop_test(tv, row_products_match_double_reference, 0, n_all);
  tcase_add_loop_test(tv, sigmoid_elu1_special_values, 0, n_all);
  tcase_add_loop_test(tv, max_nan_anywhere_and_empty, 0, n_all);
  tcase_add_loop_test(tv, exp_shift_sum_is_sum_of_outputs, 0, n_all);
  tcase_add_loop_test(tv, exp_shift_sum_dot_matches_exp_shift_sum, 0, n_all);
  tcase_add_loop_test(tv, accuracy_against_libm, 0, n_all);
  tcase_add_loop_test(tv, row_loops_follow_formulas, 0, n_all);
  suite_add_tcase(su, tv);
  return su;
}

int main(void) {
  find_tables();
  printf("kernel tables under test:");
  for (int i = 0; i < n_all; i++) printf(" %s", all_tables[i]->name);
  printf("\n");
  fflush(stdout);
  SRunner *sr = srunner_create(kernels_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
