/* test_pretok.c - the pre-tokenizer matchers of core/text/pretok.c cut texts into the pieces
 * their regexes (bpe.h) give, at the places the real tokenizer vectors do not reach: modifier
 * letters (Japanese's prolonged sound mark), U+0085 as \s, the Qwen2 pattern's case-insensitive
 * contractions (U+017F long s included) before letters, a newline before a word, and GPT-2's
 * case-sensitive contractions. Expected pieces follow the regex by hand (leftmost alternative,
 * greedy with backtracking), as the comments say. (Nineteenth session: mutation testing found
 * each of these could change with the whole suite passing.)
 */
#include <stdio.h>
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

int main(void) {
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
