/* l_tensor.c - tensors in Lua: the "confit.tensor" userdata, constructors, the op methods
 * generated from the op table, autograd entry points, and the module-level helpers (clock,
 * memory, doc, no_grad).
 *
 * The box. A tensor is a full userdata holding one pointer to a refcounted cf_tensor; the box
 * owns one reference. __gc, __close and t:free() are the same idempotent release: they drop
 * the reference and set the pointer to NULL, after which every use raises "tensor was freed"
 * (t:free() and __close through cf_lua_release: later, when a binding is running below them).
 * Boxes are created empty before the core allocates (liolib style), so a Lua error raised at
 * any point leaves only a collectable box, never a leaked tensor. __eq is identity of the
 * underlying tensor (two boxes from two reads of t.grad compare equal).
 *
 * Ops. Every entry of core/ops.def becomes a method (and a module function) from one generic
 * closure whose upvalue is the op id; the arguments are read from the op's spec string
 * (ops.h): tensor slots take tensors or Lua numbers (a number becomes a 0-d tensor of the
 * dtype and device of the first floating tensor argument); dims are 1-based, negative from the
 * end; missing optional arguments take their defaults. Nothing here is written per op.
 *
 * Memory. Lua's GC cannot see tensor bytes. Two things make up for it: (1) the core's
 * allocation-retry hook runs a full Lua GC, but only while a binding call of this state is
 * inside the core (cf_lua_gc_begin/end bracket each core call; no Lua error can escape the
 * bracket because the core never raises one; during a GC finalizers cannot re-enter it because
 * Lua stops the collector while finalizers run); (2) "pressure": once the bytes of new tensors
 * since the last collection, or the growth of the live CPU bytes since then (what results' graphs
 * hold counts there), exceed max(256 MiB, live CPU bytes after that collection), the next
 * tensor-returning call (or model load) runs a full collection, which bounds memory held by dropped-but-uncollected boxes to about
 * twice the live set. (The live count used is the one measured right after the previous pressure
 * collection: uncollected garbage is itself live to the allocator, so comparing against the
 * current count would never fire.)
 */
#include <lua.h>
#include <lauxlib.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include "lconfit.h"
#include "autograd.h"
#include "error.h"
#include "ops.h"
#include "rng.h"

typedef struct {
  cf_tensor *t;
} tbox;

/* ---------------------------------------------------------------- GC bracket, pressure */

static _Thread_local lua_State *active_L;
static _Thread_local size_t pressure_bytes; /* new tensor bytes since the last pressure GC */
static _Thread_local size_t live_after_gc;  /* live CPU bytes right after that GC */
#define PRESSURE_MIN ((size_t)256 << 20)

lua_State *cf_lua_gc_begin(lua_State *L) {
  lua_State *prev = active_L;
  active_L = L;
  return prev;
}

void cf_lua_gc_end(lua_State *prev) { active_L = prev; }

static void alloc_retry_hook(void *ud) {
  (void)ud;
  lua_State *L = active_L;
  if (!L) return;
  active_L = NULL; /* no nested GC from allocations made while collecting */
  lua_gc(L, LUA_GCCOLLECT);
  active_L = L;
}

/* Collects when the CPU bytes live have grown past the allowance since the last pressure
 * collection: what a result's autograd graph holds (a forward's activations) is counted too,
 * where the new tensor's own bytes were all (a loop of m:forward on a trainable model without
 * backward held 7.5 GB after 200 calls before a collection ran). */
void cf_lua_note_pressure(lua_State *L) {
  size_t allow = live_after_gc > PRESSURE_MIN ? live_after_gc : PRESSURE_MIN;
  if (pressure_bytes > allow || cf_cpu_bytes_live() > live_after_gc + allow) {
    pressure_bytes = 0;
    lua_gc(L, LUA_GCCOLLECT);
    live_after_gc = cf_cpu_bytes_live();
  }
}

/* Called after a new tensor was boxed: counts fresh storage bytes (GPU ones too), collects when
 * due. */
static void note_new_tensor(lua_State *L, const cf_tensor *t) {
  if (t->refcount == 1 && t->storage && t->storage->refcount == 1) pressure_bytes += t->storage->nbytes;
  cf_lua_note_pressure(L);
}

/* ---------------------------------------------------------------- boxes */

int cf_lua_error(lua_State *L) { return luaL_error(L, "%s", cf_error_message()); }

const char *cf_lua_shown(lua_State *L, int idx) {
  if (lua_type(L, idx) == LUA_TNUMBER && isnan(lua_tonumber(L, idx))) return "nan";
  return luaL_tolstring(L, idx, NULL);
}

cf_tensor **cf_lua_newtensorbox(lua_State *L) {
  tbox *b = lua_newuserdatauv(L, sizeof *b, 0);
  b->t = NULL;
  luaL_setmetatable(L, CF_LUA_TENSOR_MT);
  return &b->t;
}

void cf_lua_fillbox(lua_State *L, cf_tensor **slot, cf_tensor *t) {
  if (!t) cf_lua_error(L);
  *slot = t;
  note_new_tensor(L, t);
}

void cf_lua_pushtensor(lua_State *L, cf_tensor *t) {
  if (!t) cf_lua_error(L);
  tbox *b = lua_newuserdatauv(L, sizeof *b, 0);
  b->t = t;
  luaL_setmetatable(L, CF_LUA_TENSOR_MT);
  note_new_tensor(L, t);
}

static tbox *checkbox(lua_State *L, int idx) {
  return (tbox *)luaL_checkudata(L, idx, CF_LUA_TENSOR_MT);
}

cf_tensor *cf_lua_checktensor(lua_State *L, int idx) {
  tbox *b = checkbox(L, idx);
  if (!b->t) luaL_error(L, "tensor was freed (t:free() or <close> released it)");
  return b->t;
}

cf_tensor *cf_lua_totensor(lua_State *L, int idx) {
  tbox *b = (tbox *)luaL_testudata(L, idx, CF_LUA_TENSOR_MT);
  if (!b) return NULL;
  if (!b->t) luaL_error(L, "tensor was freed (t:free() or <close> released it)");
  return b->t;
}

/* ---------------------------------------------------------------- module hooks, docs */

#define MAX_REPORTERS 8
static cf_lua_memory_fn reporters[MAX_REPORTERS];
static int nreporters;
static void (*clock_sync)(void);

void cf_lua_add_memory_reporter(cf_lua_memory_fn fn) {
  for (int i = 0; i < nreporters; i++) if (reporters[i] == fn) return;
  if (nreporters < MAX_REPORTERS) reporters[nreporters++] = fn;
}

static void (*peak_resets[MAX_REPORTERS])(void);
static int npeak_resets;

void cf_lua_add_peak_reset(void (*reset)(void)) {
  for (int i = 0; i < npeak_resets; i++) if (peak_resets[i] == reset) return;
  if (npeak_resets < MAX_REPORTERS) peak_resets[npeak_resets++] = reset;
}

void cf_lua_set_clock_sync(void (*sync)(void)) { clock_sync = sync; }

void cf_lua_add_doc(lua_State *L, int module, const char *name, const char *doc) {
  module = lua_absindex(L, module);
  if (lua_getfield(L, module, "doc") != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, module, "doc");
  }
  lua_pushstring(L, doc);
  lua_setfield(L, -2, name);
  lua_pop(L, 1);
}

static void cpu_memory_reporter(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)cf_cpu_bytes_live());
  lua_setfield(L, -2, "cpu_bytes");
  lua_pushinteger(L, (lua_Integer)cf_cpu_bytes_peak());
  lua_setfield(L, -2, "cpu_peak_bytes");
}

static int l_reset_peak_memory(lua_State *L) {
  (void)L;
  cf_cpu_reset_peak();
  for (int i = 0; i < npeak_resets; i++) peak_resets[i]();
  return 0;
}

static int l_memory(lua_State *L) {
  lua_newtable(L);
  for (int i = 0; i < nreporters; i++) reporters[i](L);
  return 1;
}

static int l_clock(lua_State *L) {
  if (clock_sync) clock_sync();
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec * 1e-9);
  return 1;
}

/* ---------------------------------------------------------------- small helpers */

/* The argument's position as the user wrote it (self does not count in a method call). */
static int user_argno(lua_State *L, int ai) {
  lua_Debug ar;
  if (lua_getstack(L, 0, &ar) && lua_getinfo(L, "n", &ar) && ar.namewhat &&
      strcmp(ar.namewhat, "method") == 0)
    return ai - 1;
  return ai;
}

static const char *shape_str(const cf_tensor *t, char *buf, size_t n) {
  return cf_shape_str(t, buf, n);
}

/* What a refused integer argument was: a number as written (1.5), anything else by its type. */
static const char *shown_int_arg(lua_State *L, int idx) {
  if (cf_lua_totensor(L, idx)) return "a tensor";
  return lua_type(L, idx) == LUA_TNUMBER ? cf_lua_shown(L, idx) : luaL_typename(L, idx);
}

/* An integral Lua number at idx, or raise "<fn>: argument #n (<what>) ..." */
static lua_Integer check_int(lua_State *L, int idx, const char *fn, const char *what) {
  int ok = 0;
  lua_Integer v = 0;
  if (lua_type(L, idx) == LUA_TNUMBER) v = lua_tointegerx(L, idx, &ok);
  if (!ok)
    luaL_error(L, "%s: argument #%d (%s): expected an integer, got %s", fn, user_argno(L, idx),
               what, shown_int_arg(L, idx));
  return v;
}

/* Element at storage offset `off` of a CPU tensor, pushed exactly (i64 without going through
 * double). */
static void push_elem_at(lua_State *L, const cf_tensor *t, int64_t off) {
  const void *base = t->storage->data;
  switch (t->dtype) {
    case CF_DTYPE_F32: lua_pushnumber(L, ((const float *)base)[off]); break;
    case CF_DTYPE_F64: lua_pushnumber(L, ((const double *)base)[off]); break;
    case CF_DTYPE_BF16: lua_pushnumber(L, cf_bf16_to_float(((const uint16_t *)base)[off])); break;
    case CF_DTYPE_I32: lua_pushinteger(L, ((const int32_t *)base)[off]); break;
    case CF_DTYPE_I64: lua_pushinteger(L, ((const int64_t *)base)[off]); break;
    default: lua_pushnil(L); break;
  }
}

