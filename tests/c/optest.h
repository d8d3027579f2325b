/* optest.h - the row format of the table-driven op test (test_ops.c) and helpers for writing rows.
 *
 * test_ops.c walks cf_ops[] and requires one row per op. Rows live in optest_*.inc files, each
 * defining its functions and then a row list named optest_<part>_rows, ended by {NULL}:
 *
 *   static const optest_row optest_nn_rows[] = {
 *     {"matmul", gen_matmul, ref_matmul, 0, 0, 0, 0},
 *     {NULL},
 *   };
 *
 * A row gives:
 *   op      the op's name in ops.def
 *   gen     int gen(cf_rng *g, int k, optest_case *c): build case k (k = 0..ncases-1) from g:
 *           c->nin tensor inputs in c->in (new references, NULL for an absent optional input;
 *           float inputs in f64, integer inputs i32/i64 within range, masks any dtype), the args
 *           in c->args (ops.h layout), and c->no_grad = true when this case sits on a kink or a
 *           tie where finite differences are meaningless. Vary the cases: random shapes within
 *           small bounds (keep numel small: the gradient check is O(numel^2)), some inputs
 *           non-contiguous (opt_noncontig) or broadcast (opt_expanded, shapes with 1s). Return
 *           0, or -1 when something failed (the test reports it).
 *   ref     cf_tensor *ref(const optest_case *c): the op's result computed naively in double from
 *           c's inputs with plain loops over cf_tensor_get / cf_tensor_get_flat (never by calling
 *           the op under test): a new f64 tensor (i64 for index outputs). It is called on the
 *           f64 inputs and again on the f32-rounded inputs (converted back to f64).
 *   flags   OPT_NOGRAD: no gradient check for this op (CF_NOGRAD ops are skipped anyway);
 *           OPT_NO_NONCONTIG: the op may refuse non-contiguous inputs (view);
 *           OPT_NO_F32: no f32 forward pass.
 *   ncases  0 = OPT_CASES
 *   tol64, tol32   0 = 1e-12 / 1e-5; the check is |out - ref| <= tol * (1 + |ref|), chosen by
 *           the OUTPUT's dtype (f32 outputs use tol32).
 *
 * For each case test_ops.c checks (1) the f64 and the f32 forward against ref, (2) the same
 * inputs copied into non-contiguous layouts give the same result, (3) in f64, the gradient of
 * sum(out * R) (R fixed random, given to cf_backward as a non-contiguous seed) against central
 * finite differences (eps 1e-6, atol 1e-5, rtol 1e-3) for every differentiable input (spec
 * letters T, t, L), and, with several such inputs, each one's gradient again with it alone
 * requiring one (the same values).
 */
#ifndef OPTEST_H
#define OPTEST_H

#include "autograd.h"
#include "error.h"
#include "ops.h"
#include "rng.h"
#include "tensor.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OPT_MAX_IN 8
#define OPT_CASES 8

enum { OPT_NOGRAD = 1, OPT_NO_NONCONTIG = 2, OPT_NO_F32 = 4 };

typedef struct optest_case {
  int nin;
  cf_tensor *in[OPT_MAX_IN];
  cf_args args;
  bool no_grad;
} optest_case;

typedef struct optest_row {
  const char *op;
  int (*gen)(cf_rng *g, int k, optest_case *c);
  cf_tensor *(*ref)(const optest_case *c);
  int flags;
  int ncases;
  double tol64, tol32;
} optest_row;

/* ---------------------------------------------------------------- random draws */

/* integer in [lo, hi] */
static inline int64_t opt_int(cf_rng *g, int64_t lo, int64_t hi) {
  return lo + (int64_t)(cf_rng_uniform(g) * (double)(hi - lo + 1));
}

static inline double opt_unif(cf_rng *g, double lo, double hi) { return lo + (hi - lo) * cf_rng_uniform(g); }

/* A random shape: ndim in [nmin, nmax], sizes in [1, smax]; returns ndim. */
static inline int opt_shape(cf_rng *g, int nmin, int nmax, int64_t smax, int64_t *shape) {
  int nd = (int)opt_int(g, nmin, nmax);
  for (int d = 0; d < nd; d++) shape[d] = opt_int(g, 1, smax);
  return nd;
}

