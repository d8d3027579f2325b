/* elementwise.c - CPU kernels of the elementwise ops: binary with broadcasting (add sub mul div
 * pow maximum minimum swiglu), where, masked_fill, the comparisons (eq ne lt le gt ge), the unary
 * ops (neg exp log log1p expm1 sqrt rsqrt abs clamp silu sigmoid tanh gelu relu sin cos sign),
 * and swiglu's fused backward.
 *
 * The math is written once, in double (unary_fn, binary_fn); each kernel has two thin typed
 * loops, f32 and f64, over the strided iterator of iter.h (inputs may have any strides and
 * stride-0 broadcast dims; the output is the fresh contiguous tensor cf_op allocated). bf16
 * compute is GPU-only: convert with to_dtype. Masks (where, masked_fill) may have any dtype;
 * nonzero means true.
 *
 * NaN: maximum/minimum/relu/clamp/sign propagate NaN inputs (like PyTorch); a comparison with
 * NaN is false, except ne, which is true.
 * Finding a kernel: cf_cpu_<op> of the unary, binary and comparison ops is made by a macro, so
 * grep for `UNARY_KERNEL(<op>,`, `BINARY_KERNEL(<op>,` or `COMPARE_KERNEL(<op>,` (clamp, where,
 * masked_fill are written out).
 */
#include "cpu/iter.h"
#include "error.h"
#include "ops.h"
#include <math.h>

static int check_compute_dtype(const char *op, const cf_tensor *out) {
  if (out->dtype == CF_DTYPE_F32 || out->dtype == CF_DTYPE_F64) return 0;
  if (out->dtype == CF_DTYPE_BF16)
    return CF_ERR("%s: bf16 compute is GPU-only; convert with to_dtype", op);
  return CF_ERR("%s: unsupported dtype %s on the CPU", op, cf_dtype_name(out->dtype));
}

/* One case of an op switch: runs LOOP(T, OP) with T the C type of out's dtype (f32 or f64;
 * check_compute_dtype refused the others before the switch). */
#define TYPED_CASE(LOOP, OP)                                                                    \
  case OP:                                                                                      \
    if (out->dtype == CF_DTYPE_F32) LOOP(float, OP);                                            \
    else LOOP(double, OP);                                                                      \
    break

/* ---------------------------------------------------------------- unary */

typedef enum { U_NEG, U_EXP, U_LOG, U_SQRT, U_RSQRT, U_ABS, U_CLAMP, U_SILU, U_SIGMOID, U_TANH,
               U_GELU, U_RELU, U_LOG1P, U_EXPM1, U_SIN, U_COS, U_SIGN } unary_op;

static inline double sigmoid(double x) {
  if (x >= 0) return 1.0 / (1.0 + exp(-x));
  double e = exp(x);
  return e / (1.0 + e);
}

/* lo/hi: clamp bounds, NaN = absent */
static inline double unary_fn(unary_op op, double x, double lo, double hi) {
  switch (op) {
    case U_NEG: return -x;
    case U_EXP: return exp(x);
    case U_LOG: return log(x);
    case U_SQRT: return sqrt(x);
    case U_RSQRT: return 1.0 / sqrt(x);
    case U_ABS: return fabs(x);
    case U_CLAMP:
      if (!isnan(lo) && x < lo) x = lo;
      if (!isnan(hi) && x > hi) x = hi;
      return x;
    case U_SILU: return x * sigmoid(x);
    case U_SIGMOID: return sigmoid(x);
    case U_TANH: return tanh(x);
    case U_GELU: return 0.5 * x * erfc(-x * 0.70710678118654752440); /* = 0.5 x (1 + erf(x/sqrt2)) */
    case U_RELU: return isnan(x) ? x : (x > 0 ? x : 0.0);
    case U_LOG1P: return log1p(x);
    case U_EXPM1: return expm1(x);
    case U_SIN: return sin(x);
    case U_COS: return cos(x);
    case U_SIGN: return isnan(x) ? x : (double)((x > 0) - (x < 0));
  }
  return x;
}

/* One loop per (dtype, op): the op is chosen once per call, not per element, and a unit whose
 * operands all have unit stride runs a plain loop the compiler can vectorise. The math is
 * unary_fn's, in double, so every op gives the same bits as a per-element call. */
