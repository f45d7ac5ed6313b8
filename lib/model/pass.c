/* The passes over (weights, pass state), forward next to backward: embedding, blocks
 * (pre- or post-norm), final norm, fused head + cross-entropy. Activations of the last
 * forward live in one grow-only workspace of the pass state; gradients go where the
 * state says (the model's block, or a slice thread's shadow of it). */
#include "model/pass.h"

#include <math.h>
#include <omp.h>
#include <string.h>

#include "core/blas.h"
#include "core/error.h"
#include "core/runtime.h"
#include "model/block.h"

/* The gradient of a parameter view in this pass's gradient buffer. */
static float *grad_of(const asink_weights *w, const asink_pass *p, const float *param) {
  return param ? p->grad + (param - w->block) : NULL;
}

static asink_linear with_grad(const asink_weights *w, const asink_pass *p, const asink_linear *L) {
  asink_linear r = *L;
  r.dw = grad_of(w, p, L->w);
  r.db = grad_of(w, p, L->b);
  return r;
}

/* ---------------------------------------------------------------- buffers */

/* Whether the FFN hidden is kept in bf16 for backward: precision=bf16 rounds it to bf16
 * wherever it is read (the down projection's forward and its weight gradient, which reads it
 * as B: weights stored (out, in)), so keeping it so changes no bit and halves it. */
static bool hidden_in_bf16(const asink_weights *w) {
  return w->mixed && w->L > 0 && !w->layers[0].down.in_out;
}

/* The same for the norms' outputs where they are the projections' inputs, which the
 * backward reads only as the B operand of the q/k/v and FFN weight gradients. */
static bool norms_in_bf16(const asink_weights *w) {
  if (!w->mixed || w->L == 0 || !(w->cfg.parallel_residual || w->cfg.norm == ASINK_NORMPOS_PRE))
    return false;
  const asink_layer_weights *y = &w->layers[0];
  return !(w->qkv_per_head ? y->qkv.in_out : y->q.in_out) && !y->up.in_out;
}

static void layout_acts(const asink_weights *w, asink_pass *p, asink_carver *c, size_t N, size_t Nr) {
  const size_t C = w->C, HD = (size_t)w->H * w->D, KD = (size_t)w->Hkv * w->D, F = w->F;
  const bool km = w->cfg.kernel_mlp, h16 = hidden_in_bf16(w), n16 = norms_in_bf16(w);
  float *shared_fh = h16 ? asink_take(c, N * F) : NULL;
  float *shared_n1 = n16 ? asink_take(c, N * C) : NULL, *shared_n2 = n16 ? asink_take(c, N * C) : NULL;
  for (int l = 0; l < w->L; l++) {
    asink_acts *a = &p->acts[l];
    a->x_in = asink_take(c, N * C);
    a->n1 = n16 ? shared_n1 : asink_take(c, N * C);
    a->n1_16 = n16 ? (uint16_t *)asink_take(c, (N * C + 1) / 2) : NULL;
    a->mean1 = asink_take(c, N);
    a->rstd1 = asink_take(c, N);
    a->q = asink_take(c, N * HD);
    a->k = asink_take(c, N * KD);
    a->v = asink_take(c, N * KD);
    a->att = asink_take(c, N * HD);
    a->x_mid = asink_take(c, N * C);
    a->n2 = n16 ? shared_n2 : asink_take(c, N * C);
    a->n2_16 = n16 ? (uint16_t *)asink_take(c, (N * C + 1) / 2) : NULL;
    a->mean2 = asink_take(c, N);
    a->rstd2 = asink_take(c, N);
    a->fg = asink_take(c, N * F);
    a->fu = asink_take(c, N * F);
    a->fh = h16 ? shared_fh : asink_take(c, N * F);
    a->fh16 = h16 ? (uint16_t *)asink_take(c, (N * F + 1) / 2) : NULL;
    a->qa = km ? asink_take(c, N * HD) : NULL;
    a->qphi = km ? asink_take(c, N * HD) : NULL;
    a->ka = km ? asink_take(c, N * KD) : NULL;
    a->kphi = km ? asink_take(c, N * KD) : NULL;
  }
  p->acts[w->L].x_in = asink_take(c, N * C);
  p->xf = asink_take(c, N * C);
  p->xf_mean = asink_take(c, N);
  p->xf_rstd = asink_take(c, N);
  p->xh = asink_take(c, Nr * C);
  p->dxh = asink_take(c, Nr * C);
  p->tok = (int32_t *)asink_take(c, N);
  p->fused = w->qkv_per_head ? asink_take(c, N * 3 * HD) : NULL;
}

