/* grad_nn.c - backward rules of matmul, embedding, gather, cat, stack, swiglu, rmsnorm, rope,
 * attention, cross_entropy, token_logprob, head_logprob, head_entropy and entropy.
 *
 * Rules run with gradients disabled (autograd.c) and return new references in gin[k] for the
 * inputs with n->needs[k]; the engine reduces broadcast gradients to the input shapes.
 * matmul, cat and stack are written with ops and views, so they work on any device. The others
 * call a fused backward kernel: cf_cpu_<op>_backward (core/cpu/nn.c; swiglu's in
 * core/cpu/elementwise.c) on the CPU, and the cf_cuda_<op>_backward of the same signature
 * (declared in nn_bwd.h) on a GPU when a CUDA build links one in (weak symbols: absent ones
 * report "no cuda kernel"). Saved inputs are recomputed from, never stored: attention
 * recomputes its probabilities, head_logprob its logits chunk by chunk.
 */
#include "autograd.h"
#include "error.h"
#include "nn_ops.h"
#include "ops.h"

#define CF_BWD_WEAK __attribute__((weak))
#include "nn_bwd.h"

/* Run the device's backward kernel for op `name` on arguments (...). */
#define BACKWARD_KERNEL(name, dev, ...)                                        \
  ((dev) == CF_DEVICE_CPU ? cf_cpu_##name##_backward(__VA_ARGS__)              \
   : cf_cuda_##name##_backward ? cf_cuda_##name##_backward(__VA_ARGS__)        \
   : CF_ERR("%s backward: no %s kernel", #name, cf_device_name(dev)))

/* A zero gradient shaped like x (x's dtype and device), or NULL when not wanted. */
static cf_tensor *zeros_like(cf_tensor *x, bool wanted, int *rc) {
  if (!wanted || *rc) return NULL;
  cf_tensor *z = cf_tensor_empty(x->ndim, x->shape, x->dtype, cf_tensor_device(x));
  if (!z) *rc = -1;
  return z;
}

/* Keep gradients only when the kernel succeeded. */
static int finish(int rc, cf_tensor **gin, cf_tensor *const *g, int n) {
  for (int k = 0; k < n; k++) {
    if (rc) cf_tensor_release(g[k]);
    else gin[k] = g[k];
  }
  return rc ? -1 : 0;
}

/* ---------------------------------------------------------------- matmul */

/* t [.., r, c] as a 2-d [(..) * r, c] tensor: a view when possible, else a contiguous copy. */
static cf_tensor *flatten_rows(cf_tensor *t) {
  /* the rows are the leading dims' product (not numel / columns: with no columns that is 0) */
  int64_t rows = 1;
  for (int d = 0; d < t->ndim - 1; d++) rows *= t->shape[d];
  int64_t shape[2] = {rows, t->shape[t->ndim - 1]};
  cf_tensor *v = cf_view_reshape(t, 2, shape);
  if (v) return v;
  cf_error_clear();
  cf_tensor *c = cf_tensor_clone(t);
  if (!c) return NULL;
  v = cf_view_reshape(c, 2, shape);
  cf_tensor_release(c);
  return v;
}

/* B is W^T for a row-major W (a linear layer's weight seen through a transpose view). */
static bool is_transposed_matrix(const cf_tensor *B) {
  return B->ndim == 2 && B->stride[0] == 1 && B->stride[1] == B->shape[0] && B->shape[0] > 1 && B->shape[1] > 1;
}

/* dA = g @ B^T, dB = A^T @ g (transposes are views: BLAS reads them with the trans flag). When B
 * is a plain matrix and A batched, dB is one GEMM over A's rows instead of a batch to reduce.
 * When B = W^T (the linear layers) dB is computed as (g^T @ A)^T: the GEMM writes dW in W's own
 * row-major layout, so the gradient reaching W through the transpose is contiguous and is
 * stored as it is (A^T @ g would give a [k, m] matrix whose transpose the leaf must copy). */
int cf_bwd_matmul(cf_node *n, cf_tensor *gout, cf_tensor **gin) {
  cf_tensor *A = n->in[0], *B = n->in[1];
  if (n->needs[0]) {
    cf_tensor *bt = cf_view_transpose(B, B->ndim - 2, B->ndim - 1);
    if (!bt) return -1;
    gin[0] = cf_op2(CF_OP_matmul, gout, bt);
    cf_tensor_release(bt);
    if (!gin[0]) return -1;
  }
  if (n->needs[1]) {
    cf_tensor *a = NULL, *g = NULL;
    if (B->ndim == 2 && A->ndim > 2) {
      a = flatten_rows(A);
      g = a ? flatten_rows(gout) : NULL;
    } else {
      cf_tensor_retain(A);
      a = A;
      cf_tensor_retain(gout);
      g = gout;
    }
    if (a && g && is_transposed_matrix(B) && a->ndim == 2) {
      cf_tensor *gt = cf_view_transpose(g, 0, 1);
      cf_tensor *dw = gt ? cf_op2(CF_OP_matmul, gt, a) : NULL;   /* [m, k] = W's layout */
      gin[1] = dw ? cf_view_transpose(dw, 0, 1) : NULL;           /* [k, m], B's strides */
      cf_tensor_release(gt);
      cf_tensor_release(dw);
    } else {
      cf_tensor *at = a && g ? cf_view_transpose(a, a->ndim - 2, a->ndim - 1) : NULL;
      gin[1] = at ? cf_op2(CF_OP_matmul, at, g) : NULL;
      cf_tensor_release(at);
    }
    cf_tensor_release(a);
    cf_tensor_release(g);
    if (!gin[1]) return -1;
  }
  return 0;
}

/* ---------------------------------------------------------------- swiglu */

/* One fused pass for both gradients, in the output's shape (run_node sums broadcast dims). */
int cf_bwd_swiglu(cf_node *n, cf_tensor *gout, cf_tensor **gin) {
  int rc = 0;
  cf_tensor *g[2];
  g[0] = zeros_like(gout, n->needs[0], &rc);
  g[1] = zeros_like(gout, n->needs[1], &rc);
  if (rc == 0) rc = BACKWARD_KERNEL(swiglu, cf_tensor_device(gout), g[0], g[1], n->in[0], n->in[1], gout);
  return finish(rc, gin, g, 2);
}

/* ---------------------------------------------------------------- embedding, gather */

int cf_bwd_embedding(cf_node *n, cf_tensor *gout, cf_tensor **gin) {
  int rc = 0;
  cf_tensor *gw = zeros_like(n->in[0], n->needs[0], &rc);
  if (gw) rc = BACKWARD_KERNEL(embedding, cf_tensor_device(gw), gw, n->in[1], gout);
  return finish(rc, gin, &gw, 1);
}

int cf_bwd_gather(cf_node *n, cf_tensor *gout, cf_tensor **gin) {
  int rc = 0;
  cf_tensor *gx = zeros_like(n->in[0], n->needs[0], &rc);
  if (gx) rc = BACKWARD_KERNEL(gather, cf_tensor_device(gx), gx, (int)n->args.i[0], n->in[1], gout);
  return finish(rc, gin, &gx, 1);
}

/* ---------------------------------------------------------------- cat, stack: views of gout */

int cf_bwd_cat(cf_node *n, cf_tensor *gout, cf_tensor **gin) {
  int dim = (int)n->args.i[0];
  int64_t at = 0;
  for (int k = 0; k < n->nin; k++) {
    int64_t len = n->in[k]->shape[dim];
    if (n->needs[k]) {
      gin[k] = cf_view_narrow(gout, dim, at, len);
      if (!gin[k]) return -1;
    }
    at += len;
  }
  return 0;
}

int cf_bwd_stack(cf_node *n, cf_tensor *gout, cf_tensor **gin) {
  int dim = (int)n->args.i[0];
  for (int k = 0; k < n->nin; k++) {
    if (!n->needs[k]) continue;
    gin[k] = cf_view_select(gout, dim, k);
    if (!gin[k]) return -1;
  }
  return 0;
}

/* ---------------------------------------------------------------- fused kernels */

int cf_bwd_rmsnorm(cf_node *n, cf_tensor *gout, cf_tensor **gin) {
  int rc = 0;
  cf_tensor *g[2];
  g[0] = zeros_like(n->in[0], n->needs[0], &rc);
  g[1] = zeros_like(n->in[1], n->needs[1], &rc);
  if (rc == 0)
    rc = BACKWARD_KERNEL(rmsnorm, cf_tensor_device(gout), g[0], g[1], n->in[0], n->in[1],
                         n->args.f[0], gout);
  return finish(rc, gin, g, 2);
}

int cf_bwd_rope(cf_node *n, cf_tensor *gout, cf_tensor **gin) {
  int rc = 0;
  cf_tensor *gx = zeros_like(n->in[0], n->needs[0], &rc);
  if (gx) rc = BACKWARD_KERNEL(rope, cf_tensor_device(gx), gx, n->in[1], n->args.f[0], &n->args.f[1], gout);
  return finish(rc, gin, &gx, 1);
}

int cf_bwd_attention(cf_node *n, cf_tensor *gout, cf_tensor **gin) {
  int rc = 0;
  cf_tensor *g[3];
  for (int k = 0; k < 3; k++) g[k] = zeros_like(n->in[k], n->needs[k], &rc);
  if (rc == 0)
    rc = BACKWARD_KERNEL(attention, cf_tensor_device(gout), g[0], g[1], g[2], n->in[0], n->in[1],
                         n->in[2], n->nin > 3 ? n->in[3] : NULL, n->args.f[0], n->args.i[0] != 0,
                         gout);
  return finish(rc, gin, g, 3);
}

int cf_bwd_cross_entropy(cf_node *n, cf_tensor *gout, cf_tensor **gin) {
  int rc = 0;
  cf_tensor *gz = zeros_like(n->in[0], n->needs[0], &rc);
  if (gz) rc = BACKWARD_KERNEL(cross_entropy, cf_tensor_device(gz), gz, n->in[0], n->in[1], gout);
  return finish(rc, gin, &gz, 1);
}

int cf_bwd_token_logprob(cf_node *n, cf_tensor *gout, cf_tensor **gin) {
  int rc = 0;
  cf_tensor *gz = zeros_like(n->in[0], n->needs[0], &rc);
  if (gz)
    rc = BACKWARD_KERNEL(token_logprob, cf_tensor_device(gz), gz, n->in[0], n->in[1], n->args.f[0], gout);
  return finish(rc, gin, &gz, 1);
}

int cf_bwd_head_logprob(cf_node *n, cf_tensor *gout, cf_tensor **gin) {
  int rc = 0;
  cf_tensor *g[2];
  g[0] = zeros_like(n->in[0], n->needs[0], &rc);
  g[1] = zeros_like(n->in[1], n->needs[1], &rc);
  if (rc == 0)
    rc = BACKWARD_KERNEL(head_logprob, cf_tensor_device(gout), g[0], g[1], n->in[0], n->in[1],
                         n->in[2], n->args.f[0], gout);
  return finish(rc, gin, g, 2);
}

int cf_bwd_head_entropy(cf_node *n, cf_tensor *gout, cf_tensor **gin) {
  int rc = 0;
  cf_tensor *g[2];
  g[0] = zeros_like(n->in[0], n->needs[0], &rc);
  g[1] = zeros_like(n->in[1], n->needs[1], &rc);
  if (rc == 0)
    rc = BACKWARD_KERNEL(head_entropy, cf_tensor_device(gout), g[0], g[1], n->in[0], n->in[1], n->args.f[0], gout);
  return finish(rc, gin, g, 2);
}

int cf_bwd_entropy(cf_node *n, cf_tensor *gout, cf_tensor **gin) {
  int rc = 0;
  cf_tensor *gz = zeros_like(n->in[0], n->needs[0], &rc);
  if (gz) rc = BACKWARD_KERNEL(entropy, cf_tensor_device(gz), gz, n->in[0], n->args.f[0], gout);
  return finish(rc, gin, &gz, 1);
}
