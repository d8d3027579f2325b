/* attention.cuh - the device code of the attention op's CUDA-core kernels (attention.cu says
 * what they compute and how): the forward (also the backward's statistics), dq and dkv. Apart
 * from the host code so that tests/c/test_attention_emu.cpp runs the same kernels on the CPU
 * (tests/c/cuda_emu.h). From its includer: bf16, to_float, stf, ld_any and the dtype codes,
 * warp_max and warp_sum (block_reduce.cuh), __syncthreads and __shfl_sync, and AT_SMEM(name)
 * (the dynamic shared memory, floats).
 */
#ifndef CF_ATTENTION_CUH
#define CF_ATTENTION_CUH

#define AT_WARPS 4
#define AT_R 4                      /* rows per warp */
#define AT_BQ (AT_WARPS * AT_R)     /* rows per block */
#define AT_BK 32                    /* keys (or queries) per tile */
#define AT_DMAX 128
#define AT_DC (AT_DMAX / 32)

struct at_geo {
  int64_t B, Hq, Hkv, T, S, D, Dv, rep;
  float scale;
  int causal;
  int64_t qs[3], ks[3], vs[3], os[3]; /* strides of dims 0..2 (dim 3 has stride 1) */
  const void *mask;
  int mdt;
  int64_t ms[4];
};

/* Each kernel's dynamic shared memory, bytes (the layouts are at the top of each kernel) */
static inline size_t at_fwd_smem(const at_geo &g) {
  return (size_t)(AT_BQ * g.D + AT_BK * (g.D + 1) + AT_BK * g.Dv) * sizeof(float);
}
static inline size_t at_dq_smem(const at_geo &g) {
  return (size_t)(AT_BQ * g.D + AT_BQ * g.Dv + AT_BK * (g.D + 1) + AT_BK * (g.Dv + 1)) * sizeof(float);
}
static inline size_t at_dkv_smem(const at_geo &g) { return at_dq_smem(g) + 2 * AT_BK * sizeof(float); }

__device__ __forceinline__ bool at_visible(const at_geo &g, int64_t b, int64_t h, int64_t t, int64_t s) {
  if (s >= g.S || t >= g.T) return false;
  if (g.causal && s > t + (g.S - g.T)) return false;
  if (g.mask && ld_any(g.mask, g.mdt, b * g.ms[0] + h * g.ms[1] + t * g.ms[2] + s * g.ms[3]) == 0) return false;
  return true;
}

/* One past the last key any of the query rows [t0, t1) can see. */
__device__ __forceinline__ int64_t at_key_end(const at_geo &g, int64_t t1) {
  if (!g.causal) return g.S;
  int64_t e = (t1 - 1) + (g.S - g.T) + 1;
  return e < g.S ? (e > 0 ? e : 0) : g.S;
}

