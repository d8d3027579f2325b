/* test_autograd.c - the tape and backward pass: a tensor used twice, accumulation over two
 * backward calls, no-grad mode, detach, a 100000-op chain (no recursion on backward or release),
 * seeds for non-scalars, freed graphs and retain_graph, broadcast gradients reduced to the
 * input's shape. Prints "N passed, N failed"; exits 1 on any failure.
 */
#include "autograd.h"
#include "error.h"
#include "ops.h"
#include "optim.h"
#include "tensor.h"
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "check.h"

static cf_tensor *leaf(int n, const double *v) {
  int64_t s[1] = {n};
  cf_tensor *t = cf_tensor_zeros(1, s, CF_DTYPE_F64);
  for (int64_t i = 0; i < n; i++) cf_tensor_set(t, &i, v[i]);
  t->requires_grad = true;
  return t;
}

static bool grad_is(const cf_tensor *t, int n, const double *v) {
  if (!t->grad || cf_tensor_numel(t->grad) != n) return false;
  for (int64_t i = 0; i < n; i++)
    if (fabs(cf_tensor_get_flat(t->grad, i) - v[i]) > 1e-12) return false;
  return true;
}

static cf_tensor *sum_all(cf_tensor *t) { return cf_op_dim(CF_OP_sum, t, CF_DIM_ALL, false); }

static void test_used_twice(void) {
  double v[3] = {1, 2, 3};
  cf_tensor *x = leaf(3, v);
  cf_tensor *y = cf_op2(CF_OP_add, x, x);    /* 2x */
  cf_tensor *z = cf_op2(CF_OP_mul, y, x);    /* 2x^2, d/dx = 4x */
  cf_tensor *s = sum_all(z);
  CHECK(s && cf_backward(s, NULL, false) == 0, "backward: %s", cf_error_message());
  double want[3] = {4, 8, 12};
  CHECK(grad_is(x, 3, want), "a tensor used several times sums its gradients");
  cf_tensor_release(s); cf_tensor_release(z); cf_tensor_release(y); cf_tensor_release(x);
}

static void test_accumulate(void) {
  double v[2] = {1, -1};
  cf_tensor *x = leaf(2, v);
  for (int k = 0; k < 2; k++) {
    cf_tensor *y = cf_op_scalar(CF_OP_mul, x, 3.0);
    cf_tensor *s = sum_all(y);
    CHECK(s && cf_backward(s, NULL, false) == 0, "backward %d", k);
    cf_tensor_release(s);
    cf_tensor_release(y);
  }
  double want[2] = {6, 6};
  CHECK(grad_is(x, 2, want), "two backward calls accumulate into .grad");
  cf_zero_grad(x);
  CHECK(x->grad == NULL, "zero_grad clears");
  cf_tensor_release(x);
}

static void test_nograd_detach(void) {
  double v[2] = {1, 2};
  cf_tensor *x = leaf(2, v);
  bool old = cf_set_grad_enabled(false);
  cf_tensor *y = cf_op1(CF_OP_exp, x);
  CHECK(y && !y->requires_grad && y->grad_fn == NULL, "no-grad mode records nothing");
  cf_set_grad_enabled(old);
  CHECK(cf_grad_enabled(), "grad mode restored");
  cf_tensor_release(y);

  /* detach: d/dx (x * detach(x)) = detach(x) only */
  cf_tensor *d = cf_detach(x);
  CHECK(d && !d->requires_grad && d->grad_fn == NULL && d->storage == x->storage, "detach shares data");
  cf_tensor *z = cf_op2(CF_OP_mul, x, d);
  cf_tensor *s = sum_all(z);
  CHECK(s && cf_backward(s, NULL, false) == 0, "backward through detach");
  CHECK(grad_is(x, 2, v), "detach stops the gradient");
  cf_tensor *e = cf_op1(CF_OP_exp, d);
  CHECK(e && !e->requires_grad, "ops on a detached tensor do not require grad");
  cf_tensor *se = sum_all(e);
  CHECK(se && cf_backward(se, NULL, false) == -1 && strstr(cf_error_message(), "does not require grad"),
        "backward of a tensor without history fails: %s", cf_error_message());
  cf_tensor_release(se); cf_tensor_release(e);
  cf_tensor_release(s); cf_tensor_release(z); cf_tensor_release(d); cf_tensor_release(x);
}

