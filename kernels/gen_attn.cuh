/* gen_attn.cuh - the decode attention of generate.cu (k_attn, k_attn_qp, k_attn_tc, k_attn_tc2,
 * k_attn_combine), apart so that tests/c/test_gen_attn_emu.cpp can run it on the CPU: it needs
 * from its includer bf16 (cuda_bf16.h's conversions), the vector types, bf16x8_to_float,
 * to_float, from_float, warp_sum, warp_max, cu_pdl_wait/trigger, cu_mma_bf16, cu_ldsm_x4_trans,
 * __syncthreads, __threadfence, atomicAdd, __ldcg, __fmaf_rn, __fmul_rn, the thread and block
 * indices, gridDim, expf, fmaxf, min, memcpy and INFINITY (cuda_internal.cuh, or the test's
 * emulation of them).
 */
#ifndef CF_GEN_ATTN_CUH
#define CF_GEN_ATTN_CUH

#define ATT_T 128         /* threads of the attention block */
#define ATT_TILE 64       /* positions per attention tile */
#define ATT_G 8           /* query heads per pass over a kv head's cache */
#define ATT_MAXHD 256
#define ATT_MAXSPLIT 528 /* att_split never makes more splits than this */
#define ATT_QB 2         /* query elements a thread loads at once (more: more registers, and at
                            head_dim 128 fewer blocks per multiprocessor than 168 allow) */
#define ATT_QP 3         /* query RoPE pairs a thread stages at once with QP (6 loads each; 3 x 128
                            threads cover the 1.5B shape's group, 6 heads x 64 pairs, in one pass;
                            the 7B's 7 heads take two) */

/* Decode attention, split-K over positions. grid (nsplit, KVH * gs, A), ATT_T threads: block y
 * takes kv head y / gs and the (y % gs)-th share of its query heads (gs > 1: less work per block,
 * the same tile loaded by gs blocks).
 * q (A, H*hd) f32 rotated; row r attends to positions 0..pos[r]: those < plen[r] from slot
 * pslot[r], the rest from slot[r]. Split s covers positions [s*C, (s+1)*C). Writes the split's
 * running max pm, sum pl (A, H, nsplit) and unnormalised output po (A, H, nsplit, hd).
 * Per tile of ATT_TILE positions, for up to ATT_G query heads of the kv head at once:
 *  loads   first, every thread issues all its loads of the tile: its K row half (scores) and
 *          its V pairs (P V), into registers; on the first tile the query goes to shared memory
 *          meanwhile. One memory round trip per tile instead of one per phase;
 *  scores  warp w takes positions (w / 2) * 32 + lane and half (w % 2) of head_dim: the K half
 *          row (16-byte loads when VEC: head_dim % 16 == 0; else read element by element here)
 *          against the query from shared memory (a broadcast: one address per warp); the halves
 *          add in shared memory;
 *  softmax one warp per head, lanes over the tile (online: running max and sum);
 *  P V     warp w owns positions [16 w, 16 w + 16) of the tile, its lanes the dim pairs
 *          2 (lane + 32 c) (coalesced pair loads); the four warps' sums add at the end.
 * HD (128 or 256) bounds head_dim and sizes the register arrays. QP (rq only): the queries are
 * staged in one pass, a thread taking ATT_QP RoPE pairs at once with every load of them (elements,
 * partials, biases, cos, sin) in flight together, where k_attn takes two passes (elements and
 * biases into shared memory, then the rotation), each with its own waits on L2; the same
 * arithmetic in the same order (k_attn_qp below, the default: CONFIT_GEN_ATT_QPAIR).
 * TC 1 (with QP, bf16 caches; k_attn_tc): the scores on the tensor cores, positions as M, heads as
 * N. The SIMT scores are most of a tile's instructions (per thread 96 shared loads of the query
 * and 384 FMA), and the tile is bound by issue; as mma m16n8k16 a warp does its 16 positions
 * with all 8 heads in 24 mma and 12 shared loads per thread:
 *  loads   warp w takes positions [16 w, 16 w + 16) (as P V does), lane 4 g + t dims
 *          32 c + 8 t .. + 7 of each 32-dim chunk c of positions g and g + 8 (8 16-byte loads,
 *          as many as a K half row): the A fragments as they come (att_tc_scores);
 *  query   staged as with QP (f32, in qs), then split once per pass into three bf16 parts
 *          h1 + h2 + h3 (att_tc_split) and laid out as the B fragments (qb: one 16-byte shared
 *          load per chunk and part). K is exact in bf16, the parts hold the f32 query to about
 *          2^-27: three mma per k-step give the scores of the f32 path to about 1e-6 relative
 *          (one part alone would be bf16's 2^-9);
 *  scores  the three parts' accumulators added into ts, which the softmax reads instead of the
 *          two halves in part.
 * The rest (staging, position p, softmax, P V, partials, merge) is k_attn_qp's.
 * TC 2 (with TC 1's scores; k_attn_tc2): P V on the tensor cores too. Once the scores are off
 * the CUDA cores, P V is most of a tile's instructions (per thread 32 dim pairs x 16 positions x
 * up to 8 heads: 512 FMA and the weights' shared loads); as O^T = V^T P^T in mma m16n8k16, dims
 * as M, heads as N, positions as K, warp w takes dims 32 w .. 32 w + 31 (two m-tiles) over all 64
 * positions (4 k-steps) in 8 ldmatrix, 12 8-byte shared loads and 24 mma per thread, and the four
 * warps' sums need no adding up (no red):
 *  loads   V as 16-byte chunks, thread i chunk i % 16 of positions i / 16 + 8 k (8 loads, as many
 *          bytes as k_attn_qp's pairs), in flight with K; after the scores they go to shared
 *          memory (vst: rows of positions, zero past the tile), from which ldmatrix .trans reads
 *          the A fragments (V^T) directly;
 *  softmax a lane takes positions 2 lane, 2 lane + 1 (not lane, lane + 32: the same max and
 *          weights, the sum added in another order) and writes P as three bf16 parts (as the
 *          query: P V within about 1e-6 of the f32 path), one word per part, into pb in the order
 *          of the B fragments (one 8-byte load per part and k-step); heads past G zero;
 *  P V     the C fragment's columns are heads: each column rescaled by its head's alpha, then the
 *          tile's 4 k-steps x 3 parts added; at the end of the split each warp writes its dims of
 *          po. */
static_assert(ATT_T == 128 && ATT_TILE == 64, "k_attn's thread layout assumes 128 threads and 64-position tiles");
#define ATT_QPAD 4                     /* floats between the two halves of a query row in shared memory */
#define ATT_PVG 4                      /* position groups of P V: one per warp */
#define ATT_PVP (ATT_TILE / ATT_PVG)   /* positions per group */
#define ATT_TSPAD 4  /* TC: floats after each head's scores (a warp's stores of one C register,
                        heads 2t, positions g, then fall in 32 different banks) */
