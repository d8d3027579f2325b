/* qwen2.c - the Qwen2 / Llama transformer: config, weights by Hugging Face names, the training
 * forward built from ops, per-sequence log-probs, and saving a folder transformers can load.
 *
 * One layer, as Hugging Face computes it:
 *   h = rmsnorm(x) ; q,k,v = h Wq^T (+bq), h Wk^T (+bk), h Wv^T (+bv)
 *   q,k = rope(q), rope(k) ; a = causal grouped-query attention(q, k, v)
 *   x = x + a Wo^T ; h = rmsnorm(x) ; x = x + (silu(h Wg^T) * (h Wu^T)) Wd^T
 * and the model: embedding -> layers -> final rmsnorm -> LM head (tied to the embedding or not).
 * Everything here goes through cf_op, so it runs on whatever device holds the weights and the
 * autograd tape records it. The fast KV-cache path for sampling lives in generate.c.
 */
#include "qwen2.h"
#include "../autograd.h"
#include "../error.h"
#include "../io/safetensors.h"
#include "../nn_ops.h"
#include "../ops.h"
#include "../rope_freq.h"
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---------------------------------------------------------------- files */

/* The whole file (NUL-terminated), or NULL + CF_ERR naming it: missing, not a regular file (a
 * FIFO is refused, not waited on), unreadable, or out of memory (cf_st_read_file). */
static char *read_text(const char *path, int *missing) {
  char *buf = NULL;
  size_t len = 0;
  if (cf_st_read_file(path, &buf, &len, missing)) return NULL;
  return buf;
}

static int cmp_key(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

/* Whether an object at or under o holds a key twice (*key: such a key). Keys are compared in
 * sorted order (an id2label map of 50,000 keys took 2.9 s pairwise); *oom when that failed. */
static bool dup_keys(const cJSON *o, const char **key, bool *oom) {
  if (cJSON_IsObject(o)) {
    size_t n = 0;
    for (const cJSON *a = o->child; a; a = a->next) n += a->string != NULL;
    if (n > 1) {
      const char **k = malloc(n * sizeof *k);
      if (!k) { *oom = true; return true; }
      n = 0;
      for (const cJSON *a = o->child; a; a = a->next) if (a->string) k[n++] = a->string;
      qsort(k, n, sizeof *k, cmp_key);
      for (size_t i = 1; i < n; i++)
        if (strcmp(k[i - 1], k[i]) == 0) { *key = k[i]; free(k); return true; }
      free(k);
    }
  }
  for (const cJSON *a = o ? o->child : NULL; a; a = a->next)
    if (dup_keys(a, key, oom)) return true;
  return false;
}

/* text as JSON, nothing but whitespace after it ("{...} garbage" was taken), no object holding a
 * key twice at any depth (cJSON keeps both and answers the first; Python's json the last). NULL
 * with *oom when malloc failed (it sets errno), else with *why saying what is wrong and where. */
static cJSON *parse_json(const char *text, bool *oom, char *why, size_t nwhy) {
  errno = 0;
  const char *end = NULL;
  cJSON *o = cJSON_ParseWithOpts(text, &end, 1);
  *oom = !o && errno == ENOMEM;
  const char *key = NULL;
  if (!o && !*oom) {
    size_t at = end && end >= text ? (size_t)(end - text) : 0;
    size_t line = 1;
    for (size_t i = 0; i < at && text[i]; i++) line += text[i] == '\n';
    snprintf(why, nwhy, "not valid JSON (line %zu, byte %zu)", line, at + 1);
  } else if (o && dup_keys(o, &key, oom)) {
    if (!*oom) snprintf(why, nwhy, "the key \"%.100s\" appears twice in one object", key);
    cJSON_Delete(o);
    o = NULL;
  }
  return o;
}

static char *join(const char *dir, const char *name) {
  size_t n = strlen(dir) + strlen(name) + 2;
  char *p = malloc(n);
  if (p) snprintf(p, n, "%s/%s", dir, name);
  return p;
}

/* ---------------------------------------------------------------- config */

static int get_int(cJSON *o, const char *key, int *out, bool required, const char *label) {
  cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  if (!v || cJSON_IsNull(v)) {
    if (required) return CF_ERR("%s: missing field \"%s\"", label, key);
    return 1;
  }
  /* the range first: (int) of a double past INT_MAX is undefined */
  if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0 && v->valuedouble <= INT_MAX) ||
      v->valuedouble != floor(v->valuedouble))
    return CF_ERR("%s: field \"%s\" must be an integer in [0, %d]", label, key, INT_MAX);
  *out = (int)v->valuedouble;
  return 0;
}

/* 1 when key is absent or null (*out kept), 0 when a number (*out set), -1 and a message naming it
 * otherwise ("rope_theta": "1e6" was ignored, the default used) */
static int get_num(cJSON *o, const char *key, double *out, const char *label) {
  cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  if (!v || cJSON_IsNull(v)) return 1;
  if (!cJSON_IsNumber(v)) return CF_ERR("%s: field \"%s\" must be a number", label, key);
  *out = v->valuedouble;
  return 0;
}

/* the same for true / false ("tie_word_embeddings": "true" was read as false) */
static int get_bool(cJSON *o, const char *key, bool *out, const char *label) {
  cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  if (!v || cJSON_IsNull(v)) return 1;
  if (!cJSON_IsBool(v)) return CF_ERR("%s: field \"%s\" must be true or false", label, key);
  *out = cJSON_IsTrue(v);
  return 0;
}

/* An eos id: a non-negative integer that an int holds (3.7 became 3, 1e12 INT_MIN) */
static int eos_id(const cJSON *e, int *out) {
  if (!cJSON_IsNumber(e) || !(e->valuedouble >= 0 && e->valuedouble <= INT_MAX) ||
      e->valuedouble != floor(e->valuedouble))
    return -1;
  *out = (int)e->valuedouble;
  return 0;
}

static int read_eos(cJSON *o, cf_qwen2_config *cfg, const char *label) {
  cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "eos_token_id");
  if (!v || cJSON_IsNull(v)) return 1;
  cfg->n_eos = 0;
  if (cJSON_IsNumber(v)) {
    if (eos_id(v, &cfg->eos[0])) return CF_ERR("%s: eos_token_id must be a token id (an integer >= 0), got %g", label, v->valuedouble);
    cfg->n_eos = 1;
    return 0;
  }
  if (!cJSON_IsArray(v)) return CF_ERR("%s: eos_token_id must be a number or a list", label);
  if (cJSON_GetArraySize(v) > CF_MAX_EOS)
    return CF_ERR("%s: eos_token_id lists %d ids, at most %d are supported", label, cJSON_GetArraySize(v), CF_MAX_EOS);
  cJSON *e;
  cJSON_ArrayForEach(e, v) {
    if (!cJSON_IsNumber(e)) return CF_ERR("%s: eos_token_id entries must be numbers", label);
    if (eos_id(e, &cfg->eos[cfg->n_eos]))
      return CF_ERR("%s: eos_token_id entry %d must be a token id (an integer >= 0), got %g", label, cfg->n_eos + 1,
                    e->valuedouble);
    cfg->n_eos++;
  }
  return 0;
}

/* eos ids the model cannot emit (past vocab_size) would never stop a generation */
static int check_eos(const cf_qwen2_config *cfg, const char *label) {
  for (int i = 0; i < cfg->n_eos; i++)
    if (cfg->eos[i] >= cfg->vocab)
      return CF_ERR("%s: eos_token_id %d is not below vocab_size %d: the model cannot emit it", label, cfg->eos[i],
                    cfg->vocab);
  return 0;
}

int cf_qwen2_default_max_pos(const char *model_type) {
  /* transformers' defaults when the field is absent: LlamaConfig 2048, Qwen2Config 32768 */
  if (model_type && strcmp(model_type, "llama") == 0) return 2048;
  if (model_type && strcmp(model_type, "qwen2") == 0) return 32768;
  return 0;
}

