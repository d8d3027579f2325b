/* optim.c - AdamW, SGD with momentum, grad-norm clipping (see optim.h).
 *
 * The driver (cf_optim_step) does the bookkeeping shared by every device: skips parameters
 * without a gradient, makes the gradient contiguous in the parameter's dtype, creates the state
 * at a parameter's first update, counts per-parameter steps for the bias correction, then
 * calls the device's per-tensor kernel. The CPU kernels below are plain loops in double
 * arithmetic (f32 and bf16 parameters: rounded to f32 per element, like the CUDA kernels' f32
 * math), parallel with OpenMP over large tensors. A bf16 parameter is updated through its f32
 * master copy, which the driver creates from the parameter at its first update; the kernels
 * then write bf16(master) into the parameter. State tensors are f64 for f64 parameters and
 * cfg.state_dtype (f32 or bf16) otherwise; an existing state of another dtype is converted
 * before the kernel sees it.
 */
#include "optim.h"
#include "autograd.h"
#include "error.h"
#include "profile.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define OMP_MIN 65536

static const char *kind_name(cf_optim_kind k) { return k == CF_OPTIM_ADAMW ? "adamw" : "sgd"; }

/* ---------------------------------------------------------------- CPU kernels */

/* p f64 with f64 state; p f32 with f32/bf16 state; p bf16 with an f32 master and f32/bf16 state. */
static int cpu_check(const char *what, const cf_tensor *p, const cf_tensor *master, const cf_tensor *s0,
                     const cf_tensor *s1) {
  if (p->dtype != CF_DTYPE_F32 && p->dtype != CF_DTYPE_F64 && p->dtype != CF_DTYPE_BF16)
    return CF_ERR("%s: %s parameters are not supported on the CPU (f32, f64, or bf16 with a master)", what,
                  cf_dtype_name(p->dtype));
  if ((p->dtype == CF_DTYPE_BF16) != (master != NULL))
    return CF_ERR("%s: a %s parameter %s", what, cf_dtype_name(p->dtype),
                  master ? "has no master copy" : "needs its f32 master copy");
  if (master && master->dtype != CF_DTYPE_F32)
    return CF_ERR("%s: the master copy is %s, expected f32", what, cf_dtype_name(master->dtype));
  const cf_tensor *st[2] = {s0, s1};
  for (int k = 0; k < 2; k++) {
    if (!st[k]) continue;
    bool ok = p->dtype == CF_DTYPE_F64 ? st[k]->dtype == CF_DTYPE_F64
                                       : st[k]->dtype == CF_DTYPE_F32 || st[k]->dtype == CF_DTYPE_BF16;
    if (!ok) return CF_ERR("%s: %s state for a %s parameter", what, cf_dtype_name(st[k]->dtype),
                           cf_dtype_name(p->dtype));
  }
  return 0;
}

/* State element i of an f32 or bf16 buffer. */
static inline double st_load(const void *s, bool bf, int64_t i) {
  return bf ? cf_bf16_to_float(((const uint16_t *)s)[i]) : ((const float *)s)[i];
}
static inline void st_store(void *s, bool bf, int64_t i, double x) {
  if (bf) ((uint16_t *)s)[i] = cf_float_to_bf16((float)x);
  else ((float *)s)[i] = (float)x;
}

/* w: the f32 weights an update reads and writes (the master of a bf16 parameter, else p itself);
 * pb: the bf16 parameter to refresh with bf16(w), NULL for f32; gf / gh: g as f32 or bf16. */
typedef struct {
  float *w;
  uint16_t *pb;
  const float *gf;
  const uint16_t *gh;
} f32_view;

static f32_view f32_weights(cf_tensor *p, cf_tensor *master, cf_tensor *g) {
  f32_view v = {NULL, NULL, NULL, NULL};
  if (master) { v.w = cf_tensor_data(master); v.pb = cf_tensor_data(p); }
  else v.w = cf_tensor_data(p);
  if (g->dtype == CF_DTYPE_BF16) v.gh = cf_tensor_data(g);
  else v.gf = cf_tensor_data(g);
  return v;
}

