/* Blocked attention forward and backward (docs/attention.md): the drivers.
 *
 * Work is split over (batch, head) pairs. For each pair, a block of query rows is
 * scored against the keys any of its rows can see (one GEMM, plan.c), each row's
 * scores become its map through the base's row math (rows.h), importance and entropy
 * are summed from the same rows, and a second GEMM applies the map to the values.
 * Every row sees one contiguous interval of keys, so masking is a matter of where a
 * row starts and ends; whole invisible blocks are never computed.
 * A head's keys and values are packed for the GEMM once, not once per block: each block
 * of a causal head would otherwise pack on average half the head's keys and values again
 * (docs/performance.md).
 *
 * Backward recomputes the map from the saved row statistics, as FlashAttention does,
 * so no T x T map is ever stored. dk, dv and parameter gradients are accumulated in
 * per-thread buffers and summed in thread order: same thread count, same bits.
 *
 * The op is only read: every per-call buffer is the caller's state's.
 */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "attn/plan.h"
#include "attn/rows.h"
#include "core/error.h"
#include "core/runtime.h"

const attn_base *asink_attn_base_of(asink_base b) {
  switch (b) {
  case ASINK_BASE_SOFTMAX: return &asink_attn_softmax;
  case ASINK_BASE_SIGMOID: return &asink_attn_sigmoid;
  case ASINK_BASE_ELU: return &asink_attn_elu;
  case ASINK_BASE_ELU_KERNEL: return &asink_attn_elu_kernel;
  default: return &asink_attn_linear;
  }
}

/* Per-thread scratch, carved from one buffer. */
typedef struct {
  /* the head's keys and values packed once for all its blocks (asink_sgemm_pack_b), in
   * three slots of one panel set each (forward: kt, v; backward: kt, vt, k) */
  float *panels[3];
  float *S, *dP, *dOs, *sv, *pv, *dsv, *mul;
  int *band; /* 2 bq: the visible keys of the block's rows (block_plan) */
} scratch;

static size_t round16(size_t n) { return (n + 15) & ~(size_t)15; }

/* Whether a head of Tq queries in blocks of bq packs its keys and values once: only
 * where a block's GEMMs skip by band (the library's driver, which alone reads such
 * panels) and there is more than one block to share them (a decoding step is one). */
static bool packs_once(int Tq, int bq) { return asink_sgemm_band_skips() && Tq > bq; }

/* Floats of one slot: T keys of D, packed with keys for columns or for k (a multiple of 16
 * either way: whole panels). */
static size_t panel_slot(int T, int D) {
  size_t cols = asink_sgemm_packed_floats(T, D), ks = asink_sgemm_packed_floats(D, T);
  return cols > ks ? cols : ks;
}

/* A multiple of 16 floats, so every thread's panels start on a cache line. */
static size_t scratch_floats(int bq, int Tq, int T, int D) {
  size_t panels = packs_once(Tq, bq) ? 3 * panel_slot(T, D) : 0;
  return round16(panels + (size_t)2 * bq * (size_t)T + (size_t)bq * D + 6 * (size_t)bq + 64);
}

static scratch carve(float *base, int bq, int Tq, int T, int D) {
  scratch s;
  size_t slot = packs_once(Tq, bq) ? panel_slot(T, D) : 0;
  for (int i = 0; i < 3; i++) s.panels[i] = base + i * slot;
  s.S = base + 3 * slot;
  s.dP = s.S + (size_t)bq * T;
  s.dOs = s.dP + (size_t)bq * T;
  s.sv = s.dOs + (size_t)bq * D;
  s.pv = s.sv + bq;
  s.dsv = s.pv + bq;
  s.mul = s.dsv + bq;
  s.band = (int *)(s.mul + bq);
  return s;
}

/* The head's operands packed once; on is false where a head is one block (nothing to
 * share) or BLIS's driver runs (it packs its own), and the GEMMs then pack as before. */
typedef struct {
  asink_gemm_prepacked kt, vt, v, k;
  bool on;
} head_packs;

