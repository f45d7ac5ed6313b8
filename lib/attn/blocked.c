/* Blocked attention forward and backward (DESIGN §7, docs/attention.md).
 *
 * Work is split over (batch, head) pairs. For each pair, a block of query rows is
 * scored against the keys any of its rows can see (one GEMM), the similarity, mask,
 * row statistics and importance sums run over each row in SIMD, and a second GEMM
 * applies the map to the values. Every row sees one contiguous interval of keys,
 * so masking is a matter of where a row starts and ends; whole invisible blocks
 * (above the causal diagonal, left of a window) are never computed.
 *
 * Backward recomputes the map from the saved row statistics (softmax: log-sum-exp;
 * other bases: 1/den and den'(r) of the row normalisation), as FlashAttention does,
 * so no T x T map is ever stored. dk, dv and parameter gradients are accumulated in
 * per-thread buffers and summed in thread order: same thread count, same bits.
 */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "attn/attn_internal.h"
#include "core/blas.h"
#include "core/error.h"
#include "kernels/kernels.h"

/* Query rows per block: up to 256 rows (BLIS runs m >= 256 GEMMs near its peak,
 * m = 64 at about 60%), keeping a block's scores within about 4 MiB. */
static int block_rows(int T) {
  int bq = (1 << 20) / T / 8 * 8;
  if (bq < 32) bq = 32;
  if (bq > 256) bq = 256;
  return bq < T ? bq : T;
}

/* How a block's GEMMs cover its visible (query, key) pairs. With the library's GEMM
 * driver (asink_sgemm_band_skips) one GEMM spans the block and skips, per BLIS
 * micro-tile, the products outside every row's visible keys (the band below). With
 * BLIS's own driver the visible part is cut into tiles instead: the rectangle of keys
 * every row of the block sees (one tall GEMM), plus, per chunk of SUB_ROWS rows, the
 * staircase pieces left and right of it, so the masked triangle of a diagonal block
 * costs SUB_ROWS / 2 wasted columns a row instead of half the block (128 rows
 * measured about 5% faster than 64 at T = 1024 with bench_attention's paired roof
 * fraction). Columns are relative to the block's first key lo. */
typedef struct {
  int r0, nr, c0, nc;
  bool first; /* the first tile of its rows (GEMMs into rows overwrite) */
} tile;
enum { SUB_ROWS = 128, MAX_TILES = 2 * (256 / SUB_ROWS) + 1 };

/* Row r of the block sees keys [lo[r], hi[r]] (relative to the block's first key),
 * both non-decreasing in r for every mask of DESIGN §4. */
typedef struct {
  const int *lo, *hi;
  int nq;
} vis_band;

typedef struct {
  vis_band vis; /* every block has it: the row loops read their keys from it */
  tile t[MAX_TILES];
  int n;
  asink_gemm_band scores;    /* C rows = queries, C columns = keys (k = D) */
  asink_gemm_band rows_keys; /* C rows = queries, k = keys */
  asink_gemm_band keys_rows; /* C rows = keys, k = queries */
  bool banded;
} block_plan;

/* Queries r0..r1 see keys within [lo[r0], hi[r1]]. */
static void band_keys_of_rows(const void *ctx, int r0, int r1, int *k0, int *k1) {
  const vis_band *v = ctx;
  *k0 = v->lo[r0], *k1 = v->hi[r1] + 1;
}

static bool band_wanted(const void *ctx, int r0, int r1, int c0, int c1) {
  const vis_band *v = ctx;
  return c0 <= v->hi[r1] && c1 >= v->lo[r0];
}

/* first index i in [0, n) with x[i] > key (x non-decreasing), n if none */
static int upper_bound(const int *x, int n, int key) {
  int a = 0, b = n;
  while (a < b) {
    int mid = (a + b) / 2;
    if (x[mid] > key) b = mid;
    else a = mid + 1;
  }
  return a;
}

/* Keys r0..r1 are seen by the queries q with hi[q] >= r0 and lo[q] <= r1. */
static void band_rows_of_keys(const void *ctx, int r0, int r1, int *k0, int *k1) {
  const vis_band *v = ctx;
  *k0 = upper_bound(v->hi, v->nq, r0 - 1);
  *k1 = upper_bound(v->lo, v->nq, r1);
}

