#include "probe.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "args.h"
#include "corpus.h"
#include "errors.h"
#include "files.h"
#include "tokenize.h"
#include "trained_length.h"

/* ------------------------------------------------------------ gathering */

/* From the attention spec in the model's config (docs/attention.md): the window, how many of
 * the T queries see key 0 (causal with window=W: queries 0 .. W-1, with prefix=P also the P
 * prefix queries; without causal all), and the mean over queries of 1 / (keys the query sees),
 * what a head spreading each row evenly gives its first key. */
static void mask_facts(const asink_model *m, int T, probe_stats *ps) {
  long causal = 1, win = 0, prefix = 0;
  json_t *cfg = json_loads(asink_model_config(m), 0, NULL);
  const char *spec = json_string_value(json_object_get(json_object_get(cfg, "attnsink"), "attn"));
  for (const char *p = spec; p && *p;) {
    size_t n = strcspn(p, ",");
    if (!strncmp(p, "causal=", 7)) causal = strtol(p + 7, NULL, 10);
    else if (!strncmp(p, "window=", 7)) win = strtol(p + 7, NULL, 10);
    else if (!strncmp(p, "prefix=", 7)) prefix = strtol(p + 7, NULL, 10);
    p += n + (p[n] == ',');
  }
  json_decref(cfg);
  long v = !causal || !win ? T : win > prefix ? win : prefix;
  ps->window = causal ? (int)win : 0;
  ps->first_viewers = v < T ? (int)v : T;
  double even = 0.0;
  for (long t = 0; t < T; t++) {
    long seen = !causal ? T : t < prefix ? prefix : win && win < t + 1 ? win : t + 1;
    even += 1.0 / (double)(seen < T ? seen : T);
  }
  ps->window_uniform = (float)(even / T);
}

asink_status probe_run(asink_model *m, const int32_t *windows, int N, int T, int chunk, float eps,
                       probe_stats *ps) {
  memset(ps, 0, sizeof *ps);
  asink_metric *mt;
  asink_status s = asink_metric_create(&mt, eps);
  if (s) return s;
  if ((s = asink_model_attach_metric(m, mt))) {
    asink_metric_free(mt);
    return s;
  }
  if (chunk < 1) chunk = 1;
  /* every target ignored: the loss pass runs the model without a logits buffer */
  size_t per = (size_t)(chunk < N ? chunk : N) * T;
  int32_t *ignore = xmalloc(sizeof(int32_t) * per);
  for (size_t i = 0; i < per; i++) ignore[i] = -1;
  for (int i = 0; i < N && !s; i += chunk) {
    int nb = N - i < chunk ? N - i : chunk;
    float unused;
    s = asink_model_eval_loss(m, nb, T, windows + (size_t)i * T, ignore, &unused);
  }
  free(ignore);
  /* detach before reading: a failed read must not leave the model feeding a freed metric */
  asink_model_attach_metric(m, NULL);
  int n = 0, L = 0, H = 0, Tq = 0, Tk = 0;
  if (!s) {
    asink_metric_dims(mt, &n, &L, &H, &Tq, &Tk);
    ps->N = n, ps->L = L, ps->H = H, ps->T = Tq, ps->Tk = Tk, ps->eps = eps;
    float *imp = xmalloc(sizeof(float) * (size_t)n * L * H * Tk);
    ps->sink = xmalloc(sizeof(float) * Tk);
    ps->importance = xcalloc((size_t)L * H * Tk, sizeof(float));
    ps->hidden_norm = xmalloc(sizeof(float) * (size_t)(L + 1) * Tq);
    ps->key_norm = xmalloc(sizeof(float) * (size_t)L * Tq);
    ps->value_norm = xmalloc(sizeof(float) * (size_t)L * Tq);
    ps->qk_cosine = xmalloc(sizeof(float) * (size_t)L * H * Tq);
    ps->qk_norm = xmalloc(sizeof(float) * (size_t)L * H * Tq);
    ps->entropy = xmalloc(sizeof(float) * (size_t)L * H);
    ps->window_alpha = xcalloc((size_t)L * H, sizeof(float));
    float *win = xmalloc(sizeof(float) * (size_t)n * L * H);
    if (!(s = asink_metric_importance(mt, imp)) && !(s = asink_metric_sink(mt, ps->sink)) &&
        !(s = asink_metric_hidden_norm(mt, ps->hidden_norm)) &&
        !(s = asink_metric_key_norm(mt, ps->key_norm)) && !(s = asink_metric_value_norm(mt, ps->value_norm)) &&
        !(s = asink_metric_qk_cosine(mt, ps->qk_cosine)) &&
        !(s = asink_metric_qk_norm_product(mt, ps->qk_norm)) && !(s = asink_metric_entropy(mt, ps->entropy)) &&
        !(s = asink_metric_window_importance(mt, win)))
      s = asink_metric_window_sink(mt, &ps->window_sink);
    size_t per_seq = (size_t)L * H * Tk, heads = (size_t)L * H;
    for (int q = 0; q < n && !s; q++) {
      for (size_t j = 0; j < per_seq; j++) ps->importance[j] += imp[q * per_seq + j] / (float)n;
      for (size_t j = 0; j < heads; j++) ps->window_alpha[j] += win[q * heads + j] / (float)n;
    }
    mask_facts(m, Tq, ps);
    free(imp), free(win);
  }
  asink_metric_free(mt);
  if (s) probe_stats_free(ps);
  return s;
}

