/* Command lines of the bench programs: one table of options per program, parsed the same
 * way everywhere so that each behaves like a tool. `-h` / `--help` prints the usage (built
 * from the table, defaults included) on stdout and exits 0 before anything runs; an
 * unknown option, a stray argument, a missing value, a malformed number or one out of range
 * is an error naming it on stderr, exit status 2, before anything runs. Values are given
 * as `--name VALUE` or `--name=VALUE`.
 *
 * A program declares its options with the defaults already in the variables:
 *
 *   int threads = 0, steps = 5;
 *   const bench_arg args[] = {
 *       {"--threads", "N", BENCH_ARG_INT, &threads, 0, 0, "threads (0: the library's default)"},
 *       {"--steps", "S", BENCH_ARG_INT, &steps, 1, 0, "timed steps"},
 *   };
 *   int rc = bench_args_parse(argc, argv, "What it measures.", args, BENCH_NARGS(args));
 *   if (rc != BENCH_ARGS_GO) return rc;
 */
#ifndef ASINK_BENCH_ARGS_H
#define ASINK_BENCH_ARGS_H

enum { BENCH_MAX_INTS = 16 };

typedef enum {
  BENCH_ARG_INT,    /* int * */
  BENCH_ARG_DOUBLE, /* double * (finite) */
  BENCH_ARG_STRING, /* const char ** (points into argv) */
  BENCH_ARG_INTS,   /* bench_ints *: a comma-separated list of whole numbers */
} bench_arg_type;

typedef struct {
  int n;
  int v[BENCH_MAX_INTS];
} bench_ints;

typedef struct {
  const char *name;    /* "--threads" */
  const char *metavar; /* "N", "LIST": the value's name in the usage */
  bench_arg_type type;
  void *value;         /* holds the default before parsing */
  double min, max;     /* accepted range of a number (each number of a list); max 0: no upper bound */
  const char *help;    /* one line; the default is appended from *value */
} bench_arg;

#define BENCH_NARGS(a) ((int)(sizeof(a) / sizeof *(a)))

/* bench_args_parse's "no reason to stop": the program goes on to run. */
#define BENCH_ARGS_GO (-1)

/* Parses argv against the table. Returns BENCH_ARGS_GO when the program should run, else
 * the exit status it should return at once: 0 after printing the usage for -h / --help, 2
 * after printing an error. `about` (a few lines, may be NULL) follows the usage line. */
int bench_args_parse(int argc, char **argv, const char *about, const bench_arg *args, int nargs);

#endif
