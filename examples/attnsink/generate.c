#include "generate.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "errors.h"
#include "files.h"
#include "probe.h"
#include "train.h"

/* ------------------------------------------------------------ shared with stream */

void decode_model_info(const asink_model *m, decode_model *dm) {
  memset(dm, 0, sizeof *dm);
  model_token_info(m, &dm->vocab, &dm->bos);
  asink_model_dims(m, &dm->n_layer, &dm->n_head, NULL, NULL, NULL, NULL);
  json_t *cfg = json_loads(asink_model_config(m), 0, NULL);
  static const char *const ctx_keys[] = {"max_position_embeddings", "n_positions", "n_ctx"};
  for (int i = 0; i < 3 && !dm->context; i++) {
    json_t *v = json_object_get(cfg, ctx_keys[i]);
    if (json_is_integer(v) && json_integer_value(v) > 0 && json_integer_value(v) <= INT32_MAX)
      dm->context = (int)json_integer_value(v);
  }
  json_t *as = json_object_get(cfg, "attnsink");
  const char *pos = json_string_value(json_object_get(as, "positions"));
  /* a gpt2 config without the attnsink object has learned positions (wpe) */
  const char *type = json_string_value(json_object_get(cfg, "model_type"));
  dm->learned = pos ? !strcmp(pos, "learned") : (type && !strcmp(type, "gpt2"));
  dm->absolute = dm->learned || (pos && !strcmp(pos, "sinusoidal"));
  dm->sink_token = json_is_true(json_object_get(as, "sink_token"));
  const char *spec = json_string_value(json_object_get(as, "attn"));
  const char *pre = spec ? strstr(spec, ",prefix=") : NULL;
  if (pre) dm->prefix = atoi(pre + 8);
  json_decref(cfg);
}

void decode_threads(asink_model *m, const cli_opts *o) {
  if (o->threads || getenv("ASINK_NUM_THREADS")) return;
  /* counted from the shapes: no pointer into the weights (those kept in bf16 have none) */
  size_t n = 0;
  for (int i = 0; i < asink_model_param_count(m); i++) {
    int ndim;
    int64_t shape[4];
    if (asink_model_param_info(m, i, NULL, &ndim, shape)) return;
    size_t numel = 1;
    for (int d = 0; d < ndim; d++) numel *= (size_t)shape[d];
    n += numel;
  }
  if (n < DECODE_ONE_THREAD_PARAMS) asink_set_num_threads(1);
}

bool decode_default_cache(cli_opts *o, const decode_model *dm) {
  if (args_flag_given(o, "cache") || !dm->absolute) return false;
  o->cache = "full";
  return true;
}

void decode_note_full(const char *cmd, const decode_model *dm) {
  fprintf(stderr,
          "attnsink: note: %s: the model has %s positions, which only a full cache can keep; using "
          "--cache full\n",
          cmd, dm->learned ? "learned" : "sinusoidal");
}

int decode_window(const cli_opts *o, const decode_model *dm, const char *policy) {
  if (o->window) return o->window;
  int w = DEFAULT_WINDOW;
  if (dm->context > 0) {
    int room = dm->context - (!strcmp(policy, "sink") ? o->n_sink : 0);
    if (room < w) w = room;
  }
  return w;
}

int decode_check(const char *cmd, const cli_opts *o, const decode_model *dm, const char *policy, int window,
                 int64_t max_len) {
  if (!strcmp(policy, "sink") && o->n_sink >= window) {
    if (o->window)
      cli_error(
          "%s: --n-sink=%d must be below --window=%d (a sink cache keeps the first K positions and "
          "the last W)",
          cmd, o->n_sink, o->window);
    else
      cli_error(
          "%s: --n-sink=%d leaves too little of the model's context (%d) for the default window; give "
          "--window above %d",
          cmd, o->n_sink, dm->context, o->n_sink);
    return -1;
  }
  if (!strcmp(policy, "window") && window < 1) {
    cli_error("%s: --cache window: the model's context (%d) leaves no window; give --window", cmd,
              dm->context);
    return -1;
  }
  /* learned positions end at the context; the library would stop there mid-run */
  int64_t room = (int64_t)dm->context - (dm->sink_token ? 1 : 0);
  if (!strcmp(policy, "full") && dm->learned && dm->context > 0 && max_len > room) {
    cli_error("%s: the model's learned positions end at %d, and this run needs %" PRId64
              " in a full cache; lower --tokens",
              cmd, dm->context, max_len);
    return -1;
  }
  return 0;
}

