/*
 * mpi_trainer: data-parallel training of one's own, written against the public API plus MPI.
 * The pattern to copy for any engine that can sum a float buffer across workers
 * (torch.distributed, NCCL, Gloo, Horovod): every worker holds the whole model, trains its
 * share of the global batch, and the workers sum the gradient block between backward and the
 * optimizer step, so every worker applies the same update.
 *
 *   mpirun -np N mpi_trainer [--model tiny|study60m|CONFIG.json] [--steps S] [--batch B]
 *                            [--context T] [--seed K] [--allreduce-only R]
 *
 * --batch is the global batch (a multiple of N; each rank trains B/N sequences); tiny is a
 * 2-layer model that learns a repeating token pattern in seconds (the loss falls from about
 * ln 16 = 2.77), study60m the study's 60M LLaMA shape (10 layers, width 768, vocabulary 50432,
 * 136.6M parameters with the embeddings). Rank 0 prints the loss per step and, at the end, the
 * mean seconds per step of compute (loss + backward), of the gradient sum and of the AdamW
 * step, and checks that every rank ended with bit-identical parameters. --allreduce-only R
 * times R sums of the gradient block alone (no training), the pure communication cost.
 * Without mpirun it trains as one process.
 *
 * SPDX-License-Identifier: MIT
 */
#include <limits.h>
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "attnsink.h"

static int rank, size;

static void check(asink_status s, const char *what) {
  if (s != ASINK_OK) {
    fprintf(stderr, "mpi_trainer: rank %d: %s: %s: %s\n", rank, what, asink_status_string(s),
            asink_last_error());
    MPI_Abort(MPI_COMM_WORLD, 1); /* the other ranks would wait for this one for ever */
  }
}

static void usage_error(const char *msg) {
  if (rank == 0) fprintf(stderr, "mpi_trainer: %s\n", msg);
  MPI_Finalize();
  exit(2);
}

static const char *TINY =
    "{\"model_type\": \"llama\", \"vocab_size\": 16, \"hidden_size\": 64,"
    " \"intermediate_size\": 128, \"num_hidden_layers\": 2, \"num_attention_heads\": 4,"
    " \"max_position_embeddings\": 256, \"attnsink\": {\"attn\": \"softmax\", \"positions\": \"rope\"}}";
static const char *STUDY60M =
    "{\"model_type\": \"llama\", \"vocab_size\": 50432, \"hidden_size\": 768,"
    " \"intermediate_size\": 1536, \"num_hidden_layers\": 10, \"num_attention_heads\": 8,"
    " \"max_position_embeddings\": 1024, \"tie_word_embeddings\": false,"
    " \"attnsink\": {\"attn\": \"softmax\", \"positions\": \"rope\"}}";

static char *read_text(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *s = n >= 0 ? malloc((size_t)n + 1) : NULL;
  if (s && fread(s, 1, (size_t)n, f) != (size_t)n) free(s), s = NULL;
  if (s) s[n] = 0;
  fclose(f);
  return s;
}

/* The global batch, the same on every rank: a period-10 token pattern from a random phase
 * per sequence, drawn from one generator every rank seeds alike. */
static uint64_t rng;
static void global_batch(int B, int T, int32_t *tokens, int32_t *targets) {
  static const int pattern[] = {3, 1, 4, 1, 5, 9, 2, 6, 5, 3};
  for (int b = 0; b < B; b++) {
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    int phase = (int)((rng >> 33) % 10);
    for (int t = 0; t < T; t++) {
      tokens[b * T + t] = pattern[(phase + t) % 10];
      targets[b * T + t] = pattern[(phase + t + 1) % 10];
    }
  }
}

/* The one step that differs from a single-process trainer: after backward, sum the gradient
 * block over the ranks and divide by their count. Every rank's loss is the mean over its
 * B/N sequences (all targets count here), so the mean of the N gradients is the gradient of
 * the mean loss over the global batch. */
