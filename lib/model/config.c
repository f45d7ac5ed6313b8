#include "model/config.h"

#include <float.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attn/spec.h"
#include "core/alloc.h"
#include "core/error.h"

/* Sizes are multiplied together by the model (vocab x hidden, 4 x n_embd, ...): a cap far
 * above any real model keeps those products clear of int overflow. */
#define MAX_SIZE (1 << 30)

static const char *const ffn_names[] = {"swiglu", "geglu", "reglu", "gelu", "relu", "swish", "gelu_exact"};
static const char *const pos_names[] = {"rope", "nope", "sinusoidal", "learned", "alibi", "relative"};
static const char *const normpos_names[] = {"pre", "post"};
/* HF's model_type of each family, in asink_family order. */
static const char *const family_names[] = {"llama", "gpt2", "gpt_neox", "opt", "qwen2", "mistral"};
static const char *const architectures[] = {"LlamaForCausalLM", "GPT2LMHeadModel", "GPTNeoXForCausalLM",
                                            "OPTForCausalLM",   "Qwen2ForCausalLM", "MistralForCausalLM"};
#define N_FFN ((int)(sizeof ffn_names / sizeof *ffn_names))
#define N_POS ((int)(sizeof pos_names / sizeof *pos_names))
#define N_NORMPOS ((int)(sizeof normpos_names / sizeof *normpos_names))
#define N_FAMILY ((int)(sizeof family_names / sizeof *family_names))

const char *asink_family_name(asink_family f) {
  return (unsigned)f < (unsigned)N_FAMILY ? family_names[f] : "unknown";
}

/* LLaMA's layout: RMSNorm, separate q/k/v projections, a gated FFN by default. */
static bool llama_layout(asink_family f) {
  return f == ASINK_FAMILY_LLAMA || f == ASINK_FAMILY_QWEN2 || f == ASINK_FAMILY_MISTRAL;
}

bool asink_config_layernorm(const asink_config *c) { return !llama_layout(c->family); }

int asink_config_rope_dim(const asink_config *c) { return c->rope_dim ? c->rope_dim : c->head_dim; }

const char *asink_ffn_name(asink_ffn f) {
  return (unsigned)f < (unsigned)N_FFN ? ffn_names[f] : "unknown";
}

const char *asink_pos_name(asink_pos p) {
  return (unsigned)p < (unsigned)N_POS ? pos_names[p] : "unknown";
}

static int lookup(const char *v, const char *const *names, int n) {
  for (int i = 0; i < n; i++)
    if (!strcmp(v, names[i])) return i;
  return -1;
}

/* Messages use the family's own key names so the user can find the line in config.json. */
typedef struct {
  const char *vocab, *hidden, *inter, *layers, *heads, *kv, *max_pos, *eps;
} key_names;

static const key_names llama_keys = {"vocab_size",          "hidden_size",
                                     "intermediate_size",   "num_hidden_layers",
                                     "num_attention_heads", "num_key_value_heads",
                                     "max_position_embeddings", "rms_norm_eps"};
static const key_names gpt2_keys = {"vocab_size", "n_embd", "n_inner",     "n_layer",
                                    "n_head",     "n_head", "n_positions", "layer_norm_epsilon"};
static const key_names neox_keys = {"vocab_size",          "hidden_size",
                                    "intermediate_size",   "num_hidden_layers",
                                    "num_attention_heads", "num_attention_heads",
                                    "max_position_embeddings", "layer_norm_eps"};
/* OPT has no epsilon key (nn.LayerNorm's 1e-5); the name is for messages on configs built in code. */
static const key_names opt_keys = {"vocab_size",          "hidden_size",
                                   "ffn_dim",             "num_hidden_layers",
                                   "num_attention_heads", "num_attention_heads",
                                   "max_position_embeddings", "layer_norm_eps"};

static const key_names *keys_of(asink_family f) {
  switch (f) {
  case ASINK_FAMILY_GPT2: return &gpt2_keys;
  case ASINK_FAMILY_NEOX: return &neox_keys;
  case ASINK_FAMILY_OPT: return &opt_keys;
  default: return &llama_keys;
  }
}

/* ---- validation (shared by the parser and structs built in code) -------------- */

static asink_status check_size(const char *src, const char *key, int v) {
  if (v < 1 || v > MAX_SIZE)
    return asink_fail(ASINK_ERR_FORMAT, "%s: %s=%d must be in 1..%d", src, key, v, MAX_SIZE);
  return ASINK_OK;
}

static asink_status check_positive(const char *src, const char *key, float v) {
  if (!(v > 0.f) || !isfinite(v))
    return asink_fail(ASINK_ERR_FORMAT, "%s: %s=%.9g must be a positive finite number", src, key,
                      (double)v);
  return ASINK_OK;
}

