/* test_nn_ops.c - specific checks of the transformer ops beyond the table-driven rows
 * (optest_nn.inc): attention with grouped-query heads, masks and a causal offset at sizes that
 * take every threading path, fully masked rows, head_logprob and head_entropy against
 * token_logprob / entropy of matmul's logits with N not a multiple of the chunk, matmul layouts
 * at BLAS sizes, error messages with shapes, and rmsnorm's weight gradient summed over several
 * threads' partial rows.
 *
 * Prints "N passed, N failed" and exits 1 on any failure.
 */
#include "autograd.h"
#include "error.h"
#include "nn_ops.h"
#include "optest.h"

#include "check.h"
#include <omp.h>

static cf_rng rng;

static cf_tensor *randn(int nd, const int64_t *shape, cf_dtype dt) {
  return cf_tensor_randn(nd, shape, dt, &rng);
}

/* Largest |a - b| / (1 + |b|) over all elements (any dtypes); INFINITY on shape mismatch/NaN. */
static double rel_err(const cf_tensor *a, const cf_tensor *b) {
  if (!a || !b || !cf_same_shape(a, b)) return INFINITY;
  double worst = 0;
  int64_t n = cf_tensor_numel(a);
  for (int64_t i = 0; i < n; i++) {
    double x = cf_tensor_get_flat(a, i), y = cf_tensor_get_flat(b, i);
    double e = fabs(x - y) / (1 + fabs(y));
    if (!(e <= worst)) worst = isnan(e) ? INFINITY : e;
  }
  return worst;
}

static bool has_substr(const char *msg, const char *want) { return msg && strstr(msg, want) != NULL; }

/* ---------------------------------------------------------------- naive attention */

/* q [B,Hq,T,D], k [B,Hkv,S,D], v [B,Hkv,S,Dv], mask broadcastable or NULL -> f64 [B,Hq,T,Dv] */
static cf_tensor *naive_attention(cf_tensor *q, cf_tensor *k, cf_tensor *v, cf_tensor *mask,
                                  double scale, bool causal) {
  int64_t B = q->shape[0], Hq = q->shape[1], T = q->shape[2], D = q->shape[3];
  int64_t Hkv = k->shape[1], S = k->shape[2], Dv = v->shape[3];
  if (isnan(scale)) scale = 1.0 / sqrt((double)D);
  int64_t os[4] = {B, Hq, T, Dv};
  cf_tensor *o = cf_tensor_zeros(4, os, CF_DTYPE_F64);
  double *sc = malloc(sizeof(double) * (size_t)S);
  for (int64_t b = 0; b < B; b++)
    for (int64_t h = 0; h < Hq; h++)
      for (int64_t t = 0; t < T; t++) {
        int64_t g = h / (Hq / Hkv);
        double mx = -INFINITY;
        for (int64_t s = 0; s < S; s++) {
          int64_t full[4] = {b, h, t, s};
          bool ok = (!causal || s <= t + (S - T)) && (!mask || opt_get_bcast(mask, 4, full) != 0);
          double dot = 0;
          for (int64_t d = 0; d < D; d++) {
            int64_t qi[4] = {b, h, t, d}, ki[4] = {b, g, s, d};
            dot += cf_tensor_get(q, qi) * cf_tensor_get(k, ki);
          }
          sc[s] = ok ? dot * scale : -INFINITY;
          if (sc[s] > mx) mx = sc[s];
        }
        if (mx == -INFINITY) continue;
        double z = 0;
        for (int64_t s = 0; s < S; s++) z += exp(sc[s] - mx);
        for (int64_t e = 0; e < Dv; e++) {
          double acc = 0;
          for (int64_t s = 0; s < S; s++) {
            int64_t vi[4] = {b, g, s, e};
            acc += exp(sc[s] - mx) / z * cf_tensor_get(v, vi);
          }
          int64_t oi[4] = {b, h, t, e};
          cf_tensor_set(o, oi, acc);
        }
      }
  free(sc);
  return o;
}

/* A 0/1 mask of dtype dt, mostly ones. */
static cf_tensor *random_mask(int nd, const int64_t *shape, cf_dtype dt) {
  cf_tensor *m = cf_tensor_zeros(nd, shape, dt);
  for (int64_t i = 0; i < cf_tensor_numel(m); i++) opt_set_flat(m, i, cf_rng_uniform(&rng) < 0.8);
  return m;
}