static int block_tiles(const asink_spec *sp, int T, int q0, int nq, int lo, tile *t) {
  int lo_max, hi_min, unused, n = 0;
  asink_visible(sp, T, q0 + nq - 1, &lo_max, &unused);
  asink_visible(sp, T, q0, &unused, &hi_min);
  /* A rectangle a few keys wide (the first block of a causal head: one key) would
   * be a GEMM of n = 1..15; the chunk tiles then simply cover it. */
  bool rect = hi_min - lo_max + 1 >= 16;
  if (rect) t[n++] = (tile){0, nq, lo_max - lo, hi_min - lo_max + 1, true};
  for (int r0 = 0; r0 < nq; r0 += SUB_ROWS) {
    int nr = nq - r0 < SUB_ROWS ? nq - r0 : SUB_ROWS, lo_c, hi_c;
    asink_visible(sp, T, q0 + r0, &lo_c, &unused);
    asink_visible(sp, T, q0 + r0 + nr - 1, &unused, &hi_c);
    if (!rect) {
      t[n++] = (tile){r0, nr, lo_c - lo, hi_c - lo_c + 1, true};
      continue;
    }
    if (lo_c < lo_max) t[n++] = (tile){r0, nr, lo_c - lo, lo_max - lo_c, false};
    if (hi_c > hi_min) t[n++] = (tile){r0, nr, hi_min + 1 - lo, hi_c - hi_min, false};
  }
  return n;
}

/* The plan of block rows [q0, q0+nq) whose keys start at lo (nk of them); band
 * storage: 2 nq ints. The bands point into the plan, which must stay in place. */
static void plan_block(const asink_spec *sp, int T, int q0, int nq, int lo, int nk, int *band,
                       block_plan *p) {
  int *blo = band, *bhi = band + nq;
  for (int r = 0; r < nq; r++) {
    asink_visible(sp, T, q0 + r, &blo[r], &bhi[r]);
    blo[r] -= lo, bhi[r] -= lo;
  }
  p->vis = (vis_band){blo, bhi, nq};
  p->banded = asink_sgemm_band_skips();
  if (!p->banded) {
    p->n = block_tiles(sp, T, q0, nq, lo, p->t);
    return;
  }
  p->t[0] = (tile){0, nq, 0, nk, true};
  p->n = 1;
  p->scores = (asink_gemm_band){NULL, band_wanted, &p->vis};
  p->rows_keys = (asink_gemm_band){band_keys_of_rows, NULL, &p->vis};
  p->keys_rows = (asink_gemm_band){band_rows_of_keys, NULL, &p->vis};
}

/* S[tile] = alpha * A[rows] B[cols]^T: scores (A = q, B = k) or dP (A = dO, B = v). */
static void tiles_abt(const block_plan *p, int D, float alpha, const float *A, int lda,
                      const float *B, int ldb, float *S, int lds) {
  for (int i = 0; i < p->n; i++) {
    const tile *t = &p->t[i];
    asink_sgemm_band(false, true, t->nr, t->nc, D, alpha, A + (size_t)t->r0 * lda, lda,
                     B + (size_t)t->c0 * ldb, ldb, 0.f, S + (size_t)t->r0 * lds + t->c0, lds, 1,
                     p->banded ? &p->scores : NULL);
  }
}

/* O[rows] (+)= alpha * S[tile] B[cols]: outputs (B = v) or dQ (S = dS, B = k). */
static void tiles_ab(const block_plan *p, int D, float alpha, const float *S, int lds,
                     const float *B, int ldb, float *O, int ldo) {
  for (int i = 0; i < p->n; i++) {
    const tile *t = &p->t[i];
    asink_sgemm_band(false, false, t->nr, D, t->nc, alpha, S + (size_t)t->r0 * lds + t->c0, lds,
                     B + (size_t)t->c0 * ldb, ldb, t->first ? 0.f : 1.f, O + (size_t)t->r0 * ldo,
                     ldo, 1, p->banded ? &p->rows_keys : NULL);
  }
}

/* G[cols] += alpha * S[tile]^T A[rows]: dV (S = A, A = dO) or dK (S = dS, A = q). */
static void tiles_atb(const block_plan *p, int D, float alpha, const float *S, int lds,
                      const float *A, int lda, float *G, int ldg) {
  for (int i = 0; i < p->n; i++) {
    const tile *t = &p->t[i];
    asink_sgemm_band(true, false, t->nc, D, t->nr, alpha, S + (size_t)t->r0 * lds + t->c0, lds,
                     A + (size_t)t->r0 * lda, lda, 1.f, G + (size_t)t->c0 * ldg, ldg, 1,
                     p->banded ? &p->keys_rows : NULL);
  }
}

