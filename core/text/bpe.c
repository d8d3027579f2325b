/* bpe.c - byte-level BPE: loading tokenizer.json, encoding and decoding (see bpe.h).
 *
 * Design notes.
 *  - Every id has one entry in `toks`: its string as written in the file (the key used by
 *    token_to_id and for building merge results) and the raw bytes it decodes to. For model
 *    tokens the bytes come from reversing GPT-2's bytes_to_unicode map; for added tokens they
 *    are the content itself, so decode(encode(s)) == s also for text holding special tokens.
 *  - BPE runs on token ids, never on strings: each byte of a word starts as the id of its
 *    byte token, and a merge table maps the pair (left id, right id) to (rank, merged id).
 *    Merging takes the lowest rank first and, among equal ranks, the leftmost pair (the
 *    Hugging Face order), using a binary heap of candidate pairs with lazy invalidation, so a
 *    pathological 1 MB word costs O(n log n), not O(n^2).
 *  - Results for words up to CACHE_MAX_WORD bytes are cached (word bytes -> ids); the cache is
 *    simply emptied when full. Natural text repeats its words, so the BPE itself runs rarely.
 *  - NFC is skipped for text whose bytes are all < 0xCC: such text only holds code points below
 *    U+0300, none of which decomposes or composes with anything, so NFC leaves it unchanged.
 *    Invalid UTF-8 is never handed to utf8proc: only valid runs are normalised, each cut at the
 *    marks Hugging Face's older Unicode tables take for starters (hf_starter, before nfc()).
 */
#define _POSIX_C_SOURCE 200809L
#include "bpe.h"
#include "error.h"
#include "io/json_whole.h"
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <utf8proc.h>

#define CACHE_MAX_WORD 128
#define CACHE_SLOTS (1u << 16)
#define MAX_IDS (1 << 26)

enum { T_PRESENT = 1, T_VOCAB = 2, T_ADDED = 4, T_SPECIAL = 8 };

typedef struct {
  size_t key_off, bytes_off;
  uint32_t key_len, bytes_len;
  uint32_t flags;
} tok;

typedef struct {
  int32_t id;
  uint32_t content_len;
  size_t content_off;
  int special, lstrip, rstrip;
} added_tok;

typedef struct { char *p; size_t n, cap; } buf;
typedef struct { int32_t *p; size_t n, cap; } ivec;

/* open addressing map string -> id; the key lives in toks[id] */
typedef struct { int32_t *slots; size_t mask; } smap;

typedef struct { uint32_t rank; int32_t id; } merge_val;
typedef struct { uint64_t *keys; merge_val *vals; size_t mask; } mmap_t;

typedef struct { uint64_t h; uint32_t key_off, key_len, ids_off, ids_n; } centry;

typedef struct { int32_t id, prev, next; } sym;
typedef struct { uint32_t rank; int32_t pos, id; } cand;

struct cf_bpe {
  tok *toks;
  size_t n_ids;
  buf strs;                 /* keys and decode bytes of every token */
  smap vocab, added_map;
  mmap_t merges;
  size_t n_merges;
  int32_t byte_id[256];
  char byte_key[256][4];    /* UTF-8 of the character standing for each byte */
  uint8_t byte_key_len[256];
  added_tok *added;
  size_t n_added;
  int added_first[256];     /* 1 when some added token starts with this byte */
  int nfc, split_kind, bl_prefix_space, bl_use_regex, ignore_merges;
  /* scratch (see thread-safety note in bpe.h) */
  buf norm, unit, key;
  ivec out;
  sym *syms;
  size_t syms_cap;
  cand *heap;
  size_t heap_cap;
  centry *cache;
  size_t cache_used;
  buf cache_keys;
  ivec cache_ids;
};

/* ---------------------------------------------------------------- small containers */

static int buf_reserve(buf *b, size_t extra) {
  if (b->n + extra <= b->cap) return 0;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < b->n + extra) cap *= 2;
  char *p = realloc(b->p, cap);
  if (!p) return CF_ERR("tokenizer: out of memory (%zu bytes)", cap);
  b->p = p;
  b->cap = cap;
  return 0;
}

static int buf_add(buf *b, const void *s, size_t n) {
  if (buf_reserve(b, n + 1)) return -1;
  if (n) memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = 0; /* keep NUL-terminated; the terminator is not counted */
  return 0;
}

static int ivec_push(ivec *v, int32_t x) {
  if (v->n == v->cap) {
    size_t cap = v->cap ? v->cap * 2 : 256;
    int32_t *p = realloc(v->p, cap * sizeof *p);
    if (!p) return CF_ERR("tokenizer: out of memory (%zu ids)", cap);
    v->p = p;
    v->cap = cap;
  }
  v->p[v->n++] = x;
  return 0;
}

static uint64_t hash_bytes(const void *s, size_t n) {
  const unsigned char *p = s;
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; i++) { h ^= p[i]; h *= 1099511628211ull; }
  return h ^ (h >> 29);
}

static size_t pow2_at_least(size_t n) {
  size_t c = 16;
  while (c < n) c *= 2;
  return c;
}

static int smap_init(smap *m, size_t n) {
  size_t cap = pow2_at_least(n * 2 + 1);
  m->slots = malloc(cap * sizeof *m->slots);
  if (!m->slots) return CF_ERR("tokenizer: out of memory (map of %zu)", cap);
  for (size_t i = 0; i < cap; i++) m->slots[i] = -1;
  m->mask = cap - 1;
  return 0;
}

static const char *tok_key(const cf_bpe *t, int32_t id, size_t *len) {
  *len = t->toks[id].key_len;
  return t->strs.p + t->toks[id].key_off;
}

/* Slot holding key s (id >= 0) or the empty slot where it would go (id -1). */
static size_t smap_slot(const cf_bpe *t, const smap *m, const char *s, size_t n) {
  size_t i = (size_t)hash_bytes(s, n) & m->mask;
  for (;;) {
    int32_t id = m->slots[i];
    if (id < 0) return i;
    size_t kl;
    const char *k = tok_key(t, id, &kl);
    if (kl == n && !memcmp(k, s, n)) return i;
    i = (i + 1) & m->mask;
  }
}

