/* The metric handle's supplied-maps path in C, on maps small enough to work out by hand
 * (docs/metrics.md): importance alpha_j = sum_t A^[t,j] / (T - j), the virtual key's sum / T,
 * Sink_k = percent of (sequence, layer, head) triples with alpha_k > eps (strict), entropy
 * the mean over rows and sequences of -sum A^ log A^, the proxy |A| / (sum |A| + 1e-8) for
 * unnormalized maps. Then every error status of the metric API, reset, and attaching to a
 * model with another layer count. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attnsink.h"

#define TOL 1e-6f

static void expect_near(const float *got, const double *want, int n, double tol) {
  for (int i = 0; i < n; i++)
    ck_assert_msg(fabs(got[i] - want[i]) <= tol, "entry %d: got %.9g, want %.9g", i, got[i], want[i]);
}

static asink_metric *new_metric(float eps) {
  asink_metric *mt = NULL;
  ck_assert_int_eq(asink_metric_create(&mt, eps), ASINK_OK);
  ck_assert_ptr_nonnull(mt);
  return mt;
}

/* Two sequences, one layer, one head, T = 3; causal probability rows. */
static const float MAPS2[2 * 3 * 3] = {
    /* sequence 0 */
    1.0f, 0.0f, 0.0f, /* */
    0.5f, 0.5f, 0.0f, /* */
    0.2f, 0.3f, 0.5f,
    /* sequence 1 */
    1.0f, 0.0f, 0.0f, /* */
    0.9f, 0.1f, 0.0f, /* */
    0.8f, 0.1f, 0.1f,
};
/* alpha_0 = (1 + .5 + .2) / 3, alpha_1 = (.5 + .3) / 2, alpha_2 = .5 / 1;
 * alpha_0 = (1 + .9 + .8) / 3, alpha_1 = (.1 + .1) / 2, alpha_2 = .1 / 1. */
static const double IMP2[6] = {1.7 / 3, 0.4, 0.5, 2.7 / 3, 0.1, 0.1};
/* rows: 0, ln 2, H(.2,.3,.5); 0, H(.9,.1), H(.8,.1,.1); mean of the six rows */
static double ent2(void) {
  double h = 0.0;
  h += log(2.0);
  h -= 0.2 * log(0.2) + 0.3 * log(0.3) + 0.5 * log(0.5);
  h -= 0.9 * log(0.9) + 0.1 * log(0.1);
  h -= 0.8 * log(0.8) + 2 * 0.1 * log(0.1);
  return h / 6.0;
}

START_TEST(hand_maps_importance_sink_entropy) {
  asink_metric *mt = new_metric(0.3f);
  ck_assert_int_eq(asink_metric_add_maps(mt, 0, 1, 2, 1, 3, 3, MAPS2, 1), ASINK_OK);
  int n, l, h, t, tk;
  asink_metric_dims(mt, &n, &l, &h, &t, &tk);
  ck_assert_int_eq(n, 2); ck_assert_int_eq(l, 1); ck_assert_int_eq(h, 1);
  ck_assert_int_eq(t, 3); ck_assert_int_eq(tk, 3);
  asink_metric_dims(mt, NULL, NULL, NULL, NULL, NULL); /* NULLs allowed */
  float imp[6], sink[3], ent[1];
  ck_assert_int_eq(asink_metric_importance(mt, imp), ASINK_OK);
  expect_near(imp, IMP2, 6, TOL);
  /* eps = 0.3: key 0 both (0.567, 0.9); key 1 only 0.4; key 2 only 0.5 */
  ck_assert_int_eq(asink_metric_sink(mt, sink), ASINK_OK);
  expect_near(sink, (const double[]){100, 50, 50}, 3, 1e-4);
  ck_assert_int_eq(asink_metric_entropy(mt, ent), ASINK_OK);
  expect_near(ent, (const double[]){ent2()}, 1, 1e-6);
  asink_metric_free(mt);

  /* eps = 0.5: alpha_2 = 0.5 exactly (0.5f / 1) is not above it (strict) */
  mt = new_metric(0.5f);
  ck_assert_int_eq(asink_metric_add_maps(mt, 0, 1, 2, 1, 3, 3, MAPS2, 1), ASINK_OK);
  ck_assert_int_eq(asink_metric_sink(mt, sink), ASINK_OK);
  expect_near(sink, (const double[]){100, 0, 0}, 3, 1e-4);
  asink_metric_free(mt);

  /* eps = 0.45: key 2 of sequence 0 (0.5) is above, key 1 (0.4) not */
  mt = new_metric(0.45f);
  ck_assert_int_eq(asink_metric_add_maps(mt, 0, 1, 2, 1, 3, 3, MAPS2, 1), ASINK_OK);
  ck_assert_int_eq(asink_metric_sink(mt, sink), ASINK_OK);
  expect_near(sink, (const double[]){100, 0, 50}, 3, 1e-4);
  asink_metric_free(mt);
}
END_TEST

