/* test_model_edges.c - config parsing (transformers' defaults, refusals, llama3 RoPE scaling in
 * rope_parameters, the Llama 3.1 inverse frequencies against transformers' values), eos ids from
 * generation_config.json, and the CPU generator's random streams, interrupt finish and prompt-id
 * range: checks that mutation testing (nineteenth session) found missing, each of these changes
 * passing the rest of the suite. The twenty-seventh session's added the config's bands and
 * defaults at their edges, a generation_config.json unreadable or naming an eos id past the
 * vocabulary, nested duplicate keys, an exact config save, and cf_qwen2_generate's option checks.
 */
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "error.h"
#include "interrupt.h"
#include "nn/generate.h"
#include "nn/qwen2.h"
#include "rng.h"
#include "rope_freq.h"

#include "check.h"

#define BASE "{\"model_type\":\"llama\",\"hidden_size\":8,\"intermediate_size\":8,\"num_hidden_layers\":1," \
             "\"num_attention_heads\":2,\"vocab_size\":9"

/* Defaults as transformers' LlamaConfig / Qwen2Config have them (num_key_value_heads None means
 * num_attention_heads; rms_norm_eps 1e-6), non-integers refused, heads a multiple of kv heads. */
static void test_config_defaults_and_refusals(void) {
  cf_qwen2_config c;
  CHECK(cf_qwen2_config_parse(BASE "}", "x", &c) == 0 && c.kv_heads == 2,
        "num_key_value_heads absent: one kv head per head (got %d): %s", c.kv_heads, cf_error_message());
  CHECK(cf_qwen2_config_parse(BASE "}", "x", &c) == 0 && c.rms_eps == 1e-6,
        "rms_norm_eps absent: 1e-6 (got %g)", c.rms_eps);
  CHECK(cf_qwen2_config_parse(BASE ",\"num_key_value_heads\":1.5}", "x", &c) != 0 &&
        strstr(cf_error_message(), "num_key_value_heads"), "a fractional integer field refused: %s", cf_error_message());
  /* 3 heads over 2 kv heads: group 1, so head 2 would read kv head 2 (past the cache) */
  CHECK(cf_qwen2_config_parse("{\"model_type\":\"llama\",\"hidden_size\":12,\"intermediate_size\":8,"
                              "\"num_hidden_layers\":1,\"num_attention_heads\":3,\"num_key_value_heads\":2,"
                              "\"vocab_size\":9}", "x", &c) != 0 && strstr(cf_error_message(), "multiple"),
        "heads not a multiple of kv heads refused: %s", cf_error_message());
}

/* transformers >= 5 writes the rope scaling into rope_parameters (with rope_theta): Llama 3.1's
 * must be kept from there too, not silently replaced by plain RoPE. */
static void test_rope_parameters_llama3(void) {
  cf_qwen2_config c;
  int rc = cf_qwen2_config_parse(BASE ",\"rope_parameters\":{\"rope_type\":\"llama3\",\"rope_theta\":500000.0,"
                                 "\"factor\":8.0,\"low_freq_factor\":1.0,\"high_freq_factor\":4.0,"
                                 "\"original_max_position_embeddings\":8192}}", "x", &c);
  CHECK(rc == 0 && c.rope_theta == 500000 && c.rope_scaling[0] == 8 && c.rope_scaling[1] == 1 &&
        c.rope_scaling[2] == 4 && c.rope_scaling[3] == 8192,
        "llama3 scaling in rope_parameters kept (factor %g): %s", c.rope_scaling[0], cf_error_message());
  CHECK(cf_qwen2_config_parse(BASE ",\"rope_parameters\":{\"rope_type\":\"yarn\",\"factor\":4.0}}", "x", &c) != 0 &&
        strstr(cf_error_message(), "yarn"), "an unsupported type in rope_parameters refused: %s", cf_error_message());
}

/* Llama 3.1's real numbers (theta 5e5, head_dim 128, factor 8, low 1, high 4, original 8192):
 * expected values from transformers' _compute_llama3_parameters in float64. Pairs 29 and 30 have
 * wavelengths 2402 and 2948, inside the smoothed band [2048, 8192] that the fixture's tiny
 * config (head_dim 16) never reaches near its lower edge. */
