/* rng.h - counter-based random numbers (Philox 4x32-10).
 *
 * A generator is (key = seed, counter). Each draw of four 32-bit words advances the counter by
 * one, so the same seed always gives the same stream, on every machine, and a stream can be
 * split by giving it a distinct seed or counter offset (e.g. per sample in generation).
 */
#ifndef CF_RNG_H
#define CF_RNG_H
#include <stdint.h>

typedef struct cf_rng {
  uint64_t seed;
  uint64_t counter;
} cf_rng;

void cf_rng_init(cf_rng *g, uint64_t seed);
/* The process-wide generator used when no explicit one is given (seed 0 until reseeded). */
cf_rng *cf_rng_global(void);
/* Philox 4x32-10 of (counter, key): writes four 32-bit words. Pure function. */
void cf_philox(uint64_t counter, uint64_t key, uint32_t out[4]);
uint32_t cf_rng_u32(cf_rng *g);
double cf_rng_uniform(cf_rng *g);   /* [0, 1) with 53 random bits */
double cf_rng_normal(cf_rng *g);    /* standard normal (Box-Muller on two uniforms) */
/* Fill n values without consuming in a per-element loop order dependency:
 * value i comes from counter (g->counter + i/2) so the result does not depend on threading. */
void cf_rng_fill_uniform_f64(cf_rng *g, double *out, int64_t n);
void cf_rng_fill_normal_f64(cf_rng *g, double *out, int64_t n);

#endif
