/* optim.h - optimizers over a list of parameter tensors: AdamW (decoupled weight decay) and SGD
 * with momentum, gradient-norm clipping, and the optimizer state as named tensors.
 *
 * Semantics follow PyTorch (torch.optim.AdamW / SGD, torch.nn.utils.clip_grad_norm_):
 *   AdamW, per parameter with a gradient, t = its own update count:
 *     p -= lr * wd * p;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
 *     p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
 *   SGD:  g += wd * p;  buf = g on the first update, else buf = momentum buf + (1 - dampening) g;
 *         g = nesterov ? g + momentum buf : buf  (only with momentum != 0);  p -= lr g
 * Parameters without a gradient (p->grad == NULL) are skipped and their state is untouched.
 *
 * Ownership: the optimizer holds a reference to every parameter and owns its state tensors.
 * Parameters must be contiguous floating leaf tensors that share no memory (two views of one
 * storage may be parameters only when their elements are disjoint). Every step bumps the version
 * of each parameter it writes (tensor.h), so a graph that saved one refuses a later backward.
 * Ranges: lr, weight_decay, momentum finite and >= 0; betas in [0, 1); eps finite and >= 0
 * (PyTorch allows an infinite eps, which makes every update 0); dampening in [0, 1]. State tensors have the
 * parameter's shape and device; they are created at a parameter's first update.
 *
 * Master weights: a bf16 parameter gets an fp32 master copy (same shape and device), made from
 * the parameter at its first update (or installed by cf_optim_master_set, e.g. from a saved
 * state). The update reads and writes the master, in f32 arithmetic, and then stores
 * bf16(master) (round to nearest even) into the parameter: an update below bf16's resolution
 * (lr 1e-6 on a weight near 1) accumulates in the master instead of being lost. The master is
 * part of the saved state, so a resume continues bit for bit. The master is the truth: a value
 * written into a bf16 parameter by anything but the optimizer is overwritten at its next update
 * (reload the state, or clear the master with cf_optim_master_set(o, i, NULL) to re-derive it
 * from the parameter). f32 and f64 parameters are updated in place and have no master.
 *
 * State dtype (cfg.state_dtype): the AdamW moments and the SGD momentum buffer of f32 and bf16
 * parameters are f32 (CF_DTYPE_F32, the default) or bf16 (CF_DTYPE_BF16: half the memory, so a
 * 7B full fine-tune fits one 141 GB H200). With bf16 state the kernels load the moments, compute
 * in f32 and store them rounded to nearest even; the update uses the unrounded values. Masters
 * stay f32. f64 parameters (gradient checks) always keep f64 state. Caveat of bf16 state: a
 * moment that changes by less than half a bf16 ulp per step stays put, e.g. exp_avg_sq with
 * beta2 = 0.999 cannot decay by (1 - beta2) = 0.1% per step (half a bf16 ulp is 0.2-0.4%); it
 * still grows with large gradients. A state tensor whose dtype differs from cfg.state_dtype (the
 * option changed between steps) is converted at the parameter's next update.
 *
 * Devices: the per-tensor updates go through a kernel table per device. The CPU kernels are
 * built in (OpenMP over large tensors; f32 and f64 parameters, and bf16 parameters with their
 * master); a device layer registers its own (e.g. a fused CUDA AdamW) with
 * cf_optim_register_kernels. Every tensor a kernel receives is contiguous and on that device;
 * g has p's dtype.
 */
#ifndef CF_OPTIM_H
#define CF_OPTIM_H

#include <stdbool.h>
#include <stdint.h>
#include "tensor.h"

typedef enum { CF_OPTIM_ADAMW = 0, CF_OPTIM_SGD = 1 } cf_optim_kind;

typedef struct cf_optim_config {
  cf_optim_kind kind;
  double lr;
  double weight_decay;          /* AdamW: decoupled; SGD: L2 term added to the gradient */
  double beta1, beta2, eps;     /* AdamW */
  double momentum, dampening;   /* SGD */
  bool nesterov;                /* SGD (needs momentum > 0 and dampening 0) */
  cf_dtype state_dtype;         /* moments / momentum buffer of f32 and bf16 parameters: F32 or BF16 */
} cf_optim_config;

typedef struct cf_optim {
  cf_optim_config cfg;
  int64_t steps;          /* cf_optim_step calls that updated some parameter (a call with no
                           * gradient at all changes nothing and is not counted) */
  int n;                  /* parameters */
  cf_tensor **params;     /* owned references */
  cf_tensor **state[2];   /* per parameter: AdamW exp_avg / exp_avg_sq, SGD momentum_buffer; NULL until used */
  cf_tensor **master;     /* per parameter: f32 master copy of a bf16 parameter; NULL otherwise or until used */
  int64_t *param_steps;   /* updates applied to each parameter (AdamW bias correction) */
} cf_optim;

