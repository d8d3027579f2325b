/* l_tensor.c - tensor userdata (filled in by the core binding work). */
#include <lua.h>
#include <lauxlib.h>
#include "lconfit.h"

void cf_lua_open_tensor(lua_State *L) { (void)L; }
