/* A decoder block's forward around a caller's attention (block.h). */
#include "model/block.h"

#include <string.h>

void asink_block_norm(const asink_weights *w, float *y, float *mean, float *rstd, const float *x,
                      const float *nw, const float *nb, int N, int nt) {
  if (w->layernorm)
    asink_layernorm_forward(y, mean, rstd, x, nw, nb, N, w->C, w->cfg.norm_eps, nt);
  else
    asink_rmsnorm_forward(y, rstd, x, nw, N, w->C, w->cfg.norm_eps, nt);
}

void asink_block_kernel_mlp(const asink_layer_weights *y, const float *x, float *a, float *phi,
                            size_t rows, int D, int nt) {
  asink_linear_forward(a, D, x, D, &y->kmlp1, (int)rows, nt);
  asink_act_forward(a, a, NULL, ASINK_ACT_RELU, rows * D, nt);
  asink_linear_forward(phi, D, a, D, &y->kmlp2, (int)rows, nt);
}

/* An activation the backward reads in bf16 (dst not NULL): src rounded into dst. */
static void keep16(uint16_t *dst, const float *src, size_t n, int nt) {
  if (dst) asink_round_bf16(dst, src, n, nt);
}

static void ffn_forward(const asink_weights *w, const asink_layer_weights *y,
                        const asink_block_acts *a, const float *xf, float *out, int N, int nt) {
  const int C = w->C, F = w->F;
  if (w->gated) {
    asink_linear_forward(a->fg, F, xf, C, &y->gate, N, nt);
    asink_linear_forward(a->fu, F, xf, C, &y->up, N, nt);
    asink_act_forward(a->fh, a->fg, a->fu, w->act, (size_t)N * F, nt);
  } else {
    asink_linear_forward(a->fg, F, xf, C, &y->up, N, nt);
    asink_act_forward(a->fh, a->fg, NULL, w->act, (size_t)N * F, nt);
  }
  keep16(a->fh16, a->fh, (size_t)N * F, nt);
  asink_linear_forward(out, C, a->fh, F, &y->down, N, nt);
}

/* HF GPT-NeoX views the fused output as (heads, 3 * head_dim): per head q, then k, then v. */
void asink_block_qkv(const asink_weights *w, const asink_layer_weights *y, const float *xa, float *q,
                     float *k, float *v, float *fused, int N, int nt) {
  const int C = w->C, HD = w->H * w->D, KD = w->Hkv * w->D, D = w->D;
  if (!w->qkv_per_head) {
    asink_linear_forward(q, HD, xa, C, &y->q, N, nt);
    asink_linear_forward(k, KD, xa, C, &y->k, N, nt);
    asink_linear_forward(v, KD, xa, C, &y->v, N, nt);
    return;
  }
  asink_linear_forward(fused, 3 * HD, xa, C, &y->qkv, N, nt);
  for (size_t n = 0; n < (size_t)N; n++)
    for (int h = 0; h < w->H; h++) {
      const float *src = fused + n * 3 * HD + (size_t)h * 3 * D;
      const size_t at = n * HD + (size_t)h * D;
      memcpy(q + at, src, D * sizeof(float));
      memcpy(k + at, src + D, D * sizeof(float));
      memcpy(v + at, src + 2 * D, D * sizeof(float));
    }
}

void asink_block_qkv_merge(const asink_weights *w, const float *dq, const float *dk, const float *dv,
                           float *dfused, int N) {
  const int HD = w->H * w->D, D = w->D;
  for (size_t n = 0; n < (size_t)N; n++)
    for (int h = 0; h < w->H; h++) {
      float *dst = dfused + n * 3 * HD + (size_t)h * 3 * D;
      const size_t at = n * HD + (size_t)h * D;
      memcpy(dst, dq + at, D * sizeof(float));
      memcpy(dst + D, dk + at, D * sizeof(float));
      memcpy(dst + 2 * D, dv + at, D * sizeof(float));
    }
}

asink_status asink_block_forward(const asink_weights *w, int l, const asink_block_acts *a, int N,
                                 asink_attend_fn attend, void *ctx, int nt) {
  const asink_layer_weights *y = &w->layers[l];
  const size_t NC = (size_t)N * w->C;
  asink_status st;
  if (w->cfg.parallel_residual) {
    /* both norms read x_in before the FFN's output may overwrite it (decoding's x_out is x_in) */
    asink_block_norm(w, a->n1, a->mean1, a->rstd1, a->x_in, y->ln1_w, y->ln1_b, N, nt);
    asink_block_norm(w, a->n2, a->mean2, a->rstd2, a->x_in, y->ln2_w, y->ln2_b, N, nt);
    keep16(a->n1_16, a->n1, NC, nt);
    keep16(a->n2_16, a->n2, NC, nt);
    if ((st = attend(ctx, l, a->n1, a->x_mid))) return st;
    asink_residual_add(a->x_mid, a->x_in, NC, nt);
    ffn_forward(w, y, a, a->n2, a->x_out, N, nt);
    asink_residual_add(a->x_out, a->x_mid, NC, nt);
  } else if (w->cfg.norm == ASINK_NORMPOS_PRE) {
    asink_block_norm(w, a->n1, a->mean1, a->rstd1, a->x_in, y->ln1_w, y->ln1_b, N, nt);
    keep16(a->n1_16, a->n1, NC, nt);
    if ((st = attend(ctx, l, a->n1, a->x_mid))) return st;
    asink_residual_add(a->x_mid, a->x_in, NC, nt);
    asink_block_norm(w, a->n2, a->mean2, a->rstd2, a->x_mid, y->ln2_w, y->ln2_b, N, nt);
    keep16(a->n2_16, a->n2, NC, nt);
    ffn_forward(w, y, a, a->n2, a->x_out, N, nt);
    asink_residual_add(a->x_out, a->x_mid, NC, nt);
  } else {
    if ((st = attend(ctx, l, a->x_in, a->n1))) return st;
    asink_residual_add(a->n1, a->x_in, NC, nt);
    asink_block_norm(w, a->x_mid, a->mean1, a->rstd1, a->n1, y->ln1_w, y->ln1_b, N, nt);
    ffn_forward(w, y, a, a->x_mid, a->n2, N, nt);
    asink_residual_add(a->n2, a->x_mid, NC, nt);
    asink_block_norm(w, a->x_out, a->mean2, a->rstd2, a->n2, y->ln2_w, y->ln2_b, N, nt);
  }
  return ASINK_OK;
}
