/* lconfit.h - shared declarations of the Lua binding parts (lua/l_*.c).
 *
 * Tensor boxes (l_tensor.c): a tensor reaches Lua as a full userdata of metatable
 * "confit.tensor" holding one pointer to a refcounted cf_tensor (NULL once freed). The box owns
 * one reference; __gc, __close and t:free() drop it (idempotently).
 *
 * Error convention: the core returns -1/NULL and sets a thread-local message; cf_lua_error()
 * raises it as a Lua error. Expected environmental failures (missing file, no GPU) are returned
 * as `nil, message` by the parts instead.
 *
 * GC around core calls: a core call that may allocate is bracketed with cf_lua_gc_begin/end (or
 * CF_LUA_CORE) so that, if an allocation fails, the core's retry hook may run a full Lua GC on
 * the lua_State whose binding call is running, and only then. The bracket holds no Lua error
 * (the core never raises one), so it always closes.
 */
#ifndef CF_LCONFIT_H
#define CF_LCONFIT_H
#include <lua.h>
#include <lauxlib.h>
#include "tensor.h"

#define CF_LUA_PART(name) void cf_lua_open_##name(lua_State *L);
#include "lparts.def"
#undef CF_LUA_PART

int luaopen_confit_core(lua_State *L);

#define CF_LUA_TENSOR_MT "confit.tensor"

/* The tensor at idx; raises a Lua error when it is not a tensor or was freed ("tensor was freed"). */
cf_tensor *cf_lua_checktensor(lua_State *L, int idx);
/* The tensor at idx, or NULL when the value is not a tensor box; a freed box raises the error. */
cf_tensor *cf_lua_totensor(lua_State *L, int idx);
/* Pushes a box for t, taking over the caller's reference. t == NULL raises the core's error. */
void cf_lua_pushtensor(lua_State *L, cf_tensor *t);
/* A full Lua GC when the CPU bytes live have grown past the allowance since the last one (l_tensor.c's
 * "pressure"); every boxed tensor asks it, and so does a model load (its weights are no tensor result). */
void cf_lua_note_pressure(lua_State *L);
/* Pushes an empty box and returns its slot: fill it with a new reference after the allocation
 * (liolib style: the box exists before the resource, so a Lua error can leak nothing). */
cf_tensor **cf_lua_newtensorbox(lua_State *L);
/* Fills such a box with t (a new reference) and counts t's bytes, when they are new, towards the
 * allocation pressure that runs a full Lua GC (Lua's collector sees only the small boxes); t ==
 * NULL raises the core's error. Every binding that makes a tensor fills its box so. */
void cf_lua_fillbox(lua_State *L, cf_tensor **slot, cf_tensor *t);
/* Raises the core's current message (cf_error_message()) as a Lua error. Never returns. */
int cf_lua_error(lua_State *L);
/* The value at idx as a message shows it (luaL_tolstring, which may push it), but "nan" for a NaN
 * of either sign: Lua writes 0/0 as "-nan" on x86, -(0/0) as "nan" (cf_msgnum in the core). */
const char *cf_lua_shown(lua_State *L, int idx);

/* The device named by the value at idx, which fn's caller knows as `what` ("argument #1
 * (device)", "option device"): a name of cf_device_from_name's one list. Raises "<fn>: <what>:
 * expected a device name (cpu or cuda), got <type>" for a value that is no string and "<fn>:
 * <what>: unknown device 'gpu' (expected cpu or cuda)" for another name. */
cf_device cf_lua_checkdevice(lua_State *L, int idx, const char *fn, const char *what);

/* The one answer where device cuda is asked for (t:to, t:cuda, m:to, m:init_random_cuda, a
 * factory's opts.device; l_cuda.c): 0 when the GPU is usable (started now when it was not); else
 * pushes nil and "<what>: no usable GPU (<why>)" ("<what>: <why>" for a GPU whose cuBLAS did not
 * start: cf_cuda_state) and returns 2, the count of results. No usable GPU is the expected
 * environmental failure (DESIGN.md): nil, message; bad arguments and failures once the GPU is
 * usable (out of memory) raise. Callers check their arguments first. */