asink_status asink_config_validate(const asink_config *c, const char *source) {
  const char *src = source ? source : "config";
  if (!c) return asink_fail(ASINK_ERR_ARG, "%s: config is NULL", src);
  if ((unsigned)c->family >= (unsigned)N_FAMILY)
    return asink_fail(ASINK_ERR_FORMAT, "%s: family=%d is not a known family", src, (int)c->family);
  const bool fused_kv = !llama_layout(c->family);
  const key_names *k = keys_of(c->family);
  asink_status s;
  if ((s = check_size(src, k->vocab, c->vocab_size)) || (s = check_size(src, k->hidden, c->hidden)) ||
      (s = check_size(src, k->inter, c->intermediate)) || (s = check_size(src, k->layers, c->n_layer)) ||
      (s = check_size(src, k->heads, c->n_head)) ||
      (s = check_size(src, fused_kv ? "n_kv_head" : k->kv, c->n_kv_head)) ||
      (s = check_size(src, k->max_pos, c->max_pos)))
    return s;
  if (c->hidden % c->n_head)
    return asink_fail(ASINK_ERR_FORMAT, "%s: %s=%d is not divisible by %s=%d", src, k->hidden,
                      c->hidden, k->heads, c->n_head);
  if (c->head_dim != c->hidden / c->n_head)
    return asink_fail(ASINK_ERR_FORMAT, "%s: head_dim=%d must equal %s/%s=%d", src, c->head_dim,
                      k->hidden, k->heads, c->hidden / c->n_head);
  /* GPT-2's and NeoX's fused q/k/v (and OPT's projections) have as many key heads as query heads. */
  if (fused_kv && c->n_kv_head != c->n_head)
    return asink_fail(ASINK_ERR_FORMAT, "%s: n_kv_head=%d must equal %s=%d for %s", src,
                      c->n_kv_head, k->heads, c->n_head, asink_family_name(c->family));
  if (c->n_head % c->n_kv_head)
    return asink_fail(ASINK_ERR_FORMAT, "%s: %s=%d is not a multiple of %s=%d", src, k->heads,
                      c->n_head, k->kv, c->n_kv_head);
  if ((s = check_positive(src, k->eps, c->norm_eps)) || (s = check_positive(src, "rope_theta", c->rope_theta)))
    return s;
  if ((unsigned)c->ffn >= (unsigned)N_FFN)
    return asink_fail(ASINK_ERR_FORMAT, "%s: attnsink.ffn=%d is not a known FFN kind", src, (int)c->ffn);
  if ((unsigned)c->norm >= (unsigned)N_NORMPOS)
    return asink_fail(ASINK_ERR_FORMAT, "%s: attnsink.norm_position=%d is neither pre nor post", src,
                      (int)c->norm);
  if ((unsigned)c->pos >= (unsigned)N_POS)
    return asink_fail(ASINK_ERR_FORMAT, "%s: attnsink.positions=%d is not a known kind", src, (int)c->pos);
  /* rotate-half pairs dimension i with i + head_dim/2. */
  if (c->pos == ASINK_POS_ROPE && c->head_dim % 2)
    return asink_fail(ASINK_ERR_FORMAT, "%s: head_dim=%d must be even for attnsink.positions=rope",
                      src, c->head_dim);
  if (c->rope_dim && (c->rope_dim < 2 || c->rope_dim > c->head_dim || c->rope_dim % 2))
    return asink_fail(ASINK_ERR_FORMAT,
                      "%s: rotary dims=%d (rotary_pct x head_dim) must be even and in 2..head_dim=%d",
                      src, c->rope_dim, c->head_dim);
  if (c->pos_offset < 0 || c->pos_offset > 1024 ||
      (c->pos_offset && c->max_pos > MAX_SIZE - c->pos_offset))
    return asink_fail(ASINK_ERR_FORMAT, "%s: position offset=%d must be in 0..1024", src, c->pos_offset);
  if (!memchr(c->attn, 0, sizeof c->attn))
    return asink_fail(ASINK_ERR_FORMAT, "%s: attnsink.attn is not terminated within %zu characters",
                      src, sizeof c->attn - 1);
  asink_spec spec;
  if (asink_spec_parse(c->attn, &spec)) {
    char ctx[160];
    snprintf(ctx, sizeof ctx, "%s: attnsink.attn", src);
    return asink_fail_context(ASINK_ERR_FORMAT, ctx);
  }
  /* The study's MLP feature map replaces the identity map of the linear kernel. */
  if (c->kernel_mlp && spec.base != ASINK_BASE_LINEAR)
    return asink_fail(ASINK_ERR_FORMAT,
                      "%s: attnsink.kernel=\"mlp\" needs attention base linear, not %s "
                      "(attnsink.attn=\"%s\")",
                      src, asink_base_name(spec.base), c->attn);
  if (c->bos < -1 || c->bos >= c->vocab_size)
    return asink_fail(ASINK_ERR_FORMAT, "%s: attnsink.bos=%d must be in 0..%d (or absent)", src,
                      c->bos, c->vocab_size - 1);
  return ASINK_OK;
}

/* ---- parsing ------------------------------------------------------------------ */

/* A JSON value as it appears in the file, shortened: messages must name the bad value. */
static const char *shown(const json_t *v, char *buf, size_t n) {
  /* 15 digits print any short decimal literal as it was typed (1e-05, not 1.0000000000000001e-05). */
  char *text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT | JSON_REAL_PRECISION(15));
  if (!text) {
    snprintf(buf, n, "?");
    return buf;
  }
  if (strlen(text) >= n && n > 4)
    snprintf(buf, n, "%.*s...", (int)(n - 4), text);
  else
    snprintf(buf, n, "%s", text);
  free(text);
  return buf;
}

