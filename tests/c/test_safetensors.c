/* test_safetensors.c - safetensors reader/writer, half conversions, shard index, fixtures; the
 * writer's layout (element size descending, then name) keeps every tensor naturally aligned
 * (test_model.c checks that the model loader then maps f32 weights rather than copying them).
 * Built alone with core/io/safetensors.c and core/error.c by tests/fuzz/run.sh: keep it free of
 * the rest of the library.
 *
 * Run from the project root (ctest does). With `--write-corpus DIR` it only writes the corrupted
 * and valid sample files into DIR (the seeds of tests/fuzz/run.sh) and exits.
 * Prints "N passed, N failed" and exits 1 on any failure.
 */
#define _POSIX_C_SOURCE 200809L
#include "error.h"
#include "io/half.h"
#include "io/safetensors.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

static char tmpdir[256];

/* fsync, as the library sees it in this test: each call's file is logged (its path through
 * /proc/self/fd), and fsync_fail_at = N makes the Nth call from then on fail with EIO. The data
 * is not actually synced (nothing here needs it to survive a crash); the log shows what the
 * writer syncs and when: the temporary file under its temporary name (before the rename), then
 * the folder. This definition takes the place of the C library's in this executable. */
static char fsync_log[8][512];
static int fsync_calls, fsync_fail_at;

int fsync(int fd) {
  char link[64];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  char *slot = fsync_log[fsync_calls < 8 ? fsync_calls : 7];
  ssize_t n = readlink(link, slot, sizeof fsync_log[0] - 1);
  slot[n > 0 ? n : 0] = 0;
  fsync_calls++;
  if (fsync_fail_at && fsync_calls == fsync_fail_at) {
    errno = EIO;
    return -1;
  }
  return 0;
}

static char *path_in(const char *dir, const char *name) {
  static char buf[8][512];
  static int k;
  char *p = buf[k++ % 8];
  snprintf(p, 512, "%s/%s", dir, name);
  return p;
}

static int file_exists(const char *p) {
  struct stat st;
  return stat(p, &st) == 0;
}

/* How many names in folder dir start with prefix. */
static int count_prefixed(const char *dir, const char *prefix) {
  DIR *d = opendir(dir);
  if (!d) return -1;
  int k = 0;
  for (struct dirent *de; (de = readdir(d));)
    if (strncmp(de->d_name, prefix, strlen(prefix)) == 0) k++;
  closedir(d);
  return k;
}

static unsigned char *read_all(const char *p, size_t *len) {
  FILE *f = fopen(p, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *b = malloc(n ? (size_t)n : 1);
  if (fread(b, 1, (size_t)n, f) != (size_t)n) {
    free(b);
    fclose(f);
    return NULL;
  }
  fclose(f);
  *len = (size_t)n;
  return b;
}

static void write_bytes(const char *p, const void *b, size_t n) {
  FILE *f = fopen(p, "wb");
  if (!f) {
    printf("cannot write %s\n", p);
    exit(1);
  }
  if (n) fwrite(b, 1, n, f);
  fclose(f);
}

/* A raw file: 8-byte length (hlen_override if nonzero) + header text + ndata bytes 0,1,2,... */
static void write_raw(const char *p, const char *header, size_t ndata, unsigned long long hlen_override) {
  size_t h = strlen(header);
  unsigned long long hl = hlen_override ? hlen_override : h;
  unsigned char *b = malloc(8 + h + ndata + 1);
  for (int i = 0; i < 8; i++) b[i] = (unsigned char)(hl >> (8 * i));
  memcpy(b + 8, header, h);
  for (size_t i = 0; i < ndata; i++) b[8 + h + i] = (unsigned char)(i * 7 + 1);
  write_bytes(p, b, 8 + h + ndata);
  free(b);
}

/* ---------------------------------------------------------------- corrupted corpus */

typedef struct {
  const char *file;     /* name in the corpus dir */
  const char *header;   /* NULL: special-cased below */
  size_t ndata;
  unsigned long long hlen;
  const char *expect;   /* fragment of the message */
  const char *tensor;   /* tensor name the message must mention, or NULL */
} bad_case;

static const bad_case bad_cases[] = {
  {"truncated.safetensors", NULL, 0, 0, "shorter than the 8-byte header length", NULL},
  {"empty.safetensors", NULL, 0, 0, "shorter than the 8-byte header length", NULL},
  {"header_too_long.safetensors", "{}", 0, 200000000ull, "exceeds the 100 MB limit", NULL},
  {"header_past_end.safetensors", "{}", 4, 1000, "runs past the end of the file", NULL},
  {"bad_json.safetensors", "{\"a\": {\"dtype\": \"F32\", ", 0, 0, "header is not valid JSON", NULL},
  {"json_trailing.safetensors", "{} x", 0, 0, "trailing bytes after the top-level value", NULL},
  {"not_object.safetensors", "[1, 2]", 0, 0, "header is not a JSON object", NULL},
  {"entry_not_object.safetensors", "{\"w\": 3}", 0, 0, "entry is not an object", "w"},
  {"missing_dtype.safetensors", "{\"w\": {\"shape\": [1], \"data_offsets\": [0, 4]}}", 4, 0, "missing dtype", "w"},
  {"dtype_not_string.safetensors", "{\"w\": {\"dtype\": 4, \"shape\": [1], \"data_offsets\": [0, 4]}}", 4, 0,
   "dtype is not a string", "w"},
  {"missing_shape.safetensors", "{\"w\": {\"dtype\": \"F32\", \"data_offsets\": [0, 4]}}", 4, 0, "missing shape",
   "w"},
  {"missing_offsets.safetensors", "{\"w\": {\"dtype\": \"F32\", \"shape\": [1]}}", 4, 0, "missing data_offsets",
   "w"},
  {"offsets_arity.safetensors", "{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4, 8]}}", 4, 0,
   "not an array of 2 integers", "w"},
  {"unknown_dtype.safetensors", "{\"w\": {\"dtype\": \"F7\", \"shape\": [1], \"data_offsets\": [0, 4]}}", 4, 0,
   "unknown dtype 'F7'", "w"},
  {"negative_dim.safetensors", "{\"w\": {\"dtype\": \"F32\", \"shape\": [-1], \"data_offsets\": [0, 4]}}", 4, 0,
   "negative dimension", "w"},
  {"fractional_dim.safetensors", "{\"w\": {\"dtype\": \"F32\", \"shape\": [2.5], \"data_offsets\": [0, 4]}}", 4, 0,
   "non-integer dimension", "w"},
  {"string_dim.safetensors", "{\"w\": {\"dtype\": \"F32\", \"shape\": [\"1\"], \"data_offsets\": [0, 4]}}", 4, 0,
   "non-integer dimension", "w"},
  {"nine_dims.safetensors",
   "{\"w\": {\"dtype\": \"F32\", \"shape\": [1,1,1,1,1,1,1,1,1], \"data_offsets\": [0, 4]}}", 4, 0,
   "9 dims, more than 8", "w"},
  {"wrong_size.safetensors", "{\"w\": {\"dtype\": \"F32\", \"shape\": [3], \"data_offsets\": [0, 8]}}", 8, 0,
   "size mismatch", "w"},
  {"begin_after_end.safetensors", "{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [8, 4]}}", 8, 0,
   "begin 8 > end 4", "w"},
  {"offsets_out_of_range.safetensors", "{\"w\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]}}",
   8, 0, "out of range of the 8-byte data section", "w"},
  {"truncated_data.safetensors",
   "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}, "
   "\"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [8, 16]}}",
   11, 0, "out of range", "b"},
  {"overlap.safetensors",
   "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}, "
   "\"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [4, 12]}}",
   12, 0, "overlap", "b"},
  {"gap.safetensors",
   "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}, "
   "\"b\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [8, 12]}}",
   12, 0, "gap of 4 unused bytes", "b"},
  {"gap_at_start.safetensors", "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}", 8, 0,
   "gap of 4 unused bytes", "a"},
  {"trailing_bytes.safetensors", "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}", 8, 0,
   "4 trailing bytes", NULL},
  {"duplicate_name.safetensors",
   "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}, "
   "\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}",
   8, 0, "duplicate tensor name 'a'", "a"},
  {"duplicate_metadata.safetensors", "{\"__metadata__\": {}, \"__metadata__\": {}}", 0, 0,
   "duplicate name '__metadata__'", NULL},
  {"metadata_not_map.safetensors", "{\"__metadata__\": {\"format\": \"pt\", \"step\": 3}}", 0, 0,
   "__metadata__ is not a string-to-string map", NULL},
  {"metadata_not_object.safetensors", "{\"__metadata__\": \"pt\"}", 0, 0,
   "__metadata__ is not a string-to-string map", NULL},
  {"metadata_dup_key.safetensors", "{\"__metadata__\": {\"k\": \"1\", \"k\": \"2\"}}", 0, 0,
   "__metadata__ has a duplicate key 'k'", NULL},
  {"bad_utf8.safetensors", "{\"w\xff\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [0, 1]}}", 1, 0,
   "not valid UTF-8", NULL},
  {"nul_escape.safetensors", "{\"a\\u0000b\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [0, 1]}}", 1,
   0, "\\u0000", NULL},
  {"control_char.safetensors", "{\"a\x01\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [0, 1]}}", 1, 0,
   "raw control byte 0x01", NULL},
  {"duplicate_key.safetensors",
   "{\"w\": {\"dtype\": \"F32\", \"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [0, 4]}}", 4, 0,
   "duplicate key 'dtype'", "w"},
  {"negative_offset.safetensors", "{\"w\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [-1, 0]}}", 1, 0,
   "data_offsets are not non-negative integers", "w"},
  /* (twenty-seventh session, mutation testing: each of these opened with the check weakened) */
  {"control_char_1f.safetensors", "{\"a\x1f\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [0, 1]}}", 1,
   0, "raw control byte 0x1f at byte 3", NULL},
  /* U+D800 (a UTF-16 surrogate, ED A0 80) and U+110000 (F4 90 80 80) are not Unicode scalar values */
  {"surrogate.safetensors", "{\"a\xed\xa0\x80\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [0, 1]}}",
   1, 0, "not valid UTF-8 (byte 0xa0 at 4)", NULL},
  {"past_10ffff.safetensors",
   "{\"a\xf4\x90\x80\x80\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [0, 1]}}", 1, 0,
   "not valid UTF-8 (byte 0x90 at 4)", NULL},
  /* a header cut inside a character (a truncated write): the lead byte is the header's last */
  {"cut_character.safetensors", "{} \xc3", 0, 0, "truncated sequence at 3", NULL},
  /* 2^53 x 2048 F32 elements are 2^66 bytes, which wraps to 0 in 64 bits: no data is not its size */
  {"shape_overflow.safetensors",
   "{\"w\": {\"dtype\": \"F32\", \"shape\": [9007199254740992, 2048], \"data_offsets\": [0, 0]}}", 0, 0,
   "size mismatch", "w"},
};

static void write_bad(const char *dir, const bad_case *c) {
  const char *p = path_in(dir, c->file);
  if (!c->header) {
    if (strcmp(c->file, "truncated.safetensors") == 0) write_bytes(p, "\x10\x00\x00\x00\x00", 5);
    else write_bytes(p, "", 0);
    return;
  }
  write_raw(p, c->header, c->ndata, c->hlen);
}

/* Valid samples that must open (also fuzzer seeds). */
typedef struct {
  const char *file, *header;
  size_t ndata;
  size_t count;
} good_case;

static const good_case good_cases[] = {
  {"good_empty.safetensors", "{}", 0, 0},
  {"good_padded.safetensors", "{\"__metadata__\": {\"format\": \"pt\"}}      ", 0, 0},
  {"good_zero_size.safetensors",
   "{\"e\": {\"dtype\": \"F32\", \"shape\": [0, 3], \"data_offsets\": [0, 0]}, "
   "\"f\": {\"dtype\": \"I64\", \"shape\": [2, 0], \"data_offsets\": [0, 0]}, "
   "\"s\": {\"dtype\": \"F64\", \"shape\": [], \"data_offsets\": [0, 8]}}",
   8, 3},
  {"good_unordered.safetensors",
   "{\"b\": {\"dtype\": \"U8\", \"shape\": [3], \"data_offsets\": [2, 5]}, "
   "\"a\": {\"dtype\": \"BF16\", \"shape\": [1], \"data_offsets\": [0, 2], \"extra\": 1}}",
   5, 2},
  /* a zero-size tensor starting where a non-empty one does, listed after it: the offsets tile the
   * data section (HF's writer gives such a tensor the offset where the next one starts) */
  {"good_zero_size_shared_offset.safetensors",
   "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}, "
   "\"b\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}, "
   "\"z\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [4, 4]}}",
   8, 3},
};

static void test_corpus(void) {
  for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
    const bad_case *c = &bad_cases[i];
    write_bad(tmpdir, c);
    const char *p = path_in(tmpdir, c->file);
    cf_error_clear();
    cf_st_file *f = cf_st_open(p);
    const char *msg = cf_error_message();
    CHECK(f == NULL, "%s: opened but should be rejected", c->file);
    cf_st_close(f);
    CHECK(strstr(msg, c->expect) != NULL, "%s: message '%s' lacks '%s'", c->file, msg, c->expect);
    CHECK(strstr(msg, c->file) != NULL, "%s: message '%s' does not name the file", c->file, msg);
    if (c->tensor) {
      char q[64];
      snprintf(q, sizeof q, "'%s'", c->tensor);
      CHECK(strstr(msg, q) != NULL, "%s: message '%s' does not name tensor %s", c->file, msg, q);
    }
    /* the same bytes through the memory entry point give the same verdict */
    size_t len = 0;
    unsigned char *b = read_all(p, &len);
    cf_st_file *g = cf_st_open_memory(b, len, c->file);
    CHECK(g == NULL && strstr(cf_error_message(), c->expect), "%s: open_memory disagrees: %s", c->file,
          cf_error_message());
    cf_st_close(g);
    free(b);
  }
  for (size_t i = 0; i < sizeof good_cases / sizeof good_cases[0]; i++) {
    const good_case *c = &good_cases[i];
    const char *p = path_in(tmpdir, c->file);
    write_raw(p, c->header, c->ndata, 0);
    cf_st_file *f = cf_st_open(p);
    CHECK(f != NULL, "%s: rejected: %s", c->file, cf_error_message());
    CHECK(cf_st_count(f) == c->count, "%s: count %zu != %zu", c->file, cf_st_count(f), c->count);
    cf_st_close(f);
  }
  /* details of the unordered sample: header order kept, offsets honoured */
  cf_st_file *f = cf_st_open(path_in(tmpdir, "good_unordered.safetensors"));
  if (f) {
    const cf_st_entry *a = cf_st_find(f, "a"), *b = cf_st_find(f, "b");
    CHECK(strcmp(cf_st_get(f, 0)->name, "b") == 0, "header order not kept");
    CHECK(a && b && a->nbytes == 2 && b->nbytes == 3, "unordered sizes");
    CHECK(b && ((const unsigned char *)b->data)[0] == (unsigned char)(2 * 7 + 1), "unordered data offset");
    CHECK(cf_st_find(f, "c") == NULL && cf_st_get(f, 2) == NULL, "find/get of absent");
    cf_st_close(f);
  }
  /* a directory and a missing file */
  CHECK(cf_st_open(tmpdir) == NULL && strstr(cf_error_message(), "not a regular file"), "dir: %s",
        cf_error_message());
  CHECK(cf_st_open(path_in(tmpdir, "nope.safetensors")) == NULL && strstr(cf_error_message(), "cannot open"),
        "missing: %s", cf_error_message());
}