static asink_status reserve_acts(const asink_weights *w, asink_pass *p, int B, int T) {
  const int Tx = T + (w->cfg.sink_token ? 1 : 0);
  const size_t N = (size_t)B * Tx, Nr = (size_t)B * T;
  asink_carver c = {NULL, 0};
  layout_acts(w, p, &c, N, Nr);
  asink_status st = asink_ws_reserve(&p->acts_ws, c.used * sizeof(float), "model activations");
  if (st) return st;
  c = (asink_carver){p->acts_ws.ptr, 0};
  layout_acts(w, p, &c, N, Nr);
  p->B = B, p->T = T, p->Tx = Tx, p->N = (int)N;
  return ASINK_OK;
}

asink_status asink_pass_init(asink_pass *p, const asink_weights *w, float *grad,
                             asink_pass_scratch *scratch) {
  memset(p, 0, sizeof *p);
  p->grad = grad;
  p->scratch = scratch;
  p->acts = asink_calloc((size_t)w->L + 1, sizeof *p->acts);
  p->attn = asink_calloc((size_t)w->L, sizeof *p->attn);
  if (!p->acts || !p->attn) return asink_fail(ASINK_ERR_NOMEM, "cannot allocate a pass state");
  for (int l = 0; l < w->L; l++) {
    asink_status st = asink_attn_state_create(&p->attn[l]);
    if (st) return st;
  }
  return ASINK_OK;
}

void asink_pass_release(asink_pass *p, const asink_weights *w) {
  if (p->attn)
    for (int l = 0; l < w->L; l++) asink_attn_state_free(p->attn[l]);
  asink_free(p->attn);
  asink_free(p->acts);
  asink_ws_release(&p->acts_ws);
  memset(p, 0, sizeof *p);
}

void asink_pass_scratch_release(asink_pass_scratch *s) {
  asink_ws_release(&s->work);
  asink_ws_release(&s->logits);
  asink_ws_release(&s->head_grad);
}

/* ------------------------------------------------------------------ norms */

static void norm_bwd(const asink_weights *w, const asink_pass *p, float *dx, const float *dy,
                     const float *x, const float *nw, const float *nb, const float *mean,
                     const float *rstd, asink_norm_scratch s) {
  if (w->layernorm)
    asink_layernorm_backward(dx, grad_of(w, p, nw), grad_of(w, p, nb), dy, x, nw, mean, rstd,
                             p->N, w->C, s);
  else
    asink_rmsnorm_backward(dx, grad_of(w, p, nw), dy, x, nw, rstd, p->N, w->C, s);
}

/* ------------------------------------------------------------ embedding */

static void embed_forward(const asink_weights *w, const asink_pass *p, float *x) {
  const int C = w->C, Tx = p->Tx, s = w->cfg.sink_token ? 1 : 0;
  const float *pos = w->cfg.pos == ASINK_POS_LEARNED ? w->wpe
                     : w->cfg.pos == ASINK_POS_SINUSOIDAL ? (const float *)w->sinus_ws.ptr
                                                           : NULL;
#pragma omp parallel for num_threads(asink_region_threads()) schedule(static) if (p->N > 64)
  for (int n = 0; n < p->N; n++) {
    int t = n % Tx;
    float *dst = x + (size_t)n * C;
    if (s && t == 0) memcpy(dst, w->sink_tok, sizeof(float) * C);
    else asink_weights_embedding(w, p->tok[n], dst);
    if (pos)
      for (int j = 0; j < C; j++) dst[j] += pos[(size_t)(t + w->pos_off) * C + j];
  }
}

