/* fuzz_safetensors.c - libFuzzer target for the safetensors reader (and writer round trip).
 *
 * Build and run with tests/fuzz/run.sh. For every input: cf_st_open_memory must either reject it
 * with a message or accept it; an accepted file must satisfy the reader's invariants (entries in
 * bounds, sizes consistent, ranges tiling the data section, find() consistent), convert to f32
 * without fault (cf_st_nonfinite agreeing with the converted values on NaN and inf), and survive
 * write_memory -> open_memory with identical names, dtypes, shapes, bytes and metadata. A violated property traps, which libFuzzer reports as a crash.
 */
#include "error.h"
#include "io/safetensors.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define REQUIRE(c)                                                                                            \
  do {                                                                                                        \
    if (!(c)) __builtin_trap();                                                                               \
  } while (0)

static void check_same(const cf_st_file *a, const cf_st_file *b) {
  REQUIRE(cf_st_count(a) == cf_st_count(b));
  /* by name: the writer lays tensors out by element size, then name, not in the input's order */
  for (size_t i = 0; i < cf_st_count(a); i++) {
    const cf_st_entry *x = cf_st_get(a, i), *y = cf_st_find(b, x->name);
    REQUIRE(y && strcmp(x->dtype, y->dtype) == 0 && x->ndim == y->ndim);
    for (int k = 0; k < x->ndim; k++) REQUIRE(x->shape[k] == y->shape[k]);
    REQUIRE(x->nbytes == y->nbytes && (x->nbytes == 0 || memcmp(x->data, y->data, x->nbytes) == 0));
  }
  for (size_t i = 0; i < cf_st_metadata_count(a); i++) {
    const char *k = NULL, *v = NULL;
    REQUIRE(cf_st_metadata_at(a, i, &k, &v) == 0);
    const char *w = cf_st_metadata(b, k);
    REQUIRE(w && strcmp(v, w) == 0);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  cf_st_file *f = cf_st_open_memory(data, size, "fuzz");
  if (!f) {
    REQUIRE(cf_error_message()[0] != 0);
    return 0;
  }
  size_t n = cf_st_count(f), covered = 0;
  const uint8_t *lo = data + size, *hi = data;
  for (size_t i = 0; i < n; i++) {
    const cf_st_entry *e = cf_st_get(f, i);
    REQUIRE(cf_st_find(f, e->name) == e);
    REQUIRE(e->ndim >= 0 && e->ndim <= CF_ST_MAX_DIMS);
    int64_t numel = cf_st_numel(e);
    REQUIRE(numel >= 0 && (uint64_t)numel * cf_st_dtype_size(e->dtype) == e->nbytes);
    const uint8_t *p = e->data;
    REQUIRE(p >= data && p + e->nbytes <= data + size);
    if (e->nbytes) {
      if (p < lo) lo = p;
      if (p + e->nbytes > hi) hi = p + e->nbytes;
    }
    covered += e->nbytes;
    if (numel <= (1 << 16)) {
      float *out = malloc((size_t)(numel ? numel : 1) * sizeof(float));
      REQUIRE(out && cf_st_to_f32(e, out) == 0);
      /* the in-place NaN / inf scan agrees with the widened values (F64 read as double: its
       * narrowing to f32 overflows) */
      int bad = 0;
      for (int64_t j = 0; j < numel; j++) {
        if (strcmp(e->dtype, "F64") == 0) {
          double x;
          memcpy(&x, p + 8 * j, 8);
          bad |= !isfinite(x);
        } else {
          bad |= !isfinite(out[j]);
        }
      }
      REQUIRE(cf_st_nonfinite(e) == bad);
      free(out);
    }
  }
  /* the ranges tile the data section: total bytes covered == the span, which ends the file */
  if (covered) REQUIRE(hi == data + size && (size_t)(hi - lo) == covered);

  /* writer round trip (metadata passed through as key, value, ..., NULL) */
  size_t nm = cf_st_metadata_count(f);
  const char **kv = calloc(2 * nm + 1, sizeof *kv);
  REQUIRE(kv);
  for (size_t i = 0; i < nm; i++) REQUIRE(cf_st_metadata_at(f, i, &kv[2 * i], &kv[2 * i + 1]) == 0);
  cf_st_entry *ents = calloc(n ? n : 1, sizeof *ents);
  REQUIRE(ents);
  for (size_t i = 0; i < n; i++) ents[i] = *cf_st_get(f, i);
  unsigned char *buf = NULL;
  size_t len = 0;
  if (cf_st_write_memory(ents, n, kv, &buf, &len) == 0) {
    cf_st_file *g = cf_st_open_memory(buf, len, "fuzz-rewritten");
    REQUIRE(g != NULL);
    check_same(f, g);
    REQUIRE(cf_st_metadata(g, "format") != NULL);
    cf_st_close(g);
    free(buf);
  } else {
    /* only an empty tensor name (legal in a file, refused by the writer) may stop the rewrite */
    int empty_name = 0;
    for (size_t i = 0; i < n; i++) empty_name |= ents[i].name[0] == 0;
    REQUIRE(empty_name);
  }
  free(ents);
  free(kv);
  cf_st_close(cf_st_retain(f));
  cf_st_close(f);
  return 0;
}
