#include "train.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <attnsink.h>

#include "corpus.h"
#include "distributed.h"
#include "errors.h"
#include "files.h"
#include "probe.h"
#include "rundir.h"

const cli_opts train_defaults = {
    .attn = "softmax",
    .ffn = "swiglu",
    .norm_position = "pre",
    .positions = "rope",
    .layers = 4,
    .dim = 64,
    .heads = 4,
    .kv_heads = 0, /* = heads */
    .ffn_dim = 0,  /* 2 x dim */
    .context = 128,
    .bos = 1,
    .batch = 16,
    .steps = 1000,
    .lr = 3e-3,
    .warmup = 100,
    .wd = 1.0,
    .clip = 1.0,
    .seed = 0,
    .eval_every = 250,
    .allreduce = "ordered",
    .kernel = "none",
    .schedule = "constant",
    .first_token = "text",
    .precision = "fp32",
};

void train_remove_run(const char *dir) { rundir_remove(dir, true); }

double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ------------------------------------------------------------------ signals */

static volatile sig_atomic_t g_stop;

static void on_signal(int sig) {
  (void)sig;
  g_stop = 1;
}

void train_install_signals(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  /* the first signal asks for a clean stop; a second one (default action) kills */
  sa.sa_flags = SA_RESETHAND;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
}

bool train_interrupted(void) { return g_stop != 0; }

void train_forward_stop(const pid_t *pid, int n, bool *forwarded) {
  if (*forwarded || !train_interrupted()) return;
  *forwarded = true;
  for (int i = 0; i < n; i++)
    if (pid[i] > 0) kill(pid[i], SIGTERM);
}

/* ------------------------------------------------------------------ settings */

int train_ffn_dim(const cli_opts *o) { return o->ffn_dim > 0 ? o->ffn_dim : 2 * o->dim; }

int train_kv_heads(const cli_opts *o) { return o->kv_heads > 0 ? o->kv_heads : o->heads; }

/* The value of option key in spec ("prefix=8" in "softmax,prefix=8"), or -1 if absent;
 * -2 if it is there but no integer (the spec's parser then names it). */
static long spec_option(const char *spec, const char *key) {
  size_t klen = strlen(key);
  for (const char *p = strchr(spec, ','); p; p = strchr(p + 1, ',')) {
    const char *q = p + 1;
    while (*q == ' ' || *q == '\t') q++;
    if (strncmp(q, key, klen) || q[klen] != '=') continue;
    char *end;
    errno = 0;
    long v = strtol(q + klen + 1, &end, 10);
    while (*end == ' ' || *end == '\t') end++;
    return (*end && *end != ',') || errno || end == q + klen + 1 ? -2 : v;
  }
  return -1;
}

char *train_attn_spec(const cli_opts *o) {
  if (o->prefix > 0 && spec_option(o->attn, "prefix") < 0) return xasprintf("%s,prefix=%d", o->attn, o->prefix);
  return xstrdup(o->attn);
}

int train_check_factors(cli_opts *o, window_form *f) {
  memset(f, 0, sizeof *f);
  long in_spec = spec_option(o->attn, "prefix");
  if (in_spec >= 1 && o->prefix == 0) o->prefix = (int)in_spec; /* derived: the targets follow the mask */
  else if (in_spec >= 1 && in_spec != o->prefix) {
    cli_error("--prefix %d differs from prefix=%ld in --attn %s; give one of them", o->prefix, in_spec, o->attn);
    return -1;
  }
  if (o->prefix > o->context) {
    cli_error("--prefix %d: must be at most --context %d", o->prefix, o->context);
    return -1;
  }
  /* BOS's id may be the fixed token of a run without BOS: the vocabulary then keeps it */
  int vocab = BOS_ID + 1;
  const char *ft = o->first_token;
  if (!strcmp(ft, "random")) {
    f->random_first = true;
  } else if (!strncmp(ft, "fixed:", 6)) {
    char *end;
    errno = 0;
    long id = strtol(ft + 6, &end, 10), pos = -1;
    if (end != ft + 6 && *end == '@' && end[1] >= '0' && end[1] <= '9') {
      char *e2;
      pos = strtol(end + 1, &e2, 10);
      if (*e2 || errno) pos = -1;
    }
    if (pos < 0 || ft[6] < '0' || ft[6] > '9') {
      cli_error("--first-token %s: expected fixed:ID@POS with decimal ID and POS (fixed:256@2)", ft);
      return -1;
    }
    if (id < 0 || id >= vocab) {
      cli_error("--first-token %s: ID %ld must be in 0..%d (a byte, or BOS's id %d)", ft, id, vocab - 1, BOS_ID);
      return -1;
    }
    if (pos < 1 || pos > o->context) {
      cli_error("--first-token %s: POS %ld must be in 1..%d (the context; positions count from 1)", ft, pos,
                o->context);
      return -1;
    }
    if (pos == 1 && o->bos) {
      cli_error("--first-token %s: position 1 holds BOS; use POS >= 2, or --no-bos to put ID first", ft);
      return -1;
    }
    f->fixed_id = (int)id, f->fixed_pos = (int)pos;
  } else if (strcmp(ft, "text")) {
    cli_error("--first-token %s: expected text, random or fixed:ID@POS", ft);
    return -1;
  }
  if (strcmp(o->kernel, "none") && strcmp(o->kernel, "mlp")) {
    cli_error("--kernel %s: expected none or mlp", o->kernel);
    return -1;
  }
  if (!strcmp(o->schedule, "cosine")) {
    int64_t total = o->decay_steps ? o->decay_steps : o->steps;
    if (total > INT_MAX || total <= o->warmup) {
      cli_error("--schedule cosine: it decays until --decay-steps (default --steps), which must be above "
                "--warmup %d and at most %d; got %" PRId64,
                o->warmup, INT_MAX, total);
      return -1;
    }
    o->decay_steps = total; /* resolved, so a resumed run with more --steps keeps its schedule */
  } else if (strcmp(o->schedule, "constant")) {
    cli_error("--schedule %s: expected constant or cosine", o->schedule);
    return -1;
  }
  f->seed = o->seed, f->prefix = o->prefix;
  return 0;
}