static int64_t flat_offset(const cf_tensor *t, int64_t i) {
  int64_t off = t->offset;
  for (int d = t->ndim - 1; d >= 0; d--) {
    int64_t k = i % t->shape[d];
    i /= t->shape[d];
    off += k * t->stride[d];
  }
  return off;
}

/* Stores the Lua value at idx into a CPU tensor at storage offset off. Integer dtypes take
 * integral values only; `fn` and `where` name the call and the element in errors. */
static void store_value(lua_State *L, int idx, cf_tensor *t, int64_t off, const char *fn,
                        const char *where) {
  int type = lua_type(L, idx);
  if (type == LUA_TBOOLEAN) {
    lua_Integer b = lua_toboolean(L, idx);
    lua_pushinteger(L, b);
    lua_replace(L, idx);
  } else if (type != LUA_TNUMBER) {
    luaL_error(L, "%s: %s is a %s, expected a number", fn, where, luaL_typename(L, idx));
  }
  void *base = t->storage->data;
  if (t->dtype == CF_DTYPE_I32 || t->dtype == CF_DTYPE_I64) {
    int ok = 0;
    lua_Integer v = lua_tointegerx(L, idx, &ok);
    if (!ok) {
      /* an integral float outside [-2^63, 2^63) (2^63 itself) is out of range, not fractional */
      lua_Number x = lua_tonumber(L, idx);
      if (x == floor(x) && !isinf(x))
        luaL_error(L, "%s: %s = %s does not fit in %s", fn, where, lua_tostring(L, idx), cf_dtype_name(t->dtype));
      luaL_error(L, "%s: %s = %s is not an integer (dtype %s)", fn, where, cf_lua_shown(L, idx), cf_dtype_name(t->dtype));
    }
    if (t->dtype == CF_DTYPE_I32) {
      if (v < INT32_MIN || v > INT32_MAX)
        luaL_error(L, "%s: %s = %I does not fit in i32", fn, where, (LUAI_UACINT)v);
      ((int32_t *)base)[off] = (int32_t)v;
    } else {
      ((int64_t *)base)[off] = (int64_t)v;
    }
    return;
  }
  double v = lua_tonumber(L, idx);
  switch (t->dtype) {
    case CF_DTYPE_F32: ((float *)base)[off] = (float)v; break;
    case CF_DTYPE_F64: ((double *)base)[off] = v; break;
    case CF_DTYPE_BF16: ((uint16_t *)base)[off] = cf_float_to_bf16((float)v); break;
    default: break;
  }
}

/* Pushes a box holding a CPU tensor with t's values (t itself when already on the CPU). */
static cf_tensor *push_host(lua_State *L, cf_tensor *t) {
  cf_tensor **slot = cf_lua_newtensorbox(L);
  if (cf_tensor_device(t) == CF_DEVICE_CPU) {
    cf_tensor_retain(t);
    *slot = t;
    return t;
  }
  cf_tensor *h;
  CF_LUA_CORE(L, h = cf_tensor_to_device(t, CF_DEVICE_CPU));
  cf_lua_fillbox(L, slot, h);
  return h;
}

/* ---------------------------------------------------------------- constructor options */

typedef struct {
  cf_dtype dtype;
  bool requires_grad;
  bool has_seed;
  lua_Integer seed;
  cf_device device;
} ctor_opts;

/* opts at idx: nil, a dtype name, or a table {dtype=, requires_grad=, seed=, device=}. */
static void read_opts(lua_State *L, int idx, const char *fn, ctor_opts *o) {
  o->dtype = CF_DTYPE_F32;
  o->requires_grad = false;
  o->has_seed = false;
  o->seed = 0;
  o->device = CF_DEVICE_CPU;
  int type = lua_type(L, idx);
  if (type == LUA_TNONE || type == LUA_TNIL) return;
  if (type == LUA_TSTRING) {
    if (cf_dtype_from_name(lua_tostring(L, idx), &o->dtype)) luaL_error(L, "%s: %s", fn, cf_error_message());
    return;
  }
  if (type != LUA_TTABLE)
    luaL_error(L, "%s: argument #%d (options): expected a table, got %s", fn, user_argno(L, idx),
               luaL_typename(L, idx));
  idx = lua_absindex(L, idx);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "";
    if (strcmp(k, "dtype") == 0) {
      const char *name = lua_tostring(L, -1);
      if (!name) luaL_error(L, "%s: option dtype must be a name such as \"f32\"", fn);
      if (cf_dtype_from_name(name, &o->dtype)) luaL_error(L, "%s: %s", fn, cf_error_message());
    } else if (strcmp(k, "requires_grad") == 0) {
      o->requires_grad = lua_toboolean(L, -1);
    } else if (strcmp(k, "seed") == 0) {
      /* an option, not an argument: check_int's "argument #n" would number a scratch slot */
      int ok = 0;
      if (lua_type(L, -1) == LUA_TNUMBER) o->seed = lua_tointegerx(L, -1, &ok);
      if (!ok) luaL_error(L, "%s: option seed: expected an integer, got %s", fn, shown_int_arg(L, lua_gettop(L)));
      o->has_seed = true;
    } else if (strcmp(k, "device") == 0) {
      o->device = cf_lua_checkdevice(L, -1, fn, "option device");
    } else {
      lua_pushvalue(L, -2);
      luaL_error(L, "%s: unknown option '%s' (expected dtype, requires_grad, seed, device)", fn,
                 luaL_tolstring(L, -1, NULL));
    }
    lua_pop(L, 1);
  }
}

/* The end of a factory: applies requires_grad to the freshly built CPU tensor in the box at the
 * top of the stack and moves it to the requested device. Returns the factory's count of results:
 * 1 (the tensor), or 2 (nil, message) when opts.device is "cuda" and no GPU is usable, as for
 * t:to (cf_lua_no_gpu; every argument was checked before). */
static int finish_new(lua_State *L, const ctor_opts *o, const char *fn) {
  tbox *b = (tbox *)lua_touserdata(L, -1);
  if (o->requires_grad && !cf_dtype_is_float(b->t->dtype))
    luaL_error(L, "%s: requires_grad needs a floating dtype, not %s", fn, cf_dtype_name(b->t->dtype));
  if (o->device == CF_DEVICE_CUDA && cf_lua_no_gpu(L, "cannot make the tensor on cuda")) {
    cf_tensor_release(b->t); /* the CPU tensor built to be moved: nothing else holds it */
    b->t = NULL;
    return 2;
  }
  if (o->device != CF_DEVICE_CPU) {
    cf_tensor **slot = cf_lua_newtensorbox(L);
    cf_tensor *d;
    CF_LUA_CORE(L, d = cf_tensor_to_device(b->t, o->device));
    cf_lua_fillbox(L, slot, d);
    lua_remove(L, -2);
    b = (tbox *)lua_touserdata(L, -1);
  }
  if (o->requires_grad) b->t->requires_grad = true;
  return 1;
}

/* Shape at idx: a table of sizes or consecutive integer arguments. Returns the index after. */
static int read_shape(lua_State *L, int idx, const char *fn, int *nd, int64_t *shape) {
  *nd = 0;
  if (lua_type(L, idx) == LUA_TTABLE && !cf_lua_totensor(L, idx)) {
    lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
    if (n > CF_MAX_DIMS) luaL_error(L, "%s: shape has %I dims, at most %d", fn, (lua_Integer)n, CF_MAX_DIMS);
    for (lua_Integer i = 1; i <= n; i++) {
      lua_rawgeti(L, idx, i);
      int ok = 0;
      lua_Integer v = lua_type(L, -1) == LUA_TNUMBER ? lua_tointegerx(L, -1, &ok) : 0;
      if (!ok || v < 0)
        luaL_error(L, "%s: shape entry %I is %s, expected an integer size >= 0", fn, (lua_Integer)i,
                   cf_lua_shown(L, -1));
      shape[(*nd)++] = v;
      lua_pop(L, 1);
    }
    return idx + 1;
  }
  while (lua_type(L, idx) == LUA_TNUMBER) {
    if (*nd >= CF_MAX_DIMS) luaL_error(L, "%s: more than %d sizes", fn, CF_MAX_DIMS);
    lua_Integer v = check_int(L, idx, fn, "size");
    if (v < 0) luaL_error(L, "%s: size %d is %I, expected >= 0", fn, *nd + 1, (lua_Integer)v);
    shape[(*nd)++] = v;
    idx++;
  }
  return idx;
}

/* ---------------------------------------------------------------- constructors */

static int make_filled(lua_State *L, const char *fn, int shape_idx, int has_value) {
  int nd;
  int64_t shape[CF_MAX_DIMS];
  double value = 0;
  int next;
  if (has_value && lua_type(L, shape_idx) != LUA_TTABLE) {
    /* full(d1, d2, ..., value [, opts]): the last number is the value */
    int top = shape_idx;
    while (lua_type(L, top) == LUA_TNUMBER) top++;
    if (top == shape_idx) luaL_error(L, "%s: expected a shape and a value", fn);
    value = lua_tonumber(L, top - 1);
    lua_pushnil(L);
    lua_replace(L, top - 1);
    read_shape(L, shape_idx, fn, &nd, shape);
    next = top;
  } else {
    next = read_shape(L, shape_idx, fn, &nd, shape);
    if (has_value) {
      if (lua_type(L, next) != LUA_TNUMBER)
        luaL_error(L, "%s: argument #%d (value): expected a number, got %s", fn, user_argno(L, next),
                   luaL_typename(L, next));
      value = lua_tonumber(L, next++);
    }
  }
  ctor_opts o;
  read_opts(L, next, fn, &o);
  cf_tensor **slot = cf_lua_newtensorbox(L);
  cf_tensor *t;
  CF_LUA_CORE(L, t = cf_tensor_full(nd, shape, o.dtype, value));
  cf_lua_fillbox(L, slot, t);
  return finish_new(L, &o, fn);
}

