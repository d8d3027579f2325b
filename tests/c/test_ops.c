/* test_ops.c - the table-driven op test: every op in ops.def must have a test row (optest.h
 * format, rows in optest_*.inc). For each row and several random cases it checks the f64 and
 * f32 forward against the row's naive reference, that non-contiguous copies of the inputs give
 * the same result, and (f64) the gradient from cf_backward against central finite differences
 * (a non-contiguous seed; each input's gradient also with it alone requiring one).
 * A few hand-written checks follow: tie rules, infinities, error messages, the edge cases
 * where a CF_FULLWRITE kernel must write zeros itself (with poison on), the multi-threaded
 * path on large inputs. Run with CONFIT_POISON=1 (ctest does, as c.test_ops_poison) every
 * output of a CF_FULLWRITE op starts as NaN, so the rows also check that kernels write it all.
 *
 * Usage: test_ops [op-name]   (only that op's row). Prints one line per op and
 * "N passed, N failed"; exits 1 on any failure.
 */
#include "optest.h"
#include <time.h>

#include "optest_elementwise.inc"
#include "optest_nn.inc"
#include "optest_views.inc"

#include "check.h"

static const optest_row *const row_tables[] = {optest_elementwise_rows, optest_nn_rows, optest_views_rows};

static const optest_row *find_row(const char *name) {
  for (size_t t = 0; t < sizeof row_tables / sizeof *row_tables; t++)
    for (const optest_row *r = row_tables[t]; r->op; r++)
      if (strcmp(r->op, name) == 0) return r;
  return NULL;
}

/* The spec letter of tensor input k ('L' for every variadic input). */
static char input_letter(const char *spec, int k) {
  int idx = 0;
  for (const char *p = spec; *p; p++) {
    if (*p == 'L') return 'L';
    if (!strchr("TIMtim", *p)) continue;
    if (idx++ == k) return *p;
  }
  return '?';
}
static bool is_diff(const char *spec, int k) {
  char c = input_letter(spec, k);
  return c == 'T' || c == 't' || c == 'L';
}

static void case_free(optest_case *c) {
  for (int k = 0; k < c->nin; k++) cf_tensor_release(c->in[k]);
  memset(c, 0, sizeof *c);
}

/* A copy of c with the floating (T/t/L) inputs converted to dt; others shared. */
static int case_convert(const optest_case *c, const char *spec, cf_dtype dt, optest_case *o) {
  *o = *c;
  for (int k = 0; k < c->nin; k++) {
    cf_tensor *t = c->in[k];
    if (t && is_diff(spec, k) && t->dtype != dt) o->in[k] = cf_tensor_to_dtype(t, dt);
    else cf_tensor_retain(t);
    if (t && !o->in[k]) {
      for (int j = 0; j < k; j++) cf_tensor_release(o->in[j]);
      return -1;
    }
  }
  return 0;
}

/* Every input copied into a non-contiguous layout. */
static int case_noncontig(const optest_case *c, optest_case *o) {
  *o = *c;
  for (int k = 0; k < c->nin; k++) {
    o->in[k] = c->in[k] ? opt_noncontig(c->in[k]) : NULL;
    if (c->in[k] && !o->in[k]) {
      for (int j = 0; j < k; j++) cf_tensor_release(o->in[j]);
      return -1;
    }
  }
  return 0;
}

static bool close_to(double a, double b, double tol) {
  if (isnan(a) || isnan(b)) return isnan(a) && isnan(b);
  if (a == b) return true;
  return fabs(a - b) <= tol * (1 + fabs(b));
}

/* out vs want (same shape, values within tol by out's dtype); reports the first mismatch. */
static bool compare(const char *op, int k, const char *what, const cf_tensor *out,
                    const cf_tensor *want, double tol64, double tol32) {
  char b1[128], b2[128];
  if (!out || !want) {
    CHECK(false, "%s case %d %s: %s", op, k, what, out ? "reference failed" : cf_error_message());
    return false;
  }
  if (!cf_same_shape(out, want)) {
    CHECK(false, "%s case %d %s: shape %s, want %s", op, k, what, cf_shape_str(out, b1, sizeof b1),
          cf_shape_str(want, b2, sizeof b2));
    return false;
  }
  double tol = out->dtype == CF_DTYPE_F32 ? (tol32 ? tol32 : 1e-5) : (tol64 ? tol64 : 1e-12);
  if (!cf_dtype_is_float(out->dtype)) tol = 0;
  int64_t n = cf_tensor_numel(out);
  for (int64_t i = 0; i < n; i++) {
    double a = cf_tensor_get_flat(out, i), b = cf_tensor_get_flat(want, i);
    if (!close_to(a, b, tol)) {
      CHECK(false, "%s case %d %s: element %lld of %s is %.17g, want %.17g", op, k, what, (long long)i,
            cf_shape_str(out, b1, sizeof b1), a, b);
      return false;
    }
  }
  n_pass++;
  return true;
}

/* sum(y * R) in double */
static double dot_r(const cf_tensor *y, const cf_tensor *r) {
  double s = 0;
  int64_t n = cf_tensor_numel(y);
  for (int64_t i = 0; i < n; i++) s += cf_tensor_get_flat(y, i) * cf_tensor_get_flat(r, i);
  return s;
}

/* Finite-difference check of d sum(op(x) * R) / dx for every differentiable f64 input. An op
 * whose output is not f64 (to_dtype(f32)) is followed by a differentiable to_dtype(f64) so that
 * R and the sums stay in double; its finite differences then see f32 rounding: the step is
 * larger and the tolerance wider (for a linear op the error is about |R| * 2^-24 * |x| / eps).
 * *ran tells whether a gradient was compared at all (no differentiable f64 input: nothing). */
