/* The library's GEMM driver against BLIS's own, on the shapes the models run.
 *
 *   bench_gemm [--threads N] [--reps R]
 *
 * One JSON line per (shape, driver): bench, shape, m, n, k, transa, transb, driver
 * ("packed": core/blas.c's loops around the SIMD table's packing and micro-kernel;
 * "blis": bli_sgemm_ex, with the kernels of BLIS's own CPU detection or BLIS_ARCH_TYPE),
 * seconds (best of R), gflops, and paired_roof_fraction: the median over the R runs
 * of (run rate / the rate of a BLIS 1024^3 sgemm run right after it), which cancels
 * this machine's drift. The two drivers take turns run by run, and the packed line adds
 * speedup_vs_blis: the median over the R pairs of (BLIS's time / the packed time). */
#include <string.h>

#include "bench_args.h"
#include "bench_common.h"
#include "core/blas.h"

typedef struct {
  const char *name;
  int m, n, k;
  bool ta, tb;
} gemm_shape;

/* tiny: 32 x 128 tokens, width 128, SwiGLU 256, vocab 256; study60m: 4 x 256 tokens,
 * width 768, SwiGLU 1536; attention: one 256-row block of a T = 1024, D = 64 head. */
static const gemm_shape shapes[] = {
    {"tiny.qkv", 4096, 384, 128, false, true},     {"tiny.down", 4096, 128, 256, false, true},
    {"tiny.dx_qkv", 4096, 128, 384, false, false}, {"tiny.dw_qkv", 384, 128, 4096, true, false},
    {"tiny.dw_up", 512, 128, 4096, true, false},   {"60m.qkv", 1024, 2304, 768, false, true},
    {"60m.dx_up", 1024, 768, 3072, false, false},  {"60m.dw_up", 3072, 768, 1024, true, false},
    {"attn.qk", 256, 1024, 64, false, true},       {"attn.pv", 256, 64, 1024, false, false},
    {"square1024", 1024, 1024, 1024, false, false},
};

int main(int argc, char **argv) {
  int threads = 0, reps = 9;
  const bench_arg args[] = {
      {"--threads", "N", BENCH_ARG_INT, &threads, 0, 0, "threads; 0: the library's default"},
      {"--reps", "R", BENCH_ARG_INT, &reps, 1, 1000, "timed runs per shape and driver"},
  };
  int status = bench_args_parse(argc, argv,
                                "The library's GEMM driver against BLIS's on the models' shapes, "
                                "one JSON line per (shape,\ndriver) on stdout, with paired "
                                "fractions of a BLIS sgemm 1024^3 roof (docs/performance.md).",
                                args, BENCH_NARGS(args));
  if (status != BENCH_ARGS_GO) return status;
  if (asink_init() != ASINK_OK) {
    fprintf(stderr, "bench_gemm: %s\n", asink_last_error());
    return 2;
  }
  if (threads > 0 && asink_set_num_threads(threads) != ASINK_OK) {
    fprintf(stderr, "bench_gemm: %s\n", asink_last_error());
    return 2;
  }
  threads = asink_get_num_threads();
  fprintf(stderr, "%s\n", asink_runtime_info());
  float *ra = calloc(1024 * 1024, 4), *rb = calloc(1024 * 1024, 4), *rc = calloc(1024 * 1024, 4);
  double *ratio[2] = {malloc(sizeof(double) * reps), malloc(sizeof(double) * reps)};
  double *speedup = malloc(sizeof(double) * reps);
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    const gemm_shape *g = &shapes[s];
    size_t na = (size_t)g->m * g->k, nb = (size_t)g->k * g->n, nc = (size_t)g->m * g->n;
    float *A = malloc(na * 4), *B = malloc(nb * 4), *C = calloc(nc, 4);
    for (size_t i = 0; i < na; i++) A[i] = (float)(i % 17) * 0.01f;
    for (size_t i = 0; i < nb; i++) B[i] = (float)(i % 11) * 0.01f;
    int lda = g->ta ? g->m : g->k, ldb = g->tb ? g->k : g->n;
    double flops = 2.0 * g->m * g->n * g->k, best[2] = {1e30, 1e30}, dt[2];
    for (int r = -1; r < reps; r++) {
      for (int driver = 1; driver >= 0; driver--) {
        asink_sgemm_force_driver(driver);
        double t0 = bench_now();
        asink_sgemm(g->ta, g->tb, g->m, g->n, g->k, 1.f, A, lda, B, ldb, 0.f, C, g->n, threads);
        dt[driver] = bench_now() - t0;
        double roof_dt = bench_sgemm_once(threads, ra, rb, rc);
        if (r < 0) continue; /* first touches */
        if (dt[driver] < best[driver]) best[driver] = dt[driver];
        ratio[driver][r] = (flops / dt[driver]) / (2.0 * 1024 * 1024 * 1024 / roof_dt);
      }
      if (r >= 0) speedup[r] = dt[0] / dt[1];
    }
    qsort(speedup, reps, sizeof *speedup, bench_cmp_double);
    for (int driver = 1; driver >= 0; driver--) {
      qsort(ratio[driver], reps, sizeof *ratio[driver], bench_cmp_double);
      printf("{\"bench\": \"gemm\", \"shape\": \"%s\", \"m\": %d, \"n\": %d, \"k\": %d, "
             "\"transa\": %d, \"transb\": %d, \"threads\": %d, \"driver\": \"%s\", "
             "\"seconds\": %.6f, \"gflops\": %.2f, \"paired_roof_fraction\": %.3f",
             g->name, g->m, g->n, g->k, g->ta, g->tb, threads, driver ? "packed" : "blis",
             best[driver], flops / best[driver] / 1e9, ratio[driver][reps / 2]);
      if (driver) printf(", \"speedup_vs_blis\": %.3f", speedup[reps / 2]);
      printf("}\n");
      fflush(stdout);
    }
    asink_sgemm_force_driver(-1);
    free(A), free(B), free(C);
  }
  free(ra), free(rb), free(rc), free(ratio[0]), free(ratio[1]), free(speedup);
  return 0;
}
