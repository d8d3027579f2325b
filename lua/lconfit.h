/* lconfit.h - shared declarations of the Lua binding parts (lua/l_*.c). */
#ifndef CF_LCONFIT_H
#define CF_LCONFIT_H
#include <lua.h>

#define CF_LUA_PART(name) void cf_lua_open_##name(lua_State *L);
#include "lparts.def"
#undef CF_LUA_PART

int luaopen_confit_core(lua_State *L);

#endif
