/* main.c - the `confit` executable: script runner and interactive REPL.
 *
 *   confit [options] [script [args...]]      (`confit -h` lists the options)
 *
 * The C module confit.core is linked in and preloaded; package.path is prefixed with the
 * directory holding lua/confit/<name>.lua (CONFIT_LUA_DIR, fixed at build time, overridable by
 * the environment variable of the same name).
 *
 * Invariants and design notes:
 *  - Everything that touches Lua runs under one lua_pcall (pmain), so an error or a memory
 *    failure anywhere becomes a message and exit status 1, never a crash.
 *  - Ctrl-C while Lua code runs: the SIGINT handler (installed around each call, the previous
 *    one restored afterwards) only sets a count hook; the hook raises the Lua error
 *    "interrupted" (no position: confit.cli.is_interrupt knows it) at the next instruction,
 *    which unwinds to the caller like any error. A script that ends so prints one line
 *    "confit: interrupted" and exits with status 130 (128 + SIGINT), no traceback; -e chunks
 *    and the REPL keep the traceback (where it stopped) and status 1. The
 *    handler is one-shot (SA_RESETHAND): a second Ctrl-C, e.g. while stuck inside a long C
 *    call, terminates the process the usual way. Hooks are per coroutine, so a loop inside a
 *    coroutine other than the main one is not interruptible this way (same as lua.c).
 *  - Ctrl-C while the REPL waits for input discards the pending (possibly multi-line) input.
 *    libedit's own signal handling is turned off (rl_catch_signals = 0) so that its read()
 *    returns EINTR and readline() returns; the handler then only records that it ran.
 *  - The REPL reads with libedit when stdin is a terminal (prompts, history, completion) and
 *    with plain fgets otherwise (no prompts, no banner, :time off), so piped sessions give
 *    clean output that tests can compare.
 *  - A line is first compiled as "return <line>" so expressions print their values (all of
 *    them, through tostring/__tostring; a table without __tostring through the Lua function
 *    confit.pretty.format: {2, 3}, not its address); a trailing ';' runs it without printing. A chunk that
 *    fails to compile only because it ended early ("... near <eof>") is continued with ">> ".
 *  - Tab completion (and the scriptable `:complete text`) resolves the dotted path before the
 *    last '.' or ':' with ordinary indexing inside a pcall, then lists the string keys of the
 *    value and of the tables along its metatables' __index chain; ':' keeps callables only.
 */
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#include <sched.h>
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>
#include <ctype.h>
#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <editline/readline.h>
#include "../lua/lconfit.h"
#include "interrupt.h"

#ifdef __SANITIZE_ADDRESS__
/* In the sanitizer build an allocation too large to serve returns NULL, as it does from glibc,
 * instead of ending the process: the library's out-of-memory paths (a clear error naming the op
 * and the bytes) are what the tests then check. ASAN_OPTIONS given still win. */
__attribute__((used, visibility("default"))) const char *__asan_default_options(void) {
  return "allocator_may_return_null=1";
}
#endif

#ifndef CONFIT_VERSION
#define CONFIT_VERSION "0.1.0"
#endif

#define PROMPT1 "> "
#define PROMPT2 ">> "
#define HISTORY_MAX 1000
#define INDEX_CHAIN_MAX 32 /* most __index tables followed when completing */

static const char *progname = "confit";

/* ---------------------------------------------------------------- interrupts */

static lua_State *volatile g_L;               /* the state a SIGINT interrupts */
static volatile sig_atomic_t g_hook_armed;    /* the handler set the interrupt hook */
static volatile sig_atomic_t g_read_interrupt; /* Ctrl-C arrived while reading input */
static volatile sig_atomic_t g_run_interrupt;  /* Ctrl-C arrived during the last docall */

static void interrupt_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  lua_sethook(L, NULL, 0, 0);
  g_hook_armed = 0;
  cf_interrupt_clear(); /* acted on: a caller that catches it and goes on generates whole again */
  lua_pushliteral(L, "interrupted");
  lua_error(L);
}

/* Async-signal-safe: lua_sethook is documented as safe to call from a signal handler. The
 * line mask matters: with only a count hook, Lua 5.4.4 does not stop in `while true do end`. */
static void on_sigint_running(int sig) {
  (void)sig;
  g_hook_armed = 1;
  g_run_interrupt = 1;
  cf_interrupt_request();  /* long C loops (generation) stop between steps */
  lua_sethook(g_L, interrupt_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKLINE | LUA_MASKCOUNT, 1);
}

static void on_sigint_reading(int sig) {
  (void)sig;
  g_read_interrupt = 1;
}

static void set_sigint(void (*handler)(int), int flags, struct sigaction *old) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = handler;
  sa.sa_flags = flags;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, old);
}

/* Message handler: the error message (or its __tostring) followed by a traceback. */
static int msghandler(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) return 1;
    msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  }
  luaL_traceback(L, L, msg, 1);
  return 1;
}

/* Calls the function below its narg arguments with a traceback handler and Ctrl-C armed. */
static int docall(lua_State *L, int narg, int nres) {
  int base = lua_gettop(L) - narg;
  struct sigaction old;
  lua_pushcfunction(L, msghandler);
  lua_insert(L, base);
  g_L = L;
  g_hook_armed = 0;
  g_run_interrupt = 0;
  cf_interrupt_clear();
  set_sigint(on_sigint_running, SA_RESETHAND, &old);
  int status = lua_pcall(L, narg, nres, base);
  sigaction(SIGINT, &old, NULL);
  cf_interrupt_clear();
  if (g_hook_armed) { /* Ctrl-C came after the last instruction: drop the pending hook */
    lua_sethook(L, NULL, 0, 0);
    g_hook_armed = 0;
  }
  lua_remove(L, base);
  return status;
}

/* Prints the error message on top of the stack (if status is an error) and pops it. */
static int report(lua_State *L, int status, int with_progname) {
  if (status != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    if (msg == NULL) msg = "(error object is not a string)";
    fflush(stdout);
    if (with_progname) fprintf(stderr, "%s: %s\n", progname, msg);
    else fprintf(stderr, "%s\n", msg);
    fflush(stderr);
    lua_pop(L, 1);
  }
  return status;
}

/* ---------------------------------------------------------------- setup */

