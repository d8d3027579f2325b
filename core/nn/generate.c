/* generate.c - the CPU KV-cache sampler (see generate.h).
 *
 * Data layout: the model's f32 weights are used in place ([out, in] row-major, so a projection
 * of rows X [A, in] is one sgemm X W^T). The cache holds, per layer and per sample slot,
 * K and V as [kv_heads][capacity][head_dim]. A "step" takes A rows, each (slot, position,
 * token), writes their K/V into the cache first and then lets each row attend to positions
 * 0..pos of its own slot: prefill (many rows of one slot) and decode (one row per slot) are
 * the same code. LM-head logits are computed only for the rows that need a next token.
 */
#include "generate.h"
#include "../error.h"
#include "../interrupt.h"
#include "../profile.h"
#include "../rng.h"
#include "../rope_freq.h"
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
  int64_t capacity;           /* positions per slot */
  float **k, **v;             /* [layer] -> [slots][kvh][capacity][hd] */
} kv_cache;

typedef struct {
  const cf_qwen2 *m;
  int D, F, H, KVH, hd, V;
  int64_t nslots;
  kv_cache kv;
  float *rope_cs;             /* [capacity][hd/2] cos then [capacity][hd/2] sin, rounded to f32 */
} engine;

static const float *W(const cf_tensor *t) { return t ? (const float *)cf_tensor_data(t) : NULL; }

static int check_weights(const cf_qwen2 *m) {
  for (int i = 0; i < m->nparams; i++) {
    const cf_tensor *t = *m->slots[i];
    const char *bad = cf_tensor_device(t) != CF_DEVICE_CPU ? "it is not on the CPU"
                      : t->dtype != CF_DTYPE_F32           ? "its dtype is not f32"
                      : !cf_tensor_is_contiguous(t)        ? "it is not contiguous"
                                                           : NULL;
    if (bad) {
      char b[128];
      return CF_ERR("generate: parameter %s must be a contiguous f32 CPU tensor: %s (%s %s on %s%s)", m->names[i],
                    bad, cf_dtype_name(t->dtype), cf_shape_str(t, b, sizeof b), cf_device_name(cf_tensor_device(t)),
                    cf_tensor_is_contiguous(t) ? "" : ", strided");
    }
  }
  return 0;
}

/* y[r, j] = dot(w[j, :], x[r, :]) for j < nb, r < A (w: nb rows of length in; y row stride ldy).
 * Sixteen independent lanes then a fixed-order sum: the compiler vectorizes the lanes, and each
 * output's summation order depends only on `in`, never on A or on how rows are blocked, so a
 * row gives bitwise the same result alone or batched. Cloned for AVX2 where the CPU has it. */
__attribute__((target_clones("avx2", "default")))
static void matvec_block(const float *w, int nb, int in, const float *x, int A, float *y, int ldy) {
  int in16 = in / 16 * 16;
  for (int j = 0; j < nb; j++) {
    const float *wj = w + (size_t)j * in;
    for (int r = 0; r < A; r++) {
      const float *xr = x + (size_t)r * in;
      float acc[16] = {0};
      for (int k = 0; k < in16; k += 16)
        for (int l = 0; l < 16; l++) acc[l] += wj[k + l] * xr[k + l];
      for (int k = in16; k < in; k++) acc[k - in16] += wj[k] * xr[k];
      for (int l = 0; l < 8; l++) acc[l] += acc[l + 8];
      for (int l = 0; l < 4; l++) acc[l] += acc[l + 4];
      y[(size_t)r * ldy + j] = (acc[0] + acc[2]) + (acc[1] + acc[3]);
    }
  }
}

/* y[A, out] = x[A, in] @ w[out, in]^T (+ b)
 *
 * Decoding a few rows is a matrix-vector product per weight, bound by reading the weights from
 * memory once. OpenBLAS's sgemm with M = 1 packs the whole transposed weight first, and its
 * sgemv reached about half the single-core read bandwidth on the dev machine, so up to
 * GEMV_ROWS rows take matvec_block over blocks of output rows, and larger A (prefill, wide
 * batches) take sgemm. Either way the output dim is split over OpenMP threads with OpenBLAS
 * itself single-threaded, the one-thread-pool rule of core/cpu/linalg.c (OpenBLAS's own pool
 * spinning beside the OpenMP one oversubscribes the cores). */
#define GEMV_ROWS 4
#define GEMV_BLOCK 64            /* output rows per parallel task */
#define PAR_MIN_WORK (1 << 16)   /* A x in x out below which one thread does it all */

