#include "study.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <attnsink.h>
#include <jansson.h>

#include "args.h"
#include "corpus.h"
#include "errors.h"
#include "files.h"
#include "probe.h"
#include "svg.h"
#include "train.h"

enum { N_RUNS = 2 };
static const char *const specs[N_RUNS] = {"softmax", "sigmoid"};

/* what the study writes at the top of its directory */
static const char *const study_files[] = {"report.md",         "sink1.svg",         "loss.svg",
                                          "alpha_softmax.svg", "alpha_sigmoid.svg", NULL};

typedef struct {
  int n;
  double *step, *train, *val, *sink;
} curve;

typedef struct {
  char *dir;
  train_result res;
  probe_stats ps;
  curve c;
} study_run;

static double num(const json_t *v) { return json_is_number(v) ? json_number_value(v) : NAN; }

static int read_curve(const char *path, curve *c) {
  memset(c, 0, sizeof *c);
  unsigned char *data;
  size_t n;
  if (read_whole_file(path, &data, &n)) {
    cli_error("%s: cannot read: %s", path, read_error());
    return -1;
  }
  size_t lines = 0;
  for (size_t i = 0; i < n; i++) lines += data[i] == '\n';
  c->step = xcalloc(lines + 1, sizeof(double));
  c->train = xcalloc(lines + 1, sizeof(double));
  c->val = xcalloc(lines + 1, sizeof(double));
  c->sink = xcalloc(lines + 1, sizeof(double));
  for (char *p = (char *)data; *p;) {
    char *nl = strchr(p, '\n');
    size_t len = nl ? (size_t)(nl - p) : strlen(p);
    json_t *j = json_loadb(p, len, 0, NULL);
    if (j) {
      c->step[c->n] = num(json_object_get(j, "step"));
      c->train[c->n] = num(json_object_get(j, "train_loss"));
      c->val[c->n] = num(json_object_get(j, "val_loss"));
      c->sink[c->n] = num(json_object_get(j, "sink1"));
      c->n++;
      json_decref(j);
    }
    p += len + (nl ? 1 : 0);
  }
  free(data);
  return 0;
}

static void free_curve(curve *c) { free(c->step), free(c->train), free(c->val), free(c->sink); }

static int write_svg(const char *dir, const char *name, svg *s) {
  size_t n;
  char *text = svg_finish(s, &n);
  char *path = path_join(dir, name);
  int rc = write_file_atomic(path, text, n);
  free(path);
  free(text);
  return rc;
}

/* The training losses worth plotting: each is the mean over the steps since the previous
 * evaluation, and the extra evaluations at the end of a run (the time budget's stop, the
 * catch-up to the other run's count) cover only a few steps, a noisy mean that would draw
 * a hook at the right edge. Those covering under half an interval are left out. */
static int plotted_train(const curve *c, int eval_every, double *x, double *y) {
  int n = 0;
  for (int k = 0; k < c->n; k++) {
    double covered = c->step[k] - (k ? c->step[k - 1] : 0);
    if (2 * covered < eval_every) continue;
    x[n] = c->step[k], y[n] = c->train[k], n++;
  }
  return n;
}

