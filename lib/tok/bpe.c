#include "tok/bpe.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"

uint64_t asink_bpe_hash(const char *s, size_t len) {
  uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
  for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
  return h ^ (h >> 29);
}

static uint64_t hash_pair(uint64_t key) {
  key ^= key >> 33;
  key *= 0xff51afd7ed558ccdull; /* murmur3's finaliser */
  key ^= key >> 33;
  return key;
}

static size_t table_size(size_t n) {
  size_t s = 16;
  while (s < 2 * n + 2) s *= 2; /* at most half full */
  return s;
}

asink_status asink_bpe_init(asink_bpe *b, int32_t n_ids) {
  memset(b, 0, sizeof *b);
  b->n_ids = n_ids;
  b->n_slots = table_size((size_t)n_ids);
  b->strings = calloc((size_t)n_ids + 1, sizeof *b->strings);
  b->lengths = calloc((size_t)n_ids + 1, sizeof *b->lengths);
  b->slots = calloc(b->n_slots, sizeof *b->slots);
  if (!b->strings || !b->lengths || !b->slots) {
    asink_bpe_free(b);
    return asink_fail(ASINK_ERR_NOMEM, "tokenizer: no memory for a vocabulary of %d", (int)n_ids);
  }
  return ASINK_OK;
}

void asink_bpe_free(asink_bpe *b) {
  if (b->strings)
    for (int32_t i = 0; i < b->n_ids; i++) free(b->strings[i]);
  free(b->strings), free(b->lengths), free(b->slots);
  free(b->pairs);
  memset(b, 0, sizeof *b);
}

static size_t find_slot(const asink_bpe *b, const char *s, size_t len) {
  size_t mask = b->n_slots - 1, i = asink_bpe_hash(s, len) & mask;
  for (;; i = (i + 1) & mask) {
    int32_t v = b->slots[i];
    if (!v) return i;
    if (b->lengths[v - 1] == len && !memcmp(b->strings[v - 1], s, len)) return i;
  }
}

int32_t asink_bpe_id(const asink_bpe *b, const char *s, size_t len) {
  return b->slots[find_slot(b, s, len)] - 1;
}

asink_status asink_bpe_add(asink_bpe *b, const char *s, size_t len, int32_t id, const char *source) {
  if (id < 0 || id >= b->n_ids)
    return asink_fail(ASINK_ERR_FORMAT, "%s: token '%.*s' has id %d, outside 0..%d", source,
                      (int)(len > 60 ? 60 : len), s, (int)id, (int)b->n_ids - 1);
  if (b->strings[id])
    return asink_fail(ASINK_ERR_FORMAT, "%s: id %d names both '%s' and '%.*s'", source, (int)id,
                      b->strings[id], (int)(len > 60 ? 60 : len), s);
  size_t slot = find_slot(b, s, len);
  if (b->slots[slot])
    return asink_fail(ASINK_ERR_FORMAT, "%s: token '%.*s' has two ids, %d and %d", source,
                      (int)(len > 60 ? 60 : len), s, (int)b->slots[slot] - 1, (int)id);
  char *copy = malloc(len + 1);
  if (!copy) return asink_fail(ASINK_ERR_NOMEM, "tokenizer: no memory for the vocabulary");
  memcpy(copy, s, len);
  copy[len] = 0;
  b->strings[id] = copy;
  b->lengths[id] = (uint32_t)len;
  b->slots[slot] = id + 1;
  return ASINK_OK;
}

asink_status asink_bpe_reserve_merges(asink_bpe *b, size_t n) {
  b->n_pair_slots = table_size(n);
  b->pairs = malloc(sizeof *b->pairs * b->n_pair_slots);
  if (!b->pairs) return asink_fail(ASINK_ERR_NOMEM, "tokenizer: no memory for %zu merges", n);
  for (size_t i = 0; i < b->n_pair_slots; i++) b->pairs[i].key = UINT64_MAX;
  return ASINK_OK;
}

static uint64_t pair_key(int32_t l, int32_t r) { return (uint64_t)(uint32_t)l << 32 | (uint32_t)r; }

/* The slot of (l, r): its own, or the empty one where it would go. */
static size_t pair_slot(const asink_bpe *b, uint64_t key) {
  size_t mask = b->n_pair_slots - 1, i = hash_pair(key) & mask;
  while (b->pairs[i].key != key && b->pairs[i].key != UINT64_MAX) i = (i + 1) & mask;
  return i;
}

