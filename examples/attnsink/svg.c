#include "svg.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"

struct svg {
  FILE *f;
  char *buf;
  size_t len;
};

/* Colour-blind-safe qualitative palette (Okabe-Ito). */
static const char *const palette[] = {"#0072B2", "#D55E00", "#009E73", "#CC79A7",
                                      "#E69F00", "#56B4E9", "#F0E442", "#000000"};
enum { N_PALETTE = sizeof palette / sizeof palette[0] };

svg *svg_new(double width, double height) {
  svg *s = xcalloc(1, sizeof *s);
  s->f = open_memstream(&s->buf, &s->len);
  if (!s->f) {
    cli_error("cannot allocate an SVG buffer");
    exit(CLI_FAIL);
  }
  fprintf(s->f,
          "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
          "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
          "viewBox=\"0 0 %.0f %.0f\" font-family=\"sans-serif\">\n"
          "<rect x=\"0\" y=\"0\" width=\"%.0f\" height=\"%.0f\" fill=\"#ffffff\"/>\n",
          width, height, width, height, width, height);
  return s;
}

char *svg_finish(svg *s, size_t *n) {
  fputs("</svg>\n", s->f);
  fclose(s->f);
  char *out = s->buf;
  if (n) *n = s->len;
  free(s);
  return out;
}

static void put_escaped(FILE *f, const char *t) {
  for (; t && *t; t++) switch (*t) {
    case '&': fputs("&amp;", f); break;
    case '<': fputs("&lt;", f); break;
    case '>': fputs("&gt;", f); break;
    case '"': fputs("&quot;", f); break;
    default:
      /* XML 1.0 has no spelling for most control characters */
      if ((unsigned char)*t >= 0x20 || *t == '\t') fputc(*t, f);
    }
}

void svg_text(svg *s, double x, double y, double size, const char *anchor, const char *text) {
  fprintf(s->f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"%.1f\" text-anchor=\"%s\">", x, y, size,
          anchor ? anchor : "middle");
  put_escaped(s->f, text);
  fputs("</text>\n", s->f);
}

/* A step of 1, 2 or 5 times a power of ten giving about `want` intervals. */
static double nice_step(double span, int want) {
  if (!(span > 0)) return 1;
  double raw = span / want, p = pow(10, floor(log10(raw))), m = raw / p;
  return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * p;
}

static void tick_label(char *buf, size_t n, double v, double step) {
  if (fabs(v) < step * 1e-9) v = 0; /* no "-0" or 1e-17 from accumulated steps */
  int dec = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
  if (fabs(v) >= 1e5 || (v != 0 && fabs(v) < 1e-4)) snprintf(buf, n, "%.3g", v);
  else snprintf(buf, n, "%.*f", dec, v);
}

const char *svg_colour(int i) { return palette[(i < 0 ? -i : i) % N_PALETTE]; }

static void range_of(const svg_series *ss, int ns, int axis, double *lo, double *hi) {
  *lo = INFINITY, *hi = -INFINITY;
  for (int i = 0; i < ns; i++)
    for (int j = 0; j < ss[i].n; j++) {
      double v = axis ? ss[i].y[j] : ss[i].x[j];
      if (!isfinite(v) || !isfinite(axis ? ss[i].x[j] : ss[i].y[j])) continue;
      if (v < *lo) *lo = v;
      if (v > *hi) *hi = v;
    }
}

/* Widens [lo, hi] to what the axis must show: 0 if asked (for data all >= 0), at least
 * min_span, and some span even for a single value. */
static void axis_range(double *lo, double *hi, bool from_zero, double min_span) {
  if (!(*lo <= *hi)) *lo = 0, *hi = 1; /* no finite data */
  if (from_zero && *lo > 0) *lo = 0;
  if (*hi - *lo < min_span) {
    double grow = min_span - (*hi - *lo);
    /* every quantity plotted here (loss, percent, norm) is >= 0: no negative axis for it */
    double below = *lo >= 0 ? fmin(grow / 2, *lo) : grow / 2;
    *lo -= below, *hi += grow - below;
  }
  if (*hi - *lo < 1e-12 * (fabs(*hi) + 1)) {
    double pad = fabs(*hi) > 0 ? fabs(*hi) * 0.1 : 1;
    *lo = *lo >= 0 && *lo - pad < 0 ? 0 : *lo - pad;
    *hi += pad;
  }
}

/* Pixels of an 11-pixel sans-serif label: an estimate good enough to lay out legends. */
static double text_width(const char *t) { return 6.2 * (double)strlen(t ? t : ""); }

