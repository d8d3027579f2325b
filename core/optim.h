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
 * Parameters must be contiguous floating leaf tensors, all distinct. State tensors have the
 * parameter's shape and device, in f64 for f64 parameters and f32 otherwise (fp32 optimizer
 * state for bf16 weights); they are created at a parameter's first update.
 *
 * Devices: the per-tensor updates go through a kernel table per device. The CPU kernels are
 * built in (OpenMP over large tensors); a device layer registers its own (e.g. a fused CUDA
 * AdamW) with cf_optim_register_kernels. Every tensor a kernel receives is contiguous and on
 * that device; g has p's dtype.
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
} cf_optim_config;

typedef struct cf_optim {
  cf_optim_config cfg;
  int64_t steps;          /* cf_optim_step calls so far */
  int n;                  /* parameters */
  cf_tensor **params;     /* owned references */
  cf_tensor **state[2];   /* per parameter: AdamW exp_avg / exp_avg_sq, SGD momentum_buffer; NULL until used */
  int64_t *param_steps;   /* updates applied to each parameter (AdamW bias correction) */
} cf_optim;

/* PyTorch's defaults: AdamW lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight_decay 0.01;
 * SGD lr 1e-3 (PyTorch has none), momentum 0, dampening 0, weight_decay 0, nesterov false. */
cf_optim_config cf_optim_defaults(cf_optim_kind kind);

/* Checks the config and the parameters; NULL + message on error. Retains the parameters. */
cf_optim *cf_optim_new(const cf_optim_config *cfg, cf_tensor *const *params, int n);
void cf_optim_free(cf_optim *o);   /* NULL is fine */
int cf_optim_check_config(const cf_optim_config *cfg);
int cf_optim_step(cf_optim *o);
void cf_optim_zero_grad(cf_optim *o);   /* drops every parameter's .grad */

/* Scales all gradients so that their global L2 norm is at most max_norm (coefficient
 * max_norm / (norm + 1e-6), applied only when below 1); *total_norm gets the norm before
 * clipping. A non-finite norm is returned as is and nothing is scaled. */
int cf_clip_grad_norm(cf_tensor *const *params, int n, double max_norm, double *total_norm);

/* ---- state as named tensors ---- */
int cf_optim_nslots(const cf_optim *o);                    /* 2 AdamW, 1 SGD with momentum, else 0 */
const char *cf_optim_slot_name(const cf_optim *o, int slot); /* "exp_avg", "exp_avg_sq", "momentum_buffer" */
cf_tensor *cf_optim_state_get(const cf_optim *o, int param, int slot);  /* borrowed or NULL */
/* Installs a copy of src (NULL clears the slot); src must have the parameter's shape. */
int cf_optim_state_set(cf_optim *o, int param, int slot, cf_tensor *src);

/* ---- per-device kernels ---- */
typedef struct cf_adamw_hyper {
  double lr, beta1, beta2, eps, weight_decay;
  double bias1, bias2;    /* 1 - beta1^t, 1 - beta2^t for this parameter's t */
} cf_adamw_hyper;

typedef struct cf_sgd_hyper {
  double lr, weight_decay, momentum, dampening;
  bool nesterov;
  bool first;             /* the momentum buffer is uninitialised: buf = g */
} cf_sgd_hyper;

typedef struct cf_optim_kernels {
  /* p, g: [n] of p's dtype; m, v: [n] state dtype. */
  int (*adamw)(cf_tensor *p, cf_tensor *g, cf_tensor *m, cf_tensor *v, const cf_adamw_hyper *h);
  /* buf NULL when momentum == 0. g is read only. */
  int (*sgd)(cf_tensor *p, cf_tensor *g, cf_tensor *buf, const cf_sgd_hyper *h);
  int (*sumsq)(cf_tensor *g, double *out);    /* sum of g^2 */
  int (*scale)(cf_tensor *g, double s);       /* g *= s in place */
} cf_optim_kernels;

void cf_optim_register_kernels(cf_device dev, const cf_optim_kernels *k);

#endif
