#include "stream.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <attnsink.h>
#include <jansson.h>

#include "args.h"
#include "errors.h"
#include "files.h"
#include "generate.h"
#include "probe.h"
#include "svg.h"
#include "train.h"

enum { MAX_POLICIES = 3 };

/* One policy's pass over the stream. Step t feeds the token at position t; its
 * logits predict the token at t + 1, and its loss and sink share go to the bucket
 * holding t. Steps run 0 .. P - 1 with P = n - 1 (the last token is only a target).
 * A prefix-LM's prefix attends to itself, so its steps go in one first decode call. */
typedef struct {
  const char *policy;
  int window;
  double *loss_sum, *share_sum; /* (nb) */
  int64_t *loss_n, *share_n;    /* (nb) */
  double *layer_share;          /* (L): mean over steps and heads */
  double mean_loss, seconds;
  size_t cache_bytes; /* the most the cache held during the pass */
  long peak_rss_kib;
} stream_run;

typedef struct {
  cli_opts o;
  decode_model dm;
  const char *src;
  int32_t *tok;
  int64_t n, P; /* tokens in the stream; steps (= predictions) */
  int nb;
  int64_t *edges; /* (nb + 1): bucket i holds steps edges[i] <= t < edges[i + 1] */
  int first;      /* steps in the first decode call: 1, or a prefix-LM's prefix */
  bool added_bos, rss_per_run, tty;
  int n_runs;
  stream_run runs[MAX_POLICIES];
} stream_job;

static const cli_opts stream_defaults = {
    .tokens = STREAM_DEFAULT_TOKENS, .cache = "sink", .n_sink = 4, .buckets = STREAM_DEFAULT_BUCKETS};

static const char *const policy_names[] = {"full", "window", "sink"};

/* --cache full,window,sink: known names, each once. 0, or -1 after an error line. */
static int parse_policies(const char *list, const char **out, int *n) {
  *n = 0;
  for (const char *p = list;;) {
    size_t w = strcspn(p, ",");
    int k = -1;
    for (int i = 0; i < 3; i++)
      if (strlen(policy_names[i]) == w && !strncmp(p, policy_names[i], w)) k = i;
    if (k < 0) {
      cli_error("stream: --cache=%s: '%.*s' is not one of: full window sink", list, (int)w, p);
      return -1;
    }
    for (int i = 0; i < *n; i++)
      if (out[i] == policy_names[k]) {
        cli_error("stream: --cache=%s names %s twice", list, policy_names[k]);
        return -1;
      }
    out[(*n)++] = policy_names[k];
    if (!p[w]) return 0;
    p += w + 1;
  }
}

static int bucket_of(const stream_job *j, int64_t t) {
  /* the largest i with floor(i P / nb) <= t */
  return (int)(((t + 1) * j->nb - 1) / j->P);
}

/* Linux: "5" in /proc/self/clear_refs resets the peak resident set to the current
 * one, so each run's ru_maxrss is its own. false where that is not possible. */
static bool reset_peak_rss(void) {
  int fd = open("/proc/self/clear_refs", O_WRONLY);
  if (fd < 0) return false;
  bool ok = write(fd, "5", 1) == 1;
  close(fd);
  return ok;
}

static long peak_rss_kib(void) {
  struct rusage ru;
  return getrusage(RUSAGE_SELF, &ru) == 0 ? ru.ru_maxrss : -1;
}

/* Decode call `call` (one metric record) holds step call + first - 1, or steps
 * 0 .. first - 1 for the first call: its share counts once, at step 0. */
static void add_share(void *ctx, int64_t call, double share) {
  void **c = ctx;
  const stream_job *j = c[0];
  stream_run *r = c[1];
  int64_t step = call ? call + j->first - 1 : 0;
  if (step >= j->P) return;
  int b = bucket_of(j, step);
  r->share_sum[b] += share;
  r->share_n[b]++;
}

/* -log softmax(logits)[next], in double */
static double token_loss(const float *logits, int V, int32_t next) {
  float mx = logits[0];
  for (int v = 1; v < V; v++)
    if (logits[v] > mx) mx = logits[v];
  double se = 0;
  for (int v = 0; v < V; v++) se += exp((double)logits[v] - mx);
  return log(se) + mx - logits[next];
}