/* kt: the keys as the scores' B (keys for columns); v: the values as the outputs' B (keys
 * for k); backward adds vt (the values as dP's B) and k (the keys as dQ's B). */
static head_packs pack_head(const head_ctx *c, bool backward, const scratch *w) {
  head_packs hp = {.on = packs_once(c->g->Tq, c->bq)};
  if (!hp.on) return hp;
  const int Tk = c->g->Tk, D = c->op->D;
  asink_sgemm_pack_b(true, Tk, D, c->k, c->ldk, w->panels[0]);
  hp.kt = (asink_gemm_prepacked){w->panels[0], D, 0, 0};
  if (backward) {
    asink_sgemm_pack_b(true, Tk, D, c->v, c->ldk, w->panels[1]);
    asink_sgemm_pack_b(false, D, Tk, c->k, c->ldk, w->panels[2]);
    hp.vt = (asink_gemm_prepacked){w->panels[1], D, 0, 0};
    hp.k = (asink_gemm_prepacked){w->panels[2], Tk, 0, 0};
  } else {
    asink_sgemm_pack_b(false, D, Tk, c->v, c->ldk, w->panels[1]);
    hp.v = (asink_gemm_prepacked){w->panels[1], Tk, 0, 0};
  }
  return hp;
}

/* p's part of a packed operand for the block whose keys start at lo: keys as columns
 * (cols) or as k. */
static const asink_gemm_prepacked *packs_at(const head_packs *hp, asink_gemm_prepacked *p,
                                            bool cols, int lo) {
  if (!hp->on) return NULL;
  if (cols) p->j0 = lo;
  else p->p0 = lo;
  return p;
}

/* Scores of block rows [q0, q0+nq) against their visible keys (columns from lo,
 * row stride nk), plus virtual scores. */
static void block_scores(const head_ctx *c, const block_plan *p, int q0, int nq, int nk,
                         int lo, head_packs *hp, const scratch *w) {
  const asink_attn *op = c->op;
  asink_attn_tiles_abt(p, op->D, op->scale, c->q + (size_t)q0 * c->ldq, c->ldq,
                       c->k + (size_t)lo * c->ldk, c->ldk, packs_at(hp, &hp->kt, true, lo), w->S,
                       nk);
  if (c->kstar)
    for (int r = 0; r < nq; r++)
      w->sv[r] = op->scale * c->kn->dot(op->D, c->q + (size_t)(q0 + r) * c->ldq, c->kstar) +
                 op->spec.bias;
}

static int bucket_of(const head_ctx *c, int64_t dist) {
  dist = dist < 0 ? -dist : dist;
  return c->bucket[dist < ASINK_REL_TABLE ? dist : ASINK_REL_TABLE - 1];
}

/* Adds the constant bias, the ALiBi ramp and the relative bias to the visible part
 * x[0..n) of the row of the query at position t, whose first key is a. */
static void add_score_terms(const head_ctx *c, float *x, int n, int a, int64_t t) {
  const attn_geom *g = c->g;
  if (c->op->spec.bias != 0.f) c->kn->add_const(n, x, c->op->spec.bias);
  if (c->slope != 0.f) {
    if (!g->kpos)
      c->kn->add_ramp(n, x, c->slope, (float)(a - t));
    else
      for (int i = 0; i < n; i++) x[i] += c->slope * (float)(g->kpos[a + i] - t);
  }
  if (c->rel)
    for (int i = 0; i < n; i++) x[i] += c->rel[bucket_of(c, t - asink_kpos(g, a + i))];
}

static void zero_outside(float *row, int nk, int a, int n) {
  memset(row, 0, sizeof(float) * (size_t)a);
  memset(row + a + n, 0, sizeof(float) * (size_t)(nk - a - n));
}

/* The keys of block rows [q0, q0 + nq): first lo, count nk; and its plan. */
static void block_keys(const asink_spec *sp, const attn_geom *g, int q0, int nq, int *band,
                       int *lo, int *nk, block_plan *pl) {
  int hi, unused;
  asink_visible(sp, g, q0, lo, &unused);
  asink_visible(sp, g, q0 + nq - 1, &unused, &hi);
  *nk = hi - *lo + 1;
  asink_attn_plan_block(sp, g, q0, nq, *lo, *nk, band, pl);
}

