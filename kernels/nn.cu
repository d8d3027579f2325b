/* nn.cu - CUDA kernels of the transformer's ops other than attention (kernels/attention.cu):
 * embedding (+ backward as a sort and segment sum), gather (+ scatter-add), cat, stack,
 * rmsnorm (+ backward), rope (+ backward), cross_entropy, token_logprob, entropy and the chunked
 * head_logprob, each with the backward kernel core/grad_nn.c calls (declared in core/nn_bwd.h).
 *
 * Numerics: storage f32 or bf16, math and every accumulation (sums of squares, maxima, sums of
 * exponentials) in f32; rotation angles in f64 (position * theta^(-2i/D) loses digits in f32 at
 * long positions). Row kernels use one block per row and subtract the row maximum.
 * Ids and targets are range-checked on the device before anything is written (cu_check_ids:
 * one small read-back, skipped while a CUDA graph is being captured); the error names the id.
 * Determinism: the embedding gradient sums each id's rows in a fixed order (sort, then one
 * block per id), so it does not depend on scheduling; gather's backward uses atomics (fp32).
 */
#include "kernels/cuda_internal.cuh"
#include "rope_freq.h"
#include <cub/cub.cuh>
#include <float.h>
#include <limits.h>

extern "C" {
#include "nn_bwd.h" /* the declarations grad_nn.c calls: checked against the definitions */
}

/* The temperature (NaN: 1) must be > 0, finite, and such that the kernels' float scale 1 / T is
 * finite (core/kernel_geo.h; the CPU, scaling in double, takes T down to ~5.6e-309) and not 0
 * (T past ~7e45: a -inf logit times 0 would be NaN; the CPU takes any finite T) */
static int check_temperature(const char *op, double temp, double *out) {
  if (cf_check_temperature(op, temp, FLT_MAX, out)) return -1;
  if (!((float)(1.0 / *out) > 0))
    return CF_ERR("%s: temperature %g is too large (the GPU's float 1 / T is 0)", op, *out);
  return 0;
}

/* ================================================================ embedding */

// out [n, D] = w [V, D] (strides s0, s1) rows at ids [n]
template <typename T>
__global__ void __launch_bounds__(CF_CU_THREADS) embedding_kernel(T *out, const T *w, const void *ids, int idt,
                                                                  int64_t D, int64_t s0, int64_t s1) {
  int64_t i = blockIdx.x;
  int64_t id = ld_id(ids, idt, i);
  for (int64_t j = threadIdx.x; j < D; j += blockDim.x) out[i * D + j] = w[id * s0 + j * s1];
}

extern "C" int cf_cuda_embedding(cf_tensor *out, cf_tensor *const *in, int nin, const cf_args *a) {
  (void)nin; (void)a;
  cf_tensor *w = in[0];
  if (cu_check_float("embedding", w)) return -1;
  int64_t V = w->shape[0], D = w->shape[1];
  if (cu_check_ids("embedding", in[1], V, false, "id", w)) return -1;
  cf_tensor *ids = cu_contig(in[1]);
  if (!ids) return -1;
  int64_t n = cf_tensor_numel(ids);
  if (n > 0 && D > 0) {
    if (w->dtype == CF_DTYPE_F32)
      embedding_kernel<float><<<(unsigned)n, CF_CU_THREADS, 0, cu_stream()>>>((float *)cf_tensor_data(out),
          (const float *)cf_tensor_data(w), cf_tensor_data(ids), ids->dtype, D, w->stride[0], w->stride[1]);
    else
      embedding_kernel<bf16><<<(unsigned)n, CF_CU_THREADS, 0, cu_stream()>>>((bf16 *)cf_tensor_data(out),
          (const bf16 *)cf_tensor_data(w), cf_tensor_data(ids), ids->dtype, D, w->stride[0], w->stride[1]);
  }
  cf_tensor_release(ids);
  return cu_launched("embedding");
}

__global__ void iota_kernel(int64_t *v, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) v[i] = i;
}

// gw [V, D] row key[i] = sum of g [n, D] rows pos[j] over the run of equal sorted keys starting at i
template <typename T>
__global__ void __launch_bounds__(CF_CU_THREADS) segment_sum_kernel(T *gw, const T *g, const unsigned long long *key,
                                                                    const int64_t *pos, int64_t n, int64_t D) {
  int64_t i = blockIdx.x;
  if (i > 0 && key[i] == key[i - 1]) return;
  int64_t id = (int64_t)key[i], end = i;
  while (end < n && key[end] == key[i]) end++;
  for (int64_t j = threadIdx.x; j < D; j += blockDim.x) {
    float acc = 0;
    for (int64_t r = i; r < end; r++) acc += ldf(g, pos[r] * D + j);
    stf(gw, id * D + j, acc);
  }
}

/* gw [V, D] (zeroed, contiguous) = gout [ids.., D] summed per id */
extern "C" int cf_cuda_embedding_backward(cf_tensor *gw, cf_tensor *ids0, cf_tensor *gout0) {
  if (cu_check_float("embedding backward", gw)) return -1;
  int64_t V = gw->shape[0], D = gw->shape[1], n = cf_tensor_numel(ids0);
  if (n == 0 || D == 0) return 0;
  cf_tensor *ids = cu_contig(ids0), *g = cu_contig(gout0);
  cu_scratch s = {NULL, 0}, tmp = {NULL, 0};
  int rc = ids && g ? 0 : -1;
  int64_t *buf = rc == 0 ? (int64_t *)cu_scratch_get(&s, (size_t)n * 4 * sizeof(int64_t), "embedding backward") : NULL;
  if (rc == 0 && !buf) rc = -1;
  /* ids are checked non-negative: sort them as unsigned keys on the low `bits` bits */
  unsigned long long *k_in = (unsigned long long *)buf, *k_out = buf ? (unsigned long long *)buf + 2 * n : NULL;
  int64_t *v_in = buf ? buf + n : NULL, *v_out = buf ? buf + 3 * n : NULL;
  if (rc == 0) rc = cu_convert(k_in, CF_DTYPE_I64, cf_tensor_data(ids), ids->dtype, n);
  if (rc == 0) {
    iota_kernel<<<cu_blocks(n, CF_CU_THREADS), CF_CU_THREADS, 0, cu_stream()>>>(v_in, n);
    rc = cu_launched("embedding backward");
  }
  int bits = 1;
  while (bits < 63 && ((int64_t)1 << bits) < V) bits++;
  size_t tb = 0;
  if (rc == 0 && n > INT_MAX) rc = CF_ERR("embedding backward: too many ids (%lld)", (long long)n);
  if (rc == 0)
    rc = cu_check(cub::DeviceRadixSort::SortPairs(NULL, tb, k_in, k_out, v_in, v_out, (int)n, 0, bits, cu_stream()),
                  "embedding backward (sort)");
  if (rc == 0 && !cu_scratch_get(&tmp, tb, "embedding backward")) rc = -1;
  if (rc == 0)
    rc = cu_check(cub::DeviceRadixSort::SortPairs(tmp.p, tb, k_in, k_out, v_in, v_out, (int)n, 0, bits, cu_stream()),
                  "embedding backward (sort)");
  if (rc == 0) {
    if (gw->dtype == CF_DTYPE_F32)
      segment_sum_kernel<float><<<(unsigned)n, CF_CU_THREADS, 0, cu_stream()>>>((float *)cf_tensor_data(gw),
          (const float *)cf_tensor_data(g), k_out, v_out, n, D);
    else
      segment_sum_kernel<bf16><<<(unsigned)n, CF_CU_THREADS, 0, cu_stream()>>>((bf16 *)cf_tensor_data(gw),
          (const bf16 *)cf_tensor_data(g), k_out, v_out, n, D);
    rc = cu_launched("embedding backward");
  }
  cu_scratch_free(&tmp);
  cu_scratch_free(&s);
  cf_tensor_release(ids);
  cf_tensor_release(g);
  return rc;
}

