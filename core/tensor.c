/* tensor.c - storages, tensor views, creation, copies and dtype conversion (see tensor.h).
 *
 * CPU memory is 64-byte aligned and zero-filled, except for the _uninit allocations, which are
 * left as they come (or filled with 0xFF bytes in poison mode: CONFIT_POISON=1, read once). When
 * an allocation fails the retry hook (a full Lua GC, installed by the Lua face) runs once and the
 * allocation is tried again.
 * Copies between dtypes go through double on the CPU; devices other than the CPU are reached
 * through the hooks the CUDA layer registers. Every write into an existing tensor bumps its
 * storage's version (tensor.h); a value bound for an integer dtype is range-checked first.
 */
#include "tensor.h"
#include "error.h"
#include "rng.h"
#include "autograd.h"
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- dtypes */

static const size_t dtype_sizes[CF_DTYPE_COUNT] = {4, 8, 2, 4, 8};
static const char *const dtype_names[CF_DTYPE_COUNT] = {"f32", "f64", "bf16", "i32", "i64"};

size_t cf_dtype_size(cf_dtype dt) { return dt < CF_DTYPE_COUNT ? dtype_sizes[dt] : 0; }
const char *cf_dtype_name(cf_dtype dt) { return dt < CF_DTYPE_COUNT ? dtype_names[dt] : "?"; }
bool cf_dtype_is_float(cf_dtype dt) {
  return dt == CF_DTYPE_F32 || dt == CF_DTYPE_F64 || dt == CF_DTYPE_BF16;
}
static const char *const device_names[CF_DEVICE_COUNT] = {"cpu", "cuda"};
static const char device_choices[] = "cpu or cuda";   /* device_names, spelled for a message */

const char *cf_device_name(cf_device d) { return d < CF_DEVICE_COUNT ? device_names[d] : "?"; }
int cf_device_from_name(const char *name, cf_device *out) {
  for (int i = 0; i < CF_DEVICE_COUNT; i++)
    if (strcmp(name, device_names[i]) == 0) { *out = (cf_device)i; return 0; }
  return CF_ERR("unknown device '%s' (expected %s)", name, device_choices);
}
const char *cf_device_choices(void) { return device_choices; }

int cf_dtype_from_name(const char *name, cf_dtype *out) {
  for (int i = 0; i < CF_DTYPE_COUNT; i++)
    if (strcmp(name, dtype_names[i]) == 0) { *out = (cf_dtype)i; return 0; }
  if (strcmp(name, "float32") == 0 || strcmp(name, "float") == 0) { *out = CF_DTYPE_F32; return 0; }
  if (strcmp(name, "float64") == 0 || strcmp(name, "double") == 0) { *out = CF_DTYPE_F64; return 0; }
  if (strcmp(name, "bfloat16") == 0) { *out = CF_DTYPE_BF16; return 0; }
  if (strcmp(name, "int32") == 0) { *out = CF_DTYPE_I32; return 0; }
  if (strcmp(name, "int64") == 0 || strcmp(name, "long") == 0) { *out = CF_DTYPE_I64; return 0; }
  return CF_ERR("unknown dtype '%s' (expected f32, f64, bf16, i32 or i64)", name);
}

/* ---------------------------------------------------------------- storage */

static void (*retry_hook)(void *) = NULL;
static void *retry_ud = NULL;
static atomic_size_t cpu_live = 0, cpu_peak = 0;
static cf_device_hooks device_hooks[2];
static bool device_present[2];

void cf_set_alloc_retry_hook(void (*hook)(void *), void *ud) { retry_hook = hook; retry_ud = ud; }
void cf_run_alloc_retry_hook(void) { if (retry_hook) retry_hook(retry_ud); }
size_t cf_cpu_bytes_live(void) { return atomic_load(&cpu_live); }
size_t cf_cpu_bytes_peak(void) { return atomic_load(&cpu_peak); }
void cf_cpu_reset_peak(void) { atomic_store(&cpu_peak, atomic_load(&cpu_live)); }

void cf_register_device(cf_device dev, const cf_device_hooks *hooks) {
  device_hooks[dev] = *hooks;
  device_present[dev] = true;
}
const cf_device_hooks *cf_device_get(cf_device dev) {
  return device_present[dev] ? &device_hooks[dev] : NULL;
}

static void cpu_release(cf_storage *s) {
  atomic_fetch_sub(&cpu_live, s->nbytes);
  free(s->data);
}

static void device_release(cf_storage *s) {
  const cf_device_hooks *h = cf_device_get(s->device);
  if (h) h->free(s->data, s->nbytes);
}

/* Poison mode: -1 not yet read from CONFIT_POISON, else 0 or 1. */
static int poison_state = -1;

bool cf_poison_enabled(void) {
  if (poison_state < 0) {
    const char *e = getenv("CONFIT_POISON");
    poison_state = e && e[0] && strcmp(e, "0") != 0;
  }
  return poison_state == 1;
}

bool cf_set_poison(bool on) {
  bool old = cf_poison_enabled();
  poison_state = on ? 1 : 0;
  return old;
}

static void *cpu_alloc(size_t nbytes, bool zero) {
  size_t n = (nbytes + 63) & ~(size_t)63;
  if (n == 0) n = 64;
  void *p = aligned_alloc(64, n);
  if (p && zero) memset(p, 0, n);
  else if (p && cf_poison_enabled()) memset(p, 0xFF, n);
  return p;
}

