/* core_bench.c - CPU benchmarks of the core ops (not a test). Prints one JSON line per result.
 *
 *   bench/run_core_bench.sh [build-dir]        (builds this file by hand and runs it, then
 *                                               bench/torch_blocks.py for the comparison)
 *   core_bench [matmul|blocks|all] [min-seconds]
 *
 * matmul_gflops: f32 GEMM through cf_op (allocating a fresh zeroed output, as every op does;
 *   OpenBLAS single-threaded, split over OpenMP threads) against cblas_sgemm with OpenBLAS's own
 *   threads into a preallocated output, at the shapes of a Qwen2-0.5B/1.5B decoder
 *   ([64 x 896] @ [896 x 4864], [16 x 1536] @ [1536 x 8960]) and a square [512]^3.
 * blocks_fwd_bwd: forward + backward of two pre-norm transformer blocks built from the ops, the
 *   workload of bench/torch_blocks.py exactly: B=8, T=128, d=256, 4 heads of 64, SwiGLU FFN 688,
 *   RMSNorm eps 1e-6, RoPE theta 1e4 at positions 0..127, causal attention, f32, y.backward(g)
 *   with all parameter gradients reset before each iteration; 3 warm-ups, then the median of at
 *   least 10 iterations and 2 s.
 * Threads: OpenMP and OpenBLAS use their defaults (OMP_NUM_THREADS / OPENBLAS_NUM_THREADS).
 */
#define _POSIX_C_SOURCE 200809L
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "autograd.h"
#include "error.h"
#include "nn_ops.h"
#include "rng.h"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* Sorts v; the median. v[0] is then the best time, the robust one on a shared machine. */
static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void machine(char *buf, size_t n) {
  char cpu[256] = "unknown cpu";
  FILE *f = fopen("/proc/cpuinfo", "r");
  if (f) {
    char line[512];
    while (fgets(line, sizeof line, f)) {
      if (strncmp(line, "model name", 10) == 0) {
        char *p = strchr(line, ':');
        if (p) {
          p++;
          while (*p == ' ') p++;
          p[strcspn(p, "\n")] = 0;
          snprintf(cpu, sizeof cpu, "%s", p);
        }
        break;
      }
    }
    fclose(f);
  }
  snprintf(buf, n, "%s; %d threads; OpenBLAS %s", cpu, omp_get_max_threads(), openblas_get_config());
}

static void die(const char *what) {
  fprintf(stderr, "core_bench: %s: %s\n", what, cf_error_message());
  exit(1);
}

/* ---------------------------------------------------------------- matmul */

#define MAX_ITERS 4096

static void bench_matmul(int64_t n, int64_t k, int64_t m, double min_s, const char *mach) {
  cf_rng g;
  cf_rng_init(&g, 1);
  int64_t as[2] = {n, k}, bs[2] = {k, m};
  cf_tensor *a = cf_tensor_randn(2, as, CF_DTYPE_F32, &g), *b = cf_tensor_randn(2, bs, CF_DTYPE_F32, &g);
  if (!a || !b) die("matmul inputs");
  float *c = malloc(sizeof(float) * (size_t)(n * m));
  double flop = 2.0 * (double)n * (double)k * (double)m;
  static double t_op[MAX_ITERS], t_blas[MAX_ITERS];
  int iters_op = 0, iters_blas = 0;
  /* interleave the two so that frequency drift hits both alike */
  for (int w = 0; w < 3; w++) {
    cf_tensor *o = cf_matmul(a, b);
    if (!o) die("matmul");
    cf_tensor_release(o);
    openblas_set_num_threads(omp_get_max_threads());
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)m, (int)k, 1.0f, cf_tensor_data(a),
                (int)k, cf_tensor_data(b), (int)m, 0.0f, c, (int)m);
  }
  double start = now();
  while ((iters_op < 10 || now() - start < min_s) && iters_op < MAX_ITERS) {
    double t0 = now();
    cf_tensor *o = cf_matmul(a, b);
    openblas_set_num_threads(omp_get_max_threads()); /* the op set it to 1 */
    double t1 = now();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)m, (int)k, 1.0f, cf_tensor_data(a),
                (int)k, cf_tensor_data(b), (int)m, 0.0f, c, (int)m);
    double t2 = now();
    if (!o) die("matmul");
    cf_tensor_release(o);
    t_op[iters_op++] = t1 - t0;
    t_blas[iters_blas++] = t2 - t1;
  }
  double mo = median(t_op, iters_op), mb = median(t_blas, iters_blas);
  printf("{\"bench\":\"matmul_gflops\",\"shape\":\"[%lld x %lld] @ [%lld x %lld]\",\"dtype\":\"f32\","
         "\"gflops_op\":%.2f,\"gflops_blas\":%.2f,\"op_over_blas\":%.3f,\"ms_op\":%.4f,\"ms_blas\":%.4f,"
         "\"best_gflops_op\":%.2f,\"best_gflops_blas\":%.2f,\"best_op_over_blas\":%.3f,"
         "\"iters\":%d,\"machine\":\"%s\"}\n",
         (long long)n, (long long)k, (long long)k, (long long)m, flop / mo * 1e-9, flop / mb * 1e-9,
         mb / mo, mo * 1e3, mb * 1e3, flop / t_op[0] * 1e-9, flop / t_blas[0] * 1e-9,
         t_blas[0] / t_op[0], iters_op, mach);
  fflush(stdout);
  free(c);
  cf_tensor_release(a);
  cf_tensor_release(b);
}

