/* l_model.c - the model userdata ("confit.model"): a cf_qwen2 with its forward, log-probs,
 * generation, parameters and saving. The user-facing wrapper (tokenizer, text in and out,
 * devices) is lua/confit/model.lua.
 *
 * confit.core.model_load(dir)        -> model | nil, message
 * confit.core.model_new(config_json) -> model with zero parameters (to be initialised in Lua)
 * model:forward(ids)                 -> logits [B, T, V]          (ids: integer [B, T] tensor)
 * model:hidden(ids)                  -> final hidden states [B, T, D]
 * model:logprobs(ids, prompt_lens, temperature [, lens]) -> [B] sums of completion log-probs
 * model:generate(prompts, opts)      -> list of {prompt, tokens, logprobs, logprob, finish [, score_logprob]}
 * model:parameters()                 -> {name = tensor}; model:param_names() -> ordered list
 * model:set_param(name, tensor); model:save(dir); model:config() -> table; model:free()
 * model:tie()                        -> the LM head shares the embedding again (after set_param)
 * model:set_recompute(on)            -> recompute each layer's activations in the backward
 */
#include <limits.h>
#include <math.h>
#include <lauxlib.h>
#include <lua.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "lconfit.h"
#include "error.h"
#include "interrupt.h"
#include "rng.h"
#include "nn/generate.h"
#include "nn/qwen2.h"

#define MODEL_MT CF_LUA_MODEL_MT

typedef struct { cf_qwen2 *m; } model_box;

cf_qwen2 *cf_lua_checkmodel(lua_State *L, int idx) {
  model_box *b = luaL_checkudata(L, idx, MODEL_MT);
  if (!b->m) luaL_error(L, "model was freed");
  return b->m;
}
#define check_model cf_lua_checkmodel

static model_box *new_box(lua_State *L) {
  model_box *b = lua_newuserdatauv(L, sizeof *b, 0);
  b->m = NULL;
  luaL_setmetatable(L, MODEL_MT);
  return b;
}

static int model_load(lua_State *L) {
  const char *dir = luaL_checkstring(L, 1);
  model_box *b = new_box(L);
  CF_LUA_CORE(L, b->m = cf_qwen2_load(dir));
  if (!b->m) {
    luaL_pushfail(L);
    lua_pushstring(L, cf_error_message());
    return 2;
  }
  cf_lua_note_pressure(L); /* models dropped unfreed held their weights until Lua's GC ran by chance */
  return 1;
}

/* core.model_default_context(model_type) -> the max_position_embeddings the loader takes when
 * config.json has none (cf_qwen2_default_max_pos), or nil for a model_type it does not read */
static int model_default_context(lua_State *L) {
  int n = cf_qwen2_default_max_pos(luaL_checkstring(L, 1));
  if (n > 0) lua_pushinteger(L, n); else luaL_pushfail(L);
  return 1;
}

static int model_new(lua_State *L) {
  const char *json = luaL_checkstring(L, 1);
  model_box *b = new_box(L);
  cf_qwen2_config cfg;
  if (cf_qwen2_config_parse(json, "model config", &cfg)) return cf_lua_error(L);
  /* its f32 parameters are filled (init_random) and so touched: more than the machine's memory
   * would end in the kernel's out-of-memory kill, not an error */
  double need = cf_qwen2_numel(&cfg) * 4, have = (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGESIZE);
  if (have > 0 && need > have) {
    char msg[200];
    snprintf(msg, sizeof msg, "model config: its %.0f parameters need %.1f GB in f32, more than this machine's "
             "%.1f GB of memory", cf_qwen2_numel(&cfg), need / 1e9, have / 1e9);
    return luaL_error(L, "%s", msg);
  }
  CF_LUA_CORE(L, b->m = cf_qwen2_new(&cfg));
  if (!b->m) return cf_lua_error(L);
  cf_lua_note_pressure(L);
  return 1;
}

static int model_gc(lua_State *L) {
  model_box *b = luaL_checkudata(L, 1, MODEL_MT);
  cf_qwen2_free(b->m);
  b->m = NULL;
  cf_lua_release_pending(L);
  return 0;
}

