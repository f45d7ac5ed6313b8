/* Decode-throughput benchmark of the library: one JSON line per (model, batch).
 *   bench_decode [--threads N] [--models study60m,tiny,study] [--batch 1,8] [--cache 2048]
 *                [--steps 32]
 * Models: bench_train's shapes (bench_common.h), random weights from seed 0. Per model and
 * batch B: a "full" cache of max_len cache + 2 + steps, prefilled with `cache` tokens per
 * sequence in one asink_model_decode call (chunked inside the library; logits NULL), two
 * untimed single-token steps, then `steps` timed single-token steps (asink_model_decode,
 * n = 1, logits (B, vocab) written). tokens_per_s = B * steps / their seconds.
 *
 * Bytes one step must read, per token (bench/torch_decode.py uses the same formula):
 *   bytes_per_token = (4 N + B * 2 L cache n_kv_head head_dim 4) / B
 * N = the matmul weights, head included, the embedding row gather excluded (bench_train's
 * N); the second term is every layer's cached keys and values of each sequence, counted at
 * `cache` positions (the timed steps see cache + 3 .. cache + 2 + steps keys, so the figure
 * is low by (2 + steps/2) / cache of the cache term: under 1% at the defaults).
 * bandwidth_fraction = bytes_per_token * tokens_per_s / roof, the roof being a streaming
 * read measured in the same process right after the timed steps (bench_stream_roof below:
 * best of 5 sums of a 1 GiB float buffer, split over the library's thread count). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attnsink.h"
#include "bench_args.h"
#include "bench_common.h"

/* ------------------------------------------------------------ bandwidth roof */

/* The roof's buffer: ROOF_BYTES of floats, much larger than any L3 (32 MiB here). */
#define ROOF_BYTES ((size_t)1 << 30)

typedef float v4f __attribute__((vector_size(16))); /* GCC/Clang vector extension: SSE/NEON */

typedef struct {
  const float *p;
  size_t n; /* floats, a multiple of 32 */
  float sum;
} roof_part;

/* A plain streaming sum: eight independent 4-float accumulators (two 64-byte lines per
 * iteration), so the loop is bound by loads from memory and not by the add latency. */
static void *roof_sum(void *arg) {
  roof_part *r = arg;
  v4f a[8] = {{0}};
  for (size_t i = 0; i < r->n; i += 32)
    for (int j = 0; j < 8; j++) {
      v4f x;
      memcpy(&x, r->p + i + 4 * j, sizeof x);
      a[j] += x;
    }
  for (int j = 1; j < 8; j++) a[0] += a[j];
  r->sum = a[0][0] + a[0][1] + a[0][2] + a[0][3];
  return NULL;
}

/* GB/s (1e9 bytes) of a read of buf (n floats) by `threads` threads, each summing its
 * contiguous share: best of 5 runs. Every page of buf was written before the first call. */
static double bench_stream_roof(const float *buf, size_t n, int threads) {
  enum { MAXT = 64 };
  if (threads > MAXT) threads = MAXT;
  if (threads < 1) threads = 1;
  size_t share = n / threads / 32 * 32;
  double best = 1e30;
  volatile float sink = 0.f;
  for (int r = 0; r < 5; r++) {
    roof_part part[MAXT];
    pthread_t tid[MAXT];
    int started[MAXT] = {0};
    double t0 = bench_now();
    for (int t = 0; t < threads; t++) {
      part[t] = (roof_part){buf + t * share, share, 0.f};
      if (t) started[t] = !pthread_create(&tid[t], NULL, roof_sum, &part[t]);
    }
    roof_sum(&part[0]);
    for (int t = 1; t < threads; t++) {
      if (started[t]) pthread_join(tid[t], NULL);
      else roof_sum(&part[t]); /* no thread: read that share here (a lower roof) */
    }
    double dt = bench_now() - t0;
    for (int t = 0; t < threads; t++) sink += part[t].sum;
    if (dt < best) best = dt;
  }
  (void)sink;
  return (double)share * threads * sizeof(float) / best / 1e9;
}

