/* HF-style checkpoint directories: config.json + model.safetensors. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/error.h"
#include "io/atomic_file.h"
#include "io/safetensors.h"
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

/* The name a checkpoint tensor has in this model: GPT-2 files may carry a
 * "transformer." prefix. Returns NULL for tensors to skip (buffers, tied head). */
static const char *model_name(const asink_model *m, const char *file_name) {
  if (m->w->cfg.family != ASINK_FAMILY_GPT2) return file_name;
  if (!strncmp(file_name, "transformer.", 12)) file_name += 12;
  size_t n = strlen(file_name);
  static const char bias[] = ".attn.bias", masked[] = ".attn.masked_bias";
  if ((n >= sizeof bias - 1 && !strcmp(file_name + n - (sizeof bias - 1), bias)) ||
      (n >= sizeof masked - 1 && !strcmp(file_name + n - (sizeof masked - 1), masked)) ||
      !strcmp(file_name, "lm_head.weight"))
    return NULL;
  return file_name;
}

asink_status asink_model_load(asink_model **out, const char *dir) {
  if (!out || !dir) return asink_fail(ASINK_ERR_ARG, "asink_model_load: NULL argument");
  *out = NULL;
  char path[4096];
  snprintf(path, sizeof path, "%s/config.json", dir);
  char *text;
  asink_status st = read_text(path, &text);
  if (st) return st;
  asink_config cfg;
  st = asink_config_parse(text, path, &cfg);
  free(text);
  if (st) return st;
  asink_model *m;
  if ((st = asink_model_create_from_config(&m, &cfg, 0))) return st;
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  asink_tensors *ts;
  if ((st = asink_st_read(path, &ts))) {
    asink_model_free(m);
    return st;
  }
  /* every tensor must be a parameter of the right shape; every parameter present */
  char *seen = asink_calloc((size_t)m->w->n_params + 1, 1);
  if (!seen) {
    asink_st_free(ts);
    asink_model_free(m);
    return asink_fail(ASINK_ERR_NOMEM, "out of memory");
  }
  for (int i = 0; i < asink_st_count(ts) && st == ASINK_OK; i++) {
    const char *fname;
    int ndim;
    int64_t shape[ASINK_ST_MAX_DIMS];
    const float *data;
    asink_st_get(ts, i, &fname, &ndim, shape, &data);
    const char *name = model_name(m, fname);
    if (!name) continue;
    asink_param *p = asink_weights_find(m->w, name);
    if (!p) {
      st = asink_fail(ASINK_ERR_FORMAT, "%s: tensor '%s' is not a parameter of this model", path, fname);
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
    int idx = (int)(p - m->w->params);
    if (seen[idx]) {
      st = asink_fail(ASINK_ERR_FORMAT, "%s: tensor '%s' given twice (with and without 'transformer.')", path, fname);
      break;
    }
    seen[idx] = 1;
    memcpy(p->data, data, p->numel * sizeof(float));
  }
  for (int i = 0; i < m->w->n_params && st == ASINK_OK; i++)
    if (!seen[i]) st = asink_fail(ASINK_ERR_FORMAT, "%s: tensor '%s' is missing", path, m->w->params[i].name);
  free(seen);
  asink_st_free(ts);
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
    st = asink_st_add(ts, p->name, p->ndim, p->shape, p->data);
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
