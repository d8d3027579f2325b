/* safetensors.c - strict safetensors reader (mmap or borrowed memory) and atomic writer.
 *
 * Reading: the header is copied into a NUL-terminated buffer before cJSON sees it (so no parser
 * bug can read past it), pre-scanned (UTF-8, no raw control characters, no \u0000 escape that
 * would silently truncate a C string), parsed, and each entry checked on its own (dtype, shape,
 * offsets, size); then names are sorted to find duplicates (cJSON keeps them) and byte ranges
 * sorted to prove they tile the data section exactly. Every message starts with the file label
 * and names the tensor. The parsed JSON is dropped; entries own copies of names and metadata.
 *
 * Writing: tensors are laid out by element size descending (8, 4, 2, 1 bytes), then by name, so
 * each starts at a multiple of its element size (see st_order_cmp). The header is built by hand
 * (cJSON prints large integers as doubles), then header and data go to a fresh temporary file
 * "<path>.tmp-<pid>-<time>-<serial>" (jsonio's naming; O_EXCL | O_NOFOLLOW), which is fsync'd,
 * closed, renamed over path, and the directory fsync'd. Any failure before the rename unlinks the
 * temporary, so path is never partial. cf_st_write_file writes any bytes the same way.
 *
 * Files are opened O_NONBLOCK and checked to be regular files before anything is read, so a
 * FIFO where a model file should be is refused instead of blocking the caller forever.
 * Out of memory is reported as such, also inside cJSON (malloc sets errno to ENOMEM): a good
 * checkpoint never looks corrupt because memory ran out.
 */
#define _POSIX_C_SOURCE 200809L
#include "io/safetensors.h"
#include "io/half.h"
#include "io/json_whole.h"
#include "error.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct cf_st_file {
  atomic_int refs;
  char *label;
  const unsigned char *base; /* the whole image */
  size_t size;
  int mapped;                /* 1: munmap(base, size) at the last close */
  cf_st_entry *entries;
  size_t count;
  cf_st_entry **by_name;     /* entries sorted by name, for cf_st_find */
  char **meta;               /* key0, value0, key1, value1, ... */
  size_t nmeta;
};

/* ---- dtypes ---- */

static const struct { const char *name; size_t size; } st_dtypes[] = {
  {"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"F8_E4M3", 1}, {"F8_E5M2", 1},
  {"I64", 8}, {"I32", 4}, {"I16", 2}, {"I8", 1},
  {"U64", 8}, {"U32", 4}, {"U16", 2}, {"U8", 1}, {"BOOL", 1},
};

size_t cf_st_dtype_size(const char *dtype) {
  if (!dtype) return 0;
  for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
    if (strcmp(dtype, st_dtypes[i].name) == 0) return st_dtypes[i].size;
  return 0;
}

int64_t cf_st_numel(const cf_st_entry *e) {
  int64_t n = 1;
  for (int i = 0; i < e->ndim; i++)
    if (e->shape[i] == 0) return 0;
  for (int i = 0; i < e->ndim; i++) {
    if (e->shape[i] < 0 || n > INT64_MAX / e->shape[i]) return -1;
    n *= e->shape[i];
  }
  return n;
}

/* numel * elsize as a byte count; -1 on overflow past INT64_MAX. A zero dim makes it 0 whatever
 * the other dims are. */
static int64_t st_nbytes(const int64_t *shape, int ndim, size_t elsize) {
  for (int i = 0; i < ndim; i++)
    if (shape[i] == 0) return 0;
  int64_t n = (int64_t)elsize;
  for (int i = 0; i < ndim; i++) {
    if (shape[i] < 0 || n > INT64_MAX / shape[i]) return -1;
    n *= shape[i];
  }
  return n;
}

static void st_shape_str(char *buf, size_t cap, const int64_t *shape, int ndim) {
  size_t k = 0;
  k += (size_t)snprintf(buf + k, cap - k, "[");
  for (int i = 0; i < ndim && k < cap; i++)
    k += (size_t)snprintf(buf + k, cap - k, i ? ", %lld" : "%lld", (long long)shape[i]);
  if (k < cap) snprintf(buf + k, cap - k, "]");
}

/* ---- header pre-scan ---- */

/* Reject what cJSON would accept but a strict JSON reader would not, or what it would turn into
 * a truncated C string: invalid UTF-8, raw control characters, and \u0000 escapes. */
static int st_prescan(const unsigned char *h, size_t n, const char *label) {
  for (size_t i = 0; i < n;) {
    unsigned c = h[i];
    if (c < 0x20) {
      if (c == ' ' || c == '\t' || c == '\n' || c == '\r') { i++; continue; }
      return CF_ERR("%s: header is not valid JSON: raw control byte 0x%02x at byte %zu", label, c, i);
    }
    if (c == '\\') {
      if (i + 5 < n && h[i + 1] == 'u' && h[i + 2] == '0' && h[i + 3] == '0' && h[i + 4] == '0' &&
          h[i + 5] == '0')
        return CF_ERR("%s: header has a \\u0000 escape at byte %zu (NUL in a name)", label, i);
      i += (i + 1 < n && h[i + 1] >= 0x20 && h[i + 1] < 0x80) ? 2 : 1; /* skip an escaped ASCII char */
      continue;
    }
    if (c < 0x80) { i++; continue; }
    /* multi-byte UTF-8: reject overlongs, surrogates and code points past U+10FFFF */
    size_t len;
    unsigned lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) len = 2;
    else if (c >= 0xe0 && c <= 0xef) {
      len = 3;
      if (c == 0xe0) lo = 0xa0;
      if (c == 0xed) hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      len = 4;
      if (c == 0xf0) lo = 0x90;
      if (c == 0xf4) hi = 0x8f;
    } else {
      return CF_ERR("%s: header is not valid UTF-8 (byte 0x%02x at %zu)", label, c, i);
    }
    if (i + len > n) return CF_ERR("%s: header is not valid UTF-8 (truncated sequence at %zu)", label, i);
    for (size_t k = 1; k < len; k++) {
      unsigned b = h[i + k];
      unsigned l = k == 1 ? lo : 0x80, u = k == 1 ? hi : 0xbf;
      if (b < l || b > u) return CF_ERR("%s: header is not valid UTF-8 (byte 0x%02x at %zu)", label, b, i + k);
    }
    i += len;
  }
  return 0;
}

/* ---- entry parsing ---- */

/* A JSON number that is a non-negative integer below 2^53 (exact in a double). 0 ok, -1 negative,
 * -2 not an integer / not a number, -3 too large. */
