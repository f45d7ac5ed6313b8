/* The metric handle: sink statistics of docs/api.md ("The metric"), gathered inside a model's
 * forward pass (as the model's observer) or from attention maps a caller supplies.
 * Importance is kept per sequence (the Sink metric counts sequences); every other
 * statistic is a running sum over sequences, divided out when read. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "kernels/kernels.h"
#include "core/alloc.h"
#include "core/runtime.h"
#include "model/observer.h"

struct asink_metric {
  float eps;
  int L, H, T, Tk; /* fixed by the first data; 0 = none yet */
  int n_seq, cap;
  bool from_model; /* hidden/key/value norms, cosines exist */
  bool from_maps;  /* sequences came from supplied maps (no activations) */
  float *imp;      /* cap x L x H x Tk */
  float *win;      /* cap x L x H: share of the first key each query sees, mean over queries */
  double *hid, *kn, *vn, *cos, *qk, *ent;
  /* supplied maps: the batch being assembled layer by layer */
  int pending_n, next_layer;
  /* fused: staging for the ops' statistics of one batch */
  asink_ws stage;
  int batch_B;
  /* decoding: per decode call, the sink share of each layer and head */
  int dec_L, dec_H, dec_steps, dec_cap;
  float *dec_share; /* dec_cap x dec_L x dec_H */
  asink_model *model; /* the model this metric observes, or NULL */
};

asink_status asink_metric_create(asink_metric **out, float eps) {
  if (!out) return asink_fail(ASINK_ERR_ARG, "asink_metric_create: output pointer is NULL");
  *out = NULL;
  if (!(eps > 0.f && eps < 1.f))
    return asink_fail(ASINK_ERR_ARG, "eps=%g must be in (0, 1)", eps);
  asink_metric *mt = asink_calloc(1, sizeof *mt);
  if (!mt) return asink_fail(ASINK_ERR_NOMEM, "cannot allocate a metric");
  mt->eps = eps;
  *out = mt;
  return ASINK_OK;
}

static void release_sums(asink_metric *mt) {
  asink_free(mt->imp);
  asink_free(mt->win);
  free(mt->hid);
  mt->imp = mt->win = NULL;
  mt->hid = mt->kn = mt->vn = mt->cos = mt->qk = mt->ent = NULL;
}

void asink_metric_free(asink_metric *mt) {
  if (!mt) return;
  if (mt->model) asink_model_set_observer(mt->model, NULL);
  release_sums(mt);
  asink_ws_release(&mt->stage);
  free(mt->dec_share);
  asink_free(mt);
}

void asink_metric_reset(asink_metric *mt) {
  if (!mt) return;
  release_sums(mt);
  mt->L = mt->H = mt->T = mt->Tk = 0;
  mt->n_seq = mt->cap = mt->pending_n = mt->next_layer = 0;
  mt->from_model = mt->from_maps = false;
  mt->dec_steps = 0;
}

/* Fixes the shape on first use (allocating the sums), or checks it. */
static asink_status ensure_shape(asink_metric *mt, int L, int H, int T, int Tk) {
  if (mt->L) {
    if (mt->L != L || mt->H != H || mt->T != T || mt->Tk != Tk)
      return asink_fail(ASINK_ERR_SHAPE,
                        "metric holds statistics of L=%d, H=%d, T=%d, Tk=%d; new data has L=%d, "
                        "H=%d, T=%d, Tk=%d (reset it first)",
                        mt->L, mt->H, mt->T, mt->Tk, L, H, T, Tk);
    return ASINK_OK;
  }
  size_t n = (size_t)(L + 1) * T + 2 * (size_t)L * T + 2 * (size_t)L * H * T + (size_t)L * H;
  double *d = asink_calloc(n, sizeof *d);
  if (!d) return asink_fail(ASINK_ERR_NOMEM, "cannot allocate metric sums");
  mt->hid = d;
  mt->kn = mt->hid + (size_t)(L + 1) * T;
  mt->vn = mt->kn + (size_t)L * T;
  mt->cos = mt->vn + (size_t)L * T;
  mt->qk = mt->cos + (size_t)L * H * T;
  mt->ent = mt->qk + (size_t)L * H * T;
  mt->L = L, mt->H = H, mt->T = T, mt->Tk = Tk;
  return ASINK_OK;
}

