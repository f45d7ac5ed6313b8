/* Block plans and their GEMMs (plan.h): masks as per-row key intervals, GEMM bands
 * or staircase tiles over them. */
#include "attn/plan.h"

#include "attn/op_internal.h"

/* Query rows per block: up to 256 rows (BLIS runs m >= 256 GEMMs near its peak,
 * m = 64 at about 60%), keeping a block's scores within about 4 MiB. The library's
 * driver, which packs a head's keys and values once for all its blocks, does better with
 * blocks of 96 rows from 1024 keys on: their scores stay nearer the core (384 KiB at 1024
 * keys against 1 MiB); bench_attention at T = 1024 to 4096 ran 1.00-1.07 times as fast as
 * with 256 rows (docs/performance.md). Shorter sequences keep one block of up to 256. */
int asink_attn_block_rows(int Tq, int Tk) {
  int bq = (1 << 20) / Tk / 8 * 8;
  if (bq < 32) bq = 32;
  if (bq > 256) bq = 256;
  if (Tk >= 1024 && bq > 96 && asink_sgemm_band_skips()) bq = 96;
  return bq < Tq ? bq : Tq;
}

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

static int block_tiles(const asink_spec *sp, const attn_geom *g, int q0, int nq, int lo, tile *t) {
  int lo_max, hi_min, unused, n = 0;
  asink_visible(sp, g, q0 + nq - 1, &lo_max, &unused);
  asink_visible(sp, g, q0, &unused, &hi_min);
  /* A rectangle a few keys wide (the first block of a causal head: one key) would
   * be a GEMM of n = 1..15; the chunk tiles then simply cover it. */
  bool rect = hi_min - lo_max + 1 >= 16;
  if (rect) t[n++] = (tile){0, nq, lo_max - lo, hi_min - lo_max + 1, true};
  for (int r0 = 0; r0 < nq; r0 += SUB_ROWS) {
    int nr = nq - r0 < SUB_ROWS ? nq - r0 : SUB_ROWS, lo_c, hi_c;
    asink_visible(sp, g, q0 + r0, &lo_c, &unused);
    asink_visible(sp, g, q0 + r0 + nr - 1, &unused, &hi_c);
    if (!rect) {
      t[n++] = (tile){r0, nr, lo_c - lo, hi_c - lo_c + 1, true};
      continue;
    }
    if (lo_c < lo_max) t[n++] = (tile){r0, nr, lo_c - lo, lo_max - lo_c, false};
    if (hi_c > hi_min) t[n++] = (tile){r0, nr, hi_min + 1 - lo, hi_c - hi_min, false};
  }
  return n;
}

void asink_attn_plan_block(const asink_spec *sp, const attn_geom *g, int q0, int nq, int lo, int nk, int *band,
                           block_plan *p) {
  int *blo = band, *bhi = band + nq;
  for (int r = 0; r < nq; r++) {
    asink_visible(sp, g, q0 + r, &blo[r], &bhi[r]);
    blo[r] -= lo, bhi[r] -= lo;
  }
  p->vis = (vis_band){blo, bhi, nq};
  p->banded = asink_sgemm_band_skips();
  if (!p->banded) {
    p->n = block_tiles(sp, g, q0, nq, lo, p->t);
    return;
  }
  p->t[0] = (tile){0, nq, 0, nk, true};
  p->n = 1;
  p->scores = (asink_gemm_band){NULL, band_wanted, &p->vis};
  p->rows_keys = (asink_gemm_band){band_keys_of_rows, NULL, &p->vis};
  p->keys_rows = (asink_gemm_band){band_rows_of_keys, NULL, &p->vis};
}

void asink_attn_tiles_abt(const block_plan *p, int D, float alpha, const float *A, int lda,
                          const float *B, int ldb, const asink_gemm_prepacked *pre, float *S,
                          int lds) {
  if (!p->banded) pre = NULL;
  for (int i = 0; i < p->n; i++) {
    const tile *t = &p->t[i];
    asink_sgemm_band_pre(false, true, t->nr, t->nc, D, alpha, A + (size_t)t->r0 * lda, lda,
                         B + (size_t)t->c0 * ldb, ldb, 0.f, S + (size_t)t->r0 * lds + t->c0, lds,
                         1, p->banded ? &p->scores : NULL, pre); /* banded: one tile, c0 = 0 */
  }
}

void asink_attn_tiles_ab(const block_plan *p, int D, float alpha, const float *S, int lds,
                         const float *B, int ldb, const asink_gemm_prepacked *pre, float *O,
                         int ldo) {
  if (!p->banded) pre = NULL;
  for (int i = 0; i < p->n; i++) {
    const tile *t = &p->t[i];
    asink_sgemm_band_pre(false, false, t->nr, D, t->nc, alpha, S + (size_t)t->r0 * lds + t->c0,
                         lds, B + (size_t)t->c0 * ldb, ldb, t->first ? 0.f : 1.f,
                         O + (size_t)t->r0 * ldo, ldo, 1, p->banded ? &p->rows_keys : NULL, pre);
  }
}

void asink_attn_tiles_atb(const block_plan *p, int D, float alpha, const float *S, int lds,
                          const float *A, int lda, float *G, int ldg) {
  for (int i = 0; i < p->n; i++) {
    const tile *t = &p->t[i];
    asink_sgemm_band(true, false, t->nc, D, t->nr, alpha, S + (size_t)t->r0 * lds + t->c0, lds,
                     A + (size_t)t->r0 * lda, lda, 1.f, G + (size_t)t->c0 * ldg, ldg, 1,
                     p->banded ? &p->keys_rows : NULL);
  }
}

