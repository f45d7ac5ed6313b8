#include "io/safetensors.h"

#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/error.h"
#include "io/atomic_file.h"
#include "kernels/kernels.h"

/* Names come from untrusted files and may be megabytes long: messages show a prefix. */
#define NAME_FMT "'%.200s'"

/* The float dtypes first: the others are laid out (HF checkpoints keep masks as U8 or BOOL
 * buffers beside the weights) but never converted. */
enum { DT_F32, DT_F16, DT_BF16, DT_F64, N_FLOAT_DTYPES };
static const struct {
  const char *name;
  uint64_t size;
} dtypes[] = {{"F32", 4}, {"F16", 2}, {"BF16", 2}, {"F64", 8}, {"BOOL", 1}, {"U8", 1}, {"I8", 1},
              {"I16", 2}, {"U16", 2}, {"I32", 4}, {"U32", 4}, {"I64", 8}, {"U64", 8}};
#define N_DTYPES ((int)(sizeof dtypes / sizeof *dtypes))

typedef struct {
  char *name;
  int dtype;
  int ndim;
  int64_t shape[ASINK_ST_MAX_DIMS];
  size_t numel;
  float *data;
} st_tensor;

typedef struct {
  char *key, *val;
} st_meta;

struct asink_tensors {
  st_tensor *t;
  int n, cap;
  st_meta *meta;
  int n_meta, cap_meta;
};

/* ---- byte order and float conversions ---------------------------------------- */

static uint16_t load_le16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }

static uint32_t load_le32(const unsigned char *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t load_le64(const unsigned char *p) {
  return (uint64_t)load_le32(p) | (uint64_t)load_le32(p + 4) << 32;
}

static void store_le32(unsigned char *p, uint32_t v) {
  p[0] = (unsigned char)v;
  p[1] = (unsigned char)(v >> 8);
  p[2] = (unsigned char)(v >> 16);
  p[3] = (unsigned char)(v >> 24);
}

static void store_le64(unsigned char *p, uint64_t v) {
  store_le32(p, (uint32_t)v);
  store_le32(p + 4, (uint32_t)(v >> 32));
}

static float bits_to_f32(uint32_t b) {
  float f;
  memcpy(&f, &b, sizeof f);
  return f;
}

static uint32_t f32_to_bits(float f) {
  uint32_t b;
  memcpy(&b, &f, sizeof b);
  return b;
}

/* Bit-level rather than through _Float16 so it is exact whatever the compiler or
 * FPU mode (flush-to-zero would lose F16 subnormals); NaN payloads are kept. */
static float f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  if (exp == 0x1f) return bits_to_f32(sign | 0x7f800000u | mant << 13);
  if (exp != 0) return bits_to_f32(sign | (exp + 112) << 23 | mant << 13);
  if (mant == 0) return bits_to_f32(sign);
  /* Subnormal F16 (mant * 2^-24) is a normal F32: shift the leading one up to the
   * implicit bit, lowering the exponent once per shift. */
  uint32_t e = 113;
  while (!(mant & 0x400u)) {
    mant <<= 1;
    e--;
  }
  return bits_to_f32(sign | e << 23 | (mant & 0x3ffu) << 13);
}

static float bf16_to_f32(uint16_t h) { return bits_to_f32((uint32_t)h << 16); }

static void convert(float *dst, const unsigned char *src, size_t n, int dtype) {
  switch (dtype) {
  case DT_F32:
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (n) memcpy(dst, src, n * 4);
#else
    for (size_t i = 0; i < n; i++) dst[i] = bits_to_f32(load_le32(src + 4 * i));
#endif
    break;
  case DT_F16:
    for (size_t i = 0; i < n; i++) dst[i] = f16_to_f32(load_le16(src + 2 * i));
    break;
  case DT_BF16:
    for (size_t i = 0; i < n; i++) dst[i] = bf16_to_f32(load_le16(src + 2 * i));
    break;
  case DT_F64:
    for (size_t i = 0; i < n; i++) {
      uint64_t b = load_le64(src + 8 * i);
      double d;
      memcpy(&d, &b, sizeof d);
      dst[i] = (float)d;
    }
    break;
  }
}

/* ---- the set ------------------------------------------------------------------ */

asink_status asink_st_create(asink_tensors **out) {
  if (!out) return asink_fail(ASINK_ERR_ARG, "asink_st_create: out is NULL");
  *out = asink_calloc(1, sizeof **out);
  if (!*out) return asink_fail(ASINK_ERR_NOMEM, "cannot allocate a tensor set");
  return ASINK_OK;
}