static void setup_paths(lua_State *L) {
  const char *dir = getenv("CONFIT_LUA_DIR");
  if (dir == NULL || *dir == '\0') dir = CONFIT_LUA_DIR;
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

static void print_version(void) {
#ifdef CF_HAVE_CUDA
  const char *build = "CUDA";
#else
  const char *build = "CPU only";
#endif
  printf("confit %s (%s, %s)\n", CONFIT_VERSION, LUA_RELEASE, build);
  fflush(stdout);
}

static void print_usage(FILE *f) {
  fprintf(f,
          "usage: %s [options] [script [args...]]\n"
          "  script        run a Lua file; its arguments are in `arg` (arg[0] = script) and `...`\n"
          "  -             run the script read from stdin\n"
          "  -e code       run a chunk of code (may be given several times, run in order)\n"
          "  -i            enter the REPL after the -e chunks and the script (even if they fail)\n"
          "  -v, --version print the version\n"
          "  -h, --help    print this help\n"
          "  --            stop handling options\n"
          "Errors print a traceback to stderr and give exit status 1.\n"
          "With no script and no -e, starts the REPL: expressions print their values (tables\n"
          "readably, as confit.pretty.format does), a line ending in ';' runs silently, Tab\n"
          "completes, Ctrl-C interrupts. Commands: :help [name],\n"
          ":time (wall time of each command; on when stdin is a terminal), :complete text, :quit.\n"
          "Fed from a pipe or a file, the REPL goes on after an error and exits with status 1.\n"
          "Environment: CONFIT_LUA_DIR (pure-Lua modules), CONFIT_HISTORY (REPL history file,\n"
          "default ~/.confit_history; empty = none), CONFIT_PROGRESS (bar, plain or off: the\n"
          "recipes' progress lines; default bar on a terminal, else plain), CONFIT_DEBUG=1 (core\n"
          "errors start with the C file and line that raised them).\n",
          progname);
}

/* arg[0] = script (or the program when there is none), arg[1..] its arguments, the program
 * and options at negative indices, as in the stock lua interpreter. */
static void create_arg_table(lua_State *L, char **argv, int argc, int script) {
  lua_createtable(L, argc - script - 1 > 0 ? argc - script - 1 : 0, script + 1);
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - script);
  }
  lua_setglobal(L, "arg");
}

/* ---------------------------------------------------------------- the REPL: input */

static int g_tty;    /* stdin is a terminal: use libedit */
static int g_timing; /* print the wall time of each command */
static char *g_histfile;

static char *read_line_plain(void) {
  size_t cap = 256, len = 0;
  char *buf = malloc(cap);
  if (buf == NULL) return NULL;
  for (;;) {
    if (fgets(buf + len, (int)(cap - len), stdin) == NULL) {
      if (len > 0 && !g_read_interrupt) break; /* last line without a newline */
      free(buf);
      return NULL;
    }
    len += strlen(buf + len);
    if (len > 0 && buf[len - 1] == '\n') break;
    if (cap - len < 2) {
      char *nb = realloc(buf, cap * 2);
      if (nb == NULL) { free(buf); return NULL; }
      buf = nb;
      cap *= 2;
    }
  }
  while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r')) buf[--len] = '\0';
  /* a UTF-8 byte order mark before the first line is dropped, as the script loader drops it
   * (piped input that began with one was "unexpected symbol near '<\239>'") */
  static int first = 1;
  if (first && len >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0) memmove(buf, buf + 3, len - 2);
  first = 0;
  return buf;
}

enum { READ_LINE, READ_EOF, READ_INTERRUPTED };

/* Reads one line into *out (malloc'd, no newline). Ctrl-C while waiting gives
 * READ_INTERRUPTED; end of input gives READ_EOF. */
static int read_line(const char *prompt, char **out) {
  struct sigaction old;
  g_read_interrupt = 0;
  set_sigint(on_sigint_reading, 0, &old); /* no SA_RESTART: read() must return EINTR */
  char *line = g_tty ? readline(prompt) : read_line_plain();
  sigaction(SIGINT, &old, NULL);
  *out = line;
  if (g_read_interrupt) {
    free(line);
    *out = NULL;
    if (!g_tty) clearerr(stdin);
    return READ_INTERRUPTED;
  }
  return line ? READ_LINE : READ_EOF;
}

/* ---------------------------------------------------------------- the REPL: completion */

static const char *const lua_keywords[] = {
    "and",   "break", "do",  "else", "elseif", "end",    "false", "for",  "function", "goto", "if",
    "in",    "local", "nil", "not",  "or",     "repeat", "return", "then", "true",    "until",
    "while", NULL};

static const char *const repl_commands[] = {":help", ":time", ":complete", ":quit", NULL};

static int is_keyword(const char *s) {
  for (int i = 0; lua_keywords[i]; i++)
    if (strcmp(s, lua_keywords[i]) == 0) return 1;
  return 0;
}

static int is_identifier(const char *s, size_t n) {
  if (n == 0 || !(isalpha((unsigned char)s[0]) || s[0] == '_')) return 0;
  for (size_t i = 1; i < n; i++)
    if (!(isalnum((unsigned char)s[i]) || s[i] == '_')) return 0;
  return 1;
}

static int is_callable(lua_State *L, int idx) {
  if (lua_type(L, idx) == LUA_TFUNCTION) return 1;
  int t = luaL_getmetafield(L, idx, "__call");
  if (t != LUA_TNIL) lua_pop(L, 1);
  return t != LUA_TNIL;
}

/* Adds to the set at `set` the names `prefix .. key` for the string keys of the table at
 * `tab` that start with `word`; with methods_only, only keys whose values are callable. */
static void collect_keys(lua_State *L, int tab, int set, const char *prefix, const char *word,
                         int methods_only) {
  size_t wl = strlen(word);
  int show_meta = wl >= 2 && word[0] == '_' && word[1] == '_';
  lua_pushnil(L);
  while (lua_next(L, tab)) {
    size_t kl;
    if (lua_type(L, -2) == LUA_TSTRING) {
      const char *k = lua_tolstring(L, -2, &kl);
      if (is_identifier(k, kl) && !is_keyword(k) && kl >= wl && memcmp(k, word, wl) == 0 &&
          (show_meta || !(kl >= 2 && k[0] == '_' && k[1] == '_')) &&
          (!methods_only || is_callable(L, -1))) {
        lua_pushfstring(L, "%s%s", prefix, k);
        lua_pushboolean(L, 1);
        lua_rawset(L, set);
      }
    }
    lua_pop(L, 1);
  }
}

