/* tensor.h - storages and tensors: the data every other part of confit passes around.
 *
 * A storage owns refcounted bytes on one device (CPU memory from malloc; CUDA memory from the
 * caching allocator). A tensor is a view on a storage: dtype, shape, strides (in elements) and an
 * offset (in elements). Views (narrow, select, transpose, permute, view, expand) share the
 * storage and copy nothing. New storages are zero-filled, except those from the _uninit functions
 * (contents undefined; 0xFF bytes in poison mode, CONFIT_POISON=1).
 *
 * Ownership: every function that returns a tensor returns a NEW reference that the caller must
 * release with cf_tensor_release(). Nothing steals a reference unless its name says so.
 * Dims here are 0-based; negative dims are resolved by the callers (the Lua face).
 *
 * Autograd fields live on the tensor: requires_grad, grad (a tensor or NULL) and grad_fn (the
 * node that produced it, NULL for leaves). See autograd.h.
 *
 * Version counter: every write into an existing tensor (cf_tensor_copy_, cf_tensor_fill_,
 * cf_tensor_set, an optimizer step, clipping a gradient, t:set from Lua) bumps the version of
 * the storage it writes, which every view of that storage shares. Autograd records the versions
 * of the tensors a node's backward reads and refuses to run that backward when one has moved
 * (a gradient from overwritten values would be silently wrong). Code that writes into a tensor
 * it did not just allocate itself calls cf_tensor_bump_version.
 *
 * Integer dtypes: a value written into an i32 or i64 tensor (fill, full, arange, set, copies and
 * conversions from another dtype) must fit once truncated toward zero; NaN, infinities and
 * out-of-range values are refused with the op and the value named, never cast (undefined in C).
 */
#ifndef CF_TENSOR_H
#define CF_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CF_MAX_DIMS 8

typedef enum {
  CF_DTYPE_F32 = 0,
  CF_DTYPE_F64,
  CF_DTYPE_BF16,
  CF_DTYPE_I32,
  CF_DTYPE_I64,
  CF_DTYPE_COUNT
} cf_dtype;

/* The devices. Their names (tensor.c: cf_device_name, cf_device_from_name) are the one list of
 * the names a user may give: t:to, m:to, the tensor factories' device option and the recipes'
 * --device (through confit.devices) all read it; there is no alias ("gpu"). */
typedef enum { CF_DEVICE_CPU = 0, CF_DEVICE_CUDA = 1, CF_DEVICE_COUNT } cf_device;

typedef struct cf_storage cf_storage;
struct cf_storage {
  int refcount;
  cf_device device;
  void *data;
  size_t nbytes;
  /* Frees data; NULL means free(data). Called when refcount drops to 0. */
  void (*release)(cf_storage *s);
  uint64_t version; /* bumped by every in-place write (see the header) */
};

struct cf_node;
struct cf_tensor;

typedef struct cf_tensor {
  int refcount;
  cf_dtype dtype;
  int ndim;
  int64_t shape[CF_MAX_DIMS];
  int64_t stride[CF_MAX_DIMS]; /* in elements */
  int64_t offset;              /* in elements */
  cf_storage *storage;
  /* autograd */
  bool requires_grad;
  struct cf_tensor *grad;   /* accumulated gradient (owned reference) or NULL */
  struct cf_node *grad_fn;  /* owned reference to the producing node, NULL for leaves */
  /* The no-gradient op (its static name: "gt", "argsort") through which a tensor that does not
   * require grad depends on one that does, or NULL: backward names it instead of guessing. */
  const char *grad_cut_by;
} cf_tensor;

/* ---- dtypes ---- */
size_t cf_dtype_size(cf_dtype dt);
const char *cf_dtype_name(cf_dtype dt);          /* "f32", "f64", "bf16", "i32", "i64" */
int cf_dtype_from_name(const char *name, cf_dtype *out); /* 0 ok, -1 unknown (message set) */
bool cf_dtype_is_float(cf_dtype dt);
const char *cf_device_name(cf_device d);         /* "cpu", "cuda" */
/* 0 ok, -1 for any other name ("unknown device 'gpu' (expected cpu or cuda)" set) */
int cf_device_from_name(const char *name, cf_device *out);
const char *cf_device_choices(void);             /* "cpu or cuda": the names, for messages */