// out [B,Hq,T,Dv] = softmax(q k^T scale) v;  STATS: lse, Di [B,Hq,T] instead (Di = dO . O)
template <typename T, bool STATS>
__global__ void __launch_bounds__(AT_WARPS * 32) attn_fwd_kernel(T *out, const T *q, const T *k, const T *v,
                                                                 const T *dO, float *lse, float *Di, at_geo g) {
  AT_SMEM(sm);
  const int64_t D = g.D, Dv = g.Dv;
  float *Qs = sm;                       /* [BQ][D], scaled */
  float *Ks = Qs + AT_BQ * D;           /* [BK][D + 1] */
  float *Vs = Ks + AT_BK * (D + 1);     /* [BK][Dv] */
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
  const int64_t b = blockIdx.z, h = blockIdx.y, kh = h / g.rep, t0 = (int64_t)blockIdx.x * AT_BQ;
  const T *qb = q + b * g.qs[0] + h * g.qs[1];
  const T *kb = k + b * g.ks[0] + kh * g.ks[1];
  const T *vb = v + b * g.vs[0] + kh * g.vs[1];

  for (int64_t i = threadIdx.x; i < AT_BQ * D; i += blockDim.x) {
    int64_t r = i / D, d = i % D, t = t0 + r;
    Qs[i] = t < g.T ? to_float(qb[t * g.qs[2] + d]) * g.scale : 0.f;
  }
  float m[AT_R], l[AT_R], acc[AT_R][AT_DC];
#pragma unroll
  for (int r = 0; r < AT_R; r++) {
    m[r] = -INFINITY;
    l[r] = 0.f;
#pragma unroll
    for (int c = 0; c < AT_DC; c++) acc[r][c] = 0.f;
  }
  int64_t t1 = t0 + AT_BQ < g.T ? t0 + AT_BQ : g.T;
  int64_t kend = at_key_end(g, t1);
  for (int64_t s0 = 0; s0 < kend; s0 += AT_BK) {
    __syncthreads();
    for (int64_t i = threadIdx.x; i < AT_BK * D; i += blockDim.x) {
      int64_t j = i / D, d = i % D, s = s0 + j;
      Ks[j * (D + 1) + d] = s < g.S ? to_float(kb[s * g.ks[2] + d]) : 0.f;
    }
    for (int64_t i = threadIdx.x; i < AT_BK * Dv; i += blockDim.x) {
      int64_t j = i / Dv, d = i % Dv, s = s0 + j;
      Vs[i] = s < g.S ? to_float(vb[s * g.vs[2] + d]) : 0.f;
    }
    __syncthreads();
    const int64_t s = s0 + lane;
    float sc[AT_R];
#pragma unroll
    for (int r = 0; r < AT_R; r++) sc[r] = 0.f;
    const float *kr = Ks + lane * (D + 1);
    for (int64_t d = 0; d < D; d++) {
      float kd = kr[d];
#pragma unroll
      for (int r = 0; r < AT_R; r++) sc[r] += Qs[(w * AT_R + r) * D + d] * kd;
    }
    float p[AT_R];
#pragma unroll
    for (int r = 0; r < AT_R; r++) {
      int64_t t = t0 + w * AT_R + r;
      bool vis = at_visible(g, b, h, t, s);
      float x = vis ? sc[r] : -INFINITY;
      /* a NaN score counts as +inf in the maximum: its row is then NaN from here on (exp(x - inf)
         is 0 or NaN, later tiles rescale by exp(inf - inf)), as on the CPU, not taken for a row
         that sees no key (fmaxf skips NaN) */
      float mn = fmaxf(m[r], warp_max(x != x ? INFINITY : x));
      if (mn == -INFINITY) { p[r] = 0.f; continue; }
      float alpha = m[r] == -INFINITY ? 0.f : expf(m[r] - mn);
      p[r] = vis ? expf(x - mn) : 0.f;
      l[r] = l[r] * alpha + warp_sum(p[r]);
#pragma unroll
      for (int c = 0; c < AT_DC; c++) acc[r][c] *= alpha;
      m[r] = mn;
    }
    for (int j = 0; j < AT_BK; j++) {
      float pj[AT_R];
#pragma unroll
      for (int r = 0; r < AT_R; r++) pj[r] = __shfl_sync(0xffffffffu, p[r], j);
      const float *vr = Vs + j * Dv;
#pragma unroll
      for (int c = 0; c < AT_DC; c++) {
        int64_t d = lane + 32 * c;
        if (d < Dv) {
          float vd = vr[d];
#pragma unroll
          for (int r = 0; r < AT_R; r++) acc[r][c] += pj[r] * vd;
        }
      }
    }
  }
#pragma unroll
  for (int r = 0; r < AT_R; r++) {
    int64_t t = t0 + w * AT_R + r;
    if (t >= g.T) continue;
    float inv = l[r] > 0 ? 1.f / l[r] : 0.f;
    int64_t row = (b * g.Hq + h) * g.T + t;
    if (STATS) {
      const T *dor = dO + b * g.os[0] + h * g.os[1] + t * g.os[2];
      float part = 0.f;
#pragma unroll
      for (int c = 0; c < AT_DC; c++) {
        int64_t d = lane + 32 * c;
        if (d < Dv) part += to_float(dor[d]) * acc[r][c] * inv;
      }
      part = warp_sum(part);
      if (lane == 0) {
        lse[row] = l[r] == 0.f ? -INFINITY : m[r] + logf(l[r]); /* a NaN row: NaN, which the backward passes on */
        Di[row] = part;
      }
    } else {
      T *orow = out + row * Dv;
#pragma unroll
      for (int c = 0; c < AT_DC; c++) {
        int64_t d = lane + 32 * c;
        if (d < Dv) stf(orow, d, acc[r][c] * inv);
      }
    }
  }
}