START_TEST(calls_accumulate) {
  /* the two sequences in two calls give what one call gives */
  asink_metric *mt = new_metric(0.3f);
  ck_assert_int_eq(asink_metric_add_maps(mt, 0, 1, 1, 1, 3, 3, MAPS2, 1), ASINK_OK);
  ck_assert_int_eq(asink_metric_add_maps(mt, 0, 1, 1, 1, 3, 3, MAPS2 + 9, 1), ASINK_OK);
  int n;
  asink_metric_dims(mt, &n, NULL, NULL, NULL, NULL);
  ck_assert_int_eq(n, 2);
  float imp[6], sink[3], ent[1];
  ck_assert_int_eq(asink_metric_importance(mt, imp), ASINK_OK);
  expect_near(imp, IMP2, 6, TOL);
  ck_assert_int_eq(asink_metric_sink(mt, sink), ASINK_OK);
  expect_near(sink, (const double[]){100, 50, 50}, 3, 1e-4);
  ck_assert_int_eq(asink_metric_entropy(mt, ent), ASINK_OK);
  expect_near(ent, (const double[]){ent2()}, 1, 1e-6);
  asink_metric_free(mt);
}
END_TEST

START_TEST(virtual_key_column) {
  /* N = 1, H = 1, T = 2, Tk = 3: column 0 is the virtual key (divisor T), then real keys 0, 1 */
  const float maps[2 * 3] = {0.6f, 0.4f, 0.0f, /* */
                             0.3f, 0.2f, 0.5f};
  asink_metric *mt = new_metric(0.4f);
  ck_assert_int_eq(asink_metric_add_maps(mt, 0, 1, 1, 1, 2, 3, maps, 1), ASINK_OK);
  int t, tk;
  asink_metric_dims(mt, NULL, NULL, NULL, &t, &tk);
  ck_assert_int_eq(t, 2); ck_assert_int_eq(tk, 3);
  float imp[3], sink[3], ent[1];
  ck_assert_int_eq(asink_metric_importance(mt, imp), ASINK_OK);
  /* alpha_* = (.6 + .3) / 2, alpha_0 = (.4 + .2) / 2, alpha_1 = .5 / 1 */
  expect_near(imp, (const double[]){0.45, 0.3, 0.5}, 3, TOL);
  ck_assert_int_eq(asink_metric_sink(mt, sink), ASINK_OK);
  expect_near(sink, (const double[]){100, 0, 100}, 3, 1e-4);
  ck_assert_int_eq(asink_metric_entropy(mt, ent), ASINK_OK);
  double h0 = -(0.6 * log(0.6) + 0.4 * log(0.4)), h1 = -(0.3 * log(0.3) + 0.2 * log(0.2) + 0.5 * log(0.5));
  expect_near(ent, (const double[]){(h0 + h1) / 2}, 1, 1e-6);
  asink_metric_free(mt);
}
END_TEST

