/* Decoding with a key/value cache: `attnsink generate` samples a continuation of a
 * prompt token by token, `attnsink stream` feeds a long text through a cache one
 * token at a time and measures the loss along it. The helpers here are shared. */
#ifndef ATTNSINK_CLI_GENERATE_H
#define ATTNSINK_CLI_GENERATE_H

#include <stdbool.h>
#include <stdint.h>

#include <attnsink.h>

#include "args.h"

/* The recent positions a window or sink cache keeps when --window is not given: this
 * many, or fewer so that the cache holds no more than the model's context. */
enum { DEFAULT_WINDOW = 256 };

/* What the decoding commands need to know about a model, from its dims and config. */
typedef struct {
  int vocab, bos; /* bos: -1 when the config names none */
  int n_layer, n_head;
  int context;     /* max_position_embeddings / n_positions / n_ctx; 0 if the config has none */
  bool learned;    /* learned positions: a sequence ends at `context` */
  bool absolute;   /* learned or sinusoidal positions: full caches only */
  bool sink_token; /* a learned sink vector takes position 0 */
  int prefix;      /* a prefix-LM's prefix (spec prefix=P), which a first decode call must hold whole */
} decode_model;

void decode_model_info(const asink_model *m, decode_model *dm);

/* One token at a time through a small model, a second thread only waits at every
 * barrier: below DECODE_ONE_THREAD_PARAMS parameters the library gets one thread,
 * unless --threads or ASINK_NUM_THREADS says otherwise. */
#define DECODE_ONE_THREAD_PARAMS 1000000
void decode_threads(asink_model *m, const cli_opts *o);

/* The window for policy: --window if given, else DEFAULT_WINDOW capped by the model's
 * context (less the sink positions for "sink"). May be < 1; decode_check says so. */
int decode_window(const cli_opts *o, const decode_model *dm, const char *policy);

/* The --cache default is "sink", but a model with absolute positions decodes with a full
 * cache only: without --cache it gets "full". true when that happened; decode_note_full
 * then says so on stderr, once the input has passed every check (an error stays one line). */
bool decode_default_cache(cli_opts *o, const decode_model *dm);
void decode_note_full(const char *cmd, const decode_model *dm);

/* Checks that policy can decode a stream of max_len tokens with these settings, as far
 * as the program can tell before asking the library. 0, or -1 after one error line. */
int decode_check(const char *cmd, const cli_opts *o, const decode_model *dm, const char *policy, int window,
                 int64_t max_len);

/* asink_cache_create for one sequence; CLI_OK, or CLI_INPUT / CLI_FAIL after one
 * error line naming the policy and the library's message. */
int decode_cache_create(const char *cmd, asink_model *m, const char *policy, int n_sink, int window,
                        int64_t max_len, asink_cache **c);

/* The attention share of the cache's sink positions, per decode call, read out of a
 * metric attached to the model every `every` calls (asink_metric_sink_share), summed
 * per layer over calls and heads, so that memory stays bounded on long streams. */
typedef struct {
  asink_metric *mt;
  int L, H, cap;
  float *buf;        /* (cap, L, H) */
  double *layer_sum; /* (L): sum over calls and heads */
  int64_t steps;     /* calls read so far */
} share_meter;

/* Creates the metric and attaches it to m. The library's status (nothing printed). */
asink_status share_meter_start(share_meter *sm, asink_model *m, int L, int H, int cap);
/* Reads the calls recorded since the last drain into the sums and resets the metric.
 * per_step, if not NULL, receives each call's index and its mean over layers and heads. */
asink_status share_meter_drain(share_meter *sm, void (*per_step)(void *ctx, int64_t step, double share),
                               void *ctx);
/* Detaches the metric from m and frees everything. */
void share_meter_stop(share_meter *sm, asink_model *m);

int cmd_generate(int argc, char **argv);

#endif
