/* The weights: architecture from the config, the named-parameter registry built from
 * one declarative table per family (HF name, shape, init, decay, presence, and the
 * view it fills), seeded initialisation, position tables. */
#include "model/weights.h"

#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attn/op.h"
#include "attn/spec.h"
#include "core/error.h"
#include "core/rng.h"
#include "core/runtime.h"
#include "kernels/kernels.h"

/* ------------------------------------------------------------------ tables */

typedef enum { D_NONE, D_C, D_3C, D_F, D_V, D_HD, D_KD, D_D, D_POS } dim_sym;
typedef enum { INIT_ONES, INIT_ZEROS, INIT_C, INIT_HD, INIT_D, INIT_DOWN } init_sym;
typedef enum {
  ALWAYS,
  IF_LEARNED_POS,
  IF_SINK_TOKEN,
  IF_KERNEL_MLP,
  IF_GATED,
  IF_PRE_NORM,
  IF_UNTIED,
  IF_QKV_BIAS,
  IF_O_BIAS,
  IF_MLP_BIAS,
  IF_GATED_MLP_BIAS
} when_sym;
/* Where the parameter's view goes: a pointer of asink_weights (TOP) or of
 * asink_layer_weights (VEC), an asink_linear's weight or bias, or, for ATTN_OP, the
 * attention op's own parameters named with this prefix. */
typedef enum { TOP, VEC, LIN_W, LIN_B, ATTN_OP } target;

typedef struct {
  const char *name; /* HF name; %d = the layer */
  dim_sym rows, cols; /* cols D_NONE: a vector */
  init_sym init;
  bool decay;
  when_sym when;
  target kind;
  size_t at;   /* offsetof the view */
  bool in_out; /* LIN_W stored (in, out) as GPT-2's Conv1D; else (out, in) as nn.Linear */
} param_row;

#define WT(f) offsetof(asink_weights, f)
#define LW(f) offsetof(asink_layer_weights, f)

/* LLaMA (and the study's variants of it; Qwen2 and Mistral: the same names), in HF order:
 * the model's own rows, each layer's, then the model's last ones. */
static const param_row llama_pre[] = {
    {"model.embed_tokens.weight", D_V, D_C, INIT_C, true, ALWAYS, TOP, WT(wte), false},
    {"model.embed_positions.weight", D_POS, D_C, INIT_C, true, IF_LEARNED_POS, TOP, WT(wpe), false},
    {"model.sink_token", D_C, D_NONE, INIT_C, false, IF_SINK_TOKEN, TOP, WT(sink_tok), false},
};
static const param_row llama_layer[] = {
    {"model.layers.%d.input_layernorm.weight", D_C, D_NONE, INIT_ONES, false, ALWAYS, VEC, LW(ln1_w), false},
    {"model.layers.%d.self_attn.q_proj.weight", D_HD, D_C, INIT_C, true, ALWAYS, LIN_W, LW(q), false},
    {"model.layers.%d.self_attn.q_proj.bias", D_HD, D_NONE, INIT_ZEROS, false, IF_QKV_BIAS, LIN_B, LW(q), false},
    {"model.layers.%d.self_attn.k_proj.weight", D_KD, D_C, INIT_C, true, ALWAYS, LIN_W, LW(k), false},
    {"model.layers.%d.self_attn.k_proj.bias", D_KD, D_NONE, INIT_ZEROS, false, IF_QKV_BIAS, LIN_B, LW(k), false},
    {"model.layers.%d.self_attn.v_proj.weight", D_KD, D_C, INIT_C, true, ALWAYS, LIN_W, LW(v), false},
    {"model.layers.%d.self_attn.v_proj.bias", D_KD, D_NONE, INIT_ZEROS, false, IF_QKV_BIAS, LIN_B, LW(v), false},
    {"model.layers.%d.self_attn.o_proj.weight", D_C, D_HD, INIT_HD, true, ALWAYS, LIN_W, LW(o), false},
    {"model.layers.%d.self_attn.o_proj.bias", D_C, D_NONE, INIT_ZEROS, false, IF_O_BIAS, LIN_B, LW(o), false},
    {"model.layers.%d.self_attn.kernel_mlp1.weight", D_D, D_D, INIT_D, true, IF_KERNEL_MLP, LIN_W, LW(kmlp1), false},
    {"model.layers.%d.self_attn.kernel_mlp2.weight", D_D, D_D, INIT_D, true, IF_KERNEL_MLP, LIN_W, LW(kmlp2), false},
    {"model.layers.%d.self_attn.", D_NONE, D_NONE, INIT_ZEROS, false, ALWAYS, ATTN_OP, LW(attn), false},
    {"model.layers.%d.post_attention_layernorm.weight", D_C, D_NONE, INIT_ONES, false, ALWAYS, VEC, LW(ln2_w), false},
    {"model.layers.%d.mlp.gate_proj.weight", D_F, D_C, INIT_C, true, IF_GATED, LIN_W, LW(gate), false},
    {"model.layers.%d.mlp.gate_proj.bias", D_F, D_NONE, INIT_ZEROS, false, IF_GATED_MLP_BIAS, LIN_B, LW(gate), false},
    {"model.layers.%d.mlp.up_proj.weight", D_F, D_C, INIT_C, true, ALWAYS, LIN_W, LW(up), false},
    {"model.layers.%d.mlp.up_proj.bias", D_F, D_NONE, INIT_ZEROS, false, IF_MLP_BIAS, LIN_B, LW(up), false},
    {"model.layers.%d.mlp.down_proj.weight", D_C, D_F, INIT_DOWN, true, ALWAYS, LIN_W, LW(down), false},
    {"model.layers.%d.mlp.down_proj.bias", D_C, D_NONE, INIT_ZEROS, false, IF_MLP_BIAS, LIN_B, LW(down), false},
};
static const param_row llama_post[] = {
    {"model.norm.weight", D_C, D_NONE, INIT_ONES, false, IF_PRE_NORM, TOP, WT(lnf_w), false},
    {"lm_head.weight", D_V, D_C, INIT_C, true, IF_UNTIED, TOP, WT(head), false},
};