static int l_zeros(lua_State *L) { return make_filled(L, "zeros", 1, 0); }
static int l_ones(lua_State *L) {
  /* ones(shape, opts) = full(shape, 1, opts) */
  int nd;
  int64_t shape[CF_MAX_DIMS];
  int next = read_shape(L, 1, "ones", &nd, shape);
  ctor_opts o;
  read_opts(L, next, "ones", &o);
  cf_tensor **slot = cf_lua_newtensorbox(L);
  cf_tensor *t;
  CF_LUA_CORE(L, t = cf_tensor_full(nd, shape, o.dtype, 1.0));
  cf_lua_fillbox(L, slot, t);
  return finish_new(L, &o, "ones");
}
static int l_full(lua_State *L) { return make_filled(L, "full", 1, 1); }

static int make_random(lua_State *L, const char *fn, bool normal) {
  int nd;
  int64_t shape[CF_MAX_DIMS];
  int next = read_shape(L, 1, fn, &nd, shape);
  ctor_opts o;
  read_opts(L, next, fn, &o);
  if (!cf_dtype_is_float(o.dtype))
    luaL_error(L, "%s: dtype %s is not a floating type", fn, cf_dtype_name(o.dtype));
  cf_rng local, *g = NULL;
  if (o.has_seed) {
    cf_rng_init(&local, (uint64_t)o.seed);
    g = &local;
  }
  cf_tensor **slot = cf_lua_newtensorbox(L);
  cf_tensor *t;
  CF_LUA_CORE(L, t = normal ? cf_tensor_randn(nd, shape, o.dtype, g) : cf_tensor_rand(nd, shape, o.dtype, g));
  cf_lua_fillbox(L, slot, t);
  return finish_new(L, &o, fn);
}

static int l_randn(lua_State *L) { return make_random(L, "randn", true); }
static int l_rand(lua_State *L) { return make_random(L, "rand", false); }

static int l_manual_seed(lua_State *L) {
  lua_Integer s = check_int(L, 1, "manual_seed", "seed");
  cf_rng_init(cf_rng_global(), (uint64_t)s);
  return 0;
}

static int l_arange(lua_State *L) {
  /* arange(stop), arange(start, stop), arange(start, stop, step), each optionally + opts */
  int n = 0;
  while (n < 3 && lua_type(L, n + 1) == LUA_TNUMBER) n++;
  if (n == 0) return luaL_error(L, "arange: expected numbers ([start,] stop [, step])");
  double start = 0, end, step = 1;
  if (n == 1) end = lua_tonumber(L, 1);
  else { start = lua_tonumber(L, 1); end = lua_tonumber(L, 2); }
  if (n == 3) step = lua_tonumber(L, 3);
  int next = n + 1;
  ctor_opts o;
  read_opts(L, next, "arange", &o);
  /* integer bounds into an integer dtype: exact (doubles lose integers past 2^53) */
  bool ints = o.dtype == CF_DTYPE_I32 || o.dtype == CF_DTYPE_I64;
  for (int k = 1; k <= n; k++) ints = ints && lua_isinteger(L, k);
  cf_tensor **slot = cf_lua_newtensorbox(L);
  cf_tensor *t;
  if (ints) {
    lua_Integer a = n == 1 ? 0 : lua_tointeger(L, 1), z = lua_tointeger(L, n == 1 ? 1 : 2), s = n == 3 ? lua_tointeger(L, 3) : 1;
    CF_LUA_CORE(L, t = cf_tensor_arange_int(a, z, s, o.dtype));
  } else {
    CF_LUA_CORE(L, t = cf_tensor_arange(start, end, step, o.dtype));
  }
  cf_lua_fillbox(L, slot, t);
  return finish_new(L, &o, "arange");
}

static int l_from_bytes(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  int nd;
  int64_t shape[CF_MAX_DIMS];
  if (lua_type(L, 2) != LUA_TTABLE) luaL_error(L, "from_bytes: argument #2 (shape): expected a table");
  int next = read_shape(L, 2, "from_bytes", &nd, shape);
  ctor_opts o;
  read_opts(L, next, "from_bytes", &o);
  cf_tensor **slot = cf_lua_newtensorbox(L);
  cf_tensor *t;
  CF_LUA_CORE(L, t = cf_tensor_from_bytes(nd, shape, o.dtype, s, len));
  cf_lua_fillbox(L, slot, t);
  return finish_new(L, &o, "from_bytes");
}

/* confit.tensor(data, opts): the shape comes from the first entry at each level; every other
 * entry is checked against it while the values are stored. */
static void pos_str(char *buf, size_t n, const int64_t *pos, int depth) {
  size_t k = 0;
  buf[0] = 0;
  for (int d = 0; d < depth && k < n; d++) k += (size_t)snprintf(buf + k, n - k, "[%lld]", (long long)pos[d] + 1);
}

static void fill_nested(lua_State *L, int tab, cf_tensor *t, int depth, int64_t *pos, int64_t *flat) {
  char where[160];
  lua_Integer n = (lua_Integer)lua_rawlen(L, tab);
  if (n != t->shape[depth]) {
    pos_str(where, sizeof where, pos, depth);
    luaL_error(L, "tensor: ragged nested table: %s%s has %d entries, expected %d",
               depth ? "element " : "the outer table", where, (int)n, (int)t->shape[depth]);
  }
  luaL_checkstack(L, 4, "tensor: nesting too deep");
  for (lua_Integer i = 1; i <= n; i++) {
    pos[depth] = i - 1;
    lua_rawgeti(L, tab, i);
    int type = lua_type(L, -1);
    if (depth + 1 < t->ndim) {
      if (type != LUA_TTABLE) {
        pos_str(where, sizeof where, pos, depth + 1);
        luaL_error(L, "tensor: ragged nested table: element %s is a %s, expected a table of %d", where,
                   luaL_typename(L, -1), (int)t->shape[depth + 1]);
      }
      fill_nested(L, lua_gettop(L), t, depth + 1, pos, flat);
    } else {
      pos_str(where, sizeof where, pos, depth + 1);
      if (type == LUA_TTABLE)
        luaL_error(L, "tensor: ragged nested table: element %s is a table, expected a number", where);
      char what[180];
      snprintf(what, sizeof what, "element %s", where);
      store_value(L, lua_gettop(L), t, (*flat)++, "tensor", what);
    }
    lua_pop(L, 1);
  }
}

static int l_tensor_new(lua_State *L) {
  ctor_opts o;
  read_opts(L, 2, "tensor", &o);
  int type = lua_type(L, 1);
  int nd = 0;
  int64_t shape[CF_MAX_DIMS];
  if (type == LUA_TTABLE) {
    lua_pushvalue(L, 1);
    for (;;) {
      if (nd >= CF_MAX_DIMS) luaL_error(L, "tensor: nested deeper than %d levels", CF_MAX_DIMS);
      lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
      shape[nd++] = n;
      if (n == 0) break;
      lua_rawgeti(L, -1, 1);
      if (lua_type(L, -1) != LUA_TTABLE) { lua_pop(L, 1); break; }
      lua_remove(L, -2);
    }
    lua_pop(L, 1);
  } else if (type != LUA_TNUMBER && type != LUA_TBOOLEAN) {
    luaL_error(L, "tensor: argument #1: expected a number or a nested table of numbers, got %s",
               luaL_typename(L, 1));
  }
  cf_tensor **slot = cf_lua_newtensorbox(L);
  cf_tensor *t;
  CF_LUA_CORE(L, t = cf_tensor_zeros(nd, shape, o.dtype));
  cf_lua_fillbox(L, slot, t);
  int64_t pos[CF_MAX_DIMS], flat = 0;
  if (type == LUA_TTABLE) {
    fill_nested(L, 1, t, 0, pos, &flat);
  } else {
    lua_pushvalue(L, 1);
    store_value(L, lua_gettop(L), t, 0, "tensor", "the value");
    lua_pop(L, 1);
  }
  return finish_new(L, &o, "tensor");
}

static int l_is_tensor(lua_State *L) {
  lua_pushboolean(L, luaL_testudata(L, 1, CF_LUA_TENSOR_MT) != NULL);
  return 1;
}

/* ---------------------------------------------------------------- generic op call */

/* Looks for the reference tensor among the arguments: the first floating tensor (for numbers in
 * T slots) and the first tensor of any dtype (device, M slots). Lists count by their entries. */
static void find_refs(lua_State *L, int nargs, cf_tensor **ref_float, cf_tensor **ref_any) {
  *ref_float = *ref_any = NULL;
  for (int i = 1; i <= nargs && !*ref_float; i++) {
    cf_tensor *t = cf_lua_totensor(L, i);
    if (!t && lua_type(L, i) == LUA_TTABLE) {
      lua_rawgeti(L, i, 1);
      t = cf_lua_totensor(L, -1);
      lua_pop(L, 1);
    }
    if (!t) continue;
    if (!*ref_any) *ref_any = t;
    if (cf_dtype_is_float(t->dtype)) *ref_float = t;
  }
}

typedef struct {
  lua_State *L;
  const cf_op_info *op;
  cf_tensor *ref_float, *ref_any;
} op_ctx;

static int op_error(op_ctx *c, int ai, const char *what, const char *fmt, const char *detail) {
  return luaL_error(c->L, "%s: argument #%d (%s): %s%s", c->op->name, user_argno(c->L, ai), what, fmt,
                    detail ? detail : "");
}

/* A tensor for slot letter `s` from argument ai: a tensor, a number (-> 0-d tensor kept alive by a
 * box left on the stack), or NULL for an absent optional. */