#define ATT_VROW 17  /* TC 2: 16-byte units of a staged V row, 16 and 1 pad (rows 272 bytes apart:
                        the 8 rows of 16 bytes that one ldmatrix phase reads fall in 32 banks) */
#define ATT_PVPARTS 3 /* TC 2: bf16 parts of P (att_tc_parts makes three) */
#define ATT_PBW 40   /* TC 2: words of a head's row of a P part, 32 and 8 pad (a half warp's 8-byte
                        loads, heads g .. g + 3, then fall in 32 different banks) */

/* 8 consecutive cache elements as loaded (16 bytes of bf16, 32 of f32) and a pair of them */
template <typename T> struct kv8;
template <> struct kv8<bf16> {
  uint4 u;
  __device__ __forceinline__ void load(const bf16 *p) { u = *(const uint4 *)p; }
  __device__ __forceinline__ void load_cg(const bf16 *p) { u = __ldcg((const uint4 *)p); }
  __device__ __forceinline__ void get(float *f) const { bf16x8_to_float(u, f); }
};
template <> struct kv8<float> {
  float4 a, b;
  __device__ __forceinline__ void load(const float *p) { a = ((const float4 *)p)[0]; b = ((const float4 *)p)[1]; }
  __device__ __forceinline__ void load_cg(const float *p) { a = __ldcg((const float4 *)p); b = __ldcg((const float4 *)p + 1); }
  __device__ __forceinline__ void get(float *f) const {
    f[0] = a.x; f[1] = a.y; f[2] = a.z; f[3] = a.w; f[4] = b.x; f[5] = b.y; f[6] = b.z; f[7] = b.w;
  }
};
template <typename T> struct kv2;
template <> struct kv2<bf16> {
  __nv_bfloat162 h;
  __device__ __forceinline__ void load(const bf16 *p) { h = *(const __nv_bfloat162 *)p; }
  __device__ __forceinline__ void load_cg(const bf16 *p) { h = __ldcg((const __nv_bfloat162 *)p); }
  __device__ __forceinline__ void zero() { h = __floats2bfloat162_rn(0.f, 0.f); }
  __device__ __forceinline__ float2 get() const { return __bfloat1622float2(h); }
};
template <> struct kv2<float> {
  float2 f;
  __device__ __forceinline__ void load(const float *p) { f = *(const float2 *)p; }
  __device__ __forceinline__ void load_cg(const float *p) { f = __ldcg((const float2 *)p); }
  __device__ __forceinline__ void zero() { f = make_float2(0.f, 0.f); }
  __device__ __forceinline__ float2 get() const { return f; }
};

/* RoPE of the pair (x0, x1) (elements j and j + head_dim/2) by cos c and sin s: the first and the
 * second output, with the rounding written out (one product rounded, the other fused) so that
 * k_rope_kv and both of this file's rotations (queries, the new key) agree bit for bit whatever
 * the compiler would contract */
__device__ __forceinline__ float rope_lo(float x0, float x1, float c, float s) { return __fmaf_rn(x0, c, -__fmul_rn(x1, s)); }
__device__ __forceinline__ float rope_hi(float x0, float x1, float c, float s) { return __fmaf_rn(x0, s, __fmul_rn(x1, c)); }

/* The attention's arguments. q: rotated queries (A, H*hd) f32, or with rq the GEMM's q|k|v rows
 * (A, ld) f32 before bias and RoPE: then the block also rotates its queries itself and, when its
 * range holds the row's new position pos[r], computes that position's key and value (bias, RoPE),
 * writes them into the caches and uses them (the work of k_rope_kv, which then does not run;
 * decode only: every row adds exactly its own position). early: the row's cached positions other
 * than pos[r] are complete before this kernel starts (decode), so a programmatic dependent launch
 * may load them before cu_pdl_wait. */
struct att_args {
  const float *q;
  const void *kc, *vc;
  const int *pos, *slot, *pslot, *plen;
  float *po, *pm, *pl;
  int H, KVH, hd, cap, C, nsplit;
  int gs;                                  /* blocks per kv head (grid.y = KVH * gs): each takes a
                                              share of the kv head's query heads */
  float scale;
  bool rq, early;
  int ld;                                  /* rq: the q|k|v row stride */
  int qnp;                                 /* rq: q|k|v is the sum of qnp (> 1) partial products
                                              of a split-K GEMM, qps floats apart; 0, 1: one */
  size_t qps;
  const float *bq, *bk, *bv;               /* rq: biases (may be NULL) */
  const float *cos_t, *sin_t;              /* rq: (cap, hd/2) */
  void *kcw, *vcw;                         /* rq: the caches, written at (slot[r], pos[r]) */
  int *cnt;    /* non-NULL: the last of the nsplit blocks of a (row, y) merges the splits itself
                  (k_attn_combine's work; one ticket counter per (row, y), zero between launches) */
  void *out;   /* with cnt: the attention output (A, H*hd) of T */
};

/* The splits of query heads [gbeg, gend) of kv head kvh, row r, merged into a.out by the last of
 * the row's nsplit blocks for this y to finish (a ticket); the same arithmetic, in the same
 * order, as k_attn_combine below. Other blocks' partials are read through L2 (__ldcg). Heads go
 * in batches of at most ATT_MERGE_HB whose split weights fit cw: the warps find the weights of a
 * batch's heads side by side, then every thread sums ATT_MQ outputs at once, the loads of ATT_MS
 * splits of each in flight together (a loop of dependent load-and-adds per output would wait on
 * L2 once per split). */
