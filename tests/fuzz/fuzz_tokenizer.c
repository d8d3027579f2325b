/* fuzz_tokenizer.c - libFuzzer target for the byte-level BPE tokenizer (core/text).
 *
 * Build and run with tests/fuzz/run.sh. The tokenizers are loaded once (LLVMFuzzerInitialize):
 *   toy        examples/toy/model/tokenizer.json (256 byte tokens, no merges, no regex)
 *   qwen2-nfc  built here: the toy's bytes + a few dozen merges (ranks chosen so that merge order
 *              matters), added tokens (nested, non-ASCII, special or not), NFC, the Qwen2 split
 *   gpt2-im    the same vocabulary with the GPT-2 ByteLevel regex and ignore_merges
 *   llama3     the same with the Llama-3 split followed by the GPT-2 ByteLevel regex
 *   qwen       ../shared/data/tokenizer/qwen/tokenizer.json when present (read in place)
 * For every input, on every tokenizer: the properties of tok_check.h (ids in range and naming a
 * token, the same ids when encoded twice, decode(encode(x)) == x up to the NFC the file asks
 * for, skip_special consistent), plus decoding the input's bytes read as ids (succeeds exactly
 * when every id names a token), and the pre-tokenizers' own promise: for each pattern the pieces
 * tile the input (next > i) and never cut a valid UTF-8 character. Last, the ids must equal
 * those of a plain reference BPE (below: no heap, no word cache) built from the same file.
 */
#include "tok_check.h"

#include <stdio.h>

#ifndef CONFIT_ROOT
#define CONFIT_ROOT "."
#endif

#define MAX_TOKS 8
#define REF_MAX_WORD 512

struct ref;
static char *key_of(const char *raw, size_t n);
static struct ref *ref_new(const cf_bpe *t, const cJSON *root);

static struct {
  const char *name;
  cf_bpe *t;
  tok_cfg cfg;
  tc_added added;
  struct ref *ref;
} toks[MAX_TOKS];
static int n_toks;
static tc_buf want;

static char *read_all(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  char *p = NULL;
  size_t n = 0, cap = 0, r;
  do {
    if (n + 65536 > cap) {
      cap = cap ? cap * 2 : 1 << 20;
      p = realloc(p, cap);
      REQUIRE(p);
    }
    r = fread(p + n, 1, cap - n, f);
    n += r;
  } while (r > 0);
  fclose(f);
  *len = n;
  return p;
}

static void add_tokenizer(const char *name, const char *json, size_t len, const char *path) {
  cf_bpe *t = path ? cf_bpe_load(path) : cf_bpe_load_json(json, len);
  if (!t) {
    fprintf(stderr, "fuzz_tokenizer: %s: %s\n", name, cf_error_message());
    abort();
  }
  cJSON *root = cJSON_ParseWithLength(json, len);
  REQUIRE(n_toks < MAX_TOKS && root);
  tok_cfg_from(root, &toks[n_toks].cfg);
  toks[n_toks].name = name;
  toks[n_toks].t = t;
  tc_added_init(t, &toks[n_toks].added);
  toks[n_toks].ref = ref_new(t, root);
  cJSON_Delete(root);
  fprintf(stderr, "fuzz_tokenizer: %s: %zu ids, %zu added, nfc %d\n", name, cf_bpe_vocab_size(t),
          toks[n_toks].added.n, toks[n_toks].cfg.nfc);
  n_toks++;
}

/* ---------------------------------------------------------------- a plain reference BPE
 *
 * The encoder's pipeline redone the simple way, to compare ids with: added tokens matched
 * leftmost-longest in the raw text, NFC of each stretch between them (tc_nfc_into), the Split
 * pieces (cf_pretok_next, whose own promise check_pretok checks), the GPT-2 pieces when ByteLevel
 * uses its regex, then per word: the whole word when ignore_merges finds it in the vocabulary,
 * else BPE by rescanning the word for the lowest-ranked pair (leftmost among equals) and merging
 * that one pair, O(n^2) instead of bpe.c's heap and word cache. Words longer than REF_MAX_WORD
 * bytes make the reference give up on that input.
 */
