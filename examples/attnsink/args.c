#include "args.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"

typedef enum { F_INT, F_I64, F_U64, F_DOUBLE, F_STR, F_CHOICE, F_SET } flag_kind;

typedef struct {
  const char *name;
  flag_kind kind;
  size_t off;
  unsigned cmds;
  double min, max;         /* numbers: accepted range */
  bool min_open, max_open; /* exclusive ends (lr > 0, eps < 1) */
  const char *choices;     /* F_CHOICE: space-separated; F_SET: unused */
  int set_to;              /* F_SET: value stored in the int field */
  const char *help;
} flag;

#define O(f) offsetof(cli_opts, f)
enum { TR = CMD_TRAIN, PR = CMD_PROBE, ST = CMD_STUDY, GE = CMD_GENERATE, SM = CMD_STREAM, SW = CMD_SWEEP };

/* study takes the model and training flags too: it is where defaults get tuned.
 * A name may appear more than once for commands that give it another meaning or
 * range (--tokens, --seed, --cache); those entries' command sets do not overlap. */
static const flag flags[] = {
    {"corpus", F_STR, O(corpus), TR | ST | SW, 0, 0, 0, 0, NULL, 0, "text file; bytes are the tokens"},
    {"out", F_STR, O(out), TR | ST | SW, 0, 0, 0, 0, NULL, 0, "output directory"},
    {"attn", F_STR, O(attn), TR, 0, 0, 0, 0, NULL, 0, "attention spec (docs/attention.md)"},
    {"layers", F_INT, O(layers), TR | ST, 1, 1024, 0, 0, NULL, 0, "decoder layers"},
    {"dim", F_INT, O(dim), TR | ST, 1, 65536, 0, 0, NULL, 0, "model width"},
    {"heads", F_INT, O(heads), TR | ST, 1, 1024, 0, 0, NULL, 0, "attention heads"},
    {"kv-heads", F_INT, O(kv_heads), TR | ST, 1, 1024, 0, 0, NULL, 0,
     "key/value heads (GQA; default: --heads)"},
    {"ffn", F_CHOICE, O(ffn), TR | ST, 0, 0, 0, 0, "swiglu geglu reglu gelu relu swish", 0, "FFN kind"},
    {"ffn-dim", F_INT, O(ffn_dim), TR | ST, 1, 1 << 20, 0, 0, NULL, 0, "FFN inner width (default 2 x dim)"},
    {"norm-position", F_CHOICE, O(norm_position), TR | ST, 0, 0, 0, 0, "pre post", 0, "norm position"},
    {"positions", F_CHOICE, O(positions), TR | ST, 0, 0, 0, 0, "rope nope sinusoidal learned alibi relative",
     0, "position encoding"},
    {"context", F_INT, O(context), TR | ST, 2, 1 << 20, 0, 0, NULL, 0, "tokens per training window"},
    {"bos", F_SET, O(bos), TR | ST, 0, 0, 0, 0, NULL, 1, "start every window with BOS id 256"},
    {"no-bos", F_SET, O(bos), TR | ST, 0, 0, 0, 0, NULL, 0, "plain byte windows, vocabulary 256"},
    {"batch", F_INT, O(batch), TR | ST, 1, 65536, 0, 0, NULL, 0, "windows per step"},
    {"steps", F_I64, O(steps), TR | ST, 1, 1e12, 0, 0, NULL, 0, "optimizer steps"},
    {"lr", F_DOUBLE, O(lr), TR | ST, 0, 1e3, 1, 0, NULL, 0, "peak learning rate"},
    {"warmup", F_INT, O(warmup), TR | ST, 0, 1e9, 0, 0, NULL, 0, "linear warm-up steps"},
    {"wd", F_DOUBLE, O(wd), TR | ST, 0, 1e3, 0, 0, NULL, 0, "AdamW weight decay"},
    {"clip", F_DOUBLE, O(clip), TR | ST, 0, 1e9, 0, 0, NULL, 0, "gradient norm clip (0: off)"},
    {"seed", F_U64, O(seed), TR | ST, 0, 0, 0, 0, NULL, 0, "initialisation and data-order seed"},
    {"eval-every", F_INT, O(eval_every), TR | ST, 1, 1e9, 0, 0, NULL, 0, "steps between evaluations"},
    {"threads", F_INT, O(threads), TR | PR | ST | SW, 1, 1024, 0, 0, NULL, 0, "threads (default: all cores)"},
    {"threads", F_INT, O(threads), GE | SM, 1, 1024, 0, 0, NULL, 0,
     "threads (default: 1 below a million parameters, else all cores)"},
    {"minutes", F_DOUBLE, O(minutes), TR | ST, 0, 1e6, 1, 0, NULL, 0, "wall-clock budget"},
    {"resume", F_SET, O(resume), TR, 0, 0, 0, 0, NULL, 1, "continue the run in --out"},
    {"allreduce", F_CHOICE, O(allreduce), TR, 0, 0, 0, 0, "ordered mpi", 0,
     "under mpirun: gradient sum in rank order, or MPI_Allreduce's order"},
    {"prefix", F_INT, O(prefix), TR | ST, 1, 1 << 20, 0, 0, NULL, 0,
     "prefix LM: the first P positions see each other and the first P-1 targets are not trained on"},
    {"kernel", F_CHOICE, O(kernel), TR | ST, 0, 0, 0, 0, "none mlp", 0,
     "feature map of --attn linear (mlp: the learnable MLP kernel)"},
    {"sink-token", F_SET, O(sink_token), TR | ST, 0, 0, 0, 0, NULL, 1, "a learnable sink token before every window"},
    {"schedule", F_CHOICE, O(schedule), TR | ST, 0, 0, 0, 0, "constant cosine", 0,
     "learning rate after the warm-up"},
    {"min-lr", F_DOUBLE, O(min_lr), TR | ST, 0, 1e3, 0, 0, NULL, 0, "the floor a cosine schedule ends at"},
    {"decay-steps", F_I64, O(decay_steps), TR | ST, 1, 2147483647, 0, 0, NULL, 0,
     "step a cosine schedule reaches its floor (default: --steps)"},
    {"first-token", F_STR, O(first_token), TR | ST, 0, 0, 0, 0, NULL, 0,
     "text, random (a random byte first), or fixed:ID@POS (ID inserted at position POS, from 1)"},
    {"train-bytes", F_I64, O(train_bytes), TR | ST, 1, 1e15, 0, 0, NULL, 0,
     "train on the first N bytes of the training part only (default: all)"},
    {"precision", F_CHOICE, O(precision), TR | ST, 0, 0, 0, 0, "fp32 bf16", 0,
     "GEMM operands: fp32, or bf16 mixed precision (fp32 master weights, docs/precision.md)"},
    {"compare", F_STR, O(compare), ST, 0, 0, 0, 0, NULL, 0,
     "runs to compare: \"SPEC [flags]; SPEC [flags]; ...\" (default: softmax; sigmoid)"},
    {"jobs", F_INT, O(jobs), SW, 1, 1024, 0, 0, NULL, 0, "runs at once (default: the cores)"},
    {"dry-run", F_SET, O(dry_run), SW, 0, 0, 0, 0, NULL, 1,
     "check the plan and list its runs and what is left to train; write nothing"},
    {"report", F_SET, O(report), SW, 0, 0, 0, 0, NULL, 1,
     "train nothing: write the results of the runs finished so far, naming the others"},
    {"prompt", F_STR, O(prompt), GE, 0, 0, 0, 0, NULL, 0, "prompt text (byte-level models)"},
    {"prompt-ids", F_STR, O(prompt_ids), GE, 0, 0, 0, 0, NULL, 0, "file of whitespace-separated prompt ids"},
    {"text", F_STR, O(text), SM, 0, 0, 0, 0, NULL, 0, "text file (byte-level models)"},
    {"text", F_STR, O(text), PR, 0, 0, 0, 0, NULL, 0,
     "text file, encoded by the checkpoint's tokenizer files (or its bytes, for a byte-level model)"},
    {"token-ids", F_STR, O(token_ids), PR | SM, 0, 0, 0, 0, NULL, 0, "file of whitespace-separated ids"},
    {"tokens", F_INT, O(tokens), PR, 1, 1 << 20, 0, 0, NULL, 0, "tokens per sample"},
    {"tokens", F_INT, O(tokens), GE, 1, 1 << 30, 0, 0, NULL, 0, "tokens to generate"},
    {"tokens", F_INT, O(tokens), SM, 2, 1 << 30, 0, 0, NULL, 0, "at most this many tokens of the stream"},
    {"cache", F_CHOICE, O(cache), GE, 0, 0, 0, 0, "full window sink", 0, "key/value cache policy"},
    {"cache", F_STR, O(cache), SM, 0, 0, 0, 0, NULL, 0,
     "cache policies to run in turn, comma-separated: full window sink"},
    {"n-sink", F_INT, O(n_sink), GE | SM, 1, 1 << 20, 0, 0, NULL, 0, "first positions a sink cache keeps"},
    {"window", F_INT, O(window), GE | SM, 1, 1 << 30, 0, 0, NULL, 0,
     "recent positions kept by a window or sink cache (default: 256, within the context)"},
    {"temperature", F_DOUBLE, O(temperature), GE, 0, 1e6, 0, 0, NULL, 0, "sampling temperature (0: greedy)"},
    {"top-k", F_INT, O(top_k), GE, 0, 1 << 30, 0, 0, NULL, 0, "sample among the K likeliest ids (0: all)"},
    {"top-p", F_DOUBLE, O(top_p), GE, 0, 1, 1, 0, NULL, 0, "nucleus: the likeliest ids holding P (1: all)"},
    {"seed", F_U64, O(seed), GE, 0, 0, 0, 0, NULL, 0, "sampling seed"},
    {"samples", F_INT, O(samples), PR, 1, 1e7, 0, 0, NULL, 0, "samples (windows)"},
    {"random-tokens", F_SET, O(random_tokens), PR, 0, 0, 0, 0, NULL, 1,
     "windows of ids drawn uniformly from the vocabulary"},
    {"repeat-token", F_INT, O(repeat_token), PR, 0, 1 << 30, 0, 0, NULL, 0, "one window of this id repeated"},
    {"seed", F_U64, O(seed), PR, 0, 0, 0, 0, NULL, 0, "seed of --random-tokens"},
    {"bos", F_SET, O(bos), PR, 0, 0, 0, 0, NULL, 1,
     "start every window with BOS (default: if the model's config or tokenizer adds one)"},
    {"no-bos", F_SET, O(bos), PR, 0, 0, 0, 0, NULL, 0, "no BOS, whatever the model's config or tokenizer say"},
    {"weights", F_CHOICE, O(weights), PR, 0, 0, 0, 0, "fp32 bf16", 0,
     "weight matrices kept in fp32 or bf16 (half the memory; inference only)"},
    {"eps", F_DOUBLE, O(eps), PR, 0, 1, 1, 1, NULL, 0, "Sink threshold, in (0, 1)"},
    {"buckets", F_INT, O(buckets), SM, 1, 10000, 0, 0, NULL, 0, "position buckets of the loss curve"},
    {"json", F_STR, O(json), PR | ST | SM, 0, 0, 0, 0, NULL, 0, "write results as JSON to this file"},
    {"plot", F_STR, O(plot), PR | SM, 0, 0, 0, 0, NULL, 0, "write an SVG plot to this file"},
};
enum { N_FLAGS = sizeof flags / sizeof flags[0] };
_Static_assert(N_FLAGS <= 128, "the given-mask has 128 bits");

