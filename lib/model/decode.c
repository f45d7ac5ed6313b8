/* Incremental decoding: the key/value cache handle and the decode pass.
 *
 * Per layer and sequence the cache keeps the keys (after RoPE) and values of its kept
 * positions in one region of rows, in stream order: the sink positions first, then the
 * window. New rows are written after the kept ones; the attention of the new rows runs
 * against the region (asink_attn_run_forward_at: the queries are its newest rows and
 * every position is a rank). A window that is full evicts its oldest row by moving the
 * n_sink sink rows one row forward (the region's start moves, not the window), and the
 * region is moved back to row 0 when it reaches the end of its storage (once every
 * `window` evictions), so an eviction copies n_sink rows, not the window.
 *
 * RoPE: queries and new keys are rotated at their true stream positions, which keeps
 * every distance inside the window true; a sink cache keeps its sink keys also before
 * rotation and re-rotates them after each eviction at (rank + evicted), so that their
 * distance to the newest position is their rank distance (StreamingLLM).
 *
 * A call runs the layers over groups of rows: every sequence contributes up to `chunk`
 * new positions at a time, the whole prefix of a prefix-LM at once, and one position at a
 * time while its window evicts (a query must not see a key evicted by a later row). */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attn/op.h"
#include "core/blas.h"
#include "core/error.h"
#include "core/runtime.h"
#include "attn/spec.h"
#include "model/block.h"
#include "model/model_internal.h"

typedef enum { POLICY_FULL, POLICY_WINDOW, POLICY_SINK } policy_kind;

/* Rows of logits a group computes in one head product (the GEMM's skinny path). */
enum { DECODE_HEAD_ROWS = 8 };

typedef struct {
  int64_t pos;     /* positions fed, the sink token's included */
  int64_t evicted; /* window positions evicted so far */
  int start, held; /* kept rows: [start, start + held) of the sequence's regions */
} seq_state;

struct asink_cache {
  uint64_t model_id; /* the model it was made for (asink_model.id): checked, never followed */
  bool sink_token;   /* the model feeds a learned sink token first */
  policy_kind policy;
  int B, n_sink, window, max_len, chunk;
  int cap;    /* positions kept at most (the sink token's included) */
  int prefix; /* the prefix-LM prefix of the model's attention (0: none) */
  int L, KD;
  bool resink; /* sink keys re-rotated after evictions (RoPE + sink policy) */
  int rows;    /* rows of storage per (layer, sequence, K or V) region */
  float *kv;   /* L x B x 2 x rows x KD */
  float *raw;  /* resink: L x B x n_sink x KD keys before rotation */
  seq_state *seq;
  asink_attn_state **attn; /* one per thread that attends (n_attn) */
  int n_attn;
  asink_ws work; /* the decode pass's buffers */
};

/* ------------------------------------------------------------------ handle */

static float *region(const asink_cache *c, int l, int b, int kv) {
  return c->kv + (((size_t)l * c->B + b) * 2 + kv) * c->rows * c->KD;
}

static float *raw_keys(const asink_cache *c, int l, int b) {
  return c->raw + ((size_t)l * c->B + b) * c->n_sink * c->KD;
}

/* Storage for `rows` rows per region, the kept rows copied over. */
static asink_status grow_rows(asink_cache *c, int rows) {
  if (rows <= c->rows) return ASINK_OK;
  size_t n = asink_mul_size(asink_mul_size((size_t)c->L * c->B * 2, (size_t)rows), (size_t)c->KD);
  float *kv = asink_alloc(n, sizeof(float));
  if (!kv) return asink_fail(ASINK_ERR_NOMEM, "cannot grow the cache to %d positions", rows);
  for (int l = 0; l < c->L; l++)
    for (int b = 0; b < c->B; b++)
      for (int t = 0; t < 2; t++) {
        const seq_state *s = &c->seq[b];
        float *dst = kv + (((size_t)l * c->B + b) * 2 + t) * rows * c->KD;
        if (s->held) memcpy(dst, region(c, l, b, t) + (size_t)s->start * c->KD, (size_t)s->held * c->KD * sizeof(float));
      }
  for (int b = 0; b < c->B; b++) c->seq[b].start = 0;
  asink_free(c->kv);
  c->kv = kv;
  c->rows = rows;
  return ASINK_OK;
}

/* Attention states for n threads. */
static asink_status ensure_states(asink_cache *c, int n) {
  if (n <= c->n_attn) return ASINK_OK;
  asink_attn_state **a = asink_calloc((size_t)n, sizeof *a);
  if (!a) return asink_fail(ASINK_ERR_NOMEM, "cannot allocate attention states");
  for (int i = 0; i < c->n_attn; i++) a[i] = c->attn[i];
  for (int i = c->n_attn; i < n; i++) {
    asink_status st = asink_attn_state_create(&a[i]);
    if (st) {
      for (int j = c->n_attn; j < i; j++) asink_attn_state_free(a[j]);
      asink_free(a);
      return st;
    }
  }
  asink_free(c->attn);
  c->attn = a, c->n_attn = n;
  return ASINK_OK;
}

