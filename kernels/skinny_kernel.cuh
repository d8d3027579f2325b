/* skinny_kernel.cuh - the device code of skinny.cu (see there for what it computes and how),
 * apart so that tests/c/test_skinny_emu.cpp can run it on the CPU: it needs from its includer
 * bf16, uint4, cu_mma_bf16, cu_prefetch_l2, cu_pdl_wait/trigger, __ldg/__ldcs/__ldcg, atomicAdd,
 * __threadfence, __syncthreads, the thread and block indices and expf (cuda_internal.cuh, or the test's emulation of them).
 */
#ifndef CF_SKINNY_KERNEL_CUH
#define CF_SKINNY_KERNEL_CUH

#define SK_WARPS 8
#define SK_MAXROWS 16

enum { SK_PLAIN = 0, SK_SWIGLU = 1 };

struct sk_args {
  const bf16 *W, *X;
  int ldx;
  float *Y;
  int ldy;
  bf16 *act;
  int A, in, out;
  float beta;
  int ksb;     /* parts of K (grid.y) */
  float *part; /* ksb > 1: partial tiles, [grid.x][ksb][tile elements] */
  int *cnt;    /* ksb > 1: one ticket counter per column group (zero between launches) */
};

template <int NT>
__device__ __forceinline__ void sk_chunk(float (&c)[NT][4], const uint4 &xa, const uint4 &xb, const uint4 (&w)[NT]) {
  uint32_t a0[4] = {xa.x, xb.x, xa.y, xb.y}, a1[4] = {xa.z, xb.z, xa.w, xb.w};
#pragma unroll
  for (int i = 0; i < NT; i++) {
    cu_mma_bf16(c[i], a0, w[i].x, w[i].y);
    cu_mma_bf16(c[i], a1, w[i].z, w[i].w);
  }
}

/* Element e of a block's tile set: fragment register j = tile*4 + reg of lane l is row l/4 (+8 for
 * regs 2, 3), column tile*8 + 2 (l%4) + (reg & 1) of the block's columns. */
template <int NT, int EPI>
__device__ __forceinline__ void sk_store(const sk_args &p, int c0, int j, int l, float v, float u) {
  int r = j & 3, tile = j >> 2;
  int row = (l >> 2) + (r >> 1) * 8, col = c0 + tile * 8 + 2 * (l & 3) + (r & 1);
  if (row >= p.A) return;
  if (EPI == SK_SWIGLU) {
    int F = p.out / 2;
    if (col < F) p.act[(size_t)row * F + col] = __float2bfloat16(v / (1.0f + expf(-v)) * u);
  } else if (col < p.out) {
    float *y = p.Y + (size_t)row * p.ldy + col;
    *y = p.beta != 0.f ? v + p.beta * *y : v;
  }
}