/* p, g, m, v: [n] contiguous; all f64, or f32 math on p (or the master of a bf16 p). */
static int cpu_adamw(cf_tensor *p, cf_tensor *master, cf_tensor *g, cf_tensor *m, cf_tensor *v,
                     const cf_adamw_hyper *h) {
  if (cpu_check("adamw", p, master, m, v)) return -1;
  int64_t n = cf_tensor_numel(p);
  const double decay = 1.0 - h->lr * h->weight_decay;
  const double step = h->lr / h->bias1, sqrt_b2 = sqrt(h->bias2);
  const double b1 = h->beta1, b2 = h->beta2, eps = h->eps;
  if (p->dtype != CF_DTYPE_F64) {
    f32_view w = f32_weights(p, master, g);
    void *mp = cf_tensor_data(m), *vp = cf_tensor_data(v);
    const bool mbf = m->dtype == CF_DTYPE_BF16, vbf = v->dtype == CF_DTYPE_BF16;
    #pragma omp parallel for if (n > OMP_MIN)
    for (int64_t i = 0; i < n; i++) {
      double gi = w.gh ? cf_bf16_to_float(w.gh[i]) : w.gf[i];
      double mi = b1 * st_load(mp, mbf, i) + (1 - b1) * gi;
      double vi = b2 * st_load(vp, vbf, i) + (1 - b2) * gi * gi;
      st_store(mp, mbf, i, mi);
      st_store(vp, vbf, i, vi);
      float x = (float)(w.w[i] * decay - step * mi / (sqrt(vi) / sqrt_b2 + eps));
      w.w[i] = x;
      if (w.pb) w.pb[i] = cf_float_to_bf16(x);
    }
  } else {
    double *pp = cf_tensor_data(p), *mp = cf_tensor_data(m), *vp = cf_tensor_data(v);
    const double *gp = cf_tensor_data(g);
    #pragma omp parallel for if (n > OMP_MIN)
    for (int64_t i = 0; i < n; i++) {
      double gi = gp[i];
      double mi = b1 * mp[i] + (1 - b1) * gi;
      double vi = b2 * vp[i] + (1 - b2) * gi * gi;
      mp[i] = mi;
      vp[i] = vi;
      pp[i] = pp[i] * decay - step * mi / (sqrt(vi) / sqrt_b2 + eps);
    }
  }
  return 0;
}

/* One SGD element: returns the new parameter, updates *buf when there is one. */
static inline double sgd_elem(double p, double g, double *buf, const cf_sgd_hyper *h) {
  double d = g + h->weight_decay * p;
  if (buf) {
    *buf = h->first ? d : h->momentum * *buf + (1 - h->dampening) * d;
    d = h->nesterov ? d + h->momentum * *buf : *buf;
  }
  return p - h->lr * d;
}

static int cpu_sgd(cf_tensor *p, cf_tensor *master, cf_tensor *g, cf_tensor *buf, const cf_sgd_hyper *h) {
  if (cpu_check("sgd", p, master, buf, NULL)) return -1;
  int64_t n = cf_tensor_numel(p);
  if (p->dtype != CF_DTYPE_F64) {
    f32_view w = f32_weights(p, master, g);
    void *bp = buf ? cf_tensor_data(buf) : NULL;
    const bool bbf = buf && buf->dtype == CF_DTYPE_BF16;
    #pragma omp parallel for if (n > OMP_MIN)
    for (int64_t i = 0; i < n; i++) {
      double gi = w.gh ? cf_bf16_to_float(w.gh[i]) : w.gf[i];
      double b = bp ? st_load(bp, bbf, i) : 0;
      float x = (float)sgd_elem(w.w[i], gi, bp ? &b : NULL, h);
      if (bp) st_store(bp, bbf, i, b);
      w.w[i] = x;
      if (w.pb) w.pb[i] = cf_float_to_bf16(x);
    }
  } else {
    double *pp = cf_tensor_data(p), *bp = buf ? cf_tensor_data(buf) : NULL;
    const double *gp = cf_tensor_data(g);
    #pragma omp parallel for if (n > OMP_MIN)
    for (int64_t i = 0; i < n; i++) pp[i] = sgd_elem(pp[i], gp[i], bp ? &bp[i] : NULL, h);
  }
  return 0;
}

