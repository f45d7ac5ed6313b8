/* Row-major sgemm: the five loops of BLIS's gemm, with the library's packing and
 * micro-kernel (the SIMD table's pack_panel and gemm, kernels.h).
 *
 * Why not bli_sgemm_ex: Debian's BLIS 0.9 packs with reference code. Every row-major
 * GEMM whose left operand is read across its rows (activations x weights, the
 * attention's q.kT) goes through a scalar gather pack, and the straight packs through
 * a 256-bit copy loop; on the tiny training model this was 22% of the time and the
 * spinning barrier of BLIS's thread team another 5% (perf, 2 threads). And BLIS picks
 * its micro-kernel from its own CPU detection, which on CPUs newer than it knows falls
 * back to slower kernels, and which only BLIS_ARCH_TYPE, an environment variable,
 * overrides: a library must not write its host's environment. The table's kernels are
 * chosen with the rest of the SIMD table, from CPUID. An OpenMP team splits rows and
 * column panels. A band (asink_gemm_band) lets the attention skip the micro-tiles its
 * masks zero. At the scalar level (a CPU without AVX2, or ASINK_SIMD=scalar), where
 * BLIS has kernels written for the CPUs it knows and the table only portable C, or with
 * ASINK_GEMM=blis, bli_sgemm_ex runs. */
#include "core/blas.h"

#include <blis.h>
#include <omp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/runtime.h"
#include "kernels/kernels.h"

static struct {
  void (*ukr)(size_t k, const float *a, const float *b, float *c, size_t ldc, size_t m, size_t n,
              float alpha, float beta);
  void (*ukr_rows)(size_t k, const float *a, size_t lda, const float *b, float *c, size_t ldc,
                   size_t m, size_t n, float alpha, float beta);
  void (*pack)(float *dst, const float *src, size_t W, size_t w, size_t k, size_t s_r,
               size_t s_p);
  void (*pack16)(float *dst, const uint16_t *src, size_t W, size_t w, size_t k, size_t s_r,
                 size_t s_p);
  void (*pack_round)(float *dst, const float *src, size_t W, size_t w, size_t k, size_t s_r,
                     size_t s_p);
  size_t mr, nr, mc, kc, nc;
  bool packed; /* the default: our driver, not bli_sgemm_ex */
  const asink_gemm_bf16 *pairs; /* the table's bf16 pair kernel (AVX-512 BF16), or NULL */
} G;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static _Atomic int forced_driver = -1; /* asink_sgemm_force_driver: -1 none, 0 BLIS, 1 packed */
static _Atomic int forced_pairs_use = -1; /* asink_sgemm_force_bf16_kernel */
static const asink_gemm_bf16 *_Atomic forced_pairs;

/* A pair kernel the driver can run: its blocks whole tiles, kc even (no block splits a pair). */
static bool pairs_usable(const asink_gemm_bf16 *k) {
  return k && k->ukr && k->pack_round && k->pack16 && k->mr >= 1 && k->nr >= 1 && k->kc >= 2 &&
         k->kc % 2 == 0 && k->mc % k->mr == 0 && k->nc % k->nr == 0;
}

static void gemm_init(void) {
  const asink_kernels *kn = asink_kern();
  G.ukr = kn->gemm.ukr, G.ukr_rows = kn->gemm.ukr_rows;
  G.pack = kn->pack_panel, G.pack16 = kn->pack_panel_bf16;
  G.pack_round = kn->pack_panel_round;
  G.mr = kn->gemm.mr, G.nr = kn->gemm.nr, G.mc = kn->gemm.mc, G.kc = kn->gemm.kc, G.nc = kn->gemm.nc;
  G.packed = asink_get_settings()->gemm == ASINK_GEMM_PACKED;
  G.pairs = pairs_usable(kn->gemm_bf16) ? kn->gemm_bf16 : NULL;
}

void asink_sgemm_force_driver(int driver) { forced_driver = driver; }