#define ATT_MERGE_HB 16
#define ATT_MQ 4
#define ATT_MS 8
template <typename T>
__device__ void att_merge(const att_args &a, int r, int kvh, int gbeg, int gend) {
  __shared__ int s_last;
  __shared__ float cw[ATT_MAXSPLIT];
  __shared__ float cL[ATT_MERGE_HB];
  int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, nwarp = ATT_T / 32, H = a.H, hd = a.hd, nsplit = a.nsplit;
  int group = H / a.KVH;
  int *ct = a.cnt + (size_t)r * a.KVH * a.gs + blockIdx.y;
  __threadfence();
  __syncthreads();
  if (tid == 0) s_last = atomicAdd(ct, 1) == nsplit - 1;
  __syncthreads();
  if (!s_last) return;
  __threadfence();
  T *out = (T *)a.out;
  int hb = ATT_MAXSPLIT / nsplit < ATT_MERGE_HB ? ATT_MAXSPLIT / nsplit : ATT_MERGE_HB;
  for (int h0 = kvh * group + gbeg; h0 < kvh * group + gend; h0 += hb) {
    int nh = min(hb, kvh * group + gend - h0);
    for (int j = warp; j < nh; j += nwarp) {
      size_t base = ((size_t)r * H + h0 + j) * nsplit;
      float M = -INFINITY;
      for (int s = lane; s < nsplit; s += 32) M = fmaxf(M, __ldcg(a.pm + base + s));
      M = warp_max(M);
      float L = 0.f;
      for (int s = lane; s < nsplit; s += 32) {
        float l = __ldcg(a.pl + base + s), ws = l == 0.f ? 0.f : expf(__ldcg(a.pm + base + s) - M);
        cw[j * nsplit + s] = ws;
        L += l * ws;
      }
      L = warp_sum(L);
      if (lane == 0) cL[j] = L;
    }
    __syncthreads();
    int ne = nh * hd; /* element e: head h0 + e / hd, dim e % hd */
    for (int e0 = 0; e0 < ne; e0 += ATT_MQ * ATT_T) {
      float o[ATT_MQ];
#pragma unroll
      for (int k = 0; k < ATT_MQ; k++) o[k] = 0.f;
      for (int s0 = 0; s0 < nsplit; s0 += ATT_MS) {
        float v[ATT_MQ][ATT_MS];
#pragma unroll
        for (int k = 0; k < ATT_MQ; k++) { /* past the end: no load, not added (addresses kept */
          int e = e0 + tid + k * ATT_T, ec = min(e, ne - 1); /* in range should a load be issued) */
          const float *pe = a.po + ((size_t)r * H + h0 + ec / hd) * nsplit * hd + ec % hd;
#pragma unroll
          for (int q = 0; q < ATT_MS; q++)
            v[k][q] = e < ne && s0 + q < nsplit ? __ldcg(pe + (size_t)min(s0 + q, nsplit - 1) * hd) : 0.f;
        }
#pragma unroll
        for (int k = 0; k < ATT_MQ; k++) {
          int j = min(e0 + tid + k * ATT_T, ne - 1) / hd;
#pragma unroll
          for (int q = 0; q < ATT_MS; q++)
            if (s0 + q < nsplit) o[k] += v[k][q] * cw[j * nsplit + s0 + q];
        }
      }
#pragma unroll
      for (int k = 0; k < ATT_MQ; k++) {
        int e = e0 + tid + k * ATT_T;
        if (e < ne) {
          float L = cL[e / hd];
          out[(size_t)r * H * hd + (size_t)(h0 + e / hd) * hd + e % hd] = from_float<T>(L > 0.f ? o[k] / L : 0.f);
        }
      }
    }
    __syncthreads();
  }
  if (tid == 0) *ct = 0;
}

/* TC: the pair (r0, r1) as three bf16 pairs w[0] + w[1] + w[2], each the rounding of what the
 * ones before leave (the differences are exact in f32; together the parts hold the pair to about
 * 2^-27 relative, more than f32's own 2^-24), r0 in the low half of each word. The queries
 * (att_tc_split) and, with TC 2, P take their parts so. */
__device__ __forceinline__ void att_tc_parts(float r0, float r1, uint32_t (&w)[3]) {
#pragma unroll
  for (int h = 0; h < 3; h++) {
    __nv_bfloat162 b = __floats2bfloat162_rn(r0, r1);
    memcpy(&w[h], &b, 4);
    float2 f = __bfloat1622float2(b);
    r0 -= f.x;
    r1 -= f.y;
  }
}

/* TC: 8 query elements v (f32, 16-byte aligned) as three bf16 parts v = h1 + h2 + h3
 * (att_tc_parts), in pairs, element 2j in the low half of word j */
__device__ __forceinline__ void att_tc_split(const float4 *v, uint4 &h1, uint4 &h2, uint4 &h3) {
  float4 x = v[0], y = v[1];
  float e[8] = {x.x, x.y, x.z, x.w, y.x, y.y, y.z, y.w};
  uint32_t w[3][4];
#pragma unroll
  for (int j = 0; j < 4; j++) {
    uint32_t p[3];
    att_tc_parts(e[2 * j], e[2 * j + 1], p);
    w[0][j] = p[0];
    w[1][j] = p[1];
    w[2][j] = p[2];
  }
  h1 = make_uint4(w[0][0], w[0][1], w[0][2], w[0][3]);
  h2 = make_uint4(w[1][0], w[1][1], w[1][2], w[1][3]);
  h3 = make_uint4(w[2][0], w[2][1], w[2][2], w[2][3]);
}

/* TC: the scores of a warp's 16 positions (M) with the 8 heads (N) of the group, accumulated into
 * c[part], one accumulator per query part (three independent chains of mma instead of one three
 * times as long). The warp's lane 4 g + t holds in k[2 c] and k[2 c + 1] dims 32 c + 8 t .. + 7
 * of its positions g and g + 8 (xa, xb). mma's A fragment wants row g / g + 8 at k 2t, 2t + 1
 * (registers 0, 1) and 2t + 8, 2t + 9 (registers 2, 3): xa.x, xb.x, xa.y, xb.y puts dims
 * 8t .. 8t + 3 of the chunk at those k, xa.z .. xb.w dims 8t + 4 .. 8t + 7 in a second step; the
 * B fragment (k 2t, 2t + 1 and 2t + 8, 2t + 9 of column g: head g) then takes the query's same
 * dims, words x, y and z, w of qb's uint4 (a permutation of the reduction, the same on both
 * sides). Chunks past head_dim are skipped; the dims past it in the last one are zero in both. */
template <int HD>
__device__ __forceinline__ void att_tc_scores(float (&c)[3][4], const kv8<bf16> (&k)[HD / 16],
                                              const uint4 (*qb)[3][32], int hd, int lane) {
#pragma unroll
  for (int ch = 0; ch < HD / 32; ch++) {
    if (32 * ch >= hd) break;
    const uint4 &xa = k[2 * ch].u, &xb = k[2 * ch + 1].u;
    uint32_t a0[4] = {xa.x, xb.x, xa.y, xb.y}, a1[4] = {xa.z, xb.z, xa.w, xb.w};
#pragma unroll
    for (int h = 0; h < 3; h++) {
      uint4 b = qb[ch][h][lane];
      cu_mma_bf16(c[h], a0, b.x, b.y);
      cu_mma_bf16(c[h], a1, b.z, b.w);
    }
  }
}
/* f32 caches: no TC (k_attn_tc<float> is k_attn_qp); never called */
template <int HD>
__device__ __forceinline__ void att_tc_scores(float (&)[3][4], const kv8<float> (&)[HD / 16], const uint4 (*)[3][32],
                                              int, int) {}

