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
 * that sees no key gives zeros and zero gradients.
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
/* ---- primitives (begin): the inline PTX (with cu_mma_bf16 of cuda_internal.cuh); everything below uses these wrappers ---- */
#include "kernels/cuda_internal.cuh"

#include <stdlib.h>

__device__ __forceinline__ void tc_sync() { __syncthreads(); }

__device__ __forceinline__ float tc_shfl_xor(float v, int m) { return __shfl_xor_sync(0xffffffffu, v, m); }

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

/* 2-element loads/stores (pairs packed with cu_pack_bf16x2 of cuda_internal.cuh). */
__device__ __forceinline__ void tc_ld2(const bf16 *p, float &x0, float &x1) {
  __nv_bfloat162 v = *(const __nv_bfloat162 *)p;
  x0 = __low2float(v);
  x1 = __high2float(v);
}
__device__ __forceinline__ void tc_st2(bf16 *p, float x0, float x1) {
  *(__nv_bfloat162 *)p = __floats2bfloat162_rn(x0, x1);
}
__device__ __forceinline__ void tc_st2f(float *p, float x0, float x1) { *(float2 *)p = make_float2(x0, x1); }
/* ---- primitives (end) ---- */

#define TC_THREADS 128
#define TC_BR 64  /* query rows per block / per streamed query tile */
#define TC_BC 64  /* key rows per streamed key tile / per dkv block */
#define TC_PAD 8  /* shared-memory row padding, elements */

struct tc_geo {
  const bf16 *q, *k, *v, *dO;
  int64_t qs[3], ks[3], vs[3], os[3]; /* element strides of dims b, h, t (dim 3 has stride 1) */
  int Hq, Hkv, rep, T, S;
  int causal;
  float scale; /* softmax scale */
  float c;     /* scale * log2(e) */
};

/* Rows [r0, r0 + 64) of a [rows][D] operand (row stride rs, element stride 1) into a padded
 * shared tile [64][D + 8]; rows >= n are zero. All 128 threads call it. */
template <int D>
__device__ __forceinline__ void tc_load_tile(bf16 *dst, const bf16 *src, int64_t rs, int r0, int n) {
  constexpr int CH = D / 8; /* 16-byte chunks per row */
  constexpr int LD = D + TC_PAD;
#pragma unroll
  for (int it = 0; it < 64 * CH / TC_THREADS; it++) {
    int i = (int)threadIdx.x + it * TC_THREADS;
    int r = i / CH, ch = i % CH, row = r0 + r;
    bool ok = row < n;
    tc_cp16(dst + r * LD + ch * 8, ok ? src + (int64_t)row * rs + ch * 8 : src, ok);
  }
}

/* acc[N/8][4] += A[16 x K] X^T, with A rows a_row0.. of a padded tile and X rows x_row0..
 * (+ N) of a padded tile (X is [n][k]: key rows for Q K^T). */
template <int K, int N>
__device__ __forceinline__ void tc_gemm_nt(float acc[][4], const bf16 *A, int a_row0, const bf16 *X, int x_row0,
                                           int ld, int lane) {
  const int ar = a_row0 + (lane & 7) + ((lane >> 3) & 1) * 8, ac = (lane >> 4) * 8;
  const int xr = x_row0 + (lane & 7) + (lane >> 4) * 8, xc = ((lane >> 3) & 1) * 8;
#pragma unroll
  for (int kk = 0; kk < K / 16; kk++) {
    uint32_t a[4];
    tc_ldsm(a, A + ar * ld + kk * 16 + ac);
#pragma unroll
    for (int np = 0; np < N / 16; np++) {
      uint32_t b[4];
      tc_ldsm(b, X + (xr + np * 16) * ld + kk * 16 + xc);
      cu_mma_bf16(acc[2 * np], a, b[0], b[1]);
      cu_mma_bf16(acc[2 * np + 1], a, b[2], b[3]);
    }
  }
}

/* acc[N/8][4] += P[16 x K] X, with P an accumulator in C layout (p[K/8][4], rounded to bf16 here)
 * and X rows x_row0.. (+ K) of a padded tile, X [k][n] (value rows for P V). */
