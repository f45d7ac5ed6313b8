/* The model's forward and backward passes, side by side: embedding, blocks
 * (pre- or post-norm), final norm, fused head + cross-entropy. Activations of
 * the last forward live in one grow-only workspace. */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "core/blas.h"
#include "attn/attn_internal.h"
#include "core/error.h"
#include "model/model_internal.h"

/* ---------------------------------------------------------------- buffers */

/* Buffers are carved from one workspace. A layout function runs twice: first with
 * no base to count the floats it needs (so sizes are never written down twice),
 * then on the reserved workspace to hand out the pointers. */
typedef struct {
  float *base; /* NULL: only count */
  size_t used;
} carver;

static float *take(carver *c, size_t n) {
  float *p = c->base ? c->base + c->used : NULL;
  c->used += (n + 15) / 16 * 16; /* keep every buffer 64-byte aligned */
  return p;
}

static void layout_acts(asink_model *m, carver *c, size_t N, size_t Nr) {
  const size_t C = m->C, HD = (size_t)m->H * m->D, KD = (size_t)m->Hkv * m->D, F = m->F;
  const bool km = m->cfg.kernel_mlp;
  for (int l = 0; l < m->L; l++) {
    asink_acts *a = &m->acts[l];
    a->x_in = take(c, N * C);
    a->n1 = take(c, N * C);
    a->mean1 = take(c, N);
    a->rstd1 = take(c, N);
    a->q = take(c, N * HD);
    a->k = take(c, N * KD);
    a->v = take(c, N * KD);
    a->att = take(c, N * HD);
    a->x_mid = take(c, N * C);
    a->n2 = take(c, N * C);
    a->mean2 = take(c, N);
    a->rstd2 = take(c, N);
    a->fg = take(c, N * F);
    a->fu = take(c, N * F);
    a->fh = take(c, N * F);
    a->qa = km ? take(c, N * HD) : NULL;
    a->qphi = km ? take(c, N * HD) : NULL;
    a->ka = km ? take(c, N * KD) : NULL;
    a->kphi = km ? take(c, N * KD) : NULL;
  }
  m->acts[m->L].x_in = take(c, N * C);
  m->xf = take(c, N * C);
  m->xf_mean = take(c, N);
  m->xf_rstd = take(c, N);
  m->xh = take(c, Nr * C);
  m->dxh = take(c, Nr * C);
  m->tok_ws = (int32_t *)take(c, N);
}

static asink_status reserve_acts(asink_model *m, int B, int T) {
  const int Tx = T + (m->cfg.sink_token ? 1 : 0);
  const size_t N = (size_t)B * Tx, Nr = (size_t)B * T;
  if (!m->acts && !(m->acts = asink_calloc((size_t)m->L + 1, sizeof *m->acts)))
    return asink_fail(ASINK_ERR_NOMEM, "cannot allocate activation table");
  carver c = {NULL, 0};
  layout_acts(m, &c, N, Nr);
  asink_status st = asink_ws_reserve(&m->acts_ws, c.used * sizeof(float), "model activations");
  if (st) return st;
  c = (carver){m->acts_ws.ptr, 0};
  layout_acts(m, &c, N, Nr);
  m->B = B, m->T = T, m->Tx = Tx, m->N = (int)N;
  return ASINK_OK;
}

/* Tables of RoPE angles / sinusoids long enough for Tx positions. */
asink_status asink_model_tables(asink_model *m, int Tx) {
  asink_status st;
  if (m->cfg.pos == ASINK_POS_ROPE && m->rope_len < Tx) {
    int len = Tx > m->cfg.max_pos ? Tx : m->cfg.max_pos;
    if ((st = asink_ws_reserve(&m->rope_ws, (size_t)len * m->D * sizeof(float), "RoPE table"))) return st;
    rope_table(m->rope_ws.ptr, len, m->D, m->cfg.rope_theta);
    m->rope_len = len;
  }
  if (m->cfg.pos == ASINK_POS_SINUSOIDAL && m->sinus_len < Tx) {
    int len = Tx > m->cfg.max_pos ? Tx : m->cfg.max_pos;
    if ((st = asink_ws_reserve(&m->sinus_ws, (size_t)len * m->C * sizeof(float), "sinusoid table"))) return st;
    sinusoid_table(m->sinus_ws.ptr, len, m->C);
    m->sinus_len = len;
  }
  return ASINK_OK;
}

