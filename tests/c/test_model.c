/* test_model.c - the Qwen2/Llama transformer against the PyTorch-written fixtures
 * (reference.safetensors in tests/fixtures/tiny_qwen2 and tiny_llama): logits, per-sequence log-probs at two
 * temperatures with padding, every parameter's gradient of a weighted sum of log-probs, and
 * greedy generation; plus KV-cache consistency, batching invariance, seeded sampling, saving
 * and reloading, and config errors; a checkpoint mixing an odd-length bf16 tensor with f32 ones
 * loads exactly, every tensor aligned in the file (the writer's layout) and every weight the
 * model's own memory (read, not mapped: the file may change after the load). From mutation testing
 * (twenty-seventh session): a tied head follows set_param, a rotary_emb buffer in a checkpoint is
 * passed over and a tied lm_head.weight of another width refused, the context's edges (forward and
 * generate at exactly max_position_embeddings, max_new_tokens 0), attention scores far below zero
 * in the generator, and every config field through save and reload.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "autograd.h"
#include "error.h"
#include "io/half.h"
#include "io/safetensors.h"
#include "nn/generate.h"
#include "nn/qwen2.h"
#include "ops.h"
#include "rng.h"

#include "check.h"

static cf_tensor *ref_tensor(cf_st_file *f, const char *name) {
  const cf_st_entry *e = cf_st_find(f, name);
  if (!e) return NULL;
  int64_t n = cf_st_numel(e);
  if (strcmp(e->dtype, "I64") == 0)
    return cf_tensor_from_bytes(e->ndim, e->shape, CF_DTYPE_I64, e->data, e->nbytes);
  cf_tensor *t = cf_tensor_zeros(e->ndim, e->shape, CF_DTYPE_F32);
  if (t && cf_st_to_f32(e, cf_tensor_data(t))) { cf_tensor_release(t); return NULL; }
  (void)n;
  return t;
}

/* max |a-b| / (atol + rtol |b|) over all elements (both CPU, any float dtype). */
static double max_rel(const cf_tensor *a, const cf_tensor *b, double atol, double rtol) {
  if (cf_tensor_numel(a) != cf_tensor_numel(b)) return INFINITY;
  double worst = 0;
  for (int64_t i = 0; i < cf_tensor_numel(a); i++) {
    double x = cf_tensor_get_flat(a, i), y = cf_tensor_get_flat(b, i);
    double r = fabs(x - y) / (atol + rtol * fabs(y));
    if (!(r <= worst)) worst = r;
  }
  return worst;
}

