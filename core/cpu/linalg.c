/* linalg.c - matmul on the CPU through OpenBLAS, and the GEMM helpers the other kernels share.
 *
 * a [.., n, k] @ b [.., k, m] -> [.., n, m]; batch dims broadcast like elementwise ops. Inputs
 * are read in place whenever BLAS can address their last two dims: a row-major matrix (strides
 * (ld, 1)) goes as is, a transposed view (strides (1, ld)) goes with the trans flag; anything
 * else (expanded rows, odd strides) is copied to contiguous first. Batch dims may have any
 * strides: each batch item is addressed by its own offset.
 *
 * Threading: one pool, OpenMP's. OpenBLAS (the pthread build) is set to one thread and large
 * products are split here over OpenMP threads into column (or row) blocks, each a single-threaded
 * GEMM. Measured on 2 cores (bench/README.md): letting OpenBLAS run its own threads next to
 * OpenMP's made the transformer-block benchmark 1.5-6x slower, as each pool's idle threads spin
 * (OpenBLAS sched_yield loops, libgomp spin-waits) on the cores the other needs. When b has no
 * batch and a's batch dims fold into its rows, the whole product is one GEMM (the linear layers
 * of a transformer). Otherwise a batched product runs its batch items on OpenMP threads when
 * there are enough of them or each is small, and splits each GEMM otherwise.
 * All CPU GEMMs of confit go through cf_cpu_gemm so that this holds, except the sampler's
 * linear layers (linear in core/nn/generate.c), which split the same way themselves at a lower
 * threshold and call single-threaded OpenBLAS per block.
 * 1-d inputs are refused with a message: view a vector as [1 x k] or [k x 1] first.
 */
#include <cblas.h>
#include <limits.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include "error.h"
#include "kernel_geo.h"
#include "nn_ops.h"
#include "ops.h"

/* Below this many multiply-adds a GEMM is not worth splitting over threads (the threshold
 * OpenBLAS 0.3.x itself uses: SMP_THRESHOLD_MIN * GEMM_MULTITHREAD_THRESHOLD). */
#define GEMM_SMALL_MNK 262144.0

bool cf_cpu_gemm_small(int64_t m, int64_t n, int64_t k) {
  return (double)m * (double)n * (double)k <= GEMM_SMALL_MNK;
}

int cf_blas_layout(int64_t r, int64_t c, int64_t sr, int64_t sc, int64_t *ld, bool *trans) {
  int64_t one_r = r > 1 ? r : 1, one_c = c > 1 ? c : 1;
  if (r == 0 || c == 0) { /* nothing is read: any valid leading dim will do */
    *ld = one_c;
    *trans = false;
    return 0;
  }
  /* as is: row-major with unit column stride */
  if ((c == 1 || sc == 1) && (r == 1 || sr >= one_c)) {
    *ld = r == 1 ? one_c : sr;
    *trans = false;
    if (*ld <= INT_MAX) return 0;
  }
  /* transposed: column-major with unit row stride */
  if ((r == 1 || sr == 1) && (c == 1 || sc >= one_r)) {
    *ld = c == 1 ? one_r : sc;
    *trans = true;
    if (*ld <= INT_MAX) return 0;
  }
  return -1;
}

static void gemm1(cf_dtype dt, bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha,
                  const void *A, int64_t lda, const void *B, int64_t ldb, double beta, void *C,
                  int64_t ldc) {
  enum CBLAS_TRANSPOSE TA = ta ? CblasTrans : CblasNoTrans, TB = tb ? CblasTrans : CblasNoTrans;
  if (dt == CF_DTYPE_F64)
    cblas_dgemm(CblasRowMajor, TA, TB, (int)m, (int)n, (int)k, alpha, (const double *)A, (int)lda,
                (const double *)B, (int)ldb, beta, (double *)C, (int)ldc);
  else
    cblas_sgemm(CblasRowMajor, TA, TB, (int)m, (int)n, (int)k, (float)alpha, (const float *)A,
                (int)lda, (const float *)B, (int)ldb, (float)beta, (float *)C, (int)ldc);
}