void asink_st_free(asink_tensors *set) {
  if (!set) return;
  for (int i = 0; i < set->n; i++) {
    free(set->t[i].name);
    asink_free(set->t[i].data);
  }
  for (int i = 0; i < set->n_meta; i++) {
    free(set->meta[i].key);
    free(set->meta[i].val);
  }
  free(set->t);
  free(set->meta);
  free(set);
}

int asink_st_count(const asink_tensors *set) { return set ? set->n : 0; }

int asink_st_find(const asink_tensors *set, const char *name) {
  if (!set || !name) return -1;
  for (int i = 0; i < set->n; i++)
    if (strcmp(set->t[i].name, name) == 0) return i;
  return -1;
}

asink_status asink_st_get(const asink_tensors *set, int i, const char **name, int *ndim,
                          int64_t shape[ASINK_ST_MAX_DIMS], const float **data) {
  if (!set || i < 0 || i >= set->n)
    return asink_fail(ASINK_ERR_ARG, "tensor index %d out of range (set has %d)", i, asink_st_count(set));
  const st_tensor *t = &set->t[i];
  if (name) *name = t->name;
  if (ndim) *ndim = t->ndim;
  if (shape)
    for (int d = 0; d < t->ndim; d++) shape[d] = t->shape[d];
  if (data) *data = t->data;
  return ASINK_OK;
}

int64_t asink_st_numel(const asink_tensors *set, int i) {
  if (!set || i < 0 || i >= set->n) return -1;
  return (int64_t)set->t[i].numel;
}

const char *asink_st_dtype(const asink_tensors *set, int i) {
  if (!set || i < 0 || i >= set->n) return NULL;
  return dtypes[set->t[i].dtype].name;
}

/* Grows an array of elem-sized items to hold at least need; doubling keeps repeated
 * adds linear. */
static int grow(void **arr, int *cap, int need, size_t elem) {
  if (need <= *cap) return 1;
  int c = *cap ? *cap : 8;
  while (c < need) {
    if (c > (1 << 29)) return 0;
    c *= 2;
  }
  void *p = asink_realloc(*arr, (size_t)c, elem);
  if (!p) return 0;
  *arr = p;
  *cap = c;
  return 1;
}

/* jansson refuses invalid UTF-8 in strings; checking at the door keeps asink_st_write
 * from failing later on a name that was accepted. */
static int valid_utf8(const char *s) {
  json_t *j = json_string(s);
  if (!j) return 0;
  json_decref(j);
  return 1;
}

/* Appends a tensor that has been validated; takes ownership of data. */
static asink_status append(asink_tensors *set, const char *name, int dtype, int ndim, const int64_t *shape,
                           size_t numel, float *data) {
  if (!grow((void **)&set->t, &set->cap, set->n + 1, sizeof *set->t)) {
    asink_free(data);
    return asink_fail(ASINK_ERR_NOMEM, "cannot grow tensor set to %d tensors", set->n + 1);
  }
  char *copy = asink_strdup(name);
  if (!copy) {
    asink_free(data);
    return asink_fail(ASINK_ERR_NOMEM, "cannot copy tensor name " NAME_FMT, name);
  }
  st_tensor *t = &set->t[set->n++];
  memset(t, 0, sizeof *t);
  t->name = copy;
  t->dtype = dtype;
  t->ndim = ndim;
  for (int d = 0; d < ndim; d++) t->shape[d] = shape[d];
  t->numel = numel;
  t->data = data;
  return ASINK_OK;
}

asink_status asink_st_add(asink_tensors *set, const char *name, int ndim, const int64_t *shape,
                          const float *data) {
  if (!set || !name) return asink_fail(ASINK_ERR_ARG, "asink_st_add: set or name is NULL");
  if (strcmp(name, "__metadata__") == 0)
    return asink_fail(ASINK_ERR_ARG, "tensor name '__metadata__' is reserved for the metadata map");
  if (!valid_utf8(name)) return asink_fail(ASINK_ERR_ARG, "tensor name " NAME_FMT " is not valid UTF-8", name);
  if (asink_st_find(set, name) >= 0) return asink_fail(ASINK_ERR_ARG, "duplicate tensor name " NAME_FMT, name);
  if (ndim < 0 || ndim > ASINK_ST_MAX_DIMS)
    return asink_fail(ASINK_ERR_ARG, "tensor " NAME_FMT ": ndim=%d must be 0..%d", name, ndim, ASINK_ST_MAX_DIMS);
  if (ndim > 0 && !shape) return asink_fail(ASINK_ERR_ARG, "tensor " NAME_FMT ": shape is NULL", name);
  uint64_t numel = 1;
  for (int d = 0; d < ndim; d++) {
    if (shape[d] < 0)
      return asink_fail(ASINK_ERR_ARG, "tensor " NAME_FMT ": shape[%d]=%lld is negative", name, d,
                        (long long)shape[d]);
    if (shape[d] != 0 && numel > UINT64_MAX / (uint64_t)shape[d])
      return asink_fail(ASINK_ERR_ARG, "tensor " NAME_FMT ": shape product overflows 64 bits", name);
    numel *= (uint64_t)shape[d];
  }
  if (numel > SIZE_MAX / 4 || numel > (uint64_t)INT64_MAX / 4)
    return asink_fail(ASINK_ERR_ARG, "tensor " NAME_FMT ": %llu elements are too many", name,
                      (unsigned long long)numel);
  float *copy = asink_alloc((size_t)numel, sizeof(float));
  if (!copy) return asink_fail(ASINK_ERR_NOMEM, "cannot allocate %llu floats for tensor " NAME_FMT,
                               (unsigned long long)numel, name);
  if (numel) {
    if (data)
      memcpy(copy, data, (size_t)numel * sizeof(float));
    else
      memset(copy, 0, (size_t)numel * sizeof(float));
  }
  return append(set, name, DT_F32, ndim, shape, (size_t)numel, copy);
}

