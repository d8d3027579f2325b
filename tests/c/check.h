/* check.h - the expectation macro and pass/fail counters shared by the C tests.
 * CHECK(cond, fmt, ...) counts a pass or prints "FAIL file:line: message"; each test's main()
 * ends with `return check_finish();`, which prints "N passed, N failed" (the closing line ctest
 * logs show) and gives the exit status. check_tmpdir makes a test's temporary folder and
 * check_rmtree removes it with what it holds.
 */
#ifndef CF_TEST_CHECK_H
#define CF_TEST_CHECK_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* A new folder "<$TMPDIR, else /tmp>/<prefix>XXXXXX" (mkdtemp) in buf of n bytes: buf, or NULL
 * (the name too long, or mkdtemp failed: errno says why). */
static inline char *check_tmpdir(char *buf, size_t n, const char *prefix) {
  const char *t = getenv("TMPDIR");
  int len = snprintf(buf, n, "%s/%sXXXXXX", t && *t ? t : "/tmp", prefix);
  return len > 0 && (size_t)len < n ? mkdtemp(buf) : NULL;
}

/* rm -rf dir (a folder check_tmpdir made: no quote in its name); a warning when it stays. */
static inline void check_rmtree(const char *dir) {
  size_t n = strlen(dir) + 16;
  char *cmd = (char *)malloc(n);
  if (cmd) snprintf(cmd, n, "rm -rf '%s'", dir);
  if (!cmd || system(cmd) != 0) printf("warning: could not remove %s\n", dir);
  free(cmd);
}

#endif
