/* Separate handles on separate threads (include/attnsink.h, "Threads"): four threads each
 * create a model, train it three AdamW steps, decode with a sink cache and gather sink
 * statistics with an attached metric, all at the same time; every thread's results must
 * equal, bit for bit, those of the same work run alone on one thread first.
 * Built twice: plainly (test_threads_c) and with -fsanitize=thread over the library's own
 * sources (threads_tsan), where any data race between the handles fails the run. */
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attnsink.h"

enum { V = 48, B = 2, T = 10, THREADS = 4 };

typedef struct {
  uint64_t weights, logits, decode, metric;
  float loss[3];
  char error[512];
} result;

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
  const unsigned char *b = p;
  for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
  return h;
}

#define TRY(call)                                                                                  \
  do {                                                                                             \
    if ((call) != ASINK_OK) {                                                                      \
      snprintf(r->error, sizeof r->error, "%s: %s", #call, asink_last_error());                   \
      goto done;                                                                                   \
    }                                                                                              \
  } while (0)

static void *work(void *arg) {
  result *r = arg;
  const char *cfg = "{\"model_type\": \"llama\", \"vocab_size\": 48, \"hidden_size\": 32,"
                    " \"intermediate_size\": 64, \"num_hidden_layers\": 2, \"num_attention_heads\": 4,"
                    " \"num_key_value_heads\": 2, \"max_position_embeddings\": 64,"
                    " \"attnsink\": {\"attn\": \"softmax,kbias=head\"}}";
  asink_model *m = NULL;
  asink_adamw *o = NULL;
  asink_cache *c = NULL;
  asink_metric *mt = NULL;
  int32_t tok[B * T], tgt[B * T];
  for (int i = 0; i < B * T; i++) tok[i] = (int32_t)((i * 7 + 3) % V), tgt[i] = (int32_t)((i * 7 + 10) % V);
  TRY(asink_model_create(&m, cfg, 11));
  TRY(asink_adamw_create(&o, m, 1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, 1.f));
  for (int s = 0; s < 3; s++) {
    TRY(asink_model_loss(m, B, T, tok, tgt, &r->loss[s]));
    TRY(asink_model_backward(m));
    TRY(asink_adamw_step(o, NULL));
  }
  r->weights = 1;
  for (int i = 0; i < asink_model_param_count(m); i++) {
    const char *name;
    float *d;
    size_t n;
    TRY(asink_model_param_info(m, i, &name, NULL, NULL));
    TRY(asink_model_param(m, name, &d, &n));
    r->weights = fnv(r->weights, d, n * sizeof *d);
  }
  float logits[B * T * V];
  TRY(asink_model_forward(m, B, T, tok, logits));
  r->logits = fnv(1, logits, sizeof logits);
  TRY(asink_cache_create(&c, m, "sink", B, 2, 6, 0));
  r->decode = 1;
  for (int t = 0; t < T; t++) {
    int32_t one[B] = {tok[t], tok[T + t]};
    float lg[B * V];
    TRY(asink_model_decode(m, c, 1, one, lg));
    r->decode = fnv(r->decode, lg, sizeof lg);
  }
  TRY(asink_metric_create(&mt, 0.3f));
  TRY(asink_model_attach_metric(m, mt));
  TRY(asink_model_forward(m, B, T, tok, NULL));
  char *json = asink_metric_json(mt);
  if (!json) {
    snprintf(r->error, sizeof r->error, "asink_metric_json: %s", asink_last_error());
    goto done;
  }
  r->metric = fnv(1, json, strlen(json));
  free(json);
done:
  asink_cache_free(c);
  asink_adamw_free(o);
  asink_metric_free(mt);
  asink_model_free(m);
  return NULL;
}

int main(void) {
  if (asink_init() != ASINK_OK) {
    fprintf(stderr, "asink_init: %s\n", asink_last_error());
    return 1;
  }
  result alone = {0}, together[THREADS];
  memset(together, 0, sizeof together);
  work(&alone);
  if (alone.error[0]) {
    fprintf(stderr, "one thread: %s\n", alone.error);
    return 1;
  }
  pthread_t th[THREADS];
  for (int i = 0; i < THREADS; i++)
    if (pthread_create(&th[i], NULL, work, &together[i])) {
      fprintf(stderr, "pthread_create failed\n");
      return 1;
    }
  for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
  int bad = 0;
  for (int i = 0; i < THREADS; i++) {
    const result *r = &together[i];
    if (r->error[0]) {
      fprintf(stderr, "thread %d: %s\n", i, r->error);
      bad = 1;
      continue;
    }
    const char *what[] = {"losses", "weights after 3 steps", "logits", "decoded logits", "metric JSON"};
    bool same[] = {!memcmp(r->loss, alone.loss, sizeof r->loss), r->weights == alone.weights,
                   r->logits == alone.logits, r->decode == alone.decode, r->metric == alone.metric};
    for (int k = 0; k < 5; k++)
      if (!same[k]) {
        fprintf(stderr, "thread %d: %s differ from the single-thread run\n", i, what[k]);
        bad = 1;
      }
  }
  if (!bad)
    printf("%d threads, each: 3 AdamW steps, forward, %d decode steps, metric: identical to one thread "
           "(losses %.6f %.6f %.6f)\n", THREADS, T, alone.loss[0], alone.loss[1], alone.loss[2]);
  return bad;
}