int cf_lua_no_gpu(lua_State *L, const char *what);

/* The bracket around core calls (see above); begin returns the previous state to restore. */
lua_State *cf_lua_gc_begin(lua_State *L);
void cf_lua_gc_end(lua_State *prev);
#define CF_LUA_CORE(L, ...)                        \
  do {                                             \
    lua_State *cf_prev_ = cf_lua_gc_begin(L);      \
    __VA_ARGS__;                                   \
    cf_lua_gc_end(cf_prev_);                       \
  } while (0)

/* confit.memory(): each registered reporter adds its fields to the table at the top of the
 * stack (l_tensor.c fills cpu_bytes; a CUDA part registers one for its device fields). */
typedef void (*cf_lua_memory_fn)(lua_State *L);
void cf_lua_add_memory_reporter(cf_lua_memory_fn fn);
/* confit.reset_peak_memory(): the CPU peak and each registered device's peak restart from what is
 * in use now. */
void cf_lua_add_peak_reset(void (*reset)(void));

/* confit.clock() first calls this hook when set (a CUDA part installs a device synchronize). */
void cf_lua_set_clock_sync(void (*sync)(void));

/* The metatable of a resource userdata (liolib style), made once: luaL_newmetatable(tname) (so
 * __name names the type in errors), __gc gc_fn (releases at once), __close free_fn (releases
 * through cf_lua_release; the methods' "free" should be it too; both idempotent), __tostring, and
 * __index a new table of `methods`. Leaves the metatable on the stack; returns 1 when it was made
 * now (the caller may add fields), 0 when it already existed (nothing set). */
int cf_lua_resource_mt(lua_State *L, const char *tname, lua_CFunction gc_fn, lua_CFunction free_fn,
                       lua_CFunction tostring_fn, const luaL_Reg *methods);

/* Adds name -> doc to the module's `doc` table (creating it); the module table is at `module`. */
void cf_lua_add_doc(lua_State *L, int module, const char *name, const char *doc);

/* Releasing from Lua. A binding holds borrowed pointers (above) while it runs, and Lua code it
 * runs - a finalizer an allocation calls, an __index of an option table - may free one
 * explicitly (t:free(), m:free(), opt:free(), tok:free(), <close>). So an explicit free calls
 * cf_lua_release(L, fn, p): fn(p) now when no binding is on L's call stack below the caller,
 * else fn(p) later, at the first explicit free or collection that finds none (the box is marked
 * freed at once either way, so later use raises "... was freed"). __gc releases at once (a box
 * the collector finalizes is unreachable, and bindings look boxes up again after running Lua
 * code) and then calls cf_lua_release_pending. Not covered: a binding's Lua code resuming a
 * coroutine that frees the object (the coroutine's stack does not show the binding). */
typedef void (*cf_lua_release_fn)(void *);
void cf_lua_release(lua_State *L, cf_lua_release_fn fn, void *p);
/* Releases what cf_lua_release kept, when no binding is on L's stack below the caller. */
void cf_lua_release_pending(lua_State *L);
/* The bindings the stack check recognises: every C function of the module table at idx (and its
 * tables, 3 deep) and of the registry's "confit.*" metatables, but those passed to
 * cf_lua_not_binding. luaopen_confit_core calls it. */
void cf_lua_note_bindings(lua_State *L, int idx);
/* A C function that only calls Lua (confit.no_grad, the profiler's pcall): it holds no borrowed
 * pointer, so the frees of the Lua code it runs are not deferred. The parts call it when they open. */
void cf_lua_not_binding(lua_CFunction f);

/* Model boxes (l_model.c): metatable "confit.model" holding one cf_qwen2 pointer. */
#define CF_LUA_MODEL_MT "confit.model"
struct cf_qwen2;
/* The model at idx; raises "model was freed" for a freed box. */
struct cf_qwen2 *cf_lua_checkmodel(lua_State *L, int idx);

#endif
