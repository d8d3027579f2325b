/* grad_reduce.c - backward rules of the reductions (sum mean max min logsumexp var), of cumsum
 * and sort, and of softmax and log_softmax. argmax, argmin and argsort have none (CF_NOGRAD).
 *
 * A reduced gradient is first given back its reduced dim (kept_dim: an unsqueeze view when the
 * op dropped it; a 0-d gradient of an all-dims reduction broadcasts as it is), then broadcast
 * against the input. sum and mean return stride-0 expanded views of the right shape.
 * max sends the gradient to the FIRST maximum only (min to the first minimum): the one-hot is
 * "arange(n) - argmax == 0", built from table ops so the rule runs on any device.
 */
#include "grad_expr.h"
#include <math.h>

/* t (the op's output or its gradient) with the reduced dim restored as size 1 */
static cf_tensor *kept_dim(cf_gx *s, cf_tensor *t, const cf_args *a) {
  if (!t) { s->failed = true; return NULL; }
  int dim = (int)a->i[0];
  bool keep = a->i[1] != 0;
  if (dim == CF_DIM_ALL || keep) { cf_tensor_retain(t); return gx_keep(s, t); }
  return gx_keep(s, cf_view_unsqueeze(t, dim));
}

static int64_t reduced_count(const cf_tensor *x, const cf_args *a) {
  return a->i[0] == CF_DIM_ALL ? cf_tensor_numel(x) : x->shape[a->i[0]];
}

/* t broadcast to x's shape (a stride-0 view) */
static cf_tensor *expand_to(cf_gx *s, cf_tensor *t, const cf_tensor *x) {
  if (!t) { s->failed = true; return NULL; }
  return gx_keep(s, cf_view_expand(t, x->ndim, x->shape));
}

int cf_bwd_sum(cf_node *n, cf_tensor *g, cf_tensor **gin) {
  cf_gx s = {0};
  gin[0] = gx_result(&s, expand_to(&s, kept_dim(&s, g, &n->args), n->in[0]));
  return gx_end(&s);
}

int cf_bwd_mean(cf_node *n, cf_tensor *g, cf_tensor **gin) {
  cf_gx s = {0};
  double cnt = (double)reduced_count(n->in[0], &n->args);
  cf_tensor *gm = gx_num(&s, CF_OP_div, kept_dim(&s, g, &n->args), cnt);
  gin[0] = gx_result(&s, expand_to(&s, gm, n->in[0]));
  return gx_end(&s);
}

/* One-hot of the first maximum (arg = argmax) or minimum (argmin) along dim (x's shape) times
 * the kept gradient. */
static int extreme_bwd(cf_op_id arg, cf_node *n, cf_tensor *g, cf_tensor **gin) {
  cf_gx s = {0};
  cf_tensor *x = n->in[0];
  int dim = (int)n->args.i[0];
  cf_tensor *xs = x, *gk = NULL;
  int64_t shape[CF_MAX_DIMS];
  if (dim == CF_DIM_ALL) { /* reduce the flat tensor along its one dim */
    int64_t numel = cf_tensor_numel(x);
    cf_tensor *c = gx_keep(&s, cf_tensor_contiguous(x));
    xs = c ? gx_keep(&s, cf_view_reshape(c, 1, &numel)) : NULL;
    gk = gx_keep(&s, cf_view_reshape(g, 0, NULL));
    dim = 0;
  } else {
    gk = kept_dim(&s, g, &n->args);
  }
  if (!xs || !gk) return gx_end(&s);
  cf_tensor *idx = gx_keep(&s, cf_op_dim(arg, xs, dim, true));
  /* positions compare in f32 for bf16 inputs: bf16 holds integers exactly only up to 256 */
  cf_dtype cmp = x->dtype == CF_DTYPE_BF16 ? CF_DTYPE_F32 : x->dtype;
  cf_tensor *idxf = idx ? gx_keep(&s, cf_tensor_to_dtype(idx, cmp)) : NULL;
  int64_t len = xs->shape[dim];
  cf_tensor *ar = gx_keep(&s, cf_tensor_arange(0, (double)len, 1, cmp));
  if (ar && cf_tensor_device(x) != CF_DEVICE_CPU)
    ar = gx_keep(&s, cf_tensor_to_device(ar, cf_tensor_device(x)));
  for (int d = 0; d < xs->ndim; d++) shape[d] = d == dim ? len : 1;
  cf_tensor *arv = ar ? gx_keep(&s, cf_view_reshape(ar, xs->ndim, shape)) : NULL;
  cf_tensor *notmax = gx_op2(&s, CF_OP_sub, arv, idxf);
  cf_tensor *r = gx_where(&s, notmax, gx_const(&s, g, 0.0), gk);
  if (r && xs != x) r = gx_keep(&s, cf_view_reshape(r, x->ndim, x->shape));
  gin[0] = gx_result(&s, r);
  return gx_end(&s);
}