/* Collects the candidates of the value at `val` and of every table reachable from it through
 * metatable __index fields that are tables. An __index function cannot be enumerated; then the
 * metatable's `__methods` table (the hint the tensor binding leaves for introspection) and the
 * metatable's own non-metamethod keys (where such bindings often keep methods) are offered. */
static void collect_chain(lua_State *L, int val, int set, const char *prefix, const char *word,
                          int methods_only) {
  lua_pushvalue(L, val);
  for (int depth = 0; depth < INDEX_CHAIN_MAX; depth++) {
    int cur = lua_gettop(L);
    if (lua_type(L, cur) == LUA_TTABLE) collect_keys(L, cur, set, prefix, word, methods_only);
    if (!lua_getmetatable(L, cur)) break;
    lua_pushliteral(L, "__index");
    lua_rawget(L, -2);
    if (lua_type(L, -1) == LUA_TFUNCTION) {
      collect_keys(L, cur + 1, set, prefix, word, methods_only);
      lua_pushliteral(L, "__methods");
      lua_rawget(L, cur + 1);
      if (lua_type(L, -1) == LUA_TTABLE) collect_keys(L, cur + 3, set, prefix, word, methods_only);
      lua_pop(L, 1);
    }
    lua_remove(L, -2); /* the metatable */
    if (lua_type(L, -1) != LUA_TTABLE || lua_rawequal(L, -1, cur)) break;
    lua_remove(L, cur);
  }
}

/* Lua C function: completion candidates for the word arg 1 (e.g. "confit.op", "t:ma", "pri",
 * ":he"); returns a table whose keys are the full candidate strings. Runs protected: indexing
 * along the path may call __index metamethods, which may fail. */
static int complete_collect(lua_State *L) {
  const char *text = luaL_checkstring(L, 1);
  int at_line_start = lua_toboolean(L, 2);
  lua_newtable(L);
  int set = lua_gettop(L);
  size_t tl = strlen(text);
  if (at_line_start && text[0] == ':') {
    for (int i = 0; repl_commands[i]; i++)
      if (strncmp(repl_commands[i], text, tl) == 0) {
        lua_pushboolean(L, 1);
        lua_setfield(L, set, repl_commands[i]);
      }
    lua_settop(L, set);
    return 1;
  }
  const char *sep = NULL;
  for (const char *p = text; *p; p++)
    if (*p == '.' || *p == ':') sep = p;
  if (sep == NULL) { /* a global name or a keyword */
    lua_pushglobaltable(L);
    collect_chain(L, lua_gettop(L), set, "", text, 0);
    for (int i = 0; lua_keywords[i]; i++)
      if (strncmp(lua_keywords[i], text, tl) == 0) {
        lua_pushboolean(L, 1);
        lua_setfield(L, set, lua_keywords[i]);
      }
    lua_settop(L, set);
    return 1;
  }
  /* resolve the path before the last separator, one field at a time from the globals; the
   * indexing is the ordinary one (metamethods run), any error just means no candidates */
  lua_pushglobaltable(L);
  for (const char *p = text; p < sep;) {
    const char *q = p;
    while (q < sep && *q != '.' && *q != ':') q++;
    if (q < sep && *q == ':') break;              /* "a:b.c" is not an expression */
    if (!is_identifier(p, (size_t)(q - p))) break; /* also rejects an empty part */
    lua_pushlstring(L, p, (size_t)(q - p));
    lua_gettable(L, -2);
    lua_remove(L, -2);
    if (lua_isnil(L, -1)) break;
    p = q + 1;
    if (p > sep) { /* the whole path resolved: collect from its value */
      lua_pushlstring(L, text, (size_t)(sep - text) + 1);
      const char *prefix = lua_tostring(L, -1);
      collect_chain(L, lua_gettop(L) - 1, set, prefix, sep + 1, *sep == ':');
      break;
    }
  }
  lua_settop(L, set);
  return 1;
}

static char **g_matches;
static size_t g_nmatches;

