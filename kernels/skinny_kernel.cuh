/* skinny_kernel.cuh - the device code of skinny.cu (see there for what it computes and how),
 * apart so that tests/c/test_skinny_emu.cpp can run it on the CPU: it needs from its includer
 * bf16, uint4, float4, cu_mma_bf16, cu_pack_bf16x2, cu_prefetch_l2, cu_pdl_wait/trigger,
 * __ldg/__ldcs/__ldcg, atomicAdd, __threadfence, __syncthreads, the thread and block indices,
 * expf and sqrtf (cuda_internal.cuh, or the test's emulation of them).
 */
#ifndef CF_SKINNY_KERNEL_CUH
#define CF_SKINNY_KERNEL_CUH

#define SK_WARPS 8
#define SK_MAXROWS 16

enum { SK_PLAIN = 0, SK_SWIGLU = 1 };

struct sk_args {
  const bf16 *W;
  const bf16 *X;       /* bf16 rows (A, in; ldx), or, with XN: */
  const float *xf;     /*   f32 rows, multiplied on load by rsqrt(ss/in + eps) * gnorm (RMSNorm) */
  const float *gnorm;  /*   the norm's weight (in) */
  const float *ss_in;  /*   per-row sums of squares of xf in ss_groups partials, [group][16] */
  int ss_groups;
  float eps;
  int ldx;
  float *Y;            /* plain: Y (A, ldy) = product + beta Y */
  int ldy;
  float beta;
  float *ss_out;       /* plain, optional: per-row sums of squares of the Y written, [grid.x][16] */
  bf16 *act;           /* SwiGLU: (A, out/2) */
  int A, in, out;
  int ksb;             /* parts of K (grid.y) */
  float *part;         /* ksb > 1: partial tiles, [grid.x][ksb][tile elements] */
  int *cnt;            /* ksb > 1: one ticket counter per column group (zero between launches) */
};

/* The A operand's source: 16-byte loads of bf16 rows that are the fragment as loaded, or (XN)
 * f32 rows and the norm weight, normalised and rounded to bf16 pairs in the same element order
 * (x * inv * w as k_rmsnorm computes it). One chunk = 8 elements of rows g and g + 8. */
/* The activations (and their sums of squares, ss_in) are read through L2 (__ldcg), not the
 * read-only path or L1: under a dependent launch this grid is resident while its predecessor
 * writes them. */