static int st_uint(const cJSON *v, uint64_t *out) {
  if (!cJSON_IsNumber(v)) return -2;
  double d = v->valuedouble;
  if (!isfinite(d) || d != floor(d)) return -2;
  if (d < 0) return -1;
  if (d > 9007199254740992.0) return -3;
  *out = (uint64_t)d;
  return 0;
}

typedef struct {
  uint64_t begin, end;
  size_t idx;
} st_range;

static int st_range_cmp(const void *a, const void *b) {
  const st_range *x = a, *y = b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  if (x->end != y->end) return x->end < y->end ? -1 : 1;
  return 0;
}

static int st_name_cmp(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static int st_entry_cmp(const void *a, const void *b) {
  return strcmp((*(cf_st_entry *const *)a)->name, (*(cf_st_entry *const *)b)->name);
}

/* The first name that appears twice in names[0..n) (sorted in place), or NULL. */
static const char *st_find_dup(const char **names, size_t n) {
  qsort(names, n, sizeof *names, st_name_cmp);
  for (size_t i = 1; i < n; i++)
    if (strcmp(names[i - 1], names[i]) == 0) return names[i];
  return NULL;
}

static char *st_strdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *p = malloc(n);
  if (p) memcpy(p, s, n);
  return p;
}

static void st_free(cf_st_file *f) {
  if (!f) return;
  for (size_t i = 0; i < f->count; i++) free(f->entries[i].name);
  free(f->entries);
  free(f->by_name);
  for (size_t i = 0; i < 2 * f->nmeta; i++) free(f->meta[i]);
  free(f->meta);
  if (f->mapped && f->base) munmap((void *)f->base, f->size);
  free(f->label);
  free(f);
}

/* Parse one tensor entry (JSON object v named name) into e. data_size is the data section's. */
static int st_parse_entry(const char *label, const char *name, const cJSON *v, const unsigned char *data,
                          uint64_t data_size, cf_st_entry *e) {
  if (!cJSON_IsObject(v)) return CF_ERR("%s: tensor '%.200s': entry is not an object", label, name);
  static const char *const keys[] = {"dtype", "shape", "data_offsets"};
  for (int i = 0; i < 3; i++) {
    int seen = 0;
    for (const cJSON *c = v->child; c; c = c->next) seen += strcmp(c->string, keys[i]) == 0;
    if (seen > 1) return CF_ERR("%s: tensor '%.200s': duplicate key '%s' in its entry", label, name, keys[i]);
  }
  const cJSON *dt = cJSON_GetObjectItemCaseSensitive(v, "dtype");
  const cJSON *sh = cJSON_GetObjectItemCaseSensitive(v, "shape");
  const cJSON *off = cJSON_GetObjectItemCaseSensitive(v, "data_offsets");
  if (!dt) return CF_ERR("%s: tensor '%.200s': missing dtype", label, name);
  if (!cJSON_IsString(dt)) return CF_ERR("%s: tensor '%.200s': dtype is not a string", label, name);
  size_t elsize = cf_st_dtype_size(dt->valuestring);
  if (!elsize) return CF_ERR("%s: tensor '%.200s': unknown dtype '%.32s'", label, name, dt->valuestring);
  strcpy(e->dtype, dt->valuestring); /* known dtypes fit in 8 bytes */
  if (!sh) return CF_ERR("%s: tensor '%.200s': missing shape", label, name);
  if (!cJSON_IsArray(sh)) return CF_ERR("%s: tensor '%.200s': shape is not an array", label, name);
  int nd = cJSON_GetArraySize(sh);
  if (nd > CF_ST_MAX_DIMS)
    return CF_ERR("%s: tensor '%.200s': shape has %d dims, more than %d", label, name, nd, CF_ST_MAX_DIMS);
  e->ndim = nd;
  int k = 0;
  for (const cJSON *d = sh->child; d; d = d->next, k++) {
    uint64_t u = 0;
    int rc = st_uint(d, &u);
    if (rc == -1) return CF_ERR("%s: tensor '%.200s': shape has a negative dimension (dim %d)", label, name, k);
    if (rc == -2) return CF_ERR("%s: tensor '%.200s': shape has a non-integer dimension (dim %d)", label, name, k);
    if (rc == -3) return CF_ERR("%s: tensor '%.200s': shape dimension %d is too large", label, name, k);
    e->shape[k] = (int64_t)u;
  }
  if (!off) return CF_ERR("%s: tensor '%.200s': missing data_offsets", label, name);
  if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2)
    return CF_ERR("%s: tensor '%.200s': data_offsets is not an array of 2 integers", label, name);
  uint64_t b = 0, en = 0;
  if (st_uint(off->child, &b) || st_uint(off->child->next, &en))
    return CF_ERR("%s: tensor '%.200s': data_offsets are not non-negative integers", label, name);
  if (b > en)
    return CF_ERR("%s: tensor '%.200s': data_offsets begin %llu > end %llu", label, name,
                  (unsigned long long)b, (unsigned long long)en);
  if (en > data_size)
    return CF_ERR("%s: tensor '%.200s': data_offsets [%llu, %llu] out of range of the %llu-byte data section",
                  label, name, (unsigned long long)b, (unsigned long long)en, (unsigned long long)data_size);
  int64_t want = st_nbytes(e->shape, e->ndim, elsize);
  char shs[160];
  st_shape_str(shs, sizeof shs, e->shape, e->ndim);
  if (want < 0 || (uint64_t)want != en - b)
    return CF_ERR("%s: tensor '%.200s': shape %s x %s (%zu bytes each) does not match data_offsets [%llu, %llu] "
                  "(%llu bytes): size mismatch", label, name, shs, e->dtype, elsize,
                  (unsigned long long)b, (unsigned long long)en, (unsigned long long)(en - b));
  e->data = data + b;
  e->nbytes = (size_t)(en - b);
  return 0;
}

