/* gen_sample.cuh - the samplers of generate.cu: the draw of generate.c (g_draw), the one-block-
 * per-row sampler with top-k / top-p (k_sample), the decode step's sampler split over several
 * blocks per row (k_sample_split) and the drawn token's score at a second temperature (k_score),
 * apart so that tests/c/test_gen_sample_emu.cpp can run them on
 * the CPU: it needs from its includer __syncthreads, __syncthreads_or, __threadfence, atomicAdd
 * (int, unsigned, unsigned long long), atomicMin, atomicMax, __shfl_xor_sync and __shfl_up_sync
 * (int, float, double), block_sum, block_max, __ldcg, __float_as_uint, the thread and block indices, expf,
 * logf, exp, log, ceil, fmaf, INFINITY and NAN (cuda_internal.cuh, or the test's emulation).
 *
 * Both samplers work in z = (logit - m) / T, m the largest logit of the row (or of a segment or a
 * thread, rescaled when merged), as generate.c does where logit / T would overflow: no z
 * overflows, so any temperature the host passes as a float (the smallest positive float up to
 * FLT_MAX) samples softmax(logits / T) - one-hot, or uniform over tied maxima, when T is tiny.
 */
#ifndef CF_GEN_SAMPLE_CUH
#define CF_GEN_SAMPLE_CUH

/* a sampled token and its log-probability, as the samplers write them; for a row whose logits
 * cannot be sampled, tok is one of GEN_BAD_* (generate.cu turns it into an error naming the token,
 * the sample and the prompt, as generate.c does) and the row's next token is id 0 */
struct gen_out { int tok; float lp; };
#define GEN_BAD_NONFINITE (-1)  /* a logit is NaN or +inf */
#define GEN_BAD_ALL_NEG_INF (-2) /* every logit is -inf */

/* Which GEN_BAD_* a row of first maximum bv is (bad: a NaN or +inf seen), or 0 when it can be
 * sampled. Every thread of a block asks with the same values. */
__device__ __forceinline__ int gen_row_bad(int bad, float bv) {
  if (bad) return GEN_BAD_NONFINITE;
  if (bv == -INFINITY) return GEN_BAD_ALL_NEG_INF;
  return 0;
}

/* z = (v - m) / T for a logit v <= m, given hm = m / 2 (m finite, T a positive float): computed
 * as 2 ((v / 2 - m / 2) / T), where v - m itself could overflow (logits of both signs near
 * FLT_MAX); the halving and doubling are exact, so this is (v - m) / T rounded as floats round it
 * elsewhere. 0 for v = m, -inf for v = -inf or where (v - m) / T passes -FLT_MAX (probability 0
 * either way). */
__device__ __forceinline__ float gen_z(float v, float hm, float T) { return 2.0f * (fmaf(0.5f, v, -hm) / T); }

/* (v - m) / T - lse in double: the log-probability of logit v in a row of largest logit m whose
 * z = (logit - m) / T have log-sum-exp lse, as the CPU's double has it (the float z rounds);
 * with lse 0, z itself in double (a segment's scale) */
__device__ __forceinline__ double gen_lp(float v, float m, float T, double lse) {
  return ((double)v - (double)m) / (double)T - lse;
}

