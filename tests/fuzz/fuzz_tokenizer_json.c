/* fuzz_tokenizer_json.c - libFuzzer target for the tokenizer.json loader (core/text/bpe.c).
 *
 * Build and run with tests/fuzz/run.sh. Each input is tokenizer.json text for cf_bpe_load_json.
 * It must either be refused with a message or give a tokenizer whose accessors agree
 * (added tokens in range and found by token_to_id, id_to_token set for them) and which encodes
 * a few fixed texts and the input itself with the properties of tok_check.h; encoding may fail,
 * with a message, only because the file lacks some byte token. Seeds: the toy tokenizer.json,
 * the variants fuzz_tokenizer builds (CONFIT_FUZZ_WRITE_JSON) and tests/fuzz/corpus_tokenizer_json.
 */
#include "tok_check.h"

static const struct { const char *s; size_t n; } TEXTS[] = {
#define T(s) {s, sizeof(s) - 1}
  T(""),
  T("hello world"),
  T("The cat's 12345 \xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\x98\x80 cafe\xcc\x81 <|endoftext|>\r\n  \t x  "),
  T("\xff\xfe\0abc\xc3(\xe2\x82 \xed\xa0\x80"),
  /* one word longer than the word cache takes (128 bytes) */
  T("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
#undef T
};

static tc_buf want;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  cf_error_clear();
  cf_bpe *t = cf_bpe_load_json((const char *)data, size);
  if (!t) {
    REQUIRE(cf_error_message()[0] != 0);
    return 0;
  }
  tok_cfg cfg;
  REQUIRE(tok_cfg_of((const char *)data, size, &cfg) == 0);
  size_t v = cf_bpe_vocab_size(t), kl;
  REQUIRE(v >= 1);
  tc_added a;
  tc_added_init(t, &a);
  for (size_t k = 0; k < a.n; k++) {
    REQUIRE(cf_bpe_id_to_token(t, a.id[k], &kl) != NULL);
    int32_t id = cf_bpe_token_to_id(t, a.content[k], a.len[k]);
    REQUIRE(id >= 0 && (size_t)id < v);
  }
  for (size_t i = 0; i < sizeof TEXTS / sizeof *TEXTS; i++)
    tok_check_text(t, &cfg, &a, (const uint8_t *)TEXTS[i].s, TEXTS[i].n, 1, &want);
  tok_check_text(t, &cfg, &a, data, size, 1, &want);

  int32_t ids[70];
  size_t n = 0;
  for (int32_t id = 0; id < 64 && (size_t)id < v; id++) ids[n++] = id;
  tok_check_decode_any(t, ids, n);
  ids[0] = (int32_t)v;
  tok_check_decode_any(t, ids, 1);
  ids[0] = -1;
  tok_check_decode_any(t, ids, 1);
  REQUIRE(cf_bpe_id_to_token(t, (int32_t)v, &kl) == NULL && cf_bpe_id_to_token(t, -1, &kl) == NULL);

  tc_added_free(&a);
  cf_bpe_free(t);
  return 0;
}