/* Rows of one token id collide, so threads split the columns, not the rows. */
static void embed_backward(const asink_weights *w, const asink_pass *p, const float *dx) {
  const int C = w->C, Tx = p->Tx, s = w->cfg.sink_token ? 1 : 0;
  float *g_wte = grad_of(w, p, w->wte), *g_wpe = grad_of(w, p, w->wpe);
  float *g_sink = grad_of(w, p, w->sink_tok);
#pragma omp parallel num_threads(asink_region_threads()) if (p->N > 64)
  {
    int parts = omp_get_num_threads(), me = omp_get_thread_num();
    int lo = C * me / parts, hi = C * (me + 1) / parts;
    for (int n = 0; n < p->N; n++) {
      int t = n % Tx;
      const float *g = dx + (size_t)n * C;
      float *dst = (s && t == 0) ? g_sink : g_wte + (size_t)p->tok[n] * C;
      for (int j = lo; j < hi; j++) dst[j] += g[j];
      if (w->cfg.pos == ASINK_POS_LEARNED)
        for (int j = lo; j < hi; j++) g_wpe[(size_t)(t + w->pos_off) * C + j] += g[j];
    }
  }
}

/* ------------------------------------------------------------- one block */

/* dx = d phi / dx^T dphi, with dW1, dW2 accumulated; tmp holds rows x D floats.
 * relu(h) > 0 iff h > 0, so the stored activation a gives the derivative. */
static void kernel_mlp_backward(const asink_weights *w, const asink_pass *p,
                                const asink_layer_weights *y, const float *x, const float *a,
                                float *dphi_dx, float *tmp, size_t rows, int D, int nt) {
  asink_linear k1 = with_grad(w, p, &y->kmlp1), k2 = with_grad(w, p, &y->kmlp2);
  asink_linear_backward(tmp, D, false, dphi_dx, D, a, D, &k2, (int)rows, nt);
  for (size_t i = 0; i < rows * D; i++)
    if (!(a[i] > 0.f)) tmp[i] = 0.f;
  asink_linear_backward(dphi_dx, D, false, tmp, D, x, D, &k1, (int)rows, nt);
}

static asink_layer_view layer_view(const asink_weights *w, const asink_pass *p, int l) {
  const asink_acts *a = &p->acts[l < 0 ? 0 : l];
  asink_layer_view v = {p->B, p->Tx, w->C, w->H, w->Hkv, w->D, w->L,
                        asink_attn_key_count(w->layers[0].attn, p->Tx), l,
                        a->x_in, NULL, NULL, NULL};
  if (l >= 0 && l < w->L) v.q = a->q, v.k = a->k, v.v = a->v;
  if (l < 0) v.x = NULL;
  return v;
}

/* Attention sub-block of layer l on input xa: q, k, v, RoPE, attention; out = o(att).
 * An observer gets the ops' importance, entropy and first visible key's share, computed in
 * the same pass. */
static asink_status attn_forward(const asink_weights *w, asink_pass *p, int l, const float *xa,
                                 float *out, float *imp, float *ent, float *first, int nt) {
  const asink_layer_weights *y = &w->layers[l];
  asink_acts *a = &p->acts[l];
  const int N = p->N, C = w->C, HD = w->H * w->D;
  asink_block_qkv(w, y, xa, a->q, a->k, a->v, p->fused, N, nt);
  if (w->cfg.pos == ASINK_POS_ROPE) {
    asink_rope_forward(a->q, w->rope_ws.ptr, w->rope_len, N, p->Tx, w->H, w->D, w->R, nt);
    asink_rope_forward(a->k, w->rope_ws.ptr, w->rope_len, N, p->Tx, w->Hkv, w->D, w->R, nt);
  }
  const float *qin = a->q, *kin = a->k;
  if (w->cfg.kernel_mlp) {
    asink_block_kernel_mlp(y, a->q, a->qa, a->qphi, (size_t)N * w->H, w->D, nt);
    asink_block_kernel_mlp(y, a->k, a->ka, a->kphi, (size_t)N * w->Hkv, w->D, nt);
    qin = a->qphi, kin = a->kphi;
  }
  asink_attn_state_watch_first_key(p->attn[l], first);
  asink_status st = asink_attn_run_forward(y->attn, p->attn[l], p->B, p->Tx, qin, kin, a->v,
                                           a->att, imp, ent);
  if (st) return st;
  if (p->obs) {
    asink_layer_view v = layer_view(w, p, l);
    p->obs->layer(p->obs->ctx, &v);
  }
  asink_linear_forward(out, C, a->att, HD, &y->o, N, nt);
  return ASINK_OK;
}