int cf_bwd_max(cf_node *n, cf_tensor *g, cf_tensor **gin) { return extreme_bwd(CF_OP_argmax, n, g, gin); }
int cf_bwd_min(cf_node *n, cf_tensor *g, cf_tensor **gin) { return extreme_bwd(CF_OP_argmin, n, g, gin); }

/* out[i] = sum over j <= i of x[j] (j >= i when reverse): dx[j] = sum over i >= j of g[i], the
 * cumsum of g the other way */
int cf_bwd_cumsum(cf_node *n, cf_tensor *g, cf_tensor **gin) {
  cf_gx s = {0};
  bool reverse = n->args.ni > 1 && n->args.i[1] != 0;
  gin[0] = gx_result(&s, gx_dim(&s, CF_OP_cumsum, g, (int)n->args.i[0], !reverse));
  return gx_end(&s);
}

/* out[j] = x[idx[j]] along dim (idx = argsort(x), a permutation of each row): dx[i] = g[inv[i]]
 * with inv the inverse permutation, argsort(idx) (idx as floats: exact below 2^24 in f32) */
int cf_bwd_sort(cf_node *n, cf_tensor *g, cf_tensor **gin) {
  cf_gx s = {0};
  cf_tensor *x = n->in[0];
  int dim = (int)n->args.i[0];
  cf_tensor *idx = gx_keep(&s, cf_op(CF_OP_argsort, &x, 1, &n->args));
  cf_dtype fdt = x->dtype == CF_DTYPE_F64 ? CF_DTYPE_F64 : CF_DTYPE_F32;
  cf_tensor *idxf = idx ? gx_keep(&s, cf_tensor_to_dtype(idx, fdt)) : NULL;
  cf_tensor *inv = gx_dim(&s, CF_OP_argsort, idxf, dim, false);
  cf_tensor *r = NULL;
  if (inv) {
    cf_args ga = cf_args_none();
    ga.i[0] = dim;
    ga.ni = 1;
    cf_tensor *gi[2] = {g, inv};
    r = gx_keep(&s, cf_op(CF_OP_gather, gi, 2, &ga));
  }
  gin[0] = gx_result(&s, r);
  return gx_end(&s);
}

/* d logsumexp = softmax(x): g * softmax(x), by the softmax op, whose row of all -inf is 0 (as
 * exp(x - out) it was exp(-inf + inf) = NaN, against the forward's no-NaN -inf) */
int cf_bwd_logsumexp(cf_node *n, cf_tensor *g, cf_tensor **gin) {
  cf_gx s = {0};
  cf_tensor *p = gx_dim(&s, CF_OP_softmax, n->in[0], (int)n->args.i[0], false);
  gin[0] = gx_result(&s, gx_op2(&s, CF_OP_mul, kept_dim(&s, g, &n->args), p));
  return gx_end(&s);
}

/* d var = 2 (x - mean) / (n - unbiased) */
int cf_bwd_var(cf_node *n, cf_tensor *g, cf_tensor **gin) {
  cf_gx s = {0};
  cf_tensor *x = n->in[0];
  bool unbiased = n->args.ni < 3 || n->args.i[2] != 0;
  double denom = (double)reduced_count(x, &n->args) - (unbiased ? 1.0 : 0.0);
  cf_tensor *mean = gx_dim(&s, CF_OP_mean, x, (int)n->args.i[0], true);
  cf_tensor *dev = gx_op2(&s, CF_OP_sub, x, mean);
  cf_tensor *gk = gx_num(&s, CF_OP_mul, kept_dim(&s, g, &n->args), 2.0 / denom);
  gin[0] = gx_result(&s, gx_op2(&s, CF_OP_mul, dev, gk));
  return gx_end(&s);
}

/* y = softmax(x): dx = y * (g - sum(g * y)) */
int cf_bwd_softmax(cf_node *n, cf_tensor *g, cf_tensor **gin) {
  cf_gx s = {0};
  int dim = (int)n->args.i[0];
  cf_tensor *y = n->out;
  cf_tensor *dot = gx_dim(&s, CF_OP_sum, gx_op2(&s, CF_OP_mul, g, y), dim, true);
  gin[0] = gx_result(&s, gx_op2(&s, CF_OP_mul, y, gx_op2(&s, CF_OP_sub, g, dot)));
  return gx_end(&s);
}

/* y = log_softmax(x): dx = g - exp(y) * sum(g) */
int cf_bwd_log_softmax(cf_node *n, cf_tensor *g, cf_tensor **gin) {
  cf_gx s = {0};
  int dim = (int)n->args.i[0];
  cf_tensor *tot = gx_dim(&s, CF_OP_sum, g, dim, true);
  cf_tensor *p = gx_op1(&s, CF_OP_exp, n->out);
  gin[0] = gx_result(&s, gx_op2(&s, CF_OP_sub, g, gx_op2(&s, CF_OP_mul, p, tot)));
  return gx_end(&s);
}
