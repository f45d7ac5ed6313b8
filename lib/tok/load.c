/* Reading a tokenizer from a checkpoint directory: HF's tokenizer.json (BPE models with a
 * byte-level or a SentencePiece-style "metaspace" scheme), or GPT-2's own encoder.json +
 * vocab.bpe; BOS from tokenizer_config.json, the post-processor, or config.json. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/error.h"
#include "tok/tokenizer.h"

#define METASPACE "\xe2\x96\x81" /* U+2581, SentencePiece's visible space */

static char *path_in(const char *dir, const char *name) {
  size_t n = strlen(dir) + strlen(name) + 2;
  char *p = malloc(n);
  if (p) snprintf(p, n, "%s/%s", dir, name);
  return p;
}

static bool is_file(const char *path) {
  struct stat st;
  return path && stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static asink_status read_json(const char *path, json_t **out) {
  json_error_t e;
  *out = json_load_file(path, JSON_REJECT_DUPLICATES, &e);
  if (*out) return ASINK_OK;
  if (e.line < 1) return asink_fail(ASINK_ERR_IO, "%s: %s", path, e.text);
  return asink_fail(ASINK_ERR_FORMAT, "%s: line %d column %d: %s", path, e.line, e.column, e.text);
}

/* ------------------------------------------------------------ the vocabulary */

static asink_status read_vocab(asink_tokenizer *t, json_t *vocab, json_t *added, const char *src) {
  if (!json_is_object(vocab))
    return asink_fail(ASINK_ERR_FORMAT, "%s: the vocabulary is not a JSON object", src);
  long long top = -1;
  const char *key;
  json_t *v;
  json_object_foreach(vocab, key, v) {
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= (1 << 30))
      return asink_fail(ASINK_ERR_FORMAT, "%s: token '%.60s' has id %s, not an integer in 0..2^30", src, key,
                        json_is_integer(v) ? "out of range" : "that is not an integer");
    if (json_integer_value(v) > top) top = json_integer_value(v);
  }
  size_t i;
  json_array_foreach(added, i, v) {
    json_t *id = json_object_get(v, "id");
    if (json_is_integer(id) && json_integer_value(id) > top && json_integer_value(id) < (1 << 30))
      top = json_integer_value(id);
  }
  if (top < 0) return asink_fail(ASINK_ERR_FORMAT, "%s: the vocabulary is empty", src);
  asink_status s = asink_bpe_init(&t->bpe, (int32_t)top + 1);
  json_object_foreach(vocab, key, v) {
    if (s) break;
    s = asink_bpe_add(&t->bpe, key, strlen(key), (int32_t)json_integer_value(v), src);
  }
  return s;
}

/* "left right" (tokenizers before 0.20, and vocab.bpe) or ["left", "right"]. */
static asink_status add_merge_text(asink_tokenizer *t, const char *m, size_t len, int32_t rank,
                                   const char *src) {
  const char *sp = memchr(m, ' ', len);
  if (!sp || sp == m || sp + 1 == m + len || memchr(sp + 1, ' ', (size_t)(m + len - sp - 1)))
    return asink_fail(ASINK_ERR_FORMAT, "%s: merge %d '%.*s' is not two tokens separated by one space", src,
                      (int)rank, (int)(len > 60 ? 60 : len), m);
  return asink_bpe_add_merge(&t->bpe, m, (size_t)(sp - m), sp + 1, (size_t)(m + len - sp - 1), rank, src);
}

static asink_status read_merges(asink_tokenizer *t, json_t *merges, const char *src) {
  if (!json_is_array(merges)) return asink_fail(ASINK_ERR_FORMAT, "%s: model.merges is not an array", src);
  asink_status s = asink_bpe_reserve_merges(&t->bpe, json_array_size(merges));
  size_t i;
  json_t *m;
  json_array_foreach(merges, i, m) {
    if (s) break;
    if (json_is_string(m)) {
      s = add_merge_text(t, json_string_value(m), json_string_length(m), (int32_t)i, src);
    } else if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
               json_is_string(json_array_get(m, 1))) {
      json_t *l = json_array_get(m, 0), *r = json_array_get(m, 1);
      s = asink_bpe_add_merge(&t->bpe, json_string_value(l), json_string_length(l), json_string_value(r),
                              json_string_length(r), (int32_t)i, src);
    } else {
      s = asink_fail(ASINK_ERR_FORMAT, "%s: model.merges[%zu] is neither \"a b\" nor [\"a\", \"b\"]", src, i);
    }
  }
  return s;
}

