/* A decoder block's forward around a caller's attention (block.h). */
#include "model/block.h"

void asink_block_norm(const asink_weights *w, float *y, float *mean, float *rstd, const float *x,
                      const float *nw, const float *nb, int N, int nt) {
  if (w->cfg.family == ASINK_FAMILY_GPT2)
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
  asink_linear_forward(out, C, a->fh, F, &y->down, N, nt);
}

asink_status asink_block_forward(const asink_weights *w, int l, const asink_block_acts *a, int N,
                                 asink_attend_fn attend, void *ctx, int nt) {
  const asink_layer_weights *y = &w->layers[l];
  const size_t NC = (size_t)N * w->C;
  asink_status st;
  if (w->cfg.norm == ASINK_NORMPOS_PRE) {
    asink_block_norm(w, a->n1, a->mean1, a->rstd1, a->x_in, y->ln1_w, y->ln1_b, N, nt);
    if ((st = attend(ctx, l, a->n1, a->x_mid))) return st;
    asink_residual_add(a->x_mid, a->x_in, NC, nt);
    asink_block_norm(w, a->n2, a->mean2, a->rstd2, a->x_mid, y->ln2_w, y->ln2_b, N, nt);
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
