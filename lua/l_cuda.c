/* l_cuda.c - the CUDA part of the Lua face: confit.cuda.{available, synchronize, device_name,
 * set_tf32, set_attention_tc, memory}, confit.empty_cache(), the device fields of
 * confit.memory(), a device synchronize before confit.clock(), and the tensor methods
 * t:to(...), t:cuda(), t:cpu().
 *
 * It compiles with or without CUDA: without CF_HAVE_CUDA, available() is false and the memory
 * fields are absent. Asking for "cuda" where no GPU is usable (a CPU-only build, no driver or
 * device, a device or its cuBLAS that did not start) is the expected environmental failure of
 * DESIGN.md: every function that places data on the GPU returns nil, message for it, worded here
 * once (cf_lua_no_gpu: t:to, t:cuda, the factories' opts.device, m:to, m:init_random_cuda). Bad
 * arguments and failures of the copy itself (out of memory) raise.
 * With CUDA, opening the part only installs lazy device hooks (no driver call): the device is
 * initialised by the first tensor placed on it, so `require "confit"` stays cheap and works on
 * machines without a GPU.
 *
 * Moves between devices are copies outside the autograd tape (no op in ops.def records them):
 * a leaf that requires grad stays a leaf that requires grad on the new device; the result of a
 * move of a non-leaf has no history. Dtype changes go through the to_dtype op and are recorded.
 */
#include <lua.h>
#include <lauxlib.h>
#include <stdbool.h>
#include <string.h>
#include "lconfit.h"
#include "autograd.h"
#include "error.h"
#include "ops.h"
#ifdef CF_HAVE_CUDA
#include "kernels/cuda.h"
#endif

#define NO_CUDA_BUILD "CUDA is not available in this build"

static int l_available(lua_State *L) {
#ifdef CF_HAVE_CUDA
  lua_pushboolean(L, cf_cuda_available());
#else
  lua_pushboolean(L, 0);
#endif
  return 1;
}

/* Waits for queued GPU work; raises when an earlier kernel failed. No-op without CUDA. */
static int l_synchronize(lua_State *L) {
#ifdef CF_HAVE_CUDA
  if (cf_cuda_synchronize()) return cf_lua_error(L);
#else
  (void)L;
#endif
  return 0;
}

/* The device's name, or nil, message when there is none. */
static int l_device_name(lua_State *L) {
#ifdef CF_HAVE_CUDA
  if (cf_cuda_init() == 0) {
    lua_pushstring(L, cf_cuda_device_name());
    return 1;
  }
  lua_pushnil(L);
  lua_pushstring(L, cf_error_message());
  return 2;
#else
  lua_pushnil(L);
  lua_pushstring(L, NO_CUDA_BUILD);
  return 2;
#endif
}

static int l_set_tf32(lua_State *L) {
  luaL_checktype(L, 1, LUA_TBOOLEAN);
#ifdef CF_HAVE_CUDA
  bool old = cf_cuda_tf32();
  cf_cuda_set_tf32(lua_toboolean(L, 1));
  lua_pushboolean(L, old);
#else
  lua_pushboolean(L, 0);
#endif
  return 1;
}

/* set_attention_tc(on) -> previous: the tensor-core attention path (attention_tc.cu). */
static int l_set_attention_tc(lua_State *L) {
  luaL_checktype(L, 1, LUA_TBOOLEAN);
#ifdef CF_HAVE_CUDA
  lua_pushboolean(L, cf_cuda_set_attention_tc(lua_toboolean(L, 1)));
#else
  lua_pushboolean(L, 0);
#endif
  return 1;
}

static int l_empty_cache(lua_State *L) {
  (void)L;
#ifdef CF_HAVE_CUDA
  cf_cuda_empty_cache();
#endif
  return 0;
}

#ifdef CF_HAVE_CUDA
static void cuda_memory_reporter(lua_State *L) {
  size_t in_use = 0, cached = 0, peak = 0;
  cf_cuda_memory(&in_use, &cached, &peak);
  lua_pushinteger(L, (lua_Integer)in_use);
  lua_setfield(L, -2, "cuda_bytes");
  lua_pushinteger(L, (lua_Integer)cached);
  lua_setfield(L, -2, "cuda_cached_bytes");
  lua_pushinteger(L, (lua_Integer)peak);
  lua_setfield(L, -2, "cuda_peak_bytes");
}

static void cuda_clock_sync(void) {
  if (cf_cuda_synchronize()) cf_error_clear(); /* a failure surfaces at the next op */
}
#endif

/* confit.cuda.memory() -> in_use, cached, peak (bytes; zeros without CUDA) */
static int l_memory(lua_State *L) {
  size_t in_use = 0, cached = 0, peak = 0;
#ifdef CF_HAVE_CUDA
  cf_cuda_memory(&in_use, &cached, &peak);
#endif
  lua_pushinteger(L, (lua_Integer)in_use);
  lua_pushinteger(L, (lua_Integer)cached);
  lua_pushinteger(L, (lua_Integer)peak);
  return 3;
}