static asink_status read_added(asink_tokenizer *t, json_t *added, const char *src) {
  if (!added || json_is_null(added)) return ASINK_OK;
  if (!json_is_array(added)) return asink_fail(ASINK_ERR_FORMAT, "%s: added_tokens is not an array", src);
  t->added = calloc(json_array_size(added) + 1, sizeof *t->added);
  if (!t->added) return asink_fail(ASINK_ERR_NOMEM, "tokenizer: no memory for the added tokens");
  size_t i;
  json_t *a;
  json_array_foreach(added, i, a) {
    json_t *id = json_object_get(a, "id"), *content = json_object_get(a, "content");
    if (!json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) >= t->bpe.n_ids ||
        !json_is_string(content) || !json_string_length(content))
      return asink_fail(ASINK_ERR_FORMAT,
                        "%s: added_tokens[%zu] needs an integer id in 0..2^30 and a non-empty content", src,
                        i);
    asink_added_token *x = &t->added[t->n_added++];
    x->len = json_string_length(content);
    if (!(x->content = malloc(x->len + 1))) return asink_fail(ASINK_ERR_NOMEM, "tokenizer: no memory");
    memcpy(x->content, json_string_value(content), x->len + 1);
    x->id = (int32_t)json_integer_value(id);
    t->added_first[(unsigned char)x->content[0]] = true;
    x->special = json_is_true(json_object_get(a, "special"));
    x->lstrip = json_is_true(json_object_get(a, "lstrip"));
    x->rstrip = json_is_true(json_object_get(a, "rstrip"));
    x->single_word = json_is_true(json_object_get(a, "single_word"));
    /* give the id its string if the model's vocabulary has none (LLaMA 3's specials) */
    if (!t->bpe.strings[x->id] && asink_bpe_id(&t->bpe, x->content, x->len) < 0) {
      asink_status s = asink_bpe_add(&t->bpe, x->content, x->len, x->id, src);
      if (s) return s;
    }
  }
  return ASINK_OK;
}

/* ------------------------------------------------------------ byte level */

/* GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the other 68
 * bytes for U+0100.. in byte order, so every byte is a visible character. */
static int byte_char(int b) {
  if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255)) return b;
  int n = 0;
  for (int x = 0; x < b; x++)
    if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174 && x <= 255))) n++;
  return 256 + n;
}

static asink_status setup_byte_level(asink_tokenizer *t, const char *src) {
  for (int c = 0; c < 324; c++) t->char_byte[c] = -1;
  for (int b = 0; b < 256; b++) {
    int c = byte_char(b);
    char u[3];
    size_t n =
        c < 0x80 ? (u[0] = (char)c, 1) : (u[0] = (char)(0xC0 | c >> 6), u[1] = (char)(0x80 | (c & 63)), 2);
    t->char_byte[c] = (int16_t)b;
    t->byte_char[b] = (uint16_t)c;
    if ((t->byte_id[b] = asink_bpe_id(&t->bpe, u, n)) < 0)
      return asink_fail(ASINK_ERR_FORMAT,
                        "%s: the vocabulary has no token for byte 0x%02X (character U+%04X)", src, b, c);
  }
  return ASINK_OK;
}

static void setup_byte_fallback(asink_tokenizer *t) {
  for (int b = 0; b < 256; b++) {
    char name[8];
    snprintf(name, sizeof name, "<0x%02X>", b);
    t->byte_id[b] = asink_bpe_id(&t->bpe, name, 6);
  }
}

/* ------------------------------------------------------------ tokenizer.json */

static const char *type_of(json_t *o) { return json_string_value(json_object_get(o, "type")); }

static asink_status unsupported(const char *src, const char *what, const char *type) {
  return asink_fail(ASINK_ERR_UNSUPPORTED, "%s: %s '%s' is not supported", src, what,
                    type ? type : "(no type)");
}

/* The pieces of the metaspace scheme may come from the normaliser (LLaMA 2's legacy
 * Prepend + Replace) or the pre-tokenizer (Metaspace); both end the same way. */
typedef struct {
  bool byte_level, metaspace, replace_space;
} scheme;

typedef asink_status (*part_reader)(asink_tokenizer *t, json_t *part, scheme *sc, const char *src);