/* ------------------------------------------------------------------ norms */

static void norm_fwd(const asink_model *m, float *y, float *mean, float *rstd, const float *x,
                     const float *w, const float *b, int nt) {
  if (m->cfg.family == ASINK_FAMILY_GPT2)
    layernorm_forward(y, mean, rstd, x, w, b, m->N, m->C, m->cfg.norm_eps, nt);
  else
    rmsnorm_forward(y, rstd, x, w, m->N, m->C, m->cfg.norm_eps, nt);
}

static void norm_bwd(const asink_model *m, float *dx, float *dw, float *db, const float *dy,
                     const float *x, const float *w, const float *mean, const float *rstd,
                     layer_scratch s) {
  if (m->cfg.family == ASINK_FAMILY_GPT2)
    layernorm_backward(dx, dw, db, dy, x, w, mean, rstd, m->N, m->C, s);
  else
    rmsnorm_backward(dx, dw, dy, x, w, rstd, m->N, m->C, s);
}

/* ------------------------------------------------------------ embedding */

static void embed_forward(asink_model *m, float *x) {
  const int C = m->C, Tx = m->Tx, s = m->cfg.sink_token ? 1 : 0;
  const float *pos = m->cfg.pos == ASINK_POS_LEARNED ? m->wpe
                     : m->cfg.pos == ASINK_POS_SINUSOIDAL ? (const float *)m->sinus_ws.ptr
                                                           : NULL;
#pragma omp parallel for num_threads(asink_model_threads()) schedule(static) if (m->N > 64)
  for (int n = 0; n < m->N; n++) {
    int t = n % Tx;
    const float *src = (s && t == 0) ? m->sink_tok : m->wte + (size_t)m->tok_ws[n] * C;
    float *dst = x + (size_t)n * C;
    memcpy(dst, src, sizeof(float) * C);
    if (pos)
      for (int j = 0; j < C; j++) dst[j] += pos[(size_t)t * C + j];
  }
}

/* Rows of one token id collide, so threads split the columns, not the rows. */
static void embed_backward(asink_model *m, const float *dx) {
  const int C = m->C, Tx = m->Tx, s = m->cfg.sink_token ? 1 : 0;
#pragma omp parallel num_threads(asink_model_threads()) if (m->N > 64)
  {
    int parts = omp_get_num_threads(), me = omp_get_thread_num();
    int lo = C * me / parts, hi = C * (me + 1) / parts;
    for (int n = 0; n < m->N; n++) {
      int t = n % Tx;
      const float *g = dx + (size_t)n * C;
      float *dst = (s && t == 0) ? m->g_sink_tok : m->g_wte + (size_t)m->tok_ws[n] * C;
      for (int j = lo; j < hi; j++) dst[j] += g[j];
      if (m->cfg.pos == ASINK_POS_LEARNED)
        for (int j = lo; j < hi; j++) m->g_wpe[(size_t)t * C + j] += g[j];
    }
  }
}

/* ------------------------------------------------------------- one block */

/* The study's MLP feature map phi(x) = W2 relu(W1 x) on rows of head vectors. */
static void kernel_mlp_forward(const asink_layer *y, const float *x, float *a, float *phi, size_t rows,
                               int D, int nt) {
  linear_forward(a, D, x, D, &y->kmlp1, (int)rows, nt);
  act_forward(a, a, NULL, ACT_RELU, rows * D, nt);
  linear_forward(phi, D, a, D, &y->kmlp2, (int)rows, nt);
}

