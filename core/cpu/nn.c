/* nn.c - CPU kernels and shape rules for the transformer's ops: embedding, gather, cat, stack,
 * rmsnorm, rope, attention, cross_entropy, token_logprob, head_logprob, entropy, plus the
 * backward kernels their rules in core/grad_nn.c call (declared in nn_ops.h).
 *
 * Numerics: float inputs are f32 or f64; per-row statistics (sums of squares, maxima, sums of
 * exponentials, log-sum-exp, rotation angles) are accumulated in double whatever the dtype, and
 * results are rounded to the output dtype once. Softmax-like rows subtract the row maximum.
 * Vocabulary rows (cross_entropy, token_logprob, entropy, head_*) keep the maximum m and
 * lsum = log(sum exp((z - m) / T)) apart, log p = (z - m) / T - lsum, never forming the
 * log-sum-exp m / T + lsum, which loses lsum when |m / T| is huge. A -inf logit has p = 0 and
 * adds nothing to an entropy; so a row of only -inf has p = 0 everywhere (as softmax gives):
 * log p -inf, cross_entropy +inf, entropy 0, and the gradients their formulas give with p = 0
 * (log_p below; kernels/nn.cu alike). A NaN logit makes its row NaN.
 * Kernels that need contiguous inputs make a contiguous copy only when the input is not already;
 * attention and head_logprob read their matrices in place through BLAS strides (linalg.c).
 *
 * Validation that the shared shape rules (same, scalar, droplast) cannot do lives at the top of
 * each kernel; integer ids are range-checked before anything is written, and the error names the
 * offending id and the limit.
 */
#include <limits.h>
#include <math.h>
#include <omp.h>
#include <float.h>
#include <stdlib.h>
#include <string.h>
#include "error.h"
#include "kernel_geo.h"
#include "nn_ops.h"
#include "ops.h"
#include "rope_freq.h"

/* ---------------------------------------------------------------- element helpers */

static inline double ldf(const void *p, bool f64, int64_t i) {
  return f64 ? ((const double *)p)[i] : (double)((const float *)p)[i];
}
static inline void stf(void *p, bool f64, int64_t i, double v) {
  if (f64) ((double *)p)[i] = v;
  else ((float *)p)[i] = (float)v;
}
static inline void addf(void *p, bool f64, int64_t i, double v) {
  if (f64) ((double *)p)[i] += v;
  else ((float *)p)[i] += (float)v;
}

/* Element i (storage-relative to p) of any dtype, for masks. */
static double ld_any(const void *p, cf_dtype dt, int64_t i) {
  switch (dt) {
    case CF_DTYPE_F32: return ((const float *)p)[i];
    case CF_DTYPE_F64: return ((const double *)p)[i];
    case CF_DTYPE_BF16: return cf_bf16_to_float(((const uint16_t *)p)[i]);
    case CF_DTYPE_I32: return ((const int32_t *)p)[i];
    case CF_DTYPE_I64: return (double)((const int64_t *)p)[i];
    default: return 0;
  }
}

static inline int64_t ld_id(const void *p, cf_dtype dt, int64_t i) {
  return dt == CF_DTYPE_I64 ? ((const int64_t *)p)[i] : (int64_t)((const int32_t *)p)[i];
}

/* Offset (in elements, from the data pointer) of row r of t seen as [rows x last dim]: lets
 * row-wise kernels read permuted or sliced views without a copy. */
static int64_t row_offset(const cf_tensor *t, int64_t r) {
  int64_t off = 0;
  for (int d = t->ndim - 2; d >= 0; d--) {
    off += (r % t->shape[d]) * t->stride[d];
    r /= t->shape[d];
  }
  return off;
}

static int cpu_float(const char *op, const cf_tensor *t) {
  if (t->dtype == CF_DTYPE_F32 || t->dtype == CF_DTYPE_F64) return 0;
  return CF_ERR("%s: CPU computes in f32 or f64, got %s (convert with to_dtype)", op,
                cf_dtype_name(t->dtype));
}

/* The temperature (NaN: 1) must be > 0, finite, and large enough that s = 1 / T is a finite
 * double (the CPU kernels scale in double; kernel_geo.h) */
static int check_temperature(const char *op, double temp, double *out) {
  return cf_check_temperature(op, temp, DBL_MAX, out);
}

/* The largest of n elements (NaN skipped: it reaches the sums); -inf for n == 0. */
static double row_max(const void *z, bool f64, int64_t n) {
  double m = -INFINITY;
  for (int64_t i = 0; i < n; i++) {
    double v = ldf(z, f64, i);
    if (v > m) m = v;
  }
  return m;
}

/* (z_i - m) * s: a logit over T, less the row's largest; <= 0 */
static inline double shifted(const void *z, bool f64, int64_t i, double m, double s) {
  return (ldf(z, f64, i) - m) * s;
}

/* lsum = log(sum exp((z - m) * s)) over n elements with m = row_max(z): >= 0, as the largest
 * term is 1. NaN when the row holds NaN, +inf, or only -inf. */
static double row_lsum(const void *z, bool f64, int64_t n, double m, double s) {
  double sum = 0;
  for (int64_t i = 0; i < n; i++) sum += exp(shifted(z, f64, i, m, s));
  return log(sum);
}

/* log softmax(z * s)_j = (z_j - m) s - ls, with m = row_max(z) and ls = row_lsum. On a row with
 * no finite logit (m = -inf) p is 0: a -inf logit's log p is -inf, where the difference would be
 * -inf - -inf, NaN (a NaN logit stays NaN). */
static inline double log_p(const void *z, bool f64, int64_t j, double m, double s, double ls) {
  double v = ldf(z, f64, j);
  return m == -INFINITY && v == -INFINITY ? -INFINITY : (v - m) * s - ls;
}

/* Entropy (nats) of softmax(z * s) over n > 0 elements, with *m = row_max(z) and *ls = lsum:
 * with t = (z - m) s <= 0 and e = exp(t), H = log(sum e) - sum(e t) / sum e, two terms >= 0, so
 * H >= 0. Terms with e = 0 (p = 0, a -inf logit) are left out of sum(e t) (0 * -inf is NaN), so
 * a row of only -inf has H = 0 (NaN when a NaN is among them). */
static double row_entropy_lsum(const void *z, bool f64, int64_t n, double s, double *m, double *ls) {
  double sum = 0, et = 0;
  *m = row_max(z, f64, n);
  if (*m == -INFINITY) {
    /* a flag, not `if (isnan(..)) h = NAN` in the loop: GCC 12 -O3 vectorizes that into 0 for f64 */
    bool nan_seen = false;
    for (int64_t j = 0; j < n; j++) nan_seen |= isnan(ldf(z, f64, j));
    *ls = NAN; /* read only through log_p, for a NaN logit */
    return nan_seen ? NAN : 0;
  }
  for (int64_t j = 0; j < n; j++) {
    double t = shifted(z, f64, j, *m, s), e = exp(t);
    sum += e;
    if (e > 0) et += e * t;
  }
  *ls = log(sum);
  return *ls - et / sum;
}

static double row_entropy(const void *z, bool f64, int64_t n, double s) {
  double m, ls;
  return n == 0 ? 0 : row_entropy_lsum(z, f64, n, s, &m, &ls); /* no classes: nothing uncertain */
}

/* Its gradient times g: out[j] = -g s p_j (log p_j + H), 0 where p_j = 0 (NaN where the row
 * makes p NaN, as the forward is); out may be z (each element is read before it is written). */
static void row_entropy_grad(const void *z, void *out, bool f64, int64_t n, double s, double g) {
  double m, ls, H = row_entropy_lsum(z, f64, n, s, &m, &ls), c = -g * s;
  for (int64_t j = 0; j < n; j++) {
    double lp = log_p(z, f64, j, m, s, ls), p = exp(lp);
    stf(out, f64, j, p != 0 ? c * p * (lp + H) : 0.0);
  }
}

/* log_softmax(z * s)[t] over n elements */
static double row_logprob(const void *z, bool f64, int64_t n, double s, int64_t t) {
  double m = row_max(z, f64, n);
  return log_p(z, f64, t, m, s, row_lsum(z, f64, n, m, s));
}

