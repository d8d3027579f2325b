/* test_core_edges.c - edges of the tensor core and the optimizer's C API that the other tests
 * did not reach (found by mutation testing, twenty-seventh session): the bounds of
 * cf_tensor_from_storage and cf_tensor_from_bytes, contiguity through size-1 dims, view/reshape
 * shape resolution (two -1, a count that does not divide), unsqueeze's dim range, copy_ between
 * overlapping strided views, arange's element count for a fractional span, and the optimizer's
 * state and master setters (refused where no such slot or master exists), the Philox stream of
 * consecutive fills of an odd count, and cf_op's refusal of an unknown op id or too few inputs;
 * view arguments only a C caller can pass (a negative length or index, expand to fewer dims),
 * shapes of another ndim, rand/randn in bf16 and f32 as the rounded f64 draws, an optimizer
 * gradient of another dtype, an empty view beside its base as parameters.
 * Every expectation is written out by hand or computed by a naive loop here.
 * Prints "N passed, N failed"; exits 1 on any failure.
 */
#include "error.h"
#include "ops.h"
#include "optim.h"
#include "rng.h"
#include "tensor.h"
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "check.h"

static bool has(const char *needle) { return strstr(cf_error_message(), needle) != NULL; }

/* [n] f32 holding 0..n-1 */
static cf_tensor *iota(int64_t n) {
  cf_tensor *t = cf_tensor_zeros(1, &n, CF_DTYPE_F32);
  for (int64_t i = 0; i < n; i++) ((float *)cf_tensor_data(t))[i] = (float)i;
  return t;
}

/* a view reaching exactly the storage's end is accepted, one element further is refused */
static void test_from_storage_bounds(void) {
  cf_storage *s = cf_storage_new(CF_DEVICE_CPU, 6 * sizeof(float));
  int64_t four = 4, three = 3;
  cf_tensor *end = cf_tensor_from_storage(s, 2, 1, &four, CF_DTYPE_F32);
  CHECK(end && end->offset == 2 && cf_tensor_numel(end) == 4, "4 elements at offset 2 of 6: %s", cf_error_message());
  cf_tensor *past = cf_tensor_from_storage(s, 3, 1, &four, CF_DTYPE_F32);
  CHECK(!past && has("from_storage: 4 elements at offset 3 exceed the storage (24 bytes)"),
        "4 elements at offset 3 of 6 refused: %s", cf_error_message());
  cf_tensor *wide = cf_tensor_from_storage(s, 0, 1, &three, CF_DTYPE_F64);
  CHECK(wide != NULL, "3 f64 fill the 24 bytes: %s", cf_error_message());
  cf_tensor *wider = cf_tensor_from_storage(s, 0, 1, &four, CF_DTYPE_F64);
  CHECK(!wider && has("4 elements at offset 0 exceed the storage (24 bytes)"), "4 f64 in 24 bytes refused: %s",
        cf_error_message());
  cf_tensor *neg = cf_tensor_from_storage(s, -1, 1, &three, CF_DTYPE_F32);
  CHECK(!neg && has("exceed the storage"), "a negative offset refused: %s", cf_error_message());
  cf_tensor_release(end);
  cf_tensor_release(wide);
  cf_storage_release(s);
}

/* from_bytes wants exactly the tensor's bytes: fewer or more are refused */
static void test_from_bytes_size(void) {
  float v[5] = {1, 2, 3, 4, 5};
  int64_t s[2] = {2, 2};
  cf_tensor *ok = cf_tensor_from_bytes(2, s, CF_DTYPE_F32, v, 16);
  CHECK(ok && cf_tensor_get_flat(ok, 3) == 4, "16 bytes for [2 x 2] f32");
  cf_tensor *more = cf_tensor_from_bytes(2, s, CF_DTYPE_F32, v, 20);
  CHECK(!more && has("from_bytes: 20 bytes given, [2 x 2] f32 needs 16"), "20 bytes refused: %s", cf_error_message());
  cf_tensor *less = cf_tensor_from_bytes(2, s, CF_DTYPE_F32, v, 12);
  CHECK(!less && has("12 bytes given"), "12 bytes refused: %s", cf_error_message());
  cf_tensor_release(ok);
}

