/* error.c - thread-local error message storage (see error.h). */
#include "error.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local char cf_msg[2048];
static _Thread_local char cf_where[128];

/* CONFIT_DEBUG set (and not "0"): messages keep the C file and line in front, as they all did
 * before the twenty-third session (users read "generate.c:515: generate: ..." as noise) */
static int positions(void) {
  static int on = -1;
  if (on < 0) {
    const char *e = getenv("CONFIT_DEBUG");
    on = e && e[0] && strcmp(e, "0") != 0;
  }
  return on;
}

int cf_error_set(const char *file, int line, const char *fmt, ...) {
  const char *base = strrchr(file, '/');
  base = base ? base + 1 : file;
  snprintf(cf_where, sizeof cf_where, "%s:%d", base, line);
  int n = positions() ? snprintf(cf_msg, sizeof cf_msg, "%s: ", cf_where) : 0;
  if (n < 0 || (size_t)n >= sizeof cf_msg) n = 0;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cf_msg + n, sizeof cf_msg - (size_t)n, fmt, ap);
  va_end(ap);
  return -1;
}

int cf_error_prefix(const char *fmt, ...) {
  char old[sizeof cf_msg];
  memcpy(old, cf_msg, sizeof old);
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(cf_msg, sizeof cf_msg, fmt, ap);
  va_end(ap);
  if (n < 0) n = 0;
  if ((size_t)n < sizeof cf_msg) snprintf(cf_msg + n, sizeof cf_msg - (size_t)n, "%s", old);
  return -1;
}

const char *cf_error_message(void) { return cf_msg[0] ? cf_msg : "unknown error"; }
const char *cf_error_where(void) { return cf_where; }
void cf_error_clear(void) { cf_msg[0] = 0; cf_where[0] = 0; }
