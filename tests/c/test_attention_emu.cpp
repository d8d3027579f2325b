/* test_attention_emu.cpp - the attention op's training kernels run on the CPU through
 * tests/c/cuda_emu.h, forward and backward, against a naive double-precision attention of the
 * same inputs. Needs no GPU (built when the CUDA toolkit's headers are found).
 *
 * kernels/attention.cuh (the CUDA cores: f32 and bf16, head dims up to 128, masks) and
 * kernels/attention_tc.cuh (the tensor cores: bf16, head dims 64 and 128, through the emulated
 * mma, ldmatrix and cp.async, whose copies land only at their wait), each run as attention.cu and
 * attention_tc.cu launch them: the forward; the backward's statistics pass (the forward in STATS
 * mode: lse, Di), dq, dk dv and, for grouped queries on the tensor cores, the per-head partials
 * and their group sum. Covered: causal and not, queries aligned to the end of longer keys (a KV
 * cache) and more queries than keys (leading rows see no key: zeros, zero gradients), grouped
 * queries (1, 2 and 3 heads per kv head), the model's [B, T, H, D] views as well as dense
 * [B, H, T, D], sizes off the tiles (odd head dims on the CUDA cores), a mask with fully masked
 * rows. Every output starts as NaN, the dynamic shared memory as NaN before every block: an
 * element a kernel should write and does not, or a tile read before its copy lands, shows.
 *
 * A NaN in a query makes that query's output row and its gradient row NaN, and the key and value
 * gradients of every key the query sees (as on the CPU, core/cpu/nn.c); a NaN in a key makes
 * the rows that see it NaN. The CPU's dense products (0 * NaN) also make NaN what the kernels may
 * keep finite: dk at keys a NaN query does not see, dq through a NaN key a query does not see;
 * there either is accepted. Kv heads no NaN reaches stay finite and right.
 */
#include "cuda_emu.h"
#include "check.h"

extern "C" {
#include "core/tensor.h" /* the dtype codes of a mask */
}

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <vector>

#include "kernels/ld_any.cuh" /* ld_any, as the kernels have it (cuda_internal.cuh) */
#define AT_SMEM(name) float *name = (float *)emu_smem.data()
#include "kernels/attention.cuh"

/* attention_tc.cu's primitives, emulated */
static inline void tc_cp16(bf16 *dst, const bf16 *src, bool ok) { emu_cp16(dst, src, ok); }
static inline void tc_cp_commit() { emu_cp_commit(); }
template <int N> static inline void tc_cp_wait() { emu_cp_wait(N); }
static inline void tc_ldsm(uint32_t r[4], const bf16 *p) { emu_ldsm_x4(r, p, false); }
static inline void tc_ldsm_t(uint32_t r[4], const bf16 *p) { emu_ldsm_x4(r, p, true); }
#define TC_SMEM(name) unsigned char *name = emu_smem.data()
#include "kernels/attention_tc.cuh"

static uint64_t rs = 0x2545F4914F6CDD1Dull;
static double urand() { return emu_urand(&rs); }

static float tof(float v) { return v; }
static float tof(bf16 v) { return __bfloat162float(v); }

struct prob {
  const char *name;
  int B, Hq, Hkv, T, S, D, Dv;
  bool causal;
  bool bthd;  /* q, k, v, dO as the model's [B, T, H, D] views (else dense [B, H, T, D]) */
  bool mask;  /* an int32 mask [B, 1, T, S] (the CUDA cores only) */
  int nan_q;  /* >= 0: element nan_q of q is NaN */
  int nan_k;  /* >= 0: element nan_k of k is NaN */
};

/* an operand [B, H, L, E] in either layout: element (b, h, t, e)'s offset, the strides of b, h, t */
struct lay {
  int H, L, E;
  bool bthd;
  size_t at(int b, int h, int t, int e) const {
    return bthd ? (((size_t)b * L + t) * H + h) * E + e : (((size_t)b * H + h) * L + t) * E + e;
  }
  void strides(int64_t s[3]) const {
    s[0] = (int64_t)H * L * E;
    s[1] = bthd ? E : (int64_t)L * E;
    s[2] = bthd ? (int64_t)H * E : E;
  }
};

