/* One-time start-up: SIMD table from CPUID, GEMM driver, thread count, settings.
 *
 * The library never writes the process environment (setenv is unsafe while other
 * threads read it, and BLIS_ARCH_TYPE would change the host's own BLIS): its GEMMs
 * run the SIMD table's micro-kernel, chosen from CPUID like the rest of the table, so
 * BLIS's own choice of kernels (from its CPU detection, which falls back to slower
 * kernels on CPUs newer than it knows) matters only where BLIS runs (the scalar level,
 * ASINK_GEMM=blis). A BLIS_ARCH_TYPE the user set is validated, because BLIS aborts
 * the process on one it cannot run. */
#include "core/runtime.h"

#include <blis.h>
#include <omp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"
#include "kernels/kernels.h"

static pthread_once_t once = PTHREAD_ONCE_INIT;
static asink_status init_status = ASINK_OK;
static char init_error[512];
/* Written once under pthread_once, read-only after; the thread count may change at any
 * time from any thread, so it is atomic. */
static const asink_kernels *kern = &asink_kernels_scalar;
static _Atomic int num_threads = 1;
static char blis_choice[160];
static asink_settings settings = {256, true, ASINK_GEMM_AUTO, true};

asink_isa asink_cpu_best_isa(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl"))
    return ASINK_ISA_AVX512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return ASINK_ISA_AVX2;
#endif
  return ASINK_ISA_SCALAR;
}

bool asink_cpu_has_avx512bf16(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  return asink_cpu_best_isa() == ASINK_ISA_AVX512 && __builtin_cpu_supports("avx512bf16");
#else
  return false;
#endif
}

static const asink_kernels *table_for(asink_isa isa) {
  /* the AVX-512 level's table with the bf16 pair kernel only where the CPU can run it */
  if (isa == ASINK_ISA_AVX512 && asink_kernels_avx512bf16_table && settings.bf16_kernel &&
      asink_cpu_has_avx512bf16())
    return asink_kernels_avx512bf16_table;
  if (isa == ASINK_ISA_AVX512 && asink_kernels_avx512_table) return asink_kernels_avx512_table;
  if (isa >= ASINK_ISA_AVX2 && asink_kernels_avx2_table) return asink_kernels_avx2_table;
  return &asink_kernels_scalar;
}

static asink_status choose_simd(void) {
  asink_isa best = asink_cpu_best_isa();
  const char *want = getenv("ASINK_SIMD");
  if (!want || !*want || !strcmp(want, "auto")) {
    kern = table_for(best);
    return ASINK_OK;
  }
  asink_isa req;
  if (!strcmp(want, "scalar")) req = ASINK_ISA_SCALAR;
  else if (!strcmp(want, "avx2")) req = ASINK_ISA_AVX2;
  else if (!strcmp(want, "avx512")) req = ASINK_ISA_AVX512;
  else
    return asink_fail(ASINK_ERR_ARG, "ASINK_SIMD=%s: expected scalar, avx2, avx512 or auto", want);
  if (req > best)
    return asink_fail(ASINK_ERR_UNSUPPORTED, "ASINK_SIMD=%s: this CPU lacks %s", want, want);
  const asink_kernels *t = table_for(req);
  if (strcmp(t->name, want) != 0)
    return asink_fail(ASINK_ERR_UNSUPPORTED, "ASINK_SIMD=%s: this build has no %s kernels", want,
                      want);
  kern = t;
  return ASINK_OK;
}

/* The sub-configurations BLIS's x86_64 family carries (Debian's build, and upstream's
 * "x86_64" configuration): a user's BLIS_ARCH_TYPE naming any other makes BLIS abort the
 * process at its first call, so it is refused here instead. */
static bool blis_arch_available(const char *name) {
#if defined(__x86_64__)
  static const char *const x86_64[] = {"skx",        "knl",         "haswell",  "sandybridge",
                                       "penryn",     "zen3",        "zen2",     "zen",
                                       "excavator",  "steamroller", "piledriver", "bulldozer",
                                       "generic"};
  for (size_t i = 0; i < sizeof x86_64 / sizeof x86_64[0]; i++)
    if (!strcmp(name, x86_64[i])) return true;
  return false;
#else
  (void)name;
  return true;
#endif
}

static asink_status choose_blis(void) {
  const char *user = getenv("BLIS_ARCH_TYPE");
  const char *how;
  if (user && *user) {
    char *end;
    long id = strtol(user, &end, 10);
    if (*end || id < 0 || id >= (long)BLIS_NUM_ARCHS)
      return asink_fail(ASINK_ERR_ARG,
                        "BLIS_ARCH_TYPE=%s is not a BLIS sub-configuration index (0..%d); "
                        "BLIS would abort on it",
                        user, (int)BLIS_NUM_ARCHS - 1);
    const char *name = bli_arch_string((arch_t)id);
    if (!blis_arch_available(name))
      return asink_fail(ASINK_ERR_UNSUPPORTED,
                        "BLIS_ARCH_TYPE=%s names '%s', for which this BLIS has no kernels; "
                        "BLIS would abort on it",
                        user, name);
    /* kernels for an instruction set this CPU lacks would stop the process at the first GEMM */
    asink_isa need = !strcmp(name, "skx") || !strcmp(name, "knl") ? ASINK_ISA_AVX512
                     : !strcmp(name, "haswell") || !strncmp(name, "zen", 3) ? ASINK_ISA_AVX2
                                                                            : ASINK_ISA_SCALAR;
    if (need > asink_cpu_best_isa())
      return asink_fail(ASINK_ERR_UNSUPPORTED,
                        "BLIS_ARCH_TYPE=%s names '%s', whose kernels need %s, which this CPU lacks",
                        user, name, need == ASINK_ISA_AVX512 ? "AVX-512" : "AVX2 and FMA");
    how = "BLIS_ARCH_TYPE set by the user";
  } else {
    how = "BLIS's own detection";
  }
  bli_init();
  arch_t got = bli_arch_query_id();
  snprintf(blis_choice, sizeof blis_choice, "%s (%s)", bli_arch_string(got), how);
  return ASINK_OK;
}