typedef struct {
  const char *src;
  json_t *obj;
  const char *prefix; /* "" at the top level, "attnsink." inside it */
} scope;

/* Absent and null are the same: HF writes None for "use the default". */
static json_t *get(const scope *sc, const char *key) {
  json_t *v = json_object_get(sc->obj, key);
  return json_is_null(v) ? NULL : v;
}

static asink_status missing(const scope *sc, const char *key) {
  return asink_fail(ASINK_ERR_FORMAT, "%s: %s%s is missing (required)", sc->src, sc->prefix, key);
}

static asink_status bad(const scope *sc, const char *key, const json_t *v, const char *what) {
  char buf[80];
  return asink_fail(ASINK_ERR_FORMAT, "%s: %s%s=%s %s", sc->src, sc->prefix, key,
                    shown(v, buf, sizeof buf), what);
}

/* Integers in [lo, hi]; an integral real (768.0, as some writers emit) is accepted too. */
static asink_status get_int(const scope *sc, const char *key, bool required, long lo, long hi,
                            int *out, bool *present) {
  json_t *v = get(sc, key);
  if (present) *present = v != NULL;
  if (!v) return required ? missing(sc, key) : ASINK_OK;
  double x;
  if (json_is_integer(v))
    x = (double)json_integer_value(v);
  else if (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)))
    x = json_real_value(v);
  else
    return bad(sc, key, v, "must be an integer");
  if (x < (double)lo || x > (double)hi) {
    char what[64];
    if (lo == 1)
      snprintf(what, sizeof what, "must be positive (at most %ld)", hi);
    else
      snprintf(what, sizeof what, "must be in %ld..%ld", lo, hi);
    return bad(sc, key, v, what);
  }
  *out = (int)x;
  return ASINK_OK;
}

static asink_status get_size(const scope *sc, const char *key, bool required, int *out, bool *present) {
  return get_int(sc, key, required, 1, MAX_SIZE, out, present);
}

/* Doubles from here up round to float infinity (FLT_MAX plus half an ulp). */
#define FLOAT_LIMIT 0x1.ffffffp127

/* Positive finite float; the test is on the float, so 1e-50 (0 as float) is refused too. */
static asink_status get_pos_float(const scope *sc, const char *key, float *out) {
  json_t *v = get(sc, key);
  if (!v) return ASINK_OK;
  if (!json_is_number(v)) return bad(sc, key, v, "must be a number");
  double d = json_number_value(v);
  /* Range first: converting a double beyond FLT_MAX to float is undefined behaviour. */
  if (!(d > 0.0) || d >= FLOAT_LIMIT || !((float)d > 0.f))
    return bad(sc, key, v, "must be a positive finite number (as float32)");
  *out = (float)d;
  return ASINK_OK;
}

static asink_status get_bool(const scope *sc, const char *key, bool *out) {
  json_t *v = get(sc, key);
  if (!v) return ASINK_OK;
  if (!json_is_boolean(v)) return bad(sc, key, v, "must be true or false");
  *out = json_is_true(v);
  return ASINK_OK;
}

static asink_status get_enum(const scope *sc, const char *key, const char *const *names, int n,
                             int *out, bool *present) {
  json_t *v = get(sc, key);
  if (present) *present = v != NULL;
  if (!v) return ASINK_OK;
  int i = json_is_string(v) ? lookup(json_string_value(v), names, n) : -1;
  if (i < 0) {
    char what[160];
    int len = snprintf(what, sizeof what, "must be one of");
    for (int j = 0; j < n; j++) len += snprintf(what + len, sizeof what - len, " %s", names[j]);
    return bad(sc, key, v, what);
  }
  *out = i;
  return ASINK_OK;
}

/* Keys HF has that would change what the model computes: refuse them rather than load a
 * model that silently differs from the one the file describes. */
static asink_status require_absent_or(const scope *sc, const char *key, const char *allowed_json) {
  json_t *v = get(sc, key);
  if (!v) return ASINK_OK;
  json_t *ok = json_loads(allowed_json, JSON_DECODE_ANY, NULL);
  bool same = ok && json_equal(v, ok);
  json_decref(ok);
  if (same) return ASINK_OK;
  char what[96];
  snprintf(what, sizeof what, "is not supported (only %s)", allowed_json);
  return bad(sc, key, v, what);
}

static asink_status detect_family(const scope *sc, asink_family *f) {
  json_t *mt = get(sc, "model_type");
  if (mt) {
    const char *t = json_is_string(mt) ? json_string_value(mt) : NULL;
    int i = t ? lookup(t, family_names, N_FAMILY) : -1;
    if (i < 0)
      return bad(sc, "model_type", mt,
                 "is not supported (llama, mistral, qwen2, gpt2, gpt_neox or opt)");
    *f = (asink_family)i;
    return ASINK_OK;
  }
  bool gpt2 = json_object_get(sc->obj, "n_embd"), llama = json_object_get(sc->obj, "hidden_size");
  if (gpt2 == llama)
    return asink_fail(ASINK_ERR_FORMAT,
                      "%s: model_type is missing and the keys do not tell the family (%s)", sc->src,
                      gpt2 ? "both n_embd and hidden_size are present" : "neither n_embd nor hidden_size");
  *f = gpt2 ? ASINK_FAMILY_GPT2 : ASINK_FAMILY_LLAMA;
  return ASINK_OK;
}

