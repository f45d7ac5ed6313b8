/* The attention-op handle: creation from a spec, learnable parameters, argument
 * checks, and the per-call states that share an op. The arithmetic lives in
 * blocked.c (drivers) and the bases' files (row math). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "attn/op_internal.h"
#include "core/error.h"
#include "core/runtime.h"

/* ------------------------------------------------------------- parameters */

/* Parameters in their fixed order. */
typedef struct {
  const char *name;
  size_t offset; /* floats from the start of the block */
  int ndim;
  int64_t shape[2];
} param_entry;

static int list_params(const asink_attn *op, param_entry v[4]) {
  int n = 0;
  size_t off = 0;
#define ENTRY(name_, nd, s0, s1)                                         \
  do {                                                                   \
    v[n++] = (param_entry){name_, off, nd, {s0, s1}};                    \
    off += (size_t)(s0) * ((nd) == 2 ? (size_t)(s1) : 1);                \
  } while (0)
  if (op->n_kb) ENTRY("k_bias", 2, op->n_kb, op->D);
  if (op->n_vb) ENTRY("v_bias", 2, op->n_vb, op->D);
  if (op->spec.sink == ASINK_SINK_HEAD) ENTRY("sinks", 1, op->H, 0);
  if (op->spec.relbias) ENTRY("relative_bias", 2, op->H, ASINK_REL_BUCKETS);
#undef ENTRY
  return n;
}

static size_t numel(const param_entry *e) {
  return (size_t)e->shape[0] * (e->ndim == 2 ? (size_t)e->shape[1] : 1);
}

size_t asink_attn_param_floats(const asink_attn *op) {
  param_entry v[4];
  int n = op ? list_params(op, v) : 0;
  return n ? v[n - 1].offset + numel(&v[n - 1]) : 0;
}

attn_param_views asink_attn_views(const asink_attn *op, float *block) {
  attn_param_views pv = {0};
  param_entry v[4];
  int n = list_params(op, v);
  for (int i = 0; i < n && block; i++) {
    float *at = block + v[i].offset;
    switch (v[i].name[0]) {
    case 'k': pv.k_bias = at; break;
    case 'v': pv.v_bias = at; break;
    case 's': pv.sinks = at; break;
    default: pv.rel = at; break;
    }
  }
  return pv;
}

float *asink_attn_param_block(const asink_attn *op) { return op ? op->params : NULL; }

void asink_attn_use_storage(asink_attn *op, float *data) {
  size_t np = asink_attn_param_floats(op);
  if (!np) return;
  memcpy(data, op->params, np * sizeof(float));
  if (op->owns_storage) asink_free(op->params);
  op->params = data, op->owns_storage = false;
  op->p = asink_attn_views(op, data);
}

/* ----------------------------------------------------------------- states */

asink_status asink_attn_state_create(asink_attn_state **out) {
  *out = asink_calloc(1, sizeof **out);
  return *out ? ASINK_OK : asink_fail(ASINK_ERR_NOMEM, "cannot allocate an attention state");
}

void asink_attn_state_watch_first_key(asink_attn_state *s, float *first_share) {
  s->first_share = first_share;
}

void asink_attn_state_free(asink_attn_state *s) {
  if (!s) return;
  asink_ws_release(&s->row_stats);
  asink_ws_release(&s->feat);
  asink_ws_release(&s->thread_ws);
  asink_ws_release(&s->accum);
  asink_ws_release(&s->buckets);
  asink_ws_release(&s->pos);
  asink_free(s);
}

/* ----------------------------------------------------------------- handle */

