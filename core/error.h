/* error.h - the core's error convention.
 *
 * A failing function returns -1 (or NULL) after CF_ERR(...) has stored a message in a
 * thread-local buffer and the C file and line that set it (cf_error_where; with CONFIT_DEBUG set,
 * the message starts with them too). Only lua/ turns the message into a Lua error. Nothing in
 * core/ aborts or exits.
 */
#ifndef CF_ERROR_H
#define CF_ERROR_H

#include <math.h>

int cf_error_set(const char *file, int line, const char *fmt, ...)
  __attribute__((format(printf, 3, 4)));
/* Prefix the current message with more context ("loading x.safetensors: " + old message). */
int cf_error_prefix(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *cf_error_message(void);
const char *cf_error_where(void);   /* "file.c:123" of the last CF_ERR ("" after a clear) */
void cf_error_clear(void);

/* Set the message and evaluate to -1: `return CF_ERR("matmul: inner dims differ: ...");` */
#define CF_ERR(...) cf_error_set(__FILE__, __LINE__, __VA_ARGS__)

/* A number for a message's %g: a NaN without its sign bit, which printf writes as "-nan" (0/0
 * has it on x86, -(0/0) not), so that every message says "nan" (user values that may be NaN:
 * CF_ERR("...got %g", cf_msgnum(x))). */
static inline double cf_msgnum(double x) { return isnan(x) ? copysign(x, 1.0) : x; }

#endif