void probe_stats_free(probe_stats *ps) {
  free(ps->sink), free(ps->importance), free(ps->hidden_norm), free(ps->key_norm), free(ps->value_norm);
  free(ps->qk_cosine), free(ps->qk_norm), free(ps->entropy), free(ps->window_alpha);
  memset(ps, 0, sizeof *ps);
}

double probe_sink1(const probe_stats *ps) { return ps->Tk > 0 ? ps->sink[ps->Tk - ps->T] : NAN; }

double probe_alpha0(const probe_stats *ps, int l, int h) {
  return ps->importance[((size_t)l * ps->H + h) * ps->Tk + (ps->Tk - ps->T)];
}

double probe_first_alpha_bound(const probe_stats *ps) { return ps->T > 0 ? (double)ps->first_viewers / ps->T : NAN; }

/* ------------------------------------------------------------ output */

static json_t *floats(const float *v, size_t n) {
  json_t *a = json_array();
  for (size_t i = 0; i < n; i++) json_array_append_new(a, json_num(v[i]));
  return a;
}

static json_t *matrix(const float *v, int rows, int cols) {
  json_t *a = json_array();
  for (int r = 0; r < rows; r++) json_array_append_new(a, floats(v + (size_t)r * cols, (size_t)cols));
  return a;
}

/* (L, H, n) as nested arrays */
static json_t *per_head_rows(const float *v, int L, int H, int n) {
  json_t *a = json_array();
  for (int l = 0; l < L; l++) json_array_append_new(a, matrix(v + (size_t)l * H * n, H, n));
  return a;
}

json_t *probe_stats_json(const probe_stats *ps) {
  json_t *j = json_pack("{s:i, s:i, s:f, s:o, s:o, s:o, s:o, s:o}", "tokens", ps->T, "samples", ps->N, "eps",
                   (double)ps->eps, "sink", floats(ps->sink, (size_t)ps->Tk), "importance",
                   per_head_rows(ps->importance, ps->L, ps->H, ps->Tk), "hidden_norm",
                   matrix(ps->hidden_norm, ps->L + 1, ps->T), "key_norm", matrix(ps->key_norm, ps->L, ps->T),
                   "value_norm", matrix(ps->value_norm, ps->L, ps->T));
  if (!j) return NULL;
  json_object_set_new(j, "qk_cosine", per_head_rows(ps->qk_cosine, ps->L, ps->H, ps->T));
  json_object_set_new(j, "qk_norm", per_head_rows(ps->qk_norm, ps->L, ps->H, ps->T));
  json_object_set_new(j, "entropy", matrix(ps->entropy, ps->L, ps->H));
  json_object_set_new(j, "window_alpha", matrix(ps->window_alpha, ps->L, ps->H));
  json_object_set_new(j, "window_sink", json_num(ps->window_sink));
  json_object_set_new(j, "window_uniform", json_num(ps->window_uniform));
  json_object_set_new(j, "first_alpha_bound", json_num(probe_first_alpha_bound(ps)));
  return j;
}

/* Layers x heads of v[(l * H + h) * stride + col]. */
static void head_table(FILE *f, const probe_stats *ps, const float *v, int stride, int col) {
  fprintf(f, "      ");
  for (int h = 0; h < ps->H; h++) fprintf(f, "  %6s%d", "h", h);
  fputc('\n', f);
  for (int l = 0; l < ps->L; l++) {
    fprintf(f, "  L%-3d", l);
    for (int h = 0; h < ps->H; h++)
      fprintf(f, "  %7.3f", v[((size_t)l * ps->H + h) * stride + col]);
    fputc('\n', f);
  }
}