static int write_plots(const char *dir, const cli_opts *o, study_run *r) {
  svg_series ss[2 * N_RUNS];
  char *names[2 * N_RUNS];
  double *tx[N_RUNS], *ty[N_RUNS];
  const svg_box box = {0, 0, 720, 440};
  /* run i is svg_colour(i) in every plot: softmax the palette's first colour, sigmoid its second */
  for (int i = 0; i < N_RUNS; i++)
    ss[i] = (svg_series){specs[i], r[i].c.step, r[i].c.sink, r[i].c.n, svg_colour(i), false};
  svg *s = svg_new(box.w, box.h);
  /* percent of triples: a flat 0 on a 0-5 % scale reads as 0 %, not as a fraction */
  svg_chart_opts sink_axes = {.y_min_span = 5, .x_from_zero = true, .y_from_zero = true};
  char *title = xasprintf("Sink_1 on the probe (ε = %g)", (double)PROBE_EPS);
  svg_line_chart_opts(s, box, title, "optimizer step", "Sink_1 (% of window, layer, head triples)", ss, N_RUNS,
                      &sink_axes);
  free(title);
  if (write_svg(dir, "sink1.svg", s)) return -1;
  for (int i = 0; i < N_RUNS; i++) {
    tx[i] = xcalloc((size_t)r[i].c.n + 1, sizeof(double));
    ty[i] = xcalloc((size_t)r[i].c.n + 1, sizeof(double));
    int nt = plotted_train(&r[i].c, o->eval_every, tx[i], ty[i]);
    names[2 * i] = xasprintf("%s validation", specs[i]);
    names[2 * i + 1] = xasprintf("%s training", specs[i]);
    ss[2 * i] = (svg_series){names[2 * i], r[i].c.step, r[i].c.val, r[i].c.n, svg_colour(i), false};
    ss[2 * i + 1] = (svg_series){names[2 * i + 1], tx[i], ty[i], nt, svg_colour(i), true};
  }
  s = svg_new(box.w, box.h);
  svg_chart_opts loss_axes = {.x_from_zero = true};
  svg_line_chart_opts(s, box, "loss", "optimizer step", "loss (nats per byte)", ss, 2 * N_RUNS, &loss_axes);
  for (int i = 0; i < 2 * N_RUNS; i++) free(names[i]);
  for (int i = 0; i < N_RUNS; i++) free(tx[i]), free(ty[i]);
  if (write_svg(dir, "loss.svg", s)) return -1;
  for (int i = 0; i < N_RUNS; i++) {
    double h = fmax(260, 80 + 36.0 * r[i].ps.L);
    s = svg_new(480, h);
    /* sigmoid's maps are unnormalised: its α is a share of the proxy map */
    title = xasprintf("%s: α of the first token (%s)", specs[i], i == 0 ? "share of attention" : "proxy map");
    probe_alpha_heatmap(s, (svg_box){0, 0, 480, h}, &r[i].ps, title);
    free(title);
    char *name = xasprintf("alpha_%s.svg", specs[i]);
    int rc = write_svg(dir, name, s);
    free(name);
    if (rc) return -1;
  }
  return 0;
}

static double layer_alpha0(const probe_stats *ps, int l) {
  double sum = 0;
  for (int h = 0; h < ps->H; h++) sum += probe_alpha0(ps, l, h);
  return sum / ps->H;
}

static void print_comparison(FILE *f, const study_run *r) {
  fprintf(f, "\nstudy: %" PRId64 " steps each (%" PRId64 " tokens)\n", r[0].res.steps, r[0].res.tokens);
  fprintf(f, "%-24s %10s %10s\n", "", specs[0], specs[1]);
  fprintf(f, "%-24s %10.4f %10.4f\n", "val loss", r[0].res.val_loss, r[1].res.val_loss);
  fprintf(f, "%-24s %10.2f %10.2f\n", "Sink_1 (%)", probe_sink1(&r[0].ps), probe_sink1(&r[1].ps));
  for (int l = 0; l < r[0].ps.L; l++) {
    char lab[48];
    snprintf(lab, sizeof lab, "alpha pos 0, layer %d", l);
    fprintf(f, "%-24s %10.3f %10.3f\n", lab, layer_alpha0(&r[0].ps, l), layer_alpha0(&r[1].ps, l));
  }
  fprintf(f, "%-24s %10.0f %10.0f\n", "training seconds", r[0].res.seconds, r[1].res.seconds);
}

static char *shell_words(int argc, char **argv) {
  char *s = xstrdup("attnsink study");
  for (int i = 0; i < argc; i++) {
    /* quote anything a shell would split or expand */
    bool plain = argv[i][0] && strspn(argv[i],
                                      "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                                      "-_=./,:+") == strlen(argv[i]);
    char *n = plain ? xasprintf("%s %s", s, argv[i]) : xasprintf("%s '%s'", s, argv[i]);
    free(s);
    s = n;
  }
  return s;
}

/* A setting's value as the report shows it. malloc'd. */
static char *setting_text(const json_t *v) {
  if (json_is_string(v)) return xstrdup(json_string_value(v));
  char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_REAL_PRECISION(6));
  return s ? s : xstrdup("?");
}

/* One sentence on what the two Sink_1 figures say, for the report. A difference of a few
 * points is what the probe's noise gives at this scale (docs/results.md), not a sink. */
