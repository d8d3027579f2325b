/* reduce.cu - CUDA kernels of the reductions (sum mean max argmax min argmin logsumexp var), of
 * cumsum, and of softmax and log_softmax; sort and argsort run the CPU kernel on a host copy.
 *
 * The input is made contiguous (a device copy only when it is not) and seen as [outer, n, inner]
 * around the reduced dim (dim = all: one row of numel). Two layouts:
 *   inner == 1  one block per row; threads stride along the row and combine with block
 *               reductions (coalesced reads);
 *   inner > 1   one thread per (outer, inner) column walking n with stride inner (neighbouring
 *               threads read neighbouring addresses, so loads stay coalesced).
 * Accumulation: sums, means and variances in double; logsumexp and softmax in f32 after
 * subtracting the row maximum (fp32 accumulation for bf16 too).
 * Conventions (same as core/cpu/reduce.c): max/argmax pick the FIRST maximum and propagate NaN
 * (the first NaN wins) and refuse an empty dim; min/argmin are max/argmax of the negated values; mean of nothing is NaN; logsumexp of an all -inf
 * row is -inf; softmax of an all -inf row is 0 (log_softmax -inf); var divides by n - 1 when
 * unbiased.
 */
#include "kernels/cuda_internal.cuh"

enum { R_SUM, R_MEAN, R_MAX, R_ARGMAX, R_MIN, R_ARGMIN, R_LSE, R_VAR };

/* max/argmax and min/argmin share one walk: the latter look at -x (and min gives -(max of -x)) */
#define R_ARGLIKE(OP) ((OP) == R_MAX || (OP) == R_ARGMAX || (OP) == R_MIN || (OP) == R_ARGMIN)
#define R_SIGN(OP) (((OP) == R_MIN || (OP) == R_ARGMIN) ? -1.0f : 1.0f)
#define R_INDEX(OP) ((OP) == R_ARGMAX || (OP) == R_ARGMIN)

/* (v, i) beats (w, j): NaN first, then larger, then the smaller index. */
__device__ __forceinline__ bool arg_better(float v, int64_t i, float w, int64_t j) {
  bool vn = isnan(v), wn = isnan(w);
  if (vn || wn) return vn && (!wn || i < j);
  if (v != w) return v > w;
  return i < j;
}

__device__ void block_argmax(float &v, int64_t &idx) {
  __shared__ float sv[32];
  __shared__ int64_t si[32];
  int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    float ov = __shfl_xor_sync(0xffffffffu, v, o);
    int64_t oi = __shfl_xor_sync(0xffffffffu, idx, o);
    if (arg_better(ov, oi, v, idx)) { v = ov; idx = oi; }
  }
  __syncthreads();
  if (lane == 0) { sv[w] = v; si[w] = idx; }
  __syncthreads();
  v = lane < nw ? sv[lane] : -INFINITY;
  idx = lane < nw ? si[lane] : INT64_MAX;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    float ov = __shfl_xor_sync(0xffffffffu, v, o);
    int64_t oi = __shfl_xor_sync(0xffffffffu, idx, o);
    if (arg_better(ov, oi, v, idx)) { v = ov; idx = oi; }
  }
}

/* Block-wide max that propagates NaN. */
__device__ __forceinline__ float block_max_nan(float v) {
  int nan = block_sum(isnan(v) ? 1.0f : 0.0f) > 0;
  float m = block_max(v);
  return nan ? NAN : m;
}