/* ---------------------------------------------------------------- transformer blocks */

enum { B = 8, T = 128, D = 256, HEADS = 4, HD = 64, FFN = 688 };

typedef struct {
  cf_tensor *attn_norm, *wq, *wk, *wv, *wo, *mlp_norm, *wg, *wu, *wd;
} block;

/* The block's 9 parameters, in a fixed order. */
static void block_params(block *b, cf_tensor **out) {
  cf_tensor *ps[9] = {b->attn_norm, b->wq, b->wk, b->wv, b->wo, b->mlp_norm, b->wg, b->wu, b->wd};
  memcpy(out, ps, sizeof ps);
}

static cf_tensor *param(cf_rng *g, int64_t o, int64_t i) {
  int64_t s[2] = {o, i};
  cf_tensor *t = cf_tensor_randn(2, s, CF_DTYPE_F32, g);
  if (!t) die("param");
  float *p = cf_tensor_data(t);
  for (int64_t j = 0; j < o * i; j++) p[j] /= sqrtf((float)i);
  t->requires_grad = true;
  return t;
}

static cf_tensor *ones(int64_t n) {
  cf_tensor *t = cf_tensor_full(1, &n, CF_DTYPE_F32, 1.0);
  if (!t) die("ones");
  t->requires_grad = true;
  return t;
}

/* Each helper consumes (releases) its tensor argument x and returns a new reference. */
static cf_tensor *take(cf_tensor *r, cf_tensor *x, const char *what) {
  cf_tensor_release(x);
  if (!r) die(what);
  return r;
}

static cf_tensor *transpose(cf_tensor *x, int d0, int d1) {
  cf_args a = cf_args_none();
  a.i[0] = d0;
  a.i[1] = d1;
  a.ni = 2;
  return cf_op(CF_OP_transpose, &x, 1, &a);
}

static cf_tensor *reshape(cf_tensor *x, int nd, const int64_t *shape) {
  cf_args a = cf_args_none();
  a.i[0] = nd;
  for (int d = 0; d < nd; d++) a.i[1 + d] = shape[d];
  a.ni = 1 + nd;
  return cf_op(CF_OP_reshape, &x, 1, &a);
}

/* x [B, T, in] @ w^T with w [out, in] (nn.Linear) */
static cf_tensor *linear(cf_tensor *x, cf_tensor *w) {
  cf_tensor *wt = transpose(w, 0, 1);
  if (!wt) die("transpose");
  cf_tensor *r = cf_matmul(x, wt);
  cf_tensor_release(wt);
  if (!r) die("matmul");
  return r;
}

/* [B, T, D] -> [B, H, T, HD] */
static cf_tensor *heads(cf_tensor *x) {
  int64_t s[4] = {B, T, HEADS, HD};
  cf_tensor *v = take(reshape(x, 4, s), x, "reshape");
  return take(transpose(v, 1, 2), v, "transpose");
}

static cf_tensor *block_forward(const block *p, cf_tensor *x, cf_tensor *pos) {
  cf_tensor *h = cf_rmsnorm(x, p->attn_norm, 1e-6);
  if (!h) die("rmsnorm");
  cf_tensor *q = heads(linear(h, p->wq)), *k = heads(linear(h, p->wk)), *v = heads(linear(h, p->wv));
  cf_tensor_release(h);
  q = take(cf_rope(q, pos, 10000.0, NULL), q, "rope");
  k = take(cf_rope(k, pos, 10000.0, NULL), k, "rope");
  cf_tensor *a = cf_attention(q, k, v, NULL, NAN, true);
  if (!a) die("attention");
  cf_tensor_release(q);
  cf_tensor_release(k);
  cf_tensor_release(v);
  a = take(transpose(a, 1, 2), a, "transpose");
  int64_t s3[3] = {B, T, D};
  a = take(reshape(a, 3, s3), a, "reshape");
  cf_tensor *o = take(linear(a, p->wo), a, "linear");
  cf_tensor *x2 = take(cf_op2(CF_OP_add, x, o), o, "add");
  h = cf_rmsnorm(x2, p->mlp_norm, 1e-6);
  if (!h) die("rmsnorm");
  cf_tensor *lg = linear(h, p->wg);
  cf_tensor *gt = take(cf_op1(CF_OP_silu, lg), lg, "silu"), *u = linear(h, p->wu);
  cf_tensor_release(h);
  cf_tensor *gu = take(cf_op2(CF_OP_mul, gt, u), gt, "mul");
  cf_tensor_release(u);
  cf_tensor *d = take(linear(gu, p->wd), gu, "linear");
  cf_tensor *y = take(cf_op2(CF_OP_add, x2, d), d, "add");
  cf_tensor_release(x2);
  return y;
}