/* An earlier series that series i, drawn over it, hides: every finite point of it (or, with
 * *partly set, at least a quarter of them) has a point of i at the same x within a pixel.
 * Its index, or -1. */
static int covers(const svg_series *ss, int i, double x0, double x1, double y0, double y1, double pw,
                  double ph, bool *partly) {
  for (int j = 0; j < i; j++) {
    int matched = 0, points = 0;
    for (int a = 0; a < ss[j].n; a++) {
      double xa = ss[j].x[a], ya = ss[j].y[a];
      if (!isfinite(xa) || !isfinite(ya)) continue;
      points++;
      for (int b = 0; b < ss[i].n; b++) {
        double xb = ss[i].x[b], yb = ss[i].y[b];
        if (isfinite(yb) && fabs(xb - xa) / (x1 - x0) * pw < 0.5 && fabs(yb - ya) / (y1 - y0) * ph < 1.5) {
          matched++;
          break;
        }
      }
    }
    if (points > 0 && 4 * matched >= points) {
      *partly = matched < points;
      return j;
    }
  }
  return -1;
}

void svg_line_chart(svg *s, svg_box b, const char *title, const char *xlabel, const char *ylabel,
                    const svg_series *ss, int ns) {
  svg_line_chart_opts(s, b, title, xlabel, ylabel, ss, ns, NULL);
}

