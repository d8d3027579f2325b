/* matmul.cu - matmul on the GPU through cuBLAS, and cu_gemm, the row-major GEMM helper the other
 * kernel files share (attention fallbacks, head_logprob).
 *
 * a [.., n, k] @ b [.., k, m] -> [.., n, m], batch dims broadcast. Operands are read in place
 * whenever their last two dims are BLAS-addressable (cf_blas_layout): a transposed view (the
 * transformer's weight^T) goes in with the transpose flag, never copied. Anything else (expanded
 * rows, odd strides) becomes a contiguous device copy first.
 *
 * Row-major on a column-major library: a row-major [r x c] matrix with leading dimension ld is
 * the column-major [c x r] matrix with the same ld, so C = A B is computed as C^T = B^T A^T with
 * the operands swapped and no data movement.
 *
 * Batching: when b has no batch and a's batch dims fold into its rows (the linear layers) the
 * product is one GEMM. Otherwise the longest suffix of batch dims that has one uniform stride in
 * both operands runs as one strided-batched GEMM (stride 0 for a broadcast operand), looping on
 * the host over the remaining outer batch dims.
 *
 * Numerics: bf16 inputs with fp32 accumulation (CUBLAS_COMPUTE_32F); f32 with fp32, or TF32
 * tensor cores after cf_cuda_set_tf32(true); f64 in f64.
 */
#include "kernels/cuda_internal.cuh"
#include <limits.h>

static cudaDataType_t cu_type(cf_dtype dt) {
  switch (dt) {
    case CF_DTYPE_BF16: return CUDA_R_16BF;
    case CF_DTYPE_F64: return CUDA_R_64F;
    default: return CUDA_R_32F;
  }
}

int cu_gemm(const char *what, bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha,
            const void *A, int64_t lda, int64_t sa, const void *B, int64_t ldb, int64_t sb,
            float beta, void *C, cf_dtype ct, int64_t ldc, int64_t sc, int64_t batch, cf_dtype at) {
  if (m == 0 || n == 0 || batch == 0) return 0;
  if (m > INT_MAX || n > INT_MAX || k > INT_MAX || lda > INT_MAX || ldb > INT_MAX || ldc > INT_MAX ||
      batch > INT_MAX)
    return CF_ERR("%s: a GEMM dim exceeds the cuBLAS limit of %d (m %lld, n %lld, k %lld)", what,
                  INT_MAX, (long long)m, (long long)n, (long long)k);
  cublasHandle_t h = cu_blas();
  if (!h) return -1;
  cublasComputeType_t comp = CUBLAS_COMPUTE_32F;
  if (at == CF_DTYPE_F64) comp = CUBLAS_COMPUTE_64F;
  else if (at == CF_DTYPE_F32 && cf_cuda_tf32()) comp = CUBLAS_COMPUTE_32F_FAST_TF32;
  double alpha_d = alpha, beta_d = beta;
  const void *pa = at == CF_DTYPE_F64 ? (const void *)&alpha_d : (const void *)&alpha;
  const void *pb = at == CF_DTYPE_F64 ? (const void *)&beta_d : (const void *)&beta;
  cublasOperation_t opB = tb ? CUBLAS_OP_T : CUBLAS_OP_N, opA = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
  cudaDataType_t tA = cu_type(at), tC = cu_type(ct);
  cublasStatus_t s;
  if (k == 0) { /* C = beta C: a scale, done as a GEMM of nothing is not allowed; use k = 1 zeros */
    if (beta != 0) return CF_ERR("%s: GEMM with k = 0 and beta != 0 is not supported", what);
    for (int64_t b = 0; b < batch; b++) {
      size_t es = cf_dtype_size(ct);
      int rc = cu_check(cudaMemset2DAsync((char *)C + (size_t)(b * sc) * es, (size_t)ldc * es, 0,
                                          (size_t)n * es, (size_t)m, cu_stream()), what);
      if (rc) return rc;
    }
    return 0;
  }
  if (batch == 1)
    s = cublasGemmEx(h, opB, opA, (int)n, (int)m, (int)k, pa, B, tA, (int)ldb, A, tA, (int)lda, pb, C,
                     tC, (int)ldc, comp, CUBLAS_GEMM_DEFAULT);
  else
    s = cublasGemmStridedBatchedEx(h, opB, opA, (int)n, (int)m, (int)k, pa, B, tA, (int)ldb, sb, A, tA,
                                   (int)lda, sa, pb, C, tC, (int)ldc, sc, (int)batch, comp,
                                   CUBLAS_GEMM_DEFAULT);
  return cu_blas_check(s, what);
}