static int32_t smap_get(const cf_bpe *t, const smap *m, const char *s, size_t n) {
  if (!m->slots) return -1;
  return m->slots[smap_slot(t, m, s, n)];
}

static int mmap_init(mmap_t *m, size_t n) {
  size_t cap = pow2_at_least(n * 2 + 1);
  m->keys = malloc(cap * sizeof *m->keys);
  m->vals = malloc(cap * sizeof *m->vals);
  if (!m->keys || !m->vals) return CF_ERR("tokenizer: out of memory (merge table of %zu)", cap);
  for (size_t i = 0; i < cap; i++) m->keys[i] = UINT64_MAX;
  m->mask = cap - 1;
  return 0;
}

static uint64_t pair_key(int32_t a, int32_t b) { return ((uint64_t)(uint32_t)a << 32) | (uint32_t)b; }

static size_t mmap_slot(const mmap_t *m, uint64_t k) {
  uint64_t h = k * 0x9E3779B97F4A7C15ull;
  size_t i = (size_t)(h >> 20) & m->mask;
  while (m->keys[i] != UINT64_MAX && m->keys[i] != k) i = (i + 1) & m->mask;
  return i;
}

static const merge_val *mmap_get(const mmap_t *m, int32_t a, int32_t b) {
  if (!m->keys) return NULL;
  size_t i = mmap_slot(m, pair_key(a, b));
  return m->keys[i] == UINT64_MAX ? NULL : &m->vals[i];
}

/* ---------------------------------------------------------------- GPT-2 byte <-> unicode */

/* byte_cp[b]: the code point standing for byte b; cp_byte[cp] for cp < 512: the byte or -1. */
typedef struct { int32_t byte_cp[256]; int16_t cp_byte[512]; } bytemap;

static void bytemap_init(bytemap *m) {
  for (int i = 0; i < 512; i++) m->cp_byte[i] = -1;
  int n = 0;
  for (int b = 0; b < 256; b++) {
    int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    m->byte_cp[b] = printable ? b : 256 + n++;
    m->cp_byte[m->byte_cp[b]] = (int16_t)b;
  }
}

/* Append the raw bytes that the byte-level string s stands for; when some character is not in
 * the map (not a byte-level string), append s itself (what the ByteLevel decoder does). */
static int unbyte(const bytemap *m, buf *out, const char *s, size_t n) {
  size_t start = out->n;
  const utf8proc_uint8_t *p = (const utf8proc_uint8_t *)s;
  size_t i = 0;
  while (i < n) {
    utf8proc_int32_t cp;
    utf8proc_ssize_t l = utf8proc_iterate(p + i, (utf8proc_ssize_t)(n - i), &cp);
    if (l <= 0 || cp >= 512 || m->cp_byte[cp] < 0) {
      out->n = start;
      return buf_add(out, s, n);
    }
    char c = (char)m->cp_byte[cp];
    if (buf_add(out, &c, 1)) return -1;
    i += (size_t)l;
  }
  return 0;
}

/* ---------------------------------------------------------------- loading */

static int get_bool(const cJSON *o, const char *name, int dflt) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
  if (!v || cJSON_IsNull(v)) return dflt;
  return cJSON_IsTrue(v);
}

static const char *get_type(const cJSON *o) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "type");
  return cJSON_IsString(v) ? v->valuestring : "";
}

/* The id v holds; the caller names whose id it is ('vocab entry "x": id is not ...'). */
static int get_id(const cJSON *v, int32_t *id) {
  if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble >= MAX_IDS ||
      v->valuedouble != (double)(int64_t)v->valuedouble)
    return CF_ERR("id is not an integer in [0, %d)", MAX_IDS);
  *id = (int32_t)v->valuedouble;
  return 0;
}

static int load_normalizer(cf_bpe *t, const cJSON *n) {
  if (!n || cJSON_IsNull(n)) return 0;
  const char *ty = get_type(n);
  if (!strcmp(ty, "NFC")) { t->nfc = 1; return 0; }
  if (!strcmp(ty, "Sequence")) {
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(n, "normalizers"))
      if (load_normalizer(t, e)) return -1;
    return 0;
  }
  return CF_ERR("normalizer \"%s\" is not supported (only null or NFC)", ty);
}

/* The post-processor only adds special tokens around a sequence (BOS, EOS), which encode never
 * does (as Hugging Face's add_special_tokens=False, what chat templates expect: they write the
 * markers themselves): null, ByteLevel (offsets only), TemplateProcessing or a Sequence of them
 * are taken and not applied; any other kind is refused. */
static int load_post(const cJSON *p) {
  if (!p || cJSON_IsNull(p)) return 0;
  const char *ty = get_type(p);
  if (!strcmp(ty, "ByteLevel") || !strcmp(ty, "TemplateProcessing")) return 0;
  if (!strcmp(ty, "Sequence")) {
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(p, "processors"))
      if (load_post(e)) return -1;
    return 0;
  }
  return CF_ERR("post_processor \"%s\" is not supported (only null, ByteLevel, TemplateProcessing or a Sequence "
                "of them, none applied: encode adds no special tokens)", *ty ? ty : "(no type)");
}

static int load_bytelevel(cf_bpe *t, const cJSON *p) {
  t->bl_prefix_space = get_bool(p, "add_prefix_space", 0);
  t->bl_use_regex = get_bool(p, "use_regex", 1);
  return 0;
}