static void bench_blocks(double min_s, const char *mach) {
  cf_rng g;
  cf_rng_init(&g, 0);
  block blk[2];
  for (int i = 0; i < 2; i++) {
    blk[i].attn_norm = ones(D);
    blk[i].wq = param(&g, D, D);
    blk[i].wk = param(&g, D, D);
    blk[i].wv = param(&g, D, D);
    blk[i].wo = param(&g, D, D);
    blk[i].mlp_norm = ones(D);
    blk[i].wg = param(&g, FFN, D);
    blk[i].wu = param(&g, FFN, D);
    blk[i].wd = param(&g, D, FFN);
  }
  int64_t s3[3] = {B, T, D};
  cf_tensor *x = cf_tensor_randn(3, s3, CF_DTYPE_F32, &g), *seed = cf_tensor_randn(3, s3, CF_DTYPE_F32, &g);
  cf_tensor *pos = cf_tensor_arange(0, T, 1, CF_DTYPE_I64);
  if (!x || !seed || !pos) die("inputs");
  static double times[MAX_ITERS];
  int iters = 0;
  double start = 0;
  for (int it = -3; it < MAX_ITERS; it++) {
    if (it == 0) start = now();
    if (it >= 10 && now() - start >= min_s) break;
    double t0 = now();
    for (int i = 0; i < 2; i++) {
      cf_tensor *ps[9];
      block_params(&blk[i], ps);
      for (int j = 0; j < 9; j++) cf_zero_grad(ps[j]);
    }
    cf_tensor_retain(x);
    cf_tensor *y = x;
    for (int i = 0; i < 2; i++) y = take(block_forward(&blk[i], y, pos), y, "block");
    if (cf_backward(y, seed, false)) die("backward");
    cf_tensor_release(y);
    if (it >= 0) times[iters++] = now() - t0;
  }
  double med = median(times, iters), ntok = B * T;
  double fwd = 2.0 * (8.0 * ntok * D * D + 6.0 * ntok * D * FFN + 4.0 * B * T * T * D);
  printf("{\"bench\":\"blocks_fwd_bwd\",\"impl\":\"confit\",\"tokens_per_s\":%.1f,\"ms_per_iter\":%.3f,"
         "\"ms_best\":%.3f,\"iters\":%d,\"gflop_per_iter\":%.3f,\"gflops\":%.2f,\"config\":{\"B\":%d,\"T\":%d,\"d\":%d,"
         "\"heads\":%d,\"ffn\":%d,\"blocks\":2,\"dtype\":\"f32\",\"threads\":%d},\"machine\":\"%s\"}\n",
         ntok / med, med * 1e3, times[0] * 1e3, iters, 3 * fwd / 1e9, 3 * fwd / 1e9 / med, B, T, D, HEADS, FFN,
         omp_get_max_threads(), mach);
  fflush(stdout);
  for (int i = 0; i < 2; i++) {
    cf_tensor *ps[9];
    block_params(&blk[i], ps);
    for (int j = 0; j < 9; j++) cf_tensor_release(ps[j]);
  }
  cf_tensor_release(x);
  cf_tensor_release(seed);
  cf_tensor_release(pos);
}

static const char usage[] = "usage: core_bench [matmul|blocks|all] [min-seconds]   (default: all 2)\n";

int main(int argc, char **argv) {
  if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
    printf("core_bench: CPU benchmarks of the core ops, one JSON line per result (bench/README.md)\n%s", usage);
    return 0;
  }
  const char *which = argc > 1 ? argv[1] : "all";
  double min_s = 2.0;
  if (strcmp(which, "matmul") && strcmp(which, "blocks") && strcmp(which, "all")) {
    fprintf(stderr, "core_bench: unknown benchmark '%s'\n%s", which, usage);
    return 1;
  }
  if (argc > 2) {
    char *end;
    min_s = strtod(argv[2], &end);
    if (end == argv[2] || *end || !(min_s > 0 && min_s <= 3600)) {
      fprintf(stderr, "core_bench: min-seconds must be a number in (0, 3600], got '%s'\n%s", argv[2], usage);
      return 1;
    }
  }
  if (argc > 3) {
    fprintf(stderr, "core_bench: too many arguments\n%s", usage);
    return 1;
  }
  char mach[512];
  machine(mach, sizeof mach);
  if (!strcmp(which, "matmul") || !strcmp(which, "all")) {
    bench_matmul(64, 896, 4864, min_s, mach);
    bench_matmul(16, 1536, 8960, min_s, mach);
    bench_matmul(512, 512, 512, min_s, mach);
  }
  if (!strcmp(which, "blocks") || !strcmp(which, "all")) bench_blocks(min_s, mach);
  return 0;
}
