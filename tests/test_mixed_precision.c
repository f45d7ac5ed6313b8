/* bf16 mixed precision (the model option precision=bf16), run once per SIMD level:
 *  - every table's pack_panel_round gives the scalar rounding of each value, bit for bit,
 *    ties, NaN, infinities and overflow included;
 *  - asink_sgemm_bf16ops equals asink_sgemm (the packed driver) on operands rounded to bf16
 *    beforehand, bit for bit where both take the same kernels, and the exact (double) sum of
 *    the rounded products within float accumulation error at this level; it differs from the
 *    float GEMM on the unrounded operands;
 *  - a precision=bf16 model: the option is checked, precision=fp32 is the default's bits,
 *    AdamW keeps the bf16 copies equal to the rounded master weights, writes through
 *    asink_model_param reach the next pass, asink_model_param_read leaves the copies trusted
 *    and asink_model_set_param remakes them once, decoding agrees with the forward, and checkpoints
 *    keep the float32 master weights; with weights=bf16 too, the bf16 weights are the
 *    operands.
 * Values and gradients against PyTorch: tests/python/test_mixed_precision.py. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "attnsink.h"
#include "core/blas.h"
#include "kernels/kernels.h"
#include "model/model_internal.h"
#include "simd_suite.h"

static float frand(unsigned *s) {
  *s = *s * 1103515245u + 12345u;
  return (float)((*s >> 8) & 0xffff) / 32768.f - 1.f;
}

static float rounded(float x) { return asink_bf16_to_f32(asink_f32_to_bf16(x)); }

static float from_bits(uint32_t u) {
  union { uint32_t u; float f; } v = {u};
  return v.f;
}

/* The tables this CPU runs: the one in use and those below it. */
static bool runs(int t, const asink_kernels *kn) {
  const asink_kernels *in_use = asink_kern();
  return kn && !(t > 0 && in_use == &asink_kernels_scalar) && !(t == 2 && strcmp(in_use->name, kn->name));
}

START_TEST(pack_round_is_scalar_rounding) {
  const asink_kernels *tabs[] = {&asink_kernels_scalar, asink_kernels_avx2_table,
                                 asink_kernels_avx512_table};
  enum { R = 40, LD = 173 };
  float *M = malloc(R * LD * sizeof *M);
  unsigned s = 3;
  for (int i = 0; i < R * LD; i++) M[i] = frand(&s) * (i % 7 ? 1.f : 3e-39f); /* subnormals too */
  /* ties to even, just above a tie, NaN (kept a NaN), infinities, rounding past the largest */
  const uint32_t special[] = {0x3f808000u, 0x3f818000u, 0x3f808001u, 0x7fc00001u, 0xffa00000u,
                              0x7f800000u, 0xff800000u, 0x7f7fffffu, 0x80000000u, 0x00008000u};
  for (int i = 0; i < 10; i++) M[5 * LD + 3 + i] = M[(9 + i) * LD + 3] = from_bits(special[i]);
  for (int t = 0; t < 3; t++) {
    if (!runs(t, tabs[t])) continue;
    const asink_kernels *kn = tabs[t];
    size_t widths[] = {4, 6, 8, 16, 32};
    for (size_t wi = 0; wi < 5; wi++)
      for (size_t w = 1; w <= widths[wi]; w += 2)
        for (int straight = 0; straight < 2; straight++) {
          size_t W = widths[wi], k = straight ? 35 : 150, sr = straight ? 1 : LD, sp = straight ? LD : 1;
          float *got = malloc(W * k * sizeof(float));
          memset(got, 0x55, W * k * sizeof(float));
          kn->pack_panel_round(got, M + 3, W, w, k, sr, sp);
          for (size_t p = 0; p < k; p++)
            for (size_t r = 0; r < W; r++) {
              float want = r < w ? rounded(M[3 + r * sr + p * sp]) : 0.f;
              ck_assert_msg(!memcmp(&got[p * W + r], &want, sizeof want),
                            "%s W=%zu w=%zu straight=%d at (%zu, %zu)", kn->name, W, w, straight, r, p);
            }
          free(got);
        }
  }
  free(M);
}
END_TEST

