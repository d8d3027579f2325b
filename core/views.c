/* views.c - the layout ops of the op table (narrow, select, transpose, permute, view, reshape,
 * expand, squeeze, unsqueeze, contiguous, to_dtype): forward through the tensor.h views, so
 * they work on every device, and their backward rules.
 *
 * Arg layout (ops.h): narrow i = {dim, start, len}; select {dim, index}; transpose {d0, d1};
 * permute/view/reshape/expand {n, v1..vn}; squeeze/unsqueeze {dim}; to_dtype {dtype}.
 */
#include "autograd.h"
#include "error.h"
#include "ops.h"
#include <string.h>

static void shape_arg(const cf_args *a, int *n, int64_t *shape) {
  *n = (int)a->i[0];
  for (int d = 0; d < *n && d < CF_MAX_DIMS; d++) shape[d] = a->i[1 + d];
}

cf_tensor *cf_viewop_narrow(cf_tensor *const *in, int nin, const cf_args *a) {
  (void)nin;
  return cf_view_narrow(in[0], (int)a->i[0], a->i[1], a->i[2]);
}

cf_tensor *cf_viewop_select(cf_tensor *const *in, int nin, const cf_args *a) {
  (void)nin;
  return cf_view_select(in[0], (int)a->i[0], a->i[1]);
}

cf_tensor *cf_viewop_transpose(cf_tensor *const *in, int nin, const cf_args *a) {
  (void)nin;
  return cf_view_transpose(in[0], (int)a->i[0], (int)a->i[1]);
}

cf_tensor *cf_viewop_permute(cf_tensor *const *in, int nin, const cf_args *a) {
  (void)nin;
  int perm[CF_MAX_DIMS];
  int n = (int)a->i[0];
  if (n != in[0]->ndim) {
    CF_ERR("permute: %d dims given for a %d-d tensor", n, in[0]->ndim);
    return NULL;
  }
  for (int d = 0; d < n; d++) perm[d] = (int)a->i[1 + d];
  return cf_view_permute(in[0], perm);
}

cf_tensor *cf_viewop_view(cf_tensor *const *in, int nin, const cf_args *a) {
  (void)nin;
  int n;
  int64_t shape[CF_MAX_DIMS];
  shape_arg(a, &n, shape);
  return cf_view_reshape(in[0], n, shape);
}

cf_tensor *cf_viewop_reshape(cf_tensor *const *in, int nin, const cf_args *a) {
  (void)nin;
  int n;
  int64_t shape[CF_MAX_DIMS];
  shape_arg(a, &n, shape);
  return cf_tensor_reshape(in[0], n, shape);
}

cf_tensor *cf_viewop_expand(cf_tensor *const *in, int nin, const cf_args *a) {
  (void)nin;
  int n;
  int64_t shape[CF_MAX_DIMS];
  shape_arg(a, &n, shape);
  return cf_view_expand(in[0], n, shape);
}

/* squeeze {dim}, or CF_DIM_ALL: every size-1 dim goes (a view: such dims never need a copy) */
cf_tensor *cf_viewop_squeeze(cf_tensor *const *in, int nin, const cf_args *a) {
  (void)nin;
  if (a->i[0] != CF_DIM_ALL) return cf_view_squeeze(in[0], (int)a->i[0]);
  cf_tensor *t = in[0];
  int64_t shape[CF_MAX_DIMS];
  int nd = 0;
  for (int d = 0; d < t->ndim; d++) if (t->shape[d] != 1) shape[nd++] = t->shape[d];
  return cf_view_reshape(t, nd, shape);
}

cf_tensor *cf_viewop_unsqueeze(cf_tensor *const *in, int nin, const cf_args *a) {
  (void)nin;
  return cf_view_unsqueeze(in[0], (int)a->i[0]);
}

cf_tensor *cf_viewop_contiguous(cf_tensor *const *in, int nin, const cf_args *a) {
  (void)nin; (void)a;
  /* Always a fresh tensor object (a view when already contiguous) so autograd can attach. */
  if (cf_tensor_is_contiguous(in[0])) return cf_view_alias(in[0]);
  return cf_tensor_clone(in[0]);
}

