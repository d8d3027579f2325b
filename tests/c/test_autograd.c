/* test_autograd.c - the tape and backward pass: a tensor used twice, accumulation over two
 * backward calls, no-grad mode, detach, a 100000-op chain (no recursion on backward or release),
 * seeds for non-scalars (of another dtype too), freed graphs and retain_graph, broadcast
 * gradients reduced to the input's shape, saved values written in place (op by op), a leaf's
 * .grad (contiguous, its own), integer results, a backward that failed part way and is run
 * again, and where's condition (not a differentiable input); custom nodes (their state freed once,
 * gradients of another dtype, shape or for an input that needs none), the C message of a cut
 * graph, the grad mode after a leaf's backward, empty tensors and a freed graph under a new node
 * (twenty-eighth session, mutation testing). Prints "N passed, N failed";
 * exits 1 on any failure.
 */
#include "autograd.h"
#include "error.h"
#include "ops.h"
#include "optim.h"
#include "tensor.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
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

  /* a seed of another dtype is converted to the tensor's: an f32 seed on an f64 graph */
  cf_zero_grad(x);
  y = cf_op2(CF_OP_mul, x, x);
  cf_tensor *seed32 = cf_tensor_to_dtype(seed, CF_DTYPE_F32);
  CHECK(seed32 && cf_backward(y, seed32, false) == 0, "backward with an f32 seed: %s", cf_error_message());
  CHECK(grad_is(x, 3, want) && x->grad->dtype == CF_DTYPE_F64, "an f32 seed gives the f64 gradient 2x*seed");
  cf_tensor_release(seed32);
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

/* A leaf's .grad is contiguous and its own: sum's backward hands on a stride-0 view of the seed,
 * which the leaf stores as a copy (a write to one element of .grad changes that element only). */
static void test_leaf_grad_layout(void) {
  double v[3] = {1, 2, 3};
  cf_tensor *x = leaf(3, v);
  cf_tensor *s = sum_all(x);
  CHECK(s && cf_backward(s, NULL, false) == 0, "backward: %s", cf_error_message());
  CHECK(x->grad && cf_tensor_is_contiguous(x->grad), "the gradient of a sum is stored contiguous");
  int64_t i1 = 1;
  if (x->grad) cf_tensor_set(x->grad, &i1, 5);
  double want[3] = {1, 5, 1};
  CHECK(grad_is(x, 3, want), "a write to one element of .grad changes only that element");
  cf_tensor_release(s);
  cf_tensor_release(x);
}

/* An integer result (to_dtype of a tensor that requires grad) records no node: it carries no
 * gradient, so a backward from it is refused as for any tensor without history. */
static void test_integer_result(void) {
  double v[2] = {1.5, -2};
  cf_tensor *x = leaf(2, v);
  cf_args a = cf_args_none();
  a.i[0] = CF_DTYPE_I64;
  a.ni = 1;
  cf_tensor *ids = cf_op(CF_OP_to_dtype, &x, 1, &a);
  CHECK(ids && ids->dtype == CF_DTYPE_I64 && !ids->requires_grad && ids->grad_fn == NULL,
        "to_dtype(i64) of a tensor that requires grad records nothing");
  cf_tensor_release(ids);
  cf_tensor_release(x);
}

/* Which inputs a backward reads (reads_value in autograd.c), op by op: one that reads its input
 * refuses a write to it; one that reads only its output (exp, sqrt, sigmoid, tanh, relu, expm1,
 * softmax, log_softmax) runs and gives the gradient of the value it computed. */
static cf_tensor *apply_op(cf_op_id id, bool along_dim, cf_tensor *x) {
  return along_dim ? cf_op_dim(id, x, 0, false) : cf_op1(id, x);
}

