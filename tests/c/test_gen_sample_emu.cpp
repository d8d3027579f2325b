/* test_gen_sample_emu.cpp - the decode sampler split over blocks (kernels/gen_sample.cuh,
 * k_sample_split) run on the CPU through tests/c/cuda_emu.h, against a naive double-precision
 * sampler: the first maximum for greedy; otherwise the inverse CDF in index order of
 * softmax(logits / T) at u = g_draw(key, step), the draw k_sample and generate.c use. Needs no
 * GPU (built when the CUDA toolkit is found).
 *
 * A drawn id passes when the target u * total lies in its cumulative interval up to 1e-9 of the
 * total (the kernel's terms are float exponentials summed in double in another order; an error
 * shared by a whole segment, as from summing a segment in float, shows at 1e-7); its log-prob
 * within 1e-4 of logit / T - lse. The farthest miss is printed. Covered: 1 to 32 segments per row (segments of a few
 * ids, of uneven length, and empty), vocabularies not a multiple of 4, rows not 16-byte aligned
 * (the element path), ties for the maximum, ids of zero probability (-inf), temperatures below
 * and above 1, greedy, many draws per row, a heavy-tailed vocabulary of 30,000 in 17 segments;
 * the row state advanced, the tickets reset; the
 * logits written by the predecessor kernel only at the dependency wait (garbage before it); and
 * rows that cannot be sampled (NaN, +inf, only -inf: GEN_BAD_*).
 */
#include "cuda_emu.h"
#include "check.h"

#include "kernels/gen_sample.cuh"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <vector>

static uint64_t rs = 0x243F6A8885A308D3ull;
static double urand() { return emu_urand(&rs); }

/* heavy: logits of sd 3 with a few ids far above, most of the mass on them and a long tail (as a
 * language model's) */
struct scase { int V, ldl, rows, S; float temp; int greedy; int draws; bool heavy; };

static double worst_miss = 0; /* the farthest a drawn id's interval was from the target (of the total) */

static void run(const scase &c) {
  int V = c.V, R = c.rows;
  std::vector<float> L((size_t)R * c.ldl), G((size_t)R * c.ldl, NAN);
  for (int r = 0; r < R; r++)
    for (int i = 0; i < V; i++) {
      double x = urand();
      float v = (float)(4 * x);
      if (c.heavy) v = (float)(3 * (urand() + urand() + urand())) + (i % 1009 == 3 ? 14.0f : 0.0f);
      if (i % 97 == 5) v = -INFINITY;                 /* ids that can never be drawn */
      if (i % 389 == 17) v = 4.5f + (float)(r % 2);   /* ties for the maximum (first one wins) */
      L[(size_t)r * c.ldl + i] = v;
    }
  std::vector<unsigned long long> key(R);
  std::vector<int> step(R), tok(R, -1), pos(R), cnt(R, 0);
  for (int r = 0; r < R; r++) { key[r] = 0x9E3779B97F4A7C15ull * (r + 1); step[r] = 3 * r; pos[r] = 100 + r; }
  std::vector<gen_out> out(R);
  std::vector<smp_part> part((size_t)R * SMP_MAXS);
  smp_args a;
  memset(&a, 0, sizeof a);
  a.logits = G.data(); a.ldl = c.ldl; a.V = V; a.S = c.S; a.temp = c.temp; a.greedy = c.greedy;
  a.key = key.data(); a.step = step.data(); a.tok = tok.data(); a.pos = pos.data(); a.update = 1;
  a.out = out.data(); a.part = part.data(); a.cnt = cnt.data();
  /* the logits land at the wait and go again after each block */
  emu_wait_hook = [&] { G = L; };
  emu_block_end_hook = [&] { for (auto &v : G) v = NAN; };
  char what[160];
  snprintf(what, sizeof what, "V %d ldl %d rows %d S %d T %g%s", V, c.ldl, R, c.S, c.temp, c.greedy ? " greedy" : "");
  int bad = 0;
  for (int d = 0; d < c.draws; d++) {
    std::vector<int> step0 = step, pos0 = pos;
    emu_run(dim3(c.S, R, 1), SMP_T, [=] { k_sample_split(a); });
    for (int r = 0; r < R; r++) {
      const float *lg = &L[(size_t)r * c.ldl];
      double T = c.greedy ? 1.0 : c.temp, mx = -INFINITY;
      int first = 0;
      for (int i = 0; i < V; i++)
        if (lg[i] > lg[first]) first = i;
      for (int i = 0; i < V; i++) mx = fmax(mx, lg[i] / T);
      double se = 0;
      for (int i = 0; i < V; i++) se += exp(lg[i] / T - mx);
      double lse = mx + log(se);
      int k = out[r].tok;
      bool ok = k >= 0 && k < V && tok[r] == k && pos[r] == pos0[r] + 1 && step[r] == step0[r] + 1 && cnt[r] == 0;
      if (ok && c.greedy) ok = k == first;
      if (ok && !c.greedy) {
        double u = g_draw(key[r], (uint64_t)step0[r]), cum = 0, total = 0;
        for (int i = 0; i < V; i++) total += exp(lg[i] / T - lse);
        for (int i = 0; i < k; i++) cum += exp(lg[i] / T - lse);
        double p = exp(lg[k] / T - lse), t = u * total, tol = 1e-9 * total;
        ok = p > 0 && t >= cum - tol && t <= cum + p + tol;
        double miss = fmax(0.0, fmax(cum - t, t - (cum + p))) / total;
        if (miss > worst_miss) worst_miss = miss;
        if (!ok && bad < 3)
          printf("  %s: row %d draw %d: id %d covers [%.9g, %.9g), target %.9g\n", what, r, d, k, cum / total,
                 (cum + p) / total, t / total);
      }
      if (ok) ok = fabs(out[r].lp - (lg[k] / T - lse)) <= 1e-4;
      if (!ok && bad++ < 3)
        printf("  %s: row %d draw %d: id %d (first max %d) lp %g want %g, tok %d pos %d step %d cnt %d\n", what, r, d,
               k, first, out[r].lp, k >= 0 && k < V ? lg[k] / T - lse : 0.0, tok[r], pos[r], step[r], cnt[r]);
    }
  }
  emu_wait_hook = nullptr;
  emu_block_end_hook = nullptr;
  CHECK(bad == 0, "%s: %d wrong draws", what, bad);
}