void cf_cpu_gemm(cf_dtype dt, bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha,
                 const void *A, int64_t lda, const void *B, int64_t ldb, double beta, void *C,
                 int64_t ldc) {
  if (m == 0 || n == 0) return;
  /* One thread pool for everything: OpenBLAS runs single-threaded and large products are split
   * over OpenMP threads here (see the file header). */
  if (openblas_get_num_threads() != 1) {
    #pragma omp critical(cf_openblas_threads)
    openblas_set_num_threads(1);
  }
  int nth = omp_in_parallel() || cf_cpu_gemm_small(m, n, k) ? 1 : omp_get_max_threads();
  if (nth <= 1) {
    gemm1(dt, ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  size_t es = cf_dtype_size(dt);
  bool split_n = n >= m;
  int64_t len = split_n ? n : m;
  /* blocks of a multiple of 16 rows/columns, one per thread */
  int64_t blk = (len + nth - 1) / nth;
  blk = (blk + 15) / 16 * 16;
  int64_t nblk = (len + blk - 1) / blk;
  #pragma omp parallel for schedule(static) num_threads(nth)
  for (int64_t b = 0; b < nblk; b++) {
    int64_t i0 = b * blk, cnt = len - i0 < blk ? len - i0 : blk;
    if (split_n) {
      const char *Bp = (const char *)B + (size_t)(tb ? i0 * ldb : i0) * es;
      gemm1(dt, ta, tb, m, cnt, k, alpha, A, lda, Bp, ldb, beta, (char *)C + (size_t)i0 * es, ldc);
    } else {
      const char *Ap = (const char *)A + (size_t)(ta ? i0 : i0 * lda) * es;
      gemm1(dt, ta, tb, cnt, n, k, alpha, Ap, lda, B, ldb, beta, (char *)C + (size_t)(i0 * ldc) * es, ldc);
    }
  }
}

/* ---------------------------------------------------------------- shape rule */

int cf_infer_matmul(const char *op, cf_tensor *const *in, int nin, const cf_args *a, cf_meta *out) {
  (void)nin; (void)a;
  const cf_tensor *A = in[0], *B = in[1];
  char b1[128], b2[128];
  if (A->ndim < 2 || B->ndim < 2)
    return CF_ERR("%s: inputs must be at least 2-d, got %s @ %s (view a vector as [1 x k] or "
                  "[k x 1] first)", op, cf_shape_str(A, b1, sizeof b1), cf_shape_str(B, b2, sizeof b2));
  int64_t k = A->shape[A->ndim - 1], k2 = B->shape[B->ndim - 2];
  if (k != k2)
    return CF_ERR("%s: inner dims differ: %s @ %s", op, cf_shape_str(A, b1, sizeof b1),
                  cf_shape_str(B, b2, sizeof b2));
  int nd = A->ndim > B->ndim ? A->ndim : B->ndim;
  for (int d = 0; d < nd - 2; d++) {
    int da = d - (nd - A->ndim), db = d - (nd - B->ndim);
    int64_t sa = da >= 0 ? A->shape[da] : 1, sb = db >= 0 ? B->shape[db] : 1;
    if (sa != sb && sa != 1 && sb != 1)
      return CF_ERR("%s: batch dims do not broadcast: %s @ %s (dim %d: %lld vs %lld)", op,
                    cf_shape_str(A, b1, sizeof b1), cf_shape_str(B, b2, sizeof b2), d + 1,
                    (long long)sa, (long long)sb);
    out->shape[d] = sa == 1 ? sb : sa;
  }
  out->ndim = nd;
  out->shape[nd - 2] = A->shape[A->ndim - 2];
  out->shape[nd - 1] = B->shape[B->ndim - 1];
  out->dtype = A->dtype;
  return 0;
}

/* ---------------------------------------------------------------- kernel */

/* Make t's last two dims BLAS-addressable: *use is t (retained) or a contiguous copy. */
int cf_blas_operand(cf_tensor *t, cf_tensor **use, int64_t *ld, bool *trans) {
  int nd = t->ndim;
  if (cf_blas_layout(t->shape[nd - 2], t->shape[nd - 1], t->stride[nd - 2], t->stride[nd - 1], ld,
                     trans) == 0) {
    cf_tensor_retain(t);
    *use = t;
    return 0;
  }
  cf_tensor *c = cf_tensor_contiguous(t);
  if (!c) return -1;
  if (cf_blas_layout(c->shape[nd - 2], c->shape[nd - 1], c->stride[nd - 2], c->stride[nd - 1], ld,
                     trans)) {
    cf_tensor_release(c);
    return CF_ERR("matmul: a matrix dim is too large for BLAS (%lld)", (long long)c->shape[nd - 1]);
  }
  *use = c;
  return 0;
}

/* Can A's batch dims fold into its rows (one [batch*n x k] row-major matrix with row stride ld)? */
static bool rows_fold(const cf_tensor *A, int64_t ld, bool trans) {
  int nd = A->ndim;
  if (trans && A->shape[nd - 1] != 1) return false;
  int64_t expect = ld * A->shape[nd - 2];
  for (int d = nd - 3; d >= 0; d--) {
    if (A->shape[d] == 1) continue;
    if (A->stride[d] != expect) return false;
    expect *= A->shape[d];
  }
  return true;
}

bool cf_blas_batch_folds(int64_t nb, const cf_tensor *A, int64_t ld, bool trans, const cf_tensor *B) {
  if (nb == 1) return true;
  for (int d = 0; d < B->ndim - 2; d++)
    if (B->shape[d] != 1) return false;
  return rows_fold(A, ld, trans);
}

int cf_cpu_matmul(cf_tensor *out, cf_tensor *const *in, int nin, const cf_args *args) {
  (void)nin; (void)args;
  cf_tensor *A0 = in[0], *B0 = in[1];
  if (A0->dtype != CF_DTYPE_F32 && A0->dtype != CF_DTYPE_F64)
    return CF_ERR("matmul: CPU computes in f32 or f64, got %s (convert with to_dtype)",
                  cf_dtype_name(A0->dtype));
  int nd = out->ndim;
  int64_t n = out->shape[nd - 2], m = out->shape[nd - 1], k = A0->shape[A0->ndim - 1];
  if (n > INT_MAX || m > INT_MAX || k > INT_MAX)
    return CF_ERR("matmul: a matrix dim exceeds the BLAS limit of %d", INT_MAX);
  int64_t total = cf_tensor_numel(out);
  if (total == 0) return 0;
  if (k == 0) { /* an empty sum: zeros (the output is not zero-filled: matmul is CF_FULLWRITE) */
    memset(cf_tensor_data(out), 0, (size_t)total * cf_dtype_size(out->dtype));
    return 0;
  }

  cf_tensor *A = NULL, *B = NULL;
  int64_t lda, ldb;
  bool ta, tb;
  if (cf_blas_operand(A0, &A, &lda, &ta)) return -1;
  if (cf_blas_operand(B0, &B, &ldb, &tb)) { cf_tensor_release(A); return -1; }
  size_t es = cf_dtype_size(out->dtype);
  const char *pa = cf_tensor_data(A), *pb = cf_tensor_data(B);
  char *pc = cf_tensor_data(out);

  int64_t nb = total / (n * m);
  if (cf_blas_batch_folds(nb, A, lda, ta, B)) {
    cf_cpu_gemm(out->dtype, ta, tb, nb * n, m, k, 1.0, pa, lda, pb, ldb, 0.0, pc, m);
    cf_tensor_release(A);
    cf_tensor_release(B);
    return 0;
  }

  /* Batch strides of a and b aligned to the output's batch dims (0 where broadcast). */
  int nbd = nd - 2;
  int64_t sa[CF_MAX_DIMS] = {0}, sb[CF_MAX_DIMS] = {0};
  cf_broadcast_strides(A, nd, nbd, sa);
  cf_broadcast_strides(B, nd, nbd, sb);
  bool par = cf_cpu_gemm_small(n, m, k) || nb >= omp_get_max_threads();
  #pragma omp parallel for schedule(static) if (par)
  for (int64_t bi = 0; bi < nb; bi++) {
    int64_t oa, ob;
    cf_batch_offsets(out->shape, nbd, sa, sb, bi, &oa, &ob);
    cf_cpu_gemm(out->dtype, ta, tb, n, m, k, 1.0, pa + (size_t)oa * es, lda, pb + (size_t)ob * es,
                ldb, 0.0, pc + (size_t)(bi * n * m) * es, m);
  }
  cf_tensor_release(A);
  cf_tensor_release(B);
  return 0;
}
