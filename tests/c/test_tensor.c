/* test_tensor.c - storages and tensors: views and their legality, contiguous/clone, dtype
 * conversions (bf16 round-to-nearest-even, NaN), arange, from_bytes, the Philox generator
 * (known-answer vector, determinism, normal moments), memory accounting, uninitialised (poisoned)
 * allocations and error messages.
 * Prints "N passed, N failed"; exits 1 on any failure.
 */
#include "error.h"
#include "rng.h"
#include "tensor.h"
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "check.h"

static bool has(const char *needle) { return strstr(cf_error_message(), needle) != NULL; }

/* [2 x 3 x 4] f32 holding 0..23 */
static cf_tensor *iota234(void) {
  int64_t s[3] = {2, 3, 4};
  cf_tensor *t = cf_tensor_zeros(3, s, CF_DTYPE_F32);
  for (int i = 0; i < 24; i++) ((float *)t->storage->data)[i] = (float)i;
  return t;
}

static double at3(const cf_tensor *t, int64_t a, int64_t b, int64_t c) {
  int64_t i[3] = {a, b, c};
  return cf_tensor_get(t, i);
}

static void test_views(void) {
  cf_tensor *t = iota234();
  /* narrow: shares storage, offset moves */
  cf_tensor *n = cf_view_narrow(t, 2, 1, 2);
  CHECK(n && n->storage == t->storage && n->shape[2] == 2 && at3(n, 1, 2, 1) == 1 * 12 + 2 * 4 + 2,
        "narrow");
  CHECK(n && !cf_tensor_is_contiguous(n), "a narrowed last dim is not contiguous");
  /* select */
  cf_tensor *s = cf_view_select(t, 1, 2);
  int64_t i2[2] = {1, 3};
  CHECK(s && s->ndim == 2 && s->shape[0] == 2 && s->shape[1] == 4 && cf_tensor_get(s, i2) == 12 + 8 + 3,
        "select");
  /* transpose / permute */
  cf_tensor *tr = cf_view_transpose(t, 0, 2);
  CHECK(tr && tr->shape[0] == 4 && tr->shape[2] == 2 && at3(tr, 3, 1, 1) == 12 + 4 + 3, "transpose");
  int perm[3] = {2, 0, 1};
  cf_tensor *p = cf_view_permute(t, perm);
  CHECK(p && p->shape[0] == 4 && p->shape[1] == 2 && p->shape[2] == 3 && at3(p, 3, 1, 2) == 12 + 8 + 3,
        "permute");
  int bad[3] = {0, 0, 1};
  cf_tensor *pb = cf_view_permute(t, bad);
  CHECK(!pb && has("permute: not a permutation of 3 dims"), "permute error: %s", cf_error_message());
  /* view: legal on contiguous, legal when a narrowed outer dim keeps inner dims contiguous,
   * illegal on a transpose */
  int64_t v2[2] = {6, 4}, vm1[2] = {-1, 12}, v1[1] = {24};
  cf_tensor *v = cf_view_reshape(t, 2, v2);
  CHECK(v && v->storage == t->storage && v->shape[0] == 6, "view [6 x 4]");
  cf_tensor *vm = cf_view_reshape(t, 2, vm1);
  CHECK(vm && vm->shape[0] == 2, "view with -1");
  cf_tensor *n0 = cf_view_narrow(t, 0, 1, 1);
  int64_t v12[1] = {12};
  cf_tensor *vn = n0 ? cf_view_reshape(n0, 1, v12) : NULL;
  CHECK(vn && vn->storage == t->storage && cf_tensor_get_flat(vn, 0) == 12, "view of a narrowed outer dim");
  cf_tensor *vt = cf_view_reshape(tr, 1, v1);
  CHECK(!vt && has("view: [4 x 3 x 2] with these strides cannot be viewed without a copy"),
        "view of a transpose refused: %s", cf_error_message());
  int64_t v5[1] = {5};
  cf_tensor *vb = cf_view_reshape(t, 1, v5);
  CHECK(!vb && has("cannot view [2 x 3 x 4] (24 elements)"), "view size error: %s", cf_error_message());
  /* expand: stride 0 */
  int64_t one[3] = {1, 3, 1};
  cf_tensor *o = cf_tensor_zeros(3, one, CF_DTYPE_F32);
  for (int i = 0; i < 3; i++) ((float *)o->storage->data)[i] = (float)(i + 1);
  int64_t ex[4] = {2, 5, 3, 4};
  cf_tensor *e = cf_view_expand(o, 4, ex);
  CHECK(e && e->stride[0] == 0 && e->stride[1] == 0 && e->stride[3] == 0 && cf_tensor_numel(e) == 120,
        "expand gives stride-0 dims");
  int64_t ei[4] = {1, 4, 2, 3};
  CHECK(e && cf_tensor_get(e, ei) == 3, "expanded element");
  int64_t exb[3] = {2, 4, 1};
  cf_tensor *eb = cf_view_expand(o, 3, exb);
  CHECK(!eb && has("expand: dim 2 of [1 x 3 x 1] (size 3) cannot expand to 4"), "expand error: %s",
        cf_error_message());
  /* squeeze / unsqueeze */
  cf_tensor *sq = cf_view_squeeze(o, 2);
  CHECK(sq && sq->ndim == 2 && sq->shape[1] == 3, "squeeze");
  cf_tensor *sqb = cf_view_squeeze(o, 1);
  CHECK(!sqb && has("squeeze: dim 2 of [1 x 3 x 1] has size 3, not 1"), "squeeze error: %s",
        cf_error_message());
  cf_tensor *us = cf_view_unsqueeze(t, 3);
  CHECK(us && us->ndim == 4 && us->shape[3] == 1 && cf_tensor_is_contiguous(us), "unsqueeze at the end");
  cf_tensor *us1 = cf_view_unsqueeze(t, 1);
  CHECK(us1 && us1->shape[1] == 1 && us1->shape[2] == 3 && cf_tensor_is_contiguous(us1), "unsqueeze inside");
  /* range errors name the op and shape */
  cf_tensor *nb = cf_view_narrow(t, 1, 2, 2);
  CHECK(!nb && has("narrow: 2 elements from 3 run past dim 2 of size 3 in [2 x 3 x 4]"), "narrow error: %s",
        cf_error_message());
  /* a length whose end wraps past INT64_MAX (the check once added start + len: accepted, and the
   * view read and wrote outside its storage) */
  cf_tensor *nw = cf_view_narrow(t, 1, 1, INT64_MAX);
  CHECK(!nw && has("narrow: 9223372036854775807 elements from 2 run past dim 2 of size 3"), "narrow wrap: %s",
        cf_error_message());
  cf_tensor *ns = cf_view_narrow(t, 1, INT64_MAX, 1);
  CHECK(!ns && has("1 elements from 9223372036854775808 run past dim 2 of size 3"), "narrow start past the end: %s",
        cf_error_message());
  cf_tensor *ne = cf_view_narrow(t, 1, 3, 0);
  CHECK(ne && ne->shape[1] == 0, "an empty narrow at the end is a view");
  cf_tensor_release(ne);
  cf_tensor *sb = cf_view_select(t, 0, 2);
  CHECK(!sb && has("select: index 3 out of range for dim 1 of size 2 in [2 x 3 x 4]"), "select error: %s",
        cf_error_message());
  cf_tensor *tb = cf_view_transpose(t, 0, 3);
  CHECK(!tb && has("transpose: dim 4 out of range for a 3-d tensor [2 x 3 x 4]"), "transpose error: %s",
        cf_error_message());

  /* contiguous and clone */
  cf_tensor *c1 = cf_tensor_contiguous(t);
  CHECK(c1 == t && t->refcount == 2, "contiguous of a contiguous tensor is itself");
  cf_tensor *c2 = cf_tensor_contiguous(tr);
  CHECK(c2 && c2 != tr && c2->storage != t->storage && cf_tensor_is_contiguous(c2), "contiguous copies");
  bool same = c2 != NULL;
  for (int64_t i = 0; same && i < 24; i++) same = cf_tensor_get_flat(c2, i) == cf_tensor_get_flat(tr, i);
  CHECK(same, "contiguous copy keeps the values in row-major order");
  cf_tensor *cl = cf_tensor_clone(t);
  ((float *)cl->storage->data)[0] = 99;
  CHECK(cl->storage != t->storage && ((float *)t->storage->data)[0] == 0, "clone is independent");
  /* writes through a view reach the base */
  int64_t z3[3] = {0, 0, 1};
  cf_tensor_set(tr, (int64_t[3]){1, 0, 1}, -5);
  CHECK(cf_tensor_get(t, (int64_t[3]){1, 0, 1}) == -5 && cf_tensor_get(t, z3) == 1, "writes through a view");

  cf_tensor *all[] = {n, s, tr, p, v, vm, n0, vn, o, e, sq, us, us1, c1, c2, cl};
  for (size_t i = 0; i < sizeof all / sizeof *all; i++) cf_tensor_release(all[i]);
  cf_tensor_release(t);
}

