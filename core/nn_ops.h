/* nn_ops.h - C convenience wrappers for the linear-algebra and transformer ops of ops.def, and
 * the CPU helpers their kernels and backward rules share.
 *
 * The wrappers build the cf_args for one op and call cf_op(), so they validate, dispatch to the
 * inputs' device and record autograd exactly like the Lua face does. Each returns a NEW
 * reference or NULL with the message set (core/error.h). Dims are 0-based here.
 *
 * Conventions of these ops (the full spec is ops.def):
 *   matmul        a [.., n, k] @ b [.., k, m]; batch dims broadcast; both inputs at least 2-d
 *                 (a vector must be viewed as [1 x k] or [k x 1] first).
 *   attention     q [B,Hq,T,D], k [B,Hkv,S,D], v [B,Hkv,S,Dv]; causal keys s <= t + (S - T)
 *                 (queries aligned to the end of the keys, as with a KV cache); scale NaN means
 *                 1/sqrt(D); a query row with no allowed key gives zeros (and zero gradients).
 *   cross_entropy rows with target < 0 are ignored; when every row is ignored the loss is 0.
 *   token_logprob targets < 0 give 0 and no gradient.
 *   head_logprob  log_softmax(h @ w^T / temp)[target] computed CF_HEAD_CHUNK rows at a time, so
 *                 the [N x V] logits never exist (forward and backward).
 *   head_entropy  the entropy of softmax(h @ w^T / temp) per row, chunked the same way.
 */
#ifndef CF_NN_OPS_H
#define CF_NN_OPS_H

#include <math.h>
#include <stdbool.h>
#include "ops.h"

/* Rows of h per GEMM chunk in head_logprob (forward and backward). */
#define CF_HEAD_CHUNK 64

/* ---------------------------------------------------------------- wrappers */

static inline cf_tensor *cf_matmul(cf_tensor *a, cf_tensor *b) { return cf_op2(CF_OP_matmul, a, b); }

/* weight [V, D], ids integer [..] -> [.., D] */
static inline cf_tensor *cf_embedding(cf_tensor *weight, cf_tensor *ids) {
  return cf_op2(CF_OP_embedding, weight, ids);
}

/* x [.., D], weight [D] */
static inline cf_tensor *cf_rmsnorm(cf_tensor *x, cf_tensor *weight, double eps) {
  cf_args a = cf_args_none();
  a.f[0] = eps;
  a.nf = 1;
  cf_tensor *in[2] = {x, weight};
  return cf_op(CF_OP_rmsnorm, in, 2, &a);
}

/* x [.., T, D], positions integer [T] or [B, T]; scaling: NULL, or Llama 3's rope scaling (factor,
 * low_freq_factor, high_freq_factor, original_max_position_embeddings; rope_freq.h) */
static inline cf_tensor *cf_rope(cf_tensor *x, cf_tensor *positions, double theta, const double *scaling) {
  cf_args a = cf_args_none();
  a.f[0] = theta;
  a.nf = 1;
  if (scaling) {
    for (int i = 0; i < 4; i++) a.f[1 + i] = scaling[i];
    a.nf = 5;
  }
  cf_tensor *in[2] = {x, positions};
  return cf_op(CF_OP_rope, in, 2, &a);
}

/* mask may be NULL; scale NAN means 1/sqrt(D). */
static inline cf_tensor *cf_attention(cf_tensor *q, cf_tensor *k, cf_tensor *v, cf_tensor *mask,
                                      double scale, bool causal) {
  cf_args a = cf_args_none();
  a.f[0] = scale;
  a.nf = 1;
  a.i[0] = causal;
  a.ni = 1;
  cf_tensor *in[4] = {q, k, v, mask};
  return cf_op(CF_OP_attention, in, 4, &a);
}

static inline cf_tensor *cf_cross_entropy(cf_tensor *logits, cf_tensor *targets) {
  return cf_op2(CF_OP_cross_entropy, logits, targets);
}

/* temperature NAN means 1 */
static inline cf_tensor *cf_token_logprob(cf_tensor *logits, cf_tensor *targets, double temperature) {
  cf_args a = cf_args_none();
  a.f[0] = temperature;
  a.nf = 1;
  cf_tensor *in[2] = {logits, targets};
  return cf_op(CF_OP_token_logprob, in, 2, &a);
}

/* h [N, D], w [V, D], targets [N] -> [N] */
static inline cf_tensor *cf_head_logprob(cf_tensor *h, cf_tensor *w, cf_tensor *targets,
                                         double temperature) {
  cf_args a = cf_args_none();
  a.f[0] = temperature;
  a.nf = 1;
  cf_tensor *in[3] = {h, w, targets};
  return cf_op(CF_OP_head_logprob, in, 3, &a);
}