/* The vocabulary: the 256 bytes, and BOS's id when a window can hold it (BOS first, or
 * BOS's id as a fixed token of --first-token). */
static int vocab_size(const cli_opts *o) {
  const char *ft = o->first_token;
  bool fixed_bos = ft && !strncmp(ft, "fixed:", 6) && atol(ft + 6) == BOS_ID;
  return o->bos || fixed_bos ? BOS_ID + 1 : 256;
}

int train_check_settings(const cli_opts *o, corpus *c, const char *who) {
  cli_opts a = *o;
  window_form f;
  int bos = a.bos ? BOS_ID : -1;
  if (corpus_check(c, a.context, bos) || train_check_factors(&a, &f) ||
      corpus_limit_training(c, (size_t)a.train_bytes, a.context, bos))
    return -1;
  c->train_limit = 0;
  char *cfg = train_config_json(&a);
  asink_model *m = NULL;
  asink_status s = asink_model_create(&m, cfg, a.seed);
  free(cfg);
  asink_model_free(m);
  if (s) {
    cli_error("%s%s", who, asink_last_error());
    return -1;
  }
  return 0;
}

char *train_config_json(const cli_opts *o) {
  char *spec = train_attn_spec(o);
  json_t *as = json_pack("{s:s, s:s, s:s, s:s}", "attn", spec, "ffn", o->ffn, "norm_position",
                         o->norm_position, "positions", o->positions);
  free(spec);
  json_object_set_new(as, "bos", o->bos ? json_integer(BOS_ID) : json_null());
  if (o->kernel && !strcmp(o->kernel, "mlp")) json_object_set_new(as, "kernel", json_string("mlp"));
  if (o->sink_token) json_object_set_new(as, "sink_token", json_true());
  json_t *root =
      json_pack("{s:[s], s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:f, s:f, s:b, s:s, s:o}", "architectures",
                "LlamaForCausalLM", "model_type", "llama", "vocab_size", vocab_size(o),
                "hidden_size", o->dim, "intermediate_size", train_ffn_dim(o), "num_hidden_layers", o->layers,
                "num_attention_heads", o->heads, "num_key_value_heads", train_kv_heads(o),
                "max_position_embeddings", o->context, "rms_norm_eps", RMS_NORM_EPS, "rope_theta", ROPE_THETA,
                "tie_word_embeddings", 0, "hidden_act", "silu", "attnsink", as);
  if (!root) {
    cli_error("cannot build the model config");
    exit(CLI_FAIL);
  }
  char *text = json_dumps(root, JSON_INDENT(2));
  json_decref(root);
  if (!text) exit(CLI_FAIL);
  return text;
}

const char *train_model_options(const cli_opts *o) {
  return o->precision && !strcmp(o->precision, "bf16") ? "precision=bf16" : "precision=fp32";
}

json_t *train_opts_json(const cli_opts *o) {
  char seed[32];
  snprintf(seed, sizeof seed, "%" PRIu64, o->seed);
  /* seed as a string: a JSON integer is signed 64-bit in jansson */
  json_t *j = json_pack(
      "{s:s?, s:s, s:i, s:i, s:i, s:i, s:s, s:i, s:s, s:s, s:i, s:b, s:i, s:I, s:f, s:i,"
      " s:f, s:f, s:s, s:i, s:i, s:f}",
      "corpus", o->corpus, "attn", o->attn, "layers", o->layers, "dim", o->dim, "heads", o->heads, "kv_heads",
      train_kv_heads(o), "ffn", o->ffn, "ffn_dim", train_ffn_dim(o), "norm_position", o->norm_position,
      "positions", o->positions, "context", o->context, "bos", o->bos, "batch", o->batch, "steps",
      (json_int_t)o->steps, "lr", o->lr, "warmup", o->warmup, "wd", o->wd, "clip", o->clip, "seed", seed,
      "eval_every", o->eval_every, "threads", o->threads, "minutes", o->minutes);
  /* the study's factors; 0 stands for "off" / "the default" as on the command line */
  json_object_update_new(
      j, json_pack("{s:i, s:s, s:b, s:s, s:f, s:I, s:s, s:I, s:s}", "prefix", o->prefix, "kernel",
                   o->kernel ? o->kernel : "none", "sink_token", o->sink_token, "schedule",
                   o->schedule ? o->schedule : "constant", "min_lr", o->min_lr, "decay_steps",
                   (json_int_t)o->decay_steps, "first_token", o->first_token ? o->first_token : "text",
                   "train_bytes", (json_int_t)o->train_bytes, "precision",
                   o->precision ? o->precision : "fp32"));
  return j;
}

/* A JSON value for a message, cut short if long. */
static void json_brief(const json_t *v, char *buf, size_t n) {
  char *text = v ? json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
  snprintf(buf, n, "%.60s%s", text ? text : "(missing)", text && strlen(text) > 60 ? "..." : "");
  free(text);
}

/* Reads back what train_opts_json wrote, each value checked as its flag would
 * be; o's strings then point into a. -1 after an error line naming the key. */