/* out[j] = c (onehot(t)_j - softmax(z * s)_j); out may be z */
static void row_logprob_grad(const void *z, void *out, bool f64, int64_t n, double s, int64_t t, double c) {
  double m = row_max(z, f64, n), ls = row_lsum(z, f64, n, m, s);
  for (int64_t j = 0; j < n; j++) stf(out, f64, j, c * ((j == t) - exp(log_p(z, f64, j, m, s, ls))));
}

/* Range-check the ids (contiguous) against [0, limit); with allow_negative, ids < 0 pass (they
 * mark ignored rows). The message names the id, the limit and `refname ref`'s shape. */
static int check_ids(const char *op, const cf_tensor *ids, int64_t limit, bool allow_negative,
                     const char *what, const char *refname, const cf_tensor *ref) {
  const void *p = cf_tensor_data(ids);
  int64_t n = cf_tensor_numel(ids);
  for (int64_t i = 0; i < n; i++) {
    int64_t id = ld_id(p, ids->dtype, i);
    if ((id < 0 && !allow_negative) || id >= limit) {
      char b[128];
      return CF_ERR("%s: %s %lld out of range for %lld (%s %s%s)", op, what, (long long)id,
                    (long long)limit, refname, cf_shape_str(ref, b, sizeof b),
                    allow_negative ? "; targets < 0 are ignored" : "");
    }
  }
  return 0;
}

/* ================================================================ embedding */

int cf_infer_embedding(const char *op, cf_tensor *const *in, int nin, const cf_args *a, cf_meta *out) {
  (void)nin; (void)a;
  const cf_tensor *w = in[0], *ids = in[1];
  char b[128];
  if (w->ndim != 2) return CF_ERR("%s: weight must be 2-d [V x D], got %s", op, cf_shape_str(w, b, sizeof b));
  if (ids->ndim + 1 > CF_MAX_DIMS)
    return CF_ERR("%s: ids have %d dims; the output would exceed %d", op, ids->ndim, CF_MAX_DIMS);
  out->ndim = ids->ndim + 1;
  memcpy(out->shape, ids->shape, sizeof(int64_t) * (size_t)ids->ndim);
  out->shape[ids->ndim] = w->shape[1];
  out->dtype = w->dtype;
  return 0;
}

/* out [ids.., D] = weight [V, D] rows at ids */
int cf_cpu_embedding(cf_tensor *out, cf_tensor *const *in, int nin, const cf_args *a) {
  (void)nin; (void)a;
  cf_tensor *w = in[0];
  if (cpu_float("embedding", w)) return -1;
  cf_tensor *ids = cf_tensor_contiguous(in[1]);
  if (!ids) return -1;
  int64_t V = w->shape[0], D = w->shape[1], n = cf_tensor_numel(ids);
  if (check_ids("embedding", ids, V, false, "id", "weight", w)) { cf_tensor_release(ids); return -1; }
  const void *ip = cf_tensor_data(ids);
  bool f64 = w->dtype == CF_DTYPE_F64;
  size_t es = cf_dtype_size(w->dtype);
  const char *wp = cf_tensor_data(w);
  char *op = cf_tensor_data(out);
  int64_t s0 = w->stride[0], s1 = w->stride[1];
  #pragma omp parallel for schedule(static) if (n * D > 65536)
  for (int64_t i = 0; i < n; i++) {
    int64_t id = ld_id(ip, ids->dtype, i);
    if (s1 == 1) {
      memcpy(op + (size_t)(i * D) * es, wp + (size_t)(id * s0) * es, (size_t)D * es);
    } else {
      for (int64_t j = 0; j < D; j++) stf(op, f64, i * D + j, ldf(wp, f64, id * s0 + j * s1));
    }
  }
  cf_tensor_release(ids);
  return 0;
}

/* gw [V, D] (zero, contiguous) += gout [ids.., D] scattered by ids */
int cf_cpu_embedding_backward(cf_tensor *gw, cf_tensor *ids0, cf_tensor *gout0) {
  if (cpu_float("embedding backward", gw)) return -1;
  cf_tensor *ids = cf_tensor_contiguous(ids0), *g = cf_tensor_contiguous(gout0);
  if (!ids || !g) { cf_tensor_release(ids); cf_tensor_release(g); return -1; }
  int64_t D = gw->shape[1], n = cf_tensor_numel(ids);
  bool f64 = gw->dtype == CF_DTYPE_F64;
  const void *ip = cf_tensor_data(ids), *gp = cf_tensor_data(g);
  void *wp = cf_tensor_data(gw);
  /* Threads own disjoint column blocks, so repeated ids never race. */
  int64_t nblk = (D + 31) / 32;
  #pragma omp parallel for schedule(static) if (n * D > 65536)
  for (int64_t blk = 0; blk < nblk; blk++) {
    int64_t j0 = blk * 32, j1 = j0 + 32 < D ? j0 + 32 : D;
    for (int64_t i = 0; i < n; i++) {
      int64_t id = ld_id(ip, ids->dtype, i);
      for (int64_t j = j0; j < j1; j++) addf(wp, f64, id * D + j, ldf(gp, f64, i * D + j));
    }
  }
  cf_tensor_release(ids);
  cf_tensor_release(g);
  return 0;
}

/* ================================================================ gather */

int cf_infer_gather(const char *op, cf_tensor *const *in, int nin, const cf_args *a, cf_meta *out) {
  (void)nin;
  const cf_tensor *t = in[0], *idx = in[1];
  int dim = (int)a->i[0];
  char b1[128], b2[128];
  if (dim < 0 || dim >= t->ndim)
    return CF_ERR("%s: dim %d out of range for %s", op, dim + 1, cf_shape_str(t, b1, sizeof b1));
  if (idx->ndim != t->ndim)
    return CF_ERR("%s: index must have the input's number of dims: %s vs index %s", op,
                  cf_shape_str(t, b1, sizeof b1), cf_shape_str(idx, b2, sizeof b2));
  for (int d = 0; d < t->ndim; d++)
    if (d != dim && idx->shape[d] > t->shape[d])
      return CF_ERR("%s: index %s is larger than the input %s in dim %d", op,
                    cf_shape_str(idx, b2, sizeof b2), cf_shape_str(t, b1, sizeof b1), d + 1);
  out->ndim = idx->ndim;
  memcpy(out->shape, idx->shape, sizeof out->shape);
  out->dtype = t->dtype;
  return 0;
}

/* Offset in t (strided, relative to its data pointer) of index element i (row-major in idx). */
static int64_t gather_offset(const cf_tensor *t, const cf_tensor *idx, int dim, int64_t i, int64_t at) {
  int64_t off = 0;
  for (int d = idx->ndim - 1; d >= 0; d--) {
    int64_t c = i % idx->shape[d];
    i /= idx->shape[d];
    off += (d == dim ? at : c) * t->stride[d];
  }
  return off;
}

/* out = t gathered along dim by index (torch.gather) */
int cf_cpu_gather(cf_tensor *out, cf_tensor *const *in, int nin, const cf_args *a) {
  (void)nin;
  cf_tensor *t = in[0];
  int dim = (int)a->i[0];
  if (cpu_float("gather", t)) return -1;
  cf_tensor *idx = cf_tensor_contiguous(in[1]);
  if (!idx) return -1;
  if (check_ids("gather", idx, t->shape[dim], false, "index", "along the dim of input", t)) {
    cf_tensor_release(idx);
    return -1;
  }
  bool f64 = t->dtype == CF_DTYPE_F64;
  const void *tp = cf_tensor_data(t), *ip = cf_tensor_data(idx);
  void *op = cf_tensor_data(out);
  int64_t n = cf_tensor_numel(idx);
  #pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; i++)
    stf(op, f64, i, ldf(tp, f64, gather_offset(t, idx, dim, i, ld_id(ip, idx->dtype, i))));
  cf_tensor_release(idx);
  return 0;
}