template <int K, int N>
__device__ __forceinline__ void tc_gemm_pv(float acc[][4], const float p[][4], const bf16 *X, int x_row0, int ld,
                                           int lane) {
  const int xr = x_row0 + (lane & 7) + ((lane >> 3) & 1) * 8, xc = (lane >> 4) * 8;
#pragma unroll
  for (int kk = 0; kk < K / 16; kk++) {
    uint32_t a[4];
    a[0] = cu_pack_bf16x2(p[2 * kk][0], p[2 * kk][1]);
    a[1] = cu_pack_bf16x2(p[2 * kk][2], p[2 * kk][3]);
    a[2] = cu_pack_bf16x2(p[2 * kk + 1][0], p[2 * kk + 1][1]);
    a[3] = cu_pack_bf16x2(p[2 * kk + 1][2], p[2 * kk + 1][3]);
#pragma unroll
    for (int np = 0; np < N / 16; np++) {
      uint32_t b[4];
      tc_ldsm_t(b, X + (xr + kk * 16) * ld + np * 16 + xc);
      cu_mma_bf16(acc[2 * np], a, b[0], b[1]);
      cu_mma_bf16(acc[2 * np + 1], a, b[2], b[3]);
    }
  }
}

/* Sum and max over the 4 threads that hold one accumulator row. */
__device__ __forceinline__ float tc_quad_sum(float v) {
  v += tc_shfl_xor(v, 1);
  return v + tc_shfl_xor(v, 2);
}
__device__ __forceinline__ float tc_quad_max(float v) {
  v = fmaxf(v, tc_shfl_xor(v, 1));
  return fmaxf(v, tc_shfl_xor(v, 2));
}

/* The query tile a forward/dq block owns (causal: the last tiles, which see most keys, first),
 * and one past the last key any of its rows sees (<= 0: none). */
__device__ __forceinline__ int tc_query_tile(const tc_geo &g) {
  return g.causal ? (int)gridDim.x - 1 - (int)blockIdx.x : (int)blockIdx.x;
}
__device__ __forceinline__ int tc_key_end(const tc_geo &g, int t0) {
  if (!g.causal) return g.S;
  int tlast = t0 + TC_BR - 1 < g.T - 1 ? t0 + TC_BR - 1 : g.T - 1;
  int e = tlast + (g.S - g.T) + 1;
  return e < g.S ? e : g.S;
}

