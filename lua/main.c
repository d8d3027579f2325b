/* main.c - the `confit` executable: runs a Lua script (args in `arg`) or, alone, the REPL.
 * The C module confit.core is linked in and preloaded; package.path finds lua/confit/<name>.lua
 * next to the sources (CONFIT_LUA_DIR) or under CONFIT_LUA_DIR in the environment.
 * (Minimal runner; the REPL is filled in by the REPL work.)
 */
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../lua/lconfit.h"

static int msghandler(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (!msg) msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  luaL_traceback(L, L, msg, 1);
  return 1;
}

static void setup_paths(lua_State *L) {
  const char *dir = getenv("CONFIT_LUA_DIR");
  if (!dir) dir = CONFIT_LUA_DIR;
  lua_getglobal(L, "package");
  lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;", dir, dir);
  lua_getfield(L, -2, "path");
  lua_concat(L, 2);
  lua_setfield(L, -2, "path");
  lua_getfield(L, -1, "preload");
  lua_pushcfunction(L, luaopen_confit_core);
  lua_setfield(L, -2, "confit.core");
  lua_pop(L, 2);
}

int main(int argc, char **argv) {
  lua_State *L = luaL_newstate();
  if (!L) { fprintf(stderr, "confit: cannot create Lua state\n"); return 1; }
  luaL_openlibs(L);
  setup_paths(L);
  if (argc < 2) { fprintf(stderr, "usage: confit script.lua [args]\n"); lua_close(L); return 1; }
  lua_createtable(L, argc, 1);
  for (int i = 0; i < argc; i++) { lua_pushstring(L, argv[i]); lua_rawseti(L, -2, i - 1); }
  lua_setglobal(L, "arg");
  lua_pushcfunction(L, msghandler);
  int st = luaL_loadfile(L, argv[1]);
  if (st == LUA_OK) {
    for (int i = 2; i < argc; i++) lua_pushstring(L, argv[i]);
    st = lua_pcall(L, argc - 2, 0, -(argc - 2) - 2);
  }
  if (st != LUA_OK) fprintf(stderr, "confit: %s\n", lua_tostring(L, -1));
  lua_close(L);
  return st == LUA_OK ? 0 : 1;
}