static void test_fixture(const char *dir) {
  char path[512];
  snprintf(path, sizeof path, "%s/reference.safetensors", dir);
  cf_st_file *ref = cf_st_open(path);
  CHECK(ref != NULL, "open %s: %s", path, cf_error_message());
  if (!ref) return;
  cf_qwen2 *m = cf_qwen2_load(dir);
  CHECK(m != NULL, "load %s: %s", dir, cf_error_message());
  if (!m) { cf_st_close(ref); return; }
  cf_tensor *ids = ref_tensor(ref, "ids"), *want_logits = ref_tensor(ref, "logits");
  cf_tensor *pl = ref_tensor(ref, "prompt_lens"), *ln = ref_tensor(ref, "lens");
  int64_t B = ids->shape[0];
  const int64_t *plen = cf_tensor_data(pl), *lens = cf_tensor_data(ln);

  /* logits */
  cf_tensor *logits = cf_qwen2_logits(m, ids);
  CHECK(logits != NULL, "%s logits: %s", dir, cf_error_message());
  if (logits) {
    double r = max_rel(logits, want_logits, 1e-5, 1e-4);
    CHECK(r <= 1.0, "%s logits differ from PyTorch (worst ratio %g)", dir, r);
  }
  cf_tensor_release(logits);

  /* log-probs at T = 1 and 0.5, with a padded row */
  const char *names[2] = {"logprobs_t1", "logprobs_t05"};
  double temps[2] = {1.0, 0.5};
  for (int k = 0; k < 2; k++) {
    cf_tensor *want = ref_tensor(ref, names[k]);
    cf_tensor *lp = cf_qwen2_logprobs(m, ids, plen, lens, temps[k]);
    CHECK(lp != NULL, "%s %s: %s", dir, names[k], cf_error_message());
    if (lp) {
      double r = max_rel(lp, want, 1e-5, 1e-4);
      CHECK(r <= 1.0, "%s %s differ (worst ratio %g)", dir, names[k], r);
    }
    cf_tensor_release(lp);
    cf_tensor_release(want);
  }

  /* gradients of L = sum_b w_b * logprobs_t05[b] for every parameter */
  for (int i = 0; i < m->nparams; i++) (*m->slots[i])->requires_grad = true;
  cf_tensor *w = ref_tensor(ref, "loss_weights");
  cf_tensor *lp = cf_qwen2_logprobs(m, ids, plen, lens, 0.5);
  cf_tensor *wl = lp ? cf_op2(CF_OP_mul, lp, w) : NULL;
  cf_tensor *loss = wl ? cf_op_dim(CF_OP_sum, wl, CF_DIM_ALL, false) : NULL;
  CHECK(loss != NULL, "%s loss: %s", dir, cf_error_message());
  if (loss) {
    int rc = cf_backward(loss, NULL, false);
    CHECK(rc == 0, "%s backward: %s", dir, cf_error_message());
    for (int i = 0; i < m->nparams && rc == 0; i++) {
      char gname[300];
      snprintf(gname, sizeof gname, "grad.%s", m->names[i]);
      cf_tensor *want = ref_tensor(ref, gname);
      cf_tensor *got = (*m->slots[i])->grad;
      CHECK(want && got, "%s: gradient %s missing (fixture %p, ours %p)", dir, m->names[i],
            (void *)want, (void *)got);
      if (want && got) {
        double r = max_rel(got, want, 1e-5, 1e-4);
        CHECK(r <= 1.0, "%s: gradient of %s differs (worst ratio %g)", dir, m->names[i], r);
      }
      cf_tensor_release(want);
    }
  }
  cf_tensor_release(loss); cf_tensor_release(wl); cf_tensor_release(lp); cf_tensor_release(w);
  for (int i = 0; i < m->nparams; i++) { cf_zero_grad(*m->slots[i]); (*m->slots[i])->requires_grad = false; }

  /* greedy generation from the fixture prompt */
  cf_tensor *gp = ref_tensor(ref, "greedy_prompt"), *gt = ref_tensor(ref, "greedy_tokens");
  const int64_t *prompt = cf_tensor_data(gp);
  int plen0 = (int)gp->shape[0];
  cf_gen_opts o = {.n = 1, .temperature = 0, .top_p = 1, .max_new_tokens = (int)gt->shape[0], .ignore_eos = true};
  cf_gen_sample *s = NULL;
  int rc = cf_qwen2_generate(m, &prompt, &plen0, 1, &o, &s);
  CHECK(rc == 0, "%s generate: %s", dir, cf_error_message());
  if (rc == 0) {
    bool same = s[0].ntokens == gt->shape[0];
    for (int t = 0; same && t < s[0].ntokens; t++) same = s[0].tokens[t] == ((int64_t *)cf_tensor_data(gt))[t];
    CHECK(same, "%s: greedy tokens differ from PyTorch's", dir);
    /* KV-cache consistency: the cached path's log-probs equal the full forward's */
    int64_t T = plen0 + s[0].ntokens;
    int64_t shape[2] = {1, T};
    cf_tensor *seq = cf_tensor_zeros(2, shape, CF_DTYPE_I64);
    int64_t *sd = cf_tensor_data(seq);
    for (int t = 0; t < plen0; t++) sd[t] = prompt[t];
    for (int t = 0; t < s[0].ntokens; t++) sd[plen0 + t] = s[0].tokens[t];
    int64_t pl1 = plen0;
    cf_tensor *full = cf_qwen2_logprobs(m, seq, &pl1, NULL, 1.0);
    CHECK(full && fabs(cf_tensor_get_flat(full, 0) - s[0].logprob) < 1e-4 * (1 + fabs(s[0].logprob)),
          "%s: KV-cache log-prob %g vs full forward %g", dir, s[0].logprob,
          full ? cf_tensor_get_flat(full, 0) : NAN);
    cf_tensor_release(full);
    cf_tensor_release(seq);
  }
  cf_gen_samples_free(s, 1);

  /* batching: prompts of different lengths together == one at a time (greedy) */
  int64_t p1[3] = {5, 9, 2}, p2[6] = {1, 2, 3, 4, 5, 6}, p3[1] = {7};
  const int64_t *ps[3] = {p1, p2, p3};
  int pls[3] = {3, 6, 1};
  cf_gen_opts og = {.n = 2, .temperature = 0, .top_p = 1, .max_new_tokens = 6, .ignore_eos = true};
  cf_gen_sample *all = NULL;
  rc = cf_qwen2_generate(m, ps, pls, 3, &og, &all);
  CHECK(rc == 0, "%s batched generate: %s", dir, cf_error_message());
  for (int p = 0; p < 3 && rc == 0; p++) {
    cf_gen_sample *one = NULL;
    cf_gen_opts o1 = og;
    o1.n = 1;
    int rc1 = cf_qwen2_generate(m, &ps[p], &pls[p], 1, &o1, &one);
    bool same = rc1 == 0 && one[0].ntokens == all[p * 2].ntokens && all[p * 2 + 1].ntokens == one[0].ntokens;
    for (int t = 0; same && t < one[0].ntokens; t++)
      same = one[0].tokens[t] == all[p * 2].tokens[t] && one[0].tokens[t] == all[p * 2 + 1].tokens[t];
    CHECK(same, "%s: prompt %d: batched greedy differs from one-at-a-time", dir, p);
    cf_gen_samples_free(one, 1);
  }
  cf_gen_samples_free(all, 6);

  /* seeded sampling is reproducible; a different seed changes something */
  cf_gen_opts os = {.n = 4, .temperature = 1.0, .top_p = 0.9, .top_k = 20, .max_new_tokens = 10, .seed = 7, .ignore_eos = true};
  cf_gen_sample *a = NULL, *b = NULL, *c = NULL;
  rc = cf_qwen2_generate(m, ps, pls, 3, &os, &a);
  int rc2 = cf_qwen2_generate(m, ps, pls, 3, &os, &b);
  os.seed = 8;
  int rc3 = cf_qwen2_generate(m, ps, pls, 3, &os, &c);
  CHECK(rc == 0 && rc2 == 0 && rc3 == 0, "%s sampling: %s", dir, cf_error_message());
  if (rc == 0 && rc2 == 0 && rc3 == 0) {
    bool same = true, differs = false;
    for (int i = 0; i < 12; i++)
      for (int t = 0; t < 10; t++) {
        same = same && a[i].tokens[t] == b[i].tokens[t];
        differs = differs || a[i].tokens[t] != c[i].tokens[t];
      }
    CHECK(same, "%s: same seed gave different samples", dir);
    CHECK(differs, "%s: a different seed gave identical samples", dir);
  }
  cf_gen_samples_free(a, 12); cf_gen_samples_free(b, 12); cf_gen_samples_free(c, 12);

  /* stop ids end a sample with finish = stop, the stop token included */
  cf_gen_opts ost = {.n = 1, .temperature = 0, .top_p = 1, .max_new_tokens = (int)gt->shape[0], .ignore_eos = true};
  int64_t stop_id = ((int64_t *)cf_tensor_data(gt))[2];
  ost.stop = &stop_id;
  ost.nstop = 1;
  rc = cf_qwen2_generate(m, &prompt, &plen0, 1, &ost, &s);
  CHECK(rc == 0, "%s generate with stop ids: %s", dir, cf_error_message());
  if (rc == 0) {
    int first = -1;
    for (int t = 0; t < (int)gt->shape[0]; t++) if (((int64_t *)cf_tensor_data(gt))[t] == stop_id) { first = t; break; }
    CHECK(s[0].finish == CF_FINISH_STOP && s[0].ntokens == first + 1, "%s: stop token handling (finish %d, %d tokens)",
          dir, s[0].finish, s[0].ntokens);
    cf_gen_samples_free(s, 1);
  }

  /* save, reload, same logits */
  char tmpl[512];
  char *tmp = check_tmpdir(tmpl, sizeof tmpl, "confit_model_");
  CHECK(tmp && cf_qwen2_save(m, tmp) == 0, "%s save: %s", dir, cf_error_message());
  cf_qwen2 *m2 = tmp ? cf_qwen2_load(tmp) : NULL;
  CHECK(m2 != NULL, "%s reload: %s", dir, cf_error_message());
  if (m2) {
    cf_tensor *l1 = cf_qwen2_logits(m, ids), *l2 = cf_qwen2_logits(m2, ids);
    CHECK(l1 && l2 && max_rel(l1, l2, 1e-30, 0) == 0, "%s: reloaded model gives different logits", dir);
    cf_tensor_release(l1); cf_tensor_release(l2);
    CHECK(m2->cfg.n_eos == m->cfg.n_eos && m2->cfg.head_dim == m->cfg.head_dim &&
          m2->cfg.tie_embeddings == m->cfg.tie_embeddings, "%s: config round trip", dir);
    /* (twenty-seventh session, mutation testing: max_position_embeddings left out of the saved
     * config.json passed the suite; the reloaded model took the default 32768) every field */
    const cf_qwen2_config *a = &m->cfg, *b = &m2->cfg;
    bool same = strcmp(a->model_type, b->model_type) == 0 && a->hidden == b->hidden &&
                a->intermediate == b->intermediate && a->layers == b->layers && a->heads == b->heads &&
                a->kv_heads == b->kv_heads && a->vocab == b->vocab && a->max_pos == b->max_pos &&
                a->rms_eps == b->rms_eps && a->rope_theta == b->rope_theta && a->qkv_bias == b->qkv_bias;
    for (int k = 0; k < 4; k++) same = same && a->rope_scaling[k] == b->rope_scaling[k];
    for (int k = 0; k < a->n_eos && k < CF_MAX_EOS; k++) same = same && a->eos[k] == b->eos[k];
    CHECK(same, "%s: every config field round-trips (max_position_embeddings %d -> %d)", dir, a->max_pos, b->max_pos);
    cf_qwen2_free(m2);
  }
  if (tmp) check_rmtree(tmp);

  cf_tensor_release(gp); cf_tensor_release(gt);
  cf_tensor_release(ids); cf_tensor_release(want_logits); cf_tensor_release(pl); cf_tensor_release(ln);
  cf_qwen2_free(m);
  cf_st_close(ref);
  (void)B;
}

