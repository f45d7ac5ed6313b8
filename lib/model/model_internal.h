/* The model handle's internals, shared by model.c (structure, parameters, init),
 * forward.c / backward.c (the passes), checkpoint.c (files) and optim.c (AdamW). */
#ifndef ASINK_MODEL_INTERNAL_H
#define ASINK_MODEL_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "attnsink.h"
#include "core/alloc.h"
#include "model/config.h"
#include "model/layers.h"

/* A named parameter; data/grad point into the model's block or an attention op. */
typedef struct {
  char name[96];
  int ndim;
  int64_t shape[4];
  size_t numel;
  float *data, *grad;
  bool decay; /* AdamW weight decay applies (2-D weight matrices, embeddings) */
  float init_std; /* < 0: ones (norm weights); 0: zeros */
} asink_param;

typedef struct {
  float *ln1_w, *ln1_b, *ln2_w, *ln2_b; /* norm 1 = before/after attention, 2 = FFN */
  float *g_ln1_w, *g_ln1_b, *g_ln2_w, *g_ln2_b;
  linear_ref q, k, v, o, gate, up, down; /* gate.w NULL unless the FFN is gated */
  linear_ref kmlp1, kmlp2;               /* MLP feature map on q and k ("kernel": "mlp") */
  asink_attn *attn;
} asink_layer;

/* A statistics observer (the metric handle, which lives below the model in the
 * layering) called from inside the forward pass. */
typedef struct {
  void *ctx;
  /* before layer 0: returns staging buffers for the attention statistics
   * (importance B x H x Tk and entropy B x H) the ops then fill */
  asink_status (*begin)(void *ctx, asink_model *m, float **importance, float **entropy);
  void (*layer)(void *ctx, asink_model *m, int l); /* after layer l's attention */
  void (*end)(void *ctx, asink_model *m);          /* after the last layer */
  void (*model_freed)(void *ctx);                  /* the model goes away */
} asink_observer;

/* Activations of one layer, rows N = B * Tx. */
typedef struct {
  float *x_in;  /* residual stream entering the layer (N x C) */
  float *n1;    /* pre-norm: norm1(x_in); post-norm: x_in + attn (norm1's input) */
  float *mean1, *rstd1;
  float *q, *k, *v, *att; /* after RoPE; att = attention output (N x H*D) */
  float *qa, *qphi, *ka, *kphi; /* kernel mlp: relu(W1 x) and W2 relu(W1 x) of q and k */
  float *x_mid; /* pre-norm: x_in + attn; post-norm: norm1(n1) */
  float *n2;    /* pre-norm: norm2(x_mid); post-norm: x_mid + ffn (norm2's input) */
  float *mean2, *rstd2;
  float *fg, *fu, *fh; /* FFN gate pre-activation, up, hidden (N x F) */
} asink_acts;

struct asink_model {
  asink_config cfg;
  char *config_json;
  int C, F, L, H, Hkv, D, V;
  bool gated;
  act_kind act;

  int n_params;
  asink_param *params;
  float *block, *gblock; /* every model-owned parameter, then their gradients */
  size_t n_block;        /* floats in each */

  float *wte, *g_wte, *wpe, *g_wpe, *sink_tok, *g_sink_tok;
  float *lnf_w, *lnf_b, *g_lnf_w, *g_lnf_b;
  float *head, *g_head; /* = wte when tied */
  asink_layer *layers;

  /* last forward: shapes and activations */
  int B, T, Tx, N; /* Tx = T + sink token */
  asink_ws acts_ws;
  asink_acts *acts; /* L entries; acts[L].x_in is the last residual */
  float *xf, *xf_mean, *xf_rstd; /* final norm output (or the last residual) */
  float *xh;                     /* head input rows (real tokens), N_real x C */
  int32_t *tok_ws;
  bool have_loss;
  float *dxh;           /* head backward: d(head input) from the loss pass */
  asink_ws head_pending; /* head weight gradient of the last loss, added by backward */
  bool pending_acc;      /* a loss adds to head_pending (a replica's later slices) */

  asink_observer obs;
  float *obs_imp, *obs_ent;

  asink_ws rope_ws, sinus_ws;
  int rope_len, sinus_len;
  asink_ws work_ws; /* backward buffers and scratch */
  asink_ws logits_ws;

  /* data-parallel passes of a small model (replicas.c) */
  struct asink_model *rep; /* n_rep replicas, each a slice of the batch */
  int n_rep, rep_threads;
  float *gshadow; /* gradients of threads 1 .. rep_threads-1, n_block floats each */
  bool rep_pass;  /* the last loss ran on the replicas: backward does too */
};

struct asink_adamw {
  asink_model *m;
  float lr, b1, b2, eps, wd, clip;
  bool cosine;
  int warmup, total_steps;
  float min_lr;
  int64_t step;
  float *mom, *var; /* one block, parameters in registry order */
  size_t total;
};

/* Parameters: the registry is built by model.c. */
asink_param *asink_model_find(asink_model *m, const char *name);

/* Runs the forward pass over tokens (B, T) keeping activations. */
asink_status asink_model_run(asink_model *m, int B, int T, const int32_t *tokens);
/* The backward pass from d(head input rows) in m->dxh. */
asink_status asink_model_run_backward(asink_model *m);

/* Threads for the model's own work: the library's count, 1 inside a parallel region
 * (a replica's pass runs on one thread). */
int asink_model_threads(void);

/* RoPE / sinusoid tables long enough for Tx positions. */
asink_status asink_model_tables(asink_model *m, int Tx);

/* Forward and fused head loss over one batch (or a replica's slice of one): *total
 * = summed loss of the rows, normalised by count (the whole batch's unmasked
 * targets); keep leaves what backward needs. Tokens and targets already checked. */
asink_status asink_model_slice_loss(asink_model *m, int B, int T, const int32_t *tokens,
                                    const int32_t *targets, int count, bool keep, double *total);

/* replicas.c. asink_replicas_loss returns false when the model runs on one team
 * (then nothing was done); otherwise it ran the loss on replicas, *status saying
 * how it went. asink_replicas_backward follows such a loss. */
bool asink_replicas_loss(asink_model *m, int B, int T, const int32_t *tokens,
                         const int32_t *targets, int count, bool keep, double *total,
                         asink_status *status);
asink_status asink_replicas_backward(asink_model *m);
void asink_replicas_free(asink_model *m);

/* Builds a model for a parsed config, parameters initialised from seed. */
asink_status asink_model_create_from_config(asink_model **out, const asink_config *cfg, uint64_t seed);


#endif
