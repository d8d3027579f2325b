/* pretok.c - the pre-tokenizer regexes of byte-level BPE tokenizers, as hand-written matchers.
 *
 * tokenizer.json files split text with a regex run by Oniguruma (find-iter, leftmost match,
 * alternatives tried in order, greedy quantifiers with backtracking). Rather than embedding a
 * regex engine we recognise the few patterns in use by their exact source text and implement
 * each one's behaviour directly. Character classes:
 *   \p{L}  utf8proc categories Lu Ll Lt Lm Lo
 *   \p{N}  Nd Nl No
 *   \s     the Unicode White_Space property (what Oniguruma uses): U+0009-000D, 0020, 0085,
 *          00A0, 1680, 2000-200A, 2028, 2029, 202F, 205F, 3000
 * A byte that does not start a valid UTF-8 sequence is one character of its own that is none of
 * L, N or \s (real tokenizers never see such text; here it must merely not crash).
 *
 * Invariant relied on by the callers: every alternative set below matches at every position
 * (letters, digits, whitespace and "other" each have an alternative), so pieces tile the text.
 */
#include "bpe.h"
#include <string.h>
#include <utf8proc.h>

enum { K_L, K_N, K_WS, K_O };

static const char *const PAT_QWEN2 =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
  "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char *const PAT_LLAMA3 =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
  "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char *const PAT_GPT2 =
  "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

int cf_pretok_kind_of(const char *pattern) {
  if (!strcmp(pattern, PAT_QWEN2)) return CF_PRETOK_QWEN2;
  if (!strcmp(pattern, PAT_LLAMA3)) return CF_PRETOK_LLAMA3;
  if (!strcmp(pattern, PAT_GPT2)) return CF_PRETOK_GPT2;
  return -1;
}

/* Decode one strict UTF-8 character at s[i] (i < len): code point, or -1 for an invalid byte
 * (then *l = 1). Rejects overlongs, surrogates and values past U+10FFFF. */
