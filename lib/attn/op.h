/* The attention module's interface to the layers above it (the model): the op's
 * learnable parameters apart from its per-call state, so several pass states (batch
 * slices, decode caches) share one op. The public asink_attn_* functions are the
 * same calls on a state and a gradient buffer the op keeps for itself. */
#ifndef ASINK_ATTN_OP_H
#define ASINK_ATTN_OP_H

#include <stddef.h>
#include <stdint.h>

#include "attnsink.h"

/* What one forward leaves for its backward (row statistics) and the scratch of
 * both; grow-only, owned by whoever runs the passes. */
typedef struct asink_attn_state asink_attn_state;

asink_status asink_attn_state_create(asink_attn_state **out);
void asink_attn_state_free(asink_attn_state *s);

/* The next forwards on s also write first_share (B*H floats, NULL: stop): per (sequence,
 * head) the mean over query rows of the share (the statistics map of importance) of the
 * first real key each row sees, the window-relative sink of docs/metrics.md. */
void asink_attn_state_watch_first_key(asink_attn_state *s, float *first_share);

/* Where a backward adds the op's parameter gradients: one buffer laid out like the
 * op's parameters (asink_attn_param_floats floats, in asink_attn_param_info order). */
typedef float *asink_attn_grads;

/* Floats of every learnable parameter of the op together (0 without any). */
size_t asink_attn_param_floats(const asink_attn *op);
/* The op's parameters, in asink_attn_param_info order, one block (NULL without any). */
float *asink_attn_param_block(const asink_attn *op);
/* Moves the op's parameters into data (param_floats floats, values copied): a model
 * keeps every parameter in one block. data must outlive the op. A model's passes send
 * the gradients to their own buffers (asink_attn_run_backward). */
void asink_attn_use_storage(asink_attn *op, float *data);

/* asink_attn_forward on state s, also writing entropy (B, H) when not NULL: per
 * (sequence, head) the sum over query rows of -sum_j p log p of the statistics map
 * (docs/attention.md). Arguments are checked as the public forward checks them. */
asink_status asink_attn_run_forward(const asink_attn *op, asink_attn_state *s, int B, int T,
                                    const float *q, const float *k, const float *v, float *out,
                                    float *importance, float *entropy);
/* The same with Tq queries at positions q_pos against Tk keys at positions k_pos
 * (asink_attn_forward_at). */
asink_status asink_attn_run_forward_at(const asink_attn *op, asink_attn_state *s, int B, int Tq,
                                       int Tk, const int64_t *q_pos, const int64_t *k_pos,
                                       const float *q, const float *k, const float *v, float *out,
                                       float *importance, float *entropy);
/* asink_attn_backward of the last forward run on s, parameter gradients added into g. */
asink_status asink_attn_run_backward(const asink_attn *op, asink_attn_state *s,
                                     asink_attn_grads g, const float *q, const float *k,
                                     const float *v, const float *out, const float *dout,
                                     float *dq, float *dk, float *dv);

#endif
