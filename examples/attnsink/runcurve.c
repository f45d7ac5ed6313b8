#include "runcurve.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "errors.h"
#include "files.h"

static double num(const json_t *v) { return json_is_number(v) ? json_number_value(v) : NAN; }

int run_curve_read(const char *path, run_curve *c) {
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
  c->tokens = xcalloc(lines + 1, sizeof(double));
  c->train = xcalloc(lines + 1, sizeof(double));
  c->val = xcalloc(lines + 1, sizeof(double));
  c->sink = xcalloc(lines + 1, sizeof(double));
  for (char *p = (char *)data; *p && (size_t)c->n <= lines;) {
    char *nl = strchr(p, '\n');
    size_t len = nl ? (size_t)(nl - p) : strlen(p);
    json_t *j = json_loadb(p, len, 0, NULL);
    if (json_is_object(j)) {
      c->step[c->n] = num(json_object_get(j, "step"));
      c->tokens[c->n] = num(json_object_get(j, "tokens"));
      c->train[c->n] = num(json_object_get(j, "train_loss"));
      c->val[c->n] = num(json_object_get(j, "val_loss"));
      c->sink[c->n] = num(json_object_get(j, "sink1"));
      c->n++;
    }
    json_decref(j);
    p += len + (nl ? 1 : 0);
  }
  free(data);
  return 0;
}

void run_curve_free(run_curve *c) {
  free(c->step), free(c->tokens), free(c->train), free(c->val), free(c->sink);
  memset(c, 0, sizeof *c);
}

int write_svg_file(const char *dir, const char *name, svg *s) {
  size_t n;
  char *text = svg_finish(s, &n);
  char *path = path_join(dir, name);
  int rc = write_file_atomic(path, text, n);
  free(path);
  free(text);
  return rc;
}

/* "lr 1e-3 seed 1" -> "lr_1e-3_seed_1": a directory name from a run's name. malloc'd. */
char *run_dir_name(const char *name) {
  char *s = xmalloc(strlen(name) + 2), *q = s;
  for (const char *p = name; *p; p++) {
    unsigned char ch = (unsigned char)*p;
    bool keep = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' ||
                ch == '.' || ch == '+';
    if (ch == '-' && (q == s || q[-1] == '_')) continue; /* "--wd 0.5" -> "wd_0.5" */
    if (keep) *q++ = (char)ch;
    else if (q > s && q[-1] != '_') *q++ = '_';
  }
  while (q > s && q[-1] == '_') q--;
  if (q == s || (s[0] == '.' && (q - s == 1 || (q - s == 2 && s[1] == '.')))) *q++ = 'r'; /* never "", ".", ".." */
  *q = 0;
  return s;
}