/* A shape that broadcasts to (nd, shape): some leading dims dropped, some dims set to 1. */
static inline int opt_bcast_shape(cf_rng *g, int nd, const int64_t *shape, int64_t *out) {
  int drop = (int)opt_int(g, 0, nd);
  int on = nd - drop;
  for (int d = 0; d < on; d++) out[d] = cf_rng_uniform(g) < 0.4 ? 1 : shape[drop + d];
  return on;
}

/* f64 tensor with values from fn (called once per element in row-major order) */
static inline cf_tensor *opt_fill(cf_rng *g, int nd, const int64_t *shape,
                                  double (*fn)(cf_rng *g, void *ctx), void *ctx) {
  cf_tensor *t = cf_tensor_zeros(nd, shape, CF_DTYPE_F64);
  if (!t) return NULL;
  double *p = t->storage->data;
  int64_t n = cf_tensor_numel(t);
  for (int64_t i = 0; i < n; i++) p[i] = fn(g, ctx);
  return t;
}

static inline double opt_draw_normal(cf_rng *g, void *ctx) { (void)ctx; return cf_rng_normal(g); }
static inline cf_tensor *opt_randn(cf_rng *g, int nd, const int64_t *shape) {
  return opt_fill(g, nd, shape, opt_draw_normal, NULL);
}

/* ---------------------------------------------------------------- layouts */

/* The same values in a non-contiguous layout: stored with dims reversed and padded by one, then
 * narrowed and permuted back. 0-d and empty tensors come back as a plain copy. */
static inline cf_tensor *opt_noncontig(cf_tensor *t) {
  if (t->ndim == 0 || cf_tensor_numel(t) == 0) return cf_tensor_clone(t);
  int nd = t->ndim, perm[CF_MAX_DIMS];
  int64_t big[CF_MAX_DIMS];
  for (int d = 0; d < nd; d++) big[d] = t->shape[nd - 1 - d] + 1;
  cf_tensor *b = cf_tensor_zeros(nd, big, t->dtype);
  if (!b) return NULL;
  cf_tensor *v = b;
  cf_tensor_retain(v);
  for (int d = 0; d < nd && v; d++) {
    cf_tensor *w = cf_view_narrow(v, d, 1, t->shape[nd - 1 - d]);
    cf_tensor_release(v);
    v = w;
  }
  cf_tensor_release(b);
  if (!v) return NULL;
  for (int d = 0; d < nd; d++) perm[d] = nd - 1 - d;
  cf_tensor *p = cf_view_permute(v, perm);
  cf_tensor_release(v);
  if (p && cf_tensor_copy_(p, t)) { cf_tensor_release(p); return NULL; }
  return p;
}

/* Replace *t by its non-contiguous copy (keeps *t on failure and returns -1). */
static inline int opt_make_noncontig(cf_tensor **t) {
  cf_tensor *n = opt_noncontig(*t);
  if (!n) return -1;
  cf_tensor_release(*t);
  *t = n;
  return 0;
}

/* A stride-0 input: t (shape with size-1 dims where `shape` has them) expanded to `shape`. The
 * caller passes a t whose dims are 1 or equal to shape's; a new reference. */
static inline cf_tensor *opt_expand(cf_tensor *t, int nd, const int64_t *shape) {
  return cf_view_expand(t, nd, shape);
}

/* ---------------------------------------------------------------- indexing for references */

static inline void opt_unravel(int64_t i, int nd, const int64_t *shape, int64_t *idx) {
  for (int d = nd - 1; d >= 0; d--) {
    idx[d] = shape[d] ? i % shape[d] : 0;
    i = shape[d] ? i / shape[d] : 0;
  }
}

/* t's element at output index idx (nd dims) under broadcasting */
static inline double opt_get_bcast(const cf_tensor *t, int nd, const int64_t *idx) {
  int64_t ti[CF_MAX_DIMS];
  for (int d = 0; d < t->ndim; d++) {
    int od = d + nd - t->ndim;
    ti[d] = t->shape[d] == 1 ? 0 : idx[od];
  }
  return cf_tensor_get(t, ti);
}

