/* cuda_internal.cuh - what the kernel files (kernels/NAME.cu) share: core headers with C linkage, error
 * checks, bf16/f32 load-store helpers, a strided N-d indexer, block reductions and launch
 * helpers. Not a public header (kernels/cuda.h is).
 *
 * Conventions of every kernel file:
 *  - compute dtypes on the GPU are f32 and bf16 (bf16 storage, fp32 math and accumulation);
 *    f64 is CPU-only except for copies/conversions and matmul;
 *  - kernels run on cf_cuda_stream(); host code never waits unless it must read a value back
 *    (range checks of ids, optimizer norms), and then says so;
 *  - a failed launch or CUDA call becomes CF_ERR with the op's name and returns -1.
 */
#ifndef CF_CUDA_INTERNAL_CUH
#define CF_CUDA_INTERNAL_CUH

#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <cublas_v2.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

extern "C" {
#include "tensor.h"
#include "error.h"
#include "ops.h"
#include "autograd.h"
#include "nn_ops.h"
#include "kernel_geo.h"
}
#include "kernels/cuda.h"

typedef __nv_bfloat16 bf16;

#define CF_CU_THREADS 256

static inline cudaStream_t cu_stream(void) { return (cudaStream_t)cf_cuda_stream(); }
static inline cublasHandle_t cu_blas(void) { return (cublasHandle_t)cf_cuda_cublas(); }

/* -1 with "what: CUDA error text" when e is not cudaSuccess. */
static inline int cu_check(cudaError_t e, const char *what) {
  if (e == cudaSuccess) return 0;
  return CF_ERR("%s: CUDA error %s (%s)", what, cudaGetErrorName(e), cudaGetErrorString(e));
}
/* After a kernel launch: reports a bad launch configuration (not asynchronous faults). */
static inline int cu_launched(const char *what) { return cu_check(cudaGetLastError(), what); }

static inline int cu_blas_check(cublasStatus_t s, const char *what) {
  if (s == CUBLAS_STATUS_SUCCESS) return 0;
  return CF_ERR("%s: cuBLAS error %d", what, (int)s);
}

static inline unsigned cu_blocks(int64_t n, int threads) {
  int64_t b = (n + threads - 1) / threads;
  if (b < 1) b = 1;
  if (b > 65535LL * 1024) b = 65535LL * 1024; /* kernels use grid-stride loops */
  return (unsigned)b;
}

/* Launches k<<<grid, block, smem, st>>>(args...), with pdl as a programmatic dependent launch
 * (see cu_pdl_wait). Errors are left for cu_launched (cudaGetLastError). */
