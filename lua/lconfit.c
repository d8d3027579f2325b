/* lconfit.c - luaopen_confit_core: the C module behind `require "confit"`.
 *
 * The binding is split by subject into lua/l_*.c files; each exports
 *   void cf_lua_open_<part>(lua_State *L)
 * which adds its functions to the module table on top of the stack. This file only builds
 * that table and calls the parts. lua/ is the only place that raises Lua errors.
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