/* ---------------------------------------------------------------- round trip */

static void test_round_trip(void) {
  float f32[6] = {1.5f, -2.25f, 0.0f, 3e-8f, 1e30f, -0.0f};
  uint16_t f16[5] = {0x3c00, 0xc000, 0x0001, 0x7c00, 0x7bff};
  uint16_t bf16[3] = {0x3f80, 0xbfc0, 0x7f80};
  double f64 = 3.141592653589793;
  int64_t i64[4] = {-1, 0, (int64_t)1 << 40, INT64_MAX};
  uint8_t u8[7] = {0, 1, 2, 250, 251, 254, 255};
  uint8_t b8[2] = {1, 0};
  int8_t i8[3] = {-128, 0, 127};
  int16_t i16[2] = {-32768, 12345};
  uint32_t u32[2] = {0, 4000000000u};
  uint8_t one[2] = {7, 9};
  cf_st_entry ents[] = {
    {"w.f32", "F32", 2, {2, 3}, f32, sizeof f32},
    {"u8 odd", "U8", 1, {7}, u8, sizeof u8}, /* odd length: the writer puts it among the 1-byte tensors */
    {"h.f16", "F16", 1, {5}, f16, sizeof f16},
    {"b.bf16", "BF16", 4, {1, 1, 1, 3}, bf16, sizeof bf16},
    {"scalar", "F64", 0, {0}, &f64, sizeof f64},
    {"ids", "I64", 1, {4}, i64, sizeof i64},
    {"empty", "I32", 2, {0, 3}, NULL, 0},
    {"empty2", "F32", 1, {0}, NULL, 0},
    {"mask", "BOOL", 1, {2}, b8, sizeof b8},
    {"i8", "I8", 1, {3}, i8, sizeof i8},
    {"i16", "I16", 2, {2, 1}, i16, sizeof i16},
    {"u32", "U32", 1, {2}, u32, sizeof u32},
    {"eight", "U8", 8, {1, 1, 1, 1, 1, 1, 1, 2}, one, sizeof one},
    {"quo\"te\\back/sl\xc3\xa9\n", "U8", 1, {1}, one, 1},
  };
  size_t n = sizeof ents / sizeof ents[0];
  const char *meta[] = {"step", "12", "note", "h\xc3\xa9 \"q\"\n\\", "empty", "", NULL};
  const char *p = path_in(tmpdir, "rt.safetensors");
  int rc = cf_st_write(p, ents, n, meta);
  CHECK(rc == 0, "write: %s", cf_error_message());
  cf_st_file *f = cf_st_open(p);
  CHECK(f != NULL, "reopen: %s", cf_error_message());
  if (!f) return;
  CHECK(cf_st_count(f) == n, "count %zu", cf_st_count(f));
  /* the file's order is the writer's (element size descending, then name), not the entries' */
  for (size_t i = 1; i < cf_st_count(f); i++) {
    const cf_st_entry *x = cf_st_get(f, i - 1), *y = cf_st_get(f, i);
    size_t sx = cf_st_dtype_size(x->dtype), sy = cf_st_dtype_size(y->dtype);
    CHECK(sx > sy || (sx == sy && strcmp(x->name, y->name) < 0), "write order: '%s' (%zu bytes) before '%s' (%zu)",
          x->name, sx, y->name, sy);
  }
  for (size_t i = 0; i < n; i++) {
    const cf_st_entry *e = cf_st_find(f, ents[i].name);
    CHECK(e != NULL, "tensor '%s' is back", ents[i].name);
    if (!e) continue;
    CHECK(strcmp(e->dtype, ents[i].dtype) == 0, "dtype %s: %s", ents[i].name, e->dtype);
    CHECK(e->ndim == ents[i].ndim, "ndim %s: %d", ents[i].name, e->ndim);
    int same = 1;
    for (int k = 0; k < e->ndim; k++) same &= e->shape[k] == ents[i].shape[k];
    CHECK(same, "shape %s", ents[i].name);
    CHECK(e->nbytes == ents[i].nbytes && (!e->nbytes || memcmp(e->data, ents[i].data, e->nbytes) == 0),
          "bytes %s", ents[i].name);
  }
  CHECK(cf_st_numel(cf_st_find(f, "scalar")) == 1, "0-d numel");
  CHECK(cf_st_numel(cf_st_find(f, "empty")) == 0, "empty numel");
  CHECK(cf_st_metadata(f, "format") && strcmp(cf_st_metadata(f, "format"), "pt") == 0, "format=pt");
  CHECK(cf_st_metadata(f, "step") && strcmp(cf_st_metadata(f, "step"), "12") == 0, "step");
  CHECK(cf_st_metadata(f, "note") && strcmp(cf_st_metadata(f, "note"), meta[3]) == 0, "note escaped");
  CHECK(cf_st_metadata(f, "empty") && cf_st_metadata(f, "empty")[0] == 0, "empty value");
  CHECK(cf_st_metadata(f, "missing") == NULL, "missing key");
  CHECK(cf_st_metadata_count(f) == 4, "metadata count %zu", cf_st_metadata_count(f));
  const char *k0 = NULL, *v0 = NULL;
  CHECK(cf_st_metadata_at(f, 0, &k0, &v0) == 0 && strcmp(k0, "format") == 0, "metadata_at 0");
  CHECK(cf_st_metadata_at(f, 9, &k0, &v0) == -1, "metadata_at out of range");

  /* the raw layout: header length multiple of 8, padded with spaces, HF-style prefix */
  size_t len = 0;
  unsigned char *b = read_all(p, &len);
  uint64_t hl = 0;
  for (int i = 7; i >= 0; i--) hl = (hl << 8) | b[i];
  CHECK(hl % 8 == 0, "header length %llu not a multiple of 8", (unsigned long long)hl);
  CHECK(memcmp(b + 8, "{\"__metadata__\":{\"format\":\"pt\"", 30) == 0, "header starts with metadata");
  size_t last = 8 + (size_t)hl - 1;
  while (b[last] == ' ') last--;
  CHECK(b[last] == '}', "padding is spaces after the closing brace");
  size_t data_total = 0;
  for (size_t i = 0; i < n; i++) data_total += ents[i].nbytes;
  CHECK(len == 8 + hl + data_total, "file size %zu", len);
  /* write_memory gives the same bytes */
  unsigned char *m = NULL;
  size_t mlen = 0;
  CHECK(cf_st_write_memory(ents, n, meta, &m, &mlen) == 0 && mlen == len && memcmp(m, b, len) == 0,
        "write_memory differs from the file");
  free(m);
  free(b);

  /* refcount: an aliasing user keeps the mapping alive after the opener closes */
  const cf_st_entry *w = cf_st_find(f, "w.f32");
  cf_st_file *keep = cf_st_retain(f);
  CHECK(keep == f, "retain returns f");
  cf_st_close(f);
  float got[6];
  CHECK(cf_st_to_f32(w, got) == 0 && memcmp(got, f32, sizeof f32) == 0, "data alive after first close");
  cf_st_close(keep);

  /* no temporary left behind */
  DIR *d = opendir(tmpdir);
  int tmp_left = 0;
  for (struct dirent *de; d && (de = readdir(d));)
    if (strstr(de->d_name, ".tmp.")) tmp_left++;
  if (d) closedir(d);
  CHECK(tmp_left == 0, "%d temporary files left", tmp_left);

  /* "format" may be overridden; no entries at all is a valid file */
  const char *meta2[] = {"format", "np", NULL};
  const char *p2 = path_in(tmpdir, "fmt.safetensors");
  CHECK(cf_st_write(p2, NULL, 0, meta2) == 0, "write empty: %s", cf_error_message());
  f = cf_st_open(p2);
  CHECK(f && cf_st_count(f) == 0 && strcmp(cf_st_metadata(f, "format"), "np") == 0 && cf_st_metadata_count(f) == 1,
        "format override");
  cf_st_close(f);

  /* every control character in a name or a metadata string comes back: those without a short
   * escape are written \u00XX in hex (\u0031 would read back as "1") */
  char ctl[40];
  size_t k = 0;
  for (int c = 1; c < 0x20; c++) ctl[k++] = (char)c;
  ctl[k++] = 0x7f;
  ctl[k] = 0;
  const char *meta3[] = {"ctl", ctl, NULL};
  cf_st_entry ce = {ctl, "U8", 1, {1}, one, 1};
  const char *p3 = path_in(tmpdir, "ctl.safetensors");
  CHECK(cf_st_write(p3, &ce, 1, meta3) == 0, "write control characters: %s", cf_error_message());
  f = cf_st_open(p3);
  CHECK(f && cf_st_metadata(f, "ctl") && strcmp(cf_st_metadata(f, "ctl"), ctl) == 0,
        "control characters in a metadata value do not round-trip");
  CHECK(f && cf_st_find(f, ctl) != NULL, "control characters in a tensor name do not round-trip");
  cf_st_close(f);
}