static void test_rope_inv_freq_llama31(void) {
  static const struct { int i; double want; } ref[] = {
      {0, 1.0}, {20, 0.016560440080994446}, {28, 0.003211445994752591}, {29, 0.002166570763503359},
      {30, 0.0013718935677611381}, {31, 0.0008567514129196321}, {33, 0.00031269375038406517},
      {35, 9.556212353964683e-05}, {40, 3.428102195952591e-05}, {63, 3.068925988914511e-07}};
  cf_rope_scaling s = {8.0, 1.0, 4.0, 8192.0};
  for (size_t k = 0; k < sizeof ref / sizeof ref[0]; k++) {
    double got = cf_rope_inv_freq(500000.0, ref[k].i, 128, s);
    CHECK(fabs(got - ref[k].want) <= 1e-12 * ref[k].want, "llama3 inv_freq of pair %d: %.17g, want %.17g",
          ref[k].i, got, ref[k].want);
  }
}

/* (twenty-seventh session, mutation testing: each of these changes passed the suite) The config's
 * numbers in and just outside the bands the message states (rms_norm_eps in (0, 1), rope_theta in
 * (1, 1e30)); head_dim even (RoPE rotates halves: transformers' rotate_half fails on an odd one)
 * and above 0, num_key_value_heads above 0; an eos list of exactly CF_MAX_EOS ids; transformers'
 * defaults for max_position_embeddings (Qwen2Config: 32768; LlamaConfig: 2048, twenty-eighth
 * session: llama got 32768 before) and tie_word_embeddings (false: the model has its own
 * lm_head.weight). */
static void test_config_bands(void) {
  cf_qwen2_config c;
  static const struct { const char *field; bool ok; } band[] = {
      {"\"rms_norm_eps\":0.999", true}, {"\"rms_norm_eps\":1", false}, {"\"rms_norm_eps\":1e-300", true},
      {"\"rope_theta\":1.0001", true}, {"\"rope_theta\":1", false}, {"\"rope_theta\":0.5", false},
      {"\"rope_theta\":9.9e29", true}, {"\"rope_theta\":1e30", false}, {"\"rope_theta\":1e31", false}};
  for (size_t i = 0; i < sizeof band / sizeof band[0]; i++) {
    char js[400];
    snprintf(js, sizeof js, BASE ",%s}", band[i].field);
    int rc = cf_qwen2_config_parse(js, "x", &c);
    if (band[i].ok) CHECK(rc == 0, "%s accepted: %s", band[i].field, cf_error_message());
    else CHECK(rc != 0 && strstr(cf_error_message(), "rms_norm_eps") && strstr(cf_error_message(), "(1, 1e30)"),
               "%s refused with the bands named: %s", band[i].field, rc ? cf_error_message() : "(accepted)");
  }
  CHECK(cf_qwen2_config_parse(BASE ",\"head_dim\":3}", "x", &c) != 0 && strstr(cf_error_message(), "head_dim (3)") &&
        strstr(cf_error_message(), "even"), "an odd head_dim refused: %s", cf_error_message());
  CHECK(cf_qwen2_config_parse(BASE ",\"head_dim\":0}", "x", &c) != 0 && strstr(cf_error_message(), "head_dim (0)"),
        "head_dim 0 refused: %s", cf_error_message());
  /* (a zero here was a division by zero: heads % kv_heads) */
  CHECK(cf_qwen2_config_parse(BASE ",\"num_key_value_heads\":0}", "x", &c) != 0 &&
        strstr(cf_error_message(), "num_key_value_heads and vocab_size must be > 0"),
        "num_key_value_heads 0 refused: %s", cf_error_message());
  CHECK(cf_qwen2_config_parse(BASE ",\"head_dim\":6}", "x", &c) == 0 && c.head_dim == 6,
        "an even head_dim other than hidden / heads kept: %s", cf_error_message());
  char js[600];
  int k = snprintf(js, sizeof js, "{\"model_type\":\"qwen2\",\"hidden_size\":8,\"intermediate_size\":8,"
                   "\"num_hidden_layers\":1,\"num_attention_heads\":2,\"vocab_size\":64,\"eos_token_id\":[");
  for (int i = 0; i < CF_MAX_EOS; i++) k += snprintf(js + k, sizeof js - (size_t)k, "%s%d", i ? "," : "", i + 10);
  snprintf(js + k, sizeof js - (size_t)k, "]}");
  CHECK(cf_qwen2_config_parse(js, "x", &c) == 0 && c.n_eos == CF_MAX_EOS && c.eos[CF_MAX_EOS - 1] == CF_MAX_EOS + 9,
        "%d eos ids (the most) kept: n_eos %d: %s", CF_MAX_EOS, c.n_eos, cf_error_message());
  CHECK(cf_qwen2_config_parse("{\"model_type\":\"qwen2\",\"hidden_size\":8,\"intermediate_size\":8,"
                              "\"num_hidden_layers\":1,\"num_attention_heads\":2,\"vocab_size\":9}", "x", &c) == 0 &&
        c.max_pos == 32768 && !c.tie_embeddings,
        "defaults: max_position_embeddings 32768 (got %d), tie_word_embeddings false (got %d): %s", c.max_pos,
        c.tie_embeddings, cf_error_message());
  cf_qwen2_config l;
  CHECK(cf_qwen2_config_parse("{\"model_type\":\"llama\",\"hidden_size\":8,\"intermediate_size\":8,"
                              "\"num_hidden_layers\":1,\"num_attention_heads\":2,\"vocab_size\":9}", "x", &l) == 0 &&
        l.max_pos == 2048, "llama's default max_position_embeddings 2048 (got %d): %s", l.max_pos, cf_error_message());
  cf_qwen2 *m = cf_qwen2_new(&c);
  bool head = false;
  for (int i = 0; m && i < m->nparams; i++) head = head || strcmp(m->names[i], "lm_head.weight") == 0;
  CHECK(m && head && m->lm_head != m->embed, "untied by default: a lm_head.weight of its own");
  cf_qwen2_free(m);
}

