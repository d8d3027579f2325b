/* elementwise.cu - CUDA kernels of the elementwise ops (add sub mul div pow maximum minimum
 * swiglu, where, masked_fill, eq ne lt le gt ge, neg exp log log1p expm1 sqrt rsqrt abs clamp
 * silu sigmoid tanh gelu relu sin cos sign),
 * swiglu's fused backward, and the fused
 * optimizer kernels registered with core/optim.h (AdamW, SGD, sum of squares, scale). The
 * optimizer kernels are templated on the parameter type (f32, or bf16 updated through its f32
 * master copy) and the state type (f32 or bf16).
 *
 * One grid-stride kernel per family, templated on the storage type (f32 or bf16; math in f32)
 * and the operation. Inputs may have any strides and broadcast (cu_iter, coalesced on the host);
 * when every operand is dense and unbroadcast the kernel indexes flat (the fast path). The
 * output is the fresh contiguous tensor cf_op allocated. Semantics follow core/cpu/elementwise.c:
 * maximum/minimum/relu/clamp/sign propagate NaN; masks may have any dtype, nonzero = true;
 * comparisons read both operands (any dtypes) as double, as the CPU does.
 * Finding a kernel: cf_cuda_<op> of the unary, binary and comparison ops is made by a macro, so
 * grep for `UNARY(<op>,`, `BINARY(<op>,` or `COMPARE(<op>,` (clamp, where, masked_fill are
 * written out).
 */
#include "kernels/cuda_internal.cuh"

extern "C" {
#include "nn_bwd.h" /* the declarations grad_nn.c calls: checked against the definitions */
#include "optim.h"
}

/* ---------------------------------------------------------------- math */

enum { U_NEG, U_EXP, U_LOG, U_SQRT, U_RSQRT, U_ABS, U_CLAMP, U_SILU, U_SIGMOID, U_TANH, U_GELU, U_RELU,
       U_LOG1P, U_EXPM1, U_SIN, U_COS, U_SIGN };
enum { B_ADD, B_SUB, B_MUL, B_DIV, B_POW, B_MAX, B_MIN, B_SWIGLU };
enum { C_EQ, C_NE, C_LT, C_LE, C_GT, C_GE };

__device__ __forceinline__ float sigmoidf_(float x) {
  if (x >= 0) return 1.0f / (1.0f + expf(-x));
  float e = expf(x);
  return e / (1.0f + e);
}

template <int OP>
__device__ __forceinline__ float unary_fn(float x, float lo, float hi) {
  switch (OP) {
    case U_NEG: return -x;
    case U_EXP: return expf(x);
    case U_LOG: return logf(x);
    case U_SQRT: return sqrtf(x);
    case U_RSQRT: return 1.0f / sqrtf(x);
    case U_ABS: return fabsf(x);
    case U_CLAMP:
      if (!isnan(lo) && x < lo) x = lo;
      if (!isnan(hi) && x > hi) x = hi;
      return x;
    case U_SILU: return x * sigmoidf_(x);
    case U_SIGMOID: return sigmoidf_(x);
    case U_TANH: return tanhf(x);
    case U_GELU: return 0.5f * x * erfcf(-x * 0.70710678118654752440f);
    case U_RELU: return isnan(x) ? x : (x > 0 ? x : 0.0f);
    case U_LOG1P: return log1pf(x);
    case U_EXPM1: return expm1f(x);
    case U_SIN: return sinf(x);
    case U_COS: return cosf(x);
    case U_SIGN: return isnan(x) ? x : (float)((x > 0) - (x < 0));
  }
  return x;
}

template <int OP>
__device__ __forceinline__ bool compare_fn(double x, double y) {
  switch (OP) {
    case C_EQ: return x == y;
    case C_NE: return x != y;
    case C_LT: return x < y;
    case C_LE: return x <= y;
    case C_GT: return x > y;
    case C_GE: return x >= y;
  }
  return false;
}

template <int OP>
__device__ __forceinline__ float binary_fn(float a, float b) {
  switch (OP) {
    case B_ADD: return a + b;
    case B_SUB: return a - b;
    case B_MUL: return a * b;
    case B_DIV: return a / b;
    case B_POW: return powf(a, b);
    case B_MAX: return (isnan(a) || isnan(b)) ? a + b : (a > b ? a : b);
    case B_MIN: return (isnan(a) || isnan(b)) ? a + b : (a < b ? a : b);
    case B_SWIGLU: return a * sigmoidf_(a) * b;
  }
  return a;
}

/* ---------------------------------------------------------------- kernels */

