/* grad_elementwise.c - backward rules of the elementwise ops (binary, where, masked_fill, unary).
 *
 * Rules are formulas over table ops (grad_expr.h), so they run on any device that has the
 * forward kernels. Binary rules return full-size gradients; the engine sums them down to each
 * input's shape. Masks are built from nonzero-ness (where treats nonzero as true), e.g. "x is the
 * maximum" is "x - out == 0".
 *
 * Conventions at non-differentiable points (documented in ops.def's docs):
 *   maximum/minimum  ties send half of the gradient to each input;
 *   abs              gradient 0 at 0;  relu: 0 at 0;
 *   clamp            the gradient passes where lo <= x <= hi (bounds included);
 *   pow              d/da is 0 where b == 0, d/db is 0 where a == 0.
 */
#include "grad_expr.h"

/* 1 - t */
static cf_tensor *one_minus(cf_gx *s, cf_tensor *t) {
  return gx_num(s, CF_OP_add, gx_op1(s, CF_OP_neg, t), 1.0);
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

/* maximum and minimum: the gradient goes to the input equal to the output, half each on ties */
static int minmax_bwd(cf_node *n, cf_tensor *g, cf_tensor **gin) {
  cf_gx s = {0};
  cf_tensor *a = n->in[0], *b = n->in[1], *out = n->out;
  cf_tensor *zero = gx_const(&s, g, 0.0);
  cf_tensor *half = gx_where(&s, gx_op2(&s, CF_OP_sub, a, b), gx_const(&s, g, 1.0), gx_const(&s, g, 0.5));
  cf_tensor *gh = gx_op2(&s, CF_OP_mul, g, half);
  if (n->needs[0]) gin[0] = gx_result(&s, gx_where(&s, gx_op2(&s, CF_OP_sub, a, out), zero, gh));
  if (n->needs[1]) gin[1] = gx_result(&s, gx_where(&s, gx_op2(&s, CF_OP_sub, b, out), zero, gh));
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

/* sign(x) with sign(0) = 0: x / |x| is NaN at 0, where() picks 0 there */
int cf_bwd_abs(cf_node *n, cf_tensor *g, cf_tensor **gin) {
  cf_gx s = {0};
  cf_tensor *x = n->in[0];
  cf_tensor *sign = gx_where(&s, x, gx_op2(&s, CF_OP_div, x, n->out), gx_const(&s, g, 0.0));
  return unary_done(&s, g, sign, gin);
}

/* passes where the value was not clamped (out == x, bounds included) */
int cf_bwd_clamp(cf_node *n, cf_tensor *g, cf_tensor **gin) {
  cf_gx s = {0};
  cf_tensor *moved = gx_op2(&s, CF_OP_sub, n->out, n->in[0]);
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

/* d gelu = Phi(x) + x phi(x), with Phi(x) = gelu(x) / x (0.5 at x = 0) and
 * phi(x) = exp(-x^2 / 2) / sqrt(2 pi): no erf op is needed */
int cf_bwd_gelu(cf_node *n, cf_tensor *g, cf_tensor **gin) {
  cf_gx s = {0};
  cf_tensor *x = n->in[0];
  cf_tensor *cdf = gx_where(&s, x, gx_op2(&s, CF_OP_div, n->out, x), gx_const(&s, g, 0.5));
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