/* the inputs (as floats, already rounded to the kernels' dtype) and the reference results */
struct data {
  lay lq, lk, lv, lo;
  std::vector<float> q, k, v, dO;
  std::vector<int32_t> mask; /* [B][T][S], 1 = keep */
  std::vector<double> out, gq, gk, gv; /* dense [B, H, L, E] */
};

static bool visible(const prob &p, const data &d, int b, int t, int s) {
  if (p.causal && s > t + (p.S - p.T)) return false;
  if (p.mask && !d.mask[((size_t)b * p.T + t) * p.S + s]) return false;
  return true;
}

/* softmax(scale q k^T) v and its gradients, in double, row by row as core/cpu/nn.c does: a row
 * with a NaN score among its visible keys is NaN at every visible key, a row with no visible key
 * zeros; dS = P (dP - Di) at visible keys, 0 elsewhere */
static void reference(const prob &p, data &d, double scale) {
  int rep = p.Hq / p.Hkv;
  d.out.assign((size_t)p.B * p.Hq * p.T * p.Dv, 0.0);
  d.gq.assign((size_t)p.B * p.Hq * p.T * p.D, 0.0);
  d.gk.assign((size_t)p.B * p.Hkv * p.S * p.D, 0.0);
  d.gv.assign((size_t)p.B * p.Hkv * p.S * p.Dv, 0.0);
  std::vector<double> P(p.S), dP(p.S);
  for (int b = 0; b < p.B; b++)
    for (int h = 0; h < p.Hq; h++) {
      int kh = h / rep;
      for (int t = 0; t < p.T; t++) {
        double mx = -INFINITY;
        bool nan = false, any = false;
        for (int s = 0; s < p.S; s++) {
          P[s] = 0;
          if (!visible(p, d, b, t, s)) continue;
          double x = 0;
          for (int e = 0; e < p.D; e++) x += (double)d.q[d.lq.at(b, h, t, e)] * d.k[d.lk.at(b, kh, s, e)];
          P[s] = x * scale;
          any = true;
          if (P[s] != P[s]) nan = true;
          else if (P[s] > mx) mx = P[s];
        }
        double sum = 0;
        for (int s = 0; s < p.S; s++)
          if (visible(p, d, b, t, s)) sum += (P[s] = nan ? NAN : exp(P[s] - mx));
        for (int s = 0; s < p.S; s++)
          if (visible(p, d, b, t, s)) P[s] /= sum;
        if (!any) continue; /* zeros */
        size_t orow = (((size_t)b * p.Hq + h) * p.T + t);
        for (int e = 0; e < p.Dv; e++) {
          double o = 0;
          for (int s = 0; s < p.S; s++)
            if (visible(p, d, b, t, s)) o += P[s] * d.v[d.lv.at(b, kh, s, e)];
          d.out[orow * p.Dv + e] = o;
        }
        double di = 0;
        for (int s = 0; s < p.S; s++) {
          dP[s] = 0;
          if (!visible(p, d, b, t, s)) continue;
          for (int e = 0; e < p.Dv; e++) dP[s] += (double)d.dO[d.lo.at(b, h, t, e)] * d.v[d.lv.at(b, kh, s, e)];
          di += P[s] * dP[s];
        }
        for (int s = 0; s < p.S; s++) {
          if (!visible(p, d, b, t, s)) continue;
          double ds = P[s] * (dP[s] - di);
          size_t krow = ((size_t)b * p.Hkv + kh) * p.S + s;
          for (int e = 0; e < p.D; e++) {
            d.gq[orow * p.D + e] += scale * ds * d.k[d.lk.at(b, kh, s, e)];
            d.gk[krow * p.D + e] += scale * ds * d.q[d.lq.at(b, h, t, e)];
          }
          for (int e = 0; e < p.Dv; e++) d.gv[krow * p.Dv + e] += P[s] * d.dO[d.lo.at(b, h, t, e)];
        }
      }
    }
}