asink_status asink_attn_create(asink_attn **out, const char *spec_text, int n_head, int n_kv_head,
                               int head_dim) {
  if (!out) return asink_fail(ASINK_ERR_ARG, "asink_attn_create: output pointer is NULL");
  *out = NULL;
  asink_status st = asink_runtime_ready();
  if (st) return st;
  asink_spec spec;
  if ((st = asink_spec_parse(spec_text, &spec))) return st;
  if (n_head < 1) return asink_fail(ASINK_ERR_SHAPE, "n_head=%d must be positive", n_head);
  if (n_kv_head < 1) return asink_fail(ASINK_ERR_SHAPE, "n_kv_head=%d must be positive", n_kv_head);
  if (head_dim < 1) return asink_fail(ASINK_ERR_SHAPE, "head_dim=%d must be positive", head_dim);
  if (n_head % n_kv_head)
    return asink_fail(ASINK_ERR_SHAPE, "n_head=%d is not a multiple of n_kv_head=%d", n_head,
                      n_kv_head);
  if ((int64_t)n_head * head_dim > INT32_MAX / 4)
    return asink_fail(ASINK_ERR_SHAPE, "n_head=%d x head_dim=%d is too large", n_head, head_dim);

  asink_attn *op = asink_calloc(1, sizeof *op);
  if (!op) return asink_fail(ASINK_ERR_NOMEM, "cannot allocate an attention op");
  op->spec = spec;
  op->H = n_head;
  op->Hkv = n_kv_head;
  op->D = head_dim;
  op->scale = spec.has_scale ? spec.scale : 1.f / sqrtf((float)head_dim);
  op->n_kb = spec.kbias == ASINK_PARAM_OFF ? 0 : spec.kbias == ASINK_PARAM_SHARED ? 1 : n_head;
  op->n_vb = spec.vbias == ASINK_PARAM_OFF ? 0 : spec.vbias == ASINK_PARAM_SHARED ? 1 : n_head;
  asink_spec_format(&spec, op->scale, op->canon, sizeof op->canon);
  size_t np = asink_attn_param_floats(op);
  if (np) {
    op->params = asink_calloc(np, sizeof(float));
    op->grads = asink_calloc(np, sizeof(float));
    op->owns_storage = true;
    op->p = asink_attn_views(op, op->params);
  }
  if ((np && (!op->params || !op->grads)) || asink_attn_state_create(&op->own)) {
    asink_attn_free(op);
    return asink_fail(ASINK_ERR_NOMEM, "cannot allocate an attention op");
  }
  *out = op;
  return ASINK_OK;
}

void asink_attn_free(asink_attn *op) {
  if (!op) return;
  if (op->owns_storage) asink_free(op->params);
  asink_free(op->grads);
  asink_attn_state_free(op->own);
  asink_free(op);
}

const char *asink_attn_spec(const asink_attn *op) { return op ? op->canon : ""; }

int asink_attn_key_count(const asink_attn *op, int T) {
  return op ? T + (op->n_kb ? 1 : 0) : T;
}

int asink_attn_param_count(const asink_attn *op) {
  param_entry v[4];
  return op ? list_params(op, v) : 0;
}

asink_status asink_attn_param_info(const asink_attn *op, int i, const char **name, int *ndim,
                                   int64_t shape[2]) {
  if (!op) return asink_fail(ASINK_ERR_ARG, "asink_attn_param_info: op is NULL");
  param_entry v[4];
  int n = list_params(op, v);
  if (i < 0 || i >= n)
    return asink_fail(ASINK_ERR_ARG, "parameter index %d out of range (the op has %d)", i, n);
  if (name) *name = v[i].name;
  if (ndim) *ndim = v[i].ndim;
  if (shape) shape[0] = v[i].shape[0], shape[1] = v[i].shape[1];
  return ASINK_OK;
}

static asink_status find_param(asink_attn *op, const char *name, bool grad, float **data,
                               size_t *count) {
  if (!op || !name || !data)
    return asink_fail(ASINK_ERR_ARG, "asink_attn_param/grad: NULL argument");
  param_entry v[4];
  int n = list_params(op, v);
  for (int i = 0; i < n; i++) {
    if (strcmp(v[i].name, name)) continue;
    *data = (grad ? op->grads : op->params) + v[i].offset;
    if (count) *count = numel(&v[i]);
    return ASINK_OK;
  }
  return asink_fail(ASINK_ERR_ARG, "attention op '%s' has no parameter '%s'", op->canon, name);
}

