/* kernel_geo.h - host-side geometry and set-up that the CPU kernels (core/cpu/) and the CUDA
 * kernels (kernels/) share, so that both devices see an op's shapes, strides and errors the same
 * way. Each helper here used to be written twice, once per device; change it here and both
 * change together.
 *
 * Plain C with no device code: core builds it without CUDA, and the kernel files include it
 * with C linkage (kernels/cuda_internal.cuh). The BLAS operand helpers that the CPU and cuBLAS
 * matmuls share (cf_blas_operand, cf_blas_batch_folds) are in nn_ops.h; the two generators share
 * cf_gen_key and cf_gen_is_stop in nn/generate.h.
 */
#ifndef CF_KERNEL_GEO_H
#define CF_KERNEL_GEO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "tensor.h"

/* ---------------------------------------------------------------- broadcasting */

/* Stride of dim d of t broadcast to nd dims (t's dims right-aligned): 0 where t has no such dim
 * or has size 1 there, so every index along it reads the same element. */
static inline int64_t cf_broadcast_stride(const cf_tensor *t, int nd, int d) {
  int td = d - (nd - t->ndim);
  return td >= 0 && t->shape[td] != 1 ? t->stride[td] : 0;
}

/* s[0..n) = the strides of the first n of those nd dims (an attention mask over [B,H,T,S]; a
 * matmul operand's batch dims, with nd = the output's ndim). */
static inline void cf_broadcast_strides(const cf_tensor *t, int nd, int n, int64_t *s) {
  for (int d = 0; d < n; d++) s[d] = cf_broadcast_stride(t, nd, d);
}

/* Offsets (in elements) into a and b of batch r of a batched matmul whose output batch dims are
 * shape[0..nd): r unravelled row-major over them, dotted with the batch strides sa and sb. */
static inline void cf_batch_offsets(const int64_t *shape, int nd, const int64_t *sa,
                                    const int64_t *sb, int64_t r, int64_t *oa, int64_t *ob) {
  *oa = 0;
  *ob = 0;
  for (int d = nd - 1; d >= 0; d--) {
    int64_t i = r % shape[d];
    r /= shape[d];
    *oa += i * sa[d];
    *ob += i * sb[d];
  }
}

/* The dims of a strided walk of nop <= CF_WALK_MAX_OPS operands over shape[0..ndim) (the CPU's
 * cf_iter, cpu/iter.h; CUDA's cu_iter): each operand broadcast to shape (cf_broadcast_stride),
 * the size-1 dims of shape dropped, and each dim merged into the one before it when that is
 * contiguous for every operand. Writes the merged shape and the operands' strides and returns
 * how many dims are left (0 for a single element). */
#define CF_WALK_MAX_OPS 4
int cf_coalesce_dims(int ndim, const int64_t *shape, int nop, const cf_tensor *const *ops,
                     int64_t *cshape, int64_t (*cstride)[CF_MAX_DIMS]);

/* ---------------------------------------------------------------- reductions */

/* x seen as [outer, n, inner] around the reduced dim (0-based; CF_DIM_ALL, when all_ok, is
 * outer = inner = 1, n = numel). -1 with "op: dim .. out of range .." when dim is not x's. */
int cf_reduce_geometry(const char *op, const cf_tensor *x, int64_t dim, bool all_ok,
                       int64_t *outer, int64_t *n, int64_t *inner);
/* For max and argmax, which have no value over an empty dim: -1 with "op: reduction over an
 * empty dim of [..]" when the reduced dim is empty (n == 0) and there are rows (rows > 0). */
int cf_reduce_nonempty(const char *op, const cf_tensor *x, int64_t n, int64_t rows);

/* ---------------------------------------------------------------- tempered losses */

/* The temperature of token_logprob, entropy, head_logprob, head_entropy and their backward
 * passes: NaN stands for the default 1. -1 with "op: temperature must be > 0 and finite, got T"
 * or "op: temperature T is too small (1 / T overflows)" unless 1 / T is at most max_inv:
 * DBL_MAX where the kernel scales by 1 / T in double (the CPU), FLT_MAX where in float (CUDA). */
int cf_check_temperature(const char *op, double temp, double max_inv, double *out);

/* ---------------------------------------------------------------- LM head */

/* head_logprob / head_entropy's matrices h [N x D] and w [V x D] as (cu)BLAS reads them: each
 * held (retained, or a contiguous copy: cf_blas_operand) with its data, leading dim and whether
 * it is read transposed. */
typedef struct cf_head_mats {
  cf_tensor *hh, *wh;
  const char *hp, *wp;
  int64_t ldh, ldw;
  bool th, tw;
} cf_head_mats;

/* 0 with both held, or -1 with the message set and nothing held. */
int cf_head_mats_init(cf_head_mats *m, cf_tensor *h, cf_tensor *w);
/* Releases what m holds; a zeroed or freed m is fine. */
void cf_head_mats_free(cf_head_mats *m);

/* Row r0 of h (elements of es bytes) as the start of a GEMM operand over rows r0.. */
static inline const char *cf_head_rows(const cf_head_mats *m, int64_t r0, size_t es) {
  return m->hp + (size_t)(m->th ? r0 : r0 * m->ldh) * es;
}

#endif