static int cpu_sumsq(cf_tensor *g, double *out) {
  int64_t n = cf_tensor_numel(g);
  double s = 0;
  switch (g->dtype) {
    case CF_DTYPE_F32: {
      const float *x = cf_tensor_data(g);
      #pragma omp parallel for reduction(+ : s) if (n > OMP_MIN)
      for (int64_t i = 0; i < n; i++) s += (double)x[i] * x[i];
      break;
    }
    case CF_DTYPE_F64: {
      const double *x = cf_tensor_data(g);
      #pragma omp parallel for reduction(+ : s) if (n > OMP_MIN)
      for (int64_t i = 0; i < n; i++) s += x[i] * x[i];
      break;
    }
    case CF_DTYPE_BF16: {
      const uint16_t *x = cf_tensor_data(g);
      #pragma omp parallel for reduction(+ : s) if (n > OMP_MIN)
      for (int64_t i = 0; i < n; i++) { double f = cf_bf16_to_float(x[i]); s += f * f; }
      break;
    }
    default: return CF_ERR("clip_grad_norm: %s gradient", cf_dtype_name(g->dtype));
  }
  *out = s;
  return 0;
}

static int cpu_scale(cf_tensor *g, double k) {
  int64_t n = cf_tensor_numel(g);
  switch (g->dtype) {
    case CF_DTYPE_F32: {
      float *x = cf_tensor_data(g);
      #pragma omp parallel for if (n > OMP_MIN)
      for (int64_t i = 0; i < n; i++) x[i] = (float)(x[i] * k);
      break;
    }
    case CF_DTYPE_F64: {
      double *x = cf_tensor_data(g);
      #pragma omp parallel for if (n > OMP_MIN)
      for (int64_t i = 0; i < n; i++) x[i] *= k;
      break;
    }
    case CF_DTYPE_BF16: {
      uint16_t *x = cf_tensor_data(g);
      #pragma omp parallel for if (n > OMP_MIN)
      for (int64_t i = 0; i < n; i++) x[i] = cf_float_to_bf16((float)(cf_bf16_to_float(x[i]) * k));
      break;
    }
    default: return CF_ERR("clip_grad_norm: %s gradient", cf_dtype_name(g->dtype));
  }
  return 0;
}

/* The CPU has nothing to fuse; it goes through the batched entry anyway so that the batching
 * in cf_optim_step is exercised (and tested) on every machine. */
static int cpu_adamw_many(const cf_adamw_item *it, int n) {
  for (int i = 0; i < n; i++)
    if (cpu_adamw(it[i].p, it[i].master, it[i].g, it[i].m, it[i].v, &it[i].h))
      return cf_error_prefix("parameter %d: ", it[i].index + 1);
  return 0;
}

static cf_optim_kernels kernels[2] = {{cpu_adamw, cpu_sgd, cpu_sumsq, cpu_scale, cpu_adamw_many},
                                      {NULL, NULL, NULL, NULL, NULL}};

void cf_optim_register_kernels(cf_device dev, const cf_optim_kernels *k) {
  if ((int)dev >= 0 && (int)dev < 2) kernels[dev] = *k;
}

static const cf_optim_kernels *kernels_for(const char *what, const cf_tensor *t) {
  cf_device dev = cf_tensor_device(t);
  const cf_optim_kernels *k = (int)dev < 2 ? &kernels[dev] : NULL;
  if (!k || !k->adamw) {
    CF_ERR("%s: no optimizer kernels for device %s", what, cf_device_name(dev));
    return NULL;
  }
  return k;
}

/* ---------------------------------------------------------------- construction */

cf_optim_config cf_optim_defaults(cf_optim_kind kind) {
  cf_optim_config c;
  memset(&c, 0, sizeof c);
  c.kind = kind;
  c.lr = 1e-3;
  c.state_dtype = CF_DTYPE_F32;
  if (kind == CF_OPTIM_ADAMW) {
    c.beta1 = 0.9;
    c.beta2 = 0.999;
    c.eps = 1e-8;
    c.weight_decay = 0.01;
  }
  return c;
}