/* Queries that count key j in its importance: those at or after its position (the
 * T - j of a training pass). */
static int key_audience(const attn_geom *g, int j) {
  const int64_t kp = asink_kpos(g, j);
  int first;
  if (!g->qpos) {
    int64_t d = kp - g->p0;
    first = d <= 0 ? 0 : d >= g->Tq ? g->Tq : (int)d;
  } else {
    int a = 0, b = g->Tq;
    while (a < b) {
      int mid = (a + b) / 2;
      if (g->qpos[mid] >= kp) b = mid;
      else a = mid + 1;
    }
    first = a;
  }
  return g->Tq - first > 0 ? g->Tq - first : 1;
}

/* ------------------------------------------------------------------- forward */

/* Adds w |x| into imp_real[0..n): one SIMD axpy where the map is never negative
 * (BLIS's m = 1 GEMM over a whole block measured slower: it packs the block). */
static void importance_row(const head_ctx *c, const attn_base *rm, const float *x, int n,
                           float w, float *imp_real) {
  if (rm->nonnegative)
    c->kn->axpy(n, w, x, imp_real);
  else
    for (int i = 0; i < n; i++) imp_real[i] += w * fabsf(x[i]);
}

static void forward_head(const head_ctx *c, const attn_base *rm, float *o, float *stats,
                         float *imp, float *ent, float *first, const scratch *w) {
  const asink_attn *op = c->op;
  const asink_kernels *kn = c->kn;
  const attn_geom *g = c->g;
  const int Tq = g->Tq, Tk = g->Tk, D = op->D, ldq = c->ldq, ldk = c->ldk;
  const int voff = c->kstar ? 1 : 0; /* importance column of real key 0 */
  /* entropy by the exp pass's dot product, where the base takes it so */
  const bool ent_dot = ent && rm->entropy_from_dot;
  if (imp) memset(imp, 0, sizeof(float) * (size_t)(Tk + voff));
  if (ent) *ent = 0.f;
  if (first) *first = 0.f;
  head_packs hp = pack_head(c, false, w);
  for (int q0 = 0; q0 < Tq; q0 += c->bq) {
    int nq = Tq - q0 < c->bq ? Tq - q0 : c->bq, lo, nk;
    block_plan pl;
    block_keys(&op->spec, g, q0, nq, w->band, &lo, &nk, &pl);
    block_scores(c, &pl, q0, nq, nk, lo, &hp, w);
    for (int r = 0; r < nq; r++) {
      int i = q0 + r, a = lo + pl.vis.lo[r], e = lo + pl.vis.hi[r];
      int64_t t = asink_qpos(g, i);
      float *row = w->S + (size_t)r * nk;
      float *x = row + (a - lo);
      int n = e - a + 1;
      float *st = stats + 2 * (size_t)i;
      add_score_terms(c, x, n, a, t);
      float xs = 0.f;
      float mul = rm->forward_row(c, x, n, w->sv[r], &w->pv[r], st, ent_dot ? &xs : NULL);
      w->mul[r] = mul;
      zero_outside(row, nk, a - lo, n);
      if (imp || ent || first) {
        float sw = rm->stat_weight(c, x, n, w->pv[r], mul);
        if (first) *first += sw * fabsf(x[0]); /* x[0]: key a, the first the row sees */
        if (imp && voff) imp[0] += sw * fabsf(w->pv[r]);
        if (imp) importance_row(c, rm, x, n, sw, imp + voff + a);
        if (ent) *ent += rm->row_entropy(c, x, n, w->pv[r], w->sv[r], xs, st, mul, sw);
      }
    }
    float *ob = o + (size_t)q0 * ldq;
    asink_attn_tiles_ab(&pl, D, 1.f, w->S, nk, c->v + (size_t)lo * ldk, ldk,
                        packs_at(&hp, &hp.v, false, lo), ob, ldq);
    for (int r = 0; r < nq; r++) {
      float *orow = ob + (size_t)r * ldq;
      if (w->mul[r] != 1.f) kn->scale(D, orow, w->mul[r]);
      if (c->vstar) kn->axpy(D, w->mul[r] * w->pv[r], c->vstar, orow);
      if (c->vadd) kn->axpy(D, 1.f, c->vadd, orow);
    }
  }
  if (first) *first /= (float)Tq;
  if (imp) {
    if (voff) imp[0] /= (float)Tq;
    for (int j = 0; j < Tk; j++) imp[voff + j] /= (float)key_audience(g, j);
  }
}