/* Per-(b, h) view of the operands and the head's constants. */
typedef struct {
  const asink_attn *op;
  const asink_kernels *kn;
  int T, h, bq;
  const float *q, *k, *v; /* rows of this head; strides ldq (q, out) and ldk (k, v) */
  int ldq, ldk;
  float slope;                /* ALiBi slope, 0 if off */
  const float *kstar, *vstar; /* virtual key and its value (vstar NULL = zero value) */
  const float *vadd;          /* vbias without kbias: added to every output row */
  float sink_logit;           /* softmax sink logit; -INFINITY if none */
  const float *rel;           /* relbias: this head's 32 bucket values, or NULL */
  const unsigned char *bucket; /* relbias: bucket of each distance */
} head_ctx;

/* Per-thread scratch, carved from one buffer. */
typedef struct {
  float *S, *dP, *dOs, *sv, *pv, *dsv, *mul;
  int *band; /* 2 bq: the visible keys of the block's rows (block_plan) */
} scratch;

static size_t scratch_floats(int bq, int T, int D) {
  return (size_t)2 * bq * (size_t)T + (size_t)bq * D + 6 * (size_t)bq + 64;
}

static scratch carve(float *base, int bq, int T, int D) {
  scratch s;
  s.S = base;
  s.dP = s.S + (size_t)bq * T;
  s.dOs = s.dP + (size_t)bq * T;
  s.sv = s.dOs + (size_t)bq * D;
  s.pv = s.sv + bq;
  s.dsv = s.pv + bq;
  s.mul = s.dsv + bq;
  s.band = (int *)(s.mul + bq);
  return s;
}

static float similarity1(asink_base base, float s) {
  switch (base) {
  case ASINK_BASE_SIGMOID: return 1.f / (1.f + expf(-s));
  case ASINK_BASE_ELU: return s > 0.f ? s + 1.f : expf(s);
  default: return s;
  }
}

static void similarity_row(const asink_kernels *kn, asink_base base, int n, float *x) {
  if (base == ASINK_BASE_SIGMOID) kn->sigmoid(n, x);
  else if (base == ASINK_BASE_ELU) kn->elu1(n, x);
}

/* Scores of block rows [q0, q0+nq) against their visible keys (columns from lo,
 * row stride nk), plus virtual scores. */
static void block_scores(const head_ctx *c, const block_plan *p, int q0, int nq, int nk,
                         int lo, const scratch *w) {
  const asink_attn *op = c->op;
  tiles_abt(p, op->D, op->scale, c->q + (size_t)q0 * c->ldq, c->ldq, c->k + (size_t)lo * c->ldk,
            c->ldk, w->S, nk);
  if (c->kstar)
    for (int r = 0; r < nq; r++)
      w->sv[r] = op->scale * c->kn->dot(op->D, c->q + (size_t)(q0 + r) * c->ldq, c->kstar) +
                 op->spec.bias;
}

/* Adds the constant bias and the ALiBi ramp to the visible part x[0..n) of row t,
 * whose first key is a. */
static void add_score_terms(const head_ctx *c, float *x, int n, int a, int t) {
  if (c->op->spec.bias != 0.f) c->kn->add_const(n, x, c->op->spec.bias);
  if (c->slope != 0.f) c->kn->add_ramp(n, x, c->slope, (float)(a - t));
  if (c->rel)
    for (int i = 0; i < n; i++) x[i] += c->rel[c->bucket[abs(t - a - i)]];
}

static void zero_outside(float *row, int nk, int a, int n) {
  memset(row, 0, sizeof(float) * (size_t)a);
  memset(row + a + n, 0, sizeof(float) * (size_t)(nk - a - n));
}

/* ------------------------------------------------------------------- forward */

/* Turns the visible scores x[0..n) of one row into the unnormalised map (softmax:
 * exp(s - max); other bases: the similarity) and returns the row's multiplier: the
 * map applied to the values is A = mul * x. The multiplier is applied to the D-wide
 * output row after the GEMM rather than to the n-wide map row, saving a pass over
 * every score. *pv receives the virtual key's unnormalised entry. Saves the row
 * statistics in st[0..1]. For softmax with sdot, *sdot = sum_j x_j s_j of the
 * result and the scores (the entropy's term), from the same pass. */
