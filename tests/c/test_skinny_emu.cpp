/* test_skinny_emu.cpp - the decode GEMM kernel of kernels/skinny_kernel.cuh run on the CPU, each
 * CUDA thread an OS thread, against naive double-precision products. Needs no GPU (built when the
 * CUDA toolkit is found, for its bf16 and vector types).
 *
 * The CUDA surface it needs (mma.sync from the PTX fragment layout, barriers, atomics) is
 * tests/c/cuda_emu.h, written independently of the kernel. This checks the kernel's index arithmetic - the permuted k order that turns 16-byte loads
 * into fragments, the K split over warps and blocks, the ticketed partial sums, the SwiGLU
 * pairing of gate and up tiles, the row and column guards - but not the GPU's timing, memory
 * model or performance (tests/gpu/test_skinny.c and bench/skinny_bench.c do that on a GPU).
 */
#include "cuda_emu.h"
#include "check.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vector>

/* the wide kernel's staging buffer, sized for the most it may hold (on the GPU: dynamic) */
#define SK_DYN_SMEM(T, name) static T name[SKW_MAXCH * 64]
#include "kernels/skinny_kernel.cuh"

/* one "launch": blocks one after another, each with SK_WARPS*32 threads */
template <int NT, int EPI, bool XN>
static void emu_launch(int gx, int gy, const sk_args &a) {
  emu_run(dim3(gx, gy, 1), SK_WARPS * 32, [=] { k_skinny<NT, EPI, XN, 1>(a); });
}
template <int NT, int EPI, bool XN>
static void emu_launch_wide(int gx, int gy, const sk_args &a) {
  emu_run(dim3(gx, gy, 1), SK_WARPS * 32, [=] { k_skinny_wide<NT, EPI, XN, 1>(a); });
}
template <bool XN>
static void emu_wide(bool swiglu, int nt, int gx, int gy, const sk_args &a) {
  if (swiglu && nt == 4) emu_launch_wide<4, SK_SWIGLU, XN>(gx, gy, a);
  else if (swiglu) emu_launch_wide<2, SK_SWIGLU, XN>(gx, gy, a);
  else if (nt == 4) emu_launch_wide<4, SK_PLAIN, XN>(gx, gy, a);
  else if (nt == 2) emu_launch_wide<2, SK_PLAIN, XN>(gx, gy, a);
  else emu_launch_wide<1, SK_PLAIN, XN>(gx, gy, a);
}

/* ---------------------------------------------------------------- the checks */

static uint64_t rs = 0x2545F4914F6CDD1Dull;
static double urand() { return emu_urand(&rs); }

/* xn: the activations are f32 rows normalised on load (RMSNorm folded in) from ss partials
 * in `groups` parts; ssout: the plain output also leaves per-row sums of squares */
/* wide: k_skinny_wide (nt tiles per warp, X staged in shared memory) */
struct emu_case { int A, in, out, ldx, ldy; bool swiglu; float beta; int nt, ksb; bool xn; int groups; bool ssout; bool wide; };