/* a size-1 dim's stride never matters (PyTorch: torch.zeros(3, 1).t().is_contiguous() is True) */
static void test_contiguous_size1(void) {
  int64_t s[2] = {3, 1};
  cf_tensor *t = cf_tensor_zeros(2, s, CF_DTYPE_F32);
  cf_tensor *tr = cf_view_transpose(t, 0, 1);   /* [1 x 3], strides {1, 1} */
  CHECK(tr && tr->stride[0] == 1 && cf_tensor_is_contiguous(tr), "[1 x 3] with stride 1 on the size-1 dim is contiguous");
  int64_t s3[3] = {2, 1, 3};
  cf_tensor *u = cf_tensor_zeros(3, s3, CF_DTYPE_F32);
  u->stride[1] = 1000;                          /* any stride on the size-1 dim */
  CHECK(cf_tensor_is_contiguous(u), "a size-1 dim with any stride keeps a tensor contiguous");
  u->stride[2] = 2;
  CHECK(!cf_tensor_is_contiguous(u), "a gap in the last dim is not contiguous");
  cf_tensor_release(tr);
  cf_tensor_release(t);
  cf_tensor_release(u);
}

/* view/reshape: one -1 at most, and the -1 must divide the element count exactly */
static void test_resolve_shape(void) {
  cf_tensor *t = iota(6);
  int64_t two[2] = {-1, -1}, m14[2] = {-1, 4}, m12[2] = {-1, 2};
  cf_tensor *v = cf_view_reshape(t, 2, two);
  CHECK(!v && has("view: more than one -1 in the new shape"), "two -1 refused: %s", cf_error_message());
  cf_tensor *r = cf_tensor_reshape(t, 2, two);
  CHECK(!r && has("reshape: more than one -1"), "reshape: two -1 refused: %s", cf_error_message());
  v = cf_view_reshape(t, 2, m14);
  CHECK(!v && has("view: cannot view [6] (6 elements)"), "6 elements as [-1 x 4] refused: %s", cf_error_message());
  r = cf_tensor_reshape(t, 2, m14);
  CHECK(!r && has("reshape: cannot view [6] (6 elements)"), "reshape [-1 x 4] refused: %s", cf_error_message());
  v = cf_view_reshape(t, 2, m12);
  CHECK(v && v->shape[0] == 3 && v->shape[1] == 2 && cf_tensor_get_flat(v, 5) == 5, "[-1 x 2] is [3 x 2]");
  cf_tensor_release(v);
  cf_tensor_release(t);
}

/* unsqueeze takes dims 0..ndim (0-based); ndim + 1 is refused */
static void test_unsqueeze_range(void) {
  int64_t s[2] = {2, 3};
  cf_tensor *t = cf_tensor_zeros(2, s, CF_DTYPE_F32);
  cf_tensor *last = cf_view_unsqueeze(t, 2);
  CHECK(last && last->ndim == 3 && last->shape[2] == 1 && last->shape[1] == 3, "unsqueeze at ndim");
  cf_tensor *past = cf_view_unsqueeze(t, 3);
  CHECK(!past && has("unsqueeze: dim 4 out of range for a 2-d tensor"), "unsqueeze past ndim refused: %s",
        cf_error_message());
  cf_tensor *neg = cf_view_unsqueeze(t, -1);
  CHECK(!neg && has("unsqueeze: dim 0 out of range"), "unsqueeze at -1 refused: %s", cf_error_message());
  cf_tensor_release(last);
  cf_tensor_release(t);
}

/* copy_ between two views of one storage whose spans overlap only through a stride: dst =
 * elements 3, 4, 5, src = elements 0, 2, 4 (a column of the [3 x 2] view). Copied element by
 * element, dst[1] = 2 lands on element 4 before src[2] reads it. */
