/* l_text.c - Lua binding of the byte-level BPE tokenizer (core/text/bpe.h).
 *
 *   core.bpe_load(path) -> bpe | nil, message      (missing file, corrupt or unsupported JSON)
 *   bpe:encode(text)    -> {ids...}                 0-based ids, added tokens matched, no BOS
 *   bpe:decode(ids [, skip_special [, strict]]) -> string   raw bytes (may be partial UTF-8)
 *   bpe:token_to_id(s) -> id | nil    bpe:id_to_token(id) -> string | nil
 *   bpe:vocab_size()   -> n           bpe:added_tokens() -> {{id=, content=, special=}...}
 *   bpe:free()  (also __gc and __close; idempotent)
 *
 * The box is created closed before the tokenizer is loaded (liolib style), and it owns the
 * last id buffer returned by the core, so a Lua error while building a result table leaks
 * nothing: the buffer is freed by the next call or by __gc.
 */
#include <lua.h>
#include <lauxlib.h>
#include <limits.h>
#include <stdlib.h>
#include "lconfit.h"
#include "text/bpe.h"
#include "error.h"

#define BPE_MT "confit.bpe"

typedef struct {
  cf_bpe *bpe;
  int32_t *ids;  /* last encode result, owned here */
  char *text;    /* last decode result, owned here */
} bpe_box;

static bpe_box *check_box(lua_State *L) {
  bpe_box *b = luaL_checkudata(L, 1, BPE_MT);
  if (!b->bpe) luaL_error(L, "confit.bpe: the tokenizer has been freed");
  return b;
}

/* Drops the box's buffers through cf_lua_release: a call below this one (a finalizer re-entering
 * encode on the same tokenizer) may still be reading them through its local pointers. */
static void release_scratch(lua_State *L, bpe_box *b) {
  int32_t *ids = b->ids;
  char *text = b->text;
  b->ids = NULL;
  b->text = NULL;
  cf_lua_release(L, free, ids);
  cf_lua_release(L, free, text);
}

static int l_gc(lua_State *L) {
  bpe_box *b = luaL_checkudata(L, 1, BPE_MT);
  free(b->ids);
  b->ids = NULL;
  free(b->text);
  b->text = NULL;
  cf_bpe_free(b->bpe);
  b->bpe = NULL;
  cf_lua_release_pending(L);
  return 0;
}

static void release_bpe(void *t) { cf_bpe_free(t); }

static int l_free(lua_State *L) { /* tok:free() and __close */
  bpe_box *b = luaL_checkudata(L, 1, BPE_MT);
  release_scratch(L, b);
  cf_bpe *t = b->bpe;
  b->bpe = NULL;
  cf_lua_release(L, release_bpe, t);
  return 0;
}

static int l_load(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  bpe_box *b = lua_newuserdatauv(L, sizeof *b, 0);
  b->bpe = NULL;
  b->ids = NULL;
  b->text = NULL;
  luaL_setmetatable(L, BPE_MT);
  b->bpe = cf_bpe_load(path);
  if (!b->bpe) {
    luaL_pushfail(L);
    lua_pushstring(L, cf_error_message());
    return 2;
  }
  return 1;
}