START_TEST(proxy_rule) {
  /* normalized = 0: each row becomes |A| / (sum |A| + 1e-8) first. Row 1 has a negative entry. */
  const float maps[2 * 2] = {2.0f, 0.0f, /* -> 1, 0 */
                             -1.0f, 3.0f /* -> .25, .75 */};
  asink_metric *mt = new_metric(0.7f);
  ck_assert_int_eq(asink_metric_add_maps(mt, 0, 1, 1, 1, 2, 2, maps, 0), ASINK_OK);
  float imp[2], sink[2], ent[1];
  ck_assert_int_eq(asink_metric_importance(mt, imp), ASINK_OK);
  expect_near(imp, (const double[]){(1.0 + 0.25) / 2, 0.75}, 2, TOL);
  ck_assert_int_eq(asink_metric_sink(mt, sink), ASINK_OK);
  expect_near(sink, (const double[]){0, 100}, 2, 1e-4);
  ck_assert_int_eq(asink_metric_entropy(mt, ent), ASINK_OK);
  expect_near(ent, (const double[]){-(0.25 * log(0.25) + 0.75 * log(0.75)) / 2}, 1, 1e-6);
  asink_metric_free(mt);

  /* the 1e-8 in the denominator: an all-zero row contributes nothing (no division by zero) */
  const float zero_row[2 * 2] = {0.0f, 0.0f, 1.0f, 1.0f};
  mt = new_metric(0.3f);
  ck_assert_int_eq(asink_metric_add_maps(mt, 0, 1, 1, 1, 2, 2, zero_row, 0), ASINK_OK);
  ck_assert_int_eq(asink_metric_importance(mt, imp), ASINK_OK);
  expect_near(imp, (const double[]){0.5 / 2, 0.5}, 2, TOL);
  ck_assert_int_eq(asink_metric_entropy(mt, ent), ASINK_OK);
  expect_near(ent, (const double[]){log(2.0) / 2}, 1, 1e-6);
  asink_metric_free(mt);
}
END_TEST

START_TEST(divisor_is_causal_count_whatever_the_mask) {
  /* a bidirectional map (as under a prefix mask): query 0 attends to key 1 as well. The
   * divisor of key j stays T - j, so alpha_1 = (.5 + .5) / 1 = 1. */
  const float maps[2 * 2] = {0.5f, 0.5f, 0.5f, 0.5f};
  asink_metric *mt = new_metric(0.9f);
  ck_assert_int_eq(asink_metric_add_maps(mt, 0, 1, 1, 1, 2, 2, maps, 1), ASINK_OK);
  float imp[2], sink[2];
  ck_assert_int_eq(asink_metric_importance(mt, imp), ASINK_OK);
  expect_near(imp, (const double[]){0.5, 1.0}, 2, TOL);
  ck_assert_int_eq(asink_metric_sink(mt, sink), ASINK_OK);
  expect_near(sink, (const double[]){0, 100}, 2, 1e-4);
  asink_metric_free(mt);
}
END_TEST

START_TEST(layers_in_order_and_layout) {
  /* L = 2, H = 1, N = 2: layer 0 gets MAPS2, layer 1 the sequences swapped. importance is
   * (N, L, H, Tk); sequences count only when the last layer has arrived. */
  float swapped[18];
  memcpy(swapped, MAPS2 + 9, 9 * sizeof(float));
  memcpy(swapped + 9, MAPS2, 9 * sizeof(float));
  asink_metric *mt = new_metric(0.3f);
  ck_assert_int_eq(asink_metric_add_maps(mt, 0, 2, 2, 1, 3, 3, MAPS2, 1), ASINK_OK);
  int n;
  asink_metric_dims(mt, &n, NULL, NULL, NULL, NULL);
  ck_assert_int_eq(n, 0);
  float imp[12], sink[3];
  ck_assert_int_eq(asink_metric_importance(mt, imp), ASINK_ERR_STATE);
  ck_assert_int_eq(asink_metric_add_maps(mt, 1, 2, 2, 1, 3, 3, swapped, 1), ASINK_OK);
  asink_metric_dims(mt, &n, NULL, NULL, NULL, NULL);
  ck_assert_int_eq(n, 2);
  ck_assert_int_eq(asink_metric_importance(mt, imp), ASINK_OK);
  const double want[12] = {IMP2[0], IMP2[1], IMP2[2], IMP2[3], IMP2[4], IMP2[5],
                           IMP2[3], IMP2[4], IMP2[5], IMP2[0], IMP2[1], IMP2[2]};
  expect_near(imp, want, 12, TOL);
  ck_assert_int_eq(asink_metric_sink(mt, sink), ASINK_OK); /* over the 4 (n, l) pairs */
  expect_near(sink, (const double[]){100, 50, 50}, 3, 1e-4);
  asink_metric_free(mt);
}
END_TEST