static double sum_gradients(asink_model *m) {
  float *g;
  size_t n;
  check(asink_model_grad_block(m, &g, &n), "asink_model_grad_block");
  double t0 = MPI_Wtime();
  MPI_Allreduce(MPI_IN_PLACE, g, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
  double t = MPI_Wtime() - t0;
  const float scale = 1.f / (float)size;
  for (size_t i = 0; i < n; i++) g[i] *= scale;
  return t;
}

static uint64_t fnv1a(const float *x, size_t n) {
  uint64_t h = 0xcbf29ce484222325ull;
  const unsigned char *p = (const unsigned char *)x;
  for (size_t i = 0; i < n * sizeof(float); i++) h = (h ^ p[i]) * 0x100000001b3ull;
  return h;
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  const char *model = "tiny";
  int steps = 20, B = 8, T = 32, allreduce_only = 0;
  uint64_t seed = 1;
  for (int i = 1; i < argc; i += 2) {
    if (i + 1 >= argc) usage_error("every option takes a value (see the top of mpi_trainer.c)");
    const char *k = argv[i], *v = argv[i + 1];
    if (!strcmp(k, "--model")) model = v;
    else if (!strcmp(k, "--steps")) steps = atoi(v);
    else if (!strcmp(k, "--batch")) B = atoi(v);
    else if (!strcmp(k, "--context")) T = atoi(v);
    else if (!strcmp(k, "--seed")) seed = strtoull(v, NULL, 10);
    else if (!strcmp(k, "--allreduce-only")) allreduce_only = atoi(v);
    else usage_error("unknown option (--model --steps --batch --context --seed --allreduce-only)");
  }
  if (steps < 1 || B < 1 || T < 2 || allreduce_only < 0) usage_error("--steps, --batch >= 1, --context >= 2");
  if (B % size) usage_error("--batch must be a multiple of the rank count: each rank trains batch / ranks");

  /* ranks on one machine share its cores: each takes its part unless ASINK_NUM_THREADS says */
  if (!getenv("ASINK_NUM_THREADS")) {
    MPI_Comm node;
    int local = 1;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
    MPI_Comm_size(node, &local);
    MPI_Comm_free(&node);
    int t = (int)(sysconf(_SC_NPROCESSORS_ONLN) / local);
    check(asink_set_num_threads(t > 0 ? t : 1), "asink_set_num_threads");
  }

  char *config = !strcmp(model, "tiny") ? strdup(TINY) : !strcmp(model, "study60m") ? strdup(STUDY60M)
                                                                                       : read_text(model);
  if (!config) usage_error("--model: not tiny, study60m or a readable config.json file");
  /* every rank initialises from the same seed, so the ranks start from identical weights */
  asink_model *m;
  check(asink_model_create(&m, config, seed), "asink_model_create");
  free(config);
  asink_adamw *opt;
  check(asink_adamw_create(&opt, m, 3e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 1.0f), "asink_adamw_create");
  float *params;
  size_t n;
  check(asink_model_param_block(m, &params, &n), "asink_model_param_block");
  if (rank == 0)
    printf("%d ranks, %s: %zu parameters (%.1f MB gradient block), global batch %d x %d, "
           "%d threads per rank\n",
           size, model, n, n * 4e-6, B, T, asink_get_num_threads());
  if (n > INT_MAX) usage_error("the gradient block exceeds one MPI_Allreduce's int count: sum it in pieces");

  if (allreduce_only) {
    double t = 0, best = 1e30;
    for (int r = 0; r <= allreduce_only; r++) {
      MPI_Barrier(MPI_COMM_WORLD);
      double s = sum_gradients(m);
      if (r == 0) continue; /* the first sum maps the shared-memory segments */
      t += s;
      if (s < best) best = s;
    }
    if (rank == 0)
      printf("allreduce of the gradient block: mean %.1f ms, best %.1f ms over %d "
             "(%.2f GB/s algorithm bandwidth)\n",
             1e3 * t / allreduce_only, 1e3 * best, allreduce_only, n * 4e-9 / best);
  } else {
    const int rows = B / size, first = rank * rows;
    int32_t *tokens = malloc(sizeof(int32_t) * (size_t)B * T);
    int32_t *targets = malloc(sizeof(int32_t) * (size_t)B * T);
    if (!tokens || !targets) check(ASINK_ERR_NOMEM, "batch buffers");
    rng = seed;
    double t_compute = 0, t_sum = 0, t_opt = 0;
    for (int step = 1; step <= steps; step++) {
      global_batch(B, T, tokens, targets);
      double t0 = MPI_Wtime();
      float loss, norm;
      check(asink_model_loss(m, rows, T, tokens + (size_t)first * T, targets + (size_t)first * T, &loss),
            "asink_model_loss");
      check(asink_model_backward(m), "asink_model_backward");
      MPI_Barrier(MPI_COMM_WORLD); /* only for the timing: waiting for the slowest rank apart */
      double t1 = MPI_Wtime();
      double ts = size > 1 ? sum_gradients(m) : 0;
      double t2 = MPI_Wtime();
      check(asink_adamw_step(opt, &norm), "asink_adamw_step");
      double t3 = MPI_Wtime();
      float mean = loss; /* for the printout: the global batch's mean loss */
      MPI_Reduce(&loss, &mean, 1, MPI_FLOAT, MPI_SUM, 0, MPI_COMM_WORLD);
      if (rank == 0) printf("step %d loss %.6f grad_norm %.6f\n", step, mean / size, norm);
      if (step > 1) t_compute += t1 - t0, t_sum += ts, t_opt += t3 - t2; /* step 1 warms up */
    }
    if (rank == 0 && steps > 1) {
      int k = steps - 1;
      double all = t_compute + t_sum + t_opt;
      printf("per step (mean of steps 2..%d): compute %.3f s (loss + backward, slowest rank), "
             "gradient sum %.3f s, AdamW %.3f s; communicating %.1f%% of the step\n",
             steps, t_compute / k, t_sum / k, t_opt / k, 100.0 * t_sum / all);
    }
    free(tokens);
    free(targets);
  }

  /* every rank applied the same sums, so the parameters must agree bit for bit */
  uint64_t h = fnv1a(params, n), lo = h, hi = h;
  MPI_Allreduce(&h, &lo, 1, MPI_UINT64_T, MPI_MIN, MPI_COMM_WORLD);
  MPI_Allreduce(&h, &hi, 1, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD);
  if (rank == 0) printf("parameters on all ranks identical: %s (FNV-1a %016llx)\n", lo == hi ? "yes" : "NO",
                        (unsigned long long)h);
  asink_adamw_free(opt);
  asink_model_free(m);
  MPI_Finalize();
  return lo == hi ? 0 : 1;
}
