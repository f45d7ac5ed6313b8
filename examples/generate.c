/*
 * generate: the loop of an inference engine on the public API — load a model, make a
 * key/value cache, prefill the prompt, sample token after token and stream them out,
 * watching the attention sinks as it goes.
 *
 *   generate [-m DIR] [-n N] [-t TEMP] [-s SEED] [-w WINDOW] [-e EVERY] [-p TEXT | TOKEN ...]
 *
 * -m DIR    an HF-style checkpoint directory (config.json + model.safetensors); without
 *           it a small random LLaMA-family model is created (its output is arbitrary).
 * -n N      tokens to generate (default 64).
 * -t TEMP   sampling temperature, 0 for greedy (default 0.8); -s SEED the sampler's seed.
 * -w W      the cache keeps the first 4 positions (the sinks) and the last W (default 60).
 * -e EVERY  every EVERY tokens, the share of attention each layer put on the 4 sink
 *           positions, on stderr (default 16).
 * -p TEXT   the prompt as bytes, for the byte-level models of `attnsink train` (with a
 *           vocabulary of 257, BOS id 256 goes first); the output is printed as bytes.
 * TOKEN     the prompt as token ids (default: 3 1 4 1 5); the output is printed as ids.
 *
 * Try it on the model custom_trainer saves: `custom_trainer /tmp/ck` then
 * `generate -m /tmp/ck -t 0 3 1 4 1 5` continues the pattern it learned.
 *
 * SPDX-License-Identifier: MIT
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

enum { N_SINK = 4, MAX_PROMPT = 4096 };

static int usage(void) {
  fprintf(stderr,
          "usage: generate [-m DIR] [-n N] [-t TEMP] [-s SEED] [-w WINDOW] [-e EVERY] "
          "[-p TEXT | TOKEN ...]\n");
  return 2;
}

int main(int argc, char **argv) {
  const char *dir = NULL, *text = NULL;
  int n_new = 64, window = 60, every = 16, n_prompt = 0, opt;
  float temperature = 0.8f;
  unsigned long long seed = 0;
  static int32_t prompt[MAX_PROMPT + 1];
  while ((opt = getopt(argc, argv, "m:n:t:s:w:e:p:")) != -1) {
    switch (opt) {
    case 'm': dir = optarg; break;
    case 'n': n_new = atoi(optarg); break;
    case 't': temperature = strtof(optarg, NULL); break;
    case 's': seed = strtoull(optarg, NULL, 10); break;
    case 'w': window = atoi(optarg); break;
    case 'e': every = atoi(optarg); break;
    case 'p': text = optarg; break;
    default: return usage();
    }
  }
  if (n_new < 1 || every < 1) return usage();
  for (int i = optind; i < argc && n_prompt < MAX_PROMPT; i++) prompt[n_prompt++] = atoi(argv[i]);

  /* 1. The model: a checkpoint, or a random one. */
  asink_model *m;
  if (dir) check(asink_model_load(&m, dir), "asink_model_load");
  else check(asink_model_create(&m, RANDOM_CONFIG, 7), "asink_model_create");
  int L, H, C, V;
  asink_model_dims(m, &L, &H, NULL, NULL, &C, &V);
  /* One token at a time through a small model: threads only wait for each other. */
  if ((double)L * C * C < 1e6 && !getenv("ASINK_NUM_THREADS")) check(asink_set_num_threads(1), "threads");
  if (text) { /* bytes; BOS first for the 257-id models of `attnsink train` */
    if (V == 257) prompt[n_prompt++] = 256;
    for (const char *p = text; *p && n_prompt < MAX_PROMPT; p++) prompt[n_prompt++] = (unsigned char)*p;
  } else if (!n_prompt) {
    static const int32_t def[] = {3, 1, 4, 1, 5};
    memcpy(prompt, def, sizeof def);
    n_prompt = 5;
  }

  /* 2. A sink cache for one sequence (StreamingLLM: 4 sinks + a window), a sampler and
   *    a metric. The cache's memory stays at N_SINK + window positions per layer. */
  asink_cache *cache;
  asink_sampler *sampler;
  asink_metric *metric;
  check(asink_cache_create(&cache, m, "sink", 1, N_SINK, window, 0), "asink_cache_create");
  check(asink_sampler_create(&sampler, temperature, 0, 1.0f, seed), "asink_sampler_create");
  check(asink_metric_create(&metric, 0.3f), "asink_metric_create");
  float *logits = malloc(sizeof *logits * (size_t)V);
  float *share = malloc(sizeof *share * (size_t)every * L * H);
  if (!logits || !share) return fprintf(stderr, "out of memory\n"), 1;

  /* 3. Prefill: all but the last prompt token without logits, the last with them. */
  if (n_prompt > 1) check(asink_model_decode(m, cache, n_prompt - 1, prompt, NULL), "prefill");
  check(asink_model_decode(m, cache, 1, prompt + n_prompt - 1, logits), "prefill");

  /* 4. Generate: sample, print at once, feed the token back. The metric, attached
   *    after the prefill, records each decode call's attention on the sink slots. */
  check(asink_model_attach_metric(m, metric), "asink_model_attach_metric");
  for (int i = 0; i < n_new; i++) {
    int32_t tok;
    /* text out: draw among the 256 bytes only (BOS, id 256, is no byte) */
    check(asink_sampler_pick(sampler, logits, text && V == 257 ? 256 : V, &tok), "asink_sampler_pick");
    if (text) putchar(tok);
    else printf("%d ", tok);
    fflush(stdout);
    check(asink_model_decode(m, cache, 1, &tok, logits), "asink_model_decode");

    int steps = asink_metric_decode_steps(metric); /* one record per decode call */
    if (steps == every || i + 1 == n_new) {
      check(asink_metric_sink_share(metric, share), "asink_metric_sink_share"); /* (steps, L, H) */
      fprintf(stderr, "\n[%d tokens, cache holds %d, %zu bytes] sink share per layer:", i + 1,
              asink_cache_held(cache, 0), asink_cache_bytes(cache));
      for (int l = 0; l < L; l++) {
        double sum = 0;
        for (int s = 0; s < steps; s++)
          for (int h = 0; h < H; h++) sum += share[((size_t)s * L + l) * H + h];
        fprintf(stderr, " L%d %.3f", l, sum / (steps * H));
      }
      fprintf(stderr, "\n");
      asink_metric_reset(metric); /* forget the records; stays attached */
    }
  }
  printf("\n");

  /* 5. Teardown: detach the metric before freeing it; the cache holds no pointer into
   *    the model, so it can go before or after it. */
  check(asink_model_attach_metric(m, NULL), "detach");
  asink_metric_free(metric);
  asink_sampler_free(sampler);
  asink_cache_free(cache);
  asink_model_free(m);
  free(logits), free(share);
  return 0;
}
