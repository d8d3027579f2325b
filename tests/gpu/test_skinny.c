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

/* xn: f32 activations RMS-normalised on load from sums of squares given in `groups` partials;
 * ssout: the plain output also leaves per-row partial sums of squares */
typedef struct {
  int A, in, out, ldx, ldy;
  bool swiglu;
  float beta;
  cf_skinny_opts o;
  bool xn;
  int groups;
  bool ssout;
} sk_case;

static cf_skinny_ws ws;

/* runs the case twice (the second run checks the counters were reset and the result repeats
 * bit for bit) and compares with the double-precision product of the bf16 activations the
 * kernel must have used */
static void run_case(const sk_case *c) {
  int A = c->A, in = c->in, out = c->out, ldx = c->ldx, ldy = c->ldy, F = out / 2, G = c->groups > 0 ? c->groups : 1;
  int64_t nx = (int64_t)16 * ldx, nw = (int64_t)out * in;
  float *x = malloc((size_t)nx * 4), *xf = malloc((size_t)nx * 4), *gn = malloc((size_t)in * 4);
  float *w = malloc((size_t)nw * 4), *h = malloc((size_t)16 * in * 4), *ss = malloc((size_t)G * 16 * 4);
  cf_tensor *X = dev_bf16(nx, 2.0f, x), *W = dev_bf16(nw, 0.1f, w);
  for (int64_t i = 0; i < nx; i++) xf[i] = (float)(3 * urand());
  for (int k = 0; k < in; k++) gn[k] = (float)(1 + 0.5 * urand());
  for (int r = 0; r < 16; r++) {
    if (c->xn) {
      double q = 0;
      for (int k = 0; k < in; k++) q += (double)xf[(size_t)r * ldx + k] * xf[(size_t)r * ldx + k];
      for (int g = 0; g < G; g++) ss[g * 16 + r] = (float)(q / G);
      float sum = 0.f;
      for (int g = 0; g < G; g++) sum += ss[g * 16 + r];
      float inv = 1.0f / sqrtf(sum / in + 1e-6f);
      for (int k = 0; k < in; k++) h[(size_t)r * in + k] = from_bf16(to_bf16(xf[(size_t)r * ldx + k] * inv * gn[k]));
    } else {
      for (int k = 0; k < in; k++) h[(size_t)r * in + k] = x[(size_t)r * ldx + k];
    }
  }
  cf_tensor *XF = dev_f32(nx, xf), *GN = dev_f32(in, gn), *SS = dev_f32((int64_t)G * 16, ss);
  int ycols = c->swiglu ? F : ldy;
  int64_t ny = (int64_t)16 * ycols;
  float *y0 = malloc((size_t)ny * 4), *y1 = malloc((size_t)ny * 4), *y2 = malloc((size_t)ny * 4);
  uint16_t *a1 = malloc((size_t)ny * 2), *a2 = malloc((size_t)ny * 2);
  for (int64_t i = 0; i < ny; i++) y0[i] = (float)urand();
  cf_tensor *Y = NULL, *ACT = NULL, *SO = NULL;
  if (c->swiglu) {
    for (int64_t i = 0; i < ny; i++) a1[i] = to_bf16(7.0f);
    ACT = cf_tensor_from_bytes(1, &ny, CF_DTYPE_BF16, a1, (size_t)ny * 2);
    cf_tensor *d = cf_tensor_to_device(ACT, CF_DEVICE_CUDA);
    cf_tensor_release(ACT);
    ACT = d;
  } else {
    Y = dev_f32(ny, y0);
  }
  cf_skinny_job job;
  memset(&job, 0, sizeof job);
  job.W = cf_tensor_data(W);
  if (c->xn) {
    job.xf = cf_tensor_data(XF);
    job.gnorm = cf_tensor_data(GN);
    job.ss_in = cf_tensor_data(SS);
    job.ss_groups = G;
    job.eps = 1e-6f;
  } else {
    job.X = cf_tensor_data(X);
  }
  job.ldx = ldx;
  job.A = A; job.in = in; job.out = out; job.swiglu = c->swiglu;
  job.Y = Y ? cf_tensor_data(Y) : NULL; job.ldy = ldy; job.beta = c->beta;
  job.act = ACT ? cf_tensor_data(ACT) : NULL;
  int nt, ksb, grid;
  cf_cuda_skinny_plan(&job, &c->o, &ws, &nt, &ksb, &grid);
  float *so = malloc((size_t)grid * 16 * 4);
  if (c->ssout) {
    for (int i = 0; i < grid * 16; i++) so[i] = -1.f;
    SO = dev_f32((int64_t)grid * 16, so);
    job.ss_out = cf_tensor_data(SO);
  }
  char what[200];
  snprintf(what, sizeof what, "A %d in %d out %d ldx %d ldy %d %s%s%s beta %g nt %d ksb %d minb %d%s%s", A, in, out,
           ldx, ldy, c->swiglu ? "swiglu" : "plain", c->xn ? " normed" : "", c->ssout ? " ss_out" : "", c->beta, nt, ksb,
           c->o.minb, c->o.pdl ? " pdl" : "", c->o.wide ? " wide" : "");
  int rc = 0;
  for (int rep = 0; rep < 2 && rc == 0; rep++) {
    if (rep == 1 && !c->swiglu) { /* restore Y for beta != 0 */
      cf_tensor *t = dev_f32(ny, y0);
      cf_tensor_copy_(Y, t);
      cf_tensor_release(t);
    }
    rc = cf_cuda_skinny_run(&job, &c->o, &ws, NULL);
    if (rc == 0) rc = cf_cuda_synchronize();
    if (rc == 0) {
      if (c->swiglu) host_copy(ACT, rep ? a2 : a1, (size_t)ny * 2);
      else host_copy(Y, rep ? y2 : y1, (size_t)ny * 4);
    }
  }
  CHECK(rc == 0, "%s: %s", what, cf_error_message());
  if (rc == 0) {
    double worst = 0, rowss[16] = {0};
    int bad = 0;
    for (int r = 0; r < 16; r++)
      for (int j = 0; j < (c->swiglu ? F : out); j++) {
        double got, want;
        if (c->swiglu) {
          got = from_bf16(a1[(size_t)r * F + j]);
          if (r >= A) { want = 7.0; } else {
            double g = 0, u = 0;
            for (int k = 0; k < in; k++) {
              g += (double)h[(size_t)r * in + k] * w[(size_t)j * in + k];
              u += (double)h[(size_t)r * in + k] * w[(size_t)(F + j) * in + k];
            }
            want = g / (1.0 + exp(-g)) * u;
          }
        } else {
          got = y1[(size_t)r * ldy + j];
          if (r >= A) { want = y0[(size_t)r * ldy + j]; } else {
            double s = 0;
            for (int k = 0; k < in; k++) s += (double)h[(size_t)r * in + k] * w[(size_t)j * in + k];
            want = s + c->beta * y0[(size_t)r * ldy + j];
            rowss[r] += want * want;
          }
        }
        /* f32 accumulation of in products; bf16 rounding (2^-8) of the SwiGLU output; a normalised
         * activation may round to the other bf16 neighbour on the GPU */
        double tol = r >= A ? 0 : c->swiglu ? 1e-3 + 8e-3 * fabs(want)
                                            : 1e-4 * sqrt((double)in) + 1e-5 * fabs(want) + (c->xn ? 5e-3 : 0);
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
    if (c->ssout) {
      host_copy(SO, so, (size_t)grid * 16 * 4);
      int sbad = 0;
      for (int r = 0; r < 16; r++) {
        double t = 0;
        for (int g = 0; g < grid; g++) t += so[g * 16 + r];
        if (!(fabs(t - rowss[r]) <= 1e-3 + 1e-4 * rowss[r]) && sbad++ < 3)
          printf("  %s: row %d sum of squares %.6g want %.6g\n", what, r, t, rowss[r]);
      }
      CHECK(sbad == 0, "%s: sums of squares wrong", what);
    }
  }
  cf_tensor_release(X); cf_tensor_release(W); cf_tensor_release(XF); cf_tensor_release(GN); cf_tensor_release(SS);
  cf_tensor_release(Y); cf_tensor_release(ACT); cf_tensor_release(SO);
  free(x); free(xf); free(gn); free(w); free(h); free(ss); free(so);
  free(y0); free(y1); free(y2); free(a1); free(a2);
}

/* The decode chain: act = SwiGLU(X Wgu^T), then Y += act Wd^T, queued back to back as
 * programmatic dependent launches (the second may start before the first ends and must wait for
 * act), K split in the second so that its ticketed partials are in play too; repeated reps times,
 * with Y read back once at the end: every rep adds the same product. */
static void chain_case(int A, int D, int F, int reps, bool wide) {
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
  cf_skinny_opts o1 = {4, 1, 1, true, wide}, o2 = {1, 3, 1, true, wide};
  int rc = 0;
  cf_skinny_job j1, j2;
  memset(&j1, 0, sizeof j1);
  memset(&j2, 0, sizeof j2);
  j1.W = cf_tensor_data(WGU); j1.X = cf_tensor_data(X); j1.ldx = D; j1.act = cf_tensor_data(ACT);
  j1.A = A; j1.in = D; j1.out = 2 * F; j1.swiglu = true;
  j2.W = cf_tensor_data(WD); j2.X = cf_tensor_data(ACT); j2.ldx = F; j2.Y = cf_tensor_data(Y); j2.ldy = D;
  j2.beta = 1.f; j2.A = A; j2.in = F; j2.out = D;
  for (int r = 0; r < reps && rc == 0; r++)
    rc = cf_cuda_skinny_run(&j1, &o1, &ws, NULL) || cf_cuda_skinny_run(&j2, &o2, &ws, NULL);
  if (rc == 0) rc = cf_cuda_synchronize();
  CHECK(rc == 0, "PDL chain%s: %s", wide ? " (wide)" : "", cf_error_message());
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
    CHECK(bad == 0, "PDL chain%s A %d D %d F %d x%d: %d wrong", wide ? " (wide)" : "", A, D, F, reps, bad);
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
  CHECK(cf_cuda_skinny_ws_init(&ws, (size_t)1 << 21, 4096) == 0, "workspace: %s", cf_error_message());
  static const int rows[] = {1, 2, 3, 5, 8, 9, 15, 16};
  /* rows x (plain beta 0, plain beta 1 with padded strides, SwiGLU), default plan */
  for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
    sk_case c = {rows[i], 256, 96, 256, 96, false, 0.f, {0, 0, 0, false, false}, false, 0, false};
    run_case(&c);
    sk_case d = {rows[i], 160, 40, 168, 48, false, 1.f, {0, 0, 0, false, false}, false, 0, true};
    run_case(&d);
    sk_case s = {rows[i], 128, 64, 136, 0, true, 0.f, {0, 0, 0, false, false}, false, 0, false};
    run_case(&s);
    sk_case n = {rows[i], 256, 64, 264, 64, false, 0.f, {0, 0, 0, false, false}, true, 3, true};
    run_case(&n);
    sk_case ns = {rows[i], 192, 96, 192, 0, true, 0.f, {0, 2, 0, false, false}, true, 1, false};
    run_case(&ns);
  }
  /* every tile width, K split or not, both register bounds; K not a multiple of the unroll */
  static const int nts[] = {1, 2, 4}, ksbs[] = {1, 3, 7}, minbs[] = {1, 2};
  for (size_t a = 0; a < 3; a++)
    for (size_t b = 0; b < 3; b++)
      for (size_t m = 0; m < 2; m++) {
        cf_skinny_opts o = {nts[a], ksbs[b], minbs[m], m == 1, false};
        sk_case c = {16, 1504, 200, 1504, 200, false, 1.f, o, false, 0, b == 1};
        run_case(&c);
        sk_case s = {11, 928, 2 * 48, 928, 0, true, 0.f, o, false, 0, false};
        run_case(&s);
      }
  /* decode shapes of the 1.5B model with the default plan and the folded norms as decode runs
   * them (qkv, o_proj, gate/up + SwiGLU, down, LM head, a smaller vocabulary) */
  {
    sk_case c[] = {{16, 1536, 2048, 1536, 2048, false, 0.f, {0, 0, 0, false, false}, true, 48, false},
                   {16, 1536, 1536, 1536, 1536, false, 1.f, {0, 0, 0, false, false}, false, 0, true},
                   {16, 1536, 2 * 8960, 1536, 0, true, 0.f, {0, 0, 0, false, false}, true, 48, false},
                   {16, 8960, 1536, 8960, 1536, false, 1.f, {0, 0, 0, false, false}, false, 0, true},
                   {7, 8960, 1536, 8960, 1536, false, 1.f, {0, 0, 2, false, false}, false, 0, false},
                   {16, 1536, 32000, 1536, 32000, false, 0.f, {0, 0, 0, true, false}, true, 48, false}};
    for (size_t i = 0; i < sizeof c / sizeof *c; i++) run_case(&c[i]);
  }
  chain_case(16, 256, 512, 20, false);
  chain_case(5, 1536, 8960, 4, false);
  /* the wide layout (X staged in shared memory, warps over columns): every tile width, K parts
   * chosen, forced, and more than one part of SKW_MAXCH chunks needs; both register bounds,
   * with and without PDL; then the decode shapes with the norms folded, and the chain */
  {
    static const int wnts[] = {1, 2, 4}, wksbs[] = {0, 1, 9};
    for (size_t a = 0; a < 3; a++)
      for (size_t b = 0; b < 3; b++)
        for (size_t m = 0; m < 2; m++) {
          cf_skinny_opts o = {wnts[a], wksbs[b], minbs[m], m == 1, true};
          sk_case c = {16, 1504, 200, 1504, 200, false, 1.f, o, false, 0, b == 1};
          sk_case s = {11, 928, 2 * 48, 928, 0, true, 0.f, o, false, 0, false};
          sk_case n = {9, 1536, 136, 1536, 136, false, 0.f, o, true, 3, b != 1};
          sk_case ns = {16, 1536, 2 * 112, 1536, 0, true, 0.f, o, true, 2, false}; /* gate/up as decode runs it */
          const sk_case *cs[] = {&c, &s, &n, &ns};
          for (int q = 0; q < 4; q++) {
            cf_skinny_job j;
            memset(&j, 0, sizeof j);
            j.in = cs[q]->in; j.out = cs[q]->out; j.swiglu = cs[q]->swiglu;
            int nt, ksb, grid;
            CHECK(cf_cuda_skinny_plan(&j, &o, &ws, &nt, &ksb, &grid), "wide plan refused (in %d out %d nt %d ksb %d)",
                  j.in, j.out, o.nt, o.ksb);
            run_case(cs[q]);
          }
        }
    sk_case c[] = {{16, 1536, 2048, 1536, 2048, false, 0.f, {2, 0, 0, true, true}, true, 48, false},
                   {16, 1536, 1536, 1536, 1536, false, 1.f, {1, 0, 0, true, true}, false, 0, true},
                   {16, 1536, 2 * 8960, 1536, 0, true, 0.f, {4, 0, 0, true, true}, true, 48, false},
                   {16, 8960, 1536, 8960, 1536, false, 1.f, {2, 0, 2, true, true}, false, 0, true},
                   {3, 8960, 1536, 8960, 1536, false, 1.f, {4, 0, 1, true, true}, false, 0, true}};
    for (size_t i = 0; i < sizeof c / sizeof *c; i++) {
      cf_skinny_job j;
      memset(&j, 0, sizeof j);
      j.in = c[i].in; j.out = c[i].out; j.swiglu = c[i].swiglu;
      int nt, ksb, grid;
      CHECK(cf_cuda_skinny_plan(&j, &c[i].o, &ws, &nt, &ksb, &grid), "wide decode shape refused (in %d out %d)", j.in,
            j.out);
      run_case(&c[i]);
    }
  }
  chain_case(16, 256, 512, 20, true);
  chain_case(5, 1536, 8960, 4, true);
  /* jobs it refuses, with a message */
  {
    int64_t n = 4096;
    cf_tensor *z = cf_tensor_zeros(1, &n, CF_DTYPE_BF16), *t = cf_tensor_to_device(z, CF_DEVICE_CUDA);
    cf_tensor_release(z);
    void *p = cf_tensor_data(t);
    cf_skinny_job j;
    memset(&j, 0, sizeof j);
    j.W = p; j.X = p; j.ldx = 64; j.Y = (float *)p; j.ldy = 8; j.A = 4; j.in = 64; j.out = 8;
    CHECK(cf_cuda_skinny_ok(&j), "a good job refused");
    cf_skinny_job b = j;
    b.in = 48; b.ldx = 48;
    CHECK(!cf_cuda_skinny_ok(&b), "in 48 accepted");
    int rc = cf_cuda_skinny_run(&b, NULL, NULL, NULL);
    CHECK(rc != 0 && strstr(cf_error_message(), "multiple of 32"), "in 48: rc %d, message %s", rc, cf_error_message());
    b = j; b.A = 17;
    CHECK(!cf_cuda_skinny_ok(&b), "17 rows accepted");
    b = j; b.out = 12;
    CHECK(!cf_cuda_skinny_ok(&b), "out 12 accepted");
    b = j; b.out = 24; b.swiglu = true; b.act = p; b.Y = NULL;
    CHECK(!cf_cuda_skinny_ok(&b), "SwiGLU out 24 accepted");
    b = j; b.W = (char *)p + 2;
    CHECK(!cf_cuda_skinny_ok(&b), "misaligned W accepted");
    b = j; b.X = NULL; b.xf = (const float *)p; b.gnorm = (const float *)p;
    CHECK(!cf_cuda_skinny_ok(&b), "normalised source without ss_in accepted");
    b = j; b.Y = NULL;
    CHECK(!cf_cuda_skinny_ok(&b), "no output accepted");
    cf_tensor_release(t);
  }
  cf_cuda_skinny_ws_free(&ws);
  return check_finish();
}
#endif
