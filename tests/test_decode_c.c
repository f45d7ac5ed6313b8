/* Decoding in C through the public API: a window cache equals sliding-window attention,
 * a 100,000-token stream through a sink cache keeps a flat resident size, bad input is
 * refused with a message naming the value and leaves the cache usable, the sampler is
 * reproducible, and generation is greedy decoding fed back. (The Python tests compare
 * every base and option with a PyTorch reference.) */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "attnsink.h"

enum { V = 40 };

static asink_model *model(const char *attn, const char *positions, int layers, uint64_t seed) {
  char cfg[512];
  snprintf(cfg, sizeof cfg,
           "{\"model_type\": \"llama\", \"vocab_size\": %d, \"hidden_size\": 32,"
           " \"intermediate_size\": 64, \"num_hidden_layers\": %d, \"num_attention_heads\": 4,"
           " \"num_key_value_heads\": 2, \"max_position_embeddings\": 64,"
           " \"attnsink\": {\"attn\": \"%s\", \"positions\": \"%s\"}}",
           V, layers, attn, positions);
  asink_model *m = NULL;
  ck_assert_msg(asink_model_create(&m, cfg, seed) == ASINK_OK, "%s", asink_last_error());
  return m;
}

static int32_t *tokens(int n, unsigned seed) {
  int32_t *t = malloc((size_t)n * sizeof *t);
  for (int i = 0; i < n; i++) t[i] = (int32_t)((seed = seed * 1103515245u + 12345u) >> 16) % V;
  return t;
}

static double rel_err(const float *a, const float *b, size_t n) {
  double e = 0.0, s = 0.0;
  for (size_t i = 0; i < n; i++) {
    e = fmax(e, fabs((double)a[i] - b[i]));
    s = fmax(s, fabs((double)b[i]));
  }
  return e / s;
}

/* A window cache of W keeps exactly what sliding-window attention (window=W) sees, in
 * every layer: its logits one token at a time equal that model's forward. */
START_TEST(window_cache_is_sliding_window_attention) {
  const char *pos[] = {"rope", "alibi", "relative", "nope"};
  const int T = 50, W = 7;
  int32_t *tok = tokens(T, 3);
  for (int p = 0; p < 4; p++) {
    asink_model *m = model("softmax", pos[p], 3, 5), *mw = model("softmax,window=7", pos[p], 3, 5);
    float *ref = malloc((size_t)T * V * sizeof(float)), *got = malloc((size_t)T * V * sizeof(float));
    ck_assert_int_eq(asink_model_forward(mw, 1, T, tok, ref), ASINK_OK);
    asink_cache *c = NULL;
    ck_assert_int_eq(asink_cache_create(&c, m, "window", 1, 0, W, 0), ASINK_OK);
    for (int t = 0; t < T; t++)
      ck_assert_int_eq(asink_model_decode(m, c, 1, tok + t, got + (size_t)t * V), ASINK_OK);
    ck_assert_int_eq(asink_cache_held(c, 0), W);
    ck_assert_int_eq((int)asink_cache_fed(c, 0), T);
    double e = rel_err(got, ref, (size_t)T * V);
    ck_assert_msg(e < 1e-5, "positions %s: window cache vs window=%d attention: %g", pos[p], W, e);
    asink_cache_free(c);
    asink_model_free(m);
    asink_model_free(mw);
    free(ref);
    free(got);
  }
  free(tok);
}
END_TEST