static bool grad_check(int id, const optest_row *row, cf_rng *g, int k, const optest_case *c, bool *ran) {
  const char *spec = cf_ops[id].spec, *op = row->op;
  double eps = 1e-6, atol = 1e-5, rtol = 1e-3;
  optest_case x = *c;
  bool ok = true, any = false;
  *ran = false;
  for (int j = 0; j < c->nin; j++) {
    x.in[j] = c->in[j] ? cf_tensor_clone(c->in[j]) : NULL;
    if (x.in[j] && is_diff(spec, j) && x.in[j]->dtype == CF_DTYPE_F64) {
      x.in[j]->requires_grad = true;
      any = true;
    }
  }
  if (!any) { case_free(&x); return true; }
  cf_set_grad_enabled(true);
  cf_tensor *out = cf_op((cf_op_id)id, x.in, x.nin, &x.args);
  cf_set_grad_enabled(false);
  if (!out) {
    CHECK(false, "%s case %d grad: forward failed: %s", op, k, cf_error_message());
    case_free(&x);
    return false;
  }
  if (out->dtype != CF_DTYPE_F64) { /* e.g. to_dtype(f32): back to f64 through autograd */
    if (!cf_dtype_is_float(out->dtype)) {
      CHECK(false, "%s case %d grad: output dtype %d is not a float", op, k, (int)out->dtype);
      cf_tensor_release(out);
      case_free(&x);
      return false;
    }
    cf_args a64 = cf_args_none();
    a64.i[0] = CF_DTYPE_F64;
    a64.ni = 1;
    cf_set_grad_enabled(true);
    cf_tensor *o64 = cf_op(CF_OP_to_dtype, &out, 1, &a64);
    cf_set_grad_enabled(false);
    cf_tensor_release(out);
    out = o64;
    if (!out) {
      CHECK(false, "%s case %d grad: to_dtype(f64) of the output failed: %s", op, k, cf_error_message());
      case_free(&x);
      return false;
    }
    eps = 1e-2;
    atol = 1e-4;
  }
  cf_tensor *r = cf_tensor_randn(out->ndim, out->shape, CF_DTYPE_F64, g);
  /* the seed in a non-contiguous layout: the op's backward gets a strided output gradient, as
   * it does below a transpose or a narrow */
  cf_tensor *seed = r ? opt_noncontig(r) : NULL;
  int rc = !seed ? -1 : out->requires_grad ? cf_backward(out, seed, false) : 0;
  if (rc) {
    CHECK(false, "%s case %d grad: backward failed: %s", op, k, cf_error_message());
    ok = false;
  }
  cf_tensor_release(out);
  for (int j = 0; j < c->nin && ok; j++) {
    cf_tensor *t = x.in[j];
    if (!t || !t->requires_grad) continue;
    cf_tensor *gr = t->grad;
    if (gr && !cf_same_shape(gr, t)) {
      char b1[128], b2[128];
      CHECK(false, "%s case %d grad of input %d: shape %s, want %s", op, k, j + 1,
            cf_shape_str(gr, b1, sizeof b1), cf_shape_str(t, b2, sizeof b2));
      ok = false;
      break;
    }
    int64_t n = cf_tensor_numel(t);
    for (int64_t i = 0; i < n && ok; i++) {
      double v = cf_tensor_get_flat(t, i), f[2];
      for (int s = 0; s < 2; s++) {
        opt_set_flat(t, i, v + (s ? -eps : eps));
        cf_tensor *y = cf_op((cf_op_id)id, x.in, x.nin, &x.args);
        f[s] = y ? dot_r(y, r) : NAN;
        cf_tensor_release(y);
      }
      opt_set_flat(t, i, v);
      double num = (f[0] - f[1]) / (2 * eps), ana = gr ? cf_tensor_get_flat(gr, i) : 0;
      if (!(fabs(ana - num) <= atol + rtol * fabs(num))) {
        CHECK(false, "%s case %d grad of input %d element %lld: analytic %.10g, numeric %.10g", op, k,
              j + 1, (long long)i, ana, num);
        ok = false;
      }
    }
  }
  /* each differentiable input alone: the gradient it gets when no other input needs one is the
   * one above (a fused kernel must not compute an input's gradient only beside another's) */
  int ndiff = 0;
  for (int j = 0; j < c->nin; j++) ndiff += x.in[j] && x.in[j]->requires_grad;
  for (int j = 0; j < c->nin && ok && ndiff > 1; j++) {
    cf_tensor *t = x.in[j];
    if (!t || !t->requires_grad) continue;
    cf_tensor *want = t->grad;
    t->grad = NULL;
    for (int i = 0; i < c->nin; i++)
      if (x.in[i] && i != j) x.in[i]->requires_grad = false;
    cf_set_grad_enabled(true);
    cf_tensor *y = cf_op((cf_op_id)id, x.in, x.nin, &x.args);
    if (y && y->dtype != CF_DTYPE_F64) {
      cf_args a64 = cf_args_none();
      a64.i[0] = CF_DTYPE_F64;
      a64.ni = 1;
      cf_tensor *y64 = cf_op(CF_OP_to_dtype, &y, 1, &a64);
      cf_tensor_release(y);
      y = y64;
    }
    cf_set_grad_enabled(false);
    if (!y || (y->requires_grad && cf_backward(y, seed, false))) {
      CHECK(false, "%s case %d grad of input %d alone: %s", op, k, j + 1, cf_error_message());
      ok = false;
    }
    for (int64_t i = 0; ok && i < cf_tensor_numel(t); i++) {
      double a = want ? cf_tensor_get_flat(want, i) : 0, b = t->grad ? cf_tensor_get_flat(t->grad, i) : 0;
      if (!(fabs(a - b) <= 1e-12 * (1 + fabs(a)))) {
        CHECK(false, "%s case %d grad of input %d element %lld: %.17g with every input needing a gradient, "
              "%.17g when it alone does", op, k, j + 1, (long long)i, a, b);
        ok = false;
      }
    }
    cf_tensor_release(y);
    cf_tensor_release(want);
    for (int i = 0; i < c->nin; i++)
      if (x.in[i] && is_diff(spec, i) && x.in[i]->dtype == CF_DTYPE_F64) x.in[i]->requires_grad = true;
  }
  if (ok) n_pass++;
  *ran = true;
  cf_tensor_release(r);
  cf_tensor_release(seed);
  case_free(&x);
  return ok;
}

