// Text checks: UTF-8 validation (tensor names, read and written) and the NUL characters a
// JSON text may spell but cJSON's NUL-terminated strings silently cut at; and the names
// of JSON value kinds for messages; writing a JSON string literal.
#include "runtime/text.h"

#include <string.h>

#include <cjson/cJSON.h>

bool rt_utf8_valid(const char *s, size_t n, size_t *bad) {
  const unsigned char *p = (const unsigned char *)s;
  for (size_t i = 0; i < n;) {
    unsigned c = p[i];
    size_t len = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
    bool ok = len && i + len <= n;
    unsigned cp = len == 1 ? c : len == 2 ? c & 0x1f : len == 3 ? c & 0x0f : c & 0x07;
    for (size_t k = 1; ok && k < len; k++) {
      ok = (p[i + k] & 0xc0) == 0x80;
      cp = cp << 6 | (p[i + k] & 0x3f);
    }
    static const unsigned min[5] = {0, 0, 0x80, 0x800, 0x10000};  // shortest form's floor
    if (ok && (cp < min[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))) ok = false;
    if (!ok) {
      if (bad) *bad = i;
      return false;
    }
    i += len;
  }
  return true;
}

long rt_json_find_nul(const char *json, size_t n) {
  bool in_string = false;
  for (size_t i = 0; i < n; i++) {
    char c = json[i];
    if (c == 0 && in_string) return (long)i;  // outside a string, the parser refuses it
    if (c == '"') in_string = !in_string;
    else if (c == '\\' && in_string && i + 1 < n) {
      if (json[i + 1] == 'u' && i + 6 <= n && !memcmp(json + i + 2, "0000", 4)) return (long)i;
      i++;  // the escaped character (a quote or backslash does not end or start anything)
    }
  }
  return -1;
}

const char *rt_json_kind(const cJSON *j) {
  if (cJSON_IsString(j)) return "a string";
  if (cJSON_IsNumber(j)) return "a number";
  if (cJSON_IsBool(j)) return "a boolean";
  if (cJSON_IsArray(j)) return "an array";
  if (cJSON_IsObject(j)) return "an object";
  return "null";
}

void rt_json_put_string(FILE *f, const char *s) {
  fputc('"', f);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
    else if (*p < 0x20) fprintf(f, "\\u%04x", *p);
    else fputc(*p, f);
  }
  fputc('"', f);
}
