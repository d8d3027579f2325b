/* l_io.c - safetensors files from Lua.
 *
 * confit.load_safetensors(path) -> {name = tensor}, metadata | nil, message
 *   F32/F64/BF16/I32/I64 keep their dtype; F16 widens to f32; a file holding another dtype
 *   gives nil and a message naming the tensor and the dtype.
 * confit.safetensors_nonfinite(path) -> name | false | nil, message
 *   the first tensor (in the file's order) of a float dtype holding a NaN or an infinity, read
 *   in place from the mapping (nothing is copied: a checkpoint of any size is checked before it
 *   is loaded), or false when there is none; nil and a message when the file does not open.
 * confit.save_safetensors(path, {name = tensor}, metadata?) -> true
 *   written atomically (temporary file, fsync, rename); laid out by element size, then name
 *   (every tensor aligned, core/io/safetensors.c); CPU copies of
 *   device tensors are taken first.
 * confit.fsync(path) -> true | nil, message
 *   flushes a file's or a directory's data to the disk (fsync): the Lua writers (jsonio's
 *   atomic writes, checkpoints) sync a temporary file before renaming it and the directory
 *   after. A file system that cannot sync a directory (EINVAL, EROFS) counts as done.
 * confit.truncate(path, size) -> true | nil, message
 *   cuts the file path to its first size bytes in place and syncs it (ftruncate, fsync): a
 *   torn last line of a records file goes without a copy of the file (no free space needed).
 * confit.rename_exchange(a, b) -> true | nil, message
 *   swaps the paths a and b in one atomic step (Linux renameat2 RENAME_EXCHANGE): jsonio's
 *   write_dir_atomic puts a new folder in an old one's place with it, so no crash leaves
 *   neither. nil and a message when the file system or the kernel cannot (the caller falls back
 *   to two renames) or either path is missing.
 * confit.lock(path) -> handle | nil, message, pid
 *   an exclusive lock on the file path (created when missing, mode 0644): flock(LOCK_EX |
 *   LOCK_NB) on a descriptor opened O_CLOEXEC (a child process started by os.execute does not
 *   inherit it). The holder's PID is written into the file. A file another process (or another
 *   handle of this one: flock locks belong to an open file description) holds gives nil, a
 *   message and that holder's PID (nil when the file does not say). handle:close() (also
 *   __close and __gc) removes the file while still holding it, then releases the lock; a
 *   process that dies (kill -9 included) releases it in the kernel, leaving the file behind,
 *   which the next taker simply locks. A taker that locked a file since removed (or replaced)
 *   by its holder opens the path again, so two handles never lock different files of one path.
 */
#define _GNU_SOURCE /* renameat2 */
#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <limits.h>
#include <lua.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
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

/* The file at argument 1 opened, or NULL with nil and the reader's message pushed (return 2). */
static cf_st_file *open_arg(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  cf_st_file *f;
  CF_LUA_CORE(L, f = cf_st_open(path));
  if (!f) {
    luaL_pushfail(L);
    lua_pushstring(L, cf_error_message());
  }
  return f;
}