static void test_copy_strided_overlap(void) {
  for (int dt = 0; dt < 2; dt++) {
    cf_dtype d = dt ? CF_DTYPE_F64 : CF_DTYPE_BF16;   /* the row-wise path and the generic one */
    int64_t n = 6, s2[2] = {3, 2};
    cf_tensor *a = iota(n), *b = cf_tensor_to_dtype(a, d);
    cf_tensor *m = cf_view_reshape(b, 2, s2);
    cf_tensor *src = cf_view_select(m, 1, 0);         /* 0, 2, 4 */
    cf_tensor *dst = cf_view_narrow(b, 0, 3, 3);       /* 3, 4, 5 */
    double want[6] = {0, 1, 2, 0, 2, 4};               /* the values src held before the copy */
    CHECK(src && dst && cf_tensor_copy_(dst, src) == 0, "copy_: %s", cf_error_message());
    bool same = true;
    for (int64_t i = 0; i < 6; i++) same &= cf_tensor_get_flat(b, i) == want[i];
    CHECK(same, "%s: copy_ through an overlapping strided view gives 0 1 2 0 2 4, got %g %g %g %g %g %g",
          cf_dtype_name(d), cf_tensor_get_flat(b, 0), cf_tensor_get_flat(b, 1), cf_tensor_get_flat(b, 2),
          cf_tensor_get_flat(b, 3), cf_tensor_get_flat(b, 4), cf_tensor_get_flat(b, 5));
    cf_tensor_release(dst); cf_tensor_release(src); cf_tensor_release(m);
    cf_tensor_release(b); cf_tensor_release(a);
  }
}

/* arange's count is ceil((end - start) / step) (PyTorch's): a fractional span keeps its last value */
static void test_arange_count(void) {
  struct { double a, b, s; int64_t n; double last; } c[] = {
    {0, 2.5, 1, 3, 2}, {0, 1, 0.3, 4, 0.9}, {1, -1.5, -1, 3, -1}, {0, 3, 1, 3, 2}, {5, 5, 1, 0, 0}};
  for (size_t k = 0; k < sizeof c / sizeof *c; k++) {
    cf_tensor *t = cf_tensor_arange(c[k].a, c[k].b, c[k].s, CF_DTYPE_F64);
    CHECK(t && cf_tensor_numel(t) == c[k].n, "arange(%g, %g, %g) has %lld elements, got %lld", c[k].a, c[k].b,
          c[k].s, (long long)c[k].n, t ? (long long)cf_tensor_numel(t) : -1LL);
    if (t && c[k].n > 0 && cf_tensor_numel(t) == c[k].n)
      CHECK(fabs(cf_tensor_get_flat(t, c[k].n - 1) - c[k].last) < 1e-12, "arange(%g, %g, %g) ends at %g", c[k].a,
            c[k].b, c[k].s, c[k].last);
    cf_tensor_release(t);
  }
}

static cf_tensor *param(cf_dtype dt, double v0, double v1) {
  int64_t two = 2;
  cf_tensor *p = cf_tensor_zeros(1, &two, dt);
  cf_tensor_set(p, (int64_t[1]){0}, v0);
  cf_tensor_set(p, (int64_t[1]){1}, v1);
  p->requires_grad = true;
  return p;
}

/* the state and master setters refuse what has no place: SGD without momentum keeps no buffer,
 * only a bf16 parameter has an f32 master */