/* gx (zero, contiguous, the input's shape) += gout scattered back along dim */
int cf_cpu_gather_backward(cf_tensor *gx, int dim, cf_tensor *index, cf_tensor *gout) {
  if (cpu_float("gather backward", gx)) return -1;
  cf_tensor *idx = cf_tensor_contiguous(index), *g = cf_tensor_contiguous(gout);
  if (!idx || !g) { cf_tensor_release(idx); cf_tensor_release(g); return -1; }
  bool f64 = gx->dtype == CF_DTYPE_F64;
  const void *ip = cf_tensor_data(idx), *gp = cf_tensor_data(g);
  void *xp = cf_tensor_data(gx);
  int64_t n = cf_tensor_numel(idx);
  for (int64_t i = 0; i < n; i++)
    addf(xp, f64, gather_offset(gx, idx, dim, i, ld_id(ip, idx->dtype, i)), ldf(gp, f64, i));
  cf_tensor_release(idx);
  cf_tensor_release(g);
  return 0;
}

/* ================================================================ cat / stack */

int cf_infer_cat(const char *op, cf_tensor *const *in, int nin, const cf_args *a, cf_meta *out) {
  int dim = (int)a->i[0];
  const cf_tensor *t0 = in[0];
  char b1[128], b2[128];
  if (t0->ndim < 1) return CF_ERR("%s: cannot join 0-d tensors (use stack)", op);
  if (dim < 0 || dim >= t0->ndim)
    return CF_ERR("%s: dim %d out of range for %s", op, dim + 1, cf_shape_str(t0, b1, sizeof b1));
  out->ndim = t0->ndim;
  memcpy(out->shape, t0->shape, sizeof out->shape);
  out->shape[dim] = 0;
  for (int k = 0; k < nin; k++) {
    const cf_tensor *t = in[k];
    bool ok = t->ndim == t0->ndim;
    for (int d = 0; ok && d < t0->ndim; d++) ok = d == dim || t->shape[d] == t0->shape[d];
    if (!ok)
      return CF_ERR("%s: shapes must match except in dim %d: %s and %s (tensor %d)", op, dim + 1,
                    cf_shape_str(t0, b1, sizeof b1), cf_shape_str(t, b2, sizeof b2), k + 1);
    if (t->shape[dim] > INT64_MAX - out->shape[dim]) /* the sum wrapped (signed overflow: undefined) */
      return CF_ERR("%s: the joined size in dim %d overflows (tensor %d)", op, dim + 1, k + 1);
    out->shape[dim] += t->shape[dim];
  }
  out->dtype = t0->dtype;
  return 0;
}

/* Device-agnostic (views + cf_tensor_copy_): kernels/nn.cu's cf_cuda_cat/stack call these. */
int cf_cpu_cat(cf_tensor *out, cf_tensor *const *in, int nin, const cf_args *a) {
  int dim = (int)a->i[0];
  int64_t at = 0;
  for (int k = 0; k < nin; k++) {
    cf_tensor *region = cf_view_narrow(out, dim, at, in[k]->shape[dim]);
    if (!region) return -1;
    int rc = cf_tensor_copy_(region, in[k]);
    cf_tensor_release(region);
    if (rc) return -1;
    at += in[k]->shape[dim];
  }
  return 0;
}

int cf_infer_stack(const char *op, cf_tensor *const *in, int nin, const cf_args *a, cf_meta *out) {
  int dim = (int)a->i[0];
  const cf_tensor *t0 = in[0];
  char b1[128], b2[128];
  if (dim < 0 || dim > t0->ndim)
    return CF_ERR("%s: insertion dim %d out of range for %s", op, dim + 1, cf_shape_str(t0, b1, sizeof b1));
  if (t0->ndim + 1 > CF_MAX_DIMS) return CF_ERR("%s: the result would exceed %d dims", op, CF_MAX_DIMS);
  for (int k = 1; k < nin; k++)
    if (!cf_same_shape(in[k], t0))
      return CF_ERR("%s: shapes must match: %s and %s (tensor %d)", op, cf_shape_str(t0, b1, sizeof b1),
                    cf_shape_str(in[k], b2, sizeof b2), k + 1);
  out->ndim = t0->ndim + 1;
  for (int d = 0, s = 0; d < out->ndim; d++) out->shape[d] = d == dim ? nin : t0->shape[s++];
  out->dtype = t0->dtype;
  return 0;
}

int cf_cpu_stack(cf_tensor *out, cf_tensor *const *in, int nin, const cf_args *a) {
  int dim = (int)a->i[0];
  for (int k = 0; k < nin; k++) {
    cf_tensor *region = cf_view_select(out, dim, k);
    if (!region) return -1;
    int rc = cf_tensor_copy_(region, in[k]);
    cf_tensor_release(region);
    if (rc) return -1;
  }
  return 0;
}

/* ================================================================ rmsnorm */

static int rmsnorm_check(const cf_tensor *x, const cf_tensor *w) {
  char b1[128], b2[128];
  if (cpu_float("rmsnorm", x)) return -1;
  if (x->ndim < 1 || w->ndim != 1 || w->shape[0] != x->shape[x->ndim - 1])
    return CF_ERR("rmsnorm: weight must be [D] for x [.., D]: x %s, weight %s",
                  cf_shape_str(x, b1, sizeof b1), cf_shape_str(w, b2, sizeof b2));
  return 0;
}

/* out [.., D] = x [.., D] / sqrt(mean(x^2) + eps) * w [D] */
int cf_cpu_rmsnorm(cf_tensor *out, cf_tensor *const *in, int nin, const cf_args *a) {
  (void)nin;
  if (rmsnorm_check(in[0], in[1])) return -1;
  double eps = a->f[0];
  cf_tensor *x = cf_tensor_contiguous(in[0]), *w = cf_tensor_contiguous(in[1]);
  if (!x || !w) { cf_tensor_release(x); cf_tensor_release(w); return -1; }
  bool f64 = x->dtype == CF_DTYPE_F64;
  int64_t D = w->shape[0], numel = cf_tensor_numel(x), rows = D ? numel / D : 0;
  const void *xp = cf_tensor_data(x), *wp = cf_tensor_data(w);
  void *op = cf_tensor_data(out);
  #pragma omp parallel for schedule(static) if (numel > 32768)
  for (int64_t r = 0; r < rows; r++) {
    int64_t o = r * D;
    double ss = 0;
    for (int64_t j = 0; j < D; j++) { double v = ldf(xp, f64, o + j); ss += v * v; }
    double rs = 1.0 / sqrt(ss / (double)D + eps);
    for (int64_t j = 0; j < D; j++) stf(op, f64, o + j, ldf(xp, f64, o + j) * rs * ldf(wp, f64, j));
  }
  cf_tensor_release(x);
  cf_tensor_release(w);
  return 0;
}

/* gx [.., D] = r g w - x r^3 sum(g w x) / D;  gw [D] = sum over rows of g x r   (r recomputed) */
int cf_cpu_rmsnorm_backward(cf_tensor *gx, cf_tensor *gw, cf_tensor *x0, cf_tensor *w0, double eps,
                            cf_tensor *gout) {
  if (rmsnorm_check(x0, w0)) return -1;
  cf_tensor *x = cf_tensor_contiguous(x0), *w = cf_tensor_contiguous(w0), *g = cf_tensor_contiguous(gout);
  if (!x || !w || !g) { cf_tensor_release(x); cf_tensor_release(w); cf_tensor_release(g); return -1; }
  bool f64 = x->dtype == CF_DTYPE_F64;
  int64_t D = w->shape[0], numel = cf_tensor_numel(x), rows = D ? numel / D : 0;
  const void *xp = cf_tensor_data(x), *wp = cf_tensor_data(w), *gp = cf_tensor_data(g);
  void *gxp = gx ? cf_tensor_data(gx) : NULL;
  /* gw: one double accumulator row per thread, summed at the end. */
  int nth = numel > 32768 ? omp_get_max_threads() : 1;
  double *part = gw ? calloc((size_t)nth * (size_t)D + 1, sizeof(double)) : NULL;
  if (gw && !part) {
    cf_tensor_release(x);
    cf_tensor_release(w);
    cf_tensor_release(g);
    return CF_ERR("rmsnorm backward: out of memory");
  }
  #pragma omp parallel num_threads(nth) if (nth > 1)
  {
    double *mine = part ? part + (size_t)omp_get_thread_num() * (size_t)D : NULL;
    #pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
      int64_t o = r * D;
      double ss = 0, dot = 0;
      for (int64_t j = 0; j < D; j++) {
        double v = ldf(xp, f64, o + j);
        ss += v * v;
        dot += ldf(gp, f64, o + j) * ldf(wp, f64, j) * v;
      }
      double rs = 1.0 / sqrt(ss / (double)D + eps), c = rs * rs * rs * dot / (double)D;
      for (int64_t j = 0; j < D; j++) {
        double gv = ldf(gp, f64, o + j), xv = ldf(xp, f64, o + j);
        if (gxp) stf(gxp, f64, o + j, rs * gv * ldf(wp, f64, j) - xv * c);
        if (mine) mine[j] += gv * xv * rs;
      }
    }
  }
  if (gw) {
    void *gwp = cf_tensor_data(gw);
    for (int64_t j = 0; j < D; j++) {
      double acc = 0;
      for (int k = 0; k < nth; k++) acc += part[(size_t)k * (size_t)D + (size_t)j];
      stf(gwp, f64, j, acc);
    }
  }
  free(part);
  cf_tensor_release(x);
  cf_tensor_release(w);
  cf_tensor_release(g);
  return 0;
}