int decode_cache_create(const char *cmd, asink_model *m, const char *policy, int n_sink, int window,
                        int64_t max_len, asink_cache **c) {
  int len = max_len > INT32_MAX ? INT32_MAX : (int)max_len;
  asink_status s = asink_cache_create(c, m, policy, 1, n_sink, window, len);
  if (!s) return CLI_OK;
  cli_error("%s: --cache %s: %s", cmd, policy, asink_last_error());
  return s == ASINK_ERR_NOMEM ? CLI_FAIL : CLI_INPUT;
}

asink_status share_meter_start(share_meter *sm, asink_model *m, int L, int H, int cap) {
  memset(sm, 0, sizeof *sm);
  sm->L = L, sm->H = H, sm->cap = cap > 0 ? cap : 1;
  asink_status s = asink_metric_create(&sm->mt, PROBE_EPS);
  if (!s && (s = asink_model_attach_metric(m, sm->mt))) {
    asink_metric_free(sm->mt);
    sm->mt = NULL;
  }
  if (s) return s;
  sm->buf = xmalloc(sizeof(float) * (size_t)sm->cap * L * H);
  sm->layer_sum = xcalloc((size_t)L, sizeof(double));
  return ASINK_OK;
}

asink_status share_meter_drain(share_meter *sm, void (*per_step)(void *ctx, int64_t step, double share),
                               void *ctx) {
  int n = asink_metric_decode_steps(sm->mt);
  if (n <= 0) return ASINK_OK;
  size_t per = (size_t)sm->L * sm->H;
  if (n > sm->cap) {
    free(sm->buf);
    sm->cap = n;
    sm->buf = xmalloc(sizeof(float) * (size_t)n * per);
  }
  asink_status s = asink_metric_sink_share(sm->mt, sm->buf);
  if (s) return s;
  for (int i = 0; i < n; i++) {
    const float *r = sm->buf + (size_t)i * per;
    double all = 0;
    for (int l = 0; l < sm->L; l++) {
      double sum = 0;
      for (int h = 0; h < sm->H; h++) sum += r[l * sm->H + h];
      sm->layer_sum[l] += sum;
      all += sum;
    }
    if (per_step) per_step(ctx, sm->steps + i, all / (double)per);
  }
  sm->steps += n;
  asink_metric_reset(sm->mt);
  return ASINK_OK;
}

void share_meter_stop(share_meter *sm, asink_model *m) {
  if (sm->mt) asink_model_attach_metric(m, NULL);
  asink_metric_free(sm->mt);
  free(sm->buf), free(sm->layer_sum);
  memset(sm, 0, sizeof *sm);
}

/* ------------------------------------------------------------ the subcommand */

static const cli_opts generate_defaults = {
    .tokens = 200, .cache = "sink", .n_sink = 4, .temperature = 0.8, .top_k = 0, .top_p = 1.0, .seed = 0};

/* Feeds the prompt into an empty cache; last receives the logits of its last position.
 * The first n - 1 positions go without logits (they would be n x vocab floats); a
 * prefix-LM that wants its whole prefix in the first call gets the prompt in one. */
static asink_status prefill(asink_model *m, asink_cache *c, int n, const int32_t *tok, float *last, int V) {
  asink_status s = n > 1 ? asink_model_decode(m, c, n - 1, tok, NULL) : ASINK_OK;
  if (s == ASINK_ERR_STATE) {
    float *all = xmalloc(sizeof(float) * (size_t)n * V);
    s = asink_model_decode(m, c, n, tok, all);
    if (!s) memcpy(last, all + (size_t)(n - 1) * V, sizeof(float) * V);
    free(all);
    return s;
  }
  return s ? s : asink_model_decode(m, c, 1, tok + n - 1, last);
}

