/* Weights kept in bf16 (asink_model_load_opts / asink_model_create_opts, "weights=bf16"):
 * the options are checked; the bf16 GEMM paths (packed and skinny, every SIMD table this
 * CPU runs) give the float paths' results on the widened matrix; a bf16-weights model's
 * logits, eval loss and decoding equal those of the float model whose weight matrices are
 * rounded to bf16, in every family (nn.Linear and Conv1D layouts, fused q/k/v); training
 * it is refused; its checkpoint saves the values it holds. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "attnsink.h"
#include "core/blas.h"
#include "kernels/kernels.h"
#include "simd_suite.h"

static double rel_err(const float *a, const float *b, size_t n) {
  double e = 0.0, s = 0.0;
  for (size_t i = 0; i < n; i++) {
    e = fmax(e, fabs((double)a[i] - b[i]));
    s = fmax(s, fabs((double)b[i]));
  }
  return s > 0 ? e / s : e;
}

static float frand(unsigned *s) {
  *s = *s * 1103515245u + 12345u;
  return (float)((*s >> 8) & 0xffff) / 32768.f - 1.f;
}

START_TEST(rounding_is_nearest_even) {
  union { uint32_t u; float f; } v;
  v.u = 0x3f808000u; /* exactly between 0x3f80 and 0x3f81: to the even one */
  ck_assert_uint_eq(asink_f32_to_bf16(v.f), 0x3f80u);
  v.u = 0x3f818000u; /* between 0x3f81 and 0x3f82 */
  ck_assert_uint_eq(asink_f32_to_bf16(v.f), 0x3f82u);
  v.u = 0x3f808001u; /* just above the tie */
  ck_assert_uint_eq(asink_f32_to_bf16(v.f), 0x3f81u);
  ck_assert_uint_eq(asink_f32_to_bf16(INFINITY), 0x7f80u);
  ck_assert_uint_eq(asink_f32_to_bf16(-0.f), 0x8000u);
  ck_assert(isnan(asink_bf16_to_f32(asink_f32_to_bf16(NAN))));
  ck_assert(isinf(asink_bf16_to_f32(asink_f32_to_bf16(3.4e38f)))); /* rounds past the largest */
  ck_assert_float_eq(asink_bf16_to_f32(0x3fc0u), 1.5f);
}
END_TEST

/* Each table's bf16 kernels against its float ones on the widened matrix, bit for bit. */
START_TEST(bf16_kernels_equal_float_on_widened) {
  const asink_kernels *tabs[] = {&asink_kernels_scalar, asink_kernels_avx2_table,
                                 asink_kernels_avx512_table};
  const asink_kernels *in_use = asink_kern();
  unsigned s = 7;
  enum { N = 37, K = 203, LD = 211 };
  uint16_t *M16 = malloc(N * LD * sizeof *M16);
  float *M = malloc(N * LD * sizeof *M), x[LD], y0[LD], y1[LD];
  for (int i = 0; i < N * LD; i++) M[i] = asink_bf16_to_f32(M16[i] = asink_f32_to_bf16(frand(&s)));
  for (int i = 0; i < LD; i++) x[i] = frand(&s);
  for (int t = 0; t < 3; t++) {
    const asink_kernels *kn = tabs[t];
    /* a table runs only where the CPU runs it: the one in use and those below it */
    if (!kn || (t > 0 && in_use == &asink_kernels_scalar) || (t == 2 && strcmp(in_use->name, kn->name))) continue;
    for (size_t k = 0; k <= K; k += k < 20 ? 1 : 61) {
      kn->dot_rows(N, k, x, M, LD, y0);
      kn->dot_rows_bf16(N, k, x, M16, LD, y1);
      ck_assert_msg(!memcmp(y0, y1, N * sizeof(float)), "%s dot_rows_bf16 k=%zu", kn->name, k);
      for (size_t p = 0; p < k; p++) y0[p] = y1[p] = x[p];
      kn->axpy_rows(N, k, x, M, LD, y0);
      kn->axpy_rows_bf16(N, k, x, M16, LD, y1);
      ck_assert_msg(!memcmp(y0, y1, k * sizeof(float)), "%s axpy_rows_bf16 k=%zu", kn->name, k);
    }
    /* panels of every width the micro-kernels use, read straight and across */
    size_t widths[] = {4, 6, 8, 16, 32};
    for (size_t wi = 0; wi < 5; wi++)
      for (size_t w = 1; w <= widths[wi]; w += 3)
        for (int straight = 0; straight < 2; straight++) {
          size_t W = widths[wi], k = straight ? 30 : 150, sr = straight ? 1 : LD, sp = straight ? LD : 1;
          float *a = malloc(W * k * sizeof(float)), *b = malloc(W * k * sizeof(float));
          memset(a, 0x55, W * k * sizeof(float));
          memset(b, 0x55, W * k * sizeof(float));
          kn->pack_panel(a, M + 3, W, w, k, sr, sp);
          kn->pack_panel_bf16(b, M16 + 3, W, w, k, sr, sp);
          ck_assert_msg(!memcmp(a, b, W * k * sizeof(float)), "%s pack_panel_bf16 W=%zu w=%zu straight=%d",
                        kn->name, W, w, straight);
          free(a);
          free(b);
        }
  }
  free(M16);
  free(M);
}
END_TEST