static void write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "wb");
  if (f) { fputs(text, f); fclose(f); }
}

/* A new folder in tmpl (512 bytes; NULL when it cannot be made) with the paths of its config.json (p1) and
 * generation_config.json (p2), each of 600 bytes; the caller removes what it wrote. */
static char *gcfg_dir(char *tmpl, char *p1, char *p2) {
  char *dir = check_tmpdir(tmpl, 512, "confit_gcfg_");
  CHECK(dir != NULL, "mkdtemp");
  if (!dir) return NULL;
  snprintf(p1, 600, "%s/config.json", dir);
  snprintf(p2, 600, "%s/generation_config.json", dir);
  return dir;
}

/* generation_config.json's eos ids replace config.json's (Qwen2.5 instruct: [151645, 151643]). */
static void test_generation_config_eos(void) {
  char tmpl[512], p1[600], p2[600];
  char *dir = gcfg_dir(tmpl, p1, p2);
  if (!dir) return;
  write_text(p1, BASE ",\"eos_token_id\":2}");
  write_text(p2, "{\"eos_token_id\":[5,6],\"do_sample\":true}");
  cf_qwen2_config c;
  int rc = cf_qwen2_config_load(dir, &c);
  CHECK(rc == 0 && c.n_eos == 2 && c.eos[0] == 5 && c.eos[1] == 6,
        "eos ids from generation_config.json (n_eos %d, first %d): %s", c.n_eos, c.eos[0], cf_error_message());
  unlink(p1);
  unlink(p2);
  rmdir(dir);
}

/* (twenty-seventh session, mutation testing) A generation_config.json that exists but cannot be
 * read (here a folder) is an error naming it, not skipped: its eos ids would be silently lost and
 * generation would run past the model's end-of-turn token; so is one whose eos id the model cannot
 * emit. */