static policy_kind parse_policy(const char *p, bool *ok) {
  *ok = true;
  if (!strcmp(p, "full")) return POLICY_FULL;
  if (!strcmp(p, "window")) return POLICY_WINDOW;
  if (!strcmp(p, "sink")) return POLICY_SINK;
  *ok = false;
  return POLICY_FULL;
}

/* What the model's architecture allows the policy. */
static asink_status check_model(const asink_model *m, policy_kind pol, const char *policy, int cap,
                                int *prefix) {
  const asink_config *cfg = &m->w->cfg;
  asink_spec sp;
  asink_status st = asink_spec_parse(cfg->attn, &sp);
  if (st) return st;
  *prefix = sp.prefix;
  if (!sp.causal)
    return asink_fail(ASINK_ERR_UNSUPPORTED, "cache: attention '%s' has causal=0: every position attends "
                                             "to later ones, which incremental decoding cannot see",
                      cfg->attn);
  if (pol == POLICY_FULL) return ASINK_OK;
  if (cfg->pos == ASINK_POS_LEARNED || cfg->pos == ASINK_POS_SINUSOIDAL)
    return asink_fail(ASINK_ERR_UNSUPPORTED,
                      "cache policy '%s': the model has %s (absolute) positions, which cached keys "
                      "carry from the layers below and cannot be re-assigned; use policy full",
                      policy, asink_pos_name(cfg->pos));
  if (sp.prefix > cap)
    return asink_fail(ASINK_ERR_UNSUPPORTED, "cache policy '%s': the prefix-LM prefix of %d positions does "
                                             "not fit in the cache's %d",
                      policy, sp.prefix, cap);
  if (pol == POLICY_SINK && cfg->pos == ASINK_POS_ROPE && cfg->kernel_mlp)
    return asink_fail(ASINK_ERR_UNSUPPORTED, "cache policy sink: the MLP kernel acts on rotated keys, so "
                                             "sink keys cannot be re-rotated; use window or full");
  return ASINK_OK;
}

asink_status asink_cache_create(asink_cache **out, asink_model *m, const char *policy, int batch,
                                int n_sink, int window, int max_len) {
  if (!out) return asink_fail(ASINK_ERR_ARG, "asink_cache_create: output pointer is NULL");
  *out = NULL;
  if (!m || !policy) return asink_fail(ASINK_ERR_ARG, "asink_cache_create: NULL %s", !m ? "model" : "policy");
  bool ok;
  policy_kind pol = parse_policy(policy, &ok);
  if (!ok) return asink_fail(ASINK_ERR_ARG, "cache policy '%s': expected full, window or sink", policy);
  if (batch < 1 || batch > 65536) return asink_fail(ASINK_ERR_ARG, "cache batch=%d must be in [1, 65536]", batch);
  if (n_sink < 0) return asink_fail(ASINK_ERR_ARG, "cache n_sink=%d must be >= 0", n_sink);
  const int extra = m->w->cfg.sink_token ? 1 : 0;
  int cap;
  if (pol == POLICY_FULL) {
    if (max_len < 1 || max_len > INT32_MAX / 4)
      return asink_fail(ASINK_ERR_ARG, "cache policy full: max_len=%d must be in [1, %d]", max_len, INT32_MAX / 4);
    cap = max_len + extra;
  } else {
    if (window < 1 || window > (1 << 24))
      return asink_fail(ASINK_ERR_ARG, "cache policy %s: window=%d must be in [1, %d]", policy, window, 1 << 24);
    if (pol == POLICY_SINK && (n_sink < 1 || n_sink >= window))
      return asink_fail(ASINK_ERR_ARG, "cache policy sink: n_sink=%d must be in [1, window=%d)", n_sink, window);
    cap = (pol == POLICY_SINK ? n_sink : 0) + window;
  }
  int prefix = 0;
  asink_status st = check_model(m, pol, policy, cap, &prefix);
  if (st) return st;
  asink_cache *c = asink_calloc(1, sizeof *c);
  if (!c) return asink_fail(ASINK_ERR_NOMEM, "cannot allocate a cache");
  c->model_id = m->id, c->sink_token = m->w->cfg.sink_token, c->policy = pol, c->B = batch, c->n_sink = n_sink, c->window = window;
  c->max_len = max_len, c->cap = cap, c->chunk = 128, c->prefix = prefix;
  c->L = m->w->L, c->KD = m->w->Hkv * m->w->D;
  c->resink = pol == POLICY_SINK && m->w->cfg.pos == ASINK_POS_ROPE;
  c->seq = asink_calloc((size_t)batch, sizeof *c->seq);
  if (c->resink) c->raw = asink_calloc(asink_mul_size((size_t)c->L * batch * n_sink, (size_t)c->KD), sizeof(float));
  st = !c->seq || (c->resink && !c->raw) ? asink_fail(ASINK_ERR_NOMEM, "cannot allocate a cache")
                                         : ASINK_OK;
  /* a window cache's storage is fixed: its kept rows plus as many again, so the region
   * moves back once every `cap` evictions; a full cache grows as positions arrive */
  if (st == ASINK_OK && pol != POLICY_FULL) st = grow_rows(c, 2 * cap);
  if (st) {
    asink_cache_free(c);
    return st;
  }
  *out = c;
  return ASINK_OK;
}