/* Rows that cannot be sampled: a NaN, a +inf (in the last segment), only -inf, a NaN among -inf,
 * beside an ordinary row and a row of negative logits; the bad rows get GEN_BAD_* and token 0
 * next, every row its state advanced and its ticket reset, the ordinary rows a token in range.
 * At a temperature so small that the largest logit / T is no finite float (tiny: 1e-40, not
 * greedy) the two ordinary rows get GEN_BAD_OVERFLOW (the NaN and -inf rows keep theirs). */
static void run_bad(int V, int ldl, int S, int greedy, bool tiny) {
  const int R = 6;
  std::vector<float> L((size_t)R * ldl);
  for (int r = 0; r < R; r++)
    for (int i = 0; i < V; i++)
      L[(size_t)r * ldl + i] = r == 3 || r == 4 ? -INFINITY : r == 5 ? (float)(-1 - 4 * urand()) : (float)(4 * urand());
  L[(size_t)1 * ldl + V / 3] = NAN;
  L[(size_t)2 * ldl + V - 1] = INFINITY;
  L[(size_t)4 * ldl + V / 2] = NAN;
  int ov = tiny && !greedy ? GEN_BAD_OVERFLOW : 0;
  const int want[R] = {ov, GEN_BAD_NONFINITE, GEN_BAD_NONFINITE, GEN_BAD_ALL_NEG_INF, GEN_BAD_NONFINITE, ov};
  std::vector<unsigned long long> key(R, 12345);
  std::vector<int> step(R, 7), tok(R, -5), pos(R, 40), cnt(R, 0);
  std::vector<gen_out> out(R);
  std::vector<smp_part> part((size_t)R * SMP_MAXS);
  smp_args a;
  memset(&a, 0, sizeof a);
  a.logits = L.data(); a.ldl = ldl; a.V = V; a.S = S; a.temp = tiny ? 1e-40f : 1.0f; a.greedy = greedy;
  a.key = key.data(); a.step = step.data(); a.tok = tok.data(); a.pos = pos.data(); a.update = 1;
  a.out = out.data(); a.part = part.data(); a.cnt = cnt.data();
  emu_run(dim3(S, R, 1), SMP_T, [=] { k_sample_split(a); });
  for (int r = 0; r < R; r++) {
    bool ok = pos[r] == 41 && step[r] == 8 && cnt[r] == 0;
    if (want[r] < 0) ok = ok && out[r].tok == want[r] && tok[r] == 0 && out[r].lp != out[r].lp;
    else ok = ok && out[r].tok >= 0 && out[r].tok < V && tok[r] == out[r].tok;
    CHECK(ok, "bad logits, V %d S %d%s%s, row %d: tok %d (want %d) next %d pos %d step %d cnt %d", V, S,
          greedy ? " greedy" : "", tiny ? " T 1e-40" : "", r, out[r].tok, want[r], tok[r], pos[r], step[r], cnt[r]);
  }
}

int main() {
  /* the segments: multiples of 4 long, the last shorter or empty */
  {
    int lo, hi;
    smp_segment(1001, 8, 7, &lo, &hi);
    CHECK(lo == 896 && hi == 1001, "last of 8 segments of 1001 (128 ids each): [%d, %d)", lo, hi);
    smp_segment(10, 4, 3, &lo, &hi);
    CHECK(lo == 10 && hi == 10, "an empty segment: [%d, %d)", lo, hi);
    smp_segment(151936, 16, 1, &lo, &hi);
    CHECK(lo == 9496 && hi == 18992, "1.5B vocabulary in 16: [%d, %d)", lo, hi);
  }
  const scase cases[] = {
    {1000, 1000, 3, 1, 1.0f, 0, 12, false},
    {1000, 1000, 3, 8, 1.0f, 0, 12, false},
    {1001, 1003, 2, 5, 0.6f, 0, 12, false},  /* rows 1.. not 16-byte aligned */
    {4099, 4100, 2, 32, 1.7f, 0, 8, false},
    {10, 12, 2, 4, 1.0f, 0, 20, false},      /* segments of 4, one empty */
    {3000, 3000, 2, 3, 1.0f, 1, 3, false},
    {3001, 3001, 2, 32, 0.5f, 1, 3, false},
    {20000, 20000, 1, 16, 1.0f, 0, 4, false},
    {20000, 20000, 2, 2, 0.8f, 0, 4, false},  /* 40 ids per thread in the last walk */
    {30000, 30000, 2, 17, 1.0f, 0, 8, true},
    {1000, 1000, 2, 4, 1e-37f, 0, 12, false}, /* logit / T near FLT_MAX: one-hot, or uniform over ties */
  };
  for (const scase &c : cases) run(c);
  run_bad(1000, 1000, 1, 0, false);
  run_bad(1001, 1003, 5, 0, false);
  run_bad(4099, 4100, 32, 1, false);
  run_bad(1000, 1000, 1, 0, true);
  run_bad(1001, 1003, 5, 0, true);
  run_bad(4099, 4100, 32, 1, true); /* greedy: T is 1, nothing overflows */
  printf("worst miss %.3g of the total\n", worst_miss);
  return check_finish();
}