/* confit.cuda.allocator_stats() -> table of the caching allocator's driver traffic (cuda.h) */
static int l_allocator_stats(lua_State *L) {
  lua_createtable(L, 0, 8);
#ifdef CF_HAVE_CUDA
  cf_cuda_alloc_stats s;
  cf_cuda_alloc_stats_get(&s);
#define SETI(k) (lua_pushinteger(L, (lua_Integer)s.k), lua_setfield(L, -2, #k))
  SETI(requests); SETI(cache_hits); SETI(driver_mallocs); SETI(driver_malloc_failures);
  SETI(driver_frees); SETI(cache_flushes); SETI(driver_malloc_bytes);
#undef SETI
  lua_pushnumber(L, s.driver_malloc_seconds);
  lua_setfield(L, -2, "driver_malloc_seconds");
#endif
  return 1;
}

/* ---------------------------------------------------------------- tensor methods */

int cf_lua_no_gpu(lua_State *L, const char *what) {
#ifdef CF_HAVE_CUDA
  if (cf_cuda_init() == 0) return 0;
  luaL_pushfail(L);
  if (cf_cuda_state() == CF_CUDA_NO_CUBLAS) lua_pushfstring(L, "%s: %s", what, cf_error_message());
  else lua_pushfstring(L, "%s: no usable GPU (%s)", what, cf_error_message());
#else
  luaL_pushfail(L);
  lua_pushfstring(L, "%s: no usable GPU (%s)", what, NO_CUDA_BUILD);
#endif
  return 2;
}

/* Pushes nil, message and returns 2 when a move of t to dev needs a GPU that is not usable;
 * returns 0 otherwise (nothing pushed). */
static int no_gpu_for(lua_State *L, const cf_tensor *t, cf_device dev) {
  if (dev != CF_DEVICE_CUDA || cf_tensor_device(t) == CF_DEVICE_CUDA) return 0;
  return cf_lua_no_gpu(L, "cannot move the tensor to cuda");
}

/* A copy of t on dev (t itself, retained, when already there). Leaf grad flags carry over. */
static cf_tensor *move_to(lua_State *L, cf_tensor *t, cf_device dev) {
  if (cf_tensor_device(t) == dev) {
    cf_tensor_retain(t);
    return t;
  }
#ifndef CF_HAVE_CUDA
  (void)L;
  CF_ERR("%s", NO_CUDA_BUILD);
  return NULL;
#else
  if (cf_cuda_init()) return NULL;
  cf_tensor *c;
  CF_LUA_CORE(L, c = cf_tensor_to_device(t, dev));
  if (c && t->requires_grad && !t->grad_fn) c->requires_grad = true;
  return c;
#endif
}

/* t:to(target [, target2]): each target is a device name (cf_device_from_name: cpu, cuda) or a
 * dtype name; at most one of each. */
static int m_to(lua_State *L) {
  cf_tensor *t = cf_lua_checktensor(L, 1);
  int n = lua_gettop(L);
  if (n < 2) return luaL_error(L, "to: expected a device (%s) or a dtype name", cf_device_choices());
  bool have_dev = false, have_dt = false;
  cf_device dev = cf_tensor_device(t), d;
  cf_dtype dt = t->dtype;
  for (int i = 2; i <= n; i++) {
    if (lua_type(L, i) != LUA_TSTRING)
      return luaL_error(L, "to: argument #%d: expected a device (%s) or a dtype name (f32, f64, bf16, i32 or i64), "
                           "got %s", i - 1, cf_device_choices(), luaL_typename(L, i));
    const char *s = lua_tostring(L, i);
    if (cf_device_from_name(s, &d) == 0) {
      if (have_dev) return luaL_error(L, "to: two devices given");
      have_dev = true;
      dev = d;
    } else {
      if (have_dt) return luaL_error(L, "to: two dtypes given");
      if (cf_dtype_from_name(s, &dt))
        return luaL_error(L, "to: '%s' is neither a device (%s) nor a dtype (f32, f64, bf16, i32 or i64)", s,
                          cf_device_choices());
      have_dt = true;
    }
  }
  if (no_gpu_for(L, t, dev)) return 2;
  cf_tensor **slot = cf_lua_newtensorbox(L);
  /* convert where it is cheaper: narrowing before the move, widening after */
  bool first_dtype = have_dt && cf_dtype_size(dt) <= cf_dtype_size(t->dtype);
  cf_tensor *cur = t;
  cf_tensor_retain(cur);
  for (int step = 0; step < 2; step++) {
    bool do_dtype = (step == 0) == first_dtype;
    cf_tensor *next;
    if (do_dtype) {
      if (cur->dtype == dt) continue;
      cf_args a = cf_args_none();
      a.i[0] = dt;
      a.ni = 1;
      cf_tensor *in[1] = {cur};
      CF_LUA_CORE(L, next = cf_op(CF_OP_to_dtype, in, 1, &a));
    } else {
      next = move_to(L, cur, dev);
    }
    cf_tensor_release(cur);
    if (!next) return cf_lua_error(L);
    cur = next;
  }
  cf_lua_fillbox(L, slot, cur);
  return 1;
}