// out [n] (dense) = f(x [strided by it.st[1]])
template <typename T, int OP>
__global__ void __launch_bounds__(CF_CU_THREADS) unary_kernel(T *out, const T *x, cu_iter it, int64_t n,
                                                              float lo, float hi) {
  int64_t stride = (int64_t)gridDim.x * blockDim.x;
  int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (it.contiguous) {
    for (; i < n; i += stride) stf(out, i, unary_fn<OP>(ldf(x, i), lo, hi));
    return;
  }
  for (; i < n; i += stride) {
    int64_t off[2];
    cu_offsets<2>(it, i, off);
    stf(out, off[0], unary_fn<OP>(ldf(x, off[1]), lo, hi));
  }
}

/* 16-byte vector access for the dense paths: CU_VEC(T) elements (8 bf16, 4 f32) per load. */
#define CU_VEC(T) ((int)(16 / sizeof(T)))
__device__ __forceinline__ void ldv(const float *p, float *f) {
  float4 u = *(const float4 *)p;
  f[0] = u.x; f[1] = u.y; f[2] = u.z; f[3] = u.w;
}
__device__ __forceinline__ void ldv(const bf16 *p, float *f) { bf16x8_to_float(*(const uint4 *)p, f); }
__device__ __forceinline__ void stv(float *p, const float *f) { *(float4 *)p = make_float4(f[0], f[1], f[2], f[3]); }
__device__ __forceinline__ void stv(bf16 *p, const float *f) {
  uint4 u;
  __nv_bfloat162 *h = (__nv_bfloat162 *)&u;
#pragma unroll
  for (int j = 0; j < 4; j++) h[j] = __floats2bfloat162_rn(f[2 * j], f[2 * j + 1]);
  *(uint4 *)p = u;
}
static inline bool cu_aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }

/* How binary_kernel walks its operands (chosen on the host):
 *   EW_DENSE  every operand dense, flat index;
 *   EW_ROWS   [rows, ncol]: each operand either dense or one row repeated (a bias: offset i % ncol);
 *   EW_ITER   anything else, through cu_iter.
 * vec: the dense / rows walk in 16-byte vectors (pointers aligned, ncol a multiple of the width). */
enum { EW_DENSE, EW_ROWS, EW_ITER };
struct ew_walk {
  int kind;
  bool vec;
  bool rep[3];  /* EW_ROWS: operand k (out, a, b) repeats one row */
  int64_t ncol;
};

__device__ __forceinline__ int64_t ew_off(const ew_walk &w, int k, int64_t i) { return w.rep[k] ? i % w.ncol : i; }

// out [broadcast shape] = f(a, b)
template <typename T, int OP>
__global__ void __launch_bounds__(CF_CU_THREADS) binary_kernel(T *out, const T *a, const T *b, cu_iter it,
                                                               ew_walk w, int64_t n) {
  int64_t stride = (int64_t)gridDim.x * blockDim.x;
  int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (w.kind != EW_ITER) {
    int64_t done = 0;
    if (w.vec) {
      constexpr int V = CU_VEC(T);
      int64_t nv = n / V;
      for (int64_t j = i; j < nv; j += stride) {
        float fa[V], fb[V], fo[V];
        ldv(a + ew_off(w, 1, j * V), fa);
        ldv(b + ew_off(w, 2, j * V), fb);
#pragma unroll
        for (int k = 0; k < V; k++) fo[k] = binary_fn<OP>(fa[k], fb[k]);
        stv(out + j * V, fo);
      }
      done = nv * V;
    }
    for (int64_t j = done + i; j < n; j += stride)
      stf(out, j, binary_fn<OP>(ldf(a, ew_off(w, 1, j)), ldf(b, ew_off(w, 2, j))));
    return;
  }
  for (; i < n; i += stride) {
    int64_t off[3];
    cu_offsets<3>(it, i, off);
    stf(out, off[0], binary_fn<OP>(ldf(a, off[1]), ldf(b, off[2])));
  }
}