void asink_cache_free(asink_cache *c) {
  if (!c) return;
  asink_free(c->kv);
  asink_free(c->raw);
  asink_free(c->seq);
  for (int i = 0; i < c->n_attn; i++) asink_attn_state_free(c->attn[i]);
  asink_free(c->attn);
  asink_ws_release(&c->work);
  asink_free(c);
}

void asink_cache_reset(asink_cache *c) {
  if (c) memset(c->seq, 0, (size_t)c->B * sizeof *c->seq);
}

asink_status asink_cache_set_chunk(asink_cache *c, int chunk) {
  if (!c) return asink_fail(ASINK_ERR_ARG, "asink_cache_set_chunk: cache is NULL");
  if (chunk < 1 || chunk > 65536) return asink_fail(ASINK_ERR_ARG, "cache chunk=%d must be in [1, 65536]", chunk);
  c->chunk = chunk;
  return ASINK_OK;
}

static int sink_token_rows(const asink_cache *c, int b) {
  return c->sink_token && c->seq[b].pos > 0 ? 1 : 0;
}

int64_t asink_cache_fed(const asink_cache *c, int b) {
  if (!c || b < 0 || b >= c->B) return -1;
  return c->seq[b].pos - sink_token_rows(c, b);
}

int asink_cache_held(const asink_cache *c, int b) {
  if (!c || b < 0 || b >= c->B) return -1;
  return c->seq[b].held;
}

int asink_cache_batch(const asink_cache *c) { return c ? c->B : 0; }

size_t asink_cache_bytes(const asink_cache *c) {
  if (!c) return 0;
  size_t kv = (size_t)c->L * c->B * 2 * c->rows * c->KD * sizeof(float);
  return kv + (c->raw ? (size_t)c->L * c->B * c->n_sink * c->KD * sizeof(float) : 0);
}

/* ---------------------------------------------------------- the decode pass */

/* One group of rows: sequence b contributes n[b] new positions (row0[b] its first row). */
typedef struct {
  asink_cache *c;
  const asink_weights *w;
  const asink_observer *obs;
  int R;              /* rows in all */
  int *n, *row0;      /* B each */
  int64_t *pos;       /* R: each row's true stream position */
  float *q, *k, *v, *att, *qa, *qphi, *ka, *kphi, *kraw;
  float *fused;       /* neox: R x 3*H*D fused q/k/v rows */
  float *cs, *sn;     /* R x rot/2 each: each row's RoPE angles (rot: the rotated dims) */
  float *rcs, *rsn;   /* per thread, n_sink x rot/2: the sink keys' re-rotation angles */
  float *imp;         /* per thread, H x (Tk + 1): a sequence's importance */
  int maxTk;
  double *seq_share;  /* B x H: each sequence's share sums of the layer */
  float *xg, *lg;     /* DECODE_HEAD_ROWS rows of head input and of logits */
  double *share;      /* L x H: summed over rows (NULL without an observer) */
  int nt;
} group;

