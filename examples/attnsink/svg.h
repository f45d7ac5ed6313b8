/* A tiny SVG writer for the program's plots: line charts with axes, ticks and a
 * legend, and heatmaps with a colour scale and cell labels. Plain text out, no
 * dependencies, so the plots open in any browser and can be checked as XML.
 * Legends sit under the chart, never over the data; a line drawn over an earlier one
 * (over all its points, or a quarter of them) is dashed and says so in the legend, so no
 * curve hides silently. */
#ifndef ATTNSINK_CLI_SVG_H
#define ATTNSINK_CLI_SVG_H

#include <stdbool.h>
#include <stddef.h>

typedef struct svg svg;

typedef struct {
  double x, y, w, h; /* the panel's place in the document, in pixels */
} svg_box;

typedef struct {
  const char *name; /* legend entry */
  const double *x, *y;
  int n;              /* non-finite y values leave a gap */
  const char *colour; /* NULL: svg_colour(the series' index) */
  bool dashed;        /* a second quantity of the same run, e.g. training beside validation loss */
} svg_series;

/* What a chart's axes must show beyond the data's own range. */
typedef struct {
  double y_min_span;             /* the y axis spans at least this: a flat series still reads on a scale */
  bool x_from_zero, y_from_zero; /* the axis starts at 0 when the data are all positive */
  double mark_x;                 /* with mark_label: a dashed grey vertical line at this x */
  const char *mark_label;
} svg_chart_opts;

/* The i-th colour (i >= 0) of the palette every chart uses: a caller that gives a run
 * the same i in every plot shows it in one colour throughout. */
const char *svg_colour(int i);

/* Starts a document of width x height pixels with a white background. */
svg *svg_new(double width, double height);
/* Ends the document; returns its text (malloc'd, *n bytes) and frees s. */
char *svg_finish(svg *s, size_t *n);

/* Centred text, escaped for XML. */
void svg_text(svg *s, double x, double y, double size, const char *anchor, const char *text);

/* Line chart of the series in box: axes with nice ticks, grid, legend below.
 * opts may be NULL (the axes fit the data). */
void svg_line_chart_opts(svg *s, svg_box box, const char *title, const char *xlabel, const char *ylabel,
                         const svg_series *series, int n_series, const svg_chart_opts *opts);
void svg_line_chart(svg *s, svg_box box, const char *title, const char *xlabel, const char *ylabel,
                    const svg_series *series, int n_series);

/* Heatmap of rows x cols values (row-major) in box, each cell labelled with its
 * value (printf format label_fmt, e.g. "%.2f"), rows named row_prefix + index and
 * columns col_prefix + index, with a colour bar from vmin to vmax. A prefix that ends
 * in a blank ("layer ") is the axis's name and is written once, beside the axis. */
void svg_heatmap(svg *s, svg_box box, const char *title, int rows, int cols, const double *v,
                 const char *row_prefix, const char *col_prefix, double vmin, double vmax,
                 const char *label_fmt);

#endif
