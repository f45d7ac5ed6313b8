#include "attn/spec.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

static const char *base_names[] = {"softmax", "sigmoid", "elu", "linear", "elu-kernel"};
static const char *norm_names[] = {"none", "sum", "clamp"};
static const char *param_names[] = {"off", "shared", "head"};
static const char *sink_names[] = {"off", "head", "zero"};

const char *asink_base_name(asink_base b) { return base_names[b]; }

static int lookup(const char *v, const char *const *names, int n) {
  for (int i = 0; i < n; i++)
    if (!strcmp(v, names[i])) return i;
  return -1;
}

static bool parse_float(const char *v, float *out) {
  if (!*v) return false;
  char *end;
  errno = 0;
  double d = strtod(v, &end);
  /* the limit applies to the float kept: one just under it in decimal may round above it,
   * and the canonical spelling of the spec would then not parse (found by fuzz_spec) */
  float f = (float)d;
  if (*end || errno || !isfinite(d) || fabs((double)f) > 3.0e38) return false;
  *out = f;
  return true;
}

static bool parse_int(const char *v, long lo, long hi, int *out) {
  if (!*v) return false;
  char *end;
  errno = 0;
  long x = strtol(v, &end, 10);
  if (*end || errno || x < lo || x > hi) return false;
  *out = (int)x;
  return true;
}

#define SPEC_FAIL(...) asink_fail(ASINK_ERR_SPEC, __VA_ARGS__)

static asink_status parse_option(const char *text, const char *key, const char *val,
                                 asink_spec *s, unsigned *seen) {
  static const char *keys[] = {"norm",  "scale", "bias", "causal", "window", "prefix",
                               "alibi", "kbias", "vbias", "sink", "alpha", "relbias"};
  int k = lookup(key, keys, (int)(sizeof keys / sizeof *keys));
  if (k < 0)
    return SPEC_FAIL("spec '%s': unknown option '%s' (options: norm scale bias causal window "
                     "prefix alibi kbias vbias sink alpha relbias)",
                     text, key);
  if (*seen & (1u << k)) return SPEC_FAIL("spec '%s': option '%s' given twice", text, key);
  *seen |= 1u << k;
  int i;
  switch (k) {
  case 0:
    if ((i = lookup(val, norm_names, 3)) < 0)
      return SPEC_FAIL("spec '%s': norm=%s: expected none, sum or clamp", text, val);
    s->norm = (asink_norm)i;
    return ASINK_OK;
  case 1:
    if (!parse_float(val, &s->scale) || s->scale == 0.f)
      return SPEC_FAIL("spec '%s': scale=%s must be a finite non-zero number", text, val);
    s->has_scale = true;
    return ASINK_OK;
  case 2:
    if (!parse_float(val, &s->bias))
      return SPEC_FAIL("spec '%s': bias=%s must be a finite number", text, val);
    return ASINK_OK;
  case 3:
    if (!parse_int(val, 0, 1, &i)) return SPEC_FAIL("spec '%s': causal=%s must be 0 or 1", text, val);
    s->causal = i;
    return ASINK_OK;
  case 4:
    if (!parse_int(val, 1, 1 << 30, &s->window))
      return SPEC_FAIL("spec '%s': window=%s must be a positive integer", text, val);
    return ASINK_OK;
  case 5:
    if (!parse_int(val, 1, 1 << 30, &s->prefix))
      return SPEC_FAIL("spec '%s': prefix=%s must be a positive integer", text, val);
    return ASINK_OK;
  case 6:
    if (!parse_int(val, 0, 1, &i)) return SPEC_FAIL("spec '%s': alibi=%s must be 0 or 1", text, val);
    s->alibi = i;
    return ASINK_OK;
  case 7:
  case 8:
    if ((i = lookup(val, param_names + 1, 2)) < 0)
      return SPEC_FAIL("spec '%s': %s=%s: expected shared or head", text, key, val);
    *(k == 7 ? &s->kbias : &s->vbias) = (asink_param_mode)(i + 1);
    return ASINK_OK;
  case 9:
    if ((i = lookup(val, sink_names + 1, 2)) < 0)
      return SPEC_FAIL("spec '%s': sink=%s: expected head or zero", text, val);
    s->sink = (asink_sink_mode)(i + 1);
    return ASINK_OK;
  case 11:
    if (strcmp(val, "t5")) return SPEC_FAIL("spec '%s': relbias=%s: expected t5", text, val);
    s->relbias = true;
    return ASINK_OK;
  default:
    if (!parse_float(val, &s->alpha) || !(s->alpha > 0.f))
      return SPEC_FAIL("spec '%s': alpha=%s must be a positive number", text, val);
    return ASINK_OK;
  }
}

