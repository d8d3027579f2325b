/* model_cuda.cu - a model's parameters to and from the GPU, and random initialisation on the GPU
 * (see model_cuda.h for the contract).
 *
 * New parameters are built completely before any slot is replaced, so a failure (out of memory
 * half-way through a 7B model) leaves the model as it was. Host -> device copies of f32 weights
 * going to bf16 are staged through an f32 device buffer of at most 64 Mi elements and converted
 * on the GPU (the CPU conversion would be the slow part for billions of weights).
 */
#include "kernels/cuda_internal.cuh"
#include "kernels/model_cuda.h"

/* value i = N(0, 1) * std from Philox(base + i/2, key): Box-Muller on two 32-bit uniforms */
template <typename T>
__global__ void k_init_randn(void *dstv, int64_t n, unsigned long long key, unsigned long long base, float std) {
  T *dst = (T *)dstv;
  int64_t npair = (n + 1) / 2;
  for (int64_t j = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; j < npair; j += (int64_t)gridDim.x * blockDim.x) {
    uint64_t counter = base + (uint64_t)j;
    uint32_t c0 = (uint32_t)counter, c1 = (uint32_t)(counter >> 32), c2 = 0, c3 = 0;
    uint32_t k0 = (uint32_t)key, k1 = (uint32_t)(key >> 32);
#pragma unroll
    for (int r = 0; r < 10; r++) {
      uint64_t p0 = (uint64_t)0xD2511F53u * c0, p1 = (uint64_t)0xCD9E8D57u * c2;
      uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0, n1 = (uint32_t)p1;
      uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1, n3 = (uint32_t)p0;
      c0 = n0; c1 = n1; c2 = n2; c3 = n3;
      k0 += 0x9E3779B9u; k1 += 0xBB67AE85u;
    }
    float u1 = ((float)(c0 >> 8) + 0.5f) * (1.0f / 16777216.0f); /* (0, 1) */
    float u2 = (float)(c2 >> 8) * (1.0f / 16777216.0f);
    float rad = sqrtf(-2.0f * logf(u1)) * std, sn, cs;
    sincospif(2.0f * u2, &sn, &cs);
    dst[2 * j] = from_float<T>(rad * cs);
    if (2 * j + 1 < n) dst[2 * j + 1] = from_float<T>(rad * sn);
  }
}

template <typename T>
__global__ void k_init_fill(void *dstv, int64_t n, float v) {
  T *dst = (T *)dstv;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    dst[i] = from_float<T>(v);
}

static int find_slot(const cf_qwen2 *m, cf_tensor **slot) {
  for (int i = 0; i < m->nparams; i++) if (m->slots[i] == slot) return i;
  return -1;
}

static void release_all(cf_tensor **nt, int n) {
  for (int i = 0; i < n; i++) cf_tensor_release(nt[i]);
  free(nt);
}

/* Views of one new storage for the parameters idx[0..k) in that order. */
static int group_alloc(const cf_qwen2 *m, const int *idx, int k, cf_dtype dt, cf_tensor **nt) {
  for (int j = 0; j < k; j++) if (idx[j] < 0) return 0; /* not all present: allocate singly */
  int64_t total = 0;
  for (int j = 0; j < k; j++) total += cf_tensor_numel(*m->slots[idx[j]]);
  cf_storage *s = cf_storage_new(CF_DEVICE_CUDA, (size_t)total * cf_dtype_size(dt));
  if (!s) return -1;
  int64_t off = 0;
  int rc = 0;
  for (int j = 0; j < k && rc == 0; j++) {
    const cf_tensor *old = *m->slots[idx[j]];
    nt[idx[j]] = cf_tensor_from_storage(s, off, old->ndim, old->shape, dt);
    if (!nt[idx[j]]) rc = -1;
    off += cf_tensor_numel(old);
  }
  cf_storage_release(s);
  return rc;
}