/* GPT-2: Conv1D weights stored (in, out); the head is tied to wte. */
static const param_row gpt2_pre[] = {
    {"wte.weight", D_V, D_C, INIT_C, true, ALWAYS, TOP, WT(wte), false},
    {"wpe.weight", D_POS, D_C, INIT_C, true, IF_LEARNED_POS, TOP, WT(wpe), false},
    {"sink_token", D_C, D_NONE, INIT_C, false, IF_SINK_TOKEN, TOP, WT(sink_tok), false},
};
static const param_row gpt2_layer[] = {
    {"h.%d.ln_1.weight", D_C, D_NONE, INIT_ONES, false, ALWAYS, VEC, LW(ln1_w), false},
    {"h.%d.ln_1.bias", D_C, D_NONE, INIT_ZEROS, false, ALWAYS, VEC, LW(ln1_b), false},
    {"h.%d.attn.c_attn.weight", D_C, D_3C, INIT_C, true, ALWAYS, LIN_W, LW(qkv), true},
    {"h.%d.attn.c_attn.bias", D_3C, D_NONE, INIT_ZEROS, false, ALWAYS, LIN_B, LW(qkv), false},
    {"h.%d.attn.c_proj.weight", D_C, D_C, INIT_HD, true, ALWAYS, LIN_W, LW(o), true},
    {"h.%d.attn.c_proj.bias", D_C, D_NONE, INIT_ZEROS, false, ALWAYS, LIN_B, LW(o), false},
    {"h.%d.attn.", D_NONE, D_NONE, INIT_ZEROS, false, ALWAYS, ATTN_OP, LW(attn), false},
    {"h.%d.ln_2.weight", D_C, D_NONE, INIT_ONES, false, ALWAYS, VEC, LW(ln2_w), false},
    {"h.%d.ln_2.bias", D_C, D_NONE, INIT_ZEROS, false, ALWAYS, VEC, LW(ln2_b), false},
    {"h.%d.mlp.c_fc.weight", D_C, D_F, INIT_C, true, ALWAYS, LIN_W, LW(up), true},
    {"h.%d.mlp.c_fc.bias", D_F, D_NONE, INIT_ZEROS, false, ALWAYS, LIN_B, LW(up), false},
    {"h.%d.mlp.c_proj.weight", D_F, D_C, INIT_DOWN, true, ALWAYS, LIN_W, LW(down), true},
    {"h.%d.mlp.c_proj.bias", D_C, D_NONE, INIT_ZEROS, false, ALWAYS, LIN_B, LW(down), false},
};
static const param_row gpt2_post[] = {
    {"ln_f.weight", D_C, D_NONE, INIT_ONES, false, IF_PRE_NORM, TOP, WT(lnf_w), false},
    {"ln_f.bias", D_C, D_NONE, INIT_ZEROS, false, IF_PRE_NORM, TOP, WT(lnf_b), false},
};

/* GPT-NeoX (Pythia): nn.Linear weights (out, in); query_key_value's rows are per head
 * [q; k; v] (HF splits its output as (heads, 3 * head_dim)); the head embed_out is untied. */