static void linear(const float *x, const float *w, const float *b, float *y, int A, int in, int out) {
  if (A <= 0 || out <= 0) return;
  if (openblas_get_num_threads() != 1) openblas_set_num_threads(1);
  double work = (double)A * in * out;
  int nth = omp_in_parallel() || work < PAR_MIN_WORK ? 1 : omp_get_max_threads();
  if (A <= GEMV_ROWS) {
    int nblk = (out + GEMV_BLOCK - 1) / GEMV_BLOCK;
    #pragma omp parallel for schedule(static) num_threads(nth) if (nth > 1 && nblk > 1)
    for (int blk = 0; blk < nblk; blk++) {
      int j0 = blk * GEMV_BLOCK, nb = out - j0 < GEMV_BLOCK ? out - j0 : GEMV_BLOCK;
      matvec_block(w + (size_t)j0 * in, nb, in, x, A, y + j0, out);
    }
  } else {
    /* one column block (a multiple of 16 outputs) per thread: cf_cpu_gemm's split, made here at
     * this file's lower threshold, so each block calls OpenBLAS (one thread) directly */
    int blk = (out + nth - 1) / nth;
    blk = (blk + 15) / 16 * 16;
    int nblk = (out + blk - 1) / blk;
    #pragma omp parallel for schedule(static) num_threads(nth) if (nblk > 1)
    for (int bi = 0; bi < nblk; bi++) {
      int j0 = bi * blk, nb = out - j0 < blk ? out - j0 : blk;
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, A, nb, in, 1.0f, x, in,
                  w + (size_t)j0 * in, in, 0.0f, y + j0, out);
    }
  }
  if (b)
    for (int r = 0; r < A; r++)
      for (int j = 0; j < out; j++) y[(size_t)r * out + j] += b[j];
}

static void rmsnorm(const float *x, const float *w, float *y, int A, int D, double eps) {
  #pragma omp parallel for if (A >= 16)
  for (int r = 0; r < A; r++) {
    const float *xr = x + (size_t)r * D;
    double ss = 0;
    for (int j = 0; j < D; j++) ss += (double)xr[j] * xr[j];
    float inv = (float)(1.0 / sqrt(ss / D + eps));
    for (int j = 0; j < D; j++) y[(size_t)r * D + j] = xr[j] * inv * w[j];
  }
}

/* Rotate-half RoPE of one head vector in place at position pos; the angles' cos and sin come
 * from the table the engine fills once per call (computed in double, rounded to f32). */
static void rope(float *v, int hd, int64_t pos, const engine *e) {
  int h2 = hd / 2;
  const float *cs = e->rope_cs + (size_t)pos * h2, *sn = e->rope_cs + ((size_t)e->kv.capacity + pos) * h2;
  for (int i = 0; i < h2; i++) {
    float c = cs[i], s = sn[i];
    float a = v[i], b = v[i + h2];
    v[i] = a * c - b * s;
    v[i + h2] = b * c + a * s;
  }
}

static float *kv_at(float *base, const engine *e, int64_t slot, int h, int64_t pos) {
  return base + (((size_t)slot * e->KVH + h) * e->kv.capacity + pos) * e->hd;
}

/* out = softmax(scale * K q) V for one query head over the n cached positions of one kv head
 * (K, V: n rows of hd floats, consecutive), all in double: each score summed in index order,
 * probabilities exp(score - max) / sum, out[j] the sum over positions in order of p[s] V[s][j].
 * sc: n doubles of scratch.
 *
 * Written for speed with the same operations in the same order as the plain loops, so the same
 * bits: eight keys' dot products at a time (eight chains of additions in flight, not one), the
 * value sum sixteen outputs at a time held in registers (not reloaded for every position), and
 * the values and the next keys prefetched while the scores are summed (the cache of a decode
 * batch is far larger than the CPU's caches). A score's products are exact in double, so a
 * fused multiply-add could not change them; the value sum's (p V[s][j], rounded) must not be
 * contracted into one, and neither clone can emit it (the avx2 target has no FMA). */
#define SCORE_KEYS 8
#define VALUE_OUTS 16
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target_clones("avx2", "default")))
#endif
static void attend_head(const float *q, const float *K, const float *V, int64_t n, int hd, double scale,
                        double *sc, float *out) {
  int64_t s = 0;
  for (; s + SCORE_KEYS <= n; s += SCORE_KEYS) {
    const float *k = K + (size_t)s * hd;
    for (size_t b = 0; b < (size_t)SCORE_KEYS * hd; b += 16) {     /* a cache line: 16 floats */
      __builtin_prefetch(V + (size_t)s * hd + b);
      if (s + 2 * SCORE_KEYS <= n) __builtin_prefetch(k + (size_t)SCORE_KEYS * hd + b);
    }
    double d[SCORE_KEYS] = {0};
    for (int j = 0; j < hd; j++) {
      double qj = q[j];
      for (int t = 0; t < SCORE_KEYS; t++) d[t] += qj * k[(size_t)t * hd + j];
    }
    for (int t = 0; t < SCORE_KEYS; t++) sc[s + t] = d[t] * scale;
  }
  for (; s < n; s++) {
    const float *k = K + (size_t)s * hd;
    for (int b = 0; b < hd; b += 16) __builtin_prefetch(V + (size_t)s * hd + b);
    double d = 0;
    for (int j = 0; j < hd; j++) d += (double)q[j] * k[j];
    sc[s] = d * scale;
  }
  double mx = -INFINITY, sum = 0;
  for (s = 0; s < n; s++) if (sc[s] > mx) mx = sc[s];
  for (s = 0; s < n; s++) { sc[s] = exp(sc[s] - mx); sum += sc[s]; }
  for (s = 0; s < n; s++) sc[s] = sc[s] / sum;
  int j0 = 0;
  for (; j0 + VALUE_OUTS <= hd; j0 += VALUE_OUTS) {
    double acc[VALUE_OUTS] = {0};
    for (s = 0; s < n; s++) {
      const float *v = V + (size_t)s * hd + j0;
      double p = sc[s];
      for (int t = 0; t < VALUE_OUTS; t++) acc[t] += p * v[t];
    }
    for (int t = 0; t < VALUE_OUTS; t++) out[j0 + t] = (float)acc[t];
  }
  for (; j0 < hd; j0++) {
    double acc = 0;
    for (s = 0; s < n; s++) acc += sc[s] * V[(size_t)s * hd + j0];
    out[j0] = (float)acc;
  }
}

