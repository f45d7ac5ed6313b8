/* Training-step benchmark of the library's model: one JSON line per model.
 *   bench_train [--threads N] [--models study60m,tiny,study] [--steps S] [--batch B]
 *               [--precision fp32|bf16]
 * --precision bf16 trains in bf16 mixed precision (the model option precision=bf16); every
 * JSON line names its "precision".
 * One step = asink_model_loss + asink_model_backward + asink_adamw_step (lr 4e-4,
 * betas (0.9, 0.95), eps 1e-8, weight decay 0.1, clip 1.0). Two warm-up steps, then
 * S timed steps (default 5); the mean step time is reported.
 *
 * FLOPs per token (bench/torch_train.py uses the same formula):
 *   flops_per_token = 6 * N + 6 * L * T * C
 * N = parameters of the matmuls, the head's V x C included, the embedding lookup
 * excluded (every 2-D weight except model.embed_tokens.weight; a tied head adds V*C
 * once more). 6N is forward (2N) + backward (4N) per token; 6 L T C is causal
 * attention: per layer and token, q.k and A.v over T/2 visible keys on average are
 * 2 * 2 * C * T/2 = 2 T C forward, times 3 with the backward.
 * MFU = flops_per_token * tokens_per_s / same-run BLIS sgemm 1024^3 FLOP/s with the
 * same thread count (bench_sgemm_roof), measured at start and again after each model's
 * timed steps; the best so far is the roof of that model's line. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attnsink.h"
#include "bench_args.h"
#include "bench_common.h"

static int run_model(const bench_shape *s, int threads, int steps, const char *precision,
                     double *roof) {
  char cfg[1024];
  bench_config_json(s, cfg, sizeof cfg);
  asink_model *m = NULL;
  asink_adamw *opt = NULL;
  int rc = 1;
  size_t nt = (size_t)s->B * s->T;
  int32_t *seq = malloc(sizeof(int32_t) * s->B * (s->T + 1)), *tok = malloc(sizeof(int32_t) * nt),
          *tgt = malloc(sizeof(int32_t) * nt);
  if (!seq || !tok || !tgt) goto done;
  unsigned st = 12345u;
  for (int i = 0; i < s->B * (s->T + 1); i++) {
    st = st * 1664525u + 1013904223u;
    seq[i] = (int32_t)((st >> 8) % (unsigned)s->V);
  }
  for (int b = 0; b < s->B; b++)
    for (int t = 0; t < s->T; t++) {
      tok[b * s->T + t] = seq[b * (s->T + 1) + t];
      tgt[b * s->T + t] = seq[b * (s->T + 1) + t + 1];
    }
  double tc = bench_now();
  char opts[32];
  snprintf(opts, sizeof opts, "precision=%s", precision);
  if (asink_model_create_opts(&m, cfg, 0, opts) != ASINK_OK ||
      asink_adamw_create(&opt, m, 4e-4f, 0.9f, 0.95f, 1e-8f, 0.1f, 1.0f) != ASINK_OK) {
    fprintf(stderr, "%s: %s\n", s->name, asink_last_error());
    goto done;
  }
  fprintf(stderr, "%s: B=%d T=%d: model and optimizer created in %.2f s\n", s->name, s->B, s->T,
          bench_now() - tc);
  float loss = 0.f, gnorm = 0.f;
  double phase[3] = {0, 0, 0}; /* loss (forward), backward, optimizer: where the time goes */
  double step_min = 1e30, step_max = 0.0; /* the spread shows how steady the machine was */
  for (int i = 0; i < 2 + steps; i++) {
    double t0 = bench_now();
    asink_status e = asink_model_loss(m, s->B, s->T, tok, tgt, &loss);
    double t1 = bench_now();
    if (!e) e = asink_model_backward(m);
    double t2 = bench_now();
    if (!e) e = asink_adamw_step(opt, &gnorm);
    double t3 = bench_now();
    if (e) {
      fprintf(stderr, "%s: step %d: %s\n", s->name, i, asink_last_error());
      goto done;
    }
    if (i < 2) fprintf(stderr, "%s: warm-up step %d: %.2f s\n", s->name, i + 1, t3 - t0);
    if (i >= 2) { /* two warm-up steps: workspaces, page faults, caches */
      phase[0] += t1 - t0, phase[1] += t2 - t1, phase[2] += t3 - t2;
      if (t3 - t0 < step_min) step_min = t3 - t0;
      if (t3 - t0 > step_max) step_max = t3 - t0;
    }
  }
  for (int j = 0; j < 3; j++) phase[j] /= steps;
  double sec = phase[0] + phase[1] + phase[2];
  /* The roof again after the timed steps, keeping the better: a roof taken during a burst
   * of load from other processes would otherwise inflate the MFU. */
  double again = bench_sgemm_roof(threads);
  if (again > *roof) *roof = again;
  double N = bench_matmul_params(m, s->V, s->C);
  double fpt = 6.0 * N + 6.0 * s->L * (double)s->T * s->C;
  double tps = (double)nt / sec;
  double mfu = fpt * tps / (*roof * 1e9);
  printf("{\"bench\": \"train\", \"model\": \"%s\", \"B\": %d, \"T\": %d, \"threads\": %d, "
         "\"steps\": %d, \"seconds_per_step\": %.4f, \"tokens_per_s\": %.1f, "
         "\"flops_per_token\": %.0f, \"matmul_params\": %.0f, \"gflops\": %.2f, "
         "\"roof_gflops\": %.2f, \"mfu\": %.3f, \"loss\": %.4f, \"forward_s\": %.4f, "
         "\"backward_s\": %.4f, \"optimizer_s\": %.4f, \"step_min_s\": %.4f, "
         "\"step_max_s\": %.4f, \"precision\": \"%s\"}\n",
         s->name, s->B, s->T, threads, steps, sec, tps, fpt, N, fpt * tps / 1e9, *roof, mfu, loss,
         phase[0], phase[1], phase[2], step_min, step_max, precision);
  fflush(stdout);
  rc = 0;
