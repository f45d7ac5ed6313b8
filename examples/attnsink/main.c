/* attnsink: train byte-level models, probe their attention sinks, run the
 * softmax-versus-sigmoid study, and decode with a key/value cache (generate,
 * stream), on top of libattnsink's public API. */
#include <stdio.h>
#include <string.h>

#include <attnsink.h>

#include "args.h"
#include "distributed.h"
#include "errors.h"
#include "generate.h"
#include "probe.h"
#include "stream.h"
#include "study.h"
#include "sweep.h"
#include "tokenize.h"
#include "train.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: attnsink COMMAND [flags]\n"
          "\n"
          "commands:\n"
          "  train     train a byte-level llama-family model on a text file, with checkpoints\n"
          "  probe     measure a checkpoint's attention sinks (alpha table, Sink_k, norms)\n"
          "  study     train softmax and sigmoid attention alike (or any runs, --compare) and compare\n"
          "            their sinks\n"
          "  sweep     train a plan of runs (PLAN.json), one process each, and tabulate and plot them\n"
          "  generate  continue a prompt token by token with a key/value cache (sink, window, full)\n"
          "  stream    feed a long text through a cache one token at a time: loss per position,\n"
          "            sink share per layer, speed and memory, for one or more cache policies\n"
          "  tokenize  print the ids a checkpoint's tokenizer gives a text (what probe --text uses)\n"
          "\n"
          "attnsink COMMAND --help shows the flags of a command; docs/cli.md has the details.\n"
          "Exit status: 0 done (also after Ctrl-C, which saves), 1 failure while working, 2 bad input.\n");
}

void cli_usage(cli_cmd cmd, const cli_opts *d) {
  switch (cmd) {
  case CMD_TRAIN:
    printf(
        "usage: attnsink train --out DIR [--corpus FILE] [--attn SPEC] [flags]\n"
        "       attnsink train --out DIR --resume [--steps N]\n"
        "Trains a byte-level llama-family model on FILE (95%% / 5%% train / validation split);\n"
        "every --eval-every steps appends to DIR/metrics.jsonl and checkpoints DIR.\n"
        "Ctrl-C saves and exits; --resume continues bit-identically.\n\nflags:\n");
    break;
  case CMD_PROBE:
    printf(
        "usage: attnsink probe DIR (--text FILE | --token-ids FILE | --random-tokens | --repeat-token ID)\n"
        "                          [flags]\n"
        "Loads the checkpoint DIR and measures its sinks on consecutive windows from the start\n"
        "of the stream (--text: encoded by DIR's tokenizer files, or its bytes for a byte-level\n"
        "model), on random tokens or on one token repeated. Each window starts with BOS if the\n"
        "model's config names one or its tokenizer adds one (--bos, --no-bos: always, never).\n\nflags:\n");
    break;
  case CMD_STUDY:
    printf(
        "usage: attnsink study [--minutes M] [--corpus FILE] [--out DIR] [--json OUT] [flags]\n"
        "Trains softmax and sigmoid (no normalisation) attention side by side, each in its own\n"
        "process on one thread, from the same weights on the same batches, for %.0f%% of --minutes\n"
        "(--steps, if given, caps them); the run with fewer steps then resumes to the other's\n"
        "count. Probes both, prints the comparison and writes DIR/report.md with plots.\n"
        "The model and training flags of train apply to both runs; --threads sets the probe's.\n"
        "--compare \"SPEC [flags]; SPEC [flags]; ...\" trains those runs instead (up to 8).\n"
        "On an idle 2-core machine the default 12 minutes (about 23M tokens) go past the point\n"
        "where softmax grows a first-token sink; shorter runs (--minutes 2) end before it.\n\nflags:\n",
        STUDY_TRAIN_SHARE * 100);
    break;
  case CMD_GENERATE:
    printf(
        "usage: attnsink generate DIR (--prompt TEXT | --prompt-ids FILE) [flags]\n"
        "Loads the checkpoint DIR, feeds the prompt (BOS first if the model has one) into a key/value\n"
        "cache and samples --tokens new ones, printing each as it comes: raw bytes for --prompt,\n"
        "whitespace-separated ids for --prompt-ids. A summary (speed, cache, sink share per layer)\n"
        "goes to stderr. --window defaults to %d, or less so the cache fits the model's context.\n"
        "\nflags:\n",
        DEFAULT_WINDOW);
    break;
  case CMD_STREAM:
    printf(
        "usage: attnsink stream DIR (--text FILE | --token-ids FILE) [--cache full,window,sink] [flags]\n"
        "Feeds the stream (BOS first if the model has one, at most --tokens tokens) through each cache\n"
        "policy in turn, one token at a time, and reports the loss per position bucket, the sink share\n"
        "per layer, tokens/s, the cache's bytes and the peak resident memory of each.\n"
        "--window defaults to %d, or less so the cache fits the model's context.\n\nflags:\n",
        DEFAULT_WINDOW);
    break;
  case CMD_SWEEP:
    printf(
        "usage: attnsink sweep PLAN.json [--out DIR] [--jobs N] [--corpus FILE]\n"
        "Trains every run of the plan (docs/cli.md describes its format), each in its own process on\n"
        "one thread, --jobs at once; a run finished before is skipped, a stopped one continues. Then\n"
        "probes each and writes DIR/results.json, DIR/results.md, DIR/sink1.svg and DIR/loss.svg.\n"
        "DIR defaults to the plan's name without .json. --threads sets the probes' threads.\n\nflags:\n");
    break;
  }
  args_print_flags(cmd, d, stdout);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    /* bad input like any other: one line, not the whole usage */
    cli_error("no command given (train, probe, study, sweep, generate, stream or tokenize; attnsink --help lists them)");
    return CLI_INPUT;
  }
  const char *c = argv[1];
  /* mpirun -np N would start N copies writing the same files */
  if (strcmp(c, "train") && c[0] != '-' && dist_launched_ranks() > 1) {
    cli_error("only `attnsink train` runs across MPI ranks; run `attnsink %s` as one process", c);
    return CLI_INPUT;
  }
  if (!strcmp(c, "train")) return cmd_train(argc - 2, argv + 2);
  if (!strcmp(c, "probe")) return cmd_probe(argc - 2, argv + 2);
  if (!strcmp(c, "study")) return cmd_study(argc - 2, argv + 2);
  if (!strcmp(c, "generate")) return cmd_generate(argc - 2, argv + 2);
  if (!strcmp(c, "stream")) return cmd_stream(argc - 2, argv + 2);
  if (!strcmp(c, "sweep")) return cmd_sweep(argc - 2, argv + 2);
  if (!strcmp(c, "tokenize")) return cmd_tokenize(argc - 2, argv + 2);
  if (!strcmp(c, "--help") || !strcmp(c, "-h") || !strcmp(c, "help")) {
    usage(stdout);
    return CLI_OK;
  }
  if (!strcmp(c, "--version")) {
    printf("attnsink (libattnsink %s)\n", asink_version());
    return CLI_OK;
  }
  cli_error("unknown command '%s' (train, probe, study, sweep, generate, stream or tokenize; see attnsink --help)", c);
  return CLI_INPUT;
}
