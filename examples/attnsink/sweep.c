#include "sweep.h"

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
#include "rundir.h"
#include "runcurve.h"
#include "svg.h"
#include "train.h"

/* what the sweep writes at the top of its directory */
static const char *const sweep_files[] = {"results.json", "results.md", "sink1.svg", "loss.svg", NULL};

typedef struct {
  char *name, *group, *dir;
  cli_opts o;
  const json_t *study; /* the study's figure for this row, shown beside it (NULL: none) */
  int64_t done;        /* steps its checkpoint holds */
  int64_t tokens;
  double seconds;
  bool failed;
  run_curve c;
  probe_stats ps;
  bool probed;
} sweep_run;

typedef struct {
  const char *path; /* the plan file */
  json_t *plan;     /* kept: the runs' strings point into it */
  const char *title;
  sweep_run *runs;
  int n;
  char **pending; /* --report: the names of the runs not finished yet, left out of the results */
  int n_pending;
} sweep;

/* Keys of a plan's settings that are no setting of one run. */
static const char *const not_settings[] = {"out", "resume", "threads", "minutes", "no_bos", "compare", "jobs",
                                           NULL};

static bool listed(const char *const *list, const char *k) {
  for (int i = 0; list[i]; i++)
    if (!strcmp(list[i], k)) return true;
  return false;
}

/* A JSON value as a name part: strings bare, numbers as written. malloc'd. */
static char *value_text(const json_t *v) {
  if (json_is_string(v)) return xstrdup(json_string_value(v));
  char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT | JSON_REAL_PRECISION(6));
  return s ? s : xstrdup("?");
}

/* Sets one setting of o from the plan, checked as its flag is, and marks it given so a
 * resumed run is checked against it. where names it in messages. -1 after an error line. */
static int set_one(const char *plan, const char *where, const char *key, const json_t *v, cli_opts *o) {
  if (listed(not_settings, key)) {
    cli_error("%s: %s.%s is not a setting of a run (each run trains on one thread in its own directory "
              "under --out; BOS off is \"bos\": false)",
              plan, where, key);
    return -1;
  }
  char why[200];
  const char *bad;
  if (!strcmp(key, "seed") && json_is_integer(v) && json_integer_value(v) >= 0) {
    o->seed = (uint64_t)json_integer_value(v); /* a plan may write a seed as a plain integer */
    bad = NULL;
  } else {
    bad = args_set_json(CMD_TRAIN, key, v, o, why, sizeof why);
  }
  if (bad) {
    char *vs = value_text(v);
    cli_error("%s: %s.%s=%s %s", plan, where, key, vs, bad);
    free(vs);
    return -1;
  }
  char flag[64];
  snprintf(flag, sizeof flag, "%s", key);
  for (char *p = flag; *p; p++)
    if (*p == '_') *p = '-';
  args_mark_given(o, flag);
  return 0;
}

/* Every key of obj but those in skip, as settings of o. */
static int set_all(const char *plan, const char *where, const json_t *obj, const char *const *skip, cli_opts *o) {
  const char *key;
  json_t *v;
  json_object_foreach((json_t *)obj, key, v) {
    if (skip && listed(skip, key)) continue;
    if (set_one(plan, where, key, v, o)) return -1;
  }
  return 0;
}

static void add_run(sweep *sw, const cli_opts *o, const char *group, const char *name, const json_t *study,
                    const char *out) {
  sw->runs = realloc(sw->runs, sizeof *sw->runs * (size_t)(sw->n + 1));
  if (!sw->runs) exit(CLI_FAIL);
  sweep_run *r = &sw->runs[sw->n++];
  memset(r, 0, sizeof *r);
  r->o = *o;
  r->group = xstrdup(group), r->name = xstrdup(name), r->study = study;
  char *sl = run_dir_name(name);
  r->dir = path_join(out, sl);
  free(sl);
}