/* dx = d phi / dx^T dphi, with dW1, dW2 accumulated; tmp holds rows x D floats.
 * relu(h) > 0 iff h > 0, so the stored activation a gives the derivative. */
static void kernel_mlp_backward(const asink_layer *y, const float *x, const float *a, float *dphi_dx,
                                float *tmp, size_t rows, int D, int nt) {
  linear_backward(tmp, D, false, dphi_dx, D, a, D, &y->kmlp2, (int)rows, nt);
  for (size_t i = 0; i < rows * D; i++)
    if (!(a[i] > 0.f)) tmp[i] = 0.f;
  linear_backward(dphi_dx, D, false, tmp, D, x, D, &y->kmlp1, (int)rows, nt);
}

/* Attention sub-block of layer l on input xa: q, k, v, RoPE, attention; y = o(att).
 * An attached observer gets the ops' importance and entropy, computed in the same pass. */
static asink_status attn_forward(asink_model *m, int l, const float *xa, float *out, int nt) {
  asink_layer *y = &m->layers[l];
  asink_acts *a = &m->acts[l];
  const int N = m->N, C = m->C, HD = m->H * m->D, KD = m->Hkv * m->D;
  linear_forward(a->q, HD, xa, C, &y->q, N, nt);
  linear_forward(a->k, KD, xa, C, &y->k, N, nt);
  linear_forward(a->v, KD, xa, C, &y->v, N, nt);
  if (m->cfg.pos == ASINK_POS_ROPE) {
    rope_forward(a->q, m->rope_ws.ptr, m->rope_len, N, m->Tx, m->H, m->D, nt);
    rope_forward(a->k, m->rope_ws.ptr, m->rope_len, N, m->Tx, m->Hkv, m->D, nt);
  }
  const float *qin = a->q, *kin = a->k;
  if (m->cfg.kernel_mlp) {
    kernel_mlp_forward(y, a->q, a->qa, a->qphi, (size_t)N * m->H, m->D, nt);
    kernel_mlp_forward(y, a->k, a->ka, a->kphi, (size_t)N * m->Hkv, m->D, nt);
    qin = a->qphi, kin = a->kphi;
  }
  asink_status st = asink_attn_forward_stats(y->attn, m->B, m->Tx, qin, kin, a->v, a->att,
                                             m->obs.ctx ? m->obs_imp : NULL,
                                             m->obs.ctx ? m->obs_ent : NULL);
  if (st) return st;
  if (m->obs.ctx) m->obs.layer(m->obs.ctx, m, l);
  linear_forward(out, C, a->att, HD, &y->o, N, nt);
  return ASINK_OK;
}

static void ffn_forward(asink_model *m, asink_layer *y, asink_acts *a, const float *xf, float *out,
                        int nt) {
  const int N = m->N, C = m->C, F = m->F;
  if (m->gated) {
    linear_forward(a->fg, F, xf, C, &y->gate, N, nt);
    linear_forward(a->fu, F, xf, C, &y->up, N, nt);
    act_forward(a->fh, a->fg, a->fu, m->act, (size_t)N * F, nt);
  } else {
    linear_forward(a->fg, F, xf, C, &y->up, N, nt);
    act_forward(a->fh, a->fg, NULL, m->act, (size_t)N * F, nt);
  }
  linear_forward(out, C, a->fh, F, &y->down, N, nt);
}