// out [rows] = reduce of x [rows, n] (one block per row)
template <typename T, int OP>
__global__ void __launch_bounds__(CF_CU_THREADS) reduce_rows_kernel(const T *x, void *out, int64_t n, int unbiased) {
  const T *row = x + (int64_t)blockIdx.x * n;
  int64_t r = blockIdx.x;
  if (OP == R_SUM || OP == R_MEAN || OP == R_VAR) {
    double acc = 0;
    for (int64_t k = threadIdx.x; k < n; k += blockDim.x) acc += (double)ldf(row, k);
    acc = block_sum(acc);
    if (OP == R_VAR) {
      double mean = acc / (double)n, ss = 0;
      for (int64_t k = threadIdx.x; k < n; k += blockDim.x) {
        double d = (double)ldf(row, k) - mean;
        ss += d * d;
      }
      ss = block_sum(ss);
      if (threadIdx.x == 0) stf((T *)out, r, (float)(ss / ((double)n - (unbiased ? 1.0 : 0.0))));
    } else if (threadIdx.x == 0) {
      stf((T *)out, r, (float)(OP == R_SUM ? acc : acc / (double)n));
    }
  } else if (R_ARGLIKE(OP)) {
    float v = -INFINITY;
    int64_t idx = INT64_MAX;
    for (int64_t k = threadIdx.x; k < n; k += blockDim.x) {
      float w = R_SIGN(OP) * ldf(row, k);
      if (arg_better(w, k, v, idx)) { v = w; idx = k; }
    }
    block_argmax(v, idx);
    if (threadIdx.x == 0) {
      if (R_INDEX(OP)) ((int64_t *)out)[r] = idx;
      else stf((T *)out, r, R_SIGN(OP) * v);
    }
  } else { /* R_LSE */
    float m = -INFINITY;
    bool nan = false;
    for (int64_t k = threadIdx.x; k < n; k += blockDim.x) {
      float w = ldf(row, k);
      nan |= isnan(w);
      m = fmaxf(m, w);
    }
    m = block_max_nan(nan ? NAN : m);
    float res;
    if (isnan(m) || isinf(m)) {
      res = m;
    } else {
      float acc = 0;
      for (int64_t k = threadIdx.x; k < n; k += blockDim.x) acc += expf(ldf(row, k) - m);
      acc = block_sum(acc);
      res = m + logf(acc);
    }
    if (threadIdx.x == 0) stf((T *)out, r, res);
  }
}

// out [outer * inner] = reduce of x [outer, n, inner] along n (one thread per column)
template <typename T, int OP>
__global__ void __launch_bounds__(CF_CU_THREADS) reduce_cols_kernel(const T *x, void *out, int64_t rows, int64_t n,
                                                                    int64_t inner, int unbiased) {
  for (int64_t r = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; r < rows; r += (int64_t)gridDim.x * blockDim.x) {
    const T *col = x + (r / inner) * n * inner + r % inner;
    if (OP == R_SUM || OP == R_MEAN || OP == R_VAR) {
      double acc = 0;
      for (int64_t k = 0; k < n; k++) acc += (double)ldf(col, k * inner);
      if (OP == R_VAR) {
        double mean = acc / (double)n, ss = 0;
        for (int64_t k = 0; k < n; k++) {
          double d = (double)ldf(col, k * inner) - mean;
          ss += d * d;
        }
        stf((T *)out, r, (float)(ss / ((double)n - (unbiased ? 1.0 : 0.0))));
      } else {
        stf((T *)out, r, (float)(OP == R_SUM ? acc : acc / (double)n));
      }
    } else if (R_ARGLIKE(OP)) {
      float v = -INFINITY;
      int64_t idx = 0;
      for (int64_t k = 0; k < n; k++) {
        float w = R_SIGN(OP) * ldf(col, k * inner);
        if (k == 0 || arg_better(w, k, v, idx)) { v = w; idx = k; }
        if (isnan(w)) break;
      }
      if (R_INDEX(OP)) ((int64_t *)out)[r] = idx;
      else stf((T *)out, r, R_SIGN(OP) * v);
    } else {
      float m = -INFINITY;
      bool nan = false;
      for (int64_t k = 0; k < n; k++) {
        float w = ldf(col, k * inner);
        nan |= isnan(w);
        m = fmaxf(m, w);
      }
      float res;
      if (nan) res = NAN;
      else if (isinf(m)) res = m;
      else {
        float acc = 0;
        for (int64_t k = 0; k < n; k++) acc += expf(ldf(col, k * inner) - m);
        res = m + logf(acc);
      }
      stf((T *)out, r, res);
    }
  }
}

/* Sum / mean over n of x [outer, n, inner] when the columns are few and n is long (a bias
 * gradient: [tokens, features] -> [features]): one thread per column would walk n serially.
 * Pass 1, grid (ceil(inner / 32), chunks, outer), 32 x 8 threads: the block sums rows
 * [c * rows_per, (c + 1) * rows_per) of 32 columns; thread (tx, ty) takes every 8th row, then the
 * 8 partials are added in a fixed order and written to part [outer, chunks, inner] (double).
 * Pass 2 adds the chunk partials in order. Deterministic; double accumulation like the others. */
