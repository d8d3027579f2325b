/* error.c - thread-local error message storage (see error.h). */
#include "error.h"
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char cf_msg[2048];

int cf_error_set(const char *file, int line, const char *fmt, ...) {
  const char *base = strrchr(file, '/');
  base = base ? base + 1 : file;
  int n = snprintf(cf_msg, sizeof cf_msg, "%s:%d: ", base, line);
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
void cf_error_clear(void) { cf_msg[0] = 0; }