/* One pass of A rows through the layers. Writes final-norm hidden states of all rows to hout. */
static int forward_rows(engine *e, int A, const int64_t *slot, const int64_t *pos,
                        const int64_t *tok, float *hout) {
  const cf_qwen2 *m = e->m;
  const cf_qwen2_config *c = &m->cfg;
  int D = e->D, F = e->F, H = e->H, KVH = e->KVH, hd = e->hd;
  int Q = H * hd, KV = KVH * hd;
  size_t big = (size_t)A * (size_t)(F > Q ? (F > D ? F : D) : (Q > D ? Q : D));
  float *x = malloc((size_t)A * D * sizeof *x), *h = malloc((size_t)A * D * sizeof *h);
  float *q = malloc((size_t)A * Q * sizeof *q), *k = malloc((size_t)A * KV * sizeof *k);
  float *v = malloc((size_t)A * KV * sizeof *v), *att = malloc((size_t)A * Q * sizeof *att);
  float *g = malloc(big * sizeof *g), *u = malloc(big * sizeof *u);
  /* attention runs at most A * H (row, head) tasks: no more threads than that */
  int nth = omp_get_max_threads();
  if ((int64_t)nth > (int64_t)A * H) nth = A * H;
  if (nth < 1) nth = 1;
  size_t per_thread = (size_t)e->kv.capacity;
  double *scratch = malloc((size_t)nth * per_thread * sizeof *scratch);
  int rc = 0;
  if (!x || !h || !q || !k || !v || !att || !g || !u || !scratch) { rc = CF_ERR("generate: out of memory for %d rows", A); goto done; }
  int st = -1; /* the open profiler stage (profile.h) */
  cf_prof_next(&st, "embed");
  const float *emb = W(m->embed);
  for (int r = 0; r < A; r++) memcpy(x + (size_t)r * D, emb + (size_t)tok[r] * D, (size_t)D * sizeof *x);
  for (int l = 0; l < c->layers; l++) {
    const cf_qwen2_layer *L = &m->layer[l];
    cf_prof_next(&st, "rmsnorm");
    rmsnorm(x, W(L->in_norm), h, A, D, c->rms_eps);
    cf_prof_next(&st, "qkv");
    linear(h, W(L->q_w), W(L->q_b), q, A, D, Q);
    linear(h, W(L->k_w), W(L->k_b), k, A, D, KV);
    linear(h, W(L->v_w), W(L->v_b), v, A, D, KV);
    float *K = e->kv.k[l], *Vc = e->kv.v[l];
    cf_prof_next(&st, "rope_kv");
    for (int r = 0; r < A; r++) {
      for (int hh = 0; hh < H; hh++) rope(q + (size_t)r * Q + (size_t)hh * hd, hd, pos[r], e);
      for (int hh = 0; hh < KVH; hh++) {
        float *kr = k + (size_t)r * KV + (size_t)hh * hd;
        rope(kr, hd, pos[r], e);
        memcpy(kv_at(K, e, slot[r], hh, pos[r]), kr, (size_t)hd * sizeof *kr);
        memcpy(kv_at(Vc, e, slot[r], hh, pos[r]), v + (size_t)r * KV + (size_t)hh * hd, (size_t)hd * sizeof *kr);
      }
    }
    double scale = 1.0 / sqrt((double)hd);
    int group = H / KVH;
    cf_prof_next(&st, "attention");
    #pragma omp parallel for collapse(2) schedule(dynamic) num_threads(nth)
    for (int r = 0; r < A; r++) {
      for (int hh = 0; hh < H; hh++) {
        const float *qr = q + (size_t)r * Q + (size_t)hh * hd;
        int kvh = hh / group;
        int64_t n = pos[r] + 1;
        float *out = att + (size_t)r * Q + (size_t)hh * hd;
        /* this thread's scratch: the scores [capacity] */
        double *sc = scratch + (size_t)omp_get_thread_num() * per_thread;
        attend_head(qr, kv_at(K, e, slot[r], kvh, 0), kv_at(Vc, e, slot[r], kvh, 0), n, hd, scale, sc, out);
      }
    }
    cf_prof_next(&st, "o_proj");
    linear(att, W(L->o_w), NULL, h, A, Q, D);
    for (size_t i = 0; i < (size_t)A * D; i++) x[i] += h[i];
    cf_prof_next(&st, "rmsnorm");
    rmsnorm(x, W(L->post_norm), h, A, D, c->rms_eps);
    cf_prof_next(&st, "gate_up");
    linear(h, W(L->gate_w), NULL, g, A, D, F);
    linear(h, W(L->up_w), NULL, u, A, D, F);
    cf_prof_next(&st, "swiglu");
    for (size_t i = 0; i < (size_t)A * F; i++) { float z = g[i]; g[i] = z / (1.0f + expf(-z)) * u[i]; }
    cf_prof_next(&st, "down");
    linear(g, W(L->down_w), NULL, h, A, F, D);
    for (size_t i = 0; i < (size_t)A * D; i++) x[i] += h[i];
  }
  cf_prof_next(&st, "final_norm");
  rmsnorm(x, W(m->final_norm), hout, A, D, c->rms_eps);
  cf_prof_next(&st, NULL);
done:
  free(x); free(h); free(q); free(k); free(v); free(att); free(g); free(u); free(scratch);
  return rc;
}

