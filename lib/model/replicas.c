/* Data-parallel training passes for small models.
 *
 * A small model's GEMMs are too small to keep two threads busy between the
 * barriers of every operation (hundreds of thread-team starts per step, each a
 * spin on a busy machine), and its whole-batch activations stream through memory
 * between operations. So when a loss is asked of a small model, the batch is cut
 * into slices of about slice_tokens() tokens (at least one per thread), and each
 * thread runs the unchanged single-threaded passes (pass.c) on its slices, one
 * after another, through replicas: shallow copies of the model that share the
 * weights and have their own activations, workspaces and attention ops. Thread 0's
 * slices write gradients into the model's own; thread t > 0's into its shadow
 * block, added to the model's in thread order after the backward, so a run is
 * bit-identical for a given thread count.
 *
 * Used only when it is safe and pays: at least two sequences, no observer attached
 * (the metric reads whole-batch statistics), every gradient in the model's own
 * block (attention ops without parameters), and at most REPLICA_MAX_PARAMS
 * parameters (a shadow block per extra thread). With one thread the slices still
 * keep activations in cache (no shadow then). ASINK_REPLICAS=0 turns it off
 * (benchmarks, tests). */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "model/model_internal.h"

enum { REPLICA_MAX_PARAMS = 1 << 23 };

/* Tokens per slice: a slice's activations (a few hundred KiB per tensor) then stay in
 * the core's L2 cache from one operation of a layer to the next. */
static int slice_tokens(void) {
  const char *env = getenv("ASINK_SLICE_TOKENS");
  int v = env ? atoi(env) : 0;
  return v > 0 ? v : 256;
}

/* Slices to cut a batch of B sequences of Tx tokens into, with *threads threads
 * running them; 0 when the passes stay on one team. */
static int replica_plan(const asink_model *m, int B, int Tx, int *threads) {
  int nt = asink_model_threads();
  const char *env = getenv("ASINK_REPLICAS");
  if (env && !strcmp(env, "0")) return 0;
  if (B < 2 || m->obs.ctx || m->n_block > REPLICA_MAX_PARAMS) return 0;
  for (int i = 0; i < m->n_params; i++) {
    const float *g = m->params[i].grad;
    if (g < m->gblock || g >= m->gblock + m->n_block) return 0;
  }
  *threads = nt < B ? nt : B;
  int per = slice_tokens() / Tx > 1 ? slice_tokens() / Tx : 1, S = (B + per - 1) / per;
  if (S < *threads) S = *threads;
  return S >= 2 ? S : 0;
}

static float *rebase(const asink_model *m, float *g, float *shadow) {
  if (!shadow || !g || g < m->gblock || g >= m->gblock + m->n_block) return g;
  return shadow + (g - m->gblock);
}

static void rebase_linear(const asink_model *m, linear_ref *L, float *shadow) {
  L->dw = rebase(m, L->dw, shadow);
  L->db = rebase(m, L->db, shadow);
}

void asink_replicas_free(asink_model *m) {
  for (int r = 0; r < m->n_rep; r++) {
    asink_model *p = &m->rep[r];
    if (p->layers)
      for (int l = 0; l < m->L; l++) asink_attn_free(p->layers[l].attn);
    asink_free(p->layers);
    asink_free(p->acts);
    asink_ws_release(&p->acts_ws);
    asink_ws_release(&p->work_ws);
    asink_ws_release(&p->logits_ws);
    asink_ws_release(&p->head_pending);
  }
  asink_free(m->rep);
  asink_free(m->gshadow);
  m->rep = NULL, m->gshadow = NULL, m->n_rep = 0, m->rep_threads = 0;
}

/* Replica r: the model's fields, then its own buffers and ops; its gradients go to
 * the model's (thread 0) or to the shadow block of the thread that runs it. */