/* A Sequence: each of its parts (key "normalizers", "pretokenizers", "decoders") in order. */
static asink_status read_each(part_reader read, asink_tokenizer *t, json_t *seq, const char *key, scheme *sc,
                              const char *src) {
  size_t i;
  json_t *x;
  json_array_foreach(json_object_get(seq, key), i, x) {
    asink_status s = read(t, x, sc, src);
    if (s) return s;
  }
  return ASINK_OK;
}

static asink_status read_normalizer(asink_tokenizer *t, json_t *n, scheme *sc, const char *src) {
  if (!n || json_is_null(n)) return ASINK_OK;
  const char *type = type_of(n);
  if (!type) return unsupported(src, "normalizer", NULL);
  if (!strcmp(type, "Sequence")) return read_each(read_normalizer, t, n, "normalizers", sc, src);
  if (!strcmp(type, "NFC")) {
    t->nfc = true;
    return ASINK_OK;
  }
  if (!strcmp(type, "Prepend")) {
    const char *p = json_string_value(json_object_get(n, "prepend"));
    if (!p || strcmp(p, METASPACE)) return unsupported(src, "Prepend normalizer of", p);
    sc->metaspace = true, t->prepend = ASINK_PREPEND_ALWAYS;
    return ASINK_OK;
  }
  if (!strcmp(type, "Replace")) {
    const char *from = json_string_value(json_object_get(json_object_get(n, "pattern"), "String"));
    const char *to = json_string_value(json_object_get(n, "content"));
    if (!from || !to || strcmp(from, " ") || strcmp(to, METASPACE))
      return unsupported(src, "Replace normalizer other than ' ' -> U+2581, of", from ? from : "a regex");
    sc->metaspace = sc->replace_space = true;
    return ASINK_OK;
  }
  return unsupported(src, "normalizer", type);
}

static asink_status read_pre_tokenizer(asink_tokenizer *t, json_t *p, scheme *sc, const char *src) {
  if (!p || json_is_null(p)) return ASINK_OK;
  const char *type = type_of(p);
  if (!type) return unsupported(src, "pre_tokenizer", NULL);
  if (!strcmp(type, "Sequence")) return read_each(read_pre_tokenizer, t, p, "pretokenizers", sc, src);
  if (!strcmp(type, "ByteLevel")) {
    json_t *re = json_object_get(p, "use_regex");
    bool use_regex = !re || json_is_true(re);
    if (use_regex && t->pretok != ASINK_PRETOK_NONE)
      return asink_fail(ASINK_ERR_UNSUPPORTED,
                        "%s: a ByteLevel pre-tokenizer with use_regex after a Split is not supported", src);
    if (use_regex) t->pretok = ASINK_PRETOK_GPT2;
    t->prefix_space = json_is_true(json_object_get(p, "add_prefix_space"));
    sc->byte_level = true;
    return ASINK_OK;
  }
  if (!strcmp(type, "Split")) {
    const char *re = json_string_value(json_object_get(json_object_get(p, "pattern"), "Regex"));
    const char *behavior = json_string_value(json_object_get(p, "behavior"));
    if (!re) return unsupported(src, "Split pre-tokenizer on a plain string, not a regex; pattern", NULL);
    asink_pretok k = asink_pretok_of_pattern(re);
    if (k == ASINK_PRETOK_NONE)
      return asink_fail(
          ASINK_ERR_UNSUPPORTED,
          "%s: the Split pre-tokenizer's regex \"%s\" is not one this library implements (GPT-2's, "
          "LLaMA 3's or Qwen2's)",
          src, re);
    if (!behavior || strcmp(behavior, "Isolated") || json_is_true(json_object_get(p, "invert")))
      return unsupported(src, "Split behavior (only Isolated without invert)", behavior);
    if (t->pretok != ASINK_PRETOK_NONE)
      return asink_fail(ASINK_ERR_UNSUPPORTED, "%s: more than one Split pre-tokenizer is not supported", src);
    t->pretok = k;
    return ASINK_OK;
  }
  if (!strcmp(type, "Metaspace")) {
    const char *r = json_string_value(json_object_get(p, "replacement"));
    const char *scheme_name = json_string_value(json_object_get(p, "prepend_scheme"));
    if (!r || strcmp(r, METASPACE)) return unsupported(src, "Metaspace replacement", r);
    if (json_is_true(json_object_get(p, "split")))
      return asink_fail(ASINK_ERR_UNSUPPORTED,
                        "%s: a Metaspace pre-tokenizer with split=true is not supported", src);
    if (scheme_name && !strcmp(scheme_name, "first")) t->prepend = ASINK_PREPEND_FIRST;
    else if (scheme_name && !strcmp(scheme_name, "never")) t->prepend = ASINK_PREPEND_NEVER;
    else if (scheme_name && strcmp(scheme_name, "always"))
      return unsupported(src, "Metaspace prepend_scheme", scheme_name);
    else if (scheme_name || !json_is_false(json_object_get(p, "add_prefix_space")))
      t->prepend = ASINK_PREPEND_ALWAYS;
    t->prepend_unless_there = true;
    sc->metaspace = sc->replace_space = true;
    return ASINK_OK;
  }
  return unsupported(src, "pre_tokenizer", type);
}