int cf_optim_check_config(const cf_optim_config *c) {
  const char *k = kind_name(c->kind);
  if (!(c->lr >= 0) || !isfinite(c->lr)) return CF_ERR("%s: lr must be >= 0, got %g", k, cf_msgnum(c->lr));
  if (!(c->weight_decay >= 0) || !isfinite(c->weight_decay))
    return CF_ERR("%s: weight_decay must be >= 0, got %g", k, cf_msgnum(c->weight_decay));
  if (c->kind == CF_OPTIM_ADAMW) {
    if (!(c->beta1 >= 0 && c->beta1 < 1) || !(c->beta2 >= 0 && c->beta2 < 1))
      return CF_ERR("adamw: betas must be in [0, 1), got {%g, %g}", cf_msgnum(c->beta1), cf_msgnum(c->beta2));
    /* PyTorch asks eps >= 0; an infinite eps would turn every update into 0 without a word */
    if (!(c->eps >= 0) || !isfinite(c->eps)) return CF_ERR("adamw: eps must be finite and >= 0, got %g", cf_msgnum(c->eps));
  } else {
    if (!(c->momentum >= 0) || !isfinite(c->momentum))
      return CF_ERR("sgd: momentum must be >= 0, got %g", cf_msgnum(c->momentum));
    if (!(c->dampening >= 0 && c->dampening <= 1))
      return CF_ERR("sgd: dampening must be in [0, 1], got %g", cf_msgnum(c->dampening));
    if (c->nesterov && (c->momentum <= 0 || c->dampening != 0))
      return CF_ERR("sgd: nesterov needs momentum > 0 and dampening 0");
  }
  if (c->state_dtype != CF_DTYPE_F32 && c->state_dtype != CF_DTYPE_BF16)
    return CF_ERR("%s: state_dtype must be f32 or bf16, got %s", k,
                  (unsigned)c->state_dtype < CF_DTYPE_COUNT ? cf_dtype_name(c->state_dtype) : "?");
  return 0;
}

/* Two contiguous parameters share bytes of one storage (disjoint views, e.g. the GPU's q/k/v
 * in one allocation, do not). */
static bool params_overlap(const cf_tensor *a, const cf_tensor *b) {
  if (a->storage != b->storage) return false;
  int64_t na = cf_tensor_numel(a), nb = cf_tensor_numel(b);
  if (na == 0 || nb == 0) return false;
  size_t alo = (size_t)a->offset * cf_dtype_size(a->dtype), ahi = alo + (size_t)na * cf_dtype_size(a->dtype);
  size_t blo = (size_t)b->offset * cf_dtype_size(b->dtype), bhi = blo + (size_t)nb * cf_dtype_size(b->dtype);
  return alo < bhi && blo < ahi;
}