static asink_status block_forward(asink_model *m, int l, int nt) {
  asink_layer *y = &m->layers[l];
  asink_acts *a = &m->acts[l];
  float *x_out = m->acts[l + 1].x_in;
  const size_t NC = (size_t)m->N * m->C;
  asink_status st;
  if (m->cfg.norm == ASINK_NORMPOS_PRE) {
    norm_fwd(m, a->n1, a->mean1, a->rstd1, a->x_in, y->ln1_w, y->ln1_b, nt);
    if ((st = attn_forward(m, l, a->n1, a->x_mid, nt))) return st;
    residual_add(a->x_mid, a->x_in, NC, nt);
    norm_fwd(m, a->n2, a->mean2, a->rstd2, a->x_mid, y->ln2_w, y->ln2_b, nt);
    ffn_forward(m, y, a, a->n2, x_out, nt);
    residual_add(x_out, a->x_mid, NC, nt);
  } else {
    if ((st = attn_forward(m, l, a->x_in, a->n1, nt))) return st;
    residual_add(a->n1, a->x_in, NC, nt);
    norm_fwd(m, a->x_mid, a->mean1, a->rstd1, a->n1, y->ln1_w, y->ln1_b, nt);
    ffn_forward(m, y, a, a->x_mid, a->n2, nt);
    residual_add(a->n2, a->x_mid, NC, nt);
    norm_fwd(m, x_out, a->mean2, a->rstd2, a->n2, y->ln2_w, y->ln2_b, nt);
  }
  return ASINK_OK;
}

/* --------------------------------------------------------------- forward */

static asink_status check_tokens(const asink_model *m, int B, int T, const int32_t *tokens) {
  if (!tokens) return asink_fail(ASINK_ERR_ARG, "tokens is NULL");
  if (B < 1 || T < 1) return asink_fail(ASINK_ERR_SHAPE, "B=%d, T=%d must be positive", B, T);
  int Tx = T + (m->cfg.sink_token ? 1 : 0);
  if (m->cfg.pos == ASINK_POS_LEARNED && Tx > m->cfg.max_pos)
    return asink_fail(ASINK_ERR_SHAPE, "T=%d exceeds the model's %d learned positions%s", T,
                      m->cfg.max_pos, m->cfg.sink_token ? " (one is the sink token's)" : "");
  for (size_t i = 0; i < (size_t)B * T; i++)
    if (tokens[i] < 0 || tokens[i] >= m->V)
      return asink_fail(ASINK_ERR_ARG, "token %d at position %zu is outside the vocabulary [0, %d)",
                        tokens[i], i, m->V);
  return ASINK_OK;
}

asink_status asink_model_run(asink_model *m, int B, int T, const int32_t *tokens) {
  asink_status st = check_tokens(m, B, T, tokens);
  if (st) return st;
  m->have_loss = false;
  m->rep_pass = false;
  if ((st = reserve_acts(m, B, T))) return st;
  if ((st = asink_model_tables(m, m->Tx))) return st;
  const int s = m->cfg.sink_token ? 1 : 0, nt = asink_model_threads(), C = m->C;
  for (int b = 0; b < B; b++)
    for (int t = 0; t < m->Tx; t++) m->tok_ws[b * m->Tx + t] = (s && t == 0) ? -1 : tokens[b * T + t - s];
  embed_forward(m, m->acts[0].x_in);
  if (m->obs.ctx && (st = m->obs.begin(m->obs.ctx, m, &m->obs_imp, &m->obs_ent))) return st;
  for (int l = 0; l < m->L; l++)
    if ((st = block_forward(m, l, nt))) return st;
  if (m->obs.ctx) m->obs.end(m->obs.ctx, m);
  const float *last = m->acts[m->L].x_in;
  if (m->cfg.norm == ASINK_NORMPOS_PRE)
    norm_fwd(m, m->xf, m->xf_mean, m->xf_rstd, last, m->lnf_w, m->lnf_b, nt);
  else
    memcpy(m->xf, last, sizeof(float) * (size_t)m->N * C);
  /* the head sees the real tokens only */
  if (s)
    for (int b = 0; b < B; b++)
      memcpy(m->xh + (size_t)b * T * C, m->xf + ((size_t)b * m->Tx + 1) * C, sizeof(float) * (size_t)T * C);
  else
    memcpy(m->xh, m->xf, sizeof(float) * (size_t)m->N * C);
  return ASINK_OK;
}

