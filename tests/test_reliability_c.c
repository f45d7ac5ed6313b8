/* What the library promises when things go wrong (docs/reliability.md):
 *  - allocation failure: for every n, failing the n-th allocation of model create/load,
 *    forward, loss, backward, AdamW, save, metric gathering and decode makes the call return
 *    ASINK_ERR_NOMEM; the handle then gives, without further failures, bit for bit the result
 *    of a run that never failed (leaks are the sanitizer and valgrind runs' part);
 *  - NaN or infinity in a loss or a gradient: ASINK_ERR_NONFINITE naming the tensor, the
 *    optimizer step skipped, weights and moments unchanged;
 *  - a config whose sizes overflow is refused with ASINK_ERR_FORMAT naming them.
 * Links the static library: asink_alloc_fail_at is internal (core/alloc.h). */
#include <check.h>
#include <dirent.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "attnsink.h"
#include "core/alloc.h"
#include "simd_suite.h"

enum { V = 40, B = 2, T = 8 };

static const char *config_json(void) {
  return "{\"model_type\": \"llama\", \"vocab_size\": 40, \"hidden_size\": 32,"
         " \"intermediate_size\": 64, \"num_hidden_layers\": 2, \"num_attention_heads\": 4,"
         " \"num_key_value_heads\": 2, \"max_position_embeddings\": 64,"
         " \"attnsink\": {\"attn\": \"softmax,kbias=head\"}}";
}

static int32_t tok[B * T], tgt[B * T];
static char scratch[256]; /* a directory of this test's own */

static void fill_tokens(void) {
  unsigned s = 7;
  for (int i = 0; i < B * T; i++) {
    s = s * 1103515245u + 12345u;
    tok[i] = (int32_t)((s >> 16) % V);
  }
  for (int i = 0; i < B * T; i++) tgt[i] = tok[(i + 1) % (B * T)];
}

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
  const unsigned char *b = p;
  for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
  return h;
}

static uint64_t file_hash(uint64_t h, const char *dir, const char *name) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "rb");
  ck_assert_msg(f != NULL, "%s is missing", path);
  unsigned char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) h = fnv(h, buf, n);
  fclose(f);
  return h;
}

static uint64_t params_hash(asink_model *m, bool grads) {
  uint64_t h = 1469598103934665603ull;
  for (int i = 0; i < asink_model_param_count(m); i++) {
    const char *name;
    float *d;
    size_t n;
    ck_assert_int_eq(asink_model_param_info(m, i, &name, NULL, NULL), ASINK_OK);
    ck_assert_int_eq((grads ? asink_model_grad : asink_model_param)(m, name, &d, &n), ASINK_OK);
    h = fnv(h, d, n * sizeof *d);
  }
  return h;
}

/* ------------------------------------------------------ allocation failure */

typedef struct {
  asink_model *m;
  asink_adamw *o;
  asink_metric *mt;
  asink_cache *c;
  char dir[300];
  float logits[B * T * V];
  float loss;
  uint64_t digest; /* of what the stage's call produced */
} fixture;

typedef struct {
  const char *name;
  void (*setup)(fixture *);   /* runs without failures */
  asink_status (*op)(fixture *); /* the calls whose allocations fail one by one */
  void (*recover)(fixture *); /* what a caller does after ASINK_ERR_NOMEM before retrying */
} stage;

static void make_model(fixture *f) {
  ck_assert_msg(asink_model_create(&f->m, config_json(), 3) == ASINK_OK, "%s", asink_last_error());
}

static void nothing(fixture *f) { (void)f; }

static asink_status op_create(fixture *f) {
  asink_status s = asink_model_create(&f->m, config_json(), 3);
  if (s) ck_assert_ptr_null(f->m);
  else f->digest = params_hash(f->m, false);
  return s;
}

static asink_status op_load(fixture *f) {
  asink_status s = asink_model_load(&f->m, scratch);
  if (s) ck_assert_ptr_null(f->m);
  else f->digest = params_hash(f->m, false);
  return s;
}

static asink_status op_forward(fixture *f) {
  asink_status s = asink_model_forward(f->m, B, T, tok, f->logits);
  if (!s) f->digest = fnv(1, f->logits, sizeof f->logits);
  return s;
}

static asink_status op_loss(fixture *f) {
  asink_status s = asink_model_loss(f->m, B, T, tok, tgt, &f->loss);
  if (!s) f->digest = fnv(1, &f->loss, sizeof f->loss);
  return s;
}