/* TC 2: the word of positions 2 j, 2 j + 1 (j < 32) in a head's row of a P part: the B fragment
 * of k-step s for lane 4 g + q is positions 16 s + 2 q, + 1 (register 0) and 16 s + 2 q + 8, + 9
 * (register 1) of head g, so words 8 s + 2 q and 8 s + 2 q + 1 hold them: one 8-byte load */
__device__ __forceinline__ int att_tc_pword(int j) { return 8 * (j >> 3) + 2 * (j & 3) + ((j >> 2) & 1); }

/* TC 2: my 8 chunks of the tile's V (vt[k]: position tid / 16 + 8 k, dims 8 (tid % 16) .. + 7)
 * into the staging rows (16-byte units); positions past n zero (the loads there repeated the last
 * position, and a position's V may be NaN where P is 0: 0 * NaN would leak) */
__device__ __forceinline__ void att_tc_stage(uint4 (*vst)[ATT_VROW], const kv8<bf16> (&vt)[8], int n, int tid) {
#pragma unroll
  for (int k = 0; k < 8; k++) {
    int tt = (tid >> 4) + 8 * k;
    vst[tt][tid & 15] = tt < n ? vt[k].u : make_uint4(0u, 0u, 0u, 0u);
  }
}
/* TC 2: vt[k0] = x, as selects (a store to vt[k0] would put vt in local memory) */
__device__ __forceinline__ void att_tc_pick(kv8<bf16> (&vt)[8], const kv8<bf16> &x, int k0) {
#pragma unroll
  for (int k = 0; k < 8; k++) {
    uint4 &u = vt[k].u;
    bool p = k == k0;
    u = make_uint4(p ? x.u.x : u.x, p ? x.u.y : u.y, p ? x.u.z : u.z, p ? x.u.w : u.w);
  }
}
__device__ __forceinline__ void att_tc_pick(kv8<float> (&)[8], const kv8<float> &, int) {}
/* f32 caches: no TC; never called */
__device__ __forceinline__ void att_tc_stage(uint4 (*)[ATT_VROW], const kv8<float> (&)[8], int, int) {}

/* TC 2: the tile's P V added into c (c[m]: the C fragment of my warp's m-tile m, dims 32 w + 16 m
 * .. + 15 as rows, the 8 heads as columns), k-step s positions 16 s .. + 15: the A fragment (V^T:
 * rows dims, k positions) by ldmatrix .trans from the staging rows, lane l giving row
 * 16 s + l % 8 + 8 (l / 16) at dims + 8 ((l / 8) % 2) (matrices 0 .. 3: the fragment's registers
 * 0 .. 3, dims g / g + 8 at positions 2 t, 2 t + 1 / 2 t + 8, 2 t + 9); the B fragment (P^T: k
 * positions, column head g) the parts' 8-byte slots, smallest part first. All 4 k-steps, also
 * past n (rows zero, P zero there: skipping them cost spills). A warp whose dims are all past
 * head_dim has nothing to do (hd % 16 == 0: an m-tile is all in or all out) */
__device__ __forceinline__ void att_tc_pv(float (&c)[2][4], const uint4 (*vst)[ATT_VROW],
                                          const uint32_t (*pb)[ATT_G][ATT_PBW], int hd, int warp, int lane) {
#pragma unroll
  for (int s = 0; s < ATT_TILE / 16; s++) {
    uint2 b[ATT_PVPARTS];
#pragma unroll
    for (int h = 0; h < ATT_PVPARTS; h++) b[h] = *(const uint2 *)&pb[h][lane >> 2][8 * s + 2 * (lane & 3)];
#pragma unroll
    for (int m = 0; m < 2; m++) {
      int d0 = 32 * warp + 16 * m;
      if (d0 >= hd) break;
      uint32_t a[4];
      cu_ldsm_x4_trans(a, (const bf16 *)vst[16 * s + (lane & 7) + 8 * (lane >> 4)] + d0 + 8 * ((lane >> 3) & 1));
#pragma unroll
      for (int h = ATT_PVPARTS - 1; h >= 0; h--) cu_mma_bf16(c[m], a, b[h].x, b[h].y);
    }
  }
}