asink_status asink_model_forward(asink_model *m, int B, int T, const int32_t *tokens, float *logits) {
  if (!m) return asink_fail(ASINK_ERR_ARG, "asink_model_forward: model is NULL");
  asink_status st = asink_model_run(m, B, T, tokens);
  if (st || !logits) return st;
  asink_sgemm(false, true, B * T, m->V, m->C, 1.f, m->xh, m->C, m->head, m->C, 0.f, logits, m->V,
              asink_model_threads());
  return ASINK_OK;
}

enum { HEAD_ROWS = 256 };

asink_status asink_model_slice_loss(asink_model *m, int B, int T, const int32_t *tokens,
                                    const int32_t *targets, int count, bool keep, double *total) {
  asink_status st = asink_model_run(m, B, T, tokens);
  if (st) return st;
  const int Nr = B * T, V = m->V, C = m->C;
  /* Row blocks of up to 128 MiB of logits, at least HEAD_ROWS rows: every block
   * reads the head weight twice and its gradient once, so fewer blocks save
   * memory traffic, and a small vocabulary gets one block (fewer thread teams). */
  int rows = (1 << 25) / V > HEAD_ROWS ? (1 << 25) / V : HEAD_ROWS;
  if (rows > Nr) rows = Nr;
  if ((st = asink_ws_reserve(&m->logits_ws, (size_t)rows * V * sizeof(float), "logits block"))) return st;
  float *pending = NULL;
  if (keep) {
    if ((st = asink_ws_reserve(&m->head_pending, (size_t)V * C * sizeof(float), "head gradient"))) return st;
    pending = m->head_pending.ptr;
  }
  *total = head_xent(m->xh, m->head, targets, Nr, C, V, count, keep ? m->dxh : NULL, pending,
                     m->pending_acc, m->logits_ws.ptr, rows, asink_model_threads());
  m->have_loss = keep;
  return ASINK_OK;
}

static asink_status loss_common(asink_model *m, int B, int T, const int32_t *tokens,
                                const int32_t *targets, float *loss, bool keep) {
  if (!m || !targets || !loss) return asink_fail(ASINK_ERR_ARG, "asink_model_loss: NULL argument");
  asink_status st = check_tokens(m, B, T, tokens);
  if (st) return st;
  m->have_loss = false;
  m->rep_pass = false;
  const int Nr = B * T, V = m->V;
  int count = 0;
  for (int i = 0; i < Nr; i++) {
    if (targets[i] >= V)
      return asink_fail(ASINK_ERR_ARG, "target %d at position %d is outside the vocabulary [0, %d)",
                        targets[i], i, V);
    count += targets[i] >= 0;
  }
  double total = 0.0;
  if (!asink_replicas_loss(m, B, T, tokens, targets, count, keep, &total, &st))
    st = asink_model_slice_loss(m, B, T, tokens, targets, count, keep, &total);
  if (st) return st;
  *loss = count ? (float)(total / count) : 0.f;
  m->have_loss = keep;
  return ASINK_OK;
}

asink_status asink_model_loss(asink_model *m, int B, int T, const int32_t *tokens,
                              const int32_t *targets, float *loss) {
  return loss_common(m, B, T, tokens, targets, loss, true);
}

asink_status asink_model_eval_loss(asink_model *m, int B, int T, const int32_t *tokens,
                                   const int32_t *targets, float *loss) {
  return loss_common(m, B, T, tokens, targets, loss, false);
}

/* -------------------------------------------------------------- backward */

typedef struct {
  float *dres, *dtmp, *datt, *dq, *dk, *dv, *dfh, *dfg, *dfu;
  layer_scratch s;
} bwd_bufs;