/* C = alpha op(A) op(B) + beta C0 in double from the stored (already rounded) operands. */
static void exact(bool ta, bool tb, int m, int n, int k, float alpha, const float *A, int lda,
                  const float *B, int ldb, float beta, const float *C0, double *out, double *mag) {
  for (int i = 0; i < m; i++)
    for (int j = 0; j < n; j++) {
      double s = 0.0, a = 0.0;
      for (int p = 0; p < k; p++) {
        double x = A[ta ? (size_t)p * lda + i : (size_t)i * lda + p];
        double y = B[tb ? (size_t)j * ldb + p : (size_t)p * ldb + j];
        s += x * y, a += fabs(x * y);
      }
      out[i * n + j] = alpha * s + beta * (double)C0[i * n + j];
      mag[i * n + j] = fabs(alpha) * a + fabs(beta * (double)C0[i * n + j]);
    }
}

START_TEST(bf16ops_gemm_is_gemm_on_rounded_operands) {
  asink_sgemm_force_driver(1);
  /* the float kernel on rounded panels (a CPU with AVX-512 BF16 would run the pair kernel,
   * whose other order of sums tests/test_gemm_bf16.c checks) */
  asink_sgemm_force_bf16_kernel(0, NULL);
  unsigned s = 17;
  /* skinny (decoding), tiny, across k blocks and several column panels */
  const int shapes[][3] = {{1, 70, 300}, {5, 129, 77}, {9, 50, 64}, {40, 300, 270}, {13, 17, 5},
                           {70, 90, 600}};
  for (int si = 0; si < 6; si++)
    for (int ta = 0; ta < 2; ta++)
      for (int tb = 0; tb < 2; tb++)
        for (int half = 0; half < 2; half++)
          for (int th = 1; th <= 2; th++) {
            int m = shapes[si][0], n = shapes[si][1], k = shapes[si][2];
            int lda = (ta ? m : k) + 2, ldb = (tb ? k : n) + 3;
            size_t na = (size_t)(ta ? k : m) * lda, nb = (size_t)(tb ? n : k) * ldb, nc = (size_t)m * n;
            float *A = malloc(na * 4), *Ar = malloc(na * 4), *B = malloc(nb * 4), *Br = malloc(nb * 4);
            uint16_t *B16 = malloc(nb * 2);
            float *C0 = malloc(nc * 4), *C1 = malloc(nc * 4), *C2 = malloc(nc * 4), *C3 = malloc(nc * 4);
            double *E = malloc(nc * 8), *mag = malloc(nc * 8);
            for (size_t i = 0; i < na; i++) Ar[i] = rounded(A[i] = frand(&s));
            for (size_t i = 0; i < nb; i++) Br[i] = asink_bf16_to_f32(B16[i] = asink_f32_to_bf16(B[i] = frand(&s)));
            for (size_t i = 0; i < nc; i++) C0[i] = C1[i] = C2[i] = C3[i] = frand(&s);
            asink_sgemm_bf16ops(ta, tb, m, n, k, 0.5f, A, lda, half ? NULL : B, half ? B16 : NULL, ldb,
                                0.25f, C1, n, th);
            asink_sgemm(ta, tb, m, n, k, 0.5f, Ar, lda, Br, ldb, 0.25f, C2, n, th);
            asink_sgemm(ta, tb, m, n, k, 0.5f, A, lda, B, ldb, 0.25f, C3, n, th);
            exact(ta, tb, m, n, k, 0.5f, Ar, lda, Br, ldb, 0.25f, C0, E, mag);
            /* the same kernels in the same order, except a skinny float GEMM (few rows of A read
             * straight) against the packed driver for B in float */
            bool same_order = ta || m > 8 || half;
            double worst = 0.0, moved = 0.0;
            for (size_t i = 0; i < nc; i++) {
              if (same_order)
                ck_assert_msg(!memcmp(&C1[i], &C2[i], 4), "m=%d n=%d k=%d ta=%d tb=%d half=%d threads=%d at %zu: %.9g vs %.9g",
                              m, n, k, ta, tb, half, th, i, C1[i], C2[i]);
              /* float sums of k products: within k * 2^-24 of the sum of magnitudes */
              worst = fmax(worst, fabs(C1[i] - E[i]) / (mag[i] * k * 0x1p-24 + 1e-30));
              moved = fmax(moved, fabs((double)C3[i] - C1[i]));
            }
            ck_assert_msg(worst <= 1.0, "m=%d n=%d k=%d ta=%d tb=%d: %.3g of the accumulation bound",
                          m, n, k, ta, tb, worst);
            ck_assert_msg(moved > 1e-4, "m=%d n=%d k=%d: rounding changed nothing (%g)", m, n, k, moved);
            free(A), free(Ar), free(B), free(Br), free(B16), free(C0), free(C1), free(C2), free(C3);
            free(E), free(mag);
          }
  asink_sgemm_force_driver(-1);
  asink_sgemm_force_bf16_kernel(-1, NULL);
}
END_TEST