static void test_config_errors(void) {
  cf_qwen2_config c;
  CHECK(cf_qwen2_config_parse("{\"model_type\":\"gpt2\",\"hidden_size\":8}", "x", &c) != 0 &&
        strstr(cf_error_message(), "gpt2"), "unknown model type refused: %s", cf_error_message());
  CHECK(cf_qwen2_config_parse("{\"model_type\":\"llama\",\"hidden_size\":8,\"intermediate_size\":8,"
                              "\"num_hidden_layers\":1,\"num_attention_heads\":2,\"vocab_size\":9,"
                              "\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":4}}", "x", &c) != 0 &&
        strstr(cf_error_message(), "yarn"), "rope scaling refused: %s", cf_error_message());
  static const char *const refused[][2] = {
      {"\"hidden_act\":\"gelu\"", "gelu"},
      {"\"mlp_bias\":true", "mlp_bias"},
      {"\"use_sliding_window\":true", "use_sliding_window"},
      {"\"rms_norm_eps\":-1e-6", "rms_norm_eps"},
      {"\"rms_norm_eps\":0", "rms_norm_eps"},
      {"\"rope_theta\":0", "rope_theta"},
      {"\"rope_theta\":1e300", "rope_theta"},
      /* (seventeenth session) values of the wrong type were ignored or misread */
      {"\"rope_theta\":\"1e6\"", "\"rope_theta\" must be a number"},
      {"\"rms_norm_eps\":\"1e-6\"", "\"rms_norm_eps\" must be a number"},
      {"\"tie_word_embeddings\":\"true\"", "\"tie_word_embeddings\" must be true or false"},
      {"\"tie_word_embeddings\":1", "\"tie_word_embeddings\" must be true or false"},
      {"\"mlp_bias\":1", "\"mlp_bias\" must be true or false"},
      {"\"use_sliding_window\":\"true\"", "\"use_sliding_window\" must be true or false"},
      {"\"attention_bias\":1", "\"attention_bias\" must be true or false"},
      {"\"rope_scaling\":\"dynamic\"", "\"rope_scaling\" must be an object or null"},
      {"\"hidden_size\":16", "\"hidden_size\" appears twice"},
      /* (twenty-first session) loaded before: generation never stopped; the bias of o_proj
       * was refused by the tensor's name, or left out when the file had none */
      {"\"eos_token_id\":9", "eos_token_id 9 is not below vocab_size 9"},
      {"\"eos_token_id\":[1,100000]", "eos_token_id 100000 is not below vocab_size 9"},
      {"\"attention_bias\":true", "attention_bias = true is not supported for llama"}};
  for (int i = 0; i < (int)(sizeof refused / sizeof refused[0]); i++) {
    char js[400];
    snprintf(js, sizeof js, "{\"model_type\":\"llama\",\"hidden_size\":8,\"intermediate_size\":8,"
             "\"num_hidden_layers\":1,\"num_attention_heads\":2,\"vocab_size\":9,%s}", refused[i][0]);
    CHECK(cf_qwen2_config_parse(js, "x", &c) != 0 && strstr(cf_error_message(), refused[i][1]),
          "%s refused: %s", refused[i][1], cf_error_message());
  }
  CHECK(cf_qwen2_config_parse("{\"model_type\":\"qwen2\",\"hidden_size\":8,\"intermediate_size\":8,"
                              "\"num_hidden_layers\":1,\"num_attention_heads\":2,\"vocab_size\":9,"
                              "\"hidden_act\":\"silu\",\"mlp_bias\":false,\"use_sliding_window\":false,"
                              "\"sliding_window\":4096}", "x", &c) == 0,
        "Qwen2.5's own settings load: %s", cf_error_message());
  CHECK(cf_qwen2_config_parse("{\"model_type\":\"qwen2\",\"hidden_size\":8}", "cfg.json", &c) != 0 &&
        strstr(cf_error_message(), "intermediate_size"), "missing field named: %s", cf_error_message());
  CHECK(cf_qwen2_config_parse("[1,2]", "cfg.json", &c) != 0, "non-object refused");
  CHECK(cf_qwen2_config_parse("{\"model_type\":\"qwen2\",\"hidden_size\":8,\"intermediate_size\":8,"
                              "\"num_hidden_layers\":1,\"num_attention_heads\":2,\"vocab_size\":9} x", "cfg.json", &c) != 0 &&
        strstr(cf_error_message(), "not valid JSON (line 1"), "text after the object refused: %s", cf_error_message());
  CHECK(cf_qwen2_config_parse("{\"model_type\":\"qwen2\",\"hidden_size\":8,\"intermediate_size\":8,\n"
                              "\"num_hidden_layers\":1,\"num_attention_heads\":2,\"vocab_size\":9,\"rope_scaling\":null,"
                              "\"tie_word_embeddings\":null,\"rope_theta\":null}\n  \n", "cfg.json", &c) == 0 && c.rope_theta == 10000.0,
        "nulls are the defaults, whitespace after the object is fine: %s", cf_error_message());
  CHECK(cf_qwen2_config_parse("{\"model_type\":\"qwen2\",\n\"hidden_size\":8,,}", "cfg.json", &c) != 0 &&
        strstr(cf_error_message(), "line 2"), "the line of a syntax error named: %s", cf_error_message());
  CHECK(cf_qwen2_config_parse("{\"model_type\":\"qwen2\",\"hidden_size\":8,\"intermediate_size\":8,"
                              "\"num_hidden_layers\":1,\"num_attention_heads\":2,\"vocab_size\":9,"
                              "\"max_position_embeddings\":0}", "cfg.json", &c) != 0 &&
        strstr(cf_error_message(), "max_position_embeddings must be > 0"), "no positions refused: %s",
        cf_error_message());
  CHECK(cf_qwen2_config_parse("{\"model_type\":\"qwen2\",\"hidden_size\":8,\"intermediate_size\":8,"
                              "\"num_hidden_layers\":1,\"num_attention_heads\":2,\"vocab_size\":9,"
                              "\"rope_parameters\":{\"rope_theta\":5000,\"rope_type\":\"default\"}}", "x", &c) == 0 &&
        c.rope_theta == 5000 && c.qkv_bias, "rope_theta inside rope_parameters: %s", cf_error_message());
  CHECK(cf_qwen2_load("/nonexistent/model") == NULL && strstr(cf_error_message(), "config.json"),
        "missing folder names config.json: %s", cf_error_message());
  /* Llama 3.1's rope scaling: kept; its four numbers required and in range */