/* ================================================================ gather */

struct gather_geo {
  int nd, dim;
  int64_t ishape[CF_MAX_DIMS], tstride[CF_MAX_DIMS];
};

/* Offset in t of index element i (row-major in idx) with coordinate `at` along dim. */
__device__ __forceinline__ int64_t gather_offset(const gather_geo &g, int64_t i, int64_t at) {
  int64_t off = 0;
  for (int d = g.nd - 1; d >= 0; d--) {
    int64_t c = i % g.ishape[d];
    i /= g.ishape[d];
    off += (d == g.dim ? at : c) * g.tstride[d];
  }
  return off;
}

// out [idx shape] = t [..] gathered along dim by idx (contiguous)
template <typename T>
__global__ void __launch_bounds__(CF_CU_THREADS) gather_kernel(T *out, const T *t, const void *idx, int idt,
                                                               gather_geo g, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    out[i] = t[gather_offset(g, i, ld_id(idx, idt, i))];
}

// acc [t shape] (f32, contiguous) += gout [idx shape] scattered along dim
template <typename T>
__global__ void __launch_bounds__(CF_CU_THREADS) scatter_add_kernel(float *acc, const T *g, const void *idx,
                                                                    int idt, gather_geo geo, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    atomicAdd(acc + gather_offset(geo, i, ld_id(idx, idt, i)), ldf(g, i));
}

static void gather_geometry(gather_geo *g, const cf_tensor *t, const cf_tensor *idx, int dim) {
  memset(g, 0, sizeof *g);
  g->nd = idx->ndim;
  g->dim = dim;
  for (int d = 0; d < idx->ndim; d++) {
    g->ishape[d] = idx->shape[d];
    g->tstride[d] = t->stride[d];
  }
}

extern "C" int cf_cuda_gather(cf_tensor *out, cf_tensor *const *in, int nin, const cf_args *a) {
  (void)nin;
  cf_tensor *t = in[0];
  int dim = (int)a->i[0];
  if (cu_check_float("gather", t)) return -1;
  if (cu_check_ids("gather", in[1], t->shape[dim], false, "index", t)) return -1;
  cf_tensor *idx = cu_contig(in[1]);
  if (!idx) return -1;
  int64_t n = cf_tensor_numel(idx);
  gather_geo g;
  gather_geometry(&g, t, idx, dim);
  if (n > 0) {
    unsigned b = cu_blocks(n, CF_CU_THREADS);
    if (t->dtype == CF_DTYPE_F32)
      gather_kernel<float><<<b, CF_CU_THREADS, 0, cu_stream()>>>((float *)cf_tensor_data(out),
          (const float *)cf_tensor_data(t), cf_tensor_data(idx), idx->dtype, g, n);
    else
      gather_kernel<bf16><<<b, CF_CU_THREADS, 0, cu_stream()>>>((bf16 *)cf_tensor_data(out),
          (const bf16 *)cf_tensor_data(t), cf_tensor_data(idx), idx->dtype, g, n);
  }
  cf_tensor_release(idx);
  return cu_launched("gather");
}

/* gx (zeroed, contiguous, the input's shape) += gout scattered along dim (fp32 atomics; a bf16
 * gradient accumulates in an f32 scratch first) */
extern "C" int cf_cuda_gather_backward(cf_tensor *gx, int dim, cf_tensor *index, cf_tensor *gout) {
  if (cu_check_float("gather backward", gx)) return -1;
  int64_t n = cf_tensor_numel(index), nx = cf_tensor_numel(gx);
  if (n == 0) return 0;
  cf_tensor *idx = cu_contig(index), *g = cu_contig(gout);
  cu_scratch s = {NULL, 0};
  int rc = idx && g ? 0 : -1;
  float *acc = NULL;
  if (rc == 0) {
    if (gx->dtype == CF_DTYPE_F32) acc = (float *)cf_tensor_data(gx);
    else if (!(acc = (float *)cu_scratch_get(&s, (size_t)nx * sizeof(float), "gather backward"))) rc = -1;
    else rc = cu_check(cudaMemsetAsync(acc, 0, (size_t)nx * sizeof(float), cu_stream()), "gather backward");
  }
  if (rc == 0) {
    gather_geo geo;
    gather_geometry(&geo, gx, idx, dim);
    unsigned b = cu_blocks(n, CF_CU_THREADS);
    if (g->dtype == CF_DTYPE_F32)
      scatter_add_kernel<float><<<b, CF_CU_THREADS, 0, cu_stream()>>>(acc, (const float *)cf_tensor_data(g),
          cf_tensor_data(idx), idx->dtype, geo, n);
    else
      scatter_add_kernel<bf16><<<b, CF_CU_THREADS, 0, cu_stream()>>>(acc, (const bf16 *)cf_tensor_data(g),
          cf_tensor_data(idx), idx->dtype, geo, n);
    rc = cu_launched("gather backward");
  }
  if (rc == 0 && gx->dtype != CF_DTYPE_F32) rc = cu_convert(cf_tensor_data(gx), gx->dtype, acc, CF_DTYPE_F32, nx);
  cu_scratch_free(&s);
  cf_tensor_release(idx);
  cf_tensor_release(g);
  return rc;
}

/* ================================================================ cat, stack: strided copies */

/* cat and stack are views plus cf_tensor_copy_, which reaches the device through its hooks:
 * the CPU entry points (core/cpu/nn.c) serve every device. */
