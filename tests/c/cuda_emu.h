/* cuda_emu.h - just enough of CUDA to run a kernel's device code on the CPU (the *_emu tests):
 * every CUDA thread an OS thread, blocks one after another in a shuffled order (so __shared__
 * arrays can be statics),
 * __syncthreads a barrier of the block, warp-wide operations (mma.sync, ldmatrix, the shuffles)
 * gathered through a per-warp stage at a barrier of the warp (two stages, used in turn: a lane
 * writes one again only after the next operation's barrier, by which every lane has read it).
 * Written from the CUDA and PTX documentation, independently of the kernels it runs: the mma
 * fragment layout is the PTX ISA's for m16n8k16 (lane g = lane/4, t = lane%4 holds A elements
 * a0..a7 at row g + 8*((i/2)%2), column 2t + (i%2) + 8*(i/4), B elements b0..b3 at row (k)
 * 2t + (i%2) + 8*(i/2), column g, C elements c0..c3 at row g + 8*(i/2), column 2t + (i%2);
 * register j holds elements 2j (low half) and 2j+1), ldmatrix .x4's the PTX ISA's too (rows of
 * matrix j from the addresses of lanes 8j..8j+7, lane 4g + t receiving in register j its elements
 * (g, 2t), (g, 2t+1), or with .trans (2t, g), (2t+1, g)). cp.async copies land at their
 * wait_group, not before; the dynamic shared memory is a buffer of the launch's size, poisoned
 * before every block (emu_smem). Checks index arithmetic, not timing or the GPU's memory model.
 *
 * Use: include this, then the kernel header, then emu_run(grid, threads, [&]{ kernel(args); }).
 */
#ifndef CF_CUDA_EMU_H
#define CF_CUDA_EMU_H

#include <cuda_bf16.h>
#include <vector_types.h>

#include <algorithm>

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

class emu_barrier { /* reusable barrier for n threads: spins (yielding) a while, then sleeps */
 public:
  explicit emu_barrier(int n) : n_(n) {}
  void wait() {
    unsigned gen = gen_.load(std::memory_order_acquire);
    if (count_.fetch_add(1, std::memory_order_acq_rel) + 1 == n_) {
      count_.store(0, std::memory_order_relaxed);
      std::lock_guard<std::mutex> lk(m_);
      gen_.fetch_add(1, std::memory_order_acq_rel);
      cv_.notify_all();
      return;
    }
    for (int i = 0; i < 64; i++) {
      if (gen_.load(std::memory_order_acquire) != gen) return;
      std::this_thread::yield();
    }
    std::unique_lock<std::mutex> lk(m_);
    cv_.wait(lk, [&] { return gen_.load(std::memory_order_acquire) != gen; });
  }

 private:
  int n_;
  std::atomic<int> count_{0};
  std::atomic<unsigned> gen_{0};
  std::mutex m_;
  std::condition_variable cv_;
};

static thread_local dim3 emu_thread, emu_block;
static dim3 emu_bdim, emu_gdim;
static emu_barrier *emu_block_bar;
static emu_barrier *emu_warp_bar[32];
struct emu_frag { uint32_t a[4], b[2]; float c[4]; };
static emu_frag emu_stage[2][32][32]; /* [call parity][warp][lane] */
static const void *emu_rows[2][32][32]; /* [call parity][warp][lane]: the row addresses of an ldmatrix */
static uint64_t emu_shfl[2][32][32]; /* a shuffled value's bytes (at most 8) */
static thread_local unsigned emu_wcall; /* warp-wide operations so far (all lanes of a warp agree) */