#define COLS_TX 32
#define COLS_TY 8
template <typename T>
__global__ void __launch_bounds__(COLS_TX * COLS_TY) sum_cols_part_kernel(const T *x, double *part, int64_t n,
                                                                          int64_t inner, int64_t rows_per,
                                                                          int chunks) {
  __shared__ double red[COLS_TY][COLS_TX + 1];
  int tx = threadIdx.x, ty = threadIdx.y;
  int64_t c = (int64_t)blockIdx.x * COLS_TX + tx, o = blockIdx.z;
  int64_t k0 = (int64_t)blockIdx.y * rows_per, k1 = k0 + rows_per < n ? k0 + rows_per : n;
  double acc = 0;
  if (c < inner) {
    const T *col = x + o * n * inner + c;
    for (int64_t k = k0 + ty; k < k1; k += COLS_TY) acc += (double)ldf(col, k * inner);
  }
  red[ty][tx] = acc;
  __syncthreads();
  if (ty == 0 && c < inner) {
    double s = 0;
#pragma unroll
    for (int j = 0; j < COLS_TY; j++) s += red[j][tx];
    part[(o * chunks + blockIdx.y) * inner + c] = s;
  }
}

template <typename T, int OP>
__global__ void __launch_bounds__(CF_CU_THREADS) sum_cols_final_kernel(const double *part, void *out, int64_t rows,
                                                                       int64_t inner, int chunks, int64_t n) {
  for (int64_t r = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; r < rows; r += (int64_t)gridDim.x * blockDim.x) {
    const double *p = part + (r / inner) * chunks * inner + r % inner;
    double s = 0;
    for (int j = 0; j < chunks; j++) s += p[(int64_t)j * inner];
    stf((T *)out, r, (float)(OP == R_MEAN ? s / (double)n : s));
  }
}

/* Pass-1 chunking: about 4 blocks per SM in all, chunks of at least 64 rows. */
static void cols_chunking(int64_t outer, int64_t n, int64_t inner, int *chunks, int64_t *rows_per) {
  int64_t colblocks = (inner + COLS_TX - 1) / COLS_TX;
  int64_t want = 528 / (colblocks * outer > 0 ? colblocks * outer : 1);
  int64_t maxc = (n + 63) / 64;
  if (want > maxc) want = maxc;
  if (want > 1024) want = 1024;
  if (want < 1) want = 1;
  *rows_per = (n + want - 1) / want;
  *chunks = (int)((n + *rows_per - 1) / *rows_per);
}

template <typename T, int OP>
static int launch_sum_cols(const T *x, void *out, int64_t outer, int64_t n, int64_t inner, const char *name) {
  int chunks;
  int64_t rows_per;
  cols_chunking(outer, n, inner, &chunks, &rows_per);
  cu_scratch s = {NULL, 0};
  double *part = (double *)cu_scratch_get(&s, (size_t)(outer * chunks * inner) * sizeof(double), name);
  if (!part) return -1;
  dim3 grid((unsigned)((inner + COLS_TX - 1) / COLS_TX), (unsigned)chunks, (unsigned)outer);
  sum_cols_part_kernel<T><<<grid, dim3(COLS_TX, COLS_TY), 0, cu_stream()>>>(x, part, n, inner, rows_per, chunks);
  int64_t rows = outer * inner;
  sum_cols_final_kernel<T, OP><<<cu_blocks(rows, CF_CU_THREADS), CF_CU_THREADS, 0, cu_stream()>>>(
      part, out, rows, inner, chunks, n);
  int rc = cu_launched(name);
  cu_scratch_free(&s);
  return rc;
}

/* The tiled column sum pays when a thread per column would be few threads walking long columns. */
static bool use_sum_cols(int64_t outer, int64_t n, int64_t inner) {
  return inner > 1 && n >= 256 && outer <= 65535 && outer * inner <= (int64_t)1 << 20;
}