/* After a write to out beside symlinks to victim (holding "precious"): the victim is untouched and
 * out is a regular file. */
static void check_not_written_through(const char *victim, const char *out) {
  size_t len = 0;
  unsigned char *v = read_all(victim, &len);
  CHECK(v && len == 8 && memcmp(v, "precious", 8) == 0, "a symlink's target (%s) was written through", victim);
  free(v);
  struct stat st;
  CHECK(lstat(out, &st) == 0 && S_ISREG(st.st_mode), "%s is not a regular file after the write", out);
}

static void test_writer_errors(void) {
  float x[2] = {1, 2};
  const char *p = path_in(tmpdir, "keep.safetensors");
  cf_st_entry ok = {"x", "F32", 1, {2}, x, sizeof x};
  CHECK(cf_st_write(p, &ok, 1, NULL) == 0, "write keep: %s", cf_error_message());
  size_t len0 = 0;
  unsigned char *before = read_all(p, &len0);

  struct {
    cf_st_entry e[2];
    size_t n;
    const char *expect;
  } cases[] = {
    {{{"x", "F32", 1, {3}, x, sizeof x}}, 1, "size mismatch"},
    {{{"x", "F33", 1, {2}, x, sizeof x}}, 1, "unknown dtype 'F33'"},
    {{{"x", "F32", 1, {2}, x, sizeof x}, {"x", "F32", 1, {2}, x, sizeof x}}, 2, "duplicate tensor name 'x'"},
    {{{"__metadata__", "F32", 1, {2}, x, sizeof x}}, 1, "not a tensor name"},
    {{{"", "F32", 1, {2}, x, sizeof x}}, 1, "has no name"},
    {{{"x", "F32", 9, {2}, x, sizeof x}}, 1, "must be 0..8"},
    {{{"x", "F32", 1, {-2}, x, sizeof x}}, 1, "negative dimension"},
    {{{"x", "F32", 1, {2}, NULL, sizeof x}}, 1, "NULL data"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    int rc = cf_st_write(p, cases[i].e, cases[i].n, NULL);
    CHECK(rc == -1 && strstr(cf_error_message(), cases[i].expect), "writer case %zu: rc %d msg %s", i, rc,
          cf_error_message());
  }
  const char *badmeta[] = {"k", "1", "k", "2", NULL};
  CHECK(cf_st_write(p, &ok, 1, badmeta) == -1 && strstr(cf_error_message(), "duplicate metadata key 'k'"),
        "dup meta: %s", cf_error_message());
  size_t len1 = 0;
  unsigned char *after = read_all(p, &len1);
  CHECK(before && after && len0 == len1 && memcmp(before, after, len0) == 0, "failed writes changed the file");
  free(before);
  free(after);

  /* into a missing directory: fails cleanly, leaves nothing */
  const char *missing = path_in(tmpdir, "no/such/dir/x.safetensors");
  CHECK(cf_st_write(missing, &ok, 1, NULL) == -1 && strstr(cf_error_message(), "cannot create"), "missing dir: %s",
        cf_error_message());
  CHECK(!file_exists(path_in(tmpdir, "no")), "missing dir was created");
  /* path is a directory: rename fails, the temporary is removed */
  const char *dpath = path_in(tmpdir, "adir");
  mkdir(dpath, 0755);
  CHECK(cf_st_write(dpath, &ok, 1, NULL) == -1 && strstr(cf_error_message(), "rename failed"), "rename over dir: %s",
        cf_error_message());
  CHECK(count_prefixed(tmpdir, "adir.tmp") == 0, "a temporary file left after a failed rename");
  rmdir(dpath);
}

/* ---------------------------------------------------------------- special files, temporary names */

/* The writer's temporary file "PATH.tmp-PID-TIME-SERIAL" is created O_EXCL | O_NOFOLLOW: a
 * symlink already at the names it tries is skipped (the next serial is tried), never written
 * through, and never renamed over PATH. Run first in main, while this process's serial counter is
 * at 0, so that the names are known: serials 1..5 at this second and the next two are planted. */
static void test_planted_temp_names(void) {
  float x[2] = {1, 2};
  cf_st_entry e = {"x", "F32", 1, {2}, x, sizeof x};
  const char *out = path_in(tmpdir, "planted.safetensors");
  const char *victim = path_in(tmpdir, "planted_victim.txt");
  write_bytes(victim, "precious", 8);
  long long t0 = (long long)time(NULL);
  char name[700];
  int planted = 0;
  for (long long s = t0; s <= t0 + 2; s++)
    for (unsigned k = 1; k <= 5; k++) {
      snprintf(name, sizeof name, "%s.tmp-%ld-%lld-%u", out, (long)getpid(), s, k);
      planted += symlink(victim, name) == 0;
    }
  CHECK(planted == 15, "planted %d symlinks", planted);
  CHECK(cf_st_write(out, &e, 1, NULL) == 0, "write beside planted symlinks: %s", cf_error_message());
  check_not_written_through(victim, out);
  cf_st_file *f = cf_st_open(out);
  CHECK(f && cf_st_count(f) == 1, "%s does not hold the tensor: %s", out, f ? "" : cf_error_message());
  cf_st_close(f);
  CHECK(count_prefixed(tmpdir, "planted.safetensors.tmp-") == 15, "the planted symlinks were not all left alone");
  for (long long s = t0; s <= t0 + 2; s++)
    for (unsigned k = 1; k <= 5; k++) {
      snprintf(name, sizeof name, "%s.tmp-%ld-%lld-%u", out, (long)getpid(), s, k);
      unlink(name);
    }
  unlink(victim);
  unlink(out);
}

/* A FIFO (or any file that is not a regular one) where a safetensors file or an index is expected
 * is refused at once with a message, never opened in a way that waits for a writer. alarm():
 * a hang fails the test (SIGALRM ends the process) instead of stalling ctest. */
static void test_special_files(void) {
  char dir[300];
  snprintf(dir, sizeof dir, "%s/fifo_model", tmpdir);
  mkdir(dir, 0755);
  const char *fifo = path_in(dir, "model.safetensors");
  CHECK(mkfifo(fifo, 0644) == 0, "mkfifo %s", fifo);
  alarm(20);
  cf_st_file *f = cf_st_open(fifo);
  CHECK(f == NULL && strstr(cf_error_message(), "not a regular file") && strstr(cf_error_message(), fifo),
        "FIFO safetensors: %s", cf_error_message());
  cf_st_close(f);
  unlink(fifo);
  const char *idx = path_in(dir, "model.safetensors.index.json");
  CHECK(mkfifo(idx, 0644) == 0, "mkfifo %s", idx);
  char **files = NULL;
  size_t n = 0;
  CHECK(cf_st_index_files(dir, &files, &n) == -1 && strstr(cf_error_message(), "not a regular file"),
        "FIFO index: %s", cf_error_message());
  alarm(0);
  unlink(idx);
  rmdir(dir);

  /* the writer's temporary file has a fresh name (PATH.tmp-PID-TIME-SERIAL, confit.jsonio's), so a
   * symlink already at the old fixed name PATH.tmp.PID is neither followed nor clobbered */
  float x[2] = {1, 2};
  cf_st_entry e = {"x", "F32", 1, {2}, x, sizeof x};
  const char *out = path_in(tmpdir, "linked.safetensors");
  const char *victim = path_in(tmpdir, "victim.txt");
  write_bytes(victim, "precious", 8);
  char fixed[600];
  snprintf(fixed, sizeof fixed, "%s.tmp.%ld", out, (long)getpid());
  CHECK(symlink(victim, fixed) == 0, "symlink %s", fixed);
  CHECK(cf_st_write(out, &e, 1, NULL) == 0, "write beside a symlink: %s", cf_error_message());
  check_not_written_through(victim, out);
  struct stat st;
  CHECK(lstat(fixed, &st) == 0 && S_ISLNK(st.st_mode), "the symlink at %s was replaced", fixed);
  unlink(fixed);
  unlink(victim);
  /* cf_st_write_file: any bytes, atomically, same naming; no temporary left behind */
  const char *txt = path_in(tmpdir, "plain.json");
  CHECK(cf_st_write_file(txt, "{\"a\": 1}\n", 9) == 0, "write_file: %s", cf_error_message());
  size_t len = 0;
  unsigned char *v = read_all(txt, &len);
  CHECK(v && len == 9 && memcmp(v, "{\"a\": 1}\n", 9) == 0, "write_file content");
  free(v);
  CHECK(count_prefixed(tmpdir, "plain.json.tmp") == 0, "write_file left a temporary file");
  CHECK(cf_st_write_file(path_in(tmpdir, "no/such/dir/p.json"), "x", 1) == -1 &&
            strstr(cf_error_message(), "cannot create"), "write_file into a missing folder: %s", cf_error_message());
  /* reading a whole regular file; a FIFO is refused */
  char *text = NULL;
  int missing = 0;
  CHECK(cf_st_read_file(txt, &text, &len, &missing) == 0 && len == 9 && text && text[9] == 0 &&
            memcmp(text, "{\"a\": 1}\n", 9) == 0, "read_file: %s", cf_error_message());
  free(text);
  text = NULL;
  CHECK(cf_st_read_file(path_in(tmpdir, "absent.json"), &text, &len, &missing) == -1 && missing == 1 &&
            strstr(cf_error_message(), "cannot open"), "read_file of a missing file: %s", cf_error_message());
  const char *ff = path_in(tmpdir, "fifo.json");
  CHECK(mkfifo(ff, 0644) == 0, "mkfifo %s", ff);
  alarm(20);
  missing = 0;
  CHECK(cf_st_read_file(ff, &text, &len, &missing) == -1 && missing == 0 &&
            strstr(cf_error_message(), "not a regular file"), "read_file of a FIFO: %s", cf_error_message());
  alarm(0);
  unlink(ff);
}

/* The writer syncs the temporary file before renaming it over the path, then the folder; a
 * failed fsync of the file fails the write, leaves the path as it was and removes the temporary;
 * a failed fsync of the folder is reported (the file is in place, its durability is not). */
static void test_fsync(void) {
  float x[2] = {1, 2}, y[2] = {3, 4};
  cf_st_entry e = {"x", "F32", 1, {2}, x, sizeof x}, e2 = {"x", "F32", 1, {2}, y, sizeof y};
  char dir[PATH_MAX], file[PATH_MAX + 32];
  /* the folder's name as /proc gives it (the canonical one, as in the log) */
  int dfd = open(tmpdir, O_RDONLY | O_DIRECTORY);
  char link[64];
  snprintf(link, sizeof link, "/proc/self/fd/%d", dfd);
  ssize_t dn = dfd >= 0 ? readlink(link, dir, sizeof dir - 1) : -1;
  dir[dn > 0 ? dn : 0] = 0;
  if (dfd >= 0) close(dfd);
  CHECK(dn > 0, "the name of %s through /proc/self/fd", tmpdir);
  snprintf(file, sizeof file, "%s/synced.safetensors", dir);
  fsync_calls = fsync_fail_at = 0;
  CHECK(cf_st_write(file, &e, 1, NULL) == 0, "write: %s", cf_error_message());
  char tmpname[PATH_MAX + 40];
  snprintf(tmpname, sizeof tmpname, "%s.tmp-", file);
  CHECK(fsync_calls == 2, "%d fsync calls for one write, want 2 (the file, then its folder)", fsync_calls);
  CHECK(strncmp(fsync_log[0], tmpname, strlen(tmpname)) == 0,
        "first fsync is of '%s', want the temporary file '%s...' (synced before the rename)", fsync_log[0], tmpname);
  CHECK(strcmp(fsync_log[1], dir) == 0, "second fsync is of '%s', want the folder '%s'", fsync_log[1], dir);
  size_t len0 = 0, len1 = 0;
  unsigned char *before = read_all(file, &len0);

  fsync_calls = 0;
  fsync_fail_at = 1;
  CHECK(cf_st_write(file, &e2, 1, NULL) == -1 && strstr(cf_error_message(), "fsync failed") &&
            strstr(cf_error_message(), file) && strstr(cf_error_message(), strerror(EIO)),
        "a failed fsync of the file: %s", cf_error_message());
  unsigned char *after = read_all(file, &len1);
  CHECK(before && after && len0 == len1 && memcmp(before, after, len0) == 0, "a failed fsync changed the file");
  free(after);
  CHECK(count_prefixed(tmpdir, "synced.safetensors.tmp") == 0, "a failed fsync left its temporary file");

  fsync_calls = 0;
  fsync_fail_at = 2;
  CHECK(cf_st_write(file, &e2, 1, NULL) == -1 && strstr(cf_error_message(), "written, but fsync of its directory failed"),
        "a failed fsync of the folder: %s", cf_error_message());
  after = read_all(file, &len1);
  CHECK(after && len1 == len0 && memcmp(after, before, len0) != 0, "the file is not the new one after the folder's fsync failed");
  free(after);
  free(before);
  fsync_calls = fsync_fail_at = 0;
  unlink(file);
}

/* ---------------------------------------------------------------- conversions */

static uint32_t bits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}