static int run_row(int id, const optest_row *row) {
  const char *spec = cf_ops[id].spec, *op = row->op;
  int ncases = row->ncases ? row->ncases : OPT_CASES, good = 0, grads = 0;
  uint64_t seed = 1000;
  for (const char *p = op; *p; p++) seed = seed * 131 + (uint64_t)*p;
  cf_rng g;
  cf_rng_init(&g, seed);
  for (int k = 0; k < ncases; k++) {
    optest_case c;
    memset(&c, 0, sizeof c);
    if (row->gen(&g, k, &c)) {
      CHECK(false, "%s case %d: generator failed: %s", op, k, cf_error_message());
      case_free(&c);
      continue;
    }
    bool ok = true;
    cf_set_grad_enabled(false);
    /* (1) f64 forward */
    cf_tensor *want = row->ref(&c);
    cf_tensor *out = cf_op((cf_op_id)id, c.in, c.nin, &c.args);
    ok &= compare(op, k, "f64 forward", out, want, row->tol64, row->tol32);
    /* (1b) f32 forward against the reference on the f32-rounded inputs */
    if (!(row->flags & OPT_NO_F32)) {
      optest_case c32, c32d;
      if (case_convert(&c, spec, CF_DTYPE_F32, &c32) == 0) {
        if (case_convert(&c32, spec, CF_DTYPE_F64, &c32d) == 0) {
          cf_tensor *want32 = row->ref(&c32d);
          cf_tensor *out32 = cf_op((cf_op_id)id, c32.in, c32.nin, &c32.args);
          ok &= compare(op, k, "f32 forward", out32, want32, row->tol64, row->tol32);
          cf_tensor_release(want32);
          cf_tensor_release(out32);
          case_free(&c32d);
        }
        case_free(&c32);
      } else {
        CHECK(false, "%s case %d: f32 conversion failed: %s", op, k, cf_error_message());
        ok = false;
      }
    }
    /* (2) non-contiguous inputs */
    if (!(row->flags & OPT_NO_NONCONTIG) && out) {
      optest_case nc;
      if (case_noncontig(&c, &nc) == 0) {
        cf_tensor *outnc = cf_op((cf_op_id)id, nc.in, nc.nin, &nc.args);
        ok &= compare(op, k, "non-contiguous", outnc, out, 1e-12, 1e-12);
        cf_tensor_release(outnc);
        case_free(&nc);
      }
    }
    cf_tensor_release(want);
    cf_tensor_release(out);
    /* (3) gradient */
    if (!(row->flags & OPT_NOGRAD) && !(cf_ops[id].flags & CF_NOGRAD) && !c.no_grad) {
      bool ran;
      ok &= grad_check(id, row, &g, k, &c, &ran);
      grads += ran;
    }
    cf_set_grad_enabled(true);
    case_free(&c);
    good += ok;
  }
  printf("%-14s %d/%d cases ok (%d with a gradient check)\n", op, good, ncases, grads);
  return good == ncases ? 0 : -1;
}

/* ---------------------------------------------------------------- hand-written checks */

static cf_tensor *vec(int n, const double *v, cf_dtype dt) {
  int64_t shape[1] = {n};
  cf_tensor *t = cf_tensor_zeros(1, shape, dt);
  for (int64_t i = 0; i < n; i++) cf_tensor_set(t, &i, v[i]);
  return t;
}

static bool vec_is(const cf_tensor *t, int n, const double *v) {
  if (!t || cf_tensor_numel(t) != n) return false;
  for (int64_t i = 0; i < n; i++) {
    double a = cf_tensor_get_flat(t, i);
    if (!(a == v[i] || (isnan(a) && isnan(v[i])))) return false;
  }
  return true;
}

static void check_ties(void) {
  /* max over all: gradient to the first maximum; argmax picks it */
  double xv[5] = {1, 3, 3, 2, 3};
  cf_tensor *x = vec(5, xv, CF_DTYPE_F64);
  x->requires_grad = true;
  cf_tensor *m = cf_op_dim(CF_OP_max, x, CF_DIM_ALL, false);
  CHECK(m && cf_tensor_get_flat(m, 0) == 3, "max of a tie");
  CHECK(m && cf_backward(m, NULL, false) == 0, "max backward: %s", cf_error_message());
  double gw[5] = {0, 1, 0, 0, 0};
  CHECK(vec_is(x->grad, 5, gw), "max: gradient goes to the first maximum only");
  cf_tensor *am = cf_op_dim(CF_OP_argmax, x, 0, false);
  CHECK(am && am->dtype == CF_DTYPE_I64 && cf_tensor_get_flat(am, 0) == 1, "argmax picks the first maximum");
  cf_tensor_release(am);
  cf_tensor_release(m);
  cf_tensor_release(x);

  /* maximum / minimum: ties split the gradient half/half */
  double av[3] = {1, 2, 5}, bv[3] = {1, 3, 4};
  for (int mn = 0; mn < 2; mn++) {
    cf_tensor *a = vec(3, av, CF_DTYPE_F64), *b = vec(3, bv, CF_DTYPE_F64);
    a->requires_grad = b->requires_grad = true;
    cf_tensor *y = cf_op2(mn ? CF_OP_minimum : CF_OP_maximum, a, b);
    cf_tensor *s = cf_op_dim(CF_OP_sum, y, CF_DIM_ALL, false);
    CHECK(s && cf_backward(s, NULL, false) == 0, "maximum/minimum backward");
    double ga_max[3] = {0.5, 0, 1}, gb_max[3] = {0.5, 1, 0};
    double ga_min[3] = {0.5, 1, 0}, gb_min[3] = {0.5, 0, 1};
    CHECK(vec_is(a->grad, 3, mn ? ga_min : ga_max) && vec_is(b->grad, 3, mn ? gb_min : gb_max),
          "%s: ties send half the gradient to each input", mn ? "minimum" : "maximum");
    cf_tensor_release(s);
    cf_tensor_release(y);
    cf_tensor_release(a);
    cf_tensor_release(b);
  }

  /* abs and relu at 0: gradient 0; clamp at a bound: passes */
  double zv[3] = {0, -1, 2};
  cf_tensor *z = vec(3, zv, CF_DTYPE_F64);
  z->requires_grad = true;
  cf_tensor *az = cf_op1(CF_OP_abs, z), *rz = cf_op1(CF_OP_relu, z);
  cf_tensor *t = cf_op2(CF_OP_add, az, rz);
  cf_tensor *s = cf_op_dim(CF_OP_sum, t, CF_DIM_ALL, false);
  CHECK(s && cf_backward(s, NULL, false) == 0, "abs+relu backward");
  double gz[3] = {0, -1, 2};
  CHECK(vec_is(z->grad, 3, gz), "abs and relu have gradient 0 at 0");
  cf_tensor_release(s); cf_tensor_release(t); cf_tensor_release(az); cf_tensor_release(rz);
  cf_tensor_release(z);
}

