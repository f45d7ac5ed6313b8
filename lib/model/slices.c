/* Data-parallel training passes for small models.
 *
 * A small model's GEMMs are too small to keep two threads busy between the
 * barriers of every operation (hundreds of thread-team starts per step, each a
 * spin on a busy machine), and its whole-batch activations stream through memory
 * between operations. So when a loss is asked of a small model, the batch is cut
 * into slices of about the runtime's slice_tokens tokens (at least one per thread),
 * and each thread runs the single-threaded passes (pass.c) on its slices, one after
 * another: one pass state per slice over the model's weights. Thread 0's slices write
 * gradients into the model's own block; thread t > 0's into its shadow block, added
 * to the model's in thread order after the backward, so a run is bit-identical for a
 * given thread count.
 *
 * Used only when it is safe and pays: at least two sequences, no observer attached
 * (the metric reads whole-batch statistics), and at most MAX_PARAMS parameters (a
 * shadow block per extra thread). With one thread the slices still keep activations
 * in cache (no shadow then). ASINK_SLICES=0 turns it off (benchmarks, tests). */
#include "model/slices.h"

#include <omp.h>
#include <stdio.h>
#include <string.h>

#include "core/error.h"
#include "core/runtime.h"

enum { MAX_PARAMS = 1 << 23 };

int asink_slices_plan(const asink_weights *w, int B, int Tx, bool observed, int *threads) {
  const asink_settings *set = asink_get_settings();
  if (!set->slices || B < 2 || observed || w->n_block > MAX_PARAMS) return 0;
  int nt = asink_region_threads();
  *threads = nt < B ? nt : B;
  int per = set->slice_tokens / Tx > 1 ? set->slice_tokens / Tx : 1, S = (B + per - 1) / per;
  if (S < *threads) S = *threads;
  return S >= 2 ? S : 0;
}

void asink_slices_free(asink_slices *sl, const asink_weights *w) {
  for (int i = 0; sl->pass && i < sl->n; i++) asink_pass_release(&sl->pass[i], w);
  for (int t = 0; sl->scratch && t < sl->threads; t++) asink_pass_scratch_release(&sl->scratch[t]);
  asink_free(sl->pass);
  asink_free(sl->scratch);
  asink_free(sl->shadow);
  asink_free(sl->loss);
  asink_free(sl->status);
  asink_free(sl->msg);
  memset(sl, 0, sizeof *sl);
}

/* Slice i runs on thread i % P, the owner of its gradient block and scratch. */
static float *grad_block(asink_slices *sl, const asink_weights *w, float *grad, int t) {
  return t ? sl->shadow + (size_t)(t - 1) * w->n_block : grad;
}

static asink_status reserve(asink_slices *sl, const asink_weights *w, float *grad, int S, int P) {
  if (sl->n == S && sl->threads == P && sl->pass[0].grad == grad) return ASINK_OK;
  asink_slices_free(sl, w);
  sl->pass = asink_calloc((size_t)S, sizeof *sl->pass);
  sl->scratch = asink_calloc((size_t)P, sizeof *sl->scratch);
  sl->shadow = asink_calloc(asink_mul_size((size_t)(P - 1), w->n_block) + 1, sizeof(float));
  sl->loss = asink_calloc((size_t)S, sizeof *sl->loss);
  sl->status = asink_calloc((size_t)S, sizeof *sl->status);
  sl->msg = asink_calloc((size_t)S, sizeof *sl->msg);
  if (!sl->pass || !sl->scratch || !sl->shadow || !sl->loss || !sl->status || !sl->msg) {
    asink_slices_free(sl, w);
    return asink_fail(ASINK_ERR_NOMEM, "cannot allocate %d batch slices", S);
  }
  sl->n = S, sl->threads = P;
  for (int i = 0; i < S; i++) {
    asink_status st = asink_pass_init(&sl->pass[i], w, grad_block(sl, w, grad, i % P),
                                      &sl->scratch[i % P]);
    if (st) {
      asink_slices_free(sl, w);
      return st;
    }
  }
  return ASINK_OK;
}

/* Every slice of the calling thread, in order. A team smaller than asked runs every
 * slice on its thread 0: still one writer per gradient block and scratch. */
#define FOR_MY_SLICES(sl, i)                                                              \
  for (int me_ = omp_get_thread_num(), all_ = omp_get_num_threads() != (sl)->threads,     \
           i = all_ ? (me_ ? (sl)->n : 0) : me_;                                          \
       i < (sl)->n; i += all_ ? 1 : (sl)->threads)

/* The first failed slice's status, raised again on the calling thread. */
static asink_status first_failure(const asink_slices *sl) {
  for (int i = 0; i < sl->n; i++)
    if (sl->status[i]) return asink_fail(sl->status[i], "%s", sl->msg[i]);
  return ASINK_OK;
}

static void note(asink_slices *sl, int i, asink_status st) {
  sl->status[i] = st;
  if (st) snprintf(sl->msg[i], sizeof sl->msg[i], "%s", asink_last_error());
}

asink_status asink_slices_loss(asink_slices *sl, const asink_weights *w, float *grad, int S,
                               int P, int B, int T, const int32_t *tokens,
                               const int32_t *targets, int count, bool keep, double *total) {
  sl->have_loss = false;
  asink_status st = reserve(sl, w, grad, S, P);
  if (st) return st;
#pragma omp parallel num_threads(P)
  FOR_MY_SLICES(sl, i) {
    int b0 = B * i / S, b1 = B * (i + 1) / S;
    /* the thread's first slice writes the head gradient, its later ones add to it */
    note(sl, i, asink_pass_loss(w, &sl->pass[i], b1 - b0, T, tokens + (size_t)b0 * T,
                                targets + (size_t)b0 * T, count, keep, i >= P, &sl->loss[i]));
  }
  *total = 0.0;
  for (int i = 0; i < S; i++) *total += sl->loss[i];
  if ((st = first_failure(sl))) return st;
  sl->have_loss = keep;
  return ASINK_OK;
}

asink_status asink_slices_backward(asink_slices *sl, const asink_weights *w, float *grad) {
  const int P = sl->threads;
  sl->have_loss = false;
#pragma omp parallel num_threads(P)
  {
    FOR_MY_SLICES(sl, i) note(sl, i, asink_pass_backward(w, &sl->pass[i]));
    /* each thread's head gradient, once, into its own block */
    FOR_MY_SLICES(sl, i)
      if (i < P) asink_pass_add_head_grad(w, &sl->pass[i], 1);
  }
  asink_status st = first_failure(sl);
  if (st) { /* nothing of a failed backward may wait in a thread's block for the next one */
    for (int t = 1; t < P; t++) memset(grad_block(sl, w, grad, t), 0, w->n_block * sizeof(float));
    return st;
  }
  /* the threads' gradient blocks into the model's, in thread order */
  const long n = (long)w->n_block;
  const int nt = asink_region_threads();
#pragma omp parallel num_threads(nt) if (nt > 1 && n > 65536)
  {
    int parts = omp_get_num_threads(), me = omp_get_thread_num();
    long lo = n * me / parts, hi = n * (me + 1) / parts;
    for (int t = 1; t < P; t++) {
      float *sh = grad_block(sl, w, grad, t);
      for (long j = lo; j < hi; j++) grad[j] += sh[j];
      memset(sh + lo, 0, (size_t)(hi - lo) * sizeof(float));
    }
  }
  return ASINK_OK;
}