static int move_method(lua_State *L, cf_device dev) {
  cf_tensor *t = cf_lua_checktensor(L, 1);
  if (no_gpu_for(L, t, dev)) return 2;
  cf_tensor **slot = cf_lua_newtensorbox(L);
  cf_lua_fillbox(L, slot, move_to(L, t, dev));
  return 1;
}

static int m_cuda(lua_State *L) { return move_method(L, CF_DEVICE_CUDA); }
static int m_cpu(lua_State *L) { return move_method(L, CF_DEVICE_CPU); }

/* ---------------------------------------------------------------- registration */

static const luaL_Reg cuda_functions[] = {
  {"available", l_available}, {"synchronize", l_synchronize}, {"device_name", l_device_name},
  {"set_tf32", l_set_tf32}, {"set_attention_tc", l_set_attention_tc}, {"memory", l_memory},
  {"empty_cache", l_empty_cache}, {"allocator_stats", l_allocator_stats}, {NULL, NULL}};

static const luaL_Reg tensor_methods[] = {{"to", m_to}, {"cuda", m_cuda}, {"cpu", m_cpu}, {NULL, NULL}};

static const char *const docs[][2] = {
  {"confit.cuda.available", "confit.cuda.available() -> boolean: true when built with CUDA and a GPU is usable"},
  {"confit.cuda.synchronize", "confit.cuda.synchronize(): wait for queued GPU work (raises if a kernel failed)"},
  {"confit.cuda.device_name", "confit.cuda.device_name() -> name, or nil, message without a GPU"},
  {"confit.cuda.set_tf32", "confit.cuda.set_tf32(on) -> previous: let f32 matmuls use TF32 tensor cores (off by default)"},
  {"confit.cuda.set_attention_tc", "confit.cuda.set_attention_tc(on) -> previous: bf16 attention without a mask and with D = Dv in {64, 128} on tensor cores (default: on; CONFIT_ATTN_TC=0 turns it off)"},
  {"confit.cuda.memory", "confit.cuda.memory() -> in_use, cached, peak: device bytes held by tensors, cached for reuse, peak in use"},
  {"confit.cuda.empty_cache", "confit.cuda.empty_cache(): return cached device blocks to the driver"},
  {"confit.cuda.allocator_stats", "confit.cuda.allocator_stats() -> {requests, cache_hits, driver_mallocs, driver_malloc_failures, driver_frees, cache_flushes, driver_malloc_bytes, driver_malloc_seconds}: the caching allocator's traffic since start (empty without CUDA)"},
  {"confit.empty_cache", "confit.empty_cache(): return cached device blocks to the driver (no-op without CUDA)"},
  {"t:to", "t:to(target [, target2]) -> tensor: \"cuda\" | \"cpu\" and/or a dtype name (\"bf16\", \"f32\", ...); t itself when nothing changes; device moves keep a leaf's requires_grad but are not recorded by autograd; nil, message (\"cannot move the tensor to cuda: no usable GPU (<why>)\") when \"cuda\" is asked for and no GPU is usable"},
  {"t:cuda", "t:cuda() -> t on the GPU (t itself when already there), or nil, message when no GPU is usable (as t:to)"},
  {"t:cpu", "t:cpu() -> t on the CPU (t itself when already there)"},
};

void cf_lua_open_cuda(lua_State *L) {
  int module = lua_gettop(L);
#ifdef CF_HAVE_CUDA
  cf_cuda_register();
  cf_lua_add_memory_reporter(cuda_memory_reporter);
  cf_lua_add_peak_reset(cf_cuda_reset_peak);
  cf_lua_set_clock_sync(cuda_clock_sync);
#endif
  lua_newtable(L);
  luaL_setfuncs(L, cuda_functions, 0);
  lua_setfield(L, module, "cuda");
  lua_pushcfunction(L, l_empty_cache);
  lua_setfield(L, module, "empty_cache");

  /* the tensor methods live in the metatable's __methods table (l_tensor.c's __index reads it) */
  luaL_getmetatable(L, CF_LUA_TENSOR_MT);
  if (lua_istable(L, -1)) {
    if (lua_getfield(L, -1, "__methods") == LUA_TTABLE) luaL_setfuncs(L, tensor_methods, 0);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  for (size_t i = 0; i < sizeof docs / sizeof docs[0]; i++) cf_lua_add_doc(L, module, docs[i][0], docs[i][1]);
}