template <bool XN> struct sk_xsrc;
template <> struct sk_xsrc<false> {
  struct buf { uint4 a, b; };
  const bf16 *p0, *p1;
  __device__ __forceinline__ void init(const sk_args &p, int r0, int r1, int t, const float *) {
    p0 = p.X + (size_t)r0 * p.ldx + t * 8;
    p1 = p.X + (size_t)r1 * p.ldx + t * 8;
  }
  __device__ __forceinline__ void load(int k, buf &x) const {
    x.a = __ldcg((const uint4 *)(p0 + (size_t)k * 32));
    x.b = __ldcg((const uint4 *)(p1 + (size_t)k * 32));
  }
  __device__ __forceinline__ void frag(const buf &x, uint4 &a, uint4 &b) const { a = x.a; b = x.b; }
};
template <> struct sk_xsrc<true> {
  struct buf { float4 a0, a1, b0, b1, w0, w1; };
  const float *p0, *p1, *w;
  float inv0, inv1;
  /* inv: the rows' 1/rms at [0] (row g) and [8] (row g + 8) */
  __device__ __forceinline__ void init(const sk_args &p, int r0, int r1, int t, const float *inv) {
    p0 = p.xf + (size_t)r0 * p.ldx + t * 8;
    p1 = p.xf + (size_t)r1 * p.ldx + t * 8;
    w = p.gnorm + t * 8;
    inv0 = inv[0];
    inv1 = inv[8];
  }
  __device__ __forceinline__ void load(int k, buf &x) const {
    size_t o = (size_t)k * 32;
    x.a0 = __ldcg((const float4 *)(p0 + o));
    x.a1 = __ldcg((const float4 *)(p0 + o + 4));
    x.b0 = __ldcg((const float4 *)(p1 + o));
    x.b1 = __ldcg((const float4 *)(p1 + o + 4));
    x.w0 = __ldg((const float4 *)(w + o));
    x.w1 = __ldg((const float4 *)(w + o + 4));
  }
  static __device__ __forceinline__ uint4 norm8(const float4 &u, const float4 &v, const float4 &w0, const float4 &w1,
                                                float inv) {
    uint4 r;
    r.x = cu_pack_bf16x2(u.x * inv * w0.x, u.y * inv * w0.y);
    r.y = cu_pack_bf16x2(u.z * inv * w0.z, u.w * inv * w0.w);
    r.z = cu_pack_bf16x2(v.x * inv * w1.x, v.y * inv * w1.y);
    r.w = cu_pack_bf16x2(v.z * inv * w1.z, v.w * inv * w1.w);
    return r;
  }
  __device__ __forceinline__ void frag(const buf &x, uint4 &a, uint4 &b) const {
    a = norm8(x.a0, x.a1, x.w0, x.w1, inv0);
    b = norm8(x.b0, x.b1, x.w0, x.w1, inv1);
  }
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

/* Writes result (row, col) of the block: v (gate for SwiGLU, with u the up value). Returns the
 * value stored in Y (plain, in range), else 0: what ss_out sums. */
template <int EPI>
__device__ __forceinline__ float sk_store(const sk_args &p, int row, int col, float v, float u) {
  if (row >= p.A) return 0.f;
  if (EPI == SK_SWIGLU) {
    int F = p.out / 2;
    if (col < F) p.act[(size_t)row * F + col] = __float2bfloat16(v / (1.0f + expf(-v)) * u);
    return 0.f;
  }
  if (col >= p.out) return 0.f;
  float *y = p.Y + (size_t)row * p.ldy + col;
  float o = p.beta != 0.f ? v + p.beta * *y : v;
  *y = o;
  return o;
}

/* W row pointers of the NT tiles whose first column is c0 (clamped to a valid row past the end):
 * thread (g, t) reads row tile*8 + g at k = 8 t of each chunk; SwiGLU: tiles < NT/2 are gate rows
 * for act columns c0 + (tile % (NT/2)) * 8 + g, the rest the matching up rows (F below) */
template <int NT, int EPI>
__device__ __forceinline__ void sk_wrows(const sk_args &p, int c0, int g, int t, const bf16 *(&wp)[NT]) {
  constexpr int HALF = NT > 1 ? NT / 2 : 1;
  int F = p.out / 2;
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
}

/* v[j] += p[s * stride + j * jstride] for s = 0 .. n-1 in that order (the fixed order that keeps
 * a sum of partials deterministic), for each of the NV values. The loads of SB parts are issued
 * together: a loop of n dependent load-and-adds would wait on L2 n times (NV n times where each
 * value had its own loop), this about n / SB times. Through L2 (__ldcg): other blocks wrote them. */
template <int NV, int SB>
__device__ __forceinline__ void sk_add_parts(float (&v)[NV], const float *p, size_t stride, int jstride, int n) {
  for (int s0 = 0; s0 < n; s0 += SB) {
    float x[SB][NV];
#pragma unroll
    for (int s = 0; s < SB; s++) { /* past the end: no load (a predicated one does not wait), */
      size_t si = (size_t)min(s0 + s, n - 1); /* and an address in range should one be issued */
#pragma unroll
      for (int j = 0; j < NV; j++) x[s][j] = s0 + s < n ? __ldcg(p + si * stride + (size_t)j * jstride) : 0.f;
    }
#pragma unroll
    for (int s = 0; s < SB; s++)
#pragma unroll
      for (int j = 0; j < NV; j++)
        if (s0 + s < n) v[j] += x[s][j];
  }
}

/* the rows' 1/rms from the ss_in partials into s_inv (rows >= A: row A - 1's), then a barrier;
 * after the dependent-launch wait */
__device__ __forceinline__ void sk_inv(const sk_args &p, float *s_inv) {
  if (threadIdx.x < SK_MAXROWS) {
    int row = (int)threadIdx.x < p.A ? (int)threadIdx.x : p.A - 1;
    float s[1] = {0.f};
    sk_add_parts<1, 16>(s, p.ss_in + row, SK_MAXROWS, 0, p.ss_groups);
    s_inv[threadIdx.x] = 1.0f / sqrtf(s[0] / p.in + p.eps);
  }
  __syncthreads();
}

/* after this block stored its partial tile: takes the column group's ticket and says whether the
 * block is the last of the ksb parts to finish (then every part's partials are visible to it);
 * s_last: a shared int. Called by every thread of the block. */
__device__ __forceinline__ bool sk_last_part(const sk_args &p, int *s_last) {
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) *s_last = atomicAdd(&p.cnt[blockIdx.x], 1) == p.ksb - 1;
  __syncthreads();
  if (!*s_last) return false;
  __threadfence();
  return true;
}