/* The grid's combination number k as settings of o and a name suffix "lr=1e-3, wd=0.1". */
static int grid_combo(const char *plan, const json_t *grid, size_t k, cli_opts *o, char **suffix) {
  *suffix = xstrdup("");
  const char *key;
  json_t *vals;
  json_object_foreach((json_t *)grid, key, vals) {
    size_t m = json_array_size(vals);
    const json_t *v = json_array_get(vals, k % m);
    k /= m;
    if (set_one(plan, "grid", key, v, o)) return -1;
    char *vs = value_text(v), *s = xasprintf("%s%s%s=%s", *suffix, **suffix ? ", " : "", key, vs);
    free(vs), free(*suffix);
    *suffix = s;
  }
  return 0;
}

static int plan_error(const char *plan, const char *what) {
  cli_error("%s: %s (docs/cli.md, \"attnsink sweep\", describes the plan)", plan, what);
  return -1;
}

/* Reads the plan into sw: its runs, each with its settings checked. -1 after an error line. */
static int read_plan(const char *path, const char *out, const char *corpus, sweep *sw) {
  memset(sw, 0, sizeof *sw);
  sw->path = path;
  unsigned char *text;
  size_t n;
  if (read_file_bounded(path, 1u << 24, &text, &n)) {
    cli_error("sweep: %s: cannot read: %s", path, read_error());
    return -1;
  }
  json_error_t e;
  sw->plan = json_loadb((const char *)text, n, JSON_REJECT_DUPLICATES, &e);
  free(text);
  if (!sw->plan) {
    cli_error("sweep: %s: line %d: %s", path, e.line, e.text);
    return -1;
  }
  const json_t *p = sw->plan;
  if (!json_is_object(p)) return plan_error(path, "must be a JSON object");
  static const char *const top_keys[] = {"title", "settings", "seeds", "grid", "runs", NULL};
  const char *key;
  json_t *v;
  json_object_foreach((json_t *)p, key, v) if (!listed(top_keys, key)) {
    char *m = xasprintf("%s is not a plan key (title settings seeds grid runs)", key);
    plan_error(path, m);
    free(m);
    return -1;
  }
  json_t *title = json_object_get(p, "title"), *settings = json_object_get(p, "settings"),
         *seeds = json_object_get(p, "seeds"), *grid = json_object_get(p, "grid"), *runs = json_object_get(p, "runs");
  if (title && !json_is_string(title)) return plan_error(path, "title must be a string");
  sw->title = title ? json_string_value(title) : "attnsink sweep";
  if (settings && !json_is_object(settings)) return plan_error(path, "settings must be an object");
  if (seeds && (!json_is_array(seeds) || !json_array_size(seeds)))
    return plan_error(path, "seeds must be a non-empty array of integers");
  size_t i;
  json_array_foreach(seeds, i, v) if (!json_is_integer(v) || json_integer_value(v) < 0) {
    return plan_error(path, "seeds must be a non-empty array of integers >= 0");
  }
  size_t combos = 1;
  if (grid) {
    if (!json_is_object(grid) || !json_object_size(grid))
      return plan_error(path, "grid must be an object of setting -> array of values");
    json_object_foreach(grid, key, v) {
      if (!json_is_array(v) || !json_array_size(v) || combos > 100000 / json_array_size(v))
        return plan_error(path, "grid: each setting must have a non-empty array of values (at most 100000 runs)");
      combos *= json_array_size(v);
    }
  }
  if (runs && (!json_is_array(runs) || !json_array_size(runs)))
    return plan_error(path, "runs must be a non-empty array of objects");
  if (!runs && !grid) return plan_error(path, "needs runs or a grid (or both)");
  cli_opts base = train_defaults;
  if (settings && set_all(path, "settings", settings, NULL, &base)) return -1;
  if (corpus) base.corpus = corpus, args_mark_given(&base, "corpus");
  size_t n_runs = runs ? json_array_size(runs) : 1, n_seeds = seeds ? json_array_size(seeds) : 1;
  for (size_t r = 0; r < n_runs; r++) {
    const json_t *run = runs ? json_array_get(runs, r) : NULL;
    char where[64];
    snprintf(where, sizeof where, "runs[%zu]", r);
    if (runs && !json_is_object(run)) return plan_error(path, "each run must be an object");
    const json_t *name = json_object_get(run, "name");
    if (runs && (!json_is_string(name) || !*json_string_value(name))) {
      char *m = xasprintf("%s.name must be a non-empty string", where);
      plan_error(path, m);
      free(m);
      return -1;
    }
    static const char *const run_keys[] = {"name", "study", NULL};
    cli_opts ro = base;
    if (run && set_all(path, where, run, run_keys, &ro)) return -1;
    for (size_t g = 0; g < combos; g++) {
      cli_opts go = ro;
      char *suffix = NULL;
      if (!grid) suffix = xstrdup("");
      else if (grid_combo(path, grid, g, &go, &suffix)) {
        free(suffix);
        return -1;
      }
      char *group = run && *suffix   ? xasprintf("%s, %s", json_string_value(name), suffix)
                    : run            ? xstrdup(json_string_value(name))
                                     : xstrdup(suffix);
      free(suffix);
      for (size_t s = 0; s < n_seeds; s++) {
        cli_opts so = go;
        char *rname;
        if (seeds) {
          so.seed = (uint64_t)json_integer_value(json_array_get(seeds, s));
          args_mark_given(&so, "seed");
          rname = n_seeds > 1 ? xasprintf("%s, seed %" PRIu64, group, so.seed) : xstrdup(group);
        } else {
          rname = xstrdup(group);
        }
        add_run(sw, &so, group, rname, json_object_get(run, "study"), out);
        free(rname);
      }
      free(group);
    }
  }
  for (int a = 0; a < sw->n; a++)
    for (int b = 0; b < a; b++)
      if (!strcmp(sw->runs[a].dir, sw->runs[b].dir)) {
        cli_error("sweep: %s: runs \"%s\" and \"%s\" would share the directory %s; rename one", path,
                  sw->runs[b].name, sw->runs[a].name, sw->runs[a].dir);
        return -1;
      }
  return 0;
}