static void test_generation_config_unreadable(void) {
  char tmpl[512], p1[600], p2[600];
  char *dir = gcfg_dir(tmpl, p1, p2);
  if (!dir) return;
  write_text(p1, BASE ",\"eos_token_id\":2}");
  CHECK(mkdir(p2, 0700) == 0, "mkdir %s", p2);
  cf_qwen2_config c;
  int rc = cf_qwen2_config_load(dir, &c);
  CHECK(rc != 0 && strstr(cf_error_message(), "generation_config.json"),
        "an unreadable generation_config.json is refused, naming it: %s", rc ? cf_error_message() : "(loaded)");
  rmdir(p2);
  CHECK(cf_qwen2_config_load(dir, &c) == 0 && c.n_eos == 1 && c.eos[0] == 2, "without it, config.json's eos: %s",
        cf_error_message());
  /* its eos ids are checked against vocab_size as config.json's are: the model cannot emit id 9 */
  write_text(p2, "{\"eos_token_id\":[5,9]}");
  rc = cf_qwen2_config_load(dir, &c);
  CHECK(rc != 0 && strstr(cf_error_message(), "generation_config.json") &&
        strstr(cf_error_message(), "eos_token_id 9 is not below vocab_size 9"),
        "an eos id past the vocabulary in generation_config.json refused: %s", rc ? cf_error_message() : "(loaded)");
  unlink(p2);
  unlink(p1);
  rmdir(dir);
}

/* A model whose every weight is zero gives all-zero logits: the draw is uniform over V = 64 ids,
 * and with probabilities 1/64 (exact) the inverse CDF picks floor(u * 64). So each sample's tokens
 * spell out its random numbers, which generate.h fixes: sample j of prompt p at step t uses
 * Philox(counter t, key cf_gen_key(seed, p, j)) (the GPU generator uses the same stream). */
static double draw_ref(uint64_t seed, int p, int j, int step) {
  uint32_t w[4];
  cf_philox((uint64_t)step, cf_gen_key(seed, p, j), w);
  return (double)(((uint64_t)(w[0] >> 5) << 26) | (w[1] >> 6)) * (1.0 / 9007199254740992.0);
}

static cf_qwen2 *zero_model(void) {
  cf_qwen2_config c;
  if (cf_qwen2_config_parse("{\"model_type\":\"llama\",\"hidden_size\":8,\"intermediate_size\":8,"
                            "\"num_hidden_layers\":1,\"num_attention_heads\":2,\"vocab_size\":64,"
                            "\"max_position_embeddings\":64,\"eos_token_id\":63}", "x", &c)) return NULL;
  return cf_qwen2_new(&c);
}

static void test_sample_streams(void) {
  cf_qwen2 *m = zero_model();
  CHECK(m != NULL, "zero model: %s", cf_error_message());
  if (!m) return;
  int64_t a[2] = {1, 2}, b[3] = {3, 4, 5};
  const int64_t *ps[2] = {a, b};
  int pl[2] = {2, 3};
  cf_gen_opts o = {.n = 2, .temperature = 1.0, .top_p = 1, .max_new_tokens = 6, .seed = 1234, .ignore_eos = true};
  cf_gen_sample *s = NULL;
  int rc = cf_qwen2_generate(m, ps, pl, 2, &o, &s);
  CHECK(rc == 0, "generate: %s", cf_error_message());
  if (rc == 0) {
    for (int i = 0; i < 4; i++) {
      int p = i / 2, j = i % 2;
      CHECK(s[i].ntokens == 6, "sample %d: %d tokens", i, s[i].ntokens);
      for (int t = 0; t < s[i].ntokens; t++) {
        int64_t want = (int64_t)floor(draw_ref(1234, p, j, t) * 64);
        CHECK(s[i].tokens[t] == want, "prompt %d sample %d step %d: token %lld, its stream says %lld", p, j, t,
              (long long)s[i].tokens[t], (long long)want);
      }
    }
    cf_gen_samples_free(s, 4);
  }
  cf_qwen2_free(m);
}

/* An interrupt pending when decoding starts ends every unfinished sample after the prefill's token
 * with finish = interrupted (not length: the caller must know the sample was cut). */
static void test_interrupt_finish(void) {
  cf_qwen2 *m = zero_model();
  if (!m) return;
  int64_t a[2] = {1, 2};
  const int64_t *ps[1] = {a};
  int pl[1] = {2};
  cf_gen_opts o = {.n = 2, .temperature = 0, .top_p = 1, .max_new_tokens = 5, .ignore_eos = true};
  cf_gen_sample *s = NULL;
  cf_interrupt_request();
  int rc = cf_qwen2_generate(m, ps, pl, 1, &o, &s);
  cf_interrupt_clear();
  CHECK(rc == 0, "generate: %s", cf_error_message());
  if (rc == 0) {
    for (int i = 0; i < 2; i++)
      CHECK(s[i].finish == CF_FINISH_INTERRUPTED && s[i].ntokens == 1, "sample %d: finish %d after %d tokens", i,
            s[i].finish, s[i].ntokens);
    cf_gen_samples_free(s, 2);
  }
  cf_qwen2_free(m);
}