static asink_status parse_llama(const scope *sc, asink_config *c, bool ffn_given) {
  asink_status s;
  bool has_kv, has_hd;
  int head_dim = 0;
  if ((s = get_size(sc, "hidden_size", true, &c->hidden, NULL)) ||
      (s = get_size(sc, "intermediate_size", true, &c->intermediate, NULL)) ||
      (s = get_size(sc, "num_hidden_layers", true, &c->n_layer, NULL)) ||
      (s = get_size(sc, "num_attention_heads", true, &c->n_head, NULL)) ||
      (s = get_size(sc, "num_key_value_heads", false, &c->n_kv_head, &has_kv)) ||
      (s = get_size(sc, "head_dim", false, &head_dim, &has_hd)) ||
      (s = get_pos_float(sc, "rms_norm_eps", &c->norm_eps)) ||
      (s = get_pos_float(sc, "rope_theta", &c->rope_theta)) ||
      (s = get_size(sc, "max_position_embeddings", true, &c->max_pos, NULL)) ||
      (s = get_size(sc, "vocab_size", true, &c->vocab_size, NULL)) ||
      (s = get_bool(sc, "tie_word_embeddings", &c->tie_embeddings)))
    return s;
  if (!has_kv) c->n_kv_head = c->n_head;
  if (has_hd && head_dim != c->hidden / c->n_head)
    return asink_fail(ASINK_ERR_FORMAT, "%s: head_dim=%d must equal hidden_size/num_attention_heads=%d/%d",
                      sc->src, head_dim, c->hidden, c->n_head);
  if ((s = require_absent_or(sc, "rope_scaling", "null"))) return s;
  if (c->family == ASINK_FAMILY_QWEN2) {
    /* Qwen2 always has q/k/v biases; its window (use_sliding_window) covers only the
     * layers from max_window_layers on, which one spec for every layer cannot say. */
    c->qkv_bias = true;
    if ((s = require_absent_or(sc, "use_sliding_window", "false"))) return s;
  } else {
    bool attn_bias = false;
    if ((s = get_bool(sc, "attention_bias", &attn_bias)) || (s = get_bool(sc, "mlp_bias", &c->mlp_bias)))
      return s;
    c->qkv_bias = c->o_bias = attn_bias;
  }
  /* "attnsink".ffn, when given, is the authority; otherwise hidden_act must be SwiGLU's. */
  json_t *act = get(sc, "hidden_act");
  if (!ffn_given && act &&
      !(json_is_string(act) && (!strcmp(json_string_value(act), "silu") ||
                                !strcmp(json_string_value(act), "swish"))))
    return bad(sc, "hidden_act", act, "is not supported (silu, or choose attnsink.ffn)");
  return ASINK_OK;
}

/* The activation of a one-input MLP (gpt2, neox, opt) from its HF key; HF's "gelu" is the
 * erf form. */
static asink_status plain_activation(const scope *sc, const char *key, bool ffn_given, asink_config *c) {
  json_t *act = get(sc, key);
  if (ffn_given || !act) return ASINK_OK;
  /* HF's tanh-GELU spellings all compute the same function; relu and silu are plain MLPs. */
  static const char *const gelu[] = {"gelu_new", "gelu_pytorch_tanh", "gelu_fast"};
  const char *a = json_is_string(act) ? json_string_value(act) : "";
  if (lookup(a, gelu, 3) >= 0)
    c->ffn = ASINK_FFN_GELU;
  else if (!strcmp(a, "gelu"))
    c->ffn = ASINK_FFN_GELU_EXACT;
  else if (!strcmp(a, "relu"))
    c->ffn = ASINK_FFN_RELU;
  else if (!strcmp(a, "silu") || !strcmp(a, "swish"))
    c->ffn = ASINK_FFN_SWISH;
  else
    return bad(sc, key, act,
               "is not supported (gelu, gelu_new, gelu_pytorch_tanh, gelu_fast, relu, silu, or choose "
               "attnsink.ffn)");
  return ASINK_OK;
}

/* GPT-NeoX's rotary fraction: rotary_pct (partial_rotary_factor in newer writers). */
static asink_status parse_rotary(const scope *sc, asink_config *c) {
  double pct = 0.25;
  const char *key = "rotary_pct";
  json_t *v = get(sc, key);
  if (!v) v = get(sc, key = "partial_rotary_factor");
  if (v) {
    if (!json_is_number(v) || !(json_number_value(v) > 0.0) || json_number_value(v) > 1.0)
      return bad(sc, key, v, "must be a number in (0, 1]");
    pct = json_number_value(v);
  }
  if (c->hidden % c->n_head) return ASINK_OK; /* validation names the real problem */
  /* as HF: int(head_size * rotary_pct) */
  c->rope_dim = (int)((double)(c->hidden / c->n_head) * pct);
  if (c->rope_dim < 2 || c->rope_dim % 2) {
    char what[96];
    snprintf(what, sizeof what, "gives %d rotary dims of head_dim=%d; they must be even and >= 2",
             c->rope_dim, c->hidden / c->n_head);
    return bad(sc, key, v, what);
  }
  return ASINK_OK;
}