/* Truncation ranks the candidates by a key: the logit's bits mapped to an unsigned order (larger
 * logit, larger key; +0 above -0, as the GPU sampler's fkey), then the id, smaller first; larger
 * keys first. The logit order is the probability order wherever the double probabilities differ,
 * and breaks their ties as exact arithmetic would; the order is total, so any prefix of the sorted
 * vocabulary sorts to the same sequence whether it is sorted alone or with the rest. */
static inline uint64_t cand_key(const float *logits, int64_t i) { /* ids below 2^32 */
  uint32_t b;
  memcpy(&b, &logits[i], sizeof b);
  uint32_t k = (b & 0x80000000u) ? ~b : (b | 0x80000000u);
  return ((uint64_t)k << 32) | (uint32_t)(0xFFFFFFFFu - (uint32_t)i);
}
static inline int64_t cand_id(uint64_t key) { return (int64_t)(0xFFFFFFFFu - (uint32_t)key); }

/* Sorts the keys k[0..n), largest first. */
static void sort_keys(uint64_t *k, int64_t n) {
  for (int64_t gap = n / 2; gap > 0; gap /= 2)
    for (int64_t i = gap; i < n; i++) {
      uint64_t t = k[i];
      int64_t j = i;
      while (j >= gap && k[j - gap] < t) { k[j] = k[j - gap]; j -= gap; }
      k[j] = t;
    }
}

/* A running sum of probabilities "reaches" top_p when it is within TOP_P_SLACK of it: ten tied
 * tokens of probability 0.1 add up to 0.7999999999999999 after eight, which top_p = 0.8 must keep
 * as reached (exactly, it is 0.8), not take a ninth. */
#define TOP_P_SLACK 1e-12

/* How many of the sorted candidates k[0..n) (probabilities p by id) top-k / top-p keep: the
 * first keep, cut where the running sum first reaches top_p of their mass (with top-k, keep < the
 * vocabulary and k holding all keep, top_p counts among the top-k ids renormalised, as Hugging
 * Face's and vLLM's samplers do; without it, the mass is the whole vocabulary's, 1). *reached:
 * the sum reached the cut (or top_p is off). */
static int64_t nucleus(const double *p, const uint64_t *k, int64_t n, int64_t keep, bool top_k, double top_p,
                       bool *reached) {
  if (keep > n) keep = n;
  *reached = !(top_p < 1.0);
  if (*reached) return keep;
  double mass = 1.0;
  if (top_k) {
    mass = 0;
    for (int64_t i = 0; i < keep; i++) mass += p[cand_id(k[i])];
  }
  double cum = 0, cut = top_p * mass - TOP_P_SLACK;
  for (int64_t i = 0; i < keep; i++) {
    cum += p[cand_id(k[i])];
    if (cum >= cut) { *reached = true; return i + 1; }
  }
  return keep;
}

#define SAMPLE_BUCKETS 64

/* (logit - c) / T in double, c the largest logit */
static inline double scaled(const float *logits, int64_t i, double c, double T) { return (logits[i] - c) / T; }

/* The probability p[i] of id i in the draw: all are kept without truncation (last 0); with it,
 * those whose key is at least `last`, the last kept's; 0 for the others. */
static inline double kept_p(const float *logits, const double *p, uint64_t last, int64_t i) {
  return last == 0 || cand_key(logits, i) >= last ? p[i] : 0.0;
}

/* Returns the token, or -1 with a message when the logits hold NaN or +inf, or only -inf.
 * Any T > 0 samples softmax(logits / T), computed as z = (logit - max) / T, p = exp(z) / sum
 * exp(z), log-prob z - log(sum): for a tiny T the draw is one-hot, or uniform over tied maxima
 * with log-prob -log(ties). (Until the seventeenth session the logits were shifted only where
 * max / T overflowed: at T = 1e-16 a large but finite max / T swallowed log(sum), every tied
 * maximum got p = 1 and log-prob 0, and top_p kept the first alone.) */