/* ---------------------------------------------------------------- kernel helpers
 * Shared by core/cpu/linalg.c, core/cpu/nn.c and core/grad_nn.c; model code does not need them.
 */

/* How BLAS can read a [r x c] matrix whose elements sit at i*sr + j*sc: 0 with *ld and *trans
 * set (trans: pass it as the transpose of a row-major [c x r] matrix), -1 when it needs a copy. */
int cf_blas_layout(int64_t r, int64_t c, int64_t sr, int64_t sc, int64_t *ld, bool *trans);
/* Make t's last two dims BLAS-addressable (shared by the CPU and cuBLAS matmuls): *use is t
 * (retained) or a contiguous copy, with its leading dimension and transpose flag. */
int cf_blas_operand(cf_tensor *t, cf_tensor **use, int64_t *ld, bool *trans);
/* Can a batched matmul A [.., n, k] @ B [.., k, m] with nb output batches run as ONE GEMM
 * [nb*n x k] @ [k x m] (shared by the CPU and cuBLAS matmuls)? Yes for one batch, or when B is
 * not batched (its batch dims are all 1) and A's batch dims fold into its rows (A as
 * cf_blas_operand holds it, with row stride ld). */
bool cf_blas_batch_folds(int64_t nb, const cf_tensor *A, int64_t ld, bool trans, const cf_tensor *B);
/* True when a GEMM of this size is too small to split over threads (callers then run several at
 * once on OpenMP threads instead). */
bool cf_cpu_gemm_small(int64_t m, int64_t n, int64_t k);
/* Row-major C[m x n] = alpha * op(A)[m x k] @ op(B)[k x n] + beta * C; dt is f32 or f64.
 * Keeps OpenBLAS single-threaded and splits large products over OpenMP threads itself (one
 * thread pool; see linalg.c), running on the calling thread alone inside a parallel region.
 * CPU code should call this rather than cblas_*gemm directly (the one exception, the sampler's
 * linear in nn/generate.c, makes the same split itself). */
void cf_cpu_gemm(cf_dtype dt, bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha,
                 const void *A, int64_t lda, const void *B, int64_t ldb, double beta, void *C,
                 int64_t ldc);

/* Backward kernels (CPU). Gradient outputs are fresh contiguous zero-filled tensors of the
 * input's shape; NULL for a gradient that is not wanted. gout has the forward output's shape and
 * any strides. A CUDA build provides cf_cuda_<op>_backward with the same signatures (declared
 * in nn_bwd.h); the rules in grad_nn.c pick the one for gout's device. */
int cf_cpu_embedding_backward(cf_tensor *gw, cf_tensor *ids, cf_tensor *gout);
int cf_cpu_gather_backward(cf_tensor *gx, int dim, cf_tensor *index, cf_tensor *gout);
int cf_cpu_rmsnorm_backward(cf_tensor *gx, cf_tensor *gw, cf_tensor *x, cf_tensor *w, double eps,
                            cf_tensor *gout);
/* ga, gb (either may be NULL) shaped like gout, dense; a, b broadcast to it (elementwise.c). */
int cf_cpu_swiglu_backward(cf_tensor *ga, cf_tensor *gb, cf_tensor *a, cf_tensor *b, cf_tensor *gout);
int cf_cpu_rope_backward(cf_tensor *gx, cf_tensor *pos, double theta, const double *scaling, cf_tensor *gout);
int cf_cpu_attention_backward(cf_tensor *gq, cf_tensor *gk, cf_tensor *gv, cf_tensor *q,
                              cf_tensor *k, cf_tensor *v, cf_tensor *mask, double scale,
                              bool causal, cf_tensor *gout);
int cf_cpu_cross_entropy_backward(cf_tensor *gz, cf_tensor *logits, cf_tensor *targets,
                                  cf_tensor *gout);
int cf_cpu_token_logprob_backward(cf_tensor *gz, cf_tensor *logits, cf_tensor *targets,
                                  double temperature, cf_tensor *gout);
int cf_cpu_head_logprob_backward(cf_tensor *gh, cf_tensor *gw, cf_tensor *h, cf_tensor *w,
                                 cf_tensor *targets, double temperature, cf_tensor *gout);
int cf_cpu_head_entropy_backward(cf_tensor *gh, cf_tensor *gw, cf_tensor *h, cf_tensor *w,
                                 double temperature, cf_tensor *gout);
int cf_cpu_entropy_backward(cf_tensor *gz, cf_tensor *logits, double temperature, cf_tensor *gout);

#endif
