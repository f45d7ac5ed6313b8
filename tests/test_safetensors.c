#include <check.h>
#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "attnsink.h"
#include "core/error.h"
#include "io/atomic_file.h"
#include "io/safetensors.h"

/* ---- helpers -------------------------------------------------------------------- */

static char tmpdir[256];

static void make_tmpdir(void) {
  snprintf(tmpdir, sizeof tmpdir, "/tmp/asink_st_XXXXXX");
  ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void remove_tmpdir(void) {
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
  ck_assert_int_eq(system(cmd), 0);
}

static const char *tmp_path(const char *name) {
  static char buf[4][512];
  static int k;
  k = (k + 1) % 4;
  snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
  return buf[k];
}

static int count_dir_entries(const char *dir) {
  DIR *d = opendir(dir);
  ck_assert_ptr_nonnull(d);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)))
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
  closedir(d);
  return n;
}

static int file_exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

static unsigned char *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  ck_assert_ptr_nonnull(f);
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *b = malloc((size_t)n + 1);
  ck_assert_uint_eq(fread(b, 1, (size_t)n, f), (size_t)n);
  fclose(f);
  *len = (size_t)n;
  return b;
}

static uint32_t bits(float f) {
  uint32_t b;
  memcpy(&b, &f, 4);
  return b;
}

/* A file in memory: 8-byte little-endian hlen (the header's length unless given),
 * the header text, then data. */
static unsigned char *make_file_hlen(uint64_t hlen, const char *header, const void *data, size_t data_len,
                                     size_t *len) {
  size_t h = strlen(header);
  *len = 8 + h + data_len;
  unsigned char *b = malloc(*len + 1);
  for (int i = 0; i < 8; i++) b[i] = (unsigned char)(hlen >> (8 * i));
  memcpy(b + 8, header, h);
  if (data_len) memcpy(b + 8 + h, data, data_len);
  return b;
}

static unsigned char *make_file(const char *header, const void *data, size_t data_len, size_t *len) {
  return make_file_hlen(strlen(header), header, data, data_len, len);
}

/* Parses header + data_len zero bytes and checks it fails with FORMAT and a message
 * holding every given word. */
static void expect_reject(const char *header, size_t data_len, const char *w1, const char *w2) {
  unsigned char zeros[256] = {0};
  ck_assert_uint_le(data_len, sizeof zeros);
  size_t len;
  unsigned char *b = make_file(header, zeros, data_len, &len);
  asink_tensors *set = (asink_tensors *)&len; /* must be reset to NULL */
  ck_assert_int_eq(asink_st_parse(b, len, &set), ASINK_ERR_FORMAT);
  ck_assert_ptr_null(set);
  const char *msg = asink_last_error();
  if (w1) ck_assert_msg(strstr(msg, w1), "message '%s' lacks '%s'", msg, w1);
  if (w2) ck_assert_msg(strstr(msg, w2), "message '%s' lacks '%s'", msg, w2);
  free(b);
}

static asink_tensors *parse_ok(const char *header, const void *data, size_t data_len) {
  size_t len;
  unsigned char *b = make_file(header, data, data_len, &len);
  asink_tensors *set = NULL;
  asink_status s = asink_st_parse(b, len, &set);
  ck_assert_msg(s == ASINK_OK, "parse failed: %s", asink_last_error());
  free(b);
  return set;
}

/* ---- round trip ------------------------------------------------------------------ */