/* The ops added for user code: min/argmin ties, comparisons at NaN and infinities and across
 * dtypes, log1p/expm1 near 0 (a naive log(1 + x) keeps no digits of x = 1e-10), cumsum's
 * reverse gradient, sign at 0. */
static void check_new_ops(void) {
  double xv[5] = {2, -1, 4, -1, 3};
  cf_tensor *x = vec(5, xv, CF_DTYPE_F64);
  x->requires_grad = true;
  cf_tensor *m = cf_op_dim(CF_OP_min, x, CF_DIM_ALL, false);
  CHECK(m && cf_tensor_get_flat(m, 0) == -1, "min of a tie");
  CHECK(m && cf_backward(m, NULL, false) == 0, "min backward: %s", cf_error_message());
  double gw[5] = {0, 1, 0, 0, 0};
  CHECK(vec_is(x->grad, 5, gw), "min: gradient goes to the first minimum only");
  cf_tensor *am = cf_op_dim(CF_OP_argmin, x, 0, false);
  CHECK(am && am->dtype == CF_DTYPE_I64 && cf_tensor_get_flat(am, 0) == 1, "argmin picks the first minimum");
  cf_tensor_release(am);
  cf_tensor_release(m);
  cf_tensor_release(x);
  double nv[4] = {1, NAN, -5, NAN};
  cf_tensor *xn = vec(4, nv, CF_DTYPE_F32);
  cf_tensor *mn = cf_op_dim(CF_OP_min, xn, 0, false), *amn = cf_op_dim(CF_OP_argmin, xn, 0, false);
  CHECK(mn && isnan(cf_tensor_get_flat(mn, 0)) && amn && cf_tensor_get_flat(amn, 0) == 1,
        "min propagates NaN; argmin points at the first NaN");
  cf_tensor_release(mn); cf_tensor_release(amn); cf_tensor_release(xn);

  double av[5] = {NAN, INFINITY, -INFINITY, 1, 2}, bv[5] = {NAN, INFINITY, 0, 1, 3};
  cf_tensor *a = vec(5, av, CF_DTYPE_F32), *b = vec(5, bv, CF_DTYPE_F64);
  struct { cf_op_id id; double want[5]; } cases[] = {
    {CF_OP_eq, {0, 1, 0, 1, 0}}, {CF_OP_ne, {1, 0, 1, 0, 1}}, {CF_OP_lt, {0, 0, 1, 0, 1}},
    {CF_OP_le, {0, 1, 1, 1, 1}}, {CF_OP_gt, {0, 0, 0, 0, 0}}, {CF_OP_ge, {0, 1, 0, 1, 0}},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    cf_tensor *r = cf_op2(cases[i].id, a, b);
    CHECK(r && r->dtype == CF_DTYPE_F32 && vec_is(r, 5, cases[i].want) && !r->requires_grad,
          "%s of f32 and f64 at NaN, inf and ties: 0/1 in a's dtype, no gradient (%s)",
          cf_ops[cases[i].id].name, r ? "" : cf_error_message());
    cf_tensor_release(r);
  }
  cf_tensor_release(a);
  cf_tensor_release(b);
  int64_t one = 1;
  cf_tensor *ids = cf_tensor_zeros(1, &one, CF_DTYPE_I64);
  ((int64_t *)ids->storage->data)[0] = ((int64_t)1 << 53) + 1; /* not a double: compared as 2^53 */
  cf_tensor *big = cf_tensor_scalar(9007199254740992.0, CF_DTYPE_F64);
  cf_tensor *eq = cf_op2(CF_OP_eq, ids, big);
  CHECK(eq && eq->dtype == CF_DTYPE_F32 && cf_tensor_get_flat(eq, 0) == 1,
        "eq of an integer tensor gives f32 (ids compare as doubles)");
  cf_tensor_release(eq); cf_tensor_release(big); cf_tensor_release(ids);

  for (int dt = 0; dt < 2; dt++) {
    double tiny = dt ? 1e-10 : 1e-6;
    double tv[2] = {tiny, -tiny};
    cf_tensor *t = vec(2, tv, dt ? CF_DTYPE_F64 : CF_DTYPE_F32);
    cf_tensor *l = cf_op1(CF_OP_log1p, t), *e = cf_op1(CF_OP_expm1, t);
    double rel = dt ? 1e-14 : 1e-6;
    bool ok = l && e;
    for (int64_t i = 0; ok && i < 2; i++) {
      double v = (dt ? tv[i] : (double)(float)tv[i]);
      ok &= fabs(cf_tensor_get_flat(l, i) - (v - v * v / 2)) <= rel * fabs(v);
      ok &= fabs(cf_tensor_get_flat(e, i) - (v + v * v / 2)) <= rel * fabs(v);
    }
    CHECK(ok, "%s log1p/expm1 keep the digits of a tiny x", dt ? "f64" : "f32");
    cf_tensor_release(l); cf_tensor_release(e); cf_tensor_release(t);
  }

  double cv[4] = {1, 2, 3, 4};
  cf_tensor *c = vec(4, cv, CF_DTYPE_F64);
  c->requires_grad = true;
  cf_args ra = cf_args_none();
  ra.i[0] = 0;
  ra.i[1] = 1;
  ra.ni = 2;
  cf_tensor *rc = cf_op(CF_OP_cumsum, &c, 1, &ra);
  double rcw[4] = {10, 9, 7, 4};
  CHECK(vec_is(rc, 4, rcw), "reverse cumsum sums from the end");
  double wv[4] = {1, 10, 100, 1000};
  cf_tensor *w = vec(4, wv, CF_DTYPE_F64);
  CHECK(rc && cf_backward(rc, w, false) == 0, "reverse cumsum backward: %s", cf_error_message());
  double gc[4] = {1, 11, 111, 1111};
  CHECK(vec_is(c->grad, 4, gc), "reverse cumsum's gradient is the forward cumsum of the seed");
  cf_tensor_release(w); cf_tensor_release(rc); cf_tensor_release(c);

  /* sort: NaN the largest, ties stable both ways (the -0 and 0 tie too) */
  double ov[6] = {2, NAN, -0.0, 1, 0, 2};
  cf_tensor *xo = vec(6, ov, CF_DTYPE_F32);
  for (int desc = 0; desc < 2; desc++) {
    cf_args sa = cf_args_none();
    sa.i[0] = 0;
    sa.i[1] = desc;
    sa.ni = 2;
    cf_tensor *sv_ = cf_op(CF_OP_sort, &xo, 1, &sa), *si = cf_op(CF_OP_argsort, &xo, 1, &sa);
    double want_v[2][6] = {{-0.0, 0, 1, 2, 2, NAN}, {NAN, 2, 2, 1, -0.0, 0}};
    double want_i[2][6] = {{2, 4, 3, 0, 5, 1}, {1, 0, 5, 3, 2, 4}};
    CHECK(vec_is(sv_, 6, want_v[desc]) && vec_is(si, 6, want_i[desc]) && si->dtype == CF_DTYPE_I64,
          "%s sort/argsort: NaN the largest, ties in their order", desc ? "descending" : "ascending");
    CHECK(sv_ && signbit(cf_tensor_get_flat(sv_, desc ? 4 : 0)), "sort keeps -0 before the 0 that follows it");
    cf_tensor_release(sv_); cf_tensor_release(si);
  }
  cf_tensor_release(xo);

  double sv[4] = {0, -0.0, -3, INFINITY};
  cf_tensor *sx = vec(4, sv, CF_DTYPE_F64);
  cf_tensor *sg = cf_op1(CF_OP_sign, sx);
  double sw[4] = {0, 0, -1, 1};
  CHECK(vec_is(sg, 4, sw), "sign at 0, -0, negative and +inf");
  cf_tensor_release(sg); cf_tensor_release(sx);
}