/* The training pass's attention sub-block (asink_attend_fn), with the statistics buffers
 * of an observer. */
typedef struct {
  const asink_weights *w;
  asink_pass *p;
  float *imp, *ent, *first;
  int nt;
} pass_attend;

static asink_status attend(void *ctx, int l, const float *xa, float *out) {
  pass_attend *c = ctx;
  return attn_forward(c->w, c->p, l, xa, out, c->imp, c->ent, c->first, c->nt);
}

static asink_block_acts block_acts(const asink_pass *p, int l) {
  const asink_acts *a = &p->acts[l];
  return (asink_block_acts){.x_in = a->x_in, .n1 = a->n1, .mean1 = a->mean1, .rstd1 = a->rstd1,
                            .x_mid = a->x_mid, .n2 = a->n2, .mean2 = a->mean2,
                            .rstd2 = a->rstd2, .fg = a->fg, .fu = a->fu, .fh = a->fh,
                            .fh16 = a->fh16, .n1_16 = a->n1_16, .n2_16 = a->n2_16,
                            .x_out = p->acts[l + 1].x_in};
}

/* --------------------------------------------------------------- forward */

asink_status asink_pass_forward(const asink_weights *w, asink_pass *p, int B, int T,
                                const int32_t *tokens) {
  p->have_loss = false;
  asink_status st = reserve_acts(w, p, B, T);
  if (st) return st;
  const int s = w->cfg.sink_token ? 1 : 0, nt = asink_region_threads(), C = w->C;
  for (int b = 0; b < B; b++)
    for (int t = 0; t < p->Tx; t++) p->tok[b * p->Tx + t] = (s && t == 0) ? -1 : tokens[b * T + t - s];
  embed_forward(w, p, p->acts[0].x_in);
  float *imp = NULL, *ent = NULL, *first = NULL;
  if (p->obs) {
    asink_layer_view v = layer_view(w, p, -1);
    if ((st = p->obs->begin(p->obs->ctx, &v, &imp, &ent, &first))) return st;
  }
  pass_attend ctx = {w, p, imp, ent, first, nt};
  for (int l = 0; l < w->L; l++) {
    asink_block_acts a = block_acts(p, l);
    if ((st = asink_block_forward(w, l, &a, p->N, attend, &ctx, nt))) return st;
  }
  if (p->obs) {
    asink_layer_view v = layer_view(w, p, w->L);
    p->obs->end(p->obs->ctx, &v);
  }
  const float *last = p->acts[w->L].x_in;
  if (w->cfg.norm == ASINK_NORMPOS_PRE)
    asink_block_norm(w, p->xf, p->xf_mean, p->xf_rstd, last, w->lnf_w, w->lnf_b, p->N, nt);
  else
    memcpy(p->xf, last, sizeof(float) * (size_t)p->N * C);
  /* the head sees the real tokens only */
  if (s)
    for (int b = 0; b < B; b++)
      memcpy(p->xh + (size_t)b * T * C, p->xf + ((size_t)b * p->Tx + 1) * C, sizeof(float) * (size_t)T * C);
  else
    memcpy(p->xh, p->xf, sizeof(float) * (size_t)p->N * C);
  return ASINK_OK;
}

void asink_pass_logits(const asink_weights *w, const asink_pass *p, float *logits) {
  asink_matmul_wt(logits, w->V, p->xh, w->C, w->head, w->head16, w->mixed, p->B * p->T, w->V, w->C,
                  asink_region_threads());
}

enum { HEAD_ROWS = 256 };

