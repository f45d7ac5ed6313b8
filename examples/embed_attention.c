/*
 * embed_attention: one attention operation, forward and backward, with the fused
 * per-key importance — what an inference engine or a custom trainer embeds.
 *
 *   embed_attention [SPEC]        default SPEC: softmax,sink=head
 *
 * Shapes: q (B, T, H, D); k, v (B, T, Hkv, D); out (B, T, H, D); all float32, row-major.
 *
 * SPDX-License-Identifier: MIT
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "attnsink.h"

/* Prints the library's message for a failed call and exits. */
static void check(asink_status s, const char *what) {
  if (s != ASINK_OK) {
    fprintf(stderr, "%s: %s: %s\n", what, asink_status_string(s), asink_last_error());
    exit(1);
  }
}

/* Deterministic values in [-1, 1) so that runs are reproducible. */
static float next_value(uint64_t *state) {
  *state = *state * 6364136223846793005ull + 1442695040888963407ull;
  return (float)((*state >> 40) * 0x1.0p-24 * 2.0 - 1.0);
}

int main(int argc, char **argv) {
  const char *spec = argc > 1 ? argv[1] : "softmax,sink=head";
  const int B = 2, T = 64, H = 4, Hkv = 2, D = 32; /* GQA: 2 query heads per kv head */

  asink_attn *op;
  check(asink_attn_create(&op, spec, H, Hkv, D), "asink_attn_create");
  printf("spec:      %s\n", asink_attn_spec(op)); /* canonical: every option spelled out */

  /* Learnable parameters (k_bias, v_bias, sinks, relative_bias, as the spec asks) start
   * at zero; the op owns their storage, we write through the pointer it gives. */
  for (int i = 0; i < asink_attn_param_count(op); i++) {
    const char *name;
    int ndim;
    int64_t shape[2];
    check(asink_attn_param_info(op, i, &name, &ndim, shape), "asink_attn_param_info");
    float *data;
    size_t numel;
    check(asink_attn_param(op, name, &data, &numel), "asink_attn_param");
    for (size_t j = 0; j < numel; j++) data[j] = 0.5f;
    if (ndim == 2)
      printf("parameter: %s (%lld, %lld) set to 0.5\n", name, (long long)shape[0], (long long)shape[1]);
    else
      printf("parameter: %s (%lld) set to 0.5\n", name, (long long)shape[0]);
  }

  const size_t nq = (size_t)B * T * H * D, nkv = (size_t)B * T * Hkv * D;
  const int Tk = asink_attn_key_count(op, T); /* T, or T + 1 with a virtual key (kbias) */
  float *q = malloc(nq * sizeof *q), *k = malloc(nkv * sizeof *k), *v = malloc(nkv * sizeof *v);
  float *out = malloc(nq * sizeof *out), *dout = malloc(nq * sizeof *dout);
  float *dq = malloc(nq * sizeof *dq), *dk = malloc(nkv * sizeof *dk), *dv = malloc(nkv * sizeof *dv);
  float *imp = malloc((size_t)B * H * Tk * sizeof *imp);
  if (!q || !k || !v || !out || !dout || !dq || !dk || !dv || !imp) {
    fprintf(stderr, "out of memory\n");
    return 1;
  }
  uint64_t seed = 42;
  for (size_t i = 0; i < nq; i++) q[i] = next_value(&seed);
  for (size_t i = 0; i < nkv; i++) k[i] = next_value(&seed);
  for (size_t i = 0; i < nkv; i++) v[i] = next_value(&seed);
  /* Make key 0 stand out the way a sink does: a large component every query shares. */
  for (int b = 0; b < B; b++)
    for (int g = 0; g < Hkv; g++) k[(((size_t)b * T + 0) * Hkv + g) * D] = 8.f;
  for (size_t i = 0; i < nq; i += D) q[i] = 2.f;

  /* Forward, with the importance of every key computed in the same pass. */
  check(asink_attn_forward(op, B, T, q, k, v, out, imp), "asink_attn_forward");
  printf("out[0, 0, 0, 0:4] = %.5f %.5f %.5f %.5f\n", out[0], out[1], out[2], out[3]);
  for (int h = 0; h < H; h++) {
    const float *a = imp + ((size_t)0 * H + h) * Tk; /* batch 0, head h */
    printf("head %d: importance of column 0 = %.4f, column 1 = %.4f, column %d = %.4f\n", h,
           a[0], a[1], Tk - 1, a[Tk - 1]);
  }

  /* Backward of sum(out * dout): dout = 1 everywhere gives the gradient of sum(out).
   * Parameter gradients accumulate in the op, so zero them first. */
  for (size_t i = 0; i < nq; i++) dout[i] = 1.f;
  asink_attn_zero_grad(op);
  check(asink_attn_backward(op, B, T, T, q, k, v, out, dout, dq, dk, dv), "asink_attn_backward");
  double sq = 0, sk = 0, sv = 0;
  for (size_t i = 0; i < nq; i++) sq += fabs(dq[i]);
  for (size_t i = 0; i < nkv; i++) sk += fabs(dk[i]), sv += fabs(dv[i]);
  printf("sum |dq| = %.4f, sum |dk| = %.4f, sum |dv| = %.4f\n", sq, sk, sv);
  for (int i = 0; i < asink_attn_param_count(op); i++) {
    const char *name;
    check(asink_attn_param_info(op, i, &name, NULL, NULL), "asink_attn_param_info");
    float *g;
    size_t numel;
    check(asink_attn_grad(op, name, &g, &numel), "asink_attn_grad");
    printf("grad %s[0] = %.5f\n", name, g[0]);
  }

  free(q), free(k), free(v), free(out), free(dout), free(dq), free(dk), free(dv), free(imp);
  asink_attn_free(op);
  return 0;
}