/* ---- metadata ----------------------------------------------------------------- */

const char *asink_st_meta_get(const asink_tensors *set, const char *key) {
  if (!set || !key) return NULL;
  for (int i = 0; i < set->n_meta; i++)
    if (strcmp(set->meta[i].key, key) == 0) return set->meta[i].val;
  return NULL;
}

/* Adds a key known to be new (the parser's JSON has no duplicates): no lookup, so a
 * header with many keys parses in linear time. */
static asink_status meta_append(asink_tensors *set, const char *key, const char *value) {
  char *k = asink_strdup(key), *v = asink_strdup(value);
  if (!k || !v || !grow((void **)&set->meta, &set->cap_meta, set->n_meta + 1, sizeof *set->meta)) {
    free(k);
    free(v);
    return asink_fail(ASINK_ERR_NOMEM, "cannot add metadata key " NAME_FMT, key);
  }
  set->meta[set->n_meta].key = k;
  set->meta[set->n_meta].val = v;
  set->n_meta++;
  return ASINK_OK;
}

asink_status asink_st_meta_set(asink_tensors *set, const char *key, const char *value) {
  if (!set || !key || !value) return asink_fail(ASINK_ERR_ARG, "asink_st_meta_set: set, key or value is NULL");
  if (!valid_utf8(key)) return asink_fail(ASINK_ERR_ARG, "metadata key " NAME_FMT " is not valid UTF-8", key);
  if (!valid_utf8(value))
    return asink_fail(ASINK_ERR_ARG, "metadata value of " NAME_FMT " is not valid UTF-8", key);
  for (int i = 0; i < set->n_meta; i++)
    if (strcmp(set->meta[i].key, key) == 0) {
      char *v = asink_strdup(value);
      if (!v) return asink_fail(ASINK_ERR_NOMEM, "cannot copy metadata value of " NAME_FMT, key);
      free(set->meta[i].val);
      set->meta[i].val = v;
      return ASINK_OK;
    }
  return meta_append(set, key, value);
}

int asink_st_meta_count(const asink_tensors *set) { return set ? set->n_meta : 0; }

asink_status asink_st_meta_at(const asink_tensors *set, int i, const char **key, const char **value) {
  if (!set || i < 0 || i >= set->n_meta)
    return asink_fail(ASINK_ERR_ARG, "metadata index %d out of range (set has %d)", i, asink_st_meta_count(set));
  if (key) *key = set->meta[i].key;
  if (value) *value = set->meta[i].val;
  return ASINK_OK;
}

/* ---- parsing ------------------------------------------------------------------ */

/* One header entry, checked on its own; the layout checks need all of them. */
typedef struct {
  const char *name; /* owned by the JSON tree */
  int dtype;
  int ndim;
  int64_t shape[ASINK_ST_MAX_DIMS];
  uint64_t numel;
  uint64_t begin, end;
} st_entry;

/* set NULL: checked, not kept. */
static asink_status parse_metadata(asink_tensors *set, json_t *meta) {
  if (!json_is_object(meta)) return asink_fail(ASINK_ERR_FORMAT, "__metadata__ is not an object");
  const char *key;
  json_t *val;
  json_object_foreach(meta, key, val) {
    if (!json_is_string(val))
      return asink_fail(ASINK_ERR_FORMAT, "__metadata__ value of " NAME_FMT " is not a string", key);
    asink_status s = set ? meta_append(set, key, json_string_value(val)) : ASINK_OK;
    if (s != ASINK_OK) return s;
  }
  return ASINK_OK;
}