static asink_status read_decoder(asink_tokenizer *t, json_t *d, scheme *sc, const char *src) {
  if (!d || json_is_null(d)) return ASINK_OK;
  const char *type = type_of(d);
  if (!type) return unsupported(src, "decoder", NULL);
  if (!strcmp(type, "Sequence")) return read_each(read_decoder, t, d, "decoders", sc, src);
  bool byte_level = t->kind == ASINK_TOK_BYTE_LEVEL;
  if (!strcmp(type, "ByteLevel") ? !byte_level : byte_level)
    return asink_fail(ASINK_ERR_UNSUPPORTED, "%s: decoder '%s' with a %s model is not supported", src, type,
                      byte_level ? "byte-level" : "metaspace (U+2581)");
  if (byte_level) return ASINK_OK;
  if (!strcmp(type, "ByteFallback") || !strcmp(type, "Fuse") || !strcmp(type, "Replace")) return ASINK_OK;
  if (!strcmp(type, "Strip")) {
    json_t *start = json_object_get(d, "start");
    t->strip_first_space = json_is_integer(start) && json_integer_value(start) > 0;
    return ASINK_OK;
  }
  if (!strcmp(type, "Metaspace")) {
    const char *scheme_name = json_string_value(json_object_get(d, "prepend_scheme"));
    t->strip_first_space = scheme_name ? strcmp(scheme_name, "never") != 0
                                       : !json_is_false(json_object_get(d, "add_prefix_space"));
    return ASINK_OK;
  }
  return unsupported(src, "decoder", type);
}

/* The BOS of a TemplateProcessing post-processor: the special token its single template
 * starts with. */
static void read_post_processor(asink_tokenizer *t, json_t *p) {
  const char *type = type_of(p);
  if (!type) return;
  if (!strcmp(type, "Sequence")) {
    size_t i;
    json_t *x;
    json_array_foreach(json_object_get(p, "processors"), i, x) read_post_processor(t, x);
    return;
  }
  if (strcmp(type, "TemplateProcessing")) return;
  json_t *first = json_object_get(json_array_get(json_object_get(p, "single"), 0), "SpecialToken");
  const char *name = json_string_value(json_object_get(first, "id"));
  json_t *ids =
      json_object_get(json_object_get(json_object_get(p, "special_tokens"), name ? name : ""), "ids");
  if (json_array_size(ids) == 1 && json_is_integer(json_array_get(ids, 0))) {
    t->bos = (int32_t)json_integer_value(json_array_get(ids, 0));
    t->adds_bos = true;
  }
}

static asink_status read_model(asink_tokenizer *t, json_t *model, json_t *added, const char *src) {
  const char *type = type_of(model);
  if (type && strcmp(type, "BPE"))
    return asink_fail(ASINK_ERR_UNSUPPORTED, "%s: model.type '%s' is not supported (BPE only)", src, type);
  if (!type && !json_object_get(model, "merges"))
    return asink_fail(ASINK_ERR_FORMAT, "%s: model has neither a type nor merges", src);
  const char *keys[] = {"continuing_subword_prefix", "end_of_word_suffix"};
  for (int i = 0; i < 2; i++) {
    const char *v = json_string_value(json_object_get(model, keys[i]));
    if (v && *v)
      return asink_fail(ASINK_ERR_UNSUPPORTED, "%s: model.%s '%s' is not supported", src, keys[i], v);
  }
  json_t *dropout = json_object_get(model, "dropout");
  if (dropout && !json_is_null(dropout) && json_number_value(dropout) != 0)
    return asink_fail(ASINK_ERR_UNSUPPORTED,
                      "%s: model.dropout=%g: BPE dropout is a training-time setting, "
                      "not supported",
                      src, json_number_value(dropout));
  asink_status s;
  if ((s = read_vocab(t, json_object_get(model, "vocab"), added, src)) ||
      (s = read_merges(t, json_object_get(model, "merges"), src)) || (s = read_added(t, added, src)))
    return s;
  t->byte_fallback = json_is_true(json_object_get(model, "byte_fallback"));
  t->fuse_unk = json_is_true(json_object_get(model, "fuse_unk"));
  t->ignore_merges = json_is_true(json_object_get(model, "ignore_merges"));
  const char *unk = json_string_value(json_object_get(model, "unk_token"));
  t->unk = unk ? asink_bpe_id(&t->bpe, unk, strlen(unk)) : -1;
  if (unk && t->unk < 0)
    return asink_fail(ASINK_ERR_FORMAT, "%s: model.unk_token '%s' is not in the vocabulary", src, unk);
  return ASINK_OK;
}