static void test_half(void) {
  /* bf16 round to nearest even */
  CHECK(cf_f32_to_bf16(1.0f) == 0x3f80, "bf16 1");
  CHECK(cf_f32_to_bf16(1.0f + 0x1p-8f) == 0x3f80, "bf16 tie to even (down)");
  CHECK(cf_f32_to_bf16(1.0f + 3 * 0x1p-8f) == 0x3f82, "bf16 tie to even (up)");
  CHECK(cf_f32_to_bf16(1.0f + 0x1p-8f + 0x1p-20f) == 0x3f81, "bf16 above half rounds up");
  CHECK(cf_f32_to_bf16(-1.0f - 0x1p-9f) == 0xbf80, "bf16 below half rounds down");
  CHECK(cf_f32_to_bf16(3.4028235e38f) == 0x7f80, "bf16 FLT_MAX overflows to inf");
  CHECK(cf_f32_to_bf16(INFINITY) == 0x7f80 && cf_f32_to_bf16(-INFINITY) == 0xff80, "bf16 inf");
  uint16_t qn = cf_f32_to_bf16(NAN);
  CHECK((qn & 0x7f80) == 0x7f80 && (qn & 0x7f), "bf16 NaN stays NaN: %04x", qn);
  float snan;
  uint32_t sb = 0x7f800001u; /* signalling NaN whose payload is all in the dropped bits */
  memcpy(&snan, &sb, 4);
  qn = cf_f32_to_bf16(snan);
  CHECK((qn & 0x7f80) == 0x7f80 && (qn & 0x7f), "bf16 sNaN does not become inf: %04x", qn);
  /* f16 too: the payload 1 is in the 13 dropped bits; the result is a quiet NaN (0x7e00) of the
   * same sign, never infinity (0x7c00) */
  uint16_t hn = cf_f32_to_f16(snan);
  CHECK(hn == 0x7e00, "f16 sNaN: %04x, want 7e00 (quiet NaN)", hn);
  sb = 0xff800001u;
  memcpy(&snan, &sb, 4);
  hn = cf_f32_to_f16(snan);
  CHECK(hn == 0xfe00, "f16 negative sNaN: %04x, want fe00", hn);
  CHECK(bits(cf_bf16_to_f32(0x8000)) == 0x80000000u, "bf16 -0");
  /* every finite bf16 survives widening + narrowing */
  int bad = 0;
  for (uint32_t h = 0; h < 65536; h++) {
    if ((h & 0x7f80) == 0x7f80 && (h & 0x7f)) continue;
    if (cf_f32_to_bf16(cf_bf16_to_f32((uint16_t)h)) != h) bad++;
  }
  CHECK(bad == 0, "bf16 round trip: %d bad", bad);

  /* f16: exhaustive round trip, exact values, RNE at the edges */
  bad = 0;
  for (uint32_t h = 0; h < 65536; h++) {
    float v = cf_f16_to_f32((uint16_t)h);
    if (((h >> 10) & 0x1f) == 0x1f && (h & 0x3ff)) {
      if (!isnan(v)) bad++;
      continue;
    }
    if (cf_f32_to_f16(v) != h) bad++;
  }
  CHECK(bad == 0, "f16 round trip: %d bad", bad);
  CHECK(cf_f16_to_f32(0x3c00) == 1.0f && cf_f16_to_f32(0xc000) == -2.0f, "f16 1, -2");
  CHECK(cf_f16_to_f32(0x0001) == 0x1p-24f && cf_f16_to_f32(0x03ff) == 1023 * 0x1p-24f, "f16 subnormals");
  CHECK(cf_f16_to_f32(0x7bff) == 65504.0f, "f16 max");
  CHECK(cf_f32_to_f16(65519.0f) == 0x7bff && cf_f32_to_f16(65520.0f) == 0x7c00, "f16 overflow threshold");
  CHECK(cf_f32_to_f16(1.0f + 0x1p-11f) == 0x3c00 && cf_f32_to_f16(1.0f + 3 * 0x1p-11f) == 0x3c02, "f16 ties");
  CHECK(cf_f32_to_f16(0x1p-25f) == 0 && cf_f32_to_f16(0x1p-25f * 1.0001f) == 1, "f16 half of min subnormal");
  CHECK(cf_f32_to_f16(3 * 0x1p-25f) == 2, "f16 subnormal tie to even");
  CHECK(cf_f32_to_f16(-0x1p-30f) == 0x8000, "f16 underflow keeps sign");
  CHECK(cf_f32_to_f16(1023.5f * 0x1p-24f) == 0x0400, "f16 subnormal rounds up into the normals");
  CHECK(isnan(cf_f16_to_f32(cf_f32_to_f16(NAN))), "f16 NaN");

  /* cf_st_to_f32 over dtypes */
  uint16_t hb[3] = {0x3f80, 0xc040, 0x0000};
  cf_st_entry e = {"b", "BF16", 1, {3}, hb, sizeof hb};
  float out[4];
  CHECK(cf_st_to_f32(&e, out) == 0 && out[0] == 1.0f && out[1] == -3.0f && out[2] == 0.0f, "to_f32 bf16");
  uint16_t hh[2] = {0x3555, 0xfc00};
  cf_st_entry eh = {"h", "F16", 1, {2}, hh, sizeof hh};
  CHECK(cf_st_to_f32(&eh, out) == 0 && fabsf(out[0] - 0.333251953125f) == 0 && isinf(out[1]) && out[1] < 0,
        "to_f32 f16");
  int64_t iv[2] = {-5, 1 << 20};
  cf_st_entry ei = {"i", "I64", 1, {2}, iv, sizeof iv};
  CHECK(cf_st_to_f32(&ei, out) == 0 && out[0] == -5.0f && out[1] == 1048576.0f, "to_f32 i64");
  double dv = 0.1;
  cf_st_entry ed = {"d", "F64", 0, {0}, &dv, 8};
  CHECK(cf_st_to_f32(&ed, out) == 0 && out[0] == 0.1f, "to_f32 f64 scalar");
  uint8_t e4[4] = {0x38, 0x7e, 0x01, 0xff}; /* 1.0, 448, 2^-9, NaN */
  cf_st_entry e8 = {"e4", "F8_E4M3", 1, {4}, e4, 4};
  CHECK(cf_st_to_f32(&e8, out) == 0 && out[0] == 1.0f && out[1] == 448.0f && out[2] == 0x1p-9f && isnan(out[3]),
        "to_f32 f8e4m3");
  uint8_t e5[2] = {0x3c, 0x7b}; /* 1.0, 57344 */
  cf_st_entry e52 = {"e5", "F8_E5M2", 1, {2}, e5, 2};
  CHECK(cf_st_to_f32(&e52, out) == 0 && out[0] == 1.0f && out[1] == 57344.0f, "to_f32 f8e5m2");
  cf_st_entry wrong = {"w", "F32", 1, {3}, hb, sizeof hb};
  CHECK(cf_st_to_f32(&wrong, out) == -1 && strstr(cf_error_message(), "disagree"), "to_f32 size check");
  cf_st_entry unk = {"u", "Q4", 1, {3}, hb, 6};
  CHECK(cf_st_to_f32(&unk, out) == -1, "to_f32 unknown dtype");
}

