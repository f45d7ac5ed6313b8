/* HF-style checkpoint directories: config.json + model.safetensors, or its shards listed by
 * model.safetensors.index.json. Save writes a single model.safetensors. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/error.h"
#include "io/atomic_file.h"
#include "io/safetensors.h"
#include "kernels/kernels.h"
#include "model/model_internal.h"

static asink_status read_text(const char *path, char **out) {
  *out = NULL;
  FILE *f = fopen(path, "rb");
  if (!f) return asink_fail(ASINK_ERR_IO, "%s: %s", path, strerror(errno));
  char *buf = NULL;
  size_t len = 0, cap = 0;
  for (;;) {
    if (len + 4096 + 1 > cap) {
      cap = cap ? cap * 2 : 65536;
      if (cap > (64u << 20)) {
        free(buf);
        fclose(f);
        return asink_fail(ASINK_ERR_FORMAT, "%s: larger than 64 MiB, not a config file", path);
      }
      char *nb = asink_realloc(buf, cap, 1);
      if (!nb) {
        free(buf);
        fclose(f);
        return asink_fail(ASINK_ERR_NOMEM, "%s: out of memory", path);
      }
      buf = nb;
    }
    size_t n = fread(buf + len, 1, cap - len - 1, f);
    len += n;
    if (n == 0) break;
  }
  int err = ferror(f);
  fclose(f);
  if (err) {
    free(buf);
    return asink_fail(ASINK_ERR_IO, "%s: read error", path);
  }
  buf[len] = 0;
  *out = buf;
  return ASINK_OK;
}

static bool ends_with(const char *s, const char *tail) {
  size_t n = strlen(s), k = strlen(tail);
  return n >= k && !strcmp(s + n - k, tail);
}

/* The name a checkpoint tensor has in this model, in buf; NULL for a tensor to skip: the
 * buffers HF writes beside the weights (causal masks, RoPE frequencies) and a tied head.
 * Files may carry the prefix of HF's base model: "transformer." (GPT-2), or lack "model."
 * (OPT's "decoder."). */
static const char *model_name(const asink_model *m, const char *file_name, char *buf, size_t n) {
  static const char *const buffers[] = {".attn.bias", ".attn.masked_bias", ".attention.bias",
                                        ".attention.masked_bias", ".rotary_emb.inv_freq"};
  const asink_config *c = &m->w->cfg;
  for (size_t i = 0; i < sizeof buffers / sizeof *buffers; i++)
    if (ends_with(file_name, buffers[i])) return NULL;
  const char *head = c->family == ASINK_FAMILY_NEOX ? "embed_out.weight" : "lm_head.weight";
  /* GPT-2 and OPT files may hold their tied head (gpt2's head is always wte, whatever
   * tie_word_embeddings says); in the other families a head in a tied model's file is an error */
  if ((c->family == ASINK_FAMILY_GPT2 || (c->family == ASINK_FAMILY_OPT && c->tie_embeddings)) &&
      !strcmp(file_name, head))
    return NULL;
  if (c->family == ASINK_FAMILY_GPT2 && !strncmp(file_name, "transformer.", 12)) return file_name + 12;
  if (c->family == ASINK_FAMILY_OPT && !strncmp(file_name, "decoder.", 8)) {
    snprintf(buf, n, "model.%s", file_name);
    return buf;
  }
  return file_name;
}

/* Tensors matched to the model's parameters by name and shape, converted into them. */
typedef struct {
  asink_model *m;
  char *seen; /* per parameter */
} loader;

/* Whether file f holds a tensor called name. */
static bool file_has(const asink_st_file *f, const char *name) {
  for (int i = 0; i < asink_st_file_count(f); i++) {
    const char *n;
    asink_st_file_info(f, i, &n, NULL, NULL, NULL);
    if (!strcmp(n, name)) return true;
  }
  return false;
}

/* Every tensor weight_map lists for this shard is in it. */
static asink_status check_listed(const asink_st_file *f, const char *path, const json_t *weight_map,
                                 const char *shard) {
  const char *key;
  const json_t *v;
  json_object_foreach((json_t *)weight_map, key, v) {
    if (!strcmp(json_string_value(v), shard) && !file_has(f, key))
      return asink_fail(ASINK_ERR_FORMAT, "%s: tensor '%.200s', listed for this shard in the index, is not in it",
                        path, key);
  }
  return ASINK_OK;
}

