/* l_optim.c - Lua binding of core/optim.h: confit.optim.adamw, confit.optim.sgd and
 * confit.optim.clip_grad_norm.
 *
 *   opt = confit.optim.adamw(params, {lr = 1e-3, weight_decay = 0.01, betas = {0.9, 0.999}, eps = 1e-8,
 *                                     state_dtype = "f32"})
 *   opt = confit.optim.sgd(params, {lr = 1e-3, momentum = 0, dampening = 0, weight_decay = 0, nesterov = false,
 *                                   state_dtype = "f32"})
 *   opt:step()  opt:zero_grad()  opt:params()  opt:state()  opt:load_state(s)  opt:free()
 *   opt.lr, opt.weight_decay, ... readable and settable (e.g. a schedule sets opt.lr each step);
 *   opt.steps is the number of step() calls that updated a parameter (one with no .grad at all is
 *   not counted).
 *   confit.optim.clip_grad_norm(params, max_norm [, {error_if_nonfinite = true}]) -> the total L2 norm
 *       before clipping; NaN or inf (nothing clipped) when a gradient is, an error with the option
 *
 * params is a list of tensors or a table name -> tensor (taken in sorted name order, so the
 * same table always gives the same order). The optimizer object holds a reference to every
 * parameter (the C optimizer retains them) and releases them on __gc/__close/free, like tensor
 * boxes (created empty first, so an error leaks nothing).
 *
 * state_dtype ("f32" or "bf16") is the dtype of the moments / momentum buffer of f32 and bf16
 * parameters (bf16 halves the optimizer memory; f64 parameters keep f64 state). bf16 parameters
 * are updated through f32 master copies the optimizer keeps (see core/optim.h).
 *
 * opt:state() is a flat snapshot: scalars kind, steps, nparams, the hyperparameters (state_dtype
 * included), "step.<i>" (updates applied to parameter i) and copies of the state tensors named
 * "<slot>.<i>" (exp_avg.1, exp_avg_sq.1 for AdamW, momentum_buffer.1 for SGD) and "master.<i>"
 * (the f32 master of a bf16 parameter i). load_state takes such a table (e.g. after a round trip
 * through a checkpoint) and continues identically; a missing master is re-derived from the
 * parameter at its next update.
 */
#include <lua.h>
#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "lconfit.h"
#include "error.h"
#include "optim.h"
#include "io/safetensors.h"

#define OPTIM_MT "confit.optim"

typedef struct {
  cf_optim *o;
} obox;

static cf_optim *check_optim(lua_State *L, int idx) {
  obox *b = luaL_checkudata(L, idx, OPTIM_MT);
  if (!b->o) luaL_error(L, "optimizer was freed");
  return b->o;
}

static int cmp_names(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Reads the parameter table at idx into a scratch array (a userdata left on the stack).
 * The tensors stay anchored by the table for the duration of the call. */
static cf_tensor **collect_params(lua_State *L, int idx, const char *fn, int *n_out) {
  idx = lua_absindex(L, idx);
  if (lua_type(L, idx) != LUA_TTABLE || cf_lua_totensor(L, idx))
    luaL_error(L, "%s: argument #1: expected a list (or name -> tensor table) of tensors, got %s", fn,
               luaL_typename(L, idx));
  int n = (int)lua_rawlen(L, idx);
  cf_tensor **ps;
  if (n > 0) {
    int keys = 0; /* a list and nothing else: {w, bias = v} would train w alone */
    lua_pushnil(L);
    while (lua_next(L, idx)) { keys++; lua_pop(L, 1); }
    if (keys != n)
      luaL_error(L, "%s: the parameter table mixes a list with other keys; give a list or name -> tensor", fn);
    ps = lua_newuserdatauv(L, (size_t)n * sizeof *ps, 0);
    for (int i = 1; i <= n; i++) {
      lua_rawgeti(L, idx, i);
      ps[i - 1] = cf_lua_totensor(L, -1);
      if (!ps[i - 1]) luaL_error(L, "%s: entry %d of the parameter list is a %s, not a tensor", fn, i, luaL_typename(L, -1));
      lua_pop(L, 1);
    }
    *n_out = n;
    return ps;
  }
  /* a map: string keys in sorted order */
  lua_pushnil(L);
  while (lua_next(L, idx)) { n++; lua_pop(L, 1); }
  const char **names = lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof *names, 0);
  int k = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    if (lua_type(L, -2) != LUA_TSTRING)
      luaL_error(L, "%s: the parameter table mixes a list with other keys; give a list or name -> tensor", fn);
    /* the buffer's allocation may have run a finalizer that changed the table: never past n */
    if (k >= n) luaL_error(L, "%s: the parameter table changed while it was read", fn);
    names[k++] = lua_tostring(L, -2); /* anchored by the table */
    lua_pop(L, 1);
  }
  if (k != n) luaL_error(L, "%s: the parameter table changed while it was read", fn);
  qsort(names, (size_t)n, sizeof *names, cmp_names);
  ps = lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof *ps, 0);
  for (int i = 0; i < n; i++) {
    lua_getfield(L, idx, names[i]);
    ps[i] = cf_lua_totensor(L, -1);
    if (!ps[i]) luaL_error(L, "%s: parameter '%s' is a %s, not a tensor", fn, names[i], luaL_typename(L, -1));
    lua_pop(L, 1);
  }
  lua_remove(L, -2); /* the names scratch */
  *n_out = n;
  return ps;
}

