/* ops.h - op dispatch: one table (ops.def) drives kernels, autograd, the Lua face and tests.
 *
 * cf_op() validates the inputs against the op's spec, infers the output shape, allocates the
 * output on the inputs' device, runs the device's kernel and, when gradients are enabled and an
 * input requires them, records an autograd node (autograd.h). Kernels write into a fresh
 * contiguous output (destination passing); inputs may have any strides (a kernel that needs
 * contiguous inputs calls cf_tensor_contiguous itself). The output is zero-filled unless the op
 * is flagged CF_FULLWRITE (ops.def): then it is uninitialised (cf_tensor_empty_uninit; 0xFF
 * bytes in poison mode) and every kernel of the op must write every element.
 *
 * Args: non-tensor arguments travel in cf_args. Spec letters are assigned in order to integer
 * slots a->i[] (d D e x n k c y; s and p write a count then the values) and float slots a->f[]
 * (f F). Dims are already 0-based and non-negative; D absent is CF_DIM_ALL; F absent is NaN.
 */
#ifndef CF_OPS_H
#define CF_OPS_H

#include "tensor.h"

#define CF_DIM_ALL (-1)
#define CF_MAX_ARGS (CF_MAX_DIMS + 6)

typedef struct cf_args {
  int64_t i[CF_MAX_ARGS];
  double f[6];
  int ni, nf;
} cf_args;

typedef enum {
#define CF_OP(name, spec, infer, flags, doc) CF_OP_##name,
#include "ops.def"
#undef CF_OP
  CF_OP_COUNT
} cf_op_id;

enum { CF_VIEW = 1, CF_NOGRAD = 2, CF_FULLWRITE = 4 };

typedef struct cf_meta {
  int ndim;
  int64_t shape[CF_MAX_DIMS];
  cf_dtype dtype;
} cf_meta;

struct cf_node;
typedef int (*cf_infer_fn)(const char *op, cf_tensor *const *in, int nin, const cf_args *a, cf_meta *out);
typedef int (*cf_kernel_fn)(cf_tensor *out, cf_tensor *const *in, int nin, const cf_args *a);
typedef cf_tensor *(*cf_viewop_fn)(cf_tensor *const *in, int nin, const cf_args *a);
typedef int (*cf_backward_fn)(struct cf_node *n, cf_tensor *gout, cf_tensor **gin);

typedef struct cf_op_info {
  const char *name;
  const char *spec;
  int flags;
  const char *doc;
  cf_infer_fn infer;
  cf_kernel_fn cpu;
  cf_kernel_fn cuda;
  cf_viewop_fn view;
  cf_backward_fn backward;
} cf_op_info;

extern const cf_op_info cf_ops[CF_OP_COUNT];

/* Look an op up by name; -1 when unknown. */
int cf_op_find(const char *name);

/* Run op `id` on nin inputs (NULL for an absent optional input). New reference or NULL. */
cf_tensor *cf_op(cf_op_id id, cf_tensor *const *in, int nin, const cf_args *a);

/* Shorthands for C callers (backward rules, the transformer). */
cf_tensor *cf_op1(cf_op_id id, cf_tensor *a);
cf_tensor *cf_op2(cf_op_id id, cf_tensor *a, cf_tensor *b);
cf_tensor *cf_op_dim(cf_op_id id, cf_tensor *a, int dim, bool keepdim);  /* sum/mean/max/softmax.. */
cf_tensor *cf_op_scalar(cf_op_id id, cf_tensor *a, double s);   /* add/sub/mul/div/pow by a number */
cf_args cf_args_none(void);

/* Shape helpers for kernels and infer rules. */
int cf_broadcast_shapes(const char *op, cf_tensor *const *in, int nin, cf_meta *out);

/* Infer rules shared by several ops (named in ops.def's infer column). */
#define CF_INFER_DECL(name) \
  int cf_infer_##name(const char *op, cf_tensor *const *in, int nin, const cf_args *a, cf_meta *out);
CF_INFER_DECL(same)
CF_INFER_DECL(broadcast)
CF_INFER_DECL(where)
CF_INFER_DECL(compare)
CF_INFER_DECL(reduce)
CF_INFER_DECL(argmax)
CF_INFER_DECL(argsort)
CF_INFER_DECL(scalar)
CF_INFER_DECL(droplast)
CF_INFER_DECL(none)

#endif
