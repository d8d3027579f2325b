/* autograd.c - the tape, backward pass and gradient accumulation (see autograd.h).
 *
 * Node release is iterative: dropping the last reference to a long chain of nodes pushes them
 * on a thread-local work list instead of recursing once per node.
 */
#include "autograd.h"
#include "error.h"
#include "profile.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local bool grad_on = true;

bool cf_grad_enabled(void) { return grad_on; }
bool cf_set_grad_enabled(bool on) { bool old = grad_on; grad_on = on; return old; }

/* ---------------------------------------------------------------- node lifetime */

static void node_free_saved(cf_node *n) {
  for (int k = 0; k < n->nin; k++) {
    cf_tensor_release(n->in[k]);
    n->in[k] = NULL;
  }
  cf_tensor_release(n->out);
  n->out = NULL;
  if (n->custom && n->ctx) n->custom->free_ctx(n->ctx);
  n->ctx = NULL;
  n->freed = true;
}

static void node_destroy(cf_node *n) {
  node_free_saved(n);
  for (int k = 0; k < n->nin; k++) {
    cf_tensor_release(n->leaf[k]);
    cf_node_release(n->next[k]);
  }
  cf_tensor_release(n->gacc);
  free(n->in); free(n->next); free(n->leaf); free(n->needs); free(n->version);
  free(n);
}

static _Thread_local cf_node **dead;
static _Thread_local size_t dead_n, dead_cap;
static _Thread_local bool draining;

void cf_node_retain(cf_node *n) { if (n) n->refcount++; }

void cf_node_release(cf_node *n) {
  if (!n || --n->refcount > 0) return;
  if (dead_n == dead_cap) {
    size_t cap = dead_cap ? dead_cap * 2 : 256;
    cf_node **p = realloc(dead, cap * sizeof *p);
    if (!p) { node_destroy(n); return; }   /* fall back to recursion */
    dead = p;
    dead_cap = cap;
  }
  dead[dead_n++] = n;
  if (draining) return;
  draining = true;
  while (dead_n) node_destroy(dead[--dead_n]);
  draining = false;
}

/* ---------------------------------------------------------------- recording */

/* Is tensor input k of this op differentiable (a T, t or L slot in the spec)? */
static bool input_is_diff(const char *spec, int k) {
  int idx = 0;
  for (const char *p = spec; *p; p++) {
    if (*p == 'L') return true;
    if (!strchr("TIMtim", *p)) continue;
    if (idx == k) return *p == 'T' || *p == 't';
    idx++;
  }
  return false;
}

const char *cf_node_name(const cf_node *n) { return n->custom ? n->custom->name : cf_ops[n->op].name; }

/* A node for out with inputs in[0..nin); diff(k) says whether input k may carry a gradient. */
static int record(cf_node *proto, cf_tensor *const *in, int nin, cf_tensor *out, bool force,
                  bool (*diff)(const cf_node *proto, int k)) {
  bool any = force;
  for (int k = 0; k < nin; k++)
    if (in[k] && in[k]->requires_grad && diff(proto, k)) any = true;
  if (!any || !cf_dtype_is_float(out->dtype)) {
    if (proto->custom && proto->ctx) proto->custom->free_ctx(proto->ctx);
    return 0;
  }
  cf_node *n = calloc(1, sizeof *n);
  if (!n) {
    if (proto->custom && proto->ctx) proto->custom->free_ctx(proto->ctx);
    return CF_ERR("%s: out of memory recording the autograd node", cf_node_name(proto));
  }
  *n = *proto;
  n->refcount = 1;
  n->nin = nin;
  n->in = calloc((size_t)(nin ? nin : 1), sizeof *n->in);
  n->next = calloc((size_t)(nin ? nin : 1), sizeof *n->next);
  n->leaf = calloc((size_t)(nin ? nin : 1), sizeof *n->leaf);
  n->needs = calloc((size_t)(nin ? nin : 1), sizeof *n->needs);
  n->version = calloc((size_t)nin + 1, sizeof *n->version);
  n->out = cf_view_alias(out);
  if (!n->in || !n->next || !n->leaf || !n->needs || !n->version || !n->out) {
    n->nin = 0; /* nothing retained yet */
    node_destroy(n);
    return CF_ERR("%s: out of memory recording the autograd node", cf_node_name(proto));
  }
  for (int k = 0; k < nin; k++) {
    cf_tensor *t = in[k];
    if (!t) continue;
    cf_tensor_retain(t);
    n->in[k] = t;
    n->version[k] = cf_tensor_version(t);
    if (t->requires_grad && diff(proto, k)) {
      n->needs[k] = true;
      if (t->grad_fn) { cf_node_retain(t->grad_fn); n->next[k] = t->grad_fn; }
      else { cf_tensor_retain(t); n->leaf[k] = t; }
    }
  }
  n->version[nin] = cf_tensor_version(out);
  out->requires_grad = true;
  cf_node_release(out->grad_fn);
  out->grad_fn = n;
  return 0;
}