/* The pass's buffers for R rows: block activations, q/k/v, angles, importance. */
static void layout(const asink_weights *w, const asink_cache *c, int R, int maxTk, asink_carver *cv,
                   group *g, asink_block_acts *a, float **xf, float **xmean, float **xrstd) {
  const size_t C = w->C, F = w->F, HD = (size_t)w->H * w->D, KD = c->KD, h = (size_t)w->R / 2;
  const bool km = w->cfg.kernel_mlp;
  a->x_in = a->x_out = asink_take(cv, R * C);
  a->n1 = asink_take(cv, R * C);
  a->mean1 = asink_take(cv, R);
  a->rstd1 = asink_take(cv, R);
  a->x_mid = asink_take(cv, R * C);
  a->n2 = asink_take(cv, R * C);
  a->mean2 = asink_take(cv, R);
  a->rstd2 = asink_take(cv, R);
  a->fg = asink_take(cv, R * F);
  a->fu = asink_take(cv, R * F);
  a->fh = asink_take(cv, R * F);
  a->fh16 = a->n1_16 = a->n2_16 = NULL; /* no backward to keep them for */
  *xf = asink_take(cv, R * C);
  *xmean = asink_take(cv, R);
  *xrstd = asink_take(cv, R);
  g->q = asink_take(cv, R * HD);
  g->k = asink_take(cv, R * KD);
  g->v = asink_take(cv, R * KD);
  g->att = asink_take(cv, R * HD);
  g->kraw = c->resink ? asink_take(cv, R * KD) : NULL;
  g->qa = km ? asink_take(cv, R * HD) : NULL;
  g->qphi = km ? asink_take(cv, R * HD) : NULL;
  g->ka = km ? asink_take(cv, R * KD) : NULL;
  g->kphi = km ? asink_take(cv, R * KD) : NULL;
  g->fused = w->qkv_per_head ? asink_take(cv, R * 3 * HD) : NULL;
  g->cs = asink_take(cv, R * h);
  g->sn = asink_take(cv, R * h);
  const size_t nt = (size_t)c->n_attn;
  g->rcs = asink_take(cv, nt * ((size_t)c->n_sink * h + 1));
  g->rsn = asink_take(cv, nt * ((size_t)c->n_sink * h + 1));
  g->maxTk = maxTk;
  g->imp = asink_take(cv, nt * (size_t)w->H * (maxTk + 1));
  g->seq_share = asink_take(cv, 2 * (size_t)c->B * w->H); /* doubles */
  g->xg = asink_take(cv, (size_t)DECODE_HEAD_ROWS * C);
  g->lg = asink_take(cv, (size_t)DECODE_HEAD_ROWS * w->V);
  g->pos = asink_take(cv, 2 * (size_t)R);             /* int64 */
  g->n = asink_take(cv, (size_t)c->B);                /* ints */
  g->row0 = asink_take(cv, (size_t)c->B);
}

static void angles(const asink_weights *w, int64_t pos, float *cs, float *sn) {
  const int h = w->R / 2;
  if (pos < w->rope_len) {
    const float *tab = w->rope_ws.ptr;
    memcpy(cs, tab + (size_t)pos * h, h * sizeof(float));
    memcpy(sn, tab + ((size_t)w->rope_len + pos) * h, h * sizeof(float));
  } else {
    asink_rope_angles(cs, sn, pos, w->R, w->cfg.rope_theta);
  }
}

/* Rows of the sink cache's sink keys, rotated at (rank + evicted). */
static void resink(group *g, int l, int b, int tid) {
  const asink_cache *c = g->c;
  const asink_weights *w = g->w;
  const seq_state *s = &c->seq[b];
  int ns = s->held < c->n_sink ? s->held : c->n_sink;
  const size_t h = (size_t)w->R / 2, per = (size_t)c->n_sink * h + 1;
  float *rcs = g->rcs + tid * per, *rsn = g->rsn + tid * per;
  float *K = region(c, l, b, 0) + (size_t)s->start * c->KD;
  memcpy(K, raw_keys(c, l, b), (size_t)ns * c->KD * sizeof(float));
  for (int j = 0; j < ns; j++) angles(w, j + s->evicted, rcs + j * h, rsn + j * h);
  asink_rope_rows(K, (size_t)ns, w->Hkv, w->D, w->R, rcs, rsn, h, 1.f);
}

/* Of the Tk keys a sequence's new rows see, those at stream positions < n_sink, which
 * the metric's sink share counts. */
static int sink_slots(const asink_cache *c, const seq_state *s, int Tk) {
  int64_t n = c->policy == POLICY_WINDOW ? c->n_sink - s->evicted : c->n_sink;
  if (n > Tk) n = Tk;
  return n > 0 ? (int)n : 0;
}

/* Each head's attention on sequence b's sink slots, summed over its nq new rows, from the
 * importance imp of its attention. */
static void sequence_share(group *g, int l, int b, int Tk, int nq, const float *imp) {
  const asink_weights *w = g->w;
  const asink_attn *op = w->layers[l].attn;
  const int cols = asink_attn_key_count(op, Tk), voff = cols - Tk;
  const int ns = sink_slots(g->c, &g->c->seq[b], Tk);
  for (int h = 0; h < w->H; h++) {
    double sum = 0.0;
    for (int j = 0; j < ns; j++) {
      int first = j - (Tk - nq); /* the new rows at or after key j */
      sum += (double)imp[(size_t)h * cols + voff + j] * (first > 0 ? nq - first : nq);
    }
    g->seq_share[(size_t)b * w->H + h] = sum;
  }
}

