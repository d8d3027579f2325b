/* runtime.cu - the CUDA runtime of confit: device init, the one stream, the cuBLAS handle, the
 * caching allocator, host<->device transfers, and the tensor.h device hooks.
 *
 * The caching allocator (after cutorch's THCCachingAllocator, simplified).
 *   - Memory comes from cudaMalloc only (never managed memory). A request is rounded up to a
 *     size class: 512-byte multiples below 4 KiB, above that four classes per power of two
 *     (2^k, 1.25 2^k, 1.5 2^k, 1.75 2^k), so a block wastes at most 25%. Blocks are never split.
 *   - Freeing a block puts it on the free list of its class; the next request of the same class
 *     reuses it without a driver call. All work runs on one stream, so a block freed while
 *     kernels that use it are still queued can be handed out at once: the new user's kernels
 *     are queued after the old ones (stream order is the only synchronisation needed).
 *   - A live-block table (open addressing on the pointer) remembers each block's class size,
 *     so the hooks' free(p, nbytes) does not depend on the caller's byte count.
 *   - When cudaMalloc fails: every cached block is released (cudaFree), the core's retry hook
 *     runs (the Lua face does a full GC, which frees unreachable tensors back into the cache),
 *     the cache is released again and the allocation retried once. A second failure is an
 *     "out of memory" error naming the bytes asked for and what is held and cached.
 *   - Statistics: in_use (bytes of class sizes handed out), cached (bytes on free lists), peak.
 *   A mutex guards the lists: tensors may be released from any thread.
 *
 * Transfers. Host->device copies of pageable memory go through a pinned staging buffer in
 * chunks (two halves, each guarded by an event, so the memcpy into one half overlaps the DMA
 * out of the other); the copy hook returns once the host source may be reused. Device->host
 * copies wait for the stream. Device->device copies are queued.
 *
 * Initialisation is lazy (cf_cuda_register installs hooks that initialise on first use), and
 * the result of the first attempt is remembered: without a device every later call fails fast
 * with the same message.
 */
#include "kernels/cuda_internal.cuh"
#include <pthread.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

extern "C" {
#include "optim.h"
#include "profile.h"
}

/* The core's retry hook (tensor.c). */
extern "C" void cf_run_alloc_retry_hook(void);

/* ---------------------------------------------------------------- state */

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static int g_init_state = 0;            /* 0 not tried, 1 ok, -1 no device, -2 no cuBLAS (do_init) */
static char g_init_msg[512];
static char g_name[256];
static cudaStream_t g_stream;
static cublasHandle_t g_blas;
static bool g_tf32 = false;

/* optimizer kernels (elementwise.cu) */
extern "C" void cf_cuda_register_optim(void);

/* ---------------------------------------------------------------- allocator */

#define NCLASS 256
struct block {
  void *p;
  size_t size;
  block *next;
};
static block *free_list[NCLASS];
static size_t st_in_use, st_cached, st_peak;
static cf_cuda_alloc_stats st_counts;   /* driver traffic (cuda.h) */

static double host_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

struct live_entry {
  void *p;      /* NULL empty, (void *)1 tombstone */
  size_t size;
};
static live_entry *live_tab;
static size_t live_cap, live_n, live_used;

#define TOMB ((void *)1)

static size_t hash_ptr(void *p) {
  uintptr_t x = (uintptr_t)p >> 8;
  x ^= x >> 17;
  x *= 0xed5ad4bbu;
  x ^= x >> 11;
  return (size_t)x;
}

static bool live_grow(void) {
  size_t cap = live_cap ? live_cap * 2 : 4096;
  live_entry *t = (live_entry *)calloc(cap, sizeof *t);
  if (!t) return false;
  for (size_t i = 0; i < live_cap; i++) {
    void *p = live_tab[i].p;
    if (!p || p == TOMB) continue;
    size_t h = hash_ptr(p) & (cap - 1);
    while (t[h].p) h = (h + 1) & (cap - 1);
    t[h] = live_tab[i];
  }
  free(live_tab);
  live_tab = t;
  live_cap = cap;
  live_used = live_n;
  return true;
}