static asink_status threads_from_env(void) {
  const char *s = getenv("ASINK_NUM_THREADS");
  if (s && *s) {
    char *end;
    long n = strtol(s, &end, 10);
    if (*end || n < 1 || n > 1024)
      return asink_fail(ASINK_ERR_ARG, "ASINK_NUM_THREADS=%s: expected a thread count from 1 to 1024", s);
    num_threads = (int)n;
    return ASINK_OK;
  }
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  num_threads = n >= 1 ? (int)(n > 1024 ? 1024 : n) : 1;
  return ASINK_OK;
}

static asink_status settings_from_env(void) {
  const char *s = getenv("ASINK_SLICE_TOKENS");
  if (s && *s) {
    char *end;
    long n = strtol(s, &end, 10);
    if (*end || n < 1 || n > (1 << 24))
      return asink_fail(ASINK_ERR_ARG, "ASINK_SLICE_TOKENS=%s: expected a token count from 1 to %d", s, 1 << 24);
    settings.slice_tokens = (int)n;
  }
  s = getenv("ASINK_REPLICAS");
  settings.slices = !(s && !strcmp(s, "0"));
  s = getenv("ASINK_GEMM");
  if (!s || !*s || !strcmp(s, "auto")) settings.gemm = ASINK_GEMM_AUTO;
  else if (!strcmp(s, "blis")) settings.gemm = ASINK_GEMM_BLIS;
  else if (!strcmp(s, "packed")) settings.gemm = ASINK_GEMM_PACKED;
  else return asink_fail(ASINK_ERR_ARG, "ASINK_GEMM=%s: expected auto, packed or blis", s);
  s = getenv("ASINK_BF16_KERNEL");
  if (!s || !*s || !strcmp(s, "auto") || !strcmp(s, "1")) settings.bf16_kernel = true;
  else if (!strcmp(s, "0")) settings.bf16_kernel = false;
  else return asink_fail(ASINK_ERR_ARG, "ASINK_BF16_KERNEL=%s: expected 0, 1 or auto", s);
  return ASINK_OK;
}

static void init_once(void) {
  asink_status s = threads_from_env();
  if (s == ASINK_OK) s = settings_from_env();
  if (s == ASINK_OK) s = choose_simd();
  /* without SIMD kernels of our own, BLIS's (hand-written for the CPUs it knows) run */
  if (s == ASINK_OK && settings.gemm == ASINK_GEMM_AUTO)
    settings.gemm = kern == &asink_kernels_scalar ? ASINK_GEMM_BLIS : ASINK_GEMM_PACKED;
  if (s == ASINK_OK) s = choose_blis();
  init_status = s;
  if (s != ASINK_OK) snprintf(init_error, sizeof init_error, "%s", asink_last_error());
}

asink_status asink_init(void) {
  pthread_once(&once, init_once);
  if (init_status != ASINK_OK) return asink_fail(init_status, "%s", init_error);
  return ASINK_OK;
}

asink_status asink_runtime_ready(void) { return asink_init(); }

const asink_kernels *asink_kern(void) {
  pthread_once(&once, init_once);
  return kern;
}

int asink_region_threads(void) { return omp_in_parallel() ? 1 : asink_get_num_threads(); }

const asink_settings *asink_get_settings(void) {
  pthread_once(&once, init_once);
  return &settings;
}

const char *asink_simd_level(void) { return asink_kern()->name; }

asink_status asink_set_num_threads(int n) {
  pthread_once(&once, init_once);
  if (n < 1 || n > 1024)
    return asink_fail(ASINK_ERR_ARG, "thread count %d must be between 1 and 1024", n);
  num_threads = n;
  return ASINK_OK;
}

int asink_get_num_threads(void) {
  pthread_once(&once, init_once);
  return num_threads;
}

const char *asink_runtime_info(void) {
  static _Thread_local char info_line[512]; /* one per thread: callers may race */
  asink_status s = asink_init();
  if (s != ASINK_OK) {
    snprintf(info_line, sizeof info_line, "libattnsink %s: not initialised: %s", asink_version(),
             init_error);
    return info_line;
  }
  char gemm[32] = "blis";
  if (settings.gemm == ASINK_GEMM_PACKED)
    snprintf(gemm, sizeof gemm, "%s-%zux%zu", kern->name, kern->gemm.mr, kern->gemm.nr);
  char pairs[48] = "";
  if (kern->gemm_bf16)
    snprintf(pairs, sizeof pairs, " gemm_bf16=dpbf16-%zux%zu", kern->gemm_bf16->mr,
             kern->gemm_bf16->nr);
  snprintf(info_line, sizeof info_line,
           "libattnsink %s simd=%s gemm=%s%s blis=%s blis_version=%s threads=%d", asink_version(),
           kern->name, gemm, pairs, blis_choice, bli_info_get_version_str(), num_threads);
  return info_line;
}

const char *asink_version(void) { return ASINK_VERSION_STRING; }
int asink_version_number(void) { return ASINK_VERSION_NUMBER; }