// out [B,Hq,T,D] (contiguous) = softmax(q k^T scale) v;  STATS: lse, Di [B,Hq,T] instead
template <int D, bool STATS>
__global__ void __launch_bounds__(TC_THREADS) tc_fwd_kernel(bf16 *out, float *lse, float *Di, tc_geo g) {
  constexpr int LD = D + TC_PAD, TILE = 64 * LD;
  extern __shared__ __align__(16) unsigned char tc_smem[];
  bf16 *Qs = (bf16 *)tc_smem; /* [64][LD] */
  bf16 *Ks = Qs + TILE;       /* [2][64][LD] */
  bf16 *Vs = Ks + 2 * TILE;   /* [2][64][LD] */
  const int lane = (int)threadIdx.x & 31, w = (int)threadIdx.x >> 5;
  const int t0 = tc_query_tile(g) * TC_BR, h = (int)blockIdx.y, b = (int)blockIdx.z, kh = h / g.rep;
  const int off = g.S - g.T;
  const bf16 *qb = g.q + b * g.qs[0] + h * g.qs[1];
  const bf16 *kb = g.k + b * g.ks[0] + kh * g.ks[1];
  const bf16 *vb = g.v + b * g.vs[0] + kh * g.vs[1];
  const int kend = tc_key_end(g, t0);
  const int nkt = kend > 0 ? (kend + TC_BC - 1) / TC_BC : 0;

  tc_load_tile<D>(Qs, qb, g.qs[2], t0, g.T);
  if (nkt > 0) {
    tc_load_tile<D>(Ks, kb, g.ks[2], 0, g.S);
    tc_load_tile<D>(Vs, vb, g.vs[2], 0, g.S);
  }
  tc_cp_commit();

  const int c4 = lane & 3;
  const int tA = t0 + w * 16 + (lane >> 2), tB = tA + 8; /* rows of acc[.][0..1] and acc[.][2..3] */
  float o[D / 8][4];
#pragma unroll
  for (int i = 0; i < D / 8; i++) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
  float mA = -INFINITY, mB = -INFINITY, lA = 0.f, lB = 0.f;

  for (int j = 0; j < nkt; j++) {
    if (j + 1 < nkt) {
      tc_load_tile<D>(Ks + ((j + 1) & 1) * TILE, kb, g.ks[2], (j + 1) * TC_BC, g.S);
      tc_load_tile<D>(Vs + ((j + 1) & 1) * TILE, vb, g.vs[2], (j + 1) * TC_BC, g.S);
      tc_cp_commit();
      tc_cp_wait<1>();
    } else {
      tc_cp_wait<0>();
    }
    tc_sync();
    const bf16 *Kc = Ks + (j & 1) * TILE, *Vc = Vs + (j & 1) * TILE;
    float s[TC_BC / 8][4];
#pragma unroll
    for (int i = 0; i < TC_BC / 8; i++) s[i][0] = s[i][1] = s[i][2] = s[i][3] = 0.f;
    tc_gemm_nt<D, TC_BC>(s, Qs, w * 16, Kc, 0, LD, lane);

    const int s0 = j * TC_BC;
    const bool edge = s0 + TC_BC > g.S || (g.causal && s0 + TC_BC - 1 > t0 + off);
    float mxA = -INFINITY, mxB = -INFINITY;
#pragma unroll
    for (int nt = 0; nt < TC_BC / 8; nt++) {
#pragma unroll
      for (int e = 0; e < 2; e++) {
        float xa = s[nt][e] * g.c, xb = s[nt][2 + e] * g.c;
        if (edge) {
          int col = s0 + nt * 8 + 2 * c4 + e;
          if (col >= g.S || (g.causal && col > tA + off)) xa = -INFINITY;
          if (col >= g.S || (g.causal && col > tB + off)) xb = -INFINITY;
        }
        s[nt][e] = xa;
        s[nt][2 + e] = xb;
        mxA = fmaxf(mxA, xa);
        mxB = fmaxf(mxB, xb);
      }
    }
    mxA = tc_quad_max(mxA);
    mxB = tc_quad_max(mxB);
    const float nA = fmaxf(mA, mxA), nB = fmaxf(mB, mxB);
    const float uA = nA == -INFINITY ? 0.f : nA, uB = nB == -INFINITY ? 0.f : nB; /* exp2(-inf - u) = 0 */
    const float aA = exp2f(mA - uA), aB = exp2f(mB - uB);
    mA = nA;
    mB = nB;
    float sA = 0.f, sB = 0.f;
#pragma unroll
    for (int nt = 0; nt < TC_BC / 8; nt++) {
#pragma unroll
      for (int e = 0; e < 2; e++) {
        s[nt][e] = exp2f(s[nt][e] - uA);
        s[nt][2 + e] = exp2f(s[nt][2 + e] - uB);
        sA += s[nt][e];
        sB += s[nt][2 + e];
      }
    }
    lA = lA * aA + sA;
    lB = lB * aB + sB;
#pragma unroll
    for (int i = 0; i < D / 8; i++) {
      o[i][0] *= aA;
      o[i][1] *= aA;
      o[i][2] *= aB;
      o[i][3] *= aB;
    }
    tc_gemm_pv<TC_BC, D>(o, s, Vc, 0, LD, lane);
    tc_sync();
  }
  tc_cp_wait<0>();

  lA = tc_quad_sum(lA);
  lB = tc_quad_sum(lB);
  const float iA = lA > 0.f ? 1.f / lA : 0.f, iB = lB > 0.f ? 1.f / lB : 0.f;
  const int64_t rowA = ((int64_t)b * g.Hq + h) * g.T + tA, rowB = rowA + 8;
  if (!STATS) {
#pragma unroll
    for (int i = 0; i < D / 8; i++) {
      int col = i * 8 + 2 * c4;
      if (tA < g.T) tc_st2(out + rowA * D + col, o[i][0] * iA, o[i][1] * iA);
      if (tB < g.T) tc_st2(out + rowB * D + col, o[i][2] * iB, o[i][3] * iB);
    }
  } else {
    const bf16 *db = g.dO + b * g.os[0] + h * g.os[1];
    float pA = 0.f, pB = 0.f;
#pragma unroll
    for (int i = 0; i < D / 8; i++) {
      int col = i * 8 + 2 * c4;
      float x0, x1;
      if (tA < g.T) {
        tc_ld2(db + (int64_t)tA * g.os[2] + col, x0, x1);
        pA += x0 * o[i][0] + x1 * o[i][1];
      }
      if (tB < g.T) {
        tc_ld2(db + (int64_t)tB * g.os[2] + col, x0, x1);
        pB += x0 * o[i][2] + x1 * o[i][3];
      }
    }
    pA = tc_quad_sum(pA) * iA;
    pB = tc_quad_sum(pB) * iB;
    if (c4 == 0) {
      if (tA < g.T) {
        lse[rowA] = lA > 0.f ? mA + log2f(lA) : INFINITY;
        Di[rowA] = pA;
      }
      if (tB < g.T) {
        lse[rowB] = lB > 0.f ? mB + log2f(lB) : INFINITY;
        Di[rowB] = pB;
      }
    }
  }
}

