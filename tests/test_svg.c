/* The attnsink program's SVG charts (examples/attnsink/svg.c), read back as text: legends
 * under the chart's frame, a caller's colours kept, a line that lies on another (wholly
 * or in part) dashed and named in the legend, a flat series on a readable scale, 0 on the
 * axis when asked, the vertical marker, heatmap axis names. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "svg.h"

static const svg_box BOX = {0, 0, 720, 440};

static char *chart(const svg_series *ss, int n, const svg_chart_opts *o) {
  svg *s = svg_new(BOX.w, BOX.h);
  svg_line_chart_opts(s, BOX, "title", "step", "value (%)", ss, n, o);
  return svg_finish(s, NULL);
}

/* The bottom edge of the chart's frame (the one unfilled dark rectangle). */
static double frame_bottom(const char *t) {
  const char *r = strstr(t, "fill=\"none\" stroke=\"#333333\"");
  ck_assert_ptr_nonnull(r);
  while (r > t && strncmp(r, "<rect", 5)) r--;
  double x, y, w, h;
  ck_assert_int_eq(sscanf(r, "<rect x=\"%lf\" y=\"%lf\" width=\"%lf\" height=\"%lf\"", &x, &y, &w, &h), 4);
  return y + h;
}

/* y of the text element whose content is exactly `label`; NAN if there is none. */
static double text_y(const char *t, const char *label) {
  char want[160];
  snprintf(want, sizeof want, ">%s</text>", label);
  const char *p = strstr(t, want);
  if (!p) return NAN;
  while (p > t && strncmp(p, "<text", 5)) p--;
  double x, y;
  ck_assert_int_eq(sscanf(p, "<text x=\"%lf\" y=\"%lf\"", &x, &y), 2);
  return y;
}

/* The largest y-axis tick label (right-aligned numbers). */
static double top_tick(const char *t) {
  double top = -INFINITY;
  for (const char *p = t; (p = strstr(p, "text-anchor=\"end\">")); p++) {
    double v;
    if (sscanf(p + strlen("text-anchor=\"end\">"), "%lf", &v) == 1 && v > top) top = v;
  }
  return top;
}

static int count(const char *t, const char *needle) {
  int n = 0;
  for (const char *p = t; (p = strstr(p, needle)); p += strlen(needle)) n++;
  return n;
}

static const double X[5] = {0, 10, 20, 30, 40};

START_TEST(legend_sits_under_the_frame) {
  double a[5] = {5, 4, 3, 2, 1}, b[5] = {1, 2, 3, 4, 5};
  svg_series ss[] = {{"first run", X, a, 5, NULL, false}, {"second run", X, b, 5, NULL, true}};
  char *t = chart(ss, 2, NULL);
  double bottom = frame_bottom(t);
  ck_assert(text_y(t, "first run") > bottom);
  ck_assert(text_y(t, "second run") > bottom);
  ck_assert(text_y(t, "second run") < BOX.h);
  ck_assert_int_eq(count(t, "stroke-dasharray=\"6 4\""), 2); /* the dashed series and its legend line */
  free(t);
}
END_TEST

START_TEST(many_entries_wrap_into_rows_inside_the_box) {
  double y[5] = {1, 2, 3, 4, 5};
  char names[12][32];
  svg_series ss[12];
  for (int i = 0; i < 12; i++) {
    snprintf(names[i], sizeof names[i], "a fairly long name %d", i);
    double *yi = malloc(sizeof y);
    for (int k = 0; k < 5; k++) yi[k] = y[k] + 10 * i;
    ss[i] = (svg_series){names[i], X, yi, 5, NULL, false};
  }
  char *t = chart(ss, 12, NULL);
  double bottom = frame_bottom(t), first = text_y(t, names[0]), last = text_y(t, names[11]);
  ck_assert(first > bottom);
  ck_assert(last > first); /* a later row */
  ck_assert(last <= BOX.h);
  for (int i = 0; i < 12; i++) free((void *)ss[i].y);
  free(t);
}
END_TEST

START_TEST(caller_colours_are_kept) {
  double a[5] = {1, 2, 3, 4, 5}, b[5] = {2, 3, 4, 5, 6};
  svg_series ss[] = {{"sigmoid", X, a, 5, svg_colour(1), false}, {"softmax", X, b, 5, svg_colour(0), false}};
  char *t = chart(ss, 2, NULL);
  char want[96];
  snprintf(want, sizeof want, "stroke=\"%s\" stroke-width=\"2\" points=", svg_colour(1));
  ck_assert_ptr_nonnull(strstr(t, want));
  ck_assert(strstr(t, want) < strstr(t, "points=")); /* the first line drawn has sigmoid's colour */
  ck_assert_str_ne(svg_colour(0), svg_colour(1));
  free(t);
}
END_TEST

START_TEST(a_line_on_another_is_dashed_and_named) {
  double zero[5] = {0, 0, 0, 0, 0};
  svg_series ss[] = {{"softmax", X, zero, 5, NULL, false}, {"sigmoid", X, zero, 5, NULL, false}};
  char *t = chart(ss, 2, NULL);
  ck_assert(!isnan(text_y(t, "sigmoid (on softmax's line)")));
  ck_assert_int_eq(count(t, "stroke-dasharray=\"9 7\""), 2); /* the top line and its legend entry */
  free(t);
}
END_TEST

