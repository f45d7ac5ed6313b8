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
};

/* What a run directory holds; the only names cleanup ever removes. */
static const char *const run_files[] = {"config.json",      "model.safetensors", "optimizer.safetensors",
                                        "train_state.json", "metrics.jsonl",     NULL};

void train_remove_run(const char *dir) { remove_files_in(dir, run_files, true); }

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

/* ------------------------------------------------------------------ settings */

int train_ffn_dim(const cli_opts *o) { return o->ffn_dim > 0 ? o->ffn_dim : 2 * o->dim; }

int train_kv_heads(const cli_opts *o) { return o->kv_heads > 0 ? o->kv_heads : o->heads; }

char *train_config_json(const cli_opts *o) {
  json_t *as = json_pack("{s:s, s:s, s:s, s:s}", "attn", o->attn, "ffn", o->ffn, "norm_position",
                         o->norm_position, "positions", o->positions);
  json_object_set_new(as, "bos", o->bos ? json_integer(BOS_ID) : json_null());
  json_t *root =
      json_pack("{s:[s], s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:f, s:f, s:b, s:s, s:o}", "architectures",
                "LlamaForCausalLM", "model_type", "llama", "vocab_size", o->bos ? BOS_ID + 1 : 256,
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

json_t *train_opts_json(const cli_opts *o) {
  char seed[32];
  snprintf(seed, sizeof seed, "%" PRIu64, o->seed);
  /* seed as a string: a JSON integer is signed 64-bit in jansson */
  return json_pack(
      "{s:s?, s:s, s:i, s:i, s:i, s:i, s:s, s:i, s:s, s:s, s:i, s:b, s:i, s:I, s:f, s:i,"
      " s:f, s:f, s:s, s:i, s:i, s:f}",
      "corpus", o->corpus, "attn", o->attn, "layers", o->layers, "dim", o->dim, "heads", o->heads, "kv_heads",
      train_kv_heads(o), "ffn", o->ffn, "ffn_dim", train_ffn_dim(o), "norm_position", o->norm_position,
      "positions", o->positions, "context", o->context, "bos", o->bos, "batch", o->batch, "steps",
      (json_int_t)o->steps, "lr", o->lr, "warmup", o->warmup, "wd", o->wd, "clip", o->clip, "seed", seed,
      "eval_every", o->eval_every, "threads", o->threads, "minutes", o->minutes);
}

/* Reads back what train_opts_json wrote; o's strings then point into a. -1 after
 * an error line. */
static int opts_from_json(const json_t *a, const char *src, cli_opts *o) {
  const char *corpus = NULL, *attn, *ffn, *normpos, *positions, *seed;
  int bos;
  json_int_t steps;
  json_error_t e;
  if (json_unpack_ex((json_t *)a, &e, 0,
                     "{s?s, s:s, s:i, s:i, s:i, s:i, s:s, s:i, s:s, s:s, s:i, s:b, s:i, s:I, s:F, s:i,"
                     " s:F, s:F, s:s, s:i, s:i, s?F}",
                     "corpus", &corpus, "attn", &attn, "layers", &o->layers, "dim", &o->dim, "heads",
                     &o->heads, "kv_heads", &o->kv_heads, "ffn", &ffn, "ffn_dim", &o->ffn_dim,
                     "norm_position", &normpos, "positions", &positions, "context", &o->context, "bos", &bos,
                     "batch", &o->batch, "steps", &steps, "lr", &o->lr, "warmup", &o->warmup, "wd", &o->wd,
                     "clip", &o->clip, "seed", &seed, "eval_every", &o->eval_every, "threads", &o->threads,
                     "minutes", &o->minutes) != 0) {
    cli_error("%s: args: %s", src, e.text);
    return -1;
  }
  char *end;
  errno = 0;
  o->seed = strtoull(seed, &end, 10);
  if (*end || errno) {
    cli_error("%s: args.seed '%s' is not a 64-bit unsigned integer", src, seed);
    return -1;
  }
  /* the strings stay owned by the JSON document, which lives as long as the run */
  o->corpus = corpus, o->attn = attn, o->ffn = ffn, o->norm_position = normpos;
  o->positions = positions, o->bos = bos, o->steps = steps;
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
  int64_t step, tokens, last_eval, start_step;
  double seconds_before, t0, loss_sum, limit;
  int64_t loss_count;
  char *metrics_path, *state_path;
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

static int save_state(run *r) {
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
  int rc = write_json_atomic(r->state_path, st, JSON_INDENT(2) | JSON_REAL_PRECISION(17));
  json_decref(st);
  return rc;
}

static int checkpoint(run *r) {
  if (!dist_root()) return r->saved = true, 0; /* rank 0 writes for the job */
  dist_checkpoint_begin();
  if (asink_model_save(r->m, r->o.out) || asink_adamw_save(r->opt, r->o.out)) {
    cli_error("checkpoint %s: %s", r->o.out, asink_last_error());
    return -1;
  }
  if (save_state(r)) return -1;
  r->saved = true;
  dist_checkpoint_end(r->o.out, r->step);
  return 0;
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
  json_t *j = json_pack("{s:I, s:I, s:o, s:o, s:o, s:o}", "step", (json_int_t)r->step, "tokens",
                        (json_int_t)r->tokens, "train_loss", json_num(tl), "val_loss", json_num(vl), "sink1",
                        json_num(s1), "seconds", json_num(round(secs * 1000) / 1000));
  char *text = j ? json_dumps(j, JSON_INDENT(0) | JSON_REAL_PRECISION(7)) : NULL;
  json_decref(j);
  if (!text) {
    cli_error("cannot format a metrics line");
    return -1;
  }
  r->last_eval = r->step;
  r->last_tl = tl, r->last_vl = vl, r->last_s1 = s1;
  r->loss_sum = 0, r->loss_count = 0;
  /* checkpoint first: a line in metrics.jsonl always has its checkpoint behind it */
  int rc = checkpoint(r);
  if (!rc) rc = append_line(r->metrics_path, text);
  free(text);
  if (rc) return -1;
  char buf[160];
  status_text(r, tl, buf, sizeof buf);
  line(r, "%s  val_loss %.4f  sink1 %.2f%%  %.0fs", buf, vl, s1, secs);
  return 0;
}

/* Keeps only the metrics lines a checkpoint at `step` stands behind, so that a
 * resumed run never shows a step twice. */
static int trim_metrics(const char *path, int64_t step) {
  unsigned char *data;
  size_t n;
  if (read_whole_file(path, &data, &n)) {
    if (errno == ENOENT) return 0;
    cli_error("%s: cannot read: %s", path, strerror(errno));
    return -1;
  }
  char *keep = xmalloc(n + 1), *p = (char *)data;
  size_t k = 0;
  bool changed = false;
  while (*p) {
    char *nl = strchr(p, '\n');
    size_t len = nl ? (size_t)(nl - p) : strlen(p);
    json_t *j = json_loadb(p, len, 0, NULL);
    json_t *s = j ? json_object_get(j, "step") : NULL;
    if (nl && s && json_is_integer(s) && json_integer_value(s) <= step) {
      memcpy(keep + k, p, len + 1);
      k += len + 1;
    } else {
      changed = true;
    }
    json_decref(j);
    p += len + (nl ? 1 : 0);
  }
  int rc = changed ? write_file_atomic(path, keep, k) : 0;
  free(keep);
  free(data);
  return rc;
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

/* Reads DIR/train_state.json into r and merges the command line's settings. */
static int load_state(run *r, json_t **state_out) {
  if (!is_dir(r->o.out)) {
    cli_error("--resume: %s is not a directory", r->o.out);
    return -1;
  }
  json_error_t e;
  json_t *st = json_load_file(r->state_path, JSON_REJECT_DUPLICATES, &e);
  if (!st) {
    if (!path_exists(r->state_path)) cli_error("--resume: %s holds no run (no train_state.json)", r->o.out);
    else cli_error("%s: line %d: %s", r->state_path, e.line, e.text);
    return -1;
  }
  cli_opts saved = r->o;
  if (opts_from_json(json_object_get(st, "args"), r->state_path, &saved)) goto bad;
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
                                         {"seed", "seed"}};
  json_t *now = train_opts_json(&r->o), *then = train_opts_json(&saved);
  for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
    if (changeable(fixed[i][0]) || !args_flag_given(&r->o, fixed[i][0])) continue;
    json_t *a = json_object_get(now, fixed[i][1]), *b = json_object_get(then, fixed[i][1]);
    if (!json_equal(a, b)) {
      char *bs = json_dumps(b, JSON_ENCODE_ANY);
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

static int restore_counters(run *r, json_t *st) {
  json_int_t step, tokens, lcount, last_eval;
  double secs, lsum;
  json_t *rng;
  const char *hash = NULL;
  json_error_t e;
  if (json_unpack_ex(st, &e, 0, "{s:I, s:I, s:F, s:o, s:F, s:I, s:I, s:{s:s}}", "step", &step, "tokens",
                     &tokens, "seconds", &secs, "rng", &rng, "train_loss_sum", &lsum, "train_loss_count",
                     &lcount, "last_eval_step", &last_eval, "corpus_check", "fnv1a64", &hash) != 0) {
    cli_error("%s: %s", r->state_path, e.text);
    return -1;
  }
  bool ok = json_is_array(rng) && json_array_size(rng) == 4;
  for (int i = 0; ok && i < 4; i++) r->rng.s[i] = parse_hex64(json_string_value(json_array_get(rng, i)), &ok);
  if (!ok) {
    cli_error("%s: rng must be 4 hexadecimal words", r->state_path);
    return -1;
  }
  uint64_t h = parse_hex64(hash, &ok);
  if (!ok || h != r->c.hash) {
    cli_error("--resume: corpus %s is not the text the run in %s was trained on", r->c.path, r->o.out);
    return -1;
  }
  if (asink_adamw_steps(r->opt) != step) {
    cli_error("--resume: %s is inconsistent: optimizer at step %" PRId64
              ", train_state.json at step %" PRId64,
              r->o.out, asink_adamw_steps(r->opt), (int64_t)step);
    return -1;
  }
  r->step = step, r->tokens = tokens, r->seconds_before = secs, r->loss_sum = lsum;
  r->loss_count = lcount, r->last_eval = last_eval;
  json_t *le = json_object_get(st, "last_eval");
  r->last_tl = json_number_value(json_object_get(le, "train_loss"));
  r->last_vl = json_number_value(json_object_get(le, "val_loss"));
  r->last_s1 = json_number_value(json_object_get(le, "sink1"));
  return 0;
}

static void free_run(run *r) {
  asink_adamw_free(r->opt);
  asink_model_free(r->m);
  corpus_free(&r->c);
  free(r->tok), free(r->tgt), free(r->val_tok), free(r->val_tgt), free(r->probe);
  free(r->metrics_path), free(r->state_path);
}

/* Everything that can be wrong with the input is found here, before anything is
 * written. */
static int prepare(run *r, json_t **state) {
  cli_opts *o = &r->o;
  if (!o->out) {
    cli_error("train: --out DIR is required");
    return -1;
  }
  r->state_path = path_join(o->out, "train_state.json");
  r->metrics_path = path_join(o->out, "metrics.jsonl");
  if (o->resume && load_state(r, state)) return -1;
  const char *cpath = train_corpus_path(o);
  if (!cpath || corpus_load(&r->c, cpath)) return -1;
  o->corpus = cpath; /* the state names the text actually used */
  r->bos = o->bos ? BOS_ID : -1;
  r->T = o->context, r->B = o->batch;
  if (corpus_check(&r->c, r->T, r->bos)) return -1;
  if (o->threads && asink_set_num_threads(o->threads)) {
    cli_error("--threads: %s", asink_last_error());
    return -1;
  }
  if (o->resume) {
    if (asink_model_load(&r->m, o->out)) {
      cli_error("--resume: %s", asink_last_error());
      return -1;
    }
  } else {
    /* the op alone first, so a bad spec is reported as the spec's own message */
    asink_attn *op = NULL;
    int kv = train_kv_heads(o), hd = o->heads > 0 && o->dim % o->heads == 0 ? o->dim / o->heads : 0;
    if (hd > 0 && o->heads % kv == 0) {
      asink_status s = asink_attn_create(&op, o->attn, o->heads, kv, hd);
      if (s == ASINK_ERR_SPEC) {
        cli_error("--attn: %s", asink_last_error());
        return -1;
      }
      if (s == ASINK_OK) asink_attn_free(op);
    }
    char *cfg = train_config_json(o);
    asink_status s = asink_model_create(&r->m, cfg, o->seed);
    free(cfg);
    if (s) {
      cli_error("%s", asink_last_error());
      return -1;
    }
  }
  if (asink_adamw_create(&r->opt, r->m, (float)o->lr, ADAM_BETA1, ADAM_BETA2, ADAM_EPS, (float)o->wd,
                         (float)o->clip) ||
      asink_adamw_schedule(r->opt, "constant", o->warmup, 0, 0.f)) {
    cli_error("optimizer: %s", asink_last_error());
    return -1;
  }
  if (o->resume) {
    if (asink_adamw_load(r->opt, o->out)) {
      cli_error("--resume: %s", asink_last_error());
      return -1;
    }
    if (restore_counters(r, *state)) return -1;
  } else {
    rng_seed(&r->rng, o->seed);
    for (int i = 0; run_files[i]; i++) {
      char *p = path_join(o->out, run_files[i]);
      bool there = path_exists(p);
      free(p);
      if (there) {
        cli_error("%s already holds a run (%s); continue it with --resume or choose another --out", o->out,
                  run_files[i]);
        return -1;
      }
    }
  }
  return 0;
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
    if (r.dir_created) remove_files_in(r.o.out, run_files, true);
    goto done;
  }
  if (r.o.resume) dist_checkpoint_end(r.o.out, r.step); /* the checkpoint a stopped job falls back on */
  r.started = true;
  rc = CLI_FAIL;
  if (r.o.resume && dist_root() && trim_metrics(r.metrics_path, r.step)) goto done;
  const cli_opts *o = &r.o;
  size_t bt = (size_t)r.B * r.T;
  r.tok = xmalloc(sizeof(int32_t) * bt);
  r.tgt = xmalloc(sizeof(int32_t) * bt);
  r.n_val = corpus_val_windows(&r.c, r.T, r.bos, EVAL_WINDOWS, &r.val_tok, &r.val_tgt);
  r.probe_T = r.T < PROBE_TOKENS ? r.T : PROBE_TOKENS;
  r.n_probe = cut_byte_windows(r.c.data + r.c.n_train, r.c.n - r.c.n_train, r.probe_T, r.bos, PROBE_WINDOWS,
                               &r.probe);
  r.limit = o->minutes > 0 ? o->minutes * 60 : 0;
  r.start_step = r.step;
  r.t0 = now_seconds();
  r.last_line = r.t0;
  /* the test suite's stand-in for a Ctrl-C at a chosen step */
  const char *ia = getenv("ASINK_TEST_INTERRUPT_AT");
  long long interrupt_at = ia ? atoll(ia) : -1;
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
    float loss;
    size_t at = (size_t)b0 * r.T;
    if (asink_model_loss(r.m, nb, r.T, r.tok + at, r.tgt + at, &loss) || asink_model_backward(r.m)) {
      line(&r, "step %" PRId64 " failed", r.step + 1);
      cli_error("training step %" PRId64 ": %s", r.step + 1, asink_last_error());
      goto done;
    }
    if (dist_reduce(r.m, o->allreduce, r.B, r.T, r.tgt, &loss)) goto done;
    if (asink_adamw_step(r.opt, NULL)) {
      line(&r, "step %" PRId64 " failed", r.step + 1);
      cli_error("training step %" PRId64 ": %s (the last checkpoint in %s is kept)", r.step + 1,
                asink_last_error(), o->out);
      goto done;
    }
    r.step++;
    r.tokens += (int64_t)bt;
    r.loss_sum += loss;
    r.loss_count++;
    if (r.step == interrupt_at) raise(SIGINT);
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
  if (rc != CLI_OK && r.started && !r.o.resume && !r.saved && dist_root())
    remove_files_in(r.o.out, run_files, r.dir_created);
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