int64_t cf_sample_token(const float *logits, int64_t V, double temperature, int top_k,
                        double top_p, double u, double *logprob, int64_t *idx, double *p) {
  int64_t best = 0;
  for (int64_t i = 0; i < V; i++) {
    if (!(logits[i] < INFINITY))              /* NaN or +inf, checked in the pass for the maximum */
      return CF_ERR("non-finite logits: id %lld is %s", (long long)i, isnan(logits[i]) ? "nan" : "inf");
    if (logits[i] > logits[best]) best = i;
  }
  if (logits[best] == -INFINITY) return CF_ERR("non-finite logits: every logit is -inf");
  double T = temperature > 0 ? temperature : 1.0;
  double c = logits[best], sum = 0;
  for (int64_t i = 0; i < V; i++) { p[i] = exp(scaled(logits, i, c, T)); sum += p[i]; }  /* normalised below */
  double lse = log(sum);
  if (temperature <= 0) { *logprob = scaled(logits, best, c, T) - lse; return best; }
  /* Truncation (top-k, top-p) keeps a prefix of the vocabulary sorted by probability (by logit,
   * cand_key). Sorting all V (151,936 for Qwen) every token dominated CPU sampling, so only a
   * prefix that surely holds the kept tokens is sorted: the ids whose probability is within 2^-b
   * of the largest, b the first power that holds at least top_k ids (with top-k; top_p then cuts
   * among them) or else top_p of the mass (one pass buckets the ids by b). The sort order is total, so the kept tokens, their order and
   * every sum are those of sorting all V; if the running sum misses top_p inside the prefix
   * (rounding), the whole vocabulary is sorted. The kept tokens are then drawn from in id order,
   * as without truncation and as the GPU does, so that the same u picks the same token on both. */
  int64_t n = V;
  uint64_t last = 0; /* truncation: the last kept candidate's key (no key is 0) */
  for (int64_t i = 0; i < V; i++) p[i] = p[i] / sum; /* ties: equal, 1/k exactly */
  if (top_k > 0 || top_p < 1.0) {
    uint64_t *key = (uint64_t *)idx; /* the caller's V int64 of workspace */
    bool by_k = top_k > 0 && top_k < V;
    int64_t keep = by_k ? top_k : V;
    double pmax = p[best];
    int64_t count[SAMPLE_BUCKETS] = {0};
    double mass[SAMPLE_BUCKETS] = {0};
    for (int64_t i = 0; i < V; i++) {
      int e, b = SAMPLE_BUCKETS - 1;
      if (p[i] > 0) {
        frexp(p[i] / pmax, &e);                 /* p / pmax in [2^(e-1), 2^e) */
        b = 1 - e < SAMPLE_BUCKETS - 1 ? 1 - e : SAMPLE_BUCKETS - 1;
      }
      count[b]++;
      mass[b] += p[i];
    }
    int B = SAMPLE_BUCKETS - 1;
    int64_t cc = 0;
    double cm = 0;
    for (int b = 0; b < SAMPLE_BUCKETS - 1; b++) {
      cc += count[b];
      cm += mass[b];
      /* with top-k, the prefix holds all keep ids (top_p's cut counts among them) */
      if (cc >= keep || (!by_k && top_p < 1.0 && cm >= top_p - TOP_P_SLACK)) { B = b; break; }
    }
    int64_t m = 0;
    if (B < SAMPLE_BUCKETS - 1) {
      for (int64_t i = 0; i < V; i++) {
        int e;
        if (p[i] > 0 && (frexp(p[i] / pmax, &e), 1 - e <= B)) key[m++] = cand_key(logits, i);
      }
    } else {
      for (m = 0; m < V; m++) key[m] = cand_key(logits, m);
    }
    bool reached;
    sort_keys(key, m);
    n = nucleus(p, key, m, keep, by_k, top_p, &reached);
    if (!reached && m < keep && m < V) {        /* the prefix fell short: sort everything */
      for (int64_t i = 0; i < V; i++) key[i] = cand_key(logits, i);
      sort_keys(key, V);
      n = nucleus(p, key, V, keep, by_k, top_p, &reached);
    }
    last = key[n - 1];
  }
  /* the inverse CDF at u over the kept ids in id order; past the end (rounding), the last with
   * probability */
  double total = 0;
  for (int64_t i = 0; i < V; i++) total += kept_p(logits, p, last, i);
  double target = u * total, cum = 0;
  int64_t pick = -1;
  for (int64_t i = 0; i < V; i++) {
    double q = kept_p(logits, p, last, i);
    if (!(q > 0)) continue;
    pick = i;
    cum += q;
    if (target < cum) break;
  }
  *logprob = scaled(logits, pick, c, T) - lse;
  return pick;
}

/* one step of splitmix64 (its increment and finaliser) */
static uint64_t mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

uint64_t cf_gen_key(uint64_t seed, int prompt, int j) {
  return mix64(seed ^ mix64(((uint64_t)(uint32_t)prompt << 32) | (uint32_t)j));
}