extern "C" int cf_cpu_cat(cf_tensor *out, cf_tensor *const *in, int nin, const cf_args *a);
extern "C" int cf_cpu_stack(cf_tensor *out, cf_tensor *const *in, int nin, const cf_args *a);
extern "C" int cf_cuda_cat(cf_tensor *out, cf_tensor *const *in, int nin, const cf_args *a) {
  return cf_cpu_cat(out, in, nin, a);
}
extern "C" int cf_cuda_stack(cf_tensor *out, cf_tensor *const *in, int nin, const cf_args *a) {
  return cf_cpu_stack(out, in, nin, a);
}

/* ================================================================ rmsnorm */

static int rmsnorm_check(const cf_tensor *x, const cf_tensor *w) {
  char b1[128], b2[128];
  if (cu_check_float("rmsnorm", x)) return -1;
  if (x->ndim < 1 || w->ndim != 1 || w->shape[0] != x->shape[x->ndim - 1])
    return CF_ERR("rmsnorm: weight must be [D] for x [.., D]: x %s, weight %s",
                  cf_shape_str(x, b1, sizeof b1), cf_shape_str(w, b2, sizeof b2));
  return 0;
}

// out [rows, D] = x / sqrt(mean(x^2) + eps) * w [D]  (one block per row)
template <typename T>
__global__ void __launch_bounds__(CF_CU_THREADS) rmsnorm_kernel(T *out, const T *x, const T *w, int64_t D, float eps) {
  const T *row = x + (int64_t)blockIdx.x * D;
  T *orow = out + (int64_t)blockIdx.x * D;
  float ss = 0;
  for (int64_t j = threadIdx.x; j < D; j += blockDim.x) { float v = ldf(row, j); ss += v * v; }
  ss = block_sum(ss);
  float rs = rsqrtf(ss / (float)D + eps);
  for (int64_t j = threadIdx.x; j < D; j += blockDim.x) stf(orow, j, ldf(row, j) * rs * ldf(w, j));
}

// gx [rows, D] = rs g w - x rs^3 sum(g w x) / D; rsv [rows] = rs (for gw)
template <typename T>
__global__ void __launch_bounds__(CF_CU_THREADS) rmsnorm_bwd_kernel(T *gx, float *rsv, const T *x, const T *w,
                                                                    const T *g, int64_t D, float eps) {
  int64_t o = (int64_t)blockIdx.x * D;
  float ss = 0, dot = 0;
  for (int64_t j = threadIdx.x; j < D; j += blockDim.x) {
    float v = ldf(x, o + j);
    ss += v * v;
    dot += ldf(g, o + j) * ldf(w, j) * v;
  }
  ss = block_sum(ss);
  dot = block_sum(dot);
  float rs = rsqrtf(ss / (float)D + eps), c = rs * rs * rs * dot / (float)D;
  if (threadIdx.x == 0) rsv[blockIdx.x] = rs;
  if (!gx) return;
  for (int64_t j = threadIdx.x; j < D; j += blockDim.x)
    stf(gx, o + j, rs * ldf(g, o + j) * ldf(w, j) - ldf(x, o + j) * c);
}

#define RMS_CHUNK 64
// part [chunks, D] = per chunk of RMS_CHUNK rows: sum g x rs   (grid: column blocks x chunks)
template <typename T>
__global__ void __launch_bounds__(CF_CU_THREADS) rmsnorm_gw_part_kernel(float *part, const T *x, const T *g,
                                                                        const float *rsv, int64_t rows, int64_t D) {
  int64_t j = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (j >= D) return;
  int64_t r0 = (int64_t)blockIdx.y * RMS_CHUNK, r1 = r0 + RMS_CHUNK < rows ? r0 + RMS_CHUNK : rows;
  float acc = 0;
  for (int64_t r = r0; r < r1; r++) acc += ldf(g, r * D + j) * ldf(x, r * D + j) * rsv[r];
  part[(int64_t)blockIdx.y * D + j] = acc;
}

template <typename T>
__global__ void __launch_bounds__(CF_CU_THREADS) rmsnorm_gw_sum_kernel(T *gw, const float *part, int64_t chunks, int64_t D) {
  int64_t j = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (j >= D) return;
  float acc = 0;
  for (int64_t c = 0; c < chunks; c++) acc += part[c * D + j];
  stf(gw, j, acc);
}

extern "C" int cf_cuda_rmsnorm(cf_tensor *out, cf_tensor *const *in, int nin, const cf_args *a) {
  (void)nin;
  if (rmsnorm_check(in[0], in[1])) return -1;
  cf_tensor *x = cu_contig(in[0]), *w = cu_contig(in[1]);
  int rc = x && w ? 0 : -1;
  int64_t D = in[1]->shape[0], numel = cf_tensor_numel(in[0]), rows = D ? numel / D : 0;
  if (rc == 0 && rows > 0) {
    if (x->dtype == CF_DTYPE_F32)
      rmsnorm_kernel<float><<<(unsigned)rows, CF_CU_THREADS, 0, cu_stream()>>>((float *)cf_tensor_data(out),
          (const float *)cf_tensor_data(x), (const float *)cf_tensor_data(w), D, (float)a->f[0]);
    else
      rmsnorm_kernel<bf16><<<(unsigned)rows, CF_CU_THREADS, 0, cu_stream()>>>((bf16 *)cf_tensor_data(out),
          (const bf16 *)cf_tensor_data(x), (const bf16 *)cf_tensor_data(w), D, (float)a->f[0]);
    rc = cu_launched("rmsnorm");
  }
  cf_tensor_release(x);
  cf_tensor_release(w);
  return rc;
}

template <typename T>
static void rmsnorm_bwd_launch(cf_tensor *gx, cf_tensor *gw, cf_tensor *x, cf_tensor *w, cf_tensor *g,
                               float *rsv, float *part, int64_t rows, int64_t D, float eps) {
  rmsnorm_bwd_kernel<T><<<(unsigned)rows, CF_CU_THREADS, 0, cu_stream()>>>(
      gx ? (T *)cf_tensor_data(gx) : NULL, rsv, (const T *)cf_tensor_data(x), (const T *)cf_tensor_data(w),
      (const T *)cf_tensor_data(g), D, eps);
  if (!gw) return;
  int64_t chunks = (rows + RMS_CHUNK - 1) / RMS_CHUNK;
  dim3 grid((unsigned)((D + CF_CU_THREADS - 1) / CF_CU_THREADS), (unsigned)chunks);
  rmsnorm_gw_part_kernel<T><<<grid, CF_CU_THREADS, 0, cu_stream()>>>(part, (const T *)cf_tensor_data(x),
      (const T *)cf_tensor_data(g), rsv, rows, D);
  rmsnorm_gw_sum_kernel<T><<<(unsigned)((D + CF_CU_THREADS - 1) / CF_CU_THREADS), CF_CU_THREADS, 0, cu_stream()>>>(
      (T *)cf_tensor_data(gw), part, chunks, D);
}