static void progress(const stream_job *j, const char *policy, int64_t t, double t0, bool done) {
  if (!j->tty) return;
  if (done) {
    fputs("\r\033[K", stdout);
  } else {
    double dt = now_seconds() - t0;
    printf("\r%-6s %" PRId64 "/%" PRId64 " tokens  %.0f tok/s\033[K", policy, t, j->P, dt > 0 ? t / dt : 0.0);
  }
  fflush(stdout);
}

/* One pass. CLI_OK, or CLI_FAIL after an error line (the input was checked before). */
static int run_policy(stream_job *j, asink_model *m, stream_run *r) {
  const int V = j->dm.vocab, L = j->dm.n_layer, nb = j->nb;
  r->loss_sum = xcalloc((size_t)nb, sizeof(double));
  r->share_sum = xcalloc((size_t)nb, sizeof(double));
  r->loss_n = xcalloc((size_t)nb, sizeof(int64_t));
  r->share_n = xcalloc((size_t)nb, sizeof(int64_t));
  r->layer_share = xcalloc((size_t)L, sizeof(double));
  if (!reset_peak_rss()) j->rss_per_run = false;
  asink_cache *c = NULL;
  share_meter sm = {0};
  float *logits = xmalloc(sizeof(float) * V * (size_t)j->first);
  int rc = CLI_FAIL;
  if (decode_cache_create("stream", m, r->policy, j->o.n_sink, r->window, j->n, &c)) goto done;
  if (share_meter_start(&sm, m, L, j->dm.n_head, 1024)) {
    cli_error("stream: metric: %s", asink_last_error());
    goto done;
  }
  void *ctx[2] = {j, r};
  double t0 = now_seconds(), last = t0, total = 0;
  for (int64_t t = 0; t < j->P;) {
    int k = t ? 1 : j->first;
    if (asink_model_decode(m, c, k, j->tok + t, logits)) {
      progress(j, r->policy, t, t0, true);
      cli_error("stream: --cache %s: position %" PRId64 ": %s", r->policy, t, asink_last_error());
      goto done;
    }
    for (int i = 0; i < k; i++, t++) {
      double loss = token_loss(logits + (size_t)i * V, V, j->tok[t + 1]);
      int b = bucket_of(j, t);
      r->loss_sum[b] += loss;
      r->loss_n[b]++;
      total += loss;
    }
    size_t bytes = asink_cache_bytes(c);
    if (bytes > r->cache_bytes) r->cache_bytes = bytes;
    if (asink_metric_decode_steps(sm.mt) >= sm.cap && share_meter_drain(&sm, add_share, ctx)) {
      cli_error("stream: metric: %s", asink_last_error());
      goto done;
    }
    if (j->tty && ((t & 255) == 0)) {
      double now = now_seconds();
      if (now - last >= 0.25) progress(j, r->policy, t, t0, false), last = now;
    }
  }
  r->seconds = now_seconds() - t0;
  progress(j, r->policy, j->P, t0, true);
  if (share_meter_drain(&sm, add_share, ctx)) {
    cli_error("stream: metric: %s", asink_last_error());
    goto done;
  }
  r->mean_loss = total / (double)j->P;
  for (int l = 0; l < L; l++)
    r->layer_share[l] = sm.steps > 0 ? sm.layer_sum[l] / ((double)sm.steps * j->dm.n_head) : NAN;
  rc = CLI_OK;
done:
  share_meter_stop(&sm, m);
  asink_cache_free(c);
  free(logits);
  r->peak_rss_kib = peak_rss_kib();
  return rc;
}

static void free_run(stream_run *r) {
  free(r->loss_sum), free(r->share_sum), free(r->loss_n), free(r->share_n), free(r->layer_share);
}

static double bucket_mean(const double *sum, const int64_t *n, int b) { return n[b] ? sum[b] / n[b] : NAN; }

static void cache_label(char *buf, size_t n, const stream_job *j, const stream_run *r) {
  if (!strcmp(r->policy, "full")) snprintf(buf, n, "-");
  else if (!strcmp(r->policy, "window")) snprintf(buf, n, "%d", r->window);
  else snprintf(buf, n, "%d+%d", j->o.n_sink, r->window);
}