/* The step a run's checkpoint holds (0: none), with its tokens and seconds. -1 after an
 * error line (a directory that is no run's, a damaged state). */
static int run_progress(sweep_run *r) {
  r->done = 0, r->tokens = 0, r->seconds = 0;
  if (!path_exists(r->dir)) return 0;
  char *ckpt;
  bool partial;
  rundir_kind kind = rundir_find(r->dir, &ckpt, &partial);
  if (kind == RUNDIR_FOREIGN) {
    cli_error("sweep: %s is not a training run's directory; move it away", r->dir);
    return -1;
  }
  if (kind == RUNDIR_NONE) return 0; /* train cleans what a killed first save left */
  char *state = path_join(ckpt, "train_state.json");
  free(ckpt);
  json_error_t e;
  json_t *st = json_load_file(state, JSON_REJECT_DUPLICATES, &e);
  json_t *step = json_object_get(st, "step");
  int rc = 0;
  if (!json_is_integer(step) || json_integer_value(step) < 0) {
    cli_error("sweep: %s: no step count (%s); remove %s to train the run afresh", state, st ? "step" : e.text,
              r->dir);
    rc = -1;
  } else {
    r->done = json_integer_value(step);
    json_t *tok = json_object_get(st, "tokens"), *sec = json_object_get(st, "seconds");
    r->tokens = json_is_integer(tok) ? json_integer_value(tok) : 0;
    r->seconds = json_is_number(sec) ? json_number_value(sec) : 0;
  }
  json_decref(st);
  free(state);
  return rc;
}

