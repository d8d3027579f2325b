/* reduce.c - CPU kernels of the reductions (sum mean max argmax min argmin logsumexp var), of
 * cumsum, sort and argsort, and of softmax and log_softmax.
 *
 * The input is made contiguous (a copy only when it is not) and seen as [outer, n, inner] where
 * n is the reduced dim (for CF_DIM_ALL: outer = inner = 1, n = numel; cf_reduce_geometry in
 * kernel_geo.h, shared with kernels/reduce.cu). Each of the outer * inner rows is reduced
 * independently, in double, in a fixed order, so results do not depend on the number of threads
 * (rows are spread over OpenMP threads; one huge row runs on one thread).
 * f32 and f64 inputs share the code: loads and stores go through ld/st, which branch on one
 * flag the compiler hoists out of the loops. bf16 compute is GPU-only.
 *
 * Conventions: max/argmax pick the FIRST maximum on ties and propagate NaN (the first NaN wins);
 * they refuse an empty reduced dim. min/argmin are max/argmax of the negated values (the first
 * minimum, the same NaN rule). cumsum accumulates in double along its dim, from the end when
 * reverse. sort/argsort are stable (equal values keep their order, descending too) and put NaN
 * after every number ascending, before them descending (NaN counts as the largest). mean over an empty dim is NaN, sum is 0, logsumexp is -inf.
 * logsumexp of a row that is all -inf is -inf (no NaN). softmax of an all -inf row is all 0 and
 * log_softmax gives -inf there (a fully masked row carries no probability; no NaN). var divides
 * by n - 1 when unbiased (NaN for one element), else by n; over an empty dim it is NaN like the
 * mean (kernels/reduce.cu fills NaN there too).
 *
 * Arg layout (ops.h): reductions "T D k": i[0] dim or CF_DIM_ALL, i[1] keepdim; var adds i[2]
 * unbiased; cumsum "T d k": i[0] dim, i[1] reverse; sort/argsort "T d k": i[0] dim, i[1]
 * descending; softmax/log_softmax "T d": i[0] dim.
 */
#include "cpu/iter.h"
#include "error.h"
#include "kernel_geo.h"
#include "ops.h"
#include <math.h>
#include <stdlib.h>

static inline double ld(const void *p, bool f32, int64_t i) {
  return f32 ? (double)((const float *)p)[i] : ((const double *)p)[i];
}
static inline void st(void *p, bool f32, int64_t i, double v) {
  if (f32) ((float *)p)[i] = (float)v;
  else ((double *)p)[i] = v;
}

static int check_float(const char *op, const cf_tensor *x) {
  if (x->dtype == CF_DTYPE_F32 || x->dtype == CF_DTYPE_F64) return 0;
  if (x->dtype == CF_DTYPE_BF16)
    return CF_ERR("%s: bf16 compute is GPU-only; convert with to_dtype", op);
  return CF_ERR("%s: unsupported dtype %s on the CPU", op, cf_dtype_name(x->dtype));
}

/* x seen as rows along a dim (the shared prologue of every kernel here): x made contiguous (a
 * copy only when it is not; rows_done releases it), [outer, n, inner] around the dim (all_ok:
 * CF_DIM_ALL is one row of numel), rows = outer * inner, row r's first element at base(r) and
 * its elements inner apart. */
typedef struct {
  cf_tensor *x;
  const void *p;
  bool f32;
  int64_t outer, n, inner, rows;
} rows_view;

static int rows_init(rows_view *v, const char *name, cf_tensor *x0, int64_t dim, bool all_ok) {
  v->x = NULL;
  if (check_float(name, x0)) return -1;
  if (cf_reduce_geometry(name, x0, dim, all_ok, &v->outer, &v->n, &v->inner)) return -1;
  v->rows = v->outer * v->inner;
  if (!(v->x = cf_tensor_contiguous(x0))) return -1;
  v->p = cf_tensor_data(v->x);
  v->f32 = v->x->dtype == CF_DTYPE_F32;
  return 0;
}
static inline int64_t rows_base(const rows_view *v, int64_t r) {
  return (r / v->inner) * v->n * v->inner + r % v->inner;
}
static void rows_done(rows_view *v) { cf_tensor_release(v->x); v->x = NULL; }

/* ---------------------------------------------------------------- reductions */

typedef enum { R_SUM, R_MEAN, R_MAX, R_ARGMAX, R_MIN, R_ARGMIN, R_LSE, R_VAR } reduce_op;

/* Index (0..n-1) of the first maximum of sg * x[base + k*s] (sg = -1: the first minimum of x),
 * the first NaN if any; -1 when n == 0. */
static int64_t row_argmax(const void *x, bool f32, int64_t base, int64_t s, int64_t n, double sg) {
  if (n == 0) return -1;
  int64_t best = 0;
  double bv = sg * ld(x, f32, base);
  if (isnan(bv)) return 0;
  for (int64_t k = 1; k < n; k++) {
    double v = sg * ld(x, f32, base + k * s);
    if (isnan(v)) return k;
    if (v > bv) { bv = v; best = k; }
  }
  return best;
}

