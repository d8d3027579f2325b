/* test_gen_attn_emu.cpp - the decode attention of kernels/gen_attn.cuh (k_attn, then
 * k_attn_combine) run on the CPU through tests/c/cuda_emu.h, against a naive double-precision
 * attention over the same caches. Needs no GPU (built when the CUDA toolkit is found).
 *
 * Covered: bf16 and f32 caches; head_dim 128 and 16 on the 16-byte path, 24 on the element path,
 * 256; query groups of 1, 2, 6 and 12 heads per kv head (12: two passes of the kernel), also
 * shared out over several blocks per kv head (gs, one of them with no head left); the splits
 * merged by k_attn_combine or by the attention's last block (a ticket per row and block row); splits of
 * one and of two tiles; positions on and across tile edges; rows sharing a prompt prefix slot;
 * and the four ways decode runs it: queries already rotated (k_rope_kv ran), the same with the
 * cache loaded before the dependency wait (early: position p is loaded again after it), and the
 * fused form (rq) that rotates the queries itself and makes, stores and uses position p's key
 * and value (checked in the caches too; the caches hold NaN at p before), without and with early
 * loads. The predecessor kernel is emulated at the wait: what it
 * writes is NaN in every block until that block has waited, so a read before the wait of
 * anything but the finished cache shows. The variants k_attn_qp (one-pass query staging),
 * k_attn_tc (its scores on the tensor cores, through the emulated mma) and k_attn_tc2 (P V there
 * too, its V through the emulated ldmatrix) take the same checks, and the split partials of both
 * are held to k_attn_qp's far more closely than to the reference (agree below: their precision,
 * not only their indexing). The emulated ldmatrix is itself checked against the mma fragment
 * layout first (ldsm_check).
 */
#include "cuda_emu.h"
#include "check.h"

#include "kernels/gen_attn.cuh"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vector>

static uint64_t rs = 0x9E3779B97F4A7C15ull;
static double urand() { return emu_urand(&rs); }

static float tof(float v) { return v; }
static float tof(bf16 v) { return __bfloat162float(v); }

struct cfg {
  const char *name;
  int H, KVH, hd, cap, C;
  std::vector<int> pos, plen; /* per row; rows with plen > 0 share slot 0's prefix */
};

enum { MODE_ROTATED, MODE_EARLY, MODE_FUSED, MODE_FUSED_EARLY, NMODE };
static const char *mode_name[] = {"rotated q", "rotated q, early loads", "fused bias+RoPE",
                                  "fused bias+RoPE, early loads"};

/* the kernel run() runs: k_attn, k_attn_qp (the one-pass query staging; VEC, HD 128, fused only),
 * k_attn_tc (k_attn_qp with the scores on the tensor cores; VEC, HD 128) or k_attn_tc2 (P V on
 * them too) */
enum { K_ATTN, K_QP, K_TC, K_TC2 };
static int g_kernel = K_ATTN;
static const char *kernel_name[] = {"k_attn", "k_attn_qp", "k_attn_tc", "k_attn_tc2"};
/* the last run's split partials (max, sum, unnormalised output), for agree() */
static std::vector<float> g_po, g_pm, g_pl;