static int opts_from_json(const json_t *a, const char *src, cli_opts *o) {
  static const char *const keys[] = {"corpus",  "attn",       "layers",      "dim",         "heads",
                                     "kv_heads", "ffn",       "ffn_dim",     "norm_position", "positions",
                                     "context", "bos",        "batch",       "steps",       "lr",
                                     "warmup",  "wd",         "clip",        "seed",        "eval_every",
                                     "threads", "minutes",    "prefix",      "kernel",      "sink_token",
                                     "schedule", "min_lr",    "decay_steps", "first_token", "train_bytes",
                                     "precision", NULL};
  if (!json_is_object(a)) {
    cli_error("%s: args must be an object of the run's settings", src);
    return -1;
  }
  for (int i = 0; keys[i]; i++) {
    const char *k = keys[i];
    json_t *v = json_object_get(a, k);
    /* the study's factors (from "prefix" on) are absent from a run saved before they existed */
    bool optional = !strcmp(k, "corpus") || !strcmp(k, "minutes") || i >= 22;
    if ((!v || json_is_null(v)) && optional) continue;
    /* 0 is how the state spells "the default" (or "off") for these */
    static const char *const zero_keys[] = {"threads", "minutes", "prefix", "decay_steps", "train_bytes"};
    size_t z = 0;
    while (z < 5 && strcmp(k, zero_keys[z])) z++;
    if (z < 5 && json_is_number(v) && json_number_value(v) == 0) {
      if (z == 0) o->threads = 0;
      else if (z == 1) o->minutes = 0;
      else if (z == 2) o->prefix = 0;
      else if (z == 3) o->decay_steps = 0;
      else o->train_bytes = 0;
      continue;
    }
    char why[200], val[80];
    const char *bad = v ? args_set_json(CMD_TRAIN, k, v, o, why, sizeof why) : "is missing";
    if (bad) {
      json_brief(v, val, sizeof val);
      cli_error("%s: args.%s=%s %s", src, k, val, bad);
      return -1;
    }
  }
  return 0;
}

const char *train_corpus_path(const cli_opts *o) {
  if (o->corpus) return o->corpus;
  const char *env = getenv("ATTNSINK_CORPUS");
  if (env && *env) return env;
  /* The build tree: BUILD/examples/attnsink/attnsink beside BUILD/corpus/kjv.txt. */
  static char path[PATH_MAX];
  char exe[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n > 0) {
    exe[n] = 0;
    char *slash = strrchr(exe, '/');
    if (slash) {
      *slash = 0;
      char guess[PATH_MAX + 32];
      snprintf(guess, sizeof guess, "%s/../../corpus/kjv.txt", exe);
      if (realpath(guess, path)) return path;
    }
  }
  cli_error(
      "no corpus: pass --corpus FILE (or set ATTNSINK_CORPUS; `make corpus` extracts the KJV "
      "Bible into build/corpus/kjv.txt)");
  return NULL;
}

/* ------------------------------------------------------------------ the run */

/* The window streams of window_form_apply's random bytes: training windows count from 0,
 * the validation and probe windows have their own fixed ranges. */
#define VAL_STREAM (1ull << 62)
#define PROBE_STREAM (1ull << 63)

/* The probe windows of the training loop and the study: the start of the validation
 * part, formed as the training windows are. Returns the count; *T their length. */
static int probe_windows(const cli_opts *o, const corpus *c, const window_form *f, int32_t **w, int *T) {
  *T = o->context < PROBE_TOKENS ? o->context : PROBE_TOKENS;
  int n = cut_byte_windows(c->data + c->n_train, c->n - c->n_train, *T, o->bos ? BOS_ID : -1, PROBE_WINDOWS, w);
  window_form_apply(f, n, *T, *w, NULL, PROBE_STREAM);
  return n;
}

int train_probe_checkpoint(const cli_opts *o, const corpus *c, const char *dir, probe_stats *ps) {
  cli_opts a = *o;
  window_form f;
  if (train_check_factors(&a, &f)) return -1;
  asink_model *m;
  if (asink_model_load_opts(&m, dir, train_model_options(o))) {
    cli_error("%s", asink_last_error());
    return -1;
  }
  int32_t *w;
  int T, n = probe_windows(&a, c, &f, &w, &T);
  asink_status s = probe_run(m, w, n, T, o->batch, PROBE_EPS, ps);
  free(w);
  asink_model_free(m);
  if (s) {
    cli_error("probe of %s: %s", dir, asink_last_error());
    return -1;
  }
  json_t *j = probe_stats_json(ps);
  char *path = path_join(dir, "probe.json");
  int rc = write_json_atomic(path, j, JSON_INDENT(1) | JSON_REAL_PRECISION(7));
  free(path);
  json_decref(j);
  if (rc) probe_stats_free(ps);
  return rc;
}

typedef struct {
  cli_opts o;
  const char *label;
  corpus c;
  asink_model *m;
  asink_adamw *opt;
  int bos, T, B;
  int32_t *tok, *tgt;
  int32_t *val_tok, *val_tgt, *probe;
  int n_val, n_probe, probe_T;
  cli_rng rng;
  window_form form;
  int64_t step, tokens, last_eval, start_step;
  double seconds_before, t0, loss_sum, limit;
  int64_t loss_count;
  char *ckpt;       /* the directory of the run's checkpoint (NULL: none yet) */
  int64_t ckpt_step; /* its step */
  char *state_src;  /* the train_state.json read, for messages */
  char *metrics;    /* metrics.jsonl as the next checkpoint holds it */
  size_t metrics_n;
  bool dir_created, started, saved, tty; /* started: the input passed every check */
  double last_line;
  double last_tl, last_vl, last_s1; /* the latest evaluation, also after a resumption */
} run;

static const char *prefix(const run *r) { return r->label ? r->label : ""; }

static double elapsed(const run *r) { return now_seconds() - r->t0; }