static void mark(cli_opts *o, int i) { o->given.bits[i / 64] |= 1ull << (i % 64); }
static bool marked(const cli_opts *o, int i) { return o->given.bits[i / 64] >> (i % 64) & 1; }

const char *args_cmd_name(cli_cmd cmd) {
  switch (cmd) {
  case CMD_TRAIN: return "train";
  case CMD_PROBE: return "probe";
  case CMD_STUDY: return "study";
  case CMD_GENERATE: return "generate";
  case CMD_STREAM: return "stream";
  case CMD_SWEEP: return "sweep";
  }
  return "?";
}

/* The entry spelled name for one of the commands in cmds, else the first entry of
 * that name (which the caller then finds is not for its command). */
static const flag *find(const char *name, size_t len, unsigned cmds, int *index) {
  const flag *any = NULL;
  for (int i = 0; i < N_FLAGS; i++)
    if (strlen(flags[i].name) == len && !strncmp(flags[i].name, name, len)) {
      if (flags[i].cmds & cmds) {
        *index = i;
        return &flags[i];
      }
      if (!any) any = &flags[i], *index = i;
    }
  return any;
}

void args_mark_given(cli_opts *o, const char *name) {
  int i;
  if (find(name, strlen(name), ~0u, &i)) mark(o, i);
}