static long rss_kib(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  long pages = 0, resident = 0;
  if (f) {
    if (fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
    fclose(f);
  }
  return resident * 4;
}

/* Memory is bounded by the cache: the resident size after 100,000 positions is that
 * after 10,000. */
START_TEST(sink_cache_stream_keeps_flat_memory) {
  asink_set_num_threads(1);
  asink_model *m = model("softmax", "rope", 2, 1);
  asink_cache *c = NULL;
  ck_assert_int_eq(asink_cache_create(&c, m, "sink", 1, 4, 64, 0), ASINK_OK);
  size_t bytes = asink_cache_bytes(c);
  int32_t *tok = tokens(1000, 9);
  float logits[V];
  long at10k = 0;
  for (int i = 0; i < 100000; i++) {
    ck_assert_int_eq(asink_model_decode(m, c, 1, tok + i % 1000, logits), ASINK_OK);
    if (i == 9999) at10k = rss_kib();
  }
  long at100k = rss_kib();
  ck_assert_int_eq((int)asink_cache_fed(c, 0), 100000);
  ck_assert_int_eq(asink_cache_held(c, 0), 68);
  ck_assert_msg(asink_cache_bytes(c) == bytes, "cache grew from %zu to %zu bytes", bytes, asink_cache_bytes(c));
  ck_assert_msg(at100k <= at10k + 256, "resident size grew from %ld KiB to %ld KiB", at10k, at100k);
  for (int j = 0; j < V; j++) ck_assert(isfinite(logits[j]));
  free(tok);
  asink_cache_free(c);
  asink_model_free(m);
}
END_TEST

static void expect_error(asink_status st, asink_status want, const char *needle) {
  ck_assert_msg(st == want, "status %d, want %d (%s)", st, want, asink_last_error());
  ck_assert_msg(strstr(asink_last_error(), needle), "message '%s' lacks '%s'", asink_last_error(), needle);
}

START_TEST(bad_input_is_refused_and_the_cache_stays_usable) {
  asink_model *m = model("softmax", "rope", 2, 1), *other = model("softmax", "rope", 2, 2);
  asink_cache *c = NULL;
  expect_error(asink_cache_create(&c, m, "ring", 1, 4, 8, 16), ASINK_ERR_ARG, "'ring'");
  expect_error(asink_cache_create(&c, m, "sink", 1, 8, 8, 16), ASINK_ERR_ARG, "n_sink=8");
  expect_error(asink_cache_create(&c, m, "full", 1, 4, 8, 0), ASINK_ERR_ARG, "max_len=0");
  expect_error(asink_cache_create(&c, m, "window", 0, 4, 8, 16), ASINK_ERR_ARG, "batch=0");
  asink_model *learned = model("softmax", "learned", 2, 1), *bidir = model("softmax,causal=0", "rope", 2, 1);
  expect_error(asink_cache_create(&c, learned, "sink", 1, 4, 8, 0), ASINK_ERR_UNSUPPORTED, "learned");
  expect_error(asink_cache_create(&c, bidir, "full", 1, 4, 8, 16), ASINK_ERR_UNSUPPORTED, "causal=0");
  ck_assert_ptr_null(c);

  const int T = 12;
  int32_t *tok = tokens(T, 4);
  float *ref = malloc((size_t)T * V * sizeof(float)), *got = malloc((size_t)T * V * sizeof(float));
  ck_assert_int_eq(asink_model_forward(m, 1, T, tok, ref), ASINK_OK);
  ck_assert_int_eq(asink_cache_create(&c, m, "full", 1, 4, 0, T), ASINK_OK);
  ck_assert_int_eq(asink_model_decode(m, c, 5, tok, got), ASINK_OK);
  expect_error(asink_model_decode(other, c, 1, tok + 5, got), ASINK_ERR_ARG, "another model");
  int32_t bad = V;
  expect_error(asink_model_decode(m, c, 1, &bad, got), ASINK_ERR_ARG, "token 40");
  expect_error(asink_model_decode(m, c, T, tok, got), ASINK_ERR_SHAPE, "max_len=12");
  /* nothing of the refused calls stayed: the rest of the sequence gives the forward's logits */
  ck_assert_int_eq((int)asink_cache_fed(c, 0), 5);
  ck_assert_int_eq(asink_model_decode(m, c, T - 5, tok + 5, got + 5 * V), ASINK_OK);
  ck_assert_msg(rel_err(got, ref, (size_t)T * V) < 1e-5, "after errors: %g", rel_err(got, ref, (size_t)T * V));
  asink_cache_free(c);

  /* a cache outlives its model, and a model made later (maybe at the same address) is not
   * taken for it */
  asink_cache *orphan = NULL;
  asink_model *gone = model("softmax", "rope", 2, 1);
  ck_assert_int_eq(asink_cache_create(&orphan, gone, "sink", 1, 2, 8, 0), ASINK_OK);
  ck_assert_int_eq(asink_model_decode(gone, orphan, 3, tok, NULL), ASINK_OK);
  asink_model_free(gone);
  ck_assert_int_eq((int)asink_cache_fed(orphan, 0), 3);
  asink_model *next = model("softmax", "rope", 2, 1);
  expect_error(asink_model_decode(next, orphan, 1, tok, NULL), ASINK_ERR_ARG, "another model");
  asink_cache_free(orphan);
  asink_model_free(next);

  /* a prefix-LM's prefix must come whole */
  asink_model *pre = model("softmax,prefix=4", "rope", 2, 1);
  ck_assert_int_eq(asink_cache_create(&c, pre, "full", 1, 4, 0, T), ASINK_OK);
  expect_error(asink_model_decode(pre, c, 3, tok, got), ASINK_ERR_STATE, "prefix");
  ck_assert_int_eq(asink_model_decode(pre, c, 4, tok, got), ASINK_OK);
  ck_assert_int_eq(asink_model_decode(pre, c, 1, tok + 4, got), ASINK_OK);
  asink_cache_free(c);
  asink_model_free(pre);
  asink_model_free(learned);
  asink_model_free(bidir);
  asink_model_free(m);
  asink_model_free(other);
  free(tok);
  free(ref);
  free(got);
}
END_TEST

START_TEST(sampler_is_reproducible_and_greedy_is_argmax) {
  float logits[V];
  for (int i = 0; i < V; i++) logits[i] = sinf((float)i);
  int best = 0;
  for (int i = 1; i < V; i++)
    if (logits[i] > logits[best]) best = i;
  asink_sampler *g = NULL, *a = NULL, *b = NULL, *k1 = NULL;
  ck_assert_int_eq(asink_sampler_create(&g, 0.f, 0, 1.f, 1), ASINK_OK);
  ck_assert_int_eq(asink_sampler_create(&a, 1.f, 0, 0.9f, 7), ASINK_OK);
  ck_assert_int_eq(asink_sampler_create(&b, 1.f, 0, 0.9f, 7), ASINK_OK);
  ck_assert_int_eq(asink_sampler_create(&k1, 2.f, 1, 1.f, 3), ASINK_OK);
  asink_sampler *bad = NULL;
  expect_error(asink_sampler_create(&bad, 1.f, 0, 1.5f, 1), ASINK_ERR_ARG, "top_p=1.5");
  ck_assert_ptr_null(bad);
  int differ = 0;
  for (int i = 0; i < 200; i++) {
    int32_t tg, ta, tb, tk;
    ck_assert_int_eq(asink_sampler_pick(g, logits, V, &tg), ASINK_OK);
    ck_assert_int_eq(asink_sampler_pick(a, logits, V, &ta), ASINK_OK);
    ck_assert_int_eq(asink_sampler_pick(b, logits, V, &tb), ASINK_OK);
    ck_assert_int_eq(asink_sampler_pick(k1, logits, V, &tk), ASINK_OK);
    ck_assert_int_eq(tg, best);
    ck_assert_int_eq(tk, best);
    ck_assert_int_eq(ta, tb);
    differ += ta != best;
  }
  ck_assert_msg(differ > 0, "temperature 1 never left the argmax");
  asink_sampler_free(g);
  asink_sampler_free(a);
  asink_sampler_free(b);
  asink_sampler_free(k1);
}
END_TEST

/* Greedy generation is decoding fed its own argmax. */
START_TEST(greedy_generation_is_decoding_fed_back) {
  asink_model *m = model("softmax", "rope", 2, 1);
  const int B = 2, T0 = 5, n_new = 6, T = T0 + n_new;
  int32_t *prompt = tokens(B * T0, 8), out[2 * 11], want[2 * 11];
  asink_cache *c = NULL;
  asink_sampler *s = NULL;
  ck_assert_int_eq(asink_cache_create(&c, m, "sink", B, 2, 16, 0), ASINK_OK);
  ck_assert_int_eq(asink_sampler_create(&s, 0.f, 0, 1.f, 0), ASINK_OK);
  ck_assert_int_eq(asink_model_generate(m, c, s, T0, prompt, n_new, out), ASINK_OK);
  for (int b = 0; b < B; b++) {
    float *full = malloc((size_t)T * V * sizeof(float));
    memcpy(want + b * T, prompt + b * T0, T0 * sizeof(int32_t));
    for (int i = 0; i < n_new; i++) {
      ck_assert_int_eq(asink_model_forward(m, 1, T0 + i, want + b * T, full), ASINK_OK);
      const float *last = full + (size_t)(T0 + i - 1) * V;
      int best = 0;
      for (int j = 1; j < V; j++)
        if (last[j] > last[best]) best = j;
      want[b * T + T0 + i] = best;
    }
    free(full);
  }
  for (int i = 0; i < B * T; i++) ck_assert_msg(out[i] == want[i], "token %d: %d, want %d", i, out[i], want[i]);
  asink_sampler_free(s);
  asink_cache_free(c);
  asink_model_free(m);
  free(prompt);
}
END_TEST

/* An attached metric records one step per decode call: the attention on the kept sink
 * slots, in [0, 1] for a softmax model. */
START_TEST(metric_records_the_sink_share_of_each_step) {
  asink_model *m = model("softmax", "rope", 2, 1);
  asink_metric *mt = NULL;
  ck_assert_int_eq(asink_metric_create(&mt, 0.3f), ASINK_OK);
  ck_assert_int_eq(asink_model_attach_metric(m, mt), ASINK_OK);
  asink_cache *c = NULL;
  ck_assert_int_eq(asink_cache_create(&c, m, "sink", 1, 1, 8, 0), ASINK_OK);
  int32_t *tok = tokens(20, 2);
  for (int i = 0; i < 20; i++) ck_assert_int_eq(asink_model_decode(m, c, 1, tok + i, NULL), ASINK_OK);
  ck_assert_int_eq(asink_metric_decode_steps(mt), 20);
  float share[20 * 2 * 4];
  ck_assert_int_eq(asink_metric_sink_share(mt, share), ASINK_OK);
  for (int h = 0; h < 8; h++) ck_assert_msg(fabsf(share[h] - 1.f) < 1e-5, "the first token sees only itself: %g", share[h]);
  for (int i = 8; i < 20 * 8; i++) ck_assert(share[i] > 0.f && share[i] < 1.f);
  asink_metric_reset(mt);
  ck_assert_int_eq(asink_metric_decode_steps(mt), 0);
  asink_cache_free(c);
  asink_metric_free(mt);
  asink_model_free(m);
  free(tok);
}
END_TEST

int main(void) {
  Suite *s = suite_create("decode");
  TCase *tc = tcase_create("decode");
  tcase_set_timeout(tc, 300);
  tcase_add_test(tc, window_cache_is_sliding_window_attention);
  tcase_add_test(tc, sink_cache_stream_keeps_flat_memory);
  tcase_add_test(tc, bad_input_is_refused_and_the_cache_stays_usable);
  tcase_add_test(tc, sampler_is_reproducible_and_greedy_is_argmax);
  tcase_add_test(tc, greedy_generation_is_decoding_fed_back);
  tcase_add_test(tc, metric_records_the_sink_share_of_each_step);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