cf_optim *cf_optim_new(const cf_optim_config *cfg, cf_tensor *const *params, int n) {
  const char *k = kind_name(cfg->kind);
  if (cf_optim_check_config(cfg)) return NULL;
  if (n < 0) { CF_ERR("%s: negative parameter count", k); return NULL; }
  for (int i = 0; i < n; i++) {
    cf_tensor *p = params[i];
    char b[128];
    if (!p || !p->storage) { CF_ERR("%s: parameter %d is missing or freed", k, i + 1); return NULL; }
    if (!cf_dtype_is_float(p->dtype)) {
      CF_ERR("%s: parameter %d %s is %s; parameters must be floating tensors", k, i + 1,
             cf_shape_str(p, b, sizeof b), cf_dtype_name(p->dtype));
      return NULL;
    }
    if (p->grad_fn) {
      CF_ERR("%s: parameter %d %s is not a leaf (it was computed by %s); pass the leaf tensors", k,
             i + 1, cf_shape_str(p, b, sizeof b), cf_node_name(p->grad_fn));
      return NULL;
    }
    if (!cf_tensor_is_contiguous(p)) {
      CF_ERR("%s: parameter %d %s is not contiguous; use a contiguous copy as the parameter", k, i + 1,
             cf_shape_str(p, b, sizeof b));
      return NULL;
    }
    for (int j = 0; j < i; j++) {
      if (params[j] == p) { CF_ERR("%s: parameter %d is the same tensor as parameter %d", k, i + 1, j + 1); return NULL; }
      if (params_overlap(params[j], p)) {
        char a[128];
        CF_ERR("%s: parameters %d %s and %d %s overlap in memory (views of one storage); each element would be "
               "stepped twice: pass each tensor once", k, j + 1, cf_shape_str(params[j], a, sizeof a), i + 1,
               cf_shape_str(p, b, sizeof b));
        return NULL;
      }
    }
  }
  cf_optim *o = calloc(1, sizeof *o);
  size_t m = (size_t)(n ? n : 1);
  if (o) {
    o->params = calloc(m, sizeof *o->params);
    o->state[0] = calloc(m, sizeof *o->state[0]);
    o->state[1] = calloc(m, sizeof *o->state[1]);
    o->master = calloc(m, sizeof *o->master);
    o->param_steps = calloc(m, sizeof *o->param_steps);
  }
  if (!o || !o->params || !o->state[0] || !o->state[1] || !o->master || !o->param_steps) {
    cf_optim_free(o);
    CF_ERR("%s: out of memory", k);
    return NULL;
  }
  o->cfg = *cfg;
  o->n = n;
  for (int i = 0; i < n; i++) {
    cf_tensor_retain(params[i]);
    o->params[i] = params[i];
  }
  return o;
}

void cf_optim_free(cf_optim *o) {
  if (!o) return;
  for (int i = 0; i < o->n; i++) {
    if (o->params) cf_tensor_release(o->params[i]);
    for (int s = 0; s < 2; s++) if (o->state[s]) cf_tensor_release(o->state[s][i]);
    if (o->master) cf_tensor_release(o->master[i]);
  }
  free(o->params);
  free(o->state[0]);
  free(o->state[1]);
  free(o->master);
  free(o->param_steps);
  free(o);
}

/* ---------------------------------------------------------------- state */

int cf_optim_nslots(const cf_optim *o) {
  if (o->cfg.kind == CF_OPTIM_ADAMW) return 2;
  return o->cfg.momentum != 0 ? 1 : 0;
}

const char *cf_optim_slot_name(const cf_optim *o, int slot) {
  if (o->cfg.kind == CF_OPTIM_ADAMW) return slot == 0 ? "exp_avg" : "exp_avg_sq";
  return "momentum_buffer";
}

cf_tensor *cf_optim_state_get(const cf_optim *o, int param, int slot) {
  if (param < 0 || param >= o->n || slot < 0 || slot > 1) return NULL;
  return o->state[slot][param];
}

static cf_dtype state_dtype(const cf_optim *o, const cf_tensor *p) {
  return p->dtype == CF_DTYPE_F64 ? CF_DTYPE_F64 : o->cfg.state_dtype;
}

int cf_optim_state_set(cf_optim *o, int param, int slot, cf_tensor *src) {
  const char *k = kind_name(o->cfg.kind);
  if (param < 0 || param >= o->n || slot < 0 || slot >= cf_optim_nslots(o))
    return CF_ERR("%s: no state slot %d for parameter %d", k, slot + 1, param + 1);
  cf_tensor *p = o->params[param];
  cf_tensor *c = NULL;
  if (src) {
    if (!cf_same_shape(src, p)) {
      char a[128], b[128];
      return CF_ERR("%s: state %s of parameter %d is %s, the parameter is %s", k,
                    cf_optim_slot_name(o, slot), param + 1, cf_shape_str(src, a, sizeof a),
                    cf_shape_str(p, b, sizeof b));
    }
    c = cf_tensor_empty(p->ndim, p->shape, state_dtype(o, p), cf_tensor_device(p));
    if (!c) return -1;
    if (cf_tensor_copy_(c, src)) { cf_tensor_release(c); return -1; }
  }
  cf_tensor_release(o->state[slot][param]);
  o->state[slot][param] = c;
  return 0;
}