static int st_parse_metadata(cf_st_file *f, const cJSON *v) {
  const char *label = f->label;
  if (!cJSON_IsObject(v)) return CF_ERR("%s: __metadata__ is not a string-to-string map (not an object)", label);
  size_t n = 0;
  for (const cJSON *c = v->child; c; c = c->next) {
    if (!cJSON_IsString(c))
      return CF_ERR("%s: __metadata__ is not a string-to-string map (key '%.200s' has a non-string value)",
                    label, c->string);
    n++;
  }
  f->meta = calloc(2 * n + 1, sizeof *f->meta);
  if (!f->meta) return CF_ERR("%s: out of memory for __metadata__", label);
  const char **keys = calloc(n ? n : 1, sizeof *keys);
  if (!keys) return CF_ERR("%s: out of memory for __metadata__", label);
  n = 0;
  for (const cJSON *c = v->child; c; c = c->next) keys[n++] = c->string;
  const char *dup = st_find_dup(keys, n);
  if (dup) {
    CF_ERR("%s: __metadata__ has a duplicate key '%.200s'", label, dup);
    free(keys);
    return -1;
  }
  free(keys);
  for (const cJSON *c = v->child; c; c = c->next) {
    f->meta[2 * f->nmeta] = st_strdup(c->string);
    f->meta[2 * f->nmeta + 1] = st_strdup(c->valuestring);
    f->nmeta++;
    if (!f->meta[2 * f->nmeta - 2] || !f->meta[2 * f->nmeta - 1])
      return CF_ERR("%s: out of memory for __metadata__", label);
  }
  return 0;
}

/* Validate the image in f->base/f->size and fill entries + metadata. */
static int st_parse(cf_st_file *f) {
  const char *label = f->label;
  const unsigned char *p = f->base;
  if (f->size < 8)
    return CF_ERR("%s: file is %zu bytes, shorter than the 8-byte header length", label, f->size);
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | p[i];
  if (hlen > CF_ST_MAX_HEADER)
    return CF_ERR("%s: header length %llu exceeds the 100 MB limit", label, (unsigned long long)hlen);
  if (hlen > f->size - 8)
    return CF_ERR("%s: header length %llu runs past the end of the file (%zu bytes)", label,
                  (unsigned long long)hlen, f->size);
  const unsigned char *data = p + 8 + hlen;
  uint64_t data_size = f->size - 8 - hlen;
  if (st_prescan(p + 8, (size_t)hlen, label)) return -1;

  char *hdr = malloc((size_t)hlen + 1);
  if (!hdr) return CF_ERR("%s: out of memory for a %llu-byte header", label, (unsigned long long)hlen);
  memcpy(hdr, p + 8, (size_t)hlen);
  hdr[hlen] = 0;
  size_t at;
  int trailing;
  errno = 0;
  cJSON *root = cf_json_parse_whole(hdr, (size_t)hlen, &at, &trailing);
  if (!root) {
    int oom = !trailing && errno == ENOMEM; /* cJSON's allocation failed: the header may well be fine */
    free(hdr);
    if (oom) return CF_ERR("%s: out of memory parsing the %llu-byte header", label, (unsigned long long)hlen);
    if (trailing)
      return CF_ERR("%s: header is not valid JSON: trailing bytes after the top-level value at byte %zu", label, at);
    return CF_ERR("%s: header is not valid JSON (error near byte %zu)", label, at);
  }
  free(hdr);
  int rc = -1;
  st_range *ranges = NULL;
  if (!cJSON_IsObject(root)) {
    CF_ERR("%s: header is not a JSON object", label);
    goto done;
  }
  size_t n = 0, nmeta_keys = 0;
  for (const cJSON *c = root->child; c; c = c->next) {
    if (strcmp(c->string, "__metadata__") == 0) nmeta_keys++;
    else n++;
  }
  if (nmeta_keys > 1) {
    CF_ERR("%s: duplicate name '__metadata__' in the header", label);
    goto done;
  }
  f->entries = calloc(n ? n : 1, sizeof *f->entries);
  f->by_name = calloc(n ? n : 1, sizeof *f->by_name);
  ranges = calloc(n ? n : 1, sizeof *ranges);
  if (!f->entries || !f->by_name || !ranges) {
    CF_ERR("%s: out of memory for %zu entries", label, n);
    goto done;
  }
  for (const cJSON *c = root->child; c; c = c->next) {
    if (strcmp(c->string, "__metadata__") == 0) {
      if (st_parse_metadata(f, c)) goto done;
      continue;
    }
    cf_st_entry *e = &f->entries[f->count];
    if (st_parse_entry(label, c->string, c, data, data_size, e)) goto done;
    e->name = st_strdup(c->string);
    if (!e->name) {
      CF_ERR("%s: out of memory", label);
      goto done;
    }
    f->by_name[f->count] = e;
    ranges[f->count].begin = (uint64_t)((const unsigned char *)e->data - data);
    ranges[f->count].end = ranges[f->count].begin + e->nbytes;
    ranges[f->count].idx = f->count;
    f->count++;
  }
  qsort(f->by_name, n, sizeof *f->by_name, st_entry_cmp);
  for (size_t i = 1; i < n; i++) {
    if (strcmp(f->by_name[i - 1]->name, f->by_name[i]->name) == 0) {
      CF_ERR("%s: duplicate tensor name '%.200s' in the header", label, f->by_name[i]->name);
      goto done;
    }
  }
  /* The ranges, sorted, must tile [0, data_size): each begins where the previous ended. */
  qsort(ranges, n, sizeof *ranges, st_range_cmp);
  uint64_t pos = 0;
  const char *prev = NULL;
  for (size_t i = 0; i < n; i++) {
    const char *nm = f->entries[ranges[i].idx].name;
    if (ranges[i].begin < pos) {
      CF_ERR("%s: tensor '%.200s': data_offsets [%llu, %llu] overlap tensor '%.200s' (which ends at %llu)", label, nm,
             (unsigned long long)ranges[i].begin, (unsigned long long)ranges[i].end, prev ? prev : "?",
             (unsigned long long)pos);
      goto done;
    }
    if (ranges[i].begin > pos) {
      CF_ERR("%s: tensor '%.200s': gap of %llu unused bytes before its data_offsets [%llu, %llu] "
             "(the data section must be fully covered)", label, nm, (unsigned long long)(ranges[i].begin - pos),
             (unsigned long long)ranges[i].begin, (unsigned long long)ranges[i].end);
      goto done;
    }
    pos = ranges[i].end;
    prev = nm;
  }
  if (pos != data_size) {
    CF_ERR("%s: %llu trailing bytes after the last tensor's data (data section is %llu bytes, tensors cover %llu)",
           label, (unsigned long long)(data_size - pos), (unsigned long long)data_size, (unsigned long long)pos);
    goto done;
  }
  rc = 0;
done:
  free(ranges);
  cJSON_Delete(root);
  return rc;
}

static cf_st_file *st_new(const char *label) {
  cf_st_file *f = calloc(1, sizeof *f);
  if (!f) {
    CF_ERR("%s: out of memory", label ? label : "safetensors");
    return NULL;
  }
  atomic_init(&f->refs, 1);
  f->label = st_strdup(label ? label : "<memory>");
  if (!f->label) {
    free(f);
    CF_ERR("out of memory");
    return NULL;
  }
  return f;
}