void asink_sgemm_force_bf16_kernel(int use, const asink_gemm_bf16 *k) {
  forced_pairs = k;
  forced_pairs_use = use;
}

/* The pair kernel asink_sgemm_bf16ops runs, NULL: the float one on rounded panels. */
static const asink_gemm_bf16 *pairs_kernel(void) {
  int use = forced_pairs_use;
  if (use < 0) return G.pairs;
  const asink_gemm_bf16 *k = forced_pairs;
  return use == 1 && pairs_usable(k) ? k : NULL;
}

/* Pack buffers live per thread for the thread's life: a fresh page costs ~12 us to
 * fault in on these machines, more than packing a whole small panel. */
typedef struct {
  float *p;
  size_t cap;
} pack_buf;
typedef struct {
  pack_buf a, b;
} thread_bufs;
static pthread_key_t bufs_key;
static pthread_once_t bufs_once = PTHREAD_ONCE_INIT;

static void bufs_free(void *v) {
  thread_bufs *t = v;
  free(t->a.p);
  free(t->b.p);
  free(t);
}
static void bufs_key_init(void) { pthread_key_create(&bufs_key, bufs_free); }

static thread_bufs *my_bufs(void) {
  pthread_once(&bufs_once, bufs_key_init);
  thread_bufs *t = pthread_getspecific(bufs_key);
  if (!t) {
    t = calloc(1, sizeof *t);
    if (t && pthread_setspecific(bufs_key, t)) {
      free(t);
      t = NULL;
    }
  }
  return t;
}

static float *reserve(pack_buf *b, size_t floats) {
  if (floats > b->cap) {
    free(b->p);
    size_t bytes = (floats * sizeof(float) + 63) & ~(size_t)63;
    b->p = aligned_alloc(64, bytes);
    b->cap = b->p ? floats : 0;
  }
  return b->p;
}

static size_t round16(size_t n) { return (n + 15) & ~(size_t)15; }
static size_t min_sz(size_t a, size_t b) { return a < b ? a : b; }

/* Floats between the panels of an operand packed over all of its k (asink_sgemm_pack_b). */
static size_t whole_panel(size_t nr, size_t k) { return round16(nr * k); }

/* A matrix as the micro-kernel sees an operand: element (r, p) at src[r*s_r + p*s_p],
 * r along the panel width (MR or NR), p along k. */
typedef struct {
  const float *src;
  const uint16_t *src16; /* instead of src: bf16 values, widened while packed */
  size_t s_r, s_p;
  bool round; /* src's values rounded to bf16 while packed (asink_sgemm_bf16ops) */
} operand;

/* The problem in micro-kernel terms: C(i, j) at c[i*ldc + j] += A(i, :) . B(j, :). Panels
 * are arrays of 4-byte slots: floats for the float kernel, bf16 pairs (one slot per two k
 * steps) for the pair kernel. */
typedef struct {
  const asink_gemm_bf16 *pairs; /* NULL: the table's float kernel */
  size_t mr, nr, mc, kc, nc;    /* the blocks of the kernel that runs */
  size_t M, N, K;
  operand A, B;
  float *c;
  size_t ldc;
  float alpha, beta;
  float *bpack; /* shared packed B panel block, KC x NC */
  const asink_gemm_prepacked *pre; /* B already packed (no bpack) */
  bool a_in_place; /* A read where it lies (G.ukr_rows), never packed */
  int tm, tn;   /* thread grid: tm row ranges x tn column-panel ranges */
  const asink_gemm_band *band; /* NULL: every product */
} gemm_job;

/* C = beta * C over an mr x nr tile with row stride ldc (beta 0 writes zeros, NaN
 * included): a tile whose band holds no product, or a whole C when k = 0. */
static void scale_tile(float *c, size_t ldc, size_t mr, size_t nr, float beta) {
  if (beta == 1.f) return;
  for (size_t i = 0; i < mr; i++)
    for (size_t j = 0; j < nr; j++) c[i * ldc + j] = beta == 0.f ? 0.f : beta * c[i * ldc + j];
}