/* got against the reference: NaN where the reference is NaN, elsewhere within tol of the largest
 * reference value; nan_ok (per element, may be empty): got may also be NaN where the reference is
 * finite (a NaN input reaching a gradient through a zero weight, 0 * NaN, as the CPU's products do
 * too: dq through a key the query does not see, dk of keys a NaN query does not see through
 * dS = P (dP - Di)) */
template <typename T>
static void compare(const char *what, const char *ctx, const std::vector<T> &got, const std::vector<double> &ref,
                    double tol, const std::vector<bool> &nan_ok = std::vector<bool>()) {
  double M = 0;
  for (double r : ref) if (r == r && fabs(r) > M) M = fabs(r);
  size_t bad = 0, first = 0;
  double worst = 0;
  for (size_t i = 0; i < ref.size(); i++) {
    double g = tof(got[i]), r = ref[i], err;
    if (r != r) err = g != g ? 0 : INFINITY;
    else if (g != g) err = !nan_ok.empty() && nan_ok[i] ? 0 : INFINITY;
    else err = fabs(g - r) / (M > 0 ? M : 1);
    if (err > tol) {
      if (!bad++) first = i;
      if (err > worst) worst = err;
    }
  }
  CHECK(bad == 0, "%s, %s: %zu of %zu elements off (tolerance %g of max |ref| %g), first at %zu: %g, want %g, worst %g",
        ctx, what, bad, ref.size(), tol, M, first, bad ? (double)tof(got[first]) : 0.0, bad ? ref[first] : 0.0, worst);
}

/* The elements of a gradient [B, H, L, E] (dense) in the (batch, kv head) blocks a NaN input of p
 * reaches (rep: query heads per kv head of this gradient's heads; 1 for dk): where 0 * NaN may
 * leave NaN (compare's nan_ok). Every other block must be exact. */
static std::vector<bool> nan_blocks(const prob &p, int H, int L, int E, int rep) {
  std::vector<bool> in((size_t)p.B * p.Hkv, false);
  if (p.nan_q >= 0) {
    size_t i = (size_t)p.nan_q / p.D / p.T; /* dense q: b * Hq + h */
    in[(i / p.Hq) * p.Hkv + (i % p.Hq) / (p.Hq / p.Hkv)] = true;
  }
  if (p.nan_k >= 0) in[(size_t)p.nan_k / p.D / p.S] = true; /* dense k: b * Hkv + kh */
  std::vector<bool> ok((size_t)p.B * H * L * E);
  for (size_t i = 0; i < ok.size(); i++) {
    size_t bh = i / E / L, b = bh / H, h = bh % H;
    ok[i] = in[b * p.Hkv + h / rep];
  }
  return ok;
}

template <typename T>
static std::vector<T> to_buf(const std::vector<float> &x) {
  std::vector<T> r(x.size());
  for (size_t i = 0; i < x.size(); i++) r[i] = from_float<T>(x[i]);
  return r;
}

/* the inputs of problem p, rounded to T */
template <typename T>
static data make(const prob &p) {
  data d;
  d.lq = {p.Hq, p.T, p.D, p.bthd};
  d.lk = {p.Hkv, p.S, p.D, p.bthd};
  d.lv = {p.Hkv, p.S, p.Dv, p.bthd};
  d.lo = {p.Hq, p.T, p.Dv, p.bthd};
  auto fill = [](std::vector<float> &x, size_t n, double amp) {
    x.resize(n);
    for (auto &e : x) e = tof(from_float<T>((float)(amp * urand())));
  };
  fill(d.q, (size_t)p.B * p.Hq * p.T * p.D, 2.0);
  fill(d.k, (size_t)p.B * p.Hkv * p.S * p.D, 1.0);
  fill(d.v, (size_t)p.B * p.Hkv * p.S * p.Dv, 1.0);
  fill(d.dO, (size_t)p.B * p.Hq * p.T * p.Dv, 1.0);
  if (p.nan_q >= 0) d.q[p.nan_q] = NAN;
  if (p.nan_k >= 0) d.k[p.nan_k] = NAN;
  if (p.mask) {
    d.mask.resize((size_t)p.B * p.T * p.S);
    for (auto &m : d.mask) m = urand() > -0.6; /* keeps 80 % */
    for (int s = 0; s < p.S; s++) d.mask[(size_t)1 * p.S + s] = 0;   /* b 0, t 1: no key */
    for (int s = 0; s < p.S; s++) d.mask[(size_t)p.T * p.S - p.S + s] = s == p.S - 1; /* b 0, last t: one */
  }
  return d;
}