static void print_reading(FILE *f, const study_run *r) {
  double s0 = probe_sink1(&r[0].ps), s1 = probe_sink1(&r[1].ps);
  const char *when = "With the default settings softmax grew one only after about 13M tokens (docs/results.md); "
                     "these runs saw";
  if (s0 == 0 && s1 == 0)
    fprintf(f,
            "No first-token sink has formed in either run yet: no (window, layer, head) triple puts more "
            "than ε of its attention on the first token. %s %" PRId64 ".",
            when, r[0].res.tokens);
  else if (s0 <= s1)
    fprintf(f, "Softmax shows no more of a first-token sink than sigmoid here (%.2f%% against %.2f%%).", s0, s1);
  else if (s0 - s1 < 5)
    fprintf(f,
            "At most a trace of a first-token sink so far (softmax %.2f%%, sigmoid %.2f%% of triples). %s "
            "%" PRId64 ".",
            s0, s1, when, r[0].res.tokens);
  else
    fprintf(f,
            "Softmax has a first-token sink in %.2f%% of (window, layer, head) triples, sigmoid in %.2f%%: "
            "the contrast the study describes, a sink under softmax's normalisation and little or none "
            "without it.",
            s0, s1);
}

static int write_report(const cli_opts *o, const char *command, const study_run *r) {
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  if (!f) return -1;
  char date[64];
  time_t t = time(NULL);
  strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", gmtime(&t));
  double dsink = probe_sink1(&r[0].ps) - probe_sink1(&r[1].ps);
  double dloss = fabs(r[0].res.val_loss - r[1].res.val_loss);
  fprintf(f, "# attnsink study: softmax against sigmoid attention\n\n");
  fprintf(f, "`%s`, %s.  \n%s.\n\n", command, date, asink_runtime_info());
  fprintf(f, "## Result\n\n");
  fprintf(f,
          "| attention | steps | tokens | training time | val loss | Sink_1 (%%) | α of position 0, by layer "
          "|\n");
  fprintf(f, "|---|---|---|---|---|---|---|\n");
  for (int i = 0; i < N_RUNS; i++) {
    fprintf(f, "| `%s` | %" PRId64 " | %" PRId64 " | %.1f min | %.4f | %.2f |", specs[i], r[i].res.steps,
            r[i].res.tokens, r[i].res.seconds / 60, r[i].res.val_loss, probe_sink1(&r[i].ps));
    for (int l = 0; l < r[i].ps.L; l++) fprintf(f, " %.3f", layer_alpha0(&r[i].ps, l));
    fprintf(f, " |\n");
  }
  fprintf(f, "\nSink_1 of softmax minus sigmoid: %.2f percentage points; validation losses %.3f nats apart. ",
          dsink, dloss);
  print_reading(f, r);
  fprintf(f, "\n\n");
  fprintf(f,
          "How the comparison is kept fair: the two runs trained side by side, one process and one "
          "thread each, for %.2f of the %.2f minutes; the one that had done fewer steps then resumed to "
          "the other's count, so both end at %" PRId64
          " steps. Both started from the same weights (seed %" PRIu64
          ") and saw the same batches in the same "
          "order, so they differ only in the attention operation. α is the importance of the first token "
          "(docs/metrics.md) on the probe: the first %d windows of %d tokens of the validation part%s, ε = %g. "
          "Sigmoid's maps are not normalised, so its α and Sink_1 are measured on the proxy map "
          "|A| / (Σ|A| + 1e-8).\n\n",
          o->minutes * STUDY_TRAIN_SHARE, o->minutes, r[0].res.steps, o->seed, r[0].ps.N, r[0].ps.T,
          o->bos ? ", each starting with the BOS token" : "", (double)PROBE_EPS);
  fprintf(f,
          "## Plots\n\nSoftmax is blue and sigmoid orange in every plot. A line drawn over another, wholly or in part, is "
          "dashed, and its legend entry says whose line it lies on.\n\n![Sink_1 against steps](sink1.svg)\n\n"
          "Validation loss (solid) is measured at each evaluation; training loss (dashed) is the mean over the "
          "steps since the previous one, left out where that covers under half of --eval-every (the short "
          "stretches at the end of a run, a noisy mean).\n\n![Loss against steps](loss.svg)\n\n");
  fprintf(f,
          "![α of the first token, softmax](alpha_softmax.svg) ![α of the first token, "
          "sigmoid](alpha_sigmoid.svg)\n\n");
  fprintf(f,
          "## Settings\n\nBoth runs used these; the program's defaults live in one place, `train_defaults` "
          "in examples/attnsink/train.c (`attnsink study --help` lists them).\n\n"
          "| setting | value | default, where different |\n|---|---|---|\n");
  cli_opts defaults = train_defaults;
  defaults.corpus = o->corpus; /* the default corpus depends on the build tree */
  json_t *args = train_opts_json(o), *dargs = train_opts_json(&defaults);
  const char *key;
  json_t *v;
  json_object_foreach(args, key, v) {
    if (!strcmp(key, "attn") || !strcmp(key, "steps") || !strcmp(key, "minutes") || !strcmp(key, "threads"))
      continue;
    char *vs = setting_text(v), *ds = setting_text(json_object_get(dargs, key));
    fprintf(f, "| %s | %s | %s |\n", key, vs, json_equal(v, json_object_get(dargs, key)) ? "" : ds);
    free(vs);
    free(ds);
  }
  json_decref(args);
  json_decref(dargs);
  /* what ran, not the flag: --threads only sets the probe's */
  fprintf(f, "| threads | 1 per run (each in its own process, the catch-up too); the probe %d | |\n",
          asink_get_num_threads());
  fprintf(
      f,
      "| model | llama family, byte-level (vocabulary %d%s), RMSNorm eps %g, RoPE base %g, untied head | |\n"
      "| optimizer | AdamW β = (%g, %g), eps %g, %d warm-up steps then constant | |\n"
      "| evaluation | val loss over %d windows of the context spread over the validation part; "
      "Sink_1 on the probe | |\n"
      "| budget | %.2f minutes (both runs side by side for %.0f%% of it, then equal steps)%s | |\n\n",
      o->bos ? 257 : 256, o->bos ? ", BOS id 256 first in every window" : "", RMS_NORM_EPS, ROPE_THETA,
      (double)ADAM_BETA1, (double)ADAM_BETA2, (double)ADAM_EPS, o->warmup, EVAL_WINDOWS, o->minutes,
      STUDY_TRAIN_SHARE * 100, o->steps ? ", capped by --steps" : "");
  fprintf(f,
          "## Files\n\n`softmax/` and `sigmoid/` are checkpoints (`config.json`, `model.safetensors`, "
          "`optimizer.safetensors`, `train_state.json`) with `metrics.jsonl` (one line per evaluation) and "
          "`probe.json` (the final probe, as `attnsink probe --json` writes it). Each run can be repeated "
          "alone with\n\n```\n");
  for (int i = 0; i < N_RUNS; i++)
    fprintf(f,
            "attnsink train --corpus %s --attn %s --steps %" PRId64
            " --out DIR --layers %d --dim %d --heads %d "
            "--kv-heads %d --ffn %s --ffn-dim %d --norm-position %s --positions %s --context %d --batch %d "
            "--lr %g --warmup %d --wd %g --clip %g --seed %" PRIu64 " --eval-every %d%s\n",
            o->corpus, specs[i], r[0].res.steps, o->layers, o->dim, o->heads, train_kv_heads(o), o->ffn,
            train_ffn_dim(o), o->norm_position, o->positions, o->context, o->batch, o->lr, o->warmup, o->wd,
            o->clip, o->seed, o->eval_every, o->bos ? "" : " --no-bos");
  fprintf(f, "```\n");
  fclose(f);
  char *path = path_join(o->out, "report.md");
  int rc = write_file_atomic(path, text, len);
  free(path);
  free(text);
  return rc;
}