extern "C" int cf_cuda_rmsnorm_backward(cf_tensor *gx, cf_tensor *gw, cf_tensor *x0, cf_tensor *w0, double eps,
                                        cf_tensor *gout) {
  if (rmsnorm_check(x0, w0)) return -1;
  int64_t D = w0->shape[0], numel = cf_tensor_numel(x0), rows = D ? numel / D : 0;
  if (rows == 0) return 0;
  int64_t chunks = (rows + RMS_CHUNK - 1) / RMS_CHUNK;
  if (chunks > 65535) return CF_ERR("rmsnorm backward: too many rows (%lld)", (long long)rows);
  cf_tensor *x = cu_contig(x0), *w = cu_contig(w0), *g = cu_contig(gout);
  cu_scratch s = {NULL, 0};
  int rc = x && w && g ? 0 : -1;
  float *rsv = NULL;
  if (rc == 0) {
    rsv = (float *)cu_scratch_get(&s, (size_t)(rows + (gw ? chunks * D : 0)) * sizeof(float), "rmsnorm backward");
    if (!rsv) rc = -1;
  }
  if (rc == 0) {
    float *part = rsv + rows;
    if (x->dtype == CF_DTYPE_F32) rmsnorm_bwd_launch<float>(gx, gw, x, w, g, rsv, part, rows, D, (float)eps);
    else rmsnorm_bwd_launch<bf16>(gx, gw, x, w, g, rsv, part, rows, D, (float)eps);
    rc = cu_launched("rmsnorm backward");
  }
  cu_scratch_free(&s);
  cf_tensor_release(x);
  cf_tensor_release(w);
  cf_tensor_release(g);
  return rc;
}

/* ================================================================ rope */

// out [B, M, T, D] (dense) = x rotated by sign * pos * theta^(-2i/D) (HF rotate-half); pairs
// (i, i + D/2). x is read through strides (sb, sm, st; the last dim dense), so a transposed view
// of heads needs no copy. One thread per (b, t, i): the angle's pow and sincos once, applied to
// the M rows (heads) that share it.
template <typename T>
__global__ void __launch_bounds__(CF_CU_THREADS) rope_kernel(T *out, const T *x, const void *pos, int pdt,
                                                             int64_t B, int64_t M, int64_t T_, int64_t D,
                                                             int64_t sb, int64_t sm, int64_t st, int pos2d,
                                                             double theta, cf_rope_scaling sc, double sign) {
  int64_t h = D / 2, n = B * T_ * h;
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n; e += (int64_t)gridDim.x * blockDim.x) {
    int64_t i = e % h, t = (e / h) % T_, b = e / (h * T_);
    int64_t p = pos2d ? b * T_ + t : t;
    double ang = (double)ld_id(pos, pdt, p) * cf_rope_inv_freq(theta, i, D, sc);
    double sd, cd;
    sincos(ang, &sd, &cd);
    float co = (float)cd, si = (float)(sign * sd);
    for (int64_t m = 0; m < M; m++) {
      int64_t xi = b * sb + m * sm + t * st, o = ((b * M + m) * T_ + t) * D;
      float x1 = ldf(x, xi + i), x2 = ldf(x, xi + i + h);
      stf(out, o + i, x1 * co - x2 * si);
      stf(out, o + i + h, x2 * co + x1 * si);
    }
  }
}

static int rope_apply(const char *op, cf_tensor *out, cf_tensor *x0, cf_tensor *pos0, double theta, cf_rope_scaling sc,
                      double sign) {
  if (cu_check_float(op, x0)) return -1;
  char b1[128], b2[128];
  if (x0->ndim < 2) return CF_ERR("%s: x must be [.., T, D], got %s", op, cf_shape_str(x0, b1, sizeof b1));
  int nd = x0->ndim;
  int64_t T = x0->shape[nd - 2], D = x0->shape[nd - 1];
  if (D % 2) return CF_ERR("%s: the last dim must be even, got x %s", op, cf_shape_str(x0, b1, sizeof b1));
  if (!(theta > 0)) return CF_ERR("%s: theta must be > 0, got %g", op, theta);
  const char *bad = cf_rope_scaling_check(sc);
  if (bad) return CF_ERR("%s: rope scaling: %s (factor %g, low %g, high %g, original %g)", op, bad, sc.factor, sc.low,
                         sc.high, sc.orig);
  bool ok = (pos0->ndim == 1 && pos0->shape[0] == T) ||
            (pos0->ndim == 2 && nd >= 3 && pos0->shape[0] == x0->shape[0] && pos0->shape[1] == T);
  if (!ok)
    return CF_ERR("%s: positions must be [T] or [B, T] (B = x's dim 1) for x [.., T, D]: x %s, positions %s",
                  op, cf_shape_str(x0, b1, sizeof b1), cf_shape_str(pos0, b2, sizeof b2));
  int64_t numel = cf_tensor_numel(x0), rows = D ? numel / D : 0;
  if (rows == 0 || D == 0) return 0;
  /* a 4-d x with a dense last dim is read in place (the model's heads are a transposed view) */
  bool strided = nd == 4 && x0->stride[3] == 1;
  cf_tensor *x = strided ? (cf_tensor_retain(x0), x0) : cu_contig(x0), *pos = cu_contig(pos0);
  int rc = x && pos ? 0 : -1;
  if (rc == 0) {
    /* [B, M, T, D]: B = dim 0 when there are >= 3 dims (positions [B, T] index it), M the rest */
    int64_t B = nd >= 3 ? x->shape[0] : 1, M = rows / T / B;
    int64_t st = strided ? x->stride[2] : D, sm = strided ? x->stride[1] : T * D;
    int64_t sb = strided ? x->stride[0] : M * T * D;
    unsigned g = cu_blocks(B * T * (D / 2), CF_CU_THREADS);
    if (x->dtype == CF_DTYPE_F32)
      rope_kernel<float><<<g, CF_CU_THREADS, 0, cu_stream()>>>((float *)cf_tensor_data(out),
          (const float *)cf_tensor_data(x), cf_tensor_data(pos), pos->dtype, B, M, T, D, sb, sm, st,
          pos->ndim == 2, theta, sc, sign);
    else
      rope_kernel<bf16><<<g, CF_CU_THREADS, 0, cu_stream()>>>((bf16 *)cf_tensor_data(out),
          (const bf16 *)cf_tensor_data(x), cf_tensor_data(pos), pos->dtype, B, M, T, D, sb, sm, st,
          pos->ndim == 2, theta, sc, sign);
    rc = cu_launched(op);
  }
  cf_tensor_release(x);
  cf_tensor_release(pos);
  return rc;
}

