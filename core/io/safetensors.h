/* safetensors.h - Hugging Face safetensors files: strict mmap reader, atomic writer.
 *
 * The format: 8 bytes little-endian u64 N, N bytes of JSON header, then the data section. The
 * header maps tensor names to {"dtype","shape","data_offsets":[begin,end]} (offsets relative to
 * the data section) plus an optional "__metadata__" string->string map.
 *
 * This is a raw API, independent of the tensor type: an entry is a name, a dtype string, a shape
 * and a pointer into the mapping. Tensors that alias the mapping keep it alive with
 * cf_st_retain / cf_st_close (a refcount; the mapping goes at the last close).
 *
 * Reader invariants (a file that opens satisfies all of these):
 *  - header length <= 100 MB and inside the file; the header is UTF-8 JSON with no raw control
 *    characters and no \u0000 escape, one object, followed only by whitespace (HF pads with
 *    spaces);
 *  - every entry has a known dtype, 0..8 non-negative integer dims, data_offsets with
 *    begin <= end <= data section size and end - begin == numel * dtype size;
 *  - names are unique (also "__metadata__"), the byte ranges do not overlap and cover the data
 *    section exactly (no gap, no trailing bytes), as HF's own loader requires;
 *  - __metadata__, when present, is an object of string values.
 * Entries keep the order of the header. Data pointers are NOT necessarily aligned beyond 1 byte
 * in files from other writers: read them with memcpy or check alignment before casting. (In files
 * we write, each tensor starts at a multiple of its element size from an 8-aligned data section,
 * so a page-aligned mapping gives naturally aligned pointers.)
 *
 * Writer invariants: HF compatible (header JSON with "__metadata__" holding {"format":"pt"} and
 * the given keys, padded with spaces to a multiple of 8 bytes, so the data section starts
 * 8-aligned); tensors in header and data ordered by dtype element size descending (8, 4, 2, 1
 * bytes), then by name, whatever the order of entries[] -- with no gaps (the format allows none)
 * this puts every tensor at an offset that is a multiple of its element size;
 * written to a fresh temporary file beside path, fsync'd, renamed over path, the directory fsync'd.
 * On failure nothing is left at path (an existing file there is untouched) and the temporary is
 * removed.
 *
 * Temporary files (cf_st_write, cf_st_write_file): "<path>.tmp-<pid>-<time>-<serial>", the name
 * lua/confit/jsonio.lua's atomic writers use (jsonio.is_temp_name knows it, and
 * jsonio.remove_stale_temps removes one a killed writer left), created with O_EXCL | O_NOFOLLOW:
 * never a file or symlink that was already there.
 *
 * Reading files (cf_st_open, cf_st_read_file, the shard index): a path that is not a regular file
 * (a FIFO, a device, a folder) is refused with "<path>: not a regular file ..." before anything
 * is read; it is opened O_NONBLOCK, so a FIFO without a writer never blocks the caller.
 *
 * Errors follow core/error.h: NULL or -1 with a message naming the file and the tensor.
 */
#ifndef CF_IO_SAFETENSORS_H
#define CF_IO_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#define CF_ST_MAX_DIMS 8
#define CF_ST_MAX_HEADER 100000000u /* HF's limit on the JSON header length */

typedef struct {
  char *name;                    /* NUL-terminated; owned by the file (or by the caller when writing) */
  char dtype[8];                 /* "F64","F32","F16","BF16","F8_E4M3","F8_E5M2","I64","I32",
                                    "I16","I8","U64","U32","U16","U8","BOOL" */
  int ndim;                      /* 0..CF_ST_MAX_DIMS; 0 is a scalar (one element) */
  int64_t shape[CF_ST_MAX_DIMS];
  const void *data;              /* into the mapping; may be unaligned; NULL allowed if nbytes==0 */
  size_t nbytes;                 /* numel * dtype size */
} cf_st_entry;

typedef struct cf_st_file cf_st_file;

/* Size in bytes of one element of dtype, or 0 when the dtype is unknown. */
size_t cf_st_dtype_size(const char *dtype);
/* Number of elements of an entry (product of its shape; 1 for a scalar). */
int64_t cf_st_numel(const cf_st_entry *e);

/* mmap path read-only and validate it. Returns a file with refcount 1, or NULL + CF_ERR. */
cf_st_file *cf_st_open(const char *path);
/* Validate a safetensors image in memory. The memory is BORROWED: it must stay valid and
 * unchanged until the last cf_st_close. label names the source in error messages. */
cf_st_file *cf_st_open_memory(const void *data, size_t size, const char *label);
/* Refcount: retain returns f; close drops one reference and unmaps at the last. NULL is a no-op. */
cf_st_file *cf_st_retain(cf_st_file *f);
void cf_st_close(cf_st_file *f);

size_t cf_st_count(const cf_st_file *f);
const cf_st_entry *cf_st_get(const cf_st_file *f, size_t i);         /* NULL when i >= count */
const cf_st_entry *cf_st_find(const cf_st_file *f, const char *name); /* NULL when absent */
/* __metadata__ value for key, or NULL. The count/at pair iterates the map in header order. */
const char *cf_st_metadata(const cf_st_file *f, const char *key);
size_t cf_st_metadata_count(const cf_st_file *f);
int cf_st_metadata_at(const cf_st_file *f, size_t i, const char **key, const char **value);

/* Write entries atomically to path, in the order above (element size descending, then name).
 * meta_kv: key, value, key, value, ..., NULL (or NULL for none); "format" defaults to "pt" and
 * may be overridden. Entries are checked first (known dtype, 0..8 dims >= 0,
 * nbytes == numel * size, unique non-empty names, no "__metadata__"). */
int cf_st_write(const char *path, const cf_st_entry *entries, size_t n, const char *const *meta_kv);
/* Write len bytes to path atomically (temporary file as above, fsync, rename, directory fsync):
 * the model saver's config.json goes through here. 0, or -1 + CF_ERR naming path. */
int cf_st_write_file(const char *path, const void *data, size_t len);
/* Read the whole regular file at path into a malloc'd, NUL-terminated buffer (*out, *len; free()
 * it). -1 + CF_ERR naming path when it cannot be opened (*missing = 1 when it does not exist;
 * missing may be NULL), is not a regular file, cannot be read, or memory runs out. */
int cf_st_read_file(const char *path, char **out, size_t *len, int *missing);
/* The same bytes as cf_st_write, into a malloc'd buffer (*out, *len); free() it. */
int cf_st_write_memory(const cf_st_entry *entries, size_t n, const char *const *meta_kv,
                       unsigned char **out, size_t *len);

/* Widen an entry of a float or integer dtype to f32 (numel values into out). -1 + CF_ERR for a
 * dtype without a conversion. bf16/f16 widening is exact. */
int cf_st_to_f32(const cf_st_entry *e, float *out);

/* Whether an entry of a float dtype (F64, F32, F16, BF16, F8_E5M2, F8_E4M3) holds a NaN or an
 * infinity: 1 if so, 0 if not or when the dtype is not a float. Reads the mapping in place (the
 * exponent bits of each element; nothing is copied), so a checkpoint's values can be checked
 * before they are loaded. */
int cf_st_nonfinite(const cf_st_entry *e);

/* Shards of a Hugging Face model folder: the unique file names of weight_map in
 * dir/model.safetensors.index.json (sorted), or dir/model.safetensors alone. *files gets malloc'd
 * paths "dir/<name>"; free them with cf_st_index_free. Shard names with '/' or ".." are refused. */
int cf_st_index_files(const char *dir, char ***files, size_t *n);
void cf_st_index_free(char **files, size_t n);

#endif