/* ---------------------------------------------------------------- write order and alignment */

/* The layout read from the raw bytes (our own JSON parse, not the reader): the header length is
 * such that the data section starts 8-aligned, every tensor's absolute offset in the file is a
 * multiple of its element size, and the header lists the tensors in the order of the data. */
static void check_layout(const char *p, const char *const *want_order, size_t n) {
  size_t len = 0;
  unsigned char *b = read_all(p, &len);
  CHECK(b && len >= 8, "%s: read back", p);
  if (!b || len < 8) {
    free(b);
    return;
  }
  uint64_t hl = 0;
  for (int i = 7; i >= 0; i--) hl = (hl << 8) | b[i];
  CHECK((8 + hl) % 8 == 0, "%s: data section starts at %llu, not 8-aligned", p, (unsigned long long)(8 + hl));
  cJSON *h = cJSON_ParseWithLength((const char *)b + 8, (size_t)hl);
  CHECK(h != NULL, "%s: header parses", p);
  size_t k = 0;
  uint64_t at = 0;
  for (const cJSON *c = h ? h->child : NULL; c; c = c->next) {
    if (strcmp(c->string, "__metadata__") == 0) continue;
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(c, "dtype");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(c, "data_offsets");
    size_t el = cJSON_IsString(dt) ? cf_st_dtype_size(dt->valuestring) : 0;
    uint64_t begin = cJSON_IsArray(off) ? (uint64_t)cJSON_GetArrayItem(off, 0)->valuedouble : 1;
    uint64_t end = cJSON_IsArray(off) ? (uint64_t)cJSON_GetArrayItem(off, 1)->valuedouble : 0;
    CHECK(el && (8 + hl + begin) % el == 0, "%s: tensor '%s' (%s) at file offset %llu, not a multiple of %zu", p,
          c->string, el ? dt->valuestring : "?", (unsigned long long)(8 + hl + begin), el);
    CHECK(begin == at, "%s: tensor '%s' starts at %llu, the previous one ends at %llu (header order = data order)",
          p, c->string, (unsigned long long)begin, (unsigned long long)at);
    at = end;
    if (want_order) {
      CHECK(k < n && strcmp(c->string, want_order[k]) == 0, "%s: tensor %zu is '%s', expected '%s'", p, k,
            c->string, k < n ? want_order[k] : "(none)");
    }
    k++;
  }
  CHECK(k == n, "%s: %zu tensors in the header, expected %zu", p, k, n);
  CHECK(8 + hl + at == len, "%s: data section ends at the end of the file", p);
  cJSON_Delete(h);
  free(b);
}