static float forward_row(const head_ctx *c, float *x, int n, float sv, float *pv, float *st,
                         float *sdot) {
  const asink_kernels *kn = c->kn;
  const asink_spec *sp = &c->op->spec;
  if (sp->base == ASINK_BASE_SOFTMAX) {
    float m = kn->max(n, x);
    if (c->kstar && sv > m) m = sv;
    if (c->sink_logit > m) m = c->sink_logit;
    float l = sdot ? kn->exp_shift_sum_dot(n, x, m, sdot) : kn->exp_shift_sum(n, x, m);
    float ev = c->kstar ? expf(sv - m) : 0.f;
    l += ev;
    if (c->sink_logit != -INFINITY) l += expf(c->sink_logit - m);
    *pv = ev;
    st[0] = m + logf(l);
    st[1] = 0.f;
    return sp->alpha / l;
  }
  similarity_row(kn, sp->base, n, x);
  float a_v = c->kstar ? similarity1(sp->base, sv) : 0.f;
  float r = sp->norm != ASINK_NORM_NONE ? kn->sum(n, x) + a_v : 0.f; /* unused without a norm */
  float den = 1.f, dden = 0.f;
  if (sp->norm == ASINK_NORM_SUM) {
    den = r + 1e-8f;
    dden = 1.f;
  } else if (sp->norm == ASINK_NORM_CLAMP && fabsf(r) > 1.f) {
    den = fabsf(r);
    dden = r > 0.f ? 1.f : -1.f;
  }
  *pv = a_v;
  st[0] = 1.f / den;
  st[1] = dden;
  return st[0];
}

/* -sum p log p over the statistics map w|x| of a row (and its virtual entry). */
static float row_entropy(const float *x, int n, float pv, float w) {
  float h = 0.f;
  for (int i = 0; i < n; i++) {
    float p = w * fabsf(x[i]);
    if (p > 0.f) h -= p * logf(p);
  }
  float p = w * fabsf(pv);
  if (p > 0.f) h -= p * logf(p);
  return h;
}

/* Softmax row entropy without a logarithm per entry: log P_j = s_j - lse, so
 * -sum P log P = lse sum P - sum P s, and sum P = 1 - P(sink logit).
 * P = x / sum = mul x / alpha; xs = sum_j x_j s_j over the row's scores s. */
static float softmax_entropy(const head_ctx *c, float xs, float pv, float sv, float lse,
                             float mul) {
  float psum = 1.f - (c->sink_logit != -INFINITY ? expf(c->sink_logit - lse) : 0.f);
  float ps = (xs + (c->kstar ? pv * sv : 0.f)) * mul / c->op->spec.alpha;
  return lse * psum - ps;
}

/* The weight w of row t's statistics map w * |x| (DESIGN §5's A-hat): P = A / alpha
 * for softmax, the proxy |A| / (sum |A| + 1e-8) otherwise. The row's map is mul * x
 * (virtual entry mul * pv). */
static float stat_weight(const head_ctx *c, const float *x, int n, float pv, float mul) {
  const asink_spec *sp = &c->op->spec;
  if (sp->base == ASINK_BASE_SOFTMAX) return mul / sp->alpha;
  return mul / (mul * (c->kn->abs_sum(n, x) + fabsf(pv)) + 1e-8f);
}

/* Adds w |x| into imp_real[0..n): one SIMD axpy where the map is never negative
 * (BLIS's m = 1 GEMM over a whole block measured slower: it packs the block). */
static void importance_row(const head_ctx *c, const float *x, int n, float w, float *imp_real) {
  const asink_base b = c->op->spec.base;
  if (b == ASINK_BASE_SOFTMAX || b == ASINK_BASE_SIGMOID || b == ASINK_BASE_ELU)
    c->kn->axpy(n, w, x, imp_real);
  else
    for (int i = 0; i < n; i++) imp_real[i] += w * fabsf(x[i]);
}

