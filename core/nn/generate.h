/* generate.h - batched sampling from a Qwen2/Llama model with a KV cache (no autograd).
 *
 * Prompts of different lengths are prefilled together, once each; the n samples of a prompt
 * start from copies of that prompt's KV cache. Each decode step runs every unfinished sample as
 * one row of the same GEMMs, at its own position. Sample j of prompt p draws its random numbers
 * from a Philox stream keyed by (seed, p, j) and counted by step, so the random number a sample
 * uses at a step does not depend on threading, batching or n. The logits do, at the level of
 * float rounding (about 1e-6: up to 4 rows take a row-by-row product, more rows and other thread
 * counts sgemm's blocking), so a token can differ alone and batched only where two candidates
 * are that close, for greedy decoding too.
 *
 * A sample's tokens include the stop token that ended it (its log-prob counts in the sum).
 * Log-probs are those of the sampling distribution at the given temperature before top-k/top-p
 * truncation: log_softmax(logits / T); for greedy decoding, T = 1.
 */
#ifndef CF_NN_GENERATE_H
#define CF_NN_GENERATE_H

#include <stdbool.h>
#include <stdint.h>
#include "qwen2.h"

enum { CF_FINISH_STOP = 0, CF_FINISH_LENGTH = 1, CF_FINISH_INTERRUPTED = 2 };

typedef struct cf_gen_opts {
  int n;                    /* samples per prompt (>= 1) */
  double temperature;       /* 0 = greedy */
  double top_p;             /* (0, 1]; 1 = off */
  int top_k;                /* 0 = off */
  int max_new_tokens;       /* >= 0 */
  uint64_t seed;
  const int64_t *stop;      /* extra stop ids */
  int nstop;
  bool ignore_eos;          /* do not stop on the model's EOS ids */
  double score_temperature; /* > 0: also each sample's log-prob under
                               log_softmax(logits / score_temperature), from the sampler's own
                               logits (score_logprob; on the GPU k_score, within a float's range);
                               0 = off */
} cf_gen_opts;

typedef struct cf_gen_sample {
  int prompt;               /* index of its prompt */
  int64_t *tokens;          /* completion tokens */
  float *logprobs;          /* per token */
  int ntokens;
  double logprob;           /* sum of logprobs */
  double score_logprob;     /* with score_temperature: the sum at that temperature */
  int finish;               /* CF_FINISH_* */
} cf_gen_sample;

/* Sample from m. out gets nprompts * o->n samples, ordered prompt by prompt; free them with
 * cf_gen_samples_free. Returns 0, or -1 with a message (bad options, tokens out of range...). */
int cf_qwen2_generate(cf_qwen2 *m, const int64_t *const *prompts, const int *prompt_lens,
                      int nprompts, const cf_gen_opts *o, cf_gen_sample **out);
void cf_gen_samples_free(cf_gen_sample *s, int n);

/* The CUDA layer provides this for models whose weights live on the GPU (weak elsewhere). */
int cf_cuda_qwen2_generate(cf_qwen2 *m, const int64_t *const *prompts, const int *prompt_lens,
                           int nprompts, const cf_gen_opts *o, cf_gen_sample **out)
  __attribute__((weak));

/* The Philox key of sample j of prompt (0-based) under seed: its random stream, counted by decode
 * step, on the CPU (generate.c) and the GPU (kernels/generate.cu) alike. */
uint64_t cf_gen_key(uint64_t seed, int prompt, int j);

/* Does token t end a sample: one of the model's EOS ids (unless o->ignore_eos) or of o->stop?
 * (Both generators ask this; the stop token itself is kept in the sample.) */
bool cf_gen_is_stop(const cf_qwen2 *m, const cf_gen_opts *o, int64_t t);

/* Pick a token from logits [V] (the CPU generator's; the GPU samples in kernels/gen_sample.cuh).
 * u: uniform in [0, 1); any T > 0 (T <= 0: greedy). top_k (0: off) and top_p (1: off) keep the
 * most probable ids (by logit, ties by id); top_p keeps the shortest prefix whose probabilities
 * add up to top_p (within 1e-12, which rounding of the sum may miss) of the whole vocabulary's
 * mass, or with top_k of the top_k ids' mass: top-k first, then top-p among the top-k ids
 * renormalised, as Hugging Face's and vLLM's samplers do (until the eighteenth session top_p
 * counted against the whole vocabulary with top_k too, keeping more ids than they would). The
 * pick is the inverse CDF at u over the kept ids in id order, as on the GPU. Writes the token's log-prob under log_softmax(logits / T) (T = 1 when
 * greedy). scratch_idx, scratch_p: workspace of V each. Returns -1 with a message (core/error.h)
 * when the logits hold NaN or +inf, or only -inf. */
int64_t cf_sample_token(const float *logits, int64_t V, double temperature, int top_k,
                        double top_p, double u, double *logprob, int64_t *scratch_idx,
                        double *scratch_p);

#endif