extern "C" int cf_cuda_rope(cf_tensor *out, cf_tensor *const *in, int nin, const cf_args *a) {
  (void)nin;
  const char *why = cf_rope_scaling_given(&a->f[1]);
  if (why) return CF_ERR("rope: %s", why);
  return rope_apply("rope", out, in[0], in[1], a->f[0], cf_rope_scaling_of(&a->f[1]), 1.0);
}

extern "C" int cf_cuda_rope_backward(cf_tensor *gx, cf_tensor *pos, double theta, const double *scaling,
                                     cf_tensor *gout) {
  return rope_apply("rope backward", gx, gout, pos, theta, cf_rope_scaling_of(scaling), -1.0);
}

/* ================================================================ row losses over a vocabulary */

/* A vocabulary row's maximum m and lsum = log(sum_j exp((row[j] - m) s)), block-wide (every thread
 * gets both; s = 1 / T > 0): log p_j = (row[j] - m) s - lsum, as the CPU computes it (core/cpu/nn.c),
 * never forming the log-sum-exp m s + lsum, which loses lsum in float once |m s| passes about
 * 1e8 and overflows where m s does. A row of only -inf (or none) gets m = -inf and NaN terms. */
struct row_ls {
  float m, ls;
  template <typename R>
  __device__ __forceinline__ float lp(const R *row, int64_t j, float s) const {
    float v = ldf(row, j); /* a row of only -inf (m = -inf) has p = 0: log p -inf, not -inf - -inf */
    return m == -INFINITY && v == -INFINITY ? -INFINITY : (v - m) * s - ls;
  }
};
template <typename R>
__device__ __forceinline__ row_ls row_lsum(const R *row, int64_t V, float s) {
  float m = -INFINITY;
  for (int64_t j = threadIdx.x; j < V; j += blockDim.x) m = fmaxf(m, ldf(row, j));
  m = block_max(m);
  float acc = 0;
  for (int64_t j = threadIdx.x; j < V; j += blockDim.x) acc += expf((ldf(row, j) - m) * s);
  acc = block_sum(acc);
  return row_ls{m, logf(acc)};
}

// MODE 0 cross_entropy: part[r] = (-log p_t, 1) or (0, 0) for t < 0   (s = 1)
// MODE 1 token_logprob: out[r] = log p_t of softmax(z s)  (0 where t < 0)
// MODE 2 entropy:       out[r] = -sum p log p = lsum - sum p (z - m) s, terms with p = 0 left out
// A row of only -inf has p = 0 everywhere (row_ls::lp): log p -inf, cross_entropy +inf, entropy 0;
// a NaN logit makes the row NaN (core/cpu/nn.c alike).
template <typename T, typename R, int MODE>
__global__ void __launch_bounds__(CF_CU_THREADS) row_loss_kernel(T *out, float2 *part, const R *z, const void *tg,
                                                                 int tdt, int64_t V, int64_t ldz, float s,
                                                                 int64_t r0) {
  int64_t i = blockIdx.x, r = r0 + i;
  const R *row = z + i * ldz;
  int64_t t = MODE == 2 ? 0 : ld_id(tg, tdt, r);
  if (MODE != 2 && t < 0) {
    if (MODE == 0 && threadIdx.x == 0) part[r] = make_float2(0.f, 0.f);
    if (MODE == 1 && threadIdx.x == 0) stf(out, r, 0.f);
    return;
  }
  row_ls L = row_lsum(row, V, s);
  if (MODE == 0) {
    if (threadIdx.x == 0) part[r] = make_float2(-L.lp(row, t, s), 1.f);
  } else if (MODE == 1) {
    if (threadIdx.x == 0) stf(out, r, L.lp(row, t, s));
  } else {
    float ez = 0;
    for (int64_t j = threadIdx.x; j < V; j += blockDim.x) {
      float x = (ldf(row, j) - L.m) * s, e = expf(L.lp(row, j, s));
      if (e != 0.f) ez += e * x; /* p = 0 adds nothing (0 * -inf would be NaN); a NaN p, NaN */
    }
    ez = block_sum(ez);
    /* no classes: 0; only -inf (m: every thread's, block_max): every p is 0, ez 0 (NaN with a NaN) */
    if (threadIdx.x == 0) stf(out, r, V == 0 ? 0.f : L.m == -INFINITY ? ez : L.ls - ez);
  }
}

// out[0] = sum part.x / sum part.y (0 when nothing counted); cnt[0] = sum part.y (one block)
template <typename T>
__global__ void __launch_bounds__(1024) ce_finish_kernel(T *out, const float2 *part, int64_t N) {
  double tot = 0, cnt = 0;
  for (int64_t r = threadIdx.x; r < N; r += blockDim.x) { tot += part[r].x; cnt += part[r].y; }
  tot = block_sum(tot);
  cnt = block_sum(cnt);
  if (threadIdx.x == 0) stf(out, 0, cnt > 0 ? (float)(tot / cnt) : 0.f);
}

// cnt[0] = number of targets >= 0 (one block)
__global__ void __launch_bounds__(1024) count_targets_kernel(float *cnt, const void *tg, int tdt, int64_t N) {
  double c = 0;
  for (int64_t r = threadIdx.x; r < N; r += blockDim.x) c += ld_id(tg, tdt, r) >= 0;
  c = block_sum(c);
  if (threadIdx.x == 0) cnt[0] = (float)c;
}

// Row gradients written into gz rows (GT: gradient storage, R: logits storage):
// MODE 0 cross_entropy: g0 / cnt * (p - onehot);  MODE 1 token_logprob: g[r] s (onehot - p);
// MODE 2 entropy: -g[r] s p (log p + H).  Rows with t < 0 are zeroed (MODE 0/1).
template <typename GT, typename R, typename T, int MODE>
__global__ void __launch_bounds__(CF_CU_THREADS) row_grad_kernel(GT *gz, int64_t ldg, const R *z, int64_t ldz,
                                                                 const void *tg, int tdt, const T *gout,
                                                                 const float *cnt, int64_t V, float s,
                                                                 int64_t r0) {
  int64_t i = blockIdx.x, r = r0 + i;
  const R *row = z + i * ldz;
  GT *grow = gz + i * ldg;
  int64_t t = MODE == 2 ? -1 : ld_id(tg, tdt, r);
  if (MODE != 2 && t < 0) {
    for (int64_t j = threadIdx.x; j < V; j += blockDim.x) stf(grow, j, 0.f);
    return;
  }
  row_ls L = row_lsum(row, V, s);
  if (MODE == 0) {
    float c = cnt[0] > 0 ? ldf(gout, 0) / cnt[0] : 0.f;
    for (int64_t j = threadIdx.x; j < V; j += blockDim.x)
      stf(grow, j, c * (expf(L.lp(row, j, s)) - (j == t ? 1.f : 0.f)));
  } else if (MODE == 1) {
    float c = ldf(gout, r) * s;
    for (int64_t j = threadIdx.x; j < V; j += blockDim.x)
      stf(grow, j, c * ((j == t ? 1.f : 0.f) - expf(L.lp(row, j, s))));
  } else {
    float H = 0;
    for (int64_t j = threadIdx.x; j < V; j += blockDim.x) {
      float lp = L.lp(row, j, s), p = expf(lp);
      if (p != 0.f) H -= p * lp; /* p = 0 adds nothing (0 * -inf would be NaN); a NaN p, NaN */
    }
    H = block_sum(H);
    float c = -ldf(gout, r) * s;
    for (int64_t j = threadIdx.x; j < V; j += blockDim.x) {
      float lp = L.lp(row, j, s), p = expf(lp);
      stf(grow, j, p != 0.f ? c * p * (lp + H) : 0.f);
    }
  }
}