/* Slots a panel row of k steps takes. */
static inline size_t slots(const gemm_job *J, size_t k) { return J->pairs ? (k + 1) / 2 : k; }

/* One micro-panel of o from its element at offset at. */
static inline void pack_one(const gemm_job *J, float *dst, const operand *o, size_t at, size_t W,
                            size_t w, size_t k) {
  if (J->pairs) { /* the buffer's slots hold pairs: written and read as uint32_t only */
    if (o->src16) J->pairs->pack16((uint32_t *)dst, o->src16 + at, W, w, k, o->s_r, o->s_p);
    else J->pairs->pack_round((uint32_t *)dst, o->src + at, W, w, k, o->s_r, o->s_p);
    return;
  }
  if (o->src16) G.pack16(dst, o->src16 + at, W, w, k, o->s_r, o->s_p);
  else if (o->round) G.pack_round(dst, o->src + at, W, w, k, o->s_r, o->s_p);
  else G.pack(dst, o->src + at, W, w, k, o->s_r, o->s_p);
}

/* Packs panels [q0, q1) of rows [r0, r0 + rows) x k [p0, p0 + kc) into dst (panel q at
 * dst + q * panel). An operand read straight (s_r == 1) is swept 16 of its rows at a
 * time across every panel, so each source line is fetched once and in order. With
 * a band (whose k ranges follow C's rows: the rows of the kernel's A operand), each
 * panel is packed only over its k range: the micro-kernel never reads the rest. */
static void pack_rows(const gemm_job *J, float *dst, const operand *o, size_t r0, size_t rows,
                      size_t p0, size_t kc, size_t W, size_t panel, size_t q0, size_t q1,
                      const asink_gemm_band *band) {
  size_t pstep = o->s_r == 1 ? 16 : kc;
  for (size_t q = q0; band && q < q1; q++) {
    size_t r = q * W, w = min_sz(W, rows - r);
    int k0 = 0, k1 = 0;
    band->krange(band->ctx, (int)(r0 + r), (int)(r0 + r + w - 1), &k0, &k1);
    size_t a = (size_t)k0 > p0 ? (size_t)k0 - p0 : 0;
    size_t b = (size_t)k1 < p0 + kc ? ((size_t)k1 > p0 ? (size_t)k1 - p0 : 0) : kc;
    for (size_t p = a; p < b; p += pstep)
      pack_one(J, dst + q * panel + p * W, o, (r0 + r) * o->s_r + (p0 + p) * o->s_p, W, w,
               min_sz(pstep, b - p));
  }
  for (size_t p = 0; !band && p < kc; p += pstep) {
    size_t kp = min_sz(pstep, kc - p);
    for (size_t q = q0; q < q1; q++) {
      size_t r = q * W;
      /* p is even (pstep is 16 or the whole block): a pair panel's slot p / 2 */
      pack_one(J, dst + q * panel + slots(J, p) * W, o, (r0 + r) * o->s_r + (p0 + p) * o->s_p, W,
               min_sz(W, rows - r), kp);
    }
  }
}

