/* test_pretok.c - the pre-tokenizer matchers of core/text/pretok.c cut texts into the pieces
 * their regexes (bpe.h) give, at the places the real tokenizer vectors do not reach: modifier
 * letters (Japanese's prolonged sound mark), U+0085 as \s, the Qwen2 pattern's case-insensitive
 * contractions (U+017F long s included) before letters, a newline before a word, and GPT-2's
 * case-sensitive contractions. Expected pieces follow the regex by hand (leftmost alternative,
 * greedy with backtracking), as the comments say. (Nineteenth session: mutation testing found
 * each of these could change with the whole suite passing.)
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "text/bpe.h"

#include "check.h"

/* the pieces of s joined with '|' */
static void cut(cf_pretok_kind k, const char *s, char *out, size_t cap) {
  size_t len = strlen(s), o = 0;
  for (size_t i = 0; i < len;) {
    size_t j = cf_pretok_next(k, s, len, i);
    if (j <= i || j > len) { snprintf(out, cap, "(bad end %zu at %zu)", j, i); return; }
    if (i && o + 1 < cap) out[o++] = '|';
    for (size_t q = i; q < j && o + 1 < cap; q++) out[o++] = s[q];
    i = j;
  }
  out[o] = 0;
}

static void expect(cf_pretok_kind k, const char *s, const char *want, const char *why) {
  char got[256];
  cut(k, s, got, sizeof got);
  CHECK(strcmp(got, want) == 0, "%s: got \"%s\", want \"%s\"", why, got, want);
}

/* (twenty-seventh session, mutation testing) tests/fixtures/hf_edge_cases.json: the pieces Hugging
 * Face's pre-tokenizers cut texts into (tests/fixtures/make_hf_edge_cases.js), as byte ranges;
 * before, a tab or U+3000 taken as the optional space before punctuation, U+3000 not taken as
 * whitespace, Nl and Lt not taken as number and letter, a digit prefixing a word, a CR ending
 * no \s*[\r\n]+ run and GPT-2's ' ?' at the end each passed the suite. */
static void hf_fixture(void) {
  const char *path = "tests/fixtures/hf_edge_cases.json";
  FILE *f = fopen(path, "rb");
  CHECK(f != NULL, "cannot open %s (run from the project root)", path);
  if (!f) return;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *text = malloc((size_t)n + 1);
  size_t got = text ? fread(text, 1, (size_t)n, f) : 0;
  fclose(f);
  CHECK(text && got == (size_t)n, "cannot read %s", path);
  if (!text || got != (size_t)n) { free(text); return; }
  text[n] = 0;
  cJSON *root = cJSON_Parse(text);
  free(text);
  const cJSON *cases = cJSON_GetObjectItemCaseSensitive(root, "pretok");
  CHECK(cJSON_GetArraySize(cases) > 100, "%s: no \"pretok\" cases", path);
  int ncase = 0, bad = 0;
  const cJSON *c;
  cJSON_ArrayForEach(c, cases) {
    const char *kind = cJSON_GetObjectItemCaseSensitive(c, "kind")->valuestring;
    const char *s = cJSON_GetObjectItemCaseSensitive(c, "text")->valuestring;
    const cJSON *pieces = cJSON_GetObjectItemCaseSensitive(c, "pieces");
    cf_pretok_kind k = !strcmp(kind, "qwen2") ? CF_PRETOK_QWEN2 : !strcmp(kind, "llama3") ? CF_PRETOK_LLAMA3
                                                                                       : CF_PRETOK_GPT2;
    size_t len = strlen(s), i = 0;
    int ok = 1;
    const cJSON *pc;
    cJSON_ArrayForEach(pc, pieces) {
      size_t b = (size_t)cJSON_GetArrayItem(pc, 0)->valuedouble, e = (size_t)cJSON_GetArrayItem(pc, 1)->valuedouble;
      size_t j = i < len ? cf_pretok_next(k, s, len, i) : i;
      if (b != i || j != e) { ok = 0; break; }
      i = j;
    }
    ok = ok && i == len;
    ncase++;
    if (!ok) {
      char mine[256];
      cut(k, s, mine, sizeof mine);
      char *want = cJSON_PrintUnformatted(pieces);
      CHECK(0, "%s: \"%s\": cut as \"%s\" (pieces joined with |), Hugging Face's byte ranges are %s", kind, s, mine,
            want ? want : "?");
      free(want);
      bad++;
    }
  }
  CHECK(bad == 0, "%d of %d texts cut unlike Hugging Face's pre-tokenizer", bad, ncase);
  cJSON_Delete(root);
}

