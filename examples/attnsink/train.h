/* Training a byte-level llama-family model on a text corpus, with evaluation,
 * checkpoints, interruption and bit-identical resumption. */
#ifndef ATTNSINK_CLI_TRAIN_H
#define ATTNSINK_CLI_TRAIN_H

#include <stdbool.h>
#include <sys/types.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "args.h"
#include "corpus.h"
#include "probe.h"

/* The defaults of `train` and `study`, in this one place. They are provisional:
 * docs/results.md explains BOS first and the higher lr and wd. */
extern const cli_opts train_defaults;

/* Fixed evaluation sets: val_loss over EVAL_WINDOWS windows of the context spread
 * over the validation part; sink1 on the study's probe, PROBE_WINDOWS consecutive
 * windows of PROBE_TOKENS tokens (fewer tokens if the context is shorter) from the
 * start of the validation part, threshold PROBE_EPS. */
enum { EVAL_WINDOWS = 64, PROBE_WINDOWS = 100, PROBE_TOKENS = 64 };
/* The study's AdamW and model constants; not flags, because the study never varies them. */
#define ADAM_BETA1 0.9f
#define ADAM_BETA2 0.95f
#define ADAM_EPS 1e-8f
#define RMS_NORM_EPS 1e-5
#define ROPE_THETA 10000.0
#define PROBE_EPS 0.3f
#define BOS_ID 256

typedef struct {
  int64_t steps, tokens;
  double seconds;    /* training wall-clock, summed over resumptions */
  double train_loss; /* mean over the steps since the previous evaluation */
  double val_loss, sink1;
  bool interrupted; /* stopped by SIGINT/SIGTERM after saving */
} train_result;

/* Trains as o says (o->resume: continues o->out). label prefixes progress lines
 * (NULL: none). Returns CLI_OK, CLI_INPUT (one error line, nothing left behind)
 * or CLI_FAIL. On an interrupt it saves, sets res->interrupted and returns CLI_OK. */
int train_run(const cli_opts *o, const char *label, train_result *res);

/* The model's config.json text for o (llama family, byte-level). malloc'd. */
char *train_config_json(const cli_opts *o);

/* The attention spec the model gets: --attn, with prefix=P added for --prefix P. malloc'd. */
char *train_attn_spec(const cli_opts *o);

/* Checks the study's factors in o (--prefix against a prefix= in --attn, which it is
 * derived from when absent; --first-token; --kernel; --schedule, resolving the cosine's
 * length into o->decay_steps) and fills f with what the windows get. -1 after one
 * error line. */
int train_check_factors(cli_opts *o, window_form *f);

/* Checks o as a fresh `train` would before it writes anything: c against the context, the
 * factors, --train-bytes, and the model config (the spec, the kernel). -1 after one error
 * line; a library message is prefixed with who ("study: "). */
int train_check_settings(const cli_opts *o, corpus *c, const char *who);

/* Probes the checkpoint in dir on the training loop's probe windows of c (formed as o's
 * training windows are) into ps, and writes dir/probe.json. -1 after one error line. */
int train_probe_checkpoint(const cli_opts *o, const corpus *c, const char *dir, probe_stats *ps);

/* The FFN width o implies (ffn_dim, or 2 x dim when 0). */
int train_ffn_dim(const cli_opts *o);

/* The key/value heads o implies (kv_heads, or heads when 0). */
int train_kv_heads(const cli_opts *o);

/* Settings as a JSON object (the args of train_state.json); the report prints it. */
json_t *train_opts_json(const cli_opts *o);
/* The model options string of a run's --precision, for asink_model_create_opts/load_opts. */
const char *train_model_options(const cli_opts *o);

/* The corpus to use: --corpus, else $ATTNSINK_CORPUS, else the KJV text that
 * `make corpus` puts in the build tree beside this program. NULL after an error
 * line when there is none. */
const char *train_corpus_path(const cli_opts *o);

/* Removes what train_run writes into dir (only those names), then dir if empty. */
void train_remove_run(const char *dir);

/* Ctrl-C (SIGINT) and SIGTERM set a flag the loops poll; a second Ctrl-C kills. */
void train_install_signals(void);
bool train_interrupted(void);
/* A parent of runs (sweep, study): once it was asked to stop (train_interrupted), sends SIGTERM
 * to each of the n children in pid that is still running (pid[i] > 0), the first time only
 * (*forwarded), so they stop and save as on a terminal's Ctrl-C even when the signal reached
 * the parent alone (kill PID). SIGTERM, not SIGINT: after a terminal's Ctrl-C, which reached
 * the children too, their SIGINT is back to its default and would kill them unsaved. */
void train_forward_stop(const pid_t *pid, int n, bool *forwarded);

/* Wall-clock seconds from a monotonic clock. */
double now_seconds(void);

int cmd_train(int argc, char **argv);

#endif