static const char *const tiny_cfg =
    "{\"model_type\": \"llama\", \"vocab_size\": 61, \"hidden_size\": 48, \"intermediate_size\": 96,"
    " \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"num_key_value_heads\": 2,"
    " \"max_position_embeddings\": 64, \"tie_word_embeddings\": %s}";

static char *config(bool tied) {
  static char buf[2][512];
  snprintf(buf[tied], sizeof buf[tied], tiny_cfg, tied ? "true" : "false");
  return buf[tied];
}

START_TEST(options_are_checked) {
  asink_model *m = NULL;
  ck_assert_int_eq(asink_model_create_opts(&m, config(false), 1, "precision=fp16"), ASINK_ERR_ARG);
  ck_assert_ptr_null(m);
  ck_assert_ptr_nonnull(strstr(asink_last_error(), "precision=fp16"));
  ck_assert_int_eq(asink_model_create_opts(&m, config(false), 1, "precison=bf16"), ASINK_ERR_ARG);
  ck_assert_ptr_nonnull(strstr(asink_last_error(), "precison"));
  ck_assert_int_eq(asink_model_load_opts(&m, "/nonexistent", "precision=int8"), ASINK_ERR_ARG);
  ck_assert_ptr_nonnull(strstr(asink_last_error(), "int8"));
  ck_assert_int_eq(asink_model_create_opts(&m, config(false), 1, "precision=bf16"), ASINK_OK);
  ck_assert_str_eq(asink_model_precision(m), "bf16");
  ck_assert_str_eq(asink_model_weights(m), "fp32");
  asink_model_free(m);
  ck_assert_int_eq(asink_model_create_opts(&m, config(false), 1, "weights=bf16,precision=bf16"), ASINK_OK);
  ck_assert_str_eq(asink_model_precision(m), "bf16");
  ck_assert_str_eq(asink_model_weights(m), "bf16");
  asink_model_free(m);
  ck_assert_int_eq(asink_model_create_opts(&m, config(false), 1, NULL), ASINK_OK);
  ck_assert_str_eq(asink_model_precision(m), "fp32");
  ck_assert_str_eq(asink_model_precision(NULL), "fp32");
  asink_model_free(m);
}
END_TEST

enum { B = 3, T = 16 };

static void batch(int32_t *tok, int32_t *tgt, unsigned seed, int V) {
  for (int i = 0; i < B * T; i++) {
    seed = seed * 1664525u + 1013904223u;
    tok[i] = (int32_t)((seed >> 9) % (unsigned)V);
    tgt[i] = (int32_t)((seed >> 3) % (unsigned)V);
  }
}

/* Every bf16 copy equals its float master rounded. */
static void assert_copies_fresh(const asink_model *m, const char *when) {
  const asink_weights *w = m->w;
  int with_copy = 0;
  for (int i = 0; i < w->n_params; i++) {
    const asink_param *p = &w->params[i];
    if (!p->copy16) continue;
    with_copy++;
    for (size_t j = 0; j < p->numel; j++)
      ck_assert_msg(p->copy16[j] == asink_f32_to_bf16(p->data[j]), "%s: %s[%zu] copy %#x, master %.9g",
                    when, p->name, j, p->copy16[j], p->data[j]);
  }
  ck_assert_int_gt(with_copy, 0);
}