static void gemm_thread(const gemm_job *J, float *apack, int tid, int nt) {
  const size_t MR = J->mr, NR = J->nr;
  int ti = tid / J->tn, tj = tid % J->tn;
  size_t mpanels = (J->M + MR - 1) / MR;
  size_t m0 = mpanels * ti / J->tm * MR, m1 = min_sz(J->M, mpanels * (ti + 1) / J->tm * MR);
  /* With one row range (tm = 1) each thread packs exactly the B panels it computes on, so
   * no thread waits for another: on a loaded machine every barrier can wait out a time
   * slice of a descheduled thread (bench_gemm's tiny shapes at 2 threads lost 2-3x). */
  const bool shared_b = nt > 1 && J->tm > 1 && !J->pre;
  for (size_t jc = 0; jc < J->N; jc += J->nc) {
    size_t nc = min_sz(J->nc, J->N - jc), npanels = (nc + NR - 1) / NR;
    size_t jp0 = npanels * tj / J->tn, jp1 = npanels * (tj + 1) / J->tn;
    for (size_t pc = 0; pc < J->K; pc += J->kc) {
      size_t kc = min_sz(J->kc, J->K - pc);
      /* B's panel stride is that of the longest k block, so each thread's panels stay
       * where they were when a shorter last block comes (without barriers, the other
       * thread may still be reading its own panels of the block before) */
      size_t psa = round16(MR * slots(J, kc)), psb = round16(NR * slots(J, min_sz(J->kc, J->K)));
      if (!J->pre)
        pack_rows(J, J->bpack, &J->B, jc, nc, pc, kc, NR, psb, npanels * tid / nt,
                  npanels * (tid + 1) / nt, NULL);
      if (shared_b) {
#pragma omp barrier
      }
      const asink_gemm_band *band = J->band;
      const asink_gemm_band *aband = band && band->krange ? band : NULL;
      for (size_t ic = m0; ic < m1; ic += J->mc) {
        size_t mc = min_sz(J->mc, m1 - ic);
        if (!J->a_in_place)
          pack_rows(J, apack, &J->A, ic, mc, pc, kc, MR, psa, 0, (mc + MR - 1) / MR, aband);
        for (size_t jp = jp0; jp < jp1; jp++) {
          const float *b = J->bpack + jp * psb;
          if (J->pre) /* the panel of column jc + jp NR (nc is a multiple of NR), at k step pc */
            b = J->pre->panels +
                (((size_t)J->pre->j0 + jc) / NR + jp) * whole_panel(NR, (size_t)J->pre->k) +
                ((size_t)J->pre->p0 + pc) * NR;
          size_t nr = min_sz(NR, nc - jp * NR), j = jc + jp * NR;
          for (size_t ir = 0; ir < mc; ir += MR) {
            float *a = apack + ir / MR * psa, *c = J->c + (ic + ir) * J->ldc + j;
            size_t mr = min_sz(MR, mc - ir), ka = 0, kb = kc;
            float beta = pc == 0 ? J->beta : 1.f;
            if (band) {
              int r0 = (int)(ic + ir), r1 = (int)(ic + ir + mr - 1), k0 = 0, k1 = (int)J->K;
              if (band->wanted && !band->wanted(band->ctx, r0, r1, (int)j, (int)(j + nr - 1)))
                continue;
              if (band->krange) band->krange(band->ctx, r0, r1, &k0, &k1);
              if (k0 >= k1) { /* no product at all: C = beta C, once */
                if (pc == 0) scale_tile(c, J->ldc, mr, nr, J->beta);
                continue;
              }
              /* beta belongs to the first k block holding part of the range */
              beta = pc == (size_t)k0 / J->kc * J->kc ? J->beta : 1.f;
              if ((size_t)k1 <= pc || (size_t)k0 >= pc + kc) continue; /* not in this k block */
              ka = (size_t)k0 > pc ? (size_t)k0 - pc : 0;
              kb = (size_t)k1 < pc + kc ? (size_t)k1 - pc : kc;
            }
            if (J->pairs) /* no band here: the whole block, its pairs */
              J->pairs->ukr(slots(J, kc), (const uint32_t *)a, (const uint32_t *)b, c, J->ldc, mr,
                            nr, J->alpha, beta);
            else if (J->a_in_place)
              G.ukr_rows(kb - ka, J->A.src + (ic + ir) * J->A.s_r + pc + ka, J->A.s_r, b + ka * NR,
                         c, J->ldc, mr, nr, J->alpha, beta);
            else
              G.ukr(kb - ka, a + ka * MR, b + ka * NR, c, J->ldc, mr, nr, J->alpha, beta);
          }
        }
      }
      if (shared_b) {
#pragma omp barrier
      }
    }
  }
}

