/* Encoding and decoding with a loaded tokenizer. The handle is only read: any number of
 * threads may encode and decode with one tokenizer at the same time. */
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "tok/tokenizer.h"

#define METASPACE "\xe2\x96\x81"

typedef struct {
  int32_t *v;
  size_t n, cap;
} ids_buf;

static asink_status reserve_ids(ids_buf *b, size_t more) {
  if (b->n + more <= b->cap) return ASINK_OK;
  size_t cap = b->cap ? b->cap : 1024;
  while (cap < b->n + more) cap *= 2;
  int32_t *v = realloc(b->v, sizeof *v * cap);
  if (!v) return asink_fail(ASINK_ERR_NOMEM, "tokenizer: no memory for %zu ids", b->n + more);
  b->v = v, b->cap = cap;
  return ASINK_OK;
}

static asink_status append(ids_buf *out, const int32_t *ids, size_t n) {
  asink_status s = reserve_ids(out, n);
  if (s) return s;
  memcpy(out->v + out->n, ids, sizeof *ids * n);
  out->n += n;
  return ASINK_OK;
}

/* Pieces seen earlier in the same call, and their ids: text repeats its words, and BPE of a
 * piece costs many times a lookup. Per call, so that the handle stays read-only. */
typedef struct {
  struct piece_slot {
    uint64_t hash;
    size_t key_off, ids_off;
    uint32_t key_len, n_ids; /* key_len 0: empty */
  } * slots;
  size_t n_slots, used;
  char *keys;
  size_t keys_n, keys_cap;
  ids_buf ids;
} piece_cache;

#define CACHE_MAX_PIECE 64 /* longer pieces (whitespace runs, long words) are rare */
#define CACHE_MAX_ENTRIES (1u << 20)

static struct piece_slot *cache_find(const piece_cache *c, const char *p, size_t len, uint64_t h) {
  size_t mask = c->n_slots - 1;
  for (size_t i = h & mask;; i = (i + 1) & mask) {
    struct piece_slot *s = &c->slots[i];
    if (!s->key_len || (s->hash == h && s->key_len == len && !memcmp(c->keys + s->key_off, p, len))) return s;
  }
}

static asink_status cache_rehash(piece_cache *c) {
  size_t n = c->n_slots ? 2 * c->n_slots : 4096;
  piece_cache bigger = *c;
  bigger.n_slots = n;
  if (!(bigger.slots = calloc(n, sizeof *bigger.slots)))
    return asink_fail(ASINK_ERR_NOMEM, "tokenizer: no memory for the piece cache");
  for (size_t i = 0; i < c->n_slots; i++)
    if (c->slots[i].key_len)
      *cache_find(&bigger, c->keys + c->slots[i].key_off, c->slots[i].key_len, c->slots[i].hash) =
          c->slots[i];
  free(c->slots);
  *c = bigger;
  return ASINK_OK;
}

static asink_status cache_put(piece_cache *c, const char *p, size_t len, uint64_t h, const int32_t *ids,
                              size_t n) {
  if (c->used >= CACHE_MAX_ENTRIES) return ASINK_OK;
  asink_status s;
  if (2 * (c->used + 1) > c->n_slots && (s = cache_rehash(c))) return s;
  if (c->keys_n + len > c->keys_cap) {
    size_t cap = c->keys_cap ? 2 * c->keys_cap : 1 << 16;
    char *k = realloc(c->keys, cap);
    if (!k) return asink_fail(ASINK_ERR_NOMEM, "tokenizer: no memory for the piece cache");
    c->keys = k, c->keys_cap = cap;
  }
  if ((s = reserve_ids(&c->ids, n))) return s;
  memcpy(c->keys + c->keys_n, p, len);
  memcpy(c->ids.v + c->ids.n, ids, sizeof *ids * n);
  *cache_find(c, p, len, h) = (struct piece_slot){h, c->keys_n, c->ids.n, (uint32_t)len, (uint32_t)n};
  c->keys_n += len, c->ids.n += n, c->used++;
  return ASINK_OK;
}

/* What one encode call works in. */
typedef struct {
  const asink_tokenizer *t;
  piece_cache cache;
  ids_buf out, sym;
  asink_uchars u;
  asink_bpe_scratch sc;
  char *tmp;
  size_t tmp_cap;
} encoder;

