/* How statistics gatherers (the metric handle, lib/metrics) watch a model's forward
 * pass: they see a view of each layer, sizes and rows, never the model itself. */
#ifndef ASINK_MODEL_OBSERVER_H
#define ASINK_MODEL_OBSERVER_H

#include "attnsink.h"

/* One layer of a forward pass over B sequences of T positions (the sink token's
 * included). Rows are row-major: x is (B*T, C), q is (B*T, H*D), k and v are
 * (B*T, Hkv*D), after RoPE. Valid during the call only. */
typedef struct {
  int B, T, C, H, Hkv, D, L;
  int Tk;    /* key columns of the attention maps: T, or T + 1 with a virtual key */
  int layer; /* 0 .. L-1; L for the last residual (q, k, v NULL); -1 before layer 0 */
  const float *x; /* the residual stream entering the layer */
  const float *q, *k, *v;
} asink_layer_view;

typedef struct {
  void *ctx;
  /* before layer 0 (view->layer = -1, no rows): staging buffers the attention then
   * fills, importance (B, H, Tk), entropy (B, H) and the first visible key's share (B, H;
   * asink_attn_state_watch_first_key) */
  asink_status (*begin)(void *ctx, const asink_layer_view *view, float **importance,
                        float **entropy, float **first_key);
  /* after layer l's attention, with that layer's statistics in the staging buffers */
  void (*layer)(void *ctx, const asink_layer_view *view);
  /* after the last layer, view->x the last residual */
  void (*end)(void *ctx, const asink_layer_view *view);
  /* after a decode call of the model (decode.c): share (L x H), the attention on the
   * cache's sink slots averaged over the call's new positions and sequences; NULL: not
   * watched */
  void (*decode_step)(void *ctx, int L, int H, const float *share);
  /* the model no longer calls this observer (replaced, detached, or freed) */
  void (*detached)(void *ctx);
} asink_observer;

/* Makes obs (copied; NULL: none) the model's one observer; the previous one is told
 * it is detached. */
void asink_model_set_observer(asink_model *m, const asink_observer *obs);

#endif