static double dot_all(const cf_tensor *a, const cf_tensor *b) {
  double s = 0;
  for (int64_t i = 0; i < cf_tensor_numel(a); i++) s += cf_tensor_get_flat(a, i) * cf_tensor_get_flat(b, i);
  return s;
}

static void test_attention_forward(int64_t B, int64_t Hq, int64_t Hkv, int64_t T, int64_t S, int64_t D,
                                   int64_t Dv, bool with_mask, bool causal, double scale) {
  int64_t qs[4] = {B, Hq, T, D}, ks[4] = {B, Hkv, S, D}, vs[4] = {B, Hkv, S, Dv}, ms[4] = {B, 1, T, S};
  cf_tensor *q = randn(4, qs, CF_DTYPE_F64), *k = randn(4, ks, CF_DTYPE_F64), *v = randn(4, vs, CF_DTYPE_F64);
  cf_tensor *m = with_mask ? random_mask(4, ms, CF_DTYPE_I32) : NULL;
  cf_tensor *ref = naive_attention(q, k, v, m, scale, causal);
  cf_tensor *o64 = cf_attention(q, k, v, m, scale, causal);
  CHECK(rel_err(o64, ref) < 1e-12, "attention f64 [%lld,%lld/%lld,%lld,%lld,%lld,%lld]: err %g (%s)",
        (long long)B, (long long)Hq, (long long)Hkv, (long long)T, (long long)S, (long long)D,
        (long long)Dv, rel_err(o64, ref), o64 ? "" : cf_error_message());
  cf_tensor *q32 = cf_tensor_to_dtype(q, CF_DTYPE_F32), *k32 = cf_tensor_to_dtype(k, CF_DTYPE_F32);
  cf_tensor *v32 = cf_tensor_to_dtype(v, CF_DTYPE_F32);
  cf_tensor *o32 = cf_attention(q32, k32, v32, m, scale, causal);
  CHECK(rel_err(o32, ref) < 1e-4, "attention f32 T=%lld S=%lld: err %g", (long long)T, (long long)S,
        rel_err(o32, ref));
  cf_tensor *objs[] = {q, k, v, m, ref, o64, q32, k32, v32, o32};
  for (size_t i = 0; i < sizeof objs / sizeof *objs; i++) cf_tensor_release(objs[i]);
}

/* Gradients of sum(attention(q,k,v) * R) against central differences at a few elements. */
static void test_attention_backward(int64_t B, int64_t Hq, int64_t Hkv, int64_t T, int64_t S, int64_t D,
                                    int64_t Dv) {
  int64_t qs[4] = {B, Hq, T, D}, ks[4] = {B, Hkv, S, D}, vs[4] = {B, Hkv, S, Dv}, ms[2] = {T, S};
  cf_tensor *in[3] = {randn(4, qs, CF_DTYPE_F64), randn(4, ks, CF_DTYPE_F64), randn(4, vs, CF_DTYPE_F64)};
  cf_tensor *m = random_mask(2, ms, CF_DTYPE_F32);
  for (int j = 0; j < 3; j++) in[j]->requires_grad = true;
  cf_tensor *o = cf_attention(in[0], in[1], in[2], m, NAN, true);
  cf_tensor *R = randn(o->ndim, o->shape, CF_DTYPE_F64);
  CHECK(cf_backward(o, R, false) == 0, "attention backward: %s", cf_error_message());
  bool old = cf_set_grad_enabled(false);
  for (int j = 0; j < 3; j++) {
    double worst = 0;
    for (int probe = 0; probe < 6; probe++) {
      int64_t i = opt_int(&rng, 0, cf_tensor_numel(in[j]) - 1);
      double *p = (double *)cf_tensor_data(in[j]) + i, x = *p;
      *p = x + 1e-6;
      cf_tensor *a = cf_attention(in[0], in[1], in[2], m, NAN, true);
      *p = x - 1e-6;
      cf_tensor *b = cf_attention(in[0], in[1], in[2], m, NAN, true);
      *p = x;
      double fd = (dot_all(a, R) - dot_all(b, R)) / 2e-6, an = cf_tensor_get_flat(in[j]->grad, i);
      double e = fabs(fd - an) / (1e-5 + 1e-3 * fabs(fd));
      if (e > worst) worst = e;
      cf_tensor_release(a);
      cf_tensor_release(b);
    }
    CHECK(worst <= 1, "attention grad of input %d (T=%lld S=%lld D=%lld): err %g", j, (long long)T,
          (long long)S, (long long)D, worst);
  }
  cf_set_grad_enabled(old);
  for (int j = 0; j < 3; j++) cf_tensor_release(in[j]);
  cf_tensor_release(m);
  cf_tensor_release(o);
  cf_tensor_release(R);
}