static int load_pretok(cf_bpe *t, const cJSON *p) {
  if (!p || cJSON_IsNull(p))
    return CF_ERR("pre_tokenizer is null; only byte-level BPE tokenizers are supported");
  const char *ty = get_type(p);
  if (!strcmp(ty, "ByteLevel")) return load_bytelevel(t, p);
  if (strcmp(ty, "Sequence"))
    return CF_ERR("pre_tokenizer \"%s\" is not supported (ByteLevel or Sequence[Split, ByteLevel])", ty);
  const cJSON *list = cJSON_GetObjectItemCaseSensitive(p, "pretokenizers");
  int n = cJSON_GetArraySize(list), seen_bl = 0;
  for (int i = 0; i < n; i++) {
    const cJSON *e = cJSON_GetArrayItem(list, i);
    const char *et = get_type(e);
    if (!strcmp(et, "Split") && i == 0 && n == 2) {
      const cJSON *pat = cJSON_GetObjectItemCaseSensitive(e, "pattern");
      const cJSON *re = cJSON_GetObjectItemCaseSensitive(pat, "Regex");
      const cJSON *str = cJSON_GetObjectItemCaseSensitive(pat, "String");
      const cJSON *beh = cJSON_GetObjectItemCaseSensitive(e, "behavior");
      if (!cJSON_IsString(re))
        return CF_ERR("pre_tokenizer Split: pattern %s is not supported (only known Regex patterns)",
                      cJSON_IsString(str) ? str->valuestring : "(missing)");
      int k = cf_pretok_kind_of(re->valuestring);
      if (k < 0) return CF_ERR("pre_tokenizer Split: unknown regex %s", re->valuestring);
      if (!cJSON_IsString(beh) || strcmp(beh->valuestring, "Isolated"))
        return CF_ERR("pre_tokenizer Split: behavior %s is not supported (only Isolated)",
                      cJSON_IsString(beh) ? beh->valuestring : "(missing)");
      if (get_bool(e, "invert", 0)) return CF_ERR("pre_tokenizer Split: invert is not supported");
      t->split_kind = k;
    } else if (!strcmp(et, "ByteLevel") && i == n - 1) {
      if (load_bytelevel(t, e)) return -1;
      seen_bl = 1;
    } else {
      return CF_ERR("pre_tokenizer Sequence: element %d of type \"%s\" is not supported "
                    "(expected [Split, ByteLevel] or [ByteLevel])", i + 1, et);
    }
  }
  if (!seen_bl) return CF_ERR("pre_tokenizer Sequence without ByteLevel is not supported");
  return 0;
}

/* Register id with key s (flags T_VOCAB or T_ADDED). */
static int set_tok(cf_bpe *t, int32_t id, const char *s, size_t n, uint32_t flag, const bytemap *bm) {
  tok *k = &t->toks[id];
  if (k->flags & T_PRESENT) {
    size_t kl;
    const char *old = tok_key(t, id, &kl);
    if (kl != n || memcmp(old, s, n))
      return CF_ERR("id %d is given to both \"%s\" and \"%s\"", id, old, s);
    if (flag == T_ADDED) { /* an added token that is also a vocab token: decode to content */
      k->bytes_off = k->key_off;
      k->bytes_len = k->key_len;
    }
    k->flags |= flag;
    return 0;
  }
  size_t off = t->strs.n;
  if (buf_add(&t->strs, s, n) || buf_add(&t->strs, "", 1)) return -1;
  k->key_off = off;
  k->key_len = (uint32_t)n;
  if (flag == T_ADDED) {
    k->bytes_off = off;
    k->bytes_len = (uint32_t)n;
  } else {
    size_t boff = t->strs.n;
    if (unbyte(bm, &t->strs, s, n)) return -1;
    k->bytes_off = boff;
    k->bytes_len = (uint32_t)(t->strs.n - boff);
  }
  k->flags = T_PRESENT | flag;
  return 0;
}