static asink_status parse_entry(const char *name, json_t *val, st_entry *e) {
  memset(e, 0, sizeof *e);
  e->name = name;
  if (!json_is_object(val)) return asink_fail(ASINK_ERR_FORMAT, "tensor " NAME_FMT ": entry is not an object", name);

  json_t *dt = json_object_get(val, "dtype");
  if (!dt) return asink_fail(ASINK_ERR_FORMAT, "tensor " NAME_FMT ": missing dtype", name);
  if (!json_is_string(dt)) return asink_fail(ASINK_ERR_FORMAT, "tensor " NAME_FMT ": dtype is not a string", name);
  const char *dts = json_string_value(dt);
  e->dtype = -1;
  for (int i = 0; i < N_DTYPES; i++)
    if (strcmp(dts, dtypes[i].name) == 0) e->dtype = i;
  if (e->dtype < 0)
    return asink_fail(ASINK_ERR_FORMAT, "tensor " NAME_FMT ": dtype '%.40s' is not supported (F32, F16, BF16, F64)",
                      name, dts);

  json_t *shape = json_object_get(val, "shape");
  if (!shape) return asink_fail(ASINK_ERR_FORMAT, "tensor " NAME_FMT ": missing shape", name);
  if (!json_is_array(shape)) return asink_fail(ASINK_ERR_FORMAT, "tensor " NAME_FMT ": shape is not an array", name);
  size_t nd = json_array_size(shape);
  if (nd > ASINK_ST_MAX_DIMS)
    return asink_fail(ASINK_ERR_FORMAT, "tensor " NAME_FMT ": shape has %zu dims, more than %d", name, nd,
                      ASINK_ST_MAX_DIMS);
  e->ndim = (int)nd;
  /* Checked one multiplication at a time: a product that wrapped could match a small
   * data_offsets span and let a loader index far past the buffer. */
  uint64_t numel = 1;
  for (size_t d = 0; d < nd; d++) {
    json_t *v = json_array_get(shape, d);
    if (!json_is_integer(v))
      return asink_fail(ASINK_ERR_FORMAT, "tensor " NAME_FMT ": shape[%zu] is not an integer", name, d);
    json_int_t x = json_integer_value(v);
    if (x < 0) return asink_fail(ASINK_ERR_FORMAT, "tensor " NAME_FMT ": shape[%zu]=%lld is negative", name, d, (long long)x);
    e->shape[d] = (int64_t)x;
    if (x != 0 && numel > UINT64_MAX / (uint64_t)x)
      return asink_fail(ASINK_ERR_FORMAT, "tensor " NAME_FMT ": shape product overflows 64 bits at shape[%zu]=%lld",
                        name, d, (long long)x);
    numel *= (uint64_t)x;
  }
  e->numel = numel;
  uint64_t size = dtypes[e->dtype].size;
  if (numel > UINT64_MAX / size)
    return asink_fail(ASINK_ERR_FORMAT, "tensor " NAME_FMT ": byte size of %llu %s elements overflows 64 bits", name,
                      (unsigned long long)numel, dtypes[e->dtype].name);
  uint64_t bytes = numel * size;

  json_t *off = json_object_get(val, "data_offsets");
  if (!off) return asink_fail(ASINK_ERR_FORMAT, "tensor " NAME_FMT ": missing data_offsets", name);
  json_t *b = json_array_get(off, 0), *en = json_array_get(off, 1);
  if (!json_is_array(off) || json_array_size(off) != 2 || !json_is_integer(b) || !json_is_integer(en) ||
      json_integer_value(b) < 0 || json_integer_value(en) < 0)
    return asink_fail(ASINK_ERR_FORMAT, "tensor " NAME_FMT ": data_offsets is not [begin, end] of non-negative integers",
                      name);
  e->begin = (uint64_t)json_integer_value(b);
  e->end = (uint64_t)json_integer_value(en);
  if (e->end < e->begin)
    return asink_fail(ASINK_ERR_FORMAT, "tensor " NAME_FMT ": data_offsets [%llu, %llu] end before they begin", name,
                      (unsigned long long)e->begin, (unsigned long long)e->end);
  if (e->end - e->begin != bytes)
    return asink_fail(ASINK_ERR_FORMAT,
                      "tensor " NAME_FMT ": %s shape of %llu elements needs %llu bytes but data_offsets [%llu, %llu] span %llu",
                      name, dtypes[e->dtype].name, (unsigned long long)numel, (unsigned long long)bytes,
                      (unsigned long long)e->begin, (unsigned long long)e->end,
                      (unsigned long long)(e->end - e->begin));
  return ASINK_OK;
}