template <int NT, int EPI, bool XN, int MINB>
__global__ void __launch_bounds__(SK_WARPS * 32, MINB) k_skinny(sk_args p) {
  constexpr int U = 8 / NT;                   /* chunks whose loads are in flight together */
  constexpr int HALF = NT > 1 ? NT / 2 : 1;   /* SwiGLU: gate tiles, then as many up tiles */
  constexpr int NE = (EPI == SK_SWIGLU ? HALF : NT) * 4 * 32; /* results per block */
  constexpr int UP = HALF * 4;                /* SwiGLU: register index of the up tile of gate index j */
  __shared__ float red[SK_WARPS][NT * 4][32];
  __shared__ float sq[SK_MAXROWS][NT * 8 + 1]; /* ss_out: squares of the block's results */
  __shared__ float s_inv[SK_MAXROWS];
  __shared__ int s_last;
  int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  /* SwiGLU: block b owns act columns [b*NT*4, +NT*4) of out / 2 */
  int cols = EPI == SK_SWIGLU ? NT * 4 : NT * 8, c0 = blockIdx.x * cols;
  const bf16 *wp[NT];
  sk_wrows<NT, EPI>(p, c0, g, t, wp);
  int r0 = g < p.A ? g : p.A - 1, r1 = g + 8 < p.A ? g + 8 : p.A - 1; /* rows read (>= A: row A - 1) */
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
  if (XN) sk_inv(p, s_inv);
  sk_xsrc<XN> xs;
  xs.init(p, r0, r1, t, s_inv + g);
  for (; k + U <= k1; k += U) {
    typename sk_xsrc<XN>::buf xb[U];
    uint4 w[U][NT];
#pragma unroll
    for (int u = 0; u < U; u++) {
#pragma unroll
      for (int i = 0; i < NT; i++) w[u][i] = __ldcs((const uint4 *)(wp[i] + (size_t)(k + u) * 32));
      xs.load(k + u, xb[u]);
    }
#pragma unroll
    for (int u = 0; u < U; u++) {
      uint4 a, b;
      xs.frag(xb[u], a, b);
      sk_chunk<NT>(c, a, b, w[u]);
    }
  }
  for (; k < k1; k++) {
    typename sk_xsrc<XN>::buf xb;
    uint4 w[NT];
#pragma unroll
    for (int i = 0; i < NT; i++) w[i] = __ldcs((const uint4 *)(wp[i] + (size_t)k * 32));
    xs.load(k, xb);
    uint4 a, b;
    xs.frag(xb, a, b);
    sk_chunk<NT>(c, a, b, w);
  }
#pragma unroll
  for (int i = 0; i < NT; i++)
#pragma unroll
    for (int r = 0; r < 4; r++) red[warp][i * 4 + r][lane] = c[i][r];
  __syncthreads();
  /* result e of the block: fragment register j = tile*4 + reg of lane l is row l/4 (+8 for regs
   * 2, 3), column tile*8 + 2 (l%4) + (reg & 1) of the block's columns; SwiGLU: j indexes the gate
   * tiles and j + UP the matching up tile */
  constexpr int NP = NT * 4 * 32;
  const float *all = NULL;
  if (p.ksb > 1) {
    /* this block's sums (gate and up for SwiGLU: all NP values) to the workspace; the last block
     * of the column group to get here adds the ksb parts in order */
    float *mine = p.part + ((size_t)blockIdx.x * p.ksb + blockIdx.y) * NP;
    for (int e = threadIdx.x; e < NP; e += blockDim.x) {
      float v = 0.f;
#pragma unroll
      for (int ww = 0; ww < SK_WARPS; ww++) v += red[ww][e >> 5][e & 31];
      mine[e] = v;
    }
    if (!sk_last_part(p, &s_last)) return;
    all = p.part + (size_t)blockIdx.x * p.ksb * NP;
  }
  for (int e = threadIdx.x; e < NE; e += blockDim.x) {
    int j = e >> 5, l = e & 31, r = j & 3, tile = j >> 2;
    int row = (l >> 2) + (r >> 1) * 8, col = c0 + tile * 8 + 2 * (l & 3) + (r & 1);
    float v = 0.f, u = 0.f;
    if (all) {
      float vu[EPI == SK_SWIGLU ? 2 : 1] = {};
      sk_add_parts<EPI == SK_SWIGLU ? 2 : 1, 8>(vu, all + e, NP, UP * 32, p.ksb);
      v = vu[0];
      if (EPI == SK_SWIGLU) u = vu[EPI == SK_SWIGLU ? 1 : 0];
    } else {
#pragma unroll
      for (int ww = 0; ww < SK_WARPS; ww++) v += red[ww][j][l];
      if (EPI == SK_SWIGLU) {
#pragma unroll
        for (int ww = 0; ww < SK_WARPS; ww++) u += red[ww][j + UP][l];
      }
    }
    float o = sk_store<EPI>(p, row, col, v, u);
    if (EPI == SK_PLAIN && p.ss_out) sq[row][col - c0] = o * o;
  }
  if (EPI == SK_PLAIN && p.ss_out) {
    __syncthreads();
    if (threadIdx.x < SK_MAXROWS) {
      float s = 0.f;
      for (int q = 0; q < NT * 8; q++) s += sq[threadIdx.x][q];
      p.ss_out[(size_t)blockIdx.x * SK_MAXROWS + threadIdx.x] = s;
    }
  }
  if (all && threadIdx.x == 0) p.cnt[blockIdx.x] = 0;
}

