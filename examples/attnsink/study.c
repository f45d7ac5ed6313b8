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
#include "runcurve.h"
#include "svg.h"
#include "train.h"

/* At most this many runs, so each keeps a colour of its own in the plots. */
enum { MAX_RUNS = 8 };

/* The runs of a study without --compare: the study's headline. */
static const char *const default_runs = "softmax; sigmoid";

/* what the study writes at the top of its directory, besides alpha_RUN.svg per run */
static const char *const study_files[] = {"report.md", "sink1.svg", "loss.svg", NULL};

typedef struct {
  char *name;    /* as --compare wrote it: "softmax --wd 0.5" */
  char *subdir;  /* its directory under --out, and the name of its alpha plot */
  cli_opts o;    /* the study's settings with the run's spec and flags */
  char *dir;
  train_result res;
  probe_stats ps;
  run_curve c;
} study_run;

typedef struct {
  study_run r[MAX_RUNS];
  int n;
  bool headline; /* the default pair, softmax against sigmoid, and the report that reads it */
  char *text;    /* the --compare text cut into words, which the runs' settings point into */
} study_runs;

/* The training losses worth plotting: each is the mean over the steps since the previous
 * evaluation, and the extra evaluations at the end of a run (the time budget's stop, the
 * catch-up to the other run's count) cover only a few steps, a noisy mean that would draw
 * a hook at the right edge. Those covering under half an interval are left out. */
static int plotted_train(const run_curve *c, int eval_every, double *x, double *y) {
  int n = 0;
  for (int k = 0; k < c->n; k++) {
    double covered = c->step[k] - (k ? c->step[k - 1] : 0);
    if (2 * covered < eval_every) continue;
    x[n] = c->step[k], y[n] = c->train[k], n++;
  }
  return n;
}

/* Whether a run's maps are softmax's own (else its α is measured on the proxy map). */
static bool is_softmax(const study_run *r) { return !strncmp(r->o.attn, "softmax", 7); }