static void test_optim_setters(void) {
  cf_tensor *p = param(CF_DTYPE_F32, 1, 2);
  cf_tensor *buf = param(CF_DTYPE_F32, 5, 5);
  cf_optim_config c = cf_optim_defaults(CF_OPTIM_SGD);
  cf_optim *o = cf_optim_new(&c, &p, 1);
  CHECK(o && cf_optim_nslots(o) == 0, "sgd without momentum: no slots");
  CHECK(o && cf_optim_state_set(o, 0, 0, buf) != 0 && has("sgd: no state slot 1 for parameter 1"),
        "a momentum buffer for an SGD without momentum refused: %s", cf_error_message());
  CHECK(o && cf_optim_state_get(o, 0, 0) == NULL, "no buffer kept");
  CHECK(o && cf_optim_master_set(o, 0, buf) != 0 && has("only bf16 parameters have an f32 master copy"),
        "a master for an f32 parameter refused: %s", cf_error_message());
  CHECK(o && cf_optim_master_get(o, 0) == NULL, "no master kept");
  cf_optim_free(o);
  CHECK(cf_optim_new(&c, &p, -1) == NULL && has("sgd: negative parameter count"), "a negative count refused: %s",
        cf_error_message());
  cf_optim_config a = cf_optim_defaults(CF_OPTIM_ADAMW);
  o = cf_optim_new(&a, &p, 1);
  CHECK(o && cf_optim_state_set(o, 0, 2, buf) != 0 && has("adamw: no state slot 3"), "adamw slot 3 refused: %s",
        cf_error_message());
  CHECK(o && cf_optim_state_set(o, 0, 1, buf) == 0 && cf_tensor_get_flat(cf_optim_state_get(o, 0, 1), 1) == 5,
        "adamw exp_avg_sq set: %s", cf_error_message());
  cf_optim_free(o);
  cf_tensor_release(buf);
  cf_tensor_release(p);
}

/* sgd: nesterov needs dampening 0 (PyTorch: "Nesterov momentum requires a momentum and zero dampening") */
static void test_nesterov_dampening(void) {
  cf_optim_config c = cf_optim_defaults(CF_OPTIM_SGD);
  c.momentum = 0.9;
  c.nesterov = true;
  CHECK(cf_optim_check_config(&c) == 0, "nesterov with momentum and dampening 0: %s", cf_error_message());
  c.dampening = 0.1;
  CHECK(cf_optim_check_config(&c) != 0 && has("sgd: nesterov needs momentum > 0 and dampening 0"),
        "nesterov with dampening 0.1 refused: %s", cf_error_message());
  c.dampening = 0;
  c.momentum = 0;
  CHECK(cf_optim_check_config(&c) != 0 && has("nesterov needs momentum > 0"), "nesterov without momentum refused");
}

/* rng.h: value i of a fill comes from counter (g->counter + i / 2), two values a counter
 * (uniform: 53 bits of words 0-1, then of words 2-3); a fill of n advances the counter by
 * ceil(n / 2), so an odd fill leaves its last counter's second value unused and the next fill
 * starts on a fresh counter (no value drawn twice). */
static double u53_ref(uint32_t hi, uint32_t lo) {
  return (double)(((uint64_t)(hi >> 5) << 26) | (lo >> 6)) / 9007199254740992.0;
}