struct ref {
  int split, use_regex, ignore_merges, nfc;
  int32_t byte_id[256];
  uint64_t *keys; /* (left id << 32 | right id) -> rank, merged id; UINT64_MAX empty */
  uint32_t *rank;
  int32_t *merged;
  size_t mask;
};

static uint64_t ref_pair(int32_t a, int32_t b) { return (uint64_t)(uint32_t)a << 32 | (uint32_t)b; }

static size_t ref_slot(const struct ref *r, uint64_t k) {
  size_t i = (size_t)((k * 0xff51afd7ed558ccdull) >> 17) & r->mask;
  while (r->keys[i] != UINT64_MAX && r->keys[i] != k) i = (i + 1) & r->mask;
  return i;
}

static int32_t ref_id(const cf_bpe *t, const char *s, size_t n) { return cf_bpe_token_to_id(t, s, n); }

static struct ref *ref_new(const cf_bpe *t, const cJSON *root) {
  struct ref *r = calloc(1, sizeof *r);
  REQUIRE(r);
  r->nfc = tc_nfc(cJSON_GetObjectItemCaseSensitive(root, "normalizer"));
  const cJSON *p = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), *bl = p;
  r->split = CF_PRETOK_NONE;
  if (!strcmp(tc_type(p), "Sequence")) {
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(p, "pretokenizers");
    const cJSON *re = cJSON_GetObjectItemCaseSensitive(
      cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(list, 0), "pattern"), "Regex");
    if (cJSON_GetArraySize(list) == 2) r->split = cf_pretok_kind_of(re->valuestring);
    bl = cJSON_GetArrayItem(list, cJSON_GetArraySize(list) - 1);
  }
  const cJSON *ur = cJSON_GetObjectItemCaseSensitive(bl, "use_regex");
  r->use_regex = !ur || cJSON_IsNull(ur) || cJSON_IsTrue(ur);
  REQUIRE(!tc_true(bl, "add_prefix_space")); /* not modelled */
  const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
  r->ignore_merges = tc_true(model, "ignore_merges");
  for (unsigned b = 0; b < 256; b++) {
    char c = (char)b, *k = key_of(&c, 1);
    r->byte_id[b] = ref_id(t, k, strlen(k));
    REQUIRE(r->byte_id[b] >= 0);
    free(k);
  }
  const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges"), *e;
  size_t cap = 16;
  while (cap < 2 * (size_t)cJSON_GetArraySize(merges) + 1) cap *= 2;
  r->mask = cap - 1;
  r->keys = malloc(cap * sizeof *r->keys);
  r->rank = malloc(cap * sizeof *r->rank);
  r->merged = malloc(cap * sizeof *r->merged);
  REQUIRE(r->keys && r->rank && r->merged);
  memset(r->keys, 0xff, cap * sizeof *r->keys);
  uint32_t rank = 0;
  char cat[1024];
  cJSON_ArrayForEach(e, merges) {
    const char *a, *b;
    size_t la, lb;
    if (cJSON_IsString(e)) {
      a = e->valuestring;
      const char *sp = strchr(a, ' ');
      REQUIRE(sp);
      la = (size_t)(sp - a);
      b = sp + 1;
    } else {
      a = cJSON_GetArrayItem(e, 0)->valuestring;
      b = cJSON_GetArrayItem(e, 1)->valuestring;
      la = strlen(a);
    }
    lb = strlen(b);
    REQUIRE(la + lb < sizeof cat);
    memcpy(cat, a, la);
    memcpy(cat + la, b, lb);
    int32_t ia = ref_id(t, a, la), ib = ref_id(t, b, lb), im = ref_id(t, cat, la + lb);
    REQUIRE(ia >= 0 && ib >= 0 && im >= 0);
    size_t s = ref_slot(r, ref_pair(ia, ib)); /* a pair listed twice takes its last rank, as in HF */
    r->keys[s] = ref_pair(ia, ib);
    r->rank[s] = rank;
    r->merged[s] = im;
    rank++;
  }
  return r;
}

typedef struct { int32_t *p; size_t n, cap; } ref_ids;