static void test_long_chain(void) {
  double v[1] = {0.5};
  cf_tensor *x = leaf(1, v);
  cf_tensor *one = cf_tensor_scalar(1e-3, CF_DTYPE_F64);
  cf_tensor *y = x;
  cf_tensor_retain(y);
  const int N = 100000;
  for (int i = 0; i < N && y; i++) {
    cf_tensor *t = cf_op2(CF_OP_add, y, one);
    cf_tensor_release(y);
    y = t;
  }
  CHECK(y && fabs(cf_tensor_get_flat(y, 0) - (0.5 + N * 1e-3)) < 1e-9, "chain forward");
  CHECK(y && cf_backward(y, NULL, false) == 0, "backward through %d nodes: %s", N, cf_error_message());
  double want[1] = {1};
  CHECK(grad_is(x, 1, want), "gradient through the chain");
  cf_tensor_release(y); /* releases 100000 nodes iteratively */
  /* and a chain released without running backward */
  size_t live = cf_cpu_bytes_live();
  y = x;
  cf_tensor_retain(y);
  for (int i = 0; i < N && y; i++) {
    cf_tensor *t = cf_op2(CF_OP_mul, y, one);
    cf_tensor_release(y);
    y = t;
  }
  CHECK(y != NULL && cf_cpu_bytes_live() > live, "second chain built");
  cf_tensor_release(y);
  CHECK(cf_cpu_bytes_live() == live, "released a 100000-node chain (iteratively) and all its outputs");
  cf_tensor_release(one);
  cf_tensor_release(x);
}

static void test_seed_and_freed(void) {
  double v[3] = {1, 2, 3};
  cf_tensor *x = leaf(3, v);
  cf_tensor *y = cf_op2(CF_OP_mul, x, x);
  CHECK(cf_backward(y, NULL, false) == -1 &&
            strstr(cf_error_message(), "backward: the tensor [3] has 3 elements; give a seed gradient"),
        "non-scalar without seed: %s", cf_error_message());
  int64_t s2[1] = {2};
  cf_tensor *bad = cf_tensor_zeros(1, s2, CF_DTYPE_F64);
  CHECK(cf_backward(y, bad, false) == -1 &&
            strstr(cf_error_message(), "seed gradient [2] does not match the tensor [3]"),
        "seed shape mismatch: %s", cf_error_message());
  cf_tensor_release(bad);
  double sv[3] = {1, 0, -1};
  cf_tensor *seed = leaf(3, sv);
  seed->requires_grad = false;
  CHECK(cf_backward(y, seed, false) == 0, "backward with a seed");
  double want[3] = {2, 0, -6};
  CHECK(grad_is(x, 3, want), "seeded gradient 2x*seed");
  CHECK(cf_backward(y, seed, false) == -1 && strstr(cf_error_message(), "already freed"),
        "second backward after the graph was freed: %s", cf_error_message());
  cf_tensor_release(y);

  /* retain_graph keeps it */
  cf_zero_grad(x);
  y = cf_op2(CF_OP_mul, x, x);
  CHECK(cf_backward(y, seed, true) == 0 && cf_backward(y, seed, false) == 0, "retain_graph allows a second pass");
  double want2[3] = {4, 0, -12};
  CHECK(grad_is(x, 3, want2), "two retained passes accumulate");
  cf_tensor_release(y);
  cf_tensor_release(seed);
  cf_tensor_release(x);
}

static void test_broadcast_grad(void) {
  int64_t sa[2] = {2, 3}, sb[2] = {1, 3}, sc[1] = {1};
  cf_tensor *a = cf_tensor_full(2, sa, CF_DTYPE_F64, 2.0);
  cf_tensor *b = cf_tensor_full(2, sb, CF_DTYPE_F64, 5.0);
  cf_tensor *c = cf_tensor_full(1, sc, CF_DTYPE_F64, 1.0);
  cf_tensor *d = cf_tensor_scalar(3.0, CF_DTYPE_F64);
  a->requires_grad = b->requires_grad = c->requires_grad = d->requires_grad = true;
  cf_tensor *t1 = cf_op2(CF_OP_mul, a, b);   /* [2 x 3] */
  cf_tensor *t2 = cf_op2(CF_OP_add, t1, c);
  cf_tensor *t3 = cf_op2(CF_OP_mul, t2, d);
  cf_tensor *s = sum_all(t3);
  CHECK(s && cf_backward(s, NULL, false) == 0, "backward: %s", cf_error_message());
  CHECK(b->grad && cf_same_shape(b->grad, b) && cf_tensor_get_flat(b->grad, 2) == 2 * 2 * 3,
        "gradient of a [1 x 3] input sums over the broadcast dim");
  CHECK(c->grad && cf_same_shape(c->grad, c) && cf_tensor_get_flat(c->grad, 0) == 6 * 3,
        "gradient of a [1] input sums everything");
  CHECK(d->grad && d->grad->ndim == 0 && cf_tensor_get_flat(d->grad, 0) == 6 * 11,
        "gradient of a 0-d input");
  CHECK(a->grad && cf_same_shape(a->grad, a) && cf_tensor_get_flat(a->grad, 5) == 15, "full-size input");
  cf_tensor *all[] = {s, t3, t2, t1, a, b, c, d};
  for (size_t i = 0; i < sizeof all / sizeof *all; i++) cf_tensor_release(all[i]);
}

/* In-place writes after a node saved a tensor: the node's backward refuses (the storage's
 * version moved); writes the backward does not read (add's inputs), writes before the forward,
 * the optimizer after backward and clipping a gradient pass. */
