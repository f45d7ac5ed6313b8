/* The CPU's arithmetic peak beside the sgemm roof, measured in the same run.
 *   bench_peak [--threads N] [--iters I] [--reps R]
 *
 * Each of N threads (started together at a barrier) runs a loop of independent
 * multiply-add chains held in registers, with no loads or stores, I iterations; the time
 * is from the first thread's start until the last one ends, best of R. The chains are more than
 * enough to cover the instruction's latency on both of its ports, so the loop runs at the
 * instruction's throughput: the most this CPU can do at these threads.
 *   fp32_fma  vfmadd231ps: ymm (AVX2 + FMA; 12 chains), and zmm (AVX-512; 16 chains) where
 *             the CPU has it. A lane's FMA is 2 flops: 16 per ymm, 32 per zmm instruction.
 *   bf16_dot  vdpbf16ps zmm (AVX-512 BF16; 16 chains): each fp32 lane adds two bf16
 *             products, 4 flops: 64 per instruction.
 * The levels come from the library's CPU detection (core/runtime.c: the same AVX-512 the
 * library runs) and __builtin_cpu_supports("avx512bf16"); ASINK_SIMD does not lower them,
 * since this measures the CPU, not the library. A level the CPU lacks gets a row with
 * "available": false and the note "unavailable on this CPU", never a number.
 * Then sgemm_roof: BLIS sgemm 1024^3 at N threads (bench_sgemm_roof, best of 5) with its
 * fraction of the best fp32 peak above. */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_args.h"
#include "bench_common.h"
#include "core/runtime.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define PEAK_X86 1
#else
#define PEAK_X86 0
#endif

/* The loops return a sum of their chains so that the compiler keeps every FMA. */
typedef float (*peak_loop)(long iters);

#if PEAK_X86
/* The chains, named apart (an array would go through memory), each started at its own
 * value: chains that start equal are one chain to the compiler, which would fold them.
 * CHAINSn(op, ...) applies op(chain, index, ...) to each. */
#define CHAINS12(op, ...)                                                                       \
  op(a0, 0, __VA_ARGS__) op(a1, 1, __VA_ARGS__) op(a2, 2, __VA_ARGS__) op(a3, 3, __VA_ARGS__)   \
      op(a4, 4, __VA_ARGS__) op(a5, 5, __VA_ARGS__) op(a6, 6, __VA_ARGS__)                      \
          op(a7, 7, __VA_ARGS__) op(a8, 8, __VA_ARGS__) op(a9, 9, __VA_ARGS__)                  \
              op(a10, 10, __VA_ARGS__) op(a11, 11, __VA_ARGS__)
#define CHAINS16(op, ...)                                                                       \
  CHAINS12(op, __VA_ARGS__) op(a12, 12, __VA_ARGS__) op(a13, 13, __VA_ARGS__)                   \
      op(a14, 14, __VA_ARGS__) op(a15, 15, __VA_ARGS__)
/* An empty asm that might have changed every chain: no instruction, but the compiler can
 * neither merge chains nor move work out of the loop. */
#define OPAQUE12                                                                                \
  __asm__("" : "+v"(a0), "+v"(a1), "+v"(a2), "+v"(a3), "+v"(a4), "+v"(a5), "+v"(a6), "+v"(a7), \
          "+v"(a8), "+v"(a9), "+v"(a10), "+v"(a11))
#define OPAQUE16 OPAQUE12; __asm__("" : "+v"(a12), "+v"(a13), "+v"(a14), "+v"(a15))

#define CHAIN_DECLARE(a, i, VEC, INIT, STEP, LANE0) VEC a = INIT(i);
#define CHAIN_STEP(a, i, VEC, INIT, STEP, LANE0) a = STEP(a);
#define CHAIN_LANE0(a, i, VEC, INIT, STEP, LANE0) +LANE0(a)
/* float NAME(long iters): the chains of vectors VEC, chain i started at INIT(i), each
 * replaced by STEP(chain) once an iteration; returns the sum of their first lanes. */