static char ctx[256];

/* A run's output and gradients against the reference (under ctx); with a NaN input, dq and dk may
 * also be NaN in the (batch, kv head) blocks it reaches */
template <typename T>
static void compare_all(const prob &p, const data &d, double tol, const std::vector<T> &out,
                        const std::vector<T> &gq, const std::vector<T> &gk, const std::vector<T> &gv) {
  bool nan_in = p.nan_q >= 0 || p.nan_k >= 0;
  std::vector<bool> none;
  compare("out", ctx, out, d.out, tol);
  compare("dq", ctx, gq, d.gq, tol, nan_in ? nan_blocks(p, p.Hq, p.T, p.D, p.Hq / p.Hkv) : none);
  compare("dk", ctx, gk, d.gk, tol, nan_in ? nan_blocks(p, p.Hkv, p.S, p.D, 1) : none);
  compare("dv", ctx, gv, d.gv, tol);
}

/* ---------------------------------------------------------------- the CUDA cores (attention.cuh) */

template <typename T>
static void run_at(const prob &p, double tol) {
  data d = make<T>(p);
  at_geo g;
  memset(&g, 0, sizeof g);
  g.B = p.B; g.Hq = p.Hq; g.Hkv = p.Hkv; g.T = p.T; g.S = p.S; g.D = p.D; g.Dv = p.Dv;
  g.rep = p.Hq / p.Hkv;
  g.scale = (float)(1.0 / sqrt((double)p.D));
  g.causal = p.causal;
  d.lq.strides(g.qs);
  d.lk.strides(g.ks);
  d.lv.strides(g.vs);
  d.lo.strides(g.os);
  if (p.mask) {
    g.mask = d.mask.data();
    g.mdt = CF_DTYPE_I32;
    g.ms[0] = (int64_t)p.T * p.S; g.ms[1] = 0; g.ms[2] = p.S; g.ms[3] = 1; /* [B, 1, T, S] */
  }
  reference(p, d, g.scale);
  std::vector<T> q = to_buf<T>(d.q), k = to_buf<T>(d.k), v = to_buf<T>(d.v), dO = to_buf<T>(d.dO);
  T nanv = from_float<T>(NAN);
  std::vector<T> out(d.out.size(), nanv), gq(d.gq.size(), nanv), gk(d.gk.size(), nanv), gv(d.gv.size(), nanv);
  size_t rows = (size_t)p.B * p.Hq * p.T;
  std::vector<float> lse(rows, NAN), Di(rows, NAN);
  dim3 gridq((unsigned)((p.T + AT_BQ - 1) / AT_BQ), (unsigned)p.Hq, (unsigned)p.B);
  dim3 gridk((unsigned)((p.S + AT_BQ - 1) / AT_BQ), (unsigned)p.Hkv, (unsigned)p.B);
  emu_smem.assign(at_fwd_smem(g), 0);
  emu_run(gridq, AT_WARPS * 32, [&] { attn_fwd_kernel<T, false>(out.data(), q.data(), k.data(), v.data(), NULL, NULL, NULL, g); });
  emu_run(gridq, AT_WARPS * 32, [&] { attn_fwd_kernel<T, true>(NULL, q.data(), k.data(), v.data(), dO.data(), lse.data(), Di.data(), g); });
  emu_smem.assign(at_dq_smem(g), 0);
  emu_run(gridq, AT_WARPS * 32, [&] { attn_dq_kernel<T>(gq.data(), q.data(), k.data(), v.data(), dO.data(), lse.data(), Di.data(), g); });
  emu_smem.assign(at_dkv_smem(g), 0);
  emu_run(gridk, AT_WARPS * 32, [&] { attn_dkv_kernel<T>(gk.data(), gv.data(), q.data(), k.data(), v.data(), dO.data(), lse.data(), Di.data(), g); });
  snprintf(ctx, sizeof ctx, "CUDA cores %s, %s", sizeof(T) == 4 ? "f32" : "bf16", p.name);
  compare_all(p, d, tol, out, gq, gk, gv);
}