cf_tensor *cf_optim_master_get(const cf_optim *o, int param) {
  if (param < 0 || param >= o->n) return NULL;
  return o->master[param];
}

int cf_optim_master_set(cf_optim *o, int param, cf_tensor *src) {
  const char *k = kind_name(o->cfg.kind);
  if (param < 0 || param >= o->n) return CF_ERR("%s: no parameter %d", k, param + 1);
  cf_tensor *p = o->params[param];
  cf_tensor *c = NULL;
  if (src) {
    char a[128], b[128];
    if (p->dtype != CF_DTYPE_BF16)
      return CF_ERR("%s: parameter %d %s is %s; only bf16 parameters have an f32 master copy", k,
                    param + 1, cf_shape_str(p, b, sizeof b), cf_dtype_name(p->dtype));
    if (!cf_same_shape(src, p))
      return CF_ERR("%s: master of parameter %d is %s, the parameter is %s", k, param + 1,
                    cf_shape_str(src, a, sizeof a), cf_shape_str(p, b, sizeof b));
    if (!cf_dtype_is_float(src->dtype))
      return CF_ERR("%s: master of parameter %d is %s; expected a floating tensor", k, param + 1,
                    cf_dtype_name(src->dtype));
    c = cf_tensor_empty(p->ndim, p->shape, CF_DTYPE_F32, cf_tensor_device(p));
    if (!c) return -1;
    if (cf_tensor_copy_(c, src)) { cf_tensor_release(c); return -1; }
  }
  cf_tensor_release(o->master[param]);
  o->master[param] = c;
  return 0;
}

/* ---------------------------------------------------------------- step */

/* 0 when parameter i's gradient matches it in shape and device, else -1 + message. */
static int check_grad(const char *k, int i, const cf_tensor *p) {
  const cf_tensor *g = p->grad;
  if (cf_same_shape(g, p) && cf_tensor_device(g) == cf_tensor_device(p)) return 0;
  char a[128], b[128];
  return CF_ERR("%s: the gradient of parameter %d is %s on %s, the parameter %s on %s", k, i + 1,
                cf_shape_str(g, a, sizeof a), cf_device_name(cf_tensor_device(g)),
                cf_shape_str(p, b, sizeof b), cf_device_name(cf_tensor_device(p)));
}

/* The gradient of p, contiguous and of p's dtype (new reference), or NULL + message. */
static cf_tensor *usable_grad(const char *k, int i, cf_tensor *p) {
  cf_tensor *g = p->grad;
  if (check_grad(k, i, p)) return NULL;
  if (g->dtype != p->dtype) return cf_tensor_to_dtype(g, p->dtype);
  return cf_tensor_contiguous(g);
}

/* The state tensor of slot for parameter i, created zeroed (*fresh) or converted to the
 * configured state dtype when it has another. */
static int ensure_state(cf_optim *o, int i, int slot, bool *fresh) {
  *fresh = false;
  cf_tensor *p = o->params[i], *s = o->state[slot][i];
  cf_dtype dt = state_dtype(o, p);
  if (s && s->dtype == dt) return 0;
  cf_tensor *c = s ? cf_tensor_to_dtype(s, dt) : cf_tensor_empty(p->ndim, p->shape, dt, cf_tensor_device(p));
  if (!c) return -1;
  cf_tensor_release(s);
  o->state[slot][i] = c;
  *fresh = s == NULL;
  return 0;
}

/* The f32 master of bf16 parameter i (made from the parameter at its first update), else NULL. */
static int ensure_master(cf_optim *o, int i, cf_tensor **master) {
  cf_tensor *p = o->params[i];
  *master = NULL;
  if (p->dtype != CF_DTYPE_BF16) return 0;
  if (!o->master[i]) {
    o->master[i] = cf_tensor_to_dtype(p, CF_DTYPE_F32);
    if (!o->master[i]) return -1;
  }
  *master = o->master[i];
  return 0;
}