static bool op_diff(const cf_node *proto, int k) { return input_is_diff(cf_ops[proto->op].spec, k); }

int cf_autograd_record(cf_op_id id, cf_tensor *const *in, int nin, const cf_args *a, cf_tensor *out) {
  cf_node proto;
  memset(&proto, 0, sizeof proto);
  proto.op = id;
  proto.args = *a;
  return record(&proto, in, nin, out, false, op_diff);
}

static bool custom_diff(const cf_node *proto, int k) { (void)proto; (void)k; return true; }

int cf_autograd_record_custom(const cf_custom_fn *fn, void *ctx, cf_tensor *const *in, int nin, cf_tensor *out,
                              bool force) {
  cf_node proto;
  memset(&proto, 0, sizeof proto);
  proto.op = -1;
  proto.custom = fn;
  proto.ctx = ctx;
  return record(&proto, in, nin, out, force, custom_diff);
}

/* ---------------------------------------------------------------- helpers */

/* bf16 is a storage type on the CPU (no add or sum kernel takes it there), yet the layout ops
 * take it, so a graph through them has bf16 gradients. The engine's own arithmetic on them
 * (accumulation, sum_to) runs in f32 there, converted back to bf16 once per result, as the
 * GPU's bf16 kernels accumulate in f32. */
static bool cpu_bf16(const cf_tensor *t) {
  return t->dtype == CF_DTYPE_BF16 && cf_tensor_device(t) == CF_DEVICE_CPU;
}

/* f32 (a reference this takes over; NULL after an error) converted to bf16: a new reference */
static cf_tensor *to_bf16_of(cf_tensor *f32) {
  cf_tensor *r = f32 ? cf_tensor_to_dtype(f32, CF_DTYPE_BF16) : NULL;
  cf_tensor_release(f32);
  return r;
}

cf_tensor *cf_sum_to(cf_tensor *g, int ndim, const int64_t *shape) {
  if (cpu_bf16(g)) {
    cf_tensor *f = cf_tensor_to_dtype(g, CF_DTYPE_F32);
    cf_tensor *s = f ? cf_sum_to(f, ndim, shape) : NULL;
    cf_tensor_release(f);
    return to_bf16_of(s);
  }
  cf_tensor_retain(g);
  while (g->ndim > ndim) {
    cf_tensor *s = cf_op_dim(CF_OP_sum, g, 0, false);
    cf_tensor_release(g);
    if (!s) return NULL;
    g = s;
  }
  for (int d = 0; d < ndim; d++) {
    if (shape[d] == 1 && g->shape[d] != 1) {
      cf_tensor *s = cf_op_dim(CF_OP_sum, g, d, true);
      cf_tensor_release(g);
      if (!s) return NULL;
      g = s;
    }
  }
  for (int d = 0; d < ndim; d++) {
    if (g->shape[d] != shape[d]) {
      char b[128];
      CF_ERR("backward: gradient of shape %s does not reduce to the input's shape",
             cf_shape_str(g, b, sizeof b));
      cf_tensor_release(g);
      return NULL;
    }
  }
  return g;
}

cf_tensor *cf_detach(cf_tensor *t) { return cf_view_alias(t); }

void cf_zero_grad(cf_tensor *t) {
  cf_tensor_release(t->grad);
  t->grad = NULL;
}