__device__ __forceinline__ void g_philox(uint64_t counter, uint64_t key, uint32_t out[4]) {
  uint32_t c0 = (uint32_t)counter, c1 = (uint32_t)(counter >> 32), c2 = 0, c3 = 0;
  uint32_t k0 = (uint32_t)key, k1 = (uint32_t)(key >> 32);
#pragma unroll
  for (int r = 0; r < 10; r++) {
    uint64_t p0 = (uint64_t)0xD2511F53u * c0, p1 = (uint64_t)0xCD9E8D57u * c2;
    uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0;
    uint32_t n1 = (uint32_t)p1;
    uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
    uint32_t n3 = (uint32_t)p0;
    c0 = n0; c1 = n1; c2 = n2; c3 = n3;
    k0 += 0x9E3779B9u; k1 += 0xBB67AE85u;
  }
  out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

/* The uniform of generate.c's draw(): 53 bits of Philox(step, key). */
__device__ __forceinline__ double g_draw(uint64_t key, uint64_t step) {
  uint32_t w[4];
  g_philox(step, key, w);
  return (double)(((uint64_t)(w[0] >> 5) << 26) | (w[1] >> 6)) * (1.0 / 9007199254740992.0);
}

/* ---------------------------------------------------------------- k_sample_split
 *
 * k_sample (generate.cu) gives each row one block, which walks the whole vocabulary twice: in a
 * decode step of 16 rows, 16 of the GPU's multiprocessors do the work. Without top-k / top-p
 * truncation the draw needs only the first maximum, the log-sum-exp and the inverse CDF in
 * index order, and those split: grid (S, rows), block (s, r) takes segment s of row r (V / S ids,
 * a multiple of 4 long), finds its first maximum bv, then sums (double) expf(gen_z(logit, bv / 2,
 * T)) over it, and stores the two; the last block of the row to finish (a ticket) merges the
 * segments in order (each segment's scale exp((bv_q - M) / T), M the row's maximum, and lse, in
 * double), draws u = g_draw(key, step) like k_sample, finds the segment where the cumulative
 * probability passes u, then inside it the group of threads, the thread and the id, summing the
 * same terms as the segment's sum (so the walk and the segment totals agree to the last bits of a
 * double). Against k_sample, which sums (double) expf(z - lse) per id, each id's probability
 * differs only by the rounding of its own float z and exponential, not by an error shared by a
 * whole segment (the scale is a double). Greedy picks the first maximum. Writes out (token,
 * log-prob z - lse) and advances tok, pos and step as k_sample does; a row holding a NaN or +inf
 * logit, or only -inf, gets GEN_BAD_* instead (no draw). Tree merges run in a fixed order: the
 * result is deterministic. */
#define SMP_T 256    /* threads per block */
#define SMP_U 4      /* 16-byte loads a thread has in flight in a pass over its segment */
#define SMP_MAXS 32  /* segments per row at most */
#define SMP_GROUP 8  /* threads per group of the inverse-CDF walk: SMP_T / 32 groups */

/* a segment's summary: its first maximum (bv at id bi), S = sum of (double) expf((logit - bv) /
 * T), and whether it holds a NaN or +inf logit */
struct smp_part { double S; float bv; int bi, bad; };

struct smp_args {
  const float *logits;           /* (rows, ldl) */
  int64_t ldl;
  int V, S;                      /* ids per row; segments per row (grid.x) */
  float temp;
  int greedy;
  const unsigned long long *key;
  int *step, *tok, *pos;         /* advanced when update */
  int update;
  gen_out *out;
  smp_part *part;                /* (rows, S) */
  int *cnt;                      /* one ticket counter per row, zero between launches */
};

/* the segment [lo, hi) of row r for segment s of S (lengths a multiple of 4 but the last) */
__device__ __forceinline__ void smp_segment(int V, int S, int s, int *lo, int *hi) {
  int seg = ((V + S - 1) / S + 3) / 4 * 4;
  *lo = s * seg < V ? s * seg : V;
  *hi = *lo + seg < V ? *lo + seg : V;
}

/* first maximum (value v at id i, over ids seen in increasing order per thread) */
struct smp_max {
  float bv;
  int bi;
  __device__ __forceinline__ void see(float v, int i) {
    if (v > bv) { bv = v; bi = i; }
  }
  __device__ __forceinline__ void merge(const smp_max &o) {
    if (o.bv > bv || (o.bv == bv && o.bi < bi)) { bv = o.bv; bi = o.bi; }
  }
};

/* (double) expf((v - m) / T), hm = m / 2: 0 for v = -inf */
__device__ __forceinline__ double smp_p(float v, float hm, float T) { return (double)expf(gen_z(v, hm, T)); }

/* f(v, i) for thread tid's share (of nthr threads) of the ids in [lo, hi), in increasing order
 * (float4 loads when the row is 16-byte aligned there, then the rest one by one) */
template <typename F>
__device__ __forceinline__ void smp_each(const float *lg, int lo, int hi, int tid, int nthr, F f) {
  int i0 = lo;
  if ((((uintptr_t)(lg + lo)) & 15) == 0) {
    int n4 = (hi - lo) / 4;
    const float4 *l4 = (const float4 *)(lg + lo);
    int j = tid;
    /* SMP_U loads in flight, then their values in the order of the plain loop below: a loop
     * whose body uses what it just loaded waits on memory every iteration */
    for (; j + (SMP_U - 1) * nthr < n4; j += SMP_U * nthr) {
      float4 q[SMP_U];
#pragma unroll
      for (int u = 0; u < SMP_U; u++) q[u] = __ldcg(l4 + j + u * nthr);
#pragma unroll
      for (int u = 0; u < SMP_U; u++) {
        int i = lo + 4 * (j + u * nthr);
        f(q[u].x, i); f(q[u].y, i + 1); f(q[u].z, i + 2); f(q[u].w, i + 3);
      }
    }
    for (; j < n4; j += nthr) {
      float4 q = __ldcg(l4 + j);
      int i = lo + 4 * j;
      f(q.x, i); f(q.y, i + 1); f(q.z, i + 2); f(q.w, i + 3);
    }
    i0 = lo + 4 * n4;
  }
  for (int i = i0 + tid; i < hi; i += nthr) f(__ldcg(lg + i), i);
}

__global__ void __launch_bounds__(SMP_T) k_sample_split(smp_args a) {
  cu_pdl_wait();
  cu_pdl_trigger();
  __shared__ smp_max red[SMP_T];
  __shared__ double dm[SMP_T], gm[SMP_T / SMP_GROUP];
  __shared__ smp_part segs[SMP_MAXS];
  __shared__ int s_last, s_pick, s_seg, s_thr, s_take_last;
  __shared__ double s_target;
  int S = a.S, s = blockIdx.x, r = blockIdx.y, tid = threadIdx.x, V = a.V;
  const float *lg = a.logits + (size_t)r * a.ldl;
  float T = a.greedy ? 1.0f : a.temp;
  int lo, hi;
  smp_segment(V, S, s, &lo, &hi);
  /* the segment's first maximum, then its sum */
  smp_max mx;
  mx.bv = -INFINITY; mx.bi = V;
  int bad = 0; /* a NaN or +inf seen */
  smp_each(lg, lo, hi, tid, SMP_T, [&](float v, int i) {
    mx.see(v, i);
    bad |= !(v < INFINITY);
  });
  red[tid] = mx;
  bad = __syncthreads_or(bad);
  for (int o = SMP_T / 2; o > 0; o >>= 1) {
    if (tid < o) red[tid].merge(red[tid + o]);
    __syncthreads();
  }
  float sbv = red[0].bv, hs = 0.5f * sbv;
  double sum = 0;
  if (!bad && sbv != -INFINITY) smp_each(lg, lo, hi, tid, SMP_T, [&](float v, int) { sum += smp_p(v, hs, T); });
  dm[tid] = sum;
  __syncthreads();
  for (int o = SMP_T / 2; o > 0; o >>= 1) {
    if (tid < o) dm[tid] += dm[tid + o];
    __syncthreads();
  }
  /* this segment's summary to the workspace; the row's last block goes on */
  if (tid == 0) {
    smp_part *pp = a.part + (size_t)r * S + s;
    pp->S = dm[0]; pp->bv = sbv; pp->bi = red[0].bi; pp->bad = bad;
  }
  __threadfence();
  __syncthreads();
  if (tid == 0) s_last = atomicAdd(&a.cnt[r], 1) == S - 1;
  __syncthreads();
  if (!s_last) return;
  __threadfence();
  if (tid < S) {
    const smp_part *pp = a.part + (size_t)r * S + tid;
    segs[tid].S = __ldcg(&pp->S); segs[tid].bv = __ldcg(&pp->bv);
    segs[tid].bi = __ldcg(&pp->bi); segs[tid].bad = __ldcg(&pp->bad);
  }
  __syncthreads();
  /* the row, merged in segment order (every thread the same, from shared memory): the first
   * maximum M, and the lse of z = (logit - M) / T, log(sum_q S_q exp((bv_q - M) / T)) in double */
  smp_max row;
  row.bv = -INFINITY; row.bi = V;
  int rowbad = 0;
  for (int q = 0; q < S; q++) {
    smp_max o;
    o.bv = segs[q].bv; o.bi = segs[q].bi;
    row.merge(o);
    rowbad |= segs[q].bad;
  }
  int why = gen_row_bad(rowbad, row.bv);
  if (why) { /* nothing to sample: every thread leaves here alike */
    if (tid == 0) {
      a.out[r].tok = why;
      a.out[r].lp = NAN;
      if (a.update) { a.tok[r] = 0; a.pos[r] += 1; a.step[r] += 1; }
      a.cnt[r] = 0;
    }
    return;
  }
  double L = 0;
  for (int q = 0; q < S; q++)
    if (segs[q].S > 0) L += segs[q].S * exp(gen_lp(segs[q].bv, row.bv, T, 0));
  double lse = log(L);
  int bi = row.bi < V ? row.bi : 0;
  if (!a.greedy) {
    double u = g_draw(a.key[r], (uint64_t)a.step[r]);
    if (tid == 0) {
      /* the segment (mass S_q exp((bv_q - M) / T - lse)); past the end (rounding) the last with
       * mass. The target goes on in the chosen segment's own units, exp((logit - bv_q) / T) */
      double total = 0;
      for (int q = 0; q < S; q++)
        if (segs[q].S > 0) total += segs[q].S * exp(gen_lp(segs[q].bv, row.bv, T, lse));
      double target = u * total, cum = 0, unit = 1;
      int pick = -1, lastm = 0;
      for (int q = 0; q < S && pick < 0; q++) {
        if (!(segs[q].S > 0)) continue;
        double e = exp(gen_lp(segs[q].bv, row.bv, T, lse)), m = segs[q].S * e;
        lastm = q;
        unit = e;
        if (target < cum + m) pick = q;
        else cum += m;
      }
      s_take_last = pick < 0;
      s_seg = pick < 0 ? lastm : pick;
      s_target = (target - cum) / unit;
    }
    __syncthreads();
    /* inside the segment: thread tid's contiguous chunk, its sum of the same terms */
    smp_segment(V, S, s_seg, &lo, &hi);
    float hq = 0.5f * segs[s_seg].bv;
    int chunk = (hi - lo + SMP_T - 1) / SMP_T;
    int clo = lo + tid * chunk < hi ? lo + tid * chunk : hi, chi = clo + chunk < hi ? clo + chunk : hi;
    double mass = 0;
    for (int i = clo; i < chi; i++) mass += smp_p(__ldcg(lg + i), hq, T);
    dm[tid] = mass;
    __syncthreads();
    if (tid < SMP_T / SMP_GROUP) {
      double g = 0;
      for (int k = 0; k < SMP_GROUP; k++) g += dm[tid * SMP_GROUP + k];
      gm[tid] = g;
    }
    __syncthreads();
    if (tid == 0) {
      /* the group, then the thread: the first whose cumulative mass passes the target, else (the
       * target past the end, by rounding) the last with mass */
      double t = s_target;
      bool last = s_take_last;
      int g = -1, lastg = 0;
      for (int k = 0; k < SMP_T / SMP_GROUP && g < 0; k++) {
        if (gm[k] <= 0) continue;
        lastg = k;
        if (!last && t < gm[k]) g = k;
        else t -= gm[k];
      }
      if (g < 0) { g = lastg; last = true; }
      int th = -1, lastt = g * SMP_GROUP;
      for (int k = g * SMP_GROUP; k < (g + 1) * SMP_GROUP && th < 0; k++) {
        if (dm[k] <= 0) continue;
        lastt = k;
        if (!last && t < dm[k]) th = k;
        else t -= dm[k];
      }
      if (th < 0) { th = lastt; last = true; }
      s_thr = th;
      s_target = t;
      s_take_last = last;
      s_pick = bi;
    }
    __syncthreads();
    if (tid == s_thr) {
      double t = s_target, cum = 0;
      int found = -1, lastk = -1;
      for (int i = clo; i < chi && found < 0; i++) {
        double p = smp_p(__ldcg(lg + i), hq, T);
        if (p <= 0) continue;
        lastk = i;
        if (!s_take_last && t < cum + p) found = i;
        cum += p;
      }
      if (found < 0) found = lastk;
      if (found >= 0) s_pick = found;
    }
    __syncthreads();
    bi = s_pick;
  }
  if (tid == 0) {
    a.out[r].tok = bi;
    a.out[r].lp = (float)gen_lp(lg[bi], row.bv, T, lse);
    if (a.update) { a.tok[r] = bi; a.pos[r] += 1; a.step[r] += 1; }
    a.cnt[r] = 0;
  }
}

/* ---------------------------------------------------------------- k_sample */

/* Order-preserving map of a float to uint32 (larger float -> larger key). */
__device__ __forceinline__ uint32_t fkey(float f) {
  uint32_t b = __float_as_uint(f);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

/* The warp's first maximum: every lane gets the largest bv, at the smallest bi among ties */
__device__ __forceinline__ void warp_first_max(float &bv, int &bi) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    float ov = __shfl_xor_sync(0xffffffffu, bv, o);
    int oi = __shfl_xor_sync(0xffffffffu, bi, o);
    if (ov > bv || (ov == bv && oi < bi)) { bv = ov; bi = oi; }
  }
}