/* New (zeroed) CUDA tensors of dtype dt shaped like every parameter, grouped per layer. */
static cf_tensor **alloc_params(cf_qwen2 *m, cf_dtype dt) {
  cf_tensor **nt = (cf_tensor **)calloc((size_t)(m->nparams ? m->nparams : 1), sizeof *nt);
  if (!nt) { CF_ERR("to_device: out of memory"); return NULL; }
  for (int l = 0; l < m->cfg.layers; l++) {
    cf_qwen2_layer *Ly = &m->layer[l];
    int qkv[3] = {find_slot(m, &Ly->q_w), find_slot(m, &Ly->k_w), find_slot(m, &Ly->v_w)};
    int gu[2] = {find_slot(m, &Ly->gate_w), find_slot(m, &Ly->up_w)};
    if (group_alloc(m, qkv, 3, dt, nt) || group_alloc(m, gu, 2, dt, nt)) {
      release_all(nt, m->nparams);
      return NULL;
    }
  }
  for (int i = 0; i < m->nparams; i++) {
    if (nt[i]) continue;
    const cf_tensor *old = *m->slots[i];
    nt[i] = cf_tensor_empty(old->ndim, old->shape, dt, CF_DEVICE_CUDA);
    if (!nt[i]) { release_all(nt, m->nparams); return NULL; }
  }
  return nt;
}

static void retie(cf_qwen2 *m) {
  if (m->cfg.tie_embeddings && m->lm_head != m->embed) {
    cf_tensor_retain(m->embed);
    cf_tensor_release(m->lm_head);
    m->lm_head = m->embed;
  }
}

/* Put the new tensors into the slots (carrying requires_grad) and re-tie the head. */
static void install(cf_qwen2 *m, cf_tensor **nt) {
  for (int i = 0; i < m->nparams; i++) {
    nt[i]->requires_grad = (*m->slots[i])->requires_grad;
    cf_qwen2_replace_param(m, i, nt[i]); /* same shapes: cannot fail (the layout changes: unchecked) */
  }
  retie(m);
  release_all(nt, m->nparams);
}

#define STAGE_ELEMS ((int64_t)64 << 20)

/* dst (CUDA, contiguous) = src (any device) */
static int fill_copy(cf_tensor *dst, cf_tensor *src) {
  if (cf_tensor_device(src) == CF_DEVICE_CPU && src->dtype == CF_DTYPE_F32 && dst->dtype == CF_DTYPE_BF16) {
    cf_tensor *c = cf_tensor_contiguous(src);
    if (!c) return -1;
    int64_t n = cf_tensor_numel(c);
    int64_t chunk = n < STAGE_ELEMS ? n : STAGE_ELEMS;
    const cf_device_hooks *h = cf_device_get(CF_DEVICE_CUDA);
    cu_scratch tmp = {NULL, 0};
    int rc = 0;
    if (!h || !cu_scratch_get(&tmp, (size_t)chunk * 4, "to_device")) rc = h ? -1 : CF_ERR("to_device: no CUDA hooks");
    const float *sp = (const float *)cf_tensor_data(c);
    bf16 *dp = (bf16 *)cf_tensor_data(dst);
    for (int64_t at = 0; at < n && rc == 0; at += chunk) {
      int64_t k = n - at < chunk ? n - at : chunk;
      rc = h->copy(tmp.p, CF_DEVICE_CUDA, sp + at, CF_DEVICE_CPU, (size_t)k * 4);
      if (rc == 0) rc = cu_convert(dp + at, CF_DTYPE_BF16, tmp.p, CF_DTYPE_F32, k);
    }
    cu_scratch_free(&tmp);
    cf_tensor_release(c);
    return rc;
  }
  return cf_tensor_copy_(dst, src);
}

static int check_dtype(cf_dtype dt, const char *what) {
  if (dt == CF_DTYPE_BF16 || dt == CF_DTYPE_F32) return 0;
  return CF_ERR("%s: the GPU holds parameters in bf16 or f32, not %s", what, cf_dtype_name(dt));
}

