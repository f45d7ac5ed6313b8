/* The model handle: architecture from the config, the named-parameter registry
 * (HF names and layouts), seeded initialisation, and the public entry points.
 * The passes themselves are in pass.c; files in checkpoint.c. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <omp.h>
#include <string.h>

#include "attn/spec.h"
#include "core/error.h"
#include "core/runtime.h"
#include "model/model_internal.h"

int asink_model_threads(void) { return omp_in_parallel() ? 1 : asink_get_num_threads(); }

/* ------------------------------------------------------------ registry */

static asink_param *reg_add(asink_model *m, int cap, bool decay, float init_std, int ndim,
                            int64_t s0, int64_t s1, const char *fmt, ...) ASINK_PRINTF(8, 9);

static asink_param *reg_add(asink_model *m, int cap, bool decay, float init_std, int ndim,
                            int64_t s0, int64_t s1, const char *fmt, ...) {
  if (m->n_params >= cap) return NULL;
  asink_param *p = &m->params[m->n_params++];
  memset(p, 0, sizeof *p);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(p->name, sizeof p->name, fmt, ap);
  va_end(ap);
  p->ndim = ndim;
  p->shape[0] = s0;
  p->shape[1] = s1;
  p->numel = (size_t)s0 * (ndim == 2 ? (size_t)s1 : 1);
  p->decay = decay;
  p->init_std = init_std;
  return p;
}

asink_param *asink_model_find(asink_model *m, const char *name) {
  for (int i = 0; i < m->n_params; i++)
    if (!strcmp(m->params[i].name, name)) return &m->params[i];
  return NULL;
}

static float *P(asink_model *m, const char *name, float **grad) {
  asink_param *p = asink_model_find(m, name);
  if (grad) *grad = p ? p->grad : NULL;
  return p ? p->data : NULL;
}

/* Declares every parameter the config implies, in HF order. Attention-op
 * parameters (k_bias, v_bias, sinks) point into the ops' own storage. */