#define UNARY_LOOP(T, OP)                                                                       \
  do {                                                                                          \
    T *o = out->storage->data;                                                                  \
    const T *xs = x->storage->data;                                                             \
    _Pragma("omp parallel for if (it.numel > CF_OMP_MIN)")                                      \
    for (int64_t u = 0; u < it.units; u++) {                                                    \
      int64_t off[CF_ITER_MAX], len = cf_iter_unit(&it, u, off), so = it.inner_stride[0],      \
              sx = it.inner_stride[1];                                                          \
      T *po = o + off[0];                                                                       \
      const T *px = xs + off[1];                                                                \
      if (so == 1 && sx == 1)                                                                   \
        for (int64_t j = 0; j < len; j++) po[j] = (T)unary_fn(OP, px[j], lo, hi);               \
      else                                                                                      \
        for (int64_t j = 0; j < len; j++) po[j * so] = (T)unary_fn(OP, px[j * sx], lo, hi);     \
    }                                                                                           \
  } while (0)

#define UNARY_CASE(OP) TYPED_CASE(UNARY_LOOP, OP)

/* out [..] = f(x [..]) (same shape) */
static int unary(const char *name, unary_op op, cf_tensor *out, cf_tensor *x, double lo, double hi) {
  if (check_compute_dtype(name, out)) return -1;
  cf_tensor *ops[2] = {out, x};
  cf_iter it;
  cf_iter_init(&it, out->ndim, out->shape, 2, ops);
  switch (op) {
    UNARY_CASE(U_NEG); UNARY_CASE(U_EXP); UNARY_CASE(U_LOG); UNARY_CASE(U_SQRT); UNARY_CASE(U_RSQRT);
    UNARY_CASE(U_ABS); UNARY_CASE(U_CLAMP); UNARY_CASE(U_SILU); UNARY_CASE(U_SIGMOID); UNARY_CASE(U_TANH);
    UNARY_CASE(U_GELU); UNARY_CASE(U_RELU); UNARY_CASE(U_LOG1P); UNARY_CASE(U_EXPM1); UNARY_CASE(U_SIN);
    UNARY_CASE(U_COS); UNARY_CASE(U_SIGN);
  }
  return 0;
}

#define UNARY_KERNEL(name, code)                                                           \
  int cf_cpu_##name(cf_tensor *out, cf_tensor *const *in, int nin, const cf_args *a) {     \
    (void)nin; (void)a;                                                                     \
    return unary(#name, code, out, in[0], NAN, NAN);                                        \
  }
UNARY_KERNEL(neg, U_NEG)
UNARY_KERNEL(exp, U_EXP)
UNARY_KERNEL(log, U_LOG)
UNARY_KERNEL(sqrt, U_SQRT)
UNARY_KERNEL(rsqrt, U_RSQRT)
UNARY_KERNEL(abs, U_ABS)
UNARY_KERNEL(silu, U_SILU)
UNARY_KERNEL(sigmoid, U_SIGMOID)
UNARY_KERNEL(tanh, U_TANH)
UNARY_KERNEL(gelu, U_GELU)
UNARY_KERNEL(relu, U_RELU)
UNARY_KERNEL(log1p, U_LOG1P)
UNARY_KERNEL(expm1, U_EXPM1)
UNARY_KERNEL(sin, U_SIN)
UNARY_KERNEL(cos, U_COS)
UNARY_KERNEL(sign, U_SIGN)

/* clamp "T F F": a->f[0] = lo, a->f[1] = hi (NaN = absent); lo > hi gives hi everywhere */
int cf_cpu_clamp(cf_tensor *out, cf_tensor *const *in, int nin, const cf_args *a) {
  (void)nin;
  return unary("clamp", U_CLAMP, out, in[0], a->f[0], a->f[1]);
}

/* ---------------------------------------------------------------- binary */

typedef enum { B_ADD, B_SUB, B_MUL, B_DIV, B_POW, B_MAX, B_MIN, B_SWIGLU } binary_op;