/* ------------------------------------------------------------------ backward */

/* Per-thread gradient accumulators. */
typedef struct {
  float *dk, *dv, *gk, *gv, *gs, *gr;
} grads;

static void backward_head(const head_ctx *c, const attn_base *rm, const float *out,
                          const float *dout, float *dq, const float *stats, const grads *g,
                          const scratch *w) {
  const asink_attn *op = c->op;
  const asink_kernels *kn = c->kn;
  const asink_spec *sp = &op->spec;
  const attn_geom *g_ = c->g;
  const int Tq = g_->Tq, D = op->D, ldq = c->ldq, ldk = c->ldk;
  float *gk = c->kstar ? g->gk + (op->n_kb > 1 ? (size_t)c->h * D : 0) : NULL;
  float *gv = op->n_vb ? g->gv + (op->n_vb > 1 ? (size_t)c->h * D : 0) : NULL;
  float *gsink = op->p.sinks ? g->gs + c->h : NULL;
  float *grel = op->p.rel ? g->gr + (size_t)c->h * ASINK_REL_BUCKETS : NULL;
  head_packs hp = pack_head(c, true, w);
  for (int q0 = 0; q0 < Tq; q0 += c->bq) {
    int nq = Tq - q0 < c->bq ? Tq - q0 : c->bq, lo, nk;
    const float *dob = dout + (size_t)q0 * ldq;
    block_plan pl;
    block_keys(sp, g_, q0, nq, w->band, &lo, &nk, &pl);
    block_scores(c, &pl, q0, nq, nk, lo, &hp, w);
    for (int r = 0; r < nq; r++) {
      int i = q0 + r, a = lo + pl.vis.lo[r], e = lo + pl.vis.hi[r];
      float *row = w->S + (size_t)r * nk;
      add_score_terms(c, row + (a - lo), e - a + 1, a, asink_qpos(g_, i));
      rm->recompute_row(c, row + (a - lo), e - a + 1, w->sv[r], &w->pv[r], stats + 2 * (size_t)i);
      zero_outside(row, nk, a - lo, e - a + 1);
    }
    /* dV += A^T dO with A = map_mul * x: one GEMM when every row has the same
     * multiplier, else through dO rows scaled by their row's. */
    if (rm->uniform_map_mul) {
      asink_attn_tiles_atb(&pl, D, rm->map_mul(c, stats), w->S, nk, dob, ldq,
                           g->dv + (size_t)lo * ldk, ldk);
    } else {
      for (int r = 0; r < nq; r++) {
        memcpy(w->dOs + (size_t)r * D, dob + (size_t)r * ldq, sizeof(float) * D);
        kn->scale(D, w->dOs + (size_t)r * D, rm->map_mul(c, stats + 2 * (size_t)(q0 + r)));
      }
      asink_attn_tiles_atb(&pl, D, 1.f, w->S, nk, w->dOs, D, g->dv + (size_t)lo * ldk, ldk);
    }
    /* dP = dO V^T, then dS in place. */
    asink_attn_tiles_abt(&pl, D, 1.f, dob, ldq, c->v + (size_t)lo * ldk, ldk,
                         packs_at(&hp, &hp.vt, true, lo), w->dP, nk);
    for (int r = 0; r < nq; r++) {
      int i = q0 + r, a = lo + pl.vis.lo[r], e = lo + pl.vis.hi[r];
      int64_t t = asink_qpos(g_, i);
      const float *dot_ = dob + (size_t)r * ldq;
      const float *st = stats + 2 * (size_t)i;
      float Dt = kn->dot(D, dot_, out + (size_t)i * ldq);
      if (c->vadd) Dt -= kn->dot(D, dot_, c->vadd);
      float dpv = c->vstar ? kn->dot(D, dot_, c->vstar) : 0.f;
      float *drow = w->dP + (size_t)r * nk;
      w->dsv[r] = rm->backward_row(c, drow + (a - lo), w->S + (size_t)r * nk + (a - lo),
                                   e - a + 1, w->pv[r], dpv, Dt, st, gsink);
      if (grel)
        for (int j = a; j <= e; j++) grel[bucket_of(c, t - asink_kpos(g_, j))] += drow[j - lo];
      zero_outside(drow, nk, a - lo, e - a + 1);
      if (gv && c->vstar) kn->axpy(D, rm->map_mul(c, st) * w->pv[r], dot_, gv);
      if (gv && c->vadd) kn->axpy(D, 1.f, dot_, gv);
    }
    float *dqb = dq + (size_t)q0 * ldq;
    asink_attn_tiles_ab(&pl, D, op->scale, w->dP, nk, c->k + (size_t)lo * ldk, ldk,
                        packs_at(&hp, &hp.k, false, lo), dqb, ldq);
    asink_attn_tiles_atb(&pl, D, op->scale, w->dP, nk, c->q + (size_t)q0 * ldq, ldq,
                         g->dk + (size_t)lo * ldk, ldk);
    if (c->kstar)
      for (int r = 0; r < nq; r++) {
        kn->axpy(D, op->scale * w->dsv[r], c->kstar, dqb + (size_t)r * ldq);
        kn->axpy(D, op->scale * w->dsv[r], c->q + (size_t)(q0 + r) * ldq, gk);
      }
  }
}