int cf_qwen2_config_parse(const char *json, const char *label, cf_qwen2_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  bool oom;
  char why[200];
  cJSON *o = parse_json(json, &oom, why, sizeof why);
  if (oom) return CF_ERR("%s: out of memory parsing it", label);
  if (!o) return CF_ERR("%s: %s", label, why);
  if (!cJSON_IsObject(o)) {
    cJSON_Delete(o);
    return CF_ERR("%s: not a JSON object", label);
  }
  int rc = -1;
  cJSON *mt = cJSON_GetObjectItemCaseSensitive(o, "model_type");
  if (!cJSON_IsString(mt)) { CF_ERR("%s: missing field \"model_type\"", label); goto done; }
  if (strcmp(mt->valuestring, "qwen2") != 0 && strcmp(mt->valuestring, "llama") != 0) {
    CF_ERR("%s: model_type \"%s\" is not supported (qwen2 or llama)", label, mt->valuestring);
    goto done;
  }
  snprintf(cfg->model_type, sizeof cfg->model_type, "%s", mt->valuestring);
  if (get_int(o, "hidden_size", &cfg->hidden, true, label) ||
      get_int(o, "intermediate_size", &cfg->intermediate, true, label) ||
      get_int(o, "num_hidden_layers", &cfg->layers, true, label) ||
      get_int(o, "num_attention_heads", &cfg->heads, true, label) ||
      get_int(o, "vocab_size", &cfg->vocab, true, label))
    goto done;
  cfg->kv_heads = cfg->heads;
  if (get_int(o, "num_key_value_heads", &cfg->kv_heads, false, label) < 0) goto done;
  if (cfg->heads == 0 || cfg->hidden == 0 || cfg->kv_heads == 0 || cfg->vocab == 0) {
    CF_ERR("%s: hidden_size, num_attention_heads, num_key_value_heads and vocab_size must be > 0", label);
    goto done;
  }
  cfg->head_dim = cfg->hidden / cfg->heads;
  if (get_int(o, "head_dim", &cfg->head_dim, false, label) < 0) goto done;
  if (cfg->heads % cfg->kv_heads != 0 || cfg->head_dim % 2 != 0 || cfg->head_dim == 0) {
    CF_ERR("%s: num_attention_heads (%d) must be a multiple of num_key_value_heads (%d) and "
           "head_dim (%d) even", label, cfg->heads, cfg->kv_heads, cfg->head_dim);
    goto done;
  }
  cfg->max_pos = cf_qwen2_default_max_pos(cfg->model_type);
  if (get_int(o, "max_position_embeddings", &cfg->max_pos, false, label) < 0) goto done;
  if (cfg->max_pos == 0) { CF_ERR("%s: max_position_embeddings must be > 0", label); goto done; }
  cfg->rms_eps = 1e-6;
  cfg->rope_theta = 10000.0;
  if (get_num(o, "rms_norm_eps", &cfg->rms_eps, label) < 0 || get_num(o, "rope_theta", &cfg->rope_theta, label) < 0)
    goto done;
  for (int i = 0; i < 2; i++) {     /* null or an object: a string here was ignored */
    const char *k = i ? "rope_parameters" : "rope_scaling";
    cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (v && !cJSON_IsNull(v) && !cJSON_IsObject(v)) { CF_ERR("%s: field \"%s\" must be an object or null", label, k); goto done; }
  }
  cJSON *rp = cJSON_GetObjectItemCaseSensitive(o, "rope_parameters");
  if (cJSON_IsObject(rp) && get_num(rp, "rope_theta", &cfg->rope_theta, label) < 0) goto done;
  if (!(cfg->rms_eps > 0 && cfg->rms_eps < 1) || !(cfg->rope_theta > 1 && cfg->rope_theta < 1e30)) {
    CF_ERR("%s: rms_norm_eps (%g) must be in (0, 1) and rope_theta (%g) in (1, 1e30)", label, cfg->rms_eps,
           cfg->rope_theta);
    goto done;
  }
  const char *scaling_keys[] = {"rope_scaling", "rope_parameters"};
  for (int i = 0; i < 2; i++) {
    cJSON *rs = cJSON_GetObjectItemCaseSensitive(o, scaling_keys[i]);
    if (!cJSON_IsObject(rs)) continue;
    cJSON *ty = cJSON_GetObjectItemCaseSensitive(rs, "rope_type");
    if (!ty || cJSON_IsNull(ty)) ty = cJSON_GetObjectItemCaseSensitive(rs, "type");
    if (ty && !cJSON_IsNull(ty) && !cJSON_IsString(ty)) {
      CF_ERR("%s: %s: rope_type must be a string", label, scaling_keys[i]);
      goto done;
    }
    if (!ty || cJSON_IsNull(ty)) {
      /* no type: plain RoPE, unless it carries a scaling's numbers (then what was meant is unknown) */
      if (cJSON_GetObjectItemCaseSensitive(rs, "factor")) {
        CF_ERR("%s: %s has a factor but no rope_type (\"llama3\" is supported)", label, scaling_keys[i]);
        goto done;
      }
      continue;
    }
    if (strcmp(ty->valuestring, "default") == 0) continue;
    if (strcmp(ty->valuestring, "llama3") != 0) {
      CF_ERR("%s: %s: rope type \"%s\" is not supported (default RoPE, or Llama 3's \"llama3\" scaling)", label,
             scaling_keys[i], ty->valuestring);
      goto done;
    }
    /* Llama 3.1+: the four numbers, all required */
    const char *keys[4] = {"factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"};
    for (int j = 0; j < 4; j++)
      if (get_num(rs, keys[j], &cfg->rope_scaling[j], label)) {
        CF_ERR("%s: %s of rope type \"llama3\" needs a number \"%s\"", label, scaling_keys[i], keys[j]);
        goto done;
      }
    cf_rope_scaling sc = {cfg->rope_scaling[0], cfg->rope_scaling[1], cfg->rope_scaling[2], cfg->rope_scaling[3]};
    const char *bad = cfg->rope_scaling[0] == 0 ? "factor must be > 0" : cf_rope_scaling_check(sc);
    if (bad) {
      CF_ERR("%s: %s (rope type \"llama3\"): %s", label, scaling_keys[i], bad);
      goto done;
    }
  }
  /* what this transformer does not compute is refused, not approximated */
  cJSON *act = cJSON_GetObjectItemCaseSensitive(o, "hidden_act");
  if (act && (!cJSON_IsString(act) || strcmp(act->valuestring, "silu") != 0)) {
    CF_ERR("%s: hidden_act \"%s\" is not supported (only silu)", label,
           cJSON_IsString(act) ? act->valuestring : "(not a string)");
    goto done;
  }
  bool mlp_bias = false, sliding = false;
  cfg->tie_embeddings = false;
  cfg->qkv_bias = strcmp(cfg->model_type, "qwen2") == 0;
  if (get_bool(o, "mlp_bias", &mlp_bias, label) < 0 || get_bool(o, "use_sliding_window", &sliding, label) < 0 ||
      get_bool(o, "tie_word_embeddings", &cfg->tie_embeddings, label) < 0 ||
      get_bool(o, "attention_bias", &cfg->qkv_bias, label) < 0)
    goto done;
  if (mlp_bias) {
    CF_ERR("%s: mlp_bias = true is not supported (MLP projections without bias)", label);
    goto done;
  }
  /* Llama's attention_bias puts a bias on o_proj too, which this transformer does not compute */
  if (cfg->qkv_bias && strcmp(cfg->model_type, "llama") == 0) {
    CF_ERR("%s: attention_bias = true is not supported for llama (its o_proj bias is not computed)", label);
    goto done;
  }
  if (sliding) {
    CF_ERR("%s: use_sliding_window = true is not supported (full causal attention only)", label);
    goto done;
  }
  if (read_eos(o, cfg, label) < 0 || check_eos(cfg, label)) goto done;
  rc = 0;
done:
  cJSON_Delete(o);
  return rc;
}