/* Every tensor of one file (a shard: listed for it in weight_map) into its parameter. */
static asink_status load_file(loader *ld, const char *path, const json_t *weight_map, const char *shard) {
  asink_st_file *f;
  asink_status st = asink_st_open(path, &f);
  if (st) return st;
  asink_weights *w = ld->m->w;
  for (int i = 0; i < asink_st_file_count(f) && st == ASINK_OK; i++) {
    const char *fname;
    int ndim;
    int64_t shape[ASINK_ST_MAX_DIMS];
    asink_st_file_info(f, i, &fname, &ndim, shape, NULL);
    if (weight_map) {
      const json_t *to = json_object_get(weight_map, fname);
      if (!to || strcmp(json_string_value(to), shard)) {
        st = asink_fail(ASINK_ERR_FORMAT, "%s: tensor '%.200s' is %s%s in the index's weight_map", path, fname,
                        to ? "listed for shard " : "not listed", to ? json_string_value(to) : "");
        break;
      }
    }
    char buf[160];
    const char *name = model_name(ld->m, fname, buf, sizeof buf);
    if (!name) continue;
    asink_param *p = asink_weights_find(w, name);
    if (!p) {
      st = asink_fail(ASINK_ERR_FORMAT, "%s: tensor '%.200s' is not a parameter of this %s model", path, fname,
                      asink_family_name(w->cfg.family));
      break;
    }
    bool same = ndim == p->ndim;
    for (int d = 0; same && d < ndim; d++) same = shape[d] == p->shape[d];
    if (!same) {
      st = asink_fail(ASINK_ERR_FORMAT, "%s: tensor '%s' has shape [%lld%s%lld], the model expects [%lld%s%lld]",
                      path, fname, ndim > 0 ? (long long)shape[0] : 0LL, ndim > 1 ? ", " : "",
                      ndim > 1 ? (long long)shape[1] : 0LL, (long long)p->shape[0], p->ndim > 1 ? ", " : "",
                      p->ndim > 1 ? (long long)p->shape[1] : 0LL);
      break;
    }
    int idx = (int)(p - w->params);
    if (ld->seen[idx]) {
      st = asink_fail(ASINK_ERR_FORMAT, "%s: tensor '%s' given twice (with and without its prefix, or in two shards)",
                      path, p->name);
      break;
    }
    ld->seen[idx] = 1;
    st = p->data16 ? asink_st_file_load_bf16(f, i, p->data16) : asink_st_file_load(f, i, p->data);
    if (st) st = asink_fail_context(st, path);
  }
  if (!st && weight_map) st = check_listed(f, path, weight_map, shard);
  asink_st_close(f);
  return st;
}

/* A shard file name from the index: a plain name in the checkpoint's directory. */
static bool plain_file_name(const char *s) {
  return *s && !strchr(s, '/') && strcmp(s, ".") && strcmp(s, "..");
}

/* model.safetensors.index.json: its weight_map names each tensor's shard; the shards are
 * loaded one after the other, each mapped while its tensors are converted. */
static asink_status load_sharded(loader *ld, const char *dir, const char *index_path) {
  char *text;
  asink_status st = read_text(index_path, &text);
  if (st) return st;
  json_error_t jerr;
  json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
  free(text);
  if (!root)
    return asink_fail(ASINK_ERR_FORMAT, "%s: invalid JSON at line %d column %d: %s", index_path, jerr.line,
                      jerr.column, jerr.text);
  json_t *map = json_object_get(root, "weight_map");
  json_t *shards = json_array();
  if (!shards) st = asink_fail(ASINK_ERR_NOMEM, "%s: out of memory", index_path);
  else if (!json_is_object(map) || !json_object_size(map))
    st = asink_fail(ASINK_ERR_FORMAT, "%s: weight_map is missing or not a non-empty object", index_path);
  const char *key;
  json_t *v;
  if (!st) json_object_foreach(map, key, v) {
      if (!json_is_string(v) || !plain_file_name(json_string_value(v))) {
        st = asink_fail(ASINK_ERR_FORMAT, "%s: weight_map[\"%.200s\"] is not a shard file name in the directory",
                        index_path, key);
        break;
      }
      /* shards in order of first mention; a model has few */
      bool known = false;
      for (size_t i = 0; i < json_array_size(shards) && !known; i++)
        known = !strcmp(json_string_value(json_array_get(shards, i)), json_string_value(v));
      if (!known && json_array_append(shards, v)) st = asink_fail(ASINK_ERR_NOMEM, "%s: out of memory", index_path);
      if (st) break;
    }
  for (size_t i = 0; !st && i < json_array_size(shards); i++) {
    const char *shard = json_string_value(json_array_get(shards, i));
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, shard);
    st = load_file(ld, path, map, shard);
  }
  json_decref(shards);
  json_decref(root);
  return st;
}