START_TEST(round_trip_names_shapes_data_metadata) {
  make_tmpdir();
  asink_tensors *set;
  ck_assert_int_eq(asink_st_create(&set), ASINK_OK);
  float w[6] = {1.5f, -2.25f, 0.0f, -0.0f, INFINITY, 1e-42f};
  int64_t sw[2] = {2, 3};
  float scalar = 3.25f;
  int64_t s8[8] = {1, 1, 1, 1, 1, 1, 1, 2};
  float v8[2] = {NAN, -7.0f};
  int64_t s0[2] = {0, 4};
  ck_assert_int_eq(asink_st_add(set, "model.layers.0.mlp.w", 2, sw, w), ASINK_OK);
  ck_assert_int_eq(asink_st_add(set, "a.scalar", 0, NULL, &scalar), ASINK_OK);
  ck_assert_int_eq(asink_st_add(set, "deep", 8, s8, v8), ASINK_OK);
  ck_assert_int_eq(asink_st_add(set, "empty", 2, s0, NULL), ASINK_OK);
  ck_assert_int_eq(asink_st_add(set, "zeros", 1, sw, NULL), ASINK_OK);
  ck_assert_int_eq(asink_st_meta_set(set, "format", "pt"), ASINK_OK);
  ck_assert_int_eq(asink_st_meta_set(set, "step", "11"), ASINK_OK);
  ck_assert_int_eq(asink_st_meta_set(set, "step", "12"), ASINK_OK);
  ck_assert_int_eq(asink_st_meta_set(set, "note", "h\xc3\xa9 \"quoted\"\n"), ASINK_OK);

  const char *path = tmp_path("m.safetensors");
  ck_assert_int_eq(asink_st_write(set, path), ASINK_OK);
  ck_assert_int_eq(count_dir_entries(tmpdir), 1); /* no temp file left behind */

  /* The layout other readers expect: 8-aligned header padded with spaces, sorted names. */
  size_t len;
  unsigned char *raw = slurp(path, &len);
  uint64_t hlen = 0;
  for (int i = 0; i < 8; i++) hlen |= (uint64_t)raw[i] << (8 * i);
  ck_assert_uint_eq(hlen % 8, 0);
  ck_assert_uint_eq(len, 8 + hlen + 4 * (6 + 1 + 2 + 0 + 2));
  ck_assert(raw[8] == '{');
  ck_assert(memcmp(raw + 8, "{\"__metadata__\"", 15) == 0);
  size_t last = 8 + (size_t)hlen - 1;
  while (raw[last] == ' ') last--;
  ck_assert(raw[last] == '}');
  char *hdr = strndup((char *)raw + 8, (size_t)hlen);
  char *pa = strstr(hdr, "\"a.scalar\""), *pd = strstr(hdr, "\"deep\""), *pe = strstr(hdr, "\"empty\""),
       *pm = strstr(hdr, "\"model.layers.0.mlp.w\""), *pz = strstr(hdr, "\"zeros\"");
  ck_assert(pa && pd && pe && pm && pz && pa < pd && pd < pe && pe < pm && pm < pz);
  ck_assert_ptr_nonnull(strstr(hdr, "\"dtype\":\"F32\""));
  free(hdr);
  free(raw);

  asink_tensors *back;
  ck_assert_int_eq(asink_st_read(path, &back), ASINK_OK);
  ck_assert_int_eq(asink_st_count(back), 5);
  for (int i = 0; i < asink_st_count(set); i++) {
    const char *name;
    int nd;
    int64_t shape[ASINK_ST_MAX_DIMS];
    const float *d;
    ck_assert_int_eq(asink_st_get(set, i, &name, &nd, shape, &d), ASINK_OK);
    int j = asink_st_find(back, name);
    ck_assert_int_ge(j, 0);
    const char *name2;
    int nd2;
    int64_t shape2[ASINK_ST_MAX_DIMS];
    const float *d2;
    ck_assert_int_eq(asink_st_get(back, j, &name2, &nd2, shape2, &d2), ASINK_OK);
    ck_assert_str_eq(name, name2);
    ck_assert_int_eq(nd, nd2);
    for (int k = 0; k < nd; k++) ck_assert_int_eq(shape[k], shape2[k]);
    ck_assert_int_eq(asink_st_numel(set, i), asink_st_numel(back, j));
    ck_assert_str_eq(asink_st_dtype(back, j), "F32");
    for (int64_t k = 0; k < asink_st_numel(set, i); k++) ck_assert_uint_eq(bits(d[k]), bits(d2[k]));
  }
  /* File order is the data order, which the writer made the sorted-name order. */
  const char *first;
  ck_assert_int_eq(asink_st_get(back, 0, &first, NULL, NULL, NULL), ASINK_OK);
  ck_assert_str_eq(first, "a.scalar");
  ck_assert_int_eq(asink_st_numel(back, asink_st_find(back, "a.scalar")), 1);
  ck_assert_int_eq(asink_st_numel(back, asink_st_find(back, "empty")), 0);

  ck_assert_int_eq(asink_st_meta_count(back), 3);
  ck_assert_str_eq(asink_st_meta_get(back, "format"), "pt");
  ck_assert_str_eq(asink_st_meta_get(back, "step"), "12");
  ck_assert_str_eq(asink_st_meta_get(back, "note"), "h\xc3\xa9 \"quoted\"\n");
  ck_assert_ptr_null(asink_st_meta_get(back, "absent"));
  const char *k0, *v0;
  ck_assert_int_eq(asink_st_meta_at(back, 0, &k0, &v0), ASINK_OK);
  ck_assert_str_eq(k0, "format");
  ck_assert_int_eq(asink_st_meta_at(back, 3, &k0, &v0), ASINK_ERR_ARG);

  /* Writing what was read gives the same bytes. */
  const char *path2 = tmp_path("m2.safetensors");
  ck_assert_int_eq(asink_st_write(back, path2), ASINK_OK);
  size_t l1, l2;
  unsigned char *b1 = slurp(path, &l1), *b2 = slurp(path2, &l2);
  ck_assert_uint_eq(l1, l2);
  ck_assert(memcmp(b1, b2, l1) == 0);
  free(b1);
  free(b2);

  asink_st_free(back);
  asink_st_free(set);
  remove_tmpdir();
}
END_TEST

START_TEST(empty_set_round_trips) {
  make_tmpdir();
  asink_tensors *set, *back;
  ck_assert_int_eq(asink_st_create(&set), ASINK_OK);
  ck_assert_int_eq(asink_st_write(set, tmp_path("e.safetensors")), ASINK_OK);
  ck_assert_int_eq(asink_st_read(tmp_path("e.safetensors"), &back), ASINK_OK);
  ck_assert_int_eq(asink_st_count(back), 0);
  ck_assert_int_eq(asink_st_meta_count(back), 0);
  asink_st_free(back);
  asink_st_free(set);
  remove_tmpdir();
}
END_TEST