/* ------------------------------------------------------------------- drivers */

static head_ctx make_ctx(const asink_attn *op, const asink_attn_state *s, const float *q,
                         const float *k, const float *v, int b, int h) {
  const int Tq = s->g.Tq, Tk = s->g.Tk, H = op->H, Hkv = op->Hkv, D = op->D;
  const int kvh = h / (H / Hkv);
  head_ctx c = {.op = op, .kn = asink_kern(), .g = &s->g, .h = h, .bq = asink_attn_block_rows(Tq, Tk)};
  c.ldq = H * D;
  c.ldk = Hkv * D;
  c.q = q + (size_t)b * Tq * c.ldq + (size_t)h * D;
  c.k = k + (size_t)b * Tk * c.ldk + (size_t)kvh * D;
  c.v = v + (size_t)b * Tk * c.ldk + (size_t)kvh * D;
  c.slope = op->spec.alibi ? exp2f(-8.f * (float)(h + 1) / (float)H) : 0.f;
  c.kstar = op->n_kb ? op->p.k_bias + (op->n_kb > 1 ? (size_t)h * D : 0) : NULL;
  const float *vb = op->n_vb ? op->p.v_bias + (op->n_vb > 1 ? (size_t)h * D : 0) : NULL;
  c.vstar = op->n_kb ? vb : NULL;
  c.vadd = op->n_kb ? NULL : vb;
  c.rel = op->p.rel ? op->p.rel + (size_t)h * ASINK_REL_BUCKETS : NULL;
  c.bucket = s->buckets.ptr;
  c.sink_logit = op->spec.sink == ASINK_SINK_HEAD ? op->p.sinks[h]
                 : op->spec.sink == ASINK_SINK_ZERO ? 0.f
                                                    : -INFINITY;
  return c;
}

/* Threads for a pass: at most one per (sequence, head), and one for a pass smaller than
 * about half a million multiply-adds (a decode step of a small model), where starting a
 * second thread costs more than it saves. */
static int team_size(const asink_attn *op, const asink_attn_state *s) {
  int nt = asink_region_threads();
  int items = s->B * op->H;
  if ((double)items * s->g.Tq * s->g.Tk * op->D < (double)(1 << 19)) return 1;
  return nt < items ? nt : items;
}