static inline double binary_fn(binary_op op, double a, double b) {
  switch (op) {
    case B_ADD: return a + b;
    case B_SUB: return a - b;
    case B_MUL: return a * b;
    case B_DIV: return a / b;
    case B_POW: return pow(a, b);
    case B_MAX: return (isnan(a) || isnan(b)) ? a + b : (a > b ? a : b);
    case B_MIN: return (isnan(a) || isnan(b)) ? a + b : (a < b ? a : b);
    case B_SWIGLU: return a * sigmoid(a) * b;
  }
  return a;
}

/* As for the unary ops: one loop per (dtype, op), binary_fn's double math. */
#define BINARY_LOOP(T, OP)                                                                      \
  do {                                                                                          \
    T *o = out->storage->data;                                                                  \
    const T *as = a->storage->data, *bs = b->storage->data;                                     \
    _Pragma("omp parallel for if (it.numel > CF_OMP_MIN)")                                      \
    for (int64_t u = 0; u < it.units; u++) {                                                    \
      int64_t off[CF_ITER_MAX], len = cf_iter_unit(&it, u, off), so = it.inner_stride[0],      \
              sa = it.inner_stride[1], sb = it.inner_stride[2];                                 \
      T *po = o + off[0];                                                                       \
      const T *pa = as + off[1], *pb = bs + off[2];                                             \
      if (so == 1 && sa == 1 && sb == 1)                                                        \
        for (int64_t j = 0; j < len; j++) po[j] = (T)binary_fn(OP, pa[j], pb[j]);               \
      else                                                                                      \
        for (int64_t j = 0; j < len; j++) po[j * so] = (T)binary_fn(OP, pa[j * sa], pb[j * sb]); \
    }                                                                                           \
  } while (0)

#define BINARY_CASE(OP) TYPED_CASE(BINARY_LOOP, OP)

/* swiglu of f32 in float math, a / (1 + e^-a) * b as the decoder (core/nn/generate.c) writes
 * it: with binary_fn's double exp per element the op took about twice the time of the GEMM that
 * feeds it (12 % of the toy main job; bench/swiglu_bench.lua) */
static inline float swiglu_f(float a, float b) { return a / (1.0f + expf(-a)) * b; }

/* out [broadcast(a, b)] = f(a, b) */
static int binary(const char *name, binary_op op, cf_tensor *out, cf_tensor *a, cf_tensor *b) {
  if (check_compute_dtype(name, out)) return -1;
  cf_tensor *ops[3] = {out, a, b};
  cf_iter it;
  cf_iter_init(&it, out->ndim, out->shape, 3, ops);
  if (op == B_SWIGLU && out->dtype == CF_DTYPE_F32) {
    float *o = out->storage->data;
    const float *as = a->storage->data, *bs = b->storage->data;
    #pragma omp parallel for if (it.numel > CF_OMP_MIN)
    for (int64_t u = 0; u < it.units; u++) {
      int64_t off[CF_ITER_MAX], len = cf_iter_unit(&it, u, off), so = it.inner_stride[0],
              sa = it.inner_stride[1], sb = it.inner_stride[2];
      float *po = o + off[0];
      const float *pa = as + off[1], *pb = bs + off[2];
      if (so == 1 && sa == 1 && sb == 1)
        for (int64_t j = 0; j < len; j++) po[j] = swiglu_f(pa[j], pb[j]);
      else
        for (int64_t j = 0; j < len; j++) po[j * so] = swiglu_f(pa[j * sa], pb[j * sb]);
    }
    return 0;
  }
  switch (op) {
    BINARY_CASE(B_ADD); BINARY_CASE(B_SUB); BINARY_CASE(B_MUL); BINARY_CASE(B_DIV); BINARY_CASE(B_POW);
    BINARY_CASE(B_MAX); BINARY_CASE(B_MIN); BINARY_CASE(B_SWIGLU);
  }
  return 0;
}

/* cf_cpu_<op> of a two-input op run by FN(name, code, out, a, b) */
#define TWO_INPUTS(FN, name, code)                                                         \
  int cf_cpu_##name(cf_tensor *out, cf_tensor *const *in, int nin, const cf_args *a) {     \
    (void)nin; (void)a;                                                                     \
    return FN(#name, code, out, in[0], in[1]);                                              \
  }