extern "C" int cf_qwen2_to_cuda(cf_qwen2 *m, cf_dtype dt) {
  if (check_dtype(dt, "to_device") || cf_cuda_init()) return -1;
  bool same = true;
  for (int i = 0; i < m->nparams && same; i++) {
    const cf_tensor *t = *m->slots[i];
    same = cf_tensor_device(t) == CF_DEVICE_CUDA && t->dtype == dt;
  }
  if (same) {
    retie(m);
    return 0;
  }
  cf_tensor **nt = alloc_params(m, dt);
  if (!nt) return -1;
  for (int i = 0; i < m->nparams; i++) {
    if (fill_copy(nt[i], *m->slots[i])) {
      cf_error_prefix("to_device: %s: ", m->names[i]);
      release_all(nt, m->nparams);
      return -1;
    }
  }
  if (cf_cuda_synchronize()) { release_all(nt, m->nparams); return -1; }
  install(m, nt);
  return 0;
}

extern "C" int cf_qwen2_to_cpu(cf_qwen2 *m) {
  cf_tensor **nt = (cf_tensor **)calloc((size_t)(m->nparams ? m->nparams : 1), sizeof *nt);
  if (!nt) return CF_ERR("to_device: out of memory");
  for (int i = 0; i < m->nparams; i++) {
    cf_tensor *old = *m->slots[i];
    if (cf_tensor_device(old) == CF_DEVICE_CPU && old->dtype == CF_DTYPE_F32) { cf_tensor_retain(old); nt[i] = old; continue; }
    nt[i] = cf_tensor_empty(old->ndim, old->shape, CF_DTYPE_F32, CF_DEVICE_CPU);
    if (!nt[i] || cf_tensor_copy_(nt[i], old)) {
      cf_error_prefix("to_device: %s: ", m->names[i]);
      release_all(nt, m->nparams);
      return -1;
    }
  }
  install(m, nt);
  return 0;
}

static bool ends_with(const char *s, const char *suffix) {
  size_t a = strlen(s), b = strlen(suffix);
  return a >= b && strcmp(s + a - b, suffix) == 0;
}

extern "C" int cf_qwen2_init_random_cuda(cf_qwen2 *m, cf_dtype dt, uint64_t seed, double std) {
  if (check_dtype(dt, "init_random_cuda") || cf_cuda_init()) return -1;
  if (!(std >= 0) || !isfinite(std)) return CF_ERR("init_random_cuda: std must be finite and >= 0 (got %g)", std);
  cf_tensor **nt = alloc_params(m, dt);
  if (!nt) return -1;
  cudaStream_t st = cu_stream();
  uint64_t counter = 0;
  int rc = 0;
  for (int i = 0; i < m->nparams && rc == 0; i++) {
    int64_t n = cf_tensor_numel(nt[i]);
    void *p = cf_tensor_data(nt[i]);
    unsigned blocks = cu_blocks((n + 1) / 2, 256);
    if (blocks > 65536) blocks = 65536;
    if (ends_with(m->names[i], "norm.weight")) {
      if (dt == CF_DTYPE_BF16) k_init_fill<bf16><<<blocks, 256, 0, st>>>(p, n, 1.0f);
      else k_init_fill<float><<<blocks, 256, 0, st>>>(p, n, 1.0f);
    } else if (!ends_with(m->names[i], ".bias")) { /* biases stay zero */
      if (dt == CF_DTYPE_BF16) k_init_randn<bf16><<<blocks, 256, 0, st>>>(p, n, seed, counter, (float)std);
      else k_init_randn<float><<<blocks, 256, 0, st>>>(p, n, seed, counter, (float)std);
      counter += (uint64_t)((n + 1) / 2);
    }
    rc = cu_launched("init_random_cuda");
  }
  if (rc == 0) rc = cf_cuda_synchronize();
  if (rc) { release_all(nt, m->nparams); return -1; }
  install(m, nt);
  return 0;
}