/* ---------------------------------------------------------------- hyperparameters */

static double opt_number(lua_State *L, int idx, const char *fn, const char *key) {
  if (lua_type(L, idx) != LUA_TNUMBER)
    luaL_error(L, "%s: %s must be a number, got %s", fn, key, luaL_typename(L, idx));
  return lua_tonumber(L, idx);
}

/* Applies key = value (value at the top of the stack) to cfg; 0 when the key is unknown. */
static int apply_field(lua_State *L, cf_optim_config *c, const char *fn, const char *key) {
  bool adamw = c->kind == CF_OPTIM_ADAMW;
  int v = lua_gettop(L);
  if (strcmp(key, "lr") == 0) c->lr = opt_number(L, v, fn, key);
  else if (strcmp(key, "weight_decay") == 0) c->weight_decay = opt_number(L, v, fn, key);
  else if (adamw && strcmp(key, "eps") == 0) c->eps = opt_number(L, v, fn, key);
  else if (adamw && strcmp(key, "beta1") == 0) c->beta1 = opt_number(L, v, fn, key);
  else if (adamw && strcmp(key, "beta2") == 0) c->beta2 = opt_number(L, v, fn, key);
  else if (adamw && strcmp(key, "betas") == 0) {
    if (lua_type(L, v) != LUA_TTABLE || lua_rawlen(L, v) != 2)
      luaL_error(L, "%s: betas must be a table of two numbers {beta1, beta2}", fn);
    lua_rawgeti(L, v, 1);
    lua_rawgeti(L, v, 2);
    c->beta1 = opt_number(L, v + 1, fn, "betas[1]");
    c->beta2 = opt_number(L, v + 2, fn, "betas[2]");
    lua_pop(L, 2);
  } else if (!adamw && strcmp(key, "momentum") == 0) c->momentum = opt_number(L, v, fn, key);
  else if (!adamw && strcmp(key, "dampening") == 0) c->dampening = opt_number(L, v, fn, key);
  else if (!adamw && strcmp(key, "nesterov") == 0) {
    if (lua_type(L, v) != LUA_TBOOLEAN) luaL_error(L, "%s: nesterov must be a boolean", fn);
    c->nesterov = lua_toboolean(L, v);
  } else if (strcmp(key, "state_dtype") == 0) {
    const char *s = lua_type(L, v) == LUA_TSTRING ? lua_tostring(L, v) : NULL;
    if (s && strcmp(s, "f32") == 0) c->state_dtype = CF_DTYPE_F32;
    else if (s && strcmp(s, "bf16") == 0) c->state_dtype = CF_DTYPE_BF16;
    else if (s) luaL_error(L, "%s: state_dtype must be \"f32\" or \"bf16\", got \"%s\"", fn, s);
    else luaL_error(L, "%s: state_dtype must be \"f32\" or \"bf16\", got a %s", fn, luaL_typename(L, v));
  } else return 0;
  return 1;
}