/* Sequence b's new rows into its cache regions, and their attention against them. */
static asink_status attend_sequence(group *g, int l, int b, const float *qin, const float *kin,
                                    int tid) {
  asink_cache *c = g->c;
  const asink_weights *w = g->w;
  const int nb = g->n[b], r0 = g->row0[b], HD = w->H * w->D, KD = c->KD;
  seq_state *s = &c->seq[b];
  float *K = region(c, l, b, 0) + (size_t)s->start * KD, *V = region(c, l, b, 1) + (size_t)s->start * KD;
  memcpy(K + (size_t)s->held * KD, kin + (size_t)r0 * KD, (size_t)nb * KD * sizeof(float));
  memcpy(V + (size_t)s->held * KD, g->v + (size_t)r0 * KD, (size_t)nb * KD * sizeof(float));
  if (c->resink) {
    for (int i = 0; i < nb; i++)
      if (g->pos[r0 + i] < c->n_sink)
        memcpy(raw_keys(c, l, b) + g->pos[r0 + i] * KD, g->kraw + (size_t)(r0 + i) * KD, KD * sizeof(float));
    if (s->evicted) resink(g, l, b, tid);
  }
  const int Tk = s->held + nb;
  float *imp = g->obs ? g->imp + (size_t)tid * w->H * (g->maxTk + 1) : NULL;
  asink_status st = asink_attn_run_forward_at(w->layers[l].attn, c->attn[tid], 1, nb, Tk, NULL, NULL,
                                              qin + (size_t)r0 * HD, K, V, g->att + (size_t)r0 * HD,
                                              imp, NULL);
  if (!st && g->obs) sequence_share(g, l, b, Tk, nb, imp);
  return st;
}

/* The attention sub-block of the new rows (asink_attend_fn): q, k, v, RoPE at the true
 * positions, the rows into the cache, attention of each sequence against its region. */
static asink_status attend(void *ctx, int l, const float *xa, float *out) {
  group *g = ctx;
  asink_cache *c = g->c;
  const asink_weights *w = g->w;
  const asink_layer_weights *y = &w->layers[l];
  const int R = g->R, C = w->C, HD = w->H * w->D, KD = c->KD, nt = g->nt;
  const size_t h = (size_t)w->R / 2;
  asink_block_qkv(w, y, xa, g->q, g->k, g->v, g->fused, R, nt);
  if (w->cfg.pos == ASINK_POS_ROPE) {
    if (g->kraw) memcpy(g->kraw, g->k, (size_t)R * KD * sizeof(float));
    asink_rope_rows(g->q, (size_t)R, w->H, w->D, w->R, g->cs, g->sn, h, 1.f);
    asink_rope_rows(g->k, (size_t)R, w->Hkv, w->D, w->R, g->cs, g->sn, h, 1.f);
  }
  const float *qin = g->q, *kin = g->k;
  if (w->cfg.kernel_mlp) {
    asink_block_kernel_mlp(y, g->q, g->qa, g->qphi, (size_t)R * w->H, w->D, nt);
    asink_block_kernel_mlp(y, g->k, g->ka, g->kphi, (size_t)R * w->Hkv, w->D, nt);
    qin = g->qphi, kin = g->kphi;
  }
  /* sequences attend one per thread when there are several (each attention then runs on
   * one thread); a single sequence's attention uses the threads itself */
  int active = 0;
  for (int b = 0; b < c->B; b++) active += g->n[b] > 0;
  const int team = active > 1 && g->nt > 1 ? g->nt : 1; /* n_attn >= nt */
  asink_status st = ASINK_OK;
  char msg[256] = "";
  if (team > 1) {
#pragma omp parallel for num_threads(team) schedule(dynamic, 1)
    for (int b = 0; b < c->B; b++) {
      if (!g->n[b]) continue;
      asink_status sb = attend_sequence(g, l, b, qin, kin, omp_get_thread_num());
      if (sb) {
#pragma omp critical
        if (!st) st = sb, snprintf(msg, sizeof msg, "%s", asink_last_error());
      }
    }
    if (st) return asink_fail(st, "%s", msg);
  } else { /* no enclosing region, even an inactive one: the attention's own team is then
              the runtime's pooled top-level team instead of threads made per call */
    for (int b = 0; b < c->B && !st; b++)
      if (g->n[b]) st = attend_sequence(g, l, b, qin, kin, 0);
    if (st) return st;
  }
  if (g->obs) /* in sequence order, whatever thread ran them */
    for (int b = 0; b < c->B; b++)
      if (g->n[b])
        for (int h = 0; h < w->H; h++) g->share[(size_t)l * w->H + h] += g->seq_share[(size_t)b * w->H + h];
  asink_linear_forward(out, C, g->att, HD, &y->o, R, nt);
  return ASINK_OK;
}

/* Moves sequence b's window one row on (its oldest row evicted), or its region back to
 * row 0 when the next row would not fit. */
static void make_room(asink_cache *c, int b, int n) {
  seq_state *s = &c->seq[b];
  const size_t KD = c->KD;
  if (c->policy != POLICY_FULL && s->held + n > c->cap) { /* n is 1 here */
    const int ns = c->policy == POLICY_SINK ? c->n_sink : 0;
    for (int l = 0; l < c->L; l++)
      for (int t = 0; t < 2; t++) {
        float *r = region(c, l, b, t) + (size_t)s->start * KD;
        memmove(r + KD, r, (size_t)ns * KD * sizeof(float));
      }
    s->start++, s->held--, s->evicted++;
  }
  if (s->start + s->held + n > c->rows) {
    for (int l = 0; l < c->L; l++)
      for (int t = 0; t < 2; t++) {
        float *r = region(c, l, b, t);
        memmove(r, r + (size_t)s->start * KD, (size_t)s->held * KD * sizeof(float));
      }
    s->start = 0;
  }
}