static void train_steps(asink_model *m, asink_adamw *o, int steps, float *losses) {
  int32_t tok[B * T], tgt[B * T];
  for (int s = 0; s < steps; s++) {
    batch(tok, tgt, 100u + (unsigned)s, m->w->V);
    ck_assert_int_eq(asink_model_loss(m, B, T, tok, tgt, &losses[s]), ASINK_OK);
    ck_assert_int_eq(asink_model_backward(m), ASINK_OK);
    ck_assert_int_eq(asink_adamw_step(o, NULL), ASINK_OK);
  }
}

/* precision=fp32 is the default, bit for bit; precision=bf16 trains, its copies follow
 * every AdamW step, and its losses stay near fp32's yet are not the same numbers. */
START_TEST(adamw_keeps_copies_in_sync) {
  for (int tied = 0; tied < 2; tied++) {
    asink_model *plain, *f32, *mixed;
    asink_adamw *op, *of, *om;
    ck_assert_int_eq(asink_model_create(&plain, config(tied), 5), ASINK_OK);
    ck_assert_int_eq(asink_model_create_opts(&f32, config(tied), 5, "precision=fp32"), ASINK_OK);
    ck_assert_int_eq(asink_model_create_opts(&mixed, config(tied), 5, "precision=bf16"), ASINK_OK);
    ck_assert_ptr_null(f32->w->copy16);
    asink_model *ms[] = {plain, f32, mixed};
    asink_adamw **os[] = {&op, &of, &om};
    for (int i = 0; i < 3; i++)
      ck_assert_int_eq(asink_adamw_create(os[i], ms[i], 3e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 1.f), ASINK_OK);
    enum { STEPS = 4 };
    float lp[STEPS], lf[STEPS], lm[STEPS];
    train_steps(plain, op, STEPS, lp);
    train_steps(f32, of, STEPS, lf);
    train_steps(mixed, om, STEPS, lm);
    ck_assert(!memcmp(lp, lf, sizeof lp));
    ck_assert(!memcmp(plain->w->block, f32->w->block, plain->w->n_block * sizeof(float)));
    assert_copies_fresh(mixed, "after AdamW");
    bool differ = false;
    for (int s = 0; s < STEPS; s++) {
      ck_assert_msg(fabsf(lm[s] - lf[s]) < 0.02f * lf[s], "step %d: bf16 %g, fp32 %g", s, lm[s], lf[s]);
      differ |= lm[s] != lf[s];
    }
    ck_assert_msg(differ, "precision=bf16 gave fp32's losses: nothing was rounded");
    for (int i = 0; i < 3; i++) asink_adamw_free(*os[i]), asink_model_free(ms[i]);
  }
}
END_TEST

/* Two models of the same seed and options, one to change and one to compare with, a batch
 * for them and room for each one's logits. */
typedef struct {
  asink_model *m, *ref;
  int V;
  int32_t tok[B * T], tgt[B * T];
  float *l0, *l1;
} twins;

static void twins_make(twins *t, bool tied, const char *opts, unsigned batch_seed) {
  ck_assert_int_eq(asink_model_create_opts(&t->m, config(tied), 9, opts), ASINK_OK);
  ck_assert_int_eq(asink_model_create_opts(&t->ref, config(tied), 9, opts), ASINK_OK);
  t->V = t->m->w->V;
  batch(t->tok, t->tgt, batch_seed, t->V);
  t->l0 = malloc((size_t)B * T * t->V * 4), t->l1 = malloc((size_t)B * T * t->V * 4);
}

/* Whether the two models' forwards give the same logits, bit for bit. */
static bool twins_agree(twins *t) {
  ck_assert_int_eq(asink_model_forward(t->m, B, T, t->tok, t->l0), ASINK_OK);
  ck_assert_int_eq(asink_model_forward(t->ref, B, T, t->tok, t->l1), ASINK_OK);
  return !memcmp(t->l0, t->l1, (size_t)B * T * t->V * 4);
}

