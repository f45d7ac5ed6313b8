/* Data-parallel passes of a small model: the batch cut into slices, each a pass state
 * over the model's one set of weights (slices.c says when and why). */
#ifndef ASINK_MODEL_SLICES_H
#define ASINK_MODEL_SLICES_H

#include <stdbool.h>

#include "model/pass.h"

typedef struct {
  int n, threads;              /* slices, and the threads that run them */
  asink_pass *pass;            /* n pass states */
  asink_pass_scratch *scratch; /* threads: each thread's, lent to its slices in turn */
  float *shadow;               /* threads - 1 gradient blocks (threads 1 ..) */
  double *loss;                /* n: each slice's summed loss */
  asink_status *status;        /* n */
  char (*msg)[256];            /* n: each failed slice's message */
  bool have_loss;              /* the last loss ran here and was kept */
} asink_slices;

/* Slices to cut a batch of B sequences of Tx tokens into, with *threads threads
 * running them; 0 when the passes stay on one team (also with an observer). */
int asink_slices_plan(const asink_weights *w, int B, int Tx, bool observed, int *threads);

/* The loss of a checked batch over n slices on threads threads (a plan), gradients
 * of thread 0's slices into grad, the others' into their shadows. */
asink_status asink_slices_loss(asink_slices *sl, const asink_weights *w, float *grad, int n,
                               int threads, int B, int T, const int32_t *tokens,
                               const int32_t *targets, int count, bool keep, double *total);
/* Backward of the slices' kept loss, every gradient summed into grad in thread order. */
asink_status asink_slices_backward(asink_slices *sl, const asink_weights *w, float *grad);
void asink_slices_free(asink_slices *sl, const asink_weights *w);

#endif