/* Exclusive scan of one value per thread over the block (blockDim.x a multiple of 32); returns
 * the prefix and writes the total. Deterministic (fixed tree). */
template <typename A>
__device__ A block_exscan(A v, A *total, A *buf) {
  int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
  A x = v;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    A y = __shfl_up_sync(0xffffffffu, x, o);
    if (lane >= o) x += y;
  }
  __syncthreads();
  if (lane == 31) buf[w] = x;
  __syncthreads();
  if (w == 0) {
    A t = lane < nw ? buf[lane] : (A)0;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      A y = __shfl_up_sync(0xffffffffu, t, o);
      if (lane >= o) t += y;
    }
    if (lane < nw) buf[lane] = t;
  }
  __syncthreads();
  A before = (w > 0 ? buf[w - 1] : (A)0) + x - v;
  *total = buf[nw - 1];
  __syncthreads();
  return before;
}

/* One block per row r; logits row lrow[r] (or r) of (., ldl) f32. Picks the token (greedy: the
 * first maximum; else a draw u = Philox(step[r], key[r]) over the kept candidates in index
 * order), writes out[r] = (token, log-prob under log_softmax(logits / T)) and, when update,
 * advances tok[r], pos[r] and step[r]. A row holding a NaN or +inf logit, or only -inf, gets
 * out[r].tok = GEN_BAD_* instead (gen_sample.cuh) and token 0 next. */
