/* rng.c - Philox 4x32-10 (Salmon et al., SC'11) and the draws built on it. */
#include "rng.h"
#include <math.h>

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

void cf_philox(uint64_t counter, uint64_t key, uint32_t out[4]) {
  uint32_t c0 = (uint32_t)counter, c1 = (uint32_t)(counter >> 32), c2 = 0, c3 = 0;
  uint32_t k0 = (uint32_t)key, k1 = (uint32_t)(key >> 32);
  for (int r = 0; r < 10; r++) {
    uint64_t p0 = (uint64_t)PHILOX_M0 * c0, p1 = (uint64_t)PHILOX_M1 * c2;
    uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0;
    uint32_t n1 = (uint32_t)p1;
    uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
    uint32_t n3 = (uint32_t)p0;
    c0 = n0; c1 = n1; c2 = n2; c3 = n3;
    k0 += PHILOX_W0; k1 += PHILOX_W1;
  }
  out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

static cf_rng global_rng = {0, 0};

void cf_rng_init(cf_rng *g, uint64_t seed) { g->seed = seed; g->counter = 0; }
cf_rng *cf_rng_global(void) { return &global_rng; }

uint32_t cf_rng_u32(cf_rng *g) {
  uint32_t w[4];
  cf_philox(g->counter++, g->seed, w);
  return w[0];
}

static double u53(uint32_t hi, uint32_t lo) {
  return (double)(((uint64_t)(hi >> 5) << 26) | (lo >> 6)) * (1.0 / 9007199254740992.0);
}

double cf_rng_uniform(cf_rng *g) {
  uint32_t w[4];
  cf_philox(g->counter++, g->seed, w);
  return u53(w[0], w[1]);
}

static void normal_pair(uint32_t w[4], double *z0, double *z1) {
  double u1 = u53(w[0], w[1]), u2 = u53(w[2], w[3]);
  double r = sqrt(-2.0 * log(1.0 - u1));   /* 1-u1 in (0,1] */
  *z0 = r * cos(6.283185307179586 * u2);
  *z1 = r * sin(6.283185307179586 * u2);
}

double cf_rng_normal(cf_rng *g) {
  uint32_t w[4];
  cf_philox(g->counter++, g->seed, w);
  double z0, z1;
  normal_pair(w, &z0, &z1);
  return z0;
}

void cf_rng_fill_uniform_f64(cf_rng *g, double *out, int64_t n) {
  uint64_t base = g->counter;
  #pragma omp parallel for if (n > 65536)
  for (int64_t i = 0; i < (n + 1) / 2; i++) {
    uint32_t w[4];
    cf_philox(base + (uint64_t)i, g->seed, w);
    out[2 * i] = u53(w[0], w[1]);
    if (2 * i + 1 < n) out[2 * i + 1] = u53(w[2], w[3]);
  }
  g->counter = base + (uint64_t)((n + 1) / 2);
}

void cf_rng_fill_normal_f64(cf_rng *g, double *out, int64_t n) {
  uint64_t base = g->counter;
  #pragma omp parallel for if (n > 65536)
  for (int64_t i = 0; i < (n + 1) / 2; i++) {
    uint32_t w[4];
    double z0, z1;
    cf_philox(base + (uint64_t)i, g->seed, w);
    normal_pair(w, &z0, &z1);
    out[2 * i] = z0;
    if (2 * i + 1 < n) out[2 * i + 1] = z1;
  }
  g->counter = base + (uint64_t)((n + 1) / 2);
}