static inline void opt_set_flat(cf_tensor *t, int64_t i, double v) {
  int64_t idx[CF_MAX_DIMS];
  opt_unravel(i, t->ndim, t->shape, idx);
  cf_tensor_set(t, idx, v);
}

/* The broadcast shape of n tensors (naive; -1 when they do not broadcast). */
static inline int opt_bcast(cf_tensor *const *ts, int n, int64_t *shape) {
  int nd = 0;
  for (int k = 0; k < n; k++) if (ts[k]->ndim > nd) nd = ts[k]->ndim;
  for (int d = 0; d < nd; d++) {
    shape[d] = 1;
    for (int k = 0; k < n; k++) {
      int sd = d - (nd - ts[k]->ndim);
      if (sd < 0 || ts[k]->shape[sd] == 1) continue;
      if (shape[d] != 1 && shape[d] != ts[k]->shape[sd]) return -1;
      shape[d] = ts[k]->shape[sd];
    }
  }
  return nd;
}

/* Reference of a reduction over dim (CF_DIM_ALL = every dim): fn(values, n, ctx) per output
 * element; the output is f64 (or i64 when as_index) with the dim kept as 1 when keep. */
static inline cf_tensor *opt_reduce_ref(const cf_tensor *x, int dim, bool keep,
                                        double (*fn)(const double *v, int64_t n, void *ctx),
                                        void *ctx, bool as_index) {
  int64_t oshape[CF_MAX_DIMS], idx[CF_MAX_DIMS], xi[CF_MAX_DIMS];
  int ond = 0;
  for (int d = 0; d < x->ndim; d++) {
    bool red = dim == CF_DIM_ALL || d == dim;
    if (red && !keep) continue;
    oshape[ond++] = red ? 1 : x->shape[d];
  }
  cf_tensor *o = cf_tensor_zeros(ond, oshape, as_index ? CF_DTYPE_I64 : CF_DTYPE_F64);
  if (!o) return NULL;
  int64_t n = dim == CF_DIM_ALL ? cf_tensor_numel(x) : x->shape[dim];
  double *v = malloc((size_t)(n ? n : 1) * sizeof *v);
  int64_t on = cf_tensor_numel(o);
  for (int64_t i = 0; i < on; i++) {
    opt_unravel(i, ond, oshape, idx);
    if (dim == CF_DIM_ALL) {
      for (int64_t j = 0; j < n; j++) v[j] = cf_tensor_get_flat(x, j);
    } else {
      /* map the output index back to x's index with the reduced dim free */
      int od = 0;
      for (int d = 0; d < x->ndim; d++) {
        if (d == dim) { xi[d] = 0; if (keep) od++; continue; }
        xi[d] = idx[od++];
      }
      for (int64_t j = 0; j < n; j++) { xi[dim] = j; v[j] = cf_tensor_get(x, xi); }
    }
    cf_tensor_set(o, idx, fn(v, n, ctx));
  }
  free(v);
  return o;
}

/* Reference of a map along dim (softmax-like): fn(values, n, out) per slice; f64, x's shape. */
static inline cf_tensor *opt_along_ref(const cf_tensor *x, int dim,
                                       void (*fn)(const double *v, int64_t n, double *out)) {
  cf_tensor *o = cf_tensor_zeros(x->ndim, x->shape, CF_DTYPE_F64);
  if (!o) return NULL;
  int64_t n = x->shape[dim], xi[CF_MAX_DIMS];
  double *v = malloc((size_t)(2 * n + 1) * sizeof *v), *w = v + n;
  int64_t total = cf_tensor_numel(x);
  for (int64_t i = 0; i < total; i++) {
    opt_unravel(i, x->ndim, x->shape, xi);
    if (xi[dim] != 0) continue;
    for (int64_t j = 0; j < n; j++) { xi[dim] = j; v[j] = cf_tensor_get(x, xi); }
    fn(v, n, w);
    for (int64_t j = 0; j < n; j++) { xi[dim] = j; cf_tensor_set(o, xi, w[j]); }
  }
  free(v);
  return o;
}

#endif
