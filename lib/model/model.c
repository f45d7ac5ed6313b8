/* The model handle: weights (weights.c), the gradients they accumulate, and the public
 * entry points, which check their arguments and run the passes (pass.c) on the whole
 * batch or on batch slices (slices.c). Files are in lib/io/checkpoint.c. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/runtime.h"
#include "model/model_internal.h"

/* ------------------------------------------------------------- lifecycle */

asink_status asink_refuse_bf16_training(const asink_model *m, const char *what) {
  (void)m;
  return asink_fail(ASINK_ERR_UNSUPPORTED,
                    "%s: the model keeps its weights in bf16, for inference only; "
                    "load fp32 weights (the default, weights=fp32) to train", what);
}

asink_status asink_model_create_from_config(asink_model **out, const asink_config *cfg, uint64_t seed,
                                            asink_model_opts opts) {
  asink_status st = asink_model_create_zeroed(out, cfg, opts);
  if (!st) asink_weights_init((*out)->w, seed);
  return st;
}

asink_status asink_model_create_zeroed(asink_model **out, const asink_config *cfg,
                                       asink_model_opts opts) {
  *out = NULL;
  static _Atomic uint64_t next_id = 1;
  asink_model *m = asink_calloc(1, sizeof *m);
  if (!m) return asink_fail(ASINK_ERR_NOMEM, "cannot allocate a model");
  m->id = next_id++;
  asink_status st = asink_weights_create(&m->w, cfg, opts.bf16, opts.mixed);
  if (st) {
    asink_free(m);
    return st;
  }
  m->copies_stale = true;
  /* calloc, not asink_calloc (which writes the zeros): a large fresh calloc is the kernel's
   * zero pages, so a model that only runs forward (a probe of a loaded checkpoint) does not
   * hold a second weights-sized block; nothing needs the gradients' alignment */
  m->grad = asink_zeroed(m->w->n_block + 1, sizeof(float));
  m->config_json = asink_config_to_json(cfg);
  if (!m->grad || !m->config_json) {
    asink_model_free(m);
    return asink_fail(ASINK_ERR_NOMEM, "cannot allocate a model");
  }
  if ((st = asink_pass_init(&m->pass, m->w, m->grad, &m->scratch))) {
    asink_model_free(m);
    return st;
  }
  *out = m;
  return ASINK_OK;
}

asink_status asink_model_create(asink_model **out, const char *config_json, uint64_t seed) {
  return asink_model_create_opts(out, config_json, seed, NULL);
}

asink_status asink_model_options(const char *options, asink_model_opts *opts) {
  *opts = (asink_model_opts){false, false};
  for (const char *s = options ? options : ""; *s;) {
    size_t len = strcspn(s, ","), klen = strcspn(s, "=");
    if (klen >= len)
      return asink_fail(ASINK_ERR_ARG, "model options: '%.*s' is not key=value (keys: weights, precision)",
                        (int)len, s);
    const char *v = s + klen + 1;
    int vlen = (int)(len - klen - 1);
    bool *flag = klen == 7 && !strncmp(s, "weights", 7)     ? &opts->bf16
                 : klen == 9 && !strncmp(s, "precision", 9) ? &opts->mixed
                                                            : NULL;
    if (!flag)
      return asink_fail(ASINK_ERR_ARG, "model options: unknown key '%.*s' (keys: weights, precision)",
                        (int)klen, s);
    if (vlen == 4 && !strncmp(v, "fp32", 4)) *flag = false;
    else if (vlen == 4 && !strncmp(v, "bf16", 4)) *flag = true;
    else
      return asink_fail(ASINK_ERR_ARG, "model options: %.*s=%.*s is not fp32 or bf16", (int)klen, s,
                        vlen, v);
    s += len + (s[len] == ',');
  }
  return ASINK_OK;
}

