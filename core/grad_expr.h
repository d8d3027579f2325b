/* grad_expr.h - a tiny scope for writing backward rules as formulas over table ops.
 *
 * Backward rules compose ops (cf_op...) so they run on whatever device has the forward kernels.
 * Each intermediate is owned by a cf_gx scope and released by gx_end(); a NULL input (an
 * earlier op failed, its message is already set) makes every later op return NULL, so a rule
 * is written straight through and checks once at the end:
 *
 *   cf_gx s = {0};
 *   cf_tensor *y = gx_op2(&s, CF_OP_mul, gout, n->in[1]);
 *   gin[0] = gx_result(&s, y);      // a new reference for the engine
 *   return gx_end(&s);              // -1 when anything failed
 *
 * On failure the engine releases whatever gin[] already holds.
 */
#ifndef CF_GRAD_EXPR_H
#define CF_GRAD_EXPR_H

#include "autograd.h"
#include "error.h"
#include "ops.h"

#define CF_GX_MAX 32

typedef struct cf_gx {
  cf_tensor *tmp[CF_GX_MAX];
  int n;
  bool failed;
} cf_gx;

static inline cf_tensor *gx_keep(cf_gx *s, cf_tensor *t) {
  if (!t) { s->failed = true; return NULL; }
  if (s->n == CF_GX_MAX) {
    cf_tensor_release(t);
    s->failed = true;
    CF_ERR("backward: too many temporaries in one rule (%d)", CF_GX_MAX);
    return NULL;
  }
  s->tmp[s->n++] = t;
  return t;
}

static inline cf_tensor *gx_op1(cf_gx *s, cf_op_id id, cf_tensor *a) {
  if (!a) { s->failed = true; return NULL; }
  return gx_keep(s, cf_op1(id, a));
}

static inline cf_tensor *gx_op2(cf_gx *s, cf_op_id id, cf_tensor *a, cf_tensor *b) {
  if (!a || !b) { s->failed = true; return NULL; }
  return gx_keep(s, cf_op2(id, a, b));
}

/* a <op> v for a number v (add/sub/mul/div/pow) */
static inline cf_tensor *gx_num(cf_gx *s, cf_op_id id, cf_tensor *a, double v) {
  if (!a) { s->failed = true; return NULL; }
  return gx_keep(s, cf_op_scalar(id, a, v));
}

/* A 0-d tensor holding v with like's dtype and device. */
static inline cf_tensor *gx_const(cf_gx *s, cf_tensor *like, double v) {
  if (!like) { s->failed = true; return NULL; }
  cf_tensor *c = cf_tensor_scalar(v, like->dtype);
  if (c && cf_tensor_device(like) != CF_DEVICE_CPU) {
    cf_tensor *d = cf_tensor_to_device(c, cf_tensor_device(like));
    cf_tensor_release(c);
    c = d;
  }
  return gx_keep(s, c);
}

/* where(cond, a, b), broadcasting; cond nonzero = true */
static inline cf_tensor *gx_where(cf_gx *s, cf_tensor *c, cf_tensor *a, cf_tensor *b) {
  if (!c || !a || !b) { s->failed = true; return NULL; }
  cf_tensor *in[3] = {c, a, b};
  return gx_keep(s, cf_op(CF_OP_where, in, 3, NULL));
}

/* reduction over dim (CF_DIM_ALL for all) with keepdim */
static inline cf_tensor *gx_dim(cf_gx *s, cf_op_id id, cf_tensor *a, int dim, bool keepdim) {
  if (!a) { s->failed = true; return NULL; }
  return gx_keep(s, cf_op_dim(id, a, dim, keepdim));
}

/* A new reference to t for gin[] (NULL when t is NULL). */
static inline cf_tensor *gx_result(cf_gx *s, cf_tensor *t) {
  if (!t) { s->failed = true; return NULL; }
  cf_tensor_retain(t);
  return t;
}

static inline int gx_end(cf_gx *s) {
  for (int k = 0; k < s->n; k++) cf_tensor_release(s->tmp[k]);
  s->n = 0;
  return s->failed ? -1 : 0;
}

#endif