static asink_status parse_neox(const scope *sc, asink_config *c, bool ffn_given) {
  asink_status s;
  bool attn_bias = true;
  if ((s = get_size(sc, "hidden_size", true, &c->hidden, NULL)) ||
      (s = get_size(sc, "intermediate_size", true, &c->intermediate, NULL)) ||
      (s = get_size(sc, "num_hidden_layers", true, &c->n_layer, NULL)) ||
      (s = get_size(sc, "num_attention_heads", true, &c->n_head, NULL)) ||
      (s = get_pos_float(sc, "layer_norm_eps", &c->norm_eps)) ||
      (s = get_pos_float(sc, "rotary_emb_base", &c->rope_theta)) ||
      (s = get_pos_float(sc, "rope_theta", &c->rope_theta)) ||
      (s = get_size(sc, "max_position_embeddings", true, &c->max_pos, NULL)) ||
      (s = get_size(sc, "vocab_size", true, &c->vocab_size, NULL)) ||
      (s = get_bool(sc, "tie_word_embeddings", &c->tie_embeddings)) ||
      (s = get_bool(sc, "use_parallel_residual", &c->parallel_residual)) ||
      (s = get_bool(sc, "attention_bias", &attn_bias)) || (s = parse_rotary(sc, c)) ||
      (s = require_absent_or(sc, "rope_scaling", "null")))
    return s;
  c->n_kv_head = c->n_head;
  c->qkv_bias = c->o_bias = attn_bias;
  c->mlp_bias = true;
  return plain_activation(sc, "hidden_act", ffn_given, c);
}

static asink_status parse_opt(const scope *sc, asink_config *c, bool ffn_given) {
  asink_status s;
  bool pre = true, bias = true;
  int proj = 0;
  bool has_proj;
  if ((s = get_size(sc, "hidden_size", true, &c->hidden, NULL)) ||
      (s = get_size(sc, "ffn_dim", true, &c->intermediate, NULL)) ||
      (s = get_size(sc, "num_hidden_layers", true, &c->n_layer, NULL)) ||
      (s = get_size(sc, "num_attention_heads", true, &c->n_head, NULL)) ||
      (s = get_size(sc, "max_position_embeddings", true, &c->max_pos, NULL)) ||
      (s = get_size(sc, "vocab_size", true, &c->vocab_size, NULL)) ||
      (s = get_size(sc, "word_embed_proj_dim", false, &proj, &has_proj)) ||
      (s = get_bool(sc, "tie_word_embeddings", &c->tie_embeddings)) ||
      (s = get_bool(sc, "do_layer_norm_before", &pre)) || (s = get_bool(sc, "enable_bias", &bias)) ||
      (s = require_absent_or(sc, "_remove_final_layer_norm", "false")) ||
      (s = require_absent_or(sc, "layer_norm_elementwise_affine", "true")))
    return s;
  /* A smaller embedding (opt-350m) needs project_in/project_out, which the library has not. */
  if (has_proj && proj != c->hidden)
    return asink_fail(ASINK_ERR_UNSUPPORTED,
                      "%s: word_embed_proj_dim=%d is not supported (only equal to hidden_size=%d)",
                      sc->src, proj, c->hidden);
  c->n_kv_head = c->n_head;
  c->norm = pre ? ASINK_NORMPOS_PRE : ASINK_NORMPOS_POST;
  c->qkv_bias = c->o_bias = c->mlp_bias = bias;
  c->pos_offset = 2; /* OPTLearnedPositionalEmbedding */
  return plain_activation(sc, "activation_function", ffn_given, c);
}

static asink_status parse_gpt2(const scope *sc, asink_config *c, bool ffn_given) {
  asink_status s;
  bool has_pos, has_inner;
  if ((s = get_size(sc, "n_embd", true, &c->hidden, NULL)) ||
      (s = get_size(sc, "n_layer", true, &c->n_layer, NULL)) ||
      (s = get_size(sc, "n_head", true, &c->n_head, NULL)) ||
      (s = get_size(sc, "n_positions", false, &c->max_pos, &has_pos)))
    return s;
  /* HF's GPT2Config reads n_positions only; n_ctx is the older name, used as a fallback. */
  if (!has_pos && (s = get_size(sc, "n_ctx", false, &c->max_pos, &has_pos))) return s;
  if (!has_pos) return missing(sc, "n_positions");
  if ((s = get_size(sc, "n_inner", false, &c->intermediate, &has_inner)) ||
      (s = get_pos_float(sc, "layer_norm_epsilon", &c->norm_eps)) ||
      (s = get_pos_float(sc, "rope_theta", &c->rope_theta)) ||
      (s = get_size(sc, "vocab_size", true, &c->vocab_size, NULL)) ||
      (s = get_bool(sc, "tie_word_embeddings", &c->tie_embeddings)))
    return s;
  if (!has_inner) {
    if (c->hidden > MAX_SIZE / 4)
      return asink_fail(ASINK_ERR_FORMAT, "%s: n_embd=%d is too large for n_inner=4*n_embd", sc->src,
                        c->hidden);
    c->intermediate = 4 * c->hidden;
  }
  c->n_kv_head = c->n_head;
  if ((s = require_absent_or(sc, "scale_attn_weights", "true")) ||
      (s = require_absent_or(sc, "scale_attn_by_inverse_layer_idx", "false")))
    return s;
  return plain_activation(sc, "activation_function", ffn_given, c);
}