static void run(const emu_case &c) {
  int A = c.A, in = c.in, out = c.out, ldx = c.ldx, ldy = c.ldy, F = out / 2;
  int nt, ksb, grid;
  size_t smem = 0;
  if (!c.wide) sk_plan(in, out, c.swiglu, c.xn, c.nt, c.ksb, 4, (size_t)1 << 20, 4096, &nt, &ksb, &grid);
  else if (!skw_plan(in, out, c.swiglu, c.nt, c.ksb, 4, (size_t)1 << 20, 4096, &nt, &ksb, &grid, &smem)) {
    CHECK(false, "wide plan refused: A %d in %d out %d", A, in, out);
    return;
  }
  std::vector<bf16> X((size_t)16 * ldx), W((size_t)out * in);
  std::vector<float> XF((size_t)16 * ldx), G(in), SS((size_t)std::max(c.groups, 1) * 16);
  for (auto &v : X) v = __float2bfloat16((float)(2 * urand()));
  for (auto &v : XF) v = (float)(3 * urand());
  /* row 1 of small norm (mean square ~3e-6, near eps 1e-6): the eps inside the rsqrt matters */
  for (int k = 0; k < ldx; k++) XF[(size_t)1 * ldx + k] *= 1e-3f;
  for (auto &v : G) v = (float)(1 + 0.5 * urand());
  for (auto &v : W) v = __float2bfloat16((float)(0.1 * urand()));
  /* the bf16 activations the product must use: X, or XF normalised as the kernel rounds it */
  std::vector<float> H((size_t)16 * in);
  for (int r = 0; r < 16; r++) {
    if (c.xn) {
      double q = 0;
      for (int k = 0; k < in; k++) q += (double)XF[(size_t)r * ldx + k] * XF[(size_t)r * ldx + k];
      for (int g = 0; g < c.groups; g++) SS[(size_t)g * 16 + r] = (float)(q / c.groups); /* partials */
      float s = 0.f;
      for (int g = 0; g < c.groups; g++) s += SS[(size_t)g * 16 + r];
      float inv = 1.0f / sqrtf(s / in + 1e-6f);
      for (int k = 0; k < in; k++)
        H[(size_t)r * in + k] = __bfloat162float(__float2bfloat16(XF[(size_t)r * ldx + k] * inv * G[k]));
    } else {
      for (int k = 0; k < in; k++) H[(size_t)r * in + k] = __bfloat162float(X[(size_t)r * ldx + k]);
    }
  }
  int ycols = c.swiglu ? F : ldy;
  std::vector<float> Y0((size_t)16 * ycols), Y;
  for (auto &v : Y0) v = (float)urand();
  Y = Y0;
  std::vector<bf16> act((size_t)16 * F, __float2bfloat16(7.0f));
  std::vector<float> part((size_t)1 << 20), ssout((size_t)grid * 16, -1.f);
  std::vector<int> cnt(4096, 0);
  sk_args a;
  memset(&a, 0, sizeof a);
  a.W = W.data();
  a.X = c.xn ? nullptr : X.data();
  a.xf = c.xn ? XF.data() : nullptr;
  a.gnorm = G.data();
  a.ss_in = SS.data();
  a.ss_groups = c.groups;
  a.eps = 1e-6f;
  a.ldx = ldx;
  a.Y = c.swiglu ? nullptr : Y.data();
  a.ldy = ldy;
  a.beta = c.beta;
  a.ss_out = c.ssout ? ssout.data() : nullptr;
  a.act = act.data();
  a.A = A;
  a.in = in;
  a.out = out;
  a.ksb = ksb;
  a.part = part.data();
  a.cnt = cnt.data();
  /* launched as a dependent launch: until a block passes cu_pdl_wait its activations and sums of
   * squares are still being written by the predecessor (garbage here); they land at the wait and
   * are taken back after the block, so a load hoisted above the wait shows as a wrong result */
  std::vector<bf16> Xr = X;
  std::vector<float> XFr = XF, SSr = SS;
  auto garbage = [&] {
    for (auto &v : X) v = __float2bfloat16(1e30f);
    for (auto &v : XF) v = 1e30f;
    for (auto &v : SS) v = -1.f;
  };
  garbage();
  emu_wait_hook = [&] { X = Xr; XF = XFr; SS = SSr; };
  emu_block_end_hook = garbage;
  if (c.wide && c.xn) {
    emu_wide<true>(c.swiglu, nt, grid, ksb, a);
  } else if (c.wide) {
    emu_wide<false>(c.swiglu, nt, grid, ksb, a);
  } else if (c.xn) {
    if (c.swiglu) emu_launch<4, SK_SWIGLU, true>(grid, ksb, a);
    else emu_launch<4, SK_PLAIN, true>(grid, ksb, a);
  } else if (c.swiglu) {
    if (nt == 4) emu_launch<4, SK_SWIGLU, false>(grid, ksb, a);
    else emu_launch<2, SK_SWIGLU, false>(grid, ksb, a);
  } else if (nt == 4) emu_launch<4, SK_PLAIN, false>(grid, ksb, a);
  else if (nt == 2) emu_launch<2, SK_PLAIN, false>(grid, ksb, a);
  else emu_launch<1, SK_PLAIN, false>(grid, ksb, a);
  emu_wait_hook = nullptr;
  emu_block_end_hook = nullptr;
  char what[200];
  snprintf(what, sizeof what, "A %d in %d out %d ldx %d ldy %d %s%s%s%s beta %g nt %d ksb %d grid %d", A, in, out,
           ldx, ldy, c.wide ? "wide " : "", c.swiglu ? "swiglu" : "plain", c.xn ? " normed" : "",
           c.ssout ? " ss_out" : "", c.beta, nt, ksb, grid);
  int bad = 0;
  double worst = 0;
  std::vector<double> rowss(16, 0.0);
  for (int r = 0; r < 16; r++)
    for (int j = 0; j < (c.swiglu ? F : ldy); j++) {
      double got, want, tol;
      if (c.swiglu) {
        got = __bfloat162float(act[(size_t)r * F + j]);
        if (r >= A) want = 7.0, tol = 0;
        else {
          double g = 0, u = 0;
          for (int k = 0; k < in; k++) {
            double x = H[(size_t)r * in + k];
            g += x * __bfloat162float(W[(size_t)j * in + k]);
            u += x * __bfloat162float(W[(size_t)(F + j) * in + k]);
          }
          want = g / (1 + exp(-g)) * u;
          tol = 1e-3 + 8e-3 * fabs(want);
        }
      } else {
        got = Y[(size_t)r * ldy + j];
        if (r >= A || j >= out) want = Y0[(size_t)r * ldy + j], tol = 0;
        else {
          double s = 0;
          for (int k = 0; k < in; k++) s += (double)H[(size_t)r * in + k] * __bfloat162float(W[(size_t)j * in + k]);
          want = s + c.beta * Y0[(size_t)r * ldy + j];
          tol = 1e-4 * sqrt((double)in) + 1e-5 * fabs(want);
          rowss[r] += want * want;
        }
      }
      double err = fabs(got - want);
      if (!(err <= tol) && bad++ < 3) printf("  %s: row %d col %d got %.6g want %.6g\n", what, r, j, got, want);
      if (err > worst) worst = err;
    }
  CHECK(bad == 0, "%s: %d wrong (worst %.3g)", what, bad, worst);
  if (c.ssout) {
    int sbad = 0;
    for (int r = 0; r < 16; r++) {
      double s = 0;
      for (int g = 0; g < grid; g++) s += ssout[(size_t)g * 16 + r];
      if (!(fabs(s - rowss[r]) <= 1e-3 + 1e-4 * rowss[r]) && sbad++ < 3)
        printf("  %s: row %d sum of squares %.6g want %.6g\n", what, r, s, rowss[r]);
    }
    CHECK(sbad == 0, "%s: sums of squares wrong", what);
  }
  bool zero = true;
  for (int i = 0; i < grid; i++) zero = zero && cnt[i] == 0;
  CHECK(zero, "%s: ticket counters not reset", what);
}