/* Runs one group through the layers; logits of each new row at logits_of(b, i) (NULL:
 * none). */
static asink_status run_group(asink_model *m, asink_cache *c, group *g, const asink_block_acts *acts,
                              float *xf, float *xmean, float *xrstd, const int32_t *tokens,
                              int n_max, const int *done, float *logits, bool last_only) {
  const asink_weights *w = m->w;
  int R = 0;
  for (int b = 0; b < c->B; b++) g->row0[b] = R, R += g->n[b];
  g->R = R;
  const int extra = w->cfg.sink_token ? 1 : 0, C = w->C, V = w->V;
  /* storage first, so that a failure leaves the cache as it was */
  if (c->policy == POLICY_FULL) {
    int need = 0;
    for (int b = 0; b < c->B; b++)
      if (c->seq[b].held + g->n[b] > need) need = c->seq[b].held + g->n[b];
    if (need > c->rows) {
      int rows = c->rows ? c->rows : 64;
      while (rows < need) rows = rows > c->cap / 2 ? c->cap : 2 * rows;
      asink_status st = grow_rows(c, rows);
      if (st) return st;
    }
  }
  for (int b = 0; b < c->B; b++)
    if (g->n[b]) make_room(c, b, g->n[b]);
  /* rows: embedding at the true positions */
  const asink_block_acts a = *acts;
  const float *pe = w->cfg.pos == ASINK_POS_LEARNED ? w->wpe
                    : w->cfg.pos == ASINK_POS_SINUSOIDAL ? (const float *)w->sinus_ws.ptr
                                                          : NULL;
  for (int b = 0; b < c->B; b++)
    for (int i = 0; i < g->n[b]; i++) {
      const int r = g->row0[b] + i;
      const int64_t p = c->seq[b].pos + i;
      const int ti = done[b] + i - (extra && c->seq[b].pos == 0 ? 1 : 0); /* token index */
      g->pos[r] = p;
      float *dst = a.x_in + (size_t)r * C;
      if (extra && p == 0) memcpy(dst, w->sink_tok, C * sizeof(float));
      else asink_weights_embedding(w, tokens[(size_t)b * n_max + ti], dst);
      if (pe)
        for (int j = 0; j < C; j++) dst[j] += pe[(size_t)(p + w->pos_off) * C + j];
      if (w->cfg.pos == ASINK_POS_ROPE) angles(w, p, g->cs + (size_t)r * (w->R / 2), g->sn + (size_t)r * (w->R / 2));
    }
  asink_status st = ASINK_OK;
  for (int l = 0; l < w->L && !st; l++) st = asink_block_forward(w, l, &a, R, attend, g, g->nt);
  if (st) return st;
  for (int b = 0; b < c->B; b++) {
    c->seq[b].held += g->n[b];
    c->seq[b].pos += g->n[b];
  }
  if (!logits) return ASINK_OK;
  if (w->cfg.norm == ASINK_NORMPOS_PRE)
    asink_block_norm(w, xf, xmean, xrstd, a.x_out, w->lnf_w, w->lnf_b, R, g->nt);
  else
    memcpy(xf, a.x_out, (size_t)R * C * sizeof(float));
  /* each sequence's rows that want logits: [first, first + cnt) of xf, into out_row */
  int wanted = 0;
  for (int b = 0; b < c->B; b++) {
    /* no logits for the sink token (the group that began the sequence) */
    const int sink_row = extra && g->n[b] && c->seq[b].pos == g->n[b] ? 1 : 0;
    int cnt = g->n[b] - sink_row;
    wanted += last_only ? cnt > 0 : cnt;
  }
  /* A decode step's few rows go through the head in one product (the head matrix read
   * once, not once per sequence), gathered and then scattered; a prefill's per sequence. */
  const bool together = wanted <= DECODE_HEAD_ROWS;
  int k = 0;
  for (int b = 0; b < c->B; b++) {
    const int sink_row = extra && g->n[b] && c->seq[b].pos == g->n[b] ? 1 : 0;
    int first = g->row0[b] + sink_row, cnt = g->n[b] - sink_row;
    float *dst = logits + (last_only ? (size_t)b * V : ((size_t)b * n_max + done[b]) * V);
    if (!cnt) continue;
    if (last_only) first += cnt - 1, cnt = 1;
    if (together) {
      memcpy(g->xg + (size_t)k * C, xf + (size_t)first * C, (size_t)cnt * C * sizeof(float));
      k += cnt;
    } else {
      asink_matmul_wt(dst, V, xf + (size_t)first * C, C, w->head, w->head16, w->mixed, cnt, V, C, g->nt);
    }
  }
  if (together && k) {
    asink_matmul_wt(g->lg, V, g->xg, C, w->head, w->head16, w->mixed, k, V, C, g->nt);
    k = 0;
    for (int b = 0; b < c->B; b++) {
      const int sink_row = extra && g->n[b] && c->seq[b].pos == g->n[b] ? 1 : 0;
      int cnt = g->n[b] - sink_row;
      if (!cnt) continue;
      if (last_only) cnt = 1;
      float *dst = logits + (last_only ? (size_t)b * V : ((size_t)b * n_max + done[b]) * V);
      memcpy(dst, g->lg + (size_t)k * V, (size_t)cnt * V * sizeof(float));
      k += cnt;
    }
  }
  return ASINK_OK;
}