START_TEST(reset_empties) {
  asink_metric *mt = new_metric(0.3f);
  ck_assert_int_eq(asink_metric_add_maps(mt, 0, 1, 2, 1, 3, 3, MAPS2, 1), ASINK_OK);
  asink_metric_reset(mt);
  int n = -1, l = -1, h = -1, t = -1, tk = -1;
  asink_metric_dims(mt, &n, &l, &h, &t, &tk);
  ck_assert_int_eq(n, 0); ck_assert_int_eq(l, 0); ck_assert_int_eq(h, 0);
  ck_assert_int_eq(t, 0); ck_assert_int_eq(tk, 0);
  float buf[16];
  ck_assert_int_eq(asink_metric_importance(mt, buf), ASINK_ERR_STATE);
  ck_assert_int_eq(asink_metric_sink(mt, buf), ASINK_ERR_STATE);
  ck_assert_int_eq(asink_metric_entropy(mt, buf), ASINK_ERR_STATE);
  ck_assert_ptr_null(asink_metric_json(mt));
  /* after a reset another shape is accepted, and only the new data counts */
  const float maps[2 * 3] = {0.6f, 0.4f, 0.0f, 0.3f, 0.2f, 0.5f};
  ck_assert_int_eq(asink_metric_add_maps(mt, 0, 1, 1, 1, 2, 3, maps, 1), ASINK_OK);
  asink_metric_dims(mt, &n, NULL, NULL, &t, &tk);
  ck_assert_int_eq(n, 1); ck_assert_int_eq(t, 2); ck_assert_int_eq(tk, 3);
  ck_assert_int_eq(asink_metric_importance(mt, buf), ASINK_OK);
  expect_near(buf, (const double[]){0.45, 0.3, 0.5}, 3, TOL);
  asink_metric_reset(NULL); /* no-op */
  asink_metric_free(mt);
  asink_metric_free(NULL);
}
END_TEST

START_TEST(json_of_supplied_maps) {
  asink_metric *mt = new_metric(0.3f);
  ck_assert_int_eq(asink_metric_add_maps(mt, 0, 1, 2, 1, 3, 3, MAPS2, 1), ASINK_OK);
  char *js = asink_metric_json(mt);
  ck_assert_ptr_nonnull(js);
  ck_assert_msg(strstr(js, "\"samples\": 2"), "%s", js);
  ck_assert_msg(strstr(js, "\"importance\": [[[[0.5666667, 0.4, 0.5]]], [[[0.9"), "%s", js);
  ck_assert_msg(strstr(js, "\"sink\": [100, 50, 50]"), "%s", js);
  ck_assert_msg(strstr(js, "\"entropy\""), "%s", js);
  ck_assert_msg(!strstr(js, "hidden_norm"), "supplied maps carry no activations: %s", js);
  free(js);
  asink_metric_free(mt);
}
END_TEST

/* ----------------------------------------------------------------------------- errors */

