/* bpe.h - byte-level BPE tokenizer loaded from a Hugging Face tokenizer.json.
 *
 * What is supported (anything else is refused at load time with a message naming it):
 *   model          BPE with "vocab" and "merges" (either "a b" strings or ["a","b"] pairs),
 *                  no continuing_subword_prefix / end_of_word_suffix / byte_fallback / dropout;
 *                  ignore_merges honoured.
 *   added_tokens   matched in the raw text before anything else, leftmost-longest; lstrip and
 *                  rstrip honoured; "special" only matters for decoding with
 *                  CF_BPE_SKIP_SPECIAL. single_word is refused.
 *   normalizer     null or NFC (also a Sequence holding only those); NFC as Hugging Face's
 *                  tokenizers computes it (cf_bpe_hf_starter).
 *   pre_tokenizer  ByteLevel (use_regex true = the GPT-2 regex, or false; add_prefix_space), or
 *                  Sequence[Split{Regex, Isolated}, ByteLevel] where the regex is one of the known
 *                  patterns (Qwen2 / Llama-3 / GPT-2), matched by hand-written code in pretok.c.
 *   decoder        ByteLevel.
 *   post_processor null, ByteLevel, TemplateProcessing or a Sequence of them, never applied:
 *                  encode adds no BOS / EOS (Hugging Face's add_special_tokens=False; chat
 *                  templates write their markers themselves, and a plain prompt gets none).
 *
 * Encoding takes any bytes: those that are not valid UTF-8 are classified as punctuation-like
 * characters and encoded through their byte tokens (it fails, naming the byte, only where the
 * vocabulary lacks that byte's token). Decoding returns the raw
 * bytes of the tokens (which may be partial UTF-8). Token ids are 0-based as in the file.
 *
 * Thread safety: a cf_bpe keeps a word cache and scratch buffers, so one cf_bpe must not be
 * used by two threads at once (load one per thread instead).
 */
#ifndef CF_TEXT_BPE_H
#define CF_TEXT_BPE_H

#include <stddef.h>
#include <stdint.h>

typedef struct cf_bpe cf_bpe;

/* Load from a tokenizer.json file, or from JSON text in memory. NULL + CF_ERR on failure. */
cf_bpe *cf_bpe_load(const char *path);
cf_bpe *cf_bpe_load_json(const char *json, size_t len);
void cf_bpe_free(cf_bpe *t);

/* text[0..len) -> *ids (malloc'd, caller frees with free(); NULL when *n == 0), *n ids.
 * No BOS/EOS is added. Returns 0, or -1 with CF_ERR (out of memory, or a byte that has no
 * token in the vocabulary). */
int cf_bpe_encode(cf_bpe *t, const char *text, size_t len, int32_t **ids, size_t *n);

enum { CF_BPE_SKIP_SPECIAL = 1, CF_BPE_SKIP_UNKNOWN = 2 };
/* ids[0..n) -> *out (malloc'd, NUL-terminated for convenience, *out_len bytes without the NUL).
 * flags: CF_BPE_SKIP_SPECIAL drops added tokens marked special; CF_BPE_SKIP_UNKNOWN drops ids
 * >= 0 that are no token (a model's embedding rows past the tokenizer's: Qwen's 151,669 ids in
 * 151,936 rows), as Hugging Face's decode does; without it such an id is an error. A negative id
 * is always an error. */
int cf_bpe_decode(const cf_bpe *t, const int32_t *ids, size_t n, int flags, char **out,
                  size_t *out_len);

/* Token string (as written in the file, e.g. "Ġthe") <-> id. Added tokens are looked up first.
 * token_to_id returns -1 when absent; id_to_token returns NULL when absent. */
int32_t cf_bpe_token_to_id(const cf_bpe *t, const char *tok, size_t len);
const char *cf_bpe_id_to_token(const cf_bpe *t, int32_t id, size_t *len);

/* One past the largest id (model vocabulary and added tokens together). */
size_t cf_bpe_vocab_size(const cf_bpe *t);

/* Added tokens in file order: i in [0, cf_bpe_n_added). */
size_t cf_bpe_n_added(const cf_bpe *t);
int cf_bpe_added(const cf_bpe *t, size_t i, int32_t *id, const char **content, size_t *len,
                 int *special);

/* 1 when code point c is one that Hugging Face's NFC takes for a plain starter (its Unicode
 * tables predate Unicode 10) while the standard gives it a combining class or a composition:
 * NFC leaves each where it is and normalises the text on either side apart (the list and how
 * it was found: bpe.c, hf_starter). Exposed for the fuzzers' reference NFC. */
int cf_bpe_hf_starter(int32_t c);

/* ---- pre-tokenizer (pretok.c; exposed for tests and benches) ----
 * Each pattern is the exact behaviour of the regex named beside it, applied find-iter style:
 * every position starts a match, so a text is cut into consecutive pieces. */
typedef enum {
  CF_PRETOK_NONE = 0, /* the whole text is one piece */
  CF_PRETOK_QWEN2,    /* (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+ */
  CF_PRETOK_LLAMA3,   /* the same with \p{N}{1,3} */
  CF_PRETOK_GPT2      /* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
} cf_pretok_kind;

/* The kind whose regex source is exactly `pattern`, or -1 when unknown. */
int cf_pretok_kind_of(const char *pattern);
/* End (exclusive byte offset) of the piece that starts at byte i < len of s. Always > i. */
size_t cf_pretok_next(cf_pretok_kind kind, const char *s, size_t len, size_t i);

#endif
