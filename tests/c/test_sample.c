/* test_sample.c - cf_sample_token (core/nn/generate.c) against a plain reference: softmax in
 * double as generate.h specifies it (z = (logit - max) / T, p = exp(z) / sum, log-prob
 * z - log(sum)); when truncating, the whole vocabulary sorted by logit (descending, ties by id: the
 * probability order, its ties broken as exact arithmetic would) with qsort, top-k then top-p cut
 * where the running sum first reaches top_p of the top-k ids' mass (within 1e-12); the pick of u times the kept mass over the kept ids
 * in id order (as the GPU draws), past the end the last with probability.
 * The sampler sorts only a prefix that holds the kept tokens; its token and log-prob must equal
 * the reference's exactly, for flat, peaked, tied and underflowing distributions. Then the edges:
 * temperatures so small that logit / T overflows or swallows log(sum) (the softmax is then
 * one-hot, or uniform over tied maxima), top_p at a boundary the sum's rounding misses, and
 * logits holding NaN, +inf or only -inf, which are refused with a message. The draw's boundaries
 * (u on a cell edge belongs to the next id), its frequencies over a grid of u (exact, no
 * statistics), and top_p where the sorted prefix's running sum falls short (the full sort's fallback).
 * Prints "N passed, N failed"; exits 1 on any failure.
 */
#include "error.h"
#include "nn/generate.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

typedef struct { int64_t id; double p; float logit; } cand;

static int by_logit(const void *a, const void *b) {
  const cand *x = a, *y = b;
  if (x->logit != y->logit) return x->logit > y->logit ? -1 : 1;
  return x->id < y->id ? -1 : x->id > y->id;
}

static int by_id(const void *a, const void *b) {
  const cand *x = a, *y = b;
  return x->id < y->id ? -1 : x->id > y->id;
}

static int64_t reference(const float *logits, int64_t V, double T, int top_k, double top_p, double u,
                         double *logprob) {
  int64_t best = 0;
  for (int64_t i = 1; i < V; i++) if (logits[i] > logits[best]) best = i;
  double mx = logits[best], sum = 0;
  for (int64_t i = 0; i < V; i++) sum += exp((logits[i] - mx) / T);
  cand *c = malloc((size_t)V * sizeof *c);
  for (int64_t i = 0; i < V; i++) { c[i].id = i; c[i].p = exp((logits[i] - mx) / T) / sum; c[i].logit = logits[i]; }
  if (top_k > 0 || top_p < 1.0) qsort(c, (size_t)V, sizeof *c, by_logit);   /* else: in id order */
  int64_t keep = top_k > 0 && top_k < V ? top_k : V, n = keep;
  if (top_p < 1.0) { /* among the top_k, renormalised (Hugging Face's order: top-k, then top-p) */
    double mass = 0, cum = 0;
    for (int64_t i = 0; i < keep; i++) mass += c[i].p;
    if (keep == V) mass = 1.0;
    for (int64_t i = 0; i < keep; i++) { cum += c[i].p; if (cum >= top_p * mass - 1e-12) { n = i + 1; break; } }
  }
  qsort(c, (size_t)n, sizeof *c, by_id);
  double total = 0;
  for (int64_t i = 0; i < n; i++) total += c[i].p;
  double target = u * total, cum = 0;
  int64_t pick = -1;
  for (int64_t i = 0; i < n; i++) {
    if (c[i].p > 0) pick = c[i].id;
    cum += c[i].p;
    if (c[i].p > 0 && target < cum) break;
  }
  free(c);
  *logprob = (logits[pick] - mx) / T - log(sum);
  return pick;
}

static uint64_t rng_state = 12345;
static double uniform(void) {
  rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
  return (double)(rng_state >> 11) * (1.0 / 9007199254740992.0);
}

/* kinds of logits: 0 gaussian-ish, 1 one spike, 2 all equal, 3 few values (many ties),
 * 4 half -inf (probability 0), 5 a long tail: a wide spread that needs many buckets */
static void fill(float *lg, int64_t V, int kind) {
  for (int64_t i = 0; i < V; i++) {
    double g = uniform() + uniform() + uniform() - 1.5;
    switch (kind) {
      case 0: lg[i] = (float)(3 * g); break;
      case 1: lg[i] = (float)g; break;
      case 2: lg[i] = 0.5f; break;
      case 3: lg[i] = (float)(int)(4 * uniform()); break;
      case 4: lg[i] = i % 2 ? -INFINITY : (float)(2 * g); break;
      default: lg[i] = (float)(-0.05 * (double)i); break;
    }
  }
  if (kind == 1) lg[V / 3] = 25.0f;
}