static void twins_free(twins *t) {
  asink_model_free(t->m), asink_model_free(t->ref);
  free(t->l0), free(t->l1);
}

/* A write through a pointer from asink_model_param reaches the next pass, even one made
 * after a pass that already refreshed the copies. */
START_TEST(writes_through_pointers_are_seen) {
  twins t;
  twins_make(&t, true, "precision=bf16", 7u);
  asink_model *m = t.m;
  float *w, *wr;
  size_t n;
  ck_assert_int_eq(asink_model_param(m, "model.layers.0.mlp.up_proj.weight", &w, &n), ASINK_OK);
  ck_assert_int_eq(asink_model_forward(m, B, T, t.tok, t.l0), ASINK_OK);
  for (size_t j = 0; j < n; j++) w[j] *= -2.f; /* after the pass: no API call in between */
  ck_assert_int_eq(asink_model_param(t.ref, "model.layers.0.mlp.up_proj.weight", &wr, &n), ASINK_OK);
  memcpy(wr, w, n * sizeof *w);
  ck_assert(twins_agree(&t));
  assert_copies_fresh(m, "after a write through a pointer");
  /* the tied embedding: its copy is the head's */
  float *e;
  ck_assert_int_eq(asink_model_param_block(m, &e, &n), ASINK_OK);
  e[0] += 1.f;
  ck_assert_int_eq(asink_model_forward(m, B, T, t.tok, t.l0), ASINK_OK);
  assert_copies_fresh(m, "after a write into the block");
  twins_free(&t);
}
END_TEST

/* asink_model_param_read hands out no writable pointer, so the copies are not remade at every
 * pass; asink_model_set_param's values reach the next pass (copies remade once), also into a
 * parameter kept in bf16 (rounded); bad calls are refused naming what is wrong. */
START_TEST(read_and_set_leave_the_copies_alone) {
  const char *up = "model.layers.0.mlp.up_proj.weight";
  twins t;
  twins_make(&t, false, "precision=bf16", 5u);
  asink_model *m = t.m;
  const float *r;
  size_t n;
  ck_assert_int_eq(asink_model_param_read(m, up, &r, &n), ASINK_OK);
  ck_assert_int_eq(n, (size_t)m->w->F * m->w->C);
  ck_assert_int_eq(asink_model_forward(m, B, T, t.tok, t.l0), ASINK_OK);
  ck_assert_msg(!m->pointers_out && !m->copies_stale, "reading made the copies untrusted");
  float *v = malloc(n * sizeof *v), *w;
  for (size_t j = 0; j < n; j++) v[j] = -2.f * r[j] + 1e-3f;
  ck_assert_int_eq(asink_model_set_param(m, up, v, n), ASINK_OK);
  ck_assert_int_eq(asink_model_forward(m, B, T, t.tok, t.l0), ASINK_OK);
  ck_assert_msg(!m->pointers_out && !m->copies_stale, "setting made every pass remake the copies");
  assert_copies_fresh(m, "after asink_model_set_param");
  ck_assert_int_eq(asink_model_param(t.ref, up, &w, &n), ASINK_OK);
  memcpy(w, v, n * sizeof *v);
  ck_assert_msg(twins_agree(&t), "set values differ from written ones");

  /* refusals */
  ck_assert_int_eq(asink_model_set_param(m, up, v, n - 1), ASINK_ERR_SHAPE);
  ck_assert_ptr_nonnull(strstr(asink_last_error(), up));
  char want[64];
  snprintf(want, sizeof want, "has %zu values; got %zu", n, n - 1);
  ck_assert_ptr_nonnull(strstr(asink_last_error(), want));
  ck_assert_int_eq(asink_model_set_param(m, "no.such.weight", v, n), ASINK_ERR_ARG);
  ck_assert_ptr_nonnull(strstr(asink_last_error(), "no.such.weight"));
  ck_assert_int_eq(asink_model_param_read(m, "no.such.weight", &r, &n), ASINK_ERR_ARG);
  ck_assert_int_eq(asink_model_set_param(m, up, NULL, n), ASINK_ERR_ARG);
  ck_assert_int_eq(asink_model_param_read(NULL, up, &r, &n), ASINK_ERR_ARG);
  ck_assert_int_eq(asink_model_param_read(m, up, NULL, &n), ASINK_ERR_ARG);
  twins_free(&t);

  /* weights=bf16: reading as floats is refused, setting rounds (as the bf16 of the values) */
  twins h;
  twins_make(&h, false, "weights=bf16", 5u);
  ck_assert_int_eq(asink_model_param_read(h.m, up, &r, &n), ASINK_ERR_UNSUPPORTED);
  ck_assert_ptr_nonnull(strstr(asink_last_error(), up));
  float *vr = malloc(n * sizeof *vr);
  for (size_t j = 0; j < n; j++) vr[j] = asink_bf16_to_f32(asink_f32_to_bf16(v[j]));
  ck_assert_int_eq(asink_model_set_param(h.m, up, v, n), ASINK_OK);
  ck_assert_int_eq(asink_model_set_param(h.ref, up, vr, n), ASINK_OK);
  ck_assert(twins_agree(&h));
  const asink_param *p = asink_weights_find(h.m->w, up);
  for (size_t j = 0; j < n; j++) ck_assert_uint_eq(p->data16[j], asink_f32_to_bf16(v[j]));
  twins_free(&h);
  free(v), free(vr);
}
END_TEST