static void setup_loss(fixture *f) {
  make_model(f);
  ck_assert_int_eq(asink_model_loss(f->m, B, T, tok, tgt, &f->loss), ASINK_OK);
}

static asink_status op_backward(fixture *f) {
  asink_status s = asink_model_backward(f->m);
  if (!s) f->digest = params_hash(f->m, true);
  return s;
}

/* A failed backward may have added part of its gradients: zero them and redo the loss. */
static void recover_backward(fixture *f) {
  asink_model_zero_grad(f->m);
  ck_assert_int_eq(asink_model_loss(f->m, B, T, tok, tgt, &f->loss), ASINK_OK);
}

static void setup_backward(fixture *f) {
  setup_loss(f);
  ck_assert_int_eq(asink_model_backward(f->m), ASINK_OK);
}

static asink_status op_adamw(fixture *f) {
  asink_status s = f->o ? ASINK_OK : asink_adamw_create(&f->o, f->m, 1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, 1.f);
  if (!s) s = asink_adamw_step(f->o, NULL);
  if (!s) f->digest = params_hash(f->m, false);
  return s;
}

static void recover_adamw(fixture *f) {
  asink_adamw_free(f->o);
  f->o = NULL;
}

static void setup_save(fixture *f) {
  setup_backward(f);
  ck_assert_int_eq(asink_adamw_create(&f->o, f->m, 1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, 1.f), ASINK_OK);
  ck_assert_int_eq(asink_adamw_step(f->o, NULL), ASINK_OK);
  snprintf(f->dir, sizeof f->dir, "%s/save", scratch);
}

static asink_status op_save(fixture *f) {
  asink_status s = asink_model_save(f->m, f->dir);
  if (!s) s = asink_adamw_save(f->o, f->dir);
  if (!s) {
    uint64_t h = file_hash(1, f->dir, "config.json");
    h = file_hash(h, f->dir, "model.safetensors");
    f->digest = file_hash(h, f->dir, "optimizer.safetensors");
  }
  /* whatever happened, no temporary file is left behind */
  DIR *d = opendir(f->dir);
  if (d) {
    for (struct dirent *e; (e = readdir(d));)
      ck_assert_msg(!strstr(e->d_name, ".tmp"), "save left %s/%s", f->dir, e->d_name);
    closedir(d);
  }
  return s;
}

static void setup_metric(fixture *f) {
  make_model(f);
  ck_assert_int_eq(asink_metric_create(&f->mt, 0.3f), ASINK_OK);
  ck_assert_int_eq(asink_model_attach_metric(f->m, f->mt), ASINK_OK);
}

static asink_status op_metric(fixture *f) {
  asink_status s = asink_model_forward(f->m, B, T, tok, NULL);
  if (s) return s;
  char *json = asink_metric_json(f->mt);
  if (!json) {
    ck_assert_msg(strstr(asink_last_error(), "memory") || strstr(asink_last_error(), "allocate"),
                  "asink_metric_json: NULL with '%s'", asink_last_error());
    return ASINK_ERR_NOMEM;
  }
  f->digest = fnv(1, json, strlen(json));
  free(json);
  return ASINK_OK;
}

static void recover_metric(fixture *f) { asink_metric_reset(f->mt); }

static asink_status op_decode(fixture *f) {
  asink_status s = f->c ? ASINK_OK : asink_cache_create(&f->c, f->m, "sink", B, 2, 5, 0);
  if (s) {
    ck_assert_ptr_null(f->c);
    return s;
  }
  /* a prefill of 5 positions, then one at a time (the window evicts from the 6th) */
  int32_t first[B * 5], one[B];
  for (int b = 0; b < B; b++)
    for (int t = 0; t < 5; t++) first[b * 5 + t] = tok[b * T + t];
  if ((s = asink_model_decode(f->m, f->c, 5, first, NULL))) return s;
  uint64_t h = 1;
  for (int t = 5; t < T; t++) {
    for (int b = 0; b < B; b++) one[b] = tok[b * T + t];
    float lg[B * V];
    if ((s = asink_model_decode(f->m, f->c, 1, one, lg))) return s;
    h = fnv(h, lg, sizeof lg);
  }
  f->digest = h;
  return ASINK_OK;
}

/* A cache whose call failed half-way is dropped; the model stays. */
static void recover_decode(fixture *f) {
  asink_cache_free(f->c);
  f->c = NULL;
}