/* zero: fill with zero bytes; else leave uninitialised (0xFF bytes in poison mode). */
static cf_storage *storage_alloc(cf_device dev, size_t nbytes, bool zero) {
  cf_storage *s = calloc(1, sizeof *s);
  if (!s) { CF_ERR("out of memory allocating a storage header"); return NULL; }
  void *p = NULL;
  if (dev == CF_DEVICE_CPU) {
    p = cpu_alloc(nbytes, zero);
    if (!p && retry_hook) { retry_hook(retry_ud); p = cpu_alloc(nbytes, zero); }
    if (!p) {
      free(s);
      CF_ERR("out of memory: cannot allocate %zu bytes on the CPU (%zu bytes live)", nbytes,
             cf_cpu_bytes_live());
      return NULL;
    }
    size_t now = atomic_fetch_add(&cpu_live, nbytes) + nbytes, pk = atomic_load(&cpu_peak);
    while (now > pk && !atomic_compare_exchange_weak(&cpu_peak, &pk, now)) {}
    s->release = cpu_release;
  } else {
    const cf_device_hooks *h = cf_device_get(dev);
    if (!h) { free(s); CF_ERR("device %s is not available in this build", cf_device_name(dev)); return NULL; }
    p = h->alloc(nbytes);
    if (!p) { free(s); return NULL; }
    int rc = 0;
    if (zero) rc = h->memset0(p, nbytes);
    else if (cf_poison_enabled() && h->fill_bytes) rc = h->fill_bytes(p, 0xFF, nbytes);
    if (rc != 0) { h->free(p, nbytes); free(s); return NULL; }
    s->release = device_release;
  }
  s->refcount = 1;
  s->device = dev;
  s->data = p;
  s->nbytes = nbytes;
  return s;
}

cf_storage *cf_storage_new(cf_device dev, size_t nbytes) { return storage_alloc(dev, nbytes, true); }
cf_storage *cf_storage_new_uninit(cf_device dev, size_t nbytes) { return storage_alloc(dev, nbytes, false); }

void cf_storage_retain(cf_storage *s) { if (s) s->refcount++; }

void cf_storage_release(cf_storage *s) {
  if (!s || --s->refcount > 0) return;
  if (s->release) s->release(s);
  else free(s->data);
  free(s);
}

/* ---------------------------------------------------------------- tensors */

void cf_tensor_retain(cf_tensor *t) { if (t) t->refcount++; }

void cf_tensor_release(cf_tensor *t) {
  if (!t || --t->refcount > 0) return;
  cf_storage_release(t->storage);
  cf_tensor_release(t->grad);
  cf_node_release(t->grad_fn);
  free(t);
}

static void set_contiguous_strides(cf_tensor *t) {
  int64_t s = 1;
  for (int d = t->ndim - 1; d >= 0; d--) { t->stride[d] = s; s *= t->shape[d]; }
}

static int check_shape(int ndim, const int64_t *shape, int64_t *numel) {
  if (ndim < 0 || ndim > CF_MAX_DIMS)
    return CF_ERR("tensor: %d dims requested, at most %d supported", ndim, CF_MAX_DIMS);
  /* the product of the non-zero sizes is bounded too: strides are products of sizes, and an
   * empty tensor's still are (a 0 in dim 1 must not let [0, 2^62, 2^62] through) */
  int64_t n = 1, nz = 1;
  for (int d = 0; d < ndim; d++) {
    if (shape[d] < 0) return CF_ERR("tensor: negative size %lld in dim %d", (long long)shape[d], d + 1);
    if (shape[d] > 0 && nz > INT64_MAX / 16 / shape[d])
      return CF_ERR("tensor: shape too large (overflow at dim %d)", d + 1);
    if (shape[d] > 0) nz *= shape[d];
    n *= shape[d];
  }
  *numel = n;
  return 0;
}

/* A tensor header over storage s (the reference to s is taken over). */
static cf_tensor *tensor_header(cf_storage *s, int64_t offset, int ndim, const int64_t *shape,
                                cf_dtype dt) {
  cf_tensor *t = calloc(1, sizeof *t);
  if (!t) { cf_storage_release(s); CF_ERR("out of memory allocating a tensor header"); return NULL; }
  t->refcount = 1;
  t->dtype = dt;
  t->ndim = ndim;
  for (int d = 0; d < ndim; d++) t->shape[d] = shape[d];
  set_contiguous_strides(t);
  t->offset = offset;
  t->storage = s;
  return t;
}

static cf_tensor *tensor_alloc(int ndim, const int64_t *shape, cf_dtype dt, cf_device dev, bool zero) {
  int64_t n;
  if (dt >= CF_DTYPE_COUNT) { CF_ERR("tensor: invalid dtype %d", (int)dt); return NULL; }
  if (check_shape(ndim, shape, &n)) return NULL;
  cf_storage *s = storage_alloc(dev, (size_t)n * cf_dtype_size(dt), zero);
  if (!s) return NULL;
  return tensor_header(s, 0, ndim, shape, dt);
}

cf_tensor *cf_tensor_empty(int ndim, const int64_t *shape, cf_dtype dt, cf_device dev) {
  return tensor_alloc(ndim, shape, dt, dev, true);
}

cf_tensor *cf_tensor_empty_uninit(int ndim, const int64_t *shape, cf_dtype dt, cf_device dev) {
  return tensor_alloc(ndim, shape, dt, dev, false);
}

cf_tensor *cf_tensor_zeros(int ndim, const int64_t *shape, cf_dtype dt) {
  return cf_tensor_empty(ndim, shape, dt, CF_DEVICE_CPU);
}

/* "op: value V does not fit in i32" when v does not fit dt; what names the value ("value",
 * "element 3"). */
static int check_fits(const char *op, const char *what, cf_dtype dt, double v) {
  if (cf_value_fits(dt, v)) return 0;
  char b[40];
  if (isnan(v)) snprintf(b, sizeof b, "nan");
  else snprintf(b, sizeof b, "%.15g", v);
  return CF_ERR("%s: %s %s does not fit in %s", op, what, b, cf_dtype_name(dt));
}