static void ref_push(ref_ids *v, int32_t id) {
  if (v->n == v->cap) {
    v->cap = v->cap ? 2 * v->cap : 256;
    v->p = realloc(v->p, v->cap * sizeof *v->p);
    REQUIRE(v->p);
  }
  v->p[v->n++] = id;
}

static int ref_word(const cf_bpe *t, const struct ref *r, const uint8_t *w, size_t n, ref_ids *out) {
  if (n > REF_MAX_WORD) return -1;
  if (r->ignore_merges && n > 1) {
    char *k = key_of((const char *)w, n);
    int32_t id = cf_bpe_token_to_id(t, k, strlen(k));
    free(k);
    if (id >= 0) {
      ref_push(out, id);
      return 0;
    }
  }
  int32_t sym[REF_MAX_WORD];
  size_t m = n;
  for (size_t i = 0; i < n; i++) sym[i] = r->byte_id[w[i]];
  for (;;) {
    uint32_t best = UINT32_MAX;
    size_t at = 0;
    int32_t to = -1;
    for (size_t i = 0; i + 1 < m; i++) {
      size_t s = ref_slot(r, ref_pair(sym[i], sym[i + 1]));
      if (r->keys[s] != UINT64_MAX && r->rank[s] < best) {
        best = r->rank[s];
        at = i;
        to = r->merged[s];
      }
    }
    if (to < 0) break;
    sym[at] = to;
    memmove(sym + at + 1, sym + at + 2, (m - at - 2) * sizeof *sym);
    m--;
  }
  for (size_t i = 0; i < m; i++) ref_push(out, sym[i]);
  return 0;
}

static int ref_unit(const cf_bpe *t, const struct ref *r, const uint8_t *s, size_t n, ref_ids *out) {
  if (!r->use_regex) return n ? ref_word(t, r, s, n, out) : 0;
  for (size_t i = 0; i < n;) {
    size_t j = cf_pretok_next(CF_PRETOK_GPT2, (const char *)s, n, i);
    if (ref_word(t, r, s + i, j - i, out)) return -1;
    i = j;
  }
  return 0;
}

static int ref_segment(const cf_bpe *t, const struct ref *r, const uint8_t *s, size_t n, ref_ids *out) {
  tc_buf norm = {0};
  if (r->nfc) {
    tc_nfc_into(&norm, s, n);
    s = (const uint8_t *)norm.p;
    n = norm.n;
  }
  int rc = 0;
  for (size_t i = 0; i < n && !rc;) {
    size_t j = cf_pretok_next((cf_pretok_kind)r->split, (const char *)s, n, i);
    rc = ref_unit(t, r, s + i, j - i, out);
    i = j;
  }
  free(norm.p);
  return rc;
}

/* The ids of x by the reference, or -1 when it gives up (a word too long). */
static int ref_encode(const cf_bpe *t, const struct ref *r, const tc_added *a, const uint8_t *x, size_t n,
                      ref_ids *out) {
  out->n = 0;
  size_t seg = 0, i = 0;
  while (i < n) {
    size_t best = 0;
    int32_t id = -1;
    for (size_t k = 0; k < a->n; k++)
      if (a->len[k] > best && a->len[k] <= n - i && !memcmp(x + i, a->content[k], a->len[k])) {
        best = a->len[k];
        id = a->id[k];
      }
    if (!best) { i++; continue; }
    if (ref_segment(t, r, x + seg, i - seg, out)) return -1;
    ref_push(out, id);
    i += best;
    seg = i;
  }
  return ref_segment(t, r, x + seg, n - seg, out);
}

/* ---------------------------------------------------------------- the built-in variants */

/* GPT-2 bytes_to_unicode: the UTF-8 of the character standing for byte b. */
static void byte_key(unsigned b, char out[4], size_t *len) {
  int n = 0;
  unsigned cp = 0;
  for (unsigned c = 0; c < 256; c++) {
    int printable = (c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF);
    unsigned v = printable ? c : 256u + (unsigned)n++;
    if (c == b) cp = v;
  }
  *len = (size_t)utf8proc_encode_char((utf8proc_int32_t)cp, (utf8proc_uint8_t *)out);
}