static void test_write_alignment(void) {
  /* In name order "a.bias" (3 x bf16 = 6 bytes) would come first and put "b.weight" (f32) at data
   * offset 6, and every tensor after it off its alignment as well. */
  uint16_t a_bias[3] = {0x3f80, 0xc040, 0x3e80}; /* 1, -3, 0.25 */
  float b_weight[4] = {1.5f, -2.25f, 3e-8f, 1e30f};
  uint8_t c_mask[5] = {1, 0, 1, 1, 0};
  int64_t d_step[2] = {-7, (int64_t)1 << 40};
  uint16_t e_half = 0x3c00;
  double f_f64 = 0.1;
  int32_t g_i32[3] = {1, -2, 2147483647};
  cf_st_entry ents[] = { /* in name order, as confit.save_safetensors passes them */
    {"a.bias", "BF16", 1, {3}, a_bias, sizeof a_bias},
    {"b.weight", "F32", 2, {2, 2}, b_weight, sizeof b_weight},
    {"c.mask", "BOOL", 1, {5}, c_mask, sizeof c_mask},
    {"d.step", "I64", 1, {2}, d_step, sizeof d_step},
    {"e.half", "F16", 0, {0}, &e_half, sizeof e_half},
    {"f.f64", "F64", 0, {0}, &f_f64, sizeof f_f64},
    {"g.i32", "I32", 1, {3}, g_i32, sizeof g_i32},
  };
  size_t n = sizeof ents / sizeof ents[0];
  const char *want[] = {"d.step", "f.f64", "b.weight", "g.i32", "a.bias", "e.half", "c.mask"};
  const char *p = path_in(tmpdir, "aligned.safetensors");
  CHECK(cf_st_write(p, ents, n, NULL) == 0, "write: %s", cf_error_message());
  check_layout(p, want, n);

  /* through the reader: exact bytes back, and each pointer into the (page-aligned) mapping is
   * aligned to its element size -- the test cf_qwen2_load makes before using f32 data in place */
  cf_st_file *f = cf_st_open(p);
  CHECK(f != NULL, "open: %s", cf_error_message());
  for (size_t i = 0; f && i < n; i++) {
    const cf_st_entry *e = cf_st_find(f, ents[i].name);
    CHECK(e && e->nbytes == ents[i].nbytes && memcmp(e->data, ents[i].data, e->nbytes) == 0, "%s: exact round trip",
          ents[i].name);
    size_t el = cf_st_dtype_size(ents[i].dtype);
    CHECK(e && (uintptr_t)e->data % el == 0, "%s: data pointer %p not %zu-byte aligned in the mapping", ents[i].name,
          e ? e->data : NULL, el);
  }
  cf_st_close(f);

  /* the layout depends on the tensors, not on the order they are passed in */
  cf_st_entry rev[sizeof ents / sizeof ents[0]];
  for (size_t i = 0; i < n; i++) rev[i] = ents[n - 1 - i];
  const char *p2 = path_in(tmpdir, "aligned_rev.safetensors");
  CHECK(cf_st_write(p2, rev, n, NULL) == 0, "write reversed: %s", cf_error_message());
  size_t l1 = 0, l2 = 0;
  unsigned char *b1 = read_all(p, &l1), *b2 = read_all(p2, &l2);
  CHECK(b1 && b2 && l1 == l2 && memcmp(b1, b2, l1) == 0, "entry order changed the file");
  unsigned char *m = NULL;
  size_t ml = 0;
  CHECK(cf_st_write_memory(rev, n, NULL, &m, &ml) == 0 && b1 && ml == l1 && memcmp(m, b1, l1) == 0,
        "write_memory lays out the same bytes");
  free(m);
  free(b1);
  free(b2);
}

/* ---------------------------------------------------------------- shard index */

static void test_index(void) {
  char dir[300];
  snprintf(dir, sizeof dir, "%s/model", tmpdir);
  mkdir(dir, 0755);
  char **files = NULL;
  size_t n = 0;
  CHECK(cf_st_index_files(dir, &files, &n) == -1 && strstr(cf_error_message(), "no model.safetensors"),
        "empty dir: %s", cf_error_message());
  write_raw(path_in(dir, "model.safetensors"), "{}", 0, 0);
  CHECK(cf_st_index_files(dir, &files, &n) == 0 && n == 1 && strcmp(files[0], path_in(dir, "model.safetensors")) == 0,
        "single file");
  cf_st_index_free(files, n);
  const char *idx = "{\"metadata\": {\"total_size\": 16}, \"weight_map\": {"
                    "\"a\": \"model-00002-of-00002.safetensors\", \"b\": \"model-00001-of-00002.safetensors\","
                    "\"c\": \"model-00002-of-00002.safetensors\"}}";
  write_bytes(path_in(dir, "model.safetensors.index.json"), idx, strlen(idx));
  files = NULL;
  n = 0;
  /* both the single file and the index: refused, naming both (one is stale) */
  CHECK(cf_st_index_files(dir, &files, &n) == -1 && strstr(cf_error_message(), "holds both model.safetensors and"),
        "both: %s", cf_error_message());
  unlink(path_in(dir, "model.safetensors"));
  int rc = cf_st_index_files(dir, &files, &n);
  CHECK(rc == 0 && n == 2, "index: rc %d n %zu %s", rc, n, cf_error_message());
  if (rc == 0 && n == 2) {
    CHECK(strcmp(files[0], path_in(dir, "model-00001-of-00002.safetensors")) == 0, "shard 0: %s", files[0]);
    CHECK(strcmp(files[1], path_in(dir, "model-00002-of-00002.safetensors")) == 0, "shard 1: %s", files[1]);
  }
  cf_st_index_free(files, n);
  const char *evil = "{\"weight_map\": {\"a\": \"../../etc/passwd\"}}";
  write_bytes(path_in(dir, "model.safetensors.index.json"), evil, strlen(evil));
  CHECK(cf_st_index_files(dir, &files, &n) == -1 && strstr(cf_error_message(), "not a plain file name"),
        "traversal: %s", cf_error_message());
  /* an empty file name is no shard (it named the folder itself) */
  const char *empty = "{\"weight_map\": {\"a\": \"model-00001-of-00001.safetensors\", \"b\": \"\"}}";
  write_bytes(path_in(dir, "model.safetensors.index.json"), empty, strlen(empty));
  CHECK(cf_st_index_files(dir, &files, &n) == -1 && strstr(cf_error_message(), "weight_map['b'] is not a file name") &&
            strstr(cf_error_message(), "model.safetensors.index.json"),
        "empty shard name: %s", cf_error_message());
  /* an index past 1 GB is refused before it is read (a sparse file: no disk used) */
  const char *ip = path_in(dir, "model.safetensors.index.json");
  CHECK(truncate(ip, ((off_t)1 << 30) + 1) == 0, "truncate %s", ip);
  CHECK(cf_st_index_files(dir, &files, &n) == -1 && strstr(cf_error_message(), "index file larger than 1 GB"),
        "huge index: %s", cf_error_message());
  const char *nomap = "{\"metadata\": {}}";
  write_bytes(path_in(dir, "model.safetensors.index.json"), nomap, strlen(nomap));
  CHECK(cf_st_index_files(dir, &files, &n) == -1 && strstr(cf_error_message(), "weight_map"), "no weight_map: %s",
        cf_error_message());
  /* the index is one value: a second one after it (two writes joined) is refused, as Hugging Face's
     JSON reader refuses it; whitespace after it is fine */
  const char *twice = "{\"weight_map\": {\"a\": \"model-00001-of-00001.safetensors\"}}\n{\"weight_map\": {}}";
  write_bytes(path_in(dir, "model.safetensors.index.json"), twice, strlen(twice));
  CHECK(cf_st_index_files(dir, &files, &n) == -1 &&
            strstr(cf_error_message(), "not valid JSON: trailing bytes after the top-level value at byte 58") &&
            strstr(cf_error_message(), "model.safetensors.index.json"),
        "two values: %s", cf_error_message());
  const char *spaced = "{\"weight_map\": {\"a\": \"model-00001-of-00001.safetensors\"}}\n \t\r\n";
  write_bytes(path_in(dir, "model.safetensors.index.json"), spaced, strlen(spaced));
  files = NULL;
  n = 0;
  rc = cf_st_index_files(dir, &files, &n);
  CHECK(rc == 0 && n == 1, "whitespace after the index: rc %d n %zu %s", rc, n, cf_error_message());
  cf_st_index_free(files, n);
}