static void test_attention_masked_rows(void) {
  /* causal with T > S: rows t < T - S see no key; plus one row fully masked by the mask */
  int64_t qs[4] = {1, 2, 4, 3}, ks[4] = {1, 1, 2, 3}, ms[4] = {1, 2, 4, 2};
  cf_tensor *q = randn(4, qs, CF_DTYPE_F64), *k = randn(4, ks, CF_DTYPE_F64), *v = randn(4, ks, CF_DTYPE_F64);
  cf_tensor *m = cf_tensor_full(4, ms, CF_DTYPE_I64, 1);
  int64_t z0[4] = {0, 1, 3, 0}, z1[4] = {0, 1, 3, 1};
  cf_tensor_set(m, z0, 0);
  cf_tensor_set(m, z1, 0);
  q->requires_grad = k->requires_grad = v->requires_grad = true;
  cf_tensor *o = cf_attention(q, k, v, m, NAN, true);
  CHECK(o != NULL, "attention with empty rows: %s", cf_error_message());
  if (!o) return;
  bool zeros = true, finite = true;
  for (int64_t h = 0; h < 2; h++)
    for (int64_t t = 0; t < 4; t++)
      for (int64_t e = 0; e < 3; e++) {
        int64_t i[4] = {0, h, t, e};
        double x = cf_tensor_get(o, i);
        if (!isfinite(x)) finite = false;
        bool empty = t < 2 || (h == 1 && t == 3);
        if (empty && x != 0) zeros = false;
      }
  CHECK(finite, "attention: NaN/inf in the output with fully masked rows");
  CHECK(zeros, "attention: a row with no allowed key must be 0");
  cf_tensor *R = cf_tensor_full(o->ndim, o->shape, CF_DTYPE_F64, 1.0);
  CHECK(cf_backward(o, R, false) == 0, "attention backward with empty rows: %s", cf_error_message());
  bool gzero = true, gfinite = true;
  for (int64_t i = 0; i < cf_tensor_numel(q->grad); i++) {
    int64_t idx[4];
    opt_unravel(i, 4, q->grad->shape, idx);
    double x = cf_tensor_get_flat(q->grad, i);
    if (!isfinite(x)) gfinite = false;
    if ((idx[2] < 2 || (idx[1] == 1 && idx[2] == 3)) && x != 0) gzero = false;
  }
  for (int64_t i = 0; i < cf_tensor_numel(k->grad); i++)
    if (!isfinite(cf_tensor_get_flat(k->grad, i)) || !isfinite(cf_tensor_get_flat(v->grad, i))) gfinite = false;
  CHECK(gfinite && gzero, "attention: empty rows must give finite, zero query gradients");
  cf_tensor *objs[] = {q, k, v, m, o, R};
  for (size_t i = 0; i < sizeof objs / sizeof *objs; i++) cf_tensor_release(objs[i]);
}

/* ---------------------------------------------------------------- head_logprob */

/* head_logprob (entropy false) or head_entropy (true) against token_logprob / entropy of the
 * logits h @ w^T: values and both gradients, over N rows that are not a multiple of the chunk
 * (each chunk reads its own rows of the output's gradient) */