#define L31 "{\"model_type\":\"llama\",\"hidden_size\":8,\"intermediate_size\":8,\"num_hidden_layers\":1," \
            "\"num_attention_heads\":2,\"vocab_size\":9,\"rope_scaling\":{\"rope_type\":\"llama3\""
  CHECK(cf_qwen2_config_parse(L31 ",\"factor\":8.0,\"low_freq_factor\":1.0,\"high_freq_factor\":4.0,"
                              "\"original_max_position_embeddings\":8192}}", "x", &c) == 0 &&
        c.rope_scaling[0] == 8 && c.rope_scaling[1] == 1 && c.rope_scaling[2] == 4 && c.rope_scaling[3] == 8192,
        "llama3 rope scaling kept: %s", cf_error_message());
  CHECK(cf_qwen2_config_parse(L31 ",\"factor\":8.0,\"low_freq_factor\":1.0,\"high_freq_factor\":4.0}}", "cfg.json",
                              &c) != 0 && strstr(cf_error_message(), "original_max_position_embeddings") &&
        strstr(cf_error_message(), "cfg.json"), "a missing number named: %s", cf_error_message());
  CHECK(cf_qwen2_config_parse(L31 ",\"factor\":8.0,\"low_freq_factor\":4.0,\"high_freq_factor\":1.0,"
                              "\"original_max_position_embeddings\":8192}}", "x", &c) != 0 &&
        strstr(cf_error_message(), "high_freq_factor"), "high below low refused: %s", cf_error_message());
  CHECK(cf_qwen2_config_parse(L31 ",\"factor\":0,\"low_freq_factor\":1.0,\"high_freq_factor\":4.0,"
                              "\"original_max_position_embeddings\":8192}}", "x", &c) != 0 &&
        strstr(cf_error_message(), "factor must be > 0"), "factor 0 refused: %s", cf_error_message());
#undef L31
  CHECK(cf_qwen2_config_parse("{\"model_type\":\"llama\",\"hidden_size\":8,\"intermediate_size\":8,\"num_hidden_layers\":1,"
                              "\"num_attention_heads\":2,\"vocab_size\":9,\"rope_scaling\":{\"factor\":8.0}}", "x", &c) != 0 &&
        strstr(cf_error_message(), "no rope_type"), "a factor without a type refused: %s", cf_error_message());
  CHECK(cf_qwen2_config_parse("{\"model_type\":\"llama\",\"hidden_size\":8,\"intermediate_size\":8,\"num_hidden_layers\":1,"
                              "\"num_attention_heads\":2,\"vocab_size\":9,\"rope_scaling\":{\"rope_type\":3}}", "x", &c) != 0 &&
        strstr(cf_error_message(), "must be a string"), "a non-string type refused: %s", cf_error_message());
  CHECK(cf_qwen2_config_parse("{\"model_type\":\"llama\",\"hidden_size\":8,\"intermediate_size\":8,\"num_hidden_layers\":1,"
                              "\"num_attention_heads\":2,\"vocab_size\":9,\"rope_scaling\":{\"rope_type\":null,"
                              "\"type\":\"yarn\"}}", "x", &c) != 0 && strstr(cf_error_message(), "yarn"),
        "a null rope_type does not hide type: %s", cf_error_message());
  CHECK(cf_qwen2_config_parse("{\"model_type\":\"llama\",\"hidden_size\":8,\"intermediate_size\":8,\"num_hidden_layers\":1,"
                              "\"num_attention_heads\":2,\"vocab_size\":9,\"rope_scaling\":null}", "x", &c) == 0 &&
        c.rope_scaling[0] == 0, "rope_scaling null: plain RoPE: %s", cf_error_message());
}

static int name_cmp(const void *a, const void *b) {
  return strcmp(((const cf_st_entry *)a)->name, ((const cf_st_entry *)b)->name);
}

/* A storage confit allocated (a copy) has the CPU allocator's release hook; a tensor that
 * aliased a file mapping would have another. */
static int is_copy(const cf_tensor *t) {
  int64_t one = 1;
  cf_tensor *ref = cf_tensor_zeros(1, &one, CF_DTYPE_F32);
  int r = ref && t->storage->release == ref->storage->release;
  cf_tensor_release(ref);
  return r;
}

/* A model folder whose lm_head.weight is bf16 with an odd number of elements (7 x 5 = 70 bytes)
 * and whose other weights are f32, passed to the writer in name order. lm_head.weight sorts
 * first, so laid out by name every f32 weight would start 2 bytes off 4-byte alignment (other
 * readers that map the file would copy them); the writer puts larger elements first. */
