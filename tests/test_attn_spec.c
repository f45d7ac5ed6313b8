/* The attention-op's front door in C: spec parsing, canonical spelling, every
 * rejected input with a message naming it, and argument checks of the op calls. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "attn/spec.h"
#include "attnsink.h"

static void expect_spec_error(const char *spec, const char *needle) {
  asink_attn *op = (asink_attn *)0x1;
  asink_status s = asink_attn_create(&op, spec, 4, 2, 8);
  ck_assert_msg(s == ASINK_ERR_SPEC, "spec '%s' gave status %d, expected ASINK_ERR_SPEC", spec, s);
  ck_assert_ptr_null(op);
  ck_assert_msg(strstr(asink_last_error(), needle) != NULL,
                "spec '%s': message '%s' does not name '%s'", spec, asink_last_error(), needle);
}

START_TEST(bad_specs_name_the_offending_text) {
  expect_spec_error("softmaxx", "softmaxx");
  expect_spec_error("", "empty");
  expect_spec_error("softmax,foo=1", "foo");
  expect_spec_error("softmax,window", "window");
  expect_spec_error("softmax,window=0", "window=0");
  expect_spec_error("softmax,window=-3", "window=-3");
  expect_spec_error("softmax,window=x", "window=x");
  expect_spec_error("softmax,window=2.5", "window=2.5");
  expect_spec_error("softmax,prefix=0", "prefix=0");
  expect_spec_error("softmax,alpha=0", "alpha=0");
  expect_spec_error("softmax,alpha=-1", "alpha=-1");
  expect_spec_error("softmax,alpha=nan", "alpha=nan");
  expect_spec_error("softmax,scale=0", "scale=0");
  expect_spec_error("softmax,scale=inf", "scale=inf");
  expect_spec_error("softmax,bias=1e99", "bias=1e99");
  expect_spec_error("softmax,causal=2", "causal=2");
  expect_spec_error("softmax,alibi=yes", "alibi=yes");
  expect_spec_error("softmax,kbias=all", "kbias=all");
  expect_spec_error("softmax,vbias=1", "vbias=1");
  expect_spec_error("softmax,sink=one", "sink=one");
  expect_spec_error("softmax,norm=sum", "norm=sum");
  expect_spec_error("sigmoid,sink=head", "sink=head");
  expect_spec_error("elu,sink=zero", "sink=zero");
  expect_spec_error("sigmoid,alpha=2", "alpha");
  expect_spec_error("sigmoid,norm=max", "norm=max");
  expect_spec_error("softmax,causal=0,window=4", "window=4");
  expect_spec_error("softmax,causal=0,prefix=4", "prefix=4");
  expect_spec_error("softmax,window=4,window=5", "twice");
  expect_spec_error("softmax,,window=4", "empty");
  expect_spec_error("softmax,window=4,", "empty");
}
END_TEST

START_TEST(bad_shapes_are_rejected) {
  asink_attn *op;
  ck_assert_int_eq(asink_attn_create(&op, "softmax", 6, 4, 8), ASINK_ERR_SHAPE);
  ck_assert_ptr_nonnull(strstr(asink_last_error(), "n_head=6"));
  ck_assert_int_eq(asink_attn_create(&op, "softmax", 4, 2, 0), ASINK_ERR_SHAPE);
  ck_assert_ptr_nonnull(strstr(asink_last_error(), "head_dim=0"));
  ck_assert_int_eq(asink_attn_create(&op, "softmax", 0, 1, 8), ASINK_ERR_SHAPE);
  ck_assert_int_eq(asink_attn_create(&op, "softmax", 4, 0, 8), ASINK_ERR_SHAPE);
  ck_assert_int_eq(asink_attn_create(NULL, "softmax", 4, 2, 8), ASINK_ERR_ARG);
  ck_assert_int_eq(asink_attn_create(&op, NULL, 4, 2, 8), ASINK_ERR_ARG);
}
END_TEST

START_TEST(canonical_spec_spells_every_option) {
  asink_attn *op;
  ck_assert_int_eq(asink_attn_create(&op, " sigmoid , bias=-2, norm=sum ,kbias=head", 4, 2, 16), ASINK_OK);
  ck_assert_str_eq(asink_attn_spec(op), "sigmoid,norm=sum,scale=0.25,bias=-2,causal=1,kbias=head");
  ck_assert_int_eq(asink_attn_key_count(op, 10), 11);
  asink_attn_free(op);
  ck_assert_int_eq(asink_attn_create(&op, "softmax,window=8,prefix=4,alibi=1,sink=zero,alpha=2", 2, 2, 4), ASINK_OK);
  ck_assert_str_eq(asink_attn_spec(op),
                   "softmax,scale=0.5,bias=0,causal=1,window=8,prefix=4,alibi=1,sink=zero,alpha=2");
  ck_assert_int_eq(asink_attn_key_count(op, 10), 10);
  asink_attn_free(op);
  asink_attn_free(NULL);
}
END_TEST

START_TEST(parameters_have_the_spec_shapes) {
  asink_attn *op;
  ck_assert_int_eq(asink_attn_create(&op, "softmax,kbias=head,vbias=shared,sink=head", 4, 2, 8), ASINK_OK);
  ck_assert_int_eq(asink_attn_param_count(op), 3);
  const char *names[] = {"k_bias", "v_bias", "sinks"};
  int64_t want[3][2] = {{4, 8}, {1, 8}, {4, 0}};
  for (int i = 0; i < 3; i++) {
    const char *name;
    int ndim;
    int64_t shape[2];
    ck_assert_int_eq(asink_attn_param_info(op, i, &name, &ndim, shape), ASINK_OK);
    ck_assert_str_eq(name, names[i]);
    ck_assert_int_eq(ndim, i == 2 ? 1 : 2);
    ck_assert_int_eq(shape[0], want[i][0]);
    if (ndim == 2) ck_assert_int_eq(shape[1], want[i][1]);
    float *p, *g;
    size_t n, ng;
    ck_assert_int_eq(asink_attn_param(op, name, &p, &n), ASINK_OK);
    ck_assert_int_eq(asink_attn_grad(op, name, &g, &ng), ASINK_OK);
    ck_assert_uint_eq(n, (size_t)(want[i][0] * (ndim == 2 ? want[i][1] : 1)));
    ck_assert_uint_eq(n, ng);
    ck_assert_ptr_ne(p, g);
  }
  ck_assert_int_eq(asink_attn_param_info(op, 3, NULL, NULL, NULL), ASINK_ERR_ARG);
  float *p;
  ck_assert_int_eq(asink_attn_param(op, "q_bias", &p, NULL), ASINK_ERR_ARG);
  ck_assert_ptr_nonnull(strstr(asink_last_error(), "q_bias"));
  asink_attn_free(op);
}
END_TEST

START_TEST(call_order_and_arguments_are_checked) {
  asink_attn *op;
  ck_assert_int_eq(asink_attn_create(&op, "softmax", 2, 1, 4), ASINK_OK);
  float x[2 * 3 * 2 * 4] = {0}, y[2 * 3 * 2 * 4];
  ck_assert_int_eq(asink_attn_backward(op, 1, 4, 4, x, x, x, x, x, y, y, y), ASINK_ERR_STATE);
  ck_assert_int_eq(asink_attn_forward(op, 0, 3, x, x, x, y, NULL), ASINK_ERR_SHAPE);
  ck_assert_ptr_nonnull(strstr(asink_last_error(), "B=0"));
  ck_assert_int_eq(asink_attn_forward(op, 2, 3, NULL, x, x, y, NULL), ASINK_ERR_ARG);
  ck_assert_int_eq(asink_attn_forward(op, 2, 3, x, x, x, y, NULL), ASINK_OK);
  ck_assert_int_eq(asink_attn_backward(op, 2, 3, 4, x, x, x, y, x, y, y, y), ASINK_ERR_SHAPE);
  ck_assert_ptr_nonnull(strstr(asink_last_error(), "Tk=4"));
  ck_assert_int_eq(asink_attn_backward(op, 1, 3, 3, x, x, x, y, x, y, y, y), ASINK_ERR_SHAPE);
  ck_assert_int_eq(asink_attn_backward(op, 2, 3, 3, x, x, x, y, x, y, y, y), ASINK_OK);
  asink_attn_free(op);
}
END_TEST

/* The memory bound of blocked attention: B=1, H=8, D=64, T=16384 forward under 1 GiB
 * resident (a T x T map per head would be 8 GiB). */