static void forward_head(const head_ctx *c, float *o, float *stats, float *imp, float *ent,
                         const scratch *w) {
  const asink_attn *op = c->op;
  const asink_kernels *kn = c->kn;
  const int T = c->T, D = op->D, ldq = c->ldq, ldk = c->ldk;
  const int voff = c->kstar ? 1 : 0; /* importance column of real key 0 */
  if (imp) memset(imp, 0, sizeof(float) * (size_t)(T + voff));
  if (ent) *ent = 0.f;
  for (int q0 = 0; q0 < T; q0 += c->bq) {
    int nq = T - q0 < c->bq ? T - q0 : c->bq;
    int lo, hi, unused;
    asink_visible(&op->spec, T, q0, &lo, &unused);
    asink_visible(&op->spec, T, q0 + nq - 1, &unused, &hi);
    int nk = hi - lo + 1;
    block_plan pl;
    plan_block(&op->spec, T, q0, nq, lo, nk, w->band, &pl);
    block_scores(c, &pl, q0, nq, nk, lo, w);
    for (int r = 0; r < nq; r++) {
      int t = q0 + r, a = lo + pl.vis.lo[r], e = lo + pl.vis.hi[r];
      float *row = w->S + (size_t)r * nk;
      float *x = row + (a - lo);
      int n = e - a + 1;
      add_score_terms(c, x, n, a, t);
      /* softmax entropy: sum P s, taken in the exp pass that replaces the scores */
      bool softmax_ent = ent && op->spec.base == ASINK_BASE_SOFTMAX;
      float xs = 0.f;
      float mul = forward_row(c, x, n, w->sv[r], &w->pv[r], stats + 2 * (size_t)t,
                              softmax_ent ? &xs : NULL);
      w->mul[r] = mul;
      zero_outside(row, nk, a - lo, n);
      if (imp || ent) {
        float sw = stat_weight(c, x, n, w->pv[r], mul);
        if (imp && voff) imp[0] += sw * fabsf(w->pv[r]);
        if (imp) importance_row(c, x, n, sw, imp + voff + a);
        if (ent && op->spec.base != ASINK_BASE_SOFTMAX) *ent += row_entropy(x, n, w->pv[r], sw);
      }
      if (softmax_ent)
        *ent += softmax_entropy(c, xs, w->pv[r], w->sv[r], stats[2 * (size_t)t], mul);
    }
    float *ob = o + (size_t)q0 * ldq;
    tiles_ab(&pl, D, 1.f, w->S, nk, c->v + (size_t)lo * ldk, ldk, ob, ldq);
    for (int r = 0; r < nq; r++) {
      float *orow = ob + (size_t)r * ldq;
      if (w->mul[r] != 1.f) kn->scale(D, orow, w->mul[r]);
      if (c->vstar) kn->axpy(D, w->mul[r] * w->pv[r], c->vstar, orow);
      if (c->vadd) kn->axpy(D, 1.f, c->vadd, orow);
    }
  }
  if (imp) {
    if (voff) imp[0] /= (float)T;
    for (int j = 0; j < T; j++) imp[voff + j] /= (float)(T - j);
  }
}

/* ------------------------------------------------------------------ backward */

/* Per-thread gradient accumulators. */
typedef struct {
  float *dk, *dv, *gk, *gv, *gs, *gr;
} grads;

/* Recomputes row t's map from its statistics: softmax P (not yet times alpha),
 * other bases the unnormalised similarity a. *pv receives the virtual entry. */
static void recompute_row(const head_ctx *c, float *x, int n, float sv, float *pv,
                          const float *st) {
  const asink_spec *sp = &c->op->spec;
  if (sp->base == ASINK_BASE_SOFTMAX) {
    c->kn->exp_shift(n, x, st[0]);
    *pv = c->kstar ? expf(sv - st[0]) : 0.f;
  } else {
    similarity_row(c->kn, sp->base, n, x);
    *pv = c->kstar ? similarity1(sp->base, sv) : 0.f;
  }
}

/* dP row (dout . v_j) into dS row, in place; returns the virtual key's dS.
 * Dt = dout_t . out_t without the vbias-alone term (= sum_j A dP). */
static float backward_row(const head_ctx *c, float *dp, const float *x, int n, float pv,
                          float dpv, float Dt, const float *st, float *gsink) {
  const asink_kernels *kn = c->kn;
  const asink_spec *sp = &c->op->spec;
  if (sp->base == ASINK_BASE_SOFTMAX) {
    float cshift = Dt / sp->alpha;
    kn->softmax_bwd(n, dp, x, cshift, sp->alpha);
    if (gsink) *gsink -= expf(c->sink_logit - st[0]) * Dt;
    return sp->alpha * pv * (dpv - cshift);
  }
  float inv = st[0], cshift = Dt * st[1];
  float dsv = inv * (dpv - cshift);
  switch (sp->base) {
  case ASINK_BASE_SIGMOID:
    kn->sigmoid_bwd(n, dp, x, cshift, inv);
    return dsv * pv * (1.f - pv);
  case ASINK_BASE_ELU:
    kn->elu1_bwd(n, dp, x, cshift, inv);
    return dsv * (pv > 1.f ? 1.f : pv);
  default:
    kn->shift_scale(n, dp, cshift, inv);
    return dsv;
  }
}