// out [rows, n] = softmax / log_softmax of x [rows, n] along n (one block per row)
template <typename T, bool LOGP>
__global__ void __launch_bounds__(CF_CU_THREADS) softmax_rows_kernel(const T *x, T *out, int64_t n) {
  const T *row = x + (int64_t)blockIdx.x * n;
  T *orow = out + (int64_t)blockIdx.x * n;
  float m = -INFINITY;
  bool nan = false;
  for (int64_t k = threadIdx.x; k < n; k += blockDim.x) {
    float w = ldf(row, k);
    nan |= isnan(w);
    m = fmaxf(m, w);
  }
  m = block_max_nan(nan ? NAN : m);
  if (m == -INFINITY) {
    for (int64_t k = threadIdx.x; k < n; k += blockDim.x) stf(orow, k, LOGP ? -INFINITY : 0.0f);
    return;
  }
  float acc = 0;
  for (int64_t k = threadIdx.x; k < n; k += blockDim.x) acc += expf(ldf(row, k) - m);
  acc = block_sum(acc);
  float lse = logf(acc), inv = 1.0f / acc;
  for (int64_t k = threadIdx.x; k < n; k += blockDim.x) {
    float z = ldf(row, k) - m;
    stf(orow, k, LOGP ? z - lse : expf(z) * inv);
  }
}

// out [outer, n, inner] = softmax along n (one thread per column)
template <typename T, bool LOGP>
__global__ void __launch_bounds__(CF_CU_THREADS) softmax_cols_kernel(const T *x, T *out, int64_t rows, int64_t n,
                                                                     int64_t inner) {
  for (int64_t r = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; r < rows; r += (int64_t)gridDim.x * blockDim.x) {
    int64_t base = (r / inner) * n * inner + r % inner;
    const T *col = x + base;
    T *ocol = out + base;
    float m = -INFINITY;
    bool nan = false;
    for (int64_t k = 0; k < n; k++) {
      float w = ldf(col, k * inner);
      nan |= isnan(w);
      m = fmaxf(m, w);
    }
    if (nan) m = NAN;
    if (m == -INFINITY) {
      for (int64_t k = 0; k < n; k++) stf(ocol, k * inner, LOGP ? -INFINITY : 0.0f);
      continue;
    }
    float acc = 0;
    for (int64_t k = 0; k < n; k++) acc += expf(ldf(col, k * inner) - m);
    float lse = logf(acc), inv = 1.0f / acc;
    for (int64_t k = 0; k < n; k++) {
      float z = ldf(col, k * inner) - m;
      stf(ocol, k * inner, LOGP ? z - lse : expf(z) * inv);
    }
  }
}

/* ---------------------------------------------------------------- host side */

template <typename T, int OP>
static void launch_reduce(const T *x, void *out, int64_t rows, int64_t n, int64_t inner, int unbiased) {
  if (inner == 1 && rows <= 0x7fffffffLL)
    reduce_rows_kernel<T, OP><<<(unsigned)rows, CF_CU_THREADS, 0, cu_stream()>>>(x, out, n, unbiased);
  else
    reduce_cols_kernel<T, OP><<<cu_blocks(rows, CF_CU_THREADS), CF_CU_THREADS, 0, cu_stream()>>>(
        x, out, rows, n, inner, unbiased);
}

template <int OP>
static int reduce(const char *name, cf_tensor *out, cf_tensor *x0, const cf_args *a) {
  if (cu_check_float(name, x0)) return -1;
  int64_t outer = 0, n = 0, inner = 1;
  if (cf_reduce_geometry(name, x0, a->i[0], true, &outer, &n, &inner)) return -1;
  int64_t rows = outer * inner;
  if (R_ARGLIKE(OP) && cf_reduce_nonempty(name, x0, n, rows)) return -1;
  if (rows == 0) return 0;
  if (n == 0) { /* sum 0, mean/var NaN, lse -inf (the output is uninitialised: CF_FULLWRITE) */
    if (OP == R_SUM)
      return cu_check(cudaMemsetAsync(cf_tensor_data(out), 0, (size_t)rows * cf_dtype_size(out->dtype), cu_stream()),
                      name);
    return cf_tensor_fill_(out, OP == R_LSE ? -INFINITY : NAN);
  }
  int unbiased = OP == R_VAR && (a->ni < 3 || a->i[2] != 0);
  cf_tensor *x = cu_contig(x0);
  if (!x) return -1;
  void *op = cf_tensor_data(out);
  if ((OP == R_SUM || OP == R_MEAN) && use_sum_cols(outer, n, inner)) {
    int rc = x->dtype == CF_DTYPE_F32
                 ? launch_sum_cols<float, OP>((const float *)cf_tensor_data(x), op, outer, n, inner, name)
                 : launch_sum_cols<bf16, OP>((const bf16 *)cf_tensor_data(x), op, outer, n, inner, name);
    cf_tensor_release(x);
    return rc;
  }
  if (x->dtype == CF_DTYPE_F32) launch_reduce<float, OP>((const float *)cf_tensor_data(x), op, rows, n, inner, unbiased);
  else launch_reduce<bf16, OP>((const bf16 *)cf_tensor_data(x), op, rows, n, inner, unbiased);
  cf_tensor_release(x);
  return cu_launched(name);
}