static uint16_t bf16_of(float f) {
  cf_tensor *x = cf_tensor_scalar(f, CF_DTYPE_F32);
  cf_tensor *b = cf_tensor_to_dtype(x, CF_DTYPE_BF16);
  uint16_t h = *(uint16_t *)cf_tensor_data(b);
  cf_tensor_release(x);
  cf_tensor_release(b);
  return h;
}

static void test_dtypes(void) {
  /* f64 -> f32 -> f64 */
  cf_tensor *d = cf_tensor_scalar(0.1, CF_DTYPE_F64);
  cf_tensor *f = cf_tensor_to_dtype(d, CF_DTYPE_F32);
  CHECK(f && cf_tensor_get_flat(f, 0) == (double)0.1f, "f64 -> f32 rounds to nearest float");
  cf_tensor_release(d);
  cf_tensor_release(f);
  /* bf16: round to nearest even */
  CHECK(bf16_of(1.0f) == 0x3f80, "bf16(1) = 0x3f80");
  CHECK(bf16_of(1.0f + 0x1p-8f) == 0x3f80, "bf16 halfway 1 + 2^-8 rounds down to even");
  CHECK(bf16_of(1.0f + 3 * 0x1p-8f) == 0x3f82, "bf16 halfway 1 + 3*2^-8 rounds up to even");
  CHECK(bf16_of(1.0f + 0x1p-8f + 0x1p-20f) == 0x3f81, "bf16 above halfway rounds up");
  CHECK(bf16_of(-2.5f) == 0xc020, "bf16(-2.5)");
  CHECK(bf16_of(INFINITY) == 0x7f80 && bf16_of(-INFINITY) == 0xff80, "bf16 infinities");
  uint16_t hn = bf16_of(NAN);
  CHECK((hn & 0x7f80) == 0x7f80 && (hn & 0x7f) != 0, "bf16 NaN stays NaN (0x%04x)", hn);
  CHECK(bf16_of(3.4e38f) == 0x7f80, "bf16 overflow rounds to inf");
  /* bf16 -> f32 -> bf16 round trip, and a strided conversion */
  int64_t s[2] = {2, 3};
  cf_tensor *x = cf_tensor_zeros(2, s, CF_DTYPE_F32);
  for (int i = 0; i < 6; i++) ((float *)x->storage->data)[i] = 0.5f * (float)i - 1.0f;
  cf_tensor *xt = cf_view_transpose(x, 0, 1);
  cf_tensor *b = cf_tensor_to_dtype(xt, CF_DTYPE_BF16);
  cf_tensor *back = cf_tensor_to_dtype(b, CF_DTYPE_F32);
  bool ok = back != NULL;
  for (int64_t i = 0; ok && i < 6; i++) ok = cf_tensor_get_flat(back, i) == cf_tensor_get_flat(xt, i);
  CHECK(ok, "strided f32 -> bf16 -> f32 keeps exactly representable values");
  /* ints: toward zero, so negative halves round up (floor would give -1 for -0.5) */
  cf_tensor *i64 = cf_tensor_to_dtype(xt, CF_DTYPE_I64); /* xt flat: -1, 0.5, -0.5, 1, 0, 1.5 */
  CHECK(i64 && cf_tensor_get_flat(i64, 0) == -1 && cf_tensor_get_flat(i64, 1) == 0 &&
            cf_tensor_get_flat(i64, 2) == 0 && cf_tensor_get_flat(i64, 5) == 1,
        "strided f32 -> i64 truncates toward zero (-0.5 -> %g)", i64 ? cf_tensor_get_flat(i64, 2) : NAN);
  {
    const double tv[6] = {-0.5, -1.5, 0.5, 1.5, -2.75, 2.75}, tw[6] = {0, -1, 0, 1, -2, 2};
    const cf_dtype from[2] = {CF_DTYPE_F32, CF_DTYPE_F64}, to[2] = {CF_DTYPE_I64, CF_DTYPE_I32};
    int64_t s6[1] = {6};
    for (int f = 0; f < 2; f++) {
      cf_tensor *src = cf_tensor_zeros(1, s6, from[f]);
      for (int64_t i = 0; i < 6; i++) cf_tensor_set(src, &i, tv[i]);
      for (int d = 0; d < 2; d++) {
        cf_tensor *c = cf_tensor_to_dtype(src, to[d]);
        for (int64_t i = 0; i < 6; i++)
          CHECK(c && c->dtype == to[d] && cf_tensor_get_flat(c, i) == tw[i], "%s -> %s: %g gives %g, want %g",
                cf_dtype_name(from[f]), cf_dtype_name(to[d]), tv[i], c ? cf_tensor_get_flat(c, i) : NAN, tw[i]);
        cf_tensor_release(c);
      }
      cf_tensor_release(src);
    }
  }
  cf_tensor_release(x); cf_tensor_release(xt); cf_tensor_release(b); cf_tensor_release(back);
  cf_tensor_release(i64);
  cf_dtype dt;
  CHECK(cf_dtype_from_name("bfloat16", &dt) == 0 && dt == CF_DTYPE_BF16, "dtype name bfloat16");
  CHECK(cf_dtype_from_name("f16", &dt) == -1 && has("unknown dtype 'f16'"), "unknown dtype: %s",
        cf_error_message());
}

