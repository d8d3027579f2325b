/* attention.cu - fused scaled-dot-product attention on the GPU, forward and backward, causal and
 * grouped-query, with an optional mask (any dtype, broadcast to [B, Hq, T, S], nonzero = keep).
 *
 *   q [B,Hq,T,D], k [B,Hkv,S,D], v [B,Hkv,S,Dv] (Hq a multiple of Hkv, D, Dv <= 128), any strides
 *   with a unit last-dim stride (else a contiguous copy); out [B,Hq,T,Dv] contiguous.
 *   Causal: key s is visible to query t when s <= t + (S - T) (queries aligned to the end of the
 *   keys, as with a KV cache). A query row with no visible key gives zeros and zero gradients.
 *
 * Forward (flash style, CUDA cores, fp32 math): a block of 4 warps owns 16 query rows (4 per
 * warp) of one (b, h); it walks the keys in tiles of 32 staged in shared memory (K padded to
 * D + 1 floats per row so lane j reading key j is conflict-free). Lane j computes the scores of
 * key j against the warp's 4 rows, the warp keeps an online softmax per row (running max m and
 * sum l) and the output accumulators (lane owns dims lane + 32c), rescaling by exp(m_old - m_new)
 * as the maximum grows. Key tiles past the last visible key of the block are skipped. The
 * probabilities never reach global memory.
 *
 * Backward (the op has one output, so nothing is saved; everything is recomputed):
 *   1. the forward kernel in "stats" mode writes per query row lse = m + log l and
 *      Di = sum_d dO * O (O recomputed in registers, never stored);
 *   2. dQ: row-parallel like the forward: p = exp(s - lse), dp = dO . v, ds = p (dp - Di),
 *      dQ = scale * sum ds k;
 *   3. dK, dV: key-parallel (a block owns 16 key rows of one (b, kv head) and loops over the
 *      group's query heads and query tiles): dV = sum p dO, dK = scale * sum ds q.
 *   No atomics: every output row is written by the one warp that owns it.
 */
#include "kernels/cuda_internal.cuh"

extern "C" {
#include "nn_bwd.h" /* the declarations grad_nn.c calls: checked against the definitions */
}

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
  extern __shared__ float sm[];
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
      float mn = fmaxf(m[r], warp_max(x));
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
        lse[row] = l[r] > 0 ? m[r] + logf(l[r]) : -INFINITY;
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
  extern __shared__ float sm[];
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
      bool vis = L[r] > -INFINITY && at_visible(g, b, h, t, s);
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
  extern __shared__ float sm[];
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
        bool vis = Lj > -INFINITY && at_visible(g, b, h, t, s);
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

/* ---------------------------------------------------------------- host side */

/* t itself (retained) when its last dim has unit stride (or size <= 1), else a contiguous copy. */
static cf_tensor *unit_last(cf_tensor *t) {
  if (t->shape[3] <= 1 || t->stride[3] == 1) {
    cf_tensor_retain(t);
    return t;
  }
  return cf_tensor_contiguous(t);
}

static void strides3(int64_t *s, const cf_tensor *t) {
  for (int d = 0; d < 3; d++) s[d] = t->shape[d] == 1 ? 0 : t->stride[d];
}

struct at_ops {
  cf_tensor *q, *k, *v, *o;
};

static void at_release(at_ops *o) {
  cf_tensor_release(o->q);
  cf_tensor_release(o->k);
  cf_tensor_release(o->v);
  cf_tensor_release(o->o);
}

