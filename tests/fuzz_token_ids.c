/* libFuzzer target for the attnsink program's token-id files (--token-ids, --prompt-ids:
 * read_token_ids in examples/attnsink/probe.c, linked with the program's sources): any file
 * must either give ids inside the vocabulary, at most as many as asked for, or be refused
 * with a message, without crashing, leaking or undefined behaviour. The input reaches the
 * reader as a file (a memfd), as it does in the program. Build: see docs/fuzzing.md. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "args.h"
#include "probe.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* main.c's usage text is not linked in (it holds the program's main) */
void cli_usage(cli_cmd cmd, const cli_opts *d) {
  (void)cmd;
  (void)d;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  int fd = memfd_create("token-ids", MFD_CLOEXEC);
  if (fd < 0) return 0;
  if (size && write(fd, data, size) != (ssize_t)size) {
    close(fd);
    return 0;
  }
  char path[64];
  snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  const int vocab = 50257;
  const size_t need = 1 + (size % 97); /* the limit the caller passes varies too */
  int32_t *ids = NULL;
  size_t n = 0;
  if (read_token_ids("fuzz", "token-ids", path, vocab, need, &ids, &n) == 0) {
    if (n > need) abort();
    for (size_t i = 0; i < n; i++)
      if (ids[i] < 0 || ids[i] >= vocab) abort();
    free(ids);
  }
  close(fd);
  return 0;
}