/* ================================================================ rope */

/* Validates x [.., T, D] and positions [T] or [B, T]; fills the cos/sin table [npos x D/2]. */
static int rope_table(const char *op, const cf_tensor *x, const cf_tensor *pos, double theta,
                      cf_rope_scaling sc, double **cs, bool *pos2d) {
  char b1[128], b2[128];
  if (x->ndim < 2)
    return CF_ERR("%s: x must be [.., T, D], got %s", op, cf_shape_str(x, b1, sizeof b1));
  int64_t T = x->shape[x->ndim - 2], D = x->shape[x->ndim - 1];
  if (D % 2) return CF_ERR("%s: the last dim must be even, got x %s", op, cf_shape_str(x, b1, sizeof b1));
  if (!(theta > 0)) return CF_ERR("%s: theta must be > 0, got %g", op, cf_msgnum(theta));
  const char *bad = cf_rope_scaling_check(sc);
  if (bad) return CF_ERR("%s: rope scaling: %s (factor %g, low %g, high %g, original %g)", op, bad, cf_msgnum(sc.factor),
                         cf_msgnum(sc.low), cf_msgnum(sc.high), cf_msgnum(sc.orig));
  bool ok = (pos->ndim == 1 && pos->shape[0] == T) ||
            (pos->ndim == 2 && x->ndim >= 3 && pos->shape[0] == x->shape[0] && pos->shape[1] == T);
  if (!ok)
    return CF_ERR("%s: positions must be [T] or [B, T] (B = x's dim 1) for x [.., T, D]: x %s, positions %s",
                  op, cf_shape_str(x, b1, sizeof b1), cf_shape_str(pos, b2, sizeof b2));
  *pos2d = pos->ndim == 2;
  cf_tensor *pc = cf_tensor_contiguous((cf_tensor *)pos);
  if (!pc) return -1;
  int64_t np = cf_tensor_numel(pc), h = D / 2;
  double *t = malloc(sizeof(double) * (size_t)(2 * np * h + 1));
  if (!t) { cf_tensor_release(pc); return CF_ERR("%s: out of memory", op); }
  const void *pp = cf_tensor_data(pc);
  double invs[64], *iv = h <= 64 ? invs : malloc(sizeof(double) * (size_t)h); /* f_i per pair */
  if (!iv) { free(t); cf_tensor_release(pc); return CF_ERR("%s: out of memory", op); }
  for (int64_t i = 0; i < h; i++) iv[i] = cf_rope_inv_freq(theta, i, D, sc);
  for (int64_t p = 0; p < np; p++) {
    double ps = (double)ld_id(pp, pc->dtype, p);
    for (int64_t i = 0; i < h; i++) {
      double ang = ps * iv[i];
      t[(p * h + i) * 2] = cos(ang);
      t[(p * h + i) * 2 + 1] = sin(ang);
    }
  }
  if (iv != invs) free(iv);
  cf_tensor_release(pc);
  *cs = t;
  return 0;
}

/* out = x rotated by +angle (sign 1) or -angle (sign -1, the transpose, for backward) */
static int rope_apply(const char *op, cf_tensor *out, cf_tensor *x0, cf_tensor *pos, double theta,
                      cf_rope_scaling sc, double sign) {
  if (cpu_float(op, x0)) return -1;
  double *cs;
  bool pos2d;
  if (rope_table(op, x0, pos, theta, sc, &cs, &pos2d)) return -1;
  cf_tensor *x = x0; /* read in place through its strides */
  bool f64 = x->dtype == CF_DTYPE_F64;
  int64_t T = x->shape[x->ndim - 2], D = x->shape[x->ndim - 1], h = D / 2, sl = x->stride[x->ndim - 1];
  int64_t numel = cf_tensor_numel(x), rows = D ? numel / D : 0;
  int64_t rows_per_b = x->shape[0] ? rows / x->shape[0] : 0;
  const void *xp = cf_tensor_data(x);
  void *op_ = cf_tensor_data(out);
  #pragma omp parallel for schedule(static) if (numel > 32768)
  for (int64_t r = 0; r < rows; r++) {
    int64_t t = r % T, p = pos2d ? (r / rows_per_b) * T + t : t, o = r * D, xo = row_offset(x, r);
    const double *c = cs + p * h * 2;
    for (int64_t i = 0; i < h; i++) {
      double co = c[2 * i], si = sign * c[2 * i + 1];
      double x1 = ldf(xp, f64, xo + i * sl), x2 = ldf(xp, f64, xo + (i + h) * sl);
      stf(op_, f64, o + i, x1 * co - x2 * si);
      stf(op_, f64, o + i + h, x2 * co + x1 * si);
    }
  }
  free(cs);
  return 0;
}

/* out [.., T, D] = x * cos + rotate_half(x) * sin,  angle = pos * f_i (rope_freq.h: theta^(-2i/D),
 * with Llama 3's scaling when a->f[1..4] are given) */
int cf_cpu_rope(cf_tensor *out, cf_tensor *const *in, int nin, const cf_args *a) {
  (void)nin;
  const char *why = cf_rope_scaling_given(&a->f[1]);
  if (why) return CF_ERR("rope: %s", why);
  return rope_apply("rope", out, in[0], in[1], a->f[0], cf_rope_scaling_of(&a->f[1]), 1.0);
}

int cf_cpu_rope_backward(cf_tensor *gx, cf_tensor *pos, double theta, const double *scaling, cf_tensor *gout) {
  return rope_apply("rope backward", gx, gout, pos, theta, cf_rope_scaling_of(scaling), -1.0);
}

/* ================================================================ attention */

int cf_infer_attention(const char *op, cf_tensor *const *in, int nin, const cf_args *a, cf_meta *out) {
  (void)nin; (void)a;
  const cf_tensor *q = in[0], *k = in[1], *v = in[2], *m = in[3];
  char bq[128], bk[128], bv[128], bm[128];
  cf_shape_str(q, bq, sizeof bq);
  cf_shape_str(k, bk, sizeof bk);
  cf_shape_str(v, bv, sizeof bv);
  if (q->ndim != 4 || k->ndim != 4 || v->ndim != 4)
    return CF_ERR("%s: q, k, v must be 4-d [B, H, T, D]: q %s, k %s, v %s", op, bq, bk, bv);
  bool ok = k->shape[0] == q->shape[0] && v->shape[0] == q->shape[0] && v->shape[1] == k->shape[1] &&
            v->shape[2] == k->shape[2] && k->shape[3] == q->shape[3] && k->shape[1] > 0 &&
            q->shape[1] % k->shape[1] == 0;
  if (!ok)
    return CF_ERR("%s: expected q [B, Hq, T, D], k [B, Hkv, S, D], v [B, Hkv, S, Dv] with Hq a "
                  "multiple of Hkv: q %s, k %s, v %s", op, bq, bk, bv);
  out->ndim = 4;
  out->shape[0] = q->shape[0];
  out->shape[1] = q->shape[1];
  out->shape[2] = q->shape[2];
  out->shape[3] = v->shape[3];
  out->dtype = q->dtype;
  if (m) {
    int64_t full[4] = {q->shape[0], q->shape[1], q->shape[2], k->shape[2]};
    ok = m->ndim <= 4;
    for (int d = 0; ok && d < m->ndim; d++) {
      int64_t s = m->shape[d], want = full[4 - m->ndim + d];
      ok = s == 1 || s == want;
    }
    if (!ok)
      return CF_ERR("%s: mask %s does not broadcast to [B, Hq, T, S] = [%lld x %lld x %lld x %lld]", op,
                    cf_shape_str(m, bm, sizeof bm), (long long)full[0], (long long)full[1],
                    (long long)full[2], (long long)full[3]);
  }
  return 0;
}

