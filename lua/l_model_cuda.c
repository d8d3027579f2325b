/* l_model_cuda.c - the GPU methods of the model userdata ("confit.model", made by l_model.c):
 *
 * model:to_device(device [, dtype])      -> model | nil, message
 *     device "cuda" (dtype "bf16" default, or "f32") or "cpu" (always f32). Replaces every
 *     parameter; see kernels/model_cuda.h (no f32 master copy is kept for a bf16 model).
 *     The Lua model's m:to(device [, dtype]) is this call: its messages number the arguments
 *     as m:to's and name the method "to".
 * model:init_random_cuda(seed, std [, dtype]) -> model | nil, message
 *     parameters allocated and drawn on the GPU: norms 1, biases 0, matrices N(0, std^2).
 * model:device()                         -> "cpu" | "cuda", dtype of the embedding
 *
 * "nil, message" is for the expected environmental failure, no usable GPU (a CPU-only build, no
 * device, a device or its cuBLAS that did not start), worded by cf_lua_no_gpu (l_cuda.c) and
 * found before the move from the GPU's state, not from a message; bad arguments and every
 * failure once the GPU is usable (out of memory) raise. This part must be opened after the model
 * part (lparts.def order).
 */
#include <lauxlib.h>
#include <lua.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#include "lconfit.h"
#include "error.h"
#include "nn/qwen2.h"
#ifdef CF_HAVE_CUDA
#include "kernels/model_cuda.h"
#endif

#define MODEL_MT CF_LUA_MODEL_MT
#define check_model cf_lua_checkmodel

/* The dtype of the weights on dev asked for by the value at idx, fn's argument #argno (absent:
 * bf16 on cuda, f32 on the CPU): the GPU holds bf16 or f32 weights, the CPU f32. */
static cf_dtype check_dtype(lua_State *L, int idx, const char *fn, int argno, cf_device dev) {
  if (lua_isnoneornil(L, idx)) return dev == CF_DEVICE_CUDA ? CF_DTYPE_BF16 : CF_DTYPE_F32;
  if (lua_type(L, idx) != LUA_TSTRING)
    luaL_error(L, "%s: argument #%d (dtype): expected a dtype name (%s), got %s", fn, argno,
               dev == CF_DEVICE_CUDA ? "bf16 or f32" : "f32", luaL_typename(L, idx));
  cf_dtype dt;
  if (cf_dtype_from_name(lua_tostring(L, idx), &dt))
    luaL_error(L, "%s: argument #%d (dtype): %s", fn, argno, cf_error_message());
  if (dev == CF_DEVICE_CUDA && dt != CF_DTYPE_BF16 && dt != CF_DTYPE_F32)
    luaL_error(L, "%s: argument #%d (dtype): the model's weights on cuda are bf16 or f32, not %s", fn, argno,
               cf_dtype_name(dt));
  if (dev == CF_DEVICE_CPU && dt != CF_DTYPE_F32)
    luaL_error(L, "%s: argument #%d (dtype): the model's weights on the CPU are f32, not %s%s", fn, argno,
               cf_dtype_name(dt), dt == CF_DTYPE_BF16 ? " (bf16 weights are for cuda)" : "");
  return dt;
}

static int m_to_device(lua_State *L) {
  cf_qwen2 *m = check_model(L, 1);
  cf_dtype named;
  if (lua_type(L, 2) == LUA_TSTRING && cf_dtype_from_name(lua_tostring(L, 2), &named) == 0)
    return luaL_error(L, "to: argument #1 (device): '%s' is a dtype; the device comes first: m:to(\"cuda\", \"%s\")",
                      lua_tostring(L, 2), lua_tostring(L, 2));
  cf_device dev = cf_lua_checkdevice(L, 2, "to", "argument #1 (device)");
  cf_dtype dt = check_dtype(L, 3, "to", 2, dev);
  int rc;
  if (dev == CF_DEVICE_CPU) {
#ifdef CF_HAVE_CUDA
    CF_LUA_CORE(L, rc = cf_qwen2_to_cpu(m));
    if (rc) return cf_lua_error(L);
#endif
    (void)dt; (void)rc;
    lua_settop(L, 1);
    return 1;
  }
  if (cf_lua_no_gpu(L, "cannot move the model to cuda")) return 2;
#ifdef CF_HAVE_CUDA
  CF_LUA_CORE(L, rc = cf_qwen2_to_cuda(m, dt));
  if (rc) return cf_lua_error(L);
#endif
  (void)m; (void)rc;
  lua_settop(L, 1);
  return 1;
}

static int m_init_random_cuda(lua_State *L) {
  cf_qwen2 *m = check_model(L, 1);
  if (!lua_isinteger(L, 2))
    return luaL_error(L, "init_random_cuda: argument #1 (seed): expected an integer, got %s",
                      lua_type(L, 2) == LUA_TNUMBER ? "a fraction" : luaL_typename(L, 2));
  if (lua_type(L, 3) != LUA_TNUMBER)
    return luaL_error(L, "init_random_cuda: argument #2 (std): expected a number, got %s", luaL_typename(L, 3));
  lua_Integer seed = lua_tointeger(L, 2);
  double std = lua_tonumber(L, 3);
  cf_dtype dt = check_dtype(L, 4, "init_random_cuda", 3, CF_DEVICE_CUDA);
  if (!(std >= 0) || std == HUGE_VAL)
    return luaL_error(L, "init_random_cuda: argument #2 (std): must be finite and >= 0 (got %s)",
                      cf_lua_shown(L, 3));
  if (cf_lua_no_gpu(L, "cannot place the model's parameters on cuda")) return 2;
#ifdef CF_HAVE_CUDA
  int rc;
  CF_LUA_CORE(L, rc = cf_qwen2_init_random_cuda(m, dt, (uint64_t)seed, std));
  if (rc) return cf_lua_error(L);
#endif
  (void)m; (void)seed; (void)dt;
  lua_settop(L, 1);
  return 1;
}

static int m_device(lua_State *L) {
  cf_qwen2 *m = check_model(L, 1);
  lua_pushstring(L, cf_device_name(cf_tensor_device(m->embed)));
  lua_pushstring(L, cf_dtype_name(m->embed->dtype));
  return 2;
}

void cf_lua_open_model_cuda(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"to_device", m_to_device}, {"init_random_cuda", m_init_random_cuda}, {"device", m_device},
    {NULL, NULL}};
  luaL_getmetatable(L, MODEL_MT);
  if (lua_istable(L, -1)) {
    lua_getfield(L, -1, "__index");
    if (lua_istable(L, -1)) luaL_setfuncs(L, methods, 0);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  /* undocumented in the REPL: the Lua model (confit.model) wraps these, and its m:to, m:device
   * and m:init_random_cuda are (repl_help.lua) */
}