static void test_rng_fill_stream(void) {
  const uint64_t seed = 1234;
  cf_rng g;
  cf_rng_init(&g, seed);
  g.counter = 7;
  double u[3], v[3];
  cf_rng_fill_uniform_f64(&g, u, 3);
  CHECK(g.counter == 9, "a fill of 3 advances the counter by 2, got %llu", (unsigned long long)g.counter - 7);
  cf_rng_fill_uniform_f64(&g, v, 3);
  CHECK(g.counter == 11, "the next fill of 3 too");
  double want[6];
  for (int c = 0; c < 4; c++) {
    uint32_t w[4];
    cf_philox(7 + (uint64_t)c, seed, w);
    int base = c < 2 ? 2 * c : 3 + 2 * (c - 2);   /* u from counters 7, 8; v from 9, 10 */
    want[base] = u53_ref(w[0], w[1]);
    if (c != 1 && c != 3) want[base + 1] = u53_ref(w[2], w[3]);
  }
  bool same = true;
  for (int i = 0; i < 3; i++) same &= u[i] == want[i] && v[i] == want[3 + i];
  CHECK(same, "uniform fills from the Philox stream: got %g %g %g | %g %g %g", u[0], u[1], u[2], v[0], v[1], v[2]);
  CHECK(v[0] != u[2], "the second fill does not repeat the first's last value");
  /* normal fills advance the same way; the pair's second value is the sine half */
  cf_rng_init(&g, seed);
  double z[3], y[1];
  cf_rng_fill_normal_f64(&g, z, 3);
  cf_rng_fill_normal_f64(&g, y, 1);
  CHECK(g.counter == 3, "normal fills of 3 and 1 use 3 counters, got %llu", (unsigned long long)g.counter);
  uint32_t w[4];
  cf_philox(0, seed, w);
  double r = sqrt(-2.0 * log(1.0 - u53_ref(w[0], w[1]))), th = 6.283185307179586 * u53_ref(w[2], w[3]);
  CHECK(fabs(z[0] - r * cos(th)) < 1e-15 && fabs(z[1] - r * sin(th)) < 1e-15, "Box-Muller pair: %g %g vs %g %g",
        z[0], z[1], r * cos(th), r * sin(th));
  cf_philox(2, seed, w);
  r = sqrt(-2.0 * log(1.0 - u53_ref(w[0], w[1])));
  th = 6.283185307179586 * u53_ref(w[2], w[3]);
  CHECK(fabs(y[0] - r * cos(th)) < 1e-15, "the fill after an odd one starts on counter 2");
  /* single draws: one counter each; u32 is word 0 of its counter */
  cf_rng_init(&g, 0);
  uint32_t u0 = cf_rng_u32(&g), u1 = cf_rng_u32(&g);
  cf_philox(1, 0, w);
  CHECK(u0 == 0x6627e8d5u && u1 == w[0], "cf_rng_u32: word 0 of counters 0 and 1, got %08x %08x", u0, u1);
  cf_rng_init(&g, seed);
  double n0 = cf_rng_normal(&g), n1 = cf_rng_normal(&g);
  CHECK(g.counter == 2 && n0 == z[0] && n0 != n1, "cf_rng_normal uses one counter a draw");
  cf_rng_init(&g, seed);
  double a0 = cf_rng_uniform(&g);
  cf_philox(0, seed, w);
  CHECK(g.counter == 1 && a0 == u53_ref(w[0], w[1]), "cf_rng_uniform is the first pair's 53 bits");
}

/* cf_op refuses an op id past the table and a call with fewer tensors than the op takes */
static void test_op_calls(void) {
  int64_t two = 2;
  cf_tensor *a = cf_tensor_zeros(1, &two, CF_DTYPE_F32);
  cf_tensor *in[2] = {a, a};
  CHECK(cf_op(CF_OP_COUNT, in, 2, NULL) == NULL && has("unknown op id"), "op id CF_OP_COUNT refused: %s",
        cf_error_message());
  CHECK(cf_op((cf_op_id)-1, in, 2, NULL) == NULL && has("unknown op id -1"), "op id -1 refused");
  CHECK(cf_op(CF_OP_add, in, 1, NULL) == NULL && has("add: takes 2 tensor inputs, got 1"), "add with 1 input: %s",
        cf_error_message());
  cf_tensor *in3[3] = {a, a, a};
  CHECK(cf_op(CF_OP_add, in3, 3, NULL) == NULL && has("add: takes 2 tensor inputs, got 3"), "add with 3 inputs");
  cf_tensor *s = cf_op(CF_OP_add, in, 2, NULL);
  CHECK(s != NULL && cf_tensor_numel(s) == 2, "add with 2 inputs: %s", cf_error_message());
  cf_tensor_release(s);
  /* layout ops called with arguments the Lua binding never builds */
  int64_t s3[3] = {2, 3, 4};
  cf_tensor *t = cf_tensor_zeros(3, s3, CF_DTYPE_F32);
  cf_args pa = cf_args_none();
  pa.i[0] = 2; pa.i[1] = 1; pa.i[2] = 0; pa.ni = 3;
  CHECK(cf_op(CF_OP_permute, &t, 1, &pa) == NULL && has("permute: 2 dims given for a 3-d tensor"),
        "permute with 2 dims of a 3-d tensor refused: %s", cf_error_message());
  pa.i[0] = 3; pa.i[3] = 2; pa.ni = 4;
  cf_tensor *p = cf_op(CF_OP_permute, &t, 1, &pa);
  CHECK(p && p->shape[0] == 3 && p->shape[1] == 2 && p->shape[2] == 4, "permute {1, 0, 2}: %s", cf_error_message());
  cf_tensor_release(p);
  cf_args qa = cf_args_none();
  qa.i[0] = -2; qa.ni = 1;                       /* CF_DIM_ALL is -1; another negative dim is no dim */
  CHECK(cf_op(CF_OP_squeeze, &t, 1, &qa) == NULL && has("squeeze: dim -1 out of range"),
        "squeeze of dim -2 refused: %s", cf_error_message());
  cf_args da = cf_args_none();
  da.i[0] = CF_DTYPE_COUNT; da.ni = 1;
  CHECK(cf_op(CF_OP_to_dtype, &t, 1, &da) == NULL && has("to_dtype: invalid dtype"), "to_dtype of an invalid dtype: %s",
        cf_error_message());
  cf_tensor_release(t);
  cf_tensor_release(a);
}

