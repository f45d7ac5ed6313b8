#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/wait.h>
#include <unistd.h>

#include "attnsink.h"

/* asink_init in a fresh child process with the environment variable name=value (the
 * runtime reads it once; value NULL: unset): the child exits 0 when init succeeds and
 * the runtime line contains `info` (if given), 10 + the negated status when it fails,
 * after checking that the message contains needle; 98 when the environment differs
 * after asink_init from before it (the library must not write it). A signal (BLIS
 * aborting) fails the test. */
static int init_with_env(const char *name, const char *value, const char *needle,
                         const char *info) {
  pid_t pid = fork();
  ck_assert(pid >= 0);
  if (pid == 0) {
    if (value) setenv(name, value, 1);
    else unsetenv(name);
    extern char **environ;
    size_t n = 0, bytes = 0;
    for (char **e = environ; *e; e++) n++, bytes += strlen(*e) + 1;
    char *before = malloc(bytes + 1), *p = before;
    for (char **e = environ; *e; e++) p = stpcpy(p, *e) + 1;
    asink_status st = asink_init();
    size_t n2 = 0;
    p = before;
    for (char **e = environ; *e; e++, n2++) {
      if (n2 >= n || strcmp(p, *e)) _exit(98);
      p += strlen(p) + 1;
    }
    if (n2 != n) _exit(98);
    if (st && needle && !strstr(asink_last_error(), needle)) _exit(99);
    if (!st && info && !strstr(asink_runtime_info(), info)) _exit(97);
    _exit(st ? 10 - st : 0);
  }
  int ws = 0;
  ck_assert(waitpid(pid, &ws, 0) == pid);
  ck_assert_msg(WIFEXITED(ws), "%s=%s: the process died of signal %d", name, value,
                WIFSIGNALED(ws) ? WTERMSIG(ws) : 0);
  ck_assert_msg(WEXITSTATUS(ws) != 99, "%s=%s: the message lacks '%s'", name, value, needle);
  ck_assert_msg(WEXITSTATUS(ws) != 98, "%s=%s: asink_init changed the environment", name, value);
  ck_assert_msg(WEXITSTATUS(ws) != 97, "%s=%s: the runtime line lacks '%s'", name, value, info);
  return WEXITSTATUS(ws);
}

static int init_with_blis_arch(const char *value, const char *needle) {
  return init_with_env("BLIS_ARCH_TYPE", value, needle, NULL);
}

/* A BLIS_ARCH_TYPE that would make BLIS abort (a sub-configuration this BLIS has no kernels
 * for, an index out of range) or run kernels this CPU cannot (skx without AVX-512) is refused
 * with a status; a usable one (generic, index 25 in BLIS 0.9) is taken. */
START_TEST(bad_blis_arch_type_is_refused_not_aborted) {
  ck_assert_int_eq(init_with_blis_arch("13", "armsve"), 10 - ASINK_ERR_UNSUPPORTED);
  ck_assert_int_eq(init_with_blis_arch("2", "knc"), 10 - ASINK_ERR_UNSUPPORTED);
  ck_assert_int_eq(init_with_blis_arch("99", "BLIS_ARCH_TYPE=99"), 10 - ASINK_ERR_ARG);
  ck_assert_int_eq(init_with_blis_arch("x", "BLIS_ARCH_TYPE=x"), 10 - ASINK_ERR_ARG);
  ck_assert_int_eq(init_with_blis_arch("25", NULL), 0);
}
END_TEST

/* Kernel selection writes nothing into the process environment: BLIS_ARCH_TYPE stays
 * unset when the user left it unset (the line then names BLIS's own detection), and a
 * value the user set stays as it was. */
START_TEST(environment_is_left_alone) {
  ck_assert_int_eq(init_with_env("BLIS_ARCH_TYPE", NULL, NULL, "BLIS's own detection"), 0);
  ck_assert_int_eq(init_with_env("BLIS_ARCH_TYPE", "25", NULL, "set by the user"), 0);
}
END_TEST

/* ASINK_GEMM picks the GEMM driver: blis, packed (the library's kernels, the scalar ones
 * too) or auto; anything else is refused naming the value. */
