/* A model's weights: its config, its named parameters (HF names and layouts) in one
 * block, built from one declarative table per family, the layers' views of them, the
 * attention ops (parameters only) and the position tables. Nothing here changes
 * during a pass: every pass state (pass.h) reads the same weights. */
#ifndef ASINK_MODEL_WEIGHTS_H
#define ASINK_MODEL_WEIGHTS_H

#include <stdbool.h>
#include <stdint.h>

#include "attnsink.h"
#include "core/alloc.h"
#include "model/config.h"
#include "model/layers.h"

/* A named parameter: data points into the weights' block, offset floats from its
 * start (a gradient buffer has the same layout). */
typedef struct {
  char name[96];
  int ndim;
  int64_t shape[4];
  size_t numel, offset; /* offset: in the block of its type (float, or bf16 with data16) */
  float *data;          /* NULL when the model keeps this parameter in bf16 */
  uint16_t *data16;     /* its bf16 values then (weights=bf16: the matrices) */
  uint16_t *copy16;     /* precision=bf16 with float data: data rounded to bf16, what the
                           GEMMs read (asink_weights_refresh_copies) */
  bool decay;     /* AdamW weight decay applies (2-D weight matrices, embeddings) */
  float init_std; /* < 0: ones (norm weights); 0: zeros */
} asink_param;

/* One layer's weights; a view is NULL where the config has no such weight. */
typedef struct {
  float *ln1_w, *ln1_b, *ln2_w, *ln2_b; /* norm 1 = before/after attention, 2 = FFN */
  asink_linear q, k, v, o, gate, up, down; /* gate.w NULL unless the FFN is gated */
  asink_linear qkv; /* gpt2: the fused c_attn, q, k, v are its columns; neox: query_key_value,
                       whose rows are per head [q; k; v] (q, k, v views unset) */
  asink_linear kmlp1, kmlp2; /* MLP feature map on q and k ("kernel": "mlp") */
  asink_attn *attn;          /* its parameters live in the block */
} asink_layer_weights;

typedef struct asink_weights {
  asink_config cfg;
  int C, F, L, H, Hkv, D, V;
  bool gated;
  asink_act act;
  bool layernorm;    /* LayerNorm with bias (gpt2, neox, opt), else RMSNorm */
  bool qkv_per_head; /* neox: q, k, v come from the fused qkv (asink_block_qkv) */
  int R;             /* dims of each head RoPE rotates */
  int pos_off;       /* learned position p is row p + pos_off (opt: 2) */

  int n_params;
  asink_param *params;
  float *block;   /* every parameter, registry order (with bf16 weights: the float ones) */
  size_t n_block; /* floats in it */
  bool bf16;          /* matrices (linear weights, embedding, head) kept in bf16 */
  uint16_t *block16;  /* those, registry order */
  size_t n_block16;

  const uint16_t *wte16, *head16; /* with bf16: the embedding and head (wte, head NULL);
                                     precision=bf16: head16 the head's bf16 copy */
  bool mixed;          /* precision=bf16: the linear layers' and the head's GEMMs round both
                          operands to bf16 (asink_sgemm_bf16ops) */
  uint16_t *copy16;    /* mixed with float matrices: their bf16 copies, registry order */
  size_t n_copy16;
  const uint16_t *wte_copy16; /* the embedding's copy (kept only when the head is tied to it) */

  float *wte, *wpe, *sink_tok, *lnf_w, *lnf_b;
  float *head; /* = wte when tied */
  asink_layer_weights *layers;

  /* RoPE angles / sinusoids for rope_len / sinus_len positions (asink_weights_tables) */
  asink_ws rope_ws, sinus_ws;
  int rope_len, sinus_len;
} asink_weights;

/* Weights for a checked config, parameters zero (asink_weights_init fills them); bf16: the
 * matrices kept in bf16 (inference only: nothing computes their gradients). */
asink_status asink_weights_create(asink_weights **out, const asink_config *cfg, bool bf16,
                                  bool mixed);
void asink_weights_free(asink_weights *w);

/* Seeded initialisation of every parameter (std per parameter, include/attnsink.h). */
void asink_weights_init(asink_weights *w, uint64_t seed);

/* precision=bf16: every copy16 made again from its float parameter (nearest even). */
void asink_weights_refresh_copies(asink_weights *w, int nt);

/* Token tok's embedding row into dst (C floats), from float or bf16 storage. */
void asink_weights_embedding(const asink_weights *w, int32_t tok, float *dst);

asink_param *asink_weights_find(const asink_weights *w, const char *name);

/* Grows the position tables to cover Tx positions. Not during a pass: passes only
 * read them. */
asink_status asink_weights_tables(asink_weights *w, int Tx);

#endif
