/* The tokenizers' Unicode layer and pre-tokenizer matchers from C: the classes \s, \p{L},
 * \p{N} are Unicode's (White_Space holds U+0085 and not U+FEFF, unlike JavaScript's \s),
 * invalid UTF-8 stays byte by byte, NFC passes invalid bytes through, and GPT-2's pattern
 * cuts known strings where its regex does. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "attnsink.h"
#include "tok/pretok.h"
#include "tok/unicode.h"

START_TEST(classes) {
  ck_assert_int_eq(asink_uclass_of('a'), ASINK_UC_LETTER);
  ck_assert_int_eq(asink_uclass_of(0x4E2D), ASINK_UC_LETTER); /* 中 */
  ck_assert_int_eq(asink_uclass_of(0x02B0), ASINK_UC_LETTER); /* modifier letter (Lm) */
  ck_assert_int_eq(asink_uclass_of('7'), ASINK_UC_NUMBER);
  ck_assert_int_eq(asink_uclass_of(0x216B), ASINK_UC_NUMBER); /* Ⅻ (Nl) */
  ck_assert_int_eq(asink_uclass_of(0x00B2), ASINK_UC_NUMBER); /* ² (No) */
  ck_assert_int_eq(asink_uclass_of(0x0661), ASINK_UC_NUMBER); /* Arabic-Indic 1 (Nd) */
  ck_assert_int_eq(asink_uclass_of(0x0085), ASINK_UC_SPACE);
  ck_assert_int_eq(asink_uclass_of(0x3000), ASINK_UC_SPACE);
  ck_assert_int_eq(asink_uclass_of(0x200B), ASINK_UC_OTHER); /* zero width space: not White_Space */
  ck_assert_int_eq(asink_uclass_of(0xFEFF), ASINK_UC_OTHER);
  ck_assert_int_eq(asink_uclass_of(0x0301), ASINK_UC_OTHER);  /* combining acute (Mn) */
  ck_assert_int_eq(asink_uclass_of(0x1F642), ASINK_UC_OTHER); /* 🙂 */
  ck_assert_int_eq(asink_uclass_of(-1), ASINK_UC_OTHER);      /* an invalid byte */
}
END_TEST

START_TEST(invalid_utf8_is_byte_by_byte) {
  /* a stray continuation, a cut 3-byte sequence, an overlong '/', a surrogate, then é */
  const char s[] = "\x80"
                   "\xe2\x82"
                   "\xc0\xaf"
                   "\xed\xa0\x80"
                   "\xc3\xa9";
  asink_uchars u = {0};
  ck_assert_int_eq(asink_uchars_decode(&u, s, sizeof s - 1), ASINK_OK);
  ck_assert_uint_eq(u.n, 9);
  for (size_t i = 0; i < 8; i++) ck_assert_int_eq(u.cp[i], -1);
  ck_assert_int_eq(u.cp[8], 0xE9);
  ck_assert_uint_eq(u.off[8], 8);
  ck_assert_uint_eq(u.off[9], 10);
  asink_uchars_free(&u);
}
END_TEST

START_TEST(nfc_keeps_invalid_bytes) {
  /* e + U+0301, an invalid byte, alef + patah (whose composed form NFC excludes) */
  const char s[] = "cafe\xcc\x81 \xff \xd7\x90\xd6\xb7";
  char *out;
  size_t n;
  ck_assert_int_eq(asink_utf8_nfc(s, sizeof s - 1, &out, &n), ASINK_OK);
  const char want[] = "caf\xc3\xa9 \xff \xd7\x90\xd6\xb7";
  ck_assert_uint_eq(n, sizeof want - 1);
  ck_assert_mem_eq(out, want, n);
  free(out);
}
END_TEST

static void check_pieces(asink_pretok p, const char *text, const char *const *want) {
  asink_uchars u = {0};
  ck_assert_int_eq(asink_uchars_decode(&u, text, strlen(text)), ASINK_OK);
  size_t k = 0;
  for (size_t i = 0; i < u.n; k++) {
    size_t j = asink_pretok_next(p, &u, i);
    ck_assert_ptr_nonnull(want[k]);
    ck_assert_uint_eq(u.off[j] - u.off[i], strlen(want[k]));
    ck_assert_mem_eq(text + u.off[i], want[k], strlen(want[k]));
    i = j;
  }
  ck_assert_ptr_null(want[k]);
  asink_uchars_free(&u);
}

START_TEST(gpt2_pieces) {
  check_pieces(ASINK_PRETOK_GPT2, "Hello world, it's  2024!\n\n  x \xff\xfe",
               (const char *const[]){"Hello", " world", ",", " it", "'s", " ", " 2024", "!", "\n\n ", " x",
                                     " \xff\xfe", NULL});
  check_pieces(ASINK_PRETOK_GPT2, "a \t b   ", (const char *const[]){"a", " \t", " b", "   ", NULL});
}
END_TEST

START_TEST(llama3_pieces) {
  check_pieces(ASINK_PRETOK_LLAMA3, "I'M (at) 1234567 \"hi\"\r\n\n  next",
               (const char *const[]){"I", "'M", " (", "at", ")", " ", "123", "456", "7", " \"", "hi",
                                     "\"\r\n\n", " ", " next", NULL});
  check_pieces(ASINK_PRETOK_QWEN2, "x 42", (const char *const[]){"x", " ", "4", "2", NULL});
}
END_TEST

START_TEST(patterns_by_exact_string) {
  ck_assert_int_eq(asink_pretok_of_pattern(ASINK_PATTERN_GPT2), ASINK_PRETOK_GPT2);
  ck_assert_int_eq(asink_pretok_of_pattern(ASINK_PATTERN_LLAMA3), ASINK_PRETOK_LLAMA3);
  ck_assert_int_eq(asink_pretok_of_pattern(ASINK_PATTERN_QWEN2), ASINK_PRETOK_QWEN2);
  ck_assert_int_eq(asink_pretok_of_pattern(ASINK_PATTERN_GPT2 "|x"), ASINK_PRETOK_NONE);
}
END_TEST

START_TEST(api_refuses_null) {
  int32_t *ids;
  size_t n;
  ck_assert_int_eq(asink_tokenizer_load(NULL, "."), ASINK_ERR_ARG);
  ck_assert_int_eq(asink_tokenizer_encode(NULL, "a", 1, &ids, &n), ASINK_ERR_ARG);
  ck_assert_int_eq(asink_tokenizer_vocab_size(NULL), 0);
  ck_assert_int_eq(asink_tokenizer_bos(NULL, NULL), -1);
  ck_assert_ptr_null(asink_tokenizer_token(NULL, 0));
  asink_tokenizer_free(NULL);
}
END_TEST

int main(void) {
  Suite *s = suite_create("tokenizer");
  TCase *tc = tcase_create("unicode and patterns");
  tcase_add_test(tc, classes);
  tcase_add_test(tc, invalid_utf8_is_byte_by_byte);
  tcase_add_test(tc, nfc_keeps_invalid_bytes);
  tcase_add_test(tc, gpt2_pieces);
  tcase_add_test(tc, llama3_pieces);
  tcase_add_test(tc, patterns_by_exact_string);
  tcase_add_test(tc, api_refuses_null);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