/* acc <- acc + g (acc may be NULL). Takes over g's reference. */
static int accumulate(cf_tensor **acc, cf_tensor *g) {
  if (!*acc) { *acc = g; return 0; }
  cf_tensor *s;
  if (cpu_bf16(*acc) && cpu_bf16(g)) {
    cf_tensor *a = cf_tensor_to_dtype(*acc, CF_DTYPE_F32);
    cf_tensor *b = a ? cf_tensor_to_dtype(g, CF_DTYPE_F32) : NULL;
    s = to_bf16_of(b ? cf_op2(CF_OP_add, a, b) : NULL);
    cf_tensor_release(a);
    cf_tensor_release(b);
  } else {
    s = cf_op2(CF_OP_add, *acc, g);
  }
  cf_tensor_release(g);
  if (!s) return -1;
  cf_tensor_release(*acc);
  *acc = s;
  return 0;
}

/* Store a leaf's gradient: contiguous, owned by the leaf alone, in the leaf's dtype. */
static int accumulate_leaf(cf_tensor *leaf, cf_tensor *g) {
  if (g->dtype != leaf->dtype) {
    cf_tensor *c = cf_tensor_to_dtype(g, leaf->dtype);
    cf_tensor_release(g);
    if (!c) return -1;
    g = c;
  }
  if (leaf->grad) return accumulate(&leaf->grad, g);
  if (g->refcount > 1 || !cf_tensor_is_contiguous(g) || g->storage->refcount > 1) {
    cf_tensor *c = cf_tensor_clone(g);
    cf_tensor_release(g);
    if (!c) return -1;
    g = c;
  }
  leaf->grad = g;
  return 0;
}

/* ---------------------------------------------------------------- saved versions */

/* Whether the backward of n reads the values of input k. (Its output is checked for every node,
 * in check_node: a computed tensor written in place is refused whatever its backward reads.)
 * Shapes are never written in place, so a tensor read only for its shape (sum's input, a view's)
 * is not listed. An op missing here is checked on every input: list a new op once its rule is
 * known. */
static bool reads_value(const cf_node *n, int k) {
  if (n->custom) return true;      /* its inputs; extra state through check_saved */
  switch ((cf_op_id)n->op) {
    case CF_OP_add: case CF_OP_sub: case CF_OP_neg: case CF_OP_sum: case CF_OP_mean:
    case CF_OP_cat: case CF_OP_stack: case CF_OP_narrow: case CF_OP_select: case CF_OP_transpose:
    case CF_OP_permute: case CF_OP_view: case CF_OP_reshape: case CF_OP_expand: case CF_OP_squeeze:
    case CF_OP_unsqueeze: case CF_OP_contiguous: case CF_OP_to_dtype: case CF_OP_cumsum:
      return false;
    case CF_OP_mul: case CF_OP_matmul:            /* each input's gradient reads the other one */
      return n->needs[1 - k];
    case CF_OP_div:                                /* da = g / b, db = -g out / b */
      return k == 1;
    case CF_OP_pow: case CF_OP_maximum: case CF_OP_minimum:
      return true;
    case CF_OP_swiglu: case CF_OP_rmsnorm: case CF_OP_attention: case CF_OP_cross_entropy:
    case CF_OP_token_logprob: case CF_OP_head_logprob: case CF_OP_head_entropy:
      return true;
    case CF_OP_where:                              /* the condition */
      return k == 0;
    case CF_OP_masked_fill: case CF_OP_embedding: case CF_OP_gather: case CF_OP_rope:
      return k == 1;                               /* the mask, ids, index, positions */
    case CF_OP_exp: case CF_OP_sqrt: case CF_OP_sigmoid: case CF_OP_tanh: case CF_OP_relu:
    case CF_OP_softmax: case CF_OP_log_softmax: case CF_OP_expm1:   /* their output only */
      return false;
    case CF_OP_log: case CF_OP_silu: case CF_OP_max: case CF_OP_var: case CF_OP_entropy:
    case CF_OP_min: case CF_OP_log1p: case CF_OP_sin: case CF_OP_cos: case CF_OP_sort:
      return k == 0;
    case CF_OP_rsqrt: case CF_OP_abs: case CF_OP_clamp: case CF_OP_gelu: case CF_OP_logsumexp:
      return k == 0;
    default:
      return true;
  }
}

int cf_autograd_check_saved(const char *op, const char *what, const cf_tensor *t, uint64_t version) {
  if (cf_tensor_version(t) == version) return 0;
  char b[128];
  return CF_ERR("backward: %s %s %s of %s was modified in place (fill_, copy_, set or an optimizer step) "
                "after %s saved it for its gradient (version %llu, now %llu); write it after backward, or "
                "write a clone", what, cf_shape_str(t, b, sizeof b), cf_dtype_name(t->dtype), op, op,
                (unsigned long long)version, (unsigned long long)cf_tensor_version(t));
}

