/* kernel_geo.c - the host-side geometry both devices' kernels share (see kernel_geo.h). */
#include "kernel_geo.h"
#include "error.h"
#include "nn_ops.h"
#include "ops.h"
#include <math.h>
#include <string.h>

int cf_coalesce_dims(int ndim, const int64_t *shape, int nop, const cf_tensor *const *ops,
                     int64_t *cshape, int64_t (*cstride)[CF_MAX_DIMS]) {
  int64_t sh[CF_MAX_DIMS], st[CF_WALK_MAX_OPS][CF_MAX_DIMS];
  int nd = 0;
  for (int d = 0; d < ndim; d++) {
    if (shape[d] == 1) continue;
    sh[nd] = shape[d];
    for (int k = 0; k < nop; k++) st[k][nd] = cf_broadcast_stride(ops[k], ndim, d);
    nd++;
  }
  /* merge dim d into the dim before it when that is contiguous for every operand */
  int m = 0;
  for (int d = 0; d < nd; d++) {
    bool merge = m > 0;
    for (int k = 0; k < nop && merge; k++)
      if (cstride[k][m - 1] != st[k][d] * sh[d]) merge = false;
    if (merge) {
      cshape[m - 1] *= sh[d];
      for (int k = 0; k < nop; k++) cstride[k][m - 1] = st[k][d];
    } else {
      cshape[m] = sh[d];
      for (int k = 0; k < nop; k++) cstride[k][m] = st[k][d];
      m++;
    }
  }
  return m;
}

int cf_check_temperature(const char *op, double temp, double max_inv, double *out) {
  if (isnan(temp)) temp = 1.0;
  if (!(temp > 0) || isinf(temp)) return CF_ERR("%s: temperature must be > 0 and finite, got %g", op, temp);
  if (!(1.0 / temp <= max_inv)) return CF_ERR("%s: temperature %g is too small (1 / T overflows)", op, temp);
  *out = temp;
  return 0;
}

int cf_reduce_geometry(const char *op, const cf_tensor *x, int64_t dim, bool all_ok,
                       int64_t *outer, int64_t *n, int64_t *inner) {
  if (dim == CF_DIM_ALL && all_ok) {
    *outer = 1;
    *n = cf_tensor_numel(x);
    *inner = 1;
    return 0;
  }
  if (dim < 0 || dim >= x->ndim) {
    char b[128];
    return CF_ERR("%s: dim %lld out of range for a %d-d tensor %s", op, (long long)dim + 1, x->ndim,
                  cf_shape_str(x, b, sizeof b));
  }
  *outer = 1;
  *inner = 1;
  for (int d = 0; d < dim; d++) *outer *= x->shape[d];
  for (int d = (int)dim + 1; d < x->ndim; d++) *inner *= x->shape[d];
  *n = x->shape[dim];
  return 0;
}

int cf_reduce_nonempty(const char *op, const cf_tensor *x, int64_t n, int64_t rows) {
  if (n != 0 || rows <= 0) return 0;
  char b[128];
  return CF_ERR("%s: reduction over an empty dim of %s", op, cf_shape_str(x, b, sizeof b));
}

void cf_head_mats_free(cf_head_mats *m) {
  cf_tensor_release(m->hh);
  cf_tensor_release(m->wh);
  m->hh = m->wh = NULL;
}

int cf_head_mats_init(cf_head_mats *m, cf_tensor *h, cf_tensor *w) {
  memset(m, 0, sizeof *m);
  if (cf_blas_operand(h, &m->hh, &m->ldh, &m->th) || cf_blas_operand(w, &m->wh, &m->ldw, &m->tw)) {
    cf_head_mats_free(m);
    return -1;
  }
  m->hp = cf_tensor_data(m->hh);
  m->wp = cf_tensor_data(m->wh);
  return 0;
}
