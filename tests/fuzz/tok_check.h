/* tok_check.h - the tokenizer properties shared by fuzz_tokenizer.c and fuzz_tokenizer_json.c.
 *
 * A violated property is printed (file, line, condition) and traps, which libFuzzer reports as a
 * crash.
 *
 * What bpe.h promises, and so what is checked for an input x that encodes (tok_check_text):
 *   - every id is in [0, vocab_size) and names a token (id_to_token is not NULL);
 *   - encoding x again gives the same ids (the second time mostly from the word cache);
 *   - decode(encode(x)) == x byte for byte, with the exceptions the tokenizer.json itself asks
 *     for: an NFC normalizer gives back the NFC of x, taken the way bpe.c takes it (added tokens
 *     are matched in the raw text first, leftmost-longest; each stretch between them is
 *     normalised one valid UTF-8 run at a time, invalid bytes and the code points of
 *     cf_bpe_hf_starter kept as they are: see nfc() in bpe.c); add_prefix_space and lstrip/rstrip add or drop whitespace, and an id that is both a
 *     vocabulary token and an added token decodes to the added content (bpe.c's design note),
 *     which is not the byte-level spelling BPE reached it by: for those three the round trip is
 *     not checked (tok_cfg.exact == 0). Invalid UTF-8, NULs and special tokens are no exception;
 *   - decode(ids, CF_BPE_SKIP_SPECIAL) == decode(the ids less those of special added tokens).
 */
#ifndef CF_FUZZ_TOK_CHECK_H
#define CF_FUZZ_TOK_CHECK_H

#include "error.h"
#include "text/bpe.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#define REQUIRE(c)                                                                                            \
  do {                                                                                                        \
    if (!(c)) {                                                                                               \
      fprintf(stderr, "%s:%d: property violated: %s\n", __FILE__, __LINE__, #c);                            \
      __builtin_trap();                                                                                       \
    }                                                                                                         \
  } while (0)

/* ---------------------------------------------------------------- what the file asks for */

typedef struct {
  int nfc;   /* the normalizer is NFC (alone or in a Sequence) */
  int exact; /* the round trip holds (up to NFC): no prefix space, no lstrip/rstrip, no shared id */
} tok_cfg;

static inline const char *tc_type(const cJSON *o) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "type");
  return cJSON_IsString(v) ? v->valuestring : "";
}

static inline int tc_true(const cJSON *o, const char *k) {
  return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, k));
}

/* Read the way bpe.c's load_normalizer reads it. */
static inline int tc_nfc(const cJSON *n) {
  if (!n) return 0;
  if (!strcmp(tc_type(n), "NFC")) return 1;
  int r = 0;
  if (!strcmp(tc_type(n), "Sequence")) {
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(n, "normalizers")) r |= tc_nfc(e);
  }
  return r;
}

static inline int tc_cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Fill *c from the parsed tokenizer.json (only meaningful when cf_bpe_load_json accepted it). */
static inline void tok_cfg_from(const cJSON *root, tok_cfg *c) {
  memset(c, 0, sizeof *c);
  c->nfc = tc_nfc(cJSON_GetObjectItemCaseSensitive(root, "normalizer"));
  int inexact = 0;
  const cJSON *p = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), *e;
  inexact |= tc_true(p, "add_prefix_space");
  cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(p, "pretokenizers"))
    inexact |= tc_true(e, "add_prefix_space");
  const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
  cJSON_ArrayForEach(e, added) inexact |= tc_true(e, "lstrip") || tc_true(e, "rstrip");
  /* an id both in the vocabulary and among the added tokens */
  const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
  const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
  size_t nv = 0;
  cJSON_ArrayForEach(e, vocab) nv++;
  double *ids = malloc((nv ? nv : 1) * sizeof *ids);
  REQUIRE(ids);
  nv = 0;
  cJSON_ArrayForEach(e, vocab) ids[nv++] = e->valuedouble;
  qsort(ids, nv, sizeof *ids, tc_cmp_double);
  cJSON_ArrayForEach(e, added) {
    double id = cJSON_GetObjectItemCaseSensitive(e, "id")->valuedouble;
    inexact |= bsearch(&id, ids, nv, sizeof *ids, tc_cmp_double) != NULL;
  }
  free(ids);
  c->exact = !inexact;
}