static bool live_put(void *p, size_t size) {
  if ((live_used + 1) * 2 > live_cap && !live_grow()) return false;
  size_t h = hash_ptr(p) & (live_cap - 1);
  while (live_tab[h].p && live_tab[h].p != TOMB) h = (h + 1) & (live_cap - 1);
  if (!live_tab[h].p) live_used++;
  live_tab[h].p = p;
  live_tab[h].size = size;
  live_n++;
  return true;
}

/* Removes p; returns its size, 0 when unknown. */
static size_t live_take(void *p) {
  if (!live_cap) return 0;
  size_t h = hash_ptr(p) & (live_cap - 1);
  while (live_tab[h].p) {
    if (live_tab[h].p == p) {
      size_t s = live_tab[h].size;
      live_tab[h].p = TOMB;
      live_n--;
      return s;
    }
    h = (h + 1) & (live_cap - 1);
  }
  return 0;
}

/* Size class of n bytes: index and rounded size. */
static int size_class(size_t n, size_t *rounded) {
  if (n == 0) n = 1;
  if (n <= 4096) {
    size_t r = (n + 511) & ~(size_t)511;
    *rounded = r;
    return (int)(r / 512) - 1; /* 0..7 */
  }
  int k = 63 - __builtin_clzll((unsigned long long)(n - 1)); /* 2^k < n <= 2^(k+1) */
  size_t base = (size_t)1 << k;
  size_t q = base / 4;
  size_t r = base + ((n - base + q - 1) / q) * q; /* base + j*q, j in 1..4 */
  int j = (int)((r - base) / q);               /* 1..4 */
  *rounded = r;
  return 8 + (k - 12) * 4 + (j - 1);
}

/* CONFIT_ALLOC_TRACE=1: every trip to the driver on stderr (size, why, what is held), to find
 * where a step keeps allocating (read once) */
static int trace_on(void) {
  static int on = -1;
  if (on < 0) on = getenv("CONFIT_ALLOC_TRACE") && getenv("CONFIT_ALLOC_TRACE")[0] == '1';
  return on;
}

static void release_cache_locked(void) {
  if (trace_on())
    fprintf(stderr, "confit alloc: emptying the cache (%zu bytes cached, %zu in use)\n", st_cached, st_in_use);
  st_counts.cache_flushes++;
  for (int c = 0; c < NCLASS; c++) {
    block *b = free_list[c];
    while (b) {
      block *nx = b->next;
      st_counts.driver_frees++;
      cudaFree(b->p);
      st_cached -= b->size;
      free(b);
      b = nx;
    }
    free_list[c] = NULL;
  }
}

static void *try_malloc(size_t size) {
  void *p = NULL;
  double t0 = host_seconds();
  cudaError_t e = cudaMalloc(&p, size);
  st_counts.driver_malloc_seconds += host_seconds() - t0;
  if (e != cudaSuccess) {
    st_counts.driver_malloc_failures++;
    cudaGetLastError(); /* clear the sticky-free error state of the runtime */
    return NULL;
  }
  st_counts.driver_mallocs++;
  st_counts.driver_malloc_bytes += size;
  return p;
}

static int ensure_init(void);

static void *alloc_hook(size_t nbytes) {
  if (ensure_init()) return NULL;
  size_t size;
  int c = size_class(nbytes, &size);
  if (c < 0 || c >= NCLASS) {
    CF_ERR("CUDA out of memory: cannot allocate %zu bytes (larger than any size class)", nbytes);
    return NULL;
  }
  pthread_mutex_lock(&g_lock);
  void *p = NULL;
  st_counts.requests++;
  if (free_list[c]) {
    block *b = free_list[c];
    free_list[c] = b->next;
    p = b->p;
    st_cached -= b->size;
    free(b);
    st_counts.cache_hits++;
  }
  if (!p) {
    if (trace_on())
      fprintf(stderr, "confit alloc: driver malloc %zu bytes (asked %zu; class %d empty; %zu in use, %zu cached)\n",
              size, nbytes, c, st_in_use, st_cached);
    p = try_malloc(size);
  }
  if (!p) {
    release_cache_locked();
    p = try_malloc(size);
  }
  if (!p) {
    /* Let the owner of unreachable tensors (the Lua GC) give them back, then retry once. */
    pthread_mutex_unlock(&g_lock);
    cf_run_alloc_retry_hook();
    pthread_mutex_lock(&g_lock);
    release_cache_locked();
    p = try_malloc(size);
  }
  if (!p) {
    size_t fr = 0, tot = 0;
    cudaMemGetInfo(&fr, &tot);
    cudaGetLastError();
    size_t in_use = st_in_use, cached = st_cached;
    pthread_mutex_unlock(&g_lock);
    CF_ERR("CUDA out of memory: cannot allocate %zu bytes (%.2f GiB); confit holds %zu bytes "
           "(%.2f GiB) in live tensors and %zu bytes cached; the device has %zu of %zu bytes free",
           nbytes, (double)nbytes / (1 << 30), in_use, (double)in_use / (1 << 30), cached, fr, tot);
    return NULL;
  }
  if (!live_put(p, size)) {
    cudaFree(p);
    pthread_mutex_unlock(&g_lock);
    CF_ERR("CUDA allocator: out of host memory for the block table");
    return NULL;
  }
  st_in_use += size;
  if (st_in_use > st_peak) st_peak = st_in_use;
  pthread_mutex_unlock(&g_lock);
  return p;
}