// swiglu backward: ga, gb [n] (dense, either may be NULL) from g, a, b (operands: first output, g, a, b;
// the second output shares the first one's offsets); vec: all dense and 16-byte aligned
__device__ __forceinline__ void swiglu_grad(float d, float x, float y, float *ga, float *gb) {
  float s = sigmoidf_(x);
  *ga = d * y * s * (1.0f + x * (1.0f - s));
  *gb = d * x * s;
}
template <typename T>
__global__ void __launch_bounds__(CF_CU_THREADS) swiglu_bwd_kernel(T *ga, T *gb, const T *g, const T *a, const T *b,
                                                                   cu_iter it, int64_t n, bool vec) {
  int64_t stride = (int64_t)gridDim.x * blockDim.x;
  int64_t i0 = blockIdx.x * (int64_t)blockDim.x + threadIdx.x, done = 0;
  if (vec) {
    constexpr int V = CU_VEC(T);
    int64_t nv = n / V;
    for (int64_t j = i0; j < nv; j += stride) {
      float fd[V], fx[V], fy[V], oa[V], ob[V];
      ldv(g + j * V, fd);
      ldv(a + j * V, fx);
      ldv(b + j * V, fy);
#pragma unroll
      for (int k = 0; k < V; k++) swiglu_grad(fd[k], fx[k], fy[k], &oa[k], &ob[k]);
      if (ga) stv(ga + j * V, oa);
      if (gb) stv(gb + j * V, ob);
    }
    done = nv * V;
  }
  for (int64_t i = done + i0; i < n; i += stride) {
    int64_t off[4];
    if (it.contiguous) off[0] = off[1] = off[2] = off[3] = i;
    else cu_offsets<4>(it, i, off);
    float oa, ob;
    swiglu_grad(ldf(g, off[1]), ldf(a, off[2]), ldf(b, off[3]), &oa, &ob);
    if (ga) stf(ga, off[0], oa);
    if (gb) stf(gb, off[0], ob);
  }
}

// out = a <op> b ? 1 : 0, a and b of any dtypes (operands: out, a, b)
template <typename T, int OP>
__global__ void __launch_bounds__(CF_CU_THREADS) compare_kernel(T *out, const void *a, int adt, const void *b,
                                                                int bdt, cu_iter it, int64_t n) {
  int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += stride) {
    int64_t off[3];
    if (it.contiguous) off[0] = off[1] = off[2] = i;
    else cu_offsets<3>(it, i, off);
    stf(out, off[0], compare_fn<OP>(ld_any(a, adt, off[1]), ld_any(b, bdt, off[2])) ? 1.0f : 0.0f);
  }
}

// out = cond != 0 ? (a or fill) : b   (operands: out, cond, b, a)
template <typename T>
__global__ void __launch_bounds__(CF_CU_THREADS) select_kernel(T *out, const void *c, int cdt, const T *a,
                                                               const T *b, float fill, cu_iter it, int64_t n) {
  int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += stride) {
    int64_t off[4];
    if (it.contiguous) off[0] = off[1] = off[2] = off[3] = i;
    else cu_offsets<4>(it, i, off);
    bool on = ld_any(c, cdt, off[1]) != 0;
    float v = on ? (a ? ldf(a, off[3]) : fill) : ldf(b, off[2]);
    stf(out, off[0], v);
  }
}

/* ---------------------------------------------------------------- host side */

template <int OP>
static int unary(const char *name, cf_tensor *out, cf_tensor *x, double lo, double hi) {
  if (cu_check_float(name, out)) return -1;
  int64_t n = cf_tensor_numel(out);
  if (n == 0) return 0;
  const cf_tensor *ops[2] = {out, x};
  cu_iter it;
  cu_iter_init(&it, out->ndim, out->shape, 2, ops);
  unsigned g = cu_blocks(n, CF_CU_THREADS);
  if (out->dtype == CF_DTYPE_F32)
    unary_kernel<float, OP><<<g, CF_CU_THREADS, 0, cu_stream()>>>((float *)cf_tensor_data(out),
        (const float *)cf_tensor_data(x), it, n, (float)lo, (float)hi);
  else
    unary_kernel<bf16, OP><<<g, CF_CU_THREADS, 0, cu_stream()>>>((bf16 *)cf_tensor_data(out),
        (const bf16 *)cf_tensor_data(x), it, n, (float)lo, (float)hi);
  return cu_launched(name);
}

#define UNARY(name, code)                                                                        \
  extern "C" int cf_cuda_##name(cf_tensor *out, cf_tensor *const *in, int nin, const cf_args *a) { \
    (void)nin; (void)a;                                                                           \
    return unary<code>(#name, out, in[0], NAN, NAN);                                             \
  }
UNARY(neg, U_NEG)
UNARY(exp, U_EXP)
UNARY(log, U_LOG)
UNARY(sqrt, U_SQRT)
UNARY(rsqrt, U_RSQRT)
UNARY(abs, U_ABS)
UNARY(silu, U_SILU)
UNARY(sigmoid, U_SIGMOID)
UNARY(tanh, U_TANH)
UNARY(gelu, U_GELU)
UNARY(relu, U_RELU)
UNARY(log1p, U_LOG1P)
UNARY(expm1, U_EXPM1)
UNARY(sin, U_SIN)
UNARY(cos, U_COS)
UNARY(sign, U_SIGN)

extern "C" int cf_cuda_clamp(cf_tensor *out, cf_tensor *const *in, int nin, const cf_args *a) {
  (void)nin;
  return unary<U_CLAMP>("clamp", out, in[0], a->f[0], a->f[1]);
}