static const param_row neox_pre[] = {
    {"gpt_neox.embed_in.weight", D_V, D_C, INIT_C, true, ALWAYS, TOP, WT(wte), false},
};
static const param_row neox_layer[] = {
    {"gpt_neox.layers.%d.input_layernorm.weight", D_C, D_NONE, INIT_ONES, false, ALWAYS, VEC, LW(ln1_w), false},
    {"gpt_neox.layers.%d.input_layernorm.bias", D_C, D_NONE, INIT_ZEROS, false, ALWAYS, VEC, LW(ln1_b), false},
    {"gpt_neox.layers.%d.post_attention_layernorm.weight", D_C, D_NONE, INIT_ONES, false, ALWAYS, VEC, LW(ln2_w), false},
    {"gpt_neox.layers.%d.post_attention_layernorm.bias", D_C, D_NONE, INIT_ZEROS, false, ALWAYS, VEC, LW(ln2_b), false},
    {"gpt_neox.layers.%d.attention.query_key_value.weight", D_3C, D_C, INIT_C, true, ALWAYS, LIN_W, LW(qkv), false},
    {"gpt_neox.layers.%d.attention.query_key_value.bias", D_3C, D_NONE, INIT_ZEROS, false, IF_QKV_BIAS, LIN_B, LW(qkv), false},
    {"gpt_neox.layers.%d.attention.dense.weight", D_C, D_HD, INIT_HD, true, ALWAYS, LIN_W, LW(o), false},
    {"gpt_neox.layers.%d.attention.dense.bias", D_C, D_NONE, INIT_ZEROS, false, IF_O_BIAS, LIN_B, LW(o), false},
    {"gpt_neox.layers.%d.attention.", D_NONE, D_NONE, INIT_ZEROS, false, ALWAYS, ATTN_OP, LW(attn), false},
    {"gpt_neox.layers.%d.mlp.dense_h_to_4h.weight", D_F, D_C, INIT_C, true, ALWAYS, LIN_W, LW(up), false},
    {"gpt_neox.layers.%d.mlp.dense_h_to_4h.bias", D_F, D_NONE, INIT_ZEROS, false, IF_MLP_BIAS, LIN_B, LW(up), false},
    {"gpt_neox.layers.%d.mlp.dense_4h_to_h.weight", D_C, D_F, INIT_DOWN, true, ALWAYS, LIN_W, LW(down), false},
    {"gpt_neox.layers.%d.mlp.dense_4h_to_h.bias", D_C, D_NONE, INIT_ZEROS, false, IF_MLP_BIAS, LIN_B, LW(down), false},
};
static const param_row neox_post[] = {
    {"gpt_neox.final_layer_norm.weight", D_C, D_NONE, INIT_ONES, false, IF_PRE_NORM, TOP, WT(lnf_w), false},
    {"gpt_neox.final_layer_norm.bias", D_C, D_NONE, INIT_ZEROS, false, IF_PRE_NORM, TOP, WT(lnf_b), false},
    {"embed_out.weight", D_V, D_C, INIT_C, true, IF_UNTIED, TOP, WT(head), false},
};

/* OPT: learned positions with 2 extra rows (position p reads row p + 2), a ReLU MLP
 * (fc1, fc2), self_attn_layer_norm before (or after) attention and the layer's
 * final_layer_norm before (or after) the MLP; the head is tied to embed_tokens. */
