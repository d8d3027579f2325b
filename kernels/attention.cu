/* attention.cu - fused scaled-dot-product attention on the GPU, forward and backward, causal and
 * grouped-query, with an optional mask (any dtype, broadcast to [B, Hq, T, S], nonzero = keep).
 *
 *   q [B,Hq,T,D], k [B,Hkv,S,D], v [B,Hkv,S,Dv] (Hq a multiple of Hkv, D, Dv <= 128), any strides
 *   with a unit last-dim stride (else a contiguous copy); out [B,Hq,T,Dv] contiguous.
 *   Causal: key s is visible to query t when s <= t + (S - T) (queries aligned to the end of the
 *   keys, as with a KV cache). A query row with no visible key gives zeros and zero gradients; a
 *   row with a NaN score among its visible keys is NaN, and so is its gradient (as on the CPU).
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

/* A kernel's dynamic shared memory (the launch's byte count), floats; the CPU emulation
 * (tests/c/test_attention_emu.cpp) defines its own */
#define AT_SMEM(name) extern __shared__ float name[]
#include "kernels/attention.cuh"

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
  size_t smem = at_fwd_smem(g);
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
    size_t smem = at_dq_smem(g);
    if (at_smem(attn_dq_kernel<T>, smem, "attention backward")) return -1;
    dim3 grid((unsigned)((g.T + AT_BQ - 1) / AT_BQ), (unsigned)g.Hq, (unsigned)g.B);
    attn_dq_kernel<T><<<grid, AT_WARPS * 32, smem, cu_stream()>>>((T *)cf_tensor_data(gq), q, k, v, dO, lse, Di, g);
    if (cu_launched("attention backward (dq)")) return -1;
  }
  if (gk || gv) {
    size_t smem = at_dkv_smem(g);
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
