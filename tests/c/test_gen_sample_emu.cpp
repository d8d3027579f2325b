/* test_gen_sample_emu.cpp - the GPU samplers (kernels/gen_sample.cuh) run on the CPU through
 * tests/c/cuda_emu.h, against a naive double-precision sampler: the first maximum for greedy;
 * otherwise the inverse CDF in index order, at u = g_draw(key, step) (the draw generate.c uses),
 * over softmax(logits / T) computed as generate.c computes it, z = (logit - max) / T, restricted for
 * top-k / top-p to the candidates the CPU keeps (by logit, ties by id, the first top_k, cut where
 * the running sum first reaches top_p of their mass). Needs no GPU (built when the CUDA toolkit is found).
 *
 * A drawn id passes when the target u * total lies in its cumulative interval up to 1e-9 of the
 * total (the kernels' terms are float exponentials summed in another order; an error shared by a
 * whole segment of k_sample_split, as from its scale in float, shows at 1e-7); its log-prob
 * within 1e-4 of the reference's. The farthest miss is printed.
 *
 * k_sample_split (the decode step's untruncated sampler): 1 to 32 segments per row (segments of a
 * few ids, of uneven length, and empty), vocabularies not a multiple of 4, rows not 16-byte
 * aligned (the element path), ties for the maximum, ids of zero probability (-inf), temperatures
 * below and above 1, greedy, many draws per row, a heavy-tailed vocabulary of 30,000 in 17
 * segments; the row state advanced, the tickets reset; the logits written by the predecessor
 * kernel only at the dependency wait (garbage before it).
 * k_sample (one block per row, top-k and top-p): those rows under top-k, top-p and both, rows
 * picked through lrow, blocks of 256 and 1024 threads.
 * k_score (score_temperature: the drawn id's log-prob at a second temperature) after the first
 * two draws of each, at 1 and at the case's temperature, against generate.c's score_token in double; NaN
 * for the rows the sampler refused.
 * Both: temperatures at the ends of a float's range (the smallest positive float, where the draw
 * is one-hot or uniform over tied maxima, and FLT_MAX, where it is near uniform), logits near
 * +-FLT_MAX; rows that cannot be sampled (NaN, +inf, only -inf: GEN_BAD_*).
 */
#include "cuda_emu.h"
#include "check.h"

#include "kernels/gen_sample.cuh"

#include <algorithm>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <vector>

static uint64_t rs = 0x243F6A8885A308D3ull;
static double urand() { return emu_urand(&rs); }

/* heavy: logits of sd 3 with a few ids far above, most of the mass on them and a long tail (as a
 * language model's); huge: logits of both signs near FLT_MAX. S: segments (k_sample_split), or 0
 * for k_sample with top_k / top_p over blocks of nthr threads. */
struct scase {
  int V, ldl, rows, S;
  float temp;
  int greedy, draws;
  bool heavy, huge = false;
  int top_k = 0;
  double top_p = 1.0;
  int nthr = 256;
  int ties = 0; /* > 0: that many equal logits spread over the row, every other id -inf */
};

static double worst_miss = 0; /* the farthest a drawn id's interval was from the target (of the total) */

/* Whether sampler output (k, lp) is right for row lg of V logits at draw u, printing the first
 * few misses under what. */