__global__ void __launch_bounds__(GEN_SAMPLE_T) k_sample(const float *logits, int64_t ldl, const int *lrow,
                                                          int V, float temp, int greedy, int top_k, double top_p,
                                                          const unsigned long long *key, int *step, int *tok,
                                                          int *pos, gen_out *out, int update) {
  cu_pdl_wait();
  cu_pdl_trigger();
  __shared__ float s_bv[32];
  __shared__ int s_bi[32];
  __shared__ unsigned s_cnt[256];
  __shared__ unsigned long long s_mass[256];
  __shared__ double s_dbuf[32];
  __shared__ int s_ibuf[32];
  __shared__ uint32_t s_prefix, s_mask;
  __shared__ int s_all, s_pick, s_lastkept;
  __shared__ unsigned long long s_macc;
  __shared__ unsigned s_cacc, s_binc;
  __shared__ unsigned long long s_binm;
  int r = blockIdx.x, tid = threadIdx.x, lane = tid & 31, w = tid >> 5, nw = blockDim.x >> 5;
  const float *lg = logits + (size_t)(lrow ? lrow[r] : r) * ldl;
  float T = greedy ? 1.0f : temp;
  /* one pass: the first maximum (bv at bi), which is also the thread's running maximum of an
   * online softmax: zs = sum of exp(gen_z(v, bv / 2, T)) over the thread's ids */
  float bv = -INFINITY, zs = 0.f;
  int bi = V, bad = 0;
  smp_each(lg, 0, V, tid, blockDim.x, [&](float v, int i) {
    bad |= !(v < INFINITY);
    if (v == -INFINITY) return;
    if (v > bv) { zs = zs * expf(gen_z(bv, 0.5f * v, T)) + 1.0f; bv = v; bi = i; }
    else zs += expf(gen_z(v, 0.5f * bv, T));
  });
  float tbv = bv; /* this thread's maximum, for its zs */
  warp_first_max(bv, bi);
  if (lane == 0) { s_bv[w] = bv; s_bi[w] = bi; }
  __syncthreads();
  if (w == 0) {
    bv = lane < nw ? s_bv[lane] : -INFINITY;
    bi = lane < nw ? s_bi[lane] : V;
    warp_first_max(bv, bi);
    if (lane == 0) { s_bv[0] = bv; s_bi[0] = bi; }
  }
  int anybad = __syncthreads_or(bad); /* also the barrier after s_bv[0] */
  int why = gen_row_bad(anybad, s_bv[0]);
  if (why) { /* nothing to sample: all threads leave */
    if (tid == 0) {
      out[r].tok = why;
      out[r].lp = NAN;
      if (update) { tok[r] = 0; pos[r] += 1; step[r] += 1; }
    }
    return;
  }
  bv = s_bv[0];
  bi = s_bi[0] < V ? s_bi[0] : 0;
  /* lse of z = (logit - bv) / T: the largest z is 0 */
  float hb = 0.5f * bv;
  float lse = logf(block_sum(zs > 0.f ? zs * expf(gen_z(tbv, hb, T)) : 0.f));
  int pick = bi;
  if (!greedy) {
    double u = g_draw(key[r], (uint64_t)step[r]);
    /* truncation: keep keys > kt, and the first `keq` (by index) equal to kt. Masses are sums of
     * each id's probability in 2^40 fixed point (an order-free, exact sum). */
    auto fixed_p = [&](float v) { return (unsigned long long)((double)expf(gen_z(v, hb, T) - lse) * 1099511627776.0); };
    /* One radix pass: s_cnt[b] (and with_mass, s_mass[b]) over the ids whose key matches prefix
     * under mask, by the key's byte at shift. */
    auto histogram = [&](int shift, uint32_t prefix, uint32_t mask, bool with_mass) {
      for (int b = tid; b < 256; b += blockDim.x) { s_cnt[b] = 0; s_mass[b] = 0; }
      __syncthreads();
      for (int i = tid; i < V; i += blockDim.x) {
        float v = lg[i];
        uint32_t k = fkey(v);
        if ((k & mask) != prefix) continue;
        atomicAdd(&s_cnt[(k >> shift) & 255], 1u);
        if (with_mass) atomicAdd(&s_mass[(k >> shift) & 255], fixed_p(v));
      }
      __syncthreads();
    };
    /* The n-th largest key (*kt) and how many of the ids equal to it are among the first n (*keq),
     * by a radix select a byte a pass from the top; with_mass: also the mass of those n ids. */
    auto select_kth = [&](long long n, bool with_mass, uint32_t *kt, long long *keq, unsigned long long *mass) {
      if (tid == 0) { s_prefix = 0; s_mask = 0; s_cacc = 0; s_macc = 0; }
      __syncthreads();
      for (int pass = 0; pass < 4; pass++) {
        int shift = 24 - 8 * pass;
        uint32_t prefix = s_prefix, mask = s_mask;
        histogram(shift, prefix, mask, with_mass);
        if (tid == 0) {
          int sel = 0;
          for (int b = 255; b >= 0; b--) {
            if (s_cnt[b] == 0) continue;
            sel = b;
            if ((long long)s_cacc + s_cnt[b] >= n) break;
            s_cacc += s_cnt[b];
            s_macc += s_mass[b];
          }
          s_prefix = prefix | ((uint32_t)sel << shift);
          s_mask = mask | (0xFFu << shift);
          s_binc = s_cnt[sel];
          s_binm = s_mass[sel];
        }
        __syncthreads();
      }
      *kt = s_prefix;
      *keq = n - (long long)s_cacc;
      /* the last bin holds one key: its ids have the same logit, so the same mass each */
      if (with_mass) *mass = s_macc + (unsigned long long)*keq * (s_binm / s_binc);
      __syncthreads(); /* every thread has read the shared results before they are reused */
    };
    bool trunc_p = top_p < 1.0, trunc_k = top_k > 0 && top_k < V;
    long long n_keep = V;
    uint32_t kt = 0;
    long long keq = 0;
    bool have_k = false; /* kt, keq are top_k's */
    /* top_p's cut: the running mass reaching top_p of the whole vocabulary's, or, with top-k, of
     * the top_k ids' mass (top-p among the top-k ids renormalised: Hugging Face's and vLLM's order).
     * Reached within TOP_P_REL of it: the masses are of float probabilities, each within a few
     * float ulps of its exact value, so ten tied ids of 0.099999994 must reach 0.5 after five, as
     * they do exactly (the CPU's TOP_P_SLACK in double) */
    const double TOP_P_REL = 4e-6;
    double thr = top_p * 1099511627776.0;
    if (trunc_p && trunc_k) {
      unsigned long long mk = 0;
      select_kth(top_k, true, &kt, &keq, &mk);
      have_k = true;
      thr = top_p * (double)mk;
    }
    thr -= thr * TOP_P_REL;
    if (trunc_p) {
      /* n_p: how many candidates, best first, reach mass thr */
      if (tid == 0) { s_macc = 0; s_cacc = 0; s_all = 0; s_prefix = 0; s_mask = 0; }
      __syncthreads();
      for (int pass = 0; pass < 4; pass++) {
        int shift = 24 - 8 * pass;
        uint32_t prefix = s_prefix, mask = s_mask;
        histogram(shift, prefix, mask, true);
        if (tid == 0 && !s_all) {
          int sel = -1;
          for (int b = 255; b >= 0; b--) {
            if (s_cnt[b] == 0) continue;
            if ((double)(s_macc + s_mass[b]) >= thr) { sel = b; break; }
            s_macc += s_mass[b];
            s_cacc += s_cnt[b];
          }
          if (sel < 0) s_all = 1;
          else {
            s_prefix = prefix | ((uint32_t)sel << shift);
            s_mask = mask | (0xFFu << shift);
            s_binc = s_cnt[sel];
            s_binm = s_mass[sel];
          }
        }
        __syncthreads();
        if (s_all) break;
      }
      if (!s_all) {
        /* every element of the final bin has the same logit, so the same mass */
        double each = (double)s_binm / (double)s_binc;
        double need = ceil((thr - (double)s_macc) / (each > 0 ? each : 1.0));
        long long j = need < 1 ? 1 : (need > s_binc ? s_binc : (long long)need);
        n_keep = (long long)s_cacc + j;
      }
      __syncthreads();
    }
    if (trunc_k && top_k < n_keep) n_keep = top_k;
    int all = n_keep >= V;
    if (!all && !(have_k && n_keep == top_k)) select_kth(n_keep, false, &kt, &keq, NULL);
    /* contiguous chunks per thread, in index order */
    int chunk = (V + blockDim.x - 1) / blockDim.x;
    int lo = min(tid * chunk, V), hi = min(lo + chunk, V);
    int eq_before = 0, eq_total;
    if (!all) {
      int c = 0;
      for (int i = lo; i < hi; i++) c += fkey(lg[i]) == kt;
      eq_before = block_exscan<int>(c, &eq_total, s_ibuf);
    }
    /* f(i, p) over this thread's kept ids in index order, p the id's probability, until f says stop */
    auto each_kept = [&](auto f) {
      int e = eq_before;
      for (int i = lo; i < hi; i++) {
        float v = lg[i];
        if (!all) {
          uint32_t k = fkey(v);
          if (k < kt || (k == kt && e++ >= keq)) continue; /* of the ids equal to kt, the first keq */
        }
        if (f(i, (double)expf(gen_z(v, hb, T) - lse))) return;
      }
    };
    double mass = 0;
    int lastk = -1;
    each_kept([&](int i, double p) {
      mass += p;
      if (p > 0) lastk = i; /* past the end (rounding): the last kept id with probability */
      return false;
    });
    double total;
    double before = block_exscan<double>(mass, &total, s_dbuf);
    if (tid == 0) { s_pick = V; s_lastkept = -1; }
    __syncthreads();
    if (lastk >= 0) atomicMax(&s_lastkept, lastk);
    double target = u * total;
    if (mass > 0 && before <= target && target < before + mass) {
      double cum = before;
      int found = lastk;
      each_kept([&](int i, double p) {
        cum += p;
        if (target < cum) found = i;
        return target < cum;
      });
      atomicMin(&s_pick, found);
    }
    __syncthreads();
    pick = s_pick < V ? s_pick : (s_lastkept >= 0 ? s_lastkept : bi);
  }
  if (tid == 0) {
    out[r].tok = pick;
    out[r].lp = (float)gen_lp(lg[pick], bv, T, lse);
    if (update) { tok[r] = pick; pos[r] += 1; step[r] += 1; }
  }
}