// gq [B,Hq,T,D] = scale * sum_s ds k,  ds = p (dO . v - Di)
template <typename T>
__global__ void __launch_bounds__(AT_WARPS * 32) attn_dq_kernel(T *gq, const T *q, const T *k, const T *v,
                                                                const T *dO, const float *lse, const float *Di,
                                                                at_geo g) {
  AT_SMEM(sm);
  const int64_t D = g.D, Dv = g.Dv;
  float *Qs = sm;                       /* [BQ][D] scaled */
  float *Os = Qs + AT_BQ * D;           /* [BQ][Dv] dO */
  float *Ks = Os + AT_BQ * Dv;          /* [BK][D + 1] */
  float *Vs = Ks + AT_BK * (D + 1);     /* [BK][Dv + 1] */
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
  const int64_t b = blockIdx.z, h = blockIdx.y, kh = h / g.rep, t0 = (int64_t)blockIdx.x * AT_BQ;
  const T *qb = q + b * g.qs[0] + h * g.qs[1];
  const T *ob = dO + b * g.os[0] + h * g.os[1];
  const T *kb = k + b * g.ks[0] + kh * g.ks[1];
  const T *vb = v + b * g.vs[0] + kh * g.vs[1];
  for (int64_t i = threadIdx.x; i < AT_BQ * D; i += blockDim.x) {
    int64_t r = i / D, d = i % D, t = t0 + r;
    Qs[i] = t < g.T ? to_float(qb[t * g.qs[2] + d]) * g.scale : 0.f;
  }
  for (int64_t i = threadIdx.x; i < AT_BQ * Dv; i += blockDim.x) {
    int64_t r = i / Dv, d = i % Dv, t = t0 + r;
    Os[i] = t < g.T ? to_float(ob[t * g.os[2] + d]) : 0.f;
  }
  float L[AT_R], Dd[AT_R], acc[AT_R][AT_DC];
#pragma unroll
  for (int r = 0; r < AT_R; r++) {
    int64_t t = t0 + w * AT_R + r;
    int64_t row = (b * g.Hq + h) * g.T + t;
    L[r] = t < g.T ? lse[row] : -INFINITY;
    Dd[r] = t < g.T ? Di[row] : 0.f;
#pragma unroll
    for (int c = 0; c < AT_DC; c++) acc[r][c] = 0.f;
  }
  int64_t t1 = t0 + AT_BQ < g.T ? t0 + AT_BQ : g.T;
  int64_t kend = at_key_end(g, t1);
  for (int64_t s0 = 0; s0 < kend; s0 += AT_BK) {
    __syncthreads();
    for (int64_t i = threadIdx.x; i < AT_BK * D; i += blockDim.x) {
      int64_t j = i / D, d = i % D, s = s0 + j;
      Ks[j * (D + 1) + d] = s < g.S ? to_float(kb[s * g.ks[2] + d]) : 0.f;
    }
    for (int64_t i = threadIdx.x; i < AT_BK * Dv; i += blockDim.x) {
      int64_t j = i / Dv, d = i % Dv, s = s0 + j;
      Vs[j * (Dv + 1) + d] = s < g.S ? to_float(vb[s * g.vs[2] + d]) : 0.f;
    }
    __syncthreads();
    const int64_t s = s0 + lane;
    float sc[AT_R], dp[AT_R];
#pragma unroll
    for (int r = 0; r < AT_R; r++) sc[r] = dp[r] = 0.f;
    const float *kr = Ks + lane * (D + 1), *vr = Vs + lane * (Dv + 1);
    for (int64_t d = 0; d < D; d++) {
      float kd = kr[d];
#pragma unroll
      for (int r = 0; r < AT_R; r++) sc[r] += Qs[(w * AT_R + r) * D + d] * kd;
    }
    for (int64_t d = 0; d < Dv; d++) {
      float vd = vr[d];
#pragma unroll
      for (int r = 0; r < AT_R; r++) dp[r] += Os[(w * AT_R + r) * Dv + d] * vd;
    }
    float ds[AT_R];
#pragma unroll
    for (int r = 0; r < AT_R; r++) {
      int64_t t = t0 + w * AT_R + r;
      bool vis = L[r] != -INFINITY && at_visible(g, b, h, t, s); /* L NaN: visible, p NaN */
      float p = vis ? expf(sc[r] - L[r]) : 0.f;
      ds[r] = p * (dp[r] - Dd[r]);
    }
    for (int j = 0; j < AT_BK; j++) {
      float dj[AT_R];
#pragma unroll
      for (int r = 0; r < AT_R; r++) dj[r] = __shfl_sync(0xffffffffu, ds[r], j);
      const float *kj = Ks + j * (D + 1);
#pragma unroll
      for (int c = 0; c < AT_DC; c++) {
        int64_t d = lane + 32 * c;
        if (d < D) {
          float kd = kj[d];
#pragma unroll
          for (int r = 0; r < AT_R; r++) acc[r][c] += dj[r] * kd;
        }
      }
    }
  }
#pragma unroll
  for (int r = 0; r < AT_R; r++) {
    int64_t t = t0 + w * AT_R + r;
    if (t >= g.T) continue;
    T *grow = gq + ((b * g.Hq + h) * g.T + t) * D;
#pragma unroll
    for (int c = 0; c < AT_DC; c++) {
      int64_t d = lane + 32 * c;
      if (d < D) stf(grow, d, acc[r][c] * g.scale);
    }
  }
}