static bool check_draw(const float *lg, int V, const scase &c, double u, int k, float lp, const char *what, int r,
                       int d, int *bad) {
  double T = c.greedy ? 1.0 : c.temp;
  int first = 0;
  for (int i = 0; i < V; i++)
    if (lg[i] > lg[first]) first = i;
  std::vector<double> z(V), p(V);
  double se = 0;
  for (int i = 0; i < V; i++) se += exp(z[i] = ((double)lg[i] - (double)lg[first]) / T);
  double lse = log(se);
  for (int i = 0; i < V; i++) p[i] = exp(z[i] - lse);
  bool ok = k >= 0 && k < V;
  if (ok && c.greedy) ok = k == first;
  if (ok && !c.greedy) {
    /* the kept set: by logit, ties by id; the first top_k, cut where the sum reaches top_p */
    std::vector<char> kept(V, 1);
    if ((c.top_k > 0 && c.top_k < V) || c.top_p < 1.0) {
      std::vector<int> ord(V);
      for (int i = 0; i < V; i++) ord[i] = i;
      std::sort(ord.begin(), ord.end(), [&](int x, int y) { return lg[x] > lg[y] || (lg[x] == lg[y] && x < y); });
      int n = c.top_k > 0 && c.top_k < V ? c.top_k : V;
      if (c.top_p < 1.0) { /* among the top_k ids, renormalised (Hugging Face's order); reached
                              * within 1e-12, as the CPU's nucleus (TOP_P_SLACK) */
        double mass = 0, cum = 0;
        for (int j = 0; j < n; j++) mass += p[ord[j]];
        if (n == V) mass = 1.0;
        for (int j = 0; j < n; j++)
          if ((cum += p[ord[j]]) >= c.top_p * mass - 1e-12) { n = j + 1; break; }
      }
      std::fill(kept.begin(), kept.end(), 0);
      for (int j = 0; j < n; j++) kept[ord[j]] = 1;
    }
    double cum = 0, total = 0;
    for (int i = 0; i < V; i++)
      if (kept[i]) total += p[i];
    for (int i = 0; i < k; i++)
      if (kept[i]) cum += p[i];
    double t = u * total, tol = 1e-9 * total;
    ok = kept[k] && p[k] > 0 && t >= cum - tol && t <= cum + p[k] + tol;
    double miss = fmax(0.0, fmax(cum - t, t - (cum + p[k]))) / total;
    if (miss > worst_miss) worst_miss = miss;
    if (!ok && *bad < 3)
      printf("  %s: row %d draw %d: id %d (kept %d) covers [%.9g, %.9g), target %.9g\n", what, r, d, k, kept[k],
             cum / total, (cum + p[k]) / total, t / total);
  }
  if (ok) ok = fabs(lp - (z[k] - lse)) <= 1e-4;
  if (!ok && (*bad)++ < 3)
    printf("  %s: row %d draw %d: id %d (first max %d) lp %g want %g\n", what, r, d, k, first, lp,
           k >= 0 && k < V ? z[k] - lse : 0.0);
  return ok;
}

static double worst_score = 0; /* the farthest k_score was from the reference */

/* k_score's score of token k of row lg at temperature Ts against generate.c's score_token in
 * double: (logit[k] - max) / Ts - log(sum exp((logit - max) / Ts)), within 1e-5 (and 1e-7
 * relative, for the scores near -1e45 of a tiny Ts) */
static bool check_score(const float *lg, int V, int k, float Ts, double got, const char *what, int r, int d, int *bad) {
  double m = -INFINITY;
  for (int i = 0; i < V; i++) m = lg[i] > m ? lg[i] : m;
  double se = 0;
  for (int i = 0; i < V; i++) se += exp(((double)lg[i] - m) / Ts);
  double want = ((double)lg[k] - m) / Ts - log(se);
  double err = fabs(got - want);
  bool ok = err <= 1e-5 + 1e-7 * fabs(want);
  if (ok && err > worst_score) worst_score = err;
  if (!ok && (*bad)++ < 3)
    printf("  %s: row %d draw %d: k_score of id %d at Ts %g: %.10g, want %.10g\n", what, r, d, k, Ts, got, want);
  return ok;
}

static float case_logit(const scase &c, int r, int i) {
  if (c.ties) return i % (c.V / c.ties) == 7 && i / (c.V / c.ties) < c.ties ? 1.5f : -INFINITY;
  float v = (float)(4 * urand());
  if (c.heavy) v = (float)(3 * (urand() + urand() + urand())) + (i % 1009 == 3 ? 14.0f : 0.0f);
  if (c.huge) v = (float)(3.0e38 * urand());
  if (i % 97 == 5) v = -INFINITY;                                     /* ids that can never be drawn */
  if (i % 389 == 17) v = c.huge ? 3.3e38f : 4.5f + (float)(r % 2);    /* ties for the maximum (first one wins) */
  return v;
}