#define BINARY_KERNEL(name, code) TWO_INPUTS(binary, name, code)
BINARY_KERNEL(add, B_ADD)
BINARY_KERNEL(sub, B_SUB)
BINARY_KERNEL(mul, B_MUL)
BINARY_KERNEL(div, B_DIV)
BINARY_KERNEL(pow, B_POW)
BINARY_KERNEL(maximum, B_MAX)
BINARY_KERNEL(minimum, B_MIN)
BINARY_KERNEL(swiglu, B_SWIGLU)

/* swiglu backward, one pass: with s = sigmoid(a), ga = g b s (1 + a (1 - s)), gb = g a s (f32
 * in float math, as the forward).
 * ga, gb: fresh contiguous tensors of g's (the output's) shape, either may be NULL; a, b may
 * broadcast to it; the engine sums the gradients down to the input shapes. */
int cf_cpu_swiglu_backward(cf_tensor *ga, cf_tensor *gb, cf_tensor *a, cf_tensor *b, cf_tensor *g) {
  cf_tensor *first = ga ? ga : gb;
  if (!first) return 0;
  if (check_compute_dtype("swiglu backward", first)) return -1;
  /* both outputs are dense and of one shape: gb is addressed with ga's offsets */
  cf_tensor *ops[4] = {first, g, a, b};
  cf_iter it;
  cf_iter_init(&it, first->ndim, first->shape, 4, ops);
#define SWIGLU_BWD_LOOP(T, SIGMOID, ONE)                                                             \
  do {                                                                                              \
    T *pa = ga ? ga->storage->data : NULL, *pb = gb ? gb->storage->data : NULL;                     \
    const T *gs = g->storage->data, *as = a->storage->data, *bs = b->storage->data;                 \
    _Pragma("omp parallel for if (it.numel > CF_OMP_MIN)")                                          \
    for (int64_t u = 0; u < it.units; u++) {                                                        \
      int64_t off[CF_ITER_MAX], len = cf_iter_unit(&it, u, off), so = it.inner_stride[0],          \
              sg = it.inner_stride[1], sa = it.inner_stride[2], sb = it.inner_stride[3];            \
      for (int64_t j = 0; j < len; j++) {                                                           \
        T x = as[off[2] + j * sa], y = bs[off[3] + j * sb], d = gs[off[1] + j * sg];                \
        T s = SIGMOID(x);                                                                           \
        if (pa) pa[off[0] + j * so] = d * y * s * (ONE + x * (ONE - s));                            \
        if (pb) pb[off[0] + j * so] = d * x * s;                                                    \
      }                                                                                             \
    }                                                                                               \
  } while (0)
#define SIGMOID_F(x) (1.0f / (1.0f + expf(-(x))))
  if (first->dtype == CF_DTYPE_F32) SWIGLU_BWD_LOOP(float, SIGMOID_F, 1.0f);
  else SWIGLU_BWD_LOOP(double, sigmoid, 1.0);
#undef SIGMOID_F
#undef SWIGLU_BWD_LOOP
  return 0;
}

/* ---------------------------------------------------------------- comparisons */

typedef enum { C_EQ, C_NE, C_LT, C_LE, C_GT, C_GE } compare_op;

/* x <op> y of two numbers of any dtype, read as double (exact for f32, bf16, i32, and i64 up to
 * 2^53): IEEE, so every comparison with NaN is false but ne */
static inline bool compare_fn(compare_op op, double x, double y) {
  switch (op) {
    case C_EQ: return x == y;
    case C_NE: return x != y;
    case C_LT: return x < y;
    case C_LE: return x <= y;
    case C_GT: return x > y;
    case C_GE: return x >= y;
  }
  return false;
}

/* out [broadcast(a, b)] = a <op> b ? 1 : 0; a and b of any dtypes, out f32, f64 or bf16 (a mask
 * of 0 and 1 is exact in bf16: written here as its bits, 0x3F80 for 1) */