void probe_print(FILE *f, const probe_stats *ps) {
  int off = ps->Tk - ps->T;
  fprintf(f, "alpha of the first token (mean over %d samples of %d tokens), layers x heads:\n", ps->N, ps->T);
  head_table(f, ps, ps->importance, ps->Tk, off);
  if (off) {
    fprintf(f, "alpha of the virtual key k*, layers x heads:\n");
    head_table(f, ps, ps->importance, ps->Tk, 0);
  }
  int shown = ps->T < 8 ? ps->T : 8;
  fprintf(f, "Sink_k^%g (%%) of the first positions:\n  k   ", (double)ps->eps);
  if (off) fprintf(f, "  %7s", "*");
  for (int k = 1; k <= shown; k++) fprintf(f, "  %7d", k);
  fprintf(f, "\n      ");
  for (int k = 0; k < off + shown; k++) fprintf(f, "  %7.2f", ps->sink[k]);
  fputc('\n', f);
  if (ps->window) {
    fprintf(f, "window=%d: share of the first key each query sees (mean over samples), layers x heads:\n",
            ps->window);
    head_table(f, ps, ps->window_alpha, 1, 0);
    fprintf(f, "window sink^%g: %.2f%% of (sample, layer, head) triples above eps\n", (double)ps->eps,
            (double)ps->window_sink);
    fprintf(f, "  (a head spreading every row evenly over its keys scores %.3f%s)\n", (double)ps->window_uniform,
            ps->window_uniform >= ps->eps ? ": at or above eps, so the window sink cannot tell a sink from even "
                                            "attention here; give a larger --eps"
                                          : "");
  }
  double bound = probe_first_alpha_bound(ps);
  if (bound <= ps->eps)
    fprintf(f,
            "note: Sink_1 is 0 by construction here: only %d of the %d queries see the first token, so its "
            "alpha is at most %d/%d = %.3f, not above eps = %g. Its 0 is no evidence against a sink%s.\n",
            ps->first_viewers, ps->T, ps->first_viewers, ps->T, bound, (double)ps->eps,
            ps->window ? "; the window sink above is the measure that can show one" : "");
}

void probe_alpha_heatmap(svg *s, svg_box box, const probe_stats *ps, const char *title) {
  double *v = xmalloc(sizeof(double) * (size_t)ps->L * ps->H);
  for (int l = 0; l < ps->L; l++)
    for (int h = 0; h < ps->H; h++) v[l * ps->H + h] = probe_alpha0(ps, l, h);
  /* a fixed 0..1 scale: heatmaps of different runs compare by colour */
  svg_heatmap(s, box, title, ps->L, ps->H, v, "layer ", "head ", 0, 1, "%.2f");
  free(v);
}

/* One curve per row of v (rows x T) against the position 0..T-1. */
static void norm_chart(svg *s, svg_box box, const char *title, const char *ylabel, const float *v, int rows,
                       int T, int first_label) {
  double *x = xmalloc(sizeof(double) * T), *y = xmalloc(sizeof(double) * (size_t)rows * T);
  svg_series *ss = xcalloc((size_t)rows, sizeof *ss);
  char **names = xcalloc((size_t)rows, sizeof *names);
  for (int t = 0; t < T; t++) x[t] = t;
  for (int r = 0; r < rows; r++) {
    for (int t = 0; t < T; t++) y[(size_t)r * T + t] = v[(size_t)r * T + t];
    names[r] = r + first_label == 0 ? xstrdup("embedding") : xasprintf("layer %d", r + first_label - 1);
    ss[r] = (svg_series){names[r], x, y + (size_t)r * T, T, svg_colour(r + first_label), false};
  }
  svg_line_chart(s, box, title, "position", ylabel, ss, rows);
  for (int r = 0; r < rows; r++) free(names[r]);
  free(names), free(ss), free(x), free(y);
}