/* The thread grid with the smallest largest share of the output; ties go to more
 * column-panel ranges: each thread then uses only the B panels it packed itself
 * (panels packed on the other core cost a cross-core fetch; bench_gemm at 2 threads
 * measured 3-12% of the roof better than splitting rows) and only the small A
 * block is packed twice. */
static void choose_grid(gemm_job *J, int threads) {
  size_t mp = (J->M + J->mr - 1) / J->mr, np = (J->N + J->nr - 1) / J->nr, best = SIZE_MAX;
  for (int tm = 1; tm <= threads; tm++) {
    if (threads % tm) continue;
    int tn = threads / tm;
    size_t share = (mp + tm - 1) / tm * J->mr * ((np + tn - 1) / tn) * J->nr;
    if (share < best) {
      best = share;
      J->tm = tm;
      J->tn = tn;
    }
  }
}

enum { A_IN_PLACE_PANELS = 4 };

/* false when no pack buffer could be had: the caller falls back to BLIS. round: the float
 * operands are rounded to bf16 as they are packed; pairs (round only, no band): by the bf16
 * pair kernel's packing, for that kernel. pre: B's panels, read where they fit (a float
 * product whose first column starts a panel), else B is packed as usual. */

static bool packed_sgemm(bool transa, bool transb, int m, int n, int k, float alpha,
                         const float *A, int lda, const float *B, const uint16_t *B16, int ldb,
                         float beta, float *C, int ldc, int threads, const asink_gemm_band *band,
                         bool round, const asink_gemm_bf16 *pairs,
                         const asink_gemm_prepacked *pre) {
  operand opA = {A, NULL, transa ? 1u : (size_t)lda, transa ? (size_t)lda : 1u, round};
  operand opB = {B, B16, transb ? (size_t)ldb : 1u, transb ? 1u : (size_t)ldb, round};
  gemm_job J = {.mr = G.mr, .nr = G.nr, .mc = G.mc, .kc = G.kc, .nc = G.nc, .M = (size_t)m,
                .N = (size_t)n, .K = (size_t)k, .A = opA, .B = opB, .c = C, .ldc = (size_t)ldc,
                .alpha = alpha, .beta = beta, .band = band,
                .pre = round || (pre && pre->j0 % G.nr) ? NULL : pre};
  if (pairs && round && !band) {
    J.pairs = pairs;
    J.mr = pairs->mr, J.nr = pairs->nr, J.mc = pairs->mc, J.kc = pairs->kc, J.nc = pairs->nc;
  }
  /* An A panel serves ceil(N / nr) B panels: with a few (the attention's map times its
   * values, N = D) packing it costs more than reading it in place saves. */
  J.a_in_place = !transa && !round && !J.pairs && G.ukr_rows &&
                 (J.N + J.nr - 1) / J.nr <= A_IN_PLACE_PANELS;
  choose_grid(&J, threads);
  size_t kc = slots(&J, min_sz(J.kc, J.K));
  size_t bfloats = (min_sz(J.nc, J.N) + J.nr - 1) / J.nr * round16(J.nr * kc);
  size_t afloats = (min_sz(J.mc, J.M) + J.mr - 1) / J.mr * round16(J.mr * kc);
  thread_bufs *tb = my_bufs();
  if (!tb || (!J.pre && !(J.bpack = reserve(&tb->b, bfloats)))) return false;
  if (threads == 1) {
    if (!reserve(&tb->a, afloats)) return false;
    gemm_thread(&J, tb->a.p, 0, 1);
    return true;
  }
  /* Every member must reach the same barriers, so all buffers are had first. */
  int failed = 0;
#pragma omp parallel num_threads(threads)
  {
    thread_bufs *mine = my_bufs();
    float *apack = mine ? reserve(&mine->a, afloats) : NULL;
    if (!apack) {
#pragma omp atomic write
      failed = 1;
    }
#pragma omp barrier
    int nt = omp_get_num_threads(), tid = omp_get_thread_num();
    if (!failed) {
      if (nt == threads) {
        gemm_thread(&J, apack, tid, nt);
      } else if (tid == 0) { /* the runtime gave fewer threads than asked */
        gemm_job alone = J;
        alone.tm = alone.tn = 1;
        gemm_thread(&alone, apack, 0, 1);
      }
    }
  }
  return !failed;
}