/* cuda_bf16.h defined these qualifiers for host code; the kernel's shared arrays become statics */
#undef __global__
#undef __device__
#undef __forceinline__
#undef __shared__
#define threadIdx emu_thread
#define blockIdx emu_block
#define blockDim emu_bdim
#define gridDim emu_gdim
#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static
#define __launch_bounds__(...)
static inline void __syncthreads() { emu_block_bar->wait(); }
/* nonzero when p is nonzero in any thread of the block; a barrier (blocks run one at a time) */
static std::atomic<int> emu_or_acc{0};
static inline int __syncthreads_or(int p) {
  if (p) emu_or_acc.store(1);
  emu_block_bar->wait();
  int r = emu_or_acc.load();
  emu_block_bar->wait();
  if (threadIdx.x == 0) emu_or_acc.store(0);
  emu_block_bar->wait();
  return r;
}
static inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
template <typename T> static inline T atomicAdd(T *p, T v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }
static inline int atomicMin(int *p, int v) {
  int o = __atomic_load_n(p, __ATOMIC_SEQ_CST);
  while (v < o && !__atomic_compare_exchange_n(p, &o, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {}
  return o;
}
static inline int atomicMax(int *p, int v) {
  int o = __atomic_load_n(p, __ATOMIC_SEQ_CST);
  while (v > o && !__atomic_compare_exchange_n(p, &o, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {}
  return o;
}
static inline uint32_t __float_as_uint(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}
static inline uint32_t cu_pack_bf16x2(float lo, float hi) { /* round to nearest even, lo in the low half */
  bf16 a = __float2bfloat16(lo), b = __float2bfloat16(hi);
  uint16_t ua, ub;
  memcpy(&ua, &a, 2);
  memcpy(&ub, &b, 2);
  return (uint32_t)ua | ((uint32_t)ub << 16);
}
/* Programmatic dependent launch: a test may stand in for the predecessor kernel. emu_wait_hook
 * runs once per block when its threads reach cu_pdl_wait (the predecessor's writes land then),
 * emu_block_end_hook after each block (to take them back, so that the next block again sees
 * what was there before the predecessor finished). Every thread of a block must call
 * cu_pdl_wait at the same point, as the kernels here do. */
#include <functional>
static std::function<void()> emu_wait_hook, emu_block_end_hook;
static inline void cu_pdl_wait() {
  if (!emu_wait_hook) return;
  emu_block_bar->wait();
  if (threadIdx.x == 0) emu_wait_hook();
  emu_block_bar->wait();
}
static inline void cu_pdl_trigger() {}
static inline void cu_prefetch_l2(const void *) {}
template <typename T> static T __ldg(const T *p) { return *p; }
template <typename T> static T __ldcs(const T *p) { return *p; }
template <typename T> static T __ldcg(const T *p) { return *p; }
/* the intrinsics that fix a rounding: one product rounded, or fused (fmaf is exact then rounds) */
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
#ifndef INFINITY
#define INFINITY (__builtin_inff())
#endif
using std::min;

/* a warp shuffle over the whole warp: every lane's value through the stage, lane src(lane)'s
 * value back */
template <typename T, typename F>
static inline T emu_shuffle(T v, F src) {
  static_assert(sizeof(T) <= 8, "a shuffled value is at most 8 bytes");
  int warp = (int)threadIdx.x >> 5, lane = (int)threadIdx.x & 31;
  int b = emu_wcall++ & 1;
  memcpy(&emu_shfl[b][warp][lane], &v, sizeof v);
  emu_warp_bar[warp]->wait();
  T r;
  memcpy(&r, &emu_shfl[b][warp][src(lane)], sizeof r);
  return r;
}
template <typename T> static inline T __shfl_xor_sync(unsigned, T v, int o) {
  return emu_shuffle(v, [o](int l) { return l ^ o; });
}
template <typename T> static inline T __shfl_sync(unsigned, T v, int src) {
  return emu_shuffle(v, [src](int) { return src & 31; });
}
/* lanes below o keep their own value */
template <typename T> static inline T __shfl_up_sync(unsigned, T v, int o) {
  return emu_shuffle(v, [o](int l) { return l >= o ? l - o : l; });
}
/* cuda_internal.cuh's warp and block reductions, over the emulated shuffle */
#include "kernels/block_reduce.cuh"
/* element helpers of cuda_internal.cuh */
static inline void bf16x8_to_float(const uint4 &u, float *f) {
  const __nv_bfloat162 *h = (const __nv_bfloat162 *)&u;
  for (int j = 0; j < 4; j++) {
    float2 v = __bfloat1622float2(h[j]);
    f[2 * j] = v.x;
    f[2 * j + 1] = v.y;
  }
}
static inline float to_float(float v) { return v; }
static inline float to_float(bf16 v) { return __bfloat162float(v); }
static inline void stf(float *p, int64_t i, float v) { p[i] = v; }
static inline void stf(bf16 *p, int64_t i, float v) { p[i] = __float2bfloat16(v); }
template <typename T> T from_float(float v);
template <> inline float from_float<float>(float v) { return v; }
template <> inline bf16 from_float<bf16>(float v) { return __float2bfloat16(v); }

static inline float emu_half(uint32_t reg, int hi) { /* element of a packed bf16 pair as float */
  uint32_t u = hi ? (reg & 0xffff0000u) : (reg << 16);
  float f;
  memcpy(&f, &u, 4);
  return f;
}

/* the warp-wide mma.sync, from the PTX fragment layout (see the header) */
static inline void cu_mma_bf16(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
  int warp = (int)threadIdx.x >> 5, lane = (int)threadIdx.x & 31;
  int bf = emu_wcall++ & 1;
  emu_frag &f = emu_stage[bf][warp][lane];
  memcpy(f.a, a, sizeof f.a);
  f.b[0] = b0;
  f.b[1] = b1;
  memcpy(f.c, c, sizeof f.c);
  emu_warp_bar[warp]->wait();
  float A[16][16], B[16][8], C[16][8];
  for (int l = 0; l < 32; l++) {
    int g = l / 4, t = l % 4;
    const emu_frag &s = emu_stage[bf][warp][l];
    for (int i = 0; i < 8; i++) A[g + 8 * ((i / 2) % 2)][2 * t + (i % 2) + 8 * (i / 4)] = emu_half(s.a[i / 2], i % 2);
    for (int i = 0; i < 4; i++) B[2 * t + (i % 2) + 8 * (i / 2)][g] = emu_half(s.b[i / 2], i % 2);
    for (int i = 0; i < 4; i++) C[g + 8 * (i / 2)][2 * t + (i % 2)] = s.c[i];
  }
  int g = lane / 4, t = lane % 4;
  for (int i = 0; i < 4; i++) {
    int r = g + 8 * (i / 2), n = 2 * t + (i % 2);
    double s = C[r][n];
    for (int k = 0; k < 16; k++) s += (double)A[r][k] * B[k][n];
    c[i] = (float)s;
  }
}

/* ldmatrix.sync.aligned.m8n8.x4[.trans].shared.b16, from the PTX layout (see the header): every
 * lane gives one row address (16 bytes, which must be 16-byte aligned), then takes its elements
 * from the rows the others gave: lane 4g + t gets in register j elements (g, 2t), (g, 2t+1) of
 * matrix j, or with .trans (2t, g), (2t+1, g) */
static inline void emu_ldsm_x4(uint32_t r[4], const void *p, bool trans) {
  int warp = (int)threadIdx.x >> 5, lane = (int)threadIdx.x & 31;
  if ((uintptr_t)p % 16) {
    fprintf(stderr, "ldmatrix: lane %d of warp %d: row address %p not 16-byte aligned\n", lane, warp, p);
    abort();
  }
  int bf = emu_wcall++ & 1;
  emu_rows[bf][warp][lane] = p;
  emu_warp_bar[warp]->wait();
  int g = lane / 4, t = lane % 4;
  for (int j = 0; j < 4; j++) {
    uint16_t lo, hi;
    const char *const *rows = (const char *const *)emu_rows[bf][warp];
    if (trans) { /* column g of rows 2t and 2t + 1 of matrix j */
      memcpy(&lo, rows[8 * j + 2 * t] + 2 * g, 2);
      memcpy(&hi, rows[8 * j + 2 * t + 1] + 2 * g, 2);
    } else { /* columns 2t and 2t + 1 of row g of matrix j */
      memcpy(&lo, rows[8 * j + g] + 4 * t, 2);
      memcpy(&hi, rows[8 * j + g] + 4 * t + 2, 2);
    }
    r[j] = (uint32_t)lo | (uint32_t)hi << 16;
  }
}
static inline void cu_ldsm_x4_trans(uint32_t r[4], const void *p) { emu_ldsm_x4(r, p, true); }

/* A launch's dynamic shared memory: a test sizes emu_smem to the launch's byte count before
 * emu_run (a heap buffer of exactly that size, so that the sanitizer build sees a kernel reach
 * past it); emu_run fills it with 0xFF bytes (NaN as floats and bf16) before every block, so
 * that a read of what the block has not written shows. */
static std::vector<unsigned char> emu_smem;

/* cp.async (cp.async.cg.shared.global, 16 bytes; commit_group; wait_group N), deferred: a copy
 * reads its source when issued but lands in shared memory only when a wait_group lets its group
 * go (every committed group but the newest N), so that a tile used before its wait (and the
 * barrier after it) reads the block's stale data or the poison. Both addresses must be 16-byte
 * aligned and the destination inside emu_smem. */
struct emu_cp { unsigned char *dst; unsigned char data[16]; };
static thread_local std::vector<emu_cp> emu_cp_pending; /* issued, oldest first */
static thread_local std::vector<size_t> emu_cp_groups;  /* the end of each committed group */
static inline void emu_cp16(void *dst, const void *src, bool ok) {
  unsigned char *d = (unsigned char *)dst;
  if ((uintptr_t)dst % 16 || (ok && (uintptr_t)src % 16) || d < emu_smem.data() ||
      d + 16 > emu_smem.data() + emu_smem.size()) {
    fprintf(stderr, "cp.async: thread %u: destination %p (shared memory %p + %zu bytes) or source %p\n",
            threadIdx.x, dst, (void *)emu_smem.data(), emu_smem.size(), src);
    abort();
  }
  emu_cp c;
  c.dst = d;
  if (ok) memcpy(c.data, src, 16);
  else memset(c.data, 0, 16);
  emu_cp_pending.push_back(c);
}
static inline void emu_cp_commit() { emu_cp_groups.push_back(emu_cp_pending.size()); }
static inline void emu_cp_wait(int n) {
  if ((int)emu_cp_groups.size() <= n) return;
  size_t upto = emu_cp_groups[emu_cp_groups.size() - 1 - n];
  for (size_t i = 0; i < upto; i++) memcpy(emu_cp_pending[i].dst, emu_cp_pending[i].data, 16);
  emu_cp_pending.erase(emu_cp_pending.begin(), emu_cp_pending.begin() + (long)upto);
  emu_cp_groups.erase(emu_cp_groups.begin(), emu_cp_groups.end() - n);
  for (size_t &e : emu_cp_groups) e -= upto;
}

/* a test's random numbers: xorshift64 on *state, uniform in [-1, 1) */
static inline double emu_urand(uint64_t *state) {
  uint64_t x = *state;
  x ^= x << 13; x ^= x >> 7; x ^= x << 17;
  *state = x;
  return (double)(x >> 11) / 4503599627370496.0 - 1.0;
}

/* runs body (which calls the kernel) as grid.x * grid.y * grid.z blocks of nthr threads, one
 * block after another in a shuffled order (a GPU promises no order; a kernel that leans on one,
 * or blocks that share a counter they should not, shows): nthr OS threads walk the blocks in
 * step, a barrier between blocks */
template <typename F>
static inline void emu_run(dim3 grid, int nthr, F body) {
  emu_bdim = dim3(nthr, 1, 1);
  emu_gdim = grid;
  emu_barrier bb(nthr), done(nthr);
  emu_block_bar = &bb;
  int nw = (nthr + 31) / 32;
  for (int w = 0; w < nw; w++) emu_warp_bar[w] = new emu_barrier(32);
  std::vector<dim3> order;
  for (unsigned bz = 0; bz < grid.z; bz++)
    for (unsigned by = 0; by < grid.y; by++)
      for (unsigned bx = 0; bx < grid.x; bx++) order.push_back(dim3(bx, by, bz));
  uint64_t st = 0x853c49e6748fea9bull ^ order.size();
  for (size_t i = order.size(); i > 1; i--) { /* Fisher-Yates, fixed seed */
    st = st * 6364136223846793005ull + 1442695040888963407ull;
    std::swap(order[i - 1], order[(size_t)(st >> 33) % i]);
  }
  std::vector<std::thread> th;
  for (int t = 0; t < nthr; t++)
    th.emplace_back([&, t] {
      emu_thread = dim3(t, 0, 0);
      for (const dim3 &b : order) {
        emu_block = b;
        if (!emu_smem.empty()) {
          if (t == 0) memset(emu_smem.data(), 0xFF, emu_smem.size());
          done.wait();
        }
        body();
        if (!emu_cp_pending.empty()) {
          fprintf(stderr, "cp.async: thread %d ends block (%u, %u, %u) with %zu copies not waited for\n", t, b.x,
                  b.y, b.z, emu_cp_pending.size());
          abort();
        }
        emu_cp_groups.clear();
        done.wait(); /* the block's shared arrays are free for the next block */
        if (emu_block_end_hook) {
          if (t == 0) emu_block_end_hook();
          done.wait();
        }
      }
    });
  for (auto &x : th) x.join();
  for (int w = 0; w < nw; w++) delete emu_warp_bar[w];
}

#endif