/* logits [.., V] contiguous; targets with one entry per row, contiguous and range-checked. */
static int rows_setup(const char *op, cf_tensor *logits0, cf_tensor *targets0, cf_tensor **logits,
                      cf_tensor **targets, int64_t *N, int64_t *V) {
  char b1[128], b2[128];
  if (cu_check_float(op, logits0)) return -1;
  if (logits0->ndim < 1) return CF_ERR("%s: logits must be [.., V], got a 0-d tensor", op);
  *V = logits0->shape[logits0->ndim - 1];
  int64_t rows = 1;
  for (int d = 0; d < logits0->ndim - 1; d++) rows *= logits0->shape[d];
  *N = rows;
  *targets = NULL;
  if (targets0) {
    if (cf_tensor_numel(targets0) != rows)
      return CF_ERR("%s: targets %s must have one entry per row of logits %s", op,
                    cf_shape_str(targets0, b2, sizeof b2), cf_shape_str(logits0, b1, sizeof b1));
    if (cu_check_ids(op, targets0, *V, true, "target", logits0)) return -1;
    *targets = cu_contig(targets0);
    if (!*targets) return -1;
  }
  *logits = cu_contig(logits0);
  if (!*logits) { cf_tensor_release(*targets); return -1; }
  return 0;
}

#define DISPATCH_FT(dt, T, ...)                 \
  do {                                          \
    if ((dt) == CF_DTYPE_F32) { typedef float T; __VA_ARGS__; } \
    else { typedef bf16 T; __VA_ARGS__; }       \
  } while (0)

extern "C" int cf_cuda_cross_entropy(cf_tensor *out, cf_tensor *const *in, int nin, const cf_args *a) {
  (void)nin; (void)a;
  cf_tensor *z = NULL, *tg = NULL;
  int64_t N, V;
  if (rows_setup("cross_entropy", in[0], in[1], &z, &tg, &N, &V)) return -1;
  cu_scratch s = {NULL, 0};
  int rc = 0;
  float2 *part = N ? (float2 *)cu_scratch_get(&s, (size_t)N * sizeof(float2), "cross_entropy") : NULL;
  if (N && !part) rc = -1;
  if (N == 0) /* no rows: the loss is 0 */
    rc = cu_check(cudaMemsetAsync(cf_tensor_data(out), 0, cf_dtype_size(out->dtype), cu_stream()), "cross_entropy");
  if (rc == 0 && N > 0) {
    DISPATCH_FT(z->dtype, T,
      row_loss_kernel<T, T, 0><<<(unsigned)N, CF_CU_THREADS, 0, cu_stream()>>>((T *)NULL, part,
          (const T *)cf_tensor_data(z), cf_tensor_data(tg), tg->dtype, V, V, 1.0f, 0);
      ce_finish_kernel<T><<<1, 1024, 0, cu_stream()>>>((T *)cf_tensor_data(out), part, N));
    rc = cu_launched("cross_entropy");
  }
  cu_scratch_free(&s);
  cf_tensor_release(z);
  cf_tensor_release(tg);
  return rc;
}

extern "C" int cf_cuda_cross_entropy_backward(cf_tensor *gz, cf_tensor *logits, cf_tensor *targets, cf_tensor *gout) {
  cf_tensor *z = NULL, *tg = NULL;
  int64_t N, V;
  if (rows_setup("cross_entropy backward", logits, targets, &z, &tg, &N, &V)) return -1;
  cu_scratch s = {NULL, 0};
  int rc = 0;
  float *cnt = (float *)cu_scratch_get(&s, sizeof(float), "cross_entropy backward");
  if (!cnt) rc = -1;
  if (rc == 0 && N > 0) {
    count_targets_kernel<<<1, 1024, 0, cu_stream()>>>(cnt, cf_tensor_data(tg), tg->dtype, N);
    DISPATCH_FT(z->dtype, T,
      row_grad_kernel<T, T, T, 0><<<(unsigned)N, CF_CU_THREADS, 0, cu_stream()>>>((T *)cf_tensor_data(gz), V,
          (const T *)cf_tensor_data(z), V, cf_tensor_data(tg), tg->dtype, (const T *)cf_tensor_data(gout),
          cnt, V, 1.0f, 0));
    rc = cu_launched("cross_entropy backward");
  }
  cu_scratch_free(&s);
  cf_tensor_release(z);
  cf_tensor_release(tg);
  return rc;
}

extern "C" int cf_cuda_token_logprob(cf_tensor *out, cf_tensor *const *in, int nin, const cf_args *a) {
  (void)nin;
  double temp = 1.0;
  if (check_temperature("token_logprob", a->f[0], &temp)) return -1;
  cf_tensor *z = NULL, *tg = NULL;
  int64_t N, V;
  if (rows_setup("token_logprob", in[0], in[1], &z, &tg, &N, &V)) return -1;
  if (N > 0)
    DISPATCH_FT(z->dtype, T,
      row_loss_kernel<T, T, 1><<<(unsigned)N, CF_CU_THREADS, 0, cu_stream()>>>((T *)cf_tensor_data(out), NULL,
          (const T *)cf_tensor_data(z), cf_tensor_data(tg), tg->dtype, V, V, (float)(1.0 / temp), 0));
  cf_tensor_release(z);
  cf_tensor_release(tg);
  return cu_launched("token_logprob");
}