void svg_line_chart_opts(svg *s, svg_box b, const char *title, const char *xlabel, const char *ylabel,
                         const svg_series *ss, int ns, const svg_chart_opts *opts) {
  FILE *f = s->f;
  svg_chart_opts o = opts ? *opts : (svg_chart_opts){0};
  bool mark = o.mark_label && isfinite(o.mark_x);
  char **names = xcalloc((size_t)(ns > 0 ? ns : 1), sizeof *names);
  for (int i = 0; i < ns; i++) names[i] = xstrdup(ss[i].name ? ss[i].name : "");
  /* the legend goes under the x-axis label, entries side by side, as many rows as needed */
  const double ml = 64, mr = 16, mt = 30, entry_gap = 18, row_h = 16;
  double pw = b.w - ml - mr, px = b.x + ml, py = b.y + mt;
  double x0, x1, y0, y1;
  range_of(ss, ns, 0, &x0, &x1);
  range_of(ss, ns, 1, &y0, &y1);
  if (mark) x0 = fmin(x0, o.mark_x), x1 = fmax(x1, o.mark_x);
  axis_range(&x0, &x1, o.x_from_zero, 0);
  axis_range(&y0, &y1, o.y_from_zero, o.y_min_span);
  double xs = nice_step(x1 - x0, 6), ys = nice_step(y1 - y0, 5);
  x0 = floor(x0 / xs) * xs, x1 = ceil(x1 / xs) * xs;
  y0 = floor(y0 / ys) * ys, y1 = ceil(y1 / ys) * ys;
  /* legend rows need the names with their notes, which need the scale: lay out twice */
  int rows = 1;
  double ph = 0;
  int *under = xcalloc((size_t)(ns > 0 ? ns : 1), sizeof *under);
  for (int pass = 0; pass < 2; pass++) {
    double lx = 0;
    rows = ns > 0 || mark ? 1 : 0;
    for (int i = 0; i < ns + mark; i++) {
      double w = 24 + text_width(i < ns ? names[i] : o.mark_label);
      if (lx > 0 && lx + w > pw) rows++, lx = 0;
      lx += w + entry_gap;
    }
    ph = b.h - mt - 44 - rows * row_h;
    if (pass == 1) break;
    for (int i = 0; i < ns; i++) {
      bool partly = false;
      under[i] = covers(ss, i, x0, x1, y0, y1, pw, ph, &partly);
      if (under[i] >= 0) {
        char *n = xasprintf("%s (%s %s's line)", names[i], partly ? "in part on" : "on", ss[under[i]].name ? ss[under[i]].name : "");
        free(names[i]);
        names[i] = n;
      }
    }
  }
#define SX(v) (px + ((v)-x0) / (x1 - x0) * pw)
#define SY(v) (py + ph - ((v)-y0) / (y1 - y0) * ph)
  fprintf(f, "<g>\n");
  if (title) svg_text(s, b.x + b.w / 2, b.y + 18, 14, "middle", title);
  char lab[64];
  for (int i = 0;; i++) {
    double v = y0 + i * ys;
    if (v > y1 + ys * 1e-6) break;
    fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e5e5e5\"/>\n", px, SY(v),
            px + pw, SY(v));
    tick_label(lab, sizeof lab, v, ys);
    svg_text(s, px - 6, SY(v) + 4, 11, "end", lab);
  }
  for (int i = 0;; i++) {
    double v = x0 + i * xs;
    if (v > x1 + xs * 1e-6) break;
    fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e5e5e5\"/>\n", SX(v), py,
            SX(v), py + ph);
    fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#333333\"/>\n", SX(v), py + ph,
            SX(v), py + ph + 4);
    tick_label(lab, sizeof lab, v, xs);
    svg_text(s, SX(v), py + ph + 16, 11, "middle", lab);
  }
  fprintf(f,
          "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"#333333\"/>\n",
          px, py, pw, ph);
  if (xlabel) svg_text(s, px + pw / 2, py + ph + 34, 12, "middle", xlabel);
  if (ylabel) {
    fprintf(f, "<g transform=\"translate(%.1f %.1f) rotate(-90)\">\n", b.x + 14, py + ph / 2);
    svg_text(s, 0, 0, 12, "middle", ylabel);
    fputs("</g>\n", f);
  }
  const char *mark_style = "stroke=\"#777777\" stroke-width=\"1.5\" stroke-dasharray=\"4 3\"";
  if (mark)
    fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" %s/>\n", SX(o.mark_x), py, SX(o.mark_x),
            py + ph, mark_style);
  /* a line drawn over an earlier one gets gaps the earlier colour shows through */
  char (*dash)[32] = xcalloc((size_t)(ns > 0 ? ns : 1), sizeof *dash);
  for (int i = 0; i < ns; i++) {
    const char *pattern = under[i] >= 0 ? (ss[i].dashed ? "2 6" : "9 7") : ss[i].dashed ? "6 4" : NULL;
    if (pattern) snprintf(dash[i], sizeof dash[i], " stroke-dasharray=\"%s\"", pattern);
  }
  for (int i = 0; i < ns; i++) {
    const char *col = ss[i].colour ? ss[i].colour : svg_colour(i);
    bool open = false;
    for (int j = 0; j < ss[i].n; j++) {
      double x = ss[i].x[j], y = ss[i].y[j];
      if (!isfinite(x) || !isfinite(y)) {
        if (open) fputs("\"/>\n", f);
        open = false;
        continue;
      }
      if (!open)
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\"%s points=\"", col, dash[i]);
      fprintf(f, "%s%.1f,%.1f", open ? " " : "", SX(x), SY(y));
      open = true;
    }
    if (open) fputs("\"/>\n", f);
    /* markers keep single points and sparse curves visible */
    if (ss[i].n <= 60)
      for (int j = 0; j < ss[i].n; j++)
        if (isfinite(ss[i].x[j]) && isfinite(ss[i].y[j]))
          fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"%.1f\" fill=\"%s\"/>\n", SX(ss[i].x[j]),
                  SY(ss[i].y[j]), under[i] >= 0 ? 1.5 : 2.5, col);
  }
  double lx = 0, ly = py + ph + 52;
  for (int i = 0; i < ns + mark; i++) {
    const char *name = i < ns ? names[i] : o.mark_label;
    double w = 24 + text_width(name);
    if (lx > 0 && lx + w > pw) ly += row_h, lx = 0;
    if (i < ns)
      fprintf(f,
              "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"2\"%s/>\n",
              px + lx, ly - 4, px + lx + 18, ly - 4, ss[i].colour ? ss[i].colour : svg_colour(i), dash[i]);
    else
      fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" %s/>\n", px + lx, ly - 4, px + lx + 18,
              ly - 4, mark_style);
    svg_text(s, px + lx + 24, ly, 11, "start", name);
    lx += w + entry_gap;
  }
  fputs("</g>\n", f);
  for (int i = 0; i < ns; i++) free(names[i]);
  free(names), free(under), free(dash);
#undef SX
#undef SY
}

/* White to dark blue through a few stops, so small and large values are both
 * told apart by eye. t in [0, 1]. */
static void colour(double t, int rgb[3]) {
  static const int stops[][3] = {
      {247, 251, 255}, {198, 219, 239}, {107, 174, 214}, {33, 113, 181}, {8, 48, 107}};
  if (!(t > 0)) t = 0;
  if (t > 1) t = 1;
  double p = t * 4;
  int i = (int)p;
  if (i > 3) i = 3;
  double u = p - i;
  for (int c = 0; c < 3; c++) rgb[c] = (int)lround(stops[i][c] + u * (stops[i + 1][c] - stops[i][c]));
}