START_TEST(gemm_setting_is_validated_and_reported) {
  ck_assert_int_eq(init_with_env("ASINK_GEMM", "fast", "ASINK_GEMM=fast", NULL),
                   10 - ASINK_ERR_ARG);
  ck_assert_int_eq(init_with_env("ASINK_GEMM", "blis", NULL, "gemm=blis"), 0);
  ck_assert_int_eq(init_with_env("ASINK_GEMM", "auto", NULL, "gemm="), 0);
  setenv("ASINK_SIMD", "scalar", 1); /* inherited by the children */
  ck_assert_int_eq(init_with_env("ASINK_GEMM", "packed", NULL, "gemm=scalar-4x8"), 0);
  ck_assert_int_eq(init_with_env("ASINK_GEMM", NULL, NULL, "gemm=blis"), 0);
  unsetenv("ASINK_SIMD");
}
END_TEST

/* ASINK_BF16_KERNEL turns the bf16 pair kernel off (0) or leaves it to the CPU (1, auto);
 * anything else is refused naming the value. */
START_TEST(bf16_kernel_setting_is_validated) {
  ck_assert_int_eq(init_with_env("ASINK_BF16_KERNEL", "yes", "ASINK_BF16_KERNEL=yes", NULL),
                   10 - ASINK_ERR_ARG);
  ck_assert_int_eq(init_with_env("ASINK_BF16_KERNEL", "1", NULL, "gemm="), 0);
  ck_assert_int_eq(init_with_env("ASINK_BF16_KERNEL", "auto", NULL, "gemm="), 0);
  ck_assert_int_eq(init_with_env("ASINK_BF16_KERNEL", "0", NULL, "gemm="), 0);
}
END_TEST

START_TEST(version_matches_macros) {
  ck_assert_int_eq(asink_version_number(), ASINK_VERSION_NUMBER);
  char buf[32];
  snprintf(buf, sizeof buf, "%d.%d.%d", ASINK_VERSION_MAJOR, ASINK_VERSION_MINOR, ASINK_VERSION_PATCH);
  ck_assert_str_eq(asink_version(), buf);
}
END_TEST

START_TEST(status_strings_are_distinct) {
  asink_status all[] = {ASINK_OK, ASINK_ERR_ARG, ASINK_ERR_SPEC, ASINK_ERR_SHAPE, ASINK_ERR_NOMEM,
                        ASINK_ERR_STATE, ASINK_ERR_IO, ASINK_ERR_FORMAT, ASINK_ERR_UNSUPPORTED};
  int n = sizeof all / sizeof *all;
  for (int i = 0; i < n; i++)
    for (int j = i + 1; j < n; j++)
      ck_assert_str_ne(asink_status_string(all[i]), asink_status_string(all[j]));
  ck_assert_str_eq(asink_status_string((asink_status)-99), "unknown status");
}
END_TEST

START_TEST(runtime_info_names_simd_blis_threads) {
  ck_assert_int_eq(asink_init(), ASINK_OK);
  const char *info = asink_runtime_info();
  ck_assert_ptr_nonnull(strstr(info, "simd="));
  ck_assert_ptr_nonnull(strstr(info, asink_simd_level()));
  ck_assert_ptr_nonnull(strstr(info, "gemm="));
  ck_assert_ptr_nonnull(strstr(info, "blis="));
  ck_assert_ptr_nonnull(strstr(info, "threads="));
}
END_TEST

START_TEST(thread_count_setter_validates) {
  int before = asink_get_num_threads();
  ck_assert_int_ge(before, 1);
  ck_assert_int_eq(asink_set_num_threads(0), ASINK_ERR_ARG);
  ck_assert_ptr_nonnull(strstr(asink_last_error(), "0"));
  ck_assert_int_eq(asink_set_num_threads(3), ASINK_OK);
  ck_assert_int_eq(asink_get_num_threads(), 3);
  ck_assert_int_eq(asink_set_num_threads(before), ASINK_OK);
}
END_TEST

Suite *runtime_suite(void) {
  Suite *s = suite_create("runtime");
  TCase *tc = tcase_create("core");
  tcase_add_test(tc, version_matches_macros);
  tcase_add_test(tc, status_strings_are_distinct);
  tcase_add_test(tc, runtime_info_names_simd_blis_threads);
  tcase_add_test(tc, thread_count_setter_validates);
  tcase_add_test(tc, bad_blis_arch_type_is_refused_not_aborted);
  tcase_add_test(tc, environment_is_left_alone);
  tcase_add_test(tc, gemm_setting_is_validated_and_reported);
  tcase_add_test(tc, bf16_kernel_setting_is_validated);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(runtime_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
