/* l_io.c - safetensors files from Lua.
 *
 * confit.load_safetensors(path) -> {name = tensor}, metadata | nil, message
 *   F32/F64/BF16/I32/I64 keep their dtype; F16 widens to f32; a file holding another dtype
 *   gives nil and a message naming the tensor and the dtype.
 * confit.save_safetensors(path, {name = tensor}, metadata?) -> true
 *   written atomically (temporary file, fsync, rename); laid out by element size, then name
 *   (every tensor aligned, core/io/safetensors.c); CPU copies of
 *   device tensors are taken first.
 * confit.fsync(path) -> true | nil, message
 *   flushes a file's or a directory's data to the disk (fsync): the Lua writers (jsonio's
 *   atomic writes, checkpoints) sync a temporary file before renaming it and the directory
 *   after. A file system that cannot sync a directory (EINVAL, EROFS) counts as done.
 */
#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <lua.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "lconfit.h"
#include "error.h"
#include "io/safetensors.h"

static int st_dtype(const char *s, cf_dtype *dt) {
  if (strcmp(s, "F32") == 0) *dt = CF_DTYPE_F32;
  else if (strcmp(s, "F64") == 0) *dt = CF_DTYPE_F64;
  else if (strcmp(s, "BF16") == 0) *dt = CF_DTYPE_BF16;
  else if (strcmp(s, "I32") == 0) *dt = CF_DTYPE_I32;
  else if (strcmp(s, "I64") == 0) *dt = CF_DTYPE_I64;
  else if (strcmp(s, "F16") == 0) *dt = CF_DTYPE_F32;
  else return -1;
  return 0;
}

static int l_load(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  cf_st_file *f;
  CF_LUA_CORE(L, f = cf_st_open(path));
  if (!f) {
    luaL_pushfail(L);
    lua_pushstring(L, cf_error_message());
    return 2;
  }
  lua_newtable(L);
  for (size_t i = 0; i < cf_st_count(f); i++) {
    const cf_st_entry *e = cf_st_get(f, i);
    cf_dtype dt;
    if (st_dtype(e->dtype, &dt)) {
      /* format the message before closing: e (name, dtype) lives in the file's memory */
      luaL_pushfail(L);
      lua_pushfstring(L, "%s: tensor \"%s\" has dtype %s, which confit does not load", path,
                      e->name, e->dtype);
      cf_st_close(f);
      return 2;
    }
    cf_tensor *t;
    if (strcmp(e->dtype, "F16") == 0) {
      CF_LUA_CORE(L, t = cf_tensor_zeros(e->ndim, e->shape, CF_DTYPE_F32));
      if (t && cf_st_to_f32(e, cf_tensor_data(t))) { cf_tensor_release(t); t = NULL; }
    } else {
      CF_LUA_CORE(L, t = cf_tensor_from_bytes(e->ndim, e->shape, dt, e->data, e->nbytes));
    }
    if (!t) { cf_st_close(f); return cf_lua_error(L); }
    cf_lua_pushtensor(L, t);
    lua_setfield(L, -2, e->name);
  }
  lua_newtable(L);
  for (size_t i = 0; i < cf_st_metadata_count(f); i++) {
    const char *k, *v;
    if (cf_st_metadata_at(f, i, &k, &v) == 0) { lua_pushstring(L, v); lua_setfield(L, -2, k); }
  }
  cf_st_close(f);
  return 2;
}

static const char *st_name(cf_dtype dt) {
  switch (dt) {
    case CF_DTYPE_F32: return "F32";
    case CF_DTYPE_F64: return "F64";
    case CF_DTYPE_BF16: return "BF16";
    case CF_DTYPE_I32: return "I32";
    default: return "I64";
  }
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int l_save(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  int has_meta = !lua_isnoneornil(L, 3);
  if (has_meta) luaL_checktype(L, 3, LUA_TTABLE);
  lua_settop(L, 3);
  /* Collect names (sorted, for a deterministic file). */
  int n = 0;
  lua_pushnil(L);
  while (lua_next(L, 2)) {
    if (lua_type(L, -2) != LUA_TSTRING) luaL_error(L, "save_safetensors: tensor names must be strings");
    if (!cf_lua_totensor(L, -1))
      luaL_error(L, "save_safetensors: tensors.%s is a %s, not a tensor", lua_tostring(L, -2), luaL_typename(L, -1));
    n++;
    lua_pop(L, 1);
  }
  const char **names = lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof *names, 0);
  int k = 0;
  lua_pushnil(L);
  while (lua_next(L, 2)) { names[k++] = lua_tostring(L, -2); lua_pop(L, 1); }
  qsort(names, (size_t)n, sizeof *names, cmp_str);
  cf_st_entry *e = lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof *e, 0);
  lua_createtable(L, n, 0);  /* keeps the contiguous CPU copies alive */
  int keep = lua_gettop(L);
  for (int i = 0; i < n; i++) {
    lua_getfield(L, 2, names[i]);
    cf_tensor *t = cf_lua_checktensor(L, -1);
    lua_pop(L, 1);
    cf_tensor *c;
    CF_LUA_CORE(L, c = cf_tensor_device(t) == CF_DEVICE_CPU ? cf_tensor_contiguous(t)
                                                           : cf_tensor_to_device(t, CF_DEVICE_CPU));
    cf_lua_pushtensor(L, c);
    lua_rawseti(L, keep, i + 1);
    memset(&e[i], 0, sizeof e[i]);
    e[i].name = (char *)names[i];
    snprintf(e[i].dtype, sizeof e[i].dtype, "%s", st_name(c->dtype));
    e[i].ndim = c->ndim;
    for (int d = 0; d < c->ndim; d++) e[i].shape[d] = c->shape[d];
    e[i].data = cf_tensor_data(c);
    e[i].nbytes = (size_t)cf_tensor_numel(c) * cf_dtype_size(c->dtype);
  }
  /* metadata: key, value, ..., NULL */
  int nm = 0;
  if (has_meta) {
    lua_pushnil(L);
    while (lua_next(L, 3)) {
      if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
        luaL_error(L, "save_safetensors: metadata must map strings to strings");
      nm++;
      lua_pop(L, 1);
    }
  }
  const char **kv = lua_newuserdatauv(L, (size_t)(2 * nm + 1) * sizeof *kv, 0);
  k = 0;
  if (has_meta) {
    lua_pushnil(L);
    while (lua_next(L, 3)) { kv[k++] = lua_tostring(L, -2); kv[k++] = lua_tostring(L, -1); lua_pop(L, 1); }
  }
  kv[k] = NULL;
  int rc;
  CF_LUA_CORE(L, rc = cf_st_write(path, e, (size_t)n, kv));
  if (rc) return cf_lua_error(L);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_fsync(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  const char *what = "open";
  int err = 0;
  if (fd < 0) {
    err = errno;
  } else {
    what = "fsync";
    if (fsync(fd) != 0 && errno != EINVAL && errno != EROFS) err = errno;
    close(fd);
  }
  if (err) {
    luaL_pushfail(L);
    lua_pushfstring(L, "%s: %s failed: %s", path, what, strerror(err));
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

void cf_lua_open_io(lua_State *L) {
  lua_pushcfunction(L, l_fsync);
  lua_setfield(L, -2, "fsync");
  lua_pushcfunction(L, l_load);
  lua_setfield(L, -2, "load_safetensors");
  lua_pushcfunction(L, l_save);
  lua_setfield(L, -2, "save_safetensors");
}