static int load_model(cf_bpe *t, const cJSON *root, const bytemap *bm) {
  const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
  if (!cJSON_IsObject(model)) return CF_ERR("no \"model\" object");
  const char *ty = get_type(model);
  if (*ty && strcmp(ty, "BPE")) return CF_ERR("model type \"%s\" is not supported (only BPE)", ty);
  const cJSON *v;
  v = cJSON_GetObjectItemCaseSensitive(model, "continuing_subword_prefix");
  if (cJSON_IsString(v) && *v->valuestring)
    return CF_ERR("model: continuing_subword_prefix \"%s\" is not supported", v->valuestring);
  v = cJSON_GetObjectItemCaseSensitive(model, "end_of_word_suffix");
  if (cJSON_IsString(v) && *v->valuestring)
    return CF_ERR("model: end_of_word_suffix \"%s\" is not supported", v->valuestring);
  if (get_bool(model, "byte_fallback", 0)) return CF_ERR("model: byte_fallback is not supported");
  v = cJSON_GetObjectItemCaseSensitive(model, "dropout");
  if (cJSON_IsNumber(v) && v->valuedouble > 0) return CF_ERR("model: BPE dropout is not supported");
  t->ignore_merges = get_bool(model, "ignore_merges", 0);

  const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
  const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
  const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
  if (!cJSON_IsObject(vocab)) return CF_ERR("model: no \"vocab\" object");
  /* Hugging Face refuses a BPE model without merges ("Missing vocab/merges"); read as none, every
   * word would go byte by byte. A model without merges writes "merges": [] (the toy's does). */
  if (!merges) return CF_ERR("model: no \"merges\" array (write \"merges\": [] for none)");
  if (!cJSON_IsArray(merges)) return CF_ERR("model: \"merges\" is not an array");
  if (added && !cJSON_IsNull(added) && !cJSON_IsArray(added))
    return CF_ERR("\"added_tokens\" is not an array");

  /* pass 1: sizes */
  int32_t maxid = -1, id = 0;
  size_t n_vocab = 0;
  const cJSON *e;
  cJSON_ArrayForEach(e, vocab) {
    if (get_id(e, &id)) return cf_error_prefix("vocab entry \"%s\": ", e->string);
    if (id > maxid) maxid = id;
    n_vocab++;
  }
  size_t n_added = 0;
  cJSON_ArrayForEach(e, added) {
    if (!cJSON_IsObject(e)) return CF_ERR("added_tokens element %zu is not an object {\"id\": ..., \"content\": ...}", n_added + 1);
    if (get_id(cJSON_GetObjectItemCaseSensitive(e, "id"), &id))
      return cf_error_prefix("added_tokens element %zu: ", n_added + 1);
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(e, "content");
    if (!cJSON_IsString(c) || !*c->valuestring)
      return CF_ERR("added token %d: \"content\" is missing or empty", id);
    if (get_bool(e, "single_word", 0))
      return CF_ERR("added token \"%s\": single_word is not supported", c->valuestring);
    if (id > maxid) maxid = id;
    n_added++;
  }
  if (maxid < 0) return CF_ERR("model: empty vocabulary");
  t->n_ids = (size_t)maxid + 1;
  t->toks = calloc(t->n_ids, sizeof *t->toks);
  t->added = calloc(n_added ? n_added : 1, sizeof *t->added);
  if (!t->toks || !t->added) return CF_ERR("tokenizer: out of memory (%zu ids)", t->n_ids);
  if (smap_init(&t->vocab, n_vocab) || smap_init(&t->added_map, n_added)) return -1;

  /* pass 2: vocab */
  cJSON_ArrayForEach(e, vocab) {
    get_id(e, &id);
    size_t n = strlen(e->string);
    if (t->toks[id].flags & T_PRESENT)
      return CF_ERR("vocab: id %d is given to both \"%s\" and \"%s\"", id,
                    t->strs.p + t->toks[id].key_off, e->string);
    if (set_tok(t, id, e->string, n, T_VOCAB, bm)) return -1;
    size_t s = smap_slot(t, &t->vocab, e->string, n);
    if (t->vocab.slots[s] >= 0) return CF_ERR("vocab: token \"%s\" appears twice", e->string);
    t->vocab.slots[s] = id;
  }

  /* added tokens */
  cJSON_ArrayForEach(e, added) {
    get_id(cJSON_GetObjectItemCaseSensitive(e, "id"), &id);
    const char *c = cJSON_GetObjectItemCaseSensitive(e, "content")->valuestring;
    size_t n = strlen(c);
    if (set_tok(t, id, c, n, T_ADDED, bm)) return cf_error_prefix("added_tokens: ");
    added_tok *a = &t->added[t->n_added++];
    a->id = id;
    a->content_off = t->toks[id].key_off;
    a->content_len = (uint32_t)n;
    a->special = get_bool(e, "special", 0);
    a->lstrip = get_bool(e, "lstrip", 0);
    a->rstrip = get_bool(e, "rstrip", 0);
    if (a->special) t->toks[id].flags |= T_SPECIAL;
    t->added_first[(unsigned char)c[0]] = 1;
    size_t s = smap_slot(t, &t->added_map, c, n);
    if (t->added_map.slots[s] < 0) t->added_map.slots[s] = id;
  }

  /* byte tokens */
  for (int b = 0; b < 256; b++) {
    utf8proc_uint8_t u[4];
    utf8proc_ssize_t l = utf8proc_encode_char(bm->byte_cp[b], u);
    memcpy(t->byte_key[b], u, (size_t)l);
    t->byte_key_len[b] = (uint8_t)l;
    t->byte_id[b] = smap_get(t, &t->vocab, (const char *)u, (size_t)l);
  }

  /* merges */
  size_t nm = (size_t)cJSON_GetArraySize(merges);
  if (mmap_init(&t->merges, nm)) return -1;
  buf cat = {0};
  uint32_t rank = 0;
  int rc = 0;
  cJSON_ArrayForEach(e, merges) {
    const char *a, *b;
    size_t la, lb;
    if (cJSON_IsString(e)) {
      const char *sp = strchr(e->valuestring, ' ');
      if (!sp || strchr(sp + 1, ' ')) { rc = CF_ERR("merge %u \"%s\" is not \"a b\"", rank + 1, e->valuestring); break; }
      a = e->valuestring; la = (size_t)(sp - a);
      b = sp + 1; lb = strlen(b);
    } else if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2 &&
               cJSON_IsString(cJSON_GetArrayItem(e, 0)) && cJSON_IsString(cJSON_GetArrayItem(e, 1))) {
      a = cJSON_GetArrayItem(e, 0)->valuestring; la = strlen(a);
      b = cJSON_GetArrayItem(e, 1)->valuestring; lb = strlen(b);
    } else {
      rc = CF_ERR("merge %u is neither \"a b\" nor [\"a\", \"b\"]", rank + 1);
      break;
    }
    int32_t ia = smap_get(t, &t->vocab, a, la), ib = smap_get(t, &t->vocab, b, lb);
    cat.n = 0;
    if (buf_add(&cat, a, la) || buf_add(&cat, b, lb)) { rc = -1; break; }
    int32_t im = smap_get(t, &t->vocab, cat.p, cat.n);
    if (ia < 0 || ib < 0 || im < 0) {
      rc = CF_ERR("merge %u (\"%.*s\" \"%.*s\"): %s is not in the vocabulary", rank + 1, (int)la, a,
                  (int)lb, b, ia < 0 ? "left part" : ib < 0 ? "right part" : "the merged token");
      break;
    }
    /* a pair listed twice takes its last rank, as in Hugging Face's tokenizers (its merge map is
     * filled in file order, a later line replacing an earlier one: tests/fixtures/hf_edge_cases.json) */
    size_t s = mmap_slot(&t->merges, pair_key(ia, ib));
    t->merges.keys[s] = pair_key(ia, ib);
    t->merges.vals[s].rank = rank;
    t->merges.vals[s].id = im;
    rank++;
  }
  free(cat.p);
  t->n_merges = rank;
  return rc;
}

/* cJSON ends a string at a NUL (\u0000): "a\u0000b" would read as "a". Refuse such a string,
 * quoted as the file writes it, once cJSON has taken the text for valid JSON. */