static int32_t dec(const unsigned char *s, size_t len, size_t i, size_t *l) {
  unsigned c = s[i];
  *l = 1;
  if (c < 0x80) return (int32_t)c;
  size_t need;
  uint32_t cp, min;
  if (c >= 0xC2 && c <= 0xDF) { need = 1; cp = c & 0x1F; min = 0x80; }
  else if (c >= 0xE0 && c <= 0xEF) { need = 2; cp = c & 0x0F; min = 0x800; }
  else if (c >= 0xF0 && c <= 0xF4) { need = 3; cp = c & 0x07; min = 0x10000; }
  else return -1;
  if (i + need >= len) return -1;
  for (size_t k = 1; k <= need; k++) {
    unsigned b = s[i + k];
    if ((b & 0xC0) != 0x80) return -1;
    cp = (cp << 6) | (b & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return -1;
  *l = need + 1;
  return (int32_t)cp;
}

static int is_white_space(int32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
         cp == 0x205F || cp == 0x3000;
}

static int kind_of_cp(int32_t cp) {
  if (cp < 0) return K_O;
  if (cp < 0x80) {
    if ((cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z')) return K_L;
    if (cp >= '0' && cp <= '9') return K_N;
    if ((cp >= 0x09 && cp <= 0x0D) || cp == 0x20) return K_WS;
    return K_O;
  }
  if (is_white_space(cp)) return K_WS;
  switch (utf8proc_category(cp)) {
  case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT:
  case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_LO:
    return K_L;
  case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_NO:
    return K_N;
  default:
    return K_O;
  }
}

/* Character at i: kind, code point, byte length. */
typedef struct { int kind; int32_t cp; size_t len; } ch;

static ch at(const unsigned char *s, size_t len, size_t i) {
  ch c;
  if (s[i] < 0x80) { /* fast path */
    c.cp = s[i];
    c.len = 1;
  } else {
    c.cp = dec(s, len, i, &c.len);
  }
  c.kind = kind_of_cp(c.cp);
  return c;
}

/* End of the maximal run of characters of kind k starting at i (s[i] may not be of kind k). */
static size_t run_of(const unsigned char *s, size_t len, size_t i, int k) {
  while (i < len) {
    ch c = at(s, len, i);
    if (c.kind != k) break;
    i += c.len;
  }
  return i;
}

static int lower_ascii(int c) { return (c >= 'A' && c <= 'Z') ? c + 32 : c; }

/* The contraction alternative at an apostrophe: length matched, 0 if none.
 * Case-insensitive variant also accepts U+017F LATIN SMALL LETTER LONG S for 's (Unicode case
 * folding, as Oniguruma does). */
static size_t contraction(const unsigned char *s, size_t len, size_t i, int icase) {
  if (s[i] != '\'' || i + 1 >= len) return 0;
  int a = icase ? lower_ascii(s[i + 1]) : s[i + 1];
  if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
  if (icase && s[i + 1] == 0xC5 && i + 2 < len && s[i + 2] == 0xBF) return 3;
  if (i + 2 < len) {
    int b = icase ? lower_ascii(s[i + 2]) : s[i + 2];
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
  }
  return 0;
}

/* \s+(?!\S) then \s+ at i, where s[i] is whitespace: the whole run when it reaches the end of
 * the text, otherwise the run minus its last character, or the single character when the run is
 * one character long. */
static size_t ws_tail(const unsigned char *s, size_t len, size_t i) {
  size_t j = i, last = i;
  while (j < len) {
    ch c = at(s, len, j);
    if (c.kind != K_WS) break;
    last = j;
    j += c.len;
  }
  if (j == len) return j;
  if (last > i) return last;
  return j;
}

/* Qwen2 / Llama-3 pattern; maxdig is 1 or 3. */
static size_t next_qwen(const unsigned char *s, size_t len, size_t i, int maxdig) {
  size_t n = contraction(s, len, i, 1);
  if (n) return i + n;
  ch c0 = at(s, len, i);
  /* [^\r\n\p{L}\p{N}]?\p{L}+ */
  if (c0.kind == K_L) return run_of(s, len, i + c0.len, K_L);
  int crlf0 = c0.cp == '\r' || c0.cp == '\n';
  if (c0.kind != K_N && !crlf0 && i + c0.len < len) {
    ch c1 = at(s, len, i + c0.len);
    if (c1.kind == K_L) return run_of(s, len, i + c0.len + c1.len, K_L);
  }
  /* \p{N} or \p{N}{1,3} */
  if (c0.kind == K_N) {
    size_t j = i + c0.len;
    for (int k = 1; k < maxdig && j < len; k++) {
      ch c = at(s, len, j);
      if (c.kind != K_N) break;
      j += c.len;
    }
    return j;
  }
  /* ' ?[^\s\p{L}\p{N}]+[\r\n]*' */
  size_t j = 0;
  int other = 0;
  if (c0.kind == K_O) { j = i; other = 1; }
  else if (c0.cp == ' ' && i + 1 < len && at(s, len, i + 1).kind == K_O) { j = i + 1; other = 1; }
  if (other) {
    j = run_of(s, len, j, K_O);
    while (j < len && (s[j] == '\r' || s[j] == '\n')) j++;
    return j;
  }
  /* c0 is whitespace. \s*[\r\n]+ : up to and including the last CR/LF of the run. */
  size_t k = i, end_crlf = 0;
  while (k < len) {
    ch c = at(s, len, k);
    if (c.kind != K_WS) break;
    k += c.len;
    if (c.cp == '\r' || c.cp == '\n') end_crlf = k;
  }
  if (end_crlf) return end_crlf;
  return ws_tail(s, len, i);
}

static size_t next_gpt2(const unsigned char *s, size_t len, size_t i) {
  size_t n = contraction(s, len, i, 0);
  if (n) return i + n;
  ch c0 = at(s, len, i);
  size_t j = i;
  int k = c0.kind;
  if (c0.cp == ' ' && i + 1 < len) {
    ch c1 = at(s, len, i + 1);
    if (c1.kind != K_WS) { j = i + 1; k = c1.kind; }
  }
  if (k == K_L || k == K_N || k == K_O) return run_of(s, len, j, k);
  return ws_tail(s, len, i);
}

size_t cf_pretok_next(cf_pretok_kind kind, const char *text, size_t len, size_t i) {
  const unsigned char *s = (const unsigned char *)text;
  switch (kind) {
  case CF_PRETOK_QWEN2: return next_qwen(s, len, i, 1);
  case CF_PRETOK_LLAMA3: return next_qwen(s, len, i, 3);
  case CF_PRETOK_GPT2: return next_gpt2(s, len, i);
  default: return len;
  }
}
