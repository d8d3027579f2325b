/* ops.c - the op table and cf_op(): validation, shape inference, dispatch, autograd recording.
 *
 * Kernel, backward and infer functions are referenced by their conventional names as weak
 * symbols: an op whose kernel for a device is not linked in (the CUDA kernels in a CPU-only
 * build) reports "no <device> kernel" at call time instead of failing the link. The op tests
 * check that every op has its CPU kernel and backward rule.
 */
#include "ops.h"
#include "autograd.h"
#include "error.h"
#include "profile.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WEAK __attribute__((weak))
#define CF_OP(name, spec, infer, flags, doc)                                                 \
  WEAK int cf_cpu_##name(cf_tensor *out, cf_tensor *const *in, int nin, const cf_args *a);   \
  WEAK int cf_cuda_##name(cf_tensor *out, cf_tensor *const *in, int nin, const cf_args *a);  \
  WEAK int cf_bwd_##name(cf_node *n, cf_tensor *gout, cf_tensor **gin);                     \
  WEAK cf_tensor *cf_viewop_##name(cf_tensor *const *in, int nin, const cf_args *a);         \
  WEAK int cf_infer_##infer(const char *op, cf_tensor *const *in, int nin, const cf_args *a, \
                            cf_meta *out);
#include "ops.def"
#undef CF_OP