/* One BLAS-addressable 4-d operand: per-(b, h) matrices at base + b*s0 + h*s1. */
typedef struct {
  cf_tensor *hold;
  const char *p;
  int64_t s0, s1, ld;
  bool tr;
} attn_mat;

static int attn_mat_init(attn_mat *m, cf_tensor *t) {
  int64_t ld;
  bool tr;
  if (cf_blas_layout(t->shape[2], t->shape[3], t->stride[2], t->stride[3], &ld, &tr) == 0) {
    cf_tensor_retain(t);
    m->hold = t;
  } else {
    m->hold = cf_tensor_contiguous(t);
    if (!m->hold) return -1;
    if (cf_blas_layout(t->shape[2], t->shape[3], m->hold->stride[2], m->hold->stride[3], &ld, &tr))
      return CF_ERR("attention: a dim is too large for BLAS");
  }
  m->p = cf_tensor_data(m->hold);
  m->s0 = m->hold->stride[0];
  m->s1 = m->hold->stride[1];
  m->ld = ld;
  m->tr = tr;
  return 0;
}

typedef struct {
  int64_t B, Hq, Hkv, T, S, D, Dv, rep;
  double scale;
  bool causal, f64;
  cf_dtype dt;
  size_t es;
  attn_mat q, k, v;
  const void *mask;
  cf_dtype mdt;
  int64_t ms[4];
} attn_geo;

static void attn_free(attn_geo *g) {
  cf_tensor_release(g->q.hold);
  cf_tensor_release(g->k.hold);
  cf_tensor_release(g->v.hold);
}

static int attn_init(attn_geo *g, cf_tensor *q, cf_tensor *k, cf_tensor *v, cf_tensor *mask,
                     double scale, bool causal) {
  memset(g, 0, sizeof *g);
  if (cpu_float("attention", q)) return -1;
  g->B = q->shape[0]; g->Hq = q->shape[1]; g->T = q->shape[2]; g->D = q->shape[3];
  g->Hkv = k->shape[1]; g->S = k->shape[2]; g->Dv = v->shape[3];
  g->rep = g->Hq / g->Hkv;
  g->scale = isnan(scale) ? 1.0 / sqrt((double)(g->D ? g->D : 1)) : scale;
  g->causal = causal;
  g->dt = q->dtype;
  g->f64 = q->dtype == CF_DTYPE_F64;
  g->es = cf_dtype_size(q->dtype);
  if (g->T > INT_MAX || g->S > INT_MAX || g->D > INT_MAX || g->Dv > INT_MAX)
    return CF_ERR("attention: a dim exceeds the BLAS limit");
  if (attn_mat_init(&g->q, q) || attn_mat_init(&g->k, k) || attn_mat_init(&g->v, v)) {
    attn_free(g);
    return -1;
  }
  if (mask) {
    g->mask = cf_tensor_data(mask);
    g->mdt = mask->dtype;
    cf_broadcast_strides(mask, 4, 4, g->ms); /* mask broadcasts to [B, Hq, T, S] */
  }
  return 0;
}

/* Row t of head (b, h): scores (typed, S entries) -> probabilities in place. Rows with no
 * allowed key become all zeros; a NaN among the allowed scores makes them all NaN (as a softmax
 * does; the maximum skipped it, and a row of NaN scores passed for one with no key). */
static void attn_softmax_row(const attn_geo *g, int64_t b, int64_t h, int64_t t, void *row) {
  int64_t S = g->S, lim = g->causal ? t + (S - g->T) : S - 1;
  if (lim > S - 1) lim = S - 1;
  const char *mrow = g->mask ? (const char *)g->mask : NULL;
  int64_t mo = b * g->ms[0] + h * g->ms[1] + t * g->ms[2];
  double mx = -INFINITY;
  bool nan = false;
  for (int64_t s = 0; s <= lim; s++) {
    if (mrow && ld_any(mrow, g->mdt, mo + s * g->ms[3]) == 0) continue;
    double x = ldf(row, g->f64, s);
    if (x > mx) mx = x;
    nan |= x != x;
  }
  if (nan) {
    for (int64_t s = 0; s < S; s++)
      stf(row, g->f64, s, s <= lim && !(mrow && ld_any(mrow, g->mdt, mo + s * g->ms[3]) == 0) ? NAN : 0.0);
    return;
  }
  if (mx == -INFINITY) {
    memset(row, 0, (size_t)S * g->es);
    return;
  }
  double sum = 0;
  for (int64_t s = 0; s < S; s++) {
    double e = 0;
    if (s <= lim && !(mrow && ld_any(mrow, g->mdt, mo + s * g->ms[3]) == 0))
      e = exp(ldf(row, g->f64, s) - mx);
    sum += e;
    stf(row, g->f64, s, e);
  }
  double inv = 1.0 / sum;
  for (int64_t s = 0; s <= lim; s++) stf(row, g->f64, s, ldf(row, g->f64, s) * inv);
}

/* P [T x S] (typed) = softmax(scale * q_bh k_bg^T) with the mask and causal rule. */
static void attn_probs(const attn_geo *g, int64_t b, int64_t h, void *P, bool par_rows) {
  int64_t kh = h / g->rep;
  const char *qp = g->q.p + (size_t)(b * g->q.s0 + h * g->q.s1) * g->es;
  const char *kp = g->k.p + (size_t)(b * g->k.s0 + kh * g->k.s1) * g->es;
  if (g->D == 0) memset(P, 0, (size_t)(g->T * g->S) * g->es);
  else cf_cpu_gemm(g->dt, g->q.tr, !g->k.tr, g->T, g->S, g->D, g->scale, qp, g->q.ld, kp, g->k.ld,
                   0.0, P, g->S);
  #pragma omp parallel for schedule(static) if (par_rows)
  for (int64_t t = 0; t < g->T; t++) attn_softmax_row(g, b, h, t, (char *)P + (size_t)(t * g->S) * g->es);
}

/* out [B, Hq, T, Dv] = softmax(q k^T * scale, masked) @ v */
int cf_cpu_attention(cf_tensor *out, cf_tensor *const *in, int nin, const cf_args *a) {
  (void)nin;
  attn_geo g;
  if (attn_init(&g, in[0], in[1], in[2], in[3], a->f[0], a->i[0] != 0)) return -1;
  int64_t tasks = g.B * g.Hq;
  if (cf_tensor_numel(out) == 0 || g.S == 0) { /* no keys: every row is zeros */
    memset(cf_tensor_data(out), 0, (size_t)cf_tensor_numel(out) * g.es);
    attn_free(&g);
    return 0;
  }
  bool par = tasks > 1 && (cf_cpu_gemm_small(g.T, g.S, g.D > g.Dv ? g.D : g.Dv) ||
                           tasks >= omp_get_max_threads());
  char *op = cf_tensor_data(out);
  int rc = 0;
  #pragma omp parallel if (par)
  {
    void *P = malloc((size_t)(g.T * g.S) * g.es);
    if (!P) {
      #pragma omp critical(cf_attention_err)
      rc = -1;
    }
    #pragma omp for schedule(dynamic)
    for (int64_t bh = 0; bh < tasks; bh++) {
      if (!P) continue;
      int64_t b = bh / g.Hq, h = bh % g.Hq, kh = h / g.rep;
      attn_probs(&g, b, h, P, !par && g.T * g.S > 16384);
      const char *vp = g.v.p + (size_t)(b * g.v.s0 + kh * g.v.s1) * g.es;
      cf_cpu_gemm(g.dt, false, g.v.tr, g.T, g.Dv, g.S, 1.0, P, g.S, vp, g.v.ld, 0.0,
                  op + (size_t)(bh * g.T * g.Dv) * g.es, g.Dv);
    }
    free(P);
  }
  attn_free(&g);
  if (rc) return CF_ERR("attention: out of memory for the [%lld x %lld] score buffer", (long long)g.T,
                        (long long)g.S);
  return 0;
}

