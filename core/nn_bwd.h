/* nn_bwd.h - the CUDA fused backward kernels that the rules of core/grad_nn.c call: one
 * declaration each, with the contract and signature of its CPU twin cf_cpu_<op>_backward
 * (core/nn_ops.h).
 *
 * Included by grad_nn.c, which defines CF_BWD_WEAK as __attribute__((weak)) first so that a build
 * without CUDA links (an absent kernel is a null pointer there), and by the .cu files that define
 * the kernels (kernels/nn.cu, attention.cu, elementwise.cu; inside extern "C"), so the compiler
 * checks each definition against its declaration here.
 */
#ifndef CF_NN_BWD_H
#define CF_NN_BWD_H

#include <stdbool.h>
#include "tensor.h"

#ifndef CF_BWD_WEAK
#define CF_BWD_WEAK
#endif

CF_BWD_WEAK int cf_cuda_embedding_backward(cf_tensor *gw, cf_tensor *ids, cf_tensor *gout);
CF_BWD_WEAK int cf_cuda_gather_backward(cf_tensor *gx, int dim, cf_tensor *index, cf_tensor *gout);
CF_BWD_WEAK int cf_cuda_swiglu_backward(cf_tensor *ga, cf_tensor *gb, cf_tensor *a, cf_tensor *b,
                                        cf_tensor *gout);
CF_BWD_WEAK int cf_cuda_rmsnorm_backward(cf_tensor *gx, cf_tensor *gw, cf_tensor *x, cf_tensor *w,
                                         double eps, cf_tensor *gout);
CF_BWD_WEAK int cf_cuda_rope_backward(cf_tensor *gx, cf_tensor *pos, double theta,
                                      const double *scaling, cf_tensor *gout);
CF_BWD_WEAK int cf_cuda_attention_backward(cf_tensor *gq, cf_tensor *gk, cf_tensor *gv, cf_tensor *q,
                                           cf_tensor *k, cf_tensor *v, cf_tensor *mask, double scale,
                                           bool causal, cf_tensor *gout);
CF_BWD_WEAK int cf_cuda_cross_entropy_backward(cf_tensor *gz, cf_tensor *logits, cf_tensor *targets,
                                               cf_tensor *gout);
CF_BWD_WEAK int cf_cuda_token_logprob_backward(cf_tensor *gz, cf_tensor *logits, cf_tensor *targets,
                                               double temperature, cf_tensor *gout);
CF_BWD_WEAK int cf_cuda_head_logprob_backward(cf_tensor *gh, cf_tensor *gw, cf_tensor *h, cf_tensor *w,
                                              cf_tensor *targets, double temperature, cf_tensor *gout);
CF_BWD_WEAK int cf_cuda_head_entropy_backward(cf_tensor *gh, cf_tensor *gw, cf_tensor *h, cf_tensor *w,
                                              double temperature, cf_tensor *gout);
CF_BWD_WEAK int cf_cuda_entropy_backward(cf_tensor *gz, cf_tensor *logits, double temperature,
                                         cf_tensor *gout);

#endif