static void layout_work(const asink_model *m, carver *c, bwd_bufs *w) {
  const size_t N = m->N, C = m->C, HD = (size_t)m->H * m->D, KD = (size_t)m->Hkv * m->D, F = m->F;
  const int nt = asink_model_threads();
  w->dres = take(c, N * C);
  w->dtmp = take(c, N * C);
  w->datt = take(c, N * HD);
  w->dq = take(c, N * HD);
  w->dk = take(c, N * KD);
  w->dv = take(c, N * KD);
  w->dfh = take(c, N * F);
  w->dfg = take(c, N * F);
  w->dfu = take(c, N * F);
  w->s = (layer_scratch){take(c, (size_t)nt * 2 * C), nt};
}

static asink_status reserve_work(asink_model *m, bwd_bufs *w) {
  carver c = {NULL, 0};
  layout_work(m, &c, w);
  asink_status st = asink_ws_reserve(&m->work_ws, c.used * sizeof(float), "backward buffers");
  if (st) return st;
  c = (carver){m->work_ws.ptr, 0};
  layout_work(m, &c, w);
  return ASINK_OK;
}

/* dx (+)= gradient through the attention sub-block given dy = d(o output). */
static asink_status attn_backward(asink_model *m, asink_layer *y, asink_acts *a, const float *xa,
                                  const float *dy, float *dx, bool acc, bwd_bufs *w, int nt) {
  const int N = m->N, C = m->C, HD = m->H * m->D, KD = m->Hkv * m->D;
  linear_backward(w->datt, HD, false, dy, C, a->att, HD, &y->o, N, nt);
  const bool km = m->cfg.kernel_mlp;
  asink_status st = asink_attn_backward(y->attn, km ? a->qphi : a->q, km ? a->kphi : a->k, a->v,
                                        a->att, w->datt, w->dq, w->dk, w->dv);
  if (st) return st;
  if (km) { /* datt is free now: scratch for the feature map's backward */
    kernel_mlp_backward(y, a->q, a->qa, w->dq, w->datt, (size_t)N * m->H, m->D, nt);
    kernel_mlp_backward(y, a->k, a->ka, w->dk, w->datt, (size_t)N * m->Hkv, m->D, nt);
  }
  if (m->cfg.pos == ASINK_POS_ROPE) {
    rope_backward(w->dq, m->rope_ws.ptr, m->rope_len, N, m->Tx, m->H, m->D, nt);
    rope_backward(w->dk, m->rope_ws.ptr, m->rope_len, N, m->Tx, m->Hkv, m->D, nt);
  }
  linear_backward(dx, C, acc, w->dq, HD, xa, C, &y->q, N, nt);
  linear_backward(dx, C, true, w->dk, KD, xa, C, &y->k, N, nt);
  linear_backward(dx, C, true, w->dv, KD, xa, C, &y->v, N, nt);
  return ASINK_OK;
}

static void ffn_backward(asink_model *m, asink_layer *y, asink_acts *a, const float *xf,
                         const float *dy, float *dx, bool acc, bwd_bufs *w, int nt) {
  const int N = m->N, C = m->C, F = m->F;
  linear_backward(w->dfh, F, false, dy, C, a->fh, F, &y->down, N, nt);
  if (m->gated) {
    act_backward(w->dfg, w->dfu, w->dfh, a->fg, a->fu, m->act, (size_t)N * F, nt);
    linear_backward(dx, C, acc, w->dfg, F, xf, C, &y->gate, N, nt);
    linear_backward(dx, C, true, w->dfu, F, xf, C, &y->up, N, nt);
  } else {
    act_backward(w->dfg, NULL, w->dfh, a->fg, NULL, m->act, (size_t)N * F, nt);
    linear_backward(dx, C, acc, w->dfg, F, xf, C, &y->up, N, nt);
  }
}

