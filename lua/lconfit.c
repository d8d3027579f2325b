/* lconfit.c - luaopen_confit_core: the C module behind `require "confit"`.
 *
 * The binding is split by subject into lua/l_*.c files; each exports
 *   void cf_lua_open_<part>(lua_State *L)
 * which adds its functions to the module table on top of the stack. This file builds that
 * table, calls the parts, and holds the metatable maker the resource parts share
 * (cf_lua_resource_mt). lua/ is the only place that raises Lua errors.
 */
#include <lua.h>
#include <lauxlib.h>
#include "lconfit.h"

int luaopen_confit_core(lua_State *L) {
  lua_newtable(L);
#define CF_LUA_PART(name) cf_lua_open_##name(L);
#include "lparts.def"
#undef CF_LUA_PART
  return 1;
}

int cf_lua_resource_mt(lua_State *L, const char *tname, lua_CFunction free_fn, lua_CFunction tostring_fn,
                       const luaL_Reg *methods) {
  if (!luaL_newmetatable(L, tname)) return 0;
  lua_pushcfunction(L, free_fn);
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