static void blis_sgemm(bool transa, bool transb, int m, int n, int k, float alpha, const float *A,
                       int lda, const float *B, int ldb, float beta, float *C, int ldc,
                       int threads) {
  rntm_t rntm = BLIS_RNTM_INITIALIZER;
  bli_rntm_set_num_threads(threads, &rntm);
  bli_sgemm_ex(transa ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE,
               transb ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE, m, n, k, &alpha, (float *)A, lda, 1,
               (float *)B, ldb, 1, &beta, C, ldc, 1, NULL, &rntm);
}

static bool use_packed(void) {
  pthread_once(&g_once, gemm_init);
  return forced_driver >= 0 ? forced_driver == 1 : G.packed;
}

bool asink_sgemm_band_skips(void) { return use_packed(); }

/* A few rows of A (decoding: one row per sequence) against a matrix read once, as
 * dot products of A's rows with B's rows (transb) or as A's entries times B's rows
 * added to C's rows: a packed GEMM would copy all of B first, tripling the memory
 * traffic of what is a memory-bound product. Threads split C's columns. */
enum { SKINNY_M = 8 };

static void skinny_sgemm(bool transb, int m, int n, int k, float alpha, const float *A, int lda,
                         const float *B, const uint16_t *B16, int ldb, float beta, float *C,
                         int ldc, int threads) {
  const asink_kernels *kn = asink_kern();
  /* B is walked once, in blocks of rows (about 64 KiB, 32 to 256 rows) that stay in L2
   * while every row of A uses them: row-outer loops would read B m times, and short
   * blocks of narrow rows would spend their time entering and leaving the kernels */
  enum { ROWS = 256 };
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    int parts = omp_get_num_threads(), me = omp_get_thread_num();
    int lo = (int)((long)n * me / parts), hi = (int)((long)n * (me + 1) / parts);
    float buf[ROWS];
    const int width = transb ? k : hi - lo;
    const int block = m == 1 ? ROWS : width >= 512 ? 32 : width <= 64 ? ROWS : 16384 / width;
    if (transb && hi > lo) { /* C[i][j] = alpha A_i . B_j + beta C[i][j] */
      for (int j0 = lo; j0 < hi; j0 += block) {
        int nj = hi - j0 < block ? hi - j0 : block;
        for (int i = 0; i < m; i++) {
          float *c = C + (size_t)i * ldc + j0;
          if (B16)
            kn->dot_rows_bf16((size_t)nj, (size_t)k, A + (size_t)i * lda, B16 + (size_t)j0 * ldb,
                              (size_t)ldb, buf);
          else
            kn->dot_rows((size_t)nj, (size_t)k, A + (size_t)i * lda, B + (size_t)j0 * ldb, (size_t)ldb, buf);
          for (int j = 0; j < nj; j++) c[j] = beta == 0.f ? alpha * buf[j] : beta * c[j] + alpha * buf[j];
        }
      }
    } else if (hi > lo) { /* C[i] = beta C[i] + sum_p (alpha A[i][p]) B_p, columns [lo, hi) */
      for (int i = 0; i < m; i++) {
        float *c = C + (size_t)i * ldc + lo;
        if (beta == 0.f) memset(c, 0, (size_t)(hi - lo) * sizeof(float));
        else if (beta != 1.f) kn->scale((size_t)(hi - lo), c, beta);
      }
      for (int p0 = 0; p0 < k; p0 += block) {
        int np = k - p0 < block ? k - p0 : block;
        for (int i = 0; i < m; i++) {
          for (int p = 0; p < np; p++) buf[p] = alpha * A[(size_t)i * lda + p0 + p];
          if (B16)
            kn->axpy_rows_bf16((size_t)np, (size_t)(hi - lo), buf, B16 + (size_t)p0 * ldb + lo,
                               (size_t)ldb, C + (size_t)i * ldc + lo);
          else
            kn->axpy_rows((size_t)np, (size_t)(hi - lo), buf, B + (size_t)p0 * ldb + lo, (size_t)ldb,
                          C + (size_t)i * ldc + lo);
        }
      }
    }
  }
}