template <typename T, bool VEC, int HD>
static void run(const cfg &c, int mode, int gs = 1, bool merge = false, int np = 1) {
  int A = (int)c.pos.size(), H = c.H, KVH = c.KVH, hd = c.hd, cap = c.cap, hh = hd / 2;
  int Q = H * hd, KV = KVH * hd, ld = Q + 2 * KV, group = H / KVH;
  int nslots = A + 1; /* slot 0: the shared prompt; row r owns slot r + 1 */
  int nsplit = (cap + c.C - 1) / c.C;
  bool fused = mode == MODE_FUSED || mode == MODE_FUSED_EARLY;
  size_t ncache = (size_t)(nslots + 1) * KVH * cap * hd;
  std::vector<T> kc(ncache), vc(ncache);
  for (auto &v : kc) v = from_float<T>((float)urand());
  for (auto &v : vc) v = from_float<T>((float)urand());
  std::vector<int> pos(c.pos), plen(c.plen), slot(A), pslot(A);
  for (int r = 0; r < A; r++) { slot[r] = r + 1; pslot[r] = plen[r] > 0 ? 0 : r + 1; }
  std::vector<float> q((size_t)A * Q), qkv((size_t)A * ld), bq(Q), bk(KV), bv(KV);
  std::vector<float> cs((size_t)cap * hh), sn((size_t)cap * hh);
  for (auto &v : q) v = (float)urand();
  for (auto &v : qkv) v = (float)urand();
  /* fused with np > 1: the GEMM's rows come as np split-K partials; the rows they stand for are
   * their sum in the kernel's order (the reference below sees the floats the kernel should) */
  std::vector<float> parts;
  if (fused && np > 1) {
    parts.resize((size_t)np * A * ld);
    for (auto &v : parts) v = (float)urand();
    for (size_t i = 0; i < qkv.size(); i++) {
      float v = parts[i];
      for (int k = 1; k < np; k++) v += parts[(size_t)k * A * ld + i];
      qkv[i] = v;
    }
  }
  for (auto &v : bq) v = (float)(0.3 * urand());
  for (auto &v : bk) v = (float)(0.3 * urand());
  for (auto &v : bv) v = (float)(0.3 * urand());
  for (int t = 0; t < cap; t++)
    for (int i = 0; i < hh; i++) {
      double ang = t * pow(10000.0, -2.0 * i / hd);
      cs[(size_t)t * hh + i] = (float)cos(ang);
      sn[(size_t)t * hh + i] = (float)sin(ang);
    }
  /* the fused form: the rotated queries and position p's key and value it must produce */
  std::vector<float> qrot((size_t)A * Q);
  std::vector<T> kp((size_t)A * KV), vp((size_t)A * KV);
  for (int r = 0; r < A; r++) {
    int p = pos[r];
    const float *row = &qkv[(size_t)r * ld];
    for (int h = 0; h < H + KVH; h++)
      for (int d = 0; d < hd; d++) {
        int j = d % hh, o = (h < H ? h : h - H) * hd + j, base = h < H ? 0 : Q;
        const float *b = h < H ? bq.data() : bk.data();
        float x0 = row[base + o] + b[o], x1 = row[base + o + hh] + b[o + hh];
        float cc = cs[(size_t)p * hh + j], ss = sn[(size_t)p * hh + j];
        float v = d < hh ? rope_lo(x0, x1, cc, ss) : rope_hi(x0, x1, cc, ss); /* the kernels' rounding */
        if (h < H) qrot[(size_t)r * Q + h * hd + d] = v;
        else kp[(size_t)r * KV + (h - H) * hd + d] = from_float<T>(v);
      }
    for (int j = 0; j < KV; j++) vp[(size_t)r * KV + j] = from_float<T>(row[Q + KV + j] + bv[j]);
  }
  /* fused: what the caches hold at position p before the step is stale (NaN here); the kernel
   * must use the key and value it makes */
  if (fused)
    for (int r = 0; r < A; r++)
      for (int kh = 0; kh < KVH; kh++)
        for (int d = 0; d < hd; d++) {
          size_t i = (((size_t)slot[r] * KVH + kh) * cap + pos[r]) * hd + d;
          kc[i] = vc[i] = from_float<T>(NAN);
        }
  std::vector<T> kc0 = kc, vc0 = vc;
  std::vector<float> po((size_t)A * H * nsplit * hd), pm((size_t)A * H * nsplit), pl((size_t)A * H * nsplit);
  std::vector<T> out((size_t)A * Q);
  att_args a;
  memset(&a, 0, sizeof a);
  a.q = parts.size() ? parts.data() : fused ? qkv.data() : q.data();
  a.qnp = np;
  a.qps = (size_t)A * ld;
  a.kc = kc.data(); a.vc = vc.data();
  a.pos = pos.data(); a.slot = slot.data(); a.pslot = pslot.data(); a.plen = plen.data();
  a.po = po.data(); a.pm = pm.data(); a.pl = pl.data();
  a.H = H; a.KVH = KVH; a.hd = hd; a.cap = cap; a.C = c.C; a.nsplit = nsplit; a.gs = gs;
  a.scale = (float)(1.0 / sqrt((double)hd));
  a.rq = fused;
  a.early = mode == MODE_EARLY || mode == MODE_FUSED_EARLY;
  a.ld = ld; a.bq = bq.data(); a.bk = bk.data(); a.bv = bv.data(); a.cos_t = cs.data(); a.sin_t = sn.data();
  a.kcw = kc.data(); a.vcw = vc.data();
  std::vector<int> cnt((size_t)A * KVH * gs, 0);
  if (merge) { a.cnt = cnt.data(); a.out = out.data(); }
  /* the predecessor kernel, emulated: what it writes (the rotated queries; in early mode also
   * position p of each row's own slot; in the fused form the GEMM's rows) is NaN until the block
   * waits for it, and NaN again for the next block */
  std::vector<float> &qlive = parts.size() ? parts : fused ? qkv : q;
  std::vector<float> qreal = qlive;
  auto put = [&](bool real) {
    for (size_t i = 0; i < qlive.size(); i++) qlive[i] = real ? qreal[i] : NAN;
    if (mode == MODE_EARLY)
      for (int r = 0; r < A; r++)
        for (int kh = 0; kh < KVH; kh++)
          for (int d = 0; d < hd; d++) {
            size_t i = (((size_t)slot[r] * KVH + kh) * cap + pos[r]) * hd + d;
            kc[i] = real ? kc0[i] : from_float<T>(NAN);
            vc[i] = real ? vc0[i] : from_float<T>(NAN);
          }
  };
  put(false);
  emu_wait_hook = [&] { put(true); };
  emu_block_end_hook = [&] { put(false); };
  CHECK(g_kernel == K_ATTN || (VEC && HD == 128 && (fused || g_kernel != K_QP)),
        "test setup: %s runs at head_dim <= 128 with 16-byte loads only (k_attn_qp fused only)", kernel_name[g_kernel]);
  dim3 grid(nsplit, KVH * gs, A);
  if (g_kernel == K_QP) emu_run(grid, ATT_T, [=] { k_attn_qp<T>(a); });
  else if (g_kernel == K_TC) emu_run(grid, ATT_T, [=] { k_attn_tc<T>(a); });
  else if (g_kernel == K_TC2) emu_run(grid, ATT_T, [=] { k_attn_tc2<T>(a); });
  else emu_run(grid, ATT_T, [=] { k_attn<T, VEC, HD>(a); });
  emu_wait_hook = nullptr;
  emu_block_end_hook = nullptr;
  put(true);
  if (!merge)
    emu_run(dim3(H, A, 1), (hd + 31) / 32 * 32,
            [&] { k_attn_combine<T>(po.data(), pm.data(), pl.data(), out.data(), H, hd, nsplit); });
  bool zero = true;
  for (int v : cnt) zero = zero && v == 0;
  char what[200];
  snprintf(what, sizeof what, "%s, %s, %s, %d block(s) per kv head%s%s%s", c.name, sizeof(T) == 2 ? "bf16" : "f32",
           mode_name[mode], gs, merge ? ", merged in the attention" : "", np > 1 ? ", split-K q|k|v" : "",
           g_kernel == K_QP    ? ", one-pass query staging"
           : g_kernel == K_TC  ? ", tensor-core scores"
           : g_kernel == K_TC2 ? ", tensor-core scores and P V"
                               : "");
  CHECK(zero, "%s: ticket counters not reset", what);
  g_po = po;
  g_pm = pm;
  g_pl = pl;
  /* the reference: softmax(q k / sqrt(hd)) v over positions 0..p, in double */
  int bad = 0;
  double worst = 0;
  for (int r = 0; r < A; r++) {
    int p = pos[r];
    for (int h = 0; h < H; h++) {
      int kh = h / group;
      const float *qq = fused ? &qrot[(size_t)r * Q + h * hd] : &q[(size_t)r * Q + h * hd];
      std::vector<double> sc(p + 1);
      double mx = -1e300;
      for (int t = 0; t <= p; t++) {
        int sl = t < plen[r] ? pslot[r] : slot[r];
        size_t off = (((size_t)sl * KVH + kh) * cap + t) * hd;
        double s = 0;
        for (int d = 0; d < hd; d++) {
          double kv = fused && t == p ? tof(kp[(size_t)r * KV + kh * hd + d]) : tof(kc0[off + d]);
          s += (double)qq[d] * kv;
        }
        sc[t] = s / sqrt((double)hd);
        if (sc[t] > mx) mx = sc[t];
      }
      double L = 0;
      for (int t = 0; t <= p; t++) { sc[t] = exp(sc[t] - mx); L += sc[t]; }
      for (int d = 0; d < hd; d++) {
        double o = 0;
        for (int t = 0; t <= p; t++) {
          int sl = t < plen[r] ? pslot[r] : slot[r];
          size_t off = (((size_t)sl * KVH + kh) * cap + t) * hd;
          double vv = fused && t == p ? tof(vp[(size_t)r * KV + kh * hd + d]) : tof(vc0[off + d]);
          o += sc[t] * vv;
        }
        o /= L;
        double got = tof(out[(size_t)r * Q + h * hd + d]);
        /* bf16: the output is rounded to bf16 (2^-8 relative at most); the cache values are the
         * reference's own */
        double tol = sizeof(T) == 2 ? 1e-4 + 8e-3 * fabs(o) : 2e-5 + 1e-5 * fabs(o);
        double err = fabs(got - o);
        if (!(err <= tol) && bad++ < 3) printf("  %s: row %d head %d dim %d got %.6g want %.6g\n", what, r, h, d, got, o);
        if (err > worst) worst = err;
      }
    }
  }
  CHECK(bad == 0, "%s: %d wrong (worst %.3g)", what, bad, worst);
  /* the caches: only the fused form writes, exactly position p of each row's own slot */
  int cbad = 0;
  for (size_t i = 0; i < ncache; i++) {
    size_t d = i % hd, t = (i / hd) % cap, kh = (i / hd / cap) % KVH, sl = i / hd / cap / KVH;
    T kw = kc0[i], vw = vc0[i];
    if (fused && sl >= 1 && (int)sl <= A && (int)t == pos[sl - 1]) {
      kw = kp[(sl - 1) * KV + kh * hd + d];
      vw = vp[(sl - 1) * KV + kh * hd + d];
    }
    if ((memcmp(&kc[i], &kw, sizeof(T)) || memcmp(&vc[i], &vw, sizeof(T))) && cbad++ < 3)
      printf("  %s: cache slot %zu kv head %zu position %zu dim %zu differs\n", what, sl, kh, t, d);
  }
  CHECK(cbad == 0, "%s: caches written wrongly (%d)", what, cbad);
}