static void release_model(void *m) { cf_qwen2_free(m); }

static int model_free(lua_State *L) { /* m:free() and __close */
  model_box *b = luaL_checkudata(L, 1, MODEL_MT);
  cf_qwen2 *m = b->m;
  b->m = NULL;
  cf_lua_release(L, release_model, m);
  return 0;
}

static int model_forward(lua_State *L) {
  cf_qwen2 *m = check_model(L, 1);
  cf_tensor *ids = cf_lua_checktensor(L, 2);
  cf_tensor *out;
  CF_LUA_CORE(L, out = cf_qwen2_logits(m, ids));
  cf_lua_pushtensor(L, out);
  return 1;
}

static int model_hidden(lua_State *L) {
  cf_qwen2 *m = check_model(L, 1);
  cf_tensor *ids = cf_lua_checktensor(L, 2);
  cf_tensor *out;
  CF_LUA_CORE(L, out = cf_qwen2_hidden(m, ids, NULL));
  cf_lua_pushtensor(L, out);
  return 1;
}

/* The length of the list at idx (#, so its __len may run) as a count in [0, INT_MAX], or raise
 * "<fn>: the length (#) of <what> must be ..., got <it>": luaL_len took any integer (a negative
 * one became an allocation of (size_t)n bytes, one past INT_MAX wrapped in the int). */
static int list_len(lua_State *L, int idx, const char *fn, const char *what) {
  lua_len(L, idx);
  int ok = 0;
  lua_Integer n = lua_tointegerx(L, -1, &ok);
  if (!ok || n < 0 || n > INT_MAX)
    luaL_error(L, "%s: the length (#) of %s must be an integer in [0, %d], got %s", fn, what, INT_MAX,
               lua_type(L, -1) == LUA_TNUMBER ? cf_lua_shown(L, -1) : luaL_typename(L, -1));
  lua_pop(L, 1);
  return (int)n;
}

/* A Lua list of n integers at idx into a buffer owned by a userdata pushed on the stack. */
static int64_t *int_list(lua_State *L, int idx, int64_t n, const char *what) {
  if (!lua_istable(L, idx)) luaL_error(L, "logprobs: %s must be a table of integers", what);
  int len = list_len(L, idx, "logprobs", what);
  if (len != n) luaL_error(L, "logprobs: %s has %d entries, the batch has %d rows", what, len, (int)n);
  int64_t *v = lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof *v, 0);
  for (int64_t i = 0; i < n; i++) {
    lua_geti(L, idx, i + 1);
    int ok;
    v[i] = lua_tointegerx(L, -1, &ok);
    lua_pop(L, 1);
    if (!ok) luaL_error(L, "logprobs: %s[%d] is not an integer", what, (int)i + 1);
  }
  return v;
}

static int model_logprobs(lua_State *L) {
  cf_qwen2 *m = check_model(L, 1);
  cf_tensor *ids = cf_lua_checktensor(L, 2);
  if (ids->ndim != 2) luaL_error(L, "logprobs: ids must be [B, T], got %d dims", ids->ndim);
  int64_t B = ids->shape[0];
  double temp = luaL_optnumber(L, 4, 1.0);
  if (!(temp > 0)) luaL_error(L, "logprobs: temperature must be > 0 (got %f)", cf_msgnum(temp));
  lua_settop(L, 5);
  int64_t *plen = int_list(L, 3, B, "prompt_lens");
  int64_t *lens = lua_isnil(L, 5) ? NULL : int_list(L, 5, B, "lens");
  /* the lists' reads may run Lua (an __index, a finalizer) that frees the model or ids: both are
   * looked up again, an error if freed, instead of used after free */
  m = check_model(L, 1);
  ids = cf_lua_checktensor(L, 2);
  cf_tensor *out;
  CF_LUA_CORE(L, out = cf_qwen2_logprobs(m, ids, plen, lens, temp));
  cf_lua_pushtensor(L, out);
  return 1;
}

