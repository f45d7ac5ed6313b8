/* The probe: sink statistics of a model on fixed windows (docs/attention.md), gathered
 * by a metric attached to the model during plain forward passes. Shared by the
 * probe subcommand, the training loop's sink1 and the study's comparison. */
#ifndef ATTNSINK_CLI_PROBE_H
#define ATTNSINK_CLI_PROBE_H

#include <stdint.h>
#include <stdio.h>

#include <attnsink.h>
#include <jansson.h>

#include "svg.h"

typedef struct {
  int N, L, H, T, Tk; /* Tk = T, or T + 1 with a virtual key in column 0 */
  float eps;
  float *sink;        /* (Tk) percent of (sample, layer, head) triples with alpha > eps */
  float *importance;  /* (L, H, Tk) alpha, mean over samples */
  float *hidden_norm; /* (L + 1, T) */
  float *key_norm;    /* (L, T) */
  float *value_norm;  /* (L, T) */
  float *qk_cosine;   /* (L, H, T) cos(q_t, k_1), mean over samples */
  float *qk_norm;     /* (L, H, T) |q_t| |k_1|, mean over samples */
  float *entropy;     /* (L, H) nats, mean over rows and samples */
  float *window_alpha; /* (L, H) share of the first key each query sees, mean over samples */
  float window_sink;   /* percent of (sample, layer, head) triples with that share > eps */
  int window;          /* the attention's window=W, 0 without one */
  int first_viewers;   /* queries that see the first token under the mask */
  float window_uniform; /* window_alpha of a head that spreads every row evenly over its keys */
} probe_stats;

/* Runs the N windows (N, T) through m, chunk windows per forward, with a fresh
 * metric of threshold eps attached, then detaches it. 0, or the library's status
 * with asink_last_error() set (nothing printed). */
asink_status probe_run(asink_model *m, const int32_t *windows, int N, int T, int chunk, float eps,
                       probe_stats *ps);
void probe_stats_free(probe_stats *ps);

/* Sink_1: the Sink value of the first real token (after a virtual key, if any). */
double probe_sink1(const probe_stats *ps);
/* alpha of the first real token in layer l, head h, mean over samples. */
double probe_alpha0(const probe_stats *ps, int l, int h);

/* Largest alpha the first token can have by construction: first_viewers / T (its shares are
 * at most 1, divided by T). Sink_1 is 0 whatever the model when this is <= eps. */
double probe_first_alpha_bound(const probe_stats *ps);

/* {"tokens", "samples", "eps", "sink", "importance", "hidden_norm", "key_norm", "value_norm",
 *  "qk_cosine", "qk_norm", "entropy", "window_alpha", "window_sink", "window_uniform",
 *  "first_alpha_bound"} */
json_t *probe_stats_json(const probe_stats *ps);
/* The alpha table (layers x heads) and the Sink_k row for the first positions. */
void probe_print(FILE *f, const probe_stats *ps);
/* Heatmap of alpha of the first real token, layers x heads, in box. */
void probe_alpha_heatmap(svg *s, svg_box box, const probe_stats *ps, const char *title);
/* The probe's plot: the alpha heatmap and the hidden / key / value norm curves. */
char *probe_plot_svg(const probe_stats *ps, const char *title, size_t *n);

/* Vocabulary and BOS id (-1: none) from the model's config. */
void model_token_info(const asink_model *m, int *vocab, int *bos);
/* Byte-level: the 256 bytes, plus at most one BOS id 256. */
int model_is_byte_level(int vocab, int bos);

/* Reads the whitespace-separated decimal ids of path, each in [0, vocab), stopping once
 * `need` are in. Messages name "cmd: --flag path". -1 after an error line. */
int read_token_ids(const char *cmd, const char *flag, const char *path, int vocab, size_t need, int32_t **ids,
                   size_t *n);

int cmd_probe(int argc, char **argv);

#endif
