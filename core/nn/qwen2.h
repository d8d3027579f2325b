/* qwen2.h - the decoder-only transformer of the Qwen2 / Llama family, Hugging Face layout.
 *
 * A model is its config plus one tensor per Hugging Face parameter name. Two forward paths:
 *  - cf_qwen2_hidden(): the training forward built from ops (autograd records it), returning
 *    the final-norm hidden states [B, T, D]; logits and log-probs are taken from them.
 *  - generation (generate.h): a KV-cache path with no autograd for sampling.
 * Weights are f32 on the CPU (bf16 checkpoints are widened at load); the CUDA layer may move
 * them to the GPU in bf16.
 */
#ifndef CF_NN_QWEN2_H
#define CF_NN_QWEN2_H

#include <stdbool.h>
#include "../tensor.h"

#define CF_MAX_EOS 32

typedef struct cf_qwen2_config {
  char model_type[16];     /* "qwen2" or "llama" */
  int hidden;              /* hidden_size */
  int intermediate;        /* intermediate_size */
  int layers;              /* num_hidden_layers */
  int heads;               /* num_attention_heads */
  int kv_heads;            /* num_key_value_heads */
  int head_dim;            /* head_dim, or hidden / heads */
  int vocab;               /* vocab_size */
  int max_pos;             /* max_position_embeddings; absent: transformers' default for the
                              model_type (qwen2 32768, llama 2048) */
  double rms_eps;
  double rope_theta;
  double rope_scaling[4];  /* rope_scaling of rope_type "llama3": factor, low_freq_factor,
                              high_freq_factor, original_max_position_embeddings (rope_freq.h);
                              factor 0: none (plain RoPE) */
  bool tie_embeddings;
  bool qkv_bias;           /* Qwen2: q/k/v projections have biases */
  int eos[CF_MAX_EOS];     /* from generation_config.json (else config.json) */
  int n_eos;
} cf_qwen2_config;

typedef struct cf_qwen2_layer {
  cf_tensor *in_norm, *post_norm;            /* [D] */
  cf_tensor *q_w, *k_w, *v_w, *o_w;          /* [H*hd, D], [Hkv*hd, D], [Hkv*hd, D], [D, H*hd] */
  cf_tensor *q_b, *k_b, *v_b;                /* biases or NULL */
  cf_tensor *gate_w, *up_w, *down_w;         /* [F, D], [F, D], [D, F] */
} cf_qwen2_layer;

typedef struct cf_qwen2 {
  cf_qwen2_config cfg;
  cf_tensor *embed;        /* model.embed_tokens.weight [V, D] */
  cf_tensor *final_norm;   /* model.norm.weight [D] */
  cf_tensor *lm_head;      /* lm_head.weight [V, D]; the embedding itself when tied */
  cf_qwen2_layer *layer;
  /* Every parameter by its Hugging Face name (pointers into the fields above). */
  int nparams;
  char **names;
  cf_tensor ***slots;
  /* Activation recomputation: when set, the training forward keeps only each layer's input
   * (one [B*T, D] tensor per layer) and backward runs the layer again to get its gradients. */
  bool recompute;
} cf_qwen2;

/* Parse config.json (+ generation_config.json when present) in dir. */
int cf_qwen2_config_load(const char *dir, cf_qwen2_config *cfg);
/* Parse a config from JSON text (label names it in errors). */
int cf_qwen2_config_parse(const char *json, const char *label, cf_qwen2_config *cfg);
/* max_position_embeddings when config.json has none: transformers' default for model_type
 * (LlamaConfig 2048, Qwen2Config 32768); 0 for a model_type the loader does not read. The one
 * place the default lives: the parser and the recipes' context checks (cli.model_context,
 * through confit.core.model_default_context) both ask it. */
int cf_qwen2_default_max_pos(const char *model_type);
/* Write config.json (and generation_config.json) for cfg into dir. */
int cf_qwen2_config_save(const cf_qwen2_config *cfg, const char *dir);

/* How many parameters a model of cfg has (every weight, bias and norm; the head once when tied). */
double cf_qwen2_numel(const cf_qwen2_config *cfg);
/* Load a model folder: config + safetensors (single or sharded). NULL + message on failure. */
cf_qwen2 *cf_qwen2_load(const char *dir);
/* A model with every parameter zero-filled (f32, CPU) for cfg: to be filled by the caller. */
cf_qwen2 *cf_qwen2_new(const cf_qwen2_config *cfg);
void cf_qwen2_free(cf_qwen2 *m);
/* Save config + model.safetensors (f32) into dir (created if missing), atomically per file. */
int cf_qwen2_save(const cf_qwen2 *m, const char *dir);
/* Replace parameter i with t (takes a new reference). t must have the parameter's shape, be
 * contiguous, and match the model's layout: the dtype and device of the parameter it replaces,
 * which is f32 on the CPU (bf16 or f32 on the GPU, model_cuda.h). -1 + message naming the
 * property otherwise, the parameter left as it was. */
int cf_qwen2_set_param(cf_qwen2 *m, int i, cf_tensor *t);
/* Like cf_qwen2_set_param, checking the shape only: for moving every parameter to another
 * device or dtype at once (model_cuda.cu), where the model is mixed until the last one. */
int cf_qwen2_replace_param(cf_qwen2 *m, int i, cf_tensor *t);

/* Training forward: ids integer [B, T] -> final-norm hidden states [B, T, D] (autograd).
 * positions: NULL for 0..T-1 in every row. With m->recompute each layer is one autograd node
 * that saves only its input and recomputes the layer in backward (same gradients, the
 * activation memory of one layer instead of all). */
cf_tensor *cf_qwen2_hidden(cf_qwen2 *m, cf_tensor *ids, cf_tensor *positions);
/* Logits [B, T, V] = hidden @ lm_head^T. */
cf_tensor *cf_qwen2_logits(cf_qwen2 *m, cf_tensor *ids);
/* Per-sequence sums of completion-token log-probs at temperature temp: [B].
 * Row b is scored on tokens prompt_lens[b] .. lens[b]-1 (lens NULL: all T). Chunked over
 * vocab rows (head_logprob): the [tokens x V] logits never exist at once. Differentiable.
 * f32 for f32 and bf16 models (token log-probs from f32 logits, summed in f32), f64 for f64. */
cf_tensor *cf_qwen2_logprobs(cf_qwen2 *m, cf_tensor *ids, const int64_t *prompt_lens,
                             const int64_t *lens, double temp);

#endif
