/* skinny.cu - the GEMMs of a decode step: at most 16 rows of activations against a bf16 weight
 * matrix, on tensor cores, memory-bound on the weights (cuda.h: cf_cuda_skinny_gemm).
 *
 *   plain:  Y (A, ldy) f32 = X (A, in; ldx) @ W (out, in)^T + beta * Y
 *   SwiGLU: W is [gate (F rows); up (F rows)], out = 2F; act (A, F) bf16 = silu(X Wg^T) * (X Wu^T)
 *           (the gate/up GEMM and the SwiGLU in one kernel; no f32 gate/up buffer)
 *
 * Layout of the work. The 16 rows of X are the A operand of mma.m16n8k16 (rows >= A re-read row
 * A - 1 and are never written); each tile of 8 W rows is a B operand. A block owns NT tiles (NT*8
 * output columns; SwiGLU: NT/2 gate tiles and the matching up tiles, NT*4 columns) and one of
 * ksb parts of K; its SK_WARPS warps split that part in chunks of 32 and add their C fragments in
 * shared memory in a fixed order. With ksb > 1 every block stores its partial tile in a
 * workspace and takes a ticket (an atomic counter per column group); the last block of a group
 * adds the ksb partials in part order, applies the epilogue and resets the counter. Results are
 * deterministic either way (fixed summation orders; the ticket only picks who adds).
 *
 * Loads. Per chunk a thread reads 16 bytes of its W row (row tile + lane/4, k = chunk + 8 (lane%4)
 * .. +7: the 4 threads of a row read 64 contiguous bytes) and 16 bytes of X rows lane/4 and
 * lane/4 + 8 at the same k. K is permuted inside the chunk so that these registers are the mma
 * fragments as loaded: mma 0 takes elements 8i+0..3 of thread i as the fragment's k = 2i, 2i+1,
 * 2i+8, 2i+9, mma 1 takes 8i+4..7. A and B use the same permutation, so the sum over k is
 * unchanged. U = 8 / NT chunks of loads (4 KB of W per warp) are issued before their mmas. W is
 * read with evict-first loads (streamed once per step), X through the read-only cache (every
 * block re-reads it).
 *
 * Written without a GPU (2026-11-26): compiled here, checked on a GPU by tests/gpu/test_skinny.c
 * and timed against cuBLAS by bench/skinny_bench.c, once a GPU session runs them.
 */
#include "kernels/cuda_internal.cuh"

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

/* ---------------------------------------------------------------- host side */

static int sk_sms(void) {
  static int sms = 0;
  if (!sms) {
    int dev = 0, n = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess)
      n = 132;
    sms = n > 0 ? n : 132;
  }
  return sms;
}

extern "C" bool cf_cuda_skinny_ok(const void *W, const void *X, int ldx, int A, int in, int out, bool swiglu) {
  if (A < 1 || A > SK_MAXROWS || in < 32 || in % 32 || out < 8 || out % 8 || ldx % 8 || ldx < in) return false;
  if (((uintptr_t)W % 16) || ((uintptr_t)X % 16)) return false;
  return !swiglu || out % 16 == 0;
}

extern "C" int cf_cuda_skinny_ws_init(cf_skinny_ws *ws, size_t nfloat, int ncnt) {
  memset(ws, 0, sizeof *ws);
  if (!(ws->part = (float *)cf_cuda_alloc(nfloat * sizeof(float)))) return -1;
  if (!(ws->cnt = (int *)cf_cuda_alloc((size_t)ncnt * sizeof(int)))) {
    cf_cuda_free(ws->part, nfloat * sizeof(float));
    ws->part = NULL;
    return -1;
  }
  ws->nfloat = nfloat;
  ws->ncnt = ncnt;
  return cu_check(cudaMemsetAsync(ws->cnt, 0, (size_t)ncnt * sizeof(int), cu_stream()), "skinny: workspace");
}