/* The rows sequence b contributes to the next group, rem tokens (plus its sink token)
 * still to feed. */
static int group_rows(const asink_cache *c, int b, int rem) {
  const int prefix = c->prefix;
  const seq_state *s = &c->seq[b];
  const int extra = c->sink_token && s->pos == 0 ? 1 : 0;
  int want = rem + extra;
  if (!want) return 0;
  int limit = c->chunk;
  if (s->pos < prefix && prefix - s->pos > limit) limit = (int)(prefix - s->pos);
  if (c->policy != POLICY_FULL) {
    int free_rows = c->cap - s->held;
    limit = free_rows > 0 ? (limit < free_rows ? limit : free_rows) : 1;
  }
  return want < limit ? want : limit;
}

static asink_status check_call(const asink_model *m, const asink_cache *c, const int *lengths,
                               int n_max, const int32_t *tokens) {
  const int prefix = c->prefix;
  const asink_weights *w = m->w;
  if (c->model_id != m->id)
    return asink_fail(ASINK_ERR_ARG, "asink_model_decode: the cache was made for another model");
  if (n_max < 0 || n_max > (1 << 30)) return asink_fail(ASINK_ERR_ARG, "decode: n=%d must be >= 0", n_max);
  if (n_max && !tokens) return asink_fail(ASINK_ERR_ARG, "decode: tokens is NULL");
  const int extra = w->cfg.sink_token ? 1 : 0;
  for (int b = 0; b < c->B; b++) {
    const int n = lengths ? lengths[b] : n_max;
    const seq_state *s = &c->seq[b];
    if (n < 0 || n > n_max)
      return asink_fail(ASINK_ERR_ARG, "decode: lengths[%d]=%d is outside [0, n_max=%d]", b, n, n_max);
    for (int i = 0; i < n; i++) {
      int32_t t = tokens[(size_t)b * n_max + i];
      if (t < 0 || t >= w->V)
        return asink_fail(ASINK_ERR_ARG, "decode: token %d of sequence %d (at %d) is outside the vocabulary [0, %d)",
                          t, b, i, w->V);
    }
    const int64_t end = s->pos + n + (extra && s->pos == 0 && n ? 1 : 0); /* positions after */
    if (c->policy == POLICY_FULL && end > c->cap)
      return asink_fail(ASINK_ERR_SHAPE, "decode: sequence %d would hold %lld tokens, past the full cache's max_len=%d",
                        b, (long long)(end - extra), c->max_len);
    if (w->cfg.pos == ASINK_POS_LEARNED && end > w->cfg.max_pos)
      return asink_fail(ASINK_ERR_SHAPE, "decode: sequence %d would reach position %lld, past the model's %d learned positions",
                        b, (long long)end - 1, w->cfg.max_pos);
    if (n && s->pos < prefix && end < prefix)
      return asink_fail(ASINK_ERR_STATE, "decode: the prefix-LM prefix of %d positions attends to itself: "
                                         "feed it whole (sequence %d would reach %lld)",
                        prefix, b, (long long)end);
  }
  return ASINK_OK;
}