static asink_status replica_init(asink_model *m, int r) {
  asink_model *p = &m->rep[r];
  *p = *m;
  p->rep = NULL, p->n_rep = 0, p->rep_threads = 0, p->gshadow = NULL;
  p->acts = NULL, p->layers = NULL, p->have_loss = false;
  memset(&p->obs, 0, sizeof p->obs);
  memset(&p->acts_ws, 0, sizeof p->acts_ws);
  memset(&p->work_ws, 0, sizeof p->work_ws);
  memset(&p->logits_ws, 0, sizeof p->logits_ws);
  memset(&p->head_pending, 0, sizeof p->head_pending);
  if (!(p->layers = asink_calloc((size_t)m->L, sizeof *p->layers)))
    return asink_fail(ASINK_ERR_NOMEM, "cannot allocate a model replica");
  int t = r % m->rep_threads;
  float *sh = t ? m->gshadow + (size_t)(t - 1) * m->n_block : NULL;
  for (int l = 0; l < m->L; l++) {
    asink_layer *y = &p->layers[l];
    *y = m->layers[l];
    y->attn = NULL;
    asink_status st = asink_attn_create(&y->attn, asink_attn_spec(m->layers[l].attn), m->H,
                                        m->Hkv, m->D);
    if (st) return st;
    y->g_ln1_w = rebase(m, y->g_ln1_w, sh), y->g_ln1_b = rebase(m, y->g_ln1_b, sh);
    y->g_ln2_w = rebase(m, y->g_ln2_w, sh), y->g_ln2_b = rebase(m, y->g_ln2_b, sh);
    linear_ref *lin[] = {&y->q, &y->k, &y->v, &y->o, &y->gate, &y->up, &y->down, &y->kmlp1, &y->kmlp2};
    for (size_t i = 0; i < sizeof lin / sizeof lin[0]; i++) rebase_linear(m, lin[i], sh);
  }
  p->g_wte = rebase(m, p->g_wte, sh), p->g_wpe = rebase(m, p->g_wpe, sh);
  p->g_sink_tok = rebase(m, p->g_sink_tok, sh);
  p->g_lnf_w = rebase(m, p->g_lnf_w, sh), p->g_lnf_b = rebase(m, p->g_lnf_b, sh);
  p->g_head = rebase(m, p->g_head, sh);
  return ASINK_OK;
}

static asink_status replicas_reserve(asink_model *m, int S, int P) {
  if (m->n_rep == S && m->rep_threads == P) return ASINK_OK;
  asink_replicas_free(m);
  m->rep = asink_calloc((size_t)S, sizeof *m->rep);
  m->gshadow = asink_calloc((size_t)(P - 1) * m->n_block + 1, sizeof(float));
  if (!m->rep || !m->gshadow) {
    asink_replicas_free(m);
    return asink_fail(ASINK_ERR_NOMEM, "cannot allocate %d model replicas", S);
  }
  m->n_rep = S, m->rep_threads = P;
  for (int r = 0; r < S; r++) {
    asink_status st = replica_init(m, r);
    if (st) {
      asink_replicas_free(m);
      return st;
    }
  }
  return ASINK_OK;
}

/* Slice i runs on thread i % P, the owner of its gradient block. A team smaller than
 * asked runs every slice on its thread 0: still one writer per block. */
#define FOR_MY_SLICES(m, i)                                                              \
  for (int me_ = omp_get_thread_num(), all_ = omp_get_num_threads() != (m)->rep_threads, \
           i = all_ ? (me_ ? (m)->n_rep : 0) : me_;                                      \
       i < (m)->n_rep; i += all_ ? 1 : (m)->rep_threads)

/* Scratch that lives only within one slice's call (the head's logits block, the
 * backward buffers) and the head gradient of a loss are kept by replica i % P, the
 * leader of the thread's slices, and lent to each slice in turn: a batch cut into
 * many slices costs no more scratch than one per thread. */
static void borrow(asink_model *p, asink_model *lead) {
  if (p == lead) return;
  p->logits_ws = lead->logits_ws, p->work_ws = lead->work_ws, p->head_pending = lead->head_pending;
}