extern "C" int cf_cuda_token_logprob_backward(cf_tensor *gz, cf_tensor *logits, cf_tensor *targets,
                                              double temperature, cf_tensor *gout0) {
  double temp = 1.0;
  if (check_temperature("token_logprob backward", temperature, &temp)) return -1;
  cf_tensor *z = NULL, *tg = NULL;
  int64_t N, V;
  if (rows_setup("token_logprob backward", logits, targets, &z, &tg, &N, &V)) return -1;
  cf_tensor *gout = cu_contig(gout0);
  int rc = gout ? 0 : -1;
  if (rc == 0 && N > 0) {
    DISPATCH_FT(z->dtype, T,
      row_grad_kernel<T, T, T, 1><<<(unsigned)N, CF_CU_THREADS, 0, cu_stream()>>>((T *)cf_tensor_data(gz), V,
          (const T *)cf_tensor_data(z), V, cf_tensor_data(tg), tg->dtype, (const T *)cf_tensor_data(gout),
          NULL, V, (float)(1.0 / temp), 0));
    rc = cu_launched("token_logprob backward");
  }
  cf_tensor_release(gout);
  cf_tensor_release(z);
  cf_tensor_release(tg);
  return rc;
}

extern "C" int cf_cuda_entropy(cf_tensor *out, cf_tensor *const *in, int nin, const cf_args *a) {
  (void)nin;
  double temp = 1.0;
  if (check_temperature("entropy", a->f[0], &temp)) return -1;
  cf_tensor *z = NULL, *tg = NULL;
  int64_t N, V;
  if (rows_setup("entropy", in[0], NULL, &z, &tg, &N, &V)) return -1;
  if (N > 0)
    DISPATCH_FT(z->dtype, T,
      row_loss_kernel<T, T, 2><<<(unsigned)N, CF_CU_THREADS, 0, cu_stream()>>>((T *)cf_tensor_data(out), NULL,
          (const T *)cf_tensor_data(z), NULL, CF_DTYPE_I64, V, V, (float)(1.0 / temp), 0));
  cf_tensor_release(z);
  return cu_launched("entropy");
}

extern "C" int cf_cuda_entropy_backward(cf_tensor *gz, cf_tensor *logits, double temperature, cf_tensor *gout0) {
  double temp = 1.0;
  if (check_temperature("entropy backward", temperature, &temp)) return -1;
  cf_tensor *z = NULL, *tg = NULL;
  int64_t N, V;
  if (rows_setup("entropy backward", logits, NULL, &z, &tg, &N, &V)) return -1;
  cf_tensor *gout = cu_contig(gout0);
  int rc = gout ? 0 : -1;
  if (rc == 0 && N > 0) {
    DISPATCH_FT(z->dtype, T,
      row_grad_kernel<T, T, T, 2><<<(unsigned)N, CF_CU_THREADS, 0, cu_stream()>>>((T *)cf_tensor_data(gz), V,
          (const T *)cf_tensor_data(z), V, NULL, CF_DTYPE_I64, (const T *)cf_tensor_data(gout), NULL, V,
          (float)(1.0 / temp), 0));
    rc = cu_launched("entropy backward");
  }
  cf_tensor_release(gout);
  cf_tensor_release(z);
  return rc;
}

/* ================================================================ head_logprob */

/* Logit chunks are [C x V] f32: C rows such that a chunk stays near 1 GiB (at least 64 rows,
 * at most N), so the [N x V] logits never exist. Larger chunks mean fewer passes of the backward
 * over the f32 weight-gradient accumulator (V x D x 4 bytes read and written per chunk). */
#define HEAD_CHUNK_BYTES ((int64_t)1 << 30)

typedef struct {
  cf_head_mats m;  /* h and w as cuBLAS reads them (core/kernel_geo.h, shared with the CPU) */
  cf_tensor *tg;   /* contiguous targets */
  int64_t N, V, D, C;
  cf_dtype dt;
  size_t es;
  float s;         /* 1 / temperature */
} head_geo;

static void head_free(head_geo *g) {
  cf_head_mats_free(&g->m);
  cf_tensor_release(g->tg);
}

static int head_init(head_geo *g, const char *op, cf_tensor *h, cf_tensor *w, cf_tensor *targets, double temperature) {
  memset(g, 0, sizeof *g);
  double temp = 1.0;
  if (cu_check_float(op, h) || check_temperature(op, temperature, &temp)) return -1;
  g->s = (float)(1.0 / temp);
  g->N = h->shape[0];
  g->D = h->shape[1];
  g->V = w->shape[0];
  g->dt = h->dtype;
  g->es = cf_dtype_size(h->dtype);
  int64_t c = g->V ? HEAD_CHUNK_BYTES / (g->V * 4) : g->N;
  if (c < 64) c = 64;
  g->C = g->N < c ? g->N : c;
  if (targets && (cu_check_ids(op, targets, g->V, true, "target", w) || !(g->tg = cu_contig(targets)))) return -1;
  if (cf_head_mats_init(&g->m, h, w)) {
    head_free(g);
    return -1;
  }
  return 0;
}

/* Z [rows x V] f32 = h[r0 .. r0+rows) @ w^T */
static int head_logits(const head_geo *g, int64_t r0, int64_t rows, float *Z) {
  const cf_head_mats *m = &g->m;
  if (g->D == 0) return cu_check(cudaMemsetAsync(Z, 0, (size_t)(rows * g->V) * 4, cu_stream()), "head_logprob");
  return cu_gemm("head_logprob", m->th, !m->tw, rows, g->V, g->D, 1.0f, cf_head_rows(m, r0, g->es), m->ldh, 0,
                 m->wp, m->ldw, 0, 0.0f, Z, CF_DTYPE_F32, g->V, 0, 1, g->dt);
}

/* out [N] per row of z = h @ w^T / T, a chunk of rows at a time: with targets
 * log_softmax(z)[target] (head_logprob, row mode 1), without the entropy of softmax(z)
 * (head_entropy, mode 2). The output is f32 for f32 and bf16 inputs (cf_infer_head_*). */
static int head_forward(const char *op, cf_tensor *out, cf_tensor *h, cf_tensor *w, cf_tensor *targets,
                        double temperature) {
  head_geo g;
  if (head_init(&g, op, h, w, targets, temperature)) return -1;
  if (g.N == 0 || g.V == 0) { /* no rows, or no classes: log-probs of ignored rows and entropies are 0 */
    int rc = g.N ? cu_check(cudaMemsetAsync(cf_tensor_data(out), 0, (size_t)g.N * 4, cu_stream()), op) : 0;
    head_free(&g);
    return rc;
  }
  cu_scratch s = {NULL, 0};
  float *Z = (float *)cu_scratch_get(&s, (size_t)(g.C * g.V) * 4, op);
  int rc = Z ? 0 : -1;
  for (int64_t r0 = 0; r0 < g.N && rc == 0; r0 += g.C) {
    int64_t rows = g.N - r0 < g.C ? g.N - r0 : g.C;
    rc = head_logits(&g, r0, rows, Z);
    if (rc) break;
    if (g.tg)
      row_loss_kernel<float, float, 1><<<(unsigned)rows, CF_CU_THREADS, 0, cu_stream()>>>((float *)cf_tensor_data(out),
          NULL, Z, cf_tensor_data(g.tg), g.tg->dtype, g.V, g.V, g.s, r0);
    else
      row_loss_kernel<float, float, 2><<<(unsigned)rows, CF_CU_THREADS, 0, cu_stream()>>>((float *)cf_tensor_data(out),
          NULL, Z, NULL, 0, g.V, g.V, g.s, r0);
    rc = cu_launched(op);
  }
  cu_scratch_free(&s);
  head_free(&g);
  return rc;
}