static const char *known_fields(const cf_optim_config *c) {
  return c->kind == CF_OPTIM_ADAMW ? "lr, weight_decay, betas (or beta1, beta2), eps, state_dtype"
                                   : "lr, momentum, dampening, weight_decay, nesterov, state_dtype";
}

static void read_config(lua_State *L, int idx, cf_optim_config *c, const char *fn) {
  if (lua_isnoneornil(L, idx)) return;
  if (lua_type(L, idx) != LUA_TTABLE) luaL_error(L, "%s: argument #2 (options): expected a table", fn);
  idx = lua_absindex(L, idx);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    const char *key = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "?";
    if (!apply_field(L, c, fn, key))
      luaL_error(L, "%s: unknown option '%s' (expected %s)", fn, key, known_fields(c));
    lua_pop(L, 1);
  }
  if (cf_optim_check_config(c)) cf_lua_error(L);
}

/* ---------------------------------------------------------------- constructors */

static int make_optim(lua_State *L, cf_optim_kind kind, const char *fn) {
  cf_optim_config c = cf_optim_defaults(kind);
  read_config(L, 2, &c, fn);
  int n;
  cf_tensor **ps = collect_params(L, 1, fn, &n);
  obox *b = lua_newuserdatauv(L, sizeof *b, 0);
  b->o = NULL;
  luaL_setmetatable(L, OPTIM_MT);
  CF_LUA_CORE(L, b->o = cf_optim_new(&c, ps, n));
  if (!b->o) cf_lua_error(L);
  return 1;
}

static int l_adamw(lua_State *L) { return make_optim(L, CF_OPTIM_ADAMW, "adamw"); }
static int l_sgd(lua_State *L) { return make_optim(L, CF_OPTIM_SGD, "sgd"); }

/* opts {error_if_nonfinite = bool}: read before the parameters (a table read may run Lua) */
static bool clip_error_if_nonfinite(lua_State *L, int idx) {
  if (lua_isnoneornil(L, idx)) return false;
  if (lua_type(L, idx) != LUA_TTABLE)
    luaL_error(L, "clip_grad_norm: argument #3 (options): expected a table such as {error_if_nonfinite = true}, got %s",
               luaL_typename(L, idx));
  bool on = false;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    const char *key = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "?";
    if (strcmp(key, "error_if_nonfinite") != 0)
      luaL_error(L, "clip_grad_norm: unknown option '%s' (expected error_if_nonfinite)", key);
    if (lua_type(L, -1) != LUA_TBOOLEAN)
      luaL_error(L, "clip_grad_norm: error_if_nonfinite must be a boolean, got %s", luaL_typename(L, -1));
    on = lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  return on;
}

/* A NaN or inf total norm (a NaN or inf gradient) is returned and nothing is scaled, as PyTorch
 * does by default; with error_if_nonfinite it is an error instead (the gradients left as they are). */
static int l_clip_grad_norm(lua_State *L) {
  double max_norm = luaL_checknumber(L, 2);
  bool strict = clip_error_if_nonfinite(L, 3);
  int n;
  cf_tensor **ps = collect_params(L, 1, "clip_grad_norm", &n);
  double total = 0;
  int rc;
  CF_LUA_CORE(L, rc = cf_clip_grad_norm(ps, n, max_norm, &total));
  if (rc) cf_lua_error(L);
  if (strict && !isfinite(total))
    luaL_error(L, "clip_grad_norm: the gradients' total norm is %s (a NaN or inf gradient); nothing clipped "
               "(error_if_nonfinite)", isnan(total) ? "nan" : "inf");
  lua_pushnumber(L, total);
  return 1;
}

/* ---------------------------------------------------------------- methods */

static int m_step(lua_State *L) {
  cf_optim *o = check_optim(L, 1);
  int rc;
  CF_LUA_CORE(L, rc = cf_optim_step(o));
  if (rc) cf_lua_error(L);
  return 0;
}

static int m_zero_grad(lua_State *L) {
  cf_optim_zero_grad(check_optim(L, 1));
  return 0;
}

static int m_gc(lua_State *L) {
  obox *b = luaL_checkudata(L, 1, OPTIM_MT);
  cf_optim_free(b->o);
  b->o = NULL;
  cf_lua_release_pending(L);
  return 0;
}

static void release_optim(void *o) { cf_optim_free(o); }

