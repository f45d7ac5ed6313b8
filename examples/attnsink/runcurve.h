/* What the study and the sweep share about the runs they train: the curves of a run's
 * metrics.jsonl (one line per evaluation), its directory name, and the SVG files they
 * draw. */
#ifndef ATTNSINK_CLI_RUNCURVE_H
#define ATTNSINK_CLI_RUNCURVE_H

#include "svg.h"

typedef struct {
  int n;
  double *step, *tokens, *train, *val, *sink;
} run_curve;

/* Reads path (metrics.jsonl); lines that are not JSON objects are skipped. -1 after
 * an error line. */
int run_curve_read(const char *path, run_curve *c);
void run_curve_free(run_curve *c);

/* A directory name for the run called name: letters, digits, '-', '.' and '+' kept, any
 * other stretch one '_', a word's leading dashes dropped ("lr 1e-3, seed 1" ->
 * "lr_1e-3_seed_1", "softmax --wd 0.5" -> "softmax_wd_0.5"). malloc'd. */
char *run_dir_name(const char *name);

/* Finishes s and writes it to dir/name atomically. -1 after an error line. */
int write_svg_file(const char *dir, const char *name, svg *s);

#endif
