/* grad_elementwise.c - backward rules of the elementwise ops (binary, where, masked_fill, unary).
 *
 * Rules are formulas over table ops (grad_expr.h), so they run on any device that has the
 * forward kernels. Binary rules return full-size gradients; the engine sums them down to each
 * input's shape. Masks are built from nonzero-ness (where treats nonzero as true). The rules
 * predate the comparison ops (eq, ne, ...) and spell comparisons with ops that propagate NaN:
 * `differs` is x != y (true for NaN, false for equal infinities, where x - y alone is NaN),
 * `is_nan` is nonzero only at NaN.
 *
 * Conventions at non-differentiable points (documented in ops.def's docs):
 *   maximum/minimum  ties (equal infinities too) send half of the gradient to each input, a NaN
 *                    operand the whole gradient to both (as PyTorch);
 *   abs              gradient 0 at 0 and at NaN (PyTorch's sgn);  relu: 0 at 0;
 *   clamp            the gradient passes where lo <= x <= hi (bounds included; an unclamped
 *                    infinity passes, NaN does not; nowhere when lo > hi, as PyTorch);
 *   pow              d/da is 0 where b == 0, d/db is 0 where a == 0.
 */
#include "grad_expr.h"

/* 1 - t */
static cf_tensor *one_minus(cf_gx *s, cf_tensor *t) {
  return gx_num(s, CF_OP_add, gx_op1(s, CF_OP_neg, t), 1.0);
}

/* clamp(t, lo, hi) */
static cf_tensor *gx_clamp(cf_gx *s, cf_tensor *t, double lo, double hi) {
  if (!t) { s->failed = true; return NULL; }
  cf_args a = cf_args_none();
  a.f[0] = lo;
  a.f[1] = hi;
  a.nf = 2;
  return gx_keep(s, cf_op(CF_OP_clamp, &t, 1, &a));
}

/* NaN where t is NaN, 0 elsewhere (infinities included): clamp propagates NaN */
static cf_tensor *is_nan(cf_gx *s, cf_tensor *t) { return gx_clamp(s, t, 0, 0); }

/* Nonzero exactly where x != y (NaN differs from everything): x - y, except where that is NaN
 * (equal infinities or a NaN operand); there the difference of x and y clamped to [-1, 1],
 * 0 for equal infinities and NaN for NaN. */
static cf_tensor *differs(cf_gx *s, cf_tensor *x, cf_tensor *y) {
  cf_tensor *d = gx_op2(s, CF_OP_sub, x, y);
  cf_tensor *dc = gx_op2(s, CF_OP_sub, gx_clamp(s, x, -1, 1), gx_clamp(s, y, -1, 1));
  return gx_where(s, is_nan(s, d), dc, d);
}

/* ---------------------------------------------------------------- binary */

int cf_bwd_add(cf_node *n, cf_tensor *g, cf_tensor **gin) {
  cf_gx s = {0};
  if (n->needs[0]) gin[0] = gx_result(&s, g);
  if (n->needs[1]) gin[1] = gx_result(&s, g);
  return gx_end(&s);
}

int cf_bwd_sub(cf_node *n, cf_tensor *g, cf_tensor **gin) {
  cf_gx s = {0};
  if (n->needs[0]) gin[0] = gx_result(&s, g);
  if (n->needs[1]) gin[1] = gx_result(&s, gx_op1(&s, CF_OP_neg, g));
  return gx_end(&s);
}

int cf_bwd_mul(cf_node *n, cf_tensor *g, cf_tensor **gin) {
  cf_gx s = {0};
  if (n->needs[0]) gin[0] = gx_result(&s, gx_op2(&s, CF_OP_mul, g, n->in[1]));
  if (n->needs[1]) gin[1] = gx_result(&s, gx_op2(&s, CF_OP_mul, g, n->in[0]));
  return gx_end(&s);
}

/* out = a / b:  da = g / b,  db = -g * out / b */
int cf_bwd_div(cf_node *n, cf_tensor *g, cf_tensor **gin) {
  cf_gx s = {0};
  cf_tensor *b = n->in[1];
  if (n->needs[0]) gin[0] = gx_result(&s, gx_op2(&s, CF_OP_div, g, b));
  if (n->needs[1]) {
    cf_tensor *t = gx_op2(&s, CF_OP_div, gx_op2(&s, CF_OP_mul, g, n->out), b);
    gin[1] = gx_result(&s, gx_op1(&s, CF_OP_neg, t));
  }
  return gx_end(&s);
}

/* out = a ^ b:  da = g * b * a^(b-1) (0 where b == 0),  db = g * out * log(a) (0 where a == 0) */
int cf_bwd_pow(cf_node *n, cf_tensor *g, cf_tensor **gin) {
  cf_gx s = {0};
  cf_tensor *a = n->in[0], *b = n->in[1];
  cf_tensor *zero = gx_const(&s, g, 0.0);
  if (n->needs[0]) {
    cf_tensor *p = gx_op2(&s, CF_OP_pow, a, gx_num(&s, CF_OP_sub, b, 1.0));
    cf_tensor *d = gx_op2(&s, CF_OP_mul, gx_op2(&s, CF_OP_mul, g, b), p);
    gin[0] = gx_result(&s, gx_where(&s, b, d, zero));
  }
  if (n->needs[1]) {
    cf_tensor *d = gx_op2(&s, CF_OP_mul, gx_op2(&s, CF_OP_mul, g, n->out), gx_op1(&s, CF_OP_log, a));
    gin[1] = gx_result(&s, gx_where(&s, a, d, zero));
  }
  return gx_end(&s);
}