/* Every run's settings checked as `train` would, before anything is written. */
static int check_runs(sweep *sw, corpus *c) {
  for (int i = 0; i < sw->n; i++) {
    sweep_run *r = &sw->runs[i];
    char *who = xasprintf("sweep: %s: run \"%s\": ", sw->path, r->name);
    int bad = train_check_settings(&r->o, c, who);
    free(who);
    if (bad) return -1;
    if (run_progress(r)) return -1;
  }
  return 0;
}

/* Starts run r in a child process on one thread. */
static pid_t launch(sweep_run *r) {
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  if (pid != 0) return pid;
  cli_opts a = r->o;
  a.out = r->dir, a.threads = 1, a.resume = r->done > 0;
  args_mark_given(&a, "steps");
  char *label = xasprintf("[%s] ", r->name);
  train_result res;
  int rc = train_run(&a, label, &res);
  fflush(stdout);
  _exit(rc);
}

/* Trains every unfinished run, jobs at once; a failed run does not stop the others.
 * CLI_OK, or the worst status of a run. */
static int train_all(sweep *sw, int jobs) {
  pid_t *pid = xcalloc((size_t)sw->n, sizeof(pid_t));
  int running = 0, next = 0, rc = CLI_OK;
  bool stop = false;      /* no more processes can be made */
  bool forwarded = false; /* a stop asked of the sweep went on to its runs */
  for (;;) {
    while (running < jobs && next < sw->n && !stop && !train_interrupted()) {
      sweep_run *r = &sw->runs[next++];
      if (r->done >= r->o.steps) {
        printf("[%s] finished before (%" PRId64 " steps in %s): skipped\n", r->name, r->done, r->dir);
        continue;
      }
      pid[next - 1] = launch(r);
      if (pid[next - 1] < 0) {
        cli_error("sweep: fork: %s", strerror(errno));
        rc = CLI_FAIL, stop = true;
        break;
      }
      printf("[%s] %s in %s (process %d, one thread)\n", r->name, r->done ? "resuming" : "training", r->dir,
             (int)pid[next - 1]);
      fflush(stdout);
      running++;
    }
    if (!running) break;
    train_forward_stop(pid, sw->n, &forwarded);
    int status;
    pid_t got = waitpid(-1, &status, 0);
    if (got < 0) {
      if (errno == EINTR) continue; /* a signal: forwarded at the top of the loop */
      break;
    }
    for (int i = 0; i < sw->n; i++)
      if (pid[i] == got) {
        int code = WIFEXITED(status) ? WEXITSTATUS(status) : CLI_FAIL;
        if (code != CLI_OK) {
          sw->runs[i].failed = true;
          if (code > rc) rc = code;
          fprintf(stderr, "attnsink: sweep: run \"%s\" failed (status %d); its directory %s stays\n",
                  sw->runs[i].name, code, sw->runs[i].dir);
        }
        pid[i] = 0;
      }
    running--;
  }
  free(pid);
  return rc;
}

/* A run's colour: the palette's first colours, then hues spread by the golden angle, so
 * no two runs share one. */
static const char *run_colour(int i, char *buf, size_t n) {
  if (i < 8) return svg_colour(i);
  snprintf(buf, n, "hsl(%d, 70%%, %d%%)", (int)fmod(i * 137.508, 360), 30 + 15 * (i % 3));
  return buf;
}