static void test_saved_input_per_op(void) {
  static const struct { cf_op_id id; bool along_dim, reads_input; } ops[] = {
    {CF_OP_log, false, true}, {CF_OP_log1p, false, true}, {CF_OP_sin, false, true},
    {CF_OP_cos, false, true}, {CF_OP_rsqrt, false, true}, {CF_OP_abs, false, true},
    {CF_OP_silu, false, true}, {CF_OP_gelu, false, true}, {CF_OP_logsumexp, true, true},
    {CF_OP_var, true, true}, {CF_OP_max, true, true}, {CF_OP_min, true, true},
    {CF_OP_exp, false, false}, {CF_OP_sqrt, false, false}, {CF_OP_sigmoid, false, false},
    {CF_OP_tanh, false, false}, {CF_OP_relu, false, false}, {CF_OP_expm1, false, false},
    {CF_OP_softmax, true, false}, {CF_OP_log_softmax, true, false},
  };
  double v[3] = {0.5, 2, 1.25}, seedv[3] = {1, -2, 0.5};
  cf_tensor *seed = leaf(3, seedv);
  seed->requires_grad = false;
  for (size_t i = 0; i < sizeof ops / sizeof *ops; i++) {
    const char *name = cf_ops[ops[i].id].name;
    /* the gradient with the input left alone */
    cf_tensor *x0 = leaf(3, v), *y0 = apply_op(ops[i].id, ops[i].along_dim, x0);
    int rc0 = y0 ? cf_backward(y0, y0->ndim ? seed : NULL, false) : -1;
    CHECK(rc0 == 0 && x0->grad, "%s: backward: %s", name, cf_error_message());
    /* and with the input written after the forward */
    cf_tensor *x = leaf(3, v), *y = apply_op(ops[i].id, ops[i].along_dim, x);
    cf_tensor_fill_(x, 3);
    int rc = y ? cf_backward(y, y->ndim ? seed : NULL, false) : -1;
    if (ops[i].reads_input)
      CHECK(rc != 0 && strstr(cf_error_message(), "modified in place") && strstr(cf_error_message(), name) &&
                x->grad == NULL,
            "%s reads its input: a write to it before backward is refused: %s", name,
            rc ? cf_error_message() : "(ran)");
    else
      CHECK(rc == 0 && x0->grad && grad_is(x, 3, (const double[]){cf_tensor_get_flat(x0->grad, 0),
                                                                   cf_tensor_get_flat(x0->grad, 1),
                                                                   cf_tensor_get_flat(x0->grad, 2)}),
            "%s reads only its output: a write to its input changes nothing: %s", name,
            rc ? cf_error_message() : "(another gradient)");
    cf_tensor_release(y); cf_tensor_release(x); cf_tensor_release(y0); cf_tensor_release(x0);
  }
  cf_tensor_release(seed);
}

/* A backward that fails part way (here a custom node's rule, the first time) leaves no gradient
 * behind in the nodes it did not reach: the next pass over the retained graph gives the right
 * gradient, not one with the failed pass's partial sums in it. */
static int fail_once_calls;
static int fail_once_backward(cf_node *n, cf_tensor *gout, cf_tensor **gin) {
  (void)n;
  if (fail_once_calls++ == 0) return CF_ERR("fail_once: the planned failure");
  cf_tensor_retain(gout);
  gin[0] = gout; /* identity */
  return 0;
}
static void fail_once_free(void *ctx) { (void)ctx; }
static const cf_custom_fn fail_once_fn = {"fail_once", fail_once_backward, fail_once_free, NULL};

static void test_failed_backward_retried(void) {
  double v[2] = {1, 2};
  cf_tensor *x = leaf(2, v);
  cf_tensor *a = cf_op_scalar(CF_OP_mul, x, 3.0);          /* 3x */
  cf_tensor *b = cf_tensor_clone(a);                        /* fail_once(a) = a */
  bool recorded = b && cf_autograd_record_custom(&fail_once_fn, NULL, &a, 1, b, false) == 0;
  CHECK(recorded, "custom node: %s", cf_error_message());
  cf_tensor *c = cf_op2(CF_OP_add, a, b);                   /* 6x, the mul reached twice */
  cf_tensor *s = sum_all(c);
  fail_once_calls = 0;
  CHECK(s && cf_backward(s, NULL, true) != 0 && strstr(cf_error_message(), "planned failure"),
        "the first pass fails in the custom node: %s", cf_error_message());
  CHECK(x->grad == NULL, "the failed pass leaves no gradient");
  CHECK(s && cf_backward(s, NULL, true) == 0, "the second pass runs: %s", cf_error_message());
  double want[2] = {6, 6};
  CHECK(grad_is(x, 2, want), "the second pass gives d(6x)/dx = 6 (got %g)",
        x->grad ? cf_tensor_get_flat(x->grad, 0) : NAN);
  cf_tensor_release(s); cf_tensor_release(c); cf_tensor_release(b); cf_tensor_release(a);
  cf_tensor_release(x);
}

