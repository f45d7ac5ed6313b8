/* libFuzzer target for tokenizer.json (asink_tokenizer_load, then encode and decode). The
 * input is the file's text, optionally followed by a NUL byte and a text to encode (else a
 * fixed mixed-script text is used). Any file must either load, after which encoding and
 * decoding succeed or fail with a status and a message, or be refused with a status and a
 * message naming the problem; never a crash, a leak or undefined behaviour. The file is
 * written into a directory made once per process, as the loader reads a directory.
 * Build: see docs/fuzzing.md. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "attnsink.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[64], path[96];

static void remove_dir(void) {
  unlink(path);
  rmdir(dir);
}

static int status_ok(asink_status s) {
  return s == ASINK_ERR_FORMAT || s == ASINK_ERR_UNSUPPORTED || s == ASINK_ERR_NOMEM || s == ASINK_ERR_ARG ||
         s == ASINK_ERR_IO;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!dir[0]) {
    snprintf(dir, sizeof dir, "%s", "/tmp/fuzz_tokenizer.XXXXXX");
    if (!mkdtemp(dir)) abort();
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    atexit(remove_dir);
  }
  const uint8_t *nul = memchr(data, 0, size);
  size_t json_len = nul ? (size_t)(nul - data) : size;
  static const char fixed[] = "Hello world, it's 2024! \xc3\xbc\xc3\xa9 \xe4\xb8\xad\xe6\x96\x87  \n\t 12345 \xf0\x9f\x98\x80";
  const char *text = nul ? (const char *)nul + 1 : fixed;
  size_t text_len = nul ? size - json_len - 1 : sizeof fixed - 1;

  FILE *f = fopen(path, "wb");
  if (!f) abort();
  if (json_len && fwrite(data, 1, json_len, f) != json_len) abort();
  if (fclose(f)) abort();

  asink_tokenizer *tok = NULL;
  asink_status s = asink_tokenizer_load(&tok, dir);
  if (s != ASINK_OK) {
    if (tok || !status_ok(s) || !asink_last_error()[0]) abort();
    return 0;
  }
  int32_t *ids = NULL;
  size_t n = 0;
  s = asink_tokenizer_encode(tok, text, text_len, &ids, &n);
  if (s == ASINK_OK) {
    int vocab = asink_tokenizer_vocab_size(tok);
    for (size_t i = 0; i < n; i++)
      if (ids[i] < 0 || ids[i] >= vocab) abort(); /* an id outside the vocabulary */
    char *back = NULL;
    size_t back_len = 0;
    asink_status d = asink_tokenizer_decode(tok, ids, n, &back, &back_len);
    if (d != ASINK_OK && d != ASINK_ERR_NOMEM) abort(); /* ids it made itself must decode */
    free(back);
  } else if (!status_ok(s) || !asink_last_error()[0]) {
    abort();
  }
  free(ids);
  (void)asink_tokenizer_kind(tok);
  (void)asink_tokenizer_bos(tok, NULL);
  asink_tokenizer_free(tok);
  return 0;
}
