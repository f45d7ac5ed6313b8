/* The attention-op handle: creation from a spec, learnable parameters, argument
 * checks. The arithmetic lives in blocked.c. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "attn/attn_internal.h"
#include "core/error.h"
#include "core/runtime.h"

/* The one allocation holding every parameter (the first present), or NULL. */
static float *param_block(const asink_attn *op) {
  return op->k_bias ? op->k_bias : op->v_bias ? op->v_bias : op->sinks ? op->sinks : op->rel;
}

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
  /* One block holds every parameter then every gradient, in param order. */
  size_t np = (size_t)(op->n_kb + op->n_vb) * head_dim + (spec.sink == ASINK_SINK_HEAD ? n_head : 0) +
              (spec.relbias ? (size_t)n_head * ASINK_REL_BUCKETS : 0);
  float *block = asink_calloc(2 * np + 1, sizeof(float));
  if (!block) {
    asink_free(op);
    return asink_fail(ASINK_ERR_NOMEM, "cannot allocate attention parameters");
  }
  float *p = block, *g = block + np;
  if (op->n_kb) {
    op->k_bias = p, op->g_k_bias = g;
    p += (size_t)op->n_kb * head_dim, g += (size_t)op->n_kb * head_dim;
  }
  if (op->n_vb) {
    op->v_bias = p, op->g_v_bias = g;
    p += (size_t)op->n_vb * head_dim, g += (size_t)op->n_vb * head_dim;
  }
  if (spec.sink == ASINK_SINK_HEAD) {
    op->sinks = p, op->g_sinks = g;
    p += n_head, g += n_head;
  }
  if (spec.relbias) op->rel = p, op->g_rel = g;
  if (!param_block(op)) asink_free(block);
  asink_spec_format(&spec, op->scale, op->canon, sizeof op->canon);
  *out = op;
  return ASINK_OK;
}


void asink_attn_free(asink_attn *op) {
  if (!op) return;
  asink_free(param_block(op));
  asink_ws_release(&op->row_stats);
  asink_ws_release(&op->feat);
  asink_ws_release(&op->thread_ws);
  asink_ws_release(&op->accum);
  asink_ws_release(&op->buckets);
  asink_free(op);
}

const char *asink_attn_spec(const asink_attn *op) { return op ? op->canon : ""; }

int asink_attn_key_count(const asink_attn *op, int T) {
  return op ? T + (op->n_kb ? 1 : 0) : T;
}

/* Parameters in their fixed order; returns how many there are. */
typedef struct {
  const char *name;
  float *data, *grad;
  int ndim;
  int64_t shape[2];
} param_view;

static int list_params(const asink_attn *op, param_view v[4]) {
  int n = 0;
  if (op->n_kb) v[n++] = (param_view){"k_bias", op->k_bias, op->g_k_bias, 2, {op->n_kb, op->D}};
  if (op->n_vb) v[n++] = (param_view){"v_bias", op->v_bias, op->g_v_bias, 2, {op->n_vb, op->D}};
  if (op->sinks) v[n++] = (param_view){"sinks", op->sinks, op->g_sinks, 1, {op->H, 0}};
  if (op->rel) v[n++] = (param_view){"relative_bias", op->rel, op->g_rel, 2, {op->H, ASINK_REL_BUCKETS}};
  return n;
}

int asink_attn_param_count(const asink_attn *op) {
  param_view v[4];
  return op ? list_params(op, v) : 0;
}

asink_status asink_attn_param_info(const asink_attn *op, int i, const char **name, int *ndim,
                                   int64_t shape[2]) {
  if (!op) return asink_fail(ASINK_ERR_ARG, "asink_attn_param_info: op is NULL");
  param_view v[4];
  int n = list_params(op, v);
  if (i < 0 || i >= n)
    return asink_fail(ASINK_ERR_ARG, "parameter index %d out of range (the op has %d)", i, n);
  if (name) *name = v[i].name;
  if (ndim) *ndim = v[i].ndim;
  if (shape) shape[0] = v[i].shape[0], shape[1] = v[i].shape[1];
  return ASINK_OK;
}

static asink_status find_param(asink_attn *op, const char *name, bool grad, float **data,
                               size_t *numel) {
  if (!op || !name || !data)
    return asink_fail(ASINK_ERR_ARG, "asink_attn_param/grad: NULL argument");
  param_view v[4];
  int n = list_params(op, v);
  for (int i = 0; i < n; i++) {
    if (strcmp(v[i].name, name)) continue;
    *data = grad ? v[i].grad : v[i].data;
    if (numel) *numel = (size_t)v[i].shape[0] * (v[i].ndim == 2 ? (size_t)v[i].shape[1] : 1);
    return ASINK_OK;
  }
  return asink_fail(ASINK_ERR_ARG, "attention op '%s' has no parameter '%s'", op->canon, name);
}

asink_status asink_attn_param(asink_attn *op, const char *name, float **data, size_t *numel) {
  return find_param(op, name, false, data, numel);
}

asink_status asink_attn_grad(asink_attn *op, const char *name, float **data, size_t *numel) {
  return find_param(op, name, true, data, numel);
}

void asink_attn_zero_grad(asink_attn *op) {
  if (!op) return;
  param_view v[4];
  int n = list_params(op, v);
  for (int i = 0; i < n; i++)
    memset(v[i].grad, 0, sizeof(float) * (size_t)v[i].shape[0] * (v[i].ndim == 2 ? v[i].shape[1] : 1));
}

asink_status asink_attn_forward(asink_attn *op, int B, int T, const float *q, const float *k,
                                const float *v, float *out, float *importance) {
  return asink_attn_forward_stats(op, B, T, q, k, v, out, importance, NULL);
}

asink_status asink_attn_forward_stats(asink_attn *op, int B, int T, const float *q,
                                      const float *k, const float *v, float *out,
                                      float *importance, float *entropy) {
  if (!op || !q || !k || !v || !out)
    return asink_fail(ASINK_ERR_ARG, "asink_attn_forward: NULL %s",
                      !op ? "op" : !q ? "q" : !k ? "k" : !v ? "v" : "out");
  if (B < 1 || T < 1)
    return asink_fail(ASINK_ERR_SHAPE, "asink_attn_forward: B=%d, T=%d must be positive", B, T);
  if ((int64_t)B * T * op->H * op->D > INT64_MAX / 16 || (int64_t)T + 1 > INT32_MAX / 2)
    return asink_fail(ASINK_ERR_SHAPE, "asink_attn_forward: B=%d x T=%d is too large", B, T);
  op->have_forward = false;
  op->B = B;
  op->T = T;
  asink_status st = asink_attn_forward_blocked(op, q, k, v, out, importance, entropy);
  if (st == ASINK_OK) op->have_forward = true;
  return st;
}

asink_status asink_attn_backward(asink_attn *op, const float *q, const float *k, const float *v,
                                 const float *out, const float *dout, float *dq, float *dk,
                                 float *dv) {
  if (!op || !q || !k || !v || !out || !dout || !dq || !dk || !dv)
    return asink_fail(ASINK_ERR_ARG, "asink_attn_backward: NULL argument");
  if (!op->have_forward)
    return asink_fail(ASINK_ERR_STATE, "asink_attn_backward: no forward to differentiate");
  return asink_attn_backward_blocked(op, q, k, v, out, dout, dq, dk, dv);
}