static int check_nul(const char *json, size_t len) {
  size_t start = 0; /* one past the opening quote of the string being read; 0: none */
  for (size_t i = 0; i < len; i++) {
    char c = json[i];
    if (!start) {
      if (c == '"') start = i + 1;
    } else if (c == '"') {
      start = 0;
    } else if (c == '\\') {
      if (len - i >= 6 && !memcmp(json + i + 1, "u0000", 5)) {
        size_t j = i;
        while (j < len && json[j] != '"') j += json[j] == '\\' ? 2 : 1;
        size_t n = (j < len ? j : len) - start;
        return CF_ERR("tokenizer: the string \"%.*s%s\" (near byte %zu) holds a NUL character "
                      "(\\u0000), which is not supported", (int)(n > 80 ? 80 : n), json + start,
                      n > 80 ? "..." : "", i);
      }
      i++; /* the escaped character */
    }
  }
  return 0;
}

cf_bpe *cf_bpe_load_json(const char *json, size_t len) {
  size_t off;
  int trailing;
  errno = 0;
  cJSON *root = cf_json_parse_whole(json, len, &off, &trailing);
  if (!root && !trailing && errno == ENOMEM) { /* cJSON's malloc failed: the file may well be fine */
    CF_ERR("tokenizer: out of memory parsing %zu bytes of JSON", len);
    return NULL;
  }
  if (!root) {
    if (trailing) CF_ERR("tokenizer: corrupt JSON: trailing bytes after the top-level value at byte %zu", off);
    else CF_ERR("tokenizer: corrupt JSON near byte %zu", off);
    return NULL;
  }
  cf_bpe *t = calloc(1, sizeof *t);
  if (!t) { cJSON_Delete(root); CF_ERR("tokenizer: out of memory"); return NULL; }
  bytemap bm;
  bytemap_init(&bm);
  int rc = !cJSON_IsObject(root) ? CF_ERR("tokenizer: top level is not an object") : check_nul(json, len);
  /* tokenizer_config.json, given by mistake, failed on its null pre_tokenizer */
  if (!rc && !cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(root, "model")))
    rc = CF_ERR("no \"model\" object: this is not a Hugging Face tokenizer.json (a tokenizer_config.json? "
                "give the tokenizer.json beside it)");
  if (!rc) rc = load_normalizer(t, cJSON_GetObjectItemCaseSensitive(root, "normalizer"));
  if (!rc) rc = load_pretok(t, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"));
  if (!rc) rc = load_post(cJSON_GetObjectItemCaseSensitive(root, "post_processor"));
  if (!rc) {
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(root, "decoder");
    if (!d || strcmp(get_type(d), "ByteLevel"))
      rc = CF_ERR("decoder \"%s\" is not supported (only ByteLevel)",
                  !d || cJSON_IsNull(d) ? "null" : *get_type(d) ? get_type(d) : "(no type)");
  }
  if (!rc) rc = load_model(t, root, &bm);
  cJSON_Delete(root);
  if (!rc) {
    t->cache = calloc(CACHE_SLOTS, sizeof *t->cache);
    if (!t->cache) rc = CF_ERR("tokenizer: out of memory (word cache)");
  }
  if (rc) { cf_bpe_free(t); return NULL; }
  return t;
}

/* The whole regular file at path (NUL-terminated, *size bytes), or NULL + CF_ERR. Opened
 * O_NONBLOCK and checked with fstat first: a FIFO (or a folder, a device) named tokenizer.json is
 * refused, never waited on. (Like cf_st_read_file; bpe.c stays free of the rest of the library
 * for tests/fuzz.) */
static char *read_regular(const char *path, size_t *size) {
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) { CF_ERR("tokenizer: cannot open %s: %s", path, strerror(errno)); return NULL; }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    CF_ERR("tokenizer: cannot read %s: %s", path, strerror(errno));
    close(fd);
    return NULL;
  }
  if (!S_ISREG(st.st_mode)) {
    CF_ERR("tokenizer: %s: not a regular file (%s)", path,
           S_ISFIFO(st.st_mode) ? "a FIFO" : S_ISDIR(st.st_mode) ? "a folder" : "a device or socket");
    close(fd);
    return NULL;
  }
  int fl = fcntl(fd, F_GETFL);
  if (fl == -1 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) == -1) {
    CF_ERR("tokenizer: cannot read %s: %s", path, strerror(errno));
    close(fd);
    return NULL;
  }
  if ((uintmax_t)st.st_size >= (uintmax_t)SIZE_MAX / 2) {
    close(fd);
    CF_ERR("tokenizer: %s is too large (%lld bytes)", path, (long long)st.st_size);
    return NULL;
  }
  size_t n = 0, want = (size_t)st.st_size;
  char *data = malloc(want + 1);
  if (!data) {
    close(fd);
    CF_ERR("tokenizer: out of memory reading %s (%zu bytes)", path, want);
    return NULL;
  }
  int err = 0;
  while (n < want) {
    ssize_t r = read(fd, data + n, want - n);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) err = errno;
    if (r <= 0) break;
    n += (size_t)r;
  }
  close(fd);
  if (n != want) {
    free(data);
    CF_ERR("tokenizer: cannot read %s: %s", path, err ? strerror(err) : "the file shrank while being read");
    return NULL;
  }
  data[n] = 0;
  *size = n;
  return data;
}

cf_bpe *cf_bpe_load(const char *path) {
  size_t size = 0;
  char *data = read_regular(path, &size);
  if (!data) return NULL;
  cf_bpe *t = cf_bpe_load_json(data, size);
  free(data);
  if (!t) cf_error_prefix("loading %s: ", path);
  return t;
}

void cf_bpe_free(cf_bpe *t) {
  if (!t) return;
  free(t->toks);
  free(t->strs.p);
  free(t->vocab.slots);
  free(t->added_map.slots);
  free(t->merges.keys);
  free(t->merges.vals);
  free(t->added);
  free(t->norm.p);
  free(t->unit.p);
  free(t->key.p);
  free(t->out.p);
  free(t->syms);
  free(t->heap);
  free(t->cache);
  free(t->cache_keys.p);
  free(t->cache_ids.p);
  free(t);
}