static asink_status declare(asink_model *m, int cap) {
  const asink_config *c = &m->cfg;
  const int C = m->C, F = m->F, V = m->V, HD = m->H * m->D, KD = m->Hkv * m->D;
  const float s_c = sqrtf(2.f / (5.f * C)), s_hd = sqrtf(2.f / (5.f * HD));
  const float s_down = 1.f / sqrtf((float)F) / (float)m->L;
  bool gpt2 = c->family == ASINK_FAMILY_GPT2;
  bool post = c->norm == ASINK_NORMPOS_POST;
#define ADD(...) \
  if (!reg_add(m, cap, __VA_ARGS__)) return asink_fail(ASINK_ERR_ARG, "too many parameters")
  if (gpt2) {
    ADD(true, s_c, 2, V, C, "wte.weight");
    ADD(true, s_c, 2, c->max_pos, C, "wpe.weight");
    if (c->sink_token) ADD(false, s_c, 1, C, 0, "sink_token");
  } else {
    ADD(true, s_c, 2, V, C, "model.embed_tokens.weight");
    if (c->pos == ASINK_POS_LEARNED) ADD(true, s_c, 2, c->max_pos, C, "model.embed_positions.weight");
    if (c->sink_token) ADD(false, s_c, 1, C, 0, "model.sink_token");
  }
  for (int l = 0; l < m->L; l++) {
    if (gpt2) {
      ADD(false, -1.f, 1, C, 0, "h.%d.ln_1.weight", l);
      ADD(false, 0.f, 1, C, 0, "h.%d.ln_1.bias", l);
      ADD(true, s_c, 2, C, 3 * C, "h.%d.attn.c_attn.weight", l);
      ADD(false, 0.f, 1, 3 * C, 0, "h.%d.attn.c_attn.bias", l);
      ADD(true, s_hd, 2, C, C, "h.%d.attn.c_proj.weight", l);
      ADD(false, 0.f, 1, C, 0, "h.%d.attn.c_proj.bias", l);
    } else {
      ADD(false, -1.f, 1, C, 0, "model.layers.%d.input_layernorm.weight", l);
      ADD(true, s_c, 2, HD, C, "model.layers.%d.self_attn.q_proj.weight", l);
      ADD(true, s_c, 2, KD, C, "model.layers.%d.self_attn.k_proj.weight", l);
      ADD(true, s_c, 2, KD, C, "model.layers.%d.self_attn.v_proj.weight", l);
      ADD(true, s_hd, 2, C, HD, "model.layers.%d.self_attn.o_proj.weight", l);
      if (c->kernel_mlp) {
        const float s_d = sqrtf(2.f / (5.f * m->D));
        ADD(true, s_d, 2, m->D, m->D, "model.layers.%d.self_attn.kernel_mlp1.weight", l);
        ADD(true, s_d, 2, m->D, m->D, "model.layers.%d.self_attn.kernel_mlp2.weight", l);
      }
    }
    /* the attention op's own parameters, named beside the layer's */
    asink_attn *op = m->layers[l].attn;
    for (int i = 0; i < asink_attn_param_count(op); i++) {
      const char *pname;
      int nd;
      int64_t sh[2];
      asink_attn_param_info(op, i, &pname, &nd, sh);
      asink_param *p;
      if (gpt2)
        p = reg_add(m, cap, false, 0.f, nd, sh[0], sh[1], "h.%d.attn.%s", l, pname);
      else
        p = reg_add(m, cap, false, 0.f, nd, sh[0], sh[1], "model.layers.%d.self_attn.%s", l, pname);
      if (!p) return asink_fail(ASINK_ERR_ARG, "too many parameters");
      asink_attn_param(op, pname, &p->data, NULL);
      asink_attn_grad(op, pname, &p->grad, NULL);
      /* k*, v* start like keys and values; sink logits and relative biases at 0 */
      p->init_std = strncmp(pname, "sinks", 5) && strncmp(pname, "relative", 8) ? sqrtf(2.f / (5.f * m->D)) : 0.f;
    }
    if (gpt2) {
      ADD(false, -1.f, 1, C, 0, "h.%d.ln_2.weight", l);
      ADD(false, 0.f, 1, C, 0, "h.%d.ln_2.bias", l);
      ADD(true, s_c, 2, C, F, "h.%d.mlp.c_fc.weight", l);
      ADD(false, 0.f, 1, F, 0, "h.%d.mlp.c_fc.bias", l);
      ADD(true, s_down, 2, F, C, "h.%d.mlp.c_proj.weight", l);
      ADD(false, 0.f, 1, C, 0, "h.%d.mlp.c_proj.bias", l);
    } else {
      ADD(false, -1.f, 1, C, 0, "model.layers.%d.post_attention_layernorm.weight", l);
      if (m->gated) ADD(true, s_c, 2, F, C, "model.layers.%d.mlp.gate_proj.weight", l);
      ADD(true, s_c, 2, F, C, "model.layers.%d.mlp.up_proj.weight", l);
      ADD(true, s_down, 2, C, F, "model.layers.%d.mlp.down_proj.weight", l);
    }
  }
  if (gpt2) {
    if (!post) {
      ADD(false, -1.f, 1, C, 0, "ln_f.weight");
      ADD(false, 0.f, 1, C, 0, "ln_f.bias");
    }
  } else {
    if (!post) ADD(false, -1.f, 1, C, 0, "model.norm.weight");
    if (!c->tie_embeddings) ADD(true, s_c, 2, V, C, "lm_head.weight");
  }
#undef ADD
  return ASINK_OK;
}