static void print_summary(FILE *f, const stream_job *j, const char *dir) {
  fprintf(f, "stream of %s on %s: %" PRId64 " tokens%s, fed one at a time", dir, j->src, j->n,
          j->added_bos ? " (BOS first)" : "");
  if (j->dm.context > 0) fprintf(f, "; model context %d%s", j->dm.context, j->dm.learned ? " (learned)" : "");
  fputc('\n', f);
  fprintf(f, "%-8s %10s %10s %12s %13s %10s\n", "cache", "positions", "tokens/s", "cache KiB", "peak RSS MiB",
          "mean loss");
  for (int i = 0; i < j->n_runs; i++) {
    const stream_run *r = &j->runs[i];
    char lab[48];
    cache_label(lab, sizeof lab, j, r);
    fprintf(f, "%-8s %10s %10.0f %12.1f %13.1f %10.4f\n", r->policy, lab,
            r->seconds > 0 ? j->P / r->seconds : 0.0, r->cache_bytes / 1024.0, r->peak_rss_kib / 1024.0,
            r->mean_loss);
  }
  fprintf(f, "loss (nats per token) per position bucket:\n  %-21s", "positions");
  for (int i = 0; i < j->n_runs; i++) fprintf(f, " %9s", j->runs[i].policy);
  fputc('\n', f);
  for (int b = 0; b < j->nb; b++) {
    char lab[48];
    snprintf(lab, sizeof lab, "%" PRId64 "-%" PRId64, j->edges[b], j->edges[b + 1] - 1);
    fprintf(f, "  %-21s", lab);
    for (int i = 0; i < j->n_runs; i++)
      fprintf(f, " %9.4f", bucket_mean(j->runs[i].loss_sum, j->runs[i].loss_n, b));
    fputc('\n', f);
  }
  fprintf(f, "sink share per layer (attention on the first %d positions, mean over steps and heads):\n  %-8s",
          j->o.n_sink, "");
  for (int l = 0; l < j->dm.n_layer; l++) fprintf(f, " %7s%d", "L", l);
  fputc('\n', f);
  for (int i = 0; i < j->n_runs; i++) {
    fprintf(f, "  %-8s", j->runs[i].policy);
    for (int l = 0; l < j->dm.n_layer; l++) fprintf(f, " %8.3f", j->runs[i].layer_share[l]);
    fputc('\n', f);
  }
}

static json_t *doubles(const double *v, int n) {
  json_t *a = json_array();
  for (int i = 0; i < n; i++) json_array_append_new(a, json_num(v[i]));
  return a;
}

static json_t *stream_json(const stream_job *j, const char *dir) {
  json_t *edges = json_array(), *runs = json_array();
  for (int b = 0; b <= j->nb; b++) json_array_append_new(edges, json_integer(j->edges[b]));
  double *tmp = xmalloc(sizeof(double) * (size_t)j->nb);
  for (int i = 0; i < j->n_runs; i++) {
    const stream_run *r = &j->runs[i];
    for (int b = 0; b < j->nb; b++) tmp[b] = bucket_mean(r->loss_sum, r->loss_n, b);
    json_t *loss = doubles(tmp, j->nb);
    for (int b = 0; b < j->nb; b++) tmp[b] = bucket_mean(r->share_sum, r->share_n, b);
    json_t *share_b = doubles(tmp, j->nb);
    json_t *jr =
        json_pack("{s:s, s:i, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:I, s:I}", "cache", r->policy, "n_sink",
                  j->o.n_sink, "window", strcmp(r->policy, "full") ? json_integer(r->window) : json_null(),
                  "mean_loss", json_num(r->mean_loss), "loss", loss, "sink_share",
                  doubles(r->layer_share, j->dm.n_layer), "sink_share_by_bucket", share_b, "seconds",
                  json_num(r->seconds), "tokens_per_s", json_num(r->seconds > 0 ? j->P / r->seconds : NAN),
                  "cache_bytes", (json_int_t)r->cache_bytes, "peak_rss_kib", (json_int_t)r->peak_rss_kib);
    json_array_append_new(runs, jr);
  }
  free(tmp);
  return json_pack("{s:s, s:s, s:I, s:I, s:b, s:o, s:i, s:o, s:b, s:o}", "model", dir, "source", j->src,
                   "tokens", (json_int_t)j->n, "predictions", (json_int_t)j->P, "bos", j->added_bos,
                   "context", j->dm.context > 0 ? json_integer(j->dm.context) : json_null(), "buckets", j->nb,
                   "bucket_edges", edges, "peak_rss_per_run", j->rss_per_run, "runs", runs);
}

