/* Attention benchmark: one JSON line per case.
 *   bench_attention [--threads N] [--reps R] [--T 256,1024,4096] [--ops softmax,sigmoid]
 *                   [--B 1] [--H 8] [--D 64] [--modes fwd,fwdbwd]
 * FLOPs count the visible (causal) part only: forward 4*D per visible (query, key)
 * pair (q.k and A.v), backward 8*D (dP, dS.K, dS^T.Q, A^T.dO; the recomputation of
 * the scores is not counted), so fwdbwd = 12*D per pair. The roof is BLIS sgemm
 * 1024^3 measured in the same run with the same thread count; paired_roof_fraction is
 * the median over the timed runs of (run's GFLOP/s) / (a 1024^3 GEMM's right after it),
 * which this machine's drifting speed disturbs less. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attnsink.h"
#include "bench_args.h"
#include "bench_common.h"

static void fill(float *x, size_t n, unsigned seed) {
  for (size_t i = 0; i < n; i++) {
    seed = seed * 1664525u + 1013904223u;
    x[i] = ((seed >> 8) / 16777216.f - 0.5f) * 2.f;
  }
}

int main(int argc, char **argv) {
  int threads = 0, reps = 5, B = 1, H = 8, D = 64;
  bench_ints Ts = {3, {256, 1024, 4096}};
  const char *ops = "softmax,sigmoid", *modes = "fwd,fwdbwd";
  const bench_arg args[] = {
      {"--threads", "N", BENCH_ARG_INT, &threads, 0, 0, "threads; 0: the library's default"},
      {"--reps", "R", BENCH_ARG_INT, &reps, 1, 0, "timed runs per case, after one untimed"},
      {"--T", "LIST", BENCH_ARG_INTS, &Ts, 1, 0, "sequence lengths"},
      {"--ops", "LIST", BENCH_ARG_STRING, &ops, 0, 0, "attention specs, comma-separated"},
      {"--B", "N", BENCH_ARG_INT, &B, 1, 0, "batch"},
      {"--H", "N", BENCH_ARG_INT, &H, 1, 0, "heads"},
      {"--D", "N", BENCH_ARG_INT, &D, 1, 0, "head dimension"},
      {"--modes", "LIST", BENCH_ARG_STRING, &modes, 0, 0, "fwd, fwdbwd or both, comma-separated"},
  };
  int rc = bench_args_parse(argc, argv,
                            "Causal attention forward and forward+backward, one JSON line per "
                            "(op, mode, T) on stdout,\nwith the same-run BLIS sgemm 1024^3 roof "
                            "(docs/performance.md).",
                            args, BENCH_NARGS(args));
  if (rc != BENCH_ARGS_GO) return rc;
  bool run_mode[2] = {false, false};
  for (const char *m = modes;;) {
    size_t len = strcspn(m, ",");
    if (len == 3 && !strncmp(m, "fwd", 3)) run_mode[0] = true;
    else if (len == 6 && !strncmp(m, "fwdbwd", 6)) run_mode[1] = true;
    else {
      fprintf(stderr, "bench_attention: --modes: unknown mode '%.*s' (fwd, fwdbwd)\n", (int)len, m);
      return 2;
    }
    if (!m[len]) break;
    m += len + 1;
  }
  char oplist[256], check[256];
  if (strlen(ops) >= sizeof oplist) {
    fprintf(stderr, "bench_attention: --ops is longer than %zu characters\n", sizeof oplist - 1);
    return 2;
  }
  snprintf(oplist, sizeof oplist, "%s", ops);
  snprintf(check, sizeof check, "%s", ops);
  /* every spec is checked before anything is timed */
  for (char *save = NULL, *op = strtok_r(check, ",", &save); op; op = strtok_r(NULL, ",", &save)) {
    asink_attn *a;
    if (asink_attn_create(&a, op, H, H, D) != ASINK_OK) {
      fprintf(stderr, "bench_attention: --ops: %s\n", asink_last_error());
      return 2;
    }
    asink_attn_free(a);
  }
  if ((threads = bench_init(threads)) < 0) return 2;
  /* The roof is measured before every case and the best is used for all of them, so
   * a roof taken while something else ran cannot inflate the fractions. Lines are
   * printed at the end, with that roof. */
  double roof = bench_sgemm_roof(threads);
  enum { MAX_CASES = 64 };
  struct {
    const char *op, *mode;
    int T;
    double seconds, gflops, paired;
  } res[MAX_CASES];
  float *ga = calloc(3 * 1024 * 1024, sizeof(float));
  if (!ga) return 1;
  for (int i = 0; i < 2 * 1024 * 1024; i++) ga[i] = (float)(i % 13) * 0.01f;
  int nres = 0;
  for (char *save = NULL, *op = strtok_r(oplist, ",", &save); op; op = strtok_r(NULL, ",", &save)) {
    for (int ti = 0; ti < Ts.n; ti++) {
      int T = Ts.v[ti];
      size_t n = (size_t)B * T * H * D;
      float *q = malloc(n * 4), *k = malloc(n * 4), *v = malloc(n * 4), *o = malloc(n * 4),
            *dout = malloc(n * 4), *dq = malloc(n * 4), *dk = malloc(n * 4), *dv = malloc(n * 4);
      fill(q, n, 1), fill(k, n, 2), fill(v, n, 3), fill(dout, n, 4);
      asink_attn *a;
      if (asink_attn_create(&a, op, H, H, D) != ASINK_OK) {
        fprintf(stderr, "%s\n", asink_last_error());
        return 2;
      }
      double visible = (double)T * (T + 1) / 2 * B * H;
      double r2 = bench_sgemm_roof(threads);
      if (r2 > roof) roof = r2;
      for (int mode = 0; mode < 2 && nres < MAX_CASES; mode++) {
        if (!run_mode[mode]) continue;
        double best = 1e30, ratio[64];
        double flops = visible * D * (mode ? 12.0 : 4.0);
        int nr = 0;
        for (int r = 0; r < reps + 1 && nr < 64; r++) {
          double t0 = bench_now();
          asink_attn_forward(a, B, T, q, k, v, o, NULL);
          if (mode) asink_attn_backward(a, B, T, T, q, k, v, o, dout, dq, dk, dv);
          double dt = bench_now() - t0;
          /* each run is paired with a roof GEMM right after it: their ratio cancels the
           * slow drift of this machine's speed; the median of the ratios is reported */
          double tg = bench_sgemm_once(threads, ga, ga + 1024 * 1024, ga + 2 * 1024 * 1024);
          if (!r) continue; /* first run: workspaces and page faults */
          if (dt < best) best = dt;
          ratio[nr++] = (flops / dt) / (2.0 * 1024 * 1024 * 1024 / tg);
        }
        qsort(ratio, nr, sizeof *ratio, bench_cmp_double);
        res[nres].op = ops + (op - oplist), res[nres].mode = mode ? "fwdbwd" : "fwd";
        res[nres].T = T, res[nres].seconds = best, res[nres].gflops = flops / best / 1e9;
        res[nres].paired = nr ? ratio[nr / 2] : 0.0;
        nres++;
      }
      asink_attn_free(a);
      free(q), free(k), free(v), free(o), free(dout), free(dq), free(dk), free(dv);
    }
  }
  for (int i = 0; i < nres; i++)
    printf("{\"bench\": \"attention\", \"op\": \"%.*s\", \"mode\": \"%s\", \"B\": %d, \"H\": %d, "
           "\"T\": %d, \"D\": %d, \"threads\": %d, \"seconds\": %.6f, \"gflops\": %.2f, "
           "\"roof_gflops\": %.2f, \"roof_fraction\": %.3f, \"paired_roof_fraction\": %.3f}\n",
           (int)strcspn(res[i].op, ","), res[i].op, res[i].mode, B, H, res[i].T, D, threads,
           res[i].seconds, res[i].gflops, roof, res[i].gflops / roof, res[i].paired);
  free(ga);
  return 0;
}
