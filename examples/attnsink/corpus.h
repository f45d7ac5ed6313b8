/* The training text: a file of bytes, split by position into a training part
 * (the first 95%) and a validation part (the rest), and the windows cut from it.
 * Bytes are the tokens; with a BOS id every window is BOS + (T - 1) bytes, as the
 * study's "same token first" setting. */
#ifndef ATTNSINK_CLI_CORPUS_H
#define ATTNSINK_CLI_CORPUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
  char *path;
  const unsigned char *data; /* the file mapped read-only */
  size_t n, n_train;         /* validation: data + n_train, n - n_train bytes */
  uint64_t hash;             /* FNV-1a of the bytes: a resumed run checks it sees the same text */
  bool mapped;
} corpus;

/* Maps path (a regular file; devices and FIFOs are refused) read-only, so a
 * corpus larger than memory works: only the windows drawn are paged in. The file
 * must not be truncated while it is in use. -1 after one error line (CLI_INPUT is
 * the caller's status). */
int corpus_load(corpus *c, const char *path);
void corpus_free(corpus *c);

/* Bytes a window of T tokens consumes: the inputs and, shifted by one, the targets. */
size_t corpus_window_bytes(int T, int bos);

/* Checks that both parts hold at least one window of T tokens. -1 after one
 * error line naming the sizes. */
int corpus_check(const corpus *c, int T, int bos);

/* The data-order generator: xoshiro256**, seeded by splitmix64. Its whole state
 * is four words so a checkpoint can carry it and a resumed run draws the same
 * batches. */
typedef struct {
  uint64_t s[4];
} cli_rng;
void rng_seed(cli_rng *r, uint64_t seed);
uint64_t rng_next(cli_rng *r);
/* Uniform in [0, n). */
uint64_t rng_below(cli_rng *r, uint64_t n);

/* Fills tokens and targets (B, T) with B windows at random positions of the
 * training part. bos < 0: no BOS. */
void corpus_batch(const corpus *c, cli_rng *r, int B, int T, int bos, int32_t *tokens, int32_t *targets);

/* Up to max windows of T tokens evenly spread over the validation part, with
 * their targets. Returns the count (at least 1 after corpus_check). */
int corpus_val_windows(const corpus *c, int T, int bos, int max, int32_t **tokens, int32_t **targets);

/* Consecutive non-overlapping windows from the start of ids (n tokens): up to
 * max windows of T tokens, each BOS + (T - 1) ids when bos >= 0. Returns the
 * count; *out is malloc'd (count, T). */
int cut_windows(const int32_t *ids, size_t n, int T, int bos, int max, int32_t **out);

/* The same from bytes. */
int cut_byte_windows(const unsigned char *bytes, size_t n, int T, int bos, int max, int32_t **out);

#endif
