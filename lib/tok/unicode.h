/* What the tokenizers need to know about Unicode text: UTF-8 decoding that keeps invalid
 * bytes (each one stands alone, as a character of the "other" class), the classes the
 * pre-tokenizer patterns ask about (\p{L}, \p{N}, \s), and NFC normalisation.
 *
 * Categories and NFC come from utf8proc (Debian libutf8proc-dev): NFC needs the
 * composition tables as well as the category table, and one maintained library gives
 * both, at a Unicode version (15 in Debian 12) as recent as the regex engines the
 * reference tokenizers run on. */
#ifndef ASINK_TOK_UNICODE_H
#define ASINK_TOK_UNICODE_H

#include <stddef.h>
#include <stdint.h>

#include "attnsink.h"
#include "core/alloc.h"

typedef enum { ASINK_UC_OTHER = 0, ASINK_UC_LETTER, ASINK_UC_NUMBER, ASINK_UC_SPACE } asink_uclass;

/* The class of code point c (-1, an invalid byte: other). */
asink_uclass asink_uclass_of(int32_t c);

/* A decoded segment: n characters, character i is bytes [off[i], off[i+1]) of the text,
 * code point cp[i] (-1 for an invalid byte) of class cls[i]. */
typedef struct {
  size_t n;
  int32_t *cp;
  uint8_t *cls;
  size_t *off;
  asink_ws ws; /* where the three arrays live */
} asink_uchars;

/* Decodes text[0, len) into u (its arrays grow as needed; zero-initialise u first). */
asink_status asink_uchars_decode(asink_uchars *u, const char *text, size_t len);
void asink_uchars_free(asink_uchars *u);

/* Length of the well-formed UTF-8 character at s[0, n) (1..4), or 0 if s starts with an
 * invalid byte (a stray continuation byte, an overlong form, a surrogate, past U+10FFFF,
 * a cut-off sequence). */
size_t asink_utf8_valid_len(const unsigned char *s, size_t n, int32_t *cp);

/* NFC of text[0, len), malloc'd into *out (*out_len bytes, NUL-terminated). Invalid bytes
 * are copied through unchanged; the valid runs between them are normalised. */
asink_status asink_utf8_nfc(const char *text, size_t len, char **out, size_t *out_len);

#endif