/* cf_sample_token(logits, T, top_k, top_p, u) picks want with log-prob lp */
static void expect_pick(const char *what, const float *lg, int64_t V, double T, int top_k, double top_p,
                        double u, int64_t want, double lp_want) {
  int64_t idx[16];                 /* workspace of V each: every case has V <= 16 */
  double p[16], lp = NAN;
  if (V > 16) { CHECK(0, "%s: V = %lld is past expect_pick's workspace", what, (long long)V); return; }
  int64_t got = cf_sample_token(lg, V, T, top_k, top_p, u, &lp, idx, p);
  CHECK(got == want && lp == lp_want, "%s (T=%g top_k=%d top_p=%g u=%g): token %lld (logprob %.17g), want %lld (%.17g)%s%s",
        what, T, top_k, top_p, u, (long long)got, lp, (long long)want, lp_want, got < 0 ? ": " : "",
        got < 0 ? cf_error_message() : "");
}

static void test_tiny_temperatures(void) {
  const float one[3] = {1, 2, -INFINITY}, tie[4] = {2, -INFINITY, 2, 0};
  const float big[3] = {1e10f, 0, -1e10f}, low[2] = {-1e10f, -2e10f};
  const double temps[] = {1e-310, 4.9e-324};
  const int ks[] = {0, 2};
  const double ps[] = {1.0, 0.9}, us[] = {0.0, 0.4, 0.999999};
  for (int ti = 0; ti < 2; ti++)
    for (int ki = 0; ki < 2; ki++)
      for (int pi = 0; pi < 2; pi++)
        for (int ui = 0; ui < 3; ui++) {
          double T = temps[ti], u = us[ui];
          expect_pick("one-hot at a subnormal T", one, 3, T, ks[ki], ps[pi], u, 1, 0.0);
          expect_pick("a tie at a subnormal T", tie, 4, T, ks[ki], ps[pi], u, u < 0.5 ? 0 : 2, -log(2.0));
        }
  expect_pick("1e10 / 1e-300 overflows", big, 3, 1e-300, 0, 1.0, 0.7, 0, 0.0);
  expect_pick("-1e10 / 1e-300 overflows", low, 2, 1e-300, 0, 1.0, 0.7, 0, 0.0);
  /* (seventeenth session) 0.13 / 1e-16 is finite but swallowed log(3) when the logits were not
   * shifted: every tied maximum had log-prob 0 and top_p = 0.5 kept id 1 alone */
  const float tie3[5] = {-1, 0.13f, 0.13f, -2, 0.13f};
  for (int ui = 0; ui < 3; ui++) {
    double u = us[ui];
    expect_pick("three tied maxima at T = 1e-16", tie3, 5, 1e-16, 0, 1.0, u, u < 1 / 3.0 ? 1 : u < 2 / 3.0 ? 2 : 4, -log(3.0));
    expect_pick("top_p 0.5 of three tied maxima at T = 1e-16: two", tie3, 5, 1e-16, 0, 0.5, u, u < 0.5 ? 1 : 2, -log(3.0));
  }
}

/* ten tied logits: the running sum of 0.1 is 0.7999999999999999 after eight, which reaches
 * top_p = 0.8 (it would have taken a ninth); 0.1 and 0.3 keep one and three */
static void test_top_p_boundary(void) {
  float ten[10];
  for (int i = 0; i < 10; i++) ten[i] = 0.25f;
  const double ps[] = {0.1, 0.3, 0.5, 0.8};
  const int64_t kept[] = {1, 3, 5, 8};
  for (int k = 0; k < 4; k++)
    expect_pick("ten ties, the last kept at u near 1", ten, 10, 1.0, 0, ps[k], 0.999999, kept[k] - 1, -log(10.0));
}

/* top-k, then top-p among the top-k ids renormalised (Hugging Face's and vLLM's order): of
 * probabilities 0.5, 0.2, 0.2, 0.1, top_k = 2 keeps 0.5 and 0.2 (0.714 and 0.286 renormalised);
 * top_p = 0.6 then keeps the first alone, where a cut over the whole vocabulary (0.5 < 0.6) kept
 * both; top_p = 0.75 keeps both (0.714 < 0.75), and u = 0.99 draws the second */
static void test_top_k_then_top_p(void) {
  const float lg[4] = {logf(0.5f), logf(0.2f), logf(0.2f), logf(0.1f)};
  const double us[] = {0.0, 0.6, 0.99};
  for (int ui = 0; ui < 3; ui++) {
    double lp0, lp1;
    reference(lg, 4, 1.0, 2, 0.6, us[ui], &lp0);
    expect_pick("top_k 2 then top_p 0.6: the first alone", lg, 4, 1.0, 2, 0.6, us[ui], 0, lp0);
    reference(lg, 4, 1.0, 2, 0.75, us[ui], &lp1);
    expect_pick("top_k 2 then top_p 0.75: both", lg, 4, 1.0, 2, 0.75, us[ui], ui == 2 ? 1 : 0, lp1);
  }
}