static cf_tensor *full_named(const char *op, int ndim, const int64_t *shape, cf_dtype dt, double value) {
  if (check_fits(op, "value", dt, value)) return NULL;
  cf_tensor *t = cf_tensor_zeros(ndim, shape, dt);
  if (t && value != 0.0 && cf_tensor_fill_(t, value)) { cf_tensor_release(t); return NULL; }
  return t;
}

cf_tensor *cf_tensor_full(int ndim, const int64_t *shape, cf_dtype dt, double value) {
  return full_named("full", ndim, shape, dt, value);
}

cf_tensor *cf_tensor_scalar(double value, cf_dtype dt) {
  return full_named("scalar", 0, NULL, dt, value);
}

cf_tensor *cf_tensor_arange(double start, double end, double step, cf_dtype dt) {
  if (step == 0 || !isfinite(start) || !isfinite(end) || !isfinite(step)) {
    CF_ERR("arange: invalid range start=%g end=%g step=%g", cf_msgnum(start), cf_msgnum(end),
           cf_msgnum(step));
    return NULL;
  }
  double cnt = ceil((end - start) / step);
  if (!(cnt < 0x1p62)) {
    CF_ERR("arange: start=%g end=%g step=%g gives %g elements, too many", start, end, step, cnt);
    return NULL;
  }
  int64_t n = cnt > 0 ? (int64_t)cnt : 0;
  /* the values run monotonically from the first to the last: checking both checks all */
  if (n > 0 && (check_fits("arange", "value", dt, start) ||
                check_fits("arange", "value", dt, start + (double)(n - 1) * step)))
    return NULL;
  cf_tensor *t = cf_tensor_zeros(1, &n, dt);
  if (!t) return NULL;
  for (int64_t i = 0; i < n; i++) cf_tensor_set(t, &i, start + (double)i * step);
  return t;
}

cf_tensor *cf_tensor_arange_int(int64_t start, int64_t end, int64_t step, cf_dtype dt) {
  if (dt != CF_DTYPE_I32 && dt != CF_DTYPE_I64) return CF_ERR("arange_int: dtype %s is not an integer dtype", cf_dtype_name(dt)), NULL;
  if (step == 0) return CF_ERR("arange: invalid range start=%lld end=%lld step=0", (long long)start, (long long)end), NULL;
  /* the count in unsigned arithmetic: end - start and |step| fit in uint64_t (no double: its
   * 53-bit mantissa repeated and skipped values past 2^53) */
  uint64_t span = 0, mag = step > 0 ? (uint64_t)step : 0 - (uint64_t)step;
  if (step > 0 && end > start) span = (uint64_t)end - (uint64_t)start;
  if (step < 0 && end < start) span = (uint64_t)start - (uint64_t)end;
  uint64_t cnt = span ? (span - 1) / mag + 1 : 0;
  if (cnt >= ((uint64_t)1 << 62)) {
    CF_ERR("arange: start=%lld end=%lld step=%lld gives %llu elements, too many", (long long)start, (long long)end,
           (long long)step, (unsigned long long)cnt);
    return NULL;
  }
  int64_t n = (int64_t)cnt;
  /* the values run monotonically from the first to the last: checking both checks all */
  int64_t last = n ? (int64_t)((uint64_t)start + (uint64_t)(n - 1) * (uint64_t)step) : start;
  if (dt == CF_DTYPE_I32 && n > 0 && (start < INT32_MIN || start > INT32_MAX || last < INT32_MIN || last > INT32_MAX)) {
    CF_ERR("arange: value %lld does not fit in i32", (long long)(start < INT32_MIN || start > INT32_MAX ? start : last));
    return NULL;
  }
  cf_tensor *t = cf_tensor_zeros(1, &n, dt);
  if (!t) return NULL;
  for (int64_t i = 0; i < n; i++) {
    int64_t v = (int64_t)((uint64_t)start + (uint64_t)i * (uint64_t)step);
    if (dt == CF_DTYPE_I64) ((int64_t *)cf_tensor_data(t))[i] = v;
    else ((int32_t *)cf_tensor_data(t))[i] = (int32_t)v;
  }
  return t;
}

cf_tensor *cf_tensor_from_bytes(int ndim, const int64_t *shape, cf_dtype dt, const void *bytes,
                                size_t nbytes) {
  cf_tensor *t = cf_tensor_zeros(ndim, shape, dt);
  if (!t) return NULL;
  size_t want = (size_t)cf_tensor_numel(t) * cf_dtype_size(dt);
  if (nbytes != want) {
    char b[128];
    CF_ERR("from_bytes: %zu bytes given, %s %s needs %zu", nbytes, cf_shape_str(t, b, sizeof b),
           cf_dtype_name(dt), want);
    cf_tensor_release(t);
    return NULL;
  }
  if (want) memcpy(t->storage->data, bytes, want);
  return t;
}

cf_tensor *cf_tensor_from_storage(cf_storage *s, int64_t offset, int ndim, const int64_t *shape,
                                  cf_dtype dt) {
  int64_t n;
  if (check_shape(ndim, shape, &n)) return NULL;
  if (offset < 0 || (size_t)(offset + n) * cf_dtype_size(dt) > s->nbytes) {
    CF_ERR("from_storage: %lld elements at offset %lld exceed the storage (%zu bytes)",
           (long long)n, (long long)offset, s->nbytes);
    return NULL;
  }
  cf_storage_retain(s);
  return tensor_header(s, offset, ndim, shape, dt);
}