/* argument ranges only a C caller can get wrong (the Lua binding checks its own) */
static void test_view_args(void) {
  int64_t s[2] = {2, 3};
  cf_tensor *t = cf_tensor_zeros(2, s, CF_DTYPE_F32);
  CHECK(cf_view_narrow(t, 1, 1, -1) == NULL && has("narrow: -1 elements from 2 run past dim 2"),
        "narrow of a negative length refused: %s", cf_error_message());
  CHECK(cf_view_select(t, 0, -1) == NULL && has("select: index 0 out of range for dim 1 of size 2"),
        "select of index -1 refused: %s", cf_error_message());
  int64_t three = 3;
  CHECK(cf_view_expand(t, 1, &three) == NULL && has("expand: cannot expand [2 x 3] to 1 dims"),
        "expand to fewer dims refused: %s", cf_error_message());
  /* shapes with equal leading sizes but another ndim are not the same shape */
  int64_t s21[2] = {2, 1}, two = 2;
  cf_tensor *a = cf_tensor_zeros(1, &two, CF_DTYPE_F32), *b = cf_tensor_full(2, s21, CF_DTYPE_F32, 1);
  CHECK(!cf_same_shape(a, b) && !cf_same_shape(b, a), "[2] and [2 x 1] differ");
  CHECK(cf_tensor_copy_(a, b) != 0 && has("copy_: shapes differ: [2] <- [2 x 1]"), "copy_ [2] <- [2 x 1] refused: %s",
        cf_error_message());
  CHECK(cf_tensor_get_flat(a, 0) == 0, "nothing copied");
  /* a variadic op needs at least one tensor */
  cf_args ca = cf_args_none();
  ca.i[0] = 0; ca.ni = 1;
  cf_tensor *none[1] = {NULL};
  CHECK(cf_op(CF_OP_cat, none, 0, &ca) == NULL && has("cat: needs at least one tensor"), "cat of nothing refused: %s",
        cf_error_message());
  cf_tensor_release(a); cf_tensor_release(b); cf_tensor_release(t);
}

/* rand and randn in bf16 (and f32) are the f64 draws of the same stream rounded to that dtype */
static void test_rand_dtypes(void) {
  int64_t n = 64;
  for (int normal = 0; normal < 2; normal++)
    for (int k = 0; k < 2; k++) {
      cf_dtype dt = k ? CF_DTYPE_F32 : CF_DTYPE_BF16;
      cf_rng g;
      cf_rng_init(&g, 99);
      cf_tensor *d = normal ? cf_tensor_randn(1, &n, CF_DTYPE_F64, &g) : cf_tensor_rand(1, &n, CF_DTYPE_F64, &g);
      cf_rng_init(&g, 99);
      cf_tensor *r = normal ? cf_tensor_randn(1, &n, dt, &g) : cf_tensor_rand(1, &n, dt, &g);
      cf_tensor *want = cf_tensor_to_dtype(d, dt);
      CHECK(r && want && memcmp(cf_tensor_data(r), cf_tensor_data(want), (size_t)n * cf_dtype_size(dt)) == 0,
            "%s in %s: the f64 draws rounded", normal ? "randn" : "rand", cf_dtype_name(dt));
      cf_tensor_release(d); cf_tensor_release(r); cf_tensor_release(want);
    }
}