template <int OP>
static int binary(const char *name, cf_tensor *out, cf_tensor *a, cf_tensor *b) {
  if (cu_check_float(name, out)) return -1;
  int64_t n = cf_tensor_numel(out);
  if (n == 0) return 0;
  const cf_tensor *ops[3] = {out, a, b};
  cu_iter it;
  cu_iter_init(&it, out->ndim, out->shape, 3, ops);
  ew_walk w;
  memset(&w, 0, sizeof w);
  w.kind = it.contiguous ? EW_DENSE : EW_ITER;
  if (!it.contiguous && it.nd == 2) {
    bool rows = true;
    for (int k = 0; k < 3; k++) {
      w.rep[k] = it.st[k][0] == 0;
      if (it.st[k][1] != 1 || (it.st[k][0] != 0 && it.st[k][0] != it.shape[1])) rows = false;
    }
    if (rows && !w.rep[0]) { w.kind = EW_ROWS; w.ncol = it.shape[1]; }
  }
  int vw = (int)(16 / cf_dtype_size(out->dtype));
  w.vec = w.kind != EW_ITER && cu_aligned16(cf_tensor_data(out)) && cu_aligned16(cf_tensor_data(a)) &&
          cu_aligned16(cf_tensor_data(b)) && (w.kind == EW_DENSE || w.ncol % vw == 0);
  unsigned g = cu_blocks(w.vec ? (n + vw - 1) / vw : n, CF_CU_THREADS);
  if (out->dtype == CF_DTYPE_F32)
    binary_kernel<float, OP><<<g, CF_CU_THREADS, 0, cu_stream()>>>((float *)cf_tensor_data(out),
        (const float *)cf_tensor_data(a), (const float *)cf_tensor_data(b), it, w, n);
  else
    binary_kernel<bf16, OP><<<g, CF_CU_THREADS, 0, cu_stream()>>>((bf16 *)cf_tensor_data(out),
        (const bf16 *)cf_tensor_data(a), (const bf16 *)cf_tensor_data(b), it, w, n);
  return cu_launched(name);
}

/* cf_cuda_<op> of a two-input op run by host function FN<CODE>(name, out, a, b) */
#define TWO_INPUTS(FN, name, code)                                                               \
  extern "C" int cf_cuda_##name(cf_tensor *out, cf_tensor *const *in, int nin, const cf_args *a) { \
    (void)nin; (void)a;                                                                           \
    return FN<code>(#name, out, in[0], in[1]);                                                   \
  }
#define BINARY(name, code) TWO_INPUTS(binary, name, code)
BINARY(add, B_ADD)
BINARY(sub, B_SUB)
BINARY(mul, B_MUL)
BINARY(div, B_DIV)
BINARY(pow, B_POW)
BINARY(maximum, B_MAX)
BINARY(minimum, B_MIN)
BINARY(swiglu, B_SWIGLU)

/* The contract of cf_cpu_swiglu_backward (core/nn_ops.h): ga, gb fresh and dense in gout's shape. */
extern "C" int cf_cuda_swiglu_backward(cf_tensor *ga, cf_tensor *gb, cf_tensor *a, cf_tensor *b, cf_tensor *g) {
  cf_tensor *first = ga ? ga : gb;
  if (!first) return 0;
  if (cu_check_float("swiglu backward", first)) return -1;
  int64_t n = cf_tensor_numel(first);
  if (n == 0) return 0;
  const cf_tensor *ops[4] = {first, g, a, b};
  cu_iter it;
  cu_iter_init(&it, first->ndim, first->shape, 4, ops);
  int vw = (int)(16 / cf_dtype_size(first->dtype));
  bool vec = it.contiguous && cu_aligned16(cf_tensor_data(g)) && cu_aligned16(cf_tensor_data(a)) &&
             cu_aligned16(cf_tensor_data(b)) && (!ga || cu_aligned16(cf_tensor_data(ga))) &&
             (!gb || cu_aligned16(cf_tensor_data(gb)));
  unsigned grid = cu_blocks(vec ? (n + vw - 1) / vw : n, CF_CU_THREADS);
  if (first->dtype == CF_DTYPE_F32)
    swiglu_bwd_kernel<float><<<grid, CF_CU_THREADS, 0, cu_stream()>>>(ga ? (float *)cf_tensor_data(ga) : NULL,
        gb ? (float *)cf_tensor_data(gb) : NULL, (const float *)cf_tensor_data(g), (const float *)cf_tensor_data(a),
        (const float *)cf_tensor_data(b), it, n, vec);
  else
    swiglu_bwd_kernel<bf16><<<grid, CF_CU_THREADS, 0, cu_stream()>>>(ga ? (bf16 *)cf_tensor_data(ga) : NULL,
        gb ? (bf16 *)cf_tensor_data(gb) : NULL, (const bf16 *)cf_tensor_data(g), (const bf16 *)cf_tensor_data(a),
        (const bf16 *)cf_tensor_data(b), it, n, vec);
  return cu_launched("swiglu backward");
}