/* k_attn_tc and k_attn_tc2 against k_attn_qp on the same inputs (the random state rewound), split
 * by split:
 * the max and the sum within AGREE relative (the max at least 1 taken: the scores here are of
 * order 1), the unnormalised output within AGREE of the sum (the values are below 1 in
 * magnitude: the output relative to the weights it sums; element by element it may cancel).
 * The scores' three bf16 query parts hold the f32 query to about 2^-27, so only the summation
 * orders differ (here at most 4e-7): far closer than the reference's tolerance above (bf16:
 * 8e-3), which a dropped part would still meet. Without the third part the differences reach
 * 1e-6 .. 5e-6, hence 1e-6. k_attn_tc2's P V takes P in three bf16 parts the same way
 * (ATT_PVPARTS), V is exact in bf16: here at most 1.3e-7 (with two parts 1.2e-6 .. 2.6e-6). (The
 * emulated mma sums exactly; the GPU's may round a little more.) Empty splits (max -inf) must
 * match exactly. */
#define AGREE 1e-6
static void agree(const cfg &c, int mode, int gs = 1, bool merge = false, int np = 1) {
  uint64_t rs0 = rs;
  g_kernel = K_QP;
  run<bf16, true, 128>(c, mode, gs, merge, np);
  std::vector<float> po = g_po, pm = g_pm, pl = g_pl;
  for (int k = K_TC; k <= K_TC2; k++) {
    rs = rs0;
    g_kernel = k;
    run<bf16, true, 128>(c, mode, gs, merge, np);
    g_kernel = K_ATTN;
    const char *name = kernel_name[k];
    int bad = 0, hd = c.hd;
    double worst[3] = {0, 0, 0};
    auto cmp = [&](int k, float x, float y, double scale, size_t i) {
      double e = x == y ? 0 : fabs((double)x - y) / scale;
      if (!(e <= AGREE) && bad++ < 3)
        printf("  %s %s %zu: qp %.9g tc %.9g\n", name, k == 0 ? "max" : k == 1 ? "sum" : "output", i, x, y);
      if (e > worst[k]) worst[k] = e;
    };
    for (size_t i = 0; i < pm.size(); i++) {
      cmp(0, pm[i], g_pm[i], fmax(fabs((double)pm[i]), 1.0), i);
      cmp(1, pl[i], g_pl[i], fmax((double)pl[i], 1e-30), i);
      for (int d = 0; d < hd; d++) cmp(2, po[i * hd + d], g_po[i * hd + d], fmax((double)pl[i], 1e-30), i * hd + d);
    }
    CHECK(bad == 0,
          "%s, %s, %d block(s) per kv head: %s's partials differ from k_attn_qp's (%d; worst max %.3g, sum %.3g, "
          "output %.3g)",
          c.name, mode_name[mode], gs, name, bad, worst[0], worst[1], worst[2]);
    printf("  agree %s, %s, %s: worst max %.3g, sum %.3g, output %.3g\n", name, c.name, mode_name[mode], worst[0],
           worst[1], worst[2]);
  }
}