/* the optimizer takes a gradient of another floating dtype as its value in the parameter's
 * dtype (optim.h: "g has p's dtype" by the time a kernel sees it) */
static void test_optim_grad_dtype(void) {
  cf_tensor *p32 = param(CF_DTYPE_F32, 1, -2), *q32 = param(CF_DTYPE_F32, 1, -2);
  p32->grad = param(CF_DTYPE_F64, 0.5, -0.25);
  p32->grad->requires_grad = false;
  q32->grad = param(CF_DTYPE_F32, 0.5, -0.25);
  q32->grad->requires_grad = false;
  cf_optim_config c = cf_optim_defaults(CF_OPTIM_ADAMW);
  c.lr = 0.1;
  cf_optim *o1 = cf_optim_new(&c, &p32, 1), *o2 = cf_optim_new(&c, &q32, 1);
  for (int s = 0; s < 2; s++) {
    CHECK(o1 && cf_optim_step(o1) == 0, "step with an f64 gradient: %s", cf_error_message());
    CHECK(o2 && cf_optim_step(o2) == 0, "step with an f32 gradient: %s", cf_error_message());
  }
  CHECK(cf_tensor_get_flat(p32, 0) == cf_tensor_get_flat(q32, 0) && cf_tensor_get_flat(p32, 1) == cf_tensor_get_flat(q32, 1),
        "an f64 gradient steps an f32 parameter as its f32 value: %g %g vs %g %g", cf_tensor_get_flat(p32, 0),
        cf_tensor_get_flat(p32, 1), cf_tensor_get_flat(q32, 0), cf_tensor_get_flat(q32, 1));
  /* hand-derived first step of AdamW at lr 0.1: p - lr * wd * p - lr * sign(g) (bias-corrected m / sqrt(v)) */
  CHECK(fabs(cf_tensor_get_flat(p32, 0) - (1 * (1 - 0.1 * 0.01) * (1 - 0.1 * 0.01) - 0.1 * (1 - 0.1 * 0.01) - 0.1)) < 1e-5,
        "two steps of a constant gradient move by lr each: %g", cf_tensor_get_flat(p32, 0));
  cf_optim_free(o1); cf_optim_free(o2);
  cf_tensor_release(p32); cf_tensor_release(q32);
  /* an empty view shares no element with anything: a parameter beside its base */
  int64_t four = 4;
  cf_tensor *base = cf_tensor_zeros(1, &four, CF_DTYPE_F32);
  cf_tensor *empty = cf_view_narrow(base, 0, 1, 0);
  cf_tensor *ps[2] = {base, empty};
  cf_optim *o = cf_optim_new(&c, ps, 2);
  CHECK(o != NULL, "an empty view of a parameter's storage is no overlap: %s", cf_error_message());
  cf_optim_free(o);
  cf_tensor_release(empty); cf_tensor_release(base);
}

int main(void) {
  size_t live0 = cf_cpu_bytes_live();
  test_from_storage_bounds();
  test_from_bytes_size();
  test_contiguous_size1();
  test_resolve_shape();
  test_unsqueeze_range();
  test_copy_strided_overlap();
  test_arange_count();
  test_optim_setters();
  test_nesterov_dampening();
  test_rng_fill_stream();
  test_op_calls();
  test_view_args();
  test_rand_dtypes();
  test_optim_grad_dtype();
  CHECK(cf_cpu_bytes_live() == live0, "no CPU bytes live at the end (%zu)", cf_cpu_bytes_live() - live0);
  return check_finish();
}