asink_status asink_attn_param(asink_attn *op, const char *name, float **data, size_t *count) {
  return find_param(op, name, false, data, count);
}

asink_status asink_attn_grad(asink_attn *op, const char *name, float **data, size_t *count) {
  return find_param(op, name, true, data, count);
}

void asink_attn_zero_grad(asink_attn *op) {
  if (op && op->grads) memset(op->grads, 0, asink_attn_param_floats(op) * sizeof(float));
}

/* ----------------------------------------------------------------- passes */

/* Positions must increase (queries strictly, keys strictly) and every query must see a
 * key; their copies go into the state for backward. */
static asink_status set_geometry(const asink_attn *op, asink_attn_state *s, int Tq, int Tk,
                                 const int64_t *qpos, const int64_t *kpos) {
  s->g = (attn_geom){Tq, Tk, NULL, NULL, (int64_t)Tk - Tq};
  if (qpos || kpos) {
    size_t n = (qpos ? (size_t)Tq : 0) + (kpos ? (size_t)Tk : 0);
    asink_status st = asink_ws_reserve(&s->pos, n * sizeof(int64_t), "attention positions");
    if (st) return st;
    int64_t *p = s->pos.ptr;
    const char *what[2] = {"q_pos", "k_pos"};
    const int64_t *src[2] = {qpos, kpos};
    const int len[2] = {Tq, Tk};
    for (int w = 0; w < 2; w++) {
      if (!src[w]) continue;
      for (int i = 0; i < len[w]; i++) {
        if (src[w][i] < 0 || src[w][i] > INT32_MAX)
          return asink_fail(ASINK_ERR_ARG, "%s[%d]=%lld: positions must be in [0, %d]", what[w], i,
                            (long long)src[w][i], INT32_MAX);
        if (i && src[w][i] <= src[w][i - 1])
          return asink_fail(ASINK_ERR_ARG, "%s[%d]=%lld does not follow %s[%d]=%lld: positions must increase",
                            what[w], i, (long long)src[w][i], what[w], i - 1, (long long)src[w][i - 1]);
      }
      memcpy(p, src[w], (size_t)len[w] * sizeof(int64_t));
      if (w == 0) s->g.qpos = p;
      else s->g.kpos = p;
      p += len[w];
    }
  } else if (Tq > Tk) {
    return asink_fail(ASINK_ERR_SHAPE, "Tq=%d queries against Tk=%d keys: without positions the "
                                       "queries are the last Tq keys', so Tq <= Tk", Tq, Tk);
  }
  for (int r = 0; r < Tq; r++) {
    int lo, hi;
    asink_visible(&op->spec, &s->g, r, &lo, &hi);
    if (lo > hi)
      return asink_fail(ASINK_ERR_SHAPE, "the query at position %lld sees none of the %d keys under '%s'",
                        (long long)asink_qpos(&s->g, r), Tk, op->canon);
  }
  return ASINK_OK;
}

static asink_status forward_checked(const asink_attn *op, asink_attn_state *s, int B, int Tq,
                                    int Tk, const int64_t *qpos, const int64_t *kpos,
                                    const float *q, const float *k, const float *v, float *out,
                                    float *importance, float *entropy) {
  if (!op || !q || !k || !v || !out)
    return asink_fail(ASINK_ERR_ARG, "asink_attn_forward: NULL %s",
                      !op ? "op" : !q ? "q" : !k ? "k" : !v ? "v" : "out");
  if (B < 1 || Tq < 1 || Tk < 1)
    return Tq == Tk ? asink_fail(ASINK_ERR_SHAPE, "asink_attn_forward: B=%d, T=%d must be positive", B, Tq)
                    : asink_fail(ASINK_ERR_SHAPE, "asink_attn_forward: B=%d, Tq=%d, Tk=%d must be positive",
                                 B, Tq, Tk);
  int T = Tq > Tk ? Tq : Tk;
  if ((int64_t)B * T * op->H * op->D > INT64_MAX / 16 || (int64_t)T + 1 > INT32_MAX / 2)
    return asink_fail(ASINK_ERR_SHAPE, "asink_attn_forward: B=%d x T=%d is too large", B, T);
  s->op = NULL;
  s->B = B;
  asink_status st = set_geometry(op, s, Tq, Tk, qpos, kpos);
  if (st == ASINK_OK) st = asink_attn_forward_blocked(op, s, q, k, v, out, importance, entropy);
  if (st == ASINK_OK) s->op = op;
  return st;
}