/* ---------------------------------------------------------------- BPE on one word */

static int cand_less(const cand *a, const cand *b) {
  return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void heap_push(cand *h, size_t *n, cand c) {
  size_t i = (*n)++;
  while (i > 0) {
    size_t p = (i - 1) / 2;
    if (!cand_less(&c, &h[p])) break;
    h[i] = h[p];
    i = p;
  }
  h[i] = c;
}

static cand heap_pop(cand *h, size_t *n) {
  cand top = h[0], last = h[--*n];
  size_t i = 0, m = *n;
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, s = i;
    const cand *best = &last;
    if (l < m && cand_less(&h[l], best)) { s = l; best = &h[l]; }
    if (r < m && cand_less(&h[r], best)) { s = r; }
    if (s == i) break;
    h[i] = h[s];
    i = s;
  }
  if (m) h[i] = last;
  return top;
}

/* The pair (syms[pos], its successor) as a heap candidate, pushed when it has a merge. */
static void push_pair(cf_bpe *t, size_t *nh, int32_t pos) {
  if (pos < 0) return;
  int32_t nx = t->syms[pos].next;
  if (nx < 0) return;
  const merge_val *m = mmap_get(&t->merges, t->syms[pos].id, t->syms[nx].id);
  if (m) heap_push(t->heap, nh, (cand){m->rank, pos, m->id});
}

static int cache_find(cf_bpe *t, const char *w, size_t n, uint64_t h, size_t *slot) {
  size_t i = (size_t)h & (CACHE_SLOTS - 1);
  for (;;) {
    centry *c = &t->cache[i];
    if (!c->key_len) { *slot = i; return 0; }
    if (c->h == h && c->key_len == n && !memcmp(t->cache_keys.p + c->key_off, w, n)) {
      *slot = i;
      return 1;
    }
    i = (i + 1) & (CACHE_SLOTS - 1);
  }
}

static int bpe_word(cf_bpe *t, const char *w, size_t n) {
  const unsigned char *u = (const unsigned char *)w;
  for (size_t i = 0; i < n; i++)
    if (t->byte_id[u[i]] < 0)
      return CF_ERR("encode: byte 0x%02x has no token in the vocabulary", u[i]);
  if (n == 1) return ivec_push(&t->out, t->byte_id[u[0]]);

  uint64_t h = 0;
  size_t slot = 0;
  int cacheable = n <= CACHE_MAX_WORD;
  if (cacheable) {
    h = hash_bytes(w, n) | 1;
    if (cache_find(t, w, n, h, &slot)) {
      const centry *c = &t->cache[slot];
      for (uint32_t k = 0; k < c->ids_n; k++)
        if (ivec_push(&t->out, t->cache_ids.p[c->ids_off + k])) return -1;
      return 0;
    }
  }
  size_t out0 = t->out.n;

  int done = 0;
  if (t->ignore_merges) { /* the whole word as one token when it is in the vocabulary */
    t->key.n = 0;
    for (size_t i = 0; i < n; i++)
      if (buf_add(&t->key, t->byte_key[u[i]], t->byte_key_len[u[i]])) return -1;
    int32_t id = smap_get(t, &t->vocab, t->key.p, t->key.n);
    if (id >= 0) {
      if (ivec_push(&t->out, id)) return -1;
      done = 1;
    }
  }

  if (!done) {
    if (n > t->syms_cap) {
      size_t cap = n * 2;
      sym *s = realloc(t->syms, cap * sizeof *s);
      if (!s) return CF_ERR("encode: out of memory (word of %zu bytes)", n);
      t->syms = s;
      t->syms_cap = cap;
      cand *hp = realloc(t->heap, cap * sizeof *hp);
      if (!hp) return CF_ERR("encode: out of memory (word of %zu bytes)", n);
      t->heap = hp;
      t->heap_cap = cap;
    }
    for (size_t i = 0; i < n; i++)
      t->syms[i] = (sym){t->byte_id[u[i]], (int32_t)i - 1, i + 1 < n ? (int32_t)i + 1 : -1};
    size_t nh = 0;
    if (t->n_merges)
      for (size_t i = 0; i + 1 < n; i++) push_pair(t, &nh, (int32_t)i);
    /* n - 1 initial candidates; each merge pops one and pushes at most two, and there are at
     * most n - 1 merges, so 2n entries suffice; the capacity check below is belt and braces. */
    while (nh) {
      cand c = heap_pop(t->heap, &nh);
      sym *s = &t->syms[c.pos];
      if (s->id < 0 || s->next < 0) continue;
      const merge_val *m = mmap_get(&t->merges, s->id, t->syms[s->next].id);
      if (!m || m->rank != c.rank) continue; /* stale */
      int32_t nx = s->next;
      s->id = c.id;
      s->next = t->syms[nx].next;
      if (s->next >= 0) t->syms[s->next].prev = c.pos;
      t->syms[nx].id = -1;
      if (nh + 2 > t->heap_cap) {
        size_t cap = t->heap_cap * 2;
        cand *hp = realloc(t->heap, cap * sizeof *hp);
        if (!hp) return CF_ERR("encode: out of memory (word of %zu bytes)", n);
        t->heap = hp;
        t->heap_cap = cap;
      }
      push_pair(t, &nh, s->prev);
      push_pair(t, &nh, c.pos);
    }
    for (int32_t i = 0; i >= 0; i = t->syms[i].next)
      if (ivec_push(&t->out, t->syms[i].id)) return -1;
  }

  if (cacheable) {
    size_t nids = t->out.n - out0;
    if (t->cache_used * 2 >= CACHE_SLOTS || t->cache_ids.n > (16u << 20)) {
      memset(t->cache, 0, CACHE_SLOTS * sizeof *t->cache);
      t->cache_used = 0;
      t->cache_keys.n = 0;
      t->cache_ids.n = 0;
      cache_find(t, w, n, h, &slot);
    }
    size_t koff = t->cache_keys.n, ioff = t->cache_ids.n;
    if (buf_add(&t->cache_keys, w, n)) return -1;
    for (size_t k = 0; k < nids; k++)
      if (ivec_push(&t->cache_ids, t->out.p[out0 + k])) return -1;
    t->cache[slot] = (centry){h, (uint32_t)koff, (uint32_t)n, (uint32_t)ioff, (uint32_t)nids};
    t->cache_used++;
  }
  return 0;
}