int cf_qwen2_config_load(const char *dir, cf_qwen2_config *cfg) {
  char *path = join(dir, "config.json");
  if (!path) return CF_ERR("%s: out of memory", dir);
  char *text = read_text(path, NULL);
  int rc = text ? cf_qwen2_config_parse(text, path, cfg) : -1;
  free(text);
  free(path);
  if (rc) return rc;
  path = join(dir, "generation_config.json");
  if (!path) return CF_ERR("%s: out of memory", dir);
  int missing = 0;
  text = read_text(path, &missing);
  if (text) {
    bool oom;
    char why[200];
    cJSON *o = parse_json(text, &oom, why, sizeof why);
    if (!o) rc = oom ? CF_ERR("%s: out of memory parsing it", path) : CF_ERR("%s: %s", path, why);
    else if (read_eos(o, cfg, path) < 0 || check_eos(cfg, path)) rc = -1;
    cJSON_Delete(o);
  } else if (!missing) {
    rc = -1;
  }
  if (rc == 0) cf_error_clear();
  free(text);
  free(path);
  return rc;
}

/* text to path atomically: a fresh temporary file (jsonio's naming, never through a symlink),
 * fsync, rename, directory fsync (cf_st_write_file). */
static int write_atomic(const char *path, const char *text) {
  if (cf_st_write_file(path, text, strlen(text))) return cf_error_prefix("cannot write %s: ", path);
  return 0;
}

/* v as a JSON number written as a float ("8.0", not "8"): transformers checks some config
 * fields (rope_scaling's) for floats. Shortest form that reads back exactly. */
static cJSON *add_float(cJSON *o, const char *key, double v) {
  char b[40];
  snprintf(b, sizeof b, "%.15g", v);
  if (strtod(b, NULL) != v) snprintf(b, sizeof b, "%.17g", v);
  if (!strpbrk(b, ".eEn")) strcat(b, ".0");
  return cJSON_AddRawToObject(o, key, b);
}

int cf_qwen2_config_save(const cf_qwen2_config *c, const char *dir) {
  cJSON *o = cJSON_CreateObject();
  bool ok = o != NULL; /* every field added, or "out of memory" below */
#define ADD(x) (ok = ok && (x) != NULL)
  cJSON *arch = cJSON_AddArrayToObject(o, "architectures");
  bool qwen = strcmp(c->model_type, "qwen2") == 0;
  ADD(arch);
  if (ok) ok = cJSON_AddItemToArray(arch, cJSON_CreateString(qwen ? "Qwen2ForCausalLM" : "LlamaForCausalLM"));
  ADD(cJSON_AddStringToObject(o, "model_type", c->model_type));
  ADD(cJSON_AddNumberToObject(o, "hidden_size", c->hidden));
  ADD(cJSON_AddNumberToObject(o, "intermediate_size", c->intermediate));
  ADD(cJSON_AddNumberToObject(o, "num_hidden_layers", c->layers));
  ADD(cJSON_AddNumberToObject(o, "num_attention_heads", c->heads));
  ADD(cJSON_AddNumberToObject(o, "num_key_value_heads", c->kv_heads));
  ADD(cJSON_AddNumberToObject(o, "head_dim", c->head_dim));
  ADD(cJSON_AddNumberToObject(o, "vocab_size", c->vocab));
  ADD(cJSON_AddNumberToObject(o, "max_position_embeddings", c->max_pos));
  ADD(cJSON_AddNumberToObject(o, "rms_norm_eps", c->rms_eps));
  ADD(add_float(o, "rope_theta", c->rope_theta));
  if (c->rope_scaling[0] > 0) {
    cJSON *rs = cJSON_AddObjectToObject(o, "rope_scaling");
    ADD(rs);
    if (ok) {
      ADD(cJSON_AddStringToObject(rs, "rope_type", "llama3"));
      ADD(add_float(rs, "factor", c->rope_scaling[0]));
      ADD(add_float(rs, "low_freq_factor", c->rope_scaling[1]));
      ADD(add_float(rs, "high_freq_factor", c->rope_scaling[2]));
      ADD(cJSON_AddNumberToObject(rs, "original_max_position_embeddings", c->rope_scaling[3]));
    }
  }
  ADD(cJSON_AddBoolToObject(o, "tie_word_embeddings", c->tie_embeddings));
  /* Qwen2 has q/k/v biases unless it says otherwise: written when it does, so it loads back */
  if (!qwen || !c->qkv_bias) ADD(cJSON_AddBoolToObject(o, "attention_bias", c->qkv_bias));
  ADD(cJSON_AddStringToObject(o, "hidden_act", "silu"));
  ADD(cJSON_AddStringToObject(o, "torch_dtype", "float32"));
  if (c->n_eos == 1) ADD(cJSON_AddNumberToObject(o, "eos_token_id", c->eos[0]));
  else if (c->n_eos > 1) {
    cJSON *e = cJSON_AddArrayToObject(o, "eos_token_id");
    ADD(e);
    for (int i = 0; ok && i < c->n_eos; i++) ok = cJSON_AddItemToArray(e, cJSON_CreateNumber(c->eos[i]));
  }
#undef ADD
  if (!ok) {
    cJSON_Delete(o);
    return CF_ERR("saving %s/config.json: out of memory", dir);
  }
  char *text = cJSON_Print(o);
  cJSON_Delete(o);
  char *path = join(dir, "config.json");
  int rc = text && path ? write_atomic(path, text) : CF_ERR("saving %s/config.json: out of memory", dir);
  free(text);
  free(path);
  if (rc || c->n_eos == 0) return rc;
  /* every eos id written, or "out of memory": never a generation_config.json missing some */
  o = cJSON_CreateObject();
  ok = o != NULL;
  if (ok && c->n_eos == 1) ok = cJSON_AddNumberToObject(o, "eos_token_id", c->eos[0]) != NULL;
  else if (ok) {
    cJSON *e = cJSON_AddArrayToObject(o, "eos_token_id");
    ok = e != NULL;
    for (int i = 0; ok && i < c->n_eos; i++) ok = cJSON_AddItemToArray(e, cJSON_CreateNumber(c->eos[i]));
  }
  text = ok ? cJSON_Print(o) : NULL;
  cJSON_Delete(o);
  path = join(dir, "generation_config.json");
  rc = text && path ? write_atomic(path, text) : CF_ERR("saving %s/generation_config.json: out of memory", dir);
  free(text);
  free(path);
  return rc;
}

/* ---------------------------------------------------------------- parameters */

static int add_param(cf_qwen2 *m, const char *name, cf_tensor **slot) {
  char **names = realloc(m->names, (size_t)(m->nparams + 1) * sizeof *names);
  if (!names) return CF_ERR("out of memory");
  m->names = names;
  cf_tensor ***slots = realloc(m->slots, (size_t)(m->nparams + 1) * sizeof *slots);
  if (!slots) return CF_ERR("out of memory");
  m->slots = slots;
  m->names[m->nparams] = strdup(name);
  if (!m->names[m->nparams]) return CF_ERR("out of memory");
  m->slots[m->nparams] = slot;
  m->nparams++;
  return 0;
}