/* the note names the other run, not the other run's own note */
START_TEST(a_note_names_the_other_line_alone) {
  /* elu lies in part on sigmoid only, and sigmoid in part on softmax */
  double a[5] = {0, 0, 9, 9, 9}, zero[5] = {0, 0, 0, 0, 0}, c[5] = {5, 5, 0, 0, 0};
  svg_series ss[] = {{"softmax", X, a, 5, NULL, false},
                     {"sigmoid", X, zero, 5, NULL, false},
                     {"elu", X, c, 5, NULL, false}};
  char *t = chart(ss, 3, NULL);
  ck_assert(!isnan(text_y(t, "sigmoid (in part on softmax's line)")));
  ck_assert(!isnan(text_y(t, "elu (in part on sigmoid's line)")));
  free(t);
}
END_TEST

START_TEST(a_line_partly_on_another_is_noted) {
  double a[5] = {0, 0, 0, 5, 9}, b[5] = {0, 0, 0, 0.5, 1};
  svg_series ss[] = {{"softmax", X, a, 5, NULL, false}, {"sigmoid", X, b, 5, NULL, false}};
  char *t = chart(ss, 2, NULL);
  ck_assert(!isnan(text_y(t, "sigmoid (in part on softmax's line)")));
  free(t);
  double c[5] = {9, 8, 7, 6, 5};
  ss[1].y = c; /* apart everywhere: no note, no dash */
  t = chart(ss, 2, NULL);
  ck_assert(!isnan(text_y(t, "sigmoid")));
  ck_assert_int_eq(count(t, "stroke-dasharray"), 0);
  free(t);
}
END_TEST

START_TEST(flat_zero_percent_gets_its_scale) {
  double zero[5] = {0, 0, 0, 0, 0};
  svg_series ss[] = {{"run", X, zero, 5, NULL, false}};
  char *t = chart(ss, 1, NULL);
  ck_assert(top_tick(t) <= 1.0); /* without a hint: the old 0..1 */
  free(t);
  svg_chart_opts o = {.y_min_span = 5, .y_from_zero = true};
  t = chart(ss, 1, &o);
  ck_assert_double_eq(top_tick(t), 5);
  free(t);
  double big[5] = {0, 10, 20, 30, 40};
  ss[0].y = big; /* data wider than the span: the data decide */
  t = chart(ss, 1, &o);
  ck_assert_double_eq(top_tick(t), 40);
  free(t);
}
END_TEST

START_TEST(axis_from_zero_and_marker) {
  double x[3] = {100, 150, 200}, y[3] = {2.0, 1.8, 1.7};
  svg_series ss[] = {{"loss", x, y, 3, NULL, false}};
  svg_chart_opts o = {.x_from_zero = true, .mark_x = 128, .mark_label = "end of the context"};
  char *t = chart(ss, 1, &o);
  ck_assert(!isnan(text_y(t, "0"))); /* the x axis starts at 0 */
  ck_assert(text_y(t, "end of the context") > frame_bottom(t));
  ck_assert_int_eq(count(t, "stroke-dasharray=\"4 3\""), 2); /* the marker and its legend entry */
  free(t);
  o = (svg_chart_opts){.mark_x = NAN};
  t = chart(ss, 1, &o);
  ck_assert(isnan(text_y(t, "0")));
  ck_assert_int_eq(count(t, "stroke-dasharray"), 0);
  free(t);
}
END_TEST

START_TEST(heatmap_names_its_axes_once) {
  double v[6] = {0, 0.2, 0.4, 0.6, 0.8, 1};
  svg *s = svg_new(480, 260);
  svg_heatmap(s, (svg_box){0, 0, 480, 260}, "alpha", 2, 3, v, "layer ", "head ", 0, 1, "%.2f");
  char *t = svg_finish(s, NULL);
  ck_assert_int_eq(count(t, ">layer</text>"), 1);
  ck_assert_int_eq(count(t, ">head</text>"), 1);
  ck_assert_ptr_null(strstr(t, ">layer 0<"));
  ck_assert_ptr_nonnull(strstr(t, ">0.60<"));
  free(t);
  s = svg_new(480, 260);
  svg_heatmap(s, (svg_box){0, 0, 480, 260}, "alpha", 2, 3, v, "L", "h", 0, 1, "%.2f");
  t = svg_finish(s, NULL);
  ck_assert_ptr_nonnull(strstr(t, ">L1<"));
  ck_assert_ptr_nonnull(strstr(t, ">h2<"));
  free(t);
}
END_TEST

static Suite *svg_suite(void) {
  Suite *s = suite_create("svg");
  TCase *tc = tcase_create("charts");
  tcase_add_test(tc, legend_sits_under_the_frame);
  tcase_add_test(tc, many_entries_wrap_into_rows_inside_the_box);
  tcase_add_test(tc, caller_colours_are_kept);
  tcase_add_test(tc, a_line_on_another_is_dashed_and_named);
  tcase_add_test(tc, a_line_partly_on_another_is_noted);
  tcase_add_test(tc, a_note_names_the_other_line_alone);
  tcase_add_test(tc, flat_zero_percent_gets_its_scale);
  tcase_add_test(tc, axis_from_zero_and_marker);
  tcase_add_test(tc, heatmap_names_its_axes_once);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(svg_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