static void fmt_duration(char *buf, size_t n, double s) {
  if (!isfinite(s) || s < 0) snprintf(buf, n, "?");
  else if (s < 60) snprintf(buf, n, "%.0fs", s);
  else if (s < 3600) snprintf(buf, n, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
  else snprintf(buf, n, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
}

/* "step 120/1000  loss 2.3456  4512 tok/s  ETA 3m12s" into buf. */
static void status_text(const run *r, double loss, char *buf, size_t n) {
  double t = elapsed(r), done = (double)(r->step - r->start_step);
  double per_step = done > 0 ? t / done : NAN;
  double eta = (double)(r->o.steps - r->step) * per_step;
  if (r->limit > 0 && r->limit - t < eta) eta = r->limit - t;
  double tps = t > 0 ? done * r->B * r->T / t : 0;
  char eta_s[32], total[32] = "";
  fmt_duration(eta_s, sizeof eta_s, eta);
  /* a time-limited run has no meaningful step target to show */
  if (!(r->limit > 0 && r->o.steps >= INT64_MAX / 4)) snprintf(total, sizeof total, "/%" PRId64, r->o.steps);
  snprintf(buf, n, "step %" PRId64 "%s  loss %.4f  %.0f tok/s  ETA %s", r->step, total, loss, tps, eta_s);
}

/* On a terminal one line rewritten in place; otherwise a plain line now and then,
 * so a log file stays short. */
static void progress(run *r, double loss) {
  char buf[160];
  if (r->tty) {
    status_text(r, loss, buf, sizeof buf);
    printf("\r%s%s\033[K", prefix(r), buf);
    fflush(stdout);
  } else if (now_seconds() - r->last_line >= 30) {
    status_text(r, loss, buf, sizeof buf);
    printf("%s%s\n", prefix(r), buf);
    fflush(stdout);
    r->last_line = now_seconds();
  }
}

static void line(run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void line(run *r, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  if (r->tty) fputs("\r\033[K", stdout);
  fputs(prefix(r), stdout);
  vprintf(fmt, ap);
  fputc('\n', stdout);
  fflush(stdout);
  va_end(ap);
  r->last_line = now_seconds();
}

static int save_state(run *r, const char *path) {
  json_t *rng = json_array();
  for (int i = 0; i < 4; i++) {
    char h[24];
    snprintf(h, sizeof h, "%016" PRIx64, r->rng.s[i]);
    json_array_append_new(rng, json_string(h));
  }
  char hash[24];
  snprintf(hash, sizeof hash, "%016" PRIx64, r->c.hash);
  json_t *st =
      json_pack("{s:s, s:i, s:I, s:I, s:f, s:o, s:f, s:I, s:I, s:{s:o, s:o, s:o}, s:{s:s, s:I, s:s}, s:o}",
                "format", "attnsink-train-state", "version", 1, "step", (json_int_t)r->step, "tokens",
                (json_int_t)r->tokens, "seconds", r->seconds_before + elapsed(r), "rng", rng,
                "train_loss_sum", r->loss_sum, "train_loss_count", (json_int_t)r->loss_count,
                "last_eval_step", (json_int_t)r->last_eval, "last_eval", "train_loss", json_num(r->last_tl),
                "val_loss", json_num(r->last_vl), "sink1", json_num(r->last_s1), "corpus_check", "path",
                r->c.path, "bytes", (json_int_t)r->c.n, "fnv1a64", hash, "args", train_opts_json(&r->o));
  if (!st) {
    cli_error("cannot build train_state.json");
    return -1;
  }
  /* doubles at full precision, so a resumed run's loss average is bit-identical */
  int rc = write_json_new(path, st, JSON_INDENT(2) | JSON_REAL_PRECISION(17));
  json_decref(st);
  return rc;
}

/* Saves into a new step directory and switches the run to it (rundir.h): a kill
 * at any instant leaves either the previous checkpoint or this one, whole. */
static int checkpoint(run *r) {
  if (!dist_root()) return r->saved = true, 0; /* rank 0 writes for the job */
  dist_checkpoint_begin();
  char *stage = rundir_stage(r->o.out, r->step);
  if (!stage) return -1;
  char *state = path_join(stage, "train_state.json"), *metrics = path_join(stage, "metrics.jsonl");
  int rc = -1;
  if (asink_model_save(r->m, stage) || asink_adamw_save(r->opt, stage))
    cli_error("checkpoint %s: %s", stage, asink_last_error());
  else if (!save_state(r, state) && !write_file_new(metrics, r->metrics, r->metrics_n))
    rc = 0;
  free(state), free(metrics);
  if (rc) {
    rundir_remove_step(stage);
    free(stage);
    return -1;
  }
  bool switched;
  rc = rundir_commit(r->o.out, stage, r->ckpt, &switched);
  if (switched) {
    free(r->ckpt);
    r->ckpt = stage, r->ckpt_step = r->step, r->saved = true;
    dist_checkpoint_end(r->o.out, r->step);
  } else {
    free(stage);
  }
  return rc;
}

/* val_loss over the fixed validation windows, sink1 on the probe windows. */
static int evaluate(run *r, double *val_loss, double *sink1) {
  double sum = 0;
  for (int i = 0; i < r->n_val; i += r->B) {
    int nb = r->n_val - i < r->B ? r->n_val - i : r->B;
    float l;
    if (asink_model_eval_loss(r->m, nb, r->T, r->val_tok + (size_t)i * r->T, r->val_tgt + (size_t)i * r->T,
                              &l)) {
      cli_error("evaluation: %s", asink_last_error());
      return -1;
    }
    sum += (double)l * nb;
  }
  *val_loss = sum / r->n_val;
  probe_stats ps;
  if (probe_run(r->m, r->probe, r->n_probe, r->probe_T, r->B, PROBE_EPS, &ps)) {
    cli_error("probe: %s", asink_last_error());
    return -1;
  }
  *sink1 = probe_sink1(&ps);
  probe_stats_free(&ps);
  return 0;
}

static int eval_and_save(run *r) {
  if (!dist_root()) { /* rank 0 evaluates for the job */
    r->last_eval = r->step;
    r->loss_sum = 0, r->loss_count = 0;
    return checkpoint(r);
  }
  double vl, s1;
  if (evaluate(r, &vl, &s1)) return -1;
  double tl = r->loss_count ? r->loss_sum / (double)r->loss_count : NAN;
  double secs = r->seconds_before + elapsed(r);
  json_t *j = json_pack("{s:I, s:I, s:o, s:o, s:o, s:o, s:o}", "step", (json_int_t)r->step, "tokens",
                        (json_int_t)r->tokens, "train_loss", json_num(tl), "val_loss", json_num(vl), "sink1",
                        json_num(s1), "seconds", json_num(round(secs * 1000) / 1000), "lr",
                        json_num(asink_adamw_lr(r->opt)));
  char *text = j ? json_dumps(j, JSON_INDENT(0) | JSON_REAL_PRECISION(7)) : NULL;
  json_decref(j);
  if (!text) {
    cli_error("cannot format a metrics line");
    return -1;
  }
  r->last_eval = r->step;
  r->last_tl = tl, r->last_vl = vl, r->last_s1 = s1;
  r->loss_sum = 0, r->loss_count = 0;
  /* the line goes out with its checkpoint, in the same step directory */
  size_t len = strlen(text);
  r->metrics = realloc(r->metrics, r->metrics_n + len + 2);
  if (!r->metrics) {
    cli_error("out of memory");
    exit(CLI_FAIL);
  }
  memcpy(r->metrics + r->metrics_n, text, len);
  r->metrics_n += len;
  r->metrics[r->metrics_n++] = '\n';
  r->metrics[r->metrics_n] = 0;
  free(text);
  if (checkpoint(r)) return -1;
  char buf[160];
  status_text(r, tl, buf, sizeof buf);
  line(r, "%s  val_loss %.4f  sink1 %.2f%%  %.0fs", buf, vl, s1, secs);
  return 0;
}

/* Reads the checkpoint's metrics.jsonl, keeping only the lines a checkpoint at
 * `step` stands behind (a flat run appended lines after its checkpoint), so that a
 * resumed run never shows a step twice. */
static int load_metrics(run *r) {
  char *path = path_join(r->ckpt, "metrics.jsonl");
  unsigned char *data;
  size_t n;
  int rc = 0;
  if (read_whole_file(path, &data, &n)) {
    if (errno == ENOENT) {
      r->metrics = xcalloc(1, 1);
    } else {
      cli_error("%s: cannot read: %s", path, read_error());
      rc = -1;
    }
    free(path);
    return rc;
  }
  free(path);
  char *keep = xmalloc(n + 1), *p = (char *)data;
  size_t k = 0;
  while (*p) {
    char *nl = strchr(p, '\n');
    size_t len = nl ? (size_t)(nl - p) : strlen(p);
    json_t *j = json_loadb(p, len, 0, NULL);
    json_t *s = j ? json_object_get(j, "step") : NULL;
    if (nl && s && json_is_integer(s) && json_integer_value(s) <= r->step) {
      memcpy(keep + k, p, len + 1);
      k += len + 1;
    }
    json_decref(j);
    p += len + (nl ? 1 : 0);
  }
  keep[k] = 0;
  free(data);
  r->metrics = keep, r->metrics_n = k;
  return 0;
}

static uint64_t parse_hex64(const char *s, bool *ok) {
  char *end;
  errno = 0;
  uint64_t v = s ? strtoull(s, &end, 16) : 0;
  *ok = s && *s && !*end && !errno;
  return v;
}

/* Flags a resumed run may change: they do not alter what the model computes. */
static bool changeable(const char *flag) {
  static const char *const ok[] = {"steps",  "threads", "minutes", "eval-every",
                                   "corpus", "out",     "resume",  NULL};
  for (int i = 0; ok[i]; i++)
    if (!strcmp(flag, ok[i])) return true;
  return false;
}

/* The largest train_state.json read: a few kB is normal. */
#define STATE_MAX (1u << 20)

/* Finds the run's checkpoint, reads its train_state.json into r and merges the
 * command line's settings. */
static int load_state(run *r, json_t **state_out) {
  if (!is_dir(r->o.out)) {
    cli_error("--resume: %s is not a directory", r->o.out);
    return -1;
  }
  bool partial;
  rundir_kind kind = rundir_find(r->o.out, &r->ckpt, &partial);
  if (kind == RUNDIR_FOREIGN) {
    cli_error("--resume: %s/current is not a link to a checkpoint; %s is not a run directory", r->o.out,
              r->o.out);
    return -1;
  }
  if (kind == RUNDIR_NONE) {
    if (partial)
      cli_error("--resume: %s holds no complete checkpoint (its first save was interrupted); start it "
                "afresh without --resume",
                r->o.out);
    else cli_error("--resume: %s holds no run (no train_state.json)", r->o.out);
    return -1;
  }
  r->state_src = path_join(r->ckpt, "train_state.json");
  unsigned char *text;
  size_t n;
  if (read_file_bounded(r->state_src, STATE_MAX, &text, &n)) {
    cli_error("--resume: %s: cannot read: %s", r->state_src, read_error());
    return -1;
  }
  json_error_t e;
  json_t *st = json_loadb((const char *)text, n, JSON_REJECT_DUPLICATES, &e);
  free(text);
  if (!st || !json_is_object(st)) {
    if (st) cli_error("%s: not a JSON object", r->state_src);
    else cli_error("%s: line %d: %s", r->state_src, e.line, e.text);
    json_decref(st);
    return -1;
  }
  cli_opts saved = r->o;
  if (opts_from_json(json_object_get(st, "args"), r->state_src, &saved)) goto bad;
  /* a flag given now must agree with the run unless it is one of the changeable ones */
  static const char *const fixed[][2] = {{"attn", "attn"},
                                         {"layers", "layers"},
                                         {"dim", "dim"},
                                         {"heads", "heads"},
                                         {"kv-heads", "kv_heads"},
                                         {"ffn", "ffn"},
                                         {"ffn-dim", "ffn_dim"},
                                         {"norm-position", "norm_position"},
                                         {"positions", "positions"},
                                         {"context", "context"},
                                         {"bos", "bos"},
                                         {"no-bos", "bos"},
                                         {"batch", "batch"},
                                         {"lr", "lr"},
                                         {"warmup", "warmup"},
                                         {"wd", "wd"},
                                         {"clip", "clip"},
                                         {"seed", "seed"},
                                         {"prefix", "prefix"},
                                         {"kernel", "kernel"},
                                         {"sink-token", "sink_token"},
                                         {"schedule", "schedule"},
                                         {"min-lr", "min_lr"},
                                         {"decay-steps", "decay_steps"},
                                         {"first-token", "first_token"},
                                         {"train-bytes", "train_bytes"},
                                         {"precision", "precision"}};
  json_t *now = train_opts_json(&r->o), *then = train_opts_json(&saved);
  for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
    if (changeable(fixed[i][0]) || !args_flag_given(&r->o, fixed[i][0])) continue;
    json_t *a = json_object_get(now, fixed[i][1]), *b = json_object_get(then, fixed[i][1]);
    if (!json_equal(a, b)) {
      char *bs = json_dumps(b, JSON_ENCODE_ANY | JSON_REAL_PRECISION(15)); /* 3e-3, not 0.0030000000000000001 */
      cli_error("--resume: --%s differs from the run in %s (%s); a resumed run keeps its settings",
                fixed[i][0], r->o.out, bs ? bs : "?");
      free(bs);
      json_decref(now), json_decref(then);
      goto bad;
    }
  }
  json_decref(now), json_decref(then);
  if (args_flag_given(&r->o, "steps")) saved.steps = r->o.steps;
  if (args_flag_given(&r->o, "eval-every")) saved.eval_every = r->o.eval_every;
  if (args_flag_given(&r->o, "threads")) saved.threads = r->o.threads;
  if (args_flag_given(&r->o, "corpus")) saved.corpus = r->o.corpus;
  saved.minutes = r->o.minutes; /* a budget belongs to one invocation */
  saved.out = r->o.out, saved.resume = 1, saved.given = r->o.given;
  r->o = saved;
  *state_out = st;
  return 0;
bad:
  json_decref(st);
  return -1;
}

/* st's integer under key, in [min, max]. -1 after an error line naming it. */
static int state_int(const run *r, const json_t *st, const char *key, int64_t min, int64_t max, int64_t *out) {
  json_t *v = json_object_get(st, key);
  if (json_is_integer(v) && json_integer_value(v) >= min && json_integer_value(v) <= max) {
    *out = json_integer_value(v);
    return 0;
  }
  char val[80];
  json_brief(v, val, sizeof val);
  cli_error("%s: %s=%s must be an integer in %" PRId64 "..%" PRId64, r->state_src, key, val, min, max);
  return -1;
}

/* st's finite number under key, at least 0 when nonneg. */
static int state_real(const run *r, const json_t *st, const char *key, bool nonneg, double *out) {
  json_t *v = json_object_get(st, key);
  if (json_is_number(v) && isfinite(json_number_value(v)) && (!nonneg || json_number_value(v) >= 0)) {
    *out = json_number_value(v);
    return 0;
  }
  char val[80];
  json_brief(v, val, sizeof val);
  cli_error("%s: %s=%s must be a finite number%s", r->state_src, key, val, nonneg ? " >= 0" : "");
  return -1;
}

/* null (how json_num writes NaN) reads back as NaN */
static double num_or_nan(const json_t *v) { return json_is_number(v) ? json_number_value(v) : NAN; }

/* The counters of train_state.json, each checked: a state from outside (edited,
 * damaged) fails here with the key named, never later as a crash or a loop. */
static int restore_counters(run *r, json_t *st) {
  int64_t step, tokens, lcount, last_eval;
  double secs, lsum;
  if (state_int(r, st, "step", 0, INT64_MAX / 2, &step) || state_int(r, st, "tokens", 0, INT64_MAX, &tokens) ||
      state_real(r, st, "seconds", true, &secs) || state_real(r, st, "train_loss_sum", false, &lsum) ||
      state_int(r, st, "train_loss_count", 0, step, &lcount) ||
      state_int(r, st, "last_eval_step", 0, step, &last_eval))
    return -1;
  json_t *rng = json_object_get(st, "rng");
  bool ok = json_is_array(rng) && json_array_size(rng) == 4;
  uint64_t any = 0;
  for (int i = 0; ok && i < 4; i++) {
    r->rng.s[i] = parse_hex64(json_string_value(json_array_get(rng, i)), &ok);
    any |= r->rng.s[i];
  }
  if (!ok) {
    cli_error("%s: rng must be 4 hexadecimal words", r->state_src);
    return -1;
  }
  if (!any) {
    /* xoshiro's one forbidden state: it would draw the same window forever */
    cli_error("%s: rng is all zeros, which is no generator state", r->state_src);
    return -1;
  }
  const char *hash = json_string_value(json_object_get(json_object_get(st, "corpus_check"), "fnv1a64"));
  uint64_t h = parse_hex64(hash, &ok);
  if (!ok) {
    cli_error("%s: corpus_check.fnv1a64 must be a hexadecimal word", r->state_src);
    return -1;
  }
  if (h != r->c.hash) {
    cli_error("--resume: corpus %s is not the text the run in %s was trained on", r->c.path, r->o.out);
    return -1;
  }
  if (asink_adamw_steps(r->opt) != step) {
    cli_error("--resume: %s is inconsistent: optimizer at step %" PRId64
              ", train_state.json at step %" PRId64,
              r->ckpt, asink_adamw_steps(r->opt), step);
    return -1;
  }
  r->step = step, r->tokens = tokens, r->seconds_before = secs, r->loss_sum = lsum;
  r->loss_count = lcount, r->last_eval = last_eval, r->ckpt_step = step;
  json_t *le = json_object_get(st, "last_eval");
  r->last_tl = num_or_nan(json_object_get(le, "train_loss"));
  r->last_vl = num_or_nan(json_object_get(le, "val_loss"));
  r->last_s1 = num_or_nan(json_object_get(le, "sink1"));
  return 0;
}

static void free_run(run *r) {
  asink_adamw_free(r->opt);
  asink_model_free(r->m);
  corpus_free(&r->c);
  free(r->tok), free(r->tgt), free(r->val_tok), free(r->val_tgt), free(r->probe);
  free(r->ckpt), free(r->state_src), free(r->metrics);
}

/* Everything that can be wrong with the input is found here, before anything is
 * written. */
static int prepare(run *r, json_t **state) {
  cli_opts *o = &r->o;
  if (!o->out) {
    cli_error("train: --out DIR is required");
    return -1;
  }
  if (o->resume && load_state(r, state)) return -1;
  const char *cpath = train_corpus_path(o);
  if (!cpath || corpus_load(&r->c, cpath)) return -1;
  o->corpus = cpath; /* the state names the text actually used */
  r->bos = o->bos ? BOS_ID : -1;
  r->T = o->context, r->B = o->batch;
  if (corpus_check(&r->c, r->T, r->bos) || train_check_factors(o, &r->form) ||
      corpus_limit_training(&r->c, (size_t)o->train_bytes, r->T, r->bos))
    return -1;
  if (o->threads && asink_set_num_threads(o->threads)) {
    cli_error("--threads: %s", asink_last_error());
    return -1;
  }
  if (o->resume) {
    if (asink_model_load_opts(&r->m, r->ckpt, train_model_options(o))) {
      cli_error("--resume: %s", asink_last_error());
      return -1;
    }
  } else {
    /* the op alone first, so a bad spec is reported as the spec's own message */
    asink_attn *op = NULL;
    int kv = train_kv_heads(o), hd = o->heads > 0 && o->dim % o->heads == 0 ? o->dim / o->heads : 0;
    if (hd > 0 && o->heads % kv == 0) {
      char *spec = train_attn_spec(o);
      asink_status s = asink_attn_create(&op, spec, o->heads, kv, hd);
      free(spec);
      if (s == ASINK_ERR_SPEC) {
        cli_error("--attn: %s", asink_last_error());
        return -1;
      }
      if (s == ASINK_OK) asink_attn_free(op);
    }
    char *cfg = train_config_json(o);
    asink_status s = asink_model_create_opts(&r->m, cfg, o->seed, train_model_options(o));
    free(cfg);
    if (s) {
      cli_error("%s", asink_last_error());
      return -1;
    }
  }
  if (asink_adamw_create(&r->opt, r->m, (float)o->lr, ADAM_BETA1, ADAM_BETA2, ADAM_EPS, (float)o->wd,
                         (float)o->clip) ||
      asink_adamw_schedule(r->opt, o->schedule, o->warmup, (int)o->decay_steps, (float)o->min_lr)) {
    cli_error("optimizer: %s", asink_last_error());
    return -1;
  }
  if (o->resume) {
    if (asink_adamw_load(r->opt, r->ckpt)) {
      cli_error("--resume: %s", asink_last_error());
      return -1;
    }
    if (restore_counters(r, *state)) return -1;
  } else {
    rng_seed(&r->rng, o->seed);
    /* what a killed first save left is no run: it is cleaned and started afresh */
    char *ckpt;
    bool partial;
    rundir_kind kind = rundir_find(o->out, &ckpt, &partial);
    if (kind == RUNDIR_FOREIGN) {
      cli_error("%s/current exists and is not a run's link to its checkpoint; choose another --out", o->out);
      return -1;
    }
    if (kind != RUNDIR_NONE) {
      cli_error("%s already holds a run; continue it with --resume or choose another --out", o->out);
      free(ckpt);
      return -1;
    }
  }
  return 0;
}

/* The test hook ATTNSINK_TEST_BATCHES=FILE: appends one JSON line of n windows (tokens
 * and targets) to FILE, so a test can see what the model is trained and evaluated on. */
static void dump_windows(const char *file, const char *what, int64_t step, int n, int T, const int32_t *tok,
                         const int32_t *tgt) {
  FILE *f = fopen(file, "a");
  if (!f) return;
  fprintf(f, "{\"what\": \"%s\", \"step\": %" PRId64 ", \"tokens\": [", what, step);
  for (int pass = 0; pass < 2; pass++) {
    const int32_t *v = pass ? tgt : tok;
    for (int i = 0; i < n; i++) {
      fputs(i ? ", [" : "[", f);
      for (int t = 0; t < T; t++) fprintf(f, t ? ", %d" : "%d", v[(size_t)i * T + t]);
      fputc(']', f);
    }
    fputs(pass ? "]}\n" : "], \"targets\": [", f);
  }
  fclose(f);
}

static void poison_first_weight(asink_model *m) {
  const char *name;
  int ndim;
  int64_t shape[4];
  float *w;
  size_t n;
  if (!asink_model_param_info(m, 0, &name, &ndim, shape) && !asink_model_param(m, name, &w, &n))
    for (size_t i = 0; i < n; i++) w[i] = NAN;
}

/* A failed or diverged step ends the run without saving: the weights may be
 * damaged, and the last checkpoint is the last good state. */
static void step_failed(run *r, const char *why) {
  line(r, "step %" PRId64 " failed", r->step + 1);
  if (r->ckpt)
    cli_error("training step %" PRId64 ": %s; stopped without saving: the last good checkpoint, step %" PRId64
              ", stays in %s",
              r->step + 1, why, r->ckpt_step, r->o.out);
  else
    cli_error("training step %" PRId64 ": %s; stopped before the first checkpoint, so nothing was kept",
              r->step + 1, why);
}

int train_run(const cli_opts *in, const char *label, train_result *res) {
  run r;
  memset(&r, 0, sizeof r);
  memset(res, 0, sizeof *res);
  r.o = *in;
  r.label = label;
  r.tty = isatty(STDOUT_FILENO);
  json_t *state = NULL;
  int rc = CLI_INPUT;
  dist_hold_errors();
  int bad = prepare(&r, &state);
  /* an --out that cannot be a directory is bad input too */
  if (!bad && !r.o.resume && dist_root() && make_dir(r.o.out, &r.dir_created)) bad = -1;
  /* under mpirun: every rank started, with the same settings */
  json_t *settings = bad ? NULL : train_opts_json(&r.o);
  bad = dist_agree_start(bad, &r.o, settings, r.c.hash, r.m);
  json_decref(settings);
  if (bad) {
    if (r.dir_created) rundir_remove(r.o.out, true);
    goto done;
  }
  if (r.o.resume) dist_checkpoint_end(r.o.out, r.step); /* the checkpoint a stopped job falls back on */
  r.started = true;
  rc = CLI_FAIL;
  /* what a killed save left (step directories current does not name, temporaries) */
  if (dist_root() && rundir_clean(r.o.out, r.ckpt)) goto done;
  if (r.o.resume ? load_metrics(&r) : (r.metrics = xcalloc(1, 1), 0)) goto done;
  const cli_opts *o = &r.o;
  size_t bt = (size_t)r.B * r.T;
  r.tok = xmalloc(sizeof(int32_t) * bt);
  r.tgt = xmalloc(sizeof(int32_t) * bt);
  r.n_val = corpus_val_windows(&r.c, r.T, r.bos, EVAL_WINDOWS, &r.val_tok, &r.val_tgt);
  window_form_apply(&r.form, r.n_val, r.T, r.val_tok, r.val_tgt, VAL_STREAM);
  r.n_probe = probe_windows(o, &r.c, &r.form, &r.probe, &r.probe_T);
  r.limit = o->minutes > 0 ? o->minutes * 60 : 0;
  r.start_step = r.step;
  r.t0 = now_seconds();
  r.last_line = r.t0;
  /* the test suite's stand-in for a Ctrl-C at a chosen step */
  const char *ia = getenv("ASINK_TEST_INTERRUPT_AT");
  long long interrupt_at = ia ? atoll(ia) : -1;
  /* and for a diverging run: NaN written into the first weight after step K */
  const char *na = getenv("ATTNSINK_TEST_NAN_AT");
  long long nan_at = na ? atoll(na) : -1;
  const char *dump = getenv("ATTNSINK_TEST_BATCHES");
  if (dump) dump_windows(dump, "validation", r.step, r.n_val, r.T, r.val_tok, r.val_tgt);
  if (r.o.resume && r.step >= o->steps)
    line(&r, "%s is already at step %" PRId64 " of %" PRId64 "; nothing to do (raise --steps to go on)",
         o->out, r.step, o->steps);
  else if (r.o.resume) line(&r, "resuming %s at step %" PRId64, o->out, r.step);

  /* under mpirun this rank trains windows [b0, b0 + nb) of every global batch */
  int b0, nb;
  dist_share(r.B, &b0, &nb);
  while (r.step < o->steps) {
    double t = elapsed(&r), per = r.step > r.start_step ? t / (double)(r.step - r.start_step) : 0;
    /* every rank stops at the same step: the union of their reasons */
    int stop = dist_stop((g_stop ? DIST_STOP_SIGNAL : 0) |
                         (r.limit > 0 && t + per > r.limit ? DIST_STOP_TIME : 0));
    if (stop & DIST_STOP_SIGNAL) g_stop = 1;
    if (stop) break;
    corpus_batch(&r.c, &r.rng, r.B, r.T, r.bos, r.tok, r.tgt);
    window_form_apply(&r.form, r.B, r.T, r.tok, r.tgt, (uint64_t)r.step * (uint64_t)r.B);
    if (dump) dump_windows(dump, "training", r.step, r.B, r.T, r.tok, r.tgt);
    float loss;
    size_t at = (size_t)b0 * r.T;
    if (asink_model_loss(r.m, nb, r.T, r.tok + at, r.tgt + at, &loss) || asink_model_backward(r.m)) {
      step_failed(&r, asink_last_error());
      goto done;
    }
    /* under mpirun: the gradients and the loss summed over the ranks, so every rank
     * sees the same loss below and they stop together */
    if (dist_reduce(r.m, o->allreduce, r.B, r.T, r.tgt, &loss)) goto done;
    if (!isfinite(loss)) {
      char why[64];
      snprintf(why, sizeof why, "the loss is %s: training diverged", isnan(loss) ? "NaN" : "infinite");
      step_failed(&r, why);
      goto done;
    }
    if (asink_adamw_step(r.opt, NULL)) {
      step_failed(&r, asink_last_error());
      goto done;
    }
    r.step++;
    r.tokens += (int64_t)bt;
    r.loss_sum += loss;
    r.loss_count++;
    if (r.step == interrupt_at) raise(SIGINT);
    if (r.step == nan_at) poison_first_weight(r.m);
    progress(&r, loss);
    if ((r.step % o->eval_every == 0 || r.step == o->steps) && eval_and_save(&r)) goto done;
  }
  if (g_stop) {
    if ((r.step != r.last_eval || (!r.saved && !r.o.resume)) && checkpoint(&r)) goto done;
    line(&r,
         "interrupted at step %" PRId64 ": checkpoint saved; continue with: attnsink train --out %s --resume",
         r.step, o->out);
    res->interrupted = true;
  } else if (r.step != r.last_eval || (!r.saved && !r.o.resume)) {
    /* a time limit ended the run between evaluations (or it had nothing left to do) */
    if (r.step == r.last_eval) {
      if (checkpoint(&r)) goto done;
    } else if (eval_and_save(&r)) {
      goto done;
    }
  }
  res->steps = r.step, res->tokens = r.tokens, res->seconds = r.seconds_before + elapsed(&r);
  res->train_loss = r.last_tl, res->val_loss = r.last_vl, res->sink1 = r.last_s1;
  rc = CLI_OK;
done:
  json_decref(state);
  /* a fresh run that failed before its first whole checkpoint takes back what it
   * wrote (a partial save), and the directory if it made it */
  if (rc != CLI_OK && r.started && !r.o.resume && !r.saved && dist_root()) rundir_remove(r.o.out, r.dir_created);
  free_run(&r);
  return rc;
}

int cmd_train(int argc, char **argv) {
  cli_opts o = train_defaults;
  int rc = args_parse(CMD_TRAIN, argc, argv, &o);
  if (rc < 0) {
    cli_usage(CMD_TRAIN, &train_defaults);
    return CLI_OK;
  }
  if (rc) return rc;
  train_install_signals();
  if (dist_begin()) return CLI_INPUT;
  train_result res;
  rc = train_run(&o, NULL, &res);
  if (rc == CLI_OK && !res.interrupted)
    printf("done: %" PRId64 " steps, %" PRId64 " tokens, val_loss %.4f, sink1 %.2f%%, checkpoint in %s\n",
           res.steps, res.tokens, res.val_loss, res.sink1, o.out);
  return dist_end(rc);
}