asink_status asink_pass_loss(const asink_weights *w, asink_pass *p, int B, int T,
                             const int32_t *tokens, const int32_t *targets, int count, bool keep,
                             bool add_head, double *total) {
  asink_status st = asink_pass_forward(w, p, B, T, tokens);
  if (st) return st;
  const int Nr = B * T, V = w->V, C = w->C;
  asink_pass_scratch *sc = p->scratch;
  /* Row blocks of up to 128 MiB of logits, at least HEAD_ROWS rows: every block
   * reads the head weight twice and its gradient once, so fewer blocks save
   * memory traffic, and a small vocabulary gets one block (fewer thread teams). */
  int rows = (1 << 25) / V > HEAD_ROWS ? (1 << 25) / V : HEAD_ROWS;
  if (rows > Nr) rows = Nr;
  if ((st = asink_ws_reserve(&sc->logits, (size_t)rows * V * sizeof(float), "logits block"))) return st;
  float *head_grad = NULL;
  if (keep) {
    if ((st = asink_ws_reserve(&sc->head_grad, (size_t)V * C * sizeof(float), "head gradient"))) return st;
    head_grad = sc->head_grad.ptr;
  }
  *total = asink_head_xent(p->xh, w->head, w->head16, w->mixed, targets, Nr, C, V, count, keep ? p->dxh : NULL,
                           head_grad, add_head, sc->logits.ptr, rows, asink_region_threads());
  p->have_loss = keep;
  return ASINK_OK;
}

/* -------------------------------------------------------------- backward */

typedef struct {
  float *dres, *dtmp, *dpar, *datt, *dq, *dk, *dv, *dfh, *dfg, *dfu;
  asink_norm_scratch s;
} bwd_bufs;

static void layout_work(const asink_weights *w, const asink_pass *p, asink_carver *c, bwd_bufs *b) {
  const size_t N = p->N, C = w->C, HD = (size_t)w->H * w->D, KD = (size_t)w->Hkv * w->D, F = w->F;
  const int nt = asink_region_threads();
  b->dres = asink_take(c, N * C);
  b->dtmp = asink_take(c, N * C);
  b->dpar = w->cfg.parallel_residual ? asink_take(c, N * C) : NULL;
  b->datt = asink_take(c, N * HD);
  b->dq = asink_take(c, N * HD);
  b->dk = asink_take(c, N * KD);
  b->dv = asink_take(c, N * KD);
  b->dfh = asink_take(c, N * F);
  b->dfg = asink_take(c, N * F);
  b->dfu = asink_take(c, N * F);
  b->s = (asink_norm_scratch){asink_take(c, (size_t)nt * 2 * C), nt};
}

static asink_status reserve_work(const asink_weights *w, asink_pass *p, bwd_bufs *b) {
  asink_carver c = {NULL, 0};
  layout_work(w, p, &c, b);
  asink_status st = asink_ws_reserve(&p->scratch->work, c.used * sizeof(float), "backward buffers");
  if (st) return st;
  c = (asink_carver){p->scratch->work.ptr, 0};
  layout_work(w, p, &c, b);
  return ASINK_OK;
}

/* A projection's backward (dx (+)= dy W, dW += dy^T x) whose input x, n wide (dx and x both
 * of row stride n), was kept in float, or in bf16 (x16 not NULL). */
static void proj_backward(float *dx, bool acc, const float *dy, int ldy, const float *x,
                          const uint16_t *x16, int n, const asink_linear *L, int N, int nt) {
  if (x16) asink_linear_backward_x16(dx, n, acc, dy, ldy, x16, n, L, N, nt);
  else asink_linear_backward(dx, n, acc, dy, ldy, x, n, L, N, nt);
}

/* dx (+)= gradient through the attention sub-block given dy = d(o output); xa: the
 * sub-block's input (xa16 its bf16 copy, or NULL). */
