/* autograd.h - reverse-mode automatic differentiation over a tape of nodes.
 *
 * cf_op() records a node for every op whose output needs a gradient: the op id, its args, the
 * saved inputs, an alias of the output (sharing storage, never the output object itself, so no
 * reference cycle), and for each input either the node that produced it (next) or the leaf
 * tensor whose .grad receives the gradient. cf_backward() walks the nodes reachable from a
 * tensor in reverse topological order (iteratively: long chains do not recurse), calls each
 * op's backward rule with gradients disabled, reduces broadcast gradients to the input's shape,
 * and accumulates into leaf .grad (bf16 gradients on the CPU, where bf16 is a storage type that
 * only the layout ops take, are added in f32 and converted back). Unless retain_graph is set,
 * each node's saved tensors are released as soon as it has run; a second backward through it is
 * then an error.
 *
 * In-place writes: a node records the storage version (tensor.h) of each saved input and of its
 * output when it is made. Before any rule runs, cf_backward checks, for every node it will visit,
 * its output (a computed tensor written in place, itself or through a view, no longer holds the
 * value whose gradient the tape passes on; exp's backward reads it too) and the inputs that
 * node's backward reads the values of (a per-op list in autograd.c: mul reads the other factor,
 * add nothing); a version that moved means the tensor was written in place after the node saved
 * it, and the backward is refused with the op, the tensor and its shape named, before any
 * gradient is accumulated. A custom node checks its own extra
 * state through check_saved.
 */
#ifndef CF_AUTOGRAD_H
#define CF_AUTOGRAD_H

#include <stdbool.h>
#include "tensor.h"
#include "ops.h"

struct cf_node;

/* A node whose backward is a C function rather than an op's rule (activation recomputation,
 * core/nn/qwen2.c). backward fills gin[k] for the inputs with needs[k] and may accumulate into
 * other leaves itself; it runs with gradients disabled like the op rules and reads its state
 * from n->ctx and the saved inputs n->in. free_ctx releases ctx (once, when the node's saved
 * state is released). */
typedef struct cf_custom_fn {
  const char *name;    /* in errors and profiles */
  int (*backward)(struct cf_node *n, cf_tensor *gout, cf_tensor **gin);
  void (*free_ctx)(void *ctx);
  /* Optional: -1 + message when state in ctx that backward will read was written in place since
   * the node was made (cf_autograd_check_saved); the saved inputs are checked by the engine. */
  int (*check_saved)(const struct cf_node *n);
} cf_custom_fn;

typedef struct cf_node {
  int refcount;
  int op;              /* cf_op_id; -1 for a custom node */
  const cf_custom_fn *custom; /* the backward of a custom node, else NULL */
  void *ctx;           /* a custom node's state (owned) */
  cf_args args;
  int nin;
  cf_tensor **in;      /* saved inputs (owned refs; NULL entries for absent optionals) */
  cf_tensor *out;      /* alias of the output (owned ref) */
  struct cf_node **next; /* producer of input i (owned ref) or NULL */
  cf_tensor **leaf;    /* leaf input i that accumulates a gradient (owned ref) or NULL */
  bool *needs;         /* input i needs a gradient */
  uint64_t *version;   /* storage version of in[i] (i < nin) and of out (i = nin) when recorded */
  bool freed;          /* saved tensors released after a backward pass */
  /* used during one backward pass */
  cf_tensor *gacc;
  int pending;
  int mark;
} cf_node;

bool cf_grad_enabled(void);
bool cf_set_grad_enabled(bool on);    /* returns the previous setting */

void cf_node_retain(cf_node *n);
void cf_node_release(cf_node *n);     /* NULL is fine */

/* Called by cf_op: attach a node to out when an input needs a gradient. */
int cf_autograd_record(cf_op_id id, cf_tensor *const *in, int nin, const cf_args *a, cf_tensor *out);

/* Attach a custom node to out: every floating input that requires grad gets a gradient from
 * fn->backward. With force the node is recorded even when no input requires grad (its backward
 * reaches leaves of its own, e.g. a layer's weights). ctx belongs to the node from this call on,
 * also when it fails (then it is freed at once). */
int cf_autograd_record_custom(const cf_custom_fn *fn, void *ctx, cf_tensor *const *in, int nin, cf_tensor *out,
                              bool force);

/* The op name of a node, or its custom function's name. */
const char *cf_node_name(const cf_node *n);

/* 0 when t's storage version is still `version`, else -1 + "backward: <what> <shape> of <op> was
 * modified in place (fill_, copy_, set or an optimizer step) after <op> saved it ...". */
int cf_autograd_check_saved(const char *op, const char *what, const cf_tensor *t, uint64_t version);

/* Backpropagate from t. seed may be NULL when t has one element (seed 1). */
int cf_backward(cf_tensor *t, cf_tensor *seed, bool retain_graph);
/* backward's message for a tensor whose dependence on the tensors that require grad goes only
 * through a no-gradient op (t->grad_cut_by set): names the op. */
const char *cf_grad_cut_message(const cf_tensor *t);

/* Sum g over broadcast dims so it has the given shape (new reference). A bf16 g on the CPU, where
 * no sum kernel takes bf16, is summed in f32 and converted back once. */
cf_tensor *cf_sum_to(cf_tensor *g, int ndim, const int64_t *shape);

/* A tensor sharing t's data with no autograd history (new reference). */
cf_tensor *cf_detach(cf_tensor *t);

/* Set or clear t->grad (releases the old one). */
void cf_zero_grad(cf_tensor *t);

#endif