asink_status asink_model_create_opts(asink_model **out, const char *config_json, uint64_t seed,
                                     const char *options) {
  if (!out || !config_json) return asink_fail(ASINK_ERR_ARG, "asink_model_create: NULL argument");
  *out = NULL;
  asink_model_opts opts;
  asink_status st = asink_model_options(options, &opts);
  if (st) return st;
  asink_config cfg;
  if ((st = asink_config_parse(config_json, "config", &cfg))) return st;
  return asink_model_create_from_config(out, &cfg, seed, opts);
}

const char *asink_model_weights(const asink_model *m) {
  return m && m->w->bf16 ? "bf16" : "fp32";
}

const char *asink_model_precision(const asink_model *m) {
  return m && m->w->mixed ? "bf16" : "fp32";
}

void asink_model_fresh_copies(asink_model *m) {
  if (!m->w->copy16 || !(m->copies_stale || m->pointers_out)) return;
  asink_weights_refresh_copies(m->w, asink_region_threads());
  m->copies_stale = false;
}

void asink_model_free(asink_model *m) {
  if (!m) return;
  asink_model_set_observer(m, NULL);
  if (m->w) {
    asink_slices_free(&m->slices, m->w);
    asink_pass_release(&m->pass, m->w);
  }
  asink_pass_scratch_release(&m->scratch);
  asink_weights_free(m->w);
  asink_free(m->grad);
  free(m->config_json);
  asink_free(m);
}

void asink_model_set_observer(asink_model *m, const asink_observer *obs) {
  asink_observer old = m->obs;
  m->obs = obs ? *obs : (asink_observer){0};
  m->pass.obs = m->obs.ctx ? &m->obs : NULL;
  if (old.ctx) old.detached(old.ctx);
}

/* -------------------------------------------------------------- accessors */

const char *asink_model_config(const asink_model *m) { return m ? m->config_json : ""; }

void asink_model_dims(const asink_model *m, int *n_layer, int *n_head, int *n_kv_head,
                      int *head_dim, int *hidden, int *vocab) {
  if (!m) return;
  const asink_weights *w = m->w;
  if (n_layer) *n_layer = w->L;
  if (n_head) *n_head = w->H;
  if (n_kv_head) *n_kv_head = w->Hkv;
  if (head_dim) *head_dim = w->D;
  if (hidden) *hidden = w->C;
  if (vocab) *vocab = w->V;
}

int asink_model_param_count(const asink_model *m) { return m ? m->w->n_params : 0; }

asink_status asink_model_param_info(const asink_model *m, int i, const char **name, int *ndim,
                                    int64_t shape[4]) {
  if (!m) return asink_fail(ASINK_ERR_ARG, "asink_model_param_info: model is NULL");
  if (i < 0 || i >= m->w->n_params)
    return asink_fail(ASINK_ERR_ARG, "parameter index %d out of range (the model has %d)", i,
                      m->w->n_params);
  const asink_param *p = &m->w->params[i];
  if (name) *name = p->name;
  if (ndim) *ndim = p->ndim;
  if (shape)
    for (int d = 0; d < 4; d++) shape[d] = d < p->ndim ? p->shape[d] : 0;
  return ASINK_OK;
}

/* *p = name's parameter in m; or the error naming it (fn: the calling function). */
static asink_status named(const asink_model *m, const char *name, const void *ptr, const char *fn,
                          asink_param **p) {
  if (!m || !name || !ptr) return asink_fail(ASINK_ERR_ARG, "%s: NULL argument", fn);
  *p = asink_weights_find(m->w, name);
  if (!*p) return asink_fail(ASINK_ERR_ARG, "the model has no parameter '%s'", name);
  return ASINK_OK;
}

/* named, for a parameter held in float: one kept in bf16 (weights=bf16) has no float array. */
static asink_status named_float(const asink_model *m, const char *name, const void *ptr,
                                const char *fn, asink_param **p) {
  asink_status st = named(m, name, ptr, fn, p);
  if (!st && (*p)->data16)
    return asink_fail(ASINK_ERR_UNSUPPORTED,
                      "parameter '%s' is kept in bf16 (the model was loaded with weights=bf16); "
                      "load fp32 weights to read or change it as floats", name);
  return st;
}

