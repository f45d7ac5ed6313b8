/* Model layers as forward/backward pairs over flat float arrays (llm.c style):
 * shapes in the signatures, no hidden state. N is the number of rows (tokens).
 * Backward functions ACCUMULATE into dx and into parameter gradients (+=), so a
 * residual stream's gradient can be summed in place. nt = threads to use. */
#ifndef ASINK_MODEL_LAYERS_H
#define ASINK_MODEL_LAYERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Per-thread scratch of the norms' backward: partial parameter gradients and a row buffer
 * (nt * 2C floats). */
typedef struct {
  float *buf;
  int nt;
} asink_norm_scratch;

/* ---- RMSNorm: y = x / sqrt(mean(x^2) + eps) * w */
void asink_rmsnorm_forward(float *y, float *rstd, const float *x, const float *w, int N, int C,
                           float eps, int nt);
void asink_rmsnorm_backward(float *dx, float *dw, const float *dy, const float *x, const float *w,
                            const float *rstd, int N, int C, asink_norm_scratch s);

/* ---- LayerNorm: y = (x - mean) / sqrt(var + eps) * w + b */
void asink_layernorm_forward(float *y, float *mean, float *rstd, const float *x, const float *w,
                             const float *b, int N, int C, float eps, int nt);
void asink_layernorm_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                              const float *w, const float *mean, const float *rstd, int N, int C,
                              asink_norm_scratch s);

/* ---- Rotary embedding, rotate-half (HF LLaMA, GPT-NeoX): of every head of x (N rows of
 * nh heads of D) the first R dims (R = D, or GPT-NeoX's rotary_pct of it) rotate in pairs
 * (i, i + R/2) by pos * theta^(-2i/R); the rest pass. Row n has position n % T. tab holds
 * cos then sin, (maxT, R/2) each (rope_table). In place. */
void asink_rope_table(float *tab, int maxT, int R, float theta);
/* The cos and sin (R/2 each) of position pos, as the table holds them. */
void asink_rope_angles(float *cs, float *sn, int64_t pos, int R, float theta);
/* rows of nh heads of D, first R dims rotated by the angles of row r at cs/sn + r * ld_angles. */
void asink_rope_rows(float *x, size_t rows, int nh, int D, int R, const float *cs, const float *sn,
                     size_t ld_angles, float sign);
void asink_rope_forward(float *x, const float *tab, int maxT, int N, int T, int nh, int D, int R, int nt);
void asink_rope_backward(float *dx, const float *tab, int maxT, int N, int T, int nh, int D, int R,
                         int nt);

/* ---- Activations. Gated kinds read g and u (N x F) and write h = act(g) * u;
 * plain kinds read g and write h = act(g) (u unused). GELU is the tanh form, GELU_ERF the
 * exact one (x Phi(x)). */
typedef enum { ASINK_ACT_SILU, ASINK_ACT_GELU, ASINK_ACT_RELU, ASINK_ACT_GELU_ERF } asink_act;
void asink_act_forward(float *h, const float *g, const float *u, asink_act k, size_t n, int nt);
/* dg = dh * d act(g) (* u), du = dh * act(g); written, not accumulated. */
void asink_act_backward(float *dg, float *du, const float *dh, const float *g, const float *u,
                        asink_act k, size_t n, int nt);

/* ---- y += x over n floats (residual connections), split into one chunk per thread. */
void asink_residual_add(float *y, const float *x, size_t n, int nt);

/* ---- Linear: y = x W^T + b with W as HF stores it: (out, in) for nn.Linear, or
 * (in, out) for GPT-2's Conv1D (in_out); ldw is W's row stride (slices of c_attn). */
typedef struct {
  float *w, *b;
  float *dw, *db;
  int in, out, ldw;
  bool in_out;
  const uint16_t *w16; /* W kept in bf16 instead of w (a model loaded with weights=bf16), or
                          with bf16ops and w, w's bf16 copy */
  bool bf16ops;        /* precision=bf16: forward and backward GEMMs round their operands to
                          bf16 (asink_sgemm_bf16ops); w16 is then set */
} asink_linear;
/* y = x W^T for a matrix W of n rows of k held in float (W) or bf16 (W16): the head.
 * bf16ops: x rounded to bf16 too (W16 then set). */
void asink_matmul_wt(float *y, int ldy, const float *x, int ldx, const float *W, const uint16_t *W16,
                     bool bf16ops, int N, int n, int k, int nt);
void asink_linear_forward(float *y, int ldy, const float *x, int ldx, const asink_linear *L, int N, int nt);
/* dx (if not NULL) = dy W, or += with acc;  dW += dy^T x;  db += colsum(dy). */
void asink_linear_backward(float *dx, int lddx, bool acc, const float *dy, int ldy, const float *x,
                           int ldx, const asink_linear *L, int N, int nt);
/* The same with the layer's input kept in bf16 (x16, row stride ldx): for L->bf16ops layers
 * stored (out, in), whose weight gradient rounds x to bf16 anyway, so the result is the
 * same bits as asink_linear_backward on the float x that x16 was rounded from. */
void asink_linear_backward_x16(float *dx, int lddx, bool acc, const float *dy, int ldy,
                               const uint16_t *x16, int ldx, const asink_linear *L, int N, int nt);

/* dst[i] = src[i] rounded to bf16 (nearest even, asink_f32_to_bf16), n values. */
void asink_round_bf16(uint16_t *dst, const float *src, size_t n, int nt);

/* ---- Fused head + cross-entropy over rows of x (N x C) against W (V x C).
 * targets < 0 are ignored; loss = mean over the others (count = their number).
 * Returns the summed loss of these rows. With dx/dW non-NULL also writes dx
 * (= dlogits W; W in float, or with bf16ops its copy W16) and dW (= dlogits^T x; added to dW's contents with dw_acc), dlogits =
 * (softmax - onehot)/count, so no N x V array is ever kept. logits_ws: rows * V floats. */
double asink_head_xent(const float *x, const float *W, const uint16_t *W16, bool bf16ops,
                       const int32_t *targets, int N, int C, int V, int count, float *dx, float *dW,
                       bool dw_acc, float *logits_ws, int rows, int nt);

/* ---- Sinusoidal positions (Vaswani): pe[p, 2i] = sin(p / 10000^(2i/C)), pe[p, 2i+1] = cos. */
void asink_sinusoid_table(float *pe, int maxT, int C);

#endif
