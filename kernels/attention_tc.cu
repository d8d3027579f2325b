/* attention_tc.cu - the tensor-core path of the attention op (FlashAttention-2 style), for its
 * common case: bf16, no mask, causal or not, D = Dv in {64, 128}, q/k/v (and dO) with a unit
 * last-dim stride, 16-byte aligned data and row/head/batch strides that are multiples of 8
 * elements (both the contiguous [B,H,T,D] layout and the model's [B,T,H,D]-strided views
 * qualify). Anything else falls back to the CUDA-core kernels of attention.cu.
 *
 * Selection: attention.cu calls cu_attention_tc_forward / _backward first; they return 1 when
 * the case does not qualify or the path is off. The path is on by default (validated on an H200:
 * tests/gpu/test_attention_tc.lua and the whole GPU suite); CONFIT_ATTN_TC=0 in the environment
 * (read once) or cf_cuda_set_attention_tc(false) turns it off.
 *
 * Semantics are the op's (attention.cu): q [B,Hq,T,D], k/v [B,Hkv,S,D], query head h reads kv
 * head h / (Hq / Hkv); causal: key s is visible to query t when s <= t + (S - T); a query row
 * that sees no key gives zeros and zero gradients, one with a NaN score NaN (its lse is NaN).
 *
 * Tiling. Every kernel runs 4 warps (128 threads). A tile is 64 rows of D bf16 in shared memory
 * with rows padded to D + 8 elements (272 or 144 bytes: the 8 rows an ldmatrix phase reads fall
 * in distinct 16-byte bank groups). Tiles are filled with cp.async (16 bytes per thread, rows
 * past the end zero-filled) and the streamed operand is double buffered: tile j + 1 is in flight
 * while tile j is used; a barrier at the end of each step keeps a buffer from being refilled
 * while a warp still reads it. Each warp owns 16 rows of the block's own tile; all products are
 * mma.sync.m16n8k16 bf16 x bf16 -> f32, with operands loaded by ldmatrix (x4; .trans when the
 * stored matrix is [k][n]), and products of an accumulator (C layout) with a tile reuse the
 * accumulator, rounded to bf16, as the A operand (the C and A layouts agree row-wise).
 * Scores are kept in base 2: x = (q . k) * scale * log2(e), p = exp2(x - m).
 *
 * Forward (tc_fwd_kernel): a block owns 64 query rows of one (b, h) and walks the key tiles up
 * to the last key its last row sees (tiles past it are skipped); S = Q K^T, an online softmax per
 * row in registers (running max m and sum l; each thread holds two rows' partial sums, combined
 * over the 4 threads of a row at the end), O += P V. Causal blocks are launched heaviest first.
 * In STATS mode (backward) it writes, per query row, lse = m + log2 l (base 2; +inf for an
 * empty row so that p = 0) and Di = dO . O (fp32 O) instead of O: the op has one output, so the
 * backward recomputes them (one forward's cost) rather than trusting a cache.
 *
 * Backward: dS = P (dP - Di), dP = dO V^T.
 *  - tc_dq_kernel: like the forward (64 query rows, key tiles streamed): S, P from lse, dP, dS,
 *    dQ += dS K; dQ = scale * dQ. No atomics.
 *  - tc_dkv_kernel: a block owns 64 key rows and one QUERY head h (grid over Hq, not Hkv, so a
 *    GQA group still fills the GPU) and streams that head's query tiles (Q, dO, lse, Di) from the
 *    first query that sees its first key: S^T = K Q^T, P^T, dV += P^T dO, dP^T = V dO^T,
 *    dS^T, dK += dS^T Q, in two halves of 32 queries per tile to bound the registers. With one
 *    query head per kv head it writes dK, dV (bf16) directly; otherwise it writes fp32 per-head
 *    partials [B,Hq,S,D] and tc_group_sum_kernel adds the group's heads in a fixed order.
 *  Everything is deterministic.
 */