static asink_status lookup(asink_model *m, const char *name, bool grad, float **data, size_t *numel) {
  asink_param *p;
  asink_status st = named_float(m, name, data, "asink_model_param/grad", &p);
  if (st) return st;
  *data = grad ? asink_model_grad_of(m, p) : p->data;
  if (!grad) m->pointers_out = true;
  if (numel) *numel = p->numel;
  return ASINK_OK;
}

/* ------------------------------------ reading and setting parameters (1.3) */

asink_status asink_model_param_read(const asink_model *m, const char *name, const float **data,
                                    size_t *numel) {
  asink_param *p;
  asink_status st = named_float(m, name, data, "asink_model_param_read", &p);
  if (st) return st;
  *data = p->data;
  if (numel) *numel = p->numel;
  return ASINK_OK;
}

asink_status asink_model_set_param(asink_model *m, const char *name, const float *values,
                                   size_t numel) {
  asink_param *p;
  asink_status st = named(m, name, values, "asink_model_set_param", &p);
  if (st) return st;
  if (numel != p->numel)
    return asink_fail(ASINK_ERR_SHAPE, "parameter '%s' has %zu values; got %zu", name, p->numel,
                      numel);
  if (p->data16)
    asink_round_bf16(p->data16, values, numel, 1);
  else
    memcpy(p->data, values, numel * sizeof(float));
  m->copies_stale = true;
  return ASINK_OK;
}

asink_status asink_model_param(asink_model *m, const char *name, float **data, size_t *numel) {
  return lookup(m, name, false, data, numel);
}

asink_status asink_model_grad(asink_model *m, const char *name, float **data, size_t *numel) {
  return lookup(m, name, true, data, numel);
}

void asink_model_zero_grad(asink_model *m) {
  if (m) memset(m->grad, 0, m->w->n_block * sizeof(float));
}

/* ------------------------------------------------------- the blocks (1.1) */

asink_status asink_model_grad_block(asink_model *m, float **data, size_t *numel) {
  if (!m || !data) return asink_fail(ASINK_ERR_ARG, "asink_model_grad_block: NULL argument");
  *data = m->grad;
  if (numel) *numel = m->w->n_block;
  return ASINK_OK;
}

asink_status asink_model_param_block(asink_model *m, float **data, size_t *numel) {
  if (!m || !data) return asink_fail(ASINK_ERR_ARG, "asink_model_param_block: NULL argument");
  *data = m->w->block;
  if (numel) *numel = m->w->n_block;
  m->pointers_out = true;
  return ASINK_OK;
}

asink_status asink_model_param_offset(const asink_model *m, int i, size_t *offset, size_t *numel) {
  if (!m) return asink_fail(ASINK_ERR_ARG, "asink_model_param_offset: model is NULL");
  if (i < 0 || i >= m->w->n_params)
    return asink_fail(ASINK_ERR_ARG, "parameter index %d out of range (the model has %d)", i,
                      m->w->n_params);
  if (m->w->params[i].data16)
    return asink_fail(ASINK_ERR_UNSUPPORTED, "parameter '%s' is kept in bf16, outside the float block",
                      m->w->params[i].name);
  if (offset) *offset = m->w->params[i].offset;
  if (numel) *numel = m->w->params[i].numel;
  return ASINK_OK;
}

/* ----------------------------------------------------------------- passes */

static asink_status check_tokens(const asink_model *m, int B, int T, const int32_t *tokens) {
  const asink_config *c = &m->w->cfg;
  if (!tokens) return asink_fail(ASINK_ERR_ARG, "tokens is NULL");
  if (B < 1 || T < 1) return asink_fail(ASINK_ERR_SHAPE, "B=%d, T=%d must be positive", B, T);
  int Tx = T + (c->sink_token ? 1 : 0);
  if (c->pos == ASINK_POS_LEARNED && Tx > c->max_pos)
    return asink_fail(ASINK_ERR_SHAPE, "T=%d exceeds the model's %d learned positions%s", T,
                      c->max_pos, c->sink_token ? " (one is the sink token's)" : "");
  for (size_t i = 0; i < (size_t)B * T; i++)
    if (tokens[i] < 0 || tokens[i] >= m->w->V)
      return asink_fail(ASINK_ERR_ARG, "token %d at position %zu is outside the vocabulary [0, %d)",
                        tokens[i], i, m->w->V);
  return ASINK_OK;
}