static int at_setup(const char *op, at_geo *g, at_ops *o, cf_tensor *q, cf_tensor *k, cf_tensor *v, cf_tensor *mask,
                    cf_tensor *gout, double scale, bool causal) {
  memset(g, 0, sizeof *g);
  memset(o, 0, sizeof *o);
  if (cu_check_float(op, q)) return -1;
  g->B = q->shape[0]; g->Hq = q->shape[1]; g->T = q->shape[2]; g->D = q->shape[3];
  g->Hkv = k->shape[1]; g->S = k->shape[2]; g->Dv = v->shape[3];
  g->rep = g->Hq / g->Hkv;
  if (g->D > AT_DMAX || g->Dv > AT_DMAX)
    return CF_ERR("%s: head dims up to %d are supported on CUDA, got D = %lld, Dv = %lld", op, AT_DMAX,
                  (long long)g->D, (long long)g->Dv);
  if (g->Hq > 65535 || g->B > 65535) return CF_ERR("%s: too many heads or batch rows for the grid", op);
  g->scale = (float)(isnan(scale) ? 1.0 / sqrt((double)(g->D ? g->D : 1)) : scale);
  g->causal = causal;
  o->q = unit_last(q);
  o->k = unit_last(k);
  o->v = unit_last(v);
  o->o = gout ? unit_last(gout) : NULL;
  if (!o->q || !o->k || !o->v || (gout && !o->o)) { at_release(o); return -1; }
  strides3(g->qs, o->q);
  strides3(g->ks, o->k);
  strides3(g->vs, o->v);
  if (o->o) strides3(g->os, o->o);
  if (mask) {
    g->mask = cf_tensor_data(mask);
    g->mdt = mask->dtype;
    cf_broadcast_strides(mask, 4, 4, g->ms); /* mask broadcasts to [B, Hq, T, S] */
  }
  return 0;
}

template <typename K>
static int at_smem(K kernel, size_t bytes, const char *op) {
  if (bytes <= 48 * 1024) return 0;
  return cu_check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes), op);
}

template <typename T>
static int at_forward(cf_tensor *out, const at_geo &g, const at_ops &o, float *lse, float *Di, bool stats) {
  size_t smem = (size_t)(AT_BQ * g.D + AT_BK * (g.D + 1) + AT_BK * g.Dv) * sizeof(float);
  dim3 grid((unsigned)((g.T + AT_BQ - 1) / AT_BQ), (unsigned)g.Hq, (unsigned)g.B);
  const T *q = (const T *)cf_tensor_data(o.q), *k = (const T *)cf_tensor_data(o.k), *v = (const T *)cf_tensor_data(o.v);
  if (stats) {
    if (at_smem(attn_fwd_kernel<T, true>, smem, "attention backward")) return -1;
    attn_fwd_kernel<T, true><<<grid, AT_WARPS * 32, smem, cu_stream()>>>(NULL, q, k, v,
        (const T *)cf_tensor_data(o.o), lse, Di, g);
  } else {
    if (at_smem(attn_fwd_kernel<T, false>, smem, "attention")) return -1;
    attn_fwd_kernel<T, false><<<grid, AT_WARPS * 32, smem, cu_stream()>>>((T *)cf_tensor_data(out), q, k, v,
        NULL, NULL, NULL, g);
  }
  return cu_launched(stats ? "attention backward" : "attention");
}

/* The tensor-core path (attention_tc.cu; on unless CONFIT_ATTN_TC=0): 1 = not taken, 0 = done, -1 = error. */
int cu_attention_tc_forward(cf_tensor *out, cf_tensor *q, cf_tensor *k, cf_tensor *v, cf_tensor *mask, double scale,
                            bool causal);
int cu_attention_tc_backward(cf_tensor *gq, cf_tensor *gk, cf_tensor *gv, cf_tensor *q, cf_tensor *k, cf_tensor *v,
                             cf_tensor *mask, double scale, bool causal, cf_tensor *gout);

extern "C" int cf_cuda_attention(cf_tensor *out, cf_tensor *const *in, int nin, const cf_args *a) {
  int tc = cu_attention_tc_forward(out, in[0], in[1], in[2], nin > 3 ? in[3] : NULL, a->f[0], a->i[0] != 0);
  if (tc != 1) return tc;
  at_geo g;
  at_ops o;
  if (at_setup("attention", &g, &o, in[0], in[1], in[2], nin > 3 ? in[3] : NULL, NULL, a->f[0], a->i[0] != 0))
    return -1;
  int rc = 0;
  if (cf_tensor_numel(out) > 0 && g.S > 0) {
    rc = out->dtype == CF_DTYPE_F32 ? at_forward<float>(out, g, o, NULL, NULL, false)
                                    : at_forward<bf16>(out, g, o, NULL, NULL, false);
  } else if (cf_tensor_numel(out) > 0) { /* no keys: every row is zeros */
    rc = cu_check(cudaMemsetAsync(cf_tensor_data(out), 0,
                                  (size_t)cf_tensor_numel(out) * cf_dtype_size(out->dtype), cu_stream()),
                  "attention");
  }
  at_release(&o);
  return rc;
}