static void backward_head(const head_ctx *c, const float *out, const float *dout, float *dq,
                          const float *stats, const grads *g, const scratch *w) {
  const asink_attn *op = c->op;
  const asink_kernels *kn = c->kn;
  const asink_spec *sp = &op->spec;
  const int T = c->T, D = op->D, ldq = c->ldq, ldk = c->ldk;
  const bool softmax = sp->base == ASINK_BASE_SOFTMAX;
  float *gk = c->kstar ? g->gk + (op->n_kb > 1 ? (size_t)c->h * D : 0) : NULL;
  float *gv = op->n_vb ? g->gv + (op->n_vb > 1 ? (size_t)c->h * D : 0) : NULL;
  float *gsink = op->sinks ? g->gs + c->h : NULL;
  float *grel = op->rel ? g->gr + (size_t)c->h * ASINK_REL_BUCKETS : NULL;
  for (int q0 = 0; q0 < T; q0 += c->bq) {
    int nq = T - q0 < c->bq ? T - q0 : c->bq;
    int lo, hi, unused;
    asink_visible(sp, T, q0, &lo, &unused);
    asink_visible(sp, T, q0 + nq - 1, &unused, &hi);
    int nk = hi - lo + 1;
    const float *dob = dout + (size_t)q0 * ldq;
    block_plan pl;
    plan_block(sp, T, q0, nq, lo, nk, w->band, &pl);
    block_scores(c, &pl, q0, nq, nk, lo, w);
    for (int r = 0; r < nq; r++) {
      int t = q0 + r, a = lo + pl.vis.lo[r], e = lo + pl.vis.hi[r];
      float *row = w->S + (size_t)r * nk;
      add_score_terms(c, row + (a - lo), e - a + 1, a, t);
      recompute_row(c, row + (a - lo), e - a + 1, w->sv[r], &w->pv[r], stats + 2 * (size_t)t);
      zero_outside(row, nk, a - lo, e - a + 1);
    }
    /* dV += A^T dO, A = alpha P (softmax) or a / den (rows scaled through dO). */
    if (softmax) {
      tiles_atb(&pl, D, sp->alpha, w->S, nk, dob, ldq, g->dv + (size_t)lo * ldk, ldk);
    } else {
      for (int r = 0; r < nq; r++) {
        memcpy(w->dOs + (size_t)r * D, dob + (size_t)r * ldq, sizeof(float) * D);
        kn->scale(D, w->dOs + (size_t)r * D, stats[2 * (size_t)(q0 + r)]);
      }
      tiles_atb(&pl, D, 1.f, w->S, nk, w->dOs, D, g->dv + (size_t)lo * ldk, ldk);
    }
    /* dP = dO V^T, then dS in place. */
    tiles_abt(&pl, D, 1.f, dob, ldq, c->v + (size_t)lo * ldk, ldk, w->dP, nk);
    for (int r = 0; r < nq; r++) {
      int t = q0 + r, a = lo + pl.vis.lo[r], e = lo + pl.vis.hi[r];
      const float *dot_ = dob + (size_t)r * ldq;
      const float *st = stats + 2 * (size_t)t;
      float Dt = kn->dot(D, dot_, out + (size_t)t * ldq);
      if (c->vadd) Dt -= kn->dot(D, dot_, c->vadd);
      float dpv = c->vstar ? kn->dot(D, dot_, c->vstar) : 0.f;
      float *drow = w->dP + (size_t)r * nk;
      w->dsv[r] = backward_row(c, drow + (a - lo), w->S + (size_t)r * nk + (a - lo), e - a + 1,
                               w->pv[r], dpv, Dt, st, gsink);
      if (grel)
        for (int j = a; j <= e; j++) grel[c->bucket[abs(t - j)]] += drow[j - lo];
      zero_outside(drow, nk, a - lo, e - a + 1);
      if (gv && c->vstar) {
        float av = softmax ? sp->alpha * w->pv[r] : w->pv[r] * st[0];
        kn->axpy(D, av, dot_, gv);
      }
      if (gv && c->vadd) kn->axpy(D, 1.f, dot_, gv);
    }
    float *dqb = dq + (size_t)q0 * ldq;
    tiles_ab(&pl, D, op->scale, w->dP, nk, c->k + (size_t)lo * ldk, ldk, dqb, ldq);
    tiles_atb(&pl, D, op->scale, w->dP, nk, c->q + (size_t)q0 * ldq, ldq, g->dk + (size_t)lo * ldk, ldk);
    if (c->kstar)
      for (int r = 0; r < nq; r++) {
        kn->axpy(D, op->scale * w->dsv[r], c->kstar, dqb + (size_t)r * ldq);
        kn->axpy(D, op->scale * w->dsv[r], c->q + (size_t)(q0 + r) * ldq, gk);
      }
  }
}

