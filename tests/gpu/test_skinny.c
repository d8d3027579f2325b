/* test_skinny.c - the decode GEMMs of kernels/skinny.cu on the GPU against naive double-precision
 * CPU products of the same bf16 values: every rows count 1..16, K split in one or several parts,
 * 1, 2 or 4 tiles per block, both register bounds, beta 0 and 1, the fused SwiGLU, padded row
 * strides, rows past A left untouched, repeated launches (ticket counters reset), bitwise
 * determinism, programmatic dependent launches back to back (the SwiGLU then the down GEMM that
 * reads its output, as in decode), and the shape errors. Skips (77) without CUDA or a GPU.
 */
#include "check.h"
#include "tensor.h"
#include "error.h"
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef CF_HAVE_CUDA
int main(void) {
  printf("SKIP: built without CUDA\n");
  return 77;
}
#else
#include "kernels/cuda.h"

static uint64_t rs = 0x9E3779B97F4A7C15ull;
static double urand(void) { /* [-1, 1) */
  rs ^= rs << 13; rs ^= rs >> 7; rs ^= rs << 17;
  return (double)(rs >> 11) / 4503599627370496.0 - 1.0;
}

static uint16_t to_bf16(float f) { /* round to nearest even */
  uint32_t u;
  memcpy(&u, &f, 4);
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}
static float from_bf16(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

/* a CUDA tensor of n bf16 values (also returned rounded, as floats, in ref) */
static cf_tensor *dev_bf16(int64_t n, float scale, float *ref) {
  uint16_t *h = malloc((size_t)n * 2);
  for (int64_t i = 0; i < n; i++) {
    h[i] = to_bf16((float)(urand() * scale));
    ref[i] = from_bf16(h[i]);
  }
  cf_tensor *c = cf_tensor_from_bytes(1, &n, CF_DTYPE_BF16, h, (size_t)n * 2), *d = cf_tensor_to_device(c, CF_DEVICE_CUDA);
  cf_tensor_release(c);
  free(h);
  return d;
}
static cf_tensor *dev_f32(int64_t n, const float *v) {
  cf_tensor *c = cf_tensor_from_bytes(1, &n, CF_DTYPE_F32, v, (size_t)n * 4), *d = cf_tensor_to_device(c, CF_DEVICE_CUDA);
  cf_tensor_release(c);
  return d;
}
/* the device tensor's bytes copied into out */
static void host_copy(cf_tensor *d, void *out, size_t bytes) {
  cf_tensor *c = cf_tensor_to_device(d, CF_DEVICE_CPU);
  memcpy(out, cf_tensor_data(c), bytes);
  cf_tensor_release(c);
}

typedef struct { int A, in, out, ldx, ldy; bool swiglu; float beta; cf_skinny_opts o; } sk_case;

static cf_skinny_ws ws;

/* runs the case twice (the second run checks the counters were reset and the result repeats
 * bit for bit) and compares with the double-precision product */
static void run_case(const sk_case *c) {
  int A = c->A, in = c->in, out = c->out, ldx = c->ldx, ldy = c->ldy, F = out / 2;
  int64_t nx = (int64_t)16 * ldx, nw = (int64_t)out * in;
  float *x = malloc((size_t)nx * 4), *w = malloc((size_t)nw * 4);
  cf_tensor *X = dev_bf16(nx, 2.0f, x), *W = dev_bf16(nw, 0.1f, w);
  int ycols = c->swiglu ? F : ldy;
  int64_t ny = (int64_t)16 * ycols;
  float *y0 = malloc((size_t)ny * 4), *y1 = malloc((size_t)ny * 4), *y2 = malloc((size_t)ny * 4);
  uint16_t *a1 = malloc((size_t)ny * 2), *a2 = malloc((size_t)ny * 2);
  for (int64_t i = 0; i < ny; i++) y0[i] = (float)urand();
  cf_tensor *Y = NULL, *ACT = NULL;
  if (c->swiglu) {
    for (int64_t i = 0; i < ny; i++) a1[i] = to_bf16(7.0f);
    ACT = cf_tensor_from_bytes(1, &ny, CF_DTYPE_BF16, a1, (size_t)ny * 2);
    cf_tensor *d = cf_tensor_to_device(ACT, CF_DEVICE_CUDA);
    cf_tensor_release(ACT);
    ACT = d;
  } else {
    Y = dev_f32(ny, y0);
  }
  int nt, ksb, grid;
  cf_cuda_skinny_plan(in, out, c->swiglu, &c->o, &ws, &nt, &ksb, &grid);
  char what[160];
  snprintf(what, sizeof what, "A %d in %d out %d ldx %d ldy %d %s beta %g nt %d ksb %d minb %d", A, in, out, ldx, ldy,
           c->swiglu ? "swiglu" : "plain", c->beta, nt, ksb, c->o.minb);
  int rc = 0;
  for (int rep = 0; rep < 2 && rc == 0; rep++) {
    if (rep == 1 && !c->swiglu) { /* restore Y for beta != 0 */
      cf_tensor *t = dev_f32(ny, y0);
      cf_tensor_copy_(Y, t);
      cf_tensor_release(t);
    }
    rc = cf_cuda_skinny_gemm(cf_tensor_data(W), cf_tensor_data(X), ldx, Y ? cf_tensor_data(Y) : NULL, ldy,
                             ACT ? cf_tensor_data(ACT) : NULL, A, in, out, c->beta, c->swiglu, &c->o, &ws, NULL);
    if (rc == 0) rc = cf_cuda_synchronize();
    if (rc == 0) {
      if (c->swiglu) host_copy(ACT, rep ? a2 : a1, (size_t)ny * 2);
      else host_copy(Y, rep ? y2 : y1, (size_t)ny * 4);
    }
  }
  CHECK(rc == 0, "%s: %s", what, cf_error_message());
  if (rc == 0) {
    double worst = 0;
    int bad = 0;
    for (int r = 0; r < 16; r++)
      for (int j = 0; j < (c->swiglu ? F : out); j++) {
        double got, want;
        if (c->swiglu) {
          got = from_bf16(a1[(size_t)r * F + j]);
          if (r >= A) { want = 7.0; } else {
            double g = 0, u = 0;
            for (int k = 0; k < in; k++) {
              g += (double)x[(size_t)r * ldx + k] * w[(size_t)j * in + k];
              u += (double)x[(size_t)r * ldx + k] * w[(size_t)(F + j) * in + k];
            }
            want = g / (1.0 + exp(-g)) * u;
          }
        } else {
          got = y1[(size_t)r * ldy + j];
          if (r >= A) { want = y0[(size_t)r * ldy + j]; } else {
            double s = 0;
            for (int k = 0; k < in; k++) s += (double)x[(size_t)r * ldx + k] * w[(size_t)j * in + k];
            want = s + c->beta * y0[(size_t)r * ldy + j];
          }
        }
        /* f32 accumulation of in products; bf16 rounding (2^-8) of the SwiGLU output */
        double tol = r >= A ? 0 : c->swiglu ? 1e-3 + 8e-3 * fabs(want) : 1e-4 * sqrt((double)in) + 1e-5 * fabs(want);
        double err = fabs(got - want);
        if (!(err <= tol)) {
          if (bad++ < 3) printf("  %s: row %d col %d got %.6g want %.6g\n", what, r, j, got, want);
        }
        if (err > worst) worst = err;
      }
    /* the untouched tail of each padded Y row */
    if (!c->swiglu)
      for (int r = 0; r < 16; r++)
        for (int j = out; j < ldy; j++)
          if (y1[(size_t)r * ldy + j] != y0[(size_t)r * ldy + j] && bad++ < 3)
            printf("  %s: row %d col %d (padding) written\n", what, r, j);
    CHECK(bad == 0, "%s: %d wrong (worst |err| %.3g)", what, bad, worst);
    bool same = c->swiglu ? memcmp(a1, a2, (size_t)ny * 2) == 0 : memcmp(y1, y2, (size_t)ny * 4) == 0;
    CHECK(same, "%s: second launch differs from the first", what);
  }
  cf_tensor_release(X);
  cf_tensor_release(W);
  cf_tensor_release(Y);
  cf_tensor_release(ACT);
  free(x); free(w); free(y0); free(y1); free(y2); free(a1); free(a2);
}

/* The decode chain: act = SwiGLU(X Wgu^T), then Y += act Wd^T, queued back to back as
 * programmatic dependent launches (the second may start before the first ends and must wait for
 * act), K split in the second so that its ticketed partials are in play too; repeated reps times,
 * with Y read back once at the end: every rep adds the same product. */
static void chain_case(int A, int D, int F, int reps) {
  int64_t nx = (int64_t)16 * D, ngu = (int64_t)2 * F * D, nd = (int64_t)D * F, ny = (int64_t)16 * D,
          na = (int64_t)16 * F;
  float *x = malloc((size_t)nx * 4), *wgu = malloc((size_t)ngu * 4), *wd = malloc((size_t)nd * 4);
  float *y0 = calloc((size_t)ny, 4), *y = malloc((size_t)ny * 4);
  uint16_t *act = malloc((size_t)na * 2);
  cf_tensor *X = dev_bf16(nx, 2.0f, x), *WGU = dev_bf16(ngu, 0.1f, wgu), *WD = dev_bf16(nd, 0.1f, wd);
  cf_tensor *Y = dev_f32(ny, y0);
  for (int64_t i = 0; i < na; i++) act[i] = to_bf16(7.0f); /* a stale act would show */
  cf_tensor *ac = cf_tensor_from_bytes(1, &na, CF_DTYPE_BF16, act, (size_t)na * 2);
  cf_tensor *ACT = cf_tensor_to_device(ac, CF_DEVICE_CUDA);
  cf_tensor_release(ac);
  cf_skinny_opts o1 = {4, 1, 1, true}, o2 = {1, 3, 1, true};
  int rc = 0;
  for (int r = 0; r < reps && rc == 0; r++)
    rc = cf_cuda_skinny_gemm(cf_tensor_data(WGU), cf_tensor_data(X), D, NULL, 0, cf_tensor_data(ACT), A, D, 2 * F, 0.f,
                             true, &o1, &ws, NULL) ||
         cf_cuda_skinny_gemm(cf_tensor_data(WD), cf_tensor_data(ACT), F, cf_tensor_data(Y), D, NULL, A, F, D, 1.f,
                             false, &o2, &ws, NULL);
  if (rc == 0) rc = cf_cuda_synchronize();
  CHECK(rc == 0, "PDL chain: %s", cf_error_message());
  if (rc == 0) {
    host_copy(ACT, act, (size_t)na * 2);
    host_copy(Y, y, (size_t)ny * 4);
    int bad = 0;
    for (int r = 0; r < 16; r++)
      for (int j = 0; j < D; j++) {
        double want = 0;
        if (r < A)
          for (int k = 0; k < F; k++) want += (double)from_bf16(act[(size_t)r * F + k]) * wd[(size_t)j * F + k];
        want *= reps;
        double got = y[(size_t)r * D + j], tol = r < A ? reps * (1e-4 * sqrt((double)F) + 1e-5 * fabs(want)) : 0;
        if (!(fabs(got - want) <= tol) && bad++ < 3) printf("  PDL chain: row %d col %d got %g want %g\n", r, j, got, want);
      }
    /* and act itself against the first GEMM */
    for (int r = 0; r < A; r++)
      for (int j = 0; j < F; j++) {
        double g = 0, u = 0;
        for (int k = 0; k < D; k++) {
          g += (double)x[(size_t)r * D + k] * wgu[(size_t)j * D + k];
          u += (double)x[(size_t)r * D + k] * wgu[(size_t)(F + j) * D + k];
        }
        double want = g / (1.0 + exp(-g)) * u, got = from_bf16(act[(size_t)r * F + j]);
        if (!(fabs(got - want) <= 1e-3 + 8e-3 * fabs(want)) && bad++ < 3)
          printf("  PDL chain act: row %d col %d got %g want %g\n", r, j, got, want);
      }
    CHECK(bad == 0, "PDL chain A %d D %d F %d x%d: %d wrong", A, D, F, reps, bad);
  }
  cf_tensor_release(X); cf_tensor_release(WGU); cf_tensor_release(WD); cf_tensor_release(Y); cf_tensor_release(ACT);
  free(x); free(wgu); free(wd); free(y0); free(y); free(act);
}

int main(void) {
  if (cf_cuda_init()) {
    printf("SKIP: %s\n", cf_error_message());
    return 77;
  }
  printf("device: %s\n", cf_cuda_device_name());
  CHECK(cf_cuda_skinny_ws_init(&ws, (size_t)1 << 20, 4096) == 0, "workspace: %s", cf_error_message());
  static const int rows[] = {1, 2, 3, 5, 8, 9, 15, 16};
  /* rows x (plain beta 0, plain beta 1 with padded strides, SwiGLU), default plan */
  for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
    sk_case c = {rows[i], 256, 96, 256, 96, false, 0.f, {0, 0, 0, false}};
    run_case(&c);
    sk_case d = {rows[i], 160, 40, 168, 48, false, 1.f, {0, 0, 0, false}};
    run_case(&d);
    sk_case s = {rows[i], 128, 64, 136, 0, true, 0.f, {0, 0, 0, false}};
    run_case(&s);
  }
  /* every tile width, K split or not, both register bounds; K not a multiple of the unroll */
  static const int nts[] = {1, 2, 4}, ksbs[] = {1, 3, 7}, minbs[] = {1, 2};
  for (size_t a = 0; a < 3; a++)
    for (size_t b = 0; b < 3; b++)
      for (size_t m = 0; m < 2; m++) {
        cf_skinny_opts o = {nts[a], ksbs[b], minbs[m], m == 1};
        sk_case c = {16, 1504, 200, 1504, 200, false, 1.f, o};
        run_case(&c);
        sk_case s = {11, 928, 2 * 48, 928, 0, true, 0.f, o};
        run_case(&s);
      }
  /* decode shapes of the 1.5B model (qkv, o_proj, gate/up + SwiGLU, down) with the default plan */
  {
    sk_case c[] = {{16, 1536, 2048, 1536, 2048, false, 0.f, {0, 0, 0, false}},
                   {16, 1536, 1536, 1536, 1536, false, 1.f, {0, 0, 0, false}},
                   {16, 1536, 2 * 8960, 1536, 0, true, 0.f, {0, 0, 0, false}},
                   {16, 8960, 1536, 8960, 1536, false, 1.f, {0, 0, 0, false}},
                   {7, 8960, 1536, 8960, 1536, false, 1.f, {0, 0, 2, false}}};
    for (size_t i = 0; i < sizeof c / sizeof *c; i++) run_case(&c[i]);
  }
  chain_case(16, 256, 512, 20);
  chain_case(5, 1536, 8960, 4);
  /* shapes it refuses, with a message */
  {
    int64_t n = 4096;
    cf_tensor *z = cf_tensor_zeros(1, &n, CF_DTYPE_BF16), *t = cf_tensor_to_device(z, CF_DEVICE_CUDA);
    cf_tensor_release(z);
    void *p = cf_tensor_data(t);
    float *y = (float *)p;
    CHECK(!cf_cuda_skinny_ok(p, p, 48, 4, 48, 8, false), "in 48 accepted");
    CHECK(!cf_cuda_skinny_ok(p, p, 64, 17, 64, 8, false), "17 rows accepted");
    CHECK(!cf_cuda_skinny_ok(p, p, 64, 4, 64, 12, false), "out 12 accepted");
    CHECK(!cf_cuda_skinny_ok(p, p, 64, 4, 64, 24, true), "SwiGLU out 24 accepted");
    CHECK(!cf_cuda_skinny_ok((char *)p + 2, p, 64, 4, 64, 8, false), "misaligned W accepted");
    CHECK(cf_cuda_skinny_ok(p, p, 64, 4, 64, 8, false), "a good shape refused");
    int rc = cf_cuda_skinny_gemm(p, p, 48, y, 8, NULL, 4, 48, 8, 0.f, false, NULL, NULL, NULL);
    CHECK(rc != 0 && strstr(cf_error_message(), "in 48"), "bad shape: rc %d, message %s", rc, cf_error_message());
    cf_tensor_release(t);
  }
  cf_cuda_skinny_ws_free(&ws);
  return check_finish();
}
#endif
