/* The library's one random generator: xoshiro256** seeded through splitmix64, for
 * parameter initialisation and sampling (the same seed, the same numbers everywhere). */
#ifndef ASINK_CORE_RNG_H
#define ASINK_CORE_RNG_H

#include <stdint.h>

typedef struct {
  uint64_t s[4];
} asink_rng;

static inline uint64_t asink_splitmix64(uint64_t *x) {
  uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static inline asink_rng asink_rng_seed(uint64_t seed) {
  asink_rng r;
  for (int i = 0; i < 4; i++) r.s[i] = asink_splitmix64(&seed);
  return r;
}

static inline uint64_t asink_rng_next(asink_rng *r) { /* xoshiro256** */
  uint64_t *s = r->s, res = ((s[1] * 5) << 7 | (s[1] * 5) >> 57) * 9, t = s[1] << 17;
  s[2] ^= s[0], s[3] ^= s[1], s[1] ^= s[2], s[0] ^= s[3], s[2] ^= t;
  s[3] = (s[3] << 45) | (s[3] >> 19);
  return res;
}

/* uniform in [0, 1), 53 bits */
static inline double asink_rng_uniform(asink_rng *r) { return (double)(asink_rng_next(r) >> 11) * 0x1.0p-53; }

#endif