/* The same from the tokenizer.json text. */
static inline int tok_cfg_of(const char *json, size_t len, tok_cfg *c) {
  cJSON *root = cJSON_ParseWithLength(json, len);
  if (!root) return -1;
  tok_cfg_from(root, c);
  cJSON_Delete(root);
  return 0;
}

/* ---------------------------------------------------------------- the expected decode */

typedef struct { char *p; size_t n, cap; } tc_buf;

static inline void tc_add(tc_buf *b, const void *s, size_t n) {
  if (b->n + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + n + 1) cap *= 2;
    b->p = realloc(b->p, cap);
    REQUIRE(b->p);
    b->cap = cap;
  }
  if (n) memcpy(b->p + b->n, s, n);
  b->n += n;
}

static inline void tc_nfc_into(tc_buf *o, const uint8_t *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    size_t j = i, stop = 1; /* bytes copied as they are after the run: an invalid byte */
    for (;;) {
      utf8proc_int32_t cp;
      utf8proc_ssize_t l = j < n ? utf8proc_iterate(s + j, (utf8proc_ssize_t)(n - j), &cp) : 0;
      if (l <= 0) break;
      if (cf_bpe_hf_starter(cp)) { /* kept as is, the text on either side normalised apart */
        stop = (size_t)l;
        break;
      }
      j += (size_t)l;
    }
    if (j > i) {
      utf8proc_uint8_t *dst = NULL;
      utf8proc_ssize_t m =
        utf8proc_map(s + i, (utf8proc_ssize_t)(j - i), &dst, UTF8PROC_STABLE | UTF8PROC_COMPOSE);
      if (m >= 0) tc_add(o, dst, (size_t)m);
      else tc_add(o, s + i, j - i);
      free(dst);
    }
    if (j < n) {
      tc_add(o, s + j, stop);
      j += stop;
    }
    i = j;
  }
}

/* The added tokens of a tokenizer, read once through the public API. */
typedef struct {
  size_t n;
  const char **content;
  size_t *len;
  int32_t *id;
  int *special;
} tc_added;

static inline void tc_added_init(const cf_bpe *t, tc_added *a) {
  a->n = cf_bpe_n_added(t);
  size_t m = a->n ? a->n : 1;
  a->content = malloc(m * sizeof *a->content);
  a->len = malloc(m * sizeof *a->len);
  a->id = malloc(m * sizeof *a->id);
  a->special = malloc(m * sizeof *a->special);
  REQUIRE(a->content && a->len && a->id && a->special);
  for (size_t i = 0; i < a->n; i++) {
    REQUIRE(cf_bpe_added(t, i, &a->id[i], &a->content[i], &a->len[i], &a->special[i]) == 0);
    REQUIRE(a->len[i] > 0 && a->id[i] >= 0 && (size_t)a->id[i] < cf_bpe_vocab_size(t));
  }
  REQUIRE(cf_bpe_added(t, a->n, &(int32_t){0}, &(const char *){0}, &(size_t){0}, &(int){0}) == -1);
}

static inline void tc_added_free(tc_added *a) {
  free(a->content);
  free(a->len);
  free(a->id);
  free(a->special);
}

/* decode(encode(x)) as the tokenizer must give it (see the header). */
static inline void tc_expected(const tc_added *a, int nfc, const uint8_t *x, size_t n, tc_buf *o) {
  o->n = 0;
  size_t seg = 0, i = 0;
  while (i < n) {
    size_t best = 0;
    for (size_t k = 0; k < a->n; k++)
      if (a->len[k] > best && a->len[k] <= n - i && !memcmp(x + i, a->content[k], a->len[k]))
        best = a->len[k];
    if (!best) { i++; continue; }
    if (nfc) tc_nfc_into(o, x + seg, i - seg);
    else tc_add(o, x + seg, i - seg);
    tc_add(o, x + i, best);
    i += best;
    seg = i;
  }
  if (nfc) tc_nfc_into(o, x + seg, n - seg);
  else tc_add(o, x + seg, n - seg);
}

