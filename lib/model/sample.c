/* Sampling a token from logits: greedy, temperature, top-k, top-p, from the seeded
 * generator of core/rng.h (the same seed, the same tokens). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attnsink.h"
#include "core/alloc.h"
#include "core/error.h"
#include "core/rng.h"

struct asink_sampler {
  float temperature, top_p;
  int top_k;
  asink_rng rng;
  asink_ws work; /* vocab (index, probability) pairs */
};

typedef struct {
  float p;
  int32_t id;
} cand;

asink_status asink_sampler_create(asink_sampler **out, float temperature, int top_k, float top_p,
                                  uint64_t seed) {
  if (!out) return asink_fail(ASINK_ERR_ARG, "asink_sampler_create: output pointer is NULL");
  *out = NULL;
  if (!(temperature >= 0.f) || !isfinite(temperature))
    return asink_fail(ASINK_ERR_ARG, "temperature=%g must be finite and >= 0", temperature);
  if (top_k < 0) return asink_fail(ASINK_ERR_ARG, "top_k=%d must be >= 0 (0: all)", top_k);
  if (!(top_p > 0.f && top_p <= 1.f)) return asink_fail(ASINK_ERR_ARG, "top_p=%g must be in (0, 1]", top_p);
  asink_sampler *s = asink_calloc(1, sizeof *s);
  if (!s) return asink_fail(ASINK_ERR_NOMEM, "cannot allocate a sampler");
  s->temperature = temperature, s->top_k = top_k, s->top_p = top_p;
  s->rng = asink_rng_seed(seed);
  *out = s;
  return ASINK_OK;
}

void asink_sampler_free(asink_sampler *s) {
  if (!s) return;
  asink_ws_release(&s->work);
  asink_free(s);
}

/* larger probability first, then lower id: a total order, so the pick is reproducible */
static int by_prob(const void *a, const void *b) {
  const cand *x = a, *y = b;
  if (x->p != y->p) return x->p > y->p ? -1 : 1;
  return x->id < y->id ? -1 : x->id > y->id;
}

asink_status asink_sampler_pick(asink_sampler *s, const float *logits, int vocab, int32_t *token) {
  if (!s || !logits || !token) return asink_fail(ASINK_ERR_ARG, "asink_sampler_pick: NULL argument");
  if (vocab < 1) return asink_fail(ASINK_ERR_ARG, "asink_sampler_pick: vocab=%d must be positive", vocab);
  int best = 0;
  for (int i = 0; i < vocab; i++) {
    if (isnan(logits[i])) return asink_fail(ASINK_ERR_ARG, "sampler: logit %d is NaN", i);
    if (logits[i] > logits[best]) best = i;
  }
  if (s->temperature == 0.f || s->top_k == 1) {
    *token = best;
    return ASINK_OK;
  }
  asink_status st = asink_ws_reserve(&s->work, (size_t)vocab * sizeof(cand), "sampler candidates");
  if (st) return st;
  cand *c = s->work.ptr;
  const double m = logits[best];
  double sum = 0.0;
  for (int i = 0; i < vocab; i++) {
    double p = exp(((double)logits[i] - m) / s->temperature);
    c[i] = (cand){(float)p, i};
    sum += p;
  }
  int n = vocab;
  if ((s->top_k > 0 && s->top_k < vocab) || s->top_p < 1.f) {
    qsort(c, (size_t)vocab, sizeof *c, by_prob);
    if (s->top_k > 0 && s->top_k < n) n = s->top_k;
    sum = 0.0;
    for (int i = 0; i < n; i++) sum += c[i].p;
    if (s->top_p < 1.f) {
      double acc = 0.0;
      for (int i = 0; i < n; i++) {
        acc += c[i].p;
        if (acc >= s->top_p * sum) {
          n = i + 1;
          break;
        }
      }
      sum = 0.0;
      for (int i = 0; i < n; i++) sum += c[i].p;
    }
  }
  /* the walk adds the same float values the total was made of; should rounding still
   * leave u past the end, the last candidate with a nonzero probability is drawn */
  sum = 0.0;
  for (int i = 0; i < n; i++) sum += c[i].p;
  double u = asink_rng_uniform(&s->rng) * sum, acc = 0.0;
  int last = 0;
  for (int i = 0; i < n; i++)
    if (c[i].p > 0.f) last = i;
  *token = c[last].id;
  for (int i = 0; i < n; i++) {
    acc += c[i].p;
    if (u < acc && c[i].p > 0.f) {
      *token = c[i].id;
      break;
    }
  }
  return ASINK_OK;
}