/* The driver: asink_sgemm_bf16 against asink_sgemm (packed driver) on the widened B, for
 * skinny and packed shapes, both layouts of B, 1 and 2 threads. */
START_TEST(bf16_gemm_equals_float_gemm) {
  asink_sgemm_force_driver(1);
  unsigned s = 11;
  const int shapes[][3] = {{1, 70, 300}, {5, 129, 77}, {9, 50, 64}, {40, 300, 270}, {13, 17, 5}};
  for (int si = 0; si < 5; si++)
    for (int tb = 0; tb < 2; tb++)
      for (int th = 1; th <= 2; th++) {
        int m = shapes[si][0], n = shapes[si][1], k = shapes[si][2], ldb = tb ? k + 3 : n + 3;
        size_t nb = (size_t)(tb ? n : k) * ldb;
        float *A = malloc((size_t)m * k * sizeof(float)), *B = malloc(nb * sizeof(float));
        uint16_t *B16 = malloc(nb * sizeof *B16);
        float *C0 = malloc((size_t)m * n * sizeof(float)), *C1 = malloc((size_t)m * n * sizeof(float));
        for (int i = 0; i < m * k; i++) A[i] = frand(&s);
        for (size_t i = 0; i < nb; i++) B[i] = asink_bf16_to_f32(B16[i] = asink_f32_to_bf16(frand(&s)));
        for (int i = 0; i < m * n; i++) C0[i] = C1[i] = frand(&s);
        asink_sgemm(false, tb, m, n, k, 0.5f, A, k, B, ldb, 0.25f, C0, n, th);
        asink_sgemm_bf16(tb, m, n, k, 0.5f, A, k, B16, ldb, 0.25f, C1, n, th);
        double e = rel_err(C1, C0, (size_t)m * n);
        ck_assert_msg(e == 0.0, "m=%d n=%d k=%d transb=%d threads=%d: %g", m, n, k, tb, th, e);
        free(A), free(B), free(B16), free(C0), free(C1);
      }
  asink_sgemm_force_driver(-1);
}
END_TEST