template <typename T, bool VEC, int HD, bool QP, int TC = 0>
__device__ __forceinline__ void attn_body(const att_args &a) {
  static_assert(!TC || (sizeof(T) == 2 && QP && VEC && HD % 32 == 0), "TC: bf16, the one-pass staging, 16-byte K loads");
  static_assert(TC < 2 || HD == 128, "TC 2: 4 warps of 32 dims, 16 V chunks per row");
  constexpr int KCH = HD / 16; /* 8-element chunks of a K half row */
  constexpr int PVC = HD / 64; /* dim-pair passes of a lane */
  const T *kc = (const T *)a.kc, *vc = (const T *)a.vc;
  int H = a.H, KVH = a.KVH, hd = a.hd, cap = a.cap, nsplit = a.nsplit;
  __shared__ __align__(16) float qs[ATT_G][HD + ATT_QPAD];
  __shared__ float part[2][ATT_G][ATT_TILE];
  __shared__ float ps[ATT_G][ATT_TILE];
  __shared__ float red[TC == 2 ? 1 : ATT_PVG - 1][ATT_G][TC == 2 ? 1 : HD]; /* TC 2: no group sums */
  __shared__ float ms[ATT_G], ls[ATT_G], as[ATT_G];
  __shared__ __align__(16) T kvp[2][HD];   /* rq: the new position's key and value */
  __shared__ __align__(16) uint4 qb[TC ? HD / 32 : 1][3][32]; /* TC: the queries as B fragments */
  __shared__ float ts[TC ? ATT_G : 1][ATT_TILE + ATT_TSPAD];   /* TC: the scores */
  __shared__ uint4 vst[TC == 2 ? ATT_TILE : 1][ATT_VROW];                          /* TC 2: the tile's V */
  __shared__ __align__(16) uint32_t pb[TC == 2 ? ATT_PVPARTS : 1][ATT_G][ATT_PBW]; /* TC 2: P's parts */
  int split = blockIdx.x, kvh = blockIdx.y / a.gs, gi = blockIdx.y % a.gs, r = blockIdx.z;
  int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, nwarp = ATT_T / 32;
  int group = H / KVH, hh = hd / 2;
  int gper = (group + a.gs - 1) / a.gs, gbeg = gi * gper, gend = min(group, gbeg + gper); /* my query heads */
  int p = a.pos[r], pl_r = a.plen[r];
  int start = split * a.C, end = min(start + a.C, p + 1);
  size_t own = ((size_t)a.slot[r] * KVH + kvh) * cap * hd, pre = ((size_t)a.pslot[r] * KVH + kvh) * cap * hd;
  bool mine = a.rq && start <= p && p < end; /* this block makes position p's key and value */
  bool waited = false;
  if (!a.early) {
    cu_pdl_wait();
    cu_pdl_trigger();
    waited = true;
  }
  /* scores: my position within the tile and my half of head_dim */
  int st_tt = lane + 32 * (warp >> 1), half = warp & 1;
  int qoff = half ? hh + ATT_QPAD : 0;
  /* P V: my warp's positions and my lane's dim pairs */
  int pv_grp = warp;
  for (int g0 = gbeg; g0 < gend; g0 += ATT_G) {
    int G = min(ATT_G, gend - g0);
    int hbase = kvh * group + g0;
    if (start >= end) {
      if (!waited) {
        cu_pdl_wait();
        cu_pdl_trigger();
        waited = true;
      }
      for (int g = 0; g < G; g++) {
        size_t pi = ((size_t)r * H + hbase + g) * nsplit + split;
        for (int d = tid; d < hd; d += ATT_T) a.po[pi * hd + d] = 0.f;
        if (tid == 0) { a.pm[pi] = -INFINITY; a.pl[pi] = 0.f; }
      }
      continue;
    }
    float acc[ATT_G][PVC][2];
#pragma unroll
    for (int g = 0; g < ATT_G; g++)
#pragma unroll
      for (int c = 0; c < PVC; c++) { acc[g][c][0] = 0.f; acc[g][c][1] = 0.f; }
    float cacc[2][4]; /* TC 2: my warp's P V, C fragments of its two m-tiles */
#pragma unroll
    for (int m = 0; m < 2; m++)
#pragma unroll
      for (int i = 0; i < 4; i++) cacc[m][i] = 0.f;
    for (int t0 = start; t0 < end; t0 += ATT_TILE) {
      int n = min(ATT_TILE, end - t0);
      /* loads: my K half row and my V pairs, all in flight together */
      kv8<T> kr8[KCH];
      const T *krow = NULL;
      if (TC) {
        /* TC: rows g and g + 8 of my warp's 16 positions, dims 32 c + 8 t .. + 7 of each 32-dim
         * chunk c (kr8[2 c], kr8[2 c + 1]; lane 4 g + t). Unconditional: past the tile the last
         * position again (its scores are not read), past head_dim the row's last 8 dims (they
         * meet zero queries); predicated loads and zeros cost spills */
#pragma unroll
        for (int h = 0; h < 2; h++) {
          int t = t0 + min(16 * warp + (lane >> 2) + 8 * h, n - 1);
          const T *kt = kc + (t < pl_r ? pre : own) + (size_t)t * hd;
#pragma unroll
          for (int c = 0; c < HD / 32; c++) kr8[2 * c + h].load(kt + min(32 * c + 8 * (lane & 3), hd - 8));
        }
      } else if (st_tt < n) {
        int t = t0 + st_tt;
        krow = kc + (t < pl_r ? pre : own) + (size_t)t * hd + half * hh;
        if (VEC) {
#pragma unroll
          for (int c = 0; c < KCH; c++) if (8 * c < hh) kr8[c].load(krow + 8 * c);
        }
      }
      kv2<T> vr[PVC][ATT_PVP];
      kv8<T> vt[8]; /* TC 2 */
      if (TC == 2) {
        /* TC 2: chunk tid % 16 (dims 8 (tid % 16) .. + 7) of positions tid / 16 + 8 k, into vt[k]
         * (att_tc_stage puts them in shared memory). Unconditional, as K's: past the tile the last
         * position again (zeroed there), past head_dim the row's last 8 dims (not read) */
#pragma unroll
        for (int k = 0; k < 8; k++) {
          int t = t0 + min((tid >> 4) + 8 * k, n - 1);
          vt[k].load(vc + (t < pl_r ? pre : own) + (size_t)t * hd + min(8 * (tid & 15), hd - 8));
        }
      } else {
#pragma unroll
        for (int c = 0; c < PVC; c++) {
          int d = 2 * (lane + 32 * c);
#pragma unroll
          for (int k = 0; k < ATT_PVP; k++) {
            int tt = pv_grp * ATT_PVP + k, t = t0 + tt;
            if (tt < n && d < hd) vr[c][k].load(vc + (t < pl_r ? pre : own) + (size_t)t * hd + d);
            else vr[c][k].zero();
          }
        }
      }
      if (!waited) { /* from here on what the previous kernel wrote is visible */
        cu_pdl_wait();
        cu_pdl_trigger();
        waited = true;
      }
      if (t0 == start) {
        if (a.rq) {
          /* queries: bias and RoPE of the GEMM's rows (as k_rope_kv computes them), scaled */
          const float *row = a.q + (size_t)r * a.ld;
          int qnp = a.qnp;
          size_t qps = a.qps;
          auto rd = [row, qnp, qps](int o) { /* element o of the row, its partials added in order */
            float v = row[o];
            for (int q = 1; q < qnp; q++) v += row[(size_t)q * qps + o];
            return v;
          };
          const float *qrow = row + (size_t)hbase * hd;
          if (QP) {
            /* one pass: thread i takes pairs (g, j) = (i / hh, i % hh), ATT_QP of them at once,
             * all their loads in flight together (past the last pair: the last one again, unused) */
            for (int i0 = tid; i0 < G * hh; i0 += ATT_QP * ATT_T) {
              float x0[ATT_QP], x1[ATT_QP], cv[ATT_QP], sv[ATT_QP], b0[ATT_QP], b1[ATT_QP];
#pragma unroll
              for (int k = 0; k < ATT_QP; k++) {
                int i = min(i0 + k * ATT_T, G * hh - 1), j = i % hh, o = (i / hh) * hd + j;
                x0[k] = qrow[o];
                x1[k] = qrow[o + hh];
                cv[k] = a.cos_t[(size_t)p * hh + j];
                sv[k] = a.sin_t[(size_t)p * hh + j];
                b0[k] = a.bq ? a.bq[(size_t)hbase * hd + o] : 0.f;
                b1[k] = a.bq ? a.bq[(size_t)hbase * hd + o + hh] : 0.f;
              }
              for (int q = 1; q < qnp; q++)
#pragma unroll
                for (int k = 0; k < ATT_QP; k++) {
                  int i = min(i0 + k * ATT_T, G * hh - 1), o = (i / hh) * hd + i % hh;
                  x0[k] += qrow[(size_t)q * qps + o];
                  x1[k] += qrow[(size_t)q * qps + o + hh];
                }
#pragma unroll
              for (int k = 0; k < ATT_QP; k++) {
                int i = i0 + k * ATT_T, g = i / hh, j = i % hh;
                if (i < G * hh) {
                  float y0 = x0[k] + b0[k], y1 = x1[k] + b1[k];
                  qs[g][j] = rope_lo(y0, y1, cv[k], sv[k]) * a.scale;
                  qs[g][j + hh + ATT_QPAD] = rope_hi(y0, y1, cv[k], sv[k]) * a.scale;
                }
              }
            }
          } else {
            /* 1: each query element with its partials (added in order) and bias, unrotated, into
             * qs; the loads of ATT_QB elements in flight at once: one wait on L2 per ATT_QB
             * elements, not per element (more at once would cost registers: the tile's K and V
             * are in flight). Past the last element a thread loads the last one again, unused. */
            for (int i0 = tid; i0 < G * hd; i0 += ATT_QB * ATT_T) {
              float x[ATT_QB];
#pragma unroll
              for (int k = 0; k < ATT_QB; k++) x[k] = qrow[min(i0 + k * ATT_T, G * hd - 1)];
              for (int q = 1; q < qnp; q++)
#pragma unroll
                for (int k = 0; k < ATT_QB; k++) x[k] += qrow[(size_t)q * qps + min(i0 + k * ATT_T, G * hd - 1)];
#pragma unroll
              for (int k = 0; k < ATT_QB; k++) {
                int i = i0 + k * ATT_T, d = i % hd;
                if (i < G * hd) qs[i / hd][d + (d >= hh ? ATT_QPAD : 0)] = x[k] + (a.bq ? a.bq[(size_t)hbase * hd + i] : 0.f);
              }
            }
            __syncthreads();
            /* 2: RoPE at position p of each pair (j, j + hh), by the thread that owns the pair, scaled */
            for (int i0 = tid; i0 < G * hh; i0 += ATT_QB * ATT_T) {
              float cv[ATT_QB], sv[ATT_QB];
#pragma unroll
              for (int k = 0; k < ATT_QB; k++) {
                int j = min(i0 + k * ATT_T, G * hh - 1) % hh;
                cv[k] = a.cos_t[(size_t)p * hh + j];
                sv[k] = a.sin_t[(size_t)p * hh + j];
              }
#pragma unroll
              for (int k = 0; k < ATT_QB; k++) {
                int i = i0 + k * ATT_T, g = i / hh, j = i % hh;
                if (i < G * hh) {
                  float y0 = qs[g][j], y1 = qs[g][j + hh + ATT_QPAD];
                  qs[g][j] = rope_lo(y0, y1, cv[k], sv[k]) * a.scale;
                  qs[g][j + hh + ATT_QPAD] = rope_hi(y0, y1, cv[k], sv[k]) * a.scale;
                }
              }
            }
          }
          if (mine && g0 == gbeg) {
            /* position p's key and value for this kv head: into shared memory and (the first of
             * the kv head's gs blocks) the caches */
            int Q = H * hd, KV = KVH * hd;
            T *kw = (T *)a.kcw + own + (size_t)p * hd, *vw = (T *)a.vcw + own + (size_t)p * hd;
            for (int d = tid; d < hd; d += ATT_T) {
              int j = d % hh, o = kvh * hd + j;
              float c = a.cos_t[(size_t)p * hh + j], sn = a.sin_t[(size_t)p * hh + j];
              float x0 = rd(Q + o) + (a.bk ? a.bk[o] : 0.f), x1 = rd(Q + o + hh) + (a.bk ? a.bk[o + hh] : 0.f);
              T kv = from_float<T>(d < hh ? rope_lo(x0, x1, c, sn) : rope_hi(x0, x1, c, sn));
              T vv = from_float<T>(rd(Q + KV + kvh * hd + d) + (a.bv ? a.bv[kvh * hd + d] : 0.f));
              kvp[0][d] = kv;
              kvp[1][d] = vv;
              if (gi == 0) {
                kw[d] = kv;
                vw[d] = vv;
              }
            }
          }
        } else {
          for (int i0 = tid; i0 < G * hd; i0 += ATT_QB * ATT_T) { /* loads first, as above */
            float x[ATT_QB];
#pragma unroll
            for (int k = 0; k < ATT_QB; k++) x[k] = a.q[(size_t)r * H * hd + (size_t)hbase * hd + min(i0 + k * ATT_T, G * hd - 1)];
#pragma unroll
            for (int k = 0; k < ATT_QB; k++) {
              int i = i0 + k * ATT_T, g = i / hd, d = i % hd;
              if (i < G * hd) qs[g][d + (d >= hh ? ATT_QPAD : 0)] = x[k] * a.scale;
            }
          }
        }
        if (TC) {
          /* the queries once more, as the scores' B fragments (att_tc_split); heads past G and
           * dims past head_dim zero. (Staged straight into qb, the rounding would sit where the
           * tile's K and V loads are in flight and cost spills.) */
          __syncthreads();
          for (int u = tid; u < HD / 32 * 32; u += ATT_T) {
            int c = u >> 5, g = (u >> 2) & 7, d = 32 * c + 8 * (u & 3);
            uint4 h1 = make_uint4(0u, 0u, 0u, 0u), h2 = h1, h3 = h1;
            if (g < G && d < hd) att_tc_split((const float4 *)&qs[g][d + (d >= hh ? ATT_QPAD : 0)], h1, h2, h3);
            qb[c][0][u & 31] = h1;
            qb[c][1][u & 31] = h2;
            qb[c][2][u & 31] = h3;
          }
        }
        if (tid < ATT_G) { ms[tid] = -INFINITY; ls[tid] = 0.f; }
        if (TC == 2) {
          /* the B fragments' columns past G: P zero, their alpha 1 (columns do not mix in mma;
           * theirs are never written out, but hold no garbage) */
          if (tid < ATT_G) as[tid] = 1.f;
          for (int i = tid; i < ATT_PVPARTS * ATT_G * ATT_PBW; i += ATT_T)
            if ((i / ATT_PBW) % ATT_G >= G) pb[i / (ATT_G * ATT_PBW)][(i / ATT_PBW) % ATT_G][i % ATT_PBW] = 0u;
        }
        __syncthreads();
      }
      if ((a.early || mine) && p >= t0 && p < t0 + n) {
        /* position p was loaded before the wait (early) or before this block made it (rq): take
         * it from shared memory (rq) or load it again, through L2 (a line of it may sit in this
         * SM's L1 from before the wait). The global and shared pointers stay apart: __ldcg is
         * ld.global.cg, which the compiler may issue ahead of the branch (non-volatile asm), and
         * given a shared address it stops the kernel (cudaErrorInvalidAddressSpace, seen on an
         * H200 when one pointer chose between the two) */
        int tp = p - t0;
        const T *kg = kc + own + (size_t)p * hd + (TC ? 0 : half * hh), *vg = vc + own + (size_t)p * hd;
        const T *ks = &kvp[0][TC ? 0 : half * hh], *vs = kvp[1];
        if (TC) {
          /* its row is kr8[2 c] (tp % 16 < 8) or kr8[2 c + 1] of the lanes 4 (tp % 8) + t of warp
           * tp / 16 */
          if (warp == tp >> 4 && lane >> 2 == (tp & 7)) {
#pragma unroll
            for (int c = 0; c < HD / 32; c++) {
              int d = min(32 * c + 8 * (lane & 3), hd - 8); /* as loaded above */
              kv8<T> x;
              if (mine) x.load(ks + d);
              else x.load_cg(kg + d);
              if (tp & 8) kr8[2 * c + 1] = x;
              else kr8[2 * c] = x;
            }
          }
        } else if (st_tt == tp) {
          krow = mine ? ks : kg;
          if (VEC) {
#pragma unroll
            for (int c = 0; c < KCH; c++)
              if (8 * c < hh) {
                if (mine) kr8[c].load(ks + 8 * c);
                else kr8[c].load_cg(kg + 8 * c);
              }
          }
        }
        if (TC == 2) {
          /* its V is vt[tp / 8] of the threads 16 (tp % 8) .. + 15 */
          if (tid >> 4 == (tp & 7)) {
            int d = min(8 * (tid & 15), hd - 8); /* as loaded above */
            kv8<T> x;
            if (mine) x.load(vs + d);
            else x.load_cg(vg + d);
            att_tc_pick(vt, x, tp >> 3);
          }
        } else {
#pragma unroll
          for (int c = 0; c < PVC; c++) {
            int d = 2 * (lane + 32 * c);
#pragma unroll
            for (int k = 0; k < ATT_PVP; k++)
              if (pv_grp * ATT_PVP + k == tp && d < hd) {
                if (mine) vr[c][k].load(vs + d);
                else vr[c][k].load_cg(vg + d);
              }
          }
        }
      }
      if (TC) {
        /* scores on the tensor cores: my warp's 16 positions with the 8 heads (past G zero), C
         * register i of lane 4 g + t is position 16 w + g + 8 (i / 2), head 2 t + i % 2; the
         * parts' sums (smallest first) to ts. A warp whose positions are all past the tile has
         * nothing to do (the branch is the warp's: mma wants all its lanes) */
        if (16 * warp < n) {
          float c3[3][4];
#pragma unroll
          for (int h = 0; h < 3; h++)
#pragma unroll
            for (int i = 0; i < 4; i++) c3[h][i] = 0.f;
          att_tc_scores<HD>(c3, kr8, qb, hd, lane);
          int tt = 16 * warp + (lane >> 2), g = 2 * (lane & 3);
          ts[g][tt] = (c3[2][0] + c3[1][0]) + c3[0][0];
          ts[g + 1][tt] = (c3[2][1] + c3[1][1]) + c3[0][1];
          ts[g][tt + 8] = (c3[2][2] + c3[1][2]) + c3[0][2];
          ts[g + 1][tt + 8] = (c3[2][3] + c3[1][3]) + c3[0][3];
        }
        /* TC 2: the tile's V to shared memory, now that it has had the scores' time to arrive */
        if (TC == 2) att_tc_stage(vst, vt, n, tid);
      } else {
        /* scores: half dot products of my position with every head of the group */
        float s[ATT_G];
#pragma unroll
        for (int g = 0; g < ATT_G; g++) s[g] = 0.f;
        if (st_tt < n) {
          if (VEC) {
#pragma unroll
            for (int c = 0; c < KCH; c++) {
              if (8 * c >= hh) break;
              float kf[8];
              kr8[c].get(kf);
#pragma unroll
              for (int g = 0; g < ATT_G; g++) {
                if (g < G) {
                  const float4 *qq = (const float4 *)&qs[g][qoff + 8 * c];
                  float4 x = qq[0], y = qq[1];
                  s[g] += x.x * kf[0] + x.y * kf[1] + x.z * kf[2] + x.w * kf[3] + y.x * kf[4] + y.y * kf[5] +
                          y.z * kf[6] + y.w * kf[7];
                }
              }
            }
          } else {
            for (int d = 0; d < hh; d++) {
              float kv = to_float(krow[d]);
#pragma unroll
              for (int g = 0; g < ATT_G; g++) if (g < G) s[g] += qs[g][qoff + d] * kv;
            }
          }
        }
#pragma unroll
        for (int g = 0; g < ATT_G; g++) if (g < G) part[half][g][st_tt] = s[g];
      }
      __syncthreads();
      /* online softmax per head: one warp per head */
      for (int g = warp; g < G; g += nwarp) {
        /* my positions: lane and lane + 32; TC 2 the pair 2 lane, 2 lane + 1 (one word of P's parts) */
        int tx = TC == 2 ? 2 * lane : lane, ty = TC == 2 ? 2 * lane + 1 : lane + 32;
        float x = tx < n ? (TC ? ts[g][tx] : part[0][g][lane] + part[1][g][lane]) : -INFINITY;
        float y = ty < n ? (TC ? ts[g][ty] : part[0][g][lane + 32] + part[1][g][lane + 32]) : -INFINITY;
        float mt = warp_max(fmaxf(x, y));
        float mold = ms[g], mnew = fmaxf(mold, mt);
        float ex = tx < n ? expf(x - mnew) : 0.f, ey = ty < n ? expf(y - mnew) : 0.f;
        if (TC == 2) {
          /* TC 2: P in bf16 parts (att_tc_parts), in the words of the B fragments */
          int w = att_tc_pword(lane);
          uint32_t u[ATT_PVPARTS];
          att_tc_parts(ex, ey, u);
#pragma unroll
          for (int h = 0; h < ATT_PVPARTS; h++) pb[h][g][w] = u[h];
        } else {
          ps[g][lane] = ex;
          ps[g][lane + 32] = ey;
        }
        float sum = warp_sum(ex + ey);
        if (lane == 0) {
          float alpha = expf(mold - mnew);
          as[g] = alpha;
          ls[g] = ls[g] * alpha + sum;
          ms[g] = mnew;
        }
      }
      __syncthreads();
      if (TC == 2) {
        /* TC 2: the columns (heads 2 t, 2 t + 1) times their alpha, then the tile's P V */
        float a0 = as[2 * (lane & 3)], a1 = as[2 * (lane & 3) + 1];
#pragma unroll
        for (int m = 0; m < 2; m++) { cacc[m][0] *= a0; cacc[m][1] *= a1; cacc[m][2] *= a0; cacc[m][3] *= a1; }
        att_tc_pv(cacc, vst, pb, hd, warp, lane);
      } else {
        /* acc = acc * alpha + P V over my group's positions (V already in registers) */
#pragma unroll
        for (int g = 0; g < ATT_G; g++)
          if (g < G)
#pragma unroll
            for (int c = 0; c < PVC; c++) { acc[g][c][0] *= as[g]; acc[g][c][1] *= as[g]; }
#pragma unroll
        for (int c = 0; c < PVC; c++) {
          if (2 * (lane + 32 * c) >= hd) break;
#pragma unroll
          for (int k = 0; k < ATT_PVP; k++) {
            int tt = pv_grp * ATT_PVP + k;
            float2 v = vr[c][k].get();
#pragma unroll
            for (int g = 0; g < ATT_G; g++)
              if (g < G) {
                float w = ps[g][tt];
                acc[g][c][0] += w * v.x;
                acc[g][c][1] += w * v.y;
              }
          }
        }
      }
      __syncthreads();
    }
    if (TC == 2) {
      /* TC 2: my warp's dims of every head, C register i of lane 4 g + t: dim g + 8 (i / 2) of the
       * m-tile, head 2 t + i % 2 */
#pragma unroll
      for (int m = 0; m < 2; m++) {
        int d0 = 32 * warp + 16 * m;
        if (d0 >= hd) break;
#pragma unroll
        for (int i = 0; i < 4; i++) {
          int g = 2 * (lane & 3) + (i & 1), d = d0 + (lane >> 2) + 8 * (i >> 1);
          if (g < G) a.po[(((size_t)r * H + hbase + g) * nsplit + split) * hd + d] = cacc[m][i];
        }
      }
    } else {
      /* the position groups add: groups 1.. hand their sums over through shared memory */
      if (pv_grp > 0) {
#pragma unroll
        for (int c = 0; c < PVC; c++) {
          int d = 2 * (lane + 32 * c);
          if (d >= hd) break;
#pragma unroll
          for (int g = 0; g < ATT_G; g++)
            if (g < G) { red[pv_grp - 1][g][d] = acc[g][c][0]; red[pv_grp - 1][g][d + 1] = acc[g][c][1]; }
        }
      }
      __syncthreads();
      if (pv_grp == 0) {
#pragma unroll
        for (int c = 0; c < PVC; c++) {
          int d = 2 * (lane + 32 * c);
          if (d >= hd) break;
#pragma unroll
          for (int g = 0; g < ATT_G; g++)
            if (g < G) {
              float o0 = acc[g][c][0], o1 = acc[g][c][1];
#pragma unroll
              for (int j = 0; j < ATT_PVG - 1; j++) { o0 += red[j][g][d]; o1 += red[j][g][d + 1]; }
              size_t pi = ((size_t)r * H + hbase + g) * nsplit + split;
              a.po[pi * hd + d] = o0;
              a.po[pi * hd + d + 1] = o1;
            }
        }
      }
    }
    if (tid < G) {
      size_t pi = ((size_t)r * H + hbase + tid) * nsplit + split;
      a.pm[pi] = ms[tid];
      a.pl[pi] = ls[tid];
    }
    __syncthreads();
  }
  if (!waited) cu_pdl_wait(); /* a block with no heads (gs > group) still ends after its predecessor */
  if (a.cnt) att_merge<T>(a, r, kvh, gbeg, gend);
}

