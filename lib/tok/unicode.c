#include "tok/unicode.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "core/error.h"

size_t asink_utf8_valid_len(const unsigned char *s, size_t n, int32_t *cp) {
  if (s[0] < 0x80) {
    *cp = s[0];
    return 1;
  }
  utf8proc_int32_t c;
  utf8proc_ssize_t k = utf8proc_iterate(s, (utf8proc_ssize_t)(n < 4 ? n : 4), &c);
  if (k <= 0) return 0;
  *cp = c;
  return (size_t)k;
}

/* Unicode's White_Space property, which \s means in the reference tokenizers' regex
 * engines (Python's regex module, Oniguruma). */
static int is_space(int32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

asink_uclass asink_uclass_of(int32_t c) {
  if (c < 0) return ASINK_UC_OTHER;
  if (c < 0x80) {
    if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') return ASINK_UC_LETTER;
    if (c >= '0' && c <= '9') return ASINK_UC_NUMBER;
    return is_space(c) ? ASINK_UC_SPACE : ASINK_UC_OTHER;
  }
  if (is_space(c)) return ASINK_UC_SPACE;
  switch (utf8proc_category(c)) {
  case UTF8PROC_CATEGORY_LU:
  case UTF8PROC_CATEGORY_LL:
  case UTF8PROC_CATEGORY_LT:
  case UTF8PROC_CATEGORY_LM:
  case UTF8PROC_CATEGORY_LO: return ASINK_UC_LETTER;
  case UTF8PROC_CATEGORY_ND:
  case UTF8PROC_CATEGORY_NL:
  case UTF8PROC_CATEGORY_NO: return ASINK_UC_NUMBER;
  default: return ASINK_UC_OTHER;
  }
}

asink_status asink_uchars_decode(asink_uchars *u, const char *text, size_t len) {
  /* at most one character per byte */
  size_t cap = len + 1;
  asink_status s =
      asink_ws_reserve(&u->ws, cap * (sizeof *u->off + sizeof *u->cp + 1), "the text's characters");
  if (s) return s;
  u->off = u->ws.ptr;
  u->cp = (int32_t *)(u->off + cap);
  u->cls = (uint8_t *)(u->cp + cap);
  const unsigned char *p = (const unsigned char *)text;
  size_t i = 0, n = 0;
  while (i < len) {
    int32_t c;
    size_t k = asink_utf8_valid_len(p + i, len - i, &c);
    if (!k) c = -1, k = 1;
    u->cp[n] = c;
    u->cls[n] = (uint8_t)asink_uclass_of(c);
    u->off[n++] = i;
    i += k;
  }
  u->off[n] = len;
  u->n = n;
  return ASINK_OK;
}

void asink_uchars_free(asink_uchars *u) {
  asink_ws_release(&u->ws);
  memset(u, 0, sizeof *u);
}

static asink_status reserve(char **buf, size_t *cap, size_t need) {
  if (need <= *cap) return ASINK_OK;
  size_t c = *cap * 2 > need ? *cap * 2 : need;
  char *b = realloc(*buf, c);
  if (!b) return asink_fail(ASINK_ERR_NOMEM, "tokenizer: no memory to normalise %zu bytes", need);
  *buf = b, *cap = c;
  return ASINK_OK;
}

asink_status asink_utf8_nfc(const char *text, size_t len, char **out, size_t *out_len) {
  size_t cap = len + 1, o = 0;
  char *buf = malloc(cap);
  if (!buf) return asink_fail(ASINK_ERR_NOMEM, "tokenizer: no memory to normalise %zu bytes", len);
  const unsigned char *p = (const unsigned char *)text;
  asink_status s = ASINK_OK;
  size_t i = 0;
  while (i < len && !s) {
    size_t j = i, k;
    int32_t c;
    while (j < len && (k = asink_utf8_valid_len(p + j, len - j, &c))) j += k;
    if (j > i) {
      utf8proc_uint8_t *norm = NULL;
      utf8proc_ssize_t m =
          utf8proc_map(p + i, (utf8proc_ssize_t)(j - i), &norm, UTF8PROC_STABLE | UTF8PROC_COMPOSE);
      if (m < 0) s = asink_fail(ASINK_ERR_NOMEM, "tokenizer: NFC failed: %s", utf8proc_errmsg(m));
      else if (!(s = reserve(&buf, &cap, o + (size_t)m + 1)))
        memcpy(buf + o, norm, (size_t)m), o += (size_t)m;
      free(norm);
      i = j;
    }
    /* an invalid byte goes through as it is */
    if (!s && i < len && !(s = reserve(&buf, &cap, o + 2))) buf[o++] = text[i++];
  }
  if (s) {
    free(buf);
    return s;
  }
  buf[o] = 0;
  *out = buf, *out_len = o;
  return ASINK_OK;
}