done:
  asink_adamw_free(opt);
  asink_model_free(m);
  free(seq), free(tok), free(tgt);
  return rc;
}

int main(int argc, char **argv) {
  int threads = 0, steps = 5, batch = 8;
  const char *models = "study60m,tiny", *precision = "fp32";
  const bench_arg args[] = {
      {"--threads", "N", BENCH_ARG_INT, &threads, 0, 0, "threads; 0: the library's default"},
      {"--models", "LIST", BENCH_ARG_STRING, &models, 0, 0, "shapes, comma-separated: " BENCH_SHAPE_NAMES},
      {"--steps", "S", BENCH_ARG_INT, &steps, 1, 0, "timed steps, after two warm-up steps"},
      {"--batch", "B", BENCH_ARG_INT, &batch, 1, 0, "study60m's batch (tiny keeps 32)"},
      {"--precision", "P", BENCH_ARG_STRING, &precision, 0, 0, "fp32, or bf16 (mixed precision: precision=bf16)"},
  };
  int rc = bench_args_parse(argc, argv,
                            "Training steps of the library's model (loss, backward, AdamW), one JSON "
                            "line per model on stdout,\nwith tokens/s and MFU against the same-run "
                            "BLIS sgemm 1024^3 roof (docs/performance.md).",
                            args, BENCH_NARGS(args));
  if (rc != BENCH_ARGS_GO) return rc;
  if (!bench_models_ok("bench_train", models)) return 2;
  if (strcmp(precision, "fp32") && strcmp(precision, "bf16")) {
    fprintf(stderr, "bench_train: --precision %s: expected fp32 or bf16\n", precision);
    return 2;
  }
  rc = 0;
  if ((threads = bench_init(threads)) < 0) return 2;
  double roof = bench_sgemm_roof(threads);
  fprintf(stderr, "sgemm roof: %.2f GFLOP/s with %d threads\n", roof, threads);
  char list[256];
  snprintf(list, sizeof list, "%s", models);
  for (char *save = NULL, *name = strtok_r(list, ",", &save); name; name = strtok_r(NULL, ",", &save)) {
    bench_shape sh = *bench_shape_find(name); /* bench_models_ok checked the list */
    if (!strcmp(sh.name, "study60m")) sh.B = batch;
    rc |= run_model(&sh, threads, steps, precision, &roof);
  }
  return rc;
}
