/* SIMD kernel microbenchmark: one JSON line per (table, kernel, n).
 *   bench_kernels [--n 1024,16384] [--ms 30]
 * Each in-place kernel runs on a fresh copy of its input every repetition (the
 * values stay those of real use: scores in [-20, 0] for exp, [-8, 8] for sigmoid and
 * elu); the copy's own time, measured alone, is subtracted. Times are the best of 5
 * batches, in ns per element; speedup is against the scalar table in the same run.
 * Then each table's GEMM pack kernel on a 4096 x 128 row-major operand (2 MiB, about
 * an L2): read across rows into panels as wide as the micro-kernel's rows (mr, the
 * activations' way: "pack_transposed"), read straight into panels as wide as its
 * columns (nr) 16 rows at a time ("pack_straight"), beside a memcpy of the same
 * bytes; ns per float, best of 5. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_args.h"
#include "bench_common.h"
#include "core/runtime.h"
#include "kernels/kernels.h"

enum { K_MAX, K_SUM, K_ABS_SUM, K_DOT, K_SCALE, K_AXPY, K_ADD_RAMP, K_ADD_CONST, K_EXP_SHIFT_SUM,
       K_EXP_SHIFT, K_SIGMOID, K_ELU1, K_SOFTMAX_BWD, K_SIGMOID_BWD, K_ELU1_BWD, K_SHIFT_SCALE, K_COUNT };
static const char *const names[K_COUNT] = {
    "max", "sum", "abs_sum", "dot", "scale", "axpy", "add_ramp", "add_const", "exp_shift_sum",
    "exp_shift", "sigmoid", "elu1", "softmax_bwd", "sigmoid_bwd", "elu1_bwd", "shift_scale"};

static volatile float sink;

static void run(const asink_kernels *K, int k, size_t n, float *x, const float *y) {
  switch (k) {
  case K_MAX: sink = K->max(n, x); break;
  case K_SUM: sink = K->sum(n, x); break;
  case K_ABS_SUM: sink = K->abs_sum(n, x); break;
  case K_DOT: sink = K->dot(n, x, y); break;
  case K_SCALE: K->scale(n, x, 0.5f); break;
  case K_AXPY: K->axpy(n, 0.5f, y, x); break;
  case K_ADD_RAMP: K->add_ramp(n, x, -0.01f, -100.f); break;
  case K_ADD_CONST: K->add_const(n, x, 0.5f); break;
  case K_EXP_SHIFT_SUM: sink = K->exp_shift_sum(n, x, 0.f); break;
  case K_EXP_SHIFT: K->exp_shift(n, x, 0.f); break;
  case K_SIGMOID: K->sigmoid(n, x); break;
  case K_ELU1: K->elu1(n, x); break;
  case K_SOFTMAX_BWD: K->softmax_bwd(n, x, y, 0.1f, 0.5f); break;
  case K_SIGMOID_BWD: K->sigmoid_bwd(n, x, y, 0.1f, 0.5f); break;
  case K_ELU1_BWD: K->elu1_bwd(n, x, y, 0.1f, 0.5f); break;
  default: K->shift_scale(n, x, 0.1f, 0.5f); break;
  }
}

/* Best-of-5 ns per element of `reps` repetitions of copy (+ kernel k when K is set). */
static double time_ns(const asink_kernels *K, int k, size_t n, float *x, const float *src,
                      const float *y, long reps) {
  double best = 1e30;
  for (int b = 0; b < 5; b++) {
    double t0 = bench_now();
    for (long r = 0; r < reps; r++) {
      memcpy(x, src, n * sizeof *x);
      if (K) run(K, k, n, x, y);
    }
    double dt = (bench_now() - t0) / (double)reps / (double)n * 1e9;
    if (dt < best) best = dt;
  }
  return best;
}