/* ---------------------------------------------------------------- the checks */

static inline void tc_check_ids(const cf_bpe *t, const int32_t *ids, size_t n) {
  size_t v = cf_bpe_vocab_size(t);
  for (size_t i = 0; i < n; i++) {
    size_t kl = 0;
    REQUIRE(ids[i] >= 0 && (size_t)ids[i] < v);
    REQUIRE(cf_bpe_id_to_token(t, ids[i], &kl) != NULL);
  }
}

static inline int tc_is_special(const tc_added *a, int32_t id) {
  for (size_t k = 0; k < a->n; k++)
    if (a->special[k] && a->id[k] == id) return 1;
  return 0;
}

/* Encode x and check every property. Returns the encode status (-1 is allowed only when
 * may_fail: a tokenizer.json without some byte token cannot encode that byte). */
static inline int tok_check_text(cf_bpe *t, const tok_cfg *cfg, const tc_added *a, const uint8_t *x,
                                 size_t n, int may_fail, tc_buf *want) {
  int32_t *ids = NULL, *ids2 = NULL;
  size_t nid = 0, nid2 = 0;
  if (cf_bpe_encode(t, (const char *)x, n, &ids, &nid)) {
    REQUIRE(may_fail && cf_error_message()[0] != 0 && ids == NULL && nid == 0);
    return -1;
  }
  REQUIRE((nid == 0) == (ids == NULL));
  if (cfg->exact && !cfg->nfc) REQUIRE(nid <= n); /* every token covers a byte or more */
  tc_check_ids(t, ids, nid);

  REQUIRE(cf_bpe_encode(t, (const char *)x, n, &ids2, &nid2) == 0);
  REQUIRE(nid2 == nid && (nid == 0 || memcmp(ids, ids2, nid * sizeof *ids) == 0));
  free(ids2);

  char *out = NULL;
  size_t out_len = 0;
  REQUIRE(cf_bpe_decode(t, ids, nid, 0, &out, &out_len) == 0);
  REQUIRE(out && out[out_len] == 0);
  if (cfg->exact) {
    tc_expected(a, cfg->nfc, x, n, want);
    REQUIRE(out_len == want->n && memcmp(out, want->p, out_len) == 0);
  }

  /* skip_special == decoding the ids without the special ones */
  int32_t *kept = malloc((nid ? nid : 1) * sizeof *kept);
  REQUIRE(kept);
  size_t nk = 0;
  for (size_t i = 0; i < nid; i++)
    if (!tc_is_special(a, ids[i])) kept[nk++] = ids[i];
  char *o1 = NULL, *o2 = NULL;
  size_t l1 = 0, l2 = 0;
  REQUIRE(cf_bpe_decode(t, ids, nid, CF_BPE_SKIP_SPECIAL, &o1, &l1) == 0);
  REQUIRE(cf_bpe_decode(t, kept, nk, 0, &o2, &l2) == 0);
  REQUIRE(l1 == l2 && memcmp(o1, o2, l1) == 0 && l1 <= out_len);
  free(o1);
  free(o2);
  free(kept);
  free(out);
  free(ids);
  return 0;
}

/* Decode arbitrary ids: it succeeds exactly when every id names a token. */
static inline void tok_check_decode_any(const cf_bpe *t, const int32_t *ids, size_t n) {
  int all = 1;
  for (size_t i = 0; i < n; i++) {
    size_t kl;
    all &= cf_bpe_id_to_token(t, ids[i], &kl) != NULL;
  }
  char *out = NULL;
  size_t len = 0;
  int rc = cf_bpe_decode(t, ids, n, (n & 1) ? CF_BPE_SKIP_SPECIAL : 0, &out, &len);
  if (all) {
    REQUIRE(rc == 0 && out && out[len] == 0);
  } else {
    REQUIRE(rc == -1 && out == NULL && len == 0 && cf_error_message()[0] != 0);
  }
  free(out);
}

#endif