#define PEAK_LOOP(NAME, TARGET, CHAINS, OPAQUE, VEC, INIT, STEP, LANE0)                         \
  __attribute__((target(TARGET))) static float NAME(long iters) {                               \
    CHAINS(CHAIN_DECLARE, VEC, INIT, STEP, LANE0)                                               \
    for (long it = 0; it < iters; it++) {                                                       \
      CHAINS(CHAIN_STEP, VEC, INIT, STEP, LANE0)                                                \
      OPAQUE;                                                                                   \
    }                                                                                           \
    return 0.f CHAINS(CHAIN_LANE0, VEC, INIT, STEP, LANE0);                                     \
  }

/* acc = acc * m + c: m just under 1 keeps every chain near c / (1 - m), never denormal. */
#define YMM_INIT(i) _mm256_set1_ps(0.5f + 0.01f * (i))
#define YMM_FMA(a) _mm256_fmadd_ps(a, _mm256_set1_ps(0.999999f), _mm256_set1_ps(1e-6f))
PEAK_LOOP(loop_fma_ymm, "avx2,fma", CHAINS12, OPAQUE12, __m256, YMM_INIT, YMM_FMA, _mm256_cvtss_f32)
#define ZMM_INIT(i) _mm512_set1_ps(0.5f + 0.01f * (i))
#define ZMM_FMA(a) _mm512_fmadd_ps(a, _mm512_set1_ps(0.999999f), _mm512_set1_ps(1e-6f))
PEAK_LOOP(loop_fma_zmm, "avx512f", CHAINS16, OPAQUE16, __m512, ZMM_INIT, ZMM_FMA, _mm512_cvtss_f32)
/* acc += x . y over bf16 pairs, x = y = 2^-10 (0x3a80): each chain grows by 2^-19 a step,
 * so it stays a normal float far below overflow for any --iters. */
#define BF16_INIT(i) _mm512_set1_ps(0.01f * (i))
#define BF16_X ((__m512bh)_mm512_set1_epi16(0x3a80))
#define BF16_DOT(a) _mm512_dpbf16_ps(a, BF16_X, BF16_X)
PEAK_LOOP(loop_dpbf16_zmm, "avx512f,avx512bf16", CHAINS16, OPAQUE16, __m512, BF16_INIT, BF16_DOT,
          _mm512_cvtss_f32)
#endif

typedef struct {
  const char *kind, *isa, *instruction;
  peak_loop loop;
  double flops_per_iter; /* instructions per iteration x flops per instruction */
  int flops_per_instruction;
  bool available;
} peak_case;

typedef struct {
  pthread_barrier_t *start;
  peak_loop loop;
  long iters;
  double begin, end;
  float result;
} peak_worker;

static void *run_worker(void *p) {
  peak_worker *w = p;
  pthread_barrier_wait(w->start);
  w->begin = bench_now();
  w->result = w->loop(w->iters);
  w->end = bench_now();
  return NULL;
}

static volatile float keep; /* the loops' results, so that none is optimised away */

/* Seconds from the first thread's start until the last of `threads` threads has run the
 * loop. Each thread reads the clock itself: on a busy machine the main thread may wake
 * from the barrier after a worker has finished. */
static double time_threads(peak_loop loop, long iters, int threads) {
  pthread_barrier_t start;
  pthread_barrier_init(&start, NULL, (unsigned)threads + 1);
  peak_worker *w = calloc((size_t)threads, sizeof *w);
  pthread_t *tid = calloc((size_t)threads, sizeof *tid);
  if (!w || !tid) {
    fprintf(stderr, "bench_peak: out of memory\n");
    exit(1);
  }
  for (int t = 0; t < threads; t++) {
    w[t] = (peak_worker){&start, loop, iters, 0, 0, 0};
    if (pthread_create(&tid[t], NULL, run_worker, &w[t])) {
      /* the started ones wait at the barrier for good: leave at once */
      fprintf(stderr, "bench_peak: could not start thread %d of %d\n", t + 1, threads);
      exit(1);
    }
  }
  pthread_barrier_wait(&start);
  double first = 1e300, last = 0;
  for (int t = 0; t < threads; t++) {
    pthread_join(tid[t], NULL);
    if (w[t].begin < first) first = w[t].begin;
    if (w[t].end > last) last = w[t].end;
    keep += w[t].result;
  }
  pthread_barrier_destroy(&start);
  free(w), free(tid);
  return last - first;
}