static const param_row opt_pre[] = {
    {"model.decoder.embed_tokens.weight", D_V, D_C, INIT_C, true, ALWAYS, TOP, WT(wte), false},
    {"model.decoder.embed_positions.weight", D_POS, D_C, INIT_C, true, IF_LEARNED_POS, TOP, WT(wpe), false},
};
static const param_row opt_layer[] = {
    {"model.decoder.layers.%d.self_attn.k_proj.weight", D_KD, D_C, INIT_C, true, ALWAYS, LIN_W, LW(k), false},
    {"model.decoder.layers.%d.self_attn.k_proj.bias", D_KD, D_NONE, INIT_ZEROS, false, IF_QKV_BIAS, LIN_B, LW(k), false},
    {"model.decoder.layers.%d.self_attn.v_proj.weight", D_KD, D_C, INIT_C, true, ALWAYS, LIN_W, LW(v), false},
    {"model.decoder.layers.%d.self_attn.v_proj.bias", D_KD, D_NONE, INIT_ZEROS, false, IF_QKV_BIAS, LIN_B, LW(v), false},
    {"model.decoder.layers.%d.self_attn.q_proj.weight", D_HD, D_C, INIT_C, true, ALWAYS, LIN_W, LW(q), false},
    {"model.decoder.layers.%d.self_attn.q_proj.bias", D_HD, D_NONE, INIT_ZEROS, false, IF_QKV_BIAS, LIN_B, LW(q), false},
    {"model.decoder.layers.%d.self_attn.out_proj.weight", D_C, D_HD, INIT_HD, true, ALWAYS, LIN_W, LW(o), false},
    {"model.decoder.layers.%d.self_attn.out_proj.bias", D_C, D_NONE, INIT_ZEROS, false, IF_O_BIAS, LIN_B, LW(o), false},
    {"model.decoder.layers.%d.self_attn.", D_NONE, D_NONE, INIT_ZEROS, false, ALWAYS, ATTN_OP, LW(attn), false},
    {"model.decoder.layers.%d.self_attn_layer_norm.weight", D_C, D_NONE, INIT_ONES, false, ALWAYS, VEC, LW(ln1_w), false},
    {"model.decoder.layers.%d.self_attn_layer_norm.bias", D_C, D_NONE, INIT_ZEROS, false, ALWAYS, VEC, LW(ln1_b), false},
    {"model.decoder.layers.%d.fc1.weight", D_F, D_C, INIT_C, true, ALWAYS, LIN_W, LW(up), false},
    {"model.decoder.layers.%d.fc1.bias", D_F, D_NONE, INIT_ZEROS, false, IF_MLP_BIAS, LIN_B, LW(up), false},
    {"model.decoder.layers.%d.fc2.weight", D_C, D_F, INIT_DOWN, true, ALWAYS, LIN_W, LW(down), false},
    {"model.decoder.layers.%d.fc2.bias", D_C, D_NONE, INIT_ZEROS, false, IF_MLP_BIAS, LIN_B, LW(down), false},
    {"model.decoder.layers.%d.final_layer_norm.weight", D_C, D_NONE, INIT_ONES, false, ALWAYS, VEC, LW(ln2_w), false},
    {"model.decoder.layers.%d.final_layer_norm.bias", D_C, D_NONE, INIT_ZEROS, false, ALWAYS, VEC, LW(ln2_b), false},
};
static const param_row opt_post[] = {
    {"model.decoder.final_layer_norm.weight", D_C, D_NONE, INIT_ONES, false, IF_PRE_NORM, TOP, WT(lnf_w), false},
    {"model.decoder.final_layer_norm.bias", D_C, D_NONE, INIT_ZEROS, false, IF_PRE_NORM, TOP, WT(lnf_b), false},
    {"lm_head.weight", D_V, D_C, INIT_C, true, IF_UNTIED, TOP, WT(head), false},
};

#define ROWS(t) t, sizeof t / sizeof t[0]
typedef struct {
  const param_row *pre;
  size_t n_pre;
  const param_row *layer;
  size_t n_layer;
  const param_row *post;
  size_t n_post;
} family_rows;
static const family_rows llama_rows = {ROWS(llama_pre), ROWS(llama_layer), ROWS(llama_post)};
static const family_rows gpt2_rows = {ROWS(gpt2_pre), ROWS(gpt2_layer), ROWS(gpt2_post)};
static const family_rows neox_rows = {ROWS(neox_pre), ROWS(neox_layer), ROWS(neox_post)};
static const family_rows opt_rows = {ROWS(opt_pre), ROWS(opt_layer), ROWS(opt_post)};

static const family_rows *rows_of(asink_family f) {
  switch (f) {
  case ASINK_FAMILY_GPT2: return &gpt2_rows;
  case ASINK_FAMILY_NEOX: return &neox_rows;
  case ASINK_FAMILY_OPT: return &opt_rows;
  default: return &llama_rows; /* llama, qwen2, mistral */
  }
}

/* ------------------------------------------------------------ registry */

static int64_t dim_of(const asink_weights *w, dim_sym d) {
  switch (d) {
  case D_C: return w->C;
  case D_3C: return 3 * (int64_t)w->C;
  case D_F: return w->F;
  case D_V: return w->V;
  case D_HD: return (int64_t)w->H * w->D;
  case D_KD: return (int64_t)w->Hkv * w->D;
  case D_D: return w->D;
  case D_POS: return (int64_t)w->cfg.max_pos + w->pos_off;
  default: return 0;
  }
}

static float std_of(const asink_weights *w, init_sym s) {
  switch (s) {
  case INIT_ONES: return -1.f;
  case INIT_C: return sqrtf(2.f / (5.f * w->C));
  case INIT_HD: return sqrtf(2.f / (5.f * (w->H * w->D)));
  case INIT_D: return sqrtf(2.f / (5.f * w->D));
  case INIT_DOWN: return 1.f / sqrtf((float)w->F) / (float)w->L;
  default: return 0.f;
  }
}

static bool present(const asink_weights *w, when_sym when) {
  const asink_config *c = &w->cfg;
  switch (when) {
  case IF_LEARNED_POS: return c->pos == ASINK_POS_LEARNED;
  case IF_SINK_TOKEN: return c->sink_token;
  case IF_KERNEL_MLP: return c->kernel_mlp;
  case IF_GATED: return w->gated;
  case IF_PRE_NORM: return c->norm == ASINK_NORMPOS_PRE;
  case IF_UNTIED: return !c->tie_embeddings;
  case IF_QKV_BIAS: return c->qkv_bias;
  case IF_O_BIAS: return c->o_bias;
  case IF_MLP_BIAS: return c->mlp_bias;
  case IF_GATED_MLP_BIAS: return c->mlp_bias && w->gated;
  default: return true;
  }
}

