/* iter.h - a small strided N-d iterator shared by the CPU kernels.
 *
 * Several operands (usually the output first, then the inputs) are walked together over one
 * iteration shape. Each operand broadcasts to that shape: its dims are right-aligned and a dim of
 * size 1 (or a missing leading dim, or an expanded stride-0 dim) gets stride 0. cf_iter_init then
 * drops size-1 dims and merges neighbouring dims that are contiguous for every operand, so
 * contiguous same-shape operands collapse to one flat dim (the fast path: unit strides, no index
 * arithmetic in the inner loop). That dim walk is cf_coalesce_dims (kernel_geo.h), which CUDA's
 * cu_iter shares.
 *
 * The work is cut into "units": a unit is a run of at most CF_ITER_CHUNK elements along the
 * innermost (coalesced) dim of one row. Units are independent, so a kernel runs
 *
 *   #pragma omp parallel for if (it.numel > CF_OMP_MIN)
 *   for (int64_t u = 0; u < it.units; u++) {
 *     int64_t off[CF_ITER_MAX], len = cf_iter_unit(&it, u, off);
 *     for (int64_t j = 0; j < len; j++) ... operand k's element j is at off[k] + j * it.inner_stride[k]
 *   }
 *
 * and the result does not depend on the number of threads. Offsets are in elements from the
 * start of each operand's storage (the view offset included).
 *
 * Invariant: every operand's shape broadcasts to the iteration shape (the caller checked).
 */
#ifndef CF_CPU_ITER_H
#define CF_CPU_ITER_H

#include "kernel_geo.h"
#include "tensor.h"
#include <stdint.h>

#define CF_ITER_MAX CF_WALK_MAX_OPS
#define CF_ITER_CHUNK 4096
#define CF_OMP_MIN 32768 /* fewer elements than this run on one thread */

typedef struct cf_iter {
  int nop, ndim;
  int64_t shape[CF_MAX_DIMS];                 /* coalesced, no size-1 dims */
  int64_t stride[CF_ITER_MAX][CF_MAX_DIMS];
  int64_t base[CF_ITER_MAX];
  int64_t inner, inner_stride[CF_ITER_MAX];   /* the innermost dim (1 and 0 when ndim == 0) */
  int64_t rows, chunks_per_row, units, numel;
} cf_iter;

static inline void cf_iter_init(cf_iter *it, int ndim, const int64_t *shape, int nop,
                                cf_tensor *const *ops) {
  it->nop = nop;
  it->numel = 1;
  for (int d = 0; d < ndim; d++) it->numel *= shape[d];
  int m = cf_coalesce_dims(ndim, shape, nop, (const cf_tensor *const *)ops, it->shape, it->stride);
  it->ndim = m;
  for (int k = 0; k < nop; k++) {
    it->base[k] = ops[k]->offset;
    it->inner_stride[k] = m ? it->stride[k][m - 1] : 0;
  }
  it->inner = m ? it->shape[m - 1] : 1;
  it->rows = 1;
  for (int d = 0; d < m - 1; d++) it->rows *= it->shape[d];
  if (it->numel == 0) { it->rows = 0; it->inner = 0; }
  it->chunks_per_row = it->inner ? (it->inner + CF_ITER_CHUNK - 1) / CF_ITER_CHUNK : 0;
  it->units = it->rows * it->chunks_per_row;
}

/* Offsets of unit u's first element for every operand; returns the unit's length. */
static inline int64_t cf_iter_unit(const cf_iter *it, int64_t u, int64_t *off) {
  int64_t row = u / it->chunks_per_row, j0 = (u % it->chunks_per_row) * CF_ITER_CHUNK;
  for (int k = 0; k < it->nop; k++) off[k] = it->base[k] + j0 * it->inner_stride[k];
  for (int d = it->ndim - 2; d >= 0; d--) {
    int64_t i = row % it->shape[d];
    row /= it->shape[d];
    for (int k = 0; k < it->nop; k++) off[k] += i * it->stride[k][d];
  }
  int64_t len = it->inner - j0;
  return len < CF_ITER_CHUNK ? len : CF_ITER_CHUNK;
}

/* Element i of a storage of any dtype, as double (masks, mixed-dtype inputs). */
static inline double cf_iter_load(const void *data, cf_dtype dt, int64_t i) {
  switch (dt) {
    case CF_DTYPE_F32: return ((const float *)data)[i];
    case CF_DTYPE_F64: return ((const double *)data)[i];
    case CF_DTYPE_BF16: return cf_bf16_to_float(((const uint16_t *)data)[i]);
    case CF_DTYPE_I32: return ((const int32_t *)data)[i];
    case CF_DTYPE_I64: return (double)((const int64_t *)data)[i];
    default: return 0;
  }
}

#endif
