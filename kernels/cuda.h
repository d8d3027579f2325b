/* cuda.h - the CUDA layer's C face: device init, the caching allocator's statistics, the one
 * stream and the cuBLAS handle. Includers need no CUDA headers (handles are void *).
 *
 * Everything here exists only in a build with CF_HAVE_CUDA; callers in code that must also
 * build without CUDA (lua/l_cuda.c) guard their calls with #ifdef CF_HAVE_CUDA.
 *
 * Initialisation is lazy: cf_cuda_register() (cheap, no CUDA call) installs the device hooks of
 * tensor.h whose first use runs cf_cuda_init(); cf_cuda_init() picks device 0, creates the
 * stream, the cuBLAS handle and the optimizer kernels. All device work of confit is queued on
 * that one stream, so ordering between kernels, copies and allocator reuse is the stream order.
 */
#ifndef CF_CUDA_H
#define CF_CUDA_H

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* 0 when a device is usable (idempotent); -1 + message otherwise: "no CUDA device: ..." when
 * there is none to use, "the GPU (<name>) started but cuBLAS did not: ..." when its cuBLAS handle
 * could not be made (cf_cuda_state tells the two apart). */
int cf_cuda_init(void);
/* What the first cf_cuda_init() found (its result stays): CF_CUDA_UNTRIED before it ran;
 * CF_CUDA_READY; CF_CUDA_NO_DEVICE when no GPU is usable (no driver, the driver reports none,
 * device 0 would not start); CF_CUDA_NO_CUBLAS when the GPU started and cuBLAS did not. The Lua
 * binding words "no usable GPU" by it (lua/l_cuda.c, cf_lua_no_gpu), not by the message's text. */
typedef enum { CF_CUDA_UNTRIED, CF_CUDA_READY, CF_CUDA_NO_DEVICE, CF_CUDA_NO_CUBLAS } cf_cuda_status;
cf_cuda_status cf_cuda_state(void);
/* Installs the tensor.h device hooks for CF_DEVICE_CUDA without touching the driver; the first
 * allocation initialises the device (and fails with the init message when there is none). */
void cf_cuda_register(void);
/* True when cf_cuda_init() succeeds (the result of the first attempt is remembered). */
bool cf_cuda_available(void);
/* "NVIDIA H100 80GB HBM3" etc.; "" when no device. */
const char *cf_cuda_device_name(void);
/* Waits for all queued work; -1 + message when a kernel failed asynchronously. */
int cf_cuda_synchronize(void);
/* Returns every cached (free) block to the driver. */
void cf_cuda_empty_cache(void);
/* Bytes held by live tensors, bytes cached for reuse, peak of in_use since start. Any may be NULL. */
void cf_cuda_memory(size_t *in_use, size_t *cached, size_t *peak);
/* The peak becomes what is in use now. */
void cf_cuda_reset_peak(void);
/* The caching allocator's traffic since start: how often a request had to reach the driver
 * (each cudaMalloc may synchronise the device and costs far more than a cache hit), and how
 * often an allocation failure emptied the whole cache (cudaFree of every cached block). */
typedef struct cf_cuda_alloc_stats {
  long long requests, cache_hits;              /* allocations asked for; served from the cache */
  long long driver_mallocs, driver_malloc_failures, driver_frees, cache_flushes;
  long long driver_malloc_bytes;
  double driver_malloc_seconds;                /* host time spent inside cudaMalloc */
} cf_cuda_alloc_stats;
void cf_cuda_alloc_stats_get(cf_cuda_alloc_stats *out);
/* f32 GEMMs (matmul, head_logprob) may use TF32 tensor cores (off by default). */
void cf_cuda_set_tf32(bool on);
bool cf_cuda_tf32(void);
/* bf16 attention without a mask, D = Dv in {64, 128}, on tensor cores (attention_tc.cu); the
 * default is on; CONFIT_ATTN_TC=0 (read once) turns it off. Returns the previous setting. */