/* A policy's colour is fixed by its name, so a plot of `--cache sink,window` shows each
 * in the colour it has in one of `--cache full,window,sink`. */
static const char *policy_colour(const char *policy) {
  for (int i = 0; i < MAX_POLICIES; i++)
    if (!strcmp(policy, policy_names[i])) return svg_colour(i);
  return svg_colour(MAX_POLICIES);
}

static char *stream_plot_svg(const stream_job *j, const char *title, size_t *n) {
  const double W = 960, H = 440;
  svg *s = svg_new(W, 40 + H);
  svg_text(s, W / 2, 24, 16, "middle", title);
  int nr = j->n_runs, nb = j->nb;
  double *x = xmalloc(sizeof(double) * nb), *loss = xmalloc(sizeof(double) * nb * nr),
         *share = xmalloc(sizeof(double) * nb * nr);
  svg_series ls[MAX_POLICIES], ss[MAX_POLICIES];
  for (int b = 0; b < nb; b++) x[b] = 0.5 * (double)(j->edges[b] + j->edges[b + 1] - 1);
  for (int i = 0; i < nr; i++) {
    const stream_run *r = &j->runs[i];
    for (int b = 0; b < nb; b++) {
      loss[i * nb + b] = bucket_mean(r->loss_sum, r->loss_n, b);
      share[i * nb + b] = bucket_mean(r->share_sum, r->share_n, b);
    }
    ls[i] = (svg_series){r->policy, x, loss + i * nb, nb, policy_colour(r->policy), false};
    ss[i] = (svg_series){r->policy, x, share + i * nb, nb, policy_colour(r->policy), false};
  }
  /* where the stream passes the model's context: a vertical mark on the loss chart */
  svg_chart_opts loss_axes = {.x_from_zero = true, .mark_x = NAN};
  if (j->dm.context > 0 && j->dm.context < j->P)
    loss_axes.mark_x = j->dm.context, loss_axes.mark_label = "end of the model's context";
  svg_line_chart_opts(s, (svg_box){0, 40, W / 2, H}, "loss per position bucket", "position in the stream (tokens)",
                      "loss (nats per token)", ls, nr, &loss_axes);
  char *st = xasprintf("sink share (first %d positions)", j->o.n_sink);
  svg_chart_opts share_axes = {.x_from_zero = true, .y_from_zero = true};
  svg_line_chart_opts(s, (svg_box){W / 2, 40, W / 2, H}, st, "position in the stream (tokens)",
                      "attention share, mean over layers and heads", ss, nr, &share_axes);
  free(st);
  free(x), free(loss), free(share);
  return svg_finish(s, n);
}