extern "C" int cf_cuda_head_logprob(cf_tensor *out, cf_tensor *const *in, int nin, const cf_args *a) {
  (void)nin;
  return head_forward("head_logprob", out, in[0], in[1], in[2], a->f[0]);
}

extern "C" int cf_cuda_head_entropy(cf_tensor *out, cf_tensor *const *in, int nin, const cf_args *a) {
  (void)nin;
  return head_forward("head_entropy", out, in[0], in[1], NULL, a->f[0]);
}

/* Row gradients of a logits chunk into dZ: mode 1 (head_logprob) g / T (onehot - p), mode 2
 * (head_entropy) -g / T p (log p + H); the upstream gradient in f32 or the compute dtype T. */
template <typename T, int MODE>
static void head_row_grads(T *Zc, const float *Z, const head_geo &g, const cf_tensor *gout, int64_t rows,
                           int64_t r0) {
  const void *tg = g.tg ? cf_tensor_data(g.tg) : NULL;
  int tdt = g.tg ? g.tg->dtype : 0;
  if (gout->dtype == CF_DTYPE_F32)
    row_grad_kernel<T, float, float, MODE><<<(unsigned)rows, CF_CU_THREADS, 0, cu_stream()>>>(Zc, g.V, Z, g.V,
        tg, tdt, (const float *)cf_tensor_data(gout), NULL, g.V, g.s, r0);
  else
    row_grad_kernel<T, float, T, MODE><<<(unsigned)rows, CF_CU_THREADS, 0, cu_stream()>>>(Zc, g.V, Z, g.V,
        tg, tdt, (const T *)cf_tensor_data(gout), NULL, g.V, g.s, r0);
}

/* Per chunk: dZ = the row gradients above (fp32 math, stored in the compute dtype),
 * gh rows = dZ @ w, gw += dZ^T @ h rows (a bf16 gw accumulates in an f32 scratch over chunks).
 * targets NULL: head_entropy. */
static int head_backward(const char *op, cf_tensor *gh, cf_tensor *gw, cf_tensor *h, cf_tensor *w,
                         cf_tensor *targets, double temperature, cf_tensor *gout0) {
  head_geo g;
  if (head_init(&g, op, h, w, targets, temperature)) return -1;
  if (g.N == 0 || g.V == 0 || g.D == 0) { head_free(&g); return 0; }
  cf_tensor *gout = cu_contig(gout0);
  cu_scratch sz = {NULL, 0}, sb = {NULL, 0}, sw = {NULL, 0};
  int rc = gout ? 0 : -1;
  if (rc == 0 && gout->dtype != CF_DTYPE_F32 && gout->dtype != g.dt)
    rc = CF_ERR("%s: the upstream gradient is %s; expected f32 or %s", op, cf_dtype_name(gout->dtype),
                cf_dtype_name(g.dt));
  bool f32 = g.dt == CF_DTYPE_F32;
  int64_t nchunks = (g.N + g.C - 1) / g.C;
  float *Z = rc == 0 ? (float *)cu_scratch_get(&sz, (size_t)(g.C * g.V) * 4, op) : NULL;
  void *Zc = Z;        /* dZ in the compute dtype */
  void *gwacc = gw ? cf_tensor_data(gw) : NULL;
  cf_dtype acc_dt = g.dt;
  if (rc == 0 && !Z) rc = -1;
  if (rc == 0 && !f32) {
    Zc = cu_scratch_get(&sb, (size_t)(g.C * g.V) * 2, op);
    if (!Zc) rc = -1;
  }
  if (rc == 0 && gw && !f32 && nchunks > 1) {
    gwacc = cu_scratch_get(&sw, (size_t)(g.V * g.D) * 4, "head backward (f32 weight gradient)");
    acc_dt = CF_DTYPE_F32;
    if (!gwacc) rc = -1;
    else rc = cu_check(cudaMemsetAsync(gwacc, 0, (size_t)(g.V * g.D) * 4, cu_stream()), op);
  }
  for (int64_t r0 = 0; r0 < g.N && rc == 0; r0 += g.C) {
    int64_t rows = g.N - r0 < g.C ? g.N - r0 : g.C;
    rc = head_logits(&g, r0, rows, Z);
    if (rc) break;
    /* dZ straight into the compute dtype (bf16: rounded once, as a conversion pass would) */
    if (g.tg) DISPATCH_FT(g.dt, T, head_row_grads<T, 1>((T *)Zc, Z, g, gout, rows, r0));
    else DISPATCH_FT(g.dt, T, head_row_grads<T, 2>((T *)Zc, Z, g, gout, rows, r0));
    rc = cu_launched(op);
    if (rc == 0 && gh)
      rc = cu_gemm(op, false, g.m.tw, rows, g.D, g.V, 1.0f, Zc, g.V, 0, g.m.wp, g.m.ldw, 0, 0.0f,
                   (char *)cf_tensor_data(gh) + (size_t)(r0 * g.D) * g.es, g.dt, g.D, 0, 1, g.dt);
    if (rc == 0 && gw)
      rc = cu_gemm(op, true, g.m.th, g.V, g.D, rows, 1.0f, Zc, g.V, 0, cf_head_rows(&g.m, r0, g.es), g.m.ldh, 0,
                   1.0f, gwacc, acc_dt, g.D, 0, 1, g.dt);
  }
  if (rc == 0 && gw && gwacc != cf_tensor_data(gw))
    rc = cu_convert(cf_tensor_data(gw), gw->dtype, gwacc, CF_DTYPE_F32, g.V * g.D);
  cu_scratch_free(&sw);
  cu_scratch_free(&sb);
  cu_scratch_free(&sz);
  cf_tensor_release(gout);
  head_free(&g);
  return rc;
}

extern "C" int cf_cuda_head_logprob_backward(cf_tensor *gh, cf_tensor *gw, cf_tensor *h, cf_tensor *w,
                                             cf_tensor *targets, double temperature, cf_tensor *gout) {
  return head_backward("head_logprob backward", gh, gw, h, w, targets, temperature, gout);
}

extern "C" int cf_cuda_head_entropy_backward(cf_tensor *gh, cf_tensor *gw, cf_tensor *h, cf_tensor *w,
                                             double temperature, cf_tensor *gout) {
  return head_backward("head_entropy backward", gh, gw, h, w, NULL, temperature, gout);
}