/* Zero-byte tensors share their offset with the next one: ordering by end puts them
 * first, and the name makes the order total so reads are reproducible. */
static int cmp_entry(const void *pa, const void *pb) {
  const st_entry *a = pa, *b = pb;
  if (a->begin != b->begin) return a->begin < b->begin ? -1 : 1;
  if (a->end != b->end) return a->end < b->end ? -1 : 1;
  return strcmp(a->name, b->name);
}

static asink_status check_layout(const st_entry *e, size_t n, uint64_t *data_end) {
  uint64_t pos = 0;
  for (size_t i = 0; i < n; i++) {
    if (e[i].begin < pos)
      return asink_fail(ASINK_ERR_FORMAT, "tensor " NAME_FMT ": data_offsets [%llu, %llu] overlap tensor " NAME_FMT
                        " [%llu, %llu]", e[i].name, (unsigned long long)e[i].begin, (unsigned long long)e[i].end,
                        e[i - 1].name, (unsigned long long)e[i - 1].begin, (unsigned long long)e[i - 1].end);
    if (e[i].begin > pos) {
      if (i == 0)
        return asink_fail(ASINK_ERR_FORMAT, "tensor " NAME_FMT ": data starts at offset %llu; the first tensor must start at 0",
                          e[i].name, (unsigned long long)e[i].begin);
      return asink_fail(ASINK_ERR_FORMAT, "gap of %llu bytes between tensor " NAME_FMT " (ends at %llu) and tensor " NAME_FMT
                        " (begins at %llu)", (unsigned long long)(e[i].begin - pos), e[i - 1].name,
                        (unsigned long long)pos, e[i].name, (unsigned long long)e[i].begin);
    }
    pos = e[i].end;
  }
  *data_end = pos;
  return ASINK_OK;
}

/* A checked header: its entries in data order (names owned by root) and where the data
 * starts. */
typedef struct {
  json_t *root;
  st_entry *e;
  size_t n;
  const unsigned char *data;
} st_header;

static void header_free(st_header *h) {
  free(h->e);
  json_decref(h->root);
  memset(h, 0, sizeof *h);
}

/* Parses and checks the header of the file in buf[0..len); metadata goes to set (NULL: only
 * checked). Afterwards every entry's bytes lie inside buf. */