/* Register every parameter name with its slot and expected shape, allocating zeros. */
static int build_params(cf_qwen2 *m) {
  const cf_qwen2_config *c = &m->cfg;
  int64_t D = c->hidden, F = c->intermediate, V = c->vocab;
  int64_t Q = (int64_t)c->heads * c->head_dim, KV = (int64_t)c->kv_heads * c->head_dim;
  char name[128];
#define PARAM(slot, nd, ...)                                              \
  do {                                                                    \
    int64_t shp[] = {__VA_ARGS__};                                        \
    if (add_param(m, name, &(slot))) return -1;                           \
    (slot) = cf_tensor_zeros(nd, shp, CF_DTYPE_F32);                      \
    if (!(slot)) return -1;                                               \
  } while (0)
  snprintf(name, sizeof name, "model.embed_tokens.weight");
  PARAM(m->embed, 2, V, D);
  for (int l = 0; l < c->layers; l++) {
    cf_qwen2_layer *L = &m->layer[l];
#define LNAME(s) snprintf(name, sizeof name, "model.layers.%d.%s", l, s)
    LNAME("input_layernorm.weight"); PARAM(L->in_norm, 1, D);
    LNAME("self_attn.q_proj.weight"); PARAM(L->q_w, 2, Q, D);
    LNAME("self_attn.k_proj.weight"); PARAM(L->k_w, 2, KV, D);
    LNAME("self_attn.v_proj.weight"); PARAM(L->v_w, 2, KV, D);
    if (c->qkv_bias) {
      LNAME("self_attn.q_proj.bias"); PARAM(L->q_b, 1, Q);
      LNAME("self_attn.k_proj.bias"); PARAM(L->k_b, 1, KV);
      LNAME("self_attn.v_proj.bias"); PARAM(L->v_b, 1, KV);
    }
    LNAME("self_attn.o_proj.weight"); PARAM(L->o_w, 2, D, Q);
    LNAME("post_attention_layernorm.weight"); PARAM(L->post_norm, 1, D);
    LNAME("mlp.gate_proj.weight"); PARAM(L->gate_w, 2, F, D);
    LNAME("mlp.up_proj.weight"); PARAM(L->up_w, 2, F, D);
    LNAME("mlp.down_proj.weight"); PARAM(L->down_w, 2, D, F);
#undef LNAME
  }
  snprintf(name, sizeof name, "model.norm.weight");
  PARAM(m->final_norm, 1, D);
  if (!c->tie_embeddings) {
    snprintf(name, sizeof name, "lm_head.weight");
    PARAM(m->lm_head, 2, V, D);
  }
#undef PARAM
  return 0;
}

cf_qwen2 *cf_qwen2_new(const cf_qwen2_config *cfg) {
  cf_qwen2 *m = calloc(1, sizeof *m);
  if (!m) { CF_ERR("out of memory"); return NULL; }
  m->cfg = *cfg;
  m->layer = calloc((size_t)(cfg->layers ? cfg->layers : 1), sizeof *m->layer);
  if (!m->layer) CF_ERR("out of memory for the %d layers of the model", cfg->layers);
  if (!m->layer || build_params(m)) { cf_qwen2_free(m); return NULL; }
  if (cfg->tie_embeddings) { cf_tensor_retain(m->embed); m->lm_head = m->embed; }
  return m;
}

void cf_qwen2_free(cf_qwen2 *m) {
  if (!m) return;
  /* A tied head is an extra reference to the embedding, not a slot of its own. */
  if (m->cfg.tie_embeddings) { cf_tensor_release(m->lm_head); m->lm_head = NULL; }
  for (int i = 0; i < m->nparams; i++) {
    cf_tensor_release(*m->slots[i]);
    *m->slots[i] = NULL;
    free(m->names[i]);
  }
  free(m->names);
  free(m->slots);
  free(m->layer);
  free(m);
}

int cf_qwen2_replace_param(cf_qwen2 *m, int i, cf_tensor *t) {
  if (i < 0 || i >= m->nparams) return CF_ERR("set_param: index %d out of range", i);
  cf_tensor *old = *m->slots[i];
  if (old && !cf_same_shape(old, t)) {
    char a[128], b[128];
    return CF_ERR("%s: expected shape %s, got %s", m->names[i], cf_shape_str(old, a, sizeof a),
                  cf_shape_str(t, b, sizeof b));
  }
  cf_tensor_retain(t);
  *m->slots[i] = t;
  if (m->cfg.tie_embeddings && m->slots[i] == &m->embed) {  /* the tied head follows */
    cf_tensor_retain(t);
    cf_tensor_release(m->lm_head);
    m->lm_head = t;
  }
  cf_tensor_release(old);
  return 0;
}

int cf_qwen2_set_param(cf_qwen2 *m, int i, cf_tensor *t) {
  if (i < 0 || i >= m->nparams) return CF_ERR("set_param: index %d out of range", i);
  if (!t || !t->storage) return CF_ERR("set_param: %s: the tensor is missing or freed", m->names[i]);
  cf_tensor *old = *m->slots[i];
  char a[128];
  /* the model's layout is its current parameters': f32 on the CPU; bf16 or f32 on the GPU, one
   * dtype for all (model_cuda.h). A new parameter must match it: ops refuse mixed dtypes and
   * devices, and the generators read the weights as they are. */
  cf_device dev = old ? cf_tensor_device(old) : CF_DEVICE_CPU;
  cf_dtype dt = old ? old->dtype : CF_DTYPE_F32;
  if (dev == CF_DEVICE_CPU) dt = CF_DTYPE_F32;
  if (cf_tensor_device(t) != dev || t->dtype != dt)
    return CF_ERR("set_param: %s: the model holds its parameters as %s on %s, got %s %s on %s (convert it first: "
                  "t:to(\"%s\", \"%s\"))", m->names[i], cf_dtype_name(dt), cf_device_name(dev), cf_dtype_name(t->dtype),
                  cf_shape_str(t, a, sizeof a), cf_device_name(cf_tensor_device(t)), cf_device_name(dev),
                  cf_dtype_name(dt));
  if (!cf_tensor_is_contiguous(t))
    return CF_ERR("set_param: %s: the tensor %s is not contiguous (a transposed or sliced view); pass "
                  "t:contiguous()", m->names[i], cf_shape_str(t, a, sizeof a));
  if (cf_qwen2_replace_param(m, i, t)) return cf_error_prefix("set_param: ");
  return 0;
}

/* ---------------------------------------------------------------- loading */

/* Read n bytes at offset off of fd into dst (pread, EINTR retried); a short read means the file
 * shrank since it was measured. */
static int read_at(int fd, const char *path, const char *name, void *dst, size_t n, size_t off) {
  unsigned char *d = dst;
  while (n > 0) {
    ssize_t r = pread(fd, d, n, (off_t)off);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return CF_ERR("%s: tensor \"%s\": cannot read: %s", path, name, strerror(errno));
    if (r == 0) return CF_ERR("%s: tensor \"%s\": the file ended early (did it change while loading?)", path, name);
    d += r;
    n -= (size_t)r;
    off += (size_t)r;
  }
  return 0;
}

#define LOAD_CHUNK ((size_t)4 << 20) /* bytes read at a time for a tensor that is widened to f32 */

/* Entry e (at byte offset off of the file) into the f32 tensor out: an F32 tensor is read into
 * place, any other dtype in chunks of LOAD_CHUNK through buf and widened by cf_st_to_f32. */
static int read_tensor(int fd, const char *path, const cf_st_entry *e, size_t off, float *out, unsigned char *buf) {
  if (strcmp(e->dtype, "F32") == 0) return read_at(fd, path, e->name, out, e->nbytes, off);
  size_t el = cf_st_dtype_size(e->dtype), per = LOAD_CHUNK / el;
  int64_t numel = cf_st_numel(e);
  for (int64_t i = 0; i < numel; i += (int64_t)per) {
    size_t k = (size_t)(numel - i) < per ? (size_t)(numel - i) : per;
    if (read_at(fd, path, e->name, buf, k * el, off + (size_t)i * el)) return -1;
    cf_st_entry part = *e;      /* the chunk as an entry of its own: k elements at buf */
    part.ndim = 1;
    part.shape[0] = (int64_t)k;
    part.data = buf;
    part.nbytes = k * el;
    if (cf_st_to_f32(&part, out + i)) return cf_error_prefix("%s: tensor \"%s\": ", path, e->name);
  }
  return 0;
}