/* the kernels: k_attn as measured (ptxas chose 168 registers for bf16 at head_dim 128; an explicit
 * minimum of blocks per multiprocessor, even 1, changes its choice), and k_attn_qp, QP at head_dim
 * <= 128 (16-byte loads), held to 3 blocks of 128 threads per multiprocessor in bf16 (168
 * registers, no spills; unbounded it took 227) */
template <typename T, bool VEC, int HD>
__global__ void __launch_bounds__(ATT_T) k_attn(att_args a) { attn_body<T, VEC, HD, false>(a); }
template <typename T>
__global__ void __launch_bounds__(ATT_T, sizeof(T) == 2 ? 3 : 1) k_attn_qp(att_args a) {
  attn_body<T, true, 128, true>(a);
}
/* k_attn_tc: k_attn_qp with the scores on the tensor cores (TC) in bf16 (168 registers, no
 * spills, at 3 blocks per multiprocessor as k_attn_qp), launched as k_attn_qp: the same
 * arguments, grid and ATT_T threads, head_dim % 16 == 0 and <= 128, rq or not. In f32 it is
 * k_attn_qp (mma takes bf16; an f32 cache would not be exact in it) */
template <typename T>
__global__ void __launch_bounds__(ATT_T, sizeof(T) == 2 ? 3 : 1) k_attn_tc(att_args a) {
  attn_body<T, true, 128, true, sizeof(T) == 2 ? 1 : 0>(a);
}
/* k_attn_tc2: k_attn_tc with P V on the tensor cores too (TC 2; bf16: 168 registers, no spills,
 * 36,580 bytes of shared memory), launched as k_attn_qp; in f32 it is k_attn_qp */