/* w->dres holds d(block output); leaves d(block input) there. */
static asink_status block_backward(asink_model *m, int l, bwd_bufs *w, int nt) {
  asink_layer *y = &m->layers[l];
  asink_acts *a = &m->acts[l];
  const size_t NC = (size_t)m->N * m->C;
  asink_status st;
  if (m->cfg.norm == ASINK_NORMPOS_PRE) {
    /* x_out = x_mid + ffn(norm2(x_mid)); x_mid = x_in + attn(norm1(x_in)) */
    ffn_backward(m, y, a, a->n2, w->dres, w->dtmp, false, w, nt);
    norm_bwd(m, w->dres, y->g_ln2_w, y->g_ln2_b, w->dtmp, a->x_mid, y->ln2_w, a->mean2, a->rstd2, w->s);
    if ((st = attn_backward(m, y, a, a->n1, w->dres, w->dtmp, false, w, nt))) return st;
    norm_bwd(m, w->dres, y->g_ln1_w, y->g_ln1_b, w->dtmp, a->x_in, y->ln1_w, a->mean1, a->rstd1, w->s);
  } else {
    /* x_out = norm2(n2), n2 = x_mid + ffn(x_mid); x_mid = norm1(n1), n1 = x_in + attn(x_in) */
    memset(w->dtmp, 0, NC * sizeof(float));
    norm_bwd(m, w->dtmp, y->g_ln2_w, y->g_ln2_b, w->dres, a->n2, y->ln2_w, a->mean2, a->rstd2, w->s);
    memcpy(w->dres, w->dtmp, NC * sizeof(float));
    ffn_backward(m, y, a, a->x_mid, w->dtmp, w->dres, true, w, nt);
    memset(w->dtmp, 0, NC * sizeof(float));
    norm_bwd(m, w->dtmp, y->g_ln1_w, y->g_ln1_b, w->dres, a->n1, y->ln1_w, a->mean1, a->rstd1, w->s);
    memcpy(w->dres, w->dtmp, NC * sizeof(float));
    if ((st = attn_backward(m, y, a, a->x_in, w->dtmp, w->dres, true, w, nt))) return st;
  }
  return ASINK_OK;
}

asink_status asink_model_run_backward(asink_model *m) {
  bwd_bufs w;
  asink_status st = reserve_work(m, &w);
  if (st) return st;
  const int nt = asink_model_threads(), C = m->C, T = m->T, Tx = m->Tx;
  const size_t NC = (size_t)m->N * C;
  /* d(head input) back onto the residual rows of real tokens */
  float *dxf = w.dtmp;
  if (m->cfg.sink_token) {
    memset(dxf, 0, NC * sizeof(float));
    for (int b = 0; b < m->B; b++)
      memcpy(dxf + ((size_t)b * Tx + 1) * C, m->dxh + (size_t)b * T * C, sizeof(float) * (size_t)T * C);
  } else {
    memcpy(dxf, m->dxh, NC * sizeof(float));
  }
  const float *last = m->acts[m->L].x_in;
  if (m->cfg.norm == ASINK_NORMPOS_PRE) {
    memset(w.dres, 0, NC * sizeof(float));
    norm_bwd(m, w.dres, m->g_lnf_w, m->g_lnf_b, dxf, last, m->lnf_w, m->xf_mean, m->xf_rstd, w.s);
  } else {
    memcpy(w.dres, dxf, NC * sizeof(float));
  }
  for (int l = m->L - 1; l >= 0; l--)
    if ((st = block_backward(m, l, &w, nt))) return st;
  embed_backward(m, w.dres);
  return ASINK_OK;
}

asink_status asink_model_backward(asink_model *m) {
  if (!m) return asink_fail(ASINK_ERR_ARG, "asink_model_backward: model is NULL");
  if (!m->have_loss) return asink_fail(ASINK_ERR_STATE, "asink_model_backward: no loss to differentiate");
  if (m->rep_pass) {
    m->have_loss = false;
    return asink_replicas_backward(m);
  }
  asink_status st = asink_model_run_backward(m);
  if (st) return st;
  const float *pending = m->head_pending.ptr;
  residual_add(m->g_head, pending, (size_t)m->V * m->C, asink_model_threads());
  m->have_loss = false;
  return ASINK_OK;
}