static void test_head_vs_token(cf_dtype dt, double tol, bool entropy) {
  int64_t N = 150, D = 16, V = 1000;  /* 150 = 2 * 64 + 22 */
  int64_t hs[2] = {N, D}, ws[2] = {V, D};
  const char *what = entropy ? "head_entropy" : "head_logprob";
  cf_tensor *h = randn(2, hs, dt), *w = randn(2, ws, dt);
  cf_tensor *t = cf_tensor_zeros(1, &N, CF_DTYPE_I64);
  for (int64_t i = 0; i < N; i++) opt_set_flat(t, i, i % 17 == 3 ? -1 : (double)opt_int(&rng, 0, V - 1));
  h->requires_grad = w->requires_grad = true;
  double temp = 0.7;
  cf_args ea = cf_args_none();
  ea.f[0] = temp;
  ea.nf = 1;
  cf_tensor *hw[2] = {h, w};
  cf_tensor *a = entropy ? cf_op(CF_OP_head_entropy, hw, 2, &ea) : cf_head_logprob(h, w, t, temp);
  cf_tensor *R = randn(1, &N, dt);
  CHECK(a && cf_backward(a, R, false) == 0, "%s: %s", what, cf_error_message());
  cf_tensor *gh = h->grad, *gw = w->grad;
  h->grad = w->grad = NULL;
  cf_args ta = cf_args_none();
  ta.i[1] = 1;
  ta.ni = 2;
  cf_tensor *wt = cf_op(CF_OP_transpose, &w, 1, &ta);  /* recorded, so w gets its gradient */
  cf_tensor *logits = cf_matmul(h, wt);
  cf_tensor *b = entropy ? cf_op(CF_OP_entropy, &logits, 1, &ea) : cf_token_logprob(logits, t, temp);
  CHECK(b && cf_backward(b, R, false) == 0, "%s(matmul): %s", entropy ? "entropy" : "token_logprob",
        cf_error_message());
  CHECK(rel_err(a, b) < tol, "%s vs the op on matmul's logits %s: err %g", what, cf_dtype_name(dt), rel_err(a, b));
  CHECK(rel_err(gh, h->grad) < tol, "%s dh %s: err %g", what, cf_dtype_name(dt), rel_err(gh, h->grad));
  CHECK(rel_err(gw, w->grad) < tol, "%s dw %s: err %g", what, cf_dtype_name(dt), rel_err(gw, w->grad));
  bool ignored_zero = true;
  for (int64_t i = 0; i < N; i++)
    if (!entropy && i % 17 == 3 && cf_tensor_get_flat(a, i) != 0) ignored_zero = false;
  CHECK(ignored_zero, "head_logprob: targets < 0 must give 0");
  cf_tensor *objs[] = {h, w, t, a, R, gh, gw, wt, logits, b};
  for (size_t i = 0; i < sizeof objs / sizeof *objs; i++) cf_tensor_release(objs[i]);
}

/* ---------------------------------------------------------------- matmul at BLAS sizes */

static cf_tensor *naive_matmul(const cf_tensor *A, const cf_tensor *B) {
  int nd = A->ndim > B->ndim ? A->ndim : B->ndim;
  int64_t shape[CF_MAX_DIMS], idx[CF_MAX_DIMS], ai[CF_MAX_DIMS], bi[CF_MAX_DIMS];
  for (int d = 0; d < nd - 2; d++) {
    int da = d - (nd - A->ndim), db = d - (nd - B->ndim);
    int64_t x = da >= 0 ? A->shape[da] : 1, y = db >= 0 ? B->shape[db] : 1;
    shape[d] = x > y ? x : y;
  }
  int64_t K = A->shape[A->ndim - 1];
  shape[nd - 2] = A->shape[A->ndim - 2];
  shape[nd - 1] = B->shape[B->ndim - 1];
  cf_tensor *o = cf_tensor_zeros(nd, shape, CF_DTYPE_F64);
  for (int64_t i = 0; i < cf_tensor_numel(o); i++) {
    opt_unravel(i, nd, shape, idx);
    for (int d = 0; d < A->ndim - 2; d++) ai[d] = A->shape[d] == 1 ? 0 : idx[d + nd - A->ndim];
    for (int d = 0; d < B->ndim - 2; d++) bi[d] = B->shape[d] == 1 ? 0 : idx[d + nd - B->ndim];
    double s = 0;
    ai[A->ndim - 2] = idx[nd - 2];
    bi[B->ndim - 1] = idx[nd - 1];
    for (int64_t j = 0; j < K; j++) {
      ai[A->ndim - 1] = j;
      bi[B->ndim - 2] = j;
      s += cf_tensor_get(A, ai) * cf_tensor_get(B, bi);
    }
    cf_tensor_set(o, idx, s);
  }
  return o;
}