static asink_status ensure_seqs(asink_metric *mt, int n) {
  if (n <= mt->cap) return ASINK_OK;
  int cap = mt->cap ? mt->cap : 16;
  while (cap < n) cap *= 2;
  size_t per = (size_t)mt->L * mt->H * mt->Tk;
  size_t per_win = (size_t)mt->L * mt->H;
  float *p = asink_calloc(asink_mul_size(per, (size_t)cap), sizeof(float));
  float *w = asink_calloc(asink_mul_size(per_win, (size_t)cap), sizeof(float));
  if (!p || !w) {
    asink_free(p), asink_free(w);
    return asink_fail(ASINK_ERR_NOMEM, "cannot grow the metric to %d sequences", cap);
  }
  if (mt->imp) memcpy(p, mt->imp, per * (size_t)mt->n_seq * sizeof(float));
  if (mt->win) memcpy(w, mt->win, per_win * (size_t)mt->n_seq * sizeof(float));
  asink_free(mt->imp), asink_free(mt->win);
  mt->imp = p, mt->win = w;
  mt->cap = cap;
  return ASINK_OK;
}

/* ------------------------------------------------------------ supplied maps */

asink_status asink_metric_add_maps(asink_metric *mt, int layer, int n_layer, int N, int H, int Tq,
                                   int Tk, const float *maps, int normalized) {
  if (!mt || !maps) return asink_fail(ASINK_ERR_ARG, "asink_metric_add_maps: NULL argument");
  if (n_layer < 1 || layer < 0 || layer >= n_layer)
    return asink_fail(ASINK_ERR_ARG, "layer=%d is outside [0, n_layer=%d)", layer, n_layer);
  if (N < 1 || H < 1 || Tq < 1)
    return asink_fail(ASINK_ERR_SHAPE, "maps (N=%d, H=%d, Tq=%d) must have positive sizes", N, H, Tq);
  if (Tk != Tq && Tk != Tq + 1)
    return asink_fail(ASINK_ERR_SHAPE, "maps have Tk=%d key columns; expected Tq=%d or Tq+1 (virtual key)", Tk, Tq);
  size_t total = (size_t)N * H * Tq * Tk;
  for (size_t i = 0; i < total; i++) {
    if (!isfinite(maps[i]))
      return asink_fail(ASINK_ERR_ARG, "maps entry %zu is %g, not a finite number", i, maps[i]);
    if (normalized && maps[i] < 0.f)
      return asink_fail(ASINK_ERR_ARG, "maps entry %zu is %g < 0, but normalized maps are probabilities", i, maps[i]);
  }
  if (mt->from_model)
    return asink_fail(ASINK_ERR_STATE, "metric holds a model's statistics; supplied maps would mix sequences "
                                       "without activations into them (reset it or use another metric)");
  if (layer != mt->next_layer)
    return asink_fail(ASINK_ERR_STATE, "maps of layer %d given, layer %d expected next (layers 0..%d in order)",
                      layer, mt->next_layer, n_layer - 1);
  if (layer > 0 && N != mt->pending_n)
    return asink_fail(ASINK_ERR_SHAPE, "layer %d has N=%d sequences, layer 0 of this batch had %d", layer, N, mt->pending_n);
  asink_status st = ensure_shape(mt, n_layer, H, Tq, Tk);
  if (st == ASINK_OK) st = ensure_seqs(mt, mt->n_seq + N);
  if (st) return st;
  const int off = Tk - Tq, L = mt->L;
  for (int n = 0; n < N; n++)
    for (int h = 0; h < H; h++) {
      const float *A = maps + ((size_t)n * H + h) * Tq * Tk;
      float *imp = mt->imp + (((size_t)(mt->n_seq + n) * L + layer) * H + h) * Tk;
      double ent = 0.0;
      memset(imp, 0, sizeof(float) * Tk);
      for (int t = 0; t < Tq; t++) {
        const float *row = A + (size_t)t * Tk;
        double z = 1.0;
        if (!normalized) {
          z = 1e-8;
          for (int j = 0; j < Tk; j++) z += fabs(row[j]);
        }
        for (int j = 0; j < Tk; j++) {
          double p = fabs(row[j]) / z;
          imp[j] += (float)p;
          if (p > 0) ent -= p * log(p);
        }
      }
      if (off) imp[0] /= (float)Tq;
      for (int j = 0; j < Tq; j++) imp[off + j] /= (float)(Tq - j);
      mt->ent[(size_t)layer * H + h] += ent / Tq;
    }
  mt->from_maps = true;
  mt->pending_n = N;
  mt->next_layer = layer + 1;
  if (mt->next_layer == n_layer) {
    mt->n_seq += N;
    mt->next_layer = 0;
  }
  return ASINK_OK;
}