static double draw(uint64_t seed, int prompt, int j, int step) {
  uint32_t w[4];
  cf_philox((uint64_t)step, cf_gen_key(seed, prompt, j), w);
  return (double)(((uint64_t)(w[0] >> 5) << 26) | (w[1] >> 6)) * (1.0 / 9007199254740992.0);
}

bool cf_gen_is_stop(const cf_qwen2 *m, const cf_gen_opts *o, int64_t t) {
  if (!o->ignore_eos)
    for (int i = 0; i < m->cfg.n_eos; i++) if (m->cfg.eos[i] == t) return true;
  for (int i = 0; i < o->nstop; i++) if (o->stop[i] == t) return true;
  return false;
}

/* log_softmax(logits / T)[tok] in double, c the largest logit (the sampler's own arithmetic) */
static double score_token(const float *logits, int64_t V, double T, int64_t tok) {
  float c = logits[0];
  for (int64_t i = 1; i < V; i++) if (logits[i] > c) c = logits[i];
  double sum = 0;
  for (int64_t i = 0; i < V; i++) sum += exp(scaled(logits, i, c, T));
  return scaled(logits, tok, c, T) - log(sum);
}

static int push_token(cf_gen_sample *s, int64_t tok, double lp, int cap) {
  if (s->ntokens >= cap) return 0;
  s->tokens[s->ntokens] = tok;
  s->logprobs[s->ntokens] = (float)lp;
  s->ntokens++;
  s->logprob += lp;
  return 0;
}

void cf_gen_samples_free(cf_gen_sample *s, int n) {
  if (!s) return;
  for (int i = 0; i < n; i++) { free(s[i].tokens); free(s[i].logprobs); }
  free(s);
}

/* cf_sample_token's message, with where generation stood */
static int bad_logits(int step, int64_t i, int n) {
  return cf_error_prefix("generate: token %d of sample %lld (prompt %lld): ", step + 1, (long long)(i % n + 1),
                         (long long)(i / n + 1));
}

static int check_opts(const cf_qwen2 *m, const int64_t *const *prompts, const int *plen, int np,
                      const cf_gen_opts *o) {
  if (o->n < 1) return CF_ERR("generate: n must be >= 1 (got %d)", o->n);
  if (o->max_new_tokens < 0) return CF_ERR("generate: max_new_tokens must be >= 0 (got %d)", o->max_new_tokens);
  if (!(o->temperature >= 0) || !isfinite(o->temperature))
    return CF_ERR("generate: temperature must be a finite number >= 0 (got %g)", cf_msgnum(o->temperature));
  if (!(o->top_p > 0 && o->top_p <= 1)) return CF_ERR("generate: top_p must be in (0, 1] (got %.15g)", cf_msgnum(o->top_p));
  if (o->top_k < 0) return CF_ERR("generate: top_k must be >= 0 (got %d)", o->top_k);
  for (int p = 0; p < np; p++) {
    if (plen[p] < 1) return CF_ERR("generate: prompt %d is empty", p + 1);
    /* a bad id first: the context error would hide it */
    for (int t = 0; t < plen[p]; t++)
      if (prompts[p][t] < 0 || prompts[p][t] >= m->cfg.vocab)
        return CF_ERR("generate: prompt %d token %d is id %lld, outside the vocabulary [0, %d)", p + 1,
                      t + 1, (long long)prompts[p][t], m->cfg.vocab);
    if ((int64_t)plen[p] + o->max_new_tokens > m->cfg.max_pos) /* (in int it could wrap) */
      return CF_ERR("generate: prompt %d (%d tokens) + max_new_tokens %d exceeds max_position_embeddings %d",
                    p + 1, plen[p], o->max_new_tokens, m->cfg.max_pos);
  }
  return 0;
}