/* Adds a parameter (count only while w->params is NULL): a matrix (half) is kept in bf16
 * with weights=bf16, or in float with a bf16 copy with precision=bf16. */
static asink_param *add(asink_weights *w, const char *name, int ndim, int64_t s0, int64_t s1,
                        float init_std, bool decay, bool half) {
  /* Sizes come from the config: count with saturation so that an absurd config ends
   * at SIZE_MAX (refused by asink_weights_create) instead of wrapping or overflowing. */
  size_t numel = asink_mul_size((size_t)s0, ndim == 2 ? (size_t)s1 : 1);
  bool copy = half && w->mixed && !w->bf16;
  half = half && w->bf16;
  size_t *end = half ? &w->n_block16 : &w->n_block, off = *end, coff = w->n_copy16;
  if (off == SIZE_MAX || w->n_block == SIZE_MAX || w->n_params == INT_MAX || numel > SIZE_MAX - 1 - off ||
      (copy && numel > SIZE_MAX - 1 - coff)) {
    w->n_block = SIZE_MAX;
    return NULL;
  }
  int i = w->n_params++;
  *end += numel;
  if (copy) w->n_copy16 += numel;
  if (!w->params) return NULL;
  asink_param *p = &w->params[i];
  memset(p, 0, sizeof *p);
  snprintf(p->name, sizeof p->name, "%s", name);
  p->ndim = ndim, p->shape[0] = s0, p->shape[1] = ndim == 2 ? s1 : 0;
  p->numel = numel, p->offset = off;
  if (half) p->data16 = w->block16 ? w->block16 + off : NULL;
  else p->data = w->block ? w->block + off : NULL;
  if (copy) p->copy16 = w->copy16 ? w->copy16 + coff : NULL;
  p->decay = decay, p->init_std = init_std;
  return p;
}

/* What bf16 weights keep in bf16: the matrices the GEMMs read (not the small feature-map
 * MLP's, which the attention runs on its own) and the embedding; norms, biases, learned
 * positions and the attention's parameters are small and stay float. The same matrices get
 * bf16 copies with precision=bf16. */
static bool matrix_in_bf16(const param_row *r) {
  if (r->kind == LIN_W) return r->at != LW(kmlp1) && r->at != LW(kmlp2);
  return r->kind == TOP && r->cols != D_NONE && (r->at == WT(wte) || r->at == WT(head));
}

/* The view a row fills, in the weights or in layer l. */
static void set_view(asink_weights *w, const param_row *r, int l, const asink_param *p) {
  if (r->kind == TOP) {
    *(float **)((char *)w + r->at) = p->data;
    if (r->at == WT(wte)) w->wte16 = p->data16, w->wte_copy16 = p->copy16;
    if (r->at == WT(head)) w->head16 = p->data16 ? p->data16 : p->copy16;
    return;
  }
  char *y = (char *)&w->layers[l];
  if (r->kind == VEC) {
    *(float **)(y + r->at) = p->data;
  } else if (r->kind == LIN_B) {
    ((asink_linear *)(y + r->at))->b = p->data;
  } else {
    asink_linear *L = (asink_linear *)(y + r->at);
    L->w = p->data;
    L->w16 = p->data16 ? p->data16 : p->copy16;
    L->bf16ops = w->mixed && matrix_in_bf16(r);
    L->in_out = r->in_out;
    L->in = (int)(r->in_out ? p->shape[0] : p->shape[1]);
    L->out = (int)(r->in_out ? p->shape[1] : p->shape[0]);
    L->ldw = (int)p->shape[1];
  }
}

/* The attention op's parameters, named after its prefix; k_bias and v_bias start like
 * keys and values, sink logits and relative biases at 0. */
static void add_op_params(asink_weights *w, const char *prefix, int l) {
  if (!w->layers) return; /* the first count, a lower bound made before the ops exist */
  asink_attn *op = w->layers[l].attn;
  size_t first = w->n_block;
  for (int i = 0; i < asink_attn_param_count(op); i++) {
    const char *pname;
    int nd;
    int64_t sh[2];
    asink_attn_param_info(op, i, &pname, &nd, sh);
    char name[128];
    snprintf(name, sizeof name, "%s%s", prefix, pname);
    bool zero = !strncmp(pname, "sinks", 5) || !strncmp(pname, "relative", 8);
    add(w, name, nd, sh[0], sh[1], zero ? 0.f : std_of(w, INIT_D), false, false);
  }
  if (w->block && asink_attn_param_floats(op)) asink_attn_use_storage(op, w->block + first);
}