/* gq [B,Hq,T,D], gk [B,Hkv,S,D], gv [B,Hkv,S,Dv] (zeroed, contiguous, any may be NULL) from
 * gout [B,Hq,T,Dv]. One task per (b, kv head): it runs the group's query heads in turn and
 * accumulates their dK, dV, so no two threads write the same rows. */
int cf_cpu_attention_backward(cf_tensor *gq, cf_tensor *gk, cf_tensor *gv, cf_tensor *q,
                              cf_tensor *k, cf_tensor *v, cf_tensor *mask, double scale,
                              bool causal, cf_tensor *gout) {
  attn_geo g;
  if (attn_init(&g, q, k, v, mask, scale, causal)) return -1;
  attn_mat dO;
  if (attn_mat_init(&dO, gout)) { attn_free(&g); return -1; }
  int64_t T = g.T, S = g.S, D = g.D, Dv = g.Dv, tasks = g.B * g.Hkv;
  if (T == 0 || S == 0 || tasks == 0) { attn_free(&g); cf_tensor_release(dO.hold); return 0; }
  int64_t mx = D > Dv ? D : Dv;
  bool par = tasks > 1 && (cf_cpu_gemm_small(T, S, mx) || tasks >= omp_get_max_threads());
  size_t es = g.es;
  int rc = 0;
  #pragma omp parallel if (par)
  {
    void *P = malloc((size_t)(T * S) * es), *dP = malloc((size_t)(T * S) * es);
    if (!P || !dP) {
      #pragma omp critical(cf_attention_err)
      rc = -1;
    }
    #pragma omp for schedule(dynamic)
    for (int64_t bg = 0; bg < tasks; bg++) {
      if (!P || !dP) continue;
      int64_t b = bg / g.Hkv, kh = bg % g.Hkv;
      const char *kp = g.k.p + (size_t)(b * g.k.s0 + kh * g.k.s1) * es;
      const char *vp = g.v.p + (size_t)(b * g.v.s0 + kh * g.v.s1) * es;
      char *gkp = gk ? (char *)cf_tensor_data(gk) + (size_t)(bg * S * D) * es : NULL;
      char *gvp = gv ? (char *)cf_tensor_data(gv) + (size_t)(bg * S * Dv) * es : NULL;
      for (int64_t h = kh * g.rep; h < (kh + 1) * g.rep; h++) {
        const char *qp = g.q.p + (size_t)(b * g.q.s0 + h * g.q.s1) * es;
        const char *dop = dO.p + (size_t)(b * dO.s0 + h * dO.s1) * es;
        attn_probs(&g, b, h, P, !par && T * S > 16384);
        if (gvp) cf_cpu_gemm(g.dt, true, dO.tr, S, Dv, T, 1.0, P, S, dop, dO.ld, 1.0, gvp, Dv);
        if (!gq && !gk) continue;
        if (Dv == 0) memset(dP, 0, (size_t)(T * S) * es);
        else cf_cpu_gemm(g.dt, dO.tr, !g.v.tr, T, S, Dv, 1.0, dop, dO.ld, vp, g.v.ld, 0.0, dP, S);
        /* dS = P * (dP - rowsum(P * dP)) */
        #pragma omp parallel for schedule(static) if (!par && T * S > 16384)
        for (int64_t t = 0; t < T; t++) {
          const char *pr = (const char *)P + (size_t)(t * S) * es;
          char *dr = (char *)dP + (size_t)(t * S) * es;
          double di = 0;
          for (int64_t s = 0; s < S; s++) di += ldf(pr, g.f64, s) * ldf(dr, g.f64, s);
          for (int64_t s = 0; s < S; s++) stf(dr, g.f64, s, ldf(pr, g.f64, s) * (ldf(dr, g.f64, s) - di));
        }
        if (gq)
          cf_cpu_gemm(g.dt, false, g.k.tr, T, D, S, g.scale, dP, S, kp, g.k.ld, 0.0,
                      (char *)cf_tensor_data(gq) + (size_t)((b * g.Hq + h) * T * D) * es, D);
        if (gkp) cf_cpu_gemm(g.dt, true, g.q.tr, S, D, T, g.scale, dP, S, qp, g.q.ld, 1.0, gkp, D);
      }
    }
    free(P);
    free(dP);
  }
  attn_free(&g);
  cf_tensor_release(dO.hold);
  if (rc) return CF_ERR("attention backward: out of memory for [%lld x %lld] buffers", (long long)T,
                        (long long)S);
  return 0;
}

/* ================================================================ losses over a vocabulary */

/* logits [.., V] as [N x V] contiguous; targets with N elements, contiguous and range-checked. */
static int rows_setup(const char *op, cf_tensor *logits0, cf_tensor *targets0, bool ignore_neg,
                      cf_tensor **logits, cf_tensor **targets, int64_t *N, int64_t *V) {
  char b1[128], b2[128];
  if (cpu_float(op, logits0)) return -1;
  if (logits0->ndim < 1) return CF_ERR("%s: logits must be [.., V], got a 0-d tensor", op);
  *V = logits0->shape[logits0->ndim - 1];
  *N = *V ? cf_tensor_numel(logits0) / *V : 0;
  if (targets0) {
    int64_t nt = cf_tensor_numel(targets0);
    int64_t rows = 1;
    for (int d = 0; d < logits0->ndim - 1; d++) rows *= logits0->shape[d];
    if (nt != rows)
      return CF_ERR("%s: targets %s must have one entry per row of logits %s", op,
                    cf_shape_str(targets0, b2, sizeof b2), cf_shape_str(logits0, b1, sizeof b1));
    *N = rows;
  }
  *logits = cf_tensor_contiguous(logits0);
  if (!*logits) return -1;
  *targets = NULL;
  if (targets0) {
    *targets = cf_tensor_contiguous(targets0);
    if (!*targets || check_ids(op, *targets, *V, ignore_neg, "target", "classes of logits", logits0)) {
      cf_tensor_release(*logits);
      cf_tensor_release(*targets);
      return -1;
    }
  }
  return 0;
}

/* 0-d out = mean over rows with target >= 0 of lse(z) - z[target]; 0 when no row counts */
int cf_cpu_cross_entropy(cf_tensor *out, cf_tensor *const *in, int nin, const cf_args *a) {
  (void)nin; (void)a;
  cf_tensor *z = NULL, *tg = NULL;
  int64_t N, V;
  if (rows_setup("cross_entropy", in[0], in[1], true, &z, &tg, &N, &V)) return -1;
  bool f64 = z->dtype == CF_DTYPE_F64;
  const char *zp = cf_tensor_data(z);
  const void *tp = cf_tensor_data(tg);
  double total = 0;
  int64_t count = 0;
  #pragma omp parallel for schedule(static) reduction(+ : total, count) if (N * V > 65536)
  for (int64_t r = 0; r < N; r++) {
    int64_t t = ld_id(tp, tg->dtype, r);
    if (t < 0) continue;
    const char *row = zp + (size_t)(r * V) * cf_dtype_size(z->dtype);
    total -= row_logprob(row, f64, V, 1.0, t);
    count++;
  }
  stf(cf_tensor_data(out), f64, 0, count ? total / (double)count : 0.0);
  cf_tensor_release(z);
  cf_tensor_release(tg);
  return 0;
}

/* gz [.., V] = g * (softmax(z) - onehot(target)) / count on counted rows */
int cf_cpu_cross_entropy_backward(cf_tensor *gz, cf_tensor *logits, cf_tensor *targets, cf_tensor *gout) {
  cf_tensor *z = NULL, *tg = NULL;
  int64_t N, V;
  if (rows_setup("cross_entropy backward", logits, targets, true, &z, &tg, &N, &V)) return -1;
  bool f64 = z->dtype == CF_DTYPE_F64;
  size_t es = cf_dtype_size(z->dtype);
  const char *zp = cf_tensor_data(z);
  const void *tp = cf_tensor_data(tg);
  char *gp = cf_tensor_data(gz);
  int64_t count = 0;
  for (int64_t r = 0; r < N; r++) count += ld_id(tp, tg->dtype, r) >= 0;
  double g = cf_tensor_get_flat(gout, 0), c = count ? g / (double)count : 0;
  #pragma omp parallel for schedule(static) if (N * V > 65536)
  for (int64_t r = 0; r < N; r++) {
    int64_t t = ld_id(tp, tg->dtype, r);
    if (t < 0) continue;
    const char *row = zp + (size_t)(r * V) * es;
    char *grow = gp + (size_t)(r * V) * es;
    row_logprob_grad(row, grow, f64, V, 1.0, t, -c);
  }
  cf_tensor_release(z);
  cf_tensor_release(tg);
  return 0;
}