static const char *st_kind(mode_t m) {
  if (S_ISDIR(m)) return "a folder";
  if (S_ISFIFO(m)) return "a FIFO";
  if (S_ISCHR(m) || S_ISBLK(m)) return "a device";
  if (S_ISSOCK(m)) return "a socket";
  return "not a plain file";
}

/* path opened for reading after checking that it is a regular file: O_NONBLOCK first (opening a
 * FIFO that no one writes would block), fstat, refuse anything else, then blocking reads again.
 * The descriptor, or -1 + CF_ERR naming path (*missing = 1 when path does not exist). */
static int st_open_regular(const char *path, struct stat *st, int *missing) {
  if (missing) *missing = 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    int err = errno;
    if (missing) *missing = err == ENOENT;
    return CF_ERR("%s: cannot open: %s", path, strerror(err));
  }
  if (fstat(fd, st) != 0) {
    int err = errno;
    close(fd);
    return CF_ERR("%s: cannot stat: %s", path, strerror(err));
  }
  if (!S_ISREG(st->st_mode)) {
    close(fd);
    return CF_ERR("%s: not a regular file (it is %s)", path, st_kind(st->st_mode));
  }
  int fl = fcntl(fd, F_GETFL);
  if (fl == -1 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) == -1) {
    int err = errno;
    close(fd);
    return CF_ERR("%s: cannot read: %s", path, strerror(err));
  }
  return fd;
}

int cf_st_read_file(const char *path, char **out, size_t *len, int *missing) {
  if (!path || !out || !len) return CF_ERR("cf_st_read_file: NULL argument");
  *out = NULL;
  *len = 0;
  struct stat st;
  int fd = st_open_regular(path, &st, missing);
  if (fd < 0) return -1;
  if ((uintmax_t)st.st_size >= (uintmax_t)SIZE_MAX / 2) {
    close(fd);
    return CF_ERR("%s: file of %lld bytes is too large to read", path, (long long)st.st_size);
  }
  size_t size = (size_t)st.st_size, n = 0;
  char *buf = malloc(size + 1);
  if (!buf) {
    close(fd);
    return CF_ERR("%s: out of memory reading %zu bytes", path, size);
  }
  while (n < size) {
    ssize_t r = read(fd, buf + n, size - n);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      int err = errno;
      free(buf);
      close(fd);
      return CF_ERR("%s: cannot read: %s", path, strerror(err));
    }
    if (r == 0) break;
    n += (size_t)r;
  }
  close(fd);
  if (n != size) {
    free(buf);
    return CF_ERR("%s: cannot read: the file shrank from %zu to %zu bytes while being read", path, size, n);
  }
  buf[n] = 0;
  *out = buf;
  *len = n;
  return 0;
}

cf_st_file *cf_st_open_memory(const void *data, size_t size, const char *label) {
  if (!data && size) {
    CF_ERR("%s: NULL data with size %zu", label ? label : "<memory>", size);
    return NULL;
  }
  cf_st_file *f = st_new(label);
  if (!f) return NULL;
  f->base = data;
  f->size = size;
  if (st_parse(f)) {
    st_free(f);
    return NULL;
  }
  return f;
}

cf_st_file *cf_st_open(const char *path) {
  if (!path) {
    CF_ERR("cf_st_open: NULL path");
    return NULL;
  }
  struct stat st;
  int fd = st_open_regular(path, &st, NULL);
  if (fd < 0) return NULL;
  size_t size = (size_t)st.st_size;
  if (size < 8) { /* mmap of an empty file fails; give the format's message instead */
    close(fd);
    CF_ERR("%s: file is %zu bytes, shorter than the 8-byte header length", path, size);
    return NULL;
  }
  void *m = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
  int err = errno;
  close(fd);
  if (m == MAP_FAILED) {
    CF_ERR("%s: cannot mmap %zu bytes: %s", path, size, strerror(err));
    return NULL;
  }
  cf_st_file *f = st_new(path);
  if (!f) {
    munmap(m, size);
    return NULL;
  }
  f->base = m;
  f->size = size;
  f->mapped = 1;
  if (st_parse(f)) {
    st_free(f);
    return NULL;
  }
  return f;
}

cf_st_file *cf_st_retain(cf_st_file *f) {
  if (f) atomic_fetch_add(&f->refs, 1);
  return f;
}

void cf_st_close(cf_st_file *f) {
  if (f && atomic_fetch_sub(&f->refs, 1) == 1) st_free(f);
}

size_t cf_st_count(const cf_st_file *f) { return f ? f->count : 0; }

const cf_st_entry *cf_st_get(const cf_st_file *f, size_t i) {
  return f && i < f->count ? &f->entries[i] : NULL;
}

const cf_st_entry *cf_st_find(const cf_st_file *f, const char *name) {
  if (!f || !name) return NULL;
  size_t lo = 0, hi = f->count;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int c = strcmp(f->by_name[mid]->name, name);
    if (c == 0) return f->by_name[mid];
    if (c < 0) lo = mid + 1;
    else hi = mid;
  }
  return NULL;
}

const char *cf_st_metadata(const cf_st_file *f, const char *key) {
  if (!f || !key) return NULL;
  for (size_t i = 0; i < f->nmeta; i++)
    if (strcmp(f->meta[2 * i], key) == 0) return f->meta[2 * i + 1];
  return NULL;
}

size_t cf_st_metadata_count(const cf_st_file *f) { return f ? f->nmeta : 0; }

int cf_st_metadata_at(const cf_st_file *f, size_t i, const char **key, const char **value) {
  if (!f || i >= f->nmeta) return CF_ERR("cf_st_metadata_at: index %zu out of range (%zu keys)", i, f ? f->nmeta : 0);
  if (key) *key = f->meta[2 * i];
  if (value) *value = f->meta[2 * i + 1];
  return 0;
}

/* ---- writer ---- */

typedef struct {
  char *p;
  size_t len, cap;
  int oom;
} st_buf;

static void sb_put(st_buf *b, const char *s, size_t n) {
  if (b->oom) return;
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (b->len + n + 1 > cap) cap *= 2;
    char *q = realloc(b->p, cap);
    if (!q) {
      b->oom = 1;
      return;
    }
    b->p = q;
    b->cap = cap;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = 0;
}

static void sb_str(st_buf *b, const char *s) { sb_put(b, s, strlen(s)); }