/* "[a x b x ...]": a checkpoint entry's shape, as cf_shape_str writes a tensor's. */
static const char *entry_shape(const cf_st_entry *e, char *g, size_t n) {
  size_t k = 0;
  g[k++] = '[';
  for (int d = 0; d < e->ndim && k + 24 < n; d++)
    k += (size_t)snprintf(g + k, n - k, "%s%lld", d ? " x " : "", (long long)e->shape[d]);
  snprintf(g + k, n - k, "]");
  return g;
}

/* A weight that holds a NaN or an infinity is refused at the load, naming it, how many and the
 * first: loaded, it made every forward NaN and the training's first loss the first sign (before
 * the twenty-second session). The loaded f32 values go through the safetensors reader's own scan
 * (cf_st_nonfinite, as confit.safetensors_nonfinite checks a checkpoint: about 0.1 s per GB on
 * the development machine); only a tensor it flags is walked again to count and place them. */
static int nonfinite_problem(const char *path, const char *name, const float *x, int64_t n) {
  cf_st_entry f32 = {.name = (char *)name, .dtype = "F32", .ndim = 1, .shape = {n}, .data = x,
                     .nbytes = (size_t)n * sizeof *x};
  if (!cf_st_nonfinite(&f32)) return 0;
  int64_t bad = 0, first = -1;
  for (int64_t i = 0; i < n; i++)
    if (!isfinite(x[i])) { bad++; if (first < 0) first = i; }
  const char *what = isnan(x[first]) ? "NaN" : x[first] > 0 ? "inf" : "-inf";
  /* the element counted from 1 in row-major order, as Lua counts */
  return CF_ERR("%s: tensor \"%s\" holds %lld non-finite value%s (the first, element %lld of %lld counting from "
                "1, is %s): a checkpoint saved after the training diverged?", path, name, (long long)bad,
                bad == 1 ? "" : "s", (long long)first + 1, (long long)n, what);
}

/* One shard into m's parameters. The header is parsed from a read-only mapping; the tensors'
 * bytes are read with pread into the model's own f32 parameters (other dtypes through a 4 MB
 * buffer, widened by cf_st_to_f32), so nothing of the model aliases the file: a file replaced or cut
 * after the load changes nothing and cannot fault (a mapping used in place raised SIGBUS when
 * the file was truncated, and showed another file's bytes when it was overwritten in place), and
 * the page cache is never counted twice in the resident set. */
static int load_shard(cf_qwen2 *m, char **files, int shard, int *seen) {
  const char *path = files[shard];
  /* O_NONBLOCK: a FIFO at path must not block the open; only a regular file is read */
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return CF_ERR("cannot open %s: %s", path, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0) { int err = errno; close(fd); return CF_ERR("cannot stat %s: %s", path, strerror(err)); }
  if (!S_ISREG(st.st_mode)) { close(fd); return CF_ERR("%s: not a regular file", path); }
  size_t len = (size_t)st.st_size;
  void *base = len ? mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0) : NULL;
  if (len && base == MAP_FAILED) { int err = errno; close(fd); return CF_ERR("cannot map %s: %s", path, strerror(err)); }
  cf_st_file *f = cf_st_open_memory(base, len, path);
  unsigned char *buf = f ? malloc(LOAD_CHUNK) : NULL;
  int rc = 0;
  if (!f) rc = -1;
  else if (!buf) rc = CF_ERR("out of memory");
  for (size_t i = 0; i < cf_st_count(f) && rc == 0; i++) {
    const cf_st_entry *e = cf_st_get(f, i);
    int idx = -1;
    for (int p = 0; p < m->nparams; p++) if (strcmp(m->names[p], e->name) == 0) { idx = p; break; }
    if (idx < 0) {
      /* Tied checkpoints may still carry lm_head.weight (unread: the embedding is the head), but
       * only of the embedding's shape: another one means config.json's tie_word_embeddings does
       * not describe these weights (it was skipped unseen before the twenty-second session).
       * Rotary caches are not parameters. */
      if (strcmp(e->name, "lm_head.weight") == 0) {
        if (e->ndim == 2 && e->shape[0] == m->cfg.vocab && e->shape[1] == m->cfg.hidden) continue;
        char g[96];
        rc = CF_ERR("%s: tensor \"lm_head.weight\" has the shape %s, but config.json ties the LM head to the "
                    "embedding [%d x %d] (tie_word_embeddings = true): they do not belong together",
                    path, entry_shape(e, g, sizeof g), m->cfg.vocab, m->cfg.hidden);
        break;
      }
      if (strstr(e->name, "rotary_emb")) continue;
      rc = CF_ERR("%s: unexpected tensor \"%s\" for a %s model", path, e->name, m->cfg.model_type);
      break;
    }
    if (seen[idx]) { /* the later shard's copy silently won until the seventeenth session */
      rc = CF_ERR("%s: tensor \"%s\" is also in %s: which one is the model's?", path, e->name, files[seen[idx] - 1]);
      break;
    }
    cf_tensor *want = *m->slots[idx];
    bool shape_ok = e->ndim == want->ndim;
    for (int d = 0; shape_ok && d < e->ndim; d++) shape_ok = e->shape[d] == want->shape[d];
    if (!shape_ok) {
      char b[128], g[160];
      rc = CF_ERR("%s: tensor \"%s\" has the shape %s, config.json gives %s", path, e->name,
                  entry_shape(e, g, sizeof g), cf_shape_str(want, b, sizeof b));
      break;
    }
    /* into the parameter cf_qwen2_new made (f32, contiguous, on the CPU): no second copy of the
     * largest tensor while it is read */
    size_t off = (size_t)((const unsigned char *)e->data - (const unsigned char *)base);
    if (e->nbytes && read_tensor(fd, path, e, off, cf_tensor_data(want), buf)) { rc = -1; break; }
    if (nonfinite_problem(path, e->name, cf_tensor_data(want), cf_st_numel(e))) { rc = -1; break; }
    seen[idx] = shard + 1;
  }
  free(buf);
  cf_st_close(f);
  if (len) munmap(base, len);
  close(fd);
  return rc;
}

/* How many layers the checkpoint's tensor names cover (the largest N of "model.layers.N." plus
 * one), from the shards' headers alone; -1 when a header cannot be read. *elements: how many
 * numbers all its tensors hold. */
static int checkpoint_layers(char **files, size_t nfiles, double *elements) {
  int most = 0;
  *elements = 0;
  for (size_t i = 0; i < nfiles; i++) {
    cf_st_file *f = cf_st_open(files[i]);
    if (!f) return -1;
    for (size_t k = 0; k < cf_st_count(f); k++) {
      /* the layer number read with strtol, capped: sscanf's %d of "model.layers.2147483647." was
       * INT_MAX + 1 here, and of a longer number undefined */
      const char *name = cf_st_get(f, k)->name, *pre = "model.layers.";
      if (strncmp(name, pre, strlen(pre)) == 0 && name[strlen(pre)] >= '0' && name[strlen(pre)] <= '9') {
        char *end;
        errno = 0;
        long n = strtol(name + strlen(pre), &end, 10);
        if (*end == '.' && errno == 0 && n >= most) most = n < INT_MAX ? (int)n + 1 : INT_MAX;
        else if (*end == '.' && errno == ERANGE) most = INT_MAX;
      }
      *elements += (double)cf_st_numel(cf_st_get(f, k));
    }
    cf_st_close(f);
  }
  return most;
}

double cf_qwen2_numel(const cf_qwen2_config *c) {
  double D = c->hidden, q = (double)c->heads * c->head_dim, kv = (double)c->kv_heads * c->head_dim;
  double layer = D * q * 2 + D * kv * 2 + D * (double)c->intermediate * 3 + 2 * D + (c->qkv_bias ? q + 2 * kv : 0);
  return (double)c->vocab * D * (c->tie_embeddings ? 1 : 2) + (double)c->layers * layer + D;
}

