/* gen_sample.cuh - the draw of generate.c's sampler (g_draw) and the decode step's sampler split
 * over several blocks per row (k_sample_split), apart so that tests/c/test_gen_sample_emu.cpp can
 * run them on the CPU: it needs from its includer __syncthreads, __syncthreads_or, __threadfence, atomicAdd,
 * __ldcg, the thread and block indices, expf, logf, fmaxf, fabsf, INFINITY and NAN (cuda_internal.cuh,
 * or the test's emulation of them).
 */
#ifndef CF_GEN_SAMPLE_CUH
#define CF_GEN_SAMPLE_CUH

/* a sampled token and its log-probability, as the samplers write them; for a row whose logits
 * cannot be sampled, tok is one of GEN_BAD_* (generate.cu turns it into an error naming the token,
 * the sample and the prompt, as generate.c does) and the row's next token is id 0 */
struct gen_out { int tok; float lp; };
#define GEN_BAD_NONFINITE (-1)  /* a logit is NaN or +inf */
#define GEN_BAD_ALL_NEG_INF (-2) /* every logit is -inf */
#define GEN_BAD_OVERFLOW (-3)    /* the largest logit / T is no finite float: T too small for the
                                    float z = logit / T (the CPU, in double, shifts by the largest
                                    first; the GPU refuses rather than sample NaN) */

/* Which GEN_BAD_* a row of first maximum bv is under temperature T (bad: a NaN or +inf seen), or
 * 0 when it can be sampled. Every thread of a block asks with the same values. */
__device__ __forceinline__ int gen_row_bad(int bad, float bv, float T) {
  if (bad) return GEN_BAD_NONFINITE;
  if (bv == -INFINITY) return GEN_BAD_ALL_NEG_INF;
  if (!(fabsf(bv / T) < INFINITY)) return GEN_BAD_OVERFLOW;
  return 0;
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
 * a multiple of 4 long), finds its first maximum and the maximum zm of z = logit / T, then sums
 * (double) expf(z - zm) over it, and stores the three; the last block of the row to finish (a
 * ticket) merges the segments in order (lse in double), draws u = g_draw(key, step) like k_sample,
 * finds the segment where the cumulative probability passes u, then inside it the group of
 * threads, the thread and the id, summing the same (double) expf(z - zm) terms as the segment's
 * sum (so the walk and the segment totals agree to the last bits of a double). Against k_sample,
 * which sums (double) expf(z - lse) per id, each id's probability differs only by the rounding of
 * its own float exponential, not by an error shared by a whole segment. Greedy picks the first
 * maximum. Writes out (token, log-prob z - lse) and advances tok, pos and step as k_sample does;
 * a row holding a NaN or +inf logit, or only -inf, gets GEN_BAD_* instead (no draw). Tree merges
 * run in a fixed order: the result is deterministic. */
#define SMP_T 256    /* threads per block */
#define SMP_U 4      /* 16-byte loads a thread has in flight in a pass over its segment */
#define SMP_MAXS 32  /* segments per row at most */
#define SMP_GROUP 8  /* threads per group of the inverse-CDF walk: SMP_T / 32 groups */

/* a segment's summary: its first maximum (bv at id bi), the maximum zm of z, S = sum of
 * (double) expf(z - zm), and whether it holds a NaN or +inf logit */
struct smp_part { double S; float bv, zm; int bi, bad; };

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

/* first maximum (value v at id i, over ids seen in increasing order per thread) and max of z */
struct smp_max {
  float bv, zm;
  int bi;
  __device__ __forceinline__ void see(float v, int i, float T) {
    if (v > bv) { bv = v; bi = i; }
    zm = fmaxf(zm, v / T);
  }
  __device__ __forceinline__ void merge(const smp_max &o) {
    if (o.bv > bv || (o.bv == bv && o.bi < bi)) { bv = o.bv; bi = o.bi; }
    zm = fmaxf(zm, o.zm);
  }
};

/* (double) expf(v / T - zm), 0 for z = -inf */
__device__ __forceinline__ double smp_p(float v, float T, float zm) {
  float z = v / T;
  return z == -INFINITY ? 0.0 : (double)expf(z - zm);
}

/* f(v, i) for thread tid's share of the ids in [lo, hi), in increasing order (float4 loads
 * when the row is 16-byte aligned there, then the rest one by one) */