static int write_study_json(const char *path, const study_run *r) {
  json_t *runs = json_array();
  for (int i = 0; i < N_RUNS; i++)
    json_array_append_new(
        runs, json_pack("{s:s, s:o, s:o, s:I, s:I}", "attn", specs[i], "val_loss",
                        json_num(r[i].res.val_loss), "sink1", json_num(probe_sink1(&r[i].ps)), "steps",
                        (json_int_t)r[i].res.steps, "tokens", (json_int_t)r[i].res.tokens));
  json_t *j = json_pack("{s:o}", "runs", runs);
  int rc = write_json_atomic(path, j, JSON_INDENT(2) | JSON_REAL_PRECISION(7));
  json_decref(j);
  return rc;
}

/* The final probe of one run, from its checkpoint, as the training loop measured it. */
static int probe_checkpoint(const cli_opts *o, const corpus *c, study_run *r) {
  asink_model *m;
  if (asink_model_load(&m, r->dir)) {
    cli_error("study: %s", asink_last_error());
    return -1;
  }
  int T = o->context < PROBE_TOKENS ? o->context : PROBE_TOKENS, bos = o->bos ? BOS_ID : -1;
  int32_t *w;
  int n = cut_byte_windows(c->data + c->n_train, c->n - c->n_train, T, bos, PROBE_WINDOWS, &w);
  asink_status s = probe_run(m, w, n, T, o->batch, PROBE_EPS, &r->ps);
  free(w);
  asink_model_free(m);
  if (s) {
    cli_error("study: probe of %s: %s", r->dir, asink_last_error());
    return -1;
  }
  json_t *j = probe_stats_json(&r->ps);
  char *path = path_join(r->dir, "probe.json");
  int rc = write_json_atomic(path, j, JSON_INDENT(1) | JSON_REAL_PRECISION(7));
  free(path);
  json_decref(j);
  return rc;
}