static double row_reduce(reduce_op op, const void *x, bool f32, int64_t base, int64_t s, int64_t n,
                         bool unbiased) {
  switch (op) {
    case R_SUM:
    case R_MEAN: {
      double acc = 0;
      for (int64_t k = 0; k < n; k++) acc += ld(x, f32, base + k * s);
      return op == R_SUM ? acc : acc / (double)n;
    }
    case R_MAX:
    case R_ARGMAX:
      return ld(x, f32, base + row_argmax(x, f32, base, s, n, 1.0) * s);
    case R_MIN:
    case R_ARGMIN:
      return ld(x, f32, base + row_argmax(x, f32, base, s, n, -1.0) * s);
    case R_LSE: {
      double m = -INFINITY;
      for (int64_t k = 0; k < n; k++) {
        double v = ld(x, f32, base + k * s);
        if (isnan(v)) return v;
        if (v > m) m = v;
      }
      if (isinf(m)) return m;
      double acc = 0;
      for (int64_t k = 0; k < n; k++) acc += exp(ld(x, f32, base + k * s) - m);
      return m + log(acc);
    }
    case R_VAR: {
      if (n == 0) return NAN;   /* like the mean of nothing (else 0 / -1 = -0 unbiased) */
      double mean = 0, acc = 0;
      for (int64_t k = 0; k < n; k++) mean += ld(x, f32, base + k * s);
      mean /= (double)n;
      for (int64_t k = 0; k < n; k++) {
        double d = ld(x, f32, base + k * s) - mean;
        acc += d * d;
      }
      return acc / ((double)n - (unbiased ? 1.0 : 0.0));
    }
  }
  return 0;
}

/* out [x's shape with dim reduced (kept as 1 when keepdim)] = reduce(x [..]) */
static int reduce(const char *name, reduce_op op, cf_tensor *out, cf_tensor *x0, const cf_args *a) {
  rows_view v;
  if (rows_init(&v, name, x0, a->i[0], true)) return -1;
  if ((op == R_MAX || op == R_ARGMAX || op == R_MIN || op == R_ARGMIN) && cf_reduce_nonempty(name, x0, v.n, v.rows)) {
    rows_done(&v);
    return -1;
  }
  bool unbiased = op == R_VAR && (a->ni < 3 || a->i[2] != 0);
  void *op_ = cf_tensor_data(out);
  #pragma omp parallel for if (v.rows > 1 && v.rows * v.n > CF_OMP_MIN)
  for (int64_t r = 0; r < v.rows; r++) {
    int64_t base = rows_base(&v, r);
    if (op == R_ARGMAX || op == R_ARGMIN)
      ((int64_t *)op_)[r] = row_argmax(v.p, v.f32, base, v.inner, v.n, op == R_ARGMAX ? 1.0 : -1.0);
    else st(op_, v.f32, r, row_reduce(op, v.p, v.f32, base, v.inner, v.n, unbiased));
  }
  rows_done(&v);
  return 0;
}

/* cf_cpu_<op> of the plain reductions (grep `REDUCE_KERNEL(<op>,`); logsumexp is written out */
#define REDUCE_KERNEL(name, code)                                                          \
  int cf_cpu_##name(cf_tensor *out, cf_tensor *const *in, int nin, const cf_args *a) {     \
    (void)nin;                                                                              \
    return reduce(#name, code, out, in[0], a);                                              \
  }
REDUCE_KERNEL(sum, R_SUM)
REDUCE_KERNEL(mean, R_MEAN)
REDUCE_KERNEL(max, R_MAX)
REDUCE_KERNEL(argmax, R_ARGMAX)
REDUCE_KERNEL(min, R_MIN)
REDUCE_KERNEL(argmin, R_ARGMIN)
REDUCE_KERNEL(var, R_VAR)
/* logsumexp "T d k": a dim is required */
int cf_cpu_logsumexp(cf_tensor *out, cf_tensor *const *in, int nin, const cf_args *a) {
  (void)nin;
  if (a->i[0] == CF_DIM_ALL) return CF_ERR("logsumexp: a dim is required");
  return reduce("logsumexp", R_LSE, out, in[0], a);
}

/* ---------------------------------------------------------------- cumsum */

/* cumsum "T d k": out [x's shape] = running sums along a->i[0], from the end when a->i[1] */
int cf_cpu_cumsum(cf_tensor *out, cf_tensor *const *in, int nin, const cf_args *a) {
  (void)nin;
  rows_view v;
  if (rows_init(&v, "cumsum", in[0], a->i[0], false)) return -1;
  bool reverse = a->ni > 1 && a->i[1] != 0;
  void *o = cf_tensor_data(out);
  #pragma omp parallel for if (v.rows > 1 && v.rows * v.n > CF_OMP_MIN)
  for (int64_t r = 0; r < v.rows; r++) {
    int64_t base = rows_base(&v, r);
    double acc = 0;
    for (int64_t j = 0; j < v.n; j++) {
      int64_t i = base + (reverse ? v.n - 1 - j : j) * v.inner;
      acc += ld(v.p, v.f32, i);
      st(o, v.f32, i, acc);
    }
  }
  rows_done(&v);
  return 0;
}

