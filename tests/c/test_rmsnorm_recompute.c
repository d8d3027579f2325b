/* test_rmsnorm_recompute.c - two checks mutation testing (nineteenth session) found missing:
 * rmsnorm's weight gradient summed over every thread's partial rows (a real model's norms always
 * run on several threads; the op tests' sizes ran on one), and the recomputed layer refusing
 * positions written in place since its forward (as the plain path does).
 */
#include "autograd.h"
#include "error.h"
#include "nn/qwen2.h"
#include "nn_ops.h"
#include "ops.h"
#include "rng.h"
#include "tensor.h"
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"


/* rmsnorm's weight gradient at a size that runs on several threads (numel > 32768): the per-thread
 * partial rows must all be summed. A transformer's norms are always this large (D 896 x tokens). */
static void test_rmsnorm_gw_threads(void) {
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
  omp_set_num_threads(1);
}

/* The tiny model of test_model.c. */
static cf_qwen2 *tiny_model(void) {
  cf_qwen2_config c;
  if (cf_qwen2_config_parse("{\"model_type\":\"qwen2\",\"hidden_size\":8,\"intermediate_size\":16,"
                            "\"num_hidden_layers\":1,\"num_attention_heads\":2,\"num_key_value_heads\":1,"
                            "\"vocab_size\":11}", "tiny", &c))
    return NULL;
  cf_qwen2 *m = cf_qwen2_new(&c);
  if (!m) return NULL;
  cf_rng g;
  cf_rng_init(&g, 5);
  for (int i = 0; i < m->nparams; i++) {
    cf_tensor *p = *m->slots[i];
    cf_tensor *r = cf_tensor_randn(p->ndim, p->shape, CF_DTYPE_F32, &g);
    cf_tensor *s = r ? cf_op_scalar(CF_OP_mul, r, 0.3) : NULL;
    if (!s || cf_qwen2_set_param(m, i, s)) { cf_tensor_release(r); cf_tensor_release(s); cf_qwen2_free(m); return NULL; }
    cf_tensor_release(r);
    cf_tensor_release(s);
  }
  return m;
}

/* cf_qwen2_hidden with caller-given positions (qwen2.h): with recomputation the backward runs the
 * layer again with them, so positions written in place after the forward must be refused, as a
 * weight written in place is (test_model.c test_recompute_version) and as the plain graph does. */
static void test_recompute_positions_version(void) {
  for (int recompute = 0; recompute < 2; recompute++) {
    cf_qwen2 *m = tiny_model();
    CHECK(m != NULL, "tiny model: %s", cf_error_message());
    if (!m) return;
    m->recompute = recompute;
    for (int i = 0; i < m->nparams; i++) (*m->slots[i])->requires_grad = true;
    int64_t shape[2] = {1, 4}, ps[1] = {4};
    cf_tensor *ids = cf_tensor_zeros(2, shape, CF_DTYPE_I64), *pos = cf_tensor_zeros(1, ps, CF_DTYPE_I64);
    for (int64_t t = 0; t < 4; t++) {
      ((int64_t *)cf_tensor_data(ids))[t] = t + 1;
      ((int64_t *)cf_tensor_data(pos))[t] = t;
    }
    cf_tensor *h = cf_qwen2_hidden(m, ids, pos);
    cf_tensor *loss = h ? cf_op_dim(CF_OP_sum, h, CF_DIM_ALL, false) : NULL;
    CHECK(loss != NULL, "forward with positions: %s", cf_error_message());
    if (loss) {
      cf_tensor_fill_(pos, 3.0);   /* after the forward, before its backward */
      int rc = cf_backward(loss, NULL, false);
      CHECK(rc != 0 && strstr(cf_error_message(), "modified in place"),
            "%s: positions written before the backward are refused: %s", recompute ? "recompute" : "plain",
            rc ? cf_error_message() : "(ran)");
    }
    cf_tensor_release(loss);
    cf_tensor_release(h);
    cf_tensor_release(pos);
    cf_tensor_release(ids);
    cf_qwen2_free(m);
  }
}

int main(void) {
  test_rmsnorm_gw_threads();
  test_recompute_positions_version();
  return check_finish();
}