static asink_status tmp_reserve(encoder *e, size_t n) {
  if (n <= e->tmp_cap) return ASINK_OK;
  char *p = realloc(e->tmp, n);
  if (!p) return asink_fail(ASINK_ERR_NOMEM, "tokenizer: no memory for %zu bytes", n);
  e->tmp = p, e->tmp_cap = n;
  return ASINK_OK;
}

/* Runs BPE over the symbols in e->sym, unless the whole piece s is a token and the model
 * says to take it as it is, and appends the result to the output. */
static asink_status finish_piece(encoder *e, const char *s, size_t len) {
  const asink_tokenizer *t = e->t;
  int32_t whole = t->ignore_merges ? asink_bpe_id(&t->bpe, s, len) : -1;
  if (whole >= 0) e->sym.v[0] = whole, e->sym.n = 1;
  asink_status st = whole >= 0 ? ASINK_OK : asink_bpe_merge(&t->bpe, e->sym.v, &e->sym.n, &e->sc);
  return st ? st : append(&e->out, e->sym.v, e->sym.n);
}

static asink_status byte_level_merge(encoder *e, const char *p, size_t len);

/* A byte-level piece: its bytes' characters, merged (or what the same piece gave before). */
static asink_status byte_level_piece(encoder *e, const char *p, size_t len) {
  if (len > CACHE_MAX_PIECE) return byte_level_merge(e, p, len);
  uint64_t h = asink_bpe_hash(p, len);
  piece_cache *c = &e->cache;
  struct piece_slot *hit = c->n_slots ? cache_find(c, p, len, h) : NULL;
  if (hit && hit->key_len) return append(&e->out, c->ids.v + hit->ids_off, hit->n_ids);
  size_t before = e->out.n;
  asink_status s = byte_level_merge(e, p, len);
  return s ? s : cache_put(c, p, len, h, e->out.v + before, e->out.n - before);
}

static asink_status byte_level_merge(encoder *e, const char *p, size_t len) {
  const asink_tokenizer *t = e->t;
  asink_status s;
  e->sym.n = 0;
  if ((s = reserve_ids(&e->sym, len))) return s;
  for (size_t i = 0; i < len; i++) e->sym.v[e->sym.n++] = t->byte_id[(unsigned char)p[i]];
  if (!t->ignore_merges) return finish_piece(e, NULL, 0);
  /* the piece as the vocabulary spells it: each byte's character in UTF-8 */
  if ((s = tmp_reserve(e, 2 * len))) return s;
  size_t k = 0;
  for (size_t i = 0; i < len; i++) {
    int c = t->byte_char[(unsigned char)p[i]];
    if (c < 0x80) e->tmp[k++] = (char)c;
    else e->tmp[k++] = (char)(0xC0 | c >> 6), e->tmp[k++] = (char)(0x80 | (c & 63));
  }
  return finish_piece(e, e->tmp, k);
}

static asink_status byte_level_segment(encoder *e, const char *text, size_t len) {
  const asink_tokenizer *t = e->t;
  char *norm = NULL;
  asink_status s = ASINK_OK;
  if (t->nfc && (s = asink_utf8_nfc(text, len, &norm, &len))) return s;
  if (norm) text = norm;
  if (t->prefix_space && text[0] != ' ') {
    char *with = malloc(len + 1);
    if (!with) s = asink_fail(ASINK_ERR_NOMEM, "tokenizer: no memory for %zu bytes", len + 1);
    else with[0] = ' ', memcpy(with + 1, text, len), free(norm), text = norm = with, len++;
  }
  if (!s) s = asink_uchars_decode(&e->u, text, len);
  for (size_t i = 0; i < e->u.n && !s;) {
    size_t j = asink_pretok_next(t->pretok, &e->u, i);
    s = byte_level_piece(e, text + e->u.off[i], e->u.off[j] - e->u.off[i]);
    i = j;
  }
  free(norm);
  return s;
}

/* A metaspace segment: spaces become U+2581 (and one goes in front, as the model says),
 * each character is a symbol (its bytes' <0xNN> tokens if the vocabulary lacks it, or
 * unk), and BPE merges the whole segment as one piece. */
