/* membw.c - memory bandwidth of this machine, for the generation benchmark's bound (JSON line).
 *
 *   membw [MiB]            (default 256; 1 .. 65536; --help prints the usage)
 *
 * read:  sum of a MiB-sized f32 array (16 independent lanes, AVX2 where the CPU has it, so the
 *        loads and not the adds are the limit), on one thread and on all OpenMP threads.
 * copy:  memcpy of the array into a second one, counted as 2 x bytes (read + write).
 * Best of 5 passes each, after a pass that touches every page. Decoding at batch 1 reads each
 * weight once per token, so the read figure over the weight bytes bounds tokens/s.
 */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* sum of a[0..n), n a multiple of 16 */
__attribute__((target_clones("avx2", "default")))
static float sum16(const float *a, size_t n) {
  float acc[16] = {0};
  for (size_t i = 0; i < n; i += 16)
    for (int l = 0; l < 16; l++) acc[l] += a[i + l];
  float s = 0;
  for (int l = 0; l < 16; l++) s += acc[l];
  return s;
}

static volatile float sink;

static double read_pass(const float *a, size_t n, int threads) {
  double t = now();
  float total = 0;
  #pragma omp parallel num_threads(threads) reduction(+ : total)
  {
    int nt = omp_get_num_threads(), id = omp_get_thread_num();
    size_t chunk = (n / 16 + (size_t)nt - 1) / (size_t)nt * 16;
    size_t lo = (size_t)id * chunk, hi = lo + chunk > n ? n : lo + chunk;
    if (lo < hi) total += sum16(a + lo, hi - lo);
  }
  sink = total;
  return now() - t;
}

static const char usage[] = "usage: membw [MiB]   (1 .. 65536, default 256)\n";

int main(int argc, char **argv) {
  size_t mib = 256;
  if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
    printf("membw: this machine's memory bandwidth over two arrays of the given size each (JSON line)\n%s", usage);
    return 0;
  }
  if (argc > 2) {
    fprintf(stderr, "membw: too many arguments\n%s", usage);
    return 1;
  }
  if (argc > 1) {
    char *end;
    long v = strtol(argv[1], &end, 10);
    if (end == argv[1] || *end || v < 1 || v > 65536) {
      fprintf(stderr, "membw: MiB must be a whole number in 1 .. 65536, got '%s'\n%s", argv[1], usage);
      return 1;
    }
    mib = (size_t)v;
  }
  size_t bytes = mib << 20, n = bytes / sizeof(float);
  float *a = malloc(bytes), *b = malloc(bytes);
  if (!a || !b) { fprintf(stderr, "membw: cannot allocate 2 x %zu MiB\n", mib); return 1; }
  for (size_t i = 0; i < n; i++) a[i] = (float)(i % 13) * 0.25f;
  memset(b, 0, bytes);
  int maxth = omp_get_max_threads();
  double r1 = 1e30, rn = 1e30, cp = 1e30;
  for (int rep = 0; rep < 5; rep++) {
    double t = read_pass(a, n, 1);
    if (t < r1) r1 = t;
    t = read_pass(a, n, maxth);
    if (t < rn) rn = t;
    t = now();
    memcpy(b, a, bytes);
    t = now() - t;
    if (t < cp) cp = t;
  }
  sink = b[n / 2];
  printf("{\"bench\":\"membw_c\",\"bytes\":%zu,\"threads\":%d,\"read_1t_gbs\":%.4g,"
         "\"read_gbs\":%.4g,\"copy_gbs\":%.4g}\n",
         bytes, maxth, bytes / r1 / 1e9, bytes / rn / 1e9, 2.0 * bytes / cp / 1e9);
  free(a);
  free(b);
  return 0;
}