/* ------------------------------------------------------------------- drivers */

static head_ctx make_ctx(const asink_attn *op, const float *q, const float *k, const float *v,
                         int b, int h) {
  const int T = op->T, H = op->H, Hkv = op->Hkv, D = op->D;
  const int kvh = h / (H / Hkv);
  head_ctx c = {.op = op, .kn = asink_kern(), .T = T, .h = h, .bq = block_rows(T)};
  c.ldq = H * D;
  c.ldk = Hkv * D;
  c.q = q + (size_t)b * T * c.ldq + (size_t)h * D;
  c.k = k + (size_t)b * T * c.ldk + (size_t)kvh * D;
  c.v = v + (size_t)b * T * c.ldk + (size_t)kvh * D;
  c.slope = op->spec.alibi ? exp2f(-8.f * (float)(h + 1) / (float)H) : 0.f;
  c.kstar = op->n_kb ? op->k_bias + (op->n_kb > 1 ? (size_t)h * D : 0) : NULL;
  const float *vb = op->n_vb ? op->v_bias + (op->n_vb > 1 ? (size_t)h * D : 0) : NULL;
  c.vstar = op->n_kb ? vb : NULL;
  c.vadd = op->n_kb ? NULL : vb;
  c.rel = op->rel ? op->rel + (size_t)h * ASINK_REL_BUCKETS : NULL;
  c.bucket = op->buckets.ptr;
  c.sink_logit = op->spec.sink == ASINK_SINK_HEAD ? op->sinks[h]
                 : op->spec.sink == ASINK_SINK_ZERO ? 0.f
                                                    : -INFINITY;
  return c;
}

static int team_size(const asink_attn *op) {
  int nt = asink_get_num_threads();
  int items = op->B * op->H;
  return nt < items ? nt : items;
}

/* elu-kernel: phi(x) = elu(x) + 1 of q and k, into op->feat. */
static asink_status kernel_features(asink_attn *op, const float **q, const float **k) {
  size_t nq = (size_t)op->B * op->T * op->H * op->D, nk = (size_t)op->B * op->T * op->Hkv * op->D;
  asink_status st = asink_ws_reserve(&op->feat, (nq + nk) * sizeof(float), "elu-kernel features");
  if (st) return st;
  float *fq = op->feat.ptr, *fk = fq + nq;
  memcpy(fq, *q, nq * sizeof(float));
  memcpy(fk, *k, nk * sizeof(float));
  asink_kern()->elu1(nq, fq);
  asink_kern()->elu1(nk, fk);
  *q = fq;
  *k = fk;
  return ASINK_OK;
}

static asink_status reserve_scratch(asink_attn *op, int nt) {
  if (op->rel) {
    asink_status st = asink_ws_reserve(&op->buckets, (size_t)op->T, "relative-bias buckets");
    if (st) return st;
    unsigned char *b = op->buckets.ptr;
    for (int n = 0; n < op->T; n++) b[n] = (unsigned char)asink_relative_bucket(n);
  }
  size_t per = scratch_floats(block_rows(op->T), op->T, op->D);
  return asink_ws_reserve(&op->thread_ws, asink_mul_size(per * sizeof(float), (size_t)nt),
                          "attention scratch");
}