template <int OP>
static int compare(const char *name, cf_tensor *out, cf_tensor *a, cf_tensor *b) {
  if (cu_check_float(name, out)) return -1;
  int64_t n = cf_tensor_numel(out);
  if (n == 0) return 0;
  const cf_tensor *ops[3] = {out, a, b};
  cu_iter it;
  cu_iter_init(&it, out->ndim, out->shape, 3, ops);
  unsigned g = cu_blocks(n, CF_CU_THREADS);
  if (out->dtype == CF_DTYPE_F32)
    compare_kernel<float, OP><<<g, CF_CU_THREADS, 0, cu_stream()>>>((float *)cf_tensor_data(out),
        cf_tensor_data(a), (int)a->dtype, cf_tensor_data(b), (int)b->dtype, it, n);
  else
    compare_kernel<bf16, OP><<<g, CF_CU_THREADS, 0, cu_stream()>>>((bf16 *)cf_tensor_data(out),
        cf_tensor_data(a), (int)a->dtype, cf_tensor_data(b), (int)b->dtype, it, n);
  return cu_launched(name);
}

#define COMPARE(name, code) TWO_INPUTS(compare, name, code)
COMPARE(eq, C_EQ)
COMPARE(ne, C_NE)
COMPARE(lt, C_LT)
COMPARE(le, C_LE)
COMPARE(gt, C_GT)
COMPARE(ge, C_GE)

static int select_op(const char *name, cf_tensor *out, cf_tensor *c, cf_tensor *a, cf_tensor *b, double fill) {
  if (cu_check_float(name, out)) return -1;
  int64_t n = cf_tensor_numel(out);
  if (n == 0) return 0;
  const cf_tensor *ops[4] = {out, c, b, a ? a : b};
  cu_iter it;
  cu_iter_init(&it, out->ndim, out->shape, 4, ops);
  unsigned g = cu_blocks(n, CF_CU_THREADS);
  if (out->dtype == CF_DTYPE_F32)
    select_kernel<float><<<g, CF_CU_THREADS, 0, cu_stream()>>>((float *)cf_tensor_data(out),
        cf_tensor_data(c), c->dtype, a ? (const float *)cf_tensor_data(a) : NULL,
        (const float *)cf_tensor_data(b), (float)fill, it, n);
  else
    select_kernel<bf16><<<g, CF_CU_THREADS, 0, cu_stream()>>>((bf16 *)cf_tensor_data(out),
        cf_tensor_data(c), c->dtype, a ? (const bf16 *)cf_tensor_data(a) : NULL,
        (const bf16 *)cf_tensor_data(b), (float)fill, it, n);
  return cu_launched(name);
}

extern "C" int cf_cuda_where(cf_tensor *out, cf_tensor *const *in, int nin, const cf_args *a) {
  (void)nin; (void)a;
  return select_op("where", out, in[0], in[1], in[2], 0);
}

/* the mask's shape was checked by cf_infer_masked_fill (ops.c) */
extern "C" int cf_cuda_masked_fill(cf_tensor *out, cf_tensor *const *in, int nin, const cf_args *a) {
  (void)nin;
  return select_op("masked_fill", out, in[1], NULL, in[0], a->f[0]);
}

/* ================================================================ optimizer kernels */

// AdamW on p [n] (T), g [n] (T), master [n] f32 or NULL, m, v [n] (S: f32 or bf16). f32 math;
// with a master (bf16 p) the weight is read from and written to the master, then p = bf16(master);
// the moments are stored rounded to S, the update uses them unrounded.
// One element's update; shared by the per-parameter and the batched kernel (same results).
template <typename T, typename S>
__device__ __forceinline__ void adamw_elem(T *p, float *master, const T *g, S *m, S *v, int64_t i, float lr,
                                           float b1, float b2, float eps, float wd, float bias1, float sb2) {
  float pv = master ? master[i] : ldf(p, i), gv = ldf(g, i);
  pv -= lr * wd * pv;
  float mv = b1 * ldf(m, i) + (1.0f - b1) * gv;
  float vv = b2 * ldf(v, i) + (1.0f - b2) * gv * gv;
  stf(m, i, mv);
  stf(v, i, vv);
  pv -= (lr / bias1) * mv / (sqrtf(vv) / sb2 + eps);
  if (master) master[i] = pv;
  stf(p, i, pv);
}

template <typename T, typename S>
__global__ void __launch_bounds__(CF_CU_THREADS) adamw_kernel(T *p, float *master, const T *g, S *m, S *v,
                                                              int64_t n, float lr, float b1, float b2,
                                                              float eps, float wd, float bias1, float bias2) {
  float sb2 = sqrtf(bias2);
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    adamw_elem<T, S>(p, master, g, m, v, i, lr, b1, b2, eps, wd, bias1, sb2);
}