START_TEST(bad_eps) {
  const float bad[] = {0.0f, 1.0f, -0.1f, 1.5f, NAN, INFINITY};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    asink_metric *mt = (asink_metric *)&mt; /* must be overwritten with NULL */
    ck_assert_int_eq(asink_metric_create(&mt, bad[i]), ASINK_ERR_ARG);
    ck_assert_ptr_null(mt);
    ck_assert_msg(strstr(asink_last_error(), "eps"), "message: %s", asink_last_error());
  }
  ck_assert_int_eq(asink_metric_create(NULL, 0.3f), ASINK_ERR_ARG);
}
END_TEST

START_TEST(bad_maps) {
  asink_metric *mt = new_metric(0.3f);
  float ok[9] = {1, 0, 0, .5f, .5f, 0, .2f, .3f, .5f};
  ck_assert_int_eq(asink_metric_add_maps(NULL, 0, 1, 1, 1, 3, 3, ok, 1), ASINK_ERR_ARG);
  ck_assert_int_eq(asink_metric_add_maps(mt, 0, 1, 1, 1, 3, 3, NULL, 1), ASINK_ERR_ARG);
  /* layer outside [0, n_layer) */
  ck_assert_int_eq(asink_metric_add_maps(mt, 1, 1, 1, 1, 3, 3, ok, 1), ASINK_ERR_ARG);
  ck_assert_msg(strstr(asink_last_error(), "layer=1"), "%s", asink_last_error());
  ck_assert_int_eq(asink_metric_add_maps(mt, -1, 1, 1, 1, 3, 3, ok, 1), ASINK_ERR_ARG);
  ck_assert_int_eq(asink_metric_add_maps(mt, 0, 0, 1, 1, 3, 3, ok, 1), ASINK_ERR_ARG);
  /* sizes */
  ck_assert_int_eq(asink_metric_add_maps(mt, 0, 1, 0, 1, 3, 3, ok, 1), ASINK_ERR_SHAPE);
  ck_assert_int_eq(asink_metric_add_maps(mt, 0, 1, 1, 0, 3, 3, ok, 1), ASINK_ERR_SHAPE);
  ck_assert_int_eq(asink_metric_add_maps(mt, 0, 1, 1, 1, 0, 1, ok, 1), ASINK_ERR_SHAPE);
  /* key columns: Tq or Tq + 1 only */
  ck_assert_int_eq(asink_metric_add_maps(mt, 0, 1, 1, 1, 3, 2, ok, 1), ASINK_ERR_SHAPE);
  ck_assert_msg(strstr(asink_last_error(), "Tk=2"), "%s", asink_last_error());
  ck_assert_int_eq(asink_metric_add_maps(mt, 0, 1, 1, 1, 2, 4, ok, 1), ASINK_ERR_SHAPE);
  /* negative entries: refused when normalized, accepted (|A|) otherwise */
  float neg[9];
  memcpy(neg, ok, sizeof neg);
  neg[4] = -0.5f;
  ck_assert_int_eq(asink_metric_add_maps(mt, 0, 1, 1, 1, 3, 3, neg, 1), ASINK_ERR_ARG);
  ck_assert_msg(strstr(asink_last_error(), "entry 4"), "%s", asink_last_error());
  /* not finite, whatever normalized says */
  float nan_map[9];
  memcpy(nan_map, ok, sizeof nan_map);
  nan_map[8] = NAN;
  ck_assert_int_eq(asink_metric_add_maps(mt, 0, 1, 1, 1, 3, 3, nan_map, 0), ASINK_ERR_ARG);
  nan_map[8] = INFINITY;
  ck_assert_int_eq(asink_metric_add_maps(mt, 0, 1, 1, 1, 3, 3, nan_map, 1), ASINK_ERR_ARG);
  /* none of the refused calls left anything behind */
  int n, l;
  asink_metric_dims(mt, &n, &l, NULL, NULL, NULL);
  ck_assert_int_eq(n, 0); ck_assert_int_eq(l, 0);
  ck_assert_int_eq(asink_metric_add_maps(mt, 0, 1, 1, 1, 3, 3, neg, 0), ASINK_OK);
  /* shapes must match what the metric holds */
  float two_heads[18] = {0};
  ck_assert_int_eq(asink_metric_add_maps(mt, 0, 1, 1, 2, 3, 3, two_heads, 1), ASINK_ERR_SHAPE);
  ck_assert_int_eq(asink_metric_add_maps(mt, 0, 2, 1, 1, 3, 3, ok, 1), ASINK_ERR_SHAPE);
  asink_metric_dims(mt, &n, NULL, NULL, NULL, NULL);
  ck_assert_int_eq(n, 1);
  asink_metric_free(mt);
}
END_TEST

