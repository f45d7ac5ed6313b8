/* The model handle's internals, shared by model.c (the public entry points), optim.c
 * (AdamW) and lib/io's checkpoint files: the weights, where their gradients are
 * accumulated, and the pass states that run over them. */
#ifndef ASINK_MODEL_INTERNAL_H
#define ASINK_MODEL_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "attnsink.h"
#include "model/observer.h"
#include "model/pass.h"
#include "model/slices.h"
#include "model/weights.h"

struct asink_model {
  uint64_t id; /* unique in the process: what a cache records of its model */
  asink_weights *w;
  float *grad; /* accumulated gradients, laid out as w->block */
  char *config_json;
  asink_observer obs; /* obs.ctx NULL: none */

  asink_pass pass;            /* whole-batch passes */
  asink_pass_scratch scratch; /* the whole-batch pass's */
  asink_slices slices;        /* batch-slice passes of a small model */
  bool have_loss;             /* a kept loss waits for backward, on pass or slices */
  /* precision=bf16 with float weights: the bf16 copies may be behind the float weights (a
   * create or load), or can never be trusted again once a writable pointer to the float
   * weights went out (asink_model_param, asink_model_param_block): then every pass makes
   * them again (asink_model_fresh_copies). AdamW refreshes them as it updates. */
  bool copies_stale, pointers_out;
};

struct asink_adamw {
  asink_model *m;
  float lr, b1, b2, eps, wd, clip;
  bool cosine;
  int warmup, total_steps;
  float min_lr;
  int64_t step;
  float *mom, *var; /* one block, parameters in registry order */
  size_t total;
};

/* The gradient of parameter p. */
static inline float *asink_model_grad_of(const asink_model *m, const asink_param *p) {
  return m->grad + p->offset;
}

/* What the options string of asink_model_load_opts / asink_model_create_opts asks. */
typedef struct {
  bool bf16;  /* weights=bf16: the matrices kept in bf16 only */
  bool mixed; /* precision=bf16: GEMMs of the linear layers and head on bf16-rounded operands */
} asink_model_opts;

/* Builds a model for a parsed config, parameters initialised from seed. */
asink_status asink_model_create_from_config(asink_model **out, const asink_config *cfg, uint64_t seed,
                                            asink_model_opts opts);
/* The same with every parameter zero, for a loader that overwrites them all (seeding a
 * large model's parameters takes longer than reading them). */
asink_status asink_model_create_zeroed(asink_model **out, const asink_config *cfg,
                                       asink_model_opts opts);

/* Before a pass: the bf16 copies made again if they may be behind the float weights. */
void asink_model_fresh_copies(asink_model *m);

/* ASINK_ERR_UNSUPPORTED for training a model with bf16 weights, naming the call. */
asink_status asink_refuse_bf16_training(const asink_model *m, const char *what);

/* The options string of asink_model_load_opts / asink_model_create_opts:
 * "weights=fp32|bf16,precision=fp32|bf16" (NULL or "": the defaults, fp32). ASINK_ERR_ARG
 * naming a bad key or value. */
asink_status asink_model_options(const char *options, asink_model_opts *opts);

#endif