static asink_status metaspace_segment(encoder *e, const char *text, size_t len, bool at_start) {
  const asink_tokenizer *t = e->t;
  bool prepend = t->prepend == ASINK_PREPEND_ALWAYS || (t->prepend == ASINK_PREPEND_FIRST && at_start);
  if (t->prepend_unless_there && (text[0] == ' ' || (len >= 3 && !memcmp(text, METASPACE, 3))))
    prepend = false;
  asink_status s = tmp_reserve(e, 3 * len + 3);
  if (s) return s;
  size_t k = 0;
  if (prepend) memcpy(e->tmp, METASPACE, 3), k = 3;
  for (size_t i = 0; i < len; i++)
    if (text[i] == ' ') memcpy(e->tmp + k, METASPACE, 3), k += 3;
    else e->tmp[k++] = text[i];
  if ((s = asink_uchars_decode(&e->u, e->tmp, k)) || (s = reserve_ids(&e->sym, k))) return s;
  e->sym.n = 0;
  bool last_unk = false;
  for (size_t i = 0; i < e->u.n; i++) {
    const char *c = e->tmp + e->u.off[i];
    size_t n = e->u.off[i + 1] - e->u.off[i];
    int32_t id = asink_bpe_id(&t->bpe, c, n);
    if (id >= 0) {
      e->sym.v[e->sym.n++] = id, last_unk = false;
      continue;
    }
    bool bytes = t->byte_fallback;
    for (size_t b = 0; b < n && bytes; b++) bytes = t->byte_id[(unsigned char)c[b]] >= 0;
    if (bytes) {
      for (size_t b = 0; b < n; b++) e->sym.v[e->sym.n++] = t->byte_id[(unsigned char)c[b]];
      last_unk = false;
    } else if (!(last_unk && t->fuse_unk)) {
      if (t->unk < 0)
        return asink_fail(ASINK_ERR_ARG,
                          "tokenizer %s: byte %zu of the text (U+%04X) has no token and the model "
                          "has no unk_token",
                          t->files, e->u.off[i], (unsigned)e->u.cp[i]);
      e->sym.v[e->sym.n++] = t->unk, last_unk = true;
    }
  }
  return finish_piece(e, e->tmp, k);
}

/* Whether the character at text[i, n) is a letter, a digit or '_': what an added token with
 * single_word must not touch. */
static bool word_char(const char *text, size_t i, size_t n) {
  int32_t c;
  if (text[i] == '_') return true;
  if (!asink_utf8_valid_len((const unsigned char *)text + i, n - i, &c)) return false;
  asink_uclass k = asink_uclass_of(c);
  return k == ASINK_UC_LETTER || k == ASINK_UC_NUMBER;
}

/* The earliest added token in text[from, len) (the longest one there): its id and bytes
 * [*start, *end), lstrip / rstrip whitespace (ASCII) included. -1 if there is none. */
static int32_t find_added(const asink_tokenizer *t, const char *text, size_t len, size_t from, size_t *start,
                          size_t *end) {
  for (size_t p = from; p < len; p++) {
    if (!t->added_first[(unsigned char)text[p]]) continue;
    const asink_added_token *best = NULL;
    for (size_t i = 0; i < t->n_added; i++) {
      const asink_added_token *a = &t->added[i];
      if (a->content[0] != text[p] || a->len > len - p || (best && best->len >= a->len) ||
          memcmp(a->content, text + p, a->len))
        continue;
      if (a->single_word) {
        size_t q = p ? p - 1 : 0, e = p + a->len;
        while (q > 0 && ((unsigned char)text[q] & 0xC0) == 0x80) q--; /* the previous character's start */
        if ((p > 0 && word_char(text, q, p)) || (e < len && word_char(text, e, len))) continue;
      }
      best = a;
    }
    if (!best) continue;
    size_t s = p, e = p + best->len;
    if (best->lstrip)
      while (s > from && strchr(" \t\n\r\v\f", text[s - 1]) && text[s - 1]) s--;
    if (best->rstrip)
      while (e < len && strchr(" \t\n\r\v\f", text[e]) && text[e]) e++;
    *start = s, *end = e;
    return best->id;
  }
  return -1;
}

asink_status asink_tokenizer_encode(const asink_tokenizer *t, const char *text, size_t len, int32_t **ids,
                                    size_t *n) {
  if (!t || (!text && len) || !ids || !n)
    return asink_fail(ASINK_ERR_ARG, "asink_tokenizer_encode: %s is NULL",
                      !t     ? "tok"
                      : !ids ? "ids"
                      : !n   ? "n"
                             : "text");
  *ids = NULL, *n = 0;
  encoder e = {.t = t};
  asink_status s = reserve_ids(&e.out, 1);
  for (size_t pos = 0; pos < len && !s;) {
    size_t ms = len, me = len;
    int32_t special = t->n_added ? find_added(t, text, len, pos, &ms, &me) : -1;
    if (ms > pos)
      s = t->kind == ASINK_TOK_BYTE_LEVEL ? byte_level_segment(&e, text + pos, ms - pos)
                                          : metaspace_segment(&e, text + pos, ms - pos, pos == 0);
    if (!s && special >= 0 && !(s = reserve_ids(&e.out, 1))) e.out.v[e.out.n++] = special;
    pos = me;
  }
  asink_uchars_free(&e.u);
  asink_bpe_scratch_free(&e.sc);
  free(e.sym.v), free(e.tmp);
  free(e.cache.slots), free(e.cache.keys), free(e.cache.ids.v);
  if (s) {
    free(e.out.v);
    return s;
  }
  *ids = e.out.v, *n = e.out.n;
  return ASINK_OK;
}