/* A JSON string literal; bytes >= 0x80 pass through (names are UTF-8). */
static void sb_json(st_buf *b, const char *s) {
  sb_put(b, "\"", 1);
  for (const unsigned char *q = (const unsigned char *)s; *q; q++) {
    char esc[8];
    switch (*q) {
    case '"': sb_put(b, "\\\"", 2); break;
    case '\\': sb_put(b, "\\\\", 2); break;
    case '\n': sb_put(b, "\\n", 2); break;
    case '\r': sb_put(b, "\\r", 2); break;
    case '\t': sb_put(b, "\\t", 2); break;
    case '\b': sb_put(b, "\\b", 2); break;
    case '\f': sb_put(b, "\\f", 2); break;
    default:
      if (*q < 0x20) {
        snprintf(esc, sizeof esc, "\\u%04x", *q);
        sb_put(b, esc, 6);
      } else {
        sb_put(b, (const char *)q, 1);
      }
    }
  }
  sb_put(b, "\"", 1);
}

/* Element size of an entry's dtype (which need not be NUL-terminated); 0 when unknown. */
static size_t st_entry_elsize(const cf_st_entry *e) {
  char dt[sizeof e->dtype + 1];
  memcpy(dt, e->dtype, sizeof e->dtype);
  dt[sizeof e->dtype] = 0;
  return cf_st_dtype_size(dt);
}

/* The write order: element size descending, then name (bytewise; names are unique, so the order
 * is total and the file does not depend on the caller's order). The format allows no padding
 * between tensors and the data section starts 8-aligned (the header is padded with spaces), so
 * with all 8-byte tensors first, then 4, 2 and 1, every tensor starts at a multiple of its
 * element size. In plain name order an odd-length bf16 tensor would push the f32 tensors after
 * it off 4-byte alignment, and loaders (cf_qwen2_load) would have to copy them instead of using
 * the mapping in place. Hugging Face's writer does the same (dtype alignment descending, then
 * name; it also groups dtypes within a size, which alignment does not need). */
static int st_order_cmp(const void *a, const void *b) {
  const cf_st_entry *x = *(const cf_st_entry *const *)a, *y = *(const cf_st_entry *const *)b;
  size_t sx = st_entry_elsize(x), sy = st_entry_elsize(y);
  if (sx != sy) return sx > sy ? -1 : 1;
  return strcmp(x->name, y->name);
}

/* Check entries and build the padded header (8-byte length prefix included) into *hb; *order gets
 * a malloc'd array of the n entries in write order (st_order_cmp) for the data (free it). */
static int st_build_header(const char *label, const cf_st_entry *entries, size_t n, const char *const *meta_kv,
                           st_buf *hb, const cf_st_entry ***order) {
  *order = NULL;
  if (n && !entries) return CF_ERR("%s: NULL entries with n = %zu", label, n);
  for (size_t i = 0; i < n; i++) {
    const cf_st_entry *e = &entries[i];
    if (!e->name || !e->name[0]) return CF_ERR("%s: entry %zu has no name", label, i);
    if (strcmp(e->name, "__metadata__") == 0) return CF_ERR("%s: '__metadata__' is not a tensor name", label);
    char dt[sizeof e->dtype + 1];
    memcpy(dt, e->dtype, sizeof e->dtype);
    dt[sizeof e->dtype] = 0;
    size_t elsize = cf_st_dtype_size(dt);
    if (!elsize) return CF_ERR("%s: tensor '%.200s': unknown dtype '%s'", label, e->name, dt);
    if (e->ndim < 0 || e->ndim > CF_ST_MAX_DIMS)
      return CF_ERR("%s: tensor '%.200s': %d dims, must be 0..%d", label, e->name, e->ndim, CF_ST_MAX_DIMS);
    for (int k = 0; k < e->ndim; k++)
      if (e->shape[k] < 0) return CF_ERR("%s: tensor '%.200s': negative dimension %d", label, e->name, k);
    int64_t want = st_nbytes(e->shape, e->ndim, elsize);
    if (want < 0 || (uint64_t)want != (uint64_t)e->nbytes) {
      char shs[160];
      st_shape_str(shs, sizeof shs, e->shape, e->ndim);
      return CF_ERR("%s: tensor '%.200s': shape %s x %s needs %lld bytes, entry has %zu: size mismatch", label,
                    e->name, shs, dt, (long long)want, e->nbytes);
    }
    if (e->nbytes && !e->data) return CF_ERR("%s: tensor '%.200s': NULL data", label, e->name);
  }
  const char **names = calloc(n ? n : 1, sizeof *names);
  if (!names) return CF_ERR("%s: out of memory", label);
  for (size_t i = 0; i < n; i++) names[i] = entries[i].name;
  const char *dup = st_find_dup(names, n);
  if (dup) {
    CF_ERR("%s: duplicate tensor name '%.200s'", label, dup);
    free(names);
    return -1;
  }
  free(names);
  size_t nkv = 0;
  if (meta_kv) {
    while (meta_kv[2 * nkv]) {
      if (!meta_kv[2 * nkv + 1])
        return CF_ERR("%s: metadata key '%.200s' has no value (meta_kv must be key, value, ..., NULL)", label,
                      meta_kv[2 * nkv]);
      nkv++;
    }
    const char **keys = calloc(nkv ? nkv : 1, sizeof *keys);
    if (!keys) return CF_ERR("%s: out of memory", label);
    for (size_t j = 0; j < nkv; j++) keys[j] = meta_kv[2 * j];
    const char *dupk = st_find_dup(keys, nkv);
    if (dupk) {
      CF_ERR("%s: duplicate metadata key '%.200s'", label, dupk);
      free(keys);
      return -1;
    }
    free(keys);
  }
  const cf_st_entry **ord = calloc(n ? n : 1, sizeof *ord);
  if (!ord) return CF_ERR("%s: out of memory", label);
  for (size_t i = 0; i < n; i++) ord[i] = &entries[i];
  qsort(ord, n, sizeof *ord, st_order_cmp);
  sb_put(hb, "\0\0\0\0\0\0\0\0", 8);
  sb_str(hb, "{\"__metadata__\":{");
  int has_format = 0;
  for (size_t j = 0; j < nkv; j++)
    if (strcmp(meta_kv[2 * j], "format") == 0) has_format = 1;
  if (!has_format) sb_str(hb, "\"format\":\"pt\"");
  for (size_t j = 0; j < nkv; j++) {
    if (j || !has_format) sb_str(hb, ",");
    sb_json(hb, meta_kv[2 * j]);
    sb_str(hb, ":");
    sb_json(hb, meta_kv[2 * j + 1]);
  }
  sb_str(hb, "}");
  uint64_t off = 0;
  for (size_t i = 0; i < n; i++) {
    const cf_st_entry *e = ord[i];
    char num[64], dt[sizeof e->dtype + 1];
    memcpy(dt, e->dtype, sizeof e->dtype);
    dt[sizeof e->dtype] = 0;
    sb_str(hb, ",");
    sb_json(hb, e->name);
    sb_str(hb, ":{\"dtype\":\"");
    sb_str(hb, dt);
    sb_str(hb, "\",\"shape\":[");
    for (int k = 0; k < e->ndim; k++) {
      snprintf(num, sizeof num, k ? ",%lld" : "%lld", (long long)e->shape[k]);
      sb_str(hb, num);
    }
    snprintf(num, sizeof num, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
             (unsigned long long)(off + e->nbytes));
    sb_str(hb, num);
    off += e->nbytes;
  }
  sb_str(hb, "}");
  /* pad with spaces so the data section (after the 8-byte prefix and the header) starts 8-aligned */
  while (!hb->oom && hb->len % 8) sb_put(hb, " ", 1); /* sb_put adds nothing once out of memory */
  if (hb->oom) {
    free(ord);
    return CF_ERR("%s: out of memory building the header", label);
  }
  uint64_t hlen = hb->len - 8;
  if (hlen > CF_ST_MAX_HEADER) {
    free(ord);
    return CF_ERR("%s: header would be %llu bytes, over the 100 MB limit", label, (unsigned long long)hlen);
  }
  for (int k = 0; k < 8; k++) hb->p[k] = (char)((hlen >> (8 * k)) & 0xff);
  *order = ord;
  return 0;
}