/* PyTorch's defaults: AdamW lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight_decay 0.01;
 * SGD lr 1e-3 (PyTorch has none), momentum 0, dampening 0, weight_decay 0, nesterov false;
 * state_dtype f32 for both. */
cf_optim_config cf_optim_defaults(cf_optim_kind kind);

/* Checks the config and the parameters; NULL + message on error. Retains the parameters. */
cf_optim *cf_optim_new(const cf_optim_config *cfg, cf_tensor *const *params, int n);
void cf_optim_free(cf_optim *o);   /* NULL is fine */
int cf_optim_check_config(const cf_optim_config *cfg);
int cf_optim_step(cf_optim *o);
void cf_optim_zero_grad(cf_optim *o);   /* drops every parameter's .grad */

/* Scales all gradients in place so that their global L2 norm is at most max_norm (coefficient
 * max_norm / (norm + 1e-6), applied only when below 1); *total_norm gets the norm before
 * clipping. A non-finite norm is returned as is and nothing is scaled. A strided gradient (a
 * view) is scaled where it lies, its storage's version bumped, as every other one's. */
int cf_clip_grad_norm(cf_tensor *const *params, int n, double max_norm, double *total_norm);

/* ---- state as named tensors ---- */
int cf_optim_nslots(const cf_optim *o);                    /* 2 AdamW, 1 SGD with momentum, else 0 */
const char *cf_optim_slot_name(const cf_optim *o, int slot); /* "exp_avg", "exp_avg_sq", "momentum_buffer" */
cf_tensor *cf_optim_state_get(const cf_optim *o, int param, int slot);  /* borrowed or NULL */
/* Installs a copy of src (NULL clears the slot); src must have the parameter's shape. The copy is
 * on the parameter's device, in f64 for an f64 parameter and cfg.state_dtype otherwise. */
int cf_optim_state_set(cf_optim *o, int param, int slot, cf_tensor *src);
/* The f32 master copy of bf16 parameter `param` (borrowed), NULL when it has none (yet). */
cf_tensor *cf_optim_master_get(const cf_optim *o, int param);
/* Installs an f32 copy of src (any floating dtype and device, the parameter's shape) as the
 * master of a bf16 parameter; NULL clears it (the next update re-derives it from the parameter).
 * The parameter itself is left as it is. Refused for f32 and f64 parameters. */
int cf_optim_master_set(cf_optim *o, int param, cf_tensor *src);

/* ---- per-device kernels ---- */
typedef struct cf_adamw_hyper {
  double lr, beta1, beta2, eps, weight_decay;
  double bias1, bias2;    /* 1 - beta1^t, 1 - beta2^t for this parameter's t */
} cf_adamw_hyper;

/* One parameter of a batched AdamW update (cf_optim_kernels.adamw_many). */
typedef struct cf_adamw_item {
  cf_tensor *p, *master, *g, *m, *v;   /* as for cf_optim_kernels.adamw */
  cf_adamw_hyper h;                    /* hyper-parameters with this parameter's bias corrections */
  int index;                           /* the parameter's position in the optimizer (messages) */
} cf_adamw_item;

typedef struct cf_sgd_hyper {
  double lr, weight_decay, momentum, dampening;
  bool nesterov;
  bool first;             /* the momentum buffer is uninitialised: buf = g */
} cf_sgd_hyper;

typedef struct cf_optim_kernels {
  /* p, g: [n] of p's dtype; master: [n] f32 for a bf16 p (the update reads and writes it, then
   * p = bf16(master)), NULL for f32 and f64 p; m, v: [n] state dtype (f64 for an f64 p, else
   * f32 or bf16: math in f32, stored rounded). */
  int (*adamw)(cf_tensor *p, cf_tensor *master, cf_tensor *g, cf_tensor *m, cf_tensor *v,
               const cf_adamw_hyper *h);
  /* master as for adamw; buf [n] state dtype, NULL when momentum == 0. g is read only. */
  int (*sgd)(cf_tensor *p, cf_tensor *master, cf_tensor *g, cf_tensor *buf, const cf_sgd_hyper *h);
  int (*sumsq)(cf_tensor *g, double *out);    /* sum of g^2 */
  int (*scale)(cf_tensor *g, double s);       /* g *= s in place */
  /* The AdamW update of n parameters of this device in few launches (the GPU fuses them);
   * exactly the per-parameter adamw's result. NULL: adamw is called per parameter. */
  int (*adamw_many)(const cf_adamw_item *items, int n);
} cf_optim_kernels;

void cf_optim_register_kernels(cf_device dev, const cf_optim_kernels *k);

#endif