/* ------------------------------------------------------------------- fused */

static asink_status obs_begin(void *ctx, const asink_layer_view *v, float **importance,
                              float **entropy, float **first_key) {
  asink_metric *mt = ctx;
  if (mt->from_maps)
    return asink_fail(ASINK_ERR_STATE, "the attached metric holds supplied maps' statistics; a model's "
                                       "sequences would be counted without them (reset it or use another metric)");
  const int Tk = v->Tk;
  asink_status st = ensure_shape(mt, v->L, v->H, v->T, Tk);
  if (st == ASINK_OK) st = ensure_seqs(mt, mt->n_seq + v->B);
  /* importance | entropy | first key's share | first key's norm per kv head */
  size_t n = (size_t)v->B * v->H * (Tk + 2) + (size_t)v->B * v->Hkv;
  if (st == ASINK_OK) st = asink_ws_reserve(&mt->stage, n * sizeof(float), "metric staging");
  if (st) return st;
  *importance = mt->stage.ptr;
  *entropy = (float *)mt->stage.ptr + (size_t)v->B * v->H * Tk;
  *first_key = *entropy + (size_t)v->B * v->H;
  mt->batch_B = v->B;
  return ASINK_OK;
}

static float norm2(const asink_kernels *kn, const float *x, int n) { return sqrtf(kn->dot(n, x, x)); }

/* Positions are split across threads, each owning its columns of the sums. */
static void hidden_norms(asink_metric *mt, int l, const float *x, int B, int T, int C, int nt) {
  const asink_kernels *kn = asink_kern();
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1 && (size_t)B * T * C > 65536)
  for (int t = 0; t < T; t++)
    for (int b = 0; b < B; b++) mt->hid[(size_t)l * T + t] += norm2(kn, x + ((size_t)b * T + t) * C, C);
}

static void obs_layer(void *ctx, const asink_layer_view *a) {
  asink_metric *mt = ctx;
  const asink_kernels *kn = asink_kern();
  const int B = a->B, T = a->T, H = a->H, Hkv = a->Hkv, D = a->D, L = a->L, Tk = mt->Tk;
  const int l = a->layer;
  const int nt = asink_get_num_threads();
  const float *imp = mt->stage.ptr, *ent = imp + (size_t)B * H * Tk, *first = ent + (size_t)B * H;
  float *k0norm = (float *)mt->stage.ptr + (size_t)B * H * (Tk + 2);
  for (int b = 0; b < B; b++)
    for (int h = 0; h < H; h++) {
      memcpy(mt->imp + (((size_t)(mt->n_seq + b) * L + l) * H + h) * Tk, imp + ((size_t)b * H + h) * Tk,
             sizeof(float) * Tk);
      mt->ent[(size_t)l * H + h] += ent[b * H + h] / T;
      mt->win[((size_t)(mt->n_seq + b) * L + l) * H + h] = first[b * H + h];
    }
  hidden_norms(mt, l, a->x, B, T, a->C, nt);
  for (int b = 0; b < B; b++)
    for (int g = 0; g < Hkv; g++) k0norm[b * Hkv + g] = norm2(kn, a->k + ((size_t)b * T * Hkv + g) * D, D);
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1 && (size_t)B * T * H * D > 65536)
  for (int t = 0; t < T; t++)
    for (int b = 0; b < B; b++) {
      size_t row = (size_t)b * T + t;
      float ks = 0.f, vs = 0.f;
      for (int g = 0; g < Hkv; g++) {
        ks += norm2(kn, a->k + (row * Hkv + g) * D, D);
        vs += norm2(kn, a->v + (row * Hkv + g) * D, D);
      }
      mt->kn[(size_t)l * T + t] += ks / Hkv;
      mt->vn[(size_t)l * T + t] += vs / Hkv;
      for (int h = 0; h < H; h++) {
        int g = h / (H / Hkv);
        const float *q = a->q + (row * H + h) * D;
        const float *k0 = a->k + ((size_t)b * T * Hkv + g) * D;
        float nq = norm2(kn, q, D), nk = k0norm[b * Hkv + g];
        mt->cos[((size_t)l * H + h) * T + t] += nq > 0.f && nk > 0.f ? kn->dot(D, q, k0) / (nq * nk) : 0.f;
        mt->qk[((size_t)l * H + h) * T + t] += nq * nk;
      }
    }
}