/* ---- primitives: the inline PTX (cp.async, ldmatrix) and the dynamic shared memory, which
 * tests/c/test_attention_emu.cpp defines its own way to run the kernels on the CPU ---- */
#include "kernels/cuda_internal.cuh"

#include <stdlib.h>

/* 16 bytes global -> shared, asynchronously; zeros when !ok (src is then not read). */
__device__ __forceinline__ void tc_cp16(bf16 *dst, const bf16 *src, bool ok) {
  unsigned d = (unsigned)__cvta_generic_to_shared(dst);
  int n = ok ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(d), "l"(src), "r"(n) : "memory");
}
__device__ __forceinline__ void tc_cp_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
/* Waits until at most N committed groups are still in flight (this thread's copies only). */
template <int N>
__device__ __forceinline__ void tc_cp_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory"); }

/* Four 8x8 b16 matrices; lane l gives the address of row l % 8 of matrix l / 8. Register i gets
 * matrix i's (row lane/4, cols 2(lane%4), +1); .trans: (rows 2(lane%4), +1, col lane/4). */
__device__ __forceinline__ void tc_ldsm(uint32_t r[4], const bf16 *p) {
  unsigned a = (unsigned)__cvta_generic_to_shared(p);
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(a) : "memory");
}
__device__ __forceinline__ void tc_ldsm_t(uint32_t r[4], const bf16 *p) {
  unsigned a = (unsigned)__cvta_generic_to_shared(p);
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(a) : "memory");
}

/* A kernel's dynamic shared memory (the launch's byte count), 16-byte aligned. */
#define TC_SMEM(name) extern __shared__ __align__(16) unsigned char name[]
/* ---- primitives (end) ---- */

#include "kernels/attention_tc.cuh"

/* ---- host side ---- */

static int tc_state = -1; /* -1: not yet read from CONFIT_ATTN_TC */

static bool tc_enabled(void) {
  if (tc_state < 0) {
    const char *e = getenv("CONFIT_ATTN_TC");
    tc_state = !(e && strcmp(e, "0") == 0);
  }
  return tc_state == 1;
}

extern "C" bool cf_cuda_set_attention_tc(bool on) {
  bool old = tc_enabled();
  tc_state = on ? 1 : 0;
  return old;
}

/* A q/k/v/dO operand the kernels can stream: bf16 on the GPU, 4-d, unit last stride, 16-byte
 * aligned, other strides multiples of 8 elements (size-1 dims' strides ignored). */
static bool tc_operand(const cf_tensor *t, int64_t *st) {
  if (!t || t->dtype != CF_DTYPE_BF16 || t->ndim != 4 || cf_tensor_device(t) != CF_DEVICE_CUDA) return false;
  if (t->stride[3] != 1) return false;
  for (int d = 0; d < 3; d++) {
    int64_t s = t->shape[d] == 1 ? 0 : t->stride[d];
    if (s < 0 || s % 8) return false;
    st[d] = s;
  }
  return ((uintptr_t)cf_tensor_data(t) & 15) == 0;
}

/* An output the kernels write densely: NULL, or contiguous bf16 on the GPU, 16-byte aligned, shaped like ref. */
static bool tc_dense_like(const cf_tensor *t, const cf_tensor *ref) {
  if (!t) return true;
  if (t->dtype != CF_DTYPE_BF16 || t->ndim != 4 || cf_tensor_device(t) != CF_DEVICE_CUDA) return false;
  for (int d = 0; d < 4; d++) if (t->shape[d] != ref->shape[d]) return false;
  return cf_tensor_is_contiguous(t) && ((uintptr_t)cf_tensor_data(t) & 15) == 0;
}