static int write_plots(const char *dir, const cli_opts *o, study_runs *sr) {
  const int n = sr->n;
  study_run *r = sr->r;
  svg_series ss[2 * MAX_RUNS];
  char *names[2 * MAX_RUNS];
  double *tx[MAX_RUNS], *ty[MAX_RUNS];
  /* the legend sits under the chart and grows with the runs */
  const svg_box box = {0, 0, 720, 440 + (n > 2 ? 22.0 * n : 0)};
  /* run i is svg_colour(i) in every plot: softmax the palette's first colour, sigmoid its second */
  for (int i = 0; i < n; i++) ss[i] = (svg_series){r[i].name, r[i].c.step, r[i].c.sink, r[i].c.n, svg_colour(i), false};
  svg *s = svg_new(box.w, box.h);
  /* percent of triples: a flat 0 on a 0-5 % scale reads as 0 %, not as a fraction */
  svg_chart_opts sink_axes = {.y_min_span = 5, .x_from_zero = true, .y_from_zero = true};
  char *title = xasprintf("Sink_1 on the probe (ε = %g)", (double)PROBE_EPS);
  svg_line_chart_opts(s, box, title, "optimizer step", "Sink_1 (% of window, layer, head triples)", ss, n,
                      &sink_axes);
  free(title);
  if (write_svg_file(dir, "sink1.svg", s)) return -1;
  for (int i = 0; i < n; i++) {
    tx[i] = xcalloc((size_t)r[i].c.n + 1, sizeof(double));
    ty[i] = xcalloc((size_t)r[i].c.n + 1, sizeof(double));
    int nt = plotted_train(&r[i].c, o->eval_every, tx[i], ty[i]);
    names[2 * i] = xasprintf("%s validation", r[i].name);
    names[2 * i + 1] = xasprintf("%s training", r[i].name);
    ss[2 * i] = (svg_series){names[2 * i], r[i].c.step, r[i].c.val, r[i].c.n, svg_colour(i), false};
    ss[2 * i + 1] = (svg_series){names[2 * i + 1], tx[i], ty[i], nt, svg_colour(i), true};
  }
  svg_chart_opts loss_axes = {.x_from_zero = true};
  svg_box lbox = {0, 0, 720, 440 + (n > 2 ? 44.0 * n : 0)};
  s = svg_new(lbox.w, lbox.h);
  svg_line_chart_opts(s, lbox, "loss", "optimizer step", "loss (nats per byte)", ss, 2 * n, &loss_axes);
  for (int i = 0; i < 2 * n; i++) free(names[i]);
  for (int i = 0; i < n; i++) free(tx[i]), free(ty[i]);
  if (write_svg_file(dir, "loss.svg", s)) return -1;
  for (int i = 0; i < n; i++) {
    double h = fmax(260, 80 + 36.0 * r[i].ps.L);
    s = svg_new(480, h);
    /* sigmoid's maps are unnormalised: its α is a share of the proxy map */
    title = xasprintf("%s: α of the first token (%s)", r[i].name, is_softmax(&r[i]) ? "share of attention" : "proxy map");
    probe_alpha_heatmap(s, (svg_box){0, 0, 480, h}, &r[i].ps, title);
    free(title);
    char *name = xasprintf("alpha_%s.svg", r[i].subdir);
    int rc = write_svg_file(dir, name, s);
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

static void print_comparison(FILE *f, const study_runs *sr) {
  const study_run *r = sr->r;
  fprintf(f, "\nstudy: %" PRId64 " steps each (%" PRId64 " tokens)\n", r[0].res.steps, r[0].res.tokens);
  fprintf(f, "%-32s %10s %10s %9s  %s\n", "run", "val loss", "Sink_1 (%)", "seconds", "alpha pos 0 by layer");
  for (int i = 0; i < sr->n; i++) {
    fprintf(f, "%-32s %10.4f %10.2f %9.0f ", r[i].name, r[i].res.val_loss, probe_sink1(&r[i].ps), r[i].res.seconds);
    for (int l = 0; l < r[i].ps.L; l++) fprintf(f, " %.3f", layer_alpha0(&r[i].ps, l));
    fputc('\n', f);
  }
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

/* The flags of a run's train command that differ from what the study's report lists for
 * every run: the study's factors when set. malloc'd. */
static char *factor_flags(const cli_opts *o) {
  char *s = xstrdup("");
#define ADD(...)                                                                                                   \
  do {                                                                                                             \
    char *add = xasprintf(__VA_ARGS__), *n = xasprintf("%s%s", s, add);                                           \
    free(add), free(s);                                                                                            \
    s = n;                                                                                                         \
  } while (0)
  if (o->prefix) ADD(" --prefix %d", o->prefix);
  if (strcmp(o->kernel, "none")) ADD(" --kernel %s", o->kernel);
  if (o->sink_token) ADD(" --sink-token");
  if (strcmp(o->schedule, "constant")) ADD(" --schedule %s --min-lr %g", o->schedule, o->min_lr);
  if (o->decay_steps) ADD(" --decay-steps %" PRId64, o->decay_steps);
  if (strcmp(o->first_token, "text")) ADD(" --first-token %s", o->first_token);
  if (o->train_bytes) ADD(" --train-bytes %" PRId64, o->train_bytes);
  if (strcmp(o->precision, "fp32")) ADD(" --precision %s", o->precision);
#undef ADD
  return s;
}

static void print_settings(FILE *f, const cli_opts *o, const study_runs *sr) {
  fprintf(f,
          "## Settings\n\n%s used these; the program's defaults live in one place, `train_defaults` "
          "in examples/attnsink/train.c (`attnsink study --help` lists them).\n\n"
          "| setting | value | default, where different |\n|---|---|---|\n",
          sr->headline ? "Both runs" : "Every run (but for what its name says)");
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
      "| optimizer | AdamW β = (%g, %g), eps %g, %d warm-up steps then %s | |\n"
      "| evaluation | val loss over %d windows of the context spread over the validation part; "
      "Sink_1 on the probe | |\n"
      "| budget | %.2f minutes (all runs side by side for %.0f%% of it, then equal steps)%s | |\n\n",
      o->bos ? 257 : 256, o->bos ? ", BOS id 256 first in every window" : "", RMS_NORM_EPS, ROPE_THETA,
      (double)ADAM_BETA1, (double)ADAM_BETA2, (double)ADAM_EPS, o->warmup, o->schedule, EVAL_WINDOWS, o->minutes,
      STUDY_TRAIN_SHARE * 100, o->steps ? ", capped by --steps" : "");
}

static int write_report(const cli_opts *o, const char *command, const study_runs *sr) {
  const study_run *r = sr->r;
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  if (!f) return -1;
  char date[64];
  time_t t = time(NULL);
  strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", gmtime(&t));
  if (sr->headline) fprintf(f, "# attnsink study: softmax against sigmoid attention\n\n");
  else fprintf(f, "# attnsink study: %d runs compared\n\n", sr->n);
  fprintf(f, "`%s`, %s.  \n%s.\n\n", command, date, asink_runtime_info());
  fprintf(f, "## Result\n\n");
  fprintf(f, "| %s | steps | tokens | training time | val loss | Sink_1 (%%) | α of position 0, by layer |\n",
          sr->headline ? "attention" : "run");
  fprintf(f, "|---|---|---|---|---|---|---|\n");
  for (int i = 0; i < sr->n; i++) {
    fprintf(f, "| `%s` | %" PRId64 " | %" PRId64 " | %.1f min | %.4f | %.2f |", r[i].name, r[i].res.steps,
            r[i].res.tokens, r[i].res.seconds / 60, r[i].res.val_loss, probe_sink1(&r[i].ps));
    for (int l = 0; l < r[i].ps.L; l++) fprintf(f, " %.3f", layer_alpha0(&r[i].ps, l));
    fprintf(f, " |\n");
  }
  if (sr->headline) {
    double dsink = probe_sink1(&r[0].ps) - probe_sink1(&r[1].ps);
    double dloss = fabs(r[0].res.val_loss - r[1].res.val_loss);
    fprintf(f, "\nSink_1 of softmax minus sigmoid: %.2f percentage points; validation losses %.3f nats apart. ",
            dsink, dloss);
    print_reading(f, r);
  }
  fprintf(f, "\n\n");
  fprintf(f,
          "How the comparison is kept fair: the %d runs trained side by side, one process and one "
          "thread each, for %.2f of the %.2f minutes; those that had done fewer steps then resumed to "
          "the most steps any run made, so all end at %" PRId64
          " steps. They started from the same weights (seed %" PRIu64
          ") and saw the same batches in the same "
          "order, so they differ only in %s. α is the importance of the first token "
          "(docs/metrics.md) on the probe: the first %d windows of %d tokens of the validation part%s, ε = %g. "
          "A non-softmax attention's maps are not normalised, so its α and Sink_1 are measured on the proxy map "
          "|A| / (Σ|A| + 1e-8).\n\n",
          sr->n, o->minutes * STUDY_TRAIN_SHARE, o->minutes, r[0].res.steps, o->seed,
          sr->headline ? "the attention operation" : "what their names say (a run's own --seed aside)", r[0].ps.N,
          r[0].ps.T, o->bos ? ", each starting with the BOS token" : "", (double)PROBE_EPS);
  if (sr->headline) fprintf(f, "## Plots\n\nSoftmax is blue and sigmoid orange in every plot.");
  else fprintf(f, "## Plots\n\nEach run has one colour in every plot; the legends name them.");
  fprintf(f, " A line drawn over another, wholly or in part, is "
             "dashed, and its legend entry says whose line it lies on.\n\n![Sink_1 against steps](sink1.svg)\n\n"
             "Validation loss (solid) is measured at each evaluation; training loss (dashed) is the mean over the "
             "steps since the previous one, left out where that covers under half of --eval-every (the short "
             "stretches at the end of a run, a noisy mean).\n\n![Loss against steps](loss.svg)\n\n");
  for (int i = 0; i < sr->n; i++)
    fprintf(f, "![α of the first token, %s](alpha_%s.svg)%s", r[i].name, r[i].subdir, i + 1 < sr->n ? " " : "\n\n");
  print_settings(f, o, sr);
  fprintf(f, "## Files\n\n");
  for (int i = 0; i < sr->n; i++) fprintf(f, "%s`%s/`", i ? (i + 1 < sr->n ? ", " : " and ") : "", r[i].subdir);
  fprintf(f,
          " are checkpoints (`config.json`, `model.safetensors`, "
          "`optimizer.safetensors`, `train_state.json`) with `metrics.jsonl` (one line per evaluation) and "
          "`probe.json` (the final probe, as `attnsink probe --json` writes it). Each run can be repeated "
          "alone with\n\n```\n");
  for (int i = 0; i < sr->n; i++) {
    const cli_opts *a = &r[i].o;
    char *extra = factor_flags(a);
    fprintf(f,
            "attnsink train --corpus %s --attn %s --steps %" PRId64
            " --out DIR --layers %d --dim %d --heads %d "
            "--kv-heads %d --ffn %s --ffn-dim %d --norm-position %s --positions %s --context %d --batch %d "
            "--lr %g --warmup %d --wd %g --clip %g --seed %" PRIu64 " --eval-every %d%s%s\n",
            a->corpus, a->attn, r[0].res.steps, a->layers, a->dim, a->heads, train_kv_heads(a), a->ffn,
            train_ffn_dim(a), a->norm_position, a->positions, a->context, a->batch, a->lr, a->warmup, a->wd,
            a->clip, a->seed, a->eval_every, a->bos ? "" : " --no-bos", extra);
    free(extra);
  }
  fprintf(f, "```\n");
  fclose(f);
  char *path = path_join(o->out, "report.md");
  int rc = write_file_atomic(path, text, len);
  free(path);
  free(text);
  return rc;
}

static int write_study_json(const char *path, const study_runs *sr) {
  json_t *runs = json_array();
  for (int i = 0; i < sr->n; i++) {
    const study_run *r = &sr->r[i];
    json_array_append_new(runs, json_pack("{s:s, s:s, s:s, s:o, s:o, s:I, s:I}", "name", r->name, "dir", r->subdir,
                                          "attn", r->o.attn, "val_loss", json_num(r->res.val_loss), "sink1",
                                          json_num(probe_sink1(&r->ps)), "steps", (json_int_t)r->res.steps,
                                          "tokens", (json_int_t)r->res.tokens));
  }
  json_t *j = json_pack("{s:o}", "runs", runs);
  int rc = write_json_atomic(path, j, JSON_INDENT(2) | JSON_REAL_PRECISION(7));
  json_decref(j);
  return rc;
}

/* Trains the runs that need it at once, each in its own process on one thread: on two
 * cores, two single-threaded runs do about 1.7 times the work of one run on two threads
 * (a small model's GEMMs scale poorly; bench_train figures in docs/cli.md), and all see
 * the same batches in the same order. The first phase (target 0) trains every run until
 * the time budget; the second resumes each run behind target to it. */
static int train_children(const cli_opts *o, study_runs *sr, int64_t target) {
  pid_t pid[MAX_RUNS] = {0};
  int fd[MAX_RUNS];
  fflush(stdout);
  fflush(stderr);
  int rc = CLI_OK;
  for (int i = 0; i < sr->n; i++) {
    study_run *r = &sr->r[i];
    if (target && r->res.steps >= target) continue;
    int p[2];
    if (pipe(p)) {
      cli_error("study: pipe: %s", strerror(errno));
      rc = CLI_FAIL;
      break;
    }
    char *label = xasprintf("[%s] ", r->name);
    if (target)
      printf("%sresuming from step %" PRId64 " to %" PRId64 " (%s)\n", label, r->res.steps, target,
             sr->n == 2 ? "the other run's count" : "the most steps a run made");
    fflush(stdout);
    pid[i] = fork();
    if (pid[i] < 0) {
      cli_error("study: fork: %s", strerror(errno));
      free(label);
      close(p[0]), close(p[1]);
      pid[i] = 0;
      rc = CLI_FAIL;
      break;
    }
    if (pid[i] == 0) {
      close(p[0]);
      cli_opts a = r->o;
      a.out = r->dir, a.json = NULL, a.threads = 1;
      if (target) {
        a.resume = 1, a.minutes = 0, a.steps = target;
        args_mark_given(&a, "steps");
      } else {
        a.resume = 0, a.minutes = o->minutes * STUDY_TRAIN_SHARE;
        a.steps = o->steps ? o->steps : INT64_MAX / 2;
      }
      train_result res = {0};
      int code = train_run(&a, label, &res);
      fflush(stdout);
      ssize_t w = write(p[1], &res, sizeof res);
      _exit(w == (ssize_t)sizeof res ? code : CLI_FAIL);
    }
    free(label);
    close(p[1]);
    fd[i] = p[0];
    if (!target) printf("[%s] training in %s (process %d, one thread)\n", r->name, r->dir, (int)pid[i]);
    /* now: a line still buffered at the next fork would be printed again by that child */
    fflush(stdout);
  }
  /* a stop asked of the study goes on to its runs, which save and report as interrupted */
  bool forwarded = false;
  for (int i = 0; i < sr->n; i++) {
    if (!pid[i]) continue;
    ssize_t got;
    do {
      train_forward_stop(pid, sr->n, &forwarded);
      got = read(fd[i], &sr->r[i].res, sizeof sr->r[i].res);
    } while (got < 0 && errno == EINTR);
    close(fd[i]);
    int status = 0;
    while (waitpid(pid[i], &status, 0) < 0 && errno == EINTR)
      train_forward_stop(pid, sr->n, &forwarded);
    pid[i] = 0; /* reaped: its number may be another process's now */
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : CLI_FAIL;
    if (code != CLI_OK || got != (ssize_t)sizeof sr->r[i].res) rc = code != CLI_OK ? code : CLI_FAIL;
  }
  return rc;
}

static bool any_interrupted(const study_runs *sr) {
  for (int i = 0; i < sr->n; i++)
    if (sr->r[i].res.interrupted) return true;
  return false;
}

/* Every run until the budget, then the ones behind to the most steps any made, so the
 * comparison is at equal steps. */
static int train_side_by_side(const cli_opts *o, study_runs *sr) {
  int rc = train_children(o, sr, 0);
  if (rc || any_interrupted(sr)) return rc;
  int64_t target = 0;
  for (int i = 0; i < sr->n; i++)
    if (sr->r[i].res.steps > target) target = sr->r[i].res.steps;
  return train_children(o, sr, target);
}

static const cli_opts *study_defaults(void) {
  static cli_opts d;
  d = train_defaults;
  d.steps = 0; /* no cap: the time budget decides */
  d.minutes = 12;
  d.out = "study";
  return &d;
}

/* Flags the whole study sets, which a run of --compare cannot change: the budget and the
 * places. */
static const char *const study_wide[] = {"steps", "minutes", "out", "corpus", "threads", "eval-every", "resume", NULL};

/* Cuts spec into the runs of sr, each with o's settings, its spec and its flags. -1
 * after one error line. */
static int parse_runs(const char *spec, const cli_opts *o, study_runs *sr) {
  memset(sr, 0, sizeof *sr);
  sr->headline = !spec;
  sr->text = xstrdup(spec ? spec : default_runs);
  char *save = NULL;
  int k = 0;
  /* strsep, not strtok: an empty run between two ';' must be seen */
  for (char *rest = sr->text, *part; (part = strsep(&rest, ";")); k++) {
    char *words[64];
    int nw = 0;
    for (char *w = strtok_r(part, " \t\n", &save); w; w = strtok_r(NULL, " \t\n", &save)) {
      if (nw == 64) {
        cli_error("study: --compare: run %d has more than 63 flags and values", k + 1);
        return -1;
      }
      words[nw++] = w;
    }
    if (!nw) {
      cli_error("study: --compare \"%s\": run %d is empty (runs are separated by ';')", spec, k + 1);
      return -1;
    }
    if (sr->n == MAX_RUNS) {
      cli_error("study: --compare: at most %d runs (one colour each in the plots); use attnsink sweep for more",
                MAX_RUNS);
      return -1;
    }
    study_run *r = &sr->r[sr->n++];
    r->o = *o;
    r->o.attn = words[0];
    r->o.given = (cli_flag_set){{0, 0}};
    int prc = nw > 1 ? args_parse(CMD_TRAIN, nw - 1, words + 1, &r->o) : 0;
    if (prc < 0) cli_error("study: --compare: run %d: --help is no flag of a run", k + 1);
    if (prc) return -1;
    for (int i = 0; study_wide[i]; i++)
      if (args_flag_given(&r->o, study_wide[i])) {
        cli_error("study: --compare: run \"%s\": --%s is the whole study's setting; give it outside --compare",
                  words[0], study_wide[i]);
        return -1;
      }
    /* the name is the run's words joined by single blanks */
    r->name = xstrdup(words[0]);
    for (int i = 1; i < nw; i++) {
      char *n = xasprintf("%s %s", r->name, words[i]);
      free(r->name);
      r->name = n;
    }
    r->subdir = run_dir_name(r->name);
    r->dir = path_join(o->out, r->subdir);
    for (int j = 0; j < sr->n - 1; j++)
      if (!strcmp(sr->r[j].subdir, r->subdir)) {
        cli_error("study: --compare: runs \"%s\" and \"%s\" would share the directory %s; make them differ",
                  sr->r[j].name, r->name, r->dir);
        return -1;
      }
  }
  return 0;
}

static void free_runs(study_runs *sr) {
  for (int i = 0; i < sr->n; i++) {
    probe_stats_free(&sr->r[i].ps);
    run_curve_free(&sr->r[i].c);
    free(sr->r[i].dir), free(sr->r[i].name), free(sr->r[i].subdir);
  }
  free(sr->text);
}

/* Removes what an earlier study wrote in out for these runs. */
static void remove_study_files(const char *out, const study_runs *sr, bool rmdir_too) {
  for (int i = 0; i < sr->n; i++) {
    char *alpha = xasprintf("alpha_%s.svg", sr->r[i].subdir);
    const char *one[] = {alpha, NULL};
    remove_files_in(out, one, false);
    free(alpha);
  }
  remove_files_in(out, study_files, rmdir_too);
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
  o.given = (cli_flag_set){{0, 0}};
  /* every input check before the first file is written */
  if (!(o.corpus = train_corpus_path(&o))) return CLI_INPUT;
  corpus c;
  if (corpus_load(&c, o.corpus)) return CLI_INPUT;
  rc = CLI_INPUT;
  study_runs sr;
  bool created = false;
  char *command = shell_words(argc, argv);
  if (parse_runs(o.compare, &o, &sr)) goto done;
  for (int i = 0; i < sr.n; i++) {
    char *who = sr.headline ? xstrdup("study: ") : xasprintf("study: %s: ", sr.r[i].name);
    int bad = train_check_settings(&sr.r[i].o, &c, who);
    free(who);
    if (bad) goto done;
  }
  if (check_output_path("study", "json", o.json)) goto done;
  if (o.threads && asink_set_num_threads(o.threads)) {
    cli_error("study: --threads: %s", asink_last_error());
    goto done;
  }
  if (make_dir(o.out, &created)) goto done;
  rc = CLI_FAIL;
  /* a study directory is the study's own: an earlier study's files there are replaced */
  for (int i = 0; i < sr.n; i++) {
    char *probe_json = path_join(sr.r[i].dir, "probe.json");
    remove(probe_json);
    free(probe_json);
    train_remove_run(sr.r[i].dir);
  }
  remove_study_files(o.out, &sr, false);
  train_install_signals();

  if ((rc = train_side_by_side(&o, &sr))) goto done;
  if (any_interrupted(&sr)) {
    printf("study interrupted: the runs so far are in %s; no report written\n", o.out);
    rc = CLI_OK;
    goto done;
  }
  rc = CLI_FAIL;
  for (int i = 0; i < sr.n; i++) {
    char *mpath = path_join(sr.r[i].dir, "metrics.jsonl");
    int bad = run_curve_read(mpath, &sr.r[i].c);
    free(mpath);
    if (bad) goto done;
  }
  /* the probes run here, on --threads (the training ran in child processes) */
  for (int i = 0; i < sr.n; i++)
    if (train_probe_checkpoint(&sr.r[i].o, &c, sr.r[i].dir, &sr.r[i].ps)) goto done;
  print_comparison(stdout, &sr);
  if (write_plots(o.out, &o, &sr) || write_report(&o, command, &sr)) goto done;
  if (o.json && write_study_json(o.json, &sr)) goto done;
  printf("report: %s/report.md\n", o.out);
  rc = CLI_OK;
done:
  if (rc == CLI_INPUT && created) remove_study_files(o.out, &sr, true);
  free_runs(&sr);
  free(command);
  corpus_free(&c);
  return rc;
}