int main(int argc, char **argv) {
  int threads = 0, iters = 100000000, reps = 5;
  const bench_arg args[] = {
      {"--threads", "N", BENCH_ARG_INT, &threads, 0, 1024, "threads; 0: the library's default"},
      {"--iters", "I", BENCH_ARG_INT, &iters, 1, 0, "loop iterations per thread and run"},
      {"--reps", "R", BENCH_ARG_INT, &reps, 1, 1000, "runs of each loop; the best counts"},
  };
  int rc = bench_args_parse(argc, argv,
                            "The CPU's fp32 FMA and bf16 dot-product peaks (register-only loops "
                            "at the best SIMD width),\nthen the BLIS sgemm 1024^3 roof and its "
                            "fraction of the fp32 peak: one JSON line each on stdout.",
                            args, BENCH_NARGS(args));
  if (rc != BENCH_ARGS_GO) return rc;
  if ((threads = bench_init(threads)) < 0) return 2;

  peak_case cases[] = {
      {"fp32_fma", "avx2", "vfmadd231ps ymm", NULL, 12 * 16.0, 16, false},
      {"fp32_fma", "avx512", "vfmadd231ps zmm", NULL, 16 * 32.0, 32, false},
      {"bf16_dot", "avx512_bf16", "vdpbf16ps zmm", NULL, 16 * 64.0, 64, false},
  };
  enum { NCASES = sizeof cases / sizeof *cases };
#if PEAK_X86
  asink_isa isa = asink_cpu_best_isa();
  __builtin_cpu_init();
  cases[0].loop = loop_fma_ymm, cases[0].available = isa >= ASINK_ISA_AVX2;
  cases[1].loop = loop_fma_zmm, cases[1].available = isa >= ASINK_ISA_AVX512;
  cases[2].loop = loop_dpbf16_zmm;
  cases[2].available = isa >= ASINK_ISA_AVX512 && __builtin_cpu_supports("avx512bf16");
#endif

  double best[NCASES];
  for (int c = 0; c < NCASES; c++) best[c] = 1e30;
  /* the levels take turns rep by rep, so that the machine's drift touches them alike */
  for (int r = -1; r < reps; r++)
    for (int c = 0; c < NCASES; c++) {
      if (!cases[c].available) continue;
      /* r = -1: a short warm-up that brings the cores to the level's clock */
      double dt = time_threads(cases[c].loop, r < 0 ? (iters + 9) / 10 : iters, threads);
      if (r >= 0 && dt < best[c]) best[c] = dt;
    }

  double fp32_peak = 0;
  const char *fp32_isa = NULL;
  for (int c = 0; c < NCASES; c++) {
    const peak_case *k = &cases[c];
    printf("{\"bench\": \"peak\", \"kind\": \"%s\", \"isa\": \"%s\", \"instruction\": \"%s\", "
           "\"threads\": %d, \"available\": %s",
           k->kind, k->isa, k->instruction, threads, k->available ? "true" : "false");
    if (k->available) {
      double gflops = k->flops_per_iter * iters * threads / best[c] / 1e9;
      printf(", \"flops_per_instruction\": %d, \"iters\": %d, \"reps\": %d, \"seconds\": %.6f, "
             "\"gflops\": %.2f}\n",
             k->flops_per_instruction, iters, reps, best[c], gflops);
      if (!strcmp(k->kind, "fp32_fma") && gflops > fp32_peak) fp32_peak = gflops, fp32_isa = k->isa;
    } else {
      printf(", \"note\": \"unavailable on this CPU\"}\n");
    }
    fflush(stdout);
  }

  double roof = bench_sgemm_roof(threads);
  printf("{\"bench\": \"peak\", \"kind\": \"sgemm_roof\", \"threads\": %d, \"gflops\": %.2f", threads,
         roof);
  if (fp32_isa)
    printf(", \"fp32_peak_isa\": \"%s\", \"fp32_peak_gflops\": %.2f, \"fraction_of_fp32_peak\": %.3f",
           fp32_isa, fp32_peak, roof / fp32_peak);
  printf("}\n");
  return 0;
}
