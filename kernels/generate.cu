/* generate.cu - cf_cuda_qwen2_generate: the KV-cache sampler of generate.h on the GPU.
 *
 * Contract: the same as the CPU sampler in core/nn/generate.c (prefill once per prompt, n samples
 * per prompt, stop tokens, per-token log-probs under log_softmax(logits / T), sample j of prompt
 * p drawing from the Philox stream keyed by (seed, p, j) and counted by step). Greedy decoding
 * picks the first maximum like the CPU; sampled tokens follow the same distribution, top-k/top-p
 * keep the same candidates (by logit, ties by id), and the draw walks them in the same (id)
 * order with the same uniform, so they agree with the CPU except where f32 rounding moves a
 * boundary.
 *
 * Weights: every matrix (embedding, projections, head) must be a contiguous CUDA tensor of one
 * dtype W, bf16 or f32; norms and biases may be f32 or bf16 (copied to f32 per call). Math is
 * f32: GEMMs are cublasGemmEx with W inputs, f32 outputs and f32 compute; the residual stream is
 * f32; GEMM inputs (norm outputs, attention output, SwiGLU output) are stored as W; the KV cache
 * is W. When q/k/v (and gate/up) are adjacent in memory - model_cuda.cu lays them out so - one
 * GEMM computes all three (both).
 *
 * Layout: K and V caches are [layer][slot][kv_head][capacity][head_dim]; slot nslots is a dummy
 * that padded rows write into. A prompt is prefilled once into the slot of its first sample; its
 * other samples do not copy it: every row carries (slot, pslot, plen) and attention reads
 * positions < plen from slot pslot, later ones from its own slot (the n samples share the
 * prompt's prefix in memory and in L2).
 *
 * Decode: one step = embed -> layers (rmsnorm, QKV GEMM, bias+RoPE+KV write (by default inside
 * the attention), split-K decode attention + combine, o_proj GEMM accumulating into the residual
 * (beta = 1), rmsnorm, gate/up GEMM, SwiGLU, down GEMM into the residual) -> final norm -> LM
 * head GEMM -> sampler (argmax, log-sum-exp, radix selection for top-k/top-p, the Philox draw,
 * the pick and its log-prob; it advances the row's token, position and step in device memory).
 * A step is captured once per batch bucket (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, ...) into a CUDA
 * graph with fixed pointers; active rows are compacted into the bucket's first rows and the rest
 * are padded (dummy slot). The host replays the graph up to KW times in a row, queuing the copy of
 * each step's (token, log-prob) pairs into pinned memory, then waits once, applies stops and
 * max_new_tokens, and re-compacts. Rows that finish inside a window compute a few discarded
 * tokens; the cache has KW spare positions for them.
 *
 * Prefill runs eagerly over chunks of prompt rows through the same layer code (each row attends
 * to 0..pos of its slot), then the first token of every sample is drawn from its prompt's last
 * row. Attention in prefill is per row (no tiling across rows): fine for prompts of a few hundred
 * tokens, quadratic in reads beyond that.
 *
 * Defaults, each kept because it measured fastest in the captured step (H200, 1.5B shape, batch
 * 16: 2.01 ms per step in the eleventh session, 2.04-2.06 in the thirteenth, 2.01 in the
 * twenty-first before the tensor-core attention and 1.78 with it; bench/README.md has every
 * figure and the opt-in switches that lost):
 *   - GEMMs on cuBLAS (cublasGemmEx). skinny.cu's tensor-core kernels with the norms and the
 *     SwiGLU folded in (CONFIT_GEN_MMA=1, =2 tuned) lost to it: 2.43 and 2.19 ms against 2.17.
 *   - Programmatic dependent launches on sm_90 and later (CONFIT_GEN_PDL=0 off): each kernel is
 *     resident and waiting when its predecessor ends. 2.12 ms against 2.20.
 *   - The decode attention does k_rope_kv's work (CONFIT_GEN_FUSE_ROPE=0 off; 2.07 against 2.12)
 *     and stages its queries in one pass (k_attn_qp; CONFIT_GEN_ATT_QPAIR=0 off; 2.05 against
 *     2.18).
 *   - Over a bf16 cache the decode attention's scores and P V are tensor-core products
 *     (k_attn_tc2; CONFIT_GEN_ATT_TC=2): 1.78 ms against 1.93 with the scores only (=1, k_attn_tc)
 *     and 2.01 with neither (=0, k_attn_qp); at a 2048-token prompt 2.06, 2.37 and 2.57 ms.
 *   - The sampler splits each row over about two blocks per multiprocessor (k_sample_split;
 *     CONFIT_GEN_SAMPLE_SPLIT=0 off; 2.01 against 2.05; untruncated sampling and greedy only).
 * cf_cuda_qwen2_generate reads every switch ("the decode switches") and says what each does;
 * tests/gpu/run.sh measures them as variants.
 * CONFIT_NO_GRAPH=1 replays the step eagerly instead of the graph.
 */
#include "kernels/cuda_internal.cuh"
#include <cublasLt.h>
#include <float.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "nn/generate.h"
#include "interrupt.h"
#include "profile.h"
}
#include "rope_freq.h"

#define GEN_KW 8          /* decode steps between host synchronisations */
#define GEN_MAX_PLANNED 16 /* decode buckets whose GEMMs are timed (CONFIT_GEN_LT) */
#define GEN_PREFILL 1024  /* prompt rows per prefill chunk */
#define GEN_SAMPLE_T 1024 /* threads of the sampler block */

/* ---------------------------------------------------------------- device helpers */

/* g_philox, g_draw (generate.c's draw) and gen_out; the samplers k_sample and k_sample_split */
#include "kernels/gen_sample.cuh"

/* ---------------------------------------------------------------- layer kernels */
/* Every kernel of the step calls cu_pdl_wait(); cu_pdl_trigger() before it touches what an earlier
 * kernel of the step writes (most of them first thing; k_rmsnorm, the attention and skinny.cu's
 * kernels load model weights or cached positions before): on sm_90 and later (unless
 * CONFIT_GEN_PDL=0) they are programmatic dependent launches (cuda_internal.cuh), so each is
 * resident and waiting when its predecessor ends and the launch gaps between the step's ~300
 * kernels shrink. */

// x is (A, D) f32: x[r] = emb[tok[r]]; emb is (V, D)
// with ss (the folded RMSNorm of CONFIT_GEN_MMA): also ss[r] = sum of x[r]^2 (r < 16)
template <typename T>
__global__ void k_embed(const void *embv, const int *tok, float *x, int D, float *ss) {
  cu_pdl_wait();
  cu_pdl_trigger();
  const T *emb = (const T *)embv;
  int r = blockIdx.x;
  const T *e = emb + (size_t)tok[r] * D;
  float q = 0.f;
  for (int j = threadIdx.x; j < D; j += blockDim.x) {
    float v = to_float(e[j]);
    x[(size_t)r * D + j] = v;
    q += v * v;
  }
  if (ss) {
    q = block_sum(q);
    if (threadIdx.x == 0) ss[r] = q;
  }
}

/* k_attn, k_attn_qp, k_attn_tc, k_attn_tc2, k_attn_combine; rope_lo / rope_hi */
#include "kernels/gen_attn.cuh"

// y (A, D) in T = x (A, D) f32 * rsqrt(mean(x^2) + eps) * w (D). With np > 0 the split-K
// partials of the GEMM before (CONFIT_GEN_SPLITK; parts[s] at s * pstride, (A, D) each) are added
// into x first, in order, and x is written back (each thread rereads only what it wrote).
// A thread's first RMS_REG elements stay in registers, their loads issued together (the norm
// weight's before the dependent-launch wait: it is no predecessor's output); elements past
// RMS_REG * blockDim (D > 4096 at 1024 threads) take the loop after.
#define RMS_REG 4
template <typename T>
__global__ void k_rmsnorm(float *x, const float *w, void *yv, int D, float eps, const float *parts, int np,
                          size_t pstride) {
  T *y = (T *)yv;
  int r = blockIdx.x, bd = blockDim.x, tid = threadIdx.x;
  float wv[RMS_REG], xv[RMS_REG];
#pragma unroll
  for (int k = 0; k < RMS_REG; k++)
    if (tid + k * bd < D) wv[k] = w[tid + k * bd];
  cu_pdl_wait();
  cu_pdl_trigger();
  float *xr = x + (size_t)r * D;
  const float *pr = np > 0 ? parts + (size_t)r * D : NULL;
#pragma unroll
  for (int k = 0; k < RMS_REG; k++)
    if (tid + k * bd < D) xv[k] = xr[tid + k * bd];
  for (int q = 0; q < np; q++)
#pragma unroll
    for (int k = 0; k < RMS_REG; k++)
      if (tid + k * bd < D) xv[k] += pr[(size_t)q * pstride + tid + k * bd];
  float ss = 0;
#pragma unroll
  for (int k = 0; k < RMS_REG; k++)
    if (tid + k * bd < D) {
      if (np > 0) xr[tid + k * bd] = xv[k];
      ss += xv[k] * xv[k];
    }
  for (int j = tid + RMS_REG * bd; j < D; j += bd) {
    float v = xr[j];
    for (int q = 0; q < np; q++) v += pr[(size_t)q * pstride + j];
    if (np > 0) xr[j] = v;
    ss += v * v;
  }
  ss = block_sum(ss);
  float inv = 1.0f / sqrtf(ss / D + eps);
#pragma unroll
  for (int k = 0; k < RMS_REG; k++)
    if (tid + k * bd < D) y[(size_t)r * D + tid + k * bd] = from_float<T>(xv[k] * inv * wv[k]);
  for (int j = tid + RMS_REG * bd; j < D; j += bd) y[(size_t)r * D + j] = from_float<T>(xr[j] * inv * w[j]);
}

/* qkv (A, ld) f32 holds q | k | v of each row. Adds the biases, rotates q and k at pos[r] (rope_lo,
 * rope_hi of gen_attn.cuh)
 * (rotate-half, cos/sin tables (cap, hd/2)), writes q to qo (A, H*hd) f32 and k, v into the
 * caches (slot, kv_head, pos). */
template <typename T>
__global__ void k_rope_kv(const float *qkv, int ld, const float *bq, const float *bk, const float *bv,
                          const float *cos_t, const float *sin_t, const int *pos, const int *slot,
                          float *qo, void *kcv, void *vcv, int H, int KVH, int hd, int cap) {
  cu_pdl_wait();
  cu_pdl_trigger();
  T *kc = (T *)kcv, *vc = (T *)vcv;
  int r = blockIdx.x;
  int h2 = hd / 2, Q = H * hd, KV = KVH * hd;
  int p = pos[r];
  size_t sl = (size_t)slot[r];
  const float *row = qkv + (size_t)r * ld;
  int nrot = (H + KVH) * h2;
  for (int idx = threadIdx.x; idx < nrot + KV; idx += blockDim.x) {
    if (idx < nrot) {
      int head = idx / h2, i = idx % h2;
      float c = cos_t[(size_t)p * h2 + i], s = sin_t[(size_t)p * h2 + i];
      if (head < H) {
        int o = head * hd + i;
        float a = row[o] + (bq ? bq[o] : 0.f), b = row[o + h2] + (bq ? bq[o + h2] : 0.f);
        qo[(size_t)r * Q + o] = rope_lo(a, b, c, s);
        qo[(size_t)r * Q + o + h2] = rope_hi(a, b, c, s);
      } else {
        int kh = head - H, o = kh * hd + i;
        float a = row[Q + o] + (bk ? bk[o] : 0.f), b = row[Q + o + h2] + (bk ? bk[o + h2] : 0.f);
        T *dst = kc + ((sl * KVH + kh) * cap + p) * hd;
        dst[i] = from_float<T>(rope_lo(a, b, c, s));
        dst[i + h2] = from_float<T>(rope_hi(a, b, c, s));
      }
    } else {
      int j = idx - nrot, kh = j / hd, d = j % hd;
      float v = row[Q + KV + j] + (bv ? bv[j] : 0.f);
      vc[((sl * KVH + kh) * cap + p) * hd + d] = from_float<T>(v);
    }
  }
}


// out (A, F) in T = silu(gu[:, :F]) * gu[:, F:]; gu (A, 2F) f32
template <typename T>
__global__ void k_swiglu(const float *gu, void *outv, int F, int64_t n) {
  cu_pdl_wait();
  cu_pdl_trigger();
  T *out = (T *)outv;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    int64_t r = i / F, j = i % F;
    float z = gu[r * 2 * F + j], u = gu[r * 2 * F + F + j];
    out[i] = from_float<T>(z / (1.0f + expf(-z)) * u);
  }
}

/* ---------------------------------------------------------------- host side */

/* The error for sampler output tok that is no token: GEN_BAD_* (gen_sample.cuh) worded as
 * generate.c words it, for token ntok + 1 of slot i (sample i % n + 1 of prompt i / n + 1). */
static int gen_bad_token(int tok, int ntok, int i, int n) {
  const char *why = tok == GEN_BAD_NONFINITE     ? "a logit is NaN or +inf"
                    : tok == GEN_BAD_ALL_NEG_INF ? "every logit is -inf"
                                                 : NULL;
  if (why)
    return CF_ERR("generate: token %d of sample %d (prompt %d): non-finite logits: %s", ntok + 1, i % n + 1,
                  i / n + 1, why);
  return CF_ERR("generate (CUDA): sampler returned token %d", tok);
}