/* Every tensor n's backward will read still holds the values n saw, and n's output still holds
 * what n computed: a write into it (or into a view sharing its storage) replaced part of the
 * value the gradient describes, and the tape would pass the old value's gradient on. */
static int check_node(const cf_node *n) {
  const char *name = cf_node_name(n);
  if (n->out && cf_tensor_version(n->out) != n->version[n->nin]) {
    char b[128];
    return CF_ERR("backward: the output %s %s of %s was modified in place (fill_, copy_, set or an optimizer "
                  "step, or through a view of it) after %s computed it (version %llu, now %llu): its gradient would be the old "
                  "value's; build the new value with ops (e.g. confit.where) or write into t:detach() and use that",
                  cf_shape_str(n->out, b, sizeof b), cf_dtype_name(n->out->dtype), name, name,
                  (unsigned long long)n->version[n->nin], (unsigned long long)cf_tensor_version(n->out));
  }
  for (int k = 0; k < n->nin; k++) {
    cf_tensor *t = n->in[k];
    if (!t || !reads_value(n, k)) continue;
    char what[32];
    snprintf(what, sizeof what, "input %d", k + 1);
    if (cf_autograd_check_saved(name, what, t, n->version[k])) return -1;
  }
  if (n->custom && n->custom->check_saved && n->custom->check_saved(n)) return -1;
  return 0;
}

/* ---------------------------------------------------------------- backward */

static int topo_order(cf_node *root, cf_node ***order, size_t *count) {
  static _Thread_local int pass = 0;
  pass++;
  size_t cap = 64, n = 0, sp = 0, scap = 64;
  cf_node **out = malloc(cap * sizeof *out);
  struct frame { cf_node *n; int k; } *stack = malloc(scap * sizeof *stack);
  if (!out || !stack) { free(out); free(stack); return CF_ERR("backward: out of memory"); }
  root->mark = pass;
  stack[sp++] = (struct frame){root, 0};
  while (sp) {
    struct frame *f = &stack[sp - 1];
    if (f->k < f->n->nin) {
      cf_node *c = f->n->next[f->k++];
      if (c && c->mark != pass) {
        c->mark = pass;
        if (sp == scap) {
          scap *= 2;
          void *p = realloc(stack, scap * sizeof *stack);
          if (!p) { free(out); free(stack); return CF_ERR("backward: out of memory"); }
          stack = p;
        }
        stack[sp++] = (struct frame){c, 0};
      }
    } else {
      if (n == cap) {
        cap *= 2;
        void *p = realloc(out, cap * sizeof *out);
        if (!p) { free(out); free(stack); return CF_ERR("backward: out of memory"); }
        out = p;
      }
      out[n++] = f->n;
      sp--;
    }
  }
  free(stack);
  *order = out;
  *count = n;
  return 0;
}

static int run_node(cf_node *n, bool retain) {
  const char *name = cf_node_name(n);
  cf_tensor *g = n->gacc;
  n->gacc = NULL;
  if (!g) return 0;
  int (*rule)(cf_node *, cf_tensor *, cf_tensor **) = n->custom ? n->custom->backward : cf_ops[n->op].backward;
  if (!rule) {
    cf_tensor_release(g);
    return CF_ERR("backward: op %s has no backward rule", name);
  }
  cf_tensor **gin = calloc((size_t)n->nin, sizeof *gin);
  if (!gin) { cf_tensor_release(g); return CF_ERR("backward: out of memory"); }
  int region = cf_prof_push(name);
  int rc = rule(n, g, gin);
  cf_prof_pop(region);
  cf_tensor_release(g);
  /* gradients of broadcast inputs reduce to the input's shape (a profiler region of their own:
   * a bias gradient is a long column sum) */
  bool reducing = false;
  for (int k = 0; k < n->nin && rc == 0; k++) {
    cf_tensor *gi = gin[k], *x = n->in[k];
    if (!gi || !n->needs[k] || cf_same_shape(gi, x)) continue;
    if (!reducing) { reducing = true; region = cf_prof_push("sum_to"); }
    cf_tensor *r = cf_sum_to(gi, x->ndim, x->shape);
    cf_tensor_release(gi);
    gin[k] = r;
    if (!r) rc = cf_error_prefix("backward of %s: ", name);
  }
  if (reducing) cf_prof_pop(region);
  region = cf_prof_push("accumulate");
  for (int k = 0; k < n->nin && rc == 0; k++) {
    cf_tensor *gi = gin[k];
    gin[k] = NULL;
    if (!gi) continue;
    if (!n->needs[k]) { cf_tensor_release(gi); continue; }
    if (n->next[k]) rc = accumulate(&n->next[k]->gacc, gi);
    else rc = accumulate_leaf(n->leaf[k], gi);
  }
  for (int k = 0; k < n->nin; k++) cf_tensor_release(gin[k]);
  free(gin);
  if (rc == 0 && !retain) node_free_saved(n);
  cf_prof_pop(region);
  return rc;
}