static void run(const scase &c) {
  int V = c.V, R = c.rows;
  std::vector<float> L((size_t)R * c.ldl), G((size_t)R * c.ldl, NAN);
  for (int r = 0; r < R; r++)
    for (int i = 0; i < V; i++) L[(size_t)r * c.ldl + i] = case_logit(c, r, i);
  std::vector<unsigned long long> key(R);
  std::vector<int> step(R), tok(R, -1), pos(R), cnt(R, 0), lrow(R);
  for (int r = 0; r < R; r++) {
    key[r] = 0x9E3779B97F4A7C15ull * (r + 1); step[r] = 3 * r; pos[r] = 100 + r;
    lrow[r] = R - 1 - r; /* k_sample: row r samples logits row R - 1 - r */
  }
  std::vector<gen_out> out(R);
  std::vector<double> score(R);
  std::vector<smp_part> part((size_t)R * SMP_MAXS);
  smp_args a;
  memset(&a, 0, sizeof a);
  a.logits = G.data(); a.ldl = c.ldl; a.V = V; a.S = c.S; a.temp = c.temp; a.greedy = c.greedy;
  a.key = key.data(); a.step = step.data(); a.tok = tok.data(); a.pos = pos.data(); a.update = 1;
  a.out = out.data(); a.part = part.data(); a.cnt = cnt.data();
  /* the logits land at the wait and go again after each block */
  emu_wait_hook = [&] { G = L; };
  emu_block_end_hook = [&] { for (auto &v : G) v = NAN; };
  char what[200];
  snprintf(what, sizeof what, "%s V %d ldl %d rows %d S %d T %g%s%s top_k %d top_p %g", c.S ? "split" : "k_sample",
           V, c.ldl, R, c.S, c.temp, c.greedy ? " greedy" : "", c.huge ? " huge logits" : "", c.top_k, c.top_p);
  int bad = 0;
  for (int d = 0; d < c.draws; d++) {
    std::vector<int> step0 = step, pos0 = pos;
    if (c.S)
      emu_run(dim3(c.S, R, 1), SMP_T, [=] { k_sample_split(a); });
    else
      emu_run(dim3(R, 1, 1), c.nthr, [&] {
        k_sample(G.data(), c.ldl, lrow.data(), V, c.temp, c.greedy, c.top_k, c.top_p, key.data(), step.data(),
                 tok.data(), pos.data(), out.data(), 1);
      });
    for (int r = 0; r < R; r++) {
      const float *lg = &L[(size_t)(c.S ? r : lrow[r]) * c.ldl];
      int k = out[r].tok;
      bool ok = tok[r] == k && pos[r] == pos0[r] + 1 && step[r] == step0[r] + 1 && cnt[r] == 0;
      if (!ok && bad++ < 3)
        printf("  %s: row %d draw %d: tok %d next %d pos %d step %d cnt %d\n", what, r, d, k, tok[r], pos[r],
               step[r], cnt[r]);
      if (ok) check_draw(lg, V, c, g_draw(key[r], (uint64_t)step0[r]), k, out[r].lp, what, r, d, &bad);
    }
    /* then, after the first two draws, k_score (score_temperature) of the drawn ids, at the
     * case's temperature and at 1, its logits too landing at the wait (1024 threads where
     * k_sample had them) */
    if (d >= 2) continue;
    float Ts = d % 2 ? 1.0f : c.temp;
    for (auto &v : score) v = -12345;
    emu_run(dim3(R, 1, 1), c.nthr, [&] {
      k_score(G.data(), c.ldl, c.S ? NULL : lrow.data(), V, Ts, out.data(), score.data());
    });
    for (int r = 0; r < R; r++)
      check_score(&L[(size_t)(c.S ? r : lrow[r]) * c.ldl], V, out[r].tok, Ts, score[r], what, r, d, &bad);
  }
  emu_wait_hook = nullptr;
  emu_block_end_hook = nullptr;
  CHECK(bad == 0, "%s: %d wrong draws", what, bad);
}

