/*
 * inference: greedy generation from a checkpoint — the inference loop an engine wraps.
 *
 *   inference [-m DIR] [-n N] [TOKEN ...]
 *
 * -m DIR  an HF-style checkpoint directory (config.json + model.safetensors); without
 *         it a small random LLaMA-family model is created (its output is arbitrary).
 * -n N    tokens to generate (default 16).
 * TOKEN   the prompt as token ids (default: 3 1 4 1 5).
 *
 * Try it on the model custom_trainer saves: `custom_trainer /tmp/ck` then
 * `inference -m /tmp/ck 3 1 4 1 5` continues the pattern it learned.
 *
 * The API has no key/value cache: every step runs the whole context through
 * asink_model_forward and reads the logits of its last position.
 *
 * SPDX-License-Identifier: MIT
 */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attnsink.h"

static void check(asink_status s, const char *what) {
  if (s != ASINK_OK) {
    fprintf(stderr, "%s: %s: %s\n", what, asink_status_string(s), asink_last_error());
    exit(1);
  }
}

static const char *RANDOM_CONFIG =
    "{\"model_type\": \"llama\", \"vocab_size\": 32, \"hidden_size\": 64,"
    " \"intermediate_size\": 128, \"num_hidden_layers\": 2, \"num_attention_heads\": 4,"
    " \"max_position_embeddings\": 128}";

static int usage(void) {
  fprintf(stderr, "usage: inference [-m DIR] [-n N] [TOKEN ...]\n");
  return 2;
}

int main(int argc, char **argv) {
  const char *dir = NULL;
  int n_new = 16, n_prompt = 0;
  int32_t prompt[256];
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "-m") && i + 1 < argc) {
      dir = argv[++i];
    } else if (!strcmp(argv[i], "-n") && i + 1 < argc) {
      n_new = atoi(argv[++i]);
      if (n_new < 1 || n_new > 100000) return usage();
    } else {
      char *end;
      long id = strtol(argv[i], &end, 10);
      if (*end || end == argv[i] || id < 0 || id > INT32_MAX || n_prompt == 256) return usage();
      prompt[n_prompt++] = (int32_t)id;
    }
  }
  if (!n_prompt) {
    static const int32_t def[] = {3, 1, 4, 1, 5};
    n_prompt = 5;
    memcpy(prompt, def, sizeof def);
  }

  asink_model *m;
  if (dir)
    check(asink_model_load(&m, dir), "asink_model_load");
  else
    check(asink_model_create(&m, RANDOM_CONFIG, 7), "asink_model_create");
  int V;
  asink_model_dims(m, NULL, NULL, NULL, NULL, NULL, &V);
  /* Threads pay off only for larger shapes: below a million parameters, and unless
   * ASINK_NUM_THREADS says otherwise, run on one (a busy machine makes every parallel
   * region wait for its slowest thread). */
  size_t n_params = 0;
  for (int i = 0; i < asink_model_param_count(m); i++) {
    const char *name;
    float *data;
    size_t numel;
    check(asink_model_param_info(m, i, &name, NULL, NULL), "asink_model_param_info");
    check(asink_model_param(m, name, &data, &numel), "asink_model_param");
    n_params += numel;
  }
  if (n_params < 1000000 && !getenv("ASINK_NUM_THREADS"))
    check(asink_set_num_threads(1), "asink_set_num_threads");
  printf("%s\n", asink_runtime_info());
  printf("model: %s, %zu parameters, vocabulary %d\n", dir ? dir : "random (seed 7)", n_params, V);

  const int total = n_prompt + n_new;
  int32_t *ctx = malloc(sizeof *ctx * (size_t)total);
  float *logits = malloc(sizeof *logits * (size_t)total * V);
  if (!ctx || !logits) {
    fprintf(stderr, "out of memory\n");
    return 1;
  }
  memcpy(ctx, prompt, sizeof *ctx * (size_t)n_prompt);
  printf("prompt:");
  for (int i = 0; i < n_prompt; i++) printf(" %d", ctx[i]);
  printf("\ngenerated:");
  fflush(stdout);

  int len = n_prompt, max_ctx = INT_MAX;
  while (len < total) {
    int T = len < max_ctx ? len : max_ctx;
    const int32_t *window = ctx + (len - T);
    asink_status s = asink_model_forward(m, 1, T, window, logits); /* (1, T, V) */
    if (s == ASINK_ERR_SHAPE && T > 1) {
      /* Learned positions: T is past the model's positions. Keep the most recent
       * tokens that fit (a sliding window) and try again. */
      max_ctx = T - 1;
      continue;
    }
    check(s, "asink_model_forward"); /* e.g. a prompt id outside the vocabulary */
    const float *last = logits + (size_t)(T - 1) * V;
    int best = 0;
    for (int v = 1; v < V; v++)
      if (last[v] > last[best]) best = v;
    ctx[len++] = best;
    printf(" %d", best);
    fflush(stdout);
  }
  printf("\n");
  free(ctx);
  free(logits);
  asink_model_free(m);
  return 0;
}