static void check_infinities(void) {
  double v[3] = {-INFINITY, -INFINITY, -INFINITY};
  for (int dt = 0; dt < 2; dt++) {
    cf_tensor *x = vec(3, v, dt ? CF_DTYPE_F64 : CF_DTYPE_F32);
    cf_tensor *l = cf_op_dim(CF_OP_logsumexp, x, 0, false);
    cf_tensor *sm = cf_op_dim(CF_OP_softmax, x, 0, false);
    cf_tensor *ls = cf_op_dim(CF_OP_log_softmax, x, 0, false);
    double zeros[3] = {0, 0, 0};
    CHECK(l && cf_tensor_get_flat(l, 0) == -INFINITY, "logsumexp of all -inf is -inf");
    CHECK(vec_is(sm, 3, zeros), "softmax of an all -inf row is 0 (no NaN)");
    CHECK(vec_is(ls, 3, v), "log_softmax of an all -inf row is -inf (no NaN)");
    cf_tensor_release(l); cf_tensor_release(sm); cf_tensor_release(ls); cf_tensor_release(x);
  }
  /* a row holding +inf: logsumexp is +inf (as PyTorch), not inf - inf = NaN */
  double pv[3] = {INFINITY, 1, -INFINITY};
  for (int dt = 0; dt < 2; dt++) {
    cf_tensor *x = vec(3, pv, dt ? CF_DTYPE_F64 : CF_DTYPE_F32);
    cf_tensor *l = cf_op_dim(CF_OP_logsumexp, x, 0, false);
    CHECK(l && cf_tensor_get_flat(l, 0) == INFINITY, "%s logsumexp of a row with +inf is +inf: %g",
          dt ? "f64" : "f32", l ? cf_tensor_get_flat(l, 0) : NAN);
    cf_tensor_release(l); cf_tensor_release(x);
  }
  /* large values: stable */
  double big[2] = {1000, 1000};
  cf_tensor *x = vec(2, big, CF_DTYPE_F32);
  cf_tensor *l = cf_op_dim(CF_OP_logsumexp, x, 0, false);
  cf_tensor *sm = cf_op_dim(CF_OP_softmax, x, 0, false);
  double half[2] = {0.5, 0.5};
  CHECK(l && fabs(cf_tensor_get_flat(l, 0) - (1000 + log(2.0))) < 1e-3, "logsumexp(1000, 1000) is stable");
  CHECK(vec_is(sm, 2, half), "softmax(1000, 1000) = 0.5, 0.5");
  cf_tensor_release(l); cf_tensor_release(sm); cf_tensor_release(x);
  /* mean over an empty dim is NaN; max over it is an error */
  int64_t shape[2] = {2, 0};
  cf_tensor *e = cf_tensor_zeros(2, shape, CF_DTYPE_F32);
  cf_tensor *me = cf_op_dim(CF_OP_mean, e, 1, false);
  CHECK(me && cf_tensor_numel(me) == 2 && isnan(cf_tensor_get_flat(me, 0)), "mean over an empty dim is NaN");
  cf_tensor *mx = cf_op_dim(CF_OP_max, e, 1, false);
  CHECK(!mx && strstr(cf_error_message(), "max: reduction over an empty dim of [2 x 0]"),
        "max over an empty dim fails: %s", cf_error_message());
  cf_tensor_release(me); cf_tensor_release(e);
}