/* ------------------------------------------------------------------ decoding */

static void lcg_tokens(int32_t *tok, size_t n, int V, unsigned *st) {
  for (size_t i = 0; i < n; i++) {
    *st = *st * 1664525u + 1013904223u;
    tok[i] = (int32_t)((*st >> 8) % (unsigned)V);
  }
}

/* One (model, batch) point; prints its JSON line. Returns 0 or 1 after an error message. */
static int run_point(asink_model *m, const bench_shape *s, int B, int cache_len, int steps,
                     int threads, const float *roof_buf, size_t roof_n) {
  enum { WARM = 2 };
  asink_cache *c = NULL;
  int rc = 1;
  int32_t *prompt = malloc(sizeof(int32_t) * (size_t)B * cache_len);
  int32_t *tok = malloc(sizeof(int32_t) * (size_t)B * (WARM + steps));
  int32_t *one = malloc(sizeof(int32_t) * (size_t)B);
  float *logits = malloc(sizeof(float) * (size_t)B * s->V);
  double *dt = malloc(sizeof(double) * steps);
  if (!prompt || !tok || !one || !logits || !dt) {
    fprintf(stderr, "%s: B=%d: out of memory\n", s->name, B);
    goto done;
  }
  unsigned st = 12345u;
  lcg_tokens(prompt, (size_t)B * cache_len, s->V, &st);
  lcg_tokens(tok, (size_t)B * (WARM + steps), s->V, &st);
  if (asink_cache_create(&c, m, "full", B, 0, 0, cache_len + WARM + steps) != ASINK_OK) {
    fprintf(stderr, "%s: B=%d: cache: %s\n", s->name, B, asink_last_error());
    goto done;
  }
  double t0 = bench_now();
  if (asink_model_decode(m, c, cache_len, prompt, NULL) != ASINK_OK) {
    fprintf(stderr, "%s: B=%d: prefill: %s\n", s->name, B, asink_last_error());
    goto done;
  }
  double prefill = bench_now() - t0;
  fprintf(stderr, "%s: B=%d: prefill of %d positions in %.2f s (%.0f tokens/s)\n", s->name, B,
          cache_len, prefill, (double)B * cache_len / prefill);
  double total = 0.0;
  for (int i = 0; i < WARM + steps; i++) {
    for (int b = 0; b < B; b++) one[b] = tok[(size_t)b * (WARM + steps) + i];
    double t1 = bench_now();
    if (asink_model_decode(m, c, 1, one, logits) != ASINK_OK) {
      fprintf(stderr, "%s: B=%d: step %d: %s\n", s->name, B, i, asink_last_error());
      goto done;
    }
    double t2 = bench_now();
    if (i >= WARM) total += (dt[i - WARM] = t2 - t1);
  }
  /* The roof right after the timed steps, in the same process and thread count. */
  double roof = bench_stream_roof(roof_buf, roof_n, threads);
  qsort(dt, steps, sizeof *dt, bench_cmp_double);
  int L, Hkv, D;
  asink_model_dims(m, &L, NULL, &Hkv, &D, NULL, NULL);
  double N = bench_matmul_params(m, s->V, s->C);
  double wbytes = 4.0 * N;
  double kvbytes = 2.0 * L * (double)cache_len * Hkv * D * 4.0; /* per sequence */
  double bpt = (wbytes + B * kvbytes) / B;
  double tps = (double)B * steps / total;
  double check = 0.0; /* the logits are used: a sum keeps them honest and visible */
  for (size_t i = 0; i < (size_t)B * s->V; i++) check += logits[i];
  printf("{\"bench\": \"decode\", \"model\": \"%s\", \"policy\": \"full\", \"B\": %d, "
         "\"cache_len\": %d, \"steps\": %d, \"threads\": %d, \"tokens_per_s\": %.2f, "
         "\"seconds_per_step\": %.5f, \"step_min_s\": %.5f, \"step_median_s\": %.5f, "
         "\"step_max_s\": %.5f, \"bytes_per_token\": %.0f, \"weights_bytes\": %.0f, "
         "\"kv_bytes_per_seq\": %.0f, \"cache_bytes\": %zu, \"gbs\": %.2f, \"roof_gbs\": %.2f, "
         "\"bandwidth_fraction\": %.3f, \"prefill_s\": %.3f, \"prefill_tokens_per_s\": %.1f, "
         "\"logits_sum\": %.4g}\n",
         s->name, B, cache_len, steps, threads, tps, total / steps, dt[0], dt[steps / 2],
         dt[steps - 1], bpt, wbytes, kvbytes, asink_cache_bytes(c), bpt * tps / 1e9, roof,
         bpt * tps / (roof * 1e9), prefill, (double)B * cache_len / prefill, check);
  fflush(stdout);
  rc = 0;
done:
  asink_cache_free(c);
  free(prompt), free(tok), free(one), free(logits), free(dt);
  return rc;
}

