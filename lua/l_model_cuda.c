/* l_model_cuda.c - the GPU methods of the model userdata ("confit.model", made by l_model.c):
 *
 * model:to_device(device [, dtype])      -> model | nil, message
 *     device "cuda" (dtype "bf16" default, or "f32") or "cpu" (always f32). Replaces every
 *     parameter; see kernels/model_cuda.h (no f32 master copy is kept for a bf16 model).
 * model:init_random_cuda(seed, std [, dtype]) -> model | nil, message
 *     parameters allocated and drawn on the GPU: norms 1, biases 0, matrices N(0, std^2).
 * model:device()                         -> "cpu" | "cuda", dtype of the embedding
 *
 * "nil, message" is for the expected environmental failure (no GPU, a CPU-only build); bad
 * arguments raise. This part must be opened after the model part (lparts.def order).
 */
#include <lauxlib.h>
#include <lua.h>
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

static int fail(lua_State *L, const char *msg) {
  luaL_pushfail(L);
  lua_pushstring(L, msg);
  return 2;
}

static cf_dtype check_dtype(lua_State *L, int idx, const char *def) {
  const char *name = luaL_optstring(L, idx, def);
  cf_dtype dt;
  if (cf_dtype_from_name(name, &dt) || (dt != CF_DTYPE_BF16 && dt != CF_DTYPE_F32))
    luaL_error(L, "dtype must be \"bf16\" or \"f32\" (got \"%s\")", name);
  return dt;
}

#ifdef CF_HAVE_CUDA
/* The end of a method that put the model's parameters on the GPU (core status rc): the model
 * (argument 1) on success; a missing device is the expected failure (nil, message); any other
 * error raises. */
static int cuda_result(lua_State *L, int rc) {
  if (rc) {
    const char *msg = cf_error_message();
    if (strstr(msg, "no CUDA device")) return fail(L, msg);
    return cf_lua_error(L);
  }
  lua_settop(L, 1);
  return 1;
}
#endif

static int m_to_device(lua_State *L) {
  cf_qwen2 *m = check_model(L, 1);
  const char *dev = luaL_checkstring(L, 2);
  int rc;
  if (strcmp(dev, "cpu") == 0) {
    if (!lua_isnoneornil(L, 3) && strcmp(luaL_checkstring(L, 3), "f32") != 0)
      return luaL_error(L, "to_device: the CPU holds parameters in f32");
#ifdef CF_HAVE_CUDA
    CF_LUA_CORE(L, rc = cf_qwen2_to_cpu(m));
    if (rc) return cf_lua_error(L);
#endif
    lua_settop(L, 1);
    return 1;
  }
  if (strcmp(dev, "cuda") != 0) return luaL_error(L, "to_device: device must be \"cuda\" or \"cpu\" (got \"%s\")", dev);
  cf_dtype dt = check_dtype(L, 3, "bf16");
#ifdef CF_HAVE_CUDA
  CF_LUA_CORE(L, rc = cf_qwen2_to_cuda(m, dt));
  return cuda_result(L, rc);
#else
  (void)m; (void)dt; (void)rc;
  return fail(L, "to_device: this build has no CUDA");
#endif
}

static int m_init_random_cuda(lua_State *L) {
  cf_qwen2 *m = check_model(L, 1);
  lua_Integer seed = luaL_checkinteger(L, 2);
  double std = luaL_checknumber(L, 3);
  cf_dtype dt = check_dtype(L, 4, "bf16");
  if (!(std >= 0)) return luaL_error(L, "init_random_cuda: std must be >= 0");
#ifdef CF_HAVE_CUDA
  int rc;
  CF_LUA_CORE(L, rc = cf_qwen2_init_random_cuda(m, dt, (uint64_t)seed, std));
  return cuda_result(L, rc);
#else
  (void)m; (void)seed; (void)dt;
  return fail(L, "init_random_cuda: this build has no CUDA");
#endif
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