static void test_creation(void) {
  cf_tensor *a = cf_tensor_arange(0, 5, 1, CF_DTYPE_I64);
  CHECK(a && a->shape[0] == 5 && cf_tensor_get_flat(a, 4) == 4, "arange(0, 5)");
  cf_tensor *b = cf_tensor_arange(1, 0, -0.25, CF_DTYPE_F64);
  CHECK(b && b->shape[0] == 4 && cf_tensor_get_flat(b, 3) == 0.25, "arange(1, 0, -0.25)");
  cf_tensor *c = cf_tensor_arange(0, 1, 0, CF_DTYPE_F32);
  CHECK(!c && has("arange: invalid range"), "arange step 0: %s", cf_error_message());
  cf_tensor *e = cf_tensor_arange(3, 1, 1, CF_DTYPE_F32);
  CHECK(e && e->shape[0] == 0, "arange with an empty range");
  cf_tensor_release(a); cf_tensor_release(b); cf_tensor_release(e);

  float v[3] = {1.5f, -2, 3};
  int64_t s3[1] = {3};
  cf_tensor *f = cf_tensor_from_bytes(1, s3, CF_DTYPE_F32, v, sizeof v);
  CHECK(f && cf_tensor_get_flat(f, 1) == -2, "from_bytes");
  cf_tensor *g = cf_tensor_from_bytes(1, s3, CF_DTYPE_F32, v, 8);
  CHECK(!g && has("from_bytes: 8 bytes given, [3] f32 needs 12"), "from_bytes size error: %s",
        cf_error_message());
  int64_t neg[2] = {2, -1};
  cf_tensor *h = cf_tensor_zeros(2, neg, CF_DTYPE_F32);
  CHECK(!h && has("negative size -1 in dim 2"), "negative size: %s", cf_error_message());
  /* (nineteenth session) a 0 in dim 1 let any later sizes through, and their strides overflowed */
  int64_t huge[3] = {0, (int64_t)1 << 62, (int64_t)1 << 62};
  cf_tensor *z = cf_tensor_zeros(3, huge, CF_DTYPE_F32);
  CHECK(!z && has("shape too large (overflow at dim 2)"), "empty tensor with huge sizes: %s", cf_error_message());
  int64_t s0[1] = {0};
  cf_tensor *e0 = cf_tensor_zeros(1, s0, CF_DTYPE_F32);
  cf_tensor *rz = cf_view_reshape(e0, 3, huge);
  CHECK(!rz && has("shape too large (overflow at dim 2)"), "reshape of an empty tensor to huge sizes: %s",
        cf_error_message());
  int64_t fine[3] = {0, (int64_t)1 << 40, 7};
  rz = cf_view_reshape(e0, 3, fine);
  CHECK(rz && rz->stride[0] == ((int64_t)7 << 40) && rz->stride[1] == 7, "reshape of an empty tensor, large sizes");
  cf_tensor_release(rz); cf_tensor_release(e0);
  cf_tensor *full = cf_tensor_full(1, s3, CF_DTYPE_F64, 2.5);
  CHECK(full && cf_tensor_get_flat(full, 2) == 2.5, "full");
  cf_tensor_release(f); cf_tensor_release(full);
}