START_TEST(options_are_checked) {
  const char *cfg = "{\"model_type\": \"llama\", \"vocab_size\": 16, \"hidden_size\": 8,"
                    " \"intermediate_size\": 16, \"num_hidden_layers\": 1, \"num_attention_heads\": 2,"
                    " \"max_position_embeddings\": 16}";
  asink_model *m = NULL;
  ck_assert_int_eq(asink_model_create_opts(&m, cfg, 1, "weights=fp16"), ASINK_ERR_ARG);
  ck_assert_ptr_null(m);
  ck_assert_ptr_nonnull(strstr(asink_last_error(), "fp16"));
  ck_assert_int_eq(asink_model_create_opts(&m, cfg, 1, "dtype=bf16"), ASINK_ERR_ARG);
  ck_assert_ptr_nonnull(strstr(asink_last_error(), "dtype"));
  ck_assert_int_eq(asink_model_create_opts(&m, cfg, 1, "weights"), ASINK_ERR_ARG);
  ck_assert_int_eq(asink_model_create_opts(&m, cfg, 1, "weights=bf16,"), ASINK_OK);
  ck_assert_str_eq(asink_model_weights(m), "bf16");
  asink_model_free(m);
  ck_assert_int_eq(asink_model_create_opts(&m, cfg, 1, ""), ASINK_OK);
  ck_assert_str_eq(asink_model_weights(m), "fp32");
  asink_model_free(m);
  ck_assert_int_eq(asink_model_load_opts(&m, "/nonexistent", "weights=int8"), ASINK_ERR_ARG);
  ck_assert_ptr_nonnull(strstr(asink_last_error(), "int8"));
}
END_TEST

/* Configs of every layout: llama (GQA, q/k/v biases, gated), gpt2 (Conv1D, fused c_attn),
 * neox (per-head fused qkv, untied head), opt (learned positions offset, ReLU). */
static const char *const family_cfgs[] = {
    "{\"model_type\": \"llama\", \"vocab_size\": 70, \"hidden_size\": 80, \"intermediate_size\": 200,"
    " \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"num_key_value_heads\": 2,"
    " \"max_position_embeddings\": 64, \"tie_word_embeddings\": false, \"attention_bias\": true}",
    "{\"model_type\": \"gpt2\", \"vocab_size\": 70, \"n_embd\": 80, \"n_inner\": 200, \"n_layer\": 2,"
    " \"n_head\": 4, \"n_positions\": 64}",
    "{\"model_type\": \"gpt_neox\", \"vocab_size\": 70, \"hidden_size\": 80, \"intermediate_size\": 200,"
    " \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"max_position_embeddings\": 64,"
    " \"rotary_pct\": 0.5}",
    "{\"model_type\": \"opt\", \"vocab_size\": 70, \"hidden_size\": 80, \"ffn_dim\": 200,"
    " \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"max_position_embeddings\": 64,"
    " \"word_embed_proj_dim\": 80}",
};

/* The float model's parameters that the bf16 model keeps in bf16, rounded to bf16. */
static int round_like(asink_model *ref, asink_model *half) {
  int rounded = 0;
  for (int i = 0; i < asink_model_param_count(ref); i++) {
    const char *name;
    asink_model_param_info(ref, i, &name, NULL, NULL);
    float *h, *d;
    size_t n;
    asink_status st = asink_model_param(half, name, &h, &n);
    if (st == ASINK_OK) continue;
    ck_assert_int_eq(st, ASINK_ERR_UNSUPPORTED);
    ck_assert_int_eq(asink_model_param(ref, name, &d, &n), ASINK_OK);
    for (size_t j = 0; j < n; j++) d[j] = asink_bf16_to_f32(asink_f32_to_bf16(d[j]));
    rounded++;
  }
  return rounded;
}

