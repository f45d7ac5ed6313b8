/* The bench programs' command-line parser (bench_args.h). */
#include "bench_args.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *program_name(const char *argv0) {
  const char *slash = argv0 ? strrchr(argv0, '/') : NULL;
  return slash ? slash + 1 : argv0 ? argv0 : "bench";
}

static void print_default(FILE *f, const bench_arg *a) {
  switch (a->type) {
  case BENCH_ARG_INT: fprintf(f, " (default %d)", *(const int *)a->value); break;
  case BENCH_ARG_DOUBLE: fprintf(f, " (default %g)", *(const double *)a->value); break;
  case BENCH_ARG_STRING: {
    const char *s = *(const char *const *)a->value;
    if (s) fprintf(f, " (default %s)", s);
    break;
  }
  case BENCH_ARG_INTS: {
    const bench_ints *l = a->value;
    for (int i = 0; i < l->n; i++) fprintf(f, "%s%d", i ? "," : " (default ", l->v[i]);
    if (l->n) fputc(')', f);
    break;
  }
  }
}

static void usage(const char *prog, const char *about, const bench_arg *args, int nargs) {
  printf("usage: %s [options]\n", prog);
  if (about) printf("%s\n", about);
  printf("\noptions:\n");
  for (int i = 0; i < nargs; i++) {
    char head[64];
    snprintf(head, sizeof head, "%s %s", args[i].name, args[i].metavar);
    printf("  %-18s %s", head, args[i].help);
    print_default(stdout, &args[i]);
    printf("\n");
  }
  printf("  %-18s %s\n", "-h, --help", "print this help and exit");
}

/* Checks the range of one number; prints the error and returns 0 when it is out. */
static int in_range(const char *prog, const bench_arg *a, const char *text, double v) {
  if (v < a->min) {
    fprintf(stderr, "%s: %s must be >= %g, got %s\n", prog, a->name, a->min, text);
    return 0;
  }
  if (a->max > a->min && v > a->max) {
    fprintf(stderr, "%s: %s must be <= %g, got %s\n", prog, a->name, a->max, text);
    return 0;
  }
  return 1;
}

/* A whole number filling all of [s, end): 1 and *out, -1 when it does not fit an int, 0
 * when it is no whole number. */
static int parse_int(const char *s, const char *end, int *out) {
  if (s == end) return 0;
  char *stop;
  errno = 0;
  long long v = strtoll(s, &stop, 10);
  if (stop != end) return 0;
  if (errno == ERANGE || v < INT_MIN || v > INT_MAX) return -1;
  *out = (int)v;
  return 1;
}

static void bad_int(const char *prog, const char *name, int why, const char *item, const char *text) {
  if (why < 0) fprintf(stderr, "%s: %s: %s is out of range\n", prog, name, item);
  else if (item == text) fprintf(stderr, "%s: %s takes a whole number, got '%s'\n", prog, name, text);
  else
    fprintf(stderr, "%s: %s takes a comma-separated list of whole numbers, got '%s' in '%s'\n",
            prog, name, item, text);
}

/* Stores one option's value. Returns 1, or 0 after printing the error. */
static int set_value(const char *prog, const bench_arg *a, const char *text) {
  switch (a->type) {
  case BENCH_ARG_INT: {
    int v, why = parse_int(text, text + strlen(text), &v);
    if (why != 1) {
      bad_int(prog, a->name, why, text, text);
      return 0;
    }
    if (!in_range(prog, a, text, v)) return 0;
    *(int *)a->value = v;
    return 1;
  }
  case BENCH_ARG_DOUBLE: {
    char *stop;
    errno = 0;
    double v = strtod(text, &stop);
    if (!*text || *stop || errno || !isfinite(v)) {
      fprintf(stderr, "%s: %s takes a number, got '%s'\n", prog, a->name, text);
      return 0;
    }
    if (!in_range(prog, a, text, v)) return 0;
    *(double *)a->value = v;
    return 1;
  }
  case BENCH_ARG_STRING:
    if (!*text) {
      fprintf(stderr, "%s: %s takes a non-empty value\n", prog, a->name);
      return 0;
    }
    *(const char **)a->value = text;
    return 1;
  case BENCH_ARG_INTS: {
    bench_ints l = {0};
    for (const char *s = text;; s++) {
      const char *comma = strchr(s, ',');
      const char *end = comma ? comma : s + strlen(s);
      char item[32];
      snprintf(item, sizeof item, "%.*s", (int)(end - s), s);
      int v, why = parse_int(s, end, &v);
      if (why != 1) {
        bad_int(prog, a->name, why, item, text);
        return 0;
      }
      if (!in_range(prog, a, item, v)) return 0;
      if (l.n == BENCH_MAX_INTS) {
        fprintf(stderr, "%s: %s takes at most %d numbers, got '%s'\n", prog, a->name,
                BENCH_MAX_INTS, text);
        return 0;
      }
      l.v[l.n++] = v;
      if (!comma) break;
      s = comma;
    }
    *(bench_ints *)a->value = l;
    return 1;
  }
  }
  return 0;
}

int bench_args_parse(int argc, char **argv, const char *about, const bench_arg *args, int nargs) {
  const char *prog = program_name(argc > 0 ? argv[0] : NULL);
  /* Help first, wherever it stands, so `--help` never runs anything even after a typo. */
  for (int i = 1; i < argc; i++)
    if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
      usage(prog, about, args, nargs);
      return 0;
    }
  for (int i = 1; i < argc; i++) {
    const char *word = argv[i], *eq = strchr(word, '=');
    size_t len = eq && !strncmp(word, "--", 2) ? (size_t)(eq - word) : strlen(word);
    const bench_arg *a = NULL;
    for (int j = 0; j < nargs && !a; j++)
      if (strlen(args[j].name) == len && !strncmp(args[j].name, word, len)) a = &args[j];
    if (!a) {
      if (word[0] == '-')
        fprintf(stderr, "%s: unknown option %.*s (%s --help lists the options)\n", prog, (int)len,
                word, prog);
      else
        fprintf(stderr, "%s: unexpected argument '%s' (%s --help lists the options)\n", prog,
                word, prog);
      return 2;
    }
    const char *text;
    if (word[len] == '=') text = word + len + 1;
    else if (i + 1 < argc && strncmp(argv[i + 1], "--", 2)) text = argv[++i];
    else {
      fprintf(stderr, "%s: option %s needs a value (%s)\n", prog, a->name, a->metavar);
      return 2;
    }
    if (!set_value(prog, a, text)) return 2;
  }
  return BENCH_ARGS_GO;
}
