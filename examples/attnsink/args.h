/* Command-line flags of the attnsink program: one table for every subcommand,
 * `--flag value` and `--flag=value`, numbers checked against their ranges. */
#ifndef ATTNSINK_CLI_ARGS_H
#define ATTNSINK_CLI_ARGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

typedef enum { CMD_TRAIN = 1, CMD_PROBE = 2, CMD_STUDY = 4, CMD_GENERATE = 8, CMD_STREAM = 16, CMD_SWEEP = 32 } cli_cmd;

/* One bit per entry of the flag table. */
typedef struct {
  uint64_t bits[2];
} cli_flag_set;

/* Everything any subcommand can be told. Strings point into argv, at static
 * defaults, or at copies made when a run's saved settings are read back. */
typedef struct cli_opts {
  /* data and places */
  const char *corpus, *out;
  /* model */
  const char *attn, *ffn, *norm_position, *positions;
  int layers, dim, heads, kv_heads, ffn_dim /* 0: 2 * dim */, context, bos;
  /* training */
  int batch, warmup, eval_every, threads /* 0: the library's default */;
  int64_t steps;
  double lr, wd, clip, minutes /* 0: no time limit */;
  uint64_t seed;
  int resume;
  const char *allreduce; /* under mpirun: how ranks sum gradients (distributed.h) */
  /* the study's factors (docs/cli.md): a prefix LM's prefix (0: none), the linear kernel's
   * feature map, a learnable sink token, the learning-rate schedule, what the windows'
   * first tokens are, and how much of the training part is used (0: all) */
  int prefix, sink_token;
  const char *kernel, *schedule, *first_token;
  double min_lr;
  int64_t decay_steps /* 0: --steps */, train_bytes;
  const char *precision; /* the model's GEMMs: fp32, or bf16 mixed precision (docs/precision.md) */
  /* study: the runs to compare; sweep: runs at once */
  const char *compare;
  int jobs, dry_run, report;
  /* probe */
  const char *dir, *text, *token_ids, *json, *plot;
  int tokens, samples;
  int random_tokens, repeat_token;
  double eps;
  const char *weights; /* probe: how the model keeps its weight matrices, fp32 or bf16 */
  /* generate and stream: decoding with a key/value cache */
  const char *prompt, *prompt_ids, *cache;
  int n_sink, window /* 0: the default, decided with the model */, top_k, buckets;
  double temperature, top_p;
  /* which flags the command line set, by flag index (args_flag_given) */
  cli_flag_set given;
} cli_opts;

/* Parses argv (after the subcommand name) into o, which holds the defaults on
 * entry. Returns 0, or CLI_INPUT after printing one error line, or -1 when
 * --help was asked for (usage already printed). */
int args_parse(cli_cmd cmd, int argc, char **argv, cli_opts *o);

/* Whether the command line set the flag spelled name ("lr", "kv-heads"). */
bool args_flag_given(const cli_opts *o, const char *name);
/* Records flag name as given (a caller that sets a field itself). */
void args_mark_given(cli_opts *o, const char *name);

/* Sets o's field for the setting saved under key (a flag's name, '_' for '-';
 * "bos": true/false) from a JSON value, with the type and range checks of the
 * flag. NULL when it fits; else why not ("must be in 2..1048576"), possibly in why
 * (n bytes). A string value's pointer is kept: v must outlive o. */
const char *args_set_json(cli_cmd cmd, const char *key, const json_t *v, cli_opts *o, char *why, size_t n);

/* Prints the flags cmd accepts, one per line with their defaults, to f. */
void args_print_flags(cli_cmd cmd, const cli_opts *defaults, void *file);

/* Names of the subcommand for messages. */
const char *args_cmd_name(cli_cmd cmd);

/* Prints the usage of cmd (synopsis and flags with the defaults in d) on stdout.
 * Defined in main.c beside the top-level usage. */
void cli_usage(cli_cmd cmd, const cli_opts *d);

#endif