/* ---- storage ---- */
cf_storage *cf_storage_new(cf_device dev, size_t nbytes);      /* zero-filled */
/* Like cf_storage_new but the bytes are left as they come (no zero-fill pass): for buffers the
 * caller overwrites completely. In poison mode they are 0xFF bytes instead (see below). */
cf_storage *cf_storage_new_uninit(cf_device dev, size_t nbytes);
void cf_storage_retain(cf_storage *s);
void cf_storage_release(cf_storage *s);
/* Hook run once when an allocation fails, before retrying (the Lua face installs a full GC). */
void cf_set_alloc_retry_hook(void (*hook)(void *ud), void *ud);
/* Runs the retry hook once when one is set (device allocators call it before their retry). */
void cf_run_alloc_retry_hook(void);
/* Live bytes of CPU storages allocated by confit. */
size_t cf_cpu_bytes_live(void);
/* The most CPU tensor bytes live at once since the start or the last cf_cpu_reset_peak(), which
 * sets it to what is live now. */
size_t cf_cpu_bytes_peak(void);
void cf_cpu_reset_peak(void);
/* Poison mode (debugging): uninitialised allocations (the _uninit functions, every op output
 * cf_op allocates for a CF_FULLWRITE op) are filled with 0xFF bytes (NaN for floats, -1 for
 * integers), so an element a kernel forgot to write shows up. On when the environment variable
 * CONFIT_POISON is set to 1 (read once, at the first allocation); cf_set_poison overrides it and
 * returns the previous setting. Devices poison through their fill_bytes hook. */
bool cf_poison_enabled(void);
bool cf_set_poison(bool on);
/* Device hooks: the CUDA layer registers them; they stay NULL in a CPU-only build. */
typedef struct {
  void *(*alloc)(size_t nbytes);                  /* NULL + message on failure */
  void (*free)(void *p, size_t nbytes);
  int (*copy)(void *dst, cf_device ddev, const void *src, cf_device sdev, size_t nbytes);
  int (*memset0)(void *p, size_t nbytes);
  /* Every byte of p [nbytes] = byte (poison mode); NULL: uninitialised memory stays as it is. */
  int (*fill_bytes)(void *p, int byte, size_t nbytes);
  /* dst = src on the same device, any strides and dtypes (same shape). */
  int (*copy_strided)(struct cf_tensor *dst, struct cf_tensor *src);
} cf_device_hooks;
void cf_register_device(cf_device dev, const cf_device_hooks *hooks);
const cf_device_hooks *cf_device_get(cf_device dev);

/* ---- tensor lifetime ---- */
void cf_tensor_retain(cf_tensor *t);
void cf_tensor_release(cf_tensor *t);     /* NULL is fine */

/* ---- creation (new references; NULL + message on failure) ---- */
cf_tensor *cf_tensor_empty(int ndim, const int64_t *shape, cf_dtype dt, cf_device dev); /* zeroed */
/* Contiguous like cf_tensor_empty, contents undefined (0xFF bytes in poison mode): the caller
 * must write every element. cf_op allocates the outputs of CF_FULLWRITE ops (ops.def) this way. */
cf_tensor *cf_tensor_empty_uninit(int ndim, const int64_t *shape, cf_dtype dt, cf_device dev);
cf_tensor *cf_tensor_zeros(int ndim, const int64_t *shape, cf_dtype dt);
cf_tensor *cf_tensor_full(int ndim, const int64_t *shape, cf_dtype dt, double value);
cf_tensor *cf_tensor_scalar(double value, cf_dtype dt);   /* 0-d */
cf_tensor *cf_tensor_arange(double start, double end, double step, cf_dtype dt);
/* The same for integer bounds into i32 / i64, exact over the whole int64 range (the double
 * version loses integers past 2^53). */
cf_tensor *cf_tensor_arange_int(int64_t start, int64_t end, int64_t step, cf_dtype dt);
/* Copies nbytes = numel * dtype size of raw little-endian data. */
cf_tensor *cf_tensor_from_bytes(int ndim, const int64_t *shape, cf_dtype dt, const void *bytes,
                                size_t nbytes);
/* A tensor over an existing storage (retains it), contiguous from element offset. */
cf_tensor *cf_tensor_from_storage(cf_storage *s, int64_t offset, int ndim, const int64_t *shape,
                                  cf_dtype dt);
