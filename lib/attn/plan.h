/* How a block of query rows meets its keys: the rows' visible-key intervals (masks)
 * and the GEMMs over them, either one banded GEMM per block that skips masked BLIS
 * micro-tiles (the library's GEMM driver) or staircase tiles (BLIS's own driver). */
#ifndef ASINK_ATTN_PLAN_H
#define ASINK_ATTN_PLAN_H

#include <stdbool.h>

#include "attn/op_internal.h"
#include "core/blas.h"

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
 * both non-decreasing in r for every mask of docs/attention.md. */
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

/* Query rows per block for Tq queries against Tk keys. */
int asink_attn_block_rows(int Tq, int Tk);

/* The plan of block rows [q0, q0+nq) whose keys start at lo (nk of them); band
 * storage: 2 nq ints. The bands point into the plan, which must stay in place. */
void asink_attn_plan_block(const asink_spec *sp, const attn_geom *g, int q0, int nq, int lo, int nk, int *band,
                           block_plan *p);

/* pre: the head's B operand packed once (asink_sgemm_pack_b over all its keys), from
 * which a banded plan reads the block's part instead of packing it; NULL: none. Keys
 * are B's columns in tiles_abt (from pre->j0; the driver packs a block whose first key is
 * off a panel boundary itself) and B's k in tiles_ab (from pre->p0). */

/* S[tile] = alpha * A[rows] B[cols]^T: scores (A = q, B = k) or dP (A = dO, B = v). */
void asink_attn_tiles_abt(const block_plan *p, int D, float alpha, const float *A, int lda,
                          const float *B, int ldb, const asink_gemm_prepacked *pre, float *S,
                          int lds);
/* O[rows] (+)= alpha * S[tile] B[cols]: outputs (B = v) or dQ (S = dS, B = k). */
void asink_attn_tiles_ab(const block_plan *p, int D, float alpha, const float *S, int lds,
                         const float *B, int ldb, const asink_gemm_prepacked *pre, float *O,
                         int ldo);
/* G[cols] += alpha * S[tile]^T A[rows]: dV (S = A, A = dO) or dK (S = dS, A = q). */
void asink_attn_tiles_atb(const block_plan *p, int D, float alpha, const float *S, int lds,
                          const float *A, int lda, float *G, int ldg);

#endif