asink_status asink_attn_run_forward(const asink_attn *op, asink_attn_state *s, int B, int T,
                                    const float *q, const float *k, const float *v, float *out,
                                    float *importance, float *entropy) {
  return forward_checked(op, s, B, T, T, NULL, NULL, q, k, v, out, importance, entropy);
}

asink_status asink_attn_run_forward_at(const asink_attn *op, asink_attn_state *s, int B, int Tq,
                                       int Tk, const int64_t *q_pos, const int64_t *k_pos,
                                       const float *q, const float *k, const float *v, float *out,
                                       float *importance, float *entropy) {
  return forward_checked(op, s, B, Tq, Tk, q_pos, k_pos, q, k, v, out, importance, entropy);
}

asink_status asink_attn_run_backward(const asink_attn *op, asink_attn_state *s,
                                     asink_attn_grads g, const float *q, const float *k,
                                     const float *v, const float *out, const float *dout,
                                     float *dq, float *dk, float *dv) {
  if (!op || !q || !k || !v || !out || !dout || !dq || !dk || !dv)
    return asink_fail(ASINK_ERR_ARG, "asink_attn_backward: NULL argument");
  if (s->op != op)
    return asink_fail(ASINK_ERR_STATE, "asink_attn_backward: no forward to differentiate");
  attn_param_views gv = asink_attn_views(op, g);
  return asink_attn_backward_blocked(op, s, &gv, q, k, v, out, dout, dq, dk, dv);
}

asink_status asink_attn_forward(asink_attn *op, int B, int T, const float *q, const float *k,
                                const float *v, float *out, float *importance) {
  if (!op) return asink_fail(ASINK_ERR_ARG, "asink_attn_forward: NULL op");
  return asink_attn_run_forward(op, op->own, B, T, q, k, v, out, importance, NULL);
}

asink_status asink_attn_forward_at(asink_attn *op, int B, int Tq, int Tk, const int64_t *q_pos,
                                   const int64_t *k_pos, const float *q, const float *k,
                                   const float *v, float *out, float *importance) {
  if (!op) return asink_fail(ASINK_ERR_ARG, "asink_attn_forward_at: NULL op");
  return asink_attn_run_forward_at(op, op->own, B, Tq, Tk, q_pos, k_pos, q, k, v, out, importance,
                                   NULL);
}

asink_status asink_attn_backward(asink_attn *op, int B, int Tq, int Tk, const float *q,
                                 const float *k, const float *v, const float *out,
                                 const float *dout, float *dq, float *dk, float *dv) {
  if (!op) return asink_fail(ASINK_ERR_ARG, "asink_attn_backward: NULL argument");
  const asink_attn_state *s = op->own;
  if (s->op == op && (B != s->B || Tq != s->g.Tq || Tk != s->g.Tk))
    return asink_fail(ASINK_ERR_SHAPE, "asink_attn_backward: B=%d, Tq=%d, Tk=%d, but the last forward "
                                       "had B=%d, Tq=%d, Tk=%d",
                      B, Tq, Tk, s->B, s->g.Tq, s->g.Tk);
  return asink_attn_run_backward(op, op->own, op->grads, q, k, v, out, dout, dq, dk, dv);
}
