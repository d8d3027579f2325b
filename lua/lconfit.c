/* lconfit.c - luaopen_confit_core: the C module behind `require "confit"`.
 *
 * The binding is split by subject into lua/l_*.c files; each exports
 *   void cf_lua_open_<part>(lua_State *L)
 * which adds its functions to the module table on top of the stack. This file builds that
 * table, calls the parts, and holds what the parts share: the metatable maker of the resource
 * boxes (cf_lua_resource_mt) and the deferred release of explicit frees (cf_lua_release). lua/ is
 * the only place that raises Lua errors.
 */
#include <lua.h>
#include <lauxlib.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "lconfit.h"
#include "error.h"

int luaopen_confit_core(lua_State *L) {
  lua_newtable(L);
#define CF_LUA_PART(name) cf_lua_open_##name(L);
#include "lparts.def"
#undef CF_LUA_PART
  cf_lua_note_bindings(L, lua_gettop(L));
  return 1;
}

/* ---------------------------------------------------------------- deferred release (lconfit.h) */

static uintptr_t *bindings; /* the bindings' C functions, sorted (one set per process) */
static size_t nbindings, capbindings;

static int by_address(const void *a, const void *b) {
  uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
  return x < y ? -1 : x > y;
}

static lua_CFunction not_bindings[8];
static int nnot;

void cf_lua_not_binding(lua_CFunction f) {
  for (int i = 0; i < nnot; i++) if (not_bindings[i] == f) return;
  if (nnot < (int)(sizeof not_bindings / sizeof *not_bindings)) not_bindings[nnot++] = f;
}

static void note_binding(lua_CFunction f) {
  for (int i = 0; i < nnot; i++) if (not_bindings[i] == f) return;
  if (nbindings == capbindings) {
    size_t cap = capbindings ? 2 * capbindings : 256;
    uintptr_t *n = realloc(bindings, cap * sizeof *n);
    if (!n) return; /* unnoted: its frames are not recognised (a release there is not deferred) */
    bindings = n;
    capbindings = cap;
  }
  bindings[nbindings++] = (uintptr_t)f;
}

static void note_table(lua_State *L, int idx, int depth) {
  idx = lua_absindex(L, idx);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    if (lua_iscfunction(L, -1)) note_binding(lua_tocfunction(L, -1));
    else if (lua_istable(L, -1) && depth < 3) note_table(L, -1, depth + 1);
    lua_pop(L, 1);
  }
}

void cf_lua_note_bindings(lua_State *L, int idx) {
  note_table(L, idx, 0);
  lua_pushnil(L);
  while (lua_next(L, LUA_REGISTRYINDEX)) {
    if (lua_type(L, -2) == LUA_TSTRING && strncmp(lua_tostring(L, -2), "confit.", 7) == 0 && lua_istable(L, -1))
      note_table(L, -1, 1);
    lua_pop(L, 1);
  }
  qsort(bindings, nbindings, sizeof *bindings, by_address);
  size_t n = 0;
  for (size_t i = 0; i < nbindings; i++)
    if (n == 0 || bindings[i] != bindings[n - 1]) bindings[n++] = bindings[i];
  nbindings = n;
}

/* Is a binding on thread T's call stack from level `from` up? */
static int binding_on_stack(lua_State *T, int from) {
  lua_Debug ar;
  for (int level = from; lua_getstack(T, level, &ar); level++) {
    if (!lua_checkstack(T, 1)) return 1; /* cannot look: assume one */
    lua_getinfo(T, "f", &ar);
    lua_CFunction f = lua_tocfunction(T, -1);
    lua_pop(T, 1);
    uintptr_t key = (uintptr_t)f;
    if (f && bsearch(&key, bindings, nbindings, sizeof *bindings, by_address)) return 1;
  }
  return 0;
}

/* Is a binding on L's call stack below the caller of the caller (level 1 up)? In a coroutine,
 * the main thread's whole stack is below too: a binding there may have run the Lua code (a
 * finalizer, an __index) that resumed this coroutine. (A coroutine between the two, resumed
 * from such code in turn, is not walked: Lua does not say which thread resumed which.) */
static int binding_below(lua_State *L) {
  if (binding_on_stack(L, 1)) return 1;
  if (lua_pushthread(L)) { /* L is the main thread */
    lua_pop(L, 1);
    return 0;
  }
  lua_pop(L, 1);
  if (!lua_checkstack(L, 1)) return 1;
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  lua_State *M = lua_tothread(L, -1);
  lua_pop(L, 1);
  return M && M != L ? binding_on_stack(M, 0) : 0;
}

typedef struct { cf_lua_release_fn fn; void *p; } pending_release;
static pending_release *pending;
static size_t npending, cappending;

void cf_lua_release_pending(lua_State *L) {
  if (npending == 0 || binding_below(L)) return;
  while (npending > 0) { /* a release runs no Lua code, so nothing is added meanwhile */
    pending_release r = pending[--npending];
    r.fn(r.p);
  }
}

void cf_lua_release(lua_State *L, cf_lua_release_fn fn, void *p) {
  if (!p) return;
  if (!binding_below(L)) {
    fn(p);
    cf_lua_release_pending(L);
    return;
  }
  if (npending == cappending) {
    size_t cap = cappending ? 2 * cappending : 16;
    pending_release *n = realloc(pending, cap * sizeof *n);
    if (!n) return; /* kept for good (leaked) rather than freed under a binding */
    pending = n;
    cappending = cap;
  }
  pending[npending++] = (pending_release){fn, p};
}

/* ---------------------------------------------------------------- device names */

cf_device cf_lua_checkdevice(lua_State *L, int idx, const char *fn, const char *what) {
  if (lua_type(L, idx) != LUA_TSTRING)
    luaL_error(L, "%s: %s: expected a device name (%s), got %s", fn, what, cf_device_choices(),
               luaL_typename(L, idx));
  cf_device d;
  if (cf_device_from_name(lua_tostring(L, idx), &d)) luaL_error(L, "%s: %s: %s", fn, what, cf_error_message());
  return d;
}

/* ---------------------------------------------------------------- resource metatables */

int cf_lua_resource_mt(lua_State *L, const char *tname, lua_CFunction gc_fn, lua_CFunction free_fn,
                       lua_CFunction tostring_fn, const luaL_Reg *methods) {
  if (!luaL_newmetatable(L, tname)) return 0;
  lua_pushcfunction(L, gc_fn);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, free_fn);
  lua_setfield(L, -2, "__close");
  lua_pushcfunction(L, tostring_fn);
  lua_setfield(L, -2, "__tostring");
  lua_newtable(L);
  luaL_setfuncs(L, methods, 0);
  lua_setfield(L, -2, "__index");
  return 1;
}