static void test_rng(void) {
  uint32_t w[4];
  cf_philox(0, 0, w);
  CHECK(w[0] == 0x6627e8d5u && w[1] == 0xe169c58du && w[2] == 0xbc57ac4cu && w[3] == 0x9b00dbd8u,
        "Philox4x32-10 known answer: got %08x %08x %08x %08x", w[0], w[1], w[2], w[3]);
  cf_rng a, b;
  cf_rng_init(&a, 42);
  cf_rng_init(&b, 42);
  bool same = true;
  for (int i = 0; i < 100; i++) same &= cf_rng_u32(&a) == cf_rng_u32(&b);
  CHECK(same, "same seed, same stream");
  cf_rng_init(&b, 43);
  cf_rng_init(&a, 42);
  int diff = 0;
  for (int i = 0; i < 100; i++) diff += cf_rng_u32(&a) != cf_rng_u32(&b);
  CHECK(diff > 90, "different seeds differ");
  /* tensors: same seed, same values */
  int64_t s[1] = {1000};
  cf_rng_init(&a, 5);
  cf_rng_init(&b, 5);
  cf_tensor *x = cf_tensor_randn(1, s, CF_DTYPE_F32, &a), *y = cf_tensor_randn(1, s, CF_DTYPE_F32, &b);
  CHECK(memcmp(x->storage->data, y->storage->data, 4000) == 0, "randn is deterministic");
  cf_tensor_release(x); cf_tensor_release(y);
  /* moments of 1e5 draws */
  int64_t n[1] = {100000};
  cf_rng_init(&a, 11);
  cf_tensor *z = cf_tensor_randn(1, n, CF_DTYPE_F64, &a);
  cf_tensor *u = cf_tensor_rand(1, n, CF_DTYPE_F64, &a);
  double m = 0, v = 0, um = 0, umin = 1, umax = 0;
  const double *zp = z->storage->data, *up = u->storage->data;
  for (int i = 0; i < 100000; i++) {
    m += zp[i];
    um += up[i];
    if (up[i] < umin) umin = up[i];
    if (up[i] > umax) umax = up[i];
  }
  m /= 1e5;
  um /= 1e5;
  for (int i = 0; i < 100000; i++) v += (zp[i] - m) * (zp[i] - m);
  v /= 1e5 - 1;
  CHECK(fabs(m) < 0.015 && fabs(v - 1) < 0.02, "normal mean %g var %g", m, v);
  CHECK(fabs(um - 0.5) < 0.005 && umin >= 0 && umax < 1, "uniform mean %g in [%g, %g]", um, umin, umax);
  cf_tensor_release(z); cf_tensor_release(u);
}

