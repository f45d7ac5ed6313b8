/* Model configuration: HF config.json keys of each family plus the "attnsink" object
 * for what HF has no word for (docs/formats.md, docs/models.md). */
#ifndef ASINK_MODEL_CONFIG_H
#define ASINK_MODEL_CONFIG_H

#include <stdbool.h>

#include "attnsink.h"

/* llama, qwen2 and mistral share LLaMA's layout (qwen2: q/k/v biases; mistral: a sliding
 * window); neox is GPT-NeoX (Pythia); opt is Meta's OPT. */
typedef enum {
  ASINK_FAMILY_LLAMA,
  ASINK_FAMILY_GPT2,
  ASINK_FAMILY_NEOX,
  ASINK_FAMILY_OPT,
  ASINK_FAMILY_QWEN2,
  ASINK_FAMILY_MISTRAL
} asink_family;
typedef enum {
  ASINK_FFN_SWIGLU,
  ASINK_FFN_GEGLU,
  ASINK_FFN_REGLU,
  ASINK_FFN_GELU,
  ASINK_FFN_RELU,
  ASINK_FFN_SWISH,
  ASINK_FFN_GELU_EXACT /* erf GELU: HF's "gelu" (Pythia, some OPT) */
} asink_ffn;
typedef enum { ASINK_NORMPOS_PRE, ASINK_NORMPOS_POST } asink_normpos;
typedef enum {
  ASINK_POS_ROPE,
  ASINK_POS_NOPE,
  ASINK_POS_SINUSOIDAL,
  ASINK_POS_LEARNED,
  ASINK_POS_ALIBI,
  ASINK_POS_RELATIVE
} asink_pos;

typedef struct asink_config {
  asink_family family;
  int vocab_size;
  int hidden;       /* llama hidden_size, gpt2 n_embd */
  int intermediate; /* llama intermediate_size, gpt2 n_inner (null/absent: 4 * n_embd) */
  int n_layer;
  int n_head;
  int n_kv_head; /* llama num_key_value_heads (absent: n_head); gpt2: n_head */
  int head_dim;  /* hidden / n_head */
  int max_pos;   /* llama max_position_embeddings, gpt2 n_positions */
  float norm_eps;   /* rms_norm_eps / layer_norm_epsilon */
  float rope_theta; /* llama rope_theta (absent: 10000) */
  bool tie_embeddings;
  /* "attnsink" object; defaults are the family's own architecture */
  char attn[256];     /* attention spec, default "softmax" */
  asink_ffn ffn;      /* llama: swiglu, gpt2: gelu */
  asink_normpos norm; /* pre */
  asink_pos pos;      /* llama: rope, gpt2: learned */
  bool kernel_mlp;    /* "kernel": "mlp" */
  bool sink_token;    /* "sink_token": true */
  int bos;            /* "bos": id, or -1 */
  /* what the families beyond llama and gpt2 add; zero is llama's and gpt2's own */
  bool qkv_bias, o_bias, mlp_bias; /* biases of q/k/v, of the output and of the FFN linears */
  bool parallel_residual;          /* neox: x + attn(ln1(x)) + mlp(ln2(x)) */
  int rope_dim;   /* dims of each head RoPE rotates (neox rotary_pct); 0: all head_dim */
  int pos_offset; /* opt: position p reads row p + 2 of the learned table */
} asink_config;

/* The family's HF model_type ("llama", "gpt_neox", ...). */
const char *asink_family_name(asink_family f);

/* The family normalises with LayerNorm (weight and bias), not RMSNorm. */
bool asink_config_layernorm(const asink_config *c);

/* The dims of each head RoPE rotates (rope_dim, or head_dim when 0). */
int asink_config_rope_dim(const asink_config *c);

/* Parses config.json text (source names the file in messages). Missing or
 * inconsistent keys: ASINK_ERR_FORMAT naming the key and the value. */
asink_status asink_config_parse(const char *json, const char *source, asink_config *c);

/* Checks a config built in code (same rules as the parser). */
asink_status asink_config_validate(const asink_config *c, const char *source);

/* config.json text for c, in the family's HF spelling plus "attnsink"; malloc'd,
 * NULL on allocation failure. Parsing it gives c back. */
char *asink_config_to_json(const asink_config *c);

const char *asink_ffn_name(asink_ffn f);
const char *asink_pos_name(asink_pos p);

#endif
