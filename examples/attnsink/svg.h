/* A tiny SVG writer for the program's plots: line charts with axes, ticks and a
 * legend, and heatmaps with a colour scale and cell labels. Plain text out, no
 * dependencies, so the plots open in any browser and can be checked as XML. */
#ifndef ATTNSINK_CLI_SVG_H
#define ATTNSINK_CLI_SVG_H

#include <stddef.h>

typedef struct svg svg;

typedef struct {
  double x, y, w, h; /* the panel's place in the document, in pixels */
} svg_box;

typedef struct {
  const char *name; /* legend entry */
  const double *x, *y;
  int n; /* non-finite y values leave a gap */
} svg_series;

/* Starts a document of width x height pixels with a white background. */
svg *svg_new(double width, double height);
/* Ends the document; returns its text (malloc'd, *n bytes) and frees s. */
char *svg_finish(svg *s, size_t *n);

/* Centred text, escaped for XML. */
void svg_text(svg *s, double x, double y, double size, const char *anchor, const char *text);

/* Line chart of the series in box: axes with nice ticks, grid, legend. */
void svg_line_chart(svg *s, svg_box box, const char *title, const char *xlabel, const char *ylabel,
                    const svg_series *series, int n_series);

/* Heatmap of rows x cols values (row-major) in box, each cell labelled with its
 * value (printf format label_fmt, e.g. "%.2f"), rows named row_prefix + index and
 * columns col_prefix + index, with a colour bar from vmin to vmax. */
void svg_heatmap(svg *s, svg_box box, const char *title, int rows, int cols, const double *v,
                 const char *row_prefix, const char *col_prefix, double vmin, double vmax,
                 const char *label_fmt);

#endif