/* The AdamW updates of the items on one device: batched when the device has adamw_many. */
static int adamw_device(cf_adamw_item *items, int n, const cf_optim_kernels *kern) {
  if (kern->adamw_many) return kern->adamw_many(items, n) ? cf_error_prefix("adamw: ") : 0;
  for (int i = 0; i < n; i++)
    if (kern->adamw(items[i].p, items[i].master, items[i].g, items[i].m, items[i].v, &items[i].h))
      return cf_error_prefix("adamw: parameter %d: ", items[i].index + 1);
  return 0;
}

/* Every parameter with a gradient is prepared first (gradient in the parameter's dtype, master
 * copy, state); SGD updates it there and then, AdamW collects it and updates all of a device's
 * parameters in one batched call. Per-parameter step counts advance only after the update, the
 * optimizer's step count only after a step that succeeded. */
static int optim_step(cf_optim *o) {
  const char *k = kind_name(o->cfg.kind);
  if (cf_optim_check_config(&o->cfg)) return -1;
  /* what the user can get wrong is checked for every parameter before anything changes (a
   * gradient of another shape or device, a device without kernels): a refused step moves no
   * parameter, state or step count */
  for (int i = 0; i < o->n; i++) {
    cf_tensor *p = o->params[i];
    if (p->grad && (!kernels_for(k, p) || check_grad(k, i, p))) return -1;
  }
  bool adamw = o->cfg.kind == CF_OPTIM_ADAMW;
  cf_adamw_item *items = adamw ? calloc((size_t)(o->n ? o->n : 1), sizeof *items) : NULL;
  if (adamw && !items) return CF_ERR("%s: out of memory", k);
  int nitems = 0, rc = 0;
  bool updated = false;
  for (int i = 0; i < o->n && rc == 0; i++) {
    cf_tensor *p = o->params[i];
    if (!p->grad) continue;
    updated = true;
    const cf_optim_kernels *kern = kernels_for(k, p);
    if (!kern) { rc = -1; break; }
    cf_tensor *g = usable_grad(k, i, p);
    if (!g) { rc = -1; break; }
    bool fresh;
    cf_tensor *master;
    rc = ensure_master(o, i, &master);
    /* the update writes p (and its master) in place: a graph that saved p sees it (tensor.h) */
    cf_tensor_bump_version(p);
    if (master) cf_tensor_bump_version(master);
    if (adamw) {
      if (rc == 0) rc = ensure_state(o, i, 0, &fresh);
      if (rc == 0) rc = ensure_state(o, i, 1, &fresh);
      if (rc) { cf_tensor_release(g); rc = cf_error_prefix("%s: parameter %d: ", k, i + 1); break; }
      double t = (double)(o->param_steps[i] + 1);
      cf_adamw_item *it = &items[nitems++];
      it->p = p; it->master = master; it->g = g; it->m = o->state[0][i]; it->v = o->state[1][i];
      it->h = (cf_adamw_hyper){o->cfg.lr, o->cfg.beta1, o->cfg.beta2, o->cfg.eps, o->cfg.weight_decay,
                               1 - pow(o->cfg.beta1, t), 1 - pow(o->cfg.beta2, t)};
      it->index = i;
      continue;
    }
    if (rc == 0) {
      cf_sgd_hyper h = {o->cfg.lr, o->cfg.weight_decay, o->cfg.momentum, o->cfg.dampening,
                        o->cfg.nesterov, false};
      cf_tensor *buf = NULL;
      if (o->cfg.momentum != 0) {
        rc = ensure_state(o, i, 0, &fresh);
        h.first = fresh;
        buf = o->state[0][i];
      }
      if (rc == 0) {
        o->param_steps[i]++;
        rc = kern->sgd(p, master, g, buf, &h);
      }
    }
    cf_tensor_release(g);
    if (rc) rc = cf_error_prefix("%s: parameter %d: ", k, i + 1);
  }
  /* AdamW: one batched call per device, each with its items in parameter order */
  cf_adamw_item *sub = nitems ? malloc((size_t)nitems * sizeof *sub) : NULL;
  if (rc == 0 && nitems && !sub) rc = CF_ERR("%s: out of memory", k);
  for (int dev = 0; rc == 0 && nitems && dev < 2; dev++) {
    int m = 0;
    for (int j = 0; j < nitems; j++)
      if ((int)cf_tensor_device(items[j].p) == dev) sub[m++] = items[j];
    if (m == 0) continue;
    rc = adamw_device(sub, m, kernels_for(k, sub[0].p));
    if (rc == 0) for (int j = 0; j < m; j++) o->param_steps[sub[j].index]++;
  }
  free(sub);
  for (int j = 0; j < nitems; j++) cf_tensor_release(items[j].g);
  free(items);
  /* a step that failed (out of memory for a state, a master copy or a gradient in the
   * parameter's dtype) is not counted, nor one that had no gradient to apply (it changed
   * nothing; PyTorch's AdamW leaves a parameter without a gradient and its step alone); the
   * per-parameter counts tell which updates happened */
  if (rc == 0 && updated) o->steps++;
  return rc;
}