static void teardown(fixture *f) {
  asink_cache_free(f->c);
  asink_adamw_free(f->o);
  asink_model_free(f->m);
  asink_metric_free(f->mt);
  memset(f, 0, sizeof *f);
}

static const stage stages[] = {
    {"create", nothing, op_create, nothing},
    {"load", nothing, op_load, nothing},
    {"forward", make_model, op_forward, nothing},
    {"loss", make_model, op_loss, nothing},
    {"backward", setup_loss, op_backward, recover_backward},
    {"adamw", setup_backward, op_adamw, recover_adamw},
    {"save", setup_save, op_save, nothing},
    {"metric", setup_metric, op_metric, recover_metric},
    {"decode", make_model, op_decode, recover_decode},
};

static void setup_scratch(void) {
  /* memory-backed when there is one: a few hundred saves, each fsynced, take a minute on a disk */
  const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
  snprintf(scratch, sizeof scratch, "%s/asink-reliability-XXXXXX", base);
  ck_assert_ptr_nonnull(mkdtemp(scratch));
  fill_tokens();
  asink_model *m = NULL;
  ck_assert_int_eq(asink_model_create(&m, config_json(), 3), ASINK_OK);
  ck_assert_int_eq(asink_model_save(m, scratch), ASINK_OK);
  asink_model_free(m);
}

static void remove_scratch(void) {
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", scratch);
  ck_assert_int_eq(system(cmd), 0);
}

START_TEST(every_allocation_failure_is_reported_and_recovered) {
  setup_scratch();
  const stage *st = &stages[_i];
  fixture f = {0};
  st->setup(&f);
  ck_assert_msg(st->op(&f) == ASINK_OK, "%s: %s", st->name, asink_last_error());
  const uint64_t want = f.digest;
  teardown(&f);
  long n = 1;
  for (;; n++) {
    ck_assert_msg(n < 100000, "%s: no end to its allocations", st->name);
    st->setup(&f);
    asink_alloc_fail_at(n);
    asink_status s = st->op(&f);
    long seen = asink_alloc_count();
    asink_alloc_fail_at(0);
    if (seen < n) { /* the call made fewer than n allocations: nothing failed */
      ck_assert_msg(s == ASINK_OK, "%s: %s", st->name, asink_last_error());
      ck_assert_msg(f.digest == want, "%s: result differs from the first run", st->name);
      teardown(&f);
      break;
    }
    ck_assert_msg(s == ASINK_ERR_NOMEM, "%s: allocation %ld of the call failed, but it returned %d (%s)",
                  st->name, n, (int)s, asink_last_error());
    ck_assert_msg(asink_last_error()[0] != 0, "%s: ASINK_ERR_NOMEM without a message", st->name);
    st->recover(&f);
    f.digest = 0;
    s = st->op(&f);
    ck_assert_msg(s == ASINK_OK, "%s: after failing allocation %ld, the retry fails: %s", st->name, n,
                  asink_last_error());
    ck_assert_msg(f.digest == want, "%s: after failing allocation %ld, the retry's result differs",
                  st->name, n);
    teardown(&f);
  }
  fprintf(stderr, "%s: %ld allocations, each failed once\n", st->name, n - 1);
  remove_scratch();
}
END_TEST

/* ------------------------------------------------------ NaN and infinity */