cf_qwen2 *cf_qwen2_load(const char *dir) {
  cf_qwen2_config cfg;
  if (cf_qwen2_config_load(dir, &cfg)) return NULL;
  char **files = NULL;
  size_t nfiles = 0;
  if (cf_st_index_files(dir, &files, &nfiles)) return NULL;
  /* a config.json with more layers than its checkpoint is refused before the model's memory
   * (every layer's, in f32) is allocated */
  double elements, want = cf_qwen2_numel(&cfg);
  int have = checkpoint_layers(files, nfiles, &elements);
  if (have >= 0 && have < cfg.layers) {
    CF_ERR("%s: the checkpoint has no tensor \"model.layers.%d.*\" (config.json: num_hidden_layers = %d; "
           "the checkpoint holds %d layers)", dir, have, cfg.layers, have);
    have = -1;
  } else if (have >= 0 && want > 2 * elements + 1e6) {
    /* and one whose sizes ask for far more parameters than the checkpoint has numbers (a
     * garbled head_dim or intermediate_size would otherwise fail as an allocation of terabytes;
     * a tensor or two missing is named by the load below) */
    CF_ERR("%s: config.json describes %.0f parameters (hidden_size %d, intermediate_size %d, "
           "%d heads of head_dim %d, %d kv heads, vocab_size %d) but the checkpoint holds %.0f: they do not "
           "belong together", dir, want, cfg.hidden, cfg.intermediate, cfg.heads, cfg.head_dim, cfg.kv_heads,
           cfg.vocab, elements);
    have = -1;
  }
  cf_qwen2 *m = have >= 0 ? cf_qwen2_new(&cfg) : NULL;
  int *seen = m ? calloc((size_t)m->nparams, sizeof *seen) : NULL; /* the shard a parameter came from, + 1 */
  if (!seen) {
    if (m && !seen) CF_ERR("out of memory");
    cf_st_index_free(files, nfiles);
    cf_qwen2_free(m);
    return NULL;
  }
  int rc = 0;
  for (size_t i = 0; i < nfiles && rc == 0; i++) rc = load_shard(m, files, (int)i, seen);
  cf_st_index_free(files, nfiles);
  for (int p = 0; p < m->nparams && rc == 0; p++)
    if (!seen[p]) rc = CF_ERR("%s: the checkpoint has no tensor \"%s\"", dir, m->names[p]);
  free(seen);
  if (rc) { cf_qwen2_free(m); return NULL; }
  if (cfg.tie_embeddings && m->lm_head != m->embed) {
    cf_tensor_retain(m->embed);
    cf_tensor_release(m->lm_head);
    m->lm_head = m->embed;
  }
  return m;
}

/* ---------------------------------------------------------------- saving */

int cf_qwen2_save(const cf_qwen2 *m, const char *dir) {
  if (mkdir(dir, 0777) != 0 && errno != EEXIST) return CF_ERR("cannot create %s: %s", dir, strerror(errno));
  if (cf_qwen2_config_save(&m->cfg, dir)) return -1;
  cf_st_entry *e = calloc((size_t)m->nparams, sizeof *e);
  cf_tensor **held = calloc((size_t)m->nparams, sizeof *held);
  int rc = 0;
  if (!e || !held) { free(e); free(held); return CF_ERR("out of memory"); }
  for (int i = 0; i < m->nparams && rc == 0; i++) {
    cf_tensor *t = *m->slots[i];
    cf_tensor *c = t->dtype == CF_DTYPE_F32 && cf_tensor_device(t) == CF_DEVICE_CPU
                       ? cf_tensor_contiguous(t) : NULL;
    if (!c) {
      cf_tensor *cpu = cf_tensor_device(t) == CF_DEVICE_CPU ? (cf_tensor_retain(t), t)
                                                            : cf_tensor_to_device(t, CF_DEVICE_CPU);
      c = cpu ? cf_tensor_to_dtype(cpu, CF_DTYPE_F32) : NULL;
      cf_tensor_release(cpu);
    }
    if (!c) { rc = -1; break; }
    held[i] = c;
    e[i].name = m->names[i];
    snprintf(e[i].dtype, sizeof e[i].dtype, "F32");
    e[i].ndim = c->ndim;
    for (int d = 0; d < c->ndim; d++) e[i].shape[d] = c->shape[d];
    e[i].data = cf_tensor_data(c);
    e[i].nbytes = (size_t)cf_tensor_numel(c) * 4;
  }
  if (rc == 0) {
    char *path = join(dir, "model.safetensors");
    rc = path ? cf_st_write(path, e, (size_t)m->nparams, NULL) : CF_ERR("out of memory");
    free(path);
  }
  for (int i = 0; i < m->nparams; i++) cf_tensor_release(held[i]);
  free(held);
  free(e);
  return rc;
}

/* ---------------------------------------------------------------- training forward */

/* y = x @ W^T (+ b) for x [N, in], W [out, in]. */
static cf_tensor *linear(cf_tensor *x, cf_tensor *w, cf_tensor *b) {
  cf_tensor *in[1] = {w};
  cf_args a = cf_args_none();
  a.i[0] = 0; a.i[1] = 1; a.ni = 2;
  cf_tensor *wt = cf_op(CF_OP_transpose, in, 1, &a);
  if (!wt) return NULL;
  cf_tensor *y = cf_op2(CF_OP_matmul, x, wt);
  cf_tensor_release(wt);
  if (!y || !b) return y;
  cf_tensor *z = cf_op2(CF_OP_add, y, b);
  cf_tensor_release(y);
  return z;
}

static cf_tensor *reshape(cf_tensor *t, int nd, const int64_t *shape) {
  cf_args a = cf_args_none();
  a.i[0] = nd;
  for (int d = 0; d < nd; d++) a.i[1 + d] = shape[d];
  a.ni = nd + 1;
  cf_tensor *in[1] = {t};
  return cf_op(CF_OP_reshape, in, 1, &a);
}

static cf_tensor *transpose(cf_tensor *t, int d0, int d1) {
  cf_args a = cf_args_none();
  a.i[0] = d0; a.i[1] = d1; a.ni = 2;
  cf_tensor *in[1] = {t};
  return cf_op(CF_OP_transpose, in, 1, &a);
}

/* [B*T, H*hd] -> [B, H, T, hd] */
static cf_tensor *split_heads(cf_tensor *x, int64_t B, int64_t T, int64_t H, int64_t hd) {
  int64_t s[4] = {B, T, H, hd};
  cf_tensor *r = reshape(x, 4, s);
  if (!r) return NULL;
  cf_tensor *t = transpose(r, 1, 2);
  cf_tensor_release(r);
  return t;
}

#define TRY(expr) do { if (!(expr)) goto fail; } while (0)