/* Points the layer structs at the registry's storage. */
static void wire(asink_model *m) {
  const asink_config *c = &m->cfg;
  const int C = m->C, F = m->F, HD = m->H * m->D, KD = m->Hkv * m->D;
  char n[128];
  bool gpt2 = c->family == ASINK_FAMILY_GPT2;
  m->wte = P(m, gpt2 ? "wte.weight" : "model.embed_tokens.weight", &m->g_wte);
  m->wpe = P(m, gpt2 ? "wpe.weight" : "model.embed_positions.weight", &m->g_wpe);
  m->sink_tok = P(m, gpt2 ? "sink_token" : "model.sink_token", &m->g_sink_tok);
  m->lnf_w = P(m, gpt2 ? "ln_f.weight" : "model.norm.weight", &m->g_lnf_w);
  m->lnf_b = P(m, "ln_f.bias", &m->g_lnf_b);
  m->head = P(m, "lm_head.weight", &m->g_head);
  if (!m->head) m->head = m->wte, m->g_head = m->g_wte;
  for (int l = 0; l < m->L; l++) {
    asink_layer *y = &m->layers[l];
#define W(field, gfield, ...) (snprintf(n, sizeof n, __VA_ARGS__), y->field = P(m, n, &y->gfield))
#define LIN(ref, fmt, in_, out_, in_out_)                                          \
  do {                                                                              \
    snprintf(n, sizeof n, fmt ".weight", l);                                        \
    ref.w = P(m, n, &ref.dw);                                                       \
    snprintf(n, sizeof n, fmt ".bias", l);                                          \
    ref.b = P(m, n, &ref.db);                                                       \
    ref.in = in_, ref.out = out_, ref.in_out = in_out_, ref.ldw = in_out_ ? out_ : in_; \
  } while (0)
    if (gpt2) {
      W(ln1_w, g_ln1_w, "h.%d.ln_1.weight", l);
      W(ln1_b, g_ln1_b, "h.%d.ln_1.bias", l);
      W(ln2_w, g_ln2_w, "h.%d.ln_2.weight", l);
      W(ln2_b, g_ln2_b, "h.%d.ln_2.bias", l);
      linear_ref qkv;
      LIN(qkv, "h.%d.attn.c_attn", C, 3 * C, true);
      /* q, k, v are column slices of the fused [C, 3C] Conv1D weight and its bias */
      for (int i = 0; i < 3; i++) {
        linear_ref *r = i == 0 ? &y->q : i == 1 ? &y->k : &y->v;
        *r = (linear_ref){qkv.w + i * C, qkv.b + i * C, qkv.dw + i * C, qkv.db + i * C, C, C, 3 * C, true};
      }
      LIN(y->o, "h.%d.attn.c_proj", C, C, true);
      LIN(y->up, "h.%d.mlp.c_fc", C, F, true);
      LIN(y->down, "h.%d.mlp.c_proj", F, C, true);
      y->gate = (linear_ref){0};
    } else {
      W(ln1_w, g_ln1_w, "model.layers.%d.input_layernorm.weight", l);
      W(ln2_w, g_ln2_w, "model.layers.%d.post_attention_layernorm.weight", l);
      y->ln1_b = y->ln2_b = y->g_ln1_b = y->g_ln2_b = NULL;
      LIN(y->q, "model.layers.%d.self_attn.q_proj", C, HD, false);
      LIN(y->k, "model.layers.%d.self_attn.k_proj", C, KD, false);
      LIN(y->v, "model.layers.%d.self_attn.v_proj", C, KD, false);
      LIN(y->o, "model.layers.%d.self_attn.o_proj", HD, C, false);
      LIN(y->gate, "model.layers.%d.mlp.gate_proj", C, F, false);
      LIN(y->up, "model.layers.%d.mlp.up_proj", C, F, false);
      LIN(y->down, "model.layers.%d.mlp.down_proj", F, C, false);
      LIN(y->kmlp1, "model.layers.%d.self_attn.kernel_mlp1", m->D, m->D, false);
      LIN(y->kmlp2, "model.layers.%d.self_attn.kernel_mlp2", m->D, m->D, false);
    }
#undef W
#undef LIN
  }
}

/* ---------------------------------------------------------- initialisation */

typedef struct {
  uint64_t s[4];
} rng_t;