/* The generator's own cuBLAS handle on confit's stream, with a fixed workspace so that GEMMs
 * can be captured into graphs; pure f32 compute (no TF32) whatever cf_cuda_set_tf32 says. */
static cublasHandle_t g_gen_blas;
static void *g_gen_ws;
#define GEN_WS_BYTES ((size_t)32 << 20)

static int gen_blas(cublasHandle_t *out) {
  if (!g_gen_blas) {
    cublasHandle_t h;
    if (cu_blas_check(cublasCreate(&h), "generate: cuBLAS")) return -1;
    void *ws = NULL;
    if (cu_check(cudaMalloc(&ws, GEN_WS_BYTES), "generate: cuBLAS workspace")) { cublasDestroy(h); return -1; }
    g_gen_blas = h;
    g_gen_ws = ws;
  }
  /* setting the stream resets the workspace: set both every call */
  if (cu_blas_check(cublasSetStream(g_gen_blas, cu_stream()), "generate: cuBLAS stream") ||
      cu_blas_check(cublasSetWorkspace(g_gen_blas, g_gen_ws, GEN_WS_BYTES), "generate: cuBLAS workspace") ||
      cu_blas_check(cublasSetPointerMode(g_gen_blas, CUBLAS_POINTER_MODE_HOST), "generate: cuBLAS") ||
      cu_blas_check(cublasSetMathMode(g_gen_blas, CUBLAS_DEFAULT_MATH), "generate: cuBLAS"))
    return -1;
  *out = g_gen_blas;
  return 0;
}

struct gen_layer {
  const void *qw, *kw, *vw, *ow, *gw, *uw, *dw;
  bool qkv_fused, gu_fused;
  float *in_norm, *post_norm, *bq, *bk, *bv;
};

struct gen_rows {  /* device row state, R entries each */
  int *tok, *pos, *step, *slot, *pslot, *plen, *lrow;
  unsigned long long *key;
};

#define GEN_MAX_ALLOCS 48 /* device buffers of one engine (gen_alloc) */

/* A timed GEMM plan for one decode shape (CONFIT_GEN_LT; see plan_shape) */
struct gen_plan {
  int A, in, out, ldx, ldy;
  bool acc;                 /* beta = 1 */
  bool lt;                  /* use cublasLt with algo (else cublasGemmEx) */
  uint32_t al_w, al_x, al_y; /* the pointer alignments (bytes) algo was chosen for */
  cublasLtMatmulDesc_t op;
  cublasLtMatrixLayout_t la, lb, lc;
  cublasLtMatmulAlgo_t algo;
};
static void plan_destroy(gen_plan *p);

struct gen_engine {
  const cf_qwen2 *m;
  int D, F, H, KVH, hd, V, Q, KV, L;
  bool bf;
  bool mma;             /* bf16 and CONFIT_GEN_MMA=1: skinny.cu for GEMMs of <= 16 rows */
  bool pdl;             /* the step's kernels as programmatic dependent launches (sm_90 on; CONFIT_GEN_PDL) */
  int att_gs;           /* attention blocks per kv head (CONFIT_GEN_ATT_GS, default 1) */
  bool att_merge;       /* the attention merges its splits itself (CONFIT_GEN_ATT_MERGE=1) */
  bool att_qpair;       /* the fused attention stages its queries in one pass (CONFIT_GEN_ATT_QPAIR, default 1) */
  int att_tc;           /* and, over a bf16 cache, on the tensor cores: 1 its scores, 2 also P V (CONFIT_GEN_ATT_TC) */
  int att_splits;       /* at most this many attention splits per row (CONFIT_GEN_ATT_SPLITS; 0: as att_split chooses) */
  int splitk;           /* CONFIT_GEN_SPLITK: parts of K for the decode qkv, o_proj, down GEMMs (gen_add_x) */
  float *skp;           /* their partials, splitk x gen_splitk_rows x max(D, Q + 2 KV) f32 */
  int pend;             /* partials in skp that the next k_rmsnorm adds into x (0: none) */
  int qnp;              /* partials of q|k|v in skp that the attention adds (0: q|k|v in qkv) */
  int *att_cnt;         /* its ticket counters, Bmax x KVH x group, zero between launches */
  bool rq;              /* decode attention does bias + RoPE + the cache write (no k_rope_kv): the
                           default; CONFIT_GEN_FUSE_ROPE=0 turns it off */
  cf_skinny_opts mma_opts; /* CONFIT_GEN_MMA_NT, _KSB, _MINB, _WIDE (0: skinny.cu's defaults) */
  bool mma_tune;        /* CONFIT_GEN_MMA=2: each decode bucket's GEMM kinds timed in a few launch
                           shapes first, the fastest kept (gen_tune) */
  struct gen_tuned *tuned;
  int ntuned;
  cf_skinny_ws mma_ws;  /* its split-K workspace */
  float *ss;            /* folded RMSNorm: per-row partial sums of squares of x, [ss_cap][16] */
  int ss_cap, ss_groups; /* partials it holds; partials the last writer of x left */
  const char *knockout; /* CONFIT_GEN_KNOCKOUT: stages left out of the step (timing only) */
  int lt_mode;          /* CONFIT_GEN_LT: 0 off, 1 timed cublasLt plans, 2 and print them */
  struct gen_plan *plan; /* GEMM plans of the decode shapes (CONFIT_GEN_LT), nplan of them */
  int nplan;
  int planned[GEN_MAX_PLANNED]; /* decode buckets already planned */
  int nplanned;
  float *lt_out;        /* scratch output for timing plans (Bmax x scratch_cols f32; also CONFIT_GEN_MMA=2) */
  cudaDataType_t wt;
  cublasHandle_t blas;
  cudaStream_t st;
  int nslots, cap;      /* slots (the dummy slot is nslots) and positions per slot */
  int R, Bmax;          /* rows of the scratch buffers; largest decode bucket */
  gen_layer *layer;
  float *final_norm;
  const void *embed, *head;
  float *small;         /* f32 copies of norms and biases */
  float *cos_t, *sin_t;
  void *kc, *vc;        /* [L][nslots+1][KVH][cap][hd] of W */
  float *x, *qkv, *qr, *gu, *logits, *po, *pm, *pl;
  void *h, *att, *act;  /* GEMM inputs in W */
  gen_rows rows;
  void *rows_mem;
  gen_out *out;
  float score_t;        /* score_temperature as a float (0: none); k_score writes score (Bmax doubles) */
  double *score;
  int smp_split;        /* CONFIT_GEN_SAMPLE_SPLIT: 0 k_sample, 1 (default) k_sample_split with S chosen, 2.. S */
  int sms;              /* multiprocessors */
  smp_part *smp_part;   /* k_sample_split's segment summaries (Bmax x SMP_MAXS) and tickets (Bmax) */
  int *smp_cnt;
  /* pinned host staging */
  void *pin;
  size_t pin_bytes;
  /* device allocations to free */
  void *allocs[GEN_MAX_ALLOCS];
  size_t alloc_n[GEN_MAX_ALLOCS];
  int nallocs;
  int prof;             /* the open profiler stage (profile.h), -1 when none */
};

/* Profiled stages: with the profiler running the step is replayed eagerly (no graph) and every
 * launch below is its own region, so the rows give each stage's device time. */
#define STAGE(name) cf_prof_next(&e->prof, (name))
/* CONFIT_GEN_KNOCKOUT=attention,gate_up,... leaves those stages out of every step: the tokens are
 * garbage, but the step time without a stage shows its cost inside the CUDA graph (no profiler
 * can split a graph replay here: the GPU machines have no Nsight). Names: rmsnorm qkv rope_kv
 * attention combine o_proj gate_up swiglu down lm_head sample. With CONFIT_GEN_SPLITK, leaving
 * out rmsnorm leaves every GEMM after the first o_proj unsplit (its partials are never taken). */
#define KEEP(name) (!e->knockout || !strstr(e->knockout, (name)))

/* An integer switch from the environment: def when unset; an error naming it when it is not an
 * integer in lo..hi. */
static int env_int(const char *name, int def, int lo, int hi, int *out) {
  const char *v = getenv(name);
  *out = def;
  if (!v || !*v) return 0;
  char *end;
  long x = strtol(v, &end, 10);
  if (*end || x < lo || x > hi)
    return CF_ERR("generate: %s must be an integer from %d to %d (got \"%s\")", name, lo, hi, v);
  *out = (int)x;
  return 0;
}

static void *gen_alloc(gen_engine *e, size_t n, const char *what) {
  if (e->nallocs >= GEN_MAX_ALLOCS) { CF_ERR("generate: too many buffers"); return NULL; }
  void *p = cf_cuda_alloc(n ? n : 16);
  if (!p) { cf_error_prefix("generate: %s: ", what); return NULL; }
  e->allocs[e->nallocs] = p;
  e->alloc_n[e->nallocs] = n ? n : 16;
  e->nallocs++;
  return p;
}

static void gen_release(gen_engine *e) {
  STAGE(NULL);
  if (e->st) cudaStreamSynchronize(e->st);
  cudaGetLastError();
  for (int i = 0; i < e->nplan; i++) plan_destroy(&e->plan[i]);
  free(e->plan);
  e->plan = NULL;
  e->nplan = 0;
  for (int i = 0; i < e->nallocs; i++) cf_cuda_free(e->allocs[i], e->alloc_n[i]);
  e->nallocs = 0;
  cf_cuda_skinny_ws_free(&e->mma_ws);
  free(e->tuned);
  e->tuned = NULL;
  e->ntuned = 0;
  if (e->pin) cudaFreeHost(e->pin);
  e->pin = NULL;
  free(e->layer);
  e->layer = NULL;
}

static size_t wsize(const gen_engine *e) { return e->bf ? 2 : 4; }

/* ---------------------------------------------------------------- timed GEMM plans (opt-in)
 *
 * CONFIT_GEN_LT=1: before a decode bucket's step is captured, every GEMM shape of the step
 * (qkv, o_proj, gate/up, down, LM head at Bp rows) is timed on the engine's own buffers, walking
 * the layers' weights in a CUDA graph as the step does (plan_shape), with cublasGemmEx (the
 * default path) and with each of up to GEN_LT_ALGOS algorithms cublasLt's heuristic proposes
 * (split-K among them, which skinny decode GEMMs may like); the fastest wins
 * and gen_gemm uses it for that shape from then on (captured into the graph: the workspace is
 * the fixed one of gen_blas). Never slower than the default by more than the timing noise; the
 * chosen algorithm may sum in another order, so results can differ from the default path in the
 * last bits. CONFIT_GEN_LT=2 also prints each plan on stderr. */
#define GEN_LT_ALGOS 8
#define GEN_MAX_PLANS 64
static cublasLtHandle_t g_gen_lt;

static gen_plan *plan_find(gen_engine *e, int A, int in, int out, int ldx, int ldy, bool acc) {
  for (int i = 0; i < e->nplan; i++) {
    gen_plan *p = &e->plan[i];
    if (p->A == A && p->in == in && p->out == out && p->ldx == ldx && p->ldy == ldy && p->acc == acc) return p;
  }
  return NULL;
}

static void plan_destroy(gen_plan *p) {
  if (p->lc) cublasLtMatrixLayoutDestroy(p->lc);
  if (p->lb) cublasLtMatrixLayoutDestroy(p->lb);
  if (p->la) cublasLtMatrixLayoutDestroy(p->la);
  if (p->op) cublasLtMatmulDescDestroy(p->op);
  memset(p, 0, sizeof *p);
}

/* the largest power of two, at most 256, that divides p's address */
static uint32_t ptr_align(const void *p) {
  uintptr_t v = (uintptr_t)p;
  uint32_t a = 256;
  while (a > 1 && v % a) a >>= 1;
  return a;
}

static int lt_check(cublasStatus_t st, const char *what) {
  return st == CUBLAS_STATUS_SUCCESS ? 0 : CF_ERR("generate: cublasLt %s failed (status %d)", what, (int)st);
}

/* Mean microseconds of one of `reps` launches queued by launch(i) (true when queued), captured
 * in one CUDA graph and replayed once warm; < 0 when anything failed (the error is cleared). */
template <typename F>
static float graph_time(gen_engine *e, int reps, F launch, cudaEvent_t ev0, cudaEvent_t ev1) {
  cudaGraph_t g = NULL;
  cudaGraphExec_t ge = NULL;
  if (cudaStreamBeginCapture(e->st, cudaStreamCaptureModeThreadLocal) != cudaSuccess) return -1.f;
  bool ok = true;
  for (int i = 0; i < reps && ok; i++) ok = launch(i);
  cudaError_t ce = cudaStreamEndCapture(e->st, &g);
  float ms = -1.f;
  if (ok && ce == cudaSuccess && cudaGraphInstantiate(&ge, g, 0) == cudaSuccess &&
      cudaGraphLaunch(ge, e->st) == cudaSuccess && cudaEventRecord(ev0, e->st) == cudaSuccess &&
      cudaGraphLaunch(ge, e->st) == cudaSuccess && cudaEventRecord(ev1, e->st) == cudaSuccess &&
      cudaEventSynchronize(ev1) == cudaSuccess && cudaEventElapsedTime(&ms, ev0, ev1) == cudaSuccess)
    ms = 1000.f * ms / reps;
  else
    ms = -1.f;
  if (ge) cudaGraphExecDestroy(ge);
  if (g) cudaGraphDestroy(g);
  cudaGetLastError();
  cf_error_clear();
  return ms;
}