void asink_sgemm_band_pre(bool transa, bool transb, int m, int n, int k, float alpha,
                          const float *A, int lda, const float *B, int ldb, float beta, float *C,
                          int ldc, int threads, const asink_gemm_band *band,
                          const asink_gemm_prepacked *pre) {
  if (m <= 0 || n <= 0) return;
  if (!transa && m <= SKINNY_M && k > 0 && alpha != 0.f) {
    /* memory-bound: a second thread pays once B is larger than about 256 KiB */
    if (threads > 1 && ((size_t)n * k < 65536 || omp_in_parallel())) threads = 1;
    skinny_sgemm(transb, m, n, k, alpha, A, lda, B, NULL, ldb, beta, C, ldc, threads);
    return;
  }
  /* Below about 8 MFLOP a second thread costs more in barriers (tens of
   * microseconds, far worse on a loaded machine) than it saves. */
  if (threads > 1 && ((double)m * n * k < 4e6 || omp_in_parallel())) threads = 1;
  bool packed = use_packed();
  if (packed && (k <= 0 || alpha == 0.f)) {
    scale_tile(C, (size_t)ldc, (size_t)m, (size_t)n, beta);
    return;
  }
  if (packed && packed_sgemm(transa, transb, m, n, k, alpha, A, lda, B, NULL, ldb, beta, C, ldc,
                             threads, band, false, NULL, pre))
    return;
  blis_sgemm(transa, transb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc, threads);
}

void asink_sgemm_band(bool transa, bool transb, int m, int n, int k, float alpha, const float *A,
                      int lda, const float *B, int ldb, float beta, float *C, int ldc, int threads,
                      const asink_gemm_band *band) {
  asink_sgemm_band_pre(transa, transb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc, threads, band,
                       NULL);
}

size_t asink_sgemm_packed_floats(int n, int k) {
  pthread_once(&g_once, gemm_init);
  return ((size_t)n + G.nr - 1) / G.nr * whole_panel(G.nr, (size_t)k);
}

void asink_sgemm_pack_b(bool transb, int n, int k, const float *B, int ldb, float *dst) {
  pthread_once(&g_once, gemm_init);
  operand op = {B, NULL, transb ? (size_t)ldb : 1u, transb ? 1u : (size_t)ldb, false};
  gemm_job J = {.mr = G.mr, .nr = G.nr};
  size_t npanels = ((size_t)n + G.nr - 1) / G.nr;
  pack_rows(&J, dst, &op, 0, (size_t)n, 0, (size_t)k, G.nr, whole_panel(G.nr, (size_t)k), 0,
            npanels, NULL);
}

void asink_sgemm(bool transa, bool transb, int m, int n, int k, float alpha, const float *A,
                 int lda, const float *B, int ldb, float beta, float *C, int ldc, int threads) {
  asink_sgemm_band(transa, transb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc, threads, NULL);
}

/* Weights kept in bf16 (asink_model_load_opts): the product of the float one on the widened
 * B, B read once as bf16 (half the bytes of a decode step's weights). BLIS has no bf16
 * operand, so the library's packed driver runs at every SIMD level (the scalar table's
 * kernels included); without a pack buffer the skinny products, which need none, do the
 * whole product. */