template <typename T>
__global__ void __launch_bounds__(ATT_T, sizeof(T) == 2 ? 3 : 1) k_attn_tc2(att_args a) {
  attn_body<T, true, 128, true, sizeof(T) == 2 ? 2 : 0>(a);
}

// out (A, H*hd) in T = merge of the nsplit partials. grid (H, A), hd threads (rounded to 32).
// One warp turns the splits' maxima and sums into weights w[s] = exp(pm[s] - M) and the total L
// (in shared memory), then every thread sums its dim over the splits with loads in flight.
template <typename T>
__global__ void k_attn_combine(const float *po, const float *pm, const float *pl, void *outv, int H, int hd,
                               int nsplit) {
  cu_pdl_wait();
  cu_pdl_trigger();
  __shared__ float w[ATT_MAXSPLIT];
  __shared__ float sL;
  T *out = (T *)outv;
  int h = blockIdx.x, r = blockIdx.y, d = threadIdx.x, lane = d & 31;
  size_t base = ((size_t)r * H + h) * nsplit;
  if (d < 32) {
    float M = -INFINITY;
    for (int s = lane; s < nsplit; s += 32) M = fmaxf(M, pm[base + s]);
    M = warp_max(M);
    float L = 0.f;
    for (int s = lane; s < nsplit; s += 32) {
      float l = pl[base + s], ws = l == 0.f ? 0.f : expf(pm[base + s] - M);
      w[s] = ws;
      L += l * ws;
    }
    L = warp_sum(L);
    if (lane == 0) sL = L;
  }
  __syncthreads();
  if (d >= hd) return;
  float L = sL, o = 0.f;
#pragma unroll 8
  for (int s = 0; s < nsplit; s++) o += po[(base + s) * hd + d] * w[s];
  out[(size_t)r * H * hd + (size_t)h * hd + d] = from_float<T>(L > 0.f ? o / L : 0.f);
}

#endif
