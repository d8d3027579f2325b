/* half.h - 16-bit float <-> f32 conversions (bf16 and IEEE binary16), header only.
 *
 * Invariants:
 *  - widening (bf16/f16 -> f32) is exact for every input, NaN stays NaN, infinities and signed
 *    zeros are kept, f16 subnormals become normal f32 values;
 *  - narrowing (f32 -> bf16/f16) rounds to nearest, ties to even (what PyTorch and the CUDA
 *    intrinsics do); values past the largest finite half overflow to infinity; NaN becomes a
 *    quiet NaN of the same sign (never infinity, as plain truncation of a signalling NaN can);
 *  - bit patterns are passed as uint16_t so callers need no compiler support for _Float16.
 */
#ifndef CF_HALF_H
#define CF_HALF_H

#include <stdint.h>
#include <string.h>

static inline uint32_t cf_f32_bits_(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}

static inline float cf_f32_from_bits_(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

/* bf16 is the top half of an f32: widening is a shift. */
static inline float cf_bf16_to_f32(uint16_t h) { return cf_f32_from_bits_((uint32_t)h << 16); }

static inline uint16_t cf_f32_to_bf16(float f) {
  uint32_t u = cf_f32_bits_(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x0040u); /* quiet NaN */
  /* Round to nearest even: add 0x7fff plus the lowest kept bit, then truncate. A carry out of the
   * mantissa bumps the exponent, which is exactly the right result (up to infinity). */
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}

static inline float cf_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t man = h & 0x3ffu;
  if (exp == 0x1f) return cf_f32_from_bits_(sign | 0x7f800000u | (man << 13)); /* inf / NaN */
  if (exp == 0) {
    if (man == 0) return cf_f32_from_bits_(sign); /* signed zero */
    /* subnormal: value = man * 2^-24, exact in f32 */
    float v = (float)man * (1.0f / 16777216.0f);
    return sign ? -v : v;
  }
  return cf_f32_from_bits_(sign | ((exp + 112u) << 23) | (man << 13));
}

static inline uint16_t cf_f32_to_f16(float f) {
  uint32_t u = cf_f32_bits_(f);
  uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
  uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu)); /* NaN */
  if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* >= 65520 rounds to inf */
  if (a < 0x38800000u) {
    /* result is subnormal (or zero): value / 2^-24 rounded to nearest even integer */
    if (a < 0x33000000u) return sign; /* below half the smallest subnormal (2^-25): zero */
    uint32_t e = a >> 23;               /* biased f32 exponent, 102..112 */
    uint32_t m = (a & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126u - e;          /* m * 2^(e-150) / 2^-24 = m >> (126 - e) */
    uint32_t q = m >> shift;
    uint32_t rem = m & ((1u << shift) - 1u);
    uint32_t half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (q & 1u))) q++;
    return (uint16_t)(sign | q);
  }
  /* normal: rebias the exponent, round the 13 dropped mantissa bits to nearest even */
  uint32_t r = a - 0x38000000u; /* exponent 127 -> 15 bias, still in f32 layout */
  r += 0x0fffu + ((r >> 13) & 1u);
  return (uint16_t)(sign | (r >> 13));
}

#endif