static asink_status read_tokenizer_json(asink_tokenizer *t, const char *path) {
  json_t *j;
  asink_status s = read_json(path, &j);
  if (s) return s;
  scheme sc = {0};
  json_t *model = json_object_get(j, "model");
  if (!json_is_object(model)) s = asink_fail(ASINK_ERR_FORMAT, "%s: no \"model\" object", path);
  if (!s) s = read_model(t, model, json_object_get(j, "added_tokens"), path);
  if (!s) s = read_normalizer(t, json_object_get(j, "normalizer"), &sc, path);
  if (!s) s = read_pre_tokenizer(t, json_object_get(j, "pre_tokenizer"), &sc, path);
  if (!s && sc.byte_level == sc.metaspace)
    s = asink_fail(
        ASINK_ERR_UNSUPPORTED,
        sc.byte_level
            ? "%s: both a ByteLevel and a metaspace scheme"
            : "%s: neither a ByteLevel pre-tokenizer nor a metaspace (U+2581) scheme: not supported",
        path);
  if (!s && sc.metaspace && !sc.replace_space)
    s = asink_fail(ASINK_ERR_UNSUPPORTED,
                   "%s: a U+2581 prefix without spaces replaced by U+2581 is not supported", path);
  if (!s && sc.metaspace && t->nfc) s = unsupported(path, "normalizer for a metaspace model:", "NFC");
  if (!s) {
    t->kind = sc.byte_level ? ASINK_TOK_BYTE_LEVEL : ASINK_TOK_METASPACE;
    if (t->kind == ASINK_TOK_BYTE_LEVEL) s = setup_byte_level(t, path);
    else setup_byte_fallback(t);
  }
  if (!s && t->kind == ASINK_TOK_METASPACE && !t->byte_fallback && t->unk < 0)
    s = asink_fail(ASINK_ERR_FORMAT,
                   "%s: a model with neither byte_fallback nor an unk_token cannot encode every text", path);
  if (!s) s = read_decoder(t, json_object_get(j, "decoder"), &sc, path);
  if (!s) read_post_processor(t, json_object_get(j, "post_processor"));
  json_decref(j);
  return s;
}

/* ------------------------------------------------------------ encoder.json + vocab.bpe */

static asink_status read_gpt2_files(asink_tokenizer *t, const char *enc_path, const char *bpe_path) {
  json_t *enc;
  asink_status s = read_json(enc_path, &enc);
  if (s) return s;
  s = read_vocab(t, enc, NULL, enc_path);
  json_decref(enc);
  if (s) return s;
  FILE *f = fopen(bpe_path, "rb");
  if (!f) return asink_fail(ASINK_ERR_IO, "%s: cannot open", bpe_path);
  char *line = NULL;
  size_t cap = 0, n_lines = 0;
  ssize_t len;
  while ((len = getline(&line, &cap, f)) >= 0) n_lines++;
  rewind(f);
  s = asink_bpe_reserve_merges(&t->bpe, n_lines);
  int32_t rank = 0;
  for (size_t no = 1; !s && (len = getline(&line, &cap, f)) >= 0; no++) {
    while (len && (line[len - 1] == '\n' || line[len - 1] == '\r')) len--;
    if (!len || (no == 1 && !strncmp(line, "#version", 8))) continue;
    s = add_merge_text(t, line, (size_t)len, rank++, bpe_path);
  }
  if (!s && ferror(f)) s = asink_fail(ASINK_ERR_IO, "%s: read error", bpe_path);
  free(line);
  fclose(f);
  if (s) return s;
  t->kind = ASINK_TOK_BYTE_LEVEL;
  t->pretok = ASINK_PRETOK_GPT2;
  /* GPT-2's encoder separates documents with <|endoftext|>, the BOS of its HF config */
  t->bos = asink_bpe_id(&t->bpe, "<|endoftext|>", 13);
  return setup_byte_level(t, enc_path);
}