static char *key_of(const char *raw, size_t n) {
  char *k = malloc(4 * n + 1), c[4];
  size_t o = 0, l;
  REQUIRE(k);
  for (size_t i = 0; i < n; i++) {
    byte_key((unsigned char)raw[i], c, &l);
    memcpy(k + o, c, l);
    o += l;
  }
  k[o] = 0;
  return k;
}

typedef struct { const char *a; size_t la; const char *b; size_t lb; } merge;
#define M(a, b) {a, sizeof(a) - 1, b, sizeof(b) - 1}
/* In rank order. "aa a" before "a a" and "b c" before "a b" make the order of merging visible;
 * the byte pairs build 中, é (composed and e + U+0301), 😀; "a a" is given twice (first wins). */
static const merge MERGES[] = {
  M("aa", "a"), M("a", "a"), M("aa", "aa"), M("aaaa", "aaaa"), M("b", "c"), M("a", "b"), M("ab", "c"),
  M("t", "h"), M("th", "e"), M(" ", "t"), M(" t", "he"), M(" ", "a"), M("i", "n"), M("in", "g"),
  M(" ", " "), M("  ", "  "), M("\n", "\n"), M("\r", "\n"), M("1", "2"), M("12", "3"),
  M("\xe4", "\xb8"), M("\xe4\xb8", "\xad"), M("\xc3", "\xa9"), M("e", "\xcc"), M("e\xcc", "\x81"),
  M("'", "s"), M("<", "|"), M("\xf0", "\x9f"), M("\xf0\x9f", "\x98"), M("\xf0\x9f\x98", "\x80"),
  M("\xff", "\xff"), M("\0", "\0"), M(" ", "\xe4\xb8\xad"), M("a", "a"),
};
/* No content may equal a vocabulary key: the reference looks keys up with token_to_id, which
 * prefers added tokens ("\xc3\xa9" would be the key of byte 0xE9). */
static const struct { const char *content; int special; } ADDED[] = {
  {"<|endoftext|>", 1}, {"<|im_end|>", 1}, {"<x>", 1}, {"<x><x>", 0}, {"<think>", 0},
  {"\xe1\xba\xbf", 0}, /* U+1EBF, the NFC of e U+0302 U+0301 */
};

static const char *const RE_QWEN2 =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
  "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char *const RE_LLAMA3 =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
  "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

static cJSON *bytelevel(int use_regex) {
  cJSON *b = cJSON_CreateObject();
  cJSON_AddStringToObject(b, "type", "ByteLevel");
  cJSON_AddBoolToObject(b, "add_prefix_space", 0);
  cJSON_AddBoolToObject(b, "trim_offsets", 0);
  cJSON_AddBoolToObject(b, "use_regex", use_regex);
  return b;
}