/* cf_cuda_<op> of the plain reductions (grep `REDUCE(<op>,`); logsumexp is written out */
#define REDUCE(name, code)                                                                       \
  extern "C" int cf_cuda_##name(cf_tensor *out, cf_tensor *const *in, int nin, const cf_args *a) { \
    (void)nin;                                                                                    \
    return reduce<code>(#name, out, in[0], a);                                                    \
  }
REDUCE(sum, R_SUM)
REDUCE(mean, R_MEAN)
REDUCE(max, R_MAX)
REDUCE(argmax, R_ARGMAX)
REDUCE(min, R_MIN)
REDUCE(argmin, R_ARGMIN)
REDUCE(var, R_VAR)
extern "C" int cf_cuda_logsumexp(cf_tensor *out, cf_tensor *const *in, int nin, const cf_args *a) {
  (void)nin;
  if (a->i[0] == CF_DIM_ALL) return CF_ERR("logsumexp: a dim is required");
  return reduce<R_LSE>("logsumexp", out, in[0], a);
}

/* ---------------------------------------------------------------- cumsum */

// out [outer, n, inner] = running sums of x along n, from the end when reverse (one thread per
// column, double accumulation as on the CPU, so both round the same sums)
template <typename T>
__global__ void __launch_bounds__(CF_CU_THREADS) cumsum_kernel(const T *x, T *out, int64_t rows, int64_t n,
                                                               int64_t inner, bool reverse) {
  for (int64_t r = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; r < rows; r += (int64_t)gridDim.x * blockDim.x) {
    int64_t base = (r / inner) * n * inner + r % inner;
    double acc = 0;
    for (int64_t j = 0; j < n; j++) {
      int64_t i = base + (reverse ? n - 1 - j : j) * inner;
      acc += (double)ldf(x, i);
      stf(out, i, (float)acc);
    }
  }
}

extern "C" int cf_cuda_cumsum(cf_tensor *out, cf_tensor *const *in, int nin, const cf_args *a) {
  (void)nin;
  cf_tensor *x0 = in[0];
  if (cu_check_float("cumsum", x0)) return -1;
  int64_t outer = 0, n = 0, inner = 1;
  if (cf_reduce_geometry("cumsum", x0, a->i[0], false, &outer, &n, &inner)) return -1;
  int64_t rows = outer * inner;
  if (rows == 0 || n == 0) return 0;
  bool reverse = a->ni > 1 && a->i[1] != 0;
  cf_tensor *x = cu_contig(x0);
  if (!x) return -1;
  unsigned g = cu_blocks(rows, CF_CU_THREADS);
  if (x->dtype == CF_DTYPE_F32)
    cumsum_kernel<float><<<g, CF_CU_THREADS, 0, cu_stream()>>>((const float *)cf_tensor_data(x),
        (float *)cf_tensor_data(out), rows, n, inner, reverse);
  else
    cumsum_kernel<bf16><<<g, CF_CU_THREADS, 0, cu_stream()>>>((const bf16 *)cf_tensor_data(x),
        (bf16 *)cf_tensor_data(out), rows, n, inner, reverse);
  cf_tensor_release(x);
  return cu_launched("cumsum");
}

/* ---------------------------------------------------------------- sort, argsort */

extern "C" int cf_cpu_sort(cf_tensor *out, cf_tensor *const *in, int nin, const cf_args *a);
extern "C" int cf_cpu_argsort(cf_tensor *out, cf_tensor *const *in, int nin, const cf_args *a);