/* cublasLt's description of plan p's shape (op, la, lb, lc) */
static int plan_layouts(gen_engine *e, gen_plan *p) {
  cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
  return lt_check(cublasLtMatmulDescCreate(&p->op, CUBLAS_COMPUTE_32F, CUDA_R_32F), "descriptor") ||
         lt_check(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta), "descriptor") ||
         lt_check(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb), "descriptor") ||
         lt_check(cublasLtMatrixLayoutCreate(&p->la, e->wt, p->in, p->out, p->in), "layout") ||
         lt_check(cublasLtMatrixLayoutCreate(&p->lb, e->wt, p->in, p->A, p->ldx), "layout") ||
         lt_check(cublasLtMatrixLayoutCreate(&p->lc, CUDA_R_32F, p->out, p->A, p->ldy), "layout");
}

/* Plans outlive the call (a process-wide table of shape -> choice; guarded): a benchmark's timed
 * calls then do not pay for the timing its warm-up did. The weight dtype is part of the shape. */
#define GEN_PLAN_CACHE 128
static struct { gen_plan p; cudaDataType_t wt; } g_plan_cache[GEN_PLAN_CACHE];
static int g_nplan_cache;
static pthread_mutex_t g_plan_lock = PTHREAD_MUTEX_INITIALIZER;

static bool plan_cached(const gen_plan *q, cudaDataType_t wt, gen_plan *out) {
  bool hit = false;
  pthread_mutex_lock(&g_plan_lock);
  for (int i = 0; i < g_nplan_cache && !hit; i++) {
    const gen_plan *c = &g_plan_cache[i].p;
    if (g_plan_cache[i].wt == wt && c->A == q->A && c->in == q->in && c->out == q->out && c->ldx == q->ldx &&
        c->ldy == q->ldy && c->acc == q->acc) {
      *out = *c;
      hit = true;
    }
  }
  pthread_mutex_unlock(&g_plan_lock);
  return hit;
}

static void plan_remember(const gen_plan *p, cudaDataType_t wt) {
  pthread_mutex_lock(&g_plan_lock);
  if (g_nplan_cache < GEN_PLAN_CACHE) {
    gen_plan *c = &g_plan_cache[g_nplan_cache].p;
    memset(c, 0, sizeof *c);
    c->A = p->A; c->in = p->in; c->out = p->out; c->ldx = p->ldx; c->ldy = p->ldy; c->acc = p->acc;
    c->lt = p->lt;
    c->algo = p->algo;
    c->al_w = p->al_w; c->al_x = p->al_x; c->al_y = p->al_y;
    g_plan_cache[g_nplan_cache].wt = wt;
    g_nplan_cache++;
  }
  pthread_mutex_unlock(&g_plan_lock);
}

/* Columns of e->lt_out, which stands in for every GEMM output of a step (plan_shape, tune_job):
 * the widest row of them. The vocabulary alone is not enough: a small model's gate/up (2F) or
 * q|k|v row can be wider, and timing it wrote past the scratch (NaN log-probs on an H200). */
static size_t scratch_cols(const gen_engine *e) {
  size_t c = (size_t)e->V;
  size_t w[4] = {(size_t)e->D, (size_t)e->Q + 2 * (size_t)e->KV, 2 * (size_t)e->F, (size_t)e->Q};
  for (int i = 0; i < 4; i++) if (w[i] > c) c = w[i];
  return c;
}

/* Times the shape Y (A, ldy) [+]= X (A, in; ldx) @ W (out, in)^T and records the fastest way. W
 * is each layer's field wf (or W0 when wf is NULL: the head): every way is timed as the step runs
 * it, 2L launches walking the layers' weights in one CUDA graph, so no weight is in L2 from its
 * last use (timed on one weight over and over, the small ones sat in L2: cublasLt won every shape
 * alone and nothing in the step, H200 2026-11-26). */
static int plan_shape(gen_engine *e, const void *gen_layer::*wf, const void *W0, const void *X, int ldx, int ldy,
                      int A, int in, int out, bool acc, const char *name) {
  if (plan_find(e, A, in, out, ldx, ldy, acc)) return 0;
  if (e->nplan >= GEN_MAX_PLANS) return 0; /* the rest keep the default path */
  gen_plan *p = &e->plan[e->nplan];
  memset(p, 0, sizeof *p);
  p->A = A; p->in = in; p->out = out; p->ldx = ldx; p->ldy = ldy; p->acc = acc;
  {
    /* timed by an earlier call: its choice, without timing again */
    gen_plan c;
    memset(&c, 0, sizeof c);
    if (plan_cached(p, e->wt, &c)) {
      if (c.lt && plan_layouts(e, p) == 0) {
        p->lt = true;
        p->algo = c.algo;
        p->al_w = c.al_w; p->al_x = c.al_x; p->al_y = c.al_y;
      } else if (c.lt) {
        cf_error_clear();
        plan_destroy(p);
        p->A = A; p->in = in; p->out = out; p->ldx = ldx; p->ldy = ldy; p->acc = acc;
      }
      e->nplan++;
      return 0;
    }
  }
  float alpha = 1.f, beta = acc ? 1.f : 0.f;
  float *Y = e->lt_out;
  auto Wl = [&](int i) { return wf ? e->layer[i % e->L].*wf : W0; };
  cudaEvent_t ev0 = NULL, ev1 = NULL;
  if (cu_check(cudaEventCreate(&ev0), "generate: plan timing") || cu_check(cudaEventCreate(&ev1), "generate: plan timing")) {
    if (ev0) cudaEventDestroy(ev0);
    return -1;
  }
  float best = graph_time(e, 2 * e->L, [&](int i) {
    return cublasGemmEx(e->blas, CUBLAS_OP_T, CUBLAS_OP_N, out, A, in, &alpha, Wl(i), e->wt, in, X, e->wt, ldx, &beta,
                        Y, CUDA_R_32F, ldy, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_SUCCESS;
  }, ev0, ev1);
  float t_default = best;
  int rc = best < 0.f; /* the default path cannot be timed: it stays, untimed */
  size_t wsb = GEN_WS_BYTES;
  /* the heuristic assumes 256-byte aligned pointers unless told: tell it those of the timed call;
   * gen_gemm keeps the default path for a call whose pointers are less aligned (k_proj and v_proj
   * share a shape, a layer's weights may sit at other offsets) */
  p->al_w = 256;
  for (int l = 0; l < e->L; l++) p->al_w = ptr_align(Wl(l)) < p->al_w ? ptr_align(Wl(l)) : p->al_w;
  p->al_x = ptr_align(X); p->al_y = ptr_align(Y);
  cublasLtMatmulPreference_t pref = NULL;
  cublasLtMatmulHeuristicResult_t res[GEN_LT_ALGOS];
  int nres = 0;
  rc = rc || plan_layouts(e, p) ||
       lt_check(cublasLtMatmulPreferenceCreate(&pref), "preference") ||
       lt_check(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsb,
                                                     sizeof wsb), "preference") ||
       lt_check(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &p->al_w,
                                                     sizeof p->al_w), "preference") ||
       lt_check(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &p->al_x,
                                                     sizeof p->al_x), "preference") ||
       lt_check(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &p->al_y,
                                                     sizeof p->al_y), "preference") ||
       lt_check(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &p->al_y,
                                                     sizeof p->al_y), "preference");
  /* no algorithm (an unsupported combination) is not an error: the default path stays */
  if (rc == 0 &&
      cublasLtMatmulAlgoGetHeuristic(g_gen_lt, p->op, p->la, p->lb, p->lc, p->lc, pref, GEN_LT_ALGOS, res, &nres) !=
          CUBLAS_STATUS_SUCCESS)
    nres = 0;
  if (pref) cublasLtMatmulPreferenceDestroy(pref);
  int chosen = -1;
  for (int i = 0; i < nres && rc == 0; i++) {
    if (res[i].state != CUBLAS_STATUS_SUCCESS || res[i].workspaceSize > wsb) continue;
    float us = graph_time(e, 2 * e->L, [&](int k) {
      return cublasLtMatmul(g_gen_lt, p->op, &alpha, Wl(k), p->la, X, p->lb, &beta, Y, p->lc, Y, p->lc, &res[i].algo,
                            g_gen_ws, wsb, e->st) == CUBLAS_STATUS_SUCCESS;
    }, ev0, ev1);
    if (us < 0.f) continue; /* an algorithm that fails is skipped (graph_time cleared the error) */
    if (us < best) { best = us; chosen = i; }
  }
  if (rc) cf_error_clear(); /* cublasLt could not describe the shape: the default path stays */
  if (rc == 0 && chosen >= 0) {
    p->lt = true;
    p->algo = res[chosen].algo;
  } else {
    plan_destroy(p);
    p->A = A; p->in = in; p->out = out; p->ldx = ldx; p->ldy = ldy; p->acc = acc;
  }
  cudaEventDestroy(ev0);
  cudaEventDestroy(ev1);
  e->nplan++;
  plan_remember(p, e->wt);
  if (e->lt_mode >= 2)
    fprintf(stderr, "confit generate: plan %-10s rows %d, in %d, out %d: cublasGemmEx %.1f us, %s %.1f us\n", name,
            A, in, out, t_default, chosen >= 0 ? "cublasLt" : "kept", best);
  return 0;
}

/* Plans every GEMM shape of a decode step at Bp rows (before the step is captured). */
static int gen_plan_bucket(gen_engine *e, int Bp) {
  for (int i = 0; i < e->nplanned; i++) if (e->planned[i] == Bp) return 0;
  if (e->nplanned >= GEN_MAX_PLANNED) return 0;
  if (!g_gen_lt && lt_check(cublasLtCreate(&g_gen_lt), "handle")) return -1;
  int D = e->D, F = e->F, Q = e->Q, KV = e->KV, ld = Q + 2 * KV;
  const gen_layer *Ly = &e->layer[0];
  int rc = 0;
  if (Ly->qkv_fused) rc = plan_shape(e, &gen_layer::qw, NULL, e->h, D, ld, Bp, D, ld, false, "qkv");
  else rc = plan_shape(e, &gen_layer::qw, NULL, e->h, D, ld, Bp, D, Q, false, "q_proj") ||
            plan_shape(e, &gen_layer::kw, NULL, e->h, D, ld, Bp, D, KV, false, "k/v_proj");
  if (rc == 0) rc = plan_shape(e, &gen_layer::ow, NULL, e->att, Q, D, Bp, Q, D, true, "o_proj");
  if (rc == 0) rc = Ly->gu_fused ? plan_shape(e, &gen_layer::gw, NULL, e->h, D, 2 * F, Bp, D, 2 * F, false, "gate/up")
                                 : plan_shape(e, &gen_layer::gw, NULL, e->h, D, 2 * F, Bp, D, F, false, "gate|up");
  if (rc == 0) rc = plan_shape(e, &gen_layer::dw, NULL, e->act, F, D, Bp, F, D, true, "down");
  if (rc == 0) rc = plan_shape(e, NULL, e->head, e->h, e->D, e->V, Bp, e->D, e->V, false, "lm_head");
  if (rc == 0) e->planned[e->nplanned++] = Bp;
  return rc;
}

/* A job for skinny.cu: Y (A, ldy) f32 = X (A, in; ldx) @ W (out, in)^T + beta Y */
static cf_skinny_job sk_job(const void *W, const void *X, int ldx, float *Y, int ldy, int A, int in, int out,
                            float beta) {
  cf_skinny_job j;
  memset(&j, 0, sizeof j);
  j.W = W; j.X = X; j.ldx = ldx; j.Y = Y; j.ldy = ldy; j.A = A; j.in = in; j.out = out; j.beta = beta;
  return j;
}

/* The GEMM kinds of a folded decode step, each tuned on its own (CONFIT_GEN_MMA=2) */
enum { GK_QKV, GK_OPROJ, GK_GATEUP, GK_DOWN, GK_HEAD, GK_OTHER, GK_N };
static const char *const gk_name[GK_N] = {"qkv", "o_proj", "gate/up", "down", "lm_head", "other"};
struct gen_tuned { int A; cf_skinny_opts o[GK_N]; int att_gs; bool att_merge; };

/* the launch options of a job of kind k over A rows: tuned, else the environment's */
static const cf_skinny_opts *gen_opts(const gen_engine *e, int A, int k) {
  for (int i = 0; i < e->ntuned; i++)
    if (e->tuned[i].A == A) return &e->tuned[i].o[k];
  return &e->mma_opts;
}

static int gen_skinny(gen_engine *e, const cf_skinny_job *j, int kind, const char *what) {
  if (cf_cuda_skinny_run(j, gen_opts(e, j->A, kind), &e->mma_ws, e->st)) return cf_error_prefix("%s: ", what);
  return 0;
}

/* Folded RMSNorm (CONFIT_GEN_MMA, <= 16 rows): the GEMM that reads a norm's output reads the
 * residual stream x (f32) instead and normalises it on load, from per-row partial sums of squares
 * that the kernel writing x left in e->ss (k_embed, then the o_proj and down GEMMs, e->ss_groups
 * partials). The job reading normalised x with norm weight g: */