static void check_matmul(const char *what, cf_tensor *A, cf_tensor *B) {
  cf_tensor *ref = naive_matmul(A, B), *o = cf_matmul(A, B);
  double tol = A->dtype == CF_DTYPE_F32 ? 1e-4 : 1e-12;
  CHECK(rel_err(o, ref) < tol, "matmul %s: err %g %s", what, rel_err(o, ref), o ? "" : cf_error_message());
  cf_tensor_release(ref);
  cf_tensor_release(o);
  cf_tensor_release(A);
  cf_tensor_release(B);
}

static void test_matmul_layouts(void) {
  int64_t a3[3] = {3, 37, 65}, b2[2] = {65, 29}, b3[3] = {3, 65, 29}, a4[4] = {2, 1, 5, 6}, b3b[3] = {3, 6, 7};
  int64_t big[2] = {200, 300}, bigt[2] = {100, 300};
  check_matmul("[3,37,65] @ [65,29] (rows folded)", randn(3, a3, CF_DTYPE_F32), randn(2, b2, CF_DTYPE_F32));
  check_matmul("[3,37,65] @ [3,65,29] (batched)", randn(3, a3, CF_DTYPE_F32), randn(3, b3, CF_DTYPE_F32));
  check_matmul("[2,1,5,6] @ [3,6,7] (broadcast)", randn(4, a4, CF_DTYPE_F64), randn(3, b3b, CF_DTYPE_F64));
  cf_tensor *bt = randn(2, bigt, CF_DTYPE_F32);
  check_matmul("[200,300] @ [100,300]^T (trans view)", randn(2, big, CF_DTYPE_F32), cf_view_transpose(bt, 0, 1));
  cf_tensor *at = randn(2, big, CF_DTYPE_F64);
  int64_t sq[2] = {200, 50};
  check_matmul("[300,200]^T-view @ [200,50]", cf_view_transpose(at, 0, 1), randn(2, sq, CF_DTYPE_F64));
  /* a batched view whose batch dim is not outermost in memory: [37,3,65] permuted to [3,37,65] */
  int64_t p3[3] = {37, 3, 65};
  cf_tensor *pa = randn(3, p3, CF_DTYPE_F32);
  check_matmul("permuted batch @ [65,29]", cf_view_transpose(pa, 0, 1), randn(2, b2, CF_DTYPE_F32));
  cf_tensor_release(bt);
  cf_tensor_release(at);
  cf_tensor_release(pa);
}

/* ---------------------------------------------------------------- errors */