/* Decoding (one row at a time: the skinny products, A rounded first) against the forward. */
START_TEST(decode_agrees_with_forward) {
  asink_model *m;
  ck_assert_int_eq(asink_model_create_opts(&m, config(false), 4, "precision=bf16"), ASINK_OK);
  const int V = m->w->V;
  int32_t tok[B * T], tgt[B * T];
  batch(tok, tgt, 21u, V);
  float *lf = malloc((size_t)B * T * V * 4), *ld = malloc((size_t)B * T * V * 4);
  ck_assert_int_eq(asink_model_forward(m, B, T, tok, lf), ASINK_OK);
  asink_cache *c;
  ck_assert_int_eq(asink_cache_create(&c, m, "full", B, 0, 0, T), ASINK_OK);
  int32_t col[B];
  for (int t = 0; t < T; t++) {
    for (int b = 0; b < B; b++) col[b] = tok[b * T + t];
    float *step = malloc((size_t)B * V * 4);
    ck_assert_int_eq(asink_model_decode(m, c, 1, col, step), ASINK_OK);
    for (int b = 0; b < B; b++) memcpy(ld + ((size_t)b * T + t) * V, step + (size_t)b * V, (size_t)V * 4);
    free(step);
  }
  double e = 0.0, s = 0.0;
  for (size_t i = 0; i < (size_t)B * T * V; i++) e = fmax(e, fabs((double)ld[i] - lf[i])), s = fmax(s, fabs(lf[i]));
  /* the same rounded operands; only the order of float sums differs (and through it, rarely,
   * the rounding of a later operand by one bf16 step) */
  ck_assert_msg(e <= 2e-3 * s, "decode vs forward: %g of %g", e, s);
  asink_cache_free(c);
  free(lf), free(ld);
  asink_model_free(m);
}
END_TEST

/* A trained precision=bf16 model saves its float32 master weights; loaded back with either
 * precision it holds them bit for bit, and with precision=bf16 gives the same logits. */