/* The matchers look at text[0, len) only: a text may be a part of a larger buffer (encode hands
 * them the text between added tokens, and the bytes after it are the next token's). */
static void within_len(void) {
  for (int k = CF_PRETOK_QWEN2; k <= CF_PRETOK_GPT2; k++) {
    /* an apostrophe at the end, an 's' after it outside the text */
    const char *s = "x's";
    CHECK(cf_pretok_next(k, s, 2, 1) == 2, "kind %d: \"x'\" followed by s outside: the piece ends at %zu, want 2", k,
          cf_pretok_next(k, s, 2, 1));
    /* a lead byte at the end, its continuation outside the text: one invalid byte */
    const char *u = "a\xc3\xa9";
    CHECK(cf_pretok_next(k, u, 2, 1) == 2, "kind %d: lead byte at the end: the piece ends at %zu, want 2", k,
          cf_pretok_next(k, u, 2, 1));
    const char *v = "\xe4\xb8\x96";
    CHECK(cf_pretok_next(k, v, 2, 0) <= 2, "kind %d: a 3-byte character cut at 2 bytes: the piece ends at %zu", k,
          cf_pretok_next(k, v, 2, 0));
  }
}

int main(void) {
  hf_fixture();
  within_len();
  for (int k = CF_PRETOK_QWEN2; k <= CF_PRETOK_LLAMA3; k++) {
    /* U+30FC is Lm, a letter: one word (as Lo katakana around it) */
    expect(k, "\xe3\x82\xb3\xe3\x83\xbc\xe3\x83\x92\xe3\x83\xbc", "\xe3\x82\xb3\xe3\x83\xbc\xe3\x83\x92\xe3\x83\xbc",
           "Lm letters (coffee in katakana)");
    expect(k, "h\xca\xb0i", "h\xca\xb0i", "U+02B0 modifier letter inside a word");
    /* (?i:'s|...|'ll|...) comes first: the contraction, then the rest of the letters */
    expect(k, "we'llama", "we|'ll|ama", "'ll before letters");
    expect(k, "WE'LLAMA", "WE|'LL|AMA", "'LL, case-insensitively");
    expect(k, "x'\xc5\xbf" "a", "x|'\xc5\xbf|a", "'\\u017F: long s folds to s under (?i)");
    /* [^\r\n\p{L}\p{N}]?\p{L}+ takes no CR/LF in front of a word: \s*[\r\n]+ takes it alone */
    expect(k, "a\nb", "a|\n|b", "newline before a word");
    expect(k, "a\rb", "a|\r|b", "CR before a word");
    /* U+0085 is \s: \s+(?!\S) leaves the last one to prefix the word */
    expect(k, "a\xc2\x85\xc2\x85" "b", "a|\xc2\x85|\xc2\x85" "b", "U+0085 is whitespace");
  }
  /* GPT-2's contractions are case-sensitive: 'S is punctuation, then a word */
  expect(CF_PRETOK_GPT2, "HE'S", "HE|'|S", "GPT-2: 'S is no contraction");
  expect(CF_PRETOK_GPT2, "he's", "he|'s", "GPT-2: 's is");
  return check_finish();
}