char *probe_plot_svg(const probe_stats *ps, const char *title, size_t *n) {
  const double W = 960, hm = fmax(260, 80 + 36.0 * ps->L), ch = 300;
  svg *s = svg_new(W, 40 + hm + ch);
  svg_text(s, W / 2, 24, 16, "middle", title);
  probe_alpha_heatmap(s, (svg_box){0, 40, W / 2, hm}, ps, "alpha of the first token (layer x head)");
  /* hidden norms run 0 (embedding) .. L; key and value norms 0 .. L-1 */
  norm_chart(s, (svg_box){W / 2, 40, W / 2, hm}, "hidden-state norm", "||h||", ps->hidden_norm, ps->L + 1,
             ps->T, 0);
  norm_chart(s, (svg_box){0, 40 + hm, W / 2, ch}, "key norm (after RoPE)", "||k||", ps->key_norm, ps->L,
             ps->T, 1);
  norm_chart(s, (svg_box){W / 2, 40 + hm, W / 2, ch}, "value norm", "||v||", ps->value_norm, ps->L, ps->T, 1);
  return svg_finish(s, n);
}

/* ------------------------------------------------------------ model tokens */

void model_token_info(const asink_model *m, int *vocab, int *bos) {
  asink_model_dims(m, NULL, NULL, NULL, NULL, NULL, vocab);
  *bos = -1;
  json_t *cfg = json_loads(asink_model_config(m), 0, NULL);
  json_t *b = json_object_get(json_object_get(cfg, "attnsink"), "bos");
  if (json_is_integer(b) && json_integer_value(b) >= 0) *bos = (int)json_integer_value(b);
  json_decref(cfg);
}

int model_is_byte_level(int vocab, int bos) {
  return (vocab == 256 && bos < 0) || (vocab == 257 && bos == 256);
}

/* ------------------------------------------------------------ the subcommand */


int read_token_ids(const char *cmd, const char *flag, const char *path, int vocab, size_t need, int32_t **ids,
                   size_t *n) {
  unsigned char *data;
  size_t len;
  if (read_whole_file(path, &data, &len)) {
    cli_error("%s: --%s %s: cannot read: %s", cmd, flag, path, read_error());
    return -1;
  }
  size_t cap = 1024, k = 0;
  int32_t *out = xmalloc(sizeof(int32_t) * cap);
  char *p = (char *)data;
  for (;;) {
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == '\f' || *p == '\v') p++;
    if (!*p || k == need) break;
    char *end;
    errno = 0;
    long long v = strtoll(p, &end, 10);
    bool sep = !*end || strchr(" \t\n\r\f\v", *end);
    if (end == p || !sep || errno) {
      int w = (int)strcspn(p, " \t\n\r\f\v");
      cli_error("%s: --%s %s: item %zu '%.*s' is not an integer", cmd, flag, path, k + 1, w > 40 ? 40 : w, p);
      goto bad;
    }
    if (v < 0 || v >= vocab) {
      cli_error("%s: --%s %s: id %lld (item %zu) is outside the model's vocabulary [0, %d)", cmd, flag, path,
                v, k + 1, vocab);
      goto bad;
    }
    if (k == cap) out = realloc(out, sizeof(int32_t) * (cap *= 2));
    if (!out) exit(CLI_FAIL);
    out[k++] = (int32_t)v;
    p = end;
  }
  free(data);
  *ids = out, *n = k;
  return 0;
bad:
  free(data);
  free(out);
  return -1;
}

/* The checkpoint's tokenizer, if it has tokenizer files; NULL without (or, when the text
 * does not need it, after a note that it could not be read). -1 after an error line. */
static int probe_tokenizer(const cli_opts *o, asink_tokenizer **tok) {
  *tok = NULL;
  char *tj = path_join(o->dir, "tokenizer.json"), *ej = path_join(o->dir, "encoder.json");
  bool files = path_exists(tj) || path_exists(ej);
  free(tj), free(ej);
  if (!files || !asink_tokenizer_load(tok, o->dir)) return 0;
  if (o->text) {
    cli_error("probe: --text %s: the checkpoint's tokenizer: %s", o->text, asink_last_error());
    return -1;
  }
  fprintf(stderr, "attnsink: note: the checkpoint's tokenizer files are not used: %s\n", asink_last_error());
  return 0;
}

/* The BOS of the windows: --bos / --no-bos, else the model config's own, else the
 * tokenizer's if its settings add one. -2 after an error line. */