static void free_hook(void *p, size_t nbytes) {
  (void)nbytes;
  if (!p) return;
  pthread_mutex_lock(&g_lock);
  size_t size = live_take(p);
  if (size == 0) { /* not ours: should not happen; give it back to the driver */
    pthread_mutex_unlock(&g_lock);
    cudaFree(p);
    return;
  }
  st_in_use -= size;
  size_t r;
  int c = size_class(size, &r);
  block *b = (block *)malloc(sizeof *b);
  if (!b) {
    cudaFree(p);
  } else {
    b->p = p;
    b->size = size;
    b->next = free_list[c];
    free_list[c] = b;
    st_cached += size;
  }
  pthread_mutex_unlock(&g_lock);
}

extern "C" void *cf_cuda_alloc(size_t nbytes) { return alloc_hook(nbytes); }
extern "C" void cf_cuda_free(void *p, size_t nbytes) { free_hook(p, nbytes); }

extern "C" void cf_cuda_alloc_stats_get(cf_cuda_alloc_stats *out) {
  pthread_mutex_lock(&g_lock);
  *out = st_counts;
  pthread_mutex_unlock(&g_lock);
}

extern "C" void cf_cuda_empty_cache(void) {
  if (g_init_state != 1) return;
  pthread_mutex_lock(&g_lock);
  release_cache_locked();
  pthread_mutex_unlock(&g_lock);
}

extern "C" void cf_cuda_reset_peak(void) {
  pthread_mutex_lock(&g_lock);
  st_peak = st_in_use;
  pthread_mutex_unlock(&g_lock);
}

extern "C" void cf_cuda_memory(size_t *in_use, size_t *cached, size_t *peak) {
  pthread_mutex_lock(&g_lock);
  if (in_use) *in_use = st_in_use;
  if (cached) *cached = st_cached;
  if (peak) *peak = st_peak;
  pthread_mutex_unlock(&g_lock);
}

/* ---------------------------------------------------------------- transfers */

#define STAGE_BYTES ((size_t)16 << 20) /* per half */
static char *g_stage;                  /* pinned, 2 * STAGE_BYTES */
static cudaEvent_t g_stage_ev[2];
static bool g_stage_ok;

static int stage_init(void) {
  if (g_stage_ok) return 0;
  if (cudaMallocHost((void **)&g_stage, 2 * STAGE_BYTES) != cudaSuccess) {
    cudaGetLastError();
    g_stage = NULL;
    return -1;
  }
  if (cudaEventCreateWithFlags(&g_stage_ev[0], cudaEventDisableTiming) != cudaSuccess ||
      cudaEventCreateWithFlags(&g_stage_ev[1], cudaEventDisableTiming) != cudaSuccess) {
    cudaGetLastError();
    cudaFreeHost(g_stage);
    g_stage = NULL;
    return -1;
  }
  g_stage_ok = true;
  return 0;
}