/* Feature-mapped bases: phi(x) = elu(x) + 1 of q and k, into s->feat. */
static asink_status features(const asink_attn *op, asink_attn_state *s, const float **q,
                             const float **k) {
  size_t nq = (size_t)s->B * s->g.Tq * op->H * op->D, nk = (size_t)s->B * s->g.Tk * op->Hkv * op->D;
  asink_status st = asink_ws_reserve(&s->feat, (nq + nk) * sizeof(float), "elu-kernel features");
  if (st) return st;
  float *fq = s->feat.ptr, *fk = fq + nq;
  memcpy(fq, *q, nq * sizeof(float));
  memcpy(fk, *k, nk * sizeof(float));
  asink_kern()->elu1(nq, fq);
  asink_kern()->elu1(nk, fk);
  *q = fq;
  *k = fk;
  return ASINK_OK;
}

static asink_status reserve_scratch(const asink_attn *op, asink_attn_state *s, int nt) {
  if (op->p.rel && !s->buckets.ptr) {
    asink_status st = asink_ws_reserve(&s->buckets, ASINK_REL_TABLE, "relative-bias buckets");
    if (st) return st;
    unsigned char *b = s->buckets.ptr;
    for (int n = 0; n < ASINK_REL_TABLE; n++) b[n] = (unsigned char)asink_relative_bucket(n);
  }
  const int Tq = s->g.Tq, Tk = s->g.Tk;
  size_t per = scratch_floats(asink_attn_block_rows(Tq, Tk), Tq, Tk, op->D);
  return asink_ws_reserve(&s->thread_ws, asink_mul_size(per * sizeof(float), (size_t)nt),
                          "attention scratch");
}

asink_status asink_attn_forward_blocked(const asink_attn *op, asink_attn_state *s, const float *q,
                                        const float *k, const float *v, float *out,
                                        float *importance, float *entropy) {
  const int B = s->B, Tq = s->g.Tq, Tk = s->g.Tk, H = op->H;
  const attn_base *rm = asink_attn_base_of(op->spec.base);
  asink_status st = asink_ws_reserve(&s->row_stats, asink_mul_size((size_t)B * H * Tq, 2 * sizeof(float)),
                                     "attention row statistics");
  if (st) return st;
  if (rm->features && (st = features(op, s, &q, &k))) return st;
  int nt = team_size(op, s);
  if ((st = reserve_scratch(op, s, nt))) return st;
  const int bq = asink_attn_block_rows(Tq, Tk);
  const size_t per = scratch_floats(bq, Tq, Tk, op->D);
  const int cols = Tk + (op->n_kb ? 1 : 0); /* importance columns */
  float *stats = s->row_stats.ptr;
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    scratch w = carve((float *)s->thread_ws.ptr + per * omp_get_thread_num(), bq, Tq, Tk, op->D);
#pragma omp for schedule(static)
    for (int i = 0; i < B * H; i++) {
      int b = i / H, h = i % H;
      head_ctx c = make_ctx(op, s, q, k, v, b, h);
      forward_head(&c, rm, out + (size_t)b * Tq * c.ldq + (size_t)h * op->D, stats + (size_t)i * Tq * 2,
                   importance ? importance + (size_t)i * cols : NULL, entropy ? entropy + i : NULL,
                   s->first_share ? s->first_share + i : NULL, &w);
    }
  }
  return ASINK_OK;
}