static uint64_t splitmix(uint64_t *x) {
  uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static uint64_t rng_next(rng_t *r) { /* xoshiro256** */
  uint64_t *s = r->s, res = ((s[1] * 5) << 7 | (s[1] * 5) >> 57) * 9, t = s[1] << 17;
  s[2] ^= s[0], s[3] ^= s[1], s[1] ^= s[2], s[0] ^= s[3], s[2] ^= t;
  s[3] = (s[3] << 45) | (s[3] >> 19);
  return res;
}

static double rng_normal(rng_t *r) {
  double u1 = ((rng_next(r) >> 11) + 1.0) * 0x1.0p-53, u2 = (rng_next(r) >> 11) * 0x1.0p-53;
  return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

static void init_params(asink_model *m, uint64_t seed) {
  rng_t r;
  uint64_t x = seed;
  for (int i = 0; i < 4; i++) r.s[i] = splitmix(&x);
  for (int i = 0; i < m->n_params; i++) {
    asink_param *p = &m->params[i];
    for (size_t j = 0; j < p->numel; j++)
      p->data[j] = p->init_std < 0.f ? 1.f : p->init_std == 0.f ? 0.f : (float)(p->init_std * rng_normal(&r));
  }
}

/* ------------------------------------------------------------- lifecycle */

static asink_status layer_spec(const asink_config *c, char *out, size_t n) {
  asink_spec s;
  asink_status st = asink_spec_parse(c->attn, &s);
  if (st) return st;
  snprintf(out, n, "%s%s%s", c->attn, c->pos == ASINK_POS_ALIBI && !s.alibi ? ",alibi=1" : "",
           c->pos == ASINK_POS_RELATIVE && !s.relbias ? ",relbias=t5" : "");
  return ASINK_OK;
}

static asink_status build(asink_model **out, const asink_config *cfg) {
  asink_status st = asink_runtime_ready();
  if (st) return st;
  if ((st = asink_config_validate(cfg, "config"))) return st;
  if (cfg->kernel_mlp && cfg->family == ASINK_FAMILY_GPT2)
    return asink_fail(ASINK_ERR_FORMAT, "config: attnsink.kernel=mlp is for llama-family models");
  bool gated = cfg->ffn == ASINK_FFN_SWIGLU || cfg->ffn == ASINK_FFN_GEGLU || cfg->ffn == ASINK_FFN_REGLU;
  if (cfg->family == ASINK_FAMILY_GPT2 && gated)
    return asink_fail(ASINK_ERR_FORMAT, "config: attnsink.ffn=%s is gated; gpt2 models have one MLP input (gelu, relu, swish)",
                      asink_ffn_name(cfg->ffn));
  if (cfg->family == ASINK_FAMILY_GPT2 && !cfg->tie_embeddings)
    return asink_fail(ASINK_ERR_FORMAT, "config: tie_word_embeddings=false: gpt2 models tie the head to wte");
  if (cfg->family == ASINK_FAMILY_GPT2 && cfg->pos != ASINK_POS_LEARNED)
    return asink_fail(ASINK_ERR_FORMAT, "config: gpt2 models use learned positions, not attnsink.positions=%s",
                      asink_pos_name(cfg->pos));
  asink_model *m = asink_calloc(1, sizeof *m);
  if (!m) return asink_fail(ASINK_ERR_NOMEM, "cannot allocate a model");
  m->cfg = *cfg;
  m->C = cfg->hidden, m->F = cfg->intermediate, m->L = cfg->n_layer, m->H = cfg->n_head;
  m->Hkv = cfg->n_kv_head, m->D = cfg->head_dim, m->V = cfg->vocab_size;
  m->gated = gated;
  m->act = (cfg->ffn == ASINK_FFN_SWIGLU || cfg->ffn == ASINK_FFN_SWISH) ? ACT_SILU
           : (cfg->ffn == ASINK_FFN_GEGLU || cfg->ffn == ASINK_FFN_GELU) ? ACT_GELU
                                                                          : ACT_RELU;
  m->layers = asink_calloc((size_t)m->L, sizeof *m->layers);
  int cap = 32 * m->L + 16;
  m->params = asink_calloc((size_t)cap, sizeof *m->params);
  m->config_json = asink_config_to_json(cfg);
  if (!m->layers || !m->params || !m->config_json) {
    asink_model_free(m);
    return asink_fail(ASINK_ERR_NOMEM, "cannot allocate a model");
  }
  char spec[320];
  if ((st = layer_spec(cfg, spec, sizeof spec))) {
    asink_model_free(m);
    return asink_fail_context(st, "config: attnsink.attn");
  }
  for (int l = 0; l < m->L; l++)
    if ((st = asink_attn_create(&m->layers[l].attn, spec, m->H, m->Hkv, m->D))) {
      asink_model_free(m);
      return asink_fail_context(st, "config: attnsink.attn");
    }
  if ((st = declare(m, cap))) {
    asink_model_free(m);
    return st;
  }
  size_t total = 0;
  for (int i = 0; i < m->n_params; i++)
    if (!m->params[i].data) total += m->params[i].numel;
  m->n_block = total;
  m->block = asink_calloc(total + 1, sizeof(float));
  m->gblock = asink_calloc(total + 1, sizeof(float));
  if (!m->block || !m->gblock) {
    asink_model_free(m);
    return asink_fail(ASINK_ERR_NOMEM, "cannot allocate %zu parameters", total);
  }
  size_t off = 0;
  for (int i = 0; i < m->n_params; i++) {
    asink_param *p = &m->params[i];
    if (p->data) continue;
    p->data = m->block + off;
    p->grad = m->gblock + off;
    off += p->numel;
  }
  wire(m);
  *out = m;
  return ASINK_OK;
}

asink_status asink_model_create_from_config(asink_model **out, const asink_config *cfg, uint64_t seed) {
  asink_status st = build(out, cfg);
  if (st == ASINK_OK) init_params(*out, seed);
  return st;
}

asink_status asink_model_create(asink_model **out, const char *config_json, uint64_t seed) {
  if (!out || !config_json) return asink_fail(ASINK_ERR_ARG, "asink_model_create: NULL argument");
  *out = NULL;
  asink_config cfg;
  asink_status st = asink_config_parse(config_json, "config", &cfg);
  if (st) return st;
  return asink_model_create_from_config(out, &cfg, seed);
}

void asink_model_free(asink_model *m) {
  if (!m) return;
  if (m->obs.ctx) m->obs.model_freed(m->obs.ctx);
  asink_replicas_free(m);
  if (m->layers)
    for (int l = 0; l < m->L; l++) asink_attn_free(m->layers[l].attn);
  asink_free(m->layers);
  asink_free(m->params);
  asink_free(m->block);
  asink_free(m->gblock);
  free(m->config_json);
  asink_ws_release(&m->acts_ws);
  asink_ws_release(&m->head_pending);
  asink_ws_release(&m->rope_ws);
  asink_ws_release(&m->sinus_ws);
  asink_ws_release(&m->work_ws);
  asink_ws_release(&m->logits_ws);
  asink_free(m->acts);
  asink_free(m);
}

/* -------------------------------------------------------------- accessors */

const char *asink_model_config(const asink_model *m) { return m ? m->config_json : ""; }

void asink_model_dims(const asink_model *m, int *n_layer, int *n_head, int *n_kv_head,
                      int *head_dim, int *hidden, int *vocab) {
  if (!m) return;
  if (n_layer) *n_layer = m->L;
  if (n_head) *n_head = m->H;
  if (n_kv_head) *n_kv_head = m->Hkv;
  if (head_dim) *head_dim = m->D;
  if (hidden) *hidden = m->C;
  if (vocab) *vocab = m->V;
}

int asink_model_param_count(const asink_model *m) { return m ? m->n_params : 0; }

asink_status asink_model_param_info(const asink_model *m, int i, const char **name, int *ndim,
                                    int64_t shape[4]) {
  if (!m) return asink_fail(ASINK_ERR_ARG, "asink_model_param_info: model is NULL");
  if (i < 0 || i >= m->n_params)
    return asink_fail(ASINK_ERR_ARG, "parameter index %d out of range (the model has %d)", i, m->n_params);
  const asink_param *p = &m->params[i];
  if (name) *name = p->name;
  if (ndim) *ndim = p->ndim;
  if (shape)
    for (int d = 0; d < 4; d++) shape[d] = d < p->ndim ? p->shape[d] : 0;
  return ASINK_OK;
}

static asink_status lookup(asink_model *m, const char *name, bool grad, float **data, size_t *numel) {
  if (!m || !name || !data) return asink_fail(ASINK_ERR_ARG, "asink_model_param/grad: NULL argument");
  asink_param *p = asink_model_find(m, name);
  if (!p) return asink_fail(ASINK_ERR_ARG, "the model has no parameter '%s'", name);
  *data = grad ? p->grad : p->data;
  if (numel) *numel = p->numel;
  return ASINK_OK;
}

asink_status asink_model_param(asink_model *m, const char *name, float **data, size_t *numel) {
  return lookup(m, name, false, data, numel);
}

asink_status asink_model_grad(asink_model *m, const char *name, float **data, size_t *numel) {
  return lookup(m, name, true, data, numel);
}

void asink_model_zero_grad(asink_model *m) {
  if (!m) return;
  for (int i = 0; i < m->n_params; i++) memset(m->params[i].grad, 0, m->params[i].numel * sizeof(float));
}