/* Fills g when the case qualifies (and the path is on); false sends the caller to the fallback. */
static bool tc_setup(tc_geo *g, cf_tensor *q, cf_tensor *k, cf_tensor *v, cf_tensor *mask, cf_tensor *gout,
                     double scale, bool causal) {
  if (!tc_enabled() || mask) return false;
  memset(g, 0, sizeof *g);
  if (!tc_operand(q, g->qs) || !tc_operand(k, g->ks) || !tc_operand(v, g->vs)) return false;
  if (gout && !tc_operand(gout, g->os)) return false;
  const int64_t B = q->shape[0], Hq = q->shape[1], T = q->shape[2], D = q->shape[3];
  const int64_t Hkv = k->shape[1], S = k->shape[2];
  if (D != 64 && D != 128) return false;
  if (k->shape[0] != B || k->shape[3] != D) return false;
  for (int d = 0; d < 4; d++) if (v->shape[d] != k->shape[d]) return false;
  if (gout) for (int d = 0; d < 4; d++) if (gout->shape[d] != q->shape[d]) return false;
  if (B < 1 || Hq < 1 || Hkv < 1 || T < 1 || S < 1 || Hq % Hkv) return false;
  if (B > 65535 || Hq > 65535 || T > (1 << 28) || S > (1 << 28)) return false;
  g->q = (const bf16 *)cf_tensor_data(q);
  g->k = (const bf16 *)cf_tensor_data(k);
  g->v = (const bf16 *)cf_tensor_data(v);
  g->dO = gout ? (const bf16 *)cf_tensor_data(gout) : NULL;
  g->Hq = (int)Hq;
  g->Hkv = (int)Hkv;
  g->rep = (int)(Hq / Hkv);
  g->T = (int)T;
  g->S = (int)S;
  g->causal = causal;
  double sc = isnan(scale) ? 1.0 / sqrt((double)D) : scale;
  g->scale = (float)sc;
  g->c = (float)(sc * 1.4426950408889634);
  return true;
}

template <typename K>
static int tc_launch_smem(K kernel, size_t bytes, const char *op) {
  if (bytes <= 48 * 1024) return 0;
  return cu_check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes), op);
}

template <int D>
static int tc_forward(bf16 *out, float *lse, float *Di, const tc_geo &g, int B, bool stats) {
  const char *op = stats ? "attention backward (tensor cores, stats)" : "attention (tensor cores)";
  size_t smem = tc_fwd_smem(D);
  dim3 grid((unsigned)((g.T + TC_BR - 1) / TC_BR), (unsigned)g.Hq, (unsigned)B);
  if (stats) {
    if (tc_launch_smem(tc_fwd_kernel<D, true>, smem, op)) return -1;
    tc_fwd_kernel<D, true><<<grid, TC_THREADS, smem, cu_stream()>>>(NULL, lse, Di, g);
  } else {
    if (tc_launch_smem(tc_fwd_kernel<D, false>, smem, op)) return -1;
    tc_fwd_kernel<D, false><<<grid, TC_THREADS, smem, cu_stream()>>>(out, NULL, NULL, g);
  }
  return cu_launched(op);
}

/* 1 = not taken (off or the case does not qualify: use attention.cu's kernels), 0 = done, -1 = error. */
int cu_attention_tc_forward(cf_tensor *out, cf_tensor *q, cf_tensor *k, cf_tensor *v, cf_tensor *mask, double scale,
                            bool causal) {
  tc_geo g;
  if (!tc_setup(&g, q, k, v, mask, NULL, scale, causal) || !tc_dense_like(out, q)) return 1;
  bf16 *o = (bf16 *)cf_tensor_data(out);
  int B = (int)q->shape[0];
  return q->shape[3] == 64 ? tc_forward<64>(o, NULL, NULL, g, B, false) : tc_forward<128>(o, NULL, NULL, g, B, false);
}