/* (twenty-seventh session, mutation testing: "target <= cum" passed the suite) The inverse CDF
 * takes the first id whose running sum exceeds u times the kept mass: each id owns [before, after)
 * of [0, 1), so a u on a boundary belongs to the next id (floor(u * V) over V equal logits, as the
 * GPU sampler and test_model_edges' random streams assume). And over N evenly spaced u (the
 * midpoints of N equal cells) each id is drawn N p times to within one: the draw follows the
 * softmax exactly, no statistics needed. */
static void test_inverse_cdf(void) {
  const float four[4] = {0.5f, 0.5f, 0.5f, 0.5f};
  for (int k = 0; k < 4; k++) {
    expect_pick("four ties, u on a boundary", four, 4, 1.0, 0, 1.0, k / 4.0, k, -log(4.0));
    if (k) expect_pick("four ties, u just below a boundary", four, 4, 1.0, 0, 1.0, nextafter(k / 4.0, 0), k - 1, -log(4.0));
  }
  const float lg[5] = {logf(0.5f), logf(0.25f), -INFINITY, logf(0.125f), logf(0.125f)};
  const struct { double T; int top_k; double top_p; } cfg[] = {{1.0, 0, 1.0}, {2.0, 0, 1.0}, {1.0, 2, 1.0}, {1.0, 0, 0.7}};
  for (size_t c = 0; c < sizeof cfg / sizeof *cfg; c++) {
    enum { N = 4096 };
    int count[5] = {0};
    int64_t idx[5];
    double p[5], lp;
    for (int i = 0; i < N; i++) {
      int64_t t = cf_sample_token(lg, 5, cfg[c].T, cfg[c].top_k, cfg[c].top_p, (i + 0.5) / N, &lp, idx, p);
      if (t >= 0 && t < 5) count[t]++;
    }
    /* the kept probabilities: softmax(logits / T) over the kept ids, renormalised */
    double w[5], tot = 0;
    for (int i = 0; i < 5; i++) w[i] = i == 2 ? 0 : pow(lg[i] == lg[i] ? exp(lg[i]) : 0, 1 / cfg[c].T);
    if (cfg[c].top_k == 2 || cfg[c].top_p == 0.7) w[3] = w[4] = 0;    /* 0.5 + 0.25 reaches 0.7 */
    for (int i = 0; i < 5; i++) tot += w[i];
    for (int i = 0; i < 5; i++)
      CHECK(fabs(count[i] - N * w[i] / tot) <= 1, "case %zu (T=%g top_k=%d top_p=%g): id %d drawn %d times of %d, want %.2f",
            c, cfg[c].T, cfg[c].top_k, cfg[c].top_p, i, count[i], N, N * w[i] / tot);
  }
}

/* (twenty-seventh session, mutation testing: dropping the sampler's fallback, the sort of the
 * whole vocabulary when top_p's running sum falls short inside the sorted prefix, passed the
 * suite) The prefix is chosen by sums taken in another order than the running sum's; top_p set
 * between the two orders' sums of the likeliest ids (their probabilities within a factor 2 of the
 * largest: the sampler sums the largest, then the others in id order) makes the prefix stop there while the running sum, in probability order, needs one id
 * more (a less likely one, the largest id, so that u near 1 draws it). The pick is then the
 * reference's, which sorts everything. */
static void test_top_p_prefix_short(void) {
  enum { V = 12 };
  float lg[V];
  int found = 0;
  for (int trial = 0; trial < 2000 && !found; trial++) {
    for (int i = 0; i < V - 1; i++) lg[i] = (float)(0.6 * uniform());     /* p / pmax in (0.5, 1] */
    lg[V - 1] = -1.0f;                                                     /* below: another bucket */
    double mx = lg[0], sum = 0, p[V];
    for (int i = 1; i < V; i++) if (lg[i] > mx) mx = lg[i];
    for (int i = 0; i < V; i++) { p[i] = exp(lg[i] - mx); sum += p[i]; }
    for (int i = 0; i < V; i++) p[i] = p[i] / sum;
    /* the prefix's sum: the largest alone (within a factor 2^0), then the others (2^-1) in id order */
    int best = 0;
    for (int i = 1; i < V; i++) if (lg[i] > lg[best]) best = i;
    double others = 0, by_id, by_p = 0;
    for (int i = 0; i < V - 1; i++) if (i != best) others += p[i];
    by_id = p[best] + others;
    cand c[V];
    for (int i = 0; i < V; i++) { c[i].id = i; c[i].p = p[i]; c[i].logit = lg[i]; }
    qsort(c, V, sizeof *c, by_logit);
    for (int i = 0; i < V - 1; i++) by_p += c[i].p;
    if (!(by_p < by_id)) continue;
    /* top_p with top_p - 1e-12 in (by_p, by_id]: reached in id order, not in probability order */
    for (double tp = by_id + 1e-12, k = 0; k < 64 && !found; k++, tp = nextafter(tp, 0)) {
      double cut = tp * 1.0 - 1e-12;
      if (cut > by_p && cut <= by_id) {
        double lp_ref, lp;
        int64_t idx[V];
        double pp[V];
        int64_t want = reference(lg, V, 1.0, 0, tp, 0.9999999, &lp_ref);
        int64_t got = cf_sample_token(lg, V, 1.0, 0, tp, 0.9999999, &lp, idx, pp);
        CHECK(want == V - 1, "the case needs the last id (reference drew %lld)", (long long)want);
        CHECK(got == want && lp == lp_ref, "top_p %.17g between the sums: token %lld (%.17g), reference %lld (%.17g)",
              tp, (long long)got, lp, (long long)want, lp_ref);
        found = 1;
      }
    }
  }
  CHECK(found, "a case whose sums differ in the two orders was found");
}

