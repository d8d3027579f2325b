/* test_skinny_emu.cpp - the decode GEMM kernel of kernels/skinny_kernel.cuh run on the CPU, each
 * CUDA thread an OS thread, against naive double-precision products. Needs no GPU (built when the
 * CUDA toolkit is found, for its bf16 and vector types).
 *
 * What is emulated here, independently of the kernel:
 *  - mma.sync.m16n8k16 (row.col, bf16 -> f32) from the fragment layout of the PTX ISA: lane
 *    (g = lane/4, t = lane%4) holds A elements a0..a7 at row g + 8*((i/2)%2), column
 *    2t + (i%2) + 8*(i/4), B elements b0..b3 at row (k) 2t + (i%2) + 8*(i/2), column g, and C
 *    elements c0..c3 at row g + 8*(i/2), column 2t + (i%2); register j holds elements 2j (low
 *    half) and 2j+1. The warp's 32 fragments are gathered, multiplied, and scattered back.
 *  - __syncthreads (a barrier of the block's threads), __shared__ (one array per block: blocks
 *    run one after another), atomics and fences (the host's).
 * So this checks the kernel's index arithmetic - the permuted k order that turns 16-byte loads
 * into fragments, the K split over warps and blocks, the ticketed partial sums, the SwiGLU
 * pairing of gate and up tiles, the row and column guards - but not the GPU's timing, memory
 * model or performance (tests/gpu/test_skinny.c and bench/skinny_bench.c do that on a GPU).
 */
#include <cuda_bf16.h>
#include <vector_types.h>

#include <atomic>
#include <condition_variable>
#include <math.h>
#include <mutex>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <thread>
#include <vector>

/* ---------------------------------------------------------------- the emulated CUDA surface */

typedef __nv_bfloat16 bf16;

class emu_barrier { /* reusable barrier for n threads */
 public:
  explicit emu_barrier(int n) : n_(n) {}
  void wait() {
    std::unique_lock<std::mutex> lk(m_);
    unsigned gen = gen_;
    if (++count_ == n_) {
      count_ = 0;
      gen_++;
      cv_.notify_all();
    } else {
      cv_.wait(lk, [&] { return gen != gen_; });
    }
  }

 private:
  std::mutex m_;
  std::condition_variable cv_;
  int n_, count_ = 0;
  unsigned gen_ = 0;
};

static thread_local dim3 emu_thread, emu_block;
static dim3 emu_bdim;
static emu_barrier *emu_block_bar;
static emu_barrier *emu_warp_bar[32];
struct emu_frag { uint32_t a[4], b[2]; float c[4]; };
static emu_frag emu_stage[32][32]; /* [warp][lane] */

/* cuda_bf16.h defined these qualifiers for host code; the kernel's shared arrays become statics */
#undef __global__
#undef __device__
#undef __forceinline__
#undef __shared__
#define threadIdx emu_thread
#define blockIdx emu_block
#define blockDim emu_bdim
#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static
#define __launch_bounds__(...)
static void __syncthreads() { emu_block_bar->wait(); }
static void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
static int atomicAdd(int *p, int v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }
static uint32_t cu_pack_bf16x2(float lo, float hi) { /* round to nearest even, lo in the low half */
  bf16 a = __float2bfloat16(lo), b = __float2bfloat16(hi);
  uint16_t ua, ub;
  memcpy(&ua, &a, 2);
  memcpy(&ub, &b, 2);
  return (uint32_t)ua | ((uint32_t)ub << 16);
}
static void cu_pdl_wait() {}    /* launches here are plain: nothing to wait for */
static void cu_pdl_trigger() {}
static void cu_prefetch_l2(const void *) {}
template <typename T> static T __ldg(const T *p) { return *p; }
template <typename T> static T __ldcs(const T *p) { return *p; }
template <typename T> static T __ldcg(const T *p) { return *p; }

static float emu_half(uint32_t reg, int hi) { /* element of a packed bf16 pair as float */
  uint32_t u = hi ? (reg & 0xffff0000u) : (reg << 16);
  float f;
  memcpy(&f, &u, 4);
  return f;
}

/* the warp-wide mma.sync, from the PTX fragment layout (see the header) */
static void cu_mma_bf16(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
  int warp = (int)threadIdx.x >> 5, lane = (int)threadIdx.x & 31;
  emu_frag &f = emu_stage[warp][lane];
  memcpy(f.a, a, sizeof f.a);
  f.b[0] = b0;
  f.b[1] = b1;
  memcpy(f.c, c, sizeof f.c);
  emu_warp_bar[warp]->wait();
  float A[16][16], B[16][8], C[16][8];
  for (int l = 0; l < 32; l++) {
    int g = l / 4, t = l % 4;
    const emu_frag &s = emu_stage[warp][l];
    for (int i = 0; i < 8; i++) A[g + 8 * ((i / 2) % 2)][2 * t + (i % 2) + 8 * (i / 4)] = emu_half(s.a[i / 2], i % 2);
    for (int i = 0; i < 4; i++) B[2 * t + (i % 2) + 8 * (i / 2)][g] = emu_half(s.b[i / 2], i % 2);
    for (int i = 0; i < 4; i++) C[g + 8 * (i / 2)][2 * t + (i % 2)] = s.c[i];
  }
  emu_warp_bar[warp]->wait(); /* every lane has read the stage before anyone writes it again */
  int g = lane / 4, t = lane % 4;
  for (int i = 0; i < 4; i++) {
    int r = g + 8 * (i / 2), n = 2 * t + (i % 2);
    double s = C[r][n];
    for (int k = 0; k < 16; k++) s += (double)A[r][k] * B[k][n];
    c[i] = (float)s;
  }
}

#include "kernels/skinny_kernel.cuh"

/* ---------------------------------------------------------------- the launcher */

