/* model_cuda.h - a model's parameters on the GPU (model_cuda.cu; CUDA builds only).
 *
 * cf_qwen2_to_cuda replaces every parameter slot (cf_qwen2_replace_param) with a CUDA tensor of dtype
 * bf16 or f32, copying the values (f32 -> bf16 rounds to nearest even on the GPU). Per layer the
 * q/k/v projections share one storage (q, then k, then v) and so do gate/up (gate, then up), so
 * the generator can run each group as one GEMM; each parameter is still its own tensor (a view).
 * requires_grad is carried over. A tied head is re-pointed at the new embedding.
 *
 * Master weights: no f32 copy is kept here. A model moved in bf16 holds only bf16; training with
 * f32 master weights is the optimizer's business (or move the model in f32). cf_qwen2_to_cpu
 * brings everything back as f32 CPU tensors (for saving or the CPU paths).
 *
 * cf_qwen2_init_random_cuda allocates the parameters on the GPU and fills them there without
 * reading the CPU values: norm weights 1, biases 0, every matrix N(0, std^2) from a device Philox
 * stream keyed by seed (value i of the concatenated parameters from counter i/2, Box-Muller in
 * f32). It is for benchmarks and tests of models too large to initialise on the CPU.
 *
 * All return 0, or -1 with a message (no device, out of memory); on failure the model is left
 * unchanged.
 */
#ifndef CF_MODEL_CUDA_H
#define CF_MODEL_CUDA_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "nn/qwen2.h"

int cf_qwen2_to_cuda(cf_qwen2 *m, cf_dtype dt);
int cf_qwen2_to_cpu(cf_qwen2 *m);
int cf_qwen2_init_random_cuda(cf_qwen2 *m, cf_dtype dt, uint64_t seed, double std);

#ifdef __cplusplus
}
#endif

#endif