static int copy_hook(void *dst, cf_device ddev, const void *src, cf_device sdev, size_t nbytes) {
  if (ensure_init()) return -1;
  if (nbytes == 0) return 0;
  cudaStream_t s = g_stream;
  if (ddev == CF_DEVICE_CUDA && sdev == CF_DEVICE_CUDA)
    return cu_check(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDeviceToDevice, s), "device copy");
  if (ddev == CF_DEVICE_CUDA) { /* host -> device */
    pthread_mutex_lock(&g_lock);
    int rc = 0;
    if (stage_init() == 0) {
      int half = 0;
      for (size_t at = 0; at < nbytes && rc == 0; at += STAGE_BYTES, half ^= 1) {
        size_t n = nbytes - at < STAGE_BYTES ? nbytes - at : STAGE_BYTES;
        char *buf = g_stage + (size_t)half * STAGE_BYTES;
        rc = cu_check(cudaEventSynchronize(g_stage_ev[half]), "host to device copy");
        if (rc) break;
        memcpy(buf, (const char *)src + at, n);
        rc = cu_check(cudaMemcpyAsync((char *)dst + at, buf, n, cudaMemcpyHostToDevice, s),
                      "host to device copy");
        if (rc == 0) rc = cu_check(cudaEventRecord(g_stage_ev[half], s), "host to device copy");
      }
    } else { /* no pinned memory: a synchronous pageable copy */
      rc = cu_check(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyHostToDevice, s), "host to device copy");
      if (rc == 0) rc = cu_check(cudaStreamSynchronize(s), "host to device copy");
    }
    pthread_mutex_unlock(&g_lock);
    return rc;
  }
  /* device -> host */
  int rc = cu_check(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDeviceToHost, s), "device to host copy");
  if (rc == 0) rc = cu_check(cudaStreamSynchronize(s), "device to host copy");
  return rc;
}

static int memset0_hook(void *p, size_t nbytes) {
  if (nbytes == 0) return 0;
  return cu_check(cudaMemsetAsync(p, 0, nbytes, g_stream), "device memset");
}

/* Poison mode (tensor.h): uninitialised allocations get every byte = byte. */
static int fill_bytes_hook(void *p, int byte, size_t nbytes) {
  if (nbytes == 0) return 0;
  return cu_check(cudaMemsetAsync(p, byte, nbytes, g_stream), "device memset (poison)");
}

/* dst = src elementwise, any strides, any dtypes (the same shape). */
template <typename D, typename S>
__device__ __forceinline__ D cvt(S v) { return (D)v; }
template <> __device__ __forceinline__ bf16 cvt<bf16, float>(float v) { return __float2bfloat16(v); }
template <> __device__ __forceinline__ bf16 cvt<bf16, double>(double v) { return __double2bfloat16(v); }
template <> __device__ __forceinline__ bf16 cvt<bf16, bf16>(bf16 v) { return v; }
template <> __device__ __forceinline__ bf16 cvt<bf16, int32_t>(int32_t v) { return __float2bfloat16((float)v); }
template <> __device__ __forceinline__ bf16 cvt<bf16, int64_t>(int64_t v) { return __float2bfloat16((float)v); }
template <> __device__ __forceinline__ float cvt<float, bf16>(bf16 v) { return __bfloat162float(v); }
template <> __device__ __forceinline__ double cvt<double, bf16>(bf16 v) { return (double)__bfloat162float(v); }
template <> __device__ __forceinline__ int32_t cvt<int32_t, bf16>(bf16 v) { return (int32_t)__bfloat162float(v); }
template <> __device__ __forceinline__ int64_t cvt<int64_t, bf16>(bf16 v) { return (int64_t)__bfloat162float(v); }

// dst [shape] (strides it.st[0]) = src [shape] (strides it.st[1])
template <typename D, typename S>
__global__ void __launch_bounds__(CF_CU_THREADS) copy_kernel(D *dst, const S *src, cu_iter it, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    if (it.contiguous) { dst[i] = cvt<D, S>(src[i]); continue; }
    int64_t off[2];
    cu_offsets<2>(it, i, off);
    dst[off[0]] = cvt<D, S>(src[off[1]]);
  }
}