/* maximum and minimum: an input gets g unless the other one strictly won (the other equals the
 * output and this one differs from it), half of g on ties; a NaN operand makes the output NaN,
 * which neither equals, so both get g */
static int minmax_bwd(cf_node *n, cf_tensor *g, cf_tensor **gin) {
  cf_gx s = {0};
  cf_tensor *a = n->in[0], *b = n->in[1], *out = n->out;
  cf_tensor *zero = gx_const(&s, g, 0.0);
  cf_tensor *ab = differs(&s, a, b);
  cf_tensor *tie = gx_where(&s, ab, zero, gx_num(&s, CF_OP_mul, g, 0.5)); /* 0 where a != b */
  if (n->needs[0]) gin[0] = gx_result(&s, gx_where(&s, differs(&s, b, out), g, tie));
  if (n->needs[1]) gin[1] = gx_result(&s, gx_where(&s, differs(&s, a, out), g, tie));
  return gx_end(&s);
}

int cf_bwd_maximum(cf_node *n, cf_tensor *g, cf_tensor **gin) { return minmax_bwd(n, g, gin); }
int cf_bwd_minimum(cf_node *n, cf_tensor *g, cf_tensor **gin) { return minmax_bwd(n, g, gin); }

/* where(c, a, b): da = g where c, db = g where not c; c gets none */
int cf_bwd_where(cf_node *n, cf_tensor *g, cf_tensor **gin) {
  cf_gx s = {0};
  cf_tensor *zero = gx_const(&s, g, 0.0);
  if (n->needs[1]) gin[1] = gx_result(&s, gx_where(&s, n->in[0], g, zero));
  if (n->needs[2]) gin[2] = gx_result(&s, gx_where(&s, n->in[0], zero, g));
  return gx_end(&s);
}

/* masked_fill(t, mask, v): dt = g where the mask is zero */
int cf_bwd_masked_fill(cf_node *n, cf_tensor *g, cf_tensor **gin) {
  cf_gx s = {0};
  if (n->needs[0]) gin[0] = gx_result(&s, gx_where(&s, n->in[1], gx_const(&s, g, 0.0), g));
  return gx_end(&s);
}

/* ---------------------------------------------------------------- unary */

/* gin[0] = g * d (d the local derivative, built by the caller in the same scope) */
static int unary_done(cf_gx *s, cf_tensor *g, cf_tensor *d, cf_tensor **gin) {
  gin[0] = gx_result(s, gx_op2(s, CF_OP_mul, g, d));
  return gx_end(s);
}

int cf_bwd_neg(cf_node *n, cf_tensor *g, cf_tensor **gin) {
  (void)n;
  cf_gx s = {0};
  gin[0] = gx_result(&s, gx_op1(&s, CF_OP_neg, g));
  return gx_end(&s);
}

int cf_bwd_exp(cf_node *n, cf_tensor *g, cf_tensor **gin) {
  cf_gx s = {0};
  return unary_done(&s, g, n->out, gin);
}

int cf_bwd_log(cf_node *n, cf_tensor *g, cf_tensor **gin) {
  cf_gx s = {0};
  gin[0] = gx_result(&s, gx_op2(&s, CF_OP_div, g, n->in[0]));
  return gx_end(&s);
}

/* d sqrt(x) = 0.5 / sqrt(x) */
int cf_bwd_sqrt(cf_node *n, cf_tensor *g, cf_tensor **gin) {
  cf_gx s = {0};
  gin[0] = gx_result(&s, gx_num(&s, CF_OP_mul, gx_op2(&s, CF_OP_div, g, n->out), 0.5));
  return gx_end(&s);
}

/* d x^-1/2 = -0.5 x^-3/2 = -0.5 * out / x */
int cf_bwd_rsqrt(cf_node *n, cf_tensor *g, cf_tensor **gin) {
  cf_gx s = {0};
  cf_tensor *d = gx_num(&s, CF_OP_mul, gx_op2(&s, CF_OP_div, n->out, n->in[0]), -0.5);
  return unary_done(&s, g, d, gin);
}

/* sign(x) with sign(0) = sign(NaN) = 0: c / |c| with c = clamp(x, -1, 1) is +-1 wherever x is
 * nonzero (infinities included) and NaN at 0 and NaN, where where() picks 0 */
int cf_bwd_abs(cf_node *n, cf_tensor *g, cf_tensor **gin) {
  cf_gx s = {0};
  cf_tensor *x = n->in[0], *zero = gx_const(&s, g, 0.0);
  cf_tensor *c = gx_clamp(&s, x, -1, 1);
  cf_tensor *sign = gx_where(&s, is_nan(&s, x), zero,
                             gx_where(&s, x, gx_op2(&s, CF_OP_div, c, gx_op1(&s, CF_OP_abs, c)), zero));
  return unary_done(&s, g, sign, gin);
}