/* ---------------------------------------------------------------- the tensor cores (attention_tc.cuh) */

template <int D>
static void run_tc(const prob &p, double tol) {
  data d = make<bf16>(p);
  tc_geo g;
  memset(&g, 0, sizeof g);
  std::vector<bf16> q = to_buf<bf16>(d.q), k = to_buf<bf16>(d.k), v = to_buf<bf16>(d.v), dO = to_buf<bf16>(d.dO);
  g.q = q.data(); g.k = k.data(); g.v = v.data(); g.dO = dO.data();
  d.lq.strides(g.qs);
  d.lk.strides(g.ks);
  d.lv.strides(g.vs);
  d.lo.strides(g.os);
  g.Hq = p.Hq; g.Hkv = p.Hkv; g.rep = p.Hq / p.Hkv; g.T = p.T; g.S = p.S;
  g.causal = p.causal;
  double sc = 1.0 / sqrt((double)D);
  g.scale = (float)sc;
  g.c = (float)(sc * 1.4426950408889634);
  reference(p, d, g.scale);
  bf16 nanv = from_float<bf16>(NAN);
  std::vector<bf16> out(d.out.size(), nanv), gq(d.gq.size(), nanv), gk(d.gk.size(), nanv), gv(d.gv.size(), nanv);
  size_t rows = (size_t)p.B * p.Hq * p.T, part = (size_t)p.B * p.Hq * p.S * D;
  std::vector<float> lse(rows, NAN), Di(rows, NAN), pk(g.rep > 1 ? part : 0, NAN), pv(g.rep > 1 ? part : 0, NAN);
  dim3 gridq((unsigned)((p.T + TC_BR - 1) / TC_BR), (unsigned)p.Hq, (unsigned)p.B);
  dim3 gridk((unsigned)((p.S + TC_BC - 1) / TC_BC), (unsigned)p.Hq, (unsigned)p.B);
  emu_smem.assign(tc_fwd_smem(D), 0);
  emu_run(gridq, TC_THREADS, [&] { tc_fwd_kernel<D, false>(out.data(), NULL, NULL, g); });
  emu_run(gridq, TC_THREADS, [&] { tc_fwd_kernel<D, true>(NULL, lse.data(), Di.data(), g); });
  emu_smem.assign(tc_dq_smem(D), 0);
  emu_run(gridq, TC_THREADS, [&] { tc_dq_kernel<D>(gq.data(), lse.data(), Di.data(), g); });
  emu_smem.assign(tc_dkv_smem(D), 0);
  if (g.rep == 1) {
    emu_run(gridk, TC_THREADS, [&] { tc_dkv_kernel<D, false>(gk.data(), gv.data(), NULL, NULL, lse.data(), Di.data(), g); });
  } else {
    emu_run(gridk, TC_THREADS, [&] { tc_dkv_kernel<D, true>(NULL, NULL, pk.data(), pv.data(), lse.data(), Di.data(), g); });
    emu_smem.clear();
    int64_t SD = (int64_t)p.S * D, n4 = (int64_t)p.B * p.Hkv * SD / 4;
    /* two blocks of 64 threads: the grid-stride loop takes several turns */
    emu_run(dim3(2, 1, 1), 64, [&] { tc_group_sum_kernel(gk.data(), pk.data(), n4, g.rep, SD); });
    emu_run(dim3(2, 1, 1), 64, [&] { tc_group_sum_kernel(gv.data(), pv.data(), n4, g.rep, SD); });
  }
  emu_smem.clear();
  snprintf(ctx, sizeof ctx, "tensor cores D %d, %s", D, p.name);
  compare_all(p, d, tol, out, gq, gk, gv);
}