static int probe_bos(const cli_opts *o, int model_bos, const asink_tokenizer *tok, int vocab) {
  int adds = 0;
  int32_t tok_bos = tok ? asink_tokenizer_bos(tok, &adds) : -1;
  if (o->bos == 0) return -1;
  int bos = model_bos >= 0 ? model_bos : o->bos == 1 || adds ? tok_bos : -1;
  if (o->bos == 1 && bos < 0) {
    cli_error("probe: --bos: the checkpoint names no BOS id (its config has none%s)",
              tok ? " and its tokenizer files name none" : " and it has no tokenizer files");
    return -2;
  }
  if (bos >= vocab) {
    cli_error("probe: the BOS id %d of the tokenizer files is outside the model's vocabulary [0, %d)", bos,
              vocab);
    return -2;
  }
  return bos;
}

/* The windows of --text: the tokenizer's ids, or the bytes of a byte-level model. */
static int text_windows(const cli_opts *o, const asink_tokenizer *tok, int vocab, int model_bos, int bos,
                        size_t *have, int32_t **windows) {
  if (tok) {
    int32_t *ids;
    if (tokenize_file("probe", tok, o->text, &ids, have)) return -1;
    for (size_t i = 0; i < *have; i++)
      if (ids[i] >= vocab) {
        cli_error("probe: --text %s: the tokenizer gave id %d (token %zu), outside the model's vocabulary "
                  "[0, %d)",
                  o->text, ids[i], i + 1, vocab);
        free(ids);
        return -1;
      }
    int count = cut_windows(ids, *have, o->tokens, bos, o->samples, windows);
    free(ids);
    return count;
  }
  if (!model_is_byte_level(vocab, model_bos)) {
    cli_error("probe: model %s has no tokenizer files (tokenizer.json, or encoder.json + vocab.bpe) and is not "
              "byte-level (vocabulary %d%s): --text needs one of them; give --token-ids FILE",
              o->dir, vocab, model_bos >= 0 ? ", with a BOS id" : "");
    return -1;
  }
  unsigned char *bytes;
  if (read_whole_file(o->text, &bytes, have)) {
    cli_error("probe: --text %s: cannot read: %s", o->text, read_error());
    return -1;
  }
  int count = cut_byte_windows(bytes, *have, o->tokens, bos, o->samples, windows);
  free(bytes);
  return count;
}

/* --random-tokens: samples windows of ids uniform in [0, n_ids); --repeat-token: one
 * window of that id (more would all be the same). */
static int synthetic_windows(const cli_opts *o, int n_ids, int bos, int32_t **windows) {
  int count = o->random_tokens ? o->samples : 1;
  *windows = xmalloc(sizeof(int32_t) * (size_t)count * o->tokens);
  cli_rng r;
  rng_seed(&r, o->seed);
  for (int w = 0; w < count; w++)
    for (int t = 0; t < o->tokens; t++)
      (*windows)[(size_t)w * o->tokens + t] = t == 0 && bos >= 0 ? bos
                                              : o->random_tokens ? (int32_t)rng_below(&r, (uint64_t)n_ids)
                                                                 : o->repeat_token;
  return count;
}

static const cli_opts probe_defaults = {.tokens = 64, .samples = 100, .eps = 0.3, .bos = -1,
                                        .weights = "fp32"};