static void test_saved_versions(void) {
  double v[2] = {1, 2}, wv[2] = {3, 4};
  for (int how = 0; how < 4; how++) {
    cf_tensor *x = leaf(2, v), *w = leaf(2, wv);
    w->requires_grad = false;
    cf_tensor *y = cf_op2(CF_OP_mul, x, w), *s = sum_all(y);
    int64_t one = 1;
    cf_tensor *src = cf_tensor_full(1, (int64_t[]){2}, CF_DTYPE_F64, 7.0);
    cf_tensor *part = cf_view_narrow(w, 0, 1, 1);
    if (how == 0) cf_tensor_fill_(w, 10);
    else if (how == 1) cf_tensor_copy_(w, src);
    else if (how == 2) cf_tensor_set(w, &one, 10);
    else cf_tensor_fill_(part, 10);             /* through a view of the same storage */
    int rc = cf_backward(s, NULL, false);
    CHECK(rc != 0 && strstr(cf_error_message(), "modified in place") && strstr(cf_error_message(), "mul") &&
          strstr(cf_error_message(), "[2]"), "write %d after mul saved w: %s", how, rc ? cf_error_message() : "(ran)");
    CHECK(x->grad == NULL, "write %d: no gradient accumulated", how);
    cf_tensor_release(part); cf_tensor_release(src);
    cf_tensor_release(s); cf_tensor_release(y); cf_tensor_release(w); cf_tensor_release(x);
  }
  /* add reads no values: a write to its input does not matter */
  cf_tensor *x = leaf(2, v), *w = leaf(2, wv);
  w->requires_grad = false;
  cf_tensor *y = cf_op2(CF_OP_add, x, w), *s = sum_all(y);
  cf_tensor_fill_(w, 10);
  double ones[2] = {1, 1};
  CHECK(cf_backward(s, NULL, false) == 0 && grad_is(x, 2, ones), "add's inputs may change: %s", cf_error_message());
  cf_tensor_release(s); cf_tensor_release(y);
  /* retain_graph, then a write, then a second backward: refused */
  y = cf_op2(CF_OP_mul, x, x);
  s = sum_all(y);
  CHECK(cf_backward(s, NULL, true) == 0, "first backward: %s", cf_error_message());
  double scale = 0;
  CHECK(cf_clip_grad_norm(&x, 1, 0.5, &scale) == 0, "clipping .grad in place: %s", cf_error_message());
  cf_tensor_fill_(x, 0);
  CHECK(cf_backward(s, NULL, false) != 0 && strstr(cf_error_message(), "modified in place"),
        "a write between two backward passes of a retained graph is refused: %s", cf_error_message());
  cf_tensor_release(s); cf_tensor_release(y); cf_tensor_release(w); cf_tensor_release(x);
}

/* A refused optimizer step (a gradient of another shape on a later parameter) moves nothing:
 * not the parameters before it (SGD updates one after another), not the step count. */
static void test_refused_step_changes_nothing(void) {
  double a[2] = {1, 2}, b[3] = {3, 4, 5};
  cf_tensor *p[2] = {leaf(2, a), leaf(3, b)};
  double ga[2] = {1, 1}, gb[2] = {1, 1};
  p[0]->grad = leaf(2, ga);
  p[1]->grad = leaf(2, gb);                    /* [2] for a [3] parameter */
  for (int kind = 0; kind < 2; kind++) {
    cf_optim_config cfg = cf_optim_defaults(kind == 0 ? CF_OPTIM_SGD : CF_OPTIM_ADAMW);
    cfg.lr = 0.5;
    cf_optim *o = cf_optim_new(&cfg, p, 2);
    CHECK(o != NULL, "optimizer: %s", cf_error_message());
    uint64_t v0 = cf_tensor_version(p[0]);
    int rc = o ? cf_optim_step(o) : -1;
    CHECK(rc != 0 && strstr(cf_error_message(), "parameter 2"), "kind %d: refused naming parameter 2: %s", kind,
          cf_error_message());
    CHECK(grad_is(p[0], 2, ga) && cf_tensor_get_flat(p[0], 0) == 1 && cf_tensor_get_flat(p[0], 1) == 2,
          "kind %d: parameter 1 unchanged (%g %g)", kind, cf_tensor_get_flat(p[0], 0), cf_tensor_get_flat(p[0], 1));
    CHECK(cf_tensor_version(p[0]) == v0, "kind %d: parameter 1's version unchanged", kind);
    cf_optim_free(o);
  }
  cf_tensor_release(p[0]); cf_tensor_release(p[1]);
}

int main(void) {
  size_t live0 = cf_cpu_bytes_live();
  test_used_twice();
  test_accumulate();
  test_nograd_detach();
  test_long_chain();
  test_seed_and_freed();
  test_broadcast_grad();
  test_saved_versions();
  test_refused_step_changes_nothing();
  CHECK(cf_cpu_bytes_live() == live0, "CPU bytes live back to the start (%zu extra)", cf_cpu_bytes_live() - live0);
  return check_finish();
}