/* ---------------------------------------------------------------- sort, argsort */

typedef struct { double v; int64_t i; } sort_item;

/* a before b: the smaller value (NaN the largest), then the smaller index (stable) */
static int sort_asc(const void *pa, const void *pb) {
  const sort_item *a = pa, *b = pb;
  bool an = isnan(a->v), bn = isnan(b->v);
  if (an != bn) return an ? 1 : -1;
  if (!an && a->v != b->v) return a->v < b->v ? -1 : 1;
  return a->i < b->i ? -1 : (a->i > b->i);
}
/* a before b: the larger value (NaN the largest), then the smaller index (stable) */
static int sort_desc(const void *pa, const void *pb) {
  const sort_item *a = pa, *b = pb;
  bool an = isnan(a->v), bn = isnan(b->v);
  if (an != bn) return an ? -1 : 1;
  if (!an && a->v != b->v) return a->v > b->v ? -1 : 1;
  return a->i < b->i ? -1 : (a->i > b->i);
}

/* out [x's shape] = x sorted along a->i[0] (values; indices i64 when idx), descending when a->i[1] */
static int sort_kernel(const char *name, bool idx, cf_tensor *out, cf_tensor *x0, const cf_args *a) {
  rows_view v;
  if (rows_init(&v, name, x0, a->i[0], false)) return -1;
  bool desc = a->ni > 1 && a->i[1] != 0;
  if (v.rows == 0 || v.n == 0) { rows_done(&v); return 0; }   /* nothing to write (qsort of none) */
  sort_item *buf = malloc((size_t)v.rows * (size_t)v.n * sizeof *buf);
  if (!buf) {
    rows_done(&v);
    return CF_ERR("%s: out of memory for %lld sort items", name, (long long)(v.rows * v.n));
  }
  void *o = cf_tensor_data(out);
  #pragma omp parallel for if (v.rows > 1 && v.rows * v.n > CF_OMP_MIN)
  for (int64_t r = 0; r < v.rows; r++) {
    int64_t base = rows_base(&v, r);
    sort_item *row = buf + r * v.n;
    for (int64_t k = 0; k < v.n; k++) row[k] = (sort_item){ld(v.p, v.f32, base + k * v.inner), k};
    qsort(row, (size_t)v.n, sizeof *row, desc ? sort_desc : sort_asc);
    for (int64_t k = 0; k < v.n; k++) {
      if (idx) ((int64_t *)o)[base + k * v.inner] = row[k].i;
      else st(o, v.f32, base + k * v.inner, row[k].v);
    }
  }
  free(buf);
  rows_done(&v);
  return 0;
}

int cf_cpu_sort(cf_tensor *out, cf_tensor *const *in, int nin, const cf_args *a) {
  (void)nin;
  return sort_kernel("sort", false, out, in[0], a);
}
int cf_cpu_argsort(cf_tensor *out, cf_tensor *const *in, int nin, const cf_args *a) {
  (void)nin;
  return sort_kernel("argsort", true, out, in[0], a);
}

/* ---------------------------------------------------------------- softmax, log_softmax */

/* out [x's shape] = softmax or log_softmax of x along dim a->i[0] */
static int softmax(const char *name, bool logp, cf_tensor *out, cf_tensor *x0, const cf_args *a) {
  rows_view v;
  if (rows_init(&v, name, x0, a->i[0], false)) return -1;
  const void *xp = v.p;
  void *o = cf_tensor_data(out);
  bool f32 = v.f32;
  int64_t n = v.n, inner = v.inner;
  #pragma omp parallel for if (v.rows > 1 && v.rows * n > CF_OMP_MIN)
  for (int64_t r = 0; r < v.rows; r++) {
    int64_t base = rows_base(&v, r);
    double m = -INFINITY, acc = 0;
    for (int64_t k = 0; k < n; k++) {
      double x = ld(xp, f32, base + k * inner);
      if (x > m || isnan(x)) m = x;
      if (isnan(x)) break;
    }
    if (m == -INFINITY) { /* all -inf (or empty): no probability mass */
      for (int64_t k = 0; k < n; k++) st(o, f32, base + k * inner, logp ? -INFINITY : 0.0);
      continue;
    }
    for (int64_t k = 0; k < n; k++) acc += exp(ld(xp, f32, base + k * inner) - m);
    double lse = log(acc);
    for (int64_t k = 0; k < n; k++) {
      double z = ld(xp, f32, base + k * inner) - m;
      st(o, f32, base + k * inner, logp ? z - lse : exp(z) / acc);
    }
  }
  rows_done(&v);
  return 0;
}

int cf_cpu_softmax(cf_tensor *out, cf_tensor *const *in, int nin, const cf_args *a) {
  (void)nin;
  return softmax("softmax", false, out, in[0], a);
}
int cf_cpu_log_softmax(cf_tensor *out, cf_tensor *const *in, int nin, const cf_args *a) {
  (void)nin;
  return softmax("log_softmax", true, out, in[0], a);
}