static const char *const attnsink_keys[] = {"attn",      "ffn",        "norm_position", "positions",
                                            "kernel",    "sink_token", "bos"};
#define N_ATTNSINK_KEYS ((int)(sizeof attnsink_keys / sizeof *attnsink_keys))

/* First pass over "attnsink": its shape and its keys, before the family keys are read
 * (ffn decides whether hidden_act / activation_function matter). */
static asink_status check_attnsink(const scope *top, json_t **as) {
  *as = get(top, "attnsink");
  if (!*as) return ASINK_OK;
  if (!json_is_object(*as)) return bad(top, "attnsink", *as, "must be an object");
  const char *key;
  json_t *v;
  json_object_foreach(*as, key, v) {
    if (lookup(key, attnsink_keys, N_ATTNSINK_KEYS) < 0)
      return asink_fail(ASINK_ERR_FORMAT,
                        "%s: attnsink.%.100s is not a known key (attn ffn norm_position positions "
                        "kernel sink_token bos)",
                        top->src, key);
  }
  return ASINK_OK;
}

static asink_status parse_attnsink(const scope *sc, asink_config *c, bool *attn_given) {
  asink_status s;
  int i = 0;
  bool present;
  json_t *v = get(sc, "attn");
  *attn_given = v != NULL;
  if (v) {
    if (!json_is_string(v)) return bad(sc, "attn", v, "must be a spec string");
    if (strlen(json_string_value(v)) >= sizeof c->attn) {
      char what[64];
      snprintf(what, sizeof what, "is longer than %zu characters", sizeof c->attn - 1);
      return bad(sc, "attn", v, what);
    }
    strcpy(c->attn, json_string_value(v));
  }
  if ((s = get_enum(sc, "ffn", ffn_names, N_FFN, &i, &present))) return s;
  if (present) c->ffn = (asink_ffn)i;
  if ((s = get_enum(sc, "norm_position", normpos_names, N_NORMPOS, &i, &present))) return s;
  if (present) c->norm = (asink_normpos)i;
  if ((s = get_enum(sc, "positions", pos_names, N_POS, &i, &present))) return s;
  if (present) c->pos = (asink_pos)i;
  /* "mlp" is the only feature map; null (as to_json writes) means none. */
  static const char *const kernels[] = {"mlp"};
  if ((s = get_enum(sc, "kernel", kernels, 1, &i, &present))) return s;
  c->kernel_mlp = present;
  if ((s = get_bool(sc, "sink_token", &c->sink_token))) return s;
  /* -1 is accepted as "none" so a config dict read back from Python can be passed in again. */
  if ((s = get_int(sc, "bos", false, -1, (long)c->vocab_size - 1, &c->bos, NULL))) return s;
  return ASINK_OK;
}

/* Mistral's sliding_window is the spec's window option; an explicit spec must agree. */
static asink_status apply_sliding_window(const scope *sc, asink_config *c, bool attn_given) {
  int w;
  bool present;
  asink_status s = get_size(sc, "sliding_window", false, &w, &present);
  if (s || !present) return s;
  if (!attn_given) {
    snprintf(c->attn, sizeof c->attn, "softmax,window=%d", w);
    return ASINK_OK;
  }
  asink_spec spec;
  if (asink_spec_parse(c->attn, &spec)) return ASINK_OK; /* validate reports it */
  if (spec.window != w)
    return asink_fail(ASINK_ERR_FORMAT,
                      "%s: sliding_window=%d disagrees with attnsink.attn=\"%s\" (window=%d)", sc->src,
                      w, c->attn, spec.window);
  return ASINK_OK;
}

