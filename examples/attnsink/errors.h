/* How the attnsink program reports failure: one line on stderr, and an exit
 * status that tells bad input (2) from a failure while working (1), so scripts
 * can tell "fix your command" from "something broke". */
#ifndef ATTNSINK_CLI_ERRORS_H
#define ATTNSINK_CLI_ERRORS_H

#include <stddef.h>

enum {
  CLI_OK = 0,
  CLI_FAIL = 1,  /* the input was fine but the work failed (I/O, diverged training) */
  CLI_INPUT = 2, /* bad command line, missing or unusable file, bad spec */
};

/* Prints "attnsink: <message>" and a newline on stderr. Embedded newlines in the
 * message become spaces so every error stays one line. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A tag every later error line carries after "attnsink: " (a rank's "rank 1 of 4: "). */
void cli_errors_tag(const char *tag);

/* While held, error lines are kept instead of printed (a rank of a data-parallel job holds
 * its own until the ranks have compared notes, so an error every rank makes shows once).
 * cli_errors_release stops holding and returns what was kept ("" if nothing; static). */
void cli_errors_hold(void);
const char *cli_errors_release(void);

/* malloc/calloc/strdup that end the program (status 1) on exhaustion: the
 * program's buffers are small next to the model's, so there is nothing to save. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
char *xstrdup(const char *s);
/* printf into a fresh malloc'd string. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