int cmd_probe(int argc, char **argv) {
  cli_opts o = probe_defaults;
  int rc = args_parse(CMD_PROBE, argc, argv, &o);
  if (rc < 0) {
    cli_usage(CMD_PROBE, &probe_defaults);
    return CLI_OK;
  }
  if (rc) return rc;
  if (!o.dir) {
    cli_error("probe: a checkpoint directory is required: attnsink probe DIR (--text FILE | --token-ids FILE | "
              "--random-tokens | --repeat-token ID)");
    return CLI_INPUT;
  }
  bool repeat = args_flag_given(&o, "repeat-token");
  if (!!o.text + !!o.token_ids + !!o.random_tokens + repeat != 1) {
    cli_error(
        "probe: give exactly one of --text FILE, --token-ids FILE, --random-tokens and --repeat-token ID");
    return CLI_INPUT;
  }
  if (check_output_path("probe", "json", o.json) || check_output_path("probe", "plot", o.plot))
    return CLI_INPUT;
  if (o.threads && asink_set_num_threads(o.threads)) {
    cli_error("probe: --threads: %s", asink_last_error());
    return CLI_INPUT;
  }
  if (!is_dir(o.dir)) {
    cli_error("probe: checkpoint %s: %s", o.dir,
              path_exists(o.dir) ? "is not a directory" : "no such directory");
    return CLI_INPUT;
  }
  asink_model *m;
  char load_opts[32];
  snprintf(load_opts, sizeof load_opts, "weights=%s", o.weights);
  if (asink_model_load_opts(&m, o.dir, load_opts)) {
    cli_error("probe: checkpoint %s: %s", o.dir, asink_last_error());
    return CLI_INPUT;
  }
  int vocab, model_bos;
  model_token_info(m, &vocab, &model_bos);
  rc = CLI_INPUT;
  int32_t *windows = NULL;
  probe_stats ps = {0};
  char *plot = NULL, *src = NULL;
  bool wrote_json = false;
  asink_tokenizer *tok = NULL;
  if (probe_tokenizer(&o, &tok)) goto done;
  int bos = probe_bos(&o, model_bos, tok, vocab);
  if (bos == -2) goto done;
  if (bos >= 0 && o.tokens < 2) {
    cli_error("probe: --tokens=%d: every window starts with BOS, so at least 2 are needed", o.tokens);
    goto done;
  }
  if (repeat && o.repeat_token >= vocab) {
    cli_error("probe: --repeat-token=%d is outside the model's vocabulary [0, %d)", o.repeat_token, vocab);
    goto done;
  }
  size_t per = (size_t)o.tokens - (bos >= 0 ? 1 : 0), have = 0;
  int count;
  if (o.text) {
    src = xstrdup(o.text);
    count = text_windows(&o, tok, vocab, model_bos, bos, &have, &windows);
  } else if (o.token_ids) {
    src = xstrdup(o.token_ids);
    int32_t *ids;
    if (read_token_ids("probe", "token-ids", o.token_ids, vocab, per * (size_t)o.samples, &ids, &have))
      goto done;
    count = cut_windows(ids, have, o.tokens, bos, o.samples, &windows);
    free(ids);
  } else {
    /* random ids stay within the tokenizer's ids when the model's embedding is padded past them */
    int n_ids = tok && asink_tokenizer_vocab_size(tok) < vocab ? asink_tokenizer_vocab_size(tok) : vocab;
    src = o.random_tokens ? xasprintf("random tokens (seed %llu)", (unsigned long long)o.seed)
                          : xasprintf("token %d repeated", o.repeat_token);
    count = synthetic_windows(&o, n_ids, bos, &windows);
  }
  if (count < 0) goto done;
  if (count < 1) {
    cli_error("probe: %s holds %zu tokens, fewer than one window of %d (%zu from the file%s)", src, have,
              o.tokens, per, bos >= 0 ? " after the BOS" : "");
    goto done;
  }
  if (count < o.samples && !repeat)
    fprintf(stderr, "attnsink: note: %s holds %d windows of %d tokens; probing %d, not %d\n", src, count,
            o.tokens, count, o.samples);
  note_past_trained_length(m, o.dir, "probe", "tokens", o.tokens);
  int chunk = 4096 / o.tokens > 0 ? 4096 / o.tokens : 1;
  asink_status s = probe_run(m, windows, count, o.tokens, chunk, (float)o.eps, &ps);
  if (s) {
    cli_error("probe: %s", asink_last_error());
    rc = (s == ASINK_ERR_ARG || s == ASINK_ERR_SHAPE) ? CLI_INPUT : CLI_FAIL;
    goto done;
  }
  rc = CLI_FAIL;
  printf("probe of %s on %s", o.dir, src);
  if (bos >= 0) printf(", every window starting with BOS id %d", bos);
  putchar('\n');
  probe_print(stdout, &ps);
  size_t plot_n = 0;
  if (o.plot) {
    char *title = xasprintf("attnsink probe: %s", o.dir);
    plot = probe_plot_svg(&ps, title, &plot_n);
    free(title);
  }
  if (o.json) {
    json_t *j = probe_stats_json(&ps);
    int w = j ? write_json_atomic(o.json, j, JSON_INDENT(1) | JSON_REAL_PRECISION(7)) : -1;
    json_decref(j);
    if (w) goto done;
    wrote_json = true;
  }
  if (o.plot && write_file_atomic(o.plot, plot, plot_n)) {
    if (wrote_json) unlink(o.json); /* both outputs or neither */
    goto done;
  }
  rc = CLI_OK;
done:
  free(plot);
  free(src);
  free(windows);
  asink_tokenizer_free(tok);
  probe_stats_free(&ps);
  asink_model_free(m);
  return rc;
}