void svg_heatmap(svg *s, svg_box b, const char *title, int rows, int cols, const double *v,
                 const char *row_prefix, const char *col_prefix, double vmin, double vmax,
                 const char *label_fmt) {
  FILE *f = s->f;
  /* "layer " names the axis once; "L" prefixes every index */
  const char *rp = row_prefix ? row_prefix : "", *cp = col_prefix ? col_prefix : "";
  bool row_axis = *rp && rp[strlen(rp) - 1] == ' ', col_axis = *cp && cp[strlen(cp) - 1] == ' ';
  const double ml = row_axis ? 52 : 44, mr = 70, mt = 30, mb = col_axis ? 42 : 28;
  double pw = b.w - ml - mr, ph = b.h - mt - mb;
  double cw = pw / (cols > 0 ? cols : 1), ch = ph / (rows > 0 ? rows : 1);
  double px = b.x + ml, py = b.y + mt;
  if (!(vmax > vmin)) vmax = vmin + 1;
  fprintf(f, "<g>\n");
  if (title) svg_text(s, b.x + b.w / 2, b.y + 18, 14, "middle", title);
  char lab[64];
  double fsize = fmin(12, fmin(cw / 4, ch / 2));
  for (int r = 0; r < rows; r++)
    for (int c = 0; c < cols; c++) {
      double x = v[(size_t)r * cols + c], t = (x - vmin) / (vmax - vmin);
      int rgb[3];
      colour(isfinite(x) ? t : 0, rgb);
      fprintf(f,
              "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"rgb(%d,%d,%d)\" "
              "stroke=\"#ffffff\"/>\n",
              px + c * cw, py + r * ch, cw, ch, rgb[0], rgb[1], rgb[2]);
      if (isfinite(x)) snprintf(lab, sizeof lab, label_fmt ? label_fmt : "%.2f", x);
      else snprintf(lab, sizeof lab, "n/a");
      fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"%.1f\" text-anchor=\"middle\" fill=\"%s\">",
              px + (c + 0.5) * cw, py + (r + 0.5) * ch + fsize * 0.35, fsize,
              t > 0.55 ? "#ffffff" : "#000000");
      put_escaped(f, lab);
      fputs("</text>\n", f);
    }
  for (int r = 0; r < rows; r++) {
    snprintf(lab, sizeof lab, "%s%d", row_axis ? "" : rp, r);
    svg_text(s, px - 6, py + (r + 0.5) * ch + 4, 11, "end", lab);
  }
  for (int c = 0; c < cols; c++) {
    snprintf(lab, sizeof lab, "%s%d", col_axis ? "" : cp, c);
    svg_text(s, px + (c + 0.5) * cw, py + ph + 16, 11, "middle", lab);
  }
  if (row_axis) {
    snprintf(lab, sizeof lab, "%.*s", (int)strlen(rp) - 1, rp);
    fprintf(f, "<g transform=\"translate(%.1f %.1f) rotate(-90)\">\n", b.x + 16, py + ph / 2);
    svg_text(s, 0, 0, 12, "middle", lab);
    fputs("</g>\n", f);
  }
  if (col_axis) {
    snprintf(lab, sizeof lab, "%.*s", (int)strlen(cp) - 1, cp);
    svg_text(s, px + pw / 2, py + ph + 34, 12, "middle", lab);
  }
  /* colour bar: 20 bands, labelled at both ends and the middle */
  double bx = px + pw + 14, bw = 14;
  for (int i = 0; i < 20; i++) {
    int rgb[3];
    colour((19 - i + 0.5) / 20.0, rgb);
    fprintf(f, "<rect x=\"%.1f\" y=\"%.2f\" width=\"%.1f\" height=\"%.2f\" fill=\"rgb(%d,%d,%d)\"/>\n", bx,
            py + i * ph / 20, bw, ph / 20 + 0.5, rgb[0], rgb[1], rgb[2]);
  }
  fprintf(f,
          "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"#333333\"/>\n",
          bx, py, bw, ph);
  for (int i = 0; i <= 2; i++) {
    double val = vmax - i * (vmax - vmin) / 2;
    snprintf(lab, sizeof lab, "%.3g", val);
    svg_text(s, bx + bw + 4, py + i * ph / 2 + 4, 10, "start", lab);
  }
  fputs("</g>\n", f);
}
