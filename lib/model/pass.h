/* A pass state: everything one forward and backward of a model's layers need that is
 * not a weight (shapes, activations, the attention ops' states, where gradients go,
 * scratch). A pass is a function of (weights, pass state): several states run over
 * one set of weights at once (batch slices, slices.c). */
#ifndef ASINK_MODEL_PASS_H
#define ASINK_MODEL_PASS_H

#include <stdbool.h>
#include <stdint.h>

#include "attn/op.h"
#include "core/alloc.h"
#include "model/observer.h"
#include "model/weights.h"

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
  uint16_t *fh16;       /* precision=bf16 (down weights stored (out, in)): the hidden kept
                           for backward in bf16, fh then one scratch all layers share */
  uint16_t *n1_16, *n2_16; /* the same for the norms' outputs where they are the q/k/v and
                              FFN inputs (pre-norm, parallel residual) */
} asink_acts;

/* Buffers that live within one call (backward buffers, the head's logits block) and
 * the head weight's gradient of a loss, added by backward: one per thread, lent to
 * each pass state that thread runs. */
typedef struct {
  asink_ws work, logits, head_grad;
} asink_pass_scratch;

typedef struct asink_pass {
  float *grad; /* this pass's gradients, laid out as the weights' block */
  asink_pass_scratch *scratch;
  const asink_observer *obs; /* NULL: none */

  /* the last forward: shapes, activations and the attention states */
  int B, T, Tx, N; /* Tx = T + sink token */
  asink_ws acts_ws;
  asink_acts *acts; /* L + 1 entries; acts[L].x_in is the last residual */
  float *xf, *xf_mean, *xf_rstd; /* final norm output (or the last residual) */
  float *xh, *dxh;               /* head input rows (real tokens) and their gradient */
  int32_t *tok;                  /* token of each row, -1 for the sink token */
  float *fused;                  /* neox: the fused q/k/v rows (N x 3*H*D) of one layer, or their gradient */
  asink_attn_state **attn;       /* L */
  bool have_loss;                /* a kept loss waits for backward */
} asink_pass;

/* A pass state for w's layers whose gradients go to grad, scratch lent by scratch. */
asink_status asink_pass_init(asink_pass *p, const asink_weights *w, float *grad,
                             asink_pass_scratch *scratch);
void asink_pass_release(asink_pass *p, const asink_weights *w);
void asink_pass_scratch_release(asink_pass_scratch *s);

/* Forward over checked tokens (B, T), keeping activations; the position tables must
 * cover T (+ sink token) positions. */
asink_status asink_pass_forward(const asink_weights *w, asink_pass *p, int B, int T,
                                const int32_t *tokens);
/* logits (B*T, V) of the last forward. */
void asink_pass_logits(const asink_weights *w, const asink_pass *p, float *logits);
/* Forward and fused head loss over checked tokens and targets: *total = the summed
 * loss of the rows, each normalised by count (the whole batch's unmasked targets).
 * keep leaves what backward needs, the head gradient written into the scratch, or
 * added to what it holds with add_head (a thread's later slices). */
asink_status asink_pass_loss(const asink_weights *w, asink_pass *p, int B, int T,
                             const int32_t *tokens, const int32_t *targets, int count, bool keep,
                             bool add_head, double *total);
/* Backward of the kept loss into p->grad, except the head weight's gradient, which
 * stays in the scratch until asink_pass_add_head_grad. */
asink_status asink_pass_backward(const asink_weights *w, asink_pass *p);
void asink_pass_add_head_grad(const asink_weights *w, const asink_pass *p, int nt);

#endif