static cf_tensor *from_f64(int ndim, const int64_t *shape, cf_dtype dt, const double *v) {
  cf_tensor *t = cf_tensor_zeros(ndim, shape, dt);
  if (!t) return NULL;
  int64_t n = cf_tensor_numel(t);
  void *p = t->storage->data;
  switch (dt) {
    case CF_DTYPE_F32: for (int64_t i = 0; i < n; i++) ((float *)p)[i] = (float)v[i]; break;
    case CF_DTYPE_F64: memcpy(p, v, (size_t)n * 8); break;
    case CF_DTYPE_BF16: for (int64_t i = 0; i < n; i++) ((uint16_t *)p)[i] = cf_float_to_bf16((float)v[i]); break;
    default:
      cf_tensor_release(t);
      CF_ERR("rand/randn: dtype %s is not a floating type", cf_dtype_name(dt));
      return NULL;
  }
  return t;
}

static cf_tensor *random_tensor(int ndim, const int64_t *shape, cf_dtype dt, cf_rng *g, bool normal) {
  int64_t n;
  if (check_shape(ndim, shape, &n)) return NULL;
  double *v = malloc((size_t)(n ? n : 1) * sizeof *v);
  if (!v) { CF_ERR("out of memory drawing %lld random values", (long long)n); return NULL; }
  if (!g) g = cf_rng_global();
  if (normal) cf_rng_fill_normal_f64(g, v, n);
  else cf_rng_fill_uniform_f64(g, v, n);
  cf_tensor *t = from_f64(ndim, shape, dt, v);
  free(v);
  return t;
}

cf_tensor *cf_tensor_rand(int ndim, const int64_t *shape, cf_dtype dt, cf_rng *g) {
  return random_tensor(ndim, shape, dt, g, false);
}
cf_tensor *cf_tensor_randn(int ndim, const int64_t *shape, cf_dtype dt, cf_rng *g) {
  return random_tensor(ndim, shape, dt, g, true);
}

/* ---------------------------------------------------------------- metadata */

int64_t cf_tensor_numel(const cf_tensor *t) {
  int64_t n = 1;
  for (int d = 0; d < t->ndim; d++) n *= t->shape[d];
  return n;
}

bool cf_tensor_is_contiguous(const cf_tensor *t) {
  int64_t s = 1;
  for (int d = t->ndim - 1; d >= 0; d--) {
    if (t->shape[d] != 1 && t->stride[d] != s) return false;
    s *= t->shape[d];
  }
  return true;
}

cf_device cf_tensor_device(const cf_tensor *t) { return t->storage->device; }

void *cf_tensor_data(const cf_tensor *t) {
  return (char *)t->storage->data + (size_t)t->offset * cf_dtype_size(t->dtype);
}

const char *cf_shape_str(const cf_tensor *t, char *buf, size_t n) {
  size_t k = 0;
  k += (size_t)snprintf(buf + k, n - k, "[");
  for (int d = 0; d < t->ndim && k < n; d++)
    k += (size_t)snprintf(buf + k, n - k, d ? " x %lld" : "%lld", (long long)t->shape[d]);
  if (k < n) snprintf(buf + k, n - k, "]");
  return buf;
}

bool cf_same_shape(const cf_tensor *a, const cf_tensor *b) {
  if (a->ndim != b->ndim) return false;
  for (int d = 0; d < a->ndim; d++) if (a->shape[d] != b->shape[d]) return false;
  return true;
}

/* ---------------------------------------------------------------- views */

static cf_tensor *view_of(cf_tensor *t) {
  cf_tensor *v = calloc(1, sizeof *v);
  if (!v) { CF_ERR("out of memory allocating a view"); return NULL; }
  v->refcount = 1;
  v->dtype = t->dtype;
  v->ndim = t->ndim;
  memcpy(v->shape, t->shape, sizeof v->shape);
  memcpy(v->stride, t->stride, sizeof v->stride);
  v->offset = t->offset;
  v->storage = t->storage;
  cf_storage_retain(t->storage);
  return v;
}

cf_tensor *cf_view_alias(cf_tensor *t) { return view_of(t); }

static int check_dim(const char *op, const cf_tensor *t, int dim) {
  if (dim < 0 || dim >= t->ndim) {
    char b[128];
    return CF_ERR("%s: dim %d out of range for a %d-d tensor %s", op, dim + 1, t->ndim,
                  cf_shape_str(t, b, sizeof b));
  }
  return 0;
}

cf_tensor *cf_view_narrow(cf_tensor *t, int dim, int64_t start, int64_t len) {
  if (check_dim("narrow", t, dim)) return NULL;
  /* (len > size - start, not start + len > size: that sum may wrap past INT64_MAX) */
  if (start < 0 || len < 0 || start > t->shape[dim] || len > t->shape[dim] - start) {
    char b[128];
    /* (the 1-based start in unsigned arithmetic: start may be INT64_MAX) */
    CF_ERR("narrow: %lld elements from %llu run past dim %d of size %lld in %s", (long long)len,
           (unsigned long long)start + 1, dim + 1, (long long)t->shape[dim], cf_shape_str(t, b, sizeof b));
    return NULL;
  }
  cf_tensor *v = view_of(t);
  if (!v) return NULL;
  v->offset += start * t->stride[dim];
  v->shape[dim] = len;
  return v;
}

cf_tensor *cf_view_select(cf_tensor *t, int dim, int64_t index) {
  if (check_dim("select", t, dim)) return NULL;
  if (index < 0 || index >= t->shape[dim]) {
    char b[128];
    CF_ERR("select: index %lld out of range for dim %d of size %lld in %s", (long long)index + 1,
           dim + 1, (long long)t->shape[dim], cf_shape_str(t, b, sizeof b));
    return NULL;
  }
  cf_tensor *v = view_of(t);
  if (!v) return NULL;
  v->offset += index * t->stride[dim];
  for (int d = dim; d < t->ndim - 1; d++) { v->shape[d] = t->shape[d + 1]; v->stride[d] = t->stride[d + 1]; }
  v->ndim--;
  return v;
}