static asink_status attn_backward(const asink_weights *w, asink_pass *p, int l, const float *xa,
                                  const uint16_t *xa16, const float *dy, float *dx, bool acc,
                                  bwd_bufs *b, int nt) {
  const asink_layer_weights *y = &w->layers[l];
  const asink_acts *a = &p->acts[l];
  const int N = p->N, C = w->C, HD = w->H * w->D, KD = w->Hkv * w->D;
  asink_linear o = with_grad(w, p, &y->o), q = with_grad(w, p, &y->q);
  asink_linear k = with_grad(w, p, &y->k), v = with_grad(w, p, &y->v);
  asink_linear_backward(b->datt, HD, false, dy, C, a->att, HD, &o, N, nt);
  const bool km = w->cfg.kernel_mlp;
  asink_status st = asink_attn_run_backward(
      y->attn, p->attn[l], grad_of(w, p, asink_attn_param_block(y->attn)), km ? a->qphi : a->q,
      km ? a->kphi : a->k, a->v, a->att, b->datt, b->dq, b->dk, b->dv);
  if (st) return st;
  if (km) { /* datt is free now: scratch for the feature map's backward */
    kernel_mlp_backward(w, p, y, a->q, a->qa, b->dq, b->datt, (size_t)N * w->H, w->D, nt);
    kernel_mlp_backward(w, p, y, a->k, a->ka, b->dk, b->datt, (size_t)N * w->Hkv, w->D, nt);
  }
  if (w->cfg.pos == ASINK_POS_ROPE) {
    asink_rope_backward(b->dq, w->rope_ws.ptr, w->rope_len, N, p->Tx, w->H, w->D, w->R, nt);
    asink_rope_backward(b->dk, w->rope_ws.ptr, w->rope_len, N, p->Tx, w->Hkv, w->D, w->R, nt);
  }
  if (w->qkv_per_head) { /* the forward's fused rows are free now: their gradient goes there */
    asink_linear qkv = with_grad(w, p, &y->qkv);
    asink_block_qkv_merge(w, b->dq, b->dk, b->dv, p->fused, N);
    proj_backward(dx, acc, p->fused, 3 * HD, xa, xa16, C, &qkv, N, nt);
    return ASINK_OK;
  }
  proj_backward(dx, acc, b->dq, HD, xa, xa16, C, &q, N, nt);
  proj_backward(dx, true, b->dk, KD, xa, xa16, C, &k, N, nt);
  proj_backward(dx, true, b->dv, KD, xa, xa16, C, &v, N, nt);
  return ASINK_OK;
}

static void ffn_backward(const asink_weights *w, const asink_pass *p, int l, const float *xf,
                         const uint16_t *xf16, const float *dy, float *dx, bool acc, bwd_bufs *b,
                         int nt) {
  const asink_layer_weights *y = &w->layers[l];
  const asink_acts *a = &p->acts[l];
  const int N = p->N, C = w->C, F = w->F;
  asink_linear down = with_grad(w, p, &y->down), up = with_grad(w, p, &y->up);
  proj_backward(b->dfh, false, dy, C, a->fh, a->fh16, F, &down, N, nt);
  if (w->gated) {
    asink_linear gate = with_grad(w, p, &y->gate);
    asink_act_backward(b->dfg, b->dfu, b->dfh, a->fg, a->fu, w->act, (size_t)N * F, nt);
    proj_backward(dx, acc, b->dfg, F, xf, xf16, C, &gate, N, nt);
    proj_backward(dx, true, b->dfu, F, xf, xf16, C, &up, N, nt);
  } else {
    asink_act_backward(b->dfg, NULL, b->dfh, a->fg, NULL, w->act, (size_t)N * F, nt);
    proj_backward(dx, acc, b->dfg, F, xf, xf16, C, &up, N, nt);
  }
}