int main() {
  /* name, B, Hq, Hkv, T, S, D, Dv, causal, [B,T,H,D], mask, NaN in q, NaN in k */
  prob odd = {"odd head dims 40 / 24, 4 heads on 2, causal", 2, 4, 2, 70, 70, 40, 24, true, false, false, -1, -1};
  /* S - T = 17: the last row of the first block (t 15) sees key 32, the first of a tile */
  prob cache = {"keys past the queries (T 50, S 67), D 128, [B,T,H,D] views", 1, 2, 1, 50, 67, 128, 128, true, true,
                false, -1, -1};
  prob masked = {"a mask [B,1,T,S] with a row of no key, not causal", 2, 2, 2, 33, 47, 16, 16, false, false, true, -1, -1};
  prob few = {"more queries than keys (T 40, S 20): rows with no key", 1, 2, 1, 40, 20, 8, 8, true, false, false, -1, -1};
  run_at<float>(odd, 1e-5);
  run_at<bf16>(odd, 2e-2);
  run_at<bf16>(cache, 2e-2);
  run_at<float>(masked, 1e-5);
  run_at<float>(few, 1e-5);

  prob gqa = {"4 heads on 2 (partials, group sum), T = S = 130, causal, [B,T,H,D] views", 1, 4, 2, 130, 130, 64, 64,
              true, true, false, -1, -1};
  /* S - T = 65: the first block's last row (t 63) sees key 128, the first of a tile */
  prob tcache = {"keys past the queries (T 70, S 135), 2 heads on 2", 2, 2, 2, 70, 135, 128, 128, true, false, false,
                 -1, -1};
  prob full = {"not causal, 3 heads on 1, T 65, S 64", 1, 3, 1, 65, 64, 64, 64, false, false, false, -1, -1};
  prob tfew = {"more queries than keys (T 100, S 40), causal", 1, 1, 1, 100, 40, 128, 128, true, false, false, -1, -1};
  /* not causal with S off the 64-key tiles: only the key-range mask ends the last tile */
  prob tedge = {"not causal, S 70 (a partial key tile)", 1, 2, 1, 16, 70, 64, 64, false, false, false, -1, -1};
  run_tc<64>(gqa, 2e-2);
  run_tc<128>(tcache, 2e-2);
  run_tc<64>(full, 2e-2);
  run_tc<128>(tfew, 2e-2);
  run_tc<64>(tedge, 2e-2);

  /* NaN: in q at (b 1, h 1, t 37, e 5) and in k at (b 0, kv head 0, s 10, e 3), dense layout */
  prob nq = odd;
  nq.name = "NaN in a query and in a key";
  nq.nan_q = (int)((((size_t)1 * 4 + 1) * 70 + 37) * 40 + 5);
  nq.nan_k = (int)((((size_t)0 * 2 + 0) * 70 + 10) * 40 + 3);
  run_at<float>(nq, 1e-5);
  run_at<bf16>(nq, 2e-2);
  /* both NaNs in kv head 0 (b 1 head 1, b 0 key 70): kv head 1's gradients stay exact */
  prob tq = {"NaN in a query and in a key, 4 heads on 2, T = S = 100", 2, 4, 2, 100, 100, 64, 64, true, false, false,
             (int)((((size_t)1 * 4 + 1) * 100 + 37) * 64 + 5), (int)((((size_t)0 * 2 + 0) * 100 + 70) * 64 + 3)};
  run_tc<64>(tq, 2e-2);
  return check_finish();
}