/* Batched AdamW: up to ADAMW_PACK parameters of one (T, S) kind per launch, described in the
 * kernel's parameter block (no table upload). Parameter j owns blocks [first[j], first[j + 1])
 * of the grid, each covering ADAMW_CHUNK consecutive elements; a block finds its parameter by
 * binary search over first[]. */
#define ADAMW_PACK 40
#define ADAMW_CHUNK (CF_CU_THREADS * 8)
struct adamw_pack {
  void *p[ADAMW_PACK];
  float *master[ADAMW_PACK];
  const void *g[ADAMW_PACK];
  void *m[ADAMW_PACK], *v[ADAMW_PACK];
  int64_t n[ADAMW_PACK];
  float bias1[ADAMW_PACK], bias2[ADAMW_PACK];
  unsigned first[ADAMW_PACK + 1];
  int count;
  float lr, b1, b2, eps, wd;
};

template <typename T, typename S>
__global__ void __launch_bounds__(CF_CU_THREADS) adamw_pack_kernel(const __grid_constant__ adamw_pack k) {
  unsigned b = blockIdx.x;
  int lo = 0, hi = k.count - 1; /* the last j with first[j] <= b */
  while (lo < hi) {
    int mid = (lo + hi + 1) / 2;
    if (k.first[mid] <= b) lo = mid;
    else hi = mid - 1;
  }
  int j = lo;
  int64_t start = (int64_t)(b - k.first[j]) * ADAMW_CHUNK, n = k.n[j];
  int64_t end = start + ADAMW_CHUNK < n ? start + ADAMW_CHUNK : n;
  float sb2 = sqrtf(k.bias2[j]);
  for (int64_t i = start + threadIdx.x; i < end; i += blockDim.x)
    adamw_elem<T, S>((T *)k.p[j], k.master[j], (const T *)k.g[j], (S *)k.m[j], (S *)k.v[j], i, k.lr, k.b1, k.b2,
                     k.eps, k.wd, k.bias1[j], sb2);
}

// SGD with momentum on p [n], g [n] (T), master [n] f32 or NULL (as for AdamW), buf [n] (S) or NULL
template <typename T, typename S>
__global__ void __launch_bounds__(CF_CU_THREADS) sgd_kernel(T *p, float *master, const T *g, S *buf, int64_t n,
                                                            float lr, float wd, float mom, float damp,
                                                            int nesterov, int first) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    float pv = master ? master[i] : ldf(p, i);
    float gv = ldf(g, i) + wd * pv;
    if (buf) {
      float b = first ? gv : mom * ldf(buf, i) + (1.0f - damp) * gv;
      stf(buf, i, b);
      gv = nesterov ? gv + mom * b : b;
    }
    pv -= lr * gv;
    if (master) master[i] = pv;
    stf(p, i, pv);
  }
}

// out[0] += sum of g^2 (double), one block partial per block
template <typename T>
__global__ void __launch_bounds__(CF_CU_THREADS) sumsq_kernel(const T *g, int64_t n, double *out) {
  double acc = 0;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    double x = ldf(g, i);
    acc += x * x;
  }
  acc = block_sum(acc);
  if (threadIdx.x == 0) atomicAdd(out, acc);
}

template <typename T>
__global__ void __launch_bounds__(CF_CU_THREADS) scale_kernel(T *g, int64_t n, float s) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    stf(g, i, ldf(g, i) * s);
}

static int optim_dtype(const char *what, const cf_tensor *p, const cf_tensor *master, const cf_tensor *s0,
                       const cf_tensor *s1) {
  if (p->dtype != CF_DTYPE_F32 && p->dtype != CF_DTYPE_BF16)
    return CF_ERR("%s: CUDA parameters must be f32 or bf16, got %s", what, cf_dtype_name(p->dtype));
  if (master && (p->dtype != CF_DTYPE_BF16 || master->dtype != CF_DTYPE_F32))
    return CF_ERR("%s: a master copy must be f32 and belong to a bf16 parameter, got %s for %s", what,
                  cf_dtype_name(master->dtype), cf_dtype_name(p->dtype));
  const cf_tensor *st[2] = {s0, s1};
  for (int k = 0; k < 2; k++)
    if (st[k] && st[k]->dtype != CF_DTYPE_F32 && st[k]->dtype != CF_DTYPE_BF16)
      return CF_ERR("%s: CUDA optimizer state must be f32 or bf16, got %s", what, cf_dtype_name(st[k]->dtype));
  if (s0 && s1 && s0->dtype != s1->dtype)
    return CF_ERR("%s: the two moments differ in dtype (%s, %s)", what, cf_dtype_name(s0->dtype),
                  cf_dtype_name(s1->dtype));
  return 0;
}