asink_status asink_bpe_add_merge(asink_bpe *b, const char *left, size_t left_len, const char *right,
                                 size_t right_len, int32_t rank, const char *source) {
  int32_t l = asink_bpe_id(b, left, left_len), r = asink_bpe_id(b, right, right_len);
  if (l < 0 || r < 0)
    return asink_fail(ASINK_ERR_FORMAT, "%s: merge %d '%.*s %.*s': '%.*s' is not in the vocabulary", source,
                      (int)rank, (int)left_len, left, (int)right_len, right,
                      (int)(l < 0 ? left_len : right_len), l < 0 ? left : right);
  char *both = malloc(left_len + right_len + 1);
  if (!both) return asink_fail(ASINK_ERR_NOMEM, "tokenizer: no memory for the merges");
  memcpy(both, left, left_len);
  memcpy(both + left_len, right, right_len);
  int32_t m = asink_bpe_id(b, both, left_len + right_len);
  free(both);
  if (m < 0)
    return asink_fail(ASINK_ERR_FORMAT, "%s: merge %d '%.*s %.*s': the merged token is not in the vocabulary",
                      source, (int)rank, (int)left_len, left, (int)right_len, right);
  if (b->n_merges * 2 + 2 > b->n_pair_slots)
    return asink_fail(ASINK_ERR_FORMAT, "%s: more merges than announced", source);
  size_t slot = pair_slot(b, pair_key(l, r));
  if (b->pairs[slot].key != UINT64_MAX) return ASINK_OK; /* a repeated merge: the first rank stands */
  b->pairs[slot] = (struct asink_bpe_pair){pair_key(l, r), rank, m};
  b->n_merges++;
  return ASINK_OK;
}

/* The merge of (l, r): its rank, or -1 if none; *merged its result. */
static int32_t merge_of(const asink_bpe *b, int32_t l, int32_t r, int32_t *merged) {
  if (!b->n_merges) return -1;
  size_t slot = pair_slot(b, pair_key(l, r));
  if (b->pairs[slot].key == UINT64_MAX) return -1;
  *merged = b->pairs[slot].merged;
  return b->pairs[slot].rank;
}

void asink_bpe_scratch_free(asink_bpe_scratch *sc) { asink_ws_release(&sc->ws); }

/* A binary min-heap of (rank << 32 | position): lowest rank first, then leftmost. */
static void heap_push(uint64_t *h, size_t *n, uint64_t v) {
  size_t i = (*n)++;
  while (i && h[(i - 1) / 2] > v) h[i] = h[(i - 1) / 2], i = (i - 1) / 2;
  h[i] = v;
}

static uint64_t heap_pop(uint64_t *h, size_t *n) {
  uint64_t top = h[0], v = h[--*n];
  size_t i = 0;
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= *n) break;
    if (c + 1 < *n && h[c + 1] < h[c]) c++;
    if (h[c] >= v) break;
    h[i] = h[c], i = c;
  }
  h[i] = v;
  return top;
}

static void push_pair(const asink_bpe *b, const int32_t *ids, uint64_t *h, size_t *nh, int32_t p, int32_t q) {
  int32_t merged, rank = merge_of(b, ids[p], ids[q], &merged);
  if (rank >= 0) heap_push(h, nh, (uint64_t)rank << 32 | (uint32_t)p);
}

asink_status asink_bpe_merge(const asink_bpe *b, int32_t *ids, size_t *n_io, asink_bpe_scratch *sc) {
  size_t n = *n_io;
  if (n < 2 || !b->n_merges) return ASINK_OK;
  /* the heap holds the n - 1 first pairs, then at most 2 per merge */
  asink_status s = asink_ws_reserve(&sc->ws, n * (3 * sizeof(uint64_t) + 2 * sizeof(int32_t)), "a BPE piece");
  if (s) return s;
  uint64_t *h = sc->ws.ptr;
  int32_t *next = (int32_t *)(h + 3 * n), *prev = next + n;
  size_t nh = 0;
  for (size_t i = 0; i < n; i++) next[i] = i + 1 < n ? (int32_t)i + 1 : -1, prev[i] = (int32_t)i - 1;
  for (size_t i = 0; i + 1 < n; i++) push_pair(b, ids, h, &nh, (int32_t)i, (int32_t)i + 1);
  while (nh) {
    uint64_t top = heap_pop(h, &nh);
    int32_t p = (int32_t)(uint32_t)top, rank = (int32_t)(top >> 32), q = next[p], merged = -1;
    /* stale entries: p was merged into its left neighbour, or one side changed since */
    if (ids[p] < 0 || q < 0 || merge_of(b, ids[p], ids[q], &merged) != rank) continue;
    ids[p] = merged;
    ids[q] = -1;
    next[p] = next[q];
    if (next[q] >= 0) prev[next[q]] = p;
    if (prev[p] >= 0) push_pair(b, ids, h, &nh, prev[p], p);
    if (next[p] >= 0) push_pair(b, ids, h, &nh, p, next[p]);
  }
  size_t k = 0;
  for (int32_t i = 0; i >= 0; i = next[i]) ids[k++] = ids[i];
  *n_io = k;
  return ASINK_OK;
}