int cf_st_write_memory(const cf_st_entry *entries, size_t n, const char *const *meta_kv, unsigned char **out,
                       size_t *len) {
  if (!out || !len) return CF_ERR("cf_st_write_memory: NULL out or len");
  *out = NULL;
  *len = 0;
  st_buf hb = {0};
  const cf_st_entry **ord = NULL;
  if (st_build_header("<memory>", entries, n, meta_kv, &hb, &ord)) {
    free(hb.p);
    return -1;
  }
  size_t total = hb.len;
  for (size_t i = 0; i < n; i++) total += entries[i].nbytes;
  unsigned char *buf = malloc(total ? total : 1);
  if (!buf) {
    free(hb.p);
    free(ord);
    return CF_ERR("cf_st_write_memory: out of memory for %zu bytes", total);
  }
  memcpy(buf, hb.p, hb.len);
  size_t at = hb.len;
  for (size_t i = 0; i < n; i++) {
    if (ord[i]->nbytes) memcpy(buf + at, ord[i]->data, ord[i]->nbytes);
    at += ord[i]->nbytes;
  }
  free(hb.p);
  free(ord);
  *out = buf;
  *len = total;
  return 0;
}

static int st_write_all(int fd, const void *p, size_t n) {
  const unsigned char *q = p;
  while (n) {
    ssize_t w = write(fd, q, n > (size_t)1 << 30 ? (size_t)1 << 30 : n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    if (w == 0) { /* no progress: never loop on it */
      errno = ENOSPC;
      return -1;
    }
    q += w;
    n -= (size_t)w;
  }
  return 0;
}

/* A fresh temporary file beside path, "<path>.tmp-<pid>-<time>-<serial>" (the naming of
 * lua/confit/jsonio.lua, so jsonio.remove_stale_temps knows it), created O_EXCL | O_NOFOLLOW: a
 * file or symlink already at a name is never written through; the next serial is tried. The
 * descriptor, *tmp (malloc'd), or -1 + CF_ERR. */
static int st_create_temp(const char *path, char **tmp) {
  static atomic_uint serial;
  *tmp = NULL;
  size_t cap = strlen(path) + 80;
  char *name = malloc(cap);
  if (!name) return CF_ERR("%s: out of memory", path);
  int err = EEXIST;
  for (int tries = 0; tries < 100 && err == EEXIST; tries++) {
    snprintf(name, cap, "%s.tmp-%ld-%lld-%u", path, (long)getpid(), (long long)time(NULL),
             atomic_fetch_add(&serial, 1) + 1);
    int fd = open(name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
    if (fd >= 0) {
      *tmp = name;
      return fd;
    }
    err = errno;
  }
  free(name);
  return CF_ERR("%s: cannot create the temporary file: %s", path, strerror(err));
}

typedef int (*st_emit_fn)(int fd, const void *ctx);

/* Write path atomically: emit(fd, ctx) writes the bytes into a fresh temporary file (-1 with
 * errno set on failure), which is fsync'd, closed and renamed over path; then path's directory
 * is fsync'd. On any failure before the rename the temporary is unlinked and path untouched. */
static int st_write_atomic(const char *path, st_emit_fn emit, const void *ctx) {
  char *tmp = NULL;
  int fd = st_create_temp(path, &tmp);
  if (fd < 0) return -1;
  errno = 0;
  int rc = emit(fd, ctx);
  const char *what = "write";
  int err = errno;
  if (rc == 0 && fsync(fd) != 0) {
    rc = -1;
    what = "fsync";
    err = errno;
  }
  if (close(fd) != 0 && rc == 0) {
    rc = -1;
    what = "close";
    err = errno;
  }
  if (rc == 0 && rename(tmp, path) != 0) {
    rc = -1;
    what = "rename";
    err = errno;
  }
  if (rc != 0) {
    unlink(tmp);
    free(tmp);
    return CF_ERR("%s: %s failed: %s", path, what, err ? strerror(err) : "unknown error");
  }
  free(tmp);
  /* Make the rename durable: fsync the directory holding path. */
  char *dir = st_strdup(path);
  if (!dir) return CF_ERR("%s: written, but out of memory to fsync its directory", path);
  char *slash = strrchr(dir, '/');
  if (slash == dir) slash[1] = 0;
  else if (slash) *slash = 0;
  else strcpy(dir, ".");
  int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) {
    err = errno;
    free(dir);
    return CF_ERR("%s: written, but cannot open its directory to fsync: %s", path, strerror(err));
  }
  if (fsync(dfd) != 0 && errno != EINVAL && errno != EROFS) {
    err = errno;
    close(dfd);
    free(dir);
    return CF_ERR("%s: written, but fsync of its directory failed: %s", path, strerror(err));
  }
  close(dfd);
  free(dir);
  return 0;
}

typedef struct {
  const st_buf *hb;
  const cf_st_entry **ord;
  size_t n;
} st_file_parts;

static int st_emit_file(int fd, const void *ctx) {
  const st_file_parts *fp = ctx;
  int rc = st_write_all(fd, fp->hb->p, fp->hb->len);
  for (size_t i = 0; rc == 0 && i < fp->n; i++)
    if (fp->ord[i]->nbytes) rc = st_write_all(fd, fp->ord[i]->data, fp->ord[i]->nbytes);
  return rc;
}

int cf_st_write(const char *path, const cf_st_entry *entries, size_t n, const char *const *meta_kv) {
  if (!path || !path[0]) return CF_ERR("cf_st_write: empty path");
  st_buf hb = {0};
  const cf_st_entry **ord = NULL;
  if (st_build_header(path, entries, n, meta_kv, &hb, &ord)) {
    free(hb.p);
    return -1;
  }
  /* what the reader would refuse is not written: a name or metadata that is not UTF-8 made a file
   * that this reader (and Hugging Face's) cannot open */
  if (hb.len > 8 && st_prescan((const unsigned char *)hb.p + 8, hb.len - 8, path)) {
    free(hb.p);
    free(ord);
    return cf_error_prefix("cf_st_write: a tensor name or a metadata string is not UTF-8 text: ");
  }
  st_file_parts fp = {&hb, ord, n};
  int rc = st_write_atomic(path, st_emit_file, &fp);
  free(hb.p);
  free(ord);
  return rc;
}

typedef struct {
  const void *data;
  size_t len;
} st_bytes;

static int st_emit_bytes(int fd, const void *ctx) {
  const st_bytes *b = ctx;
  return st_write_all(fd, b->data, b->len);
}

int cf_st_write_file(const char *path, const void *data, size_t len) {
  if (!path || !path[0]) return CF_ERR("cf_st_write_file: empty path");
  if (len && !data) return CF_ERR("%s: NULL data with %zu bytes", path, len);
  st_bytes b = {data, len};
  return st_write_atomic(path, st_emit_bytes, &b);
}

/* ---- conversion ---- */

static float st_f8e4m3_to_f32(uint8_t b) {
  /* E4M3 "fn": bias 7, no infinities, S.1111.111 is NaN */
  int sign = b & 0x80;
  int exp = (b >> 3) & 0xf, man = b & 7;
  float v;
  if (exp == 0xf && man == 7) v = NAN;
  else if (exp == 0) v = (float)man * (1.0f / 512.0f); /* man * 2^-9 */
  else v = ldexpf(1.0f + (float)man / 8.0f, exp - 7);
  return sign ? -v : v;
}

int cf_st_to_f32(const cf_st_entry *e, float *out) {
  if (!e) return CF_ERR("cf_st_to_f32: NULL entry");
  char dt[sizeof e->dtype + 1];
  memcpy(dt, e->dtype, sizeof e->dtype);
  dt[sizeof e->dtype] = 0;
  int64_t numel = cf_st_numel(e);
  size_t elsize = cf_st_dtype_size(dt);
  if (numel < 0 || (elsize && (uint64_t)numel * elsize != (uint64_t)e->nbytes))
    return CF_ERR("cf_st_to_f32: tensor '%.200s': shape and nbytes (%zu) disagree", e->name ? e->name : "?",
                  e->nbytes);
  if (numel && !out) return CF_ERR("cf_st_to_f32: tensor '%.200s': NULL output", e->name ? e->name : "?");
  const unsigned char *p = e->data;
#define ST_LOOP(T, EXPR)                                                                                      \
  for (int64_t i = 0; i < numel; i++) {                                                                       \
    T x;                                                                                                      \
    memcpy(&x, p + (size_t)i * sizeof(T), sizeof(T));                                                        \
    out[i] = (EXPR);                                                                                          \
  }                                                                                                           \
  return 0;
  if (!strcmp(dt, "F32")) {
    if (numel) memcpy(out, p, (size_t)numel * 4);
    return 0;
  }
  if (!strcmp(dt, "F64")) { ST_LOOP(double, (float)x) }
  if (!strcmp(dt, "BF16")) { ST_LOOP(uint16_t, cf_bf16_to_f32(x)) }
  if (!strcmp(dt, "F16")) { ST_LOOP(uint16_t, cf_f16_to_f32(x)) }
  if (!strcmp(dt, "F8_E5M2")) { ST_LOOP(uint8_t, cf_f16_to_f32((uint16_t)(x << 8))) }
  if (!strcmp(dt, "F8_E4M3")) { ST_LOOP(uint8_t, st_f8e4m3_to_f32(x)) }
  if (!strcmp(dt, "I64")) { ST_LOOP(int64_t, (float)x) }
  if (!strcmp(dt, "I32")) { ST_LOOP(int32_t, (float)x) }
  if (!strcmp(dt, "I16")) { ST_LOOP(int16_t, (float)x) }
  if (!strcmp(dt, "I8")) { ST_LOOP(int8_t, (float)x) }
  if (!strcmp(dt, "U64")) { ST_LOOP(uint64_t, (float)x) }
  if (!strcmp(dt, "U32")) { ST_LOOP(uint32_t, (float)x) }
  if (!strcmp(dt, "U16")) { ST_LOOP(uint16_t, (float)x) }
  if (!strcmp(dt, "U8")) { ST_LOOP(uint8_t, (float)x) }
  if (!strcmp(dt, "BOOL")) { ST_LOOP(uint8_t, x ? 1.0f : 0.0f) }
#undef ST_LOOP
  return CF_ERR("cf_st_to_f32: tensor '%.200s': no conversion from dtype '%.8s'", e->name ? e->name : "?", dt);
}

/* 1 when some element of the n words at p (each `size` bytes, unaligned) has all of mask's
 * exponent bits set (NaN or inf). The words are OR-reduced in blocks: a block without a hit costs
 * one compare, and the loop vectorises. */
#define ST_SCAN(NAME, T)                                                                                      \
  static int NAME(const unsigned char *p, int64_t n, T mask) {                                               \
    for (int64_t i = 0; i < n; i += 1024) {                                                                   \
      int64_t end = n - i < 1024 ? n : i + 1024;                                                              \
      int hit = 0;                                                                                            \
      for (int64_t j = i; j < end; j++) {                                                                     \
        T x;                                                                                                  \
        memcpy(&x, p + (size_t)j * sizeof(T), sizeof(T));                                                    \
        hit |= (x & mask) == mask;                                                                            \
      }                                                                                                       \
      if (hit) return 1;                                                                                      \
    }                                                                                                         \
    return 0;                                                                                                 \
  }
ST_SCAN(st_scan64, uint64_t)
ST_SCAN(st_scan32, uint32_t)
ST_SCAN(st_scan16, uint16_t)
ST_SCAN(st_scan8, uint8_t)
#undef ST_SCAN

int cf_st_nonfinite(const cf_st_entry *e) {
  if (!e || !e->data || !e->nbytes) return 0;
  char dt[sizeof e->dtype + 1];
  memcpy(dt, e->dtype, sizeof e->dtype);
  dt[sizeof e->dtype] = 0;
  const unsigned char *p = e->data;
  size_t b = e->nbytes;
  if (!strcmp(dt, "F64")) return st_scan64(p, (int64_t)(b / 8), 0x7ff0000000000000ull);
  if (!strcmp(dt, "F32")) return st_scan32(p, (int64_t)(b / 4), 0x7f800000u);
  if (!strcmp(dt, "BF16")) return st_scan16(p, (int64_t)(b / 2), (uint16_t)0x7f80u);
  if (!strcmp(dt, "F16")) return st_scan16(p, (int64_t)(b / 2), (uint16_t)0x7c00u);
  if (!strcmp(dt, "F8_E5M2")) return st_scan8(p, (int64_t)b, (uint8_t)0x7cu);
  if (!strcmp(dt, "F8_E4M3")) return st_scan8(p, (int64_t)b, (uint8_t)0x7fu); /* NaN only; no inf */
  return 0;
}

/* ---- sharded model folders ---- */

void cf_st_index_free(char **files, size_t n) {
  if (!files) return;
  for (size_t i = 0; i < n; i++) free(files[i]);
  free(files);
}

static char *st_join(const char *dir, const char *name) {
  size_t a = strlen(dir), b = strlen(name);
  char *p = malloc(a + b + 2);
  if (!p) return NULL;
  memcpy(p, dir, a);
  size_t k = a;
  if (a && dir[a - 1] != '/') p[k++] = '/';
  memcpy(p + k, name, b + 1);
  return p;
}

int cf_st_index_files(const char *dir, char ***files, size_t *n) {
  if (!dir || !files || !n) return CF_ERR("cf_st_index_files: NULL argument");
  *files = NULL;
  *n = 0;
  char *ipath = st_join(dir, "model.safetensors.index.json");
  if (!ipath) return CF_ERR("%s: out of memory", dir);
  struct stat st;
  if (stat(ipath, &st) != 0) {
    free(ipath);
    char *single = st_join(dir, "model.safetensors");
    if (!single) return CF_ERR("%s: out of memory", dir);
    if (stat(single, &st) != 0) {
      free(single);
      return CF_ERR("%s: no model.safetensors or model.safetensors.index.json in this folder", dir);
    }
    *files = malloc(sizeof **files);
    if (!*files) {
      free(single);
      return CF_ERR("%s: out of memory", dir);
    }
    (*files)[0] = single;
    *n = 1;
    return 0;
  }
  /* both: one is stale (a folder saved again as one file keeps its old index), and which one
   * is not ours to guess: transformers takes model.safetensors, an index-first reader the shards */
  {
    char *single = st_join(dir, "model.safetensors");
    struct stat st1;
    int both = single && lstat(single, &st1) == 0;
    free(single);
    if (both) {
      free(ipath);
      return CF_ERR("%s: holds both model.safetensors and model.safetensors.index.json, which may give different "
                    "weights (transformers loads model.safetensors): remove the stale one", dir);
    }
  }
  if (S_ISREG(st.st_mode) && st.st_size > ((off_t)1 << 30)) {
    CF_ERR("%s: index file larger than 1 GB", ipath);
    free(ipath);
    return -1;
  }
  char *text = NULL;
  size_t len = 0;
  if (cf_st_read_file(ipath, &text, &len, NULL)) {
    free(ipath);
    return -1;
  }
  size_t at;
  int trailing;
  errno = 0;
  cJSON *root = cf_json_parse_whole(text, len, &at, &trailing);
  int oom = !root && !trailing && errno == ENOMEM;
  free(text);
  int rc = -1;
  char **names = NULL;
  size_t count = 0;
  const cJSON *wm = root ? cJSON_GetObjectItemCaseSensitive(root, "weight_map") : NULL;
  if (!root) {
    if (oom) CF_ERR("%s: out of memory parsing it", ipath);
    else if (trailing) CF_ERR("%s: not valid JSON: trailing bytes after the top-level value at byte %zu", ipath, at);
    else CF_ERR("%s: not valid JSON (error near byte %zu)", ipath, at);
    goto done;
  }
  if (!cJSON_IsObject(wm)) {
    CF_ERR("%s: no \"weight_map\" object", ipath);
    goto done;
  }
  size_t total = (size_t)cJSON_GetArraySize(wm);
  names = calloc(total ? total : 1, sizeof *names);
  if (!names) {
    CF_ERR("%s: out of memory", ipath);
    goto done;
  }
  for (const cJSON *c = wm->child; c; c = c->next) {
    if (!cJSON_IsString(c) || !c->valuestring[0]) {
      CF_ERR("%s: weight_map['%.200s'] is not a file name", ipath, c->string);
      goto done;
    }
    const char *s = c->valuestring;
    if (strchr(s, '/') || strcmp(s, "..") == 0 || strcmp(s, ".") == 0) {
      CF_ERR("%s: weight_map['%.200s'] = '%.200s' is not a plain file name in the folder", ipath, c->string, s);
      goto done;
    }
    size_t k = 0;
    while (k < count && strcmp(names[k], s) != 0) k++;
    if (k == count) names[count++] = (char *)s;
  }
  if (count == 0) {
    CF_ERR("%s: weight_map is empty", ipath);
    goto done;
  }
  qsort(names, count, sizeof *names, st_name_cmp);
  *files = calloc(count, sizeof **files);
  if (!*files) {
    CF_ERR("%s: out of memory", ipath);
    goto done;
  }
  for (size_t k = 0; k < count; k++) {
    (*files)[k] = st_join(dir, names[k]);
    if (!(*files)[k]) {
      cf_st_index_free(*files, k);
      *files = NULL;
      CF_ERR("%s: out of memory", ipath);
      goto done;
    }
  }
  *n = count;
  rc = 0;
done:
  free(names);
  cJSON_Delete(root);
  free(ipath);
  return rc;
}
