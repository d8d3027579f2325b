/* check.h - the expectation macro and pass/fail counters shared by the C tests.
 * CHECK(cond, fmt, ...) counts a pass or prints "FAIL file:line: message"; each test's main()
 * ends with `return check_finish();`, which prints "N passed, N failed" (the closing line ctest
 * logs show) and gives the exit status.
 */
#ifndef CF_TEST_CHECK_H
#define CF_TEST_CHECK_H
#include <stdio.h>

static int n_pass, n_fail;

#define CHECK(cond, ...)                          \
  do {                                            \
    if (cond) {                                   \
      n_pass++;                                   \
    } else {                                      \
      n_fail++;                                   \
      printf("FAIL %s:%d: ", __FILE__, __LINE__); \
      printf(__VA_ARGS__);                        \
      printf("\n");                               \
    }                                             \
  } while (0)

static inline int check_finish(void) {
  printf("%d passed, %d failed\n", n_pass, n_fail);
  return n_fail ? 1 : 0;
}

#endif