/* where's condition is no differentiable input even when it is a float tensor that requires
 * grad: its graph is not walked (not checked, not run), so a value its producer saved may change. */
static void test_condition_graph_not_walked(void) {
  double xv[2] = {1, -1}, wv[2] = {2, 3}, av[2] = {5, 6}, bv[2] = {7, 8};
  cf_tensor *x = leaf(2, xv), *w = leaf(2, wv), *a = leaf(2, av), *b = leaf(2, bv);
  w->requires_grad = false;
  cf_tensor *m = cf_op2(CF_OP_mul, x, w);                   /* requires grad; saves w */
  cf_tensor *in[3] = {m, a, b};
  cf_tensor *y = m ? cf_op(CF_OP_where, in, 3, NULL) : NULL;
  cf_tensor *s = y ? sum_all(y) : NULL;
  cf_tensor_fill_(w, 0);
  CHECK(s && cf_backward(s, NULL, false) == 0, "a write to what the condition's producer saved does not matter: %s",
        cf_error_message());
  double ones[2] = {1, 1}, zeros[2] = {0, 0};
  CHECK(grad_is(a, 2, ones) && grad_is(b, 2, zeros) && x->grad == NULL,
        "where: the gradient goes to a where the condition holds, none to the condition's inputs");
  cf_tensor *all[] = {s, y, m, x, w, a, b};
  for (size_t i = 0; i < sizeof all / sizeof *all; i++) cf_tensor_release(all[i]);
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

/* (twenty-eighth session, mutation testing) A custom node's state, gradients and record: ctx is
 * freed exactly once (after a backward that frees the graph, or at once when no node is made);
 * a gradient of another dtype is stored in the leaf's; one for an input that needs none is
 * dropped; one of a shape that does not reduce to the input's is refused naming the shapes; a
 * custom node attached to a tensor with a history releases the old node. */
static int ctx_frees;
static void count_free(void *ctx) { ctx_frees++; free(ctx); }
/* gin[k] = gout converted to f32 (another dtype than the f64 leaves) for every input */
static int to_f32_backward(cf_node *n, cf_tensor *gout, cf_tensor **gin) {
  for (int k = 0; k < n->nin; k++)
    if (!(gin[k] = cf_tensor_to_dtype(gout, CF_DTYPE_F32))) return -1;
  return 0;
}
/* a [2] gradient for a [3] input */
static int wrong_shape_backward(cf_node *n, cf_tensor *gout, cf_tensor **gin) {
  (void)n; (void)gout;
  int64_t two = 2;
  gin[0] = cf_tensor_full(1, &two, CF_DTYPE_F64, 1.0);
  return gin[0] ? 0 : -1;
}
static const cf_custom_fn f32_fn = {"to_f32", to_f32_backward, count_free, NULL};
static const cf_custom_fn wrong_fn = {"wrong_shape", wrong_shape_backward, count_free, NULL};

static void test_custom_node(void) {
  double v[3] = {1, 2, 3}, w3[3] = {4, 5, 6};
  cf_tensor *x = leaf(3, v), *c = leaf(3, w3);
  c->requires_grad = false;
  /* y = x (values), gradient to x and c (c needs none: it is dropped) */
  ctx_frees = 0;
  cf_tensor *y = cf_tensor_clone(x);
  cf_tensor *in2[2] = {x, c};
  CHECK(y && cf_autograd_record_custom(&f32_fn, malloc(8), in2, 2, y, false) == 0, "record: %s", cf_error_message());
  cf_tensor *s = cf_op_scalar(CF_OP_mul, y, 2.0), *ss = sum_all(s);
  CHECK(ss && cf_backward(ss, NULL, false) == 0, "backward through the custom node: %s", cf_error_message());
  double twos[3] = {2, 2, 2};
  CHECK(grad_is(x, 3, twos) && x->grad->dtype == CF_DTYPE_F64, "an f32 gradient is stored in the f64 leaf's dtype");
  CHECK(c->grad == NULL, "no gradient for the input that needs none");
  CHECK(ctx_frees == 1, "the node's state is freed by the backward that frees the graph (%d frees)", ctx_frees);
  cf_tensor_release(ss); cf_tensor_release(s); cf_tensor_release(y);
  CHECK(ctx_frees == 1, "and not again when the node goes (%d frees)", ctx_frees);
  /* no input requires grad: no node, the state freed at once */
  cf_tensor *cy = cf_tensor_clone(c);
  CHECK(cy && cf_autograd_record_custom(&f32_fn, malloc(8), &c, 1, cy, false) == 0 && cy->grad_fn == NULL &&
            ctx_frees == 2, "no node without an input that requires grad; its state freed (%d frees)", ctx_frees);
  cf_tensor_release(cy);
  /* a gradient that does not reduce to the input's shape: refused, nothing accumulated */
  cf_zero_grad(x);
  cf_tensor *z = cf_tensor_clone(x);
  CHECK(z && cf_autograd_record_custom(&wrong_fn, malloc(8), &x, 1, z, false) == 0, "record: %s", cf_error_message());
  cf_tensor *sz = sum_all(z);
  CHECK(sz && cf_backward(sz, NULL, false) != 0 && strstr(cf_error_message(), "wrong_shape") &&
            strstr(cf_error_message(), "gradient of shape [2] does not reduce to the input's shape"),
        "a [2] gradient for a [3] input is refused: %s", cf_error_message());
  CHECK(x->grad == NULL, "and leaves no gradient");
  cf_tensor_release(sz); cf_tensor_release(z);
  /* attached to a computed tensor: its old node goes (the bytes check in main) */
  cf_tensor *m = cf_op_scalar(CF_OP_mul, x, 3.0);
  CHECK(m && m->grad_fn && cf_autograd_record_custom(&f32_fn, malloc(8), &x, 1, m, false) == 0 &&
            m->grad_fn && m->grad_fn->custom == &f32_fn, "a custom node replaces a computed tensor's history");
  cf_tensor *sm = sum_all(m);
  CHECK(sm && cf_backward(sm, NULL, false) == 0, "backward: %s", cf_error_message());
  double ones[3] = {1, 1, 1};
  CHECK(grad_is(x, 3, ones), "the gradient is the custom node's (identity), not mul's");
  cf_tensor_release(sm); cf_tensor_release(m);
  CHECK(ctx_frees == 4, "every state freed once (%d frees)", ctx_frees);
  cf_tensor_release(c); cf_tensor_release(x);
}

/* cf_backward from a tensor that depends on the ones requiring grad only through argmax names
 * argmax (a C caller gets the same message as Lua's t:backward()) */
static void test_grad_cut_named(void) {
  double v[3] = {1, 5, 2};
  cf_tensor *x = leaf(3, v);
  cf_tensor *am = cf_op_dim(CF_OP_argmax, x, 0, false);
  cf_args a = cf_args_none();
  a.i[0] = CF_DTYPE_F64;
  a.ni = 1;
  cf_tensor *f = am ? cf_op(CF_OP_to_dtype, &am, 1, &a) : NULL;
  CHECK(f && cf_backward(f, NULL, false) != 0 && strstr(cf_error_message(), "only through argmax"),
        "backward through argmax names it: %s", cf_error_message());
  cf_tensor_release(f); cf_tensor_release(am); cf_tensor_release(x);
}

/* A backward from a leaf itself leaves the gradient mode as it found it (on, and off) */
static void test_leaf_backward_mode(void) {
  double v[1] = {2};
  cf_tensor *x = leaf(1, v);
  CHECK(cf_backward(x, NULL, false) == 0 && cf_grad_enabled(), "backward of a leaf: grad mode still on");
  cf_tensor *y = cf_op_scalar(CF_OP_mul, x, 2.0);
  CHECK(y && y->requires_grad && y->grad_fn, "an op after it is recorded");
  cf_tensor_release(y);
  bool old = cf_set_grad_enabled(false);
  CHECK(cf_backward(x, NULL, false) == 0 && !cf_grad_enabled(), "backward of a leaf under no_grad: still off");
  cf_set_grad_enabled(old);
  double want[1] = {2};
  CHECK(grad_is(x, 1, want), "two seeds of 1 accumulated");
  cf_tensor_release(x);
}

/* A tensor of no elements has no implicit seed (only a one-element tensor has) */
static void test_empty_needs_seed(void) {
  int64_t zero = 0;
  cf_tensor *x = cf_tensor_zeros(1, &zero, CF_DTYPE_F64);
  x->requires_grad = true;
  cf_tensor *y = cf_op_scalar(CF_OP_mul, x, 2.0);
  CHECK(y && cf_backward(y, NULL, false) != 0 && strstr(cf_error_message(), "has 0 elements; give a seed gradient"),
        "backward of a [0] tensor without a seed is refused: %s", cf_error_message());
  CHECK(cf_backward(x, NULL, false) != 0 && strstr(cf_error_message(), "has 0 elements"),
        "and of a [0] leaf: %s", cf_error_message());
  CHECK(x->grad == NULL, "no gradient stored");
  cf_tensor_release(y); cf_tensor_release(x);
}

/* where's condition is no differentiable input: a condition that requires grad with branches that
 * do not gives a result without a gradient (a backward from it is refused, not a no-op) */
static void test_condition_alone(void) {
  double cv[2] = {1, 0}, av[2] = {5, 6};
  cf_tensor *c = leaf(2, cv), *a = leaf(2, av), *b = leaf(2, av);
  a->requires_grad = b->requires_grad = false;
  cf_tensor *in[3] = {c, a, b};
  cf_tensor *y = cf_op(CF_OP_where, in, 3, NULL);
  CHECK(y && !y->requires_grad && y->grad_fn == NULL, "where(cond that requires grad, a, b) requires none");
  cf_tensor *mf = NULL;
  if (y) {
    cf_args ma = cf_args_none();
    ma.f[0] = 0; ma.nf = 1;
    cf_tensor *in2[2] = {a, c};
    mf = cf_op(CF_OP_masked_fill, in2, 2, &ma);
  }
  CHECK(mf && !mf->requires_grad && mf->grad_fn == NULL, "masked_fill(a, mask that requires grad) requires none");
  cf_tensor_release(mf); cf_tensor_release(y);
  cf_tensor_release(a); cf_tensor_release(b); cf_tensor_release(c);
}

/* A graph freed by a backward, reached again through a new op on one of its tensors (a second
 * loss built on a hidden value of the first): refused, not run over the released inputs */
static void test_freed_below_new_node(void) {
  double v[2] = {1, 2};
  cf_tensor *x = leaf(2, v);
  cf_tensor *h = cf_op2(CF_OP_mul, x, x), *l1 = sum_all(h);
  CHECK(l1 && cf_backward(l1, NULL, false) == 0, "first backward: %s", cf_error_message());
  /* x * 2 + h: the new node x * 2 comes first in the walk, the freed one after it */
  cf_tensor *x2 = cf_op_scalar(CF_OP_mul, x, 2.0), *h2 = x2 ? cf_op2(CF_OP_add, x2, h) : NULL;
  cf_tensor *l2 = h2 ? sum_all(h2) : NULL;
  CHECK(l2 && cf_backward(l2, NULL, false) != 0 && strstr(cf_error_message(), "already freed"),
        "a new loss over the freed graph is refused: %s", cf_error_message());
  double want[2] = {2, 4};
  CHECK(grad_is(x, 2, want), "x.grad is the first backward's alone");
  cf_tensor_release(l2); cf_tensor_release(h2); cf_tensor_release(x2); cf_tensor_release(l1); cf_tensor_release(h); cf_tensor_release(x);
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
  test_leaf_grad_layout();
  test_integer_result();
  test_saved_input_per_op();
  test_failed_backward_retried();
  test_condition_graph_not_walked();
  test_custom_node();
  test_grad_cut_named();
  test_leaf_backward_mode();
  test_empty_needs_seed();
  test_condition_alone();
  test_freed_below_new_node();
  CHECK(cf_cpu_bytes_live() == live0, "CPU bytes live back to the start (%zu extra)", cf_cpu_bytes_live() - live0);
  return check_finish();
}