static cf_tensor *tensor_arg(op_ctx *c, int ai, char s) {
  lua_State *L = c->L;
  cf_tensor *t = cf_lua_totensor(L, ai);
  if (t) return t;
  int type = lua_type(L, ai);
  bool optional = s == 't' || s == 'i' || s == 'm';
  if ((type == LUA_TNIL || type == LUA_TNONE) && optional) return NULL;
  if (type != LUA_TNUMBER) {
    /* t.sum() (a '.' for ':') passes no tensor first */
    bool dot = ai == 1 && (type == LUA_TNIL || type == LUA_TNONE);
    luaL_error(L, "%s: argument #%d: expected a tensor or a number, got %s%s%s%s", c->op->name,
               user_argno(L, ai), luaL_typename(L, ai), dot ? " (a method is called with ':', t:" : "",
               dot ? c->op->name : "", dot ? "(...))" : "");
  }
  cf_dtype dt = CF_DTYPE_F32;
  cf_device dev = CF_DEVICE_CPU;
  if (s == 'I' || s == 'i') dt = CF_DTYPE_I64;
  else if (s == 'M' || s == 'm') dt = c->ref_any ? c->ref_any->dtype : CF_DTYPE_F32;
  else if (c->ref_float) dt = c->ref_float->dtype;
  if (c->ref_any) dev = cf_tensor_device(c->ref_any);
  double v = lua_tonumber(L, ai);
  /* a number beside an integer tensor in an any-dtype slot keeps its value: a fraction
   * (ids:lt(2.5)), an infinity or a number past the dtype's range (ids:lt(math.huge)) */
  if ((s == 'M' || s == 'm') && !cf_dtype_is_float(dt) && (v != floor(v) || !cf_value_fits(dt, v)))
    dt = CF_DTYPE_F64;
  /* an index (ids, targets) must be a whole number: 1.5 was truncated to 1 without a word, NaN
   * failed in the scalar's conversion without naming the op */
  if (dt == CF_DTYPE_I64 && !(v == floor(v) && v >= -9.2e18 && v <= 9.2e18))
    luaL_error(L, "%s: argument #%d: the index %s is not an integer", c->op->name, user_argno(L, ai),
               lua_tostring(L, ai));
  luaL_checkstack(L, 2, "too many arguments");
  cf_tensor **slot = cf_lua_newtensorbox(L);
  CF_LUA_CORE(L, t = cf_tensor_scalar(v, dt));
  if (t && dev != CF_DEVICE_CPU) {
    cf_tensor *d;
    CF_LUA_CORE(L, d = cf_tensor_to_device(t, dev));
    cf_tensor_release(t);
    t = d;
  }
  cf_lua_fillbox(L, slot, t);
  return t;
}

/* The signature that leads the op's doc ("t:sort(dim [, descending])"), or NULL when the doc
 * starts otherwise. */
static const char *doc_signature(const cf_op_info *op) {
  const char *d = op->doc;
  size_t nl = strlen(op->name);
  if (!d || !d[0] || d[1] != ':' || strncmp(d + 2, op->name, nl) != 0 || d[2 + nl] != '(') return NULL;
  return strchr(d, ')') ? d : NULL;
}

/* The name the doc's signature gives argument n after the tensor (sort's 2 is "descending"),
 * copied into buf, or NULL. */
static const char *doc_param(const cf_op_info *op, int n, char *buf, size_t size) {
  const char *d = doc_signature(op);
  if (!d) return NULL;
  d = strchr(d, '(') + 1;
  for (int k = 1; *d && *d != ')'; k++) {
    while (*d == ' ' || *d == '[' || *d == ',') d++;
    size_t len = strcspn(d, " ,[])=");   /* "unbiased=true": the name without its default */
    if (k == n && len > 0 && len < size) { memcpy(buf, d, len); buf[len] = 0; return buf; }
    d += len;
    while (*d == ' ' || *d == ']') d++;
  }
  return NULL;
}

/* A 0-based dim from argument ai; `extra` is 1 for an insertion dim (range ndim + 1). */
static int64_t dim_arg(op_ctx *c, int ai, const cf_tensor *ref, int extra) {
  lua_State *L = c->L;
  int ok = 0;
  lua_Integer d = lua_type(L, ai) == LUA_TNUMBER ? lua_tointegerx(L, ai, &ok) : 0;
  if (!ok) {
    /* t:min(u), PyTorch's elementwise form */
    const char *pair = strcmp(c->op->name, "min") == 0 ? "minimum" : strcmp(c->op->name, "max") == 0 ? "maximum" : NULL;
    if (pair && cf_lua_totensor(L, ai))
      luaL_error(L, "%s: argument #%d (dim): expected an integer, got a tensor (the elementwise %s of two tensors "
                    "is a:%s(b))", c->op->name, user_argno(L, ai), c->op->name, pair);
    if (lua_isnoneornil(L, ai)) {   /* an optional dim (D) was taken as absent before */
      const char *sig = doc_signature(c->op);
      char usage[160] = "";
      if (sig) snprintf(usage, sizeof usage, " (%.*s)", (int)(strchr(sig, ')') - sig + 1), sig);
      luaL_error(L, "%s: argument #%d (dim) is required%s", c->op->name, user_argno(L, ai), usage);
    }
    op_error(c, ai, "dim", "expected an integer, got ", shown_int_arg(L, ai));
  }
  int nd = (ref ? ref->ndim : 0) + extra;
  if (d >= 1 && d <= nd) return d - 1;
  if (d <= -1 && d >= -nd) return nd + d;
  if (nd == 0)
    return luaL_error(L, "%s: argument #%d (dim): the tensor is 0-d (a scalar) and has no dim %I", c->op->name,
                      user_argno(L, ai), (lua_Integer)d);
  char b[128];
  return luaL_error(L, "%s: argument #%d (dim): %I is out of range for %s%d-d tensor %s (valid: 1..%d or -%d..-1)",
                    c->op->name, user_argno(L, ai), (lua_Integer)d, extra ? "insertion into a " : "a ",
                    ref ? ref->ndim : 0, ref ? shape_str(ref, b, sizeof b) : "[]", nd, nd);
}

static bool flag_arg(op_ctx *c, int ai, bool dflt) {
  int type = lua_type(c->L, ai);
  if (type == LUA_TNIL || type == LUA_TNONE) return dflt;
  char name[32];
  if (type != LUA_TBOOLEAN)
    op_error(c, ai, doc_param(c->op, ai - 1, name, sizeof name) ? name : "flag", "expected a boolean, got ",
             luaL_typename(c->L, ai));
  return lua_toboolean(c->L, ai);
}

static void push_int_slot(op_ctx *c, cf_args *a, int64_t v) {
  if (a->ni >= CF_MAX_ARGS) luaL_error(c->L, "%s: too many integer arguments", c->op->name);
  a->i[a->ni++] = v;
}

/* A shape (s) or permutation (p) from a table at ai or the integer arguments from ai on.
 * Returns the next argument index. */
static int list_arg(op_ctx *c, int ai, cf_args *a, bool perm, const cf_tensor *ref) {
  lua_State *L = c->L;
  int64_t v[CF_MAX_DIMS];
  int n = 0;
  const char *what = perm ? "permutation" : "shape";
  bool table = lua_type(L, ai) == LUA_TTABLE && !cf_lua_totensor(L, ai);
  int count = table ? (int)lua_rawlen(L, ai) : 0;
  if (!table) {
    while (lua_type(L, ai + count) == LUA_TNUMBER) count++;
    if (count == 0 && !(lua_isnoneornil(L, ai) && !perm))
      op_error(c, ai, what, "expected a table or integers, got ", luaL_typename(L, ai));
  }
  if (count > CF_MAX_DIMS) luaL_error(L, "%s: %s has %d entries, at most %d", c->op->name, what, count, CF_MAX_DIMS);
  for (int k = 0; k < count; k++) {
    int idx = ai + k;
    if (table) { lua_rawgeti(L, ai, k + 1); idx = lua_gettop(L); }
    int ok = 0;
    lua_Integer x = lua_type(L, idx) == LUA_TNUMBER ? lua_tointegerx(L, idx, &ok) : 0;
    if (!ok) {
      const char *got = lua_type(L, idx) == LUA_TNUMBER ? cf_lua_shown(L, idx) : luaL_typename(L, idx);
      luaL_error(L, "%s: %s entry %d is not an integer, got %s", c->op->name, what, k + 1, got);
    }
    if (perm) {
      int nd = ref ? ref->ndim : 0;
      if (x >= 1 && x <= nd) x -= 1;
      else if (x <= -1 && x >= -nd) x += nd;
      else {
        char b[128];
        luaL_error(L, "%s: permutation entry %d is %d, out of range for a %d-d tensor %s", c->op->name,
                   k + 1, (int)x, nd, ref ? shape_str(ref, b, sizeof b) : "[]");
      }
    }
    v[n++] = x;
    if (table) lua_pop(L, 1);
  }
  push_int_slot(c, a, n);
  for (int k = 0; k < n; k++) push_int_slot(c, a, v[k]);
  return table ? ai + 1 : ai + count;
}

/* Runs op `id` on the arguments on the stack; errors point at the Lua caller of the running C
 * function (the method, module function or metamethod). */
