#include "tok/pretok.h"

#include <string.h>

asink_pretok asink_pretok_of_pattern(const char *regex) {
  if (!strcmp(regex, ASINK_PATTERN_GPT2)) return ASINK_PRETOK_GPT2;
  if (!strcmp(regex, ASINK_PATTERN_LLAMA3)) return ASINK_PRETOK_LLAMA3;
  if (!strcmp(regex, ASINK_PATTERN_QWEN2)) return ASINK_PRETOK_QWEN2;
  return ASINK_PRETOK_NONE;
}

/* ASCII case folding for (?i:...), plus the one non-ASCII character that folds into a
 * contraction's letters: U+017F LATIN SMALL LETTER LONG S folds to 's'. */
static int fold(int32_t c, int icase) {
  if (!icase) return c;
  if (c == 0x17F) return 's';
  return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

/* Length of the contraction 's 't 're 've 'm 'll 'd at i, 0 if there is none. */
static size_t contraction(const asink_uchars *u, size_t i, int icase) {
  if (u->cp[i] != '\'' || i + 1 >= u->n) return 0;
  int a = fold(u->cp[i + 1], icase), b = i + 2 < u->n ? fold(u->cp[i + 2], icase) : 0;
  if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
  if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
  return 0;
}

static size_t run_of(const asink_uchars *u, size_t i, uint8_t cls) {
  while (i < u->n && u->cls[i] == cls) i++;
  return i;
}

static int is_newline(int32_t c) { return c == '\r' || c == '\n'; }

/* \s+(?!\S)|\s+ at a whitespace character i: the run, less its last character when a
 * non-space follows and the run is longer than one (so " word" keeps its space). */
static size_t space_run(const asink_uchars *u, size_t i) {
  size_t j = run_of(u, i, ASINK_UC_SPACE);
  return j == u->n || j - i < 2 ? j : j - 1;
}

/* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
static size_t gpt2_next(const asink_uchars *u, size_t i) {
  size_t k = contraction(u, i, 0);
  if (k) return i + k;
  size_t s = u->cp[i] == ' ' && i + 1 < u->n && u->cls[i + 1] != ASINK_UC_SPACE ? i + 1 : i;
  if (u->cls[s] != ASINK_UC_SPACE) return run_of(u, s, u->cls[s]);
  return space_run(u, i);
}

/* (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,D}| ?[^\s\p{L}\p{N}]+[\r\n]*|
 * \s*[\r\n]+|\s+(?!\S)|\s+ */
static size_t llama3_next(const asink_uchars *u, size_t i, size_t max_digits) {
  size_t k = contraction(u, i, 1);
  if (k) return i + k;
  uint8_t c = u->cls[i];
  if (c == ASINK_UC_LETTER) return run_of(u, i, ASINK_UC_LETTER);
  if (c != ASINK_UC_NUMBER && !is_newline(u->cp[i]) && i + 1 < u->n && u->cls[i + 1] == ASINK_UC_LETTER)
    return run_of(u, i + 1, ASINK_UC_LETTER);
  if (c == ASINK_UC_NUMBER) {
    size_t j = i;
    while (j < u->n && j - i < max_digits && u->cls[j] == ASINK_UC_NUMBER) j++;
    return j;
  }
  size_t s = u->cp[i] == ' ' && i + 1 < u->n && u->cls[i + 1] == ASINK_UC_OTHER ? i + 1 : i;
  if (u->cls[s] == ASINK_UC_OTHER) {
    size_t j = run_of(u, s, ASINK_UC_OTHER);
    while (j < u->n && is_newline(u->cp[j])) j++;
    return j;
  }
  /* whitespace: up to the run's last newline if it has one */
  size_t j = run_of(u, i, ASINK_UC_SPACE);
  for (size_t t = j; t > i; t--)
    if (is_newline(u->cp[t - 1])) return t;
  return space_run(u, i);
}

size_t asink_pretok_next(asink_pretok p, const asink_uchars *u, size_t i) {
  switch (p) {
  case ASINK_PRETOK_GPT2: return gpt2_next(u, i);
  case ASINK_PRETOK_LLAMA3: return llama3_next(u, i, 3);
  case ASINK_PRETOK_QWEN2: return llama3_next(u, i, 1);
  case ASINK_PRETOK_NONE: break;
  }
  return u->n;
}