template <typename... P, typename... A>
static inline void cu_launch(bool pdl, dim3 grid, dim3 block, size_t smem, cudaStream_t st, void (*k)(P...),
                             A... args) {
  if (!pdl) {
    k<<<grid, block, smem, st>>>(((P)args)...);
    return;
  }
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = st;
  cudaLaunchAttribute at[1];
  at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  at[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = at;
  cfg.numAttrs = 1;
  cudaLaunchKernelEx(&cfg, k, ((P)args)...);
}

/* The op computes in f32 or bf16 on the GPU. */
static inline int cu_check_float(const char *op, const cf_tensor *t) {
  if (t->dtype == CF_DTYPE_F32 || t->dtype == CF_DTYPE_BF16) return 0;
  return CF_ERR("%s: CUDA computes in f32 or bf16, got %s (convert with to_dtype)", op,
                cf_dtype_name(t->dtype));
}

/* ---------------------------------------------------------------- element helpers */

__device__ __forceinline__ float ldf(const float *p, int64_t i) { return p[i]; }
__device__ __forceinline__ float ldf(const bf16 *p, int64_t i) { return __bfloat162float(p[i]); }
__device__ __forceinline__ void stf(float *p, int64_t i, float v) { p[i] = v; }
__device__ __forceinline__ void stf(bf16 *p, int64_t i, float v) { p[i] = __float2bfloat16(v); }

template <typename T> __device__ __forceinline__ T from_float(float v);
template <> __device__ __forceinline__ float from_float<float>(float v) { return v; }
template <> __device__ __forceinline__ bf16 from_float<bf16>(float v) { return __float2bfloat16(v); }
/* 8 bf16 loaded as one 16-byte word -> 8 floats */
__device__ __forceinline__ void bf16x8_to_float(const uint4 &u, float *f) {
  const __nv_bfloat162 *h = (const __nv_bfloat162 *)&u;
#pragma unroll
  for (int j = 0; j < 4; j++) {
    float2 v = __bfloat1622float2(h[j]);
    f[2 * j] = v.x;
    f[2 * j + 1] = v.y;
  }
}
/* Tensor cores (sm_80+): mma.sync.m16n8k16, bf16 x bf16 -> f32, accumulated in place:
 * c[16x8] += a[16x16] b[16x8]. g = lane / 4, i = lane % 4:
 *   a: {(g, 2i..2i+1), (g+8, 2i..), (g, 2i+8..), (g+8, 2i+8..)}   b: {(2i..2i+1, g), (2i+8.., g)}
 *   c: (g, 2i), (g, 2i+1), (g+8, 2i), (g+8, 2i+1) */
__device__ __forceinline__ void cu_mma_bf16(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
               "{%8, %9}, {%0, %1, %2, %3};\n"
               : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* ldmatrix .x4 .trans (the decode attention's P V, gen_attn.cuh): four 8x8 matrices of 16-bit
 * elements from shared memory, row i of matrix j at the address that lane 8 j + i gives (16
 * bytes, 16-byte aligned); lane 4 g + t receives in register j the elements (2 t, g) and
 * (2 t + 1, g) of matrix j, the first in the low half (the transpose of what the plain form hands
 * out). Volatile: the same address reads other data in the next tile, after a barrier */
__device__ __forceinline__ void cu_ldsm_x4_trans(uint32_t r[4], const void *p) {
  uint32_t s = (uint32_t)__cvta_generic_to_shared(p);
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(s));
}

/* Two floats rounded to a bf16 pair in one 32-bit word (lo in the low half: the lower index). */
__device__ __forceinline__ uint32_t cu_pack_bf16x2(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  uint32_t u;
  memcpy(&u, &v, 4);
  return u;
}
/* Programmatic dependent launch (sm_90; cu_launch with pdl): such a kernel may start while its
 * predecessor in the stream still runs. cu_pdl_wait() blocks until the predecessor has completed
 * and its writes are visible (at once when there is none), cu_pdl_trigger() lets this kernel's
 * own successor launch. Before the wait a kernel may only read what nothing in flight writes
 * (weights) and must write nothing; every kernel launched with pdl waits before it ends (so that
 * completing one implies its predecessors completed). No-ops below sm_90. */
__device__ __forceinline__ void cu_pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void cu_pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}
/* Asks for the 128-byte line at p to be brought into L2 (no register, no wait). */
__device__ __forceinline__ void cu_prefetch_l2(const void *p) {
  asm volatile("prefetch.global.L2 [%0];\n" ::"l"(p));
}

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(bf16 v) { return __bfloat162float(v); }

#include "kernels/ld_any.cuh" /* ld_any: element i of any dtype as double */
__device__ __forceinline__ int64_t ld_id(const void *p, int dt, int64_t i) {
  return dt == CF_DTYPE_I64 ? ((const int64_t *)p)[i] : (int64_t)((const int32_t *)p)[i];
}

/* ---------------------------------------------------------------- strided indexer */

#define CU_MAX_OPS CF_WALK_MAX_OPS
/* Up to 4 operands walked over one (coalesced) iteration shape; strides in elements, offsets
 * relative to each operand's data pointer (view offset already applied). */
struct cu_iter {
  int nd, nop;
  int64_t shape[CF_MAX_DIMS];
  int64_t st[CU_MAX_OPS][CF_MAX_DIMS];
  bool contiguous; /* every operand is the same dense row-major walk: offset == index */
};

/* Builds the iterator of ops[0..nop) broadcast to shape (right-aligned, size-1 dims stride 0),
 * dropping size-1 dims and merging dims contiguous for every operand: the CPU's dim walk
 * (cf_coalesce_dims, core/kernel_geo.h). */
static inline void cu_iter_init(cu_iter *it, int ndim, const int64_t *shape, int nop,
                                const cf_tensor *const *ops) {
  int m = cf_coalesce_dims(ndim, shape, nop, ops, it->shape, it->st);
  it->nd = m;
  it->nop = nop;
  it->contiguous = m <= 1;
  for (int k = 0; k < nop && m == 1; k++) if (it->st[k][0] != 1) it->contiguous = false;
}

/* Offsets of flat index i for the first NOP operands. */
template <int NOP>
__device__ __forceinline__ void cu_offsets(const cu_iter &it, int64_t i, int64_t *off) {
#pragma unroll
  for (int k = 0; k < NOP; k++) off[k] = 0;
  for (int d = it.nd - 1; d >= 0; d--) {
    int64_t s = it.shape[d];
    int64_t c = i % s;
    i /= s;
#pragma unroll
    for (int k = 0; k < NOP; k++) off[k] += c * it.st[k][d];
  }
}

/* ---------------------------------------------------------------- block reductions */

#include "kernels/block_reduce.cuh"

/* ---------------------------------------------------------------- shared host helpers */

/* A contiguous f32/bf16 copy or t itself (retained); NULL + message on failure. */
static inline cf_tensor *cu_contig(cf_tensor *t) { return cf_tensor_contiguous(t); }

/* Scratch buffer owned by a scope: released by cu_scratch_free. */
struct cu_scratch {
  void *p;
  size_t n;
};
static inline void *cu_scratch_get(cu_scratch *s, size_t n, const char *what) {
  s->n = n ? n : 16;
  s->p = cf_cuda_alloc(s->n);
  if (!s->p) cf_error_prefix("%s: ", what);
  return s->p;
}
static inline void cu_scratch_free(cu_scratch *s) {
  if (s->p) cf_cuda_free(s->p, s->n);
  s->p = NULL;
}

/* Reads back one int64 written by a kernel (waits for the stream). */
int cu_read_i64(const int64_t *dev, int64_t *host, const char *what);
/* Range check of n ids (any strides) against [lo_ok, limit): 0 ok; -1 + message naming the first
 * offending id. Skipped (returns 0) while the stream is being captured into a graph. */
int cu_check_ids(const char *op, const cf_tensor *ids, int64_t limit, bool allow_negative,
                 const char *what, const cf_tensor *ref);
/* dst [n] = src [n] converted (f32 -> f32/bf16 etc.), contiguous device buffers. */
int cu_convert(void *dst, cf_dtype ddt, const void *src, cf_dtype sdt, int64_t n);

/* cuBLAS GEMM in row-major terms: C[m x n] = alpha op(A)[m x k] op(B)[k x n] + beta C, batched
 * with element strides sa, sb, sc (0 = shared). Types: A and B share at (f32, bf16, f64); C may
 * be at or f32. (matmul.cu) */
int cu_gemm(const char *what, bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha,
            const void *A, int64_t lda, int64_t sa, const void *B, int64_t ldb, int64_t sb,
            float beta, void *C, cf_dtype ct, int64_t ldc, int64_t sc, int64_t batch, cf_dtype at);

#endif