static int do_op(lua_State *L, int id) {
  const cf_op_info *op = &cf_ops[id];
  int nargs = lua_gettop(L);
  op_ctx c = {L, op, NULL, NULL};
  find_refs(L, nargs, &c.ref_float, &c.ref_any);
  /* Pad with nils past every position the spec can read, so that the boxes and scratch pushed
   * while parsing are never mistaken for arguments (each letter advances by at most one
   * position past the last argument). */
  int pad = (int)strlen(op->spec) + 2;
  luaL_checkstack(L, pad + 8, "too many arguments");
  lua_settop(L, nargs + pad);

  /* room for the inputs: fixed slots plus, for an L slot, the list's entries */
  int cap = 0;
  for (const char *p = op->spec; *p; p++) if (strchr("TIMtim", *p)) cap++;
  int list_len = 0;
  if (strchr(op->spec, 'L')) {
    for (int i = 1; i <= nargs; i++)
      if (lua_type(L, i) == LUA_TTABLE && !cf_lua_totensor(L, i)) { list_len = (int)lua_rawlen(L, i); break; }
    cap += list_len + 1;
  }
  cf_tensor *fixed_in[8];
  cf_tensor **in = fixed_in;
  if (cap > 8) in = lua_newuserdatauv(L, (size_t)cap * sizeof *in, 0);

  cf_args a = cf_args_none();
  int nin = 0, ai = 1;
  int64_t last_dim = -1;
  for (const char *p = op->spec; *p; p++) {
    char s = *p;
    cf_tensor *ref = nin > 0 ? in[0] : c.ref_any;
    switch (s) {
      case ' ': break;
      case 'T': case 'I': case 'M': case 't': case 'i': case 'm':
        in[nin++] = tensor_arg(&c, ai, s);
        ai++;
        break;
      case 'L': {
        int start = nin;
        cf_tensor *head = cf_lua_totensor(L, ai);
        if (head) in[nin++] = head, ai++; /* method form: a:cat({b, c}, dim) */
        if (lua_type(L, ai) != LUA_TTABLE || cf_lua_totensor(L, ai))
          op_error(&c, ai, "list", "expected a table of tensors, got ", luaL_typename(L, ai));
        int n = (int)lua_rawlen(L, ai);
        if (n != list_len || nin + n > cap) luaL_error(L, "%s: the tensor list changed while reading it", op->name);
        for (int k = 1; k <= n; k++) {
          lua_rawgeti(L, ai, k);
          cf_tensor *t = cf_lua_totensor(L, -1);
          lua_pop(L, 1); /* still anchored by the list table */
          if (!t) luaL_error(L, "%s: entry %d of the tensor list is not a tensor", op->name, k);
          in[nin++] = t;
        }
        if (nin == start) luaL_error(L, "%s: the tensor list is empty", op->name);
        ai++;
        break;
      }
      case 'd': last_dim = dim_arg(&c, ai++, ref, 0); push_int_slot(&c, &a, last_dim); break;
      case 'D': {
        int type = lua_type(L, ai);
        if (type == LUA_TNIL || type == LUA_TNONE) { push_int_slot(&c, &a, CF_DIM_ALL); ai++; }
        else push_int_slot(&c, &a, dim_arg(&c, ai++, ref, 0));
        break;
      }
      case 'e': push_int_slot(&c, &a, dim_arg(&c, ai++, ref, 1)); break;
      case 'x': {
        int ok = 0;
        lua_Integer x = lua_type(L, ai) == LUA_TNUMBER ? lua_tointegerx(L, ai, &ok) : 0;
        if (!ok) op_error(&c, ai, "index", "expected an integer, got ", shown_int_arg(L, ai));
        int64_t size = (ref && last_dim >= 0) ? ref->shape[last_dim] : 0;
        int64_t i0 = x >= 1 ? x - 1 : size + x;
        /* a start followed by a length (narrow) may be one past the end: an empty slice there */
        const char *q = p + 1;
        while (*q == ' ') q++;
        int64_t limit = *q == 'n' ? size + 1 : size;
        if (x == 0 || i0 < 0 || i0 >= limit) {
          char b[128];
          luaL_error(L, "%s: argument #%d (index): %I is out of range for dim %d of size %I in %s",
                     op->name, user_argno(L, ai), (lua_Integer)x, (int)last_dim + 1, (lua_Integer)size,
                     ref ? shape_str(ref, b, sizeof b) : "[]");
        }
        push_int_slot(&c, &a, i0);
        ai++;
        break;
      }
      case 'n': {
        int ok = 0;
        lua_Integer n = lua_type(L, ai) == LUA_TNUMBER ? lua_tointegerx(L, ai, &ok) : 0;
        if (!ok || n < 0) op_error(&c, ai, "count", "expected an integer >= 0, got ", cf_lua_shown(L, ai));
        push_int_slot(&c, &a, n);
        ai++;
        break;
      }
      case 'k': push_int_slot(&c, &a, flag_arg(&c, ai++, false)); break;
      case 'c': push_int_slot(&c, &a, flag_arg(&c, ai++, true)); break;
      case 'f': case 'F': {
        int type = lua_type(L, ai);
        double v;
        if (s == 'F' && (type == LUA_TNIL || type == LUA_TNONE)) v = NAN;
        else if (type == LUA_TNUMBER) v = lua_tonumber(L, ai);
        else v = op_error(&c, ai, "number", "expected a number, got ", luaL_typename(L, ai));
        /* an optional number's NaN means "absent" to the core: a NaN given is refused, not
         * taken for the default (a NaN temperature computed at T = 1) */
        if (s == 'F' && type == LUA_TNUMBER && v != v)
          op_error(&c, ai, "number", "expected a number or nil (nil for the default), got ", "nan");
        if (a.nf >= 6) luaL_error(L, "%s: too many number arguments", op->name);
        a.f[a.nf++] = v;
        ai++;
        break;
      }
      case 's': ai = list_arg(&c, ai, &a, false, ref); break;
      case 'p': ai = list_arg(&c, ai, &a, true, ref); break;
      case 'y': {
        const char *name = lua_type(L, ai) == LUA_TSTRING ? lua_tostring(L, ai) : NULL;
        cf_dtype dt;
        if (!name) op_error(&c, ai, "dtype", "expected a dtype name, got ", luaL_typename(L, ai));
        if (cf_dtype_from_name(name, &dt)) luaL_error(L, "%s: %s", op->name, cf_error_message());
        push_int_slot(&c, &a, dt);
        ai++;
        break;
      }
      default:
        luaL_error(L, "%s: unknown spec letter '%c' in ops.def", op->name, s);
    }
  }
  for (int i = ai; i <= nargs; i++) {
    if (lua_isnil(L, i)) continue;
    const char *sig = doc_signature(op);
    char usage[160];
    if (sig) snprintf(usage, sizeof usage, "; %.*s", (int)(strchr(sig, ')') - sig + 1), sig);
    else snprintf(usage, sizeof usage, ", at most %d", user_argno(L, ai - 1));
    luaL_error(L, "%s: too many arguments (%d given%s)", op->name, user_argno(L, nargs), usage);
  }
  cf_tensor **slot = cf_lua_newtensorbox(L);
  cf_tensor *out;
  CF_LUA_CORE(L, out = cf_op((cf_op_id)id, in, nin, &a));
  if (!out) {
    /* a failure below the op's own checks (an allocation, a device error) says which op it was
     * in: "add: tensor.c:112: out of memory ..." (it did not before the twenty-second session) */
    char named[64];
    snprintf(named, sizeof named, "%s:", op->name);
    if (!strstr(cf_error_message(), named)) cf_error_prefix("%s: ", op->name);
  }
  cf_lua_fillbox(L, slot, out);
  return 1;
}

static int l_op(lua_State *L) { return do_op(L, (int)lua_tointeger(L, lua_upvalueindex(1))); }

static int mm_add(lua_State *L) { return do_op(L, CF_OP_add); }
static int mm_sub(lua_State *L) { return do_op(L, CF_OP_sub); }
static int mm_mul(lua_State *L) { return do_op(L, CF_OP_mul); }
static int mm_div(lua_State *L) { return do_op(L, CF_OP_div); }
static int mm_pow(lua_State *L) { return do_op(L, CF_OP_pow); }
static int mm_unm(lua_State *L) {
  lua_settop(L, 1); /* Lua passes the operand twice */
  return do_op(L, CF_OP_neg);
}

/* ---------------------------------------------------------------- methods */

/* __gc: drops the box's reference now (idempotent) */
static int m_gc(lua_State *L) {
  tbox *b = checkbox(L, 1);
  cf_tensor_release(b->t);
  b->t = NULL;
  cf_lua_release_pending(L);
  return 0;
}

static void release_tensor(void *t) { cf_tensor_release(t); }

/* t:free() and __close: the same, through cf_lua_release (later when a binding runs below) */
static int m_free(lua_State *L) {
  tbox *b = checkbox(L, 1);
  cf_tensor *t = b->t;
  b->t = NULL;
  cf_lua_release(L, release_tensor, t);
  return 0;
}

static int m_shape(lua_State *L) {
  cf_tensor *t = cf_lua_checktensor(L, 1);
  if (!lua_isnoneornil(L, 2)) { /* t:size(d) */
    op_ctx c = {L, NULL, NULL, NULL};
    static const cf_op_info size_info = {"size", "T d", 0, "", NULL, NULL, NULL, NULL, NULL};
    c.op = &size_info;
    lua_pushinteger(L, t->shape[dim_arg(&c, 2, t, 0)]);
    return 1;
  }
  lua_createtable(L, t->ndim, 0);
  for (int d = 0; d < t->ndim; d++) {
    lua_pushinteger(L, t->shape[d]);
    lua_rawseti(L, -2, d + 1);
  }
  return 1;
}

static int m_numel(lua_State *L) {
  lua_pushinteger(L, cf_tensor_numel(cf_lua_checktensor(L, 1)));
  return 1;
}

static int m_dim(lua_State *L) {
  lua_pushinteger(L, cf_lua_checktensor(L, 1)->ndim);
  return 1;
}

static int m_dtype(lua_State *L) {
  lua_pushstring(L, cf_dtype_name(cf_lua_checktensor(L, 1)->dtype));
  return 1;
}

static int m_device(lua_State *L) {
  lua_pushstring(L, cf_device_name(cf_tensor_device(cf_lua_checktensor(L, 1))));
  return 1;
}

static int m_is_contiguous(lua_State *L) {
  lua_pushboolean(L, cf_tensor_is_contiguous(cf_lua_checktensor(L, 1)));
  return 1;
}

static void totable_rec(lua_State *L, const cf_tensor *h, int depth, int64_t *flat) {
  luaL_checkstack(L, 3, "totable: nesting too deep");
  int64_t n = h->shape[depth];
  lua_createtable(L, n > INT32_MAX ? INT32_MAX : (int)n, 0);
  for (int64_t i = 0; i < n; i++) {
    if (depth + 1 < h->ndim) totable_rec(L, h, depth + 1, flat);
    else push_elem_at(L, h, flat_offset(h, (*flat)++));
    lua_rawseti(L, -2, i + 1);
  }
}

static int m_totable(lua_State *L) {
  cf_tensor *h = push_host(L, cf_lua_checktensor(L, 1));
  if (h->ndim == 0) {
    push_elem_at(L, h, h->offset);
    return 1;
  }
  int64_t flat = 0;
  totable_rec(L, h, 0, &flat);
  return 1;
}