const cf_op_info cf_ops[CF_OP_COUNT] = {
#define CF_OP(name, spec, infer, flags, doc) \
  {#name, spec, flags, doc, cf_infer_##infer, cf_cpu_##name, cf_cuda_##name, cf_viewop_##name, cf_bwd_##name},
#include "ops.def"
#undef CF_OP
};

int cf_op_find(const char *name) {
  for (int i = 0; i < CF_OP_COUNT; i++)
    if (strcmp(cf_ops[i].name, name) == 0) return i;
  return -1;
}

cf_args cf_args_none(void) {
  cf_args a;
  memset(&a, 0, sizeof a);
  return a;
}

/* ---------------------------------------------------------------- shape rules */

int cf_broadcast_shapes(const char *op, cf_tensor *const *in, int nin, cf_meta *out) {
  int nd = 0;
  for (int k = 0; k < nin; k++) if (in[k] && in[k]->ndim > nd) nd = in[k]->ndim;
  out->ndim = nd;
  for (int d = 0; d < nd; d++) {
    int64_t size = 1;
    for (int k = 0; k < nin; k++) {
      if (!in[k]) continue;
      int sd = d - (nd - in[k]->ndim);
      if (sd < 0) continue;
      int64_t s = in[k]->shape[sd];
      if (s == 1) continue;
      if (size != 1 && s != size) {
        char b1[128], b2[128];
        return CF_ERR("%s: shapes %s and %s do not broadcast (dim %d: %lld vs %lld)", op,
                      cf_shape_str(in[0], b1, sizeof b1), cf_shape_str(in[k], b2, sizeof b2),
                      d + 1, (long long)size, (long long)s);
      }
      size = s;
    }
    out->shape[d] = size;
  }
  return 0;
}

int cf_infer_same(const char *op, cf_tensor *const *in, int nin, const cf_args *a, cf_meta *out) {
  (void)op; (void)nin; (void)a;
  out->ndim = in[0]->ndim;
  memcpy(out->shape, in[0]->shape, sizeof out->shape);
  out->dtype = in[0]->dtype;
  return 0;
}

/* masked_fill: the tensor's shape; the mask must broadcast to it (checked once, for every device). */
int cf_infer_masked_fill(const char *op, cf_tensor *const *in, int nin, const cf_args *a, cf_meta *out) {
  cf_tensor *t = in[0], *m = in[1];
  bool ok = m->ndim <= t->ndim;
  for (int d = 0; ok && d < m->ndim; d++) {
    int64_t s = m->shape[d], ts = t->shape[d + t->ndim - m->ndim];
    if (s != 1 && s != ts) ok = false;
  }
  if (!ok) {
    char b1[128], b2[128];
    return CF_ERR("%s: mask %s does not broadcast to the tensor %s", op, cf_shape_str(m, b1, sizeof b1),
                  cf_shape_str(t, b2, sizeof b2));
  }
  return cf_infer_same(op, in, nin, a, out);
}

/* rmsnorm: x's shape; eps (a->f[0]) finite and >= 0, checked once for every device. */
int cf_infer_rmsnorm(const char *op, cf_tensor *const *in, int nin, const cf_args *a, cf_meta *out) {
  if (!(a->f[0] >= 0) || !isfinite(a->f[0])) return CF_ERR("%s: eps must be finite and >= 0, got %g", op, cf_msgnum(a->f[0]));
  return cf_infer_same(op, in, nin, a, out);
}

int cf_infer_broadcast(const char *op, cf_tensor *const *in, int nin, const cf_args *a, cf_meta *out) {
  (void)a;
  out->dtype = in[0]->dtype;
  return cf_broadcast_shapes(op, in, nin, out);
}

/* comparisons: the broadcast shape; 0/1 values in a's dtype when a is floating, else f32 */
int cf_infer_compare(const char *op, cf_tensor *const *in, int nin, const cf_args *a, cf_meta *out) {
  (void)a;
  out->dtype = cf_dtype_is_float(in[0]->dtype) ? in[0]->dtype : CF_DTYPE_F32;
  return cf_broadcast_shapes(op, in, nin, out);
}

int cf_infer_where(const char *op, cf_tensor *const *in, int nin, const cf_args *a, cf_meta *out) {
  (void)a;
  out->dtype = in[1]->dtype;
  return cf_broadcast_shapes(op, in, nin, out);
}

/* Reduction over a->i[0] (CF_DIM_ALL = every dim) keeping it as size 1 when a->i[1]. */
int cf_infer_reduce(const char *op, cf_tensor *const *in, int nin, const cf_args *a, cf_meta *out) {
  (void)op; (void)nin;
  const cf_tensor *t = in[0];
  int dim = (int)a->i[0];
  bool keep = a->i[1] != 0;
  out->dtype = t->dtype;
  out->ndim = 0;
  for (int d = 0; d < t->ndim; d++) {
    bool reduced = dim == CF_DIM_ALL || d == dim;
    if (reduced && !keep) continue;
    out->shape[out->ndim++] = reduced ? 1 : t->shape[d];
  }
  return 0;
}

int cf_infer_argmax(const char *op, cf_tensor *const *in, int nin, const cf_args *a, cf_meta *out) {
  int rc = cf_infer_reduce(op, in, nin, a, out);
  out->dtype = CF_DTYPE_I64;
  return rc;
}

/* argsort: the input's shape, i64 indices */
int cf_infer_argsort(const char *op, cf_tensor *const *in, int nin, const cf_args *a, cf_meta *out) {
  int rc = cf_infer_same(op, in, nin, a, out);
  out->dtype = CF_DTYPE_I64;
  return rc;
}

int cf_infer_scalar(const char *op, cf_tensor *const *in, int nin, const cf_args *a, cf_meta *out) {
  (void)op; (void)nin; (void)a;
  out->ndim = 0;
  out->dtype = in[0]->dtype;
  return 0;
}

int cf_infer_droplast(const char *op, cf_tensor *const *in, int nin, const cf_args *a, cf_meta *out) {
  (void)nin; (void)a;
  if (in[0]->ndim < 1) return CF_ERR("%s: needs at least 1 dim, got a 0-d tensor", op);
  out->ndim = in[0]->ndim - 1;
  memcpy(out->shape, in[0]->shape, sizeof out->shape);
  out->dtype = in[0]->dtype;
  return 0;
}

int cf_infer_none(const char *op, cf_tensor *const *in, int nin, const cf_args *a, cf_meta *out) {
  (void)in; (void)nin; (void)a; (void)out;
  return CF_ERR("%s: makes its own output (no shape rule)", op);
}

/* ---------------------------------------------------------------- validation */

static int check_inputs(const cf_op_info *op, cf_tensor *const *in, int nin) {
  const char *spec = op->spec;
  int k = 0;
  cf_dtype ftype = CF_DTYPE_COUNT;
  cf_device dev = CF_DEVICE_CPU;
  bool have_dev = false;
  bool variadic = strchr(spec, 'L') != NULL;
  int fixed = 0;
  for (const char *p = spec; *p; p++) if (strchr("TIMtim", *p)) fixed++;
  if (!variadic && nin != fixed)
    return CF_ERR("%s: takes %d tensor inputs, got %d", op->name, fixed, nin);
  if (variadic && nin < 1) return CF_ERR("%s: needs at least one tensor", op->name);
  for (const char *p = spec; *p && k < nin; p++) {
    char c = *p;
    if (!strchr("TIMtimL", c)) continue;
    int count = c == 'L' ? nin - k : 1;
    for (int j = 0; j < count; j++, k++) {
      cf_tensor *t = in[k];
      if (!t) {
        if (c == 't' || c == 'i' || c == 'm') continue;
        return CF_ERR("%s: tensor input %d is missing", op->name, k + 1);
      }
      if (!t->storage) return CF_ERR("%s: input %d was freed", op->name, k + 1);
      if (have_dev && cf_tensor_device(t) != dev)
        return CF_ERR("%s: inputs on different devices (%s and %s)", op->name, cf_device_name(dev),
                      cf_device_name(cf_tensor_device(t)));
      dev = cf_tensor_device(t);
      have_dev = true;
      if (c == 'T' || c == 't' || c == 'L') {
        /* layout ops (CF_VIEW) move elements of any dtype: integer ids get sliced too */
        if (op->flags & CF_VIEW) continue;
        if (!cf_dtype_is_float(t->dtype))
          return CF_ERR("%s: input %d must be a floating tensor, got %s (convert with to_dtype)", op->name, k + 1,
                        cf_dtype_name(t->dtype));
        if (ftype == CF_DTYPE_COUNT) ftype = t->dtype;
        else if (t->dtype != ftype)
          return CF_ERR("%s: dtypes differ: %s and %s (convert with to_dtype)", op->name,
                        cf_dtype_name(ftype), cf_dtype_name(t->dtype));
      } else if (c == 'I' || c == 'i') {
        if (t->dtype != CF_DTYPE_I32 && t->dtype != CF_DTYPE_I64)
          return CF_ERR("%s: input %d must be an integer (i32/i64) tensor, got %s", op->name,
                        k + 1, cf_dtype_name(t->dtype));
      }
    }
  }
  return 0;
}

/* ---------------------------------------------------------------- dispatch */

/* out does not require grad although an input does (op has no gradient), or an input's own
 * dependence was cut that way: remember the op, for backward's message. */
static void note_grad_cut(const cf_op_info *op, cf_tensor *const *in, int nin, cf_tensor *out) {
  if (out->requires_grad || out->grad_cut_by) return;
  for (int k = 0; k < nin; k++) if (in[k] == out) return;   /* an input given back is left alone */
  for (int k = 0; k < nin; k++) {
    if (!in[k]) continue;
    if (in[k]->requires_grad && (op->flags & CF_NOGRAD)) { out->grad_cut_by = op->name; return; }
    if (in[k]->grad_cut_by) { out->grad_cut_by = in[k]->grad_cut_by; return; }
  }
}

static cf_tensor *dispatch(cf_op_id id, cf_tensor *const *in, int nin, const cf_args *a) {
  const cf_op_info *op = &cf_ops[id];
  cf_args none = cf_args_none();
  if (!a) a = &none;
  if (check_inputs(op, in, nin)) return NULL;
  cf_device dev = CF_DEVICE_CPU;
  for (int k = 0; k < nin; k++) if (in[k]) { dev = cf_tensor_device(in[k]); break; }

  cf_tensor *out = NULL;
  if (op->flags & CF_VIEW) {
    if (!op->view) { CF_ERR("%s: no view function linked (cf_viewop_%s)", op->name, op->name); return NULL; }
    out = op->view(in, nin, a);
    if (!out) return NULL;
  } else {
    cf_kernel_fn fn = dev == CF_DEVICE_CUDA ? op->cuda : op->cpu;
    if (!fn) { CF_ERR("%s: no %s kernel", op->name, cf_device_name(dev)); return NULL; }
    if (!op->infer) { CF_ERR("%s: no shape rule linked", op->name); return NULL; }
    cf_meta m;
    memset(&m, 0, sizeof m);
    if (op->infer(op->name, in, nin, a, &m)) return NULL;
    out = (op->flags & CF_FULLWRITE) ? cf_tensor_empty_uninit(m.ndim, m.shape, m.dtype, dev)
                                     : cf_tensor_empty(m.ndim, m.shape, m.dtype, dev);
    if (!out) return NULL;
    if (fn(out, in, nin, a)) {
      cf_tensor_release(out);
      return NULL;
    }
  }
  if (!(op->flags & CF_NOGRAD) && cf_grad_enabled()) {
    if (cf_autograd_record(id, in, nin, a, out)) { cf_tensor_release(out); return NULL; }
  }
  if (cf_grad_enabled()) note_grad_cut(op, in, nin, out);
  return out;
}

cf_tensor *cf_op(cf_op_id id, cf_tensor *const *in, int nin, const cf_args *a) {
  if ((int)id < 0 || id >= CF_OP_COUNT) { CF_ERR("unknown op id %d", (int)id); return NULL; }
  if (!cf_prof_active()) return dispatch(id, in, nin, a);
  int region = cf_prof_push(cf_ops[id].name);
  cf_tensor *out = dispatch(id, in, nin, a);
  cf_prof_pop(region);
  return out;
}

cf_tensor *cf_op1(cf_op_id id, cf_tensor *a) {
  cf_tensor *in[1] = {a};
  return cf_op(id, in, 1, NULL);
}

cf_tensor *cf_op2(cf_op_id id, cf_tensor *a, cf_tensor *b) {
  cf_tensor *in[2] = {a, b};
  return cf_op(id, in, 2, NULL);
}

cf_tensor *cf_op_dim(cf_op_id id, cf_tensor *a, int dim, bool keepdim) {
  cf_args args = cf_args_none();
  args.i[0] = dim;
  args.i[1] = keepdim;
  args.ni = 2;
  cf_tensor *in[1] = {a};
  return cf_op(id, in, 1, &args);
}

cf_tensor *cf_op_scalar(cf_op_id id, cf_tensor *a, double s) {
  cf_tensor *b = cf_tensor_scalar(s, a->dtype);
  if (!b) return NULL;
  if (cf_tensor_device(a) != CF_DEVICE_CPU) {
    cf_tensor *d = cf_tensor_to_device(b, cf_tensor_device(a));
    cf_tensor_release(b);
    if (!d) return NULL;
    b = d;
  }
  cf_tensor *r = cf_op2(id, a, b);
  cf_tensor_release(b);
  return r;
}