asink_status asink_model_load(asink_model **out, const char *dir) {
  return asink_model_load_opts(out, dir, NULL);
}

asink_status asink_model_load_opts(asink_model **out, const char *dir, const char *options) {
  if (!out || !dir) return asink_fail(ASINK_ERR_ARG, "asink_model_load: NULL argument");
  *out = NULL;
  asink_model_opts opts;
  asink_status st = asink_model_options(options, &opts);
  if (st) return st;
  char path[4096];
  snprintf(path, sizeof path, "%s/config.json", dir);
  char *text;
  if ((st = read_text(path, &text))) return st;
  asink_config cfg;
  st = asink_config_parse(text, path, &cfg);
  free(text);
  if (st) return st;
  asink_model *m;
  if ((st = asink_model_create_zeroed(&m, &cfg, opts))) return st;
  loader ld = {m, asink_calloc((size_t)m->w->n_params + 1, 1)};
  if (!ld.seen) {
    asink_model_free(m);
    return asink_fail(ASINK_ERR_NOMEM, "out of memory");
  }
  /* a single file when there is one, else the shards of an index */
  struct stat sb;
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  if (stat(path, &sb) == 0) {
    st = load_file(&ld, path, NULL, NULL);
  } else {
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    if (stat(path, &sb) == 0)
      st = load_sharded(&ld, dir, path);
    else
      st = asink_fail(ASINK_ERR_IO, "%s: has neither model.safetensors nor model.safetensors.index.json", dir);
  }
  /* every parameter present */
  for (int i = 0; i < m->w->n_params && st == ASINK_OK; i++)
    if (!ld.seen[i]) st = asink_fail(ASINK_ERR_FORMAT, "%s: tensor '%s' is missing", path, m->w->params[i].name);
  free(ld.seen);
  if (st) {
    asink_model_free(m);
    return st;
  }
  *out = m;
  return ASINK_OK;
}

asink_status asink_model_save(const asink_model *m, const char *dir) {
  if (!m || !dir) return asink_fail(ASINK_ERR_ARG, "asink_model_save: NULL argument");
  asink_status st = asink_make_dir(dir);
  if (st) return st;
  asink_tensors *ts;
  if ((st = asink_st_create(&ts))) return st;
  for (int i = 0; i < m->w->n_params && st == ASINK_OK; i++) {
    const asink_param *p = &m->w->params[i];
    if (!p->data16) {
      st = asink_st_add(ts, p->name, p->ndim, p->shape, p->data);
      continue;
    }
    /* bf16 weights are written as the floats they stand for (exactly) */
    float *wide = malloc(p->numel * sizeof(float) + 1);
    if (!wide) {
      st = asink_fail(ASINK_ERR_NOMEM, "asink_model_save: no memory to widen '%s'", p->name);
      break;
    }
    for (size_t j = 0; j < p->numel; j++) wide[j] = asink_bf16_to_f32(p->data16[j]);
    st = asink_st_add(ts, p->name, p->ndim, p->shape, wide);
    free(wide);
  }
  if (st == ASINK_OK) st = asink_st_meta_set(ts, "format", "pt");
  char path[4096];
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  if (st == ASINK_OK) st = asink_st_write(ts, path);
  asink_st_free(ts);
  if (st) return st;
  snprintf(path, sizeof path, "%s/config.json", dir);
  return asink_atomic_write_buffer(path, m->config_json, strlen(m->config_json));
}
