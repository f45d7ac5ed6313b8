#include "errors.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool holding;
static char held[4096];
static char tag[64];

void cli_errors_tag(const char *t) { snprintf(tag, sizeof tag, "%s", t ? t : ""); }

void cli_error(const char *fmt, ...) {
  char buf[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  for (char *p = buf; *p; p++)
    if (*p == '\n' || *p == '\r') *p = ' ';
  if (holding) {
    size_t used = strlen(held);
    snprintf(held + used, sizeof held - used, "%s%s", used ? "; " : "", buf);
    return;
  }
  fprintf(stderr, "attnsink: %s%s\n", tag, buf);
}

void cli_errors_hold(void) {
  holding = true;
  held[0] = 0;
}

const char *cli_errors_release(void) {
  holding = false;
  return held;
}

static void *check(void *p) {
  if (!p) {
    fputs("attnsink: out of memory\n", stderr);
    exit(CLI_FAIL);
  }
  return p;
}

void *xmalloc(size_t n) { return check(malloc(n ? n : 1)); }
void *xcalloc(size_t n, size_t size) { return check(calloc(n ? n : 1, size ? size : 1)); }
char *xstrdup(const char *s) { return check(strdup(s)); }

char *xasprintf(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *s = NULL;
  int r = vasprintf(&s, fmt, ap);
  va_end(ap);
  return check(r < 0 ? NULL : s);
}