/* b->dres holds d(block output); leaves d(block input) there. */
static asink_status block_backward(const asink_weights *w, asink_pass *p, int l, bwd_bufs *b,
                                   int nt) {
  const asink_layer_weights *y = &w->layers[l];
  const asink_acts *a = &p->acts[l];
  const size_t NC = (size_t)p->N * w->C;
  asink_status st;
  if (w->cfg.parallel_residual) {
    /* x_out = x_in + attn(norm1(x_in)) + ffn(norm2(x_in)) */
    ffn_backward(w, p, l, a->n2, a->n2_16, b->dres, b->dtmp, false, b, nt);
    if ((st = attn_backward(w, p, l, a->n1, a->n1_16, b->dres, b->dpar, false, b, nt))) return st;
    norm_bwd(w, p, b->dres, b->dtmp, a->x_in, y->ln2_w, y->ln2_b, a->mean2, a->rstd2, b->s);
    norm_bwd(w, p, b->dres, b->dpar, a->x_in, y->ln1_w, y->ln1_b, a->mean1, a->rstd1, b->s);
  } else if (w->cfg.norm == ASINK_NORMPOS_PRE) {
    /* x_out = x_mid + ffn(norm2(x_mid)); x_mid = x_in + attn(norm1(x_in)) */
    ffn_backward(w, p, l, a->n2, a->n2_16, b->dres, b->dtmp, false, b, nt);
    norm_bwd(w, p, b->dres, b->dtmp, a->x_mid, y->ln2_w, y->ln2_b, a->mean2, a->rstd2, b->s);
    if ((st = attn_backward(w, p, l, a->n1, a->n1_16, b->dres, b->dtmp, false, b, nt))) return st;
    norm_bwd(w, p, b->dres, b->dtmp, a->x_in, y->ln1_w, y->ln1_b, a->mean1, a->rstd1, b->s);
  } else {
    /* x_out = norm2(n2), n2 = x_mid + ffn(x_mid); x_mid = norm1(n1), n1 = x_in + attn(x_in) */
    memset(b->dtmp, 0, NC * sizeof(float));
    norm_bwd(w, p, b->dtmp, b->dres, a->n2, y->ln2_w, y->ln2_b, a->mean2, a->rstd2, b->s);
    memcpy(b->dres, b->dtmp, NC * sizeof(float));
    ffn_backward(w, p, l, a->x_mid, NULL, b->dtmp, b->dres, true, b, nt);
    memset(b->dtmp, 0, NC * sizeof(float));
    norm_bwd(w, p, b->dtmp, b->dres, a->n1, y->ln1_w, y->ln1_b, a->mean1, a->rstd1, b->s);
    memcpy(b->dres, b->dtmp, NC * sizeof(float));
    if ((st = attn_backward(w, p, l, a->x_in, NULL, b->dtmp, b->dres, true, b, nt))) return st;
  }
  return ASINK_OK;
}

asink_status asink_pass_backward(const asink_weights *w, asink_pass *p) {
  bwd_bufs b;
  asink_status st = reserve_work(w, p, &b);
  if (st) return st;
  p->have_loss = false;
  const int nt = asink_region_threads(), C = w->C, T = p->T, Tx = p->Tx;
  const size_t NC = (size_t)p->N * C;
  /* d(head input) back onto the residual rows of real tokens */
  float *dxf = b.dtmp;
  if (w->cfg.sink_token) {
    memset(dxf, 0, NC * sizeof(float));
    for (int s = 0; s < p->B; s++)
      memcpy(dxf + ((size_t)s * Tx + 1) * C, p->dxh + (size_t)s * T * C, sizeof(float) * (size_t)T * C);
  } else {
    memcpy(dxf, p->dxh, NC * sizeof(float));
  }
  const float *last = p->acts[w->L].x_in;
  if (w->cfg.norm == ASINK_NORMPOS_PRE) {
    memset(b.dres, 0, NC * sizeof(float));
    norm_bwd(w, p, b.dres, dxf, last, w->lnf_w, w->lnf_b, p->xf_mean, p->xf_rstd, b.s);
  } else {
    memcpy(b.dres, dxf, NC * sizeof(float));
  }
  for (int l = w->L - 1; l >= 0; l--)
    if ((st = block_backward(w, p, l, &b, nt))) return st;
  embed_backward(w, p, b.dres);
  return ASINK_OK;
}

void asink_pass_add_head_grad(const asink_weights *w, const asink_pass *p, int nt) {
  asink_residual_add(grad_of(w, p, w->head), p->scratch->head_grad.ptr, (size_t)w->V * w->C, nt);
}