bool args_flag_given(const cli_opts *o, const char *name) {
  for (int i = 0; i < N_FLAGS; i++)
    if (!strcmp(flags[i].name, name) && marked(o, i)) return true;
  return false;
}

static void range_text(const flag *f, char *buf, size_t n) {
  if (f->kind == F_DOUBLE)
    snprintf(buf, n, "%s %g and %s %g", f->min_open ? "above" : "at least", f->min,
             f->max_open ? "below" : "at most", f->max);
  else snprintf(buf, n, "%.0f..%.0f", f->min, f->max);
}

/* Parses v into o's field for f. NULL when it fits, else why not ("must be in
 * 2..1048576"), in why. */
static const char *parse_value(const flag *f, const char *v, cli_opts *o, char *why, size_t n) {
  char *base = (char *)o + f->off, *end = NULL, range[160];
  if (f->kind == F_STR) {
    if (!*v) return "must not be empty";
    *(const char **)base = v;
    return NULL;
  }
  if (f->kind == F_CHOICE) {
    size_t len = strlen(v);
    for (const char *c = f->choices; *c;) {
      size_t w = strcspn(c, " ");
      if (w == len && !strncmp(c, v, len)) {
        *(const char **)base = v;
        return NULL;
      }
      c += w + (c[w] == ' ');
    }
    snprintf(why, n, "is not one of: %s", f->choices);
    return why;
  }
  /* strto* accept leading blanks and signs the user did not mean: be strict. */
  if (!*v || v[0] == ' ' || v[0] == '\t') return f->kind == F_DOUBLE ? "is not a number" : "is not an integer";
  errno = 0;
  if (f->kind == F_DOUBLE) {
    double d = strtod(v, &end);
    if (*end || end == v || !isfinite(d)) return "is not a finite number";
    bool ok = (f->min_open ? d > f->min : d >= f->min) && (f->max_open ? d < f->max : d <= f->max);
    if (!ok) {
      range_text(f, range, sizeof range);
      snprintf(why, n, "must be %s", range);
      return why;
    }
    *(double *)base = d;
    return NULL;
  }
  if (f->kind == F_U64) {
    if (v[0] == '-') return "must not be negative";
    unsigned long long u = strtoull(v, &end, 10);
    if (*end || end == v) return "is not an integer";
    if (errno == ERANGE) return "is too large (64-bit)";
    *(uint64_t *)base = u;
    return NULL;
  }
  long long x = strtoll(v, &end, 10);
  if (*end || end == v) return "is not an integer";
  if (errno == ERANGE || x < f->min || x > f->max) {
    range_text(f, range, sizeof range);
    snprintf(why, n, "must be in %s", range);
    return why;
  }
  if (f->kind == F_INT) *(int *)base = (int)x;
  else *(int64_t *)base = x;
  return NULL;
}