/* one "launch": blocks one after another, each with SK_WARPS*32 threads */
template <int NT, int EPI, bool XN>
static void emu_launch(int gx, int gy, const sk_args &a) {
  int nthr = SK_WARPS * 32;
  emu_bdim = dim3(nthr, 1, 1);
  emu_barrier bb(nthr);
  emu_block_bar = &bb;
  for (int w = 0; w < SK_WARPS; w++) emu_warp_bar[w] = new emu_barrier(32);
  for (int by = 0; by < gy; by++)
    for (int bx = 0; bx < gx; bx++) {
      std::vector<std::thread> th;
      for (int t = 0; t < nthr; t++)
        th.emplace_back([=] {
          emu_thread = dim3(t, 0, 0);
          emu_block = dim3(bx, by, 0);
          k_skinny<NT, EPI, XN, 1>(a);
        });
      for (auto &x : th) x.join();
    }
  for (int w = 0; w < SK_WARPS; w++) delete emu_warp_bar[w];
}

/* ---------------------------------------------------------------- the checks */

static int n_pass, n_fail;
#define CHECK(cond, ...)                                                        \
  do {                                                                          \
    if (cond) n_pass++;                                                         \
    else { n_fail++; printf("FAIL %s:%d: ", __FILE__, __LINE__); printf(__VA_ARGS__); printf("\n"); } \
  } while (0)

static uint64_t rs = 0x2545F4914F6CDD1Dull;
static double urand() {
  rs ^= rs << 13; rs ^= rs >> 7; rs ^= rs << 17;
  return (double)(rs >> 11) / 4503599627370496.0 - 1.0;
}

/* xn: the activations are f32 rows normalised on load (RMSNorm folded in) from ss partials
 * in `groups` parts; ssout: the plain output also leaves per-row sums of squares */
struct emu_case { int A, in, out, ldx, ldy; bool swiglu; float beta; int nt, ksb; bool xn; int groups; bool ssout; };

static void run(const emu_case &c) {
  int A = c.A, in = c.in, out = c.out, ldx = c.ldx, ldy = c.ldy, F = out / 2;
  int nt, ksb, grid;
  sk_plan(in, out, c.swiglu, c.xn, c.nt, c.ksb, 4, (size_t)1 << 20, 4096, &nt, &ksb, &grid);
  std::vector<bf16> X((size_t)16 * ldx), W((size_t)out * in);
  std::vector<float> XF((size_t)16 * ldx), G(in), SS((size_t)std::max(c.groups, 1) * 16);
  for (auto &v : X) v = __float2bfloat16((float)(2 * urand()));
  for (auto &v : XF) v = (float)(3 * urand());
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
  if (c.xn) {
    if (c.swiglu) emu_launch<4, SK_SWIGLU, true>(grid, ksb, a);
    else emu_launch<4, SK_PLAIN, true>(grid, ksb, a);
  } else if (c.swiglu) {
    if (nt == 4) emu_launch<4, SK_SWIGLU, false>(grid, ksb, a);
    else emu_launch<2, SK_SWIGLU, false>(grid, ksb, a);
  } else if (nt == 4) emu_launch<4, SK_PLAIN, false>(grid, ksb, a);
  else if (nt == 2) emu_launch<2, SK_PLAIN, false>(grid, ksb, a);
  else emu_launch<1, SK_PLAIN, false>(grid, ksb, a);
  char what[200];
  snprintf(what, sizeof what, "A %d in %d out %d ldx %d ldy %d %s%s%s beta %g nt %d ksb %d grid %d", A, in, out, ldx,
           ldy, c.swiglu ? "swiglu" : "plain", c.xn ? " normed" : "", c.ssout ? " ss_out" : "", c.beta, nt, ksb, grid);
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
  }
  const emu_case cases[] = {
    /* rows 1..16, every tile width, K whole or split into parts of uneven length */
    {16, 64, 32, 64, 32, false, 0.f, 1, 1, false, 0, false},
    {16, 96, 48, 104, 56, false, 1.f, 2, 1, false, 0, false},
    {5, 128, 64, 128, 64, false, 0.5f, 4, 1, false, 0, false},
    {1, 256, 40, 264, 40, false, 1.f, 4, 3, false, 0, false},
    {9, 320, 24, 320, 32, false, 0.f, 1, 4, false, 0, false},
    {16, 544, 16, 552, 16, false, 1.f, 2, 0, false, 0, false},
    {3, 32, 8, 32, 8, false, 0.f, 4, 1, false, 0, false},
    /* the SwiGLU form */
    {16, 64, 32, 64, 0, true, 0.f, 2, 1, false, 0, false},
    {7, 160, 64, 168, 0, true, 0.f, 4, 1, false, 0, false},
    {16, 288, 96, 288, 0, true, 0.f, 4, 3, false, 0, false},
    {12, 256, 48, 256, 0, true, 0.f, 2, 0, false, 0, false},
    /* RMSNorm folded into the load (partials of the sums of squares in 1 or 3 parts), and the
       sums of squares of the output for the next one */
    {16, 256, 64, 256, 64, false, 0.f, 0, 1, true, 1, false},
    {6, 128, 96, 136, 96, false, 1.f, 0, 3, true, 3, true},
    {16, 192, 64, 192, 0, true, 0.f, 0, 2, true, 2, false},
    {3, 96, 48, 96, 0, true, 0.f, 0, 1, true, 1, false},
    {16, 160, 40, 168, 48, false, 1.f, 1, 1, false, 0, true},
    {9, 256, 64, 256, 64, false, 1.f, 2, 4, false, 0, true},
  };
  for (const emu_case &c : cases) run(c);
  printf("%d passed, %d failed\n", n_pass, n_fail);
  return n_fail ? 1 : 0;
}
