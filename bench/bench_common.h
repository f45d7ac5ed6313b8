/* Shared by the bench programs: wall clock, the same-run sgemm roof, JSON output, the
 * model shapes of bench_train and bench_decode. */
#ifndef ASINK_BENCH_COMMON_H
#define ASINK_BENCH_COMMON_H

#include <blis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "attnsink.h"

static inline double bench_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

/* BLIS sgemm 1024^3 GFLOP/s with `threads` threads, best of 5: the roof every
 * "fast" claim is measured against in the same run. BLIS runs the kernels of its own
 * CPU detection (or of the user's BLIS_ARCH_TYPE): asink_runtime_info() names them. */
static inline double bench_sgemm_roof(int threads) {
  const int n = 1024;
  float *a = malloc(sizeof(float) * n * n), *b = malloc(sizeof(float) * n * n),
        *c = malloc(sizeof(float) * n * n);
  for (int i = 0; i < n * n; i++) a[i] = (float)(i % 13) * 0.01f, b[i] = (float)(i % 7) * 0.01f, c[i] = 0;
  rntm_t rntm = BLIS_RNTM_INITIALIZER;
  bli_rntm_set_num_threads(threads, &rntm);
  float one = 1.f, zero = 0.f;
  double best = 1e30;
  for (int r = 0; r < 6; r++) {
    double t0 = bench_now();
    bli_sgemm_ex(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, n, n, n, &one, a, n, 1, b, n, 1, &zero, c, n,
                 1, NULL, &rntm);
    double dt = bench_now() - t0;
    if (r && dt < best) best = dt; /* the first run pays for first touches */
  }
  free(a), free(b), free(c);
  return 2.0 * n * n * n / best / 1e9;
}

/* Seconds of one BLIS sgemm 1024^3 on buffers the caller keeps (3 x 1024^2 floats):
 * paired with each timed run so a ratio to the roof survives the machine's drift. */
static inline double bench_sgemm_once(int threads, float *a, float *b, float *c) {
  rntm_t rntm = BLIS_RNTM_INITIALIZER;
  bli_rntm_set_num_threads(threads, &rntm);
  float one = 1.f, zero = 0.f;
  double t0 = bench_now();
  bli_sgemm_ex(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, 1024, 1024, 1024, &one, a, 1024, 1, b, 1024, 1,
               &zero, c, 1024, 1, NULL, &rntm);
  return bench_now() - t0;
}

static inline int bench_cmp_double(const void *x, const void *y) {
  double a = *(const double *)x, b = *(const double *)y;
  return (a > b) - (a < b);
}

/* Initialises the library (and so BLIS's kernel choice), applies --threads (0 keeps
 * the default) and prints the runtime line on stderr. Returns the thread count, or
 * -1 after printing the error. */
static inline int bench_init(int threads) {
  if (asink_init() != ASINK_OK || (threads > 0 && asink_set_num_threads(threads) != ASINK_OK)) {
    fprintf(stderr, "%s\n", asink_last_error());
    return -1;
  }
  fprintf(stderr, "%s\n", asink_runtime_info());
  return asink_get_num_threads();
}

/* A LLaMA shape of bench_train and bench_decode (bench/torch_train.py's SHAPES is the same
 * table): layers, heads (= kv heads), width, SwiGLU width, vocab, training length T and
 * training batch B. */
typedef struct {
  const char *name;
  int L, H, C, F, V, T, B;
} bench_shape;

/* By name (NULL for another): the study's 60M LLaMA (bench_train's batch from --batch); tiny,
 * the width-128 shape of the first small-scale trials (docs/results.md, "How the defaults were
 * chosen"); study, what `attnsink train` and `make study` train by default (width 64, batch 16,
 * 256 bytes and BOS). */
#define BENCH_SHAPE_NAMES "study60m, tiny, study" /* the names below, for messages */
static inline const bench_shape *bench_shape_find(const char *name) {
  static const bench_shape shapes[] = {
      {"study60m", 10, 8, 768, 1536, 50432, 256, 8},
      {"tiny", 4, 4, 128, 256, 256, 128, 32},
      {"study", 4, 4, 64, 128, 257, 128, 16},
  };
  for (size_t j = 0; j < sizeof shapes / sizeof *shapes; j++)
    if (!strcmp(shapes[j].name, name)) return &shapes[j];
  return NULL;
}

/* Checks a --models list (names of bench_shape_find, comma-separated, under 256
 * characters) before anything runs; prints the error and returns 0 on a bad one. */
static inline int bench_models_ok(const char *prog, const char *models) {
  char list[256];
  if (strlen(models) >= sizeof list) {
    fprintf(stderr, "%s: --models is longer than %zu characters\n", prog, sizeof list - 1);
    return 0;
  }
  snprintf(list, sizeof list, "%s", models);
  int n = 0;
  for (char *save = NULL, *name = strtok_r(list, ",", &save); name; name = strtok_r(NULL, ",", &save), n++)
    if (!bench_shape_find(name)) {
      fprintf(stderr, "%s: unknown model '%s' in --models (" BENCH_SHAPE_NAMES ")\n", prog, name);
      return 0;
    }
  if (!n) fprintf(stderr, "%s: --models names no model\n", prog);
  return n > 0;
}

/* The shape's config.json: RMSNorm eps 1e-5, RoPE theta 10000, untied head, SwiGLU. */
static inline void bench_config_json(const bench_shape *s, char *buf, size_t n) {
  snprintf(buf, n,
           "{\"model_type\": \"llama\", \"architectures\": [\"LlamaForCausalLM\"], "
           "\"vocab_size\": %d, \"hidden_size\": %d, \"intermediate_size\": %d, "
           "\"num_hidden_layers\": %d, \"num_attention_heads\": %d, \"num_key_value_heads\": %d, "
           "\"hidden_act\": \"silu\", \"rms_norm_eps\": 1e-5, \"rope_theta\": 10000.0, "
           "\"max_position_embeddings\": %d, \"tie_word_embeddings\": false}",
           s->V, s->C, s->F, s->L, s->H, s->H, s->T);
}

/* Parameters of the matmuls: every 2-D weight but the embedding lookup (+ V*C if tied). */
static inline double bench_matmul_params(asink_model *m, int V, int C) {
  double n = 0;
  int have_head = 0;
  for (int i = 0; i < asink_model_param_count(m); i++) {
    const char *name;
    int ndim;
    int64_t shp[4];
    if (asink_model_param_info(m, i, &name, &ndim, shp) != ASINK_OK || ndim != 2) continue;
    if (strstr(name, "embed_tokens")) continue;
    if (!strcmp(name, "lm_head.weight")) have_head = 1;
    n += (double)shp[0] * shp[1];
  }
  if (!have_head) n += (double)V * C;
  return n;
}

#endif