/* Trains both runs at once, each in its own process on one thread: on two cores,
 * two single-threaded runs do about 1.7 times the work of one run on two threads
 * (a small model's GEMMs scale poorly; bench_train figures in docs/cli.md), and both
 * see the same batches in the same order. They stop at the time budget; the one that
 * got fewer steps then resumes to the other's count, so the comparison is at equal
 * steps. */
static int train_side_by_side(const cli_opts *o, study_run *runs) {
  pid_t pid[N_RUNS];
  int fd[N_RUNS];
  fflush(stdout);
  fflush(stderr);
  for (int i = 0; i < N_RUNS; i++) {
    int p[2];
    if (pipe(p)) {
      cli_error("study: pipe: %s", strerror(errno));
      return CLI_FAIL;
    }
    pid[i] = fork();
    if (pid[i] < 0) {
      cli_error("study: fork: %s", strerror(errno));
      return CLI_FAIL;
    }
    if (pid[i] == 0) {
      close(p[0]);
      cli_opts a = *o;
      a.attn = specs[i], a.out = runs[i].dir, a.resume = 0, a.json = NULL, a.threads = 1;
      a.minutes = o->minutes * STUDY_TRAIN_SHARE;
      a.steps = o->steps ? o->steps : INT64_MAX / 2;
      char *label = xasprintf("[%s] ", specs[i]);
      train_result res = {0};
      int r = train_run(&a, label, &res);
      fflush(stdout);
      ssize_t w = write(p[1], &res, sizeof res);
      _exit(w == (ssize_t)sizeof res ? r : CLI_FAIL);
    }
    close(p[1]);
    fd[i] = p[0];
    printf("[%s] training in %s (process %d, one thread)\n", specs[i], runs[i].dir, (int)pid[i]);
    /* now: a line still buffered at the next fork would be printed again by that child */
    fflush(stdout);
  }
  int rc = CLI_OK;
  for (int i = 0; i < N_RUNS; i++) {
    ssize_t got = read(fd[i], &runs[i].res, sizeof runs[i].res);
    close(fd[i]);
    int status = 0;
    waitpid(pid[i], &status, 0);
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : CLI_FAIL;
    if (code != CLI_OK || got != (ssize_t)sizeof runs[i].res) rc = code != CLI_OK ? code : CLI_FAIL;
  }
  if (rc || runs[0].res.interrupted || runs[1].res.interrupted) return rc;
  int lag = runs[0].res.steps < runs[1].res.steps ? 0 : 1;
  int64_t target = runs[1 - lag].res.steps;
  if (runs[lag].res.steps == target) return CLI_OK;
  cli_opts a = *o;
  a.attn = specs[lag], a.out = runs[lag].dir, a.resume = 1, a.json = NULL, a.minutes = 0;
  a.steps = target, a.threads = 1; /* as it trained so far */
  args_mark_given(&a, "steps");
  args_mark_given(&a, "threads");
  char *label = xasprintf("[%s] ", specs[lag]);
  printf("%sresuming from step %" PRId64 " to %" PRId64 " (the other run's count)\n", label,
         runs[lag].res.steps, target);
  rc = train_run(&a, label, &runs[lag].res);
  free(label);
  return rc;
}