static int compare(const char *name, compare_op op, cf_tensor *out, cf_tensor *a, cf_tensor *b) {
  if (out->dtype != CF_DTYPE_BF16 && check_compute_dtype(name, out)) return -1;
  cf_tensor *ops[3] = {out, a, b};
  cf_iter it;
  cf_iter_init(&it, out->ndim, out->shape, 3, ops);
  const void *as = a->storage->data, *bs = b->storage->data;
  cf_dtype adt = a->dtype, bdt = b->dtype;
  cf_dtype odt = out->dtype;
  void *o = out->storage->data;
  #pragma omp parallel for if (it.numel > CF_OMP_MIN)
  for (int64_t u = 0; u < it.units; u++) {
    int64_t off[CF_ITER_MAX], len = cf_iter_unit(&it, u, off);
    for (int64_t j = 0; j < len; j++) {
      bool r = compare_fn(op, cf_iter_load(as, adt, off[1] + j * it.inner_stride[1]),
                          cf_iter_load(bs, bdt, off[2] + j * it.inner_stride[2]));
      int64_t i = off[0] + j * it.inner_stride[0];
      if (odt == CF_DTYPE_F32) ((float *)o)[i] = r ? 1.0f : 0.0f;
      else if (odt == CF_DTYPE_F64) ((double *)o)[i] = r ? 1.0 : 0.0;
      else ((uint16_t *)o)[i] = r ? 0x3F80 : 0;
    }
  }
  return 0;
}

#define COMPARE_KERNEL(name, code) TWO_INPUTS(compare, name, code)
COMPARE_KERNEL(eq, C_EQ)
COMPARE_KERNEL(ne, C_NE)
COMPARE_KERNEL(lt, C_LT)
COMPARE_KERNEL(le, C_LE)
COMPARE_KERNEL(gt, C_GT)
COMPARE_KERNEL(ge, C_GE)

/* ---------------------------------------------------------------- where, masked_fill */

/* out [broadcast(c, a, b)] = c != 0 ? a : b.  With a == NULL: c != 0 ? fill : b (masked_fill). */
static int select_kernel(const char *name, cf_tensor *out, cf_tensor *c, cf_tensor *a, cf_tensor *b,
                         double fill) {
  if (check_compute_dtype(name, out)) return -1;
  cf_tensor *ops[4] = {out, c, b, a ? a : b};
  cf_iter it;
  cf_iter_init(&it, out->ndim, out->shape, 4, ops);
  const void *cs = c->storage->data;
  cf_dtype cdt = c->dtype;
  bool have_a = a != NULL;
#define SELECT_LOOP(T)                                                                              \
  do {                                                                                              \
    T *o = out->storage->data;                                                                      \
    const T *bs = b->storage->data, *as = (a ? a : b)->storage->data;                               \
    _Pragma("omp parallel for if (it.numel > CF_OMP_MIN)")                                          \
    for (int64_t u = 0; u < it.units; u++) {                                                        \
      int64_t off[CF_ITER_MAX], len = cf_iter_unit(&it, u, off);                                    \
      for (int64_t j = 0; j < len; j++) {                                                           \
        bool on = cf_iter_load(cs, cdt, off[1] + j * it.inner_stride[1]) != 0;                      \
        o[off[0] + j * it.inner_stride[0]] =                                                        \
            on ? (have_a ? as[off[3] + j * it.inner_stride[3]] : (T)fill)                           \
               : bs[off[2] + j * it.inner_stride[2]];                                               \
      }                                                                                             \
    }                                                                                               \
  } while (0)
  if (out->dtype == CF_DTYPE_F32) SELECT_LOOP(float);
  else SELECT_LOOP(double);
#undef SELECT_LOOP
  return 0;
}

/* where "M T T": cond [..], a [..], b [..] broadcast together -> out */
int cf_cpu_where(cf_tensor *out, cf_tensor *const *in, int nin, const cf_args *a) {
  (void)nin; (void)a;
  return select_kernel("where", out, in[0], in[1], in[2], 0);
}

/* masked_fill "T M f": t [..], mask broadcastable to t's shape (cf_infer_masked_fill checked it),
 * value a->f[0] -> out [t's shape] */
int cf_cpu_masked_fill(cf_tensor *out, cf_tensor *const *in, int nin, const cf_args *a) {
  (void)nin;
  return select_kernel("masked_fill", out, in[1], NULL, in[0], a->f[0]);
}