static asink_status check_consistency(const char *text, const asink_spec *s) {
  bool softmax = s->base == ASINK_BASE_SOFTMAX;
  if (softmax && s->norm != ASINK_NORM_NONE)
    return SPEC_FAIL("spec '%s': norm=%s is for non-softmax bases (softmax is normalised already)",
                     text, norm_names[s->norm]);
  if (!softmax && s->sink != ASINK_SINK_OFF)
    return SPEC_FAIL("spec '%s': sink=%s needs base softmax, not %s", text, sink_names[s->sink],
                     base_names[s->base]);
  if (!softmax && s->alpha != 1.f)
    return SPEC_FAIL("spec '%s': alpha needs base softmax, not %s", text, base_names[s->base]);
  if (!s->causal && s->window)
    return SPEC_FAIL("spec '%s': window=%d needs causal=1", text, s->window);
  if (!s->causal && s->prefix)
    return SPEC_FAIL("spec '%s': prefix=%d needs causal=1", text, s->prefix);
  return ASINK_OK;
}

asink_status asink_spec_parse(const char *text, asink_spec *s) {
  if (!text) return asink_fail(ASINK_ERR_ARG, "spec is NULL");
  *s = (asink_spec){.causal = true, .alpha = 1.f};
  char buf[512];
  if (strlen(text) >= sizeof buf)
    return SPEC_FAIL("spec '%.40s...': longer than %zu characters", text, sizeof buf - 1);
  strcpy(buf, text);
  char *save = NULL;
  char *tok = strtok_r(buf, ",", &save);
  if (!tok) return SPEC_FAIL("spec '%s': empty (expected a base such as softmax)", text);
  /* Leading/trailing blanks are tolerated around every token. */
  while (isspace((unsigned char)*tok)) tok++;
  for (char *e = tok + strlen(tok); e > tok && isspace((unsigned char)e[-1]);) *--e = 0;
  int b = lookup(tok, base_names, 5);
  if (b < 0)
    return SPEC_FAIL("spec '%s': unknown base '%s' (bases: softmax sigmoid elu linear elu-kernel)",
                     text, tok);
  s->base = (asink_base)b;
  unsigned seen = 0;
  while ((tok = strtok_r(NULL, ",", &save))) {
    while (isspace((unsigned char)*tok)) tok++;
    for (char *e = tok + strlen(tok); e > tok && isspace((unsigned char)e[-1]);) *--e = 0;
    char *eq = strchr(tok, '=');
    if (!eq) return SPEC_FAIL("spec '%s': option '%s' has no '=value'", text, tok);
    *eq = 0;
    asink_status st = parse_option(text, tok, eq + 1, s, &seen);
    if (st) return st;
  }
  /* "a,,b" or a trailing comma: strtok skips empty tokens, so check the raw text. */
  if (strstr(text, ",,") || text[strlen(text) - 1] == ',')
    return SPEC_FAIL("spec '%s': empty option between commas", text);
  return check_consistency(text, s);
}

void asink_spec_format(const asink_spec *s, float scale, char *buf, int size) {
  int n = snprintf(buf, size, "%s", base_names[s->base]);
  if (s->base != ASINK_BASE_SOFTMAX) n += snprintf(buf + n, size - n, ",norm=%s", norm_names[s->norm]);
  n += snprintf(buf + n, size - n, ",scale=%.9g,bias=%.9g,causal=%d", scale, s->bias, s->causal);
  if (s->window) n += snprintf(buf + n, size - n, ",window=%d", s->window);
  if (s->prefix) n += snprintf(buf + n, size - n, ",prefix=%d", s->prefix);
  if (s->alibi) n += snprintf(buf + n, size - n, ",alibi=1");
  if (s->kbias) n += snprintf(buf + n, size - n, ",kbias=%s", param_names[s->kbias]);
  if (s->vbias) n += snprintf(buf + n, size - n, ",vbias=%s", param_names[s->vbias]);
  if (s->sink) n += snprintf(buf + n, size - n, ",sink=%s", sink_names[s->sink]);
  if (s->base == ASINK_BASE_SOFTMAX && s->alpha != 1.f)
    n += snprintf(buf + n, size - n, ",alpha=%.9g", s->alpha);
  if (s->relbias) snprintf(buf + n, size - n, ",relbias=t5");
}

int asink_relative_bucket(int n) {
  if (n < 0) n = -n;
  if (n < 16) return n;
  int b = 16 + (int)floor(log(n / 16.0) / log(8.0) * 16.0);
  return b < 31 ? b : 31;
}