cf_tensor *cf_view_transpose(cf_tensor *t, int d0, int d1) {
  if (check_dim("transpose", t, d0) || check_dim("transpose", t, d1)) return NULL;
  cf_tensor *v = view_of(t);
  if (!v) return NULL;
  v->shape[d0] = t->shape[d1]; v->stride[d0] = t->stride[d1];
  v->shape[d1] = t->shape[d0]; v->stride[d1] = t->stride[d0];
  return v;
}

cf_tensor *cf_view_permute(cf_tensor *t, const int *perm) {
  bool seen[CF_MAX_DIMS] = {false};
  for (int d = 0; d < t->ndim; d++) {
    if (perm[d] < 0 || perm[d] >= t->ndim || seen[perm[d]]) {
      CF_ERR("permute: not a permutation of %d dims (entry %d is %d)", t->ndim, d + 1, perm[d] + 1);
      return NULL;
    }
    seen[perm[d]] = true;
  }
  cf_tensor *v = view_of(t);
  if (!v) return NULL;
  for (int d = 0; d < t->ndim; d++) { v->shape[d] = t->shape[perm[d]]; v->stride[d] = t->stride[perm[d]]; }
  return v;
}

/* Resolve one -1 entry and check the element count. */
static int resolve_shape(const char *op, const cf_tensor *t, int ndim, const int64_t *shape,
                         int64_t *out) {
  if (ndim < 0 || ndim > CF_MAX_DIMS) return CF_ERR("%s: %d dims (at most %d)", op, ndim, CF_MAX_DIMS);
  int infer = -1;
  int64_t known = 1, nz = 1;   /* nz: the product of the non-zero sizes (check_shape's bound) */
  for (int d = 0; d < ndim; d++) {
    out[d] = shape[d];
    if (shape[d] == -1) {
      if (infer >= 0) return CF_ERR("%s: more than one -1 in the new shape", op);
      infer = d;
    } else if (shape[d] < 0) {
      return CF_ERR("%s: negative size %lld in dim %d", op, (long long)shape[d], d + 1);
    } else {
      if (shape[d] > 0 && nz > INT64_MAX / 16 / shape[d])
        return CF_ERR("%s: shape too large (overflow at dim %d)", op, d + 1);
      if (shape[d] > 0) nz *= shape[d];
      known *= shape[d];
    }
  }
  int64_t n = cf_tensor_numel(t);
  if (infer >= 0) {
    if (known == 0) {
      char b[128];
      return CF_ERR("%s: the -1 in dim %d cannot be inferred: the other sizes multiply to 0, so any size "
                    "would fit %s (%lld elements); give every size", op, infer + 1, cf_shape_str(t, b, sizeof b),
                    (long long)n);
    }
    if (n % known != 0) goto bad;
    out[infer] = n / known;
  } else if (known != n) {
    goto bad;
  }
  return 0;
bad: {
    char b[128];
    return CF_ERR("%s: cannot view %s (%lld elements) with %d dims totalling %lld", op,
                  cf_shape_str(t, b, sizeof b), (long long)n, ndim, (long long)known);
  }
}

/* cf_view_reshape's body; op ("view" or "reshape") names the caller in a count error. */
static cf_tensor *view_reshape(const char *op, cf_tensor *t, int ndim, const int64_t *shape) {
  int64_t ns[CF_MAX_DIMS], nst[CF_MAX_DIMS];
  if (resolve_shape(op, t, ndim, shape, ns)) return NULL;
  if (t->ndim == 0 || cf_tensor_numel(t) == 0) {
    int64_t s = 1;
    for (int d = ndim - 1; d >= 0; d--) { nst[d] = s; s *= ns[d]; }
  } else {
    /* Walk old dims from the last, in chunks that are contiguous in memory; each chunk must be
     * covered exactly by consecutive new dims, which get strides inside the chunk. */
    int vd = ndim - 1;
    int64_t base = t->stride[t->ndim - 1], tn = 1, vn = 1;
    for (int td = t->ndim - 1; td >= 0; td--) {
      tn *= t->shape[td];
      if (td == 0 || (t->shape[td - 1] != 1 && t->stride[td - 1] != tn * base)) {
        while (vd >= 0 && (vn < tn || ns[vd] == 1)) { nst[vd] = vn * base; vn *= ns[vd]; vd--; }
        if (vn != tn) goto fail;
        if (td > 0) { base = t->stride[td - 1]; tn = 1; vn = 1; }
      }
    }
    if (vd != -1) goto fail;
  }
  cf_tensor *v = view_of(t);
  if (!v) return NULL;
  v->ndim = ndim;
  for (int d = 0; d < ndim; d++) { v->shape[d] = ns[d]; v->stride[d] = nst[d]; }
  return v;
fail: {
    char b[128];
    CF_ERR("view: %s with these strides cannot be viewed without a copy (use reshape)",
           cf_shape_str(t, b, sizeof b));
    return NULL;
  }
}

cf_tensor *cf_view_reshape(cf_tensor *t, int ndim, const int64_t *shape) {
  return view_reshape("view", t, ndim, shape);
}

cf_tensor *cf_tensor_reshape(cf_tensor *t, int ndim, const int64_t *shape) {
  cf_tensor *v = view_reshape("reshape", t, ndim, shape);
  if (v || cf_tensor_numel(t) == 0) return v;
  int64_t ns[CF_MAX_DIMS];
  if (resolve_shape("reshape", t, ndim, shape, ns)) return NULL;  /* a count error: no copy */
  cf_tensor *c = cf_tensor_clone(t);
  if (!c) return NULL;
  v = view_reshape("reshape", c, ndim, ns);
  cf_tensor_release(c);
  return v;
}