template <typename D>
static void launch_copy_src(D *dst, const void *src, cf_dtype sdt, const cu_iter &it, int64_t n) {
  unsigned g = cu_blocks(n, CF_CU_THREADS);
  switch (sdt) {
    case CF_DTYPE_F32: copy_kernel<D, float><<<g, CF_CU_THREADS, 0, g_stream>>>(dst, (const float *)src, it, n); break;
    case CF_DTYPE_F64: copy_kernel<D, double><<<g, CF_CU_THREADS, 0, g_stream>>>(dst, (const double *)src, it, n); break;
    case CF_DTYPE_BF16: copy_kernel<D, bf16><<<g, CF_CU_THREADS, 0, g_stream>>>(dst, (const bf16 *)src, it, n); break;
    case CF_DTYPE_I32: copy_kernel<D, int32_t><<<g, CF_CU_THREADS, 0, g_stream>>>(dst, (const int32_t *)src, it, n); break;
    case CF_DTYPE_I64: copy_kernel<D, int64_t><<<g, CF_CU_THREADS, 0, g_stream>>>(dst, (const int64_t *)src, it, n); break;
    default: break;
  }
}

static int launch_copy(void *dst, cf_dtype ddt, const void *src, cf_dtype sdt, const cu_iter &it, int64_t n) {
  switch (ddt) {
    case CF_DTYPE_F32: launch_copy_src((float *)dst, src, sdt, it, n); break;
    case CF_DTYPE_F64: launch_copy_src((double *)dst, src, sdt, it, n); break;
    case CF_DTYPE_BF16: launch_copy_src((bf16 *)dst, src, sdt, it, n); break;
    case CF_DTYPE_I32: launch_copy_src((int32_t *)dst, src, sdt, it, n); break;
    case CF_DTYPE_I64: launch_copy_src((int64_t *)dst, src, sdt, it, n); break;
    default: return CF_ERR("copy: invalid dtype %d", (int)ddt);
  }
  return cu_launched("device strided copy");
}

static int copy_strided_hook(cf_tensor *dst, cf_tensor *src) {
  if (ensure_init()) return -1;
  int64_t n = cf_tensor_numel(dst);
  if (n == 0) return 0;
  if (dst->dtype == src->dtype && cf_tensor_is_contiguous(dst) && cf_tensor_is_contiguous(src))
    return cu_check(cudaMemcpyAsync(cf_tensor_data(dst), cf_tensor_data(src),
                                    (size_t)n * cf_dtype_size(dst->dtype), cudaMemcpyDeviceToDevice,
                                    g_stream), "device copy");
  const cf_tensor *ops[2] = {dst, src};
  cu_iter it;
  cu_iter_init(&it, dst->ndim, dst->shape, 2, ops);
  return launch_copy(cf_tensor_data(dst), dst->dtype, cf_tensor_data(src), src->dtype, it, n);
}

int cu_convert(void *dst, cf_dtype ddt, const void *src, cf_dtype sdt, int64_t n) {
  if (n == 0) return 0;
  cu_iter it;
  memset(&it, 0, sizeof it);
  it.nd = 1;
  it.nop = 2;
  it.shape[0] = n;
  it.st[0][0] = it.st[1][0] = 1;
  it.contiguous = true;
  return launch_copy(dst, ddt, src, sdt, it, n);
}

/* ---------------------------------------------------------------- id checks */

int cu_read_i64(const int64_t *dev, int64_t *host, const char *what) {
  int rc = cu_check(cudaMemcpyAsync(host, dev, sizeof *host, cudaMemcpyDeviceToHost, g_stream), what);
  if (rc == 0) rc = cu_check(cudaStreamSynchronize(g_stream), what);
  return rc;
}

// bad[0] = smallest flat index i whose id is out of range (atomicMin), initialised to n
__global__ void __launch_bounds__(CF_CU_THREADS) check_ids_kernel(const void *ids, int dt, cu_iter it,
                                                                  int64_t n, int64_t limit, int allow_neg,
                                                                  unsigned long long *bad) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    int64_t off[1];
    cu_offsets<1>(it, i, off);
    int64_t id = ld_id(ids, dt, off[0]);
    if ((id < 0 && !allow_neg) || id >= limit) atomicMin(bad, (unsigned long long)i);
  }
}