extern "C" int cf_cuda_matmul(cf_tensor *out, cf_tensor *const *in, int nin, const cf_args *args) {
  (void)nin; (void)args;
  cf_tensor *A0 = in[0], *B0 = in[1];
  cf_dtype dt = A0->dtype;
  if (dt != CF_DTYPE_F32 && dt != CF_DTYPE_BF16 && dt != CF_DTYPE_F64)
    return CF_ERR("matmul: unsupported dtype %s on CUDA", cf_dtype_name(dt));
  int nd = out->ndim;
  int64_t n = out->shape[nd - 2], m = out->shape[nd - 1], k = A0->shape[A0->ndim - 1];
  int64_t total = cf_tensor_numel(out);
  if (total == 0) return 0;
  if (k == 0) /* an empty sum: zeros (the output is not zero-filled: matmul is CF_FULLWRITE) */
    return cu_check(cudaMemsetAsync(cf_tensor_data(out), 0, (size_t)total * cf_dtype_size(dt), cu_stream()), "matmul");

  cf_tensor *A = NULL, *B = NULL;
  int64_t lda, ldb;
  bool ta, tb;
  if (cf_blas_operand(A0, &A, &lda, &ta)) return -1;
  if (cf_blas_operand(B0, &B, &ldb, &tb)) { cf_tensor_release(A); return -1; }
  size_t es = cf_dtype_size(dt);
  const char *pa = (const char *)cf_tensor_data(A), *pb = (const char *)cf_tensor_data(B);
  char *pc = (char *)cf_tensor_data(out);
  int64_t nb = total / (n * m);
  int rc = 0;

  if (cf_blas_batch_folds(nb, A, lda, ta, B)) {
    rc = cu_gemm("matmul", ta, tb, nb * n, m, k, 1.0f, pa, lda, 0, pb, ldb, 0, 0.0f, pc, dt, m, 0, 1, dt);
  } else {
    /* batch strides of a and b aligned to the output's batch dims (0 where broadcast) */
    int nbd = nd - 2;
    int64_t sa[CF_MAX_DIMS] = {0}, sb[CF_MAX_DIMS] = {0};
    cf_broadcast_strides(A, nd, nbd, sa);
    cf_broadcast_strides(B, nd, nbd, sb);
    /* the longest suffix [j, nbd) of batch dims addressed as idx * (ga, gb) */
    int j = nbd - 1;
    int64_t cnt = out->shape[j], ga = sa[j], gb = sb[j];
    while (j > 0) {
      int64_t s = out->shape[j - 1];
      if (s != 1 && (sa[j - 1] != ga * cnt || sb[j - 1] != gb * cnt)) break;
      cnt *= s;
      j--;
    }
    int64_t outer = nb / cnt;
    for (int64_t o = 0; o < outer && rc == 0; o++) {
      int64_t oa, ob;
      cf_batch_offsets(out->shape, j, sa, sb, o, &oa, &ob);
      rc = cu_gemm("matmul", ta, tb, n, m, k, 1.0f, pa + (size_t)oa * es, lda, ga, pb + (size_t)ob * es,
                   ldb, gb, 0.0f, pc + (size_t)(o * cnt * n * m) * es, dt, m, n * m, cnt, dt);
    }
  }
  cf_tensor_release(A);
  cf_tensor_release(B);
  return rc;
}