asink_status asink_config_parse(const char *json, const char *source, asink_config *c) {
  const char *src = source ? source : "config.json";
  if (!json || !c) return asink_fail(ASINK_ERR_ARG, "%s: %s is NULL", src, json ? "config" : "text");
  json_error_t jerr;
  json_t *root = json_loads(json, JSON_REJECT_DUPLICATES, &jerr);
  if (!root)
    return asink_fail(ASINK_ERR_FORMAT, "%s: invalid JSON at line %d column %d: %s", src, jerr.line,
                      jerr.column, jerr.text);
  asink_status s;
  scope top = {src, root, ""};
  asink_config out;
  asink_family family = ASINK_FAMILY_LLAMA;
  json_t *as;
  if (!json_is_object(root)) {
    s = asink_fail(ASINK_ERR_FORMAT, "%s: the top level is not a JSON object", src);
    goto done;
  }
  if ((s = detect_family(&top, &family)) || (s = check_attnsink(&top, &as))) goto done;
  /* each family's own defaults, as HF's config classes have them */
  bool llama = llama_layout(family), neox = family == ASINK_FAMILY_NEOX;
  bool opt = family == ASINK_FAMILY_OPT;
  out = (asink_config){
      .family = family,
      .norm_eps = llama ? 1e-6f : 1e-5f,
      .rope_theta = 10000.f,
      .tie_embeddings = !llama && !neox,
      .attn = "softmax",
      .ffn = llama ? ASINK_FFN_SWIGLU : neox ? ASINK_FFN_GELU_EXACT : opt ? ASINK_FFN_RELU : ASINK_FFN_GELU,
      .norm = ASINK_NORMPOS_PRE,
      .pos = llama || neox ? ASINK_POS_ROPE : ASINK_POS_LEARNED,
      .bos = -1,
      .parallel_residual = neox,
  };
  bool ffn_given = as && json_object_get(as, "ffn") && !json_is_null(json_object_get(as, "ffn"));
  s = llama  ? parse_llama(&top, &out, ffn_given)
      : neox ? parse_neox(&top, &out, ffn_given)
      : opt  ? parse_opt(&top, &out, ffn_given)
             : parse_gpt2(&top, &out, ffn_given);
  if (s) goto done;
  out.head_dim = out.hidden / out.n_head;
  bool attn_given = false;
  if (as) {
    scope in = {src, as, "attnsink."};
    if ((s = parse_attnsink(&in, &out, &attn_given))) goto done;
  }
  if ((family == ASINK_FAMILY_LLAMA || family == ASINK_FAMILY_MISTRAL) &&
      (s = apply_sliding_window(&top, &out, attn_given)))
    goto done;
  if ((s = asink_config_validate(&out, src))) goto done;
  *c = out;
done:
  json_decref(root);
  return s;
}

/* ---- writing ------------------------------------------------------------------ */

/* The shortest decimal that reads back as the same float ("1e-05", not 9.99999975e-06);
 * dumped with 9 significant digits it prints as exactly that decimal. */
static double short_decimal(float f) {
  char buf[32];
  for (int p = 1; p < 9; p++) {
    snprintf(buf, sizeof buf, "%.*g", p, (double)f);
    double d = strtod(buf, NULL);
    if (fabs(d) < FLOAT_LIMIT && (float)d == f) return d;
  }
  return (double)f;
}

static int set_new(json_t *obj, const char *key, json_t *v) { return json_object_set_new(obj, key, v); }

/* A rotary_pct that HF's int(head_dim * pct) turns back into rope_dim: the shortest decimal
 * near (rope_dim + 1/4) / head_dim, away from the integer boundaries. */
static double rotary_pct(int rope_dim, int head_dim) {
  double x = (rope_dim + 0.25) / head_dim;
  char buf[32];
  for (int p = 1; p < 9; p++) {
    snprintf(buf, sizeof buf, "%.*g", p, x);
    double d = strtod(buf, NULL);
    if ((int)(head_dim * d) == rope_dim && d <= 1.0) return d;
  }
  return x;
}

/* The one-input MLP's activation in HF's spelling, NULL for the gated kinds. */
static const char *plain_act_name(asink_ffn f) {
  switch (f) {
  case ASINK_FFN_GELU: return "gelu_new";
  case ASINK_FFN_GELU_EXACT: return "gelu";
  case ASINK_FFN_RELU: return "relu";
  case ASINK_FFN_SWISH: return "silu";
  default: return NULL;
  }
}

static int write_llama_keys(json_t *root, const asink_config *c) {
  int err = 0;
  err |= set_new(root, "hidden_size", json_integer(c->hidden));
  err |= set_new(root, "intermediate_size", json_integer(c->intermediate));
  err |= set_new(root, "num_hidden_layers", json_integer(c->n_layer));
  err |= set_new(root, "num_attention_heads", json_integer(c->n_head));
  err |= set_new(root, "num_key_value_heads", json_integer(c->n_kv_head));
  err |= set_new(root, "head_dim", json_integer(c->head_dim));
  err |= set_new(root, "max_position_embeddings", json_integer(c->max_pos));
  err |= set_new(root, "rms_norm_eps", json_real(short_decimal(c->norm_eps)));
  err |= set_new(root, "rope_theta", json_real(short_decimal(c->rope_theta)));
  /* HF's LlamaForCausalLM can only run the SwiGLU case. */
  if (c->ffn == ASINK_FFN_SWIGLU) err |= set_new(root, "hidden_act", json_string("silu"));
  if (c->family == ASINK_FAMILY_LLAMA) {
    err |= set_new(root, "attention_bias", json_boolean(c->qkv_bias));
    err |= set_new(root, "mlp_bias", json_boolean(c->mlp_bias));
  } else if (c->family == ASINK_FAMILY_QWEN2) {
    err |= set_new(root, "use_sliding_window", json_false());
  } else { /* mistral */
    asink_spec sp;
    int w = asink_spec_parse(c->attn, &sp) == ASINK_OK ? sp.window : 0;
    err |= set_new(root, "sliding_window", w > 0 ? json_integer(w) : json_null());
  }
  return err;
}