/* logits with NaN or +inf, or only -inf, are refused (sampled and greedy) */
static void test_bad_logits(void) {
  const float nan1[3] = {0, NAN, 1}, nan0[3] = {NAN, 0, 1}, inf1[3] = {0, INFINITY, 1};
  const float ninf[2] = {-INFINITY, -INFINITY};
  const struct { const float *lg; int64_t V; const char *want; } cases[] = {
    {nan1, 3, "id 1 is nan"}, {nan0, 3, "id 0 is nan"}, {inf1, 3, "id 1 is inf"}, {ninf, 2, "every logit is -inf"}};
  for (size_t c = 0; c < sizeof cases / sizeof *cases; c++)
    for (int greedy = 0; greedy < 2; greedy++) {
      int64_t idx[8];
      double p[8], lp = 0;
      cf_error_clear();
      int64_t got = cf_sample_token(cases[c].lg, cases[c].V, greedy ? 0.0 : 1.0, 0, 1.0, 0.5, &lp, idx, p);
      const char *msg = cf_error_message();
      CHECK(got == -1 && strstr(msg, "non-finite logits") && strstr(msg, cases[c].want),
            "case %zu %s: token %lld, message %s (want -1 and \"%s\")", c, greedy ? "greedy" : "sampled",
            (long long)got, msg, cases[c].want);
    }
}

int main(void) {
  const int64_t sizes[] = {1, 2, 7, 1000, 40000};
  /* 1e30: distinct logits, probabilities equal in double (truncation keeps the largest logits) */
  const double temps[] = {0.3, 1.0, 2.5, 1e30};
  const size_t nt = sizeof temps / sizeof *temps;
  const int ks[] = {0, 1, 5, 64, 100000};
  const double ps[] = {1.0, 0.95, 0.5, 0.01, 0.999999};
  const double us[] = {0.0, 0.37, 0.999999};
  int mismatches = 0, cases = 0;
  for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++) {
    int64_t V = sizes[si];
    float *lg = malloc((size_t)V * sizeof *lg);
    int64_t *idx = malloc((size_t)V * sizeof *idx);
    double *p = malloc((size_t)V * sizeof *p);
    for (int kind = 0; kind < 6; kind++) {
      fill(lg, V, kind);
      if (kind == 4 && V >= 1) lg[0] = 1.0f;   /* at least one finite logit */
      for (size_t ti = 0; ti < nt; ti++)
        for (size_t ki = 0; ki < sizeof ks / sizeof *ks; ki++)
          for (size_t pi = 0; pi < sizeof ps / sizeof *ps; pi++)
            for (size_t ui = 0; ui < 3; ui++) {
              if (ks[ki] == 0 && ps[pi] == 1.0 && ui > 0) continue;
              double lp_ref, lp;
              int64_t want = reference(lg, V, temps[ti], ks[ki], ps[pi], us[ui], &lp_ref);
              int64_t got = cf_sample_token(lg, V, temps[ti], ks[ki], ps[pi], us[ui], &lp, idx, p);
              cases++;
              if (got != want || lp != lp_ref) {
                if (mismatches++ < 10)
                  printf("V=%lld kind=%d T=%g top_k=%d top_p=%g u=%g: token %lld (logprob %.17g), reference %lld (%.17g)\n",
                         (long long)V, kind, temps[ti], ks[ki], ps[pi], us[ui], (long long)got, lp,
                         (long long)want, lp_ref);
              }
            }
    }
    free(lg); free(idx); free(p);
  }
  CHECK(mismatches == 0, "%d of %d draws differ from the reference", mismatches, cases);
  CHECK(cases > 5000, "%d draws compared", cases);
  test_tiny_temperatures();
  test_top_p_boundary();
  test_top_k_then_top_p();
  test_bad_logits();
  test_inverse_cdf();
  test_top_p_prefix_short();
  return check_finish();
}
