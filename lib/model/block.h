/* One decoder block's forward, shared by the training passes (pass.c) and decoding
 * (decode.c): the norms, residuals and FFN are here; the attention sub-block is the
 * caller's, since it differs (a whole sequence against itself, or new rows against a
 * cache). */
#ifndef ASINK_MODEL_BLOCK_H
#define ASINK_MODEL_BLOCK_H

#include "model/weights.h"

/* A block's buffers, N rows each (x_out may be the next block's x_in). */
typedef struct {
  float *x_in;  /* residual stream entering the block (N x C) */
  float *n1;    /* pre-norm: norm1(x_in); post-norm: x_in + attn (norm1's input) */
  float *mean1, *rstd1;
  float *x_mid; /* pre-norm: x_in + attn; post-norm: norm1(n1) */
  float *n2;    /* pre-norm: norm2(x_mid); post-norm: x_mid + ffn (norm2's input) */
  float *mean2, *rstd2;
  float *fg, *fu, *fh; /* FFN gate pre-activation, up, hidden (N x F) */
  uint16_t *fh16;       /* NULL, or where the hidden is kept for backward, rounded to bf16
                           (precision=bf16; fh is then scratch the next block reuses) */
  uint16_t *n1_16, *n2_16; /* the same for n1 and n2 (pre-norm, parallel residual) */
  float *x_out;
} asink_block_acts;

/* out (N x C) = the attention sub-block of layer l on its input rows xa (N x C). */
typedef asink_status (*asink_attend_fn)(void *ctx, int l, const float *xa, float *out);

/* The family's norm (LayerNorm for gpt2, neox and opt, RMSNorm otherwise) over N rows. */
void asink_block_norm(const asink_weights *w, float *y, float *mean, float *rstd, const float *x,
                      const float *nw, const float *nb, int N, int nt);

/* The study's MLP feature map phi(x) = W2 relu(W1 x) ("kernel": "mlp") on rows of head
 * vectors of D: a = relu(W1 x) is kept for backward. */
void asink_block_kernel_mlp(const asink_layer_weights *y, const float *x, float *a, float *phi,
                            size_t rows, int D, int nt);

/* q (N x H*D), k and v (N x Hkv*D) of input rows xa: three projections, or one fused
 * projection split per head (neox), which needs fused (N x 3*H*D floats) as scratch. */
void asink_block_qkv(const asink_weights *w, const asink_layer_weights *y, const float *xa, float *q,
                     float *k, float *v, float *fused, int N, int nt);
/* The fused layout's gradient from dq, dk, dv (the inverse of the split). */
void asink_block_qkv_merge(const asink_weights *w, const float *dq, const float *dk, const float *dv,
                           float *dfused, int N);

/* Block l forward, pre- or post-norm, or parallel (neox: x + attn(ln1 x) + mlp(ln2 x)), as
 * the config says; parallel leaves x_in + attn in x_mid. */
asink_status asink_block_forward(const asink_weights *w, int l, const asink_block_acts *a, int N,
                                 asink_attend_fn attend, void *ctx, int nt);

#endif
