/* l_profile.c - confit.profiler: the region profiler of core/profile.h from Lua.
 *
 *   confit.profiler.start()            begin collecting (error when already running)
 *   confit.profiler.stop() -> rows     end; rows = {{name=, phase=, calls=, host_s=, device_s=}, ...}
 *                                      largest first; device_s is nil for regions with no device time
 *   confit.profiler.active() -> bool
 *   confit.profiler.phase(label) -> previous label   (regions entered from now on carry it; one
 *                                      argument: it runs nothing)
 *   confit.profiler.pcall(fn, ...) -> ok, ...        pcall that fn cannot yield out of
 *
 * The report formatting and confit.profile(fn, ...) are Lua (lua/confit/profiler.lua).
 */
#include <lua.h>
#include <lauxlib.h>
#include <stdlib.h>
#include "lconfit.h"
#include "profile.h"
#include "error.h"

static int l_start(lua_State *L) {
  if (cf_prof_start()) return cf_lua_error(L);
  return 0;
}

#define ROWS_MT "confit.profiler_rows"

/* The rows cf_prof_stop hands over live in a box whose __gc frees them: building the result
 * tables may run out of memory and raise. */
static int rows_gc(lua_State *L) {
  cf_prof_row **box = luaL_checkudata(L, 1, ROWS_MT);
  free(*box);
  *box = NULL;
  return 0;
}

static int l_stop(lua_State *L) {
  cf_prof_row **box = lua_newuserdatauv(L, sizeof *box, 0);
  *box = NULL;
  if (luaL_newmetatable(L, ROWS_MT)) {
    lua_pushcfunction(L, rows_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  int n = 0;
  int rc;
  CF_LUA_CORE(L, rc = cf_prof_stop(box, &n));
  if (rc) return cf_lua_error(L);
  cf_prof_row *rows = *box;
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    lua_createtable(L, 0, 5);
    lua_pushstring(L, rows[i].name);
    lua_setfield(L, -2, "name");
    lua_pushstring(L, rows[i].phase);
    lua_setfield(L, -2, "phase");
    lua_pushinteger(L, (lua_Integer)rows[i].calls);
    lua_setfield(L, -2, "calls");
    lua_pushnumber(L, rows[i].host_s);
    lua_setfield(L, -2, "host_s");
    if (rows[i].has_device) {
      lua_pushnumber(L, rows[i].device_s);
      lua_setfield(L, -2, "device_s");
    }
    lua_rawseti(L, -2, i + 1);
  }
  free(rows);
  *box = NULL;
  return 1;
}

static int l_active(lua_State *L) {
  lua_pushboolean(L, cf_prof_active());
  return 1;
}

static int l_phase(lua_State *L) {
  /* phase("name", fn) ran nothing: a label is set, never scoped to a call (confit.profile is) */
  if (lua_gettop(L) > 1)
    return luaL_error(L, "confit.profiler.phase: takes one label, got %d arguments (it labels what runs from now "
                      "on: set it, run, set the previous label back)", lua_gettop(L));
  const char *p = luaL_checkstring(L, 1);
  if (!*p) return luaL_argerror(L, 1, "an empty phase label");
  lua_pushstring(L, cf_prof_set_phase(p));
  return 1;
}

/* profiler.pcall(fn, ...) -> ok, results or error: pcall without a continuation, so fn cannot
 * yield (confit.profile: a yield out of a profiled call left the profiler on for good) and runs
 * on the caller's thread (a coroutine of its own missed main.c's Ctrl-C hook) */
static int l_pcall(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  int ok = lua_pcall(L, lua_gettop(L) - 1, LUA_MULTRET, 0) == LUA_OK;
  lua_pushboolean(L, ok);
  lua_insert(L, 1);
  return lua_gettop(L);
}

static const luaL_Reg functions[] = {
  {"start", l_start}, {"stop", l_stop}, {"active", l_active}, {"phase", l_phase}, {"pcall", l_pcall},
  {NULL, NULL}};

static const char *const docs[][2] = {
  {"confit.profiler.start", "confit.profiler.start(): time every op, backward rule, gradient accumulation, optimizer step and generation stage from now on (outermost regions only: no double counting)"},
  {"confit.profiler.stop", "confit.profiler.stop() -> rows: {name, phase, calls, host_s, device_s (nil without device time)}, largest first; waits for the GPU"},
  {"confit.profiler.active", "confit.profiler.active() -> boolean"},
  {"confit.profiler.phase", "confit.profiler.phase(label) -> previous: label the regions entered from now on, until the next call or the end of the confit.profile(fn) that set it (backward runs as \"bwd\", optimizer steps as \"opt\", generation as \"gen.prefill\"/\"gen.decode\"; default \"fwd\")"},
};

void cf_lua_open_profile(lua_State *L) {
  int module = lua_gettop(L);
  cf_lua_not_binding(l_pcall);
  lua_newtable(L);
  luaL_setfuncs(L, functions, 0);
  lua_setfield(L, module, "profiler");
  for (size_t i = 0; i < sizeof docs / sizeof docs[0]; i++) cf_lua_add_doc(L, module, docs[i][0], docs[i][1]);
}