START_TEST(bf16_model_equals_rounded_float_model) {
  const int V = 70, B = 2, T = 24;
  int32_t tok[2 * 24], tgt[2 * 24];
  for (int i = 0; i < B * T; i++) tok[i] = (i * 37 + 11) % V, tgt[i] = (i * 13 + 5) % V;
  char dir[] = "/tmp/asink_bf16_XXXXXX";
  ck_assert_ptr_nonnull(mkdtemp(dir));
  for (size_t f = 0; f < sizeof family_cfgs / sizeof *family_cfgs; f++) {
    asink_model *src = NULL, *ref = NULL, *half = NULL;
    ck_assert_msg(asink_model_create(&src, family_cfgs[f], 3 + f) == ASINK_OK, "%s", asink_last_error());
    ck_assert_int_eq(asink_model_save(src, dir), ASINK_OK);
    ck_assert_msg(asink_model_load_opts(&half, dir, "weights=bf16") == ASINK_OK, "%s", asink_last_error());
    ck_assert_int_eq(asink_model_load(&ref, dir), ASINK_OK);
    /* the embedding, the head (untied) and each layer's matrices: 4 to 7 per layer */
    ck_assert_int_ge(round_like(ref, half), 1 + 2 * 4);
    float *l0 = malloc((size_t)B * T * V * sizeof(float)), *l1 = malloc((size_t)B * T * V * sizeof(float));
    /* whole batch (packed GEMMs) and one short sequence (skinny GEMMs) */
    for (int pass = 0; pass < 2; pass++) {
      int b = pass ? 1 : B, t = pass ? 5 : T;
      ck_assert_int_eq(asink_model_forward(ref, b, t, tok, l0), ASINK_OK);
      ck_assert_int_eq(asink_model_forward(half, b, t, tok, l1), ASINK_OK);
      double e = rel_err(l1, l0, (size_t)b * t * V);
      ck_assert_msg(e < 1e-4, "config %zu, B=%d T=%d: bf16 weights vs rounded float: %g", f, b, t, e);
    }
    float loss0, loss1;
    ck_assert_int_eq(asink_model_eval_loss(ref, B, T, tok, tgt, &loss0), ASINK_OK);
    ck_assert_int_eq(asink_model_eval_loss(half, B, T, tok, tgt, &loss1), ASINK_OK);
    ck_assert_msg(fabsf(loss0 - loss1) < 1e-4f * fabsf(loss0), "eval loss %g vs %g", loss1, loss0);
    /* decoding one token at a time gives the forward's logits */
    ck_assert_int_eq(asink_model_forward(half, 1, T, tok, l0), ASINK_OK);
    asink_cache *c = NULL;
    ck_assert_msg(asink_cache_create(&c, half, "full", 1, 0, 0, T) == ASINK_OK, "%s", asink_last_error());
    for (int t = 0; t < T; t++)
      ck_assert_int_eq(asink_model_decode(half, c, 1, tok + t, l1 + (size_t)t * V), ASINK_OK);
    double e = rel_err(l1, l0, (size_t)T * V);
    ck_assert_msg(e < 1e-4, "config %zu: decode vs forward with bf16 weights: %g", f, e);
    asink_cache_free(c);
    /* training refused, naming the remedy */
    ck_assert_int_eq(asink_model_loss(half, B, T, tok, tgt, &loss1), ASINK_ERR_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(asink_last_error(), "fp32"));
    ck_assert_int_eq(asink_model_backward(half), ASINK_ERR_UNSUPPORTED);
    asink_adamw *o = NULL;
    ck_assert_int_eq(asink_adamw_create(&o, half, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.f, 1.f), ASINK_ERR_UNSUPPORTED);
    ck_assert_ptr_null(o);
    /* saved, it holds the rounded values: loaded as floats, it is the rounded model */
    ck_assert_int_eq(asink_model_save(half, dir), ASINK_OK);
    asink_model *back = NULL;
    ck_assert_int_eq(asink_model_load(&back, dir), ASINK_OK);
    ck_assert_int_eq(asink_model_forward(back, B, T, tok, l1), ASINK_OK);
    ck_assert_int_eq(asink_model_forward(ref, B, T, tok, l0), ASINK_OK);
    ck_assert_msg(!memcmp(l0, l1, (size_t)B * T * V * sizeof(float)), "config %zu: saved bf16 model", f);
    asink_model_free(back);
    free(l0), free(l1);
    asink_model_free(src), asink_model_free(ref), asink_model_free(half);
  }
  remove_checkpoint(dir);
}
END_TEST

static void add_tests(TCase *tc) {
  tcase_add_test(tc, rounding_is_nearest_even);
  tcase_add_test(tc, bf16_kernels_equal_float_on_widened);
  tcase_add_test(tc, bf16_gemm_equals_float_gemm);
  tcase_add_test(tc, options_are_checked);
  tcase_add_test(tc, bf16_model_equals_rounded_float_model);
}

int main(void) { return run_simd_suite("bf16_weights", add_tests); }