static void free_matches(void) {
  for (size_t i = 0; i < g_nmatches; i++) free(g_matches[i]);
  free(g_matches);
  g_matches = NULL;
  g_nmatches = 0;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Generator for rl_completion_matches: hands out g_matches one by one (caller frees). */
static char *match_generator(const char *text, int state) {
  static size_t next;
  (void)text;
  if (state == 0) next = 0;
  while (next < g_nmatches) {
    char *m = g_matches[next++];
    char *copy = malloc(strlen(m) + 1);
    if (copy) strcpy(copy, m);
    return copy;
  }
  return NULL;
}

/* Fills g_matches (sorted) with the completions of `text`; returns their number. Errors while
 * resolving the path (a failing __index, an out-of-memory) just give no candidates. */
static size_t find_completions(lua_State *L, const char *text, int at_line_start) {
  int top = lua_gettop(L);
  free_matches();
  lua_pushcfunction(L, complete_collect);
  lua_pushstring(L, text);
  lua_pushboolean(L, at_line_start);
  if (lua_pcall(L, 2, 1, 0) == LUA_OK) {
    size_t n = 0;
    lua_pushnil(L);
    while (lua_next(L, -2)) { n++; lua_pop(L, 1); }
    g_matches = n ? calloc(n, sizeof *g_matches) : NULL;
    if (g_matches) {
      lua_pushnil(L);
      while (lua_next(L, -2)) {
        const char *s = lua_tostring(L, -2);
        char *copy = malloc(strlen(s) + 1);
        if (copy) { strcpy(copy, s); g_matches[g_nmatches++] = copy; }
        lua_pop(L, 1);
      }
      qsort(g_matches, g_nmatches, sizeof *g_matches, cmp_str);
    }
  }
  lua_settop(L, top);
  return g_nmatches;
}

/* libedit's completion hook: `text` is the word before the cursor, split at the break
 * characters set in repl_init_terminal (which exclude '.' and ':'). */
static char **repl_complete(const char *text, int start, int end) {
  (void)end;
  char **result = NULL;
  rl_attempted_completion_over = 1; /* never fall back to file names */
  rl_completion_append_character = '\0';
  if (g_L != NULL && find_completions(g_L, text, start == 0) > 0)
    result = rl_completion_matches(text, match_generator);
  free_matches();
  return result;
}

/* ---------------------------------------------------------------- the REPL: :help */

/* Pushes the doc string stored under `key` in the table at `tab`, or returns 0. */
static int doc_lookup(lua_State *L, int tab, const char *key) {
  if (lua_type(L, tab) != LUA_TTABLE) return 0;
  lua_getfield(L, tab, key);
  if (lua_type(L, -1) == LUA_TSTRING) return 1;
  lua_pop(L, 1);
  return 0;
}

/* Whether the first part of name (before its first '.' or ':') is one of confit's Lua modules
 * (confit.<part> found by package.searchpath: rl, metrics, toy, bench, ...) or an object the docs
 * spell tok:, m: or opt:. Such a name is documented under its own spelling or not at all: by its
 * last part it found another name's doc (bench.load showed confit.load's, tok:pad m:pad's). */
static int confit_owned(lua_State *L, const char *name) {
  size_t n = strcspn(name, ".:");
  if (n == 0 || name[n] == '\0') return 0;
  static const char *const objects[] = {"tok", "m", "opt", NULL};
  for (int i = 0; objects[i]; i++)
    if (strlen(objects[i]) == n && strncmp(name, objects[i], n) == 0) return 1;
  int top = lua_gettop(L), found = 0;
  lua_getglobal(L, "package");
  if (lua_type(L, -1) == LUA_TTABLE) {
    lua_getfield(L, -1, "searchpath");
    lua_pushliteral(L, "confit.");
    lua_pushlstring(L, name, n);
    lua_concat(L, 2);
    lua_getfield(L, top + 1, "path");
    found = lua_pcall(L, 2, 1, 0) == LUA_OK && lua_type(L, -1) == LUA_TSTRING;
  }
  lua_settop(L, top);
  return found;
}

/* Pushes Lua's table library as loaded, not the global `table`, which a REPL user may have set
 * (`table = {1, 2}` broke :help with "attempt to call a nil value"). */
static void cf_lib_table(lua_State *L) {
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_getfield(L, -1, LUA_TABLIBNAME);
  lua_remove(L, -2);
}

/* Prints doc, found under key for a name whose last part is last: a doc that opens with its own
 * signature ("t:max(dim)", "metrics.majority(...", "t.grad: ...") as it is, another ("natural
 * log") after the key. */
static void print_doc(const char *key, const char *doc, const char *last) {
  const char *at = strstr(doc, last), *space = strchr(doc, ' ');
  size_t ll = strlen(last);
  if (at && (!space || at < space) && (at[ll] == '(' || at[ll] == ' ' || at[ll] == ':' || at[ll] == '\0'))
    printf("%s\n", doc);
  else printf("%s: %s\n", key, doc);
}

/* Lua C function: prints the one-line doc of arg 1. Sources, in order: the table returned by
 * confit.repl_help, require("confit").doc, require("confit.core").doc. A qualified name
 * ("x:matmul", "confit.optim.adamw") is also looked up by its last part and by the API spellings
 * used in the docs (confit.<name>, t:<name>, t.<name>, m:<name>), unless its first part is
 * confit's own (confit_owned) or Lua's. */
static int help_show(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  int src[3], nsrc = 0;
  static const char *const modules[] = {"confit.repl_help", "confit", "confit.core"};
  for (int i = 0; i < 3; i++) {
    lua_getglobal(L, "require");
    lua_pushstring(L, modules[i]);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) { lua_pop(L, 1); continue; }
    if (i > 0) { /* the module's `doc` field */
      if (lua_type(L, -1) == LUA_TTABLE) lua_getfield(L, -1, "doc");
      else lua_pushnil(L);
      lua_remove(L, -2);
    }
    if (lua_type(L, -1) == LUA_TTABLE) src[nsrc++] = lua_gettop(L);
    else lua_pop(L, 1);
  }
  const char *last = name;
  for (const char *p = name; *p; p++)
    if (*p == '.' || *p == ':') last = p + 1;
  /* a name of Lua's own libraries is not confit's by its last part (math.max found t:max) */
  static const char *const lua_libs[] = {"math.", "os.", "string.", "table.", "io.", "coroutine.", "utf8.",
                                         "debug.", "package.", NULL};
  for (int i = 0; lua_libs[i]; i++)
    if (strncmp(name, lua_libs[i], strlen(lua_libs[i])) == 0) {
      printf("no help for '%s': it is Lua's own (the Lua 5.4 manual, section 6)\n", name);
      return 0;
    }
  const char *keys[9];
  int nkeys = 0;
  keys[nkeys++] = name;
  /* a module path without its "confit." (optim.adamw, profiler.report), or with it where the docs
   * name the module alone (confit.bench.records: bench.records) */
  if (strncmp(name, "confit.", 7) != 0 && strchr(name, '.') && !strchr(name, ':'))
    keys[nkeys++] = lua_pushfstring(L, "confit.%s", name);
  else if (strncmp(name, "confit.", 7) == 0 && strchr(name + 7, '.'))
    keys[nkeys++] = name + 7;
  if (*last && !confit_owned(L, name)) {
    keys[nkeys++] = last;
    keys[nkeys++] = lua_pushfstring(L, "confit.%s", last);
    keys[nkeys++] = lua_pushfstring(L, "t:%s", last);
    keys[nkeys++] = lua_pushfstring(L, "t.%s", last);
    keys[nkeys++] = lua_pushfstring(L, "m:%s", last);
    keys[nkeys++] = lua_pushfstring(L, "tok:%s", last);
    keys[nkeys++] = lua_pushfstring(L, "opt:%s", last);
  }
  int bare = !strpbrk(name, ".:");
  for (int k = 0; k < nkeys; k++)
    for (int s = 0; s < nsrc; s++)
      if (doc_lookup(L, src[s], keys[k])) {
        /* a bare name that is a method or field of several objects (free: m:free, opt:free, t:free,
         * tok:free; zero_grad: t: and opt:): all of them, not the first */
        if (bare && k >= 3) {
          char list[512] = "";
          int n = 0;
          for (int j = 3; j < nkeys; j++)
            for (int s2 = 0; s2 < nsrc; s2++)
              if (doc_lookup(L, src[s2], keys[j])) {
                lua_pop(L, 1);
                if (strlen(list) + strlen(keys[j]) + 3 < sizeof list)
                  snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", n ? ", " : "", keys[j]);
                n++;
                break;
              }
          if (n > 1) {
            printf("'%s' is documented as %s (:help one of them)\n", name, list);
            return 0;
          }
        }
        print_doc(keys[k], lua_tostring(L, -1), last);
        return 0;
      }
  /* a bare name documented only under qualified ones ("adamw": confit.optim.adamw; "trainable":
   * train.trainable): the one, or the list of them */
  if (!strpbrk(name, ".:")) {
    size_t nl = strlen(name);
    lua_newtable(L);
    int found = lua_gettop(L), n = 0;
    for (int s = 0; s < nsrc; s++) {
      lua_pushnil(L);
      while (lua_next(L, src[s])) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING) continue;
        size_t kl;
        const char *k = lua_tolstring(L, -1, &kl);
        if (kl > nl && (k[kl - nl - 1] == '.' || k[kl - nl - 1] == ':') && strcmp(k + kl - nl, name) == 0) {
          lua_pushvalue(L, -1);
          if (lua_rawget(L, found) == LUA_TNIL) {
            lua_pushvalue(L, -2);
            lua_rawseti(L, found, ++n);
            lua_pushvalue(L, -2);
            lua_pushboolean(L, 1);
            lua_rawset(L, found);
          }
          lua_pop(L, 1);
        }
      }
    }
    if (n == 1) {
      lua_rawgeti(L, found, 1);
      const char *key = lua_tostring(L, -1);
      for (int s = 0; s < nsrc; s++)
        if (doc_lookup(L, src[s], key)) {
          print_doc(key, lua_tostring(L, -1), last);
          return 0;
        }
    } else if (n > 1) {
      cf_lib_table(L);
      lua_getfield(L, -1, "sort");
      lua_pushvalue(L, found);
      lua_call(L, 1, 0);
      lua_getfield(L, -1, "concat");
      lua_pushvalue(L, found);
      lua_pushliteral(L, ", ");
      lua_call(L, 2, 1);
      printf("'%s' is documented as %s (:help one of them)\n", name, lua_tostring(L, -1));
      return 0;
    }
  }
  /* an undocumented function of a confit Lua module (train.prune_checkpoints): where it is and
   * the comment above it (pretty.source_doc) */
  const char *src_doc = NULL;
  lua_getglobal(L, "require");
  lua_pushliteral(L, "confit.pretty");
  if (lua_pcall(L, 1, 1, 0) == LUA_OK && lua_type(L, -1) == LUA_TTABLE) {
    lua_getfield(L, -1, "source_doc");
    lua_pushstring(L, name);
    if (lua_pcall(L, 1, 1, 0) == LUA_OK) src_doc = lua_tostring(L, -1);
  }
  if (src_doc) printf("no help for '%s' (not in the documented API); it is defined at %s\n", name, src_doc);
  else printf("no help for '%s'\n", name);
  return 0;
}