int cf_qwen2_generate(cf_qwen2 *m, const int64_t *const *prompts, const int *plen, int np,
                      const cf_gen_opts *o, cf_gen_sample **out) {
  *out = NULL;
  if (np < 0) return CF_ERR("generate: negative prompt count");
  if (check_opts(m, prompts, plen, np, o)) return -1;
  if (cf_tensor_device(m->embed) == CF_DEVICE_CUDA) {
    if (!cf_cuda_qwen2_generate) return CF_ERR("generate: the model is on CUDA but this build has no CUDA");
    return cf_cuda_qwen2_generate(m, prompts, plen, np, o, out);
  }
  if (check_weights(m)) return -1;
  const cf_qwen2_config *c = &m->cfg;
  const char *phase0 = cf_prof_set_phase("gen.prefill");
  int st = -1; /* the open profiler stage */
  engine e;
  memset(&e, 0, sizeof e);
  e.m = m;
  e.D = c->hidden; e.F = c->intermediate; e.H = c->heads; e.KVH = c->kv_heads; e.hd = c->head_dim;
  e.V = c->vocab;
  int n = o->n;
  e.nslots = (int64_t)np * n;
  int maxp = 0;
  int64_t total_prompt = 0;
  for (int p = 0; p < np; p++) { if (plen[p] > maxp) maxp = plen[p]; total_prompt += plen[p]; }
  e.kv.capacity = maxp + o->max_new_tokens;
  int rc = 0;
  /* What the buffers below will hold once touched (the KV cache, every sample's logits, hidden
   * rows and tokens): more than the machine's memory ended in the kernel's out-of-memory kill
   * (allocations succeed under overcommit and fail only as pages are touched), so it is refused
   * here, said in numbers (before the twenty-second session: a killed process, nothing printed). */
  {
    double slots = (double)e.nslots, rows = (double)(total_prompt > e.nslots ? total_prompt : e.nslots);
    double kv = 2.0 * c->layers * slots * e.KVH * (double)e.kv.capacity * e.hd * sizeof(float);
    double need = kv + slots * (e.V + e.D) * 4.0 + rows * (e.D * 4.0 + 24.0) + slots * o->max_new_tokens * 12.0;
    double have = (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGESIZE);
    if (have > 0 && need > have)
      return CF_ERR("generate: out of memory: %lld samples (%d prompt%s x n %d) of up to %lld positions need about "
                    "%.1f GB (the KV cache %.1f GB), more than this machine's %.1f GB: generate fewer samples, or "
                    "fewer new tokens, at a time", (long long)e.nslots, np, np == 1 ? "" : "s", n,
                    (long long)e.kv.capacity, need / 1e9, kv / 1e9, have / 1e9);
  }
  cf_gen_sample *s = calloc((size_t)(e.nslots ? e.nslots : 1), sizeof *s);
  e.kv.k = calloc((size_t)c->layers, sizeof *e.kv.k);
  e.kv.v = calloc((size_t)c->layers, sizeof *e.kv.v);
  e.rope_cs = malloc(((size_t)e.kv.capacity * (e.hd / 2) * 2 + 1) * sizeof *e.rope_cs);
  size_t per_layer = (size_t)e.nslots * e.KVH * (size_t)e.kv.capacity * e.hd;
  int64_t rows_cap = total_prompt > e.nslots ? total_prompt : e.nslots;
  int64_t *rslot = malloc((size_t)(rows_cap + 1) * sizeof *rslot);
  int64_t *rpos = malloc((size_t)(rows_cap + 1) * sizeof *rpos);
  int64_t *rtok = malloc((size_t)(rows_cap + 1) * sizeof *rtok);
  float *hid = malloc((size_t)(rows_cap + 1) * e.D * sizeof *hid);
  float *logits = malloc((size_t)(e.nslots + 1) * e.V * sizeof *logits);
  float *hsel = malloc((size_t)(e.nslots + 1) * e.D * sizeof *hsel);
  int64_t *sidx = malloc((size_t)e.V * sizeof *sidx);
  double *sp = malloc((size_t)e.V * sizeof *sp);
  bool *done = calloc((size_t)(e.nslots + 1), sizeof *done);
  int64_t *last = calloc((size_t)(e.nslots + 1), sizeof *last);
  if (!s || !e.kv.k || !e.kv.v || !e.rope_cs || !rslot || !rpos || !rtok || !hid || !logits ||
      !hsel || !sidx || !sp || !done || !last) {
    rc = CF_ERR("generate: out of memory");
    goto done;
  }
  for (int l = 0; l < c->layers; l++) {
    e.kv.k[l] = malloc((per_layer ? per_layer : 1) * sizeof(float));
    e.kv.v[l] = malloc((per_layer ? per_layer : 1) * sizeof(float));
    if (!e.kv.k[l] || !e.kv.v[l]) {
      rc = CF_ERR("generate: out of memory for the KV cache (%zu bytes per layer: %lld samples x %lld positions)",
                  2 * per_layer * sizeof(float), (long long)e.nslots, (long long)e.kv.capacity);
      goto done;
    }
  }
  for (int i = 0; i < e.hd / 2; i++) {
    cf_rope_scaling sc = {c->rope_scaling[0], c->rope_scaling[1], c->rope_scaling[2], c->rope_scaling[3]};
    double inv = cf_rope_inv_freq(c->rope_theta, i, e.hd, sc);
    for (int64_t p = 0; p < e.kv.capacity; p++) {
      double ang = (double)p * inv;
      e.rope_cs[(size_t)p * (e.hd / 2) + i] = (float)cos(ang);
      e.rope_cs[((size_t)e.kv.capacity + p) * (e.hd / 2) + i] = (float)sin(ang);
    }
  }
  int cap = o->max_new_tokens;
  for (int64_t i = 0; i < e.nslots; i++) {
    s[i].prompt = (int)(i / n);
    s[i].tokens = malloc((size_t)(cap ? cap : 1) * sizeof *s[i].tokens);
    s[i].logprobs = malloc((size_t)(cap ? cap : 1) * sizeof *s[i].logprobs);
    if (!s[i].tokens || !s[i].logprobs) { rc = CF_ERR("generate: out of memory"); goto done; }
    s[i].finish = CF_FINISH_LENGTH;
  }
  /* Prefill: every prompt into the slot of its first sample. */
  int64_t A = 0;
  for (int p = 0; p < np; p++)
    for (int t = 0; t < plen[p]; t++) { rslot[A] = (int64_t)p * n; rpos[A] = t; rtok[A] = prompts[p][t]; A++; }
  if (np > 0 && cap > 0) {
    if ((rc = forward_rows(&e, (int)A, rslot, rpos, rtok, hid))) goto done;
    /* copy each prompt's cache to its other samples, and take its last hidden row */
    int64_t r = 0;
    for (int p = 0; p < np; p++) {
      r += plen[p];
      for (int l = 0; l < c->layers; l++)
        for (int j = 1; j < n; j++)
          for (int hh = 0; hh < e.KVH; hh++) {
            size_t bytes = (size_t)plen[p] * e.hd * sizeof(float);
            memcpy(kv_at(e.kv.k[l], &e, (int64_t)p * n + j, hh, 0), kv_at(e.kv.k[l], &e, (int64_t)p * n, hh, 0), bytes);
            memcpy(kv_at(e.kv.v[l], &e, (int64_t)p * n + j, hh, 0), kv_at(e.kv.v[l], &e, (int64_t)p * n, hh, 0), bytes);
          }
      memcpy(hsel + (size_t)p * e.D, hid + (size_t)(r - 1) * e.D, (size_t)e.D * sizeof *hsel);
    }
    cf_prof_next(&st, "lm_head");
    linear(hsel, W(m->lm_head), NULL, logits, np, e.D, e.V);
    cf_prof_next(&st, "sample");
    for (int64_t i = 0; i < e.nslots; i++) {
      const float *lg = logits + (size_t)(i / n) * e.V;
      double lp;
      double u = draw(o->seed, (int)(i / n), (int)(i % n), 0);
      int64_t tok = cf_sample_token(lg, e.V, o->temperature, o->top_k, o->top_p, u, &lp, sidx, sp);
      if (tok < 0) { rc = bad_logits(0, i, n); goto done; }
      push_token(&s[i], tok, lp, cap);
      if (o->score_temperature > 0) s[i].score_logprob += score_token(lg, e.V, o->score_temperature, tok);
      last[i] = tok;
      if (cf_gen_is_stop(m, o, tok)) { done[i] = true; s[i].finish = CF_FINISH_STOP; }
      else if (s[i].ntokens >= cap) done[i] = true;
    }
  } else {
    for (int64_t i = 0; i < e.nslots; i++) done[i] = true;
  }
  /* Decode. */
  cf_prof_next(&st, NULL);
  cf_prof_set_phase("gen.decode");
  for (int step = 1; step < cap; step++) {
    if (cf_interrupt_pending()) {
      for (int64_t i = 0; i < e.nslots; i++) if (!done[i]) { done[i] = true; s[i].finish = CF_FINISH_INTERRUPTED; }
      break;
    }
    A = 0;
    for (int64_t i = 0; i < e.nslots; i++) {
      if (done[i]) continue;
      rslot[A] = i;
      rpos[A] = plen[i / n] + s[i].ntokens - 1;
      rtok[A] = last[i];
      A++;
    }
    if (A == 0) break;
    cf_prof_next(&st, NULL);
    if ((rc = forward_rows(&e, (int)A, rslot, rpos, rtok, hid))) goto done;
    cf_prof_next(&st, "lm_head");
    linear(hid, W(m->lm_head), NULL, logits, (int)A, e.D, e.V);
    cf_prof_next(&st, "sample");
    for (int64_t r = 0; r < A; r++) {
      int64_t i = rslot[r];
      double lp;
      double u = draw(o->seed, (int)(i / n), (int)(i % n), step);
      int64_t tok = cf_sample_token(logits + (size_t)r * e.V, e.V, o->temperature, o->top_k,
                                    o->top_p, u, &lp, sidx, sp);
      if (tok < 0) { rc = bad_logits(step, i, n); goto done; }
      push_token(&s[i], tok, lp, cap);
      if (o->score_temperature > 0)
        s[i].score_logprob += score_token(logits + (size_t)r * e.V, e.V, o->score_temperature, tok);
      last[i] = tok;
      if (cf_gen_is_stop(m, o, tok)) { done[i] = true; s[i].finish = CF_FINISH_STOP; }
      else if (s[i].ntokens >= cap) done[i] = true;
    }
  }
done:
  cf_prof_next(&st, NULL);
  cf_prof_set_phase(phase0);
  if (e.kv.k) for (int l = 0; l < c->layers; l++) free(e.kv.k[l]);
  if (e.kv.v) for (int l = 0; l < c->layers; l++) free(e.kv.v[l]);
  free(e.kv.k); free(e.kv.v); free(e.rope_cs);
  free(rslot); free(rpos); free(rtok); free(hid); free(logits); free(hsel); free(sidx); free(sp);
  free(done); free(last);
  if (rc) { cf_gen_samples_free(s, (int)e.nslots); return rc; }
  *out = s;
  return 0;
}