// gq [B,Hq,T,D] (contiguous) = scale * sum_s ds k,  ds = p (dO . v - Di)
template <int D>
__global__ void __launch_bounds__(TC_THREADS) tc_dq_kernel(bf16 *gq, const float *lse, const float *Di, tc_geo g) {
  constexpr int LD = D + TC_PAD, TILE = 64 * LD;
  extern __shared__ __align__(16) unsigned char tc_smem[];
  bf16 *Qs = (bf16 *)tc_smem; /* [64][LD] */
  bf16 *Os = Qs + TILE;       /* [64][LD] dO */
  bf16 *Ks = Os + TILE;       /* [2][64][LD] */
  bf16 *Vs = Ks + 2 * TILE;   /* [2][64][LD] */
  const int lane = (int)threadIdx.x & 31, w = (int)threadIdx.x >> 5;
  const int t0 = tc_query_tile(g) * TC_BR, h = (int)blockIdx.y, b = (int)blockIdx.z, kh = h / g.rep;
  const int off = g.S - g.T;
  const bf16 *kb = g.k + b * g.ks[0] + kh * g.ks[1];
  const bf16 *vb = g.v + b * g.vs[0] + kh * g.vs[1];
  const int kend = tc_key_end(g, t0);
  const int nkt = kend > 0 ? (kend + TC_BC - 1) / TC_BC : 0;

  tc_load_tile<D>(Qs, g.q + b * g.qs[0] + h * g.qs[1], g.qs[2], t0, g.T);
  tc_load_tile<D>(Os, g.dO + b * g.os[0] + h * g.os[1], g.os[2], t0, g.T);
  if (nkt > 0) {
    tc_load_tile<D>(Ks, kb, g.ks[2], 0, g.S);
    tc_load_tile<D>(Vs, vb, g.vs[2], 0, g.S);
  }
  tc_cp_commit();

  const int c4 = lane & 3;
  const int tA = t0 + w * 16 + (lane >> 2), tB = tA + 8;
  const int64_t rowA = ((int64_t)b * g.Hq + h) * g.T + tA, rowB = rowA + 8;
  const float LA = tA < g.T ? lse[rowA] : INFINITY, LB = tB < g.T ? lse[rowB] : INFINITY;
  const float DA = tA < g.T ? Di[rowA] : 0.f, DB = tB < g.T ? Di[rowB] : 0.f;
  float dq[D / 8][4];
#pragma unroll
  for (int i = 0; i < D / 8; i++) dq[i][0] = dq[i][1] = dq[i][2] = dq[i][3] = 0.f;

  for (int j = 0; j < nkt; j++) {
    if (j + 1 < nkt) {
      tc_load_tile<D>(Ks + ((j + 1) & 1) * TILE, kb, g.ks[2], (j + 1) * TC_BC, g.S);
      tc_load_tile<D>(Vs + ((j + 1) & 1) * TILE, vb, g.vs[2], (j + 1) * TC_BC, g.S);
      tc_cp_commit();
      tc_cp_wait<1>();
    } else {
      tc_cp_wait<0>();
    }
    tc_sync();
    const bf16 *Kc = Ks + (j & 1) * TILE, *Vc = Vs + (j & 1) * TILE;
    float s[TC_BC / 8][4], dp[TC_BC / 8][4];
#pragma unroll
    for (int i = 0; i < TC_BC / 8; i++) {
      s[i][0] = s[i][1] = s[i][2] = s[i][3] = 0.f;
      dp[i][0] = dp[i][1] = dp[i][2] = dp[i][3] = 0.f;
    }
    tc_gemm_nt<D, TC_BC>(s, Qs, w * 16, Kc, 0, LD, lane);
    tc_gemm_nt<D, TC_BC>(dp, Os, w * 16, Vc, 0, LD, lane);

    const int s0 = j * TC_BC;
    const bool edge = s0 + TC_BC > g.S || (g.causal && s0 + TC_BC - 1 > t0 + off);
#pragma unroll
    for (int nt = 0; nt < TC_BC / 8; nt++) {
#pragma unroll
      for (int e = 0; e < 2; e++) {
        float pa = exp2f(s[nt][e] * g.c - LA), pb = exp2f(s[nt][2 + e] * g.c - LB);
        if (edge) {
          int col = s0 + nt * 8 + 2 * c4 + e;
          if (col >= g.S || (g.causal && col > tA + off)) pa = 0.f;
          if (col >= g.S || (g.causal && col > tB + off)) pb = 0.f;
        }
        s[nt][e] = pa * (dp[nt][e] - DA);
        s[nt][2 + e] = pb * (dp[nt][2 + e] - DB);
      }
    }
    tc_gemm_pv<TC_BC, D>(dq, s, Kc, 0, LD, lane);
    tc_sync();
  }
  tc_cp_wait<0>();

#pragma unroll
  for (int i = 0; i < D / 8; i++) {
    int col = i * 8 + 2 * c4;
    if (tA < g.T) tc_st2(gq + rowA * D + col, dq[i][0] * g.scale, dq[i][1] * g.scale);
    if (tB < g.T) tc_st2(gq + rowB * D + col, dq[i][2] * g.scale, dq[i][3] * g.scale);
  }
}