int main(int argc, char **argv) {
  int threads = 2, steps = 32, cache_len = 2048;
  bench_ints batch = {2, {1, 8}};
  const char *models = "study60m,tiny";
  const bench_arg args[] = {
      {"--threads", "N", BENCH_ARG_INT, &threads, 1, 0, "threads"},
      {"--models", "LIST", BENCH_ARG_STRING, &models, 0, 0, "shapes, comma-separated: " BENCH_SHAPE_NAMES},
      {"--batch", "LIST", BENCH_ARG_INTS, &batch, 1, 1 << 20, "batch sizes"},
      {"--cache", "N", BENCH_ARG_INT, &cache_len, 1, 0, "cached tokens per sequence before the timed steps"},
      {"--steps", "S", BENCH_ARG_INT, &steps, 1, 0, "timed single-token steps"},
  };
  int rc = bench_args_parse(argc, argv,
                            "Cached single-token decoding of the library, one JSON line per (model, "
                            "batch) on stdout,\nwith the same-run read-bandwidth roof "
                            "(docs/performance.md).",
                            args, BENCH_NARGS(args));
  if (rc != BENCH_ARGS_GO) return rc;
  if (!bench_models_ok("bench_decode", models)) return 2;
  rc = 0;
  if ((threads = bench_init(threads)) < 0) return 2;
  size_t roof_n = ROOF_BYTES / sizeof(float);
  float *roof_buf = malloc(ROOF_BYTES);
  if (!roof_buf) {
    fprintf(stderr, "no memory for the bandwidth roof's 1 GiB buffer\n");
    return 2;
  }
  for (size_t i = 0; i < roof_n; i++) roof_buf[i] = 1.0f; /* every page touched once */
  fprintf(stderr, "read bandwidth roof: %.2f GB/s with %d threads (1 GiB streaming sum)\n",
          bench_stream_roof(roof_buf, roof_n, threads), threads);
  char list[256];
  snprintf(list, sizeof list, "%s", models);
  for (char *save = NULL, *name = strtok_r(list, ",", &save); name; name = strtok_r(NULL, ",", &save)) {
    const bench_shape *s = bench_shape_find(name); /* bench_models_ok checked the list */
    char cfg[1024];
    bench_config_json(s, cfg, sizeof cfg);
    asink_model *m = NULL;
    double tc = bench_now();
    if (asink_model_create(&m, cfg, 0) != ASINK_OK) {
      fprintf(stderr, "%s: %s\n", s->name, asink_last_error());
      rc = 1;
      continue;
    }
    fprintf(stderr, "%s: model created in %.2f s\n", s->name, bench_now() - tc);
    for (int i = 0; i < batch.n; i++)
      rc |= run_point(m, s, batch.v[i], cache_len, steps, threads, roof_buf, roof_n);
    asink_model_free(m);
  }
  free(roof_buf);
  return rc;
}