struct cf_rng;
cf_tensor *cf_tensor_rand(int ndim, const int64_t *shape, cf_dtype dt, struct cf_rng *g);  /* U[0,1) */
cf_tensor *cf_tensor_randn(int ndim, const int64_t *shape, cf_dtype dt, struct cf_rng *g); /* N(0,1) */

/* ---- metadata ---- */
int64_t cf_tensor_numel(const cf_tensor *t);
bool cf_tensor_is_contiguous(const cf_tensor *t);
cf_device cf_tensor_device(const cf_tensor *t);
void *cf_tensor_data(const cf_tensor *t);    /* pointer to element 0 of the view */
/* "[4 x 8]" into buf (returns buf), for error messages. */
const char *cf_shape_str(const cf_tensor *t, char *buf, size_t n);
bool cf_same_shape(const cf_tensor *a, const cf_tensor *b);

/* ---- views (share storage; no autograd: the op table wraps them with gradients) ---- */
cf_tensor *cf_view_narrow(cf_tensor *t, int dim, int64_t start, int64_t len);
cf_tensor *cf_view_select(cf_tensor *t, int dim, int64_t index);
cf_tensor *cf_view_transpose(cf_tensor *t, int d0, int d1);
cf_tensor *cf_view_permute(cf_tensor *t, const int *perm);
/* NULL + message when the strides do not allow it (use cf_tensor_reshape). One dim may be -1. */
cf_tensor *cf_view_reshape(cf_tensor *t, int ndim, const int64_t *shape);
/* A view when the strides allow it, else a view of a contiguous copy. One dim may be -1. */
cf_tensor *cf_tensor_reshape(cf_tensor *t, int ndim, const int64_t *shape);
cf_tensor *cf_view_expand(cf_tensor *t, int ndim, const int64_t *shape);
cf_tensor *cf_view_unsqueeze(cf_tensor *t, int dim);
cf_tensor *cf_view_squeeze(cf_tensor *t, int dim);
cf_tensor *cf_view_alias(cf_tensor *t);   /* same view, fresh tensor object (no grad fields) */

/* ---- copies and conversion ---- */
cf_tensor *cf_tensor_contiguous(cf_tensor *t); /* t itself (retained) when already contiguous */
cf_tensor *cf_tensor_clone(cf_tensor *t);      /* always a fresh contiguous copy */
cf_tensor *cf_tensor_to_dtype(cf_tensor *t, cf_dtype dt);  /* new contiguous tensor */
cf_tensor *cf_tensor_to_device(cf_tensor *t, cf_device dev);
/* dst = src elementwise (same shape, any strides and dtypes, same device). When src is a view
 * of dst's storage whose elements overlap dst's, it is copied through a temporary first. */
int cf_tensor_copy_(cf_tensor *dst, cf_tensor *src);
int cf_tensor_fill_(cf_tensor *t, double value);

/* ---- version counter (see the header) ---- */
static inline uint64_t cf_tensor_version(const cf_tensor *t) { return t->storage->version; }
static inline void cf_tensor_bump_version(cf_tensor *t) { t->storage->version++; }
/* Whether v, truncated toward zero, fits in integer dtype dt (always true for floating dtypes);
 * NaN and infinities never fit an integer dtype. */
bool cf_value_fits(cf_dtype dt, double v);

/* ---- element access (CPU; index has ndim entries, 0-based) ---- */
double cf_tensor_get(const cf_tensor *t, const int64_t *index);
/* 0, or -1 + message when value does not fit t's integer dtype (nothing written then). */
int cf_tensor_set(cf_tensor *t, const int64_t *index, double value);
/* Element i of the view in row-major order as double (CPU). */
double cf_tensor_get_flat(const cf_tensor *t, int64_t i);

/* ---- bf16 helpers ---- */
static inline float cf_bf16_to_float(uint16_t h) {
  union { uint32_t u; float f; } v;
  v.u = (uint32_t)h << 16;
  return v.f;
}
static inline uint16_t cf_float_to_bf16(float f) {
  union { uint32_t u; float f; } v;
  v.f = f;
  if ((v.u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((v.u >> 16) | 0x40); /* NaN stays NaN */
  uint32_t rounding = 0x7fffu + ((v.u >> 16) & 1u);
  return (uint16_t)((v.u + rounding) >> 16);
}

#endif