/* Query tile t0 of head h into buffer (Q, dO rows; lse, Di entries, +inf / 0 past T). */
template <int D>
__device__ __forceinline__ void tc_load_qtile(bf16 *Qd, bf16 *Od, float *Ld, float *Dd, const tc_geo &g, int b,
                                              int h, int t0, const float *lse, const float *Di) {
  tc_load_tile<D>(Qd, g.q + b * g.qs[0] + h * g.qs[1], g.qs[2], t0, g.T);
  tc_load_tile<D>(Od, g.dO + b * g.os[0] + h * g.os[1], g.os[2], t0, g.T);
  if (threadIdx.x < TC_BR) {
    int t = t0 + (int)threadIdx.x;
    int64_t row = ((int64_t)b * g.Hq + h) * g.T + t;
    Ld[threadIdx.x] = t < g.T ? lse[row] : INFINITY;
    Dd[threadIdx.x] = t < g.T ? Di[row] : 0.f;
  }
}

// gk, gv [B,Hkv,S,D] (contiguous; either may be NULL) or, PARTIAL, pk, pv [B,Hq,S,D] f32 per-query-
// head terms: dK = scale * sum_t ds q,  dV = sum_t p dO, over the queries of head blockIdx.y
template <int D, bool PARTIAL>
__global__ void __launch_bounds__(TC_THREADS) tc_dkv_kernel(bf16 *gk, bf16 *gv, float *pk, float *pv,
                                                            const float *lse, const float *Di, tc_geo g) {
  constexpr int LD = D + TC_PAD, TILE = 64 * LD;
  extern __shared__ __align__(16) unsigned char tc_smem[];
  bf16 *Ks = (bf16 *)tc_smem;                 /* [64][LD] own key rows */
  bf16 *Vs = Ks + TILE;                       /* [64][LD] */
  bf16 *Qs = Vs + TILE;                       /* [2][64][LD] */
  bf16 *Os = Qs + 2 * TILE;                   /* [2][64][LD] dO */
  float *Ls = (float *)(Os + 2 * TILE);       /* [2][64] lse */
  float *Ds = Ls + 2 * TC_BR;                 /* [2][64] Di */
  const int lane = (int)threadIdx.x & 31, w = (int)threadIdx.x >> 5;
  const int s0 = (int)blockIdx.x * TC_BC, h = (int)blockIdx.y, b = (int)blockIdx.z, kh = h / g.rep;
  const int off = g.S - g.T;
  int tstart = g.causal ? s0 - off : 0; /* the first query that sees key s0 */
  if (tstart < 0) tstart = 0;
  const int nqt = tstart < g.T ? (g.T - tstart + TC_BR - 1) / TC_BR : 0;

  tc_load_tile<D>(Ks, g.k + b * g.ks[0] + kh * g.ks[1], g.ks[2], s0, g.S);
  tc_load_tile<D>(Vs, g.v + b * g.vs[0] + kh * g.vs[1], g.vs[2], s0, g.S);
  if (nqt > 0) tc_load_qtile<D>(Qs, Os, Ls, Ds, g, b, h, tstart, lse, Di);
  tc_cp_commit();

  const int c4 = lane & 3;
  const int sA = s0 + w * 16 + (lane >> 2), sB = sA + 8; /* key rows of acc[.][0..1], acc[.][2..3] */
  float dk[D / 8][4], dv[D / 8][4];
#pragma unroll
  for (int i = 0; i < D / 8; i++) {
    dk[i][0] = dk[i][1] = dk[i][2] = dk[i][3] = 0.f;
    dv[i][0] = dv[i][1] = dv[i][2] = dv[i][3] = 0.f;
  }

  for (int j = 0; j < nqt; j++) {
    const int t0 = tstart + j * TC_BR;
    if (j + 1 < nqt) {
      const int nb = (j + 1) & 1;
      tc_load_qtile<D>(Qs + nb * TILE, Os + nb * TILE, Ls + nb * TC_BR, Ds + nb * TC_BR, g, b, h, t0 + TC_BR, lse,
                       Di);
      tc_cp_commit();
      tc_cp_wait<1>();
    } else {
      tc_cp_wait<0>();
    }
    tc_sync();
    const int cb = j & 1;
    const bf16 *Qc = Qs + cb * TILE, *Oc = Os + cb * TILE;
    const float *Lc = Ls + cb * TC_BR, *Dc = Ds + cb * TC_BR;
    const bool edge = t0 + TC_BR > g.T || s0 + TC_BC > g.S || (g.causal && s0 + TC_BC - 1 > t0 + off);
#pragma unroll 1
    for (int half = 0; half < 2; half++) {
      const int tq0 = half * 32; /* first query row of this half, in the tile */
      float st[4][4], dpt[4][4];
#pragma unroll
      for (int i = 0; i < 4; i++) {
        st[i][0] = st[i][1] = st[i][2] = st[i][3] = 0.f;
        dpt[i][0] = dpt[i][1] = dpt[i][2] = dpt[i][3] = 0.f;
      }
      tc_gemm_nt<D, 32>(st, Ks, w * 16, Qc, tq0, LD, lane);
      tc_gemm_nt<D, 32>(dpt, Vs, w * 16, Oc, tq0, LD, lane);
#pragma unroll
      for (int nt = 0; nt < 4; nt++) {
#pragma unroll
        for (int e = 0; e < 2; e++) {
          const int ti = tq0 + nt * 8 + 2 * c4 + e, t = t0 + ti;
          const float L = Lc[ti], Dd = Dc[ti];
          float pa = exp2f(st[nt][e] * g.c - L), pb = exp2f(st[nt][2 + e] * g.c - L);
          if (edge) {
            if (t >= g.T || sA >= g.S || (g.causal && sA > t + off)) pa = 0.f;
            if (t >= g.T || sB >= g.S || (g.causal && sB > t + off)) pb = 0.f;
          }
          st[nt][e] = pa;
          st[nt][2 + e] = pb;
          dpt[nt][e] = pa * (dpt[nt][e] - Dd);
          dpt[nt][2 + e] = pb * (dpt[nt][2 + e] - Dd);
        }
      }
      tc_gemm_pv<32, D>(dv, st, Oc, tq0, LD, lane);
      tc_gemm_pv<32, D>(dk, dpt, Qc, tq0, LD, lane);
    }
    tc_sync();
  }
  tc_cp_wait<0>();

#pragma unroll
  for (int i = 0; i < D / 8; i++) {
    int col = i * 8 + 2 * c4;
    if (PARTIAL) {
      const int64_t rA = ((int64_t)b * g.Hq + h) * g.S + sA, rB = rA + 8;
      if (sA < g.S) {
        tc_st2f(pk + rA * D + col, dk[i][0] * g.scale, dk[i][1] * g.scale);
        tc_st2f(pv + rA * D + col, dv[i][0], dv[i][1]);
      }
      if (sB < g.S) {
        tc_st2f(pk + rB * D + col, dk[i][2] * g.scale, dk[i][3] * g.scale);
        tc_st2f(pv + rB * D + col, dv[i][2], dv[i][3]);
      }
    } else {
      const int64_t rA = ((int64_t)b * g.Hkv + kh) * g.S + sA, rB = rA + 8;
      if (sA < g.S) {
        if (gk) tc_st2(gk + rA * D + col, dk[i][0] * g.scale, dk[i][1] * g.scale);
        if (gv) tc_st2(gv + rA * D + col, dv[i][0], dv[i][1]);
      }
      if (sB < g.S) {
        if (gk) tc_st2(gk + rB * D + col, dk[i][2] * g.scale, dk[i][3] * g.scale);
        if (gv) tc_st2(gv + rB * D + col, dv[i][2], dv[i][3]);
      }
    }
  }
}