int main() {
  /* plans: the chooser's picks at 4 multiprocessors (so small shapes split K) */
  {
    int nt, ksb, grid;
    sk_plan(1536, 1536, false, false, 0, 0, 132, (size_t)1 << 20, 4096, &nt, &ksb, &grid);
    CHECK(nt == 4 && grid == 48 && ksb == 6, "o_proj plan: nt %d ksb %d grid %d", nt, ksb, grid);
    sk_plan(1536, 2 * 8960, true, true, 0, 0, 132, (size_t)1 << 20, 4096, &nt, &ksb, &grid);
    CHECK(nt == 4 && grid == 560 && ksb == 1, "gate/up plan: nt %d ksb %d grid %d", nt, ksb, grid);
    sk_plan(1536, 1536, false, false, 0, 0, 132, 0, 0, &nt, &ksb, &grid);
    CHECK(ksb == 1, "no workspace, no split: ksb %d", ksb);
    sk_plan(64, 96, true, false, 1, 0, 132, (size_t)1 << 20, 4096, &nt, &ksb, &grid);
    CHECK(nt == 2 && grid == 6, "SwiGLU takes at least 2 tiles: nt %d grid %d", nt, grid);
    sk_plan(1536, 2048, false, true, 1, 0, 132, (size_t)1 << 20, 4096, &nt, &ksb, &grid);
    CHECK(nt == 4, "a normalised source takes 4 tiles: nt %d", nt);
    /* wide: parts of K of at most SKW_MAXCH chunks; enough blocks for 2 per multiprocessor */
    size_t smem;
    bool ok = skw_plan(8960, 1536, false, 2, 0, 132, (size_t)1 << 20, 4096, &nt, &ksb, &grid, &smem);
    CHECK(ok && nt == 2 && grid == 12 && ksb == 22 && smem == 13 * 1024, "wide down plan: nt %d ksb %d grid %d smem %zu",
          nt, ksb, grid, smem);
    ok = skw_plan(1536, 2 * 8960, true, 2, 0, 132, (size_t)1 << 20, 4096, &nt, &ksb, &grid, &smem);
    CHECK(ok && grid == 140 && ksb == 2 && smem == 24 * 1024, "wide gate/up plan: ksb %d grid %d smem %zu", ksb, grid,
          smem);
    ok = skw_plan(1536, 2 * 8960, true, 4, 0, 132, (size_t)1 << 20, 4096, &nt, &ksb, &grid, &smem);
    CHECK(!ok, "wide gate/up in 4 parts of 70 groups of 4 tiles per warp needs 1,146,880 floats of workspace");
    ok = skw_plan(1536, 2 * 8960, true, 4, 0, 132, (size_t)1 << 21, 4096, &nt, &ksb, &grid, &smem);
    CHECK(ok && grid == 70 && ksb == 4 && smem == 12 * 1024, "wide gate/up plan, 4 tiles: ksb %d grid %d", ksb, grid);
    ok = skw_plan(8960, 1536, false, 2, 1, 132, (size_t)1 << 20, 4096, &nt, &ksb, &grid, &smem);
    CHECK(ok && ksb == 7 && smem == 40 * 1024, "wide: a part of K holds at most %d chunks: ksb %d smem %zu", SKW_MAXCH,
          ksb, smem);
    ok = skw_plan(1536, 151936, false, 4, 0, 132, (size_t)1 << 20, 4096, &nt, &ksb, &grid, &smem);
    CHECK(!ok, "wide head plan should not fit a 4 MB workspace (grid %d ksb %d)", grid, ksb);
    ok = skw_plan(1536, 1536, false, 0, 0, 132, 0, 0, &nt, &ksb, &grid, &smem);
    CHECK(!ok, "wide needs a workspace for its parts of K");
    ok = skw_plan(64, 96, true, 1, 1, 132, 0, 0, &nt, &ksb, &grid, &smem);
    CHECK(ok && nt == 2 && ksb == 1 && grid == 1 && smem == 2 * 1024,
          "wide SwiGLU in one part (no workspace needed): nt %d ksb %d grid %d", nt, ksb, grid);
  }
  const emu_case cases[] = {
    /* rows 1..16, every tile width, K whole or split into parts of uneven length */
    {16, 64, 32, 64, 32, false, 0.f, 1, 1, false, 0, false, false},
    {16, 96, 48, 104, 56, false, 1.f, 2, 1, false, 0, false, false},
    {5, 128, 64, 128, 64, false, 0.5f, 4, 1, false, 0, false, false},
    {1, 256, 40, 264, 40, false, 1.f, 4, 3, false, 0, false, false},
    {9, 320, 24, 320, 32, false, 0.f, 1, 4, false, 0, false, false},
    {16, 544, 16, 552, 16, false, 1.f, 2, 0, false, 0, false, false},
    {3, 32, 8, 32, 8, false, 0.f, 4, 1, false, 0, false, false},
    /* the SwiGLU form */
    {16, 64, 32, 64, 0, true, 0.f, 2, 1, false, 0, false, false},
    {7, 160, 64, 168, 0, true, 0.f, 4, 1, false, 0, false, false},
    {16, 288, 96, 288, 0, true, 0.f, 4, 3, false, 0, false, false},
    {12, 256, 48, 256, 0, true, 0.f, 2, 0, false, 0, false, false},
    /* RMSNorm folded into the load (partials of the sums of squares in 1 or 3 parts), and the
       sums of squares of the output for the next one */
    {16, 256, 64, 256, 64, false, 0.f, 0, 1, true, 1, false, false},
    {6, 128, 96, 136, 96, false, 1.f, 0, 3, true, 3, true, false},
    {16, 192, 64, 192, 0, true, 0.f, 0, 2, true, 2, false, false},
    {3, 96, 48, 96, 0, true, 0.f, 0, 1, true, 1, false, false},
    {16, 160, 40, 168, 48, false, 1.f, 1, 1, false, 0, true, false},
    {9, 256, 64, 256, 64, false, 1.f, 2, 4, false, 0, true, false},
    /* the wide layout: every tile width, warps past the last column, K in parts (uneven, and
       more than SKW_MAXCH chunks), U-groups cut short, SwiGLU, the norm folded in, ss_out */
    {16, 64, 32, 64, 32, false, 0.f, 1, 1, false, 0, false, true},
    {16, 96, 200, 104, 208, false, 1.f, 1, 1, false, 0, false, true},
    {5, 352, 64, 360, 64, false, 0.5f, 2, 3, false, 0, false, true},
    {1, 256, 40, 264, 40, false, 1.f, 4, 2, false, 0, false, true},
    {16, 1440, 24, 1440, 32, false, 0.f, 2, 1, false, 0, false, true},
    {7, 160, 64, 168, 0, true, 0.f, 2, 1, false, 0, false, true},
    {16, 288, 272, 288, 0, true, 0.f, 4, 3, false, 0, false, true},
    {12, 256, 48, 256, 0, true, 0.f, 2, 0, false, 0, false, true},
    {16, 256, 64, 256, 64, false, 0.f, 4, 1, true, 1, false, true},
    {6, 128, 96, 136, 96, false, 1.f, 1, 3, true, 3, true, true},
    {16, 192, 64, 192, 0, true, 0.f, 2, 2, true, 2, false, true},
    {9, 320, 136, 320, 136, false, 1.f, 2, 0, false, 0, true, true},
  };
  for (const emu_case &c : cases) run(c);
  return check_finish();
}