static int l_load(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  cf_st_file *f = open_arg(L);
  if (!f) return 2;
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
    if (!t) { /* nil and the reason naming the file and the tensor, as for a malformed file (a shape of
               * [2^52, 2^52, 0] holds no bytes, so the reader takes it, and no tensor can hold it) */
      luaL_pushfail(L);
      lua_pushfstring(L, "%s: tensor \"%s\": %s", path, e->name, cf_error_message());
      cf_st_close(f);
      return 2;
    }
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

static int l_nonfinite(lua_State *L) {
  cf_st_file *f = open_arg(L);
  if (!f) return 2;
  lua_pushboolean(L, 0);
  for (size_t i = 0; i < cf_st_count(f); i++) {
    const cf_st_entry *e = cf_st_get(f, i);
    if (cf_st_nonfinite(e)) {
      lua_pop(L, 1);
      lua_pushstring(L, e->name);
      break;
    }
  }
  cf_st_close(f);
  return 1;
}

/* confit.stdout_ok() -> whether every write to the standard output so far went through (the C
 * stream's error flag: io.stdout:flush() sees only what is still buffered) */
static int l_stdout_ok(lua_State *L) {
  lua_pushboolean(L, fflush(stdout) == 0 && !ferror(stdout));
  return 1;
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
    size_t nl;
    const char *nm = lua_tolstring(L, -2, &nl);
    if (strlen(nm) != nl) luaL_error(L, "save_safetensors: the tensor name \"%s...\" holds a NUL byte", nm);
    if (!cf_lua_totensor(L, -1))
      luaL_error(L, "save_safetensors: tensors.%s is a %s, not a tensor", lua_tostring(L, -2), luaL_typename(L, -1));
    n++;
    lua_pop(L, 1);
  }
  const char **names = lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof *names, 0);
  int k = 0;
  lua_pushnil(L);
  while (lua_next(L, 2)) { /* never past n: a finalizer run by the allocation may change the table */
    if (k >= n || lua_type(L, -2) != LUA_TSTRING) luaL_error(L, "save_safetensors: the tensor table changed while it was read");
    names[k++] = lua_tostring(L, -2);
    lua_pop(L, 1);
  }
  if (k != n) luaL_error(L, "save_safetensors: the tensor table changed while it was read");
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
      size_t kl, vl;
      const char *ks = lua_tolstring(L, -2, &kl), *vs = lua_tolstring(L, -1, &vl);
      if (strlen(ks) != kl || strlen(vs) != vl) /* "x\0y" was saved as "x" */
        luaL_error(L, "save_safetensors: metadata \"%s\" holds a NUL byte (in its key or value)", ks);
      nm++;
      lua_pop(L, 1);
    }
  }
  const char **kv = lua_newuserdatauv(L, (size_t)(2 * nm + 1) * sizeof *kv, 0);
  k = 0;
  if (has_meta) {
    lua_pushnil(L);
    while (lua_next(L, 3)) {
      if (k >= 2 * nm || lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
        luaL_error(L, "save_safetensors: the metadata table changed while it was read");
      kv[k++] = lua_tostring(L, -2);
      kv[k++] = lua_tostring(L, -1);
      lua_pop(L, 1);
    }
  }
  kv[k] = NULL;
  int rc;
  CF_LUA_CORE(L, rc = cf_st_write(path, e, (size_t)n, kv));
  if (rc) return cf_lua_error(L);
  lua_pushboolean(L, 1);
  return 1;
}

/* confit.path_kind(path) -> "file" | "dir" | "link" | "other", or nil, message, errno: what the
 * directory entry at path is (lstat: a symbolic link is "link", dangling or not). Asks nothing of
 * the file system but the lookup, so a read-only or full one answers like any other. */
static int l_path_kind(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  struct stat st;
  if (lstat(path, &st) != 0) {
    int err = errno;
    luaL_pushfail(L);
    lua_pushfstring(L, "%s: %s", path, strerror(err));
    lua_pushinteger(L, err);
    return 3;
  }
  lua_pushstring(L, S_ISREG(st.st_mode) ? "file" : S_ISDIR(st.st_mode) ? "dir" : S_ISLNK(st.st_mode) ? "link" : "other");
  return 1;
}

/* confit.realpath(path) -> absolute path, or nil, message, errno: path with every symbolic link,
 * "." and ".." resolved (realpath(3)); it must exist. Two paths name one file or folder when
 * their real paths are equal (recipes/report.lua counts a run given twice once). */
static int l_realpath(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  char real[PATH_MAX]; /* no malloc'd result: pushing it may raise, and it would leak */
  if (realpath(path, real) == NULL) {
    int err = errno;
    luaL_pushfail(L);
    lua_pushfstring(L, "%s: %s", path, strerror(err));
    lua_pushinteger(L, err);
    return 3;
  }
  lua_pushstring(L, real);
  return 1;
}