void asink_sgemm_bf16(bool transb, int m, int n, int k, float alpha, const float *A, int lda,
                      const uint16_t *B, int ldb, float beta, float *C, int ldc, int threads) {
  if (m <= 0 || n <= 0) return;
  pthread_once(&g_once, gemm_init);
  if (k <= 0 || alpha == 0.f) {
    scale_tile(C, (size_t)ldc, (size_t)m, (size_t)n, beta);
    return;
  }
  bool skinny = m <= SKINNY_M;
  int limit = skinny ? ((size_t)n * k < 65536 ? 1 : threads) : ((double)m * n * k < 4e6 ? 1 : threads);
  if (threads > 1 && (limit == 1 || omp_in_parallel())) threads = 1;
  if (!skinny && packed_sgemm(false, transb, m, n, k, alpha, A, lda, NULL, B, ldb, beta, C, ldc,
                              threads, NULL, false, NULL, NULL))
    return;
  skinny_sgemm(transb, m, n, k, alpha, A, lda, NULL, B, ldb, beta, C, ldc, threads);
}

/* bf16 mixed precision: operands rounded to bf16 while packed (the table's pack_panel_round;
 * B16 is bf16 already and only widened), products of bf16 values exact in float, sums in
 * the float micro-kernel. Where the table has the bf16 pair kernel (a CPU with AVX-512 BF16,
 * unless ASINK_BF16_KERNEL=0) the packed products run it instead: operands packed into bf16
 * pairs, two products per lane and instruction, the same products summed in another order.
 * Like asink_sgemm_bf16 it runs the library's driver at every SIMD level: BLIS cannot round
 * while it packs. A decoding step's few rows of A (skinny, with B in
 * bf16) are rounded into the thread's A pack buffer first and multiplied by the row products. */
static float rounded(float x) { return asink_bf16_to_f32(asink_f32_to_bf16(x)); }

/* The product without pack buffers (none could be had): each sum in k order. */
static void bf16ops_unpacked(bool transa, bool transb, int m, int n, int k, float alpha,
                             const float *A, int lda, const float *B, const uint16_t *B16, int ldb,
                             float beta, float *C, int ldc) {
  for (int i = 0; i < m; i++)
    for (int j = 0; j < n; j++) {
      float s = 0.f;
      for (int p = 0; p < k; p++) {
        size_t ia = transa ? (size_t)p * lda + i : (size_t)i * lda + p;
        size_t ib = transb ? (size_t)j * ldb + p : (size_t)p * ldb + j;
        s += rounded(A[ia]) * (B16 ? asink_bf16_to_f32(B16[ib]) : rounded(B[ib]));
      }
      float *c = C + (size_t)i * ldc + j;
      *c = beta == 0.f ? alpha * s : alpha * s + beta * *c;
    }
}

void asink_sgemm_bf16ops(bool transa, bool transb, int m, int n, int k, float alpha,
                         const float *A, int lda, const float *B, const uint16_t *B16, int ldb,
                         float beta, float *C, int ldc, int threads) {
  if (m <= 0 || n <= 0) return;
  pthread_once(&g_once, gemm_init);
  if (k <= 0 || alpha == 0.f) {
    scale_tile(C, (size_t)ldc, (size_t)m, (size_t)n, beta);
    return;
  }
  if (!transa && B16 && m <= SKINNY_M) {
    thread_bufs *tb = my_bufs();
    float *a = tb ? reserve(&tb->a, (size_t)m * k) : NULL;
    if (a) {
      for (int i = 0; i < m; i++)
        for (int p = 0; p < k; p++) a[(size_t)i * k + p] = rounded(A[(size_t)i * lda + p]);
      if (threads > 1 && ((size_t)n * k < 65536 || omp_in_parallel())) threads = 1;
      skinny_sgemm(transb, m, n, k, alpha, a, k, NULL, B16, ldb, beta, C, ldc, threads);
      return;
    }
  } else {
    if (threads > 1 && ((double)m * n * k < 4e6 || omp_in_parallel())) threads = 1;
    if (packed_sgemm(transa, transb, m, n, k, alpha, A, lda, B, B16, ldb, beta, C, ldc, threads,
                     NULL, true, pairs_kernel(), NULL))
      return;
  }
  bf16ops_unpacked(transa, transb, m, n, k, alpha, A, lda, B, B16, ldb, beta, C, ldc);
}