static int m_item(lua_State *L) {
  cf_tensor *t = cf_lua_checktensor(L, 1);
  int64_t n = cf_tensor_numel(t);
  if (n != 1) {
    char b[128];
    return luaL_error(L, "item: tensor %s has %I elements, expected exactly one", shape_str(t, b, sizeof b), (lua_Integer)n);
  }
  cf_tensor *h = push_host(L, t);
  push_elem_at(L, h, flat_offset(h, 0));
  return 1;
}

/* Storage offset of the element at 1-based indices args [first, first + ndim). */
static int64_t index_offset(lua_State *L, const cf_tensor *t, int first, int given, const char *fn) {
  char b[128];
  if (given != t->ndim)
    luaL_error(L, "%s: %d indices given for a %d-d tensor %s", fn, given, t->ndim, shape_str(t, b, sizeof b));
  int64_t off = t->offset;
  for (int d = 0; d < t->ndim; d++) {
    lua_Integer i = check_int(L, first + d, fn, "index");
    int64_t i0 = i >= 1 ? i - 1 : t->shape[d] + i;
    if (i == 0 || i0 < 0 || i0 >= t->shape[d])
      luaL_error(L, "%s: index %I is out of range for dim %d of size %I in %s", fn, (lua_Integer)i, d + 1,
                 (lua_Integer)t->shape[d], shape_str(t, b, sizeof b));
    off += i0 * t->stride[d];
  }
  return off;
}

static void check_cpu_writable(lua_State *L, const cf_tensor *t, const char *fn) {
  if (cf_tensor_device(t) != CF_DEVICE_CPU)
    luaL_error(L, "%s: the tensor is on %s; element writes need a CPU tensor", fn, cf_device_name(cf_tensor_device(t)));
}

static int m_get(lua_State *L) {
  cf_tensor *t = cf_lua_checktensor(L, 1);
  int given = lua_gettop(L) - 1;
  int64_t off = index_offset(L, t, 2, given, "get");
  if (cf_tensor_device(t) == CF_DEVICE_CPU) {
    push_elem_at(L, t, off);
    return 1;
  }
  cf_tensor *el = NULL, *h = NULL;
  int64_t idx[CF_MAX_DIMS];
  for (int d = 0; d < t->ndim; d++) {
    lua_Integer i = lua_tointeger(L, 2 + d);
    idx[d] = i >= 1 ? i - 1 : t->shape[d] + i;
  }
  cf_tensor **slot = cf_lua_newtensorbox(L);
  CF_LUA_CORE(L, {
    el = cf_view_alias(t);
    for (int d = 0; d < t->ndim && el; d++) {
      cf_tensor *s = cf_view_narrow(el, d, idx[d], 1);
      cf_tensor_release(el);
      el = s;
    }
    h = el ? cf_tensor_to_device(el, CF_DEVICE_CPU) : NULL;
    cf_tensor_release(el);
  });
  cf_lua_fillbox(L, slot, h);
  push_elem_at(L, h, h->offset);
  return 1;
}

static int m_set(lua_State *L) {
  cf_tensor *t = cf_lua_checktensor(L, 1);
  int top = lua_gettop(L);
  if (top < 2) return luaL_error(L, "set: expected indices and a value");
  check_cpu_writable(L, t, "set");
  int64_t off = index_offset(L, t, 2, top - 2, "set");
  store_value(L, top, t, off, "set", "the value");
  cf_tensor_bump_version(t); /* an in-place write: autograd's saved-value check (tensor.h) */
  lua_settop(L, 1);
  return 1;
}

static int m_fill_(lua_State *L) {
  cf_tensor *t = cf_lua_checktensor(L, 1);
  double v = luaL_checknumber(L, 2);
  int rc;
  CF_LUA_CORE(L, rc = cf_tensor_fill_(t, v));
  if (rc) cf_lua_error(L);
  lua_settop(L, 1);
  return 1;
}

static int m_copy_(lua_State *L) {
  cf_tensor *t = cf_lua_checktensor(L, 1);
  cf_tensor *s = cf_lua_checktensor(L, 2);
  /* copy_ is not on the tape: src's gradient would stop here without a word (a batch assembled
   * with copy_ trained nothing through it) */
  if (cf_grad_enabled() && (s->requires_grad || s->grad_fn))
    luaL_error(L, "copy_: src needs a gradient, and copy_ is not recorded for autograd (the copy would carry "
               "none): build the tensor with ops (confit.cat, confit.stack, confit.where), or copy src:detach() "
               "or inside confit.no_grad to drop the gradient on purpose");
  /* an expanded view holds one element at several places: which of src's values lands there
   * would be whichever was written last */
  /* (a tensor of no elements has stride 0 wherever a later dim is 0, and nothing to repeat) */
  for (int d = 0; d < t->ndim && cf_tensor_numel(t) > 0; d++)
    if (t->stride[d] == 0 && t->shape[d] > 1) {
      char b[128];
      luaL_error(L, "copy_: the destination %s repeats its elements along dim %d (an expanded view): several "
                 "values of src would land on one element; copy into a tensor of its own (t:contiguous())",
                 shape_str(t, b, sizeof b), d + 1);
    }
  int rc;
  CF_LUA_CORE(L, rc = cf_tensor_copy_(t, s));
  if (rc) cf_lua_error(L);
  lua_settop(L, 1);
  return 1;
}

/* Pushes the new tensor make(self) returns (t:clone(), t:detach()); the box comes first. */
static int push_made_from_self(lua_State *L, cf_tensor *(*make)(cf_tensor *)) {
  cf_tensor *t = cf_lua_checktensor(L, 1);
  cf_tensor **slot = cf_lua_newtensorbox(L);
  cf_tensor *r;
  CF_LUA_CORE(L, r = make(t));
  cf_lua_fillbox(L, slot, r);
  return 1;
}

static int m_clone(lua_State *L) { return push_made_from_self(L, cf_tensor_clone); }
static int m_detach(lua_State *L) { return push_made_from_self(L, cf_detach); }

static void set_requires_grad(lua_State *L, cf_tensor *t, bool on) {
  if (t->grad_fn) {
    luaL_error(L, "requires_grad can only be set on leaf tensors; this one was computed by %s "
               "(use t:detach() for a new leaf)", cf_ops[t->grad_fn->op].name);
  }
  if (on && !cf_dtype_is_float(t->dtype))
    luaL_error(L, "requires_grad needs a floating tensor, not %s", cf_dtype_name(t->dtype));
  t->requires_grad = on;
}

static int m_requires_grad_(lua_State *L) {
  cf_tensor *t = cf_lua_checktensor(L, 1);
  set_requires_grad(L, t, lua_isnone(L, 2) ? true : lua_toboolean(L, 2));
  lua_settop(L, 1);
  return 1;
}

static int m_zero_grad(lua_State *L) {
  cf_zero_grad(cf_lua_checktensor(L, 1));
  lua_settop(L, 1);
  return 1;
}

/* t:backward([seed [, {retain_graph = true}]]); seed is a tensor of t's shape or a number. */
static int m_backward(lua_State *L) {
  cf_tensor *t = cf_lua_checktensor(L, 1);
  int seed_idx = 2, opts_idx = 3;
  if (lua_type(L, 2) == LUA_TTABLE && !cf_lua_totensor(L, 2)) { seed_idx = 0; opts_idx = 2; }
  bool retain = false;
  if (lua_type(L, opts_idx) == LUA_TTABLE) {
    lua_pushnil(L); /* a misspelt option would otherwise be ignored without a word */
    while (lua_next(L, opts_idx)) {
      lua_pop(L, 1);
      if (lua_type(L, -1) != LUA_TSTRING || strcmp(lua_tostring(L, -1), "retain_graph") != 0)
        luaL_error(L, "backward: unknown option '%s' (the only option is retain_graph)", luaL_tolstring(L, -1, NULL));
    }
    lua_getfield(L, opts_idx, "retain_graph");
    retain = lua_toboolean(L, -1);
    lua_pop(L, 1);
  } else if (!lua_isnoneornil(L, opts_idx)) {
    luaL_error(L, "backward: options must be a table such as {retain_graph = true}");
  }
  t = cf_lua_checktensor(L, 1); /* the option reads may have run Lua that freed it (see below) */
  cf_tensor *seed = NULL;
  if (seed_idx && !lua_isnoneornil(L, seed_idx)) {
    seed = cf_lua_totensor(L, seed_idx);
    if (!seed) {
      if (lua_type(L, seed_idx) != LUA_TNUMBER)
        luaL_error(L, "backward: the seed must be a tensor or a number, got %s", luaL_typename(L, seed_idx));
      double v = lua_tonumber(L, seed_idx);
      cf_tensor **slot = cf_lua_newtensorbox(L);
      cf_tensor *s;
      CF_LUA_CORE(L, {
        s = cf_tensor_full(t->ndim, t->shape, t->dtype, v);
        if (s && cf_tensor_device(t) != CF_DEVICE_CPU) {
          cf_tensor *d = cf_tensor_to_device(s, cf_tensor_device(t));
          cf_tensor_release(s);
          s = d;
        }
      });
      cf_lua_fillbox(L, slot, s);
      seed = s;
    }
  }
  /* the option reads and the seed's box may have run Lua (an __index, a finalizer) that freed t
   * or the seed: looked up again, an error if freed, instead of used after free */
  t = cf_lua_checktensor(L, 1);
  if (seed_idx && !lua_isnoneornil(L, seed_idx) && cf_lua_totensor(L, seed_idx)) seed = cf_lua_checktensor(L, seed_idx);
  else if (seed) seed = cf_lua_checktensor(L, -1);
  if (!t->requires_grad && t->grad_cut_by) return luaL_error(L, "%s", cf_grad_cut_message(t));
  if (!t->requires_grad) /* the core's message, and the usual cause when training by hand */
    return luaL_error(L, "backward: the tensor does not require grad (no input had requires_grad, or it was "
                         "computed inside confit.no_grad or from detached tensors; a loaded model's parameters "
                         "need require(\"confit.train\").trainable(m) first)");
  int rc;
  CF_LUA_CORE(L, rc = cf_backward(t, seed, retain));
  if (rc) cf_lua_error(L);
  return 0;
}

