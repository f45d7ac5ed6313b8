/* Optimizer state files (optimizer.safetensors): moments by parameter name, the
 * step count in the metadata, so a run resumes exactly. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "io/atomic_file.h"
#include "io/safetensors.h"
#include "model/model_internal.h"


asink_status asink_adamw_save(const asink_adamw *o, const char *dir) {
  if (!o || !dir) return asink_fail(ASINK_ERR_ARG, "asink_adamw_save: NULL argument");
  asink_status st = asink_make_dir(dir);
  if (st) return st;
  asink_tensors *ts;
  if ((st = asink_st_create(&ts))) return st;
  const asink_model *m = o->m;
  size_t off = 0;
  char name[160], val[256];
  for (int i = 0; i < m->w->n_params && st == ASINK_OK; i++) {
    const asink_param *p = &m->w->params[i];
    snprintf(name, sizeof name, "exp_avg.%s", p->name);
    st = asink_st_add(ts, name, p->ndim, p->shape, o->mom + off);
    snprintf(name, sizeof name, "exp_avg_sq.%s", p->name);
    if (st == ASINK_OK) st = asink_st_add(ts, name, p->ndim, p->shape, o->var + off);
    off += p->numel;
  }
  snprintf(val, sizeof val, "%lld", (long long)o->step);
  if (st == ASINK_OK) st = asink_st_meta_set(ts, "step", val);
  snprintf(val, sizeof val, "%.9g %.9g %.9g %.9g %.9g %.9g", o->lr, o->b1, o->b2, o->eps, o->wd, o->clip);
  if (st == ASINK_OK) st = asink_st_meta_set(ts, "lr beta1 beta2 eps weight_decay clip", val);
  char path[4096];
  snprintf(path, sizeof path, "%s/optimizer.safetensors", dir);
  if (st == ASINK_OK) st = asink_st_write(ts, path);
  asink_st_free(ts);
  return st;
}

asink_status asink_adamw_load(asink_adamw *o, const char *dir) {
  if (!o || !dir) return asink_fail(ASINK_ERR_ARG, "asink_adamw_load: NULL argument");
  char path[4096], name[160];
  snprintf(path, sizeof path, "%s/optimizer.safetensors", dir);
  asink_tensors *ts;
  asink_status st = asink_st_read(path, &ts);
  if (st) return st;
  const char *step = asink_st_meta_get(ts, "step");
  char *end = NULL;
  long long s = step ? strtoll(step, &end, 10) : -1;
  if (!step || *end || s < 0) {
    asink_st_free(ts);
    return asink_fail(ASINK_ERR_FORMAT, "%s: metadata 'step' is missing or not a count", path);
  }
  const asink_model *m = o->m;
  /* check everything before changing anything */
  int expected = 0;
  for (int pass = 0; pass < 2 && st == ASINK_OK; pass++) {
    size_t off = 0;
    for (int i = 0; i < m->w->n_params && st == ASINK_OK; i++) {
      const asink_param *p = &m->w->params[i];
      for (int k = 0; k < 2 && st == ASINK_OK; k++) {
        snprintf(name, sizeof name, "%s.%s", k ? "exp_avg_sq" : "exp_avg", p->name);
        int idx = asink_st_find(ts, name);
        if (idx < 0 || (size_t)asink_st_numel(ts, idx) != p->numel) {
          st = asink_fail(ASINK_ERR_FORMAT, "%s: tensor '%s' is %s", path, name, idx < 0 ? "missing" : "misshaped");
          break;
        }
        const float *d;
        asink_st_get(ts, idx, NULL, NULL, NULL, &d);
        if (pass) memcpy((k ? o->var : o->mom) + off, d, p->numel * sizeof(float));
        expected += !pass;
      }
      off += p->numel;
    }
    if (!pass && st == ASINK_OK && asink_st_count(ts) != expected)
      st = asink_fail(ASINK_ERR_FORMAT, "%s: holds %d tensors, this model's optimizer has %d", path,
                      asink_st_count(ts), expected);
  }
  if (st == ASINK_OK) o->step = s;
  asink_st_free(ts);
  return st;
}