static cf_tensor *layer_forward(const cf_qwen2_config *c, const cf_qwen2_layer *L, cf_tensor *x, cf_tensor *pos,
                                int64_t B, int64_t T) {
  int64_t hd = c->head_dim;
  cf_tensor *h = NULL, *q = NULL, *k = NULL, *v = NULL, *qh = NULL, *kh = NULL, *vh = NULL;
  cf_tensor *att = NULL, *att2 = NULL, *o = NULL, *x2 = NULL, *g = NULL, *u = NULL, *gu = NULL;
  cf_tensor *d = NULL, *out = NULL, *tmp = NULL;
  TRY(h = cf_rmsnorm(x, L->in_norm, c->rms_eps));
  TRY(q = linear(h, L->q_w, L->q_b));
  TRY(k = linear(h, L->k_w, L->k_b));
  TRY(v = linear(h, L->v_w, L->v_b));
  TRY(tmp = split_heads(q, B, T, c->heads, hd));
  const double *sc = c->rope_scaling[0] > 0 ? c->rope_scaling : NULL;
  TRY(qh = cf_rope(tmp, pos, c->rope_theta, sc));
  cf_tensor_release(tmp); tmp = NULL;
  TRY(tmp = split_heads(k, B, T, c->kv_heads, hd));
  TRY(kh = cf_rope(tmp, pos, c->rope_theta, sc));
  cf_tensor_release(tmp); tmp = NULL;
  TRY(vh = split_heads(v, B, T, c->kv_heads, hd));
  TRY(att = cf_attention(qh, kh, vh, NULL, NAN, true));
  TRY(tmp = transpose(att, 1, 2));
  {
    int64_t s[2] = {B * T, (int64_t)c->heads * hd};
    TRY(att2 = reshape(tmp, 2, s));
  }
  cf_tensor_release(tmp); tmp = NULL;
  TRY(o = linear(att2, L->o_w, NULL));
  TRY(x2 = cf_op2(CF_OP_add, x, o));
  cf_tensor_release(h); h = NULL;
  TRY(h = cf_rmsnorm(x2, L->post_norm, c->rms_eps));
  TRY(g = linear(h, L->gate_w, NULL));
  TRY(u = linear(h, L->up_w, NULL));
  TRY(gu = cf_op2(CF_OP_swiglu, g, u));                /* silu(g) * u in one pass */
  TRY(d = linear(gu, L->down_w, NULL));
  TRY(out = cf_op2(CF_OP_add, x2, d));
fail:
  cf_tensor_release(h); cf_tensor_release(q); cf_tensor_release(k); cf_tensor_release(v);
  cf_tensor_release(qh); cf_tensor_release(kh); cf_tensor_release(vh); cf_tensor_release(att);
  cf_tensor_release(att2); cf_tensor_release(o); cf_tensor_release(x2); cf_tensor_release(g);
  cf_tensor_release(u); cf_tensor_release(gu); cf_tensor_release(d); cf_tensor_release(tmp);
  return out;
}

/* ---- activation recomputation: a layer as one custom autograd node (autograd.h) */

#define LAYER_TENSORS 12
typedef struct {
  cf_qwen2_config cfg;
  cf_qwen2_layer L;      /* the layer's weights, each retained (the model may be freed first) */
  cf_tensor *pos;
  int64_t B, T;
  int index;
  uint64_t version[LAYER_TENSORS + 1]; /* of each weight (layer_tensors order) and of pos, at the forward */
} recompute_ctx;

/* The addresses of a layer's weight slots (biases may hold NULL). */
static void layer_tensors(cf_qwen2_layer *L, cf_tensor **s[LAYER_TENSORS]) {
  s[0] = &L->in_norm; s[1] = &L->post_norm; s[2] = &L->q_w; s[3] = &L->k_w; s[4] = &L->v_w;
  s[5] = &L->o_w; s[6] = &L->q_b; s[7] = &L->k_b; s[8] = &L->v_b; s[9] = &L->gate_w; s[10] = &L->up_w;
  s[11] = &L->down_w;
}

static void recompute_free(void *p) {
  recompute_ctx *c = p;
  cf_tensor **s[LAYER_TENSORS];
  layer_tensors(&c->L, s);
  for (int i = 0; i < LAYER_TENSORS; i++) cf_tensor_release(*s[i]);
  cf_tensor_release(c->pos);
  free(c);
}

/* Runs the layer again on a detached copy of its saved input with gradients on, then
 * backpropagates gout through it: the weights' gradients go to their .grad like any leaf's,
 * the input's is returned. */
static int recompute_backward(cf_node *n, cf_tensor *gout, cf_tensor **gin) {
  recompute_ctx *c = n->ctx;
  cf_tensor *x = cf_detach(n->in[0]);
  if (!x) return -1;
  x->requires_grad = n->needs[0];
  bool old = cf_set_grad_enabled(true);
  cf_tensor *y = layer_forward(&c->cfg, &c->L, x, c->pos, c->B, c->T);
  cf_set_grad_enabled(old);
  int rc = y ? 0 : -1;
  if (rc == 0 && y->requires_grad) rc = cf_backward(y, gout, false);
  if (rc == 0 && n->needs[0] && x->grad) {
    cf_tensor_retain(x->grad);
    gin[0] = x->grad;
  }
  cf_tensor_release(y);
  cf_tensor_release(x);
  return rc ? cf_error_prefix("recomputing layer %d: ", c->index + 1) : 0;
}

/* The backward runs the layer again: its weights and positions must still be the forward's. */
static int recompute_check(const cf_node *n) {
  recompute_ctx *c = n->ctx;
  cf_tensor **s[LAYER_TENSORS];
  layer_tensors(&c->L, s);
  static const char *const names[LAYER_TENSORS] = {
      "input_layernorm.weight", "post_attention_layernorm.weight", "self_attn.q_proj.weight",
      "self_attn.k_proj.weight", "self_attn.v_proj.weight", "self_attn.o_proj.weight", "self_attn.q_proj.bias",
      "self_attn.k_proj.bias", "self_attn.v_proj.bias", "mlp.gate_proj.weight", "mlp.up_proj.weight",
      "mlp.down_proj.weight"};
  char what[96];
  for (int i = 0; i < LAYER_TENSORS; i++) {
    if (!*s[i]) continue;
    snprintf(what, sizeof what, "model.layers.%d.%s", c->index, names[i]);
    if (cf_autograd_check_saved("layer_recompute", what, *s[i], c->version[i])) return -1;
  }
  return cf_autograd_check_saved("layer_recompute", "the positions", c->pos, c->version[LAYER_TENSORS]);
}

static const cf_custom_fn recompute_fn = {"layer_recompute", recompute_backward, recompute_free, recompute_check};

/* The layer without saving its activations: forward with gradients off, then one custom node
 * (input x) that recomputes it in backward. */
static cf_tensor *layer_forward_recompute(cf_qwen2 *m, int l, cf_tensor *x, cf_tensor *pos, int64_t B, int64_t T) {
  cf_qwen2_layer *L = &m->layer[l];
  cf_tensor **s[LAYER_TENSORS];
  layer_tensors(L, s);
  bool weights = false;
  for (int i = 0; i < LAYER_TENSORS; i++) if (*s[i] && (*s[i])->requires_grad) weights = true;
  if (!x->requires_grad && !weights) return layer_forward(&m->cfg, L, x, pos, B, T);
  bool old = cf_set_grad_enabled(false);
  cf_tensor *y = layer_forward(&m->cfg, L, x, pos, B, T);
  cf_set_grad_enabled(old);
  if (!y) return NULL;
  recompute_ctx *c = calloc(1, sizeof *c);
  if (!c) { cf_tensor_release(y); CF_ERR("forward: out of memory"); return NULL; }
  c->cfg = m->cfg;
  c->L = *L;
  layer_tensors(&c->L, s);
  for (int i = 0; i < LAYER_TENSORS; i++) if (*s[i]) { cf_tensor_retain(*s[i]); c->version[i] = cf_tensor_version(*s[i]); }
  cf_tensor_retain(pos);
  c->pos = pos;
  c->version[LAYER_TENSORS] = cf_tensor_version(pos);
  c->B = B;
  c->T = T;
  c->index = l;
  if (cf_autograd_record_custom(&recompute_fn, c, &x, 1, y, weights)) { cf_tensor_release(y); return NULL; }
  return y;
}