/* Checks the tokens and readies the position tables for them. */
static asink_status prepare(asink_model *m, int B, int T, const int32_t *tokens) {
  asink_status st = check_tokens(m, B, T, tokens);
  if (st) return st;
  m->have_loss = false;
  m->pass.have_loss = false;
  m->slices.have_loss = false;
  asink_model_fresh_copies(m);
  return asink_weights_tables(m->w, T + (m->w->cfg.sink_token ? 1 : 0));
}

asink_status asink_model_forward(asink_model *m, int B, int T, const int32_t *tokens, float *logits) {
  if (!m) return asink_fail(ASINK_ERR_ARG, "asink_model_forward: model is NULL");
  asink_status st = prepare(m, B, T, tokens);
  if (!st) st = asink_pass_forward(m->w, &m->pass, B, T, tokens);
  if (st || !logits) return st;
  asink_pass_logits(m->w, &m->pass, logits);
  return ASINK_OK;
}

static asink_status loss_common(asink_model *m, int B, int T, const int32_t *tokens,
                                const int32_t *targets, float *loss, bool keep) {
  if (!m || !targets || !loss) return asink_fail(ASINK_ERR_ARG, "asink_model_loss: NULL argument");
  if (keep && m->w->bf16) return asink_refuse_bf16_training(m, "asink_model_loss");
  asink_status st = prepare(m, B, T, tokens);
  if (st) return st;
  const int Nr = B * T, V = m->w->V;
  int count = 0;
  for (int i = 0; i < Nr; i++) {
    if (targets[i] >= V)
      return asink_fail(ASINK_ERR_ARG, "target %d at position %d is outside the vocabulary [0, %d)",
                        targets[i], i, V);
    count += targets[i] >= 0;
  }
  double total = 0.0;
  int threads = 0;
  int S = asink_slices_plan(m->w, B, T + (m->w->cfg.sink_token ? 1 : 0), m->obs.ctx != NULL, &threads);
  if (S)
    st = asink_slices_loss(&m->slices, m->w, m->grad, S, threads, B, T, tokens, targets, count,
                           keep, &total);
  else
    st = asink_pass_loss(m->w, &m->pass, B, T, tokens, targets, count, keep, false, &total);
  if (st) return st;
  *loss = count ? (float)(total / count) : 0.f;
  if (!isfinite(*loss)) /* have_loss stays false (prepare): no backward of it */
    return asink_fail(ASINK_ERR_NONFINITE, "loss is %g (B=%d, T=%d): nothing kept for backward",
                      *loss, B, T);
  m->have_loss = keep;
  return ASINK_OK;
}

asink_status asink_model_loss(asink_model *m, int B, int T, const int32_t *tokens,
                              const int32_t *targets, float *loss) {
  return loss_common(m, B, T, tokens, targets, loss, true);
}

asink_status asink_model_eval_loss(asink_model *m, int B, int T, const int32_t *tokens,
                                   const int32_t *targets, float *loss) {
  return loss_common(m, B, T, tokens, targets, loss, false);
}

asink_status asink_model_backward(asink_model *m) {
  if (!m) return asink_fail(ASINK_ERR_ARG, "asink_model_backward: model is NULL");
  if (m->w->bf16) return asink_refuse_bf16_training(m, "asink_model_backward");
  if (!m->have_loss) return asink_fail(ASINK_ERR_STATE, "asink_model_backward: no loss to differentiate");
  m->have_loss = false;
  if (m->slices.have_loss) return asink_slices_backward(&m->slices, m->w, m->grad);
  asink_status st = asink_pass_backward(m->w, &m->pass);
  if (st) return st;
  asink_pass_add_head_grad(m->w, &m->pass, asink_region_threads());
  return ASINK_OK;
}