/* ---------------------------------------------------------------- encode pipeline */

/* ByteLevel stage on one unit: optional prefix space, optional GPT-2 split, then BPE. */
static int encode_unit(cf_bpe *t, const char *s, size_t n) {
  if (!n) return 0;
  if (t->bl_prefix_space && s[0] != ' ') {
    t->unit.n = 0;
    if (buf_add(&t->unit, " ", 1) || buf_add(&t->unit, s, n)) return -1;
    s = t->unit.p;
    n = t->unit.n;
  }
  if (!t->bl_use_regex) return bpe_word(t, s, n);
  for (size_t i = 0; i < n;) {
    size_t j = cf_pretok_next(CF_PRETOK_GPT2, s, n, i);
    if (bpe_word(t, s + i, j - i)) return -1;
    i = j;
  }
  return 0;
}

/* Code points that Hugging Face's NFC (tokenizers 0.23, through the unicode-normalization-
 * alignments crate, whose tables predate Unicode 10) does not know, and so takes for starters
 * (class 0, composing with nothing): the combining marks Unicode 10 to 17 added (108 of them up
 * to Unicode 15.0, utf8proc 2.8's version: U+1DF9, U+08CA, ...), and one character of each
 * composition added since (U+11930 of U+11935 U+11930 -> U+11938, Unicode 13; Unicode 16's
 * Todhri, Tulu-Tigalari, Gurung Khema and Kirat Rai ones). HF leaves such a mark in place and
 * moves or composes nothing across it; nfc() copies each one as is and normalises the text on
 * either side apart, which gives HF's result. tests/fixtures/find_hf_nfc_starters.js printed
 * this table: it compares HF's NFC with ICU's (Unicode 17) on 2.3 million strings built around
 * every code point and replays this rule over all of them. The 57 code points past Unicode
 * 15.0 are unassigned to utf8proc 2.8, where a cut changes nothing; they keep a newer utf8proc
 * in line. */
static const uint32_t hf_starter[][2] = {
  {0x7FD, 0x7FD}, {0x897, 0x89F}, {0x8CA, 0x8D3}, {0x9FE, 0x9FE}, {0xC3C, 0xC3C}, {0xD3B, 0xD3C},
  {0xEBA, 0xEBA}, {0x1715, 0x1715}, {0x1ABF, 0x1ADD}, {0x1AE0, 0x1AEB}, {0x1DF6, 0x1DFA},
  {0xA82C, 0xA82C}, {0x105D2, 0x105D2}, {0x105DA, 0x105DA}, {0x10D24, 0x10D27}, {0x10D69, 0x10D6D},
  {0x10EAB, 0x10EAC}, {0x10EFA, 0x10EFB}, {0x10EFD, 0x10EFF}, {0x10F46, 0x10F50},
  {0x10F82, 0x10F85}, {0x11070, 0x11070}, {0x1133B, 0x1133B}, {0x113B8, 0x113B8},
  {0x113BB, 0x113BB}, {0x113C2, 0x113C2}, {0x113C9, 0x113C9}, {0x113CE, 0x113D0},
  {0x1145E, 0x1145E}, {0x11839, 0x1183A}, {0x11930, 0x11930}, {0x1193D, 0x1193E},
  {0x11943, 0x11943}, {0x119E0, 0x119E0}, {0x11A34, 0x11A34}, {0x11A47, 0x11A47},
  {0x11A99, 0x11A99}, {0x11D42, 0x11D42}, {0x11D44, 0x11D45}, {0x11D97, 0x11D97},
  {0x11F41, 0x11F42}, {0x1611E, 0x16120}, {0x16129, 0x16129}, {0x1612F, 0x1612F},
  {0x16D67, 0x16D67}, {0x16FF0, 0x16FF1}, {0x1E08F, 0x1E08F}, {0x1E130, 0x1E136},
  {0x1E2AE, 0x1E2AE}, {0x1E2EC, 0x1E2EF}, {0x1E4EC, 0x1E4EF}, {0x1E5EE, 0x1E5EF},
  {0x1E6E3, 0x1E6E3}, {0x1E6E6, 0x1E6E6}, {0x1E6EE, 0x1E6EF}, {0x1E6F5, 0x1E6F5},
};

int cf_bpe_hf_starter(int32_t c) {
  size_t lo = 0, hi = sizeof hf_starter / sizeof hf_starter[0];
  if (c < (int32_t)hf_starter[0][0]) return 0;
  while (lo < hi) { /* the first range ending at or after c */
    size_t mid = (lo + hi) / 2;
    if (hf_starter[mid][1] < (uint32_t)c) lo = mid + 1; else hi = mid;
  }
  return lo < sizeof hf_starter / sizeof hf_starter[0] && hf_starter[lo][0] <= (uint32_t)c;
}

/* NFC of s into t->norm as Hugging Face computes it: valid UTF-8 runs only, each cut at the
 * code points of hf_starter, which are copied as they are. */