/* The GEMM pack kernel against memcpy on the tiny model's activation shape. */
static void bench_packs(const asink_kernels *const *tables, int nt) {
  enum { R = 4096, C = 128, REPS = 20 };
  float *src = malloc(sizeof(float) * R * C), *dst = aligned_alloc(64, sizeof(float) * R * C);
  if (!src || !dst) return;
  for (size_t i = 0; i < (size_t)R * C; i++) src[i] = (float)(i % 97);
  const char *cases[3] = {"memcpy", "pack_transposed", "pack_straight"};
  for (int t = 0; t < nt; t++) {
    const asink_kernels *K = tables[t];
    const int mr = (int)K->gemm.mr, nr = (int)K->gemm.nr;
    for (int c = 0; c < 3; c++) {
      double best = 1e30;
      for (int b = 0; b < 5; b++) {
        double t0 = bench_now();
        for (int it = 0; it < REPS; it++) {
          if (c == 0) memcpy(dst, src, sizeof(float) * R * C);
          else if (c == 1)
            for (int r = 0; r < R; r += mr)
              K->pack_panel(dst + (size_t)r * C, src + (size_t)r * C, (size_t)mr,
                            (size_t)(R - r < mr ? R - r : mr), C, C, 1);
          else
            for (int p = 0; p < R; p += 16)
              for (int q = 0; q < C / nr; q++)
                K->pack_panel(dst + (size_t)q * nr * R + (size_t)p * nr, src + (size_t)p * C + q * nr,
                              (size_t)nr, (size_t)nr, 16, 1, C);
        }
        double ns = (bench_now() - t0) / REPS / ((double)R * C) * 1e9;
        if (ns < best) best = ns;
      }
      printf("{\"case\":\"%s\",\"table\":\"%s\",\"rows\":%d,\"cols\":%d,\"panel\":%d,"
             "\"ns_per_float\":%.4f}\n",
             cases[c], K->name, R, C, c == 1 ? mr : c == 2 ? nr : 0, best);
      fflush(stdout);
    }
  }
  free(src);
  free(dst);
}

int main(int argc, char **argv) {
  bench_ints sizes = {2, {1024, 16384}};
  double ms = 30;
  const bench_arg args[] = {
      {"--n", "LIST", BENCH_ARG_INTS, &sizes, 1, 1 << 26, "row lengths"},
      {"--ms", "MS", BENCH_ARG_DOUBLE, &ms, 0.01, 1e6, "milliseconds of work per kernel and size, about"},
  };
  int rc = bench_args_parse(argc, argv,
                            "Each SIMD table's row kernels and GEMM packing against the scalar "
                            "table, one JSON line per\n(table, kernel, n) on stdout.",
                            args, BENCH_NARGS(args));
  if (rc != BENCH_ARGS_GO) return rc;
  const asink_kernels *tables[3] = {&asink_kernels_scalar};
  int nt = 1;
  asink_isa best = asink_cpu_best_isa();
  if (asink_kernels_avx2_table && best >= ASINK_ISA_AVX2) tables[nt++] = asink_kernels_avx2_table;
  if (asink_kernels_avx512_table && best >= ASINK_ISA_AVX512) tables[nt++] = asink_kernels_avx512_table;

  for (int si = 0; si < sizes.n; si++) {
    size_t n = (size_t)sizes.v[si];
    float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
    float *src_exp = malloc(n * sizeof *x), *src_act = malloc(n * sizeof *x);
    if (!x || !y || !src_exp || !src_act) return 1;
    unsigned seed = 12345;
    for (size_t i = 0; i < n; i++) {
      seed = seed * 1664525u + 1013904223u;
      float u = (float)(seed >> 8) / 16777216.f;
      src_exp[i] = -20.f * u;
      src_act[i] = 16.f * u - 8.f;
      y[i] = u;
    }
    /* aim each batch at ms/5 of work, judged on the scalar exp */
    double probe = time_ns(&asink_kernels_scalar, K_EXP_SHIFT, n, x, src_exp, y, 20);
    long reps = (long)(ms / 5 * 1e6 / (probe * (double)n)) + 1;
    double copy = time_ns(NULL, 0, n, x, src_exp, y, reps);
    double scalar_ns[K_COUNT];
    for (int t = 0; t < nt; t++)
      for (int k = 0; k < K_COUNT; k++) {
        const float *src = (k == K_SIGMOID || k == K_ELU1) ? src_act : src_exp;
        double ns = time_ns(tables[t], k, n, x, src, y, reps) - copy;
        if (ns < 1e-3) ns = 1e-3;
        if (t == 0) scalar_ns[k] = ns;
        printf("{\"case\":\"kernel_%s\",\"table\":\"%s\",\"n\":%zu,\"ns_per_elem\":%.4f,"
               "\"gelem_per_s\":%.3f,\"speedup_vs_scalar\":%.2f}\n",
               names[k], tables[t]->name, n, ns, 1.0 / ns, scalar_ns[k] / ns);
        fflush(stdout);
      }
    free(x), free(y), free(src_exp), free(src_act);
  }
  bench_packs(tables, nt);
  return 0;
}