/* Prints the sorted list at `list` (n strings) after `title`, wrapped at 78 columns. */
static void print_wrapped(lua_State *L, int list, int n, const char *title) {
  cf_lib_table(L);
  lua_getfield(L, -1, "sort");
  lua_pushvalue(L, list);
  lua_call(L, 1, 0);
  lua_pop(L, 1);
  printf("%s", title);
  for (int i = 1, col = 80; i <= n; i++) {
    lua_rawgeti(L, list, i);
    size_t l;
    const char *s = lua_tolstring(L, -1, &l);
    if (col + (int)l + 1 > 78) { printf("\n "); col = 1; }
    printf(" %s", s);
    col += (int)l + 1;
    lua_pop(L, 1);
  }
  printf("\n");
}

/* :help alone: the commands, then every name `:help name` knows (help_show's sources), the
 * API apart from the ops (names without '.' or ':', also tensor methods). */
static void help_overview(lua_State *L) {
  printf("REPL commands:\n"
         "  :help name   one-line doc of an API name (also ?name), e.g. :help confit.tensor\n"
         "  :time        toggle printing the wall time of each command (now %s)\n"
         "  :complete x  list what Tab completes x to (e.g. :complete confit.ra)\n"
         "  :quit        leave (or Ctrl-D)\n"
         "An expression prints its values (a table as {2, 3} or {key = value, ...}: :help\n"
         "pretty.format); end a line with ';' to run it silently. Tab completes globals, fields\n"
         "after '.', methods after ':'. Ctrl-C interrupts running code.\n",
         g_timing ? "on" : "off");
  int top = lua_gettop(L);
  lua_newtable(L); /* seen */
  lua_newtable(L); /* api */
  lua_newtable(L); /* ops */
  int seen = top + 1, api = top + 2, ops = top + 3, napi = 0, nops = 0;
  static const char *const modules[] = {"confit.repl_help", "confit", "confit.core"};
  for (int m = 0; m < 3; m++) {
    lua_getglobal(L, "require");
    lua_pushstring(L, modules[m]);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK || lua_type(L, -1) != LUA_TTABLE) { lua_pop(L, 1); continue; }
    if (m > 0) { /* the module's `doc` field */
      lua_getfield(L, -1, "doc");
      lua_remove(L, -2);
      if (lua_type(L, -1) != LUA_TTABLE) { lua_pop(L, 1); continue; }
    }
    int tab = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, tab)) {
      lua_pop(L, 1);
      if (lua_type(L, -1) != LUA_TSTRING) continue;
      const char *k = lua_tostring(L, -1);
      lua_pushvalue(L, -1);
      if (lua_rawget(L, seen) != LUA_TNIL) { lua_pop(L, 1); continue; }
      lua_pop(L, 1);
      lua_pushvalue(L, -1);
      lua_pushboolean(L, 1);
      lua_rawset(L, seen);
      int is_op = strpbrk(k, ".:[") == NULL;
      lua_pushvalue(L, -1);
      lua_rawseti(L, is_op ? ops : api, is_op ? ++nops : ++napi);
    }
    lua_pop(L, 1);
  }
  if (napi) print_wrapped(L, api, napi, "Documented names:");
  if (nops) print_wrapped(L, ops, nops, "Ops (confit.name(t, ...) and t:name(...)):");
  lua_settop(L, top);
}