template <typename T>
static int at_backward(cf_tensor *gq, cf_tensor *gk, cf_tensor *gv, const at_geo &g, const at_ops &o, float *lse,
                       float *Di) {
  if (at_forward<T>(NULL, g, o, lse, Di, true)) return -1;
  const T *q = (const T *)cf_tensor_data(o.q), *k = (const T *)cf_tensor_data(o.k), *v = (const T *)cf_tensor_data(o.v);
  const T *dO = (const T *)cf_tensor_data(o.o);
  if (gq) {
    size_t smem = (size_t)(AT_BQ * g.D + AT_BQ * g.Dv + AT_BK * (g.D + 1) + AT_BK * (g.Dv + 1)) * sizeof(float);
    if (at_smem(attn_dq_kernel<T>, smem, "attention backward")) return -1;
    dim3 grid((unsigned)((g.T + AT_BQ - 1) / AT_BQ), (unsigned)g.Hq, (unsigned)g.B);
    attn_dq_kernel<T><<<grid, AT_WARPS * 32, smem, cu_stream()>>>((T *)cf_tensor_data(gq), q, k, v, dO, lse, Di, g);
    if (cu_launched("attention backward (dq)")) return -1;
  }
  if (gk || gv) {
    size_t smem = (size_t)(AT_BQ * g.D + AT_BQ * g.Dv + AT_BK * (g.D + 1) + AT_BK * (g.Dv + 1) + 2 * AT_BK) *
                  sizeof(float);
    if (at_smem(attn_dkv_kernel<T>, smem, "attention backward")) return -1;
    dim3 grid((unsigned)((g.S + AT_BQ - 1) / AT_BQ), (unsigned)g.Hkv, (unsigned)g.B);
    attn_dkv_kernel<T><<<grid, AT_WARPS * 32, smem, cu_stream()>>>(gk ? (T *)cf_tensor_data(gk) : NULL,
        gv ? (T *)cf_tensor_data(gv) : NULL, q, k, v, dO, lse, Di, g);
    if (cu_launched("attention backward (dk, dv)")) return -1;
  }
  return 0;
}

/* gq [B,Hq,T,D], gk [B,Hkv,S,D], gv [B,Hkv,S,Dv] (zeroed, contiguous, any may be NULL) from
 * gout [B,Hq,T,Dv] */
extern "C" int cf_cuda_attention_backward(cf_tensor *gq, cf_tensor *gk, cf_tensor *gv, cf_tensor *q, cf_tensor *k,
                                          cf_tensor *v, cf_tensor *mask, double scale, bool causal, cf_tensor *gout) {
  int tc = cu_attention_tc_backward(gq, gk, gv, q, k, v, mask, scale, causal, gout);
  if (tc != 1) return tc;
  at_geo g;
  at_ops o;
  if (at_setup("attention backward", &g, &o, q, k, v, mask, gout, scale, causal)) return -1;
  int rc = 0;
  if (g.T > 0 && g.S > 0 && g.B > 0 && g.Hq > 0) {
    cu_scratch s = {NULL, 0};
    int64_t rows = g.B * g.Hq * g.T;
    float *lse = (float *)cu_scratch_get(&s, (size_t)rows * 2 * sizeof(float), "attention backward");
    if (!lse) rc = -1;
    else rc = q->dtype == CF_DTYPE_F32 ? at_backward<float>(gq, gk, gv, g, o, lse, lse + rows)
                                       : at_backward<bf16>(gq, gk, gv, g, o, lse, lse + rows);
    cu_scratch_free(&s);
  }
  at_release(&o);
  return rc;
}