int cf_optim_step(cf_optim *o) {
  const char *old = cf_prof_set_phase("opt");
  int region = cf_prof_push(kind_name(o->cfg.kind));
  int rc = optim_step(o);
  cf_prof_pop(region);
  cf_prof_set_phase(old);
  return rc;
}

void cf_optim_zero_grad(cf_optim *o) {
  for (int i = 0; i < o->n; i++) cf_zero_grad(o->params[i]);
}

/* ---------------------------------------------------------------- clipping */

/* A strided gradient (a view the user set as .grad) is scaled where it lies, as PyTorch's
 * in-place mul_ is: the view and its base see the new values. The kernels walk contiguous
 * memory, so such a gradient is read through a contiguous copy (copies[i]), which is scaled and
 * copied back (cf_tensor_copy_ walks the strides and bumps the version). The copies are made
 * before anything is scaled: running out of memory then leaves every gradient as it was. */
static int clip_grad_norm(cf_tensor *const *params, int n, double max_norm, double *total_norm,
                          cf_tensor **copies) {
  if (!(max_norm >= 0)) return CF_ERR("clip_grad_norm: max_norm must be >= 0, got %g", cf_msgnum(max_norm));
  double sum = 0;
  for (int i = 0; i < n; i++) {
    cf_tensor *p = params[i];
    if (!p || !p->grad) continue;
    const cf_optim_kernels *kern = kernels_for("clip_grad_norm", p->grad);
    if (!kern) return -1;
    if (!cf_tensor_is_contiguous(p->grad) && !(copies[i] = cf_tensor_clone(p->grad))) return -1;
    double s;
    if (kern->sumsq(copies[i] ? copies[i] : p->grad, &s)) return -1;
    sum += s;
  }
  double norm = sqrt(sum);
  *total_norm = norm;
  if (!isfinite(norm)) return 0;
  double coef = max_norm / (norm + 1e-6);
  if (coef >= 1) return 0;
  for (int i = 0; i < n; i++) {
    cf_tensor *p = params[i];
    if (!p || !p->grad) continue;
    const cf_optim_kernels *kern = kernels_for("clip_grad_norm", p->grad);
    if (copies[i]) {
      if (kern->scale(copies[i], coef) || cf_tensor_copy_(p->grad, copies[i])) return -1;
    } else {
      cf_tensor_bump_version(p->grad);
      if (kern->scale(p->grad, coef)) return -1;
    }
  }
  return 0;
}

int cf_clip_grad_norm(cf_tensor *const *params, int n, double max_norm, double *total_norm) {
  const char *old = cf_prof_set_phase("opt");
  int region = cf_prof_push("clip_grad_norm");
  cf_tensor **copies = n > 0 ? calloc((size_t)n, sizeof *copies) : NULL;
  int rc = n > 0 && !copies ? CF_ERR("clip_grad_norm: out of memory")
                            : clip_grad_norm(params, n, max_norm, total_norm, copies);
  for (int i = 0; i < n && copies; i++) cf_tensor_release(copies[i]);
  free(copies);
  cf_prof_pop(region);
  cf_prof_set_phase(old);
  return rc;
}