START_TEST(nonfinite_gradient_skips_the_step) {
  fill_tokens();
  asink_model *m = NULL;
  asink_adamw *o = NULL;
  ck_assert_int_eq(asink_model_create(&m, config_json(), 3), ASINK_OK);
  ck_assert_int_eq(asink_adamw_create(&o, m, 1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, 1.f), ASINK_OK);
  float loss;
  ck_assert_int_eq(asink_model_loss(m, B, T, tok, tgt, &loss), ASINK_OK);
  ck_assert_int_eq(asink_model_backward(m), ASINK_OK);
  float *g;
  size_t n;
  const char *bad = "model.layers.1.mlp.up_proj.weight";
  ck_assert_int_eq(asink_model_grad(m, bad, &g, &n), ASINK_OK);
  const float poison[] = {NAN, INFINITY, -INFINITY};
  for (int k = 0; k < 3; k++) {
    g[17] = poison[k];
    uint64_t before = params_hash(m, false);
    float norm = 0.f;
    ck_assert_int_eq(asink_adamw_step(o, &norm), ASINK_ERR_NONFINITE);
    ck_assert(!isfinite(norm));
    ck_assert_msg(strstr(asink_last_error(), bad) && strstr(asink_last_error(), "element 17"),
                  "message: %s", asink_last_error());
    ck_assert_str_eq(asink_status_string(ASINK_ERR_NONFINITE), "not a finite number");
    ck_assert_int_eq((int)asink_adamw_steps(o), 0);
    ck_assert_msg(params_hash(m, false) == before, "weights changed by a skipped step");
    ck_assert(!isfinite(g[17])); /* the gradients are left for inspection */
  }
  /* zeroed, the next batch trains normally */
  asink_model_zero_grad(m);
  ck_assert_int_eq(asink_model_loss(m, B, T, tok, tgt, &loss), ASINK_OK);
  ck_assert_int_eq(asink_model_backward(m), ASINK_OK);
  ck_assert_int_eq(asink_adamw_step(o, NULL), ASINK_OK);
  ck_assert_int_eq((int)asink_adamw_steps(o), 1);
  asink_adamw_free(o);
  asink_model_free(m);
}
END_TEST

START_TEST(nonfinite_loss_is_reported) {
  fill_tokens();
  asink_model *m = NULL;
  ck_assert_int_eq(asink_model_create(&m, config_json(), 3), ASINK_OK);
  float *w;
  size_t n;
  ck_assert_int_eq(asink_model_param(m, "model.norm.weight", &w, &n), ASINK_OK);
  w[3] = NAN;
  float loss = 0.f;
  ck_assert_int_eq(asink_model_loss(m, B, T, tok, tgt, &loss), ASINK_ERR_NONFINITE);
  ck_assert(isnan(loss));
  ck_assert_msg(strstr(asink_last_error(), "loss is nan"), "message: %s", asink_last_error());
  ck_assert_int_eq(asink_model_backward(m), ASINK_ERR_STATE); /* nothing kept to differentiate */
  ck_assert_int_eq(asink_model_eval_loss(m, B, T, tok, tgt, &loss), ASINK_ERR_NONFINITE);
  w[3] = 1.f;
  ck_assert_int_eq(asink_model_loss(m, B, T, tok, tgt, &loss), ASINK_OK);
  ck_assert(isfinite(loss));
  ck_assert_int_eq(asink_model_backward(m), ASINK_OK);
  asink_model_free(m);
}
END_TEST

/* ------------------------------------------------------ sizes from configs */

START_TEST(config_sizes_that_overflow_are_refused) {
  /* valid one by one (each within the validator's 1 .. 2^30), too many in all */
  const char *cfgs[] = {
      "{\"model_type\": \"llama\", \"vocab_size\": 40, \"hidden_size\": 268435456,"
      " \"intermediate_size\": 1073741824, \"num_hidden_layers\": 65536, \"num_attention_heads\": 16384,"
      " \"max_position_embeddings\": 64}",
      "{\"model_type\": \"llama\", \"vocab_size\": 40, \"hidden_size\": 8,"
      " \"intermediate_size\": 8, \"num_hidden_layers\": 1073741824, \"num_attention_heads\": 1,"
      " \"max_position_embeddings\": 64}",
      "{\"model_type\": \"gpt2\", \"vocab_size\": 1073741824, \"n_embd\": 268435456,"
      " \"n_layer\": 1073741824, \"n_head\": 4096, \"n_positions\": 1073741824}",
  };
  for (int i = 0; i < 3; i++) {
    asink_model *m = (asink_model *)1;
    asink_status s = asink_model_create(&m, cfgs[i], 0);
    ck_assert_ptr_null(m);
    ck_assert_msg(s == ASINK_ERR_FORMAT, "config %d: status %d (%s)", i, (int)s, asink_last_error());
    ck_assert_msg(strstr(asink_last_error(), "more parameters than memory can address"), "config %d: %s",
                  i, asink_last_error());
  }
}
END_TEST

static void add_tests(TCase *tc) {
  tcase_add_loop_test(tc, every_allocation_failure_is_reported_and_recovered, 0,
                      (int)(sizeof stages / sizeof stages[0]));
  tcase_add_test(tc, nonfinite_gradient_skips_the_step);
  tcase_add_test(tc, nonfinite_loss_is_reported);
  tcase_add_test(tc, config_sizes_that_overflow_are_refused);
}

int main(void) { return run_test_case("reliability", 600, add_tests); }