static int set_value(cli_cmd cmd, const flag *f, const char *v, cli_opts *o) {
  char why[200];
  const char *bad = parse_value(f, v, o, why, sizeof why);
  if (!bad) return 0;
  cli_error("%s: --%s=%s %s", args_cmd_name(cmd), f->name, v, bad);
  return CLI_INPUT;
}

const char *args_set_json(cli_cmd cmd, const char *key, const json_t *v, cli_opts *o, char *why, size_t n) {
  /* a key is its flag's name with '_' for '-'; "bos" is the --bos / --no-bos pair */
  char name[64];
  snprintf(name, sizeof name, "%s", key);
  for (char *p = name; *p; p++)
    if (*p == '_') *p = '-';
  int idx;
  const flag *f = find(name, strlen(name), cmd, &idx);
  if (!f || !(f->cmds & cmd)) return "is not a setting of this command";
  char text[64];
  const char *s = text;
  switch (f->kind) {
  case F_SET:
    if (!json_is_boolean(v)) return "must be true or false";
    *(int *)((char *)o + f->off) = json_is_true(v);
    return NULL;
  case F_STR:
  case F_CHOICE:
  case F_U64: /* a 64-bit unsigned value is kept as a string: JSON integers are signed */
    if (!json_is_string(v)) return "must be a string";
    s = json_string_value(v);
    break;
  case F_INT:
  case F_I64:
    if (!json_is_integer(v)) return "must be an integer";
    snprintf(text, sizeof text, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    break;
  case F_DOUBLE:
    if (!json_is_number(v)) return "must be a number";
    snprintf(text, sizeof text, "%.17g", json_number_value(v));
    break;
  }
  return parse_value(f, s, o, why, n);
}

int args_parse(cli_cmd cmd, int argc, char **argv, cli_opts *o) {
  const char *name = args_cmd_name(cmd);
  int positional = 0;
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) return -1;
    if (strncmp(a, "--", 2) || !a[2]) {
      /* the checkpoint directory of probe, generate and stream is their one positional argument */
      if ((cmd & (CMD_PROBE | CMD_GENERATE | CMD_STREAM)) && positional == 0 && a[0] != '-') {
        o->dir = a;
        positional++;
        continue;
      }
      cli_error("%s: unexpected argument '%s' (see attnsink %s --help)", name, a, name);
      return CLI_INPUT;
    }
    const char *key = a + 2, *eq = strchr(key, '=');
    size_t klen = eq ? (size_t)(eq - key) : strlen(key);
    int idx;
    const flag *f = find(key, klen, cmd, &idx);
    if (!f || !(f->cmds & cmd)) {
      cli_error("%s: unknown flag --%.*s (see attnsink %s --help)", name, (int)klen, key, name);
      return CLI_INPUT;
    }
    if (f->kind == F_SET) {
      if (eq) {
        cli_error("%s: --%s takes no value", name, f->name);
        return CLI_INPUT;
      }
      *(int *)((char *)o + f->off) = f->set_to;
    } else {
      const char *v = eq ? eq + 1 : NULL;
      if (!v) {
        if (i + 1 >= argc) {
          cli_error("%s: --%s needs a value", name, f->name);
          return CLI_INPUT;
        }
        v = argv[++i];
      }
      int r = set_value(cmd, f, v, o);
      if (r) return r;
    }
    mark(o, idx);
  }
  return 0;
}