static const cli_opts *study_defaults(void) {
  static cli_opts d;
  d = train_defaults;
  d.steps = 0; /* no cap: the time budget decides */
  d.minutes = 12;
  d.out = "study";
  return &d;
}

int cmd_study(int argc, char **argv) {
  const cli_opts *d = study_defaults();
  cli_opts o = *d;
  int rc = args_parse(CMD_STUDY, argc, argv, &o);
  if (rc < 0) {
    cli_usage(CMD_STUDY, d);
    return CLI_OK;
  }
  if (rc) return rc;
  o.given = 0;
  /* every input check before the first file is written */
  if (!(o.corpus = train_corpus_path(&o))) return CLI_INPUT;
  corpus c;
  if (corpus_load(&c, o.corpus)) return CLI_INPUT;
  if (corpus_check(&c, o.context, o.bos ? BOS_ID : -1)) {
    corpus_free(&c);
    return CLI_INPUT;
  }
  rc = CLI_INPUT;
  study_run runs[N_RUNS];
  memset(runs, 0, sizeof runs);
  bool created = false;
  char *command = shell_words(argc, argv);
  for (int i = 0; i < N_RUNS; i++) {
    cli_opts a = o;
    a.attn = specs[i];
    char *cfg = train_config_json(&a);
    asink_model *m = NULL;
    asink_status s = asink_model_create(&m, cfg, o.seed);
    free(cfg);
    asink_model_free(m);
    if (s) {
      cli_error("study: %s", asink_last_error());
      goto done;
    }
  }
  if (check_output_path("study", "json", o.json)) goto done;
  if (o.threads && asink_set_num_threads(o.threads)) {
    cli_error("study: --threads: %s", asink_last_error());
    goto done;
  }
  if (make_dir(o.out, &created)) goto done;
  rc = CLI_FAIL;
  /* a study directory is the study's own: an earlier study's files there are replaced */
  for (int i = 0; i < N_RUNS; i++) {
    runs[i].dir = path_join(o.out, specs[i]);
    char *probe_json = path_join(runs[i].dir, "probe.json");
    remove(probe_json);
    free(probe_json);
    train_remove_run(runs[i].dir);
  }
  remove_files_in(o.out, study_files, false);
  train_install_signals();

  /* the probe's threads: --threads, else the library's default (taken before the catch-up,
   * which trains in this process on one thread, changes it) */
  int probe_threads = asink_get_num_threads();
  if ((rc = train_side_by_side(&o, runs))) goto done;
  if (asink_set_num_threads(probe_threads)) {
    cli_error("study: threads: %s", asink_last_error());
    rc = CLI_FAIL;
    goto done;
  }
  for (int i = 0; i < N_RUNS; i++)
    if (runs[i].res.interrupted) {
      printf("study interrupted: the runs so far are in %s; no report written\n", o.out);
      rc = CLI_OK;
      goto done;
    }
  rc = CLI_FAIL;
  for (int i = 0; i < N_RUNS; i++) {
    char *mpath = path_join(runs[i].dir, "metrics.jsonl");
    int bad = read_curve(mpath, &runs[i].c);
    free(mpath);
    if (bad) goto done;
  }
  for (int i = 0; i < N_RUNS; i++)
    if (probe_checkpoint(&o, &c, &runs[i])) goto done;
  print_comparison(stdout, runs);
  if (write_plots(o.out, &o, runs) || write_report(&o, command, runs)) goto done;
  if (o.json && write_study_json(o.json, runs)) goto done;
  printf("report: %s/report.md\n", o.out);
  rc = CLI_OK;
done:
  for (int i = 0; i < N_RUNS; i++) {
    probe_stats_free(&runs[i].ps);
    free_curve(&runs[i].c);
    free(runs[i].dir);
  }
  if (rc == CLI_INPUT && created) remove_files_in(o.out, study_files, true);
  free(command);
  corpus_free(&c);
  return rc;
}