int cmd_stream(int argc, char **argv) {
  stream_job j;
  memset(&j, 0, sizeof j);
  j.o = stream_defaults;
  cli_opts *o = &j.o;
  int rc = args_parse(CMD_STREAM, argc, argv, o);
  if (rc < 0) {
    cli_usage(CMD_STREAM, &stream_defaults);
    return CLI_OK;
  }
  if (rc) return rc;
  if (!o->dir) {
    cli_error(
        "stream: a checkpoint directory is required: attnsink stream DIR (--text FILE | --token-ids FILE)");
    return CLI_INPUT;
  }
  if (!o->text == !o->token_ids) {
    cli_error("stream: give exactly one of --text FILE and --token-ids FILE");
    return CLI_INPUT;
  }
  const char *policies[MAX_POLICIES];
  if (parse_policies(o->cache, policies, &j.n_runs)) return CLI_INPUT;
  if (check_output_path("stream", "json", o->json) || check_output_path("stream", "plot", o->plot))
    return CLI_INPUT;
  if (o->threads && asink_set_num_threads(o->threads)) {
    cli_error("stream: --threads: %s", asink_last_error());
    return CLI_INPUT;
  }
  if (!is_dir(o->dir)) {
    cli_error("stream: checkpoint %s: %s", o->dir,
              path_exists(o->dir) ? "is not a directory" : "no such directory");
    return CLI_INPUT;
  }
  asink_model *m;
  if (asink_model_load(&m, o->dir)) {
    cli_error("stream: checkpoint %s: %s", o->dir, asink_last_error());
    return CLI_INPUT;
  }
  decode_threads(m, o);
  decode_model_info(m, &j.dm);
  bool to_full = decode_default_cache(o, &j.dm);
  if (to_full) parse_policies(o->cache, policies, &j.n_runs);
  j.src = o->text ? o->text : o->token_ids;
  j.tty = isatty(STDOUT_FILENO);
  j.rss_per_run = true;
  rc = CLI_INPUT;
  char *plot = NULL;
  bool wrote_json = false;
  size_t cap = (size_t)o->tokens, have = 0;
  j.tok = xmalloc(sizeof(int32_t) * (cap + 1));
  if (o->text) {
    if (!model_is_byte_level(j.dm.vocab, j.dm.bos)) {
      cli_error(
          "stream: model %s is not byte-level (vocabulary %d%s): --text needs one; give --token-ids FILE",
          o->dir, j.dm.vocab, j.dm.bos >= 0 ? ", with a BOS id" : "");
      goto done;
    }
    unsigned char *bytes;
    if (read_whole_file(o->text, &bytes, &have)) {
      cli_error("stream: --text %s: cannot read: %s", o->text, read_error());
      goto done;
    }
    if (j.dm.bos >= 0) j.tok[j.n++] = j.dm.bos, j.added_bos = true;
    for (size_t i = 0; i < have && (size_t)j.n < cap; i++) j.tok[j.n++] = bytes[i];
    free(bytes);
  } else {
    int32_t *ids;
    if (read_token_ids("stream", "token-ids", o->token_ids, j.dm.vocab, cap, &ids, &have)) goto done;
    /* BOS first, as in training, unless the file starts with it already */
    if (j.dm.bos >= 0 && !(have > 0 && ids[0] == j.dm.bos)) j.tok[j.n++] = j.dm.bos, j.added_bos = true;
    for (size_t i = 0; i < have && (size_t)j.n < cap; i++) j.tok[j.n++] = ids[i];
    free(ids);
  }
  if (j.n < 2) {
    cli_error("stream: %s holds %zu tokens%s: at least 2 are needed, one to feed and one to predict", j.src,
              have, j.added_bos ? " after the BOS" : "");
    goto done;
  }
  j.P = j.n - 1;
  j.nb = (int64_t)o->buckets < j.P ? o->buckets : (int)j.P;
  j.first = j.dm.prefix > 1 ? (j.dm.prefix < j.P ? j.dm.prefix : (int)j.P) : 1;
  j.edges = xmalloc(sizeof(int64_t) * (size_t)(j.nb + 1));
  for (int b = 0; b <= j.nb; b++) j.edges[b] = (int64_t)b * j.P / j.nb;
  /* every policy is checked, down to the library's own checks, before any runs */
  for (int i = 0; i < j.n_runs; i++) {
    stream_run *r = &j.runs[i];
    r->policy = policies[i];
    r->window = decode_window(o, &j.dm, r->policy);
    if (decode_check("stream", o, &j.dm, r->policy, r->window, j.n)) goto done;
    asink_cache *c;
    if ((rc = decode_cache_create("stream", m, r->policy, o->n_sink, r->window, j.n, &c))) goto done;
    asink_cache_free(c);
    rc = CLI_INPUT;
  }
  if (to_full) decode_note_full("stream", &j.dm);
  rc = CLI_FAIL;
  for (int i = 0; i < j.n_runs; i++)
    if (run_policy(&j, m, &j.runs[i])) goto done;
  print_summary(stdout, &j, o->dir);
  size_t plot_n = 0;
  if (o->plot) {
    char *title = xasprintf("attnsink stream: %s on %s", o->dir, j.src);
    plot = stream_plot_svg(&j, title, &plot_n);
    free(title);
  }
  if (o->json) {
    json_t *js = stream_json(&j, o->dir);
    int w = js ? write_json_atomic(o->json, js, JSON_INDENT(1) | JSON_REAL_PRECISION(7)) : -1;
    json_decref(js);
    if (w) goto done;
    wrote_json = true;
  }
  if (o->plot && write_file_atomic(o->plot, plot, plot_n)) {
    if (wrote_json) unlink(o->json); /* both outputs or neither */
    goto done;
  }
  rc = CLI_OK;
done:
  free(plot);
  for (int i = 0; i < j.n_runs; i++) free_run(&j.runs[i]);
  free(j.edges);
  free(j.tok);
  asink_model_free(m);
  return rc;
}