int cu_check_ids(const char *op, const cf_tensor *ids, int64_t limit, bool allow_negative,
                 const char *what, const cf_tensor *ref) {
  int64_t n = cf_tensor_numel(ids);
  if (n == 0) return 0;
  cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(g_stream, &cs) == cudaSuccess && cs != cudaStreamCaptureStatusNone) return 0;
  cu_scratch s = {NULL, 0};
  int64_t *bad = (int64_t *)cu_scratch_get(&s, 16, op);
  if (!bad) return -1;
  int64_t init = n, idx = n;
  int rc = cu_check(cudaMemcpyAsync(bad, &init, sizeof init, cudaMemcpyHostToDevice, g_stream), op);
  if (rc == 0) {
    const cf_tensor *ops[1] = {ids};
    cu_iter it;
    cu_iter_init(&it, ids->ndim, ids->shape, 1, ops);
    check_ids_kernel<<<cu_blocks(n, CF_CU_THREADS), CF_CU_THREADS, 0, g_stream>>>(
        cf_tensor_data(ids), ids->dtype, it, n, limit, allow_negative, (unsigned long long *)bad);
    rc = cu_launched(op);
  }
  if (rc == 0) rc = cu_read_i64(bad, &idx, op);
  if (rc == 0 && idx < n) {
    /* fetch the offending value */
    int64_t flat = idx, off = 0;
    for (int d = ids->ndim - 1; d >= 0; d--) {
      off += (flat % ids->shape[d]) * ids->stride[d];
      flat /= ids->shape[d];
    }
    int64_t v = 0;
    size_t es = cf_dtype_size(ids->dtype);
    const char *p = (const char *)cf_tensor_data(ids) + (size_t)off * es;
    if (ids->dtype == CF_DTYPE_I64) rc = cu_read_i64((const int64_t *)p, &v, op);
    else {
      int32_t v32 = 0;
      rc = cu_check(cudaMemcpyAsync(&v32, p, 4, cudaMemcpyDeviceToHost, g_stream), op);
      if (rc == 0) rc = cu_check(cudaStreamSynchronize(g_stream), op);
      v = v32;
    }
    if (rc == 0) {
      char b[128];
      rc = CF_ERR("%s: %s %lld out of range for %lld (%s %s)", op, what, (long long)v,
                  (long long)limit, allow_negative ? "targets < 0 are ignored; input" : "input",
                  cf_shape_str(ref, b, sizeof b));
    }
  }
  cu_scratch_free(&s);
  return rc;
}

/* ---------------------------------------------------------------- init and hooks */

/* 0, or -1 when there is no device to use (no driver, none reported, device 0 would not start), or
 * -2 when the device started and cuBLAS did not; g_init_msg says why. */
static int do_init(void) {
  int count = 0;
  cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess || count == 0) {
    /* without any driver the runtime says "driver version is insufficient", which sends the
     * user to upgrade a driver that is not there: the kernel module's /proc entry tells */
    bool no_driver = e == cudaErrorInsufficientDriver && access("/proc/driver/nvidia/version", F_OK) != 0;
    snprintf(g_init_msg, sizeof g_init_msg, "no CUDA device: %s%s",
             no_driver ? "no NVIDIA driver is loaded (no /proc/driver/nvidia); CUDA says: " : "",
             e != cudaSuccess ? cudaGetErrorString(e) : "the driver reports 0 devices");
    cudaGetLastError();
    return -1;
  }
  cudaDeviceProp prop;
  if ((e = cudaSetDevice(0)) != cudaSuccess || (e = cudaGetDeviceProperties(&prop, 0)) != cudaSuccess ||
      (e = cudaStreamCreateWithFlags(&g_stream, cudaStreamNonBlocking)) != cudaSuccess) {
    snprintf(g_init_msg, sizeof g_init_msg, "no CUDA device: initialising device 0 failed: %s",
             cudaGetErrorString(e));
    cudaGetLastError();
    return -1;
  }
  snprintf(g_name, sizeof g_name, "%s", prop.name);
  cublasStatus_t bs = cublasCreate(&g_blas);
  if (bs != CUBLAS_STATUS_SUCCESS) {
    snprintf(g_init_msg, sizeof g_init_msg, "the GPU (%s) started but cuBLAS did not: %s (status %d)", g_name,
             cublasGetStatusString(bs), (int)bs);
    cudaGetLastError();
    return -2;
  }
  cublasSetStream(g_blas, g_stream);
  cublasSetPointerMode(g_blas, CUBLAS_POINTER_MODE_HOST);
  return 0;
}

static const cf_device_hooks g_hooks = {alloc_hook, free_hook, copy_hook, memset0_hook, fill_bytes_hook,
                                        copy_strided_hook};