const char *cf_grad_cut_message(const cf_tensor *t) {
  static _Thread_local char msg[400];
  snprintf(msg, sizeof msg, "backward: the tensor does not require grad: it depends on the tensors that do only "
           "through %s, which has no gradient (comparisons, sign, argmax, argmin and argsort have none); its "
           "other inputs, if any, were computed without gradients (inside confit.no_grad, from detached "
           "tensors, or from a model not made trainable)", t->grad_cut_by ? t->grad_cut_by : "?");
  return msg;
}

static int backward(cf_tensor *t, cf_tensor *seed, bool retain_graph) {
  if (!t->requires_grad && t->grad_cut_by) return CF_ERR("%s", cf_grad_cut_message(t));
  if (!t->requires_grad)
    return CF_ERR("backward: the tensor does not require grad (no input had requires_grad, or it was computed "
                  "with gradients off)");
  int64_t numel = cf_tensor_numel(t);
  cf_tensor *s = NULL;
  if (seed) {
    if (!cf_same_shape(seed, t)) {
      char a[128], b[128];
      return CF_ERR("backward: seed gradient %s does not match the tensor %s",
                    cf_shape_str(seed, a, sizeof a), cf_shape_str(t, b, sizeof b));
    }
    s = seed->dtype == t->dtype ? (cf_tensor_retain(seed), seed) : cf_tensor_to_dtype(seed, t->dtype);
  } else {
    if (numel != 1) {
      char b[128];
      return CF_ERR("backward: the tensor %s has %lld elements; give a seed gradient of its shape",
                    cf_shape_str(t, b, sizeof b), (long long)numel);
    }
    cf_tensor *one = cf_tensor_full(t->ndim, t->shape, t->dtype, 1.0);
    s = one && cf_tensor_device(t) != CF_DEVICE_CPU ? cf_tensor_to_device(one, cf_tensor_device(t)) : one;
    if (s != one) cf_tensor_release(one);
  }
  if (!s) return -1;
  bool old = cf_set_grad_enabled(false);
  int rc = 0;
  if (!t->grad_fn) {
    rc = accumulate_leaf(t, s);
    cf_set_grad_enabled(old);
    return rc;
  }
  cf_node **order = NULL;
  size_t count = 0;
  if (topo_order(t->grad_fn, &order, &count)) { cf_tensor_release(s); cf_set_grad_enabled(old); return -1; }
  for (size_t i = 0; i < count; i++) {
    if (order[i]->freed) {
      free(order);
      cf_tensor_release(s);
      cf_set_grad_enabled(old);
      return CF_ERR("backward: the graph was already freed by an earlier backward "
                    "(pass retain_graph = true to the first one)");
    }
  }
  /* every saved value is checked before any gradient moves */
  for (size_t i = 0; i < count; i++) {
    if (check_node(order[i])) {
      free(order);
      cf_tensor_release(s);
      cf_set_grad_enabled(old);
      return -1;
    }
  }
  cf_tensor_release(t->grad_fn->gacc);
  t->grad_fn->gacc = s;
  for (size_t i = count; i-- > 0 && rc == 0;) rc = run_node(order[i], retain_graph);
  if (rc) for (size_t i = 0; i < count; i++) { cf_tensor_release(order[i]->gacc); order[i]->gacc = NULL; }
  free(order);
  cf_set_grad_enabled(old);
  return rc;
}

int cf_backward(cf_tensor *t, cf_tensor *seed, bool retain_graph) {
  const char *old = cf_prof_set_phase("bwd");
  int rc = backward(t, seed, retain_graph);
  cf_prof_set_phase(old);
  return rc;
}