/* A prompt id equal to vocab_size is outside the embedding (it would be read past its end). */
static void test_prompt_id_at_vocab(void) {
  cf_qwen2 *m = zero_model();
  if (!m) return;
  int64_t a[2] = {1, 64};
  const int64_t *ps[1] = {a};
  int pl[1] = {2};
  cf_gen_opts o = {.n = 1, .temperature = 0, .top_p = 1, .max_new_tokens = 2, .ignore_eos = true};
  cf_gen_sample *s = NULL;
  int rc = cf_qwen2_generate(m, ps, pl, 1, &o, &s);
  CHECK(rc != 0 && strstr(cf_error_message(), "outside the vocabulary"), "id == vocab_size refused: %s",
        rc ? cf_error_message() : "(accepted)");
  if (rc == 0) cf_gen_samples_free(s, 1);
  cf_qwen2_free(m);
}

/* (twenty-seventh session, mutation testing: top_k = -1 accepted, and n = 0, passed the suite; the
 * Lua binding checks its own) cf_qwen2_generate refuses each bad option, naming it and the value. */
static void test_generate_option_checks(void) {
  cf_qwen2 *m = zero_model();
  if (!m) return;
  int64_t a[2] = {1, 2};
  const int64_t *ps[1] = {a};
  int pl[1] = {2};
  const cf_gen_opts good = {.n = 1, .temperature = 1, .top_p = 1, .max_new_tokens = 2, .ignore_eos = true};
  struct { cf_gen_opts o; const char *want; } bad[10];
  for (int i = 0; i < 10; i++) bad[i].o = good;
  bad[0].o.n = 0; bad[0].want = "n must be >= 1 (got 0)";
  bad[1].o.max_new_tokens = -1; bad[1].want = "max_new_tokens must be >= 0 (got -1)";
  bad[2].o.temperature = -0.5; bad[2].want = "temperature must be a finite number >= 0 (got -0.5)";
  bad[3].o.temperature = NAN; bad[3].want = "temperature must be a finite number >= 0";
  bad[4].o.temperature = INFINITY; bad[4].want = "temperature must be a finite number >= 0 (got inf)";
  bad[5].o.top_p = 0; bad[5].want = "top_p must be in (0, 1] (got 0)";
  bad[6].o.top_p = 1.5; bad[6].want = "top_p must be in (0, 1] (got 1.5)";
  bad[7].o.top_p = NAN; bad[7].want = "top_p must be in (0, 1]";
  bad[8].o.top_k = -1; bad[8].want = "top_k must be >= 0 (got -1)";
  /* (twenty-seventh session) prompt length + max_new_tokens was an int sum: INT_MAX wrapped past the
     context check (the Lua face caps max_new_tokens at 2^24; a C caller need not) */
  bad[9].o.max_new_tokens = INT_MAX; bad[9].want = "+ max_new_tokens 2147483647 exceeds max_position_embeddings";
  for (int i = 0; i < 10; i++) {
    cf_gen_sample *s = NULL;
    int rc = cf_qwen2_generate(m, ps, pl, 1, &bad[i].o, &s);
    CHECK(rc != 0 && strstr(cf_error_message(), bad[i].want) && s == NULL, "bad option %d refused (\"%s\"): %s", i,
          bad[i].want, rc ? cf_error_message() : "(ran)");
    if (rc == 0) cf_gen_samples_free(s, bad[i].o.n);
  }
  cf_qwen2_free(m);
}

/* (twenty-seventh session, mutation testing: each passed the suite) A key twice in a nested object
 * is refused as at the top (cJSON answers the first, Python's json the last: rope_scaling's factor
 * 8 here, 2 in transformers); and a saved config.json reads back exactly, doubles that need 17
 * digits included (rope_theta, the llama3 factor: written with 15, they came back changed). */