static int nfc(cf_bpe *t, const char *s, size_t n) {
  t->norm.n = 0;
  const utf8proc_uint8_t *p = (const utf8proc_uint8_t *)s;
  size_t i = 0;
  while (i < n) {
    size_t j = i;
    utf8proc_ssize_t l = 0;
    while (j < n) {
      utf8proc_int32_t cp;
      l = utf8proc_iterate(p + j, (utf8proc_ssize_t)(n - j), &cp);
      if (l <= 0 || cf_bpe_hf_starter(cp)) break;
      j += (size_t)l;
    }
    if (j > i) {
      utf8proc_uint8_t *dst = NULL;
      utf8proc_ssize_t m = utf8proc_map(p + i, (utf8proc_ssize_t)(j - i), &dst,
                                        UTF8PROC_STABLE | UTF8PROC_COMPOSE);
      int rc = m >= 0 ? buf_add(&t->norm, dst, (size_t)m) : buf_add(&t->norm, s + i, j - i);
      free(dst);
      if (rc) return -1;
    }
    if (j < n) { /* one invalid byte, or one hf_starter code point, kept as is */
      size_t k = l > 0 ? (size_t)l : 1;
      if (buf_add(&t->norm, s + j, k)) return -1;
      j += k;
    }
    i = j;
  }
  return 0;
}

static int encode_segment(cf_bpe *t, const char *s, size_t n) {
  if (!n) return 0;
  if (t->nfc) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n && u[i] < 0xCC) i++;
    if (i < n) {
      if (nfc(t, s, n)) return -1;
      s = t->norm.p;
      n = t->norm.n;
    }
  }
  if (t->split_kind == CF_PRETOK_NONE) return encode_unit(t, s, n);
  for (size_t i = 0; i < n;) {
    size_t j = cf_pretok_next(t->split_kind, s, n, i);
    if (encode_unit(t, s + i, j - i)) return -1;
    i = j;
  }
  return 0;
}

static int is_ws_byte(unsigned char c) { return c == ' ' || (c >= 0x09 && c <= 0x0D); }

/* Longest added token starting at text[i]: its index in t->added, or -1. */
static int match_added(const cf_bpe *t, const char *text, size_t len, size_t i) {
  int best = -1;
  size_t best_len = 0;
  for (size_t k = 0; k < t->n_added; k++) {
    const added_tok *a = &t->added[k];
    if (a->content_len <= best_len || a->content_len > len - i) continue;
    if (!memcmp(text + i, t->strs.p + a->content_off, a->content_len)) {
      best = (int)k;
      best_len = a->content_len;
    }
  }
  return best;
}

int cf_bpe_encode(cf_bpe *t, const char *text, size_t len, int32_t **ids, size_t *n) {
  *ids = NULL;
  *n = 0;
  t->out.n = 0;
  size_t seg = 0, i = 0;
  while (i < len) {
    if (!t->added_first[(unsigned char)text[i]]) { i++; continue; }
    int k = match_added(t, text, len, i);
    if (k < 0) { i++; continue; }
    const added_tok *a = &t->added[k];
    size_t end = i;
    if (a->lstrip) while (end > seg && is_ws_byte((unsigned char)text[end - 1])) end--;
    if (encode_segment(t, text + seg, end - seg) || ivec_push(&t->out, a->id)) return -1;
    i += a->content_len;
    if (a->rstrip) while (i < len && is_ws_byte((unsigned char)text[i])) i++;
    seg = i;
  }
  if (encode_segment(t, text + seg, len - seg)) return -1;
  if (t->out.n) {
    int32_t *r = malloc(t->out.n * sizeof *r);
    if (!r) return CF_ERR("encode: out of memory (%zu ids)", t->out.n);
    memcpy(r, t->out.p, t->out.n * sizeof *r);
    *ids = r;
    *n = t->out.n;
  }
  return 0;
}

/* ---------------------------------------------------------------- decode and lookups */

int cf_bpe_decode(const cf_bpe *t, const int32_t *ids, size_t n, int flags, char **out,
                  size_t *out_len) {
  *out = NULL;
  *out_len = 0;
  size_t total = 0;
  for (size_t i = 0; i < n; i++) {
    int32_t id = ids[i];
    bool unknown = id < 0 || (size_t)id >= t->n_ids || !(t->toks[id].flags & T_PRESENT);
    if (unknown && (id < 0 || !(flags & CF_BPE_SKIP_UNKNOWN)))
      return CF_ERR("decode: id %d (position %zu) is not a token of this vocabulary (size %zu)",
                    id, i + 1, t->n_ids); /* positions count from 1, as the other messages' */
    if (!unknown) total += t->toks[id].bytes_len;
  }
  char *r = malloc(total + 1);
  if (!r) return CF_ERR("decode: out of memory (%zu bytes)", total);
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    if ((size_t)ids[i] >= t->n_ids || !(t->toks[ids[i]].flags & T_PRESENT)) continue; /* skipped: unknown */
    const tok *k = &t->toks[ids[i]];
    if ((flags & CF_BPE_SKIP_SPECIAL) && (k->flags & T_SPECIAL)) continue;
    memcpy(r + o, t->strs.p + k->bytes_off, k->bytes_len);
    o += k->bytes_len;
  }
  r[o] = 0;
  *out = r;
  *out_len = o;
  return 0;
}

int32_t cf_bpe_token_to_id(const cf_bpe *t, const char *s, size_t len) {
  int32_t id = smap_get(t, &t->added_map, s, len);
  return id >= 0 ? id : smap_get(t, &t->vocab, s, len);
}

const char *cf_bpe_id_to_token(const cf_bpe *t, int32_t id, size_t *len) {
  if (id < 0 || (size_t)id >= t->n_ids || !(t->toks[id].flags & T_PRESENT)) return NULL;
  return tok_key(t, id, len);
}

size_t cf_bpe_vocab_size(const cf_bpe *t) { return t->n_ids; }
size_t cf_bpe_n_added(const cf_bpe *t) { return t->n_added; }

int cf_bpe_added(const cf_bpe *t, size_t i, int32_t *id, const char **content, size_t *len,
                 int *special) {
  if (i >= t->n_added) return CF_ERR("added token index %zu out of range [0, %zu)", i, t->n_added);
  const added_tok *a = &t->added[i];
  *id = a->id;
  *content = t->strs.p + a->content_off;
  *len = a->content_len;
  *special = a->special;
  return 0;
}