START_TEST(layer_order_and_batch_size) {
  asink_metric *mt = new_metric(0.3f);
  ck_assert_int_eq(asink_metric_add_maps(mt, 1, 2, 2, 1, 3, 3, MAPS2, 1), ASINK_ERR_STATE);
  ck_assert_int_eq(asink_metric_add_maps(mt, 0, 2, 2, 1, 3, 3, MAPS2, 1), ASINK_OK);
  ck_assert_int_eq(asink_metric_add_maps(mt, 0, 2, 2, 1, 3, 3, MAPS2, 1), ASINK_ERR_STATE);
  ck_assert_int_eq(asink_metric_add_maps(mt, 1, 2, 1, 1, 3, 3, MAPS2, 1), ASINK_ERR_SHAPE);
  ck_assert_int_eq(asink_metric_add_maps(mt, 1, 2, 2, 1, 3, 3, MAPS2, 1), ASINK_OK);
  int n;
  asink_metric_dims(mt, &n, NULL, NULL, NULL, NULL);
  ck_assert_int_eq(n, 2);
  asink_metric_free(mt);
}
END_TEST

START_TEST(reads_need_data) {
  asink_metric *mt = new_metric(0.3f);
  float buf[64];
  asink_status (*const reads[])(const asink_metric *, float *) = {
      asink_metric_importance, asink_metric_sink,       asink_metric_hidden_norm,
      asink_metric_key_norm,   asink_metric_value_norm, asink_metric_qk_cosine,
      asink_metric_qk_norm_product, asink_metric_entropy};
  const int n_reads = sizeof reads / sizeof *reads;
  for (int i = 0; i < n_reads; i++) {
    ck_assert_int_eq(reads[i](mt, buf), ASINK_ERR_STATE);
    ck_assert_int_eq(reads[i](NULL, buf), ASINK_ERR_ARG);
  }
  ck_assert_ptr_null(asink_metric_json(mt));
  ck_assert_ptr_null(asink_metric_json(NULL));
  ck_assert_int_eq(asink_metric_add_maps(mt, 0, 1, 2, 1, 3, 3, MAPS2, 1), ASINK_OK);
  /* the model-only statistics do not exist for supplied maps */
  for (int i = 2; i < 7; i++) {
    ck_assert_int_eq(reads[i](mt, buf), ASINK_ERR_STATE);
    ck_assert_msg(strstr(asink_last_error(), "model"), "%s", asink_last_error());
  }
  ck_assert_int_eq(asink_metric_importance(mt, NULL), ASINK_ERR_ARG);
  asink_metric_free(mt);
}
END_TEST

/* ------------------------------------------------------------------------- with a model */

static asink_model *llama(int n_layer) {
  char cfg[512];
  snprintf(cfg, sizeof cfg,
           "{\"model_type\": \"llama\", \"vocab_size\": 37, \"hidden_size\": 32, "
           "\"intermediate_size\": 48, \"num_hidden_layers\": %d, \"num_attention_heads\": 4, "
           "\"num_key_value_heads\": 2, \"rms_norm_eps\": 1e-5, \"rope_theta\": 10000.0, "
           "\"max_position_embeddings\": 16, \"tie_word_embeddings\": false}",
           n_layer);
  asink_model *m = NULL;
  ck_assert_msg(asink_model_create(&m, cfg, 1) == ASINK_OK, "%s", asink_last_error());
  return m;
}