cf_tensor *cf_view_expand(cf_tensor *t, int ndim, const int64_t *shape) {
  if (ndim < t->ndim || ndim > CF_MAX_DIMS) {
    char b[128];
    CF_ERR("expand: cannot expand %s to %d dims", cf_shape_str(t, b, sizeof b), ndim);
    return NULL;
  }
  char b[128];
  int lead = ndim - t->ndim;
  for (int d = 0; d < ndim; d++) {
    if (shape[d] >= 0 || (shape[d] == -1 && d >= lead)) continue;
    if (shape[d] == -1)
      CF_ERR("expand: -1 in dim %d asks to keep a size, but dim %d is a new leading dim (expanding %s to %d "
             "dims): give its size", d + 1, d + 1, cf_shape_str(t, b, sizeof b), ndim);
    else
      CF_ERR("expand: size %lld in dim %d is negative (-1 keeps an existing dim's size)", (long long)shape[d], d + 1);
    return NULL;
  }
  cf_tensor *v = view_of(t);
  if (!v) return NULL;
  v->ndim = ndim;
  int64_t numel = 1;
  for (int d = ndim - 1; d >= 0; d--) {
    int sd = d - lead;
    int64_t want = shape[d];
    bool ok = true;
    if (sd >= 0) {
      if (want == -1) want = t->shape[sd];
      if (t->shape[sd] == want) { v->shape[d] = want; v->stride[d] = t->stride[sd]; }
      else if (t->shape[sd] == 1) { v->shape[d] = want; v->stride[d] = 0; }
      else ok = false;
    } else {
      v->shape[d] = want; v->stride[d] = 0;
    }
    if (!ok) {
      CF_ERR("expand: dim %d of %s (size %lld) cannot expand to %lld (only a size-1 dim expands)", d + 1,
             cf_shape_str(t, b, sizeof b), (long long)t->shape[sd], (long long)shape[d]);
      cf_tensor_release(v);
      return NULL;
    }
    if (want > 0 && numel > INT64_MAX / 16 / want) {
      char w[CF_MAX_DIMS * 22 + 4];
      size_t k = 0;
      for (int e = 0; e < ndim; e++)
        k += (size_t)snprintf(w + k, sizeof w - k, "%s%lld", e ? " x " : "[", (long long)shape[e]);
      CF_ERR("expand: shape %s] too large: its element count overflows (from %s)", w, cf_shape_str(t, b, sizeof b));
      cf_tensor_release(v);
      return NULL;
    }
    numel *= want;
  }
  return v;
}

cf_tensor *cf_view_unsqueeze(cf_tensor *t, int dim) {
  if (t->ndim >= CF_MAX_DIMS) {
    CF_ERR("unsqueeze: a %d-d tensor cannot take another dim (at most %d)", t->ndim, CF_MAX_DIMS);
    return NULL;
  }
  if (dim < 0 || dim > t->ndim) {
    CF_ERR("unsqueeze: dim %d out of range for a %d-d tensor", dim + 1, t->ndim);
    return NULL;
  }
  cf_tensor *v = view_of(t);
  if (!v) return NULL;
  for (int d = t->ndim; d > dim; d--) { v->shape[d] = t->shape[d - 1]; v->stride[d] = t->stride[d - 1]; }
  v->shape[dim] = 1;
  v->stride[dim] = dim < t->ndim ? t->stride[dim] * t->shape[dim] : 1;
  v->ndim++;
  return v;
}

cf_tensor *cf_view_squeeze(cf_tensor *t, int dim) {
  if (check_dim("squeeze", t, dim)) return NULL;
  if (t->shape[dim] != 1) {
    char b[128];
    CF_ERR("squeeze: dim %d of %s has size %lld, not 1", dim + 1, cf_shape_str(t, b, sizeof b),
           (long long)t->shape[dim]);
    return NULL;
  }
  return cf_view_select(t, dim, 0);
}

/* ---------------------------------------------------------------- element access */

static int64_t elem_offset(const cf_tensor *t, const int64_t *index) {
  int64_t off = t->offset;
  for (int d = 0; d < t->ndim; d++) off += index[d] * t->stride[d];
  return off;
}

static double load(const void *base, cf_dtype dt, int64_t i) {
  switch (dt) {
    case CF_DTYPE_F32: return ((const float *)base)[i];
    case CF_DTYPE_F64: return ((const double *)base)[i];
    case CF_DTYPE_BF16: return cf_bf16_to_float(((const uint16_t *)base)[i]);
    case CF_DTYPE_I32: return ((const int32_t *)base)[i];
    case CF_DTYPE_I64: return (double)((const int64_t *)base)[i];
    default: return 0;
  }
}

bool cf_value_fits(cf_dtype dt, double v) {
  /* the bounds are powers of two, exact in double; a value truncates toward zero */
  if (dt == CF_DTYPE_I32) return v > -2147483649.0 && v < 2147483648.0;
  if (dt == CF_DTYPE_I64) return v >= -0x1p63 && v < 0x1p63;
  return true;
}

/* v must fit an integer dt (cf_value_fits): callers check before storing. */
static void store(void *base, cf_dtype dt, int64_t i, double v) {
  switch (dt) {
    case CF_DTYPE_F32: ((float *)base)[i] = (float)v; break;
    case CF_DTYPE_F64: ((double *)base)[i] = v; break;
    case CF_DTYPE_BF16: ((uint16_t *)base)[i] = cf_float_to_bf16((float)v); break;
    case CF_DTYPE_I32: ((int32_t *)base)[i] = (int32_t)v; break;
    case CF_DTYPE_I64: ((int64_t *)base)[i] = (int64_t)v; break;
    default: break;
  }
}

double cf_tensor_get(const cf_tensor *t, const int64_t *index) {
  return load(t->storage->data, t->dtype, elem_offset(t, index));
}