/* ---------------------------------------------------------------- the wide layout
 *
 * k_skinny's warps split K, so a block owns only NT*8 columns and every block re-reads the whole
 * X slice it covers: as many bytes of X as of W for a normalised f32 source (through L2, with the
 * norm redone in every block). In the wide layout the SK_WARPS warps of a block each own NT tiles
 * (a block: SK_WARPS*NT*8 columns; SwiGLU SK_WARPS*NT*4 act columns), all over the block's part
 * of K, whose X slice the block first stages in shared memory as the bf16 fragments (normalised
 * there once): X is read once per SK_WARPS times as many columns. The price: a part of K is at
 * most SKW_MAXCH chunks (ksb >= in / (32 SKW_MAXCH)) and fewer, wider column groups need more
 * parts to fill the GPU, so more partial tiles go through the workspace. Each warp's first U
 * chunks of W are loaded before the dependent-launch wait (weights are constants of a step),
 * later ones one group ahead of the mmas. Partials, tickets and the epilogue work as in k_skinny,
 * each thread on its own fragment values (no shared-memory reduction); sums of squares for
 * ss_out go per thread, then per row in a fixed order (warp, thread). */
#define SKW_MAXCH 40 /* 1 KB of shared memory per chunk: 16 rows x 32 k of bf16 */
#ifndef SK_DYN_SMEM  /* the CPU emulation (tests/c/test_skinny_emu.cpp) makes it a static array */
#define SK_DYN_SMEM(T, name) extern __shared__ T name[]
#endif

#define SKW_SU 4      /* staging loads in flight per thread */
/* the staged X plus k_skinny_wide's static arrays stay under the 48 KB a launch gets without
 * cudaFuncSetAttribute (the emulation would not notice: there it is a static array) */
static_assert(SKW_MAXCH * 64 * 16 + SK_WARPS * SK_MAXROWS * 4 * 4 + 1024 <= 48 * 1024,
              "SKW_MAXCH: the wide layout's shared memory would pass 48 KB");

/* one staged item: 8 elements of row r at k, as loaded (bf16; or f32 and the norm's weight) and
 * as stored (the fragment's bf16, normalised with the row's inv) */
__device__ __forceinline__ void skw_ldx(sk_xsrc<false>::buf &b, const sk_args &p, int r, int k) {
  b.a = __ldcg((const uint4 *)(p.X + (size_t)r * p.ldx + k));
}
__device__ __forceinline__ void skw_ldx(sk_xsrc<true>::buf &b, const sk_args &p, int r, int k) {
  const float *x = p.xf + (size_t)r * p.ldx + k;
  b.a0 = __ldcg((const float4 *)x);
  b.a1 = __ldcg((const float4 *)(x + 4));
  b.w0 = __ldg((const float4 *)(p.gnorm + k));
  b.w1 = __ldg((const float4 *)(p.gnorm + k + 4));
}
__device__ __forceinline__ uint4 skw_frag(const sk_xsrc<false>::buf &b, float) { return b.a; }
__device__ __forceinline__ uint4 skw_frag(const sk_xsrc<true>::buf &b, float inv) {
  return sk_xsrc<true>::norm8(b.a0, b.a1, b.w0, b.w1, inv);
}