static void obs_end(void *ctx, const asink_layer_view *v) {
  asink_metric *mt = ctx;
  hidden_norms(mt, v->L, v->x, v->B, v->T, v->C, asink_get_num_threads());
  mt->n_seq += mt->batch_B;
  mt->from_model = true;
}

static void obs_decode_step(void *ctx, int L, int H, const float *share) {
  asink_metric *mt = ctx;
  if (mt->dec_steps && (mt->dec_L != L || mt->dec_H != H)) mt->dec_steps = 0;
  mt->dec_L = L, mt->dec_H = H;
  if (mt->dec_steps == mt->dec_cap) {
    int cap = mt->dec_cap ? 2 * mt->dec_cap : 256;
    float *p = asink_realloc(mt->dec_share, (size_t)cap * L * H, sizeof(float));
    if (!p) return; /* the step goes unrecorded; the count says so */
    mt->dec_share = p, mt->dec_cap = cap;
  }
  memcpy(mt->dec_share + (size_t)mt->dec_steps * L * H, share, (size_t)L * H * sizeof(float));
  mt->dec_steps++;
}

int asink_metric_decode_steps(const asink_metric *mt) { return mt ? mt->dec_steps : 0; }

asink_status asink_metric_sink_share(const asink_metric *mt, float *out) {
  if (!mt || !out) return asink_fail(ASINK_ERR_ARG, "asink_metric_sink_share: NULL argument");
  if (!mt->dec_steps) return asink_fail(ASINK_ERR_STATE, "metric sink_share: no decode step recorded yet");
  memcpy(out, mt->dec_share, (size_t)mt->dec_steps * mt->dec_L * mt->dec_H * sizeof(float));
  return ASINK_OK;
}

static void obs_detached(void *ctx) { ((asink_metric *)ctx)->model = NULL; }

asink_status asink_model_attach_metric(asink_model *m, asink_metric *mt) {
  if (!m) return asink_fail(ASINK_ERR_ARG, "asink_model_attach_metric: model is NULL");
  if (!mt) {
    asink_model_set_observer(m, NULL);
    return ASINK_OK;
  }
  int L, H;
  asink_model_dims(m, &L, &H, NULL, NULL, NULL, NULL);
  if (mt->L && (mt->L != L || mt->H != H)) {
    asink_model_set_observer(m, NULL);
    return asink_fail(ASINK_ERR_SHAPE, "metric holds statistics of %d layers x %d heads; the model has %d x %d",
                      mt->L, mt->H, L, H);
  }
  if (mt->model && mt->model != m) asink_model_set_observer(mt->model, NULL);
  asink_model_set_observer(m, &(asink_observer){.ctx = mt, .begin = obs_begin, .layer = obs_layer,
                                                .end = obs_end, .decode_step = obs_decode_step,
                                                .detached = obs_detached});
  mt->model = m;
  return ASINK_OK;
}

/* ----------------------------------------------------------------- results */

