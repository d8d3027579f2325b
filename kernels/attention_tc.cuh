/* attention_tc.cuh - the device code of the attention op's tensor-core path (attention_tc.cu
 * says what it computes and how it is tiled): the tiles, the warp products, the forward, dq and
 * dkv kernels and the group sum. Apart from the host code so that tests/c/test_attention_emu.cpp
 * runs the same kernels on the CPU (tests/c/cuda_emu.h). From its includer: bf16 and cuda_bf16.h's
 * conversions, make_float2/4, __syncthreads and __shfl_xor_sync, cu_mma_bf16 and cu_pack_bf16x2
 * (cuda_internal.cuh), and the primitives: tc_cp16, tc_cp_commit, tc_cp_wait<N> (cp.async),
 * tc_ldsm, tc_ldsm_t (ldmatrix .x4, plain and .trans) and TC_SMEM(name) (the dynamic shared
 * memory).
 */
#ifndef CF_ATTENTION_TC_CUH
#define CF_ATTENTION_TC_CUH

__device__ __forceinline__ void tc_sync() { __syncthreads(); }

__device__ __forceinline__ float tc_shfl_xor(float v, int m) { return __shfl_xor_sync(0xffffffffu, v, m); }

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

#define TC_THREADS 128
#define TC_BR 64  /* query rows per block / per streamed query tile */
#define TC_BC 64  /* key rows per streamed key tile / per dkv block */
#define TC_PAD 8  /* shared-memory row padding, elements */

/* Each kernel's dynamic shared memory, bytes: tiles of 64 rows of D + TC_PAD bf16 (the forward:
 * Q and two buffers each of K and V; dq: Q, dO and two each of K and V; dkv: K, V and two each
 * of Q and dO, then two buffers each of 64 lse and Di) */
static inline size_t tc_tiles_bytes(int D, int tiles) { return (size_t)tiles * 64 * (D + TC_PAD) * sizeof(bf16); }
static inline size_t tc_fwd_smem(int D) { return tc_tiles_bytes(D, 5); }
static inline size_t tc_dq_smem(int D) { return tc_tiles_bytes(D, 6); }
static inline size_t tc_dkv_smem(int D) { return tc_tiles_bytes(D, 6) + 4 * TC_BR * sizeof(float); }

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
  TC_SMEM(tc_smem);
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
        lse[rowA] = lA == 0.f ? INFINITY : mA + log2f(lA); /* a NaN row: NaN, so that its p are NaN */
        Di[rowA] = pA;
      }
      if (tB < g.T) {
        lse[rowB] = lB == 0.f ? INFINITY : mB + log2f(lB);
        Di[rowB] = pB;
      }
    }
  }
}

// gq [B,Hq,T,D] (contiguous) = scale * sum_s ds k,  ds = p (dO . v - Di)
template <int D>
__global__ void __launch_bounds__(TC_THREADS) tc_dq_kernel(bf16 *gq, const float *lse, const float *Di, tc_geo g) {
  constexpr int LD = D + TC_PAD, TILE = 64 * LD;
  TC_SMEM(tc_smem);
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
  TC_SMEM(tc_smem);
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

#endif