/* the emulated ldmatrix .x4 .trans against the mma fragment layout (cuda_emu.h's header, which
 * the emulated mma follows): a 16 x 16 matrix X of distinct bf16 in shared-memory rows (padded,
 * as the kernel's), lanes giving the rows as att_tc_pv does; the registers must be the A fragment
 * of X^T (row m, column k: X[k][m]), and an mma of it with a B of ones X^T's row sums */
static void ldsm_check() {
  static uint4 rows[16][3]; /* 16 elements and 8 pad per row */
  static uint32_t got[32][4];
  static float sums[32][4];
  bf16 *x = (bf16 *)rows;
  for (int k = 0; k < 16; k++)
    for (int m = 0; m < 24; m++) x[k * 24 + m] = __float2bfloat16((float)(k * 16 + (m & 15)));
  emu_run(dim3(1, 1, 1), 32, [] {
    int lane = threadIdx.x;
    uint32_t a[4];
    cu_ldsm_x4_trans(a, (const bf16 *)rows[(lane & 7) + 8 * (lane >> 4)] + 8 * ((lane >> 3) & 1));
    memcpy(got[lane], a, sizeof a);
    float c[4] = {0.f, 0.f, 0.f, 0.f};
    uint32_t one = cu_pack_bf16x2(1.f, 1.f);
    cu_mma_bf16(c, a, one, one);
    memcpy(sums[lane], c, sizeof c);
  });
  int bad = 0;
  for (int lane = 0; lane < 32; lane++) {
    int g = lane / 4, t = lane % 4;
    for (int i = 0; i < 8; i++) { /* A element i: row g + 8 ((i / 2) % 2), column 2 t + i % 2 + 8 (i / 4) */
      int m = g + 8 * ((i / 2) % 2), k = 2 * t + i % 2 + 8 * (i / 4);
      float v = emu_half(got[lane][i / 2], i % 2);
      if (v != (float)(k * 16 + m) && bad++ < 3)
        printf("  ldmatrix: lane %d element %d: %g, want X[%d][%d] = %d\n", lane, i, v, k, m, k * 16 + m);
    }
    for (int i = 0; i < 4; i++) { /* C row g + 8 (i / 2): sum over k of X[k][m] = 16 m + 1920 */
      int m = g + 8 * (i / 2);
      if (sums[lane][i] != (float)(16 * m + 1920) && bad++ < 3)
        printf("  ldmatrix + mma: lane %d c%d: %g\n", lane, i, sums[lane][i]);
    }
  }
  CHECK(bad == 0, "emulated ldmatrix .x4 .trans: fragments differ from the mma layout (%d)", bad);
}