static cf_skinny_job sk_norm_job(const gen_engine *e, const void *W, const float *g, float *Y, int ldy, int A, int out) {
  cf_skinny_job j = sk_job(W, NULL, e->D, Y, ldy, A, e->D, out, 0.f);
  j.xf = e->x; j.gnorm = g; j.ss_in = e->ss; j.ss_groups = e->ss_groups; j.eps = (float)e->m->cfg.rms_eps;
  return j;
}
/* ... and a GEMM adding into x (beta 1) that leaves the sums of squares of the new x */
static cf_skinny_job sk_resid_job(const gen_engine *e, const void *W, const void *X, int ldx, int A, int in) {
  cf_skinny_job j = sk_job(W, X, ldx, e->x, e->D, A, in, e->D, 1.f);
  j.ss_out = e->ss;
  return j;
}
/* launches a residual job and records how many partial sums it leaves */
static int gen_resid(gen_engine *e, const cf_skinny_job *j, int kind, const char *what) {
  int nt, ksb, grid;
  cf_cuda_skinny_plan(j, gen_opts(e, j->A, kind), &e->mma_ws, &nt, &ksb, &grid);
  if (gen_skinny(e, j, kind, what)) return -1;
  e->ss_groups = grid;
  return 0;
}

/* Whether a step of A rows runs with its norms folded: every GEMM of every layer and the head
 * qualifies for skinny.cu in its folded form (shapes, alignment of weights and norms) and the
 * partial sums fit e->ss. Host-side checks only (at capture, not per replay). */
static bool gen_fold(gen_engine *e, int A) {
  if (!e->mma || !e->ss || A > 16) return false;
  int F = e->F, Q = e->Q, KV = e->KV, ld = Q + 2 * KV;
  e->ss_groups = 1;
  for (int l = 0; l <= e->L; l++) {
    cf_skinny_job j[6];
    int n = 0;
    if (l == e->L) { /* the head, after the final norm */
      j[n++] = sk_norm_job(e, e->head, e->final_norm, e->logits, e->V, A, e->V);
    } else {
      const gen_layer *Ly = &e->layer[l];
      if (Ly->qkv_fused) j[n++] = sk_norm_job(e, Ly->qw, Ly->in_norm, e->qkv, ld, A, ld);
      else {
        j[n++] = sk_norm_job(e, Ly->qw, Ly->in_norm, e->qkv, ld, A, Q);
        j[n++] = sk_norm_job(e, Ly->kw, Ly->in_norm, e->qkv + Q, ld, A, KV);
        j[n++] = sk_norm_job(e, Ly->vw, Ly->in_norm, e->qkv + Q + KV, ld, A, KV);
      }
      j[n++] = sk_resid_job(e, Ly->ow, e->att, Q, A, Q);
      if (Ly->gu_fused) {
        j[n] = sk_norm_job(e, Ly->gw, Ly->post_norm, NULL, 0, A, 2 * F);
        j[n].swiglu = true;
        j[n].act = e->act;
        n++;
      } else {
        j[n++] = sk_norm_job(e, Ly->gw, Ly->post_norm, e->gu, 2 * F, A, F);
        j[n++] = sk_norm_job(e, Ly->uw, Ly->post_norm, e->gu + F, 2 * F, A, F);
      }
      j[n++] = sk_resid_job(e, Ly->dw, e->act, F, A, F);
    }
    for (int i = 0; i < n; i++) {
      if (!cf_cuda_skinny_ok(&j[i])) return false;
      int nt, ksb, grid;
      cf_cuda_skinny_plan(&j[i], &e->mma_opts, &e->mma_ws, &nt, &ksb, &grid);
      if (j[i].ss_out && grid > e->ss_cap) return false;
    }
  }
  return true;
}

/* CONFIT_GEN_MMA=2: before a decode bucket of A rows is captured, each GEMM kind of the folded
 * step is timed in a few launch shapes (tiles per block, K split, register bound) and the fastest
 * kept for that bucket (and for later calls with the same shapes: g_tune_cache). Each time is the mean of 2L launches in one CUDA graph walking the layers'
 * weights (as a step does: none is in L2 from its last use), written into scratch (e->lt_out) and
 * e->ss, which the step itself rewrites before reading. A kind whose shapes all fail keeps the
 * default. Prints the choices on stderr. */
static bool tune_job(gen_engine *e, int k, int l, int A, cf_skinny_job *j) {
  const gen_layer *Ly = &e->layer[l];
  int F = e->F, Q = e->Q, KV = e->KV, ld = Q + 2 * KV;
  float *S = e->lt_out;
  e->ss_groups = 1;
  switch (k) {
    case GK_QKV:
      if (!Ly->qkv_fused) return false;
      *j = sk_norm_job(e, Ly->qw, Ly->in_norm, S, ld, A, ld);
      break;
    case GK_OPROJ: *j = sk_resid_job(e, Ly->ow, e->att, Q, A, Q); j->Y = S; break;
    case GK_GATEUP:
      if (!Ly->gu_fused) return false;
      *j = sk_norm_job(e, Ly->gw, Ly->post_norm, NULL, 0, A, 2 * F);
      j->swiglu = true;
      j->act = S;
      break;
    case GK_DOWN: *j = sk_resid_job(e, Ly->dw, e->act, F, A, F); j->Y = S; break;
    case GK_HEAD: *j = sk_norm_job(e, e->head, e->final_norm, S, e->V, A, e->V); break;
    default: return false;
  }
  return cf_cuda_skinny_ok(j);
}

/* one launch of GEMM kind k with options o, 2L of them walking the layers */
static float tune_time(gen_engine *e, int k, int A, const cf_skinny_opts *o, cudaEvent_t ev0, cudaEvent_t ev1) {
  return graph_time(e, 2 * e->L, [&](int i) {
    cf_skinny_job j;
    return tune_job(e, k, i % e->L, A, &j) && cf_cuda_skinny_run(&j, o, &e->mma_ws, e->st) == 0;
  }, ev0, ev1);
}

static float tune_att(gen_engine *e, int A, int gs, bool merge, cudaEvent_t ev0, cudaEvent_t ev1);

/* Choices outlive the call: a later generate() with the same shapes, rows and switches takes
 * them without timing again (a process-wide table, guarded: generate may run on any thread). */
struct gen_tune_key { int D, F, Q, KV, V, L, A; bool pdl; cf_skinny_opts env; };
#define GEN_TUNE_CACHE 64
static struct { gen_tune_key key; cf_skinny_opts o[GK_N]; int att_gs; bool att_merge; } g_tune_cache[GEN_TUNE_CACHE];
static int g_ntune_cache;
static pthread_mutex_t g_tune_lock = PTHREAD_MUTEX_INITIALIZER;

static bool tune_same(const gen_tune_key &a, const gen_tune_key &b) {
  return a.D == b.D && a.F == b.F && a.Q == b.Q && a.KV == b.KV && a.V == b.V && a.L == b.L && a.A == b.A &&
         a.pdl == b.pdl && a.env.nt == b.env.nt && a.env.ksb == b.env.ksb && a.env.minb == b.env.minb &&
         a.env.pdl == b.env.pdl && a.env.wide == b.env.wide;
}

static gen_tune_key tune_key(const gen_engine *e, int A) {
  gen_tune_key k;
  memset(&k, 0, sizeof k);
  k.D = e->D; k.F = e->F; k.Q = e->Q; k.KV = e->KV; k.V = e->V; k.L = e->L; k.A = A; k.pdl = e->pdl;
  k.env = e->mma_opts;
  return k;
}

static int gen_tune(gen_engine *e, int A) {
  for (int i = 0; i < e->ntuned; i++) if (e->tuned[i].A == A) return 0;
  if (e->ntuned >= GEN_MAX_PLANNED) return 0;
  gen_tuned *t = &e->tuned[e->ntuned];
  t->A = A;
  for (int k = 0; k < GK_N; k++) t->o[k] = e->mma_opts;
  t->att_gs = e->att_gs;
  t->att_merge = e->att_merge;
  if (!gen_fold(e, A)) { e->ntuned++; return 0; } /* the unfolded step keeps the defaults */
  gen_tune_key key = tune_key(e, A);
  bool hit = false;
  pthread_mutex_lock(&g_tune_lock);
  for (int i = 0; i < g_ntune_cache && !hit; i++)
    if (tune_same(g_tune_cache[i].key, key)) {
      memcpy(t->o, g_tune_cache[i].o, sizeof t->o);
      t->att_gs = g_tune_cache[i].att_gs;
      t->att_merge = g_tune_cache[i].att_merge;
      hit = true;
    }
  pthread_mutex_unlock(&g_tune_lock);
  if (hit) { e->ntuned++; return 0; }
  /* {tiles, K parts, register bound, pdl, wide}: the first is the default shape */
  static const cf_skinny_opts cand[] = {
      {4, 0, 1, false, false}, {4, 0, 2, false, false}, {2, 0, 1, false, false}, {2, 0, 2, false, false},
      {1, 0, 1, false, false}, {1, 0, 2, false, false}, {4, 1, 1, false, false}, {4, 1, 2, false, false},
      {4, 0, 1, false, true},  {2, 0, 1, false, true},  {1, 0, 1, false, true}};
  cudaEvent_t ev0 = NULL, ev1 = NULL;
  if (cu_check(cudaStreamSynchronize(e->st), "generate: tuning") || cu_check(cudaEventCreate(&ev0), "generate: tuning") ||
      cu_check(cudaEventCreate(&ev1), "generate: tuning")) {
    if (ev0) cudaEventDestroy(ev0);
    return -1;
  }
  for (int k = 0; k < GK_OTHER; k++) {
    cf_skinny_job j;
    if (!tune_job(e, k, 0, A, &j)) continue;
    int seen[sizeof cand / sizeof *cand][4], nseen = 0;
    float best = -1.f, first = -1.f;
    for (size_t c = 0; c < sizeof cand / sizeof *cand; c++) {
      cf_skinny_opts o = cand[c];
      o.pdl = e->pdl;
      int nt, ksb, grid, dup = 0;
      int wide = cf_cuda_skinny_plan(&j, &o, &e->mma_ws, &nt, &ksb, &grid);
      if (j.ss_out && grid > e->ss_cap) continue;
      for (int q = 0; q < nseen; q++)
        dup |= seen[q][0] == nt && seen[q][1] == ksb && seen[q][3] == wide && (wide || seen[q][2] == o.minb);
      if (dup) continue;
      seen[nseen][0] = nt; seen[nseen][1] = ksb; seen[nseen][2] = o.minb; seen[nseen][3] = wide; nseen++;
      float us = tune_time(e, k, A, &o, ev0, ev1);
      if (c == 0) first = us;
      if (us > 0.f && (best < 0.f || us < best)) { best = us; t->o[k] = o; }
    }
    int nt, ksb, grid;
    bool wide = cf_cuda_skinny_plan(&j, &t->o[k], &e->mma_ws, &nt, &ksb, &grid);
    fprintf(stderr, "confit generate: tuned %-8s rows %2d: %s nt %d ksb %d minb %d%s  %.2f us (default shape %.2f us)\n",
            gk_name[k], A, wide ? "wide" : "narrow", nt, ksb, t->o[k].minb, t->o[k].pdl ? " pdl" : "", best, first);
  }
  {
    /* the attention with its merge: 1 to 4 blocks per kv head, the merge separate or in the
     * attention */
    int group = e->H / e->KVH;
    float best = -1.f, one = -1.f;
    for (int m = 0; m < (e->att_cnt ? 2 : 1); m++)
      for (int gs = 1; gs <= 4 && gs <= group; gs++) {
        float us = tune_att(e, A, gs, m == 1, ev0, ev1);
        if (gs == 1 && m == 0) one = us;
        if (us > 0.f && (best < 0.f || us < best)) { best = us; t->att_gs = gs; t->att_merge = m == 1; }
      }
    fprintf(stderr, "confit generate: tuned attention rows %2d: %d block(s) per kv head, merge %s  %.2f us "
            "(1 block, separate merge %.2f us)\n", A, t->att_gs, t->att_merge ? "inside" : "separate", best, one);
  }
  cudaEventDestroy(ev0);
  cudaEventDestroy(ev1);
  e->ntuned++;
  pthread_mutex_lock(&g_tune_lock);
  if (g_ntune_cache < GEN_TUNE_CACHE) {
    g_tune_cache[g_ntune_cache].key = key;
    memcpy(g_tune_cache[g_ntune_cache].o, t->o, sizeof t->o);
    g_tune_cache[g_ntune_cache].att_gs = t->att_gs;
    g_tune_cache[g_ntune_cache].att_merge = t->att_merge;
    g_ntune_cache++;
  }
  pthread_mutex_unlock(&g_tune_lock);
  return 0;
}