/* ---------------------------------------------------------------- k_score
 *
 * m:generate's score_temperature: the token the sampler just drew, scored at a second
 * temperature Ts, as generate.c's score_token does. One block per row r (logits row lrow[r], or r
 * without lrow), run after the sampler wrote out[r]: score[r] = (logit[tok] - M) / Ts - log(sum_i
 * exp((logit_i - M) / Ts)), M the row's largest logit, in double but for each term's float z and
 * exponential (gen_z: no z overflows, so any Ts a float holds works). A row the sampler refused
 * (out[r].tok a GEN_BAD_*) gets NaN. */
__global__ void __launch_bounds__(GEN_SAMPLE_T) k_score(const float *logits, int64_t ldl, const int *lrow, int V,
                                                         float Ts, const gen_out *out, double *score) {
  cu_pdl_wait();
  cu_pdl_trigger();
  int r = blockIdx.x, tid = threadIdx.x;
  const float *lg = logits + (size_t)(lrow ? lrow[r] : r) * ldl;
  int k = out[r].tok; /* the same in every thread: all leave together or none */
  if (k < 0 || k >= V) {
    if (tid == 0) score[r] = NAN;
    return;
  }
  float m = -INFINITY;
  smp_each(lg, 0, V, tid, blockDim.x, [&](float v, int) { m = fmaxf(m, v); });
  m = block_max(m);
  float hm = 0.5f * m;
  double se = 0;
  smp_each(lg, 0, V, tid, blockDim.x, [&](float v, int) { se += (double)expf(gen_z(v, hm, Ts)); });
  se = block_sum(se);
  if (tid == 0) score[r] = gen_lp(lg[k], m, Ts, log(se));
}

#endif