/* Rows that cannot be sampled: a NaN, a +inf (in the last segment), only -inf, a NaN among -inf,
 * beside an ordinary row and a row of negative logits; the bad rows get GEN_BAD_* and token 0
 * next, every row its state advanced and its ticket reset, the ordinary rows a token in range,
 * at temperature temp. S segments, or 0 for k_sample (top-k 5 when topk). */
static void run_bad(int V, int ldl, int S, int greedy, float temp, bool topk) {
  const int R = 6;
  std::vector<float> L((size_t)R * ldl);
  for (int r = 0; r < R; r++)
    for (int i = 0; i < V; i++)
      L[(size_t)r * ldl + i] = r == 3 || r == 4 ? -INFINITY : r == 5 ? (float)(-1 - 4 * urand()) : (float)(4 * urand());
  L[(size_t)1 * ldl + V / 3] = NAN;
  L[(size_t)2 * ldl + V - 1] = INFINITY;
  L[(size_t)4 * ldl + V / 2] = NAN;
  const int want[R] = {0, GEN_BAD_NONFINITE, GEN_BAD_NONFINITE, GEN_BAD_ALL_NEG_INF, GEN_BAD_NONFINITE, 0};
  std::vector<unsigned long long> key(R, 12345);
  std::vector<int> step(R, 7), tok(R, -5), pos(R, 40), cnt(R, 0);
  std::vector<gen_out> out(R);
  std::vector<smp_part> part((size_t)R * SMP_MAXS);
  smp_args a;
  memset(&a, 0, sizeof a);
  a.logits = L.data(); a.ldl = ldl; a.V = V; a.S = S; a.temp = temp; a.greedy = greedy;
  a.key = key.data(); a.step = step.data(); a.tok = tok.data(); a.pos = pos.data(); a.update = 1;
  a.out = out.data(); a.part = part.data(); a.cnt = cnt.data();
  if (S)
    emu_run(dim3(S, R, 1), SMP_T, [=] { k_sample_split(a); });
  else
    emu_run(dim3(R, 1, 1), 256, [&] {
      k_sample(L.data(), ldl, NULL, V, temp, greedy, topk ? 5 : 0, 1.0f, key.data(), step.data(), tok.data(),
               pos.data(), out.data(), 1);
    });
  /* k_score: NaN for the refused rows, a log-prob for the others */
  std::vector<double> score(R, -12345);
  emu_run(dim3(R, 1, 1), 256, [&] { k_score(L.data(), ldl, NULL, V, 1.0f, out.data(), score.data()); });
  for (int r = 0; r < R; r++) {
    bool ok = pos[r] == 41 && step[r] == 8 && cnt[r] == 0;
    ok = ok && (want[r] < 0 ? score[r] != score[r] : score[r] <= 0);
    if (want[r] < 0) ok = ok && out[r].tok == want[r] && tok[r] == 0 && out[r].lp != out[r].lp;
    else ok = ok && out[r].tok >= 0 && out[r].tok < V && tok[r] == out[r].tok && out[r].lp <= 0;
    CHECK(ok, "bad logits, %s V %d S %d T %g%s%s, row %d: tok %d (want %d) lp %g next %d pos %d step %d cnt %d",
          S ? "split" : "k_sample", V, S, temp, greedy ? " greedy" : "", topk ? " top-k 5" : "", r, out[r].tok,
          want[r], out[r].lp, tok[r], pos[r], step[r], cnt[r]);
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
    {1000, 1000, 2, 4, 1e-37f, 0, 12, false}, /* tiny T: one-hot, or uniform over ties */
    {1000, 1000, 2, 3, 1.4e-45f, 0, 12, false}, /* the smallest positive float */
    {1000, 1000, 2, 5, FLT_MAX, 0, 8, false},   /* near uniform */
    {2000, 2000, 2, 7, 1.0f, 0, 8, false, true},  /* logits near +-FLT_MAX: one-hot or ties */
    {2000, 2001, 2, 7, 1e38f, 0, 8, false, true}, /* z = (logit - max) / T over [-6.6, 0] */
    {2000, 2000, 2, 4, FLT_MAX, 0, 8, false, true},
    {2000, 2000, 2, 4, 1.0f, 1, 2, false, true},
    /* k_sample: untruncated, top-k (fewer than the tied maxima, more), top-p, both */
    {1000, 1000, 3, 0, 1.0f, 0, 6, false},
    {1001, 1003, 2, 0, 0.8f, 0, 6, false, false, 5},
    {1001, 1003, 2, 0, 1.0f, 0, 6, false, false, 2},
    {30000, 30000, 2, 0, 1.0f, 0, 4, true, false, 0, 0.9f},
    {4099, 4100, 2, 0, 1.3f, 0, 6, false, false, 50, 0.5f},
    {3001, 3001, 2, 0, 0.5f, 1, 2, false},
    {20000, 20000, 1, 0, 1.0f, 0, 3, true, false, 0, 0.95f, 1024},
    {1000, 1000, 2, 0, 1.0f, 0, 2, false, false, 40, 1.0f, 1024},
    /* k_sample at the ends of a float's range (at FLT_MAX the probabilities tie in double:
     * truncation keeps the largest logits) */
    {1000, 1000, 2, 0, 1.4e-45f, 0, 6, false, false, 3},
    {1000, 1000, 2, 0, 1e-37f, 0, 6, false, false, 0, 0.9f},
    {1000, 1000, 2, 0, FLT_MAX, 0, 6, false},
    {1000, 1000, 2, 0, FLT_MAX, 0, 6, false, false, 7, 0.5f},
    {2000, 2000, 2, 0, 1e38f, 0, 6, false, true, 20, 0.7f},
    {2000, 2000, 2, 0, 1.0f, 0, 6, false, true},
    /* tied candidates at top_p's cut (exactly, 10 ties of 0.1 reach 0.5 after 5): a float
     * probability of each, 0.099999994, kept one too many (nineteenth session) */
    {1000, 1000, 4, 0, 1.0f, 0, 6, false, false, 0, 0.1, 256, 10},
    {1000, 1000, 4, 0, 0.7f, 0, 6, false, false, 0, 0.5, 256, 10},
    {1000, 1000, 4, 0, 1.0f, 0, 6, false, false, 0, 0.8, 256, 10},
    {1003, 1003, 4, 0, 1.0f, 0, 6, false, false, 0, 0.2, 256, 5},
    {1000, 1000, 2, 0, 1.0f, 0, 6, false, false, 0, 2.0 / 3.0, 256, 3},
    /* top-k cut inside 10 tied ids, with top-p: the top_k mass counts 4 of the ties, not the bin */
    {1000, 1000, 4, 0, 1.0f, 0, 6, false, false, 4, 0.5, 256, 10},
  };
  for (const scase &c : cases) run(c);
  /* bad rows: split and k_sample, at T 1, the smallest positive float and FLT_MAX */
  const float temps[] = {1.0f, 1.4e-45f, FLT_MAX};
  for (float t : temps) {
    run_bad(1000, 1000, 1, 0, t, false);
    run_bad(1001, 1003, 5, 0, t, false);
    run_bad(1000, 1000, 0, 0, t, false);
    run_bad(1001, 1003, 0, 0, t, true);
  }
  run_bad(4099, 4100, 32, 1, 1.0f, false);
  run_bad(4099, 4100, 0, 1, 1.0f, false);
  printf("worst miss %.3g of the total; k_score within %.3g\n", worst_miss, worst_score);
  return check_finish();
}