int cf_infer_token_logprob(const char *op, cf_tensor *const *in, int nin, const cf_args *a, cf_meta *out) {
  (void)nin; (void)a;
  const cf_tensor *z = in[0], *t = in[1];
  char b1[128], b2[128];
  bool ok = z->ndim >= 1 && t->ndim == z->ndim - 1;
  for (int d = 0; ok && d < t->ndim; d++) ok = t->shape[d] == z->shape[d];
  if (!ok)
    return CF_ERR("%s: targets must have logits' shape without the last dim: logits %s, targets %s", op,
                  cf_shape_str(z, b1, sizeof b1), cf_shape_str(t, b2, sizeof b2));
  out->ndim = t->ndim;
  memcpy(out->shape, t->shape, sizeof out->shape);
  out->dtype = z->dtype;
  return 0;
}

/* The rows of a tempered loss (token_logprob, entropy and their backward passes): the
 * temperature checked, logits held as [N x V] contiguous, targets (when given) held contiguous
 * and range-checked (negative ids are skipped rows). */
typedef struct {
  cf_tensor *z, *tg;   /* held logits; held targets or NULL */
  const char *zp;
  const void *tp;      /* target data or NULL */
  int64_t N, V;
  bool f64;
  size_t es;
  double s;            /* 1 / temperature */
} tempered_rows;

static int tempered_rows_init(tempered_rows *g, const char *op, double temperature, cf_tensor *logits,
                              cf_tensor *targets) {
  double temp = 1.0;
  if (check_temperature(op, temperature, &temp)) return -1;
  if (rows_setup(op, logits, targets, true, &g->z, &g->tg, &g->N, &g->V)) return -1;
  g->zp = cf_tensor_data(g->z);
  g->tp = g->tg ? cf_tensor_data(g->tg) : NULL;
  g->f64 = g->z->dtype == CF_DTYPE_F64;
  g->es = cf_dtype_size(g->z->dtype);
  g->s = 1.0 / temp;
  return 0;
}

static void tempered_rows_free(tempered_rows *g) {
  cf_tensor_release(g->z);
  cf_tensor_release(g->tg);
}

/* out [..] = z[target]/T - lse(z/T); 0 where target < 0; -inf on a row of only -inf, as
 * log_softmax gives there (log_p). kernels/nn.cu alike. */
int cf_cpu_token_logprob(cf_tensor *out, cf_tensor *const *in, int nin, const cf_args *a) {
  (void)nin;
  tempered_rows g;
  if (tempered_rows_init(&g, "token_logprob", a->f[0], in[0], in[1])) return -1;
  void *op = cf_tensor_data(out);
  #pragma omp parallel for schedule(static) if (g.N * g.V > 65536)
  for (int64_t r = 0; r < g.N; r++) {
    int64_t t = ld_id(g.tp, g.tg->dtype, r);
    if (t < 0) { stf(op, g.f64, r, 0.0); continue; }
    stf(op, g.f64, r, row_logprob(g.zp + (size_t)(r * g.V) * g.es, g.f64, g.V, g.s, t));
  }
  tempered_rows_free(&g);
  return 0;
}

/* gz [.., V] = g / T * (onehot(target) - softmax(z / T)) on rows with target >= 0 */
int cf_cpu_token_logprob_backward(cf_tensor *gz, cf_tensor *logits, cf_tensor *targets,
                                  double temperature, cf_tensor *gout0) {
  tempered_rows g;
  if (tempered_rows_init(&g, "token_logprob backward", temperature, logits, targets)) return -1;
  cf_tensor *gout = cf_tensor_contiguous(gout0);
  if (!gout) { tempered_rows_free(&g); return -1; }
  const void *gop = cf_tensor_data(gout);
  char *gp = cf_tensor_data(gz);
  #pragma omp parallel for schedule(static) if (g.N * g.V > 65536)
  for (int64_t r = 0; r < g.N; r++) {
    int64_t t = ld_id(g.tp, g.tg->dtype, r);
    if (t < 0) continue;
    const char *row = g.zp + (size_t)(r * g.V) * g.es;
    char *grow = gp + (size_t)(r * g.V) * g.es;
    row_logprob_grad(row, grow, g.f64, g.V, g.s, t, ldf(gop, g.f64, r) * g.s);
  }
  tempered_rows_free(&g);
  cf_tensor_release(gout);
  return 0;
}

/* out [..] = -sum p log p, p = softmax(z / T) = lse(z/T) - sum p z/T */
int cf_cpu_entropy(cf_tensor *out, cf_tensor *const *in, int nin, const cf_args *a) {
  (void)nin;
  tempered_rows g;
  if (tempered_rows_init(&g, "entropy", a->f[0], in[0], NULL)) return -1;
  void *op = cf_tensor_data(out);
  if (g.V == 0) memset(op, 0, (size_t)cf_tensor_numel(out) * g.es); /* no classes: N is 0, rows are 0 */
  #pragma omp parallel for schedule(static) if (g.N * g.V > 65536)
  for (int64_t r = 0; r < g.N; r++)
    stf(op, g.f64, r, row_entropy(g.zp + (size_t)(r * g.V) * g.es, g.f64, g.V, g.s));
  tempered_rows_free(&g);
  return 0;
}

/* gz [.., V] = -g * (p / T) * (log p + H) */
int cf_cpu_entropy_backward(cf_tensor *gz, cf_tensor *logits, double temperature, cf_tensor *gout0) {
  tempered_rows g;
  if (tempered_rows_init(&g, "entropy backward", temperature, logits, NULL)) return -1;
  cf_tensor *gout = cf_tensor_contiguous(gout0);
  if (!gout) { tempered_rows_free(&g); return -1; }
  const void *gop = cf_tensor_data(gout);
  char *gp = cf_tensor_data(gz);
  #pragma omp parallel for schedule(static) if (g.N * g.V > 65536)
  for (int64_t r = 0; r < g.N; r++)
    row_entropy_grad(g.zp + (size_t)(r * g.V) * g.es, gp + (size_t)(r * g.V) * g.es, g.f64, g.V, g.s,
                     ldf(gop, g.f64, r));
  tempered_rows_free(&g);
  cf_tensor_release(gout);
  return 0;
}

/* ================================================================ head_logprob */

int cf_infer_head_logprob(const char *op, cf_tensor *const *in, int nin, const cf_args *a, cf_meta *out) {
  (void)nin; (void)a;
  const cf_tensor *h = in[0], *w = in[1], *t = in[2];
  char b1[128], b2[128], b3[128];
  if (h->ndim != 2 || w->ndim != 2 || t->ndim != 1 || h->shape[1] != w->shape[1] ||
      t->shape[0] != h->shape[0])
    return CF_ERR("%s: expected h [N x D], w [V x D], targets [N]: h %s, w %s, targets %s", op,
                  cf_shape_str(h, b1, sizeof b1), cf_shape_str(w, b2, sizeof b2),
                  cf_shape_str(t, b3, sizeof b3));
  out->ndim = 1;
  out->shape[0] = h->shape[0];
  /* log-probs stay f32 for bf16 inputs (from f32 logits; a bf16 log-prob near -300 would be
   * rounded to a step of 2 nats) */
  out->dtype = h->dtype == CF_DTYPE_BF16 ? CF_DTYPE_F32 : h->dtype;
  return 0;
}

int cf_infer_head_entropy(const char *op, cf_tensor *const *in, int nin, const cf_args *a, cf_meta *out) {
  (void)nin; (void)a;
  const cf_tensor *h = in[0], *w = in[1];
  char b1[128], b2[128];
  if (h->ndim != 2 || w->ndim != 2 || h->shape[1] != w->shape[1])
    return CF_ERR("%s: expected h [N x D], w [V x D]: h %s, w %s", op, cf_shape_str(h, b1, sizeof b1),
                  cf_shape_str(w, b2, sizeof b2));
  out->ndim = 1;
  out->shape[0] = h->shape[0];
  out->dtype = h->dtype == CF_DTYPE_BF16 ? CF_DTYPE_F32 : h->dtype;
  return 0;
}