template <int NT>
__device__ __forceinline__ void skw_load(uint4 (&w)[8 / NT][NT], const bf16 *const (&wp)[NT], int k, int k1) {
#pragma unroll
  for (int u = 0; u < 8 / NT; u++)
#pragma unroll
    for (int i = 0; i < NT; i++)
      if (k + u < k1) w[u][i] = __ldcs((const uint4 *)(wp[i] + (size_t)(k + u) * 32));
}

template <int NT, int EPI, bool XN, int MINB>
__global__ void __launch_bounds__(SK_WARPS * 32, MINB) k_skinny_wide(sk_args p) {
  constexpr int U = 8 / NT;
  constexpr int HALF = NT > 1 ? NT / 2 : 1;
  constexpr int NP = SK_WARPS * NT * 4 * 32; /* fragment values of a block */
  SK_DYN_SMEM(uint4, xsm);                   /* [chunk][row 16][4]: 8 bf16 of k = chunk*32 + 8 q */
  __shared__ float s_inv[SK_MAXROWS];
  __shared__ float wsq[SK_WARPS][SK_MAXROWS][4];
  __shared__ int s_last;
  int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  int per = EPI == SK_SWIGLU ? NT * 4 : NT * 8;
  int c0 = ((int)blockIdx.x * SK_WARPS + warp) * per; /* the warp's first column (act column for SwiGLU) */
  const bf16 *wp[NT];
  sk_wrows<NT, EPI>(p, c0, g, t, wp);
  int nch = p.in / 32, b0 = (int)((int64_t)blockIdx.y * nch / p.ksb), b1 = (int)((int64_t)(blockIdx.y + 1) * nch / p.ksb);
  uint4 w[U][NT], wn[U][NT];
  skw_load<NT>(w, wp, b0, b1); /* before the wait: W is no predecessor's output */
  cu_pdl_wait();
  cu_pdl_trigger();
  if (XN) sk_inv(p, s_inv);
  /* stage X (rows >= A re-read row A - 1), SKW_SU items of 8 elements per thread in flight */
  constexpr int SU = SKW_SU;
  for (int q0 = threadIdx.x; q0 < (b1 - b0) * 64; q0 += SU * SK_WARPS * 32) {
    typename sk_xsrc<XN>::buf v[SU] = {};
#pragma unroll
    for (int s = 0; s < SU; s++) {
      int q = q0 + s * SK_WARPS * 32;
      if (q >= (b1 - b0) * 64) break;
      int row = (q >> 2) & 15, r = row < p.A ? row : p.A - 1, k = (b0 + (q >> 6)) * 32 + (q & 3) * 8;
      skw_ldx(v[s], p, r, k);
    }
#pragma unroll
    for (int s = 0; s < SU; s++) {
      int q = q0 + s * SK_WARPS * 32;
      if (q >= (b1 - b0) * 64) break;
      xsm[q] = skw_frag(v[s], XN ? s_inv[(q >> 2) & 15] : 1.f);
    }
  }
  __syncthreads();
  float c[NT][4];
#pragma unroll
  for (int i = 0; i < NT; i++) c[i][0] = c[i][1] = c[i][2] = c[i][3] = 0.f;
  for (int k = b0; k < b1; k += U) {
    if (k + U < b1) skw_load<NT>(wn, wp, k + U, b1); /* the next group's loads fly over these mmas */
#pragma unroll
    for (int u = 0; u < U; u++)
      if (k + u < b1) {
        const uint4 *xc = xsm + (k + u - b0) * 64;
        sk_chunk<NT>(c, xc[g * 4 + t], xc[(g + 8) * 4 + t], w[u]);
      }
#pragma unroll
    for (int u = 0; u < U; u++)
#pragma unroll
      for (int i = 0; i < NT; i++) w[u][i] = wn[u][i];
  }
  if (p.ksb > 1) {
    /* this block's values to the workspace; the last block of the column group adds the parts */
    float *mine = p.part + ((size_t)blockIdx.x * p.ksb + blockIdx.y) * NP + (size_t)warp * NT * 4 * 32 + lane;
#pragma unroll
    for (int i = 0; i < NT; i++)
#pragma unroll
      for (int r = 0; r < 4; r++) mine[(i * 4 + r) * 32] = c[i][r];
    if (!sk_last_part(p, &s_last)) return;
    const float *all = p.part + (size_t)blockIdx.x * p.ksb * NP + (size_t)warp * NT * 4 * 32 + lane;
    float f[NT * 4] = {};
    sk_add_parts<NT * 4, 16 / NT>(f, all, NP, 32, p.ksb);
#pragma unroll
    for (int i = 0; i < NT; i++)
#pragma unroll
      for (int r = 0; r < 4; r++) c[i][r] = f[i * 4 + r];
  }
  /* fragment register r of tile i: row g (+8 for r >= 2), column 2t + (r & 1) of the tile */
  float sq0 = 0.f, sq1 = 0.f;
#pragma unroll
  for (int i = 0; i < (EPI == SK_SWIGLU ? HALF : NT); i++)
#pragma unroll
    for (int r = 0; r < 4; r++) {
      int row = g + (r >> 1) * 8, col = c0 + i * 8 + 2 * t + (r & 1);
      float o = sk_store<EPI>(p, row, col, c[i][r], EPI == SK_SWIGLU ? c[i + HALF][r] : 0.f);
      if (r < 2) sq0 += o * o;
      else sq1 += o * o;
    }
  if (EPI == SK_PLAIN && p.ss_out) {
    wsq[warp][g][t] = sq0;
    wsq[warp][g + 8][t] = sq1;
    __syncthreads();
    if (threadIdx.x < SK_MAXROWS) {
      float s = 0.f;
      for (int ww = 0; ww < SK_WARPS; ww++)
        for (int q = 0; q < 4; q++) s += wsq[ww][threadIdx.x][q];
      p.ss_out[(size_t)blockIdx.x * SK_MAXROWS + threadIdx.x] = s;
    }
  }
  if (p.ksb > 1 && threadIdx.x == 0) p.cnt[blockIdx.x] = 0;
}