/* Y (A, ldy) f32 [+]= X (A, in; ldx) @ W (out, in)^T */
static int gen_gemm(gen_engine *e, const void *W, const void *X, int ldx, float *Y, int ldy, int A, int in,
                    int out, float beta, const char *what) {
  if (e->mma) {
    cf_skinny_job j = sk_job(W, X, ldx, Y, ldy, A, in, out, beta);
    if (cf_cuda_skinny_ok(&j)) return gen_skinny(e, &j, GK_OTHER, what);
  }
  float alpha = 1.0f;
  const gen_plan *p = e->nplan ? plan_find(e, A, in, out, ldx, ldy, beta != 0.f) : NULL;
  if (p && p->lt && ptr_align(W) >= p->al_w && ptr_align(X) >= p->al_x && ptr_align(Y) >= p->al_y)
    return lt_check(cublasLtMatmul(g_gen_lt, p->op, &alpha, W, p->la, X, p->lb, &beta, Y, p->lc, Y, p->lc, &p->algo,
                                   g_gen_ws, GEN_WS_BYTES, e->st), what);
  cublasStatus_t s = cublasGemmEx(e->blas, CUBLAS_OP_T, CUBLAS_OP_N, out, A, in, &alpha, W, e->wt, in, X, e->wt,
                                  ldx, &beta, Y, CUDA_R_32F, ldy, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  return cu_blas_check(s, what);
}

/* x (A, D) += X (A, in; ldx) @ W (D, in)^T: the residual GEMMs (o_proj, down); folded, through
 * skinny.cu leaving the sums of squares of the new x for the next norm (gen_resid). In a decode
 * step with CONFIT_GEN_SPLITK=s (opt-in: 2.20 ms against 2.17 at s = 4 on an H200, eleventh
 * session; not yet beside the tensor-core attention) the GEMM is s GEMMs over parts of
 * K in one strided-batched call, s times the thread blocks of one on these skinny shapes (on an
 * H200 cuBLAS streamed the down weights at 51 % of the copy bandwidth, o_proj's at 20 %), each
 * writing its partial product; the next k_rmsnorm adds them into x, so no kernel is added. The
 * fused qkv GEMM splits too when the attention does the RoPE (it adds the partials: qnp). K must
 * be a multiple of 8 s, else that GEMM runs unsplit (1.5B shape: s = 3, 6 leave down unsplit,
 * s = 5, 7 qkv and o_proj); so does one that cuBLAS refuses. Only steps of at most
 * GEN_SPLITK_ROWS rows split (a skinny GEMM is what wants more blocks), so the partials buffer
 * stays small whatever the batch capacity. */
#define GEN_SPLITK_ROWS 64
static int gen_splitk_rows(const gen_engine *e) { return e->Bmax < GEN_SPLITK_ROWS ? e->Bmax : GEN_SPLITK_ROWS; }
static bool gen_can_split(const gen_engine *e, bool fold, bool decode, int A, int in) {
  return !fold && decode && e->splitk > 1 && in % (8 * e->splitk) == 0 && A <= gen_splitk_rows(e);
}
/* skp[s] (A, out) f32 = X[:, s-th part of K] @ W[:, s-th part]^T for s < splitk: one call.
 * False when cuBLAS refuses it (nothing queued): the caller takes the unsplit GEMM. */
static bool gen_split_gemm(gen_engine *e, const void *W, const void *X, int ldx, int A, int in, int out) {
  int s = e->splitk, kc = in / s;
  float one = 1.f, zero = 0.f;
  return cublasGemmStridedBatchedEx(e->blas, CUBLAS_OP_T, CUBLAS_OP_N, out, A, kc, &one, W, e->wt, in, kc, X, e->wt,
                                    ldx, kc, &zero, e->skp, CUDA_R_32F, out, (long long)out * A, s,
                                    CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_SUCCESS;
}

static int gen_add_x(gen_engine *e, bool fold, bool decode, const void *W, const void *X, int ldx, int A, int in,
                     int kind, const char *what) {
  if (gen_can_split(e, fold, decode, A, in) && e->pend == 0 && gen_split_gemm(e, W, X, ldx, A, in, e->D)) {
    e->pend = e->splitk;
    return 0;
  }
  if (!fold) return gen_gemm(e, W, X, ldx, e->x, e->D, A, in, e->D, 1.f, what);
  cf_skinny_job j = sk_resid_job(e, W, X, ldx, A, in);
  return gen_resid(e, &j, kind, what);
}

#define LAUNCH_T(kernel, grid, block, ...)                                                      \
  do {                                                                                          \
    if (e->bf) cu_launch(e->pdl, (grid), (block), 0, e->st, kernel<bf16>, __VA_ARGS__);         \
    else cu_launch(e->pdl, (grid), (block), 0, e->st, kernel<float>, __VA_ARGS__);              \
  } while (0)

/* the same for a kernel with two more template parameters */
#define LAUNCH_T3(kernel, P, Q, grid, block, ...)                                               \
  do {                                                                                          \
    if (e->bf) cu_launch(e->pdl, (grid), (block), 0, e->st, kernel<bf16, P, Q>, __VA_ARGS__);   \
    else cu_launch(e->pdl, (grid), (block), 0, e->st, kernel<float, P, Q>, __VA_ARGS__);        \
  } while (0)

static int norm_threads(int D) { return D >= 2048 ? 1024 : D >= 512 ? 512 : D >= 128 ? 128 : 32; }

/* h (A, D) = rmsnorm(x) * g, adding the pending split-K partials into x first (gen_add_x) */
static void gen_norm(gen_engine *e, int A, const float *g) {
  LAUNCH_T(k_rmsnorm, A, norm_threads(e->D), e->x, g, e->h, e->D, (float)e->m->cfg.rms_eps,
           (const float *)(e->pend ? e->skp : NULL), e->pend, (size_t)e->D * A);
  e->pend = 0;
}

/* Attention split for A rows: enough blocks to fill the GPU, chunks of whole tiles. */
static void att_split(const gen_engine *e, int A, int *nsplit, int *C) {
  int want = (528 + A * e->KVH - 1) / (A * e->KVH);
  int maxs = (e->cap + ATT_TILE - 1) / ATT_TILE;
  if (want > maxs) want = maxs;
  if (e->att_splits > 0 && want > e->att_splits) want = e->att_splits;
  if (want < 1) want = 1;
  int c = (e->cap + want - 1) / want;
  c = (c + ATT_TILE - 1) / ATT_TILE * ATT_TILE;
  *C = c;
  *nsplit = (e->cap + c - 1) / c;
}

/* Attention blocks per kv head for A rows: tuned (CONFIT_GEN_MMA=2), else CONFIT_GEN_ATT_GS;
 * at most the query heads of a kv head. */
static int gen_att_gs(const gen_engine *e, int A) {
  int gs = e->att_gs;
  for (int i = 0; i < e->ntuned; i++)
    if (e->tuned[i].A == A) gs = e->tuned[i].att_gs;
  int group = e->H / e->KVH;
  return gs < 1 ? 1 : gs > group ? group : gs;
}
/* whether the attention merges its splits for A rows: tuned, else CONFIT_GEN_ATT_MERGE */
static bool gen_att_merge(const gen_engine *e, int A) {
  bool m = e->att_merge;
  for (int i = 0; i < e->ntuned; i++)
    if (e->tuned[i].A == A) m = e->tuned[i].att_merge;
  return m && e->att_cnt;
}

/* The decode attention of layer l over A rows (k_attn; gen_attn.cuh): rq, early as att_args says,
 * gs blocks per kv head. Writes e->po/pm/pl (and with rq the caches at each row's position);
 * with merge also e->att (no k_attn_combine needed). */
static int gen_attention(gen_engine *e, int l, int A, bool rq, bool early, int gs, bool merge) {
  const gen_layer *Ly = &e->layer[l];
  int hd = e->hd, nsplit, C;
  att_split(e, A, &nsplit, &C);
  size_t lkv = (size_t)(e->nslots + 1) * e->KVH * e->cap * hd * wsize(e);
  void *kc = (char *)e->kc + l * lkv, *vc = (char *)e->vc + l * lkv;
  dim3 ag(nsplit, e->KVH * gs, A);
  att_args aa;
  memset(&aa, 0, sizeof aa);
  aa.q = !rq ? e->qr : e->qnp > 1 ? e->skp : e->qkv;
  aa.qnp = rq ? e->qnp : 0;
  aa.qps = (size_t)A * (e->Q + 2 * e->KV);
  aa.kc = kc; aa.vc = vc;
  aa.pos = e->rows.pos; aa.slot = e->rows.slot; aa.pslot = e->rows.pslot; aa.plen = e->rows.plen;
  aa.po = e->po; aa.pm = e->pm; aa.pl = e->pl;
  aa.H = e->H; aa.KVH = e->KVH; aa.hd = hd; aa.cap = e->cap; aa.C = C; aa.nsplit = nsplit; aa.gs = gs;
  aa.scale = (float)(1.0 / sqrt((double)hd));
  aa.rq = rq;
  aa.early = early;
  aa.ld = e->Q + 2 * e->KV; aa.bq = Ly->bq; aa.bk = Ly->bk; aa.bv = Ly->bv; aa.cos_t = e->cos_t; aa.sin_t = e->sin_t;
  aa.kcw = kc; aa.vcw = vc;
  if (merge) { aa.cnt = e->att_cnt; aa.out = e->att; }
  bool qp = rq && e->att_qpair && hd % 16 == 0 && hd <= 128; /* gen_attn.cuh: QP (and TC in bf16) */
  if (qp && e->att_tc == 2) LAUNCH_T(k_attn_tc2, ag, ATT_T, aa);
  else if (qp && e->att_tc == 1) LAUNCH_T(k_attn_tc, ag, ATT_T, aa);
  else if (qp) LAUNCH_T(k_attn_qp, ag, ATT_T, aa);
  else if (hd % 16 == 0 && hd <= 128) LAUNCH_T3(k_attn, true, 128, ag, ATT_T, aa);
  else if (hd % 16 == 0) LAUNCH_T3(k_attn, true, ATT_MAXHD, ag, ATT_T, aa);
  else if (hd <= 128) LAUNCH_T3(k_attn, false, 128, ag, ATT_T, aa);
  else LAUNCH_T3(k_attn, false, ATT_MAXHD, ag, ATT_T, aa);
  return cu_launched("generate: attention");
}

/* the attention with gs blocks per kv head, 2L launches walking the layers, as the decode step
 * runs it (with rq: bias + RoPE and position p's key and value, whose cache writes land where the
 * step about to run writes them again) */
static float tune_att(gen_engine *e, int A, int gs, bool merge, cudaEvent_t ev0, cudaEvent_t ev1) {
  int nsplit, C;
  att_split(e, A, &nsplit, &C);
  int hd = e->hd;
  return graph_time(e, 2 * e->L, [&](int i) {
    if (gen_attention(e, i % e->L, A, e->rq, e->pdl, gs, merge)) return false;
    if (!merge) /* the separate merge counts too */
      LAUNCH_T(k_attn_combine, dim3(e->H, A), (hd + 31) / 32 * 32, e->po, e->pm, e->pl, e->att, e->H, hd, nsplit);
    return cu_launched("generate: combine") == 0;
  }, ev0, ev1);
}


/* A rows (row state in e->rows) through the layers: on return x (A, D) holds the residual
 * stream after the last layer (with CONFIT_GEN_SPLITK, once gen_norm has added the last down
 * GEMM's partials). Queued on e->st; capturable. With fold (gen_fold) the RMSNorms
 * are folded into the GEMMs that read them (and the caller folds the final one into the head).
 * decode: every row adds exactly its own position (not prefill), which lets the attention load
 * the cache early and, with e->rq, do k_rope_kv's work itself. */
static int gen_layers(gen_engine *e, int A, bool fold, bool decode) {
  int D = e->D, F = e->F, Q = e->Q, KV = e->KV, ld = Q + 2 * KV, hd = e->hd;
  size_t ws = wsize(e);
  int nsplit, C;
  att_split(e, A, &nsplit, &C);
  size_t lkv = (size_t)(e->nslots + 1) * e->KVH * e->cap * hd * ws;
  e->pend = 0; /* x is written anew: no partials of an earlier step may be added */
  e->qnp = 0;
  STAGE("embed");
  LAUNCH_T(k_embed, A, 256, e->embed, e->rows.tok, e->x, D, fold ? e->ss : (float *)NULL);
  e->ss_groups = 1;
  for (int l = 0; l < e->L; l++) {
    gen_layer *Ly = &e->layer[l];
    void *kc = (char *)e->kc + l * lkv, *vc = (char *)e->vc + l * lkv;
    STAGE("rmsnorm");
    if (KEEP("rmsnorm") && !fold) gen_norm(e, A, Ly->in_norm);
    STAGE("qkv");
    if (!KEEP("qkv")) {
    } else if (fold) {
      cf_skinny_job q = sk_norm_job(e, Ly->qw, Ly->in_norm, e->qkv, ld, A, Ly->qkv_fused ? ld : Q);
      cf_skinny_job k = sk_norm_job(e, Ly->kw, Ly->in_norm, e->qkv + Q, ld, A, KV);
      cf_skinny_job v = sk_norm_job(e, Ly->vw, Ly->in_norm, e->qkv + Q + KV, ld, A, KV);
      if (gen_skinny(e, &q, Ly->qkv_fused ? GK_QKV : GK_OTHER, "generate: qkv") ||
          (!Ly->qkv_fused && (gen_skinny(e, &k, GK_OTHER, "generate: k_proj") ||
                              gen_skinny(e, &v, GK_OTHER, "generate: v_proj"))))
        return -1;
    } else if (Ly->qkv_fused && decode && e->rq && gen_can_split(e, fold, decode, A, D) && e->pend == 0 &&
               gen_split_gemm(e, Ly->qw, e->h, D, A, D, ld)) {
      e->qnp = e->splitk; /* CONFIT_GEN_SPLITK: q|k|v as partials in skp, added by the attention */
    } else if (Ly->qkv_fused) {
      if (gen_gemm(e, Ly->qw, e->h, D, e->qkv, ld, A, D, ld, 0.f, "generate: qkv")) return -1;
    } else if (gen_gemm(e, Ly->qw, e->h, D, e->qkv, ld, A, D, Q, 0.f, "generate: q_proj") ||
               gen_gemm(e, Ly->kw, e->h, D, e->qkv + Q, ld, A, D, KV, 0.f, "generate: k_proj") ||
               gen_gemm(e, Ly->vw, e->h, D, e->qkv + Q + KV, ld, A, D, KV, 0.f, "generate: v_proj")) {
      return -1;
    }
    /* decode with rq: k_attn does the bias + RoPE and writes position p's key and value itself */
    bool rq = decode && e->rq;
    STAGE("rope_kv");
    if (KEEP("rope_kv") && !rq)
      LAUNCH_T(k_rope_kv, A, 256, e->qkv, ld, Ly->bq, Ly->bk, Ly->bv, e->cos_t, e->sin_t, e->rows.pos,
               e->rows.slot, e->qr, kc, vc, e->H, e->KVH, hd, e->cap);
    STAGE("attention");
    bool merge = gen_att_merge(e, A);
    if (KEEP("attention") && gen_attention(e, l, A, rq, decode && e->pdl, gen_att_gs(e, A), merge)) return -1;
    e->qnp = 0;
    STAGE("attn_combine");
    if (KEEP("combine") && !merge)
      LAUNCH_T(k_attn_combine, dim3(e->H, A), (hd + 31) / 32 * 32, e->po, e->pm, e->pl, e->att, e->H, hd, nsplit);
    STAGE("o_proj");
    if (KEEP("o_proj") && gen_add_x(e, fold, decode, Ly->ow, e->att, Q, A, Q, GK_OPROJ, "generate: o_proj")) return -1;
    STAGE("rmsnorm");
    if (KEEP("rmsnorm") && !fold) { gen_norm(e, A, Ly->post_norm); }
    STAGE("gate_up");
    /* the gate/up GEMM with the SwiGLU in its epilogue (skinny.cu), or the GEMM then k_swiglu */
    cf_skinny_job gu = fold ? sk_norm_job(e, Ly->gw, Ly->post_norm, NULL, 0, A, 2 * F)
                            : sk_job(Ly->gw, e->h, D, NULL, 0, A, D, 2 * F, 0.f);
    gu.swiglu = true;
    gu.act = e->act;
    bool sw = e->mma && Ly->gu_fused && cf_cuda_skinny_ok(&gu);
    if (!KEEP("gate_up")) {
    } else if (sw) {
      if (gen_skinny(e, &gu, fold ? GK_GATEUP : GK_OTHER, "generate: gate/up+swiglu")) return -1;
    } else if (fold) {
      cf_skinny_job g = sk_norm_job(e, Ly->gw, Ly->post_norm, e->gu, 2 * F, A, F);
      cf_skinny_job u = sk_norm_job(e, Ly->uw, Ly->post_norm, e->gu + F, 2 * F, A, F);
      if (gen_skinny(e, &g, GK_OTHER, "generate: gate_proj") || gen_skinny(e, &u, GK_OTHER, "generate: up_proj"))
        return -1;
    } else if (Ly->gu_fused) {
      if (gen_gemm(e, Ly->gw, e->h, D, e->gu, 2 * F, A, D, 2 * F, 0.f, "generate: gate/up")) return -1;
    } else if (gen_gemm(e, Ly->gw, e->h, D, e->gu, 2 * F, A, D, F, 0.f, "generate: gate_proj") ||
               gen_gemm(e, Ly->uw, e->h, D, e->gu + F, 2 * F, A, D, F, 0.f, "generate: up_proj")) {
      return -1;
    }
    int64_t n = (int64_t)A * F;
    STAGE("swiglu");
    if (KEEP("swiglu") && !sw)
      LAUNCH_T(k_swiglu, cu_blocks(n, 256), 256, e->gu, e->act, F, n);
    STAGE("down");
    if (KEEP("down") && gen_add_x(e, fold, decode, Ly->dw, e->act, F, A, F, GK_DOWN, "generate: down_proj")) return -1;
  }
  STAGE(NULL);
  return cu_launched("generate: layer kernels");
}

struct gen_sampling { float temp; double top_p; int greedy, top_k; };

/* One decode step of Bp rows: layers, final norm, head, sampler (advances the row state). */
static int gen_step(gen_engine *e, int Bp, const gen_sampling *sp) {
  bool fold = gen_fold(e, Bp);
  if (gen_layers(e, Bp, fold, true)) return -1;
  STAGE("final_norm");
  if (!fold) gen_norm(e, Bp, e->final_norm);
  STAGE("lm_head");
  if (!KEEP("lm_head")) {
  } else if (fold) {
    cf_skinny_job h = sk_norm_job(e, e->head, e->final_norm, e->logits, e->V, Bp, e->V);
    if (gen_skinny(e, &h, GK_HEAD, "generate: lm_head")) return -1;
  } else if (gen_gemm(e, e->head, e->h, e->D, e->logits, e->V, Bp, e->D, e->V, 0.f, "generate: lm_head")) {
    return -1;
  }
  STAGE("sample");
  bool trunc = !sp->greedy && ((sp->top_k > 0 && sp->top_k < e->V) || sp->top_p < 1.0);
  if (!KEEP("sample")) {
  } else if (e->smp_split && !trunc) {
    /* k_sample_split: S segments per row, about two blocks per multiprocessor, segments of at
     * least 1024 ids (CONFIT_GEN_SAMPLE_SPLIT=1), or S as set */
    int S = e->smp_split;
    if (S == 1) {
      S = (2 * e->sms + Bp - 1) / Bp;
      if (S > e->V / 1024) S = e->V / 1024;
      S = S < 1 ? 1 : S > SMP_MAXS ? SMP_MAXS : S;
    }
    smp_args a;
    memset(&a, 0, sizeof a);
    a.logits = e->logits; a.ldl = e->V; a.V = e->V; a.S = S; a.temp = sp->temp; a.greedy = sp->greedy;
    a.key = e->rows.key; a.step = e->rows.step; a.tok = e->rows.tok; a.pos = e->rows.pos; a.update = 1;
    a.out = e->out; a.part = e->smp_part; a.cnt = e->smp_cnt;
    cu_launch(e->pdl, dim3(S, Bp), SMP_T, 0, e->st, k_sample_split, a);
  } else {
    cu_launch(e->pdl, Bp, GEN_SAMPLE_T, 0, e->st, k_sample, e->logits, e->V, NULL, e->V, sp->temp, sp->greedy,
              sp->top_k, sp->top_p, e->rows.key, e->rows.step, e->rows.tok, e->rows.pos, e->out, 1);
  }
  if (cu_launched("generate: sampler")) return -1;
  if (e->score_t > 0 && KEEP("sample")) { /* score_temperature: the drawn tokens at it */
    STAGE("score");
    cu_launch(e->pdl, Bp, GEN_SAMPLE_T, 0, e->st, k_score, e->logits, (int64_t)e->V, (const int *)NULL, e->V,
              e->score_t, (const gen_out *)e->out, e->score);
  }
  STAGE(NULL);
  return cu_launched("generate: score");
}

/* Row-state staging: [tok][pos][step][slot][pslot][plen][lrow] (R ints each), then key (R u64). */
struct gen_stage {
  int *tok, *pos, *step, *slot, *pslot, *plen, *lrow;
  unsigned long long *key;
};
static gen_stage stage_view(void *base, int R) {
  gen_stage s;
  int *b = (int *)base;
  s.tok = b; s.pos = b + R; s.step = b + 2 * R; s.slot = b + 3 * R; s.pslot = b + 4 * R; s.plen = b + 5 * R;
  s.lrow = b + 6 * R;
  s.key = (unsigned long long *)(b + 7 * R);
  return s;
}
static size_t stage_bytes(int R) { return (size_t)R * (7 * sizeof(int) + sizeof(unsigned long long)); }

static int gen_upload(gen_engine *e) {
  if (cu_check(cudaMemcpyAsync(e->rows_mem, e->pin, stage_bytes(e->R), cudaMemcpyHostToDevice, e->st),
               "generate: row upload"))
    return -1;
  return cu_check(cudaStreamSynchronize(e->st), "generate: row upload");
}

static int gen_bucket(int a) {
  static const int b[] = {1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 160, 192, 224, 256};
  for (size_t i = 0; i < sizeof b / sizeof b[0]; i++) if (a <= b[i]) return b[i];
  return (a + 63) / 64 * 64;
}

static int gen_capture(gen_engine *e, int Bp, const gen_sampling *sp, cudaGraphExec_t *exec) {
  cudaGraph_t g = NULL;
  *exec = NULL;
  if (cu_check(cudaStreamBeginCapture(e->st, cudaStreamCaptureModeThreadLocal), "generate: graph capture"))
    return -1;
  int rc = gen_step(e, Bp, sp);
  cudaError_t ce = cudaStreamEndCapture(e->st, &g);
  if (rc == 0) rc = cu_check(ce, "generate: graph capture");
  if (rc == 0) rc = cu_check(cudaGraphInstantiate(exec, g, 0), "generate: graph instantiate");
  if (g) cudaGraphDestroy(g);
  if (rc) { *exec = NULL; cudaGetLastError(); }
  return rc;
}

static const void *wptr(const cf_tensor *t) { return t ? cf_tensor_data(t) : NULL; }

/* Checks the weights and fills the engine's weight pointers and f32 small parameters. */
static int gen_weights(gen_engine *e) {
  const cf_qwen2 *m = e->m;
  for (int i = 0; i < m->nparams; i++) {
    const cf_tensor *t = *m->slots[i];
    if (!t || cf_tensor_device(t) != CF_DEVICE_CUDA || !cf_tensor_is_contiguous(t) ||
        (t->dtype != CF_DTYPE_BF16 && t->dtype != CF_DTYPE_F32))
      return CF_ERR("generate (CUDA): parameter %s must be a contiguous bf16 or f32 CUDA tensor (got %s on %s)",
                    m->names[i], t ? cf_dtype_name(t->dtype) : "nothing",
                    t ? cf_device_name(cf_tensor_device(t)) : "-");
  }
  if (!m->lm_head || cf_tensor_device(m->lm_head) != CF_DEVICE_CUDA)
    return CF_ERR("generate (CUDA): lm_head is not on the GPU (a tied model needs model:tie())");
  cf_dtype wd = m->embed->dtype;
  e->bf = wd == CF_DTYPE_BF16;
  e->wt = e->bf ? CUDA_R_16BF : CUDA_R_32F;
  const cf_tensor *mats[2] = {m->embed, m->lm_head};
  for (int i = 0; i < 2; i++)
    if (mats[i]->dtype != wd) return CF_ERR("generate (CUDA): embedding and lm_head dtypes differ");
  for (int l = 0; l < e->L; l++) {
    const cf_qwen2_layer *Ly = &m->layer[l];
    const cf_tensor *w[7] = {Ly->q_w, Ly->k_w, Ly->v_w, Ly->o_w, Ly->gate_w, Ly->up_w, Ly->down_w};
    for (int k = 0; k < 7; k++)
      if (w[k]->dtype != wd)
        return CF_ERR("generate (CUDA): layer %d matrices must all be %s like the embedding (got %s)", l,
                      cf_dtype_name(wd), cf_dtype_name(w[k]->dtype));
  }
  e->embed = wptr(m->embed);
  e->head = wptr(m->lm_head);
  size_t per = (size_t)2 * e->D + e->Q + 2 * e->KV;
  size_t nsmall = per * e->L + e->D;
  e->small = (float *)gen_alloc(e, nsmall * sizeof(float), "norms");
  e->layer = (gen_layer *)calloc((size_t)e->L, sizeof *e->layer);
  if (!e->small || !e->layer) return e->small ? CF_ERR("generate: out of memory") : -1;
  size_t ws = wsize(e);
#define CONV(dst, t, n) \
  do { if (cu_convert((dst), CF_DTYPE_F32, cf_tensor_data(t), (t)->dtype, (n))) return -1; } while (0)
  for (int l = 0; l < e->L; l++) {
    const cf_qwen2_layer *Ly = &m->layer[l];
    gen_layer *g = &e->layer[l];
    float *b = e->small + per * l;
    g->in_norm = b; g->post_norm = b + e->D;
    CONV(g->in_norm, Ly->in_norm, e->D);
    CONV(g->post_norm, Ly->post_norm, e->D);
    if (Ly->q_b && Ly->k_b && Ly->v_b) {
      g->bq = b + 2 * e->D; g->bk = g->bq + e->Q; g->bv = g->bk + e->KV;
      CONV(g->bq, Ly->q_b, e->Q);
      CONV(g->bk, Ly->k_b, e->KV);
      CONV(g->bv, Ly->v_b, e->KV);
    }
    g->qw = wptr(Ly->q_w); g->kw = wptr(Ly->k_w); g->vw = wptr(Ly->v_w); g->ow = wptr(Ly->o_w);
    g->gw = wptr(Ly->gate_w); g->uw = wptr(Ly->up_w); g->dw = wptr(Ly->down_w);
    g->qkv_fused = (const char *)g->kw == (const char *)g->qw + (size_t)e->Q * e->D * ws &&
                   (const char *)g->vw == (const char *)g->kw + (size_t)e->KV * e->D * ws;
    g->gu_fused = (const char *)g->uw == (const char *)g->gw + (size_t)e->F * e->D * ws;
  }
  e->final_norm = e->small + per * e->L;
  CONV(e->final_norm, m->final_norm, e->D);
#undef CONV
  return 0;
}

#define GEN_MAX_GRAPHS 64

extern "C" int cf_cuda_qwen2_generate(cf_qwen2 *m, const int64_t *const *prompts, const int *plen, int np,
                                      const cf_gen_opts *o, cf_gen_sample **out) {
  *out = NULL;
  if (cf_cuda_init()) return -1;
  const cf_qwen2_config *c = &m->cfg;
  int n = o->n, maxnew = o->max_new_tokens;
  int64_t nslots64 = (int64_t)np * n;
  /* a decode step's rows are a grid dimension (at most 65,535; buckets round up to 64s) */
  if (nslots64 > 65472)
    return CF_ERR("generate (CUDA): %lld samples (prompts x n) in one call; at most 65472 decode together, "
                  "split the prompts over several calls", (long long)nslots64);
  int nslots = (int)nslots64;
  cf_gen_sample *s = (cf_gen_sample *)calloc((size_t)(nslots ? nslots : 1), sizeof *s);
  if (!s) return CF_ERR("generate: out of memory");
  for (int i = 0; i < nslots; i++) {
    s[i].prompt = i / n;
    s[i].finish = CF_FINISH_LENGTH;
    s[i].tokens = (int64_t *)malloc((size_t)(maxnew ? maxnew : 1) * sizeof *s[i].tokens);
    s[i].logprobs = (float *)malloc((size_t)(maxnew ? maxnew : 1) * sizeof *s[i].logprobs);
    if (!s[i].tokens || !s[i].logprobs) { cf_gen_samples_free(s, nslots); return CF_ERR("generate: out of memory"); }
  }
  if (nslots == 0 || maxnew == 0) { *out = s; return 0; }

  gen_engine E;
  memset(&E, 0, sizeof E);
  gen_engine *e = &E;
  e->prof = -1;
  const char *phase0 = cf_prof_set_phase("gen.prefill");
  e->m = m;
  e->D = c->hidden; e->F = c->intermediate; e->H = c->heads; e->KVH = c->kv_heads; e->hd = c->head_dim;
  e->V = c->vocab; e->L = c->layers;
  e->Q = e->H * e->hd; e->KV = e->KVH * e->hd;
  e->st = cu_stream();
  e->nslots = nslots;
  int rc = 0;
  int maxp = 0;
  int64_t P = 0;
  for (int p = 0; p < np; p++) { if (plen[p] > maxp) maxp = plen[p]; P += plen[p]; }
  e->cap = maxp + maxnew + GEN_KW;
  e->Bmax = gen_bucket(nslots);
  int R = e->Bmax > (P < GEN_PREFILL ? (int)P : GEN_PREFILL) ? e->Bmax : (P < GEN_PREFILL ? (int)P : GEN_PREFILL);
  R = (R + 7) / 8 * 8;
  e->R = R;
  bool *done = (bool *)calloc((size_t)nslots, sizeof *done);
  int64_t *last = (int64_t *)calloc((size_t)nslots, sizeof *last);
  int *act = (int *)malloc((size_t)nslots * sizeof *act);
  unsigned long long *keys = (unsigned long long *)malloc((size_t)nslots * sizeof *keys);
  cudaGraphExec_t graphs[GEN_MAX_GRAPHS];
  int graph_b[GEN_MAX_GRAPHS], ngraphs = 0;
  bool use_graph = !(getenv("CONFIT_NO_GRAPH") && getenv("CONFIT_NO_GRAPH")[0] == '1') && !cf_prof_active();
  gen_sampling sp;
  sp.greedy = o->temperature <= 0;
  sp.temp = sp.greedy ? 1.0f : (float)o->temperature;
  sp.top_k = o->top_k;
  sp.top_p = o->top_p; /* in double, as the CPU's: (float)0.99999999 is 1, no truncation */
  if (!(sp.temp > 0) || !(sp.temp < INFINITY)) { /* past a float's range: 0 or inf as a float */
    rc = CF_ERR("generate (CUDA): temperature %g is outside the GPU sampler's float range (%g to %g; 0 decodes "
                "greedily; the CPU takes any)", o->temperature, (double)1.4e-45f, (double)FLT_MAX);
    goto fail;
  }
  e->score_t = o->score_temperature > 0 ? (float)o->score_temperature : 0.f;
  if (o->score_temperature > 0 && !(e->score_t > 0 && e->score_t < INFINITY)) {
    rc = CF_ERR("generate (CUDA): score_temperature %g is outside the GPU's float range (%g to %g; the CPU takes any)",
                o->score_temperature, (double)1.4e-45f, (double)FLT_MAX);
    goto fail;
  }
  if (!done || !last || !act || !keys) { rc = CF_ERR("generate: out of memory"); goto fail; }
  if (e->hd > ATT_MAXHD || e->hd % 2) { rc = CF_ERR("generate (CUDA): head_dim %d unsupported (even, <= %d)", e->hd, ATT_MAXHD); goto fail; }
  for (int i = 0; i < nslots; i++)
    keys[i] = cf_gen_key(o->seed, i / n, i % n);
  if (gen_blas(&e->blas)) { rc = -1; goto fail; }
  /* anything queued before (weights being written) precedes us in stream order */
  if ((rc = gen_weights(e))) goto fail;
  {
    /* the decode switches (kernels/generate.cu header; bench/README.md) */
    int mma, pdl, rope, nt, ksb, minb, gs, amerge, qpair, atc, asplits, sk, wide, ssplit, dev = 0, cc = 0;
    /* programmatic dependent launches by default where the GPU has them (sm_90 on): on an H200
     * the 1.5B step at batch 16 took 2.12 ms with them and 2.20 without (2026-11-26) */
    if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&cc, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) {
      cudaGetLastError();
      cc = 0;
    }
    if (cudaDeviceGetAttribute(&e->sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess || e->sms < 1) {
      cudaGetLastError();
      e->sms = 132;
    }
    /* and only where the kernels were compiled with the waits (cu_pdl_wait is empty below sm_90:
     * a build for an older target, JIT-compiled on a Hopper card, must not overlap them) */
    cudaFuncAttributes fa;
    if (cc >= 9 && (cudaFuncGetAttributes(&fa, k_rmsnorm<float>) != cudaSuccess || fa.ptxVersion < 90)) {
      cudaGetLastError();
      cc = 0;
    }
    if (env_int("CONFIT_GEN_MMA", 0, 0, 2, &mma) || env_int("CONFIT_GEN_PDL", cc >= 9, 0, 1, &pdl) ||
        env_int("CONFIT_GEN_ATT_GS", 1, 1, 64, &gs) || env_int("CONFIT_GEN_ATT_MERGE", 0, 0, 1, &amerge) ||
        env_int("CONFIT_GEN_FUSE_ROPE", -1, 0, 1, &rope) || env_int("CONFIT_GEN_MMA_NT", 0, 0, 4, &nt) ||
        env_int("CONFIT_GEN_MMA_KSB", 0, 0, 16, &ksb) || env_int("CONFIT_GEN_MMA_MINB", 0, 0, 2, &minb) ||
        env_int("CONFIT_GEN_SPLITK", 0, 0, 8, &sk) || env_int("CONFIT_GEN_MMA_WIDE", 0, 0, 1, &wide) ||
        env_int("CONFIT_GEN_SAMPLE_SPLIT", 1, 0, SMP_MAXS, &ssplit) ||
        env_int("CONFIT_GEN_ATT_QPAIR", 1, 0, 1, &qpair) || env_int("CONFIT_GEN_ATT_TC", 2, 0, 2, &atc) ||
        env_int("CONFIT_GEN_ATT_SPLITS", 0, 0, 64, &asplits)) {
      rc = -1;
      goto fail;
    }
    if (nt == 3) { rc = CF_ERR("generate: CONFIT_GEN_MMA_NT must be 1, 2 or 4 (got 3)"); goto fail; }
    e->mma = e->bf && mma > 0;
    e->mma_tune = e->mma && mma == 2;
    e->pdl = pdl == 1;
    /* the decode attention does k_rope_kv's work (bias, RoPE, the new key and value) by default:
     * H200, 1.5B b16, with PDL: 2.07 ms/step against 2.12 (2026-11-26); CONFIT_GEN_FUSE_ROPE=0
     * keeps k_rope_kv */
    e->rq = rope >= 0 ? rope == 1 : true;
    e->mma_opts.nt = nt;
    e->mma_opts.ksb = ksb;
    e->mma_opts.minb = minb;
    e->mma_opts.pdl = e->pdl;
    e->mma_opts.wide = wide == 1;
    e->att_gs = gs;
    e->att_merge = amerge == 1;
    /* by default the fused attention stages its queries in one pass (k_attn_qp) and the sampler
     * splits each row over several blocks: H200, 1.5B b16, in one run (2026-11-27): 2.18 ms/step
     * with neither, 2.05 with the one-pass staging, 2.01 with both; =0 turns each off */
    e->att_qpair = qpair == 1;
    /* over a bf16 cache the attention's scores and P V are tensor-core products by default
     * (=2, k_attn_tc2), the scores only with =1 (k_attn_tc), neither with =0 (k_attn_qp; each is
     * k_attn_qp over an f32 cache): H200, 1.5B b16, in one run (2026-11-27): 1.78, 1.93 and 2.01
     * ms/step; with a 2048-token prompt 2.06, 2.37 and 2.57 (the tiles' arithmetic weighs more) */
    e->att_tc = atc;
    /* opt-in, not yet run on a GPU with k_attn_tc2: at most N splits per row, fewer and longer
     * blocks (the 1.5B shape at batch 16 and a 640-token cache: 11 splits of one 64-position
     * tile) and fewer partials for k_attn_combine. Against k_attn_qp, whose tiles cost about 5 us
     * each, 4 and 2 lost (2.34, 2.73 ms against 2.04; thirteenth session); tensor-core tiles are
     * cheaper */
    e->att_splits = asplits;
    e->splitk = sk > 1 ? sk : 0;
    e->smp_split = ssplit;
  }
  if (e->mma_tune && !(e->tuned = (gen_tuned *)calloc(GEN_MAX_PLANNED, sizeof *e->tuned))) {
    rc = CF_ERR("generate: out of memory");
    goto fail;
  }
  if (e->mma) {
    if (cf_cuda_skinny_ws_init(&e->mma_ws, (size_t)1 << 21, 4096)) {
      cf_error_prefix("generate: ");
      rc = -1;
      goto fail;
    }
    e->ss_cap = 1024;
    if (!(e->ss = (float *)gen_alloc(e, (size_t)e->ss_cap * 16 * sizeof(float), "norm sums"))) {
      rc = -1;
      goto fail;
    }
  }
  if (e->att_merge || e->mma_tune) {
    size_t n = (size_t)e->R * e->H * sizeof(int); /* rows x KVH x (at most group) blocks */
    if (!(e->att_cnt = (int *)gen_alloc(e, n, "attention tickets")) ||
        cu_check(cudaMemsetAsync(e->att_cnt, 0, n, e->st), "generate: attention tickets")) {
      rc = -1;
      goto fail;
    }
  }
  e->knockout = getenv("CONFIT_GEN_KNOCKOUT");
  e->lt_mode = getenv("CONFIT_GEN_LT") ? atoi(getenv("CONFIT_GEN_LT")) : 0;
  if (e->lt_mode > 0 && !(e->plan = (gen_plan *)calloc(GEN_MAX_PLANS, sizeof *e->plan))) {
    rc = CF_ERR("generate: out of memory");
    goto fail;
  }
  if (!use_graph && (e->mma_tune || e->lt_mode > 0)) { /* said once per process */
    static int told;
    if (__sync_bool_compare_and_swap(&told, 0, 1))
      fprintf(stderr, "confit generate: CONFIT_GEN_MMA=2 and CONFIT_GEN_LT choose by timing CUDA graphs; "
                      "without graphs (CONFIT_NO_GRAPH=1, the profiler) the default choices run\n");
  }
  {
    size_t ws = wsize(e);
    int D = e->D, F = e->F, Q = e->Q, KV = e->KV, h2 = e->hd / 2;
    size_t kvb = (size_t)e->L * (nslots + 1) * e->KVH * (size_t)e->cap * e->hd * ws;
    size_t prow = (size_t)(R + 528) * e->H;
    if (!(e->kc = gen_alloc(e, kvb, "K cache")) || !(e->vc = gen_alloc(e, kvb, "V cache")) ||
        !(e->x = (float *)gen_alloc(e, (size_t)R * D * 4, "buffers")) ||
        !(e->qkv = (float *)gen_alloc(e, (size_t)R * (Q + 2 * KV) * 4, "buffers")) ||
        !(e->qr = (float *)gen_alloc(e, (size_t)R * Q * 4, "buffers")) ||
        !(e->gu = (float *)gen_alloc(e, (size_t)R * 2 * F * 4, "buffers")) ||
        !(e->logits = (float *)gen_alloc(e, (size_t)e->Bmax * e->V * 4, "logits")) ||
        !(e->po = (float *)gen_alloc(e, prow * e->hd * 4, "attention partials")) ||
        !(e->pm = (float *)gen_alloc(e, prow * 4, "attention partials")) ||
        !(e->pl = (float *)gen_alloc(e, prow * 4, "attention partials")) ||
        !(e->h = gen_alloc(e, (size_t)R * D * ws, "buffers")) ||
        !(e->att = gen_alloc(e, (size_t)R * Q * ws, "buffers")) ||
        !(e->act = gen_alloc(e, (size_t)R * F * ws, "buffers")) ||
        !(e->rows_mem = gen_alloc(e, stage_bytes(R), "row state")) ||
        !(e->out = (gen_out *)gen_alloc(e, (size_t)e->Bmax * sizeof(gen_out), "outputs")) ||
        (e->score_t > 0 && !(e->score = (double *)gen_alloc(e, (size_t)e->Bmax * sizeof(double), "scores"))) ||
        !(e->cos_t = (float *)gen_alloc(e, (size_t)e->cap * h2 * 4 * 2, "rope tables")) ||
        (e->splitk && !(e->skp = (float *)gen_alloc(e, (size_t)e->splitk * gen_splitk_rows(e) * (D > Q + 2 * e->KV ? D : Q + 2 * e->KV) * 4,
                                                   "split-K partials"))) ||
        ((e->lt_mode > 0 || e->mma_tune) &&
         !(e->lt_out = (float *)gen_alloc(e, (size_t)e->Bmax * scratch_cols(e) * 4, "GEMM plan timing"))) ||
        (e->smp_split &&
         (!(e->smp_part = (smp_part *)gen_alloc(e, (size_t)e->Bmax * SMP_MAXS * sizeof(smp_part), "sampler partials")) ||
          !(e->smp_cnt = (int *)gen_alloc(e, (size_t)e->Bmax * sizeof(int), "sampler tickets")) ||
          cu_check(cudaMemsetAsync(e->smp_cnt, 0, (size_t)e->Bmax * sizeof(int), e->st), "generate: sampler tickets")))) {
      rc = -1;
      goto fail;
    }
    e->sin_t = e->cos_t + (size_t)e->cap * h2;
    gen_stage dv = stage_view(e->rows_mem, R);
    e->rows.tok = dv.tok; e->rows.pos = dv.pos; e->rows.step = dv.step; e->rows.slot = dv.slot;
    e->rows.pslot = dv.pslot; e->rows.plen = dv.plen; e->rows.lrow = dv.lrow; e->rows.key = dv.key;
    /* pinned: the row state, then a window's outputs (and scores) */
    e->pin_bytes = stage_bytes(R) + (size_t)GEN_KW * e->Bmax * (sizeof(gen_out) + sizeof(double));
    size_t table = (size_t)e->cap * h2 * 2 * sizeof(float);
    if (table > e->pin_bytes) e->pin_bytes = table;
    if (cu_check(cudaMallocHost(&e->pin, e->pin_bytes), "generate: pinned staging")) { e->pin = NULL; rc = -1; goto fail; }
    /* RoPE tables in double like the CPU path, then rounded to f32 */
    float *tc = (float *)e->pin, *tsn = tc + (size_t)e->cap * h2;
    for (int i = 0; i < h2; i++) {
      cf_rope_scaling sc = {c->rope_scaling[0], c->rope_scaling[1], c->rope_scaling[2], c->rope_scaling[3]};
      double inv = cf_rope_inv_freq(c->rope_theta, i, e->hd, sc);
      for (int p = 0; p < e->cap; p++) {
        double ang = (double)p * inv;
        tc[(size_t)p * h2 + i] = (float)cos(ang);
        tsn[(size_t)p * h2 + i] = (float)sin(ang);
      }
    }
    if (cu_check(cudaMemcpyAsync(e->cos_t, tc, table, cudaMemcpyHostToDevice, e->st), "generate: rope tables") ||
        cu_check(cudaStreamSynchronize(e->st), "generate: rope tables")) { rc = -1; goto fail; }
  }
  {
    gen_stage hs = stage_view(e->pin, R);
    gen_out *ring = (gen_out *)((char *)e->pin + stage_bytes(R));
    double *sring = (double *)(ring + (size_t)GEN_KW * e->Bmax); /* with score_t: the window's scores */
    /* ---- prefill: prompt rows in chunks of R, each into the slot of its prompt's first sample */
    float *xlast = (float *)gen_alloc(e, (size_t)np * e->D * 4, "prompt states");
    if (!xlast) { rc = -1; goto fail; }
    {
      int p = 0, t = 0;
      for (int64_t c0 = 0; c0 < P; c0 += R) {
        int A = (int)(P - c0 < R ? P - c0 : R);
        int p_first = p, t_first = t;
        for (int r = 0; r < A; r++) {
          hs.tok[r] = (int)prompts[p][t];
          hs.pos[r] = t;
          hs.step[r] = 0;
          hs.slot[r] = p * n;
          hs.pslot[r] = p * n;
          hs.plen[r] = 0;
          hs.lrow[r] = 0;
          hs.key[r] = 0;
          if (++t == plen[p]) { t = 0; p++; }
        }
        if ((rc = gen_upload(e)) || (rc = gen_layers(e, A, gen_fold(e, A), false))) goto fail;
        /* keep the residual row of every prompt that ends in this chunk */
        int pp = p_first, tt = t_first;
        for (int r = 0; r < A; r++) {
          if (tt == plen[pp] - 1 &&
              (rc = cu_check(cudaMemcpyAsync(xlast + (size_t)pp * e->D, e->x + (size_t)r * e->D, (size_t)e->D * 4,
                                             cudaMemcpyDeviceToDevice, e->st), "generate: prefill")))
            goto fail;
          if (++tt == plen[pp]) { tt = 0; pp++; }
        }
      }
    }
    /* ---- first token of every sample from its prompt's last row */
    int gp = e->Bmax / n > 0 ? e->Bmax / n : 1;
    for (int p0 = 0; p0 < np; p0 += gp) {
      int g = np - p0 < gp ? np - p0 : gp;
      STAGE("final_norm");
      LAUNCH_T(k_rmsnorm, g, norm_threads(e->D), xlast + (size_t)p0 * e->D, e->final_norm, e->h, e->D,
               (float)c->rms_eps, (const float *)NULL, 0, (size_t)0);
      STAGE("lm_head");
      if ((rc = gen_gemm(e, e->head, e->h, e->D, e->logits, e->V, g, e->D, e->V, 0.f, "generate: lm_head"))) goto fail;
      STAGE(NULL);
      int rows = g * n;
      for (int r = 0; r < rows; r++) {
        int i = p0 * n + r;
        hs.tok[r] = 0; hs.pos[r] = 0; hs.step[r] = 0; hs.slot[r] = i; hs.pslot[r] = i; hs.plen[r] = 0;
        hs.lrow[r] = r / n;
        hs.key[r] = keys[i];
      }
      if ((rc = gen_upload(e))) goto fail;
      STAGE("sample");
      k_sample<<<rows, GEN_SAMPLE_T, 0, e->st>>>(e->logits, e->V, e->rows.lrow, e->V, sp.temp, sp.greedy, sp.top_k,
                                                  sp.top_p, e->rows.key, e->rows.step, e->rows.tok, e->rows.pos,
                                                  e->out, 0);
      if ((rc = cu_launched("generate: sampler"))) goto fail;
      if (e->score_t > 0) {
        STAGE("score");
        k_score<<<rows, GEN_SAMPLE_T, 0, e->st>>>(e->logits, e->V, e->rows.lrow, e->V, e->score_t, e->out, e->score);
        if ((rc = cu_launched("generate: score")) ||
            (rc = cu_check(cudaMemcpyAsync(sring, e->score, (size_t)rows * sizeof(double), cudaMemcpyDeviceToHost,
                                           e->st), "generate: first scores")))
          goto fail;
      }
      if ((rc = cu_check(cudaMemcpyAsync(ring, e->out, (size_t)rows * sizeof(gen_out), cudaMemcpyDeviceToHost, e->st),
                         "generate: first tokens")) ||
          (rc = cu_check(cudaStreamSynchronize(e->st), "generate: first tokens")))
        goto fail;
      STAGE(NULL);
      for (int r = 0; r < rows; r++) {
        int i = p0 * n + r;
        int64_t tok = ring[r].tok;
        if (tok < 0 || tok >= e->V) { rc = gen_bad_token((int)tok, 0, i, n); goto fail; }
        s[i].tokens[0] = tok;
        s[i].logprobs[0] = ring[r].lp;
        s[i].ntokens = 1;
        s[i].logprob = ring[r].lp;
        if (e->score_t > 0) s[i].score_logprob = sring[r];
        last[i] = tok;
        if (cf_gen_is_stop(m, o, tok)) { done[i] = true; s[i].finish = CF_FINISH_STOP; }
        else if (s[i].ntokens >= maxnew) done[i] = true;
      }
    }
    /* ---- decode */
    cf_prof_set_phase("gen.decode");
    for (;;) {
      int na = 0;
      for (int i = 0; i < nslots; i++) if (!done[i]) act[na++] = i;
      if (na == 0) break;
      if (cf_interrupt_pending()) {
        for (int r = 0; r < na; r++) { done[act[r]] = true; s[act[r]].finish = CF_FINISH_INTERRUPTED; }
        break;
      }
      int Bp = gen_bucket(na);
      int remaining = 0;
      for (int r = 0; r < Bp; r++) {
        if (r < na) {
          int i = act[r], p = i / n;
          hs.tok[r] = (int)last[i];
          hs.pos[r] = plen[p] + s[i].ntokens - 1;
          hs.step[r] = s[i].ntokens;
          hs.slot[r] = i;
          hs.pslot[r] = p * n;
          hs.plen[r] = plen[p];
          hs.key[r] = keys[i];
          if (maxnew - s[i].ntokens > remaining) remaining = maxnew - s[i].ntokens;
        } else {
          hs.tok[r] = 0; hs.pos[r] = 0; hs.step[r] = 0; hs.slot[r] = nslots; hs.pslot[r] = nslots;
          hs.plen[r] = 0; hs.key[r] = 0;
        }
        hs.lrow[r] = r;
      }
      if ((rc = gen_upload(e))) goto fail;
      cudaGraphExec_t ge = NULL;
      if (use_graph) {
        for (int k = 0; k < ngraphs; k++) if (graph_b[k] == Bp) ge = graphs[k];
        if (!ge && ngraphs < GEN_MAX_GRAPHS) {
          if (e->lt_mode > 0 && (rc = gen_plan_bucket(e, Bp))) goto fail;
          if (e->mma_tune && (rc = gen_tune(e, Bp))) goto fail;
          if (gen_capture(e, Bp, &sp, &ge) == 0) {
            graphs[ngraphs] = ge;
            graph_b[ngraphs++] = Bp;
          } else {
            use_graph = false; /* replay eagerly from now on */
            cf_error_clear();
            ge = NULL;
          }
        }
      }
      int kw = remaining < GEN_KW ? remaining : GEN_KW;
      for (int w = 0; w < kw; w++) {
        if (ge) rc = cu_check(cudaGraphLaunch(ge, e->st), "generate: graph launch");
        else rc = gen_step(e, Bp, &sp);
        if (rc) goto fail;
        if ((rc = cu_check(cudaMemcpyAsync(ring + (size_t)w * e->Bmax, e->out, (size_t)Bp * sizeof(gen_out),
                                           cudaMemcpyDeviceToHost, e->st), "generate: tokens")) ||
            (e->score_t > 0 &&
             (rc = cu_check(cudaMemcpyAsync(sring + (size_t)w * e->Bmax, e->score, (size_t)Bp * sizeof(double),
                                            cudaMemcpyDeviceToHost, e->st), "generate: scores"))))
          goto fail;
      }
      STAGE("host_wait");
      rc = cu_check(cudaStreamSynchronize(e->st), "generate: decode");
      STAGE(NULL);
      if (rc) goto fail;
      for (int w = 0; w < kw; w++)
        for (int r = 0; r < na; r++) {
          int i = act[r];
          if (done[i]) continue;
          gen_out go = ring[(size_t)w * e->Bmax + r];
          if (go.tok < 0 || go.tok >= e->V) { rc = gen_bad_token(go.tok, s[i].ntokens, i, n); goto fail; }
          s[i].tokens[s[i].ntokens] = go.tok;
          s[i].logprobs[s[i].ntokens] = go.lp;
          s[i].ntokens++;
          s[i].logprob += go.lp;
          if (e->score_t > 0) s[i].score_logprob += sring[(size_t)w * e->Bmax + r];
          last[i] = go.tok;
          if (cf_gen_is_stop(m, o, go.tok)) { done[i] = true; s[i].finish = CF_FINISH_STOP; }
          else if (s[i].ntokens >= maxnew) done[i] = true;
        }
    }
  }
  for (int k = 0; k < ngraphs; k++) cudaGraphExecDestroy(graphs[k]);
  gen_release(e);
  cf_prof_set_phase(phase0);
  free(done); free(last); free(act); free(keys);
  *out = s;
  return 0;
fail:
  if (rc == 0) rc = -1;
  for (int k = 0; k < ngraphs; k++) cudaGraphExecDestroy(graphs[k]);
  gen_release(e);
  cf_prof_set_phase(phase0);
  free(done); free(last); free(act); free(keys);
  cf_gen_samples_free(s, nslots);
  return rc;
}