static void test_errors(void) {
  int64_t s34[2] = {3, 4}, s52[2] = {5, 2}, s4[1] = {4}, s53[2] = {5, 3}, s2[1] = {2};
  cf_tensor *a = randn(2, s34, CF_DTYPE_F32), *b = randn(2, s52, CF_DTYPE_F32), *v = randn(1, s4, CF_DTYPE_F32);
  cf_tensor *r = cf_matmul(a, b);
  CHECK(!r && has_substr(cf_error_message(), "matmul: inner dims differ: [3 x 4] @ [5 x 2]"),
        "matmul mismatch message: %s", cf_error_message());
  r = cf_matmul(v, a);
  CHECK(!r && has_substr(cf_error_message(), "at least 2-d") && has_substr(cf_error_message(), "[4] @ [3 x 4]"),
        "matmul 1-d message: %s", cf_error_message());

  cf_tensor *w = randn(2, s53, CF_DTYPE_F32), *ids = cf_tensor_zeros(1, s2, CF_DTYPE_I64);
  opt_set_flat(ids, 1, 7);
  r = cf_embedding(w, ids);
  CHECK(!r && has_substr(cf_error_message(), "id 7 out of range for 5"), "embedding message: %s", cf_error_message());
  opt_set_flat(ids, 1, -1);
  r = cf_embedding(w, ids);
  CHECK(!r && has_substr(cf_error_message(), "id -1"), "embedding negative id message: %s", cf_error_message());

  int64_t l[2] = {2, 5};
  cf_tensor *logits = randn(2, l, CF_DTYPE_F32), *t = cf_tensor_zeros(1, s2, CF_DTYPE_I32);
  opt_set_flat(t, 0, 5);
  r = cf_cross_entropy(logits, t);
  CHECK(!r && has_substr(cf_error_message(), "target 5 out of range for 5"), "cross_entropy message: %s",
        cf_error_message());
  r = cf_token_logprob(logits, t, NAN);
  CHECK(!r && has_substr(cf_error_message(), "target 5"), "token_logprob message: %s", cf_error_message());

  int64_t qs[4] = {1, 3, 2, 4}, ks[4] = {1, 2, 2, 4};
  cf_tensor *q = randn(4, qs, CF_DTYPE_F32), *k = randn(4, ks, CF_DTYPE_F32);
  r = cf_attention(q, k, k, NULL, NAN, true);
  CHECK(!r && has_substr(cf_error_message(), "with Hq a multiple of Hkv: q [1 x 3 x 2 x 4], k [1 x 2 x 2 x 4], "
                                            "v [1 x 2 x 2 x 4]"),
        "attention GQA message: %s", cf_error_message());

  int64_t x5[2] = {2, 5};
  cf_tensor *x = randn(2, x5, CF_DTYPE_F32);
  r = cf_rmsnorm(x, v, 1e-6);
  CHECK(!r && has_substr(cf_error_message(), "x [2 x 5], weight [4]"), "rmsnorm message: %s", cf_error_message());
  r = cf_rope(x, ids, 10000, NULL);
  CHECK(!r && has_substr(cf_error_message(), "rope: the last dim must be even, got x [2 x 5]"), "rope odd D message: %s",
        cf_error_message());
  {
    int64_t s4[2] = {3, 4};
    cf_tensor *x4 = randn(2, s4, CF_DTYPE_F32);
    double part[4] = {8, NAN, NAN, NAN}, bad[4] = {8, 4, 1, 64};
    r = cf_rope(x4, ids, 10000, part);
    CHECK(!r && has_substr(cf_error_message(), "all four numbers"), "rope partial scaling: %s", cf_error_message());
    r = cf_rope(x4, ids, 10000, bad);
    CHECK(!r && has_substr(cf_error_message(), "high_freq_factor above it"), "rope high < low: %s", cf_error_message());
    cf_tensor_release(x4);
  }

  cf_tensor *objs[] = {a, b, v, w, ids, logits, t, q, k, x};
  for (size_t i = 0; i < sizeof objs / sizeof *objs; i++) cf_tensor_release(objs[i]);
}

/* ---------------------------------------------------------------- small semantics */

static void test_cross_entropy_all_ignored(void) {
  int64_t l[2] = {3, 4}, n = 3;
  cf_tensor *z = randn(2, l, CF_DTYPE_F64), *t = cf_tensor_full(1, &n, CF_DTYPE_I64, -1);
  z->requires_grad = true;
  cf_tensor *r = cf_cross_entropy(z, t);
  CHECK(r && cf_tensor_get_flat(r, 0) == 0, "cross_entropy with every target ignored is 0");
  CHECK(r && cf_backward(r, NULL, false) == 0 && z->grad, "cross_entropy backward: %s", cf_error_message());
  double s = 0;
  for (int64_t i = 0; z->grad && i < 12; i++) s += fabs(cf_tensor_get_flat(z->grad, i));
  CHECK(s == 0, "cross_entropy: ignored rows get no gradient");
  cf_tensor_release(z);
  cf_tensor_release(t);
  cf_tensor_release(r);
}

/* rope with [B, T] positions equals rope of each batch item with its own [T] positions */
static void test_rope_batched_positions(void) {
  int64_t xs[4] = {2, 3, 5, 8}, ps[2] = {2, 5};
  cf_tensor *x = randn(4, xs, CF_DTYPE_F64), *p = cf_tensor_zeros(2, ps, CF_DTYPE_I64);
  for (int64_t i = 0; i < 10; i++) opt_set_flat(p, i, (double)opt_int(&rng, 0, 4000));
  cf_tensor *all = cf_rope(x, p, 1e6, NULL);
  double worst = 0;
  for (int64_t b = 0; b < 2; b++) {
    cf_tensor *xb = cf_view_select(x, 0, b), *pb = cf_view_select(p, 0, b), *ob = cf_view_select(all, 0, b);
    cf_tensor *r = cf_rope(xb, pb, 1e6, NULL);
    double e = rel_err(ob, r);
    if (e > worst) worst = e;
    cf_tensor_release(xb);
    cf_tensor_release(pb);
    cf_tensor_release(ob);
    cf_tensor_release(r);
  }
  CHECK(all && worst < 1e-14, "rope [B, T] positions vs per-batch [T]: err %g", worst);
  cf_tensor_release(x);
  cf_tensor_release(p);
  cf_tensor_release(all);
}