/* The wide layout's launch shape, or false where it cannot run (the parts of K it needs do not
 * fit the workspace): nt tiles per warp (1, 2 or 4, else 2; SwiGLU at least 2), ksb parts of K
 * (at least in / (32 SKW_MAXCH); requested, else the fewest that give two blocks per
 * multiprocessor, at most 64 and one chunk per part), grid = column groups of SK_WARPS*nt tiles;
 * *smem the bytes of shared memory a block stages. */
static inline bool skw_plan(int in, int out, bool swiglu, int nt_req, int ksb_req, int sms, size_t nfloat, int ncnt,
                            int *nt_out, int *ksb_out, int *grid_out, size_t *smem_out) {
  int nt = nt_req == 1 || nt_req == 2 || nt_req == 4 ? nt_req : 2;
  if (swiglu && nt < 2) nt = 2;
  int cols = swiglu ? out / 2 : out, per = SK_WARPS * (swiglu ? nt * 4 : nt * 8);
  int grid = (cols + per - 1) / per, nch = in / 32, kmin = (nch + SKW_MAXCH - 1) / SKW_MAXCH;
  int ksb = ksb_req > kmin ? ksb_req : kmin;
  if (ksb_req <= 0)
    while (grid * ksb < 2 * sms && ksb < 64) ksb++;
  if (ksb > nch) ksb = nch;
  size_t need = (size_t)grid * ksb * SK_WARPS * nt * 4 * 32;
  if (ksb > 1 && (grid > ncnt || need > nfloat)) return false;
  *nt_out = nt;
  *ksb_out = ksb;
  *grid_out = grid;
  *smem_out = (size_t)((nch + ksb - 1) / ksb) * 64 * sizeof(uint4);
  return true;
}

/* The launch shape (cuda.h: cf_cuda_skinny_plan): nt tiles per block (requested 1, 2 or 4, else
 * 4; SwiGLU at least 2; a normalised f32 source (xn) exactly 4: its loads take more registers),
 * ksb parts of K (requested, else the fewest that give two blocks per multiprocessor with at
 * least one chunk per warp, at most 16), 1 when the workspace (nfloat floats, ncnt counters)
 * cannot hold the split; grid = column groups. */
static inline void sk_plan(int in, int out, bool swiglu, bool xn, int nt_req, int ksb_req, int sms, size_t nfloat,
                           int ncnt, int *nt_out, int *ksb_out, int *grid_out) {
  int nt = nt_req == 1 || nt_req == 2 || nt_req == 4 ? nt_req : 4;
  if (swiglu && nt < 2) nt = 2;
  if (xn) nt = 4;
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