/* split: NULL for plain ByteLevel, else the Split regex placed before ByteLevel(use_regex). */
static char *variant_json(int nfc, const char *split, int use_regex, int ignore_merges) {
  cJSON *root = cJSON_CreateObject(), *model = cJSON_CreateObject(), *vocab = cJSON_CreateObject();
  cJSON *merges = cJSON_CreateArray(), *added = cJSON_CreateArray();
  int next = 256;
  for (unsigned b = 0; b < 256; b++) {
    char c = (char)b, *k = key_of(&c, 1);
    cJSON_AddNumberToObject(vocab, k, b);
    free(k);
  }
  for (size_t i = 0; i < sizeof MERGES / sizeof *MERGES; i++) {
    const merge *m = &MERGES[i];
    char raw[64];
    const char *parts[3] = {m->a, m->b, raw};
    size_t lens[3] = {m->la, m->lb, m->la + m->lb};
    memcpy(raw, m->a, m->la);
    memcpy(raw + m->la, m->b, m->lb);
    char *ka = key_of(m->a, m->la), *kb = key_of(m->b, m->lb);
    for (int p = 0; p < 3; p++) { /* parts and result in the vocabulary */
      char *k = key_of(parts[p], lens[p]);
      if (!cJSON_GetObjectItemCaseSensitive(vocab, k)) cJSON_AddNumberToObject(vocab, k, next++);
      free(k);
    }
    cJSON *pair = cJSON_CreateArray();
    cJSON_AddItemToArray(pair, cJSON_CreateString(ka));
    cJSON_AddItemToArray(pair, cJSON_CreateString(kb));
    if (i % 2) { /* both spellings of a merge */
      cJSON_AddItemToArray(merges, pair);
    } else {
      char *s = malloc(strlen(ka) + strlen(kb) + 2);
      REQUIRE(s);
      sprintf(s, "%s %s", ka, kb);
      cJSON_AddItemToArray(merges, cJSON_CreateString(s));
      cJSON_Delete(pair);
      free(s);
    }
    free(ka);
    free(kb);
  }
  for (size_t i = 0; i < sizeof ADDED / sizeof *ADDED; i++) {
    cJSON *a = cJSON_CreateObject();
    cJSON_AddNumberToObject(a, "id", next++);
    cJSON_AddStringToObject(a, "content", ADDED[i].content);
    cJSON_AddBoolToObject(a, "single_word", 0);
    cJSON_AddBoolToObject(a, "lstrip", 0);
    cJSON_AddBoolToObject(a, "rstrip", 0);
    cJSON_AddBoolToObject(a, "normalized", 0);
    cJSON_AddBoolToObject(a, "special", ADDED[i].special);
    cJSON_AddItemToArray(added, a);
  }
  cJSON_AddStringToObject(root, "version", "1.0");
  cJSON_AddItemToObject(root, "added_tokens", added);
  if (nfc) {
    cJSON *n = cJSON_CreateObject();
    cJSON_AddStringToObject(n, "type", "NFC");
    cJSON_AddItemToObject(root, "normalizer", n);
  } else {
    cJSON_AddNullToObject(root, "normalizer");
  }
  if (split) {
    cJSON *seq = cJSON_CreateObject(), *list = cJSON_CreateArray(), *sp = cJSON_CreateObject();
    cJSON *pat = cJSON_CreateObject();
    cJSON_AddStringToObject(sp, "type", "Split");
    cJSON_AddStringToObject(pat, "Regex", split);
    cJSON_AddItemToObject(sp, "pattern", pat);
    cJSON_AddStringToObject(sp, "behavior", "Isolated");
    cJSON_AddBoolToObject(sp, "invert", 0);
    cJSON_AddItemToArray(list, sp);
    cJSON_AddItemToArray(list, bytelevel(use_regex));
    cJSON_AddStringToObject(seq, "type", "Sequence");
    cJSON_AddItemToObject(seq, "pretokenizers", list);
    cJSON_AddItemToObject(root, "pre_tokenizer", seq);
  } else {
    cJSON_AddItemToObject(root, "pre_tokenizer", bytelevel(use_regex));
  }
  cJSON_AddItemToObject(root, "decoder", bytelevel(0));
  cJSON_AddStringToObject(model, "type", "BPE");
  cJSON_AddNullToObject(model, "dropout");
  cJSON_AddBoolToObject(model, "byte_fallback", 0);
  cJSON_AddBoolToObject(model, "ignore_merges", ignore_merges);
  cJSON_AddItemToObject(model, "vocab", vocab);
  cJSON_AddItemToObject(model, "merges", merges);
  cJSON_AddItemToObject(root, "model", model);
  char *s = cJSON_PrintUnformatted(root);
  REQUIRE(s);
  cJSON_Delete(root);
  return s;
}

/* CONFIT_FUZZ_WRITE_JSON=DIR: also write the built-in tokenizer.json variants to DIR (seeds for
 * fuzz_tokenizer_json). */