static void describe_cache(char *buf, size_t n, const char *policy, int n_sink, int window, size_t bytes) {
  if (!strcmp(policy, "full")) snprintf(buf, n, "full cache, %.1f KiB", bytes / 1024.0);
  else if (!strcmp(policy, "window"))
    snprintf(buf, n, "window cache of %d positions, %.1f KiB", window, bytes / 1024.0);
  else snprintf(buf, n, "sink cache of %d + %d positions, %.1f KiB", n_sink, window, bytes / 1024.0);
}

int cmd_generate(int argc, char **argv) {
  cli_opts o = generate_defaults;
  int rc = args_parse(CMD_GENERATE, argc, argv, &o);
  if (rc < 0) {
    cli_usage(CMD_GENERATE, &generate_defaults);
    return CLI_OK;
  }
  if (rc) return rc;
  if (!o.dir) {
    cli_error(
        "generate: a checkpoint directory is required: attnsink generate DIR (--prompt TEXT | "
        "--prompt-ids FILE)");
    return CLI_INPUT;
  }
  if (!o.prompt == !o.prompt_ids) {
    cli_error("generate: give exactly one of --prompt TEXT and --prompt-ids FILE");
    return CLI_INPUT;
  }
  if (o.threads && asink_set_num_threads(o.threads)) {
    cli_error("generate: --threads: %s", asink_last_error());
    return CLI_INPUT;
  }
  if (!is_dir(o.dir)) {
    cli_error("generate: checkpoint %s: %s", o.dir,
              path_exists(o.dir) ? "is not a directory" : "no such directory");
    return CLI_INPUT;
  }
  asink_model *m;
  if (asink_model_load(&m, o.dir)) {
    cli_error("generate: checkpoint %s: %s", o.dir, asink_last_error());
    return CLI_INPUT;
  }
  decode_threads(m, &o);
  decode_model dm;
  decode_model_info(m, &dm);
  bool to_full = decode_default_cache(&o, &dm);
  const int V = dm.vocab;
  rc = CLI_INPUT;
  int32_t *prompt = NULL;
  size_t n_prompt = 0;
  asink_cache *c = NULL;
  asink_sampler *smp = NULL;
  float *logits = NULL;
  share_meter sm = {0};
  bool bytes_out = o.prompt != NULL;
  if (o.prompt) {
    if (!model_is_byte_level(V, dm.bos)) {
      cli_error(
          "generate: model %s is not byte-level (vocabulary %d%s): --prompt needs one; give "
          "--prompt-ids FILE",
          o.dir, V, dm.bos >= 0 ? ", with a BOS id" : "");
      goto done;
    }
    size_t len = strlen(o.prompt);
    prompt = xmalloc(sizeof(int32_t) * (len + 1));
    if (dm.bos >= 0) prompt[n_prompt++] = dm.bos;
    for (size_t i = 0; i < len; i++) prompt[n_prompt++] = (unsigned char)o.prompt[i];
  } else {
    int32_t *ids;
    size_t n;
    if (read_token_ids("generate", "prompt-ids", o.prompt_ids, V, SIZE_MAX, &ids, &n)) goto done;
    /* BOS first, as in training, unless the file starts with it already */
    bool add = dm.bos >= 0 && !(n > 0 && ids[0] == dm.bos);
    prompt = xmalloc(sizeof(int32_t) * (n + 1));
    if (add) prompt[n_prompt++] = dm.bos;
    memcpy(prompt + n_prompt, ids, sizeof(int32_t) * n);
    n_prompt += n;
    free(ids);
    if (!n_prompt) {
      cli_error("generate: --prompt-ids %s holds no ids", o.prompt_ids);
      goto done;
    }
  }
  if (n_prompt > INT32_MAX / 2) {
    cli_error("generate: the prompt's %zu tokens are too many", n_prompt);
    goto done;
  }
  int window = decode_window(&o, &dm, o.cache);
  int64_t max_len = (int64_t)n_prompt + o.tokens;
  if (decode_check("generate", &o, &dm, o.cache, window, max_len)) goto done;
  if ((rc = decode_cache_create("generate", m, o.cache, o.n_sink, window, max_len, &c))) goto done;
  rc = CLI_INPUT;
  if (asink_sampler_create(&smp, (float)o.temperature, o.top_k, (float)o.top_p, o.seed)) {
    cli_error("generate: sampler: %s", asink_last_error());
    goto done;
  }
  if (to_full) decode_note_full("generate", &dm);
  logits = xmalloc(sizeof(float) * V);
  double t0 = now_seconds();
  asink_status s = prefill(m, c, (int)n_prompt, prompt, logits, V);
  if (s) {
    cli_error("generate: the prompt: %s", asink_last_error());
    rc = s == ASINK_ERR_NOMEM || s == ASINK_ERR_IO ? CLI_FAIL : CLI_INPUT;
    goto done;
  }
  double t1 = now_seconds();
  rc = CLI_FAIL;
  /* the share is measured on the generated tokens only, not on the prompt */
  if ((s = share_meter_start(&sm, m, dm.n_layer, dm.n_head, 256))) {
    cli_error("generate: metric: %s", asink_last_error());
    goto done;
  }
  bool tty = isatty(STDOUT_FILENO);
  for (int i = 0; i < o.tokens; i++) {
    int32_t tok;
    /* text out: BOS is no byte (and never was a training target), so it is never drawn;
     * a byte-level model's BOS is its last id, 256, so the bytes are the first 256 logits */
    if ((s = asink_sampler_pick(smp, logits, bytes_out ? 256 : V, &tok))) {
      cli_error("generate: token %d: sampling: %s", i + 1, asink_last_error());
      goto done;
    }
    if (bytes_out) {
      putchar(tok);
    } else {
      printf(i ? " %d" : "%d", tok);
    }
    fflush(stdout);
    if (i + 1 == o.tokens) break; /* the last token needs no logits */
    if ((s = asink_model_decode(m, c, 1, &tok, logits))) {
      if (bytes_out && tty) putchar('\n');
      cli_error("generate: token %d: %s", i + 1, asink_last_error());
      goto done;
    }
    if (asink_metric_decode_steps(sm.mt) >= sm.cap && share_meter_drain(&sm, NULL, NULL)) {
      cli_error("generate: metric: %s", asink_last_error());
      goto done;
    }
  }
  if (!bytes_out || tty) putchar('\n');
  fflush(stdout);
  double t2 = now_seconds();
  if (share_meter_drain(&sm, NULL, NULL)) {
    cli_error("generate: metric: %s", asink_last_error());
    goto done;
  }
  char desc[160];
  describe_cache(desc, sizeof desc, o.cache, o.n_sink, window, asink_cache_bytes(c));
  fprintf(stderr, "generated %d tokens in %.2f s (%.0f tokens/s) after a prompt of %zu (%.2f s); %s\n",
          o.tokens, t2 - t1, t2 > t1 ? o.tokens / (t2 - t1) : 0.0, n_prompt, t1 - t0, desc);
  if (sm.steps > 0) {
    fprintf(stderr,
            "sink share per layer (attention on the first %d positions, mean over %" PRId64
            " steps and %d heads):",
            o.n_sink, sm.steps, dm.n_head);
    for (int l = 0; l < dm.n_layer; l++)
      fprintf(stderr, "%s L%d %.3f", l ? "," : "", l, sm.layer_sum[l] / ((double)sm.steps * dm.n_head));
    fputc('\n', stderr);
  }
  rc = CLI_OK;
done:
  share_meter_stop(&sm, m);
  free(logits);
  free(prompt);
  asink_sampler_free(smp);
  asink_cache_free(c);
  asink_model_free(m);
  return rc;
}