START_TEST(checkpoints_keep_fp32) {
  char dir[] = "/tmp/asink_mixed_XXXXXX";
  ck_assert_ptr_nonnull(mkdtemp(dir));
  asink_model *m, *back32, *back16;
  asink_adamw *o;
  ck_assert_int_eq(asink_model_create_opts(&m, config(false), 2, "precision=bf16"), ASINK_OK);
  ck_assert_int_eq(asink_adamw_create(&o, m, 3e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 1.f), ASINK_OK);
  float losses[3];
  train_steps(m, o, 3, losses);
  ck_assert_int_eq(asink_model_save(m, dir), ASINK_OK);
  ck_assert_int_eq(asink_model_load(&back32, dir), ASINK_OK);
  ck_assert_int_eq(asink_model_load_opts(&back16, dir, "precision=bf16"), ASINK_OK);
  ck_assert_str_eq(asink_model_precision(back32), "fp32");
  ck_assert_uint_eq(back32->w->n_block, m->w->n_block);
  ck_assert(!memcmp(back32->w->block, m->w->block, m->w->n_block * sizeof(float)));
  ck_assert(!memcmp(back16->w->block, m->w->block, m->w->n_block * sizeof(float)));
  /* master weights that are not all bf16 values: the file kept float32, not a rounding */
  size_t off_grid = 0;
  for (size_t j = 0; j < m->w->n_block; j++) off_grid += rounded(m->w->block[j]) != m->w->block[j];
  ck_assert_uint_gt(off_grid, m->w->n_block / 2);
  const int V = m->w->V;
  int32_t tok[B * T], tgt[B * T];
  batch(tok, tgt, 77u, V);
  float *l0 = malloc((size_t)B * T * V * 4), *l1 = malloc((size_t)B * T * V * 4);
  ck_assert_int_eq(asink_model_forward(m, B, T, tok, l0), ASINK_OK);
  ck_assert_int_eq(asink_model_forward(back16, B, T, tok, l1), ASINK_OK);
  ck_assert(!memcmp(l0, l1, (size_t)B * T * V * 4));
  free(l0), free(l1);
  asink_adamw_free(o);
  asink_model_free(m), asink_model_free(back32), asink_model_free(back16);
  remove_checkpoint(dir);
}
END_TEST

/* weights=bf16 with precision=bf16: the bf16 weights are the operands. Against a model with
 * float weights whose values are those bf16 ones (its copies then hold the same bits), the
 * same logits bit for bit. */
START_TEST(bf16_weights_with_bf16_precision) {
  asink_model *half, *full;
  ck_assert_int_eq(asink_model_create_opts(&half, config(false), 6, "weights=bf16,precision=bf16"), ASINK_OK);
  ck_assert_int_eq(asink_model_create_opts(&full, config(false), 6, "precision=bf16"), ASINK_OK);
  float *block;
  size_t n;
  ck_assert_int_eq(asink_model_param_block(full, &block, &n), ASINK_OK);
  for (int i = 0; i < full->w->n_params; i++) {
    const asink_param *p = &full->w->params[i], *q = &half->w->params[i];
    for (size_t j = 0; j < p->numel; j++)
      p->data[j] = q->data16 ? asink_bf16_to_f32(q->data16[j]) : q->data[j];
  }
  const int V = full->w->V;
  int32_t tok[B * T], tgt[B * T];
  batch(tok, tgt, 5u, V);
  float *l0 = malloc((size_t)B * T * V * 4), *l1 = malloc((size_t)B * T * V * 4);
  ck_assert_int_eq(asink_model_forward(half, B, T, tok, l0), ASINK_OK);
  ck_assert_int_eq(asink_model_forward(full, B, T, tok, l1), ASINK_OK);
  ck_assert(!memcmp(l0, l1, (size_t)B * T * V * 4));
  float loss;
  ck_assert_int_eq(asink_model_loss(half, B, T, tok, tgt, &loss), ASINK_ERR_UNSUPPORTED);
  free(l0), free(l1);
  asink_model_free(half), asink_model_free(full);
}
END_TEST

static void add_tests(TCase *tc) {
  tcase_add_test(tc, pack_round_is_scalar_rounding);
  tcase_add_test(tc, bf16ops_gemm_is_gemm_on_rounded_operands);
  tcase_add_test(tc, options_are_checked);
  tcase_add_test(tc, adamw_keeps_copies_in_sync);
  tcase_add_test(tc, writes_through_pointers_are_seen);
  tcase_add_test(tc, read_and_set_leave_the_copies_alone);
  tcase_add_test(tc, decode_agrees_with_forward);
  tcase_add_test(tc, checkpoints_keep_fp32);
  tcase_add_test(tc, bf16_weights_with_bf16_precision);
}

int main(void) { return run_simd_suite("mixed_precision", add_tests); }