static void test_memory(void) {
  size_t live0 = cf_cpu_bytes_live();
  int64_t s[2] = {100, 50};
  cf_tensor *t = cf_tensor_zeros(2, s, CF_DTYPE_F64);
  CHECK(cf_cpu_bytes_live() == live0 + 40000, "live bytes grow by the storage size");
  cf_tensor *v = cf_view_transpose(t, 0, 1);
  CHECK(cf_cpu_bytes_live() == live0 + 40000, "a view allocates no storage");
  cf_tensor_release(t);
  CHECK(cf_cpu_bytes_live() == live0 + 40000, "a view keeps the storage alive");
  cf_tensor *c = cf_tensor_contiguous(v);
  cf_tensor_release(v);
  CHECK(cf_cpu_bytes_live() == live0 + 40000, "only the copy remains");
  cf_tensor_release(c);
  CHECK(cf_cpu_bytes_live() == live0, "live bytes return to the start after releases");
}

/* Uninitialised allocations: accounted like zeroed ones; in poison mode every byte is 0xFF
 * (f32 NaN, i64 -1) while cf_tensor_empty still zero-fills. */
static void test_uninit(void) {
  bool was = cf_set_poison(true);
  size_t live0 = cf_cpu_bytes_live();
  int64_t s[2] = {7, 9};
  cf_tensor *f = cf_tensor_empty_uninit(2, s, CF_DTYPE_F32, CF_DEVICE_CPU);
  cf_tensor *i = cf_tensor_empty_uninit(2, s, CF_DTYPE_I64, CF_DEVICE_CPU);
  cf_tensor *z = cf_tensor_empty(2, s, CF_DTYPE_F32, CF_DEVICE_CPU);
  CHECK(f && i && z && cf_tensor_is_contiguous(f), "uninit allocations");
  CHECK(cf_cpu_bytes_live() == live0 + 63 * 4 + 63 * 8 + 63 * 4, "uninit storages count as live bytes");
  bool nan = true, neg = true, zero = true;
  for (int64_t k = 0; f && i && z && k < 63; k++) {
    nan &= isnan(cf_tensor_get_flat(f, k)) && ((const uint32_t *)f->storage->data)[k] == 0xFFFFFFFFu;
    neg &= ((const int64_t *)i->storage->data)[k] == -1;
    zero &= cf_tensor_get_flat(z, k) == 0;
  }
  CHECK(nan, "poison: uninit f32 is all-ones NaN");
  CHECK(neg, "poison: uninit i64 is -1");
  CHECK(zero, "poison leaves cf_tensor_empty zero-filled");
  cf_storage *st = cf_storage_new_uninit(CF_DEVICE_CPU, 5);
  CHECK(st && st->nbytes == 5 && ((unsigned char *)st->data)[4] == 0xFF, "poison: uninit storage");
  cf_storage_release(st);
  cf_tensor_release(f); cf_tensor_release(i); cf_tensor_release(z);
  CHECK(cf_cpu_bytes_live() == live0, "uninit storages give their bytes back");
  CHECK(cf_poison_enabled(), "cf_set_poison(true) turns poison on");
  cf_set_poison(was);
}