/* true, or nil and "<path>: <what> failed: <reason>" when err (an errno) is set */
static int path_result(lua_State *L, const char *path, const char *what, int err) {
  if (err) {
    luaL_pushfail(L);
    lua_pushfstring(L, "%s: %s failed: %s", path, what, strerror(err));
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int l_fsync(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return path_result(L, path, "open", errno);
  int err = fsync(fd) != 0 && errno != EINVAL && errno != EROFS ? errno : 0;
  close(fd);
  return path_result(L, path, "fsync", err);
}

static int l_truncate(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  lua_Integer size = luaL_checkinteger(L, 2);
  luaL_argcheck(L, size >= 0, 2, "size must be >= 0");
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return path_result(L, path, "open", errno);
  const char *what = "truncate";
  int err = ftruncate(fd, (off_t)size) != 0 ? errno : 0;
  if (!err && fsync(fd) != 0 && errno != EINVAL && errno != EROFS) { what = "fsync"; err = errno; }
  close(fd);
  return path_result(L, path, what, err);
}

static int l_rename_exchange(lua_State *L) {
  const char *a = luaL_checkstring(L, 1), *b = luaL_checkstring(L, 2);
  if (renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE) != 0) {
    luaL_pushfail(L);
    lua_pushfstring(L, "cannot exchange %s and %s: %s", a, b, strerror(errno));
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

#define LOCK_MT "confit.lock"

typedef struct {
  int fd;      /* -1 once released */
  char *path;  /* malloc'd */
} io_lock;

static void lock_release(io_lock *h) {
  if (h->fd >= 0) {
    /* remove the file while holding it: a waiter that opened it sees it gone and opens anew */
    struct stat a, b;
    if (h->path && fstat(h->fd, &a) == 0 && stat(h->path, &b) == 0 && a.st_dev == b.st_dev &&
        a.st_ino == b.st_ino)
      unlink(h->path);
    close(h->fd);
    h->fd = -1;
  }
  free(h->path);
  h->path = NULL;
}

static int l_lock_close(lua_State *L) {
  io_lock *h = luaL_checkudata(L, 1, LOCK_MT);
  lock_release(h);
  return 0;
}

static int l_lock_tostring(lua_State *L) {
  io_lock *h = luaL_checkudata(L, 1, LOCK_MT);
  if (h->fd >= 0) lua_pushfstring(L, "confit.lock (%s)", h->path);
  else lua_pushstring(L, "confit.lock (released)");
  return 1;
}

/* the PID written in the lock file fd, or 0 when it holds none */
static long lock_pid(int fd) {
  char buf[32];
  ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
  if (n <= 0) return 0;
  buf[n] = 0;
  char *end;
  long pid = strtol(buf, &end, 10);
  return pid > 0 && (*end == '\n' || *end == 0) ? pid : 0;
}

static int l_lock(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  io_lock *h = lua_newuserdatauv(L, sizeof *h, 0);
  h->fd = -1;
  h->path = NULL;
  luaL_setmetatable(L, LOCK_MT);
  size_t len = strlen(path);
  h->path = malloc(len + 1);
  if (!h->path) return luaL_error(L, "confit.lock: out of memory");
  memcpy(h->path, path, len + 1);
  for (int tries = 0; tries < 100; tries++) {
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
      int err = errno;
      luaL_pushfail(L);
      lua_pushfstring(L, "%s: cannot open the lock file: %s", path, strerror(err));
      return 2;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
      int err = errno;
      long pid = err == EWOULDBLOCK ? lock_pid(fd) : 0;
      close(fd);
      luaL_pushfail(L);
      if (err != EWOULDBLOCK) {
        lua_pushfstring(L, "%s: cannot lock: %s", path, strerror(err));
        return 2;
      }
      if (pid) lua_pushfstring(L, "%s is held by another process (PID %d)", path, (int)pid);
      else lua_pushfstring(L, "%s is held by another process", path);
      if (pid) lua_pushinteger(L, pid); else lua_pushnil(L);
      return 3;
    }
    /* the holder before us may have removed the file after we opened it: lock the path's file */
    struct stat a, b;
    if (fstat(fd, &a) != 0 || stat(path, &b) != 0 || a.st_dev != b.st_dev || a.st_ino != b.st_ino) {
      close(fd);
      continue;
    }
    h->fd = fd;
    char buf[32];
    int n = snprintf(buf, sizeof buf, "%ld\n", (long)getpid());
    /* the PID is only for messages: a failed write leaves the lock itself intact */
    if (ftruncate(fd, 0) != 0 || pwrite(fd, buf, (size_t)n, 0) != n) { /* message says no PID */ }
    return 1;
  }
  luaL_pushfail(L);
  lua_pushfstring(L, "%s: cannot lock: the file keeps being replaced", path);
  return 2;
}

void cf_lua_open_io(lua_State *L) {
  static const luaL_Reg lock_methods[] = {{"close", l_lock_close}, {NULL, NULL}};
  cf_lua_resource_mt(L, LOCK_MT, l_lock_close, l_lock_close, l_lock_tostring, lock_methods);
  lua_pop(L, 1);
  static const luaL_Reg functions[] = {{"lock", l_lock}, {"fsync", l_fsync}, {"truncate", l_truncate}, {"rename_exchange", l_rename_exchange}, {"path_kind", l_path_kind}, {"realpath", l_realpath},
                                       {"load_safetensors", l_load},
                                       {"safetensors_nonfinite", l_nonfinite}, {"stdout_ok", l_stdout_ok},
                                       {"save_safetensors", l_save}, {NULL, NULL}};
  luaL_setfuncs(L, functions, 0);
}