int cf_tensor_set(cf_tensor *t, const int64_t *index, double value) {
  if (check_fits("set", "value", t->dtype, value)) return -1;
  cf_tensor_bump_version(t);
  store(t->storage->data, t->dtype, elem_offset(t, index), value);
  return 0;
}

double cf_tensor_get_flat(const cf_tensor *t, int64_t i) {
  int64_t off = t->offset;
  for (int d = t->ndim - 1; d >= 0; d--) {
    int64_t k = i % t->shape[d];
    i /= t->shape[d];
    off += k * t->stride[d];
  }
  return load(t->storage->data, t->dtype, off);
}

/* ---------------------------------------------------------------- copies */

/* Copy src into dst (two same-shape views; the dtypes may differ) element by element in row-major
 * order, with fast paths for contiguous data. */
static void copy_strided(cf_tensor *dst, cf_tensor *src) {
  int64_t n = cf_tensor_numel(dst);
  if (n == 0) return;
  void *db = dst->storage->data;
  const void *sb = src->storage->data;
  bool fast = cf_tensor_is_contiguous(dst) && cf_tensor_is_contiguous(src);
  if (fast && dst->dtype == src->dtype) {
    size_t es = cf_dtype_size(dst->dtype);
    memmove((char *)db + (size_t)dst->offset * es, (const char *)sb + (size_t)src->offset * es,
            (size_t)n * es);
    return;
  }
  if (fast && dst->dtype == CF_DTYPE_F32 && src->dtype == CF_DTYPE_BF16) {
    float *d = (float *)db + dst->offset;
    const uint16_t *s = (const uint16_t *)sb + src->offset;
    #pragma omp parallel for if (n > 65536)
    for (int64_t i = 0; i < n; i++) d[i] = cf_bf16_to_float(s[i]);
    return;
  }
  int nd = dst->ndim;
  /* Row-wise path: the last dim is walked with its strides, the outer index computed once per
   * row (transpose -> reshape copies around attention spend their time here). */
  if (nd >= 1 && dst->dtype == src->dtype && (dst->dtype == CF_DTYPE_F32 || dst->dtype == CF_DTYPE_F64)) {
    int64_t inner = dst->shape[nd - 1], rows = n / inner;
    int64_t dsi = dst->stride[nd - 1], ssi = src->stride[nd - 1];
    bool f32 = dst->dtype == CF_DTYPE_F32;
    #pragma omp parallel for if (n > 65536)
    for (int64_t r = 0; r < rows; r++) {
      int64_t q = r, doff = dst->offset, soff = src->offset;
      for (int d = nd - 2; d >= 0; d--) {
        int64_t k = q % dst->shape[d];
        q /= dst->shape[d];
        doff += k * dst->stride[d];
        soff += k * src->stride[d];
      }
      if (f32) {
        float *dp = (float *)db + doff;
        const float *sp = (const float *)sb + soff;
        for (int64_t j = 0; j < inner; j++) dp[j * dsi] = sp[j * ssi];
      } else {
        double *dp = (double *)db + doff;
        const double *sp = (const double *)sb + soff;
        for (int64_t j = 0; j < inner; j++) dp[j * dsi] = sp[j * ssi];
      }
    }
    return;
  }
  #pragma omp parallel for if (n > 65536)
  for (int64_t i = 0; i < n; i++) {
    int64_t r = i, doff = dst->offset, soff = src->offset;
    for (int d = nd - 1; d >= 0; d--) {
      int64_t k = r % dst->shape[d];
      r /= dst->shape[d];
      doff += k * dst->stride[d];
      soff += k * src->stride[d];
    }
    if (dst->dtype == src->dtype && dst->dtype == CF_DTYPE_I64)
      ((int64_t *)db)[doff] = ((const int64_t *)sb)[soff];
    else
      store(db, dst->dtype, doff, load(sb, src->dtype, soff));
  }
}

/* The first and one-past-last byte a view can touch in its storage. */
static void byte_span(const cf_tensor *t, size_t *lo, size_t *hi) {
  int64_t last = t->offset;
  for (int d = 0; d < t->ndim; d++) last += (t->shape[d] - 1) * t->stride[d];
  size_t es = cf_dtype_size(t->dtype);
  *lo = (size_t)t->offset * es;
  *hi = ((size_t)last + 1) * es;
}

/* Whether writing dst element by element could overwrite src elements not yet read: the two
 * share a storage and their spans meet (and they are not the very same view, which copies
 * every element onto itself). */
static bool copy_overlaps(const cf_tensor *dst, const cf_tensor *src) {
  if (dst->storage != src->storage || cf_tensor_numel(dst) == 0) return false;
  bool same = dst->offset == src->offset && dst->dtype == src->dtype;
  for (int d = 0; same && d < dst->ndim; d++) same = dst->stride[d] == src->stride[d];
  if (same) return false;
  size_t dlo, dhi, slo, shi;
  byte_span(dst, &dlo, &dhi);
  byte_span(src, &slo, &shi);
  return dlo < shi && slo < dhi;
}

/* Every value of src must fit dst's integer dtype (a float, or an i64 into i32). A device tensor
 * is checked from a host copy (rare: ids are made as integers). */
static int check_range(const char *op, cf_tensor *src, cf_dtype dt) {
  if (cf_dtype_is_float(dt) || src->dtype == dt || (dt == CF_DTYPE_I64 && src->dtype == CF_DTYPE_I32)) return 0;
  cf_tensor *h = src;
  if (cf_tensor_device(src) != CF_DEVICE_CPU) {
    h = cf_tensor_to_device(src, CF_DEVICE_CPU);
    if (!h) return -1;
  }
  int rc = 0;
  int64_t n = cf_tensor_numel(h);
  for (int64_t i = 0; i < n && rc == 0; i++) {
    double v = cf_tensor_get_flat(h, i);
    if (!cf_value_fits(dt, v)) {
      char what[48];
      snprintf(what, sizeof what, "element %lld =", (long long)i + 1);
      rc = check_fits(op, what, dt, v);
    }
  }
  if (h != src) cf_tensor_release(h);
  return rc;
}