static int write_neox_keys(json_t *root, const asink_config *c) {
  int err = 0;
  err |= set_new(root, "hidden_size", json_integer(c->hidden));
  err |= set_new(root, "intermediate_size", json_integer(c->intermediate));
  err |= set_new(root, "num_hidden_layers", json_integer(c->n_layer));
  err |= set_new(root, "num_attention_heads", json_integer(c->n_head));
  err |= set_new(root, "max_position_embeddings", json_integer(c->max_pos));
  err |= set_new(root, "layer_norm_eps", json_real(short_decimal(c->norm_eps)));
  err |= set_new(root, "rotary_pct", json_real(rotary_pct(asink_config_rope_dim(c), c->head_dim)));
  err |= set_new(root, "rotary_emb_base", json_real(short_decimal(c->rope_theta)));
  err |= set_new(root, "use_parallel_residual", json_boolean(c->parallel_residual));
  err |= set_new(root, "attention_bias", json_boolean(c->qkv_bias));
  const char *act = plain_act_name(c->ffn);
  if (act) err |= set_new(root, "hidden_act", json_string(act));
  return err;
}

static int write_opt_keys(json_t *root, const asink_config *c) {
  int err = 0;
  err |= set_new(root, "hidden_size", json_integer(c->hidden));
  err |= set_new(root, "word_embed_proj_dim", json_integer(c->hidden));
  err |= set_new(root, "ffn_dim", json_integer(c->intermediate));
  err |= set_new(root, "num_hidden_layers", json_integer(c->n_layer));
  err |= set_new(root, "num_attention_heads", json_integer(c->n_head));
  err |= set_new(root, "max_position_embeddings", json_integer(c->max_pos));
  err |= set_new(root, "do_layer_norm_before", json_boolean(c->norm == ASINK_NORMPOS_PRE));
  err |= set_new(root, "enable_bias", json_boolean(c->qkv_bias));
  const char *act = plain_act_name(c->ffn);
  if (act) err |= set_new(root, "activation_function", json_string(act));
  return err;
}

char *asink_config_to_json(const asink_config *c) {
  if (!c) return NULL;
  bool llama = llama_layout(c->family);
  json_t *root = json_object(), *arch = json_array(), *as = json_object();
  int err = !root || !arch || !as;
  if (err) {
    json_decref(root);
    json_decref(arch);
    json_decref(as);
    return NULL;
  }
  const int fam = (unsigned)c->family < (unsigned)N_FAMILY ? (int)c->family : 0;
  err |= json_array_append_new(arch, json_string(architectures[fam]));
  err |= set_new(root, "architectures", arch);
  err |= set_new(root, "model_type", json_string(family_names[fam]));
  err |= set_new(root, "vocab_size", json_integer(c->vocab_size));
  if (llama) {
    err |= write_llama_keys(root, c);
  } else if (c->family == ASINK_FAMILY_NEOX) {
    err |= write_neox_keys(root, c);
  } else if (c->family == ASINK_FAMILY_OPT) {
    err |= write_opt_keys(root, c);
  } else {
    err |= set_new(root, "n_embd", json_integer(c->hidden));
    err |= set_new(root, "n_inner", json_integer(c->intermediate));
    err |= set_new(root, "n_layer", json_integer(c->n_layer));
    err |= set_new(root, "n_head", json_integer(c->n_head));
    err |= set_new(root, "n_positions", json_integer(c->max_pos));
    err |= set_new(root, "n_ctx", json_integer(c->max_pos));
    err |= set_new(root, "layer_norm_epsilon", json_real(short_decimal(c->norm_eps)));
    /* Not an HF GPT-2 key, but a gpt2 with rope positions needs it to round-trip. */
    err |= set_new(root, "rope_theta", json_real(short_decimal(c->rope_theta)));
    const char *act = plain_act_name(c->ffn);
    if (act) err |= set_new(root, "activation_function", json_string(act));
  }
  err |= set_new(root, "tie_word_embeddings", json_boolean(c->tie_embeddings));
  err |= set_new(root, "torch_dtype", json_string("float32"));
  char attn[sizeof c->attn];
  snprintf(attn, sizeof attn, "%.*s", (int)strnlen(c->attn, sizeof c->attn), c->attn);
  err |= set_new(as, "attn", json_string(attn));
  err |= set_new(as, "ffn", json_string(asink_ffn_name(c->ffn)));
  err |= set_new(as, "norm_position",
                 json_string((unsigned)c->norm < (unsigned)N_NORMPOS ? normpos_names[c->norm] : "unknown"));
  err |= set_new(as, "positions", json_string(asink_pos_name(c->pos)));
  err |= set_new(as, "kernel", c->kernel_mlp ? json_string("mlp") : json_null());
  err |= set_new(as, "sink_token", json_boolean(c->sink_token));
  err |= set_new(as, "bos", c->bos >= 0 ? json_integer(c->bos) : json_null());
  err |= set_new(root, "attnsink", as);
  char *text = err ? NULL : json_dumps(root, JSON_INDENT(2) | JSON_REAL_PRECISION(9));
  json_decref(root);
  if (!text) return NULL;
  /* A text file ends with a newline. */
  size_t n = strlen(text);
  char *out = asink_realloc(text, n + 2, 1);
  if (!out) {
    free(text);
    return NULL;
  }
  out[n] = '\n';
  out[n + 1] = 0;
  return out;
}