/* ---------------------------------------------------------------- committed fixtures */

static int shape_is(const cf_st_file *f, const char *name, const char *dtype, int ndim, int64_t d0, int64_t d1,
                    int64_t d2) {
  const cf_st_entry *e = cf_st_find(f, name);
  int64_t d[3] = {d0, d1, d2};
  int ok = e && strcmp(e->dtype, dtype) == 0 && e->ndim == ndim;
  for (int k = 0; ok && k < ndim; k++) ok = e->shape[k] == d[k];
  if (!ok) printf("  %s: %s\n", name, e ? "wrong dtype/shape" : "missing");
  return ok;
}

static int json_int(const cJSON *cfg, const char *key, int dflt) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
  return cJSON_IsNumber(v) ? v->valueint : dflt;
}

static void check_fixture(const char *dir, int qwen) {
  char p[512];
  snprintf(p, sizeof p, "%s/config.json", dir);
  size_t len = 0;
  unsigned char *txt = read_all(p, &len);
  CHECK(txt != NULL, "fixture %s missing (regenerate with tests/fixtures/make_tiny_models.py)", p);
  if (!txt) return;
  cJSON *cfg = cJSON_ParseWithLength((const char *)txt, len);
  free(txt);
  CHECK(cfg != NULL, "%s: bad JSON", p);
  if (!cfg) return;
  int V = json_int(cfg, "vocab_size", -1), H = json_int(cfg, "hidden_size", -1);
  int L = json_int(cfg, "num_hidden_layers", -1), nh = json_int(cfg, "num_attention_heads", -1);
  int nkv = json_int(cfg, "num_key_value_heads", nh), I = json_int(cfg, "intermediate_size", -1);
  int hd = json_int(cfg, "head_dim", nh > 0 ? H / nh : -1);
  int tied = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(cfg, "tie_word_embeddings"));
  const cJSON *mt = cJSON_GetObjectItemCaseSensitive(cfg, "model_type");
  CHECK(cJSON_IsString(mt) && strcmp(mt->valuestring, qwen ? "qwen2" : "llama") == 0, "%s: model_type", p);
  cJSON_Delete(cfg);
  CHECK(V > 0 && H > 0 && L > 0 && nh > 0 && nkv > 0 && I > 0 && hd > 0, "%s: config fields", p);

  snprintf(p, sizeof p, "%s/model.safetensors", dir);
  cf_st_file *m = cf_st_open(p);
  CHECK(m != NULL, "fixture model: %s", cf_error_message());
  snprintf(p, sizeof p, "%s/reference.safetensors", dir);
  cf_st_file *r = cf_st_open(p);
  CHECK(r != NULL, "fixture reference: %s", cf_error_message());
  if (!m || !r) {
    cf_st_close(m);
    cf_st_close(r);
    return;
  }
  int ok = 1;
  size_t expect = 2 + (tied ? 0 : 1) + (size_t)L * (qwen ? 12 : 9);
  ok &= shape_is(m, "model.embed_tokens.weight", "F32", 2, V, H, 0);
  ok &= shape_is(m, "model.norm.weight", "F32", 1, H, 0, 0);
  if (tied) ok &= cf_st_find(m, "lm_head.weight") == NULL;
  else ok &= shape_is(m, "lm_head.weight", "F32", 2, V, H, 0);
  for (int l = 0; l < L; l++) {
    char nm[128];
#define W(suffix, nd, a, b)                                                                                   \
  snprintf(nm, sizeof nm, "model.layers.%d.%s", l, suffix);                                                   \
  ok &= shape_is(m, nm, "F32", nd, a, b, 0);
    W("input_layernorm.weight", 1, H, 0)
    W("post_attention_layernorm.weight", 1, H, 0)
    W("self_attn.q_proj.weight", 2, nh * hd, H)
    W("self_attn.k_proj.weight", 2, nkv * hd, H)
    W("self_attn.v_proj.weight", 2, nkv * hd, H)
    W("self_attn.o_proj.weight", 2, H, nh * hd)
    W("mlp.gate_proj.weight", 2, I, H)
    W("mlp.up_proj.weight", 2, I, H)
    W("mlp.down_proj.weight", 2, H, I)
    if (qwen) {
      W("self_attn.q_proj.bias", 1, nh * hd, 0)
      W("self_attn.k_proj.bias", 1, nkv * hd, 0)
      W("self_attn.v_proj.bias", 1, nkv * hd, 0)
    } else {
      snprintf(nm, sizeof nm, "model.layers.%d.self_attn.q_proj.bias", l);
      ok &= cf_st_find(m, nm) == NULL;
    }
#undef W
  }
  CHECK(ok, "%s: model tensor names/shapes", dir);
  CHECK(cf_st_count(m) == expect, "%s: %zu model tensors, expected %zu", dir, cf_st_count(m), expect);

  /* reference: every parameter has its gradient with the same shape */
  ok = 1;
  for (size_t i = 0; i < cf_st_count(m); i++) {
    const cf_st_entry *w = cf_st_get(m, i);
    char gn[300];
    snprintf(gn, sizeof gn, "grad.%s", w->name);
    const cf_st_entry *g = cf_st_find(r, gn);
    int same = g && strcmp(g->dtype, "F32") == 0 && g->ndim == w->ndim;
    for (int k = 0; same && k < w->ndim; k++) same = g->shape[k] == w->shape[k];
    if (!same) printf("  %s: missing or wrong shape\n", gn);
    ok &= same;
  }
  CHECK(ok, "%s: grad.* tensors", dir);
  const cf_st_entry *ids = cf_st_find(r, "ids");
  int B = ids && ids->ndim == 2 ? (int)ids->shape[0] : 0, T = ids && ids->ndim == 2 ? (int)ids->shape[1] : 0;
  CHECK(B == 3 && T == 12 && strcmp(ids->dtype, "I64") == 0, "%s: ids [3,12] I64", dir);
  if (B != 3 || T != 12) {
    cf_st_close(m);
    cf_st_close(r);
    return;
  }
  ok = shape_is(r, "logits", "F32", 3, B, T, V) && shape_is(r, "prompt_lens", "I64", 1, B, 0, 0) &&
       shape_is(r, "lens", "I64", 1, B, 0, 0) && shape_is(r, "logprobs_t1", "F32", 1, B, 0, 0) &&
       shape_is(r, "logprobs_t05", "F32", 1, B, 0, 0) && shape_is(r, "loss_weights", "F32", 1, B, 0, 0) &&
       shape_is(r, "greedy_tokens", "I64", 1, 8, 0, 0);
  const cf_st_entry *gp = cf_st_find(r, "greedy_prompt");
  ok &= gp && strcmp(gp->dtype, "I64") == 0 && gp->ndim == 1 && gp->shape[0] > 0;
  CHECK(ok, "%s: reference tensors", dir);
  if (!ok) {
    cf_st_close(m);
    cf_st_close(r);
    return;
  }
  /* the stored log-probs agree with the stored logits (sum of completion-token log_softmax) */
  int64_t idv[36], pl[3], ln[3];
  memcpy(idv, ids->data, sizeof idv);
  memcpy(pl, cf_st_find(r, "prompt_lens")->data, sizeof pl);
  memcpy(ln, cf_st_find(r, "lens")->data, sizeof ln);
  float *lg = malloc(sizeof(float) * (size_t)(B * T * V));
  float lp1[3], lp05[3];
  cf_st_to_f32(cf_st_find(r, "logits"), lg);
  cf_st_to_f32(cf_st_find(r, "logprobs_t1"), lp1);
  cf_st_to_f32(cf_st_find(r, "logprobs_t05"), lp05);
  int sane = 1;
  for (int b = 0; b < B; b++) {
    sane &= pl[b] >= 1 && pl[b] < ln[b] && ln[b] <= T;
    for (int t = 0; t < T; t++) sane &= idv[b * T + t] >= 0 && idv[b * T + t] < V;
  }
  CHECK(sane, "%s: ids/prompt_lens/lens in range", dir);
  for (int b = 0; sane && b < B; b++) {
    for (int ti = 0; ti < 2; ti++) {
      double temp = ti ? 0.5 : 1.0, sum = 0;
      for (int64_t t = pl[b]; t < ln[b]; t++) {
        const float *z = lg + ((size_t)b * T + (size_t)(t - 1)) * (size_t)V;
        double mx = -INFINITY, s = 0;
        for (int v = 0; v < V; v++) mx = fmax(mx, z[v] / temp);
        for (int v = 0; v < V; v++) s += exp(z[v] / temp - mx);
        sum += z[idv[b * T + t]] / temp - mx - log(s);
      }
      double want = ti ? lp05[b] : lp1[b];
      CHECK(fabs(sum - want) < 1e-4 * (1 + fabs(want)), "%s: row %d T=%.1f log-prob %.7f vs stored %.7f", dir, b,
            temp, sum, want);
    }
  }
  free(lg);
  cf_st_close(m);
  cf_st_close(r);
}