static void give_back(asink_model *p, asink_model *lead) {
  if (p == lead) return;
  lead->logits_ws = p->logits_ws, lead->work_ws = p->work_ws, lead->head_pending = p->head_pending;
  memset(&p->logits_ws, 0, sizeof p->logits_ws);
  memset(&p->work_ws, 0, sizeof p->work_ws);
  memset(&p->head_pending, 0, sizeof p->head_pending);
}

bool asink_replicas_loss(asink_model *m, int B, int T, const int32_t *tokens,
                         const int32_t *targets, int count, bool keep, double *total,
                         asink_status *status) {
  int P = 0, S = replica_plan(m, B, T + (m->cfg.sink_token ? 1 : 0), &P);
  if (S < 2) return false;
  asink_status st = replicas_reserve(m, S, P);
  if (!st) st = asink_model_tables(m, T + (m->cfg.sink_token ? 1 : 0));
  if (st) {
    *status = st;
    return true;
  }
  double part[S];
  asink_status rst[S];
  char msg[S][256];
#pragma omp parallel num_threads(P)
  FOR_MY_SLICES(m, i) {
    asink_model *p = &m->rep[i], *lead = &m->rep[i % P];
    int b0 = B * i / S, b1 = B * (i + 1) / S;
    p->rope_ws = m->rope_ws, p->rope_len = m->rope_len;
    p->sinus_ws = m->sinus_ws, p->sinus_len = m->sinus_len;
    p->pending_acc = i >= P; /* the leader's first slice writes the head gradient */
    borrow(p, lead);
    rst[i] = asink_model_slice_loss(p, b1 - b0, T, tokens + (size_t)b0 * T,
                                    targets + (size_t)b0 * T, count, keep, &part[i]);
    give_back(p, lead);
    if (rst[i]) snprintf(msg[i], sizeof msg[i], "%s", asink_last_error());
  }
  *total = 0.0;
  *status = ASINK_OK;
  for (int i = 0; i < S; i++) {
    if (rst[i] && !*status) *status = asink_fail(rst[i], "%s", msg[i]);
    *total += part[i];
  }
  m->rep_pass = keep && !*status;
  return true;
}

asink_status asink_replicas_backward(asink_model *m) {
  const int S = m->n_rep, P = m->rep_threads;
  asink_status rst[S];
  char msg[S][256];
#pragma omp parallel num_threads(P)
  {
    FOR_MY_SLICES(m, i) {
      asink_model *p = &m->rep[i], *lead = &m->rep[i % P];
      borrow(p, lead);
      rst[i] = asink_model_run_backward(p);
      give_back(p, lead);
      if (rst[i]) snprintf(msg[i], sizeof msg[i], "%s", asink_last_error());
      p->have_loss = false;
    }
    /* each leader's head gradient, once, by the thread that owns its block */
    FOR_MY_SLICES(m, i)
      if (i < P) residual_add(m->rep[i].g_head, m->rep[i].head_pending.ptr, (size_t)m->V * m->C, 1);
  }
  m->rep_pass = false;
  for (int i = 0; i < S; i++)
    if (rst[i]) return asink_fail(rst[i], "%s", msg[i]);
  /* the threads' gradient blocks into the model's, in thread order */
  const long n = (long)m->n_block;
  const int nt = asink_model_threads();
#pragma omp parallel num_threads(nt) if (nt > 1 && n > 65536)
  {
    int parts = omp_get_num_threads(), me = omp_get_thread_num();
    long lo = n * me / parts, hi = n * (me + 1) / parts;
    for (int t = 1; t < P; t++) {
      float *sh = m->gshadow + (size_t)(t - 1) * m->n_block;
      for (long j = lo; j < hi; j++) m->gblock[j] += sh[j];
      memset(sh + lo, 0, (size_t)(hi - lo) * sizeof(float));
    }
  }
  return ASINK_OK;
}