static int write_plots(const char *out, const sweep *sw) {
  svg_series *ss = xcalloc((size_t)sw->n, sizeof *ss);
  char(*col)[32] = xcalloc((size_t)sw->n, sizeof *col);
  int rc = 0;
  for (int pass = 0; pass < 2 && !rc; pass++) {
    for (int i = 0; i < sw->n; i++) {
      const run_curve *c = &sw->runs[i].c;
      ss[i] = (svg_series){sw->runs[i].name, c->tokens, pass ? c->val : c->sink, c->n,
                           run_colour(i, col[i], sizeof col[i]), false};
    }
    /* the legend under the chart grows with the runs; the chart keeps its size */
    double h = 440 + 22.0 * sw->n;
    svg *s = svg_new(760, h);
    svg_chart_opts axes = {.y_min_span = pass ? 0 : 5, .x_from_zero = true, .y_from_zero = !pass};
    char *title = xasprintf(pass ? "validation loss" : "Sink_1 on the probe (ε = %g)", (double)PROBE_EPS);
    svg_line_chart_opts(s, (svg_box){0, 0, 760, h}, title, "training tokens",
                        pass ? "loss (nats per byte)" : "Sink_1 (% of window, layer, head triples)", ss, sw->n,
                        &axes);
    free(title);
    rc = write_svg_file(out, pass ? "loss.svg" : "sink1.svg", s);
  }
  free(ss), free(col);
  return rc;
}

/* The probe's column of the first text token: after a virtual key (kbias), and after a
 * learnable sink token, which the metric counts as position 0. */
static int first_text_column(const sweep_run *r) { return (r->ps.Tk - r->ps.T) + (r->o.sink_token ? 1 : 0); }

static double sink1_of(const sweep_run *r) { return r->ps.sink[first_text_column(r)]; }

/* What the probe says of a run besides Sink_1: the Sink of a virtual key (kbias) or of a
 * learnable sink token, or the Sink at a fixed token's position. NAN, and *what "", when
 * none applies. */
static double other_sink(const sweep_run *r, char *what, size_t n) {
  const probe_stats *ps = &r->ps;
  if (ps->Tk > ps->T || r->o.sink_token) {
    snprintf(what, n, "Sink_*");
    return ps->sink[0];
  }
  cli_opts a = r->o;
  window_form f;
  if (!train_check_factors(&a, &f) && f.fixed_pos >= 2 && f.fixed_pos <= ps->T) {
    snprintf(what, n, "Sink_%d", f.fixed_pos);
    return ps->sink[f.fixed_pos - 1];
  }
  *what = 0;
  return NAN;
}

/* α of the first text token in layer l, mean over heads. */
static double mean_alpha0(const sweep_run *r, int l) {
  const probe_stats *ps = &r->ps;
  double s = 0;
  for (int h = 0; h < ps->H; h++) s += ps->importance[((size_t)l * ps->H + h) * ps->Tk + first_text_column(r)];
  return s / ps->H;
}

static json_t *run_json(const sweep_run *r) {
  char what[32];
  double other = other_sink(r, what, sizeof what);
  json_t *alpha = json_array();
  for (int l = 0; l < r->ps.L; l++) json_array_append_new(alpha, json_num(mean_alpha0(r, l)));
  double vl = r->c.n ? r->c.val[r->c.n - 1] : NAN;
  return json_pack("{s:s, s:s, s:I, s:s, s:I, s:I, s:o, s:o, s:o, s:s?, s:o, s:o, s:O?, s:o}", "name", r->name,
                   "group", r->group, "seed", (json_int_t)r->o.seed, "dir", r->dir, "steps", (json_int_t)r->done,
                   "tokens", (json_int_t)r->tokens, "seconds", json_num(r->seconds), "val_loss", json_num(vl),
                   "sink1", json_num(sink1_of(r)), "other_sink_name", *what ? what : NULL,
                   "other_sink", json_num(other), "alpha0", alpha, "study", r->study, "settings",
                   train_opts_json(&r->o));
}

/* Runs of one group (the same settings but the seed): the mean and range of Sink_1 and
 * the mean validation loss. */
typedef struct {
  const char *group;
  int n;
  double s_mean, s_min, s_max, vl_mean, o_mean;
  const json_t *study;
} group_stats;