asink_status asink_attn_forward_blocked(asink_attn *op, const float *q, const float *k,
                                        const float *v, float *out, float *importance,
                                        float *entropy) {
  const int B = op->B, T = op->T, H = op->H;
  asink_status st = asink_ws_reserve(&op->row_stats, asink_mul_size((size_t)B * H * T, 2 * sizeof(float)),
                                     "attention row statistics");
  if (st) return st;
  if (op->spec.base == ASINK_BASE_ELU_KERNEL && (st = kernel_features(op, &q, &k))) return st;
  int nt = team_size(op);
  if ((st = reserve_scratch(op, nt))) return st;
  const size_t per = scratch_floats(block_rows(T), T, op->D);
  const int Tk = asink_attn_key_count(op, T);
  float *stats = op->row_stats.ptr;
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    scratch w = carve((float *)op->thread_ws.ptr + per * omp_get_thread_num(), block_rows(T), T,
                      op->D);
#pragma omp for schedule(static)
    for (int i = 0; i < B * H; i++) {
      int b = i / H, h = i % H;
      head_ctx c = make_ctx(op, q, k, v, b, h);
      forward_head(&c, out + (size_t)b * T * c.ldq + (size_t)h * op->D, stats + (size_t)i * T * 2,
                   importance ? importance + (size_t)i * Tk : NULL, entropy ? entropy + i : NULL, &w);
    }
  }
  return ASINK_OK;
}

asink_status asink_attn_backward_blocked(asink_attn *op, const float *q, const float *k,
                                         const float *v, const float *out, const float *dout,
                                         float *dq, float *dk, float *dv) {
  const int B = op->B, T = op->T, H = op->H, Hkv = op->Hkv, D = op->D, G = H / Hkv;
  asink_status st;
  if (op->spec.base == ASINK_BASE_ELU_KERNEL && (st = kernel_features(op, &q, &k))) return st;
  int nt = team_size(op);
  if ((st = reserve_scratch(op, nt))) return st;
  /* With at least one (batch, kv head) item per thread, each thread owns whole items:
   * the heads sharing a kv head run on one thread, which writes their dk, dv rows
   * directly. Otherwise (few sequences and kv heads) work is split by query head and
   * dk, dv are summed from per-thread copies. Either way the order is fixed, so the
   * same thread count gives the same bits. */
  const bool owned = B * Hkv >= nt;
  const size_t nkv = (size_t)B * T * Hkv * D, nkv_acc = owned ? 0 : nkv;
  const size_t ngk = (size_t)op->n_kb * D, ngv = (size_t)op->n_vb * D, ngs = op->sinks ? H : 0;
  const size_t ngr = op->rel ? (size_t)H * ASINK_REL_BUCKETS : 0;
  const size_t per_acc = 2 * nkv_acc + ngk + ngv + ngs + ngr;
  if ((st = asink_ws_reserve(&op->accum, asink_mul_size(per_acc * sizeof(float) + 64, (size_t)nt),
                             "attention gradient accumulators")))
    return st;
  const size_t per = scratch_floats(block_rows(T), T, D);
  const float *stats = op->row_stats.ptr;
  float *acc = op->accum.ptr;
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    int tid = omp_get_thread_num();
    scratch w = carve((float *)op->thread_ws.ptr + per * tid, block_rows(T), T, D);
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
        for (int t = 0; t < T; t++) {
          size_t row = ((size_t)b * T + t) * Hkv * D + (size_t)(i % Hkv) * D;
          memset(dk + row, 0, sizeof(float) * D);
          memset(dv + row, 0, sizeof(float) * D);
        }
      for (int h = h0; h < h1; h++) {
        head_ctx c = make_ctx(op, q, k, v, b, h);
        size_t qoff = (size_t)b * T * c.ldq + (size_t)h * D;
        size_t kvoff = (size_t)(c.k - k);
        grads gh = {g.dk + kvoff, g.dv + kvoff, g.gk, g.gv, g.gs, g.gr};
        backward_head(&c, out + qoff, dout + qoff, dq + qoff, stats + ((size_t)b * H + h) * T * 2, &gh, &w);
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
    if (ngk) kn->axpy(ngk, 1.f, p, op->g_k_bias);
    if (ngv) kn->axpy(ngv, 1.f, p + ngk, op->g_v_bias);
    if (ngs) kn->axpy(ngs, 1.f, p + ngk + ngv, op->g_sinks);
    if (ngr) kn->axpy(ngr, 1.f, p + ngk + ngv + ngs, op->g_rel);
  }
  if (op->spec.base == ASINK_BASE_ELU_KERNEL) {
    /* d phi(x) / dx = 1 for x > 0, exp(x) = phi(x) otherwise. */
    kn->elu1_bwd((size_t)B * T * H * D, dq, q, 0.f, 1.f);
    kn->elu1_bwd(nkv, dk, k, 0.f, 1.f);
  }
  return ASINK_OK;
}