/* Handles a REPL command line (":..." or "?name"); returns 0 when the REPL should end. */
static int repl_command(lua_State *L, const char *line) {
  char cmd[32];
  size_t n = 0;
  const char *p = line;
  if (*p == '?') {
    p++;
    strcpy(cmd, ":help");
  } else {
    while (*p && !isspace((unsigned char)*p) && n + 1 < sizeof cmd) cmd[n++] = *p++;
    cmd[n] = '\0';
  }
  while (isspace((unsigned char)*p)) p++;
  size_t al = strlen(p);
  while (al > 0 && isspace((unsigned char)p[al - 1])) al--;
  if (strcmp(cmd, ":quit") == 0 || strcmp(cmd, ":q") == 0 || strcmp(cmd, ":exit") == 0) return 0;
  if (strcmp(cmd, ":time") == 0) {
    g_timing = !g_timing;
    printf("timing %s\n", g_timing ? "on" : "off");
  } else if (strcmp(cmd, ":complete") == 0) { /* what Tab would offer; scriptable */
    char *text = malloc(al + 1);
    if (text) {
      memcpy(text, p, al);
      text[al] = '\0';
      find_completions(L, text, text[0] == ':');
      for (size_t i = 0; i < g_nmatches; i++) printf("%s\n", g_matches[i]);
      free_matches();
      free(text);
    }
  } else if (strcmp(cmd, ":help") == 0 || strcmp(cmd, ":h") == 0) {
    if (al == 0) help_overview(L);
    else {
      lua_pushcfunction(L, help_show);
      lua_pushlstring(L, p, al);
      report(L, docall(L, 1, 0), 0);
    }
  } else {
    printf("unknown command %s (try :help)\n", cmd);
  }
  fflush(stdout);
  return 1;
}

/* ---------------------------------------------------------------- the REPL: evaluation */

static int incomplete(lua_State *L, int status) {
  if (status != LUA_ERRSYNTAX) return 0;
  size_t l;
  const char *msg = lua_tolstring(L, -1, &l);
  return msg && l >= 5 && strcmp(msg + l - 5, "<eof>") == 0;
}

/* Registry key of the REPL's table printer, confit.pretty's format (repl_preload stores it: a
 * user's globals cannot change it). */
#define REPL_FORMAT "confit.repl.format"

/* Lua C function: prints its arguments, a table through confit.pretty.format ({2, 3}), anything
 * else with tostring (__tostring / __name aware; the formatter keeps a table's __tostring too). */
static int print_results(lua_State *L) {
  int n = lua_gettop(L);
  for (int i = 1; i <= n; i++) {
    size_t l;
    const char *s = NULL;
    if (lua_type(L, i) == LUA_TTABLE) {
      if (lua_getfield(L, LUA_REGISTRYINDEX, REPL_FORMAT) == LUA_TFUNCTION) {
        lua_pushvalue(L, i);
        lua_call(L, 1, 1);
        if (lua_type(L, -1) == LUA_TSTRING) s = lua_tolstring(L, -1, &l);
      }
      if (s == NULL) lua_pop(L, 1); /* no formatter, or it gave no string */
    }
    if (s == NULL) s = luaL_tolstring(L, i, &l);
    if (i > 1) fputc('\t', stdout);
    fwrite(s, 1, l, stdout);
    lua_pop(L, 1);
  }
  fputc('\n', stdout);
  fflush(stdout);
  return 0;
}

static int ends_with_semicolon(const char *s, size_t l) {
  while (l > 0 && isspace((unsigned char)s[l - 1])) l--;
  return l > 0 && s[l - 1] == ';';
}

/* Compiles the chunk on top of the stack, replacing it by the function. Tries "return chunk"
 * first so expressions give values. Returns LUA_OK, or the error status with the message on
 * top; *more is set when the chunk may still be completed by further lines. */
static int compile_chunk(lua_State *L, int *more) {
  size_t l, rl;
  const char *code = lua_tolstring(L, -1, &l);
  lua_pushliteral(L, "return ");
  lua_pushvalue(L, -2);
  lua_concat(L, 2);
  const char *ret = lua_tolstring(L, -1, &rl);
  int status = luaL_loadbuffer(L, ret, rl, "=stdin");
  int ret_more = incomplete(L, status);
  lua_remove(L, -2); /* the "return" string: [chunk, function or message] */
  if (status == LUA_OK) {
    lua_remove(L, -2); /* the chunk */
    *more = 0;
    return LUA_OK;
  }
  status = luaL_loadbuffer(L, code, l, "=stdin"); /* [chunk, return message, result] */
  int plain_more = status != LUA_OK && incomplete(L, status);
  *more = status != LUA_OK && (ret_more || plain_more);
  /* an expression cut short ("1 +") fails as a statement for another reason; when input ends
   * there, the expression's message ("near <eof>") is the one that says what is missing */
  if (status != LUA_OK && ret_more && !plain_more) lua_pop(L, 1);
  else lua_remove(L, -2);
  lua_remove(L, -2);
  return status;
}

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Adds a chunk (multi-line ones whole) to the history, skipping a repeat of the last entry. */
static void history_add(const char *chunk) {
  static char *last;
  if (!g_tty || *chunk == '\0' || (last && strcmp(last, chunk) == 0)) return;
  add_history(chunk);
  free(last);
  last = malloc(strlen(chunk) + 1);
  if (last) strcpy(last, chunk);
}

static void repl_init_terminal(void) {
  rl_readline_name = "confit";
  rl_catch_signals = 0;
  rl_attempted_completion_function = repl_complete;
  /* '.' and ':' are not word breaks, so "t:ma" reaches the completer whole */
  static char breaks[] = " \t\n\"\\'`@$><=;|&{}()[],+-*/%^#~";
  rl_basic_word_break_characters = breaks;
  rl_completer_word_break_characters = breaks;
  using_history();
  stifle_history(HISTORY_MAX);
  const char *h = getenv("CONFIT_HISTORY");
  if (h == NULL) {
    const char *home = getenv("HOME");
    if (home && *home) {
      size_t n = strlen(home) + sizeof "/.confit_history";
      g_histfile = malloc(n);
      if (g_histfile) snprintf(g_histfile, n, "%s/.confit_history", home);
    }
  } else if (*h) {
    g_histfile = malloc(strlen(h) + 1);
    if (g_histfile) strcpy(g_histfile, h);
  }
  if (g_histfile) read_history(g_histfile);
}