// gk [B,Hkv,S,D] = scale * sum_{h in group, t} ds q;  gv [B,Hkv,S,Dv] = sum p dO
template <typename T>
__global__ void __launch_bounds__(AT_WARPS * 32) attn_dkv_kernel(T *gk, T *gv, const T *q, const T *k, const T *v,
                                                                 const T *dO, const float *lse, const float *Di,
                                                                 at_geo g) {
  AT_SMEM(sm);
  const int64_t D = g.D, Dv = g.Dv;
  float *Kr = sm;                       /* [BQ][D] own key rows */
  float *Vr = Kr + AT_BQ * D;           /* [BQ][Dv] */
  float *Qt = Vr + AT_BQ * Dv;          /* [BK][D + 1] query tile, scaled */
  float *Ot = Qt + AT_BK * (D + 1);     /* [BK][Dv + 1] dO tile */
  float *Lt = Ot + AT_BK * (Dv + 1);    /* [BK] lse */
  float *Dt = Lt + AT_BK;               /* [BK] Di */
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
  const int64_t b = blockIdx.z, kh = blockIdx.y, s0 = (int64_t)blockIdx.x * AT_BQ;
  const T *kb = k + b * g.ks[0] + kh * g.ks[1];
  const T *vb = v + b * g.vs[0] + kh * g.vs[1];
  for (int64_t i = threadIdx.x; i < AT_BQ * D; i += blockDim.x) {
    int64_t r = i / D, d = i % D, s = s0 + r;
    Kr[i] = s < g.S ? to_float(kb[s * g.ks[2] + d]) : 0.f;
  }
  for (int64_t i = threadIdx.x; i < AT_BQ * Dv; i += blockDim.x) {
    int64_t r = i / Dv, d = i % Dv, s = s0 + r;
    Vr[i] = s < g.S ? to_float(vb[s * g.vs[2] + d]) : 0.f;
  }
  float ak[AT_R][AT_DC], av[AT_R][AT_DC];
#pragma unroll
  for (int r = 0; r < AT_R; r++)
#pragma unroll
    for (int c = 0; c < AT_DC; c++) ak[r][c] = av[r][c] = 0.f;
  /* the first query row that can see key s0 */
  int64_t tstart = g.causal ? s0 - (g.S - g.T) : 0;
  if (tstart < 0) tstart = 0;
  tstart = (tstart / AT_BK) * AT_BK;
  for (int64_t h = kh * g.rep; h < (kh + 1) * g.rep; h++) {
    const T *qb = q + b * g.qs[0] + h * g.qs[1];
    const T *ob = dO + b * g.os[0] + h * g.os[1];
    for (int64_t t0 = tstart; t0 < g.T; t0 += AT_BK) {
      __syncthreads();
      for (int64_t i = threadIdx.x; i < AT_BK * D; i += blockDim.x) {
        int64_t j = i / D, d = i % D, t = t0 + j;
        Qt[j * (D + 1) + d] = t < g.T ? to_float(qb[t * g.qs[2] + d]) * g.scale : 0.f;
      }
      for (int64_t i = threadIdx.x; i < AT_BK * Dv; i += blockDim.x) {
        int64_t j = i / Dv, d = i % Dv, t = t0 + j;
        Ot[j * (Dv + 1) + d] = t < g.T ? to_float(ob[t * g.os[2] + d]) : 0.f;
      }
      if (threadIdx.x < AT_BK) {
        int64_t t = t0 + threadIdx.x, row = (b * g.Hq + h) * g.T + t;
        Lt[threadIdx.x] = t < g.T ? lse[row] : -INFINITY;
        Dt[threadIdx.x] = t < g.T ? Di[row] : 0.f;
      }
      __syncthreads();
      const int64_t t = t0 + lane;
      float sc[AT_R], dp[AT_R];
#pragma unroll
      for (int r = 0; r < AT_R; r++) sc[r] = dp[r] = 0.f;
      const float *qr = Qt + lane * (D + 1), *orr = Ot + lane * (Dv + 1);
      for (int64_t d = 0; d < D; d++) {
        float qd = qr[d];
#pragma unroll
        for (int r = 0; r < AT_R; r++) sc[r] += Kr[(w * AT_R + r) * D + d] * qd;
      }
      for (int64_t d = 0; d < Dv; d++) {
        float od = orr[d];
#pragma unroll
        for (int r = 0; r < AT_R; r++) dp[r] += Vr[(w * AT_R + r) * Dv + d] * od;
      }
      float p[AT_R], ds[AT_R];
      float Lj = Lt[lane], Dj = Dt[lane];
#pragma unroll
      for (int r = 0; r < AT_R; r++) {
        int64_t s = s0 + w * AT_R + r;
        bool vis = Lj != -INFINITY && at_visible(g, b, h, t, s);
        p[r] = vis ? expf(sc[r] - Lj) : 0.f;
        ds[r] = p[r] * (dp[r] - Dj);
      }
      for (int j = 0; j < AT_BK; j++) {
        float pj[AT_R], dj[AT_R];
#pragma unroll
        for (int r = 0; r < AT_R; r++) {
          pj[r] = __shfl_sync(0xffffffffu, p[r], j);
          dj[r] = __shfl_sync(0xffffffffu, ds[r], j);
        }
        const float *qj = Qt + j * (D + 1), *oj = Ot + j * (Dv + 1);
#pragma unroll
        for (int c = 0; c < AT_DC; c++) {
          int64_t d = lane + 32 * c;
          if (d < D) {
            float qd = qj[d];
#pragma unroll
            for (int r = 0; r < AT_R; r++) ak[r][c] += dj[r] * qd;
          }
          if (d < Dv) {
            float od = oj[d];
#pragma unroll
            for (int r = 0; r < AT_R; r++) av[r][c] += pj[r] * od;
          }
        }
      }
    }
  }
#pragma unroll
  for (int r = 0; r < AT_R; r++) {
    int64_t s = s0 + w * AT_R + r;
    if (s >= g.S) continue;
    int64_t row = (b * g.Hkv + kh) * g.S + s;
#pragma unroll
    for (int c = 0; c < AT_DC; c++) {
      int64_t d = lane + 32 * c;
      if (gk && d < D) stf(gk + row * D, d, ak[r][c]);
      if (gv && d < Dv) stf(gv + row * Dv, d, av[r][c]);
    }
  }
}

#endif