template <int D>
static int tc_backward(bf16 *gq, bf16 *gk, bf16 *gv, const tc_geo &g, int B, float *lse, float *Di, float *pk,
                       float *pv) {
  if (tc_forward<D>(NULL, lse, Di, g, B, true)) return -1;
  if (gq) {
    const char *op = "attention backward (tensor cores, dq)";
    size_t smem = tc_dq_smem(D);
    if (tc_launch_smem(tc_dq_kernel<D>, smem, op)) return -1;
    dim3 grid((unsigned)((g.T + TC_BR - 1) / TC_BR), (unsigned)g.Hq, (unsigned)B);
    tc_dq_kernel<D><<<grid, TC_THREADS, smem, cu_stream()>>>(gq, lse, Di, g);
    if (cu_launched(op)) return -1;
  }
  if (gk || gv) {
    const char *op = "attention backward (tensor cores, dk dv)";
    size_t smem = tc_dkv_smem(D);
    dim3 grid((unsigned)((g.S + TC_BC - 1) / TC_BC), (unsigned)g.Hq, (unsigned)B);
    if (g.rep == 1) {
      if (tc_launch_smem(tc_dkv_kernel<D, false>, smem, op)) return -1;
      tc_dkv_kernel<D, false><<<grid, TC_THREADS, smem, cu_stream()>>>(gk, gv, NULL, NULL, lse, Di, g);
      if (cu_launched(op)) return -1;
    } else {
      if (tc_launch_smem(tc_dkv_kernel<D, true>, smem, op)) return -1;
      tc_dkv_kernel<D, true><<<grid, TC_THREADS, smem, cu_stream()>>>(NULL, NULL, pk, pv, lse, Di, g);
      if (cu_launched(op)) return -1;
      int64_t SD = (int64_t)g.S * D, n4 = (int64_t)B * g.Hkv * SD / 4;
      unsigned blocks = cu_blocks(n4, CF_CU_THREADS);
      if (gk) tc_group_sum_kernel<<<blocks, CF_CU_THREADS, 0, cu_stream()>>>(gk, pk, n4, g.rep, SD);
      if (gv) tc_group_sum_kernel<<<blocks, CF_CU_THREADS, 0, cu_stream()>>>(gv, pv, n4, g.rep, SD);
      if (cu_launched("attention backward (tensor cores, group sum)")) return -1;
    }
  }
  return 0;
}

/* Same contract as cu_attention_tc_forward, for cf_cuda_attention_backward's arguments. */
int cu_attention_tc_backward(cf_tensor *gq, cf_tensor *gk, cf_tensor *gv, cf_tensor *q, cf_tensor *k, cf_tensor *v,
                             cf_tensor *mask, double scale, bool causal, cf_tensor *gout) {
  tc_geo g;
  if (!tc_setup(&g, q, k, v, mask, gout, scale, causal)) return 1;
  if (!tc_dense_like(gq, q) || !tc_dense_like(gk, k) || !tc_dense_like(gv, v)) return 1;
  const int B = (int)q->shape[0];
  const int64_t D = q->shape[3], rows = ((int64_t)B * g.Hq * g.T + 3) / 4 * 4; /* keeps pk, pv 16-byte aligned */
  const int64_t part = (g.rep > 1 && (gk || gv)) ? (int64_t)B * g.Hq * g.S * D : 0;
  cu_scratch s = {NULL, 0};
  float *lse = (float *)cu_scratch_get(&s, (size_t)(2 * rows + 2 * part) * sizeof(float),
                                       "attention backward (tensor cores)");
  if (!lse) return -1;
  float *Di = lse + rows, *pk = part ? Di + rows : NULL, *pv = part ? pk + part : NULL;
  bf16 *q_ = gq ? (bf16 *)cf_tensor_data(gq) : NULL, *k_ = gk ? (bf16 *)cf_tensor_data(gk) : NULL;
  bf16 *v_ = gv ? (bf16 *)cf_tensor_data(gv) : NULL;
  int rc = D == 64 ? tc_backward<64>(q_, k_, v_, g, B, lse, Di, pk, pv)
                   : tc_backward<128>(q_, k_, v_, g, B, lse, Di, pk, pv);
  cu_scratch_free(&s);
  return rc;
}