static asink_status decode(asink_model *m, asink_cache *c, const int *lengths, int n_max,
                           const int32_t *tokens, float *logits, bool last_only) {
  if (!m || !c) return asink_fail(ASINK_ERR_ARG, "asink_model_decode: NULL %s", !m ? "model" : "cache");
  asink_weights *w = m->w;
  asink_status st = check_call(m, c, lengths, n_max, tokens);
  if (st) return st;
  asink_model_fresh_copies(m);
  int64_t most = 0;
  for (int b = 0; b < c->B; b++) {
    int64_t end = c->seq[b].pos + (lengths ? lengths[b] : n_max) + 1;
    if (end > most) most = end;
  }
  /* RoPE angles come from the table (or are computed past it); sinusoids from theirs,
   * which a full cache bounds */
  if ((st = asink_weights_tables(w, w->cfg.pos == ASINK_POS_SINUSOIDAL ? (int)most : 1))) return st;
  int *done = asink_calloc((size_t)2 * c->B, sizeof(int)), *n = done + c->B;
  if (!done) return asink_fail(ASINK_ERR_NOMEM, "decode: out of memory");
  if (logits && !last_only)
    memset(logits, 0, (size_t)c->B * n_max * w->V * sizeof(float));
  const asink_observer *obs = m->obs.ctx && m->obs.decode_step ? &m->obs : NULL;
  group g = {.c = c, .w = w, .obs = obs, .nt = asink_region_threads()};
  double share_rows = 0.0;
  if (!st) st = ensure_states(c, g.nt);
  if (obs && !(g.share = asink_calloc((size_t)w->L * w->H, sizeof(double)))) st = asink_fail(ASINK_ERR_NOMEM, "decode: out of memory");
  while (!st) {
    int R = 0, maxTk = 0;
    for (int b = 0; b < c->B; b++) {
      int len = lengths ? lengths[b] : n_max;
      n[b] = group_rows(c, b, len - done[b]);
      R += n[b];
      if (c->seq[b].held + n[b] > maxTk) maxTk = c->seq[b].held + n[b];
    }
    if (!R) break;
    /* the buffers for R rows: counted, reserved, carved */
    asink_carver cv = {NULL, 0};
    asink_block_acts a;
    float *xf, *xm, *xr;
    group sizing = g;
    layout(w, c, R, maxTk, &cv, &sizing, &a, &xf, &xm, &xr);
    if ((st = asink_ws_reserve(&c->work, cv.used * sizeof(float), "decode buffers"))) break;
    cv = (asink_carver){c->work.ptr, 0};
    layout(w, c, R, maxTk, &cv, &g, &a, &xf, &xm, &xr);
    memcpy(g.n, n, c->B * sizeof(int));
    if ((st = run_group(m, c, &g, &a, xf, xm, xr, tokens, n_max, done, logits, last_only))) break;
    for (int b = 0; b < c->B; b++) {
      done[b] += n[b] - (w->cfg.sink_token && n[b] && c->seq[b].pos == n[b] ? 1 : 0);
      share_rows += n[b];
    }
  }
  if (!st && obs && share_rows > 0) {
    float *share = asink_calloc((size_t)w->L * w->H, sizeof(float));
    if (!share) {
      st = asink_fail(ASINK_ERR_NOMEM, "decode: out of memory");
    } else {
      for (int i = 0; i < w->L * w->H; i++) share[i] = (float)(g.share[i] / share_rows);
      obs->decode_step(obs->ctx, w->L, w->H, share);
      asink_free(share);
    }
  }
  free(g.share);
  asink_free(done);
  return st;
}

asink_status asink_model_decode(asink_model *m, asink_cache *c, int n, const int32_t *tokens,
                                float *logits) {
  return decode(m, c, NULL, n, tokens, logits, false);
}

asink_status asink_model_decode_ragged(asink_model *m, asink_cache *c, const int *lengths,
                                       int n_max, const int32_t *tokens, float *logits) {
  if (!lengths) return asink_fail(ASINK_ERR_ARG, "asink_model_decode_ragged: lengths is NULL");
  return decode(m, c, lengths, n_max, tokens, logits, false);
}

/* ----------------------------------------------------------- generation */

asink_status asink_model_generate(asink_model *m, asink_cache *c, asink_sampler *s, int T0,
                                  const int32_t *prompt, int n_new, int32_t *out) {
  if (!m || !c || !s || !prompt || !out)
    return asink_fail(ASINK_ERR_ARG, "asink_model_generate: NULL argument");
  if (T0 < 1 || n_new < 0)
    return asink_fail(ASINK_ERR_ARG, "asink_model_generate: T0=%d must be >= 1 and n_new=%d >= 0", T0, n_new);
  const int B = c->B, V = m->w->V, T = T0 + n_new;
  float *logits = asink_alloc((size_t)B * V, sizeof(float));
  int32_t *next = asink_alloc((size_t)B, sizeof(int32_t));
  if (!logits || !next) {
    asink_free(logits);
    asink_free(next);
    return asink_fail(ASINK_ERR_NOMEM, "generate: out of memory");
  }
  asink_cache_reset(c);
  for (int b = 0; b < B; b++) memcpy(out + (size_t)b * T, prompt + (size_t)b * T0, T0 * sizeof(int32_t));
  asink_status st = n_new ? decode(m, c, NULL, T0, prompt, logits, true) : ASINK_OK;
  for (int i = 0; i < n_new && !st; i++) {
    for (int b = 0; b < B && !st; b++) {
      st = asink_sampler_pick(s, logits + (size_t)b * V, V, &next[b]);
      out[(size_t)b * T + T0 + i] = next[b];
    }
    if (!st && i + 1 < n_new) st = decode(m, c, NULL, 1, next, logits, true);
  }
  asink_free(logits);
  asink_free(next);
  return st;
}