static int l_encode(lua_State *L) {
  bpe_box *b = check_box(L);
  size_t len;
  const char *s = luaL_checklstring(L, 2, &len);
  release_scratch(L, b);
  size_t n;
  int32_t *ids = NULL;
  if (cf_bpe_encode(b->bpe, s, len, &ids, &n))
    return luaL_error(L, "%s", cf_error_message());
  b->ids = ids; /* the box owns it until released: a Lua error below leaks nothing */
  lua_createtable(L, n > INT_MAX ? INT_MAX : (int)n, 0); /* a size hint: the table grows past it */
  for (size_t i = 0; i < n; i++) {
    lua_pushinteger(L, ids[i]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  release_scratch(L, b);
  return 1;
}

static int l_decode(lua_State *L) {
  bpe_box *b = check_box(L);
  luaL_checktype(L, 2, LUA_TTABLE);
  int flags = (lua_toboolean(L, 3) ? CF_BPE_SKIP_SPECIAL : 0) | (lua_toboolean(L, 4) ? 0 : CF_BPE_SKIP_UNKNOWN);
  size_t n = (size_t)lua_rawlen(L, 2);
  release_scratch(L, b);
  int32_t *ids = malloc((n ? n : 1) * sizeof *ids);
  if (!ids) return luaL_error(L, "decode: out of memory (%I ids)", (lua_Integer)n);
  b->ids = ids; /* owned by the box, as in encode */
  for (size_t i = 0; i < n; i++) {
    lua_rawgeti(L, 2, (lua_Integer)i + 1);
    int isint = 0;   /* a number with an integer value (3.0 from a JSON library too), not "3" */
    lua_Integer v = lua_type(L, -1) == LUA_TNUMBER ? lua_tointegerx(L, -1, &isint) : 0;
    if (!isint)
      return luaL_error(L, "decode: ids[%I] is %s, not an integer token id", (lua_Integer)i + 1,
                        lua_isnumber(L, -1) ? cf_lua_shown(L, -1) : luaL_typename(L, -1));
    if (v < INT32_MIN || v > INT32_MAX)
      return luaL_error(L, "decode: ids[%I] is %s, outside the token id range", (lua_Integer)i + 1,
                        lua_tostring(L, -1));
    lua_pop(L, 1);
    ids[i] = (int32_t)v;
  }
  size_t len;
  char *text = NULL;
  if (cf_bpe_decode(b->bpe, ids, n, flags, &text, &len))
    return luaL_error(L, "%s", cf_error_message());
  b->text = text;
  lua_pushlstring(L, text, len);
  release_scratch(L, b);
  return 1;
}

static int l_token_to_id(lua_State *L) {
  bpe_box *b = check_box(L);
  size_t len;
  const char *s = luaL_checklstring(L, 2, &len);
  int32_t id = cf_bpe_token_to_id(b->bpe, s, len);
  if (id < 0) luaL_pushfail(L);
  else lua_pushinteger(L, id);
  return 1;
}

static int l_id_to_token(lua_State *L) {
  bpe_box *b = check_box(L);
  lua_Integer id = luaL_checkinteger(L, 2);
  size_t len;
  const char *s = id >= 0 && id <= INT32_MAX ? cf_bpe_id_to_token(b->bpe, (int32_t)id, &len) : NULL;
  if (!s) luaL_pushfail(L);
  else lua_pushlstring(L, s, len);
  return 1;
}

static int l_vocab_size(lua_State *L) {
  bpe_box *b = check_box(L);
  lua_pushinteger(L, (lua_Integer)cf_bpe_vocab_size(b->bpe));
  return 1;
}

static int l_added_tokens(lua_State *L) {
  cf_bpe *t = check_box(L)->bpe; /* a free while the table is built is deferred (cf_lua_release) */
  size_t n = cf_bpe_n_added(t);
  lua_createtable(L, (int)n, 0);
  for (size_t i = 0; i < n; i++) {
    int32_t id;
    const char *c;
    size_t len;
    int special;
    cf_bpe_added(t, i, &id, &c, &len, &special);
    lua_createtable(L, 0, 3);
    lua_pushinteger(L, id);
    lua_setfield(L, -2, "id");
    lua_pushlstring(L, c, len);
    lua_setfield(L, -2, "content");
    lua_pushboolean(L, special);
    lua_setfield(L, -2, "special");
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  return 1;
}

static int l_tostring(lua_State *L) {
  bpe_box *b = luaL_checkudata(L, 1, BPE_MT);
  if (!b->bpe) lua_pushstring(L, "confit.bpe (freed)");
  else lua_pushfstring(L, "confit.bpe (%d ids, %d added)", (int)cf_bpe_vocab_size(b->bpe),
                       (int)cf_bpe_n_added(b->bpe));
  return 1;
}

static const luaL_Reg bpe_methods[] = {
  {"encode", l_encode},           {"decode", l_decode},
  {"token_to_id", l_token_to_id}, {"id_to_token", l_id_to_token},
  {"vocab_size", l_vocab_size},   {"added_tokens", l_added_tokens},
  {"free", l_free},               {NULL, NULL},
};

void cf_lua_open_text(lua_State *L) {
  cf_lua_resource_mt(L, BPE_MT, l_gc, l_free, l_tostring, bpe_methods);
  lua_pop(L, 1);
  lua_pushcfunction(L, l_load);
  lua_setfield(L, -2, "bpe_load");
}