/* The CPU kernel on a host copy (f32 for bf16: a sort moves values, so the round trip is exact),
 * its result copied back into out: a sort in a recipe orders a batch's few numbers, where a
 * device sort would gain nothing; the two copies are in order on the stream (synchronous). */
static int sort_on_host(const char *name, bool idx, cf_tensor *out, cf_tensor *x0, const cf_args *a) {
  if (cu_check_float(name, x0)) return -1;
  if (cf_tensor_numel(out) == 0) return 0;
  cf_tensor *h = cf_tensor_to_device(x0, CF_DEVICE_CPU);
  cf_tensor *h32 = h ? cf_tensor_to_dtype(h, CF_DTYPE_F32) : NULL;
  cf_tensor_release(h);
  if (!h32) return -1;
  cf_tensor *ho = cf_tensor_empty(out->ndim, out->shape, idx ? CF_DTYPE_I64 : CF_DTYPE_F32, CF_DEVICE_CPU);
  int rc = ho ? (idx ? cf_cpu_argsort : cf_cpu_sort)(ho, &h32, 1, a) : -1;
  cf_tensor_release(h32);
  cf_tensor *hc = !rc && out->dtype != ho->dtype ? cf_tensor_to_dtype(ho, out->dtype) : NULL;
  if (!rc && out->dtype != ho->dtype && !hc) rc = -1;
  cf_tensor *d = !rc ? cf_tensor_to_device(hc ? hc : ho, CF_DEVICE_CUDA) : NULL;
  if (!rc && !d) rc = -1;
  if (!rc) rc = cf_tensor_copy_(out, d);
  cf_tensor_release(d);
  cf_tensor_release(hc);
  cf_tensor_release(ho);
  return rc;
}

extern "C" int cf_cuda_sort(cf_tensor *out, cf_tensor *const *in, int nin, const cf_args *a) {
  (void)nin;
  return sort_on_host("sort", false, out, in[0], a);
}
extern "C" int cf_cuda_argsort(cf_tensor *out, cf_tensor *const *in, int nin, const cf_args *a) {
  (void)nin;
  return sort_on_host("argsort", true, out, in[0], a);
}

template <bool LOGP>
static int softmax(const char *name, cf_tensor *out, cf_tensor *x0, const cf_args *a) {
  if (cu_check_float(name, x0)) return -1;
  int64_t outer = 0, n = 0, inner = 1;
  if (cf_reduce_geometry(name, x0, a->i[0], false, &outer, &n, &inner)) return -1;
  int64_t rows = outer * inner;
  if (rows == 0 || n == 0) return 0;
  cf_tensor *x = cu_contig(x0);
  if (!x) return -1;
  bool f32 = x->dtype == CF_DTYPE_F32;
  if (inner == 1 && rows <= 0x7fffffffLL) {
    if (f32) softmax_rows_kernel<float, LOGP><<<(unsigned)rows, CF_CU_THREADS, 0, cu_stream()>>>(
        (const float *)cf_tensor_data(x), (float *)cf_tensor_data(out), n);
    else softmax_rows_kernel<bf16, LOGP><<<(unsigned)rows, CF_CU_THREADS, 0, cu_stream()>>>(
        (const bf16 *)cf_tensor_data(x), (bf16 *)cf_tensor_data(out), n);
  } else {
    unsigned g = cu_blocks(rows, CF_CU_THREADS);
    if (f32) softmax_cols_kernel<float, LOGP><<<g, CF_CU_THREADS, 0, cu_stream()>>>(
        (const float *)cf_tensor_data(x), (float *)cf_tensor_data(out), rows, n, inner);
    else softmax_cols_kernel<bf16, LOGP><<<g, CF_CU_THREADS, 0, cu_stream()>>>(
        (const bf16 *)cf_tensor_data(x), (bf16 *)cf_tensor_data(out), rows, n, inner);
  }
  cf_tensor_release(x);
  return cu_launched(name);
}

extern "C" int cf_cuda_softmax(cf_tensor *out, cf_tensor *const *in, int nin, const cf_args *a) {
  (void)nin;
  return softmax<false>("softmax", out, in[0], a);
}
extern "C" int cf_cuda_log_softmax(cf_tensor *out, cf_tensor *const *in, int nin, const cf_args *a) {
  (void)nin;
  return softmax<true>("log_softmax", out, in[0], a);
}