/* var from C without its unbiased flag (two int args, as cf_op_dim gives): unbiased, the
 * default of the "c" letter, in the forward and the backward alike */
static void check_var_default(void) {
  double xv[3] = {1, 2, 4};
  cf_tensor *x = vec(3, xv, CF_DTYPE_F64);
  x->requires_grad = true;
  cf_tensor *v = cf_op_dim(CF_OP_var, x, 0, false);
  CHECK(v && fabs(cf_tensor_get_flat(v, 0) - 7.0 / 3) < 1e-15, "var without the flag is unbiased: %g",
        v ? cf_tensor_get_flat(v, 0) : NAN);
  CHECK(v && cf_backward(v, NULL, false) == 0, "var backward: %s", cf_error_message());
  double gw[3] = {-4.0 / 3, -1.0 / 3, 5.0 / 3};  /* 2 (x - mean) / (n - 1) */
  bool ok = x->grad != NULL;
  for (int64_t i = 0; ok && i < 3; i++) ok = fabs(cf_tensor_get_flat(x->grad, i) - gw[i]) < 1e-15;
  CHECK(ok, "var's gradient without the flag is the unbiased one");
  cf_tensor_release(v);
  cf_tensor_release(x);
}

static void check_errors(void) {
  int64_t s23[2] = {2, 3}, s4[1] = {4}, s32[2] = {3, 2};
  cf_tensor *a = cf_tensor_zeros(2, s23, CF_DTYPE_F32), *b = cf_tensor_zeros(1, s4, CF_DTYPE_F32);
  cf_tensor *r = cf_op2(CF_OP_add, a, b);
  CHECK(!r && strstr(cf_error_message(), "add: shapes [2 x 3] and [4] do not broadcast"),
        "broadcast error names op and shapes: %s", cf_error_message());
  cf_tensor *h = cf_tensor_zeros(2, s23, CF_DTYPE_BF16);
  r = cf_op2(CF_OP_mul, h, h);
  CHECK(!r && strstr(cf_error_message(), "mul: bf16 compute is GPU-only; convert with to_dtype"),
        "bf16 error: %s", cf_error_message());
  r = cf_op_dim(CF_OP_softmax, h, 1, false);
  CHECK(!r && strstr(cf_error_message(), "softmax: bf16 compute is GPU-only"), "bf16 softmax error: %s",
        cf_error_message());
  r = cf_op_dim(CF_OP_sum, a, 2, false);
  CHECK(!r && strstr(cf_error_message(), "sum: dim 3 out of range for a 2-d tensor [2 x 3]"),
        "dim error: %s", cf_error_message());
  cf_tensor *m = cf_tensor_zeros(2, s32, CF_DTYPE_I64);
  cf_args args = cf_args_none();
  args.f[0] = 1;
  args.nf = 1;
  cf_tensor *in[2] = {a, m};
  r = cf_op(CF_OP_masked_fill, in, 2, &args);
  CHECK(!r && strstr(cf_error_message(), "masked_fill: mask [3 x 2] does not broadcast to the tensor [2 x 3]"),
        "masked_fill error: %s", cf_error_message());
  cf_tensor *d = cf_tensor_zeros(2, s23, CF_DTYPE_F64);
  r = cf_op2(CF_OP_sub, a, d);
  CHECK(!r && strstr(cf_error_message(), "sub: dtypes differ: f32 and f64"), "dtype error: %s",
        cf_error_message());
  cf_tensor_release(a); cf_tensor_release(b); cf_tensor_release(h); cf_tensor_release(m);
  cf_tensor_release(d);
}

/* Edge cases where a CF_FULLWRITE kernel must write zeros (or NaN, -inf) itself rather than
 * rely on a zero-filled output, checked with poison on (an unwritten element would be NaN). */
static bool all_eq(const cf_tensor *t, int64_t n, double v) {
  if (!t || cf_tensor_numel(t) != n) return false;
  for (int64_t i = 0; i < n; i++) {
    double a = cf_tensor_get_flat(t, i);
    if (!(a == v || (isnan(a) && isnan(v)))) return false;
  }
  return true;
}