static unsigned optim_blocks(int64_t n) {
  unsigned blocks = cu_blocks(n, CF_CU_THREADS);
  return blocks > 4096 ? 4096 : blocks;
}

template <typename T, typename S>
static void launch_adamw(cf_tensor *p, cf_tensor *master, cf_tensor *g, cf_tensor *m, cf_tensor *v, int64_t n,
                         const cf_adamw_hyper *h) {
  adamw_kernel<T, S><<<optim_blocks(n), CF_CU_THREADS, 0, cu_stream()>>>((T *)cf_tensor_data(p),
      master ? (float *)cf_tensor_data(master) : NULL, (const T *)cf_tensor_data(g), (S *)cf_tensor_data(m),
      (S *)cf_tensor_data(v), n, (float)h->lr, (float)h->beta1, (float)h->beta2, (float)h->eps,
      (float)h->weight_decay, (float)h->bias1, (float)h->bias2);
}

static int cu_adamw(cf_tensor *p, cf_tensor *master, cf_tensor *g, cf_tensor *m, cf_tensor *v,
                    const cf_adamw_hyper *h) {
  if (optim_dtype("adamw", p, master, m, v)) return -1;
  int64_t n = cf_tensor_numel(p);
  if (n == 0) return 0;
  bool sbf = m->dtype == CF_DTYPE_BF16;
  if (p->dtype == CF_DTYPE_F32) {
    if (sbf) launch_adamw<float, bf16>(p, NULL, g, m, v, n, h);
    else launch_adamw<float, float>(p, NULL, g, m, v, n, h);
  } else {
    if (sbf) launch_adamw<bf16, bf16>(p, master, g, m, v, n, h);
    else launch_adamw<bf16, float>(p, master, g, m, v, n, h);
  }
  return cu_launched("adamw");
}

template <typename T, typename S>
static void launch_sgd(cf_tensor *p, cf_tensor *master, cf_tensor *g, cf_tensor *buf, int64_t n,
                       const cf_sgd_hyper *h) {
  sgd_kernel<T, S><<<optim_blocks(n), CF_CU_THREADS, 0, cu_stream()>>>((T *)cf_tensor_data(p),
      master ? (float *)cf_tensor_data(master) : NULL, (const T *)cf_tensor_data(g),
      buf ? (S *)cf_tensor_data(buf) : NULL, n, (float)h->lr, (float)h->weight_decay, (float)h->momentum,
      (float)h->dampening, h->nesterov, h->first);
}

static int cu_sgd(cf_tensor *p, cf_tensor *master, cf_tensor *g, cf_tensor *buf, const cf_sgd_hyper *h) {
  if (optim_dtype("sgd", p, master, buf, NULL)) return -1;
  int64_t n = cf_tensor_numel(p);
  if (n == 0) return 0;
  bool sbf = buf && buf->dtype == CF_DTYPE_BF16;
  if (p->dtype == CF_DTYPE_F32) {
    if (sbf) launch_sgd<float, bf16>(p, NULL, g, buf, n, h);
    else launch_sgd<float, float>(p, NULL, g, buf, n, h);
  } else {
    if (sbf) launch_sgd<bf16, bf16>(p, master, g, buf, n, h);
    else launch_sgd<bf16, float>(p, master, g, buf, n, h);
  }
  return cu_launched("sgd");
}

/* Waits for the stream: the norm is needed on the host. */
static int cu_sumsq(cf_tensor *g, double *out) {
  if (optim_dtype("clip_grad_norm", g, NULL, NULL, NULL)) return -1;
  int64_t n = cf_tensor_numel(g);
  *out = 0;
  if (n == 0) return 0;
  cu_scratch s = {NULL, 0};
  double *acc = (double *)cu_scratch_get(&s, sizeof(double), "clip_grad_norm");
  if (!acc) return -1;
  int rc = cu_check(cudaMemsetAsync(acc, 0, sizeof(double), cu_stream()), "clip_grad_norm");
  unsigned blocks = cu_blocks(n, CF_CU_THREADS);
  if (blocks > 1024) blocks = 1024;
  if (rc == 0) {
    if (g->dtype == CF_DTYPE_F32)
      sumsq_kernel<float><<<blocks, CF_CU_THREADS, 0, cu_stream()>>>((const float *)cf_tensor_data(g), n, acc);
    else
      sumsq_kernel<bf16><<<blocks, CF_CU_THREADS, 0, cu_stream()>>>((const bf16 *)cf_tensor_data(g), n, acc);
    rc = cu_launched("clip_grad_norm");
  }
  if (rc == 0) rc = cu_check(cudaMemcpyAsync(out, acc, sizeof(double), cudaMemcpyDeviceToHost, cu_stream()),
                             "clip_grad_norm");
  if (rc == 0) rc = cu_check(cudaStreamSynchronize(cu_stream()), "clip_grad_norm");
  cu_scratch_free(&s);
  return rc;
}

