/* The tokenizer handle's insides, shared by its loader (load.c) and its encoder and
 * decoder (encode.c). */
#ifndef ASINK_TOK_TOKENIZER_H
#define ASINK_TOK_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "attnsink.h"
#include "tok/bpe.h"
#include "tok/pretok.h"

typedef enum {
  ASINK_TOK_BYTE_LEVEL, /* GPT-2 style: text bytes -> printable characters, then BPE */
  ASINK_TOK_METASPACE,  /* SentencePiece style: spaces -> U+2581, characters, byte fallback */
} asink_tok_kind;

/* A token of added_tokens, found in the text before anything else runs. */
typedef struct {
  char *content;
  size_t len;
  int32_t id;
  bool special, lstrip, rstrip, single_word;
} asink_added_token;

struct asink_tokenizer {
  asink_tok_kind kind;
  asink_bpe bpe;
  asink_pretok pretok;
  bool nfc;           /* NFC normaliser (GPT-NeoX / Pythia) */
  bool prefix_space;  /* byte level: add_prefix_space */
  bool ignore_merges; /* a piece that is a whole token is taken as it is (LLaMA 3) */
  /* metaspace: U+2581 before each segment (always) or the text's first one (first) */
  enum { ASINK_PREPEND_NEVER, ASINK_PREPEND_FIRST, ASINK_PREPEND_ALWAYS } prepend;
  /* the Metaspace pre-tokenizer adds none to a segment that starts with one (or a space);
   * the Prepend normaliser always does */
  bool prepend_unless_there;
  bool strip_first_space; /* metaspace decoding: drop the space the prepended U+2581 made */
  bool byte_fallback, fuse_unk;
  int32_t unk; /* -1: none */
  /* byte level: the id of each byte's character; metaspace: the id of <0xNN>, -1 if absent */
  int32_t byte_id[256];
  /* byte level decoding: the byte of each of the 324 characters bytes map to, -1 elsewhere */
  int16_t char_byte[324];
  uint16_t byte_char[256]; /* and back */
  asink_added_token *added;
  size_t n_added;
  bool added_first[256]; /* the bytes an added token can start with */
  int32_t bos;           /* -1: none known */
  bool adds_bos;         /* the tokenizer's own setting: encode for a model starts with BOS */
  char *files;           /* what was read, for messages: "DIR/tokenizer.json" */
};

#endif