/* Writes to integer dtypes refuse values out of range (NaN included), naming the value; copy_
 * from an overlapping view of itself goes through a temporary. */
static void test_int_ranges_and_overlap(void) {
  int64_t one = 1, two = 2, i0 = 0;
  CHECK(cf_tensor_full(1, &one, CF_DTYPE_I32, 1099511627776.0) == NULL &&
        strstr(cf_error_message(), "1099511627776") && strstr(cf_error_message(), "does not fit in i32"),
        "full of 2^40 as i32 refused: %s", cf_error_message());
  cf_tensor *t = cf_tensor_zeros(1, &two, CF_DTYPE_I64);
  CHECK(cf_tensor_fill_(t, NAN) != 0 && strstr(cf_error_message(), "nan") && strstr(cf_error_message(), "i64"),
        "fill_ NaN into i64 refused: %s", cf_error_message());
  CHECK(cf_tensor_set(t, &i0, 9.3e18) != 0 && strstr(cf_error_message(), "does not fit in i64"),
        "set 9.3e18 into i64 refused: %s", cf_error_message());
  CHECK(cf_tensor_set(t, &i0, -9223372036854775808.0) == 0 && ((int64_t *)cf_tensor_data(t))[0] == INT64_MIN,
        "-2^63 fits in i64: %s", cf_error_message());
  cf_tensor *f = cf_tensor_full(1, &two, CF_DTYPE_F64, 3e9);
  cf_tensor *c = cf_tensor_zeros(1, &two, CF_DTYPE_I32);
  CHECK(cf_tensor_copy_(c, f) != 0 && strstr(cf_error_message(), "3000000000"), "copy of 3e9 into i32 refused: %s",
        cf_error_message());
  CHECK(cf_tensor_to_dtype(f, CF_DTYPE_I32) == NULL && strstr(cf_error_message(), "to_dtype"),
        "to_dtype names itself: %s", cf_error_message());
  CHECK(cf_tensor_arange(2147483646.0, 2147483649.0, 1, CF_DTYPE_I32) == NULL &&
        strstr(cf_error_message(), "2147483648"), "arange past i32 refused: %s", cf_error_message());
  cf_tensor_release(c); cf_tensor_release(f); cf_tensor_release(t);
  /* a = a^T for a 2 x 2 */
  int64_t s2[2] = {2, 2};
  cf_tensor *a = cf_tensor_zeros(2, s2, CF_DTYPE_F32);
  for (int64_t i = 0; i < 4; i++) ((float *)cf_tensor_data(a))[i] = (float)(i + 1);
  cf_tensor *at = cf_view_transpose(a, 0, 1);
  CHECK(cf_tensor_copy_(a, at) == 0, "copy_ from the transpose: %s", cf_error_message());
  const float *ad = cf_tensor_data(a);
  CHECK(ad[0] == 1 && ad[1] == 3 && ad[2] == 2 && ad[3] == 4, "a = a^T gives 1 3 2 4, got %g %g %g %g", ad[0], ad[1],
        ad[2], ad[3]);
  cf_tensor_release(at); cf_tensor_release(a);
}

int main(void) {
  size_t live0 = cf_cpu_bytes_live();
  test_views();
  test_dtypes();
  test_creation();
  test_rng();
  test_memory();
  test_uninit();
  test_int_ranges_and_overlap();
  CHECK(cf_cpu_bytes_live() == live0, "no CPU bytes live at the end (%zu)", cf_cpu_bytes_live() - live0);
  return check_finish();
}