static int m_free(lua_State *L) { /* opt:free() and __close */
  obox *b = luaL_checkudata(L, 1, OPTIM_MT);
  cf_optim *o = b->o;
  b->o = NULL;
  cf_lua_release(L, release_optim, o);
  return 0;
}

static int m_params(lua_State *L) {
  cf_optim *o = check_optim(L, 1);
  lua_createtable(L, o->n, 0);
  for (int i = 0; i < o->n; i++) {
    cf_tensor_retain(o->params[i]);
    cf_lua_pushtensor(L, o->params[i]);
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

static void push_config(lua_State *L, const cf_optim *o) {
  const cf_optim_config *c = &o->cfg;
  lua_pushstring(L, c->kind == CF_OPTIM_ADAMW ? "adamw" : "sgd");
  lua_setfield(L, -2, "kind");
  lua_pushnumber(L, c->lr);
  lua_setfield(L, -2, "lr");
  lua_pushnumber(L, c->weight_decay);
  lua_setfield(L, -2, "weight_decay");
  if (c->kind == CF_OPTIM_ADAMW) {
    lua_pushnumber(L, c->beta1);
    lua_setfield(L, -2, "beta1");
    lua_pushnumber(L, c->beta2);
    lua_setfield(L, -2, "beta2");
    lua_pushnumber(L, c->eps);
    lua_setfield(L, -2, "eps");
  } else {
    lua_pushnumber(L, c->momentum);
    lua_setfield(L, -2, "momentum");
    lua_pushnumber(L, c->dampening);
    lua_setfield(L, -2, "dampening");
    lua_pushboolean(L, c->nesterov);
    lua_setfield(L, -2, "nesterov");
  }
  lua_pushstring(L, cf_dtype_name(c->state_dtype));
  lua_setfield(L, -2, "state_dtype");
  lua_pushinteger(L, o->steps);
  lua_setfield(L, -2, "steps");
}

/* pushes a new tensor box holding a copy of t */
static void push_copy(lua_State *L, cf_tensor *t) {
  cf_tensor **slot = cf_lua_newtensorbox(L);
  cf_tensor *c;
  CF_LUA_CORE(L, c = cf_tensor_clone(t));
  cf_lua_fillbox(L, slot, c);
}

static int m_state(lua_State *L) {
  cf_optim *o = check_optim(L, 1);
  lua_newtable(L);
  int tab = lua_gettop(L);
  push_config(L, o);
  lua_pushinteger(L, o->n);
  lua_setfield(L, tab, "nparams");
  int nslots = cf_optim_nslots(o);
  for (int i = 0; i < o->n; i++) {
    lua_pushfstring(L, "step.%d", i + 1);
    lua_pushinteger(L, o->param_steps[i]);
    lua_rawset(L, tab);
    for (int s = 0; s < nslots; s++) {
      cf_tensor *st = cf_optim_state_get(o, i, s);
      if (!st) continue;
      lua_pushfstring(L, "%s.%d", cf_optim_slot_name(o, s), i + 1);
      push_copy(L, st);
      lua_rawset(L, tab);
    }
    cf_tensor *ms = cf_optim_master_get(o, i);
    if (ms) {
      lua_pushfstring(L, "master.%d", i + 1);
      push_copy(L, ms);
      lua_rawset(L, tab);
    }
  }
  return 1;
}

/* Whether every element of a CPU floating tensor is finite (1), one is not (0), or it cannot
 * tell (-1: out of memory for a contiguous copy of a strided one). Read in place by the
 * exponent bits, as the resume check reads a checkpoint's files (cf_st_nonfinite). Tensors on
 * another device count as finite. */
static int state_finite(cf_tensor *t) {
  if (cf_tensor_device(t) != CF_DEVICE_CPU || !cf_dtype_is_float(t->dtype)) return 1;
  cf_tensor *c = cf_tensor_contiguous(t);
  if (!c) return -1;
  cf_st_entry e = {.name = "state", .ndim = 0,
                   .data = cf_tensor_data(c), .nbytes = (size_t)cf_tensor_numel(c) * cf_dtype_size(c->dtype)};
  snprintf(e.dtype, sizeof e.dtype, "%s", c->dtype == CF_DTYPE_F64 ? "F64" : c->dtype == CF_DTYPE_BF16 ? "BF16" : "F32");
  int bad = cf_st_nonfinite(&e);
  cf_tensor_release(c);
  return !bad;
}

static int m_load_state(lua_State *L) {
  cf_optim *o = check_optim(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  const char *kind = o->cfg.kind == CF_OPTIM_ADAMW ? "adamw" : "sgd";
  lua_getfield(L, 2, "kind");
  const char *k = lua_tostring(L, -1);
  if (!k || strcmp(k, kind) != 0)
    luaL_error(L, "load_state: the state is of a %s optimizer, this one is %s", k ? k : "(no kind)", kind);
  lua_pop(L, 1);
  lua_getfield(L, 2, "nparams");
  o = check_optim(L, 1); /* the reads may have freed it (see below) */
  if (lua_tointeger(L, -1) != o->n)
    luaL_error(L, "load_state: the state has %d parameters, this optimizer %d", (int)lua_tointeger(L, -1), o->n);
  lua_pop(L, 1);
  /* hyperparameters: every field of the state that names one */
  cf_optim_config c = check_optim(L, 1)->cfg;
  static const char *const fields[] = {"lr", "weight_decay", "beta1", "beta2", "eps", "momentum", "dampening", "nesterov",
                                       "state_dtype"};
  for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
    if (lua_getfield(L, 2, fields[i]) != LUA_TNIL) apply_field(L, &c, "load_state", fields[i]);
    lua_pop(L, 1);
  }
  if (cf_optim_check_config(&c)) cf_lua_error(L);
  /* A read of the state table may run Lua (an __index, a finalizer run by an allocation) that
   * frees this optimizer: o is looked up again after each (an error if freed), never used after
   * free. */
  o = check_optim(L, 1);
  /* the step counters: an integer >= 0, and no parameter updated more often than the optimizer
   * stepped (a corrupted count would silently skew AdamW's bias correction) */
  lua_getfield(L, 2, "steps");
  int isint;
  lua_Integer steps = lua_tointegerx(L, -1, &isint);
  /* at most 2^53 (a count a JSON number holds): INT64_MAX overflowed at the next step */
  if (!isint || steps < 0 || steps > ((lua_Integer)1 << 53))
    luaL_error(L, "load_state: steps must be an integer in [0, 2^53], got %s", cf_lua_shown(L, -1));
  lua_pop(L, 1);
  for (int i = 0; i < (o = check_optim(L, 1))->n; i++) {
    lua_pushfstring(L, "step.%d", i + 1);
    lua_rawget(L, 2);
    lua_Integer si = lua_tointegerx(L, -1, &isint);
    if (!isint || si < 0 || si > steps)
      luaL_error(L, "load_state: step.%d must be an integer in [0, steps = %I], got %s", i + 1, steps,
                 cf_lua_shown(L, -1));
    lua_pop(L, 1);
  }
  int nslots = (c.kind == CF_OPTIM_ADAMW) ? 2 : (c.momentum != 0 ? 1 : 0);
  /* check every tensor before changing anything */
  for (int i = 0; i < (o = check_optim(L, 1))->n; i++)
    for (int s = 0; s < nslots; s++) {
      const char *slot = c.kind == CF_OPTIM_ADAMW ? (s ? "exp_avg_sq" : "exp_avg") : "momentum_buffer";
      lua_pushfstring(L, "%s.%d", slot, i + 1);
      lua_rawget(L, 2);
      o = check_optim(L, 1);
      if (!lua_isnil(L, -1)) {
        cf_tensor *t = cf_lua_totensor(L, -1);
        if (!t) luaL_error(L, "load_state: %s.%d is a %s, not a tensor", slot, i + 1, luaL_typename(L, -1));
        if (!cf_same_shape(t, o->params[i])) {
          char a[128], b[128];
          luaL_error(L, "load_state: state of parameter %d is %s, the parameter is %s", i + 1,
                     cf_shape_str(t, a, sizeof a), cf_shape_str(o->params[i], b, sizeof b));
        }
        /* a NaN or inf moment would turn the parameter into NaN at the first step */
        int fin;
        CF_LUA_CORE(L, fin = state_finite(t));
        if (fin < 0) cf_lua_error(L);
        if (!fin) luaL_error(L, "load_state: %s.%d holds NaN or inf", slot, i + 1);
      }
      lua_pop(L, 1);
    }
  for (int i = 0; i < (o = check_optim(L, 1))->n; i++) {
    lua_pushfstring(L, "master.%d", i + 1);
    lua_rawget(L, 2);
    o = check_optim(L, 1);
    if (!lua_isnil(L, -1)) {
      cf_tensor *t = cf_lua_totensor(L, -1);
      cf_tensor *p = o->params[i];
      char a[128], b[128];
      if (!t) luaL_error(L, "load_state: master.%d is a %s, not a tensor", i + 1, luaL_typename(L, -1));
      if (p->dtype != CF_DTYPE_BF16)
        luaL_error(L, "load_state: the state has a master copy of parameter %d (trained as bf16), this "
                   "parameter %s is %s", i + 1, cf_shape_str(p, b, sizeof b), cf_dtype_name(p->dtype));
      if (!cf_same_shape(t, p) || !cf_dtype_is_float(t->dtype))
        luaL_error(L, "load_state: master.%d is %s %s, the parameter is %s", i + 1, cf_dtype_name(t->dtype),
                   cf_shape_str(t, a, sizeof a), cf_shape_str(p, b, sizeof b));
      int fin;
      CF_LUA_CORE(L, fin = state_finite(t));
      if (fin < 0) cf_lua_error(L);
      if (!fin) luaL_error(L, "load_state: master.%d holds NaN or inf", i + 1);
    }
    lua_pop(L, 1);
  }
  /* the reads above may have run Lua (an __index, a finalizer) that freed the optimizer: looked up
   * again, an error if freed; steps as checked (a second read could see another value) */
  o = check_optim(L, 1);
  o->cfg = c;
  o->steps = steps;
  for (int i = 0; i < o->n; i++) {
    lua_pushfstring(L, "step.%d", i + 1);
    lua_rawget(L, 2);
    o = check_optim(L, 1);
    lua_Integer si = lua_tointeger(L, -1);
    o->param_steps[i] = si >= 0 && si <= steps ? si : 0; /* checked above, unless Lua changed the table since */
    lua_pop(L, 1);
    for (int s = 0; s < nslots; s++) {
      lua_pushfstring(L, "%s.%d", cf_optim_slot_name(o, s), i + 1);
      lua_rawget(L, 2);
      o = check_optim(L, 1);
      cf_tensor *t = lua_isnil(L, -1) ? NULL : cf_lua_totensor(L, -1);
      int rc;
      CF_LUA_CORE(L, rc = cf_optim_state_set(o, i, s, t));
      if (rc) cf_lua_error(L);
      lua_pop(L, 1);
    }
    lua_pushfstring(L, "master.%d", i + 1);
    lua_rawget(L, 2);
    o = check_optim(L, 1);
    cf_tensor *t = lua_isnil(L, -1) ? NULL : cf_lua_totensor(L, -1);
    if (t || o->params[i]->dtype == CF_DTYPE_BF16) {
      int rc;
      CF_LUA_CORE(L, rc = cf_optim_master_set(o, i, t));
      if (rc) cf_lua_error(L);
    }
    lua_pop(L, 1);
  }
  return 0;
}

static int mm_index(lua_State *L) {
  obox *b = luaL_checkudata(L, 1, OPTIM_MT);
  lua_pushvalue(L, 2);
  if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL) return 1;
  cf_optim *o = b->o; /* a free while the table is built is deferred (cf_lua_release) */
  const char *key = lua_tostring(L, 2);
  if (!key || !o) return 0;
  lua_newtable(L);
  push_config(L, o);
  if (o->cfg.kind == CF_OPTIM_ADAMW) {
    lua_createtable(L, 2, 0);
    lua_pushnumber(L, o->cfg.beta1);
    lua_rawseti(L, -2, 1);
    lua_pushnumber(L, o->cfg.beta2);
    lua_rawseti(L, -2, 2);
    lua_setfield(L, -2, "betas");
  }
  lua_getfield(L, -1, key);
  return 1;
}

static int mm_newindex(lua_State *L) {
  cf_optim *o = check_optim(L, 1);
  const char *key = luaL_checkstring(L, 2);
  cf_optim_config c = o->cfg;
  lua_settop(L, 3);
  if (!apply_field(L, &c, "optimizer", key))
    return luaL_error(L, "optimizer: cannot set '%s' (settable: %s)", key, known_fields(&c));
  if (cf_optim_check_config(&c)) cf_lua_error(L);
  o->cfg = c;
  return 0;
}

static int mm_tostring(lua_State *L) {
  obox *b = luaL_checkudata(L, 1, OPTIM_MT);
  if (!b->o) lua_pushliteral(L, "optimizer (freed)");
  else lua_pushfstring(L, "%s(%d params, lr=%f, %I steps)", b->o->cfg.kind == CF_OPTIM_ADAMW ? "adamw" : "sgd",
                       b->o->n, b->o->cfg.lr, (LUAI_UACINT)b->o->steps);
  return 1;
}

static const luaL_Reg methods[] = {
  {"step", m_step}, {"zero_grad", m_zero_grad}, {"state", m_state}, {"load_state", m_load_state},
  {"params", m_params}, {"free", m_free}, {NULL, NULL}};

static const char *const docs[][2] = {
  {"confit.optim.adamw", "confit.optim.adamw(params, {lr = 1e-3, weight_decay = 0.01, betas = {0.9, 0.999}, eps = 1e-8, state_dtype = \"f32\"|\"bf16\"}) -> optimizer: AdamW (PyTorch semantics, decoupled weight decay; f32 master copies of bf16 parameters; bf16 state halves its memory); opt:step(), opt:zero_grad(), opt.lr settable; opt:state() -> a flat snapshot (scalars and copies of the state tensors), opt:load_state(s) continues from one identically (train.save_checkpoint / train.load_checkpoint write and read them with the model)"},
  {"confit.optim.sgd", "confit.optim.sgd(params, {lr = 1e-3, momentum = 0, dampening = 0, weight_decay = 0, nesterov = false, state_dtype = \"f32\"|\"bf16\"}) -> optimizer"},
  {"confit.optim.clip_grad_norm", "confit.optim.clip_grad_norm(params, max_norm [, {error_if_nonfinite = true}]) -> total L2 norm of the gradients before clipping; a NaN or inf gradient gives a NaN or inf norm and nothing is clipped (as PyTorch; the next opt:step() makes weights NaN), an error instead with error_if_nonfinite"},
  {"opt:step", "opt:step(): one update of every parameter that has a .grad (its step.<i> counted); opt.steps counts the steps that updated any (a step with no .grad at all changes nothing)"},
  {"opt:zero_grad", "opt:zero_grad(): drops every parameter's .grad"},
  {"opt:state", "opt:state() -> table: steps, hyperparameters, step.<i> and copies of the state tensors (exp_avg.<i>, exp_avg_sq.<i> | momentum_buffer.<i>; master.<i> for a bf16 parameter)"},
  {"opt:load_state", "opt:load_state(state): restore what opt:state() returned (the same kind and parameter count, each state tensor at its parameter's shape; all checked before opt changes); the state's hyperparameters (lr, weight_decay, betas, eps | momentum, dampening, nesterov) and state_dtype replace opt's own, so the run continues as it was saved: set opt.lr etc. after it to change them"},
  {"opt:params", "opt:params() -> the list of parameters, in update order"},
};

void cf_lua_open_optim(lua_State *L) {
  int module = lua_gettop(L);
  if (cf_lua_resource_mt(L, OPTIM_MT, m_gc, m_free, mm_tostring, methods)) {
    lua_pushcfunction(L, mm_newindex);
    lua_setfield(L, -2, "__newindex");
    /* opt.lr etc. read the config: __index becomes a closure that looks in the method table
     * first; the table stays reachable as __methods (completion, introspection) */
    lua_getfield(L, -1, "__index");
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, "__methods");
    lua_pushcclosure(L, mm_index, 1);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);

  static const luaL_Reg functions[] = {{"adamw", l_adamw}, {"sgd", l_sgd}, {"clip_grad_norm", l_clip_grad_norm},
                                       {NULL, NULL}};
  luaL_newlib(L, functions);
  lua_setfield(L, module, "optim");
  for (size_t i = 0; i < sizeof docs / sizeof docs[0]; i++) cf_lua_add_doc(L, module, docs[i][0], docs[i][1]);
}