static double opt_num(lua_State *L, int t, const char *key, double def) {
  lua_getfield(L, t, key);
  double v = def;
  if (!lua_isnil(L, -1)) {  /* a number, not a string that reads as one ("0.5" was taken) */
    if (lua_type(L, -1) != LUA_TNUMBER)
      luaL_error(L, "generate: option %s must be a number (got %s)", key, luaL_typename(L, -1));
    v = lua_tonumber(L, -1);
  }
  lua_pop(L, 1);
  return v;
}

static int64_t opt_int(lua_State *L, int t, const char *key, int64_t def) {
  lua_getfield(L, t, key);
  int64_t v = def;
  if (!lua_isnil(L, -1)) {
    int ok = 0;
    if (lua_type(L, -1) == LUA_TNUMBER) v = lua_tointegerx(L, -1, &ok);
    if (!ok) luaL_error(L, "generate: option %s must be an integer (got %s)", key,
                        lua_type(L, -1) == LUA_TNUMBER ? cf_lua_shown(L, -1) : luaL_typename(L, -1));
  }
  lua_pop(L, 1);
  return v;
}

static const char *finish_name(int f) {
  return f == CF_FINISH_STOP ? "stop" : f == CF_FINISH_LENGTH ? "length" : "interrupted";
}

static int model_generate(lua_State *L) {
  cf_qwen2 *m = check_model(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  if (lua_isnoneornil(L, 3)) lua_newtable(L);
  else luaL_checktype(L, 3, LUA_TTABLE);
  lua_settop(L, 3);
  /* a misspelt option would otherwise be ignored without a word */
  static const char *const known[] = {"n", "max_new_tokens", "top_k", "temperature", "top_p", "seed",
                                      "ignore_eos", "stop", "score_temperature", NULL};
  lua_pushnil(L);
  while (lua_next(L, 3)) {
    lua_pop(L, 1);
    int ok = 0;
    if (lua_type(L, -1) == LUA_TSTRING)
      for (int i = 0; known[i] && !ok; i++) ok = strcmp(lua_tostring(L, -1), known[i]) == 0;
    if (!ok)
      luaL_error(L, "generate: unknown option %s (options: n, max_new_tokens, temperature, top_p, top_k, seed, "
                    "stop, ignore_eos, score_temperature)", lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : luaL_typename(L, -1));
  }
  cf_gen_opts o;
  memset(&o, 0, sizeof o);
  int64_t n = opt_int(L, 3, "n", 1), maxn = opt_int(L, 3, "max_new_tokens", 256);
  int64_t topk = opt_int(L, 3, "top_k", 0);
  if (n < 1 || n > 1 << 20) luaL_error(L, "generate: n must be in [1, 2^20] (got %I)", (lua_Integer)n);
  if (maxn < 0 || maxn > 1 << 24)
    luaL_error(L, "generate: max_new_tokens must be in [0, 2^24] (got %I)", (lua_Integer)maxn);
  if (topk < 0) luaL_error(L, "generate: top_k must be >= 0 (got %I)", (lua_Integer)topk);
  if (topk > 1 << 30) topk = 1 << 30; /* past any vocabulary: keeps every token, as 0 does */
  o.n = (int)n;
  o.max_new_tokens = (int)maxn;
  o.top_k = (int)topk;
  o.temperature = opt_num(L, 3, "temperature", 1.0);
  o.top_p = opt_num(L, 3, "top_p", 1.0);
  /* no seed: one drawn from the global generator (confit.manual_seed), so unseeded calls differ
   * from each other and a script stays reproducible; every call drew with seed 0 before */
  lua_getfield(L, 3, "seed");
  bool seeded = !lua_isnil(L, -1);
  lua_pop(L, 1);
  if (seeded) {
    o.seed = (uint64_t)opt_int(L, 3, "seed", 0);
  } else {
    cf_rng *g = cf_rng_global();
    uint64_t hi = cf_rng_u32(g);
    o.seed = (hi << 31) ^ cf_rng_u32(g);   /* kept below 2^63: a Lua integer's range */
  }
  lua_getfield(L, 3, "score_temperature");
  bool scored = !lua_isnil(L, -1);
  lua_pop(L, 1);
  o.score_temperature = opt_num(L, 3, "score_temperature", 0.0);
  if (scored && !(o.score_temperature > 0 && o.score_temperature < HUGE_VAL))
    luaL_error(L, "generate: score_temperature must be a finite number > 0 (got %f)", cf_msgnum(o.score_temperature));
  lua_getfield(L, 3, "ignore_eos");
  if (!lua_isnil(L, -1) && !lua_isboolean(L, -1)) /* "no" would have counted as true */
    luaL_error(L, "generate: option ignore_eos must be true or false (got %s)", luaL_typename(L, -1));
  o.ignore_eos = lua_toboolean(L, -1);
  lua_pop(L, 1);
  int64_t *stop = NULL;
  lua_getfield(L, 3, "stop");
  if (!lua_isnil(L, -1)) {
    if (!lua_istable(L, -1)) luaL_error(L, "generate: option stop must be a list of token ids (or, through m:generate, single-token strings)");
    o.nstop = list_len(L, -1, "generate", "option stop");
    stop = lua_newuserdatauv(L, (size_t)(o.nstop ? o.nstop : 1) * sizeof *stop, 0);
    for (int i = 0; i < o.nstop; i++) {
      lua_geti(L, -2, i + 1);
      int ok;
      stop[i] = lua_tointegerx(L, -1, &ok);
      if (!ok) luaL_error(L, "generate: stop[%d] is not an integer token id (or, through m:generate, a single-token string)", i + 1);
      m = check_model(L, 1); /* the reads may have run Lua that freed it (see below) */
      if (stop[i] < 0 || stop[i] >= m->cfg.vocab)
        luaL_error(L, "generate: stop[%d] = %I is outside the vocabulary [0, %d)", i + 1, (lua_Integer)stop[i], m->cfg.vocab);
      lua_pop(L, 1);
    }
    o.stop = stop;
  } else {
    lua_pushnil(L);
  }
  /* stack: 4 = stop table or nil, 5 = stop buffer or nil */
  int np = list_len(L, 2, "generate", "the list of prompts");
  int64_t **prompts = lua_newuserdatauv(L, (size_t)(np ? np : 1) * sizeof *prompts, 0);
  int *plen = lua_newuserdatauv(L, (size_t)(np ? np : 1) * sizeof *plen, 0);
  lua_newtable(L);  /* keeps the per-prompt buffers alive */
  int keep = lua_gettop(L);
  for (int p = 0; p < np; p++) {
    lua_geti(L, 2, p + 1);
    if (!lua_istable(L, -1)) luaL_error(L, "generate: prompt %d must be a list of token ids", p + 1);
    char what[32];
    snprintf(what, sizeof what, "prompt %d", p + 1);
    int len = list_len(L, -1, "generate", what);
    int64_t *ids = lua_newuserdatauv(L, (size_t)(len ? len : 1) * sizeof *ids, 0);
    for (int t = 0; t < len; t++) {
      lua_geti(L, -2, t + 1);
      int ok;
      ids[t] = lua_tointegerx(L, -1, &ok);
      if (!ok) luaL_error(L, "generate: prompt %d token %d is not an integer", p + 1, t + 1);
      lua_pop(L, 1);
    }
    lua_rawseti(L, keep, p + 1);
    lua_pop(L, 1);
    prompts[p] = ids;
    plen[p] = len;
  }
  /* max_new_tokens not given: 256, or what the context leaves after the longest prompt (the toy
   * model's 128 positions refused every call that gave no max_new_tokens) */
  lua_getfield(L, 3, "max_new_tokens");
  bool given_max = !lua_isnil(L, -1);
  lua_pop(L, 1);
  m = check_model(L, 1);
  if (!given_max) {
    int longest = 0;
    for (int p = 0; p < np; p++) longest = plen[p] > longest ? plen[p] : longest;
    if (longest >= m->cfg.max_pos)  /* not "+ max_new_tokens 256 exceeds": the user gave none */
      for (int p = 0; p < np; p++)
        if (plen[p] == longest)
          luaL_error(L, "generate: prompt %d has %d tokens, and the model's context (max_position_embeddings %d) "
                        "leaves no position to generate into", p + 1, plen[p], m->cfg.max_pos);
    if (m->cfg.max_pos - longest < o.max_new_tokens) o.max_new_tokens = m->cfg.max_pos - longest;
  }
  cf_gen_sample *s = NULL;
  int rc;
  m = check_model(L, 1); /* the option and prompt reads may have run Lua that freed it */
  CF_LUA_CORE(L, rc = cf_qwen2_generate(m, (const int64_t *const *)prompts, plen, np, &o, &s));
  cf_interrupt_clear();
  if (rc) return cf_lua_error(L);
  int total = np * o.n;
  lua_createtable(L, total, 0);
  for (int i = 0; i < total; i++) {
    lua_createtable(L, 0, 5);
    lua_pushinteger(L, s[i].prompt + 1);
    lua_setfield(L, -2, "prompt");
    lua_createtable(L, s[i].ntokens, 0);
    for (int t = 0; t < s[i].ntokens; t++) { lua_pushinteger(L, s[i].tokens[t]); lua_rawseti(L, -2, t + 1); }
    lua_setfield(L, -2, "tokens");
    lua_createtable(L, s[i].ntokens, 0);
    for (int t = 0; t < s[i].ntokens; t++) { lua_pushnumber(L, s[i].logprobs[t]); lua_rawseti(L, -2, t + 1); }
    lua_setfield(L, -2, "logprobs");
    lua_pushnumber(L, s[i].logprob);
    lua_setfield(L, -2, "logprob");
    if (scored) {
      lua_pushnumber(L, s[i].score_logprob);
      lua_setfield(L, -2, "score_logprob");
    }
    lua_pushstring(L, finish_name(s[i].finish));
    lua_setfield(L, -2, "finish");
    lua_rawseti(L, -2, i + 1);
  }
  cf_gen_samples_free(s, total);
  return 1;
}

static int model_parameters(lua_State *L) {
  cf_qwen2 *m = check_model(L, 1);
  lua_createtable(L, 0, m->nparams);
  for (int i = 0; i < m->nparams; i++) {
    cf_tensor *t = *m->slots[i];
    cf_tensor_retain(t);
    cf_lua_pushtensor(L, t);
    lua_setfield(L, -2, m->names[i]);
  }
  return 1;
}

static int model_param_names(lua_State *L) {
  cf_qwen2 *m = check_model(L, 1);
  lua_createtable(L, m->nparams, 0);
  for (int i = 0; i < m->nparams; i++) { lua_pushstring(L, m->names[i]); lua_rawseti(L, -2, i + 1); }
  return 1;
}

static int model_set_param(lua_State *L) {
  cf_qwen2 *m = check_model(L, 1);
  const char *name = luaL_checkstring(L, 2);
  cf_tensor *t = cf_lua_checktensor(L, 3);
  for (int i = 0; i < m->nparams; i++) {
    if (strcmp(m->names[i], name) != 0) continue;
    if (cf_qwen2_set_param(m, i, t)) return cf_lua_error(L);
    return 0;
  }
  return luaL_error(L, "set_param: the model has no parameter \"%s\"", name);
}

static int model_tie(lua_State *L) {
  /* After loading or replacing parameters: make a tied head alias the embedding again. */
  cf_qwen2 *m = check_model(L, 1);
  if (m->cfg.tie_embeddings && m->lm_head != m->embed) {
    cf_tensor_retain(m->embed);
    cf_tensor_release(m->lm_head);
    m->lm_head = m->embed;
  }
  return 0;
}

static int model_save(lua_State *L) {
  cf_qwen2 *m = check_model(L, 1);
  const char *dir = luaL_checkstring(L, 2);
  int rc;
  CF_LUA_CORE(L, rc = cf_qwen2_save(m, dir));
  if (rc) return cf_lua_error(L);
  lua_pushboolean(L, 1);
  return 1;
}

static int model_config(lua_State *L) {
  cf_qwen2 *m = check_model(L, 1);
  const cf_qwen2_config *c = &m->cfg;
  lua_createtable(L, 0, 16);
  lua_pushstring(L, c->model_type); lua_setfield(L, -2, "model_type");
#define SETI(k, v) (lua_pushinteger(L, v), lua_setfield(L, -2, k))
  SETI("hidden_size", c->hidden);
  SETI("intermediate_size", c->intermediate);
  SETI("num_hidden_layers", c->layers);
  SETI("num_attention_heads", c->heads);
  SETI("num_key_value_heads", c->kv_heads);
  SETI("head_dim", c->head_dim);
  SETI("vocab_size", c->vocab);
  SETI("max_position_embeddings", c->max_pos);
#undef SETI
  lua_pushnumber(L, c->rms_eps); lua_setfield(L, -2, "rms_norm_eps");
  lua_pushnumber(L, c->rope_theta); lua_setfield(L, -2, "rope_theta");
  if (c->rope_scaling[0] > 0) { /* Llama 3.1+ */
    lua_createtable(L, 0, 5);
    lua_pushstring(L, "llama3"); lua_setfield(L, -2, "rope_type");
    lua_pushnumber(L, c->rope_scaling[0]); lua_setfield(L, -2, "factor");
    lua_pushnumber(L, c->rope_scaling[1]); lua_setfield(L, -2, "low_freq_factor");
    lua_pushnumber(L, c->rope_scaling[2]); lua_setfield(L, -2, "high_freq_factor");
    lua_pushnumber(L, c->rope_scaling[3]); lua_setfield(L, -2, "original_max_position_embeddings");
    lua_setfield(L, -2, "rope_scaling");
  }
  lua_pushboolean(L, c->tie_embeddings); lua_setfield(L, -2, "tie_word_embeddings");
  lua_pushboolean(L, c->qkv_bias); lua_setfield(L, -2, "attention_bias");
  lua_createtable(L, c->n_eos, 0);
  for (int i = 0; i < c->n_eos; i++) { lua_pushinteger(L, c->eos[i]); lua_rawseti(L, -2, i + 1); }
  lua_setfield(L, -2, "eos_token_id");
  return 1;
}

/* m:set_recompute(on) -> previous: activation recomputation per layer in the training forward. */
static int model_set_recompute(lua_State *L) {
  cf_qwen2 *m = check_model(L, 1);
  if (lua_type(L, 2) != LUA_TBOOLEAN) /* luaL_checktype's "bad argument #1 to '?'" under a pcall */
    luaL_error(L, "set_recompute: argument #1 (on): expected a boolean, got %s", luaL_typename(L, 2));
  lua_pushboolean(L, m->recompute);
  m->recompute = lua_toboolean(L, 2);
  return 1;
}

static int model_tostring(lua_State *L) {
  model_box *b = luaL_checkudata(L, 1, MODEL_MT);
  if (!b->m) { lua_pushstring(L, "model (freed)"); return 1; }
  const cf_qwen2_config *c = &b->m->cfg;
  int64_t n = 0;
  for (int i = 0; i < b->m->nparams; i++) n += cf_tensor_numel(*b->m->slots[i]);
  lua_pushfstring(L, "model %s: %d layers, hidden %d, %d/%d heads, vocab %d, %I parameters",
                  c->model_type, c->layers, c->hidden, c->heads, c->kv_heads, c->vocab, (lua_Integer)n);
  return 1;
}

void cf_lua_open_model(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"forward", model_forward}, {"hidden", model_hidden}, {"logprobs", model_logprobs},
    {"generate", model_generate}, {"parameters", model_parameters},
    {"param_names", model_param_names}, {"set_param", model_set_param}, {"tie", model_tie},
    {"save", model_save}, {"config", model_config}, {"set_recompute", model_set_recompute},
    {"free", model_free}, {NULL, NULL}};
  cf_lua_resource_mt(L, MODEL_MT, model_gc, model_free, model_tostring, methods);
  lua_pop(L, 1);
  lua_pushcfunction(L, model_load);
  lua_setfield(L, -2, "model_load");
  lua_pushcfunction(L, model_new);
  lua_setfield(L, -2, "model_new");
  lua_pushcfunction(L, model_default_context);
  lua_setfield(L, -2, "model_default_context");
}
