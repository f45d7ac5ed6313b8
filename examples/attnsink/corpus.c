#include "corpus.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "errors.h"
#include "files.h"

int corpus_load(corpus *c, const char *path) {
  memset(c, 0, sizeof *c);
  struct stat sb;
  int fd = open_regular(path, &sb);
  if (fd < 0) {
    cli_error("corpus %s: cannot read: %s", path, read_error());
    return -1;
  }
  c->n = (size_t)sb.st_size;
  if (c->n > 0) {
    /* mapped, not read: a corpus larger than memory is paged in as windows are drawn */
    void *map = mmap(NULL, c->n, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
      int e = errno;
      close(fd);
      cli_error("corpus %s: cannot map its %zu bytes: %s", path, c->n, strerror(e));
      memset(c, 0, sizeof *c);
      return -1;
    }
    c->data = map;
    c->mapped = true;
  } else {
    static unsigned char empty[1];
    c->data = empty;
  }
  close(fd);
  c->path = xstrdup(path);
  /* integer arithmetic, so the split is the same on every machine */
  c->n_train = (size_t)((unsigned __int128)c->n * 95 / 100);
  if (c->mapped) madvise((void *)c->data, c->n, MADV_SEQUENTIAL);
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < c->n; i++) h = (h ^ c->data[i]) * 1099511628211ull;
  c->hash = h;
  if (c->mapped) madvise((void *)c->data, c->n, MADV_RANDOM);
  return 0;
}

void corpus_free(corpus *c) {
  if (c->mapped) munmap((void *)c->data, c->n);
  free(c->path);
  memset(c, 0, sizeof *c);
}

size_t corpus_window_bytes(int T, int bos) { return (size_t)T + (bos >= 0 ? 0 : 1); }

int corpus_check(const corpus *c, int T, int bos) {
  size_t need = corpus_window_bytes(T, bos), n_val = c->n - c->n_train;
  if (c->n_train >= need && n_val >= need) return 0;
  /* the smallest file whose 5% validation part still holds one window */
  size_t min = need;
  while (min - (size_t)((unsigned __int128)min * 95 / 100) < need) min++;
  cli_error(
      "corpus %s: %zu bytes is too short for a context of %d: its training (95%%) and "
      "validation (5%%) parts must each hold %zu bytes, so at least %zu bytes are needed",
      c->path, c->n, T, need, min);
  return -1;
}

static uint64_t splitmix(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

void rng_seed(cli_rng *r, uint64_t seed) {
  for (int i = 0; i < 4; i++) r->s[i] = splitmix(&seed);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t rng_next(cli_rng *r) {
  uint64_t *s = r->s, out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return out;
}

/* Multiply-shift: the bias for n far below 2^64 is negligible, and it needs no loop,
 * so every batch consumes exactly B draws. */
uint64_t rng_below(cli_rng *r, uint64_t n) { return (uint64_t)(((unsigned __int128)rng_next(r) * n) >> 64); }

/* One window starting at bytes[0]: inputs and the next-byte targets. */
static void fill_window(const unsigned char *bytes, int T, int bos, int32_t *tok, int32_t *tgt) {
  if (bos >= 0) {
    tok[0] = bos;
    for (int t = 1; t < T; t++) tok[t] = bytes[t - 1];
    for (int t = 0; t < T; t++) tgt[t] = bytes[t];
  } else {
    for (int t = 0; t < T; t++) tok[t] = bytes[t], tgt[t] = bytes[t + 1];
  }
}

void corpus_batch(const corpus *c, cli_rng *r, int B, int T, int bos, int32_t *tokens, int32_t *targets) {
  size_t span = c->n_train - corpus_window_bytes(T, bos) + 1;
  for (int b = 0; b < B; b++) {
    size_t at = (size_t)rng_below(r, span);
    fill_window(c->data + at, T, bos, tokens + (size_t)b * T, targets + (size_t)b * T);
  }
}

int corpus_val_windows(const corpus *c, int T, int bos, int max, int32_t **tokens, int32_t **targets) {
  size_t need = corpus_window_bytes(T, bos), n_val = c->n - c->n_train;
  size_t fit = n_val / need;
  int count = fit < (size_t)max ? (int)fit : max;
  if (count < 1) count = 1;
  *tokens = xmalloc(sizeof(int32_t) * (size_t)count * T);
  *targets = xmalloc(sizeof(int32_t) * (size_t)count * T);
  size_t span = n_val - need; /* last valid start */
  for (int i = 0; i < count; i++) {
    size_t at = count > 1 ? (size_t)((unsigned __int128)span * i / (count - 1)) : 0;
    fill_window(c->data + c->n_train + at, T, bos, *tokens + (size_t)i * T, *targets + (size_t)i * T);
  }
  return count;
}

int cut_windows(const int32_t *ids, size_t n, int T, int bos, int max, int32_t **out) {
  size_t per = (size_t)T - (bos >= 0 ? 1 : 0);
  size_t fit = per ? n / per : 0;
  int count = fit < (size_t)max ? (int)fit : max;
  *out = xmalloc(sizeof(int32_t) * ((size_t)count * T + 1));
  for (int i = 0; i < count; i++) {
    int32_t *w = *out + (size_t)i * T;
    const int32_t *src = ids + (size_t)i * per;
    if (bos >= 0) {
      w[0] = bos;
      memcpy(w + 1, src, sizeof(int32_t) * per);
    } else {
      memcpy(w, src, sizeof(int32_t) * per);
    }
  }
  return count;
}

int cut_byte_windows(const unsigned char *bytes, size_t n, int T, int bos, int max, int32_t **out) {
  size_t per = (size_t)T - (bos >= 0 ? 1 : 0);
  size_t use = per * (size_t)max < n ? per * (size_t)max : n;
  int32_t *ids = xmalloc(sizeof(int32_t) * (use + 1));
  for (size_t i = 0; i < use; i++) ids[i] = bytes[i];
  int count = cut_windows(ids, use, T, bos, max, out);
  free(ids);
  return count;
}