static void test_mixed_dtype_checkpoint_loads(void) {
  cf_qwen2_config cfg;
  const char *json = "{\"model_type\":\"qwen2\",\"hidden_size\":5,\"intermediate_size\":3,\"num_hidden_layers\":1,"
                     "\"num_attention_heads\":1,\"num_key_value_heads\":1,\"head_dim\":2,\"vocab_size\":7,"
                     "\"tie_word_embeddings\":false}";
  CHECK(cf_qwen2_config_parse(json, "config", &cfg) == 0, "config: %s", cf_error_message());
  cf_qwen2 *m = cf_qwen2_new(&cfg);
  CHECK(m != NULL, "new: %s", cf_error_message());
  char tmpl[512];
  char *dir = check_tmpdir(tmpl, sizeof tmpl, "confit_mixed_");
  CHECK(dir != NULL, "mkdtemp");
  if (!m || !dir) { cf_qwen2_free(m); return; }
  CHECK(cf_qwen2_config_save(&cfg, dir) == 0, "config save: %s", cf_error_message());
  cf_st_entry *e = calloc((size_t)m->nparams, sizeof *e);
  uint16_t head[35];
  int nhead = 0;
  for (int i = 0; i < m->nparams; i++) {
    cf_tensor *t = *m->slots[i];
    float *d = cf_tensor_data(t);
    int64_t numel = cf_tensor_numel(t);
    e[i].name = m->names[i];
    e[i].ndim = t->ndim;
    for (int k = 0; k < t->ndim; k++) e[i].shape[k] = t->shape[k];
    if (strcmp(m->names[i], "lm_head.weight") == 0) {
      CHECK(numel == 35, "lm_head has %lld elements", (long long)numel);
      for (int64_t k = 0; k < 35; k++) head[k] = cf_f32_to_bf16(0.25f * (float)k - 4.0f); /* exact in bf16 */
      snprintf(e[i].dtype, sizeof e[i].dtype, "BF16");
      e[i].data = head;
      e[i].nbytes = sizeof head;
      nhead++;
    } else {
      for (int64_t k = 0; k < numel; k++) d[k] = 0.125f * (float)(i * 100 + k) - 3.0f;
      snprintf(e[i].dtype, sizeof e[i].dtype, "F32");
      e[i].data = d;
      e[i].nbytes = (size_t)numel * 4;
    }
  }
  CHECK(nhead == 1, "the model has an untied lm_head.weight");
  qsort(e, (size_t)m->nparams, sizeof *e, name_cmp);
  CHECK(strcmp(e[0].name, "lm_head.weight") == 0, "lm_head.weight sorts first by name");
  char path[600];
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  CHECK(cf_st_write(path, e, (size_t)m->nparams, NULL) == 0, "write: %s", cf_error_message());
  free(e);
  /* the raw layout: every tensor aligned to its element size in the (page-aligned) mapping */
  cf_st_file *f = cf_st_open(path);
  CHECK(f != NULL, "open: %s", cf_error_message());
  for (size_t i = 0; f && i < cf_st_count(f); i++) {
    const cf_st_entry *x = cf_st_get(f, i);
    CHECK((uintptr_t)x->data % cf_st_dtype_size(x->dtype) == 0, "%s (%s) misaligned in the file", x->name, x->dtype);
  }
  cf_st_close(f);

  cf_qwen2 *m2 = cf_qwen2_load(dir);
  CHECK(m2 != NULL, "load: %s", cf_error_message());
  for (int i = 0; m2 && i < m2->nparams; i++) {
    cf_tensor *want = *m->slots[i], *got = *m2->slots[i];
    const float *g = cf_tensor_data(got);
    int64_t numel = cf_tensor_numel(got);
    int same = numel == cf_tensor_numel(want);
    if (strcmp(m2->names[i], "lm_head.weight") == 0) {
      for (int64_t k = 0; same && k < numel; k++) same = g[k] == 0.25f * (float)k - 4.0f;
      CHECK(same, "%s: bf16 values widen exactly", m2->names[i]);
      CHECK(is_copy(got), "%s: bf16 is widened into a copy", m2->names[i]);
    } else {
      same = same && memcmp(g, cf_tensor_data(want), (size_t)numel * 4) == 0;
      CHECK(same, "%s: f32 values exact", m2->names[i]);
      CHECK(is_copy(got), "%s: f32 weight aliases the file instead of being the model's own", m2->names[i]);
    }
  }
  cf_qwen2_free(m2);
  /* a config.json with more layers than its checkpoint: refused, naming the first missing layer,
   * before memory for them all is allocated */
  cfg.layers = 100000;
  CHECK(cf_qwen2_config_save(&cfg, dir) == 0, "config save: %s", cf_error_message());
  m2 = cf_qwen2_load(dir);
  CHECK(m2 == NULL && strstr(cf_error_message(), "\"model.layers.1.*\"") &&
        strstr(cf_error_message(), "num_hidden_layers = 100000"), "too many layers refused: %s", cf_error_message());
  cf_qwen2_free(m2);
  /* and one whose sizes ask for more parameters than the checkpoint holds numbers (a garbled
   * head_dim of 2^29 was an allocation of half a terabyte; a small one keeps this test safe
   * should the check go) */
  cfg.layers = m->cfg.layers;
  cfg.head_dim = 1 << 16;
  CHECK(cf_qwen2_config_save(&cfg, dir) == 0, "config save: %s", cf_error_message());
  m2 = cf_qwen2_load(dir);
  CHECK(m2 == NULL && strstr(cf_error_message(), "do not belong together") &&
        strstr(cf_error_message(), "head_dim 65536"), "oversized config refused: %s", cf_error_message());
  cf_qwen2_free(m2);
  cfg.head_dim = m->cfg.head_dim;
  double total = 0;
  for (int i = 0; i < m->nparams; i++) total += (double)cf_tensor_numel(*m->slots[i]);
  CHECK(cf_qwen2_numel(&cfg) == total, "cf_qwen2_numel %.0f, the model's slots hold %.0f", cf_qwen2_numel(&cfg), total);
  cf_qwen2_free(m);
  check_rmtree(dir);
}

/* A random model built from a config (weights N(0, 0.3^2)), f32 on the CPU; NULL + message. */
static cf_qwen2 *random_model(const char *json, uint64_t seed) {
  cf_qwen2_config c;
  if (cf_qwen2_config_parse(json, "tiny", &c)) return NULL;
  cf_qwen2 *m = cf_qwen2_new(&c);
  if (!m) return NULL;
  cf_rng g;
  cf_rng_init(&g, seed);
  for (int i = 0; i < m->nparams; i++) {
    cf_tensor *p = *m->slots[i];
    cf_tensor *r = cf_tensor_randn(p->ndim, p->shape, CF_DTYPE_F32, &g);
    cf_tensor *s = r ? cf_op_scalar(CF_OP_mul, r, 0.3) : NULL;
    if (!s || cf_qwen2_set_param(m, i, s)) { cf_tensor_release(r); cf_tensor_release(s); cf_qwen2_free(m); return NULL; }
    cf_tensor_release(r);
    cf_tensor_release(s);
  }
  return m;
}

#define TINY_JSON "{\"model_type\":\"qwen2\",\"hidden_size\":8,\"intermediate_size\":16," \
                  "\"num_hidden_layers\":1,\"num_attention_heads\":2,\"num_key_value_heads\":1,\"vocab_size\":11"

/* A tiny random model (1 layer, D 8) built from a config, f32 on the CPU. */
static cf_qwen2 *tiny_model(void) { return random_model(TINY_JSON "}", 5); }

static int find_param(const cf_qwen2 *m, const char *name) {
  for (int i = 0; i < m->nparams; i++) if (strcmp(m->names[i], name) == 0) return i;
  return -1;
}

/* set_param refuses what the model cannot hold (dtype, contiguity, device) with the property named;
 * generate's check names the property that is wrong. */