extern "C" void cf_cuda_skinny_ws_free(cf_skinny_ws *ws) {
  if (ws->part) cf_cuda_free(ws->part, ws->nfloat * sizeof(float));
  if (ws->cnt) cf_cuda_free(ws->cnt, (size_t)ws->ncnt * sizeof(int));
  memset(ws, 0, sizeof *ws);
}

/* The launch shape: NT tiles per block (default 4) and ksb parts of K (default: the fewest that
 * give two blocks per multiprocessor, at least one chunk per warp, within the workspace). */
extern "C" void cf_cuda_skinny_plan(int in, int out, bool swiglu, const cf_skinny_opts *o, const cf_skinny_ws *ws,
                                    int *nt_out, int *ksb_out, int *grid_out) {
  int nt = o && (o->nt == 1 || o->nt == 2 || o->nt == 4) ? o->nt : 4;
  if (swiglu && nt < 2) nt = 2;
  int cols = swiglu ? out / 2 : out, per = swiglu ? nt * 4 : nt * 8;
  int grid = (cols + per - 1) / per, nch = in / 32, maxk = nch / SK_WARPS > 1 ? nch / SK_WARPS : 1;
  int ksb = 1;
  if (o && o->ksb > 0) ksb = o->ksb;
  else while (grid * ksb < 2 * sk_sms() && ksb < maxk && ksb < 16) ksb++;
  if (ksb > nch) ksb = nch;
  size_t need = (size_t)grid * ksb * nt * 4 * 32;
  if (ksb > 1 && (!ws || !ws->part || grid > ws->ncnt || need > ws->nfloat)) ksb = 1;
  *nt_out = nt;
  *ksb_out = ksb;
  *grid_out = grid;
}

template <int NT, int EPI>
static void sk_launch(int minb, dim3 grid, cudaStream_t st, const sk_args &a) {
  if (minb >= 2) k_skinny<NT, EPI, 2><<<grid, SK_WARPS * 32, 0, st>>>(a);
  else k_skinny<NT, EPI, 1><<<grid, SK_WARPS * 32, 0, st>>>(a);
}

extern "C" int cf_cuda_skinny_gemm(const void *W, const void *X, int ldx, float *Y, int ldy, void *act, int A, int in,
                                   int out, float beta, bool swiglu, const cf_skinny_opts *o, const cf_skinny_ws *ws,
                                   void *stream) {
  if (!cf_cuda_skinny_ok(W, X, ldx, A, in, out, swiglu))
    return CF_ERR("skinny gemm: unsupported shape (rows %d of 1..%d, in %d a multiple of 32, out %d a multiple of "
                  "%d, ldx %d a multiple of 8 and >= in, 16-byte aligned data)", A, SK_MAXROWS, in, out,
                  swiglu ? 16 : 8, ldx);
  if (swiglu ? !act : !Y) return CF_ERR("skinny gemm: no output");
  int nt, ksb, grid;
  cf_cuda_skinny_plan(in, out, swiglu, o, ws, &nt, &ksb, &grid);
  sk_args a;
  a.W = (const bf16 *)W;
  a.X = (const bf16 *)X;
  a.ldx = ldx;
  a.Y = Y;
  a.ldy = ldy;
  a.act = (bf16 *)act;
  a.A = A;
  a.in = in;
  a.out = out;
  a.beta = beta;
  a.ksb = ksb;
  a.part = ksb > 1 ? ws->part : NULL;
  a.cnt = ksb > 1 ? ws->cnt : NULL;
  int minb = o ? o->minb : 0;
  dim3 g((unsigned)grid, (unsigned)ksb);
  cudaStream_t st = stream ? (cudaStream_t)stream : cu_stream();
  if (swiglu) {
    if (nt == 4) sk_launch<4, SK_SWIGLU>(minb, g, st, a);
    else sk_launch<2, SK_SWIGLU>(minb, g, st, a);
  } else if (nt == 4) sk_launch<4, SK_PLAIN>(minb, g, st, a);
  else if (nt == 2) sk_launch<2, SK_PLAIN>(minb, g, st, a);
  else sk_launch<1, SK_PLAIN>(minb, g, st, a);
  return cu_launched("skinny gemm");
}