static void test_config_nested_dup_and_exact_save(void) {
  cf_qwen2_config c, back;
  CHECK(cf_qwen2_config_parse(BASE ",\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":8.0,\"factor\":2.0,"
                              "\"low_freq_factor\":1.0,\"high_freq_factor\":4.0,\"original_max_position_embeddings\":64}}",
                              "cfg.json", &c) != 0 && strstr(cf_error_message(), "the key \"factor\" appears twice"),
        "a key twice inside rope_scaling refused: %s", cf_error_message());
  int rc = cf_qwen2_config_parse(BASE ",\"rope_theta\":10000.123456789011,\"rope_scaling\":{\"rope_type\":\"llama3\","
                                 "\"factor\":8.000000000000002,\"low_freq_factor\":1.0,\"high_freq_factor\":4.0,"
                                 "\"original_max_position_embeddings\":64}}", "x", &c);
  CHECK(rc == 0, "config: %s", cf_error_message());
  char tmpl[512];
  char *dir = rc == 0 ? check_tmpdir(tmpl, sizeof tmpl, "confit_cfgsave_") : NULL;
  if (!dir) return;
  CHECK(cf_qwen2_config_save(&c, dir) == 0, "save: %s", cf_error_message());
  rc = cf_qwen2_config_load(dir, &back);
  CHECK(rc == 0 && back.rope_theta == c.rope_theta && back.rope_scaling[0] == c.rope_scaling[0] &&
        back.rope_scaling[3] == c.rope_scaling[3], "reloaded exactly: rope_theta %.17g, factor %.17g: %s",
        back.rope_theta, back.rope_scaling[0], rc ? cf_error_message() : "");
  check_rmtree(dir);
}

/* (twenty-seventh session, mutation testing: stopping at the first eos id only, and writing only
 * the first into generation_config.json, passed the suite) Every id of an eos list ends a sample
 * (Qwen2.5 instruct lists two: <|im_end|> and <|endoftext|>), and the list survives a save. The
 * zero model's greedy token is id 0 (uniform logits, the first maximum), the list's second id. */
static void test_eos_list(void) {
  cf_qwen2_config c, back;
  int rc = cf_qwen2_config_parse("{\"model_type\":\"llama\",\"hidden_size\":8,\"intermediate_size\":8,"
                                 "\"num_hidden_layers\":1,\"num_attention_heads\":2,\"vocab_size\":64,"
                                 "\"eos_token_id\":[5,0]}", "x", &c);
  cf_qwen2 *m = rc == 0 ? cf_qwen2_new(&c) : NULL;
  CHECK(m != NULL, "model: %s", cf_error_message());
  if (!m) return;
  int64_t a[2] = {1, 2};
  const int64_t *ps[1] = {a};
  int pl[1] = {2};
  cf_gen_opts o = {.n = 1, .temperature = 0, .top_p = 1, .max_new_tokens = 4};
  cf_gen_sample *s = NULL;
  rc = cf_qwen2_generate(m, ps, pl, 1, &o, &s);
  CHECK(rc == 0 && s[0].ntokens == 1 && s[0].tokens[0] == 0 && s[0].finish == CF_FINISH_STOP,
        "the second eos id stops the sample (%d tokens, finish %d): %s", rc ? -1 : s[0].ntokens, rc ? -1 : s[0].finish,
        rc ? cf_error_message() : "");
  if (rc == 0) cf_gen_samples_free(s, 1);
  cf_qwen2_free(m);
  char tmpl[512];
  char *dir = check_tmpdir(tmpl, sizeof tmpl, "confit_eos_");
  if (!dir) return;
  CHECK(cf_qwen2_config_save(&c, dir) == 0, "save: %s", cf_error_message());
  rc = cf_qwen2_config_load(dir, &back);
  CHECK(rc == 0 && back.n_eos == 2 && back.eos[0] == 5 && back.eos[1] == 0, "the eos list reloads (n_eos %d): %s",
        back.n_eos, rc ? cf_error_message() : "");
  check_rmtree(dir);
}

int main(void) {
  test_config_defaults_and_refusals();
  test_rope_parameters_llama3();
  test_rope_inv_freq_llama31();
  test_generation_config_eos();
  test_config_bands();
  test_generation_config_unreadable();
  test_sample_streams();
  test_interrupt_finish();
  test_prompt_id_at_vocab();
  test_generate_option_checks();
  test_config_nested_dup_and_exact_save();
  test_eos_list();
  return check_finish();
}