/* ---------------------------------------------------------------- metamethods */

static int mm_index(lua_State *L) {
  tbox *b = checkbox(L, 1);
  int type = lua_type(L, 2);
  if (type == LUA_TSTRING) {
    lua_pushvalue(L, 2);
    if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL) return 1;
    const char *k = lua_tostring(L, 2);
    if (strcmp(k, "grad") == 0) {
      cf_tensor *t = cf_lua_checktensor(L, 1);
      if (!t->grad) return 0;
      cf_tensor_retain(t->grad);
      cf_lua_pushtensor(L, t->grad);
      return 1;
    }
    if (strcmp(k, "requires_grad") == 0) {
      lua_pushboolean(L, cf_lua_checktensor(L, 1)->requires_grad);
      return 1;
    }
    return 0;
  }
  if (type == LUA_TNUMBER) {
    int ok = 0;
    lua_Integer i = lua_tointegerx(L, 2, &ok);
    if (!b->t) cf_lua_checktensor(L, 1);
    if (!ok) return luaL_error(L, "tensor index %s is not an integer", cf_lua_shown(L, 2));
    cf_tensor *t = b->t;
    char sh[128];
    if (t->ndim == 0) return luaL_error(L, "cannot index a 0-d tensor (use t:item())");
    if (i == 0 || i > t->shape[0] || i < -t->shape[0])
      /* ipairs(t) reads t[#t + 1] to find the end: say so where that is the likely cause */
      return luaL_error(L, "t[%I]: index out of range for dim 1 of size %I in %s%s", (lua_Integer)i,
                        (lua_Integer)t->shape[0], shape_str(t, sh, sizeof sh),
                        i == t->shape[0] + 1 ? " (ipairs over a tensor reads one past its end: loop "
                                               "for i = 1, #t)" : "");
    /* t[i] = t:select(1, i) */
    lua_settop(L, 1);
    lua_pushinteger(L, 1);
    lua_pushinteger(L, i);
    return do_op(L, CF_OP_select);
  }
  return 0;
}

static int mm_newindex(lua_State *L) {
  cf_tensor *t = cf_lua_checktensor(L, 1);
  const char *k = lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : NULL;
  if (k && strcmp(k, "requires_grad") == 0) {
    set_requires_grad(L, t, lua_toboolean(L, 3));
    return 0;
  }
  if (k && strcmp(k, "grad") == 0) {
    if (lua_isnil(L, 3)) { cf_zero_grad(t); return 0; }
    cf_tensor *g = cf_lua_checktensor(L, 3);
    char a[128], b[128];
    if (!cf_same_shape(g, t) || g->dtype != t->dtype || cf_tensor_device(g) != cf_tensor_device(t))
      return luaL_error(L, "grad: must match the tensor: %s %s given for %s %s", shape_str(g, a, sizeof a),
                        cf_dtype_name(g->dtype), shape_str(t, b, sizeof b), cf_dtype_name(t->dtype));
    /* a grad that is t itself, has a graph (which may hold t) or a grad of its own (which may be
     * t) is kept as a detached alias of its data: as it was, t.grad = t or t.grad = t * 2 made a
     * reference cycle that was never freed */
    if (g == t || g->grad_fn || g->grad || g->requires_grad) {
      CF_LUA_CORE(L, g = cf_detach(g));
      if (!g) return cf_lua_error(L);
    } else {
      cf_tensor_retain(g);
    }
    cf_tensor_release(t->grad);
    t->grad = g;
    return 0;
  }
  if (lua_type(L, 2) == LUA_TNUMBER)
    return luaL_error(L, "tensor element assignment t[i] = v is not supported; use t:set(i, ..., v) or t[i]:copy_(src)");
  return luaL_error(L, "cannot set field '%s' of a tensor (settable: requires_grad, grad)", luaL_tolstring(L, 2, NULL));
}

static int mm_len(lua_State *L) {
  cf_tensor *t = cf_lua_checktensor(L, 1);
  if (t->ndim == 0) return luaL_error(L, "#t: a 0-d tensor has no length (use t:item())");
  lua_pushinteger(L, t->shape[0]);
  return 1;
}

static int mm_eq(lua_State *L) {
  tbox *a = (tbox *)luaL_testudata(L, 1, CF_LUA_TENSOR_MT);
  tbox *b = (tbox *)luaL_testudata(L, 2, CF_LUA_TENSOR_MT);
  lua_pushboolean(L, a && b && a->t && a->t == b->t);
  return 1;
}

/* Printing: one line per row (the last dim), values right-aligned to the widest one shown.
 * A row shows every element up to SHOW_ALL, else its first and last SHOW_EDGE; rows (the
 * leading dims flattened) likewise up to SHOW_ROWS. Rows of a tensor of 3 or more dims are
 * labelled with their leading indices, 1-based: [i,j]. */
#define SHOW_ALL 16
#define SHOW_EDGE 3
#define SHOW_ROWS 8

static void format_value(char *s, size_t n, const cf_tensor *h, int64_t i) {
  int64_t off = flat_offset(h, i);
  const void *base = h->storage->data;
  switch (h->dtype) {
    case CF_DTYPE_I32: snprintf(s, n, "%d", ((const int32_t *)base)[off]); break;
    case CF_DTYPE_I64: snprintf(s, n, "%lld", (long long)((const int64_t *)base)[off]); break;
    default: {
      double v = cf_tensor_get_flat(h, i);
      if (isnan(v)) snprintf(s, n, "nan");   /* printf writes "-nan" for a NaN with its sign bit set (0/0) */
      else snprintf(s, n, "%.4g", v);
      break;
    }
  }
}

/* How many places a run of n shows (values and the gap), and the index shown at place k; -1 is
 * the gap. */
static int64_t shown_count(int64_t n, int64_t all) { return n <= all ? n : 2 * SHOW_EDGE + 1; }
static int64_t shown_index(int64_t n, int64_t all, int64_t k) {
  if (n <= all) return k;
  if (k < SHOW_EDGE) return k;
  if (k == SHOW_EDGE) return -1;
  return n - (2 * SHOW_EDGE + 1 - k);
}

/* With B NULL: the width of the widest value shown. With B: appends the rows, values padded
 * to width, and returns the same width. */
static int print_rows(luaL_Buffer *B, const cf_tensor *h, int width) {
  int64_t n = cf_tensor_numel(h);
  int64_t cols = h->ndim ? h->shape[h->ndim - 1] : 1, rows = n / cols;
  char s[64];
  int widest = 0;
  for (int64_t kr = 0; kr < shown_count(rows, SHOW_ROWS); kr++) {
    int64_t r = shown_index(rows, SHOW_ROWS, kr);
    if (B && kr) luaL_addchar(B, '\n');
    if (r < 0) {
      if (B) luaL_addstring(B, "  ...");
      continue;
    }
    if (B && h->ndim >= 3) {
      /* leading indices of row r, 1-based, padded to the widest label */
      int64_t idx[CF_MAX_DIMS], rest = r;
      for (int d = h->ndim - 2; d >= 0; d--) { idx[d] = rest % h->shape[d]; rest /= h->shape[d]; }
      char label[CF_MAX_DIMS * 22 + 4];
      int len = 0, lw = 1;
      for (int d = 0; d <= h->ndim - 2; d++) {
        len += snprintf(label + len, sizeof label - (size_t)len, d ? ",%lld" : "[%lld", (long long)idx[d] + 1);
        lw += snprintf(s, sizeof s, ",%lld", (long long)h->shape[d]);
      }
      snprintf(label + len, sizeof label - (size_t)len, "]");
      luaL_addstring(B, "  ");
      luaL_addstring(B, label);
      for (int k = len + 1; k < lw; k++) luaL_addchar(B, ' ');
    }
    for (int64_t kc = 0; kc < shown_count(cols, SHOW_ALL); kc++) {
      int64_t c = shown_index(cols, SHOW_ALL, kc);
      if (c < 0) {
        if (B) luaL_addstring(B, " ...");
        continue;
      }
      format_value(s, sizeof s, h, r * cols + c);
      int len = (int)strlen(s);
      if (len > widest) widest = len;
      if (B) {
        char cell[80];
        snprintf(cell, sizeof cell, "  %*s", width, s);
        luaL_addstring(B, cell);
      }
    }
  }
  return widest;
}

static int mm_tostring(lua_State *L) {
  tbox *b = checkbox(L, 1);
  if (!b->t) {
    lua_pushliteral(L, "tensor (freed)");
    return 1;
  }
  cf_tensor *t = b->t;
  cf_tensor *h = push_host(L, t);
  char sh[160];
  luaL_Buffer B;
  luaL_buffinit(L, &B);
  luaL_addstring(&B, "tensor");
  luaL_addstring(&B, shape_str(t, sh, sizeof sh));
  luaL_addchar(&B, ' ');
  luaL_addstring(&B, cf_dtype_name(t->dtype));
  luaL_addchar(&B, ' ');
  luaL_addstring(&B, cf_device_name(cf_tensor_device(t)));
  if (t->requires_grad) luaL_addstring(&B, " requires_grad");
  luaL_addchar(&B, '\n');
  if (cf_tensor_numel(h) == 0) luaL_addstring(&B, "  (no elements)");
  else print_rows(&B, h, print_rows(NULL, h, 0));
  luaL_pushresult(&B);
  return 1;
}

/* ---------------------------------------------------------------- autograd switches */

static int l_no_grad(lua_State *L) {
  if (lua_type(L, 1) != LUA_TFUNCTION) {   /* else Lua's own "attempt to call a number value" */
    if (luaL_getmetafield(L, 1, "__call") == LUA_TNIL)
      return luaL_error(L, "no_grad: argument #1: expected a function to run without the tape, got %s",
                        luaL_typename(L, 1));
    lua_pop(L, 1); /* the __call field: callable */
  }
  int n = lua_gettop(L);
  bool old = cf_set_grad_enabled(false);
  int st = lua_pcall(L, n - 1, LUA_MULTRET, 0);
  cf_set_grad_enabled(old);
  if (st != LUA_OK) return lua_error(L);
  return lua_gettop(L);
}