/* (nineteenth session, mutation testing: a sum of thread 0's part alone passed the suite) */
/* rmsnorm's weight gradient at a size that runs on several threads (numel > 32768): the per-thread
 * partial rows must all be summed. A transformer's norms are always this large (D 896 x tokens). */
static void test_rmsnorm_gw_threads(void) {
  int threads = omp_get_max_threads();
  omp_set_num_threads(4);
  cf_rng g;
  cf_rng_init(&g, 11);
  int64_t R = 128, D = 512, xs[2] = {R, D}, ws[1] = {D};
  cf_tensor *x = cf_tensor_randn(2, xs, CF_DTYPE_F64, &g), *w = cf_tensor_randn(1, ws, CF_DTYPE_F64, &g);
  cf_tensor *gr = cf_tensor_randn(2, xs, CF_DTYPE_F64, &g);
  w->requires_grad = true;
  double eps = 1e-6;
  cf_tensor *y = cf_rmsnorm(x, w, eps);
  cf_tensor *p = y ? cf_op2(CF_OP_mul, y, gr) : NULL;
  cf_tensor *l = p ? cf_op_dim(CF_OP_sum, p, CF_DIM_ALL, false) : NULL;
  int rc = l ? cf_backward(l, NULL, false) : -1;
  CHECK(rc == 0 && w->grad, "rmsnorm backward ran: %s", cf_error_message());
  if (rc == 0 && w->grad) {
    const double *xp = cf_tensor_data(x), *gp = cf_tensor_data(gr);
    double *want = calloc((size_t)D, sizeof(double)), worst = 0;
    for (int64_t r = 0; r < R; r++) {
      double ss = 0;
      for (int64_t j = 0; j < D; j++) ss += xp[r * D + j] * xp[r * D + j];
      double rs = 1.0 / sqrt(ss / (double)D + eps);
      for (int64_t j = 0; j < D; j++) want[j] += gp[r * D + j] * xp[r * D + j] * rs;
    }
    for (int64_t j = 0; j < D; j++) {
      double e = fabs(cf_tensor_get_flat(w->grad, j) - want[j]) / (1 + fabs(want[j]));
      if (!(e <= worst)) worst = e;
    }
    CHECK(worst < 1e-9, "rmsnorm weight gradient on several threads: worst relative error %g", worst);
    free(want);
  }
  cf_tensor_release(l); cf_tensor_release(p); cf_tensor_release(y);
  cf_tensor_release(x); cf_tensor_release(w); cf_tensor_release(gr);
  omp_set_num_threads(threads);
}

int main(void) {
  cf_rng_init(&rng, 1234);
  test_attention_forward(2, 6, 2, 5, 9, 8, 4, true, true, NAN);     /* GQA, mask, S > T */
  test_attention_forward(2, 4, 4, 7, 7, 5, 6, false, false, 0.3);   /* plain, not causal */
  test_attention_forward(1, 4, 2, 130, 200, 64, 32, true, true, NAN); /* heads on threads */
  test_attention_forward(1, 1, 1, 150, 170, 64, 32, true, true, NAN); /* one head: rows on threads */
  test_attention_backward(2, 4, 2, 5, 9, 8, 4);                     /* heads on threads */
  test_attention_backward(1, 2, 1, 130, 140, 16, 8);                /* one kv group: rows on threads */
  test_attention_masked_rows();
  test_head_vs_token(CF_DTYPE_F64, 1e-10, false);
  test_head_vs_token(CF_DTYPE_F32, 1e-4, false);
  test_head_vs_token(CF_DTYPE_F64, 1e-10, true);
  test_head_vs_token(CF_DTYPE_F32, 1e-4, true);
  test_matmul_layouts();
  test_errors();
  test_cross_entropy_all_ignored();
  test_rope_batched_positions();
  test_rmsnorm_gw_threads();
  return check_finish();
}