asink_status asink_attn_backward_blocked(const asink_attn *op, asink_attn_state *s,
                                         const attn_param_views *gp, const float *q,
                                         const float *k, const float *v, const float *out,
                                         const float *dout, float *dq, float *dk, float *dv) {
  const int B = s->B, Tq = s->g.Tq, Tk = s->g.Tk, H = op->H, Hkv = op->Hkv, D = op->D, G = H / Hkv;
  const attn_base *rm = asink_attn_base_of(op->spec.base);
  asink_status st;
  if (rm->features && (st = features(op, s, &q, &k))) return st;
  int nt = team_size(op, s);
  if ((st = reserve_scratch(op, s, nt))) return st;
  /* With at least one (batch, kv head) item per thread, each thread owns whole items:
   * the heads sharing a kv head run on one thread, which writes their dk, dv rows
   * directly. Otherwise (few sequences and kv heads) work is split by query head and
   * dk, dv are summed from per-thread copies. Either way the order is fixed, so the
   * same thread count gives the same bits. */
  const bool owned = B * Hkv >= nt;
  const size_t nkv = (size_t)B * Tk * Hkv * D, nkv_acc = owned ? 0 : nkv;
  const size_t ngk = (size_t)op->n_kb * D, ngv = (size_t)op->n_vb * D, ngs = op->p.sinks ? H : 0;
  const size_t ngr = op->p.rel ? (size_t)H * ASINK_REL_BUCKETS : 0;
  const size_t per_acc = 2 * nkv_acc + ngk + ngv + ngs + ngr;
  if ((st = asink_ws_reserve(&s->accum, asink_mul_size(per_acc * sizeof(float) + 64, (size_t)nt),
                             "attention gradient accumulators")))
    return st;
  const int bq = asink_attn_block_rows(Tq, Tk);
  const size_t per = scratch_floats(bq, Tq, Tk, D);
  const float *stats = s->row_stats.ptr;
  float *acc = s->accum.ptr;
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    int tid = omp_get_thread_num();
    scratch w = carve((float *)s->thread_ws.ptr + per * tid, bq, Tq, Tk, D);
    float *mine = acc + per_acc * tid;
    memset(mine, 0, per_acc * sizeof(float));
    float *pg = mine + 2 * nkv_acc;
    grads g = {owned ? dk : mine, owned ? dv : mine + nkv, pg, pg + ngk, pg + ngk + ngv, pg + ngk + ngv + ngs};
    const int items = owned ? B * Hkv : B * H;
#pragma omp for schedule(static)
    for (int i = 0; i < items; i++) {
      int b = owned ? i / Hkv : i / H;
      int h0 = owned ? (i % Hkv) * G : i % H, h1 = owned ? h0 + G : h0 + 1;
      if (owned) /* this item's dk, dv rows start from zero */
        for (int t = 0; t < Tk; t++) {
          size_t row = ((size_t)b * Tk + t) * Hkv * D + (size_t)(i % Hkv) * D;
          memset(dk + row, 0, sizeof(float) * D);
          memset(dv + row, 0, sizeof(float) * D);
        }
      for (int h = h0; h < h1; h++) {
        head_ctx c = make_ctx(op, s, q, k, v, b, h);
        size_t qoff = (size_t)b * Tq * c.ldq + (size_t)h * D;
        size_t kvoff = (size_t)(c.k - k);
        grads gh = {g.dk + kvoff, g.dv + kvoff, g.gk, g.gv, g.gs, g.gr};
        backward_head(&c, rm, out + qoff, dout + qoff, dq + qoff, stats + ((size_t)b * H + h) * Tq * 2, &gh, &w);
      }
    }
  }
  /* Sum the per-thread accumulators in thread order (deterministic). */
  const asink_kernels *kn = asink_kern();
  if (!owned) {
    memcpy(dk, acc, nkv * sizeof(float));
    memcpy(dv, acc + nkv, nkv * sizeof(float));
  }
  for (int t = 0; t < nt; t++) {
    const float *m = acc + per_acc * t;
    if (t && !owned) {
      kn->axpy(nkv, 1.f, m, dk);
      kn->axpy(nkv, 1.f, m + nkv, dv);
    }
    const float *p = m + 2 * nkv_acc;
    if (ngk) kn->axpy(ngk, 1.f, p, gp->k_bias);
    if (ngv) kn->axpy(ngv, 1.f, p + ngk, gp->v_bias);
    if (ngs) kn->axpy(ngs, 1.f, p + ngk + ngv, gp->sinks);
    if (ngr) kn->axpy(ngr, 1.f, p + ngk + ngv + ngs, gp->rel);
  }
  if (rm->features) {
    /* d phi(x) / dx = 1 for x > 0, exp(x) = phi(x) otherwise. */
    kn->elu1_bwd((size_t)B * Tq * H * D, dq, q, 0.f, 1.f);
    kn->elu1_bwd(nkv, dk, k, 0.f, 1.f);
  }
  return ASINK_OK;
}