START_TEST(add_validates) {
  asink_tensors *set;
  ck_assert_int_eq(asink_st_create(&set), ASINK_OK);
  int64_t s1[1] = {2};
  float d[2] = {1, 2};
  ck_assert_int_eq(asink_st_add(set, "x", 1, s1, d), ASINK_OK);
  ck_assert_int_eq(asink_st_add(set, "x", 1, s1, d), ASINK_ERR_ARG);
  ck_assert_ptr_nonnull(strstr(asink_last_error(), "duplicate"));
  ck_assert_ptr_nonnull(strstr(asink_last_error(), "'x'"));
  ck_assert_int_eq(asink_st_add(set, "__metadata__", 1, s1, d), ASINK_ERR_ARG);
  ck_assert_ptr_nonnull(strstr(asink_last_error(), "__metadata__"));
  int64_t s9[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
  ck_assert_int_eq(asink_st_add(set, "y", 9, s9, d), ASINK_ERR_ARG);
  ck_assert_ptr_nonnull(strstr(asink_last_error(), "ndim=9"));
  int64_t neg[2] = {2, -1};
  ck_assert_int_eq(asink_st_add(set, "y", 2, neg, d), ASINK_ERR_ARG);
  ck_assert_ptr_nonnull(strstr(asink_last_error(), "-1"));
  int64_t big[2] = {INT64_MAX, 4};
  ck_assert_int_eq(asink_st_add(set, "y", 2, big, d), ASINK_ERR_ARG);
  ck_assert_int_eq(asink_st_add(set, "bad\xff", 1, s1, d), ASINK_ERR_ARG);
  ck_assert_ptr_nonnull(strstr(asink_last_error(), "UTF-8"));
  ck_assert_int_eq(asink_st_add(NULL, "z", 1, s1, d), ASINK_ERR_ARG);
  ck_assert_int_eq(asink_st_meta_set(set, "k", NULL), ASINK_ERR_ARG);
  ck_assert_int_eq(asink_st_count(set), 1);
  ck_assert_int_eq(asink_st_find(set, "nope"), -1);
  ck_assert_int_eq(asink_st_get(set, 1, NULL, NULL, NULL, NULL), ASINK_ERR_ARG);
  ck_assert_int_eq(asink_st_get(set, -1, NULL, NULL, NULL, NULL), ASINK_ERR_ARG);
  ck_assert_int_eq(asink_st_numel(set, 5), -1);
  ck_assert_ptr_null(asink_st_dtype(set, 5));
  ck_assert_int_eq(asink_st_count(NULL), 0);
  asink_st_free(set);
  asink_st_free(NULL);
}
END_TEST

/* ---- reading other dtypes --------------------------------------------------------- */

START_TEST(reads_f16_with_subnormals_inf_nan_negzero) {
  const uint16_t h[] = {0x0000, 0x8000, 0x3c00, 0xc000, 0x7bff, 0x0400, 0x0001,
                        0x03ff, 0x8001, 0x7c00, 0xfc00, 0x7e00, 0x3555, 0xfe01};
  const int n = sizeof h / sizeof *h;
  unsigned char data[64];
  for (int i = 0; i < n; i++) {
    data[2 * i] = (unsigned char)h[i];
    data[2 * i + 1] = (unsigned char)(h[i] >> 8);
  }
  asink_tensors *set = parse_ok("{\"h\":{\"dtype\":\"F16\",\"shape\":[14],\"data_offsets\":[0,28]}}", data, 28);
  const float *f;
  ck_assert_int_eq(asink_st_get(set, 0, NULL, NULL, NULL, &f), ASINK_OK);
  ck_assert_str_eq(asink_st_dtype(set, 0), "F16");
  ck_assert_uint_eq(bits(f[0]), 0x00000000u);
  ck_assert_uint_eq(bits(f[1]), 0x80000000u); /* -0 keeps its sign */
  ck_assert(f[2] == 1.0f);
  ck_assert(f[3] == -2.0f);
  ck_assert(f[4] == 65504.0f);
  ck_assert(f[5] == ldexpf(1.0f, -14));
  ck_assert(f[6] == ldexpf(1.0f, -24)); /* smallest subnormal */
  ck_assert(f[7] == ldexpf(1023.0f, -24));
  ck_assert(f[8] == -ldexpf(1.0f, -24));
  ck_assert(isinf(f[9]) && f[9] > 0);
  ck_assert(isinf(f[10]) && f[10] < 0);
  ck_assert(isnan(f[11]));
  ck_assert(f[12] == 0.333251953125f);
  ck_assert(isnan(f[13]) && signbit(f[13]));
  ck_assert_uint_eq(bits(f[13]), 0xffc02000u); /* payload kept */
  asink_st_free(set);
}
END_TEST

START_TEST(reads_bf16_with_subnormals_inf_nan_negzero) {
  const uint16_t h[] = {0x3f80, 0x8000, 0x0001, 0x807f, 0x7f80, 0xff80, 0x7fc0, 0x4049, 0x7f7f, 0x0080};
  const int n = sizeof h / sizeof *h;
  unsigned char data[64];
  for (int i = 0; i < n; i++) {
    data[2 * i] = (unsigned char)h[i];
    data[2 * i + 1] = (unsigned char)(h[i] >> 8);
  }
  /* 2-D shape and an F32 tensor after it: offsets are relative to the data area. */
  unsigned char all[64];
  memcpy(all, data, 20);
  float one = 1.0f;
  memcpy(all + 20, &one, 4);
  asink_tensors *set = parse_ok("{\"b\":{\"dtype\":\"BF16\",\"shape\":[2,5],\"data_offsets\":[0,20]},"
                                "\"f\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[20,24]}}",
                                all, 24);
  int i = asink_st_find(set, "b");
  const float *f;
  int nd;
  int64_t shape[8];
  ck_assert_int_eq(asink_st_get(set, i, NULL, &nd, shape, &f), ASINK_OK);
  ck_assert_int_eq(nd, 2);
  ck_assert_int_eq(shape[0], 2);
  ck_assert_int_eq(shape[1], 5);
  ck_assert_str_eq(asink_st_dtype(set, i), "BF16");
  ck_assert(f[0] == 1.0f);
  ck_assert_uint_eq(bits(f[1]), 0x80000000u);
  ck_assert(f[2] == ldexpf(1.0f, -133)); /* subnormal as float too */
  ck_assert(f[3] == -ldexpf(127.0f, -133));
  ck_assert(isinf(f[4]) && f[4] > 0);
  ck_assert(isinf(f[5]) && f[5] < 0);
  ck_assert(isnan(f[6]));
  ck_assert(f[7] == 3.140625f);
  ck_assert_uint_eq(bits(f[8]), 0x7f7f0000u);
  ck_assert(f[9] == ldexpf(1.0f, -126));
  const float *s;
  ck_assert_int_eq(asink_st_get(set, asink_st_find(set, "f"), NULL, &nd, NULL, &s), ASINK_OK);
  ck_assert_int_eq(nd, 0);
  ck_assert(s[0] == 1.0f);
  asink_st_free(set);
}
END_TEST

START_TEST(reads_f64) {
  double d[5] = {1.5, -0.0, 1e300, 1e-300, NAN};
  unsigned char data[40];
  memcpy(data, d, sizeof d); /* tests run on little-endian hosts */
  asink_tensors *set = parse_ok("{\"d\":{\"dtype\":\"F64\",\"shape\":[5],\"data_offsets\":[0,40]}}", data, 40);
  const float *f;
  ck_assert_int_eq(asink_st_get(set, 0, NULL, NULL, NULL, &f), ASINK_OK);
  ck_assert(f[0] == 1.5f);
  ck_assert_uint_eq(bits(f[1]), 0x80000000u);
  ck_assert(isinf(f[2]));
  ck_assert(f[3] == 0.0f);
  ck_assert(isnan(f[4]));
  asink_st_free(set);
}
END_TEST

START_TEST(zero_sized_and_scalar_tensors_lay_out) {
  float v[3] = {1, 2, 3};
  /* Zero-byte tensors sit at the offset where they are, even at the very end. */
  asink_tensors *set = parse_ok("{\"z0\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]},"
                                "\"s\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]},"
                                "\"z1\":{\"dtype\":\"F16\",\"shape\":[3,0,2],\"data_offsets\":[4,4]},"
                                "\"v\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]},"
                                "\"z2\":{\"dtype\":\"BF16\",\"shape\":[0],\"data_offsets\":[12,12]}}",
                                v, 12);
  ck_assert_int_eq(asink_st_count(set), 5);
  ck_assert_int_eq(asink_st_numel(set, asink_st_find(set, "z1")), 0);
  ck_assert_int_eq(asink_st_numel(set, asink_st_find(set, "s")), 1);
  const float *f;
  ck_assert_int_eq(asink_st_get(set, asink_st_find(set, "v"), NULL, NULL, NULL, &f), ASINK_OK);
  ck_assert(f[0] == 2.0f && f[1] == 3.0f);
  /* data order: z0, s, z1, v, z2 */
  const char *name;
  asink_st_get(set, 0, &name, NULL, NULL, NULL);
  ck_assert_str_eq(name, "z0");
  asink_st_get(set, 4, &name, NULL, NULL, NULL);
  ck_assert_str_eq(name, "z2");
  asink_st_free(set);
}
END_TEST

START_TEST(metadata_is_read_and_checked) {
  asink_tensors *set = parse_ok("{\"__metadata__\":{\"format\":\"pt\",\"step\":\"7\"}}   ", NULL, 0);
  ck_assert_int_eq(asink_st_count(set), 0);
  ck_assert_str_eq(asink_st_meta_get(set, "step"), "7");
  asink_st_free(set);
  expect_reject("{\"__metadata__\":[1]}", 0, "__metadata__", "not an object");
  expect_reject("{\"__metadata__\":{\"step\":7}}", 0, "'step'", "not a string");
}
END_TEST

/* ---- one test per rejection rule -------------------------------------------------- */

START_TEST(rejects_file_shorter_than_8_bytes) {
  unsigned char b[5] = {1, 0, 0, 0, 0};
  asink_tensors *set;
  ck_assert_int_eq(asink_st_parse(b, 5, &set), ASINK_ERR_FORMAT);
  ck_assert_ptr_nonnull(strstr(asink_last_error(), "5 bytes"));
  ck_assert_ptr_nonnull(strstr(asink_last_error(), "too short"));
  ck_assert_int_eq(asink_st_parse(NULL, 0, &set), ASINK_ERR_FORMAT);
  ck_assert_int_eq(asink_st_parse(NULL, 8, &set), ASINK_ERR_ARG);
  ck_assert_int_eq(asink_st_parse(b, 5, NULL), ASINK_ERR_ARG);
}
END_TEST

START_TEST(rejects_header_over_100mb) {
  size_t len;
  unsigned char *b = make_file_hlen(100000001, "{}", NULL, 0, &len);
  asink_tensors *set;
  ck_assert_int_eq(asink_st_parse(b, len, &set), ASINK_ERR_FORMAT);
  ck_assert_ptr_nonnull(strstr(asink_last_error(), "100000001"));
  ck_assert_ptr_nonnull(strstr(asink_last_error(), "100 MB"));
  free(b);
  /* Exactly at the limit it is the file end that stops it. */
  b = make_file_hlen(100000000, "{}", NULL, 0, &len);
  ck_assert_int_eq(asink_st_parse(b, len, &set), ASINK_ERR_FORMAT);
  ck_assert_ptr_nonnull(strstr(asink_last_error(), "past the end"));
  free(b);
  b = make_file_hlen(UINT64_MAX, "{}", NULL, 0, &len);
  ck_assert_int_eq(asink_st_parse(b, len, &set), ASINK_ERR_FORMAT);
  ck_assert_ptr_nonnull(strstr(asink_last_error(), "100 MB"));
  free(b);
}
END_TEST

START_TEST(rejects_header_past_file_end) {
  size_t len;
  unsigned char *b = make_file_hlen(3, "{}", NULL, 0, &len);
  asink_tensors *set;
  ck_assert_int_eq(asink_st_parse(b, len, &set), ASINK_ERR_FORMAT);
  ck_assert_ptr_nonnull(strstr(asink_last_error(), "header length 3 runs past the end"));
  free(b);
}
END_TEST

START_TEST(rejects_invalid_json) {
  expect_reject("{\"a\":", 0, "not valid JSON", NULL);
  expect_reject("{\"a\":{}} x", 0, "not valid JSON", NULL);
  expect_reject("{\"a\xff\":{}}", 0, "not valid JSON", NULL);
  expect_reject("", 0, "not valid JSON", NULL);
}
END_TEST

START_TEST(rejects_header_not_an_object) {
  expect_reject("[1,2]", 0, "not a JSON object", NULL);
  expect_reject("[]", 0, "not a JSON object", NULL);
}
END_TEST

START_TEST(rejects_duplicate_names) {
  expect_reject("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                "\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                8, "duplicate", "\"w\"");
}
END_TEST

START_TEST(rejects_entry_not_an_object) {
  expect_reject("{\"layer.w\":3}", 0, "'layer.w'", "not an object");
  expect_reject("{\"layer.w\":[0,4]}", 4, "'layer.w'", "not an object");
}
END_TEST

START_TEST(rejects_missing_fields) {
  expect_reject("{\"t1\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "'t1'", "missing dtype");
  expect_reject("{\"t2\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "'t2'", "missing shape");
  expect_reject("{\"t3\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "'t3'", "missing data_offsets");
  expect_reject("{\"t4\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "'t4'", "dtype is not a string");
  expect_reject("{\"t5\":{\"dtype\":\"F32\",\"shape\":1,\"data_offsets\":[0,4]}}", 4, "'t5'", "shape is not an array");
}
END_TEST

START_TEST(rejects_unknown_dtype) {
  expect_reject("{\"ids\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "'ids'", "'I32'");
  expect_reject("{\"q\":{\"dtype\":\"F8_E4M3\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, "'q'", "F8_E4M3");
  expect_reject("{\"l\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "'l'", "not supported");
}
END_TEST

START_TEST(rejects_negative_dims) {
  expect_reject("{\"neg\":{\"dtype\":\"F32\",\"shape\":[2,-1],\"data_offsets\":[0,0]}}", 0, "'neg'", "shape[1]=-1 is negative");
}
END_TEST

START_TEST(rejects_too_many_dims) {
  expect_reject("{\"d9\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, "'d9'",
                "9 dims");
}
END_TEST

START_TEST(rejects_non_integer_shape) {
  expect_reject("{\"r\":{\"dtype\":\"F32\",\"shape\":[1.0],\"data_offsets\":[0,4]}}", 4, "'r'", "shape[0] is not an integer");
  expect_reject("{\"r\":{\"dtype\":\"F32\",\"shape\":[\"1\"],\"data_offsets\":[0,4]}}", 4, "'r'", "not an integer");
}
END_TEST

START_TEST(rejects_bad_data_offsets) {
  const char *bad[] = {
      "{\"o\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}",
      "{\"o\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}",
      "{\"o\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4.0]}}",
      "{\"o\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}",
      "{\"o\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":{\"begin\":0,\"end\":4}}}",
      "{\"o\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":\"0,4\"}}",
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) expect_reject(bad[i], 4, "'o'", "data_offsets is not [begin, end]");
  expect_reject("{\"o\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,0]}}", 4, "'o'", "end before");
}
END_TEST

START_TEST(rejects_size_overflow) {
  /* 2^32 * 2^32 wraps to 0 elements: would match a [0,0] span without the check. */
  expect_reject("{\"big\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,0]}}", 0, "'big'",
                "overflows 64 bits");
  /* (2^62 + 1) F32 elements are 2^64 + 4 bytes, which wraps to 4. */
  expect_reject("{\"wrap\":{\"dtype\":\"F32\",\"shape\":[4611686018427387905],\"data_offsets\":[0,4]}}", 4, "'wrap'",
                "byte size");
  expect_reject("{\"wrap\":{\"dtype\":\"F64\",\"shape\":[2305843009213693953],\"data_offsets\":[0,8]}}", 8, "'wrap'",
                "overflows 64 bits");
  expect_reject("{\"huge\":{\"dtype\":\"F32\",\"shape\":[9223372036854775807,2,1],\"data_offsets\":[0,8]}}", 8,
                "'huge'", "overflows");
}
END_TEST

START_TEST(rejects_size_mismatch) {
  expect_reject("{\"m\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4, "'m'", "needs 8 bytes");
  expect_reject("{\"m\":{\"dtype\":\"BF16\",\"shape\":[2,2],\"data_offsets\":[0,16]}}", 16, "'m'", "span 16");
  expect_reject("{\"m\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,0]}}", 0, "'m'", "needs 4 bytes");
}
END_TEST

START_TEST(rejects_data_not_starting_at_0) {
  expect_reject("{\"late\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "'late'", "starts at offset 4");
}
END_TEST

START_TEST(rejects_gap) {
  expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
                12, "gap of 4 bytes", "'b'");
  /* A zero-sized tensor also has to sit inside the laid-out data. */
  expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                "\"z\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[9,9]}}",
                4, "gap", "'z'");
}
END_TEST

START_TEST(rejects_overlap) {
  expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                12, "overlap", "'a'");
  expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                8, "overlap", "'b'");
  expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                "\"z\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]}}",
                8, "overlap", "'z'");
}
END_TEST

START_TEST(rejects_file_longer_or_shorter) {
  const char *h = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
  expect_reject(h, 9, "longer", "need");
  expect_reject(h, 7, "shorter", "need");
  expect_reject("{}", 1, "longer", NULL);
}
END_TEST

START_TEST(read_reports_path) {
  make_tmpdir();
  asink_tensors *set = (asink_tensors *)tmpdir;
  ck_assert_int_eq(asink_st_read(tmp_path("missing.safetensors"), &set), ASINK_ERR_IO);
  ck_assert_ptr_null(set);
  ck_assert_ptr_nonnull(strstr(asink_last_error(), "missing.safetensors"));
  ck_assert_int_eq(asink_st_read(tmpdir, &set), ASINK_ERR_IO); /* a directory */
  ck_assert_ptr_nonnull(strstr(asink_last_error(), "not a regular file"));

  ck_assert_int_eq(asink_atomic_write_buffer(tmp_path("bad.safetensors"), "\x02\0\0\0\0\0\0\0[]", 10), ASINK_OK);
  ck_assert_int_eq(asink_st_read(tmp_path("bad.safetensors"), &set), ASINK_ERR_FORMAT);
  const char *msg = asink_last_error();
  ck_assert_msg(strncmp(msg, tmp_path("bad.safetensors"), strlen(tmp_path("bad.safetensors"))) == 0, "%s", msg);
  ck_assert_ptr_nonnull(strstr(msg, "not a JSON object"));

  ck_assert_int_eq(asink_atomic_write_buffer(tmp_path("empty"), NULL, 0), ASINK_OK);
  ck_assert_int_eq(asink_st_read(tmp_path("empty"), &set), ASINK_ERR_FORMAT);
  ck_assert_ptr_nonnull(strstr(asink_last_error(), "too short"));
  remove_tmpdir();
}
END_TEST

/* ---- a mapped file, converted tensor by tensor ----------------------------------- */

/* asink_st_open + asink_st_file_load give the tensors asink_st_read gives, bit for bit, in
 * every dtype, across the loader's conversion chunks (2.5 M BF16 values span three). */
START_TEST(open_loads_what_read_reads) {
  make_tmpdir();
  enum { NB = 2500000, NH = 1000, NF = 37 };
  size_t data_len = (size_t)NB * 2 + NH * 2 + NF * 4;
  unsigned char *data = malloc(data_len);
  uint32_t x = 12345;
  for (size_t i = 0; i < data_len; i++) x = x * 1103515245u + 12345u, data[i] = (unsigned char)(x >> 16);
  char header[512];
  snprintf(header, sizeof header,
           "{\"big\":{\"dtype\":\"BF16\",\"shape\":[2500,1000],\"data_offsets\":[0,%d]},"
           "\"h\":{\"dtype\":\"F16\",\"shape\":[%d],\"data_offsets\":[%d,%d]},"
           "\"__metadata__\":{\"format\":\"pt\"},"
           "\"f\":{\"dtype\":\"F32\",\"shape\":[1,%d],\"data_offsets\":[%d,%d]}}",
           NB * 2, NH, NB * 2, NB * 2 + NH * 2, NF, NB * 2 + NH * 2, NB * 2 + NH * 2 + NF * 4);
  size_t len;
  unsigned char *file = make_file(header, data, data_len, &len);
  ck_assert_int_eq(asink_atomic_write_buffer(tmp_path("m.safetensors"), file, len), ASINK_OK);
  asink_tensors *set;
  ck_assert_int_eq(asink_st_read(tmp_path("m.safetensors"), &set), ASINK_OK);
  asink_st_file *f;
  ck_assert_int_eq(asink_st_open(tmp_path("m.safetensors"), &f), ASINK_OK);
  ck_assert_int_eq(asink_st_file_count(f), 3);
  for (int i = 0; i < 3; i++) {
    const char *name, *dtype;
    int ndim;
    int64_t shape[ASINK_ST_MAX_DIMS];
    ck_assert_int_eq(asink_st_file_info(f, i, &name, &ndim, shape, &dtype), ASINK_OK);
    int j = asink_st_find(set, name);
    ck_assert_int_ge(j, 0);
    ck_assert_str_eq(dtype, asink_st_dtype(set, j));
    const float *want;
    int want_ndim;
    int64_t want_shape[ASINK_ST_MAX_DIMS];
    asink_st_get(set, j, NULL, &want_ndim, want_shape, &want);
    ck_assert_int_eq(ndim, want_ndim);
    for (int d = 0; d < ndim; d++) ck_assert_int_eq(shape[d], want_shape[d]);
    size_t n = (size_t)asink_st_numel(set, j);
    float *got = malloc(n * sizeof(float));
    ck_assert_int_eq(asink_st_file_load(f, i, got), ASINK_OK);
    /* and again: the dropped pages are read back from the file */
    if (i == 0) ck_assert_int_eq(asink_st_file_load(f, i, got), ASINK_OK);
    ck_assert_int_eq(memcmp(got, want, n * sizeof(float)), 0);
    free(got);
  }
  ck_assert_int_eq(asink_st_file_info(f, 3, NULL, NULL, NULL, NULL), ASINK_ERR_ARG);
  float one;
  ck_assert_int_eq(asink_st_file_load(f, 3, &one), ASINK_ERR_ARG);
  asink_st_close(f);
  asink_st_free(set);

  /* an integer buffer (HF's U8 causal masks) is laid out and listed, but not converted */
  const unsigned char mask[] = {1, 0, 1, 1, 0, 0, 0, 0};
  const float w[2] = {1.5f, -2.f};
  unsigned char both[16];
  memcpy(both, mask, 8), memcpy(both + 8, w, 8);
  size_t mlen;
  unsigned char *mfile = make_file("{\"attention.bias\":{\"dtype\":\"U8\",\"shape\":[2,4],\"data_offsets\":[0,8]},"
                                   "\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}",
                                   both, 16, &mlen);
  ck_assert_int_eq(asink_atomic_write_buffer(tmp_path("mask.safetensors"), mfile, mlen), ASINK_OK);
  ck_assert_int_eq(asink_st_open(tmp_path("mask.safetensors"), &f), ASINK_OK);
  const char *dtype;
  ck_assert_int_eq(asink_st_file_info(f, 0, NULL, NULL, NULL, &dtype), ASINK_OK);
  ck_assert_str_eq(dtype, "U8");
  float got2[8];
  ck_assert_int_eq(asink_st_file_load(f, 0, got2), ASINK_ERR_FORMAT);
  ck_assert_ptr_nonnull(strstr(asink_last_error(), "'attention.bias' has dtype U8"));
  ck_assert_int_eq(asink_st_file_load(f, 1, got2), ASINK_OK);
  ck_assert(got2[0] == 1.5f && got2[1] == -2.f);
  asink_st_close(f);
  set = NULL;
  ck_assert_int_eq(asink_st_read(tmp_path("mask.safetensors"), &set), ASINK_ERR_FORMAT); /* converts all */
  ck_assert_ptr_nonnull(strstr(asink_last_error(), "'U8' is not supported"));
  free(mfile);

  /* errors as asink_st_read's, the path first */
  f = (asink_st_file *)tmpdir;
  ck_assert_int_eq(asink_st_open(tmp_path("missing.safetensors"), &f), ASINK_ERR_IO);
  ck_assert_ptr_null(f);
  ck_assert_ptr_nonnull(strstr(asink_last_error(), "missing.safetensors"));
  ck_assert_int_eq(asink_atomic_write_buffer(tmp_path("bad.safetensors"), file, len - 1), ASINK_OK);
  ck_assert_int_eq(asink_st_open(tmp_path("bad.safetensors"), &f), ASINK_ERR_FORMAT);
  const char *msg = asink_last_error();
  ck_assert_msg(!strncmp(msg, tmp_path("bad.safetensors"), strlen(tmp_path("bad.safetensors"))), "%s", msg);
  ck_assert_ptr_nonnull(strstr(msg, "shorter"));
  asink_st_close(NULL);
  free(file);
  free(data);
  remove_tmpdir();
}
END_TEST

/* ---- atomic writes ----------------------------------------------------------------- */

START_TEST(write_into_missing_directory_fails_cleanly) {
  make_tmpdir();
  asink_tensors *set;
  ck_assert_int_eq(asink_st_create(&set), ASINK_OK);
  float x = 1;
  ck_assert_int_eq(asink_st_add(set, "x", 0, NULL, &x), ASINK_OK);
  const char *path = tmp_path("nodir/m.safetensors");
  ck_assert_int_eq(asink_st_write(set, path), ASINK_ERR_IO);
  ck_assert_ptr_nonnull(strstr(asink_last_error(), "nodir/m.safetensors"));
  ck_assert(!file_exists(path));
  ck_assert_int_eq(count_dir_entries(tmpdir), 0);
  asink_st_free(set);
  remove_tmpdir();
}
END_TEST

START_TEST(overwrite_replaces_whole_file) {
  make_tmpdir();
  const char *path = tmp_path("m.safetensors");
  asink_tensors *big, *small, *back;
  ck_assert_int_eq(asink_st_create(&big), ASINK_OK);
  ck_assert_int_eq(asink_st_create(&small), ASINK_OK);
  int64_t n = 1000;
  ck_assert_int_eq(asink_st_add(big, "w", 1, &n, NULL), ASINK_OK);
  ck_assert_int_eq(asink_st_add(big, "v", 1, &n, NULL), ASINK_OK);
  ck_assert_int_eq(asink_st_meta_set(big, "which", "big"), ASINK_OK);
  float two[2] = {4, 5};
  int64_t s2 = 2;
  ck_assert_int_eq(asink_st_add(small, "w", 1, &s2, two), ASINK_OK);
  ck_assert_int_eq(asink_st_meta_set(small, "which", "small"), ASINK_OK);
  ck_assert_int_eq(asink_st_write(big, path), ASINK_OK);
  ck_assert_int_eq(asink_st_write(small, path), ASINK_OK);
  ck_assert_int_eq(count_dir_entries(tmpdir), 1);
  ck_assert_int_eq(asink_st_read(path, &back), ASINK_OK); /* exact length check passes */
  ck_assert_int_eq(asink_st_count(back), 1);
  ck_assert_int_eq(asink_st_numel(back, 0), 2);
  ck_assert_str_eq(asink_st_meta_get(back, "which"), "small");
  asink_st_free(back);
  asink_st_free(big);
  asink_st_free(small);
  remove_tmpdir();
}
END_TEST

static asink_status half_then_fail(FILE *f, void *ctx) {
  (void)ctx;
  fputs("partial content", f);
  return asink_fail(ASINK_ERR_IO, "simulated failure mid-write");
}

START_TEST(failed_write_keeps_old_file) {
  make_tmpdir();
  const char *path = tmp_path("config.json");
  ck_assert_int_eq(asink_atomic_write_buffer(path, "{\"old\":1}", 9), ASINK_OK);
  ck_assert_int_eq(asink_atomic_write(path, half_then_fail, NULL), ASINK_ERR_IO);
  ck_assert_ptr_nonnull(strstr(asink_last_error(), "simulated"));
  size_t len;
  unsigned char *b = slurp(path, &len);
  ck_assert_uint_eq(len, 9);
  ck_assert(memcmp(b, "{\"old\":1}", 9) == 0);
  free(b);
  ck_assert_int_eq(count_dir_entries(tmpdir), 1); /* temp file removed */
  ck_assert_int_eq(asink_atomic_write(NULL, half_then_fail, NULL), ASINK_ERR_ARG);
  ck_assert_int_eq(asink_atomic_write(path, NULL, NULL), ASINK_ERR_ARG);
  ck_assert_int_eq(asink_atomic_write_buffer(path, NULL, 3), ASINK_ERR_ARG);
  /* A relative path (no directory part) works too. */
  char cwd[1024];
  ck_assert_ptr_nonnull(getcwd(cwd, sizeof cwd));
  ck_assert_int_eq(chdir(tmpdir), 0);
  ck_assert_int_eq(asink_atomic_write_buffer("rel.txt", "x", 1), ASINK_OK);
  ck_assert_int_eq(chdir(cwd), 0);
  ck_assert(file_exists(tmp_path("rel.txt")));
  remove_tmpdir();
}
END_TEST

/* ---- cross-check with files written by Python (numpy + torch, no safetensors) ------ */

/* Writes py.safetensors (F16, BF16, F32, F64, scalar, empty; data order differs from
 * name order) plus NAME.f32 files holding torch's own conversion to float32; or, with
 * "check", verifies a file our writer produced. Exit 77: torch is not available. */
static const char *py_helper =
    "import sys, json, struct\n"
    "try:\n"
    "    import numpy as np, torch\n"
    "except Exception:\n"
    "    sys.exit(77)\n"
    "d = sys.argv[2]\n"
    "if sys.argv[1] == 'make':\n"
    "    g = torch.Generator().manual_seed(0)\n"
    "    sp = [0.0, -0.0, float('inf'), float('-inf'), float('nan'), 6e-8, 1e-40, 65504.0, 70000.0, 1e-5]\n"
    "    def t(dt, shape):\n"
    "        x = torch.randn(shape, generator=g, dtype=torch.float64) * 3\n"
    "        f = x.flatten()\n"
    "        f[:len(sp)] = torch.tensor(sp, dtype=torch.float64)[:f.numel()]\n"
    "        return f.reshape(shape).to(dt)\n"
    "    ts = {'h': t(torch.float16, (3, 7)), 'b': t(torch.bfloat16, (4, 5)), 'f': t(torch.float32, (11,)),\n"
    "          'd': t(torch.float64, (2, 3, 2)), 's': torch.tensor(2.5), 'z': torch.zeros((2, 0), dtype=torch.float16)}\n"
    "    names = {torch.float16: 'F16', torch.bfloat16: 'BF16', torch.float32: 'F32', torch.float64: 'F64'}\n"
    "    hdr, blobs, off = {'__metadata__': {'format': 'pt'}}, [], 0\n"
    "    for k in ['s', 'h', 'z', 'd', 'b', 'f']:\n"
    "        v = ts[k]\n"
    "        raw = (v.view(torch.int16) if v.dtype in (torch.float16, torch.bfloat16) else v).numpy().tobytes()\n"
    "        hdr[k] = {'dtype': names[v.dtype], 'shape': list(v.shape), 'data_offsets': [off, off + len(raw)]}\n"
    "        blobs.append(raw); off += len(raw)\n"
    "        v.to(torch.float32).numpy().tofile(d + '/' + k + '.f32')\n"
    "    h = json.dumps(hdr).encode()\n"
    "    h += b' ' * (-len(h) % 8)\n"
    "    open(d + '/py.safetensors', 'wb').write(struct.pack('<Q', len(h)) + h + b''.join(blobs))\n"
    "else:\n"
    "    b = open(d + '/c.safetensors', 'rb').read()\n"
    "    n = struct.unpack('<Q', b[:8])[0]\n"
    "    assert n % 8 == 0 and b[8:9] == b'{'\n"
    "    hdr = json.loads(b[8:8 + n])\n"
    "    assert hdr.pop('__metadata__') == {'step': '3'}\n"
    "    data = b[8 + n:]\n"
    "    off = 0\n"
    "    for k in sorted(hdr):\n"
    "        e = hdr[k]\n"
    "        assert e['dtype'] == 'F32' and e['data_offsets'][0] == off, (k, e)\n"
    "        off = e['data_offsets'][1]\n"
    "    assert off == len(data)\n"
    "    w = np.frombuffer(data, dtype='<f4', count=6, offset=hdr['w']['data_offsets'][0]).reshape(hdr['w']['shape'])\n"
    "    assert w.shape == (2, 3) and (w == np.arange(6, dtype=np.float32).reshape(2, 3) * 0.5 - 1).all()\n"
    "    assert hdr['s']['shape'] == [] and np.frombuffer(data, '<f4', 1, hdr['s']['data_offsets'][0])[0] == -3.5\n"
    "    t = torch.frombuffer(bytearray(data), dtype=torch.float32)\n"
    "    assert torch.equal(t[hdr['w']['data_offsets'][0] // 4:][:6].reshape(2, 3), torch.from_numpy(w.copy()))\n";

static int run_py(const char *mode) {
  if (access("/usr/bin/python3", X_OK) != 0) return 77;
  FILE *f = fopen(tmp_path("helper.py"), "w");
  ck_assert_ptr_nonnull(f);
  fputs(py_helper, f);
  fclose(f);
  char cmd[1200];
  snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s' %s '%s'", tmp_path("helper.py"), mode, tmpdir);
  int rc = system(cmd);
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

START_TEST(reads_python_written_file_and_python_reads_ours) {
  make_tmpdir();
  int rc = run_py("make");
  if (rc == 77) {
    fprintf(stderr, "python3 with numpy+torch not available: cross-check skipped\n");
    remove_tmpdir();
    return;
  }
  ck_assert_int_eq(rc, 0);
  asink_tensors *set;
  asink_status s = asink_st_read(tmp_path("py.safetensors"), &set);
  ck_assert_msg(s == ASINK_OK, "%s", asink_last_error());
  ck_assert_int_eq(asink_st_count(set), 6);
  ck_assert_str_eq(asink_st_meta_get(set, "format"), "pt");
  const char *dts[6][2] = {{"h", "F16"}, {"b", "BF16"}, {"f", "F32"}, {"d", "F64"}, {"s", "F32"}, {"z", "F16"}};
  for (int k = 0; k < 6; k++) {
    int i = asink_st_find(set, dts[k][0]);
    ck_assert_int_ge(i, 0);
    ck_assert_str_eq(asink_st_dtype(set, i), dts[k][1]);
    char fname[16];
    snprintf(fname, sizeof fname, "%s.f32", dts[k][0]);
    size_t len;
    unsigned char *want = slurp(tmp_path(fname), &len);
    ck_assert_uint_eq(len, 4 * (size_t)asink_st_numel(set, i));
    const float *got;
    ck_assert_int_eq(asink_st_get(set, i, NULL, NULL, NULL, &got), ASINK_OK);
    for (size_t j = 0; j < len / 4; j++) {
      float w;
      memcpy(&w, want + 4 * j, 4);
      if (isnan(w))
        ck_assert_msg(isnan(got[j]), "%s[%zu]: want NaN got %g", dts[k][0], j, got[j]);
      else
        ck_assert_msg(bits(w) == bits(got[j]), "%s[%zu]: want %a got %a", dts[k][0], j, w, got[j]);
    }
    free(want);
  }
  int64_t shape[8];
  int nd;
  ck_assert_int_eq(asink_st_get(set, asink_st_find(set, "d"), NULL, &nd, shape, NULL), ASINK_OK);
  ck_assert_int_eq(nd, 3);
  ck_assert(shape[0] == 2 && shape[1] == 3 && shape[2] == 2);
  asink_st_free(set);

  asink_tensors *out;
  ck_assert_int_eq(asink_st_create(&out), ASINK_OK);
  float w[6], sv = -3.5f, z[3] = {7, 8, 9};
  for (int i = 0; i < 6; i++) w[i] = (float)i * 0.5f - 1;
  int64_t sw[2] = {2, 3}, sz = 3;
  ck_assert_int_eq(asink_st_add(out, "w", 2, sw, w), ASINK_OK);
  ck_assert_int_eq(asink_st_add(out, "s", 0, NULL, &sv), ASINK_OK);
  ck_assert_int_eq(asink_st_add(out, "a", 1, &sz, z), ASINK_OK);
  ck_assert_int_eq(asink_st_meta_set(out, "step", "3"), ASINK_OK);
  ck_assert_int_eq(asink_st_write(out, tmp_path("c.safetensors")), ASINK_OK);
  ck_assert_int_eq(run_py("check"), 0);
  asink_st_free(out);
  remove_tmpdir();
}
END_TEST

Suite *safetensors_suite(void) {
  Suite *s = suite_create("safetensors");
  TCase *tc = tcase_create("format");
  tcase_add_test(tc, round_trip_names_shapes_data_metadata);
  tcase_add_test(tc, empty_set_round_trips);
  tcase_add_test(tc, add_validates);
  tcase_add_test(tc, reads_f16_with_subnormals_inf_nan_negzero);
  tcase_add_test(tc, reads_bf16_with_subnormals_inf_nan_negzero);
  tcase_add_test(tc, reads_f64);
  tcase_add_test(tc, zero_sized_and_scalar_tensors_lay_out);
  tcase_add_test(tc, metadata_is_read_and_checked);
  suite_add_tcase(s, tc);

  TCase *rj = tcase_create("rejects");
  tcase_add_test(rj, rejects_file_shorter_than_8_bytes);
  tcase_add_test(rj, rejects_header_over_100mb);
  tcase_add_test(rj, rejects_header_past_file_end);
  tcase_add_test(rj, rejects_invalid_json);
  tcase_add_test(rj, rejects_header_not_an_object);
  tcase_add_test(rj, rejects_duplicate_names);
  tcase_add_test(rj, rejects_entry_not_an_object);
  tcase_add_test(rj, rejects_missing_fields);
  tcase_add_test(rj, rejects_unknown_dtype);
  tcase_add_test(rj, rejects_negative_dims);
  tcase_add_test(rj, rejects_too_many_dims);
  tcase_add_test(rj, rejects_non_integer_shape);
  tcase_add_test(rj, rejects_bad_data_offsets);
  tcase_add_test(rj, rejects_size_overflow);
  tcase_add_test(rj, rejects_size_mismatch);
  tcase_add_test(rj, rejects_data_not_starting_at_0);
  tcase_add_test(rj, rejects_gap);
  tcase_add_test(rj, rejects_overlap);
  tcase_add_test(rj, rejects_file_longer_or_shorter);
  tcase_add_test(rj, read_reports_path);
  tcase_add_test(rj, open_loads_what_read_reads);
  suite_add_tcase(s, rj);

  TCase *at = tcase_create("atomic");
  tcase_add_test(at, write_into_missing_directory_fails_cleanly);
  tcase_add_test(at, overwrite_replaces_whole_file);
  tcase_add_test(at, failed_write_keeps_old_file);
  suite_add_tcase(s, at);

  TCase *py = tcase_create("python");
  tcase_set_timeout(py, 120);
  tcase_add_test(py, reads_python_written_file_and_python_reads_ours);
  suite_add_tcase(s, py);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(safetensors_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