static asink_status parse_header(const unsigned char *p, size_t len, asink_tensors *set, st_header *h) {
  memset(h, 0, sizeof *h);
  if (len < 8)
    return asink_fail(ASINK_ERR_FORMAT, "file is %zu bytes, too short for the 8-byte header length", len);
  uint64_t hlen = load_le64(p);
  if (hlen > ASINK_ST_MAX_HEADER)
    return asink_fail(ASINK_ERR_FORMAT, "header length %llu exceeds the limit of %llu bytes (100 MB)",
                      (unsigned long long)hlen, (unsigned long long)ASINK_ST_MAX_HEADER);
  if (hlen > len - 8)
    return asink_fail(ASINK_ERR_FORMAT, "header length %llu runs past the end of the file (%zu bytes)",
                      (unsigned long long)hlen, len);

  json_error_t jerr;
  h->root = json_loadb((const char *)p + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
  if (!h->root)
    return asink_fail(ASINK_ERR_FORMAT, "header is not valid JSON: %s (line %d, column %d)", jerr.text, jerr.line,
                      jerr.column);
  asink_status s = ASINK_OK;
  if (!json_is_object(h->root)) {
    s = asink_fail(ASINK_ERR_FORMAT, "header is not a JSON object");
  } else {
    h->e = asink_alloc(json_object_size(h->root) + 1, sizeof *h->e);
    if (!h->e) s = asink_fail(ASINK_ERR_NOMEM, "cannot allocate %zu header entries", json_object_size(h->root));
  }
  const char *key;
  json_t *val;
  if (s == ASINK_OK) {
    json_object_foreach(h->root, key, val) {
      if (strcmp(key, "__metadata__") == 0)
        s = parse_metadata(set, val);
      else
        s = parse_entry(key, val, &h->e[h->n++]);
      if (s != ASINK_OK) break;
    }
  }
  uint64_t data_end = 0;
  if (s == ASINK_OK) {
    qsort(h->e, h->n, sizeof *h->e, cmp_entry);
    s = check_layout(h->e, h->n, &data_end);
  }
  /* hlen <= 1e8 and data_end <= INT64_MAX (offsets are JSON integers), so no wrap. */
  uint64_t need = 8 + hlen + data_end;
  if (s == ASINK_OK && (uint64_t)len < need)
    s = asink_fail(ASINK_ERR_FORMAT, "file is %zu bytes, shorter than the %llu that header (%llu) and data (%llu) need",
                   len, (unsigned long long)need, (unsigned long long)hlen, (unsigned long long)data_end);
  if (s == ASINK_OK && (uint64_t)len > need)
    s = asink_fail(ASINK_ERR_FORMAT, "file is %zu bytes, longer than the %llu that header (%llu) and data (%llu) need",
                   len, (unsigned long long)need, (unsigned long long)hlen, (unsigned long long)data_end);
  if (s != ASINK_OK) {
    header_free(h);
    return s;
  }
  h->data = p + 8 + hlen;
  return ASINK_OK;
}

asink_status asink_st_parse(const void *buf, size_t len, asink_tensors **out) {
  if (!out) return asink_fail(ASINK_ERR_ARG, "asink_st_parse: out is NULL");
  *out = NULL;
  if (!buf && len) return asink_fail(ASINK_ERR_ARG, "asink_st_parse: NULL buffer of %zu bytes", len);
  asink_tensors *set = NULL;
  st_header h;
  asink_status s = asink_st_create(&set);
  if (s == ASINK_OK) s = parse_header(buf, len, set, &h);
  if (s != ASINK_OK) {
    asink_st_free(set);
    return s;
  }
  /* Only now is every size known to lie inside buf, so allocations are bounded by len. */
  for (size_t i = 0; s == ASINK_OK && i < h.n; i++) {
    const st_entry *e = &h.e[i];
    if (e->dtype >= N_FLOAT_DTYPES) {
      s = asink_fail(ASINK_ERR_FORMAT, "tensor " NAME_FMT ": dtype '%s' is not supported (F32, F16, BF16, F64)",
                     e->name, dtypes[e->dtype].name);
      break;
    }
    float *f = asink_alloc((size_t)e->numel, sizeof(float));
    if (!f) {
      s = asink_fail(ASINK_ERR_NOMEM, "cannot allocate %llu floats for tensor " NAME_FMT,
                     (unsigned long long)e->numel, e->name);
      break;
    }
    convert(f, h.data + e->begin, (size_t)e->numel, e->dtype);
    s = append(set, e->name, e->dtype, e->ndim, e->shape, (size_t)e->numel, f);
  }
  header_free(&h);
  if (s != ASINK_OK) {
    asink_st_free(set);
    return s;
  }
  *out = set;
  return ASINK_OK;
}

/* A whole file in memory: mapped (map) or, where the file system cannot map, read (heap). */
typedef struct {
  void *map, *heap;
  size_t len;
} file_bytes;

static const void *bytes_of(const file_bytes *b) { return b->map ? b->map : b->heap; }

static void bytes_release(file_bytes *b) {
  if (b->map) munmap(b->map, b->len);
  free(b->heap);
  memset(b, 0, sizeof *b);
}

/* mmap rather than read: a checkpoint can be many GB and is converted to F32 anyway, so a
 * second full copy would only cost memory and page faults. */
static asink_status bytes_open(const char *path, file_bytes *b) {
  memset(b, 0, sizeof *b);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return asink_fail(ASINK_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    asink_status s = asink_fail(ASINK_ERR_IO, "cannot stat '%s': %s", path, strerror(errno));
    close(fd);
    return s;
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    return asink_fail(ASINK_ERR_IO, "'%s' is not a regular file", path);
  }
  if ((uint64_t)st.st_size > SIZE_MAX) {
    close(fd);
    return asink_fail(ASINK_ERR_IO, "'%s' is too large to map (%lld bytes)", path, (long long)st.st_size);
  }
  b->len = (size_t)st.st_size;
  if (b->len) {
    b->map = mmap(NULL, b->len, PROT_READ, MAP_PRIVATE, fd, 0);
    if (b->map == MAP_FAILED) {
      /* Some file systems cannot map: read the whole file instead. */
      b->map = NULL;
      b->heap = asink_alloc(b->len, 1);
      if (!b->heap) {
        close(fd);
        return asink_fail(ASINK_ERR_NOMEM, "cannot allocate %zu bytes to read '%s'", b->len, path);
      }
      size_t got = 0;
      while (got < b->len) {
        ssize_t r = read(fd, (char *)b->heap + got, b->len - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
          asink_status s = asink_fail(ASINK_ERR_IO, "cannot read '%s': %s", path, r < 0 ? strerror(errno) : "file shrank");
          close(fd);
          bytes_release(b);
          return s;
        }
        got += (size_t)r;
      }
    }
  }
  close(fd);
  return ASINK_OK;
}

asink_status asink_st_read(const char *path, asink_tensors **out) {
  if (!out) return asink_fail(ASINK_ERR_ARG, "asink_st_read: out is NULL");
  *out = NULL;
  if (!path) return asink_fail(ASINK_ERR_ARG, "asink_st_read: path is NULL");
  file_bytes b;
  asink_status s = bytes_open(path, &b);
  if (s) return s;
  s = asink_st_parse(bytes_of(&b), b.len, out);
  bytes_release(&b);
  if (s != ASINK_OK) return asink_fail_context(s, path);
  return ASINK_OK;
}

/* ---- a mapped file, converted tensor by tensor ---------------------------------- */

struct asink_st_file {
  file_bytes bytes;
  st_header h;
};

asink_status asink_st_open(const char *path, asink_st_file **out) {
  if (!out || !path) return asink_fail(ASINK_ERR_ARG, "asink_st_open: NULL argument");
  *out = NULL;
  asink_st_file *f = asink_calloc(1, sizeof *f);
  if (!f) return asink_fail(ASINK_ERR_NOMEM, "cannot open '%s': out of memory", path);
  asink_status s = bytes_open(path, &f->bytes);
  if (s) {
    free(f);
    return s;
  }
  if ((s = parse_header(bytes_of(&f->bytes), f->bytes.len, NULL, &f->h))) {
    bytes_release(&f->bytes);
    free(f);
    return asink_fail_context(s, path);
  }
  *out = f;
  return ASINK_OK;
}

void asink_st_close(asink_st_file *f) {
  if (!f) return;
  header_free(&f->h);
  bytes_release(&f->bytes);
  free(f);
}

int asink_st_file_count(const asink_st_file *f) { return f ? (int)f->h.n : 0; }

asink_status asink_st_file_info(const asink_st_file *f, int i, const char **name, int *ndim,
                                int64_t shape[ASINK_ST_MAX_DIMS], const char **dtype) {
  if (!f || i < 0 || (size_t)i >= f->h.n)
    return asink_fail(ASINK_ERR_ARG, "tensor index %d out of range (file has %d)", i, asink_st_file_count(f));
  const st_entry *e = &f->h.e[i];
  if (name) *name = e->name;
  if (ndim) *ndim = e->ndim;
  if (shape)
    for (int d = 0; d < e->ndim; d++) shape[d] = e->shape[d];
  if (dtype) *dtype = dtypes[e->dtype].name;
  return ASINK_OK;
}

/* dst[0, n) = bf16 of the n values at src, rounded to nearest even; BF16 copied as is. */
static void convert_bf16(uint16_t *dst, const unsigned char *src, size_t n, int dtype) {
  if (dtype == DT_BF16) {
    for (size_t i = 0; i < n; i++) dst[i] = load_le16(src + 2 * i);
    return;
  }
  enum { PART = 1024 };
  float tmp[PART];
  for (size_t at = 0; at < n; at += PART) {
    size_t k = n - at < PART ? n - at : PART;
    convert(tmp, src + at * (size_t)dtypes[dtype].size, k, dtype);
    for (size_t i = 0; i < k; i++) dst[at + i] = asink_f32_to_bf16(tmp[i]);
  }
}

/* Tensor i into dst (float, or bf16 with half), in chunks, each chunk's pages of the file
 * dropped from the process once converted (they stay in the page cache; touching one again
 * only reads it back): the converted copy is the one kept, so loading holds the weights
 * once plus a few MB of the file. */
static asink_status file_load(const asink_st_file *f, int i, void *dst, bool half) {
  if (!f || i < 0 || (size_t)i >= f->h.n || !dst)
    return asink_fail(ASINK_ERR_ARG, "asink_st_file_load: tensor %d of %d, or dst NULL", i, asink_st_file_count(f));
  const st_entry *e = &f->h.e[i];
  if (e->dtype >= N_FLOAT_DTYPES)
    return asink_fail(ASINK_ERR_FORMAT, "tensor " NAME_FMT " has dtype %s, not a float type (F32, F16, BF16, F64)",
                      e->name, dtypes[e->dtype].name);
  const unsigned char *src = f->h.data + e->begin;
  const size_t size = (size_t)dtypes[e->dtype].size, chunk = (size_t)1 << 20;
  const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
  for (size_t at = 0; at < e->numel; at += chunk) {
    size_t n = e->numel - at < chunk ? e->numel - at : chunk;
    if (half) convert_bf16((uint16_t *)dst + at, src + at * size, n, e->dtype);
    else convert((float *)dst + at, src + at * size, n, e->dtype);
    if (f->bytes.map) {
      uintptr_t lo = (uintptr_t)(src + at * size) / page * page;
      uintptr_t hi = (uintptr_t)(src + (at + n) * size) / page * page;
      if (hi > lo) madvise((void *)lo, hi - lo, MADV_DONTNEED);
    }
  }
  return ASINK_OK;
}

asink_status asink_st_file_load(const asink_st_file *f, int i, float *dst) {
  return file_load(f, i, dst, false);
}

asink_status asink_st_file_load_bf16(const asink_st_file *f, int i, uint16_t *dst) {
  return file_load(f, i, dst, true);
}

/* ---- writing ------------------------------------------------------------------ */

typedef struct {
  const asink_tensors *set;
  const st_tensor **order;
  const char *header;
  size_t header_len, padded_len;
  const char *path;
} write_ctx;

static int cmp_name(const void *a, const void *b) {
  return strcmp((*(const st_tensor *const *)a)->name, (*(const st_tensor *const *)b)->name);
}

static asink_status write_body(FILE *f, void *vctx) {
  const write_ctx *c = vctx;
  unsigned char len8[8];
  store_le64(len8, c->padded_len);
  if (fwrite(len8, 1, 8, f) != 8 || fwrite(c->header, 1, c->header_len, f) != c->header_len)
    return asink_fail(ASINK_ERR_IO, "cannot write header of '%s': %s", c->path, strerror(errno));
  for (size_t i = c->header_len; i < c->padded_len; i++)
    if (fputc(' ', f) == EOF) return asink_fail(ASINK_ERR_IO, "cannot write header of '%s': %s", c->path, strerror(errno));
  /* Through a little-endian staging buffer so the file is right on any host. */
  unsigned char chunk[1 << 14];
  for (int k = 0; k < c->set->n; k++) {
    const st_tensor *t = c->order[k];
    for (size_t i = 0; i < t->numel;) {
      size_t m = t->numel - i < sizeof chunk / 4 ? t->numel - i : sizeof chunk / 4;
      for (size_t j = 0; j < m; j++) store_le32(chunk + 4 * j, f32_to_bits(t->data[i + j]));
      if (fwrite(chunk, 4, m, f) != m)
        return asink_fail(ASINK_ERR_IO, "cannot write tensor " NAME_FMT " to '%s': %s", t->name, c->path,
                          strerror(errno));
      i += m;
    }
  }
  return ASINK_OK;
}

static json_t *header_json(const asink_tensors *set, const st_tensor **order) {
  json_t *root = json_object();
  if (!root) return NULL;
  if (set->n_meta) {
    json_t *meta = json_object();
    if (json_object_set_new(root, "__metadata__", meta) != 0) goto fail;
    for (int i = 0; i < set->n_meta; i++)
      if (json_object_set_new(meta, set->meta[i].key, json_string(set->meta[i].val)) != 0) goto fail;
  }
  uint64_t off = 0;
  for (int k = 0; k < set->n; k++) {
    const st_tensor *t = order[k];
    json_t *shape = json_array();
    json_t *offs = json_array();
    json_t *ent = json_object();
    if (json_object_set_new(ent, "dtype", json_string("F32")) != 0 || json_object_set_new(ent, "shape", shape) != 0 ||
        json_object_set_new(ent, "data_offsets", offs) != 0 || json_object_set_new(root, t->name, ent) != 0) {
      goto fail;
    }
    for (int d = 0; d < t->ndim; d++)
      if (json_array_append_new(shape, json_integer((json_int_t)t->shape[d])) != 0) goto fail;
    uint64_t end = off + (uint64_t)t->numel * 4;
    if (json_array_append_new(offs, json_integer((json_int_t)off)) != 0 ||
        json_array_append_new(offs, json_integer((json_int_t)end)) != 0)
      goto fail;
    off = end;
  }
  return root;
fail:
  json_decref(root);
  return NULL;
}

asink_status asink_st_write(const asink_tensors *set, const char *path) {
  if (!set || !path) return asink_fail(ASINK_ERR_ARG, "asink_st_write: set or path is NULL");
  const st_tensor **order = asink_alloc((size_t)set->n + 1, sizeof *order);
  if (!order) return asink_fail(ASINK_ERR_NOMEM, "cannot allocate write order for '%s'", path);
  for (int i = 0; i < set->n; i++) order[i] = &set->t[i];
  qsort(order, (size_t)set->n, sizeof *order, cmp_name);

  json_t *root = header_json(set, order);
  char *header = root ? json_dumps(root, JSON_COMPACT) : NULL;
  json_decref(root);
  if (!header) {
    free(order);
    return asink_fail(ASINK_ERR_NOMEM, "cannot build the JSON header of '%s'", path);
  }
  write_ctx c = {set, order, header, strlen(header), 0, path};
  c.padded_len = (c.header_len + 7) / 8 * 8;
  asink_status s = asink_atomic_write(path, write_body, &c);
  free(header);
  free(order);
  return s;
}
