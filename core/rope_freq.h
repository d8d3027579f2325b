/* rope_freq.h - RoPE's inverse frequency of pair i of D, the one formula the rope op (CPU and
 * CUDA) and the generation tables (core/nn/generate.c, kernels/generate.cu) share:
 *
 *   f_i = theta^(-2i/D), and with Llama 3's rope scaling (config rope_scaling, rope_type "llama3":
 *   factor, low_freq_factor, high_freq_factor, original_max_position_embeddings), by the wavelength
 *   w = 2 pi / f_i against w_high = orig / high and w_low = orig / low:
 *     w < w_high            f_i (unchanged)
 *     w > w_low             f_i / factor
 *     otherwise             (1 - s) f_i / factor + s f_i,   s = (orig / w - low) / (high - low)
 *   as transformers computes it (_compute_llama3_parameters); the attention is not rescaled.
 * Plain C, also compiled as host and device code by nvcc.
 */
#ifndef CF_ROPE_FREQ_H
#define CF_ROPE_FREQ_H

#include <math.h>
#include <stdint.h>

#ifdef __CUDACC__
#define CF_ROPE_HD __host__ __device__
#else
#define CF_ROPE_HD
#endif

/* factor <= 0 (or NaN): no scaling */
typedef struct cf_rope_scaling { double factor, low, high, orig; } cf_rope_scaling;

/* NULL when the rope op's four scaling numbers f4 are all absent (NaN) or all given, else why */
static inline const char *cf_rope_scaling_given(const double *f4) {
  int n = 0;
  for (int i = 0; f4 && i < 4; i++) n += f4[i] == f4[i];
  return n == 0 || n == 4 ? 0
                          : "the scaling takes all four numbers (factor, low_freq_factor, high_freq_factor, "
                            "original_max_position_embeddings) or none";
}

/* from the rope op's number arguments after theta (NaN when absent) */
static inline cf_rope_scaling cf_rope_scaling_of(const double *f4) {
  cf_rope_scaling s = {0, 0, 0, 0};
  if (f4 && f4[0] == f4[0]) { s.factor = f4[0]; s.low = f4[1]; s.high = f4[2]; s.orig = f4[3]; }
  return s;
}

/* NULL when s is usable (no scaling, or every field in range), else what is wrong */
static inline const char *cf_rope_scaling_check(cf_rope_scaling s) {
  if (!(s.factor == s.factor) || s.factor == 0) return 0;
  if (!(s.factor > 0)) return "factor must be > 0";
  if (!(s.low > 0) || !(s.high > s.low)) return "low_freq_factor must be > 0 and high_freq_factor above it";
  if (!(s.orig > 0)) return "original_max_position_embeddings must be > 0";
  return 0;
}

static inline CF_ROPE_HD double cf_rope_inv_freq(double theta, int64_t i, int64_t D, cf_rope_scaling s) {
  double f = pow(theta, -2.0 * (double)i / (double)D);
  if (!(s.factor > 0)) return f;
  double w = 2.0 * 3.14159265358979323846 / f, w_high = s.orig / s.high, w_low = s.orig / s.low;
  if (w < w_high) return f;
  if (w > w_low) return f / s.factor;
  double sm = (s.orig / w - s.low) / (s.high - s.low);
  return (1.0 - sm) * f / s.factor + sm * f;
}

#endif