void args_print_flags(cli_cmd cmd, const cli_opts *d, void *file) {
  FILE *out = file;
  for (int i = 0; i < N_FLAGS; i++) {
    const flag *f = &flags[i];
    if (!(f->cmds & cmd)) continue;
    const char *base = (const char *)d + f->off;
    char def[96] = "";
    switch (f->kind) {
    case F_INT:
      if (*(const int *)base) snprintf(def, sizeof def, "%d", *(const int *)base);
      break;
    case F_I64:
      if (*(const int64_t *)base) snprintf(def, sizeof def, "%lld", (long long)*(const int64_t *)base);
      break;
    case F_U64: snprintf(def, sizeof def, "%llu", (unsigned long long)*(const uint64_t *)base); break;
    case F_DOUBLE:
      /* 0 is shown only where it is a value, not where it means "none" (--minutes) */
      if (*(const double *)base != 0.0 || (f->min == 0 && !f->min_open))
        snprintf(def, sizeof def, "%g", *(const double *)base);
      break;
    case F_STR:
    case F_CHOICE:
      if (*(const char *const *)base) snprintf(def, sizeof def, "%s", *(const char *const *)base);
      break;
    case F_SET:
      if (*(const int *)base == f->set_to) snprintf(def, sizeof def, "on");
      break;
    }
    char head[48];
    snprintf(head, sizeof head, "--%s%s", f->name,
             f->kind == F_SET      ? ""
             : f->kind == F_STR    ? " S"
             : f->kind == F_CHOICE ? " K"
                                   : " N");
    fprintf(out, "  %-20s %s%s%s%s\n", head, f->help, *def ? " [" : "", def, *def ? "]" : "");
    if (f->kind == F_CHOICE) fprintf(out, "  %-20s   K: %s\n", "", f->choices);
  }
}