/* cf_tensor_copy_ with the op named in errors (copy_, to_dtype, ...); checked: src's values are
 * known to fit dst's dtype (a staging copy inside this function: a device source is then not
 * copied to the host a second time to check them). */
static int copy_impl(const char *op, cf_tensor *dst, cf_tensor *src, bool checked) {
  if (!cf_same_shape(dst, src)) {
    char a[128], b[128];
    return CF_ERR("%s: shapes differ: %s <- %s", op, cf_shape_str(dst, a, sizeof a),
                  cf_shape_str(src, b, sizeof b));
  }
  if (copy_overlaps(dst, src)) {
    cf_tensor *tmp = cf_tensor_clone(src);
    if (!tmp) return -1;
    int rc = copy_impl(op, dst, tmp, checked);
    cf_tensor_release(tmp);
    return rc;
  }
  if (!checked && check_range(op, src, dst->dtype)) return -1;   /* before anything is written */
  cf_tensor_bump_version(dst);
  cf_device dd = cf_tensor_device(dst), sd = cf_tensor_device(src);
  if (dd == CF_DEVICE_CPU && sd == CF_DEVICE_CPU) { copy_strided(dst, src); return 0; }
  /* A device is involved: move contiguous same-dtype bytes through the hooks. */
  const cf_device_hooks *h = cf_device_get(CF_DEVICE_CUDA);
  if (!h) return CF_ERR("copy: device %s is not available in this build", cf_device_name(CF_DEVICE_CUDA));
  if (dst->dtype != src->dtype || !cf_tensor_is_contiguous(dst) || !cf_tensor_is_contiguous(src)) {
    if (dd == sd) return h->copy_strided ? h->copy_strided(dst, src)
                                         : CF_ERR("copy: strided device copy unavailable");
    /* Stage through a contiguous tensor on the source device with the destination dtype. */
    cf_tensor *tmp = cf_tensor_empty(src->ndim, src->shape, dst->dtype, sd);
    if (!tmp) return -1;
    int rc = copy_impl(op, tmp, src, true);
    if (rc == 0) {
      if (cf_tensor_is_contiguous(dst)) {
        rc = h->copy(cf_tensor_data(dst), dd, cf_tensor_data(tmp), sd,
                     (size_t)cf_tensor_numel(dst) * cf_dtype_size(dst->dtype));
      } else {
        cf_tensor *tmp2 = cf_tensor_empty(dst->ndim, dst->shape, dst->dtype, dd);
        rc = tmp2 ? h->copy(cf_tensor_data(tmp2), dd, cf_tensor_data(tmp), sd,
                            (size_t)cf_tensor_numel(dst) * cf_dtype_size(dst->dtype)) : -1;
        if (rc == 0) rc = copy_impl(op, dst, tmp2, true);
        cf_tensor_release(tmp2);
      }
    }
    cf_tensor_release(tmp);
    return rc;
  }
  return h->copy(cf_tensor_data(dst), dd, cf_tensor_data(src), sd,
                 (size_t)cf_tensor_numel(dst) * cf_dtype_size(dst->dtype));
}

static int copy_named(const char *op, cf_tensor *dst, cf_tensor *src) { return copy_impl(op, dst, src, false); }

int cf_tensor_copy_(cf_tensor *dst, cf_tensor *src) { return copy_named("copy_", dst, src); }

int cf_tensor_fill_(cf_tensor *t, double value) {
  if (check_fits("fill_", "value", t->dtype, value)) return -1;
  if (cf_tensor_device(t) != CF_DEVICE_CPU) {
    cf_tensor *c = cf_tensor_full(t->ndim, t->shape, t->dtype, value);
    if (!c) return -1;
    int rc = cf_tensor_copy_(t, c);
    cf_tensor_release(c);
    return rc;
  }
  cf_tensor_bump_version(t);
  int64_t n = cf_tensor_numel(t);
  for (int64_t i = 0; i < n; i++) {
    int64_t r = i, off = t->offset;
    for (int d = t->ndim - 1; d >= 0; d--) { off += (r % t->shape[d]) * t->stride[d]; r /= t->shape[d]; }
    store(t->storage->data, t->dtype, off, value);
  }
  return 0;
}

cf_tensor *cf_tensor_clone(cf_tensor *t) {
  cf_tensor *c = cf_tensor_empty_uninit(t->ndim, t->shape, t->dtype, cf_tensor_device(t));
  if (!c) return NULL;
  if (cf_tensor_copy_(c, t)) { cf_tensor_release(c); return NULL; }
  return c;
}

cf_tensor *cf_tensor_contiguous(cf_tensor *t) {
  if (cf_tensor_is_contiguous(t)) { cf_tensor_retain(t); return t; }
  return cf_tensor_clone(t);
}

cf_tensor *cf_tensor_to_dtype(cf_tensor *t, cf_dtype dt) {
  cf_tensor *c = cf_tensor_empty_uninit(t->ndim, t->shape, dt, cf_tensor_device(t));
  if (!c) return NULL;
  if (copy_named("to_dtype", c, t)) { cf_tensor_release(c); return NULL; }
  return c;
}

cf_tensor *cf_tensor_to_device(cf_tensor *t, cf_device dev) {
  cf_tensor *c = cf_tensor_empty_uninit(t->ndim, t->shape, t->dtype, dev);
  if (!c) return NULL;
  if (cf_tensor_copy_(c, t)) { cf_tensor_release(c); return NULL; }
  return c;
}