static void add_rows(asink_weights *w, const param_row *rows, size_t n, int l) {
  char name[128];
  for (size_t i = 0; i < n; i++) {
    const param_row *r = &rows[i];
    if (!present(w, r->when)) continue;
    snprintf(name, sizeof name, r->name, l);
    if (r->kind == ATTN_OP) {
      add_op_params(w, name, l);
      continue;
    }
    /* the embedding is looked up in float: its copy only serves a head tied to it */
    bool embedding = r->kind == TOP && r->at == WT(wte);
    bool half = matrix_in_bf16(r) && (!embedding || w->bf16 || w->cfg.tie_embeddings);
    asink_param *p = add(w, name, r->cols == D_NONE ? 1 : 2, dim_of(w, r->rows),
                         dim_of(w, r->cols), std_of(w, r->init), r->decay, half);
    if (p) set_view(w, r, l, p);
  }
}

/* Every parameter the config implies, in HF order: run once to count (no storage
 * yet), once to fill. */
static void declare(asink_weights *w) {
  const family_rows *f = rows_of(w->cfg.family);
  w->n_params = 0, w->n_block = 0, w->n_block16 = 0, w->n_copy16 = 0;
  add_rows(w, f->pre, f->n_pre, 0);
  if (w->params) {
    for (int l = 0; l < w->L; l++) add_rows(w, f->layer, f->n_layer, l);
  } else { /* counting: every layer has layer 0's parameters; L of them, checked */
    int n0 = w->n_params;
    size_t b0 = w->n_block, h0 = w->n_block16, c0 = w->n_copy16;
    add_rows(w, f->layer, f->n_layer, 0);
    if (w->n_block != SIZE_MAX) {
      size_t per_n = (size_t)(w->n_params - n0), per_b = w->n_block - b0, per_h = w->n_block16 - h0;
      size_t per_c = w->n_copy16 - c0;
      size_t all_n = asink_mul_size(per_n, (size_t)w->L), all_b = asink_mul_size(per_b, (size_t)w->L),
             all_h = asink_mul_size(per_h, (size_t)w->L), all_c = asink_mul_size(per_c, (size_t)w->L);
      if (all_n > (size_t)INT_MAX - (size_t)n0 || all_b >= SIZE_MAX - b0 || all_h >= SIZE_MAX - h0 ||
          all_c >= SIZE_MAX - c0)
        w->n_block = SIZE_MAX;
      else
        w->n_params = n0 + (int)all_n, w->n_block = b0 + all_b, w->n_block16 = h0 + all_h,
        w->n_copy16 = c0 + all_c;
    }
  }
  add_rows(w, f->post, f->n_post, 0);
  if (!w->head && !w->head16) w->head = w->wte, w->head16 = w->wte16 ? w->wte16 : w->wte_copy16;
  /* GPT-2's q, k, v are column slices of the fused [C, 3C] Conv1D weight and bias */
  if (w->params && w->cfg.family == ASINK_FAMILY_GPT2)
    for (int l = 0; l < w->L; l++) {
      asink_layer_weights *y = &w->layers[l];
      asink_linear *qkv[] = {&y->q, &y->k, &y->v};
      for (int i = 0; i < 3; i++)
        *qkv[i] = (asink_linear){y->qkv.w ? y->qkv.w + i * w->C : NULL, y->qkv.b + i * w->C,
                                 NULL, NULL, w->C, w->C, 3 * w->C, true,
                                 y->qkv.w16 ? y->qkv.w16 + i * w->C : NULL, y->qkv.bf16ops};
    }
}

void asink_weights_embedding(const asink_weights *w, int32_t tok, float *dst) {
  if (w->wte16) {
    const uint16_t *src = w->wte16 + (size_t)tok * w->C;
    for (int j = 0; j < w->C; j++) dst[j] = asink_bf16_to_f32(src[j]);
  } else {
    memcpy(dst, w->wte + (size_t)tok * w->C, sizeof(float) * (size_t)w->C);
  }
}

void asink_weights_refresh_copies(asink_weights *w, int nt) {
  for (int i = 0; i < w->n_params; i++) {
    const asink_param *p = &w->params[i];
    if (!p->copy16) continue;
    asink_round_bf16(p->copy16, p->data, p->numel, nt);
  }
}

asink_param *asink_weights_find(const asink_weights *w, const char *name) {
  for (int i = 0; i < w->n_params; i++)
    if (!strcmp(w->params[i].name, name)) return &w->params[i];
  return NULL;
}

/* ---------------------------------------------------------- initialisation */