/* ---------------------------------------------------------------- main */

static void rm_tree(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return;
  for (struct dirent *de; (de = readdir(d));) {
    if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
    struct stat st;
    if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode)) rm_tree(p);
    else unlink(p);
  }
  closedir(d);
  rmdir(dir);
}

/* cf_st_nonfinite (the resume check reads a checkpoint's values with it, in place) against
 * isfinite of the values widened by cf_st_to_f32 or read as double: every bit pattern of the 8-
 * and 16-bit floats, special and random 32- and 64-bit ones, a NaN or inf at block edges of a
 * long tensor, unaligned data, and integers whose bits look like an infinity. */
static uint64_t nf_state = 88172645463325252ull;
static uint64_t nf_rand(void) {
  nf_state ^= nf_state << 13;
  nf_state ^= nf_state >> 7;
  nf_state ^= nf_state << 17;
  return nf_state;
}

static int nf_ref(const cf_st_entry *e) {
  if (!strcmp(e->dtype, "F64")) {
    for (size_t i = 0; i < e->nbytes / 8; i++) {
      double x;
      memcpy(&x, (const char *)e->data + 8 * i, 8);
      if (!isfinite(x)) return 1;
    }
    return 0;
  }
  int64_t n = cf_st_numel(e);
  float *v = malloc((size_t)(n ? n : 1) * sizeof *v);
  if (!v || cf_st_to_f32(e, v)) { free(v); return -1; }
  int bad = 0;
  for (int64_t i = 0; i < n; i++) bad |= !isfinite(v[i]);
  free(v);
  return bad;
}

static void test_nonfinite(void) {
  /* one element: every pattern of the small floats */
  const char *small[] = {"BF16", "F16", "F8_E5M2", "F8_E4M3"};
  int mism = 0, hits = 0;
  for (size_t d = 0; d < 4; d++) {
    size_t sz = cf_st_dtype_size(small[d]);
    for (uint32_t b = 0; b < (1u << (8 * sz)); b++) {
      unsigned char raw[2];
      if (sz == 2) { uint16_t h = (uint16_t)b; memcpy(raw, &h, 2); } else raw[0] = (unsigned char)b;
      cf_st_entry e = {"x", "", 1, {1}, raw, sz};
      snprintf(e.dtype, sizeof e.dtype, "%s", small[d]);
      int got = cf_st_nonfinite(&e), want = nf_ref(&e);
      hits += got;
      if (got != want && mism++ < 5) printf("  %s pattern 0x%x: nonfinite %d, isfinite says %d\n", small[d], b, got, want);
    }
  }
  CHECK(mism == 0, "%d small-float patterns disagree with isfinite", mism);
  /* the patterns with every exponent bit set, two signs each: bf16 2 * 2^7, f16 2 * 2^10, E5M2
   * 2 * 2^2; E4M3 has no inf and one NaN per sign */
  CHECK(hits == 256 + 2048 + 8 + 2, "hits %d", hits);
  /* random and special 32- and 64-bit patterns */
  mism = 0;
  for (int i = 0; i < 200000; i++) {
    uint64_t r = nf_rand();
    if (i % 4 == 1) r |= 0x7ff0000000000000ull;                   /* f64 NaN / inf */
    if (i % 4 == 2) r = (r & ~0x7f800000ull) | 0x7f800000ull;     /* f32 NaN / inf */
    if (i % 8 == 3) r &= 0xfff0000000000000ull;                    /* +-inf, +-0 */
    uint32_t w = (uint32_t)r;
    cf_st_entry a = {"a", "F32", 1, {1}, &w, 4}, b = {"b", "F64", 1, {1}, &r, 8};
    if (cf_st_nonfinite(&a) != nf_ref(&a) && mism++ < 5) printf("  F32 0x%08x disagrees\n", w);
    if (cf_st_nonfinite(&b) != nf_ref(&b) && mism++ < 5) printf("  F64 0x%016llx disagrees\n", (unsigned long long)r);
  }
  CHECK(mism == 0, "%d 32/64-bit patterns disagree with isfinite", mism);
  /* a long tensor, unaligned: finite, then one NaN or inf at each edge of the 1024-element blocks */
  enum { N = 5000 };
  unsigned char *buf = malloc(N * 8 + 1);
  const char *big[] = {"F32", "F64", "BF16", "F16"};
  const uint64_t inf_bits[] = {0x7f800000u, 0x7ff0000000000000ull, 0x7f80u, 0x7c00u};
  const uint64_t nan_bits[] = {0xffc00001u, 0xfff8000000000001ull, 0xffc1u, 0xfe01u};
  for (size_t d = 0; d < 4 && buf; d++) {
    size_t sz = cf_st_dtype_size(big[d]);
    cf_st_entry e = {"t", "", 1, {N}, buf + 1, N * sz};
    snprintf(e.dtype, sizeof e.dtype, "%s", big[d]);
    for (size_t i = 0; i < N; i++) {   /* finite values of either sign, including the largest */
      float f = (float)((i % 7) - 3) * 0.37f;
      uint64_t bits = 0;
      if (sz == 4) memcpy(&bits, &f, 4);
      else if (sz == 8) { double x = i == 17 ? 1.7976931348623157e308 : f; memcpy(&bits, &x, 8); }
      else bits = i == 17 ? (d == 2 ? 0x7f7fu : 0x7bffu) : (uint64_t)(i & 0x3fff);
      if (sz == 4 && i == 17) bits = 0x7f7fffffu;
      memcpy(buf + 1 + i * sz, &bits, sz);
    }
    CHECK(cf_st_nonfinite(&e) == 0 && nf_ref(&e) == 0, "%s: finite tensor flagged", big[d]);
    const size_t at[] = {0, 1023, 1024, 2047, 4096, N - 1};
    for (size_t k = 0; k < sizeof at / sizeof at[0]; k++) {
      for (int which = 0; which < 2; which++) {
        unsigned char keep[8];
        memcpy(keep, buf + 1 + at[k] * sz, sz);
        uint64_t bits = which ? nan_bits[d] : inf_bits[d];
        memcpy(buf + 1 + at[k] * sz, &bits, sz);
        CHECK(cf_st_nonfinite(&e) == 1 && nf_ref(&e) == 1, "%s: %s at %zu not found", big[d], which ? "NaN" : "inf", at[k]);
        memcpy(buf + 1 + at[k] * sz, keep, sz);
      }
    }
  }
  free(buf);
  /* integers and empty tensors are never flagged */
  uint32_t ibits[2] = {0x7f800000u, 0xffffffffu};
  cf_st_entry i32 = {"i", "I32", 1, {2}, ibits, 8}, u32 = {"u", "U32", 1, {2}, ibits, 8}, empty = {"z", "F32", 1, {0}, NULL, 0};
  CHECK(!cf_st_nonfinite(&i32) && !cf_st_nonfinite(&u32) && !cf_st_nonfinite(&empty) && !cf_st_nonfinite(NULL),
        "integer, empty or NULL flagged");
}

int main(int argc, char **argv) {
  if (argc == 3 && strcmp(argv[1], "--write-corpus") == 0) {
    mkdir(argv[2], 0755);
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) write_bad(argv[2], &bad_cases[i]);
    for (size_t i = 0; i < sizeof good_cases / sizeof good_cases[0]; i++)
      write_raw(path_in(argv[2], good_cases[i].file), good_cases[i].header, good_cases[i].ndata, 0);
    float x[3] = {1, 2, 3};
    uint16_t h[2] = {0x3c00, 0x3f80};
    cf_st_entry e[2] = {{"x", "F32", 2, {1, 3}, x, sizeof x}, {"h", "BF16", 1, {2}, h, sizeof h}};
    const char *meta[] = {"step", "1", NULL};
    if (cf_st_write(path_in(argv[2], "good_written.safetensors"), e, 2, meta)) {
      printf("%s\n", cf_error_message());
      return 1;
    }
    return 0;
  }
  if (!check_tmpdir(tmpdir, sizeof tmpdir, "cf_st_test_")) {
    perror("mkdtemp");
    return 1;
  }
  test_planted_temp_names(); /* first: it knows the writer's next temporary names */
  test_corpus();
  test_round_trip();
  test_writer_errors();
  test_special_files();
  test_fsync();
  test_write_alignment();
  test_half();
  test_nonfinite();
  test_index();
  check_fixture("tests/fixtures/tiny_qwen2", 1);
  check_fixture("tests/fixtures/tiny_llama", 0);
  check_fixture("tests/fixtures/tiny_llama31", 0);
  rm_tree(tmpdir);
  return check_finish();
}