START_TEST(attach_other_layer_count) {
  asink_model *m2 = llama(2), *m3 = llama(3);
  asink_metric *mt = new_metric(0.3f);
  const int32_t tok[2 * 5] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  ck_assert_int_eq(asink_model_attach_metric(m2, mt), ASINK_OK);
  ck_assert_int_eq(asink_model_forward(m2, 2, 5, tok, NULL), ASINK_OK);
  ck_assert_int_eq(asink_model_attach_metric(m3, mt), ASINK_ERR_SHAPE);
  const char *msg = asink_last_error();
  ck_assert_msg(strstr(msg, "2 layers") && strstr(msg, "3"), "message: %s", msg);
  /* the refused attach changed nothing: the metric still holds 2 sequences of 2 layers */
  int n, l, h, t, tk;
  asink_metric_dims(mt, &n, &l, &h, &t, &tk);
  ck_assert_int_eq(n, 2); ck_assert_int_eq(l, 2); ck_assert_int_eq(h, 4);
  ck_assert_int_eq(t, 5); ck_assert_int_eq(tk, 5);
  float hid[3 * 5];
  ck_assert_int_eq(asink_metric_hidden_norm(mt, hid), ASINK_OK);
  /* supplied maps never mix into a model's statistics (they carry no activations) */
  ck_assert_int_eq(asink_metric_add_maps(mt, 0, 3, 1, 4, 5, 5, (float[100]){0}, 1), ASINK_ERR_STATE);
  ck_assert_int_eq(asink_metric_add_maps(mt, 0, 2, 1, 4, 5, 5, (float[100]){0}, 1), ASINK_ERR_STATE);
  /* after a reset the metric goes to the 3-layer model */
  asink_metric_reset(mt);
  ck_assert_int_eq(asink_model_attach_metric(m3, mt), ASINK_OK);
  ck_assert_int_eq(asink_model_forward(m3, 2, 5, tok, NULL), ASINK_OK);
  asink_metric_dims(mt, &n, &l, NULL, NULL, NULL);
  ck_assert_int_eq(n, 2); ck_assert_int_eq(l, 3);
  char *js = asink_metric_json(mt);
  ck_assert_ptr_nonnull(js);
  ck_assert_msg(strstr(js, "\"hidden_norm\"") && strstr(js, "\"qk_norm_product\""), "%s", js);
  free(js);
  /* freeing an attached metric detaches it: the model runs on */
  asink_metric_free(mt);
  ck_assert_int_eq(asink_model_forward(m3, 2, 5, tok, NULL), ASINK_OK);
  ck_assert_int_eq(asink_model_attach_metric(NULL, NULL), ASINK_ERR_ARG);
  asink_model_free(m2);
  asink_model_free(m3);
}
END_TEST

Suite *metric_suite(void) {
  Suite *s = suite_create("metric");
  TCase *tc = tcase_create("supplied");
  tcase_add_test(tc, hand_maps_importance_sink_entropy);
  tcase_add_test(tc, calls_accumulate);
  tcase_add_test(tc, virtual_key_column);
  tcase_add_test(tc, proxy_rule);
  tcase_add_test(tc, divisor_is_causal_count_whatever_the_mask);
  tcase_add_test(tc, layers_in_order_and_layout);
  tcase_add_test(tc, reset_empties);
  tcase_add_test(tc, json_of_supplied_maps);
  suite_add_tcase(s, tc);
  tc = tcase_create("errors");
  /* one case runs two tiny models: seconds at most, but the CI cores are shared */
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, bad_eps);
  tcase_add_test(tc, bad_maps);
  tcase_add_test(tc, layer_order_and_batch_size);
  tcase_add_test(tc, reads_need_data);
  tcase_add_test(tc, attach_other_layer_count);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(metric_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