static double rng_normal(asink_rng *r) {
  double u1 = ((asink_rng_next(r) >> 11) + 1.0) * 0x1.0p-53, u2 = asink_rng_uniform(r);
  return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

void asink_weights_init(asink_weights *w, uint64_t seed) {
  asink_rng r = asink_rng_seed(seed);
  for (int i = 0; i < w->n_params; i++) {
    asink_param *p = &w->params[i];
    for (size_t j = 0; j < p->numel; j++) {
      float v = p->init_std < 0.f ? 1.f : p->init_std == 0.f ? 0.f : (float)(p->init_std * rng_normal(&r));
      if (p->data16) p->data16[j] = asink_f32_to_bf16(v);
      else p->data[j] = v;
    }
  }
}

/* ------------------------------------------------------------- lifecycle */

/* The layers' attention spec: the config's, with the positions that live in the
 * attention (ALiBi, T5 relative buckets) added. */
static asink_status layer_spec(const asink_config *c, char *out, size_t n) {
  asink_spec s;
  asink_status st = asink_spec_parse(c->attn, &s);
  if (st) return st;
  snprintf(out, n, "%s%s%s", c->attn, c->pos == ASINK_POS_ALIBI && !s.alibi ? ",alibi=1" : "",
           c->pos == ASINK_POS_RELATIVE && !s.relbias ? ",relbias=t5" : "");
  return ASINK_OK;
}

/* What the neox and opt tables have rows and code for: their own architecture, with any
 * attention spec and a one-input MLP. */
static asink_status check_neox_opt(const asink_config *cfg, bool gated) {
  const char *fam = asink_family_name(cfg->family);
  asink_pos own = cfg->family == ASINK_FAMILY_NEOX ? ASINK_POS_ROPE : ASINK_POS_LEARNED;
  if (gated)
    return asink_fail(ASINK_ERR_UNSUPPORTED, "config: attnsink.ffn=%s is gated; %s models have one MLP input",
                      asink_ffn_name(cfg->ffn), fam);
  if (cfg->pos != own)
    return asink_fail(ASINK_ERR_UNSUPPORTED, "config: attnsink.positions=%s is not supported for %s (only %s)",
                      asink_pos_name(cfg->pos), fam, asink_pos_name(own));
  if (cfg->sink_token)
    return asink_fail(ASINK_ERR_UNSUPPORTED, "config: attnsink.sink_token=true is not supported for %s", fam);
  if (cfg->family == ASINK_FAMILY_NEOX && cfg->norm != ASINK_NORMPOS_PRE)
    return asink_fail(ASINK_ERR_UNSUPPORTED, "config: attnsink.norm_position=post is not supported for gpt_neox");
  if (cfg->parallel_residual && cfg->norm != ASINK_NORMPOS_PRE)
    return asink_fail(ASINK_ERR_UNSUPPORTED, "config: use_parallel_residual=true needs pre-norm blocks");
  return ASINK_OK;
}

static asink_status check_family(const asink_config *cfg, bool gated) {
  if (cfg->kernel_mlp && asink_config_layernorm(cfg))
    return asink_fail(ASINK_ERR_FORMAT, "config: attnsink.kernel=mlp is for llama-family models");
  if (cfg->family == ASINK_FAMILY_NEOX || cfg->family == ASINK_FAMILY_OPT) return check_neox_opt(cfg, gated);
  if (cfg->parallel_residual)
    return asink_fail(ASINK_ERR_UNSUPPORTED, "config: use_parallel_residual=true is for gpt_neox models");
  if (cfg->pos_offset && cfg->family != ASINK_FAMILY_OPT)
    return asink_fail(ASINK_ERR_UNSUPPORTED, "config: a position offset is for opt models");
  if (cfg->family != ASINK_FAMILY_GPT2) return ASINK_OK;
  if (gated)
    return asink_fail(ASINK_ERR_FORMAT, "config: attnsink.ffn=%s is gated; gpt2 models have one MLP input (gelu, relu, swish)",
                      asink_ffn_name(cfg->ffn));
  if (!cfg->tie_embeddings)
    return asink_fail(ASINK_ERR_FORMAT, "config: tie_word_embeddings=false: gpt2 models tie the head to wte");
  if (cfg->pos != ASINK_POS_LEARNED)
    return asink_fail(ASINK_ERR_FORMAT, "config: gpt2 models use learned positions, not attnsink.positions=%s",
                      asink_pos_name(cfg->pos));
  return ASINK_OK;
}

/* A count that saturated (add): the config's sizes together exceed what can be addressed. */
static asink_status check_count(asink_weights *w) {
  if (w->n_block != SIZE_MAX) return ASINK_OK;
  const asink_config *c = &w->cfg;
  asink_status st = asink_fail(ASINK_ERR_FORMAT, "config: num_hidden_layers=%d, hidden_size=%d, "
                               "intermediate_size=%d, vocab_size=%d give more parameters than "
                               "memory can address", c->n_layer, c->hidden, c->intermediate,
                               c->vocab_size);
  asink_weights_free(w);
  return st;
}

asink_status asink_weights_create(asink_weights **out, const asink_config *cfg, bool bf16,
                                  bool mixed) {
  *out = NULL;
  asink_status st = asink_runtime_ready();
  if (st || (st = asink_config_validate(cfg, "config"))) return st;
  bool gated = cfg->ffn == ASINK_FFN_SWIGLU || cfg->ffn == ASINK_FFN_GEGLU || cfg->ffn == ASINK_FFN_REGLU;
  if ((st = check_family(cfg, gated))) return st;
  asink_weights *w = asink_calloc(1, sizeof *w);
  if (!w) return asink_fail(ASINK_ERR_NOMEM, "cannot allocate a model");
  w->cfg = *cfg;
  w->bf16 = bf16;
  w->mixed = mixed;
  w->C = cfg->hidden, w->F = cfg->intermediate, w->L = cfg->n_layer, w->H = cfg->n_head;
  w->Hkv = cfg->n_kv_head, w->D = cfg->head_dim, w->V = cfg->vocab_size;
  w->gated = gated;
  w->act = (cfg->ffn == ASINK_FFN_SWIGLU || cfg->ffn == ASINK_FFN_SWISH) ? ASINK_ACT_SILU
           : (cfg->ffn == ASINK_FFN_GEGLU || cfg->ffn == ASINK_FFN_GELU) ? ASINK_ACT_GELU
           : cfg->ffn == ASINK_FFN_GELU_EXACT                            ? ASINK_ACT_GELU_ERF
                                                                          : ASINK_ACT_RELU;
  w->layernorm = asink_config_layernorm(cfg);
  w->qkv_per_head = cfg->family == ASINK_FAMILY_NEOX;
  w->R = asink_config_rope_dim(cfg);
  w->pos_off = cfg->pos_offset;
  declare(w); /* a first count before anything is sized from the config */
  if ((st = check_count(w))) return st;
  if (!(w->layers = asink_calloc((size_t)w->L, sizeof *w->layers))) {
    asink_weights_free(w);
    return asink_fail(ASINK_ERR_NOMEM, "cannot allocate a model");
  }
  char spec[320];
  if ((st = layer_spec(cfg, spec, sizeof spec))) {
    asink_weights_free(w);
    return asink_fail_context(st, "config: attnsink.attn");
  }
  for (int l = 0; l < w->L; l++)
    if ((st = asink_attn_create(&w->layers[l].attn, spec, w->H, w->Hkv, w->D))) {
      asink_weights_free(w);
      return asink_fail_context(st, "config: attnsink.attn");
    }
  declare(w); /* counts */
  if ((st = check_count(w))) return st;
  w->params = asink_calloc((size_t)w->n_params, sizeof *w->params);
  w->block = asink_calloc(w->n_block + 1, sizeof(float));
  /* asink_zeroed, not asink_calloc (which writes its zeros): a loader overwrites every page */
  if (bf16) w->block16 = asink_zeroed(w->n_block16 + 1, sizeof(uint16_t));
  if (w->n_copy16) w->copy16 = asink_zeroed(w->n_copy16, sizeof(uint16_t));
  if (!w->params || !w->block || (bf16 && !w->block16) || (w->n_copy16 && !w->copy16)) {
    size_t total = w->n_block + w->n_block16 + w->n_copy16;
    asink_weights_free(w);
    return asink_fail(ASINK_ERR_NOMEM, "cannot allocate %zu parameters", total);
  }
  declare(w); /* fills the registry and the views */
  *out = w;
  return ASINK_OK;
}

void asink_weights_free(asink_weights *w) {
  if (!w) return;
  if (w->layers)
    for (int l = 0; l < w->L; l++) asink_attn_free(w->layers[l].attn);
  asink_free(w->layers);
  asink_free(w->params);
  asink_free(w->block);
  asink_free(w->block16);
  asink_free(w->copy16);
  asink_ws_release(&w->rope_ws);
  asink_ws_release(&w->sinus_ws);
  asink_free(w);
}

asink_status asink_weights_tables(asink_weights *w, int Tx) {
  asink_status st;
  int len = Tx > w->cfg.max_pos ? Tx : w->cfg.max_pos;
  if (w->cfg.pos == ASINK_POS_ROPE && w->rope_len < Tx) {
    if ((st = asink_ws_reserve(&w->rope_ws, (size_t)len * w->R * sizeof(float), "RoPE table"))) return st;
    asink_rope_table(w->rope_ws.ptr, len, w->R, w->cfg.rope_theta);
    w->rope_len = len;
  }
  if (w->cfg.pos == ASINK_POS_SINUSOIDAL && w->sinus_len < Tx) {
    if ((st = asink_ws_reserve(&w->sinus_ws, (size_t)len * w->C * sizeof(float), "sinusoid table"))) return st;
    asink_sinusoid_table(w->sinus_ws.ptr, len, w->C);
    w->sinus_len = len;
  }
  return ASINK_OK;
}