void asink_metric_dims(const asink_metric *mt, int *n_seq, int *n_layer, int *n_head, int *T, int *Tk) {
  if (!mt) return;
  if (n_seq) *n_seq = mt->n_seq;
  if (n_layer) *n_layer = mt->L;
  if (n_head) *n_head = mt->H;
  if (T) *T = mt->T;
  if (Tk) *Tk = mt->Tk;
}

static asink_status ready(const asink_metric *mt, const float *out, bool model_only, const char *what) {
  if (!mt || !out) return asink_fail(ASINK_ERR_ARG, "metric %s: NULL argument", what);
  if (!mt->n_seq) return asink_fail(ASINK_ERR_STATE, "metric %s: no sequences gathered yet", what);
  if (model_only && !mt->from_model)
    return asink_fail(ASINK_ERR_STATE, "metric %s: needs a metric attached to a model (supplied maps carry no activations)", what);
  return ASINK_OK;
}

static void means(const double *sum, size_t n, int count, float *out) {
  for (size_t i = 0; i < n; i++) out[i] = (float)(sum[i] / count);
}

asink_status asink_metric_importance(const asink_metric *mt, float *out) {
  asink_status st = ready(mt, out, false, "importance");
  if (st) return st;
  memcpy(out, mt->imp, sizeof(float) * (size_t)mt->n_seq * mt->L * mt->H * mt->Tk);
  return ASINK_OK;
}

asink_status asink_metric_sink(const asink_metric *mt, float *out) {
  asink_status st = ready(mt, out, false, "sink");
  if (st) return st;
  size_t triples = (size_t)mt->n_seq * mt->L * mt->H;
  for (int k = 0; k < mt->Tk; k++) {
    size_t above = 0;
    for (size_t i = 0; i < triples; i++) above += mt->imp[i * mt->Tk + k] > mt->eps;
    out[k] = (float)(100.0 * above / triples);
  }
  return ASINK_OK;
}

asink_status asink_metric_hidden_norm(const asink_metric *mt, float *out) {
  asink_status st = ready(mt, out, true, "hidden_norm");
  if (!st) means(mt->hid, (size_t)(mt->L + 1) * mt->T, mt->n_seq, out);
  return st;
}

asink_status asink_metric_key_norm(const asink_metric *mt, float *out) {
  asink_status st = ready(mt, out, true, "key_norm");
  if (!st) means(mt->kn, (size_t)mt->L * mt->T, mt->n_seq, out);
  return st;
}

asink_status asink_metric_value_norm(const asink_metric *mt, float *out) {
  asink_status st = ready(mt, out, true, "value_norm");
  if (!st) means(mt->vn, (size_t)mt->L * mt->T, mt->n_seq, out);
  return st;
}

asink_status asink_metric_qk_cosine(const asink_metric *mt, float *out) {
  asink_status st = ready(mt, out, true, "qk_cosine");
  if (!st) means(mt->cos, (size_t)mt->L * mt->H * mt->T, mt->n_seq, out);
  return st;
}

asink_status asink_metric_qk_norm_product(const asink_metric *mt, float *out) {
  asink_status st = ready(mt, out, true, "qk_norm_product");
  if (!st) means(mt->qk, (size_t)mt->L * mt->H * mt->T, mt->n_seq, out);
  return st;
}

asink_status asink_metric_entropy(const asink_metric *mt, float *out) {
  asink_status st = ready(mt, out, false, "entropy");
  if (!st) means(mt->ent, (size_t)mt->L * mt->H, mt->n_seq, out);
  return st;
}

asink_status asink_metric_window_importance(const asink_metric *mt, float *out) {
  asink_status st = ready(mt, out, true, "window_importance");
  if (!st) memcpy(out, mt->win, sizeof(float) * (size_t)mt->n_seq * mt->L * mt->H);
  return st;
}

asink_status asink_metric_window_sink(const asink_metric *mt, float *out) {
  asink_status st = ready(mt, out, true, "window_sink");
  if (st) return st;
  size_t triples = (size_t)mt->n_seq * mt->L * mt->H, above = 0;
  for (size_t i = 0; i < triples; i++) above += mt->win[i] > mt->eps;
  *out = (float)(100.0 * above / triples);
  return ASINK_OK;
}