static void repl_save_history(void) {
  if (g_tty && g_histfile) {
    if (write_history(g_histfile) != 0)
      fprintf(stderr, "%s: warning: cannot write history to %s\n", progname, g_histfile);
  }
  free(g_histfile);
  g_histfile = NULL;
}

/* confit = require "confit", as a global for the session, and the table printer
 * require("confit.pretty").format in the registry; a failure is only a warning. */
static void repl_preload(lua_State *L) {
  lua_getglobal(L, "require");
  lua_pushliteral(L, "confit");
  int status = docall(L, 1, 1);
  if (status == LUA_OK) {
    lua_setglobal(L, "confit");
  } else {
    const char *msg = lua_tostring(L, -1);
    fprintf(stderr, "%s: warning: require \"confit\" failed: %s\n", progname,
            msg ? msg : "(no message)");
    lua_pop(L, 1);
  }
  lua_getglobal(L, "require");
  lua_pushliteral(L, "confit.pretty");
  status = docall(L, 1, 1);
  if (status == LUA_OK && lua_type(L, -1) == LUA_TTABLE) {
    lua_getfield(L, -1, "format");
    lua_setfield(L, LUA_REGISTRYINDEX, REPL_FORMAT);
  } else if (status != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    fprintf(stderr, "%s: warning: require \"confit.pretty\" failed (tables print as addresses): %s\n",
            progname, msg ? msg : "(no message)");
  }
  lua_pop(L, 1);
}

/* Reads, evaluates and prints until the input ends; returns how many chunks failed. */
static int repl(lua_State *L) {
  int failures = 0;
  g_tty = isatty(STDIN_FILENO);
  g_timing = g_tty;
  g_L = L;
  if (g_tty) repl_init_terminal();
  repl_preload(L);
  if (g_tty) {
    print_version();
    printf("  :help for help, :quit or Ctrl-D to leave, Tab completes, Ctrl-C interrupts\n");
  }
  int base = lua_gettop(L);
  for (;;) {
    lua_settop(L, base);
    fflush(stdout);
    char *line;
    int r = read_line(PROMPT1, &line);
    if (r == READ_EOF) break;
    if (r == READ_INTERRUPTED) {
      if (g_tty) printf("\n");
      continue;
    }
    const char *s = line;
    while (isspace((unsigned char)*s)) s++;
    if (*s == '\0') { free(line); continue; }
    if (*s == ':' || *s == '?') {
      history_add(line);
      int go_on = repl_command(L, s);
      free(line);
      if (!go_on) break;
      continue;
    }
    lua_pushstring(L, line);
    free(line);
    /* gather lines until the chunk compiles or is definitely wrong */
    int more, status, eof = 0, interrupted = 0;
    for (;;) {
      lua_pushvalue(L, -1);
      status = compile_chunk(L, &more);
      if (status == LUA_OK || !more) break;
      lua_pop(L, 1); /* the "incomplete" message */
      r = read_line(PROMPT2, &line);
      if (r != READ_LINE) {
        eof = r == READ_EOF;
        interrupted = r == READ_INTERRUPTED;
        break;
      }
      lua_pushliteral(L, "\n");
      lua_pushstring(L, line);
      free(line);
      lua_concat(L, 3);
    }
    if (interrupted) {
      if (g_tty) printf("\n");
      continue;
    }
    if (eof) { /* input ended inside a statement: say so, then stop */
      lua_pushvalue(L, base + 1);
      compile_chunk(L, &more);
      history_add(lua_tostring(L, base + 1));
      report(L, LUA_ERRSYNTAX, 0);
      failures++;
      break;
    }
    size_t cl;
    const char *chunk = lua_tolstring(L, base + 1, &cl);
    history_add(chunk);
    if (status != LUA_OK) {
      report(L, status, 0);
      failures++;
      continue;
    }
    int quiet = ends_with_semicolon(chunk, cl);
    double t0 = now_seconds();
    status = docall(L, 0, LUA_MULTRET);
    double dt = now_seconds() - t0;
    int nres = lua_gettop(L) - (base + 1);
    if (status == LUA_OK && nres > 0 && !quiet) {
      lua_pushcfunction(L, print_results);
      lua_insert(L, base + 2);
      status = docall(L, nres, 0);
    }
    if (g_run_interrupt && g_tty) printf("\n"); /* the terminal echoed ^C mid-line */
    if (report(L, status, 0) != LUA_OK) failures++;
    if (g_timing) {
      if (dt < 1.0) printf("[%.1f ms]\n", dt * 1e3);
      else printf("[%.2f s]\n", dt);
    }
    fflush(stdout);
  }
  if (g_tty) printf("\n");
  fflush(stdout);
  lua_settop(L, base);
  repl_save_history();
  return failures;
}

/* ---------------------------------------------------------------- main */

struct cli {
  int argc;
  char **argv;
  int script;      /* index of the script argument, 0 when none */
  int interactive; /* -i */
  int version;     /* -v */
  int has_e;       /* at least one -e */
  int exit_code;
  int interrupted; /* the script ended by a Ctrl-C */
};

/* Parses options; returns 0 after printing a usage error (or the help), 1 to go on. */
static int parse_args(struct cli *c) {
  for (int i = 1; i < c->argc; i++) {
    const char *a = c->argv[i];
    if (a[0] != '-' || strcmp(a, "-") == 0) { c->script = i; return 1; }
    if (strcmp(a, "--") == 0) {
      if (i + 1 < c->argc) c->script = i + 1;
      return 1;
    }
    if (strcmp(a, "-i") == 0) c->interactive = 1;
    else if (strcmp(a, "-v") == 0 || strcmp(a, "--version") == 0) c->version = 1;
    else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      print_usage(stdout);
      c->exit_code = 0;
      return 0;
    } else if (strncmp(a, "-e", 2) == 0) {
      if (a[2] == '\0' && ++i >= c->argc) {
        fprintf(stderr, "%s: '-e' needs an argument\n", progname);
        print_usage(stderr);
        c->exit_code = 1;
        return 0;
      }
      c->has_e = 1;
    } else {
      fprintf(stderr, "%s: unrecognized option '%s'\n", progname, a);
      print_usage(stderr);
      c->exit_code = 1;
      return 0;
    }
  }
  return 1;
}