/* ------------------------------------------------------------ BOS from the configs */

int32_t asink_tokenizer_token_id(const asink_tokenizer *t, const char *s) {
  if (!t || !s) return -1;
  for (size_t i = 0; i < t->n_added; i++)
    if (!strcmp(t->added[i].content, s)) return t->added[i].id;
  return asink_bpe_id(&t->bpe, s, strlen(s));
}

static asink_status read_bos(asink_tokenizer *t, const char *dir) {
  char *path = path_in(dir, "tokenizer_config.json");
  json_t *j = NULL;
  asink_status s = ASINK_OK;
  if (is_file(path) && !(s = read_json(path, &j))) {
    json_t *b = json_object_get(j, "bos_token");
    const char *name =
        json_is_string(b) ? json_string_value(b) : json_string_value(json_object_get(b, "content"));
    if (name) {
      int32_t id = asink_tokenizer_token_id(t, name);
      if (id < 0)
        s = asink_fail(ASINK_ERR_FORMAT, "%s: bos_token '%s' is not a token of the vocabulary", path, name);
      t->bos = id;
    }
    json_t *add = json_object_get(j, "add_bos_token");
    if (json_is_boolean(add)) t->adds_bos = json_is_true(add);
    json_decref(j);
  }
  free(path);
  if (s || t->bos >= 0) goto done;
  path = path_in(dir, "config.json");
  if (is_file(path) && !(s = read_json(path, &j))) {
    json_t *b = json_object_get(j, "bos_token_id");
    if (json_is_integer(b) && json_integer_value(b) >= 0 && json_integer_value(b) < t->bpe.n_ids)
      t->bos = (int32_t)json_integer_value(b);
    json_decref(j);
  }
  free(path);
done:
  if (t->bos < 0) t->adds_bos = false;
  return s;
}

/* ------------------------------------------------------------ the handle */

void asink_tokenizer_free(asink_tokenizer *t) {
  if (!t) return;
  asink_bpe_free(&t->bpe);
  for (size_t i = 0; i < t->n_added; i++) free(t->added[i].content);
  free(t->added);
  free(t->files);
  free(t);
}

asink_status asink_tokenizer_load(asink_tokenizer **out, const char *dir) {
  if (!out || !dir) return asink_fail(ASINK_ERR_ARG, "asink_tokenizer_load: %s is NULL", out ? "dir" : "tok");
  *out = NULL;
  asink_tokenizer *t = calloc(1, sizeof *t);
  char *tj = path_in(dir, "tokenizer.json"), *ej = path_in(dir, "encoder.json"),
       *vb = path_in(dir, "vocab.bpe");
  if (!t || !tj || !ej || !vb) {
    free(t), free(tj), free(ej), free(vb);
    return asink_fail(ASINK_ERR_NOMEM, "asink_tokenizer_load: no memory");
  }
  t->unk = t->bos = -1;
  asink_status s;
  struct stat st;
  if (stat(dir, &st) || !S_ISDIR(st.st_mode)) {
    s = asink_fail(ASINK_ERR_IO, "tokenizer: %s is not a directory", dir);
  } else if (is_file(tj)) {
    t->files = tj, tj = NULL;
    s = read_tokenizer_json(t, t->files);
  } else if (is_file(ej) && is_file(vb)) {
    t->files = path_in(dir, "{encoder.json,vocab.bpe}");
    s = t->files ? read_gpt2_files(t, ej, vb)
                 : asink_fail(ASINK_ERR_NOMEM, "asink_tokenizer_load: no memory");
  } else {
    s = asink_fail(ASINK_ERR_IO, "tokenizer: %s has no tokenizer.json, nor encoder.json with vocab.bpe%s",
                   dir,
                   is_file(ej)   ? " (encoder.json without vocab.bpe)"
                   : is_file(vb) ? " (vocab.bpe without encoder.json)"
                                 : "");
  }
  free(tj), free(ej), free(vb);
  if (!s) s = read_bos(t, dir);
  if (s) {
    asink_tokenizer_free(t);
    return s;
  }
  *out = t;
  return ASINK_OK;
}
