/* A training run's curves as its metrics.jsonl holds them (one line per evaluation),
 * and the SVG files the study and the sweep draw from them. */
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

/* Finishes s and writes it to dir/name atomically. -1 after an error line. */
int write_svg_file(const char *dir, const char *name, svg *s);

#endif