template <int NT, int EPI, int MINB>
__global__ void __launch_bounds__(SK_WARPS * 32, MINB) k_skinny(sk_args p) {
  constexpr int U = 8 / NT;                   /* chunks whose loads are in flight together */
  constexpr int HALF = NT > 1 ? NT / 2 : 1;   /* SwiGLU: gate tiles, then as many up tiles */
  constexpr int NE = (EPI == SK_SWIGLU ? HALF : NT) * 4 * 32; /* results per block */
  __shared__ float red[SK_WARPS][NT * 4][32];
  __shared__ int s_last;
  int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  int F = p.out / 2, cols = EPI == SK_SWIGLU ? NT * 4 : NT * 8, c0 = blockIdx.x * cols;
  const bf16 *wp[NT];
#pragma unroll
  for (int i = 0; i < NT; i++) {
    int n;
    if (EPI == SK_SWIGLU) {
      int j = c0 + (i % HALF) * 8 + g;
      n = (j < F ? j : F - 1) + (i < HALF ? 0 : F);
    } else {
      n = c0 + i * 8 + g;
      n = n < p.out ? n : p.out - 1;
    }
    wp[i] = p.W + (size_t)n * p.in + t * 8;
  }
  const bf16 *xp0 = p.X + (size_t)(g < p.A ? g : p.A - 1) * p.ldx + t * 8;
  const bf16 *xp1 = p.X + (size_t)(g + 8 < p.A ? g + 8 : p.A - 1) * p.ldx + t * 8;
  float c[NT][4];
#pragma unroll
  for (int i = 0; i < NT; i++) c[i][0] = c[i][1] = c[i][2] = c[i][3] = 0.f;
  /* chunks of this block's part of K, then this warp's share of them */
  int nch = p.in / 32, b0 = (int)((int64_t)blockIdx.y * nch / p.ksb), b1 = (int)((int64_t)(blockIdx.y + 1) * nch / p.ksb);
  int k = b0 + warp * (b1 - b0) / SK_WARPS, k1 = b0 + (warp + 1) * (b1 - b0) / SK_WARPS;
  /* launched as a programmatic dependent launch, the block may be here while the kernel that
   * writes X (and Y) still runs: ask for the first weights now, touch X and Y only after the wait */
#pragma unroll
  for (int u = 0; u < U; u++)
#pragma unroll
    for (int i = 0; i < NT; i++)
      if (k + u < k1) cu_prefetch_l2(wp[i] + (size_t)(k + u) * 32);
  cu_pdl_wait();
  cu_pdl_trigger();
  for (; k + U <= k1; k += U) {
    uint4 xa[U], xb[U], w[U][NT];
#pragma unroll
    for (int u = 0; u < U; u++) {
#pragma unroll
      for (int i = 0; i < NT; i++) w[u][i] = __ldcs((const uint4 *)(wp[i] + (size_t)(k + u) * 32));
      xa[u] = __ldg((const uint4 *)(xp0 + (size_t)(k + u) * 32));
      xb[u] = __ldg((const uint4 *)(xp1 + (size_t)(k + u) * 32));
    }
#pragma unroll
    for (int u = 0; u < U; u++) sk_chunk<NT>(c, xa[u], xb[u], w[u]);
  }
  for (; k < k1; k++) {
    uint4 w[NT];
#pragma unroll
    for (int i = 0; i < NT; i++) w[i] = __ldcs((const uint4 *)(wp[i] + (size_t)k * 32));
    uint4 xa = __ldg((const uint4 *)(xp0 + (size_t)k * 32)), xb = __ldg((const uint4 *)(xp1 + (size_t)k * 32));
    sk_chunk<NT>(c, xa, xb, w);
  }
#pragma unroll
  for (int i = 0; i < NT; i++)
#pragma unroll
    for (int r = 0; r < 4; r++) red[warp][i * 4 + r][lane] = c[i][r];
  __syncthreads();
  constexpr int UP = HALF * 4; /* SwiGLU: register index of the up tile matching gate index j */
  if (p.ksb == 1) {
    for (int e = threadIdx.x; e < NE; e += blockDim.x) {
      int j = e >> 5, l = e & 31;
      float v = 0.f, u = 0.f;
#pragma unroll
      for (int ww = 0; ww < SK_WARPS; ww++) v += red[ww][j][l];
      if (EPI == SK_SWIGLU) {
#pragma unroll
        for (int ww = 0; ww < SK_WARPS; ww++) u += red[ww][j + UP][l];
      }
      sk_store<NT, EPI>(p, c0, j, l, v, u);
    }
    return;
  }
  /* ksb > 1: this block's sums (gate and up for SwiGLU: NT*4*32 values) to the workspace */
  constexpr int NP = NT * 4 * 32;
  float *mine = p.part + ((size_t)blockIdx.x * p.ksb + blockIdx.y) * NP;
  for (int e = threadIdx.x; e < NP; e += blockDim.x) {
    float v = 0.f;
#pragma unroll
    for (int ww = 0; ww < SK_WARPS; ww++) v += red[ww][e >> 5][e & 31];
    mine[e] = v;
  }
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) s_last = atomicAdd(&p.cnt[blockIdx.x], 1) == p.ksb - 1;
  __syncthreads();
  if (!s_last) return;
  __threadfence();
  const float *all = p.part + (size_t)blockIdx.x * p.ksb * NP;
  for (int e = threadIdx.x; e < NE; e += blockDim.x) {
    int j = e >> 5, l = e & 31;
    float v = 0.f, u = 0.f;
    for (int s = 0; s < p.ksb; s++) {
      v += __ldcg(all + (size_t)s * NP + e);
      if (EPI == SK_SWIGLU) u += __ldcg(all + (size_t)s * NP + e + UP * 32);
    }
    sk_store<NT, EPI>(p, c0, j, l, v, u);
  }
  if (threadIdx.x == 0) p.cnt[blockIdx.x] = 0;
}

/* The launch shape (cuda.h: cf_cuda_skinny_plan): nt tiles per block (requested 1, 2 or 4, else
 * 4; SwiGLU at least 2), ksb parts of K (requested, else the fewest that give two blocks per
 * multiprocessor with at least one chunk per warp, at most 16), 1 when the workspace (nfloat
 * floats, ncnt counters) cannot hold the split; grid = column groups. */
static inline void sk_plan(int in, int out, bool swiglu, int nt_req, int ksb_req, int sms, size_t nfloat, int ncnt,
                           int *nt_out, int *ksb_out, int *grid_out) {
  int nt = nt_req == 1 || nt_req == 2 || nt_req == 4 ? nt_req : 4;
  if (swiglu && nt < 2) nt = 2;
  int cols = swiglu ? out / 2 : out, per = swiglu ? nt * 4 : nt * 8;
  int grid = (cols + per - 1) / per, nch = in / 32, maxk = nch / SK_WARPS > 1 ? nch / SK_WARPS : 1;
  int ksb = 1;
  if (ksb_req > 0) ksb = ksb_req;
  else while (grid * ksb < 2 * sms && ksb < maxk && ksb < 16) ksb++;
  if (ksb > nch) ksb = nch;
  size_t need = (size_t)grid * ksb * nt * 4 * 32;
  if (ksb > 1 && (grid > ncnt || need > nfloat)) ksb = 1;
  *nt_out = nt;
  *ksb_out = ksb;
  *grid_out = grid;
}

#endif