typedef struct {
  cf_head_mats m;            /* h and w as BLAS reads them (kernel_geo.h, shared with CUDA) */
  cf_tensor *tg;             /* contiguous targets */
  int64_t N, V, D;
  bool f64;
  size_t es;
  double s;                  /* 1 / temperature */
} head_geo;

static void head_free(head_geo *g) {
  cf_head_mats_free(&g->m);
  cf_tensor_release(g->tg);
}

static int head_init(head_geo *g, const char *op, cf_tensor *h, cf_tensor *w, cf_tensor *targets,
                     double temperature) {
  memset(g, 0, sizeof *g);
  double temp = 1.0;
  if (cpu_float(op, h) || check_temperature(op, temperature, &temp)) return -1;
  g->s = 1.0 / temp;
  g->N = h->shape[0];
  g->D = h->shape[1];
  g->V = w->shape[0];
  g->f64 = h->dtype == CF_DTYPE_F64;
  g->es = cf_dtype_size(h->dtype);
  if (g->V > INT_MAX || g->D > INT_MAX) return CF_ERR("%s: a dim exceeds the BLAS limit", op);
  if (targets && (!(g->tg = cf_tensor_contiguous(targets)) ||
                  check_ids(op, g->tg, g->V, true, "target", "rows of w", w))) {
    head_free(g);
    return -1;
  }
  if (cf_head_mats_init(&g->m, h, w)) {
    head_free(g);
    return -1;
  }
  return 0;
}

/* Z [rows x V] = h[r0 .. r0+rows) @ w^T (typed; temperature applied later in double). */
static void head_logits(const head_geo *g, int64_t r0, int64_t rows, void *Z) {
  const cf_head_mats *m = &g->m;
  if (g->D == 0) memset(Z, 0, (size_t)(rows * g->V) * g->es);
  else cf_cpu_gemm(g->f64 ? CF_DTYPE_F64 : CF_DTYPE_F32, m->th, !m->tw, rows, g->V, g->D, 1.0,
                   cf_head_rows(m, r0, g->es), m->ldh, m->wp, m->ldw, 0.0, Z, g->V);
}

/* out [N] per row of z = h @ w^T / T, CF_HEAD_CHUNK rows of logits at a time: with targets
 * log_softmax(z)[target] (head_logprob), without the entropy of softmax(z) (head_entropy) */
static int head_forward(const char *op, cf_tensor *out, cf_tensor *h, cf_tensor *w, cf_tensor *targets,
                        double temperature) {
  head_geo g;
  if (head_init(&g, op, h, w, targets, temperature)) return -1;
  int64_t C = g.N < CF_HEAD_CHUNK ? g.N : CF_HEAD_CHUNK;
  void *Z = malloc((size_t)(C * g.V) * g.es + 1);
  if (!Z) {
    head_free(&g);
    return CF_ERR("%s: out of memory for a [%lld x %lld] logits chunk", op, (long long)C, (long long)g.V);
  }
  const void *tp = g.tg ? cf_tensor_data(g.tg) : NULL;
  void *op_ = cf_tensor_data(out);
  for (int64_t r0 = 0; r0 < g.N; r0 += C) {
    int64_t rows = g.N - r0 < C ? g.N - r0 : C;
    head_logits(&g, r0, rows, Z);
    #pragma omp parallel for schedule(static) if (rows * g.V > 65536)
    for (int64_t i = 0; i < rows; i++) {
      const char *row = (const char *)Z + (size_t)(i * g.V) * g.es;
      if (!tp) { stf(op_, g.f64, r0 + i, row_entropy(row, g.f64, g.V, g.s)); continue; }
      int64_t t = ld_id(tp, g.tg->dtype, r0 + i);
      if (t < 0) { stf(op_, g.f64, r0 + i, 0.0); continue; }
      stf(op_, g.f64, r0 + i, row_logprob(row, g.f64, g.V, g.s, t));
    }
  }
  free(Z);
  head_free(&g);
  return 0;
}

int cf_cpu_head_logprob(cf_tensor *out, cf_tensor *const *in, int nin, const cf_args *a) {
  (void)nin;
  return head_forward("head_logprob", out, in[0], in[1], in[2], a->f[0]);
}

int cf_cpu_head_entropy(cf_tensor *out, cf_tensor *const *in, int nin, const cf_args *a) {
  (void)nin;
  return head_forward("head_entropy", out, in[0], in[1], NULL, a->f[0]);
}

/* With c = dout/dz per chunk (typed, in place of the logits; head_logprob g / T (onehot - p),
 * head_entropy -g / T p (log p + H)): gh rows = c @ w,  gw += c^T @ h rows.  gh [N x D],
 * gw [V x D] zeroed; either may be NULL. targets NULL: head_entropy. */
static int head_backward(const char *op, cf_tensor *gh, cf_tensor *gw, cf_tensor *h, cf_tensor *w,
                         cf_tensor *targets, double temperature, cf_tensor *gout0) {
  head_geo g;
  if (head_init(&g, op, h, w, targets, temperature)) return -1;
  cf_tensor *gout = cf_tensor_contiguous(gout0);
  int64_t C = g.N < CF_HEAD_CHUNK ? g.N : CF_HEAD_CHUNK;
  void *Z = gout ? malloc((size_t)(C * g.V) * g.es + 1) : NULL;
  if (!Z) {
    cf_tensor_release(gout);
    head_free(&g);
    return gout ? CF_ERR("%s: out of memory for a [%lld x %lld] logits chunk", op, (long long)C,
                         (long long)g.V) : -1;
  }
  cf_dtype dt = g.f64 ? CF_DTYPE_F64 : CF_DTYPE_F32;
  const void *tp = g.tg ? cf_tensor_data(g.tg) : NULL, *gop = cf_tensor_data(gout);
  for (int64_t r0 = 0; r0 < g.N; r0 += C) {
    int64_t rows = g.N - r0 < C ? g.N - r0 : C;
    head_logits(&g, r0, rows, Z);
    #pragma omp parallel for schedule(static) if (rows * g.V > 65536)
    for (int64_t i = 0; i < rows; i++) {
      char *row = (char *)Z + (size_t)(i * g.V) * g.es;
      if (!tp) { row_entropy_grad(row, row, g.f64, g.V, g.s, ldf(gop, g.f64, r0 + i)); continue; }
      int64_t t = ld_id(tp, g.tg->dtype, r0 + i);
      if (t < 0) { memset(row, 0, (size_t)g.V * g.es); continue; }
      row_logprob_grad(row, row, g.f64, g.V, g.s, t, ldf(gop, g.f64, r0 + i) * g.s);
    }
    if (g.D == 0) continue;
    if (gh)
      cf_cpu_gemm(dt, false, g.m.tw, rows, g.D, g.V, 1.0, Z, g.V, g.m.wp, g.m.ldw, 0.0,
                  (char *)cf_tensor_data(gh) + (size_t)(r0 * g.D) * g.es, g.D);
    if (gw)
      cf_cpu_gemm(dt, true, g.m.th, g.V, g.D, rows, 1.0, Z, g.V, cf_head_rows(&g.m, r0, g.es), g.m.ldh,
                  1.0, cf_tensor_data(gw), g.D);
  }
  free(Z);
  cf_tensor_release(gout);
  head_free(&g);
  return 0;
}

int cf_cpu_head_logprob_backward(cf_tensor *gh, cf_tensor *gw, cf_tensor *h, cf_tensor *w,
                                 cf_tensor *targets, double temperature, cf_tensor *gout) {
  return head_backward("head_logprob backward", gh, gw, h, w, targets, temperature, gout);
}

int cf_cpu_head_entropy_backward(cf_tensor *gh, cf_tensor *gw, cf_tensor *h, cf_tensor *w,
                                 double temperature, cf_tensor *gout) {
  return head_backward("head_entropy backward", gh, gw, h, w, NULL, temperature, gout);
}