/* ------------------------------------------------------------ decoding */

/* Appends token id's bytes: each character mapped back to its byte, or the string as it
 * is if a character is not one of the 256 (an added token such as "<|endoftext|>"). */
static size_t byte_level_token(const asink_tokenizer *t, int32_t id, char *out) {
  const unsigned char *s = (const unsigned char *)t->bpe.strings[id];
  size_t len = t->bpe.lengths[id], k = 0;
  for (size_t i = 0; i < len;) {
    int32_t c;
    size_t w = asink_utf8_valid_len(s + i, len - i, &c);
    if (!w || c >= 324 || t->char_byte[c] < 0) {
      memcpy(out, s, len);
      return len;
    }
    out[k++] = (char)t->char_byte[c];
    i += w;
  }
  return k;
}

static size_t metaspace_token(const asink_tokenizer *t, int32_t id, char *out) {
  const char *s = t->bpe.strings[id];
  size_t len = t->bpe.lengths[id], k = 0;
  if (t->byte_fallback && len == 6 && !strncmp(s, "<0x", 3) && s[5] == '>') {
    int b = (int)strtol(s + 3, NULL, 16);
    if (t->byte_id[b] == id) {
      out[0] = (char)b;
      return 1;
    }
  }
  for (size_t i = 0; i < len;)
    if (len - i >= 3 && !memcmp(s + i, METASPACE, 3)) out[k++] = ' ', i += 3;
    else out[k++] = s[i++];
  return k;
}

asink_status asink_tokenizer_decode(const asink_tokenizer *t, const int32_t *ids, size_t n, char **text,
                                    size_t *len) {
  if (!t || (!ids && n) || !text || !len)
    return asink_fail(ASINK_ERR_ARG, "asink_tokenizer_decode: %s is NULL",
                      !t      ? "tok"
                      : !text ? "text"
                      : !len  ? "len"
                              : "ids");
  *text = NULL, *len = 0;
  size_t total = 1;
  for (size_t i = 0; i < n; i++) {
    if (ids[i] < 0 || ids[i] >= t->bpe.n_ids || !t->bpe.strings[ids[i]])
      return asink_fail(ASINK_ERR_ARG, "asink_tokenizer_decode: id %d (item %zu) is not a token of %s",
                        (int)ids[i], i, t->files);
    total += t->bpe.lengths[ids[i]];
  }
  char *out = malloc(total);
  if (!out) return asink_fail(ASINK_ERR_NOMEM, "asink_tokenizer_decode: no memory for %zu bytes", total);
  size_t k = 0;
  for (size_t i = 0; i < n; i++)
    k += t->kind == ASINK_TOK_BYTE_LEVEL ? byte_level_token(t, ids[i], out + k)
                                         : metaspace_token(t, ids[i], out + k);
  size_t skip = t->kind == ASINK_TOK_METASPACE && t->strip_first_space && k && out[0] == ' ';
  memmove(out, out + skip, k - skip);
  out[k - skip] = 0;
  *text = out, *len = k - skip;
  return ASINK_OK;
}

/* ------------------------------------------------------------ facts */

int asink_tokenizer_vocab_size(const asink_tokenizer *t) { return t ? t->bpe.n_ids : 0; }

const char *asink_tokenizer_kind(const asink_tokenizer *t) {
  if (!t) return NULL;
  return t->kind == ASINK_TOK_BYTE_LEVEL ? "byte-level" : "metaspace";
}

int32_t asink_tokenizer_bos(const asink_tokenizer *t, int *adds_bos) {
  if (adds_bos) *adds_bos = t && t->adds_bos;
  return t ? t->bos : -1;
}

const char *asink_tokenizer_token(const asink_tokenizer *t, int32_t id) {
  return t && id >= 0 && id < t->bpe.n_ids ? t->bpe.strings[id] : NULL;
}