static int group_all(const sweep *sw, group_stats *g) {
  int ng = 0;
  for (int i = 0; i < sw->n; i++) {
    const sweep_run *r = &sw->runs[i];
    int k = 0;
    while (k < ng && strcmp(g[k].group, r->group)) k++;
    if (k == ng) g[ng++] = (group_stats){r->group, 0, 0, INFINITY, -INFINITY, 0, 0, r->study};
    char what[32];
    double s = sink1_of(r), o = other_sink(r, what, sizeof what);
    g[k].n++;
    g[k].s_mean += s, g[k].vl_mean += r->c.n ? r->c.val[r->c.n - 1] : NAN, g[k].o_mean += o;
    g[k].s_min = fmin(g[k].s_min, s), g[k].s_max = fmax(g[k].s_max, s);
  }
  for (int k = 0; k < ng; k++) g[k].s_mean /= g[k].n, g[k].vl_mean /= g[k].n, g[k].o_mean /= g[k].n;
  return ng;
}

static char *study_text(const json_t *v) { return v ? value_text(v) : xstrdup("—"); }

static int write_results(const char *out, const sweep *sw, const char *command) {
  group_stats *g = xcalloc((size_t)sw->n, sizeof *g);
  int ng = group_all(sw, g);
  json_t *runs = json_array(), *groups = json_array();
  for (int i = 0; i < sw->n; i++) json_array_append_new(runs, run_json(&sw->runs[i]));
  for (int k = 0; k < ng; k++)
    json_array_append_new(groups, json_pack("{s:s, s:i, s:o, s:o, s:o, s:o, s:O?}", "group", g[k].group, "runs",
                                            g[k].n, "sink1_mean", json_num(g[k].s_mean), "sink1_min",
                                            json_num(g[k].s_min), "sink1_max", json_num(g[k].s_max),
                                            "val_loss_mean", json_num(g[k].vl_mean), "study", g[k].study));
  json_t *j = json_pack("{s:s, s:s, s:o, s:o}", "plan", sw->path, "title", sw->title, "runs", runs, "groups",
                        groups);
  if (sw->n_pending) {
    json_t *pending = json_array();
    for (int i = 0; i < sw->n_pending; i++) json_array_append_new(pending, json_string(sw->pending[i]));
    json_object_set_new(j, "pending", pending);
  }
  char *path = path_join(out, "results.json");
  int rc = write_json_atomic(path, j, JSON_INDENT(2) | JSON_REAL_PRECISION(7));
  free(path);
  json_decref(j);

  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  if (!f) exit(CLI_FAIL);
  char date[64];
  time_t t = time(NULL);
  strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", gmtime(&t));
  fprintf(f, "# %s\n\n`%s`, %s.  \n%s.\n\n", sw->title, command, date, asink_runtime_info());
  fprintf(f,
          "Each run trained in its own process on one thread. Sink_1 (%%) is measured on the probe (the first "
          "%d windows of %d tokens of the validation part, ε = %g) of the final checkpoint; α of position 0 is "
          "the mean over heads per layer, both of the first text token; the other sink is Sink_* of a learnable "
          "extra key or sink token, or the Sink at a fixed token's position.\n\n",
          sw->runs[0].ps.N, sw->runs[0].ps.T, (double)PROBE_EPS);
  if (sw->n_pending) {
    fprintf(f, "Runs of the plan not finished yet, left out of this table:");
    for (int i = 0; i < sw->n_pending; i++) fprintf(f, "%s %s", i ? "," : "", sw->pending[i]);
    fprintf(f, ".\n\n");
  }
  fprintf(f, "| run | steps | tokens | val loss | Sink_1 (%%) | other sink (%%) | α of position 0 by layer | "
             "study |\n|---|---|---|---|---|---|---|---|\n");
  for (int i = 0; i < sw->n; i++) {
    const sweep_run *r = &sw->runs[i];
    char what[32], other[48] = "—";
    double o = other_sink(r, what, sizeof what);
    if (*what) snprintf(other, sizeof other, "%s %.2f", what, o);
    char *st = study_text(r->study);
    char tokens[32];
    if (r->tokens >= 100000) snprintf(tokens, sizeof tokens, "%.1fM", r->tokens / 1e6);
    else snprintf(tokens, sizeof tokens, "%" PRId64, r->tokens);
    fprintf(f, "| %s | %" PRId64 " | %s | %.4f | %.2f | %s |", r->name, r->done, tokens,
            r->c.n ? r->c.val[r->c.n - 1] : NAN, sink1_of(r), other);
    for (int l = 0; l < r->ps.L; l++) fprintf(f, " %.3f", mean_alpha0(r, l));
    fprintf(f, " | %s |\n", st);
    free(st);
  }
  if (ng < sw->n) {
    fprintf(f, "\nOver the seeds of each row (mean, and the lowest and highest of the runs):\n\n"
               "| row | runs | Sink_1 mean (%%) | Sink_1 range | other sink mean | val loss mean | study |\n"
               "|---|---|---|---|---|---|---|\n");
    for (int k = 0; k < ng; k++) {
      char *st = study_text(g[k].study), other[32] = "—";
      if (isfinite(g[k].o_mean)) snprintf(other, sizeof other, "%.2f", g[k].o_mean);
      fprintf(f, "| %s | %d | %.2f | %.2f – %.2f | %s | %.4f | %s |\n", g[k].group, g[k].n, g[k].s_mean, g[k].s_min,
              g[k].s_max, other, g[k].vl_mean, st);
      free(st);
    }
  }
  fprintf(f, "\n![Sink_1 against training tokens](sink1.svg)\n\n![Validation loss against training tokens](loss.svg)\n\n"
             "Each run's checkpoint, `metrics.jsonl` and `probe.json` are in its directory; its settings are in "
             "`results.json` and in its `train_state.json`.\n");
  fclose(f);
  path = path_join(out, "results.md");
  if (!rc) rc = write_file_atomic(path, text, len);
  free(path), free(text), free(g);
  return rc;
}