/* Runs the -e chunks in order; returns the first failing status. */
static int run_e_chunks(lua_State *L, struct cli *c) {
  int end = c->script ? c->script : c->argc;
  for (int i = 1; i < end; i++) {
    const char *a = c->argv[i];
    if (strcmp(a, "--") == 0) break;
    if (strncmp(a, "-e", 2) != 0) continue;
    const char *code = a[2] ? a + 2 : c->argv[++i];
    int status = luaL_loadbuffer(L, code, strlen(code), "=(command line)");
    if (status == LUA_OK) status = docall(L, 0, 0);
    if (report(L, status, 1) != LUA_OK) return status;
  }
  return LUA_OK;
}

static int run_script(lua_State *L, struct cli *c) {
  const char *fname = c->argv[c->script];
  if (strcmp(fname, "-") == 0) fname = NULL; /* stdin */
  int status = luaL_loadfile(L, fname);
  if (status == LUA_OK) {
    int n = c->argc - c->script - 1;
    luaL_checkstack(L, n + 3, "too many arguments to script");
    for (int i = c->script + 1; i < c->argc; i++) lua_pushstring(L, c->argv[i]);
    status = docall(L, n, 0);
  }
  /* a Ctrl-C is no bug: one line, no traceback (msghandler appended one to "interrupted") */
  const char *msg = status != LUA_OK ? lua_tostring(L, -1) : NULL;
  if (g_run_interrupt && msg && strncmp(msg, "interrupted", 11) == 0 && (msg[11] == '\0' || msg[11] == '\n')) {
    lua_pop(L, 1);
    lua_pushliteral(L, "interrupted");
    c->interrupted = 1;
  }
  return report(L, status, 1);
}

static int pmain(lua_State *L) {
  struct cli *c = lua_touserdata(L, 1);
  lua_settop(L, 0);
  luaL_checkversion(L);
  luaL_openlibs(L);
  setup_paths(L);
  if (!parse_args(c)) return 0;
  create_arg_table(L, c->argv, c->argc, c->script);
  lua_gc(L, LUA_GCRESTART);
  int nothing = !c->script && !c->has_e && !c->version;
  if (c->version) print_version();
  int status = run_e_chunks(L, c);
  if (status == LUA_OK && c->script) status = run_script(L, c);
  /* with -i the REPL starts even after an error, to inspect the state (like python -i). Input
   * that is not a terminal (a pipe, a file) is a script: a failed chunk makes the exit status 1. */
  if (c->interactive || nothing) {
    int failures = repl(L);
    /* from a pipe, a failed -e chunk or script before the REPL counts too (it gave 0) */
    status = (failures || status != LUA_OK) && !g_tty ? LUA_ERRRUN : LUA_OK;
    c->interrupted = 0; /* the session's status, not the script's */
  }
  c->exit_code = c->interrupted ? 130 : status == LUA_OK ? 0 : 1;
  return 0;
}

/* libgomp reads its settings from the environment when it loads, before main runs. Its default
 * spin of its idle threads (300,000 turns before they sleep) cost little on a quiet machine and
 * everything on a busy one: with one other busy process on a 2-core machine the main job took
 * 20 s to 200 s (its quiet 8.3 s). 1,000 turns measured the same quiet (8.6 s) and 17-23 s busy
 * (OMP_WAIT_POLICY=passive: 11.8 s quiet, 14-18 s busy). So when neither setting is given,
 * confit runs itself again with GOMP_SPINCOUNT=1000 (a failed exec goes on as it is). Not when
 * OpenMP runs one thread (OMP_NUM_THREADS=1, or one CPU to run on): nothing spins then, and the
 * restart would only cost its 0.06 s. */
static int one_openmp_thread(void) {
  const char *n = getenv("OMP_NUM_THREADS");
  if (n && n[0] == '1' && (n[1] == 0 || n[1] == ',')) return 1;
  cpu_set_t set;
  return sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) == 1;
}

static void settle_openmp(char **argv) {
  if (getenv("GOMP_SPINCOUNT") || getenv("OMP_WAIT_POLICY") || one_openmp_thread()) return;
  if (setenv("GOMP_SPINCOUNT", "1000", 1) != 0) return;
  execv("/proc/self/exe", argv);
}

int main(int argc, char **argv) {
  settle_openmp(argv);
  /* Tensors, activations and the sampler's KV cache are freed and allocated again at every op
   * and every generate call. glibc maps each block over its (adaptive) threshold afresh and
   * returns the top of the heap past 128 KB, so the same memory was page-faulted in and zeroed
   * by the kernel over and over (the toy evaluation spent 10-15% of its CPU time in the
   * kernel). Blocks up to 32 MB now come from the heap, which keeps up to 256 MB free for
   * reuse; larger ones (a real model's weights and activations) are still mapped and
   * returned. */
#ifdef M_MMAP_THRESHOLD /* glibc's */
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
#endif
  if (argv[0] && argv[0][0]) progname = argv[0];
  progname = strrchr(progname, '/') ? strrchr(progname, '/') + 1 : progname;
  lua_State *L = luaL_newstate();
  if (L == NULL) {
    fprintf(stderr, "%s: cannot create the Lua state: not enough memory\n", progname);
    return 1;
  }
  struct cli c = {argc, argv, 0, 0, 0, 0, 1, 0};
  lua_gc(L, LUA_GCSTOP); /* no collections while the libraries open */
  lua_pushcfunction(L, pmain);
  lua_pushlightuserdata(L, &c);
  int status = lua_pcall(L, 1, 0, 0);
  if (status != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    fprintf(stderr, "%s: %s\n", progname, msg ? msg : "(error object is not a string)");
    c.exit_code = 1;
  }
  lua_close(L);
  /* output that could not be written (a full disk, a closed pipe) is a failure, not a success */
  if ((fflush(stdout) != 0 || ferror(stdout)) && c.exit_code == 0) {
    fprintf(stderr, "%s: cannot write the standard output: %s\n", progname, strerror(errno ? errno : EIO));
    c.exit_code = 1;
  }
  return c.exit_code;
}