cf_tensor *cf_viewop_to_dtype(cf_tensor *const *in, int nin, const cf_args *a) {
  (void)nin;
  cf_dtype dt = (cf_dtype)a->i[0];
  if (dt >= CF_DTYPE_COUNT) { CF_ERR("to_dtype: invalid dtype %d", (int)dt); return NULL; }
  if (in[0]->dtype == dt) return cf_view_alias(in[0]);
  return cf_tensor_to_dtype(in[0], dt);
}

/* ---------------------------------------------------------------- backward rules */

/* A zero tensor shaped like x on x's device with gout copied into the region chosen by mk. */
static cf_tensor *scatter_into_zeros(cf_tensor *x, cf_tensor *gout,
                                     cf_tensor *(*mk)(cf_tensor *, const cf_args *), const cf_args *a) {
  cf_tensor *z = cf_tensor_empty(x->ndim, x->shape, gout->dtype, cf_tensor_device(x));
  if (!z) return NULL;
  cf_tensor *region = mk(z, a);
  if (!region || cf_tensor_copy_(region, gout)) {
    cf_tensor_release(region);
    cf_tensor_release(z);
    return NULL;
  }
  cf_tensor_release(region);
  return z;
}

static cf_tensor *narrow_region(cf_tensor *z, const cf_args *a) {
  return cf_view_narrow(z, (int)a->i[0], a->i[1], a->i[2]);
}
static cf_tensor *select_region(cf_tensor *z, const cf_args *a) {
  return cf_view_select(z, (int)a->i[0], a->i[1]);
}

int cf_bwd_narrow(cf_node *n, cf_tensor *gout, cf_tensor **gin) {
  gin[0] = scatter_into_zeros(n->in[0], gout, narrow_region, &n->args);
  return gin[0] ? 0 : -1;
}

int cf_bwd_select(cf_node *n, cf_tensor *gout, cf_tensor **gin) {
  gin[0] = scatter_into_zeros(n->in[0], gout, select_region, &n->args);
  return gin[0] ? 0 : -1;
}

int cf_bwd_transpose(cf_node *n, cf_tensor *gout, cf_tensor **gin) {
  gin[0] = cf_view_transpose(gout, (int)n->args.i[0], (int)n->args.i[1]);
  return gin[0] ? 0 : -1;
}

int cf_bwd_permute(cf_node *n, cf_tensor *gout, cf_tensor **gin) {
  int inv[CF_MAX_DIMS];
  int nd = (int)n->args.i[0];
  for (int d = 0; d < nd; d++) inv[n->args.i[1 + d]] = d;
  gin[0] = cf_view_permute(gout, inv);
  return gin[0] ? 0 : -1;
}

static int reshape_back(cf_node *n, cf_tensor *gout, cf_tensor **gin) {
  cf_tensor *x = n->in[0];
  cf_tensor *v = cf_view_reshape(gout, x->ndim, x->shape);
  if (!v) {
    cf_tensor *c = cf_tensor_clone(gout);
    if (!c) return -1;
    v = cf_view_reshape(c, x->ndim, x->shape);
    cf_tensor_release(c);
  }
  gin[0] = v;
  return v ? 0 : -1;
}

int cf_bwd_view(cf_node *n, cf_tensor *gout, cf_tensor **gin) { return reshape_back(n, gout, gin); }
int cf_bwd_reshape(cf_node *n, cf_tensor *gout, cf_tensor **gin) { return reshape_back(n, gout, gin); }
int cf_bwd_squeeze(cf_node *n, cf_tensor *gout, cf_tensor **gin) { return reshape_back(n, gout, gin); }
int cf_bwd_unsqueeze(cf_node *n, cf_tensor *gout, cf_tensor **gin) { return reshape_back(n, gout, gin); }

int cf_bwd_expand(cf_node *n, cf_tensor *gout, cf_tensor **gin) {
  cf_tensor *x = n->in[0];
  gin[0] = cf_sum_to(gout, x->ndim, x->shape);
  return gin[0] ? 0 : -1;
}

int cf_bwd_contiguous(cf_node *n, cf_tensor *gout, cf_tensor **gin) {
  (void)n;
  cf_tensor_retain(gout);
  gin[0] = gout;
  return 0;
}

int cf_bwd_to_dtype(cf_node *n, cf_tensor *gout, cf_tensor **gin) {
  gin[0] = cf_tensor_to_dtype(gout, n->in[0]->dtype);
  return gin[0] ? 0 : -1;
}