int main() {
  ldsm_check();
  /* positions: tile edges (63, 64), a split edge, the last cached position, short rows; plen > 0
   * rows read their first plen positions from the shared prompt slot */
  cfg c128 = {"hd 128, 12 heads on 2", 12, 2, 128, 200, 64, {150, 63, 64, 0}, {40, 40, 0, 0}};
  cfg c16 = {"hd 16, 12 heads on 1 (two passes), 2 tiles per split", 12, 1, 16, 300, 128, {299, 128, 5}, {100, 0, 3}};
  cfg c24 = {"hd 24 (element path), 4 heads on 2", 4, 2, 24, 140, 64, {139, 70, 1}, {0, 30, 1}};
  cfg c256 = {"hd 256, 2 heads on 1", 2, 1, 256, 130, 64, {129, 65}, {64, 0}};
  cfg c1 = {"hd 128, one head per kv head", 2, 2, 128, 70, 64, {69, 2}, {10, 0}};
  for (int m = 0; m < NMODE; m++) {
    run<bf16, true, 128>(c128, m);
    run<float, true, 128>(c128, m);
    run<bf16, true, 128>(c16, m);
    run<bf16, false, 128>(c24, m);
    run<float, false, 128>(c24, m);
    run<bf16, true, 256>(c256, m);
    run<bf16, true, 128>(c1, m);
  }
  /* the query heads of a kv head shared out over 2 and 7 blocks (7 > 6: one block idle), 3 for
   * the 12-head group; in the fused form one of them writes the caches */
  for (int m = 1; m < NMODE; m++) {
    run<bf16, true, 128>(c128, m, 2);
    run<bf16, true, 128>(c128, m, 7);
    run<bf16, true, 128>(c16, m, 3);
  }
  /* the splits merged by the attention's last block per (row, kv head share) instead of
   * k_attn_combine: the same output */
  for (int m = 0; m < NMODE; m++) {
    run<bf16, true, 128>(c128, m, 1, true);
    run<float, false, 128>(c24, m, 1, true);
  }
  run<bf16, true, 128>(c128, MODE_FUSED, 2, true);
  run<bf16, true, 128>(c128, MODE_FUSED_EARLY, 2, true);
  run<bf16, true, 128>(c16, MODE_EARLY, 3, true);
  /* q|k|v as the partials of a split-K GEMM (CONFIT_GEN_SPLITK), added by the attention */
  for (int m = MODE_FUSED; m <= MODE_FUSED_EARLY; m++) {
    run<bf16, true, 128>(c128, m, 1, false, 4);
    run<float, false, 128>(c24, m, 2, false, 2);
    run<bf16, true, 256>(c256, m, 1, true, 3);
  }
  /* 100 splits: the merge takes the 6 heads of a kv head in batches of 5 (their weights fill its
   * 528 floats of shared memory), each head's splits over more than one lane pass */
  cfg cmany = {"hd 128, 12 heads on 2, 100 splits", 12, 2, 128, 6400, 64, {6399, 4000}, {0, 100}};
  run<bf16, true, 128>(cmany, MODE_FUSED_EARLY, 1, true);
  /* the one-pass query staging (k_attn_qp, CONFIT_GEN_ATT_QPAIR=1): the same checks; 6 heads x
   * 64 pairs fill its 3 pairs x 128 threads exactly, 12 heads on 1 take two passes of 8 and 4
   * heads (partial pair batches), 2 heads on 2 leave most threads without a pair */
  g_kernel = K_QP;
  for (int m = MODE_FUSED; m <= MODE_FUSED_EARLY; m++) {
    run<bf16, true, 128>(c128, m);
    run<float, true, 128>(c128, m);
    run<bf16, true, 128>(c16, m);
    run<bf16, true, 128>(c1, m);
    run<bf16, true, 128>(c128, m, 2);
    run<bf16, true, 128>(c128, m, 7);
    run<bf16, true, 128>(c128, m, 1, true);
    run<bf16, true, 128>(c128, m, 1, false, 4);
    run<bf16, true, 128>(c16, m, 3, true, 2);
  }
  g_kernel = K_ATTN;
  /* the scores on the tensor cores (k_attn_tc): the same checks, in the fused forms (generate.cu
   * launches it, as k_attn_qp, only there). Warp w's 16 positions as mma rows g and g + 8 of lanes 4 g + t:
   * position p at a row of either kind (c128: p % 16 = 6, 15, 0; ct: 15, 6, 15, 0, 8), tiles
   * whose last warps have no position (ct: 16, 23 and 9 positions), several tiles per split (ct,
   * c8), groups of 8 (every column of the mma's N), 6, 2 and 1 heads (columns past G zero),
   * head_dim 16 (c16: one 32-dim chunk, half of it past head_dim) */
  cfg ct = {"hd 128, 12 heads on 2, 3 tiles per split", 12, 2, 128, 400, 192, {399, 150, 63, 64, 200},
            {100, 40, 0, 0, 130}};
  cfg c8 = {"hd 128, 8 heads on 1, 2 tiles per split", 8, 1, 128, 300, 128, {299, 77}, {50, 0}};
  cfg c2 = {"hd 128, 2 heads per kv head", 4, 2, 128, 140, 128, {139, 8}, {0, 8}};
  /* and with P V on the tensor cores too (k_attn_tc2), the same list: warp w's dims 32 w ..
   * 32 w + 31 as two m-tiles, positions as 4 k-steps of 16: position p in each k-step and at both
   * halves of one (c128: p % 64 = 22, 63, 0; ct: 15, 22, 63, 0, 8; c8: 43, 13), tiles whose last
   * k-steps have no position (their staged rows repeat the tile's last one, which is position
   * p's stale NaN in the fused and early forms: zeroed, or it leaks), heads past G zero in the B
   * fragments (c2, c1, 6 heads; c16's second pass of 4 heads after 8), head_dim 16 (c16: warp
   * 0's first m-tile only) */
  for (int k = K_TC; k <= K_TC2; k++) {
    g_kernel = k;
    for (int m = MODE_FUSED; m <= MODE_FUSED_EARLY; m++) {
      run<bf16, true, 128>(c128, m);
      if (k == K_TC) run<float, true, 128>(c128, m); /* k_attn_qp, for both */
      run<bf16, true, 128>(ct, m);
      run<bf16, true, 128>(c8, m);
      run<bf16, true, 128>(c2, m);
      run<bf16, true, 128>(c16, m);
      run<bf16, true, 128>(c1, m);
      run<bf16, true, 128>(ct, m, 2);
      run<bf16, true, 128>(c128, m, 7);
      run<bf16, true, 128>(ct, m, 1, true);
      run<bf16, true, 128>(ct, m, 1, false, 4);
      run<bf16, true, 128>(ct, m, 2, true, 4);
      run<bf16, true, 128>(c16, m, 3, true, 2);
    }
  }
  g_kernel = K_ATTN;
  /* and as close to k_attn_qp as the precision claim says */
  for (int m = MODE_FUSED; m <= MODE_FUSED_EARLY; m++) {
    agree(ct, m);
    agree(c8, m, 1, true, 4);
    agree(c16, m);
    agree(c2, m, 2);
  }
  return check_finish();
}