template <typename F>
__device__ __forceinline__ void smp_each(const float *lg, int lo, int hi, int tid, F f) {
  int i0 = lo;
  if ((((uintptr_t)(lg + lo)) & 15) == 0) {
    int n4 = (hi - lo) / 4;
    const float4 *l4 = (const float4 *)(lg + lo);
    int j = tid;
    /* SMP_U loads in flight, then their values in the order of the plain loop below: a loop
     * whose body uses what it just loaded waits on memory every iteration */
    for (; j + (SMP_U - 1) * SMP_T < n4; j += SMP_U * SMP_T) {
      float4 q[SMP_U];
#pragma unroll
      for (int u = 0; u < SMP_U; u++) q[u] = __ldcg(l4 + j + u * SMP_T);
#pragma unroll
      for (int u = 0; u < SMP_U; u++) {
        int i = lo + 4 * (j + u * SMP_T);
        f(q[u].x, i); f(q[u].y, i + 1); f(q[u].z, i + 2); f(q[u].w, i + 3);
      }
    }
    for (; j < n4; j += SMP_T) {
      float4 q = __ldcg(l4 + j);
      int i = lo + 4 * j;
      f(q.x, i); f(q.y, i + 1); f(q.z, i + 2); f(q.w, i + 3);
    }
    i0 = lo + 4 * n4;
  }
  for (int i = i0 + tid; i < hi; i += SMP_T) f(__ldcg(lg + i), i);
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
  /* the segment's first maximum and zm, then its sum */
  smp_max mx;
  mx.bv = -INFINITY; mx.zm = -INFINITY; mx.bi = V;
  int bad = 0; /* a NaN or +inf seen */
  smp_each(lg, lo, hi, tid, [&](float v, int i) {
    mx.see(v, i, T);
    bad |= !(v < INFINITY);
  });
  red[tid] = mx;
  bad = __syncthreads_or(bad);
  for (int o = SMP_T / 2; o > 0; o >>= 1) {
    if (tid < o) red[tid].merge(red[tid + o]);
    __syncthreads();
  }
  float zm = red[0].zm;
  double sum = 0;
  if (zm != -INFINITY) smp_each(lg, lo, hi, tid, [&](float v, int) { sum += smp_p(v, T, zm); });
  dm[tid] = sum;
  __syncthreads();
  for (int o = SMP_T / 2; o > 0; o >>= 1) {
    if (tid < o) dm[tid] += dm[tid + o];
    __syncthreads();
  }
  /* this segment's summary to the workspace; the row's last block goes on */
  if (tid == 0) {
    smp_part *pp = a.part + (size_t)r * S + s;
    pp->S = dm[0]; pp->bv = red[0].bv; pp->zm = zm; pp->bi = red[0].bi; pp->bad = bad;
  }
  __threadfence();
  __syncthreads();
  if (tid == 0) s_last = atomicAdd(&a.cnt[r], 1) == S - 1;
  __syncthreads();
  if (!s_last) return;
  __threadfence();
  if (tid < S) {
    const smp_part *pp = a.part + (size_t)r * S + tid;
    segs[tid].S = __ldcg(&pp->S); segs[tid].bv = __ldcg(&pp->bv); segs[tid].zm = __ldcg(&pp->zm);
    segs[tid].bi = __ldcg(&pp->bi); segs[tid].bad = __ldcg(&pp->bad);
  }
  __syncthreads();
  /* the row, merged in segment order (every thread the same, from shared memory): the first
   * maximum, and lse = M + log(sum_q S_q exp(zm_q - M)) in double */
  smp_max row;
  row.bv = -INFINITY; row.zm = -INFINITY; row.bi = V;
  int rowbad = 0;
  for (int q = 0; q < S; q++) {
    smp_max o;
    o.bv = segs[q].bv; o.zm = segs[q].zm; o.bi = segs[q].bi;
    row.merge(o);
    rowbad |= segs[q].bad;
  }
  int why = gen_row_bad(rowbad, row.bv, T);
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
    if (segs[q].S > 0) L += segs[q].S * exp((double)segs[q].zm - (double)row.zm);
  double lse = (double)row.zm + log(L);
  int bi = row.bi < V ? row.bi : 0;
  if (!a.greedy) {
    double u = g_draw(a.key[r], (uint64_t)a.step[r]);
    if (tid == 0) {
      /* the segment (mass S_q exp(zm_q - lse)); past the end (rounding) the last with mass. The
       * target goes on in the chosen segment's own units, exp(z - zm_q) */
      double total = 0;
      for (int q = 0; q < S; q++)
        if (segs[q].S > 0) total += segs[q].S * exp((double)segs[q].zm - lse);
      double target = u * total, cum = 0, unit = 1;
      int pick = -1, lastm = 0;
      for (int q = 0; q < S && pick < 0; q++) {
        if (!(segs[q].S > 0)) continue;
        double e = exp((double)segs[q].zm - lse), m = segs[q].S * e;
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
    float zq = segs[s_seg].zm;
    int chunk = (hi - lo + SMP_T - 1) / SMP_T;
    int clo = lo + tid * chunk < hi ? lo + tid * chunk : hi, chi = clo + chunk < hi ? clo + chunk : hi;
    double mass = 0;
    for (int i = clo; i < chi; i++) mass += smp_p(__ldcg(lg + i), T, zq);
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
        double p = smp_p(__ldcg(lg + i), T, zq);
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
    a.out[r].lp = (float)((double)(lg[bi] / T) - lse);
    if (a.update) { a.tok[r] = bi; a.pos[r] += 1; a.step[r] += 1; }
    a.cnt[r] = 0;
  }
}

#endif
