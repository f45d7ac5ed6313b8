/* The cost of an attached metric on the model's forward pass (docs/performance.md).
 *   bench_metric [--threads N] [--reps R]
 * A small llama model (4 layers, width 256, 4 heads of 64, SwiGLU 688, vocab 512) runs its
 * layers (asink_model_forward with logits NULL, as m.sink_stats does) on the same tokens,
 * once without a metric and once with one attached, alternately, so that noise (frequency
 * changes, other load) hits both; each is timed R times after one warm-up of each. The metric
 * stays attached and keeps accumulating, as in a probe over many batches. One JSON line per
 * case: seconds_plain and seconds_metric are the best times, overhead = metric / plain - 1;
 * overhead_median is the median of the per-pair ratios minus 1. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attnsink.h"
#include "bench_args.h"
#include "bench_common.h"

static const char *CONFIG =
    "{\"model_type\": \"llama\", \"vocab_size\": 512, \"hidden_size\": 256, "
    "\"intermediate_size\": 688, \"num_hidden_layers\": 4, \"num_attention_heads\": 4, "
    "\"num_key_value_heads\": 4, \"rms_norm_eps\": 1e-5, \"rope_theta\": 10000.0, "
    "\"max_position_embeddings\": 2048, \"tie_word_embeddings\": false}";

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static int die(const char *what) {
  fprintf(stderr, "%s: %s\n", what, asink_last_error());
  return 1;
}

int main(int argc, char **argv) {
  int threads = 0, reps = 15;
  const bench_arg args[] = {
      {"--threads", "N", BENCH_ARG_INT, &threads, 0, 0, "threads; 0: the library's default"},
      {"--reps", "R", BENCH_ARG_INT, &reps, 1, 0, "timed pairs (without, with the metric) per case"},
  };
  int rc = bench_args_parse(argc, argv,
                            "The cost of a metric attached to a small model's forward pass, one "
                            "JSON line per case on stdout\n(docs/performance.md).",
                            args, BENCH_NARGS(args));
  if (rc != BENCH_ARGS_GO) return rc;
  if (asink_init() != ASINK_OK) return die("asink_init");
  if (threads > 0 && asink_set_num_threads(threads) != ASINK_OK) return die("threads");
  threads = asink_get_num_threads();
  fprintf(stderr, "%s\n", asink_runtime_info());

  asink_model *m;
  if (asink_model_create(&m, CONFIG, 1) != ASINK_OK) return die("asink_model_create");
  const struct {
    int B, T;
  } cases[] = {{32, 64}, {2, 1024}};
  for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
    const int B = cases[c].B, T = cases[c].T;
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)B * T);
    double *plain = malloc(sizeof(double) * reps), *with = malloc(sizeof(double) * reps),
           *ratio = malloc(sizeof(double) * reps);
    unsigned seed = 12345;
    for (int i = 0; i < B * T; i++) {
      seed = seed * 1664525u + 1013904223u;
      tok[i] = (int32_t)((seed >> 8) % 512);
    }
    asink_metric *mt;
    if (asink_metric_create(&mt, 0.3f) != ASINK_OK) return die("asink_metric_create");
    for (int r = -1; r < reps; r++) { /* r = -1: warm-up (workspaces, page faults) */
      double t[2];
      for (int mode = 0; mode < 2; mode++) {
        if (asink_model_attach_metric(m, mode ? mt : NULL) != ASINK_OK) return die("attach");
        double t0 = bench_now();
        if (asink_model_forward(m, B, T, tok, NULL) != ASINK_OK) return die("forward");
        t[mode] = bench_now() - t0;
      }
      if (r >= 0) plain[r] = t[0], with[r] = t[1], ratio[r] = t[1] / t[0];
    }
    asink_model_attach_metric(m, NULL);
    int n_seq;
    asink_metric_dims(mt, &n_seq, NULL, NULL, NULL, NULL);
    if (n_seq != B * (reps + 1)) {
      fprintf(stderr, "the metric gathered %d sequences, expected %d\n", n_seq, B * (reps + 1));
      return 1;
    }
    qsort(plain, reps, sizeof *plain, cmp_double);
    qsort(with, reps, sizeof *with, cmp_double);
    qsort(ratio, reps, sizeof *ratio, cmp_double);
    printf("{\"bench\": \"metric\", \"model\": \"llama L4 C256 H4 D64 F688\", \"B\": %d, \"T\": %d, "
           "\"seconds_plain\": %.6f, \"seconds_metric\": %.6f, \"overhead\": %.4f, "
           "\"overhead_median\": %.4f, \"threads\": %d, \"reps\": %d}\n",
           B, T, plain[0], with[0], with[0] / plain[0] - 1.0, ratio[reps / 2] - 1.0, threads,
           reps);
    fflush(stdout);
    asink_metric_free(mt);
    free(tok), free(plain), free(with), free(ratio);
  }
  asink_model_free(m);
  return 0;
}