static void test_set_param_checks(void) {
  cf_qwen2 *m = tiny_model();
  CHECK(m != NULL, "tiny model: %s", cf_error_message());
  if (!m) return;
  int qi = find_param(m, "model.layers.0.self_attn.q_proj.weight");
  cf_tensor *q = *m->slots[qi];
  const cf_dtype bad[3] = {CF_DTYPE_F64, CF_DTYPE_BF16, CF_DTYPE_I64};
  for (int k = 0; k < 3; k++) {
    cf_tensor *t = cf_tensor_zeros(q->ndim, q->shape, bad[k]);
    int rc = cf_qwen2_set_param(m, qi, t);
    CHECK(rc != 0 && strstr(cf_error_message(), cf_dtype_name(bad[k])) && strstr(cf_error_message(), "f32") &&
          strstr(cf_error_message(), "q_proj"), "a %s parameter refused with the dtype named: %s",
          cf_dtype_name(bad[k]), rc ? cf_error_message() : "(accepted)");
    CHECK(*m->slots[qi] == q, "a refused tensor leaves the parameter as it was");
    cf_tensor_release(t);
  }
  /* [Q, D] as the transpose of a [D, Q] tensor: the right shape, not contiguous */
  int64_t ts[2] = {q->shape[1], q->shape[0]};
  cf_tensor *tt = cf_tensor_zeros(2, ts, CF_DTYPE_F32);
  cf_tensor *nc = cf_view_transpose(tt, 0, 1);
  int rc = cf_qwen2_set_param(m, qi, nc);
  CHECK(rc != 0 && strstr(cf_error_message(), "contiguous"), "a non-contiguous parameter refused: %s",
        rc ? cf_error_message() : "(accepted)");
  cf_tensor *ok = cf_tensor_clone(nc);
  CHECK(cf_qwen2_set_param(m, qi, ok) == 0 && *m->slots[qi] == ok, "a contiguous f32 copy is accepted: %s",
        cf_error_message());
  cf_tensor *wrong = cf_tensor_zeros(1, ts, CF_DTYPE_F32);
  CHECK(cf_qwen2_set_param(m, qi, wrong) != 0 && strstr(cf_error_message(), "shape"), "wrong shape refused");
  cf_tensor_release(wrong);
  /* generate names the property: a non-contiguous slot (written past set_param) */
  cf_tensor *kept = *m->slots[qi];
  *m->slots[qi] = nc;
  int64_t prompt[2] = {1, 2};
  const int64_t *pp = prompt;
  int plen = 2;
  cf_gen_opts o = {.n = 1, .temperature = 0, .top_p = 1, .max_new_tokens = 2, .ignore_eos = true};
  cf_gen_sample *s = NULL;
  rc = cf_qwen2_generate(m, &pp, &plen, 1, &o, &s);
  CHECK(rc != 0 && strstr(cf_error_message(), "not contiguous"), "generate says the parameter is not contiguous: %s",
        rc ? cf_error_message() : "(ran)");
  if (rc == 0) cf_gen_samples_free(s, 1);
  *m->slots[qi] = kept;
  cf_tensor_release(nc);
  cf_tensor_release(tt);
  cf_tensor_release(ok);
  cf_qwen2_free(m);
}

/* Activation recomputation reads the layer's weights again in backward: a weight written in
 * place between the forward and the backward is refused, not silently used. */
static void test_recompute_version(void) {
  cf_qwen2 *m = tiny_model();
  CHECK(m != NULL, "tiny model: %s", cf_error_message());
  if (!m) return;
  m->recompute = true;
  for (int i = 0; i < m->nparams; i++) (*m->slots[i])->requires_grad = true;
  int64_t shape[2] = {1, 4};
  cf_tensor *ids = cf_tensor_zeros(2, shape, CF_DTYPE_I64);
  for (int64_t t = 0; t < 4; t++) ((int64_t *)cf_tensor_data(ids))[t] = t + 1;
  int64_t pl = 1;
  for (int pass = 0; pass < 2; pass++) {
    cf_tensor *lp = cf_qwen2_logprobs(m, ids, &pl, NULL, 1.0);
    cf_tensor *loss = lp ? cf_op_dim(CF_OP_sum, lp, CF_DIM_ALL, false) : NULL;
    CHECK(loss != NULL, "recompute forward: %s", cf_error_message());
    if (!loss) { cf_tensor_release(lp); break; }
    if (pass == 1) cf_tensor_fill_(m->layer[0].up_w, 0.5);  /* after the forward, before its backward */
    int rc = cf_backward(loss, NULL, false);
    if (pass == 0) CHECK(rc == 0, "recompute backward: %s", cf_error_message());
    else
      CHECK(rc != 0 && strstr(cf_error_message(), "modified in place") && strstr(cf_error_message(), "layer_recompute"),
            "a weight written before the recompute's backward is refused: %s", rc ? cf_error_message() : "(ran)");
    cf_tensor_release(loss);
    cf_tensor_release(lp);
  }
  cf_tensor_release(ids);
  cf_qwen2_free(m);
}

/* (nineteenth session, mutation testing: dropping the recomputed layer's position check passed
 * the suite) */
/* cf_qwen2_hidden with caller-given positions (qwen2.h): with recomputation the backward runs the
 * layer again with them, so positions written in place after the forward must be refused, as a
 * weight written in place is (test_recompute_version above) and as the plain graph does. */
static void test_recompute_positions_version(void) {
  for (int recompute = 0; recompute < 2; recompute++) {
    cf_qwen2 *m = tiny_model();
    CHECK(m != NULL, "tiny model: %s", cf_error_message());
    if (!m) return;
    m->recompute = recompute;
    for (int i = 0; i < m->nparams; i++) (*m->slots[i])->requires_grad = true;
    int64_t shape[2] = {1, 4}, ps[1] = {4};
    cf_tensor *ids = cf_tensor_zeros(2, shape, CF_DTYPE_I64), *pos = cf_tensor_zeros(1, ps, CF_DTYPE_I64);
    for (int64_t t = 0; t < 4; t++) {
      ((int64_t *)cf_tensor_data(ids))[t] = t + 1;
      ((int64_t *)cf_tensor_data(pos))[t] = t;
    }
    cf_tensor *h = cf_qwen2_hidden(m, ids, pos);
    cf_tensor *loss = h ? cf_op_dim(CF_OP_sum, h, CF_DIM_ALL, false) : NULL;
    CHECK(loss != NULL, "forward with positions: %s", cf_error_message());
    if (loss) {
      cf_tensor_fill_(pos, 3.0);   /* after the forward, before its backward */
      int rc = cf_backward(loss, NULL, false);
      CHECK(rc != 0 && strstr(cf_error_message(), "modified in place"),
            "%s: positions written before the backward are refused: %s", recompute ? "recompute" : "plain",
            rc ? cf_error_message() : "(ran)");
    }
    cf_tensor_release(loss);
    cf_tensor_release(h);
    cf_tensor_release(pos);
    cf_tensor_release(ids);
    cf_qwen2_free(m);
  }
}

/* ids 1..T as an i64 [1, T] tensor */
static cf_tensor *ramp_ids(int64_t T) {
  int64_t shape[2] = {1, T};
  cf_tensor *ids = cf_tensor_zeros(2, shape, CF_DTYPE_I64);
  for (int64_t t = 0; ids && t < T; t++) ((int64_t *)cf_tensor_data(ids))[t] = t % 10 + 1;
  return ids;
}

/* (twenty-seventh session, mutation testing: a tied head left as it was passed the suite, since
 * init_random re-ties after its set_params) A tied model's LM head is its embedding: after
 * set_param replaces the embedding, the logits are the final hidden states times the new
 * embedding's rows. */