bool cf_cuda_set_attention_tc(bool on);
/* The cudaStream_t all confit work runs on, and the cublasHandle_t bound to it. */
void *cf_cuda_stream(void);
void *cf_cuda_cublas(void);
/* Scratch device memory from the caching allocator (NULL + message on failure). */
void *cf_cuda_alloc(size_t nbytes);
void cf_cuda_free(void *p, size_t nbytes);

/* Decode GEMMs on tensor cores (skinny.cu): A <= 16 rows of activations against a bf16 weight
 * W (out, in), queued on stream (NULL: confit's).
 *   plain:  Y (A, ldy) f32 = X W^T + beta Y; with ss_out, also per-row partial sums of squares
 *           of Y as written, [grid][16] (grid from cf_cuda_skinny_plan): what a following
 *           GEMM's ss_in needs to RMS-normalise Y on load;
 *   swiglu: W = [gate; up], out = 2F: act (A, F) bf16 = silu(X Wg^T) * (X Wu^T).
 * The activations are bf16 X (A, in; row stride ldx), or f32 xf normalised on load,
 * xf * rsqrt(ss / in + eps) * gnorm with ss = the sum of the ss_groups partials in ss_in
 * (RMSNorm folded into the GEMM). cf_cuda_skinny_ok says whether a job qualifies (in % 32 == 0,
 * out % 8 == 0 (16 for swiglu), ldx % 8 == 0, 16-byte aligned W, X / xf and gnorm);
 * cf_cuda_skinny_run fails with a message saying what is wrong otherwise.
 * opts may be NULL (defaults): nt = tiles of 8 columns per block (1, 2, 4; xf makes it 4),
 * ksb = parts K is split into across blocks (needs ws; 0 = chosen), minb = 1 lets a block use up
 * to 255 registers, 2 caps it for two blocks per multiprocessor, pdl launches it as a
 * programmatic dependent launch (it prefetches its first weights into L2 while the previous
 * kernel ends; the wide layout loads them into registers then: with pdl, no kernel still in flight
 * may be writing W), wide asks for the wide layout (nt tiles per warp, the block's X staged in
 * shared memory; skinny_kernel.cuh; minb does not apply), kept only where the workspace holds the
 * parts of K it needs. ws holds the partial tiles and ticket counters of a split K; one workspace
 * serves launches queued in order on one stream. */
typedef struct cf_skinny_opts { int nt, ksb, minb; bool pdl, wide; } cf_skinny_opts;
typedef struct cf_skinny_ws { float *part; size_t nfloat; int *cnt; int ncnt; } cf_skinny_ws;
typedef struct cf_skinny_job {
  const void *W;
  const void *X;
  const float *xf, *gnorm, *ss_in;
  int ss_groups;
  float eps;
  int ldx;
  float *Y;
  int ldy;
  float beta;
  float *ss_out;
  void *act;
  int A, in, out;
  bool swiglu;
} cf_skinny_job;
bool cf_cuda_skinny_ok(const cf_skinny_job *job);
int cf_cuda_skinny_run(const cf_skinny_job *job, const cf_skinny_opts *opts, const cf_skinny_ws *ws, void *stream);
/* The launch it would make: tiles per block (per warp when wide), parts of K, column groups
 * (grid.x); returns whether it is the wide layout. */
bool cf_cuda_skinny_plan(const cf_skinny_job *job, const cf_skinny_opts *opts, const cf_skinny_ws *ws, int *nt,
                         int *ksb, int *grid);
/* nfloat floats of partial tiles and ncnt zeroed counters; freed by cf_cuda_skinny_ws_free. */
int cf_cuda_skinny_ws_init(cf_skinny_ws *ws, size_t nfloat, int ncnt);
void cf_cuda_skinny_ws_free(cf_skinny_ws *ws);

#ifdef __cplusplus
}
#endif

#endif