cf_tensor *cf_qwen2_hidden(cf_qwen2 *m, cf_tensor *ids, cf_tensor *positions) {
  if (ids->ndim != 2 || (ids->dtype != CF_DTYPE_I64 && ids->dtype != CF_DTYPE_I32)) {
    char b[128];
    CF_ERR("forward: ids must be an integer [B, T] tensor, got %s %s", cf_dtype_name(ids->dtype),
           cf_shape_str(ids, b, sizeof b));
    return NULL;
  }
  int64_t B = ids->shape[0], T = ids->shape[1];
  if (T > m->cfg.max_pos) {
    CF_ERR("forward: %lld tokens exceed max_position_embeddings %d", (long long)T, m->cfg.max_pos);
    return NULL;
  }
  cf_tensor *pos = positions;
  if (!pos) {
    pos = cf_tensor_arange(0, (double)T, 1, CF_DTYPE_I64);
    if (pos && cf_tensor_device(ids) != CF_DEVICE_CPU) {
      cf_tensor *p2 = cf_tensor_to_device(pos, cf_tensor_device(ids));
      cf_tensor_release(pos);
      pos = p2;
    }
    if (!pos) return NULL;
  } else {
    cf_tensor_retain(pos);
  }
  cf_tensor *x = NULL, *e = NULL, *out = NULL;
  int64_t flat[2] = {B * T, m->cfg.hidden};
  TRY(e = cf_embedding(m->embed, ids));           /* [B, T, D] */
  TRY(x = reshape(e, 2, flat));                   /* [B*T, D] */
  cf_tensor_release(e); e = NULL;
  for (int l = 0; l < m->cfg.layers; l++) {
    cf_tensor *nx = m->recompute && cf_grad_enabled() ? layer_forward_recompute(m, l, x, pos, B, T)
                                                      : layer_forward(&m->cfg, &m->layer[l], x, pos, B, T);
    cf_tensor_release(x);
    x = nx;
    TRY(x);
  }
  TRY(e = cf_rmsnorm(x, m->final_norm, m->cfg.rms_eps));
  {
    int64_t s[3] = {B, T, m->cfg.hidden};
    TRY(out = reshape(e, 3, s));
  }
fail:
  cf_tensor_release(e);
  cf_tensor_release(x);
  cf_tensor_release(pos);
  return out;
}

cf_tensor *cf_qwen2_logits(cf_qwen2 *m, cf_tensor *ids) {
  cf_tensor *h = cf_qwen2_hidden(m, ids, NULL);
  if (!h) return NULL;
  int64_t B = h->shape[0], T = h->shape[1];
  int64_t flat[2] = {B * T, m->cfg.hidden};
  cf_tensor *h2 = reshape(h, 2, flat);
  cf_tensor_release(h);
  if (!h2) return NULL;
  cf_tensor *lg = linear(h2, m->lm_head, NULL);
  cf_tensor_release(h2);
  if (!lg) return NULL;
  int64_t s[3] = {B, T, m->cfg.vocab};
  cf_tensor *out = reshape(lg, 3, s);
  cf_tensor_release(lg);
  return out;
}

cf_tensor *cf_qwen2_logprobs(cf_qwen2 *m, cf_tensor *ids, const int64_t *prompt_lens,
                             const int64_t *lens, double temp) {
  int64_t B = ids->ndim == 2 ? ids->shape[0] : 0, T = ids->ndim == 2 ? ids->shape[1] : 0;
  for (int64_t b = 0; b < B; b++) {
    int64_t len = lens ? lens[b] : T;
    if (len < 1 || len > T || prompt_lens[b] < 1 || prompt_lens[b] > len) {
      CF_ERR("logprobs: row %lld: prompt length %lld and length %lld must satisfy "
             "1 <= prompt <= length <= %lld", (long long)b + 1, (long long)prompt_lens[b],
             (long long)len, (long long)T);
      return NULL;
    }
  }
  cf_tensor *h = cf_qwen2_hidden(m, ids, NULL);
  if (!h) return NULL;
  cf_tensor *cpu_ids = cf_tensor_device(ids) == CF_DEVICE_CPU ? (cf_tensor_retain(ids), ids)
                                                              : cf_tensor_to_device(ids, CF_DEVICE_CPU);
  /* Gather the scoring rows: hidden[b, P-1 .. len-2] predicts tokens[b, P .. len-1]. One
   * embedding lookup into the flattened [B*T, D] hidden states takes them all (its backward adds
   * each row's gradient into one zeroed [B*T, D] tensor; a select + narrow per row would build a
   * zeroed full-size gradient per row). */
  int64_t N = 0;
  for (int64_t b = 0; b < B; b++) N += (lens ? lens[b] : T) - prompt_lens[b];
  cf_tensor *out = NULL, *rows = NULL, *targets = NULL, *lp = NULL, *where = NULL, *hflat = NULL;
  TRY(cpu_ids);
  {
    int64_t tshape[1] = {N};
    TRY(targets = cf_tensor_zeros(1, tshape, CF_DTYPE_I64));
    TRY(where = cf_tensor_zeros(1, tshape, CF_DTYPE_I64));
    int64_t *tp = cf_tensor_data(targets), *wp = cf_tensor_data(where), k = 0;
    for (int64_t b = 0; b < B; b++) {
      int64_t len = lens ? lens[b] : T, P = prompt_lens[b];
      for (int64_t t = P; t < len; t++, k++) {
        int64_t idx[2] = {b, t};
        tp[k] = (int64_t)cf_tensor_get(cpu_ids, idx);
        wp[k] = b * T + t - 1;
      }
    }
  }
  if (cf_tensor_device(h) != CF_DEVICE_CPU) {
    cf_tensor *tg = cf_tensor_to_device(targets, cf_tensor_device(h));
    cf_tensor_release(targets);
    TRY(targets = tg);
    cf_tensor *wg = cf_tensor_to_device(where, cf_tensor_device(h));
    cf_tensor_release(where);
    TRY(where = wg);
  }
  if (N > 0) {
    int64_t flat[2] = {B * T, m->cfg.hidden};
    TRY(hflat = reshape(h, 2, flat));                          /* [B*T, D] */
    TRY(rows = cf_embedding(hflat, where));                    /* [N, D] */
    TRY(lp = cf_head_logprob(rows, m->lm_head, targets, temp)); /* [N] */
  }
  {
    /* Per-sequence sums: narrow each segment and sum, then stack. */
    cf_tensor **sums = calloc((size_t)(B ? B : 1), sizeof *sums);
    if (!sums) CF_ERR("logprobs: out of memory for %lld sequence sums", (long long)B);
    TRY(sums);
    int64_t k = 0;
    bool ok = true;
    for (int64_t b = 0; b < B && ok; b++) {
      int64_t n = (lens ? lens[b] : T) - prompt_lens[b];
      if (n == 0) {
        sums[b] = cf_tensor_scalar(0.0, h->dtype == CF_DTYPE_BF16 ? CF_DTYPE_F32 : h->dtype); /* as lp */
        if (sums[b] && cf_tensor_device(h) != CF_DEVICE_CPU) {
          cf_tensor *s2 = cf_tensor_to_device(sums[b], cf_tensor_device(h));
          cf_tensor_release(sums[b]);
          sums[b] = s2;
        }
      } else {
        cf_args a = cf_args_none();
        a.i[0] = 0; a.i[1] = k; a.i[2] = n; a.ni = 3;
        cf_tensor *in[1] = {lp};
        cf_tensor *seg = cf_op(CF_OP_narrow, in, 1, &a);
        sums[b] = seg ? cf_op_dim(CF_OP_sum, seg, CF_DIM_ALL, false) : NULL;
        cf_tensor_release(seg);
      }
      ok = sums[b] != NULL;
      k += n;
    }
    if (ok) {
      cf_args a = cf_args_none();
      a.i[0] = 0; a.ni = 1;
      out = cf_op(CF_OP_stack, sums, (int)B, &a);
    }
    for (int64_t b = 0; b < B; b++) cf_tensor_release(sums[b]);
    free(sums);
  }
fail:
  cf_tensor_release(hflat);
  cf_tensor_release(where);
  cf_tensor_release(rows);
  cf_tensor_release(targets);
  cf_tensor_release(lp);
  cf_tensor_release(cpu_ids);
  cf_tensor_release(h);
  return out;
}