static void check_fullwrite_edges(void) {
  bool was = cf_set_poison(true);
  for (int dti = 0; dti < 2; dti++) {
    cf_dtype dt = dti ? CF_DTYPE_F64 : CF_DTYPE_F32;
    const char *dn = cf_dtype_name(dt);
    /* matmul with k = 0: an empty sum */
    int64_t s20[2] = {2, 0}, s03[2] = {0, 3}, s320[3] = {3, 2, 0};
    cf_tensor *a = cf_tensor_zeros(2, s20, dt), *b = cf_tensor_zeros(2, s03, dt);
    cf_tensor *ab = cf_op2(CF_OP_matmul, a, b);
    CHECK(all_eq(ab, 6, 0), "%s matmul [2 x 0] @ [0 x 3] is zeros: %s", dn, ab ? "" : cf_error_message());
    cf_tensor *a3 = cf_tensor_zeros(3, s320, dt);
    cf_tensor *ab3 = cf_op2(CF_OP_matmul, a3, b);
    CHECK(all_eq(ab3, 18, 0), "%s batched matmul with k = 0 is zeros", dn);
    /* reductions over an empty dim */
    cf_tensor *su = cf_op_dim(CF_OP_sum, a, 1, false), *sa = cf_op_dim(CF_OP_sum, a, CF_DIM_ALL, false);
    cf_tensor *ls = cf_op_dim(CF_OP_logsumexp, a, 1, true);
    CHECK(all_eq(su, 2, 0) && all_eq(sa, 1, 0), "%s sum over an empty dim is 0", dn);
    CHECK(all_eq(ls, 2, -INFINITY), "%s logsumexp over an empty dim is -inf", dn);
    /* entropy with no classes */
    cf_args fa = cf_args_none();
    fa.f[0] = NAN;
    fa.nf = 1;
    cf_tensor *in1[1] = {a3};
    cf_tensor *en = cf_op(CF_OP_entropy, in1, 1, &fa);
    CHECK(all_eq(en, 6, 0), "%s entropy over 0 classes is 0: %s", dn, en ? "" : cf_error_message());
    /* cat with an empty piece */
    int64_t s23[2] = {2, 3};
    cf_tensor *o23 = cf_tensor_full(2, s23, dt, 1.5);
    cf_tensor *parts[2] = {a, o23};
    cf_args ca = cf_args_none();
    ca.i[0] = 1;
    ca.ni = 1;
    cf_tensor *ct = cf_op(CF_OP_cat, parts, 2, &ca);
    CHECK(all_eq(ct, 6, 1.5), "%s cat with an empty piece", dn);
    cf_tensor_release(a); cf_tensor_release(b); cf_tensor_release(ab); cf_tensor_release(a3);
    cf_tensor_release(ab3); cf_tensor_release(su); cf_tensor_release(sa); cf_tensor_release(ls);
    cf_tensor_release(en); cf_tensor_release(o23); cf_tensor_release(ct);

    /* attention: no keys at all, and a query row whose keys are all masked */
    int64_t qs[4] = {1, 2, 2, 3}, k0[4] = {1, 1, 0, 3}, ks[4] = {1, 1, 3, 3}, ms[2] = {2, 3};
    cf_tensor *q = cf_tensor_full(4, qs, dt, 0.5), *ke = cf_tensor_zeros(4, k0, dt);
    cf_tensor *k = cf_tensor_full(4, ks, dt, 0.25), *v = cf_tensor_full(4, ks, dt, 2.0);
    cf_tensor *m = cf_tensor_zeros(2, ms, CF_DTYPE_I32);
    for (int64_t j = 3; j < 6; j++) ((int32_t *)m->storage->data)[j] = 1; /* row 0 sees nothing */
    cf_args aa = cf_args_none();
    aa.f[0] = NAN;
    aa.nf = 1;
    aa.i[0] = 0;
    aa.ni = 1;
    cf_tensor *ain[4] = {q, ke, ke, NULL};
    cf_tensor *at0 = cf_op(CF_OP_attention, ain, 4, &aa);
    CHECK(all_eq(at0, 12, 0), "%s attention with no keys is zeros: %s", dn, at0 ? "" : cf_error_message());
    cf_tensor *ain2[4] = {q, k, v, m};
    cf_tensor *at1 = cf_op(CF_OP_attention, ain2, 4, &aa);
    bool rows_ok = at1 != NULL;
    for (int64_t i = 0; at1 && i < 12; i++) {
      double x = cf_tensor_get_flat(at1, i);
      rows_ok &= (i / 3) % 2 == 0 ? x == 0 : fabs(x - 2.0) < 1e-6; /* query row 0 of each head */
    }
    CHECK(rows_ok, "%s attention: a fully masked query row gives zeros", dn);
    cf_tensor_release(q); cf_tensor_release(ke); cf_tensor_release(k); cf_tensor_release(v);
    cf_tensor_release(m); cf_tensor_release(at0); cf_tensor_release(at1);

    /* ignored targets (< 0) give 0; a loss over no rows is 0 */
    int64_t s34[2] = {3, 4}, s3[1] = {3}, s04[2] = {0, 4}, s0[1] = {0}, s32[2] = {3, 2}, s42[2] = {4, 2};
    cf_tensor *z = cf_tensor_full(2, s34, dt, 0.5), *tg = cf_tensor_zeros(1, s3, CF_DTYPE_I64);
    ((int64_t *)tg->storage->data)[0] = -1;
    ((int64_t *)tg->storage->data)[1] = 2;
    ((int64_t *)tg->storage->data)[2] = -1;
    cf_tensor *tin[2] = {z, tg};
    cf_tensor *tl = cf_op(CF_OP_token_logprob, tin, 2, &fa);
    CHECK(tl && cf_tensor_get_flat(tl, 0) == 0 && cf_tensor_get_flat(tl, 2) == 0 &&
              fabs(cf_tensor_get_flat(tl, 1) + log(4.0)) < 1e-6,
          "%s token_logprob is 0 at ignored targets", dn);
    cf_tensor *h = cf_tensor_full(2, s32, dt, 0.1), *w = cf_tensor_full(2, s42, dt, 0.2);
    cf_tensor *hin[3] = {h, w, tg};
    cf_tensor *hl = cf_op(CF_OP_head_logprob, hin, 3, &fa);
    CHECK(hl && cf_tensor_get_flat(hl, 0) == 0 && cf_tensor_get_flat(hl, 2) == 0 &&
              fabs(cf_tensor_get_flat(hl, 1) + log(4.0)) < 1e-6,
          "%s head_logprob is 0 at ignored targets", dn);
    cf_tensor *z0 = cf_tensor_zeros(2, s04, dt), *t0 = cf_tensor_zeros(1, s0, CF_DTYPE_I64);
    cf_tensor *cin[2] = {z0, t0};
    cf_tensor *ce = cf_op(CF_OP_cross_entropy, cin, 2, NULL);
    CHECK(all_eq(ce, 1, 0), "%s cross_entropy over no rows is 0", dn);
    ((int64_t *)tg->storage->data)[1] = -1;
    cf_tensor *ce2 = cf_op(CF_OP_cross_entropy, tin, 2, NULL);
    CHECK(all_eq(ce2, 1, 0), "%s cross_entropy with every target ignored is 0", dn);
    cf_tensor_release(z); cf_tensor_release(tg); cf_tensor_release(tl); cf_tensor_release(h);
    cf_tensor_release(w); cf_tensor_release(hl); cf_tensor_release(z0); cf_tensor_release(t0);
    cf_tensor_release(ce); cf_tensor_release(ce2);
  }
  cf_set_poison(was);
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Inputs past the OpenMP threshold and the iterator's chunk size, checked against plain loops;
 * prints the time per op. */
static void check_large(void) {
  cf_rng g;
  cf_rng_init(&g, 7);
  int64_t sx[2] = {1000, 1000}, sb[2] = {1, 1000};
  cf_tensor *x = cf_tensor_randn(2, sx, CF_DTYPE_F32, &g), *b = cf_tensor_randn(2, sb, CF_DTYPE_F32, &g);
  cf_tensor *xt = cf_view_transpose(x, 0, 1);
  double t0 = now();
  cf_tensor *y = cf_op2(CF_OP_add, x, b);
  double t1 = now();
  cf_tensor *yt = cf_op2(CF_OP_mul, xt, b);
  double t2 = now();
  cf_tensor *s = cf_op_dim(CF_OP_sum, x, 1, false);
  double t3 = now();
  cf_tensor *sm = cf_op_dim(CF_OP_softmax, x, 1, false);
  double t4 = now();
  bool ok = y && yt && s && sm;
  const float *xp = x->storage->data, *bp = b->storage->data;
  for (int64_t i = 0; ok && i < 1000; i++) {
    double acc = 0;
    for (int64_t j = 0; j < 1000; j++) {
      float v = xp[i * 1000 + j];
      acc += v;
      if (((float *)y->storage->data)[i * 1000 + j] != v + bp[j]) ok = false;
      if (((float *)yt->storage->data)[j * 1000 + i] != v * bp[i]) ok = false;
    }
    if (fabs(((float *)s->storage->data)[i] - acc) > 1e-4 * (1 + fabs(acc))) ok = false;
  }
  CHECK(ok, "large add/mul (broadcast, transposed) and sum match plain loops");
  /* softmax (the multi-threaded path at this size) against a plain loop in double; f32 rounds
   * the result: relative 1e-5 (the row tests' tol32) leaves room for a kernel in f32 arithmetic */
  bool sm_ok = sm && sm->dtype == CF_DTYPE_F32 && sm->ndim == 2 && sm->shape[0] == 1000 && sm->shape[1] == 1000 &&
               cf_tensor_is_contiguous(sm);
  int64_t bad_i = -1, bad_j = -1;
  double bad_got = 0, bad_want = 0;
  for (int64_t i = 0; sm_ok && i < 1000; i++) {
    double mx = -INFINITY, z = 0;
    for (int64_t j = 0; j < 1000; j++) mx = fmax(mx, xp[i * 1000 + j]);
    for (int64_t j = 0; j < 1000; j++) z += exp((double)xp[i * 1000 + j] - mx);
    for (int64_t j = 0; j < 1000; j++) {
      double want = exp((double)xp[i * 1000 + j] - mx) / z, got = ((float *)sm->storage->data)[i * 1000 + j];
      if (!(fabs(got - want) <= 1e-5 * want + 1e-12)) {
        sm_ok = false;
        bad_i = i, bad_j = j, bad_got = got, bad_want = want;
        break;
      }
    }
  }
  CHECK(sm_ok, "large softmax matches a plain loop (first mismatch [%lld, %lld]: %.9g, want %.9g)", (long long)bad_i,
        (long long)bad_j, bad_got, bad_want);
  printf("timing [1000 x 1000] f32: add (broadcast) %.2f ms, mul (transposed) %.2f ms, "
         "sum(dim 2) %.2f ms, softmax(dim 2) %.2f ms\n",
         1e3 * (t1 - t0), 1e3 * (t2 - t1), 1e3 * (t3 - t2), 1e3 * (t4 - t3));
  cf_tensor_release(x); cf_tensor_release(b); cf_tensor_release(xt); cf_tensor_release(y);
  cf_tensor_release(yt); cf_tensor_release(s); cf_tensor_release(sm);
}

int main(int argc, char **argv) {
  const char *only = argc > 1 ? argv[1] : NULL;
  size_t live0 = cf_cpu_bytes_live();
  /* every row must name an op */
  for (size_t t = 0; t < sizeof row_tables / sizeof *row_tables; t++)
    for (const optest_row *r = row_tables[t]; r->op; r++)
      CHECK(cf_op_find(r->op) >= 0, "test row for unknown op %s", r->op);
  for (int id = 0; id < CF_OP_COUNT; id++) {
    const cf_op_info *op = &cf_ops[id];
    if (only && strcmp(only, op->name) != 0) continue;
    const optest_row *row = find_row(op->name);
    if (!row) {
      CHECK(false, "op %s has no test row", op->name);
      continue;
    }
    if (op->flags & CF_VIEW) CHECK(op->view != NULL, "op %s has no view function", op->name);
    else CHECK(op->cpu != NULL, "op %s has no CPU kernel", op->name);
    if (!(op->flags & CF_NOGRAD)) CHECK(op->backward != NULL, "op %s has no backward rule", op->name);
    if ((op->flags & CF_VIEW) ? !op->view : !op->cpu) continue;
    CHECK(run_row(id, row) == 0, "op %s: some cases failed", op->name);
  }
  if (!only) {
    check_ties();
    check_new_ops();
    check_infinities();
    check_var_default();
    check_errors();
    check_fullwrite_edges();
    check_large();
  }
  CHECK(cf_cpu_bytes_live() == live0, "CPU bytes live %zu at the end, %zu at the start",
        cf_cpu_bytes_live(), live0);
  return check_finish();
}
