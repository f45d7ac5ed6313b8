/* The BPE model: a vocabulary (token string <-> id), the merge table (pair of ids ->
 * rank and merged id) and the merge loop over one piece. */
#ifndef ASINK_TOK_BPE_H
#define ASINK_TOK_BPE_H

#include <stddef.h>
#include <stdint.h>

#include "attnsink.h"
#include "core/alloc.h"

typedef struct {
  /* id -> token: strings in one arena; strings[id] is NULL for an id nothing names */
  char **strings;
  uint32_t *lengths;
  int32_t n_ids;
  /* token -> id: open addressing, slots hold id + 1 (0: empty) */
  int32_t *slots;
  size_t n_slots;
  /* (left, right) -> merge: open addressing on the packed pair, one cache line per probe */
  struct asink_bpe_pair {
    uint64_t key; /* left << 32 | right; UINT64_MAX: empty */
    int32_t rank, merged;
  } * pairs;
  size_t n_pair_slots, n_merges;
} asink_bpe;

/* Empty model for ids [0, n_ids) (strings added with asink_bpe_add). */
asink_status asink_bpe_init(asink_bpe *b, int32_t n_ids);
void asink_bpe_free(asink_bpe *b);

/* Names id with s[0, len). ASINK_ERR_FORMAT naming what clashes (an id given twice, a
 * string given twice) or the id outside [0, n_ids). */
asink_status asink_bpe_add(asink_bpe *b, const char *s, size_t len, int32_t id, const char *source);

/* The hash the vocabulary's table uses. */
uint64_t asink_bpe_hash(const char *s, size_t len);

/* The id of s[0, len), or -1. */
int32_t asink_bpe_id(const asink_bpe *b, const char *s, size_t len);

/* Prepares the merge table for n merges (call once, before asink_bpe_add_merge). */
asink_status asink_bpe_reserve_merges(asink_bpe *b, size_t n);
/* Merge number rank: left + right -> the token left's string followed by right's.
 * ASINK_ERR_FORMAT naming the merge if a part or the result is not in the vocabulary. */
asink_status asink_bpe_add_merge(asink_bpe *b, const char *left, size_t left_len, const char *right,
                                 size_t right_len, int32_t rank, const char *source);

/* Working memory of asink_bpe_merge, grown as needed; zero-initialise, free with
 * asink_bpe_scratch_free. */
typedef struct {
  asink_ws ws;
} asink_bpe_scratch;
void asink_bpe_scratch_free(asink_bpe_scratch *sc);

/* Merges the ids in place, lowest rank first (leftmost among equals), until no pair of
 * neighbours has a merge, as GPT-2's encoder and HF's BPE do; *n becomes the new count. */
asink_status asink_bpe_merge(const asink_bpe *b, int32_t *ids, size_t *n, asink_bpe_scratch *sc);

#endif