static void add_variant(const char *name, char *json) {
  const char *dir = getenv("CONFIT_FUZZ_WRITE_JSON");
  if (dir && *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.json", dir, name);
    FILE *f = fopen(path, "wb");
    REQUIRE(f && fwrite(json, 1, strlen(json), f) == strlen(json) && fclose(f) == 0);
  }
  add_tokenizer(name, json, strlen(json), NULL);
  free(json);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  const char *toy = CONFIT_ROOT "/examples/toy/model/tokenizer.json";
  const char *qwen = CONFIT_ROOT "/../shared/data/tokenizer/qwen/tokenizer.json";
  size_t len = 0;
  char *json = read_all(toy, &len);
  if (!json) {
    fprintf(stderr, "fuzz_tokenizer: cannot read %s\n", toy);
    abort();
  }
  add_tokenizer("toy", json, len, toy);
  free(json);
  add_variant("qwen2-nfc", variant_json(1, RE_QWEN2, 0, 0));
  add_variant("gpt2-im", variant_json(0, NULL, 1, 1));
  add_variant("llama3", variant_json(0, RE_LLAMA3, 1, 0));
  json = read_all(qwen, &len);
  if (json) {
    add_tokenizer("qwen", json, len, qwen);
    free(json);
  } else {
    fprintf(stderr, "fuzz_tokenizer: %s is absent: fuzzing without the Qwen tokenizer\n", qwen);
  }
  return 0;
}

/* Pieces of every pattern tile the text and end on character boundaries. */
static void check_pretok(const uint8_t *x, size_t n) {
  uint8_t *cut = calloc(n + 1, 1); /* cut[j]: j is not inside a valid UTF-8 character */
  REQUIRE(cut);
  for (size_t i = 0; i < n;) {
    utf8proc_int32_t cp;
    utf8proc_ssize_t l = utf8proc_iterate(x + i, (utf8proc_ssize_t)(n - i), &cp);
    cut[i] = 1;
    i += l > 0 ? (size_t)l : 1;
  }
  cut[n] = 1;
  static const cf_pretok_kind kinds[] = {CF_PRETOK_QWEN2, CF_PRETOK_LLAMA3, CF_PRETOK_GPT2, CF_PRETOK_NONE};
  for (size_t k = 0; k < sizeof kinds / sizeof *kinds; k++)
    for (size_t i = 0; i < n;) {
      size_t j = cf_pretok_next(kinds[k], (const char *)x, n, i);
      REQUIRE(j > i && j <= n && cut[j]);
      i = j;
    }
  free(cut);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static ref_ids want_ids;
  check_pretok(data, size);
  for (int k = 0; k < n_toks; k++) {
    REQUIRE(tok_check_text(toks[k].t, &toks[k].cfg, &toks[k].added, data, size, 0, &want) == 0);
    if (ref_encode(toks[k].t, toks[k].ref, &toks[k].added, data, size, &want_ids) == 0) {
      int32_t *ids = NULL;
      size_t n = 0;
      REQUIRE(cf_bpe_encode(toks[k].t, (const char *)data, size, &ids, &n) == 0);
      if (n != want_ids.n || (n && memcmp(ids, want_ids.p, n * sizeof *ids))) {
        fprintf(stderr, "%s: encode gives %zu ids, the reference %zu:\n", toks[k].name, n, want_ids.n);
        for (size_t i = 0; i < n || i < want_ids.n; i++)
          fprintf(stderr, "  %zu: %d %d%s\n", i, i < n ? ids[i] : -1, i < want_ids.n ? want_ids.p[i] : -1,
                  i < n && i < want_ids.n && ids[i] == want_ids.p[i] ? "" : "  <--");
      }
      REQUIRE(n == want_ids.n && (n == 0 || memcmp(ids, want_ids.p, n * sizeof *ids) == 0));
      free(ids);
    }
    /* the same bytes as ids: raw little-endian int32, and folded into [-1, vocab_size] */
    size_t n = size / 4, v = cf_bpe_vocab_size(toks[k].t);
    int32_t *ids = malloc((n ? n : 1) * sizeof *ids);
    REQUIRE(ids);
    for (size_t i = 0; i < n; i++) {
      uint32_t u = (uint32_t)data[4 * i] | (uint32_t)data[4 * i + 1] << 8 | (uint32_t)data[4 * i + 2] << 16 |
                   (uint32_t)data[4 * i + 3] << 24;
      ids[i] = (int32_t)u;
    }
    tok_check_decode_any(toks[k].t, ids, n);
    for (size_t i = 0; i < n; i++) ids[i] = (int32_t)((uint32_t)ids[i] % (v + 2)) - 1;
    tok_check_decode_any(toks[k].t, ids, n);
    free(ids);
  }
  return 0;
}