/* ------------------------------------------------------------------- JSON */

typedef struct {
  char *buf;
  size_t len, cap;
  bool failed;
} sbuf;

static void put(sbuf *s, const char *text) {
  size_t n = strlen(text);
  if (s->failed) return;
  if (s->len + n + 1 > s->cap) {
    size_t cap = s->cap ? s->cap * 2 : 1 << 16;
    while (cap < s->len + n + 1) cap *= 2;
    char *b = asink_realloc(s->buf, cap, 1);
    if (!b) {
      s->failed = true;
      return;
    }
    s->buf = b, s->cap = cap;
  }
  memcpy(s->buf + s->len, text, n + 1);
  s->len += n;
}

/* Nested JSON arrays of a row-major array with the given dims. */
static void put_array(sbuf *s, const float *x, const int *dims, int ndim) {
  if (ndim == 0) {
    char num[32];
    snprintf(num, sizeof num, isfinite(*x) ? "%.7g" : "null", *x);
    put(s, num);
    return;
  }
  size_t inner = 1;
  for (int d = 1; d < ndim; d++) inner *= (size_t)dims[d];
  put(s, "[");
  for (int i = 0; i < dims[0]; i++) {
    if (i) put(s, ", ");
    put_array(s, x + i * inner, dims + 1, ndim - 1);
  }
  put(s, "]");
}

char *asink_metric_json(const asink_metric *mt) {
  if (!mt || !mt->n_seq) {
    asink_fail(ASINK_ERR_STATE, "metric json: no sequences gathered yet");
    return NULL;
  }
  const int N = mt->n_seq, L = mt->L, H = mt->H, T = mt->T, Tk = mt->Tk;
  size_t biggest = (size_t)N * L * H * Tk;
  if ((size_t)(L + 1) * T > biggest) biggest = (size_t)(L + 1) * T;
  if ((size_t)L * H * T > biggest) biggest = (size_t)L * H * T;
  float *tmp = asink_alloc(biggest + 1, sizeof(float));
  sbuf s = {0};
  if (!tmp) {
    asink_fail(ASINK_ERR_NOMEM, "metric json: out of memory");
    return NULL;
  }
  char head[160];
  snprintf(head, sizeof head, "{\"samples\": %d, \"eps\": %.7g, \"layers\": %d, \"heads\": %d, \"tokens\": %d", N,
           mt->eps, L, H, T);
  put(&s, head);
  struct {
    const char *key;
    asink_status (*get)(const asink_metric *, float *);
    int dims[4], ndim;
    bool model_only;
  } items[] = {
      {"importance", asink_metric_importance, {N, L, H, Tk}, 4, false},
      {"sink", asink_metric_sink, {Tk}, 1, false},
      {"entropy", asink_metric_entropy, {L, H}, 2, false},
      {"hidden_norm", asink_metric_hidden_norm, {L + 1, T}, 2, true},
      {"key_norm", asink_metric_key_norm, {L, T}, 2, true},
      {"value_norm", asink_metric_value_norm, {L, T}, 2, true},
      {"qk_cosine", asink_metric_qk_cosine, {L, H, T}, 3, true},
      {"qk_norm_product", asink_metric_qk_norm_product, {L, H, T}, 3, true},
      {"window_importance", asink_metric_window_importance, {N, L, H}, 3, true},
      {"window_sink", asink_metric_window_sink, {0}, 0, true},
  };
  for (size_t i = 0; i < sizeof items / sizeof *items; i++) {
    if (items[i].model_only && !mt->from_model) continue;
    items[i].get(mt, tmp);
    put(&s, ", \"");
    put(&s, items[i].key);
    put(&s, "\": ");
    put_array(&s, tmp, items[i].dims, items[i].ndim);
  }
  put(&s, "}\n");
  free(tmp);
  if (s.failed) {
    free(s.buf);
    asink_fail(ASINK_ERR_NOMEM, "metric json: out of memory");
    return NULL;
  }
  return s.buf;
}