/* ---------------------------------------------------------------- profiler timer (profile.h) */
/* Events on the one stream, recycled through a free list (creating an event costs more than
 * recording one). Nothing is recorded before the device is in use or while the stream is being
 * captured into a graph (an event recorded there would become a graph node, not a timestamp). */
static cudaEvent_t *g_evfree;
static int g_nevfree, g_capevfree;

static void *prof_record(void) {
  if (g_init_state != 1) return NULL;
  cudaStreamCaptureStatus cs;
  if (cudaStreamIsCapturing(g_stream, &cs) != cudaSuccess || cs != cudaStreamCaptureStatusNone) {
    cudaGetLastError();
    return NULL;
  }
  cudaEvent_t ev;
  if (g_nevfree > 0) ev = g_evfree[--g_nevfree];
  else if (cudaEventCreate(&ev) != cudaSuccess) { cudaGetLastError(); return NULL; }
  if (cudaEventRecord(ev, g_stream) != cudaSuccess) {
    cudaGetLastError();
    cudaEventDestroy(ev);
    return NULL;
  }
  return (void *)ev;
}

static int prof_elapsed(void *a, void *b, double *seconds) {
  float ms = 0;
  if (cudaEventElapsedTime(&ms, (cudaEvent_t)a, (cudaEvent_t)b) != cudaSuccess) { cudaGetLastError(); return -1; }
  *seconds = 1e-3 * (double)ms;
  return 0;
}

static int prof_sync(void) { return cf_cuda_synchronize(); }

static void prof_release(void *ev) {
  if (g_nevfree == g_capevfree) {
    int cap = g_capevfree ? 2 * g_capevfree : 256;
    cudaEvent_t *p = (cudaEvent_t *)realloc(g_evfree, (size_t)cap * sizeof *p);
    if (!p) { cudaEventDestroy((cudaEvent_t)ev); return; }
    g_evfree = p;
    g_capevfree = cap;
  }
  g_evfree[g_nevfree++] = (cudaEvent_t)ev;
}

static const cf_prof_timer g_prof_timer = {prof_record, prof_elapsed, prof_sync, prof_release};

static int ensure_init(void) {
  if (g_init_state == 1) return 0;
  return cf_cuda_init();
}

extern "C" int cf_cuda_init(void) {
  pthread_mutex_lock(&g_lock);
  if (g_init_state == 0) {
    int rc = do_init();
    g_init_state = rc == 0 ? 1 : rc;
    if (g_init_state == 1) {
      cf_register_device(CF_DEVICE_CUDA, &g_hooks);
      cf_cuda_register_optim();
    }
  }
  int st = g_init_state;
  pthread_mutex_unlock(&g_lock);
  if (st == 1) return 0;
  return CF_ERR("%s", g_init_msg);
}

extern "C" void cf_cuda_register(void) {
  if (g_init_state == 0 && !cf_device_get(CF_DEVICE_CUDA)) cf_register_device(CF_DEVICE_CUDA, &g_hooks);
  cf_prof_register_timer(&g_prof_timer);
}

extern "C" bool cf_cuda_available(void) {
  if (g_init_state == 0) {
    int rc = cf_cuda_init();
    if (rc) cf_error_clear();
  }
  return g_init_state == 1;
}

extern "C" cf_cuda_status cf_cuda_state(void) {
  switch (g_init_state) {
    case 0: return CF_CUDA_UNTRIED;
    case 1: return CF_CUDA_READY;
    case -2: return CF_CUDA_NO_CUBLAS;
    default: return CF_CUDA_NO_DEVICE;
  }
}

extern "C" const char *cf_cuda_device_name(void) { return g_init_state == 1 ? g_name : ""; }

extern "C" int cf_cuda_synchronize(void) {
  if (g_init_state != 1) return 0;
  return cu_check(cudaStreamSynchronize(g_stream), "synchronize (an earlier kernel failed)");
}

extern "C" void cf_cuda_set_tf32(bool on) { g_tf32 = on; }
extern "C" bool cf_cuda_tf32(void) { return g_tf32; }
extern "C" void *cf_cuda_stream(void) { return ensure_init() == 0 ? (void *)g_stream : NULL; }
extern "C" void *cf_cuda_cublas(void) { return ensure_init() == 0 ? (void *)g_blas : NULL; }