static int l_grad_enabled(lua_State *L) {
  lua_pushboolean(L, cf_grad_enabled());
  return 1;
}

static int l_set_grad_enabled(lua_State *L) {
  luaL_checktype(L, 1, LUA_TBOOLEAN);
  lua_pushboolean(L, cf_set_grad_enabled(lua_toboolean(L, 1)));
  return 1;
}

/* ---------------------------------------------------------------- registration */

static const luaL_Reg methods[] = {
  {"totable", m_totable}, {"item", m_item}, {"shape", m_shape}, {"size", m_shape},
  {"numel", m_numel}, {"dim", m_dim}, {"dtype", m_dtype}, {"device", m_device},
  {"backward", m_backward}, {"detach", m_detach}, {"requires_grad_", m_requires_grad_},
  {"zero_grad", m_zero_grad}, {"free", m_free}, {"clone", m_clone},
  {"is_contiguous", m_is_contiguous}, {"get", m_get}, {"set", m_set}, {"fill_", m_fill_},
  {"copy_", m_copy_}, {NULL, NULL}};

static const luaL_Reg metamethods[] = {
  {"__gc", m_gc}, {"__close", m_free}, {"__newindex", mm_newindex}, {"__len", mm_len},
  {"__eq", mm_eq}, {"__tostring", mm_tostring}, {"__add", mm_add}, {"__sub", mm_sub},
  {"__mul", mm_mul}, {"__div", mm_div}, {"__pow", mm_pow}, {"__unm", mm_unm}, {NULL, NULL}};

static const luaL_Reg functions[] = {
  {"tensor", l_tensor_new}, {"zeros", l_zeros}, {"ones", l_ones}, {"full", l_full},
  {"randn", l_randn}, {"rand", l_rand}, {"arange", l_arange}, {"from_bytes", l_from_bytes},
  {"manual_seed", l_manual_seed}, {"is_tensor", l_is_tensor}, {"no_grad", l_no_grad},
  {"grad_enabled", l_grad_enabled}, {"set_grad_enabled", l_set_grad_enabled},
  {"clock", l_clock}, {"memory", l_memory}, {"reset_peak_memory", l_reset_peak_memory}, {NULL, NULL}};

static const char *const docs[][2] = {
  {"confit.tensor", "confit.tensor(data [, opts]) -> tensor: from a number or nested tables of numbers; opts {dtype = \"f32\"|\"f64\"|\"bf16\"|\"i32\"|\"i64\", requires_grad = bool, device = \"cpu\"|\"cuda\"} (dtype defaults to f32, also for integer data; device as for confit.zeros)"},
  {"confit.zeros", "confit.zeros(shape [, opts]) -> tensor: filled with 0; shape {4, 8} or 4, 8; opts {dtype, requires_grad, device = \"cpu\" | \"cuda\"} (every factory takes them; device \"cuda\" where no GPU is usable: nil, \"cannot make the tensor on cuda: no usable GPU (<why>)\", as t:to)"},
  {"confit.ones", "confit.ones(shape [, opts]) -> tensor: filled with 1"},
  {"confit.full", "confit.full(shape, value [, opts]) -> tensor: filled with value"},
  {"confit.randn", "confit.randn(shape [, opts]) -> tensor: N(0, 1) samples; opts.seed gives a fresh generator with that seed, else the global one (confit.manual_seed)"},
  {"confit.rand", "confit.rand(shape [, opts]) -> tensor: U[0, 1) samples; opts.seed as for randn"},
  {"confit.arange", "confit.arange([start,] stop [, step] [, opts]) -> 1-d tensor of start, start+step, ... < stop (values, f32 unless opts.dtype)"},
  {"confit.from_bytes", "confit.from_bytes(str, shape [, opts]) -> tensor: raw little-endian bytes of opts.dtype (default f32)"},
  {"confit.manual_seed", "confit.manual_seed(n): reseed the global generator"},
  {"confit.is_tensor", "confit.is_tensor(x) -> boolean"},
  {"confit.no_grad", "confit.no_grad(fn, ...) -> fn's results: runs fn without recording the autograd tape (restored on error too)"},
  {"confit.grad_enabled", "confit.grad_enabled() -> boolean: whether ops record the autograd tape"},
  {"confit.set_grad_enabled", "confit.set_grad_enabled(on) -> previous setting"},
  {"confit.clock", "confit.clock() -> seconds: a monotonic wall clock (waits for queued GPU work first), for timing"},
  {"confit.memory", "confit.memory() -> table: {cpu_bytes = live CPU tensor bytes, cpu_peak_bytes = their most at once, ...device fields (cuda_bytes, cuda_cached_bytes, cuda_peak_bytes) when a GPU layer is present}"},
  {"confit.reset_peak_memory", "confit.reset_peak_memory(): the peaks of confit.memory() restart from what is in use now (to measure one phase)"},
  {"confit.ops", "confit.ops: the list of op names (each is a tensor method and a module function)"},
  {"confit.devices", "confit.devices: the list of device names (\"cpu\", \"cuda\"), the ones every function that takes a device accepts (t:to, m:to, the factories' opts.device, the recipes' --device), with or without a GPU"},
  {"t:totable", "t:totable() -> nested tables of numbers (a number for a 0-d tensor)"},
  {"t:item", "t:item() -> number: the value of a one-element tensor"},
  {"t:shape", "t:shape() -> {d1, d2, ...}"},
  {"t:size", "t:size([dim]) -> the shape table, or the size of dim"},
  {"t:numel", "t:numel() -> number of elements"},
  {"t:dim", "t:dim() -> number of dims"},
  {"t:dtype", "t:dtype() -> \"f32\" | \"f64\" | \"bf16\" | \"i32\" | \"i64\""},
  {"t:device", "t:device() -> \"cpu\" | \"cuda\""},
  {"t:backward", "t:backward([seed [, {retain_graph = true}]]): reverse-mode autograd from t (one element unless a seed tensor/number is given); accumulates into .grad of leaves. Refused when a value the gradient needs was written in place (fill_, copy_, set, an optimizer step) after the forward saved it, or a tensor the tape computed was written in place (its gradient would be the old value's)"},
  {"t:detach", "t:detach() -> tensor: same data, cut from the autograd graph"},
  {"t.grad", "t.grad: the accumulated gradient of a leaf after backward(), or nil; settable to nil or a same-shaped tensor"},
  {"t.requires_grad", "t.requires_grad: whether gradients flow to t; settable on leaf tensors"},
  {"t:requires_grad_", "t:requires_grad_([on = true]) -> t"},
  {"t:zero_grad", "t:zero_grad() -> t: drops t.grad"},
  {"t:free", "t:free(): release this reference now (the same as __gc and <close>; called by code a binding runs, a finalizer or an __index, once that binding returns); later use raises \"tensor was freed\""},
  {"t:clone", "t:clone() -> a fresh contiguous copy, detached from the graph (t * 1 copies with gradient)"},
  {"t:is_contiguous", "t:is_contiguous() -> boolean: row-major without gaps"},
  {"t:get", "t:get(i, j, ...) -> number: one element, 1-based indices (negative from the end)"},
  {"t:set", "t:set(i, j, ..., v) -> t: write one element (CPU; an integer dtype refuses a value that does not fit)"},
  {"t:fill_", "t:fill_(v) -> t: set every element to v (an integer dtype refuses a value that does not fit, NaN included)"},
  {"t:copy_", "t:copy_(src) -> t: copy src's values (same shape, any dtype; a view overlapping t is read whole before t is written); not recorded for autograd, so a src that needs a gradient is refused outside confit.no_grad (copy src:detach())"},
  {"t[i]", "t[i] -> t:select(1, i): the i-th slice along dim 1 (1-based, negative from the end)"},
};

void cf_lua_open_tensor(lua_State *L) {
  int module = lua_gettop(L);
  cf_set_alloc_retry_hook(alloc_retry_hook, NULL);
  cf_lua_add_memory_reporter(cpu_memory_reporter);
  cf_lua_not_binding(l_no_grad); /* it only runs Lua: frees under it are not deferred */

  /* methods table: hand-written methods, then one closure per op (ops win on a name clash) */
  lua_newtable(L);
  int mtab = lua_gettop(L);
  luaL_setfuncs(L, methods, 0);
  lua_createtable(L, CF_OP_COUNT, 0);
  int opnames = lua_gettop(L);
  for (int i = 0; i < CF_OP_COUNT; i++) {
    lua_pushinteger(L, i);
    lua_pushcclosure(L, l_op, 1);
    lua_pushvalue(L, -1);
    lua_setfield(L, mtab, cf_ops[i].name);
    lua_setfield(L, module, cf_ops[i].name); /* also confit.<op>(...), e.g. confit.cat */
    lua_pushstring(L, cf_ops[i].name);
    lua_rawseti(L, opnames, i + 1);
    cf_lua_add_doc(L, module, cf_ops[i].name, cf_ops[i].doc);
  }
  lua_setfield(L, module, "ops");
  lua_createtable(L, CF_DEVICE_COUNT, 0); /* confit.devices: the names every device argument takes */
  for (int i = 0; i < CF_DEVICE_COUNT; i++) {
    lua_pushstring(L, cf_device_name((cf_device)i));
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, module, "devices");

  luaL_newmetatable(L, CF_LUA_TENSOR_MT);
  luaL_setfuncs(L, metamethods, 0);
  lua_pushvalue(L, mtab);
  lua_pushcclosure(L, mm_index, 1);
  lua_setfield(L, -2, "__index");
  lua_pushvalue(L, mtab);
  lua_setfield(L, -2, "__methods"); /* the method table, for completion and introspection */
  lua_pop(L, 1);
  lua_setfield(L, module, "tensor_methods");

  luaL_setfuncs(L, functions, 0);
  for (size_t i = 0; i < sizeof docs / sizeof docs[0]; i++) cf_lua_add_doc(L, module, docs[i][0], docs[i][1]);
}