static void free_sweep(sweep *sw) {
  for (int i = 0; i < sw->n; i++) {
    sweep_run *r = &sw->runs[i];
    free(r->name), free(r->group), free(r->dir);
    run_curve_free(&r->c);
    if (r->probed) probe_stats_free(&r->ps);
  }
  free(sw->runs);
  for (int i = 0; i < sw->n_pending; i++) free(sw->pending[i]);
  free(sw->pending);
  json_decref(sw->plan);
}

/* --report: keeps the finished runs only, naming the others in sw->pending. */
static void keep_finished(sweep *sw) {
  int kept = 0;
  sw->pending = xcalloc((size_t)sw->n + 1, sizeof(char *));
  for (int i = 0; i < sw->n; i++) {
    sweep_run *r = &sw->runs[i];
    if (r->done >= r->o.steps) {
      sw->runs[kept++] = *r;
      continue;
    }
    sw->pending[sw->n_pending++] = r->name;
    free(r->group), free(r->dir);
  }
  sw->n = kept;
}

int cmd_sweep(int argc, char **argv) {
  cli_opts d = train_defaults;
  d.out = NULL;
  cli_opts o = d;
  const char *plan = NULL;
  /* the plan is the one positional argument; the rest are flags */
  char **rest = xcalloc((size_t)argc + 1, sizeof(char *));
  int nrest = 0;
  for (int i = 0; i < argc; i++) {
    bool takes_value = !strchr(argv[i], '=') && (!strcmp(argv[i], "--out") || !strcmp(argv[i], "--corpus") ||
                                                 !strcmp(argv[i], "--jobs") || !strcmp(argv[i], "--threads"));
    if (argv[i][0] != '-' && !plan) {
      plan = argv[i];
      continue;
    }
    rest[nrest++] = argv[i];
    if (takes_value && i + 1 < argc) rest[nrest++] = argv[++i];
  }
  int rc = args_parse(CMD_SWEEP, nrest, rest, &o);
  free(rest);
  if (rc < 0) {
    cli_usage(CMD_SWEEP, &d);
    return CLI_OK;
  }
  if (rc) return rc;
  if (!plan) {
    cli_error("sweep: no plan given (attnsink sweep PLAN.json; see attnsink sweep --help)");
    return CLI_INPUT;
  }
  /* --out, else the plan's name without .json, in the current directory */
  char *out = NULL;
  if (o.out) {
    out = xstrdup(o.out);
  } else {
    const char *base = strrchr(plan, '/') ? strrchr(plan, '/') + 1 : plan;
    size_t n = strlen(base);
    out = n > 5 && !strcmp(base + n - 5, ".json") ? xasprintf("%.*s", (int)(n - 5), base) : xasprintf("%s.out", base);
  }
  sweep sw;
  corpus c;
  memset(&c, 0, sizeof c);
  bool created = false;
  rc = CLI_INPUT;
  char *command = NULL;
  if (read_plan(plan, out, o.corpus, &sw)) goto done;
  const char *cpath = train_corpus_path(&sw.runs[0].o);
  if (!cpath || corpus_load(&c, cpath)) goto done;
  for (int i = 0; i < sw.n; i++) sw.runs[i].o.corpus = cpath;
  if (check_runs(&sw, &c)) goto done;
  if (o.threads && asink_set_num_threads(o.threads)) {
    cli_error("sweep: --threads: %s", asink_last_error());
    goto done;
  }
  if (o.dry_run) {
    for (int i = 0; i < sw.n; i++) {
      const sweep_run *r = &sw.runs[i];
      printf("%-40s %s  %s\n", r->name, r->dir,
             r->done >= r->o.steps ? "finished"
             : r->done         ? "stopped, to continue"
                               : "to train");
    }
    rc = CLI_OK;
    goto done;
  }
  if (o.report) {
    keep_finished(&sw);
    if (!sw.n) {
      cli_error("sweep --report: no run of %s has finished yet (--dry-run lists them)", plan);
      goto done;
    }
  }
  if (make_dir(out, &created)) goto done;
  command = xasprintf("attnsink sweep %s%s", plan, o.report ? " --report" : "");
  if (!o.report) {
    int jobs = o.jobs ? o.jobs : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (jobs < 1) jobs = 1;
    int64_t todo = 0;
    for (int i = 0; i < sw.n; i++) todo += sw.runs[i].done < sw.runs[i].o.steps;
    printf("sweep %s: %d runs (%" PRId64 " to train), %d at once, into %s\n", plan, sw.n, todo, jobs, out);
    train_install_signals();
    rc = train_all(&sw, jobs);
    if (train_interrupted()) {
      printf("sweep interrupted: each run saved its checkpoint; the same command continues it\n");
      rc = CLI_OK;
      goto done;
    }
    if (rc) goto done;
  }
  rc = CLI_FAIL;
  for (int i = 0; i < sw.n; i++) {
    sweep_run *r = &sw.runs[i];
    if (run_progress(r)) goto done;
    if (r->done < r->o.steps) {
      /* a run stopped early (its own interrupt): no results until every run is done */
      printf("sweep: run \"%s\" stopped at step %" PRId64 " of %" PRId64 "; the same command continues it\n",
             r->name, r->done, r->o.steps);
      rc = CLI_OK;
      goto done;
    }
    char *m = path_join(r->dir, "metrics.jsonl");
    int bad = run_curve_read(m, &r->c);
    free(m);
    if (bad || train_probe_checkpoint(&r->o, &c, r->dir, &r->ps)) goto done;
    r->probed = true;
  }
  if (write_results(out, &sw, command) || write_plots(out, &sw)) goto done;
  printf("results: %s/results.md, %s/results.json, %s/sink1.svg, %s/loss.svg\n", out, out, out, out);
  rc = CLI_OK;
done:
  if (rc == CLI_INPUT && created) remove_files_in(out, sweep_files, true);
  if (sw.plan || sw.runs) free_sweep(&sw);
  corpus_free(&c);
  free(out), free(command);
  return rc;
}