static void test_tied_head_follows_set_param(void) {
  cf_qwen2 *m = random_model(TINY_JSON ",\"tie_word_embeddings\":true}", 9);
  CHECK(m != NULL, "tied model: %s", cf_error_message());
  if (!m) return;
  cf_tensor *ids = ramp_ids(4);
  cf_tensor *h = cf_qwen2_hidden(m, ids, NULL), *lg = cf_qwen2_logits(m, ids);
  CHECK(h && lg, "forward: %s", cf_error_message());
  const cf_tensor *E = m->embed;
  double worst = 0;
  for (int64_t t = 0; h && lg && t < 4; t++)
    for (int64_t v = 0; v < m->cfg.vocab; v++) {
      double want = 0;
      for (int64_t d = 0; d < m->cfg.hidden; d++)
        want += (double)((const float *)cf_tensor_data(h))[t * m->cfg.hidden + d] *
                ((const float *)cf_tensor_data(E))[v * m->cfg.hidden + d];
      double got = ((const float *)cf_tensor_data(lg))[t * m->cfg.vocab + v];
      double r = fabs(got - want) / (1e-5 + 1e-4 * fabs(want));
      if (r > worst) worst = r;
    }
  CHECK(worst <= 1, "tied logits are hidden x the embedding set by set_param (worst ratio %g)", worst);
  CHECK(m->lm_head == m->embed, "the tied head is the embedding itself");
  cf_tensor_release(h);
  cf_tensor_release(lg);
  cf_tensor_release(ids);
  cf_qwen2_free(m);
}

/* The safetensors entries of an f32 model's parameters, with one free entry after them (calloc'd:
 * the caller fills entry m->nparams and frees the list). */
static cf_st_entry *param_entries(cf_qwen2 *m) {
  cf_st_entry *e = calloc((size_t)m->nparams + 1, sizeof *e);
  for (int i = 0; e && i < m->nparams; i++) {
    cf_tensor *t = *m->slots[i];
    e[i].name = m->names[i];
    snprintf(e[i].dtype, sizeof e[i].dtype, "F32");
    e[i].ndim = t->ndim;
    for (int d = 0; d < t->ndim; d++) e[i].shape[d] = t->shape[d];
    e[i].data = cf_tensor_data(t);
    e[i].nbytes = (size_t)cf_tensor_numel(t) * 4;
  }
  return e;
}

/* (twenty-seventh session, mutation testing) Older Hugging Face checkpoints (Llama 2's) carry
 * "model.layers.N.self_attn.rotary_emb.inv_freq": a buffer, not a parameter, that loads and is
 * passed over (the model's RoPE comes from config.json); another unknown tensor is still refused. */
static void test_rotary_buffer_passed_over(void) {
  cf_qwen2 *m = tiny_model();
  char tmpl[512];
  char *dir = check_tmpdir(tmpl, sizeof tmpl, "confit_rotary_");
  CHECK(m && dir, "tiny model and a folder: %s", cf_error_message());
  if (!m || !dir) { cf_qwen2_free(m); return; }
  CHECK(cf_qwen2_config_save(&m->cfg, dir) == 0, "config save: %s", cf_error_message());
  char path[600];
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  float inv[2] = {1.0f, 0.01f};
  const char *extra[2] = {"model.layers.0.self_attn.rotary_emb.inv_freq", "model.layers.0.self_attn.other.weight"};
  for (int k = 0; k < 2; k++) {
    cf_st_entry *e = param_entries(m);
    e[m->nparams] = (cf_st_entry){.name = (char *)extra[k], .dtype = "F32", .ndim = 1, .shape = {2}, .data = inv,
                                  .nbytes = sizeof inv};
    CHECK(cf_st_write(path, e, (size_t)m->nparams + 1, NULL) == 0, "write: %s", cf_error_message());
    free(e);
    cf_qwen2 *m2 = cf_qwen2_load(dir);
    if (k == 0) {
      CHECK(m2 != NULL, "a checkpoint with a rotary_emb buffer loads: %s", cf_error_message());
      cf_tensor *ids = ramp_ids(5);
      cf_tensor *l1 = m2 ? cf_qwen2_logits(m, ids) : NULL, *l2 = m2 ? cf_qwen2_logits(m2, ids) : NULL;
      CHECK(!m2 || (l1 && l2 && max_rel(l2, l1, 1e-30, 0) == 0), "and gives the saved model's logits");
      cf_tensor_release(l1); cf_tensor_release(l2); cf_tensor_release(ids);
    } else {
      CHECK(m2 == NULL && strstr(cf_error_message(), "unexpected tensor \"model.layers.0.self_attn.other.weight\""),
            "another unknown tensor is refused, named: %s", m2 ? "(loaded)" : cf_error_message());
    }
    cf_qwen2_free(m2);
  }
  cf_qwen2_free(m);
  check_rmtree(dir);
}

/* (twenty-seventh session, mutation testing) The context's edges: a forward of exactly
 * max_position_embeddings tokens runs, one more is refused; generate fills the context to its
 * last position (prompt + max_new_tokens = max_position_embeddings), its log-prob that of the full
 * forward of the same tokens, one more is refused; max_new_tokens = 0 gives empty samples. */
static void test_context_edges(void) {
  cf_qwen2 *m = random_model(TINY_JSON ",\"max_position_embeddings\":6}", 11);
  CHECK(m != NULL, "model: %s", cf_error_message());
  if (!m) return;
  cf_tensor *ids = ramp_ids(6), *more = ramp_ids(7);
  cf_tensor *lg = cf_qwen2_logits(m, ids);
  CHECK(lg != NULL, "a forward of max_position_embeddings tokens runs: %s", cf_error_message());
  cf_tensor *lg7 = cf_qwen2_logits(m, more);
  CHECK(lg7 == NULL && strstr(cf_error_message(), "7 tokens exceed max_position_embeddings 6"),
        "one more is refused: %s", lg7 ? "(ran)" : cf_error_message());
  cf_tensor_release(lg); cf_tensor_release(lg7); cf_tensor_release(more);
  int64_t prompt[2] = {3, 4};
  const int64_t *pp = prompt;
  int plen = 2;
  cf_gen_opts o = {.n = 2, .temperature = 1.0, .top_p = 1, .max_new_tokens = 4, .seed = 3, .ignore_eos = true};
  cf_gen_sample *s = NULL;
  int rc = cf_qwen2_generate(m, &pp, &plen, 1, &o, &s);
  CHECK(rc == 0, "prompt + max_new_tokens = max_position_embeddings: %s", cf_error_message());
  for (int i = 0; rc == 0 && i < 2; i++) {
    CHECK(s[i].ntokens == 4 && s[i].finish == CF_FINISH_LENGTH, "sample %d: %d tokens, finish %d", i, s[i].ntokens,
          s[i].finish);
    int64_t *d = cf_tensor_data(ids);
    d[0] = 3; d[1] = 4;
    for (int t = 0; t < s[i].ntokens && t < 4; t++) d[2 + t] = s[i].tokens[t];
    int64_t pl = 2;
    cf_tensor *full = cf_qwen2_logprobs(m, ids, &pl, NULL, 1.0);
    CHECK(full && fabs(cf_tensor_get_flat(full, 0) - s[i].logprob) < 1e-4 * (1 + fabs(s[i].logprob)),
          "sample %d: log-prob %g, the full forward's %g", i, s[i].logprob, full ? cf_tensor_get_flat(full, 0) : NAN);
    cf_tensor_release(full);
  }
  if (rc == 0) cf_gen_samples_free(s, 2);
  o.max_new_tokens = 5;
  s = NULL;
  rc = cf_qwen2_generate(m, &pp, &plen, 1, &o, &s);
  CHECK(rc != 0 && strstr(cf_error_message(), "prompt 1 (2 tokens) + max_new_tokens 5 exceeds max_position_embeddings 6"),
        "one past the context refused: %s", rc ? cf_error_message() : "(ran)");
  if (rc == 0) cf_gen_samples_free(s, 2);
  o.max_new_tokens = 0;
  s = NULL;
  rc = cf_qwen2_generate(m, &pp, &plen, 1, &o, &s);
  CHECK(rc == 0 && s[0].ntokens == 0 && s[1].ntokens == 0 && s[0].finish == CF_FINISH_LENGTH && s[0].logprob == 0,
        "max_new_tokens = 0: empty samples: %s", rc ? cf_error_message() : "");
  if (rc == 0) cf_gen_samples_free(s, 2);
  cf_tensor_release(ids);
  cf_qwen2_free(m);
}