static int cu_scale(cf_tensor *g, double s) {
  if (optim_dtype("clip_grad_norm", g, NULL, NULL, NULL)) return -1;
  int64_t n = cf_tensor_numel(g);
  if (n == 0) return 0;
  unsigned blocks = cu_blocks(n, CF_CU_THREADS);
  if (blocks > 4096) blocks = 4096;
  if (g->dtype == CF_DTYPE_F32)
    scale_kernel<float><<<blocks, CF_CU_THREADS, 0, cu_stream()>>>((float *)cf_tensor_data(g), n, (float)s);
  else
    scale_kernel<bf16><<<blocks, CF_CU_THREADS, 0, cu_stream()>>>((bf16 *)cf_tensor_data(g), n, (float)s);
  return cu_launched("clip_grad_norm");
}

/* The kind of an AdamW item: bit 0 = bf16 parameter (with its f32 master), bit 1 = bf16 state. */
static int adamw_kind(const cf_adamw_item *it) {
  return (it->p->dtype == CF_DTYPE_BF16 ? 1 : 0) | (it->m->dtype == CF_DTYPE_BF16 ? 2 : 0);
}

static void launch_pack(int kind, const adamw_pack &k) {
  unsigned grid = k.first[k.count];
  switch (kind) {
    case 0: adamw_pack_kernel<float, float><<<grid, CF_CU_THREADS, 0, cu_stream()>>>(k); break;
    case 1: adamw_pack_kernel<bf16, float><<<grid, CF_CU_THREADS, 0, cu_stream()>>>(k); break;
    case 2: adamw_pack_kernel<float, bf16><<<grid, CF_CU_THREADS, 0, cu_stream()>>>(k); break;
    default: adamw_pack_kernel<bf16, bf16><<<grid, CF_CU_THREADS, 0, cu_stream()>>>(k); break;
  }
}

/* All parameters of one kind go in packs of up to ADAMW_PACK per launch: about
 * nparams / ADAMW_PACK launches instead of one per parameter (a 1.5B Qwen2 has 338 tensors). */
static int cu_adamw_many(const cf_adamw_item *items, int n) {
  for (int i = 0; i < n; i++)
    if (optim_dtype("adamw", items[i].p, items[i].master, items[i].m, items[i].v))
      return cf_error_prefix("parameter %d: ", items[i].index + 1);
  for (int kind = 0; kind < 4; kind++) {
    adamw_pack k;
    memset(&k, 0, sizeof k);
    for (int i = 0; i <= n; i++) {
      bool flush = i == n;
      if (!flush) {
        const cf_adamw_item *it = &items[i];
        int64_t ne = cf_tensor_numel(it->p);
        if (adamw_kind(it) != kind || ne == 0) continue;
        int64_t chunks = (ne + ADAMW_CHUNK - 1) / ADAMW_CHUNK;
        if (k.count == ADAMW_PACK || (int64_t)k.first[k.count] + chunks > (int64_t)INT32_MAX) {
          launch_pack(kind, k);
          if (cu_launched("adamw")) return -1;
          memset(&k, 0, sizeof k);
        }
        if (chunks > (int64_t)INT32_MAX) return CF_ERR("adamw: parameter %d has too many elements", it->index + 1);
        int j = k.count++;
        k.p[j] = cf_tensor_data(it->p);
        k.master[j] = it->master ? (float *)cf_tensor_data(it->master) : NULL;
        k.g[j] = cf_tensor_data(it->g);
        k.m[j] = cf_tensor_data(it->m);
        k.v[j] = cf_tensor_data(it->v);
        k.n[j] = ne;
        k.bias1[j] = (float)it->h.bias1;
        k.bias2[j] = (float)it->h.bias2;
        k.first[j + 1] = k.first[j] + (unsigned)chunks;
        k.lr = (float)it->h.lr; k.b1 = (float)it->h.beta1; k.b2 = (float)it->h.beta2;
        k.eps = (float)it->h.eps; k.wd = (float)it->h.weight_decay;
        continue;
      }
      if (k.count > 0) {
        launch_pack(kind, k);
        if (cu_launched("adamw")) return -1;
      }
    }
  }
  return 0;
}

extern "C" void cf_cuda_register_optim(void) {
  static const cf_optim_kernels k = {cu_adamw, cu_sgd, cu_sumsq, cu_scale, cu_adamw_many};
  cf_optim_register_kernels(CF_DEVICE_CUDA, &k);
}