/* passes where lo <= x <= hi: with lo <= hi, where the value was not clamped (out == x, bounds
 * included; not at NaN); with lo > hi nowhere (the output is hi everywhere, a constant). */
int cf_bwd_clamp(cf_node *n, cf_tensor *g, cf_tensor **gin) {
  cf_gx s = {0};
  cf_tensor *x = n->in[0];
  if (n->args.f[0] > n->args.f[1]) { /* both bounds given (an absent one is NaN) */
    gin[0] = cf_tensor_empty(x->ndim, x->shape, g->dtype, cf_tensor_device(x));
    return gin[0] ? 0 : -1;
  }
  cf_tensor *moved = differs(&s, n->out, x);
  gin[0] = gx_result(&s, gx_where(&s, moved, gx_const(&s, g, 0.0), g));
  return gx_end(&s);
}

/* d x*s(x) = s (1 + x (1 - s)) */
int cf_bwd_silu(cf_node *n, cf_tensor *g, cf_tensor **gin) {
  cf_gx s = {0};
  cf_tensor *x = n->in[0];
  cf_tensor *sg = gx_op1(&s, CF_OP_sigmoid, x);
  cf_tensor *t = gx_num(&s, CF_OP_add, gx_op2(&s, CF_OP_mul, x, one_minus(&s, sg)), 1.0);
  return unary_done(&s, g, gx_op2(&s, CF_OP_mul, sg, t), gin);
}

int cf_bwd_sigmoid(cf_node *n, cf_tensor *g, cf_tensor **gin) {
  cf_gx s = {0};
  return unary_done(&s, g, gx_op2(&s, CF_OP_mul, n->out, one_minus(&s, n->out)), gin);
}

int cf_bwd_tanh(cf_node *n, cf_tensor *g, cf_tensor **gin) {
  cf_gx s = {0};
  return unary_done(&s, g, one_minus(&s, gx_op2(&s, CF_OP_mul, n->out, n->out)), gin);
}

/* d gelu = Phi(x) + x phi(x), with Phi(x) = gelu(x) / x and phi(x) = exp(-x^2 / 2) / sqrt(2 pi):
 * no erf op is needed. Where |x| <= 2^-64, Phi(x) is 0.5 to double precision, and gelu(x) / x
 * would be 0 / 0 or, for subnormal x, gelu(x) rounded to few bits: take 0.5 there. */
int cf_bwd_gelu(cf_node *n, cf_tensor *g, cf_tensor **gin) {
  cf_gx s = {0};
  cf_tensor *x = n->in[0];
  cf_tensor *big = gx_op1(&s, CF_OP_relu, gx_num(&s, CF_OP_sub, gx_op1(&s, CF_OP_abs, x), 0x1p-64));
  cf_tensor *cdf = gx_where(&s, big, gx_op2(&s, CF_OP_div, n->out, x), gx_const(&s, g, 0.5));
  cf_tensor *pdf = gx_num(&s, CF_OP_mul,
                          gx_op1(&s, CF_OP_exp, gx_num(&s, CF_OP_mul, gx_op2(&s, CF_OP_mul, x, x), -0.5)),
                          0.39894228040143267794);
  cf_tensor *d = gx_op2(&s, CF_OP_add, cdf, gx_op2(&s, CF_OP_mul, x, pdf));
  return unary_done(&s, g, d, gin);
}

/* passes where out != 0, i.e. x > 0 */
int cf_bwd_relu(cf_node *n, cf_tensor *g, cf_tensor **gin) {
  cf_gx s = {0};
  gin[0] = gx_result(&s, gx_where(&s, n->out, g, gx_const(&s, g, 0.0)));
  return gx_end(&s);
}

/* d log(1 + x) = 1 / (1 + x) */
int cf_bwd_log1p(cf_node *n, cf_tensor *g, cf_tensor **gin) {
  cf_gx s = {0};
  gin[0] = gx_result(&s, gx_op2(&s, CF_OP_div, g, gx_num(&s, CF_OP_add, n->in[0], 1.0)));
  return gx_end(&s);
}

/* d (e^x - 1) = e^x = out + 1 */
int cf_bwd_expm1(cf_node *n, cf_tensor *g, cf_tensor **gin) {
  cf_gx s = {0};
  return unary_done(&s, g, gx_num(&s, CF_OP_add, n->out, 1.0), gin);
}

int cf_bwd_sin(cf_node *n, cf_tensor *g, cf_tensor **gin) {
  cf_gx s = {0};
  return unary_done(&s, g, gx_op1(&s, CF_OP_cos, n->in[0]), gin);
}

int cf_bwd_cos(cf_node *n, cf_tensor *g, cf_tensor **gin) {
  cf_gx s = {0};
  return unary_done(&s, g, gx_op1(&s, CF_OP_neg, gx_op1(&s, CF_OP_sin, n->in[0])), gin);
}