START_TEST(long_sequence_forward_stays_under_a_gibibyte) {
  const int T = 16384, H = 8, D = 64;
  size_t n = (size_t)T * H * D;
  float *q = malloc(n * 4), *k = malloc(n * 4), *v = malloc(n * 4), *o = malloc(n * 4);
  float *imp = malloc((size_t)H * T * 4);
  for (size_t i = 0; i < n; i++) q[i] = k[i] = v[i] = (float)((i * 2654435761u) % 1000) / 1000.f - 0.5f;
  asink_attn *op;
  ck_assert_int_eq(asink_attn_create(&op, "softmax", H, H, D), ASINK_OK);
  ck_assert_int_eq(asink_attn_forward(op, 1, T, q, k, v, o, imp), ASINK_OK);
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  ck_assert_msg(ru.ru_maxrss < 1024L * 1024L, "max RSS %ld KiB", ru.ru_maxrss);
  /* every query attends: the output is finite and importance of key 0 is a mean of
   * probabilities, so within (0, 1] */
  for (size_t i = 0; i < n; i += 4099) ck_assert(isfinite(o[i]));
  ck_assert(imp[0] > 0.f && imp[0] <= 1.f);
  asink_attn_free(op);
  free(q), free(k), free(v), free(o), free(imp);
}
END_TEST

int main(void) {
  Suite *s = suite_create("attn_spec");
  TCase *tc = tcase_create("spec");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, bad_specs_name_the_offending_text);
  tcase_add_test(tc, bad_shapes_are_rejected);
  tcase_add_test(tc, canonical_spec_spells_every_option);
  tcase_add_test(tc, parameters_have_the_spec_shapes);
  tcase_add_test(tc, call_order_and_arguments_are_checked);
  tcase_add_test(tc, long_sequence_forward_stays_under_a_gibibyte);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