// dst [B,Hkv,S,D] bf16 = sum_{r < rep} part [B,Hkv*rep,S,D] f32 (head kh*rep + r); n4 = numel(dst)/4
__global__ void tc_group_sum_kernel(bf16 *dst, const float *part, int64_t n4, int rep, int64_t SD) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n4; i += (int64_t)gridDim.x * blockDim.x) {
    int64_t e = i * 4, bk = e / SD, rem = e % SD;
    float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
    for (int r = 0; r < rep; r++) {
      float4 x = *(const float4 *)(part + (bk * rep + r) * SD + rem);
      acc.x += x.x;
      acc.y += x.y;
      acc.z += x.z;
      acc.w += x.w;
    }
    tc_st2(dst + e, acc.x, acc.y);
    tc_st2(dst + e + 2, acc.z, acc.w);
  }
}

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

static size_t tc_tiles_bytes(int D, int tiles) { return (size_t)tiles * 64 * (D + TC_PAD) * sizeof(bf16); }

template <int D>
static int tc_forward(bf16 *out, float *lse, float *Di, const tc_geo &g, int B, bool stats) {
  const char *op = stats ? "attention backward (tensor cores, stats)" : "attention (tensor cores)";
  size_t smem = tc_tiles_bytes(D, 5);
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
    size_t smem = tc_tiles_bytes(D, 6);
    if (tc_launch_smem(tc_dq_kernel<D>, smem, op)) return -1;
    dim3 grid((unsigned)((g.T + TC_BR - 1) / TC_BR), (unsigned)g.Hq, (unsigned)B);
    tc_dq_kernel<D><<<grid, TC_THREADS, smem, cu_stream()>>>(gq, lse, Di, g);
    if (cu_launched(op)) return -1;
  }
  if (gk || gv) {
    const char *op = "attention backward (tensor cores, dk dv)";
    size_t smem = tc_tiles_bytes(D, 6) + 4 * TC_BR * sizeof(float);
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
