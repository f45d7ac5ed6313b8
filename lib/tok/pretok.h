/* The pre-tokenizers of byte-level BPE: the regular expressions that cut text into the
 * pieces BPE then encodes one by one, written out as hand-made matchers. Each pattern is
 * recognised by its exact string in tokenizer.json; an unknown one is refused, since a
 * general regex engine would be a second, bigger project. */
#ifndef ASINK_TOK_PRETOK_H
#define ASINK_TOK_PRETOK_H

#include <stddef.h>

#include "tok/unicode.h"

typedef enum {
  ASINK_PRETOK_NONE = 0, /* the whole segment is one piece (SentencePiece-style models) */
  ASINK_PRETOK_GPT2,     /* GPT-2, GPT-NeoX/Pythia, ByteLevel with use_regex */
  ASINK_PRETOK_LLAMA3,   /* LLaMA 3: digits in runs of at most 3 */
  ASINK_PRETOK_QWEN2,    /* Qwen2: LLaMA 3's pattern with single digits */
} asink_pretok;

/* The GPT-2 pattern, as the ByteLevel pre-tokenizer and GPT-2's encoder.py use it. */
#define ASINK_PATTERN_GPT2                                                                                   \
  "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"
#define ASINK_PATTERN_LLAMA3                                                                                 \
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"   \
  "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define ASINK_PATTERN_QWEN2                                                                                  \
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"        \
  "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

/* The matcher of a Split pre-tokenizer's regex, or ASINK_PRETOK_NONE if it is none of the
 * three above. */
asink_pretok asink_pretok_of_pattern(const char *regex);

/* End (a character index) of the piece that starts at character i < u->n: the regex's
 * match there, leftmost alternative first, each greedy, as the regex engines do. */
size_t asink_pretok_next(asink_pretok p, const asink_uchars *u, size_t i);

#endif
