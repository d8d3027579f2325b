/* json_whole.h - cJSON parsing of a whole text, header only.
 *
 * cJSON_ParseWithLength stops after the first value and takes whatever follows as fine, so a
 * file holding a value and then anything else (two files joined, a write that appended to an
 * old file) was read as its first value. Hugging Face's readers (serde_json) refuse such a file:
 * here a value may be followed by JSON whitespace only.
 */
#ifndef CF_JSON_WHOLE_H
#define CF_JSON_WHOLE_H

#include <cjson/cJSON.h>
#include <stddef.h>

/* The value of text[0..len), or NULL with *err_at the byte offset where reading failed and
 * *trailing 1 when a whole value was read but other bytes follow it at *err_at (0 when the value
 * itself is malformed). errno is left as cJSON leaves it (ENOMEM when its allocation failed). */
static inline cJSON *cf_json_parse_whole(const char *text, size_t len, size_t *err_at, int *trailing) {
  const char *end = NULL;
  *err_at = 0;
  *trailing = 0;
  cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
  if (!root) {
    if (end && end >= text && end <= text + len) *err_at = (size_t)(end - text);
    return NULL;
  }
  for (const char *q = end; q < text + len; q++) {
    if (*q != ' ' && *q != '\t' && *q != '\n' && *q != '\r') {
      *err_at = (size_t)(q - text);
      *trailing = 1;
      cJSON_Delete(root);
      return NULL;
    }
  }
  return root;
}

#endif
