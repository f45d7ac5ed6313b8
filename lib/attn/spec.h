/* The attention-op spec (docs/attention.md): "base[,key=value...]" parsed into a struct. */
#ifndef ASINK_ATTN_SPEC_H
#define ASINK_ATTN_SPEC_H

#include <stdbool.h>

#include "attnsink.h"

typedef enum {
  ASINK_BASE_SOFTMAX,
  ASINK_BASE_SIGMOID,
  ASINK_BASE_ELU,
  ASINK_BASE_LINEAR,
  ASINK_BASE_ELU_KERNEL
} asink_base;

typedef enum { ASINK_NORM_NONE, ASINK_NORM_SUM, ASINK_NORM_CLAMP } asink_norm;
typedef enum { ASINK_PARAM_OFF, ASINK_PARAM_SHARED, ASINK_PARAM_HEAD } asink_param_mode;
typedef enum { ASINK_SINK_OFF, ASINK_SINK_HEAD, ASINK_SINK_ZERO } asink_sink_mode;

typedef struct asink_spec {
  asink_base base;
  asink_norm norm;
  bool has_scale; /* scale given; else 1/sqrt(head_dim) */
  float scale;
  float bias;
  bool causal;
  int window; /* 0 = off */
  int prefix; /* 0 = off */
  bool alibi;
  asink_param_mode kbias, vbias;
  asink_sink_mode sink;
  float alpha;
  bool relbias; /* relbias=t5: learnable (H, 32) T5-bucket bias of the distance t - j */
} asink_spec;

/* The T5 bucket of a query-key distance n = |t - j| (docs/attention.md):
 * n for n < 16, else min(31, 16 + floor(ln(n / 16) / ln 8 * 16)). */
int asink_relative_bucket(int n);
enum { ASINK_REL_BUCKETS = 32 };

/* Parses text into *spec. ASINK_ERR_SPEC with a message quoting the bad part. */
asink_status asink_spec_parse(const char *text, asink_spec *spec);

/* Writes the canonical spelling (every option) into buf. */
void asink_spec_format(const asink_spec *spec, float scale, char *buf, int size);

const char *asink_base_name(asink_base b);

#endif