/* (twenty-seventh session, mutation testing: the generator's attention taking its softmax's
 * maximum from 0 instead of the scores passed the suite) Attention scores far below zero: with
 * k_proj = -q_proj and large weights every position's score with itself is about -|q|^2 / sqrt(hd),
 * thousands below zero, where exp without the largest score subtracted is 0 / 0. The KV-cache
 * generator still gives the full forward's log-prob. */
static void test_generate_extreme_scores(void) {
  /* two layers: the first one's output at position 0 (which attends to itself alone) feeds every
   * later position through the second one's cache */
  cf_qwen2 *m = random_model("{\"model_type\":\"llama\",\"hidden_size\":8,\"intermediate_size\":16,"
                             "\"num_hidden_layers\":2,\"num_attention_heads\":2,\"vocab_size\":11}", 13);
  CHECK(m != NULL, "model: %s", cf_error_message());
  if (!m) return;
  for (int l = 0; l < 2; l++) {
    cf_qwen2_layer *L = &m->layer[l];
    float *q = cf_tensor_data(L->q_w), *k = cf_tensor_data(L->k_w), *w = cf_tensor_data(L->in_norm);
    for (int64_t i = 0; i < cf_tensor_numel(L->q_w); i++) { q[i] *= 60; k[i] = -q[i]; }
    for (int64_t i = 0; i < cf_tensor_numel(L->in_norm); i++) w[i] = 1;
  }
  int64_t prompt[3] = {3, 4, 5};
  const int64_t *pp = prompt;
  int plen = 3;
  cf_gen_opts o = {.n = 1, .temperature = 0, .top_p = 1, .max_new_tokens = 4, .ignore_eos = true};
  cf_gen_sample *s = NULL;
  int rc = cf_qwen2_generate(m, &pp, &plen, 1, &o, &s);
  CHECK(rc == 0, "generate with scores far below zero: %s", cf_error_message());
  if (rc == 0) {
    int64_t shape[2] = {1, 3 + s[0].ntokens};
    cf_tensor *seq = cf_tensor_zeros(2, shape, CF_DTYPE_I64);
    int64_t *d = cf_tensor_data(seq);
    for (int t = 0; t < 3; t++) d[t] = prompt[t];
    for (int t = 0; t < s[0].ntokens; t++) d[3 + t] = s[0].tokens[t];
    int64_t pl = 3;
    cf_tensor *full = cf_qwen2_logprobs(m, seq, &pl, NULL, 1.0);
    CHECK(full && isfinite(s[0].logprob) && fabs(cf_tensor_get_flat(full, 0) - s[0].logprob) < 1e-4 * (1 + fabs(s[0].logprob)),
          "KV-cache log-prob %g vs full forward %g", s[0].logprob, full ? cf_tensor_get_flat(full, 0) : NAN);
    cf_tensor_release(full);
    cf_tensor_release(seq);
    cf_gen_samples_free(s, 1);
  }
  cf_qwen2_free(m);
}

/* (twenty-seventh session, mutation testing: checking only the rows of a tied checkpoint's
 * lm_head.weight passed the suite) A tied model's checkpoint may carry lm_head.weight, unread,
 * only of the embedding's shape [V, D]: one of width D + 1 is refused, naming both shapes. */
static void test_tied_head_shape(void) {
  cf_qwen2 *m = random_model(TINY_JSON ",\"tie_word_embeddings\":true}", 9);
  char tmpl[512];
  char *dir = check_tmpdir(tmpl, sizeof tmpl, "confit_tiedhead_");
  CHECK(m && dir, "tied model and a folder: %s", cf_error_message());
  if (!m || !dir) { cf_qwen2_free(m); return; }
  CHECK(cf_qwen2_config_save(&m->cfg, dir) == 0, "config save: %s", cf_error_message());
  char path[600];
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  int64_t V = m->cfg.vocab, D = m->cfg.hidden;
  float *head = calloc((size_t)(V * (D + 1)), sizeof *head);
  for (int wide = 0; wide < 2; wide++) {
    cf_st_entry *e = param_entries(m);
    e[m->nparams] = (cf_st_entry){.name = "lm_head.weight", .dtype = "F32", .ndim = 2, .shape = {V, D + wide},
                                  .data = head, .nbytes = (size_t)(V * (D + wide)) * 4};
    CHECK(cf_st_write(path, e, (size_t)m->nparams + 1, NULL) == 0, "write: %s", cf_error_message());
    free(e);
    cf_qwen2 *m2 = cf_qwen2_load(dir);
    if (!wide)
      CHECK(m2 && m2->lm_head == m2->embed, "a tied checkpoint with an lm_head.weight [V, D] loads, the head the "
            "embedding: %s", m2 ? "" : cf_error_message());
    else
      CHECK(m2 == NULL && strstr(cf_error_message(), "has the shape [11 x 9]") &&
            strstr(cf_error_message(), "[11 x 8] (tie_word_embeddings = true)"),
            "an lm_head.weight [V, D + 1] is refused: %s", m2 ? "(loaded)" : cf_error_message());
    cf_qwen2_free(m2);
  }
  free(head);
  cf_qwen2_free(m);
  check_rmtree(dir);
}

int main(void) {
  test_set_param_checks();
  test_recompute_version();
  test_recompute_positions_version();
  test_tied_head_follows_set_param();
  test_rotary_buffer_passed_over();
  test_context_edges();
  test_generate_extreme_scores();
  test_tied_head_shape();
  test_config_errors();
  test_mixed_dtype_checkpoint_loads();
  test_fixture("tests/fixtures/tiny_qwen2");
  test_fixture("tests/fixtures/tiny_llama");
  test_fixture("tests/fixtures/tiny_llama31"); /* Llama 3.1 rope scaling */
  return check_finish();
}
